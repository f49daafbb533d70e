/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the image data path.  A request (read, write, discard,
 * write-zeroes, flush, block status) is checked against the image size on
 * the caller's thread, queued to the library thread (from that thread
 * itself, e.g. a callback, on its loop-local list: no wakeup, see
 * libblk.c), and there split at
 * object boundaries into one sub-op per data object
 * (`blk_data.<id>.<objno>`, objno = offset >> order).  Sub-ops run in
 * parallel through the objecter; the request completes when the last one
 * does, with the first error or the full length.
 *  - read: a missing object (-ENOENT) or bytes past an object's end read
 *    as zeroes (thin provisioning).
 *  - write: OP_WRITE; objects come into existence when first written.
 *  - discard / write-zeroes without BLK_ZERO_NO_HOLE: an object the range
 *    covers entirely is removed; a partial range is punched with OP_ZERO,
 *    or, on OSDs without it (-EOPNOTSUPP, remembered per cluster), by
 *    writing zeroes over the part of the range below the object's size (a
 *    missing object is left missing).  With BLK_ZERO_NO_HOLE zeroes are
 *    written.
 *  - flush: every write is acknowledged only when durable on all replicas,
 *    so a flush just waits for the modifying requests started before it.
 *    Modifying requests are kept in start order (w_head..w_tail, each with
 *    a sequence number); a flush records the newest sequence and completes
 *    when no older modifying request is in flight.
 *  - block status: OP_MAPEXT per object (allocated extents), else OP_STAT
 *    (existence and size), at most BSTAT_MAX_OBJECTS objects per call.
 * Everything below except the entry points runs on the library thread.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BSTAT_MAX_OBJECTS 64
#define TRIM_WINDOW 32

enum req_type { RQ_READ, RQ_WRITE, RQ_DISCARD, RQ_ZERO, RQ_FLUSH, RQ_BSTAT };

static const char *const req_names[] = { "read", "write", "discard", "write-zeroes", "flush",
                                         "block-status" };

struct sub_ext {
  struct blk_extent *v;
  size_t n;
};

struct img_req;
struct img_sub {
  struct img_req *r;
  uint64_t objno, ooff, olen;    /* range inside the object */
  uint64_t boff;                 /* offset of that range in the request */
  size_t idx;                    /* index among the request's sub-ops */
  char name[80];
  bool copied;                   /* clone: copy-up done (or not needed) */
  unsigned level;                /* clone: the ancestor being read */
};

struct img_req {
  struct lb_task t;
  blk_image *img;
  enum req_type type;
  uint64_t off, len;
  uint8_t *rbuf;                 /* read destination (borrowed) */
  const uint8_t *wbuf;           /* write source (borrowed) */
  int flags;
  blk_callback cb;
  blk_extent_callback ecb;
  void *arg;
  unsigned pending;
  int err;
  char msg[LB_MSG];
  bool modifying;
  uint64_t seq;
  struct img_req *wprev, *wnext; /* img->w_head list (modifying, in flight) */
  struct img_req *fnext;         /* img->flushes list */
  struct sub_ext *bs;            /* block status: extents per object */
  size_t n_bs;
  struct img_sub sub0;           /* the first sub-op, inline (most requests
                                  * touch one object: no allocation) */
};


static void req_complete(struct img_req *r);

static void req_fail(struct img_req *r, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void req_fail(struct img_req *r, int err, const char *fmt, ...)
{
  if (r->err)
    return;
  r->err = err;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
}

static void sub_done(struct img_sub *s)
{
  struct img_req *r = s->r;
  if (s != &r->sub0)
    free(s);
  if (--r->pending == 0)
    req_complete(r);
}

static const void *zero_buf(blk_image *img)
{
  if (!img->zeroes)
    img->zeroes = calloc(1, (size_t)1 << img->order);
  return img->zeroes;
}

static void sub_op(struct img_sub *s, Blk__OsdOpType op, uint64_t off, uint64_t len,
                   const void *data, objecter_cb cb);

/* ---- read ---- */

/* Clones: the bytes of object objno the parent snapshot backs (0: none). */
static uint64_t parent_span(blk_image *img, uint64_t objno)
{
  uint64_t overlap = __atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE);
  uint64_t start = objno << img->order, objsize = 1ull << img->order;
  if (!img->parent_id[0] || start >= overlap)
    return 0;
  return overlap - start < objsize ? overlap - start : objsize;
}

/* The bytes of object objno ancestor `level` backs (0: none). */
static uint64_t anc_span(blk_image *img, unsigned level, uint64_t objno)
{
  uint64_t span = parent_span(img, objno), start = objno << img->order;
  if (level >= img->n_anc || start >= img->anc[level].overlap)
    return 0;
  uint64_t o = img->anc[level].overlap - start;
  return o < span ? o : span;
}

/* Read [off, off+len) of object s->objno of ancestor s->level at its
 * snapshot.  0 or -errno (cb not called). */
static int anc_read(struct img_sub *s, uint64_t off, uint64_t len, objecter_cb cb)
{
  blk_image *img = s->r->img;
  char pname[80];
  image_data_name(img->anc[s->level].id, s->objno, pname, sizeof pname);
  struct objecter_req req = { .name = pname, .op = BLK__OSD_OP_TYPE__OP_READ, .offset = off,
                              .length = len, .snapid = img->anc[s->level].snap };
  return lb_objecter_op(img->io, &req, cb, s);
}

static void parent_read_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                           uint32_t len)
{
  struct img_sub *s = arg;
  uint8_t *dst = s->r->rbuf + s->boff;
  blk_image *img = s->r->img;
  uint64_t span = anc_span(img, s->level, s->objno);
  if (err == -ENOENT && anc_span(img, s->level + 1, s->objno) > s->ooff) {
    s->level++;   /* not in this ancestor either: its parent */
    if (anc_read(s, s->ooff, s->olen, parent_read_cb) == 0)
      return;
    err = -ENOMEM;
  }
  if (err == -ENOENT) {
    memset(dst, 0, s->olen);
  } else if (err < 0) {
    req_fail(s->r, err, "read of the parent of %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  } else {
    /* bytes past the overlap read as zeroes (the child was shrunk) */
    uint64_t n = len < s->olen ? len : s->olen;
    if (s->ooff + n > span)
      n = span > s->ooff ? span - s->ooff : 0;
    memcpy(dst, data, n);
    memset(dst + n, 0, s->olen - n);
  }
  sub_done(s);
}

static void read_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                    uint32_t len)
{
  struct img_sub *s = arg;
  uint8_t *dst = s->r->rbuf + s->boff;
  blk_image *img = s->r->img;
  if (err == -ENOENT && parent_span(img, s->objno) > s->ooff) {
    /* a clone's object not written yet: the parent snapshot's bytes */
    s->level = 0;
    if (anc_read(s, s->ooff, s->olen, parent_read_cb) == 0)
      return;
    err = -ENOMEM;
  }
  if (err == -ENOENT) {
    memset(dst, 0, s->olen);
  } else if (err < 0) {
    req_fail(s->r, err, "read of %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  } else {
    size_t n = len < s->olen ? len : s->olen;
    memcpy(dst, data, n);
    memset(dst + n, 0, s->olen - n);
  }
  sub_done(s);
}

/* ---- write, discard, zero ---- */

static void write_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                     uint32_t len)
{
  struct img_sub *s = arg;
  if (err < 0 && !(err == -ENOENT && s->r->type != RQ_WRITE))
    req_fail(s->r, err, "%s of %s failed: %s", req_names[s->r->type], s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  sub_done(s);
}

static void punch_stat_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                          uint32_t len)
{
  struct img_sub *s = arg;
  if (err == -ENOENT) {
    sub_done(s);
    return;
  }
  if (err < 0 || !rep) {
    write_cb(s, err ? err : -EIO, rep, NULL, 0);
    return;
  }
  uint64_t osize = rep->size;
  if (s->ooff >= osize) {
    sub_done(s);
    return;
  }
  uint64_t n = osize - s->ooff < s->olen ? osize - s->ooff : s->olen;
  const void *z = zero_buf(s->r->img);
  if (!z) {
    req_fail(s->r, -ENOMEM, "out of memory");
    sub_done(s);
    return;
  }
  sub_op(s, BLK__OSD_OP_TYPE__OP_WRITE, s->ooff, n, z, write_cb);
}

static void zero_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                    uint32_t len)
{
  struct img_sub *s = arg;
  if (err == -EOPNOTSUPP) {
    __atomic_store_n(&s->r->img->io->c->no_zero, true, __ATOMIC_RELAXED);
    sub_op(s, BLK__OSD_OP_TYPE__OP_STAT, 0, 0, NULL, punch_stat_cb);
    return;
  }
  write_cb(arg, err, rep, data, len);
}

/* ---- block status ---- */

static int bs_add(struct sub_ext *e, uint64_t off, uint64_t len, uint32_t flags)
{
  if (len == 0)
    return 0;
  if (e->n && e->v[e->n - 1].flags == flags && e->v[e->n - 1].offset + e->v[e->n - 1].length == off) {
    e->v[e->n - 1].length += len;
    return 0;
  }
  struct blk_extent *v = realloc(e->v, (e->n + 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  e->v = v;
  v[e->n++] = (struct blk_extent){ off, len, flags };
  return 0;
}

#define HOLE (BLK_EXTENT_HOLE | BLK_EXTENT_ZERO)

static void bstat_stat_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                          uint32_t len)
{
  struct img_sub *s = arg;
  struct img_req *r = s->r;
  struct sub_ext *e = &r->bs[s->idx];
  uint64_t base = r->off + s->boff;   /* image offset of s->ooff */
  int rc = 0;
  uint64_t span = parent_span(r->img, s->objno);
  if (err == -ENOENT && span > s->ooff) {
    /* a clone's object not written yet: the parent's bytes count as data */
    uint64_t d = span - s->ooff < s->olen ? span - s->ooff : s->olen;
    rc = bs_add(e, base, d, 0);
    if (rc == 0)
      rc = bs_add(e, base + d, s->olen - d, HOLE);
  } else if (err == -ENOENT) {
    rc = bs_add(e, base, s->olen, HOLE);
  } else if (err < 0 || !rep) {
    req_fail(r, err ? err : -EIO, "stat of %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  } else {
    uint64_t osize = rep->size;
    uint64_t d = osize > s->ooff ? osize - s->ooff : 0;
    if (d > s->olen)
      d = s->olen;
    rc = bs_add(e, base, d, 0);
    if (rc == 0)
      rc = bs_add(e, base + d, s->olen - d, HOLE);
  }
  if (rc < 0)
    req_fail(r, rc, "out of memory");
  sub_done(s);
}

static void bstat_mapext_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                            uint32_t len)
{
  struct img_sub *s = arg;
  struct img_req *r = s->r;
  if (err == -EOPNOTSUPP) {
    __atomic_store_n(&r->img->io->c->no_mapext, true, __ATOMIC_RELAXED);
    sub_op(s, BLK__OSD_OP_TYPE__OP_STAT, 0, 0, NULL, bstat_stat_cb);
    return;
  }
  if (err < 0 || !rep) {
    bstat_stat_cb(arg, err ? err : -EIO, rep, data, len);
    return;
  }
  /* extents: (offset, length) pairs inside the object, sorted */
  struct sub_ext *e = &r->bs[s->idx];
  uint64_t pos = s->ooff, end = s->ooff + s->olen;
  uint64_t base = r->off + s->boff - s->ooff;   /* image offset of object byte 0 */
  int rc = 0;
  for (size_t i = 0; i + 1 < rep->n_extents && rc == 0; i += 2) {
    uint64_t a = rep->extents[i], b = a + rep->extents[i + 1];
    if (a < pos)
      a = pos;
    if (b > end)
      b = end;
    if (a >= b)
      continue;
    rc = bs_add(e, base + pos, a - pos, HOLE);
    if (rc == 0)
      rc = bs_add(e, base + a, b - a, 0);
    pos = b;
  }
  if (rc == 0)
    rc = bs_add(e, base + pos, end - pos, HOLE);
  if (rc < 0)
    req_fail(r, rc, "out of memory");
  sub_done(s);
}

/* ---- dispatch ---- */

static void sub_op(struct img_sub *s, Blk__OsdOpType op, uint64_t off, uint64_t len,
                   const void *data, objecter_cb cb)
{
  struct objecter_req req = { .name = s->name, .op = op, .offset = off, .length = len };
  blk_image *img = s->r->img;
  if (op == BLK__OSD_OP_TYPE__OP_READ || op == BLK__OSD_OP_TYPE__OP_STAT ||
      op == BLK__OSD_OP_TYPE__OP_MAPEXT) {
    req.snapid = img->snap_id;
  } else {
    req.snap_seq = img->snapc.seq;   /* copy-on-write for the snapshots */
    req.snaps = img->snapc.snaps;
    req.n_snaps = img->snapc.n;
  }
  if (data) {
    /* r->wbuf (borrowed until the request's callback) or the image's zero
     * buffer: both outlive the op, so the objecter keeps no copy */
    req.data = data;
    req.data_len = (uint32_t)len;
    req.data_borrowed = true;
  }
  int r = lb_objecter_op(s->r->img->io, &req, cb, s);
  if (r < 0)
    cb(s, r, NULL, NULL, 0);
}

static void sub_start(struct img_sub *s);

/* ---- clones: copy-up before the first change of a child object ---- */

static void copyup_write_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                            uint32_t len)
{
  struct img_sub *s = arg;
  (void)data;
  (void)len;
  if (err < 0 && err != -ECANCELED) {   /* -ECANCELED: it exists already */
    req_fail(s->r, err, "copy-up of %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
    sub_done(s);
    return;
  }
  s->copied = true;
  sub_start(s);
}

static void copyup_read_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                           uint32_t len)
{
  struct img_sub *s = arg;
  blk_image *img = s->r->img;
  if (err == -ENOENT && anc_span(img, s->level + 1, s->objno)) {
    s->level++;   /* not in this ancestor: its parent */
    if (anc_read(s, 0, anc_span(img, s->level, s->objno), copyup_read_cb) == 0)
      return;
    err = -ENOMEM;
  }
  if (err == -ENOENT) {   /* no ancestor has anything here */
    s->copied = true;
    sub_start(s);
    return;
  }
  if (err < 0) {
    req_fail(s->r, err, "copy-up read for %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
    sub_done(s);
    return;
  }
  uint64_t span = anc_span(img, s->level, s->objno);
  if (len > span)
    len = (uint32_t)span;
  /* create the child object from the parent's bytes only if it still
   * does not exist (version guard 0.0), then do the change itself */
  struct objecter_req req = { .name = s->name, .op = BLK__OSD_OP_TYPE__OP_WRITEFULL, .data = data,
                              .data_len = len, .length = len, .has_assert_version = true,
                              .snap_seq = img->snapc.seq, .snaps = img->snapc.snaps,
                              .n_snaps = img->snapc.n };
  if (lb_objecter_op(img->io, &req, copyup_write_cb, s) < 0)
    copyup_write_cb(s, -ENOMEM, NULL, NULL, 0);
}

static void copyup_stat_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                           uint32_t len)
{
  struct img_sub *s = arg;
  blk_image *img = s->r->img;
  (void)data;
  (void)len;
  if (err == 0) {   /* the child object exists */
    s->copied = true;
    sub_start(s);
    return;
  }
  if (err != -ENOENT) {
    req_fail(s->r, err, "stat of %s failed: %s", s->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
    sub_done(s);
    return;
  }
  s->level = 0;
  if (anc_read(s, 0, parent_span(img, s->objno), copyup_read_cb) < 0)
    copyup_read_cb(s, -ENOMEM, NULL, NULL, 0);
}

static void sub_start(struct img_sub *s)
{
  struct img_req *r = s->r;
  blk_image *img = r->img;
  if (r->type != RQ_READ && r->type != RQ_BSTAT && r->type != RQ_FLUSH && !s->copied &&
      parent_span(img, s->objno)) {
    struct objecter_req req = { .name = s->name, .op = BLK__OSD_OP_TYPE__OP_STAT };
    if (lb_objecter_op(img->io, &req, copyup_stat_cb, s) < 0)
      copyup_stat_cb(s, -ENOMEM, NULL, NULL, 0);
    return;
  }
  blk_cluster *c = img->io->c;
  uint64_t objsize = 1ull << img->order;
  switch (r->type) {
  case RQ_READ:
    sub_op(s, BLK__OSD_OP_TYPE__OP_READ, s->ooff, s->olen, NULL, read_cb);
    break;
  case RQ_WRITE:
    sub_op(s, BLK__OSD_OP_TYPE__OP_WRITE, s->ooff, s->olen, r->wbuf + s->boff, write_cb);
    break;
  case RQ_ZERO:
    if (r->flags & BLK_ZERO_NO_HOLE) {
      const void *z = zero_buf(img);
      if (!z) {
        req_fail(r, -ENOMEM, "out of memory");
        sub_done(s);
        return;
      }
      sub_op(s, BLK__OSD_OP_TYPE__OP_WRITE, s->ooff, s->olen, z, write_cb);
      break;
    }
    /* punched like a discard */
    __attribute__((fallthrough));
  case RQ_DISCARD: {
    uint64_t size = __atomic_load_n(&img->size, __ATOMIC_ACQUIRE);
    uint64_t obj_start = s->objno << img->order;
    uint64_t span = size - obj_start < objsize ? size - obj_start : objsize;
    /* a clone's object backed by the parent is zeroed, not removed
     * (removing would expose the parent's bytes again) */
    if (s->ooff == 0 && s->olen >= span && !parent_span(img, s->objno))
      sub_op(s, BLK__OSD_OP_TYPE__OP_REMOVE, 0, 0, NULL, write_cb);
    else if (!__atomic_load_n(&c->no_zero, __ATOMIC_RELAXED))
      sub_op(s, BLK__OSD_OP_TYPE__OP_ZERO, s->ooff, s->olen, NULL, zero_cb);
    else
      sub_op(s, BLK__OSD_OP_TYPE__OP_STAT, 0, 0, NULL, punch_stat_cb);
    break;
  }
  case RQ_BSTAT:
    if (!__atomic_load_n(&c->no_mapext, __ATOMIC_RELAXED))
      sub_op(s, BLK__OSD_OP_TYPE__OP_MAPEXT, s->ooff, s->olen, NULL, bstat_mapext_cb);
    else
      sub_op(s, BLK__OSD_OP_TYPE__OP_STAT, 0, 0, NULL, bstat_stat_cb);
    break;
  case RQ_FLUSH:
    sub_done(s);
    break;
  }
}

static void flushes_check(blk_image *img)
{
  struct img_req **pp = &img->flushes;
  while (*pp) {
    struct img_req *f = *pp;
    if (!img->w_head || img->w_head->seq > f->seq) {
      *pp = f->fnext;
      if (img->write_err < 0 && !f->err) {
        f->err = img->write_err;
        snprintf(f->msg, sizeof f->msg, "an earlier write failed: %s", strerror(-f->err));
      }
      img->write_err = 0;
      req_complete(f);
    } else {
      pp = &f->fnext;
    }
  }
}

static void req_complete(struct img_req *r)
{
  blk_image *img = r->img;
  int64_t result = r->err;
  if (r->modifying) {
    if (r->wprev)
      r->wprev->wnext = r->wnext;
    else
      img->w_head = r->wnext;
    if (r->wnext)
      r->wnext->wprev = r->wprev;
    else
      img->w_tail = r->wprev;
    if (r->err < 0 && img->write_err == 0)
      img->write_err = r->err;
  }
  if (r->err == 0 && (r->type == RQ_READ || r->type == RQ_WRITE))
    result = (int64_t)r->len;
  if (r->err < 0)
    lb_set_msg(r->msg);
  else
    lb_clear_err();
  if (r->type == RQ_BSTAT) {
    struct sub_ext all = { NULL, 0 };
    int rc = 0;
    for (size_t i = 0; i < r->n_bs && r->err == 0 && rc == 0; i++)
      for (size_t k = 0; k < r->bs[i].n && rc == 0; k++)
        rc = bs_add(&all, r->bs[i].v[k].offset, r->bs[i].v[k].length, r->bs[i].v[k].flags);
    if (rc < 0 && r->err == 0) {
      r->err = rc;
      lb_set_msg("out of memory");
    }
    if (r->err < 0)
      r->ecb(r->arg, r->err, NULL, 0);
    else
      r->ecb(r->arg, 0, all.v, all.n);
    free(all.v);
    for (size_t i = 0; i < r->n_bs; i++)
      free(r->bs[i].v);
    free(r->bs);
  } else {
    r->cb(r->arg, result);
  }
  bool modifying = r->modifying;
  free(r);
  img->inflight--;
  if (modifying)
    flushes_check(img);
  if (img->inflight == 0 && img->drain) {
    struct lb_sync *d = img->drain;
    img->drain = NULL;
    lb_sync_done(d, 0, NULL);
  }
}

static void req_task(struct lb_task *t)
{
  struct img_req *r = (struct img_req *)t;
  blk_image *img = r->img;
  img->inflight++;
  img->started++;
  r->pending = 1;   /* held until every sub-op is started */
  if (r->modifying) {
    r->seq = ++img->wseq;
    r->wprev = img->w_tail;
    if (img->w_tail)
      img->w_tail->wnext = r;
    else
      img->w_head = r;
    img->w_tail = r;
  }
  uint64_t size = __atomic_load_n(&img->size, __ATOMIC_ACQUIRE);
  if (r->type == RQ_FLUSH) {
    r->seq = img->wseq;
    r->fnext = img->flushes;
    img->flushes = r;
    r->pending = 0;
    flushes_check(img);
    return;
  }
  if (r->modifying && image_lock_check_write(img) < 0) {
    /* the lock was handed over after the caller's check */
    req_fail(r, -EBUSY, "%s", blk_last_error());
    r->pending = 0;
    req_complete(r);
    return;
  }
  if (r->off >= size || (r->type != RQ_READ && r->type != RQ_BSTAT && r->len > size - r->off)) {
    /* the image shrank after the caller's check */
    req_fail(r, -EINVAL, "%s at %llu+%llu is past the end of image '%s' (%llu bytes)",
             req_names[r->type], (unsigned long long)r->off, (unsigned long long)r->len,
             img->name, (unsigned long long)size);
    r->pending = 0;
    req_complete(r);
    return;
  }
  if (r->len > size - r->off)
    r->len = size - r->off;
  uint64_t objsize = 1ull << img->order;
  uint64_t first = r->off >> img->order, last = (r->off + r->len - 1) >> img->order;
  if (r->type == RQ_BSTAT) {
    if (last - first + 1 > BSTAT_MAX_OBJECTS) {
      last = first + BSTAT_MAX_OBJECTS - 1;
      r->len = ((last + 1) << img->order) - r->off;
    }
    r->n_bs = last - first + 1;
    r->bs = calloc(r->n_bs, sizeof *r->bs);
    if (!r->bs) {
      req_fail(r, -ENOMEM, "out of memory");
      r->pending = 0;
      req_complete(r);
      return;
    }
  }
  uint64_t pos = r->off, end = r->off + r->len;
  size_t idx = 0;
  while (pos < end) {
    uint64_t objno = pos >> img->order;
    uint64_t ooff = pos & (objsize - 1);
    uint64_t olen = objsize - ooff < end - pos ? objsize - ooff : end - pos;
    struct img_sub *s = idx == 0 ? &r->sub0 : calloc(1, sizeof *s);
    if (!s) {
      req_fail(r, -ENOMEM, "out of memory");
      break;
    }
    s->r = r;
    s->objno = objno;
    s->ooff = ooff;
    s->olen = olen;
    s->boff = pos - r->off;
    s->idx = idx++;
    image_data_name(img->id, objno, s->name, sizeof s->name);
    r->pending++;
    sub_start(s);
    pos += olen;
  }
  if (--r->pending == 0)
    req_complete(r);
}

/* ---- entry points (caller's thread) ---- */

static int req_submit(blk_image *img, enum req_type type, uint64_t off, uint64_t len,
                      void *rbuf, const void *wbuf, int flags, blk_callback cb,
                      blk_extent_callback ecb, void *arg)
{
  lb_clear_err();
  if (!img)
    return lb_err(-EINVAL, "image is NULL");
  if ((type != RQ_BSTAT && !cb) || (type == RQ_BSTAT && !ecb))
    return lb_err(-EINVAL, "NULL callback");
  bool modifying = type == RQ_WRITE || type == RQ_DISCARD || type == RQ_ZERO;
  if (modifying && img->rdonly)
    return lb_err(-EROFS, "image '%s' is open %s", img->name,
                  img->snap_id ? "at a snapshot (read-only)" : "read-only");
  if (modifying) {
    int lr = image_lock_check_write(img);
    if (lr < 0)
      return lr;
  }
  uint64_t size = __atomic_load_n(&img->size, __ATOMIC_ACQUIRE);
  if (type != RQ_FLUSH) {
    if (len == 0 && type != RQ_READ && type != RQ_WRITE)
      return lb_err(-EINVAL, "%s of zero length", req_names[type]);
    if ((type == RQ_READ && !rbuf && len) || (type == RQ_WRITE && !wbuf && len))
      return lb_err(-EINVAL, "NULL buffer");
    if (off > size || (off == size && len) || (off + len < off))
      return lb_err(-EINVAL, "%s at offset %llu is past the end of image '%s' (%llu bytes)",
                    req_names[type], (unsigned long long)off, img->name,
                    (unsigned long long)size);
    if (modifying && len > size - off)
      return lb_err(-EINVAL, "%s of %llu bytes at %llu reaches past the end of image '%s' "
                    "(%llu bytes)", req_names[type], (unsigned long long)len,
                    (unsigned long long)off, img->name, (unsigned long long)size);
    if (flags & ~1)
      return lb_err(-EINVAL, "unknown flags 0x%x", (unsigned)flags);
  }
  struct img_req *r = calloc(1, sizeof *r);
  if (!r)
    return lb_err(-ENOMEM, "out of memory");
  r->t.fn = req_task;
  r->img = img;
  r->type = type;
  r->off = off;
  r->len = len;
  r->rbuf = rbuf;
  r->wbuf = wbuf;
  r->flags = flags;
  r->cb = cb;
  r->ecb = ecb;
  r->arg = arg;
  r->modifying = modifying;
  if (len == 0 && (type == RQ_READ || type == RQ_WRITE)) {
    /* nothing to do, but the callback must still run on the library thread */
    r->type = RQ_FLUSH;
    r->modifying = false;
  }
  int rc = lb_submit(img->io->c, &r->t);
  if (rc < 0) {
    free(r);
    return lb_err(rc, "cluster not connected or shutting down");
  }
  return 0;
}

LB_API int blk_image_aio_read(blk_image *img, uint64_t off, size_t len, void *buf,
                              blk_callback cb, void *arg)
{
  return req_submit(img, RQ_READ, off, len, buf, NULL, 0, cb, NULL, arg);
}

LB_API int blk_image_aio_write(blk_image *img, uint64_t off, size_t len, const void *buf,
                               int flags, blk_callback cb, void *arg)
{
  /* BLK_WRITE_FUA needs nothing more: acknowledged writes are durable */
  return req_submit(img, RQ_WRITE, off, len, NULL, buf, flags & ~BLK_WRITE_FUA, cb, NULL, arg);
}

LB_API int blk_image_aio_discard(blk_image *img, uint64_t off, uint64_t len, blk_callback cb,
                                 void *arg)
{
  return req_submit(img, RQ_DISCARD, off, len, NULL, NULL, 0, cb, NULL, arg);
}

LB_API int blk_image_aio_write_zeroes(blk_image *img, uint64_t off, uint64_t len, int flags,
                                      blk_callback cb, void *arg)
{
  return req_submit(img, RQ_ZERO, off, len, NULL, NULL, flags, cb, NULL, arg);
}

LB_API int blk_image_aio_flush(blk_image *img, blk_callback cb, void *arg)
{
  return req_submit(img, RQ_FLUSH, 0, 0, NULL, NULL, 0, cb, NULL, arg);
}

LB_API int blk_image_aio_block_status(blk_image *img, uint64_t off, uint64_t len,
                                      blk_extent_callback cb, void *arg)
{
  return req_submit(img, RQ_BSTAT, off, len, NULL, NULL, 0, NULL, cb, arg);
}

/* ---- synchronous forms ---- */

static void sync_cb(void *arg, int64_t result)
{
  lb_sync_done(arg, result, result < 0 ? blk_last_error() : NULL);
}

static int64_t sync_run(blk_image *img, enum req_type type, uint64_t off, uint64_t len,
                        void *rbuf, const void *wbuf, int flags)
{
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous %s from a libblk callback", req_names[type]);
  struct lb_sync s;
  lb_sync_init(&s);
  int64_t r = req_submit(img, type, off, len, rbuf, wbuf, flags, sync_cb, NULL, &s);
  if (r == 0)
    r = lb_sync_wait(&s);
  lb_sync_destroy(&s);
  return r;
}

LB_API int64_t blk_image_read(blk_image *img, uint64_t off, size_t len, void *buf)
{
  return sync_run(img, RQ_READ, off, len, buf, NULL, 0);
}

LB_API int64_t blk_image_write(blk_image *img, uint64_t off, size_t len, const void *buf)
{
  return sync_run(img, RQ_WRITE, off, len, NULL, buf, 0);
}

LB_API int blk_image_discard(blk_image *img, uint64_t off, uint64_t len)
{
  return (int)sync_run(img, RQ_DISCARD, off, len, NULL, NULL, 0);
}

LB_API int blk_image_write_zeroes(blk_image *img, uint64_t off, uint64_t len, int flags)
{
  return (int)sync_run(img, RQ_ZERO, off, len, NULL, NULL, flags);
}

LB_API int blk_image_flush(blk_image *img)
{
  return (int)sync_run(img, RQ_FLUSH, 0, 0, NULL, NULL, 0);
}

void image_io_drain(blk_image *img, struct lb_sync *s)
{
  if (img->inflight == 0)
    lb_sync_done(s, 0, NULL);
  else
    img->drain = s;
}

/* ---- trim (remove / shrink), caller's thread ---- */

struct trim {
  struct lb_task t;
  blk_ioctx *io;
  const struct img_snapc *sc;    /* borrowed */
  Blk__OsdOpType op;             /* OP_REMOVE or OP_SNAPTRIM */
  char id[32];
  uint64_t next, end;            /* objects [next, end) to remove */
  unsigned inflight;
  int err;
  char msg[LB_MSG];
  struct lb_sync s;
};

static void trim_issue(struct trim *tr);

static void trim_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                    uint32_t len)
{
  struct trim *tr = arg;
  tr->inflight--;
  if (err < 0 && err != -ENOENT && !tr->err) {
    tr->err = err;
    snprintf(tr->msg, sizeof tr->msg, "%s data objects of image %s: %s",
             tr->op == BLK__OSD_OP_TYPE__OP_SNAPTRIM ? "trimming snapshots of" : "removing", tr->id,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  }
  trim_issue(tr);
}

static void trim_issue(struct trim *tr)
{
  while (!tr->err && tr->next < tr->end && tr->inflight < TRIM_WINDOW) {
    char name[80];
    image_data_name(tr->id, tr->next++, name, sizeof name);
    struct objecter_req req = { .name = name, .op = tr->op };
    if (tr->sc) {
      req.snap_seq = tr->sc->seq;
      req.snaps = tr->sc->snaps;
      req.n_snaps = tr->sc->n;
    }
    tr->inflight++;
    int r = lb_objecter_op(tr->io, &req, trim_cb, tr);
    if (r < 0) {
      tr->inflight--;
      tr->err = r;
      snprintf(tr->msg, sizeof tr->msg, "out of memory");
    }
  }
  if (tr->inflight == 0 && (tr->err || tr->next >= tr->end))
    lb_sync_done(&tr->s, tr->err, tr->err ? tr->msg : NULL);
}

static void trim_task(struct lb_task *t)
{
  trim_issue((struct trim *)t);
}

static int trim_run(blk_ioctx *io, const char *id, uint64_t first, uint64_t end,
                    const struct img_snapc *sc, Blk__OsdOpType op);

int image_io_snaptrim(blk_ioctx *io, const char *id, uint32_t order, uint64_t size,
                      const struct img_snapc *sc)
{
  uint64_t objsize = 1ull << order;
  return trim_run(io, id, 0, (size + objsize - 1) >> order, sc, BLK__OSD_OP_TYPE__OP_SNAPTRIM);
}

int image_io_trim(blk_ioctx *io, const char *id, uint32_t order, uint64_t from, uint64_t size,
                  const struct img_snapc *sc)
{
  uint64_t objsize = 1ull << order;
  if (from >= size)
    return 0;
  uint64_t first_whole = (from + objsize - 1) >> order;
  uint64_t end = (size + objsize - 1) >> order;
  if (from & (objsize - 1)) {
    /* cut the object the new end falls in */
    char name[80];
    uint64_t keep = from & (objsize - 1);
    image_data_name(id, from >> order, name, sizeof name);
    int r = -EOPNOTSUPP;
    if (!__atomic_load_n(&io->c->no_truncate, __ATOMIC_RELAXED)) {
      /* truncate would create a missing object: only cut existing ones */
      uint64_t osize;
      r = blk_object_stat(io, name, &osize);
      if (r == -ENOENT) {
        lb_clear_err();
        r = 0;
      } else if (r == 0 && osize > keep) {
        struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_TRUNCATE,
                                    .offset = keep };
        if (sc) {
          req.snap_seq = sc->seq;
          req.snaps = sc->snaps;
          req.n_snaps = sc->n;
        }
        r = (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
        if (r == -EOPNOTSUPP)
          __atomic_store_n(&io->c->no_truncate, true, __ATOMIC_RELAXED);
      }
    }
    if (r == -EOPNOTSUPP) {
      uint64_t osize;
      r = blk_object_stat(io, name, &osize);
      if (r == -ENOENT) {
        lb_clear_err();
        r = 0;
      } else if (r == 0 && osize > keep) {
        void *z = calloc(1, osize - keep);
        if (!z)
          return lb_err(-ENOMEM, "out of memory");
        r = blk_object_write(io, name, keep, osize - keep, z);
        free(z);
      }
    }
    if (r < 0)
      return r;
  }
  if (first_whole >= end)
    return 0;
  return trim_run(io, id, first_whole, end, sc, BLK__OSD_OP_TYPE__OP_REMOVE);
}

static int trim_run(blk_ioctx *io, const char *id, uint64_t first_whole, uint64_t end,
                    const struct img_snapc *sc, Blk__OsdOpType op)
{
  if (first_whole >= end)
    return 0;
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous call from a libblk callback");
  struct trim *tr = calloc(1, sizeof *tr);
  if (!tr)
    return lb_err(-ENOMEM, "out of memory");
  tr->t.fn = trim_task;
  tr->io = io;
  tr->sc = sc;
  tr->op = op;
  snprintf(tr->id, sizeof tr->id, "%s", id);
  tr->next = first_whole;
  tr->end = end;
  lb_sync_init(&tr->s);
  int r = lb_submit(io->c, &tr->t);
  if (r == 0)
    r = (int)lb_sync_wait(&tr->s);
  else
    lb_err(r, "cluster not connected");
  lb_sync_destroy(&tr->s);
  free(tr);
  return r;
}
