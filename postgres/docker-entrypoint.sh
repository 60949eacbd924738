#!/bin/sh
# Container start: on an empty volume create the cluster (superuser with its password, the
# application's database), then exec postgres so the stop signal reaches the server itself.
#
#   docker run IMAGE                      the server
#   docker run IMAGE -c work_mem=16MB     the server with extra settings
#   docker run IMAGE psql ...             any other command as is, e.g. a client
set -eu

case "${1:-}" in
    '' | -*) ;;
    *) exec "$@" ;;
esac

POSTGRES_USER="${POSTGRES_USER:-api}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
CONFIG=/etc/postgresql/stack/postgresql.conf

die() {
    echo "postgres: $*" >&2
    exit 1
}

# The password is read from a file (a compose secret), never from the environment; only on the
# first start: afterwards it lives in the cluster, and changing it is ALTER ROLE (docs/deploy.md).
check_password_file() {
    file="${POSTGRES_PASSWORD_FILE:-}"
    [ -n "$file" ] || die "POSTGRES_PASSWORD_FILE is not set; it must name the file holding the superuser's password"
    [ -f "$file" ] || die "POSTGRES_PASSWORD_FILE=$file: no such file, or not reachable by uid $(id -u)"
    [ -r "$file" ] || die "POSTGRES_PASSWORD_FILE=$file: not readable by uid $(id -u)"
    # initdb --pwfile takes the first line without its newline; a blank one would be no password.
    [ -n "$(head -n 1 "$file")" ] || die "POSTGRES_PASSWORD_FILE=$file: the first line is empty"
}

# Built next to PGDATA and moved into place once complete, so a start that dies half-way (no
# space, killed) leaves no half-made cluster that the next start would take for a real one.
init_cluster() {
    check_password_file
    volume=$(dirname "$PGDATA")
    [ -w "$volume" ] || die "$volume is not writable by uid $(id -u); give the volume to that uid"
    staging="$PGDATA.init"
    rm -rf "$staging"
    # C.UTF-8 sorts by code point: no collation changes, and so no broken indexes, on glibc
    # updates. Checksums make PostgreSQL report a page the disk corrupted instead of reading it
    # (PostgreSQL 18's default).
    initdb --pgdata="$staging" --username="$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
        --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        --data-checksums --no-instructions
    # A private socket directory and no TCP: neither the health check (which looks in /tmp) nor
    # the API can reach this temporary server and take it for the real one.
    socket_dir=$(mktemp -d)
    pg_ctl --pgdata="$staging" --wait --silent start \
        -o "-c config_file=$CONFIG -c listen_addresses='' -c unix_socket_directories=$socket_dir"
    if [ "$POSTGRES_DB" != postgres ]; then
        createdb --host="$socket_dir" --username="$POSTGRES_USER" -- "$POSTGRES_DB"
    fi
    pg_ctl --pgdata="$staging" --wait --silent --mode=fast stop
    rmdir "$socket_dir"
    mv "$staging" "$PGDATA"
    echo "postgres: created the cluster, superuser $POSTGRES_USER, database $POSTGRES_DB" >&2
}

if [ -s "$PGDATA/PG_VERSION" ]; then
    : # an existing cluster: never initialise again
elif [ -e "$PGDATA" ]; then
    die "$PGDATA exists but holds no cluster (no PG_VERSION); move it away or start on an empty volume"
else
    init_cluster
fi

# max_connections must cover every pooled connection the API can open at once:
#   API replicas x gunicorn workers x (DATABASE_POOL_SIZE + DATABASE_POOL_MAX_OVERFLOW)
#   + migration jobs (one connection each) + superuser_reserved_connections (3).
# E.g. 3 replicas x 4 workers x (5 + 0) = 60: the default 100 leaves room for a rolling update's
# extra replica (+20) and a few admin sessions. Each connection costs a few MB of RAM.
exec postgres -D "$PGDATA" -c config_file="$CONFIG" \
    -c max_connections="${POSTGRES_MAX_CONNECTIONS:-100}" "$@"
