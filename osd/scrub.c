/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: scrub, deep scrub and repair of a PG (docs/osd.md "Scrub").
 *
 *  - The primary of an active+clean PG scrubs it in chunks: every acting
 *    member (the primary locally, the others by MSG_PG_SCRUB_MAP) lists up
 *    to osd_scrub_chunk objects after the cursor and returns a scrub map:
 *    per object its size, version ("@ver"), crc32c over its xattrs and
 *    over its omap and, for a deep scrub, over all of its data (a block
 *    whose stored crc does not match makes the read fail: err -EBADMSG).
 *    The chunk ends at the smallest last name of the members that filled
 *    their map; entries past it belong to the next chunk.
 *  - Client I/O is never stopped for a chunk: member maps are requested on
 *    the same connections as RepOps, so they see every write assigned
 *    before the chunk started; if the PG log shows a write to a name of
 *    the chunk assigned after it started, the chunk is scrubbed again.
 *  - Each object's copies are compared.  The authoritative copy: among the
 *    copies that could be read (a copy failing its crc never is), the
 *    largest group of identical copies whose version (or absence) agrees
 *    with the newest PG log entry of the object, if the log has one; ties
 *    go to the group holding the primary's copy.  Every other copy is
 *    inconsistent: logged with PG, object and OSD, counted, and the PG
 *    reports "+inconsistent" until a scrub finds it clean.
 *  - Repair (a deep scrub that also repairs): for each inconsistent object
 *    of a chunk, client ops on it wait, its authoritative copy is pulled
 *    (MSG_PG_PULL, from the primary itself too) and pushed whole
 *    (MSG_PG_PUSH, the recovery install) to the bad members; then the
 *    chunk is scrubbed again to verify.
 *  - Scheduling: one scrub per OSD at a time; a PG is scrubbed every
 *    osd_scrub_interval and deep-scrubbed every osd_deep_scrub_interval
 *    (counted from when this OSD became its primary, or its last scrub),
 *    or on demand (MSG_PG_SCRUB_CMD from `blkctl pg`), whose reply is sent
 *    when the scrub is over.
 * Everything runs on the OSD's loop thread.  A job belongs to its PG
 * (pg->scrub); asynchronous callbacks find it again by (pool, pg, seq)
 * and drop stale answers.  Store callbacks are counted in
 * pg_store_pending so osd_stop drains them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"

#define SCRUB_READ_STEP (1u << 20)
#define SCRUB_MAX_ERRORS 32
#define SCRUB_MAX_RETRIES 50
#define SCRUB_RETRY_MS 10000    /* a periodic scrub after an aborted one */

/* One object of a scrub map. */
struct sobj {
  char *name;                   /* malloc'd */
  uint64_t snap;
  uint64_t size;
  struct pg_ver ver;
  uint32_t attr_crc, omap_crc, data_crc;
  int err;
};

/* A scrub map being built from the local store (primary or member). */
struct smap_build {
  struct osd *osd;
  uint32_t pool, pgid;
  bool deep;
  struct sobj *objs;
  size_t n, i;
  struct store_stat st;
  struct store_kv *kv;
  size_t n_kv;
  char *omap_after;
  uint8_t *buf;
  uint64_t off;
  uint64_t bytes;               /* data bytes read */
  /* completion: a member answers conn/tid; the primary's own map goes to
   * its job (seq) */
  msgr_conn *conn;
  uint64_t tid;
  uint64_t seq;
};

struct waiter {
  struct waiter *next;
  msgr_conn *conn;              /* reference */
  uint64_t tid;
};

struct rep_item {
  char *name;
  int auth;                     /* acting index of the authoritative copy */
  uint32_t targets;             /* acting indices to install on */
};

struct scrub {
  int64_t since_ms;             /* monotonic: primary since / last scrub */
  int64_t deep_since_ms;
  int64_t not_before_ms;        /* no periodic scrub before (after an abort) */
  int64_t last_scrub_wall, last_deep_wall;
  uint32_t inconsistent;        /* from the last finished scrub */
  bool incons_deep;             /* ... found by a deep scrub */
  char *errors[SCRUB_MAX_ERRORS];
  size_t n_errors;
  uint64_t objects, bytes;
  int64_t duration_ms;
  uint32_t repaired;
  char state[96];
  /* requested on demand (answered when the next scrub of that kind ends) */
  bool want, want_deep, want_repair;
  struct waiter *waiters;
  struct waiter *job_waiters;   /* answered when the running job ends */
  /* the running job (NULL when idle) */
  bool running, deep, repair, verifying;
  uint64_t seq;
  int64_t start_ms;
  char *cursor;                 /* chunk is (cursor, end]; NULL = first */
  struct pg_ver chunk_start;
  int pending, retries;
  bool failed;
  struct sobj *maps[PGMAP_MAX_SIZE];
  size_t n_map[PGMAP_MAX_SIZE];
  bool full[PGMAP_MAX_SIZE];
  /* results of this run */
  uint32_t run_incons;
  char *run_errors[SCRUB_MAX_ERRORS];
  size_t run_n_errors;
  uint64_t run_objects, run_bytes;
  uint32_t run_repaired;
  /* repair of the current chunk */
  struct rep_item *items;
  size_t n_items;
  int rep_pending;
};

static uint64_t scrub_seq;
static bool scrub_busy;         /* one job per OSD */

static struct scrub *scrub_of(struct pg *pg)
{
  if (!pg->scrub) {
    pg->scrub = calloc(1, sizeof *pg->scrub);
    if (pg->scrub)
      pg->scrub->since_ms = pg->scrub->deep_since_ms = util_now_ms();
  }
  return pg->scrub;
}

static void sobjs_free(struct sobj *o, size_t n)
{
  for (size_t i = 0; o && i < n; i++)
    free(o[i].name);
  free(o);
}

static int sobj_cmp(const struct sobj *a, const struct sobj *b)
{
  int c = strcmp(a->name, b->name);
  if (c)
    return c;
  return a->snap < b->snap ? -1 : a->snap > b->snap;
}

/* ---- building a scrub map from the local store -------------------------------------- */

static void build_next(struct smap_build *b);
static void build_finish(struct smap_build *b, int err);

static void build_obj_done(struct smap_build *b, int err)
{
  struct sobj *o = &b->objs[b->i];
  if (err < 0 && !o->err)
    o->err = err;
  free(b->buf);
  b->buf = NULL;
  store_kv_free(b->kv, b->n_kv);
  b->kv = NULL;
  b->n_kv = 0;
  free(b->omap_after);
  b->omap_after = NULL;
  b->i++;
  build_next(b);
}

static void build_read_cb(void *arg, int result)
{
  struct smap_build *b = arg;
  pg_store_pending--;
  struct sobj *o = &b->objs[b->i];
  if (result < 0) {
    build_obj_done(b, result);
    return;
  }
  uint64_t n = o->size - b->off < SCRUB_READ_STEP ? o->size - b->off : SCRUB_READ_STEP;
  o->data_crc = crc32c(o->data_crc, b->buf, n);
  b->off += n;
  b->bytes += n;
  if (b->off >= o->size) {
    build_obj_done(b, 0);
    return;
  }
  n = o->size - b->off < SCRUB_READ_STEP ? o->size - b->off : SCRUB_READ_STEP;
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_read(b->osd->st, &oid, b->off, n, b->buf, build_read_cb, b);
}

static void build_data(struct smap_build *b)
{
  struct sobj *o = &b->objs[b->i];
  if (!b->deep || o->size == 0) {
    build_obj_done(b, 0);
    return;
  }
  b->buf = malloc(o->size < SCRUB_READ_STEP ? o->size : SCRUB_READ_STEP);
  if (!b->buf) {
    build_obj_done(b, -ENOMEM);
    return;
  }
  b->off = 0;
  uint64_t n = o->size < SCRUB_READ_STEP ? o->size : SCRUB_READ_STEP;
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_read(b->osd->st, &oid, 0, n, b->buf, build_read_cb, b);
}

static void kv_crc(uint32_t *crc, const struct store_kv *kv, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    uint8_t l[4];
    put_le32(l, (uint32_t)strlen(kv[i].key));
    *crc = crc32c(*crc, l, 4);
    *crc = crc32c(*crc, kv[i].key, strlen(kv[i].key));
    put_le32(l, (uint32_t)kv[i].len);
    *crc = crc32c(*crc, l, 4);
    *crc = crc32c(*crc, kv[i].val, kv[i].len);
  }
}

static void build_omap_cb(void *arg, int result)
{
  struct smap_build *b = arg;
  pg_store_pending--;
  struct sobj *o = &b->objs[b->i];
  if (result < 0) {
    build_obj_done(b, result);
    return;
  }
  kv_crc(&o->omap_crc, b->kv, b->n_kv);
  if (b->n_kv == 0) {
    build_data(b);
    return;
  }
  free(b->omap_after);
  b->omap_after = strdup(b->kv[b->n_kv - 1].key);
  store_kv_free(b->kv, b->n_kv);
  b->kv = NULL;
  b->n_kv = 0;
  if (!b->omap_after) {
    build_obj_done(b, -ENOMEM);
    return;
  }
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_omap_range(b->osd->st, &oid, b->omap_after, 256, &b->kv, &b->n_kv, build_omap_cb, b);
}

static void build_attrs_cb(void *arg, int result)
{
  struct smap_build *b = arg;
  pg_store_pending--;
  struct sobj *o = &b->objs[b->i];
  if (result < 0) {
    build_obj_done(b, result);
    return;
  }
  for (size_t i = 0; i < b->n_kv; i++)
    if (!strcmp(b->kv[i].key, PG_VER_ATTR) && b->kv[i].len == 16) {
      o->ver.epoch = get_le64(b->kv[i].val);
      o->ver.v = get_le64((const uint8_t *)b->kv[i].val + 8);
    }
  kv_crc(&o->attr_crc, b->kv, b->n_kv);
  store_kv_free(b->kv, b->n_kv);
  b->kv = NULL;
  b->n_kv = 0;
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_omap_range(b->osd->st, &oid, NULL, 256, &b->kv, &b->n_kv, build_omap_cb, b);
}

static void build_stat_cb(void *arg, int result)
{
  struct smap_build *b = arg;
  pg_store_pending--;
  struct sobj *o = &b->objs[b->i];
  if (result < 0) {
    build_obj_done(b, result);
    return;
  }
  o->size = b->st.size;
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_attrs(b->osd->st, &oid, &b->kv, &b->n_kv, build_attrs_cb, b);
}

static void build_next(struct smap_build *b)
{
  if (b->i >= b->n) {
    build_finish(b, 0);
    return;
  }
  struct sobj *o = &b->objs[b->i];
  struct store_oid oid = { b->pool, b->pgid, o->name, o->snap };
  pg_store_pending++;
  store_stat(b->osd->st, &oid, &b->st, build_stat_cb, b);
}

/* List up to max client objects after `after` (NULL = first) and start
 * building their map.  Takes b; build_finish runs (later or now). */
static void build_start(struct smap_build *b, const char *after, unsigned max)
{
  size_t cap = max;
  b->objs = calloc(cap ? cap : 1, sizeof *b->objs);
  if (!b->objs) {
    build_finish(b, -ENOMEM);
    return;
  }
  char *cur = after && *after ? strdup(after) : NULL;
  uint64_t cur_snap = STORE_SNAP_HEAD;
  bool first = true;
  while (b->n < max) {
    struct store_list_ent *ents = NULL;
    int n = store_list(b->osd->st, b->pool, b->pgid, cur, cur ? cur_snap : 0, max, &ents);
    if (n < 0) {
      free(cur);
      build_finish(b, n);
      return;
    }
    if (n == 0) {
      store_list_free(ents, n);
      break;
    }
    for (int i = 0; i < n && b->n < max; i++) {
      /* the start is exclusive of `after` and every snap of it */
      if (first && after && *after && !strcmp(ents[i].name, after))
        continue;
      if (ents[i].name[0] == '@')
        continue;             /* PG meta and internal objects */
      struct sobj *o = &b->objs[b->n];
      o->name = strdup(ents[i].name);
      o->snap = ents[i].snap;
      if (!o->name) {
        store_list_free(ents, n);
        free(cur);
        build_finish(b, -ENOMEM);
        return;
      }
      b->n++;
    }
    first = false;
    free(cur);
    cur = strdup(ents[n - 1].name);
    cur_snap = ents[n - 1].snap;
    store_list_free(ents, n);
    if (!cur) {
      build_finish(b, -ENOMEM);
      return;
    }
  }
  free(cur);
  build_next(b);
}

static void job_member_map(struct pg *pg, int idx, struct sobj *objs, size_t n, int err);

static void build_finish(struct smap_build *b, int err)
{
  if (b->conn) {
    /* member: answer the primary */
    Blk__ScrubMap m = BLK__SCRUB_MAP__INIT;
    Blk__ScrubObj *es = calloc(b->n + 1, sizeof *es);
    Blk__ScrubObj **arr = calloc(b->n + 1, sizeof *arr);
    Blk__PgVersion *vs = calloc(b->n + 1, sizeof *vs);
    if (!es || !arr || !vs)
      err = -ENOMEM;
    m.err = err;
    m.epoch = b->osd->epoch;
    if (err == 0) {
      for (size_t i = 0; i < b->n; i++) {
        blk__scrub_obj__init(&es[i]);
        blk__pg_version__init(&vs[i]);
        es[i].name = b->objs[i].name;
        es[i].snap = b->objs[i].snap;
        es[i].size = b->objs[i].size;
        vs[i].epoch = b->objs[i].ver.epoch;
        vs[i].v = b->objs[i].ver.v;
        es[i].version = &vs[i];
        es[i].attr_crc = b->objs[i].attr_crc;
        es[i].omap_crc = b->objs[i].omap_crc;
        es[i].data_crc = b->objs[i].data_crc;
        es[i].err = b->objs[i].err;
        arr[i] = &es[i];
      }
      m.objs = arr;
      m.n_objs = b->n;
    }
    struct msgr_frame req = { .tid = b->tid };
    msgr_reply_pb(b->conn, &req, MSG_PG_SCRUB_MAP, (const ProtobufCMessage *)&m, NULL, 0);
    free(es);
    free(arr);
    free(vs);
    msgr_conn_put(b->conn);
    sobjs_free(b->objs, b->n);
  } else {
    /* primary: its own map */
    struct pg *pg = pg_get(b->osd, b->pool, b->pgid, false);
    if (pg && pg->scrub && pg->scrub->running && pg->scrub->seq == b->seq) {
      pg->scrub->run_bytes += b->bytes;
      job_member_map(pg, 0, b->objs, b->n, err);
    } else {
      sobjs_free(b->objs, b->n);
    }
  }
  free(b);
}

/* Member side of MSG_PG_SCRUB_MAP. */
void scrub_on_map_req(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__ScrubMapReq *q = blk__scrub_map_req__unpack(NULL, f->payload_len, f->payload);
  struct smap_build *b = q ? calloc(1, sizeof *b) : NULL;
  if (!b) {
    Blk__ScrubMap m = BLK__SCRUB_MAP__INIT;
    m.err = q ? -ENOMEM : -EINVAL;
    m.epoch = osd->epoch;
    msgr_reply_pb(c, f, MSG_PG_SCRUB_MAP, (const ProtobufCMessage *)&m, NULL, 0);
    if (q)
      blk__scrub_map_req__free_unpacked(q, NULL);
    return;
  }
  if (!osd->map || q->epoch > osd->epoch)
    monc_want_epoch(osd->monc, q->epoch);
  b->osd = osd;
  b->pool = q->pool;
  b->pgid = q->pg;
  b->deep = q->deep;
  b->conn = msgr_conn_get(c);
  b->tid = f->tid;
  unsigned max = (unsigned)config_get_int(osd->cfg, "osd_scrub_chunk");
  build_start(b, q->start_after, max ? max : 64);
  blk__scrub_map_req__free_unpacked(q, NULL);
}

/* ---- the primary's job ----------------------------------------------------------------- */

static bool pg_clean(const struct pg *pg)
{
  return pg->primary && pg->state == PG_ACTIVE && !pg->bg && !pg->peering &&
         pg->n_acting >= pg->size && pg->n_acting > 0;
}

/* The state with "+inconsistent" and, if show_scrub, "+scrubbing..." (not
 * sent in PgStats: a scrub alone must not make the cluster unhealthy). */
static const char *state_str(struct pg *pg, bool show_scrub)
{
  struct scrub *s = pg->scrub;
  if (!s || (!(show_scrub && s->running) && !s->inconsistent))
    return peering_state(pg);
  bool run = show_scrub && s->running;
  snprintf(s->state, sizeof s->state, "%s%s%s%s", peering_state(pg),
           run ? (s->deep ? "+scrubbing+deep" : "+scrubbing") : "",
           run && s->repair ? "+repair" : "", s->inconsistent ? "+inconsistent" : "");
  return s->state;
}

const char *scrub_pg_state(struct pg *pg)
{
  return state_str(pg, false);
}

static void errors_clear(char **e, size_t *n)
{
  for (size_t i = 0; i < *n; i++)
    free(e[i]);
  *n = 0;
}

static void result_fill(struct pg *pg, Blk__PgScrubResult *r)
{
  struct scrub *s = pg->scrub;
  r->state = (char *)state_str(pg, true);
  if (!s)
    return;
  r->last_scrub_ms = s->last_scrub_wall;
  r->last_deep_scrub_ms = s->last_deep_wall;
  r->inconsistent = s->inconsistent;
  r->repaired = s->repaired;
  r->errors = s->errors;
  r->n_errors = s->n_errors;
  r->objects = s->objects;
  r->bytes = s->bytes;
  r->duration_ms = s->duration_ms;
}

static void answer_waiters(struct pg *pg, struct waiter **list, int err, const char *msg)
{
  while (*list) {
    struct waiter *w = *list;
    *list = w->next;
    Blk__PgScrubResult r = BLK__PG_SCRUB_RESULT__INIT;
    r.err = err;
    r.message = (char *)(msg ? msg : "");
    result_fill(pg, &r);
    struct msgr_frame req = { .tid = w->tid };
    msgr_reply_pb(w->conn, &req, MSG_PG_SCRUB_CMD, (const ProtobufCMessage *)&r, NULL, 0);
    msgr_conn_put(w->conn);
    free(w);
  }
}

static void items_free(struct scrub *s)
{
  for (size_t i = 0; i < s->n_items; i++)
    free(s->items[i].name);
  free(s->items);
  s->items = NULL;
  s->n_items = 0;
}

static void chunk_reset(struct scrub *s)
{
  for (size_t i = 0; i < PGMAP_MAX_SIZE; i++) {
    sobjs_free(s->maps[i], s->n_map[i]);
    s->maps[i] = NULL;
    s->n_map[i] = 0;
    s->full[i] = false;
  }
}

/* End the job: ok = it covered the whole PG. */
static void job_end(struct pg *pg, bool ok, const char *why)
{
  struct scrub *s = pg->scrub;
  chunk_reset(s);
  items_free(s);
  free(s->cursor);
  s->cursor = NULL;
  s->running = false;
  scrub_busy = false;
  s->seq = 0;
  int64_t now = util_now_ms();
  if (ok) {
    if (s->deep || !s->incons_deep || s->run_incons) {
      errors_clear(s->errors, &s->n_errors);
      memcpy(s->errors, s->run_errors, sizeof s->errors);
      s->n_errors = s->run_n_errors;
      s->run_n_errors = 0;
    } else {
      errors_clear(s->run_errors, &s->run_n_errors);
    }
    /* a light scrub cannot see data damage: it does not clear what a
     * deep scrub found */
    if (s->deep || !s->incons_deep || s->run_incons) {
      s->inconsistent = s->run_incons;
      s->incons_deep = s->deep && s->run_incons;
    }
    s->objects = s->run_objects;
    s->bytes = s->run_bytes;
    s->duration_ms = now - s->start_ms;
    s->repaired = s->run_repaired;
    s->since_ms = now;
    s->last_scrub_wall = util_wall_ms();
    if (s->deep) {
      s->deep_since_ms = now;
      s->last_deep_wall = s->last_scrub_wall;
    }
    log_info("scrub", "%u.%x: %s%s done: %llu objects, %u inconsistent%s, %lld ms", pg->pool,
             pg->id, s->deep ? "deep scrub" : "scrub", s->repair ? " (repair)" : "",
             (unsigned long long)s->objects, s->inconsistent,
             s->repair ? "" : "", (long long)s->duration_ms);
  } else {
    errors_clear(s->run_errors, &s->run_n_errors);
    s->not_before_ms = now + SCRUB_RETRY_MS;
    log_warn("scrub", "%u.%x: scrub aborted: %s", pg->pool, pg->id, why);
  }
  pg->osd->stats_dirty = true;
  answer_waiters(pg, &s->job_waiters, ok ? 0 : -EAGAIN, ok ? NULL : why);
  pg_wake(pg);
}

static void chunk_start(struct pg *pg);

static void map_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  uint64_t *ctx = arg;   /* [osd*, pool<<32|pg, seq, idx] */
  struct osd *osd = (struct osd *)(uintptr_t)ctx[0];
  if (err != -ECANCELED) {
    struct pg *pg = pg_get(osd, (uint32_t)(ctx[1] >> 32), (uint32_t)ctx[1], false);
    if (pg && pg->scrub && pg->scrub->running && pg->scrub->seq == ctx[2]) {
      Blk__ScrubMap *m = err ? NULL : blk__scrub_map__unpack(NULL, f->payload_len, f->payload);
      struct sobj *objs = NULL;
      size_t n = 0;
      int e = err ? err : !m ? -EPROTO : m->err;
      if (e == 0) {
        objs = calloc(m->n_objs + 1, sizeof *objs);
        if (!objs)
          e = -ENOMEM;
        for (size_t i = 0; objs && i < m->n_objs; i++) {
          const Blk__ScrubObj *so = m->objs[i];
          struct sobj *o = &objs[n];
          if (!(o->name = strdup(so->name))) {
            e = -ENOMEM;
            break;
          }
          n++;
          o->snap = so->snap;
          o->size = so->size;
          if (so->version) {
            o->ver.epoch = so->version->epoch;
            o->ver.v = so->version->v;
          }
          o->attr_crc = so->attr_crc;
          o->omap_crc = so->omap_crc;
          o->data_crc = so->data_crc;
          o->err = so->err;
        }
      }
      if (m)
        blk__scrub_map__free_unpacked(m, NULL);
      job_member_map(pg, (int)ctx[3], objs, n, e);
    }
  }
  free(ctx);
}

static void chunk_start(struct pg *pg)
{
  struct osd *osd = pg->osd;
  struct scrub *s = pg->scrub;
  chunk_reset(s);
  s->chunk_start = pg->last;
  s->failed = false;
  s->pending = (int)pg->n_acting;
  s->seq = ++scrub_seq;
  unsigned max = (unsigned)config_get_int(osd->cfg, "osd_scrub_chunk");
  if (!max)
    max = 64;
  for (size_t i = 1; i < pg->n_acting; i++) {
    Blk__ScrubMapReq q = BLK__SCRUB_MAP_REQ__INIT;
    q.pool = pg->pool;
    q.pg = pg->id;
    q.epoch = osd->epoch;
    q.start_after = s->cursor ? s->cursor : "";
    q.end = "";
    q.deep = s->deep;
    uint64_t *ctx = malloc(4 * sizeof *ctx);
    msgr_conn *pc = osd_peer_conn(osd, pg->acting[i]);
    if (ctx) {
      ctx[0] = (uint64_t)(uintptr_t)osd;
      ctx[1] = (uint64_t)pg->pool << 32 | pg->id;
      ctx[2] = s->seq;
      ctx[3] = i;
    }
    if (!ctx || !pc ||
        msgr_call_pb(pc, MSG_PG_SCRUB_MAP, (const ProtobufCMessage *)&q, NULL, 0,
                     (int)osd->op_timeout * 6, map_reply_cb, ctx) < 0) {
      free(ctx);
      s->failed = true;
      s->pending--;
    }
  }
  struct smap_build *b = calloc(1, sizeof *b);
  if (!b) {
    s->failed = true;
    job_member_map(pg, 0, NULL, 0, -ENOMEM);
    return;
  }
  b->osd = osd;
  b->pool = pg->pool;
  b->pgid = pg->id;
  b->deep = s->deep;
  b->seq = s->seq;
  build_start(b, s->cursor, max);
}

static void add_error(struct scrub *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(struct scrub *s, const char *fmt, ...)
{
  char line[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_err("scrub", "%s", line);
  if (s->run_n_errors < SCRUB_MAX_ERRORS) {
    char *d = strdup(line);
    if (d)
      s->run_errors[s->run_n_errors++] = d;
  }
}

/* The newest log entry naming name (NULL if none in the log). */
static const struct pg_log_ent *log_newest(struct pg *pg, const char *name)
{
  for (size_t i = pg->log_n; i-- > 0;) {
    const struct pg_log_ent *e = pg_log_at(pg, i);
    if (!strcmp(e->name, name))
      return e;
  }
  return NULL;
}

/* A write to a name in (lo, hi] (hi NULL = no bound) since ver? */
static bool chunk_written(struct pg *pg, struct pg_ver since, const char *lo, const char *hi)
{
  if (pg_ver_cmp(pg->last, since) == 0)
    return false;
  for (size_t i = pg->log_n; i-- > 0;) {
    const struct pg_log_ent *e = pg_log_at(pg, i);
    if (pg_ver_cmp(e->ver, since) <= 0)
      return false;
    if ((!lo || strcmp(e->name, lo) > 0) && (!hi || strcmp(e->name, hi) <= 0))
      return true;
  }
  return true;   /* the log no longer reaches back: assume so */
}

static bool same_copy(const struct sobj *a, const struct sobj *b, bool deep)
{
  if (!a || !b)
    return a == b;
  return a->size == b->size && pg_ver_cmp(a->ver, b->ver) == 0 && a->attr_crc == b->attr_crc &&
         a->omap_crc == b->omap_crc && (!deep || a->data_crc == b->data_crc);
}

static void describe(char *buf, size_t n, const struct sobj *c, const struct sobj *a, bool deep)
{
  if (c->err) {
    snprintf(buf, n, "read error: %s", strerror(-c->err));
  } else if (!a) {
    snprintf(buf, n, "present (size %llu) but should not exist", (unsigned long long)c->size);
  } else if (c->size != a->size) {
    snprintf(buf, n, "size %llu != %llu", (unsigned long long)c->size,
             (unsigned long long)a->size);
  } else if (pg_ver_cmp(c->ver, a->ver)) {
    snprintf(buf, n, "version %llu'%llu != %llu'%llu", (unsigned long long)c->ver.epoch,
             (unsigned long long)c->ver.v, (unsigned long long)a->ver.epoch,
             (unsigned long long)a->ver.v);
  } else if (c->attr_crc != a->attr_crc) {
    snprintf(buf, n, "xattr digest 0x%08x != 0x%08x", c->attr_crc, a->attr_crc);
  } else if (c->omap_crc != a->omap_crc) {
    snprintf(buf, n, "omap digest 0x%08x != 0x%08x", c->omap_crc, a->omap_crc);
  } else if (deep) {
    snprintf(buf, n, "data digest 0x%08x != 0x%08x", c->data_crc, a->data_crc);
  } else {
    snprintf(buf, n, "differs");
  }
}

static void repair_start(struct pg *pg);

/* All member maps of the chunk are in: compare. */
static void chunk_compare(struct pg *pg)
{
  struct scrub *s = pg->scrub;
  size_t na = pg->n_acting;
  /* the chunk ends at the smallest last name of a full map */
  const struct sobj *end = NULL;
  for (size_t i = 0; i < na; i++)
    if (s->full[i] && s->n_map[i] && (!end || sobj_cmp(&s->maps[i][s->n_map[i] - 1], end) < 0))
      end = &s->maps[i][s->n_map[i] - 1];
  char *end_name = end ? strdup(end->name) : NULL;
  if (end && !end_name) {
    job_end(pg, false, "out of memory");
    return;
  }
  if (chunk_written(pg, s->chunk_start, s->cursor, end_name)) {
    free(end_name);
    log_info("scrub", "%u.%x: the chunk after '%s' was written while scrubbed: again", pg->pool,
             pg->id, s->cursor ? s->cursor : "");
    if (++s->retries > SCRUB_MAX_RETRIES) {
      job_end(pg, false, "objects of the chunk kept being written");
      return;
    }
    chunk_start(pg);
    return;
  }
  s->retries = 0;
  size_t pos[PGMAP_MAX_SIZE] = { 0 };
  items_free(s);
  uint32_t incons = 0;
  uint64_t chunk_objects = 0;
  for (;;) {
    /* the smallest next object over all maps, within the chunk */
    const struct sobj *next = NULL;
    for (size_t i = 0; i < na; i++)
      if (pos[i] < s->n_map[i] && (!next || sobj_cmp(&s->maps[i][pos[i]], next) < 0))
        next = &s->maps[i][pos[i]];
    if (!next || (end && sobj_cmp(next, end) > 0))
      break;
    const struct sobj *copy[PGMAP_MAX_SIZE];
    struct sobj key = *next;
    for (size_t i = 0; i < na; i++) {
      copy[i] = NULL;
      if (pos[i] < s->n_map[i] && sobj_cmp(&s->maps[i][pos[i]], &key) == 0)
        copy[i] = &s->maps[i][pos[i]++];
    }
    chunk_objects++;
    /* expected state from the log (head objects only) */
    const struct pg_log_ent *le = key.snap == STORE_SNAP_HEAD ? log_newest(pg, key.name) : NULL;
    bool known = le != NULL;
    bool expect_absent = le && le->op == BLK__OSD_OP_TYPE__OP_REMOVE;
    /* groups of identical readable copies */
    int best = -1, best_n = 0;
    bool best_match = false, best_primary = false;
    for (size_t i = 0; i < na; i++) {
      if (copy[i] && copy[i]->err)
        continue;
      int cnt = 0;
      bool has_primary = false;
      for (size_t k = 0; k < na; k++)
        if (!(copy[k] && copy[k]->err) && same_copy(copy[i], copy[k], s->deep)) {
          cnt++;
          has_primary |= k == 0;
        }
      bool match = known && (expect_absent ? copy[i] == NULL
                                           : copy[i] && pg_ver_cmp(copy[i]->ver, le->ver) == 0);
      bool better = best < 0 || (match && !best_match) ||
                    (match == best_match && (cnt > best_n ||
                                             (cnt == best_n && has_primary && !best_primary)));
      if (better) {
        best = (int)i;
        best_n = cnt;
        best_match = match;
        best_primary = has_primary;
      }
    }
    const struct sobj *auth = best >= 0 ? copy[best] : NULL;
    uint32_t bad = 0;
    for (size_t i = 0; i < na; i++)
      if (best < 0 || (copy[i] && copy[i]->err) || !same_copy(copy[i], auth, s->deep))
        bad |= 1u << i;
    if (!bad)
      continue;
    incons++;
    char snapbuf[32] = "";
    if (key.snap != STORE_SNAP_HEAD)
      snprintf(snapbuf, sizeof snapbuf, " (snap %llu)", (unsigned long long)key.snap);
    for (size_t i = 0; i < na; i++) {
      if (!(bad & (1u << i)))
        continue;
      char d[160];
      if (!copy[i])
        snprintf(d, sizeof d, "missing");
      else
        describe(d, sizeof d, copy[i], auth, s->deep);
      add_error(s, "pg %u.%x object %s%s on osd.%d: %s%s", pg->pool, pg->id, key.name, snapbuf,
                pg->acting[i], d, s->repair && !s->verifying && best >= 0 ? " (repairing)" : "");
    }
    if (best < 0)
      add_error(s, "pg %u.%x object %s%s: no readable copy, cannot be repaired", pg->pool, pg->id,
                key.name, snapbuf);
    if (s->repair && !s->verifying && best >= 0 && key.snap == STORE_SNAP_HEAD) {
      struct rep_item *ni = realloc(s->items, (s->n_items + 1) * sizeof *ni);
      if (ni) {
        s->items = ni;
        ni[s->n_items].name = strdup(key.name);
        ni[s->n_items].auth = best;
        ni[s->n_items].targets = bad;
        if (ni[s->n_items].name)
          s->n_items++;
      }
    }
  }
  bool last_chunk = !end;
  if (s->n_items) {
    /* repair, then scrub the same chunk again to verify */
    free(end_name);
    repair_start(pg);
    return;
  }
  s->run_incons += incons;
  s->run_objects += chunk_objects;
  s->verifying = false;
  free(s->cursor);
  s->cursor = end_name;
  if (last_chunk)
    job_end(pg, true, NULL);
  else
    chunk_start(pg);
}

static void job_member_map(struct pg *pg, int idx, struct sobj *objs, size_t n, int err)
{
  struct scrub *s = pg->scrub;
  if (err < 0) {
    s->failed = true;
    log_warn("scrub", "%u.%x: no scrub map from osd.%d: %s", pg->pool, pg->id, pg->acting[idx],
             strerror(-err));
    sobjs_free(objs, n);
  } else {
    sobjs_free(s->maps[idx], s->n_map[idx]);
    s->maps[idx] = objs;
    s->n_map[idx] = n;
    unsigned max = (unsigned)config_get_int(pg->osd->cfg, "osd_scrub_chunk");
    s->full[idx] = n >= (max ? max : 64);
  }
  if (--s->pending > 0)
    return;
  if (s->failed)
    job_end(pg, false, "a member did not send its scrub map");
  else
    chunk_compare(pg);
}

/* ---- repair ------------------------------------------------------------------------------ */

struct rep_ctx {
  struct osd *osd;
  uint32_t pool, pgid;
  uint64_t seq;
  size_t item;
};

static struct pg *rep_pg(struct rep_ctx *c)
{
  struct pg *pg = pg_get(c->osd, c->pool, c->pgid, false);
  if (pg && pg->scrub && pg->scrub->running && pg->scrub->seq == c->seq)
    return pg;
  return NULL;
}

static void rep_one_done(struct pg *pg, int err, const char *what, size_t item)
{
  struct scrub *s = pg->scrub;
  if (err < 0) {
    add_error(s, "pg %u.%x object %s: repair failed (%s): %s", pg->pool, pg->id,
              s->items[item].name, what, strerror(-err));
    s->failed = true;
  }
  if (--s->rep_pending > 0)
    return;
  if (!s->failed) {
    s->run_repaired += (uint32_t)s->n_items;
    log_info("scrub", "%u.%x: repaired %zu objects; verifying", pg->pool, pg->id, s->n_items);
  }
  items_free(s);
  /* verify: the same chunk once more, without repairing again */
  s->verifying = true;
  chunk_start(pg);
  pg_wake(pg);
}

static void push_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct rep_ctx *c = arg;
  struct pg *pg = err == -ECANCELED ? NULL : rep_pg(c);
  if (pg) {
    Blk__PgObject *o = err ? NULL : blk__pg_object__unpack(NULL, f->payload_len, f->payload);
    rep_one_done(pg, err ? err : !o ? -EPROTO : o->err, "push", c->item);
    if (o)
      blk__pg_object__free_unpacked(o, NULL);
  }
  free(c);
}

static void pull_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct rep_ctx *c = arg;
  struct pg *pg = err == -ECANCELED ? NULL : rep_pg(c);
  if (!pg) {
    free(c);
    return;
  }
  struct scrub *s = pg->scrub;
  struct rep_item *it = &s->items[c->item];
  Blk__PgObject *o = err ? NULL : blk__pg_object__unpack(NULL, f->payload_len, f->payload);
  int e = err ? err : !o ? -EPROTO : o->err;
  if (e == 0 && o->exists &&
      (o->size != f->data_len || crc32c(0, f->data, f->data_len) != o->data_crc))
    e = -EBADMSG;
  int targets = 0;
  for (size_t i = 0; i < pg->n_acting; i++)
    targets += !!(it->targets & (1u << i));
  if (e < 0) {
    s->rep_pending += targets - 1;
    for (int k = 0; k < targets; k++)
      rep_one_done(pg, e, "pull", c->item);
  } else {
    s->rep_pending += targets - 1;
    o->epoch = pg->osd->epoch;
    for (size_t i = 0; i < pg->n_acting; i++) {
      if (!(it->targets & (1u << i)))
        continue;
      struct rep_ctx *pc = malloc(sizeof *pc);
      msgr_conn *conn = osd_peer_conn(pg->osd, pg->acting[i]);
      if (pc)
        *pc = *c;
      if (!pc || !conn ||
          msgr_call_pb(conn, MSG_PG_PUSH, (const ProtobufCMessage *)o, f->data, f->data_len,
                       (int)pg->osd->op_timeout, push_cb, pc) < 0) {
        free(pc);
        rep_one_done(pg, -EIO, "push", c->item);
        if (!rep_pg(c))
          break;
      }
    }
  }
  if (o)
    blk__pg_object__free_unpacked(o, NULL);
  free(c);
}

/* Start repairing s->items: ops on them wait (scrub_blocks) until done. */
static void repair_start(struct pg *pg)
{
  struct scrub *s = pg->scrub;
  s->failed = false;
  s->rep_pending = (int)s->n_items;
  size_t n = s->n_items;
  for (size_t k = 0; k < n; k++) {
    struct rep_item *it = &s->items[k];
    struct rep_ctx *c = malloc(sizeof *c);
    msgr_conn *conn = osd_peer_conn(pg->osd, pg->acting[it->auth]);
    Blk__PgObject o = BLK__PG_OBJECT__INIT;
    o.pool = pg->pool;
    o.pg = pg->id;
    o.name = it->name;
    o.epoch = pg->osd->epoch;
    if (c)
      *c = (struct rep_ctx){ pg->osd, pg->pool, pg->id, s->seq, k };
    log_info("scrub", "%u.%x: repairing %s from osd.%d", pg->pool, pg->id, it->name,
             pg->acting[it->auth]);
    if (!c || !conn ||
        msgr_call_pb(conn, MSG_PG_PULL, (const ProtobufCMessage *)&o, NULL, 0,
                     (int)pg->osd->op_timeout, pull_cb, c) < 0) {
      free(c);
      rep_one_done(pg, -EIO, "pull", k);
      if (!pg->scrub->running || s->n_items == 0)
        return;
    }
  }
}

bool scrub_blocks(struct pg *pg, const char *name)
{
  struct scrub *s = pg->scrub;
  if (!s || !s->running)
    return false;
  for (size_t i = 0; i < s->n_items; i++)
    if (!strcmp(s->items[i].name, name))
      return true;
  return false;
}

/* ---- scheduling, commands, hooks ------------------------------------------------------------ */

static void job_begin(struct pg *pg, bool deep, bool repair)
{
  struct scrub *s = pg->scrub;
  s->running = true;
  scrub_busy = true;
  s->deep = deep || repair;
  s->repair = repair;
  s->verifying = false;
  s->retries = 0;
  s->start_ms = util_now_ms();
  s->run_incons = 0;
  s->run_objects = s->run_bytes = 0;
  s->run_repaired = 0;
  errors_clear(s->run_errors, &s->run_n_errors);
  free(s->cursor);
  s->cursor = NULL;
  /* the requests so far are answered by this job (a light scrub request
   * is also served by a deep one, any by a repair) */
  if (s->deep || !s->want_deep) {
    s->job_waiters = s->waiters;
    s->waiters = NULL;
    s->want = s->want_deep = s->want_repair = false;
  } else {
    s->want = false;
  }
  log_info("scrub", "%u.%x: %s starts", pg->pool, pg->id,
           repair ? "repair" : s->deep ? "deep scrub" : "scrub");
  pg->osd->stats_dirty = true;
  chunk_start(pg);
}

void scrub_tick(struct osd *osd)
{
  if (scrub_busy || !osd->booted || osd->stopping)
    return;
  int64_t now = util_now_ms();
  int64_t iv = config_get_int(osd->cfg, "osd_scrub_interval");
  int64_t div = config_get_int(osd->cfg, "osd_deep_scrub_interval");
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext) {
      if (!pg->primary)
        continue;
      struct scrub *s = scrub_of(pg);
      if (!s || !pg_clean(pg))
        continue;
      bool periodic = now >= s->not_before_ms;
      bool deep = s->want_deep || (periodic && div > 0 && now - s->deep_since_ms >= div);
      bool light = s->want || (periodic && iv > 0 && now - s->since_ms >= iv);
      if (s->want_repair || deep || light) {
        job_begin(pg, deep, s->want_repair);
        return;
      }
    }
}

void scrub_pg_reset(struct pg *pg, const char *why)
{
  struct scrub *s = pg->scrub;
  if (!s)
    return;
  /* the primary may change with the interval: requesters retry with the
   * new map (blkctl does on -ESTALE) */
  answer_waiters(pg, &s->job_waiters, -ESTALE, why);
  answer_waiters(pg, &s->waiters, -ESTALE, why);
  s->want = s->want_deep = s->want_repair = false;
  if (s->running)
    job_end(pg, false, why);
}

void scrub_pg_free(struct pg *pg)
{
  struct scrub *s = pg->scrub;
  if (!s)
    return;
  if (s->running)
    scrub_busy = false;
  chunk_reset(s);
  items_free(s);
  free(s->cursor);
  errors_clear(s->errors, &s->n_errors);
  errors_clear(s->run_errors, &s->run_n_errors);
  for (int k = 0; k < 2; k++) {
    struct waiter **list = k ? &s->job_waiters : &s->waiters;
    while (*list) {
      struct waiter *w = *list;
      *list = w->next;
      msgr_conn_put(w->conn);
      free(w);
    }
  }
  free(s);
  pg->scrub = NULL;
}

static void cmd_reply(struct osd *osd, msgr_conn *c, const struct msgr_frame *f, struct pg *pg,
                      int err, const char *msg)
{
  Blk__PgScrubResult r = BLK__PG_SCRUB_RESULT__INIT;
  r.err = err;
  r.message = (char *)msg;
  if (pg)
    result_fill(pg, &r);
  else
    r.state = "";
  (void)osd;
  msgr_reply_pb(c, f, MSG_PG_SCRUB_CMD, (const ProtobufCMessage *)&r, NULL, 0);
}

void scrub_on_cmd(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgScrubCmd *q = blk__pg_scrub_cmd__unpack(NULL, f->payload_len, f->payload);
  char msg[160];
  int aerr;
  if (!q) {
    cmd_reply(osd, c, f, NULL, -EINVAL, "malformed request");
    return;
  }
  const struct cm_pool *pool = osd->map ? clustermap_pool_by_id(osd->map, q->pool) : NULL;
  struct pg *pg = pool && q->pg < pool->pg_num ? pg_get(osd, q->pool, q->pg, false) : NULL;
  if (!pool || q->pg >= pool->pg_num) {
    snprintf(msg, sizeof msg, "no PG %u.%x at epoch %llu", q->pool, q->pg,
             (unsigned long long)osd->epoch);
    cmd_reply(osd, c, f, NULL, q->epoch > osd->epoch ? -ESTALE : -ENOENT, msg);
  } else if ((aerr = osd_pg_cmd_allowed(osd, c, pool->name,
                                        q->what != BLK__PG_SCRUB_CMD__WHAT__QUERY, msg,
                                        sizeof msg)) < 0) {
    cmd_reply(osd, c, f, NULL, aerr, msg);
  } else if (!pg || !pg->primary) {
    snprintf(msg, sizeof msg, "osd.%d is not the primary of PG %u.%x at epoch %llu", osd->id,
             q->pool, q->pg, (unsigned long long)osd->epoch);
    cmd_reply(osd, c, f, NULL, -ESTALE, msg);
  } else if (!scrub_of(pg)) {
    cmd_reply(osd, c, f, pg, -ENOMEM, "out of memory");
  } else if (q->what == BLK__PG_SCRUB_CMD__WHAT__QUERY) {
    cmd_reply(osd, c, f, pg, 0, "");
  } else {
    struct scrub *s = pg->scrub;
    struct waiter *w = malloc(sizeof *w);
    if (!w) {
      cmd_reply(osd, c, f, pg, -ENOMEM, "out of memory");
    } else {
      w->conn = msgr_conn_get(c);
      w->tid = f->tid;
      w->next = s->waiters;
      s->waiters = w;
      if (q->what == BLK__PG_SCRUB_CMD__WHAT__REPAIR)
        s->want_repair = true;
      else if (q->what == BLK__PG_SCRUB_CMD__WHAT__DEEP)
        s->want_deep = true;
      else
        s->want = true;
      log_info("scrub", "%u.%x: %s requested by %s", pg->pool, pg->id,
               s->want_repair ? "repair" : s->want_deep ? "deep scrub" : "scrub",
               msgr_conn_peer(c));
    }
  }
  blk__pg_scrub_cmd__free_unpacked(q, NULL);
}
