#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The exclusive lock of images (3 monitors, 3 OSDs, image_lock_lease 2s,
# image_lock_timeout 5s), each client a separate process (image-lock):
#  1. two writers started together never interleave: the shared log holds
#     all records of one, then all of the other;
#  2. while a busy writer holds the lock: an exclusive open, blkctl image
#     rm and bench fail with EBUSY (16) at once; a waiting open gives up
#     with EBUSY after image_lock_timeout;
#  3. a holder killed with SIGKILL: the next opener fences it (blocklist)
#     after its lease runs out and takes the lock;
#  4. cooperative handoff: an idle holder releases the lock on request;
#     its next write fails with EBUSY;
#  5. a frozen holder (SIGSTOP) is fenced and loses the lock; after SIGCONT
#     its writes are refused by the OSDs and never overwrite the new
#     holder's data.
source "$(dirname "$0")/../functions.sh"
requires python3
LOCK=$BLK_BUILD_DIR/tests/integration/image-lock
[ -x "$LOCK" ] || fail "image-lock not built ($LOCK)"
make_cluster 3
osd_conf
cat >>"$BLK_CONF" <<CONF
[global]
image_lock_lease = 2s
image_lock_timeout = 5s
CONF
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 16 --size 3 --min-size 2 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 512M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
"$BLKCTL" image create rbd/log --size 16M --object-size 1M
"$BLKCTL" image create rbd/lk --size 16M

echo "== 1. two writers never interleave"
"$LOCK" rbd log writer A 40 >"$TEST_DIR/wa.out" 2>&1 &
PA=$!; track_pid $PA
"$LOCK" rbd log writer B 40 >"$TEST_DIR/wb.out" 2>&1 &
PB=$!; track_pid $PB
wait $PA || { cat "$TEST_DIR/wa.out"; fail "writer A"; }
wait $PB || { cat "$TEST_DIR/wb.out"; fail "writer B"; }
"$LOCK" rbd log check-log 40 || fail "writers interleaved"

echo "== 2. busy holder: EBUSY for exclusive opens, rm, bench; a waiter times out"
"$LOCK" rbd lk hold H1 120 50 >"$TEST_DIR/h1.out" 2>&1 &
H1=$!; track_pid $H1
for _ in $(seq 100); do grep -q holding "$TEST_DIR/h1.out" && break; sleep 0.1; done
grep -q holding "$TEST_DIR/h1.out" || fail "H1 never got the lock"
set +e
out=$("$LOCK" rbd lk take X --exclusive 2>&1); rc=$?
set -e
[ $rc -eq 16 ] && grep -q "in use: its exclusive lock is held by client" <<<"$out" ||
  fail "exclusive open while held: rc $rc: $out"
echo "ok: $out"
set +e
out=$("$BLKCTL" image rm rbd/lk 2>&1); rc=$?
set -e
[ $rc -eq 16 ] && grep -q "open by a writer" <<<"$out" || fail "rm while open: rc $rc: $out"
echo "ok: $out"
set +e
out=$("$BLKCTL" image bench rbd/lk --io-type write --io-total 1M 2>&1); rc=$?
set -e
[ $rc -eq 16 ] || fail "bench while open: rc $rc: $out"
echo "ok: bench -> 16"
t0=$(ms_now)
set +e
out=$("$LOCK" rbd lk take W 2>&1); rc=$?
set -e
t1=$(ms_now)
[ $rc -eq 16 ] && grep -q "did not release" <<<"$out" || fail "waiter: rc $rc: $out"
[ $((t1 - t0)) -ge 4500 ] || fail "waiter gave up after $((t1 - t0)) ms, before image_lock_timeout"
echo "ok: waiter gave up after $((t1 - t0)) ms: $out"

echo "== 3. dead holder (SIGKILL) is fenced and its lock taken"
kill -KILL $H1; wait $H1 2>/dev/null || true
out=$("$LOCK" rbd lk take T3) || fail "take after kill: $out"
echo "ok: $out"
"$BLKCTL" osd blocklist ls | grep -q . || fail "the dead holder was not blocklisted"
[ "$("$LOCK" rbd lk read0)" = "T3" ] || fail "T3's write missing"

echo "== 4. cooperative handoff from an idle holder"
"$LOCK" rbd lk hold H2 60 3000 >"$TEST_DIR/h2.out" 2>&1 &
H2=$!; track_pid $H2
for _ in $(seq 100); do grep -q holding "$TEST_DIR/h2.out" && break; sleep 0.1; done
out=$("$LOCK" rbd lk take T4) || fail "handoff: $out"
echo "ok: $out"
ms=$(echo "$out" | grep -o '[0-9]* ms' | cut -d' ' -f1)
[ "$ms" -lt 4000 ] || fail "handoff took $ms ms"
set +e; wait $H2; rc=$?; set -e
cat "$TEST_DIR/h2.out"
[ $rc -eq 3 ] && grep -q "handed over" "$TEST_DIR/h2.out" || fail "H2 kept writing after handoff (rc $rc)"
[ "$("$LOCK" rbd lk read0)" = "T4" ] || fail "H2 overwrote T4 after the handoff"

echo "== 5. frozen holder (SIGSTOP) is fenced; its late writes are refused"
"$LOCK" rbd lk hold H3 60 20 >"$TEST_DIR/h3.out" 2>&1 &
H3=$!; track_pid $H3
for _ in $(seq 100); do grep -q holding "$TEST_DIR/h3.out" && break; sleep 0.1; done
sleep 0.5
kill -STOP $H3
out=$("$LOCK" rbd lk take T5) || fail "take from a frozen holder: $out"
echo "ok: $out"
kill -CONT $H3
set +e; wait $H3; rc=$?; set -e
cat "$TEST_DIR/h3.out"
[ $rc -eq 3 ] || fail "H3 did not fail after being fenced (rc $rc)"
sleep 1
[ "$("$LOCK" rbd lk read0)" = "T5" ] || fail "a fenced write landed: block 0 is '$("$LOCK" rbd lk read0)'"
for i in 0 1 2; do stop_osd $i; done
echo PASS
