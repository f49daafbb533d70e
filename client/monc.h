/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the monitor client used by blkctl (and later libblk and
 * the OSDs): it sends a MonCommand to the monitors and follows the
 * protocol of mon/commands.c — redirects to the leader (-ENOTCONN with an
 * address), retries after a leadership change (-EAGAIN) with the same
 * req_id, moves on to the next monitor when one is unreachable — until
 * the command's deadline.  When the deadline passes it reports which
 * monitors were unreachable and why.
 * Threading: one event loop thread; the synchronous call runs the loop.
 */
#ifndef BLK_CLIENT_MONC_H
#define BLK_CLIENT_MONC_H

#include <stddef.h>

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

#endif
