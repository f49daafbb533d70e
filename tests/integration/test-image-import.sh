#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sparse-aware import/export: a 1 GiB sparse file with scattered data
# (some across object boundaries) is imported and exported again; the
# copy is identical (cmp) and keeps its holes (the same SEEK_DATA extents
# as the original), and the image is thin (du).  Then the same
# through NBD URIs (nbdkit memory plugin): export to nbd+unix://, import
# back from it, compare.
source "$(dirname "$0")/../functions.sh"
requires python3 cmp
rbd_cluster

IN=$TEST_DIR/in.raw
python3 - "$IN" <<'PY'
import os, random, sys
random.seed(5)
with open(sys.argv[1], "wb") as f:
    f.truncate(1 << 30)
    spots = [0, (4 << 20) - 8192, (512 << 20) + 12345, (1 << 30) - 65536]
    spots += [random.randrange(0, (1 << 30) - (1 << 20)) & ~4095 for _ in range(24)]
    for off in spots:
        f.seek(off)
        f.write(os.urandom(random.choice([4096, 16384, 65536, 300000])))
PY
alloc() { echo $(( $(stat -c %b "$1") * $(stat -c %B "$1") )); }
echo "input: $(stat -c %s "$IN") bytes, $(alloc "$IN") allocated"
t0=$(ms_now)
"$BLKCTL" image import "$IN" rbd/sparse || fail "import"
t1=$(ms_now)
"$BLKCTL" image export rbd/sparse "$TEST_DIR/out.raw" || fail "export"
t2=$(ms_now)
echo "import $((t1 - t0)) ms, export $((t2 - t1)) ms"
cmp "$IN" "$TEST_DIR/out.raw" || fail "exported copy differs"
echo "output: $(stat -c %s "$TEST_DIR/out.raw") bytes, $(alloc "$TEST_DIR/out.raw") allocated"
# the same data extents (SEEK_DATA/SEEK_HOLE) as the original: holes kept
python3 - "$IN" "$TEST_DIR/out.raw" <<'PY' || fail "export filled holes"
import os, sys
def extents(p):
    fd = os.open(p, os.O_RDONLY); out = []; off = 0; size = os.fstat(fd).st_size
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE); out.append((d, h)); off = h
    return out
a, b = extents(sys.argv[1]), extents(sys.argv[2])
print("data extents: input %d, output %d" % (len(a), len(b)))
sys.exit(0 if a == b else 1)
PY
[ "$(alloc "$TEST_DIR/out.raw")" -le $(( $(alloc "$IN") + 65536 )) ] || fail "export allocated more"
"$BLKCTL" image info rbd/sparse | grep -q "size 1 GiB (1073741824 bytes)" || fail "image size"
used=$("$BLKCTL" --format json image du rbd/sparse | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["used_size"])')
echo "du: used $used of 1073741824"
[ "$used" -le "$(alloc "$IN")" ] || fail "image not thin: $used used"

if command -v nbdkit >/dev/null; then
  SOCK=$TEST_DIR/nbd.sock
  nbdkit --exit-with-parent -f -U "$SOCK" memory 1G >>"$TEST_DIR/log/nbdkit.log" 2>&1 &
  track_pid $!
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  "$BLKCTL" image export rbd/sparse "nbd+unix:///?socket=$SOCK" || fail "export to nbd"
  "$BLKCTL" image import "nbd+unix:///?socket=$SOCK" rbd/fromnbd || fail "import from nbd"
  "$BLKCTL" image export rbd/fromnbd "$TEST_DIR/out2.raw" || fail "export of the nbd import"
  cmp "$IN" "$TEST_DIR/out2.raw" || fail "nbd round trip differs"
  echo "ok: nbd round trip"
else
  echo "nbdkit not installed: NBD part skipped"
fi
"$BLKCTL" image rm rbd/sparse
for i in 0 1 2; do stop_osd $i; done
echo PASS
