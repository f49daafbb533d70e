/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for osd/alloc.c: contiguous next-fit allocation, wrap-around,
 * exhaustion, release, share counts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "osd/internal.h"

static void test_contiguous_next_fit(void **state)
{
  (void)state;
  struct alloc *a = alloc_new(100);
  assert_non_null(a);
  uint64_t s;
  assert_int_equal(alloc_get(a, 10, &s), 10);
  assert_int_equal(s, 0);
  assert_int_equal(alloc_get(a, 5, &s), 5);
  assert_int_equal(s, 10);            /* next fit, not first fit */
  assert_int_equal(alloc_used(a), 15);
  alloc_release(a, 0, 10);
  assert_int_equal(alloc_get(a, 3, &s), 3);
  assert_int_equal(s, 15);            /* cursor keeps moving forward */
  /* a run stops at a used block */
  alloc_mark_used(a, 30, 1);
  assert_int_equal(alloc_get(a, 50, &s), 12);
  assert_int_equal(s, 18);
  assert_true(alloc_is_used(a, 29));
  assert_false(alloc_is_used(a, 31));
  alloc_free_all(a);
}

static void test_wrap_and_exhaust(void **state)
{
  (void)state;
  struct alloc *a = alloc_new(130);   /* not a multiple of 64 */
  uint64_t s, got = 0;
  while (alloc_get(a, 7, &s) > 0)
    got++;
  assert_int_equal(alloc_used(a), 130);
  assert_int_equal(alloc_get(a, 1, &s), 0);   /* full */
  alloc_release(a, 3, 2);
  alloc_release(a, 129, 1);
  /* cursor is at the end: wraps to the first free block */
  assert_int_equal(alloc_get(a, 4, &s), 2);
  assert_int_equal(s, 3);
  assert_int_equal(alloc_get(a, 4, &s), 1);
  assert_int_equal(s, 129);
  assert_int_equal(alloc_get(a, 1, &s), 0);
  assert_false(alloc_is_used(a, 130));        /* out of range: not used */
  (void)got;
  alloc_free_all(a);
}

static void test_share_counts(void **state)
{
  (void)state;
  struct alloc *a = alloc_new(64);
  uint64_t s;
  assert_int_equal(alloc_get(a, 1, &s), 1);
  assert_int_equal(alloc_refs(a, s), 1);
  alloc_incref(a, s);
  alloc_incref(a, s);
  assert_int_equal(alloc_refs(a, s), 3);
  assert_int_equal(alloc_decref(a, s), 2);
  assert_int_equal(alloc_decref(a, s), 1);
  assert_int_equal(alloc_refs(a, s), 1);
  assert_int_equal(alloc_decref(a, s), 0);    /* last reference */
  assert_true(alloc_is_used(a, s));           /* until released */
  alloc_release(a, s, 1);
  assert_int_equal(alloc_refs(a, s), 0);
  /* incref of a free block marks it used (rebuild at open) */
  alloc_incref(a, 40);
  assert_true(alloc_is_used(a, 40));
  alloc_incref(a, 40);
  assert_int_equal(alloc_refs(a, 40), 2);
  assert_int_equal(alloc_used(a), 1);
  alloc_free_all(a);
}

static void test_large_random(void **state)
{
  (void)state;
  /* model check against a plain array */
  const uint64_t n = 5000;
  struct alloc *a = alloc_new(n);
  uint8_t *model = calloc(n, 1);
  srand(7);
  for (int i = 0; i < 20000; i++) {
    if (rand() % 3) {
      uint64_t s, want = 1 + (uint64_t)(rand() % 40);
      uint64_t got = alloc_get(a, want, &s);
      if (!got)
        continue;
      assert_true(got <= want);
      for (uint64_t b = s; b < s + got; b++) {
        assert_int_equal(model[b], 0);   /* never hands out a used block */
        model[b] = 1;
      }
    } else {
      uint64_t b = (uint64_t)rand() % n;
      if (model[b]) {
        alloc_release(a, b, 1);
        model[b] = 0;
      }
    }
  }
  uint64_t used = 0;
  for (uint64_t b = 0; b < n; b++) {
    assert_int_equal(alloc_is_used(a, b), model[b]);
    used += model[b];
  }
  assert_int_equal(alloc_used(a), used);
  free(model);
  alloc_free_all(a);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_contiguous_next_fit),
    cmocka_unit_test(test_wrap_and_exhaust),
    cmocka_unit_test(test_share_counts),
    cmocka_unit_test(test_large_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
