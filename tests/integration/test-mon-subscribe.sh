#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Map subscriptions: a subscriber from epoch 0 gets the full map, then
# each new epoch pushed as an incremental (served by a follower, not only
# the leader), and the map it derives equals the monitors'; one a little behind gets the
# missing incrementals; one further behind than mon_map_history gets the
# full map.  The map each subscriber derives with clustermap_apply must
# equal the monitors' map.
source "$(dirname "$0")/../functions.sh"
make_cluster 3
echo "mon_map_history = 5" >>"$BLK_CONF"
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
for p in a b c; do "$BLKCTL" pool create "pool-$p" 8 >/dev/null; done
epoch() { "$BLKCTL" --format json pool ls | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])'; }
pools() { "$BLKCTL" --format json pool ls | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["pools"]))'; }
E=$(epoch)

out=$("$BLKCTL" --timeout 10 --format json mon watch --from 0 --count 1)
echo "$out"
echo "$out" | python3 -c "import json,sys; d=json.loads(sys.stdin.readline()); assert d['kind']=='full' and d['epoch']==$E, d"

L=$(leader)
F=""
for m in "${MONS[@]}"; do if [ "$m" != "$L" ]; then F=$m; break; fi; done
"$BLKCTL" --timeout 30 --format json mon watch --from 0 --count 4 --mon "$F" >"$TEST_DIR/watch.out" 2>"$TEST_DIR/watch.err" &
W=$!; track_pid $W
sleep 0.5
for p in d e f; do "$BLKCTL" pool create "pool-$p" 8 >/dev/null; done
wait $W || { cat "$TEST_DIR/watch.err"; fail "watch on follower mon.$F failed"; }
cat "$TEST_DIR/watch.out"
want="$(pools)"
python3 - "$TEST_DIR/watch.out" "$((E + 3))" "$want" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 4, lines
assert lines[0]["kind"] == "full", lines[0]
lines = lines[1:]
assert all(l["kind"] == "incremental" and l["have_base"] for l in lines), lines
assert lines[-1]["epoch"] == int(sys.argv[2]), lines[-1]
assert " ".join(lines[-1]["pools"]) == sys.argv[3], (lines[-1]["pools"], sys.argv[3])
PY

E2=$(epoch)
out=$("$BLKCTL" --timeout 10 --format json mon watch --from $((E2 - 2)) --count 1)
echo "$out" | python3 -c "import json,sys; d=json.loads(sys.stdin.readline()); assert d['kind']=='incremental' and d['from']==$((E2 - 2)) and d['epoch']==$E2, d"

for i in $(seq 1 8); do "$BLKCTL" pool create "more-$i" 8 >/dev/null; done
E3=$(epoch)
out=$("$BLKCTL" --timeout 10 --format json mon watch --from 1 --count 1)
echo "$out"
echo "$out" | python3 -c "import json,sys; d=json.loads(sys.stdin.readline()); assert d['kind']=='full' and d['epoch']==$E3, d"
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
