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
#
# Then the re-listen pattern: an rbc server on a0's IPv4 address of host A
# listens again when it gets ADDR_CHANGE, so after a failover (and after the
# failback) its listener is on the rxe device that holds the address, and a
# client of host B (over group rb1 of b0 and b1) is served. Failures print
# "rbc-error: relisten: ...".

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

# relisten_client WHEN: a short run from host B to the server on host A.
relisten_client()
{
	if ! ip netns exec "$NS_B" "$rbc" client --group rb1 -k 1 \
		--port 18516 --duration 1s --drain 20s "${IP4_A[0]}" \
		>/dev/null 2>"$TOPO_TMPDIR/relisten-client.log"; then
		sed "s/^/rbc-client-relisten: /" "$TOPO_TMPDIR/relisten-client.log"
		echo "rbc-error: relisten: the server on ${IP4_A[0]} did not" \
			"serve host B $1"
		return 1
	fi
	echo "rbc-relisten: served host B $1"
}

# relisten_stage RXE WHEN CMD...: after CMD the server listens on RXE again
# and serves host B.
relisten_stage()
{
	local rxe=$1 when=$2; shift 2

	"$@"
	if ! topo_wait 20 topo_cm_listening "$NS_A" "$rxe" "${IP4_A[0]}" \
	     18516; then
		echo "rbc-error: relisten: no listener on $rxe $when"
		return 1
	fi
	relisten_client "$when"
}

# relisten: the server on a0's address follows it to a1 and back.
relisten()
{
	local a0=${PORTS_A[0]} ret=0

	ip netns exec "$NS_B" "$rbc" create rb1 || fail "cannot create rb1"
	ip -n "$NS_B" link set rb1 up
	for p in "${PORTS_B[@]}"; do
		ip -n "$NS_B" link set "$p" master rb1 ||
			fail "cannot enslave $p"
	done
	topo_bg "$TOPO_TMPDIR/relisten.log" ip netns exec "$NS_A" "$rbc" \
		server --port 18516 "${IP4_A[0]}"
	topo_wait 20 topo_cm_listening "$NS_A" "${RXE_A[0]}" "${IP4_A[0]}" \
		18516 || fail "relisten: the server does not listen on ${IP4_A[0]}"
	relisten_client "before the failover" || ret=1

	relisten_stage "${RXE_A[1]}" "after the failover" \
		ip -n "$NS_A" link set "$a0" down || ret=1
	relisten_stage "${RXE_A[0]}" "after the failback" \
		ip -n "$NS_A" link set "$a0" up || ret=1
	sed 's/^/rbc-server-relisten: /' "$TOPO_TMPDIR/relisten.log"
	return "$ret"
}

rc=0
client ipv4 "${IP4_B[@]}" || rc=1
client ipv6 "${IP6_B[@]}" || rc=1
sed 's/^/rbc-server: /' "$TOPO_TMPDIR/server.log"
relisten || rc=1
echo "rbc-exit: $rc"
exit "$rc"
