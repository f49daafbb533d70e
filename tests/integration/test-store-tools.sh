#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# blk-osd's store tools: mkfs refuses a formatted device without --force,
# fsck passes on a fresh and a benchmarked store, fails (exit 1) when the
# data area is corrupted (--deep) and on a bad superblock, never crashes.
set -u
OSD=$1
dir=$(mktemp -d /tmp/blkstore-tools.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
dev=$dir/dev
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() { want=$1; shift; "$@" >"$dir/out" 2>&1; rc=$?
  [ "$rc" = "$want" ] || { cat "$dir/out"; fail "$* exited $rc, wanted $want"; }; }

expect_rc 0 "$OSD" --mkfs --device "$dev" --osd-id 3 --size 64M --journal-size 4M
expect_rc 1 "$OSD" --mkfs --device "$dev" --osd-id 3
grep -q "already holds a store" "$dir/out" || fail "no clear refusal message"
expect_rc 0 "$OSD" --mkfs --device "$dev" --osd-id 3 --force
expect_rc 0 "$OSD" --fsck --device "$dev"
expect_rc 0 "$OSD" --bench --device "$dev" --bench-time 0.2 --bench-size 16M
expect_rc 0 "$OSD" --fsck --deep --device "$dev"
# only sequential 1 MiB writes (direct, allocated from the first block on)
expect_rc 0 "$OSD" --mkfs --device "$dev" --osd-id 3 --force --journal-size 4M
expect_rc 0 "$OSD" --bench --device "$dev" --bench-time 0.2 --bench-size 16M \
  --bench-only seqwrite --bench-settle 0
# corrupt a data block that the benchmark wrote (start of the data area)
off=$(( (4096 + 4*1024*1024 + 65535) / 65536 * 65536 + 1000 ))
printf 'XXXXXXXX' | dd of="$dev" bs=1 seek=$off conv=notrunc status=none
expect_rc 0 "$OSD" --fsck --device "$dev"
expect_rc 1 "$OSD" --fsck --deep --device "$dev"
grep -q "checksum mismatch" "$dir/out" || fail "deep fsck did not report the mismatch"
# bad superblock / not a store / missing metadata: clear errors, exit 1
printf 'Z' | dd of="$dev" bs=1 seek=200 conv=notrunc status=none
expect_rc 1 "$OSD" --fsck --device "$dev"
grep -q "superblock checksum mismatch" "$dir/out" || fail "no superblock message"
head -c 1048576 /dev/zero > "$dir/zero"
expect_rc 1 "$OSD" --fsck --device "$dir/zero" --data "$dir/none"
grep -q "no store superblock" "$dir/out" || fail "no 'not a store' message"
expect_rc 1 "$OSD" --fsck --device "$dir/missing"
expect_rc 2 "$OSD" --bogus
echo PASS
