/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: libblk's private header (the struct bodies behind the
 * opaque handles of blk/libblk.h), sectioned by file:
 *   libblk.c         cluster handle, library thread, task queue, errors
 *   libblk_object.c  object ops (sync and aio) on an I/O context
 *   image.c          image metadata: directory, header, create/open/resize
 *   image_io.c       striping of image I/O over data objects, aio, flush
 *   image_lock.c     the exclusive lock of a read-write open
 * Threading: one library thread runs the event loop (monc + objecter);
 * everything touching the objecter or an image's in-flight state runs
 * there.  API calls from other threads enqueue a task (mutex-protected
 * list + eventfd) and, for synchronous calls, wait on a lb_sync.  Calls
 * made on the library thread itself (from a callback, or from a function
 * run by blk_cluster_call) take the direct path: the task goes on a
 * loop-local list whose libevent event is activated in place, so it runs
 * later in the same loop pass, with no lock held and no eventfd wakeup.
 * Synchronous calls made from the library thread fail with -EDEADLK.
 */
#ifndef BLK_CLIENT_LIBBLK_INT_H
#define BLK_CLIENT_LIBBLK_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "blk/libblk.h"
#include "proto/image.pb-c.h"
#include "client/monc.h"
#include "client/objecter.h"
#include "common/config.h"

#define LB_API __attribute__((visibility("default")))
#define LB_MSG 256

/* ---- libblk.c ---------------------------------------------------------- */

/* A unit of work for the library thread; fn owns t from then on. */
struct lb_task {
  struct lb_task *next;
  void (*fn)(struct lb_task *t);
};

/* A synchronous call's completion: the library thread sets r (and msg),
 * the caller waits in lb_sync_wait. */
struct lb_sync {
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
  int64_t r;
  char msg[LB_MSG];
};

struct lb_override {
  char *opt, *val;
};

struct blk_cluster {
  /* locks: q_lock, reg_lock (both leaves, never nested) */
  pthread_mutex_t q_lock;        /* guards q_head/q_tail/stopping */
  pthread_mutex_t reg_lock;      /* guards ioctxs/images (open handles) */
  struct blk_ioctx *ioctxs;
  struct blk_image *images;
  struct lb_task *q_head, *q_tail;
  bool stopping;
  int efd;                       /* eventfd waking the loop */
  pthread_t thread;
  bool thread_started;
  /* set before connect (caller's thread), read-only after */
  config *cfg;
  char entity[80];               /* "client.admin" */
  char **conf_paths;             /* files read, replayed when name changes */
  size_t n_conf_paths;
  struct lb_override *ovr;       /* conf_set values, replayed likewise */
  size_t n_ovr;
  /* library thread only after connect */
  struct event_base *base;
  struct event *wake_ev;
  struct lb_task *l_head, *l_tail; /* tasks submitted on the library thread */
  struct event *local_ev;        /* activated (no fd) to run them */
  monc *mc;
  objecter *obj;
  bool connected;
  /* capability flags learned from the OSDs (-EOPNOTSUPP), library thread */
  bool no_zero, no_truncate, no_mapext;
  char nonce[20];                /* the objecter's nonce: lock holder id, blocklist key */
};

struct blk_ioctx {
  blk_cluster *c;
  char pool[64];
  struct blk_ioctx *prev, *next; /* c->ioctxs, under c->reg_lock */
};

/* Register / unregister an open image with its cluster (for shutdown). */
void lb_image_register(blk_image *img);
void lb_image_unregister(blk_image *img);

/* Set the calling thread's last error message (printf style); returns err
 * so that callers can write `return lb_err(-EINVAL, "...")`. */
int lb_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set the last error message verbatim. */
void lb_set_msg(const char *msg);
/* Clear the last error (at the start of each API call). */
void lb_clear_err(void);
/* True on a library thread (of any cluster). */
bool lb_on_loop(void);
/* Queue t for the library thread: through the task queue and eventfd from
 * other threads; on c's library thread itself on the loop-local list (t
 * runs later in the same loop pass, never inside this call).  0,
 * -ENOTCONN or -ESHUTDOWN (t not queued). */
int lb_submit(blk_cluster *c, struct lb_task *t);
void lb_sync_init(struct lb_sync *s);
void lb_sync_destroy(struct lb_sync *s);
/* Library thread: complete s with r and an optional message (NULL). */
void lb_sync_done(struct lb_sync *s, int64_t r, const char *msg);
/* Caller: wait for s; copies its message to the last error; returns r. */
int64_t lb_sync_wait(struct lb_sync *s);
/* Start an objecter op on the library thread (call there). */
int lb_objecter_op(blk_ioctx *io, const struct objecter_req *req, objecter_cb cb, void *arg);

/* ---- libblk_object.c ---------------------------------------------------- */

/* Synchronous objecter op from a caller thread: runs req (strings and data
 * borrowed for the call), copies read data into rbuf (at most rlen) and
 * returns the reply's data length (reads), 0, or -errno with the message
 * as last error.  *size / *ver get the reply's size and object version
 * when not NULL. */
int64_t lb_obj_sync(blk_ioctx *io, const struct objecter_req *req, void *rbuf, size_t rlen,
                    uint64_t *size, uint64_t ver[2]);

/* ---- image.c ------------------------------------------------------------ */

struct img_req;

/* A snapshot context: seq and the existing snap ids (descending; owned). */
struct img_snapc {
  uint64_t seq;
  uint64_t *snaps;
  size_t n;
};

struct blk_image {
  blk_ioctx *io;
  struct blk_image *prev, *next; /* c->images, under c->reg_lock */
  char name[256];
  char id[32];
  uint32_t order;
  uint64_t size;                 /* atomic (resize from a caller thread) */
  bool rdonly;
  /* library thread only */
  uint64_t inflight;             /* user requests not yet completed */
  uint64_t wseq;                 /* sequence of modifying requests */
  struct img_req *w_head, *w_tail; /* modifying requests in flight, in seq order */
  struct img_req *flushes;       /* flushes waiting for earlier writes */
  int write_err;                 /* first write error since the last flush */
  struct lb_sync *drain;         /* close: signalled when inflight == 0 */
  void *zeroes;                  /* 1 << order zero bytes, lazily */
  uint64_t started;              /* requests started (lock idleness) */
  /* image_lock.c state (NULL: read-only open) */
  struct img_lock *lock;
  /* image.c: the header watch of a handle that does not hold the lock */
  struct img_watch *watch;
  /* snapshots (image_snap.c): the snap context of writes (library thread
   * after open) and the snapshot a read-only open reads (0 = head) */
  struct img_snapc snapc;
  uint64_t snap_id;
  /* clones (image_io.c): reads of missing objects below parent_overlap
   * fall through to the parent's snapshot; writes copy up first */
  char parent_id[32];            /* "" = no parent */
  uint64_t parent_snap;
  uint64_t parent_overlap;       /* atomic (flatten clears it) */
  /* the ancestry: anc[0] = the parent snapshot, anc[1] its parent's... */
  struct img_parent {
    char id[32];
    uint64_t snap, overlap;
  } anc[16];
  size_t n_anc;
};

/* Object names. */
void image_header_name(const char *id, char *out, size_t n);
void image_data_name(const char *id, uint64_t objno, char *out, size_t n);


/* Caller thread: read image id's header with its object version (ver may
 * be NULL).  0 or -errno (message set); *out freed by the caller with
 * blk__image_header__free_unpacked. */
int image_header_read(blk_ioctx *io, const char *id, Blk__ImageHeader **out,
                      uint64_t ver[2]);
/* Caller thread: write the header, only if its object is still at version
 * ver (NULL: unconditionally).  0, -ECANCELED (changed meanwhile), -errno. */
int image_header_write(blk_ioctx *io, const Blk__ImageHeader *h, const uint64_t ver[2]);

/* Caller thread: a new random image id (16 hex digits).  0 or -EIO. */
int image_new_id(char id[32]);
/* Caller thread: the name of image id in io's pool.  0, -ENOENT, -errno. */
int image_dir_name_of(blk_ioctx *io, const char *id, char *out, size_t n);
/* Caller thread: create image `name` with header h (h->id fresh): header
 * first, then the directory entry.  0, -EEXIST, -errno. */
int image_create_hdr(blk_ioctx *io, const char *name, const Blk__ImageHeader *h);

/* ---- image_snap.c ------------------------------------------------------- */

/* Caller thread (open): img's parent is p (NULL: none); load the chain of
 * ancestors from their headers.  0 or -errno. */
int image_load_ancestry(blk_image *img, const Blk__ImageHeader__Parent *p);

/* Caller thread: drop clone child_id from parent_id's children list.
 * 0 (also when not listed or the parent is gone) or -errno. */
int image_parent_detach(blk_ioctx *io, const char *parent_id, const char *child_id);

/* Caller thread: copy up object objno of a clone from its parent's
 * snapshot (nothing if the child object exists or the parent's is
 * missing).  0 or -errno. */
int image_copyup_sync(blk_image *img, uint64_t objno, uint8_t *buf);

/* The snap context a header describes (*sc owned: image_snapc_free). */
int image_snapc_from_header(const Blk__ImageHeader *h, struct img_snapc *sc);
void image_snapc_free(struct img_snapc *sc);
/* Library thread: the lock holder's periodic refresh of img's snap
 * context from the header; done(arg) runs at the end. */
void image_snap_refresh(blk_image *img, void (*done)(void *arg), void *arg);

/* ---- image_io.c --------------------------------------------------------- */

/* Library thread: wait until no request of img is in flight, then
 * complete s (0). */
void image_io_drain(blk_image *img, struct lb_sync *s);
/* Caller thread: remove (or cut) the data objects of image id beyond byte
 * `from` (object size 1 << order, image spanning `size` bytes before).
 * 0 or -errno. */
int image_io_trim(blk_ioctx *io, const char *id, uint32_t order, uint64_t from, uint64_t size,
                  const struct img_snapc *sc);
/* Caller thread: OP_SNAPTRIM every data object of image id spanning size
 * bytes with the snap ids still existing (sc), 32 in flight.  0 or -errno. */
int image_io_snaptrim(blk_ioctx *io, const char *id, uint32_t order, uint64_t size,
                      const struct img_snapc *sc);

/* ---- image_lock.c ------------------------------------------------------- */

/* Caller thread: take the exclusive lock of img for a read-write open
 * (flags from blk_image_open).  0, -EBUSY, or -errno. */
int image_lock_acquire(blk_image *img, int flags);
/* Caller thread: release it (no-op if not held). */
void image_lock_release(blk_image *img);
/* Caller thread: is image id locked by a live writer?  0 (no), -EBUSY
 * (yes), or -errno. */
int image_lock_check_free(blk_ioctx *io, const char *id);
/* Any thread: does img hold its exclusive lock right now? */
bool image_lock_held(blk_image *img);
/* Any thread: may img be modified now?  0, or -EBUSY (the lock was handed
 * over or lost; message set). */
int image_lock_check_write(blk_image *img);
/* Library thread: the image's monitor-backed helpers. */
/* Caller thread: blocklist nonce through the monitors and wait until this
 * client's map shows it.  0 or -errno. */
int lb_blocklist(blk_cluster *c, const char *nonce, uint32_t expire_s);

#endif
