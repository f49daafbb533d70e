#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Peering and recovery, and min_size (I3).  3 monitors, 4 OSDs (one host,
# failure domain osd), pool size 3 / min_size 2.
#  1. write objects; kill -9 osd.3; write and remove more (PGs degraded);
#     restart it -> it recovers by log; every acting member identical.
#  2. kill -9 osd.3 again and mark it out -> its PGs remap to the other
#     OSDs, which get the data (recovery from an empty member) -> every
#     object on 3 OSDs of its new acting set, identical.
#  3. kill -9 two more OSDs of a PG -> a write to it blocks, then fails
#     with EAGAIN and a clear message after osd_op_timeout_undersized;
#     no write is accepted below min_size.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
OSD_PG_LOG_MAX=16 OSD_ASYNC_RECOVERY=true OSD_OP_TIMEOUT_UNDERSIZED=3s osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 16 --size 3 --min-size 2 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2 3; do mkfs_osd $i 256M; done
for i in 0 1 2 3; do start_osd $i; done
wait_osds_up 4 30
V="$(dirname "$0")/verifier.py"


python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 4 --objects 10 | head -1
kill_osd 3
wait_osd 3 status down 10 >/dev/null
"$BLKCTL" status | grep -q "undersized" || fail "status shows no undersized PG with osd.3 down"
python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 4 --objects 10 | head -1
start_osd 3
wait_osd 3 status up 15 >/dev/null
wait_pg_states "active+clean=16"
grep -q "osd.3 peering I: .*recovered\|peering I: .*objects to recover" "$TEST_DIR"/log/osd.*.log || fail "no recovery logged"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "replicas differ after restart"

# backfill must also remove: an object removed while a member was away,
# its log trimmed past (osd_pg_log_max 16), must not survive there
pgid() { "$BLKCTL" --format json osd map rbd "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pgid"], *d["acting"])'; }
read -r PGX A0 A1 A2 < <(pgid ghost)
"$BLKCTL" object put rbd ghost /etc/hostname >/dev/null || fail "put ghost"
same=()
for i in $(seq 1 400); do
  read -r p _ < <(pgid "fill$i")
  [ "$p" = "$PGX" ] && same+=("fill$i")
  [ ${#same[@]} -ge 20 ] && break
done
[ ${#same[@]} -ge 20 ] || fail "not enough names in PG $PGX"
kill_osd "$A2"
wait_osd "$A2" status down 10 >/dev/null
"$BLKCTL" object rm rbd ghost >/dev/null || fail "rm ghost"
for n in "${same[@]}"; do "$BLKCTL" object put rbd "$n" /etc/hostname >/dev/null || fail "put $n"; done
start_osd "$A2"
wait_osd "$A2" status up 15 >/dev/null
wait_pg_states "active+clean=16"
for o in $A0 $A1 $A2; do
  set +e; "$BLKCTL" object get rbd ghost - --osd "$o" >/dev/null 2>&1; rc=$?; set -e
  [ $rc -eq 2 ] || fail "removed object 'ghost' still readable on osd.$o (exit $rc)"
done
grep -q "osd.$A2 is behind the log" "$TEST_DIR"/log/osd.*.log || fail "PG $PGX was not backfilled"

# out: the remaining OSDs take its PGs over
kill_osd 3
wait_osd 3 status down 10 >/dev/null
python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 3 --objects 10 | head -1
"$BLKCTL" osd out 3 >/dev/null || fail "osd out"
wait_pg_states "active+clean=16"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "data not on 3 OSDs after osd.3 went out"

# below min_size: writes block, then fail clearly; nothing is accepted
set -- $(acting_of rbd lonely)
echo "acting set of 'lonely': $*"
kill_osd "$2"; kill_osd "$3"
wait_osd "$2" status down 10 >/dev/null
wait_osd "$3" status down 10 >/dev/null
head -c 5000 /dev/urandom >"$TEST_DIR/lonely"
put_blocked rbd lonely "$TEST_DIR/lonely" 2500
set +e; "$BLKCTL" --timeout 3 object stat rbd lonely >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "object readable below min_size"
start_osd "$2"
wait_osd "$2" status up 15 >/dev/null
set +e; "$BLKCTL" object stat rbd lonely 2>&1; rc=$?; set -e
[ $rc -eq 2 ] || fail "the refused write exists (stat exit $rc)"
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
