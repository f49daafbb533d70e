#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Object IOPS/latency of a local cluster: 3 monitors, 3 OSDs on files in
# $TMPDIR (one host, failure domain osd), pool size 3; `blkctl object
# bench` writes then reads 4 KiB objects at queue depth 16 (and 64 KiB at
# qd 4).  Use a Release build: BLK_BUILD_DIR=build tests/bench/osd-bench.sh
# A measurement, not a test (results in docs/osd.md).
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create bench 64 --failure-domain osd >/dev/null
for i in 0 1 2; do mkfs_osd $i 1G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
sleep 2
SECS=${BENCH_SECS:-10}
"$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd 16 --objects 1024
"$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd 16 --objects 1024 --read
"$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd 1 --objects 1024
"$BLKCTL" object bench bench --seconds "$SECS" --size 64K --qd 4 --objects 256
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
