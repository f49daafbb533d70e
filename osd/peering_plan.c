/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the decision logic of peering (contracts in
 * osd/peering_plan.h), kept free of I/O so that the daemon and the
 * peering simulation run the same code.
 *
 * Why the past-interval rule is enough: a write is acknowledged only when
 * every member of the interval's acting set has it durable, so each
 * interval that acknowledged writes leaves them on all of its members.
 * An interval that went active took (through recovery) every write of
 * the intervals before it; a member's les says it took part in such an
 * activation, so intervals that ended before the newest les among the
 * members that answered need no member of their own.  Every later
 * interval that may have acknowledged writes (min_size members) must have
 * one member among those that answered: then the newest last version
 * among them covers every acknowledged write, since versions grow with
 * the epoch and within an interval, and a member holding a later write
 * holds the earlier ones of the same chain (RepOps apply only on their
 * prev version).
 *
 * Recovery installs whole objects before the members take the
 * authoritative log (activation): a peering that stops between the two
 * leaves a member with objects newer than its log.  Such a member reports
 * them (unlogged); were they ignored, a member recovered by log from it
 * (or it, recovered by log) would keep a different version of them for
 * good (found by the peering simulation: seed 1291).
 *
 * Recovery items are gathered as (name, member) pairs, sorted by name and
 * merged, so each object is read once from the authoritative member and
 * installed on every target that needs it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "osd/peering_plan.h"

#ifdef PPLAN_FAULT_INJECTION
enum pplan_bug pplan_bug;
#define BUG(b) (pplan_bug == PPLAN_BUG_##b)
#else
#define BUG(b) false
#endif

int pplan_interval_note(struct pplan_interval *iv, size_t *n_iv, uint64_t first, uint64_t last,
                        const int32_t *acting, size_t n, uint32_t min_size)
{
  if (n > PPLAN_MAX_SIZE)
    return -EINVAL;
  if (*n_iv == PPLAN_MAX_INTERVALS) {
    /* merge the two oldest: their union, both flags */
    struct pplan_interval *a = &iv[0], *b = &iv[1];
    for (size_t i = 0; i < b->n_acting; i++) {
      bool dup = false;
      for (size_t k = 0; k < a->n_acting && !dup; k++)
        dup = a->acting[k] == b->acting[i];
      if (!dup && a->n_acting < PPLAN_MAX_SIZE)
        a->acting[a->n_acting++] = b->acting[i];
    }
    a->last = b->last;
    a->maybe_rw |= b->maybe_rw;
    memmove(&iv[1], &iv[2], (*n_iv - 2) * sizeof *iv);
    (*n_iv)--;
  }
  struct pplan_interval *x = &iv[(*n_iv)++];
  memset(x, 0, sizeof *x);
  x->first = first;
  x->last = last;
  if (n)
    memcpy(x->acting, acting, n * sizeof *acting);
  x->n_acting = n;
  x->maybe_rw = n >= min_size && n > 0;
  return 0;
}

static int note_set(struct pplan_interval *iv, size_t *n_iv, uint64_t first, uint64_t last,
                    const struct pplan_epoch_set *x, uint32_t min_size)
{
  return pplan_interval_note(iv, n_iv, first, last, x->acting, x->n, min_size);
}

int pplan_intervals_from_history(uint64_t from, uint64_t before, pplan_epoch_fn fn, void *arg,
                                 struct pplan_interval *iv, size_t *n_iv, uint64_t *missing)
{
  struct pplan_epoch_set cur = { .n = 0 }, nx;
  uint64_t first = 0;
  uint32_t min_size = 0;
  *n_iv = 0;
  if (from < 1)
    from = 1;
  for (uint64_t e = from; e < before; e++) {
    int r = fn(arg, e, &nx);
    if (r == 0 && nx.n > PPLAN_MAX_SIZE)
      r = -EINVAL;
    if (r < 0) {
      if (missing)
        *missing = e;
      return r;
    }
    if (first && nx.n == cur.n && !memcmp(nx.acting, cur.acting, nx.n * sizeof *nx.acting) &&
        !memcmp(nx.up_from, cur.up_from, nx.n * sizeof *nx.up_from)) {
      if (nx.min_size < min_size)
        min_size = nx.min_size;
      continue;
    }
    if (first)
      note_set(iv, n_iv, first, e - 1, &cur, min_size);
    cur = nx;
    first = e;
    min_size = nx.min_size;
  }
  if (first)
    note_set(iv, n_iv, first, before - 1, &cur, min_size);
  return 0;
}

bool pplan_may_activate(const struct pplan_interval *iv, size_t n_iv,
                        const struct pplan_member *m, size_t n_m, size_t *blocking)
{
  uint64_t les = 0;
  for (size_t i = 0; i < n_m; i++)
    if (m[i].les > les)
      les = m[i].les;
  /* planted bug: the daemon's check before this module, one union of
   * the past intervals' members: wait only if none of them answered */
  if (BUG(UNION_INTERVALS)) {
    bool any = false, found = false;
    for (size_t k = 0; k < n_iv; k++) {
      if (iv[k].last < les)
        continue;
      any = true;
      for (size_t a = 0; a < iv[k].n_acting && !found; a++)
        for (size_t i = 0; i < n_m && !found; i++)
          found = m[i].osd == iv[k].acting[a];
    }
    if (blocking)
      *blocking = 0;
    return !any || found;
  }
  /* planted bug: only the newest past interval counts */
  size_t from = BUG(NO_PAST_INTERVALS) && n_iv ? n_iv - 1 : 0;
  for (size_t k = from; k < n_iv; k++) {
    if (!iv[k].maybe_rw || iv[k].last < les)
      continue;
    bool found = false;
    for (size_t a = 0; a < iv[k].n_acting && !found; a++)
      for (size_t i = 0; i < n_m && !found; i++)
        found = m[i].osd == iv[k].acting[a];
    if (!found) {
      if (blocking)
        *blocking = k;
      return false;
    }
  }
  return true;
}

int pplan_choose_auth(const struct pplan_member *m, size_t n_m)
{
  int auth = 0;
  for (int i = 1; i < (int)n_m; i++) {
    int c = pg_ver_cmp(m[i].last, m[auth].last);
    if (BUG(CHOOSE_OLDEST) ? c < 0 : c > 0)
      auth = i;
  }
  return auth;
}

bool pplan_needs_backfill(const struct pplan_member *mi, struct pg_ver atail)
{
  return pg_ver_cmp(mi->last, atail) < 0;
}

static int cmp_ver_ent(const void *key, const void *elem)
{
  return pg_ver_cmp(*(const struct pg_ver *)key, ((const struct pg_log_ent *)elem)->ver);
}

/* logs are in version order */
static bool log_has(const struct pg_log_ent *l, size_t n, struct pg_ver v)
{
  return n && bsearch(&v, l, n, sizeof *l, cmp_ver_ent) != NULL;
}

static int cmp_name_ptr(const void *key, const void *elem)
{
  return strcmp((const char *)key, *(const char *const *)elem);
}

/* listings are sorted by name */
static bool listed_has(const char *const *l, size_t n, const char *name)
{
  return n && bsearch(name, l, n, sizeof *l, cmp_name_ptr) != NULL;
}

struct name_target {
  const char *name;
  int idx;
};

struct nt_vec {
  struct name_target *v;
  size_t n, cap;
  bool ok;
};

static void nt_add(struct nt_vec *nv, const char *name, int idx)
{
  if (!nv->ok)
    return;
  if (nv->n == nv->cap) {
    size_t nc = nv->cap ? nv->cap * 2 : 64;
    struct name_target *x = realloc(nv->v, nc * sizeof *x);
    if (!x) {
      nv->ok = false;
      return;
    }
    nv->v = x;
    nv->cap = nc;
  }
  nv->v[nv->n++] = (struct name_target){ name, idx };
}

static int cmp_nt(const void *a, const void *b)
{
  return strcmp(((const struct name_target *)a)->name, ((const struct name_target *)b)->name);
}

void pplan_items_free(struct pplan_item *items, size_t n)
{
  for (size_t i = 0; items && i < n; i++)
    free(items[i].name);
  free(items);
}

int pplan_recovery(const struct pplan_member *m, size_t n_m, int auth,
                   struct pplan_item **items, size_t *n_items, uint32_t *backfill)
{
  const struct pplan_member *a = &m[auth];
  struct nt_vec nv = { .ok = true };
  *items = NULL;
  *n_items = 0;
  *backfill = 0;
  for (int i = 0; i < (int)n_m && i < 32; i++) {
    const struct pplan_member *mi = &m[i];
    if (i == auth || !mi->target)
      continue;
    if (!pplan_needs_backfill(mi, a->tail)) {
      for (size_t k = 0; k < a->n; k++)
        if (pg_ver_cmp(a->log[k].ver, mi->last) > 0)
          nt_add(&nv, a->log[k].name, i);
    } else {
      *backfill |= 1u << i;
      if (a->listed_ok) {
        for (size_t k = 0; k < a->n_listed; k++)
          if (a->listed[k][0] != '@')   /* clones too: a name may have no head */
            nt_add(&nv, a->listed[k], i);
        /* objects the member has and the authoritative one does not:
         * removed while the member was away (their absence is installed) */
        for (size_t k = 0; mi->listed_ok && k < mi->n_listed; k++)
          if (!listed_has(a->listed, a->n_listed, mi->listed[k]))
            nt_add(&nv, mi->listed[k], i);
      }
      for (size_t k = 0; k < a->n; k++)
        nt_add(&nv, a->log[k].name, i);
    }
    /* objects an unfinished recovery installed, here or on auth */
    for (size_t k = 0; k < mi->n_unlogged && !BUG(NO_UNLOGGED); k++)
      nt_add(&nv, mi->unlogged[k], i);
    for (size_t k = 0; k < a->n_unlogged && !BUG(NO_UNLOGGED); k++)
      nt_add(&nv, a->unlogged[k], i);
    /* divergent entries of the member */
    for (size_t k = 0; k < mi->n && !BUG(NO_DIVERGENT); k++)
      if (pg_ver_cmp(mi->log[k].ver, a->tail) > 0 && !log_has(a->log, a->n, mi->log[k].ver))
        nt_add(&nv, mi->log[k].name, i);
  }
  if (!nv.ok) {
    free(nv.v);
    return -ENOMEM;
  }
  if (nv.n)
    qsort(nv.v, nv.n, sizeof *nv.v, cmp_nt);
  struct pplan_item *it = nv.n ? calloc(nv.n, sizeof *it) : NULL;
  size_t n = 0;
  if (nv.n && !it) {
    free(nv.v);
    return -ENOMEM;
  }
  for (size_t k = 0; k < nv.n; k++) {
    if (n && !strcmp(it[n - 1].name, nv.v[k].name)) {
      it[n - 1].targets |= 1u << nv.v[k].idx;
      continue;
    }
    if (!(it[n].name = strdup(nv.v[k].name))) {
      pplan_items_free(it, n);
      free(nv.v);
      return -ENOMEM;
    }
    it[n++].targets = 1u << nv.v[k].idx;
  }
  free(nv.v);
  *items = it;
  *n_items = n;
  return 0;
}
