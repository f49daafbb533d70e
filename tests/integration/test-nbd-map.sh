#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blkctl nbd map / ls / unmap and blkctl nbd serve: map starts a per-image
# blk-nbd on a unix socket (daemonized, its state in <run dir>/nbd/); on a
# kernel without nbd it says so and still prints the socket and the QEMU
# URI, which qemu-img then uses; ls shows the mapping; unmap stops the
# server; mapping twice or unmapping what is not mapped fails clearly.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
nbd_cluster
# map's servers log to <run dir>/nbd/; the sanitizer check reads log/
# map's servers are daemons (not our children): on any exit, stop each one
# still running by the PID its pid file names, then keep their logs
collect_map_logs() {
  local f p
  for f in "$TEST_DIR"/nbd/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f" 2>/dev/null) || continue
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && for _ in $(seq 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  done
  cp "$TEST_DIR"/nbd/*.log "$TEST_DIR/log/" 2>/dev/null || true
}
cleanup_fn collect_map_logs
"$BLKCTL" image create rbd/m --size 8M >/dev/null || fail "create"

out=$("$BLKCTL" nbd map rbd/m 2>&1) || fail "nbd map: $out"
echo "$out"
sock=$(sed -n 's/^socket: //p' <<<"$out")
uri=$(sed -n 's/^qemu: *//p' <<<"$out")
[ -S "$sock" ] || fail "no socket at '$sock'"
[ "$uri" = "nbd+unix:///rbd/m?socket=$sock" ] || fail "uri '$uri'"
if [ -e /dev/nbd0 ]; then
  grep -q "^/dev/nbd" <<<"$out" || echo "note: /dev/nbd0 exists but no device was attached"
else
  grep -q "no nbd module" <<<"$out" || fail "no clear message about the missing nbd module: $out"
fi
[ "$(stat -c %a "$sock")" = 660 ] || fail "socket mode $(stat -c %a "$sock")"
out2=$(qemu-img info "$uri") || fail "qemu-img on the mapped socket"
grep -q "virtual size: 8 MiB" <<<"$out2" || fail "qemu-img info: $out2"
qemu-io -f raw -c "write -P 0x7e 0 1M" -c "read -P 0x7e 0 1M" "$uri" >/dev/null || fail "qemu-io on the mapped socket"
echo "ok: map, socket and URI work"

ls=$("$BLKCTL" nbd ls) || fail "nbd ls"
grep -q "^rbd/m .*$sock" <<<"$ls" || fail "nbd ls: $ls"
"$BLKCTL" --format json nbd ls | python3 -c '
import json,sys; l=json.load(sys.stdin); assert l[0]["image"]=="rbd/m" and l[0]["pid"]>0, l' || fail "nbd ls json"
set +e
out=$("$BLKCTL" nbd map rbd/m 2>&1); rc=$?
set -e
[ $rc = 17 ] && grep -q "already mapped" <<<"$out" || fail "second map: rc=$rc $out"
echo "ok: ls, double map refused ($out)"

pid=$(cat "$TEST_DIR/nbd/rbd~m.pid")
"$BLKCTL" nbd unmap rbd/m || fail "unmap"
kill -0 "$pid" 2>/dev/null && fail "blk-nbd still running after unmap"
[ -e "$sock" ] && fail "socket left behind"
[ -z "$("$BLKCTL" nbd ls | tail -n +2)" ] || fail "ls after unmap: $("$BLKCTL" nbd ls)"
set +e
out=$("$BLKCTL" nbd unmap rbd/m 2>&1); rc=$?
out3=$("$BLKCTL" nbd map rbd/nosuch 2>&1); rc3=$?
out4=$("$BLKCTL" nbd map noslash 2>&1); rc4=$?
set -e
[ $rc = 2 ] && grep -q "not mapped" <<<"$out" || fail "unmap twice: rc=$rc $out"
[ $rc3 -ne 0 ] && grep -q "blk-nbd failed" <<<"$out3" || fail "map of a missing image: rc=$rc3 $out3"
grep -q "No such file\|cannot open image" "$TEST_DIR"/nbd/rbd~nosuch.log || fail "no reason in the map log"
[ $rc4 = 22 ] || fail "map noslash: rc=$rc4 $out4"
echo "ok: unmap, errors ($out / $out3 / $out4)"

# blkctl nbd serve runs blk-nbd in the foreground
P=$(nbd_port)
"$BLKCTL" nbd serve --listen 127.0.0.1:$P rbd/m >>"$TEST_DIR/log/nbd.serve.log" 2>&1 &
spid=$!
track_pid $spid
for _ in $(seq 100); do grep -q serving "$TEST_DIR/log/nbd.serve.log" && break; sleep 0.1; done
qemu-io -f raw -c "read -P 0x7e 0 1M" "nbd://127.0.0.1:$P/rbd/m" >/dev/null || fail "blkctl nbd serve"
kill -TERM $spid; wait $spid || fail "blkctl nbd serve exit status"
echo "ok: blkctl nbd serve"
echo PASS
