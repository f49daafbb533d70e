/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the journal: record codec (osd/journal.c) and, through a
 * real store, wrap-around, replay after a crash, torn and corrupt tails. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "common/crc32c.h"
#include "osd/internal.h"
#include "store-helpers.h"

/* Build a record with two puts, a delete, a range delete, 2 data blocks and
 * one direct block into rec (>= 5 blocks). */
static struct jrec_hdr build(uint8_t *rec)
{
  size_t ops = jop_size(JOP_PUT, 3, 5) + jop_size(JOP_PUT, 1, 0) +
               jop_size(JOP_DEL, 4, 0) + jop_size(JOP_DELRANGE, 2, 2);
  uint64_t len = jrec_size(ops, 2, 1);
  memset(rec, 0, len);
  uint8_t *q = rec + JREC_HDR;
  q = jop_encode(q, JOP_PUT, "abc", 3, "hello", 5);
  q = jop_encode(q, JOP_PUT, "z", 1, NULL, 0);
  q = jop_encode(q, JOP_DEL, "gone", 4, NULL, 0);
  q = jop_encode(q, JOP_DELRANGE, "a0", 2, "a9", 2);
  put_le64(q, 11); put_le64(q + 8, 12); q += 16;
  put_le64(q, 99); put_le32(q + 8, 0xdeadbeef); q += 12;
  struct jrec_hdr h = { 0 };
  h.seq = 42;
  h.len = (uint32_t)len;
  h.meta_len = (uint32_t)(q - rec - JREC_HDR);
  h.prev_crc = 0x1234;
  h.n_ops = 4;
  h.n_data = 2;
  h.n_direct = 1;
  h.nonce = 77;
  memset(rec + jrec_data_off(&h, 0), 0xAA, STORE_BLOCK);
  memset(rec + jrec_data_off(&h, 1), 0xBB, STORE_BLOCK);
  jrec_seal(rec, &h);
  return h;
}

/* jrec_seal_crcs (record crc combined from the journaled blocks' crcs)
 * gives jrec_seal's crc for 0..5 data blocks of random bytes, and a flipped
 * byte in a data block is caught by jrec_verify. */
static void test_seal_from_block_crcs(void **state)
{
  (void)state;
  static uint8_t rec[8 * STORE_BLOCK], copy[8 * STORE_BLOCK];
  uint64_t x = 0x243F6A8885A308D3ull;
  for (uint32_t nd = 0; nd <= 5; nd++) {
    for (size_t i = 0; i < sizeof rec; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      rec[i] = (uint8_t)x;
    }
    uint8_t *q = rec + JREC_HDR;
    q = jop_encode(q, JOP_PUT, "key", 3, "value", 5);
    for (uint32_t i = 0; i < nd; i++) {
      put_le64(q, 100 + i);
      q += 8;
    }
    struct jrec_hdr h = { 0 };
    h.seq = 7 + nd;
    h.len = (1 + nd) * STORE_BLOCK;
    h.meta_len = (uint32_t)(q - rec - JREC_HDR);
    h.n_ops = 1;
    h.n_data = nd;
    h.nonce = 5;
    memset(q, 0, STORE_BLOCK - (size_t)(q - rec));
    uint32_t crcs[5];
    for (uint32_t i = 0; i < nd; i++)
      crcs[i] = crc32c(0, rec + jrec_data_off(&h, i), STORE_BLOCK);
    struct jrec_hdr h1 = h, h2 = h;
    jrec_seal_crcs(rec, &h2, crcs);
    memcpy(copy, rec, h.len);
    jrec_seal(rec, &h1);
    assert_int_equal(h1.crc, h2.crc);
    assert_memory_equal(copy, rec, h.len);
    assert_int_equal(jrec_verify(rec, &h2), 0);
    if (nd) {
      rec[jrec_data_off(&h, nd - 1) + 17] ^= 0x20;
      assert_int_equal(jrec_verify(rec, &h2), -EBADMSG);
    }
  }
}

static void test_record_roundtrip(void **state)
{
  (void)state;
  static uint8_t rec[8 * STORE_BLOCK];
  struct jrec_hdr h = build(rec), p;
  assert_int_equal(h.len, 3 * STORE_BLOCK);
  assert_int_equal(jrec_parse_hdr(rec, 1 << 20, &p), 0);
  assert_int_equal(p.seq, 42);
  assert_int_equal(p.prev_crc, 0x1234);
  assert_int_equal(p.crc, h.crc);
  assert_int_equal(jrec_verify(rec, &p), 0);
  struct jrec_iter it;
  struct jop op;
  jrec_iter_init(&it, rec, &p);
  assert_int_equal(jrec_iter_next(&it, &op), 1);
  assert_int_equal(op.type, JOP_PUT);
  assert_memory_equal(op.key, "abc", 3);
  assert_int_equal(op.vlen, 5);
  assert_memory_equal(op.val, "hello", 5);
  assert_int_equal(jrec_iter_next(&it, &op), 1);
  assert_int_equal(op.vlen, 0);
  assert_int_equal(jrec_iter_next(&it, &op), 1);
  assert_int_equal(op.type, JOP_DEL);
  assert_int_equal(jrec_iter_next(&it, &op), 1);
  assert_int_equal(op.type, JOP_DELRANGE);
  assert_memory_equal(op.val, "a9", 2);
  assert_int_equal(jrec_iter_next(&it, &op), 0);
  assert_int_equal(jrec_data_lba(rec, &p, 1), 12);
  uint64_t lba;
  uint32_t crc;
  jrec_direct(rec, &p, 0, &lba, &crc);
  assert_int_equal(lba, 99);
  assert_int_equal(crc, 0xdeadbeef);
  assert_int_equal(rec[jrec_data_off(&p, 1)], 0xBB);
}

static void test_record_corruption(void **state)
{
  (void)state;
  static uint8_t rec[8 * STORE_BLOCK];
  struct jrec_hdr h = build(rec), p;
  /* any flipped bit anywhere in the record fails the crc */
  for (uint32_t off = 0; off < h.len; off += 997) {
    if (off >= 4 && off < 8)
      continue;
    rec[off] ^= 0x10;
    int r = jrec_parse_hdr(rec, 1 << 20, &p);
    if (r == 0)
      assert_int_not_equal(jrec_verify(rec, &p), 0);
    rec[off] ^= 0x10;
  }
  /* lengths that do not add up are refused before any use */
  assert_int_equal(jrec_parse_hdr(rec, 2 * STORE_BLOCK, &p), -EINVAL); /* > max */
  put_le32(rec + 16, h.len + 100);                                  /* unaligned */
  assert_int_equal(jrec_parse_hdr(rec, 1 << 20, &p), -EINVAL);
  put_le32(rec + 16, h.len);
  put_le32(rec + 32, 1000);                                         /* n_data */
  assert_int_equal(jrec_parse_hdr(rec, 1 << 20, &p), -EINVAL);
  put_le32(rec + 32, 2);
  put_le32(rec, 0);                                                 /* magic */
  assert_int_equal(jrec_parse_hdr(rec, 1 << 20, &p), -EINVAL);
  /* a well-sealed record whose op lengths overrun the section */
  h = build(rec);
  put_le16(rec + JREC_HDR + 1, 60000);
  jrec_seal(rec, &h);
  assert_int_equal(jrec_parse_hdr(rec, 1 << 20, &p), 0);
  assert_int_equal(jrec_verify(rec, &p), -EINVAL);
}

/* Pack record images recs[0..n) into a batch at bat as the store's writer
 * does (header area of the heads, then the data blocks); returns its
 * header, sealed. */
static struct jbat_hdr pack(uint8_t *bat, uint8_t *const *recs, int n)
{
  uint64_t heads = 0, data = 0;
  for (int i = 0; i < n; i++) {
    heads += jbat_head_bytes(recs[i]);
    data += (uint64_t)get_le32(recs[i] + 32) * STORE_BLOCK;
  }
  struct jbat_hdr b = { 0 };
  b.first_seq = get_le64(recs[0] + 8);
  b.n_rec = (uint32_t)n;
  b.hlen = (uint32_t)jbat_hlen(heads);
  b.len = (uint32_t)(b.hlen + data);
  b.nonce = 5;
  memset(bat, 0, b.hlen);
  uint8_t *q = bat + JBAT_HDR, *d = bat + b.hlen;
  for (int i = 0; i < n; i++) {
    q = jbat_add(q, recs[i]);
    uint32_t nd = get_le32(recs[i] + 32);
    uint32_t len = get_le32(recs[i] + 16);
    memcpy(d, recs[i] + len - (size_t)nd * STORE_BLOCK, (size_t)nd * STORE_BLOCK);
    d += (size_t)nd * STORE_BLOCK;
  }
  jbat_seal(bat, &b);
  return b;
}

/* Three records (2, 0 and 2 data blocks; one with a metadata section long
 * enough to need a second header block when packed) in one batch: the
 * batch is smaller than the records one by one, and each record image
 * rebuilt from it is byte for byte the original and verifies. */
static void test_batch_roundtrip(void **state)
{
  (void)state;
  static uint8_t r0[8 * STORE_BLOCK], r1[8 * STORE_BLOCK], r2[8 * STORE_BLOCK];
  static uint8_t bat[32 * STORE_BLOCK], img[8 * STORE_BLOCK];
  struct jrec_hdr h0 = build(r0);
  /* r1: ~4000 bytes of metadata, no data blocks */
  static uint8_t big[4000];
  memset(big, 0x33, sizeof big);
  size_t ops = jop_size(JOP_PUT, 4, sizeof big);
  uint64_t len1 = jrec_size(ops, 0, 0);
  memset(r1, 0, len1);
  uint8_t *q = jop_encode(r1 + JREC_HDR, JOP_PUT, "bigv", 4, big, sizeof big);
  struct jrec_hdr h1 = { 0 };
  h1.seq = 43;
  h1.len = (uint32_t)len1;
  h1.meta_len = (uint32_t)(q - r1 - JREC_HDR);
  h1.prev_crc = h0.crc;
  h1.n_ops = 1;
  h1.nonce = 77;
  jrec_seal(r1, &h1);
  struct jrec_hdr h2 = build(r2);
  h2.seq = 44;
  h2.prev_crc = h1.crc;
  memset(r2 + jrec_data_off(&h2, 1), 0xCC, STORE_BLOCK);
  jrec_seal(r2, &h2);
  uint8_t *recs[3] = { r0, r1, r2 };
  struct jbat_hdr b = pack(bat, recs, 3), p;
  assert_int_equal(b.hlen, 2 * STORE_BLOCK);
  assert_int_equal(b.len, 6 * STORE_BLOCK);
  assert_true(b.len < h0.len + h1.len + h2.len);
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), 0);
  assert_int_equal(p.first_seq, 42);
  assert_int_equal(p.n_rec, 3);
  assert_int_equal(jbat_verify(bat, &p), 0);
  struct jbat_iter it;
  struct jbat_rec br;
  const struct jrec_hdr *hs[3] = { &h0, &h1, &h2 };
  jbat_iter_init(&it, bat, &p);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(jbat_iter_next(&it, &br), 1);
    assert_int_equal(br.seq, hs[i]->seq);
    assert_int_equal(br.rec_len, hs[i]->len);
    jbat_rec_image(img, bat, &br);
    assert_memory_equal(img, recs[i], hs[i]->len);
    struct jrec_hdr ph;
    assert_int_equal(jrec_parse_hdr(img, 1 << 20, &ph), 0);
    assert_int_equal(jrec_verify(img, &ph), 0);
    assert_int_equal(ph.prev_crc, i ? hs[i - 1]->crc : 0x1234);
  }
  assert_int_equal(jbat_iter_next(&it, &br), 0);
}

/* A flipped bit in the header area fails the batch crc; one in a data
 * block fails only the record that owns it; framing that does not add up
 * is refused by parse or by the iterator, never read past. */
static void test_batch_corruption(void **state)
{
  (void)state;
  static uint8_t r0[8 * STORE_BLOCK], r1[8 * STORE_BLOCK];
  static uint8_t bat[32 * STORE_BLOCK], img[8 * STORE_BLOCK];
  struct jrec_hdr h0 = build(r0), h1 = build(r1);
  h1.seq = 43;
  jrec_seal(r1, &h1);
  uint8_t *recs[2] = { r0, r1 };
  struct jbat_hdr b = pack(bat, recs, 2), p;
  for (uint32_t off = 0; off < b.hlen; off += 211) {
    if (off >= 4 && off < 8)
      continue;
    bat[off] ^= 0x04;
    if (jbat_parse_hdr(bat, sizeof bat, &p) == 0)
      assert_int_equal(jbat_verify(bat, &p), -EBADMSG);
    bat[off] ^= 0x04;
  }
  /* the first data block of record 2 (after record 1's two) */
  bat[b.hlen + 2 * STORE_BLOCK + 7] ^= 0x01;
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), 0);
  assert_int_equal(jbat_verify(bat, &p), 0);
  struct jbat_iter it;
  struct jbat_rec br;
  struct jrec_hdr ph;
  jbat_iter_init(&it, bat, &p);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  jbat_rec_image(img, bat, &br);
  assert_int_equal(jrec_parse_hdr(img, 1 << 20, &ph), 0);
  assert_int_equal(jrec_verify(img, &ph), 0);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  jbat_rec_image(img, bat, &br);
  assert_int_equal(jrec_parse_hdr(img, 1 << 20, &ph), 0);
  assert_int_equal(jrec_verify(img, &ph), -EBADMSG);
  bat[b.hlen + 2 * STORE_BLOCK + 7] ^= 0x01;
  (void)h0;
  /* framing */
  assert_int_equal(jbat_parse_hdr(bat, b.len - STORE_BLOCK, &p), -EINVAL);
  struct jbat_hdr bad = b;
  bad.n_rec = 1000;                       /* more heads than fit */
  jbat_seal(bat, &bad);
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), -EINVAL);
  bad = b;
  bad.n_rec = 3;                          /* a third head that is padding */
  jbat_seal(bat, &bad);
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), 0);
  jbat_iter_init(&it, bat, &p);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  assert_int_equal(jbat_iter_next(&it, &br), 1);  /* a zero head */
  jbat_rec_image(img, bat, &br);
  assert_int_equal(jrec_parse_hdr(img, 1 << 20, &ph), -EINVAL);
  assert_int_equal(jbat_iter_next(&it, &br), 0);
  bad = b;
  bad.len = b.len + STORE_BLOCK;          /* data blocks nobody owns */
  jbat_seal(bat, &bad);
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), 0);
  jbat_iter_init(&it, bat, &p);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  assert_int_equal(jbat_iter_next(&it, &br), 1);
  assert_int_equal(jbat_iter_next(&it, &br), -EINVAL);
  bad = b;                                /* a head whose meta_len overruns */
  put_le32(bat + JBAT_HDR + 20, b.hlen);
  jbat_seal(bat, &bad);
  assert_int_equal(jbat_parse_hdr(bat, sizeof bat, &p), 0);
  jbat_iter_init(&it, bat, &p);
  assert_int_equal(jbat_iter_next(&it, &br), -EINVAL);
  /* an older superblock version is refused with a clear message */
  static uint8_t sbb[STORE_BLOCK];
  struct superblock sb = { 0 }, out;
  sb.version = 1;
  sb.block_size = STORE_BLOCK;
  sb.journal_offset = STORE_BLOCK;
  sb.journal_size = 16 * STORE_BLOCK;
  sb.data_offset = 131072;
  sb.data_size = 64 * STORE_BLOCK;
  sb.device_size = sb.data_offset + sb.data_size;
  sb_encode(&sb, sbb);
  char err[200];
  assert_int_equal(sb_decode(sbb, sb.device_size, &out, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "store format version 1"));
  assert_non_null(strstr(err, "--mkfs"));
  sb.version = SB_VERSION;
  sb_encode(&sb, sbb);
  assert_int_equal(sb_decode(sbb, sb.device_size, &out, err, sizeof err), 0);
}

/* Many transactions through a tiny journal: it wraps many times (the
 * checkpoint trims it); after a crash every acknowledged write is there. */
static void test_wrap_around_and_replay(void **state)
{
  (void)state;
  struct tstore t;
  const char *opts[] = { "osd_store_ckpt_interval=10s", NULL };
  ts_init(&t, 64 << 20, 256 << 10, opts);   /* 256 KiB journal */
  ts_open(&t);
  struct store_statfs sf;
  uint64_t max_used = 0;
  for (int i = 0; i < 300; i++) {
    char name[16];
    snprintf(name, sizeof name, "o%d", i % 10);
    assert_int_equal(ts_write(&t, name, (uint64_t)(i / 10) * 12288, 12288,
                              (unsigned)i), 0);
    store_statfs(t.st, &sf);
    if (sf.journal_used > max_used)
      max_used = sf.journal_used;
  }
  assert_true(max_used <= 256 << 10);
  ts_crash(&t);
  ts_open(&t);
  for (int i = 0; i < 300; i++) {
    char name[16];
    snprintf(name, sizeof name, "o%d", i % 10);
    ts_check(&t, name, (uint64_t)(i / 10) * 12288, 12288, (unsigned)i);
  }
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void count_cb(void *arg, int r)
{
  int *n = arg;
  assert_int_equal(r, 0);
  (*n)++;
}

/* Group commit: many transactions in flight at once form multi-record
 * journal writes; a batch must never run past the end of the journal
 * (regression: it once wrote into the data area). */
static void test_group_commit_wrap(void **state)
{
  (void)state;
  struct tstore t;
  const char *opts[] = { "osd_store_ckpt_interval=10s", NULL };
  ts_init(&t, 64 << 20, 256 << 10, opts);
  ts_open(&t);
  uint8_t buf[6000];
  int done = 0, queued = 0;
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < 16; i++) {
      char name[16];
      snprintf(name, sizeof name, "g%d", i);
      struct store_oid o = ts_oid(name);
      memset(buf, round * 16 + i, sizeof buf);
      store_txn *x = store_txn_new();
      store_txn_write(x, &o, 0, 1000 + (uint64_t)(round * 37 + i * 101) % 5000,
                      buf);
      store_queue(t.st, x, count_cb, &done);
      queued++;
    }
    while (done < queued)
      event_base_loop(t.base, EVLOOP_ONCE);
  }
  ts_crash(&t);
  ts_open(&t);
  for (int i = 0; i < 16; i++) {
    char name[16];
    snprintf(name, sizeof name, "g%d", i);
    struct store_oid o = ts_oid(name);
    uint8_t r[6000], want[6000];
    uint64_t len = 1000 + (uint64_t)(39 * 37 + i * 101) % 5000;
    memset(want, 39 * 16 + i, sizeof want);
    assert_int_equal(store_read_sync(t.st, &o, 0, len, r), (int)len);
    assert_memory_equal(r, want, len);
  }
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void corrupt(const char *dev, uint64_t off, bool zero_header)
{
  int fd = open(dev, O_RDWR);
  assert_true(fd >= 0);
  uint8_t b[16];
  if (zero_header) {
    memset(b, 0, sizeof b);
    assert_int_equal(pwrite(fd, b, 16, (off_t)off), 16);
  } else {
    assert_int_equal(pread(fd, b, 1, (off_t)(off + 100)), 1);
    b[0] ^= 0x01;
    assert_int_equal(pwrite(fd, b, 1, (off_t)(off + 100)), 1);
  }
  fsync(fd);
  close(fd);
}

struct qwait {
  bool done;
  int r;
};

static void qcb(void *arg, int r)
{
  struct qwait *w = arg;
  w->done = true;
  w->r = r;
}

/* The kill lands after the journal write of the last transaction reached
 * the device but before it was acknowledged.  Intact, the record is
 * replayed (the transaction is wholly there); torn (bad crc) or truncated
 * (no header) it ends the replay and the transaction is wholly absent.
 * Either way the store keeps working and survives the next crash. */
static void torn_tail(int mode)
{
  struct tstore t;
  const char *opts[] = { "osd_store_ckpt_interval=100s", NULL };
  ts_init(&t, 64 << 20, 1 << 20, opts);
  ts_open(&t);
  assert_int_equal(ts_write(&t, "a", 0, 8192, 1), 0);
  store_txn *x = store_txn_new();
  struct store_oid o = ts_oid("a");
  store_txn_setattr(x, &o, "k", "v1", 2);
  assert_int_equal(store_queue_sync(t.st, x), 0);
  /* the victim: a write to a and an attr change in one transaction */
  x = store_txn_new();
  uint8_t buf[4096];
  memset(buf, 0x5A, sizeof buf);
  store_txn_write(x, &o, 4096, 4096, buf);
  store_txn_setattr(x, &o, "k", "v2", 2);
  struct qwait w = { false, 0 };
  store_queue(t.st, x, qcb, &w);
  uint64_t off;
  uint32_t len;
  assert_int_equal(store_debug_journal_last(t.st, &off, &len), 0);
  ts_crash(&t);
  assert_false(w.done);
  if (mode)
    corrupt(t.dev, off, mode == 2);
  ts_open(&t);
  void *v;
  size_t vl;
  assert_int_equal(store_getattr_sync(t.st, &o, "k", &v, &vl), 0);
  assert_int_equal(vl, 2);
  if (mode) {
    ts_check(&t, "a", 0, 8192, 1);        /* wholly absent */
    assert_memory_equal(v, "v1", 2);
  } else {
    ts_check(&t, "a", 0, 4096, 1);        /* wholly present */
    uint8_t rb[4096];
    assert_int_equal(store_read_sync(t.st, &o, 4096, 4096, rb), 4096);
    assert_memory_equal(rb, buf, 4096);
    assert_memory_equal(v, "v2", 2);
  }
  free(v);
  /* new records are written over the torn one and survive a crash */
  assert_int_equal(ts_write(&t, "b", 0, 4096, 3), 0);
  ts_crash(&t);
  ts_open(&t);
  ts_check(&t, "b", 0, 4096, 3);
  if (mode)
    ts_check(&t, "a", 0, 8192, 1);
  assert_int_equal(store_fsck(t.st, true), 0);
  ts_fini(&t);
}

static void test_unacked_tail_intact(void **state)
{
  (void)state;
  torn_tail(0);
}

static void test_torn_tail_bad_crc(void **state)
{
  (void)state;
  torn_tail(1);
}

static void test_torn_tail_truncated(void **state)
{
  (void)state;
  torn_tail(2);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_record_roundtrip),
    cmocka_unit_test(test_seal_from_block_crcs),
    cmocka_unit_test(test_record_corruption),
    cmocka_unit_test(test_batch_roundtrip),
    cmocka_unit_test(test_batch_corruption),
    cmocka_unit_test(test_wrap_around_and_replay),
    cmocka_unit_test(test_group_commit_wrap),
    cmocka_unit_test(test_unacked_tail_intact),
    cmocka_unit_test(test_torn_tail_bad_crc),
    cmocka_unit_test(test_torn_tail_truncated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
