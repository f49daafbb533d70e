/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: runs the Raft core (raft.c) inside the daemon.
 *  - A periodic timer (mon_tick_interval) calls raft_tick().
 *  - Outgoing RaftMsg go one-way (MSG_RAFT) over one messenger connection
 *    per peer monitor, which reconnects by itself; Raft tolerates loss, so
 *    a message for a peer that is down is simply dropped by the queue
 *    when the connection fails.
 *  - The raft_io callbacks persist through store.c (synced), apply through
 *    state.c and then let commands.c answer whoever proposed the entry.
 *  - Every mon_snapshot_every applied entries the state is snapshotted to
 *    the store and the log compacted (raft_compact).
 *  - The leader records when it last heard from each peer (any RaftMsg),
 *    which `blkctl mon stat` reports as the quorum.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "mon/mon.h"

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A monitor that cannot make its Raft state durable must not go on: the
 * core's view of what is persisted would be wrong (raft.h: discard the
 * node after a failed write).  It stops at once; a restart rebuilds it
 * from what is on disk (fail-stop). */
static void fail_stop(struct mon *mon, const char *what, int err)
{
  log_err("quorum", "%s: %s; mon.%s stops (fail-stop) and must be restarted",
          what, strerror(-err), mon->ident.name);
  _exit(1);
}

static int io_persist_state(void *ctx, uint64_t term, uint32_t vote)
{
  struct mon *mon = ctx;
  int r = mon_store_save_state(mon->store, term, vote);
  if (r < 0)
    fail_stop(mon, "cannot persist the Raft term and vote", r);
  return r;
}

static int io_persist_entries(void *ctx, const struct raft_entry *e, size_t n)
{
  struct mon *mon = ctx;
  int r = mon_store_save_entries(mon->store, e, n);
  if (r < 0)
    fail_stop(mon, "cannot persist Raft log entries", r);
  return r;
}

static void io_send(void *ctx, const struct raft_msg *m)
{
  struct mon *mon = ctx;
  if (m->to == 0 || m->to > CM_MAX_MONS || !mon->peers[m->to])
    return;
  Blk__RaftMsg pm = BLK__RAFT_MSG__INIT;
  pm.type = m->type;
  pm.from = m->from;
  pm.to = m->to;
  pm.term = m->term;
  pm.last_index = m->last_index;
  pm.last_term = m->last_term;
  pm.prev_index = m->prev_index;
  pm.prev_term = m->prev_term;
  pm.commit = m->commit;
  pm.granted = m->granted;
  pm.reject = m->reject;
  pm.match_index = m->match_index;
  pm.snap_index = m->snap_index;
  pm.snap_term = m->snap_term;
  pm.snap_data.data = (uint8_t *)m->snap_data;
  pm.snap_data.len = m->snap_len;
  pm.read_seq = m->read_seq;
  pm.fsid = mon->ident.fsid;
  Blk__RaftEntry *ents = NULL, **eptr = NULL;
  if (m->n_entries) {
    ents = calloc(m->n_entries, sizeof *ents);
    eptr = calloc(m->n_entries, sizeof *eptr);
    if (!ents || !eptr) {
      free(ents);
      free(eptr);
      return;   /* dropped: Raft retries */
    }
    for (size_t i = 0; i < m->n_entries; i++) {
      blk__raft_entry__init(&ents[i]);
      ents[i].term = m->entries[i].term;
      ents[i].index = m->entries[i].index;
      ents[i].type = m->entries[i].type;
      ents[i].data.data = (uint8_t *)m->entries[i].data;
      ents[i].data.len = m->entries[i].len;
      eptr[i] = &ents[i];
    }
    pm.entries = eptr;
    pm.n_entries = m->n_entries;
  }
  msgr_send_pb(mon->peers[m->to], MSG_RAFT, FRAME_F_ONEWAY, 0,
               (const ProtobufCMessage *)&pm, NULL, 0);
  free(ents);
  free(eptr);
}

static void maybe_snapshot(struct mon *mon)
{
  uint64_t applied = mon_state_applied_index(mon->state);
  if (applied < mon->last_snapshot_index + mon->snapshot_every)
    return;
  void *data;
  size_t len;
  if (mon_state_snapshot(mon->state, &data, &len) < 0)
    return;
  if (mon_store_save_snapshot(mon->store, applied, mon_state_applied_term(mon->state),
                              data, len, false) == 0) {
    raft_compact(mon->raft, applied);
    mon->last_snapshot_index = applied;
    log_info("quorum", "snapshot at index %llu (%zu bytes), log compacted",
             (unsigned long long)applied, len);
  }
  free(data);
}

static void io_apply(void *ctx, const struct raft_entry *e)
{
  struct mon *mon = ctx;
  char err[256];
  int r = mon_state_apply(mon->state, e, err, sizeof err);
  commands_on_apply(mon, e, r, err);
  commands_publish(mon);
}

static int io_snapshot_get(void *ctx, uint64_t *index, uint64_t *term, void **data,
                           size_t *len)
{
  struct mon *mon = ctx;
  *index = mon_state_applied_index(mon->state);
  *term = mon_state_applied_term(mon->state);
  return mon_state_snapshot(mon->state, data, len);
}

static int io_snapshot_install(void *ctx, uint64_t index, uint64_t term,
                               const void *data, size_t len)
{
  struct mon *mon = ctx;
  int r = mon_state_restore(mon->state, index, term, data, len);
  if (r < 0)
    return r;
  r = mon_store_save_snapshot(mon->store, index, term, data, len, true);
  if (r < 0)
    fail_stop(mon, "cannot persist the installed snapshot", r);
  if (r == 0) {
    mon->last_snapshot_index = index;
    log_info("quorum", "installed snapshot from the leader at index %llu (epoch %llu)",
             (unsigned long long)index,
             (unsigned long long)mon_state_map(mon->state)->epoch);
  }
  commands_publish(mon);
  return r;
}

static void io_read_done(void *ctx, uint64_t read_id, int err)
{
  commands_on_read_done(ctx, read_id, err);
}

static const struct raft_io mon_raft_io = {
  .persist_state = io_persist_state,
  .persist_entries = io_persist_entries,
  .send = io_send,
  .apply = io_apply,
  .snapshot_get = io_snapshot_get,
  .snapshot_install = io_snapshot_install,
  .read_done = io_read_done,
};

void quorum_on_raft_msg(struct mon *mon, const struct msgr_frame *f)
{
  Blk__RaftMsg *pm = blk__raft_msg__unpack(NULL, f->payload_len, f->payload);
  if (!pm) {
    log_warn("quorum", "undecodable raft message dropped");
    return;
  }
  if (strcmp(pm->fsid, mon->ident.fsid) != 0) {
    log_warn("quorum", "raft message from another cluster (fsid %s) dropped", pm->fsid);
    blk__raft_msg__free_unpacked(pm, NULL);
    return;
  }
  struct raft_entry *ents = NULL;
  if (pm->n_entries) {
    ents = calloc(pm->n_entries, sizeof *ents);
    if (!ents) {
      blk__raft_msg__free_unpacked(pm, NULL);
      return;
    }
    for (size_t i = 0; i < pm->n_entries; i++) {
      ents[i].term = pm->entries[i]->term;
      ents[i].index = pm->entries[i]->index;
      ents[i].type = pm->entries[i]->type;
      ents[i].data = pm->entries[i]->data.data;
      ents[i].len = (uint32_t)pm->entries[i]->data.len;
    }
  }
  struct raft_msg m = {
    .type = pm->type, .from = pm->from, .to = pm->to, .term = pm->term,
    .last_index = pm->last_index, .last_term = pm->last_term,
    .prev_index = pm->prev_index, .prev_term = pm->prev_term,
    .commit = pm->commit, .entries = ents, .n_entries = pm->n_entries,
    .granted = pm->granted, .reject = pm->reject, .match_index = pm->match_index,
    .snap_index = pm->snap_index, .snap_term = pm->snap_term,
    .snap_data = pm->snap_data.data, .snap_len = pm->snap_data.len,
    .read_seq = pm->read_seq,
  };
  if (m.from >= 1 && m.from <= CM_MAX_MONS)
    mon->peer_heard_ms[m.from] = wall_ms();
  bool was_leader = raft_is_leader(mon->raft);
  int sr = m.to == mon->ident.rank ? raft_step(mon->raft, &m) : 0;
  if (sr == -EINVAL)
    log_debug("quorum", "raft rejected a malformed message from rank %u", m.from);
  else if (sr < 0)
    fail_stop(mon, "raft step failed", sr);
  if (was_leader && !raft_is_leader(mon->raft))
    commands_on_leadership_lost(mon);
  free(ents);
  blk__raft_msg__free_unpacked(pm, NULL);
  maybe_snapshot(mon);
}

/* A peer silent for two election timeouts while its connection looks open
 * is behind a dead path (cut link, frozen host): drop the connection so
 * that it is re-established from scratch once the path heals, instead of
 * waiting for TCP's retransmission backoff. */
static void reset_silent_peers(struct mon *mon)
{
  int64_t now = wall_ms();
  int64_t limit = 2 * config_get_int(mon->cfg, "mon_election_timeout");
  for (size_t i = 0; i < mon->n_mons; i++) {
    uint32_t r = mon->monmap[i].rank;
    if (r == mon->ident.rank || !mon->peers[r])
      continue;
    /* only peers that should be talking to us: all of them when leading,
     * the leader when following (followers never talk to each other) */
    bool expected = raft_is_leader(mon->raft) || raft_leader(mon->raft) == r;
    if (!expected || !mon->peer_heard_ms[r]) {
      mon->peer_heard_ms[r] = now;   /* start the clock */
      continue;
    }
    if (now - mon->peer_heard_ms[r] > limit && msgr_conn_is_open(mon->peers[r])) {
      log_info("quorum", "no word from mon.%s for %lld ms: reconnecting", mon->monmap[i].name,
               (long long)(now - mon->peer_heard_ms[r]));
      msgr_conn_close(mon->peers[r]);
      mon->peer_heard_ms[r] = now;
    }
  }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
  struct mon *mon = arg;
  reset_silent_peers(mon);
  bool was_leader = raft_is_leader(mon->raft);
  uint64_t term = raft_term(mon->raft);
  raft_tick(mon->raft);
  if (was_leader && !raft_is_leader(mon->raft))
    commands_on_leadership_lost(mon);
  if (!was_leader && raft_is_leader(mon->raft)) {
    log_info("quorum", "mon.%s is now the leader (term %llu)", mon->ident.name,
             (unsigned long long)raft_term(mon->raft));
  } else if (raft_term(mon->raft) != term) {
    log_debug("quorum", "term %llu", (unsigned long long)raft_term(mon->raft));
  }
  /* A leader of a cluster that has no map yet proposes the initial map. */
  const struct cluster_map *map = mon_state_map(mon->state);
  if (raft_is_leader(mon->raft) && map->epoch == 0 &&
      raft_applied_index(mon->raft) == raft_commit_index(mon->raft) &&
      raft_commit_index(mon->raft) >= raft_last_index(mon->raft)) {
    Blk__ClusterMap init = BLK__CLUSTER_MAP__INIT;
    Blk__MonInfo mi[CM_MAX_MONS], *mp[CM_MAX_MONS];
    init.fsid = mon->ident.fsid;
    for (size_t i = 0; i < mon->n_mons; i++) {
      blk__mon_info__init(&mi[i]);
      mi[i].name = mon->monmap[i].name;
      mi[i].addr = mon->monmap[i].addr;
      mi[i].rank = mon->monmap[i].rank;
      mp[i] = &mi[i];
    }
    init.mons = mp;
    init.n_mons = mon->n_mons;
    init.next_pool_id = 1;
    Blk__MapTxn txn = BLK__MAP_TXN__INIT;
    txn.init = &init;
    txn.req_id = "init";
    size_t len = blk__map_txn__get_packed_size(&txn);
    uint8_t *buf = malloc(len);
    if (buf) {
      blk__map_txn__pack(&txn, buf);
      uint64_t idx, t;
      if (raft_propose(mon->raft, buf, len, &idx, &t) == 0)
        log_info("quorum", "proposed the initial cluster map (fsid %s) at index %llu",
                 mon->ident.fsid, (unsigned long long)idx);
      free(buf);
    }
  }
  maybe_snapshot(mon);
}

const char *quorum_leader_addr(const struct mon *mon)
{
  uint32_t l = raft_leader(mon->raft);
  for (size_t i = 0; i < mon->n_mons; i++)
    if (mon->monmap[i].rank == l)
      return mon->monmap[i].addr;
  return "";
}

int quorum_start(struct mon *mon)
{
  struct mon_store_loaded ld;
  int r = mon_store_load(mon->store, &ld);
  if (r < 0)
    return r;
  if (ld.snap) {
    r = mon_state_restore(mon->state, ld.p.snap_index, ld.p.snap_term, ld.snap, ld.snap_len);
    if (r < 0) {
      mon_store_loaded_free(&ld);
      return r;
    }
    mon->last_snapshot_index = ld.p.snap_index;
  }
  struct raft_config rc = { 0 };
  rc.id = mon->ident.rank;
  for (size_t i = 0; i < mon->n_mons; i++)
    rc.peers[rc.n_peers++] = mon->monmap[i].rank;
  int64_t tick = config_get_int(mon->cfg, "mon_tick_interval");
  if (tick <= 0)
    tick = 20;
  rc.election_ticks = (unsigned)(config_get_int(mon->cfg, "mon_election_timeout") / tick);
  rc.heartbeat_ticks = (unsigned)(config_get_int(mon->cfg, "mon_heartbeat_interval") / tick);
  if (rc.election_ticks < 3)
    rc.election_ticks = 3;
  if (rc.heartbeat_ticks < 1)
    rc.heartbeat_ticks = 1;
  if (rc.heartbeat_ticks >= rc.election_ticks)
    rc.heartbeat_ticks = rc.election_ticks / 3;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  rc.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ rc.id;
  mon->raft = raft_new(&rc, &mon_raft_io, mon, &ld.p);
  mon_store_loaded_free(&ld);
  if (!mon->raft)
    return -errno;
  for (size_t i = 0; i < mon->n_mons; i++) {
    uint32_t rank = mon->monmap[i].rank;
    if (rank == mon->ident.rank)
      continue;
    mon->peers[rank] = msgr_connect(mon->msgr, mon->monmap[i].addr);
    if (!mon->peers[rank])
      return -EINVAL;
  }
  mon->tick_ev = event_new(mon->base, -1, EV_PERSIST, tick_cb, mon);
  struct timeval tv = { tick / 1000, (tick % 1000) * 1000 };
  event_add(mon->tick_ev, &tv);
  return 0;
}

void quorum_stop(struct mon *mon)
{
  if (mon->tick_ev) {
    event_free(mon->tick_ev);
    mon->tick_ev = NULL;
  }
  for (size_t i = 0; i <= CM_MAX_MONS; i++) {
    if (mon->peers[i]) {
      msgr_conn_put(mon->peers[i]);
      mon->peers[i] = NULL;
    }
  }
  raft_free(mon->raft);
  mon->raft = NULL;
}
