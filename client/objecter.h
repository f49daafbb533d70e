/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the object client (DESIGN.md §4): it keeps the cluster map
 * current through a monc subscription, computes each object's PG and
 * primary locally (common/pgmap.h) and sends the op there.  Transient
 * failures never reach the caller before the op's deadline
 * (client_op_timeout): -ESTALE from an OSD (its map differs: wait for the
 * newer epoch it names, or refetch), a dropped connection or timeout, an OSD
 * stopping, a PG with no up member, a write lost in peering: the op is
 * recomputed against the newest map and resent with the same reqid, which
 * the primary deduplicates.  Any number of ops may be in flight; each has
 * its own callback.  Threading: one event loop thread (the monc's).
 */
#ifndef BLK_CLIENT_OBJECTER_H
#define BLK_CLIENT_OBJECTER_H

#include <stdbool.h>
#include <stdint.h>

#include "client/monc.h"
#include "proto/osd.pb-c.h"

typedef struct objecter objecter;

/* Build on mc (borrowed; must outlive the objecter), taking mc's map
 * subscription.  NULL with errno. */
objecter *objecter_new(struct event_base *base, monc *mc, const config *cfg);
/* Cancel every op (callbacks with -ECANCELED) and free. */
void objecter_free(objecter *o);

/* Result of an op: err 0 with rep (borrowed for the call; read data in
 * data/len, crc already verified), or a negative errno with rep possibly
 * NULL (-ETIMEDOUT: no answer before the deadline; -ENOENT: no such pool
 * or object; -EIO: read data failed its crc; others from the OSD with
 * rep->message).  Called exactly once, never from inside the call. */
typedef void (*objecter_cb)(void *arg, int err, const Blk__OsdOpReply *rep,
                            const uint8_t *data, uint32_t len);

struct objecter_req {
  const char *pool;             /* pool name */
  const char *name;             /* object name (ignored for OP_LIST) */
  Blk__OsdOpType op;
  uint64_t offset, length;      /* read: length 0 = to the end */
  const void *data;             /* write data (copied, unless data_borrowed) */
  uint32_t data_len;
  bool data_borrowed;           /* data stays valid and unchanged until cb has
                                 * run: sent from there without a copy */
  uint32_t pg;                  /* OP_LIST: the PG to list */
  const char *list_after;
  uint32_t list_max;
  int32_t osd;                  /* >= 0: debug read of that OSD's own copy */
  const char *key;              /* xattr/omap key or lock name (or NULL) */
  bool has_assert_version;      /* guard: apply only at this object version */
  uint64_t assert_epoch, assert_v;
  /* snapshots (docs/snapshots.md): the writer's snap context (snaps
   * copied; n_snaps 0 with snap_seq 0 = none) and, for reads, the snap id
   * to read at (0 = the live object) */
  uint64_t snap_seq;
  const uint64_t *snaps;
  size_t n_snaps;
  uint64_t snapid;
};

/* Start an op: sent at once when the map allows (else from the loop).
 * 0 (cb will run, never from inside this call) or -ENOMEM/-EINVAL (cb
 * will not). */
int objecter_op(objecter *o, const struct objecter_req *req, objecter_cb cb, void *arg);
/* The current map (NULL before the first), borrowed until the next map. */
const struct cluster_map *objecter_map(objecter *o);
/* Run the loop until the first map arrives or timeout_ms.  0/-ETIMEDOUT,
 * or -EACCES when the monitors refused our authentication
 * (monc_auth_error says why). */
int objecter_wait_map(objecter *o, int timeout_ms);
/* This client's nonce (the reqid prefix before '.'; the identity that
 * object locks record and `osd blocklist` fences).  Borrowed, valid for
 * the objecter's life. */
const char *objecter_nonce(const objecter *o);
/* Use nonce (1..19 of [0-9A-Za-z_-]) instead of the random one, e.g. to
 * act as the same lock holder across processes.  Only before the first
 * op.  0 or -EINVAL. */
int objecter_set_nonce(objecter *o, const char *nonce);

#endif
