#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Client CPU per 4 KiB op (docs/nbd.md "Client CPU per op"): a local
# cluster (3 monitors, 3 OSDs on files in $TMPDIR, pool size 3), one
# 256 MiB image written once, then REPEAT (default 2) rounds of
#   blkctl image bench 4K randwrite / randread QD32 (libblk in process)
#   fio --ioengine=nbd 4K randwrite / randread QD32 through blk-nbd
# printing IOPS and the client process's CPU (utime+stime from
# /proc/PID/stat, or /usr/bin/time for blkctl) divided by the ops done.
# CPU per op does not depend much on what else runs on the machine; IOPS
# do, and so does the batching: fewer ops per wakeup cost more per op, so
# RATE=N caps fio at N IOPS (--rate_iops) to compare builds at the same
# load.  PERF=DIR records `perf record -g` of the clients into DIR.
#   BLK_BUILD_DIR=$PWD/build tests/bench/nbd-cpu.sh
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../integration/test-nbd-common.inc"
requires fio
RUNTIME=${RUNTIME:-8}
TOTAL=${TOTAL:-32M}
OSD_SIZE=1G nbd_cluster
"$BLKCTL" image create rbd/bench --size 256M >/dev/null || fail "image create"
"$BLKCTL" image bench rbd/bench --io-type write --io-size 4M --io-threads 8 --io-pattern seq \
  --io-total 256M >/dev/null || fail "prefill"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P rbd/bench
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bench() {  # bench TYPE
  local out ops cl
  if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    out=$(perf record -g -o "$PERF/blkctl-$1.$r.data" -- /usr/bin/time -f 'CPU %U %S' \
      "$BLKCTL" image bench rbd/bench --io-type "$1" --io-size 4K --io-threads 32 \
      --io-pattern rand --io-total "$TOTAL" 2>&1) || fail "bench $1: $out"
  else
    out=$(/usr/bin/time -f 'CPU %U %S' "$BLKCTL" image bench rbd/bench --io-type "$1" \
      --io-size 4K --io-threads 32 --io-pattern rand --io-total "$TOTAL" 2>&1) ||
      fail "bench $1: $out"
  fi
  ops=$(echo "$out" | sed -n 's/.*: \([0-9][0-9]*\) ops in.*/\1/p')
  cl=$(echo "$out" | awk '/^CPU/{printf "%d", ($2 + $3) * 1000000}')
  iops=$(echo "$out" | grep -o '[0-9.,]* IOPS' | head -1)
  echo "| blkctl image bench 4K rand$1 QD32 | $iops | $ops | $((cl / ops)) us | $(cut -d' ' -f1 /proc/loadavg) |"
}
nbd() {  # nbd RW
  local t0 t1 perfpid=""
  if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    perf record -g -o "$PERF/blk-nbd-$1.$r.data" -p "$NBDPID_main" >/dev/null 2>&1 &
    perfpid=$!
    sleep 0.3
  fi
  t0=$(ticks "$NBDPID_main")
  fio --name=cpu --ioengine=nbd --uri="nbd://127.0.0.1:$P/rbd/bench" --rw="$1" --bs=4k \
    --iodepth=32 --size=256M --time_based --runtime="$RUNTIME" --norandommap --randrepeat=0 \
    ${RATE:+--rate_iops=$RATE} \
    --output-format=json >"$TEST_DIR/fio.json" 2>"$TEST_DIR/fio.err" || fail "fio: $(cat "$TEST_DIR/fio.err")"
  t1=$(ticks "$NBDPID_main")
  [ -n "$perfpid" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
  python3 - "$TEST_DIR/fio.json" "$1" $((t1 - t0)) "$HZ" "$(cut -d' ' -f1 /proc/loadavg)" \
    "${RATE:+ rate $RATE}" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
ops = d["total_ios"]
cpu_us = int(sys.argv[3]) * 1e6 / int(sys.argv[4])
print("| fio nbd 4K %s QD32 (blk-nbd)%s | %.0f IOPS | %d | %.1f us | %s |" % (
    sys.argv[2], sys.argv[6], d["iops"], ops, cpu_us / ops, sys.argv[5]))
PY
}
echo "| workload | IOPS | ops | client CPU per op | load |"
echo "|---|---|---|---|---|"
for r in $(seq "${REPEAT:-2}"); do
  bench write
  bench read
  nbd randwrite
  nbd randread
done
kill -TERM "$NBDPID_main"; wait "$NBDPID_main" || true
