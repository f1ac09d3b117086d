#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The measurements of `cargo xtask bench`, in one guest, in the SoftRoCE
# topology of the installed rdmabond selftests. Every experiment leaves its raw
# data in OUT: the rdmabond and rdma_cma trace events (trace_clock "mono", so
# they line up with rbc's CLOCK_MONOTONIC) as NAME.trace, and rbc's JSON
# report as NAME.json. The xtask reads and summarises them; this script only
# measures.
#
# usage: bench.sh SELFTEST_DIR RBC OUT REPS "ADDRS" "IDS" "GROUPS"
#   REPS    repetitions of each latency case (failover and failback)
#   ADDRS   address counts of the address scaling, e.g. "1 16 64 256"
#   IDS     bound RDMA CM ids of the fan-out scaling, e.g. "1 100 1000"
#   GROUPS  group counts of the group scaling, e.g. "1 8 32"
#
# Experiments, in this order:
#   lat-FAMILY-KIND   rbc over group rb0 (a0, a1), REPS cycles of a fault of a0
#                     (admin down, carrier loss, RDMA device removal) and its
#                     recovery; failback delay $FAILBACK_MS ms; FAMILY ipv4,
#                     ipv6 (stock DAD), ipv6-optimistic (optimistic DAD) or
#                     ipv6-fast-dad (stock DAD, RetransTimer 50 ms on host
#                     A's ports); and ipv4-stock-arp (admin down only): IPv4
#                     with host A's ARP sysctls at their defaults
#   addrs-N           a0 carries N IPv4 addresses and goes down, REPS_SCALE times
#   ids-N             N ids bound to a0's address (rbc bind) when it moves
#   groups-G          G groups of two ports; the first port of each goes down at
#                     once, REPS_SCALE times
#   tput-MODE-I       rbc throughput from a0 with a0 in rb0 (grouped) or not
#                     (plain), alternating
#   side-rdmabond, side-nogroup, side-bond
#                     the same rbc traffic across one admin-down fault of a0:
#                     with the group, with no group (rbc reconnects from a1's
#                     address itself), and over rxe on an active-backup bond of
#                     a0 and a1
# BENCH_CM_TRACE=1 (cargo xtask bench --cm-trace) records the RDMA CM's own
# trace events (ib_cma, rdma_cma) in the traces too.
# Lines "bench: ..." say what runs; "bench-error: ..." what failed.

set -u

selftests=$1
rbc=$2
out=$3
reps=$4
addrs_list=$5
ids_list=$6
groups_list=$7

FAILBACK_MS=100
REPS_SCALE=${REPS_SCALE:-5}
TRACEFS=/sys/kernel/tracing

# shellcheck source=/dev/null
source "$selftests/lib.sh"

say() { echo "bench: $*"; }
err() { echo "bench-error: $*"; }

mkdir -p "$out" || { err "cannot create $out"; exit 1; }

trace_setup()
{
	[ -d "$TRACEFS/events" ] ||
		mount -t tracefs nodev "$TRACEFS" 2>/dev/null
	if [ ! -d "$TRACEFS/events/rdmabond" ]; then
		err "no rdmabond trace events in $TRACEFS"
		exit 1
	fi
	echo mono >"$TRACEFS/trace_clock"
	echo 16384 >"$TRACEFS/buffer_size_kb"
	echo 1 >"$TRACEFS/events/rdmabond/enable"
	echo 1 >"$TRACEFS/events/rdma_cma/cm_notify_addr_change/enable"
	# cargo xtask bench --cm-trace: the RDMA CM's own events too, of both
	# hosts (REQ, REP, REJ, DREQ, every cm_id event).
	if [ "${BENCH_CM_TRACE:-0}" = 1 ]; then
		echo 65536 >"$TRACEFS/buffer_size_kb"
		echo 1 >"$TRACEFS/events/ib_cma/enable"
		echo 1 >"$TRACEFS/events/rdma_cma/enable"
	fi
	echo 1 >"$TRACEFS/tracing_on"
}

trace_clear() { : >"$TRACEFS/trace"; }
trace_save() { cat "$TRACEFS/trace" >"$out/$1.trace"; }

# group_create NAME PORT...: a group with a failback delay of FAILBACK_MS.
group_create()
{
	local g=$1 p; shift
	ip netns exec "$NS_A" "$rbc" create "$g" \
		--failback-delay "${FAILBACK_MS}ms" || return 1
	ip -n "$NS_A" link set "$g" up || return 1
	for p in "$@"; do
		ip -n "$NS_A" link set "$p" master "$g" || return 1
	done
}

group_delete() { ip -n "$NS_A" link del "$1"; }

fault_cmd()
{
	case $1 in
	admin)	 echo "ip -n $NS_A link set ${PORTS_A[0]} down" ;;
	carrier) echo "ip -n $NS_FAB link set ${FAB_A[0]} down" ;;
	rdma)	 echo "ip netns exec $NS_A rdma link del ${RXE_A[0]}" ;;
	esac
}

recover_cmd()
{
	case $1 in
	admin)	 echo "ip -n $NS_A link set ${PORTS_A[0]} up" ;;
	carrier) echo "ip -n $NS_FAB link set ${FAB_A[0]} up" ;;
	rdma)	 echo "ip netns exec $NS_A rdma link add ${RXE_A[0]} type rxe" \
			"netdev ${PORTS_A[0]}" ;;
	esac
}

# a0_home: a0 carries its IPv4 and IPv6 address again.
# shellcheck disable=SC2317 # called through topo_wait
a0_home()
{
	rb_addr_on "$NS_A" "${PORTS_A[0]}" "${IP4_A[0]}" &&
		rb_addr_on "$NS_A" "${PORTS_A[0]}" "${IP6_A[0]}"
}

# rbc_client NAME ARGS...: one client run; the report goes to OUT/NAME.json.
# A report with problems (a milestone that never came, a connection not
# back before the next fault) is data, which the tables show; no report is
# an error of the bench.
rbc_client()
{
	local name=$1 rc=0; shift
	ip netns exec "$NS_A" "$rbc" client "$@" >"$out/$name.json" \
		2>"$TOPO_TMPDIR/$name.log" || rc=$?
	if [ ! -s "$out/$name.json" ]; then
		err "$name: rbc client exited with status $rc and no report:" \
			"$(tail -n 3 "$TOPO_TMPDIR/$name.log" | tr '\n' ' ')"
	elif [ "$rc" != 0 ]; then
		say "$name: rbc reports problems:" \
			"$(tail -n 1 "$TOPO_TMPDIR/$name.log" | cut -c1-300)"
	fi
	return 0
}

# latency FAMILY KIND: REPS fault/recovery cycles under rbc traffic.
latency()
{
	local family=$1 kind=$2 period i at faults=() servers
	# The first fault comes once both connections are up (an IPv6 one
	# takes over a second to establish here); each half of a cycle is long
	# enough for the fault command to run (up to a second under TCG) and the
	# consumer to be back before the next fault (IPv6: DAD of the moved
	# address, then the reconnection).
	case $family in
	ipv4)
		servers=("${IP4_B[@]}")
		period=4
		;;
	ipv4-stock-arp)
		# lib.sh gives the hosts arp_ignore=1 and arp_announce=2,
		# which two ports of a host on one subnet need (rdmabond.rst,
		# "ARP"); this case runs with the defaults, 0 and 0, as on a
		# host nobody tuned: how much does ARP flux cost?
		servers=("${IP4_B[@]}")
		period=4
		topo_arp_sysctls "$NS_A" 0 0 "${PORTS_A[@]}" || { err "lat-$family-$kind: cannot reset the ARP sysctls"; return; }
		;;
	ipv6)
		servers=("${IP6_B[@]}")
		period=8
		;;
	ipv6-optimistic)
		# The same IPv6 traffic, with optimistic DAD (RFC 4429) on
		# host A's ports: a moved address is usable while its DAD
		# runs, which is what a user who wants a fast IPv6 failover
		# sets (CONFIG_IPV6_OPTIMISTIC_DAD, optimistic_dad=1).
		servers=("${IP6_B[@]}")
		period=4
		optimistic 1 || { err "lat-$family-$kind: no optimistic_dad sysctl"; return; }
		;;
	ipv6-fast-dad)
		# Stock DAD (one probe), with host A's ports waiting 50 ms
		# for an answer instead of 1 s: RetransTimer, which routers
		# advertise and admins set per device (rdmabond.rst, "DAD").
		# A moved address is usable, and its users told, once DAD
		# is done: what a user who tunes the fabric gets.
		servers=("${IP6_B[@]}")
		period=4
		retrans 50 || { err "lat-$family-$kind: cannot set retrans_time_ms"; return; }
		;;
	esac
	for ((i = 0; i < reps; i++)); do
		at=$((3 + i * period))
		faults+=(--fault "at=${at}s,name=failover-$i,cmd=$(fault_cmd "$kind")")
		at=$((3 + i * period + period / 2))
		faults+=(--fault "at=${at}s,name=failback-$i,cmd=$(recover_cmd "$kind")")
	done
	say "lat-$family-$kind: $reps cycles of $period s"
	trace_clear
	rbc_client "lat-$family-$kind" --group rb0 -k 2 --rate 200 \
		--duration "$((3 + reps * period))s" --drain 30s \
		"${faults[@]}" "${servers[@]}"
	trace_save "lat-$family-$kind"
	topo_wait 20 a0_home || err "lat-$family-$kind: a0 did not get its addresses back"
	[ "$family" = ipv6-optimistic ] && optimistic 0
	[ "$family" = ipv6-fast-dad ] && retrans "$RETRANS_MS"
	[ "$family" = ipv4-stock-arp ] && topo_arp_sysctls "$NS_A" 1 2 "${PORTS_A[@]}"
}

# ports_sysctl KEY VALUE: the sysctl KEY, with PORT replaced by each of host
# A's ports, set to VALUE.
ports_sysctl()
{
	local p
	for p in "${PORTS_A[@]}"; do
		ip netns exec "$NS_A" sysctl -qw "${1//PORT/$p}=$2" || return 1
	done
}

# optimistic 0|1: optimistic DAD off or on for host A's ports.
optimistic() { ports_sysctl net.ipv6.conf.PORT.optimistic_dad "$1"; }

# retrans MS: RetransTimer (retrans_time_ms) of host A's ports.
retrans() { ports_sysctl net.ipv6.neigh.PORT.retrans_time_ms "$1"; }

# extra_addrs add|del N: N-1 more IPv4 addresses on a0, in one ip batch.
extra_addrs()
{
	local op=$1 n=$2 i
	for ((i = 1; i < n; i++)); do
		echo "addr $op 198.18.$((i / 256)).$((i % 256))/15 dev ${PORTS_A[0]}"
	done | ip -n "$NS_A" -b - 2>/dev/null
}

addr_count()
{
	ip -n "$NS_A" -4 -o addr show dev "$1" | wc -l
}

# a0_has N: a0 carries N IPv4 addresses.
# shellcheck disable=SC2317 # called through topo_wait
a0_has() { [ "$(addr_count "${PORTS_A[0]}")" -eq "$1" ]; }

# down_up_cycles NAME WANT: REPS_SCALE cycles of a0 down and up, each waiting
# until a0 carries WANT IPv4 addresses again.
down_up_cycles()
{
	local name=$1 want=$2 i
	trace_clear
	for ((i = 0; i < REPS_SCALE; i++)); do
		ip -n "$NS_A" link set "${PORTS_A[0]}" down
		topo_wait 20 eval '[ "$(addr_count "${PORTS_A[1]}")" -ge "$want" ]' ||
			err "$name: the addresses did not reach ${PORTS_A[1]}"
		ip -n "$NS_A" link set "${PORTS_A[0]}" up
		topo_wait 30 a0_has "$want" ||
			err "$name: the addresses did not come home"
		sleep 0.5
	done
	trace_save "$name"
}

scale_addrs()
{
	local n
	# IPv4 only: a0's IPv6 address leaves for this part.
	ip -n "$NS_A" -6 addr del "${IP6_A[0]}/64" dev "${PORTS_A[0]}"
	for n in $addrs_list; do
		say "addrs-$n"
		extra_addrs add "$n"
		a0_has "$n" || err "addrs-$n: a0 has $(addr_count "${PORTS_A[0]}") addresses"
		down_up_cycles "addrs-$n" "$n"
		extra_addrs del "$n"
	done
	ip -n "$NS_A" -6 addr add "${IP6_A[0]}/64" dev "${PORTS_A[0]}"
}

scale_ids()
{
	local n log pid
	for n in $ids_list; do
		say "ids-$n"
		log=$TOPO_TMPDIR/bind-$n.log
		ip netns exec "$NS_A" "$rbc" bind --count "$n" \
			--duration "$((REPS_SCALE * 4 + 20))s" "${IP4_A[0]}" \
			>"$log" 2>&1 &
		pid=$!
		if ! topo_wait 60 grep -q '^rbc-bind: bound' "$log"; then
			err "ids-$n: rbc bind did not bind: $(tail -n 2 "$log")"
			kill "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			continue
		fi
		down_up_cycles "ids-$n" 1
		# TERM, not INT: a background job of a script ignores SIGINT,
		# and rbc bind would run out its whole --duration.
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
}

# groups G: G groups gX of ports gXp0 and gXp1 (veth peers in the fabric,
# unbridged: carrier and RDMA ports are all the engine needs).
groups_create()
{
	local g=$1 x p
	for ((x = 0; x < g; x++)); do
		for p in 0 1; do
			ip -n "$NS_A" link add "g${x}p$p" type veth peer name \
				"fg${x}p$p" netns "$NS_FAB" || return 1
			ip -n "$NS_FAB" link set "fg${x}p$p" up
			ip -n "$NS_A" link set "g${x}p$p" up
			ip -n "$NS_A" addr add "10.$((x / 100 + 100)).$((x % 100)).$((p + 1))/24" \
				dev "g${x}p$p"
			ip netns exec "$NS_A" rdma link add "rxe_g${x}p$p" type rxe \
				netdev "g${x}p$p" || return 1
		done
		group_create "g$x" "g${x}p0" "g${x}p1" || return 1
	done
}

groups_delete()
{
	local g=$1 x p
	for ((x = 0; x < g; x++)); do
		group_delete "g$x"
		for p in 0 1; do
			ip netns exec "$NS_A" rdma link del "rxe_g${x}p$p"
			ip -n "$NS_A" link del "g${x}p$p"
		done
	done 2>/dev/null
}

# all_home G: the first port of every group carries its address again.
# shellcheck disable=SC2317 # called through topo_wait
all_home()
{
	local g=$1 x
	for ((x = 0; x < g; x++)); do
		[ "$(addr_count "g${x}p0")" -eq 1 ] || return 1
	done
}

scale_groups()
{
	local g i x
	for g in $groups_list; do
		say "groups-$g"
		if ! groups_create "$g"; then
			err "groups-$g: cannot create the groups"
			groups_delete "$g"
			continue
		fi
		trace_clear
		for ((i = 0; i < REPS_SCALE; i++)); do
			for ((x = 0; x < g; x++)); do
				echo "link set g${x}p0 down"
			done | ip -n "$NS_A" -b -
			sleep 1
			for ((x = 0; x < g; x++)); do
				echo "link set g${x}p0 up"
			done | ip -n "$NS_A" -b -
			topo_wait 30 all_home "$g" ||
				err "groups-$g: the addresses did not come home"
			sleep 0.5
		done
		trace_save "groups-$g"
		groups_delete "$g"
	done
}

# throughput: rbc as fast as its window allows from a0's address, a0 in rb0
# and not, alternating so that a drift of the machine hits both.
throughput()
{
	local i
	for i in 0 1 2; do
		say "tput-grouped-$i"
		rbc_client "tput-grouped-$i" --sources "${IP4_A[0]}" -k 1 \
			--rate 1000000 --window 16 --duration 3s "${IP4_B[0]}"
		ip -n "$NS_A" link set "${PORTS_A[0]}" nomaster
		topo_wait 20 rb_addr_on "$NS_A" "${PORTS_A[0]}" "${IP4_A[0]}"
		say "tput-plain-$i"
		rbc_client "tput-plain-$i" --sources "${IP4_A[0]}" -k 1 \
			--rate 1000000 --window 16 --duration 3s "${IP4_B[0]}"
		ip -n "$NS_A" link set "${PORTS_A[0]}" master rb0
	done
}

# side NAME ARGS...: the common traffic and fault of the side-by-side runs.
side()
{
	local name=$1; shift
	say "$name"
	trace_clear
	rbc_client "$name" -k 2 --rate 200 --duration 12s --drain 30s \
		--fault "at=2s,name=failover-0,cmd=ip -n $NS_A link set ${PORTS_A[0]} down" \
		--fault "at=8s,name=failback-0,cmd=ip -n $NS_A link set ${PORTS_A[0]} up" \
		"$@" "${IP4_B[@]}"
	trace_save "$name"
}

side_by_side()
{
	local bond_ip=192.0.2.21 p

	side side-rdmabond --group rb0
	topo_wait 20 a0_home
	group_delete rb0
	topo_wait 20 a0_home
	side side-nogroup --sources "${IP4_A[0]},${IP4_A[1]}"

	# rxe on an active-backup bond of a0 and a1, a0 primary, miimon 1 ms
	# (the least bonding takes): the RDMA device does not change.
	for p in 0 1; do
		ip netns exec "$NS_A" rdma link del "${RXE_A[p]}"
		ip -n "$NS_A" addr flush dev "${PORTS_A[p]}"
		ip -n "$NS_A" link set "${PORTS_A[p]}" down
	done
	if ! ip -n "$NS_A" link add bond0 type bond mode active-backup \
	     miimon 1; then
		err "side-bond: cannot create bond0"
		return
	fi
	ip -n "$NS_A" link set "${PORTS_A[0]}" master bond0
	ip -n "$NS_A" link set "${PORTS_A[1]}" master bond0
	ip -n "$NS_A" link set bond0 type bond primary "${PORTS_A[0]}"
	ip -n "$NS_A" link set bond0 up
	ip -n "$NS_A" addr add "$bond_ip/24" dev bond0
	ip netns exec "$NS_A" rdma link add rxe_bond0 type rxe netdev bond0
	topo_wait 20 topo_rxe_active "$NS_A" rxe_bond0 ||
		err "side-bond: rxe_bond0 is not active"
	side side-bond --sources "$bond_ip"
	ip netns exec "$NS_A" rdma link del rxe_bond0
	ip -n "$NS_A" link del bond0
}

topo_require_base
topo_create 2
trace_setup

group_create rb0 "${PORTS_A[@]}" || { err "cannot create rb0"; exit 1; }
topo_bg "$TOPO_TMPDIR/server.log" ip netns exec "$NS_B" "$rbc" server \
	--window 16 "${IP4_B[@]}" "${IP6_B[@]}"
for i in "${!RXE_B[@]}"; do
	topo_wait 20 topo_cm_listening "$NS_B" "${RXE_B[i]}" "${IP4_B[i]}" \
		18515 || { err "the server does not listen on ${IP4_B[i]}"; exit 1; }
done
say "topology ready: rb0 = ${PORTS_A[*]}, server on ${IP4_B[*]} ${IP6_B[*]}"
printf '{"reps":%d,"reps_scale":%d,"failback_ms":%d,"tput_s":3,"port":"%s","addr4":"%s","addr6":"%s"}\n' \
	"$reps" "$REPS_SCALE" "$FAILBACK_MS" "${PORTS_A[0]}" "${IP4_A[0]}" \
	"${IP6_A[0]}" >"$out/meta.json"

RETRANS_MS=$(ip netns exec "$NS_A" sysctl -n \
	"net.ipv6.neigh.${PORTS_A[0]}.retrans_time_ms")
for family in ipv4 ipv6 ipv6-optimistic ipv6-fast-dad; do
	for kind in admin carrier rdma; do
		latency "$family" "$kind"
	done
done
latency ipv4-stock-arp admin
scale_addrs
scale_ids
scale_groups
throughput
side_by_side
say "done"
