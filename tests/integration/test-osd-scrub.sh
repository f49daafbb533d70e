#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Scrub, deep scrub and repair (docs/osd.md "Scrub"): 3 monitors + 3 OSDs.
# A replica's data block is corrupted on its stopped device (blk-osd
# --corrupt-object) -> deep-scrub names the object and the OSD, status
# shows the PG inconsistent (HEALTH_WARN) -> repair pushes the good copy,
# the replica's own copy reads back right.  The same for the primary's copy
# (the authoritative copy then comes from the replicas), and for an object
# removed from a replica (found by a light scrub).  Client reads stay
# correct throughout.  Writers during deep scrubs make chunks retry, never
# inconsistencies; a scrub requested while the PG is degraded waits until
# it is clean.  Periodic scrubs run (osd_scrub_interval = 4s).  Bad
# PGIDs fail with a clear message and exit code.  Measures deep-scrub
# throughput on a one-PG pool.
source "$(dirname "$0")/../functions.sh"
make_cluster 3
osd_conf
cat >>"$BLK_CONF" <<CONF
osd_scrub_interval = 4s
osd_deep_scrub_interval = 0
osd_scrub_chunk = 8
CONF
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 4 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 512M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30

D=$TEST_DIR/data
mkdir -p "$D"

# pg_state PGID: the state the primary reports
pg_state() { "$BLKCTL" --format json pg query "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
wait_pg_clean() {
  local s=""
  for _ in $(seq 300); do
    s=$(pg_state "$1" 2>/dev/null || true)
    case "$s" in active+clean|active+clean+*) return 0 ;; esac
    sleep 0.1
  done
  fail "PG $1 is '$s', not active+clean after 30 s"
}
# acting set and pg of an object: "PGID P R1 R2"
obj_place() {
  "$BLKCTL" --format json osd map rbd "$1" | python3 -c '
import json,sys; d=json.load(sys.stdin); print(d["pgid"], *d["acting"])'
}
check_reads() {
  local i
  for i in $(seq 0 23); do
    [ "${1:-}" = "obj$i" ] && continue
    "$BLKCTL" object get rbd "obj$i" "$D/got" || fail "read obj$i"
    cmp -s "$D/got" "$D/obj$i" || fail "obj$i reads back wrong"
  done
}

# 24 objects, 100 KiB .. 2.5 MiB (multi-step deep reads)
for i in $(seq 0 23); do
  head -c $(( (i % 6) * 500000 + 100000 )) /dev/urandom >"$D/obj$i"
  "$BLKCTL" object put rbd "obj$i" "$D/obj$i" || fail "put obj$i"
done
check_reads

read -r PG P R1 R2 < <(obj_place obj5)
echo "obj5 is in pg $PG on [$P,$R1,$R2]"
wait_pg_clean "$PG"
out=$("$BLKCTL" pg deep-scrub "$PG") || fail "deep-scrub of a clean PG"
echo "$out"
grep -q "0 inconsistent" <<<"$out" || fail "a clean PG is inconsistent"

# ---- 1. a replica's data block is corrupted ----
stop_osd "$R1"
"$BLK_OSD" --corrupt-object "$PG/obj5" --device "$TEST_DIR/osd.$R1.dev" || fail "corrupt tool"
start_osd "$R1"
wait_osds_up 3 30
wait_pg_clean "$PG"
check_reads
out=$("$BLKCTL" pg deep-scrub "$PG") || fail "deep-scrub"
echo "$out"
grep -q "object obj5 on osd.$R1: read error" <<<"$out" || fail "deep scrub did not name obj5 on osd.$R1"
grep -q "1 inconsistent" <<<"$out" || fail "want 1 inconsistent"
grep -q "pg $PG object obj5 on osd.$R1: read error" "$TEST_DIR/log/osd.$P.log" || fail "not logged by the primary"
for _ in $(seq 50); do "$BLKCTL" status | grep -q "inconsistent" && break; sleep 0.1; done
st=$("$BLKCTL" status)
echo "$st"
grep -q "active+clean+inconsistent" <<<"$st" || fail "status does not show the PG inconsistent"
grep -q "HEALTH_WARN" <<<"$st" || fail "status not HEALTH_WARN"
# a periodic light scrub does not clear what the deep scrub found
sleep 5
st=$(pg_state "$PG")
case "$st" in active+clean*+inconsistent) ;; *) fail "inconsistent flag lost: $st" ;; esac
grep -q "$PG: scrub starts" "$TEST_DIR"/log/osd.*.log || fail "no periodic scrub ran"
check_reads obj5
"$BLKCTL" object get rbd obj5 "$D/got" && cmp -s "$D/got" "$D/obj5" || fail "client read of obj5"

out=$("$BLKCTL" pg repair "$PG") || fail "repair"
echo "$out"
grep -q "repaired 1 objects" <<<"$out" || fail "repair did not repair obj5"
grep -q "state active+clean primary" <<<"$out" || fail "not clean after repair"
"$BLKCTL" object get rbd obj5 "$D/got" --osd "$R1" || fail "read osd.$R1's copy"
cmp -s "$D/got" "$D/obj5" || fail "osd.$R1's copy of obj5 is still wrong"
out=$("$BLKCTL" pg deep-scrub "$PG") || fail "deep-scrub after repair"
grep -q "0 inconsistent" <<<"$out" || fail "still inconsistent after repair"
for _ in $(seq 50); do "$BLKCTL" status | grep -q "HEALTH_OK" && break; sleep 0.1; done
"$BLKCTL" status | grep -q "HEALTH_OK" || fail "not HEALTH_OK after repair"

# ---- 2. the primary's copy is corrupted: authority from the replicas ----
read -r PG7 P7 _ _ < <(obj_place obj7)
stop_osd "$P7"
"$BLK_OSD" --corrupt-object "$PG7/obj7" --device "$TEST_DIR/osd.$P7.dev" || fail "corrupt tool"
start_osd "$P7"
wait_osds_up 3 30
wait_pg_clean "$PG7"
out=$("$BLKCTL" pg deep-scrub "$PG7") || fail "deep-scrub $PG7"
echo "$out"
grep -q "object obj7 on osd.$P7: read error" <<<"$out" || fail "primary's bad copy not found"
out=$("$BLKCTL" pg repair "$PG7") || fail "repair $PG7"
echo "$out"
grep -q "repaired 1 objects" <<<"$out" || fail "primary's copy not repaired"
grep -q "repairing obj7 from osd.[0-2]" "$TEST_DIR/log/osd.$P7.log" || fail "no repair logged"
grep "repairing obj7 from" "$TEST_DIR/log/osd.$P7.log" | grep -vq "from osd.$P7" || fail "repaired from the bad copy"
"$BLKCTL" object get rbd obj7 "$D/got" && cmp -s "$D/got" "$D/obj7" || fail "obj7 reads wrong after repair"
check_reads

# ---- 3. an object removed from a replica: a light scrub finds it ----
read -r PG9 _ _ R9 < <(obj_place obj9)
stop_osd "$R9"
"$BLK_OSD" --remove-object "$PG9/obj9" --device "$TEST_DIR/osd.$R9.dev" || fail "remove tool"
start_osd "$R9"
wait_osds_up 3 30
wait_pg_clean "$PG9"
check_reads
out=$("$BLKCTL" pg scrub "$PG9") || fail "scrub $PG9"
echo "$out"
grep -q "object obj9 on osd.$R9: missing" <<<"$out" || fail "light scrub did not find obj9 missing"
out=$("$BLKCTL" pg repair "$PG9") || fail "repair $PG9"
grep -q "repaired 1 objects" <<<"$out" || fail "obj9 not repaired"
"$BLKCTL" object get rbd obj9 "$D/got" --osd "$R9" && cmp -s "$D/got" "$D/obj9" || fail "osd.$R9 lacks obj9 after repair"
check_reads

# ---- writes during a deep scrub: chunks retry, nothing is inconsistent ----
read -r PG1 _ _ _ < <(obj_place obj1)
in_pg1=()
for i in $(seq 0 23); do
  read -r p _ < <(obj_place "obj$i")
  [ "$p" = "$PG1" ] && in_pg1+=("$i")
done
writer() {   # rewrite obj$1 (same bytes, new version) until told to stop
  while [ ! -e "$D/stop" ]; do "$BLKCTL" object put rbd "obj$1" "$D/obj$1" || exit 1; done
}
wpids=()
for i in "${in_pg1[@]:0:3}"; do writer "$i" & wpids+=($!); track_pid $!; done
sleep 0.3
for k in 1 2 3 4 5; do
  out=$("$BLKCTL" pg deep-scrub "$PG1") || fail "deep-scrub during writes"
  echo "$out" | head -1
  grep -q " 0 inconsistent" <<<"$out" || fail "writes during a deep scrub reported as inconsistent: $out"
done
touch "$D/stop"
for p in "${wpids[@]}"; do wait "$p" || fail "writer failed"; done
echo "chunks scrubbed again because of writes: $(cat "$TEST_DIR"/log/osd.*.log | grep -c "written while scrubbed" || true)"
check_reads

# ---- a request made while the PG is degraded waits until it is clean ----
read -r PG2 _ _ R2b < <(obj_place obj2)
stop_osd "$R2b"
"$BLKCTL" pg deep-scrub "$PG2" --timeout 90 >"$D/late.out" 2>&1 &
late=$!
track_pid $late
sleep 2
kill -0 $late 2>/dev/null || fail "scrub of a degraded PG did not wait: $(cat "$D/late.out")"
start_osd "$R2b"
wait $late || fail "scrub requested while degraded failed: $(cat "$D/late.out")"
cat "$D/late.out"
grep -q "deep-scrub done.* 0 inconsistent" "$D/late.out" || fail "late scrub result"
wait_osds_up 3 30

# ---- pg ls / query ----
out=$("$BLKCTL" pg ls rbd)
echo "$out"
[ "$(echo "$out" | grep -c '^1\.')" = 4 ] || fail "pg ls does not list 4 PGs"
"$BLKCTL" pg query "$PG" | grep -q "last deep scrub 20" || fail "pg query has no deep scrub time"

# ---- errors ----
expect_err() {   # CODE PATTERN ARGS...
  local code=$1 pat=$2 rc=0 err
  shift 2
  err=$("$BLKCTL" "$@" 2>&1 >/dev/null) || rc=$?
  [ $rc -eq "$code" ] || fail "blkctl $*: exit $rc, want $code ($err)"
  grep -q "$pat" <<<"$err" || fail "blkctl $*: message '$err' lacks '$pat'"
}
expect_err 2 "pool 'nopool' does not exist" pg scrub nopool.0
expect_err 2 "pool '99' does not exist" pg deep-scrub 99.0
expect_err 2 "has 4 PGs" pg repair rbd.4
expect_err 22 "expected POOL.PG" pg scrub 1
expect_err 22 "hexadecimal" pg scrub 1.xyz
expect_err 22 "unknown pg command" pg frob 1.0
expect_err 22 "usage" pg scrub
expect_err 2 "pool 'nopool' does not exist" pg ls nopool

# ---- deep-scrub throughput: one PG, 24 x 4 MiB ----
"$BLKCTL" pool create bench 1 --failure-domain osd >/dev/null || fail "pool create bench"
head -c 4194304 /dev/urandom >"$D/big"
for i in $(seq 0 23); do "$BLKCTL" object put bench "big$i" "$D/big" || fail "put big$i"; done
wait_pg_clean 2.0
out=$("$BLKCTL" --format json pg deep-scrub 2.0) || fail "deep-scrub bench"
echo "$out"
echo "$out" | python3 -c '
import json,sys; d=json.load(sys.stdin)
assert d["objects"] == 24 and d["inconsistent"] == 0, d
ms = max(d["duration_ms"], 1)
print("MEASURE deep-scrub-pg-MBps %.1f (%d MiB read by each of 3 members in parallel, %d ms)" % (d["bytes"] / 1048576 / (ms / 1000), d["bytes"] >> 20, ms))' ||
  fail "deep-scrub bench result"

for i in 0 1 2; do stop_osd $i; done
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
