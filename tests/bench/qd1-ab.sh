#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# 4 KiB random writes at QD1 (QD=N: another depth) through blk-nbd (fio's
# nbd engine), A/B by OSD binary and options, rounds alternating so that
# drift of the machine falls on every configuration alike.  One cluster
# (3 monitors, 3 OSDs on 2 GiB files in $TMPDIR, pool size 3, a 1 GiB
# image written once); for each configuration in turn the three OSDs are
# restarted with it, 4 s of rest, then RT s of fio.  A measurement, not a
# test (docs/performance.md "QD1 write latency, second look"):
#   CONFS="old:/path/old/blk-osd:|new:$PWD/build/osd/blk-osd:--set K=V" \
#     ROUNDS=3 BLK_BUILD_DIR=$PWD/build tests/bench/qd1-ab.sh
# CONFS: NAME:OSD_BINARY:OSD_OPTIONS entries separated by '|' (an empty
# binary means the build's).  PREFILL=1 writes the OSD files full of zeros
# before mkfs (they are sparse otherwise).
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
export BLK_BENCH_CONF=${BLK_BENCH_CONF:-1}   # shipped defaults, not test timings
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../integration/test-nbd-common.inc"
requires fio
[ -n "${CONFS:-}" ] || fail "set CONFS (see the head of this script)"
if [ "${PREFILL:-0}" = 1 ]; then
  for i in 0 1 2; do
    dd if=/dev/zero of="$TEST_DIR/osd.$i.dev" bs=4M count=512 oflag=direct status=none \
      || fail "prefill of osd.$i"
  done
fi
OSD_SIZE=2G nbd_cluster
"$BLKCTL" image create rbd/bench --size 1G >/dev/null || fail "image create"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P rbd/bench
U=nbd://127.0.0.1:$P/rbd/bench
fio --name=pre --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=1G \
  >/dev/null 2>&1 || fail "precondition"
BUILD_OSD=$BLK_OSD
IFS='|' read -ra CS <<<"$CONFS"
for r in $(seq "${ROUNDS:-3}"); do
  for c in "${CS[@]}"; do
    name=${c%%:*}; rest=${c#*:}; bin=${rest%%:*}; args=${rest#*:}
    BLK_OSD=${bin:-$BUILD_OSD}
    for i in 0 1 2; do stop_osd $i; done
    # shellcheck disable=SC2086   # options are words
    for i in 0 1 2; do start_osd $i $args; done
    wait_osds_up 3 60
    sleep 4
    fio --name=w --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth="${QD:-1}" --size=1G \
      --time_based --runtime="${RT:-8}" --ramp_time=1 --norandommap --randrepeat=0 \
      --output-format=json >"$TEST_DIR/$name.$r.json" 2>/dev/null || fail "fio $name"
    python3 - "$TEST_DIR/$name.$r.json" "$name" "$r" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]["write"]
p = j["clat_ns"]["percentile"]
print("round %s %-10s IOPS %6.0f  mean %4.0f  p50 %4.0f  p90 %4.0f  p99 %5.0f us  load %s" % (
    sys.argv[3], sys.argv[2], j["iops"], j["lat_ns"]["mean"] / 1e3, p["50.000000"] / 1e3,
    p["90.000000"] / 1e3, p["99.000000"] / 1e3, sys.argv[4]))
PY
  done
done
