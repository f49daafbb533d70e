#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Benchmark the OSD store against fio on the same file: formats FILE as a
# store, runs `blk-osd --bench`, then runs fio (io_uring, O_DIRECT) with the
# same block sizes, queue depths, data set and duration on the store's data
# area of the same file -- once as the issue asks (no flush) and once with
# an fdatasync after every write and once with O_DSYNC (what a durable write
# costs on this disk).
#   tests/bench/store-vs-fio.sh BLK_OSD FILE [SECONDS] [DATASET_MiB] [extra blk-osd args]
set -eu
OSD=$1; FILE=$2; T=${3:-5}; DS=${4:-256}; shift 2; [ $# -gt 0 ] && shift; [ $# -gt 0 ] && shift
SIZE=2G
rm -rf "$FILE.db"
"$OSD" --mkfs --force --device "$FILE" --osd-id 0 --size $SIZE --log-level error
# lay the file out (written extents, as fio does before measuring)
data_off=$(( (4096 + 64*1024*1024 + 65535) / 65536 * 65536 ))
dd if=/dev/zero of="$FILE" bs=1M seek=$((data_off / 1048576)) count=$((DS + 64)) \
   conv=notrunc oflag=direct status=none
echo "== store: blk-osd --bench --device $FILE --bench-time $T --bench-size ${DS}M $*"
"$OSD" --bench --device "$FILE" --bench-time "$T" --bench-size "${DS}M" --log-level warn "$@"
rm -rf "$FILE.db"
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
lat=d["clat_ns"] if "clat_ns" in d else d["lat_ns"]
tot=d["lat_ns"]
p99=d["clat_ns"]["percentile"].get("99.000000",0)/1000
print("%-16s %4s %10.0f %9.1f %9.1f %9.1f" % (sys.argv[1], sys.argv[2], d["iops"], d["bw_bytes"]/1e6, tot["mean"]/1000, p99))
' "$name" "$qd"
}
echo "== fio (io_uring, direct=1) on the same file, region offset=$data_off size=${DS}M"
printf "%-16s %4s %10s %9s %9s %9s\n" test qd IOPS MB/s mean_us p99_us
fio_one randwrite-4K randwrite 4k 1
fio_one randwrite-4K randwrite 4k 32
fio_one randread-4K randread 4k 1
fio_one randread-4K randread 4k 32
fio_one seqwrite-1M write 1M 4
fio_one seqread-1M read 1M 4
echo "== fio with --fdatasync=1 (a flush after every write)"
fio_one randwrite-4K+fsync randwrite 4k 1 --fdatasync=1
fio_one randwrite-4K+fsync randwrite 4k 32 --fdatasync=1
echo "== fio with --sync=dsync (O_DSYNC: every write durable, as the store's journal writes)"
fio_one randwrite-4K+dsync randwrite 4k 1 --sync=dsync
fio_one randwrite-4K+dsync randwrite 4k 32 --sync=dsync
