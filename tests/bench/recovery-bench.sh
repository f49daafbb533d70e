#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Recovery time and throughput after one OSD fails (docs/osd.md "Recovery
# rate"): 3 monitors, 4 OSDs on files in $TMPDIR (one host, failure domain
# osd), pool of RB_PGS PGs, size 3.  Writes RB_DATA (default 512M) into an
# image with `blkctl image bench --io-type write --io-pattern seq
# --io-size 4M`, kills -9 osd.3,
# marks it down and out and times how long until every PG is active+clean,
# sampling `blkctl status` (PG state counts = the progress) every second.
#   RB_RATE=32M   osd_recovery_max_bytes_per_sec (default 0 = unlimited)
#   RB_ACTIVE=8   osd_recovery_max_active
# A measurement, not a test.  Release build:
#   BLK_BUILD_DIR=build RB_RATE=0 tests/bench/recovery-bench.sh
BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-1500}
source "$(dirname "$0")/../functions.sh"
DATA=${RB_DATA:-512M}
PGS=${RB_PGS:-32}
make_cluster 3
osd_conf
cat >>"$BLK_CONF" <<CONF
osd_recovery_max_bytes_per_sec = ${RB_RATE:-0}
osd_recovery_max_active = ${RB_ACTIVE:-8}
CONF
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd "$PGS" --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2 3; do mkfs_osd $i 3G; done
for i in 0 1 2 3; do start_osd $i; done
wait_osds_up 4 60
"$BLKCTL" --timeout 60 image create rbd/img --size "$DATA" >/dev/null || fail "image create"
t0=$(ms_now)
"$BLKCTL" --timeout 600 image bench rbd/img --io-type write --io-pattern seq --io-size 4M \
  --io-threads 8 --io-total "$DATA" | tail -2
echo "wrote $DATA in $(( $(ms_now) - t0 )) ms"
clean_count() {
  "$BLKCTL" --format json status | python3 -c '
import json,sys
s=json.load(sys.stdin)["pgmap"]
print(sum(x["count"] for x in s["pgs_by_state"] if x["state_name"]=="active+clean"), s["num_pgs"],
      " ".join("%s=%d" % (x["state_name"], x["count"]) for x in s["pgs_by_state"]))'
}
for _ in $(seq 60); do set -- $(clean_count); [ "$1" = "$2" ] && break; sleep 1; done
echo "before: $(clean_count)"
kill_osd 3
"$BLKCTL" --timeout 30 osd down 3 >/dev/null || fail "osd down"
"$BLKCTL" --timeout 30 osd out 3 >/dev/null || fail "osd out"
t0=$(ms_now)
while :; do
  set -- $(clean_count)
  echo "  t=$(( ($(ms_now) - t0) / 1000 ))s: $*"
  [ "$1" = "$2" ] && break
  [ $(( $(ms_now) - t0 )) -gt 1200000 ] && fail "not active+clean after 1200 s"
  sleep 1
done
t=$(( $(ms_now) - t0 ))
# what moved: the objects of osd.3's PGs, one new copy each
moved=$(grep -h "recovered [0-9]* objects\|recovering [0-9]* objects" "$TEST_DIR"/log/osd.[012].log |
  sed -n 's/.*recover[a-z]* \([0-9]*\) objects.*/\1/p' | awk '{s += $1} END {print s + 0}')
echo "RESULT rate=${RB_RATE:-0} max_active=${RB_ACTIVE:-8} data=$DATA pgs=$PGS: active+clean $t ms after osd out; $moved objects (4 MiB) recovered: $(( moved * 4 * 1000 / (t > 0 ? t : 1) )) MiB/s"
for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
