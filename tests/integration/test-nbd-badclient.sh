#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blk-nbd against bad and unusual clients, over raw sockets (no client
# library in the way): unknown client flags, bad magics, unknown, malformed
# and oversized options, options out of order, past-end and oversized
# requests, unknown commands and flags, a refused WRITE whose payload must
# be skipped to stay in sync, 200 pipelined requests, structured error
# chunks, disconnects mid-header and mid-payload, NBD_OPT_ABORT.  Each gets
# the specified error reply or a closed connection; afterwards the server
# is alive and every acknowledged write reads back.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
nbd_cluster
"$BLKCTL" image create rbd/bad --size 16M >/dev/null || fail "create"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P --pool rbd
/usr/bin/python3 - 127.0.0.1 $P <<'PY' || fail "bad-client script"
import socket, struct, sys, os, time
HOST, PORT = sys.argv[1], int(sys.argv[2])
IHAVEOPT = 0x49484156454f5054
REP_MAGIC = 0x3e889045565a9
SIZE = 16 << 20
def recvn(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError('closed after %d of %d bytes' % (len(b), n))
        b += c
    return b
def closed(s, timeout=5):
    s.settimeout(timeout)
    try:
        while True:
            c = s.recv(65536)
            if not c: return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
def connect(cflags=3):
    s = socket.create_connection((HOST, PORT))
    g = recvn(s, 18)
    assert g[:8] == b'NBDMAGIC' and struct.unpack('>Q', g[8:16])[0] == IHAVEOPT, g
    assert struct.unpack('>H', g[16:])[0] == 3
    s.sendall(struct.pack('>I', cflags))
    return s
def opt(s, o, data=b''):
    s.sendall(struct.pack('>QII', IHAVEOPT, o, len(data)) + data)
def reply(s):
    m, o, t, l = struct.unpack('>QIII', recvn(s, 20))
    assert m == REP_MAGIC, hex(m)
    return o, t, recvn(s, l)
ERR = lambda n: (1 << 31) | n
def name(n): return struct.pack('>I', len(n)) + n
def go(s, n=b'rbd/bad', reqs=()):
    opt(s, 7, name(n) + struct.pack('>H', len(reqs)) + b''.join(struct.pack('>H', r) for r in reqs))
    while True:
        o, t, d = reply(s)
        if t != 3: return t, d
def req(s, t, off=0, ln=0, flags=0, cookie=1, payload=b''):
    s.sendall(struct.pack('>IHHQQI', 0x25609513, flags, t, cookie, off, ln) + payload)
def simple(s):
    m, e, c = struct.unpack('>IIQ', recvn(s, 16))
    assert m == 0x67446698, hex(m)
    return e, c
def ok(msg): print('ok:', msg, flush=True)

# unknown client flags -> close
s = connect(cflags=0x80); assert closed(s); ok('unknown client flags close')
# bad option magic -> close
s = connect(); s.sendall(struct.pack('>QII', 0x1234, 3, 0)); assert closed(s); ok('bad option magic closes')
# unknown / malformed / oversized options get errors and the stream stays in sync
s = connect()
opt(s, 99, b'hello'); o, t, d = reply(s); assert (o, t) == (99, ERR(1)), (o, t)
opt(s, 3, b'xx'); o, t, d = reply(s); assert t == ERR(3), t
big = 1 << 20
opt(s, 6, b'\0' * big); o, t, d = reply(s); assert t == ERR(9), t
opt(s, 6, b'\0\0\0\x50abc'); o, t, d = reply(s); assert t == ERR(3), t      # name longer than data
opt(s, 10, name(b'rbd/bad') + struct.pack('>I', 0)); o, t, d = reply(s); assert t == ERR(3), t  # before STRUCTURED_REPLY
opt(s, 8, b'x'); o, t, d = reply(s); assert t == ERR(3), t
opt(s, 5); o, t, d = reply(s); assert t == ERR(1), t                           # STARTTLS: not configured
t, d = go(s, b'rbd/nosuch'); assert t == ERR(6), (t, d); assert b'nosuch' in d
t, d = go(s, b'noslash'); assert t == ERR(6), t
t, d = go(s, b''); assert t == ERR(6), t                                        # no default export
opt(s, 3); names = []
while True:
    o, t, d = reply(s)
    if t == 1: break
    assert t == 2; names.append(d[4:])
assert names == [b'rbd/bad'], names
opt(s, 2); o, t, d = reply(s); assert t == 1; assert closed(s)
ok('unknown/malformed/oversized options answered, LIST, ABORT')
# EXPORT_NAME of a missing export: no reply possible, close
s = connect(); opt(s, 1, b'rbd/nosuch'); assert closed(s); ok('EXPORT_NAME unknown closes')
# EXPORT_NAME success without NO_ZEROES gets the 124 zero bytes
s = connect(cflags=1); opt(s, 1, b'rbd/bad'); d = recvn(s, 134)
assert struct.unpack('>Q', d[:8])[0] == SIZE and d[10:] == bytes(124)
req(s, 2); assert closed(s); ok('EXPORT_NAME with zeroes, DISC')

# transmission, simple replies
s = connect(); t, d = go(s); assert t == 1, t
req(s, 0, SIZE - 512, 1024, cookie=11); assert simple(s) == (22, 11)           # read past end
req(s, 1, SIZE - 512, 1024, cookie=12, payload=b'z' * 1024); assert simple(s) == (28, 12)  # write past end
req(s, 1, 0, 64 << 20, cookie=13, payload=b'q' * (64 << 20)); assert simple(s) == (22, 13)  # oversized write skipped
req(s, 42, cookie=14); assert simple(s) == (22, 14)                             # unknown command
req(s, 0, 0, 512, flags=0x80, cookie=15); assert simple(s) == (22, 15)          # unknown flag
req(s, 0, 0, 512, flags=4, cookie=16); assert simple(s) == (22, 16)             # DF without structured
req(s, 7, 0, 4096, cookie=17); assert simple(s) == (22, 17)                     # block status without context
req(s, 3, 0, 5, cookie=18); assert simple(s) == (22, 18)                        # flush with a length
req(s, 4, (1 << 64) - 512, 1024, cookie=19); assert simple(s) == (28, 19)       # trim wrapping around
pat = os.urandom(4096)
req(s, 1, 8192, 4096, flags=1, cookie=20, payload=pat); assert simple(s) == (0, 20)
req(s, 0, 8192, 4096, cookie=21); assert simple(s) == (0, 21); assert recvn(s, 4096) == pat
ok('past-end, oversized, unknown command/flag requests refused; stream in sync')
# 200 pipelined requests, replies matched by cookie
blocks = {i: os.urandom(4096) for i in range(100)}
buf = b''
for i in range(100):
    buf += struct.pack('>IHHQQI', 0x25609513, 0, 1, 1000 + i, (1 << 20) + i * 4096, 4096) + blocks[i]
s.sendall(buf)
got = set()
for _ in range(100):
    e, c = simple(s); assert e == 0; got.add(c)
assert got == set(range(1000, 1100))
s.sendall(b''.join(struct.pack('>IHHQQI', 0x25609513, 0, 0, 2000 + i, (1 << 20) + i * 4096, 4096) for i in range(100)))
for _ in range(100):
    e, c = simple(s); assert e == 0
    assert recvn(s, 4096) == blocks[c - 2000], c
ok('200 pipelined requests')
# bad request magic -> close
s.sendall(struct.pack('>IHHQQI', 0xdeadbeef, 0, 0, 1, 0, 512)); assert closed(s); ok('bad request magic closes')

# structured replies: errors on READ come as error chunks
s = connect(); opt(s, 8); assert reply(s)[1] == 1
t, d = go(s); assert t == 1
req(s, 0, SIZE, 512, cookie=31)
m, fl, ty, c, l = struct.unpack('>IHHQI', recvn(s, 20)); pl = recvn(s, l)
assert (m, fl, ty, c) == (0x668e33ef, 1, (1 << 15) | 1, 31), (hex(m), fl, ty, c)
assert struct.unpack('>I', pl[:4])[0] == 22
req(s, 0, 8192, 4096, cookie=32)
m, fl, ty, c, l = struct.unpack('>IHHQI', recvn(s, 20)); pl = recvn(s, l)
assert (fl, ty, c, l) == (1, 1, 32, 4104) and pl[8:] == pat
req(s, 2); assert closed(s)
ok('structured error chunk and data chunk')

# disconnects mid-header and mid-payload, half frames, idle closes
for cut in (5, 27, 28 + 100):
    s = connect(); t, d = go(s); assert t == 1
    frame = struct.pack('>IHHQQI', 0x25609513, 0, 1, 77, 0, 4096) + b'\xee' * 4096
    s.sendall(frame[:cut]); s.close()
s = connect(); s.sendall(struct.pack('>QI', IHAVEOPT, 7)); s.close()            # half option header
s = socket.create_connection((HOST, PORT)); s.close()                           # before the flags
# writes in flight when the client vanishes
s = connect(); t, d = go(s); assert t == 1
s.sendall(b''.join(struct.pack('>IHHQQI', 0x25609513, 0, 1, i, (4 << 20) + i * 65536, 65536) + b'\x5a' * 65536 for i in range(32)))
s.close()
time.sleep(1)
ok('disconnects mid-request')
# the server is alive and acknowledged data is intact
s = connect(); t, d = go(s); assert t == 1
req(s, 0, 8192, 4096, cookie=41); assert simple(s) == (0, 41); assert recvn(s, 4096) == pat
req(s, 0, (1 << 20) + 99 * 4096, 4096, cookie=42); assert simple(s) == (0, 42); assert recvn(s, 4096) == blocks[99]
req(s, 2); assert closed(s)
ok('server alive, acknowledged writes intact')
PY
kill -0 "$NBDPID_main" || fail "blk-nbd died"
kill -TERM "$NBDPID_main"; wait "$NBDPID_main" || fail "blk-nbd exit status $?"
grep -q "stopped" "$TEST_DIR/log/nbd.main.log" || fail "no clean stop"
echo PASS
