#!/bin/sh
# ----------------------------------------------------------------------
# Prometheus container entrypoint: render the configuration, then run.
# ----------------------------------------------------------------------
#
# As nginx's (nginx/docker-entrypoint.sh): apply defaults to the settings below and validate them,
# copy the configuration tree (/etc/prometheus/stack, read-only) to /tmp/prometheus and render
# every *.template with envsubst (only the listed variables), then:
#   prometheus [FLAGS...]  check the configuration and exec Prometheus (the default command);
#   check                  promtool: check the configuration and the rules, run the rules' unit
#                          tests (tests/*.test.yaml; they hold the shipped defaults below);
#   anything else          exec'd as given (e.g. promtool query instant http://127.0.0.1:9090 up).
#
# Settings (environment variable, default):
#   PROMETHEUS_SCRAPE_INTERVAL      15s    how often every target is scraped
#   PROMETHEUS_SCRAPE_TIMEOUT       (empty) at most the interval; empty: Prometheus's own
#                                          default, 10s or the interval when that is shorter
#   PROMETHEUS_EVALUATION_INTERVAL  15s    how often the rules are evaluated
#   PROMETHEUS_RETENTION_TIME       15d    samples older than this are deleted
#   PROMETHEUS_RETENTION_SIZE       1GB    and the oldest blocks too once the data is larger
#   PROMETHEUS_EXTERNAL_URL         (empty) the URL people reach Prometheus at, for the links in
#                                          alerts; empty: http://<container name>:9090
#   API_METRICS_HOST                api    DNS name of the API's instances (every A record is one
#                                          target; on a Swarm: tasks.api)
#   API_METRICS_PORT                9100   the port the API serves /metrics on (plain HTTP)
#   NGINX_EXPORTER_TARGET   nginx-exporter:9113   host:port of the nginx exporter; empty: no
#                                          nginx job (its scrape file is left out)
#   ALERTMANAGER_TARGET     alertmanager:9093     host:port alerts are sent to
#   ALERT_DOWN_FOR                  1m     APIDown, NginxDown: unreachable this long
#   ALERT_NOT_READY_FOR             1m     APINotReady: readiness failing this long
#   ALERT_ERROR_RATIO               0.01   APIHighErrorRatio: 5xx share of all answers above this
#   ALERT_ERROR_RATIO_FOR           5m     ... for this long
#   ALERT_P99_LATENCY_SECONDS       0.5    APIHighLatency: p99 over 5 minutes above this
#   ALERT_LATENCY_FOR               10m    ... for this long
set -eu

SRC_DIR=/etc/prometheus/stack
CONF_DIR=/tmp/prometheus

die() {
    echo "docker-entrypoint: error: $*" >&2
    exit 64
}

# ---- 1. settings ---------------------------------------------------------

: "${PROMETHEUS_SCRAPE_INTERVAL:=15s}"
: "${PROMETHEUS_SCRAPE_TIMEOUT:=}"
: "${PROMETHEUS_EVALUATION_INTERVAL:=15s}"
: "${PROMETHEUS_RETENTION_TIME:=15d}"
: "${PROMETHEUS_RETENTION_SIZE:=1GB}"
: "${PROMETHEUS_EXTERNAL_URL:=}"
: "${API_METRICS_HOST:=api}"
: "${API_METRICS_PORT:=9100}"
: "${NGINX_EXPORTER_TARGET=nginx-exporter:9113}"
: "${ALERTMANAGER_TARGET:=alertmanager:9093}"
: "${ALERT_DOWN_FOR:=1m}"
: "${ALERT_NOT_READY_FOR:=1m}"
: "${ALERT_ERROR_RATIO:=0.01}"
: "${ALERT_ERROR_RATIO_FOR:=5m}"
: "${ALERT_P99_LATENCY_SECONDS:=0.5}"
: "${ALERT_LATENCY_FOR:=10m}"

match() { # match VALUE ERE: the whole value, one line
    case "$1" in *"
"*) return 1 ;; esac
    printf '%s\n' "$1" | grep -Eqx -- "$2"
}

require() { # require NAME ERE DESCRIPTION
    eval "value=\${$1}"
    # shellcheck disable=SC2154 # set by eval
    match "$value" "$2" || die "$1='$value' is not $3"
}

DURATION='([0-9]+(ms|s|m|h|d|w|y))+'
HOST_PORT='[A-Za-z0-9._-]+:[0-9]{1,5}'
NUMBER='[0-9]+(\.[0-9]+)?'
for name in PROMETHEUS_SCRAPE_INTERVAL PROMETHEUS_EVALUATION_INTERVAL \
    PROMETHEUS_RETENTION_TIME ALERT_DOWN_FOR ALERT_NOT_READY_FOR ALERT_ERROR_RATIO_FOR \
    ALERT_LATENCY_FOR; do
    require "$name" "$DURATION" 'a duration like 15s, 5m or 1h30m'
done
require PROMETHEUS_SCRAPE_TIMEOUT "($DURATION)?" 'empty or a duration like 10s'
if [ -n "$PROMETHEUS_SCRAPE_TIMEOUT" ]; then
    PROMETHEUS_SCRAPE_TIMEOUT_LINE="scrape_timeout: $PROMETHEUS_SCRAPE_TIMEOUT"
else
    PROMETHEUS_SCRAPE_TIMEOUT_LINE=
fi
require PROMETHEUS_RETENTION_SIZE '[0-9]+(B|KB|MB|GB|TB|PB|EB)' 'a size like 512MB or 1GB'
require PROMETHEUS_EXTERNAL_URL '(https?://[^[:space:]"'"'"'\\]+)?' 'empty or an http(s) URL'
require API_METRICS_HOST '[A-Za-z0-9._-]+' 'a host name'
require API_METRICS_PORT '[1-9][0-9]{0,4}' 'a port number'
require NGINX_EXPORTER_TARGET "($HOST_PORT)?" 'empty or host:port'
require ALERTMANAGER_TARGET "$HOST_PORT" 'host:port'
require ALERT_ERROR_RATIO "$NUMBER" 'a ratio like 0.01 (1%)'
require ALERT_P99_LATENCY_SECONDS "$NUMBER" 'a number of seconds like 0.5'

RENDER_VARS='
    PROMETHEUS_SCRAPE_INTERVAL PROMETHEUS_SCRAPE_TIMEOUT_LINE PROMETHEUS_EVALUATION_INTERVAL
    API_METRICS_HOST API_METRICS_PORT NGINX_EXPORTER_TARGET ALERTMANAGER_TARGET
    ALERT_DOWN_FOR ALERT_NOT_READY_FOR ALERT_ERROR_RATIO ALERT_ERROR_RATIO_FOR
    ALERT_P99_LATENCY_SECONDS ALERT_LATENCY_FOR
'
# shellcheck disable=SC2086 # word splitting of the list is intended
export $RENDER_VARS

# ---- 2. render -----------------------------------------------------------

[ -w /tmp ] || die "/tmp is not writable (run with --tmpfs /tmp, or compose tmpfs: [/tmp])"

umask 022
rm -rf "$CONF_DIR"
mkdir -p "$CONF_DIR"
cp -R "$SRC_DIR/." "$CONF_DIR/"
# No nginx exporter (a Swarm, where nginx runs on every node): no nginx job to scrape.
[ -n "$NGINX_EXPORTER_TARGET" ] || rm -f "$CONF_DIR/scrape.d/nginx.yaml.template"

envsubst_list=$(for v in $RENDER_VARS; do printf '${%s} ' "$v"; done)
find "$CONF_DIR" -type f -name '*.template' | while read -r template; do
    envsubst "$envsubst_list" <"$template" >"${template%.template}"
    rm -f "$template"
done

# ---- 3. run --------------------------------------------------------------

CONFIG=$CONF_DIR/prometheus.yml

case "${1:-}" in
    check)
        promtool check config --syntax-only "$CONFIG"
        promtool check rules "$CONF_DIR"/rules/*.yaml
        exec promtool test rules "$CONF_DIR"/tests/*.test.yaml
        ;;
    prometheus)
        shift
        # A bad setting (a timeout longer than the interval, say) is named here, before start.
        if ! report=$(promtool check config "$CONFIG" 2>&1); then
            printf '%s\n' "$report" >&2
            die "the rendered configuration is invalid (see above)"
        fi
        if [ -n "$PROMETHEUS_EXTERNAL_URL" ]; then
            set -- --web.external-url="$PROMETHEUS_EXTERNAL_URL" "$@"
        fi
        set -- /usr/bin/prometheus \
            --config.file="$CONFIG" \
            --storage.tsdb.path=/prometheus \
            --storage.tsdb.retention.time="$PROMETHEUS_RETENTION_TIME" \
            --storage.tsdb.retention.size="$PROMETHEUS_RETENTION_SIZE" \
            --web.listen-address=:9090 \
            "$@"
        ;;
esac

exec "$@"
