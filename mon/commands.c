/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: what a monitor does with MSG_MON_COMMAND and
 * MSG_MON_SUBSCRIBE.
 *  - A change (MonCommand.txn) is accepted only by the leader; anyone else
 *    answers -ENOTCONN with the leader's address (blkctl follows it).  The
 *    leader checks the configurable limits, stamps the txn with its clock,
 *    proposes it and remembers (index, term) -> requester.  When that index
 *    is applied the requester gets the state machine's result; if another
 *    entry landed at the index (leadership changed) it gets -EAGAIN and
 *    retries with the same req_id, which the state machine deduplicates.
 *  - A read (map or status) is linearizable: the leader runs a ReadIndex
 *    round and answers only once its state machine covers every write
 *    committed before the read arrived.
 *  - A subscription is served by any monitor from its applied state: the
 *    subscriber gets the map (or the incrementals) since its epoch now and
 *    after every change.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "mon/mon.h"

struct mon_pending_write {
  struct mon_pending_write *next;
  uint64_t index, term;
  msgr_conn *conn;      /* reference; NULL once the requester is gone */
  uint64_t tid;
  char *text;           /* malloc'ed success message (auth commands) or NULL */
};

struct mon_pending_read {
  struct mon_pending_read *next;
  uint64_t id;
  msgr_conn *conn;
  uint64_t tid;
  int kind;             /* Blk__MonCommand__Read */
};

struct mon_sub {
  struct mon_sub *next;
  msgr_conn *conn;
  uint64_t sent_epoch;
};

static int64_t realtime_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reply_err(msgr_conn *c, uint64_t tid, int err, const char *msg,
                      const char *leader)
{
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  rep.err = err;
  rep.message = (char *)(msg ? msg : "");
  rep.leader_addr = (char *)(leader ? leader : "");
  struct msgr_frame req = { .tid = tid };
  msgr_reply_pb(c, &req, MSG_MON_COMMAND, (const ProtobufCMessage *)&rep, NULL, 0);
}

void mon_fill_status(const struct mon *mon, Blk__MonStatus *st, uint32_t *quorum,
                     size_t *n_quorum)
{
  blk__mon_status__init(st);
  st->name = (char *)mon->ident.name;
  st->rank = mon->ident.rank;
  st->state = raft_is_leader(mon->raft) ? "leader"
              : raft_leader(mon->raft) ? "follower" : "candidate";
  st->term = raft_term(mon->raft);
  st->leader_rank = raft_leader(mon->raft);
  st->commit_index = raft_commit_index(mon->raft);
  st->applied_index = raft_applied_index(mon->raft);
  st->last_index = raft_last_index(mon->raft);
  st->first_index = raft_first_index(mon->raft);
  size_t n = 0;
  if (raft_is_leader(mon->raft)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t window = config_get_int(mon->cfg, "mon_election_timeout");
    for (size_t i = 0; i < mon->n_mons; i++) {
      uint32_t r = mon->monmap[i].rank;
      if (r == mon->ident.rank || (mon->peer_heard_ms[r] && now - mon->peer_heard_ms[r] < window))
        quorum[n++] = r;
    }
  }
  st->quorum = quorum;
  st->n_quorum = n;
  *n_quorum = n;
}

/* Propose the packed txn and answer c/tid when it is applied.  w (owned,
 * filled by the caller except index/term/conn) is linked before
 * raft_propose: with a single monitor the entry commits and is applied
 * inside raft_propose, and commands_on_apply must already find (and free)
 * w then.  raft_propose sets w->index before it commits anything.  On
 * failure w is unlinked and freed (its text too) and the error returned. */
static int propose_pending(struct mon *mon, msgr_conn *c, uint64_t tid,
                           struct mon_pending_write *w, const uint8_t *buf, size_t len)
{
  w->index = 0;                   /* no entry has index 0 */
  w->conn = msgr_conn_get(c);
  w->tid = tid;
  w->next = mon->writes;
  mon->writes = w;
  int r = raft_propose(mon->raft, buf, len, &w->index, &w->term);
  if (r < 0) {
    for (struct mon_pending_write **pp = &mon->writes; *pp; pp = &(*pp)->next) {
      if (*pp == w) {
        *pp = w->next;
        break;
      }
    }
    msgr_conn_put(w->conn);
    free(w->text);
    free(w);
  }
  return r;
}

static void handle_txn(struct mon *mon, msgr_conn *c, uint64_t tid, Blk__MapTxn *txn)
{
  if (!raft_is_leader(mon->raft)) {
    reply_err(c, tid, -ENOTCONN, "not the leader", quorum_leader_addr(mon));
    return;
  }
  if (txn->init || txn->auth.len || txn->history_floor) {   /* history_floor: osdmon.c only */
    reply_err(c, tid, -EPERM, "this change cannot be requested by a client", NULL);
    return;
  }
  if (mon_state_map(mon->state)->epoch == 0) {
    /* the new leader has not applied the initial map yet: retry shortly
     * (proposing now would only log a failure under this req_id) */
    reply_err(c, tid, -EAGAIN, "cluster map not initialized yet; retry", quorum_leader_addr(mon));
    return;
  }
  if (txn->pool_create) {
    char msg[160];
    int64_t maxpg = config_get_int(mon->cfg, "mon_max_pg_num");
    int64_t maxsz = config_get_int(mon->cfg, "mon_max_pool_size");
    if (txn->pool_create->pg_num > maxpg) {
      snprintf(msg, sizeof msg, "pg_num %u is above mon_max_pg_num (%lld)",
               txn->pool_create->pg_num, (long long)maxpg);
      reply_err(c, tid, -EINVAL, msg, NULL);
      return;
    }
    if (txn->pool_create->size > maxsz) {
      snprintf(msg, sizeof msg, "size %u is above mon_max_pool_size (%lld)",
               txn->pool_create->size, (long long)maxsz);
      reply_err(c, tid, -EINVAL, msg, NULL);
      return;
    }
  }
  txn->stamp_ms = realtime_ms();
  size_t len = blk__map_txn__get_packed_size(txn);
  uint8_t *buf = malloc(len ? len : 1);
  struct mon_pending_write *w = calloc(1, sizeof *w);
  if (!buf || !w) {
    free(buf);
    free(w);
    reply_err(c, tid, -ENOMEM, "out of memory", NULL);
    return;
  }
  blk__map_txn__pack(txn, buf);
  int r = propose_pending(mon, c, tid, w, buf, len);   /* w may be gone now */
  free(buf);
  if (r < 0)
    reply_err(c, tid, r, "proposal failed", quorum_leader_addr(mon));
}

void commands_reply(msgr_conn *c, uint64_t tid, uint16_t type, int err, const char *msg,
                    const char *leader)
{
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  rep.err = err;
  rep.message = (char *)(msg ? msg : "");
  rep.leader_addr = (char *)(leader ? leader : "");
  struct msgr_frame req = { .tid = tid };
  msgr_reply_pb(c, &req, type, (const ProtobufCMessage *)&rep, NULL, 0);
}

int commands_propose_for(struct mon *mon, msgr_conn *c, uint64_t tid, Blk__MapTxn *txn,
                         const char *text)
{
  if (!raft_is_leader(mon->raft))
    return -ENOTCONN;
  txn->stamp_ms = realtime_ms();
  size_t len = blk__map_txn__get_packed_size(txn);
  uint8_t *buf = malloc(len ? len : 1);
  struct mon_pending_write *w = calloc(1, sizeof *w);
  char *t = text ? strdup(text) : NULL;
  if (!buf || !w || (text && !t)) {
    free(buf);
    free(w);
    free(t);
    return -ENOMEM;
  }
  blk__map_txn__pack(txn, buf);
  w->text = t;
  int r = propose_pending(mon, c, tid, w, buf, len);   /* w may be gone now */
  free(buf);
  return r < 0 ? r : 0;
}

int commands_propose(struct mon *mon, Blk__MapTxn *txn)
{
  if (!raft_is_leader(mon->raft))
    return -ENOTCONN;
  txn->stamp_ms = realtime_ms();
  size_t len = blk__map_txn__get_packed_size(txn);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return -ENOMEM;
  blk__map_txn__pack(txn, buf);
  uint64_t index, term;
  int r = raft_propose(mon->raft, buf, len, &index, &term);
  free(buf);
  return r < 0 ? r : 0;
}

static void send_read_reply(struct mon *mon, msgr_conn *c, uint64_t tid, int kind)
{
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  Blk__MonStatus st;
  uint32_t quorum[CM_MAX_MONS];
  size_t nq;
  const struct cluster_map *map = mon_state_map(mon->state);
  mon_fill_status(mon, &st, quorum, &nq);
  rep.status = &st;
  rep.epoch = map->epoch;
  rep.map = clustermap_to_pb(map);
  if (!rep.map) {
    reply_err(c, tid, -ENOMEM, "out of memory", NULL);
    return;
  }
  if (kind == BLK__MON_COMMAND__READ__STATUS) {
    osdmon_fill_pg_states(mon, &rep);
    osdmon_fill_osd_space(mon, &rep);
  }
  struct msgr_frame req = { .tid = tid };
  msgr_reply_pb(c, &req, MSG_MON_COMMAND, (const ProtobufCMessage *)&rep, NULL, 0);
  clustermap_pb_free(rep.map);
  free(rep.pg_states);
  free(rep.osd_space);
}

static void handle_read(struct mon *mon, msgr_conn *c, uint64_t tid, int kind)
{
  if (!raft_is_leader(mon->raft)) {
    reply_err(c, tid, -ENOTCONN, "not the leader", quorum_leader_addr(mon));
    return;
  }
  struct mon_pending_read *rd = calloc(1, sizeof *rd);
  if (!rd) {
    reply_err(c, tid, -ENOMEM, "out of memory", NULL);
    return;
  }
  rd->id = ++mon->next_read_id;
  rd->conn = msgr_conn_get(c);
  rd->tid = tid;
  rd->kind = kind;
  rd->next = mon->reads;
  mon->reads = rd;
  int r = raft_read_index(mon->raft, rd->id);
  if (r < 0) {
    /* read_done was not called: answer now */
    commands_on_read_done(mon, rd->id, r);
  }
}

static void send_update(struct mon *mon, struct mon_sub *s)
{
  Blk__MapUpdate *u = mon_state_update_since(mon->state, s->sent_epoch);
  if (!u)
    return;
  if (u->to > s->sent_epoch) {
    if (msgr_send_pb(s->conn, MSG_MAP_UPDATE, FRAME_F_ONEWAY, 0,
                     (const ProtobufCMessage *)u, NULL, 0) == 0)
      s->sent_epoch = u->to;
  }
  mon_state_update_free(u);
}

static void handle_subscribe(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__Subscribe *sub = blk__subscribe__unpack(NULL, f->payload_len, f->payload);
  if (!sub) {
    reply_err(c, f->tid, -EINVAL, "malformed subscribe request", NULL);
    return;
  }
  struct mon_sub *s = NULL;
  for (s = mon->subs; s; s = s->next)
    if (s->conn == c)
      break;
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) {
      blk__subscribe__free_unpacked(sub, NULL);
      reply_err(c, f->tid, -ENOMEM, "out of memory", NULL);
      return;
    }
    s->conn = msgr_conn_get(c);
    s->next = mon->subs;
    mon->subs = s;
  }
  s->sent_epoch = sub->have_epoch;
  blk__subscribe__free_unpacked(sub, NULL);
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  rep.epoch = mon_state_map(mon->state)->epoch;
  msgr_reply_pb(c, f, MSG_MON_SUBSCRIBE, (const ProtobufCMessage *)&rep, NULL, 0);
  send_update(mon, s);
}

/* MSG_MON_MAP_HISTORY: any monitor answers from its applied state. */
static void handle_map_history(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__MapHistoryReq *q = blk__map_history_req__unpack(NULL, f->payload_len, f->payload);
  Blk__MonReply rep = BLK__MON_REPLY__INIT;
  char err[200] = "";
  Blk__MapUpdate *u = NULL;
  struct cluster_map *full = NULL;
  if (!q) {
    rep.err = -EINVAL;
    snprintf(err, sizeof err, "malformed map history request");
  } else {
    rep.err = mon_state_history(mon->state, q->from, q->to, &u, &full, err, sizeof err);
  }
  rep.message = err;
  rep.epoch = mon_state_map(mon->state)->epoch;
  rep.history_first = mon_state_history_first(mon->state);
  rep.history_floor = mon_state_history_floor(mon->state);
  rep.history = u;
  msgr_reply_pb(c, f, MSG_MON_MAP_HISTORY, (const ProtobufCMessage *)&rep, NULL, 0);
  mon_state_update_free(u);
  clustermap_free(full);
  if (q)
    blk__map_history_req__free_unpacked(q, NULL);
}

void commands_on_frame(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  if (f->type == MSG_MON_SUBSCRIBE) {
    handle_subscribe(mon, c, f);
    return;
  }
  if (f->type == MSG_MON_MAP_HISTORY) {
    handle_map_history(mon, c, f);
    return;
  }
  Blk__MonCommand *cmd = blk__mon_command__unpack(NULL, f->payload_len, f->payload);
  if (!cmd) {
    log_warn("cmd", "malformed command from %s", msgr_conn_peer(c));
    reply_err(c, f->tid, -EINVAL, "malformed command", NULL);
    return;
  }
  if (cmd->txn)
    handle_txn(mon, c, f->tid, cmd->txn);
  else if (cmd->read != BLK__MON_COMMAND__READ__NONE)
    handle_read(mon, c, f->tid, cmd->read);
  else
    reply_err(c, f->tid, -EINVAL, "empty command", NULL);
  blk__mon_command__free_unpacked(cmd, NULL);
}

void commands_on_apply(struct mon *mon, const struct raft_entry *e, int result,
                       const char *err)
{
  struct mon_pending_write **pp = &mon->writes;
  while (*pp) {
    struct mon_pending_write *w = *pp;
    if (w->index != e->index) {
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    if (w->conn) {
      if (w->term == e->term) {
        Blk__MonReply rep = BLK__MON_REPLY__INIT;
        rep.err = result < 0 ? result : 0;
        rep.message = (char *)(result < 0 ? err : w->text ? w->text : "");
        rep.leader_addr = "";
        rep.epoch = mon_state_map(mon->state)->epoch;
        struct msgr_frame req = { .tid = w->tid };
        msgr_reply_pb(w->conn, &req, MSG_MON_COMMAND, (const ProtobufCMessage *)&rep,
                      NULL, 0);
      } else {
        reply_err(w->conn, w->tid, -EAGAIN, "leadership changed; retry", quorum_leader_addr(mon));
      }
      msgr_conn_put(w->conn);
    }
    free(w->text);
    free(w);
  }
}

void commands_on_read_done(struct mon *mon, uint64_t read_id, int err)
{
  struct mon_pending_read **pp = &mon->reads;
  while (*pp) {
    struct mon_pending_read *rd = *pp;
    if (rd->id != read_id) {
      pp = &rd->next;
      continue;
    }
    *pp = rd->next;
    if (rd->conn) {
      if (err == 0)
        send_read_reply(mon, rd->conn, rd->tid, rd->kind);
      else
        reply_err(rd->conn, rd->tid, err == -ENOTCONN ? -ENOTCONN : -EAGAIN,
                  "leadership lost during read; retry", quorum_leader_addr(mon));
      msgr_conn_put(rd->conn);
    }
    free(rd);
    return;
  }
}

void commands_on_leadership_lost(struct mon *mon)
{
  /* Proposals may still commit under the next leader; the requester
   * retries with the same req_id and gets the deduplicated result. */
  while (mon->writes) {
    struct mon_pending_write *w = mon->writes;
    mon->writes = w->next;
    if (w->conn) {
      reply_err(w->conn, w->tid, -EAGAIN, "leadership lost; retry", quorum_leader_addr(mon));
      msgr_conn_put(w->conn);
    }
    free(w->text);
    free(w);
  }
  while (mon->reads) {
    struct mon_pending_read *rd = mon->reads;
    mon->reads = rd->next;
    if (rd->conn) {
      reply_err(rd->conn, rd->tid, -EAGAIN, "leadership lost; retry", quorum_leader_addr(mon));
      msgr_conn_put(rd->conn);
    }
    free(rd);
  }
}

void commands_publish(struct mon *mon)
{
  uint64_t epoch = mon_state_map(mon->state)->epoch;
  if (epoch == mon->published_epoch)
    return;
  mon->published_epoch = epoch;
  for (struct mon_sub *s = mon->subs; s; s = s->next)
    if (s->sent_epoch < epoch)
      send_update(mon, s);
}

void commands_on_close(struct mon *mon, msgr_conn *c)
{
  for (struct mon_pending_write *w = mon->writes; w; w = w->next)
    if (w->conn == c) {
      msgr_conn_put(c);
      w->conn = NULL;
    }
  for (struct mon_pending_read *rd = mon->reads; rd; rd = rd->next)
    if (rd->conn == c) {
      msgr_conn_put(c);
      rd->conn = NULL;
    }
  struct mon_sub **pp = &mon->subs;
  while (*pp) {
    if ((*pp)->conn == c) {
      struct mon_sub *s = *pp;
      *pp = s->next;
      msgr_conn_put(s->conn);
      free(s);
    } else {
      pp = &(*pp)->next;
    }
  }
}

void commands_stop(struct mon *mon)
{
  while (mon->writes) {
    struct mon_pending_write *w = mon->writes;
    mon->writes = w->next;
    if (w->conn)
      msgr_conn_put(w->conn);
    free(w->text);
    free(w);
  }
  while (mon->reads) {
    struct mon_pending_read *rd = mon->reads;
    mon->reads = rd->next;
    if (rd->conn)
      msgr_conn_put(rd->conn);
    free(rd);
  }
  while (mon->subs) {
    struct mon_sub *s = mon->subs;
    mon->subs = s->next;
    msgr_conn_put(s->conn);
    free(s);
  }
}
