/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: transactions, journal group commit, apply and checkpoint.
 *
 * store_queue() "prepares" a transaction at once, on the loop thread: it
 * reads the current metadata (overlay of prepared-but-unapplied changes,
 * then RocksDB), decides every block placement (in place, or newly
 * allocated for copy-on-write, holes and direct writes), and records the
 * result as a *physical* journal record: RocksDB puts/deletes plus the
 * 4 KiB blocks to write into the data area.  The changed keys go into the
 * in-memory overlay and the new block contents into the pending-block map,
 * so the next transaction and every read see them immediately.  If any op
 * fails (-ENOSPC, -ENOENT, ...) an undo log restores overlay and allocator:
 * a transaction is all or nothing.
 *
 * Writes up to osd_store_deferred_max bytes are "deferred": their blocks
 * travel in the journal record and reach the data area at the next
 * checkpoint.  Larger writes are "direct": full blocks go to newly
 * allocated blocks before the record is written, the record holds only
 * their location and crc.  If osd_store_direct_min_queue is set (off by
 * default), at queue depth the full blocks of small writes go direct too,
 * as plain writes: their batch's journal write is followed by an fdatasync
 * issued once it and they have completed, so one flush makes the whole
 * group durable (RWF_DSYNC on each would cost a flush per block).  Records
 * are written in seq order by a single writer: whatever is prepared while
 * a write+flush is in flight is grouped into the next one (group commit:
 * one batch -- the records' heads packed in one header area, then their
 * data blocks -- in one RWF_DSYNC writev, or a writev + fdatasync linked
 * in io_uring).  When it completes the group is durable: the callbacks run
 * (in submission order, while the writer still counts as busy, so that
 * what they queue forms the next group), the next write is started, and
 * later (osd_store_apply_delay / osd_store_apply_batch) the metadata of
 * several groups goes to RocksDB in one batch with "applied" = its last
 * seq (memtable; the WAL is flushed by checkpoints) and the overlay
 * entries are retired.
 *
 * A checkpoint (timer, journal 1/4 full, space shortage, close) first
 * makes RocksDB durable up to S = the last acknowledged seq (WAL flush +
 * sync: RocksDB runs with manual WAL flush, the journal being the redo
 * log), then writes the dirty pending blocks of records <= S to the data
 * area, fdatasyncs the device, then writes "ckpt" (seq, journal position,
 * chain crc) to RocksDB with sync, and only then moves the journal tail and
 * releases the blocks freed by checkpointed records.  Freed blocks are
 * never reused before that, so a replayed record never writes into a block
 * that now belongs to someone else; and no block is rewritten in place
 * before the metadata of every record up to it is durable, so replay never
 * re-verifies a direct block that a later record has overwritten.
 * Checkpoint writes skip blocks that a device read is reading.
 *
 * The synced RocksDB write of a checkpoint (a WAL fdatasync, milliseconds
 * on ext4) runs on a helper thread (st_sync_thread) that reports back
 * through an eventfd; it touches only sync_* fields, under sync_lock.  The
 * per-transaction path never blocks on the device.
 */
#include <errno.h>
#include <linux/ioprio.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "osd/store_int.h"

#define SUB "store"

/* ---- transaction builder ---- */

enum txn_op_type {
  OP_WRITE, OP_ZERO, OP_TRUNCATE, OP_TOUCH, OP_REMOVE, OP_SETATTR, OP_RMATTR,
  OP_OMAP_SET, OP_OMAP_RM, OP_CLONE
};

struct txn_op {
  enum txn_op_type type;
  uint32_t pool, pg;
  uint64_t snap;
  size_t name;          /* arena offsets */
  uint64_t off, len;
  size_t data, key;     /* data: write data / attr value; key: attr/omap key */
  size_t vlen;
  uint32_t dpool, dpg;  /* clone destination */
  uint64_t dsnap;
  size_t dname;
};

struct store_txn {
  struct txn_op *ops;
  unsigned n, cap;
  uint8_t *arena;
  size_t alen, acap;
  int error;
  uint64_t write_bytes;
};

store_txn *store_txn_new(void)
{
  store_txn *t = calloc(1, sizeof *t);
  if (!t)
    errno = ENOMEM;
  return t;
}

void store_txn_free(store_txn *txn)
{
  if (!txn)
    return;
  free(txn->ops);
  free(txn->arena);
  free(txn);
}

unsigned store_txn_ops(const store_txn *txn)
{
  return txn->n;
}

/* Reserve n bytes in the arena (aligned to 8); returns the offset or -1. */
static ssize_t arena_add(store_txn *t, const void *p, size_t n)
{
  size_t at = (t->alen + 7) & ~(size_t)7;
  if (at + n + 1 > t->acap) {
    size_t nc = t->acap ? t->acap : 256;
    while (nc < at + n + 1)
      nc *= 2;
    uint8_t *na = realloc(t->arena, nc);
    if (!na)
      return -1;
    t->arena = na;
    t->acap = nc;
  }
  if (n && p)
    memcpy(t->arena + at, p, n);
  t->arena[at + n] = 0;
  t->alen = at + n + 1;
  return (ssize_t)at;
}

int st_oid_check(const struct store_oid *oid)
{
  if (!oid || !oid->name || !oid->name[0] || strlen(oid->name) > STORE_NAME_MAX)
    return -EINVAL;
  return 0;
}

static struct txn_op *txn_add(store_txn *t, enum txn_op_type type,
                              const struct store_oid *oid)
{
  if (t->error)
    return NULL;
  if (st_oid_check(oid) < 0) {
    t->error = -EINVAL;
    return NULL;
  }
  if (t->n == t->cap) {
    unsigned nc = t->cap ? t->cap * 2 : 4;
    struct txn_op *no = realloc(t->ops, nc * sizeof *no);
    if (!no) {
      t->error = -ENOMEM;
      return NULL;
    }
    t->ops = no;
    t->cap = nc;
  }
  ssize_t nm = arena_add(t, oid->name, strlen(oid->name));
  if (nm < 0) {
    t->error = -ENOMEM;
    return NULL;
  }
  struct txn_op *op = &t->ops[t->n++];
  memset(op, 0, sizeof *op);
  op->type = type;
  op->pool = oid->pool;
  op->pg = oid->pg;
  op->snap = oid->snap;
  op->name = (size_t)nm;
  return op;
}

static int txn_fail(store_txn *t, int err)
{
  if (!t->error)
    t->error = err;
  return err;
}

#define OBJ_MAX_SIZE (1ull << 44)

int store_txn_write(store_txn *txn, const struct store_oid *oid, uint64_t off,
                    uint64_t len, const void *data)
{
  if (off + len < off || off + len > OBJ_MAX_SIZE || (len && !data) ||
      len > (1u << 30))
    return txn_fail(txn, -EINVAL);
  struct txn_op *op = txn_add(txn, OP_WRITE, oid);
  if (!op)
    return txn->error;
  ssize_t d = arena_add(txn, data, len);
  if (d < 0) {
    txn->n--;
    return txn_fail(txn, -ENOMEM);
  }
  op->off = off;
  op->len = len;
  op->data = (size_t)d;
  txn->write_bytes += len;
  return 0;
}

int store_txn_zero(store_txn *txn, const struct store_oid *oid, uint64_t off,
                   uint64_t len)
{
  if (off + len < off || off + len > OBJ_MAX_SIZE)
    return txn_fail(txn, -EINVAL);
  struct txn_op *op = txn_add(txn, OP_ZERO, oid);
  if (!op)
    return txn->error;
  op->off = off;
  op->len = len;
  return 0;
}

int store_txn_truncate(store_txn *txn, const struct store_oid *oid,
                       uint64_t size)
{
  if (size > OBJ_MAX_SIZE)
    return txn_fail(txn, -EINVAL);
  struct txn_op *op = txn_add(txn, OP_TRUNCATE, oid);
  if (!op)
    return txn->error;
  op->off = size;
  return 0;
}

int store_txn_touch(store_txn *txn, const struct store_oid *oid)
{
  return txn_add(txn, OP_TOUCH, oid) ? 0 : txn->error;
}

int store_txn_remove(store_txn *txn, const struct store_oid *oid)
{
  return txn_add(txn, OP_REMOVE, oid) ? 0 : txn->error;
}

static int txn_kv(store_txn *txn, enum txn_op_type type,
                  const struct store_oid *oid, const char *key,
                  const void *val, size_t len, bool has_val)
{
  if (!key || !key[0] || strlen(key) > STORE_NAME_MAX ||
      len > STORE_VALUE_MAX || (has_val && len && !val))
    return txn_fail(txn, -EINVAL);
  struct txn_op *op = txn_add(txn, type, oid);
  if (!op)
    return txn->error;
  ssize_t k = arena_add(txn, key, strlen(key));
  ssize_t v = has_val ? arena_add(txn, val, len) : 0;
  if (k < 0 || v < 0) {
    txn->n--;
    return txn_fail(txn, -ENOMEM);
  }
  op->key = (size_t)k;
  op->data = (size_t)v;
  op->vlen = len;
  return 0;
}

int store_txn_setattr(store_txn *txn, const struct store_oid *oid,
                      const char *name, const void *val, size_t len)
{
  return txn_kv(txn, OP_SETATTR, oid, name, val, len, true);
}

int store_txn_rmattr(store_txn *txn, const struct store_oid *oid,
                     const char *name)
{
  return txn_kv(txn, OP_RMATTR, oid, name, NULL, 0, false);
}

int store_txn_omap_set(store_txn *txn, const struct store_oid *oid,
                       const char *key, const void *val, size_t len)
{
  return txn_kv(txn, OP_OMAP_SET, oid, key, val, len, true);
}

int store_txn_omap_rm(store_txn *txn, const struct store_oid *oid,
                      const char *key)
{
  return txn_kv(txn, OP_OMAP_RM, oid, key, NULL, 0, false);
}

int store_txn_clone(store_txn *txn, const struct store_oid *src,
                    const struct store_oid *dst)
{
  if (st_oid_check(dst) < 0)
    return txn_fail(txn, -EINVAL);
  struct txn_op *op = txn_add(txn, OP_CLONE, src);
  if (!op)
    return txn->error;
  ssize_t d = arena_add(txn, dst->name, strlen(dst->name));
  if (d < 0) {
    txn->n--;
    return txn_fail(txn, -ENOMEM);
  }
  op->dname = (size_t)d;
  op->dpool = dst->pool;
  op->dpg = dst->pg;
  op->dsnap = dst->snap;
  return 0;
}

/* ---- buffers ---- */

static int rb_class(size_t size)
{
  int c = 0;
  size_t s = STORE_BLOCK;
  while (s < size && c < 15) {
    s <<= 1;
    c++;
  }
  return s >= size ? c : -1;
}

struct recbuf *rb_get(struct store *st, size_t size)
{
  int c = rb_class(size ? size : 1);
  struct recbuf *rb;
  st->rb_gets++;
  if (c >= 0 && st->pool[c]) {
    rb = st->pool[c];
    st->pool[c] = rb->next_free;
    st->pool_n[c]--;
    if (c < 6)
      st->pool_bytes -= rb->size;
    rb->refs = 1;
    return rb;
  }
  st->rb_allocs++;
  rb = calloc(1, sizeof *rb);
  if (!rb)
    return NULL;
  size_t cap = c >= 0 ? (size_t)STORE_BLOCK << c : size;
  if (posix_memalign((void **)&rb->mem, STORE_BLOCK, cap) != 0) {
    free(rb);
    return NULL;
  }
  rb->size = cap;
  rb->cls = c;
  rb->refs = 1;
  return rb;
}

/* Buffers of up to 128 KiB are kept for reuse up to half the journal size
 * in bytes (records live until their blocks are written home, and a
 * checkpoint frees thousands at once that are needed again right after
 * it; with a fixed 256 per class nearly every 8 KiB record of a 4 KiB write
 * at QD32 was a new posix_memalign of fresh pages -- page faults were 5-7%
 * of the CPU; with a quarter of the journal 14% were new, with half 4%);
 * larger ones 8 per class. */
void rb_put(struct store *st, struct recbuf *rb)
{
  if (!rb || --rb->refs > 0)
    return;
  int c = rb->cls;
  uint64_t budget = st->sb.journal_size / 2;
  if (budget < (1u << 20))
    budget = 1u << 20;
  if (c >= 0 && (c < 6 ? st->pool_bytes + rb->size <= budget
                       : st->pool_n[c] < 8u)) {
    rb->next_free = st->pool[c];
    st->pool[c] = rb;
    st->pool_n[c]++;
    if (c < 6)
      st->pool_bytes += rb->size;
    return;
  }
  free(rb->mem);
  free(rb);
}

static uint64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread (for the store's own cost counters). */
static uint64_t cpu_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- io_uring glue ---- */

struct io_uring_sqe *st_sqe(struct store *st)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
  while (!sqe) {
    io_uring_submit(&st->ring);
    sqe = io_uring_get_sqe(&st->ring);
  }
  return sqe;
}

void st_submit(struct store *st)
{
  if (st->submit_hold) {
    /* inside a completion handler: one io_uring_enter at its end */
    st->submit_pending = true;
    return;
  }
  int r = io_uring_submit(&st->ring);
  if (r < 0)
    log_err(SUB, "io_uring_submit: %s", strerror(-r));
}

static void reap(struct store *st)
{
  struct io_uring_cqe *cqe;
  while (io_uring_peek_cqe(&st->ring, &cqe) == 0) {
    struct ioreq *io = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&st->ring, cqe);
    if (io)
      io->done(st, io, res);
  }
}

void st_on_ring(int fd, short what, void *arg)
{
  struct store *st = arg;
  uint64_t v;
  if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
    log_warn(SUB, "eventfd read: %s", strerror(errno));
  st_hold_submit(st);
  reap(st);
  st_release_submit(st);
}

void st_hold_submit(struct store *st)
{
  st->submit_hold++;
}

void st_release_submit(struct store *st)
{
  if (--st->submit_hold == 0 && st->submit_pending) {
    st->submit_pending = false;
    st_submit(st);
  }
}

/* ---- overlay ---- */

/* ovl_find with the key's hash_bytes() already computed. */
static struct ovl *ovl_find_h(struct store *st, const uint8_t *key,
                              size_t klen, uint64_t h)
{
  for (struct hnode *e = hmap_first(&st->ovl, h); e; e = hmap_next_same(e)) {
    struct ovl *o = (struct ovl *)e;
    if (o->klen == klen && memcmp(o->key, key, klen) == 0)
      return o;
  }
  return NULL;
}

struct ovl *ovl_find(struct store *st, const uint8_t *key, size_t klen)
{
  return ovl_find_h(st, key, klen, hash_bytes(key, klen));
}

int meta_get(struct store *st, const uint8_t *key, size_t klen, uint8_t **val,
             size_t *vlen, bool *borrowed)
{
  struct ovl *o = ovl_find(st, key, klen);
  if (o) {
    if (o->tomb)
      return 0;
    *val = o->val;
    *vlen = o->vlen;
    *borrowed = true;
    return 1;
  }
  char *err = NULL;
  size_t l = 0;
  char *v = rocksdb_get(st->db, st->ro, (const char *)key, klen, &l, &err);
  if (err) {
    log_err(SUB, "rocksdb get: %s", err);
    free(err);
    return -EIO;
  }
  if (!v)
    return 0;
  *val = (uint8_t *)v;
  *vlen = l;
  *borrowed = false;
  return 1;
}

/* st_load_onode, or with n_attrs set st_load_onode_hdr, or with only set
 * st_load_onode_attr. */
static int load_onode(struct store *st, const struct store_oid *oid,
                      struct onode *o, uint32_t *n_attrs, const char *only)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_okey(key, KEY_ONODE, oid->pool, oid->pg, oid->name,
                        oid->snap);
  uint8_t *v;
  size_t vl;
  bool b;
  memset(o, 0, sizeof *o);
  int r = meta_get(st, key, kl, &v, &vl, &b);
  if (r <= 0)
    return r;
  r = n_attrs ? onode_decode_hdr(v, vl, o, n_attrs)
      : only  ? onode_decode_attr(v, vl, o, only)
              : onode_decode(v, vl, o);
  if (!b)
    free(v);
  if (r < 0) {
    log_err(SUB, "corrupt onode of %u.%u/%s", oid->pool, oid->pg, oid->name);
    return -EUCLEAN;
  }
  return 1;
}

int st_load_onode(struct store *st, const struct store_oid *oid,
                  struct onode *o)
{
  return load_onode(st, oid, o, NULL, NULL);
}

int st_load_onode_hdr(struct store *st, const struct store_oid *oid,
                      struct onode *o, uint32_t *n_attrs)
{
  return load_onode(st, oid, o, n_attrs, NULL);
}

int st_load_onode_attr(struct store *st, const struct store_oid *oid,
                       struct onode *o, const char *name)
{
  return load_onode(st, oid, o, NULL, name);
}

int st_load_chunk(struct store *st, const struct store_oid *oid, uint32_t ci,
                  struct chunk_map *cm)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_ckey(key, oid->pool, oid->pg, oid->name, oid->snap, ci);
  uint8_t *v;
  size_t vl;
  bool b;
  memset(cm, 0, sizeof *cm);
  int r = meta_get(st, key, kl, &v, &vl, &b);
  if (r <= 0)
    return r;
  r = chunk_decode(v, vl, cm);
  if (!b)
    free(v);
  if (r < 0) {
    log_err(SUB, "corrupt chunk map %u of %u.%u/%s", ci, oid->pool, oid->pg,
            oid->name);
    return -EUCLEAN;
  }
  for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++)
    if (cm->blk[i] > alloc_nblocks(st->alloc)) {
      log_err(SUB, "chunk map %u of %u.%u/%s points outside the data area",
              ci, oid->pool, oid->pg, oid->name);
      return -EUCLEAN;
    }
  return 1;
}

/* ---- pending blocks ---- */

struct pend *pend_find(struct store *st, uint64_t lba)
{
  uint64_t h = hash_u64(lba);
  for (struct hnode *e = hmap_first(&st->pend, h); e; e = hmap_next_same(e)) {
    struct pend *p = (struct pend *)e;
    if (p->lba == lba)
      return p;
  }
  return NULL;
}

static void pend_set(struct store *st, uint64_t lba, struct recbuf *rb,
                     uint32_t off, uint64_t seq, bool direct)
{
  struct pend *p = pend_find(st, lba);
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p)
      abort();
    p->lba = lba;
    hmap_insert(&st->pend, &p->hn, hash_u64(lba));
  } else {
    rb_put(st, p->rb);
  }
  rb->refs++;
  p->rb = rb;
  p->off = off;
  p->seq = seq;
  if (direct) {
    p->direct = true;
  } else if (!p->dirty) {
    p->dirty = true;
    p->first_dirty = seq;
  }
}

static void pend_drop(struct store *st, struct pend *p)
{
  hmap_remove(&st->pend, &p->hn);
  rb_put(st, p->rb);
  rb_put(st, p->wrb);
  free(p);
}

/* ---- per-object ordering ---- */

static struct objw *objw_find(struct store *st, uint64_t h)
{
  struct hnode *e = hmap_first(&st->objw, h);
  return e ? (struct objw *)e : NULL;
}

uint64_t st_objw_seq(struct store *st, const uint8_t *okey, size_t klen)
{
  struct objw *w = objw_find(st, hash_bytes(okey, klen));
  return w ? w->last_seq : 0;
}

/* ---- preparation ---- */

#define GROW(arr, n, cap)                                                     \
  do {                                                                        \
    if ((n) == (cap)) {                                                       \
      size_t nc_ = (cap) ? (cap) * 2 : 16;                                    \
      void *np_ = realloc((arr), nc_ * sizeof *(arr));                        \
      if (!np_)                                                               \
        abort();                                                              \
      (arr) = np_;                                                            \
      (cap) = nc_;                                                            \
    }                                                                         \
  } while (0)

struct pctx {
  struct store *st;
  struct prep *p;
  store_txn *txn;
  uint64_t seq;
  bool small_direct;  /* full blocks of small writes go direct (queue depth) */
  bool plain_used;    /* ... and some did: plain direct writes */
};

static void prep_reset(struct prep *p)
{
  p->nou = p->nru = p->npb = p->nfree = p->ndelr = p->nobj = 0;
  p->nscr = 0;
  p->ops_bytes = 0;
  p->omap_ids = 0;
}

/* An overlay entry with room for n bytes of key and value (a pooled one
 * when its class has one); aborts when out of memory.  Free with
 * st_ovl_free. */
static struct ovl *st_ovl_new(struct store *st, size_t n)
{
  size_t cls = (sizeof(struct ovl) + n + 63) / 64;
  if (cls < OVL_POOL_CLASSES && st->ovl_pool[cls]) {
    struct ovl *o = st->ovl_pool[cls];
    st->ovl_pool[cls] = (struct ovl *)o->hn.next;
    st->ovl_pool_n[cls]--;
    return o;
  }
  struct ovl *o = malloc(cls * 64);
  if (!o)
    abort();
  o->cls = (uint16_t)(cls < OVL_POOL_CLASSES ? cls : 0);
  return o;
}

/* Give back an entry of st_ovl_new (not in the overlay map any more). */
static void st_ovl_free(struct store *st, struct ovl *o)
{
  if (!o)
    return;
  unsigned cls = o->cls;
  if (cls == 0 || st->ovl_pool_n[cls] >= OVL_POOL_MAX) {
    free(o);
    return;
  }
  o->hn.next = (struct hnode *)st->ovl_pool[cls];
  st->ovl_pool[cls] = o;
  st->ovl_pool_n[cls]++;
}

/* Set (val != NULL) or delete key in the overlay, remembering the undo. */
static void px_put(struct pctx *c, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
  struct store *st = c->st;
  struct ovl *n = st_ovl_new(st, klen + vlen);
  n->seq = c->seq;
  n->tomb = val == NULL;
  n->gone = false;
  n->klen = klen;
  n->vlen = val ? vlen : 0;
  memcpy(n->key, key, klen);
  n->val = n->key + klen;
  if (val && vlen)
    memcpy(n->val, val, vlen);
  uint64_t h = hash_bytes(key, klen);
  struct ovl *old = ovl_find_h(st, key, klen, h);
  if (old) {
    hmap_remove(&st->ovl, &old->hn);
    old->gone = true;
    if (old->seq == 0)
      st->ovl_clean--;
  }
  hmap_insert(&st->ovl, &n->hn, h);
  GROW(c->p->ou, c->p->nou, c->p->cou);
  c->p->ou[c->p->nou++] = (struct ovl_undo){ n, old };
}

static void px_ref(struct pctx *c, uint64_t blk, enum ref_undo_type t)
{
  GROW(c->p->ru, c->p->nru, c->p->cru);
  c->p->ru[c->p->nru++] = (struct ref_undo){ blk, t };
}

/* Drop one reference to blk; if it was the last, it will be released once
 * this transaction is checkpointed. */
static void px_unref(struct pctx *c, uint64_t blk)
{
  if (alloc_decref(c->st->alloc, blk)) {
    px_ref(c, blk, RU_DEC);
    return;
  }
  /* last reference: the block stays marked used until released */
  GROW(c->p->frees, c->p->nfree, c->p->cfree);
  c->p->frees[c->p->nfree++] = blk;
}

static bool px_freed_here(struct pctx *c, uint64_t blk)
{
  for (size_t i = 0; i < c->p->nfree; i++)
    if (c->p->frees[i] == blk)
      return true;
  return false;
}

static struct prep_block *px_block(struct pctx *c, uint64_t lba)
{
  for (size_t i = c->p->npb; i-- > 0;)
    if (c->p->pb[i].lba == lba)
      return &c->p->pb[i];
  return NULL;
}

/* A 4 KiB scratch block valid until the next prep_reset (areas of 64
 * blocks that never move). */
static uint8_t *px_scratch(struct pctx *c)
{
  struct prep *p = c->p;
  size_t area = p->nscr / 64;
  if (area == p->nareas) {
    GROW(p->areas, p->nareas, p->careas);
    if (posix_memalign((void **)&p->areas[p->nareas], STORE_BLOCK,
                       64 * STORE_BLOCK) != 0)
      abort();
    p->nareas++;
  }
  return p->areas[area] + (p->nscr++ % 64) * STORE_BLOCK;
}

static void log_nospc(struct store *st)
{
  log_err(SUB, "data area full: %llu of %llu blocks used; write refused "
          "(ENOSPC)", (unsigned long long)alloc_used(st->alloc),
          (unsigned long long)alloc_nblocks(st->alloc));
}

/* Read the current content of data-area block lba (as of every prepared
 * transaction) into out; verify it against crc. */
static int px_read_block(struct pctx *c, const struct store_oid *oid,
                         uint64_t obj_off, uint64_t lba, uint32_t crc,
                         uint8_t *out)
{
  struct prep_block *b = px_block(c, lba);
  if (b) {
    memcpy(out, b->data, STORE_BLOCK);
    return 0;
  }
  struct pend *p = pend_find(c->st, lba);
  if (p) {
    memcpy(out, p->rb->mem + p->off, STORE_BLOCK);
    return 0;
  }
  static __thread uint8_t *bounce;
  if (!bounce && posix_memalign((void **)&bounce, STORE_BLOCK, STORE_BLOCK))
    return -ENOMEM;
  ssize_t r = pread(c->st->fd, bounce, STORE_BLOCK,
                    (off_t)(c->st->sb.data_offset + lba * STORE_BLOCK));
  if (r != STORE_BLOCK) {
    log_err(SUB, "read of block %llu failed: %s", (unsigned long long)lba,
            r < 0 ? strerror(errno) : "short read");
    return -EIO;
  }
  if (crc32c(0, bounce, STORE_BLOCK) != crc) {
    log_err(SUB, "checksum mismatch: object %u.%u/%s snap %llx offset %llu "
            "(block %llu)", oid->pool, oid->pg, oid->name,
            (unsigned long long)oid->snap, (unsigned long long)obj_off,
            (unsigned long long)lba);
    return -EBADMSG;
  }
  memcpy(out, bounce, STORE_BLOCK);
  return 0;
}

struct run {
  uint64_t start, left;
};

/* Place new content for object block `bi` (index within chunk cm). */
static int px_place(struct pctx *c, const struct store_oid *oid,
                    struct chunk_map *cm, unsigned bi, uint64_t obj_off,
                    const uint8_t *data, bool direct, bool small,
                    struct run *run, uint64_t run_want)
{
  struct store *st = c->st;
  uint32_t crc = crc32c(0, data, STORE_BLOCK);
  uint64_t old = cm->blk[bi];
  uint64_t lba;
  /* In place only when nobody shares the block and no unwritten journaled
   * version of it is pending: stacking a second version on an unwritten
   * one would hold the journal tail behind a transaction that may itself
   * be waiting for journal space.  Otherwise copy on write. */
  struct pend *pe = old ? pend_find(st, old - 1) : NULL;
  bool inplace_ok = old && alloc_refs(st->alloc, old - 1) == 1 &&
                    !px_freed_here(c, old - 1) && !(pe && pe->dirty);
  if (inplace_ok && !direct) {
    lba = old - 1;                      /* overwrite in place (journaled) */
  } else {
    if (run->left == 0) {
      uint64_t s;
      uint64_t n = alloc_get(st->alloc, direct ? run_want : 1, &s);
      if (n == 0 && small && inplace_ok) {
        /* a small write sent direct at depth must not fail where the
         * deferred in-place overwrite would not: full device */
        direct = false;
        lba = old - 1;
        goto placed;
      }
      if (n == 0)
        return -ENOSPC;
      for (uint64_t i = 0; i < n; i++)
        px_ref(c, s + i, RU_ALLOC);
      run->start = s;
      run->left = n;
    }
    lba = run->start++;
    run->left--;
    if (old)
      px_unref(c, old - 1);
  }
placed:
  if (direct && small)
    c->plain_used = true;
  struct prep_block *b = px_block(c, lba);
  if (!b) {
    GROW(c->p->pb, c->p->npb, c->p->cpb);
    b = &c->p->pb[c->p->npb++];
    b->lba = lba;
  }
  b->data = data;
  b->crc = crc;
  b->direct = direct;
  cm->blk[bi] = lba + 1;
  cm->crc[bi] = crc;
  (void)obj_off;
  return 0;
}

static void px_put_chunk(struct pctx *c, const struct store_oid *oid,
                         uint32_t ci, const struct chunk_map *cm)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_ckey(key, oid->pool, oid->pg, oid->name, oid->snap, ci);
  if (chunk_empty(cm)) {
    px_put(c, key, kl, NULL, 0);
  } else {
    uint8_t v[CHUNK_VAL_LEN];
    chunk_encode(cm, v);
    px_put(c, key, kl, v, sizeof v);
  }
}

static void px_put_onode(struct pctx *c, const struct store_oid *oid,
                         const struct onode *o)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_okey(key, KEY_ONODE, oid->pool, oid->pg, oid->name,
                        oid->snap);
  GROW(c->p->objs, c->p->nobj, c->p->cobj);
  c->p->objs[c->p->nobj++] = hash_bytes(key, kl);
  if (!o) {
    px_put(c, key, kl, NULL, 0);
    return;
  }
  size_t vl;
  uint8_t *v = onode_encode(o, &vl);
  if (!v)
    abort();
  px_put(c, key, kl, v, vl);
  free(v);
}

static void px_touch_obj(struct pctx *c, const struct store_oid *oid)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_okey(key, KEY_ONODE, oid->pool, oid->pg, oid->name,
                        oid->snap);
  GROW(c->p->objs, c->p->nobj, c->p->cobj);
  c->p->objs[c->p->nobj++] = hash_bytes(key, kl);
}

/* Write [off, off+len) of the object from data (NULL = zeros). */
static int px_write_range(struct pctx *c, const struct store_oid *oid,
                          uint64_t off, uint64_t len, const uint8_t *data,
                          bool direct_ok)
{
  struct store *st = c->st;
  if (len == 0)
    return 0;
  uint64_t end = off + len;
  bool small = len <= st->deferred_max;
  bool direct = direct_ok && (!small || c->small_direct);
  struct run run = { 0, 0 };
  uint64_t first_full = (off + STORE_BLOCK - 1) / STORE_BLOCK;
  uint64_t last_full = end / STORE_BLOCK;   /* exclusive */
  for (uint64_t ci = off / STORE_CHUNK_SIZE; ci <= (end - 1) / STORE_CHUNK_SIZE;
       ci++) {
    struct chunk_map cm;
    int r = st_load_chunk(st, oid, (uint32_t)ci, &cm);
    if (r < 0)
      return r;
    bool changed = false;
    for (unsigned bi = 0; bi < STORE_CHUNK_BLOCKS; bi++) {
      uint64_t bo = ci * STORE_CHUNK_SIZE + (uint64_t)bi * STORE_BLOCK;
      if (bo + STORE_BLOCK <= off || bo >= end)
        continue;
      uint64_t s = off > bo ? off - bo : 0;
      uint64_t e = end < bo + STORE_BLOCK ? end - bo : STORE_BLOCK;
      const uint8_t *content;
      bool full = s == 0 && e == STORE_BLOCK;
      if (!data && full) {
        /* zeroing a whole block: make it a hole */
        if (cm.blk[bi]) {
          px_unref(c, cm.blk[bi] - 1);
          cm.blk[bi] = 0;
          cm.crc[bi] = 0;
          changed = true;
        }
        continue;
      }
      if (full) {
        content = data + (bo - off);
      } else {
        if (!data && !cm.blk[bi])
          continue;     /* zeroing part of a hole */
        uint8_t *buf = px_scratch(c);
        if (cm.blk[bi]) {
          r = px_read_block(c, oid, bo, cm.blk[bi] - 1, cm.crc[bi], buf);
          if (r < 0)
            return r;
        } else {
          memset(buf, 0, STORE_BLOCK);
        }
        if (data)
          memcpy(buf + s, data + (bo + s - off), e - s);
        else
          memset(buf + s, 0, e - s);
        content = buf;
      }
      uint64_t bidx = bo / STORE_BLOCK;
      uint64_t want = bidx < last_full ? last_full - bidx : 1;
      r = px_place(c, oid, &cm, bi, bo, content, direct && full,
                   direct && full && small, &run, want);
      if (r < 0)
        return r;
      changed = true;
      (void)first_full;
    }
    if (changed)
      px_put_chunk(c, oid, (uint32_t)ci, &cm);
  }
  /* blocks of an unused run go back at once: nothing refers to them */
  if (run.left) {
    for (uint64_t i = 0; i < run.left; i++)
      alloc_release(st->alloc, run.start + i, 1);
    /* their RU_ALLOC undo entries now refer to free blocks: drop them */
    size_t w = 0;
    for (size_t i = 0; i < c->p->nru; i++) {
      struct ref_undo *u = &c->p->ru[i];
      if (u->t == RU_ALLOC && u->blk >= run.start &&
          u->blk < run.start + run.left)
        continue;
      c->p->ru[w++] = *u;
    }
    c->p->nru = w;
  }
  return 0;
}

/* Drop every block at or beyond byte `from` (block aligned) up to size. */
static int px_drop_from(struct pctx *c, const struct store_oid *oid,
                        uint64_t from, uint64_t size)
{
  if (size <= from)
    return 0;
  for (uint64_t ci = from / STORE_CHUNK_SIZE;
       ci <= (size - 1) / STORE_CHUNK_SIZE; ci++) {
    struct chunk_map cm;
    int r = st_load_chunk(c->st, oid, (uint32_t)ci, &cm);
    if (r < 0)
      return r;
    if (r == 0)
      continue;
    bool changed = false;
    for (unsigned bi = 0; bi < STORE_CHUNK_BLOCKS; bi++) {
      uint64_t bo = ci * STORE_CHUNK_SIZE + (uint64_t)bi * STORE_BLOCK;
      if (bo < from || !cm.blk[bi])
        continue;
      px_unref(c, cm.blk[bi] - 1);
      cm.blk[bi] = 0;
      cm.crc[bi] = 0;
      changed = true;
    }
    if (changed)
      px_put_chunk(c, oid, (uint32_t)ci, &cm);
  }
  return 0;
}

static uint64_t px_new_omap_id(struct pctx *c)
{
  return (c->seq << 16) | (++c->p->omap_ids & 0xffff);
}

static void px_drop_omap(struct pctx *c, uint64_t omap_id)
{
  GROW(c->p->delr, c->p->ndelr, c->p->cdelr);
  c->p->delr[c->p->ndelr++] = omap_id;
  c->p->ops_bytes += jop_size(JOP_DELRANGE, 9, 9);
}

static int px_remove(struct pctx *c, const struct store_oid *oid,
                     bool must_exist)
{
  struct onode o;
  int r = st_load_onode(c->st, oid, &o);
  if (r < 0)
    return r;
  if (r == 0)
    return must_exist ? -ENOENT : 0;
  r = px_drop_from(c, oid, 0, o.size);
  if (r == 0) {
    if (o.omap_id)
      px_drop_omap(c, o.omap_id);
    px_put_onode(c, oid, NULL);
  }
  onode_clear(&o);
  return r;
}

/* Collect the omap of omap_id (overlay + RocksDB) and copy it under new_id. */
static int px_copy_omap(struct pctx *c, uint64_t omap_id, uint64_t new_id)
{
  struct store *st = c->st;
  uint8_t pfx[9], lim[9];
  pfx[0] = KEY_OMAP;
  put_be64(pfx + 1, omap_id);
  lim[0] = KEY_OMAP;
  put_be64(lim + 1, omap_id + 1);
  uint8_t nk[9 + STORE_NAME_MAX + 1];
  nk[0] = KEY_OMAP;
  put_be64(nk + 1, new_id);
  /* RocksDB entries not shadowed by the overlay */
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ro);
  for (rocksdb_iter_seek(it, (const char *)pfx, 9); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (kl < 9 || memcmp(k, lim, 9) >= 0)
      break;
    if (ovl_find(st, k, kl) || kl - 9 > STORE_NAME_MAX)
      continue;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    memcpy(nk + 9, k + 9, kl - 9);
    px_put(c, nk, kl, v, vl);
  }
  rocksdb_iter_destroy(it);
  /* overlay entries of omap_id (collect first: px_put modifies the map) */
  size_t n0 = 0;
  struct ovl **list = NULL;
  size_t cap = 0;
  hmap_foreach(&st->ovl, i, e) {
    struct ovl *o = (struct ovl *)e;
    if (!o->tomb && o->klen >= 9 && memcmp(o->key, pfx, 9) == 0) {
      GROW(list, n0, cap);
      list[n0++] = o;
    }
  }
  for (size_t i = 0; i < n0; i++) {
    memcpy(nk + 9, list[i]->key + 9, list[i]->klen - 9);
    px_put(c, nk, list[i]->klen, list[i]->val, list[i]->vlen);
  }
  free(list);
  return 0;
}

static int px_clone(struct pctx *c, const struct store_oid *src,
                    const struct store_oid *dst)
{
  struct store *st = c->st;
  if (src->pool == dst->pool && src->pg == dst->pg && src->snap == dst->snap &&
      strcmp(src->name, dst->name) == 0)
    return -EINVAL;
  struct onode o, d;
  int r = st_load_onode(st, src, &o);
  if (r <= 0)
    return r == 0 ? -ENOENT : r;
  r = px_remove(c, dst, false);
  if (r < 0)
    goto out_onode;
  r = onode_copy(&d, &o);
  if (r < 0)
    goto out_onode;
  if (o.omap_id) {
    d.omap_id = px_new_omap_id(c);
    px_copy_omap(c, o.omap_id, d.omap_id);
  }
  if (o.size) {
    for (uint64_t ci = 0; ci <= (o.size - 1) / STORE_CHUNK_SIZE; ci++) {
      struct chunk_map cm;
      r = st_load_chunk(st, src, (uint32_t)ci, &cm);
      if (r < 0)
        goto out_d;
      if (r == 0)
        continue;
      for (unsigned bi = 0; bi < STORE_CHUNK_BLOCKS; bi++)
        if (cm.blk[bi]) {
          alloc_incref(st->alloc, cm.blk[bi] - 1);
          px_ref(c, cm.blk[bi] - 1, RU_INC);
        }
      px_put_chunk(c, dst, (uint32_t)ci, &cm);
    }
  }
  px_put_onode(c, dst, &d);
  px_touch_obj(c, src);
  r = 0;
out_d:
  onode_clear(&d);
out_onode:
  onode_clear(&o);
  return r;
}

static int px_op(struct pctx *c, const struct txn_op *op)
{
  struct store *st = c->st;
  const store_txn *t = c->txn;
  struct store_oid oid = { op->pool, op->pg, (const char *)t->arena + op->name,
                           op->snap };
  const char *key = (const char *)t->arena + op->key;
  struct onode o;
  int r;

  if (op->type == OP_REMOVE)
    return px_remove(c, &oid, true);
  if (op->type == OP_CLONE) {
    struct store_oid dst = { op->dpool, op->dpg,
                             (const char *)t->arena + op->dname, op->dsnap };
    return px_clone(c, &oid, &dst);
  }
  /* ops that change at most the size or omap id decode only the header
   * (no attribute copies); the attributes are loaded if it must be
   * rewritten */
  bool hdr_only = op->type == OP_WRITE || op->type == OP_ZERO ||
                  op->type == OP_TOUCH || op->type == OP_OMAP_SET ||
                  op->type == OP_OMAP_RM;
  uint32_t n_attrs = 0;
  r = hdr_only ? st_load_onode_hdr(st, &oid, &o, &n_attrs)
               : st_load_onode(st, &oid, &o);
  if (r < 0)
    return r;
  bool exists = r == 1;
  bool dirty = !exists;
  switch (op->type) {
  case OP_WRITE:
  case OP_ZERO: {
    uint64_t end = op->off + op->len;
    const uint8_t *data = op->type == OP_WRITE ? t->arena + op->data : NULL;
    uint64_t wlen = op->len;
    if (!data && op->off < o.size && end > o.size)
      wlen = o.size - op->off;   /* zeros past the end are implicit */
    else if (!data && op->off >= o.size)
      wlen = 0;
    r = px_write_range(c, &oid, op->off, wlen, data, true);
    if (r < 0)
      break;
    if (end > o.size) {
      o.size = end;
      dirty = true;
    }
    break;
  }
  case OP_TRUNCATE: {
    uint64_t ns = op->off;
    if (ns < o.size) {
      uint64_t from = (ns + STORE_BLOCK - 1) & ~(uint64_t)(STORE_BLOCK - 1);
      r = px_drop_from(c, &oid, from, o.size);
      if (r == 0 && (ns & (STORE_BLOCK - 1)))
        r = px_write_range(c, &oid, ns, from - ns, NULL, false);
      if (r < 0)
        break;
    }
    if (ns != o.size) {
      o.size = ns;
      dirty = true;
    }
    break;
  }
  case OP_TOUCH:
    break;
  case OP_SETATTR:
    r = onode_set_attr(&o, key, t->arena + op->data, op->vlen);
    dirty = true;
    break;
  case OP_RMATTR:
    if (!exists)
      r = -ENOENT;
    else
      dirty = onode_rm_attr(&o, key);
    break;
  case OP_OMAP_SET:
  case OP_OMAP_RM: {
    if (op->type == OP_OMAP_RM && !exists) {
      r = -ENOENT;
      break;
    }
    if (!o.omap_id) {
      if (op->type == OP_OMAP_RM)
        break;
      o.omap_id = px_new_omap_id(c);
      dirty = true;
    }
    uint8_t k[9 + STORE_NAME_MAX + 1];
    size_t kl = strlen(key);
    k[0] = KEY_OMAP;
    put_be64(k + 1, o.omap_id);
    memcpy(k + 9, key, kl);
    if (op->type == OP_OMAP_SET)
      px_put(c, k, 9 + kl, t->arena + op->data, op->vlen);
    else
      px_put(c, k, 9 + kl, NULL, 0);
    break;
  }
  default:
    r = -EINVAL;
  }
  if (r >= 0 && dirty && hdr_only && n_attrs) {
    struct onode full;
    r = st_load_onode(st, &oid, &full);
    if (r == 1) {
      full.size = o.size;
      full.omap_id = o.omap_id;
      onode_clear(&o);
      o = full;
    } else if (r == 0) {
      r = -EUCLEAN;   /* it was there a moment ago */
    }
  }
  if (r >= 0 && dirty)
    px_put_onode(c, &oid, &o);
  else if (r >= 0)
    px_touch_obj(c, &oid);
  onode_clear(&o);
  return r < 0 ? r : 0;
}

static void px_rollback(struct pctx *c)
{
  struct store *st = c->st;
  struct prep *p = c->p;
  for (size_t i = p->nou; i-- > 0;) {
    hmap_remove(&st->ovl, &p->ou[i].newe->hn);
    st_ovl_free(st, p->ou[i].newe);
    if (p->ou[i].olde) {
      hmap_insert(&st->ovl, &p->ou[i].olde->hn, p->ou[i].olde->hn.hash);
      p->ou[i].olde->gone = false;
      if (p->ou[i].olde->seq == 0)
        st->ovl_clean++;
    }
  }
  /* blocks in p->frees had their last reference dropped: they are still
   * marked used and have no share entry, so there is nothing to undo */
  for (size_t i = p->nru; i-- > 0;) {
    struct ref_undo *u = &p->ru[i];
    switch (u->t) {
    case RU_ALLOC: alloc_release(st->alloc, u->blk, 1); break;
    case RU_INC: alloc_decref(st->alloc, u->blk); break;
    case RU_DEC: alloc_incref(st->alloc, u->blk); break;
    }
  }
}

static int cmp_pb_lba(const void *a, const void *b)
{
  const struct prep_block *x = a, *y = b;
  if (x->direct != y->direct)
    return x->direct ? 1 : -1;
  return x->lba < y->lba ? -1 : x->lba > y->lba;
}

/* Build the record of a successfully prepared transaction and publish its
 * blocks and frees.  Returns the jtx (owned by the queue) or NULL. */
static int px_commit(struct pctx *c, struct jtx *j)
{
  struct store *st = c->st;
  struct prep *p = c->p;
  size_t ops_bytes = 0;
  uint32_t n_ops = 0, n_data = 0, n_direct = 0;

  /* the overlay entries this transaction left in place */
  for (size_t i = 0; i < p->nou; i++) {
    struct ovl *n = p->ou[i].newe;
    if (n->gone)
      continue;
    ops_bytes += n->tomb ? jop_size(JOP_DEL, n->klen, 0)
                         : jop_size(JOP_PUT, n->klen, n->vlen);
    n_ops++;
  }
  ops_bytes += p->ndelr * jop_size(JOP_DELRANGE, 9, 9);
  n_ops += (uint32_t)p->ndelr;
  if (p->npb)
    qsort(p->pb, p->npb, sizeof *p->pb, cmp_pb_lba);
  for (size_t i = 0; i < p->npb; i++) {
    if (p->pb[i].direct)
      n_direct++;
    else
      n_data++;
  }
  uint64_t rlen = jrec_size(ops_bytes, n_data, n_direct);
  if (rlen > st->sb.journal_size / 4) {
    log_err(SUB, "transaction too large for the journal (%llu bytes)",
            (unsigned long long)rlen);
    return -E2BIG;
  }
  if (n_data > p->cdcrc) {
    uint32_t *d = realloc(p->dcrc, n_data * sizeof *d);
    if (!d)
      return -ENOMEM;
    p->dcrc = d;
    p->cdcrc = n_data;
  }
  struct recbuf *rb = rb_get(st, rlen + (uint64_t)n_direct * STORE_BLOCK);
  if (!rb)
    return -ENOMEM;
  uint8_t *rec = rb->mem;
  memset(rec, 0, JREC_HDR);
  uint8_t *q = rec + JREC_HDR;
  for (size_t i = 0; i < p->nou; i++) {
    struct ovl *n = p->ou[i].newe;
    if (n->gone)
      continue;
    q = jop_encode(q, n->tomb ? JOP_DEL : JOP_PUT, n->key, n->klen, n->val,
                   n->vlen);
  }
  /* range deletes last: a dropped omap id may have been written earlier in
   * this same transaction */
  for (size_t i = 0; i < p->ndelr; i++) {
    uint8_t a[9], b[9];
    a[0] = b[0] = KEY_OMAP;
    put_be64(a + 1, p->delr[i]);
    put_be64(b + 1, p->delr[i] + 1);
    q = jop_encode(q, JOP_DELRANGE, a, 9, b, 9);
  }
  for (size_t i = 0; i < n_data; i++) {
    put_le64(q, p->pb[i].lba);
    q += 8;
  }
  for (size_t i = n_data; i < p->npb; i++) {
    put_le64(q, p->pb[i].lba);
    put_le32(q + 8, p->pb[i].crc);
    q += 12;
  }
  struct jrec_hdr h = { 0 };
  h.seq = c->seq;
  h.len = (uint32_t)rlen;
  h.meta_len = (uint32_t)(q - (rec + JREC_HDR));
  h.prev_crc = st->last_crc;
  h.n_ops = n_ops;
  h.n_data = n_data;
  h.n_direct = n_direct;
  h.nonce = st->nonce;
  size_t head = (size_t)(rlen - (uint64_t)n_data * STORE_BLOCK);
  memset(q, 0, head - (size_t)(q - rec));
  for (uint32_t i = 0; i < n_data; i++)
    memcpy(rec + head + (size_t)i * STORE_BLOCK, p->pb[i].data, STORE_BLOCK);
  for (uint32_t i = 0; i < n_direct; i++)
    memcpy(rec + rlen + (size_t)i * STORE_BLOCK, p->pb[n_data + i].data,
           STORE_BLOCK);
  /* the record crc from the block crcs computed by px_place: the journaled
   * blocks are not read a second time */
  for (uint32_t i = 0; i < n_data; i++)
    p->dcrc[i] = p->pb[i].crc;
  jrec_seal_crcs(rec, &h, p->dcrc);

  /* publish */
  for (uint32_t i = 0; i < n_data; i++)
    pend_set(st, p->pb[i].lba, rb, (uint32_t)(head + (size_t)i * STORE_BLOCK),
             c->seq, false);
  for (uint32_t i = 0; i < n_direct; i++)
    pend_set(st, p->pb[n_data + i].lba, rb,
             (uint32_t)(rlen + (size_t)i * STORE_BLOCK), c->seq, true);
  for (size_t i = 0; i < p->nou; i++)
    st_ovl_free(st, p->ou[i].olde);
  for (size_t i = 0; i < p->nfree; i++) {
    GROW(st->rel, st->nrel, st->crel);
    st->rel[st->nrel++] = (struct release){ p->frees[i], c->seq };
  }
  for (size_t i = 0; i < p->nobj; i++) {
    struct objw *w = objw_find(st, p->objs[i]);
    if (!w) {
      w = calloc(1, sizeof *w);
      if (!w)
        abort();
      hmap_insert(&st->objw, &w->hn, p->objs[i]);
    }
    w->last_seq = c->seq;
  }
  st->last_crc = h.crc;
  j->seq = c->seq;
  j->len = (uint32_t)rlen;
  j->crc = h.crc;
  j->rb = rb;
  j->plain = c->plain_used && n_direct;
  if (j->plain)
    st->small_direct++;

  /* direct runs */
  if (n_direct) {
    uint32_t runs = 0;
    for (uint32_t i = 0; i < n_direct; i++)
      if (i == 0 || p->pb[n_data + i].lba != p->pb[n_data + i - 1].lba + 1)
        runs++;
    j->dw = calloc(runs, sizeof *j->dw);
    if (!j->dw)
      abort();
    uint32_t k = 0;
    for (uint32_t i = 0; i < n_direct; i++) {
      if (i == 0 || p->pb[n_data + i].lba != p->pb[n_data + i - 1].lba + 1) {
        j->dw[k].lba = p->pb[n_data + i].lba;
        j->dw[k].boff = (uint32_t)(rlen + (size_t)i * STORE_BLOCK);
        j->dw[k].j = j;
        k++;
      }
      j->dw[k - 1].n++;
    }
    j->n_dw = runs;
  }
  return 0;
}

/* ---- queueing ---- */

static void journal_kick(struct store *st);
static void store_fail(struct store *st, const char *why);

static void jw_maybe_fsync(struct store *st);
static void ovl_trim(struct store *st);

static void direct_done(struct store *st, struct ioreq *io, int res)
{
  struct dwrite *d = (struct dwrite *)io;
  struct jtx *j = d->j;
  if (res != (int)(d->n * STORE_BLOCK)) {
    log_err(SUB, "direct write of %u blocks at %llu failed: %s", d->n,
            (unsigned long long)d->lba, res < 0 ? strerror(-res) : "short");
    store_fail(st, "data area I/O error");
  }
  for (uint32_t i = 0; i < d->n; i++) {
    struct pend *p = pend_find(st, d->lba + i);
    if (p && p->direct && p->rb == j->rb && !p->dirty)
      pend_drop(st, p);
    else if (p)
      p->direct = false;
  }
  j->direct_left--;
  if (j->state == JTX_WRITING) {
    st->jw.dpend--;
    jw_maybe_fsync(st);
  }
}

static void queue_append(struct store *st, struct jtx *j)
{
  j->next = NULL;
  st->q_len++;
  if (st->q_tail)
    st->q_tail->next = j;
  else
    st->q_head = j;
  st->q_tail = j;
}

static bool pending_release_possible(struct store *st)
{
  return st->nrel > 0 || st->ck_busy;
}

/* Prepare txn into j.  Returns 0, or -errno with nothing changed. */
static int prepare(struct store *st, store_txn *txn, struct jtx *j)
{
  /* At queue depth (>= osd_store_direct_min_queue transactions waiting
   * or in the last journal write), small writes go direct too, as plain
   * writes that the batch's fdatasync makes durable: one flush per batch,
   * half the device bytes and no write-back later; at low depth they stay
   * deferred (one device round trip).  Off by default (0): through the
   * whole cluster, CPU-bound, deferred was faster (docs/store.md "Session
   * 2026-11-29 (2)"). */
  uint32_t depth = st->q_len > st->jw_last_count ? st->q_len
                                                  : st->jw_last_count;
  struct pctx c = { st, &st->prep, txn, st->next_seq,
                    st->direct_min_queue && depth >= st->direct_min_queue,
                    false };
  int r = 0;
  uint64_t t0 = mono_ns();
  if (txn->error)
    return txn->error;
  if (st->failed)
    return -EIO;
  if (txn->n == 0)
    return -EINVAL;
  prep_reset(c.p);
  for (unsigned i = 0; i < txn->n && r == 0; i++)
    r = px_op(&c, &txn->ops[i]);
  if (r == 0)
    r = px_commit(&c, j);
  if (r < 0) {
    px_rollback(&c);
    return r;
  }
  st->next_seq++;
  st->prep_ns += mono_ns() - t0;
  st->prep_count++;
  return 0;
}

static void issue_direct(struct store *st, struct jtx *j)
{
  j->direct_left = j->n_dw;
  for (uint32_t i = 0; i < j->n_dw; i++) {
    struct dwrite *d = &j->dw[i];
    d->io.done = direct_done;
    struct io_uring_sqe *sqe = st_sqe(st);
    io_uring_prep_write(sqe, st->fd, j->rb->mem + d->boff,
                        d->n * STORE_BLOCK,
                        st->sb.data_offset + d->lba * STORE_BLOCK);
    if (st->jdsync && !j->plain)
      sqe->rw_flags = RWF_DSYNC;   /* durable on completion: no flush */
    io_uring_sqe_set_data(sqe, &d->io);
  }
  if (j->n_dw)
    st_submit(st);
}

/* Try to prepare j's transaction; on -ENOSPC with space still to come back,
 * leave it blocked.  Returns true if j left the blocked state. */
static bool try_prepare(struct store *st, struct jtx *j, bool may_block)
{
  int r = prepare(st, j->txn, j);
  if (r == -ENOSPC && may_block && pending_release_possible(st)) {
    st_ckpt_start(st);
    return false;
  }
  store_txn_free(j->txn);
  j->txn = NULL;
  if (r < 0) {
    if (r == -ENOSPC)
      log_nospc(st);
    j->state = JTX_FAILED;
    j->result = r;
  } else {
    j->state = JTX_PREPARED;
    issue_direct(st, j);
  }
  queue_append(st, j);
  return true;
}

void store_queue(store *st, store_txn *txn, store_cb cb, void *arg)
{
  struct jtx *j = calloc(1, sizeof *j);
  if (!j)
    abort();
  j->cb = cb;
  j->arg = arg;
  j->txn = txn;
  if (st->blocked_head || !try_prepare(st, j, true)) {
    j->next = NULL;
    if (st->blocked_tail)
      st->blocked_tail->next = j;
    else
      st->blocked_head = j;
    st->blocked_tail = j;
    return;
  }
  if (j->state == JTX_FAILED)
    event_active(st->ev_defer, EV_READ, 0);  /* callback from the loop */
  journal_kick(st);
}

#define STORE_BLOCKED_DRY_MAX 3

/* After a checkpoint: retry blocked transactions in order.  released: the
 * checkpoint gave blocks back (else a second -ENOSPC is final). */
static void retry_blocked(struct store *st, bool released)
{
  while (st->blocked_head) {
    struct jtx *j = st->blocked_head;
    if (!try_prepare(st, j, released))
      return;
    st->blocked_head = j->next;
    if (!st->blocked_head)
      st->blocked_tail = NULL;
  }
  st->blocked_dry = 0;
  st_complete_head(st);
  journal_kick(st);
}

/* ---- journal writer ---- */

static void jw_done(struct store *st);

static void jw_hang(struct store *st, struct ioreq *io, int res)
{
  (void)st; (void)io; (void)res;
}

void store_debug_tear_next_write(store *st)
{
  st->debug_tear = true;
}

static void jw_write_done(struct store *st, struct ioreq *io, int res)
{
  struct jwrite *w = (struct jwrite *)((char *)io - offsetof(struct jwrite, wio));
  w->wres = res;
  w->wdone = true;
  if (!w->flush) {
    /* RWF_DSYNC: the group is durable once its journal write and the
     * (also RWF_DSYNC) direct writes of its transactions have completed */
    if (w->dpend == 0)
      jw_done(st);
    return;
  }
  if (--w->left == 0)
    jw_done(st);
  else
    jw_maybe_fsync(st);
}

/* Unlinked batches (some direct writes were in flight when the journal
 * write went out): flush once the journal write and every direct write of
 * the batch have completed, so the flush covers them all. */
static void jw_maybe_fsync(struct store *st)
{
  struct jwrite *w = &st->jw;
  if (!w->flush) {
    if (st->jw_busy && w->wdone && !w->dpend)
      jw_done(st);
    return;
  }
  if (!st->jw_busy || w->linked || !w->wdone || w->dpend || w->fsync_sent)
    return;
  w->fsync_sent = true;
  struct io_uring_sqe *sqe = st_sqe(st);
  io_uring_prep_fsync(sqe, st->fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(sqe, &w->fio);
  st_submit(st);
}

static void jw_fsync_done(struct store *st, struct ioreq *io, int res)
{
  struct jwrite *w = (struct jwrite *)((char *)io - offsetof(struct jwrite, fio));
  w->fres = res;
  if (--w->left == 0)
    jw_done(st);
}

static uint64_t jphys(struct store *st, uint64_t pos)
{
  return pos % st->sb.journal_size;
}

static void journal_kick(struct store *st)
{
  if (st->jw_busy || st->failed)
    return;
  struct jwrite *w = &st->jw;
  uint64_t J = st->sb.journal_size;
  uint64_t start = st->jhead, heads = 0, data = 0, blen = 0;
  uint32_t count = 0, dpend = 0, n_iov = 0;
  struct jtx *first = NULL, *last = NULL;
  bool need_space = false, plain = false;
  /* pick the batch: one writev, contiguous on the device (a batch that
   * would cross the end of the journal starts at 0), at most 4 MiB */
  for (struct jtx *j = st->q_head; j; j = j->next) {
    if (j->state == JTX_FAILED || j->state == JTX_DURABLE ||
        j->state == JTX_WRITING)
      continue;
    uint64_t nh = heads + jbat_head_bytes(j->rb->mem);
    uint64_t nd = data + (uint64_t)get_le32(j->rb->mem + 32) * STORE_BLOCK;
    uint64_t nlen = jbat_hlen(nh) + nd;
    uint64_t s0 = start;
    if (jphys(st, s0) + nlen > J) {
      if (count)
        break;
      s0 += J - jphys(st, s0);
    }
    if (s0 + nlen - st->jtail > J) {
      need_space = true;
      break;
    }
    if (count && nlen > (4u << 20))
      break;
    if (!count)
      first = j;
    start = s0;
    heads = nh;
    data = nd;
    blen = nlen;
    j->state = JTX_WRITING;
    dpend += j->direct_left;
    plain |= j->plain;
    last = j;
    count++;
  }
  if (need_space)
    st_ckpt_start(st);
  if (!count)
    return;
  uint64_t hlen = jbat_hlen(heads);
  struct recbuf *hrb = rb_get(st, hlen);
  if (!hrb)
    abort();
  if (count + 1 > w->iov_cap) {
    uint32_t nc = w->iov_cap ? w->iov_cap : 16;
    while (nc < count + 1)
      nc *= 2;
    struct iovec *v = realloc(w->iov, nc * sizeof *v);
    if (!v)
      abort();
    w->iov = v;
    w->iov_cap = nc;
  }
  uint8_t *q = hrb->mem + JBAT_HDR;
  w->iov[n_iov++] = (struct iovec){ hrb->mem, hlen };
  uint32_t n = 0;
  for (struct jtx *j = first; n < count; j = j->next) {
    if (j->state != JTX_WRITING)
      continue;
    q = jbat_add(q, j->rb->mem);
    uint32_t nd = get_le32(j->rb->mem + 32);
    if (nd)
      w->iov[n_iov++] = (struct iovec){
        j->rb->mem + (j->len - (size_t)nd * STORE_BLOCK),
        (size_t)nd * STORE_BLOCK };
    j->jpos = start;
    j->jend = j == last ? start + blen : start;
    n++;
  }
  memset(q, 0, (size_t)(hrb->mem + hlen - q));
  struct jbat_hdr bh = { 0 };
  bh.first_seq = first->seq;
  bh.n_rec = count;
  bh.hlen = (uint32_t)hlen;
  bh.len = (uint32_t)blen;
  bh.nonce = st->nonce;
  jbat_seal(hrb->mem, &bh);
  st->last_rec_pos = start;
  st->last_rec_len = (uint32_t)blen;
  uint64_t pos = start + blen, bytes = blen;
  w->hrb = hrb;

  st->jw_busy = true;
  st->jw_start_ns = mono_ns();
  w->first = first;
  w->count = count;
  st->jw_last_count = count;
  w->bytes = bytes;
  w->left = 2;
  w->wres = w->fres = 0;
  w->wio.done = jw_write_done;
  w->fio.done = jw_fsync_done;
  st->jhead = pos;
  if (st->debug_tear) {
    /* test hook: a torn write that never completes */
    static struct ioreq hang = { NULL };
    hang.done = jw_hang;
    struct io_uring_sqe *sqe = st_sqe(st);
    io_uring_prep_write(sqe, st->fd, w->iov[0].iov_base, STORE_BLOCK,
                        st->sb.journal_offset + jphys(st, start));
    io_uring_sqe_set_data(sqe, &hang);
    st_submit(st);
    return;
  }
  log_trace(SUB, "journal write: seq %llu..%llu (%u) at %llu (logical %llu), "
            "tail %llu", (unsigned long long)first->seq,
            (unsigned long long)first->seq + count - 1, count,
            (unsigned long long)jphys(st, start), (unsigned long long)start,
            (unsigned long long)st->jtail);
  w->dpend = dpend;
  /* A batch with plain direct writes (small writes sent direct at depth)
   * ends with an fdatasync issued once the journal write and all of its
   * direct writes have completed: a flush covers completed writes only.
   * An RWF_DSYNC write would not do: on a device with FUA it makes only
   * itself durable.  Until the flush, a crash may keep the record without
   * its data; replay then finds the direct block's crc wrong and ends the
   * journal there -- the record was never acknowledged. */
  w->flush = !st->jdsync || plain;
  w->linked = dpend == 0 && w->flush;
  w->wdone = w->fsync_sent = false;
  struct io_uring_sqe *sqe = st_sqe(st);
  io_uring_prep_writev(sqe, st->fd, w->iov, n_iov,
                       st->sb.journal_offset + jphys(st, start));
  if (!w->flush) {
    /* one I/O: the write is durable when it completes (FUA or a flush
     * done by the kernel), measured faster than write + linked fdatasync
     * (docs/store.md) */
    sqe->rw_flags = RWF_DSYNC;
    w->left = 1;
    io_uring_sqe_set_data(sqe, &w->wio);
    st_submit(st);
    return;
  }
  if (w->linked)
    sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data(sqe, &w->wio);
  if (w->linked) {
    sqe = st_sqe(st);
    io_uring_prep_fsync(sqe, st->fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, &w->fio);
    w->fsync_sent = true;
  }
  st_submit(st);
}

static void store_fail(struct store *st, const char *why)
{
  if (!st->failed)
    log_err(SUB, "store failed (%s): refusing further writes", why);
  st->failed = true;
}

/* Apply the metadata ops of a record to a RocksDB batch. */
void st_batch_record(rocksdb_writebatch_t *b, const uint8_t *rec,
                         const struct jrec_hdr *h)
{
  struct jrec_iter it;
  struct jop op;
  jrec_iter_init(&it, rec, h);
  while (jrec_iter_next(&it, &op) > 0) {
    switch (op.type) {
    case JOP_PUT:
      rocksdb_writebatch_put(b, (const char *)op.key, op.klen,
                             (const char *)op.val, op.vlen);
      break;
    case JOP_DEL:
      rocksdb_writebatch_delete(b, (const char *)op.key, op.klen);
      break;
    case JOP_DELRANGE:
      rocksdb_writebatch_delete_range(b, (const char *)op.key, op.klen,
                                      (const char *)op.val, op.vlen);
      break;
    }
  }
}

/* Deferred metadata apply: a durable group's RocksDB changes are not
 * written when its journal write completes but gathered over several
 * groups (up to osd_store_apply_batch records, or osd_store_apply_delay
 * after the first, or before a checkpoint) and written in one batch.  Larger batches find
 * more repeated keys (image objects: 64/5 ms coalesced 9% of the key
 * writes, 256/25 ms 24%) at the price of a longer stall of the loop per
 * batch (about 1.3 ms of CPU for 120 records).  Until then the
 * overlay holds them (reads and later transactions see them there) and the
 * journal is their redo log ("Sapplied" lags; replay re-applies).  A key
 * that a later record of the same batch writes again is written only once
 * (the overlay entry's seq names its newest writer): one RocksDB write and
 * one memtable search per key instead of one per record, which is most of
 * the metadata cost of a 4 KiB write (docs/performance.md). */

static void jw_done(struct store *st)
{
  struct jwrite *w = &st->jw;
  st->jw_count++;
  st->jw_records += w->count;
  st->jw_bytes += w->bytes;
  st->jw_done_ns = mono_ns();
  st->jw_ns += st->jw_done_ns - st->jw_start_ns;
  rb_put(st, w->hrb);
  w->hrb = NULL;
  if (w->wres != (int)w->bytes || w->fres < 0) {
    log_err(SUB, "journal write of %llu bytes failed: %s",
            (unsigned long long)w->bytes,
            w->wres < 0 ? strerror(-w->wres)
                        : w->fres < 0 ? strerror(-w->fres) : "short write");
    store_fail(st, "journal I/O error");
  }
  uint32_t n = 0;
  for (struct jtx *j = w->first; j && n < w->count; j = j->next) {
    if (j->state != JTX_WRITING)
      continue;
    n++;
    if (st->failed) {
      j->state = JTX_FAILED;
      j->result = -EIO;
      continue;
    }
    size_t slot = st->jd_head + st->jd_n;
    GROW(st->jd, slot, st->jd_cap);
    st->jd[slot] = (struct jdesc){ j->seq, j->jend, j->crc };
    st->jd_n++;
    j->state = JTX_DURABLE;
  }
  /* callbacks first (the journal flush made the group durable; replay
   * re-applies it if RocksDB never gets it), while the writer still looks
   * busy so that the transactions they queue are grouped into the next
   * write; start that write; the metadata goes to RocksDB later (st_apply),
   * off the acknowledgement's critical path */
  st_complete_head(st);
  st->jw_busy = false;
  journal_kick(st);
  if (st->apply_n >= st->apply_max) {
    st_apply(st);
  } else if (st->apply_n && !st->apply_armed) {
    struct timeval tv = { (time_t)(st->apply_delay_us / 1000000),
                          (suseconds_t)(st->apply_delay_us % 1000000) };
    event_add(st->ev_apply, &tv);
    st->apply_armed = true;
  }
  uint64_t used = st->jhead - st->jtail;
  if (used * 100 >= st->sb.journal_size * st->ckpt_pct)
    st_ckpt_start(st);
  else if (!st->ck_busy && st->nrel * 100 >= alloc_nblocks(st->alloc))
    /* blocks freed by overwrites (direct small writes free one per
     * write) count as used until a checkpoint releases them: at 1% of
     * the data area, checkpoint (store_statfs, and the OSD's full ratio,
     * would otherwise see up to osd_store_ckpt_interval worth of writes:
     * ~100 MiB at 50k IOPS) */
    st_ckpt_start(st);
}

void st_on_apply(int fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct store *st = arg;
  st->apply_armed = false;
  st_apply(st);
}

/* key order, then batch order (so that the newest of equal keys is last) */
static int cmp_apply_kv(const void *a, const void *b)
{
  const struct apply_kv *x = a, *y = b;
  size_t n = x->op.klen < y->op.klen ? x->op.klen : y->op.klen;
  int c = memcmp(x->op.key, y->op.key, n);
  if (c)
    return c;
  if (x->op.klen != y->op.klen)
    return x->op.klen < y->op.klen ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void st_retire_free(struct store *st)
{
  while (st->retire_head) {
    struct jtx *j = st->retire_head;
    st->retire_head = j->next;
    rb_put(st, j->rb);
    free(j->dw);
    free(j);
  }
  st->retire_tail = NULL;
}

void st_apply(struct store *st)
{
  if (st->apply_armed) {
    event_del(st->ev_apply);
    st->apply_armed = false;
  }
  if (!st->retire_head)
    return;
  uint64_t t1 = cpu_ns();
  uint64_t last = st->retire_tail->seq;
  rocksdb_writebatch_t *b = st->apply_b;
  st->apply_nclean = 0;
  st->apply_nkv = 0;
  /* point writes: the newest of each key only, in key order (neighbouring
   * memtable searches then share most of their path in the cache) */
  for (struct jtx *j = st->retire_head; j; j = j->next) {
    struct jrec_hdr h;
    jrec_parse_hdr(j->rb->mem, j->len, &h);
    struct jrec_iter it;
    struct jop op;
    jrec_iter_init(&it, j->rb->mem, &h);
    while (jrec_iter_next(&it, &op) > 0) {
      st->apply_ops++;
      if (op.type == JOP_DELRANGE)
        continue;
      struct ovl *o = ovl_find(st, op.key, op.klen);
      if (o && o->seq > j->seq && o->seq <= last) {
        st->apply_skipped++;
        continue;   /* a later record of this batch writes the key */
      }
      GROW(st->apply_kv, st->apply_nkv, st->apply_ckv);
      st->apply_kv[st->apply_nkv] = (struct apply_kv){ op, st->apply_nkv };
      st->apply_nkv++;
      if (o && o->seq == j->seq) {
        GROW(st->apply_clean, st->apply_nclean, st->apply_cclean);
        st->apply_clean[st->apply_nclean++] = o;
      }
    }
  }
  if (st->apply_nkv > 1)
    qsort(st->apply_kv, st->apply_nkv, sizeof *st->apply_kv, cmp_apply_kv);
  for (size_t i = 0; i < st->apply_nkv; i++) {
    const struct jop *op = &st->apply_kv[i].op;
    if (i + 1 < st->apply_nkv && op->klen == st->apply_kv[i + 1].op.klen &&
        memcmp(op->key, st->apply_kv[i + 1].op.key, op->klen) == 0) {
      st->apply_skipped++;
      continue;   /* a newer write of the key follows (its newest writer
                   * is a prepared record not in this batch) */
    }
    if (op->type == JOP_PUT)
      rocksdb_writebatch_put(b, (const char *)op->key, op->klen,
                             (const char *)op->val, op->vlen);
    else
      rocksdb_writebatch_delete(b, (const char *)op->key, op->klen);
  }
  /* range deletes (the omap of a removed object) last, in record order:
   * a point write inside one can only precede it (omap ids are never
   * reused); keys under it may stay cached with their old value */
  for (struct jtx *j = st->retire_head; j; j = j->next) {
    struct jrec_hdr h;
    jrec_parse_hdr(j->rb->mem, j->len, &h);
    struct jrec_iter it;
    struct jop op;
    jrec_iter_init(&it, j->rb->mem, &h);
    while (jrec_iter_next(&it, &op) > 0)
      if (op.type == JOP_DELRANGE)
        rocksdb_writebatch_delete_range(b, (const char *)op.key, op.klen,
                                        (const char *)op.val, op.vlen);
  }
  uint8_t v[8];
  put_le64(v, last);
  rocksdb_writebatch_put(b, SYS_APPLIED, sizeof SYS_APPLIED - 1,
                         (const char *)v, 8);
  char *err = NULL;
  rocksdb_write(st->db, st->wo, b, &err);
  rocksdb_writebatch_clear(b);
  if (err) {
    log_err(SUB, "rocksdb write: %s", err);
    free(err);
    store_fail(st, "metadata write error");
  } else {
    st->meta_seq = last;
    /* the entries whose newest writer was applied become clean cached
     * copies of what RocksDB now holds (omap entries are dropped) */
    for (size_t i = 0; i < st->apply_nclean; i++) {
      struct ovl *o = st->apply_clean[i];
      if (o->key[0] == KEY_OMAP) {
        /* omap entries are not kept as cached copies: most are PG log
         * entries (one new key per write, never read again), which
         * would fill the cache and flush the onodes and chunk maps out
         * of it at every trim */
        hmap_remove(&st->ovl, &o->hn);
        st_ovl_free(st, o);
        continue;
      }
      o->seq = 0;
      st->ovl_clean++;
    }
  }
  st->apply_nclean = 0;
  st->apply_nkv = 0;
  st->apply_count++;
  st->apply_recs += st->apply_n;
  st_retire_free(st);
  st->apply_n = 0;
  if (st->ovl_clean > OVL_CLEAN_MAX)
    ovl_trim(st);
  st->apply_ns += cpu_ns() - t1;
}

/* jd is a linear array [jd_head, jd_head + jd_n), compacted as it drains. */
static void jd_pop(struct store *st)
{
  st->jd_head++;
  st->jd_n--;
  if (st->jd_n == 0)
    st->jd_head = 0;
  else if (st->jd_head > 1024 && st->jd_head > st->jd_n) {
    memmove(st->jd, st->jd + st->jd_head, st->jd_n * sizeof *st->jd);
    st->jd_head = 0;
  }
}

/* Forget every clean overlay entry (the cache is full). */
static void ovl_trim(struct store *st)
{
  hmap_foreach(&st->ovl, i, e) {
    struct ovl *o = (struct ovl *)e;
    if (o->seq == 0) {
      hmap_remove(&st->ovl, e);
      st_ovl_free(st, o);
    }
  }
  st->ovl_clean = 0;
}

/* Run callbacks of the transactions at the head of the queue that are done. */
void st_complete_head(struct store *st)
{
  bool acked = false;
  while (st->q_head && (st->q_head->state == JTX_DURABLE ||
                        st->q_head->state == JTX_FAILED)) {
    struct jtx *j = st->q_head;
    st->q_head = j->next;
    st->q_len--;
    if (!st->q_head)
      st->q_tail = NULL;
    if (j->state == JTX_DURABLE) {
      st->acked_seq = j->seq;
      acked = true;
    }
    if (j->cb)
      j->cb(j->arg, j->state == JTX_DURABLE ? 0 : j->result);
    if (j->state == JTX_DURABLE) {
      /* its metadata goes to RocksDB later (st_apply): the overlay keeps
       * it until then */
      j->next = NULL;
      if (st->retire_tail)
        st->retire_tail->next = j;
      else
        st->retire_head = j;
      st->retire_tail = j;
      st->apply_n++;
      continue;
    }
    rb_put(st, j->rb);
    free(j->dw);
    free(j);
  }
  if (acked) {
    /* forget per-object ordering entries that are now satisfied */
    if (st->objw.n > 4096) {   /* stale entries are harmless */
      hmap_foreach(&st->objw, i, e) {
        struct objw *w = (struct objw *)e;
        if (w->last_seq <= st->acked_seq) {
          hmap_remove(&st->objw, e);
          free(w);
        }
      }
    }
    st_wake_waiters(st);
  }
}

/* ---- checkpoint ---- */

static void ck_finish(struct store *st);
static void ck_issue(struct store *st);
static void sync_job(struct store *st, int kind);

static int cmp_pend(const void *a, const void *b)
{
  const struct pend *x = *(struct pend *const *)a, *y = *(struct pend *const *)b;
  return x->lba < y->lba ? -1 : x->lba > y->lba;
}

static void ck_write_done(struct store *st, struct ioreq *io, int res)
{
  struct ckwrite *w = (struct ckwrite *)io;
  if (res != (int)(w->n * STORE_BLOCK)) {
    log_err(SUB, "data area write of %u blocks at %llu failed: %s", w->n,
            (unsigned long long)w->lba, res < 0 ? strerror(-res) : "short");
    st->ck_err = -EIO;
  }
  st->ckw_left--;
  ck_issue(st);
}

static void ck_fsync_done(struct store *st, struct ioreq *io, int res)
{
  if (res < 0) {
    log_err(SUB, "data area flush failed: %s", strerror(-res));
    st->ck_err = -EIO;
  }
  ck_finish(st);
}

/* Issue queued checkpoint writes (up to 32 in flight, idle I/O priority),
 * then the flush. */
static void ck_issue(struct store *st)
{
  bool sub = false;
  while (st->ckw_next < st->ckw_n && st->ckw_left < 32) {
    struct ckwrite *w = &st->ckw[st->ckw_next];
    struct iovec *v = w->iov;
    for (uint32_t i = 0; i < w->n; i++) {
      struct pend *p = st->ck_ents[w->first + i];
      v[i].iov_base = p->wrb->mem + p->woff;
      v[i].iov_len = STORE_BLOCK;
    }
    w->io.done = ck_write_done;
    struct io_uring_sqe *sqe = st_sqe(st);
    io_uring_prep_writev(sqe, st->fd, v, w->n,
                         st->sb.data_offset + w->lba * STORE_BLOCK);
    /* idle I/O class: the device queue serves the journal write (what
     * every acknowledgement waits for) ahead of the write-back; with the
     * same class a QD32 run's journal write queued behind up to 32 of
     * these (docs/store.md, session 2026-11-29).  Durability is unchanged:
     * the checkpoint still flushes before it moves the journal tail, and
     * mq-deadline ages idle requests, so they are not starved. */
    sqe->ioprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0);
    io_uring_sqe_set_data(sqe, &w->io);
    st->ckw_next++;
    st->ckw_left++;
    sub = true;
  }
  if (st->ckw_next == st->ckw_n && st->ckw_left == 0) {
    st->ckw_next++;     /* flush issued once */
    st->ck_fsync.done = ck_fsync_done;
    struct io_uring_sqe *sqe = st_sqe(st);
    io_uring_prep_fsync(sqe, st->fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, &st->ck_fsync);
    sub = true;
  }
  if (sub)
    st_submit(st);
}

void st_ckpt_start(struct store *st)
{
  if (st->ck_busy) {
    st->ck_again = true;
    return;
  }
  if (st->failed)
    return;
  st_apply(st);                  /* the deferred metadata first */
  uint64_t S = st->meta_seq;     /* acknowledged and in RocksDB */
  if (S == st->ckpt_seq && st->nrel == 0)
    return;
  st->ck_busy = true;
  st->ck_last = (struct jdesc){ 0, 0, 0 };
  st->ck_start_ns = mono_ns();
  st->ck_again = false;
  st->ck_err = 0;
  st->ck_S = S;
  /* step 0: make the metadata of records <= S durable before any of their
   * blocks is rewritten in place, so that replay never needs (and never
   * re-verifies) a record whose blocks the data area has moved past */
  sync_job(st, SYNC_FLUSH_WAL);
}

/* Step 1, once RocksDB holds every record <= ck_S durably: write back. */
static void ck_writeback(struct store *st)
{
  uint64_t S = st->ck_S;
  uint64_t bound = S;
  st->ck_n = 0;
  hmap_foreach(&st->pend, i, e) {
    struct pend *p = (struct pend *)e;
    if (!p->dirty)
      continue;
    if (p->seq > S || p->direct || p->writing || st_read_overlaps(st, p->lba)) {
      if (p->first_dirty <= bound)
        bound = p->first_dirty - 1;
      continue;
    }
    GROW(st->ck_ents, st->ck_n, st->ck_cap);
    st->ck_ents[st->ck_n++] = p;
  }
  if (st->ck_n)
    qsort(st->ck_ents, st->ck_n, sizeof *st->ck_ents, cmp_pend);
  st->ckw_n = st->ckw_next = st->ckw_left = 0;
  for (size_t i = 0; i < st->ck_n; i++) {
    struct pend *p = st->ck_ents[i];
    p->dirty = false;
    p->writing = true;
    p->wrb = p->rb;
    p->woff = p->off;
    p->rb->refs++;
    struct ckwrite *w = st->ckw_n ? &st->ckw[st->ckw_n - 1] : NULL;
    if (!w || w->lba + w->n != p->lba || w->n == 64) {
      GROW(st->ckw, st->ckw_n, st->ckw_cap);
      w = &st->ckw[st->ckw_n++];
      w->lba = p->lba;
      w->n = 0;
      w->first = (uint32_t)i;
    }
    w->n++;
  }
  st->ck_bound = bound;
  st->ck_blocks += st->ck_n;
  ck_issue(st);
}

static int cmp_rel(const void *a, const void *b)
{
  const struct release *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void ck_done(struct store *st, int sync_err);

static void ck_finish(struct store *st)
{
  for (size_t i = 0; i < st->ck_n; i++) {
    struct pend *p = st->ck_ents[i];
    p->writing = false;
    rb_put(st, p->wrb);
    p->wrb = NULL;
    if (!p->dirty && !p->direct)
      pend_drop(st, p);
  }
  st->ck_n = 0;
  if (st->ck_err) {
    store_fail(st, "data area I/O error");
    ck_done(st, 0);
    return;
  }
  uint64_t bound = st->ck_bound;
  if (bound <= st->ckpt_seq) {
    ck_done(st, 0);
    return;
  }
  /* the journal can be trimmed up to record `bound` once "ckpt" is synced
   * in RocksDB: hand that write to the sync thread */
  struct jdesc last = { 0, 0, 0 };
  while (st->jd_n && st->jd[st->jd_head].seq <= bound) {
    last = st->jd[st->jd_head];
    jd_pop(st);
  }
  st->ck_last = last;
  st_ckpt_encode(st->sync_val, last.seq, last.end, (uint32_t)last.crc);
  sync_job(st, SYNC_PUT_CKPT);
}

static void sync_job(struct store *st, int kind)
{
  pthread_mutex_lock(&st->sync_lock);
  st->sync_kind = kind;
  st->sync_job = true;
  pthread_cond_signal(&st->sync_cond);
  pthread_mutex_unlock(&st->sync_lock);
}

/* The sync thread: performs the synced RocksDB write of a checkpoint so the
 * loop thread never waits for the WAL fdatasync. */
void *st_sync_thread(void *arg)
{
  struct store *st = arg;
  pthread_mutex_lock(&st->sync_lock);
  for (;;) {
    while (!st->sync_job && !st->sync_stop)
      pthread_cond_wait(&st->sync_cond, &st->sync_lock);
    if (st->sync_job) {
      pthread_mutex_unlock(&st->sync_lock);
      char *err = NULL;
      rocksdb_flush_wal(st->db, 1, &err);
      int r = 0;
      if (err) {
        log_err(SUB, "rocksdb WAL flush: %s", err);
        free(err);
        r = -EIO;
      }
      if (r == 0 && st->sync_kind == SYNC_PUT_CKPT)
        r = st_db_put_sync(st, SYS_CKPT, sizeof SYS_CKPT - 1, st->sync_val,
                           CKPT_LEN);
      pthread_mutex_lock(&st->sync_lock);
      st->sync_job = false;
      st->sync_result = r;
      uint64_t one = 1;
      if (write(st->sync_efd, &one, sizeof one) < 0)
        abort();
      continue;
    }
    break;      /* stop, no job */
  }
  pthread_mutex_unlock(&st->sync_lock);
  return NULL;
}

void st_on_sync(int fd, short what, void *arg)
{
  struct store *st = arg;
  uint64_t v;
  if (read(fd, &v, sizeof v) < 0)
    return;
  pthread_mutex_lock(&st->sync_lock);
  int r = st->sync_result, kind = st->sync_kind;
  pthread_mutex_unlock(&st->sync_lock);
  if (kind == SYNC_FLUSH_WAL && r == 0) {
    ck_writeback(st);
    return;
  }
  ck_done(st, r);
}

static void ck_done(struct store *st, int sync_err)
{
  bool released = false;
  if (sync_err < 0) {
    store_fail(st, "checkpoint write error");
  } else if (st->ck_last.seq > st->ckpt_seq) {
    st->ckpt_seq = st->ck_last.seq;
    st->jtail = st->ck_last.end;
    log_trace(SUB, "checkpoint: trimmed to seq %llu, tail %llu",
              (unsigned long long)st->ckpt_seq, (unsigned long long)st->jtail);
  }
  if (!st->failed) {
    /* release blocks freed by checkpointed records */
    if (st->nrel)
      qsort(st->rel, st->nrel, sizeof *st->rel, cmp_rel);
    size_t w = 0;
    for (size_t i = 0; i < st->nrel; i++) {
      struct release *r = &st->rel[i];
      if (r->seq <= st->ckpt_seq && !pend_find(st, r->blk) &&
          !st_read_overlaps(st, r->blk)) {
        alloc_release(st->alloc, r->blk, 1);
        released = true;
      } else {
        st->rel[w++] = *r;
      }
    }
    st->nrel = w;
  }
  st->ck_count++;
  st->ck_ns += mono_ns() - st->ck_start_ns;
  st->ck_busy = false;
  if (st->ck_again)
    st_ckpt_start(st);
  if (!st->ck_busy && st->blocked_head) {
    /* blocks still awaiting release may come back with a later
     * checkpoint, but not forever: releases that no checkpoint can free
     * (their blocks still pending or read) kept a transaction blocked
     * and the checkpoints running for good (test-osd-full with
     * osd_full_ratio = 100: a write never answered).  After
     * STORE_BLOCKED_DRY_MAX fruitless checkpoints the write fails. */
    st->blocked_dry = released ? 0 : st->blocked_dry + 1;
    retry_blocked(st, released || (st->nrel > 0 && st->blocked_dry < STORE_BLOCKED_DRY_MAX));
  }
  journal_kick(st);
  st_wake_waiters(st);
}

void st_on_timer(int fd, short what, void *arg)
{
  struct store *st = arg;
  if (st->retire_head || st->meta_seq > st->ckpt_seq || st->nrel)
    st_ckpt_start(st);
}

void st_ckpt_encode(uint8_t *buf, uint64_t seq, uint64_t pos, uint32_t crc)
{
  put_le64(buf, seq);
  put_le64(buf + 8, pos);
  put_le32(buf + 16, crc);
}

int st_db_put_sync(struct store *st, const char *key, size_t klen,
                   const void *val, size_t vlen)
{
  char *err = NULL;
  rocksdb_put(st->db, st->wo_sync, key, klen, (const char *)val, vlen, &err);
  if (err) {
    log_err(SUB, "rocksdb sync write: %s", err);
    free(err);
    return -EIO;
  }
  return 0;
}

/* ---- synchronous helpers ---- */

struct sync_wait {
  bool done;
  int result;
};

static void sync_cb(void *arg, int result)
{
  struct sync_wait *w = arg;
  w->done = true;
  w->result = result;
}

int store_queue_sync(store *st, store_txn *txn)
{
  struct sync_wait w = { false, 0 };
  store_queue(st, txn, sync_cb, &w);
  while (!w.done)
    event_base_loop(st->base, EVLOOP_ONCE);
  return w.result;
}

int store_checkpoint_sync(store *st)
{
  while (st->q_head || st->blocked_head)
    event_base_loop(st->base, EVLOOP_ONCE);
  while (st->ck_busy)
    event_base_loop(st->base, EVLOOP_ONCE);
  st_ckpt_start(st);
  while (st->ck_busy)
    event_base_loop(st->base, EVLOOP_ONCE);
  return st->failed ? -EIO : 0;
}

int st_drain(struct store *st)
{
  while (st->q_head || st->blocked_head || st->waiting || st->ready_head ||
         st->jw_busy)
    event_base_loop(st->base, EVLOOP_ONCE);
  return 0;
}

void store_statfs(store *st, struct store_statfs *out)
{
  uint64_t nb = alloc_nblocks(st->alloc);
  uint64_t used = alloc_used(st->alloc);
  out->total = nb * STORE_BLOCK;
  out->used = used * STORE_BLOCK;
  out->free = out->total - out->used;
  out->nearfull = used * 100 >= nb * st->nearfull_pct;
  out->journal_size = st->sb.journal_size;
  out->journal_used = st->jhead - st->jtail;
  out->small_direct = st->small_direct;
}
