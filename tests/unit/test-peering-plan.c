/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for osd/peering_plan.c (the decisions of peering) and the
 * past-interval keys of osd/pg.c.  Each case is a small hand-made PG:
 * a past interval with no member among the answers blocks activation
 * (one by one, not as a union), unless a member's les covers it or it
 * could not acknowledge writes; the authoritative member is the newest;
 * recovery by log, divergent entries, backfill with removals, unlogged
 * objects; merging when the interval list is full; keys round-trip and
 * malformed keys are refused.  tests/sim/peering-sim.c exercises the
 * same functions under faults.
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

#include "osd/osd.h"
#include "osd/peering_plan.h"

static struct pplan_interval iv_make(uint64_t first, uint64_t last, const int32_t *a, size_t n)
{
  struct pplan_interval iv[PPLAN_MAX_INTERVALS];
  size_t n_iv = 0;
  assert_int_equal(pplan_interval_note(iv, &n_iv, first, last, a, n, 2), 0);
  return iv[0];
}

static void test_each_interval_needs_a_member(void **state)
{
  (void)state;
  struct pplan_interval iv[2] = { iv_make(5, 9, (int32_t[]){ 1, 2, 3 }, 3),
                                  iv_make(10, 14, (int32_t[]){ 4, 5, 6 }, 3) };
  struct pplan_member m[3] = { { .osd = 4 }, { .osd = 5 }, { .osd = 7 } };
  size_t blocking = 99;
  /* interval 10-14 has members here, 5-9 none: wait, naming 5-9 */
  assert_false(pplan_may_activate(iv, 2, m, 3, &blocking));
  assert_int_equal(blocking, 0);
  /* a member that took an authoritative log at epoch 10 covers 5-9 */
  m[2].les = 10;
  assert_true(pplan_may_activate(iv, 2, m, 3, NULL));
  /* ... but not 10-14 if none of its members answered */
  struct pplan_member only7 = { .osd = 7, .les = 10 };
  assert_false(pplan_may_activate(iv, 2, &only7, 1, &blocking));
  assert_int_equal(blocking, 1);
  /* no past interval: nothing to wait for */
  assert_true(pplan_may_activate(NULL, 0, m, 3, NULL));
}

static void test_interval_below_min_size_ignored(void **state)
{
  (void)state;
  struct pplan_interval iv[2] = { iv_make(5, 9, (int32_t[]){ 1 }, 1),
                                  iv_make(10, 14, (int32_t[]){ 4, 5 }, 2) };
  assert_false(iv[0].maybe_rw);
  assert_true(iv[1].maybe_rw);
  struct pplan_member m[1] = { { .osd = 5 } };
  assert_true(pplan_may_activate(iv, 2, m, 1, NULL));
}

static void test_interval_merge_when_full(void **state)
{
  (void)state;
  struct pplan_interval iv[PPLAN_MAX_INTERVALS];
  size_t n = 0;
  for (int k = 0; k < PPLAN_MAX_INTERVALS; k++)
    assert_int_equal(pplan_interval_note(iv, &n, (uint64_t)k * 10, (uint64_t)k * 10 + 9,
                                         (int32_t[]){ k, k + 100 }, k == 1 ? 2 : 1, 2), 0);
  assert_int_equal(n, PPLAN_MAX_INTERVALS);
  assert_false(iv[0].maybe_rw);
  assert_int_equal(pplan_interval_note(iv, &n, 1000, 1009, (int32_t[]){ 7 }, 1, 2), 0);
  assert_int_equal(n, PPLAN_MAX_INTERVALS);
  /* the two oldest merged: epochs 0-19, members {0, 1, 101}, may be rw */
  assert_int_equal(iv[0].first, 0);
  assert_int_equal(iv[0].last, 19);
  assert_int_equal(iv[0].n_acting, 3);
  assert_true(iv[0].maybe_rw);
  assert_int_equal(iv[n - 1].first, 1000);
  assert_int_equal(pplan_interval_note(iv, &n, 1, 2, (int32_t[PPLAN_MAX_SIZE + 1]){ 0 },
                                       PPLAN_MAX_SIZE + 1, 2), -EINVAL);
}

static void test_choose_auth(void **state)
{
  (void)state;
  struct pplan_member m[3] = { { .osd = 1, .last = { 5, 3 } }, { .osd = 2, .last = { 6, 1 } },
                               { .osd = 3, .last = { 6, 1 } } };
  assert_int_equal(pplan_choose_auth(m, 3), 1);   /* newest; tie: lowest index */
  m[0].last = (struct pg_ver){ 6, 1 };
  assert_int_equal(pplan_choose_auth(m, 3), 0);   /* tie with the primary */
  assert_int_equal(pplan_choose_auth(m, 1), 0);
}

static struct pg_log_ent ent(uint64_t e, uint64_t v, const char *name)
{
  struct pg_log_ent x;
  memset(&x, 0, sizeof x);
  x.ver = (struct pg_ver){ e, v };
  x.name = (char *)name;
  return x;
}

static bool has_item(const struct pplan_item *it, size_t n, const char *name, uint32_t targets)
{
  for (size_t i = 0; i < n; i++)
    if (!strcmp(it[i].name, name))
      return it[i].targets == targets;
  return false;
}

static void test_recovery_by_log_and_divergent(void **state)
{
  (void)state;
  struct pg_log_ent alog[] = { ent(3, 1, "a"), ent(3, 2, "b"), ent(4, 3, "c"), ent(4, 4, "a") };
  /* member 1 stopped at 3'2 and has a divergent 3'3 on "d" */
  struct pg_log_ent m1log[] = { ent(3, 1, "a"), ent(3, 2, "b"), ent(3, 3, "d") };
  struct pplan_member m[3] = {
    { .osd = 1, .target = true, .last = { 4, 4 }, .log = alog, .n = 4 },
    { .osd = 2, .target = true, .last = { 3, 3 }, .log = m1log, .n = 3 },
    /* a past member, not a target, far behind: never recovered */
    { .osd = 3, .target = false, .last = { 1, 1 } },
  };
  struct pplan_item *it;
  size_t n;
  uint32_t backfill;
  assert_int_equal(pplan_recovery(m, 3, 0, &it, &n, &backfill), 0);
  assert_int_equal(backfill, 0);
  assert_int_equal(n, 3);   /* a, c (newer than 3'3), d (divergent); sorted, once each */
  assert_string_equal(it[0].name, "a");
  assert_string_equal(it[1].name, "c");
  assert_string_equal(it[2].name, "d");
  for (size_t i = 0; i < n; i++)
    assert_int_equal(it[i].targets, 1u << 1);
  pplan_items_free(it, n);
}

static void test_backfill_and_unlogged(void **state)
{
  (void)state;
  struct pg_log_ent alog[] = { ent(9, 7, "b"), ent(9, 8, "c") };
  const char *alist[] = { "@snapdir", "a", "b", "c" };
  const char *m1list[] = { "a", "gone" };        /* "gone" removed meanwhile */
  const char *unl0[] = { "x" }, *unl2[] = { "y" };
  struct pplan_member m[3] = {
    { .osd = 1, .target = true, .last = { 9, 8 }, .tail = { 9, 6 }, .log = alog, .n = 2,
      .listed = alist, .n_listed = 4, .listed_ok = true, .unlogged = unl0, .n_unlogged = 1 },
    { .osd = 2, .target = true, .last = { 5, 1 }, .listed = m1list, .n_listed = 2,
      .listed_ok = true },
    { .osd = 3, .target = true, .last = { 9, 8 }, .tail = { 9, 6 }, .log = alog, .n = 2,
      .unlogged = unl2, .n_unlogged = 1 },
  };
  assert_true(pplan_needs_backfill(&m[1], m[0].tail));
  assert_false(pplan_needs_backfill(&m[2], m[0].tail));
  struct pplan_item *it;
  size_t n;
  uint32_t backfill;
  assert_int_equal(pplan_recovery(m, 3, 0, &it, &n, &backfill), 0);
  assert_int_equal(backfill, 1u << 1);
  /* member 1: the listing (not '@' names), its removal, the log, the
   * authoritative member's unlogged x; member 2: x, and its own y */
  assert_true(has_item(it, n, "a", 1u << 1));
  assert_true(has_item(it, n, "b", 1u << 1));
  assert_true(has_item(it, n, "c", 1u << 1));
  assert_true(has_item(it, n, "gone", 1u << 1));
  assert_true(has_item(it, n, "x", (1u << 1) | (1u << 2)));
  assert_true(has_item(it, n, "y", 1u << 2));
  assert_int_equal(n, 6);
  pplan_items_free(it, n);
}

static void test_interval_keys(void **state)
{
  (void)state;
  struct pplan_interval iv = iv_make(0x1234, 0xabcdef, (int32_t[]){ 3, 17, 0 }, 3), back;
  char key[STORE_NAME_MAX + 1];
  pg_interval_key(key, sizeof key, &iv);
  assert_string_equal(key, "I00000000000012340000000000abcdefw3,17,0");
  assert_true(pg_interval_parse(key, &back));
  assert_int_equal(back.first, iv.first);
  assert_int_equal(back.last, iv.last);
  assert_true(back.maybe_rw);
  assert_int_equal(back.n_acting, 3);
  assert_memory_equal(back.acting, iv.acting, 3 * sizeof *iv.acting);
  struct pplan_interval empty = iv_make(1, 2, NULL, 0);
  pg_interval_key(key, sizeof key, &empty);
  assert_string_equal(key, "I00000000000000010000000000000002r");
  assert_true(pg_interval_parse(key, &back));
  assert_int_equal(back.n_acting, 0);
  /* malformed keys (they also come from the network, in PgInfo) */
  assert_false(pg_interval_parse("L0000000000000001", &back));
  assert_false(pg_interval_parse("I0000000000000001", &back));
  assert_false(pg_interval_parse("I00000000000000010000000000000002x1", &back));
  assert_false(pg_interval_parse("I00000000000000010000000000000002w1,,2", &back));
  assert_false(pg_interval_parse("I00000000000000010000000000000002w-1", &back));
  assert_false(pg_interval_parse("I00000000000000010000000000000002w1;2", &back));
  assert_false(pg_interval_parse("I00000000000000010000000000000002w99999999999", &back));
  pg_les_key(key, sizeof key, 42);
  assert_string_equal(key, "E000000000000002a");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_each_interval_needs_a_member),
    cmocka_unit_test(test_interval_below_min_size_ignored),
    cmocka_unit_test(test_interval_merge_when_full),
    cmocka_unit_test(test_choose_auth),
    cmocka_unit_test(test_recovery_by_log_and_divergent),
    cmocka_unit_test(test_backfill_and_unlogged),
    cmocka_unit_test(test_interval_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
