/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the Raft consensus core of blk-mon, free of I/O and of
 * clocks so that tests/sim/raft-sim.c can drive it deterministically.
 * The caller (mon/quorum.c in the daemon, the simulator in tests) owns the
 * network, the disk and time:
 *   - time advances only through raft_tick();
 *   - messages arrive through raft_step() and leave through io->send();
 *   - durable state is written through io->persist_* callbacks, which
 *     must return only once the data is durable (fsync); the core never
 *     sends a message that depends on state it has not persisted first;
 *   - committed entries reach the state machine through io->apply(), in
 *     index order, exactly once per raft instance lifetime (after a
 *     restart the caller re-applies from its own snapshot; see below).
 * Features: leader election with randomized timeouts, PreVote and
 * CheckQuorum (a leader that has not heard from a majority within an
 * election timeout steps down, so a partitioned leader stops acting as
 * one), log replication with fast backtracking, commit only of entries of
 * the current term (plus an empty entry appended on election), log
 * compaction by state snapshot, InstallSnapshot for lagging followers, and
 * linearizable reads by ReadIndex.  Membership is fixed at creation (the
 * monitor map); membership change is not supported.
 * Threading: none; one raft object is used by one thread.
 */
#ifndef BLK_MON_RAFT_H
#define BLK_MON_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_PEERS 7
/* Added: an APPEND carrying more entries than this is malformed (-EINVAL);
 * cfg->max_append_entries may not exceed it. */
#define RAFT_MSG_MAX_ENTRIES 1024
/* Added: a message with a term or index above this is malformed (-EINVAL):
 * no real cluster gets there, and arithmetic on such values would wrap. */
#define RAFT_MAX_VALUE (UINT64_C(1) << 62)

enum raft_entry_type {
  RAFT_ENTRY_NORMAL = 0,  /* a state machine command */
  RAFT_ENTRY_NOOP = 1,    /* appended by a new leader; apply() still sees it */
};

struct raft_entry {
  uint64_t term;
  uint64_t index;
  uint32_t type;          /* enum raft_entry_type */
  uint32_t len;
  const void *data;       /* borrowed for the duration of a callback */
};

enum raft_msg_type {
  RAFT_MSG_PREVOTE = 1,
  RAFT_MSG_PREVOTE_RESP,
  RAFT_MSG_VOTE,
  RAFT_MSG_VOTE_RESP,
  RAFT_MSG_APPEND,          /* also the heartbeat (n_entries == 0) */
  RAFT_MSG_APPEND_RESP,
  RAFT_MSG_SNAPSHOT,
  RAFT_MSG_SNAPSHOT_RESP,
};

/* One Raft message.  All pointers are borrowed for the duration of the
 * call (send() or raft_step()); copy what must outlive it. */
struct raft_msg {
  uint32_t type;            /* enum raft_msg_type */
  uint32_t from, to;        /* node ids */
  uint64_t term;
  /* VOTE / PREVOTE: candidate's last log position */
  uint64_t last_index, last_term;
  /* APPEND: entries follow (prev_index, prev_term); leader's commit */
  uint64_t prev_index, prev_term, commit;
  const struct raft_entry *entries;
  size_t n_entries;
  /* *_RESP */
  bool granted;             /* VOTE/PREVOTE_RESP */
  bool reject;              /* APPEND_RESP */
  uint64_t match_index;     /* APPEND_RESP: highest index known to match,
                               or (on reject) a hint for backtracking */
  /* SNAPSHOT: state at (snap_index, snap_term) */
  uint64_t snap_index, snap_term;
  const void *snap_data;
  size_t snap_len;
  /* heartbeat context for ReadIndex: the leader echoes read_seq in APPEND,
   * followers echo it back in APPEND_RESP */
  uint64_t read_seq;
};

struct raft_io {
  /* Persist term and vote (vote 0 = none).  Durable before return. */
  int (*persist_state)(void *ctx, uint64_t term, uint32_t vote);
  /* Persist entries; first delete every stored entry with index >=
   * entries[0].index.  Durable before return. */
  int (*persist_entries)(void *ctx, const struct raft_entry *entries, size_t n);
  /* Send a message (best effort; the network may drop it). */
  void (*send)(void *ctx, const struct raft_msg *m);
  /* Apply one committed entry to the state machine. */
  void (*apply)(void *ctx, const struct raft_entry *e);
  /* Produce the state machine snapshot as of the last applied entry, for
   * a lagging follower.  *data is malloc'ed; the core frees it. */
  int (*snapshot_get)(void *ctx, uint64_t *index, uint64_t *term,
                      void **data, size_t *len);
  /* Replace the state machine with a snapshot received from the leader
   * and persist it (durable before return); the stored log is then
   * discarded up to index.  Clarification: the core calls this only when
   * its log does not hold the entry (index, term), so any stored entry
   * after index belongs to a superseded history and must be discarded
   * too: the core's log is empty after the call (first index = index+1).
   * When the log does hold (index, term) the core just commits up to
   * index and does not call this. */
  int (*snapshot_install)(void *ctx, uint64_t index, uint64_t term,
                          const void *data, size_t len);
  /* A ReadIndex request completed: err 0 means the state machine (as
   * applied now) reflects every write committed before raft_read_index()
   * was called; -EAGAIN means leadership was lost, retry elsewhere. */
  void (*read_done)(void *ctx, uint64_t read_id, int err);
};
/* Callbacks must not call back into the raft object that invoked them
 * (no raft_* call on it from inside apply(), read_done(), ...); queue the
 * work and do it after the raft_* call returns.
 * A persist_* or snapshot_install failure (negative errno) is returned by
 * the raft_* call that hit it (raft_tick() swallows it); the core sends
 * nothing that depends on the failed write, but its memory may then be
 * ahead of the disk: the caller must raft_free() the node and rebuild it
 * from storage (what a daemon does on a failed fsync). */

/* Everything persisted, handed back at restart (all zero for a new node). */
struct raft_persisted {
  uint64_t term;
  uint32_t vote;
  uint64_t snap_index, snap_term;   /* log compacted up to here; the caller
                                       has already loaded that snapshot
                                       into its state machine */
  const struct raft_entry *entries; /* stored entries after snap_index, in
                                       order; copied by raft_new() */
  size_t n_entries;
};

struct raft_config {
  uint32_t id;                  /* this node, non-zero */
  uint32_t peers[RAFT_MAX_PEERS]; /* every member including id */
  size_t n_peers;
  unsigned election_ticks;      /* election timeout in ticks (randomized
                                   in [election_ticks, 2*election_ticks)) */
  unsigned heartbeat_ticks;     /* leader sends heartbeats this often */
  uint64_t seed;                /* PRNG seed for the randomized timeouts */
  size_t max_append_entries;    /* batch size per APPEND (0 = 64) */
};

typedef struct raft raft;

/* Create a node.  Returns NULL with errno set.  Committed-but-unapplied
 * entries from `init` are applied again as the commit index is learned
 * (the caller's state machine starts from init->snap_index).
 * EINVAL (added precision): id not among peers, a zero or duplicate peer,
 * n_peers outside 1..RAFT_MAX_PEERS, election_ticks < 2, heartbeat_ticks
 * not in 1..election_ticks-1, max_append_entries > RAFT_MSG_MAX_ENTRIES,
 * a missing callback, or an `init` that is not a log (indexes not
 * following snap_index, terms going down or above init->term). */
raft *raft_new(const struct raft_config *cfg, const struct raft_io *io,
               void *ctx, const struct raft_persisted *init);
/* Destroy a node; pending ReadIndex requests complete with -EAGAIN first. */
void raft_free(raft *r);

/* Advance the logical clock by one tick. */
void raft_tick(raft *r);
/* Handle a received message.  Returns 0, or -EINVAL for a malformed one
 * (ignored), or the error of a failed persist_* / snapshot_install (see
 * above). */
int raft_step(raft *r, const struct raft_msg *m);
/* Append a command (leader only).  Returns 0 and the entry's index and
 * term, or -ENOTCONN when this node is not the leader (see raft_leader()).
 * (Added precision: index and term may be NULL; -EINVAL when len exceeds
 * UINT32_MAX or data is NULL with len > 0; a failed persist_entries is
 * returned as is.)  The core copies data. */
int raft_propose(raft *r, const void *data, size_t len,
                 uint64_t *index, uint64_t *term);
/* Start a linearizable read; io->read_done(read_id) follows (maybe from
 * inside this call).  -ENOTCONN when not the leader. */
int raft_read_index(raft *r, uint64_t read_id);
/* The caller has persisted a snapshot of its state machine covering every
 * entry up to `index` (<= applied index): drop those entries from memory.
 * (Added precision: -EINVAL when index > applied; 0 and nothing done when
 * index <= the current snapshot.) */
int raft_compact(raft *r, uint64_t index);

bool raft_is_leader(const raft *r);
uint32_t raft_leader(const raft *r);        /* 0 if unknown */
uint64_t raft_term(const raft *r);
uint64_t raft_commit_index(const raft *r);
uint64_t raft_applied_index(const raft *r);
uint64_t raft_last_index(const raft *r);
uint64_t raft_first_index(const raft *r);  /* snap_index + 1 */

#ifdef RAFT_FAULT_INJECTION
/* Test-only (tests/sim builds raft.c with -DRAFT_FAULT_INJECTION): make
 * every raft created afterwards carry a deliberate bug, to prove that the
 * simulator's checks catch it.  Never defined in the daemon's build. */
#define RAFT_BUG_COMMIT_OLD_TERM 0x1u  /* commit old-term entries by count */
#define RAFT_BUG_NO_READ_CONFIRM 0x2u  /* ReadIndex without the heartbeat */
void raft_inject_bugs(unsigned bugs);
#endif

#endif
