#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark (not a test): commit latency of map changes and election time
# after a leader kill, on 3 monitors on 127.0.0.1, with the Release build.
#   BLK_BUILD_DIR=build tests/bench/mon-latency.sh [KILLS]
# Election time = from kill -9 of the leader until a map change commits
# again (what a client sees), measured with the monitors' default timing
# (mon_election_timeout 1000 ms, heartbeat 100 ms).
BLK_BUILD_DIR=${BLK_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
BLK_TEST_TIMEOUT=600
MON_ELECTION_TIMEOUT=${MON_ELECTION_TIMEOUT:-1000ms}
source "$(dirname "$0")/../functions.sh"
KILLS=${1:-10}
make_cluster 3
sed -i 's/^mon_heartbeat_interval = 50ms/mon_heartbeat_interval = 100ms/' "$BLK_CONF"
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
echo "== commit latency (blkctl mon bench --count 500), election timeout $MON_ELECTION_TIMEOUT"
"$BLKCTL" mon bench --count 500
echo "== election: kill -9 leader, time until a map change commits ($KILLS runs)"
for i in $(seq 1 "$KILLS"); do
  L=$(leader)
  kill_mon "$L"
  t0=$(ms_now)
  "$BLKCTL" --timeout 30 pool create "e$i" 8 >/dev/null || fail "no commit after kill $i"
  t1=$(ms_now)
  echo "run $i: killed mon.$L, commit after $((t1 - t0)) ms, new leader $(leader)"
  start_mon "$L"
  sleep 2
done
for m in "${MONS[@]}"; do stop_mon "$m"; done
