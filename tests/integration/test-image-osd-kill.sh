#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Image I/O continues through an OSD kill -9 and a primary change: 3
# monitors, 3 OSDs, pool size 3 / min_size 2.  image-model's stress mode
# keeps 16 aio reads and writes in flight on one image (reads checked
# against the model of acknowledged writes); mid-run osd.0 is killed with
# SIGKILL (the PGs it was primary of move to another OSD), later
# restarted, then osd.1 is killed.  The driver must see no error at all,
# and at the end every acknowledged write reads back (after a reopen).
source "$(dirname "$0")/../functions.sh"
MODEL=$BLK_BUILD_DIR/tests/integration/image-model
[ -x "$MODEL" ] || fail "image-model not built ($MODEL)"
rbd_cluster

"$MODEL" rbd vm stress --seconds "${STRESS_SECS:-30}" --qd 16 --seed 11 >"$TEST_DIR/stress.out" 2>&1 &
SPID=$!
track_pid $SPID
sleep 5
echo "kill -9 osd.0 under I/O"
kill_osd 0
wait_osd 0 status down 15 >/dev/null
sleep 5
echo "restart osd.0"
start_osd 0
wait_osd 0 status up 30 >/dev/null
sleep 5
echo "kill -9 osd.1 under I/O"
kill_osd 1
wait "$SPID" || { cat "$TEST_DIR/stress.out"; fail "I/O failed or lost an acknowledged write"; }
cat "$TEST_DIR/stress.out"
acked=$(grep -o 'acked [0-9]*' "$TEST_DIR/stress.out" | cut -d' ' -f2)
[ "${acked:-0}" -gt 100 ] || fail "too few acknowledged writes ($acked)"
grep -q "every acknowledged write reads back" "$TEST_DIR/stress.out" || fail "no final verification"
for i in 0 2; do stop_osd $i; done
echo PASS
