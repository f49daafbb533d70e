#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Issue 4's faults on three network-namespace hosts × (1 monitor + 2 OSDs),
# pool size 3 / min_size 2, failure domain host (checked first: object
# names map to three OSDs on three hosts), with the verifier workload
# (tests/integration/verifier.py: every attempt recorded, every
# acknowledged write checked on the primary and on every acting member
# once the PGs are clean) running through each fault:
#  A. kill -9 osd.1 and restart it            -> recovery by log
#  B. kill -9 osd.3 and mark it out           -> its PGs backfill onto osd.2
#     (the only other OSD of host 2; PG logs of 2 entries, so an empty
#     member is behind every log); then back in
#  C. the monitor leader's host cut off the network (leader, one monitor
#     and two OSDs lost at once), then healed
#  D. two OSDs of a PG down at once (two hosts) -> a write to it blocks and
#     fails with EAGAIN after osd_op_timeout_undersized, nothing accepted;
#     one back -> the same write succeeds; both back -> clean
#  E. a full OSD (osd.5 has a 128 MiB device): 4 MiB objects until the
#     cluster refuses one with ENOSPC naming osd.5; HEALTH_ERR; reads go
#     on; removes bring space back and writes succeed again
# (the same faults on one host with 3-4 OSDs: test-osd-recovery,
# test-osd-replication, test-osd-full, test-image-osd-kill).
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-560}
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/netns-common.inc"
requires python3
netns_cluster of
OSD_PG_LOG_MAX=2 OSD_OP_TIMEOUT_UNDERSIZED=3s osd_conf
netns_start_mons
"$BLKCTL" --timeout 30 pool create rbd 32 --size 3 --min-size 2 >/dev/null || fail "pool create"
OSD_SIZE_5=128M netns_start_osds
V="$(dirname "$0")/verifier.py"
host_of() { echo $(( $1 / 2 + 1 )); }

restart_osd() {   # restart_osd N: inside its host's namespace, as netns_start_osds
  local n=$1 h
  h=$(host_of "$n")
  "$NETNS" exec "$TAG" "$h" "$BLK_OSD" --id "$n" -c "$BLK_CONF" --device "$TEST_DIR/osd.$n.dev" \
    --set keyring="$TEST_DIR/osd.$n.keyring" --set osd_host=h$h --set "osd_addr=${A[$h]}:0" \
    >>"$TEST_DIR/log/osd.$n.log" 2>&1 &
  track_pid $!
  eval "OSDPID_$n=$!"
}
clean() { wait_pg_states "active+clean=32" "${1:-120}"; }
workload() {   # workload PHASE SECS: verifier writers in the background
  python3 "$V" write "$TEST_DIR/v" rbd --writers 2 --seconds "$2" --objects 8 --prefix "$1-" \
    >"$TEST_DIR/w-$1.out" 2>&1 &
  WPID=$!
  track_pid $WPID
}
workload_end() {
  wait "$WPID" || fail "verifier writer failed: $(cat "$TEST_DIR"/w-*.out)"
  head -1 "$TEST_DIR/w-$1.out"
}
check() {
  python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "acknowledged writes not intact ($1)"
  echo "phase $1: every acknowledged write identical on the primary and every replica"
}
clean 60
# placement: every PG's raw set spans the three hosts
for i in $(seq 1 40); do
  acting=$(acting_of rbd span$i)
  hosts=$(for o in $acting; do host_of "$o"; done | sort -u | wc -l)
  [ "$hosts" = 3 ] || fail "span$i on OSDs [$acting]: $hosts hosts, not 3"
done
echo "40 object names: each maps to three OSDs on three hosts"

echo "== A: kill -9 osd.1, restart it"
workload A 10
sleep 2
kill_osd 1
wait_osd 1 status down 20 >/dev/null
sleep 3
restart_osd 1
wait_osd 1 status up 30 >/dev/null
workload_end A
clean
grep -q "peering I: .*objects to recover\|recovered" "$TEST_DIR"/log/osd.*.log || fail "no log recovery seen"
check A

echo "== B: kill -9 osd.3 and mark it out: backfill onto osd.2 (same host)"
workload B 10
sleep 2
kill_osd 3
wait_osd 3 status down 20 >/dev/null
"$BLKCTL" osd out 3 >/dev/null || fail "osd out 3"
workload_end B
clean
grep -q "osd.2 is behind the log.*backfill" "$TEST_DIR"/log/osd.*.log || fail "no backfill onto osd.2 seen"
check B
restart_osd 3
wait_osd 3 status up 30 >/dev/null
"$BLKCTL" osd in 3 >/dev/null || fail "osd in 3"
clean
check B-back

echo "== C: the monitor leader's host cut off the network"
L=$(leader)
case $L in a) H=1 ;; b) H=2 ;; c) H=3 ;; *) fail "unknown leader '$L'" ;; esac
workload C 12
sleep 2
echo "cutting host $H (mon.$L, the leader; osd.$((2 * (H - 1))), osd.$((2 * (H - 1) + 1)))"
"$NETNS" cut "$TAG" "$H"
t0=$(ms_now)
wait_osd $((2 * (H - 1))) status down 60 >/dev/null
wait_osd $((2 * (H - 1) + 1)) status down 60 >/dev/null
echo "host $H's OSDs marked down $(( $(ms_now) - t0 )) ms after the cut; leader now $(leader)"
workload_end C
python3 "$V" check "$TEST_DIR/v" rbd || fail "acknowledged writes lost with host $H cut off"
netns_heal_host "$H"
clean
check C

echo "== D: two OSDs of a PG down at once"
set -- $(acting_of rbd lonely)
echo "acting set of 'lonely': $*"
X=$2 Y=$3
[ "$(host_of "$X")" != "$(host_of "$Y")" ] || fail "osd.$X and osd.$Y share a host"
workload D 12
kill_osd "$X"; kill_osd "$Y"
wait_osd "$X" status down 20 >/dev/null
wait_osd "$Y" status down 20 >/dev/null
head -c 5000 /dev/urandom >"$TEST_DIR/lonely"
put_blocked rbd lonely "$TEST_DIR/lonely" 2500
restart_osd "$X"
wait_osd "$X" status up 30 >/dev/null
"$BLKCTL" --timeout 60 object put rbd lonely "$TEST_DIR/lonely" >/dev/null ||
  fail "the write did not resume with osd.$X back"
restart_osd "$Y"
wait_osd "$Y" status up 30 >/dev/null
workload_end D
clean
for o in $(acting_of rbd lonely); do
  "$BLKCTL" --timeout 30 object get rbd lonely "$TEST_DIR/got" --osd "$o" >/dev/null &&
    cmp -s "$TEST_DIR/got" "$TEST_DIR/lonely" || fail "osd.$o's copy of 'lonely' differs"
done
check D
echo "== E: a full OSD (osd.5, 128 MiB)"
workload E 30
head -c 4194304 /dev/urandom >"$TEST_DIR/4m"
fill=() rc=0
for k in $(seq 1 120); do
  rc=0
  "$BLKCTL" --timeout 30 object put rbd "fill-$k" "$TEST_DIR/4m" 2>"$TEST_DIR/put.err" || rc=$?
  [ $rc = 0 ] || break
  fill+=("fill-$k")
done
echo "filler: ${#fill[@]} objects of 4 MiB, then exit $rc: $(cat "$TEST_DIR/put.err")"
[ $rc = 28 ] || fail "the filler stopped with exit $rc, want 28 (ENOSPC)"
grep -q "osd.5 .*is full" "$TEST_DIR/put.err" || fail "ENOSPC does not name osd.5"
st=$("$BLKCTL" status)
grep -q "HEALTH_ERR" <<<"$st" && grep -q "full: osd.5" <<<"$st" || fail "status does not show osd.5 full: $st"
"$BLKCTL" object get rbd "${fill[0]}" "$TEST_DIR/back" >/dev/null && cmp -s "$TEST_DIR/back" "$TEST_DIR/4m" ||
  fail "read while full"
for o in "${fill[@]}"; do "$BLKCTL" object rm rbd "$o" >/dev/null || fail "remove $o while full"; done
ok=0
for _ in $(seq 100); do
  "$BLKCTL" --timeout 30 object put rbd after-full "$TEST_DIR/4m" 2>/dev/null && { ok=1; break; }
  sleep 0.2
done
[ $ok = 1 ] || fail "no write succeeded after the removes"
workload_end E
clean
grep -l "write refused (ENOSPC)" "$TEST_DIR"/log/osd.*.log && fail "a store ran out of blocks"
check E
for n in 0 1 2 3 4 5; do stop_osd $n; done
for m in a b c; do stop_mon $m; done
echo PASS
