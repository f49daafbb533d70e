#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blkstore next to Ceph 16 on this machine, in one run, same workloads:
# 1. Ceph (the workplace's ../shared/bench/ceph/run.sh: 1 mon, 1 mgr, 3
#    BlueStore OSDs on loop devices, pool size 3, 128 PGs, cephx, fio's rbd
#    engine, then qemu-nbd + fio's nbd engine), torn down with stop.sh;
# 2. blkstore (tests/bench/nbd-bench.sh: 3 mons, 3 OSDs, pool size 3,
#    fio's nbd engine against blk-nbd) and `blkctl image bench` (libblk in
#    process, the counterpart of fio's rbd engine).
# Each runs RUNTIME (15) s per workload.  Results: $OUT (default
# /tmp/vs-ceph).  A measurement, not a test (results in docs/benchmarks.md):
#   tests/bench/vs-ceph.sh
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
CEPH=${CEPH_BENCH:-$TOP/../shared/bench/ceph}
OUT=${OUT:-/tmp/vs-ceph}
RUNTIME=${RUNTIME:-15}
mkdir -p "$OUT"
[ -x "$CEPH/run.sh" ] || { echo "vs-ceph: no Ceph bench at $CEPH (set CEPH_BENCH)" >&2; exit 2; }
echo "== Ceph 16 ($(date -u +%FT%TZ))"
"$CEPH/stop.sh" >/dev/null 2>&1 || true
RUNTIME=$RUNTIME WAIT_QUIET=0 OUT=$OUT/ceph "$CEPH/run.sh" >"$OUT/ceph.log" 2>&1 || { tail -20 "$OUT/ceph.log"; "$CEPH/stop.sh" || true; exit 1; }
grep -A20 "summary:" "$OUT/ceph.log" || true
"$CEPH/stop.sh" >/dev/null 2>&1 || true
echo "== blkstore NBD path ($(date -u +%FT%TZ))"
BLK_BUILD_DIR=${BLK_BUILD_DIR:-$TOP/build} RUNTIME=$RUNTIME OUT=$OUT/blk KEEP=1 \
  "$TOP/tests/bench/nbd-bench.sh" 2>&1 | tee "$OUT/blk-nbd.txt"
echo "== blkstore libblk path ($(date -u +%FT%TZ))"
BLK_BUILD_DIR=${BLK_BUILD_DIR:-$TOP/build} RUNTIME=$RUNTIME \
  "$TOP/tests/bench/image-bench.sh" 2>&1 | tee "$OUT/blk-libblk.txt"
