/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the unlogged-object records of osd/pg.c (docs/osd.md
 * "Unlogged objects") on a real store: records added in a transaction
 * come back, sorted, with their versions after the PG is loaded again;
 * re-recording a name replaces its key; taking a log drops exactly the
 * names it describes (an entry at least as new, or a version not newer
 * than the trim point), in the store too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "osd/osd.h"
#include "store-helpers.h"

/* Forget the PG and load it again from the store; crash: abandon the
 * store first (only what was durable comes back) and reopen it. */
static struct pg *reload(struct osd *osd, struct tstore *t, bool crash)
{
  pg_free_all(osd);
  if (crash) {
    ts_crash(t);
    ts_open(t);
    osd->st = t->st;
  }
  struct pg *pg = pg_get(osd, 1, 7, true);
  assert_non_null(pg);
  return pg;
}

static void expect(const struct pg *pg, const char *const *names, const struct pg_ver *vers,
                   size_t n)
{
  assert_int_equal(pg->n_unlogged, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(pg->unlogged[i].name, names[i]);
    assert_int_equal(pg->unlogged[i].ver.epoch, vers[i].epoch);
    assert_int_equal(pg->unlogged[i].ver.v, vers[i].v);
  }
}

static void test_record_reload_settle(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 64 << 20, 4 << 20, NULL);
  ts_open(&t);
  struct osd osd;
  memset(&osd, 0, sizeof osd);
  osd.st = t.st;
  osd.pg_log_max = 100;
  assert_int_equal(ts_write(&t, "a", 0, 8192, 1), 0);
  struct pg *pg = pg_get(&osd, 1, 7, true);
  assert_non_null(pg);
  assert_int_equal(pg->n_unlogged, 0);

  /* installs, out of name order; "b" twice (the second replaces it) */
  store_txn *x = store_txn_new();
  assert_int_equal(pg_unlogged_add(pg, x, "d", (struct pg_ver){ 7, 1 }), 0);
  assert_int_equal(pg_unlogged_add(pg, x, "b", (struct pg_ver){ 5, 2 }), 0);
  assert_int_equal(pg_unlogged_add(pg, x, "a", (struct pg_ver){ 5, 3 }), 0);
  assert_int_equal(pg_unlogged_add(pg, x, "c", (struct pg_ver){ 0, 0 }), 0);   /* a removal */
  assert_int_equal(store_queue_sync(t.st, x), 0);
  x = store_txn_new();
  assert_int_equal(pg_unlogged_add(pg, x, "b", (struct pg_ver){ 5, 9 }), 0);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  const char *all[] = { "a", "b", "c", "d" };
  const struct pg_ver allv[] = { { 5, 3 }, { 5, 9 }, { 0, 0 }, { 7, 1 } };
  expect(pg, all, allv, 4);
  pg = reload(&osd, &t, true);
  expect(pg, all, allv, 4);      /* one key per name: b's first key is gone */
  ts_check(&t, "a", 0, 8192, 1); /* the objects themselves are untouched */

  /* a log with a: 5'3 (as new as a's install), b: 5'4 (older than b's
   * 5'9), trimmed at 5'5 (c's 0'0 is not newer; d's 7'1 is) */
  assert_int_equal(pg_log_push(pg, (struct pg_ver){ 5, 3 }, BLK__OSD_OP_TYPE__OP_WRITE, "r1", "a"), 0);
  assert_int_equal(pg_log_push(pg, (struct pg_ver){ 5, 4 }, BLK__OSD_OP_TYPE__OP_WRITE, "r2", "b"), 0);
  pg->tail = (struct pg_ver){ 5, 5 };
  x = store_txn_new();
  assert_int_equal(pg_unlogged_settle(pg, x), 2);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  const char *left[] = { "b", "d" };
  const struct pg_ver leftv[] = { { 5, 9 }, { 7, 1 } };
  expect(pg, left, leftv, 2);
  pg = reload(&osd, &t, false);  /* the log entries were not written: only U keys */
  expect(pg, left, leftv, 2);

  /* a newer log: both described */
  assert_int_equal(pg_log_push(pg, (struct pg_ver){ 7, 1 }, BLK__OSD_OP_TYPE__OP_REMOVE, "r3", "d"), 0);
  pg->tail = (struct pg_ver){ 6, 0 };
  x = store_txn_new();
  assert_int_equal(pg_unlogged_settle(pg, x), 0);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  assert_int_equal(pg->n_unlogged, 0);
  pg = reload(&osd, &t, true);
  assert_int_equal(pg->n_unlogged, 0);
  /* nothing to do: no transaction change needed */
  x = store_txn_new();
  assert_int_equal(pg_unlogged_settle(pg, x), 0);
  store_txn_free(x);

  pg_free_all(&osd);
  ts_fini(&t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_record_reload_settle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
