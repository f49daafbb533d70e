#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Backfill as an operator sees it: 3 monitors, 4 OSDs (one host, failure
# domain osd), pool size 3, PG logs of 16 entries, recovery limited to
# 512 KiB/s per OSD.  40 objects of 192 KiB are written, then 3 s of small
# overwrites trim every PG's log; osd.3 is killed and marked out: the PGs
# it held move to an OSD that never had them, which is behind every log,
# so it is backfilled.  While that runs, `blkctl status` must
# show a backfilling PG state and a recovery progress line whose objects
# left fall; at the end every PG is active+clean, the progress line is
# gone, and every object reads back identical from every acting member.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
OSD_PG_LOG_MAX=16 osd_conf
printf 'osd_recovery_max_bytes_per_sec = 512K\n' >>"$BLK_CONF"
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create rbd 16 --size 3 --min-size 2 --failure-domain osd >/dev/null ||
  fail "pool create"
for i in 0 1 2 3; do mkfs_osd $i 256M; done
for i in 0 1 2 3; do start_osd $i; done
wait_osds_up 4 30
for k in $(seq 1 40); do
  head -c 196608 /dev/urandom >"$TEST_DIR/o$k"
  "$BLKCTL" object put rbd "o$k" "$TEST_DIR/o$k" || fail "put o$k"
done
# many small overwrites: every PG's log passes its 16 entries and is trimmed
"$BLKCTL" object bench rbd --seconds 3 --size 4096 --qd 8 --objects 64 >/dev/null ||
  fail "object bench"
wait_pg_states "active+clean=16"

kill_osd 3
wait_osd 3 status down 10 >/dev/null
"$BLKCTL" osd out 3 >/dev/null || fail "osd out 3"
seen_bf=0 seen_prog=0 lefts=()
for _ in $(seq 300); do
  st=$("$BLKCTL" status)
  grep -q "backfilling" <<<"$st" && seen_bf=1
  l=$(sed -n 's/.*recovery: \([0-9]*\) of \([0-9]*\) objects left.*/\1 \2/p' <<<"$st")
  if [ -n "$l" ]; then
    seen_prog=1
    lefts+=("${l%% *}")
  fi
  [ "$(pg_states)" = "active+clean=16" ] && break
  sleep 0.2
done
echo "progress samples (objects left): ${lefts[*]}"
[ $seen_bf = 1 ] || fail "no PG was ever shown backfilling"
[ $seen_prog = 1 ] || fail "status never showed recovery progress"
[ "${#lefts[@]}" -ge 2 ] && [ "${lefts[-1]}" -lt "${lefts[0]}" ] ||
  fail "the objects left did not fall: ${lefts[*]}"
wait_pg_states "active+clean=16" 60
"$BLKCTL" status | grep -q "recovery:" && fail "a progress line remains once every PG is clean"
grep -q "is behind the log" "$TEST_DIR"/log/osd.*.log || fail "no member was backfilled"
for k in $(seq 1 40); do
  set -- $("$BLKCTL" --format json osd map rbd "o$k" |
    python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])')
  [ $# -eq 3 ] || fail "o$k: acting set $*"
  for o in "$@"; do
    "$BLKCTL" object get rbd "o$k" "$TEST_DIR/back" --osd "$o" || fail "o$k unreadable on osd.$o"
    cmp -s "$TEST_DIR/back" "$TEST_DIR/o$k" || fail "o$k differs on osd.$o"
  done
done
echo "all 40 objects identical on their 3 acting members"
for i in 0 1 2; do stop_osd $i; done
echo PASS
