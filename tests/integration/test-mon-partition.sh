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
requires ip
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
NETNS=$(cd "$(dirname "$0")/../../deploy" && pwd)/netns-cluster.sh
TAG=mp$((RANDOM % 9000 + 1000))
TAG=${TAG:0:6}
cleanup_fn netns_down
netns_down() { "$NETNS" down "$TAG"; }
"$NETNS" up "$TAG" 3 >/dev/null
A1=$("$NETNS" addr "$TAG" 1); A2=$("$NETNS" addr "$TAG" 2); A3=$("$NETNS" addr "$TAG" 3)
mkdir -p "$TEST_DIR/log"
"$BLKCTL" cluster init --run-dir "$TEST_DIR" --mon "a=$A1:6789" --mon "b=$A2:6789" \
  --mon "c=$A3:6789" --mkfs-mon a --mkfs-mon b --mkfs-mon c >/dev/null
cat >>"$BLK_CONF" <<CONF
[mon]
mon_election_timeout = 500ms
mon_heartbeat_interval = 50ms
CONF
i=1
for m in a b c; do
  "$NETNS" exec "$TAG" $i "$BLK_MON" --id $m >>"$TEST_DIR/log/mon.$m.log" 2>&1 &
  track_pid $!; eval "MONPID_$m=$!"
  i=$((i + 1))
done
wait_quorum 30
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
