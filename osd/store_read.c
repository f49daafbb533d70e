/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: reads and lookups.  A read is resolved when it is
 * submitted, against the newest prepared state (overlay, then RocksDB, for
 * metadata; pending blocks in memory, then the device, for data), so it
 * sees every transaction queued before it and none queued after.  Blocks
 * not in memory are read with io_uring into a bounce buffer, in runs of
 * consecutive blocks, and each 4 KiB block is checked against its crc32c;
 * a mismatch fails the read with -EBADMSG and logs object and offset.  The
 * callback is held until every transaction queued before the read on the
 * same object is durable (per-object last seq, see store.c), and always
 * runs from the loop (a ready list drained by a libevent event).
 * While a device read is in flight its blocks are not rewritten: the
 * checkpoint skips them and freed blocks are not released (st_read_overlaps).
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "osd/store_int.h"

#define SUB "store"

char *st_oid_str(const struct store_oid *oid)
{
  char *s = NULL;
  if (asprintf(&s, "%u.%x/%s@%llx", oid->pool, oid->pg, oid->name,
               (unsigned long long)oid->snap) < 0)
    return NULL;
  return s;
}

static void rreq_free(struct store *st, struct rreq *r)
{
  rb_put(st, r->bounce);
  free(r->runs);
  free(r->blocks);
  free(r->what);
  free(r);
}

/* r is complete when its I/O is done and the transactions it follows are
 * acknowledged; move it to the ready list. */
void st_rreq_ready(struct store *st, struct rreq *r)
{
  r->next = NULL;
  if (st->ready_tail)
    st->ready_tail->next = r;
  else
    st->ready_head = r;
  st->ready_tail = r;
  event_active(st->ev_defer, EV_READ, 0);
}

void st_wake_waiters(struct store *st)
{
  struct rreq **pp = &st->waiting;
  while (*pp) {
    struct rreq *r = *pp;
    if (r->io_left == 0 && r->wait_seq <= st->acked_seq) {
      *pp = r->next;
      st_rreq_ready(st, r);
    } else {
      pp = &r->next;
    }
  }
}

static void rreq_park(struct store *st, struct rreq *r)
{
  if (r->io_left == 0 && r->wait_seq <= st->acked_seq) {
    st_rreq_ready(st, r);
    return;
  }
  r->next = st->waiting;
  st->waiting = r;
}

void st_on_defer(int fd, short what, void *arg)
{
  struct store *st = arg;
  st_hold_submit(st);
  /* failed transactions waiting at the head of the queue */
  st_complete_head(st);
  struct rreq *r = st->ready_head;
  st->ready_head = st->ready_tail = NULL;
  while (r) {
    struct rreq *nx = r->next;
    if (r->cb)
      r->cb(r->arg, r->result);
    rreq_free(st, r);
    r = nx;
  }
  st_release_submit(st);
}

bool st_read_overlaps(struct store *st, uint64_t lba)
{
  for (struct rreq *r = st->reading; r; r = r->fl_next)
    for (uint32_t i = 0; i < r->nruns; i++)
      if (r->runs[i].n && lba >= r->runs[i].lba &&
          lba < r->runs[i].lba + r->runs[i].n)
        return true;
  return false;
}

static void reading_remove(struct store *st, struct rreq *r)
{
  struct rreq **pp = &st->reading;
  while (*pp && *pp != r)
    pp = &(*pp)->fl_next;
  if (*pp)
    *pp = r->fl_next;
}

static void run_done(struct store *st, struct ioreq *io, int res)
{
  struct rrun *u = (struct rrun *)io;
  struct rreq *r = u->r;
  if (res != (int)(u->n * STORE_BLOCK)) {
    log_err(SUB, "read of %u blocks at %llu failed: %s", u->n,
            (unsigned long long)u->lba, res < 0 ? strerror(-res) : "short");
    if (r->result >= 0)
      r->result = -EIO;
  } else {
    for (uint32_t i = 0; i < u->n; i++) {
      struct rblock *b = &r->blocks[u->bidx + i];
      const uint8_t *src = r->bounce->mem + u->boff + (size_t)i * STORE_BLOCK;
      if (crc32c(0, src, STORE_BLOCK) != b->crc) {
        log_err(SUB, "checksum mismatch: object %u.%x/%s@%llx offset %llu "
                "(block %llu)", r->pool, r->pg, r->what ? r->what : "?",
                (unsigned long long)r->snap, (unsigned long long)b->obj_off,
                (unsigned long long)(u->lba + i));
        if (r->result >= 0)
          r->result = -EBADMSG;
        continue;
      }
      memcpy(r->dst + (b->obj_off + b->from - r->off), src + b->from,
             b->to - b->from);
    }
  }
  u->n = 0;       /* no longer protects its blocks */
  if (--r->io_left == 0) {
    reading_remove(st, r);
    /* checkpoint work skipped because of this read: the timer retries */
    struct rreq **pp = &st->waiting;
    while (*pp && *pp != r)
      pp = &(*pp)->next;
    if (*pp) {
      *pp = r->next;
      rreq_park(st, r);
    }
  }
}

static struct rreq *rreq_new(store_cb cb, void *arg)
{
  struct rreq *r = calloc(1, sizeof *r);
  if (!r)
    abort();
  r->cb = cb;
  r->arg = arg;
  return r;
}

static uint64_t obj_wait_seq(struct store *st, const struct store_oid *oid)
{
  uint8_t key[STORE_NAME_MAX + 32];
  size_t kl = meta_okey(key, KEY_ONODE, oid->pool, oid->pg, oid->name,
                        oid->snap);
  return st_objw_seq(st, key, kl);
}

/* The common start of an object lookup: a request for (cb, arg), checked
 * arguments (args_ok and the oid), ordered after writes in flight on the
 * object, and the object's onode loaded into *o (without its attributes,
 * counted in *hdr_attrs, when hdr_attrs is set; with only the attribute
 * only_attr when that is set).  Returns the request, or
 * NULL when it already failed (-EINVAL, -ENOENT, or a load error) and was
 * parked to call back from the loop. */
static struct rreq *rreq_start_hdr(store *st, const struct store_oid *oid, bool args_ok,
                                   store_cb cb, void *arg, struct onode *o,
                                   uint32_t *hdr_attrs, const char *only_attr)
{
  struct rreq *r = rreq_new(cb, arg);
  if (!args_ok || st_oid_check(oid) < 0) {
    r->result = -EINVAL;
    rreq_park(st, r);
    return NULL;
  }
  r->wait_seq = obj_wait_seq(st, oid);
  int rc = hdr_attrs   ? st_load_onode_hdr(st, oid, o, hdr_attrs)
           : only_attr ? st_load_onode_attr(st, oid, o, only_attr)
                       : st_load_onode(st, oid, o);
  if (rc <= 0) {
    r->result = rc == 0 ? -ENOENT : rc;
    rreq_park(st, r);
    return NULL;
  }
  return r;
}

static struct rreq *rreq_start(store *st, const struct store_oid *oid, bool args_ok,
                               store_cb cb, void *arg, struct onode *o)
{
  return rreq_start_hdr(st, oid, args_ok, cb, arg, o, NULL, NULL);
}

void store_read(store *st, const struct store_oid *oid, uint64_t off,
                uint64_t len, void *buf, store_cb cb, void *arg)
{
  struct onode o;
  uint32_t na;
  struct rreq *r = rreq_start_hdr(st, oid, off + len >= off, cb, arg, &o, &na, NULL);
  if (!r)
    return;
  uint64_t size = o.size;
  onode_clear(&o);
  uint8_t *dst = buf;
  memset(dst, 0, len);
  uint64_t valid = off >= size ? 0 : (len < size - off ? len : size - off);
  r->result = (int)valid;
  if (valid == 0) {
    rreq_park(st, r);
    return;
  }
  uint64_t end = off + valid;
  uint64_t first = off / STORE_BLOCK, last = (end - 1) / STORE_BLOCK;
  uint64_t nblk = last - first + 1;
  r->blocks = calloc(nblk, sizeof *r->blocks);
  r->runs = calloc(nblk, sizeof *r->runs);
  if (!r->blocks || !r->runs)
    abort();
  struct chunk_map cm;
  uint64_t cur_chunk = UINT64_MAX;
  uint32_t nb = 0;
  for (uint64_t bi = first; bi <= last; bi++) {
    uint64_t ci = bi / STORE_CHUNK_BLOCKS;
    if (ci != cur_chunk) {
      int rc = st_load_chunk(st, oid, (uint32_t)ci, &cm);
      if (rc < 0) {
        r->result = rc;
        rreq_park(st, r);
        return;
      }
      cur_chunk = ci;
    }
    unsigned k = (unsigned)(bi % STORE_CHUNK_BLOCKS);
    uint64_t bo = bi * STORE_BLOCK;
    uint32_t from = bo < off ? (uint32_t)(off - bo) : 0;
    uint32_t to = bo + STORE_BLOCK > end ? (uint32_t)(end - bo) : STORE_BLOCK;
    uint8_t *d = dst + (bo + from - off);
    if (!cm.blk[k])
      continue;                         /* hole: zeros */
    uint64_t lba = cm.blk[k] - 1;
    struct pend *p = pend_find(st, lba);
    if (p) {
      memcpy(d, p->rb->mem + p->off + from, to - from);
      continue;
    }
    struct rblock *b = &r->blocks[nb];
    b->obj_off = bo;
    b->crc = cm.crc[k];
    b->from = from;
    b->to = to;
    struct rrun *u = r->nruns ? &r->runs[r->nruns - 1] : NULL;
    if (!u || u->lba + u->n != lba ||
        r->blocks[u->bidx + u->n - 1].obj_off + STORE_BLOCK != bo ||
        u->n >= 256) {
      u = &r->runs[r->nruns++];
      u->lba = lba;
      u->bidx = nb;
      u->r = r;
    }
    u->n++;
    nb++;
  }
  if (r->nruns) {
    r->bounce = rb_get(st, (size_t)nb * STORE_BLOCK);
    r->what = strdup(oid->name);    /* for error messages */
    r->pool = oid->pool;
    r->pg = oid->pg;
    r->snap = oid->snap;
    if (!r->bounce)
      abort();
    /* dst pointers: blocks write into buf at their own offsets */
    r->dst = NULL;
    uint32_t boff = 0;
    for (uint32_t i = 0; i < r->nruns; i++) {
      struct rrun *u = &r->runs[i];
      u->boff = boff;
      boff += u->n * STORE_BLOCK;
      u->io.done = run_done;
      struct io_uring_sqe *sqe = st_sqe(st);
      io_uring_prep_read(sqe, st->fd, r->bounce->mem + u->boff,
                         u->n * STORE_BLOCK,
                         st->sb.data_offset + u->lba * STORE_BLOCK);
      io_uring_sqe_set_data(sqe, &u->io);
    }
    r->io_left = r->nruns;
    r->dst = dst;
    r->off = off;
    r->fl_next = st->reading;
    st->reading = r;
    st_submit(st);
  }
  rreq_park(st, r);
}

/* ---- lookups ---- */

/* store_stat and store_stat_size: with_alloc walks every chunk map of the
 * object (32 for a 4 MiB object) to count allocated blocks, which the I/O
 * path does not need. */
static void stat_common(store *st, const struct store_oid *oid, struct store_stat *out,
                        bool with_alloc, store_cb cb, void *arg)
{
  struct onode o;
  uint32_t na;
  struct rreq *r = rreq_start_hdr(st, oid, true, cb, arg, &o, &na, NULL);
  if (!r)
    return;
  memset(out, 0, sizeof *out);
  out->size = o.size;
  out->n_attrs = na;
  out->has_omap = o.omap_id != 0;
  if (o.size && with_alloc) {
    for (uint64_t ci = 0; ci <= (o.size - 1) / STORE_CHUNK_SIZE; ci++) {
      struct chunk_map cm;
      if (st_load_chunk(st, oid, (uint32_t)ci, &cm) <= 0)
        continue;
      for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++)
        if (cm.blk[i])
          out->allocated += STORE_BLOCK;
    }
  }
  onode_clear(&o);
  rreq_park(st, r);
}

void store_stat(store *st, const struct store_oid *oid, struct store_stat *out,
                store_cb cb, void *arg)
{
  stat_common(st, oid, out, true, cb, arg);
}

void store_stat_size(store *st, const struct store_oid *oid, struct store_stat *out,
                     store_cb cb, void *arg)
{
  stat_common(st, oid, out, false, cb, arg);
}

static void lookup_kv(store *st, const struct store_oid *oid, const char *name,
                      void **val, size_t *len, store_cb cb, void *arg,
                      bool omap)
{
  *val = NULL;
  *len = 0;
  struct onode o;
  uint32_t na;
  /* only the attribute looked up (xattr), or none (omap: the omap id) */
  struct rreq *r = rreq_start_hdr(st, oid, name && strlen(name) <= STORE_NAME_MAX, cb, arg, &o,
                                  omap ? &na : NULL, omap ? NULL : name);
  if (!r)
    return;
  r->result = -ENODATA;
  if (!omap) {
    struct onode_attr *a = onode_find_attr(&o, name);
    if (a) {
      *val = malloc(a->vlen ? a->vlen : 1);
      if (!*val)
        abort();
      memcpy(*val, a->val, a->vlen);
      *len = a->vlen;
      r->result = 0;
    }
  } else if (o.omap_id) {
    uint8_t k[9 + STORE_NAME_MAX + 1];
    size_t kl = strlen(name);
    k[0] = KEY_OMAP;
    put_be64(k + 1, o.omap_id);
    memcpy(k + 9, name, kl);
    uint8_t *v;
    size_t vl;
    bool b;
    int rc = meta_get(st, k, 9 + kl, &v, &vl, &b);
    if (rc < 0) {
      r->result = rc;
    } else if (rc == 1) {
      *val = malloc(vl ? vl : 1);
      if (!*val)
        abort();
      memcpy(*val, v, vl);
      *len = vl;
      if (!b)
        free(v);
      r->result = 0;
    }
  }
  onode_clear(&o);
  rreq_park(st, r);
}

void store_getattr(store *st, const struct store_oid *oid, const char *name,
                   void **val, size_t *len, store_cb cb, void *arg)
{
  lookup_kv(st, oid, name, val, len, cb, arg, false);
}

void store_omap_get(store *st, const struct store_oid *oid, const char *key,
                    void **val, size_t *len, store_cb cb, void *arg)
{
  lookup_kv(st, oid, key, val, len, cb, arg, true);
}

/* ---- synchronous wrappers ---- */

struct swait {
  bool done;
  int result;
};

static void swait_cb(void *arg, int result)
{
  struct swait *w = arg;
  w->done = true;
  w->result = result;
}

static int swait_run(struct store *st, struct swait *w)
{
  while (!w->done)
    event_base_loop(st->base, EVLOOP_ONCE);
  return w->result;
}

int store_read_sync(store *st, const struct store_oid *oid, uint64_t off,
                    uint64_t len, void *buf)
{
  struct swait w = { false, 0 };
  store_read(st, oid, off, len, buf, swait_cb, &w);
  return swait_run(st, &w);
}

int store_stat_sync(store *st, const struct store_oid *oid,
                    struct store_stat *out)
{
  struct swait w = { false, 0 };
  store_stat(st, oid, out, swait_cb, &w);
  return swait_run(st, &w);
}

int store_getattr_sync(store *st, const struct store_oid *oid,
                       const char *name, void **val, size_t *len)
{
  struct swait w = { false, 0 };
  store_getattr(st, oid, name, val, len, swait_cb, &w);
  return swait_run(st, &w);
}

int store_omap_get_sync(store *st, const struct store_oid *oid,
                        const char *key, void **val, size_t *len)
{
  struct swait w = { false, 0 };
  store_omap_get(st, oid, key, val, len, swait_cb, &w);
  return swait_run(st, &w);
}

/* ---- listing ---- */

struct lent {
  uint8_t *key;
  size_t klen;
};

static int cmp_lent(const void *a, const void *b)
{
  const struct lent *x = a, *y = b;
  size_t n = x->klen < y->klen ? x->klen : y->klen;
  int c = memcmp(x->key, y->key, n);
  return c ? c : (x->klen < y->klen ? -1 : x->klen > y->klen);
}

/* Merge RocksDB keys in [lo, hi) after `after` with the overlay; return up
 * to max keys (malloc'd copies) in order. */
static int list_keys(struct store *st, const uint8_t *lo, size_t lolen,
                     const uint8_t *hi, size_t hilen, unsigned max,
                     struct lent **out)
{
  struct lent *v = NULL;
  size_t n = 0, cap = 0;
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ro);
  unsigned taken = 0;
  for (rocksdb_iter_seek(it, (const char *)lo, lolen);
       rocksdb_iter_valid(it) && taken < max; rocksdb_iter_next(it)) {
    size_t kl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    struct lent t = { (uint8_t *)k, kl }, h = { (uint8_t *)hi, hilen };
    if (cmp_lent(&t, &h) >= 0)
      break;
    struct lent l = { (uint8_t *)lo, lolen };
    if (cmp_lent(&t, &l) <= 0)
      continue;           /* start_after itself */
    if (ovl_find(st, k, kl))
      continue;           /* the overlay decides */
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      v = realloc(v, cap * sizeof *v);
      if (!v)
        abort();
    }
    v[n].key = malloc(kl);
    if (!v[n].key)
      abort();
    memcpy(v[n].key, k, kl);
    v[n].klen = kl;
    n++;
    taken++;
  }
  rocksdb_iter_destroy(it);
  hmap_foreach(&st->ovl, i, e) {
    struct ovl *o = (struct ovl *)e;
    struct lent t = { o->key, o->klen }, l = { (uint8_t *)lo, lolen },
                h = { (uint8_t *)hi, hilen };
    if (o->tomb || cmp_lent(&t, &l) <= 0 || cmp_lent(&t, &h) >= 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      v = realloc(v, cap * sizeof *v);
      if (!v)
        abort();
    }
    v[n].key = malloc(o->klen);
    if (!v[n].key)
      abort();
    memcpy(v[n].key, o->key, o->klen);
    v[n].klen = o->klen;
    n++;
  }
  if (n)
    qsort(v, n, sizeof *v, cmp_lent);
  while (n > max)
    free(v[--n].key);
  *out = v;
  return (int)n;
}

int store_list(store *st, uint32_t pool, uint32_t pg, const char *start_after,
               uint64_t start_snap, unsigned max, struct store_list_ent **out)
{
  uint8_t lo[STORE_NAME_MAX + 32], hi[16];
  size_t lolen;
  *out = NULL;
  if (start_after && strlen(start_after) > STORE_NAME_MAX)
    return -EINVAL;
  if (start_after) {
    lolen = meta_okey(lo, KEY_ONODE, pool, pg, start_after, start_snap);
  } else {
    lo[0] = KEY_ONODE;
    put_be32(lo + 1, pool);
    put_be32(lo + 5, pg);
    lolen = 9;
  }
  hi[0] = KEY_ONODE;
  put_be32(hi + 1, pool);
  put_be32(hi + 5, pg);
  size_t hilen = 9;
  /* (pool, pg + 1) with carry */
  if (pg == UINT32_MAX) {
    put_be32(hi + 1, pool + 1);
    put_be32(hi + 5, 0);
    if (pool == UINT32_MAX) {
      hi[0] = KEY_ONODE + 1;
      hilen = 1;
    }
  } else {
    put_be32(hi + 5, pg + 1);
  }
  if (max == 0)
    return 0;
  struct lent *v;
  int n = list_keys(st, lo, lolen, hi, hilen, max, &v);
  struct store_list_ent *e = calloc((size_t)n + 1, sizeof *e);
  if (!e)
    abort();
  int k = 0;
  for (int i = 0; i < n; i++) {
    uint32_t p, g;
    const uint8_t *name;
    size_t nl;
    uint64_t snap;
    if (meta_parse_okey(v[i].key, v[i].klen, &p, &g, &name, &nl, &snap) == 0) {
      e[k].name = strndup((const char *)name, nl);
      e[k].snap = snap;
      k++;
    }
    free(v[i].key);
  }
  free(v);
  *out = e;
  return k;
}

int store_omap_list(store *st, const struct store_oid *oid,
                    const char *start_after, unsigned max,
                    struct store_list_ent **out)
{
  *out = NULL;
  if (st_oid_check(oid) < 0 ||
      (start_after && strlen(start_after) > STORE_NAME_MAX))
    return -EINVAL;
  struct onode o;
  int rc = st_load_onode(st, oid, &o);
  if (rc <= 0)
    return rc == 0 ? -ENOENT : rc;
  uint64_t id = o.omap_id;
  onode_clear(&o);
  struct store_list_ent *e = calloc(1, sizeof *e);
  if (!e)
    abort();
  if (!id || max == 0) {
    *out = e;
    return 0;
  }
  uint8_t lo[9 + STORE_NAME_MAX + 1], hi[9];
  lo[0] = hi[0] = KEY_OMAP;
  put_be64(lo + 1, id);
  put_be64(hi + 1, id + 1);
  size_t lolen = 9;
  if (start_after) {
    memcpy(lo + 9, start_after, strlen(start_after));
    lolen += strlen(start_after);
  }
  struct lent *v;
  int n = list_keys(st, lo, lolen, hi, 9, max, &v);
  free(e);
  e = calloc((size_t)n + 1, sizeof *e);
  if (!e)
    abort();
  for (int i = 0; i < n; i++) {
    e[i].name = strndup((const char *)v[i].key + 9, v[i].klen - 9);
    free(v[i].key);
  }
  free(v);
  *out = e;
  return n;
}

void store_list_free(struct store_list_ent *ents, int n)
{
  if (!ents)
    return;
  for (int i = 0; i < n; i++)
    free(ents[i].name);
  free(ents);
}

/* ---- object-op helpers (OSD ops GETXATTR/OMAP_LIST/MAPEXT, recovery) ---- */

void store_kv_free(struct store_kv *kv, size_t n)
{
  if (!kv)
    return;
  for (size_t i = 0; i < n; i++) {
    free(kv[i].key);
    free(kv[i].val);
  }
  free(kv);
}

static void kv_set(struct store_kv *kv, const char *key, size_t klen, const void *val,
                   size_t vlen)
{
  kv->key = strndup(key, klen);
  kv->val = malloc(vlen ? vlen : 1);
  if (!kv->key || !kv->val)
    abort();
  memcpy(kv->val, val, vlen);
  kv->len = vlen;
}

void store_attrs(store *st, const struct store_oid *oid, struct store_kv **out, size_t *n,
                 store_cb cb, void *arg)
{
  *out = NULL;
  *n = 0;
  struct onode o;
  struct rreq *r = rreq_start(st, oid, true, cb, arg, &o);
  if (!r)
    return;
  struct store_kv *kv = calloc(o.n_attrs + 1, sizeof *kv);
  if (!kv)
    abort();
  for (uint32_t i = 0; i < o.n_attrs; i++)
    kv_set(&kv[i], o.attrs[i].name, strlen(o.attrs[i].name), o.attrs[i].val, o.attrs[i].vlen);
  *out = kv;
  *n = o.n_attrs;
  onode_clear(&o);
  rreq_park(st, r);
}

void store_omap_range(store *st, const struct store_oid *oid, const char *start_after,
                      unsigned max, struct store_kv **out, size_t *n, store_cb cb, void *arg)
{
  *out = NULL;
  *n = 0;
  struct onode o;
  struct rreq *r = rreq_start(st, oid, !start_after || strlen(start_after) <= STORE_NAME_MAX,
                              cb, arg, &o);
  if (!r)
    return;
  uint64_t id = o.omap_id;
  onode_clear(&o);
  struct store_list_ent *ents = NULL;
  int nk = id && max ? store_omap_list(st, oid, start_after, max, &ents) : 0;
  if (nk < 0) {
    r->result = nk;
    rreq_park(st, r);
    return;
  }
  struct store_kv *kv = calloc((size_t)nk + 1, sizeof *kv);
  if (!kv)
    abort();
  size_t k = 0;
  for (int i = 0; i < nk; i++) {
    uint8_t key[9 + STORE_NAME_MAX + 1];
    size_t kl = strlen(ents[i].name);
    key[0] = KEY_OMAP;
    put_be64(key + 1, id);
    memcpy(key + 9, ents[i].name, kl);
    uint8_t *v;
    size_t vl;
    bool borrowed;
    int rc = meta_get(st, key, 9 + kl, &v, &vl, &borrowed);
    if (rc < 0) {
      r->result = rc;
      break;
    }
    if (rc == 0)
      continue;
    kv_set(&kv[k++], ents[i].name, kl, v, vl);
    if (!borrowed)
      free(v);
  }
  store_list_free(ents, nk);
  if (r->result < 0) {
    store_kv_free(kv, k);
  } else {
    *out = kv;
    *n = k;
  }
  rreq_park(st, r);
}

void store_mapext(store *st, const struct store_oid *oid, uint64_t off, uint64_t len,
                  uint64_t **ext, size_t *n, store_cb cb, void *arg)
{
  *ext = NULL;
  *n = 0;
  struct onode o;
  struct rreq *r = rreq_start(st, oid, off + len >= off, cb, arg, &o);
  if (!r)
    return;
  uint64_t end = off + len < o.size ? off + len : o.size;
  onode_clear(&o);
  uint64_t *v = NULL;
  size_t cnt = 0, cap = 0;
  struct chunk_map cm;
  uint64_t cur_chunk = UINT64_MAX;
  bool have_chunk = false;
  for (uint64_t bi = off / STORE_BLOCK; off < end && bi * STORE_BLOCK < end; bi++) {
    uint64_t ci = bi / STORE_CHUNK_BLOCKS;
    if (ci != cur_chunk) {
      int rc = st_load_chunk(st, oid, (uint32_t)ci, &cm);
      if (rc < 0) {
        r->result = rc;
        break;
      }
      have_chunk = rc > 0;
      cur_chunk = ci;
    }
    if (!have_chunk || !cm.blk[bi % STORE_CHUNK_BLOCKS])
      continue;
    uint64_t s = bi * STORE_BLOCK > off ? bi * STORE_BLOCK : off;
    uint64_t e = (bi + 1) * STORE_BLOCK < end ? (bi + 1) * STORE_BLOCK : end;
    if (cnt && v[2 * cnt - 2] + v[2 * cnt - 1] == s) {
      v[2 * cnt - 1] += e - s;
      continue;
    }
    if (cnt == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *nv = realloc(v, 2 * cap * sizeof *nv);
      if (!nv)
        abort();
      v = nv;
    }
    v[2 * cnt] = s;
    v[2 * cnt + 1] = e - s;
    cnt++;
  }
  if (r->result < 0) {
    free(v);
  } else {
    *ext = v;
    *n = cnt;
  }
  rreq_park(st, r);
}
