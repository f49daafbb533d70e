#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Test helper for test-auth-tamper.sh: a man in the middle on 127.0.0.1.

  auth-proxy.py proxy LISTEN_PORT TARGET_PORT --flip DIR:N:REGION [--record FILE]
      Forward every connection to 127.0.0.1:TARGET_PORT frame by frame
      (common/frame.h layout).  On each connection, frame N (0-based, after
      the banner) in direction DIR (c2s or s2c) gets one bit flipped in
      REGION: 'trailer' (the MAC / GCM tag) or 'payload' (the payload crc
      is recomputed, as an attacker would).  --record writes the client's
      first two frames of the first connection (the auth hello and proof).
  auth-proxy.py replay TARGET_PORT FILE
      Replay a recorded hello + proof on a new connection; print the
      monitor's AuthReply err (0 = accepted) and exit 0 if refused.
"""
import socket
import struct
import sys
import threading

BANNER = b"BLKSTOR\x01"
HDR = 40
F_SIGNED, F_SECURE = 0x04, 0x08

_tab = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _tab.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _tab[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf


def read_frame(s):
    h = recv_exact(s, HDR)
    flags = h[5]
    plen, dlen = struct.unpack_from("<II", h, 16)
    tlen = 16 if flags & (F_SIGNED | F_SECURE) else 0   # GMAC or GCM tag
    return h + recv_exact(s, plen + dlen + tlen)


def header_crc_fix(f):
    # crcs of the payload and of the header, like an attacker would
    f = bytearray(f)
    plen = struct.unpack_from("<I", f, 16)[0]
    struct.pack_into("<I", f, 24, crc32c(bytes(f[HDR:HDR + plen])))
    hc = crc32c(bytes(f[0:36]))
    struct.pack_into("<I", f, 36, hc)
    return bytes(f)


def tamper(f, region):
    f = bytearray(f)
    flags = f[5]
    plen, dlen = struct.unpack_from("<II", f, 16)
    tlen = 16 if flags & (F_SIGNED | F_SECURE) else 0   # GMAC or GCM tag
    if region == "trailer":
        if not tlen:
            raise SystemExit("frame has no trailer to tamper with")
        f[HDR + plen + dlen + tlen // 2] ^= 0x01
        return bytes(f)
    if plen == 0:
        raise SystemExit("frame has no payload to tamper with")
    f[HDR + plen // 2] ^= 0x10
    return header_crc_fix(f)


def pump(src, dst, direction, cfg, rec):
    n = 0
    try:
        b = recv_exact(src, len(BANNER))
        dst.sendall(b)
        while True:
            f = read_frame(src)
            if direction == cfg["dir"] and n == cfg["n"]:
                f = tamper(f, cfg["region"])
                sys.stderr.write("proxy: flipped a bit in the %s of %s frame %d (type %d)\n"
                                 % (cfg["region"], direction, n, struct.unpack_from("<H", f, 6)[0]))
                cfg["flipped"] += 1
            if rec is not None and direction == "c2s" and n < 2:
                rec.append(f)
                if n == 1 and cfg.get("record"):
                    with open(cfg["record"], "wb") as o:
                        o.write(struct.pack("<I", len(rec[0])) + rec[0] + rec[1])
                    cfg["record"] = None
            dst.sendall(f)
            n += 1
    except (EOFError, OSError):
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, target_port, flip, record):
    d, n, region = flip.split(":")
    cfg = {"dir": d, "n": int(n), "region": region, "flipped": 0, "record": record}
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        t = socket.create_connection(("127.0.0.1", target_port))
        rec = [] if cfg["record"] else None
        threading.Thread(target=pump, args=(c, t, "c2s", cfg, rec), daemon=True).start()
        threading.Thread(target=pump, args=(t, c, "s2c", cfg, None), daemon=True).start()


def replay(target_port, path):
    data = open(path, "rb").read()
    l1 = struct.unpack_from("<I", data, 0)[0]
    hello, proof = data[4:4 + l1], data[4 + l1:]
    s = socket.create_connection(("127.0.0.1", target_port))
    s.sendall(BANNER + hello)
    recv_exact(s, len(BANNER))
    read_frame(s)                      # a new challenge
    s.sendall(proof)                   # the old proof
    r = read_frame(s)
    plen = struct.unpack_from("<I", r, 16)[0]
    p = r[HDR:HDR + plen]
    err = 0
    if p[:1] == b"\x08":               # field 1 (err), varint
        v, sh, i = 0, 0, 1
        while True:
            b = p[i]
            v |= (b & 0x7F) << sh
            i += 1
            sh += 7
            if not b & 0x80:
                break
        err = v - (1 << 64) if v >= 1 << 63 else v
    print("replayed authentication: AuthReply err %d" % err)
    sys.exit(0 if err != 0 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "proxy":
        rec = sys.argv[sys.argv.index("--record") + 1] if "--record" in sys.argv else None
        proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[sys.argv.index("--flip") + 1], rec)
    elif sys.argv[1] == "replay":
        replay(int(sys.argv[2]), sys.argv[3])
