#!/bin/sh
# ----------------------------------------------------------------------
# Alertmanager container entrypoint: render the configuration, then run.
# ----------------------------------------------------------------------
#
# As nginx's (nginx/docker-entrypoint.sh): apply defaults to the settings below and validate them,
# render /etc/alertmanager/stack/alertmanager.yml.template into /tmp/alertmanager with envsubst,
# then:
#   alertmanager [FLAGS...]  check the configuration (amtool) and exec Alertmanager (default);
#   anything else            exec'd as given (e.g. amtool alert query --alertmanager.url=...).
#
# Settings (environment variable, default):
#   ALERT_WEBHOOK_URL       (empty)  where every notification is POSTed (Alertmanager's webhook
#                                    JSON, resolved alerts too); empty: none is sent, the alerts
#                                    are only listed by the API (GET :9093/api/v2/alerts)
#   ALERT_GROUP_WAIT        30s      wait for more alerts of a new group before notifying
#   ALERT_GROUP_INTERVAL    5m       before notifying new alerts of a group already notified
#   ALERT_REPEAT_INTERVAL   4h       repeat a notification of alerts still firing
set -eu

SRC=/etc/alertmanager/stack/alertmanager.yml.template
CONF_DIR=/tmp/alertmanager
CONFIG=$CONF_DIR/alertmanager.yml

die() {
    echo "docker-entrypoint: error: $*" >&2
    exit 64
}

: "${ALERT_WEBHOOK_URL:=}"
: "${ALERT_GROUP_WAIT:=30s}"
: "${ALERT_GROUP_INTERVAL:=5m}"
: "${ALERT_REPEAT_INTERVAL:=4h}"

match() { # match VALUE ERE: the whole value, one line
    case "$1" in *"
"*) return 1 ;; esac
    printf '%s\n' "$1" | grep -Eqx -- "$2"
}

DURATION='([0-9]+(ms|s|m|h|d|w|y))+'
for name in ALERT_GROUP_WAIT ALERT_GROUP_INTERVAL ALERT_REPEAT_INTERVAL; do
    eval "value=\${$name}"
    # shellcheck disable=SC2154 # set by eval
    match "$value" "$DURATION" || die "$name='$value' is not a duration like 30s or 5m"
done
# Written between double quotes into YAML: no quote, backslash or space can end it early.
match "$ALERT_WEBHOOK_URL" '(https?://[^[:space:]"\\]+)?' ||
    die "ALERT_WEBHOOK_URL is not empty or an http(s) URL"

if [ -n "$ALERT_WEBHOOK_URL" ]; then
    ALERT_RECEIVER_CONFIGS="    webhook_configs:
      - url: \"$ALERT_WEBHOOK_URL\"
        send_resolved: true"
else
    echo "docker-entrypoint: ALERT_WEBHOOK_URL is empty: alerts are not sent anywhere" >&2
    ALERT_RECEIVER_CONFIGS=
fi
export ALERT_GROUP_WAIT ALERT_GROUP_INTERVAL ALERT_REPEAT_INTERVAL ALERT_RECEIVER_CONFIGS

[ -w /tmp ] || die "/tmp is not writable (run with --tmpfs /tmp, or compose tmpfs: [/tmp])"
# The URL may carry a token: the rendered file is for this uid only.
umask 077
rm -rf "$CONF_DIR"
mkdir -p "$CONF_DIR"
envsubst '${ALERT_GROUP_WAIT} ${ALERT_GROUP_INTERVAL} ${ALERT_REPEAT_INTERVAL} ${ALERT_RECEIVER_CONFIGS}' \
    <"$SRC" >"$CONFIG"

if [ "${1:-}" = alertmanager ]; then
    shift
    if ! report=$(amtool check-config "$CONFIG" 2>&1); then
        printf '%s\n' "$report" >&2
        die "the rendered configuration is invalid (see above)"
    fi
    # No cluster: one Alertmanager (a cluster needs its own gossip port between peers).
    set -- /usr/bin/prometheus-alertmanager \
        --config.file="$CONFIG" \
        --storage.path=/alertmanager \
        --web.listen-address=:9093 \
        --cluster.listen-address= \
        "$@"
fi

exec "$@"
