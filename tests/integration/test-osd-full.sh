#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A full OSD under the verifier workload (issue 4; docs/osd.md "Full
# OSDs"): 3 monitors, 3 small OSDs (160 MiB devices), pool size 3.  Four
# verifier writers put and remove objects while a filler puts 1 MiB objects
# until the cluster refuses them.  Expected: the refusal is ENOSPC (exit 28)
# naming the full OSD, before any store runs out of blocks (no "data area
# full" in the logs: the primaries stop at osd_full_ratio); `blkctl status`
# says HEALTH_ERR with the OSD full; reads still work; removing objects
# brings space back and writes succeed again; at the end every PG is
# active+clean, every acknowledged verifier write reads back identical from
# the primary and every replica, and every acknowledged filler object
# reads back identical.  Then the failsafe: the OSDs restarted with
# osd_full_ratio = 100 (no check) fill until a store refuses a replicated
# write; that OSD stops itself (fail-stop); restarted with the default
# ratio they peer, report HEALTH_ERR, refuse new data with ENOSPC, serve
# every acknowledged object intact, and take writes again after removes.
source "$(dirname "$0")/../functions.sh"
requires python3
OSD_SIZE=160M rbd_cluster
V="$(dirname "$0")/verifier.py"

python3 "$V" write "$TEST_DIR/v" rbd --writers 4 --seconds ${WRITE_SECS:-30} --objects 8 \
  >"$TEST_DIR/verifier-write.out" 2>&1 &
WPID=$!
track_pid $WPID

head -c 1048576 /dev/urandom >"$TEST_DIR/1m"
put() {   # put NAME: prints the exit code, the error in $TEST_DIR/put.err
  local rc=0
  "$BLKCTL" --timeout 20 object put rbd "$1" "$TEST_DIR/1m" 2>"$TEST_DIR/put.err" || rc=$?
  echo $rc
}
acked=() refused=0
for k in $(seq 1 400); do
  rc=$(put "fill-$k")
  if [ "$rc" = 0 ]; then
    acked+=("fill-$k")
  elif [ "$rc" = 28 ]; then
    refused=$((refused + 1))
    grep -q "is full" "$TEST_DIR/put.err" || fail "ENOSPC without naming the full OSD: $(cat "$TEST_DIR/put.err")"
    [ $refused -ge 3 ] && break
  else
    fail "fill-$k: unexpected exit $rc: $(cat "$TEST_DIR/put.err")"
  fi
done
echo "filler: ${#acked[@]} objects of 1 MiB acknowledged, then refused: $(cat "$TEST_DIR/put.err")"
[ $refused -ge 3 ] || fail "the cluster never refused a write (filled ${#acked[@]} MiB)"

st=$("$BLKCTL" status)
echo "$st"
grep -q "HEALTH_ERR" <<<"$st" || fail "status is not HEALTH_ERR with a full OSD"
grep -q "osds\? full: osd\." <<<"$st" || fail "status does not name the full OSD"
"$BLKCTL" --format json status | python3 -c '
import json, sys
d = json.load(sys.stdin)["pgmap"]
assert d["bytes_total"] > 0 and d["bytes_used"] > 0.9 * d["bytes_total"], d
' || fail "status JSON usage is wrong"
"$BLKCTL" osd df
"$BLKCTL" --format json osd df | python3 -c '
import json, sys
n = json.load(sys.stdin)["nodes"]
assert len(n) == 3 and all(x["reported"] and x["bytes_total"] > 0 for x in n), n
assert any(x["space"] == "full" for x in n), n
' || fail "osd df does not show a full OSD"

# reads still work, removes free space
"$BLKCTL" object get rbd "${acked[0]}" "$TEST_DIR/back" || fail "read while full"
cmp -s "$TEST_DIR/back" "$TEST_DIR/1m" || fail "read while full returned other data"
half=$(( ${#acked[@]} / 2 ))
for ((k = 0; k < half; k++)); do
  "$BLKCTL" object rm rbd "${acked[$k]}" || fail "remove ${acked[$k]} while full"
done
acked=("${acked[@]:$half}")
ok=0
for _ in $(seq 100); do
  if ! "$BLKCTL" status | grep -q "full"; then ok=1; break; fi
  sleep 0.2
done
[ $ok = 1 ] || fail "an OSD still reported full after removing $half MiB"
rc=$(put "after-rm")
[ "$rc" = 0 ] || fail "write after freeing space failed ($rc): $(cat "$TEST_DIR/put.err")"
acked+=("after-rm")

wait "$WPID" || fail "verifier writers failed"
cat "$TEST_DIR/verifier-write.out" | head -20
n_ok=$(grep -o '[0-9]* acknowledged' "$TEST_DIR/verifier-write.out" | cut -d' ' -f1)
[ "${n_ok:-0}" -gt 20 ] || fail "too few acknowledged verifier writes ($n_ok)"

wait_pg_states "active+clean=16"
echo "pg states: active+clean=16"
if grep -l "write refused (ENOSPC)" "$TEST_DIR"/log/osd.*.log; then
  fail "a store ran out of blocks: the primaries did not stop at osd_full_ratio"
fi
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "verifier found lost or divergent writes"
for o in "${acked[@]}"; do
  "$BLKCTL" object get rbd "$o" "$TEST_DIR/back" || fail "acknowledged $o unreadable"
  cmp -s "$TEST_DIR/back" "$TEST_DIR/1m" || fail "acknowledged $o differs"
done
echo "all ${#acked[@]} acknowledged filler objects read back identical"

echo "== the failsafe: osd_full_ratio = 100, so the stores themselves run out"
for i in 0 1 2; do stop_osd $i; done
for i in 0 1 2; do start_osd $i --set osd_full_ratio=100; done
wait_osds_up 3 30
wait_pg_states "active+clean=16"
n_over=0
for k in $(seq 1 400); do
  rc=0
  "$BLKCTL" --timeout 10 object put rbd "over-$k" "$TEST_DIR/1m" 2>"$TEST_DIR/put.err" || rc=$?
  [ "$rc" = 0 ] || break
  acked+=("over-$k")
  n_over=$((n_over + 1))
done
echo "failsafe: $n_over more objects acknowledged, then exit $rc: $(cat "$TEST_DIR/put.err")"
grep -q "write refused (ENOSPC)" "$TEST_DIR"/log/osd.*.log || fail "no store ran out of blocks"
grep -h "(fail-stop)" "$TEST_DIR"/log/osd.*.log || fail "no OSD stopped on a write its store refused"
# restart them as an operator would (default osd_full_ratio)
for i in 0 1 2; do
  p=$(osd_pid $i)
  if kill -0 "$p" 2>/dev/null; then stop_osd $i; else wait "$p" 2>/dev/null || true; fi
  start_osd $i
done
wait_osds_up 3 60
wait_pg_states "active+clean=16" 60
st=$("$BLKCTL" status)
grep -q "HEALTH_ERR" <<<"$st" || fail "status after the restart is not HEALTH_ERR"
rc=$(put "while-full")
[ "$rc" = 28 ] || fail "a write at 99% was not refused with ENOSPC ($rc)"
for o in "${acked[@]}"; do
  "$BLKCTL" object get rbd "$o" "$TEST_DIR/back" || fail "acknowledged $o unreadable after the fail-stop"
  cmp -s "$TEST_DIR/back" "$TEST_DIR/1m" || fail "acknowledged $o differs after the fail-stop"
done
for o in "${acked[@]}"; do "$BLKCTL" object rm rbd "$o" || fail "remove $o"; done
ok=0
for _ in $(seq 100); do
  rc=$(put "after-failsafe")
  [ "$rc" = 0 ] && { ok=1; break; }
  sleep 0.2
done
[ $ok = 1 ] || fail "no write succeeded after removing everything: $(cat "$TEST_DIR/put.err")"
python3 "$V" check "$TEST_DIR/v" rbd --replicas || fail "verifier writes lost after the fail-stop"
echo "failsafe: all acknowledged objects intact after the fail-stop and restart; writes resume after removes"
for i in 0 1 2; do stop_osd $i; done
