/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the private header of the blk-osd daemon (the replication
 * layer above the local store), sectioned by file:
 *   service.c    life cycle: identity, boot, map subscription, beacons,
 *                clean stop; dispatch of incoming frames
 *   heartbeat.c  pings to PG peers, failure reports
 *   pg.c         PGs: state per map epoch, client ops on the primary,
 *                replication to the acting set, replica side, PG log
 *   peering.c    peering and recovery (by log) of a PG's acting set
 * Everything runs on one libevent loop thread: nothing is locked.  PGs
 * and peers are owned by struct osd and freed at stop.  docs/osd.md has
 * the protocol.
 */
#ifndef BLK_OSD_OSD_H
#define BLK_OSD_OSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/monc.h"
#include "common/clustermap.h"
#include "common/config.h"
#include "common/msgr.h"
#include "common/pgmap.h"
#include "osd/store.h"
#include "proto/osd.pb-c.h"

struct event;
struct event_base;
struct pg;

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

/* Another OSD as seen from this one (indexed by OSD id). */
struct osd_peer {
  msgr_conn *conn;              /* outgoing connection (reference) */
  char addr[CM_MAX_ADDR];       /* the address conn was made for */
  bool hb;                      /* pinged (shares a PG, or a neighbour) */
  uint64_t up_from;             /* map's up_from when hb started */
  int64_t hb_since_ms;          /* when pinging started (grace base) */
  int64_t last_rx_ms;           /* last ping answer */
  bool reported;                /* failure reported to the monitors */
  bool ping_inflight;
};

struct osd {
  config *cfg;
  struct event_base *base;
  store *st;
  msgr *msgr;
  monc *monc;
  int32_t id;
  char uuid[40];
  char host[CM_MAX_NAME];
  char addr[CM_MAX_ADDR];
  uint64_t device_size;
  uint32_t weight;
  /* current map (owned by monc) and its placement */
  const struct cluster_map *map;
  struct pgmap *pgmap;
  uint64_t epoch;
  bool boot_inflight, booted, stopping, stop_sent;
  int64_t boot_sent_ms;
  struct event *timer_ev, *sig_ev[2];
  int64_t last_beacon_ms, last_hb_ms, last_stats_ms;
  struct osd_peer *peers;
  size_t n_peers;
  /* PGs by (pool, pg) */
  struct pg **pg_hash;
  size_t pg_hash_size, n_pgs;
  /* options read once */
  int64_t hb_interval, hb_grace, beacon_interval, op_timeout, undersized_timeout;
  int64_t stats_interval;
  size_t pg_log_max;
  int exit_code;
};

/* ---- service.c ---------------------------------------------------------- */

/* Open the daemon around an open store: listen, subscribe, boot.  The
 * store is borrowed (the caller closes it after osd_stop).  0 or -errno. */
int osd_start(struct osd *osd);
/* Free everything osd_start built (after the loop returned). */
void osd_stop(struct osd *osd);
/* The peer slot of OSD id (grown on demand); NULL on ENOMEM/bad id. */
struct osd_peer *osd_peer(struct osd *osd, int32_t id);
/* An outgoing connection to OSD id at its current map address (borrowed;
 * valid until the next map); NULL if the OSD is unknown. */
msgr_conn *osd_peer_conn(struct osd *osd, int32_t id);

/* ---- heartbeat.c -------------------------------------------------------- */

/* Recompute who to ping after a map change. */
void heartbeat_on_map(struct osd *osd);
/* Timer work: send pings, report silent peers. */
void heartbeat_tick(struct osd *osd);
void heartbeat_on_ping(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);

/* ---- pg.c --------------------------------------------------------------- */

/* Create/update PGs for a new map (starts peering where the acting set
 * changed). */
void pg_on_map(struct osd *osd, const struct cluster_map *prev);
void pg_on_frame(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* Timer work: undersized ops timing out, stats to the monitors. */
void pg_tick(struct osd *osd);
void pg_free_all(struct osd *osd);
/* Fill PgStats for the PGs this OSD is primary of. */
void pg_send_stats(struct osd *osd);

#endif
