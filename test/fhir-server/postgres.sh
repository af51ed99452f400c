#!/usr/bin/env bash
# A throwaway PostgreSQL for the test FHIR server, for benchmarks at hospital scale (bench P4 with 100,000
# reminders). The tests do not need it: they use HAPI's in-memory H2.
#
#   postgres.sh start [port]      initdb a fresh cluster in $TMPDIR/careway-pg (deleted first), start it on
#                                 127.0.0.1:<port> (default 55432) with a database `hapi`, and print the
#                                 HAPI_JDBC_URL to give hapi.sh start
#   postgres.sh stop              stop it
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql). As root, the cluster runs as the
# `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

# Under the temp dir: the `postgres` user must own it, and it may not reach into the checkout.
DATA="${TMPDIR:-/tmp}/careway-pg"

bin() {
	local name="$1"
	if command -v "$name" >/dev/null 2>&1; then
		command -v "$name"
		return
	fi
	# Debian installs the server binaries outside PATH.
	local found
	found="$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1)"
	[[ -n "$found" ]] || {
		echo "postgres.sh: $name not found (apt-get install postgresql)" >&2
		exit 1
	}
	echo "$found"
}

as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		su postgres -s /bin/bash -c "$*"
	else
		bash -c "$*"
	fi
}

start() {
	local port="${1:-55432}"
	stop >/dev/null 2>&1 || true
	rm -rf "$DATA"
	mkdir -p "$DATA"
	[[ $(id -u) -eq 0 ]] && chown postgres "$DATA" && chmod 700 "$DATA"
	as_owner "'$(bin initdb)' -D '$DATA' -A trust -U postgres >'$DATA.initdb.log' 2>&1"
	# Loopback only, trust auth: a benchmark's scratch database, never a place for real data.
	as_owner "'$(bin pg_ctl)' -D '$DATA' -l '$DATA/server.log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_connections=200\" start" >&2
	as_owner "'$(bin psql)' -h 127.0.0.1 -p $port -U postgres -q -c 'create database hapi'"
	echo "jdbc:postgresql://127.0.0.1:$port/hapi"
}

stop() {
	[[ -d "$DATA" ]] || return 0
	as_owner "'$(bin pg_ctl)' -D '$DATA' -m fast stop"
}

case "${1:-}" in
start) start "${2:-}" ;;
stop) stop ;;
*)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
