/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a deterministic simulator for mon/raft.c.  One process,
 * one thread, one PRNG seeded from --seed: N raft nodes (3 or 5) exchange
 * messages through a fake network (random delay in ticks, drops,
 * duplicates, reordering, symmetric and asymmetric partitions that change
 * over time) under a fake clock, while nodes crash and restart.  A
 * restarted node is rebuilt with raft_new() from only what it persisted
 * through the io callbacks (term, vote, entries, snapshot), and its state
 * machine restarts from its persisted snapshot.  Clients propose at
 * whichever node thinks it leads, issue ReadIndex requests, and nodes
 * snapshot their state machine and compact at random, which drives
 * InstallSnapshot.
 *
 * After every step (one tick of one node, one delivered message, one
 * client action) the checker verifies: election safety (one leader per
 * term, ever), log matching (each (index, term) names one entry content
 * and one predecessor term, across all nodes and all time), leader
 * completeness (a leader holds every entry committed in an earlier term),
 * state machine safety (one command per index, one state hash per index,
 * across all nodes and lives), applied index monotone within a life,
 * storage mirrors the core's log, and ReadIndex linearizability (a
 * completed read reflects every commit observed before it started).  At
 * the end of each seed, partitions are healed and every node restarted:
 * a new proposal must commit within a bounded number of ticks (liveness).
 *
 * A failing seed prints "replay: raft-sim --seed N --verbose"; --verbose
 * prints a trace of that seed.  --bug MODE plants a bug (in the core via
 * RAFT_FAULT_INJECTION, or in the simulated disk) and --expect-violation
 * turns "a check failed" into success, so CTest proves the checks bite.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "mon/raft.h"

#define MAXN 5
#define DEFAULT_TICKS 6000

#include "tests/sim/sim-rng.h"

static uint64_t mix(uint64_t h, uint64_t v)
{
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h *= 0xFF51AFD7ED558CCDull;
  return h ^ (h >> 33);
}

/* ---- options and failure --------------------------------------------------- */

enum sim_bug { BUG_NONE, BUG_COMMIT_OLD_TERM, BUG_NO_PERSIST_VOTE,
               BUG_READ_NO_CONFIRM };

static struct {
  bool verbose;
  bool expect_violation;
  enum sim_bug bug;
  unsigned ticks;               /* chaos ticks per seed */
} opt = { .ticks = DEFAULT_TICKS };

static uint64_t cur_seed;
static uint64_t now;

/* what the seeds exercised, printed at the end */
static struct {
  uint64_t leaders, max_term, commits, installs, compactions, reads_ok,
           reads_again, crashes, pauses, delivered, dropped, proposals,
           liveness_ticks_max, liveness_seed, lead_ticks_max;
} stats;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
  if (!opt.verbose)
    return;
  va_list ap;
  va_start(ap, fmt);
  printf("t=%-5" PRIu64 " ", now);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "raft-sim: seed %" PRIu64 " tick %" PRIu64 ": VIOLATION: ",
          cur_seed, now);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  char ticks[40] = "";
  if (opt.ticks != DEFAULT_TICKS)
    snprintf(ticks, sizeof ticks, " --ticks %u", opt.ticks);
  fprintf(stderr, "\nreplay: raft-sim --seed %" PRIu64 " --verbose%s%s%s\n",
          cur_seed, ticks, opt.bug != BUG_NONE ? " --bug " : "",
          opt.bug == BUG_COMMIT_OLD_TERM ? "commit-old-term" :
          opt.bug == BUG_NO_PERSIST_VOTE ? "no-persist-vote" :
          opt.bug == BUG_READ_NO_CONFIRM ? "read-no-confirm" : "");
  exit(opt.expect_violation ? 0 : 1);
}

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) {
    perror("malloc");
    exit(2);
  }
  return p;
}

static void *xmemdup(const void *src, size_t n)
{
  if (n == 0)
    return NULL;
  void *p = xmalloc(n);
  memcpy(p, src, n);
  return p;
}

static void *xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p) {
    perror("realloc");
    exit(2);
  }
  return p;
}

/* Grow a dynamic array of uint64-ish records indexed from 0 so that
 * index i exists, zero-filling. */
#define GROW(arr, cap, i) do {                                          \
    if ((size_t)(i) >= (cap)) {                                         \
      size_t nc_ = (cap) ? (cap) : 64;                                  \
      while (nc_ <= (size_t)(i))                                        \
        nc_ *= 2;                                                       \
      (arr) = xrealloc((arr), nc_ * sizeof *(arr));                     \
      memset((arr) + (cap), 0, (nc_ - (cap)) * sizeof *(arr));          \
      (cap) = nc_;                                                      \
    }                                                                   \
  } while (0)

/* ---- the state machine ------------------------------------------------------- */

/* A running hash over applied commands; the snapshot is 32 bytes. */
struct sm {
  uint64_t index, term, hash, count;
};

static uint64_t entry_hash(const struct raft_entry *e)
{
  uint64_t h = mix(e->type + 1, e->len);
  const unsigned char *p = e->data;
  for (uint32_t i = 0; i < e->len; i++)
    h = mix(h, p[i]);
  return h;
}

/* ---- nodes ------------------------------------------------------------------ */

struct store {                  /* what survives a crash */
  uint64_t term;
  uint32_t vote;
  uint64_t snap_index, snap_term;
  struct sm snap_sm;
  struct raft_entry *ents;      /* snap_index+1 .. ; data owned */
  size_t n, cap;
};

struct node {
  uint32_t id;
  raft *r;                      /* NULL while down */
  unsigned life;
  uint64_t restart_at;
  uint64_t paused_until;        /* a stalled process: no ticks, no input */
  bool disk_failed;             /* a write failed: crash after this call */
  struct store st;
  struct sm sm;                 /* volatile */
  uint64_t seen_applied, seen_commit;
  bool dirty;                   /* log changed since the last check */
  uint64_t log_checked;         /* stored entries up to here were checked */
  bool was_leader;
  uint64_t leader_checked_g;    /* leader completeness checked up to */
  uint64_t term_seen;
};

static unsigned n_nodes;
static struct node nodes[MAXN];
static struct raft_config base_cfg;

/* network parameters */
static struct {
  unsigned drop, dup;           /* per mille */
  unsigned slow;                /* per mille of messages delayed a lot */
  unsigned max_delay;
  bool link[MAXN][MAXN];        /* link[a][b]: a can reach b */
  uint64_t next_change;
} net;

struct net_msg {
  uint64_t at;
  struct raft_msg m;
  struct raft_entry *ents;
  void *snap;
};
static struct net_msg *inflight;
static size_t n_inflight, cap_inflight;

/* ---- global history for the checker ---------------------------------------- */

static uint32_t *leader_of;     /* term -> leader id */
static size_t cap_leader_of;

struct vrec { uint32_t granted_to[MAXN]; };
static struct vrec *votes;      /* term -> whom each node voted for */
static size_t cap_votes;

struct crec { uint64_t term, hash, cterm; bool set; };
static struct crec *committed;  /* index -> committed entry */
static size_t cap_committed;
static uint64_t g_commit;       /* highest commit index ever observed */

struct arec { uint64_t term, hash, state; bool set; };
static struct arec *applied_rec; /* index -> applied entry and sm hash */
static size_t cap_applied;

/* (index, term) -> (content hash, predecessor term): open addressing */
struct lrec { uint64_t index, term, hash, prev_term; bool used; };
static struct lrec *ltab;
static size_t cap_ltab, n_ltab;

struct rrec { uint32_t node; unsigned life; uint64_t g_start; bool done; };
static struct rrec *reads;
static size_t cap_reads;
static uint64_t next_read_id = 1;

static uint64_t next_cmd = 1;
static unsigned disk_fail_pm;   /* per mille of persist calls that fail */

/* An injected write error: the node's disk stays failed until the node
 * is crashed and restarted (what the daemon does on a failed fsync). */
static bool disk_fails(struct node *n)
{
  if (!n->disk_failed && chance(disk_fail_pm)) {
    n->disk_failed = true;
    trace("n%u DISK ERROR", n->id);
  }
  return n->disk_failed;
}

static size_t lhash(uint64_t index, uint64_t term)
{
  return (size_t)mix(index, term);
}

static void ltab_grow(void)
{
  size_t oc = cap_ltab;
  struct lrec *old = ltab;
  cap_ltab = oc ? oc * 2 : 1024;
  ltab = xmalloc(cap_ltab * sizeof *ltab);
  memset(ltab, 0, cap_ltab * sizeof *ltab);
  n_ltab = 0;
  for (size_t i = 0; i < oc; i++) {
    if (!old[i].used)
      continue;
    size_t h = lhash(old[i].index, old[i].term) & (cap_ltab - 1);
    while (ltab[h].used)
      h = (h + 1) & (cap_ltab - 1);
    ltab[h] = old[i];
    n_ltab++;
  }
  free(old);
}

/* Log matching: (index, term) must always name the same entry that
 * follows the same predecessor term. */
static void check_lrec(uint32_t id, uint64_t index, uint64_t term,
                       uint64_t hash, uint64_t prev_term)
{
  if ((n_ltab + 1) * 2 > cap_ltab)
    ltab_grow();
  size_t h = lhash(index, term) & (cap_ltab - 1);
  while (ltab[h].used) {
    struct lrec *l = &ltab[h];
    if (l->index == index && l->term == term) {
      if (l->hash != hash)
        fail("log matching: node %u entry %" PRIu64 "/%" PRIu64
             " differs in content from another log's", id, index, term);
      if (l->prev_term != prev_term)
        fail("log matching: node %u entry %" PRIu64 "/%" PRIu64
             " follows term %" PRIu64 ", another log's follows %" PRIu64,
             id, index, term, prev_term, l->prev_term);
      return;
    }
    h = (h + 1) & (cap_ltab - 1);
  }
  ltab[h] = (struct lrec){ index, term, hash, prev_term, true };
  n_ltab++;
}

static const struct raft_entry *st_entry(const struct store *st, uint64_t i)
{
  if (i <= st->snap_index || i > st->snap_index + st->n)
    return NULL;
  return &st->ents[i - st->snap_index - 1];
}

static void st_truncate(struct store *st, uint64_t from)
{
  while (st->n > 0 && st->snap_index + st->n >= from) {
    free((void *)st->ents[st->n - 1].data);
    st->n--;
  }
}

static void st_free(struct store *st)
{
  st_truncate(st, 0);
  free(st->ents);
  memset(st, 0, sizeof *st);
}

/* ---- io callbacks ------------------------------------------------------------ */

static struct node *ctx_node(void *ctx) { return ctx; }

static int io_persist_state(void *ctx, uint64_t term, uint32_t vote)
{
  struct node *n = ctx_node(ctx);
  if (disk_fails(n))
    return -EIO;
  if (term < n->st.term)
    fail("node %u persisted term %" PRIu64 " < %" PRIu64, n->id, term,
         n->st.term);
  if (term == n->st.term && n->st.vote != 0 && vote != n->st.vote &&
      opt.bug != BUG_NO_PERSIST_VOTE)
    fail("node %u changed its vote in term %" PRIu64 " from %u to %u",
         n->id, term, n->st.vote, vote);
  n->st.term = term;
  n->st.vote = opt.bug == BUG_NO_PERSIST_VOTE ? 0 : vote;
  trace("n%u persist term=%" PRIu64 " vote=%u", n->id, term, vote);
  return 0;
}

static int io_persist_entries(void *ctx, const struct raft_entry *es, size_t cnt)
{
  struct node *n = ctx_node(ctx);
  struct store *st = &n->st;
  if (cnt == 0)
    fail("node %u persist_entries with no entries", n->id);
  uint64_t first = es[0].index;
  if (first <= st->snap_index || first > st->snap_index + st->n + 1)
    fail("node %u persist_entries at %" PRIu64 " outside stored log (%"
         PRIu64 "..%" PRIu64 ")", n->id, first, st->snap_index + 1,
         st->snap_index + st->n);
  bool failing = disk_fails(n);
  if (failing && chance(500))
    return -EIO;                /* nothing reached the disk */
  st_truncate(st, first);
  if (n->log_checked >= first)
    n->log_checked = first - 1;
  if (failing)
    cnt = rnd_below((unsigned)cnt);  /* torn: a prefix reached the disk */
  if (st->n + cnt > st->cap) {
    st->cap = (st->n + cnt) * 2;
    st->ents = xrealloc(st->ents, st->cap * sizeof *st->ents);
  }
  for (size_t i = 0; i < cnt; i++) {
    if (es[i].index != first + i)
      fail("node %u persist_entries not contiguous", n->id);
    struct raft_entry *d = &st->ents[st->n++];
    *d = es[i];
    d->data = xmemdup(es[i].data, es[i].len);
  }
  n->dirty = true;
  trace("n%u persist entries %" PRIu64 "..%" PRIu64 "%s", n->id, first,
        first + cnt - 1, failing ? " then FAILED" : "");
  return failing ? -EIO : 0;
}

static void net_send(const struct raft_msg *m);
static const char *msg_name(uint32_t t);

static void io_send(void *ctx, const struct raft_msg *m)
{
  struct node *n = ctx_node(ctx);
  if (m->from != n->id)
    fail("node %u sent a message from %u", n->id, m->from);
  uint64_t stored_last = n->st.snap_index + n->st.n;
  if ((m->type == RAFT_MSG_APPEND_RESP || m->type == RAFT_MSG_SNAPSHOT_RESP) &&
      !m->reject && m->match_index > stored_last)
    fail("node %u acknowledged %" PRIu64 " but stored only up to %" PRIu64,
         n->id, m->match_index, stored_last);
  if (m->term > n->st.term && m->type != RAFT_MSG_PREVOTE &&
      m->type != RAFT_MSG_PREVOTE_RESP)
    fail("node %u sent %s with term %" PRIu64 " above its stored %" PRIu64,
         n->id, msg_name(m->type), m->term, n->st.term);
  for (size_t i = 0; i < m->n_entries; i++) {
    const struct raft_entry *se = st_entry(&n->st, m->entries[i].index);
    if (!se || se->term != m->entries[i].term)
      fail("node %u sent entry %" PRIu64 " it has not stored", n->id,
           m->entries[i].index);
  }
  if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) {
    /* only a leader sends these: election safety, message by message */
    GROW(leader_of, cap_leader_of, m->term);
    if (leader_of[m->term] != 0 && leader_of[m->term] != n->id)
      fail("election safety: nodes %u and %u both led term %" PRIu64,
           leader_of[m->term], n->id, m->term);
    if (!raft_is_leader(n->r) || raft_term(n->r) != m->term)
      fail("node %u sent %s for term %" PRIu64 " without leading it",
           n->id, msg_name(m->type), m->term);
  }
  if (m->type == RAFT_MSG_VOTE_RESP && m->granted) {
    /* one vote per term per node, across crashes */
    GROW(votes, cap_votes, m->term);
    uint32_t *v = &votes[m->term].granted_to[n->id - 1];
    if (*v != 0 && *v != m->to)
      fail("node %u voted for %u and for %u in term %" PRIu64, n->id, *v,
           m->to, m->term);
    *v = m->to;
    if (n->st.term != m->term || n->st.vote != m->to) {
      if (opt.bug != BUG_NO_PERSIST_VOTE)
        fail("node %u granted its vote in term %" PRIu64 " to %u before "
             "persisting it", n->id, m->term, m->to);
    }
  }
  net_send(m);
}

static void io_apply(void *ctx, const struct raft_entry *e)
{
  struct node *n = ctx_node(ctx);
  if (e->index != n->sm.index + 1)
    fail("node %u applied index %" PRIu64 " after %" PRIu64, n->id,
         e->index, n->sm.index);
  uint64_t h = entry_hash(e);
  n->sm.index = e->index;
  n->sm.term = e->term;
  n->sm.hash = mix(n->sm.hash, mix(e->index, h));
  if (e->type == RAFT_ENTRY_NORMAL)
    n->sm.count++;
  GROW(applied_rec, cap_applied, e->index);
  struct arec *a = &applied_rec[e->index];
  if (!a->set) {
    *a = (struct arec){ e->term, h, n->sm.hash, true };
  } else if (a->term != e->term || a->hash != h || a->state != n->sm.hash) {
    fail("state machine safety: node %u applied %" PRIu64 "/%" PRIu64
         " unlike an earlier apply of %" PRIu64 "/%" PRIu64, n->id,
         e->index, e->term, e->index, a->term);
  }
  if (e->index < cap_committed && committed[e->index].set &&
      (committed[e->index].term != e->term ||
       committed[e->index].hash != h))
    fail("state machine safety: node %u applied %" PRIu64 "/%" PRIu64
         " but %" PRIu64 "/%" PRIu64 " was committed", n->id, e->index,
         e->term, e->index, committed[e->index].term);
  trace("n%u apply %" PRIu64 "/%" PRIu64 " %s", n->id, e->index, e->term,
        e->type == RAFT_ENTRY_NOOP ? "noop" : "cmd");
}

static int io_snapshot_get(void *ctx, uint64_t *index, uint64_t *term,
                           void **data, size_t *len)
{
  struct node *n = ctx_node(ctx);
  struct sm *s = xmalloc(sizeof *s);
  *s = n->sm;
  *index = n->sm.index;
  *term = n->sm.term;
  *data = s;
  *len = sizeof *s;
  return 0;
}

static int io_snapshot_install(void *ctx, uint64_t index, uint64_t term,
                               const void *data, size_t len)
{
  struct node *n = ctx_node(ctx);
  struct sm s;
  if (len != sizeof s)
    fail("node %u got a snapshot of %zu bytes", n->id, len);
  memcpy(&s, data, sizeof s);
  if (s.index != index || s.term != term)
    fail("node %u snapshot header %" PRIu64 "/%" PRIu64 " != %" PRIu64
         "/%" PRIu64, n->id, s.index, s.term, index, term);
  if (index <= n->sm.index)
    fail("node %u installs snapshot %" PRIu64 " behind its state machine %"
         PRIu64, n->id, index, n->sm.index);
  if (index >= cap_applied || !applied_rec[index].set ||
      applied_rec[index].state != s.hash || applied_rec[index].term != term)
    fail("node %u snapshot %" PRIu64 "/%" PRIu64
         " does not match any applied state", n->id, index, term);
  stats.installs++;
  n->sm = s;
  n->st.snap_sm = s;
  n->st.snap_index = index;
  n->st.snap_term = term;
  st_truncate(&n->st, 0);       /* the whole stored log (see raft.h) */
  n->log_checked = index;
  n->seen_applied = index;
  n->dirty = true;
  trace("n%u install snapshot %" PRIu64 "/%" PRIu64, n->id, index, term);
  return 0;
}

static void io_read_done(void *ctx, uint64_t read_id, int err)
{
  struct node *n = ctx_node(ctx);
  if (read_id >= cap_reads || reads[read_id].life == 0)
    fail("node %u completed unknown read %" PRIu64, n->id, read_id);
  struct rrec *rr = &reads[read_id];
  if (rr->done)
    fail("node %u completed read %" PRIu64 " twice", n->id, read_id);
  if (rr->node != n->id || rr->life != n->life)
    fail("node %u completed read %" PRIu64 " issued elsewhere", n->id,
         read_id);
  rr->done = true;
  if (err == 0)
    stats.reads_ok++;
  else
    stats.reads_again++;
  if (err == 0 && n->sm.index < rr->g_start)
    fail("linearizability: node %u read %" PRIu64 " completed at applied %"
         PRIu64 " but %" PRIu64 " was committed before it started", n->id,
         read_id, n->sm.index, rr->g_start);
  if (err != 0 && err != -EAGAIN)
    fail("node %u read %" PRIu64 " failed with %d", n->id, read_id, err);
  trace("n%u read %" PRIu64 " done err=%d applied=%" PRIu64 " need=%" PRIu64,
        n->id, read_id, err, n->sm.index, rr->g_start);
}

static const struct raft_io sim_io = {
  .persist_state = io_persist_state,
  .persist_entries = io_persist_entries,
  .send = io_send,
  .apply = io_apply,
  .snapshot_get = io_snapshot_get,
  .snapshot_install = io_snapshot_install,
  .read_done = io_read_done,
};

/* ---- network ------------------------------------------------------------------- */

static const char *msg_name(uint32_t t)
{
  static const char *const names[] = {
    "?", "PREVOTE", "PREVOTE_RESP", "VOTE", "VOTE_RESP", "APPEND",
    "APPEND_RESP", "SNAPSHOT", "SNAPSHOT_RESP",
  };
  return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static void trace_msg(const char *what, const struct raft_msg *m)
{
  if (!opt.verbose)
    return;
  switch (m->type) {
  case RAFT_MSG_PREVOTE: case RAFT_MSG_VOTE:
    trace("%s %u->%u %s term=%" PRIu64 " last=%" PRIu64 "/%" PRIu64, what,
          m->from, m->to, msg_name(m->type), m->term, m->last_index,
          m->last_term);
    break;
  case RAFT_MSG_PREVOTE_RESP: case RAFT_MSG_VOTE_RESP:
    trace("%s %u->%u %s term=%" PRIu64 " granted=%d", what, m->from, m->to,
          msg_name(m->type), m->term, m->granted);
    break;
  case RAFT_MSG_APPEND:
    trace("%s %u->%u APPEND term=%" PRIu64 " prev=%" PRIu64 "/%" PRIu64
          " n=%zu commit=%" PRIu64 " seq=%" PRIu64, what, m->from, m->to,
          m->term, m->prev_index, m->prev_term, m->n_entries, m->commit,
          m->read_seq);
    break;
  case RAFT_MSG_SNAPSHOT:
    trace("%s %u->%u SNAPSHOT term=%" PRIu64 " snap=%" PRIu64 "/%" PRIu64,
          what, m->from, m->to, m->term, m->snap_index, m->snap_term);
    break;
  default:
    trace("%s %u->%u %s term=%" PRIu64 " reject=%d match=%" PRIu64
          " seq=%" PRIu64, what, m->from, m->to, msg_name(m->type), m->term,
          m->reject, m->match_index, m->read_seq);
  }
}

static void net_push(const struct raft_msg *m)
{
  if (n_inflight == cap_inflight) {
    cap_inflight = cap_inflight ? cap_inflight * 2 : 256;
    inflight = xrealloc(inflight, cap_inflight * sizeof *inflight);
  }
  struct net_msg *q = &inflight[n_inflight++];
  q->at = now + 1 + rnd_below(net.max_delay);
  if (chance(net.slow))
    q->at += rnd_below(3 * base_cfg.election_ticks);
  q->m = *m;
  q->ents = NULL;
  q->snap = NULL;
  if (m->n_entries) {
    q->ents = xmalloc(m->n_entries * sizeof *q->ents);
    for (size_t i = 0; i < m->n_entries; i++) {
      q->ents[i] = m->entries[i];
      q->ents[i].data = xmemdup(m->entries[i].data, m->entries[i].len);
    }
  }
  q->m.entries = q->ents;
  q->snap = xmemdup(m->snap_data, m->snap_len);
  q->m.snap_data = q->snap;
}

static void net_free_msg(struct net_msg *q)
{
  for (size_t i = 0; i < q->m.n_entries; i++)
    free((void *)q->ents[i].data);
  free(q->ents);
  free(q->snap);
}

static void net_send(const struct raft_msg *m)
{
  if (m->to == 0 || m->to > n_nodes || m->to == m->from)
    fail("message %s from %u to bad node %u", msg_name(m->type), m->from,
         m->to);
  if (!net.link[m->from - 1][m->to - 1] || chance(net.drop)) {
    stats.dropped++;
    trace_msg("drop", m);
    return;
  }
  net_push(m);
  if (chance(net.dup))
    net_push(m);
}

/* ---- checker ------------------------------------------------------------------- */

static void check_node_log(struct node *n)
{
  const struct store *st = &n->st;
  if (raft_first_index(n->r) != st->snap_index + 1 ||
      raft_last_index(n->r) != st->snap_index + st->n)
    fail("node %u core log %" PRIu64 "..%" PRIu64 " != stored %" PRIu64
         "..%" PRIu64, n->id, raft_first_index(n->r), raft_last_index(n->r),
         st->snap_index + 1, st->snap_index + st->n);
  if (n->log_checked < st->snap_index)
    n->log_checked = st->snap_index;
  uint64_t prev_term = n->log_checked == st->snap_index ? st->snap_term
                       : st_entry(st, n->log_checked)->term;
  for (size_t i = (size_t)(n->log_checked - st->snap_index); i < st->n; i++) {
    const struct raft_entry *e = &st->ents[i];
    if (e->term < prev_term)
      fail("node %u log terms go down at %" PRIu64, n->id, e->index);
    check_lrec(n->id, e->index, e->term, entry_hash(e), prev_term);
    prev_term = e->term;
  }
  n->log_checked = st->snap_index + st->n;
}

static void record_commits(struct node *n)
{
  uint64_t c = raft_commit_index(n->r);
  if (c < n->seen_commit)
    fail("node %u commit index went back from %" PRIu64 " to %" PRIu64,
         n->id, n->seen_commit, c);
  for (uint64_t i = n->seen_commit + 1; i <= c; i++) {
    const struct raft_entry *e = st_entry(&n->st, i);
    if (!e)
      continue;                 /* covered by a snapshot */
    GROW(committed, cap_committed, i);
    struct crec *cr = &committed[i];
    uint64_t h = entry_hash(e);
    if (!cr->set) {
      *cr = (struct crec){ e->term, h, raft_term(n->r), true };
      stats.commits++;
      trace("n%u commit %" PRIu64 "/%" PRIu64, n->id, i, e->term);
    } else if (cr->term != e->term || cr->hash != h) {
      fail("state machine safety: node %u committed %" PRIu64 "/%" PRIu64
           " but %" PRIu64 "/%" PRIu64 " was committed before", n->id, i,
           e->term, i, cr->term);
    }
  }
  n->seen_commit = c;
  if (c > g_commit)
    g_commit = c;
}

/* Leader completeness: a leader of term t holds every entry committed in
 * a term before t (cterm is the term of the node that first reported the
 * commit: never below the real commit term, so this never cries wolf). */
static void check_leader(struct node *n, bool full)
{
  uint64_t t = raft_term(n->r);
  uint64_t from = n->st.snap_index + 1;
  if (!full && n->leader_checked_g + 1 > from)
    from = n->leader_checked_g + 1;
  for (uint64_t i = from; i <= g_commit; i++) {
    if (i >= cap_committed || !committed[i].set || committed[i].cterm >= t)
      continue;
    const struct raft_entry *e = st_entry(&n->st, i);
    if (!e || e->term != committed[i].term ||
        entry_hash(e) != committed[i].hash)
      fail("leader completeness: leader %u of term %" PRIu64 " lacks entry %"
           PRIu64 "/%" PRIu64 " committed in term %" PRIu64, n->id, t, i,
           committed[i].term, committed[i].cterm);
  }
  if (n->st.snap_index > 0 && n->st.snap_index < cap_applied &&
      applied_rec[n->st.snap_index].set &&
      applied_rec[n->st.snap_index].state != n->st.snap_sm.hash)
    fail("leader %u snapshot at %" PRIu64 " differs from applied state",
         n->id, n->st.snap_index);
  n->leader_checked_g = g_commit;
}

static void check_all(void)
{
  for (unsigned k = 0; k < n_nodes; k++) {
    struct node *n = &nodes[k];
    if (!n->r)
      continue;
    if (n->dirty) {
      check_node_log(n);
    }
    record_commits(n);
  }
  for (unsigned k = 0; k < n_nodes; k++) {
    struct node *n = &nodes[k];
    if (!n->r)
      continue;
    uint64_t a = raft_applied_index(n->r);
    if (a < n->seen_applied)
      fail("node %u applied index went back from %" PRIu64 " to %" PRIu64,
           n->id, n->seen_applied, a);
    if (a != n->sm.index)
      fail("node %u core applied %" PRIu64 " but state machine is at %"
           PRIu64, n->id, a, n->sm.index);
    if (a > raft_commit_index(n->r))
      fail("node %u applied %" PRIu64 " beyond commit %" PRIu64, n->id, a,
           raft_commit_index(n->r));
    n->seen_applied = a;
    uint64_t t = raft_term(n->r);
    if (t < n->term_seen)
      fail("node %u term went back", n->id);
    n->term_seen = t;
    bool lead = raft_is_leader(n->r);
    if (lead) {
      GROW(leader_of, cap_leader_of, t);
      if (leader_of[t] == 0) {
        leader_of[t] = n->id;
        stats.leaders++;
        if (t > stats.max_term)
          stats.max_term = t;
        trace("n%u LEADER term=%" PRIu64 " last=%" PRIu64 " commit=%" PRIu64,
              n->id, t, raft_last_index(n->r), raft_commit_index(n->r));
      } else if (leader_of[t] != n->id) {
        fail("election safety: nodes %u and %u both led term %" PRIu64,
             leader_of[t], n->id, t);
      }
      /* in full when it takes office, then as commits are learned */
      if (!n->was_leader || n->leader_checked_g != g_commit)
        check_leader(n, !n->was_leader);
    } else {
      if (n->was_leader)
        trace("n%u steps down term=%" PRIu64, n->id, t);
      /* a follower's idea of the leader is the leader of its term */
      uint32_t l = raft_leader(n->r);
      if (l != 0 && (t >= cap_leader_of || leader_of[t] != l))
        fail("node %u follows n%u in term %" PRIu64 ", which n%u leads",
             n->id, l, t, t < cap_leader_of ? leader_of[t] : 0);
    }
    n->was_leader = lead;
    n->dirty = false;
  }
}

/* ---- node lifecycle ---------------------------------------------------------- */

static void node_start(struct node *n)
{
  struct raft_config cfg = base_cfg;
  cfg.id = n->id;
  cfg.seed = mix(cur_seed, (uint64_t)n->id * 1000 + n->life);
  struct raft_persisted init = {
    .term = n->st.term, .vote = n->st.vote,
    .snap_index = n->st.snap_index, .snap_term = n->st.snap_term,
    .entries = n->st.ents, .n_entries = n->st.n,
  };
  n->life++;
  n->sm = n->st.snap_sm;
  n->r = raft_new(&cfg, &sim_io, n, &init);
  if (!n->r)
    fail("raft_new for node %u: %s", n->id, strerror(errno));
  n->seen_applied = n->seen_commit = n->st.snap_index;
  n->term_seen = n->st.term;
  n->was_leader = false;
  n->dirty = true;
  n->log_checked = 0;
  trace("n%u start (life %u) term=%" PRIu64 " vote=%u snap=%" PRIu64
        " last=%" PRIu64, n->id, n->life, n->st.term, n->st.vote,
        n->st.snap_index, n->st.snap_index + n->st.n);
}

static void node_crash(struct node *n)
{
  stats.crashes++;
  trace("n%u CRASH", n->id);
  raft *r = n->r;
  raft_free(r);                 /* pending reads complete with -EAGAIN */
  n->r = NULL;
  memset(&n->sm, 0, sizeof n->sm);
}

/* ---- scenario ------------------------------------------------------------------ */

/* After a raft call on n: a node whose disk failed is crashed (the core
 * returned the error, or swallowed it inside raft_tick) and comes back. */
static void after_call(struct node *n)
{
  if (!n->disk_failed)
    return;
  node_crash(n);
  n->disk_failed = false;
  n->restart_at = now + 1 + rnd_below(10);
  check_all();
}

static void set_topology(void)
{
  unsigned kind = rnd_below(10);
  for (unsigned a = 0; a < n_nodes; a++)
    for (unsigned b = 0; b < n_nodes; b++)
      net.link[a][b] = true;
  if (kind < 4) {
    trace("net: fully connected");
  } else if (kind < 6) {
    /* split in two groups */
    unsigned side[MAXN];
    for (unsigned a = 0; a < n_nodes; a++)
      side[a] = rnd_below(2);
    for (unsigned a = 0; a < n_nodes; a++)
      for (unsigned b = 0; b < n_nodes; b++)
        net.link[a][b] = side[a] == side[b];
    trace("net: partition %u%u%u%u%u", side[0], side[1], side[2],
          n_nodes > 3 ? side[3] : 9, n_nodes > 4 ? side[4] : 9);
  } else if (kind < 8) {
    /* isolate one node, most often the leader (a stale leader keeps
     * taking proposals until CheckQuorum deposes it) */
    unsigned x = rnd_below(n_nodes);
    if (kind == 7)
      for (unsigned k = 0; k < n_nodes; k++)
        if (nodes[k].r && raft_is_leader(nodes[k].r))
          x = k;
    for (unsigned b = 0; b < n_nodes; b++)
      net.link[x][b] = net.link[b][x] = b == x;
    trace("net: n%u isolated", x + 1);
  } else {
    /* asymmetric: some one-way links down */
    for (unsigned a = 0; a < n_nodes; a++)
      for (unsigned b = 0; b < n_nodes; b++)
        if (a != b && chance(300)) {
          net.link[a][b] = false;
          trace("net: %u->%u one-way down", a + 1, b + 1);
        }
  }
  net.next_change = now + 20 + rnd_below(120);
}

static void deliver_due(void)
{
  size_t n_due = 0;
  struct net_msg *due = NULL;
  for (size_t i = 0; i < n_inflight;) {
    struct node *dst = &nodes[inflight[i].m.to - 1];
    if (inflight[i].at <= now && dst->paused_until > now)
      inflight[i].at = dst->paused_until;
    if (inflight[i].at <= now) {
      due = xrealloc(due, (n_due + 1) * sizeof *due);
      due[n_due++] = inflight[i];
      inflight[i] = inflight[--n_inflight];
    } else {
      i++;
    }
  }
  /* reorder what arrives in one tick */
  for (size_t i = n_due; i > 1; i--) {
    size_t j = rnd_below((unsigned)i);
    struct net_msg t = due[i - 1];
    due[i - 1] = due[j];
    due[j] = t;
  }
  for (size_t i = 0; i < n_due; i++) {
    struct node *n = &nodes[due[i].m.to - 1];
    if (n->r) {
      trace_msg("recv", &due[i].m);
      stats.delivered++;
      int err = raft_step(n->r, &due[i].m);
      if (err < 0 && !(err == -EIO && n->disk_failed))
        fail("node %u rejected a well-formed %s: %d", n->id,
             msg_name(due[i].m.type), err);
      if (n->disk_failed)
        after_call(n);
      else
        check_all();
    }
    net_free_msg(&due[i]);
  }
  free(due);
}

static void client_propose(unsigned k)
{
  struct node *n = &nodes[k];
  if (!n->r)
    return;
  uint64_t cmd = next_cmd;
  uint64_t idx, term;
  int err = raft_propose(n->r, &cmd, sizeof cmd, &idx, &term);
  if (err == -ENOTCONN) {
    if (raft_is_leader(n->r))
      fail("node %u leads but refused a proposal", n->id);
    return;
  }
  if (err == -EIO && n->disk_failed) {
    after_call(n);
    return;
  }
  if (err < 0)
    fail("node %u propose: %d", n->id, err);
  next_cmd++;
  stats.proposals++;
  trace("n%u propose cmd %" PRIu64 " at %" PRIu64 "/%" PRIu64, n->id, cmd,
        idx, term);
  check_all();
}

static void client_read(unsigned k)
{
  struct node *n = &nodes[k];
  if (!n->r)
    return;
  uint64_t id = next_read_id;
  GROW(reads, cap_reads, id);
  /* every commit reported anywhere so far must be visible to this read */
  for (unsigned j = 0; j < n_nodes; j++)
    if (nodes[j].r && raft_commit_index(nodes[j].r) > g_commit)
      g_commit = raft_commit_index(nodes[j].r);
  reads[id] = (struct rrec){ n->id, n->life, g_commit, false };
  trace("n%u read %" PRIu64 " start need=%" PRIu64, n->id, id, g_commit);
  int err = raft_read_index(n->r, id);
  if (err == -ENOTCONN && !raft_is_leader(n->r)) {
    reads[id].life = 0;
    return;
  }
  if (err < 0)
    fail("node %u read_index: %d", n->id, err);
  next_read_id++;
  check_all();
}

static void client_compact(unsigned k)
{
  struct node *n = &nodes[k];
  if (!n->r || n->sm.index <= n->st.snap_index)
    return;
  /* the state machine snapshots itself, durably, then the log goes */
  uint64_t idx = n->sm.index;
  n->st.snap_sm = n->sm;
  const struct raft_entry *e = st_entry(&n->st, idx);
  if (!e)
    fail("node %u applied %" PRIu64 " but has no such stored entry", n->id,
         idx);
  uint64_t t = e->term;
  size_t drop = (size_t)(idx - n->st.snap_index);
  for (size_t i = 0; i < drop; i++)
    free((void *)n->st.ents[i].data);
  memmove(n->st.ents, n->st.ents + drop, (n->st.n - drop) * sizeof *n->st.ents);
  n->st.n -= drop;
  n->st.snap_index = idx;
  n->st.snap_term = t;
  int err = raft_compact(n->r, idx);
  if (err < 0)
    fail("node %u compact %" PRIu64 ": %d", n->id, idx, err);
  n->dirty = true;
  stats.compactions++;
  trace("n%u compact to %" PRIu64 "/%" PRIu64, n->id, idx, t);
  check_all();
}

static void tick_all(void)
{
  unsigned order[MAXN];
  for (unsigned k = 0; k < n_nodes; k++)
    order[k] = k;
  for (unsigned k = n_nodes; k > 1; k--) {
    unsigned j = rnd_below(k);
    unsigned t = order[k - 1]; order[k - 1] = order[j]; order[j] = t;
  }
  for (unsigned k = 0; k < n_nodes; k++) {
    struct node *n = &nodes[order[k]];
    if (n->r && n->paused_until <= now) {
      raft_tick(n->r);
      if (n->disk_failed)
        after_call(n);
      else
        check_all();
    }
  }
}

static void reset_world(void)
{
  for (unsigned k = 0; k < MAXN; k++) {
    if (nodes[k].r)
      raft_free(nodes[k].r);
    st_free(&nodes[k].st);
    memset(&nodes[k], 0, sizeof nodes[k]);
  }
  for (size_t i = 0; i < n_inflight; i++)
    net_free_msg(&inflight[i]);
  free(inflight);
  inflight = NULL;
  n_inflight = cap_inflight = 0;
  free(leader_of); leader_of = NULL; cap_leader_of = 0;
  free(votes); votes = NULL; cap_votes = 0;
  free(committed); committed = NULL; cap_committed = 0;
  free(applied_rec); applied_rec = NULL; cap_applied = 0;
  free(ltab); ltab = NULL; cap_ltab = n_ltab = 0;
  free(reads); reads = NULL; cap_reads = 0;
  g_commit = 0;
  next_read_id = 1;
  next_cmd = 1;
}

/* Run one seed; returns the number of ticks it took. */
static uint64_t run_seed(uint64_t seed)
{
  cur_seed = seed;
  rng_state = mix(seed, 0x7261667473696dull);
  now = 0;
  reset_world();

  n_nodes = rnd_below(2) ? 5 : 3;
  memset(&base_cfg, 0, sizeof base_cfg);
  base_cfg.n_peers = n_nodes;
  for (unsigned k = 0; k < n_nodes; k++)
    base_cfg.peers[k] = k + 1;
  base_cfg.election_ticks = 10;
  base_cfg.heartbeat_ticks = 1 + rnd_below(3);
  base_cfg.max_append_entries = 1 + rnd_below(8);
  net.drop = rnd_below(200);
  net.dup = rnd_below(100);
  net.max_delay = 1 + rnd_below(4);
  unsigned crash_pm = rnd_below(8);          /* per node per tick, per mille */
  unsigned pause_pm = rnd_below(4);
  unsigned leader_crash_pm = rnd_below(15);
  net.slow = rnd_below(20);
  unsigned propose_pm = 100 + rnd_below(500);
  unsigned read_pm = rnd_below(300);
  unsigned compact_pm = rnd_below(60);
  disk_fail_pm = rnd_below(4) == 0 ? 1 + rnd_below(20) : 0;
  bool churn = rnd_below(4) == 0;
  if (churn) {
    /* leaders die young and logs diverge (the paper's Figure 8 land) */
    leader_crash_pm = 30 + rnd_below(70);
    base_cfg.max_append_entries = 1 + rnd_below(2);
    propose_pm = 500 + rnd_below(500);
  }
  trace("seed %" PRIu64 ": %u nodes, heartbeat %u, batch %zu, drop %u, dup %u,"
        " delay<=%u, slow %u, crash %u, pause %u, propose %u, read %u,"
        " compact %u, leader crash %u, disk errors %u%s", seed, n_nodes,
        base_cfg.heartbeat_ticks, base_cfg.max_append_entries, net.drop,
        net.dup, net.max_delay, net.slow, crash_pm, pause_pm, propose_pm,
        read_pm, compact_pm, leader_crash_pm, disk_fail_pm,
        churn ? " (churn)" : "");

  for (unsigned k = 0; k < n_nodes; k++) {
    nodes[k].id = k + 1;
    node_start(&nodes[k]);
  }
  set_topology();
  check_all();

  for (now = 1; now <= opt.ticks; now++) {
    if (now >= net.next_change)
      set_topology();
    for (unsigned k = 0; k < n_nodes; k++) {
      struct node *n = &nodes[k];
      if (n->r && chance(crash_pm)) {
        node_crash(n);
        n->restart_at = now + 1 + (chance(300) ? rnd_below(3) : rnd_below(60));
        check_all();
      } else if (n->r && n->paused_until <= now && chance(pause_pm)) {
        n->paused_until = now + 1 + rnd_below(4 * base_cfg.election_ticks);
        stats.pauses++;
        trace("n%u PAUSE until t=%" PRIu64, n->id, n->paused_until);
      } else if (!n->r && now >= n->restart_at) {
        node_start(n);
        check_all();
      }
    }
    if (chance(leader_crash_pm)) {
      for (unsigned k = 0; k < n_nodes; k++) {
        struct node *n = &nodes[k];
        if (n->r && raft_is_leader(n->r)) {
          node_crash(n);
          n->restart_at = now + 1 + rnd_below(40);
          check_all();
        }
      }
    }
    tick_all();
    deliver_due();
    if (chance(propose_pm))
      client_propose(rnd_below(n_nodes));
    if (chance(read_pm))
      client_read(rnd_below(n_nodes));
    if (chance(compact_pm))
      client_compact(rnd_below(n_nodes));
  }

  /* liveness: heal everything, restart everyone, and a new proposal must
   * commit within a bounded time */
  for (unsigned a = 0; a < n_nodes; a++)
    for (unsigned b = 0; b < n_nodes; b++)
      net.link[a][b] = true;
  net.drop = net.dup = net.slow = 0;
  disk_fail_pm = 0;
  net.next_change = UINT64_MAX;
  trace("heal: network whole, restarting every node");
  for (unsigned k = 0; k < n_nodes; k++) {
    if (nodes[k].r)
      node_crash(&nodes[k]);
    nodes[k].paused_until = 0;
    node_start(&nodes[k]);
  }
  check_all();
  /* A leader within 30 election timeouts; the commit within 50 plus the
   * time to ship the logs' divergent span at one batch per 4 ticks
   * (logs can differ over hundreds of entries, batches can be 1). */
  uint64_t max_last = 0, min_snap = UINT64_MAX;
  for (unsigned k = 0; k < n_nodes; k++) {
    if (raft_last_index(nodes[k].r) > max_last)
      max_last = raft_last_index(nodes[k].r);
    if (nodes[k].st.snap_index < min_snap)
      min_snap = nodes[k].st.snap_index;
  }
  const uint64_t lead_bound = 30ull * base_cfg.election_ticks;
  const uint64_t bound = 50ull * base_cfg.election_ticks +
                         4 * (max_last - min_snap) /
                         base_cfg.max_append_entries;
  uint64_t start = now, want_idx = 0, want_term = 0, want_cmd = 0;
  bool led = false;
  for (;; now++) {
    if (!led && now - start > lead_bound)
      fail("liveness: no leader within %" PRIu64 " ticks of healing",
           lead_bound);
    if (now - start > bound)
      fail("liveness: no new commit within %" PRIu64 " ticks of healing",
           bound);
    for (unsigned k = 0; k < n_nodes && !led; k++) {
      led = raft_is_leader(nodes[k].r);
      if (led && now - start > stats.lead_ticks_max)
        stats.lead_ticks_max = now - start;
    }
    tick_all();
    deliver_due();
    if (want_idx && want_idx < cap_committed && committed[want_idx].set) {
      uint64_t cmd = want_cmd;
      struct raft_entry e = { .type = RAFT_ENTRY_NORMAL, .len = sizeof cmd,
                              .data = &cmd };
      if (committed[want_idx].term == want_term &&
          committed[want_idx].hash == entry_hash(&e))
        break;
      want_idx = 0;             /* overwritten: propose again */
    }
    for (unsigned k = 0; k < n_nodes && want_idx == 0; k++) {
      if (raft_is_leader(nodes[k].r)) {
        want_cmd = next_cmd;
        client_propose(k);
        want_idx = raft_last_index(nodes[k].r);
        want_term = raft_term(nodes[k].r);
      }
    }
    /* a proposal whose leader lost its term will never commit as is */
    if (want_idx) {
      bool alive = false;
      for (unsigned k = 0; k < n_nodes; k++)
        alive |= raft_is_leader(nodes[k].r) &&
                 raft_term(nodes[k].r) == want_term;
      if (!alive && !(want_idx < cap_committed && committed[want_idx].set))
        want_idx = 0;
    }
  }
  trace("liveness: cmd committed at %" PRIu64 " after %" PRIu64 " ticks",
        want_idx, now - start);
  uint64_t took = now;
  if (now - start > stats.liveness_ticks_max) {
    stats.liveness_ticks_max = now - start;
    stats.liveness_seed = seed;
  }
  /* every read completes exactly once (the crashes above end the rest) */
  for (unsigned k = 0; k < n_nodes; k++)
    node_crash(&nodes[k]);
  for (uint64_t id = 1; id < next_read_id; id++)
    if (reads[id].life != 0 && !reads[id].done)
      fail("read %" PRIu64 " never completed", id);
  reset_world();
  return took;
}

static void usage(void)
{
  fprintf(stderr,
    "usage: raft-sim [--seed N | --seeds COUNT [--start N] | --soak]\n"
    "                [--time-limit SECS] [--progress K] [--ticks T]\n"
    "                [--verbose] [--bug MODE [--expect-violation]]\n"
    "  --seed N            run one seed (replay)\n"
    "  --seeds COUNT       run seeds start..start+COUNT-1 (default 100)\n"
    "  --start N           first seed (default 1)\n"
    "  --soak              run seeds until stopped or --time-limit, with\n"
    "                      a progress line every 1000 seeds\n"
    "  --time-limit SECS   stop starting new seeds after SECS seconds\n"
    "  --progress K        print a progress line every K seeds\n"
    "  --ticks T           chaos ticks per seed before the liveness phase (6000)\n"
    "  --verbose           trace every event of the seed(s)\n"
    "  --bug MODE          plant a bug: commit-old-term, no-persist-vote,\n"
    "                      read-no-confirm\n"
    "  --expect-violation  exit 0 when a check fails, 1 when none does\n");
  exit(2);
}

static double elapsed(const struct timespec *t0)
{
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) +
         (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
  uint64_t start = 1, count = 100, progress = 0;
  double time_limit = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seed") && v) {
      start = strtoull(v, NULL, 0);
      count = 1;
      i++;
    } else if (!strcmp(a, "--seeds") && v) {
      count = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--start") && v) {
      start = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--soak")) {
      count = UINT64_MAX;       /* until --time-limit, or forever */
      progress = 1000;
    } else if (!strcmp(a, "--time-limit") && v) {
      time_limit = strtod(v, NULL);
      i++;
    } else if (!strcmp(a, "--progress") && v) {
      progress = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--ticks") && v) {
      opt.ticks = (unsigned)strtoul(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--verbose")) {
      opt.verbose = true;
    } else if (!strcmp(a, "--expect-violation")) {
      opt.expect_violation = true;
    } else if (!strcmp(a, "--bug") && v) {
      if (!strcmp(v, "commit-old-term"))
        opt.bug = BUG_COMMIT_OLD_TERM;
      else if (!strcmp(v, "no-persist-vote"))
        opt.bug = BUG_NO_PERSIST_VOTE;
      else if (!strcmp(v, "read-no-confirm"))
        opt.bug = BUG_READ_NO_CONFIRM;
      else
        usage();
      i++;
    } else {
      usage();
    }
  }
  /* the core's own log lines join the trace in --verbose (same stream
   * order: stdout is line-buffered then, the log writes stderr directly) */
  log_init("raft-sim", opt.verbose ? LOG_DEBUG : LOG_ERR);
  if (opt.verbose)
    setvbuf(stdout, NULL, _IOLBF, 0);
  if (opt.bug == BUG_COMMIT_OLD_TERM)
    raft_inject_bugs(RAFT_BUG_COMMIT_OLD_TERM);
  else if (opt.bug == BUG_READ_NO_CONFIRM)
    raft_inject_bugs(RAFT_BUG_NO_READ_CONFIRM);

  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t ticks = 0, done = 0;
  double secs = 0;
  for (uint64_t s = start; done < count; s++) {
    ticks += run_seed(s);
    done++;
    secs = elapsed(&t0);
    if (progress && done % progress == 0)
      fprintf(stderr, "raft-sim: %" PRIu64 " seeds (up to %" PRIu64
              ") passed, %.0f s\n", done, s, secs);
    if (time_limit > 0 && secs >= time_limit)
      break;
  }
  printf("raft-sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "), %" PRIu64
         " ticks, all checks passed, %.1f s\n", done, start,
         start + done - 1, ticks, secs);
  printf("  leaders %" PRIu64 " (max term %" PRIu64 "), proposals %" PRIu64
         ", commits %" PRIu64 ", compactions %" PRIu64
         ", snapshot installs %" PRIu64 "\n"
         "  reads ok %" PRIu64 ", reads -EAGAIN %" PRIu64 ", crashes %" PRIu64
         ", stalls %" PRIu64 ", messages delivered %" PRIu64 ", dropped %"
         PRIu64 "\n  after healing: first leader within %" PRIu64 " ticks, new "
         "commit within %" PRIu64 " ticks (seed %" PRIu64 ")\n",
         stats.leaders, stats.max_term, stats.proposals, stats.commits,
         stats.compactions, stats.installs, stats.reads_ok,
         stats.reads_again, stats.crashes, stats.pauses, stats.delivered,
         stats.dropped, stats.lead_ticks_max, stats.liveness_ticks_max,
         stats.liveness_seed);
  if (opt.expect_violation) {
    fprintf(stderr, "raft-sim: expected a violation with --bug, none found\n");
    return 1;
  }
  return 0;
}
