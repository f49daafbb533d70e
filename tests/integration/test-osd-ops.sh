#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Object ops for images (docs/osd.md "Object ops"): 3 monitors, 3 OSDs
# (one host, failure domain osd), pool size 3 / min_size 2, all through
# `blkctl object ...`:
#   1. zero / truncate / xattrs / omap / mapext, each change read back from
#      the primary and from every OSD's own copy (--osd N), error paths
#      with their exact message and exit code;
#   2. the version guard (compare-and-swap, 0.0 = must not exist);
#   3. exclusive locks: contention, renewal, expiry, unlock, break;
#   4. fencing: a blocklisted client's ops fail with ESHUTDOWN (108) on
#      every OSD, the breaker's ops go through; blocklist rm/expiry;
#   5. a header object with xattrs, a lock and omap survives kill -9 of an
#      OSD: a few changes made while it is down reach it by recovery (log),
#      many more (beyond osd_pg_log_max = 16) by backfill.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
OSD_PG_LOG_MAX=16 osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 8 --size 3 --min-size 2 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 256M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30

B() { "$BLKCTL" "$@"; }
# expect_err CODE MESSAGE-SUBSTRING CMD...: the command fails with exit
# code CODE and prints MESSAGE on stderr
expect_err() {
  local code=$1 msg=$2 rc out
  shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "'$*' exited $rc, expected $code: $out"
  case "$out" in *"$msg"*) ;; *) fail "'$*' said '$out', expected '$msg'";; esac
}
# on_all CMD...: run CMD with --osd 0, 1, 2; all outputs must equal $want
on_all() {
  local i got
  for i in 0 1 2; do
    got=$("$@" --osd $i) || fail "'$*' --osd $i failed"
    [ "$got" = "$want" ] || fail "osd.$i: '$*' gave '$got', expected '$want'"
  done
}

echo "== 1. zero, truncate, xattrs, omap, mapext"
head -c 65536 /dev/urandom >"$TEST_DIR/a"
B object put rbd obj "$TEST_DIR/a"
B object zero rbd obj 4096 8192 >/dev/null
python3 - "$TEST_DIR/a" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[4096:12288] = bytes(8192)
open(sys.argv[1] + '.z', 'wb').write(b)
PY
for i in 0 1 2; do
  B object get rbd obj "$TEST_DIR/got.$i" --osd $i
  cmp "$TEST_DIR/a.z" "$TEST_DIR/got.$i" || fail "osd.$i: zeroed range differs"
done
want="0 4096
12288 53248"
on_all B object mapext rbd obj
want="16384 4096"
on_all B object mapext rbd obj 16384 4096
B object truncate rbd obj 20000 >/dev/null
want="0 4096
12288 7712"
on_all B object mapext rbd obj
s=$(B object stat rbd obj) || fail "stat"
case "$s" in "rbd/obj size 20000 version "*) ;; *) fail "stat after truncate: $s";; esac
B object truncate rbd fresh 12345 >/dev/null
want="rbd/fresh size 12345"
for i in 0 1 2; do
  s=$(B object stat rbd fresh --osd $i); [ "${s% version*}" = "$want" ] || fail "osd.$i: $s"
done
want=""
on_all B object mapext rbd fresh
expect_err 2 "no such object" B object mapext rbd nosuch

B object setxattr rbd obj size 1048576 >/dev/null
B object setxattr rbd obj features layering >/dev/null
want=1048576
on_all B object getxattr rbd obj size
B object rmxattr rbd obj features >/dev/null
expect_err 61 "no such attribute" B object getxattr rbd obj features
expect_err 61 "no such attribute" B object rmxattr rbd obj features
expect_err 2 "no such object" B object rmxattr rbd nosuch size
expect_err 2 "no such object" B object getxattr rbd nosuch size
expect_err 22 "attribute names starting with '@' are reserved" B object getxattr rbd obj @ver
expect_err 22 "usage:" B object setxattr rbd obj onlykey
B object setxattr rbd newobj k v >/dev/null
want=v
on_all B object getxattr rbd newobj k

for k in snap.1 snap.2 snap.3 zeta; do B object omap-set rbd hdr "$k" "val-$k" >/dev/null; done
B object omap-rm rbd hdr zeta >/dev/null
want=val-snap.2
on_all B object omap-get rbd hdr snap.2
want="snap.1	val-snap.1
snap.2	val-snap.2
snap.3	val-snap.3"
on_all B object omap-ls rbd hdr
want="snap.2	val-snap.2
(more)"
on_all B object omap-ls rbd hdr --after snap.1 --max 1
expect_err 61 "no such key" B object omap-get rbd hdr zeta
expect_err 2 "no such object" B object omap-rm rbd nosuch k

echo "== 2. version guard"
jver() { B --format json object stat rbd "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%d.%d" % (d["version_epoch"], d["version"]))'; }
v1=$(jver hdr)
out=$(B object setxattr rbd hdr owner a --assert-version "$v1") || fail "guarded setxattr at $v1"
v2=${out#version }
[ "$v2" = "$(jver hdr)" ] || fail "reply version $v2 is not the object's $(jver hdr)"
[ "$v2" != "$v1" ] || fail "version did not change"
q() { echo "$1" | tr . "'"; }
expect_err 125 "version mismatch: object is at $(q "$v2") (expected $(q "$v1"))" \
  B object setxattr rbd hdr owner b --assert-version "$v1"
expect_err 125 "object version $v2" B object omap-set rbd hdr k v --assert-version "$v1"
want=a
on_all B object getxattr rbd hdr owner
expect_err 61 "no such key" B object omap-get rbd hdr k
B object put rbd cas "$TEST_DIR/a" --assert-version 0.0 >/dev/null || fail "create-if-absent"
expect_err 125 "version mismatch: object is at" B object put rbd cas "$TEST_DIR/a" --assert-version 0.0
expect_err 125 "version mismatch: object does not exist (expected 3'1)" \
  B object setxattr rbd absent k v --assert-version 3.1
expect_err 2 "no such object" B object stat rbd absent
expect_err 22 "bad --assert-version 'x'" B object put rbd cas "$TEST_DIR/a" --assert-version x
# concurrent compare-and-swap: of 6 writers holding the same version, one wins
v=$(jver hdr)
cas_pids=()
for n in 1 2 3 4 5 6; do
  (B object setxattr rbd hdr winner "w$n" --assert-version "$v" >/dev/null 2>&1 && echo "w$n" >>"$TEST_DIR/winners") &
  cas_pids+=($!)
done
wait "${cas_pids[@]}" || true
[ "$(wc -l <"$TEST_DIR/winners")" = 1 ] || fail "CAS winners: $(cat "$TEST_DIR/winners")"
want=$(cat "$TEST_DIR/winners")
on_all B object getxattr rbd hdr winner

echo "== 3. locks"
A=aaaa1111 BB=bbbb2222
B object lock rbd hdr excl cookieA --nonce $A --lease-ms 3000 >/dev/null || fail "lock"
expect_err 16 "lock 'excl' is held by client $A (cookie 'cookieA') for" \
  B object lock rbd hdr excl cookieB --nonce $BB
expect_err 16 "is held by client $A" B object lock rbd hdr excl otherCookie --nonce $A
info=$(B object lock-info rbd hdr excl)
case "$info" in "holder $A cookie cookieA expires_in_ms "*) ;; *) fail "lock-info: $info";; esac
B object lock rbd hdr excl cookieA --nonce $A --lease-ms 60000 >/dev/null || fail "renewal"
left=$(B --format json object lock-info rbd hdr excl | python3 -c 'import json,sys; print(json.load(sys.stdin)["expires_in_ms"])')
[ "$left" -gt 30000 ] || fail "renewal did not extend the lease ($left ms left)"
for i in 0 1 2; do
  B object lock-info rbd hdr excl --osd $i | grep -q "^holder $A cookie cookieA " || fail "osd.$i has no lock record"
done
expect_err 1 "lock 'excl' is held by client $A (cookie 'cookieA'), not by this client" \
  B object unlock rbd hdr excl cookieA --nonce $BB
B object unlock rbd hdr excl cookieA --nonce $A >/dev/null || fail "unlock"
[ "$(B object lock-info rbd hdr excl)" = free ] || fail "lock not free after unlock"
expect_err 2 "lock 'excl' is not held" B object unlock rbd hdr excl cookieA --nonce $A
# expiry
B object lock rbd hdr excl cookieA --nonce $A --lease-ms 1000 >/dev/null
sleep 1.5
B object lock rbd hdr excl cookieB --nonce $BB --lease-ms 60000 >/dev/null || fail "lock after expiry"
B object lock-info rbd hdr excl | grep -q "^holder $BB cookie cookieB " || fail "B does not hold the lock"
# break
expect_err 125 "lock 'excl' is held by client $BB, not wrongnonce" \
  B object lock-break rbd hdr excl wrongnonce
B object lock-break rbd hdr excl $BB >/dev/null || fail "lock-break"
want=free
on_all B object lock-info rbd hdr excl
expect_err 2 "lock 'excl' is not held" B object lock-break rbd hdr excl
expect_err 22 "usage:" B object lock rbd hdr excl

echo "== 4. fencing"
B object lock rbd hdr excl cA --nonce $A --lease-ms 600000 >/dev/null
B object put rbd data1 "$TEST_DIR/a" --nonce $A || fail "holder write"
out=$(B osd blocklist add $A) || fail "blocklist add"
E=$(echo "$out" | sed -n 's/^blocklisted client '$A' (epoch \([0-9]*\))$/\1/p')
[ -n "$E" ] || fail "blocklist add said: $out"
B osd blocklist ls | grep -qx "$A" || fail "blocklist ls: $(B osd blocklist ls)"
# the breaker (map epoch >= E) takes over: break, lock, write
B object lock-break rbd hdr excl $A --nonce $BB >/dev/null || fail "break the fenced holder's lock"
B object lock rbd hdr excl cB --nonce $BB >/dev/null || fail "breaker lock"
head -c 1000 /dev/urandom >"$TEST_DIR/b"
B object put rbd data1 "$TEST_DIR/b" --nonce $BB || fail "breaker write"
expect_err 108 "object put rbd/data1: client $A is blocklisted" B object put rbd data1 "$TEST_DIR/a" --nonce $A
expect_err 108 "client $A is blocklisted" B object lock rbd hdr excl cA --nonce $A
expect_err 108 "client $A is blocklisted" B object get rbd data1 --nonce $A
for i in 0 1 2; do
  expect_err 108 "client $A is blocklisted" B object stat rbd data1 --osd $i --nonce $A
  B object get rbd data1 "$TEST_DIR/got.$i" --osd $i
  cmp "$TEST_DIR/b" "$TEST_DIR/got.$i" || fail "osd.$i: fenced client's write got through"
done
grep -q "refusing op .*client $A is blocklisted" "$TEST_DIR"/log/osd.*.log || fail "no OSD logged the refusal"
B osd blocklist rm $A >/dev/null || fail "blocklist rm"
expect_err 2 "client $A is not blocklisted" B osd blocklist rm $A
B object stat rbd data1 --nonce $A >/dev/null || fail "un-blocklisted client still refused"
C=cccc3333
B osd blocklist add $C --expire 2 | grep -q "blocklisted client $C for 2 s" || fail "blocklist add --expire"
expect_err 108 "client $C is blocklisted" B object stat rbd data1 --nonce $C
sleep 2.5
B object stat rbd data1 --nonce $C >/dev/null || fail "blocklist entry did not expire"
B osd blocklist ls | grep -q $C && fail "expired entry listed"
expect_err 22 "bad client nonce 'bad!'" B osd blocklist add 'bad!'
expect_err 22 "bad --expire 'x'" B osd blocklist add $C --expire x
expect_err 22 "bad --nonce" B object stat rbd data1 --nonce 'no!'

echo "== 5. xattrs, lock and omap survive kill -9 + recovery and backfill"
wait_clean() {
  local s
  for _ in $(seq 300); do
    s=$(B --format json status | python3 -c 'import json,sys; d=json.load(sys.stdin)["pgmap"]["pgs_by_state"]; print(",".join("%s=%d"%(x["state_name"],x["count"]) for x in d))')
    [ "$s" = "active+clean=8" ] && return 0
    sleep 0.1
  done
  fail "PGs not clean: $s"
}
# check_hdr: every OSD's copy of hdr holds the expected state
check_hdr() {
  want="$1"; on_all B object getxattr rbd hdr size
  want="$2"; on_all B object omap-ls rbd hdr
  local i
  for i in 0 1 2; do
    B object lock-info rbd hdr excl --osd $i | grep -q "^holder $BB cookie $3 " || fail "osd.$i: lock record lost"
    B object getxattr rbd hdr owner --osd $i >/dev/null 2>&1 && fail "osd.$i: removed xattr came back"
  done
  want=$(B object stat rbd hdr); on_all B object stat rbd hdr
}
kill_osd 1
wait_osd 1 status down 10 >/dev/null
B object setxattr rbd hdr size 2097152 >/dev/null
B object rmxattr rbd hdr owner >/dev/null
B object omap-set rbd hdr snap.4 val-snap.4 >/dev/null
B object omap-rm rbd hdr snap.1 >/dev/null
B object lock rbd hdr excl cB --nonce $BB >/dev/null
start_osd 1
wait_osds_up 3 30
wait_clean
check_hdr 2097152 "snap.2	val-snap.2
snap.3	val-snap.3
snap.4	val-snap.4" cB
echo "recovered by log: ok"
kill_osd 2
wait_osd 2 status down 10 >/dev/null
for n in $(seq 10 40); do B object omap-set rbd hdr "snap.$n" "val-$n" >/dev/null; done
B object omap-rm rbd hdr snap.2 >/dev/null
B object setxattr rbd hdr size 4194304 >/dev/null
B object unlock rbd hdr excl cB --nonce $BB >/dev/null
B object lock rbd hdr excl cB2 --nonce $BB >/dev/null
start_osd 2
wait_osds_up 3 30
wait_clean
grep -q "osd.2 is behind the log" "$TEST_DIR"/log/osd.*.log || fail "osd.2 was not backfilled"
expect=$( (for n in $(seq 10 40); do printf 'snap.%s\tval-%s\n' $n $n; done
          printf 'snap.3\tval-snap.3\nsnap.4\tval-snap.4\n') | LC_ALL=C sort)
check_hdr 4194304 "$expect" cB2
echo "recovered by backfill: ok"
for i in 0 1 2; do stop_osd $i; done
echo PASS
