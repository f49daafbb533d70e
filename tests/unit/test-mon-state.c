/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the map history of mon/state.c (docs/monitor.md "Map
 * history floor"): the ring keeps at least mon_map_history incrementals
 * and every one after the committed history floor, at most
 * mon_map_history_max; a floor txn changes no map epoch and never lowers
 * the floor; a snapshot carries ring, base and floor, so a restored state
 * trims exactly as the original (the same committed txns give the same
 * history on every monitor).  Committed entries are built by hand and
 * applied directly, as Raft would.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clustermap.h"
#include "mon/mon.h"

static uint64_t next_index = 1;

/* Apply txn to st as committed entry next_index; returns the result. */
static int apply_txn(mon_state *st, const Blk__MapTxn *txn)
{
  size_t len = blk__map_txn__get_packed_size(txn);
  uint8_t *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  blk__map_txn__pack(txn, buf);
  struct raft_entry e = { .term = 1, .index = next_index++, .type = RAFT_ENTRY_NORMAL,
                          .len = (uint32_t)len, .data = buf };
  char err[200];
  int r = mon_state_apply(st, &e, err, sizeof err);
  free(buf);
  return r;
}

/* The initial map, then osd.0: epoch 2. */
static void init_state(mon_state *st)
{
  struct cluster_map *m = clustermap_new();
  assert_non_null(m);
  strcpy(m->fsid, "00000000-0000-0000-0000-000000000001");
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.req_id = "";
  txn.init = clustermap_to_pb(m);
  assert_non_null(txn.init);
  assert_int_equal(apply_txn(st, &txn), 1);
  clustermap_pb_free(txn.init);
  clustermap_free(m);
  Blk__MapTxn c = BLK__MAP_TXN__INIT;
  Blk__OsdCreate oc = BLK__OSD_CREATE__INIT;
  oc.id = 0;
  c.req_id = "";
  c.osd_create = &oc;
  assert_int_equal(apply_txn(st, &c), 1);
  assert_int_equal(mon_state_map(st)->epoch, 2);
}

/* One more epoch (osd.0's weight alternates). */
static void bump(mon_state *st)
{
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__OsdReweight rw = BLK__OSD_REWEIGHT__INIT;
  uint64_t e = mon_state_map(st)->epoch;
  rw.id = 0;
  rw.weight = (e % 2) ? 0x10000 : 0x8000;
  txn.req_id = "";
  txn.osd_reweight = &rw;
  assert_int_equal(apply_txn(st, &txn), 1);
  assert_int_equal(mon_state_map(st)->epoch, e + 1);
}

static int set_floor(mon_state *st, uint64_t floor)
{
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.req_id = "";
  txn.history_floor = floor;
  return apply_txn(st, &txn);
}

/* 0 if the maps of epochs [from, cur] can be rebuilt. */
static int history_from(mon_state *st, uint64_t from)
{
  Blk__MapUpdate *u;
  struct cluster_map *full;
  char err[200];
  int r = mon_state_history(st, from, mon_state_map(st)->epoch, &u, &full, err, sizeof err);
  if (r == 0) {
    assert_int_equal(full->epoch, from);
    assert_int_equal(u->n_txns, mon_state_map(st)->epoch - from);
    mon_state_update_free(u);
    clustermap_free(full);
  }
  return r;
}

/* Without a floor the ring keeps up to the cap (not only the minimum). */
static void test_no_floor_keeps_to_cap(void **unused)
{
  (void)unused;
  mon_state *st = mon_state_new(3, 10);
  assert_non_null(st);
  init_state(st);
  while (mon_state_map(st)->epoch < 20)
    bump(st);
  assert_int_equal(mon_state_history_floor(st), 0);
  assert_int_equal(mon_state_history_first(st), 10);
  assert_int_equal(history_from(st, 10), 0);
  assert_int_equal(history_from(st, 9), -ENOENT);
  mon_state_free(st);
}

/* The floor trims below it (keeping the minimum), changes no epoch, never
 * goes down; beyond the cap the ring trims past it anyway. */
static void test_floor_and_cap(void **unused)
{
  (void)unused;
  mon_state *st = mon_state_new(3, 10);
  assert_non_null(st);
  init_state(st);
  while (mon_state_map(st)->epoch < 20)
    bump(st);
  assert_int_equal(set_floor(st, 15), 0);
  assert_int_equal(mon_state_map(st)->epoch, 20);
  assert_int_equal(mon_state_history_floor(st), 15);
  assert_int_equal(mon_state_history_first(st), 15);   /* the floor's map is kept */
  assert_int_equal(history_from(st, 15), 0);
  assert_int_equal(history_from(st, 14), -ENOENT);
  assert_int_equal(set_floor(st, 12), 0);              /* never lowered */
  assert_int_equal(mon_state_history_floor(st), 15);
  /* a floor at the current epoch: the minimum (3) is kept */
  assert_int_equal(set_floor(st, 20), 0);
  assert_int_equal(mon_state_history_first(st), 17);
  bump(st);
  assert_int_equal(mon_state_history_first(st), 18);   /* 19, 20 <= floor go... */
  bump(st);
  bump(st);
  assert_int_equal(mon_state_history_first(st), 20);   /* ...down to the floor */
  while (mon_state_map(st)->epoch < 40)
    bump(st);
  assert_int_equal(mon_state_history_first(st), 30);   /* the cap: 10 */
  assert_int_equal(history_from(st, 20), -ENOENT);
  mon_state_free(st);
}

/* A snapshot keeps the floor: the restored state trims as the original. */
static void test_snapshot_keeps_floor(void **unused)
{
  (void)unused;
  mon_state *a = mon_state_new(3, 50);
  mon_state *b = mon_state_new(3, 50);
  assert_non_null(a);
  assert_non_null(b);
  init_state(a);
  while (mon_state_map(a)->epoch < 30)
    bump(a);
  assert_int_equal(set_floor(a, 12), 0);
  assert_int_equal(mon_state_history_first(a), 12);
  void *data;
  size_t len;
  assert_int_equal(mon_state_snapshot(a, &data, &len), 0);
  assert_int_equal(mon_state_restore(b, mon_state_applied_index(a), 1, data, len), 0);
  free(data);
  assert_int_equal(mon_state_history_floor(b), 12);
  assert_int_equal(mon_state_history_first(b), 12);
  assert_int_equal(history_from(b, 12), 0);
  for (int i = 0; i < 30; i++) {
    bump(a);
    bump(b);
  }
  assert_int_equal(mon_state_history_first(a), 12);    /* the cap is 50 */
  assert_int_equal(mon_state_history_first(b), 12);
  mon_state_free(a);
  mon_state_free(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_no_floor_keeps_to_cap),
    cmocka_unit_test(test_floor_and_cap),
    cmocka_unit_test(test_snapshot_keeps_floor),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
