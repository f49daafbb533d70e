/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the private header of the blk-osd daemon (the replication
 * layer above the local store), sectioned by file:
 *   service.c    life cycle: identity, boot, map subscription,
 *                clean stop; dispatch of incoming frames
 *   heartbeat.c  pings to PG peers, failure reports, beacons, the lease
 *   pg.c         PGs: state per map epoch, client ops on the primary,
 *                replication to the acting set, replica side, PG log
 *   peering.c    peering and recovery (by log) of a PG's acting set
 *   maphist.c    maps of past epochs (kept, or fetched from the monitors)
 *                and a PG's past intervals derived from them
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
#include "osd/peering_plan.h"
#include "osd/store.h"
#include "proto/osd.pb-c.h"

struct event;
struct event_base;
struct pg;

/* Another OSD as seen from this one (indexed by OSD id). */
struct osd_peer {
  msgr_conn *conn;              /* outgoing connection (reference) */
  char addr[CM_MAX_ADDR];       /* the address conn was made for */
  msgr_conn *hb_conn;           /* pings only (reference; see heartbeat.c) */
  char hb_addr[CM_MAX_ADDR];    /* the address hb_conn was made for */
  bool hb;                      /* pinged (shares a PG, or a neighbour) */
  uint64_t up_from;             /* map's up_from when hb started */
  int64_t hb_since_ms;          /* send time of the oldest unanswered ping
                                 * (grace base); 0 = every ping answered */
  int64_t last_rx_ms;           /* last ping answer */
  bool reported;                /* failure reported to the monitors */
  bool ping_inflight;
  int64_t withdraw_until_ms;    /* repeat the withdrawal (alive) until then */
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
  int64_t hb_tick_ms;           /* previous heartbeat_tick (stall check) */
  struct osd_peer *peers;
  size_t n_peers;
  /* PGs by (pool, pg) */
  struct pg **pg_hash;
  size_t pg_hash_size, n_pgs;
  /* options read once */
  int64_t hb_interval, hb_grace, beacon_interval, op_timeout, undersized_timeout;
  int64_t stats_interval;
  int64_t lock_lease_ms;        /* osd_lock_lease_ms: default OP_LOCK lease */
  size_t pg_log_max;
  bool async_recovery;
  int exit_code;
  bool stats_dirty;             /* a PG changed state: report soon */
  struct pg_parked *map_waiting;   /* requests from a newer epoch */
  struct osd_auth *auth;        /* auth.c */
  /* heartbeat.c: the lease (docs/osd.md "Lease") */
  int64_t lease_ms, lease_margin_ms;   /* osd_lease, osd_lease_margin (0 = off) */
  int64_t lease_until_ms;       /* monotonic: client ops only before this */
  bool lease_lapsed;            /* expiry logged */
  uint64_t lease_first_epoch;   /* first map this process saw */
  /* peering.c: recovery rate limit (osd_recovery_max_bytes_per_sec) */
  int64_t recovery_rate;        /* bytes/s, 0 = unlimited */
  double recovery_tokens;       /* token bucket (bytes; may go negative) */
  int64_t recovery_tokens_ms;   /* last refill (monotonic) */
  double recovery_est;          /* estimated cost of one object (bytes) */
  size_t recovery_max_active;   /* osd_recovery_max_active: objects in flight per PG */
  /* osd_debug_stop_after_install (tests only): a primary exits once its
   * recovery installed objects, before activation (unlogged objects) */
  bool debug_stop_after_install;
  /* space.c: data area fullness (docs/osd.md "Full OSDs") */
  uint32_t full_pct;            /* osd_full_ratio */
  uint32_t space_self;          /* OSD_SPACE_* of this OSD, last computed */
  uint8_t *space;               /* OSD_SPACE_* of peers by id (unknown = ok) */
  size_t n_space;
  struct maphist *maphist;      /* maphist.c: maps of past epochs (owned) */
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
/* The same for heartbeat pings: a connection of their own, so that a ping
 * never waits behind peering or recovery traffic to the same OSD. */
msgr_conn *osd_peer_hb_conn(struct osd *osd, int32_t id);

/* ---- maphist.c (docs/osd.md "Past intervals from the map history") ----- */

struct maphist;
/* Remember map m (copied; m stays the caller's). */
void maphist_note(struct osd *osd, const struct cluster_map *m);
/* The past intervals of PG (pool, pg) over epochs [from, before) from the
 * maps this OSD holds (peering_plan's derivation).  0; -ENOENT with
 * *missing = the first epoch not held (maphist_fetch it); -ESRCH when
 * `from` is older than the monitors keep (or than MAPHIST_MAX epochs
 * before the current one), with *missing = the oldest epoch that can be
 * known; -ENOMEM. */
int maphist_intervals(struct osd *osd, uint32_t pool, uint32_t pg, uint64_t from,
                      uint64_t before, struct pplan_interval *iv, size_t *n_iv, uint64_t *missing);
/* Ask the monitors for the maps missing among epochs [from, to] (one
 * request at a time; a no-op while one runs, and for 500 ms after one
 * failed); peering_history_ready runs when it is answered.  0 or -errno. */
int maphist_fetch(struct osd *osd, uint64_t from, uint64_t to);
/* The monitors' map history floor in their last history answer (0: none):
 * every PG had started at or after it (docs/monitor.md "Map history
 * floor"), so epochs before it are never needed for past intervals. */
uint64_t maphist_floor(struct osd *osd);
/* Free the maps (osd_stop). */
void maphist_free(struct osd *osd);

/* ---- space.c (docs/osd.md "Full OSDs") -------------------------------- */

enum { OSD_SPACE_OK = 0, OSD_SPACE_NEARFULL = 1, OSD_SPACE_FULL = 2 };
/* This OSD's data area state now (store_statfs against osd_full_ratio and
 * osd_store_nearfull_ratio); a change is logged and reported soon.  *pct
 * (may be NULL) receives the percent used. */
uint32_t osd_space_self(struct osd *osd, unsigned *pct);
/* Remember what OSD id said about its data area (OsdPing/RepOpReply). */
void osd_space_note(struct osd *osd, int32_t id, uint32_t space);
/* May the primary of pg start op (Blk__OsdOpType)?  0, or -ENOSPC with a
 * message in msg when the op may allocate and this OSD or an acting member
 * is full. */
int osd_space_admit(struct osd *osd, const struct pg *pg, int op, char *msg, size_t len);
/* Free the peers' states (osd_stop). */
void osd_space_free(struct osd *osd);

/* ---- auth.c (docs/auth.md) ---------------------------------------------- */

struct osd_auth;
/* Read the auth options (before monc_new: sets name = osd.N if unset). */
int osd_auth_prepare(struct osd *osd);
/* After the messenger and monc exist: the auth gate and OSD->OSD auth. */
int osd_auth_start(struct osd *osd);
/* Free the sessions and secrets (after msgr_free). */
void osd_auth_stop(struct osd *osd);
/* True when the OSD can verify authorizers (it holds the service
 * secrets, or auth is off): only then does it boot (be marked up). */
bool osd_auth_ready(const struct osd *osd);
/* Timer work: fetch the service secrets when due. */
void osd_auth_tick(struct osd *osd);
void osd_auth_on_close(struct osd *osd, msgr_conn *c);
/* Every received frame first: authorizers are handled here (false);
 * other frames need a session (false: refused and the conn closed). */
bool osd_auth_gate(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* May the session of c run op (Blk__OsdOpType) on pool (name)?  0, or
 * -EACCES / -EKEYEXPIRED with the reason in msg. */
int osd_op_allowed(struct osd *osd, msgr_conn *c, const char *pool, int op, char *msg,
                   size_t msglen);
/* `blkctl pg` commands on a PG of pool: query needs r, scrub/deep-scrub/
 * repair (change) rwx in the client's osd caps.  0, or -EACCES/-EKEYEXPIRED
 * with the reason in msg. */
int osd_pg_cmd_allowed(struct osd *osd, msgr_conn *c, const char *pool, bool change, char *msg,
                       size_t msglen);

/* ---- heartbeat.c -------------------------------------------------------- */

/* Recompute who to ping after a map change. */
void heartbeat_on_map(struct osd *osd);
/* Timer work: send pings, report silent peers. */
void heartbeat_tick(struct osd *osd);
void heartbeat_on_ping(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* Send a beacon to the leader monitor; its ack renews the lease. */
void heartbeat_beacon(struct osd *osd);
/* May this OSD serve client ops (its lease holds)?  If not, why (a
 * message for the client) goes to why[0..n) when why is not NULL. */
bool heartbeat_lease_valid(struct osd *osd, char *why, size_t n);
/* Wall-clock ms before which pg (this OSD its new primary) must not go
 * active: a previous primary now down may still hold its lease until
 * then (possibly past already).  0 when no such primary is down. */
int64_t heartbeat_fence_until(struct osd *osd, const struct pg *pg);

/* ---- pg.c --------------------------------------------------------------- */

/* Name of the per-PG meta object whose omap holds the PG log; client
 * object names may not start with '@'. */
#define PG_META_NAME "@pgmeta"
#define PG_NAME_MAX 900
/* struct pg_log_ent, struct pg_ver: osd/peering_plan.h */

/* A request parked until something changes (map, peering, min_size,
 * an in-flight write on the same object): the frame is copied. */
struct pg_parked {
  struct pg_parked *next;
  msgr_conn *conn;              /* reference */
  struct msgr_frame f;          /* payload/data point into buf */
  int64_t deadline_ms;
  char *obj;                    /* malloc'd object name when parked behind
                                 * an op on that object (keeps op order) */
  int err_on_timeout;
  char why[96];
  uint8_t buf[];
};

struct pg_op;                   /* a write in flight on the primary */
struct pg_rmw;                  /* a read-modify-write op reading its object */
struct peering;                 /* peering.c */

enum pg_state { PG_STRAY, PG_PEERING, PG_ACTIVE, PG_REPLICA };

struct pg {
  struct pg *hnext;
  struct osd *osd;
  uint32_t pool, id;
  uint32_t size, min_size;
  int32_t acting[PGMAP_MAX_SIZE];
  uint64_t acting_up_from[PGMAP_MAX_SIZE];
  size_t n_acting;
  bool primary;
  enum pg_state state;
  bool clean;                   /* last peering found every member complete */
  uint64_t interval;            /* epoch the current acting set began */
  uint64_t fence_epoch;         /* replica: refuse RepOps older than this */
  /* the log: a ring of log_cap entries, oldest at log_head */
  struct pg_log_ent *log;
  size_t log_head, log_n, log_cap;
  struct pg_ver last;           /* newest entry (0,0 if none ever) */
  struct pg_ver tail;           /* newest trimmed entry (0,0 if none) */
  bool meta_exists;
  struct pg_op *inflight, *inflight_tail;   /* in version order */
  struct pg_parked *waiting, *waiting_tail;
  /* ops reading their object before they decide (version guard, locks,
   * rmxattr/omap-rm existence): later ops on that object park behind
   * them; rmw_gen changes at each new interval (orphans them) */
  struct pg_rmw *rmw;
  uint64_t rmw_gen;
  struct peering *peering;
  struct peering *bg;           /* background recovery while active */
  uint32_t write_mask;          /* acting indices that get RepOps */
  uint64_t peer_seq;
  /* the intervals before this one since the PG last went active as this
   * OSD knows (from the previous maps' acting sets; persisted as "I" keys
   * of @pgmeta, plus those members told the primary): peering asks their
   * members that are still up, and waits while one that may have
   * acknowledged writes has none among the answers (peering_plan.h) */
  struct pplan_interval past[PPLAN_MAX_INTERVALS];
  size_t n_past;
  bool went_active;             /* this interval went active (primary: its
                                 * activation; replica: PgActivate taken) */
  uint64_t les;                 /* last epoch started (persisted, key "E") */
  /* the primaries among them (their leases fence activation) */
  int32_t prior_primaries[2 * PGMAP_MAX_SIZE];
  size_t n_prior_primaries;
  struct scrub *scrub;          /* scrub.c state (primary), or NULL */
  /* objects a recovery installed that no entry of the log describes yet
   * (persisted as "U" keys of @pgmeta; docs/osd.md "Unlogged objects"):
   * sorted by name, names owned (pg_unlogged_free) */
  struct pg_unlogged *unlogged;
  size_t n_unlogged, cap_unlogged;
};

/* One unlogged object: its name and the version recovery installed
 * ((0,0): absent, or no version xattr). */
struct pg_unlogged {
  char *name;
  struct pg_ver ver;
};

/* pg.c, used by peering.c */
struct pg_log_ent *pg_log_at(struct pg *pg, size_t i);   /* 0 = oldest */
void pg_log_clear(struct pg *pg);
int pg_log_push(struct pg *pg, struct pg_ver ver, uint8_t op, const char *reqid,
                const char *name);
/* omap key of a log entry / of the trim marker. */
void pg_log_key(char *buf, size_t n, const struct pg_log_ent *e);
void pg_tail_key(char *buf, size_t n, struct pg_ver tail);
/* omap keys of a past interval ("I" + first and last epoch as 16 hex
 * digits each + 'w' (may have acked writes) or 'r' + the acting OSD ids,
 * comma-separated: the key alone describes it) and of the last epoch
 * started ("E" + 16 hex digits).  buf holds STORE_NAME_MAX + 1. */
void pg_interval_key(char *buf, size_t n, const struct pplan_interval *iv);
void pg_les_key(char *buf, size_t n, uint64_t les);
/* A past interval key back into *iv; false if malformed. */
bool pg_interval_parse(const char *k, struct pplan_interval *iv);
/* Add to t the removal of pg's past interval keys (and forget them). */
void pg_past_clear(struct pg *pg, store_txn *t);
/* Add the object changes of op to t: key is the xattr/omap key (or NULL),
 * len the data length (OP_ZERO: the length to zero, data NULL).  0 or
 * -errno. */
int pg_txn_object(store_txn *t, struct pg *pg, int op, const char *name, const char *key,
                  uint64_t off, uint64_t len, const void *data);
/* Record ver as the object's version (xattr PG_VER_ATTR) in t. */
int pg_txn_version(store_txn *t, struct pg *pg, const char *name, struct pg_ver ver);
/* Object version xattr: 16 bytes, epoch then v, little-endian. */
#define PG_VER_ATTR "@ver"
/* Lock xattrs: PG_LOCK_PREFIX + lock name (docs/osd.md, lock record). */
#define PG_LOCK_PREFIX "@lock."
/* The PG became active (peering done): run parked ops, ack in-flight
 * writes the final log holds, fail the others. */
void pg_activated(struct pg *pg);
void pg_wake(struct pg *pg);
void pg_meta_oid(const struct pg *pg, struct store_oid *oid);
/* Unlogged objects (pg.c).  pg_unlogged_add: record name (installed by
 * recovery at version ver) in memory and as its "U" key in t (replacing
 * an older record of it); 0 or -ENOMEM.  pg_unlogged_settle: pg took an
 * authoritative log; drop from memory and t every name that log
 * describes (an entry for it at least as new as the installed version,
 * or the version is not newer than the log's trim point); returns how
 * many stay.  pg_unlogged_free: forget them (memory only).  A log entry
 * written by pg_log_append drops its object's record in its own
 * transaction. */
int pg_unlogged_add(struct pg *pg, store_txn *t, const char *name, struct pg_ver ver);
size_t pg_unlogged_settle(struct pg *pg, store_txn *t);
void pg_unlogged_free(struct pg *pg);
/* Outstanding store callbacks (osd_stop drains them). */
extern unsigned pg_store_pending;

/* peering.c */
void peering_start(struct pg *pg);
void peering_free(struct pg *pg);
void peering_tick(struct pg *pg, int64_t now);
const char *peering_state(const struct pg *pg);
/* Recovery progress of pg (blocking or background): objects of the plan
 * still to install (*left) out of *total; both 0 when none runs. */
void peering_progress(const struct pg *pg, uint64_t *left, uint64_t *total);
void peering_on_query(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
void peering_on_pull(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
void peering_on_push(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
void peering_on_activate(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* Maps were fetched (or the fetch failed): peerings waiting for map
 * history decide again. */
void peering_history_ready(struct osd *osd);
/* pg.c: find or create (loading its log from the store) a PG. */
struct pg *pg_get(struct osd *osd, uint32_t pool, uint32_t pgid, bool create);

/* Create/update PGs for a new map (starts peering where the acting set
 * changed). */
void pg_on_map(struct osd *osd, const struct cluster_map *prev,
               const struct pgmap *prev_pgmap);
void pg_on_frame(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* Timer work: undersized ops timing out, stats to the monitors. */
void pg_tick(struct osd *osd);
void pg_free_all(struct osd *osd);
/* Fill PgStats for the PGs this OSD is primary of. */
void pg_send_stats(struct osd *osd);

/* ---- scrub.c ------------------------------------------------------------- */

struct scrub;
/* Member side of MSG_PG_SCRUB_MAP: build and send this OSD's scrub map. */
void scrub_on_map_req(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* MSG_PG_SCRUB_CMD from a client (blkctl pg scrub/deep-scrub/repair/query):
 * the reply goes out when the requested scrub ends (query: at once). */
void scrub_on_cmd(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);
/* Timer work: start a due or requested scrub (one per OSD at a time). */
void scrub_tick(struct osd *osd);
/* The PG state for PgStats: peering_state plus "+inconsistent" (a
 * running scrub shows only in `blkctl pg query`).  Borrowed until the next
 * call for pg. */
const char *scrub_pg_state(struct pg *pg);
/* A new interval: abort the running scrub (its requesters get -EAGAIN). */
void scrub_pg_reset(struct pg *pg, const char *why);
/* Free pg->scrub (pg_free_all). */
void scrub_pg_free(struct pg *pg);
/* True while the object is being repaired: client ops on it must wait
 * (park; pg_wake runs when the repair is done). */
bool scrub_blocks(struct pg *pg, const char *name);

#endif
