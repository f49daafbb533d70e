# SPDX-License-Identifier: Apache-2.0
# A private libvirtd for tests/integration/test-nbd-libvirt.sh (sourced after
# tests/functions.sh and tests/guest/lib.sh).
#
# Design notes: the test needs a real system-mode libvirtd (QEMU started by
# it as its own unprivileged user, as on a hypervisor) without systemd and
# without touching the machine's libvirt state.  libvirtd is started by
# hand inside a private mount namespace (unshare -m) in which its fixed
# system paths are bind mounts of directories under $TEST_DIR:
#   /etc/libvirt  -> lv/etc      (libvirtd.conf, qemu.conf, secrets, domain XML)
#   /run, /var/lib, /var/log, /var/cache -> lv/run, lv/lib, lv/log, lv/cache
# Its client socket is in lv/sock (unix_sock_dir), outside those mounts, so
# virsh in the normal namespace reaches it with
# qemu:///system?socket=lv/sock/libvirt-sock.  When the libvirt-qemu user
# does not exist (libvirt-daemon without libvirt-daemon-system), the
# namespace also gets a copy of /etc/passwd and /etc/group with that user
# added, so QEMU still runs unprivileged.  stdio_handler = "file" writes
# QEMU's log directly (no virtlogd).  Everything is removed with $TEST_DIR;
# libvirtd is stopped by PID after every domain and secret it holds was
# removed through virsh.
#
#   lv_start          start libvirtd (exit 77 with the reason if it cannot)
#   lv_virsh ARGS     virsh on the private daemon
#   lv_domain_run NAME XML SERIAL   define, start, wait for power-off, undefine
#   lv_qemu_log NAME  path of QEMU's log for domain NAME

LV_DIR=""
LV_PID=""
LV_DOMAINS=()
LV_SECRETS=()

lv_virsh() { virsh -q -c "qemu:///system?socket=$LV_DIR/sock/libvirt-sock" "$@"; }
lv_qemu_log() { echo "$LV_DIR/log/libvirt/qemu/$1.log"; }

_lv_skip() { echo "SKIP: libvirtd cannot start here: $*"; exit 77; }

lv_start() {
  command -v libvirtd >/dev/null || _lv_skip "libvirtd is not installed (deploy/install-deps.sh installs libvirt-daemon)"
  command -v virsh >/dev/null || _lv_skip "virsh is not installed (libvirt-clients)"
  [ "$(id -u)" = 0 ] || _lv_skip "a system-mode libvirtd needs root"
  unshare --mount --propagation private true 2>/dev/null ||
    _lv_skip "no private mount namespace (unshare -m), needed to keep libvirtd's state out of /etc and /var"
  [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] ||
    ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1 ||
    _lv_skip "libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)"
  case $(realpath "$TEST_DIR") in
    /run/*|/var/lib/*|/var/log/*|/var/cache/*|/etc/libvirt/*)
      fail "TMPDIR must not be under /run, /var/lib, /var/log or /var/cache: libvirtd's namespace hides them" ;;
  esac
  LV_DIR=$TEST_DIR/lv
  mkdir -p "$LV_DIR"/{etc,run,lib/libvirt,log/libvirt,cache/libvirt,sock} "$TEST_DIR/log"
  chmod 755 "$LV_DIR"
  cat >"$LV_DIR/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$LV_DIR/sock"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:$LV_DIR/libvirtd.log"
EOF
  # QEMU runs as libvirt-qemu (the default); no MAC driver, no per-domain
  # mount namespace, no virtlogd.
  cat >"$LV_DIR/etc/qemu.conf" <<EOF
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
EOF
  local binds="mount --bind '$LV_DIR/etc' /etc/libvirt"
  binds+=" && mount --bind '$LV_DIR/run' /run && mount --bind '$LV_DIR/lib' /var/lib"
  binds+=" && mount --bind '$LV_DIR/log' /var/log && mount --bind '$LV_DIR/cache' /var/cache"
  if ! getent passwd libvirt-qemu >/dev/null; then
    cp /etc/passwd "$LV_DIR/passwd"; cp /etc/group "$LV_DIR/group"
    echo "libvirt-qemu:x:64055:64055:QEMU under the test libvirtd:/nonexistent:/usr/sbin/nologin" >>"$LV_DIR/passwd"
    # in group kvm as on a real hypervisor: libvirt re-probes QEMU on every
    # call when its QEMU user and its probe disagree about /dev/kvm
    if getent group kvm >/dev/null; then
      awk -F: -v OFS=: '$1 == "kvm" { $4 = ($4 == "" ? "" : $4 ",") "libvirt-qemu" } { print }' \
        /etc/group >"$LV_DIR/group"
      getent group libvirt-qemu >/dev/null || echo "libvirt-qemu:x:64055:" >>"$LV_DIR/group"
    else
      getent group libvirt-qemu >/dev/null || echo "libvirt-qemu:x:64055:" >>"$LV_DIR/group"
      echo "kvm:x:64056:libvirt-qemu" >>"$LV_DIR/group"
    fi
    binds+=" && mount --bind '$LV_DIR/passwd' /etc/passwd && mount --bind '$LV_DIR/group' /etc/group"
  fi
  unshare --mount --propagation private -- sh -c "$binds && exec libvirtd -f '$LV_DIR/etc/libvirtd.conf'" \
    >>"$TEST_DIR/log/libvirtd.out" 2>&1 &
  LV_PID=$!
  track_pid $LV_PID
  cleanup_fn lv_cleanup
  for _ in $(seq 100); do
    lv_virsh version >/dev/null 2>&1 && break
    kill -0 $LV_PID 2>/dev/null || break
    sleep 0.2
  done
  if ! lv_virsh version >/dev/null 2>&1; then
    tail -n 20 "$TEST_DIR/log/libvirtd.out" "$LV_DIR/libvirtd.log" 2>/dev/null
    _lv_skip "it did not answer on $LV_DIR/sock/libvirt-sock within 20 s (log above)"
  fi
  glog "libvirtd pid $LV_PID: $(lv_virsh version | tr -s ' \n' ' ')"
}

# Undo everything through libvirt first (its QEMUs, its secrets), then stop it.
lv_cleanup() {
  local d s pidf
  for d in "${LV_DOMAINS[@]}"; do
    lv_virsh destroy "$d" >/dev/null 2>&1
    lv_virsh undefine "$d" >/dev/null 2>&1
    pidf=$LV_DIR/run/libvirt/qemu/$d.pid
    [ -s "$pidf" ] && kill -KILL "$(cat "$pidf")" 2>/dev/null
  done
  for s in "${LV_SECRETS[@]}"; do lv_virsh secret-undefine "$s" >/dev/null 2>&1; done
  if [ -n "$LV_PID" ]; then
    kill -TERM "$LV_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$LV_PID" 2>/dev/null || break; sleep 0.1; done
  fi
}

# lv_domain_run NAME XMLFILE SERIAL: returns 0 when the domain started and
# powered itself off within GUEST_TIMEOUT (the verdict is in SERIAL).
lv_domain_run() {
  local name=$1 xml=$2 serial=$3 t0 st
  LV_DOMAINS+=("$name")
  lv_virsh define "$xml" >/dev/null || { echo "virsh define $xml failed"; return 1; }
  t0=$(date +%s)
  if ! lv_virsh start "$name"; then
    echo "virsh start $name failed; QEMU log:"; tail -n 20 "$(lv_qemu_log "$name")"
    lv_virsh undefine "$name" >/dev/null
    return 1
  fi
  lv_virsh domblklist "$name" --details | sed 's/^/  domblklist: /'
  while :; do
    st=$(lv_virsh domstate "$name" 2>&1)
    [ "$st" = "shut off" ] && break
    case $st in running|paused|"in shutdown"|blocked) ;; *) break ;; esac
    if [ $(( $(date +%s) - t0 )) -ge "$GUEST_TIMEOUT" ]; then
      echo "domain $name still $st after ${GUEST_TIMEOUT}s: destroying it"
      lv_virsh destroy "$name" >/dev/null; lv_virsh undefine "$name" >/dev/null
      return 1
    fi
    sleep 1
  done
  GUEST_SECS=$(( $(date +%s) - t0 ))
  glog "domain $name ended after ${GUEST_SECS}s: $st"
  # QEMU's command line as libvirt built it: the NBD part of -blockdev
  grep -o -- "-blockdev '{\"driver\":\"nbd[^']*" "$(lv_qemu_log "$name")" | sed 's/^/  qemu: /'
  lv_virsh undefine "$name" >/dev/null || { echo "virsh undefine $name failed"; return 1; }
  [ "$st" = "shut off" ] || { echo "domain $name ended in state '$st'"; return 1; }
}
