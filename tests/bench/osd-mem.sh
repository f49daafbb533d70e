#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OSD memory after a large write (issue 4: "an OSD with 128 PGs after a
# 1 GiB write workload stays under 150 MiB RSS"; docs/osd.md "Memory"):
# 3 monitors, 3 OSDs on files in $TMPDIR (one host, failure domain osd),
# a pool of MEM_PGS (128) PGs, size 3; `blkctl image bench --io-type write
# --io-total MEM_DATA (1G)` (defaults: 4K, 16 threads; MEM_ARGS adds
# options) into one image; prints each blk-osd's VmRSS
# and VmHWM (peak) idle, right after the write, and 10 s later.
# A measurement, not a test.  Release build:
#   BLK_BUILD_DIR=build tests/bench/osd-mem.sh
BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1200}
source "$(dirname "$0")/../functions.sh"
DATA=${MEM_DATA:-1G}
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd "${MEM_PGS:-128}" --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 3G; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 60
mem() {
  local i p
  for i in 0 1 2; do
    p=$(osd_pid $i)
    printf 'osd.%s RSS %s MiB (peak %s MiB)  ' $i $(( $(awk '/VmRSS/{print $2}' /proc/$p/status) / 1024 )) \
      $(( $(awk '/VmHWM/{print $2}' /proc/$p/status) / 1024 ))
  done
  echo
}
for _ in $(seq 60); do "$BLKCTL" status | grep -q "128 active+clean\|${MEM_PGS:-128} active+clean" && break; sleep 1; done
echo "idle:        $(mem)"
"$BLKCTL" --timeout 60 image create rbd/img --size "$DATA" >/dev/null || fail "image create"
"$BLKCTL" --timeout 1200 image bench rbd/img --io-type write --io-total "$DATA" \
  ${MEM_ARGS:-} | tail -2
echo "after write: $(mem)"
sleep 10
echo "10 s later:  $(mem)"
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
