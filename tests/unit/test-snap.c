/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for osd/snap.c, the copy-on-write decisions of snapshots:
 * the first change after a snapshot clones the head (only if it exists),
 * later changes do not; reads at a snapshot resolve to the clone that
 * covers it, the head when unchanged since, -ENOENT when the object did
 * not exist then; trimming removes exactly the clones no live snapshot
 * needs and drops the snap directory when nothing is left; corrupt
 * snapsets are refused (-EUCLEAN) without crashing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "osd/snap.h"

struct obj {
  uint8_t *ss;
  size_t len;
  bool head;
};

/* Apply op (with snap context seq/snaps) to o as a primary would. */
static struct snap_plan apply(struct obj *o, int op, uint64_t seq, uint64_t *snaps, size_t n)
{
  Blk__OsdOp req = BLK__OSD_OP__INIT;
  req.op = op;
  req.snap_seq = seq;
  req.snaps = snaps;
  req.n_snaps = n;
  assert_null(snap_bad_args(&req));
  struct snap_plan p;
  assert_int_equal(snap_plan_make(&req, o->head, o->ss, o->len, &p), 0);
  if (p.has_ss) {
    free(o->ss);
    o->ss = NULL;
    o->len = p.ss_len;
    if (p.ss_len) {
      o->ss = malloc(p.ss_len);
      memcpy(o->ss, p.ss, p.ss_len);
    }
  }
  if (op == BLK__OSD_OP_TYPE__OP_REMOVE)
    o->head = false;
  else if (op != BLK__OSD_OP_TYPE__OP_SNAPTRIM)
    o->head = true;
  return p;
}

static int64_t resolve(const struct obj *o, uint64_t id)
{
  uint64_t s;
  int r = snap_resolve(o->ss, o->len, id, &s);
  if (r < 0)
    return r;
  return s == STORE_SNAP_HEAD ? -1000 : (int64_t)s;   /* -1000: the head */
}

#define W BLK__OSD_OP_TYPE__OP_WRITE

static void test_cow_sequence(void **state)
{
  (void)state;
  struct obj o = { 0 };
  uint64_t s1[] = { 1 }, s21[] = { 2, 1 }, s2[] = { 2 };
  struct snap_plan p = apply(&o, W, 0, NULL, 0);   /* before any snapshot */
  assert_int_equal(p.clone, 0);
  snap_plan_free(&p);
  p = apply(&o, W, 1, s1, 1);                       /* first write after snap 1 */
  assert_int_equal(p.clone, 1);
  snap_plan_free(&p);
  assert_int_equal(resolve(&o, 1), 1);
  assert_int_equal(resolve(&o, 2), -1000);
  p = apply(&o, W, 1, s1, 1);                       /* second write: no clone */
  assert_int_equal(p.clone, 0);
  assert_false(p.has_ss);
  snap_plan_free(&p);
  p = apply(&o, W, 2, s21, 2);                      /* after snap 2 */
  assert_int_equal(p.clone, 2);
  snap_plan_free(&p);
  assert_int_equal(resolve(&o, 1), 1);
  assert_int_equal(resolve(&o, 2), 2);
  assert_int_equal(resolve(&o, 3), -1000);
  /* snap 1 removed: its clone goes, snap 2's stays */
  p = apply(&o, BLK__OSD_OP_TYPE__OP_SNAPTRIM, 2, s2, 1);
  assert_int_equal(p.n_remove, 1);
  assert_int_equal(p.remove[0], 1);
  snap_plan_free(&p);
  assert_int_equal(resolve(&o, 1), -ENOENT);
  assert_int_equal(resolve(&o, 2), 2);
  /* trimming again changes nothing */
  p = apply(&o, BLK__OSD_OP_TYPE__OP_SNAPTRIM, 2, s2, 1);
  assert_int_equal(p.n_remove, 0);
  assert_false(p.has_ss);
  snap_plan_free(&p);
  /* the head removed after snap 3: preserved, then everything trimmed */
  uint64_t s32[] = { 3, 2 };
  p = apply(&o, BLK__OSD_OP_TYPE__OP_REMOVE, 3, s32, 2);
  assert_int_equal(p.clone, 3);
  snap_plan_free(&p);
  assert_int_equal(resolve(&o, 3), 3);
  assert_int_equal(resolve(&o, 4), -1000);   /* the head (which is gone: ENOENT at read) */
  p = apply(&o, BLK__OSD_OP_TYPE__OP_SNAPTRIM, 3, NULL, 0);
  assert_int_equal(p.n_remove, 2);
  assert_true(p.has_ss);
  assert_int_equal(p.ss_len, 0);   /* the snap directory goes too */
  snap_plan_free(&p);
  free(o.ss);
}

static void test_created_after_snapshot(void **state)
{
  (void)state;
  struct obj o = { 0 };
  uint64_t s1[] = { 1 };
  struct snap_plan p = apply(&o, W, 1, s1, 1);   /* object created after snap 1 */
  assert_int_equal(p.clone, 0);
  snap_plan_free(&p);
  assert_int_equal(resolve(&o, 1), -ENOENT);     /* it did not exist then */
  assert_int_equal(resolve(&o, 2), -1000);
  free(o.ss);
}

static void test_bad_args_and_corrupt(void **state)
{
  (void)state;
  Blk__OsdOp req = BLK__OSD_OP__INIT;
  uint64_t bad[] = { 5 };
  req.op = W;
  req.snap_seq = 3;
  req.snaps = bad;
  req.n_snaps = 1;
  assert_non_null(snap_bad_args(&req));   /* id > seq */
  req.n_snaps = 0;
  req.snapid = 2;
  assert_non_null(snap_bad_args(&req));   /* a write at a snapshot */
  req.op = BLK__OSD_OP_TYPE__OP_READ;
  assert_null(snap_bad_args(&req));
  srand(7);
  uint8_t buf[200];
  for (int i = 0; i < 20000; i++) {
    size_t n = (size_t)(rand() % (int)sizeof buf);
    for (size_t k = 0; k < n; k++)
      buf[k] = (uint8_t)rand();
    if (n && i % 2)
      buf[0] = 1;   /* a valid format byte: get past it */
    uint64_t s;
    int r = snap_resolve(buf, n, 1, &s);
    assert_true(r == 0 || r == -EUCLEAN || r == -ENOENT);
    struct snap_plan p;
    Blk__OsdOp w = BLK__OSD_OP__INIT;
    w.op = W;
    w.snap_seq = 9;
    r = snap_plan_make(&w, true, buf, n, &p);
    assert_true(r == 0 || r == -EUCLEAN);
    if (r == 0)
      snap_plan_free(&p);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cow_sequence),
    cmocka_unit_test(test_created_after_snapshot),
    cmocka_unit_test(test_bad_args_and_corrupt),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
