/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libblk — the blkstore client library (DESIGN.md §4, §7; docs/libblk.md).
 *
 * Design notes: a blk_cluster owns one connection set to the monitors and
 * OSDs and one library thread running an event loop.  Placement is computed
 * locally from the subscribed cluster map; ops are retried on a map change
 * or a primary failover without surfacing transient errors (up to the
 * option client_op_timeout).  Every API function may be called from any
 * thread: it enqueues work to the library thread (on the library thread
 * itself, without a wakeup: see blk_cluster_call).  Synchronous calls wait
 * for the completion; asynchronous (aio) calls return at once and report
 * through a callback.
 *
 * Conventions for the whole API:
 *  - Functions returning int or int64_t return >= 0 on success and a
 *    negative errno on failure; blk_last_error() then describes it.
 *  - Callbacks run on the library thread.  They may start further aio
 *    calls, but must not block and must not call a synchronous function
 *    (that would deadlock: -EDEADLK is returned if they do).  Each
 *    callback runs exactly once when the aio call returned 0, never when
 *    it returned an error, and never from inside the aio call itself.
 *  - Buffers passed to aio calls are borrowed until the callback runs.
 *  - Strings passed in are borrowed for the duration of the call only.
 *  - Writes are acknowledged only once durable on every replica of the
 *    object's PG, so a flush only waits for earlier writes to complete.
 *
 * Errors common to most calls: -EINVAL (bad argument, I/O past the end of
 * an image), -ENOENT (no such pool/object/image), -ENOMEM, -ETIMEDOUT (the
 * cluster did not answer within client_op_timeout), -ESHUTDOWN (the
 * cluster handle is shutting down, or the OSDs refuse this client because
 * it was fenced: "client ... is blocklisted"), -EACCES (this client lacks
 * the capability).
 */
#ifndef BLK_LIBBLK_H
#define BLK_LIBBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BLK_LIBBLK_VERSION_MAJOR 1
#define BLK_LIBBLK_VERSION_MINOR 1

typedef struct blk_cluster blk_cluster;  /* a connection to one cluster */
typedef struct blk_ioctx blk_ioctx;      /* a pool on a cluster */
typedef struct blk_image blk_image;      /* an open image */

/* ---- cluster ---------------------------------------------------------- */

/* Create an unconnected cluster handle with default options, then load the
 * config file named by the environment variable BLK_CONF if it is set (an
 * unreadable file named there is an error).  On success *out is owned by
 * the caller; free it with blk_cluster_shutdown().  0 or -ENOMEM/-EINVAL. */
int blk_cluster_create(blk_cluster **out);

/* Load an INI config file (blk.conf; see docs/configuration.md) into c;
 * NULL means $BLK_CONF, else ./run/blk.conf, else /etc/blk/blk.conf.
 * Options already set with blk_cluster_conf_set() keep their value.
 * Must be called before blk_cluster_connect().  0, -ENOENT (no file),
 * -EINVAL (syntax error or unknown option; see blk_last_error()). */
int blk_cluster_conf_read(blk_cluster *c, const char *path);

/* Set one option before connecting.  Accepts every option of
 * docs/configuration.md (e.g. "mon_host", "keyring", "key",
 * "client_op_timeout") plus "name", the entity this client authenticates
 * as ("client.admin" by default; also selects the [client.ID] config
 * section).  Credentials reach the cluster only through these options.
 * 0, -ENOENT (unknown option), -EINVAL (bad value), -EISCONN (connected). */
int blk_cluster_conf_set(blk_cluster *c, const char *opt, const char *val);

/* Start the library thread, connect to the monitors and wait for the first
 * cluster map (at most client_timeout).  0, -EISCONN (already connected),
 * -EINVAL (no monitors configured), -ETIMEDOUT, -ENOMEM. */
int blk_cluster_connect(blk_cluster *c);

/* Cancel what is still in flight (aio callbacks run with -ECANCELED),
 * stop the library thread, free c and everything it owns.  Images and
 * I/O contexts should be closed first; any left open are freed here (an
 * image's lock is then released as at blk_image_close()).  NULL is a
 * no-op.  Must not be called from a callback. */
void blk_cluster_shutdown(blk_cluster *c);

/* ---- the library thread (applications serving their own sockets) -------
 * An application that answers requests arriving on its own sockets (e.g.
 * blk-nbd) can serve them on the library thread, so that a request, its
 * aio call and the callback never switch threads: aio calls made on the
 * library thread skip the task queue and its eventfd (they run later in the
 * same loop pass), and callbacks are always called there directly. */

struct event_base;

/* Run fn(arg) once on c's library thread, later (never inside this call,
 * even when called on that thread; calls from one thread run in order).
 * fn obeys the callback rules (no blocking, no synchronous libblk call)
 * and may use blk_cluster_event_base(c).  A call still queued when
 * blk_cluster_shutdown stops the loop runs on the thread calling the
 * shutdown, after the library thread ended.  0 (fn will run), -EINVAL
 * (NULL c or fn), -ENOTCONN, -ESHUTDOWN or -ENOMEM (fn will not run). */
int blk_cluster_call(blk_cluster *c, void (*fn)(void *arg), void *arg);

/* The libevent (2.1) base that c's library thread runs, for the caller's
 * own events and bufferevents (the caller must link the same libevent).
 * Borrowed until blk_cluster_shutdown.  Events on it may be created,
 * changed and freed only on the library thread (in a blk_cluster_call
 * function, a libblk callback or the caller's own event callbacks); their
 * callbacks obey the callback rules; all must be freed before
 * blk_cluster_shutdown.  NULL with errno ENOTCONN before connect. */
struct event_base *blk_cluster_event_base(blk_cluster *c);

/* Is the calling thread c's library thread?  (false for NULL) */
bool blk_cluster_on_loop(blk_cluster *c);

/* The message describing the last failure of a libblk call on the calling
 * thread ("" if none).  Borrowed: valid until the next libblk call on this
 * thread. */
const char *blk_last_error(void);

/* ---- pool I/O context -------------------------------------------------- */

/* Open an I/O context on pool `pool` of the connected cluster c.  On
 * success *out is owned by the caller (blk_ioctx_destroy()) and c must
 * outlive it.  0, -ENOENT (unknown pool), -ENOTCONN, -ENOMEM. */
int blk_ioctx_create(blk_cluster *c, const char *pool, blk_ioctx **out);
/* Free io (no ops may be in flight on it).  NULL is a no-op. */
void blk_ioctx_destroy(blk_ioctx *io);
/* The names of the pools in c's current cluster map, sorted.  On success
 * *names is an array of *n strings owned by the caller: free with
 * blk_pool_list_free(*names, *n).  Whether the client's key may use a
 * pool is not checked here (an op on it answers -EACCES).  0, -ENOTCONN,
 * -ENOMEM. */
int blk_pool_list(blk_cluster *c, char ***names, size_t *n);
/* Free an array returned by blk_pool_list().  NULL is a no-op. */
void blk_pool_list_free(char **names, size_t n);

/* ---- objects ----------------------------------------------------------- */

/* Completion of an aio call: result is the number of bytes read (reads),
 * 0 (other successful ops) or a negative errno. */
typedef void (*blk_callback)(void *arg, int64_t result);

/* Read up to len bytes of object `name` at off into buf.  Returns the
 * number of bytes read (short at the object's end, 0 past it) or -errno
 * (-ENOENT: no such object). */
int64_t blk_object_read(blk_ioctx *io, const char *name, uint64_t off, size_t len, void *buf);
/* Write len bytes at off, creating the object if missing.  0 or -errno. */
int blk_object_write(blk_ioctx *io, const char *name, uint64_t off, size_t len, const void *buf);
/* Replace the whole object by len bytes (creating it).  0 or -errno. */
int blk_object_write_full(blk_ioctx *io, const char *name, size_t len, const void *buf);
/* Remove the object.  0 or -errno (-ENOENT: no such object). */
int blk_object_remove(blk_ioctx *io, const char *name);
/* Size of the object into *size.  0 or -errno (-ENOENT). */
int blk_object_stat(blk_ioctx *io, const char *name, uint64_t *size);
/* Set the object's size to size (cut or extend with zeroes; created if
 * missing).  0 or -errno (-EOPNOTSUPP: the OSDs lack the op). */
int blk_object_truncate(blk_ioctx *io, const char *name, uint64_t size);
/* Copy attribute `key` of the object into buf (at most len bytes).
 * Returns the attribute's full length (which may exceed len: then only
 * len bytes were copied) or -errno (-ENODATA: no such attribute). */
int blk_object_getxattr(blk_ioctx *io, const char *name, const char *key, void *buf, size_t len);
/* Set attribute key = val[0..len) (object created if missing).  0/-errno. */
int blk_object_setxattr(blk_ioctx *io, const char *name, const char *key, const void *val, size_t len);
/* Remove attribute key.  0 or -errno (-ENODATA: no such attribute). */
int blk_object_rmxattr(blk_ioctx *io, const char *name, const char *key);
/* Copy the value of omap key into buf; same return as getxattr
 * (-ENODATA: no such key). */
int blk_object_omap_get(blk_ioctx *io, const char *name, const char *key, void *buf, size_t len);
/* Set omap key = val[0..len) (object created if missing).  0 or -errno. */
int blk_object_omap_set(blk_ioctx *io, const char *name, const char *key, const void *val, size_t len);
/* Remove omap key.  0 or -errno. */
int blk_object_omap_rm(blk_ioctx *io, const char *name, const char *key);

/* Asynchronous read/write: same semantics as the synchronous forms; cb
 * gets the byte count (read) or 0 (write) or -errno.  buf is borrowed
 * until cb runs.  Returns 0 (cb will run) or -errno (cb will not). */
int blk_object_aio_read(blk_ioctx *io, const char *name, uint64_t off, size_t len, void *buf,
                        blk_callback cb, void *arg);
int blk_object_aio_write(blk_ioctx *io, const char *name, uint64_t off, size_t len,
                         const void *buf, blk_callback cb, void *arg);

/* ---- images ------------------------------------------------------------ */
/* An image is a header object plus data objects of 2^order bytes created
 * only when written (thin provisioning); see docs/images.md. */

/* Create image `name` of size bytes (> 0) in io's pool with objects of
 * 2^order bytes (order 0 = 22, 4 MiB; else 12..26).  0, -EEXIST, -EINVAL
 * (zero size or bad order; see blk_last_error()). */
int blk_image_create(blk_ioctx *io, const char *name, uint64_t size, int order);
/* Remove the image and all its data objects.  0, -ENOENT, -EBUSY (open
 * by a writer, i.e. its exclusive lock is held). */
int blk_image_remove(blk_ioctx *io, const char *name);
/* Rename src to dst (data is not moved).  0, -ENOENT, -EEXIST, -EINVAL. */
int blk_image_rename(blk_ioctx *io, const char *src, const char *dst);
/* List the images of io's pool, sorted by name.  On success *names is an
 * array of *n strings owned by the caller: free with
 * blk_image_list_free(*names, *n).  0 or -errno. */
int blk_image_list(blk_ioctx *io, char ***names, size_t *n);
/* Free an array returned by blk_image_list().  NULL is a no-op. */
void blk_image_list_free(char **names, size_t n);

#define BLK_IMAGE_RDONLY 1     /* open read-only: no lock taken, writes fail with -EROFS */
#define BLK_IMAGE_EXCLUSIVE 2  /* fail with -EBUSY instead of waiting for / requesting the lock */

/* Open image `name`: the head (snap NULL or ""), or snapshot `snap`
 * (always read-only, whatever flags say: reads return the image as it was
 * when the snapshot was taken; -ENOENT if no such snapshot).  A read-write open takes the image's
 * exclusive lock: if another client holds it, the open asks the holder to
 * release it (the holder does when it has no I/O in flight, see
 * docs/images.md) and waits up to the option image_lock_timeout, then
 * fails with -EBUSY; with BLK_IMAGE_EXCLUSIVE it fails with -EBUSY at
 * once.  A holder that stopped renewing its lease is fenced (blocklisted)
 * and its lock broken.  A holder that hands its lock over (or loses it)
 * gets -EBUSY for every later write, discard, write-zeroes or resize;
 * reads keep working; close it and reopen to write again.  On success *out is owned by the caller (close with
 * blk_image_close()); io must outlive it.  0, -ENOENT, -EBUSY, -errno. */
int blk_image_open(blk_ioctx *io, const char *name, const char *snap, int flags,
                   blk_image **out);
/* Wait for every in-flight I/O, release the lock (read-write), free img.
 * Returns 0, or the first error of a write that failed since the last
 * flush (img is freed in every case).  Must not be called from a callback. */
int blk_image_close(blk_image *img);

struct blk_image_info {
  uint64_t size;          /* bytes */
  uint32_t order;         /* object size = 1 << order */
  uint64_t object_size;   /* bytes */
  uint64_t num_objects;   /* data objects the size spans (not how many exist) */
  char id[32];            /* the image id (NUL-terminated) naming its objects */
};
/* Fill *info from the open image.  0 or -errno. */
int blk_image_stat(blk_image *img, struct blk_image_info *info);
/* The image's current size in bytes. */
uint64_t blk_image_size(blk_image *img);
/* Grow or shrink the image (read-write open only).  Shrinking removes or
 * truncates the data beyond the new end.  0, -EROFS, -EINVAL (size 0). */
int blk_image_resize(blk_image *img, uint64_t size);

/* Read len bytes at off into buf; unwritten ranges read as zeroes.  Returns
 * len (or fewer bytes when the range reaches past the end: it is clipped
 * to the size), -EINVAL when off is at or past the end (len > 0). */
int64_t blk_image_read(blk_image *img, uint64_t off, size_t len, void *buf);
/* Write len bytes at off.  Returns len, or -EINVAL when [off, off+len)
 * reaches past the end (nothing written), -EROFS on a read-only image. */
int64_t blk_image_write(blk_image *img, uint64_t off, size_t len, const void *buf);
/* Discard [off, off+len): whole objects are removed, partial ranges
 * zeroed; the range then reads as zeroes.  0 or -errno (-EINVAL past the
 * end). */
int blk_image_discard(blk_image *img, uint64_t off, uint64_t len);

#define BLK_ZERO_NO_HOLE 1  /* write_zeroes: keep the range allocated */
/* Make [off, off+len) read as zeroes; without BLK_ZERO_NO_HOLE this may
 * deallocate (as discard), with it the zeroes are written.  0 or -errno. */
int blk_image_write_zeroes(blk_image *img, uint64_t off, uint64_t len, int flags);
/* Wait until every write acknowledged or started before this call is
 * complete (writes are durable on all replicas when acknowledged).
 * Returns 0, or the first error of a write since the previous flush. */
int blk_image_flush(blk_image *img);

/* Asynchronous forms of the above: cb gets the byte count (read/write) or
 * 0 (discard/zeroes/flush) or -errno.  buf is borrowed until cb runs.
 * Return 0 (cb will run) or -errno (cb will not: e.g. -EINVAL past the
 * end, -EROFS). */
int blk_image_aio_read(blk_image *img, uint64_t off, size_t len, void *buf, blk_callback cb,
                       void *arg);
#define BLK_WRITE_FUA 1  /* accepted; every write is durable when acknowledged */
int blk_image_aio_write(blk_image *img, uint64_t off, size_t len, const void *buf, int flags,
                        blk_callback cb, void *arg);
int blk_image_aio_discard(blk_image *img, uint64_t off, uint64_t len, blk_callback cb, void *arg);
int blk_image_aio_write_zeroes(blk_image *img, uint64_t off, uint64_t len, int flags,
                               blk_callback cb, void *arg);
/* cb runs once every write started before this call has completed. */
int blk_image_aio_flush(blk_image *img, blk_callback cb, void *arg);

#define BLK_EXTENT_HOLE 1  /* unallocated */
#define BLK_EXTENT_ZERO 2  /* reads as zeroes */
struct blk_extent {
  uint64_t offset, length;
  uint32_t flags;          /* 0 = data, or BLK_EXTENT_HOLE|BLK_EXTENT_ZERO */
};
/* Block status answer: result 0 with ext[0..n) (borrowed for the call)
 * covering [off, off+returned) contiguously from off, n >= 1; or result
 * < 0 with ext NULL and n 0. */
typedef void (*blk_extent_callback)(void *arg, int result, const struct blk_extent *ext,
                                    size_t n);
/* Which parts of [off, off+len) hold data: per data object (its existence,
 * refined by the OSDs' extent map where available).  The answer may cover
 * less than len (at least one extent), never more.  Returns 0 (cb will run)
 * or -errno (-EINVAL: off past the end or len 0). */
int blk_image_aio_block_status(blk_image *img, uint64_t off, uint64_t len,
                               blk_extent_callback cb, void *arg);

/* ---- snapshots (docs/snapshots.md) ---- */

struct blk_snap_info {
  uint64_t id;                 /* snapshot id (per image, ascending, never reused) */
  char name[256];
  uint64_t size;               /* image size at the snapshot */
  uint64_t create_time_ms;     /* wall clock at creation */
  int is_protected;            /* 1: cannot be removed */
};
/* Take snapshot `snap` (1..200 bytes, no '/' or '@') of img's head.  On a
 * read-write handle: flushes, then every write acknowledged before is in
 * the snapshot and none started after.  On another handle while some
 * client writes the image: waits (up to image_lock_lease + 2 s) until that
 * writer switched to the new snapshot context (-ETIMEDOUT if it did not:
 * the snapshot exists but may hold later writes).  0, -EEXIST, -EINVAL,
 * -EROFS (img open at a snapshot), -errno. */
int blk_image_snap_create(blk_image *img, const char *snap);
/* The snapshots, ascending id: *snaps (n entries) owned by the caller,
 * free with blk_image_snap_list_free.  0 or -errno. */
int blk_image_snap_list(blk_image *img, struct blk_snap_info **snaps, size_t *n);
void blk_image_snap_list_free(struct blk_snap_info *snaps);
/* Remove snapshot `snap` and free the space only it used (OP_SNAPTRIM on
 * every data object).  0, -ENOENT, -EBUSY (protected), -errno. */
int blk_image_snap_remove(blk_image *img, const char *snap);
/* Make img's head (open read-write) equal to snapshot `snap` (size and
 * data); the other snapshots are untouched.  progress (may be NULL) is
 * called after each object with bytes done / total.  0, -EROFS, -ENOENT. */
int blk_image_snap_rollback(blk_image *img, const char *snap,
                            void (*progress)(uint64_t done, uint64_t total, void *arg),
                            void *arg);
/* Protect / unprotect (a protected snapshot cannot be removed); rename.
 * 0, -ENOENT, -EEXIST (rename target exists), -EINVAL. */
int blk_image_snap_protect(blk_image *img, const char *snap);
int blk_image_snap_unprotect(blk_image *img, const char *snap);
int blk_image_snap_rename(blk_image *img, const char *src, const char *dst);

/* ---- clones (docs/snapshots.md) ---- */

/* Create image `child` in io's pool as a copy-on-write clone of the
 * protected snapshot `snap` of image `parent` (same pool): no data is
 * copied; reads of what the child has not written fall through to the
 * parent snapshot, a child object's first change copies up the parent's.
 * 0, -ENOENT, -EINVAL (snapshot not protected), -EEXIST, -errno. */
int blk_image_clone(blk_ioctx *io, const char *parent, const char *snap, const char *child);
/* The clones of img's snapshot `snap` (NULL: of every snapshot) as
 * "POOL/NAME" strings (free with blk_image_list_free).  0 or -errno. */
int blk_image_children(blk_image *img, const char *snap, char ***names, size_t *n);
/* Copy up every object the parent backs (img open read-write), then drop
 * the parent: the child no longer needs it.  progress may be NULL.
 * 0, -EINVAL (not a clone), -EROFS, -errno. */
int blk_image_flatten(blk_image *img,
                      void (*progress)(uint64_t done, uint64_t total, void *arg), void *arg);

#ifdef __cplusplus
}
#endif

#endif
