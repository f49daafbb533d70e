#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# An unlogged object that no log would ever bring back in line (the
# peering simulation's seed 764, made deterministic): 3 monitors, 3 OSDs
# A, B, C, pool size 3 / min_size 2, one object x whose primary is A.
#  1. B and C are stopped (SIGSTOP); a write of x reaches only A's store
#     (a divergent entry: never acknowledged); then all three are killed;
#  2. A (with osd_debug_stop_after_install) and C restart: A is
#     authoritative, its recovery installs its divergent x on C, and A
#     exits before activation: C holds x newer than its log says;
#  3. B restarts (A stays down): B and C have the same last version, so no
#     log names x.  Only C's unlogged record makes the peering copy x
#     from the authoritative member: once the PG is active both must hold
#     the same x (without the record they differ for good);
#  4. A restarts: every PG active+clean, x identical on all three.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create rbd 8 --size 3 --min-size 2 --failure-domain osd >/dev/null ||
  fail "pool create"
for i in 0 1 2; do mkfs_osd $i 256M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
wait_pg_states "active+clean=8" 60

acting() { "$BLKCTL" --format json osd map rbd "$1" | python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])'; }
name=""
for k in $(seq 1 200); do
  read -r a _ < <(acting "x$k")
  if [ "$a" = 0 ]; then name="x$k"; break; fi
done
[ -n "$name" ] || fail "no object name with osd.0 as primary"
read -r A B C < <(acting "$name")
echo "object $name: acting [$A,$B,$C]"
head -c 65536 /dev/urandom >"$TEST_DIR/old"
head -c 65536 /dev/urandom >"$TEST_DIR/new"
"$BLKCTL" object put rbd "$name" "$TEST_DIR/old" || fail "put $name"
for k in 1 2 3 4 5 6; do
  "$BLKCTL" object put rbd "other$k" "$TEST_DIR/old" || fail "put other$k"
done

# 1. a write only A's store gets
kill -STOP "$(osd_pid "$B")" "$(osd_pid "$C")"
set +e
"$BLKCTL" --timeout 2 object put rbd "$name" "$TEST_DIR/new" >/dev/null 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "a write was acknowledged with two members stopped"
sleep 0.5
for i in "$A" "$B" "$C"; do kill_osd "$i"; done
for i in "$A" "$B" "$C"; do wait_osd "$i" status down 20 >/dev/null; done

# 2. A installs its divergent x on C, then stops before activation
start_osd "$C"
start_osd "$A" --set osd_debug_stop_after_install=true
stopped=0
for _ in $(seq 300); do
  grep -q "osd_debug_stop_after_install: exiting" "$TEST_DIR/log/osd.$A.log" && { stopped=1; break; }
  sleep 0.1
done
[ $stopped = 1 ] || fail "osd.$A did not stop after installing"
wait "$(osd_pid "$A")" 2>/dev/null || true
wait_osd "$A" status down 20 >/dev/null

# 3. B and C: the same last version; only C's record names x
start_osd "$B"
wait_pg_states "active+undersized+degraded=8" 60
grep -h "unlogged objects" "$TEST_DIR"/log/osd.*.log || true
"$BLKCTL" object get rbd "$name" "$TEST_DIR/onB" --osd "$B" || fail "$name unreadable on osd.$B"
"$BLKCTL" object get rbd "$name" "$TEST_DIR/onC" --osd "$C" || fail "$name unreadable on osd.$C"
cmp -s "$TEST_DIR/onB" "$TEST_DIR/onC" ||
  fail "$name differs between osd.$B and osd.$C of an active PG (C's unlogged copy was not re-synced)"
echo "$name identical on osd.$B and osd.$C"

# 4. A back: clean, identical everywhere
start_osd "$A"
wait_osds_up 3 30
wait_pg_states "active+clean=8" 60
"$BLKCTL" object get rbd "$name" "$TEST_DIR/ref" || fail "$name unreadable"
for o in "$A" "$B" "$C"; do
  "$BLKCTL" object get rbd "$name" "$TEST_DIR/back" --osd "$o" || fail "$name unreadable on osd.$o"
  cmp -s "$TEST_DIR/back" "$TEST_DIR/ref" || fail "$name differs on osd.$o"
done
for k in 1 2 3 4 5 6; do
  for o in "$A" "$B" "$C"; do
    "$BLKCTL" object get rbd "other$k" "$TEST_DIR/back" --osd "$o" || fail "other$k unreadable on osd.$o"
    cmp -s "$TEST_DIR/back" "$TEST_DIR/old" || fail "other$k differs on osd.$o"
  done
done
echo "every copy identical on its 3 members"
for i in 0 1 2; do stop_osd $i; done
echo PASS
