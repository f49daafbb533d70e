#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Snapshot/clone costs (docs/snapshots.md): 3 monitors, 3 OSDs on files in
# $TMPDIR, pool size 3.
#  1. clone of a 10 GiB image holding 2 GiB: time of snap create + protect
#     + clone, data objects created, store bytes written (sum of the three
#     stores' used bytes from blk-osd --fsck before/after).
#  2. write latency at queue depth 1 (`blkctl image bench`, 64 KiB writes,
#     one per object of a 64 KiB-object image, sequential): steady state
#     without snapshots; the first write to each object after a snapshot
#     (copy-on-write clone); again with the snapshot present (no clone,
#     the snapset read only).
# Use a Release build: BLK_BUILD_DIR=build tests/bench/snap-bench.sh
# A measurement, not a test.
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 32 --size 3 --failure-domain osd >/dev/null
for i in 0 1 2; do mkfs_osd $i ${SNAP_BENCH_OSD_SIZE:-4G}; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
wait_clean() {
  for _ in $(seq 600); do
    s=$("$BLKCTL" --format json status | python3 -c 'import json,sys; d=json.load(sys.stdin)["pgmap"]["pgs_by_state"]; print(",".join(sorted("%s=%d"%(x["state_name"],x["count"]) for x in d)))')
    [ "$s" = "active+clean=32" ] && return 0
    sleep 0.1
  done
}
used_all() {
  local i tot=0 u out
  for i in 0 1 2; do stop_osd $i; done
  for i in 0 1 2; do
    out=$("$BLK_OSD" --fsck --device "$TEST_DIR/osd.$i.dev" 2>&1)
    u=$(echo "$out" | sed -n 's/^fsck: used \([0-9]*\) of.*/\1/p')
    tot=$((tot + u))
  done
  for i in 0 1 2; do start_osd $i; done
  wait_osds_up 3 30
  wait_clean
  USED=$tot
}
FILL=${SNAP_BENCH_FILL:-2G}
"$BLKCTL" image create rbd/big --size 10G || fail "create"
t0=$(ms_now)
"$BLKCTL" image bench rbd/big --io-type write --io-size 4M --io-threads 8 --io-pattern seq \
  --io-total "$FILL" >/dev/null || fail "fill"
echo "filled $FILL in $(( $(ms_now) - t0 )) ms"
used_all; u0=$USED
n0=$("$BLKCTL" object ls rbd | grep -c '^blk_data' || true)
t0=$(ms_now)
"$BLKCTL" image snap create rbd/big@gold
"$BLKCTL" image snap protect rbd/big@gold
"$BLKCTL" image clone rbd/big@gold rbd/vm1
t1=$(ms_now)
n1=$("$BLKCTL" object ls rbd | grep -c '^blk_data' || true)
used_all; u1=$USED
echo "RESULT clone: snap create + protect + clone of a 10 GiB image holding $FILL: $((t1 - t0)) ms;" \
     "data objects $n0 -> $n1; store used (3 OSDs) $u0 -> $u1 (+$((u1 - u0)) bytes)"
t0=$(ms_now)
"$BLKCTL" image clone rbd/big@gold rbd/vm2
echo "RESULT clone alone (snapshot exists): $(( $(ms_now) - t0 )) ms"

# write latency: 64 KiB objects, one 64 KiB write per object, qd 1
"$BLKCTL" image create rbd/lat --size 256M --object-size 64K
bench() {
  "$BLKCTL" --format json image bench rbd/lat --io-type write --io-size 64K --io-threads 1 \
    --io-pattern seq --io-total 64M | python3 -c '
import json,sys; d=json.load(sys.stdin)
print("%-36s %7.1f IOPS  p50 %6d us  p99 %6d us" % (sys.argv[1], d["iops"], d["lat_p50_us"], d["lat_p99_us"]))' "$1"
}
bench "first write (allocates)" >/dev/null
echo "RESULT $(bench 'steady, no snapshot')"
"$BLKCTL" image snap create rbd/lat@s1
echo "RESULT $(bench 'first write after a snapshot (COW)')"
echo "RESULT $(bench 'steady, with a snapshot')"
"$BLKCTL" image snap create rbd/lat@s2
echo "RESULT $(bench 'first write after a 2nd snapshot')"
for i in 0 1 2; do stop_osd $i; done
