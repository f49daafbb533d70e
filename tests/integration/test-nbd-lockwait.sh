#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blk-nbd opens images without blocking its event loop (docs/nbd.md):
#  1. while a busy writer (image-lock hold, another process) holds the
#     exclusive lock of rbd/a, a client's NBD_OPT_GO for rbd/a waits; the
#     same server meanwhile serves rbd/b (a write and a read-back through
#     nbdsh, each bounded to 6 s) and a second GO for rbd/a queues on the
#     same open; when the holder closes the image, both waiting clients
#     get their reply and their writes reach the image;
#  2. with --lock-wait 3 an open whose lock is never released fails after
#     about 3 s with NBD_REP_ERR_POLICY and a message saying the image is
#     in use, the server logs it, and rbd/b still works.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
LOCK=$BLK_BUILD_DIR/tests/integration/image-lock
[ -x "$LOCK" ] || fail "image-lock not built ($LOCK)"
nbd_cluster
cat >>"$BLK_CONF" <<CONF
[global]
image_lock_lease = 2s
CONF
"$BLKCTL" image create rbd/a --size 8M >/dev/null || fail "create a"
"$BLKCTL" image create rbd/b --size 8M >/dev/null || fail "create b"

# hold_lock SECONDS: a busy writer on rbd/a (a write every 20 ms, so it
# never hands the lock over); its pid in HOLDER
hold_lock() {
  : >"$TEST_DIR/holder.out"
  "$LOCK" rbd a hold H "$1" 20 >"$TEST_DIR/holder.out" 2>&1 &
  HOLDER=$!
  track_pid $HOLDER
  for _ in $(seq 150); do grep -q holding "$TEST_DIR/holder.out" && return 0; sleep 0.1; done
  fail "the holder never got the lock: $(cat "$TEST_DIR/holder.out")"
}

# b_roundtrip TAG: write TAG into rbd/b and read it back on a new
# connection to the same server; must finish within 6 s
b_roundtrip() {
  local t0 t1 out
  t0=$(ms_now)
  out=$(timeout 6 nbdsh -u "nbd://127.0.0.1:$PORT/rbd/b" -c "
tag = b'$1'.ljust(512, b'\\0')
h.pwrite(tag, 4096)
h.flush()
assert h.pread(512, 4096) == tag
print('b ok')" 2>&1) || fail "rbd/b did not answer while rbd/a waits for its lock: $out"
  t1=$(ms_now)
  echo "ok: rbd/b write+read $1 in $((t1 - t0)) ms"
}

echo "== 1. a waiting open does not stall the other exports"
hold_lock 15
PORT=$(nbd_port)
start_nbd s1 --listen 127.0.0.1:$PORT --lock-wait 60
T0=$(ms_now)
nbdsh -u "nbd://127.0.0.1:$PORT/rbd/a" -c "
h.pwrite(b'waiter1'.ljust(512, b'\\0'), 0)
h.flush()
print('a1 done')" >"$TEST_DIR/a1.out" 2>&1 &
A1=$!; track_pid $A1
for _ in $(seq 100); do grep -q "opening export rbd/a" "$TEST_DIR/log/nbd.s1.log" && break; sleep 0.1; done
grep -q "opening export rbd/a" "$TEST_DIR/log/nbd.s1.log" || fail "rbd/a's open did not start"
nbdsh -u "nbd://127.0.0.1:$PORT/rbd/a" -c "
print('a2 size', h.get_size())
h.pwrite(b'waiter2'.ljust(512, b'\\0'), 512)
print('a2 done')" >"$TEST_DIR/a2.out" 2>&1 &
A2=$!; track_pid $A2
for i in 1 2 3; do
  b_roundtrip "b$i"
  kill -0 $A1 2>/dev/null || fail "the rbd/a client finished while the lock was held: $(cat "$TEST_DIR/a1.out")"
done
grep -q "held until the end" "$TEST_DIR/holder.out" && fail "the holder finished before the checks (machine too slow)"
kill -0 $A2 2>/dev/null || fail "the second rbd/a client finished while the lock was held: $(cat "$TEST_DIR/a2.out")"
echo "ok: rbd/a still waiting after $(($(ms_now) - T0)) ms"
wait $HOLDER || fail "holder: $(cat "$TEST_DIR/holder.out")"
TH=$(ms_now)
wait $A1 || fail "rbd/a client 1: $(cat "$TEST_DIR/a1.out")"
wait $A2 || fail "rbd/a client 2: $(cat "$TEST_DIR/a2.out")"
TA=$(ms_now)
grep -q "a1 done" "$TEST_DIR/a1.out" || fail "a1: $(cat "$TEST_DIR/a1.out")"
grep -q "a2 size 8388608" "$TEST_DIR/a2.out" || fail "a2: $(cat "$TEST_DIR/a2.out")"
echo "ok: both rbd/a clients done $((TA - TH)) ms after the holder closed"
[ $((TA - TH)) -lt 15000 ] || fail "the waiting open took $((TA - TH)) ms after the release"
out=$(nbdsh -u "nbd://127.0.0.1:$PORT/rbd/a" -c "
print(h.pread(7, 0).decode(), h.pread(7, 512).decode())")
[ "$out" = "waiter1 waiter2" ] || fail "rbd/a reads '$out'"
echo "ok: rbd/a holds both waiters' writes"

echo "== 2. --lock-wait bounds the wait; the refusal is clear"
# close every connection so s1 releases rbd/a, then hold it again
kill -TERM $NBDPID_s1; wait $NBDPID_s1 || fail "s1 exit status"
hold_lock 40
PORT=$(nbd_port)
start_nbd s2 --listen 127.0.0.1:$PORT --lock-wait 3
T0=$(ms_now)
set +e
out=$(LIBNBD_DEBUG=1 timeout 30 nbdsh -u "nbd://127.0.0.1:$PORT/rbd/a" -c "print('opened')" 2>&1); rc=$?
set -e
T1=$(ms_now)
[ $rc -ne 0 ] || fail "rbd/a opened while the lock was held: $out"
# (here-strings: with pipefail, `echo | grep -q` fails when grep quits
# before echo has written all of libnbd's debug output: SIGPIPE)
grep -q "policy prevents" <<<"$out" || fail "not refused with NBD_REP_ERR_POLICY: $out"
grep -q "in use" <<<"$out" || fail "the server's message does not say the image is in use: $out"
[ $((T1 - T0)) -ge 2500 ] || fail "gave up after $((T1 - T0)) ms, before --lock-wait"
echo "ok: refused after $((T1 - T0)) ms: $(grep -m1 "in use" <<<"$out")"
grep -q "cannot open image rbd/a.*in use" "$TEST_DIR/log/nbd.s2.log" || fail "no log line for the refusal"
b_roundtrip b4
kill -KILL $HOLDER; wait $HOLDER 2>/dev/null || true
kill -TERM $NBDPID_s2; wait $NBDPID_s2 || fail "s2 exit status"
echo "PASS"
