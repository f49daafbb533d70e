#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A resize made through another handle reaches open handles (libblk's
# header watch, image_refresh_interval 500ms here; docs/images.md):
#  1. connection A to a read-only blk-nbd sees rbd/r at 8 MiB;
#  2. blkctl image resize to 16 MiB; a read-write blk-nbd writes a pattern
#     at 12 MiB (past A's old end) and disconnects (lock released);
#  3. A (libnbd strict bounds off, since NBD cannot announce a new size)
#     reads the pattern at 12 MiB within 5 s; a new connection sees 16 MiB;
#  4. blkctl image resize --allow-shrink to 4 MiB: within 5 s A's read at
#     6 MiB fails with EINVAL while a read at 0 still works; a new
#     connection sees 4 MiB;
#  5. blkctl image resize while a read-write blk-nbd serves the image to
#     connection B fails at once with exit 16 ("in use": resize takes the
#     lock exclusively rather than make the server hand it over, which
#     would fail B's writes), and B keeps writing; once B has left (the
#     export closed, lock released) the resize works and a new connection
#     sees the new size.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
nbd_cluster
cat >>"$BLK_CONF" <<CONF
[global]
image_refresh_interval = 500ms
CONF
"$BLKCTL" image create rbd/r --size 8M >/dev/null || fail "create"
PRO=$(nbd_port)
start_nbd ro --listen 127.0.0.1:$PRO --read-only
PRW=$(nbd_port)
start_nbd rw --listen 127.0.0.1:$PRW
export BLKCTL PRO PRW
timeout 120 python3 - <<'PY' || fail "resize visibility"
import errno, os, subprocess, sys, time
import nbd

M = 1 << 20
RO = "nbd://127.0.0.1:%s/rbd/r" % os.environ["PRO"]
RW = "nbd://127.0.0.1:%s/rbd/r" % os.environ["PRW"]

def blkctl(*args):
    subprocess.run([os.environ["BLKCTL"], *args], check=True)

def size_of(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    s = h.get_size()
    h.shutdown()
    return s

a = nbd.NBD()
a.connect_uri(RO)
assert a.get_size() == 8 * M, a.get_size()
a.set_strict_mode(0)          # let A ask past the size it was told
print("ok: A sees 8 MiB")

blkctl("image", "resize", "rbd/r", "--size", "16M")
w = nbd.NBD()
w.connect_uri(RW)
assert w.get_size() == 16 * M, w.get_size()
pat = bytes((i * 7 + 3) & 0xFF for i in range(4096))
w.pwrite(pat, 12 * M)
w.flush()
w.shutdown()
print("ok: grown to 16 MiB, pattern written at 12 MiB")

t0 = time.time()
while True:
    try:
        got = a.pread(4096, 12 * M)
        break
    except nbd.Error as e:
        if e.errno not in ("EINVAL", errno.EINVAL) or time.time() - t0 > 5:
            sys.exit("A: read at 12 MiB: %s after %.1f s" % (e, time.time() - t0))
        time.sleep(0.1)
assert got == pat, "A read other data at 12 MiB"
print("ok: A reads the pattern past its old end after %.2f s" % (time.time() - t0))
assert size_of(RO) == 16 * M
print("ok: a new connection sees 16 MiB")

blkctl("image", "resize", "rbd/r", "--size", "4M", "--allow-shrink")
t0 = time.time()
while True:
    try:
        a.pread(4096, 6 * M)
    except nbd.Error as e:
        if e.errno not in ("EINVAL", errno.EINVAL):
            sys.exit("A: read past the new end: %s (want EINVAL)" % e)
        break
    if time.time() - t0 > 5:
        sys.exit("A still reads at 6 MiB 5 s after the shrink")
    time.sleep(0.1)
print("ok: A's read past the new end fails with EINVAL after %.2f s" % (time.time() - t0))
a.pread(4096, 0)
assert size_of(RO) == 4 * M
print("ok: A still reads at 0; a new connection sees 4 MiB")
a.shutdown()

b = nbd.NBD()
b.connect_uri(RW)
assert b.get_size() == 4 * M, b.get_size()
b.pwrite(b"B" * 4096, 0)
b.flush()
r = subprocess.run([os.environ["BLKCTL"], "image", "resize", "rbd/r", "--size", "12M"],
                   capture_output=True, text=True)
if r.returncode != 16 or "in use" not in r.stderr:
    sys.exit("resize under a writer: exit %d: %s" % (r.returncode, r.stderr))
print("ok: resize under a read-write export refused: %s" % r.stderr.strip())
b.pwrite(b"b" * 4096, 4096)
b.flush()
assert b.pread(4096, 4096) == b"b" * 4096
b.shutdown()
print("ok: B still writes")
t0 = time.time()
while True:   # the export closes (and unlocks) once B is gone
    r = subprocess.run([os.environ["BLKCTL"], "image", "resize", "rbd/r", "--size", "12M"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        break
    if time.time() - t0 > 10:
        sys.exit("resize after B left: exit %d: %s" % (r.returncode, r.stderr))
    time.sleep(0.2)
n = nbd.NBD()
n.connect_uri(RW)
assert n.get_size() == 12 * M, n.get_size()
n.pwrite(b"N" * 4096, 8 * M)
n.flush()
assert n.pread(4096, 8 * M) == b"N" * 4096
assert n.pread(4096, 0) == b"B" * 4096
n.shutdown()
print("ok: after B left, resized to 12 MiB; a new connection sees it and writes at 8 MiB")
PY
kill -TERM $NBDPID_ro; wait $NBDPID_ro || fail "ro exit status"
kill -TERM $NBDPID_rw; wait $NBDPID_rw || fail "rw exit status"
echo PASS
