#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Snapshots under a live NBD writer (issue 8): an NBD client (nbdsh)
# writes 64 KiB blocks one after the other (block k filled with k) while
# `blkctl image snap create` runs against the image blk-nbd holds open.
# The writer sees no error; the snapshot, exported read-only over NBD as
# POOL/IMAGE@SNAP, is crash-consistent: a prefix of the blocks, holding
# every block acknowledged before snap create started and none started
# after it returned; writes to the snapshot export are refused.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
nbd_cluster
"$BLKCTL" image create rbd/a --size 512M || fail "create"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P --pool rbd
U="nbd://127.0.0.1:$P"

nbdsh -u "$U/rbd/a" -c "
import time
log = open('$TEST_DIR/writes', 'w')
end = time.time() + 7
k = 0
while time.time() < end and k < 8000:
    t0 = time.time()
    h.pwrite(bytes([k % 251 + 1]) * 65536, k * 65536)
    log.write('%d %.6f %.6f\n' % (k, t0, time.time()))
    log.flush()
    k += 1
    time.sleep(0.002)
" >"$TEST_DIR/writer.out" 2>&1 &
wpid=$!
sleep 2
t0=$(date +%s.%N)
"$BLKCTL" image snap create rbd/a@s || fail "snap create under a writer"
t1=$(date +%s.%N)
wait $wpid || fail "the NBD writer saw an error: $(cat "$TEST_DIR/writer.out")"
last=$(tail -1 "$TEST_DIR/writes" | awk '{print $3}')
python3 -c "import sys; sys.exit(0 if $last > $t1 else 1)" || fail "the writer stopped before snap create returned"
echo "snap create took $(python3 -c "print('%.3f s' % ($t1 - $t0))") with the writer active"

nbdsh -u "$U/rbd/a@s" -c "
t0, t1 = $t0, $t1
writes = [l.split() for l in open('$TEST_DIR/writes')]
assert len(writes) > 20, 'writer too slow: %d writes' % len(writes)
present = []
for k, start, done in writes:
    k = int(k)
    b = h.pread(65536, k * 65536)
    if b == bytes([k % 251 + 1]) * 65536:
        present.append(k)
    elif b != bytes(65536):
        raise SystemExit('block %d of the snapshot is torn' % k)
    if float(done) < t0 and k not in present:
        raise SystemExit('block %d acknowledged before snap create is missing' % k)
    if float(start) > t1 and k in present:
        raise SystemExit('block %d written after snap create returned is in the snapshot' % k)
if present != list(range(len(present))):
    raise SystemExit('snapshot is not a prefix of the writes: %s' % present[:50])
print('snapshot holds blocks 0..%d of %d written' % (len(present) - 1, len(writes)))
try:
    h.pwrite(b'x' * 512, 0)
    raise SystemExit('write to the snapshot export accepted')
except nbd.Error:
    pass
" || fail "snapshot check"
"$BLKCTL" image snap ls rbd/a | grep -q " s " || fail "snap ls"
for i in 0 1 2; do stop_osd $i; done
echo PASS
