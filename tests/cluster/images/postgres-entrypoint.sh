#!/bin/sh
# docker-entrypoint.sh of the test cluster's postgres:15 image, built from Debian's PostgreSQL 15.
# It keeps the official image's contract: POSTGRES_PASSWORD (required unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER, POSTGRES_DB, PGDATA (default
# /var/lib/postgresql/data); an empty data directory is initialised; the server runs as postgres
# (uid 999). Like the official image it refuses a data directory that holds only `lost+found`
# (a volume's root): set PGDATA to a subdirectory of the mount, e.g. /var/lib/postgresql/data/pgdata.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
# Anything but the server (or server flags) runs as given.
if [ "$#" -gt 0 ] && [ "$1" != postgres ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi
[ "${1:-}" = postgres ] && shift

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown 999:999 /var/run/postgresql
  chmod 2775 /var/run/postgresql
  # A restored or fresh volume may hold files of another owner: the server needs to own them.
  find "$PGDATA" ! -user 999 -exec chown 999:999 {} \;
  chmod 700 "$PGDATA"
  exec runas 999:999 "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "$(ls -A "$PGDATA")" ]; then
    if [ "$(ls -A "$PGDATA")" = "lost+found" ]; then
      echo "error: $PGDATA holds only lost+found: it is a mount point; set PGDATA to a subdirectory of it (e.g. $PGDATA/pgdata)" >&2
    else
      echo "error: $PGDATA is not empty and holds no database (no PG_VERSION); refusing to initialise over it" >&2
    fi
    exit 1
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    echo "error: the database is uninitialised and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  pwflag="--pwfile=$pwfile"
  [ -n "${POSTGRES_PASSWORD:-}" ] || pwflag=""
  initdb -D "$PGDATA" --username="$user" $pwflag --encoding=UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\njit = off\n" >> "$PGDATA/postgresql.conf"
  db="${POSTGRES_DB:-$user}"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$db" | postgres --single -D "$PGDATA" postgres > /dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec postgres -D "$PGDATA" "$@"
