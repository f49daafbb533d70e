#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libblk's library-thread API (blk_cluster_call, blk_cluster_event_base,
# blk_cluster_on_loop) and the direct path of aio calls made on the
# library thread (3 monitors, 3 OSDs): libblk-loop chains QD1 writes and
# reads from callbacks, checks that no callback runs inside its aio call,
# that sync calls there fail with EDEADLK, that a timer on libblk's event
# base fires there, and that a call queued before shutdown runs once.
# blk-nbd relies on all of it (docs/nbd.md "Threads").
source "$(dirname "$0")/../functions.sh"
LOOP=$BLK_BUILD_DIR/tests/integration/libblk-loop
[ -x "$LOOP" ] || fail "libblk-loop not built ($LOOP)"
rbd_cluster
"$BLKCTL" image create rbd/loop --size 16M >/dev/null || fail "image create"
# the driver's stderr goes to log/ so that sanitizer reports fail the test
"$LOOP" rbd loop 2>"$TEST_DIR/log/libblk-loop.log" || {
  cat "$TEST_DIR/log/libblk-loop.log"; fail "libblk-loop"; }
# what the chain wrote is what another client reads (blkctl)
"$BLKCTL" image export rbd/loop "$TEST_DIR/loop.raw" >/dev/null 2>&1 ||
  fail "image export"
python3 - "$TEST_DIR/loop.raw" <<'PY' || fail "data written on the library thread"
import sys
d = open(sys.argv[1], "rb").read()
for i in range(200):
    want = bytes((i * 7 + k) & 0xff for k in range(4096))
    assert d[i * 4096:(i + 1) * 4096] == want, i
PY
echo "ok: libblk's library-thread API"
