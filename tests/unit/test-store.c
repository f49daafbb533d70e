/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the object store's transactions and reads, against a real
 * store (file + RocksDB + io_uring): every op type, clone copy-on-write,
 * attrs and omap, multi-op atomicity, listing, checksum errors, a full
 * device, bad devices, and a random workload checked against a model. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "osd/internal.h"
#include "store-helpers.h"

static struct store_oid OID(const char *n, uint64_t snap)
{
  struct store_oid o = { 1, 7, n, snap };
  return o;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed + i * 13 + (i >> 9));
}

static void test_write_read_zero_truncate(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 64 << 20, 4 << 20, NULL);
  ts_open(&t);
  struct store_oid o = OID("obj", STORE_SNAP_HEAD);
  static uint8_t model[300000], buf[300000], d[300000];
  memset(model, 0, sizeof model);
  uint8_t rb[1];
  assert_int_equal(store_read_sync(t.st, &o, 0, 1, rb), -ENOENT);
  /* unaligned small, unaligned large (direct path), overlapping */
  struct { uint64_t off, len; } w[] = { { 100, 50 }, { 5000, 70000 },
                                        { 4095, 2 }, { 131000, 150000 },
                                        { 0, 4096 }, { 65536, 131072 } };
  for (unsigned i = 0; i < sizeof w / sizeof w[0]; i++) {
    fill(d, w[i].len, i);
    store_txn *x = store_txn_new();
    assert_int_equal(store_txn_write(x, &o, w[i].off, w[i].len, d), 0);
    assert_int_equal(store_queue_sync(t.st, x), 0);
    memcpy(model + w[i].off, d, w[i].len);
  }
  uint64_t size = 281000;
  assert_int_equal(store_read_sync(t.st, &o, 0, size, buf), (int)size);
  assert_memory_equal(buf, model, size);
  /* past the end: zeros, short count */
  memset(buf, 0xEE, 100);
  assert_int_equal(store_read_sync(t.st, &o, size - 10, 100, buf), 10);
  assert_memory_equal(buf, model + size - 10, 10);
  for (int i = 10; i < 100; i++)
    assert_int_equal(buf[i], 0);
  /* zero: partial blocks and whole blocks (which become holes) */
  store_txn *x = store_txn_new();
  store_txn_zero(x, &o, 3000, 20000);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  memset(model + 3000, 0, 20000);
  struct store_stat stt;
  assert_int_equal(store_stat_sync(t.st, &o, &stt), 0);
  assert_int_equal(stt.size, size);
  uint64_t alloc_before = stt.allocated;
  /* truncate down to an unaligned size, then extend: the tail reads 0 */
  x = store_txn_new();
  store_txn_truncate(x, &o, 70001);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  memset(model + 70001, 0, sizeof model - 70001);
  assert_int_equal(store_stat_sync(t.st, &o, &stt), 0);
  assert_int_equal(stt.size, 70001);
  assert_true(stt.allocated < alloc_before);
  x = store_txn_new();
  store_txn_truncate(x, &o, 200000);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  assert_int_equal(store_read_sync(t.st, &o, 0, 200000, buf), 200000);
  assert_memory_equal(buf, model, 200000);
  /* survives close/open (everything checkpointed) and a crash */
  ts_close(&t);
  ts_open(&t);
  assert_int_equal(store_read_sync(t.st, &o, 0, 200000, buf), 200000);
  assert_memory_equal(buf, model, 200000);
  x = store_txn_new();
  store_txn_write(x, &o, 1, 1, "Q");
  assert_int_equal(store_queue_sync(t.st, x), 0);
  model[1] = 'Q';
  ts_crash(&t);
  ts_open(&t);
  assert_int_equal(store_read_sync(t.st, &o, 0, 200000, buf), 200000);
  assert_memory_equal(buf, model, 200000);
  /* remove */
  x = store_txn_new();
  store_txn_remove(x, &o);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  assert_int_equal(store_stat_sync(t.st, &o, &stt), -ENOENT);
  x = store_txn_new();
  store_txn_remove(x, &o);
  assert_int_equal(store_queue_sync(t.st, x), -ENOENT);
  assert_int_equal(store_fsck(t.st, true), 0);
  struct store_statfs sf;
  store_statfs(t.st, &sf);
  assert_int_equal(sf.used, 0);     /* everything released after checkpoint */
  ts_fini(&t);
}

static void test_attrs_and_omap(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 32 << 20, 2 << 20, NULL);
  ts_open(&t);
  struct store_oid o = OID("meta", STORE_SNAP_HEAD);
  store_txn *x = store_txn_new();
  store_txn_setattr(x, &o, "_", "objinfo", 7);
  store_txn_setattr(x, &o, "snapset", "", 0);
  store_txn_omap_set(x, &o, "k2", "two", 3);
  store_txn_omap_set(x, &o, "k1", "one", 3);
  store_txn_omap_set(x, &o, "k3", "three", 5);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  void *v;
  size_t vl;
  assert_int_equal(store_getattr_sync(t.st, &o, "_", &v, &vl), 0);
  assert_int_equal(vl, 7);
  assert_memory_equal(v, "objinfo", 7);
  free(v);
  assert_int_equal(store_getattr_sync(t.st, &o, "snapset", &v, &vl), 0);
  assert_int_equal(vl, 0);
  free(v);
  assert_int_equal(store_getattr_sync(t.st, &o, "nope", &v, &vl), -ENODATA);
  assert_int_equal(store_omap_get_sync(t.st, &o, "k1", &v, &vl), 0);
  assert_memory_equal(v, "one", 3);
  free(v);
  struct store_list_ent *e;
  int n = store_omap_list(t.st, &o, NULL, 10, &e);
  assert_int_equal(n, 3);
  assert_string_equal(e[0].name, "k1");
  assert_string_equal(e[2].name, "k3");
  store_list_free(e, n);
  n = store_omap_list(t.st, &o, "k1", 1, &e);
  assert_int_equal(n, 1);
  assert_string_equal(e[0].name, "k2");
  store_list_free(e, n);
  x = store_txn_new();
  store_txn_rmattr(x, &o, "_");
  store_txn_omap_rm(x, &o, "k2");
  store_txn_omap_set(x, &o, "k1", "uno", 3);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  assert_int_equal(store_getattr_sync(t.st, &o, "_", &v, &vl), -ENODATA);
  assert_int_equal(store_omap_get_sync(t.st, &o, "k2", &v, &vl), -ENODATA);
  assert_int_equal(store_omap_get_sync(t.st, &o, "k1", &v, &vl), 0);
  assert_memory_equal(v, "uno", 3);
  free(v);
  ts_close(&t);
  ts_open(&t);
  n = store_omap_list(t.st, &o, NULL, 10, &e);
  assert_int_equal(n, 2);
  store_list_free(e, n);
  /* remove drops the omap; a new object of the same name starts empty */
  x = store_txn_new();
  store_txn_remove(x, &o);
  store_txn_touch(x, &o);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  n = store_omap_list(t.st, &o, NULL, 10, &e);
  assert_int_equal(n, 0);
  store_list_free(e, n);
  assert_int_equal(store_omap_get_sync(t.st, &o, "k1", &v, &vl), -ENODATA);
  assert_int_equal(store_fsck(t.st, false), 0);
  ts_fini(&t);
}

static void test_clone_cow(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 64 << 20, 4 << 20, NULL);
  ts_open(&t);
  struct store_oid head = OID("img.0", STORE_SNAP_HEAD), s1 = OID("img.0", 1),
                   s2 = OID("img.0", 2);
  static uint8_t a[1 << 20], b[1 << 20], r[1 << 20];
  fill(a, sizeof a, 1);
  store_txn *x = store_txn_new();
  store_txn_write(x, &head, 0, sizeof a, a);
  store_txn_setattr(x, &head, "v", "1", 1);
  store_txn_omap_set(x, &head, "m", "x", 1);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  struct store_statfs f0, f1;
  store_checkpoint_sync(t.st);
  store_statfs(t.st, &f0);
  /* snapshot: clone head -> s1 and overwrite head in the same txn */
  x = store_txn_new();
  store_txn_clone(x, &head, &s1);
  fill(b, 4096, 9);
  store_txn_write(x, &head, 8192, 4096, b);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  store_checkpoint_sync(t.st);
  store_statfs(t.st, &f1);
  /* sharing: only the overwritten block took new space */
  assert_int_equal(f1.used - f0.used, 4096);
  assert_int_equal(store_read_sync(t.st, &s1, 0, sizeof a, r), (int)sizeof a);
  assert_memory_equal(r, a, sizeof a);
  assert_int_equal(store_read_sync(t.st, &head, 0, sizeof a, r), (int)sizeof a);
  assert_memory_equal(r, a, 8192);
  assert_memory_equal(r + 8192, b, 4096);
  assert_memory_equal(r + 12288, a + 12288, sizeof a - 12288);
  /* the clone has its own attrs and omap */
  void *v;
  size_t vl;
  assert_int_equal(store_omap_get_sync(t.st, &s1, "m", &v, &vl), 0);
  free(v);
  x = store_txn_new();
  store_txn_omap_set(x, &head, "m", "y", 1);
  store_txn_setattr(x, &head, "v", "2", 1);
  /* a large overwrite of head (direct path) and a partial-block write */
  fill(b, sizeof b, 5);
  store_txn_write(x, &head, 0, 512 << 10, b);
  store_txn_write(x, &head, (768 << 10) + 100, 10, "0123456789");
  assert_int_equal(store_queue_sync(t.st, x), 0);
  assert_int_equal(store_omap_get_sync(t.st, &s1, "m", &v, &vl), 0);
  assert_memory_equal(v, "x", 1);
  free(v);
  assert_int_equal(store_getattr_sync(t.st, &s1, "v", &v, &vl), 0);
  assert_memory_equal(v, "1", 1);
  free(v);
  assert_int_equal(store_read_sync(t.st, &s1, 0, sizeof a, r), (int)sizeof a);
  assert_memory_equal(r, a, sizeof a);
  /* second snapshot, then remove head: the snapshots keep their data */
  x = store_txn_new();
  store_txn_clone(x, &head, &s2);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  x = store_txn_new();
  store_txn_remove(x, &head);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  ts_crash(&t);
  ts_open(&t);
  assert_int_equal(store_read_sync(t.st, &s1, 0, sizeof a, r), (int)sizeof a);
  assert_memory_equal(r, a, sizeof a);
  assert_int_equal(store_read_sync(t.st, &s2, 0, 512 << 10, r), 512 << 10);
  assert_memory_equal(r, b, 512 << 10);
  assert_int_equal(store_read_sync(t.st, &s2, (768 << 10) + 100, 10, r), 10);
  assert_memory_equal(r, "0123456789", 10);
  assert_int_equal(store_fsck(t.st, true), 0);
  /* removing every clone frees everything */
  x = store_txn_new();
  store_txn_remove(x, &s1);
  store_txn_remove(x, &s2);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  store_checkpoint_sync(t.st);
  store_statfs(t.st, &f1);
  assert_int_equal(f1.used, 0);
  x = store_txn_new();
  store_txn_clone(x, &head, &s1);
  assert_int_equal(store_queue_sync(t.st, x), -ENOENT);
  assert_int_equal(store_fsck(t.st, false), 0);
  ts_fini(&t);
}

static void test_multi_op_atomicity(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 32 << 20, 2 << 20, NULL);
  ts_open(&t);
  struct store_oid a = OID("a", STORE_SNAP_HEAD), b = OID("b", STORE_SNAP_HEAD),
                   missing = OID("missing", STORE_SNAP_HEAD);
  assert_int_equal(ts_write(&t, "a", 0, 20000, 1), 0);
  store_checkpoint_sync(t.st);
  struct store_statfs f0, f1;
  store_statfs(t.st, &f0);
  /* five ops, the last fails: nothing of the first four may remain */
  store_txn *x = store_txn_new();
  uint8_t d[70000];
  fill(d, sizeof d, 3);
  store_txn_write(x, &a, 100, sizeof d, d);
  store_txn_write(x, &b, 0, 5000, d);
  store_txn_setattr(x, &a, "x", "y", 1);
  store_txn_clone(x, &a, &b);
  store_txn_omap_rm(x, &missing, "k");
  assert_int_equal(store_queue_sync(t.st, x), -ENOENT);
  ts_check(&t, "a", 0, 20000, 1);
  struct store_stat s;
  assert_int_equal(store_stat_sync(t.st, &a, &s), 0);
  assert_int_equal(s.size, 20000);
  assert_int_equal(s.n_attrs, 0);
  assert_int_equal(store_stat_sync(t.st, &b, &s), -ENOENT);
  store_checkpoint_sync(t.st);
  store_statfs(t.st, &f1);
  assert_int_equal(f1.used, f0.used);
  /* bad arguments are refused at build time and fail the txn */
  x = store_txn_new();
  struct store_oid bad = OID("", STORE_SNAP_HEAD);
  assert_int_equal(store_txn_write(x, &bad, 0, 1, "x"), -EINVAL);
  assert_int_equal(store_txn_write(x, &a, UINT64_MAX - 1, 10, d), -EINVAL);
  assert_int_equal(store_queue_sync(t.st, x), -EINVAL);
  x = store_txn_new();
  assert_int_equal(store_queue_sync(t.st, x), -EINVAL);   /* empty */
  /* the same multi-op transaction, valid, applies wholly */
  x = store_txn_new();
  store_txn_write(x, &a, 100, sizeof d, d);
  store_txn_setattr(x, &a, "x", "y", 1);
  store_txn_clone(x, &a, &b);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  uint8_t r[70000];
  assert_int_equal(store_read_sync(t.st, &b, 100, sizeof d, r), (int)sizeof d);
  assert_memory_equal(r, d, sizeof d);
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void test_list(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 32 << 20, 2 << 20, NULL);
  ts_open(&t);
  const char *names[] = { "b", "a", "ab", "c", "a\x01" };
  store_txn *x = store_txn_new();
  for (int i = 0; i < 5; i++) {
    struct store_oid o = { 2, 3, names[i], STORE_SNAP_HEAD };
    store_txn_touch(x, &o);
  }
  struct store_oid s = { 2, 3, "a", 5 }, other = { 2, 4, "zz", STORE_SNAP_HEAD };
  store_txn_touch(x, &s);
  store_txn_touch(x, &other);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  for (int pass = 0; pass < 2; pass++) {
    struct store_list_ent *e;
    int n = store_list(t.st, 2, 3, NULL, 0, 100, &e);
    assert_int_equal(n, 6);
    assert_string_equal(e[0].name, "a");
    assert_int_equal(e[0].snap, 5);
    assert_string_equal(e[1].name, "a");
    assert_int_equal(e[1].snap, STORE_SNAP_HEAD);
    assert_string_equal(e[2].name, "a\x01");
    assert_string_equal(e[3].name, "ab");
    assert_string_equal(e[5].name, "c");
    store_list_free(e, n);
    n = store_list(t.st, 2, 3, "a", STORE_SNAP_HEAD, 2, &e);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].name, "a\x01");
    assert_string_equal(e[1].name, "ab");
    store_list_free(e, n);
    n = store_list(t.st, 2, 3, "c", STORE_SNAP_HEAD, 2, &e);
    assert_int_equal(n, 0);
    store_list_free(e, n);
    ts_close(&t);        /* second pass: from RocksDB, not the overlay */
    ts_open(&t);
  }
  ts_fini(&t);
}

static void test_checksum_mismatch(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 32 << 20, 2 << 20, NULL);
  ts_open(&t);
  assert_int_equal(ts_write(&t, "c", 0, 65536, 4), 0);
  struct store_oid o = ts_oid("c");
  int64_t off = store_debug_block_offset(t.st, &o, 40000);
  assert_true(off > 0);
  ts_close(&t);
  int fd = open(t.dev, O_RDWR);
  uint8_t byte;
  assert_int_equal(pread(fd, &byte, 1, off + 123), 1);
  byte ^= 0x04;
  assert_int_equal(pwrite(fd, &byte, 1, off + 123), 1);
  fsync(fd);
  close(fd);
  ts_open(&t);
  static uint8_t b[65536];
  assert_int_equal(store_read_sync(t.st, &o, 0, 65536, b), -EBADMSG);
  assert_int_equal(store_read_sync(t.st, &o, 40000, 10, b), -EBADMSG);
  /* other blocks read fine */
  ts_check(&t, "c", 0, 36864, 4);
  ts_check(&t, "c", 40960, 24576, 4);
  /* a partial write into the bad block cannot merge with it */
  store_txn *x = store_txn_new();
  store_txn_write(x, &o, 36900, 10, "xxxxxxxxxx");
  assert_int_equal(store_queue_sync(t.st, x), -EBADMSG);
  assert_int_equal(store_fsck(t.st, false), 0);
  assert_int_equal(store_fsck(t.st, true), 1);
  /* a full-block rewrite (the replica repair) heals it */
  assert_int_equal(ts_write(&t, "c", 36864, 4096, 4), 0);
  ts_check(&t, "c", 0, 65536, 4);
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void count_cb(void *arg, int result)
{
  int *left = arg;
  assert_int_equal(result, 0);
  (*left)--;
}

static void test_full_device(void **state)
{
  (void)state;
  struct tstore t;
  const char *opts[] = { "osd_store_nearfull_ratio=80", NULL };
  ts_init(&t, 24 << 20, 1 << 20, opts);   /* ~22 MiB data area */
  ts_open(&t);
  struct store_statfs sf;
  store_statfs(t.st, &sf);
  assert_false(sf.nearfull);
  uint64_t total = sf.total;
  int i, r = 0;
  static uint8_t d[1 << 20];
  fill(d, sizeof d, 1);
  char name[32];
  for (i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "f%d", i);
    struct store_oid o = ts_oid(name);
    store_txn *x = store_txn_new();
    store_txn_write(x, &o, 0, sizeof d, d);
    r = store_queue_sync(t.st, x);
    if (r < 0)
      break;
  }
  assert_int_equal(r, -ENOSPC);
  int full_at = i;
  assert_true((uint64_t)full_at * (1 << 20) <= total);
  store_statfs(t.st, &sf);
  assert_true(sf.nearfull);
  /* small writes fail too, the store stays readable and consistent */
  struct store_oid o = ts_oid("f0");
  store_txn *x = store_txn_new();
  store_txn_write(x, &o, sizeof d, 8192, d);   /* grows f0: needs space */
  r = store_queue_sync(t.st, x);
  if (r == 0) {
    /* a few blocks were left: fill them */
    for (int k = 0; k < 1000 && r == 0; k++) {
      x = store_txn_new();
      store_txn_write(x, &o, sizeof d + 8192 + (uint64_t)k * 4096, 4096, d);
      r = store_queue_sync(t.st, x);
    }
  }
  assert_int_equal(r, -ENOSPC);
  uint8_t rb[4096];
  assert_int_equal(store_read_sync(t.st, &o, 0, 4096, rb), 4096);
  assert_memory_equal(rb, d, 4096);
  assert_int_equal(store_fsck(t.st, true), 0);
  /* 4 KiB overwrites at queue depth (which would go direct, to new
   * blocks) still succeed on the full device: in place, deferred */
  {
    int left = 0;
    static uint8_t ow[16][4096];
    for (int k = 0; k < 16; k++) {
      fill(ow[k], 4096, (unsigned)(100 + k));
      x = store_txn_new();
      store_txn_write(x, &o, (uint64_t)k * 4096, 4096, ow[k]);
      left++;
      store_queue(t.st, x, count_cb, &left);
    }
    while (left)
      event_base_loop(t.base, EVLOOP_ONCE);
    for (int k = 0; k < 16; k++) {
      assert_int_equal(store_read_sync(t.st, &o, (uint64_t)k * 4096, 4096, rb),
                       4096);
      assert_memory_equal(rb, ow[k], 4096);
    }
    store_statfs(t.st, &sf);
    assert_int_equal(sf.small_direct, 0);
    assert_int_equal(store_fsck(t.st, true), 0);
  }
  /* remove and truncate give space back; writes succeed again */
  x = store_txn_new();
  struct store_oid o1 = ts_oid("f1"), o2 = ts_oid("f2");
  store_txn_remove(x, &o1);
  store_txn_truncate(x, &o2, 4096);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  x = store_txn_new();
  struct store_oid n = ts_oid("new");
  store_txn_write(x, &n, 0, sizeof d, d);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  store_statfs(t.st, &sf);
  assert_int_equal(sf.total, total);
  assert_int_equal(sf.used + sf.free, total);
  ts_close(&t);
  ts_open(&t);
  assert_int_equal(store_read_sync(t.st, &n, 0, 4096, rb), 4096);
  assert_memory_equal(rb, d, 4096);
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void test_bad_devices(void **state)
{
  (void)state;
  struct tstore t;
  ts_init(&t, 16 << 20, 1 << 20, NULL);
  /* a second mkfs is refused without force, accepted with it */
  struct store_mkfs_opts mo = { .osd_id = 3 };
  assert_int_equal(store_mkfs(t.dev, t.data, &mo, t.cfg), -EEXIST);
  char other[400];
  snprintf(other, sizeof other, "%s/db2", t.dir);
  assert_int_equal(store_mkfs(t.dev, other, &mo, t.cfg), -EEXIST);
  /* wrong metadata directory for this device */
  char dev2[400];
  snprintf(dev2, sizeof dev2, "%s/dev2", t.dir);
  struct store_mkfs_opts m2 = { .osd_id = 4, .device_size = 16 << 20 };
  assert_int_equal(store_mkfs(dev2, other, &m2, t.cfg), 0);
  store *st;
  assert_int_equal(store_open(dev2, t.data, t.base, t.cfg, &st), -EINVAL);
  assert_int_equal(store_open(t.dev, "/nonexistent/dir", t.base, t.cfg, &st),
                   -ENOENT);
  /* corrupt superblock */
  int fd = open(t.dev, O_RDWR);
  assert_int_equal(pwrite(fd, "X", 1, 100), 1);
  close(fd);
  assert_int_equal(store_open(t.dev, t.data, t.base, t.cfg, &st), -EUCLEAN);
  /* not a store at all; too small to format */
  fd = open(t.dev, O_RDWR | O_TRUNC);
  assert_int_equal(ftruncate(fd, 128 << 10), 0);
  close(fd);
  assert_int_equal(store_open(t.dev, t.data, t.base, t.cfg, &st), -EINVAL);
  mo.force = true;
  assert_int_equal(store_mkfs(t.dev, t.data, &mo, t.cfg), -EINVAL);
  /* forced format of a store-holding device works and is empty */
  assert_int_equal(store_mkfs(dev2, other, &mo, t.cfg), 0);
  assert_int_equal(store_open(dev2, other, t.base, t.cfg, &st), 0);
  struct store_statfs sf;
  store_statfs(st, &sf);
  assert_int_equal(sf.used, 0);
  store_close(st);
  ts_fini(&t);
}

/* Random transactions (all op types, small and large writes, clones)
 * against a byte model, with reopen and crash in between. */
#define NOBJ 6
#define OSZ (300 * 1024)
static uint8_t mdata[NOBJ][OSZ];
static uint64_t msize[NOBJ];
static bool mexists[NOBJ];

static void test_random_model(void **state)
{
  (void)state;
  struct tstore t;
  const char *opts[] = { "osd_store_ckpt_interval=50ms", NULL };
  ts_init(&t, 64 << 20, 512 << 10, opts);
  ts_open(&t);
  memset(mexists, 0, sizeof mexists);
  srand(12345);
  static uint8_t d[OSZ], r[OSZ];
  for (int it = 0; it < 600; it++) {
    int k = rand() % NOBJ;
    char name[16];
    snprintf(name, sizeof name, "r%d", k);
    struct store_oid o = ts_oid(name);
    store_txn *x = store_txn_new();
    int op = rand() % 10;
    int expect = 0;
    if (op < 5) {
      uint64_t len = rand() % 3 ? 1 + rand() % 9000 : 1 + rand() % 200000;
      uint64_t off = (uint64_t)rand() % (OSZ - len);
      fill(d, len, (unsigned)it);
      store_txn_write(x, &o, off, len, d);
      memcpy(mdata[k] + off, d, len);
      if (!mexists[k] || off + len > msize[k]) {
        if (!mexists[k])
          memset(mdata[k], 0, off), memset(mdata[k] + off + len, 0, OSZ - off - len);
        msize[k] = mexists[k] && msize[k] > off + len ? msize[k] : off + len;
      }
      mexists[k] = true;
    } else if (op == 5) {
      uint64_t off = (uint64_t)rand() % OSZ, len = (uint64_t)rand() % (OSZ - off);
      store_txn_zero(x, &o, off, len);
      if (!mexists[k])
        memset(mdata[k], 0, OSZ), msize[k] = 0;
      memset(mdata[k] + off, 0, len);
      if (off + len > msize[k])
        msize[k] = off + len;
      mexists[k] = true;
    } else if (op == 6) {
      uint64_t ns = (uint64_t)rand() % OSZ;
      store_txn_truncate(x, &o, ns);
      if (!mexists[k])
        memset(mdata[k], 0, OSZ), msize[k] = 0;
      if (ns < msize[k])
        memset(mdata[k] + ns, 0, OSZ - ns);
      msize[k] = ns;
      mexists[k] = true;
    } else if (op == 7) {
      store_txn_remove(x, &o);
      expect = mexists[k] ? 0 : -ENOENT;
      mexists[k] = false;
    } else {
      int j = (k + 1 + rand() % (NOBJ - 1)) % NOBJ;
      char dn[16];
      snprintf(dn, sizeof dn, "r%d", j);
      struct store_oid dst = ts_oid(dn);
      store_txn_clone(x, &o, &dst);
      if (mexists[k]) {
        memcpy(mdata[j], mdata[k], OSZ);
        msize[j] = msize[k];
        mexists[j] = true;
      } else {
        expect = -ENOENT;
      }
    }
    assert_int_equal(store_queue_sync(t.st, x), expect);
    if (it % 97 == 0)
      ts_crash(&t), ts_open(&t);
    else if (it % 131 == 0)
      ts_close(&t), ts_open(&t);
    if (it % 50 == 0 || it == 599) {
      for (int q = 0; q < NOBJ; q++) {
        snprintf(name, sizeof name, "r%d", q);
        struct store_oid qo = ts_oid(name);
        int rr = store_read_sync(t.st, &qo, 0, OSZ, r);
        if (!mexists[q]) {
          assert_int_equal(rr, -ENOENT);
          continue;
        }
        assert_int_equal(rr, (int)msize[q]);
        assert_memory_equal(r, mdata[q], msize[q]);
      }
    }
  }
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

/* Small writes at queue depth go direct (osd_store_direct_min_queue):
 * 4 KiB overwrites queued 32 at a time, several on the same block within
 * one batch, mixed with partial-block writes (read-modify-write, always
 * journaled); everything reads back, survives a crash, deep fsck is
 * clean; at depth 1 small writes stay deferred. */
static void test_small_direct_at_depth(void **state)
{
  (void)state;
  struct tstore t;
  const char *opts[] = { "osd_store_direct_min_queue=4", NULL };
  ts_init(&t, 64 << 20, 4 << 20, opts);
  ts_open(&t);
  enum { SZ = 64 * 4096 };
  static uint8_t model[SZ], buf[SZ];
  struct store_oid o = OID("deep", STORE_SNAP_HEAD);
  fill(model, SZ, 1);
  store_txn *x = store_txn_new();
  store_txn_write(x, &o, 0, SZ, model);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  struct store_statfs sf;
  for (int round = 0; round < 6; round++) {
    int left = 0;
    for (int i = 0; i < 32; i++) {
      uint64_t off, len;
      if (i % 5 == 4) {                 /* partial block */
        off = (uint64_t)((i * 7 + round) % 64) * 4096 + 100;
        len = 1000;
      } else {                          /* full block, often the same one */
        off = (uint64_t)((i * 3 + round) % 8) * 4096;
        len = 4096;
      }
      uint8_t d[4096];
      fill(d, len, (unsigned)(round * 32 + i));
      memcpy(model + off, d, len);
      x = store_txn_new();
      store_txn_write(x, &o, off, len, d);
      left++;
      store_queue(t.st, x, count_cb, &left);
    }
    while (left)
      event_base_loop(t.base, EVLOOP_ONCE);
    assert_int_equal(store_read_sync(t.st, &o, 0, SZ, buf), SZ);
    assert_memory_equal(buf, model, SZ);
    if (round == 2)
      assert_int_equal(store_checkpoint_sync(t.st), 0);
  }
  store_statfs(t.st, &sf);
  assert_true(sf.small_direct > 0);
  assert_int_equal(store_fsck(t.st, true), 0);
  /* one write alone: the next ones see a journal write of one record */
  assert_int_equal(ts_write(&t, "alone", 0, 4096, 3), 0);
  store_statfs(t.st, &sf);
  uint64_t before = sf.small_direct;
  for (int i = 0; i < 5; i++)
    assert_int_equal(ts_write(&t, "alone", (uint64_t)i * 4096, 4096, 4), 0);
  store_statfs(t.st, &sf);
  assert_int_equal(sf.small_direct, before);
  /* acknowledged direct small writes survive a crash */
  ts_crash(&t);
  ts_open(&t);
  assert_int_equal(store_read_sync(t.st, &o, 0, SZ, buf), SZ);
  assert_memory_equal(buf, model, SZ);
  ts_check(&t, "alone", 0, 5 * 4096, 4);
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_write_read_zero_truncate),
    cmocka_unit_test(test_attrs_and_omap),
    cmocka_unit_test(test_clone_cow),
    cmocka_unit_test(test_multi_op_atomicity),
    cmocka_unit_test(test_list),
    cmocka_unit_test(test_checksum_mismatch),
    cmocka_unit_test(test_full_device),
    cmocka_unit_test(test_bad_devices),
    cmocka_unit_test(test_random_model),
    cmocka_unit_test(test_small_direct_at_depth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
