/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the snapset and the copy-on-write decisions of
 * self-managed snapshots (osd/snap.h, docs/snapshots.md).
 *
 * Snapset (value of SNAP_ATTR on (name, SNAP_DIR)), little-endian:
 *   u8 format (1), u64 seq, u32 n_clones, then per clone (ascending id):
 *   u64 id, u32 n, u64 snaps[n] (ascending: the snap ids it covers).
 * seq is the newest snap context seq that modified the object.  A clone
 * with id C holds the object as it was for every snap id it lists.  The
 * rules:
 *  - write with context (S, snaps) and seq < S: the snaps s of the context
 *    with seq < s were taken since the last change; if any and the head
 *    exists, clone the head to id max(s) covering them.  seq := S.
 *  - read at snap s: s > seq: the head (unchanged since s); else the clone
 *    listing s, or -ENOENT (the object did not exist at s).
 *  - trim with the live snaps: clones listing none of them go; the others
 *    keep only live ids.  With no clone left and no head, the snap
 *    directory goes too (a later write restarts from seq 0, correct since
 *    no snapshot can then need the object).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/util.h"
#include "osd/osd.h"
#include "osd/snap.h"

struct ss_clone {
  uint64_t id;
  uint32_t n;
  uint64_t *snaps;
};

struct snapset {
  uint64_t seq;
  uint32_t n;
  struct ss_clone *clones;
};

static void ss_free(struct snapset *s)
{
  for (uint32_t i = 0; i < s->n; i++)
    free(s->clones[i].snaps);
  free(s->clones);
  memset(s, 0, sizeof *s);
}

static uint64_t rd64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static uint32_t rd32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void wr32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Decode (missing/empty value = empty snapset).  0, -EUCLEAN, -ENOMEM. */
static int ss_decode(const void *val, size_t len, struct snapset *s)
{
  memset(s, 0, sizeof *s);
  if (!val || !len)
    return 0;
  const uint8_t *p = val, *end = p + len;
  if (len < 13 || p[0] != 1)
    return -EUCLEAN;
  s->seq = rd64(p + 1);
  uint32_t n = rd32(p + 9);
  p += 13;
  if (n > len / 12)
    return -EUCLEAN;
  s->clones = calloc(n + 1, sizeof *s->clones);
  if (!s->clones)
    return -ENOMEM;
  for (uint32_t i = 0; i < n; i++) {
    if (end - p < 12)
      goto bad;
    struct ss_clone *c = &s->clones[i];
    c->id = rd64(p);
    c->n = rd32(p + 8);
    p += 12;
    if ((size_t)(end - p) / 8 < c->n)
      goto bad;
    c->snaps = malloc(((size_t)c->n + 1) * 8);
    if (!c->snaps) {
      ss_free(s);
      return -ENOMEM;
    }
    s->n = i + 1;
    for (uint32_t k = 0; k < c->n; k++, p += 8)
      c->snaps[k] = rd64(p);
  }
  s->n = n;
  if (p != end)
    goto bad;
  return 0;
bad:
  ss_free(s);
  return -EUCLEAN;
}

/* Encode into a malloc'd buffer.  0 or -ENOMEM. */
static int ss_encode(const struct snapset *s, uint8_t **out, size_t *len)
{
  size_t n = 13;
  for (uint32_t i = 0; i < s->n; i++)
    n += 12 + 8 * (size_t)s->clones[i].n;
  uint8_t *b = malloc(n), *p = b;
  if (!b)
    return -ENOMEM;
  p[0] = 1;
  wr64(p + 1, s->seq);
  wr32(p + 9, s->n);
  p += 13;
  for (uint32_t i = 0; i < s->n; i++) {
    wr64(p, s->clones[i].id);
    wr32(p + 8, s->clones[i].n);
    p += 12;
    for (uint32_t k = 0; k < s->clones[i].n; k++, p += 8)
      wr64(p, s->clones[i].snaps[k]);
  }
  *out = b;
  *len = n;
  return 0;
}

static bool is_data_write(int op)
{
  switch (op) {
  case BLK__OSD_OP_TYPE__OP_WRITE:
  case BLK__OSD_OP_TYPE__OP_WRITEFULL:
  case BLK__OSD_OP_TYPE__OP_REMOVE:
  case BLK__OSD_OP_TYPE__OP_ZERO:
  case BLK__OSD_OP_TYPE__OP_TRUNCATE:
  case BLK__OSD_OP_TYPE__OP_SETXATTR:
  case BLK__OSD_OP_TYPE__OP_RMXATTR:
  case BLK__OSD_OP_TYPE__OP_OMAP_SET:
  case BLK__OSD_OP_TYPE__OP_OMAP_RM:
    return true;
  default:
    return false;
  }
}

bool snap_needs_plan(const Blk__OsdOp *req)
{
  return req->op == BLK__OSD_OP_TYPE__OP_SNAPTRIM || (req->snap_seq && is_data_write(req->op));
}

const char *snap_bad_args(const Blk__OsdOp *req)
{
  if (req->n_snaps > SNAP_MAX_SNAPS)
    return "too many snapshot ids (at most 4096)";
  for (size_t i = 0; i < req->n_snaps; i++)
    if (!req->snaps[i] || req->snaps[i] > req->snap_seq || req->snaps[i] >= SNAP_DIR)
      return "snapshot ids must be 1..snap_seq";
  if (req->snapid && (req->snapid >= SNAP_DIR))
    return "bad snapshot id";
  if (req->snapid && req->op != BLK__OSD_OP_TYPE__OP_READ &&
      req->op != BLK__OSD_OP_TYPE__OP_STAT && req->op != BLK__OSD_OP_TYPE__OP_MAPEXT &&
      req->op != BLK__OSD_OP_TYPE__OP_GETXATTR)
    return "snapshots are read-only (snapid only on read, stat, mapext, getxattr)";
  if (req->snap_seq >= SNAP_DIR)
    return "bad snap_seq";
  return NULL;
}

static bool in_list(const uint64_t *v, size_t n, uint64_t x)
{
  for (size_t i = 0; i < n; i++)
    if (v[i] == x)
      return true;
  return false;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

void snap_plan_free(struct snap_plan *p)
{
  free(p->remove);
  free(p->ss);
  memset(p, 0, sizeof *p);
}

int snap_plan_make(const Blk__OsdOp *req, bool head_exists, const void *ssv, size_t ss_len,
                   struct snap_plan *out)
{
  memset(out, 0, sizeof *out);
  struct snapset s;
  int r = ss_decode(ssv, ss_len, &s);
  if (r < 0)
    return r;
  bool had_dir = ssv && ss_len;
  if (req->op == BLK__OSD_OP_TYPE__OP_SNAPTRIM) {
    out->remove = calloc(s.n + 1, sizeof *out->remove);
    if (!out->remove) {
      ss_free(&s);
      return -ENOMEM;
    }
    uint32_t keep = 0;
    bool changed = false;
    for (uint32_t i = 0; i < s.n; i++) {
      struct ss_clone *c = &s.clones[i];
      uint32_t live = 0;
      for (uint32_t k = 0; k < c->n; k++)
        if (in_list(req->snaps, req->n_snaps, c->snaps[k]))
          c->snaps[live++] = c->snaps[k];
      changed |= live != c->n;
      c->n = live;
      if (!live) {
        out->remove[out->n_remove++] = c->id;
        free(c->snaps);
      } else {
        s.clones[keep++] = *c;
      }
    }
    s.n = keep;
    if (!s.n && !head_exists && had_dir) {
      out->has_ss = true;   /* remove the directory */
    } else if (changed) {
      out->has_ss = true;
      r = ss_encode(&s, &out->ss, &out->ss_len);
    }
  } else if (s.seq < req->snap_seq) {
    uint64_t *cov = calloc(req->n_snaps + 1, sizeof *cov);
    size_t nc = 0;
    if (!cov) {
      ss_free(&s);
      return -ENOMEM;
    }
    for (size_t i = 0; i < req->n_snaps; i++)
      if (req->snaps[i] > s.seq && !in_list(cov, nc, req->snaps[i]))
        cov[nc++] = req->snaps[i];
    qsort(cov, nc, sizeof *cov, cmp_u64);
    if (head_exists && nc) {
      struct ss_clone *nclones = realloc(s.clones, (s.n + 1) * sizeof *nclones);
      if (!nclones) {
        free(cov);
        ss_free(&s);
        return -ENOMEM;
      }
      s.clones = nclones;
      s.clones[s.n++] = (struct ss_clone){ cov[nc - 1], (uint32_t)nc, cov };
      out->clone = cov[nc - 1];
    } else {
      free(cov);
    }
    s.seq = req->snap_seq;
    bool gone = req->op == BLK__OSD_OP_TYPE__OP_REMOVE;
    out->has_ss = true;
    if (!(gone && s.n == 0))
      r = ss_encode(&s, &out->ss, &out->ss_len);
    else if (!had_dir)
      out->has_ss = false;
  } else if (req->op == BLK__OSD_OP_TYPE__OP_REMOVE && had_dir && s.n == 0) {
    out->has_ss = true;   /* nothing preserved: drop the directory */
  }
  ss_free(&s);
  if (r < 0)
    snap_plan_free(out);
  return r;
}

int snap_txn(store_txn *t, const struct pg *pg, const char *name, const struct snap_plan *p)
{
  struct store_oid head = { pg->pool, pg->id, name, STORE_SNAP_HEAD };
  struct store_oid dir = { pg->pool, pg->id, name, SNAP_DIR };
  int r = 0;
  if (p->clone) {
    struct store_oid dst = { pg->pool, pg->id, name, p->clone };
    r = store_txn_clone(t, &head, &dst);
  }
  for (size_t i = 0; r == 0 && i < p->n_remove; i++) {
    struct store_oid o = { pg->pool, pg->id, name, p->remove[i] };
    /* touch first: a replica or a replay must not fail on a missing one */
    if ((r = store_txn_touch(t, &o)) == 0)
      r = store_txn_remove(t, &o);
  }
  if (r == 0 && p->has_ss) {
    if ((r = store_txn_touch(t, &dir)) == 0)
      r = p->ss_len ? store_txn_setattr(t, &dir, SNAP_ATTR, p->ss, p->ss_len)
                    : store_txn_remove(t, &dir);
  }
  return r;
}

void snap_plan_to_repop(const struct snap_plan *p, Blk__RepOp *ro)
{
  ro->snap_clone = p->clone;
  ro->snap_remove = p->remove;
  ro->n_snap_remove = p->n_remove;
  ro->has_snapset = p->has_ss;
  ro->snapset.data = p->ss;
  ro->snapset.len = p->ss_len;
}

bool snap_plan_from_repop(const Blk__RepOp *ro, struct snap_plan *p)
{
  p->clone = ro->snap_clone;
  p->remove = ro->snap_remove;
  p->n_remove = ro->n_snap_remove;
  p->has_ss = ro->has_snapset;
  p->ss = ro->snapset.data;
  p->ss_len = ro->snapset.len;
  return p->clone || p->n_remove || p->has_ss;
}

int snap_resolve(const void *ssv, size_t ss_len, uint64_t snapid, uint64_t *snap)
{
  struct snapset s;
  int r = ss_decode(ssv, ss_len, &s);
  if (r < 0)
    return r;
  r = -ENOENT;
  if (snapid > s.seq) {
    *snap = STORE_SNAP_HEAD;
    r = 0;
  }
  for (uint32_t i = 0; r < 0 && i < s.n; i++)
    if (in_list(s.clones[i].snaps, s.clones[i].n, snapid)) {
      *snap = s.clones[i].id;
      r = 0;
    }
  ss_free(&s);
  return r;
}

/* ---- recovery ---------------------------------------------------------------- */

void snap_objs_free(struct snap_obj *so, size_t n)
{
  for (size_t i = 0; so && i < n; i++) {
    free(so[i].buf);
    store_kv_free(so[i].attrs, so[i].n_attrs);
  }
  free(so);
}

int snap_list_objs(store *st, uint32_t pool, uint32_t pg, const char *name,
                   struct snap_obj **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  size_t cap = 0;
  uint64_t after = 0;
  for (;;) {
    struct store_list_ent *e = NULL;
    int k = store_list(st, pool, pg, name, after, 16, &e);
    if (k < 0) {
      snap_objs_free(*out, *n);
      *out = NULL;
      *n = 0;
      return k;
    }
    bool more = k == 16;
    for (int i = 0; i < k; i++) {
      if (strcmp(e[i].name, name) || e[i].snap == STORE_SNAP_HEAD) {
        more = false;
        break;
      }
      if (*n == cap) {
        struct snap_obj *x = realloc(*out, (cap ? cap * 2 : 4) * sizeof *x);
        if (!x) {
          store_list_free(e, k);
          snap_objs_free(*out, *n);
          *out = NULL;
          *n = 0;
          return -ENOMEM;
        }
        *out = x;
        cap = cap ? cap * 2 : 4;
      }
      memset(&(*out)[*n], 0, sizeof **out);
      (*out)[(*n)++].snap = e[i].snap;
      after = e[i].snap;
    }
    store_list_free(e, k);
    if (!more)
      return 0;
  }
}

void snap_pack_free(struct snap_pack *pk)
{
  free(pk->data);
  free(pk->arr);
  free(pk->elems);
  free(pk->kv);
  free(pk->kvp);
  memset(pk, 0, sizeof *pk);
}

int snap_pack(const uint8_t *head, uint64_t head_size, const struct snap_obj *so, size_t n,
              struct snap_pack *pk)
{
  memset(pk, 0, sizeof *pk);
  uint64_t total = head_size;
  size_t nkv = 0;
  for (size_t i = 0; i < n; i++)
    if (!so[i].gone) {
      total += so[i].size;
      nkv += so[i].n_attrs;
    }
  pk->data = malloc(total ? total : 1);
  pk->arr = calloc(n + 1, sizeof *pk->arr);
  pk->elems = calloc(n + 1, sizeof *pk->elems);
  pk->kv = calloc(nkv + 1, sizeof *pk->kv);
  pk->kvp = calloc(nkv + 1, sizeof *pk->kvp);
  if (!pk->data || !pk->arr || !pk->elems || !pk->kv || !pk->kvp) {
    snap_pack_free(pk);
    return -ENOMEM;
  }
  if (head_size)
    memcpy(pk->data, head, head_size);
  uint64_t off = head_size;
  size_t kvi = 0;
  for (size_t i = 0; i < n; i++) {
    if (so[i].gone)
      continue;
    Blk__PgSnapObject *e = &pk->elems[pk->n];
    blk__pg_snap_object__init(e);
    e->snap = so[i].snap;
    e->size = so[i].size;
    if (so[i].size)
      memcpy(pk->data + off, so[i].buf, so[i].size);
    off += so[i].size;
    e->attrs = &pk->kvp[kvi];
    e->n_attrs = so[i].n_attrs;
    for (size_t a = 0; a < so[i].n_attrs; a++, kvi++) {
      blk__pg_kv__init(&pk->kv[kvi]);
      pk->kv[kvi].key = so[i].attrs[a].key;
      pk->kv[kvi].value.data = so[i].attrs[a].val;
      pk->kv[kvi].value.len = so[i].attrs[a].len;
      pk->kvp[kvi] = &pk->kv[kvi];
    }
    pk->arr[pk->n++] = e;
  }
  pk->total = total;
  return 0;
}

bool snap_pgobj_data_ok(const Blk__PgObject *o, const uint8_t *data, uint64_t len)
{
  uint64_t want = o->exists ? o->size : 0;
  for (size_t i = 0; i < o->n_snapobjs; i++) {
    if (o->snapobjs[i]->snap == 0 || o->snapobjs[i]->snap == STORE_SNAP_HEAD ||
        o->snapobjs[i]->size > UINT64_MAX - want)
      return false;
    want += o->snapobjs[i]->size;
  }
  return want == len && crc32c(0, data, len) == o->data_crc;
}

int snap_install_txn(store_txn *t, struct pg *pg, const char *name, Blk__PgSnapObject **so,
                     size_t n, const uint8_t *clone_data)
{
  struct snap_obj *old = NULL;
  size_t n_old = 0;
  int r = snap_list_objs(pg->osd->st, pg->pool, pg->id, name, &old, &n_old);
  for (size_t i = 0; r == 0 && i < n_old; i++) {
    struct store_oid o = { pg->pool, pg->id, name, old[i].snap };
    r = store_txn_remove(t, &o);
  }
  snap_objs_free(old, n_old);
  uint64_t off = 0;
  for (size_t i = 0; r == 0 && i < n; i++) {
    struct store_oid o = { pg->pool, pg->id, name, so[i]->snap };
    r = store_txn_touch(t, &o);
    if (r == 0 && so[i]->size)
      r = store_txn_write(t, &o, 0, so[i]->size, clone_data + off);
    off += so[i]->size;
    for (size_t a = 0; r == 0 && a < so[i]->n_attrs; a++)
      r = store_txn_setattr(t, &o, so[i]->attrs[a]->key, so[i]->attrs[a]->value.data,
                            so[i]->attrs[a]->value.len);
  }
  return r;
}
