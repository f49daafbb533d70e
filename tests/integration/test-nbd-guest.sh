#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A QEMU guest whose virtio-blk disk is a blkstore image exported by
# blk-nbd (issue 6 §2/§4): 3 monitors + 3 OSDs, pool KVMpool, image
# KVMpool/guest, blk-nbd on 127.0.0.1:PORT and on a unix socket.  The guest
# (Debian kernel + busybox initramfs built here, TCG) boots twice, once on
# nbd://127.0.0.1:PORT/KVMpool/guest and once on
# nbd+unix:///KVMpool/guest?socket=PATH; each time it writes random data at
# the start, the middle, a 4 KiB-unaligned and a byte-unaligned offset and
# the last sector, syncs, reads it back with O_DIRECT and prints PASS.
# After each boot the host re-reads the same ranges through a new NBD
# connection (nbdsh) and from `blkctl image export`, and they must match
# what the guest wrote.  A third boot has no virtio disk: nbd-client in the
# guest attaches /dev/nbd0 through the guest kernel's NBD driver (simple
# replies only, the client of `blkctl nbd map` on a hypervisor host), over a
# forward inside QEMU to the unix socket, and runs the same checks (skipped
# with a note when the host has no nbd-client to copy into the guest).  The
# guest also prints its sequential O_DIRECT MB/s (GUEST_TP_MB, default 16).
# BLK_NBD_SERVER=qemu-nbd runs the same guest against qemu-nbd over a file
# (reference server, checks the test itself).  Skips (77) only when
# qemu-system-x86_64 cannot run.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-540}
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../guest/lib.sh"
guest_require_qemu
requires nbdsh nbdinfo python3

T0=$(date +%s)
GUEST_INITRD=$TEST_DIR/initramfs.gz
guest_build_initramfs "$GUEST_INITRD" knbd
export_start

rc=0
for transport in tcp unix knbd; do
  log=$TEST_DIR/serial-$transport.log
  grc=0
  case $transport in
    tcp) uri=$NBD_TCP_URI; glog "---- guest on $uri"; guest_boot "$uri" "$log" || grc=$? ;;
    unix) uri=$NBD_UNIX_URI; glog "---- guest on $uri"; guest_boot "$uri" "$log" || grc=$? ;;
    knbd)
      uri=$NBD_UNIX_URI
      [ -n "${GUEST_NBD_CLIENT:-}" ] || { glog "---- no nbd-client on this host: kernel NBD client not tested"; continue; }
      glog "---- guest kernel's NBD client (nbd-client in the guest) on $NBD_SOCK"
      guest_boot_knbd "$NBD_SOCK" "$log" || grc=$? ;;
  esac
  [ $grc = 0 ] || { echo "FAIL($transport): qemu exited with status $grc"; rc=1; }
  guest_verdict "$log" || { echo "FAIL($transport): guest"; rc=1; continue; }
  verify_nbd "$uri" "$log" || { echo "FAIL($transport): host re-read through NBD differs"; rc=1; }
  export_dump "$TEST_DIR/dump.img"
  verify_file "$TEST_DIR/dump.img" "$log" || { echo "FAIL($transport): image export differs"; rc=1; }
  rm -f "$TEST_DIR/dump.img"
  tr -d '\r' <"$log" | sed -n "s/^BLKGUEST: \(seq\(write\|read\)\) /RESULT $transport \1 /p"
done
export_stop || rc=1
[ $rc = 0 ] || fail "see above"
glog "total $(( $(date +%s) - T0 ))s"
echo PASS
