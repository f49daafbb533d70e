#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Three monitors on loopback: pool create; kill -9 the leader -> a new
# leader, the pool still listed; the killed monitor restarts and catches up
# (through a snapshot: the log is compacted every 20 entries here); with 2
# of 3 down a change fails with a clear no-quorum error within its timeout;
# all restarted -> state intact.  Prints the election time after a leader
# kill (time until a change commits again).
source "$(dirname "$0")/../functions.sh"
MON_SNAPSHOT_EVERY=20 make_cluster 3
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30

"$BLKCTL" pool create KVMpool 128 | grep -q "created" || fail "pool create"
"$BLKCTL" pool ls | grep -q "KVMpool" || fail "pool not listed"

L=$(leader); echo "leader is mon.$L"
kill_mon "$L"
t0=$(ms_now)
"$BLKCTL" --timeout 20 pool create after-kill 32 >/dev/null || fail "create after leader kill"
t1=$(ms_now)
echo "MEASURE leader-kill-to-commit-ms $((t1 - t0))"
L2=$(leader); [ "$L2" != "$L" ] || fail "leader did not change"
"$BLKCTL" pool ls | grep -q KVMpool || fail "pool lost after leader kill"

# many changes while mon.$L is down, so that the log is compacted and the
# restarted monitor must catch up by snapshot
for i in $(seq 1 30); do "$BLKCTL" pool create "p$i" 8 >/dev/null || fail "create p$i"; done
start_mon "$L"
# catch-up: the restarted monitor's own view reaches the leader's epoch
want=$("$BLKCTL" --format json pool ls | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
for _ in $(seq 100); do
  grep -q "installed snapshot" "$TEST_DIR/log/mon.$L.log" && break
  sleep 0.1
done
grep -q "installed snapshot" "$TEST_DIR/log/mon.$L.log" || fail "mon.$L did not catch up by snapshot"
# make the restarted monitor the only way to reach the quorum's state:
# stop the others one at a time later; first check it is in the quorum
for _ in $(seq 100); do
  "$BLKCTL" mon stat --format json | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if '$L' in d['quorum'] else 1)" && break
  sleep 0.1
done
"$BLKCTL" mon stat --format json | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if '$L' in d['quorum'] else 1)" || fail "mon.$L not back in quorum"
echo "epoch $want; mon.$L caught up"

# 2 of 3 down: a clear error within the timeout, non-zero exit
others=()
for m in "${MONS[@]}"; do [ "$m" = "$L" ] || others+=("$m"); done
kill_mon "${others[0]}"; kill_mon "${others[1]}"
t0=$(ms_now)
set +e
out=$("$BLKCTL" --timeout 3 pool create nope 8 2>&1); rc=$?
set -e
t1=$(ms_now)
echo "$out"
[ $rc -eq 110 ] || fail "expected exit 110 (ETIMEDOUT) without quorum, got $rc"
grep -q "no monitor quorum answered within 3000 ms" <<<"$out" || fail "unclear no-quorum error"
grep -q "mon.${others[0]}.*Connection refused" <<<"$out" || fail "error does not say which monitor is unreachable"
[ $((t1 - t0)) -lt 6000 ] || fail "no-quorum error took $((t1 - t0)) ms"

# all restarted: the state is intact (the lone survivor served nothing new)
start_mon "${others[0]}"; start_mon "${others[1]}"
wait_quorum 30
n=$("$BLKCTL" --format json pool ls | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pools"]))')
[ "$n" -eq 32 ] || fail "expected 32 pools after restart, got $n"
"$BLKCTL" pool ls | grep -q " nope " && fail "a refused create appeared"
# clean stop of every monitor (LeakSanitizer checks at exit)
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
