#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Snapshots at the OSDs (issue 8): 3 OSDs, pool size 3 min_size 1.
#  1. recovery: osd.0 is killed (-9); a snapshot is taken and the image
#     overwritten while it is down (the clones exist only on osd.1/osd.2);
#     osd.0 restarts and is backfilled (PG log of 4 entries); then osd.1 and osd.2 are killed and the
#     snapshot and the head are read back from osd.0 alone, byte-identical.
#  2. space: OSD store usage (blk-osd --fsck: used bytes, and a clean
#     check of every extent's share count) before/after a snapshot with
#     overwrites and after its removal: removal returns the clones' space.
#  3. an OSD killed (-9) while a snapshot is being trimmed: snap rm still
#     completes, the head is intact, the store checks clean.
source "$(dirname "$0")/../functions.sh"
requires python3 cmp
make_cluster 3
OSD_PG_LOG_MAX=4 osd_conf   # a short log: osd.0 is brought back by backfill
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 16 --size 3 --min-size 1 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 512M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30

overwrite() {   # overwrite IMAGE with random 64K writes
  "$BLKCTL" image bench "rbd/$1" --io-type write --io-size 64K --io-threads 8 --io-pattern rand \
    --io-total "${2:-4M}" >/dev/null || fail "bench overwrite of $1"
}
# used_all: USED = sum of the three stores' used bytes (stops, fscks, restarts the OSDs)
# (not in a subshell: the OSDs must stay this shell's children); sets USED
used_all() {
  local i tot=0 u
  for i in 0 1 2; do stop_osd $i; done
  for i in 0 1 2; do
    out=$("$BLK_OSD" --fsck --device "$TEST_DIR/osd.$i.dev" 2>&1) || fail "fsck osd.$i: $out"
    grep -q "fsck: clean" <<<"$out" || fail "fsck osd.$i not clean: $out"
    u=$(echo "$out" | sed -n 's/^fsck: used \([0-9]*\) of.*/\1/p')
    tot=$((tot + u))
  done
  for i in 0 1 2; do start_osd $i; done
  wait_osds_up 3 30 >/dev/null
  wait_pg_states "active+clean=16" 60
  USED=$tot
}

python3 -c "import os,sys; sys.stdout.buffer.write(os.urandom(8<<20))" >"$TEST_DIR/v1"
"$BLKCTL" image import "$TEST_DIR/v1" rbd/vm --object-size 1M >/dev/null || fail "import"
wait_pg_states "active+clean=16" 60

# 1. recovery of clones
kill_osd 0
wait_osd 0 status down 15 >/dev/null
"$BLKCTL" image snap create rbd/vm@s1 || fail "snap create with osd.0 down"
overwrite vm 8M   # ~16 writes per object: every PG's log moves past osd.0's
"$BLKCTL" image export rbd/vm "$TEST_DIR/head1" >/dev/null || fail "export head"
cmp -s "$TEST_DIR/v1" "$TEST_DIR/head1" && fail "head not overwritten"
start_osd 0
wait_osd 0 status up 15 >/dev/null
wait_pg_states "active+clean=16" 60
kill_osd 1
kill_osd 2
wait_osd 1 status down 15 >/dev/null
wait_osd 2 status down 15 >/dev/null
"$BLKCTL" --timeout 30 image export rbd/vm@s1 "$TEST_DIR/s1.osd0" >/dev/null || fail "export s1 from osd.0"
cmp "$TEST_DIR/v1" "$TEST_DIR/s1.osd0" || fail "snapshot s1 on the recovered osd.0 differs"
"$BLKCTL" --timeout 30 image export rbd/vm "$TEST_DIR/head.osd0" >/dev/null || fail "export head from osd.0"
cmp "$TEST_DIR/head1" "$TEST_DIR/head.osd0" || fail "head on the recovered osd.0 differs"
grep -q "osd.0 is behind the log" "$TEST_DIR"/log/osd.*.log || fail "osd.0 was not backfilled"
echo "ok: snapshot and head read back from the backfilled osd.0 alone"
start_osd 1
start_osd 2
wait_osds_up 3 30
wait_pg_states "active+clean=16" 60

# 2. space returned by snapshot removal
used_all; u_snap=$USED
"$BLKCTL" image snap rm rbd/vm@s1 || fail "snap rm"
used_all; u_after=$USED
echo "store used (3 OSDs): with snapshot s1 $u_snap, after snap rm $u_after, freed $((u_snap - u_after))"
[ $((u_snap - u_after)) -ge $((3 * 2 * 1048576)) ] || fail "snap rm freed only $((u_snap - u_after)) bytes"
u_base=$u_after
"$BLKCTL" image snap create rbd/vm@s2 || fail "snap create s2"
used_all; u_s2=$USED
echo "store used: snapshot without overwrites costs $((u_s2 - u_base)) bytes"
[ $((u_s2 - u_base)) -lt $((3 * 256 * 1024)) ] || fail "a snapshot alone used $((u_s2 - u_base)) bytes"

# 3. kill -9 an OSD while a snapshot is trimmed
overwrite vm 8M
"$BLKCTL" image export rbd/vm "$TEST_DIR/head2" >/dev/null || fail "export head2"
"$BLKCTL" --timeout 60 image snap rm rbd/vm@s2 >"$TEST_DIR/rm.out" 2>&1 &
rmpid=$!
sleep 0.2
kill_osd 1
wait $rmpid || fail "snap rm with an OSD killed: $(cat "$TEST_DIR/rm.out")"
start_osd 1
wait_osd 1 status up 15 >/dev/null
wait_pg_states "active+clean=16" 60
"$BLKCTL" image snap ls rbd/vm | grep -q s2 && fail "s2 still listed"
"$BLKCTL" image export rbd/vm "$TEST_DIR/head3" >/dev/null || fail "export head3"
cmp "$TEST_DIR/head2" "$TEST_DIR/head3" || fail "head changed by the interrupted trim"
used_all; u_end=$USED
echo "store used after the interrupted trim: $u_end (before the snapshot: $u_base)"
for i in 0 1 2; do stop_osd $i; done
echo PASS
