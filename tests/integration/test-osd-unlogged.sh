#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Unlogged objects (docs/osd.md "Unlogged objects"): recovery installs
# objects on a member before the members take the authoritative log; a
# peering that stops in between leaves the member with objects its log
# does not describe.  3 monitors, 3 OSDs, pool size 3 / min_size 2.
#  1. write objects; kill -9 osd.2; overwrite and remove (PGs degraded);
#  2. restart every OSD with osd_debug_stop_after_install (test-only fault
#     injection): each primary exits once its recovery installed objects,
#     before activation; the survivors are killed too, so that what the
#     members recorded must come back from their stores;
#  3. restart every OSD normally: the next peerings must hear of the
#     unlogged objects (PgInfo.unlogged, logged by the primary), copy them
#     from the authoritative member, and once every PG is active+clean all
#     3 members of every object hold the same bytes as every acknowledged
#     write (verifier.py check --replicas);
#  4. restart every OSD once more: the activation dropped the records
#     (in the store too), so no member reports unlogged objects any more.
# Without the daemon's recording, step 3 finds no report (the check of
# the log line fails).
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
OSD_PG_LOG_MAX=64 osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create rbd 8 --size 3 --min-size 2 --failure-domain osd >/dev/null ||
  fail "pool create"
for i in 0 1 2; do mkfs_osd $i 256M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
wait_pg_states "active+clean=8" 60
V="$(dirname "$0")/verifier.py"
# PG activations logged by the OSDs since their logs were last moved
actives() { cat "$TEST_DIR"/log/osd.[012].log 2>/dev/null | grep -c "peering I: .*: active at epoch" || true; }
wait_actives() {   # wait_actives N SECS: until N activations are logged
  for _ in $(seq $(( $2 * 10 ))); do [ "$(actives)" -ge "$1" ] && return 0; sleep 0.1; done
  fail "only $(actives) PG activations logged, want $1"
}

python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 3 --objects 12 | head -1
kill_osd 2
wait_osd 2 status down 10 >/dev/null
wait_pg_states "active+undersized+degraded=8" 30
python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 3 --objects 12 | head -1

# 2. every primary that recovers something dies before activation
stop_osd 0
stop_osd 1
for i in 0 1 2; do start_osd $i --set osd_debug_stop_after_install=true; done
stops=0
for _ in $(seq 300); do
  stops=$(cat "$TEST_DIR"/log/osd.*.log | grep -c "osd_debug_stop_after_install: exiting" || true)
  [ "$stops" -ge 1 ] && break
  sleep 0.1
done
[ "$stops" -ge 1 ] || fail "no primary stopped after installing (osd_debug_stop_after_install)"
sleep 2     # let the other primaries install (and stop) too
stops=$(cat "$TEST_DIR"/log/osd.*.log | grep -c "osd_debug_stop_after_install: exiting" || true)
echo "primaries stopped after installing: $stops"
for i in 0 1 2; do kill_osd $i; done
# what follows must come from the members' stores: new log files
for i in 0 1 2; do mv "$TEST_DIR/log/osd.$i.log" "$TEST_DIR/log/osd.$i.phase2.log"; done

# 3. the members tell of their unlogged objects; every PG ends clean and identical
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
wait_actives 8 90
wait_pg_states "active+clean=8" 90
grep -h "unlogged objects" "$TEST_DIR"/log/osd.[012].log | head -5 || true
reports=$(cat "$TEST_DIR"/log/osd.[012].log | grep -c "unlogged objects" || true)
[ "$reports" -ge 1 ] || fail "no peering heard of a member's unlogged objects"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "replicas differ, or an acknowledged write is lost"

# 4. the records are gone once the members took the authoritative log
for i in 0 1 2; do stop_osd $i; done
before=$reports
a0=$(actives)
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
wait_actives $((a0 + 8)) 60
wait_pg_states "active+clean=8" 60
after=$(cat "$TEST_DIR"/log/osd.[012].log | grep -c "unlogged objects" || true)
[ "$after" -eq "$before" ] ||
  fail "members still report unlogged objects after activation: $((after - before)) reports"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "replicas differ after a restart"
for i in 0 1 2; do stop_osd $i; done
echo PASS
