#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs the rbc consumer across a scripted failover and failback, in the
# SoftRoCE topology of the installed rdmabond selftests, over IPv4 and then
# over IPv6, and prints each JSON report on one line prefixed "rbc-report: ".
#
# usage: consumer.sh SELFTEST_DIR RBC [K]
#   SELFTEST_DIR  installed drivers/net/rdmabond selftests (holds lib.sh)
#   RBC           the rbc binary
#   K             connections (default 4)
#
# Host A gets group rb0 with ports a0 and a1 (failback delay 500 ms); the
# server listens on b0 and b1 of host B. Each client run takes a0 down at
# 3 s and up again at 8 s, generates messages for 12 s and then waits for
# every message to be acknowledged.

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
	"${IP4_B[@]}" "${IP6_B[@]}"
server=$TOPO_BG_PID
for i in "${!RXE_B[@]}"; do
	topo_wait 20 topo_cm_listening "$NS_B" "${RXE_B[i]}" "${IP4_B[i]}" \
		18515 && continue
	sed 's/^/rbc-server: /' "$TOPO_TMPDIR/server.log"
	kill -0 "$server" 2>/dev/null || fail "the server did not start"
	fail "the server does not listen on ${IP4_B[i]}"
done

# client FAMILY SERVER...: one run across a failover and a failback.
client()
{
	local family=$1; shift
	local out=$TOPO_TMPDIR/report-$family.json
	local rc=0

	ip netns exec "$NS_A" "$rbc" client --group rb0 -k "$k" \
		--duration 12s --drain 30s \
		--fault "at=3s,cmd=ip link set ${PORTS_A[0]} down" \
		--fault "at=8s,cmd=ip link set ${PORTS_A[0]} up" \
		"$@" >"$out" 2>"$TOPO_TMPDIR/client.log" || rc=$?
	sed "s/^/rbc-client-$family: /" "$TOPO_TMPDIR/client.log"
	if [ -s "$out" ]; then
		printf 'rbc-report: %s\n' "$(cat "$out")"
	else
		echo "rbc-error: $family: the client printed no report" \
			"(exit status $rc)"
	fi
	# Let the failback of the previous run settle.
	topo_wait 10 rdmabond_settled
	return "$rc"
}

# True when no port of rb0 is down or waiting to fail back.
# shellcheck disable=SC2317 # called through topo_wait
rdmabond_settled()
{
	! ip netns exec "$NS_A" "$rbc" ports rb0 |
		grep -qE '"state": "(down|failback-pending)"'
}

rc=0
client ipv4 "${IP4_B[@]}" || rc=1
client ipv6 "${IP6_B[@]}" || rc=1
sed 's/^/rbc-server: /' "$TOPO_TMPDIR/server.log"
echo "rbc-exit: $rc"
exit "$rc"
