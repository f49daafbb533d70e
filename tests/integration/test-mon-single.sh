#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A cluster of one monitor answers map changes at once.  With one monitor
# a proposal commits and is applied inside raft_propose; the requester
# used to be registered only after that, so the reply was lost and every
# change waited for blkctl's timeout.  Each change here must answer well
# within a short timeout, with the right result, and be visible after.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-120}
source "$(dirname "$0")/../functions.sh"
make_cluster 1
echo "mon_max_pg_num = 32" >>"$BLK_CONF"   # in [mon], for the refusal below
start_mon a
wait_quorum 30

# run CODE REGEX -- ARGS: like expect, with --timeout 5, and the answer must
# come within 3 s (the lost reply showed as a 5 s timeout).
run() {
  local code=$1 re=$2 t0 t1; shift 3
  t0=$(ms_now)
  set +e; out=$("$BLKCTL" --timeout 5 "$@" 2>&1); rc=$?; set -e
  t1=$(ms_now)
  [ "$rc" -eq "$code" ] || fail "blkctl $*: exit $rc, want $code ($out) after $((t1 - t0)) ms"
  grep -qE -- "$re" <<<"$out" || fail "blkctl $*: '$out' does not match /$re/"
  [ $((t1 - t0)) -lt 3000 ] || fail "blkctl $*: answered after $((t1 - t0)) ms"
  echo "ok ($((t1 - t0)) ms): blkctl $* -> $rc: $out"
}

run 0 '' -- pool create one 8
run 0 '' -- pool create two 16 --size 2
run 17 'exist' -- pool create one 8                       # EEXIST
run 22 'mon_max_pg_num' -- pool create big 64   # refused before raft
run 0 'one' -- pool ls
run 0 'two' -- pool ls
run 0 '' -- pool rm two --yes-i-really-mean-it
pools=$("$BLKCTL" --timeout 5 --format json pool ls)
grep -q '"one"' <<<"$pools" || fail "pool one missing: $pools"
grep -q '"two"' <<<"$pools" && fail "pool two still there: $pools"
# OSD commands answer (here: no such OSD) instead of timing out
run 2 '' -- osd out 7
run 2 '' -- osd in 7
run 2 '' -- osd reweight 7 0.5
# changes through the auth database take the same path (commands_propose_for)
if ! grep -q '^auth_mode *= *none' "$BLK_CONF"; then
  run 0 'key' -- auth get-or-create client.single mon 'allow r'
  run 0 'client.single' -- auth ls
fi
# many changes in a row: each is answered, none waits for a timeout
t0=$(ms_now)
for i in $(seq 1 20); do
  "$BLKCTL" --timeout 5 pool create "p$i" 8 >/dev/null || fail "pool create p$i"
done
t1=$(ms_now)
echo "20 pool creates in $((t1 - t0)) ms"
[ $((t1 - t0)) -lt 20000 ] || fail "20 pool creates took $((t1 - t0)) ms"
n=$("$BLKCTL" --timeout 5 --format json pool ls | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pools"]))')
[ "$n" = 21 ] || fail "$n pools, want 21"
run 0 'map-change +20 ops' -- mon bench --count 20
stop_mon a
echo PASS
