/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the Raft core (see raft.h for the contract and
 * docs/monitor-raft.md for the design).  Everything here is a pure state
 * machine: inputs are raft_tick(), raft_step(), raft_propose(),
 * raft_read_index() and raft_compact(); outputs are the io callbacks.
 *
 * The in-memory log holds the entries after the last snapshot:
 * log[k] has index snap_index + 1 + k, and each entry owns a malloc'ed copy
 * of its data.  Every change of the log or of (term, vote) goes through
 * io->persist_* before any message that depends on it leaves: a vote
 * response after persist_state, an APPEND_RESP after persist_entries.
 *
 * Roles: FOLLOWER -> PRECANDIDATE (PreVote at term+1, own term unchanged)
 * -> CANDIDATE (term+1, vote for self) -> LEADER (appends a NOOP).  A node
 * that heard from a leader within election_ticks refuses (pre)votes,
 * without adopting their term (leader stickiness); a leader that did not hear from a majority within
 * election_ticks steps down (CheckQuorum).
 *
 * Per-peer replication state: PROBE (one APPEND per heartbeat, next not
 * advanced until a success), REPLICATE (next advanced optimistically and
 * rewound to match+1 at every heartbeat, which resends what the network
 * lost) and SNAPSHOT (an InstallSnapshot is in flight; retried after an
 * election timeout).  Rejections carry a hint (the follower's last index,
 * or the index before the first entry of the conflicting term) so that
 * backtracking skips a whole term per round trip.
 *
 * ReadIndex: each read gets a sequence number read_seq; every APPEND
 * carries the newest read_seq and followers echo it.  A read completes
 * once a majority echoed a read_seq >= its own (leadership confirmed after
 * the read started) and applied >= its index, where index is
 * max(commit at start, index of this leader's NOOP): so a read waits for
 * the first commit of the leader's own term.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mon/raft.h"

/* REPLICATE keeps at most this many batches in flight per peer */
#define RAFT_INFLIGHT_BATCHES 8

enum raft_role { ROLE_FOLLOWER, ROLE_PRECANDIDATE, ROLE_CANDIDATE, ROLE_LEADER };
enum peer_state { PEER_PROBE, PEER_REPLICATE, PEER_SNAPSHOT };

struct raft_peer {
  uint32_t id;
  uint64_t next, match;
  enum peer_state state;
  bool active;                  /* heard from in this CheckQuorum window */
  bool granted;                 /* granted our (pre)vote */
  uint64_t acked_seq;           /* highest read_seq echoed in our term */
  uint64_t snap_sent_tick;      /* when the in-flight snapshot left */
};

struct raft_read {
  uint64_t id, index, seq;
};

struct raft {
  struct raft_config cfg;
  struct raft_io io;
  void *ctx;
  size_t self;                  /* our slot in peers[] */
  struct raft_peer peers[RAFT_MAX_PEERS];

  enum raft_role role;
  uint64_t term;
  uint32_t vote;
  uint32_t leader;
  bool state_unsaved;           /* term/vote changed, not yet persisted */

  /* log: entries snap_index+1 .. snap_index+n_log */
  struct raft_entry *log;
  size_t n_log, cap_log;
  uint64_t snap_index, snap_term;
  uint64_t commit, applied;

  uint64_t now;                 /* ticks since creation */
  unsigned election_elapsed, heartbeat_elapsed, timeout;
  uint64_t prng;

  uint64_t noop_index;          /* leader: index of its election NOOP */
  uint64_t read_seq;
  struct raft_read *reads;
  size_t n_reads, cap_reads;

#ifdef RAFT_FAULT_INJECTION
  unsigned bugs;
#endif
};

#ifdef RAFT_FAULT_INJECTION
static unsigned raft_default_bugs;
void raft_inject_bugs(unsigned bugs) { raft_default_bugs = bugs; }
#define BUG(r, b) (((r)->bugs & (b)) != 0)
#else
#define BUG(r, b) false
#endif

/* ---- small helpers ---------------------------------------------------- */

static uint64_t raft_rand(raft *r)
{
  /* splitmix64 */
  uint64_t z = (r->prng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void raft_reset_timeout(raft *r)
{
  r->election_elapsed = 0;
  r->timeout = r->cfg.election_ticks +
               (unsigned)(raft_rand(r) % r->cfg.election_ticks);
}

static size_t raft_quorum(const raft *r)
{
  return r->cfg.n_peers / 2 + 1;
}

static uint64_t raft_last(const raft *r)
{
  return r->snap_index + r->n_log;
}

static const struct raft_entry *raft_entry_at(const raft *r, uint64_t index)
{
  if (index <= r->snap_index || index > raft_last(r))
    return NULL;
  return &r->log[index - r->snap_index - 1];
}

/* Term of the entry at index; 0 when unknown (compacted away or beyond the
 * log).  Index 0 has term 0. */
static uint64_t raft_term_at(const raft *r, uint64_t index)
{
  if (index == r->snap_index)
    return r->snap_term;
  const struct raft_entry *e = raft_entry_at(r, index);
  return e ? e->term : 0;
}

static uint64_t raft_last_term(const raft *r)
{
  return raft_term_at(r, raft_last(r));
}

static int raft_slot(const raft *r, uint32_t id)
{
  for (size_t i = 0; i < r->cfg.n_peers; i++)
    if (r->peers[i].id == id)
      return (int)i;
  return -1;
}

static void entry_free_data(struct raft_entry *e)
{
  free((void *)e->data);
  e->data = NULL;
}

/* Drop log entries with index >= from (memory only). */
static void raft_log_truncate(raft *r, uint64_t from)
{
  while (r->n_log > 0 && raft_last(r) >= from) {
    entry_free_data(&r->log[r->n_log - 1]);
    r->n_log--;
  }
}

/* Append copies of entries to the in-memory log (indexes must follow). */
static int raft_log_append(raft *r, const struct raft_entry *es, size_t n)
{
  if (r->n_log + n > r->cap_log) {
    size_t cap = r->cap_log ? r->cap_log : 16;
    while (cap < r->n_log + n)
      cap *= 2;
    struct raft_entry *nl = realloc(r->log, cap * sizeof *nl);
    if (!nl)
      return -ENOMEM;
    r->log = nl;
    r->cap_log = cap;
  }
  for (size_t i = 0; i < n; i++) {
    struct raft_entry *d = &r->log[r->n_log];
    *d = es[i];
    d->data = NULL;
    if (es[i].len > 0) {
      void *p = malloc(es[i].len);
      if (!p)
        return -ENOMEM;         /* entries so far stay appended */
      memcpy(p, es[i].data, es[i].len);
      d->data = p;
    }
    r->n_log++;
  }
  return 0;
}

/* The caller's persist callbacks log their own failures with the disk
 * context; the core adds what it was persisting, at WARN. */
static int raft_persist_state(raft *r, uint64_t term, uint32_t vote)
{
  int err = r->io.persist_state(r->ctx, term, vote);
  if (err < 0) {
    log_warn("raft", "n%u: persisting term=%" PRIu64 " vote=%u failed: %s",
             r->cfg.id, term, vote, strerror(-err));
    return err;
  }
  r->term = term;
  r->vote = vote;
  r->state_unsaved = false;
  return 0;
}

/* Persist the in-memory entries from..from+n-1. */
static int raft_persist_entries(raft *r, uint64_t from, size_t n)
{
  int err = r->io.persist_entries(r->ctx, raft_entry_at(r, from), n);
  if (err < 0)
    log_warn("raft", "n%u: persisting entries %" PRIu64 "..%" PRIu64
             " failed: %s", r->cfg.id, from, from + n - 1, strerror(-err));
  return err;
}

static void raft_send(raft *r, struct raft_msg *m, uint32_t to)
{
  m->from = r->cfg.id;
  m->to = to;
  m->term = r->term;
  r->io.send(r->ctx, m);
}

/* ---- reads ------------------------------------------------------------ */

static void raft_fail_reads(raft *r)
{
  /* read_done may not re-enter, so the queue is stable while we walk it */
  size_t n = r->n_reads;
  r->n_reads = 0;
  for (size_t i = 0; i < n; i++)
    r->io.read_done(r->ctx, r->reads[i].id, -EAGAIN);
}

/* Highest read_seq echoed by a majority (ourselves included). */
static uint64_t raft_quorum_seq(const raft *r)
{
  uint64_t v[RAFT_MAX_PEERS];
  size_t n = r->cfg.n_peers;
  for (size_t i = 0; i < n; i++)
    v[i] = i == r->self ? r->read_seq : r->peers[i].acked_seq;
  /* insertion sort, descending */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
      uint64_t t = v[j]; v[j] = v[j - 1]; v[j - 1] = t;
    }
  return v[raft_quorum(r) - 1];
}

static void raft_advance_reads(raft *r)
{
  if (r->role != ROLE_LEADER || r->n_reads == 0)
    return;
  uint64_t qseq = raft_quorum_seq(r);
  if (BUG(r, RAFT_BUG_NO_READ_CONFIRM))
    qseq = r->read_seq;
  size_t done = 0;
  while (done < r->n_reads && r->reads[done].seq <= qseq &&
         r->reads[done].index <= r->applied)
    done++;
  if (done == 0)
    return;
  /* callbacks do not re-enter (raft.h), so the queue is stable here */
  for (size_t i = 0; i < done; i++)
    r->io.read_done(r->ctx, r->reads[i].id, 0);
  memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof *r->reads);
  r->n_reads -= done;
}

/* ---- apply and commit -------------------------------------------------- */

static void raft_apply(raft *r)
{
  while (r->applied < r->commit) {
    const struct raft_entry *e = raft_entry_at(r, r->applied + 1);
    if (!e)
      break;                    /* cannot happen: applied >= snap_index */
    r->io.apply(r->ctx, e);
    r->applied++;
  }
  raft_advance_reads(r);
}

static void raft_maybe_commit(raft *r)
{
  uint64_t v[RAFT_MAX_PEERS];
  size_t n = r->cfg.n_peers;
  for (size_t i = 0; i < n; i++)
    v[i] = i == r->self ? raft_last(r) : r->peers[i].match;
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
      uint64_t t = v[j]; v[j] = v[j - 1]; v[j - 1] = t;
    }
  uint64_t idx = v[raft_quorum(r) - 1];
  if (idx <= r->commit)
    return;
  /* Figure 8: only an entry of the current term commits by counting; the
   * entries before it commit with it. */
  if (raft_term_at(r, idx) != r->term &&
      !BUG(r, RAFT_BUG_COMMIT_OLD_TERM))
    return;
  r->commit = idx;
  raft_apply(r);
  /* Tell followers that are otherwise idle at once instead of at the next
   * heartbeat, so that every monitor applies (and, e.g., authenticates
   * with) a committed change within one round trip of its commit. */
  for (size_t i = 0; i < r->cfg.n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    if (i != r->self && r->role == ROLE_LEADER && p->state == PEER_REPLICATE &&
        p->next > raft_last(r)) {
      struct raft_msg m = {
        .type = RAFT_MSG_APPEND, .prev_index = p->next - 1,
        .prev_term = raft_term_at(r, p->next - 1),
        .commit = r->commit, .read_seq = r->read_seq,
      };
      raft_send(r, &m, p->id);
    }
  }
}

/* ---- sending ------------------------------------------------------------ */

static void raft_send_snapshot(raft *r, struct raft_peer *p)
{
  uint64_t index = 0, term = 0;
  void *data = NULL;
  size_t len = 0;
  if (r->io.snapshot_get(r->ctx, &index, &term, &data, &len) < 0)
    return;                     /* retried at the next heartbeat */
  if (index < r->snap_index || index > r->commit || term == 0 ||
      term > r->term) {
    free(data);                 /* a snapshot that cannot be right */
    return;
  }
  struct raft_msg m = {
    .type = RAFT_MSG_SNAPSHOT, .snap_index = index, .snap_term = term,
    .snap_data = data, .snap_len = len, .commit = r->commit,
    .read_seq = r->read_seq,
  };
  p->state = PEER_SNAPSHOT;
  p->snap_sent_tick = r->now;
  p->next = index + 1;
  raft_send(r, &m, p->id);
  free(data);
}

/* Send an APPEND (with entries when there are any to send) to one peer. */
static void raft_send_append(raft *r, struct raft_peer *p)
{
  if (p->state == PEER_SNAPSHOT) {
    if (r->now - p->snap_sent_tick < r->cfg.election_ticks) {
      /* heartbeat only, anchored at our snapshot: the follower answers
       * (for CheckQuorum and ReadIndex) without disturbing the install */
      struct raft_msg hb = {
        .type = RAFT_MSG_APPEND, .prev_index = r->snap_index,
        .prev_term = r->snap_term,
        .commit = r->commit, .read_seq = r->read_seq,
      };
      raft_send(r, &hb, p->id);
      return;
    }
    p->state = PEER_PROBE;      /* the snapshot was lost: start over */
    p->next = p->match + 1;
  }
  if (p->next <= r->snap_index) {
    raft_send_snapshot(r, p);
    return;
  }
  /* PROBE: one message, next stays until an answer.  REPLICATE: a
   * pipeline of up to RAFT_INFLIGHT_BATCHES batches beyond match. */
  uint64_t last = raft_last(r);
  uint64_t window = (uint64_t)RAFT_INFLIGHT_BATCHES *
                    r->cfg.max_append_entries;
  for (;;) {
    uint64_t prev = p->next - 1;
    size_t n = 0;
    if (p->next <= last) {
      uint64_t avail = last - p->next + 1;
      n = avail < r->cfg.max_append_entries ? (size_t)avail
                                             : r->cfg.max_append_entries;
    }
    struct raft_msg m = {
      .type = RAFT_MSG_APPEND, .prev_index = prev,
      .prev_term = raft_term_at(r, prev),
      .entries = n ? raft_entry_at(r, p->next) : NULL, .n_entries = n,
      .commit = r->commit, .read_seq = r->read_seq,
    };
    raft_send(r, &m, p->id);
    if (n == 0 || p->state != PEER_REPLICATE)
      return;
    p->next += n;
    if (p->next > last || p->next - 1 - p->match >= window)
      return;
  }
}

static void raft_broadcast_append(raft *r, bool heartbeat)
{
  for (size_t i = 0; i < r->cfg.n_peers; i++) {
    if (i == r->self)
      continue;
    struct raft_peer *p = &r->peers[i];
    if (heartbeat && p->state == PEER_REPLICATE)
      p->next = p->match + 1;   /* resend whatever is unacknowledged */
    raft_send_append(r, p);
  }
}

/* ---- role changes ------------------------------------------------------ */

/* Become a follower of `term` (persisting it when it is new, unless
 * `defer`: then the caller persists it, with a vote, before anything is
 * sent) and of `leader` (0 = unknown). */
static int raft_become_follower_ex(raft *r, uint64_t term, uint32_t leader,
                                   bool defer)
{
  if (term != r->term) {
    if (leader)
      log_info("raft", "n%u: term %" PRIu64 " -> %" PRIu64 ", following n%u",
               r->cfg.id, r->term, term, leader);
    else
      log_info("raft", "n%u: term %" PRIu64 " -> %" PRIu64 ", follower",
               r->cfg.id, r->term, term);
    if (defer) {
      r->term = term;
      r->vote = 0;
      r->state_unsaved = true;
    } else {
      int err = raft_persist_state(r, term, 0);
      if (err < 0)
        return err;
    }
  }
  if (r->role == ROLE_LEADER)
    raft_fail_reads(r);
  r->role = ROLE_FOLLOWER;
  r->leader = leader;
  raft_reset_timeout(r);
  return 0;
}

static int raft_become_follower(raft *r, uint64_t term, uint32_t leader)
{
  return raft_become_follower_ex(r, term, leader, false);
}

static void raft_become_leader(raft *r)
{
  r->role = ROLE_LEADER;
  r->leader = r->cfg.id;
  r->heartbeat_elapsed = 0;
  r->election_elapsed = 0;
  uint64_t last = raft_last(r);
  for (size_t i = 0; i < r->cfg.n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    p->next = last + 1;
    p->match = 0;
    p->state = PEER_PROBE;
    p->active = false;
    p->acked_seq = 0;
  }
  r->read_seq = 0;
  struct raft_entry noop = {
    .term = r->term, .index = last + 1, .type = RAFT_ENTRY_NOOP,
  };
  r->noop_index = last + 1;
  if (raft_log_append(r, &noop, 1) < 0 ||
      raft_persist_entries(r, last + 1, 1) < 0) {
    /* cannot log the NOOP: do not lead */
    raft_log_truncate(r, last + 1);
    r->role = ROLE_FOLLOWER;
    r->leader = 0;
    raft_reset_timeout(r);
    return;
  }
  log_info("raft", "n%u: became leader term=%" PRIu64 " last=%" PRIu64
           " commit=%" PRIu64, r->cfg.id, r->term, last + 1, r->commit);
  raft_maybe_commit(r);         /* single-node cluster */
  raft_broadcast_append(r, false);
}

static void raft_start_vote(raft *r, bool pre)
{
  uint64_t term = r->term + 1;
  if (pre)
    log_debug("raft", "n%u: pre-vote for term %" PRIu64, r->cfg.id, term);
  else
    log_info("raft", "n%u: election for term %" PRIu64, r->cfg.id, term);
  if (!pre) {
    if (raft_persist_state(r, term, r->cfg.id) < 0)
      return;
    r->role = ROLE_CANDIDATE;
  } else {
    r->role = ROLE_PRECANDIDATE;
  }
  r->leader = 0;
  raft_reset_timeout(r);
  for (size_t i = 0; i < r->cfg.n_peers; i++)
    r->peers[i].granted = i == r->self;
  if (raft_quorum(r) == 1) {
    if (pre)
      raft_start_vote(r, false);
    else
      raft_become_leader(r);
    return;
  }
  for (size_t i = 0; i < r->cfg.n_peers; i++) {
    if (i == r->self)
      continue;
    struct raft_msg m = {
      .type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
      .last_index = raft_last(r), .last_term = raft_last_term(r),
    };
    m.from = r->cfg.id;
    m.to = r->peers[i].id;
    m.term = term;              /* PreVote asks for a term not yet ours */
    r->io.send(r->ctx, &m);
  }
}

static size_t raft_count_granted(const raft *r)
{
  size_t n = 0;
  for (size_t i = 0; i < r->cfg.n_peers; i++)
    n += r->peers[i].granted;
  return n;
}

/* ---- message handlers ---------------------------------------------------- */

static bool raft_log_up_to_date(const raft *r, uint64_t last_index,
                                uint64_t last_term)
{
  uint64_t lt = raft_last_term(r);
  return last_term > lt || (last_term == lt && last_index >= raft_last(r));
}

/* Heard from a live leader within the election timeout (leader
 * stickiness); a leader counts as live itself (CheckQuorum removes it). */
static bool raft_in_lease(const raft *r)
{
  if (r->role == ROLE_LEADER)
    return true;
  return r->leader != 0 && r->election_elapsed < r->cfg.election_ticks;
}

static int raft_handle_vote(raft *r, const struct raft_msg *m, bool pre)
{
  struct raft_msg resp = {
    .type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
  };
  bool up = raft_log_up_to_date(r, m->last_index, m->last_term);
  if (pre) {
    resp.granted = m->term > r->term && up;
    resp.from = r->cfg.id;
    resp.to = m->from;
    /* a grant is for the term asked; a refusal tells ours */
    resp.term = resp.granted ? m->term : r->term;
    r->io.send(r->ctx, &resp);
    return 0;
  }
  /* here m->term == r->term */
  bool grant = up && (r->vote == 0 || r->vote == m->from);
  if ((grant && r->vote != m->from) || r->state_unsaved) {
    /* one write for the new term and the vote */
    int err = raft_persist_state(r, r->term, grant ? m->from : r->vote);
    if (err < 0)
      return err;
  }
  if (grant) {
    if (r->role != ROLE_FOLLOWER)
      raft_become_follower(r, r->term, 0);  /* a precandidate gives up */
    else
      raft_reset_timeout(r);
  }
  resp.granted = grant;
  raft_send(r, &resp, m->from);
  return 0;
}

static void raft_handle_vote_resp(raft *r, const struct raft_msg *m, int slot,
                                  bool pre)
{
  if (pre ? r->role != ROLE_PRECANDIDATE : r->role != ROLE_CANDIDATE)
    return;
  if (m->term != (pre ? r->term + 1 : r->term) || !m->granted)
    return;
  r->peers[slot].granted = true;
  if (raft_count_granted(r) < raft_quorum(r))
    return;
  if (pre)
    raft_start_vote(r, false);
  else
    raft_become_leader(r);
}

static int raft_handle_append(raft *r, const struct raft_msg *m)
{
  struct raft_msg resp = { .type = RAFT_MSG_APPEND_RESP,
                           .read_seq = m->read_seq };
  uint64_t prev = m->prev_index, prev_term = m->prev_term;
  const struct raft_entry *es = m->entries;
  size_t n = m->n_entries;
  uint64_t msg_last = prev + n;

  /* entries at or below our commit index are already known to match
   * (every leader holds every committed entry): skip them */
  if (prev < r->commit) {
    if (msg_last <= r->commit) {
      resp.match_index = r->commit;
      raft_send(r, &resp, m->from);
      return 0;
    }
    size_t skip = (size_t)(r->commit - prev);
    es += skip;
    n -= skip;
    prev = r->commit;
    prev_term = raft_term_at(r, prev);
  } else if (prev > raft_last(r) || raft_term_at(r, prev) != prev_term) {
    resp.reject = true;
    uint64_t hint;
    if (prev > raft_last(r)) {
      hint = raft_last(r);
    } else {
      /* skip the whole conflicting term */
      uint64_t ct = raft_term_at(r, prev);
      hint = prev - 1;
      while (hint > r->commit && hint > r->snap_index &&
             raft_term_at(r, hint) == ct)
        hint--;
    }
    resp.match_index = hint;
    raft_send(r, &resp, m->from);
    return 0;
  }

  /* find the first entry that is new or conflicts */
  size_t k = 0;
  while (k < n && es[k].index <= raft_last(r) &&
         raft_term_at(r, es[k].index) == es[k].term)
    k++;
  if (k < n) {
    uint64_t from = es[k].index;
    if (from <= r->commit)
      return -EINVAL;           /* would rewrite a committed entry */
    raft_log_truncate(r, from);
    int err = raft_log_append(r, es + k, n - k);
    if (err == 0)
      err = raft_persist_entries(r, from, n - k);
    if (err < 0) {
      /* memory may now be ahead of the disk: drop what is not durable
       * (the caller's persist failed, nothing can be acknowledged) */
      raft_log_truncate(r, from);
      return err;
    }
  }
  uint64_t c = m->commit < msg_last ? m->commit : msg_last;
  if (c > r->commit) {
    r->commit = c;
    raft_apply(r);
  }
  resp.match_index = msg_last;
  raft_send(r, &resp, m->from);
  return 0;
}

static int raft_handle_snapshot(raft *r, const struct raft_msg *m)
{
  struct raft_msg resp = { .type = RAFT_MSG_SNAPSHOT_RESP,
                           .read_seq = m->read_seq };
  if (m->snap_index <= r->commit) {
    resp.match_index = r->commit;
  } else if (raft_term_at(r, m->snap_index) == m->snap_term) {
    /* our log already holds the snapshot's last entry: just commit */
    r->commit = m->snap_index;
    raft_apply(r);
    resp.match_index = m->snap_index;
  } else {
    int err = r->io.snapshot_install(r->ctx, m->snap_index, m->snap_term,
                                     m->snap_data, m->snap_len);
    if (err < 0) {
      log_warn("raft", "n%u: installing snapshot %" PRIu64 "/%" PRIu64
               " failed: %s", r->cfg.id, m->snap_index, m->snap_term,
               strerror(-err));
      return err;
    }
    log_info("raft", "n%u: installed snapshot %" PRIu64 "/%" PRIu64
             " from n%u", r->cfg.id, m->snap_index, m->snap_term, m->from);
    raft_log_truncate(r, r->snap_index + 1);
    r->snap_index = m->snap_index;
    r->snap_term = m->snap_term;
    r->commit = r->applied = m->snap_index;
    resp.match_index = m->snap_index;
  }
  raft_send(r, &resp, m->from);
  return 0;
}

static int raft_handle_append_resp(raft *r, const struct raft_msg *m,
                                   int slot)
{
  struct raft_peer *p = &r->peers[slot];
  if (m->match_index > raft_last(r) && !m->reject)
    return -EINVAL;
  p->active = true;
  if (m->read_seq > p->acked_seq && m->read_seq <= r->read_seq)
    p->acked_seq = m->read_seq;
  if (m->reject) {
    if (m->type == RAFT_MSG_APPEND_RESP && p->state != PEER_SNAPSHOT) {
      uint64_t nn = m->match_index + 1;
      if (nn < p->match + 1)
        nn = p->match + 1;
      if (nn < p->next) {
        p->next = nn;
        p->state = PEER_PROBE;
        raft_send_append(r, p);
      }
    }
  } else {
    if (m->match_index > p->match) {
      p->match = m->match_index;
      raft_maybe_commit(r);
    }
    if (p->state == PEER_PROBE ||
        (p->state == PEER_SNAPSHOT && p->match + 1 >= p->next)) {
      p->state = PEER_REPLICATE;
      p->next = p->match + 1;
    }
    if (p->next < p->match + 1)
      p->next = p->match + 1;
    if (p->state == PEER_REPLICATE && p->next <= raft_last(r))
      raft_send_append(r, p);
  }
  raft_advance_reads(r);
  return 0;
}

/* ---- validation ---------------------------------------------------------- */

static int raft_validate(const raft *r, const struct raft_msg *m)
{
  if (!m || m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_SNAPSHOT_RESP)
    return -EINVAL;
  if (m->to != r->cfg.id || m->from == r->cfg.id || raft_slot(r, m->from) < 0)
    return -EINVAL;
  if (m->term == 0)
    return -EINVAL;
  /* terms and indexes this large cannot be real, and would overflow */
  if (m->term > RAFT_MAX_VALUE || m->last_index > RAFT_MAX_VALUE ||
      m->prev_index > RAFT_MAX_VALUE || m->commit > RAFT_MAX_VALUE ||
      m->snap_index > RAFT_MAX_VALUE || m->match_index > RAFT_MAX_VALUE)
    return -EINVAL;
  if (m->type == RAFT_MSG_APPEND) {
    if (m->n_entries > RAFT_MSG_MAX_ENTRIES ||
        (m->n_entries > 0 && !m->entries))
      return -EINVAL;
    if (m->prev_term > m->term || (m->prev_index == 0) != (m->prev_term == 0))
      return -EINVAL;
    uint64_t t = m->prev_term;
    for (size_t i = 0; i < m->n_entries; i++) {
      const struct raft_entry *e = &m->entries[i];
      if (e->index != m->prev_index + 1 + i)
        return -EINVAL;         /* not contiguous */
      if (e->term < t || e->term > m->term)
        return -EINVAL;         /* terms go up along a log, never past ours */
      if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_NOOP)
        return -EINVAL;
      if (e->len > 0 && !e->data)
        return -EINVAL;
      t = e->term;
    }
  } else if (m->n_entries != 0) {
    return -EINVAL;
  }
  if (m->type == RAFT_MSG_SNAPSHOT) {
    if (m->snap_index == 0 || m->snap_term == 0 || m->snap_term > m->term ||
        (m->snap_len > 0 && !m->snap_data))
      return -EINVAL;
  }
  if ((m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE) &&
      m->last_term > m->term)
    return -EINVAL;
  return 0;
}

/* ---- public API ------------------------------------------------------------ */

int raft_step(raft *r, const struct raft_msg *m)
{
  int err = raft_validate(r, m);
  if (err < 0) {
    if (m)
      log_debug("raft", "n%u: dropped malformed message type=%u from=%u "
                "to=%u term=%" PRIu64, r->cfg.id, m->type, m->from, m->to,
                m->term);
    return err;
  }
  int slot = raft_slot(r, m->from);

  if (m->term > r->term) {
    if (m->type == RAFT_MSG_PREVOTE ||
        (m->type == RAFT_MSG_PREVOTE_RESP && m->granted)) {
      /* about a future term: ours does not change */
    } else if (m->type == RAFT_MSG_VOTE && raft_in_lease(r)) {
      /* leader stickiness: do not even adopt the term; refused below */
    } else {
      uint32_t lead = (m->type == RAFT_MSG_APPEND ||
                       m->type == RAFT_MSG_SNAPSHOT) ? m->from : 0;
      /* a VOTE's new term is persisted together with the vote */
      err = raft_become_follower_ex(r, m->term, lead,
                                    m->type == RAFT_MSG_VOTE);
      if (err < 0)
        return err;
    }
  } else if (m->term < r->term) {
    /* stale sender: tell it our term so that it steps down or catches up */
    struct raft_msg resp = { .read_seq = 0 };
    switch (m->type) {
    case RAFT_MSG_APPEND:
      resp.type = RAFT_MSG_APPEND_RESP;
      resp.reject = true;
      break;
    case RAFT_MSG_SNAPSHOT:
      resp.type = RAFT_MSG_SNAPSHOT_RESP;
      resp.reject = true;
      break;
    case RAFT_MSG_PREVOTE:
      resp.type = RAFT_MSG_PREVOTE_RESP;
      break;
    case RAFT_MSG_VOTE:
      resp.type = RAFT_MSG_VOTE_RESP;
      break;
    default:
      return 0;                 /* stale response: drop */
    }
    raft_send(r, &resp, m->from);
    return 0;
  }

  switch (m->type) {
  case RAFT_MSG_PREVOTE:
  case RAFT_MSG_VOTE:
    if (raft_in_lease(r)) {
      /* leader stickiness: refuse, keeping our term (a VOTE may be for a
       * higher one; the candidate ignores an answer with a lower term) */
      struct raft_msg resp = {
        .type = m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP
                                         : RAFT_MSG_PREVOTE_RESP,
      };
      raft_send(r, &resp, m->from);
      return 0;
    }
    return raft_handle_vote(r, m, m->type == RAFT_MSG_PREVOTE);
  case RAFT_MSG_PREVOTE_RESP:
    raft_handle_vote_resp(r, m, slot, true);
    return 0;
  case RAFT_MSG_VOTE_RESP:
    raft_handle_vote_resp(r, m, slot, false);
    return 0;
  case RAFT_MSG_APPEND:
  case RAFT_MSG_SNAPSHOT:
    if (r->role == ROLE_LEADER)
      return 0;                 /* two leaders in one term: impossible */
    if (r->role != ROLE_FOLLOWER || r->leader != m->from) {
      err = raft_become_follower(r, r->term, m->from);
      if (err < 0)
        return err;
    }
    r->election_elapsed = 0;
    return m->type == RAFT_MSG_APPEND ? raft_handle_append(r, m)
                                      : raft_handle_snapshot(r, m);
  case RAFT_MSG_APPEND_RESP:
  case RAFT_MSG_SNAPSHOT_RESP:
    if (r->role != ROLE_LEADER)
      return 0;
    return raft_handle_append_resp(r, m, slot);
  }
  return -EINVAL;
}

void raft_tick(raft *r)
{
  r->now++;
  if (r->role == ROLE_LEADER) {
    if (++r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
      r->heartbeat_elapsed = 0;
      raft_broadcast_append(r, true);
    }
    if (++r->election_elapsed >= r->cfg.election_ticks) {
      /* CheckQuorum */
      r->election_elapsed = 0;
      size_t active = 1;
      for (size_t i = 0; i < r->cfg.n_peers; i++) {
        if (i != r->self && r->peers[i].active)
          active++;
        r->peers[i].active = false;
      }
      if (active < raft_quorum(r)) {
        log_info("raft", "n%u: stepping down in term %" PRIu64 ": heard from "
                 "%zu of %zu nodes in %u ticks", r->cfg.id, r->term, active,
                 r->cfg.n_peers, r->cfg.election_ticks);
        raft_become_follower(r, r->term, 0);
      }
    }
    return;
  }
  if (++r->election_elapsed >= r->timeout)
    raft_start_vote(r, true);
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index,
                 uint64_t *term)
{
  if (r->role != ROLE_LEADER)
    return -ENOTCONN;
  if (len > UINT32_MAX || (len > 0 && !data))
    return -EINVAL;
  uint64_t idx = raft_last(r) + 1;
  struct raft_entry e = {
    .term = r->term, .index = idx, .type = RAFT_ENTRY_NORMAL,
    .len = (uint32_t)len, .data = data,
  };
  int err = raft_log_append(r, &e, 1);
  if (err == 0)
    err = raft_persist_entries(r, idx, 1);
  if (err < 0) {
    raft_log_truncate(r, idx);
    return err;
  }
  if (index)
    *index = idx;
  if (term)
    *term = r->term;
  raft_maybe_commit(r);
  for (size_t i = 0; i < r->cfg.n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    if (i != r->self && p->state == PEER_REPLICATE && p->next <= idx)
      raft_send_append(r, p);
  }
  return 0;
}

int raft_read_index(raft *r, uint64_t read_id)
{
  if (r->role != ROLE_LEADER)
    return -ENOTCONN;
  if (r->n_reads == r->cap_reads) {
    size_t cap = r->cap_reads ? r->cap_reads * 2 : 8;
    struct raft_read *nr = realloc(r->reads, cap * sizeof *nr);
    if (!nr)
      return -ENOMEM;
    r->reads = nr;
    r->cap_reads = cap;
  }
  struct raft_read *rd = &r->reads[r->n_reads++];
  rd->id = read_id;
  rd->index = r->commit > r->noop_index ? r->commit : r->noop_index;
  rd->seq = ++r->read_seq;
  if (r->cfg.n_peers > 1)
    raft_broadcast_append(r, false);
  raft_advance_reads(r);
  return 0;
}

int raft_compact(raft *r, uint64_t index)
{
  if (index > r->applied)
    return -EINVAL;
  if (index <= r->snap_index)
    return 0;
  uint64_t t = raft_term_at(r, index);
  size_t drop = (size_t)(index - r->snap_index);
  for (size_t i = 0; i < drop; i++)
    entry_free_data(&r->log[i]);
  memmove(r->log, r->log + drop, (r->n_log - drop) * sizeof *r->log);
  r->n_log -= drop;
  r->snap_index = index;
  r->snap_term = t;
  return 0;
}

raft *raft_new(const struct raft_config *cfg, const struct raft_io *io,
               void *ctx, const struct raft_persisted *init)
{
  static const struct raft_persisted empty;
  if (!init)
    init = &empty;
  if (!cfg || !io || cfg->id == 0 || cfg->n_peers == 0 ||
      cfg->n_peers > RAFT_MAX_PEERS || cfg->election_ticks < 2 ||
      cfg->heartbeat_ticks == 0 ||
      cfg->heartbeat_ticks >= cfg->election_ticks ||
      !io->persist_state || !io->persist_entries || !io->send ||
      !io->apply || !io->snapshot_get || !io->snapshot_install ||
      !io->read_done)
    goto einval;
  if (cfg->max_append_entries > RAFT_MSG_MAX_ENTRIES)
    goto einval;
  for (size_t i = 0; i < cfg->n_peers; i++) {
    if (cfg->peers[i] == 0)
      goto einval;
    for (size_t j = 0; j < i; j++)
      if (cfg->peers[j] == cfg->peers[i])
        goto einval;
  }
  /* the persisted state must be a log */
  if (init->term > RAFT_MAX_VALUE || init->snap_index > RAFT_MAX_VALUE ||
      init->n_entries > RAFT_MAX_VALUE - init->snap_index ||
      init->snap_term > init->term || (init->snap_index == 0) !=
      (init->snap_term == 0) || (init->n_entries > 0 && !init->entries))
    goto einval;
  for (size_t i = 0; i < init->n_entries; i++) {
    const struct raft_entry *e = &init->entries[i];
    uint64_t pt = i ? init->entries[i - 1].term : init->snap_term;
    if (e->index != init->snap_index + 1 + i || e->term < pt ||
        e->term > init->term || (e->len > 0 && !e->data))
      goto einval;
  }

  raft *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->cfg = *cfg;
  if (r->cfg.max_append_entries == 0)
    r->cfg.max_append_entries = 64;
  r->io = *io;
  r->ctx = ctx;
  int self = -1;
  for (size_t i = 0; i < cfg->n_peers; i++) {
    r->peers[i].id = cfg->peers[i];
    if (cfg->peers[i] == cfg->id)
      self = (int)i;
  }
  if (self < 0 || (init->vote != 0 && raft_slot(r, init->vote) < 0)) {
    free(r);
    goto einval;
  }
  r->self = (size_t)self;
  r->term = init->term;
  r->vote = init->vote;
  r->snap_index = init->snap_index;
  r->snap_term = init->snap_term;
  r->commit = r->applied = init->snap_index;
  if (raft_log_append(r, init->entries, init->n_entries) < 0) {
    raft_free(r);
    errno = ENOMEM;
    return NULL;
  }
  r->prng = cfg->seed ^ ((uint64_t)cfg->id << 32) ^ 0x5DEECE66Dull;
  r->role = ROLE_FOLLOWER;
#ifdef RAFT_FAULT_INJECTION
  r->bugs = raft_default_bugs;
#endif
  raft_reset_timeout(r);
  return r;

einval:
  errno = EINVAL;
  return NULL;
}

void raft_free(raft *r)
{
  if (!r)
    return;
  raft_fail_reads(r);
  raft_log_truncate(r, 0);
  free(r->log);
  free(r->reads);
  free(r);
}

bool raft_is_leader(const raft *r) { return r->role == ROLE_LEADER; }
uint32_t raft_leader(const raft *r) { return r->leader; }
uint64_t raft_term(const raft *r) { return r->term; }
uint64_t raft_commit_index(const raft *r) { return r->commit; }
uint64_t raft_applied_index(const raft *r) { return r->applied; }
uint64_t raft_last_index(const raft *r) { return raft_last(r); }
uint64_t raft_first_index(const raft *r) { return r->snap_index + 1; }
