/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the OSD's life cycle (docs/osd.md).
 *  - Identity: the OSD id comes from the command line; a uuid is created
 *    on first start and kept in the store (attribute "uuid" of object
 *    "@osd" in collection (0, 0): pool ids start at 1, so no client
 *    object lives there).  The weight is the device's data area in TiB
 *    (16.16 fixed point, at least 1/65536).
 *  - Boot: listen on osd_addr, subscribe to the map, send OsdBoot (id,
 *    uuid, host, address, device size, weight) to the leader; the OSD is
 *    "booted" once a map shows it up at its address.  A map that shows it
 *    down while it runs ("wrongly marked down") makes it boot again.
 *  - One 100 ms timer drives beacons (osd_beacon_interval), heartbeats
 *    (heartbeat.c) and PG work (pg.c).
 *  - SIGTERM/SIGINT: the OSD marks itself down (OsdMark DOWN, at most 5 s)
 *    and leaves the loop; the caller then closes the store.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"

static const struct store_oid osd_meta_oid = { .pool = 0, .pg = 0, .name = "@osd",
                                               .snap = STORE_SNAP_HEAD };

struct osd_peer *osd_peer(struct osd *osd, int32_t id)
{
  if (id < 0 || id >= CM_MAX_OSDS)
    return NULL;
  if ((size_t)id >= osd->n_peers) {
    size_t n = (size_t)id + 8;
    struct osd_peer *p = realloc(osd->peers, n * sizeof *p);
    if (!p)
      return NULL;
    memset(p + osd->n_peers, 0, (n - osd->n_peers) * sizeof *p);
    osd->peers = p;
    osd->n_peers = n;
  }
  return &osd->peers[id];
}

/* The outgoing connection to osd.id (the ping one when hb), made again
 * when the map shows the OSD at another address. */
static msgr_conn *peer_conn(struct osd *osd, int32_t id, bool hb)
{
  const struct cm_osd *o = osd->map ? clustermap_osd(osd->map, id) : NULL;
  struct osd_peer *p = osd_peer(osd, id);
  if (!o || !p || !o->addr[0])
    return NULL;
  msgr_conn **slot = hb ? &p->hb_conn : &p->conn;
  char *addr = hb ? p->hb_addr : p->addr;
  if (*slot && strcmp(addr, o->addr)) {
    msgr_conn_close(*slot);
    msgr_conn_put(*slot);
    *slot = NULL;
  }
  if (!*slot) {
    *slot = msgr_connect(osd->msgr, o->addr);
    if (!*slot)
      return NULL;
    snprintf(addr, CM_MAX_ADDR, "%s", o->addr);
  }
  return *slot;
}

msgr_conn *osd_peer_conn(struct osd *osd, int32_t id)
{
  return peer_conn(osd, id, false);
}

msgr_conn *osd_peer_hb_conn(struct osd *osd, int32_t id)
{
  return peer_conn(osd, id, true);
}

/* ---- identity ------------------------------------------------------------ */

static int load_identity(struct osd *osd)
{
  void *val = NULL;
  size_t len = 0;
  int r = store_getattr_sync(osd->st, &osd_meta_oid, "uuid", &val, &len);
  if (r == 0 && len > 0 && len < sizeof osd->uuid) {
    memcpy(osd->uuid, val, len);
    osd->uuid[len] = 0;
    free(val);
    return 0;
  }
  free(val);
  if (r != -ENOENT && r != -ENODATA && r != 0)
    return r;
  util_uuid(osd->uuid);
  store_txn *t = store_txn_new();
  if (!t)
    return -ENOMEM;
  store_txn_touch(t, &osd_meta_oid);
  store_txn_setattr(t, &osd_meta_oid, "uuid", osd->uuid, strlen(osd->uuid));
  r = store_queue_sync(osd->st, t);
  if (r == 0)
    log_info("osd", "new osd uuid %s", osd->uuid);
  return r;
}

/* ---- boot and stop -------------------------------------------------------- */

static void on_boot_reply(void *arg, int err, const Blk__MonReply *rep)
{
  struct osd *osd = arg;
  osd->boot_inflight = false;
  if (err == -ECANCELED)
    return;
  if (err < 0)
    log_warn("osd", "boot: no monitor quorum answered (%s); retrying", strerror(-err));
  else if (rep->err < 0)
    log_err("osd", "boot refused by the monitors: %s", rep->message);
  else
    log_info("osd", "boot committed at epoch %llu", (unsigned long long)rep->epoch);
}

static void send_boot(struct osd *osd)
{
  if (osd->boot_inflight || osd->stopping || !osd_auth_ready(osd))
    return;
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__OsdBoot b = BLK__OSD_BOOT__INIT;
  b.id = osd->id;
  b.uuid = osd->uuid;
  b.host = osd->host;
  b.addr = osd->addr;
  b.device_size = osd->device_size;
  b.weight = osd->weight;
  txn.osd_boot = &b;
  cmd.txn = &txn;
  if (monc_command_async(osd->monc, &cmd, 20000, on_boot_reply, osd) == 0) {
    osd->boot_inflight = true;
    osd->boot_sent_ms = util_now_ms();
  }
}

static void on_stop_reply(void *arg, int err, const Blk__MonReply *rep)
{
  struct osd *osd = arg;
  if (err == -ECANCELED)
    return;
  if (err < 0)
    log_warn("osd", "could not mark myself down (%s); the monitors will notice", strerror(-err));
  else if (rep->err < 0)
    log_warn("osd", "mark down refused: %s", rep->message);
  else
    log_info("osd", "marked down at epoch %llu", (unsigned long long)rep->epoch);
  event_base_loopbreak(osd->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
  struct osd *osd = arg;
  (void)what;
  if (osd->stop_sent) {
    event_base_loopbreak(osd->base);
    return;
  }
  log_info("osd", "signal %d: marking myself down and stopping", (int)sig);
  osd->stopping = true;
  osd->stop_sent = true;
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__OsdMark m = BLK__OSD_MARK__INIT;
  int32_t ids[1] = { osd->id };
  m.ids = ids;
  m.n_ids = 1;
  m.what = BLK__OSD_MARK__WHAT__DOWN;
  txn.osd_mark = &m;
  cmd.txn = &txn;
  if (!osd->booted || monc_command_async(osd->monc, &cmd, 5000, on_stop_reply, osd) < 0)
    event_base_loopbreak(osd->base);
}

/* ---- maps ------------------------------------------------------------------ */

static void on_map(void *arg, const struct cluster_map *map, const struct cluster_map *prev)
{
  struct osd *osd = arg;
  struct pgmap *pm = pgmap_build(map);
  if (!pm) {
    log_err("osd", "cannot build placement for epoch %llu: %s",
            (unsigned long long)map->epoch, strerror(errno));
    return;
  }
  struct pgmap *prev_pm = osd->pgmap;
  maphist_note(osd, map);
  osd->pgmap = pm;
  osd->map = map;
  osd->epoch = map->epoch;
  const struct cm_osd *me = clustermap_osd(map, osd->id);
  bool up = me && me->up && !strcmp(me->addr, osd->addr) && !strcmp(me->uuid, osd->uuid);
  log_debug("osd", "map epoch %llu (I am %s)", (unsigned long long)map->epoch,
            up ? "up" : "not up");
  if (up && !osd->booted) {
    osd->booted = true;
    log_info("osd", "osd.%d is up at epoch %llu (%s)", osd->id, (unsigned long long)map->epoch,
             osd->addr);
  } else if (!up && osd->booted && !osd->stopping) {
    log_warn("osd", "the map (epoch %llu) shows osd.%d down: booting again",
             (unsigned long long)map->epoch, osd->id);
    osd->booted = false;
  }
  if (!osd->booted && !osd->stopping)
    send_boot(osd);
  heartbeat_on_map(osd);
  pg_on_map(osd, prev, prev_pm);
  pgmap_free(prev_pm);
}

/* ---- frames and timer ------------------------------------------------------ */

static void on_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  struct osd *osd = ctx;
  if (!osd_auth_gate(osd, c, f))
    return;
  switch (f->type) {
  case MSG_OSD_PING:
    heartbeat_on_ping(osd, c, f);
    break;
  case MSG_OSD_OP:
  case MSG_OSD_REPOP:
  case MSG_PG_QUERY:
  case MSG_PG_PULL:
  case MSG_PG_PUSH:
  case MSG_PG_ACTIVATE:
  case MSG_PG_SCRUB_MAP:
  case MSG_PG_SCRUB_CMD:
    pg_on_frame(osd, c, f);
    break;
  default:
    log_warn("osd", "unknown message type %u from %s", f->type, msgr_conn_peer(c));
    break;
  }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
  struct osd *osd = arg;
  (void)fd;
  (void)what;
  int64_t now = util_now_ms();
  if (!osd->booted && !osd->boot_inflight && osd->map && !osd->stopping &&
      now - osd->boot_sent_ms > 1000)
    send_boot(osd);
  if (osd->booted && !osd->stopping && now - osd->last_beacon_ms >= osd->beacon_interval) {
    osd->last_beacon_ms = now;
    heartbeat_beacon(osd);   /* heartbeat.c: renews the lease */
  }
  if (now - osd->last_hb_ms >= osd->hb_interval) {
    osd->last_hb_ms = now;
    heartbeat_tick(osd);
  }
  pg_tick(osd);
  osd_auth_tick(osd);
}

static void on_close(void *ctx, msgr_conn *c, int err)
{
  (void)err;
  osd_auth_on_close(ctx, c);
}

int osd_start(struct osd *osd)
{
  char err[512];
  int r;
  osd->hb_interval = config_get_int(osd->cfg, "osd_heartbeat_interval");
  osd->hb_grace = config_get_int(osd->cfg, "osd_heartbeat_grace");
  osd->beacon_interval = config_get_int(osd->cfg, "osd_beacon_interval");
  osd->op_timeout = config_get_int(osd->cfg, "osd_op_timeout");
  osd->undersized_timeout = config_get_int(osd->cfg, "osd_op_timeout_undersized");
  osd->stats_interval = config_get_int(osd->cfg, "osd_stats_interval");
  osd->full_pct = (uint32_t)config_get_int(osd->cfg, "osd_full_ratio");
  osd->pg_log_max = (size_t)config_get_int(osd->cfg, "osd_pg_log_max");
  osd->lock_lease_ms = config_get_int(osd->cfg, "osd_lock_lease_ms");
  osd->async_recovery = config_get_bool(osd->cfg, "osd_async_recovery");
  osd->lease_ms = config_get_int(osd->cfg, "osd_lease");
  osd->lease_margin_ms = config_get_int(osd->cfg, "osd_lease_margin");
  osd->recovery_rate = config_get_int(osd->cfg, "osd_recovery_max_bytes_per_sec");
  int64_t ma = config_get_int(osd->cfg, "osd_recovery_max_active");
  osd->recovery_max_active = ma < 1 ? 1 : ma > 64 ? 64 : (size_t)ma;
  osd->debug_stop_after_install = config_get_bool(osd->cfg, "osd_debug_stop_after_install");
  if (osd->lease_ms > 0 && osd->lease_ms <= osd->beacon_interval) {
    log_err("osd", "osd_lease (%lld ms) must be longer than osd_beacon_interval (%lld ms)",
            (long long)osd->lease_ms, (long long)osd->beacon_interval);
    return -EINVAL;
  }
  if (osd->pg_log_max < 16)
    osd->pg_log_max = 16;
  const char *h = config_get_str(osd->cfg, "osd_host");
  if (!*h)
    h = config_get_str(osd->cfg, "host");
  if (*h) {
    snprintf(osd->host, sizeof osd->host, "%s", h);
  } else {
    char hn[CM_MAX_NAME] = "";
    gethostname(hn, sizeof hn - 1);
    char *dot = strchr(hn, '.');
    if (dot)
      *dot = 0;
    snprintf(osd->host, sizeof osd->host, "%s", hn[0] ? hn : "localhost");
  }
  if (!clustermap_valid_name(osd->host)) {
    log_err("osd", "host name '%s' is not valid (set osd_host)", osd->host);
    return -EINVAL;
  }
  if ((r = load_identity(osd)) < 0) {
    log_err("osd", "cannot read or create the osd identity in the store: %s", strerror(-r));
    return r;
  }
  struct store_statfs sf;
  store_statfs(osd->st, &sf);
  osd->device_size = sf.total;
  uint64_t w = (sf.total << 16) >> 40;
  osd->weight = w == 0 ? 1 : w > 0xFFFFFF ? 0xFFFFFF : (uint32_t)w;

  struct frame_limits lim = {
    (uint32_t)config_get_int(osd->cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(osd->cfg, "msgr_max_data"),
  };
  if ((r = osd_auth_prepare(osd)) < 0)
    return r;
  static const struct msgr_ops ops = { .on_frame = on_frame, .on_close = on_close };
  osd->msgr = msgr_new(osd->base, &lim, &ops, osd);
  if (!osd->msgr)
    return -ENOMEM;
  msgr_set_timeouts(osd->msgr, (int)config_get_int(osd->cfg, "msgr_connect_timeout"),
                    (int)(osd->hb_interval > 0 ? osd->hb_interval : 1000));
  const char *laddr = config_get_str(osd->cfg, "osd_addr");
  if ((r = msgr_listen(osd->msgr, laddr)) < 0) {
    log_err("osd", "cannot listen on %s: %s", laddr, strerror(-r));
    return r;
  }
  msgr_listen_addr(osd->msgr, 0, osd->addr, sizeof osd->addr);
  osd->monc = monc_new(osd->base, osd->cfg, err, sizeof err);
  if (!osd->monc) {
    log_err("osd", "%s", err);
    return -EINVAL;
  }
  if ((r = osd_auth_start(osd)) < 0)
    return r;
  if ((r = monc_subscribe(osd->monc, on_map, osd)) < 0)
    return r;
  osd->timer_ev = event_new(osd->base, -1, EV_PERSIST, on_timer, osd);
  osd->sig_ev[0] = evsignal_new(osd->base, SIGTERM, on_signal, osd);
  osd->sig_ev[1] = evsignal_new(osd->base, SIGINT, on_signal, osd);
  if (!osd->timer_ev || !osd->sig_ev[0] || !osd->sig_ev[1])
    return -ENOMEM;
  struct timeval tv = { 0, 100 * 1000 };
  event_add(osd->timer_ev, &tv);
  event_add(osd->sig_ev[0], NULL);
  event_add(osd->sig_ev[1], NULL);
  log_info("osd", "osd.%d (uuid %s, host %s, weight %.5f) listening on %s", osd->id, osd->uuid,
           osd->host, osd->weight / 65536.0, osd->addr);
  return 0;
}

void osd_stop(struct osd *osd)
{
  /* let every store callback run while the PGs still exist (bounded) */
  osd->stopping = true;
  int64_t until = util_now_ms() + 10000;
  while (pg_store_pending && util_now_ms() < until)
    event_base_loop(osd->base, EVLOOP_ONCE);
  if (pg_store_pending)
    log_warn("osd", "%u store callbacks still pending at stop", pg_store_pending);
  pg_free_all(osd);
  for (size_t i = 0; i < osd->n_peers; i++) {
    if (osd->peers[i].conn)
      msgr_conn_put(osd->peers[i].conn);
    if (osd->peers[i].hb_conn)
      msgr_conn_put(osd->peers[i].hb_conn);
  }
  for (int i = 0; i < 2; i++)
    if (osd->sig_ev[i])
      event_free(osd->sig_ev[i]);
  if (osd->timer_ev)
    event_free(osd->timer_ev);
  msgr_free(osd->msgr);
  osd->msgr = NULL;
  monc_free(osd->monc);
  osd->monc = NULL;
  osd_auth_stop(osd);
  osd->map = NULL;
  free(osd->peers);
  osd->peers = NULL;
  osd_space_free(osd);
  maphist_free(osd);
  osd->n_peers = 0;
  pgmap_free(osd->pgmap);
  osd->pgmap = NULL;
}
