#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bring up a local blkstore cluster on 127.0.0.1, or stop it.
#
#   deploy/local-cluster.sh [start]   install deps, build, init (once), start
#                                     3 monitors, create pool KVMpool (128
#                                     PGs, failure domain osd: one host),
#                                     format (once) and start $BLK_OSDS (3)
#                                     OSDs on sparse files $RUN/osd.N.dev
#                                     ($BLK_OSD_SIZE, 4G), wait until
#                                     healthy, create image KVMpool/vm1
#                                     ($BLK_IMAGE_SIZE, 10G) and export it
#                                     with blk-nbd as client.KVMpool on
#                                     127.0.0.1:10809 and $RUN/nbd.sock
#   deploy/local-cluster.sh stop      stop exactly the daemons it started
#   deploy/local-cluster.sh status    blkctl status
#
# The run directory is $BLK_RUN_DIR (default ./run): blk.conf, keyrings,
# daemon stores, <name>.pid files and log/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
RUN=${BLK_RUN_DIR:-./run}
BUILD=${BLK_BUILD:-$TOP/build}
MON_PORT_BASE=${BLK_MON_PORT:-6789}
MONS=(a b c)
NOSDS=${BLK_OSDS:-3}
OSD_SIZE=${BLK_OSD_SIZE:-4G}
IMAGE=${BLK_IMAGE:-vm1}
IMAGE_SIZE=${BLK_IMAGE_SIZE:-10G}
NBD_PORT=${BLK_NBD_PORT:-10809}

say() { printf '%s\n' "$*"; }

build() {
  "$TOP/deploy/install-deps.sh"
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$TOP" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD" -j2 >/dev/null
}

# Is the process in pid file $1 ours (started with our binary)?
ours() {
  local pidf=$1 pid
  [ -f "$pidf" ] || return 1
  pid=$(cat "$pidf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$BUILD/" || return 1
  echo "$pid"
}

start() {
  build
  mkdir -p "$RUN/log"
  RUN=$(cd "$RUN" && pwd)
  export BLK_CONF=$RUN/blk.conf
  if [ ! -f "$BLK_CONF" ]; then
    args=()
    for i in "${!MONS[@]}"; do args+=(--mon "${MONS[$i]}=127.0.0.1:$((MON_PORT_BASE + i))"); done
    "$BUILD/client/blkctl" cluster init --run-dir "$RUN" "${args[@]}"
  fi
  for m in "${MONS[@]}"; do
    if ours "$RUN/mon.$m.pid" >/dev/null; then
      say "mon.$m already running"
      continue
    fi
    nohup "$BUILD/mon/blk-mon" --id "$m" -c "$BLK_CONF" >>"$RUN/log/mon.$m.log" 2>&1 </dev/null &
    echo $! >"$RUN/mon.$m.pid"
  done
  "$BUILD/client/blkctl" --timeout 60 status >/dev/null ||
    { say "the monitors did not form a quorum; see $RUN/log/"; exit 1; }
  if ! "$BUILD/client/blkctl" pool ls | grep -q " KVMpool "; then
    "$BUILD/client/blkctl" pool create KVMpool 128 --failure-domain osd
  fi
  for ((i = 0; i < NOSDS; i++)); do
    if ours "$RUN/osd.$i.pid" >/dev/null; then
      say "osd.$i already running"
      continue
    fi
    if [ ! -f "$RUN/osd.$i.dev" ]; then
      "$BUILD/osd/blk-osd" --mkfs --osd-id "$i" --device "$RUN/osd.$i.dev" --size "$OSD_SIZE" \
        >>"$RUN/log/osd.$i.log" 2>&1 || { say "mkfs of osd.$i failed; see $RUN/log/osd.$i.log"; exit 1; }
    fi
    # each OSD's own key (auth, docs/auth.md), kept next to its device
    if [ ! -s "$RUN/osd.$i.keyring" ] && ! grep -q '^auth_mode *= *none' "$BLK_CONF"; then
      "$BUILD/client/blkctl" --timeout 60 auth get-or-create "osd.$i" mon 'allow profile osd' \
        osd 'allow *' -o "$RUN/osd.$i.keyring"
    fi
    nohup "$BUILD/osd/blk-osd" --id "$i" -c "$BLK_CONF" --device "$RUN/osd.$i.dev" \
      --set keyring="$RUN/osd.$i.keyring" >>"$RUN/log/osd.$i.log" 2>&1 </dev/null &
    echo $! >"$RUN/osd.$i.pid"
  done
  for _ in $(seq 300); do
    [ "$("$BUILD/client/blkctl" --format json osd tree | grep -o '"status":"up"' | wc -l)" -ge "$NOSDS" ] && break
    sleep 0.1
  done
  # healthy = every monitor in quorum, every OSD up/in, every PG active+clean
  for _ in $(seq 120); do
    "$BUILD/client/blkctl" --format json status | grep -q '"status":"HEALTH_OK"' && break
    sleep 0.5
  done
  "$BUILD/client/blkctl" status
  export_image
  cat <<MSG

The cluster runs in the background (logs: $RUN/log/).
  export BLK_CONF=$BLK_CONF
  $BUILD/client/blkctl status          # or: mon stat, pool ls, osd tree, image ls KVMpool
  $BUILD/client/blkctl object put KVMpool hello /etc/hostname   # object I/O
  $0 stop                              # stop it
Image KVMpool/$IMAGE ($IMAGE_SIZE) is exported over NBD by blk-nbd as client.KVMpool:
  nbd://127.0.0.1:$NBD_PORT/KVMpool/$IMAGE
  nbd+unix:///KVMpool/$IMAGE?socket=$RUN/nbd.sock
  e.g. qemu-img info nbd://127.0.0.1:$NBD_PORT/KVMpool/$IMAGE
       qemu-system-x86_64 ... -drive file=nbd+unix:///KVMpool/$IMAGE?socket=$RUN/nbd.sock,format=raw,if=virtio,cache=none
MSG
}

# The main job: a key for the hypervisor (client.KVMpool, read on the
# monitors, rwx on its pool), an image, and blk-nbd exporting it on TCP and
# on a unix socket with that key.
export_image() {
  local kr=$RUN/client.KVMpool.keyring
  if [ ! -s "$kr" ] && ! grep -q '^auth_mode *= *none' "$BLK_CONF"; then
    "$BUILD/client/blkctl" auth get-or-create client.KVMpool mon 'allow r' \
      osd 'allow rwx pool=KVMpool' -o "$kr" >/dev/null
  fi
  if ! "$BUILD/client/blkctl" image info "KVMpool/$IMAGE" >/dev/null 2>&1; then
    "$BUILD/client/blkctl" image create "KVMpool/$IMAGE" --size "$IMAGE_SIZE"
  fi
  if ours "$RUN/nbd.pid" >/dev/null; then
    say "blk-nbd already running"
  else
    local auth=()
    [ -s "$kr" ] && auth=(--id KVMpool --keyring "$kr")
    rm -f "$RUN/nbd.sock"
    nohup "$BUILD/client/nbd/blk-nbd" -c "$BLK_CONF" "${auth[@]}" --pool KVMpool \
      --listen "127.0.0.1:$NBD_PORT" --socket "$RUN/nbd.sock" --socket-mode 0666 \
      >>"$RUN/log/nbd.log" 2>&1 </dev/null &
    echo $! >"$RUN/nbd.pid"
    for _ in $(seq 100); do
      grep -q serving "$RUN/log/nbd.log" 2>/dev/null && break
      sleep 0.1
    done
  fi
  if command -v nbdinfo >/dev/null; then
    nbdinfo "nbd://127.0.0.1:$NBD_PORT/KVMpool/$IMAGE" | grep -E "export-size|uri" ||
      { say "the NBD export does not answer; see $RUN/log/nbd.log"; exit 1; }
  fi
}

stop() {
  [ -d "$RUN" ] || { say "nothing to stop in $RUN"; return 0; }
  local n=0
  # the NBD export, then the OSDs (they mark themselves down through the
  # monitors), then the monitors
  for pattern in "nbd.pid" "osd.*.pid" "*.pid"; do
    local pids=()
    for pidf in "$RUN"/$pattern; do
      [ -e "$pidf" ] || continue
      if pid=$(ours "$pidf"); then
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
      fi
      rm -f "$pidf"
    done
    for pid in "${pids[@]}"; do
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    n=$((n + ${#pids[@]}))
  done
  say "stopped $n daemon(s) of $RUN"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) BLK_CONF=$RUN/blk.conf "$BUILD/client/blkctl" status ;;
  *) say "usage: $0 [start|stop|status]"; exit 2 ;;
esac
