#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fio's nbd engine against blk-nbd on a local cluster (3 monitors, 3 OSDs
# on 2 GiB files in $TMPDIR, pool size 3, one 1 GiB image), then against
# `nbdkit memory` (the NBD ceiling of this machine) in the same run.
# Workloads: 1 MiB seq write (also preconditions the image) and read at
# QD8, 4 KiB randwrite and randread at QD1 and QD32; RUNTIME s each (+2 s
# ramp).  Prints a markdown table with blk-nbd's and the OSDs' CPU seconds
# per run; fio's JSON and the exact commands go to $OUT.
# A measurement, not a test (results in docs/nbd.md):
#   BLK_BUILD_DIR=$PWD/build tests/bench/nbd-bench.sh
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
export BLK_BENCH_CONF=${BLK_BENCH_CONF:-1}   # shipped defaults, not test timings
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../integration/test-nbd-common.inc"
requires fio nbdkit
RUNTIME=${RUNTIME:-15}
OUT=${OUT:-$TEST_DIR/results}
mkdir -p "$OUT"
OSD_SIZE=2G nbd_cluster
"$BLKCTL" image create rbd/bench --size 1G >/dev/null || fail "image create"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P rbd/bench
cpu_s() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
run() {  # run NAME URI RW BS QD
  local n=$1 u=$2 rw=$3 bs=$4 qd=$5
  local cmd="fio --name=$n --ioengine=nbd --uri=$u --rw=$rw --bs=$bs --iodepth=$qd --size=1G --time_based --runtime=$RUNTIME --ramp_time=2 --norandommap --randrepeat=0 --output-format=json"
  echo "$cmd" >>"$OUT/commands.txt"
  local n0 o0 n1 o1
  n0=$(cpu_s $SRV); o0=$(cpu_s $OSDS)
  $cmd >"$OUT/$n.json" 2>"$OUT/$n.err" || fail "fio $n: $(cat "$OUT/$n.err")"
  n1=$(cpu_s $SRV); o1=$(cpu_s $OSDS)
  python3 - "$OUT/$n.json" "$n" $((n1 - n0)) $((o1 - o0)) "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]          # fio prints a banner first
d = j["write"] if j["write"]["io_bytes"] else j["read"]
p = d["clat_ns"]["percentile"]
tck = 100.0  # USER_HZ
print("| %s | %.0f | %.1f | %.2f ms | %.2f ms | %.2f ms | %.1f | %.1f | %s |" % (
    sys.argv[2], d["iops"], d["bw_bytes"] / 1e6, d["lat_ns"]["mean"] / 1e6,
    p["50.000000"] / 1e6, p["99.000000"] / 1e6, int(sys.argv[3]) / tck, int(sys.argv[4]) / tck,
    sys.argv[5]))
PY
}
echo "| workload | IOPS | MB/s | mean lat | p50 | p99 | server CPU-s | OSD CPU-s | load avg |"
echo "|---|---|---|---|---|---|---|---|---|"
SRV=$NBDPID_main
OSDS="$(osd_pid 0) $(osd_pid 1) $(osd_pid 2)"
U=nbd://127.0.0.1:$P/rbd/bench
run blk-nbd-seqwrite-1M-qd8 "$U" write 1M 8
run blk-nbd-seqread-1M-qd8 "$U" read 1M 8
run blk-nbd-randwrite-4k-qd1 "$U" randwrite 4k 1
run blk-nbd-randwrite-4k-qd32 "$U" randwrite 4k 32
run blk-nbd-randread-4k-qd1 "$U" randread 4k 1
run blk-nbd-randread-4k-qd32 "$U" randread 4k 32
kill -TERM "$NBDPID_main"; wait "$NBDPID_main" || true
KP=$(nbd_port)
nbdkit -f -i 127.0.0.1 -p "$KP" memory 1G &
SRV=$!
track_pid $SRV
sleep 1
OSDS=""
K=nbd://127.0.0.1:$KP
run nbdkit-memory-randwrite-4k-qd1 "$K" randwrite 4k 1
run nbdkit-memory-randwrite-4k-qd32 "$K" randwrite 4k 32
run nbdkit-memory-randread-4k-qd1 "$K" randread 4k 1
run nbdkit-memory-randread-4k-qd32 "$K" randread 4k 32
echo "fio JSON and commands: $OUT (kept only with KEEP=1)"
