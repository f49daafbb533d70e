#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Benchmark the OSD store against fio on the same file: formats FILE as a
# store, runs `blk-osd --bench`, then runs fio (io_uring, O_DIRECT) with the
# same block sizes, queue depths, data set and duration on the store's data
# area of the same file -- once as the issue asks (no flush: NOT durable,
# fio's writes sit in the device's volatile cache) and once with an
# fdatasync after every write and once with O_DSYNC (what a durable write
# costs on this disk; the store acknowledges only durable writes).
#   [PAIRS=N] tests/bench/store-vs-fio.sh BLK_OSD FILE [SECONDS] [DATASET_MiB] [extra blk-osd args]
# PAIRS=N (default 1) repeats store-then-fio N times (interleaved, so both
# see the same load on a shared machine) and ends with the medians of the
# 4 KiB random-write rows, the ratios the issue asks for, and the load
# average of each pair.  mkfs zeroes the journal region and the data area
# is laid out with dd before the store runs, so neither side writes into
# unwritten (fallocated or sparse) extents: steady state on both.
set -eu
OSD=$1; FILE=$2; T=${3:-5}; DS=${4:-256}; shift 2; [ $# -gt 0 ] && shift; [ $# -gt 0 ] && shift
PAIRS=${PAIRS:-1}
SIZE=2G
data_off=$(( (4096 + 64*1024*1024 + 65535) / 65536 * 65536 ))
SUM=$(mktemp)
trap 'rm -f "$SUM" "$SUM.fio" "$SUM.st"' EXIT
fio_one() { # name rw bs qd [extra]
  name=$1; rw=$2; bs=$3; qd=$4; shift 4
  sleep 2
  out=$(fio --name="$name" --filename="$FILE" --ioengine=io_uring --direct=1 \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --offset=$data_off --size=${DS}M \
        --runtime="$T" --time_based --randrepeat=0 --norandommap \
        --output-format=json "$@" 2>/dev/null)
  echo "$out" | python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]
d=j["write"] if j["write"]["io_bytes"] else j["read"]
tot=d["lat_ns"]
p99=d["clat_ns"]["percentile"].get("99.000000",0)/1000
print("%-16s %4s %10.0f %9.1f %9.1f %9.1f" % (sys.argv[1], sys.argv[2], d["iops"], d["bw_bytes"]/1e6, tot["mean"]/1000, p99))
' "$name" "$qd" | tee -a "$SUM.fio"
}
for pair in $(seq "$PAIRS"); do
  echo "== pair $pair/$PAIRS, $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "load $(cut -d' ' -f1 /proc/loadavg)" >> "$SUM"
  rm -rf "$FILE.db"
  "$OSD" --mkfs --force --device "$FILE" --osd-id 0 --size $SIZE --log-level error
  # lay the file out (written extents, as fio does before measuring)
  dd if=/dev/zero of="$FILE" bs=1M seek=$((data_off / 1048576)) count=$((DS + 64)) \
     conv=notrunc oflag=direct status=none
  echo "== store: blk-osd --bench --device $FILE --bench-time $T --bench-size ${DS}M $*"
  "$OSD" --bench --device "$FILE" --bench-time "$T" --bench-size "${DS}M" --log-level warn "$@" \
    > "$SUM.st"
  cat "$SUM.st"
  grep '^randwrite-4K ' "$SUM.st" | sed 's/^/store /' >> "$SUM"
  rm -rf "$FILE.db"
  : > "$SUM.fio"
  echo "== fio (io_uring, direct=1) on the same file, region offset=$data_off size=${DS}M (not durable)"
  printf "%-16s %4s %10s %9s %9s %9s\n" test qd IOPS MB/s mean_us p99_us
  fio_one randwrite-4K randwrite 4k 1
  fio_one randwrite-4K randwrite 4k 32
  if [ "$PAIRS" -eq 1 ]; then
    fio_one randread-4K randread 4k 1
    fio_one randread-4K randread 4k 32
    fio_one seqwrite-1M write 1M 4
    fio_one seqread-1M read 1M 4
  fi
  echo "== fio with --fdatasync=1 (a flush after every write)"
  fio_one randwrite-4K+fsync randwrite 4k 1 --fdatasync=1
  fio_one randwrite-4K+fsync randwrite 4k 32 --fdatasync=1
  echo "== fio with --sync=dsync (O_DSYNC: every write durable, as the store's journal writes)"
  fio_one randwrite-4K+dsync randwrite 4k 1 --sync=dsync
  fio_one randwrite-4K+dsync randwrite 4k 32 --sync=dsync
  sed 's/^/fio /' "$SUM.fio" >> "$SUM"
done
rm -f "$SUM.fio" "$SUM.st"
python3 - "$SUM" <<'PY'
import sys, statistics as S
rows = {}
loads = []
for l in open(sys.argv[1]):
    f = l.split()
    if f[0] == "load":
        loads.append(f[1]); continue
    who, name, qd = f[0], f[1], int(f[2])
    iops, mean = (float(f[4]), float(f[6])) if who == "store" else (float(f[3]), float(f[5]))
    rows.setdefault((who, name, qd), []).append((iops, mean))
def med(k, i):
    v = rows.get(k)
    return S.median(x[i] for x in v) if v else float("nan")
n = len(loads)
print("== medians over %d pair(s) (load averages: %s)" % (n, " ".join(loads)))
print("%-28s %4s %10s %10s" % ("", "qd", "IOPS", "mean_us"))
for k in [("store", "randwrite-4K", 1), ("fio", "randwrite-4K", 1), ("fio", "randwrite-4K+fsync", 1), ("fio", "randwrite-4K+dsync", 1),
          ("store", "randwrite-4K", 32), ("fio", "randwrite-4K", 32), ("fio", "randwrite-4K+fsync", 32), ("fio", "randwrite-4K+dsync", 32)]:
    print("%-28s %4d %10.0f %10.1f" % (k[0] + " " + k[1], k[2], med(k, 0), med(k, 1)))
def ratios(qd, i):
    s = rows.get(("store", "randwrite-4K", qd), []); f = rows.get(("fio", "randwrite-4K", qd), [])
    return [a[i] / b[i] for a, b in zip(s, f)]
r32 = ratios(32, 0); r1 = ratios(1, 1)
if r32:
    print("store/fio QD32 IOPS per pair: %s (median %.0f%%; issue goal >= 70%%, fio not durable)" %
          (" ".join("%.0f%%" % (100 * x) for x in r32), 100 * S.median(r32)))
if r1:
    print("store/fio QD1 mean latency per pair: %s (median %.1fx; issue goal <= 1.5x, fio not durable)" %
          (" ".join("%.1fx" % x for x in r1), S.median(r1)))
PY
