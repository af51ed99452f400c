#!/usr/bin/env bash
# Build and start the test EHR's HL7 v2 receiver (HAPI HL7v2 over MLLP; see Hl7Receiver.java).
#
#   receiver.sh build               compile + copy jars to target/lib (skipped when up to date)
#   receiver.sh start <port> [ms]   build if needed, then exec the receiver in the foreground on 127.0.0.1:<port>
#                                   (ms: how long a SILENT message goes unanswered, default 120000). Prints one
#                                   JSON line per message on stdout; logs go to stderr
#   receiver.sh go-offline          prefetch every Maven artifact (CI cache warm-up)
#
# Extra JVM flags can be passed with JAVA_OPTS. Works from any working directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

MAIN_CLASS="org.careway.hl7receiver.Hl7Receiver"
STAMP="target/.build-stamp"

usage() {
	sed -n '2,10p' "$HERE/$(basename "${BASH_SOURCE[0]}")" | sed 's/^# \{0,1\}//' >&2
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
	(
		# Serialise concurrent builds (parallel test workers) where flock exists.
		if command -v flock >/dev/null 2>&1; then
			flock 9
			up_to_date && exit 0
		fi
		echo "receiver.sh: building the HL7 receiver (mvn package)..." >&2
		# copy-dependencies never deletes: drop old jars when pom.xml changed, so one library is on the
		# classpath once.
		if [[ ! -f "$STAMP" || pom.xml -nt "$STAMP" ]]; then
			rm -rf target/lib
		fi
		rm -f "$STAMP"
		mvn -q -B -DskipTests package >&2
		touch "$STAMP"
	) 9>"target/.build.lock"
}

start() {
	local port="${1:?usage: receiver.sh start <port> [silentMs]}"
	local silent="${2:-120000}"
	build
	# C1 only + Serial GC: a short-lived test process on a 2-core machine, where start-up time matters most.
	# hapi.home: where HAPI keeps its ACK control-id counter file (id_file), out of the source tree.
	# shellcheck disable=SC2086
	exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx128m -Dhapi.home="$HERE/target" ${JAVA_OPTS:-} \
		-cp "target/classes:target/lib/*" "$MAIN_CLASS" "$port" "$silent"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
	build) build ;;
	start) start "$@" ;;
	go-offline) mvn -q -B dependency:go-offline ;;
	*) usage ;;
esac
