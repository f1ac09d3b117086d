#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The options of rdmabond groups and the attributes of their ports with
# iproute2 alone (ip/iplink_rdmabond.c, posted to iproute2-next):
#
# - every group option (mode, failover_delay, failback_delay, failback,
#   num_peer_notif, peer_notif_delay) set at creation and changed later,
#   and read back from "ip -d link show", in text and in JSON (-j);
# - the port attributes (state, home_addrs, host, failovers, failbacks)
#   after the ports joined, and after a failover and a failback;
# - bad values: what ip refuses itself (syntax, width) and what the kernel
#   refuses (ranges, a mode change), as ip prints them; read-only port
#   attributes.
#
# $RB_IP is the ip to test (default: ip in PATH). An ip without rdmabond
# support skips the test.

lib_dir=$(dirname "$0")
# shellcheck source=lib.sh
source "$lib_dir"/lib.sh

IP=${RB_IP:-ip}
GROUP=rbopt

# rbip NS ARGS...: the ip under test in NS.
rbip()
{
	local ns=$1; shift

	"$IP" -n "$ns" "$@"
}

# text_line NS DEV KIND: the line of "ip -d link show DEV" that starts
# with KIND (rdmabond or rdmabond_slave), leading spaces removed, one space
# at the end. ip prints more attributes of DEV after those of KIND on that
# line (addrgenmode, numtxqueues, ...).
text_line()
{
	local line

	line=$(rbip "$1" -d link show dev "$2" | grep -E "^ +$3( |$)")
	line=${line#"${line%%[! ]*}"}
	echo "${line% } "
}

# text_has DESC NS DEV KIND WANT: the KIND line of DEV starts with
# "KIND WANT ".
text_has()
{
	local got

	got=$(text_line "$2" "$3" "$4" 2>&1)
	if [[ $got != "$4 $5 "* ]]; then
		ktap_print_msg "$1: text: got \"$got\", expected \"$4 $5 ...\""
		RB_RET=1
	fi
}

# json_data NS DEV KEY: the object KEY (info_data or info_slave_data) of
# the linkinfo of DEV in "ip -d -j link show DEV", as name=JSON words in
# the order ip prints them; "kind=..." first.
json_data()
{
	rbip "$1" -d -j link show dev "$2" | python3 -c '
import json, sys
li = json.load(sys.stdin)[0]["linkinfo"]
kind = li["info_kind" if sys.argv[1] == "info_data" else "info_slave_kind"]
words = [f"kind={json.dumps(kind)}"]
words += [f"{k}={json.dumps(v)}" for k, v in li[sys.argv[1]].items()]
print(" ".join(words))' "$3"
}

# expect_group DESC DEV MODE FAILOVER_DELAY FAILBACK_DELAY FAILBACK(on|off)
#	NUM_PEER_NOTIF PEER_NOTIF_DELAY: ip shows these options, in text and
#	JSON.
expect_group()
{
	local desc=$1 dev=$2 mode=$3 fod=$4 fbd=$5 fb=$6 npn=$7 pnd=$8
	local want got jfb=true

	[ "$fb" = off ] && jfb=false
	want="mode $mode failover_delay $fod failback_delay $fbd"
	want+=" failback $fb num_peer_notif $npn peer_notif_delay $pnd"
	text_has "$desc" "$NS" "$dev" rdmabond "$want"
	want="kind=\"rdmabond\" mode=\"$mode\" failover_delay=$fod"
	want+=" failback_delay=$fbd failback=$jfb num_peer_notif=$npn"
	want+=" peer_notif_delay=$pnd"
	got=$(json_data "$NS" "$dev" info_data 2>&1)
	if [ "$got" != "$want" ]; then
		ktap_print_msg "$desc: JSON: got '$got', expected '$want'"
		RB_RET=1
	fi
}

# expect_port DESC PORT STATE HOME_ADDRS HOST FAILOVERS FAILBACKS: ip shows
# these port attributes, in text and JSON.
expect_port()
{
	local desc=$1 port=$2
	local want got

	want="state $3 home_addrs $4 host $5 failovers $6 failbacks $7"
	text_has "$desc" "$NS" "$port" rdmabond_slave "$want"
	want="kind=\"rdmabond\" state=\"$3\" home_addrs=$4 host=\"$5\""
	want+=" failovers=$6 failbacks=$7"
	got=$(json_data "$NS" "$port" info_slave_data 2>&1)
	if [ "$got" != "$want" ]; then
		ktap_print_msg "$desc: JSON: got '$got', expected '$want'"
		RB_RET=1
	fi
}

# port_state_is PORT STATE: the text output says STATE.
port_state_is()
{
	[[ $(text_line "$NS" "$1" rdmabond_slave) == "rdmabond_slave state $2 "* ]]
}

# expect_ip_err DESC ERE CMD...: CMD fails and its error output matches
# the extended regular expression ERE.
expect_ip_err()
{
	local desc=$1 re=$2; shift 2
	local out

	if out=$("$@" 2>&1); then
		ktap_print_msg "$desc: succeeded, expected an error"
		RB_RET=1
	elif ! grep -qE -- "$re" <<<"$out"; then
		ktap_print_msg "$desc: expected /$re/, got: $out"
		RB_RET=1
	fi
}

# slave_help_read_only: the port help says the attributes are read-only.
slave_help_read_only()
{
	"$IP" link help rdmabond_slave 2>&1 | grep -q read-only
}

cleanup()
{
	topo_destroy
}

ktap_print_header
topo_require_base
topo_require_cmds python3 "$IP"
if ! "$IP" link add type rdmabond help 2>&1 | grep -q failback_delay; then
	topo_skip "$IP does not know the rdmabond options" \
		"(an iproute2 without ip/iplink_rdmabond.c; set RB_IP to one" \
		"that has it)"
fi
topo_create 2
trap cleanup EXIT
rb_require
NS=$NS_A
P0=${PORTS_A[0]}
P1=${PORTS_A[1]}
rb_dmesg_mark

ktap_set_plan 12

# 1: the defaults (Documentation/networking/rdmabond.rst)
RB_RET=0
rb_check "ip link add $GROUP type rdmabond failed" \
	rbip "$NS" link add "$GROUP" type rdmabond
expect_group "defaults" "$GROUP" active-active 0 5000 on 3 100
rb_result "ip: a new group shows the defaults"

# 2-6: each option changed alone, at both ends of its range
RB_RET=0
for v in 250 600000 0; do
	rb_check "failover_delay $v refused" \
		rbip "$NS" link set "$GROUP" type rdmabond failover_delay "$v"
	expect_group "failover_delay $v" "$GROUP" active-active "$v" 5000 on 3 100
done
rb_result "ip: failover_delay"

RB_RET=0
for v in 0 600000 5000; do
	rb_check "failback_delay $v refused" \
		rbip "$NS" link set "$GROUP" type rdmabond failback_delay "$v"
	expect_group "failback_delay $v" "$GROUP" active-active 0 "$v" on 3 100
done
rb_result "ip: failback_delay"

RB_RET=0
for v in off on; do
	rb_check "failback $v refused" \
		rbip "$NS" link set "$GROUP" type rdmabond failback "$v"
	expect_group "failback $v" "$GROUP" active-active 0 5000 "$v" 3 100
done
rb_result "ip: failback on|off"

RB_RET=0
for v in 0 255 3; do
	rb_check "num_peer_notif $v refused" \
		rbip "$NS" link set "$GROUP" type rdmabond num_peer_notif "$v"
	expect_group "num_peer_notif $v" "$GROUP" active-active 0 5000 on "$v" 100
done
rb_result "ip: num_peer_notif"

RB_RET=0
for v in 1 60000 100; do
	rb_check "peer_notif_delay $v refused" \
		rbip "$NS" link set "$GROUP" type rdmabond peer_notif_delay "$v"
	expect_group "peer_notif_delay $v" "$GROUP" active-active 0 5000 on 3 "$v"
done
rb_result "ip: peer_notif_delay"

# 7: every option at creation, the mode among them; the mode cannot change
RB_RET=0
rb_check "ip link add rbopt1 with every option failed" \
	rbip "$NS" link add rbopt1 type rdmabond mode active-backup \
	failover_delay 100 failback_delay 200 failback off \
	num_peer_notif 7 peer_notif_delay 50
expect_group "every option" rbopt1 active-backup 100 200 off 7 50
rb_check "the same mode refused" \
	rbip "$NS" link set rbopt1 type rdmabond mode active-backup
expect_ip_err "mode change" \
	"Error: Mode cannot be changed after creation\.|Operation not supported" \
	rbip "$NS" link set rbopt1 type rdmabond mode active-active
expect_group "after the mode change" rbopt1 active-backup 100 200 off 7 50
rbip "$NS" link del rbopt1
rb_result "ip: every option at creation, mode set at creation only"

# 8: what ip refuses before asking the kernel, as iproute2 says it
RB_RET=0
expect_ip_err "failover_delay abc" \
	'^Error: argument "abc" is wrong: invalid failover_delay$' \
	rbip "$NS" link set "$GROUP" type rdmabond failover_delay abc
expect_ip_err "failback_delay -1" \
	'^Error: argument "-1" is wrong: invalid failback_delay$' \
	rbip "$NS" link set "$GROUP" type rdmabond failback_delay -1
expect_ip_err "failover_delay 2^32" \
	'^Error: argument "4294967296" is wrong: invalid failover_delay$' \
	rbip "$NS" link set "$GROUP" type rdmabond failover_delay 4294967296
expect_ip_err "num_peer_notif 256" \
	'^Error: argument "256" is wrong: invalid num_peer_notif$' \
	rbip "$NS" link set "$GROUP" type rdmabond num_peer_notif 256
expect_ip_err "peer_notif_delay x" \
	'^Error: argument "x" is wrong: invalid peer_notif_delay$' \
	rbip "$NS" link set "$GROUP" type rdmabond peer_notif_delay x
expect_ip_err "failback yes" \
	'^Error: argument of "failback" must be one of "off", "on", not "yes"$' \
	rbip "$NS" link set "$GROUP" type rdmabond failback yes
expect_ip_err "mode round-robin" \
	'^Error: argument of "mode" must be either "active-active" or "active-backup", not "round-robin"$' \
	rbip "$NS" link add rbbad type rdmabond mode round-robin
expect_ip_err "unknown option" '^rdmabond: unknown option "bogus"\?$' \
	rbip "$NS" link set "$GROUP" type rdmabond bogus 1
expect_ip_err "option without a value" "^Command line is not complete" \
	rbip "$NS" link set "$GROUP" type rdmabond failback_delay
rb_check "a refused group was created" \
	not rbip "$NS" link show dev rbbad 2>/dev/null
expect_group "after the refusals" "$GROUP" active-active 0 5000 on 3 100
rb_result "ip: bad values refused by ip"

# 9: what the netlink policy refuses: ip prints the extended ack
RB_RET=0
range="Error: integer out of range\.|Numerical result out of range"
expect_ip_err "failover_delay 600001" "$range" \
	rbip "$NS" link set "$GROUP" type rdmabond failover_delay 600001
expect_ip_err "failback_delay 600001" "$range" \
	rbip "$NS" link set "$GROUP" type rdmabond failback_delay 600001
expect_ip_err "peer_notif_delay 0" "$range" \
	rbip "$NS" link set "$GROUP" type rdmabond peer_notif_delay 0
expect_ip_err "peer_notif_delay 60001" "$range" \
	rbip "$NS" link set "$GROUP" type rdmabond peer_notif_delay 60001
expect_ip_err "creation with failover_delay 600001" "$range" \
	rbip "$NS" link add rbbad type rdmabond failover_delay 600001
rb_check "a refused group was created" \
	not rbip "$NS" link show dev rbbad 2>/dev/null
expect_group "after the refusals" "$GROUP" active-active 0 5000 on 3 100
rb_result "ip: out-of-range values refused by the kernel"

# 10: the ports, as ip -d shows them (each has an IPv4 and an IPv6 home
# address, see lib.sh)
RB_RET=0
rb_check "failover_delay 0 failback_delay 0 refused" \
	rbip "$NS" link set "$GROUP" type rdmabond failover_delay 0 \
	failback_delay 0
rb_check "$GROUP up failed" rbip "$NS" link set "$GROUP" up
rb_add_ports "$NS" "$GROUP" "$P0" "$P1"
for p in "$P0" "$P1"; do
	rb_check "$p not UP" topo_wait 10 port_state_is "$p" UP
	expect_port "$p" "$p" UP 2 "$p" 0 0
done
rb_result "ip: port attributes"

# 11: the carrier of P0 goes, its addresses move to P1 and come back
RB_RET=0
ip -n "$NS_FAB" link set "${FAB_A[0]}" down
rb_check "$P0 not DOWN without carrier" topo_wait 10 port_state_is "$P0" DOWN
expect_port "$P0 failed over" "$P0" DOWN 2 "$P1" 1 0
expect_port "$P1 hosts the addresses of $P0" "$P1" UP 2 "$P1" 0 0
ip -n "$NS_FAB" link set "${FAB_A[0]}" up
rb_check "$P0 not UP again" topo_wait 20 port_state_is "$P0" UP
rb_check "${IP4_A[0]} did not come back to $P0" \
	topo_wait 10 rb_addr_on "$NS" "$P0" "${IP4_A[0]}"
expect_port "$P0 failed back" "$P0" UP 2 "$P0" 1 1
rb_result "ip: port attributes after a failover and a failback"

# 12: port attributes are read-only, and the kernel logged nothing
RB_RET=0
expect_ip_err "port state" '^rdmabond_slave: unknown option "state"\?$' \
	rbip "$NS" link set "$P0" type rdmabond_slave state DOWN
rb_check "ip link help rdmabond_slave does not say read-only" \
	slave_help_read_only
rb_check "kernel warnings" rb_dmesg_check
rb_result "ip: port attributes are read-only, no kernel warning"

ktap_finished
