#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CPU cost per image op (docs/performance.md): a local cluster (3 monitors,
# 3 OSDs on files in $TMPDIR, pool size 3), one image of IMG_SIZE (default
# 256M) written once sequentially, then `blkctl image bench` 4 KiB random
# writes and reads at queue depth 32 (and QD1).  For each workload prints
# IOPS, the load average, and CPU microseconds per op of the client
# (blkctl) and of the three OSDs summed (utime+stime from /proc/PID/stat),
# which, unlike IOPS, does not depend on what else runs on the machine.
#   BLK_BUILD_DIR=$PWD/build tests/bench/image-cpu.sh
# AUTH_MODE=none runs the cluster without cephx; PERF=DIR records
# `perf record -g` profiles of the OSDs and the client per workload in DIR;
# STRACE=PREFIX counts the system calls of osd.0 (strace -c) per workload.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
if [ "${AUTH_MODE:-}" = none ]; then
  printf '[global]\nauth_mode = none\n' >>"$BLK_CONF"
fi
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" --timeout 30 pool create KVMpool 64 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 1G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
IMG_SIZE=${IMG_SIZE:-256M}
"$BLKCTL" image create KVMpool/bench --size "$IMG_SIZE" >/dev/null || fail "image create"
"$BLKCTL" image bench KVMpool/bench --io-type write --io-size 4M --io-threads 8 \
  --io-pattern seq --io-total "$IMG_SIZE" >/dev/null || fail "prefill"
HZ=$(getconf CLK_TCK)
osd_ticks() {
  local t=0 i
  for i in 0 1 2; do t=$((t + $(awk '{print $14 + $15}' "/proc/$(osd_pid $i)/stat"))); done
  echo $t
}
# idle OSD CPU (timers, heartbeats, stats): part of every figure below
i0=$(osd_ticks); sleep 5; i1=$(osd_ticks)
echo "idle: OSDs use $(( (i1 - i0) * 1000 / HZ / 5 )) ms of CPU per second (3 OSDs summed)"
n=0
b() {
  local t0 t1 out ops cl perfpid=""
  n=$((n + 1))
  if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    perf record ${PERF_CG:--g} -o "$PERF/osd.$n.data" -p "$(osd_pid 0),$(osd_pid 1),$(osd_pid 2)" >/dev/null 2>&1 &
    perfpid=$!
    sleep 0.5
  fi
  if [ -n "${STRACE:-}" ]; then
    strace -c -f -o "$STRACE.$n" -p "$(osd_pid 0)" &
    perfpid=$!
    sleep 0.5
  fi
  t0=$(osd_ticks)
  if [ -n "${PERF:-}" ]; then
    out=$(perf record -g -o "$PERF/client.$n.data" -- /usr/bin/time -f 'CPU %U %S' \
      "$BLKCTL" image bench KVMpool/bench "$@" 2>&1) || fail "bench $*"
  else
    out=$(/usr/bin/time -f 'CPU %U %S' "$BLKCTL" image bench KVMpool/bench "$@" 2>&1) || fail "bench $*"
  fi
  t1=$(osd_ticks)
  [ -n "$perfpid" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
  echo "+ blkctl image bench KVMpool/bench $*   (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "$out" | grep -v '^CPU'
  ops=$(echo "$out" | sed -n 's/.*: \([0-9][0-9]*\) ops in.*/\1/p')
  cl=$(echo "$out" | awk '/^CPU/{printf "%d", ($2 + $3) * 1000000}')
  if [ -n "$ops" ] && [ "$ops" -gt 0 ]; then
    local osd_us=$(( (t1 - t0) * 1000000 / HZ / ops )) cl_us=$(( cl / ops ))
    echo "  CPU per op: client $cl_us us, OSDs $osd_us us, total $((cl_us + osd_us)) us"
  fi
}
b --io-type write --io-size 4K --io-threads 32 --io-pattern rand --io-total ${QD32_TOTAL:-32M}
b --io-type read --io-size 4K --io-threads 32 --io-pattern rand --io-total ${QD32_TOTAL:-32M}
if [ -z "${NO_QD1:-}" ]; then
  b --io-type write --io-size 4K --io-threads 1 --io-pattern rand --io-total ${QD1_TOTAL:-4M}
  b --io-type read --io-size 4K --io-threads 1 --io-pattern rand --io-total ${QD1_TOTAL:-4M}
fi
