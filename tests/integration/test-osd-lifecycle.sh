#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OSD life cycle: 3 monitors + 3 OSDs on one host (failure domain osd).
# Boot -> osd tree shows 3 up/in; kill -9 one -> the peers' failure
# reports (2 reporters) mark it down within the heartbeat grace, then out
# after mon_osd_down_out_interval; restart -> up (and in again by the
# operator); SIGTERM -> down at once; with a single possible reporter a
# kill -9 is caught by the missing beacons.  Also osd out/in/reweight and
# osd map.
source "$(dirname "$0")/../functions.sh"
make_cluster 3
MON_OSD_DOWN_OUT=3s MON_OSD_BEACON_GRACE=4s osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 32 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 256M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
"$BLKCTL" osd tree
"$BLKCTL" osd tree | grep -q "host testhost" || fail "host name not from osd_host"

# osd map: computed locally, primary first, 3 distinct OSDs
out=$("$BLKCTL" osd map rbd myobject)
echo "$out"
echo "$out" | grep -Eq "object 'myobject' -> pg 1\.[0-9a-f]+ -> up \(\[[0-2],[0-2],[0-2]\], p[0-2]\) acting" ||
  fail "osd map output"
"$BLKCTL" --format json osd map rbd myobject | python3 -c '
import json,sys; d=json.load(sys.stdin)
assert len(set(d["acting"]))==3 and d["acting_primary"]==d["acting"][0], d' || fail "osd map json"

# kill -9 -> down by failure reports (2 reporters), then out after 3 s
kill_osd 1
t=$(wait_osd 1 status down 6)
echo "MEASURE osd-kill-to-down-ms $t"
[ "$t" -lt 6000 ] || fail "down took $t ms"
grep -q "reports osd.1 failed" "$TEST_DIR"/log/mon.*.log || fail "no failure report logged by the leader"
t=$(wait_osd 1 in out 10)
echo "down->out after $t ms more"
"$BLKCTL" osd tree | grep -q "osd.1 .*down .*out" || fail "osd.1 not down+out"

# restart -> up again (still out until marked in)
start_osd 1
wait_osd 1 status up 15 >/dev/null
"$BLKCTL" osd in 1 | grep -q "marked osd.1 in" || fail "osd in"
wait_osds_up 3 10

# out / in / reweight by the operator
"$BLKCTL" osd out 2 >/dev/null || fail "osd out"
[ "$(osd_field 2 in)" = out ] || fail "osd 2 not out"
"$BLKCTL" osd in 2 >/dev/null || fail "osd in"
"$BLKCTL" osd reweight 2 0.5 | grep -q "0.50000" || fail "reweight"
w=$("$BLKCTL" --format json osd tree | python3 -c 'import json,sys; print([n["weight"] for n in json.load(sys.stdin)["nodes"] if n.get("type")=="osd" and n["id"]==2][0])')
[ "$w" = "0.5" ] || fail "weight is $w"
set +e; "$BLKCTL" osd reweight 9 1 2>/dev/null; rc=$?; set -e
[ $rc -eq 2 ] || fail "reweight of a missing osd: exit $rc, want 2 (ENOENT)"

# SIGTERM -> marked down at once by the OSD itself
t0=$(ms_now)
stop_osd 2
t=$(wait_osd 2 status down 2)
echo "MEASURE osd-sigterm-to-down-ms $(( $(ms_now) - t0 ))"
grep -q "marked down at epoch" "$TEST_DIR/log/osd.2.log" || fail "osd.2 did not mark itself down"

grep -q "osdmon.*reported failed by 2 reporters" "$TEST_DIR"/log/mon.*.log ||
  fail "the first down was not decided by failure reports"

# one possible reporter only (osd.2 stopped): kill -9 osd.1 -> down by the
# beacon grace (4 s)
kill_osd 1
t=$(wait_osd 1 status down 8)
echo "MEASURE osd-kill-to-down-by-beacon-ms $t"
grep -q "marking osd.1 down: no beacon" "$TEST_DIR"/log/mon.*.log || fail "not marked down by beacon grace"

stop_osd 0
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
