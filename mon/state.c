/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the monitors' replicated state machine.  A committed Raft
 * entry is either a NOOP (a new leader's first entry) or a packed MapTxn.
 * Applying a MapTxn:
 *   1. if its req_id is in the deduplication window, the stored result is
 *      returned and nothing changes (a client retrying after a leader
 *      change must not create a pool twice);
 *   2. otherwise clustermap_apply() decides; a change advances the epoch
 *      and the txn (stripped of auth data) is appended to the history that
 *      feeds incremental map updates to subscribers;
 *   3. the result is remembered under req_id (a FIFO window of
 *      DEDUP_WINDOW ids, part of the snapshot so that it is replicated).
 * The history ring keeps incrementals and the map of the epoch before the
 * oldest (hist_base: the trimmed entries are applied to it), so the map of
 * any epoch it covers can be rebuilt (mon_state_history: OSDs derive past
 * intervals from it).  It keeps at least mon_map_history incrementals, and
 * every one after the history floor (a replicated value: a MapTxn with only
 * history_floor, proposed by the leader from the PGs' reported last epoch
 * started, raises it without changing the map), but never more than
 * mon_map_history_max.  Trimming depends only on committed txns and the two
 * options, so monitors with the same options keep the same history.  Ring,
 * base and floor are in the snapshot, so a restart, a leader change or an
 * installed snapshot keeps them (docs/osd.md "Past intervals from the map
 * history", docs/monitor.md "Map history floor").
 * The auth database (a packed AuthDb, mon/auth.c) is carried as bytes: a
 * txn carries a whole new database whose version must be the current
 * one + 1 (compare-and-set), else it is refused with -ESTALE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mon/mon.h"

#define DEDUP_WINDOW 4096

struct hist_entry {
  uint64_t epoch;        /* the epoch this txn produced */
  uint8_t *txn;          /* packed MapTxn */
  size_t len;
};

struct mon_state {
  struct cluster_map *map;
  uint64_t applied_index, applied_term;
  /* dedup FIFO ring */
  char *req_ids[DEDUP_WINDOW];
  int32_t results[DEDUP_WINDOW];
  size_t dedup_head, dedup_n;
  /* history ring of incrementals */
  struct hist_entry *hist;
  size_t hist_cap, hist_head, hist_n;   /* hist_cap: mon_map_history_max */
  size_t hist_min;                      /* mon_map_history */
  uint64_t hist_floor;                  /* committed: keep the epochs after it */
  /* the map at epoch (oldest ring epoch - 1), or the current map's when
   * the ring is empty; NULL: no history (out of memory) */
  struct cluster_map *hist_base;
  uint8_t *auth;
  size_t auth_len;
};

mon_state *mon_state_new(size_t history, size_t history_max)
{
  mon_state *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  st->map = clustermap_new();
  st->hist_min = history ? history : 1;
  st->hist_cap = history_max > st->hist_min ? history_max : st->hist_min;
  st->hist = calloc(st->hist_cap, sizeof *st->hist);
  st->hist_base = clustermap_new();
  if (!st->map || !st->hist || !st->hist_base) {
    mon_state_free(st);
    return NULL;
  }
  return st;
}

static void hist_clear(mon_state *st)
{
  for (size_t i = 0; i < st->hist_n; i++)
    free(st->hist[(st->hist_head + i) % st->hist_cap].txn);
  st->hist_head = st->hist_n = 0;
}

static void dedup_clear(mon_state *st)
{
  for (size_t i = 0; i < st->dedup_n; i++)
    free(st->req_ids[(st->dedup_head + i) % DEDUP_WINDOW]);
  st->dedup_head = st->dedup_n = 0;
}

void mon_state_free(mon_state *st)
{
  if (!st)
    return;
  clustermap_free(st->map);
  if (st->hist)
    hist_clear(st);
  free(st->hist);
  clustermap_free(st->hist_base);
  dedup_clear(st);
  free(st->auth);
  free(st);
}

static int dedup_find(const mon_state *st, const char *id)
{
  for (size_t i = 0; i < st->dedup_n; i++) {
    size_t k = (st->dedup_head + i) % DEDUP_WINDOW;
    if (strcmp(st->req_ids[k], id) == 0)
      return (int)k;
  }
  return -1;
}

static void dedup_add(mon_state *st, const char *id, int32_t result)
{
  char *copy = strdup(id);
  if (!copy)
    return;   /* the window is an optimization of retries, not safety */
  if (st->dedup_n == DEDUP_WINDOW) {
    free(st->req_ids[st->dedup_head]);
    st->dedup_head = (st->dedup_head + 1) % DEDUP_WINDOW;
    st->dedup_n--;
  }
  size_t k = (st->dedup_head + st->dedup_n) % DEDUP_WINDOW;
  st->req_ids[k] = copy;
  st->results[k] = result;
  st->dedup_n++;
}

/* Forget the history: it restarts at the current map. */
static void hist_reset(mon_state *st)
{
  hist_clear(st);
  clustermap_free(st->hist_base);
  st->hist_base = clustermap_dup(st->map);
}

/* Drop the oldest incremental, applying it to hist_base. */
static void hist_trim_one(mon_state *st)
{
  struct hist_entry *h = &st->hist[st->hist_head];
  Blk__MapTxn *t = st->hist_base ? blk__map_txn__unpack(NULL, h->len, h->txn) : NULL;
  char err[160];
  bool ok = t && clustermap_apply(st->hist_base, t, err, sizeof err) == 1 &&
            st->hist_base->epoch == h->epoch;
  if (t)
    blk__map_txn__free_unpacked(t, NULL);
  free(h->txn);
  h->txn = NULL;
  st->hist_head = (st->hist_head + 1) % st->hist_cap;
  st->hist_n--;
  if (!ok) {
    log_err("state", "map history: cannot rebuild epoch %llu; history restarts at %llu",
            (unsigned long long)h->epoch, (unsigned long long)st->map->epoch);
    clustermap_free(st->hist_base);
    st->hist_base = NULL;
  }
}

/* Trim the entries the floor no longer needs: an entry of epoch e <= floor
 * only rebuilds epochs before the floor once the base is at e. */
static void hist_trim(mon_state *st)
{
  while (st->hist_base && st->hist_n > st->hist_min &&
         st->hist[st->hist_head].epoch <= st->hist_floor)
    hist_trim_one(st);
}

static void hist_add(mon_state *st, uint64_t epoch, const Blk__MapTxn *txn)
{
  if (!st->hist_base || st->hist_base->epoch + st->hist_n + 1 != epoch) {
    hist_reset(st);   /* the ring no longer leads here: start afresh */
    return;
  }
  Blk__MapTxn t = *txn;
  t.auth.len = 0;
  t.auth.data = NULL;
  size_t len = blk__map_txn__get_packed_size(&t);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) {
    hist_reset(st);   /* subscribers then get full maps */
    return;
  }
  blk__map_txn__pack(&t, buf);
  if (st->hist_n == st->hist_cap)
    hist_trim_one(st);
  if (!st->hist_base) {
    free(buf);
    hist_reset(st);
    return;
  }
  struct hist_entry *h = &st->hist[(st->hist_head + st->hist_n) % st->hist_cap];
  h->epoch = epoch;
  h->txn = buf;
  h->len = len;
  st->hist_n++;
  hist_trim(st);
}

/* A committed history floor change: never lowers it. */
static void hist_set_floor(mon_state *st, uint64_t floor)
{
  if (floor <= st->hist_floor)
    return;
  st->hist_floor = floor;
  hist_trim(st);
  log_info("state", "map history floor %llu: keeping epochs %llu..%llu",
           (unsigned long long)floor, (unsigned long long)mon_state_history_first(st),
           (unsigned long long)st->map->epoch);
}

int mon_state_apply(mon_state *st, const struct raft_entry *e, char *err, size_t errlen)
{
  int r = 0;
  if (err && errlen)
    err[0] = 0;
  st->applied_index = e->index;
  st->applied_term = e->term;
  if (e->type == RAFT_ENTRY_NOOP)
    return 0;
  Blk__MapTxn *txn = blk__map_txn__unpack(NULL, e->len, e->data);
  if (!txn) {
    snprintf(err, errlen, "undecodable map transaction at index %llu",
             (unsigned long long)e->index);
    log_err("state", "%s", err);
    return -EINVAL;
  }
  if (txn->history_floor) {   /* alone in its txn (osdmon.c): no map change */
    hist_set_floor(st, txn->history_floor);
    blk__map_txn__free_unpacked(txn, NULL);
    return 0;
  }
  bool has_id = txn->req_id && txn->req_id[0];
  int k = has_id ? dedup_find(st, txn->req_id) : -1;
  if (k >= 0) {
    r = st->results[k];
    if (r < 0)
      snprintf(err, errlen, "request %s already failed (%d)", txn->req_id, r);
    blk__map_txn__free_unpacked(txn, NULL);
    return r;
  }
  if (txn->auth.len) {
    uint64_t cur = mon_auth_db_version(st->auth, st->auth_len);
    uint64_t next = mon_auth_db_version(txn->auth.data, txn->auth.len);
    if (next != cur + 1) {
      snprintf(err, errlen, "auth database changed concurrently (version %llu, txn for %llu); retry",
               (unsigned long long)cur, (unsigned long long)next);
      if (has_id)
        dedup_add(st, txn->req_id, -ESTALE);
      blk__map_txn__free_unpacked(txn, NULL);
      return -ESTALE;
    }
  }
  r = clustermap_apply(st->map, txn, err, errlen);
  if (r == 1)
    hist_add(st, st->map->epoch, txn);
  if (r >= 0 && txn->auth.len) {
    uint8_t *a = malloc(txn->auth.len);
    if (a) {
      memcpy(a, txn->auth.data, txn->auth.len);
      free(st->auth);
      st->auth = a;
      st->auth_len = txn->auth.len;
    }
  }
  /* a transient refusal (map not initialized yet) is not remembered: the
   * client's retry under the same req_id must be decided afresh */
  if (has_id && r != -EAGAIN)
    dedup_add(st, txn->req_id, r);
  blk__map_txn__free_unpacked(txn, NULL);
  return r;
}

const struct cluster_map *mon_state_map(const mon_state *st) { return st->map; }
void mon_state_auth(const mon_state *st, const uint8_t **data, size_t *len)
{
  *data = st->auth;
  *len = st->auth_len;
}
uint64_t mon_state_applied_index(const mon_state *st) { return st->applied_index; }
uint64_t mon_state_applied_term(const mon_state *st) { return st->applied_term; }

int mon_state_snapshot(const mon_state *st, void **data, size_t *len)
{
  Blk__MonSnapshot s = BLK__MON_SNAPSHOT__INIT;
  s.map = clustermap_to_pb(st->map);
  if (!s.map)
    return -ENOMEM;
  char **ids = malloc((st->dedup_n + 1) * sizeof *ids);
  int32_t *res = malloc((st->dedup_n + 1) * sizeof *res);
  if (!ids || !res) {
    free(ids);
    free(res);
    clustermap_pb_free(s.map);
    return -ENOMEM;
  }
  for (size_t i = 0; i < st->dedup_n; i++) {
    size_t k = (st->dedup_head + i) % DEDUP_WINDOW;
    ids[i] = st->req_ids[k];
    res[i] = st->results[k];
  }
  s.recent_req_ids = ids;
  s.n_recent_req_ids = st->dedup_n;
  s.recent_results = res;
  s.n_recent_results = st->dedup_n;
  s.auth.data = st->auth;
  s.auth.len = st->auth_len;
  /* the map history (a failure only loses it: the restore starts afresh) */
  ProtobufCBinaryData *ht = st->hist_n ? calloc(st->hist_n, sizeof *ht) : NULL;
  s.hist_base = st->hist_base ? clustermap_to_pb(st->hist_base) : NULL;
  if (s.hist_base && (ht || !st->hist_n)) {
    for (size_t i = 0; i < st->hist_n; i++) {
      const struct hist_entry *h = &st->hist[(st->hist_head + i) % st->hist_cap];
      ht[i].data = h->txn;
      ht[i].len = h->len;
    }
    s.hist_txns = ht;
    s.n_hist_txns = st->hist_n;
  }
  s.hist_floor = st->hist_floor;
  size_t n = blk__mon_snapshot__get_packed_size(&s);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf)
    blk__mon_snapshot__pack(&s, buf);
  free(ids);
  free(res);
  free(ht);
  clustermap_pb_free(s.hist_base);
  clustermap_pb_free(s.map);
  if (!buf)
    return -ENOMEM;
  *data = buf;
  *len = n;
  return 0;
}

/* The history of a snapshot (if it has one that leads to its map), else
 * a history that starts at the snapshot's map.  Keeps the newest
 * hist_cap incrementals. */
static void hist_restore(mon_state *st, const Blk__MonSnapshot *s)
{
  hist_clear(st);
  clustermap_free(st->hist_base);
  st->hist_base = NULL;
  if (s->hist_base && clustermap_from_pb(s->hist_base, &st->hist_base) == 0 &&
      st->hist_base->epoch + s->n_hist_txns == st->map->epoch) {
    for (size_t i = 0; i < s->n_hist_txns && st->hist_base; i++) {
      uint8_t *b = malloc(s->hist_txns[i].len ? s->hist_txns[i].len : 1);
      if (!b)
        break;
      memcpy(b, s->hist_txns[i].data, s->hist_txns[i].len);
      if (st->hist_n == st->hist_cap)
        hist_trim_one(st);
      struct hist_entry *h = &st->hist[(st->hist_head + st->hist_n) % st->hist_cap];
      h->epoch = st->hist_base ? st->hist_base->epoch + st->hist_n + 1 : 0;
      h->txn = b;
      h->len = s->hist_txns[i].len;
      st->hist_n++;
    }
    if (st->hist_base && st->hist_base->epoch + st->hist_n == st->map->epoch) {
      hist_trim(st);
      return;
    }
  }
  hist_reset(st);
}

int mon_state_restore(mon_state *st, uint64_t index, uint64_t term,
                      const void *data, size_t len)
{
  Blk__MonSnapshot *s = blk__mon_snapshot__unpack(NULL, len, data);
  if (!s || !s->map || s->n_recent_req_ids != s->n_recent_results ||
      s->n_recent_req_ids > DEDUP_WINDOW) {
    if (s)
      blk__mon_snapshot__free_unpacked(s, NULL);
    log_err("state", "invalid monitor snapshot at index %llu", (unsigned long long)index);
    return -EINVAL;
  }
  struct cluster_map *m;
  int r = clustermap_from_pb(s->map, &m);
  if (r < 0) {
    blk__mon_snapshot__free_unpacked(s, NULL);
    log_err("state", "invalid cluster map in snapshot at index %llu",
            (unsigned long long)index);
    return r;
  }
  uint8_t *auth = NULL;
  if (s->auth.len) {
    auth = malloc(s->auth.len);
    if (!auth) {
      clustermap_free(m);
      blk__mon_snapshot__free_unpacked(s, NULL);
      return -ENOMEM;
    }
    memcpy(auth, s->auth.data, s->auth.len);
  }
  clustermap_free(st->map);
  st->map = m;
  free(st->auth);
  st->auth = auth;
  st->auth_len = s->auth.len;
  dedup_clear(st);
  for (size_t i = 0; i < s->n_recent_req_ids; i++)
    dedup_add(st, s->recent_req_ids[i], s->recent_results[i]);
  st->hist_floor = s->hist_floor;
  hist_restore(st, s);
  st->applied_index = index;
  st->applied_term = term;
  blk__mon_snapshot__free_unpacked(s, NULL);
  return 0;
}

Blk__MapUpdate *mon_state_update_since(const mon_state *st, uint64_t have_epoch)
{
  Blk__MapUpdate *u = calloc(1, sizeof *u);
  if (!u)
    return NULL;
  blk__map_update__init(u);
  uint64_t cur = st->map->epoch;
  u->from = have_epoch;
  u->to = cur;
  if (have_epoch >= cur)
    return u;   /* nothing new */
  /* the history covers have_epoch+1 .. cur?  (at most mon_map_history
   * incrementals: further behind, one full map is smaller) */
  if (have_epoch > 0 && st->hist_n > 0 && cur - have_epoch <= st->hist_min) {
    uint64_t first = st->hist[st->hist_head].epoch;
    if (first <= have_epoch + 1 && st->hist[(st->hist_head + st->hist_n - 1) % st->hist_cap].epoch == cur) {
      size_t n = (size_t)(cur - have_epoch);
      u->txns = calloc(n, sizeof *u->txns);
      if (!u->txns)
        goto full;
      size_t k = 0;
      for (size_t i = 0; i < st->hist_n && k < n; i++) {
        const struct hist_entry *h = &st->hist[(st->hist_head + i) % st->hist_cap];
        if (h->epoch <= have_epoch)
          continue;
        u->txns[k] = blk__map_txn__unpack(NULL, h->len, h->txn);
        if (!u->txns[k])
          break;
        k++;
      }
      u->n_txns = k;
      if (k == n)
        return u;
      for (size_t i = 0; i < k; i++)
        blk__map_txn__free_unpacked(u->txns[i], NULL);
      free(u->txns);
      u->txns = NULL;
      u->n_txns = 0;
    }
  }
full:
  u->full = clustermap_to_pb(st->map);
  u->from = 0;
  return u;
}

uint64_t mon_state_history_first(const mon_state *st)
{
  return st->hist_base ? st->hist_base->epoch : st->map->epoch;
}

uint64_t mon_state_history_floor(const mon_state *st) { return st->hist_floor; }

int mon_state_history(const mon_state *st, uint64_t from, uint64_t to, Blk__MapUpdate **out,
                      struct cluster_map **full, char *err, size_t errlen)
{
  *out = NULL;
  *full = NULL;
  uint64_t cur = st->map->epoch;
  if (to > cur)
    to = cur;
  if (from > to) {
    snprintf(err, errlen, "this monitor is at epoch %llu, before %llu", (unsigned long long)cur,
             (unsigned long long)from);
    return -EAGAIN;
  }
  if (!st->hist_base || from < st->hist_base->epoch) {
    snprintf(err, errlen, "map history from epoch %llu not kept (this monitor keeps epochs %llu..%llu)",
             (unsigned long long)from,
             st->hist_base ? (unsigned long long)st->hist_base->epoch : (unsigned long long)cur,
             (unsigned long long)cur);
    return -ENOENT;
  }
  struct cluster_map *m = clustermap_dup(st->hist_base);
  Blk__MapUpdate *u = calloc(1, sizeof *u);
  if (!m || !u)
    goto nomem;
  blk__map_update__init(u);
  u->from = from;
  u->to = to;
  size_t n = (size_t)(to - from);
  if (n && !(u->txns = calloc(n, sizeof *u->txns)))
    goto nomem;
  char aerr[160];
  for (size_t i = 0; i < st->hist_n; i++) {
    const struct hist_entry *h = &st->hist[(st->hist_head + i) % st->hist_cap];
    if (h->epoch > to)
      break;
    Blk__MapTxn *t = blk__map_txn__unpack(NULL, h->len, h->txn);
    if (!t)
      goto nomem;
    if (h->epoch <= from) {
      int r = clustermap_apply(m, t, aerr, sizeof aerr);
      blk__map_txn__free_unpacked(t, NULL);
      if (r != 1) {
        snprintf(err, errlen, "map history: epoch %llu does not rebuild: %s",
                 (unsigned long long)h->epoch, aerr);
        clustermap_free(m);
        mon_state_update_free(u);
        return -EIO;
      }
    } else {
      u->txns[u->n_txns++] = t;
    }
  }
  if (m->epoch != from || u->n_txns != n) {
    snprintf(err, errlen, "map history: epochs %llu..%llu incomplete", (unsigned long long)from,
             (unsigned long long)to);
    clustermap_free(m);
    mon_state_update_free(u);
    return -EIO;
  }
  if (!(u->full = clustermap_to_pb(m)))   /* borrows from m */
    goto nomem;
  *out = u;
  *full = m;
  return 0;
nomem:
  clustermap_free(m);
  mon_state_update_free(u);
  snprintf(err, errlen, "out of memory");
  return -ENOMEM;
}

void mon_state_update_free(Blk__MapUpdate *u)
{
  if (!u)
    return;
  for (size_t i = 0; i < u->n_txns; i++)
    blk__map_txn__free_unpacked(u->txns[i], NULL);
  free(u->txns);
  clustermap_pb_free(u->full);
  free(u);
}
