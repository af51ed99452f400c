#!/usr/bin/env bash
# Build, start and wait for Careway's test FHIR server (HAPI FHIR JPA R4 on in-memory H2 or PostgreSQL).
#
#   hapi.sh build                 compile + copy jars to target/lib (skipped when up to date)
#   hapi.sh start [port]          build if needed, then exec the server in the foreground
#                                 (port: arg, else $HAPI_PORT, else 8090; binds 127.0.0.1 only)
#   hapi.sh wait <port> [secs]    poll /fhir/metadata until 200 (default 180 s), then print the
#                                 base URL http://127.0.0.1:<port>/fhir; exit 1 on timeout
#   hapi.sh go-offline            prefetch every Maven artifact (CI cache warm-up)
#
# Extra JVM flags can be passed with JAVA_OPTS. HAPI_JDBC_URL (jdbc:postgresql:…) puts it on PostgreSQL
# instead of in-memory H2 (postgres.sh starts one). HAPI_TUNING=throughput runs the JVM as a production server
# would (full JIT, G1, 4 GB heap) for benchmarks; the default, test, starts fast. Works from any working directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

MAIN_CLASS="org.careway.fhirserver.CarewayFhirServer"
STAMP="target/.build-stamp"

usage() {
	# $0 may be relative to the directory left by the cd above.
	sed -n '2,13p' "$HERE/$(basename "${BASH_SOURCE[0]}")" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# True when target/classes + target/lib exist and nothing in pom.xml/src is newer than the stamp.
up_to_date() {
	[[ -f "$STAMP" && -d target/classes && -d target/lib ]] || return 1
	[[ -n "$(ls -A target/lib 2>/dev/null)" ]] || return 1
	[[ -z "$(find pom.xml src -newer "$STAMP" -print -quit)" ]]
}

build() {
	up_to_date && return 0
	mkdir -p target
	# The lock fd lives only in this subshell, so the server exec'd later does not hold it.
	(
		# Serialise concurrent builds (parallel test workers) where flock exists.
		if command -v flock >/dev/null 2>&1; then
			flock 9
			up_to_date && exit 0 # another process built it while we waited
		fi
		echo "hapi.sh: building FHIR server launcher (mvn package)..." >&2
		# Drop old jars when pom.xml changed: copy-dependencies never deletes, and two versions of
		# one library on the classpath (e.g. after a version bump) break start-up in confusing ways.
		# A change under src/ alone keeps target/lib, so a server already running from this
		# directory does not lose its jars under its feet.
		if [[ ! -f "$STAMP" || pom.xml -nt "$STAMP" ]]; then
			rm -rf target/lib
		fi
		rm -f "$STAMP"
		mvn -q -B -DskipTests package >&2
		touch "$STAMP"
	) 9>"target/.build.lock"
}

start() {
	local port="${1:-${HAPI_PORT:-8090}}"
	build
	local jvm
	case "${HAPI_TUNING:-test}" in
	# C1 only + Serial GC: a short-lived test server on 2 cores, where start-up time matters more than
	# peak throughput. 1 GB heap is enough for the test data set plus the validator.
	test) jvm="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx1g" ;;
	# What a hospital's server runs. With the test flags, bench P4 (20,000 reminders over 120 s, HAPI on
	# PostgreSQL) managed 114 sends a second; with these and the pool kept open, the full 167.
	throughput) jvm="-XX:+UseG1GC -XX:MaxGCPauseMillis=100 -Xms2g -Xmx4g" ;;
	*)
		echo "hapi.sh: HAPI_TUNING must be test or throughput" >&2
		exit 2
		;;
	esac
	# shellcheck disable=SC2086
	exec java $jvm ${JAVA_OPTS:-} -cp "target/classes:target/lib/*" "$MAIN_CLASS" "$port"
}

# Prints the HTTP status of GET /fhir/metadata on loopback, or 000 when nothing answers.
metadata_status() {
	local port="$1"
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:${port}/fhir/metadata" || true
	else
		# No curl: speak HTTP/1.0 through bash's /dev/tcp.
		(
			exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 0
			printf 'GET /fhir/metadata HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&3
			IFS=' ' read -r _ code _ <&3 && printf '%s' "$code"
		) 2>/dev/null || true
	fi
}

wait_ready() {
	local port="${1:?usage: hapi.sh wait <port> [timeout_s]}"
	local timeout="${2:-180}"
	local deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if [[ "$(metadata_status "$port")" == "200" ]]; then
			echo "http://127.0.0.1:${port}/fhir"
			return 0
		fi
		sleep 1
	done
	echo "hapi.sh: FHIR server on port ${port} not ready after ${timeout}s" >&2
	return 1
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
	build) build ;;
	start) start "$@" ;;
	wait) wait_ready "$@" ;;
	go-offline) mvn -q -B dependency:go-offline ;;
	*) usage ;;
esac
