/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the OSD's copy of the cluster map history, from which a
 * primary derives a PG's past intervals (docs/osd.md "Past intervals
 * from the map history").  It holds the maps of the epochs this OSD
 * applied (each map its subscription publishes is noted) and those it
 * fetched: the subscription may skip epochs (several incrementals in one
 * update, a full map after a gap, the epochs before this process
 * started), and peering asks the monitors for what is missing
 * (MSG_MON_MAP_HISTORY -> MonReply.history: the full map of the first
 * missing epoch and the incrementals after it, rebuilt with
 * clustermap_apply as the subscription does).  One fetch at a time; when
 * it is answered every peering waiting for history runs its decision
 * again (peering_history_ready; peering_tick retries a fetch held back
 * after a failure).  A monitor that no longer keeps `from`
 * answers -ENOENT: the epochs up to `from` are then marked unavailable
 * and peering keeps the PG "incomplete" instead of guessing — unless the
 * answer's history floor (every PG started at or after it) says those
 * epochs precede the PG's last start anyway (maphist_floor).
 *
 * The maps live in an array sorted by epoch, at most MAPHIST_MAX (the
 * oldest go first), and only back to the oldest `les` of this OSD's PGs
 * beyond the osd_map_cache_min newest (mh_trim); a map's placement
 * (pgmap) is built when first needed.
 * Everything runs on the OSD's loop thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"
#include "proto/mon.pb-c.h"

#define MAPHIST_MAX 1000
#define MAPHIST_FETCH_TIMEOUT_MS 10000

struct maphist_ent {
  struct cluster_map *map;      /* owned */
  struct pgmap *pm;             /* owned; NULL until needed */
};

struct maphist {
  struct maphist_ent *v;        /* sorted by epoch */
  size_t n, cap;
  bool fetching;
  int64_t next_fetch_ms;        /* after a failed fetch: not before (monotonic) */
  uint64_t unavailable_upto;    /* the monitors keep no map up to this epoch */
  uint64_t floor;               /* the monitors' history floor, last answer */
};

static void ent_free(struct maphist_ent *e)
{
  clustermap_free(e->map);
  pgmap_free(e->pm);
}

void maphist_free(struct osd *osd)
{
  struct maphist *mh = osd->maphist;
  if (!mh)
    return;
  for (size_t i = 0; i < mh->n; i++)
    ent_free(&mh->v[i]);
  free(mh->v);
  free(mh);
  osd->maphist = NULL;
}

static struct maphist *mh_get(struct osd *osd)
{
  if (!osd->maphist)
    osd->maphist = calloc(1, sizeof *osd->maphist);
  return osd->maphist;
}

/* Index of the first entry with epoch >= e. */
static size_t mh_lower(const struct maphist *mh, uint64_t e)
{
  size_t lo = 0, hi = mh->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (mh->v[mid].map->epoch < e)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static struct maphist_ent *mh_find(struct maphist *mh, uint64_t e)
{
  size_t i = mh_lower(mh, e);
  return i < mh->n && mh->v[i].map->epoch == e ? &mh->v[i] : NULL;
}

/* Take ownership of m (freed on failure or when already known). */
static void mh_insert(struct maphist *mh, struct cluster_map *m)
{
  size_t i = mh_lower(mh, m->epoch);
  if (i < mh->n && mh->v[i].map->epoch == m->epoch) {
    clustermap_free(m);
    return;
  }
  if (mh->n == MAPHIST_MAX) {
    if (i == 0) {   /* older than everything kept */
      clustermap_free(m);
      return;
    }
    ent_free(&mh->v[0]);
    memmove(&mh->v[0], &mh->v[1], (mh->n - 1) * sizeof *mh->v);
    mh->n--;
    i--;
  }
  if (mh->n == mh->cap) {
    size_t nc = mh->cap ? 2 * mh->cap : 64;
    struct maphist_ent *x = realloc(mh->v, nc * sizeof *x);
    if (!x) {
      clustermap_free(m);
      return;
    }
    mh->v = x;
    mh->cap = nc;
  }
  memmove(&mh->v[i + 1], &mh->v[i], (mh->n - i) * sizeof *mh->v);
  mh->v[i].map = m;
  mh->v[i].pm = NULL;
  mh->n++;
}

/* Drop the maps no local PG needs: those before the oldest `les` of this
 * OSD's activated PGs, keeping the osd_map_cache_min newest.  A PG new to
 * this OSD that needs older epochs fetches them again (the monitors keep
 * them back to their history floor): the maps here are a cache. */
static void mh_trim(struct osd *osd, struct maphist *mh)
{
  size_t keep = (size_t)config_get_int(osd->cfg, "osd_map_cache_min");
  if (keep < 1)
    keep = 1;
  if (mh->n <= keep)
    return;
  uint64_t need = mh->v[mh->n - keep].map->epoch;
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (const struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext)
      if (pg->les && pg->les < need)
        need = pg->les;
  size_t k = mh_lower(mh, need);
  if (!k)
    return;
  for (size_t i = 0; i < k; i++)
    ent_free(&mh->v[i]);
  memmove(&mh->v[0], &mh->v[k], (mh->n - k) * sizeof *mh->v);
  mh->n -= k;
  log_debug("maphist", "dropped %zu maps; keeping epochs %llu..%llu", k,
            (unsigned long long)mh->v[0].map->epoch,
            (unsigned long long)mh->v[mh->n - 1].map->epoch);
}

void maphist_note(struct osd *osd, const struct cluster_map *m)
{
  struct maphist *mh = mh_get(osd);
  if (!mh || mh_find(mh, m->epoch))
    return;
  struct cluster_map *c = clustermap_dup(m);
  if (c)
    mh_insert(mh, c);
  mh_trim(osd, mh);
}

struct set_ctx {
  struct maphist *mh;
  uint32_t pool, pg;
};

/* pplan_epoch_fn: the PG's up set (= acting set) in epoch e, as
 * pg_on_map computes it. */
static int epoch_set(void *arg, uint64_t e, struct pplan_epoch_set *out)
{
  struct set_ctx *sc = arg;
  struct maphist_ent *x = mh_find(sc->mh, e);
  if (!x)
    return -ENOENT;
  memset(out, 0, sizeof *out);
  const struct cm_pool *pool = clustermap_pool_by_id(x->map, sc->pool);
  if (!pool || sc->pg >= pool->pg_num)
    return 0;   /* no such PG then: no members, no writes */
  if (!x->pm && !(x->pm = pgmap_build(x->map)))
    return -ENOMEM;
  int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr, nu;
  if (pgmap_pg_sets(x->pm, x->map, pool, sc->pg, raw, &nr, up, &nu) < 0)
    return 0;
  if (nu > PPLAN_MAX_SIZE)
    return -EINVAL;
  for (size_t i = 0; i < nu; i++) {
    const struct cm_osd *o = clustermap_osd(x->map, up[i]);
    out->acting[i] = up[i];
    out->up_from[i] = o ? o->up_from : 0;
  }
  out->n = nu;
  out->min_size = pool->min_size;
  return 0;
}

int maphist_intervals(struct osd *osd, uint32_t pool, uint32_t pg, uint64_t from,
                      uint64_t before, struct pplan_interval *iv, size_t *n_iv, uint64_t *missing)
{
  struct maphist *mh = mh_get(osd);
  *n_iv = 0;
  if (!mh)
    return -ENOMEM;
  /* the first epoch that can be known: the monitors' oldest, and no
   * more than MAPHIST_MAX epochs before the current one (so that every
   * map fetched fits: the oldest held goes first) */
  uint64_t first = mh->unavailable_upto + 1;
  if (osd->epoch >= MAPHIST_MAX && osd->epoch - MAPHIST_MAX + 1 > first)
    first = osd->epoch - MAPHIST_MAX + 1;
  if (from < first && from < before) {
    if (missing)
      *missing = first;
    return -ESRCH;
  }
  struct set_ctx sc = { mh, pool, pg };
  uint64_t miss = 0;
  int r = pplan_intervals_from_history(from, before, epoch_set, &sc, iv, n_iv, &miss);
  if (missing)
    *missing = miss;
  return r;
}

/* Take the maps of a history answer. */
static void take_history(struct maphist *mh, const Blk__MapUpdate *u)
{
  struct cluster_map *m;
  if (!u->full || clustermap_from_pb(u->full, &m) < 0) {
    log_warn("maphist", "invalid map history answer");
    return;
  }
  char err[160];
  for (size_t i = 0; i < u->n_txns; i++) {
    struct cluster_map *nx = clustermap_dup(m);
    int r = nx ? clustermap_apply(nx, u->txns[i], err, sizeof err) : -ENOMEM;
    mh_insert(mh, m);
    if (r != 1) {
      log_warn("maphist", "map history: txn for epoch %llu does not apply (%d: %s)",
               (unsigned long long)(u->from + i + 1), r, r == -ENOMEM ? "out of memory" : err);
      clustermap_free(nx);
      return;
    }
    m = nx;
  }
  mh_insert(mh, m);
}

struct fetch_ctx {
  struct osd *osd;
  uint64_t from, to;
};

static void on_history(void *arg, int err, const Blk__MonReply *rep)
{
  struct fetch_ctx *fc = arg;
  struct osd *osd = fc->osd;
  if (err == -ECANCELED) {   /* monc_free: the OSD is stopping */
    free(fc);
    return;
  }
  struct maphist *mh = osd->maphist;
  if (mh) {
    mh->fetching = false;
    if (err || rep->err || !rep->history)   /* a lagging monitor, a timeout: not at once */
      mh->next_fetch_ms = util_now_ms() + 500;
    if (err) {
      log_warn("maphist", "map history %llu..%llu: no answer (%d)", (unsigned long long)fc->from,
               (unsigned long long)fc->to, err);
    }
    if (!err && rep->history_floor > mh->floor)
      mh->floor = rep->history_floor;
    if (err) {
    } else if (rep->err == -ENOENT) {
      uint64_t upto = rep->history_first > fc->from ? rep->history_first - 1 : fc->from;
      if (upto > mh->unavailable_upto)
        mh->unavailable_upto = upto;
      log_warn("maphist", "map history %llu..%llu: %s", (unsigned long long)fc->from,
               (unsigned long long)fc->to, rep->message ? rep->message : "not kept");
    } else if (rep->err) {
      log_warn("maphist", "map history %llu..%llu: %s (%d)", (unsigned long long)fc->from,
               (unsigned long long)fc->to, rep->message ? rep->message : "", rep->err);
    } else if (rep->history) {
      take_history(mh, rep->history);
      log_info("maphist", "fetched the maps of epochs %llu..%llu", (unsigned long long)fc->from,
               (unsigned long long)rep->history->to);
    }
  }
  free(fc);
  peering_history_ready(osd);
}

uint64_t maphist_floor(struct osd *osd)
{
  return osd->maphist ? osd->maphist->floor : 0;
}

int maphist_fetch(struct osd *osd, uint64_t from, uint64_t to)
{
  struct maphist *mh = mh_get(osd);
  if (!mh)
    return -ENOMEM;
  if (mh->fetching || util_now_ms() < mh->next_fetch_ms)
    return 0;   /* peering_tick asks again */
  /* only the epochs missing from `from` on */
  while (from <= to && mh_find(mh, from))
    from++;
  if (from > to)
    return 0;
  uint64_t last = from;
  while (last < to && !mh_find(mh, last + 1))
    last++;
  struct fetch_ctx *fc = calloc(1, sizeof *fc);
  if (!fc)
    return -ENOMEM;
  fc->osd = osd;
  fc->from = from;
  fc->to = last;
  Blk__MapHistoryReq q = BLK__MAP_HISTORY_REQ__INIT;
  q.from = from;
  q.to = last;
  int r = monc_call_async(osd->monc, MSG_MON_MAP_HISTORY, (const ProtobufCMessage *)&q,
                          MAPHIST_FETCH_TIMEOUT_MS, on_history, fc);
  if (r < 0) {
    free(fc);
    return r;
  }
  mh->fetching = true;
  log_info("maphist", "asking the monitors for the maps of epochs %llu..%llu",
           (unsigned long long)from, (unsigned long long)last);
  return 0;
}
