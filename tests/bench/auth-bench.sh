#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of auth on the real write path (docs/auth.md §9): one local
# cluster (3 monitors, 3 OSDs on files, one host, failure domain osd,
# pool size 3), restarted in each auth_mode (none, cephx, secure) in turn,
# ROUNDS times, the order of the modes shuffled in every round; each run
# is `blkctl object bench` 4 KiB writes at queue depth QD (default 32)
# for BENCH_SECS seconds, then the same with --read (READS=0 skips it).
# Every link (client -> primary, primary -> replicas, monitors) uses the
# mode.  Besides IOPS each run reports the CPU time of all daemons and of
# blkctl divided by the ops done (CPU us/op), the figure that holds up on
# a shared machine; a summary of medians per mode closes the output.
# OSD_HB_GRACE (osd_conf, default 1500ms) matters on a loaded machine: after
# each restart the OSDs may report each other silent and re-boot for tens
# of seconds in any mode (docs/auth.md §9.2); the re-boots are counted.
# Use a Release build: BLK_BUILD_DIR=build tests/bench/auth-bench.sh
# A measurement, not a test.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-3600}
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create bench 64 --failure-domain osd >/dev/null
for i in 0 1 2; do mkfs_osd $i 1G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 60
SECS=${BENCH_SECS:-10}
QD=${QD:-32}
TCK=$(getconf CLK_TCK)
RESULTS=$TEST_DIR/results

# OSDs marked down by their peers and booting again, so far (all logs)
flaps() { cat "$TEST_DIR"/log/osd.*.log | grep -c "booting again" || true; }

# CPU ticks (user + system) of every daemon of the cluster so far
daemon_ticks() {
  local t=0 p f
  for p in "${MONPID_a:-}" "${MONPID_b:-}" "${MONPID_c:-}" "${OSDPID_0:-}" "${OSDPID_1:-}" "${OSDPID_2:-}"; do
    [ -n "$p" ] && [ -r "/proc/$p/stat" ] || continue
    f=$(sed 's/.*) //' "/proc/$p/stat")       # fields from 3 (state) on
    set -- $f
    t=$((t + ${12} + ${13}))                  # utime, stime
  done
  echo "$t"
}

# one_run ROUND MODE OP [--read]: bench, print IOPS and CPU us/op
one_run() {
  local r=$1 mode=$2 op=$3 t0 t1 out ops bcpu; shift 3
  t0=$(daemon_ticks)
  # a failed bench (ops timed out while the OSDs flap, §9.2) is reported,
  # not fatal: the other runs still count
  out=$(/usr/bin/time -f "%U %S" -o "$TEST_DIR/time" \
        "$BLKCTL" object bench bench --seconds "$SECS" --size 4K --qd "$QD" --objects 1024 "$@" 2>&1) ||
    out="FAILED: $(echo "$out" | tail -1)"
  t1=$(daemon_ticks)
  ops=$(echo "$out" | sed -n 's/.*: \([0-9]*\) ops in .*/\1/p')
  bcpu=$(awk '/^[0-9.]+ [0-9.]+$/ {print $1 + $2}' "$TEST_DIR/time")
  python3 - "$r" "$mode" "$op" "$ops" "$t0" "$t1" "$TCK" "$bcpu" "$out" <<'PY' | tee -a "$RESULTS"
import sys
r, mode, op, ops, t0, t1, tck, bcpu, out = sys.argv[1:]
ops = int(ops or 0)
cpu = (int(t1) - int(t0)) / int(tck) + float(bcpu or 0)
per = cpu / ops * 1e6 if ops else float("nan")
print(f"round {r} mode {mode} {op}: {out.strip()} | CPU {cpu:.2f} s = {per:.1f} us/op")
PY
}

for r in $(seq "${ROUNDS:-2}"); do
  for mode in $(shuf -e ${MODES:-none cephx secure}); do
    f0=$(flaps)
    for i in 0 1 2; do stop_osd $i; done
    for m in "${MONS[@]}"; do stop_mon "$m"; done
    sed -i "s/^auth_mode = .*/auth_mode = $mode/" "$BLK_CONF"
    for m in "${MONS[@]}"; do start_mon "$m"; done
    wait_quorum 30
    for i in 0 1 2; do start_osd $i; done
    wait_osds_up 3 60
    h0=$(ms_now)
    for _ in $(seq 120); do
      "$BLKCTL" --format json status | grep -q '"status":"HEALTH_OK"' && break
      sleep 0.5
    done
    echo "round $r mode $mode: HEALTH_OK after $(( $(ms_now) - h0 )) ms, $(( $(flaps) - f0 )) OSD re-boots"
    one_run "$r" "$mode" write
    [ "${READS:-1}" = 0 ] || one_run "$r" "$mode" read --read
    echo "round $r mode $mode: $(( $(flaps) - f0 )) OSD re-boots (marked down by peers) since the restart"
  done
done
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo "--- medians over ${ROUNDS:-2} rounds (4 KiB, QD $QD, ${SECS} s runs)"
python3 - "$RESULTS" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ mode (\w+) (\w+): .*= (\d+) IOPS.*= ([\d.na]+) us/op", line)
    if m:
        rows.setdefault((m[2], m[1]), []).append((float(m[3]), float(m[4])))
for op in ("write", "read"):
    base = rows.get((op, "none"))
    for mode in ("none", "cephx", "secure"):
        v = rows.get((op, mode))
        if not v:
            continue
        iops = statistics.median(x[0] for x in v)
        cpu = statistics.median(x[1] for x in v)
        rel = ""
        if base and mode != "none":
            bi = statistics.median(x[0] for x in base)
            bc = statistics.median(x[1] for x in base)
            rel = f"  ({(iops / bi - 1) * 100:+.1f} % IOPS, {(cpu / bc - 1) * 100:+.1f} % CPU/op vs none)"
        print(f"{op:5} {mode:6} median {iops:7.0f} IOPS  {cpu:6.1f} CPU us/op  runs {[int(x[0]) for x in v]}{rel}")
PY
