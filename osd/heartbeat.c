/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: OSD-to-OSD heartbeats (DESIGN.md §6).  An OSD pings every
 * up OSD it shares a PG with (all pools), plus its next up neighbours by
 * id until it has at least two peers, so that small or empty clusters are
 * watched too.  A ping is an OsdPing call answered by an OsdPing; a peer
 * is reported to the leader (OsdFailure), again every interval while it
 * stays silent, only when a ping this OSD really sent has gone unanswered
 * for osd_heartbeat_grace (docs/osd.md "Heartbeats after a start"):
 *  - the grace runs from the send time of the oldest unanswered ping, not
 *    from when the map showed the peer (a peer not pinged yet is not
 *    silent);
 *  - a ping waits for its answer for the whole grace: a peer busy after a
 *    start that answers late is alive (the call used to time out after
 *    two intervals and the late answer was dropped);
 *  - a tick that comes late (this OSD's own loop stalled for more than an
 *    interval) judges nobody: answers may be waiting unread in its
 *    sockets;
 *  - pings travel on a connection of their own (osd_peer_hb_conn, as
 *    Ceph's heartbeat messengers): on the peering connection a ping and
 *    its answer queued behind hundreds of peering and recovery frames of
 *    a whole-cluster restart, and a busy but alive peer looked silent for
 *    a grace (test-osd-startup-stable, CI 2026-11-29: 8 failure reports
 *    and a mark-down 2 s after the restart).
 * When it answers again the report is withdrawn (alive = true), repeated
 * every interval for one grace, since a failure report retried by the
 * monitor client can reach the leader after the withdrawal.
 *
 * The lease (DESIGN.md I2, docs/osd.md "Lease"): this file also sends the
 * beacons.  Each beacon remembers when it left (monotonic clock); an
 * acknowledgement from the leader monitor (which acks only an OSD that is
 * up in its map and that it has not proposed to mark down) extends the
 * lease to that send time + osd_lease.  Client ops are served only while
 * the lease holds (heartbeat_lease_valid).  The other half: a PG whose
 * previous primary is down now must not go active before that primary's
 * lease has surely run out (heartbeat_fence_until: the map's down stamp +
 * osd_lease + osd_lease_margin, on the wall clock).
 *
 * On each map this file also sets the per-PG log limit from the OSD's
 * budget of log entries (osd_pg_log_entries_per_osd / its PGs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"

struct beacon_ctx {
  struct osd *osd;
  int64_t sent_ms;              /* monotonic */
  uint64_t up_from;             /* our up_from when sent */
};

struct ping_ctx {
  struct osd *osd;
  int32_t id;
  uint64_t up_from;
};

void heartbeat_on_map(struct osd *osd)
{
  const struct cluster_map *m = osd->map;
  if (!osd->lease_first_epoch)
    osd->lease_first_epoch = m->epoch;
  bool *want = calloc(m->n_osds + 1, sizeof *want);
  if (!want)
    return;
  size_t nwant = 0, nmine = 0;
  for (size_t p = 0; p < m->n_pools; p++) {
    const struct cm_pool *pool = &m->pools[p];
    for (uint32_t pg = 0; pg < pool->pg_num; pg++) {
      int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
      size_t nr, nu;
      if (pgmap_pg_sets(osd->pgmap, m, pool, pg, raw, &nr, up, &nu) < 0)
        continue;
      bool mine = false;
      for (size_t i = 0; i < nu; i++)
        mine |= up[i] == osd->id;
      if (!mine)
        continue;
      nmine++;
      for (size_t i = 0; i < nu; i++)
        if (up[i] != osd->id && !want[up[i]]) {
          want[up[i]] = true;
          nwant++;
        }
    }
  }
  /* PG log budget: the in-memory logs of all this OSD's PGs share
   * osd_pg_log_entries_per_osd entries (each PG keeps at least 100, at
   * most osd_pg_log_max); a lower limit stops the growth of longer logs
   * (docs/osd.md "Memory") */
  size_t cfg_max = (size_t)config_get_int(osd->cfg, "osd_pg_log_max");
  size_t budget = (size_t)config_get_int(osd->cfg, "osd_pg_log_entries_per_osd");
  size_t per_pg = budget && nmine ? budget / nmine : cfg_max;
  if (per_pg < 100)
    per_pg = 100;
  if (per_pg > cfg_max)
    per_pg = cfg_max;
  osd->pg_log_max = per_pg < 16 ? 16 : per_pg;
  /* neighbours by id */
  for (size_t k = 1; k < m->n_osds && nwant < 2; k++) {
    size_t id = ((size_t)osd->id + k) % m->n_osds;
    if ((int32_t)id != osd->id && m->osds[id].exists && m->osds[id].up && !want[id]) {
      want[id] = true;
      nwant++;
    }
  }
  for (size_t id = 0; id < m->n_osds || id < osd->n_peers; id++) {
    const struct cm_osd *o = clustermap_osd(m, (int32_t)id);
    bool w = id < m->n_osds && want[id] && o && o->up;
    if (!w) {
      if (id < osd->n_peers)
        osd->peers[id].hb = false;
      continue;
    }
    struct osd_peer *p = osd_peer(osd, (int32_t)id);
    if (!p)
      break;
    if (!p->hb || p->up_from != o->up_from) {
      p->hb = true;
      p->up_from = o->up_from;
      p->hb_since_ms = 0;       /* the grace starts with the first ping */
      p->last_rx_ms = 0;
      p->reported = false;
      p->withdraw_until_ms = 0;
    }
  }
  free(want);
}

static void on_report_reply(void *arg, int err, const Blk__MonReply *rep)
{
  (void)arg;
  (void)rep;
  if (err < 0 && err != -ECANCELED)
    log_debug("hb", "failure report not delivered: %s", strerror(-err));
}

static void report(struct osd *osd, int32_t target, bool alive, int64_t silent_ms)
{
  Blk__OsdFailure f = BLK__OSD_FAILURE__INIT;
  f.reporter = osd->id;
  f.target = target;
  f.epoch = osd->epoch;
  f.failed_for_ms = (uint32_t)silent_ms;
  f.alive = alive;
  monc_call_async(osd->monc, MSG_OSD_FAILURE, (const ProtobufCMessage *)&f,
                  (int)osd->hb_interval * 2, on_report_reply, osd);
}

static void on_pong(void *arg, int err, const struct msgr_frame *f)
{
  struct ping_ctx *pc = arg;
  struct osd *osd = pc->osd;
  int32_t id = pc->id;
  uint64_t up_from = pc->up_from;
  free(pc);
  if (err == -ECANCELED || id < 0 || (size_t)id >= osd->n_peers)
    return;
  struct osd_peer *p = &osd->peers[id];
  p->ping_inflight = false;
  if (err < 0 || !p->hb || p->up_from != up_from)
    return;
  Blk__OsdPing *pg = blk__osd_ping__unpack(NULL, f->payload_len, f->payload);
  if (!pg)
    return;
  if (pg->from == id) {
    osd_space_note(osd, id, pg->space);
    int64_t now = util_now_ms();
    p->last_rx_ms = now;
    p->hb_since_ms = 0;
    if (p->reported) {
      log_info("hb", "osd.%d answers again", id);
      p->reported = false;
      p->withdraw_until_ms = now + osd->hb_grace;
      report(osd, id, true, 0);
    }
  }
  if (pg->epoch > osd->epoch)
    monc_want_epoch(osd->monc, pg->epoch);
  blk__osd_ping__free_unpacked(pg, NULL);
}

void heartbeat_tick(struct osd *osd)
{
  if (!osd->booted || osd->stopping) {
    osd->hb_tick_ms = 0;
    return;
  }
  int64_t now = util_now_ms();
  /* This OSD's own loop stalled (the tick, due every interval from a
   * 100 ms timer, is late by more than an interval + 100 ms): answers may
   * be waiting unread in its sockets; judge nobody now, the next tick
   * comes after they are read.  (A loop late on every tick never reports;
   * the monitors' beacon grace still catches a dead peer.) */
  bool stalled = osd->hb_tick_ms && now - osd->hb_tick_ms > 2 * osd->hb_interval + 100;
  if (stalled)
    log_debug("hb", "heartbeat tick %lld ms late: no peer judged", (long long)(now - osd->hb_tick_ms));
  osd->hb_tick_ms = now;
  for (size_t id = 0; id < osd->n_peers; id++) {
    struct osd_peer *p = &osd->peers[id];
    if (!p->hb)
      continue;
    if (!stalled && p->hb_since_ms && now - p->hb_since_ms > osd->hb_grace) {
      if (!p->reported)
        log_warn("hb", "osd.%zu silent for %lld ms (a ping unanswered since then): reporting it",
                 id, (long long)(now - p->hb_since_ms));
      p->reported = true;
      p->withdraw_until_ms = 0;
      report(osd, (int32_t)id, false, now - p->hb_since_ms);
    } else if (!p->reported && p->withdraw_until_ms) {
      if (now < p->withdraw_until_ms)
        report(osd, (int32_t)id, true, 0);
      else
        p->withdraw_until_ms = 0;
    }
    if (p->ping_inflight)
      continue;
    /* the grace of this ping starts now, unless an older one is unanswered */
    if (!p->hb_since_ms)
      p->hb_since_ms = now;
    msgr_conn *c = osd_peer_hb_conn(osd, (int32_t)id);
    struct ping_ctx *pc = malloc(sizeof *pc);
    if (!c || !pc) {
      free(pc);
      continue;
    }
    pc->osd = osd;
    pc->id = (int32_t)id;
    pc->up_from = p->up_from;
    Blk__OsdPing ping = BLK__OSD_PING__INIT;
    ping.from = osd->id;
    ping.epoch = osd->epoch;
    ping.space = osd->space_self;
    /* a late answer within the grace still proves the peer alive */
    int wait_ms = (int)(osd->hb_grace > osd->hb_interval * 2 ? osd->hb_grace : osd->hb_interval * 2);
    if (msgr_call_pb(c, MSG_OSD_PING, (const ProtobufCMessage *)&ping, NULL, 0, wait_ms, on_pong,
                     pc) == 0)
      p->ping_inflight = true;
    else
      free(pc);
  }
}

void heartbeat_on_ping(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__OsdPing *in = blk__osd_ping__unpack(NULL, f->payload_len, f->payload);
  if (!in)
    return;
  if (in->epoch > osd->epoch)
    monc_want_epoch(osd->monc, in->epoch);
  osd_space_note(osd, in->from, in->space);
  blk__osd_ping__free_unpacked(in, NULL);
  Blk__OsdPing out = BLK__OSD_PING__INIT;
  out.from = osd->id;
  out.epoch = osd->epoch;
  out.space = osd_space_self(osd, NULL);
  const struct cm_osd *me = osd->map ? clustermap_osd(osd->map, osd->id) : NULL;
  out.up_from = me ? me->up_from : 0;
  msgr_reply_pb(c, f, MSG_OSD_PING, (const ProtobufCMessage *)&out, NULL, 0);
}

/* ---- lease ------------------------------------------------------------------ */

static void on_beacon_reply(void *arg, int err, const Blk__MonReply *rep)
{
  struct beacon_ctx *bc = arg;
  struct osd *osd = bc->osd;
  int64_t sent = bc->sent_ms;
  uint64_t up_from = bc->up_from;
  free(bc);
  if (err == -ECANCELED)
    return;
  if (err < 0) {
    log_debug("osd", "beacon not delivered: %s", strerror(-err));
    return;
  }
  if (rep->err < 0) {
    log_info("osd", "beacon refused by the leader: %s", rep->message);
    return;
  }
  /* an ack for an older incarnation (before we were marked down and
   * booted again) says nothing about this one */
  const struct cm_osd *me = osd->map ? clustermap_osd(osd->map, osd->id) : NULL;
  if (!me || !me->up || me->up_from != up_from || !osd->booted)
    return;
  int64_t until = sent + osd->lease_ms;
  if (until > osd->lease_until_ms) {
    if (osd->lease_lapsed)
      log_info("osd", "lease renewed (%lld ms left)", (long long)(until - util_now_ms()));
    osd->lease_lapsed = false;
    osd->lease_until_ms = until;
  }
}

void heartbeat_beacon(struct osd *osd)
{
  const struct cm_osd *me = osd->map ? clustermap_osd(osd->map, osd->id) : NULL;
  struct beacon_ctx *bc = malloc(sizeof *bc);
  if (!bc)
    return;
  bc->osd = osd;
  bc->sent_ms = util_now_ms();
  bc->up_from = me ? me->up_from : 0;
  Blk__OsdBeacon b = BLK__OSD_BEACON__INIT;
  b.id = osd->id;
  b.epoch = osd->epoch;
  if (monc_call_async(osd->monc, MSG_OSD_BEACON, (const ProtobufCMessage *)&b,
                      (int)osd->beacon_interval, on_beacon_reply, bc) < 0)
    free(bc);
}

bool heartbeat_lease_valid(struct osd *osd, char *why, size_t n)
{
  if (osd->lease_ms <= 0)
    return true;
  int64_t now = util_now_ms();
  if (now < osd->lease_until_ms)
    return true;
  if (!osd->lease_lapsed && osd->lease_until_ms) {
    osd->lease_lapsed = true;
    log_warn("osd", "lease expired: no beacon acknowledged by the monitors for %lld ms; not "
             "serving client ops until renewed",
             (long long)(now - osd->lease_until_ms + osd->lease_ms));
  }
  if (why)
    snprintf(why, n, "osd.%d has no valid lease (no monitor ack for %lld ms); retry with a "
             "newer map", osd->id,
             osd->lease_until_ms ? (long long)(now - osd->lease_until_ms + osd->lease_ms) : -1LL);
  return false;
}

int64_t heartbeat_fence_until(struct osd *osd, const struct pg *pg)
{
  if (osd->lease_ms <= 0 || !osd->map)
    return 0;
  const struct cluster_map *m = osd->map;
  int64_t until = 0;
  int64_t span = osd->lease_ms + osd->lease_margin_ms;
  /* Whose lease must have run out: the previous intervals' primaries; if
   * this PG's history began with the first map this OSD saw (it just
   * started), every OSD that is down (we cannot tell which was primary). */
  bool unknown = pg->interval <= osd->lease_first_epoch;
  for (size_t i = 0; i < m->n_osds; i++) {
    const struct cm_osd *o = &m->osds[i];
    if (!o->exists || o->up || !o->down_stamp_ms || o->id == osd->id)
      continue;
    bool was_primary = unknown;
    for (size_t k = 0; k < pg->n_prior_primaries && !was_primary; k++)
      was_primary = pg->prior_primaries[k] == o->id;
    if (was_primary && o->down_stamp_ms + span > until)
      until = o->down_stamp_ms + span;
  }
  return until;
}
