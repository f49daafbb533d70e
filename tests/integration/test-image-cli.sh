#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blkctl image through libblk on a real cluster (3 monitors, 3 OSDs, pool
# size 3): create / ls / info / resize / rename / du / rm, I/O round trip
# through import/export of a small file, and every error path with its
# message and exit code (2 ENOENT, 16 EBUSY, 17 EEXIST, 22 EINVAL).
source "$(dirname "$0")/../functions.sh"
requires python3 cmp
rbd_cluster


"$BLKCTL" image create rbd/one --size 64M || fail "create"
"$BLKCTL" image create rbd/two --size 10M --object-size 1M || fail "create with object size"
[ "$("$BLKCTL" image ls rbd | tr '\n' ' ')" = "one two " ] || fail "ls: $("$BLKCTL" image ls rbd)"
[ "$("$BLKCTL" --format json image ls rbd)" = '["one","two"]' ] || fail "ls json"
"$BLKCTL" image info rbd/two | grep -q "size 10 MiB (10485760 bytes) in 10 objects" || fail "info"
"$BLKCTL" --format json image info rbd/two | grep -q '"order":20' || fail "info json"

# errors
expect 2 "no such pool 'nopool'" -- image ls nopool
expect 2 "no image 'nosuch' in pool 'rbd'" -- image info rbd/nosuch
expect 2 "no image 'nosuch' in pool 'rbd'" -- image rm rbd/nosuch
expect 17 "image 'one' already exists" -- image create rbd/one --size 1M
expect 22 "bad --size 'abc'" -- image create rbd/x --size abc
expect 22 "--size must be greater than zero" -- image create rbd/x --size 0
expect 22 "--size is required" -- image create rbd/x
expect 22 "object-size must be a power of two" -- image create rbd/x --size 1M --object-size 3M
expect 22 "bad image spec 'noslash'" -- image create noslash --size 1M
expect 22 "deletes data: pass --allow-shrink" -- image resize rbd/one --size 1M
expect 22 "unknown image command 'frob'" -- image frob
expect 17 "image 'two' already exists" -- image rename rbd/one two
"$BLKCTL" image ls rbd | grep -q '^x$' && fail "a failed create left an image"

# import / export round trip with holes, du, resize, rename, rm
python3 - "$TEST_DIR/in.img" <<'PY'
import sys, os
with open(sys.argv[1], "wb") as f:
    f.truncate(40 << 20)
    for off in (0, 5 << 20, (13 << 20) + 4095, (40 << 20) - 1000):
        f.seek(off); f.write(os.urandom(1000))
PY
"$BLKCTL" image import "$TEST_DIR/in.img" rbd/imp --object-size 1M || fail "import"
"$BLKCTL" image export rbd/imp "$TEST_DIR/out.img" || fail "export"
cmp "$TEST_DIR/in.img" "$TEST_DIR/out.img" || fail "export differs from import"
used=$("$BLKCTL" --format json image du rbd/imp | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["used_size"])')
echo "du used=$used"
[ "$used" -gt 0 ] && [ "$used" -le $((5 << 20)) ] || fail "du used $used not thin"
"$BLKCTL" image resize rbd/imp --size 6M --allow-shrink || fail "shrink"
"$BLKCTL" image resize rbd/imp --size 40M || fail "grow"
"$BLKCTL" image export rbd/imp "$TEST_DIR/out2.img" || fail "export after resize"
python3 - "$TEST_DIR/in.img" "$TEST_DIR/out2.img" <<'PY'
import sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
assert len(b) == 40 << 20, len(b)
assert b[:6 << 20] == a[:6 << 20], "kept range differs"
assert b[6 << 20:] == bytes(len(b) - (6 << 20)), "grown range is not zeroes"
PY
"$BLKCTL" image rename rbd/imp imp2 || fail "rename"
"$BLKCTL" image info rbd/imp2 >/dev/null || fail "renamed image missing"
expect 2 "no image 'imp'" -- image info rbd/imp
"$BLKCTL" image rm rbd/imp2 || fail "rm"
"$BLKCTL" image rm rbd/one || fail "rm one"
"$BLKCTL" image rm rbd/two || fail "rm two"
[ -z "$("$BLKCTL" image ls rbd)" ] || fail "images left: $("$BLKCTL" image ls rbd)"
left=$("$BLKCTL" object ls rbd | grep -c '^blk_data\|^blk_header' || true)
[ "$left" -eq 0 ] || fail "$left data/header objects left after rm"
for i in 0 1 2; do stop_osd $i; done
echo PASS
