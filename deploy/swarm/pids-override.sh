#!/bin/sh
# The process limits of the Swarm stack from the *_PIDS_LIMIT variables that are set, as a compose
# file to deploy after stack.yaml (and monitoring.yaml); prints nothing when none is set.
#
#   deploy/swarm/pids-override.sh api nginx db migrate > pids.yaml   # API_PIDS_LIMIT=256 ...
#   docker stack deploy -c deploy/swarm/stack.yaml -c pids.yaml flask-stack
#
# Why a file of its own: `docker stack deploy` substitutes variables but leaves the result a
# string, and a number is required there ("pids must be a integer"), so the stack files carry the
# defaults as numbers (the same as compose.yaml's) and `make swarm-deploy` adds this file.
set -eu
services=""
for service in "$@"; do
    var="$(printf '%s' "$service" | tr 'a-z-' 'A-Z_')_PIDS_LIMIT"
    value="$(printenv "$var" || true)"
    [ -n "$value" ] || continue
    case "$value" in
        "" | *[!0-9]*) echo "$var must be a whole number, not '$value'" >&2; exit 2 ;;
    esac
    services="$services  $service:
    deploy:
      resources:
        limits:
          pids: $value
"
done
[ -z "$services" ] || printf 'services:\n%s' "$services"
