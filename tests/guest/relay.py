#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""relay.py SOCKET: copy bytes between stdin/stdout and a unix socket.

Design notes: QEMU's user-mode network runs this once per guest TCP
connection to a guestfwd address (tests/guest/lib.sh guest_boot_knbd), with
the connection on stdin/stdout; it connects to SOCKET (the NBD export) only
then, so the server's greeting reaches the guest.  Plain byte copy in both
directions until either side closes; no parsing, so the guest's NBD client
talks to the server exactly as over a direct connection.  Exits 1 with a
message on stderr if SOCKET cannot be reached.
"""
import os
import selectors
import socket
import sys


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: relay.py SOCKET\n")
        return 2
    try:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.connect(sys.argv[1])
    except OSError as e:
        sys.stderr.write("relay: cannot connect to %s: %s\n" % (sys.argv[1], e))
        return 1
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(srv, selectors.EVENT_READ, "server")
    while True:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(0, 1 << 20)
                if not data:
                    srv.shutdown(socket.SHUT_WR)
                    return 0
                srv.sendall(data)
            else:
                data = srv.recv(1 << 20)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    n = os.write(1, view)
                    view = view[n:]


if __name__ == "__main__":
    sys.exit(main())
