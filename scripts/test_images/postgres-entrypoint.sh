#!/bin/sh
# Entrypoint of the postgres:15 test image (scripts/build_test_images.py), after the official
# image's: the first start initialises $PGDATA, every start runs the server as user postgres,
# listening on 0.0.0.0:5432. Supported: POSTGRES_PASSWORD (password auth, scram-sha-256, for
# connections over TCP), POSTGRES_HOST_AUTH_METHOD (e.g. trust: no password needed),
# POSTGRES_USER (postgres), POSTGRES_DB (the user's name), POSTGRES_INITDB_ARGS, PGDATA
# (/var/lib/postgresql/data). Not supported: /docker-entrypoint-initdb.d scripts, *_FILE variants.
set -eu

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi
shift

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=}"
export PGDATA

as_postgres() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=postgres --regid=postgres --init-groups "$@"
	else
		"$@"
	fi
}

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /run/postgresql
	chown postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	chmod 3777 /run/postgresql
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "$POSTGRES_PASSWORD" ] && [ -z "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'MSG'
		Error: the database is not initialised and no superuser password is set.
		       Set POSTGRES_PASSWORD to a non-empty value (password auth over TCP), or
		       POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password.
		MSG
		exit 1
	fi
	method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	pwfile=""
	if [ -n "$POSTGRES_PASSWORD" ]; then
		pwfile=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
		chown postgres "$pwfile" 2>/dev/null || true
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is split into arguments on purpose
	as_postgres initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$method" \
		${POSTGRES_INITDB_ARGS:-} >/dev/null
	[ -z "$pwfile" ] || rm -f "$pwfile"
	printf 'host all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
	printf "listen_addresses = '0.0.0.0'\n" >>"$PGDATA/postgresql.conf"
	if [ "$POSTGRES_DB" != postgres ]; then
		printf 'CREATE DATABASE "%s"\n' "$POSTGRES_DB" |
			as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
	fi
	echo "PostgreSQL initialised in $PGDATA; starting the server" >&2
fi

exec_postgres() {
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid=postgres --regid=postgres --init-groups postgres "$@"
	fi
	exec postgres "$@"
}
exec_postgres "$@"
