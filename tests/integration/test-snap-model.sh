#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Image snapshots against models (issue 8): snap-model runs random writes,
# discards, write-zeroes, resizes, snapshot create/remove (protected ones
# refused), rollbacks on an image with 64 KiB objects, checking the head
# and every snapshot byte for byte (each snapshot read whole through a
# handle opened at it) after every snapshot op; snapshots are read-only;
# an image with snapshots cannot be removed.  Then blkctl: snap
# create/ls/protect/rm/rename/rollback, export of IMAGE@SNAP equal to the
# data at the snapshot after many overwrites, error paths and exit codes.
source "$(dirname "$0")/../functions.sh"
requires python3 cmp
MODEL=$BLK_BUILD_DIR/tests/integration/snap-model
[ -x "$MODEL" ] || fail "snap-model not built ($MODEL)"
rbd_cluster

for seed in ${SNAP_SEEDS:-1 5}; do
  "$MODEL" rbd "m$seed" --ops "${SNAP_OPS:-150}" --seed $seed || fail "snap-model seed $seed"
done
[ -z "$("$BLKCTL" image ls rbd | grep '^m')" ] || fail "model images not removed"


# a snapshot reads back exactly after many overwrites of its image
python3 -c "import os,sys; sys.stdout.buffer.write(os.urandom(8<<20))" >"$TEST_DIR/v1"
"$BLKCTL" image import "$TEST_DIR/v1" rbd/vm --object-size 1M >/dev/null || fail "import"
"$BLKCTL" image snap create rbd/vm@v1 || fail "snap create"
for pass in 1 2 3 4 5 6; do
  "$BLKCTL" image bench rbd/vm --io-type write --io-size 64K --io-threads 8 --io-pattern rand \
    --io-total 4M >/dev/null || fail "bench overwrite $pass"
  [ $pass = 3 ] && { "$BLKCTL" image snap create rbd/vm@v2 || fail "snap create v2"; }
done
"$BLKCTL" image export rbd/vm@v1 "$TEST_DIR/v1.out" >/dev/null || fail "export of the snapshot"
cmp "$TEST_DIR/v1" "$TEST_DIR/v1.out" || fail "snapshot v1 differs from the data it was taken of"
"$BLKCTL" image export rbd/vm "$TEST_DIR/head" >/dev/null || fail "export head"
cmp -s "$TEST_DIR/v1" "$TEST_DIR/head" && fail "the head was not overwritten"
"$BLKCTL" image export rbd/vm@v2 "$TEST_DIR/v2.out" >/dev/null || fail "export v2"
"$BLKCTL" image snap ls rbd/vm | tee "$TEST_DIR/ls"
grep -qE '^ +1  v1 +8388608 .* no$' "$TEST_DIR/ls" || fail "snap ls: v1"
grep -qE '^ +2  v2 +8388608 .* no$' "$TEST_DIR/ls" || fail "snap ls: v2"
"$BLKCTL" --format json image snap ls rbd/vm | grep -q '"name":"v2"' || fail "snap ls json"
"$BLKCTL" image info rbd/vm@v1 | grep -q "size 8 MiB" || fail "info at a snapshot"
"$BLKCTL" --format json image du rbd/vm | python3 -c '
import json, sys
rows = {r["name"]: r["used_size"] for r in json.load(sys.stdin)}
print("du:", rows)
assert rows["vm@v1"] == 8 << 20, rows        # the first snapshot holds all its data
assert 0 < rows["vm@v2"] < 8 << 20, rows      # v2: what changed since v1 only
assert rows["vm"] == 8 << 20, rows
' || fail "image du with snapshots"
"$BLKCTL" --format json image du rbd/vm@v1 | grep -q '"used_size":8388608' || fail "du at a snapshot"

# errors
expect 17 "already has a snapshot 'v1'" -- image snap create rbd/vm@v1
expect 2 "has no snapshot 'nope'" -- image snap rm rbd/vm@nope
expect 2 "has no snapshot 'nope'" -- image export rbd/vm@nope "$TEST_DIR/n"
expect 22 "must name a snapshot" -- image snap create rbd/vm
expect 22 "names an image, not a snapshot" -- image snap ls rbd/vm@v1
expect 22 "unknown snap command 'frob'" -- image snap frob rbd/vm@v1
expect 22 "bad snapshot name" -- image snap rename rbd/vm@v1 'a/b'
expect 30 "read-only|at a snapshot" -- image resize rbd/vm@v1 --size 1M --allow-shrink
"$BLKCTL" image snap protect rbd/vm@v1 || fail "protect"
expect 16 "is protected" -- image snap rm rbd/vm@v1
grep -q yes <("$BLKCTL" image snap ls rbd/vm) || fail "ls shows protected"
"$BLKCTL" image snap unprotect rbd/vm@v1 || fail "unprotect"
expect 39 "has 2 snapshot" -- image rm rbd/vm
"$BLKCTL" image snap rename rbd/vm@v2 second || fail "rename"
expect 17 "already has a snapshot 'v1'" -- image snap rename rbd/vm@second v1
"$BLKCTL" image export rbd/vm@second "$TEST_DIR/v2.again" >/dev/null || fail "export renamed"
cmp "$TEST_DIR/v2.out" "$TEST_DIR/v2.again" || fail "renamed snapshot differs"

# rollback: the head equals the snapshot, the other snapshot is untouched
"$BLKCTL" image snap rollback rbd/vm@v1 || fail "rollback"
"$BLKCTL" image export rbd/vm "$TEST_DIR/rb" >/dev/null
cmp "$TEST_DIR/v1" "$TEST_DIR/rb" || fail "head after rollback differs from v1"
"$BLKCTL" image export rbd/vm@second "$TEST_DIR/v2.after" >/dev/null
cmp "$TEST_DIR/v2.out" "$TEST_DIR/v2.after" || fail "rollback changed another snapshot"

# incremental backup: export-diff of two snapshots applied to a copy
"$BLKCTL" image import "$TEST_DIR/v1" rbd/src --object-size 1M >/dev/null || fail "import src"
"$BLKCTL" image snap create rbd/src@a || fail "src@a"
"$BLKCTL" image bench rbd/src --io-type write --io-size 64K --io-threads 4 --io-pattern rand \
  --io-total 1M >/dev/null || fail "overwrite src"
"$BLKCTL" image resize rbd/src --size 9M || fail "grow src"
"$BLKCTL" image snap create rbd/src@b || fail "src@b"
"$BLKCTL" image export-diff rbd/src@a "$TEST_DIR/full.diff" || fail "export-diff full"
"$BLKCTL" image export-diff rbd/src@b --from-snap a "$TEST_DIR/inc.diff" || fail "export-diff a..b"
"$BLKCTL" image diff rbd/src@b --from-snap a >"$TEST_DIR/diff.txt" || fail "diff"
changed=$(awk '{s += $2} END {print s + 0}' "$TEST_DIR/diff.txt")
echo "diff a..b: $(wc -l <"$TEST_DIR/diff.txt") extents, $changed bytes changed; inc.diff $(stat -c %s "$TEST_DIR/inc.diff") bytes, full.diff $(stat -c %s "$TEST_DIR/full.diff") bytes"
[ "$changed" -gt 0 ] && [ "$changed" -le $((2 << 20)) ] || fail "diff a..b reports $changed bytes"
"$BLKCTL" image create rbd/dst --size 1M || fail "create dst"
"$BLKCTL" image import-diff "$TEST_DIR/full.diff" rbd/dst || fail "import-diff full"
"$BLKCTL" image create rbd/dst2 --size 1M || fail "create dst2"
expect 2 "has no snapshot 'a'" -- image import-diff "$TEST_DIR/inc.diff" rbd/dst2
"$BLKCTL" image rm rbd/dst2 || fail "rm dst2"
"$BLKCTL" image import-diff "$TEST_DIR/inc.diff" rbd/dst || fail "import-diff a..b"
for v in src@a dst@a src@b dst; do "$BLKCTL" image export "rbd/$v" "$TEST_DIR/x.$v" >/dev/null || fail "export $v"; done
cmp "$TEST_DIR/x.src@a" "$TEST_DIR/x.dst@a" || fail "dst@a differs from src@a"
cmp "$TEST_DIR/x.src@b" "$TEST_DIR/x.dst" || fail "dst after import-diff differs from src@b"
echo "ok: export-diff a, a..b applied to a copy: byte-identical"
expect 22 "not a blkctl diff stream" -- image import-diff "$TEST_DIR/v1" rbd/dst
for i in src dst; do
  for sn in a b; do "$BLKCTL" image snap rm "rbd/$i@$sn" 2>/dev/null || true; done
  "$BLKCTL" image rm "rbd/$i" || fail "rm $i"
done

# removal: snapshots, then the image; nothing left in the pool
"$BLKCTL" image snap rm rbd/vm@v1 || fail "snap rm v1"
"$BLKCTL" image export rbd/vm@second "$TEST_DIR/v2.after" >/dev/null
cmp "$TEST_DIR/v2.out" "$TEST_DIR/v2.after" || fail "removing v1 changed snapshot second"
"$BLKCTL" image snap rm rbd/vm@second || fail "snap rm second"
"$BLKCTL" image rm rbd/vm || fail "image rm"
left=$("$BLKCTL" object ls rbd | grep -v '^blk_directory$' || true)
[ -z "$left" ] || fail "objects left after removing everything: $left"
for i in 0 1 2; do stop_osd $i; done
echo PASS
