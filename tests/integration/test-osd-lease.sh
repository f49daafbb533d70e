#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# I2 with a partition (docs/osd.md "Lease"): three "hosts" (network
# namespaces, deploy/netns-cluster.sh), each with one monitor and two OSDs,
# pool size 3 / min_size 2, failure domain host; osd_lease 2 s.
#  - host 3 is cut off the network;
#  - a client inside host 3 (it still reaches host 3's monitor and OSDs,
#    whose map shows them up and primary) is refused a read of an object
#    an OSD of host 3 is primary for once the lease ran out: -ESTALE with
#    "no valid lease", never the old data, while the majority side marks
#    host 3's OSDs down, waits out their lease (new primaries go active no
#    earlier than down stamp + osd_lease + osd_lease_margin) and serves
#    reads and a rewrite of that object;
#  - healed: the old primary serves again (renewed lease), nothing is lost
#    and the rewrite is what every client reads.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/netns-common.inc"
netns_cluster ol
LEASE_MS=${LEASE_MS:-2000} MARGIN_MS=1000   # LEASE_MS=0: lease off (the test must fail)
OSD_LEASE=${LEASE_MS}ms OSD_LEASE_MARGIN=${MARGIN_MS}ms osd_conf
netns_start_mons
"$BLKCTL" --timeout 30 pool create rbd 16 --size 3 --min-size 2 >/dev/null || fail "pool create"
netns_start_osds

D=$TEST_DIR/data; mkdir -p "$D"
put() {  # put NAME: a distinct random object, kept in $D
  head -c $((4096 + RANDOM)) /dev/urandom >"$D/$1"
  "$BLKCTL" --timeout 60 object put rbd "$1" "$D/$1" >/dev/null || fail "put $1"
}
primary_of() {
  "$BLKCTL" --format json osd map rbd "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["acting"][0])'
}
for i in $(seq 1 30); do put obj$i; done
# an object whose primary lives on host 3 (osd.4 or osd.5)
VICTIM=
for i in $(seq 1 30); do
  p=$(primary_of obj$i)
  if [ "$p" = 4 ] || [ "$p" = 5 ]; then VICTIM=obj$i; VPRIM=$p; break; fi
done
[ -n "$VICTIM" ] || fail "no object of 30 has its primary on host 3"
echo "$VICTIM: primary osd.$VPRIM (host 3)"
# the host-3 client reads it before the cut
"$NETNS" exec "$TAG" 3 "$BLKCTL" --timeout 20 object get rbd "$VICTIM" "$TEST_DIR/got3" >/dev/null &&
  cmp -s "$TEST_DIR/got3" "$D/$VICTIM" || fail "host-3 client cannot read $VICTIM before the cut"

echo "cutting host 3 (osd.4, osd.5, mon.c) off the network"
"$NETNS" cut "$TAG" 3
t_cut=$(ms_now)
# past the lease (+ a beacon timeout): the old primary must refuse
sleep $(( (LEASE_MS + 1000) / 1000 ))
t0=$(ms_now)
if "$NETNS" exec "$TAG" 3 "$BLKCTL" --timeout 4 --set client_op_timeout=4s object get rbd "$VICTIM" "$TEST_DIR/got3" \
  >"$TEST_DIR/h3.out" 2>"$TEST_DIR/h3.err"; then
  fail "osd.$VPRIM served $VICTIM $(( t0 - t_cut )) ms after the cut (lease $LEASE_MS ms)"
fi
grep -q "no valid lease" "$TEST_DIR/h3.err" ||
  fail "the host-3 read failed without the lease reason: $(cat "$TEST_DIR/h3.err")"
echo "host-3 read refused $(( t0 - t_cut )) ms after the cut: $(tail -1 "$TEST_DIR/h3.err")"
grep -q "lease expired" "$TEST_DIR/log/osd.$VPRIM.log" || fail "osd.$VPRIM did not log its lease expiry"

# the majority side: host 3's OSDs down, new primaries, reads and a rewrite
wait_osd 4 status down 60 >/dev/null
wait_osd 5 status down 60 >/dev/null
t_down=$(ms_now)
echo "osd.4 and osd.5 marked down $(( t_down - t_cut )) ms after the cut"
NEWP=$(primary_of "$VICTIM")
case $NEWP in 4|5) fail "$VICTIM still mapped to osd.$NEWP after host 3 went down" ;; esac
head -c 6000 /dev/urandom >"$D/$VICTIM.new"
"$BLKCTL" --timeout 60 object put rbd "$VICTIM" "$D/$VICTIM.new" >/dev/null || fail "rewrite $VICTIM"
t_w=$(ms_now)
echo "rewrite of $VICTIM on osd.$NEWP acknowledged $(( t_w - t_down )) ms after the mark-down"
mv "$D/$VICTIM.new" "$D/$VICTIM"
# (or it saw the mark-down only once the lease had run out: its map came
# late, e.g. through a subscription to the cut-off monitor)
grep -q "waiting .* ms for the previous primary's lease\|the previous primary's lease ran out" \
  "$TEST_DIR/log/osd.$NEWP.log" ||
  fail "osd.$NEWP went active without waiting for osd.$VPRIM's lease"
for i in $(seq 1 10); do put during$i; done
for f in "$D"/*; do
  "$BLKCTL" --timeout 60 object get rbd "$(basename "$f")" "$TEST_DIR/got" >/dev/null &&
    cmp -s "$TEST_DIR/got" "$f" || fail "object $(basename "$f") does not read back (host 3 cut)"
done
echo "majority side: $VICTIM rewritten, 10 more writes, everything reads back"
# still cut: host 3 must not serve the old copy now that a newer one exists
if "$NETNS" exec "$TAG" 3 "$BLKCTL" --timeout 3 --set client_op_timeout=3s object get rbd "$VICTIM" "$TEST_DIR/got3" \
  >/dev/null 2>"$TEST_DIR/h3.err"; then
  fail "host 3 served $VICTIM (stale: $(cmp -s "$TEST_DIR/got3" "$D/$VICTIM" && echo no || echo yes)) while cut off"
fi

netns_heal_host 3
for f in "$D"/*; do
  "$BLKCTL" --timeout 60 object get rbd "$(basename "$f")" "$TEST_DIR/got" >/dev/null &&
    cmp -s "$TEST_DIR/got" "$f" || fail "object $(basename "$f") does not read back after healing"
done
"$NETNS" exec "$TAG" 3 "$BLKCTL" --timeout 30 object get rbd "$VICTIM" "$TEST_DIR/got3" >/dev/null &&
  cmp -s "$TEST_DIR/got3" "$D/$VICTIM" || fail "host-3 client does not read the rewrite after healing"
grep -q "lease renewed" "$TEST_DIR/log/osd.$VPRIM.log" || fail "osd.$VPRIM never renewed its lease"
echo "healed: HEALTH_OK, all 41 objects read back, the host-3 client reads the rewrite"
for n in 0 1 2 3 4 5; do stop_osd $n; done
for m in a b c; do stop_mon $m; done
echo PASS
