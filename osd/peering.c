/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: peering and recovery of one PG, run by its primary at the
 * start of every interval (and again whenever a replica refuses or misses
 * a RepOp).  Client ops wait while the PG is not active.
 *
 *  1. query   PgQuery to every other acting member and to every member
 *             still up of the PG's past intervals; each answers PgInfo
 *             (last version, trim point, whole log, last epoch started,
 *             the past intervals it knows: those the primary lacks join
 *             its list, and their members are queried too) and fences:
 *             from now on it refuses RepOps from older epochs.
 *  2. choose  may the PG go active at all: every past interval that may
 *             have acknowledged writes and ended after the newest les
 *             among the answers needs a member among them, else the PG
 *             waits ("down").  The intervals are those derived from the
 *             map history since that les (maphist.c; maps missing here
 *             are fetched from the monitors, and the members of those
 *             intervals still up are queried too) and those recorded;
 *             a history the monitors no longer keep leaves the PG
 *             "incomplete" when no member that answered ever held it.  Then the authoritative member: the newest last
 *             version (ties: the primary).  Every acknowledged write is on
 *             every member of the interval that acknowledged it, so any
 *             member that lived through it holds it.
 *  3. recover for each other member, the objects to copy from the
 *             authoritative one: by log when the member's last version is
 *             within the authoritative log (names of newer entries, plus
 *             its own divergent entries), else by backfill (every object the
 *             authoritative primary lists).  Each object is read whole (data,
 *             every xattr, every omap entry: PgObject.attrs/omap) from
 *             the authoritative member (locally or MSG_PG_PULL) and
 *             installed on the targets (locally or MSG_PG_PUSH) as a
 *             whole-object replace or a remove; at most
 *             osd_recovery_max_active (8) at a time, and within
 *             osd_recovery_max_bytes_per_sec (token bucket, per OSD).
 *  4. activate PgActivate (authoritative log, last, trim point) to every
 *             replica, which replaces its log with it; the primary does the
 *             same if it was not authoritative.  When all are durable the PG
 *             is active: parked ops run, in-flight writes the log holds are
 *             acknowledged.
 * Every install also records the object as unlogged on its target (a
 * "U" key of @pgmeta, pg.c) in the same transaction; taking the log in 4
 * drops the names it describes, and the names left travel in PgInfo to
 * the next peering, which copies them again from the authoritative member
 * (a peering that stopped between 3 and 4 leaves objects its log lacks).
 * A failure (timeout, refused push) restarts peering one second later.
 * Before 1, a primary that replaces a down one waits until that one's
 * lease has surely expired (heartbeat_fence_until; docs/osd.md "Lease").
 * Callbacks find their PG by (pool, pg) and ignore answers for an older
 * peering (seq).  The decisions of 2 and 3 (wait or not, authoritative
 * member, objects to recover per member) are osd/peering_plan.c, the code
 * the peering simulation (tests/sim/peering-sim.c) checks; this file
 * does the messaging and the store work around them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"
#include "osd/snap.h"

#define RECOVERY_PARALLEL 8

enum phase { PH_QUERY, PH_RECOVER, PH_ACTIVATE, PH_FAILED };

/* Recovery rate limit (osd_recovery_max_bytes_per_sec): a token bucket per
 * OSD shared by all its PGs.  It refills at the rate and holds at most a
 * fifth of a second's worth.  Starting an object takes an estimate of its
 * cost (a running average of the objects installed, 4 MiB at first), so
 * that the many PGs of an OSD cannot all start at once; installing it
 * settles the difference with its real cost (size times the number of
 * targets, plus RECOVERY_OBJ_COST for the metadata).  The bucket may go
 * negative; no object starts while it is not positive (those in flight
 * finish), and peering_tick tries again. */
#define RECOVERY_OBJ_COST 4096

static bool recovery_may_start(struct osd *osd)
{
  if (osd->recovery_rate <= 0)
    return true;
  int64_t now = util_now_ms();
  double cap = (double)osd->recovery_rate / 5;
  if (!osd->recovery_tokens_ms) {
    osd->recovery_tokens = cap;
  } else if (now > osd->recovery_tokens_ms) {
    osd->recovery_tokens += (double)osd->recovery_rate * (double)(now - osd->recovery_tokens_ms) / 1000;
    if (osd->recovery_tokens > cap)
      osd->recovery_tokens = cap;
  }
  osd->recovery_tokens_ms = now;
  return osd->recovery_tokens > 0;
}

/* Take the estimate for an object that starts (returns it). */
static double recovery_take(struct osd *osd)
{
  if (osd->recovery_rate <= 0)
    return 0;
  if (osd->recovery_est <= 0)
    osd->recovery_est = 4.0 * 1024 * 1024 + RECOVERY_OBJ_COST;
  osd->recovery_tokens -= osd->recovery_est;
  return osd->recovery_est;
}

/* An object is installed: its real cost replaces what it took. */
static void recovery_charge(struct osd *osd, double taken, uint64_t bytes)
{
  if (osd->recovery_rate <= 0)
    return;
  osd->recovery_tokens += taken - (double)bytes;
  osd->recovery_est = 0.8 * osd->recovery_est + 0.2 * (double)bytes;
}


struct member_info {
  bool got;
  struct pg_ver last, tail;
  uint64_t les;                 /* last epoch started */
  struct pg_log_ent *log;       /* owned copy (NULL for the primary's own) */
  size_t n;
  /* backfill: the member's object names, in order (owned) */
  bool want_list, list_done;
  char **listed;
  size_t n_listed, cap_listed;
  /* its unlogged objects (PgInfo.unlogged; owned) */
  char **unlogged;
  size_t n_unlogged;
};

struct rec_item {
  char *name;
  uint32_t targets;             /* bit i = acting[i] */
  uint32_t pending;             /* targets not yet installed */
  double charged;               /* rate limit: tokens taken at the start */
};

struct peering {
  struct pg *pg;
  uint64_t seq;
  enum phase phase;
  int64_t phase_ms;
  /* who[0..n_acting) = the acting set, then prior members still up:
   * queried and eligible as the authoritative source, never targets */
  int32_t who[2 * PGMAP_MAX_SIZE];
  size_t n_who;
  bool blocked;                 /* waiting for a down prior member */
  int64_t fence_wall_ms;        /* waiting for an old primary's lease (wall) */
  struct member_info info[2 * PGMAP_MAX_SIZE];
  int auth;
  struct rec_item *items;
  size_t n_items, next_item;
  int active;                   /* items in progress */
  size_t done_items;
  uint32_t backfill_mask;       /* members recovered by backfill (state) */
  int act_pending;
  /* the authoritative log, flattened (names borrowed from info/pg) */
  struct pg_log_ent *alog;
  size_t alog_n;
  struct pg_ver alast, atail;
  bool alog_owned;              /* alog names are copies (background mode) */
  /* background recovery: the PG is active for the members not in
   * act_mask while those are recovered; then they take the log snapshot
   * and a short blocking peering catches them up */
  bool bg;
  uint32_t act_mask;
  /* past intervals from the map history (maphist.c) */
  bool hist_wait;               /* waiting for maps from the monitors */
  bool incomplete;              /* the history needed is not kept anymore */
  bool hist_partial;            /* only the maps still kept were used */
  bool hist_floor;              /* from raised to the monitors' history floor */
};

struct pctx {
  struct osd *osd;
  uint32_t pool, pgid;
  uint64_t seq;
  int idx;                      /* member index */
  size_t item;
  uint8_t *buf;                 /* object bytes (recovery) */
  uint64_t size;
  bool exists;
  struct store_stat st;
  msgr_conn *conn;              /* replica side: requester */
  uint64_t tid;
  char *name;
  /* recovery reads: the object's xattrs and omap (store_kv_free) */
  struct store_kv *attrs, *omap;
  size_t n_attrs, n_omap;
  /* recovery reads: the object's clones and snap directory (osd/snap.c) */
  struct snap_obj *so;
  size_t n_so, cur_so;
};

static void member_info_free(struct member_info *mi)
{
  for (size_t i = 0; mi->log && i < mi->n; i++)
    free(mi->log[i].name);
  free(mi->log);
  for (size_t i = 0; i < mi->n_listed; i++)
    free(mi->listed[i]);
  free(mi->listed);
  for (size_t i = 0; i < mi->n_unlogged; i++)
    free(mi->unlogged[i]);
  free(mi->unlogged);
  memset(mi, 0, sizeof *mi);
}

static void peering_destroy(struct peering *p)
{
  if (!p)
    return;
  for (size_t i = 0; i < 2 * PGMAP_MAX_SIZE; i++)
    member_info_free(&p->info[i]);
  for (size_t i = 0; i < p->n_items; i++)
    free(p->items[i].name);
  free(p->items);
  for (size_t i = 0; p->alog_owned && i < p->alog_n; i++)
    free(p->alog[i].name);
  free(p->alog);
  free(p);
}

void peering_free(struct pg *pg)
{
  peering_destroy(pg->peering);
  pg->peering = NULL;
  peering_destroy(pg->bg);
  pg->bg = NULL;
}

static struct pctx *pctx_new(struct peering *p, int idx)
{
  struct pctx *c = calloc(1, sizeof *c);
  if (c) {
    c->osd = p->pg->osd;
    c->pool = p->pg->pool;
    c->pgid = p->pg->id;
    c->seq = p->seq;
    c->idx = idx;
  }
  return c;
}

static void pctx_free(struct pctx *c)
{
  snap_objs_free(c->so, c->n_so);
  if (c->conn)
    msgr_conn_put(c->conn);
  store_kv_free(c->attrs, c->n_attrs);
  store_kv_free(c->omap, c->n_omap);
  free(c->buf);
  free(c->name);
  free(c);
}

/* The peering a callback belongs to, or NULL if it is over. */
static struct peering *pctx_peering(struct pctx *c)
{
  struct pg *pg = pg_get(c->osd, c->pool, c->pgid, false);
  if (!pg)
    return NULL;
  struct peering *p = pg->peering && pg->peering->seq == c->seq ? pg->peering
                      : pg->bg && pg->bg->seq == c->seq ? pg->bg : NULL;
  return p && p->phase != PH_FAILED ? p : NULL;
}

static void peering_fail(struct peering *p, const char *why)
{
  log_info("peering", "%u.%x: peering failed (%s); retrying", p->pg->pool, p->pg->id, why);
  p->phase = PH_FAILED;
  p->phase_ms = util_now_ms();
}

static Blk__PgLogEntry **log_to_pb(const struct pg_log_ent *ents, size_t n,
                                   Blk__PgLogEntry **store_out, Blk__PgVersion **vers_out)
{
  Blk__PgLogEntry **arr = calloc(n + 1, sizeof *arr);
  Blk__PgLogEntry *es = calloc(n + 1, sizeof *es);
  Blk__PgVersion *vs = calloc(n + 1, sizeof *vs);
  if (!arr || !es || !vs) {
    free(arr);
    free(es);
    free(vs);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    blk__pg_log_entry__init(&es[i]);
    blk__pg_version__init(&vs[i]);
    vs[i].epoch = ents[i].ver.epoch;
    vs[i].v = ents[i].ver.v;
    es[i].version = &vs[i];
    es[i].name = ents[i].name;
    es[i].op = ents[i].op;
    es[i].reqid = (char *)ents[i].reqid;
    arr[i] = &es[i];
  }
  *store_out = es;
  *vers_out = vs;
  return arr;
}

static int log_from_pb(Blk__PgLogEntry **pb, size_t n, struct pg_log_ent **out)
{
  struct pg_log_ent *l = calloc(n + 1, sizeof *l);
  if (!l)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!pb[i]->version || strlen(pb[i]->name) > PG_NAME_MAX)
      goto bad;
    l[i].ver.epoch = pb[i]->version->epoch;
    l[i].ver.v = pb[i]->version->v;
    l[i].op = (uint8_t)pb[i]->op;
    snprintf(l[i].reqid, sizeof l[i].reqid, "%s", pb[i]->reqid);
    l[i].name = strdup(pb[i]->name);
    if (!l[i].name)
      goto bad;
  }
  *out = l;
  return 0;
bad:
  for (size_t i = 0; i < n; i++)
    free(l[i].name);
  free(l);
  return -EINVAL;
}

/* The primary's own log as a flat array (names borrowed). */
static struct pg_log_ent *own_log_flat(struct pg *pg)
{
  struct pg_log_ent *l = calloc(pg->log_n + 1, sizeof *l);
  if (l)
    for (size_t i = 0; i < pg->log_n; i++)
      l[i] = *pg_log_at(pg, i);
  return l;
}

/* ---- 4. activate ------------------------------------------------------------ */

/* Replace pg's log by ents (copied) in t and in memory. */
static int adopt_log(struct pg *pg, store_txn *t, const struct pg_log_ent *ents, size_t n,
                     struct pg_ver last, struct pg_ver tail, uint64_t les);

/* pg takes an authoritative log at epoch les: record it (key "E") and
 * drop the past intervals, which that log covers. */
static void set_les(struct pg *pg, store_txn *t, uint64_t les)
{
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  store_txn_touch(t, &meta);
  pg->meta_exists = true;
  if (pg->les) {
    pg_les_key(key, sizeof key, pg->les);
    store_txn_omap_rm(t, &meta, key);
  }
  pg->les = les;
  pg_les_key(key, sizeof key, les);
  store_txn_omap_set(t, &meta, key, "", 0);
  pg_past_clear(pg, t);
}

static void les_txn_cb(void *arg, int result)
{
  (void)arg;
  pg_store_pending--;
  if (result < 0)
    log_err("peering", "cannot record the last epoch started: %s", strerror(-result));
}

static int adopt_log(struct pg *pg, store_txn *t, const struct pg_log_ent *ents, size_t n,
                     struct pg_ver last, struct pg_ver tail, uint64_t les)
{
  set_les(pg, t, les);
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  store_txn_touch(t, &meta);
  pg->meta_exists = true;
  for (size_t i = 0; i < pg->log_n; i++) {
    pg_log_key(key, sizeof key, pg_log_at(pg, i));
    store_txn_omap_rm(t, &meta, key);
  }
  if (pg->tail.epoch || pg->tail.v) {
    pg_tail_key(key, sizeof key, pg->tail);
    store_txn_omap_rm(t, &meta, key);
  }
  /* copy first: ents may point into pg's own log */
  struct pg_log_ent *copy = calloc(n + 1, sizeof *copy);
  if (!copy)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    copy[i] = ents[i];
    copy[i].name = strdup(ents[i].name);
    if (!copy[i].name) {
      for (size_t k = 0; k < i; k++)
        free(copy[k].name);
      free(copy);
      return -ENOMEM;
    }
  }
  pg_log_clear(pg);
  pg->last.epoch = pg->last.v = 0;
  int r = 0;
  for (size_t i = 0; i < n; i++) {
    pg_log_key(key, sizeof key, &copy[i]);
    store_txn_omap_set(t, &meta, key, "", 0);
    if (r == 0)
      r = pg_log_push(pg, copy[i].ver, copy[i].op, copy[i].reqid, copy[i].name);
    free(copy[i].name);
  }
  free(copy);
  pg->tail = tail;
  if (tail.epoch || tail.v) {
    pg_tail_key(key, sizeof key, tail);
    store_txn_omap_set(t, &meta, key, "", 0);
  }
  pg->last = last;
  /* the objects this log describes are no longer unlogged */
  pg_unlogged_settle(pg, t);
  return r;
}

static void go_active(struct peering *p)
{
  struct pg *pg = p->pg;
  pg->state = PG_ACTIVE;
  pg->clean = pg->n_acting >= pg->size;
  pg->n_past = pg->n_prior_primaries = 0;
  pg->went_active = true;
  pg->write_mask = (1u << pg->n_acting) - 1;
  log_info("peering", "%u.%x: active at epoch %llu, last %llu'%llu, %zu members%s%s", pg->pool,
           pg->id, (unsigned long long)pg->osd->epoch, (unsigned long long)pg->last.epoch,
           (unsigned long long)pg->last.v, pg->n_acting, p->n_items ? ", recovered " : "",
           p->n_items ? "objects" : "");
  peering_free(pg);
  pg_activated(pg);
}

/* Background recovery done and its members hold the snapshot log: catch
 * them up with a (short) blocking peering. */
static void bg_done(struct peering *p)
{
  struct pg *pg = p->pg;
  log_info("peering", "%u.%x: background recovery of %zu objects done; catching up", pg->pool,
           pg->id, p->n_items);
  pg->bg = NULL;
  peering_destroy(p);
  peering_start(pg);
}

static void act_done(struct peering *p)
{
  if (--p->act_pending == 0) {
    if (p->bg)
      bg_done(p);
    else
      go_active(p);
  }
}

static void act_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct pctx *c = arg;
  struct peering *p = err == -ECANCELED ? NULL : pctx_peering(c);
  if (p && p->phase == PH_ACTIVATE) {
    Blk__RepOpReply *r = err ? NULL : blk__rep_op_reply__unpack(NULL, f->payload_len, f->payload);
    if (!r || r->err)
      peering_fail(p, "a member refused activation");
    else
      act_done(p);
    if (r)
      blk__rep_op_reply__free_unpacked(r, NULL);
  }
  pctx_free(c);
}

static void act_local_cb(void *arg, int result)
{
  struct pctx *c = arg;
  pg_store_pending--;
  struct peering *p = pctx_peering(c);
  if (p && p->phase == PH_ACTIVATE) {
    if (result < 0)
      peering_fail(p, "local log replace failed");
    else
      act_done(p);
  }
  pctx_free(c);
}

static void start_activate(struct peering *p)
{
  struct pg *pg = p->pg;
  struct osd *osd = pg->osd;
  p->phase = PH_ACTIVATE;
  p->phase_ms = util_now_ms();
  p->act_pending = 1;    /* released at the end of this function */
  if (!p->bg) {
    /* the primary takes the log (unless it is the authoritative one) and
     * records the epoch it started at */
    store_txn *t = store_txn_new();
    struct pctx *c = pctx_new(p, 0);
    if (t && c && p->auth == 0) {
      set_les(pg, t, osd->epoch);
      pg_unlogged_settle(pg, t);
    }
    if (!t || !c ||
        (p->auth != 0 && adopt_log(pg, t, p->alog, p->alog_n, p->alast, p->atail, osd->epoch) < 0)) {
      store_txn_free(t);
      free(c);
      peering_fail(p, "out of memory");
      return;
    }
    /* alog pointed into info[auth]; pg's log is now a copy */
    p->act_pending++;
    pg_store_pending++;
    store_queue(osd->st, t, act_local_cb, c);
  }
  Blk__PgLogEntry *es = NULL;
  Blk__PgVersion *vs = NULL;
  Blk__PgLogEntry **arr = log_to_pb(p->alog, p->alog_n, &es, &vs);
  if (!arr) {
    peering_fail(p, "out of memory");
    return;
  }
  Blk__PgActivate a = BLK__PG_ACTIVATE__INIT;
  Blk__PgVersion last = BLK__PG_VERSION__INIT, tail = BLK__PG_VERSION__INIT;
  a.pool = pg->pool;
  a.pg = pg->id;
  a.epoch = osd->epoch;
  last.epoch = p->alast.epoch;
  last.v = p->alast.v;
  tail.epoch = p->atail.epoch;
  tail.v = p->atail.v;
  a.last = &last;
  a.tail = &tail;
  a.log = arr;
  a.n_log = p->alog_n;
  for (size_t i = 1; i < pg->n_acting; i++) {
    if (p->bg && !(p->act_mask & (1u << i)))
      continue;
    msgr_conn *pc = osd_peer_conn(osd, pg->acting[i]);
    struct pctx *c = pctx_new(p, (int)i);
    if (!pc || !c || msgr_call_pb(pc, MSG_PG_ACTIVATE, (const ProtobufCMessage *)&a, NULL, 0,
                                  (int)osd->op_timeout, act_reply_cb, c) < 0) {
      free(c);
      peering_fail(p, "cannot send activation");
      break;
    }
    p->act_pending++;
  }
  free(arr);
  free(es);
  free(vs);
  if (p->phase == PH_ACTIVATE)
    act_done(p);
}

/* ---- 3. recover -------------------------------------------------------------- */

static void recover_next(struct peering *p);

static void item_target_done(struct peering *p, size_t item, int idx, int err)
{
  struct rec_item *it = &p->items[item];
  if (err) {
    char why[160];
    snprintf(why, sizeof why, "installing '%s' on osd.%d: %s", it->name, p->pg->acting[idx],
             strerror(-err));
    peering_fail(p, why);
    return;
  }
  it->pending &= ~(1u << idx);
  if (!it->pending) {
    p->phase_ms = util_now_ms();   /* progress */
    p->active--;
    p->done_items++;
    recover_next(p);
  }
}

static void push_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct pctx *c = arg;
  struct peering *p = err == -ECANCELED ? NULL : pctx_peering(c);
  if (p && p->phase == PH_RECOVER) {
    Blk__PgObject *o = err ? NULL : blk__pg_object__unpack(NULL, f->payload_len, f->payload);
    item_target_done(p, c->item, c->idx, err ? err : !o ? -EPROTO : o->err);
    if (o)
      blk__pg_object__free_unpacked(o, NULL);
  }
  pctx_free(c);
}

static void push_local_cb(void *arg, int result)
{
  struct pctx *c = arg;
  pg_store_pending--;
  struct peering *p = pctx_peering(c);
  if (p && p->phase == PH_RECOVER)
    item_target_done(p, c->item, c->idx, result);
  pctx_free(c);
}

/* Key-value pairs of an object in recovery, in PgObject form: pointer
 * arrays into kv (borrowed); *elems is the element storage (caller
 * frees both).  NULL on ENOMEM. */
static Blk__PgKv **kv_to_pb(const struct store_kv *kv, size_t n, Blk__PgKv **elems)
{
  Blk__PgKv **arr = calloc(n + 1, sizeof *arr);
  Blk__PgKv *es = calloc(n + 1, sizeof *es);
  if (!arr || !es) {
    free(arr);
    free(es);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    blk__pg_kv__init(&es[i]);
    es[i].key = kv[i].key;
    es[i].value.data = kv[i].val;
    es[i].value.len = kv[i].len;
    arr[i] = &es[i];
  }
  *elems = es;
  return arr;
}

/* The whole state of an object in recovery: data, xattrs, omap. */
struct obj_state {
  bool exists;
  const uint8_t *data;
  uint64_t size;
  Blk__PgKv **attrs, **omap;
  size_t n_attrs, n_omap;
  /* clones and snap directory; their data follows the head's in data */
  Blk__PgSnapObject **snaps;
  size_t n_snaps;
  uint64_t total;               /* bytes at data: head + clones */
};

/* The version an installed object carries (its PG_VER_ATTR xattr;
 * (0,0) when absent or without one). */
static struct pg_ver install_version(const struct obj_state *st)
{
  struct pg_ver v = { 0, 0 };
  for (size_t i = 0; st->exists && i < st->n_attrs; i++)
    if (!strcmp(st->attrs[i]->key, PG_VER_ATTR) && st->attrs[i]->value.len == 16) {
      v.epoch = get_le64(st->attrs[i]->value.data);
      v.v = get_le64(st->attrs[i]->value.data + 8);
    }
  return v;
}

/* t := replace the object by st (or remove it): the old object with all
 * its xattrs and omap goes first, then data, xattrs and omap are set.
 * The object is recorded as unlogged in the same transaction (until a log
 * entry describes it: pg_unlogged_settle, or a later write). */
static int install_txn(store_txn *t, struct pg *pg, const char *name, const struct obj_state *st)
{
  struct store_oid oid = { pg->pool, pg->id, name, STORE_SNAP_HEAD };
  int r = pg_unlogged_add(pg, t, name, install_version(st));
  if (r == 0)
    r = snap_install_txn(t, pg, name, st->snaps, st->n_snaps,
                         st->data + (st->exists ? st->size : 0));
  if (r == 0)
    r = pg_txn_object(t, pg, BLK__OSD_OP_TYPE__OP_REMOVE, name, NULL, 0, 0, NULL);
  if (r < 0 || !st->exists)
    return r;
  r = pg_txn_object(t, pg, BLK__OSD_OP_TYPE__OP_WRITEFULL, name, NULL, 0, st->size, st->data);
  for (size_t i = 0; r == 0 && i < st->n_attrs; i++)
    r = store_txn_setattr(t, &oid, st->attrs[i]->key, st->attrs[i]->value.data,
                          st->attrs[i]->value.len);
  for (size_t i = 0; r == 0 && i < st->n_omap; i++)
    r = store_txn_omap_set(t, &oid, st->omap[i]->key, st->omap[i]->value.data,
                           st->omap[i]->value.len);
  return r;
}

/* Install an object's state (or its absence) on every target of item. */
static void install(struct peering *p, size_t item, const struct obj_state *os)
{
  bool exists = os->exists;
  const uint8_t *data = os->data;
  uint64_t size = os->size;
  struct pg *pg = p->pg;
  struct osd *osd = pg->osd;
  struct rec_item *it = &p->items[item];
  uint32_t targets = it->pending;
  recovery_charge(osd, it->charged,
                  (uint64_t)__builtin_popcount(targets) * ((exists ? size : 0) + RECOVERY_OBJ_COST));
  it->charged = 0;
  for (int i = 0; i < (int)pg->n_acting; i++) {
    if (!(targets & (1u << i)))
      continue;
    struct pctx *c = pctx_new(p, i);
    if (!c) {
      peering_fail(p, "out of memory");
      return;
    }
    c->item = item;
    if (i == 0) {
      store_txn *t = store_txn_new();
      int r = t ? install_txn(t, pg, it->name, os) : -ENOMEM;
      if (r < 0) {
        store_txn_free(t);
        free(c);
        peering_fail(p, "cannot build a recovery transaction");
        return;
      }
      pg_store_pending++;
      store_queue(osd->st, t, push_local_cb, c);
      continue;
    }
    Blk__PgObject o = BLK__PG_OBJECT__INIT;
    o.pool = pg->pool;
    o.pg = pg->id;
    o.name = it->name;
    o.epoch = osd->epoch;
    o.exists = exists;
    o.size = size;
    o.data_crc = crc32c(0, data, os->total);
    o.attrs = os->attrs;
    o.n_attrs = os->n_attrs;
    o.omap = os->omap;
    o.n_omap = os->n_omap;
    o.snapobjs = os->snaps;
    o.n_snapobjs = os->n_snaps;
    msgr_conn *pc = osd_peer_conn(osd, pg->acting[i]);
    if (!pc || msgr_call_pb(pc, MSG_PG_PUSH, (const ProtobufCMessage *)&o, data,
                            (uint32_t)os->total, (int)osd->op_timeout, push_reply_cb, c) < 0) {
      free(c);
      peering_fail(p, "cannot push");
      return;
    }
  }
}

static void pull_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct pctx *c = arg;
  struct peering *p = err == -ECANCELED ? NULL : pctx_peering(c);
  if (p && p->phase == PH_RECOVER) {
    Blk__PgObject *o = err ? NULL : blk__pg_object__unpack(NULL, f->payload_len, f->payload);
    if (!o || o->err || !snap_pgobj_data_ok(o, f->data, f->data_len))
      peering_fail(p, "pull from the authoritative member failed");
    else {
      struct obj_state os = { o->exists, f->data, o->size, o->attrs, o->omap,
                              o->n_attrs, o->n_omap, o->snapobjs, o->n_snapobjs, f->data_len };
      install(p, c->item, &os);
    }
    if (o)
      blk__pg_object__free_unpacked(o, NULL);
  }
  pctx_free(c);
}

/* Local whole-object read: stat, data, xattrs, omap.  Shared by recovery
 * on the primary and MSG_PG_PULL on a replica; local_read_done(c, err)
 * runs at the end. */
static void local_read_done(void *arg, int result);
static void local_read_finish(struct pctx *c, int result);

static void local_attrs_done(void *arg, int result)
{
  struct pctx *c = arg;
  if (result < 0) {
    local_read_done(c, result);
    return;
  }
  struct store_oid oid = { c->pool, c->pgid, c->name, STORE_SNAP_HEAD };
  store_omap_range(c->osd->st, &oid, NULL, 1u << 20, &c->omap, &c->n_omap, local_read_done, c);
}

static void local_data_done(void *arg, int result)
{
  struct pctx *c = arg;
  if (result < 0 || !c->exists) {
    local_read_done(c, result < 0 ? result : 0);
    return;
  }
  struct store_oid oid = { c->pool, c->pgid, c->name, STORE_SNAP_HEAD };
  store_attrs(c->osd->st, &oid, &c->attrs, &c->n_attrs, local_attrs_done, c);
}

static void local_stat_done(void *arg, int result)
{
  struct pctx *c = arg;
  if (result == -ENOENT) {
    c->exists = false;
    local_read_done(c, 0);
    return;
  }
  if (result < 0) {
    local_read_done(c, result);
    return;
  }
  c->exists = true;
  c->size = c->st.size;
  c->buf = malloc(c->size ? c->size : 1);
  if (!c->buf) {
    local_read_done(c, -ENOMEM);
    return;
  }
  if (!c->size) {
    local_data_done(c, 0);
    return;
  }
  struct store_oid oid = { c->pool, c->pgid, c->name, STORE_SNAP_HEAD };
  store_read(c->osd->st, &oid, 0, c->size, c->buf, local_data_done, c);
}

/* The head is read: the clones and snap directory next, one at a time. */
static void so_next(struct pctx *c);

static void so_attrs_done(void *arg, int result)
{
  struct pctx *c = arg;
  if (result < 0 && result != -ENOENT) {
    local_read_finish(c, result);
    return;
  }
  c->so[c->cur_so].gone = result == -ENOENT;
  c->cur_so++;
  so_next(c);
}

static void so_data_done(void *arg, int result)
{
  struct pctx *c = arg;
  struct snap_obj *so = &c->so[c->cur_so];
  if (result < 0) {
    so_attrs_done(c, result);
    return;
  }
  struct store_oid oid = { c->pool, c->pgid, c->name, so->snap };
  store_attrs(c->osd->st, &oid, &so->attrs, &so->n_attrs, so_attrs_done, c);
}

static void so_stat_done(void *arg, int result)
{
  struct pctx *c = arg;
  struct snap_obj *so = &c->so[c->cur_so];
  if (result < 0) {
    so_attrs_done(c, result);
    return;
  }
  so->size = so->st.size;
  so->buf = malloc(so->size ? so->size : 1);
  if (!so->buf) {
    so_attrs_done(c, -ENOMEM);
    return;
  }
  if (!so->size) {
    so_data_done(c, 0);
    return;
  }
  struct store_oid oid = { c->pool, c->pgid, c->name, so->snap };
  store_read(c->osd->st, &oid, 0, so->size, so->buf, so_data_done, c);
}

static void so_next(struct pctx *c)
{
  if (c->cur_so == c->n_so) {
    local_read_finish(c, 0);
    return;
  }
  struct snap_obj *so = &c->so[c->cur_so];
  struct store_oid oid = { c->pool, c->pgid, c->name, so->snap };
  store_stat(c->osd->st, &oid, &so->st, so_stat_done, c);
}

static void local_read_done(void *arg, int result)
{
  struct pctx *c = arg;
  if (result == -ENOENT) {
    c->exists = false;
    result = 0;
  }
  if (result < 0 || !c->n_so)
    local_read_finish(c, result);
  else
    so_next(c);
}

static void local_read_start(struct pctx *c)
{
  struct store_oid oid = { c->pool, c->pgid, c->name, STORE_SNAP_HEAD };
  int r = snap_list_objs(c->osd->st, c->pool, c->pgid, c->name, &c->so, &c->n_so);
  pg_store_pending++;
  if (r < 0) {
    local_read_finish(c, r);
    return;
  }
  store_stat(c->osd->st, &oid, &c->st, local_stat_done, c);
}

static void local_read_finish(struct pctx *c, int result)
{
  pg_store_pending--;
  if (result == -ENOENT) {
    /* removed between the stat and a later step */
    c->exists = false;
    result = 0;
  }
  Blk__PgKv *ae = NULL, *oe = NULL;
  struct obj_state os = { c->exists && result >= 0, c->buf, 0, NULL, NULL, 0, 0, NULL, 0, 0 };
  if (os.exists) {
    os.size = c->size;
    os.attrs = kv_to_pb(c->attrs, c->n_attrs, &ae);
    os.omap = kv_to_pb(c->omap, c->n_omap, &oe);
    os.n_attrs = c->n_attrs;
    os.n_omap = c->n_omap;
    if (!os.attrs || !os.omap)
      result = -ENOMEM;
  }
  struct snap_pack pk = { 0 };
  os.total = os.exists ? os.size : 0;
  if (result >= 0 && c->n_so) {
    result = snap_pack(c->buf, os.total, c->so, c->n_so, &pk);
    if (result >= 0) {
      os.data = pk.data;
      os.total = pk.total;
      os.snaps = pk.arr;
      os.n_snaps = pk.n;
    }
  }
  if (c->conn) {
    /* MSG_PG_PULL on a replica: answer the primary */
    Blk__PgObject o = BLK__PG_OBJECT__INIT;
    o.pool = c->pool;
    o.pg = c->pgid;
    o.name = c->name;
    o.epoch = c->osd->epoch;
    o.err = result < 0 ? result : 0;
    o.exists = os.exists;
    o.size = result < 0 || !os.exists ? 0 : os.size;
    uint64_t total = result < 0 ? 0 : os.total;
    o.data_crc = crc32c(0, os.data, total);
    if (result >= 0) {
      o.attrs = os.attrs;
      o.n_attrs = os.n_attrs;
      o.omap = os.omap;
      o.n_omap = os.n_omap;
      o.snapobjs = os.snaps;
      o.n_snapobjs = os.n_snaps;
    }
    struct msgr_frame req = { .tid = c->tid };
    msgr_reply_pb(c->conn, &req, MSG_PG_PULL, (const ProtobufCMessage *)&o, os.data,
                  (uint32_t)total);
  } else {
    struct peering *p = pctx_peering(c);
    if (p && p->phase == PH_RECOVER) {
      if (result < 0)
        peering_fail(p, "local read for recovery failed");
      else
        install(p, c->item, &os);
    }
  }
  snap_pack_free(&pk);
  free(os.attrs);
  free(os.omap);
  free(ae);
  free(oe);
  pctx_free(c);
}

static void recover_one(struct peering *p, size_t item)
{
  struct pg *pg = p->pg;
  struct pctx *c = pctx_new(p, p->auth);
  if (!c || !(c->name = strdup(p->items[item].name))) {
    free(c);
    peering_fail(p, "out of memory");
    return;
  }
  c->item = item;
  p->active++;
  if (p->auth == 0) {
    local_read_start(c);
    return;
  }
  Blk__PgObject o = BLK__PG_OBJECT__INIT;
  o.pool = pg->pool;
  o.pg = pg->id;
  o.name = c->name;
  o.epoch = pg->osd->epoch;
  msgr_conn *pc = osd_peer_conn(pg->osd, p->who[p->auth]);
  if (!pc || msgr_call_pb(pc, MSG_PG_PULL, (const ProtobufCMessage *)&o, NULL, 0,
                          (int)pg->osd->op_timeout, pull_reply_cb, c) < 0) {
    pctx_free(c);
    peering_fail(p, "cannot pull");
  }
}

static void recover_next(struct peering *p)
{
  size_t max_active = p->pg->osd->recovery_max_active ? p->pg->osd->recovery_max_active
                                                       : RECOVERY_PARALLEL;
  while (p->phase == PH_RECOVER && p->active < (int)max_active && p->next_item < p->n_items &&
         recovery_may_start(p->pg->osd)) {
    p->items[p->next_item].charged = recovery_take(p->pg->osd);
    recover_one(p, p->next_item++);
  }
  if (p->phase == PH_RECOVER && p->active == 0 && p->next_item == p->n_items) {
    if (p->n_items)
      log_info("peering", "%u.%x: recovered %zu objects", p->pg->pool, p->pg->id, p->n_items);
    if (p->n_items && p->pg->osd->debug_stop_after_install) {
      /* tests only: the members now hold objects their logs lack */
      log_warn("peering", "%u.%x: osd_debug_stop_after_install: exiting before activation",
               p->pg->pool, p->pg->id);
      _exit(1);
    }
    start_activate(p);
  }
}

static bool go_background(struct peering *p, uint32_t need);

/* ---- 2. choose ---------------------------------------------------------------- */

_Static_assert(PPLAN_MAX_SIZE == PGMAP_MAX_SIZE, "peering_plan and pgmap sizes differ");

/* The plan's view of the members that answered: logs borrowed from info[]
 * and from own (the primary's flat log; NULL when not needed), listings
 * from info[] (the primary's is set by the caller). */
static void plan_members(struct peering *p, struct pplan_member *mem, const struct pg_log_ent *own)
{
  struct pg *pg = p->pg;
  memset(mem, 0, p->n_who * sizeof *mem);
  for (size_t i = 0; i < p->n_who; i++) {
    struct member_info *mi = &p->info[i];
    mem[i].osd = p->who[i];
    mem[i].target = i < pg->n_acting;
    mem[i].last = i ? mi->last : pg->last;
    mem[i].tail = i ? mi->tail : pg->tail;
    mem[i].les = i ? mi->les : pg->les;
    mem[i].log = i ? mi->log : own;
    mem[i].n = i ? mi->n : own ? pg->log_n : 0;
    mem[i].listed = (const char *const *)mi->listed;
    mem[i].n_listed = mi->n_listed;
    mem[i].listed_ok = i && mi->list_done;
    mem[i].unlogged = (const char *const *)mi->unlogged;
    mem[i].n_unlogged = i ? mi->n_unlogged : 0;   /* the primary's: the caller's */
  }
}

static void choose_and_recover(struct peering *p)
{
  struct pg *pg = p->pg;
  p->info[0].got = true;
  p->info[0].last = pg->last;
  p->info[0].tail = pg->tail;
  p->info[0].log = NULL;
  p->alog = NULL;
  struct pg_log_ent *own = own_log_flat(pg);
  if (!own) {
    peering_fail(p, "out of memory");
    return;
  }
  struct pplan_member mem[2 * PGMAP_MAX_SIZE];
  plan_members(p, mem, own);
  /* the primary's unlogged objects (names borrowed from pg until the plan
   * is made: it copies them) */
  const char **own_unl = calloc(pg->n_unlogged + 1, sizeof *own_unl);
  if (!own_unl) {
    free(own);
    peering_fail(p, "out of memory");
    return;
  }
  for (size_t k = 0; k < pg->n_unlogged; k++)
    own_unl[k] = pg->unlogged[k].name;
  mem[0].unlogged = own_unl;
  mem[0].n_unlogged = pg->n_unlogged;
  for (size_t i = 0; i < p->n_who; i++)
    if (mem[i].n_unlogged)
      log_info("peering", "%u.%x: osd.%d has %zu unlogged objects (first '%s'): copied from the authoritative member",
               pg->pool, pg->id, p->who[i], mem[i].n_unlogged, mem[i].unlogged[0]);
  p->auth = pplan_choose_auth(mem, p->n_who);
  const struct pg_log_ent *al = mem[p->auth].log;
  size_t an = mem[p->auth].n;
  p->alast = p->info[p->auth].last;
  p->atail = p->info[p->auth].tail;
  /* the activation log: a flat copy of the authoritative one (names
   * borrowed from info[auth] or from pg's log, alive until activation) */
  p->alog = calloc(an + 1, sizeof *p->alog);
  if (!p->alog) {
    free(own_unl);
    free(own);
    peering_fail(p, "out of memory");
    return;
  }
  memcpy(p->alog, al, an * sizeof *al);
  p->alog_n = an;
  /* backfill needs listings: the lagging replicas' and a non-primary
   * authoritative member's were fetched before choosing (maybe_choose);
   * the primary's own is read here when it is the source or lags */
  struct store_list_ent *listed = NULL;
  const char **names = NULL;
  int n_listed = 0;
  bool ok = true;
  bool behind = false;
  for (size_t i = 0; i < pg->n_acting; i++)
    behind |= (int)i != p->auth && pplan_needs_backfill(&mem[i], p->atail);
  if (behind && (p->auth == 0 || pplan_needs_backfill(&mem[0], p->atail))) {
    n_listed = store_list(pg->osd->st, pg->pool, pg->id, NULL, STORE_SNAP_HEAD, 1u << 30, &listed);
    names = n_listed >= 0 ? calloc((size_t)n_listed + 1, sizeof *names) : NULL;
    if (!names) {
      n_listed = n_listed < 0 ? 0 : n_listed;
      ok = false;
    }
    for (int k = 0; names && k < n_listed; k++)
      names[k] = listed[k].name;
    mem[0].listed = names;
    mem[0].n_listed = (size_t)n_listed;
    mem[0].listed_ok = ok;
  }
  if (ok && behind && !mem[p->auth].listed_ok) {
    free(names);
    if (listed)
      store_list_free(listed, n_listed);
    free(own_unl);
    free(own);
    peering_fail(p, "no listing of the authoritative member for backfill");
    return;
  }
  struct pplan_item *plan = NULL;
  size_t n_plan = 0;
  uint32_t backfill = 0;
  if (ok && pplan_recovery(mem, p->n_who, p->auth, &plan, &n_plan, &backfill) < 0)
    ok = false;
  p->backfill_mask = ok ? backfill : 0;
  for (size_t i = 0; ok && i < pg->n_acting; i++)
    if (backfill & (1u << i))
      log_info("peering", "%u.%x: osd.%d is behind the log (last %llu'%llu < tail %llu'%llu): backfill",
               pg->pool, pg->id, pg->acting[i], (unsigned long long)mem[i].last.epoch,
               (unsigned long long)mem[i].last.v, (unsigned long long)p->atail.epoch,
               (unsigned long long)p->atail.v);
  if (ok && n_plan) {
    p->items = calloc(n_plan, sizeof *p->items);
    ok = p->items != NULL;
  }
  for (size_t k = 0; ok && k < n_plan; k++) {
    /* the item takes the plan's name */
    p->items[k].name = plan[k].name;
    plan[k].name = NULL;
    p->items[k].targets = p->items[k].pending = plan[k].targets;
    p->n_items++;
  }
  pplan_items_free(plan, n_plan);
  free(own_unl);
  free(names);
  if (listed)
    store_list_free(listed, n_listed);
  if (!ok) {
    free(own);
    peering_fail(p, "out of memory");
    return;
  }
  /* names in alog borrowed from pg's own log must survive until
   * activation: pg's log only changes by adopt_log, which copies first */
  free(own);
  log_info("peering", "%u.%x: authoritative osd.%d (last %llu'%llu); %zu objects to recover",
           pg->pool, pg->id, p->who[p->auth], (unsigned long long)p->alast.epoch,
           (unsigned long long)p->alast.v, p->n_items);
  p->phase = PH_RECOVER;
  p->phase_ms = util_now_ms();
  uint32_t need = 0;
  for (size_t k = 0; k < p->n_items; k++)
    need |= p->items[k].targets;
  unsigned current = 0;
  for (size_t i = 0; i < pg->n_acting; i++)
    current += !(need & (1u << i));
  if (p->n_items && p->auth == 0 && !(need & 1u) && current >= pg->min_size &&
      pg->osd->async_recovery && go_background(p, need))
    return;
  recover_next(p);
}

/* Become active for the up-to-date members (at least min_size, the
 * primary among them) and recover the others behind client I/O.  The
 * authoritative log is snapshotted (deep copy: the live log moves on).
 * Returns false (stay blocking) when out of memory. */
static bool go_background(struct peering *p, uint32_t need)
{
  struct pg *pg = p->pg;
  for (size_t i = 0; i < p->alog_n; i++) {
    char *n = strdup(p->alog[i].name);
    if (!n) {
      for (size_t k = 0; k < i; k++)
        free(p->alog[k].name);
      return false;
    }
    p->alog[i].name = n;
  }
  p->alog_owned = true;
  p->bg = true;
  p->act_mask = need;
  pg->peering = NULL;
  pg->bg = p;
  pg->write_mask = ((1u << pg->n_acting) - 1) & ~need;
  pg->state = PG_ACTIVE;
  pg->clean = false;
  pg->n_prior_primaries = 0;
  pg->went_active = true;
  /* an activation too: record les and drop the past intervals */
  store_txn *t = store_txn_new();
  if (t) {
    set_les(pg, t, pg->osd->epoch);
    pg_unlogged_settle(pg, t);
    pg_store_pending++;
    store_queue(pg->osd->st, t, les_txn_cb, NULL);
  } else {
    log_err("peering", "%u.%x: out of memory recording the last epoch started", pg->pool, pg->id);
  }
  log_info("peering", "%u.%x: active at epoch %llu for %u of %zu members; recovering %zu objects in the background",
           pg->pool, pg->id, (unsigned long long)pg->osd->epoch,
           (unsigned)__builtin_popcount(pg->write_mask), pg->n_acting, p->n_items);
  recover_next(p);      /* only starts asynchronous work */
  pg_activated(pg);     /* may restart peering, which frees p */
  return true;
}

/* ---- 1. query ------------------------------------------------------------------- */

/* Backfill needs the lagging members' object lists (so that objects
 * removed meanwhile are removed there too): fetched with local OP_LIST
 * reads, page by page, before choosing. */
static void list_send(struct peering *p, int i, const char *after);
static void maybe_choose(struct peering *p);

static void list_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct pctx *c = arg;
  struct peering *p = err == -ECANCELED ? NULL : pctx_peering(c);
  if (p && p->phase == PH_QUERY) {
    struct member_info *mi = &p->info[c->idx];
    Blk__OsdOpReply *r = err ? NULL : blk__osd_op_reply__unpack(NULL, f->payload_len, f->payload);
    bool ok = r && !r->err;
    for (size_t k = 0; ok && k < r->n_names; k++) {
      if (mi->n_listed == mi->cap_listed) {
        size_t nc = mi->cap_listed ? mi->cap_listed * 2 : 256;
        char **nl = realloc(mi->listed, nc * sizeof *nl);
        if (!nl) {
          ok = false;
          break;
        }
        mi->listed = nl;
        mi->cap_listed = nc;
      }
      if (!(mi->listed[mi->n_listed] = strdup(r->names[k])))
        ok = false;
      else
        mi->n_listed++;
    }
    if (!ok)
      peering_fail(p, "cannot list a member for backfill");
    else if (r->more && r->n_names)
      list_send(p, c->idx, r->names[r->n_names - 1]);
    else {
      mi->list_done = true;
      maybe_choose(p);
    }
    if (r)
      blk__osd_op_reply__free_unpacked(r, NULL);
  }
  pctx_free(c);
}

static void list_send(struct peering *p, int i, const char *after)
{
  struct pg *pg = p->pg;
  Blk__OsdOp op = BLK__OSD_OP__INIT;
  op.pool = pg->pool;
  op.pg = pg->id;
  op.name = "";
  op.reqid = "";
  op.op = BLK__OSD_OP_TYPE__OP_LIST;
  op.epoch = pg->osd->epoch;
  op.list_after = (char *)(after ? after : "");
  op.list_max = 10000;
  op.local = true;
  msgr_conn *pc = osd_peer_conn(pg->osd, p->who[i]);
  struct pctx *c = pctx_new(p, i);
  if (!pc || !c || msgr_call_pb(pc, MSG_OSD_OP, (const ProtobufCMessage *)&op, NULL, 0,
                                (int)pg->osd->op_timeout, list_reply_cb, c) < 0) {
    free(c);
    peering_fail(p, "cannot list a member");
  }
}

static int query_send(struct peering *p, size_t i);

/* The past intervals of pg from the map history (maphist.c) since the
 * newest les among the answers mem[0..n_who) (or the pool's creation):
 * 0 with iv[0..*n_iv) when they are known and every member of them that
 * is up has been asked; 1 when waiting (maps asked of the monitors, or
 * new members queried); -1 when peering failed (history not kept: the PG
 * is incomplete). */
static int history_intervals(struct peering *p, const struct pplan_member *mem,
                             struct pplan_interval *iv, size_t *n_iv)
{
  struct pg *pg = p->pg;
  struct osd *osd = pg->osd;
  uint64_t les = 0;
  for (size_t i = 0; i < p->n_who; i++)
    if (mem[i].les > les)
      les = mem[i].les;
  const struct cm_pool *pool = clustermap_pool_by_id(osd->map, pg->pool);
  uint64_t from = les, missing = 0;
  if (pool && pool->created_epoch > from)
    from = pool->created_epoch;
  int r = maphist_intervals(osd, pg->pool, pg->id, from, pg->interval, iv, n_iv, &missing);
  if (r == -ESRCH && missing <= maphist_floor(osd)) {
    /* the monitors trimmed only epochs before their history floor: every
     * PG, this one included, started at or after it, so the intervals
     * from `missing` (<= floor <= the PG's last start) are all that can
     * hold acknowledged writes not yet in an authoritative log */
    if (!p->hist_floor)
      log_info("peering", "%u.%x: the maps of epochs %llu..%llu are trimmed below the monitors' "
               "history floor %llu; past intervals from epoch %llu", pg->pool, pg->id,
               (unsigned long long)from, (unsigned long long)missing - 1,
               (unsigned long long)maphist_floor(osd), (unsigned long long)missing);
    p->hist_floor = true;
    from = missing;
    r = maphist_intervals(osd, pg->pool, pg->id, from, pg->interval, iv, n_iv, &missing);
  }
  if (r == -ESRCH && les > 0) {
    /* the monitors no longer keep the maps since les: a member that
     * answered took part in the activation at les, so the PG is checked
     * against the intervals of the maps still kept and those the members
     * recorded (the check before the map history) */
    if (!p->hist_partial)
      log_warn("peering", "%u.%x: the maps of epochs %llu..%llu are no longer kept; past intervals "
               "there are checked only as the members recorded them", pg->pool, pg->id,
               (unsigned long long)from, (unsigned long long)missing - 1);
    p->hist_partial = true;
    from = missing;
    r = maphist_intervals(osd, pg->pool, pg->id, from, pg->interval, iv, n_iv, &missing);
  }
  if (r == -ENOENT) {
    if (!p->hist_wait)
      log_info("peering", "%u.%x: past intervals since epoch %llu: waiting for the maps from epoch %llu",
               pg->pool, pg->id, (unsigned long long)from, (unsigned long long)missing);
    p->hist_wait = true;
    if (maphist_fetch(osd, missing, pg->interval - 1) < 0) {
      peering_fail(p, "cannot ask the monitors for the map history");
      return -1;
    }
    return 1;
  }
  p->hist_wait = false;
  if (r < 0) {
    /* no member that answered ever took an authoritative log of the PG
     * and its history is gone: whatever it held is on OSDs that did not
     * answer; going active would serve it empty */
    char why[240];
    snprintf(why, sizeof why, "incomplete: no member that answered ever held the PG and the maps "
             "since epoch %llu are no longer kept%s; waiting for a member of its past",
             (unsigned long long)from, r == -ESRCH ? "" : " (out of memory)");
    p->blocked = true;
    p->incomplete = true;
    peering_fail(p, why);
    return -1;
  }
  bool asked = false;
  for (size_t k = 0; k < *n_iv; k++)
    for (size_t a = 0; a < iv[k].n_acting; a++) {
      int32_t id = iv[k].acting[a];
      bool dup = false;
      for (size_t i = 0; i < p->n_who && !dup; i++)
        dup = p->who[i] == id;
      const struct cm_osd *o = clustermap_osd(osd->map, id);
      if (dup || !o || !o->up || p->n_who == 2 * PGMAP_MAX_SIZE)
        continue;
      log_info("peering", "%u.%x: asking osd.%d, a member of the past interval %llu-%llu",
               pg->pool, pg->id, id, (unsigned long long)iv[k].first,
               (unsigned long long)iv[k].last);
      p->who[p->n_who] = id;
      asked = true;
      if (query_send(p, p->n_who++) < 0)
        return -1;
    }
  return asked ? 1 : 0;
}

void peering_history_ready(struct osd *osd)
{
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext) {
      struct peering *p = pg->peering;
      if (p && p->phase == PH_QUERY && p->hist_wait)
        maybe_choose(p);
    }
}

static void maybe_choose(struct peering *p)
{
  for (size_t i = 1; i < p->n_who; i++)
    if (!p->info[i].got)
      return;
  /* the same choice as choose_and_recover: does a member need backfill
   * from the primary? */
  struct pg *pg = p->pg;
  struct pplan_member mem[2 * PGMAP_MAX_SIZE];
  plan_members(p, mem, NULL);
  /* the past intervals of the map history since the newest les among
   * the answers (their members still up are asked first), then those
   * the members recorded: every one that may have acknowledged writes
   * needs a member among the answers */
  struct pplan_interval hiv[PPLAN_MAX_INTERVALS];
  size_t n_hiv = 0, blocking = 0;
  if (history_intervals(p, mem, hiv, &n_hiv) != 0)
    return;
  const struct pplan_interval *block = NULL;
  if (!pplan_may_activate(hiv, n_hiv, mem, p->n_who, &blocking))
    block = &hiv[blocking];
  else if (!pplan_may_activate(pg->past, pg->n_past, mem, p->n_who, &blocking))
    block = &pg->past[blocking];
  if (block) {
    /* a past interval that may have acknowledged writes (and ended after
     * the newest les among the answers) has none of its members here:
     * going active could lose them */
    const struct pplan_interval *iv = block;
    char why[160];
    int len = snprintf(why, sizeof why, "every member of the interval %llu-%llu [",
                       (unsigned long long)iv->first, (unsigned long long)iv->last);
    for (size_t a = 0; a < iv->n_acting && len > 0 && (size_t)len < sizeof why; a++)
      len += snprintf(why + len, sizeof why - (size_t)len, "%s%d", a ? "," : "", iv->acting[a]);
    if (len > 0 && (size_t)len < sizeof why)
      snprintf(why + len, sizeof why - (size_t)len, "] is down; waiting for one");
    p->blocked = true;
    peering_fail(p, why);
    return;
  }
  /* listings first: every lagging replica's (what it holds that the
   * authoritative member does not is removed there) and, when that member
   * is not the primary and anyone lags, the authoritative member's (the
   * objects to copy; the primary's own listing is read locally) */
  int auth = pplan_choose_auth(mem, p->n_who);
  struct pg_ver atail = mem[auth].tail;
  bool behind = false;
  for (size_t i = 0; i < pg->n_acting; i++)
    behind |= (int)i != auth && pplan_needs_backfill(&mem[i], atail);
  bool pending = false;
  for (size_t i = 1; behind && i < p->n_who; i++) {
    struct member_info *mi = &p->info[i];
    bool want = (int)i == auth || (i < pg->n_acting && pplan_needs_backfill(&mem[i], atail));
    if (!want || mi->list_done)
      continue;
    pending = true;
    if (!mi->want_list) {
      mi->want_list = true;
      list_send(p, (int)i, NULL);
      if (p->phase == PH_FAILED)
        return;
    }
  }
  if (pending)
    return;
  choose_and_recover(p);
}

static void info_reply_cb(void *arg, int err, const struct msgr_frame *f);

/* PgQuery to who[i]; -1 (peering failed) if it cannot be sent. */
static int query_send(struct peering *p, size_t i)
{
  struct pg *pg = p->pg;
  struct osd *osd = pg->osd;
  Blk__PgQuery q = BLK__PG_QUERY__INIT;
  q.pool = pg->pool;
  q.pg = pg->id;
  q.epoch = osd->epoch;
  msgr_conn *pc = osd_peer_conn(osd, p->who[i]);
  struct pctx *c = pctx_new(p, (int)i);
  if (!pc || !c || msgr_call_pb(pc, MSG_PG_QUERY, (const ProtobufCMessage *)&q, NULL, 0,
                                (int)osd->op_timeout, info_reply_cb, c) < 0) {
    free(c);
    peering_fail(p, "cannot send the query");
    return -1;
  }
  return 0;
}

/* A member told of past intervals (their keys): those this OSD did not
 * know join pg->past (in first-epoch order; memory only: the member keeps
 * them), and their members still up are queried too. */
static void learn_intervals(struct peering *p, char **keys, size_t n)
{
  struct pg *pg = p->pg;
  for (size_t k = 0; k < n && p->phase == PH_QUERY; k++) {
    struct pplan_interval iv;
    if (!pg_interval_parse(keys[k], &iv) || iv.last >= pg->interval)
      continue;
    bool known = false;
    size_t at = pg->n_past;
    for (size_t j = 0; j < pg->n_past && !known; j++) {
      known = pg->past[j].first == iv.first && pg->past[j].last == iv.last &&
              pg->past[j].n_acting == iv.n_acting &&
              !memcmp(pg->past[j].acting, iv.acting, iv.n_acting * sizeof *iv.acting);
      if (at == pg->n_past && pg->past[j].first > iv.first)
        at = j;
    }
    if (known)
      continue;
    if (pg->n_past == PPLAN_MAX_INTERVALS) {
      log_warn("peering", "%u.%x: too many past intervals; %s not checked", pg->pool, pg->id,
               keys[k]);
      continue;
    }
    memmove(&pg->past[at + 1], &pg->past[at], (pg->n_past - at) * sizeof *pg->past);
    pg->past[at] = iv;
    pg->n_past++;
    log_info("peering", "%u.%x: learnt past interval %llu-%llu from a member", pg->pool, pg->id,
             (unsigned long long)iv.first, (unsigned long long)iv.last);
    for (size_t a = 0; a < iv.n_acting; a++) {
      bool dup = false;
      for (size_t i = 0; i < p->n_who && !dup; i++)
        dup = p->who[i] == iv.acting[a];
      const struct cm_osd *o = clustermap_osd(pg->osd->map, iv.acting[a]);
      if (dup || !o || !o->up || p->n_who == 2 * PGMAP_MAX_SIZE)
        continue;
      p->who[p->n_who] = iv.acting[a];
      if (query_send(p, p->n_who++) < 0)
        return;
    }
  }
}

/* Copy a member's unlogged object names into mi (owned); 0, -ENOMEM, or
 * -EINVAL for a name no object can have. */
static int unlogged_from_pb(struct member_info *mi, char **names, size_t n)
{
  for (size_t k = 0; k < n; k++)
    if (!names[k][0] || strlen(names[k]) > PG_NAME_MAX || names[k][0] == '@')
      return -EINVAL;
  if (!n)
    return 0;
  if (!(mi->unlogged = calloc(n, sizeof *mi->unlogged)))
    return -ENOMEM;
  for (size_t k = 0; k < n; k++) {
    if (!(mi->unlogged[k] = strdup(names[k])))
      return -ENOMEM;       /* member_info_free frees the others */
    mi->n_unlogged++;
  }
  return 0;
}

static void info_reply_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct pctx *c = arg;
  struct peering *p = err == -ECANCELED ? NULL : pctx_peering(c);
  if (p && p->phase == PH_QUERY) {
    Blk__PgInfo *in = err ? NULL : blk__pg_info__unpack(NULL, f->payload_len, f->payload);
    struct member_info *mi = &p->info[c->idx];
    int ur = 0;
    if (!in || in->err || !in->last || !in->tail ||
        log_from_pb(in->log, in->n_log, &mi->log) < 0) {
      peering_fail(p, err ? "a member did not answer the query" : "a member refused the query");
    } else if ((ur = unlogged_from_pb(mi, in->unlogged, in->n_unlogged)) < 0) {
      peering_fail(p, ur == -ENOMEM ? "out of memory" : "a member sent a bad unlogged object name");
    } else {
      mi->n = in->n_log;
      mi->last.epoch = in->last->epoch;
      mi->last.v = in->last->v;
      mi->tail.epoch = in->tail->epoch;
      mi->tail.v = in->tail->v;
      mi->les = in->les;
      mi->got = true;
      learn_intervals(p, in->past, in->n_past);
      if (p->phase == PH_QUERY)
        maybe_choose(p);
    }
    if (in)
      blk__pg_info__free_unpacked(in, NULL);
  }
  pctx_free(c);
}

void peering_start(struct pg *pg)
{
  struct osd *osd = pg->osd;
  peering_free(pg);
  struct peering *p = calloc(1, sizeof *p);
  if (!p) {
    log_err("peering", "%u.%x: out of memory", pg->pool, pg->id);
    return;
  }
  pg->peering = p;
  pg->state = PG_PEERING;
  p->pg = pg;
  p->seq = ++pg->peer_seq;
  p->phase = PH_QUERY;
  p->phase_ms = util_now_ms();
  log_debug("peering", "%u.%x: peering at epoch %llu with %zu members", pg->pool, pg->id,
            (unsigned long long)osd->epoch, pg->n_acting);
  memcpy(p->who, pg->acting, pg->n_acting * sizeof *pg->acting);
  p->n_who = pg->n_acting;
  /* members of the past intervals still up: queried too */
  for (size_t k = 0; k < pg->n_past; k++) {
    for (size_t a = 0; a < pg->past[k].n_acting; a++) {
      int32_t id = pg->past[k].acting[a];
      bool dup = false;
      for (size_t i = 0; i < p->n_who && !dup; i++)
        dup = p->who[i] == id;
      const struct cm_osd *o = clustermap_osd(osd->map, id);
      if (!dup && o && o->up && p->n_who < 2 * PGMAP_MAX_SIZE)
        p->who[p->n_who++] = id;
    }
  }
  int64_t fence = heartbeat_fence_until(osd, pg), wall = util_wall_ms();
  if (fence && fence + 1000 < wall && wall - fence < 30000)
    /* the map that marked it down came late (seen here after the lease
     * ran out): nothing to wait for; said so, for the operator and
     * test-osd-lease (not after a wait just ended, nor for old downs) */
    log_info("peering", "%u.%x: the previous primary's lease ran out %lld ms ago",
             pg->pool, pg->id, (long long)(wall - fence));
  if (fence > wall) {
    /* a previous primary, now down, may still serve reads until its
     * lease runs out: going active earlier could let a client read stale
     * data there after writing here (I2; docs/osd.md "Lease") */
    log_info("peering", "%u.%x: waiting %lld ms for the previous primary's lease to expire",
             pg->pool, pg->id, (long long)(fence - wall));
    p->fence_wall_ms = fence;
    p->phase = PH_FAILED;
    p->phase_ms = util_now_ms();
    return;
  }
  for (size_t i = 1; i < p->n_who; i++)
    if (query_send(p, i) < 0)
      return;
  maybe_choose(p);
}

void peering_tick(struct pg *pg, int64_t now)
{
  struct peering *b = pg->bg;
  /* recovery held back by the rate limit: not stuck (each pull and push
   * has its own timeout) */
  struct peering *held[2] = { b, pg->peering };
  for (int k = 0; k < 2; k++) {
    if (held[k] && held[k]->phase == PH_RECOVER && held[k]->next_item < held[k]->n_items &&
        pg->osd->recovery_rate > 0) {
      held[k]->phase_ms = now;
      recover_next(held[k]);   /* may activate and free held[k] */
      break;
    }
  }
  b = pg->bg;
  if (b && (b->phase == PH_FAILED || now - b->phase_ms > 4 * pg->osd->op_timeout)) {
    log_info("peering", "%u.%x: background recovery %s; peering again", pg->pool, pg->id,
             b->phase == PH_FAILED ? "failed" : "stuck");
    peering_start(pg);
    return;
  }
  struct peering *p = pg->peering;
  if (!p)
    return;
  if (p->phase == PH_QUERY && p->hist_wait) {
    maybe_choose(p);   /* a map history fetch held back: ask again */
    if (pg->peering != p)
      return;
  }
  if (p->phase == PH_FAILED && p->fence_wall_ms) {
    if (util_wall_ms() >= p->fence_wall_ms)
      peering_start(pg);
  } else if (p->phase == PH_FAILED && now - p->phase_ms >= (p->blocked ? 3000 : 1000)) {
    peering_start(pg);
  }
  else if (p->phase != PH_FAILED && now - p->phase_ms > 4 * pg->osd->op_timeout)
    peering_fail(p, "stuck");
}

const char *peering_state(const struct pg *pg)
{
  if (pg->peering && pg->peering->incomplete)
    return "incomplete";
  if (pg->n_acting < pg->min_size || (pg->peering && pg->peering->blocked))
    return "down";
  if (pg->state == PG_ACTIVE && pg->bg) {
    bool bf = pg->bg->backfill_mask != 0;
    if (pg->n_acting < pg->size)
      return bf ? "active+undersized+backfilling+degraded" : "active+undersized+recovering+degraded";
    return bf ? "active+backfilling+degraded" : "active+recovering+degraded";
  }
  if (pg->state == PG_ACTIVE)
    return pg->n_acting < pg->size ? "active+undersized+degraded" : "active+clean";
  if (pg->peering && pg->peering->phase == PH_RECOVER)
    return pg->peering->backfill_mask ? "backfilling+degraded" : "recovering+degraded";
  return "peering";
}

void peering_progress(const struct pg *pg, uint64_t *left, uint64_t *total)
{
  const struct peering *p = pg->state == PG_ACTIVE ? pg->bg : pg->peering;
  *left = *total = 0;
  if (p && (p->bg || p->phase == PH_RECOVER)) {
    *total = p->n_items;
    *left = p->n_items - p->done_items;
  }
}

/* ---- member side ------------------------------------------------------------------ */

static struct pg *member_pg(struct osd *osd, uint32_t pool, uint32_t pgid, uint64_t epoch,
                            int *err)
{
  *err = 0;
  if (!osd->map || epoch > osd->epoch)
    monc_want_epoch(osd->monc, epoch);
  struct pg *pg = pg_get(osd, pool, pgid, true);
  if (!pg) {
    *err = -ENOMEM;
    return NULL;
  }
  if (epoch < pg->fence_epoch) {
    *err = -ESTALE;
    return NULL;
  }
  return pg;
}

/* A query from a newer epoch reaching the PG's primary of our (older) map:
 * that map must be ours before we answer, or we could go on serving reads
 * as primary after the new primary, having our answer, goes active (I2).
 * The frame waits in osd->map_waiting (re-dispatched on every new map;
 * dropped after osd_op_timeout, when the querier has given up). */
static bool query_wait_map(struct osd *osd, msgr_conn *c, const struct msgr_frame *f,
                           const Blk__PgQuery *q)
{
  if (!osd->map || q->epoch <= osd->epoch)
    return false;
  struct pg *pg = pg_get(osd, q->pool, q->pg, false);
  if (!pg || !pg->primary)
    return false;
  struct pg_parked *p = malloc(sizeof *p + f->payload_len + f->data_len);
  if (!p)
    return false;
  memset(p, 0, sizeof *p);
  p->conn = msgr_conn_get(c);
  p->f = *f;
  memcpy(p->buf, f->payload, f->payload_len);
  memcpy(p->buf + f->payload_len, f->data, f->data_len);
  p->f.payload = p->buf;
  p->f.data = p->buf + f->payload_len;
  p->deadline_ms = util_now_ms() + osd->op_timeout;
  p->err_on_timeout = -ETIMEDOUT;
  snprintf(p->why, sizeof p->why, "PG query at epoch %llu waits for that map",
           (unsigned long long)q->epoch);
  p->next = osd->map_waiting;
  osd->map_waiting = p;
  monc_want_epoch(osd->monc, q->epoch);
  return true;
}

void peering_on_query(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgQuery *q = blk__pg_query__unpack(NULL, f->payload_len, f->payload);
  if (q && query_wait_map(osd, c, f, q)) {
    blk__pg_query__free_unpacked(q, NULL);
    return;
  }
  Blk__PgInfo info = BLK__PG_INFO__INIT;
  Blk__PgVersion last = BLK__PG_VERSION__INIT, tail = BLK__PG_VERSION__INIT;
  Blk__PgLogEntry *es = NULL, **arr = NULL;
  Blk__PgVersion *vs = NULL;
  struct pg_log_ent *flat = NULL;
  char **past = NULL;
  char **unl = NULL;            /* names borrowed from pg */
  info.epoch = osd->epoch;
  int err = -EINVAL;
  struct pg *pg = q ? member_pg(osd, q->pool, q->pg, q->epoch, &err) : NULL;
  if (pg) {
    pg->fence_epoch = q->epoch;
    flat = own_log_flat(pg);
    arr = flat ? log_to_pb(flat, pg->log_n, &es, &vs) : NULL;
    if (!arr) {
      info.err = -ENOMEM;
    } else {
      info.log = arr;
      info.n_log = pg->log_n;
    }
    last.epoch = pg->last.epoch;
    last.v = pg->last.v;
    tail.epoch = pg->tail.epoch;
    tail.v = pg->tail.v;
    info.last = &last;
    info.tail = &tail;
    info.les = pg->les;
    past = calloc(pg->n_past + 1, sizeof *past);
    for (size_t k = 0; past && k < pg->n_past; k++) {
      char key[STORE_NAME_MAX + 1];
      pg_interval_key(key, sizeof key, &pg->past[k]);
      if (!(past[info.n_past] = strdup(key)))
        break;
      info.n_past++;
    }
    info.past = past;
    unl = calloc(pg->n_unlogged + 1, sizeof *unl);
    for (size_t k = 0; unl && k < pg->n_unlogged; k++)
      unl[k] = pg->unlogged[k].name;
    if (!unl)
      info.err = -ENOMEM;
    info.unlogged = unl;
    info.n_unlogged = unl ? pg->n_unlogged : 0;
  } else {
    info.err = err;
  }
  msgr_reply_pb(c, f, MSG_PG_QUERY, (const ProtobufCMessage *)&info, NULL, 0);
  for (size_t k = 0; k < info.n_past; k++)
    free(past[k]);
  free(past);
  free(unl);
  free(arr);
  free(es);
  free(vs);
  free(flat);
  if (q)
    blk__pg_query__free_unpacked(q, NULL);
}

void peering_on_pull(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgObject *o = blk__pg_object__unpack(NULL, f->payload_len, f->payload);
  struct pctx *x = o ? calloc(1, sizeof *x) : NULL;
  if (!x || !(x->name = strdup(o->name))) {
    Blk__PgObject r = BLK__PG_OBJECT__INIT;
    r.err = o ? -ENOMEM : -EINVAL;
    msgr_reply_pb(c, f, MSG_PG_PULL, (const ProtobufCMessage *)&r, NULL, 0);
    free(x);
  } else {
    x->osd = osd;
    x->pool = o->pool;
    x->pgid = o->pg;
    x->conn = msgr_conn_get(c);
    x->tid = f->tid;
    local_read_start(x);
  }
  if (o)
    blk__pg_object__free_unpacked(o, NULL);
}

static void member_reply_cb(void *arg, int result)
{
  struct pctx *x = arg;
  pg_store_pending--;
  Blk__PgObject r = BLK__PG_OBJECT__INIT;
  Blk__RepOpReply rr = BLK__REP_OP_REPLY__INIT;
  struct msgr_frame req = { .tid = x->tid };
  if (x->idx == MSG_PG_PUSH) {
    r.err = result;
    r.epoch = x->osd->epoch;
    msgr_reply_pb(x->conn, &req, MSG_PG_PUSH, (const ProtobufCMessage *)&r, NULL, 0);
  } else {
    rr.err = result;
    rr.epoch = x->osd->epoch;
    msgr_reply_pb(x->conn, &req, MSG_PG_ACTIVATE, (const ProtobufCMessage *)&rr, NULL, 0);
  }
  pctx_free(x);
}

/* Member side: queue t and answer the requester's frame f (type `type`)
 * from member_reply_cb once the store has made it durable.  Takes t and
 * ownership of x (its reply fields are filled here). */
static void queue_then_reply(struct osd *osd, msgr_conn *c, const struct msgr_frame *f,
                             int type, store_txn *t, struct pctx *x)
{
  x->osd = osd;
  x->conn = msgr_conn_get(c);
  x->tid = f->tid;
  x->idx = type;
  pg_store_pending++;
  store_queue(osd->st, t, member_reply_cb, x);
}

void peering_on_push(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgObject *o = blk__pg_object__unpack(NULL, f->payload_len, f->payload);
  int err = -EINVAL;
  struct pg *pg = NULL;
  if (o && strlen(o->name) <= PG_NAME_MAX && o->name[0] != '@' &&
      snap_pgobj_data_ok(o, f->data, f->data_len))
    pg = member_pg(osd, o->pool, o->pg, o->epoch, &err);
  else if (o)
    err = -EBADMSG;
  store_txn *t = pg ? store_txn_new() : NULL;
  struct pctx *x = t ? calloc(1, sizeof *x) : NULL;
  if (x) {
    struct obj_state os = { o->exists, f->data, o->size, o->attrs, o->omap,
                            o->n_attrs, o->n_omap, o->snapobjs, o->n_snapobjs, f->data_len };
    err = install_txn(t, pg, o->name, &os);
  }
  if (!x || err < 0) {
    Blk__PgObject r = BLK__PG_OBJECT__INIT;
    r.err = err < 0 ? err : -ENOMEM;
    msgr_reply_pb(c, f, MSG_PG_PUSH, (const ProtobufCMessage *)&r, NULL, 0);
    store_txn_free(t);
    free(x);
  } else {
    queue_then_reply(osd, c, f, MSG_PG_PUSH, t, x);
  }
  if (o)
    blk__pg_object__free_unpacked(o, NULL);
}

void peering_on_activate(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgActivate *a = blk__pg_activate__unpack(NULL, f->payload_len, f->payload);
  int err = -EINVAL;
  struct pg *pg = a && a->last && a->tail ? member_pg(osd, a->pool, a->pg, a->epoch, &err) : NULL;
  struct pg_log_ent *l = NULL;
  store_txn *t = NULL;
  struct pctx *x = NULL;
  if (pg && (err = log_from_pb(a->log, a->n_log, &l)) == 0) {
    t = store_txn_new();
    x = calloc(1, sizeof *x);
    struct pg_ver last = { a->last->epoch, a->last->v }, tail = { a->tail->epoch, a->tail->v };
    err = t && x ? adopt_log(pg, t, l, a->n_log, last, tail, a->epoch) : -ENOMEM;
    if (err == 0) {
      pg->fence_epoch = a->epoch;
      pg->went_active = true;
      if (!pg->primary)
        pg->state = PG_REPLICA;
    }
    for (size_t i = 0; i < a->n_log; i++)
      free(l[i].name);
    free(l);
  }
  if (err < 0 || !x) {
    Blk__RepOpReply r = BLK__REP_OP_REPLY__INIT;
    r.err = err < 0 ? err : -ENOMEM;
    r.epoch = osd->epoch;
    msgr_reply_pb(c, f, MSG_PG_ACTIVATE, (const ProtobufCMessage *)&r, NULL, 0);
    store_txn_free(t);
    free(x);
  } else {
    queue_then_reply(osd, c, f, MSG_PG_ACTIVATE, t, x);
  }
  if (a)
    blk__pg_activate__free_unpacked(a, NULL);
}
