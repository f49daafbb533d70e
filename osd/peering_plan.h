/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the decisions of peering, as pure functions of what the
 * primary learnt (osd/peering_plan.c).  No libevent, messenger or store:
 * the daemon (osd/peering.c) and the peering simulation
 * (tests/sim/peering-sim.c) call the same code.  Three decisions:
 *   (a) may the PG go active, or must it wait ("down") because a past
 *       interval that may have acknowledged writes has no member among
 *       those that answered (pplan_may_activate);
 *   (b) which member is authoritative (pplan_choose_auth);
 *   (c) for each other member of the acting set: recovery by log (the
 *       objects newer than its last version, plus its divergent entries)
 *       or backfill (every object of the authoritative listing, plus the
 *       objects only the member has) (pplan_recovery).
 * Members are indexed 0..n-1, the primary at 0 and the acting set first;
 * bit i of a mask is member i.
 */
#ifndef BLK_OSD_PEERING_PLAN_H
#define BLK_OSD_PEERING_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of an acting set, and of the members peering may ask (acting set
 * plus members of past intervals); masks are 32 bits. */
#define PPLAN_MAX_SIZE 10
#define PPLAN_MAX_MEMBERS (2 * PPLAN_MAX_SIZE)
/* Past intervals a PG remembers (older ones are merged away: see
 * pplan_interval_note). */
#define PPLAN_MAX_INTERVALS 32

/* A PG version: ordered by (epoch, v). */
struct pg_ver {
  uint64_t epoch, v;
};

static inline int pg_ver_cmp(struct pg_ver a, struct pg_ver b)
{
  if (a.epoch != b.epoch)
    return a.epoch < b.epoch ? -1 : 1;
  return a.v < b.v ? -1 : a.v > b.v ? 1 : 0;
}

#define PG_REQID_MAX 64

/* One PG log entry. */
struct pg_log_ent {
  struct pg_ver ver;
  uint8_t op;                   /* a modifying BLK__OSD_OP_TYPE__OP_* (lock ops
                                 * are logged as SETXATTR/RMXATTR) */
  char reqid[PG_REQID_MAX];
  char *name;                   /* malloc'd by whoever owns the log */
};

/* One past interval of a PG: the epochs [first, last] during which its
 * acting set was acting[0..n_acting).  maybe_rw: it had at least
 * min_size members, so it may have gone active and acknowledged writes
 * (every acknowledged write of it is on every one of its members). */
struct pplan_interval {
  uint64_t first, last;
  int32_t acting[PPLAN_MAX_SIZE];
  size_t n_acting;
  bool maybe_rw;
};

/* What one member answered (all borrowed from the caller for the call). */
struct pplan_member {
  int32_t osd;
  bool target;                  /* in the acting set: may be recovered */
  struct pg_ver last, tail;     /* newest entry, newest trimmed entry */
  const struct pg_log_ent *log; /* version order */
  size_t n;
  /* last epoch started: the member took an authoritative log at this
   * epoch (0 = unknown), so it holds every write acknowledged by an
   * interval that ended before it */
  uint64_t les;
  /* objects a recovery installed on it that no entry of its log
   * describes yet (the peering did not finish, or installed a version its
   * log lacks; a later entry for the object clears it): their state may
   * differ from what its log says, so they are reinstalled from the
   * authoritative member on it, and from it on every target when it is
   * the authoritative member */
  const char *const *unlogged;
  size_t n_unlogged;
  /* its object names, strcmp order (backfill; valid only if listed_ok) */
  const char *const *listed;
  size_t n_listed;
  bool listed_ok;
};

/* One object to recover: install the authoritative state (or absence) of
 * name on the members of targets. */
struct pplan_item {
  char *name;                   /* malloc'd; pplan_items_free */
  uint32_t targets;
};

/* Append the interval [first, last] with acting[0..n) to iv (*n_iv
 * entries, capacity PPLAN_MAX_INTERVALS).  When full, the oldest two are
 * merged into one whose acting set is their union (capped), which keeps
 * the check conservative only for the members it still lists.  Returns 0
 * or -EINVAL (n > PPLAN_MAX_SIZE). */
int pplan_interval_note(struct pplan_interval *iv, size_t *n_iv, uint64_t first, uint64_t last,
                        const int32_t *acting, size_t n, uint32_t min_size);

/* One epoch of a PG's map history: its acting set, each member's
 * up_from (a member that restarted starts a new interval), and the
 * pool's min_size (0 members: the pool or the PG did not exist). */
struct pplan_epoch_set {
  int32_t acting[PPLAN_MAX_SIZE];
  uint64_t up_from[PPLAN_MAX_SIZE];
  size_t n;
  uint32_t min_size;
};

/* The PG's set in epoch e into *out: 0, or a negative errno (e.g.
 * -ENOENT: that map is not known), which ends the derivation. */
typedef int (*pplan_epoch_fn)(void *arg, uint64_t e, struct pplan_epoch_set *out);

/* The past intervals of a PG over epochs [from, before) from its map
 * history (Ceph's derivation): consecutive epochs with the same acting
 * set and up_froms form one interval, which may have acknowledged writes
 * when it had at least min_size members (the smallest min_size of its
 * epochs).  iv gets them in epoch order (*n_iv; more than
 * PPLAN_MAX_INTERVALS are merged as pplan_interval_note does).  The
 * daemon (osd/maphist.c) and the peering simulation call it.  0, or
 * fn's error (then *missing = the epoch it failed on, may be NULL). */
int pplan_intervals_from_history(uint64_t from, uint64_t before, pplan_epoch_fn fn, void *arg,
                                 struct pplan_interval *iv, size_t *n_iv, uint64_t *missing);

/* (a) May the PG go active with the members m[0..n_m) that answered?
 * True when every past interval that may have acknowledged writes and
 * did not end before the newest les among m has one of its members in m.
 * False, with the index of the first interval that has none in
 * *blocking (may be NULL): the PG must wait for one of them. */
bool pplan_may_activate(const struct pplan_interval *iv, size_t n_iv,
                        const struct pplan_member *m, size_t n_m, size_t *blocking);

/* (b) The authoritative member: the newest last version; ties go to the
 * lowest index (the primary).  n_m >= 1. */
int pplan_choose_auth(const struct pplan_member *m, size_t n_m);

/* Is member mi too far behind the authoritative log (last older than its
 * trim point atail) to be recovered by log (needs backfill)? */
bool pplan_needs_backfill(const struct pplan_member *mi, struct pg_ver atail);

/* (c) The objects to recover, in strcmp order, each once, for every
 * target member other than auth: by log (authoritative entries newer
 * than its last) or by backfill (the authoritative member's listing, the
 * member's objects the authoritative one lacks, and every object of the
 * authoritative log); plus its divergent entries (newer than the trim
 * point and absent from the authoritative log), its unlogged objects and
 * those of the authoritative member.  *backfill gets the
 * mask of members that need backfill.  On success *items (caller frees
 * with pplan_items_free) and *n_items; 0 or -ENOMEM. */
int pplan_recovery(const struct pplan_member *m, size_t n_m, int auth,
                   struct pplan_item **items, size_t *n_items, uint32_t *backfill);

/* Free items[0..n) and the array. */
void pplan_items_free(struct pplan_item *items, size_t n);

#ifdef PPLAN_FAULT_INJECTION
/* Planted bugs for tests/sim/peering-sim.c (never in the daemon). */
enum pplan_bug { PPLAN_BUG_NONE, PPLAN_BUG_NO_PAST_INTERVALS, PPLAN_BUG_CHOOSE_OLDEST,
                 PPLAN_BUG_NO_DIVERGENT, PPLAN_BUG_NO_UNLOGGED, PPLAN_BUG_UNION_INTERVALS };
extern enum pplan_bug pplan_bug;
#endif

#endif
