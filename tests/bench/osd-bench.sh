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
# CPU ticks (utime+stime) summed over the three OSDs, and their RSS.
osd_ticks() {
  local t=0 p
  for i in 0 1 2; do
    p=$(osd_pid $i)
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}
osd_rss() {
  local i
  for i in 0 1 2; do printf 'osd.%s %s MiB  ' $i $(( $(awk '/VmRSS/{print $2}' "/proc/$(osd_pid $i)/status") / 1024 )); done
  echo
}
HZ=$(getconf CLK_TCK)
# PERF=DIR: perf record (cpu-clock, call graphs) of the three OSDs during
# each workload, into DIR/N.data (N = 1.. in the order below).
# ONLY="1 3": run only those workloads (numbered as below).
NB=0
# bench ARGS...: run one workload, then print the OSDs' CPU per op.
bench() {
  local t0 t1 out ops pp=""
  NB=$((NB + 1))
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $NB "* ]]; then return 0; fi
  if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    perf record -q -e cpu-clock ${PERF_CG:--g} -p "$(osd_pid 0),$(osd_pid 1),$(osd_pid 2)" \
      -o "$PERF/$NB.data" >/dev/null 2>&1 &
    pp=$!
    sleep 0.5
  fi
  t0=$(osd_ticks)
  out=$("$BLKCTL" object bench bench --seconds "$SECS" "$@")
  t1=$(osd_ticks)
  if [ -n "$pp" ]; then kill -INT "$pp"; wait "$pp" || true; fi
  echo "$out"
  ops=$(echo "$out" | sed -n 's/.* \([0-9][0-9]*\) ops.*/\1/p' | head -1)
  if [ -n "$ops" ] && [ "$ops" -gt 0 ]; then
    echo "  OSD CPU: $(( (t1 - t0) * 1000000 / HZ / ops )) us per op ($(( (t1 - t0) * 1000 / HZ )) ms over $ops ops, 3 OSDs summed)"
  fi
  echo "  RSS: $(osd_rss)"
}
echo "idle RSS: $(osd_rss)"
bench --size 4K --qd 16 --objects "${BENCH_OBJECTS:-1024}"
bench --size 4K --qd 16 --objects "${BENCH_OBJECTS:-1024}" --read
bench --size 4K --qd 1 --objects "${BENCH_OBJECTS:-1024}"
bench --size 64K --qd 4 --objects 256
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
# the store's own counters (group size, prepare and metadata apply time)
grep -h "closing" "$TEST_DIR"/log/osd.*.log | sed 's/^/  /'
