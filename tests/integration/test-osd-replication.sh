#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# I1 under failure: 3 monitors, 3 OSDs (one host, failure domain osd),
# pool size 3 / min_size 2.  Four writers put and remove objects with
# random sizes and contents (verifier.py records every acknowledged
# write); mid-workload one OSD is killed with SIGKILL (writes continue
# with 2 members; a second set of writers touches objects only while it is
# down, so that they reach it only by recovery), later restarted (it
# recovers by log); then the leader monitor is killed with SIGKILL and
# restarted while the writes go on.  At the end every
# acknowledged write reads back identical from the primary and from every
# member of the acting set (debug read of each OSD's own copy).
source "$(dirname "$0")/../functions.sh"
requires python3
rbd_cluster
V="$(dirname "$0")/verifier.py"

python3 "$V" write "$TEST_DIR/v" rbd --writers 4 --seconds ${WRITE_SECS:-24} --objects 8 \
  >"$TEST_DIR/verifier-write.out" 2>&1 &
WPID=$!
track_pid $WPID
sleep 6
echo "kill -9 osd.1 mid-workload"
kill_osd 1
wait_osd 1 status down 10 >/dev/null
python3 "$V" write "$TEST_DIR/vdown" rbd --writers 2 --seconds 6 --objects 8 --prefix down- \
  >"$TEST_DIR/verifier-down.out" 2>&1 || fail "writers while osd.1 is down"
echo "restart osd.1"
start_osd 1
sleep 2
L=$(leader)
echo "kill -9 the leader monitor mon.$L mid-workload"
kill_mon "$L"
sleep 3
start_mon "$L"
wait "$WPID" || fail "verifier writers failed"
cat "$TEST_DIR/verifier-write.out" "$TEST_DIR/verifier-down.out"
acked=$(grep -o '[0-9]* acknowledged' "$TEST_DIR/verifier-write.out" | cut -d' ' -f1)
[ "${acked:-0}" -gt 20 ] || fail "too few acknowledged writes ($acked)"

# every PG active+clean again
wait_pg_states "active+clean=16"
echo "pg states: active+clean=16"
grep -q "recovered [0-9]* objects" "$TEST_DIR"/log/osd.*.log || fail "no recovery happened"

python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "verifier found lost or divergent writes"
python3 "$V" check "$TEST_DIR/vdown" rbd --replicas || fail "objects written while osd.1 was down differ"
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
