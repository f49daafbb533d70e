/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the OSD's local object store, as seen by the replication
 * layer (pg.c, peering, recovery, scrub) and by the tools (blk-osd --mkfs,
 * --fsck, --bench).  One store = one device (block device or file, opened
 * O_DIRECT: superblock, circular journal, data area) + one RocksDB in a data
 * directory (object metadata).  docs/store.md has the formats and the
 * reasoning.
 *
 * Everything is single-threaded on the caller's libevent loop: every call
 * below must be made from the loop thread, and every callback runs from that
 * loop (never from inside the call that registered it).  Transactions are
 * built with store_txn_*, then handed to store_queue(); the callback runs
 * once the whole transaction is durable (journaled and flushed), or failed as
 * a whole (nothing of it applied).  Callbacks of transactions run in
 * submission order.  Reads see every transaction queued before them (as if
 * executed after it) and complete only after those transactions are durable,
 * so a read never returns data that a crash could take back.
 */
#ifndef BLK_OSD_STORE_H
#define BLK_OSD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

struct event_base;

typedef struct store store;
typedef struct store_txn store_txn;

/* The live object (not a clone) has snap == STORE_SNAP_HEAD. */
#define STORE_SNAP_HEAD UINT64_MAX
/* Longest object name, attribute name and omap key accepted. */
#define STORE_NAME_MAX 1024
/* Largest attribute or omap value accepted. */
#define STORE_VALUE_MAX (64 * 1024)

/* An object: (pool, pg) is the collection (PG) it belongs to; name is
 * borrowed for the duration of the call that takes the oid. */
struct store_oid {
  uint32_t pool;
  uint32_t pg;
  const char *name;
  uint64_t snap;
};

/* Formatting parameters (store_mkfs). Zero fields take defaults. */
struct store_mkfs_opts {
  uint32_t osd_id;
  uint64_t device_size;   /* bytes to use; 0 = whole device/file */
  uint64_t journal_size;  /* bytes; 0 = config osd_store_journal_size */
  bool force;             /* overwrite an existing store */
};

struct store_stat {
  uint64_t size;          /* object size in bytes */
  uint64_t allocated;     /* bytes of data area referenced (shared counted) */
  uint32_t n_attrs;
  bool has_omap;
};

struct store_statfs {
  uint64_t total;         /* data area bytes */
  uint64_t used;          /* allocated or awaiting release */
  uint64_t free;          /* total - used */
  bool nearfull;          /* used >= osd_store_nearfull_ratio of total */
  uint64_t journal_size;
  uint64_t journal_used;
  uint64_t small_direct;  /* transactions since open whose small writes went
                           * direct (osd_store_direct_min_queue) */
};

/* Completion of a transaction or of a stat/attr/omap lookup:
 * result is 0 or -errno.  For store_read: bytes of object data in the
 * range (0 past the end), or -errno. */
typedef void (*store_cb)(void *arg, int result);

/* Format dev_path (creating data_dir if needed, which must not hold a
 * RocksDB unless opts->force).  Refuses a device that already holds a
 * store (-EEXIST) unless opts->force.  cfg is borrowed; may be NULL. */
int store_mkfs(const char *dev_path, const char *data_dir,
               const struct store_mkfs_opts *opts, const config *cfg);

/* Open a formatted store, replay its journal, and attach to base.
 * cfg and base are borrowed and must outlive the store.  On success *out
 * is owned by the caller (store_close).  -EINVAL/-EUCLEAN on a bad or
 * foreign superblock, -errno on I/O errors; the reason is logged. */
int store_open(const char *dev_path, const char *data_dir,
               struct event_base *base, const config *cfg, store **out);

/* Wait for every queued transaction and read, checkpoint (so the next
 * open replays nothing), and free the store.  Runs the loop. */
void store_close(store *st);

/* Default data directory for a device: "<dev_path>.db" (malloc'd). */
char *store_default_data_dir(const char *dev_path);

/* ---- transactions ---- */

/* New empty transaction (NULL with errno=ENOMEM).  Owned by the caller
 * until store_queue (which takes it) or store_txn_free. */
store_txn *store_txn_new(void);
void store_txn_free(store_txn *txn);
/* Builders copy oid->name and data: the caller's buffers are borrowed only
 * for the call.  They return 0, or -EINVAL for a bad argument (the error is
 * remembered and store_queue then fails the transaction), -ENOMEM. */
int store_txn_write(store_txn *txn, const struct store_oid *oid, uint64_t off,
                    uint64_t len, const void *data);
int store_txn_zero(store_txn *txn, const struct store_oid *oid, uint64_t off,
                   uint64_t len);
int store_txn_truncate(store_txn *txn, const struct store_oid *oid,
                       uint64_t size);
/* Create an empty object if missing (no-op if it exists). */
int store_txn_touch(store_txn *txn, const struct store_oid *oid);
int store_txn_remove(store_txn *txn, const struct store_oid *oid);
int store_txn_setattr(store_txn *txn, const struct store_oid *oid,
                      const char *name, const void *val, size_t len);
int store_txn_rmattr(store_txn *txn, const struct store_oid *oid,
                     const char *name);
int store_txn_omap_set(store_txn *txn, const struct store_oid *oid,
                       const char *key, const void *val, size_t len);
int store_txn_omap_rm(store_txn *txn, const struct store_oid *oid,
                      const char *key);
/* dst becomes a copy of src (data by sharing extents copy-on-write, attrs
 * and omap by copy); a previous dst is replaced.  -ENOENT at apply if src
 * is missing. */
int store_txn_clone(store_txn *txn, const struct store_oid *src,
                    const struct store_oid *dst);
/* Number of ops added so far. */
unsigned store_txn_ops(const store_txn *txn);

/* Submit txn (ownership passes to the store, even on failure).  cb runs
 * from the loop once the transaction is durable (0) or failed (-ENOSPC,
 * -ENOENT for a missing source/object where one is needed, -EINVAL,
 * -EBADMSG when a partial-block write met a corrupt block, -EIO).
 * A failed transaction changes nothing. */
void store_queue(store *st, store_txn *txn, store_cb cb, void *arg);

/* ---- reads (all asynchronous; cb from the loop) ---- */

/* Read len bytes at off into buf (borrowed until cb).  Holes and bytes past
 * the end read as zeros.  cb result: bytes within the object size, -ENOENT,
 * -EBADMSG on a checksum mismatch (logged with object and offset), -EIO. */
void store_read(store *st, const struct store_oid *oid, uint64_t off,
                uint64_t len, void *buf, store_cb cb, void *arg);
/* Fill *out (borrowed until cb). -ENOENT if missing. */
void store_stat(store *st, const struct store_oid *oid, struct store_stat *out,
                store_cb cb, void *arg);
/* store_stat without the allocated count (out->allocated = 0): no chunk
 * map is read, so its cost does not grow with the object size (I/O path). */
void store_stat_size(store *st, const struct store_oid *oid, struct store_stat *out,
                     store_cb cb, void *arg);
/* On success *val is malloc'd (caller frees), *len its length. -ENODATA if
 * the object has no such attribute/key, -ENOENT if no object. */
void store_getattr(store *st, const struct store_oid *oid, const char *name,
                   void **val, size_t *len, store_cb cb, void *arg);
void store_omap_get(store *st, const struct store_oid *oid, const char *key,
                    void **val, size_t *len, store_cb cb, void *arg);

/* ---- synchronous (run the loop until done; for tools and tests) ---- */

int store_queue_sync(store *st, store_txn *txn);
int store_read_sync(store *st, const struct store_oid *oid, uint64_t off,
                    uint64_t len, void *buf);
int store_stat_sync(store *st, const struct store_oid *oid,
                    struct store_stat *out);
int store_getattr_sync(store *st, const struct store_oid *oid,
                       const char *name, void **val, size_t *len);
int store_omap_get_sync(store *st, const struct store_oid *oid,
                        const char *key, void **val, size_t *len);

/* One listed object. name is malloc'd; free with store_list_free. */
struct store_list_ent {
  char *name;
  uint64_t snap;
};
/* List up to max objects of PG (pool, pg) in (name, snap) order, starting
 * after (start_after, start_snap) (start_after NULL = from the start).
 * Sees every queued transaction.  Returns the count (0 at the end) with
 * *out malloc'd, or -errno. */
int store_list(store *st, uint32_t pool, uint32_t pg, const char *start_after,
               uint64_t start_snap, unsigned max, struct store_list_ent **out);
void store_list_free(struct store_list_ent *ents, int n);

/* List up to max omap keys of oid after start_after (NULL = first), in key
 * order; keys malloc'd (free with store_list_free, snap unused).  Count or
 * -errno (-ENOENT if no object). */
int store_omap_list(store *st, const struct store_oid *oid,
                    const char *start_after, unsigned max,
                    struct store_list_ent **out);

/* Space accounting (synchronous, cheap). */
void store_statfs(store *st, struct store_statfs *out);

/* Make everything acknowledged so far stable in the data area and RocksDB
 * and trim the journal (runs the loop).  0 or -errno. */
int store_checkpoint_sync(store *st);

/* Consistency check of an open store: every block referenced by metadata
 * lies in the data area and is marked used with the right share count,
 * nothing marked used is unreferenced (unless awaiting release), onodes and
 * chunks decode, no chunk lies past its object's size.  deep: also read
 * every block and verify its crc32c.  Returns the number of problems found
 * (each logged), or -errno if the check could not run. */
int store_fsck(store *st, bool deep);

/* Test hooks: the open device fd (for corrupting the data area in tests)
 * and the device offset of the block holding byte off of oid (-ENOENT for a
 * hole), after making everything stable. */
int64_t store_debug_block_offset(store *st, const struct store_oid *oid,
                                 uint64_t off);
const char *store_debug_device(store *st);
/* Simulate a crash: wait only for I/O already in flight, then free the
 * store without a checkpoint (what a kill -9 after the last completion
 * would leave on the device). */
void store_debug_abandon(store *st);
/* Device offset and length of the newest journal record written. -ENOENT
 * if none since open. */
int store_debug_journal_last(store *st, uint64_t *dev_off, uint32_t *len);
/* Fault injection: the next journal write puts only its first 4 KiB on the
 * device and never completes (no flush, no acknowledgement, nothing after
 * it is written): a torn journal tail once the process is killed. */
void store_debug_tear_next_write(store *st);
/* Seq of the last acknowledged transaction (journal record). */
uint64_t store_debug_acked_seq(store *st);

/* ---- object-op helpers (store_read.c; for the OSD's xattr/omap/extent
 * ops and for recovery).  Same ordering as the lookups above: resolved at
 * submission against every queued transaction, cb after those are durable.
 * On success the out arrays are malloc'd and owned by the caller. ---- */

/* One attribute or omap entry: key and val malloc'd (store_kv_free). */
struct store_kv {
  char *key;
  void *val;
  size_t len;
};
void store_kv_free(struct store_kv *kv, size_t n);
/* Every attribute of oid, in name order.  -ENOENT if no object. */
void store_attrs(store *st, const struct store_oid *oid, struct store_kv **out,
                 size_t *n, store_cb cb, void *arg);
/* Up to max omap entries (key and value) after start_after (NULL = first),
 * in key order.  -ENOENT if no object. */
void store_omap_range(store *st, const struct store_oid *oid,
                      const char *start_after, unsigned max,
                      struct store_kv **out, size_t *n, store_cb cb, void *arg);
/* Allocated extents of oid within [off, off+len) clipped to its size, as
 * *n (offset, length) pairs in *ext (2 * *n values, ascending, block
 * granular except at the range ends).  -ENOENT if no object. */
void store_mapext(store *st, const struct store_oid *oid, uint64_t off,
                  uint64_t len, uint64_t **ext, size_t *n, store_cb cb,
                  void *arg);

#endif
