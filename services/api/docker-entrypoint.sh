#!/bin/sh
# Container start: migrate once, then hand PID 1 to gunicorn so it receives the signals.
# Running migrations here (not in the workers) means they never race each other.
set -eu

if [ "$#" -gt 0 ]; then
    # One-off commands, e.g. `docker run IMAGE python -m api.migrate`.
    exec "$@"
fi

python -m api.migrate
exec gunicorn -c /app/gunicorn.conf.py api.wsgi:app
