#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Past intervals come from the map history (docs/osd.md "Past intervals
# from the map history"): 3 monitors, 5 OSDs on one host (failure domain
# osd), a pool of one PG (size 3, min_size 2).  Objects are written with
# all three members up, then with two (the first member killed); the
# other two members are killed as well and two of the three are marked
# out, so the PG maps to the two spare OSDs, which never held it and
# know no interval of it.  The PG must NOT go active on them (it would
# be empty: every acknowledged object is on the killed OSDs): it stays
# down and the new primary names the interval it waits for.  When the
# old members return, the PG goes active+clean and every acknowledged
# object reads back, identical on every acting member.  Before the map
# history, the new primary knew only the previous (empty) up set and went
# active empty (the peering simulation's --recorded-intervals seed 41).
# The monitors take snapshots often and are all restarted, and the spare
# OSDs restarted, before the kills: the new primary must fetch the map
# history from the monitors, which must have kept it.
# MAP_HISTORY=N (CTest integration/test-osd-interval-down-floor: 3) makes
# the monitors keep only N incrementals beyond the history floor: they
# must still keep the maps since the PG's last activation (docs/monitor.md
# "Map history floor"), so the PG waits "down" as without the setting; and
# once it is active+clean again the floor and the oldest epoch kept must
# advance.  With MAP_HISTORY_MAX=M as well (CTest
# integration/test-osd-interval-down-trimmed: 1 and 1) the monitors keep at
# most M, fewer than the 3 epochs since the PG's last activation (the
# kills and the outs): the history the spare OSDs need is gone, so the PG must stay
# "incomplete" (no member that answered ever held it), `blkctl status`
# warns, and once the old members are back it goes active with them.
source "$(dirname "$0")/../functions.sh"
requires python3
# snapshots often: the monitors' map history must survive their restart
MON_SNAPSHOT_EVERY=8 make_cluster 3
osd_conf
TRIMMED=0
if [ -n "${MAP_HISTORY:-}" ]; then
  printf '[mon]\nmon_map_history = %s\n' "$MAP_HISTORY" >>"$BLK_CONF"
fi
# MAP_CACHE=N: the OSDs keep only N maps beyond their PGs' last
# activations (osd_map_cache_min; the -floor CTest: 1): derivations then
# run on maps fetched again from the monitors
if [ -n "${MAP_CACHE:-}" ]; then
  printf '[osd]\nosd_map_cache_min = %s\n' "$MAP_CACHE" >>"$BLK_CONF"
fi
if [ -n "${MAP_HISTORY_MAX:-}" ]; then
  printf '[mon]\nmon_map_history_max = %s\n' "$MAP_HISTORY_MAX" >>"$BLK_CONF"
  TRIMMED=1
fi
hist() {   # hist KEY: first/floor/trimmed_pgs of the monitors' map history
  "$BLKCTL" --format json status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["map_history"][sys.argv[1]])' "$1"
}
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
for i in 0 1 2 3 4; do mkfs_osd $i 256M; done
for i in 0 1 2 3 4; do start_osd $i; done
wait_osds_up 5 30
# the pool after every OSD is up: the spare OSDs never hold the PG
"$BLKCTL" --timeout 30 pool create rbd 1 --size 3 --min-size 2 --failure-domain osd >/dev/null ||
  fail "pool create"
wait_pg_states "active+clean=1" 60

acting() {
  "$BLKCTL" --format json osd map rbd "$1" |
    python3 -c 'import json,sys; print(*json.load(sys.stdin)["acting"])'
}
read -r A B C <<<"$(acting o1)"
[ -n "$C" ] || fail "acting set of the PG: $A $B $C"
echo "acting set: $A $B $C"

put() {   # put FIRST LAST: write objects oFIRST..oLAST (each acknowledged)
  for k in $(seq "$1" "$2"); do
    head -c 65536 /dev/urandom >"$TEST_DIR/o$k"
    "$BLKCTL" --timeout 30 object put rbd "o$k" "$TEST_DIR/o$k" || fail "put o$k"
  done
}
put 1 10
# restart every monitor (the history comes back from snapshot + log) and
# the two spare OSDs (they lose the maps they saw: the one that becomes
# primary must fetch the PG's history from the monitors)
for m in "${MONS[@]}"; do kill_mon "$m"; done
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
SPARE=()
for o in 0 1 2 3 4; do
  [ "$o" != "$A" ] && [ "$o" != "$B" ] && [ "$o" != "$C" ] && SPARE+=("$o")
done
for o in "${SPARE[@]}"; do stop_osd "$o"; start_osd "$o"; done
for o in "${SPARE[@]}"; do wait_osd "$o" status up 30 >/dev/null; done
wait_pg_states "active+clean=1" 60
kill_osd "$A"
"$BLKCTL" osd down "$A" >/dev/null || fail "osd down $A"
wait_pg_states "active+undersized+degraded=1" 60
put 11 20                      # acknowledged by B and C only
echo "20 objects acknowledged (11..20 by osd.$B and osd.$C only)"
kill_osd "$B"
"$BLKCTL" osd down "$B" >/dev/null || fail "osd down $B"
kill_osd "$C"
"$BLKCTL" osd down "$C" >/dev/null || fail "osd down $C"
"$BLKCTL" osd out "$A" "$B" >/dev/null || fail "osd out $A $B"
read -r -a NEW <<<"$(acting o1)"
echo "acting set after marking osd.$A and osd.$B out: ${NEW[*]}"
[ "${#NEW[@]}" -ge 2 ] || fail "the PG should map to two up OSDs: ${NEW[*]}"
for o in "${NEW[@]}"; do
  [ "$o" != "$A" ] && [ "$o" != "$B" ] && [ "$o" != "$C" ] || fail "osd.$o is an old member"
done

# 20 s (the lease wait is 3 s): never active, shown down (incomplete
# when the history is trimmed)
want=down
[ $TRIMMED = 1 ] && want=incomplete
seen_down=0
for _ in $(seq 100); do
  s=$(pg_states)
  case "$s" in
  *active*) fail "the PG went active on osd.${NEW[0]} without its objects ($s)" ;;
  *$want*) seen_down=1 ;;
  esac
  sleep 0.2
done
[ $seen_down = 1 ] || fail "the PG was never shown $want (last: $s)"
if [ $TRIMMED = 0 ]; then
  grep -h "is down; waiting for one" "$TEST_DIR/log/osd.${NEW[0]}.log" | tail -1 |
    grep -q "\[.*$C.*\]" || fail "osd.${NEW[0]} does not say which interval it waits for"
  grep -h "is down; waiting for one" "$TEST_DIR/log/osd.${NEW[0]}.log" | tail -1
  # (with the floor, the maps before it are not asked for: the new primary
  # may hold every map since the floor already; it asked the monitors)
  grep -h -e "fetched the maps of epochs" -e "below the monitors' history floor" \
    "$TEST_DIR/log/osd.${NEW[0]}.log" | head -2 |
    grep . || fail "osd.${NEW[0]} did not ask the monitors for the PG's map history"
else
  grep -h "incomplete: no member" "$TEST_DIR/log/osd.${NEW[0]}.log" | tail -1 ||
    fail "osd.${NEW[0]} does not say why the PG is incomplete"
  "$BLKCTL" status | grep "map history trimmed past the last activation of 1 PGs" ||
    fail "blkctl status does not warn that the map history was trimmed"
fi
FIRST0=$(hist first)
FLOOR0=$(hist floor)
echo "map history while the PG waits: from epoch $FIRST0, floor $FLOOR0"
grep -q "snapshot at index" "$TEST_DIR"/log/mon.*.log || fail "no monitor took a snapshot"

# the old members return (A and B stay out): C brings the objects back
for o in "$A" "$B" "$C"; do start_osd "$o"; done
for o in "$A" "$B" "$C"; do wait_osd "$o" status up 30 >/dev/null; done
wait_pg_states "active+clean=1" 90
# (the new primary usually holds the maps since the returning member's les
# itself; if it had to ask for trimmed ones it says so)
grep -h "are no longer kept; past intervals there are checked only" "$TEST_DIR"/log/osd.*.log |
  tail -1 || true
read -r -a FIN <<<"$(acting o1)"
[ "${#FIN[@]}" -eq 3 ] || fail "final acting set ${FIN[*]}"
for k in $(seq 1 20); do
  for o in "${FIN[@]}"; do
    "$BLKCTL" object get rbd "o$k" "$TEST_DIR/back" --osd "$o" || fail "o$k unreadable on osd.$o"
    cmp -s "$TEST_DIR/back" "$TEST_DIR/o$k" || fail "o$k differs on osd.$o"
  done
  "$BLKCTL" object get rbd "o$k" "$TEST_DIR/back" || fail "o$k unreadable"
  cmp -s "$TEST_DIR/back" "$TEST_DIR/o$k" || fail "o$k differs"
done
echo "all 20 acknowledged objects read back, identical on osd.${FIN[*]}"
if [ -n "${MAP_HISTORY:-}" ] && [ $TRIMMED = 0 ]; then
  # the PG started again: the floor follows it and the history is trimmed
  ok=0
  for _ in $(seq 150); do
    f=$(hist first)
    l=$(hist floor)
    if [ "$f" -gt "$FIRST0" ] && [ "$l" -gt "$FLOOR0" ]; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || fail "map history not trimmed after the PG started again: from epoch $f, floor $l"
  echo "map history after the PG started again: from epoch $f, floor $l"
  grep -h "map history floor .*: keeping epochs" "$TEST_DIR"/log/mon.*.log | tail -1 ||
    fail "no monitor logs its map history floor"
  [ "$(hist trimmed_pgs)" = 0 ] || fail "PGs reported trimmed past their last activation"
fi
for i in 0 1 2 3 4; do stop_osd $i; done
echo PASS
