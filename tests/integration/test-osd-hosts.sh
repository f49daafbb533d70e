#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Three "hosts" (network namespaces, deploy/netns-cluster.sh), each with one
# monitor and two OSDs; pool size 3 / min_size 2 with the default failure
# domain host:
#  - every PG's acting set spans the three hosts;
#  - host 3 is cut off the network: its OSDs are marked down by their
#    peers' reports, writes and reads go on (degraded PGs keep two copies
#    on two hosts) and every acknowledged object reads back;
#  - healed, the cluster returns to HEALTH_OK (recovery) and host 3's OSDs
#    hold identical copies of the objects written while it was away.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/netns-common.inc"
netns_cluster oh
osd_conf
netns_start_mons
i=1
for m in a b c; do
  "$NETNS" exec "$TAG" $i "$BLK_MON" --id $m >>"$TEST_DIR/log/mon.$m.log" 2>&1 &
  track_pid $!; eval "MONPID_$m=$!"
  i=$((i + 1))
done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create rbd 32 --size 3 --min-size 2 >/dev/null || fail "pool create"
netns_start_osds
host_of() { echo "h$(( $1 / 2 + 1 ))"; }

D=$TEST_DIR/data; mkdir -p "$D"
put() {  # put NAME: a distinct random object, kept in $D
  head -c $((4096 + RANDOM)) /dev/urandom >"$D/$1"
  "$BLKCTL" --timeout 60 object put rbd "$1" "$D/$1" >/dev/null || fail "put $1"
}
check_all() {
  local f
  for f in "$D"/*; do
    "$BLKCTL" --timeout 60 object get rbd "$(basename "$f")" "$TEST_DIR/got" >/dev/null &&
      cmp -s "$TEST_DIR/got" "$f" || fail "object $(basename "$f") does not read back ($1)"
  done
}
for i in $(seq 1 40); do put before$i; done
# placement: three copies on three hosts
for i in $(seq 1 40); do
  acting=$("$BLKCTL" --format json osd map rbd before$i |
    python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])')
  hosts=$(for o in $acting; do host_of "$o"; done | sort -u | wc -l)
  [ "$hosts" = 3 ] || fail "before$i on OSDs [$acting]: $hosts hosts, not 3"
done
echo "40 objects, each on three hosts"

echo "cutting host 3 (osd.4, osd.5, mon.c) off the network"
"$NETNS" cut "$TAG" 3
t0=$(ms_now)
wait_osd 4 status down 60 >/dev/null
wait_osd 5 status down 60 >/dev/null
echo "osd.4 and osd.5 marked down after $(( $(ms_now) - t0 )) ms"
for i in $(seq 1 30); do put during$i; done
check_all "host 3 cut off"
echo "30 writes while host 3 was away: all acknowledged and readable"

t0=$(ms_now)
netns_heal_host 3
echo "HEALTH_OK $(( $(ms_now) - t0 )) ms after host 3 came back"
check_all "healed"
# host 3's own copies of what was written while it was away
n=0
for i in $(seq 1 30); do
  for o in $("$BLKCTL" --format json osd map rbd during$i |
    python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])'); do
    [ "$(host_of "$o")" = h3 ] || continue
    "$BLKCTL" --timeout 30 object get rbd during$i "$TEST_DIR/got" --osd "$o" >/dev/null &&
      cmp -s "$TEST_DIR/got" "$D/during$i" || fail "osd.$o's copy of during$i differs after recovery"
    n=$((n + 1))
  done
done
[ "$n" = 30 ] || fail "host 3 holds $n of the 30 objects written meanwhile, not 30"
echo "host 3 holds identical copies of all 30 objects written while it was away"
for n in 0 1 2 3 4 5; do stop_osd $n; done
for m in a b c; do stop_mon $m; done
echo PASS
