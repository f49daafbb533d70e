#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Several clients create pools concurrently while the leader is killed and
# restarted repeatedly.  Every creation acknowledged to a client must be
# present afterwards, and every pool must appear exactly once (a retried
# request is deduplicated by its req_id, not applied twice).
source "$(dirname "$0")/../functions.sh"
make_cluster 3
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30

CLIENTS=4 PER=25
for c in $(seq 1 $CLIENTS); do
  (
    for i in $(seq 1 $PER); do
      if "$BLKCTL" --timeout 15 pool create "c$c-$i" 8 >/dev/null 2>>"$TEST_DIR/client$c.err"; then
        echo "c$c-$i" >>"$TEST_DIR/acked.$c"
      fi
    done
  ) &
  track_pid $!
  eval "CL$c=$!"
done

kills=0
for round in 1 2 3 4; do
  sleep 1.5
  L=$(leader) || continue
  kill_mon "$L"; kills=$((kills + 1))
  sleep 1
  start_mon "$L"
done
for c in $(seq 1 $CLIENTS); do eval "wait \$CL$c" || true; done
echo "leader kills: $kills"
wait_quorum 30
"$BLKCTL" --format json pool ls >"$TEST_DIR/pools.json"
cat "$TEST_DIR"/acked.* | sort >"$TEST_DIR/acked"
python3 - "$TEST_DIR/pools.json" "$TEST_DIR/acked" <<'PY'
import json, sys, collections
pools = [p["name"] for p in json.load(open(sys.argv[1]))["pools"]]
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
dup = [n for n, k in collections.Counter(pools).items() if k > 1]
missing = sorted(set(acked) - set(pools))
print(f"acked {len(acked)} creates, {len(pools)} pools present, {len(dup)} duplicates, {len(missing)} missing")
if dup or missing:
    print("duplicates:", dup, "missing:", missing)
    sys.exit(1)
if len(acked) < 10:
    print("too few acknowledged creates to mean anything"); sys.exit(1)
PY
for m in "${MONS[@]}"; do stop_mon "$m"; done
echo PASS
