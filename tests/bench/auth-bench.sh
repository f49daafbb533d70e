#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of auth on the real write path (docs/auth.md §9): one local
# cluster (3 monitors, 3 OSDs on files, one host, failure domain osd,
# pool size 3), restarted in each auth_mode (none, cephx, secure) in turn,
# ROUNDS times interleaved; each run is `blkctl object bench` 4 KiB writes
# at queue depth 16 (then reads) for BENCH_SECS seconds.  Every link
# (client -> primary, primary -> replicas, monitors) uses the mode.
# Use a Release build: BLK_BUILD_DIR=build tests/bench/auth-bench.sh
# A measurement, not a test.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1800}
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create bench 64 --failure-domain osd >/dev/null
for i in 0 1 2; do mkfs_osd $i 1G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
SECS=${BENCH_SECS:-10}
for r in $(seq "${ROUNDS:-2}"); do
  for mode in ${MODES:-none cephx secure}; do
    for i in 0 1 2; do stop_osd $i; done
    for m in "${MONS[@]}"; do stop_mon "$m"; done
    sed -i "s/^auth_mode = .*/auth_mode = $mode/" "$BLK_CONF"
    for m in "${MONS[@]}"; do start_mon "$m"; done
    wait_quorum 30
    for i in 0 1 2; do start_osd $i; done
    wait_osds_up 3 60
    for _ in $(seq 120); do
      "$BLKCTL" --format json status | grep -q '"status":"HEALTH_OK"' && break
      sleep 0.5
    done
    echo "round $r mode $mode: $("$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd 16 --objects 1024)"
    echo "round $r mode $mode: $("$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd 16 --objects 1024 --read)"
  done
done
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
