#!/bin/sh
# Container start: migrate once (unless MIGRATE_ON_START=false, for deployments that run the
# migration as a job), then hand PID 1 to gunicorn so it receives the signals. Never in the
# workers; and concurrent runs from several containers queue on a lock (api/migrate.py).
set -eu

if [ "$#" -gt 0 ]; then
    # One-off commands, e.g. `docker run IMAGE python -m api.migrate`.
    exec "$@"
fi

python -m api.migrate --on-start
exec gunicorn -c /app/gunicorn.conf.py api.wsgi:app
