/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the private header of blk-mon, sectioned by file.
 *   store.c     RocksDB persistence of the Raft state, log and snapshot
 *   state.c     the replicated state machine: cluster map, request
 *               deduplication window, map history for subscribers
 *   quorum.c    Raft driven by the messenger and a tick timer
 *   osdmon.c    OSD liveness: beacons, failure reports, auto-out, PG
 *               state counts (leader only)
 *   commands.c  client commands (writes through Raft, reads by ReadIndex)
 *               and map subscriptions
 *   main.c      options, config, wiring, the event loop
 * Everything runs on one libevent loop thread; nothing here is locked.
 */
#ifndef BLK_MON_MON_H
#define BLK_MON_MON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clustermap.h"
#include "common/config.h"
#include "common/msgr.h"
#include "mon/raft.h"
#include "proto/mon.pb-c.h"

struct event_base;
struct event;

/* ---- store.c ----------------------------------------------------------- */

typedef struct mon_store mon_store;

struct mon_ident {
  char fsid[40];
  char name[CM_MAX_NAME];
  uint32_t rank;
};

/* Create a new store in dir (fails with -EEXIST if one is there). */
int mon_store_mkfs(const char *dir, const struct mon_ident *id);
/* Open an existing store.  Returns 0 or -errno with a logged reason. */
int mon_store_open(const char *dir, mon_store **out);
void mon_store_close(mon_store *s);
int mon_store_ident(mon_store *s, struct mon_ident *id);
/* Durable (synced) writes, used from the raft_io callbacks. */
int mon_store_save_state(mon_store *s, uint64_t term, uint32_t vote);
int mon_store_save_entries(mon_store *s, const struct raft_entry *e, size_t n);
/* Save a snapshot at (index, term) and delete log entries <= index, or
 * every stored entry when drop_all_log (a snapshot installed from the
 * leader supersedes our whole log, see raft.h snapshot_install). */
int mon_store_save_snapshot(mon_store *s, uint64_t index, uint64_t term,
                            const void *data, size_t len, bool drop_all_log);
/* Load everything for raft_new().  The entries array and snapshot buffer
 * are malloc'ed: free with mon_store_loaded_free(). */
struct mon_store_loaded {
  struct raft_persisted p;
  struct raft_entry *entries;
  void *snap;
  size_t snap_len;
};
int mon_store_load(mon_store *s, struct mon_store_loaded *out);
void mon_store_loaded_free(struct mon_store_loaded *l);

/* ---- state.c ----------------------------------------------------------- */

typedef struct mon_state mon_state;

/* A state keeping at least `history` map incrementals (and every one after
 * the committed history floor), at most `history_max`.  Free with
 * mon_state_free. */
mon_state *mon_state_new(size_t history, size_t history_max);
void mon_state_free(mon_state *st);
/* Apply one committed entry (NOOP or packed MapTxn).  Returns the result
 * for the proposer: 1/0 applied, negative errno refused (message in err). */
int mon_state_apply(mon_state *st, const struct raft_entry *e, char *err,
                    size_t errlen);
const struct cluster_map *mon_state_map(const mon_state *st);
/* The replicated auth database (packed AuthDb, borrowed until the next
 * apply/restore; len 0 = none yet). */
void mon_state_auth(const mon_state *st, const uint8_t **data, size_t *len);
uint64_t mon_state_applied_index(const mon_state *st);
uint64_t mon_state_applied_term(const mon_state *st);
/* Encode the whole state (MonSnapshot), malloc'ed. */
int mon_state_snapshot(const mon_state *st, void **data, size_t *len);
/* Replace the state with a snapshot taken at (index, term). */
int mon_state_restore(mon_state *st, uint64_t index, uint64_t term,
                      const void *data, size_t len);
/* Build the update taking a subscriber from have_epoch to the current
 * epoch: txns when the history covers it and it is at most mon_map_history
 * epochs behind, else the full map.  Free with
 * mon_state_update_free(). */
Blk__MapUpdate *mon_state_update_since(const mon_state *st, uint64_t have_epoch);
void mon_state_update_free(Blk__MapUpdate *u);
/* The maps of epochs [from, to] (to lowered to the current epoch): *out
 * (free with mon_state_update_free, then *full with clustermap_free: the
 * wire form borrows from it) holds the full map of `from` and the
 * incrementals from+1..to.  0, or -ENOENT (from older than the history
 * kept), -EAGAIN (from is after this monitor's epoch), -ENOMEM, -EIO, with a message in err. */
/* The oldest epoch mon_state_history can rebuild. */
uint64_t mon_state_history_first(const mon_state *st);
/* The committed history floor (0: none yet): every PG of the map when it
 * was committed had started at or after it (docs/monitor.md). */
uint64_t mon_state_history_floor(const mon_state *st);
int mon_state_history(const mon_state *st, uint64_t from, uint64_t to, Blk__MapUpdate **out,
                      struct cluster_map **full, char *err, size_t errlen);

/* ---- quorum.c / commands.c / main.c: the daemon ------------------------ */

struct mon_pending_write;
struct mon_pending_read;
struct mon_sub;
struct osdmon;
struct mon_auth;

struct mon {
  config *cfg;
  struct event_base *base;
  msgr *msgr;
  mon_store *store;
  mon_state *state;
  raft *raft;
  struct mon_ident ident;
  struct cm_mon monmap[CM_MAX_MONS];
  size_t n_mons;
  msgr_conn *peers[CM_MAX_MONS + 1];   /* by rank */
  int64_t peer_heard_ms[CM_MAX_MONS + 1];
  struct event *tick_ev;
  struct event *sig_ev[2];
  uint64_t next_read_id;
  struct mon_pending_write *writes;
  struct mon_pending_read *reads;
  struct mon_sub *subs;
  uint64_t published_epoch;
  uint64_t snapshot_every;
  uint64_t last_snapshot_index;
  struct osdmon *osdmon;
  struct mon_auth *auth;
  bool stopping;
};

/* quorum.c */
int quorum_start(struct mon *mon);
void quorum_stop(struct mon *mon);
void quorum_on_raft_msg(struct mon *mon, const struct msgr_frame *f);
const char *quorum_leader_addr(const struct mon *mon);
/* Called from raft's apply callback (commands.c answers proposers). */
void commands_on_apply(struct mon *mon, const struct raft_entry *e, int result,
                       const char *err);
void commands_on_read_done(struct mon *mon, uint64_t read_id, int err);
void commands_on_leadership_lost(struct mon *mon);

/* commands.c */
void commands_on_frame(struct mon *mon, msgr_conn *c, const struct msgr_frame *f);
void commands_on_close(struct mon *mon, msgr_conn *c);
void commands_publish(struct mon *mon);
void commands_stop(struct mon *mon);
/* Propose txn as the leader on the monitor's own behalf (no requester is
 * answered).  txn is borrowed; stamped here.  0 or -errno (-ENOTCONN when
 * not the leader). */
int commands_propose(struct mon *mon, Blk__MapTxn *txn);

/* Like commands_propose, but answer (c, tid) when the txn is applied;
 * on success the reply's message is text (copied; may be NULL). */
int commands_propose_for(struct mon *mon, msgr_conn *c, uint64_t tid, Blk__MapTxn *txn,
                         const char *text);
/* Reply to a request with a MonReply carrying err and message. */
void commands_reply(msgr_conn *c, uint64_t tid, uint16_t type, int err, const char *msg,
                    const char *leader);

/* auth.c (docs/auth.md) */
int mon_auth_start(struct mon *mon);
void mon_auth_stop(struct mon *mon);
/* Every received frame passes here first: auth exchanges and auth
 * commands are handled (false); other frames need an authenticated
 * session whose mon caps grant them (true = dispatch; false = refused,
 * answered here). */
bool mon_auth_gate(struct mon *mon, msgr_conn *c, const struct msgr_frame *f);
void mon_auth_on_close(struct mon *mon, msgr_conn *c);
/* The version of a packed AuthDb (0 for none or undecodable). */
uint64_t mon_auth_db_version(const uint8_t *data, size_t len);

/* osdmon.c */
int osdmon_start(struct mon *mon);
void osdmon_stop(struct mon *mon);
/* MSG_OSD_BEACON, MSG_OSD_FAILURE, MSG_PG_STATS (answered with MonReply). */
void osdmon_on_frame(struct mon *mon, msgr_conn *c, const struct msgr_frame *f);
/* Set rep->pg_states (free with free(rep->pg_states)), and the map
 * history fields history_first, history_floor, history_trimmed_pgs.
 * 0 or -ENOMEM. */
int osdmon_fill_pg_states(struct mon *mon, Blk__MonReply *rep);
/* Set rep->osd_space: the data area use each up OSD last reported (free
 * with free(rep->osd_space)).  0 or -ENOMEM. */
int osdmon_fill_osd_space(struct mon *mon, Blk__MonReply *rep);
void mon_fill_status(const struct mon *mon, Blk__MonStatus *st, uint32_t *quorum,
                     size_t *n_quorum);

#endif
