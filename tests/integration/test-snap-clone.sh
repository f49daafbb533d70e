#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copy-on-write clones (issue 8): clone of a protected snapshot (refused
# unprotected), reads falling through to the parent, the first write
# copying up, the parent snapshot untouched by the child's writes,
# `image children`, unprotect refused while clones exist; a chain of
# depth 3 (gold@base -> c1@s -> c2@s -> c3) reads correctly and flattens
# (byte-identical before and after, the parent no longer needed); an OSD
# killed (-9) during a flatten: the flatten completes, nothing lost.
source "$(dirname "$0")/../functions.sh"
requires python3 cmp
rbd_cluster

overwrite() {
  "$BLKCTL" image bench "rbd/$1" --io-type write --io-size 64K --io-threads 8 --io-pattern rand \
    --io-total "${2:-2M}" >/dev/null || fail "bench overwrite of $1"
}
exp() { "$BLKCTL" image export "rbd/$1" "$TEST_DIR/$2" >/dev/null || fail "export $1"; }

python3 -c "import os,sys; sys.stdout.buffer.write(os.urandom(8<<20))" >"$TEST_DIR/gold"
"$BLKCTL" image import "$TEST_DIR/gold" rbd/gold --object-size 1M >/dev/null || fail "import"
"$BLKCTL" image snap create rbd/gold@base || fail "snap create"
expect 22 "is not protected" -- image clone rbd/gold@base rbd/c1
"$BLKCTL" image snap protect rbd/gold@base || fail "protect"
"$BLKCTL" image clone rbd/gold@base rbd/c1 || fail "clone"
expect 17 "already exists" -- image clone rbd/gold@base rbd/c1
expect 2 "no snapshot 'nope'" -- image clone rbd/gold@nope rbd/c9
expect 22 "must name a snapshot" -- image clone rbd/gold rbd/c9
[ "$("$BLKCTL" image children rbd/gold@base)" = "rbd/c1" ] || fail "children: $("$BLKCTL" image children rbd/gold@base)"
expect 16 "has clones" -- image snap unprotect rbd/gold@base
expect 39 "snapshot" -- image rm rbd/gold
exp c1 c1.0
cmp "$TEST_DIR/gold" "$TEST_DIR/c1.0" || fail "a fresh clone differs from its parent snapshot"
left=$("$BLKCTL" object ls rbd | grep -c "^blk_data" || true)
echo "data objects after the clone: $left (the parent's 8)"
[ "$left" -eq 8 ] || fail "cloning copied data ($left data objects)"

overwrite c1
exp c1 c1.1
cmp -s "$TEST_DIR/gold" "$TEST_DIR/c1.1" && fail "the clone was not written"
exp gold@base base.1
cmp "$TEST_DIR/gold" "$TEST_DIR/base.1" || fail "writing the clone changed the parent snapshot"
exp gold gold.1
cmp "$TEST_DIR/gold" "$TEST_DIR/gold.1" || fail "writing the clone changed the parent"
python3 - "$TEST_DIR/gold" "$TEST_DIR/c1.1" <<'PY' || fail "untouched 64K blocks of the clone differ from the parent"
import sys
a, b = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
same = sum(1 for i in range(0, len(a), 65536) if a[i:i+65536] == b[i:i+65536])
print("clone: %d of %d 64K blocks still the parent's" % (same, len(a) // 65536))
assert same > 0
PY

# chain of depth 3
"$BLKCTL" image snap create rbd/c1@s && "$BLKCTL" image snap protect rbd/c1@s || fail "c1@s"
"$BLKCTL" image clone rbd/c1@s rbd/c2 || fail "clone c2"
overwrite c2 1M
exp c2 c2.1
"$BLKCTL" image snap create rbd/c2@s && "$BLKCTL" image snap protect rbd/c2@s || fail "c2@s"
"$BLKCTL" image clone rbd/c2@s rbd/c3 || fail "clone c3"
exp c3 c3.0
cmp "$TEST_DIR/c2.1" "$TEST_DIR/c3.0" || fail "depth-3 clone differs from its parent snapshot"
overwrite c3 1M
exp c3 c3.1
exp c2 c2.2
cmp "$TEST_DIR/c2.1" "$TEST_DIR/c2.2" || fail "writing c3 changed c2"
"$BLKCTL" image flatten rbd/c3 || fail "flatten c3"
exp c3 c3.2
cmp "$TEST_DIR/c3.1" "$TEST_DIR/c3.2" || fail "flatten changed c3"
[ -z "$("$BLKCTL" image children rbd/c2@s)" ] || fail "c3 still a child of c2@s"
"$BLKCTL" image snap unprotect rbd/c2@s || fail "unprotect after flatten"
expect 22 "not a clone" -- image flatten rbd/c3

# an OSD killed during a flatten
"$BLKCTL" --timeout 90 image flatten rbd/c2 >"$TEST_DIR/fl.out" 2>&1 &
fpid=$!
sleep 0.3
kill_osd 1
wait $fpid || fail "flatten with an OSD killed: $(cat "$TEST_DIR/fl.out")"
start_osd 1
wait_osd 1 status up 15 >/dev/null
exp c2 c2.3
cmp "$TEST_DIR/c2.1" "$TEST_DIR/c2.3" || fail "c2 changed by the interrupted flatten"
# c2 no longer needs c1@s: remove the whole chain below it
"$BLKCTL" image snap rm rbd/c2@s && "$BLKCTL" image rm rbd/c3 || fail "rm c3"
"$BLKCTL" image rm rbd/c2 || fail "rm c2"
exp c1 c1.2
cmp "$TEST_DIR/c1.1" "$TEST_DIR/c1.2" || fail "c1 changed"
"$BLKCTL" image snap unprotect rbd/c1@s && "$BLKCTL" image snap rm rbd/c1@s || fail "c1@s rm"
"$BLKCTL" image rm rbd/c1 || fail "rm c1"
[ -z "$("$BLKCTL" image children rbd/gold@base)" ] || fail "c1 still listed as a child"
"$BLKCTL" image snap unprotect rbd/gold@base && "$BLKCTL" image snap rm rbd/gold@base || fail "base rm"
"$BLKCTL" image rm rbd/gold || fail "rm gold"
left=$("$BLKCTL" object ls rbd | grep -v '^blk_directory$' || true)
[ -z "$left" ] || fail "objects left: $left"
for i in 0 1 2; do stop_osd $i; done
echo PASS
