#!/bin/sh
# rdmabond scratch test, run as init script in the QEMU guest (vm.sh).
# Host a: ports a0 a1 a2 (rxe each) in group rb0; host b: b0 b1 (rxe).
# All ports on bridge br0 in netns fab, 192.0.2.0/24 and 2001:db8::/64.

KSRC=<checkout>/kernel-src/wt-dev
export PYTHONDONTWRITEBYTECODE=1
YNL="/usr/bin/python3 $KSRC/tools/net/ynl/pyynl/cli.py --spec $KSRC/Documentation/netlink/specs/rt-link.yaml"
MODE=${RB_MODE:-builtin}
RBKO=${RBKO:-}

t() {
	echo "\$ $*"
	"$@" 2>&1
	echo "[rc=$?]"
}

sec() {
	echo
	echo "=================== $* ==================="
}

ynl_a() {
	ip netns exec a $YNL "$@"
}

# state of the ports, from the kernel's rtnetlink (YNL decodes the port attrs)
ports() {
	for p in "$@"; do
		ynl_a --do getlink --json "{\"ifname\": \"$p\"}" --output-json 2>&1 |
			/usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
li = d.get("linkinfo", {})
print(d["ifname"], d.get("operstate"), "master", d.get("master"),
      li.get("slave-kind"), li.get("slave-data"))'
	done
}

addrs() {
	ip -n a -br addr show | grep -v '^lo'
}

# wait until address $2 is on device $1 (host a), print how long it took
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

mark() {
	t0=$(now_ms)
}

# waitaddr DEV ADDR: time since the last mark until ADDR is on DEV
waitaddr() {
	i=0
	while ! ip -n a addr show dev $1 | grep -q " $2/"; do
		i=$((i + 1))
		[ $i -gt 300 ] && { echo "$2 not on $1 after 30 s"; return 1; }
		sleep 0.1
	done
	echo "$2 on $1 $(($(now_ms) - t0)) ms after the event"
}

sec "setup"
if [ "$MODE" = module ]; then
	t insmod "$RBKO"
	t insmod <checkout>/target/drv/apitest/rdmabond_apitest.ko
fi
for ns in fab a b; do ip netns add $ns; ip -n $ns link set lo up; done
ip -n fab link add br0 type bridge
ip -n fab link set br0 up
n=0
for p in a0 a1 a2 b0 b1; do
	h=${p%?}
	ip link add $p netns $h type veth peer name ${p}p netns fab
	ip -n fab link set ${p}p master br0
	ip -n fab link set ${p}p up
	ip -n $h link set $p up
	ip netns exec $h rdma link add rxe_$p type rxe netdev $p
done
for h in a b; do
	ip netns exec $h sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
		net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0
done
ip -n a addr add 192.0.2.1/24 dev a0
ip -n a addr add 2001:db8::1/64 dev a0 nodad
ip -n a addr add 192.0.2.2/24 dev a1
ip -n a addr add 192.0.2.3/24 dev a1
ip -n a addr add 192.0.2.4/24 dev a2
ip -n b addr add 192.0.2.11/24 dev b0
ip -n b addr add 2001:db8::11/64 dev b0 nodad
ip -n b addr add 192.0.2.12/24 dev b1
sleep 2
t rdma link
addrs

sec "create the group: stock iproute2, then YNL for the attributes"
t ip -n a link add rb0 type rdmabond
t ip -n a -d link show rb0
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failback-delay": 3000, "notify-peers-count": 3, "notify-peers-interval": 200}}}'
echo "\$ ynl_a --do getlink --json '{\"ifname\": \"rb0\"}' (linkinfo only)"
ynl_a --do getlink --json '{"ifname": "rb0"}' --output-json |
	/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["linkinfo"])'

sec "refusals (extack)"
ip -n a link add x0 type veth peer name x1
t ip -n a link set x0 master rb0
t ip -n a link set lo master rb0
ip -n a link add rb1 type rdmabond
t ip -n a link set rb1 master rb0
t ip -n a link set rb0 master rb0
ip -n a link add bond0 type bond
t ip -n a link set bond0 master rb0
t ip -n a addr add 198.51.100.1/24 dev rb0
t ip -n a addr add 2001:db8:1::1/64 dev rb0
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failover-delay": 700000}}}'
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"notify-peers-interval": 0}}}'
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failback": 2}}}'
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"mode": "active-backup"}}}'
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"mode": "active-active"}}}'
t ynl_a --do newlink --create --json '{"ifname": "rb9", "linkinfo": {"kind": "rdmabond", "data": {"mode": 5}}}'
t ynl_a --do newlink --create --json '{"ifname": "rb9", "address": "00:11:22:33:44:55", "linkinfo": {"kind": "rdmabond"}}'
ip -n a link del bond0
ip -n a link del rb1
ip -n a link del x0

sec "add the ports"
t ip -n a link set a0 master rb0
t ip -n a link set a1 master rb0
t ip -n a link set a2 master rb0
t ip -n a link set rb0 up
sleep 1
t ip -n a -d link show a0
ports a0 a1 a2
t ynl_a --do newlink --json '{"ifname": "a0", "linkinfo": {"slave-kind": "rdmabond", "slave-data": {"state": 1}}}'
t ynl_a --do newlink --json '{"ifname": "a0", "linkinfo": {"slave-kind": "rdmabond", "slave-data": {"failovers": 7}}}'

sec "failover, admin down: a0 -> least loaded port (a2 hosts 1 address, a1 hosts 2)"
ip netns exec b tcpdump -l -n -e -i b0 arp or icmp6 > /tmp/tcpdump.log 2>&1 &
TCPDUMP=$!
ip -n a monitor link address > /tmp/monitor.log 2>&1 &
MON=$!
ip netns exec b rping -s -a 192.0.2.11 -P > /tmp/rping-srv-b.log 2>&1 &
RSB=$!
ip netns exec a stdbuf -oL rping -s -a 192.0.2.1 -d > /tmp/rping-srv-a.log 2>&1 &
RSA=$!
sleep 2
ip netns exec a stdbuf -oL rping -c -a 192.0.2.11 -I 192.0.2.1 -C 1000000 -S 64 -d > /tmp/rping-cli.log 2>&1 &
RC=$!
i=0
while ! grep -q ESTABLISHED /tmp/rping-cli.log && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 1
echo "rping client connected from 192.0.2.1 and pinging:"
grep -E "cma_event|ping" /tmp/rping-cli.log | head -5
t ip -n a link set a0 down
sleep 2
addrs
t ip -n a -6 addr show dev a2
ports a0 a1 a2
sleep 2
kill $RC $RSA 2>/dev/null
kill $TCPDUMP $MON 2>/dev/null
sleep 1
echo "--- rping client (bound to 192.0.2.1), RDMA CM events:"
grep -E "cma_event|ADDR_CHANGE|unhandled|error|fail" /tmp/rping-cli.log | head -20
echo "(rping client debug log: $(wc -l < /tmp/rping-cli.log) lines)"
echo "--- rping server listening on 192.0.2.1, RDMA CM events:"
grep -E "cma_event|ADDR_CHANGE|unhandled" /tmp/rping-srv-a.log | head -10
echo "--- tcpdump in host b on b0 (gratuitous ARP / unsolicited NA):"
cat /tmp/tcpdump.log
echo "--- rtnetlink monitor in host a:"
cat /tmp/monitor.log

sec "failback after 3000 ms"
mark
t ip -n a link set a0 up
waitaddr a0 192.0.2.1
addrs
ports a0 a1 a2

sec "failover on carrier loss (peer side down), failover delay 1000 ms"
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failover-delay": 1000}}}'
mark
t ip -n fab link set a1p down
sleep 0.3
echo "after 0.3 s (within the failover delay):"
addrs
waitaddr a2 192.0.2.2
addrs
ports a1

sec "addresses parked on a port that dies move on; all ports down: they stay"
t ip -n fab link set a2p down
sleep 2
addrs
t ip -n fab link set a0p down
sleep 2
addrs
ports a0 a1 a2
echo "--- a port recovers: everything moves to it at once"
t ip -n fab link set a1p up
sleep 2
addrs
ports a0 a1 a2
mark
t ip -n fab link set a0p up
t ip -n fab link set a2p up
waitaddr a0 192.0.2.1
waitaddr a2 192.0.2.4
addrs
ports a0 a1 a2

sec "addresses added later are home addresses too; removal keeps working"
t ip -n a addr add 192.0.2.5/24 dev a2
t ip -n a addr add 2001:db8::4/64 dev a2 nodad
sleep 1
ports a2
t ip -n a link set a2 down
sleep 1
addrs
t ip -n a addr del 192.0.2.5/24 dev a0
sleep 1
ports a2
mark
t ip -n a link set a2 up
waitaddr a2 192.0.2.4
addrs

sec "no failback"
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failback": 0, "failover-delay": 0}}}'
t ip -n a link set a0 down
sleep 1
t ip -n a link set a0 up
sleep 5
addrs
ports a0
t ynl_a --do newlink --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"failback": 1, "failback-delay": 0}}}'
sleep 1
addrs

sec "RDMA device removed and added again under a port"
t ip netns exec a rdma link del rxe_a1
sleep 1
addrs
ports a1
mark
t ip netns exec a rdma link add rxe_a1 type rxe netdev a1
waitaddr a1 192.0.2.2
addrs
ports a1

sec "removing a port that hosts another port's addresses"
t ip -n a link set a0 down
sleep 1
addrs
t ip -n a link set a1 nomaster
sleep 1
addrs
mark
t ip -n a link set a0 up
waitaddr a0 192.0.2.1
t ip -n a link set a1 master rb0
sleep 1
addrs

sec "removing a port whose addresses are away: they come back to it"
t ip -n a link set a1 down
sleep 1
addrs
t ip -n a link set a1 nomaster
sleep 1
addrs
t ip -n a link set a1 up
t ip -n a link set a1 master rb0
sleep 1

sec "moving a port to another group: rtnetlink detaches it from rb0 first"
t ip -n a link add rb1 type rdmabond
t ip -n a link set a2 master rb1
t ip -n a link set a2 master rb0
t ip -n a link del rb1
sleep 1
addrs

sec "deleting a port device: its addresses stay on the port hosting them"
t ip -n a link add a3 type veth peer name a3p netns fab
ip -n fab link set a3p master br0
ip -n fab link set a3p up
ip -n a link set a3 up
ip netns exec a rdma link add rxe_a3 type rxe netdev a3
ip -n a addr add 192.0.2.6/24 dev a3
t ip -n a link set a3 master rb0
ports a3
t ip -n a link del a3
sleep 1
addrs
ports a0 a1 a2

sec "deleting the group while addresses are parked: they go home"
t ip -n a link set a1 down
sleep 1
addrs
t ip -n a link del rb0
sleep 1
addrs
t ip -n a link set a1 up

sec "active-backup mode"
t ynl_a --do newlink --create --json '{"ifname": "rb0", "linkinfo": {"kind": "rdmabond", "data": {"mode": "active-backup", "failback-delay": 1000}}}'
for p in a0 a1 a2; do ip -n a link set $p master rb0; done
sleep 2
addrs
t ip -n a link set a0 down
sleep 1
addrs
t ip -n a link set a0 up
sleep 3
addrs
ports a0 a1 a2

sec "many groups, another namespace"
t ip -n b link add rbb type rdmabond
t ip -n b link set b0 master rbb
t ip -n b link set b1 master rbb
t ip -n b link set b0 down
sleep 1
t ip -n b -br addr show
t ip -n b link set b0 up
sleep 6
t ip -n b -br addr show

if [ "$MODE" = module ]; then
	sec "module unload with parked addresses"
	t ip -n a link set a1 down
	t ip -n b link set b1 down
	sleep 1
	addrs
	t ip -n b -br addr show
	t rmmod rdmabond_apitest
	t rmmod rdmabond
	addrs
	t ip -n b -br addr show
fi

sec "deleting the namespaces"
t ip -n a link set a2 down
sleep 1
addrs
t ip netns del a
t ip netns del b
t ip netns del fab
# namespaces are dismantled asynchronously
sleep 10

sec "kernel log of the groups (dmesg, with timestamps)"
dmesg | grep -E "rb0|rbb"

sec "kernel warnings"
dmesg | grep -iE "WARNING|BUG:|circular locking|possible.*deadlock|suspicious RCU|leak|refcount_t|waiting for .* to become free" || echo "none"
