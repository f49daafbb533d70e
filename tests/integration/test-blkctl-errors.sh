#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# blkctl's error paths: each prints a clear message and exits with the
# documented code, and changes nothing.
source "$(dirname "$0")/../functions.sh"
make_cluster 3
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30

expect() {   # expect CODE REGEX -- blkctl args...
  local code=$1 re=$2; shift 3
  set +e; out=$("$BLKCTL" "$@" 2>&1); rc=$?; set -e
  [ "$rc" -eq "$code" ] || fail "blkctl $*: exit $rc, want $code ($out)"
  grep -qE "$re" <<<"$out" || fail "blkctl $*: message '$out' does not match /$re/"
  echo "ok: blkctl $* -> $rc: $out"
}
"$BLKCTL" pool create KVMpool 128 >/dev/null
expect 17 "pool 'KVMpool' already exists" -- pool create KVMpool 64
expect 22 "pg_num must be a positive number, got 'abc'" -- pool create x abc
expect 22 "pg_num 0 out of range" -- pool create x 0
expect 22 "pg_num 99999999 out of range" -- pool create x 99999999
expect 22 "pg_num must be a positive number, got '-5'" -- pool create x -5
expect 22 "min_size 3 must not exceed size 2" -- pool create x 8 --size 2 --min-size 3
expect 22 "invalid pool name" -- pool create 'bad/name' 8

expect 22 "usage: blkctl pool rm NAME --yes-i-really-mean-it" -- pool rm KVMpool
expect 2 "pool 'nosuch' does not exist" -- pool rm nosuch --yes-i-really-mean-it
expect 22 "unknown command 'frobnicate'" -- frobnicate
expect 22 "unknown format" -- --format xml status
expect 2 "cannot open /nonexistent/blk.conf" -- -c /nonexistent/blk.conf status
"$BLKCTL" pool ls | grep -q KVMpool || fail "KVMpool lost"
n=$("$BLKCTL" --format json pool ls | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pools"]))')
[ "$n" -eq 1 ] || fail "a failed command created a pool ($n pools)"
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
