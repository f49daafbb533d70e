# SPDX-License-Identifier: Apache-2.0
# Shared helpers for tests/integration/test-*.sh (sourced).
#
#   requires CMD...           skip the test (exit 77) when a command is missing
#   cleanup_fn FUNC           run FUNC at exit (in reverse order of registration)
#   track_pid PID             kill PID (TERM, then KILL) at exit
#   make_cluster N            blkctl cluster init with N monitors on free ports
#   start_mon NAME            start one monitor in the background, tracked
#   stop_mon NAME / kill_mon NAME   TERM or KILL it (by its pid file)
#   wait_quorum [SECS]        until blkctl status answers
#   leader                    the current leader's name
#   fail MSG                  print and exit 1
# Every test runs with a hard time limit (BLK_TEST_TIMEOUT, default 300 s)
# and its own directory under $TMPDIR, removed at exit unless KEEP=1.
set -euo pipefail

BLK_BUILD_DIR=${BLK_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build}
BLKCTL=$BLK_BUILD_DIR/client/blkctl
BLK_MON=$BLK_BUILD_DIR/mon/blk-mon
TEST_NAME=$(basename "$0" .sh)
TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/blk-$TEST_NAME.XXXXXX")
export BLK_CONF=$TEST_DIR/blk.conf
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

_cleanups=()
_pids=()
cleanup_fn() { _cleanups+=("$1"); }
track_pid() { _pids+=("$1"); }

_run_cleanup() {
  local rc=$?
  set +e
  local i
  _kill_watchdog
  for ((i=${#_cleanups[@]}-1; i>=0; i--)); do "${_cleanups[$i]}"; done
  for p in "${_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  # sanitizer reports from daemons fail the test
  if grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$TEST_DIR"/log/*.log 2>/dev/null; then
    echo "FAIL: a daemon reported a sanitizer error (logs above)"
    grep -hE -A20 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$TEST_DIR"/log/*.log | head -60
    rc=1
  fi
  if [ $rc -ne 0 ]; then
    echo "--- $TEST_NAME failed (rc=$rc); last log lines:"
    tail -n 15 "$TEST_DIR"/log/*.log 2>/dev/null
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$TEST_DIR"
  exit $rc
}
trap _run_cleanup EXIT
trap 'echo "FAIL: $TEST_NAME exceeded ${BLK_TEST_TIMEOUT:-300}s"; exit 124' ALRM
# The watchdog must not hold our stdout (ctest waits for the pipe to close)
# and its sleep is killed with it (own process group).
setsid bash -c "exec >/dev/null 2>&1; sleep ${BLK_TEST_TIMEOUT:-300}; kill -ALRM $$" &
_watchdog=$!
_kill_watchdog() { kill -TERM -- -"$_watchdog" 2>/dev/null || kill "$_watchdog" 2>/dev/null; }

requires() {
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { echo "SKIP: $c not installed"; exit 77; }
  done
}

fail() { echo "FAIL: $*"; exit 1; }

# A free TCP port on 127.0.0.1 (bound and released by python).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_cluster() {
  local n=$1 args=() names=(a b c d e f g)
  for ((i=0; i<n; i++)); do args+=(--mon "${names[$i]}=127.0.0.1:$(free_port)"); done
  mkdir -p "$TEST_DIR/log"
  "$BLKCTL" cluster init --run-dir "$TEST_DIR" "${args[@]}" >/dev/null
  # faster failure detection for tests
  cat >>"$BLK_CONF" <<CONF
[mon]
mon_election_timeout = ${MON_ELECTION_TIMEOUT:-500ms}
mon_heartbeat_interval = 50ms
mon_snapshot_every = ${MON_SNAPSHOT_EVERY:-1000}
CONF
  MONS=("${names[@]:0:$n}")
}

start_mon() {
  "$BLK_MON" --id "$1" >>"$TEST_DIR/log/mon.$1.log" 2>&1 &
  track_pid $!
  eval "MONPID_$1=$!"
}

mon_pid() { eval "echo \${MONPID_$1:-}"; }
kill_mon() { local p; p=$(mon_pid "$1"); kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
stop_mon() { local p; p=$(mon_pid "$1"); kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }

wait_quorum() {
  local secs=${1:-30}
  "$BLKCTL" --timeout "$secs" status >/dev/null || fail "no quorum within ${secs}s"
}

leader() {
  "$BLKCTL" --timeout 20 mon stat --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'
}

ms_now() { date +%s%3N; }

# ---- OSDs (issue 4) ---------------------------------------------------------
#   osd_conf                   append fast OSD timings to blk.conf ([global])
#   mkfs_osd N [SIZE]          format $TEST_DIR/osd.N.dev (default 512M)
#   start_osd N [OPTS]         start blk-osd N in the background, tracked
#   stop_osd N / kill_osd N    TERM (waits for exit) or KILL it
#   wait_osds_up N [SECS]      until osd tree shows N OSDs up
#   acting_of POOL NAME        an object's acting set
#   put_blocked POOL NAME FILE MIN_MS   a write below min_size waits, then EAGAIN
BLK_OSD=$BLK_BUILD_DIR/osd/blk-osd

osd_conf() {
  if [ "${BLK_BENCH_CONF:-0}" = 1 ]; then
    # benchmarks (tests/bench): the shipped defaults (journal size, heartbeat,
    # beacon, stats and lease timings), as an operator would run them
    printf '[global]\nosd_host = %s\n' "${OSD_HOST:-testhost}" >>"$BLK_CONF"
    return 0
  fi
  cat >>"$BLK_CONF" <<CONF
[global]
osd_heartbeat_interval = ${OSD_HB_INTERVAL:-250ms}
osd_heartbeat_grace = ${OSD_HB_GRACE:-1500ms}
osd_beacon_interval = ${OSD_BEACON_INTERVAL:-500ms}
mon_osd_beacon_grace = ${MON_OSD_BEACON_GRACE:-4s}
mon_osd_down_out_interval = ${MON_OSD_DOWN_OUT:-10m}
osd_stats_interval = 500ms
osd_op_timeout = ${OSD_OP_TIMEOUT:-3s}
osd_op_timeout_undersized = ${OSD_OP_TIMEOUT_UNDERSIZED:-30s}
osd_host = ${OSD_HOST:-testhost}
osd_store_journal_size = 16M
osd_async_recovery = ${OSD_ASYNC_RECOVERY:-false}
osd_pg_log_max = ${OSD_PG_LOG_MAX:-3000}
osd_lease = ${OSD_LEASE:-2s}
osd_lease_margin = ${OSD_LEASE_MARGIN:-1s}
CONF
}

mkfs_osd() {
  "$BLK_OSD" --mkfs --osd-id "$1" --device "$TEST_DIR/osd.$1.dev" --size "${2:-512M}" \
    >>"$TEST_DIR/log/osd.$1.log" 2>&1 || fail "mkfs of osd.$1"
}

# osd_key N: the OSD's own key (auth, docs/auth.md), created once through the
# monitors and kept next to its device as osd.N.keyring (mode 0600).
osd_key() {
  local kr=$TEST_DIR/osd.$1.keyring
  [ -s "$kr" ] && return 0
  grep -q '^auth_mode *= *none' "$BLK_CONF" && return 0
  "$BLKCTL" --timeout 60 auth get-or-create "osd.$1" mon 'allow profile osd' osd 'allow *' \
    -o "$kr" || fail "creating the key of osd.$1"
}

start_osd() {   # start_osd N [blk-osd options, e.g. --set K=V]
  local id=$1
  shift
  osd_key "$id"
  "$BLK_OSD" --id "$id" -c "$BLK_CONF" --device "$TEST_DIR/osd.$id.dev" \
    --set keyring="$TEST_DIR/osd.$id.keyring" "$@" \
    >>"$TEST_DIR/log/osd.$id.log" 2>&1 &
  track_pid $!
  eval "OSDPID_$id=$!"
}

osd_pid() { eval "echo \${OSDPID_$1:-}"; }
kill_osd() { local p; p=$(osd_pid "$1"); kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
stop_osd() { local p; p=$(osd_pid "$1"); kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }

# osd_field N FIELD: status|in from osd tree --format json
osd_field() {
  "$BLKCTL" --timeout 10 --format json osd tree | python3 -c "
import json,sys
d=json.load(sys.stdin)
for n in d['nodes']:
    if n.get('type')=='osd' and n['id']==$1:
        print(n['$2'] if '$2'!='in' else ('in' if n['in'] else 'out')); break
else: print('absent')"
}

# wait_osd N FIELD VALUE SECS: until osd N's FIELD is VALUE; prints the ms waited
wait_osd() {
  local t0 t1 v
  t0=$(ms_now)
  for _ in $(seq $(( $4 * 10 ))); do
    v=$(osd_field "$1" "$2" 2>/dev/null || true)
    if [ "$v" = "$3" ]; then t1=$(ms_now); echo $((t1 - t0)); return 0; fi
    sleep 0.1
  done
  fail "osd.$1 $2 is '$v', not '$3' after $4 s"
}

wait_osds_up() {
  local n=$1 secs=${2:-30} c
  for _ in $(seq $((secs * 10))); do
    c=$("$BLKCTL" --timeout 10 --format json osd tree | python3 -c "
import json,sys
print(sum(1 for n in json.load(sys.stdin)['nodes'] if n.get('type')=='osd' and n['status']=='up' and n['in']))" 2>/dev/null || echo 0)
    [ "$c" = "$n" ] && return 0
    sleep 0.1
  done
  fail "only $c of $n OSDs up+in after ${secs}s"
}

# acting_of POOL NAME: the object's acting set, space separated (osd map)
acting_of() {
  "$BLKCTL" --format json osd map "$1" "$2" |
    python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])'
}

# put_blocked POOL NAME FILE MIN_MS: a write to a PG below min_size must
# wait at least MIN_MS, then fail with EAGAIN (exit 11) and say why
put_blocked() {
  local t0 dt out rc=0
  t0=$(ms_now)
  out=$("$BLKCTL" object put "$1" "$2" "$3" 2>&1) || rc=$?
  dt=$(( $(ms_now) - t0 ))
  echo "$out (exit $rc after $dt ms)"
  [ $rc -eq 11 ] || fail "write below min_size: exit $rc, want 11 (EAGAIN)"
  grep -q "of min_size [0-9]* members; writes blocked" <<<"$out" || fail "unclear min_size error: $out"
  [ "$dt" -ge "$4" ] || fail "the write did not wait for the PG ($dt ms < $4 ms)"
}

# ---- image tests ------------------------------------------------------------
#   rbd_cluster               3 monitors, 3 OSDs (${OSD_SIZE:-512M}), pool rbd
#                             (16 PGs, size 3, min 2, failure domain osd)
#   expect CODE REGEX -- blkctl ARGS...   blkctl exits CODE with a message
#                             matching REGEX
#   pg_states                 the PG states as "state=count,..." (sorted)
#   wait_pg_states WANT [SECS]  until pg_states prints WANT (default 30 s)
rbd_cluster() {
  make_cluster 3
  osd_conf
  for m in "${MONS[@]}"; do start_mon "$m"; done
  wait_quorum 30
  # a loaded 2-core machine may still be electing: allow 30 s
  "$BLKCTL" --timeout 30 pool create rbd 16 --size 3 --min-size 2 --failure-domain osd >/dev/null \
    || fail "pool create"
  for i in 0 1 2; do mkfs_osd $i ${OSD_SIZE:-512M}; done
  for i in 0 1 2; do start_osd $i; done
  wait_osds_up 3 30
}
pg_states() {
  "$BLKCTL" --format json status | python3 -c 'import json,sys; d=json.load(sys.stdin)["pgmap"]["pgs_by_state"]; print(",".join(sorted("%s=%d"%(x["state_name"],x["count"]) for x in d)))'
}
wait_pg_states() {
  local want=$1 s=""
  for _ in $(seq $(( ${2:-30} * 10 ))); do
    s=$(pg_states)
    [ "$s" = "$want" ] && return 0
    sleep 0.1
  done
  fail "PG states '$s', want '$want'"
}
expect() {   # expect CODE REGEX -- blkctl args...
  local code=$1 re=$2; shift 3
  set +e; out=$("$BLKCTL" "$@" 2>&1); rc=$?; set -e
  [ "$rc" -eq "$code" ] || fail "blkctl $*: exit $rc, want $code ($out)"
  grep -qE -- "$re" <<<"$out" || fail "blkctl $*: message '$out' does not match /$re/"
  echo "ok: blkctl $* -> $rc: $out"
}
