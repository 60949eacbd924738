#!/bin/sh
# Container start: migrate once (unless MIGRATE_ON_START=false, for deployments that run the
# migration as a job), then run gunicorn. Never in the workers; and concurrent runs from several
# containers queue on a lock (api/migrate.py).
#
# Stop: with SHUTDOWN_DRAIN_SECONDS=0 (the default) gunicorn is PID 1 and gets the stop signal
# directly. Above 0 this shell stays PID 1 and, on SIGTERM/SIGINT, keeps gunicorn serving for that
# many seconds before passing the signal on: gunicorn closes its listening socket as soon as it is
# told to stop and has no pre-stop hook, so without the delay a proxy that has not yet noticed the
# replica going away (nginx re-resolves every API_RESOLVE_INTERVAL seconds) would connect to a
# closed port. The delay must be longer than that interval plus a reload; the stop timeout
# (compose stop_grace_period) longer than the delay plus GUNICORN_GRACEFUL_TIMEOUT.
set -eu

if [ "$#" -gt 0 ]; then
    # One-off commands, e.g. `docker run IMAGE python -m api.migrate`.
    exec "$@"
fi

drain=${SHUTDOWN_DRAIN_SECONDS:-0}
case "$drain" in
    # Checked here too (GunicornSettings checks it when gunicorn starts), because the shell uses it.
    '' | *[!0-9]*) echo "SHUTDOWN_DRAIN_SECONDS='$drain' is not a whole number of seconds" >&2; exit 64 ;;
esac

python -m api.migrate --on-start
if [ "$drain" -eq 0 ]; then
    exec gunicorn -c /app/gunicorn.conf.py api.wsgi:app
fi

gunicorn -c /app/gunicorn.conf.py api.wsgi:app &
gunicorn=$!
stopping=false
stop() {
    stopping=true
    echo "{\"level\": \"INFO\", \"logger\": \"entrypoint\", \"message\": \"stop signal: serving ${drain}s more, then stopping gunicorn\"}" >&2
    sleep "$drain"
    kill -TERM "$gunicorn" 2>/dev/null || true
}
trap stop TERM INT
# wait returns when gunicorn exits or when a trapped signal arrives (the trap then runs); after a
# stop signal, wait again for gunicorn's own exit status.
status=0
wait "$gunicorn" || status=$?
if "$stopping"; then
    status=0
    wait "$gunicorn" || status=$?
fi
exit "$status"
