/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: self-managed snapshots at the OSD (docs/snapshots.md).
 * Clients carry their snapshot context (seq + existing snap ids) with every
 * modifying op; the primary reads the object's snapset (xattr SNAP_ATTR of
 * the snap directory object (name, SNAP_DIR)) and decides, in a snap_plan,
 * what must happen before the op: clone the head to (name, clone id) with
 * store_txn_clone (extents shared, no data copied), remove clones no live
 * snapshot needs (OP_SNAPTRIM), and the new snapset.  The plan travels in
 * the RepOp so replicas apply exactly the primary's decision.  Reads at a
 * snapshot resolve the snap id to the clone that covers it, the head, or
 * -ENOENT.  Pure functions plus transaction builders; no I/O here.
 */
#ifndef BLK_OSD_SNAP_H
#define BLK_OSD_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "osd/store.h"
#include "proto/osd.pb-c.h"

struct pg;

/* The snap directory object of a name: holds the snapset, no data. */
#define SNAP_DIR (STORE_SNAP_HEAD - 1)
#define SNAP_ATTR "@snapset"
/* Largest number of snapshot ids an op may carry. */
#define SNAP_MAX_SNAPS 4096

/* What to do before a modifying op (owned buffers: snap_plan_free). */
struct snap_plan {
  uint64_t clone;               /* clone the head to this snap first; 0 = no */
  uint64_t *remove;             /* clones to remove */
  size_t n_remove;
  bool has_ss;                  /* set the snapset (ss_len 0: remove the dir) */
  uint8_t *ss;
  size_t ss_len;
};

/* Is req a modifying op that needs its object's snapset read first (a
 * snap context, or OP_SNAPTRIM)? */
bool snap_needs_plan(const Blk__OsdOp *req);

/* Check the snapshot fields of req: NULL or the -EINVAL message. */
const char *snap_bad_args(const Blk__OsdOp *req);

/* Decide req given whether the head exists and the snapset value read
 * (ss NULL/0 = none).  0 with *out filled (caller frees with
 * snap_plan_free), -EUCLEAN for a corrupt snapset, -ENOMEM. */
int snap_plan_make(const Blk__OsdOp *req, bool head_exists, const void *ss, size_t ss_len,
                   struct snap_plan *out);
void snap_plan_free(struct snap_plan *p);

/* Add the plan's store ops for object name of pg to t (before the op's own). */
int snap_txn(store_txn *t, const struct pg *pg, const char *name, const struct snap_plan *p);

/* Fill the RepOp fields from p (pointers borrowed from p). */
void snap_plan_to_repop(const struct snap_plan *p, Blk__RepOp *ro);
/* The plan a RepOp carries (pointers borrowed from ro; do not free).
 * false if ro carries none. */
bool snap_plan_from_repop(const Blk__RepOp *ro, struct snap_plan *p);

/* The store snap to read for snapid given the snapset (NULL = none):
 * STORE_SNAP_HEAD, a clone id, or -ENOENT (the object did not exist at
 * that snapshot, or the snapshot was removed); -EUCLEAN if corrupt. */
int snap_resolve(const void *ss, size_t ss_len, uint64_t snapid, uint64_t *snap);

/* ---- recovery of an object's clones and snap directory (peering.c) ---- */

/* One clone or the snap directory, read for recovery. */
struct snap_obj {
  uint64_t snap, size;
  uint8_t *buf;                 /* size bytes (malloc'd) */
  struct store_kv *attrs;       /* store_kv_free */
  size_t n_attrs;
  struct store_stat st;
  bool gone;                    /* removed meanwhile: not sent */
};
void snap_objs_free(struct snap_obj *so, size_t n);
/* Every (name, snap) object but the head, in snap order (*out malloc'd,
 * snap fields set; NULL when none).  0 or -errno. */
int snap_list_objs(store *st, uint32_t pool, uint32_t pg, const char *name,
                   struct snap_obj **out, size_t *n);

/* A PgObject's clones: data = head bytes then each clone's, arr points
 * into elems/kv storage (all owned; snap_pack_free). */
struct snap_pack {
  uint8_t *data;
  uint64_t total;
  Blk__PgSnapObject **arr;
  size_t n;
  Blk__PgSnapObject *elems;
  Blk__PgKv *kv;
  Blk__PgKv **kvp;
};
int snap_pack(const uint8_t *head, uint64_t head_size, const struct snap_obj *so, size_t n,
              struct snap_pack *pk);
void snap_pack_free(struct snap_pack *pk);
/* Does the data segment match o (head + clone sizes, crc32c)? */
bool snap_pgobj_data_ok(const Blk__PgObject *o, const uint8_t *data, uint64_t len);
/* t: replace every clone and the snap directory of name by so[] (data of
 * each at clone_data, in order).  0 or -errno. */
int snap_install_txn(store_txn *t, struct pg *pg, const char *name, Blk__PgSnapObject **so,
                     size_t n, const uint8_t *clone_data);

#endif
