#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Three monitors on three "hosts" (network namespaces, deploy/netns-cluster.sh).
# The leader's host is cut off the network:
#  - the majority elects a new leader and commits changes;
#  - the cut-off monitor stops acting as leader (CheckQuorum): from inside
#    its namespace neither a change nor a read is answered (no split
#    brain, no stale read) — blkctl there fails with "no quorum";
#  - healed, it rejoins the quorum and the change made meanwhile is there.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/netns-common.inc"
netns_cluster mp
netns_start_mons
"$BLKCTL" pool create before 8 >/dev/null
L=$(leader)
case $L in a) LI=1 ;; b) LI=2 ;; c) LI=3 ;; esac
echo "leader mon.$L on host $LI: cutting it off"
"$NETNS" cut "$TAG" "$LI"
t0=$(ms_now)
"$BLKCTL" --timeout 20 pool create during 8 >/dev/null || fail "majority could not commit"
echo "MEASURE partition-to-commit-ms $(( $(ms_now) - t0 ))"
L2=$(leader); [ "$L2" != "$L" ] || fail "leader did not change"
echo "new leader mon.$L2"
# inside the cut-off host: no answers at all (its own monitor must not lead)
set +e
out=$("$NETNS" exec "$TAG" "$LI" "$BLKCTL" --timeout 3 pool create split 8 2>&1); rc=$?
out2=$("$NETNS" exec "$TAG" "$LI" "$BLKCTL" --timeout 3 pool ls 2>&1); rc2=$?
set -e
echo "cut-off host, change: rc=$rc $out"
echo "cut-off host, read:   rc=$rc2 $out2"
[ $rc -eq 110 ] || fail "a change was answered on the cut-off side (rc=$rc)"
[ $rc2 -eq 110 ] || fail "a read was answered on the cut-off side (rc=$rc2): stale read possible"
"$NETNS" heal "$TAG" "$LI"
for _ in $(seq 100); do
  "$BLKCTL" mon stat --format json | python3 -c "import json,sys; sys.exit(0 if len(json.load(sys.stdin)['quorum'])==3 else 1)" && break
  sleep 0.2
done
"$BLKCTL" mon stat --format json | python3 -c "import json,sys; sys.exit(0 if len(json.load(sys.stdin)['quorum'])==3 else 1)" || fail "healed monitor did not rejoin"
"$BLKCTL" pool ls | grep -q " during " || fail "change made during the partition lost"
"$BLKCTL" pool ls | grep -q " split " && fail "the cut-off side accepted a change"
for m in a b c; do stop_mon $m; done
echo PASS
