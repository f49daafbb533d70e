#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Auth refusals (issue 7 §6, docs/auth.md): 3 monitors + 2 OSDs in cephx
# mode.  Each of these is refused with a clear error and writes nothing:
#   - a client without a key, and one with a wrong key;
#   - a read-only client (osd 'allow r') writing;
#   - a client whose cap names another pool;
#   - a client whose ticket expired (auth_ticket_renew off, 4 s tickets);
#   - a client without mon caps asking for the status; a read-only client
#     changing the map or the auth database.
# And: `auth caps` widening the read-only client's caps takes effect for
# its next session; auth get/get-key/ls/del/import behave.
source "$(dirname "$0")/../functions.sh"
requires python3
make_cluster 3
osd_conf
cat >>"$BLK_CONF" <<CONF
[global]
auth_ticket_ttl = 4s
auth_service_secret_ttl = 4s
CONF
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
grep -q '^auth_mode = cephx' "$BLK_CONF" || fail "cluster init did not enable cephx"
[ "$(stat -c %a "$TEST_DIR/blk.client.admin.keyring")" = 600 ] || fail "admin keyring not 0600"
"$BLKCTL" pool create rbd 8 --size 2 --min-size 1 --failure-domain osd >/dev/null || fail "pool create"
"$BLKCTL" pool create other 8 --size 2 --min-size 1 --failure-domain osd >/dev/null || fail "pool create other"
for i in 0 1; do mkfs_osd $i 256M; done
for i in 0 1; do start_osd $i; done
wait_osds_up 2 30
echo hello >"$TEST_DIR/data"
"$BLKCTL" object put rbd admin-obj "$TEST_DIR/data" || fail "admin write"

# entities
"$BLKCTL" auth get-or-create client.ro mon 'allow r' osd 'allow r pool=rbd' -o "$TEST_DIR/ro.keyring" \
  || fail "get-or-create client.ro"
grep -q '^\[client.ro\]' "$TEST_DIR/ro.keyring" || fail "keyring section"
grep -q "^	key = " "$TEST_DIR/ro.keyring" || fail "keyring key line"
[ "$(stat -c %a "$TEST_DIR/ro.keyring")" = 600 ] || fail "-o keyring not 0600"
"$BLKCTL" auth get-or-create client.other mon 'allow r' osd 'allow rwx pool=other' \
  -o "$TEST_DIR/other.keyring" || fail "get-or-create client.other"
"$BLKCTL" auth get-or-create client.nomon osd 'allow rwx' -o "$TEST_DIR/nomon.keyring" || fail "nomon"
key=$("$BLKCTL" auth get-or-create client.ro --print-key) || fail "--print-key"
[ "$key" = "$("$BLKCTL" auth get-key client.ro)" ] || fail "get-key differs from get-or-create"
[ ${#key} = 44 ] || fail "key is not 44 base64 characters: $key"
"$BLKCTL" auth get client.ro | grep -q 'caps osd = "allow r pool=rbd"' || fail "auth get"
"$BLKCTL" auth ls | grep -q '^\[client.other\]' || fail "auth ls"
"$BLKCTL" auth ls | grep -q 'key = ' && fail "auth ls shows keys"
out=$("$BLKCTL" auth get-or-create client.bad mon 'allow rr' 2>&1) && fail "bad caps accepted"
grep -q "column 8: 'r' repeated" <<<"$out" || fail "bad caps error: $out"

expect_fail() {   # expect_fail PATTERN CMD...: CMD fails and prints PATTERN
  local pat=$1 out rc
  shift
  out=$("$@" 2>&1) && fail "succeeded: $*"
  rc=$?
  grep -q -- "$pat" <<<"$out" || fail "'$*' failed (rc $rc) without '$pat': $out"
  echo "refused (rc $rc): $out"
}
absent() {        # absent OBJ: the object was not written (read as admin)
  out=$("$BLKCTL" --timeout 10 object stat "${2:-rbd}" "$1" 2>&1) && fail "$1 exists: $out"
  grep -qi "no such\|not found\|ENOENT" <<<"$out" || fail "stat $1: $out"
}

echo "== no key"
printf '[client.ro]\n' >"$TEST_DIR/empty.keyring"
chmod 600 "$TEST_DIR/empty.keyring"
expect_fail "no key for client.nokey" "$BLKCTL" --timeout 10 --name client.nokey object put rbd nokey "$TEST_DIR/data"
absent nokey
echo "== unknown entity (key of another)"
echo "$key" >"$TEST_DIR/ro.key"; chmod 600 "$TEST_DIR/ro.key"
expect_fail "authentication as client.ghost failed: auth: the monitor refused" "$BLKCTL" --timeout 10 \
  --name client.ghost --key-file "$TEST_DIR/ro.key" object put rbd ghost "$TEST_DIR/data"
absent ghost
echo "== wrong key"
python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' >"$TEST_DIR/wrong.key"
chmod 600 "$TEST_DIR/wrong.key"
expect_fail "authentication as client.ro failed" "$BLKCTL" --timeout 10 --id ro \
  --key-file "$TEST_DIR/wrong.key" object put rbd wrongkey "$TEST_DIR/data"
absent wrongkey
grep -q "authentication of client.ro .* refused" "$TEST_DIR"/log/mon.*.log || fail "mon did not log the refusal"
echo "== keyring wider than 0600: warning"
cp "$TEST_DIR/ro.keyring" "$TEST_DIR/ro644.keyring"; chmod 644 "$TEST_DIR/ro644.keyring"
out=$("$BLKCTL" --id ro --keyring "$TEST_DIR/ro644.keyring" object get rbd admin-obj - 2>&1) || fail "read with 0644 keyring: $out"
grep -q "chmod 600" <<<"$out" || fail "no permission warning: $out"
echo "== read-only cap"
"$BLKCTL" --id ro --keyring "$TEST_DIR/ro.keyring" object get rbd admin-obj - | grep -q hello || fail "ro read"
expect_fail "permission denied: client.ro" "$BLKCTL" --timeout 10 --id ro --keyring "$TEST_DIR/ro.keyring" \
  object put rbd ro-obj "$TEST_DIR/data"
absent ro-obj
expect_fail "permission denied" "$BLKCTL" --timeout 10 --id ro --keyring "$TEST_DIR/ro.keyring" \
  pool create ro-pool 8
"$BLKCTL" pool ls | grep -q ro-pool && fail "ro created a pool"
expect_fail "permission denied" "$BLKCTL" --timeout 10 --id ro --keyring "$TEST_DIR/ro.keyring" \
  auth get-or-create client.evil mon 'allow *' osd 'allow *'
"$BLKCTL" auth get client.evil 2>/dev/null && fail "client.evil was created"
expect_fail "permission denied" "$BLKCTL" --timeout 10 --id ro --keyring "$TEST_DIR/ro.keyring" auth get-key client.admin
echo "== cap for another pool"
"$BLKCTL" --id other --keyring "$TEST_DIR/other.keyring" object put other o1 "$TEST_DIR/data" || fail "other pool write"
expect_fail "permission denied: client.other" "$BLKCTL" --timeout 10 --id other --keyring "$TEST_DIR/other.keyring" \
  object put rbd other-obj "$TEST_DIR/data"
absent other-obj
expect_fail "permission denied: client.other" "$BLKCTL" --timeout 10 --id other --keyring "$TEST_DIR/other.keyring" \
  object get rbd admin-obj -
echo "== no mon caps"
expect_fail "permission denied: client.nomon" "$BLKCTL" --timeout 10 --id nomon --keyring "$TEST_DIR/nomon.keyring" status
echo "== expired ticket (renewal off, 4 s tickets)"
out=$("$BLKCTL" --timeout 30 --id other --keyring "$TEST_DIR/other.keyring" --set auth_ticket_renew=false \
  object bench other --seconds 8 --size 4096 --qd 2 --objects 4 2>&1) && fail "bench with an expired ticket succeeded: $out"
grep -q "expired" <<<"$out" || fail "no 'expired' in: $out"
echo "refused: $(echo "$out" | grep expired | head -1)"
echo "== renewal on: the same bench runs through service secret rotations"
r0=$(grep -ho "rotating the OSD service secret to id [0-9]*" "$TEST_DIR"/log/mon.*.log | tail -1 | grep -o '[0-9]*$')
out=$("$BLKCTL" --timeout 30 --id other --keyring "$TEST_DIR/other.keyring" \
  object bench other --seconds 12 --size 4096 --qd 2 --objects 4) || fail "bench with renewal failed: $out"
echo "$out"
grep -q " 0 errors" <<<"$out" || fail "errors during rotation: $out"
r1=$(grep -ho "rotating the OSD service secret to id [0-9]*" "$TEST_DIR"/log/mon.*.log | tail -1 | grep -o '[0-9]*$')
echo "service secret id $r0 -> $r1 during the bench"
[ $((r1 - r0)) -ge 2 ] || fail "fewer than 2 rotations during the bench ($r0 -> $r1)"
grep -q "service secret now id $r1" "$TEST_DIR"/log/osd.*.log || fail "OSDs did not fetch secret $r1"
echo "== auth caps takes effect for new sessions"
"$BLKCTL" auth caps client.ro mon 'allow r' osd 'allow rw pool=rbd' | grep -q "updated caps" || fail "auth caps"
"$BLKCTL" --id ro --keyring "$TEST_DIR/ro.keyring" object put rbd ro-obj2 "$TEST_DIR/data" || fail "write after caps"
"$BLKCTL" object get rbd ro-obj2 - | grep -q hello || fail "ro-obj2 content"
echo "== del and import"
"$BLKCTL" auth get client.ro >"$TEST_DIR/ro-full.keyring" || fail "auth get"
"$BLKCTL" auth del client.ro | grep -q removed || fail "auth del"
expect_fail "authentication as client.ro failed" "$BLKCTL" --timeout 10 --id ro --keyring "$TEST_DIR/ro.keyring" \
  object get rbd admin-obj -
"$BLKCTL" auth import -i "$TEST_DIR/ro-full.keyring" | grep -q "imported 1" || fail "auth import"
"$BLKCTL" auth get client.ro | grep -q 'caps osd = "allow rw pool=rbd"' || fail "imported caps"
"$BLKCTL" --id ro --keyring "$TEST_DIR/ro.keyring" object get rbd admin-obj - | grep -q hello || fail "read after import"
for i in 0 1; do stop_osd $i; done
echo PASS
