#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Data follows a complete remap: 3 OSDs hold a pool (size 3); three more
# join, are marked out (they keep stale copies), more is written, then they
# are marked in and the first three out right after, so every PG's acting
# set becomes OSDs with stale data only.  The new primaries must find the
# newest data on the previous intervals' members (still up, now out),
# recover it, and only then go active: every acknowledged write reads
# back, identical on each new member.  Then the old OSDs are killed and
# everything still reads back from the new ones.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
OSD_ASYNC_RECOVERY=true osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 8 --size 3 --min-size 2 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2 3 4 5; do mkfs_osd $i 256M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
V="$(dirname "$0")/verifier.py"
python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 4 --objects 10 | head -1

for i in 3 4 5; do start_osd $i; done
wait_osds_up 6 30
"$BLKCTL" osd out 3 4 5 >/dev/null || fail "out 3 4 5"
wait_pg_states "active+clean=8"
python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds 4 --objects 10 | head -1
"$BLKCTL" osd in 3 4 5 >/dev/null && "$BLKCTL" osd out 0 1 2 >/dev/null || fail "in/out"
"$BLKCTL" osd tree
wait_pg_states "active+clean=8"
grep -q "authoritative osd.[012] " "$TEST_DIR"/log/osd.[345].log || fail "no recovery from a previous member"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "data lost in the remap"
for i in 0 1 2; do kill_osd $i; done
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "data not on the new OSDs"
for i in 3 4 5; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
