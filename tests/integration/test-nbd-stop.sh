#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Stopping blk-nbd while clients are transmitting (3 monitors, 3 OSDs).
# Plain TCP and unix connections are served on libblk's thread (docs/nbd.md
# "Threads"), so a stop must reach them there and every connection must
# come back to blk-nbd's loop to be freed:
#  1. SIGTERM with fio writing on a TCP and a unix connection: blk-nbd
#     answers what is in flight, closes, exits 0 well before its 10 s
#     bound, and the data a client wrote and flushed before is intact;
#  2. two SIGTERMs at once (stop without waiting): exits 0 all the same;
#  3. with --io-thread own no connection is handed over, and 1. holds too;
#  4. (ASan builds) no leak or error report from any run.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
requires fio
nbd_cluster
"$BLKCTL" image create rbd/s --size 64M >/dev/null || fail "image create"
SOCK=$TEST_DIR/nbd.sock

# fio_bg NAME URI: QD16 random writes for up to 60 s, in the background
fio_bg() {
  fio --name="$1" --ioengine=nbd --uri="$2" --rw=randwrite --bs=4k --iodepth=16 --size=32M \
    --time_based --runtime=60 --norandommap --randrepeat=0 >"$TEST_DIR/$1.out" 2>&1 &
  eval "FIO_$1=$!"
  track_pid $!
}

# run N SIGNALS HANDOVERS [ARGS]: a server with two writing clients (and a
# first one), stopped with SIGNALS SIGTERMs; at least HANDOVERS
# connections (0: none) must have gone to libblk's thread
run() {
  local n=$1 sigs=$2 hand=$3 P
  shift 3
  P=$(nbd_port)
  rm -f "$SOCK"
  start_nbd "s$n" --listen 127.0.0.1:$P --socket "$SOCK" --log-level debug "$@" rbd/s
  local pid log=$TEST_DIR/log/nbd.s$n.log
  pid=$(eval echo "\$NBDPID_s$n")
  # a first client writes a pattern and flushes (qemu-io disconnects)
  qemu-io -f raw "nbd://127.0.0.1:$P/rbd/s" -c "write -P 0x$((40 + n)) 60M 1M" -c flush \
    >/dev/null || fail "qemu-io write"
  fio_bg "tcp$n" "nbd://127.0.0.1:$P/rbd/s"
  fio_bg "unix$n" "nbd+unix:///rbd/s?socket=$SOCK"
  for _ in $(seq 100); do
    [ "$(grep -c "export rbd/s (" "$log")" -ge 3 ] &&
      [ "$(grep -c "served on libblk's thread" "$log")" -ge "$hand" ] && break
    sleep 0.1
  done
  [ "$(grep -c "export rbd/s (" "$log")" -ge 3 ] || fail "run $n: clients did not connect"
  local got; got=$(grep -c "served on libblk's thread" "$log" || true)
  # fio and qemu-io may open extra connections (size probes): at least
  # HANDOVERS, none when HANDOVERS is 0
  if [ "$hand" -eq 0 ]; then [ "$got" -eq 0 ]; else [ "$got" -ge "$hand" ]; fi ||
    fail "run $n: $got connections handed to libblk's thread, want $hand"
  sleep 2   # requests in flight
  local t0; t0=$(ms_now)
  for _ in $(seq "$sigs"); do kill -TERM "$pid"; done
  wait "$pid" || fail "run $n: blk-nbd exit status $?"
  local dt=$(( $(ms_now) - t0 ))
  grep -q "stopped" "$log" || fail "run $n: no clean stop"
  [ "$dt" -lt 9000 ] || fail "run $n: stop took $dt ms (connections not stopped?)"
  grep -q "did not finish within 10 s" "$log" && fail "run $n: stop timed out"
  wait "$(eval echo "\$FIO_tcp$n")" 2>/dev/null || true
  wait "$(eval echo "\$FIO_unix$n")" 2>/dev/null || true
  echo "ok: run $n: stopped with $sigs SIGTERM(s) after $dt ms"
}
run 1 1 3
run 2 2 3
run 3 1 0 --io-thread own

# the flushed pattern of each run is intact (fio writes below 32M)
P=$(nbd_port)
start_nbd check --listen 127.0.0.1:$P rbd/s
qemu-io -f raw -r "nbd://127.0.0.1:$P/rbd/s" -c "read -P 0x$((40 + 3)) 60M 1M" >"$TEST_DIR/read.out" ||
  fail "read back"
grep -q "Pattern verification failed" "$TEST_DIR/read.out" && fail "flushed data lost"
kill -TERM "$NBDPID_check"; wait "$NBDPID_check" || fail "check exit status"
echo PASS
