#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Wire protection against a man in the middle (issue 7 §6, docs/auth.md
# §6-§7): a proxy (auth-proxy.py) between blkctl and the leader monitor
# flips one bit of one frame after the auth exchange — in the MAC/tag
# trailer, or in the payload with the crcs recomputed as an attacker
# would, client->server and server->client — in cephx (signed) and in
# secure (encrypted) mode.  Every time the receiver refuses the frame and
# closes the connection (logged), the command fails, and a change sent
# through the proxy is not applied.  A recorded authentication (hello +
# proof) replayed on a new connection is refused.  Without tampering the
# same proxy passes everything (control).
source "$(dirname "$0")/../functions.sh"
requires python3
PROXY="$(dirname "$0")/auth-proxy.py"
make_cluster 3
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30

run_proxy() {   # run_proxy FLIP [--record FILE]: starts the proxy to the leader on $PPORT
  PPORT=$(free_port)
  python3 "$PROXY" proxy "$PPORT" "$LPORT" --flip "$@" >"$TEST_DIR/proxy.out" 2>>"$TEST_DIR/log/proxy.log" &
  PPID_=$!
  track_pid $PPID_
  for _ in $(seq 50); do grep -q ready "$TEST_DIR/proxy.out" 2>/dev/null && break; sleep 0.1; done
}
stop_proxy() { kill "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null || true; }
via_proxy() {   # blkctl through the proxy (the leader only)
  "$BLKCTL" --timeout "${T:-4}" --set mon_initial_members="$L" --set mon_host="127.0.0.1:$PPORT" "$@"
}

for mode in cephx secure; do
  echo "=== auth_mode $mode"
  if [ "$mode" = secure ]; then
    for m in "${MONS[@]}"; do stop_mon "$m"; done
    sed -i 's/^auth_mode = cephx/auth_mode = secure/' "$BLK_CONF"
    for m in "${MONS[@]}"; do start_mon "$m"; done
    wait_quorum 30
  fi
  L=$(leader)
  LPORT=$(python3 -c '
import sys, re
c = open(sys.argv[1]).read()
names = re.search(r"^mon_initial_members *= *(.*)$", c, re.M).group(1).replace(" ", "").split(",")
hosts = re.search(r"^mon_host *= *(.*)$", c, re.M).group(1).replace(" ", "").split(",")
print(hosts[names.index(sys.argv[2])].rsplit(":", 1)[1])' "$BLK_CONF" "$L")
  echo "leader mon.$L on port $LPORT"

  # control: the proxy without a flip in range changes nothing
  run_proxy c2s:999:trailer
  out=$(T=10 via_proxy status 2>&1) || fail "$mode: status through an honest proxy: $out"
  stop_proxy

  n=0
  for flip in c2s:2:trailer c2s:2:payload s2c:2:trailer s2c:2:payload; do
    n=$((n + 1))
    pool="t$mode$n"
    run_proxy "$flip"
    before=$(cat "$TEST_DIR"/log/*.log | grep -c "failed $mode verification" || true)
    out=$(via_proxy pool create "$pool" 8 2>&1) && fail "$mode $flip: command succeeded through a tampering proxy"
    stop_proxy
    grep -q "flipped a bit" "$TEST_DIR/log/proxy.log" || fail "the proxy flipped nothing"
    after=$(cat "$TEST_DIR"/log/*.log | grep -c "failed $mode verification" || true)
    # c2s: the monitor refuses (its log); s2c: blkctl refuses (its stderr)
    if [ "${flip%%:*}" = c2s ]; then
      [ "$after" -gt "$before" ] || fail "$mode $flip: the monitor did not log a failed verification"
      "$BLKCTL" --timeout 10 pool ls | grep -q " $pool " && fail "$mode $flip: the tampered change was applied"
    else
      grep -q "failed $mode verification" <<<"$out" || fail "$mode $flip: blkctl did not refuse the reply: $out"
    fi
    echo "$mode $flip: refused ($(echo "$out" | tail -1 | cut -c1-150))"
  done
  > "$TEST_DIR/log/proxy.log"
done

echo "=== replayed authentication"
run_proxy c2s:999:trailer --record "$TEST_DIR/auth.rec"
T=10 via_proxy status >/dev/null || fail "status through the recording proxy"
stop_proxy
[ -s "$TEST_DIR/auth.rec" ] || fail "nothing recorded"
python3 "$PROXY" replay "$LPORT" "$TEST_DIR/auth.rec" || fail "the replayed authentication was accepted"
sleep 0.3
grep -q "authentication of client.admin from .* refused: .*proof" "$TEST_DIR"/log/mon.$L.log ||
  fail "the monitor did not log the replay: $(grep refused "$TEST_DIR"/log/mon.$L.log | tail -2)"
grep "refused" "$TEST_DIR"/log/mon.$L.log | tail -1
echo PASS
