#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fio's nbd engine against blk-nbd: a bounded random-write run with
# verify=crc32c at queue depth 16 (every block read back and checked),
# then the same with an OSD killed -9 in the middle and restarted: no I/O
# error reaches the NBD client and every block verifies at the end.
# ASan builds on a shared 2-core machine need more than the default 300 s
: "${BLK_TEST_TIMEOUT:=540}"; export BLK_TEST_TIMEOUT
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || { echo "SKIP: fio has no nbd engine"; exit 77; }
nbd_cluster
"$BLKCTL" image create rbd/fio --size 256M >/dev/null || fail "create"
P=$(nbd_port)
start_nbd main --listen 127.0.0.1:$P rbd/fio
U=nbd://127.0.0.1:$P/rbd/fio

run_fio() {  # run_fio NAME extra-args...
  local name=$1; shift
  local size=${FIO_SIZE:-64M}
  fio --name="$name" --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --bsrange=4k-64k \
    --size="$size" --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --randrepeat=0 --output-format=json "$@" >"$TEST_DIR/$name.json" 2>"$TEST_DIR/$name.err" \
    || { cat "$TEST_DIR/$name.err"; fail "fio $name"; }
  python3 - "$TEST_DIR/$name.json" <<'PY' || fail "fio $name result"
import json,sys
t=open(sys.argv[1]).read()
j=json.loads(t[t.index("{"):])["jobs"][0]   # fio prints a banner first
assert j["error"]==0, j["error"]
w=j["write"]; r=j["read"]
print("  %s: wrote %d MiB (%.0f IOPS), verified %d MiB" % (j["jobname"], w["io_bytes"]>>20, w["iops"], r["io_bytes"]>>20))
assert w["io_bytes"]>0 and r["io_bytes"]>=w["io_bytes"], (w["io_bytes"], r["io_bytes"])
PY
}

run_fio verify
echo "ok: fio randwrite + verify=crc32c"

# kill -9 one OSD while fio writes; restart it; fio must not see an error
FIO_SIZE=256M run_fio failover &
fpid=$!
sleep 1.5
kill -0 $fpid 2>/dev/null || fail "fio finished before the OSD was killed (make it longer)"
kill_osd 2
echo "killed osd.2 during fio"
sleep 4
kill -0 $fpid 2>/dev/null && echo "fio still running with osd.2 down"
start_osd 2
wait $fpid || fail "fio during OSD failure"
echo "ok: fio with an OSD killed and restarted: no error, all blocks verified"
kill -0 "$NBDPID_main" || fail "blk-nbd died"
echo PASS
