/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the body of struct store and the helpers shared by
 * store.c (transactions, journal, checkpoint), store_read.c (reads and
 * lookups), store_open.c (mkfs, open, replay, close) and fsck.c.  Every
 * field is used from the loop thread only; there are no locks.
 */
#ifndef BLK_OSD_STORE_INT_H
#define BLK_OSD_STORE_INT_H

#include <liburing.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <sys/uio.h>

#include "osd/internal.h"
#include "osd/store.h"

struct event;

/* An aligned, reference-counted I/O buffer (pooled by power-of-two class).
 * A transaction's record and its direct data live in one recbuf; pending
 * blocks keep it alive until the data area has the blocks. */
struct recbuf {
  uint8_t *mem;
  size_t size;
  uint32_t refs;
  int cls;            /* pool class, -1 = not pooled */
  struct recbuf *next_free;
};

/* Embedded in whatever waits for an io_uring completion; user_data points
 * at it. */
struct ioreq {
  void (*done)(struct store *st, struct ioreq *io, int res);
};

/* A metadata key changed by a prepared but not yet applied transaction
 * (seq = the last transaction that set it), or, once applied to RocksDB, a
 * clean cached copy of it (seq = 0, at most OVL_CLEAN_MAX of them) so that
 * the next transaction on the same object finds it without a RocksDB Get.
 * tomb = deleted (a clean tomb caches "absent"). */
struct ovl {
  struct hnode hn;
  uint64_t seq;
  bool tomb;
  bool gone;          /* replaced by a later write of the same transaction
                       * (set while one is prepared, so px_commit needs no
                       * lookup to know which entries it left in place) */
  uint16_t cls;       /* size class of the allocation (st_ovl_new) */
  size_t klen, vlen;
  uint8_t *val;       /* points into the same allocation */
  uint8_t key[];
};

/* Overlay entries are allocated in 64-byte size classes; freed ones of
 * up to OVL_POOL_CLASSES * 64 bytes are kept on per-class free lists (at
 * most OVL_POOL_MAX each) for the next transaction: a 4 KiB overwrite
 * replaces two entries (onode, chunk map) of the same sizes every time. */
#define OVL_POOL_CLASSES 16
#define OVL_POOL_MAX 512

/* A data-area block whose newest content is in memory (a recbuf) and not
 * yet known to be on the device.  dirty: a journaled (deferred) version is
 * not written yet (first_dirty = seq of the oldest such version); writing:
 * a checkpoint write is in flight; direct: a direct write is in flight. */
struct pend {
  struct hnode hn;
  uint64_t lba;
  struct recbuf *rb;
  uint32_t off, woff;
  uint64_t seq, first_dirty;
  bool dirty, writing, direct;
  struct recbuf *wrb;  /* buffer of the version being written */
};

/* Last transaction touching an object (keyed by the object key's hash;
 * a collision only makes a read wait a little longer). */
struct objw {
  struct hnode hn;
  uint64_t last_seq;
};

enum jtx_state { JTX_PREPARED, JTX_WRITING, JTX_DURABLE, JTX_FAILED };

struct dwrite {
  struct ioreq io;
  struct jtx *j;
  uint64_t lba;
  uint32_t n;
  uint32_t boff;      /* offset in j->rb */
};

/* A queued transaction, from store_queue to its callback. */
struct jtx {
  struct jtx *next;
  uint64_t seq;
  uint32_t len, crc;     /* len: record image bytes (in rb) */
  uint64_t jpos;         /* logical position of its batch */
  uint64_t jend;         /* where replay resumes after it: the batch's end
                          * if it is the batch's last record, else jpos */
  struct recbuf *rb;
  uint32_t direct_left, n_dw;
  bool plain;            /* its direct writes are plain (no RWF_DSYNC): a
                          * small write sent direct at queue depth; the
                          * fdatasync of the batch carrying its record makes
                          * them durable (journal_kick) */
  int result;
  enum jtx_state state;
  store_cb cb;
  void *arg;
  struct store_txn *txn;  /* kept only while blocked (ENOSPC retry) */
  struct dwrite *dw;
};

/* Journal records written but not yet trimmed. */
struct jdesc {
  uint64_t seq, end, crc;
};

struct rrun {
  struct ioreq io;
  struct rreq *r;
  uint64_t lba;
  uint32_t n;
  uint32_t bidx;      /* first index in r->blocks */
  uint32_t boff;      /* offset in the bounce buffer */
};

struct rblock {
  uint64_t obj_off;   /* object offset of the block */
  uint32_t crc;
  uint32_t from, to;  /* byte range wanted within the block */
};

/* A read or lookup waiting for its I/O and/or the transactions before it. */
struct rreq {
  struct rreq *next;
  store_cb cb;
  void *arg;
  int result;
  uint64_t wait_seq;
  uint32_t io_left;
  uint8_t *dst;
  uint64_t off;
  struct recbuf *bounce;
  struct rrun *runs;
  uint32_t nruns;
  struct rblock *blocks;
  char *what;         /* object name, for error messages */
  uint32_t pool, pg;
  uint64_t snap;
  bool in_flight_list;
  struct rreq *fl_next;
};

struct jwrite {
  struct ioreq wio, fio;
  int wres, fres, left;
  uint32_t dpend;      /* direct writes of the batch still in flight */
  bool flush;          /* write + fdatasync (journal_dsync off, or a plain
                        * direct write in the batch); else one RWF_DSYNC write */
  bool linked, wdone, fsync_sent;
  struct jtx *first;
  uint32_t count;
  uint64_t bytes;        /* batch bytes on the device */
  struct recbuf *hrb;    /* the batch header area (owned; put at jw_done) */
  struct iovec *iov;
  uint32_t iov_cap;
};

struct ckwrite {
  struct ioreq io;
  uint64_t lba;
  uint32_t n;
  uint32_t first;     /* index in st->ck_ents */
  struct iovec iov[64];
};

struct txn_op;

/* Reusable scratch of one transaction's preparation (store.c). */
struct prep_block {
  uint64_t lba;
  const uint8_t *data;   /* 4 KiB: txn arena or prep scratch */
  uint32_t crc;
  bool direct;
};
struct ovl_undo {
  struct ovl *newe, *olde;   /* olde NULL: key was not in the overlay */
};
enum ref_undo_type { RU_ALLOC, RU_INC, RU_DEC };
struct ref_undo {
  uint64_t blk;
  enum ref_undo_type t;
};

struct prep {
  struct ovl_undo *ou; size_t nou, cou;
  struct ref_undo *ru; size_t nru, cru;
  struct prep_block *pb; size_t npb, cpb;
  uint64_t *frees; size_t nfree, cfree;
  uint64_t *delr; size_t ndelr, cdelr;      /* omap ids to drop */
  uint64_t *objs; size_t nobj, cobj;        /* object key hashes */
  uint8_t **areas; size_t nareas, careas;    /* RMW block contents */
  uint32_t *dcrc; size_t cdcrc;             /* px_commit: journaled blocks' crcs */
  size_t nscr;
  size_t ops_bytes;
  uint32_t omap_ids;
};

struct release {
  uint64_t blk, seq;
};

/* A point write of a deferred metadata batch and its position in it. */
struct apply_kv {
  struct jop op;
  size_t idx;
};

struct store {
  int fd;
  char *dev_path;
  struct superblock sb;
  struct event_base *base;
  const config *cfg;
  uint64_t nonce;
  bool failed;        /* an I/O error made the store read-only */

  rocksdb_t *db;
  rocksdb_options_t *dbopt;
  rocksdb_writeoptions_t *wo, *wo_sync;
  rocksdb_readoptions_t *ro;

  struct io_uring ring;
  unsigned submit_hold;   /* >0: st_submit only notes the need */
  bool submit_pending;
  int efd;
  struct event *ev_ring, *ev_defer, *ev_timer;
  struct event *ev_apply;  /* one-shot: apply the deferred metadata */

  struct alloc *alloc;
  struct hmap ovl, pend, objw;
  size_t ovl_clean;       /* overlay entries with seq 0 (clean cache) */
  struct ovl *ovl_pool[OVL_POOL_CLASSES];   /* free lists (via hn.next) */
  uint32_t ovl_pool_n[OVL_POOL_CLASSES];

  /* sequence numbers */
  uint64_t next_seq;      /* next to assign */
  uint64_t acked_seq;     /* durable, callbacks run */
  uint64_t meta_seq;      /* metadata written to RocksDB (<= acked_seq) */
  /* durable records whose metadata is not yet in RocksDB (seq order;
   * owned here, freed by st_apply); applied together in one batch */
  struct jtx *retire_head, *retire_tail;
  uint32_t apply_n;       /* records on that list */
  bool apply_armed;       /* ev_apply is pending */
  rocksdb_writebatch_t *apply_b;   /* reused batch (cleared after use) */
  struct ovl **apply_clean; size_t apply_nclean, apply_cclean;
  struct apply_kv *apply_kv; size_t apply_nkv, apply_ckv;   /* point writes */
  uint32_t last_crc;      /* crc of record next_seq-1 */

  /* journal (logical byte positions; physical = pos % journal_size) */
  uint64_t jhead, jtail;
  struct jdesc *jd; size_t jd_head, jd_n, jd_cap;
  uint64_t ckpt_seq;      /* records <= this are trimmed */
  struct jtx *q_head, *q_tail;   /* submission (= callback) order */
  uint32_t q_len;                /* transactions in q_head..q_tail */
  uint32_t jw_last_count;        /* records in the last journal write */
  struct jtx *blocked_head, *blocked_tail;  /* waiting for space */
  unsigned blocked_dry;   /* checkpoints in a row that released nothing
                             while a transaction waited for space */
  struct jwrite jw;
  bool jw_busy;
  struct prep prep;

  /* deferred release of freed blocks */
  struct release *rel; size_t nrel, crel;

  /* checkpoint */
  bool ck_busy, ck_again;
  uint64_t ck_bound;
  struct pend **ck_ents; size_t ck_n, ck_cap;
  struct ckwrite *ckw; size_t ckw_n, ckw_next, ckw_left, ckw_cap;
  struct ioreq ck_fsync;
  int ck_err;
  uint64_t ck_count;
  struct jdesc ck_last;
  uint64_t last_rec_pos;   /* newest record written (test hook) */
  uint32_t last_rec_len;
  bool debug_tear;

  /* checkpoint sync thread; sync_lock protects sync_job/stop/result */
  pthread_t sync_tid;
  bool sync_started;
  pthread_mutex_t sync_lock;
  pthread_cond_t sync_cond;
  bool sync_job, sync_stop;
  int sync_kind;          /* SYNC_FLUSH_WAL or SYNC_PUT_CKPT */
  uint64_t ck_S;          /* records <= ck_S are being checkpointed */
  int sync_result;
  uint8_t sync_val[20];
  int sync_efd;
  struct event *ev_sync;
  /* statistics (logged at close) */
  uint64_t jw_bytes;      /* journal bytes written (batches) */
  uint64_t small_direct;  /* transactions whose small writes went direct */
  uint64_t jw_count, jw_records, jw_ns, jw_start_ns, ck_ns, ck_start_ns, ck_blocks;
  uint64_t jw_done_ns, prep_ns, prep_count, apply_ns, apply_count, apply_recs,
           apply_ops, apply_skipped;

  /* reads */
  struct rreq *waiting;     /* waiting for io and/or acks */
  struct rreq *ready_head, *ready_tail;
  struct rreq *reading;     /* with device reads in flight (fl_next) */

  /* buffer pool */
  struct recbuf *pool[16];
  uint32_t pool_n[16];
  uint64_t pool_bytes;    /* bytes of the buffers in pool[0..5] */
  uint64_t rb_gets, rb_allocs;   /* rb_get calls, of them new buffers */

  /* config */
  uint64_t deferred_max;
  uint32_t direct_min_queue; /* small writes go direct from this queue depth
                              * on (0: never; osd_store_direct_min_queue) */
  bool jdsync;            /* journal + direct writes with RWF_DSYNC */
  uint32_t nearfull_pct, ckpt_pct;
  int64_t apply_delay_us; /* deferred metadata apply: delay and batch */
  uint32_t apply_max;
  int64_t ckpt_interval_ms;
};

/* store.c */
struct recbuf *rb_get(struct store *st, size_t size);
void rb_put(struct store *st, struct recbuf *rb);
struct io_uring_sqe *st_sqe(struct store *st);
void st_submit(struct store *st);
void st_hold_submit(struct store *st);
void st_release_submit(struct store *st);
struct ovl *ovl_find(struct store *st, const uint8_t *key, size_t klen);
struct pend *pend_find(struct store *st, uint64_t lba);
/* Current value of key: overlay, then RocksDB.  1 with *val malloc'd
 * (or borrowed from the overlay when *borrowed), 0 if absent, -errno. */
int meta_get(struct store *st, const uint8_t *key, size_t klen, uint8_t **val,
             size_t *vlen, bool *borrowed);
int st_load_onode(struct store *st, const struct store_oid *oid,
                  struct onode *o);
/* st_load_onode without the attributes (onode_decode_hdr): 1, 0, -errno. */
int st_load_onode_hdr(struct store *st, const struct store_oid *oid,
                      struct onode *o, uint32_t *n_attrs);
/* st_load_onode with only the attribute called name: 1, 0, -errno. */
int st_load_onode_attr(struct store *st, const struct store_oid *oid,
                       struct onode *o, const char *name);
int st_load_chunk(struct store *st, const struct store_oid *oid, uint32_t ci,
                  struct chunk_map *cm);
uint64_t st_objw_seq(struct store *st, const uint8_t *okey, size_t klen);
void st_complete_head(struct store *st);
void st_ckpt_start(struct store *st);
bool st_read_overlaps(struct store *st, uint64_t lba);
void st_on_ring(int fd, short what, void *arg);
void st_on_defer(int fd, short what, void *arg);
void st_on_timer(int fd, short what, void *arg);
/* Timer of the deferred metadata apply (st_apply). */
void st_on_apply(int fd, short what, void *arg);
/* Free the durable records on the retire list (after their metadata was
 * applied, or at close of a failed store). */
void st_retire_free(struct store *st);
/* Write the metadata of every durable record on the retire list to
 * RocksDB in one batch (with "Sapplied"), then retire their overlay
 * entries and free them.  Loop thread; no-op when the list is empty. */
void st_apply(struct store *st);
void st_on_sync(int fd, short what, void *arg);
void *st_sync_thread(void *arg);
int st_drain(struct store *st);
void st_free_runtime(struct store *st);
void st_rreq_ready(struct store *st, struct rreq *r);
void st_wake_waiters(struct store *st);
void st_read_done_io(struct store *st, struct rreq *r);
int st_db_put_sync(struct store *st, const char *key, size_t klen,
                   const void *val, size_t vlen);
void st_batch_record(rocksdb_writebatch_t *b, const uint8_t *rec,
                     const struct jrec_hdr *h);
void st_ckpt_encode(uint8_t *buf, uint64_t seq, uint64_t pos, uint32_t crc);
int st_oid_check(const struct store_oid *oid);
char *st_oid_str(const struct store_oid *oid);

#define OVL_CLEAN_MAX 16384
#define SYS_APPLIED "Sapplied"
#define SYS_CKPT "Sckpt"
#define SYS_UUID "Suuid"
#define CKPT_LEN 20
#define SYNC_FLUSH_WAL 1
#define SYNC_PUT_CKPT 2

#endif
