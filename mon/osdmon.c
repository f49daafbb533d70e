/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: OSD liveness on the monitors (DESIGN.md §6, docs/osd.md).
 * Only the leader acts; every decision becomes a Raft-committed MapTxn
 * (OsdMark), so all monitors and subscribers see the same map.
 *  - Beacons: every OSD sends MSG_OSD_BEACON to the leader each
 *    osd_beacon_interval.  An up OSD silent for mon_osd_beacon_grace is
 *    marked down.  The ack of a beacon renews the OSD's lease, so it is
 *    given only to an OSD up in the map and not being marked down.  A new
 *    leader (or an OSD that just booted: its up_from
 *    changed) starts every clock afresh, so a leadership change never marks
 *    anyone down early.
 *  - Failure reports: OSDs report peers that miss heartbeats
 *    (MSG_OSD_FAILURE).  A target is marked down once reporters from at
 *    least mon_osd_min_down_reporters distinct failure domains report it
 *    within mon_osd_beacon_grace: distinct hosts, or distinct OSDs when all
 *    OSDs share one host.  Reports from down reporters, or based on a map
 *    older than the target's last boot, are ignored; alive = true
 *    withdraws a report.
 *  - Auto-out: a down OSD that is still in is marked out
 *    mon_osd_down_out_interval after it went down (map stamp, leader's
 *    wall clock).
 *  - PG stats: primaries send PgStats; the leader keeps the last report of
 *    each OSD in memory (not replicated) and counts every PG once, in the
 *    state of its newest report (by map epoch) from an up OSD, for
 *    `blkctl status`.
 *  - Map history floor (docs/monitor.md): the leader also keeps, per PG,
 *    the newest last epoch started (les) any primary reported — kept when
 *    the reports stop (a PG whose primary is down still needs its maps),
 *    dropped only with its pool.  The floor is the oldest epoch any PG
 *    needs: min over the PGs of every pool of max(les, the pool's creation
 *    epoch) (a PG not reported to this leader counts from its pool's
 *    creation, so a new leader does not raise the floor before it has
 *    heard of every PG).  When it is at least min(50, mon_map_history)
 *    epochs above the committed floor, the leader commits it (a MapTxn
 *    with only history_floor): every monitor then trims its history the
 *    same way (mon/state.c).  The floor never goes down: les only grows,
 *    and a new pool starts after it.
 * The tick runs every 200 ms; a proposal for an OSD is not repeated within
 * a second while the previous one commits.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "mon/mon.h"
#include "proto/osd.pb-c.h"

#define OSDMON_MAX_REPORTS 16
#define OSDMON_MAX_STATES 32

struct osdmon_report {
  int32_t reporter;
  int64_t ms;
};

/* One PG as reported by its primary; state indexes osdmon.state_names. */
struct osdmon_pgstat {
  uint32_t pool, pg;
  uint64_t epoch;
  uint8_t state;
  uint32_t rec_left, rec_total;   /* recovery progress, objects */
};

/* The newest les reported for one PG (sorted by pool, pg). */
struct osdmon_les {
  uint32_t pool, pg;
  uint64_t les;
};

struct osdmon_osd {
  int64_t beacon_ms;            /* monotonic; 0 = clock not started */
  uint64_t up_from;
  int64_t proposed_ms;
  int64_t down_proposed_ms;     /* this leader proposed marking it down */
  struct osdmon_report reports[OSDMON_MAX_REPORTS];
  int n_reports;
  int64_t stats_ms;
  struct osdmon_pgstat *pgs;
  size_t n_pgs;
  uint64_t used_bytes, total_bytes;   /* data area, from the last PgStats */
  uint32_t space;                     /* OSD_SPACE_* as reported */
};

struct osdmon {
  struct mon *mon;
  struct event *tick;
  struct osdmon_osd *osds;
  size_t n_osds;
  bool leader;
  char state_names[OSDMON_MAX_STATES][64];   /* interned PG state names */
  int n_state_names;
  struct osdmon_les *les;       /* sorted by (pool, pg) */
  size_t n_les, cap_les;
  int64_t floor_ms;             /* last history floor computation */
  int64_t floor_proposed_ms;
};

static int cmp_les(const void *a, const void *b)
{
  const struct osdmon_les *x = a, *y = b;
  if (x->pool != y->pool)
    return x->pool < y->pool ? -1 : 1;
  return x->pg < y->pg ? -1 : x->pg > y->pg;
}

/* The les entry of (pool, pg), or NULL if no primary reported it. */
static struct osdmon_les *les_find(const struct osdmon *om, uint32_t pool, uint32_t pg)
{
  struct osdmon_les key = { pool, pg, 0 };
  return om->n_les ? bsearch(&key, om->les, om->n_les, sizeof key, cmp_les) : NULL;
}

/* Note a reported les (keeps the newest).  An allocation failure only
 * leaves the PG unreported: the floor then stays lower (safe). */
static void les_note(struct osdmon *om, uint32_t pool, uint32_t pg, uint64_t les)
{
  struct osdmon_les *e = les_find(om, pool, pg);
  if (e) {
    if (les > e->les)
      e->les = les;
    return;
  }
  if (om->n_les == om->cap_les) {
    size_t nc = om->cap_les ? 2 * om->cap_les : 64;
    struct osdmon_les *v = realloc(om->les, nc * sizeof *v);
    if (!v)
      return;
    om->les = v;
    om->cap_les = nc;
  }
  size_t lo = 0, hi = om->n_les;
  struct osdmon_les key = { pool, pg, les };
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cmp_les(&om->les[mid], &key) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  memmove(om->les + lo + 1, om->les + lo, (om->n_les - lo) * sizeof *om->les);
  om->les[lo] = key;
  om->n_les++;
}

/* Drop the entries of PGs that no longer exist (deleted pools). */
static void les_prune(struct osdmon *om, const struct cluster_map *m)
{
  size_t k = 0;
  for (size_t i = 0; i < om->n_les; i++) {
    const struct cm_pool *p = clustermap_pool_by_id(m, om->les[i].pool);
    if (p && om->les[i].pg < p->pg_num)
      om->les[k++] = om->les[i];
  }
  om->n_les = k;
}

/* The oldest epoch any PG of m needs the maps from (m's epoch when there
 * is no PG); *n_trimmed = reported PGs needing epochs before `first`. */
static uint64_t les_floor(const struct osdmon *om, const struct cluster_map *m, uint64_t first,
                          uint32_t *n_trimmed)
{
  uint64_t floor = m->epoch;
  uint32_t n = 0;
  for (size_t i = 0; i < m->n_pools; i++) {
    const struct cm_pool *p = &m->pools[i];
    for (uint32_t pg = 0; pg < p->pg_num; pg++) {
      const struct osdmon_les *e = les_find(om, p->id, pg);
      uint64_t need = e && e->les > p->created_epoch ? e->les : p->created_epoch;
      if (need < floor)
        floor = need;
      n += e && need < first;
    }
  }
  if (n_trimmed)
    *n_trimmed = n;
  return floor;
}

/* Leader: commit a higher history floor once it advanced by a step. */
static void floor_tick(struct osdmon *om, int64_t now)
{
  struct mon *mon = om->mon;
  if (now - om->floor_ms < 1000)
    return;
  om->floor_ms = now;
  const struct cluster_map *m = mon_state_map(mon->state);
  if (!m->epoch)
    return;
  les_prune(om, m);
  uint64_t floor = les_floor(om, m, 0, NULL);
  uint64_t cur = mon_state_history_floor(mon->state);
  int64_t step = config_get_int(mon->cfg, "mon_map_history");
  if (step > 50)
    step = 50;
  if (step < 1)
    step = 1;
  if (floor < cur + (uint64_t)step ||
      (om->floor_proposed_ms && now - om->floor_proposed_ms < 5000))
    return;
  om->floor_proposed_ms = now;
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.req_id = "";
  txn.history_floor = floor;
  log_info("osdmon", "map history floor %llu -> %llu (the oldest last epoch started of any PG)",
           (unsigned long long)cur, (unsigned long long)floor);
  int r = commands_propose(mon, &txn);
  if (r < 0)
    log_warn("osdmon", "cannot propose the map history floor: %s", strerror(-r));
}

static struct osdmon_osd *osd_slot(struct osdmon *om, int32_t id)
{
  if (id < 0 || id >= CM_MAX_OSDS)
    return NULL;
  if ((size_t)id >= om->n_osds) {
    size_t n = (size_t)id + 16;
    struct osdmon_osd *o = realloc(om->osds, n * sizeof *o);
    if (!o)
      return NULL;
    memset(o + om->n_osds, 0, (n - om->n_osds) * sizeof *o);
    om->osds = o;
    om->n_osds = n;
  }
  return &om->osds[id];
}

static void reply_status(struct mon *mon, msgr_conn *c, const struct msgr_frame *f, int err,
                         const char *msg)
{
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  rep.err = err;
  rep.message = (char *)(msg ? msg : "");
  rep.leader_addr = (char *)(err == -ENOTCONN ? quorum_leader_addr(mon) : "");
  rep.epoch = mon_state_map(mon->state)->epoch;
  msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&rep, NULL, 0);
}

static void propose_mark(struct osdmon *om, int32_t id, Blk__OsdMark__What what,
                         const char *why)
{
  struct osdmon_osd *s = osd_slot(om, id);
  int64_t now = util_now_ms();
  if (!s || (s->proposed_ms && now - s->proposed_ms < 1000))
    return;
  s->proposed_ms = now;
  if (what == BLK__OSD_MARK__WHAT__DOWN)
    s->down_proposed_ms = now;   /* no more lease renewals (on_beacon) */
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__OsdMark mark = BLK__OSD_MARK__INIT;
  int32_t ids[1] = { id };
  mark.ids = ids;
  mark.n_ids = 1;
  mark.what = what;
  txn.osd_mark = &mark;
  txn.req_id = "";
  log_info("osdmon", "marking osd.%d %s: %s", id,
           what == BLK__OSD_MARK__WHAT__DOWN ? "down" : "out", why);
  int r = commands_propose(om->mon, &txn);
  if (r < 0)
    log_warn("osdmon", "cannot propose marking osd.%d: %s", id, strerror(-r));
}

/* Distinct failure domains among the live reports on target. */
static int count_domains(struct osdmon *om, const struct cluster_map *m,
                         struct osdmon_osd *t, int64_t now, int64_t grace)
{
  bool one_host = true;
  const char *h0 = NULL;
  for (size_t i = 0; i < m->n_osds; i++) {
    if (!m->osds[i].exists)
      continue;
    if (!h0)
      h0 = m->osds[i].host;
    else if (strcmp(h0, m->osds[i].host))
      one_host = false;
  }
  const char *seen[OSDMON_MAX_REPORTS];
  int n = 0;
  for (int i = 0; i < t->n_reports; i++) {
    const struct cm_osd *r = clustermap_osd(m, t->reports[i].reporter);
    if (!r || !r->up || now - t->reports[i].ms > grace)
      continue;
    const char *dom = r->host;
    bool dup = false;
    for (int k = 0; k < n && !dup; k++)
      dup = one_host ? false : !strcmp(seen[k], dom);
    if (!dup)
      seen[n++] = dom;
  }
  (void)om;
  return n;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
  struct osdmon *om = arg;
  struct mon *mon = om->mon;
  (void)fd;
  (void)what;
  bool leader = raft_is_leader(mon->raft);
  int64_t now = util_now_ms();
  if (!leader) {
    om->leader = false;
    return;
  }
  const struct cluster_map *m = mon_state_map(mon->state);
  if (!om->leader) {
    /* new leadership: every clock starts now */
    om->leader = true;
    for (size_t i = 0; i < om->n_osds; i++) {
      om->osds[i].beacon_ms = 0;
      om->osds[i].n_reports = 0;
      om->osds[i].proposed_ms = 0;
      om->osds[i].down_proposed_ms = 0;
    }
    om->floor_proposed_ms = 0;
  }
  floor_tick(om, now);
  int64_t grace = config_get_int(mon->cfg, "mon_osd_beacon_grace");
  int64_t out_after = config_get_int(mon->cfg, "mon_osd_down_out_interval");
  int64_t min_rep = config_get_int(mon->cfg, "mon_osd_min_down_reporters");
  int64_t wall = util_wall_ms();
  for (size_t i = 0; i < m->n_osds; i++) {
    const struct cm_osd *o = &m->osds[i];
    if (!o->exists)
      continue;
    struct osdmon_osd *s = osd_slot(om, o->id);
    if (!s)
      return;
    if (s->up_from != o->up_from) {
      s->up_from = o->up_from;
      s->beacon_ms = now;
      s->n_reports = 0;
      s->down_proposed_ms = 0;
    }
    if (o->up) {
      if (!s->beacon_ms)
        s->beacon_ms = now;
      char why[96];
      if (now - s->beacon_ms > grace) {
        snprintf(why, sizeof why, "no beacon for %lld ms", (long long)(now - s->beacon_ms));
        propose_mark(om, o->id, BLK__OSD_MARK__WHAT__DOWN, why);
      } else if (s->n_reports) {
        int n = count_domains(om, m, s, now, grace);
        if (n >= min_rep) {
          snprintf(why, sizeof why, "reported failed by %d reporters in distinct domains", n);
          propose_mark(om, o->id, BLK__OSD_MARK__WHAT__DOWN, why);
        }
      }
    } else if (o->in && out_after > 0 && o->down_stamp_ms &&
               wall - o->down_stamp_ms > out_after) {
      propose_mark(om, o->id, BLK__OSD_MARK__WHAT__OUT, "down for longer than mon_osd_down_out_interval");
    }
  }
}

static void on_beacon(struct osdmon *om, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__OsdBeacon *b = blk__osd_beacon__unpack(NULL, f->payload_len, f->payload);
  if (!b) {
    reply_status(om->mon, c, f, -EINVAL, "malformed beacon");
    return;
  }
  struct osdmon_osd *s = osd_slot(om, b->id);
  int64_t now = util_now_ms();
  if (s)
    s->beacon_ms = now;
  /* The ack renews the OSD's lease (docs/osd.md "Lease"): only for an OSD
   * up in the committed map that this leader has not proposed to mark
   * down (a proposal stamps the map with a time that new primaries wait
   * from; an ack after it could outlive that wait).  A proposal that did
   * not commit within 5 s is taken as lost. */
  const struct cm_osd *o = clustermap_osd(mon_state_map(om->mon->state), b->id);
  char why[96];
  int err = 0;
  if (!o || !o->up) {
    snprintf(why, sizeof why, "osd.%d is not up in epoch %llu", b->id,
             (unsigned long long)mon_state_map(om->mon->state)->epoch);
    err = -ESTALE;
  } else if (s && s->down_proposed_ms && now - s->down_proposed_ms < 5000) {
    snprintf(why, sizeof why, "osd.%d is being marked down", b->id);
    err = -ESTALE;
  }
  blk__osd_beacon__free_unpacked(b, NULL);
  reply_status(om->mon, c, f, err, err ? why : NULL);
}

static void on_failure(struct osdmon *om, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__OsdFailure *rp = blk__osd_failure__unpack(NULL, f->payload_len, f->payload);
  if (!rp) {
    reply_status(om->mon, c, f, -EINVAL, "malformed failure report");
    return;
  }
  const struct cluster_map *m = mon_state_map(om->mon->state);
  const struct cm_osd *t = clustermap_osd(m, rp->target);
  struct osdmon_osd *s = osd_slot(om, rp->target);
  if (t && s && rp->reporter != rp->target) {
    int i;
    for (i = 0; i < s->n_reports; i++)
      if (s->reports[i].reporter == rp->reporter)
        break;
    if (rp->alive || rp->epoch < t->up_from) {
      if (i < s->n_reports)
        s->reports[i] = s->reports[--s->n_reports];
    } else {
      if (i == s->n_reports && s->n_reports < OSDMON_MAX_REPORTS) {
        s->n_reports++;
        log_info("osdmon", "osd.%d reports osd.%d failed for %u ms", rp->reporter, rp->target,
                 rp->failed_for_ms);
      }
      if (i < s->n_reports) {
        s->reports[i].reporter = rp->reporter;
        s->reports[i].ms = util_now_ms();
      }
    }
  }
  blk__osd_failure__free_unpacked(rp, NULL);
  reply_status(om->mon, c, f, 0, NULL);
}

static void on_pg_stats(struct osdmon *om, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__PgStats *ps = blk__pg_stats__unpack(NULL, f->payload_len, f->payload);
  if (!ps) {
    reply_status(om->mon, c, f, -EINVAL, "malformed pg stats");
    return;
  }
  struct osdmon_osd *s = osd_slot(om, ps->osd);
  struct osdmon_pgstat *arr = s ? malloc((ps->n_pgs + 1) * sizeof *arr) : NULL;
  if (arr) {
    size_t n = 0;
    for (size_t i = 0; i < ps->n_pgs; i++) {
      const char *st = ps->pgs[i]->state;
      int k;
      for (k = 0; k < om->n_state_names; k++)
        if (!strcmp(om->state_names[k], st))
          break;
      if (k == om->n_state_names) {
        if (k == OSDMON_MAX_STATES || strlen(st) >= sizeof om->state_names[0])
          continue;
        strcpy(om->state_names[k], st);
        om->n_state_names++;
      }
      const Blk__PgStats__Pg *q = ps->pgs[i];
      les_note(om, q->pool, q->pg, q->les);
      arr[n++] = (struct osdmon_pgstat){ q->pool, q->pg, ps->epoch, (uint8_t)k,
                                         (uint32_t)(q->recovery_left > UINT32_MAX ? UINT32_MAX : q->recovery_left),
                                         (uint32_t)(q->recovery_total > UINT32_MAX ? UINT32_MAX : q->recovery_total) };
    }
    free(s->pgs);
    s->pgs = arr;
    s->n_pgs = n;
    s->stats_ms = util_now_ms();
    s->used_bytes = ps->used_bytes;
    s->total_bytes = ps->total_bytes;
    s->space = ps->space;
  }
  blk__pg_stats__free_unpacked(ps, NULL);
  reply_status(om->mon, c, f, 0, NULL);
}

void osdmon_on_frame(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct osdmon *om = mon->osdmon;
  if (!raft_is_leader(mon->raft)) {
    reply_status(mon, c, f, -ENOTCONN, "not the leader");
    return;
  }
  switch (f->type) {
  case MSG_OSD_BEACON: on_beacon(om, c, f); break;
  case MSG_OSD_FAILURE: on_failure(om, c, f); break;
  case MSG_PG_STATS: on_pg_stats(om, c, f); break;
  default: break;
  }
}

static int cmp_pgstat(const void *a, const void *b)
{
  const struct osdmon_pgstat *x = a, *y = b;
  if (x->pool != y->pool)
    return x->pool < y->pool ? -1 : 1;
  if (x->pg != y->pg)
    return x->pg < y->pg ? -1 : 1;
  return x->epoch > y->epoch ? -1 : x->epoch < y->epoch;   /* newest first */
}

/* The last stats report of OSD i if it is up and the report is recent
 * (within mon_osd_beacon_grace), else NULL. */
static const struct osdmon_osd *fresh_stats(struct mon *mon, size_t i)
{
  struct osdmon *om = mon->osdmon;
  const struct cm_osd *o = clustermap_osd(mon_state_map(mon->state), (int32_t)i);
  const struct osdmon_osd *s = &om->osds[i];
  if (!o || !o->up || !s->stats_ms ||
      util_now_ms() - s->stats_ms > config_get_int(mon->cfg, "mon_osd_beacon_grace"))
    return NULL;
  return s;
}

/* Each PG counted once, in the state of its newest report (primaries
 * change with the map; an old primary's last report may linger). */
int osdmon_fill_pg_states(struct mon *mon, Blk__MonReply *rep)
{
  struct osdmon *om = mon->osdmon;
  const struct cluster_map *m = mon_state_map(mon->state);
  rep->history_first = mon_state_history_first(mon->state);
  rep->history_floor = mon_state_history_floor(mon->state);
  les_floor(om, m, rep->history_first, &rep->history_trimmed_pgs);
  size_t total = 0;
  for (size_t i = 0; i < om->n_osds; i++)
    total += om->osds[i].n_pgs;
  if (!total)
    return 0;
  struct osdmon_pgstat *all = malloc(total * sizeof *all);
  if (!all)
    return -ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < om->n_osds; i++) {
    const struct osdmon_osd *s = fresh_stats(mon, i);
    if (!s)
      continue;
    for (size_t k = 0; k < s->n_pgs; k++) {
      const struct cm_pool *p = clustermap_pool_by_id(m, s->pgs[k].pool);
      if (p && s->pgs[k].pg < p->pg_num)
        all[n++] = s->pgs[k];
    }
  }
  qsort(all, n, sizeof *all, cmp_pgstat);
  uint32_t counts[OSDMON_MAX_STATES] = { 0 };
  for (size_t k = 0; k < n; k++)
    if (k == 0 || all[k].pool != all[k - 1].pool || all[k].pg != all[k - 1].pg) {
      counts[all[k].state]++;
      rep->recovery_left += all[k].rec_left;
      rep->recovery_total += all[k].rec_total;
    }
  free(all);
  size_t ns = 0;
  for (int k = 0; k < om->n_state_names; k++)
    ns += counts[k] > 0;
  if (!ns)
    return 0;
  Blk__PgStateCount **arr = calloc(ns, sizeof *arr + sizeof **arr);
  if (!arr)
    return -ENOMEM;
  Blk__PgStateCount *cs = (Blk__PgStateCount *)(arr + ns);
  size_t j = 0;
  for (int k = 0; k < om->n_state_names; k++) {
    if (!counts[k])
      continue;
    blk__pg_state_count__init(&cs[j]);
    cs[j].state = om->state_names[k];
    cs[j].count = counts[k];
    arr[j] = &cs[j];
    j++;
  }
  rep->pg_states = arr;
  rep->n_pg_states = ns;
  return 0;
}

/* The last space report of every up OSD whose stats are fresh (by id). */
int osdmon_fill_osd_space(struct mon *mon, Blk__MonReply *rep)
{
  struct osdmon *om = mon->osdmon;
  size_t n = 0;
  for (size_t i = 0; i < om->n_osds; i++)
    n += om->osds[i].stats_ms && om->osds[i].total_bytes;
  if (!n)
    return 0;
  Blk__OsdSpace **arr = calloc(n, sizeof *arr + sizeof **arr);
  if (!arr)
    return -ENOMEM;
  Blk__OsdSpace *sp = (Blk__OsdSpace *)(arr + n);
  size_t j = 0;
  for (size_t i = 0; i < om->n_osds && j < n; i++) {
    const struct osdmon_osd *s = fresh_stats(mon, i);
    if (!s || !s->total_bytes)
      continue;
    blk__osd_space__init(&sp[j]);
    sp[j].osd = (int32_t)i;
    sp[j].used_bytes = s->used_bytes;
    sp[j].total_bytes = s->total_bytes;
    sp[j].space = s->space;
    arr[j] = &sp[j];
    j++;
  }
  rep->osd_space = arr;
  rep->n_osd_space = j;
  return 0;
}

int osdmon_start(struct mon *mon)
{
  struct osdmon *om = calloc(1, sizeof *om);
  if (!om)
    return -ENOMEM;
  om->mon = mon;
  om->tick = event_new(mon->base, -1, EV_PERSIST, tick_cb, om);
  if (!om->tick) {
    free(om);
    return -ENOMEM;
  }
  struct timeval tv = { 0, 200 * 1000 };
  event_add(om->tick, &tv);
  mon->osdmon = om;
  return 0;
}

void osdmon_stop(struct mon *mon)
{
  struct osdmon *om = mon->osdmon;
  if (!om)
    return;
  event_free(om->tick);
  for (size_t i = 0; i < om->n_osds; i++)
    free(om->osds[i].pgs);
  free(om->osds);
  free(om->les);
  free(om);
  mon->osdmon = NULL;
}
