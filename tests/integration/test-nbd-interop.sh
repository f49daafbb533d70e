#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blk-nbd with real NBD clients on a 3-OSD cluster, over TCP and a unix
# socket: nbdinfo (size, flags, --list, --map against what was written),
# qemu-img info/convert/compare both ways over nbd:// and nbd+unix://,
# qemu-io pattern writes/reads/discards/write_zeroes verified, nbdcopy
# both ways with checksums and with 4 connections (multi-conn), nbdsh
# TRIM/ZERO/BLOCK_STATUS/FLUSH/CACHE, structured reads with hole chunks
# (--read-holes scan and map) and DF, a simple-reply client with 256
# requests in flight, nbd-client -l listing, socket mode.
# ASan builds on a shared 2-core machine need more than the default 300 s
: "${BLK_TEST_TIMEOUT:=540}"; export BLK_TEST_TIMEOUT
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
requires nbdcopy sha256sum
nbd_cluster
"$BLKCTL" image create rbd/a --size 64M >/dev/null || fail "create a"
"$BLKCTL" image create rbd/b --size 64M >/dev/null || fail "create b"
"$BLKCTL" image create rbd/c --size 64M >/dev/null || fail "create c"
P=$(nbd_port)
SOCK=$TEST_DIR/nbd.sock
start_nbd main --listen 127.0.0.1:$P --socket "$SOCK" --socket-mode 0660 --pool rbd
U=nbd://127.0.0.1:$P
PM=$(nbd_port)
start_nbd map --listen 127.0.0.1:$PM --read-holes map --pool rbd
UMAP=nbd://127.0.0.1:$PM
X="nbd+unix:///rbd/a?socket=$SOCK"

# ---- socket mode and listing
[ "$(stat -c %a "$SOCK")" = 660 ] || fail "socket mode $(stat -c %a "$SOCK"), want 660"
nbdinfo --list --json "$U" | python3 -c '
import json,sys
names=sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])
assert names==["rbd/a","rbd/b","rbd/c"], names' || fail "nbdinfo --list"
if command -v nbd-client >/dev/null; then
  out=$(nbd-client -l 127.0.0.1 $P 2>&1) || fail "nbd-client -l: $out"
  grep -q "^rbd/b$" <<<"$out" || fail "nbd-client -l: $out"
  echo "ok: nbd-client -l lists the exports"
fi
# no --pool: every pool of the map, filtered by what the key may read
"$BLKCTL" pool create other 8 --failure-domain osd >/dev/null || fail "pool create other"
"$BLKCTL" image create other/z --size 16M >/dev/null || fail "create other/z"
PA=$(nbd_port)
start_nbd all --listen 127.0.0.1:$PA
nbdinfo --list --json "nbd://127.0.0.1:$PA" | python3 -c '
import json,sys
names=sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])
assert names==["other/z","rbd/a","rbd/b","rbd/c"], names' || fail "nbdinfo --list without --pool"
"$BLKCTL" auth get-or-create client.rbdonly mon 'allow r' osd 'allow rwx pool=rbd' \
  -o "$TEST_DIR/rbdonly.keyring" || fail "key client.rbdonly"
PR=$(nbd_port)
start_nbd rbdonly --id rbdonly --keyring "$TEST_DIR/rbdonly.keyring" --listen 127.0.0.1:$PR
nbdinfo --list --json "nbd://127.0.0.1:$PR" | python3 -c '
import json,sys
names=sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])
assert names==["rbd/a","rbd/b","rbd/c"], names' || fail "listing not filtered by the key's caps"
nbdinfo "nbd://127.0.0.1:$PR/other/z" >/dev/null 2>&1 && fail "a key without caps on pool other was served other/z"
kill "$(eval echo \$NBDPID_all)" "$(eval echo \$NBDPID_rbdonly)" 2>/dev/null
echo "ok: listing covers every pool and follows the key's caps"

# ---- nbdinfo: size, flags
nbdinfo --json "$U/rbd/a" >"$TEST_DIR/info.json"
python3 - "$TEST_DIR/info.json" <<'PY' || fail "nbdinfo flags"
import json,sys
e=json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"]==64<<20, e
for k in ("can_flush","can_fua","can_trim","can_zero","can_multi_conn","can_cache","can_fast_zero","can_df"):
    assert e[k] is True, (k, e)
assert e["is_read_only"] is False
assert "base:allocation" in e["contexts"], e
assert e["block_size_maximum"]==32<<20
PY
echo "ok: nbdinfo size and flags"

# ---- qemu-io over TCP: pattern I/O, discard, write_zeroes
qemu-io -f raw "$U/rbd/a" \
  -c "write -P 0x11 0 4M" -c "write -P 0x22 8M 64k" -c "write -P 0x33 10498105 7777" \
  -c "write -z 1M 1M" -c "discard 2M 1M" -c "write -z -u 16M 4M" \
  -c "read -P 0x11 0 1M" -c "read -P 0 1M 2M" -c "read -P 0x11 3M 1M" \
  -c "read -P 0x22 8M 64k" -c "read -P 0x33 10498105 7777" -c "read -P 0 20M 1M" \
  -c "flush" >"$TEST_DIR/qemu-io.out" 2>&1 || { cat "$TEST_DIR/qemu-io.out"; fail "qemu-io"; }
grep -qi "pattern verification failed\|error" "$TEST_DIR/qemu-io.out" && { cat "$TEST_DIR/qemu-io.out"; fail "qemu-io verify"; }
echo "ok: qemu-io writes/reads/discards/write_zeroes verified"

# ---- nbdinfo --map matches what was written (data at 0..1M, 3M..4M, 8M+64k, 10M+12345)
nbdinfo --map --json "$U/rbd/a" >"$TEST_DIR/map.json"
python3 - "$TEST_DIR/map.json" <<'PY' || { cat "$TEST_DIR/map.json"; fail "--map"; }
import json,sys
m=json.load(open(sys.argv[1]))
def state(off):
    for e in m:
        if e["offset"]<=off<e["offset"]+e["length"]: return e["type"]
    raise SystemExit("offset %d not covered"%off)
assert sum(e["length"] for e in m)==64<<20
for off in (0, 3<<20, 8<<20):
    assert state(off)&1==0, ("data expected", off, state(off))
for off in (30<<20, 60<<20):
    assert state(off)==3, ("hole expected", off, state(off))
PY
echo "ok: nbdinfo --map"

# ---- qemu-img: convert in over unix socket, compare, convert out over TCP
python3 - "$TEST_DIR/src.img" <<'PY'
import os,sys
with open(sys.argv[1],"wb") as f:
    f.truncate(64<<20)
    for off in (0, 5<<20, (13<<20)+4095, (64<<20)-10000):
        f.seek(off); f.write(os.urandom(8000))
PY
out=$(qemu-img info "nbd+unix:///rbd/b?socket=$SOCK") || fail "qemu-img info"
grep -q "virtual size: 64 MiB" <<<"$out" || fail "qemu-img info: $out"
qemu-img convert -n -f raw -O raw "$TEST_DIR/src.img" "nbd+unix:///rbd/b?socket=$SOCK" || fail "qemu-img convert in"
qemu-img compare -f raw -F raw "$TEST_DIR/src.img" "$U/rbd/b" || fail "qemu-img compare"
qemu-img convert -f raw -O raw "$U/rbd/b" "$TEST_DIR/back.img" || fail "qemu-img convert out"
cmp "$TEST_DIR/src.img" "$TEST_DIR/back.img" || fail "round trip differs"
echo "ok: qemu-img info/convert/compare round trip"

# ---- nbdcopy both ways, 4 connections (multi-conn), checksums
head -c $((64<<20)) /dev/urandom >"$TEST_DIR/rand.img"
nbdcopy --connections=4 --requests=16 "$TEST_DIR/rand.img" "$U/rbd/c" || fail "nbdcopy in"
nbdcopy --connections=4 "$X" "$TEST_DIR/a.out" || fail "nbdcopy out (unix)"
nbdcopy --connections=4 "$U/rbd/c" "$TEST_DIR/c.out" || fail "nbdcopy out"
[ "$(sha256sum <"$TEST_DIR/rand.img")" = "$(sha256sum <"$TEST_DIR/c.out")" ] || fail "nbdcopy checksum"
qemu-img compare -f raw -F raw "$TEST_DIR/a.out" "$U/rbd/a" || fail "nbdcopy of a differs"
echo "ok: nbdcopy both ways with 4 connections, checksums match"

# ---- nbdsh: TRIM / ZERO / BLOCK_STATUS / FLUSH / CACHE / FUA, multi-conn visibility
nbdsh -c "
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION); h.connect_uri('$U/rbd/c')
h2 = nbd.NBD(); h2.connect_uri('$U/rbd/c')
assert h.can_multi_conn() and h.get_structured_replies_negotiated()
buf = b'\xab' * 65536
h.pwrite(buf, 4 << 20, nbd.CMD_FLAG_FUA)
assert h2.pread(65536, 4 << 20) == buf          # acked on h, visible on h2
h.trim(8 << 20, 8 << 20); h.flush()
h.zero(1 << 20, 16 << 20)
assert h2.pread(4096, 16 << 20) == bytes(4096)
h.zero(65536, 40 << 20, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(65536, 40 << 20) == bytes(65536)
h.cache(1 << 20, 0)
ents = []
def cb(meta, off, e, err):
    ents.extend(zip(e[0::2], e[1::2]))
h.block_status(64 << 20, 0, cb)
assert sum(l for l, s in ents) == 64 << 20, ents
h.block_status(1 << 20, 0, lambda *a: None, nbd.CMD_FLAG_REQ_ONE)
h.pwrite(b'x' * 512, 60 << 20)
h2.flush()
try:
    h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE); raise SystemExit('fast zero with NO_HOLE succeeded')
except nbd.Error as e:
    assert e.errno == 'ENOTSUP', e
h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)
h2.shutdown(); h.shutdown()
# structured READ: hole chunks over unallocated ranges, data elsewhere (rbd/a)
for holes in ('scan', 'map'):
    a = nbd.NBD(); a.connect_uri('$U/rbd/a' if holes == 'scan' else '$UMAP/rbd/a')
    kinds = []
    def chunk(buf, off, status, err):
        kinds.append((status, off, len(buf)))
        return 0
    got = a.pread_structured(2 << 20, 3 << 20, chunk)        # 1M data + 1M zero
    assert got == b'\x11' * (1 << 20) + bytes(1 << 20), holes
    assert (nbd.READ_DATA, 3 << 20, 1 << 20) in kinds and (nbd.READ_HOLE, 4 << 20, 1 << 20) in kinds, (holes, kinds)
    kinds.clear()
    a.pread_structured(1 << 20, 30 << 20, chunk)
    assert kinds == [(nbd.READ_HOLE, 30 << 20, 1 << 20)], (holes, kinds)
    kinds.clear()
    a.pread_structured(1 << 20, 30 << 20, chunk, nbd.CMD_FLAG_DF)  # don't fragment: one data chunk
    assert kinds == [(nbd.READ_DATA, 30 << 20, 1 << 20)], (holes, kinds)
    a.shutdown()
print('nbdsh ok')
" || fail "nbdsh script"
echo "ok: nbdsh TRIM/ZERO/BLOCK_STATUS/FLUSH/CACHE, multi-conn visibility"

# ---- a simple-reply client (as the kernel's nbd driver): 256 requests in flight
nbdsh -c "
import os
h.set_request_structured_replies(False); h.connect_uri('$U/rbd/c')
assert not h.get_structured_replies_negotiated()
blocks = [os.urandom(4096) for _ in range(256)]
for i, b in enumerate(blocks):
    h.aio_pwrite(b, (32 << 20) + i * 8192)
while h.aio_in_flight() > 0:
    h.poll(-1)
bufs = [nbd.Buffer(4096) for _ in blocks]
for i in range(256):
    h.aio_pread(bufs[i], (32 << 20) + i * 8192)
while h.aio_in_flight() > 0:
    h.poll(-1)
for i in range(256):
    assert bufs[i].to_bytearray() == blocks[i], i
h.trim(65536, 40 << 20); h.flush()
h.shutdown()
" || fail "simple-reply client"
echo "ok: simple replies with 256 requests in flight"

# ---- read-only server
P2=$(nbd_port)
start_nbd ro --listen 127.0.0.1:$P2 --read-only rbd/c
out=$(nbdinfo --json "nbd://127.0.0.1:$P2/rbd/c") || fail "nbdinfo read-only export"
grep -q '"is_read_only": true' <<<"$out" || fail "read-only flag: $out"
out=$(qemu-io -f raw -c "write 0 4k" "nbd://127.0.0.1:$P2/rbd/c" 2>&1 || true)
grep -qi "denied\|read-only\|not permitted" <<<"$out" || fail "qemu-io wrote to a read-only export: $out"
# the server itself refuses (EPERM), not only the client
nbdsh -u "nbd://127.0.0.1:$P2/rbd/c" -c "
h.set_strict_mode(0)
for f in (lambda: h.pwrite(b'x' * 512, 0), lambda: h.trim(4096, 0), lambda: h.zero(4096, 0)):
    try:
        f(); raise SystemExit('write-like request accepted on a read-only export')
    except nbd.Error as e:
        assert e.errno == 'EPERM', e
assert h.pread(512, 0) is not None
" || fail "read-only export accepted a write"
nbdinfo "nbd://127.0.0.1:$P2/rbd/a" >/dev/null 2>&1 && fail "an unlisted export was served"
out=$(nbdinfo "nbd://127.0.0.1:$P2/") || fail "default export"
grep -q "rbd/c" <<<"$out" || fail "default export: $out"
echo "ok: read-only server, named exports only, default export"
echo PASS
