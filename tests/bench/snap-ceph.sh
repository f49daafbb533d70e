#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The snapshot/clone measurements of tests/bench/snap-bench.sh, on Ceph 16
# (docs/snapshots.md): brings Ceph up with the workplace's
# ../shared/bench/ceph/run.sh SETUP_ONLY=1 (1 mon, 1 mgr, 3 BlueStore OSDs,
# pool KVMpool size 3, cephx), then
#  1. a 10 GiB RBD image filled with 2 GiB (rbd bench, 4 MiB writes): time of
#     snap create + protect + clone, objects and raw bytes used before/after
#     (ceph df, after the OSDs have reported);
#  2. 64 KiB writes at QD1 on a 64 KiB-object image, one per object
#     (fio's rbd engine): steady state, first write after a snapshot (COW),
#     steady with the snapshot;
# and tears Ceph down with stop.sh.  A measurement, not a test:
#   tests/bench/snap-ceph.sh
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
CEPH=${CEPH_BENCH:-$TOP/../shared/bench/ceph}
D=${CEPHBENCH_DIR:-/tmp/cephbench}
CONF=$D/ceph.conf
"$CEPH/stop.sh" >/dev/null 2>&1 || true
SETUP_ONLY=1 WAIT_QUIET=0 "$CEPH/run.sh" >/tmp/snap-ceph-setup.log 2>&1 ||
  { tail -20 /tmp/snap-ceph-setup.log; exit 1; }
trap '"$CEPH/stop.sh" >/dev/null 2>&1 || true' EXIT
R() { rbd -c "$CONF" -n client.admin "$@"; }
C() { ceph -c "$CONF" -n client.admin "$@"; }
ms() { date +%s%3N; }
used() {  # raw bytes used and objects of the pool, once the OSDs reported
  sleep 12
  C df --format json | python3 -c '
import json,sys; d=json.load(sys.stdin)
p=[x for x in d["pools"] if x["name"]=="KVMpool"][0]["stats"]
print(d["stats"]["total_used_raw_bytes"], p["objects"])'
}
R create KVMpool/big --size 10G
t0=$(ms)
R bench --io-type write --io-size 4M --io-threads 8 --io-total 2G --io-pattern seq KVMpool/big >/dev/null
echo "filled 2G in $(( $(ms) - t0 )) ms"
read -r u0 o0 < <(used)
t0=$(ms)
R snap create KVMpool/big@gold
R snap protect KVMpool/big@gold
R clone KVMpool/big@gold KVMpool/vm1
t1=$(ms)
read -r u1 o1 < <(used)
echo "RESULT ceph clone: snap create + protect + clone of a 10 GiB image holding 2G: $((t1 - t0)) ms;" \
     "pool objects $o0 -> $o1; raw used $u0 -> $u1 (+$((u1 - u0)) bytes)"
t0=$(ms)
R clone KVMpool/big@gold KVMpool/vm2
echo "RESULT ceph clone alone (snapshot exists): $(( $(ms) - t0 )) ms"
R create KVMpool/lat --size 256M --object-size 64K
bench() {
  CEPH_CONF=$CONF fio --name=lat --ioengine=rbd --clientname=admin --pool=KVMpool --rbdname=lat \
    --invalidate=0 --rw=write --bs=64k --iodepth=1 --size=64M --output-format=json 2>/dev/null |
    python3 -c '
import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]["write"]
p=j["clat_ns"]["percentile"]
print("%-36s %7.1f IOPS  p50 %6d us  p99 %6d us" % (sys.argv[1], j["iops"], p["50.000000"]/1000, p["99.000000"]/1000))' "$1"
}
bench "first write (allocates)" >/dev/null
echo "RESULT ceph $(bench 'steady, no snapshot')"
R snap create KVMpool/lat@s1
echo "RESULT ceph $(bench 'first write after a snapshot (COW)')"
echo "RESULT ceph $(bench 'steady, with a snapshot')"
R snap create KVMpool/lat@s2
echo "RESULT ceph $(bench 'first write after a 2nd snapshot')"
