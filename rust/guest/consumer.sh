#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs the rbc consumer across a scripted failover and failback, in the
# SoftRoCE topology of the installed rdmabond selftests, and prints its JSON
# report on one line prefixed "rbc-report: ".
#
# usage: consumer.sh SELFTEST_DIR RBC [K]
#   SELFTEST_DIR  installed drivers/net/rdmabond selftests (holds lib.sh)
#   RBC           the rbc binary
#   K             connections (default 4)
#
# Host A gets group rb0 with ports a0 and a1 (failback delay 500 ms); the
# server listens on b0 and b1 of host B. The client takes a0 down at 3 s and
# up again at 8 s, generates messages for 12 s and then waits for every
# message to be acknowledged.

set -u

selftests=$1
rbc=$2
k=${3:-4}

# shellcheck source=/dev/null
source "$selftests/lib.sh"

fail()
{
	echo "rbc-error: $*"
	exit 1
}

topo_require_base
topo_create 2

ip netns exec "$NS_A" "$rbc" create rb0 --failback-delay 500ms ||
	fail "cannot create rb0"
ip -n "$NS_A" link set rb0 up || fail "cannot set rb0 up"
for p in "${PORTS_A[@]}"; do
	ip -n "$NS_A" link set "$p" master rb0 || fail "cannot enslave $p"
done
ip netns exec "$NS_A" "$rbc" ports rb0 | sed 's/^/rbc-ports: /'

topo_bg "$TOPO_TMPDIR/server.log" ip netns exec "$NS_B" "$rbc" server \
	"${IP4_B[@]}"
server=$TOPO_BG_PID
for i in "${!RXE_B[@]}"; do
	topo_wait 20 topo_cm_listening "$NS_B" "${RXE_B[i]}" "${IP4_B[i]}" \
		18515 && continue
	sed 's/^/rbc-server: /' "$TOPO_TMPDIR/server.log"
	kill -0 "$server" 2>/dev/null || fail "the server did not start"
	fail "the server does not listen on ${IP4_B[i]}"
done

rc=0
ip netns exec "$NS_A" "$rbc" client --group rb0 -k "$k" \
	--duration 12s --drain 30s \
	--fault "at=3s,cmd=ip link set ${PORTS_A[0]} down" \
	--fault "at=8s,cmd=ip link set ${PORTS_A[0]} up" \
	"${IP4_B[@]}" >"$TOPO_TMPDIR/report.json" \
	2>"$TOPO_TMPDIR/client.log" || rc=$?

sed 's/^/rbc-client: /' "$TOPO_TMPDIR/client.log"
sed 's/^/rbc-server: /' "$TOPO_TMPDIR/server.log"
if [ -s "$TOPO_TMPDIR/report.json" ]; then
	printf 'rbc-report: %s\n' "$(cat "$TOPO_TMPDIR/report.json")"
else
	fail "the client printed no report (exit status $rc)"
fi
echo "rbc-exit: $rc"
exit "$rc"
