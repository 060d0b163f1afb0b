#!/usr/bin/env bash
# Entrypoint of the counter example's Postgres image.
#
# As root: make sure $PGDATA belongs to postgres, then re-run as postgres.
# As postgres:
#   - first start (empty $PGDATA): initdb with password (scram-sha-256) auth,
#     listen_addresses='*' and a pg_hba.conf that accepts password logins from
#     anywhere;
#   - every start: set the password of $POSTGRES_USER from $POSTGRES_PASSWORD
#     and create $POSTGRES_DB if it is missing, on a temporary server that
#     only listens on a private Unix socket;
#   - exec postgres in the foreground, so it is the process that receives
#     SIGINT/SIGTERM from `docker stop`.
#
# Environment: POSTGRES_PASSWORD (required for the first start),
# POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER).
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
export PGDATA POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD

log() { printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# `docker compose run db bash` and friends run the command as given.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    # A volume restored or created by someone else: hand it to postgres.
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        log "error: \$PGDATA is empty and POSTGRES_PASSWORD is not set"
        exit 1
    fi
    log "initialising a new cluster in $PGDATA (superuser $POSTGRES_USER)"
    pwfile="$(mktemp)"   # mode 0600
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >&2
    rm -f "$pwfile"

    cat > "$PGDATA/pg_hba.conf" <<'HBA'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
host    all       all   0.0.0.0/0     scram-sha-256
host    all       all   ::/0          scram-sha-256
HBA
    {
        echo
        echo "# added by docker-entrypoint.sh"
        echo "listen_addresses = '*'"
    } >> "$PGDATA/postgresql.conf"
fi

# Setup on a temporary server nobody else can reach: no TCP, a socket in a
# private 0700 directory, and a throw-away pg_hba.conf trusting that socket.
setupdir="$(mktemp -d)"
trap 'rm -rf "$setupdir"' EXIT
echo 'local all all trust' > "$setupdir/pg_hba.conf"
log "applying POSTGRES_PASSWORD / POSTGRES_DB on a temporary server"
pg_ctl --pgdata="$PGDATA" --wait --timeout=120 --silent \
    --options="-c listen_addresses='' -c unix_socket_directories='$setupdir' -c hba_file='$setupdir/pg_hba.conf'" \
    start >&2
psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --host="$setupdir" \
    --username="$POSTGRES_USER" --dbname=postgres >&2 <<'SQL'
\getenv pw POSTGRES_PASSWORD
\getenv role POSTGRES_USER
\getenv db POSTGRES_DB
SELECT :'pw' <> '' AS have_pw \gset
\if :have_pw
ALTER ROLE :"role" WITH PASSWORD :'pw';
\endif
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
pg_ctl --pgdata="$PGDATA" --wait --timeout=120 --silent --mode=fast stop >&2
rm -rf "$setupdir"
trap - EXIT

log "starting postgres"
exec "$@"
