# SPDX-License-Identifier: Apache-2.0
# Host side of the hypervisor tests (sourced by tests/integration/test-nbd-guest.sh
# and test-nbd-libvirt.sh after tests/functions.sh).
#
# Design notes: one NBD export, two ways to get it.  export_start (below)
# is the only place that knows what serves the disk: by default a real
# blkstore cluster (3 monitors, 3 OSDs, pool KVMpool, image KVMpool/guest)
# and blk-nbd listening on 127.0.0.1 and on a unix socket; with
# BLK_NBD_SERVER=qemu-nbd a reference server (two qemu-nbd processes, one
# per transport, over one sparse file) so that the guest side can be
# checked against a known-good NBD server.  Everything after that only
# uses NBD_TCP_URI / NBD_UNIX_URI / NBD_SOCK / NBD_EXPORT and export_dump.
# The guest is a Debian kernel plus an initramfs built here from a static
# busybox, the virtio modules of that kernel and tests/guest/init; it
# prints "BLKGUEST:" lines on its serial console (see init).  TCG is the
# default (hardware KVM does not work on the CI machines); GUEST_ACCEL=kvm
# uses KVM where it works.
#
#   guest_require_qemu         exit 77 when qemu-system-x86_64 cannot run at all
#   guest_build_initramfs OUT [knbd]  sets GUEST_KERNEL, writes the initramfs
#                              to OUT (knbd: with nbd-client, nbd, virtio-net)
#   guest_boot URI LOG         boots a guest on URI, waits (GUEST_TIMEOUT)
#   guest_boot_knbd SOCK LOG   the same through the guest kernel's NBD client
#   guest_verdict LOG          0 on "BLKGUEST: PASS", prints why otherwise
#   guest_regions LOG          "off len md5" per region the guest wrote
#   verify_nbd URI LOG         re-read the regions through NBD (nbdsh)
#   verify_file FILE LOG       re-read the regions from a full image dump
#   export_start               start the export (cluster + blk-nbd or reference)
#   export_dump FILE           whole image to FILE (blkctl image export)
#   export_stop                stop blk-nbd (SIGTERM, waits)

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BLK_NBD_SERVER=${BLK_NBD_SERVER:-blk-nbd}
GUEST_ACCEL=${GUEST_ACCEL:-tcg}
GUEST_MEM=${GUEST_MEM:-256}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-150}
GUEST_TP_MB=${GUEST_TP_MB:-16}
GUEST_CHUNK_KB=${GUEST_CHUNK_KB:-1024}
IMAGE_SIZE=${IMAGE_SIZE:-128M}
NBD_POOL=${NBD_POOL:-KVMpool}
NBD_IMAGE=${NBD_IMAGE:-guest}
NBD_EXPORT=$NBD_POOL/$NBD_IMAGE
QEMU_SYSTEM=${QEMU_SYSTEM:-qemu-system-x86_64}

glog() { echo "[$(date -u +%H:%M:%S)] $*"; }

guest_require_qemu() {
  command -v "$QEMU_SYSTEM" >/dev/null 2>&1 ||
    { echo "SKIP: $QEMU_SYSTEM is not installed (deploy/install-deps.sh installs qemu-system-x86)"; exit 77; }
  local out
  if ! out=$(echo quit | timeout 30 "$QEMU_SYSTEM" -machine none -accel tcg -nodefaults \
              -no-user-config -display none -monitor stdio 2>&1); then
    echo "SKIP: $QEMU_SYSTEM cannot run on this machine: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    exit 77
  fi
}

# The busybox must be static: the initramfs has no libc.
_guest_busybox() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    [ -x "$b" ] || continue
    if ! ldd "$b" >/dev/null 2>&1; then echo "$b"; return 0; fi
  done
  return 1
}

# Copy one kernel module (plain, .xz or .zst) as NAME.ko into DIR.
_guest_copy_module() {
  local src=$1 dir=$2 base
  base=$(basename "$src"); base=${base%.xz}; base=${base%.zst}
  case $src in
    *.xz) xz -dc "$src" >"$dir/$base" ;;
    *.zst) zstd -dc "$src" >"$dir/$base" ;;
    *) cp "$src" "$dir/$base" ;;
  esac
  echo "$base"
}

# Copy a dynamic executable to ROOT/DEST with its loader and libraries at
# the paths ldd names.
_guest_copy_elf() {
  local bin=$1 root=$2 dest=$3 lib
  cp "$bin" "$root$dest"
  for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

guest_build_initramfs() {
  local out=$1 root kver bb m kw path base mods
  GUEST_KERNEL=${GUEST_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n 1)}
  [ -n "$GUEST_KERNEL" ] && [ -r "$GUEST_KERNEL" ] ||
    fail "no guest kernel in /boot (deploy/install-deps.sh installs linux-image-amd64; or set GUEST_KERNEL)"
  kver=${GUEST_KERNEL##*/vmlinuz-}
  [ -d "/lib/modules/$kver" ] || fail "no /lib/modules/$kver for $GUEST_KERNEL"
  bb=$(_guest_busybox) || fail "no static busybox (deploy/install-deps.sh installs busybox-static)"
  command -v cpio >/dev/null || fail "cpio not installed"
  root=$(mktemp -d "$TEST_DIR/initramfs.XXXXXX")
  mkdir -p "$root/bin" "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
  cp "$bb" "$root/bin/busybox"
  cp "$GUEST_DIR/init" "$root/init"
  chmod 755 "$root/init"
  : >"$root/lib/modules/load-order"
  # modprobe prints the insmod lines in load order; built-in modules print
  # "builtin NAME" and need nothing.
  mods="virtio_pci virtio_blk"
  # the kernel's own NBD client (guest_boot_knbd): nbd, a NIC, nbd-client
  GUEST_NBD_CLIENT=""
  if [ "${2:-}" = knbd ] && GUEST_NBD_CLIENT=$(command -v nbd-client); then
    mods="$mods virtio_net nbd"
    _guest_copy_elf "$GUEST_NBD_CLIENT" "$root" /bin/nbd-client
  fi
  for m in $mods; do
    while read -r kw path _; do
      [ "$kw" = insmod ] || continue
      base=$(basename "$path"); base=${base%.xz}; base=${base%.zst}
      grep -qx "$base" "$root/lib/modules/load-order" && continue
      _guest_copy_module "$path" "$root/lib/modules" >>"$root/lib/modules/load-order"
    done < <(modprobe -S "$kver" --show-depends "$m" 2>/dev/null)
  done
  grep -qx virtio_blk.ko "$root/lib/modules/load-order" ||
    modprobe -S "$kver" --show-depends virtio_blk 2>/dev/null | grep -q '^builtin' ||
    fail "virtio_blk of kernel $kver not found (modprobe -S $kver --show-depends virtio_blk)"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out" || fail "initramfs cpio failed"
  rm -rf "$root"
  glog "initramfs $(du -k "$out" | cut -f1) KiB for kernel $kver"
}

# Kernel command line shared by the direct-QEMU and the libvirt guests.
guest_cmdline() {
  echo "console=ttyS0 panic=-1 loglevel=3 bt.tp=$GUEST_TP_MB bt.chunk=$GUEST_CHUNK_KB"
}

guest_accel_args() {
  if [ "$GUEST_ACCEL" = kvm ]; then echo "-accel kvm -cpu host"; else echo "-accel tcg -cpu max"; fi
}

# guest_boot URI LOG: QEMU's own NBD client is the disk (-drive file=URI).
# Returns QEMU's exit status (124 on time-out, after killing it).
guest_boot() {
  local uri=$1 log=$2
  local quri=${uri//,/,,}   # a literal comma is doubled in -drive
  GUEST_DRIVE_ARGS=(-drive "file=$quri,format=raw,if=none,id=vd0,cache=none,aio=threads,discard=unmap"
    -device virtio-blk-pci,drive=vd0)
  _guest_run "$log"
}

_guest_run() {
  local log=$1 qpid t0 rc
  # shellcheck disable=SC2046
  set -- "$QEMU_SYSTEM" -nodefaults -no-user-config -display none -no-reboot \
    -machine q35 $(guest_accel_args) -smp 1 -m "$GUEST_MEM" \
    -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$(guest_cmdline) ${GUEST_EXTRA_CMDLINE:-}" \
    -serial "file:$log" -monitor none "${GUEST_DRIVE_ARGS[@]}"
  glog "boot: $*"
  "$@" >"$log.qemu" 2>&1 </dev/null &
  qpid=$!
  track_pid $qpid
  t0=$(date +%s)
  while kill -0 $qpid 2>/dev/null; do
    if [ $(( $(date +%s) - t0 )) -ge "$GUEST_TIMEOUT" ]; then
      glog "guest still running after ${GUEST_TIMEOUT}s: killing qemu pid $qpid"
      kill -TERM $qpid 2>/dev/null; sleep 1; kill -KILL $qpid 2>/dev/null
      wait $qpid 2>/dev/null
      return 124
    fi
    sleep 0.5
  done
  rc=0; wait $qpid || rc=$?
  GUEST_SECS=$(( $(date +%s) - t0 ))
  glog "qemu exited rc=$rc after ${GUEST_SECS}s"
  [ -s "$log.qemu" ] && sed 's/^/  qemu: /' "$log.qemu"
  return $rc
}

# guest_boot_knbd SOCK LOG: no disk; the guest's kernel NBD driver
# (nbd-client in the guest, simple replies) reaches the export through
# QEMU's user-mode network: the guest connects to 10.0.2.100:10809, which
# exists only inside QEMU (restrict=on: nothing else leaves the guest), and
# QEMU runs tests/guest/relay.py for that connection, which copies it to
# the export's unix socket.
guest_boot_knbd() {
  local sock=$1 log=$2
  [ -n "${GUEST_NBD_CLIENT:-}" ] || return 77
  local relay="python3 $GUEST_DIR/relay.py $sock"
  GUEST_DRIVE_ARGS=(-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:10809-cmd:${relay//,/,,}"
    -device virtio-net-pci,netdev=n0)
  GUEST_EXTRA_CMDLINE="bt.knbd=$NBD_EXPORT"
  local rc=0
  _guest_run "$log" || rc=$?
  GUEST_EXTRA_CMDLINE=""
  return $rc
}

# guest_verdict LOG: prints the guest's lines; 0 only on PASS.
guest_verdict() {
  local log=$1
  tr -d '\r' <"$log" | grep '^BLKGUEST:' | sed 's/^/  guest: /'
  if tr -d '\r' <"$log" | grep -q '^BLKGUEST: PASS$'; then return 0; fi
  if tr -d '\r' <"$log" | grep -q '^BLKGUEST: FAIL'; then
    echo "guest reported: $(tr -d '\r' <"$log" | grep '^BLKGUEST: FAIL')"
  else
    echo "guest gave no verdict; last console lines:"
    tr -d '\r' <"$log" | tail -n 15 | sed 's/^/  console: /'
  fi
  return 1
}

guest_regions() {
  tr -d '\r' <"$1" | sed -n 's/^BLKGUEST: region off=\([0-9]*\) len=\([0-9]*\) md5=\([0-9a-f]*\) ok$/\1 \2 \3/p'
}

# The regions must include the last sector and a byte-unaligned one, or the
# check proves less than it claims.
_regions_sane() {
  local log=$1 size=$2 regions
  regions=$(guest_regions "$log")
  [ "$(echo "$regions" | grep -c .)" -ge 5 ] || { echo "guest reported only $(echo "$regions" | grep -c .) regions"; return 1; }
  echo "$regions" | awk -v s="$size" '$1 + $2 == s { last = 1 } $1 % 512 { unal = 1 }
    END { exit !(last && unal) }' || { echo "regions miss the last sector or an unaligned offset"; return 1; }
}

# verify_nbd URI LOG: every region re-read through a fresh NBD connection.
verify_nbd() {
  local uri=$1 log=$2 out
  # nbdsh runs on the system python (python3-libnbd), not one earlier in PATH
  out=$(REGIONS="$(guest_regions "$log")" PATH=/usr/bin:/bin:$PATH timeout 120 nbdsh -u "$uri" -c '
import hashlib, os
bad = 0
size = h.get_size()
print("size", size)
for line in os.environ["REGIONS"].splitlines():
    off, ln, want = line.split()
    off, ln = int(off), int(ln)
    got = hashlib.md5(h.pread(ln, off)).hexdigest()
    print("nbd off=%d len=%d %s" % (off, ln, "ok" if got == want else "MISMATCH got " + got))
    bad += got != want
print("bad", bad)
' 2>&1) || { echo "$out"; echo "nbdsh failed on $uri"; return 1; }
  echo "$out" | sed 's/^/  host: /'
  _regions_sane "$log" "$(echo "$out" | sed -n 's/^size //p')" || return 1
  grep -qx 'bad 0' <<<"$out"
}

# verify_file FILE LOG: the same regions from a dump of the whole image.
verify_file() {
  local file=$1 log=$2 out
  out=$(REGIONS="$(guest_regions "$log")" python3 -c '
import hashlib, os, sys
bad = 0
with open(sys.argv[1], "rb") as f:
    for line in os.environ["REGIONS"].splitlines():
        off, ln, want = line.split()
        f.seek(int(off))
        got = hashlib.md5(f.read(int(ln))).hexdigest()
        print("dump off=%s len=%s %s" % (off, ln, "ok" if got == want else "MISMATCH got " + got))
        bad += got != want
print("bad", bad)
' "$file" 2>&1) || { echo "$out"; return 1; }
  echo "$out" | sed 's/^/  host: /'
  _regions_sane "$log" "$(stat -c %s "$file")" || return 1
  grep -qx 'bad 0' <<<"$out"
}

# ---- exports -----------------------------------------------------------------
# After export_start: NBD_PORT, NBD_SOCK, NBD_TCP_URI, NBD_UNIX_URI.
# NBD_SOCK_MODE (default 0666: QEMU under libvirt runs as another user).
NBD_SOCK_MODE=${NBD_SOCK_MODE:-0666}

_wait_nbd() {   # until an NBD client can open URI
  local uri=$1
  for _ in $(seq 100); do
    nbdinfo --size "$uri" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "export $uri did not come up (see $TEST_DIR/log)"
}

export_start() {
  export_prepare
  export_serve
}

# export_prepare: the backing store exists (cluster + image, or the file).
export_prepare() {
  mkdir -p "$TEST_DIR/log" "$TEST_DIR/sock"
  # QEMU under libvirt runs as its own user: it must reach the socket
  chmod 755 "$TEST_DIR" "$TEST_DIR/sock"
  NBD_SOCK=$TEST_DIR/sock/nbd.sock
  NBD_PORT=$(free_port)
  NBD_TCP_URI="nbd://127.0.0.1:$NBD_PORT/$NBD_EXPORT"
  NBD_UNIX_URI="nbd+unix:///$NBD_EXPORT?socket=$NBD_SOCK"
  case $BLK_NBD_SERVER in
    blk-nbd) _export_prepare_blknbd ;;
    qemu-nbd) _export_prepare_qemunbd ;;
    *) fail "BLK_NBD_SERVER=$BLK_NBD_SERVER: expected blk-nbd or qemu-nbd" ;;
  esac
}

# export_serve: the NBD server on both transports; the server's cluster
# client options (--id NAME, key) in NBD_CLIENT_ARGS, extra server options
# in NBD_SERVE_ARGS.
export_serve() {
  case $BLK_NBD_SERVER in
    blk-nbd) _export_serve_blknbd ;;
    qemu-nbd) _export_serve_qemunbd ;;
  esac
  _wait_nbd "$NBD_TCP_URI"
  _wait_nbd "$NBD_UNIX_URI"
  glog "export ($BLK_NBD_SERVER): $NBD_TCP_URI and $NBD_UNIX_URI"
}

# Reference server: qemu-nbd exports one file per process and transport;
# locking=off lets the two share it (they are never written at once).
_export_prepare_qemunbd() {
  requires qemu-nbd
  NBD_REF_FILE=$TEST_DIR/reference.img
  truncate -s "$IMAGE_SIZE" "$NBD_REF_FILE"
}

_export_serve_qemunbd() {
  local opts="driver=raw,file.driver=file,file.filename=$NBD_REF_FILE,file.locking=off"
  qemu-nbd --image-opts "$opts" -x "$NBD_EXPORT" --persistent --shared=4 --cache=none \
    --bind 127.0.0.1 --port "$NBD_PORT" >>"$TEST_DIR/log/qemu-nbd-tcp.log" 2>&1 &
  track_pid $!
  qemu-nbd --image-opts "$opts" -x "$NBD_EXPORT" --persistent --shared=4 --cache=none \
    --socket "$NBD_SOCK" >>"$TEST_DIR/log/qemu-nbd-unix.log" 2>&1 &
  track_pid $!
  for _ in $(seq 50); do [ -S "$NBD_SOCK" ] && break; sleep 0.1; done
  chmod "${NBD_SOCK_MODE#0}" "$NBD_SOCK" 2>/dev/null || true
}

_export_prepare_blknbd() {
  requires python3
  make_cluster 3
  osd_conf
  local m i
  for m in "${MONS[@]}"; do start_mon "$m"; done
  wait_quorum 30
  "$BLKCTL" pool create "$NBD_POOL" 16 --size 3 --min-size 2 --failure-domain osd >/dev/null ||
    fail "pool create $NBD_POOL"
  for i in 0 1 2; do mkfs_osd $i 512M; done
  for i in 0 1 2; do start_osd $i; done
  wait_osds_up 3 30
  "$BLKCTL" image create "$NBD_EXPORT" --size "$IMAGE_SIZE" >/dev/null || fail "image create $NBD_EXPORT"
}

_export_serve_blknbd() {
  local bin=${BLK_NBD:-$BLK_BUILD_DIR/client/nbd/blk-nbd}
  [ -x "$bin" ] || fail "no blk-nbd at $bin (build the tree, or BLK_NBD_SERVER=qemu-nbd for the reference server)"
  # shellcheck disable=SC2086
  "$bin" -c "$BLK_CONF" ${NBD_CLIENT_ARGS:-} --listen "127.0.0.1:$NBD_PORT" --socket "$NBD_SOCK" \
    --socket-mode "$NBD_SOCK_MODE" ${NBD_SERVE_ARGS:-} "$NBD_EXPORT" \
    >>"$TEST_DIR/log/nbd.guest.log" 2>&1 &
  NBD_PID=$!
  track_pid $NBD_PID
  for _ in $(seq 100); do
    kill -0 $NBD_PID 2>/dev/null || fail "blk-nbd exited: $(tail -n 5 "$TEST_DIR/log/nbd.guest.log")"
    [ -S "$NBD_SOCK" ] && break
    sleep 0.1
  done
}

# export_stop: SIGTERM to blk-nbd while the cluster is still up (so it
# exits cleanly and LeakSanitizer reports), waiting up to 15 s.
export_stop() {
  [ -n "${NBD_PID:-}" ] || return 0
  kill -TERM "$NBD_PID" 2>/dev/null || return 0
  local rc=0
  for _ in $(seq 150); do kill -0 "$NBD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$NBD_PID" 2>/dev/null && { echo "blk-nbd did not exit within 15 s of SIGTERM"; return 1; }
  wait "$NBD_PID" 2>/dev/null || rc=$?
  [ $rc = 0 ] || echo "blk-nbd exited with status $rc after SIGTERM"
  return $rc
}

# export_dump FILE: the whole image, read by the cluster's own client.
export_dump() {
  case $BLK_NBD_SERVER in
    blk-nbd) "$BLKCTL" image export "$NBD_EXPORT" "$1" >/dev/null || fail "blkctl image export $NBD_EXPORT" ;;
    qemu-nbd) cp --sparse=always "$NBD_REF_FILE" "$1" ;;
  esac
}
