/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the monitor client used by blkctl (and later libblk and
 * the OSDs): it sends a MonCommand to the monitors and follows the
 * protocol of mon/commands.c — redirects to the leader (-ENOTCONN with an
 * address), retries after a leadership change (-EAGAIN) with the same
 * req_id, moves on to the next monitor when one is unreachable — until
 * the command's deadline.  When the deadline passes it reports which
 * monitors were unreachable and why.
 * Daemons use the asynchronous forms on their own loop: monc_call_async
 * (any request answered by a MonReply from the leader, same redirect and
 * retry rules) and monc_subscribe, which keeps a cluster map current from
 * the monitors' pushes (MapUpdate txns applied with clustermap_apply; a
 * gap or an undecodable update asks for a full map; a dropped connection
 * resubscribes to the next monitor; the subscription is renewed every
 * few seconds so that a silent monitor is noticed).
 * Threading: one event loop thread; the synchronous call runs the loop.
 * Do not mix the synchronous call with pending asynchronous ones.
 */
#ifndef BLK_CLIENT_MONC_H
#define BLK_CLIENT_MONC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/auth.h"
#include "common/clustermap.h"
#include "common/config.h"
#include "proto/mon.pb-c.h"

struct event_base;
typedef struct monc monc;

/* Build a client for the monitors named in cfg.  NULL with a message in
 * err when the config names none. */
monc *monc_new(struct event_base *base, const config *cfg, char *err, size_t errlen);
void monc_free(monc *mc);

/* Send cmd and wait for the answer of the quorum, at most timeout_ms.
 * A txn without req_id gets a fresh one (kept across retries).  Returns
 * 0 with *reply (free with blk__mon_reply__free_unpacked) — which may
 * itself carry err != 0 from the cluster — or a negative errno with a
 * message in err (-ETIMEDOUT: no quorum answered in time). */
int monc_command(monc *mc, Blk__MonCommand *cmd, int timeout_ms,
                 Blk__MonReply **reply, char *err, size_t errlen);

/* Answer of an asynchronous call: err 0 with reply (borrowed for the
 * callback; may carry reply->err != 0 from the cluster), or -ETIMEDOUT
 * (no quorum answered before the deadline; reply NULL), or -ECANCELED
 * (monc_free ran first).  Called exactly once, never from inside the
 * call that started it. */
typedef void (*monc_reply_fn)(void *arg, int err, const Blk__MonReply *reply);

/* Send msg (a request of frame type `type` answered by MonReply) to the
 * leader, following redirects, until timeout_ms.  msg is packed before
 * return (borrowed only for the call).  Returns 0 (cb will run) or
 * -ENOMEM (cb will not run). */
int monc_call_async(monc *mc, uint16_t type, const ProtobufCMessage *msg,
                    int timeout_ms, monc_reply_fn cb, void *arg);
/* monc_call_async for a MonCommand; a txn without req_id gets a fresh one
 * (cmd is left as it was). */
int monc_command_async(monc *mc, Blk__MonCommand *cmd, int timeout_ms,
                       monc_reply_fn cb, void *arg);

/* Called on every new epoch with the new map (borrowed, valid until the
 * next epoch or monc_free) and the previous one (borrowed for the call
 * only; NULL for the first map). */
typedef void (*monc_map_fn)(void *arg, const struct cluster_map *map,
                            const struct cluster_map *prev);
/* Subscribe to map updates from the monitors.  One subscription per monc.
 * Returns 0 or -EBUSY/-ENOMEM. */
int monc_subscribe(monc *mc, monc_map_fn cb, void *arg);
/* The current map (NULL before the first), borrowed as above. */
const struct cluster_map *monc_map(const monc *mc);
/* Ask for the map again now (e.g. a peer or client showed a newer epoch). */
void monc_renew(monc *mc);
/* A peer or OSD showed map `epoch`: renew, and if the monitor we
 * subscribe to is behind it (cut off from the quorum), move to another. */
void monc_want_epoch(monc *mc, uint64_t epoch);

/* ---- authentication (docs/auth.md §8) ----------------------------------
 * monc_new reads auth_mode, name (default client.admin), key, key_file
 * and keyring from cfg; in mode cephx/secure every monitor connection
 * runs the challenge-response exchange before any other frame, and the
 * ticket for the OSDs is renewed before it expires (auth_ticket_renew).
 * A refused login fails monc_command with -EACCES ("authentication as
 * client.x failed: ...") and asynchronous calls with err -EACCES. */
struct msgr_conn;
/* Why the last authentication (to a monitor or an OSD) failed ("" if it
 * did not); borrowed until the next attempt. */
const char *monc_auth_error(const monc *mc);
/* auth_mode of the config monc was built from. */
enum auth_mode monc_auth_mode(const monc *mc);
/* True when the last authentication to a monitor was refused (or there
 * is no key): waiting longer will not help. */
bool monc_auth_refused(const monc *mc);
/* The entity name monc authenticates as (borrowed). */
const char *monc_entity(const monc *mc);
/* Get a new ticket now (an OSD said ours expired).  False when renewal
 * is off (auth_mode none or auth_ticket_renew false). */
bool monc_renew_ticket(monc *mc);
/* A msgr_auth_start_fn (msgr_set_client_auth) for connections to OSDs:
 * presents an authorizer built from monc's ticket; ctx is the monc. */
void monc_osd_auth_start(void *ctx, struct msgr_conn *c);
/* The same for a connection to a monitor made on another messenger (e.g.
 * blkctl mon watch): logs in as monc's entity. */
void monc_mon_auth_start(void *ctx, struct msgr_conn *c);
/* OSDs: fetch the rotating service secrets over an authenticated
 * monitor connection.  cb gets 0 and the secrets (borrowed for the call)
 * or -errno.  Returns 0 (cb will run) or -ENOTCONN (not logged in yet)
 * or -ENOMEM (cb will not run). */
struct auth_rotating;
typedef void (*monc_secrets_fn)(void *arg, int err, const struct auth_rotating *r);
int monc_fetch_secrets(monc *mc, monc_secrets_fn cb, void *arg);

#endif
