#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `blkctl image bench` (libblk in process: the counterpart of fio's rbd
# engine) on a local cluster: 3 monitors, 3 OSDs on 4 GiB files in $TMPDIR,
# pool KVMpool (128 PGs, size 3, failure domain osd), one 2 GiB image
# written once sequentially first.  Six workloads of RUNTIME-equivalent
# size.  A measurement, not a test (results in docs/benchmarks.md):
#   BLK_BUILD_DIR=$PWD/build tests/bench/image-bench.sh
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
export BLK_BENCH_CONF=${BLK_BENCH_CONF:-1}   # shipped defaults, not test timings
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create KVMpool 128 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 4G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
"$BLKCTL" image create KVMpool/bench --size 2G >/dev/null || fail "image create"
b() { echo "+ blkctl image bench KVMpool/bench $*"; "$BLKCTL" image bench KVMpool/bench "$@" || fail "bench $*"; }
b --io-type write --io-size 4M --io-threads 16 --io-pattern seq --io-total 2G
b --io-type write --io-size 1M --io-threads 8 --io-pattern seq --io-total ${SEQ_TOTAL:-2G}
b --io-type read --io-size 1M --io-threads 8 --io-pattern seq --io-total ${SEQ_TOTAL:-2G}
b --io-type write --io-size 4K --io-threads 1 --io-pattern rand --io-total ${QD1_TOTAL:-32M}
b --io-type write --io-size 4K --io-threads 32 --io-pattern rand --io-total ${QD32_TOTAL:-256M}
b --io-type read --io-size 4K --io-threads 1 --io-pattern rand --io-total ${QD1_TOTAL:-32M}
b --io-type read --io-size 4K --io-threads 32 --io-pattern rand --io-total ${QD32_TOTAL:-256M}
