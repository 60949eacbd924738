#!/bin/sh
# ----------------------------------------------------------------------
# nginx container entrypoint: render the configuration, then exec nginx.
# ----------------------------------------------------------------------
#
# 1. Apply defaults to the settings below and validate them, so a typo fails
#    here with a clear message instead of as an nginx parse error.
# 2. Copy the configuration tree (/etc/nginx/stack, read-only in the image)
#    to /tmp/nginx and render every *.template with envsubst. Only the
#    variables listed in RENDER_VARS are substituted; nginx's own $variables
#    are left alone.
# 3. exec the command (default: nginx -g 'daemon off;'), so nginx replaces
#    this shell, is PID 1 (or tini's child with compose `init: true`) and
#    receives docker's stop signal (SIGQUIT: graceful, see the Dockerfile).
#
# Nothing is written outside /tmp, and nothing needs a particular uid: this
# works read-only, as uid 10001 or as any other non-root uid.
#
# Settings (environment variable, default):
#   SERVER_NAME               localhost      server_name of both servers
#   PUBLIC_HTTPS_PORT         443            port clients use for HTTPS: the
#                                            redirect target and X-Forwarded-Port
#   TLS_CERT                  /etc/nginx/certs/server.pem   full chain
#   TLS_KEY                   /etc/nginx/certs/server.key
#   API_UPSTREAM              api:8000       host:port of gunicorn
#   API_RESOLVE_INTERVAL      5              seconds between re-resolutions
#                                            of the API host; 0 = never (on a
#                                            Swarm: 1, see deploy/swarm)
#   API_KEEPALIVE_TIMEOUT     1s             idle upstream keep-alive; keep it
#                                            below gunicorn's --keep-alive
#   NGINX_WORKER_PROCESSES    2
#   NGINX_WORKER_CONNECTIONS  4096
#   CLIENT_MAX_BODY_SIZE      1m             larger bodies: 413 from nginx
#   HSTS_MAX_AGE              63072000       seconds (0 = tell browsers to
#                                            forget HSTS for this host)
#   RATE_LIMIT_ENABLED        true           false/0/no/off: no limits at all
#   RATE_LIMIT_API            20r/s          per client address, /api/ etc.
#   RATE_LIMIT_API_BURST      40
#   RATE_LIMIT_AUTH           10r/m          sign-up and key rotation
#   RATE_LIMIT_AUTH_BURST     10
#   CONN_LIMIT_PER_IP         50             concurrent proxied requests
#   ACCESS_LOG_BUFFER         (empty)        e.g. 64k: buffer the access log,
#                                            flushed at least every second
#   CORS_ALLOWED_ORIGINS      (empty)        browser origins allowed to call
#                                            the API, comma-separated (the
#                                            API's setting too); empty = CORS
#                                            off, see conf.d/cors.conf
#
# There is deliberately no NGINX_RESOLVER: the API host is resolved by this
# script and re-resolved by its watcher through the system resolver
# (/etc/resolv.conf, which Docker points at its embedded DNS), see
# conf.d/upstream.conf for why.
set -eu

SRC_DIR=/etc/nginx/stack
CONF_DIR=/tmp/nginx

die() {
    echo "docker-entrypoint: error: $*" >&2
    exit 64
}

# ---- 1. settings ---------------------------------------------------------

: "${SERVER_NAME:=localhost}"
: "${PUBLIC_HTTPS_PORT:=443}"
: "${TLS_CERT:=/etc/nginx/certs/server.pem}"
: "${TLS_KEY:=/etc/nginx/certs/server.key}"
: "${API_UPSTREAM:=api:8000}"
: "${API_RESOLVE_INTERVAL:=5}"
: "${API_KEEPALIVE_TIMEOUT:=1s}"
: "${NGINX_WORKER_PROCESSES:=2}"
: "${NGINX_WORKER_CONNECTIONS:=4096}"
: "${CLIENT_MAX_BODY_SIZE:=1m}"
: "${HSTS_MAX_AGE:=63072000}"
: "${RATE_LIMIT_ENABLED:=true}"
: "${RATE_LIMIT_API:=20r/s}"
: "${RATE_LIMIT_API_BURST:=40}"
: "${RATE_LIMIT_AUTH:=10r/m}"
: "${RATE_LIMIT_AUTH_BURST:=10}"
: "${CONN_LIMIT_PER_IP:=50}"
: "${ACCESS_LOG_BUFFER:=}"
: "${CORS_ALLOWED_ORIGINS:=}"

# match VALUE ERE: true when VALUE matches the whole extended regex.
match() { # the whole value, one line: grep alone would accept a value if any one line matched
    case "$1" in *"
"*) return 1 ;; esac
    printf '%s\n' "$1" | grep -Eqx -- "$2"
}

require() { # require NAME ERE DESCRIPTION
    eval "value=\${$1}"
    # shellcheck disable=SC2154 # set by eval
    match "$value" "$2" || die "$1='$value' is not $3"
}

require SERVER_NAME '[A-Za-z0-9._*~^-]+( [A-Za-z0-9._*~^-]+)*' 'a list of host names'
require PUBLIC_HTTPS_PORT '[1-9][0-9]{0,4}' 'a port number'
require TLS_CERT '/[^ ;{}$]*' 'an absolute path'
require TLS_KEY '/[^ ;{}$]*' 'an absolute path'
require API_UPSTREAM '[A-Za-z0-9._-]+:[0-9]{1,5}' 'host:port'
require API_RESOLVE_INTERVAL '[0-9]+' 'a number of seconds'
require API_KEEPALIVE_TIMEOUT '[0-9]+(ms|s)?' 'a duration like 1s'
require NGINX_WORKER_PROCESSES '[1-9][0-9]*|auto' 'a positive number or auto'
require NGINX_WORKER_CONNECTIONS '[1-9][0-9]*' 'a positive number'
require CLIENT_MAX_BODY_SIZE '[0-9]+[kKmMgG]?' 'a size like 1m'
require HSTS_MAX_AGE '[0-9]+' 'a number of seconds'
require RATE_LIMIT_API '[1-9][0-9]*r/[sm]' 'a rate like 20r/s or 10r/m'
# A burst of 0 is refused by nginx itself (limit_req: "invalid burst value").
require RATE_LIMIT_API_BURST '[1-9][0-9]*' 'a positive number'
require RATE_LIMIT_AUTH '[1-9][0-9]*r/[sm]' 'a rate like 20r/s or 10r/m'
require RATE_LIMIT_AUTH_BURST '[1-9][0-9]*' 'a positive number'
require CONN_LIMIT_PER_IP '[1-9][0-9]*' 'a positive number'
require ACCESS_LOG_BUFFER '([1-9][0-9]*[kKmM]?)?' 'empty or a size like 64k'

case "$(printf '%s' "$RATE_LIMIT_ENABLED" | tr 'A-Z' 'a-z')" in
    true | 1 | yes | on) RATE_LIMIT_SWITCH=on ;;
    false | 0 | no | off) RATE_LIMIT_SWITCH=off ;;
    *) die "RATE_LIMIT_ENABLED='$RATE_LIMIT_ENABLED' is not true or false" ;;
esac

# Retry-After for a rate: the seconds until the next request is allowed,
# 1 / rate rounded up (20r/s -> 1, 10r/m -> 6).
retry_after() {
    n=${1%r/*}
    case "$1" in
        */s) echo 1 ;;
        */m) echo $(((60 + n - 1) / n)) ;;
    esac
}
RATE_LIMIT_API_RETRY_AFTER=$(retry_after "$RATE_LIMIT_API")
RATE_LIMIT_AUTH_RETRY_AFTER=$(retry_after "$RATE_LIMIT_AUTH")

NGINX_WORKER_RLIMIT_NOFILE=$((NGINX_WORKER_CONNECTIONS * 2))

if [ "$PUBLIC_HTTPS_PORT" = 443 ]; then
    HTTPS_PORT_SUFFIX=
else
    HTTPS_PORT_SUFFIX=":$PUBLIC_HTTPS_PORT"
fi

if [ -n "$ACCESS_LOG_BUFFER" ]; then
    ACCESS_LOG_OPTIONS="buffer=$ACCESS_LOG_BUFFER flush=1s"
else
    ACCESS_LOG_OPTIONS=
fi

# CORS_ALLOWED_ORIGINS: each origin exactly as a browser sends it in the
# Origin header: scheme://host[:port], lower case (upper case is lowered
# here), no path or trailing slash, no default port (:443 for https, :80 for
# http), and no '*'. The same rules as the API's setting
# (services/api/src/api/core/config.py; a unit test runs this script to hold
# the two together). Each origin becomes one line of the map in
# conf.d/cors.conf; CORS_SWITCH and CORS_VARY are "off" and empty without any.
ORIGIN_ERE='https?://([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[1-9][0-9]{0,4})?'
case "$CORS_ALLOWED_ORIGINS" in
    *"
"*) die "CORS_ALLOWED_ORIGINS must be one line: origins separated by commas" ;;
esac
CORS_ORIGIN_MAP=
cors_seen=' '
set -f # a '*' in the list is a value to refuse, not a file name pattern
old_ifs=$IFS
IFS=,
for entry in $CORS_ALLOWED_ORIGINS; do
    IFS=$old_ifs
    origin=$(printf '%s' "$entry" | tr 'A-Z' 'a-z' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    case "$origin" in
        '') continue ;;
        '*') die "CORS_ALLOWED_ORIGINS: '*' is not accepted (every website could then call the API from its visitors' browsers): list each origin, e.g. https://app.example.com" ;;
    esac
    match "$origin" "$ORIGIN_ERE" ||
        die "CORS_ALLOWED_ORIGINS: '$entry' is not an origin: write scheme://host[:port], e.g. https://app.example.com, with no path and no trailing slash"
    scheme=${origin%%://*}
    rest=${origin#*://}
    if match "$rest" '.*:[0-9]+'; then
        port=${rest##*:}
        [ "$port" -le 65535 ] || die "CORS_ALLOWED_ORIGINS: '$entry': $port is not a port number"
        case "$scheme:$port" in
            https:443 | http:80) die "CORS_ALLOWED_ORIGINS: '$entry': browsers send $scheme://${rest%:*} without its default port; write that" ;;
        esac
    fi
    case "$cors_seen" in
        *" $origin "*) continue ;; # nginx refuses a map that lists a key twice
    esac
    cors_seen="$cors_seen$origin "
    CORS_ORIGIN_MAP="$CORS_ORIGIN_MAP    \"$origin\"  \"$origin\";
"
done
IFS=$old_ifs
set +f
if [ -n "$CORS_ORIGIN_MAP" ]; then
    CORS_SWITCH=on
    CORS_VARY=Origin
else
    CORS_SWITCH=off
    CORS_VARY=
fi

# The most common deployment mistake, with its fix: a 0600 key owned by the
# host user is unreadable for the container's default uid.
for f in "$TLS_CERT" "$TLS_KEY"; do
    [ -e "$f" ] || die "$f does not exist (mount the certificates read-only at /etc/nginx/certs, or set TLS_CERT/TLS_KEY)"
    [ -r "$f" ] || die "$f is not readable by uid $(id -u) (run the container as the file's owner, e.g. user: \"\$(id -u):\$(id -g)\" in compose, or make it group-readable)"
done

RENDER_VARS='
    SERVER_NAME PUBLIC_HTTPS_PORT HTTPS_PORT_SUFFIX TLS_CERT TLS_KEY
    API_KEEPALIVE_TIMEOUT
    NGINX_WORKER_PROCESSES NGINX_WORKER_CONNECTIONS NGINX_WORKER_RLIMIT_NOFILE
    CLIENT_MAX_BODY_SIZE
    HSTS_MAX_AGE RATE_LIMIT_SWITCH RATE_LIMIT_API RATE_LIMIT_API_BURST
    RATE_LIMIT_API_RETRY_AFTER RATE_LIMIT_AUTH RATE_LIMIT_AUTH_BURST
    RATE_LIMIT_AUTH_RETRY_AFTER CONN_LIMIT_PER_IP ACCESS_LOG_OPTIONS
    CORS_SWITCH CORS_ORIGIN_MAP CORS_VARY
'
# shellcheck disable=SC2086 # word splitting of the list is intended
export $RENDER_VARS

# ---- 2. render -----------------------------------------------------------

[ -w /tmp ] || die "/tmp is not writable (run with --tmpfs /tmp, or compose tmpfs: [/tmp])"

umask 022
rm -rf "$CONF_DIR"
mkdir -p "$CONF_DIR/tmp"
cp -R "$SRC_DIR/." "$CONF_DIR/"

envsubst_list=$(for v in $RENDER_VARS; do printf '${%s} ' "$v"; done)
find "$CONF_DIR" -type f -name '*.template' | while read -r template; do
    envsubst "$envsubst_list" <"$template" >"${template%.template}"
    rm -f "$template"
done

# ---- 3. run --------------------------------------------------------------

# The API's addresses (conf.d/upstream.conf says why nginx gets addresses
# rather than the name). The watcher re-resolves in the background and, when
# the set changes, rewrites the file and reloads nginx gracefully. If the name
# does not resolve at the moment (the API being replaced), the last addresses
# stay. The loop is a child of nginx once this shell execs; it ends with the
# container.
API_HOST=${API_UPSTREAM%:*}
API_PORT=${API_UPSTREAM##*:}
API_SERVERS=$CONF_DIR/api-servers.conf

addresses_of() { # sorted, comma-separated IPv4 addresses; empty if none
    getent ahostsv4 "$1" 2>/dev/null | awk '{print $1}' | sort -u | paste -sd, - || true
}

write_api_servers() { # write_api_servers ADDRESSES (comma-separated; empty: none yet)
    if [ -z "$1" ]; then
        printf '# %s does not resolve yet: every request is a 502 until it does.\nserver 127.0.0.1:%s down;\n' \
            "$API_HOST" "$API_PORT" >"$API_SERVERS.new"
    else
        printf '%s\n' "$1" | tr ',' '\n' |
            awk -v port="$API_PORT" '{printf "server %s:%s max_fails=1 fail_timeout=5s;\n", $1, port}' \
                >"$API_SERVERS.new"
    fi
    mv "$API_SERVERS.new" "$API_SERVERS"
}

watch_api_addresses() { # watch_api_addresses LAST
    last=$1
    while sleep "$API_RESOLVE_INTERVAL"; do
        now=$(addresses_of "$API_HOST")
        if [ -n "$now" ] && [ "$now" != "$last" ]; then
            echo "docker-entrypoint: $API_HOST now resolves to $now (was ${last:-unresolved}); reloading nginx" >&2
            write_api_servers "$now"
            nginx -s reload && last=$now
        fi
    done
}

api_addresses=$(addresses_of "$API_HOST")
[ -n "$api_addresses" ] ||
    echo "docker-entrypoint: $API_HOST does not resolve yet; answering 502 until it does" >&2
write_api_servers "$api_addresses"

# An address (API_UPSTREAM=10.0.0.5:8000) never changes: no watcher.
if [ "${1:-}" = nginx ] && [ "$API_RESOLVE_INTERVAL" -gt 0 ] && ! match "$API_HOST" '[0-9.]+'; then
    case " $* " in
        *" -t "* | *" -T "* | *" -v "* | *" -V "* | *" -s "*) ;;
        *) watch_api_addresses "$api_addresses" </dev/null & ;;
    esac
fi

exec "$@"
