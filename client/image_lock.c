/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the exclusive lock of a read-write open (docs/images.md
 * "Exclusive lock").  The lock is the OSD object lock "exclusive" on the
 * image's header object (OP_LOCK/UNLOCK/LOCK_INFO/LOCK_BREAK; the OSD
 * keeps the record in an xattr: holder = the client's nonce, a cookie, a
 * lease expiry).  The holder's cookie is random per open, so two opens by
 * one process are two holders.
 *  - Acquire (caller thread): LOCK_INFO; a lock held by another client
 *    whose lease has run out belongs to a dead or cut-off holder: fence it
 *    first (blocklist its nonce through the monitors and wait for the map
 *    that says so, so that OSDs refuse its late writes), then LOCK.  A
 *    lock held with a live lease: with BLK_IMAGE_EXCLUSIVE fail -EBUSY at
 *    once; else ask the holder to hand it over (xattr "lock_request" on
 *    the header = our nonce) and retry every 200 ms until
 *    image_lock_timeout, then -EBUSY.
 *  - Hold (library thread): a timer renews the lease every quarter of
 *    image_lock_lease (OP_LOCK again with the same cookie) and reads
 *    "lock_request".  A holder that sees a request and has been idle
 *    since the previous tick (no request in flight, none started)
 *    releases the lock (cooperative handoff, e.g. live migration); from
 *    then on its writes fail with -EBUSY (reads still work).  A renewal
 *    refused by the OSDs (-EBUSY: someone broke the lock; blocklisted)
 *    marks the lock lost: writes fail with -EBUSY too.
 *  - Release (close): stop the timer, UNLOCK.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/endian.h"
#include "common/log.h"
#include "common/util.h"

#define LOCK_NAME "exclusive"
#define REQUEST_KEY "lock_request"
#define BLOCKLIST_EXPIRE_S 3600

enum lock_state { LOCK_HELD = 0, LOCK_RELEASED = 1, LOCK_LOST = 2 };

struct img_lock {
  blk_image *img;
  char cookie[20];
  char hname[64];
  int64_t lease_ms;
  int state;                     /* enum lock_state, atomic */
  /* library thread only */
  struct event *timer;
  bool busy;                     /* a renewal round is in flight */
  bool stopping;
  uint64_t seen_started;         /* img->started at the previous tick */
  struct lb_sync *stopped;       /* release: signalled when the round ends */
};

/* A decoded lock record (format: docs/osd.md "Lock record"). */
struct holder {
  bool held;
  char nonce[64];
  char cookie[64];
  int64_t expire_ms;
};

static int parse_record(const uint8_t *b, size_t len, struct holder *h)
{
  memset(h, 0, sizeof *h);
  if (len == 0)
    return 0;
  if (len < 12 || b[0] != 1)
    return -EUCLEAN;
  size_t n = b[1], c = get_le16(b + 2);
  if (n == 0 || n >= sizeof h->nonce || 12 + n + c != len)
    return -EUCLEAN;
  h->held = true;
  h->expire_ms = (int64_t)get_le64(b + 4);
  memcpy(h->nonce, b + 12, n);
  snprintf(h->cookie, sizeof h->cookie, "%.*s", (int)(c < sizeof h->cookie ? c : sizeof h->cookie - 1),
           (const char *)b + 12 + n);
  return 0;
}

static int lock_info(blk_ioctx *io, const char *hname, struct holder *h)
{
  uint8_t rec[2048];
  struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_LOCK_INFO,
                              .key = LOCK_NAME };
  int64_t n = lb_obj_sync(io, &req, rec, sizeof rec, NULL, NULL);
  if (n == -ENOENT || n == -ENODATA) {
    memset(h, 0, sizeof *h);
    lb_clear_err();
    return 0;
  }
  if (n < 0)
    return (int)n;
  if (parse_record(rec, (size_t)n, h) < 0)
    return lb_err(-EUCLEAN, "the lock record of %s is corrupt", hname);
  return 0;
}

int image_lock_check_free(blk_ioctx *io, const char *id)
{
  char hname[64];
  struct holder h;
  image_header_name(id, hname, sizeof hname);
  int r = lock_info(io, hname, &h);
  if (r < 0)
    return r;
  if (h.held && h.expire_ms > util_wall_ms())
    return lb_err(-EBUSY, "the image is open by client %s", h.nonce);
  return 0;
}

bool image_lock_held(blk_image *img)
{
  return img->lock && __atomic_load_n(&img->lock->state, __ATOMIC_ACQUIRE) == LOCK_HELD;
}

int image_lock_check_write(blk_image *img)
{
  if (!img->lock)
    return 0;
  int st = __atomic_load_n(&img->lock->state, __ATOMIC_ACQUIRE);
  if (st == LOCK_RELEASED)
    return lb_err(-EBUSY, "image '%s': the exclusive lock was handed over to another client; "
                  "reopen the image to write", img->name);
  if (st == LOCK_LOST)
    return lb_err(-EBUSY, "image '%s': the exclusive lock was lost (lease not renewed in time "
                  "or broken); reopen the image to write", img->name);
  return 0;
}

/* ---- renewal (library thread) ---- */

static void tick_arm(struct img_lock *l);

static void round_end(struct img_lock *l)
{
  l->busy = false;
  if (l->stopping) {
    if (l->stopped) {
      struct lb_sync *s = l->stopped;
      l->stopped = NULL;
      lb_sync_done(s, 0, NULL);
    }
    return;
  }
  if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == LOCK_HELD)
    tick_arm(l);
}

static void unlock_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                      uint32_t len)
{
  struct img_lock *l = arg;
  if (err < 0)
    log_warn("libblk", "image '%s': handing over the lock: unlock failed: %s", l->img->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  else
    log_info("libblk", "image '%s': lock handed over on request", l->img->name);
  round_end(l);
}

static void request_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                       uint32_t len)
{
  struct img_lock *l = arg;
  blk_image *img = l->img;
  bool idle = img->inflight == 0 && img->started == l->seen_started;
  l->seen_started = img->started;
  if (err == 0 && len > 0 && idle && !l->stopping) {
    /* a waiter asks for the lock and we have nothing going on: hand over */
    __atomic_store_n(&l->state, LOCK_RELEASED, __ATOMIC_RELEASE);
    struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_UNLOCK,
                                .key = LOCK_NAME, .data = l->cookie,
                                .data_len = (uint32_t)strlen(l->cookie),
                                .length = strlen(l->cookie) };
    if (lb_objecter_op(img->io, &req, unlock_cb, l) == 0)
      return;
  }
  round_end(l);
}

static void refreshed(void *arg)
{
  struct img_lock *l = arg;
  struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_GETXATTR,
                              .key = REQUEST_KEY };
  if (lb_objecter_op(l->img->io, &req, request_cb, l) < 0)
    round_end(l);
}

static void renew_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                     uint32_t len)
{
  struct img_lock *l = arg;
  if (err < 0) {
    if (err == -EBUSY || err == -ESHUTDOWN || err == -EACCES || err == -EPERM) {
      __atomic_store_n(&l->state, LOCK_LOST, __ATOMIC_RELEASE);
      log_err("libblk", "image '%s': exclusive lock lost: %s", l->img->name,
              rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
    } else {
      log_warn("libblk", "image '%s': lock renewal failed: %s", l->img->name,
               rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
    }
    round_end(l);
    return;
  }
  /* pick up snapshots created through other handles (image_snap.c) */
  image_snap_refresh(l->img, refreshed, l);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
  struct img_lock *l = arg;
  (void)fd;
  (void)what;
  if (l->stopping || l->busy)
    return;
  l->busy = true;
  struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_LOCK, .key = LOCK_NAME,
                              .data = l->cookie, .data_len = (uint32_t)strlen(l->cookie),
                              .length = strlen(l->cookie), .offset = (uint64_t)l->lease_ms };
  if (lb_objecter_op(l->img->io, &req, renew_cb, l) < 0)
    round_end(l);
}

static void tick_arm(struct img_lock *l)
{
  int64_t ms = l->lease_ms / 4;
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  evtimer_add(l->timer, &tv);
}

struct lock_task {
  struct lb_task t;
  struct img_lock *l;
  struct lb_sync s;
};

static void start_task(struct lb_task *t)
{
  struct lock_task *lt = (struct lock_task *)t;
  struct img_lock *l = lt->l;
  l->timer = evtimer_new(l->img->io->c->base, tick_cb, l);
  l->seen_started = l->img->started;
  if (!l->timer) {
    lb_sync_done(&lt->s, -ENOMEM, "out of memory");
    return;
  }
  tick_arm(l);
  lb_sync_done(&lt->s, 0, NULL);
}

static void stop_task(struct lb_task *t)
{
  struct lock_task *lt = (struct lock_task *)t;
  struct img_lock *l = lt->l;
  l->stopping = true;
  if (l->timer) {
    event_free(l->timer);
    l->timer = NULL;
  }
  if (l->busy)
    l->stopped = &lt->s;   /* signalled when the round in flight ends */
  else
    lb_sync_done(&lt->s, 0, NULL);
}

static int run_task(blk_cluster *c, struct img_lock *l, void (*fn)(struct lb_task *))
{
  struct lock_task lt = { .t.fn = fn, .l = l };
  lb_sync_init(&lt.s);
  int r = lb_submit(c, &lt.t);
  if (r == 0)
    r = (int)lb_sync_wait(&lt.s);
  lb_sync_destroy(&lt.s);
  return r;
}

/* ---- acquire / release (caller thread) ---- */

static int lock_op(blk_image *img, struct img_lock *l, Blk__OsdOpType op)
{
  struct objecter_req req = { .name = l->hname, .op = op, .key = LOCK_NAME, .data = l->cookie,
                              .data_len = (uint32_t)strlen(l->cookie),
                              .length = strlen(l->cookie), .offset = (uint64_t)l->lease_ms };
  return (int)lb_obj_sync(img->io, &req, NULL, 0, NULL, NULL);
}

int image_lock_acquire(blk_image *img, int flags)
{
  blk_cluster *c = img->io->c;
  struct img_lock *l = calloc(1, sizeof *l);
  if (!l)
    return lb_err(-ENOMEM, "out of memory");
  l->img = img;
  image_header_name(img->id, l->hname, sizeof l->hname);
  unsigned char rb[8];
  RAND_bytes(rb, sizeof rb);
  for (int i = 0; i < 8; i++)
    snprintf(l->cookie + 2 * i, 3, "%02x", rb[i]);
  l->lease_ms = config_get_int(c->cfg, "image_lock_lease");
  if (l->lease_ms < 400)
    l->lease_ms = 400;
  int64_t deadline = util_now_ms() + config_get_int(c->cfg, "image_lock_timeout");
  bool requested = false;
  int r;
  for (;;) {
    struct holder h;
    if ((r = lock_info(img->io, l->hname, &h)) < 0)
      goto out_free;
    if (h.held && strcmp(h.nonce, c->nonce) && h.expire_ms <= util_wall_ms()) {
      /* the holder stopped renewing: fence it before taking over */
      log_warn("libblk", "image '%s': lock holder %s let its lease expire; blocklisting it",
               img->name, h.nonce);
      if ((r = lb_blocklist(c, h.nonce, BLOCKLIST_EXPIRE_S)) < 0)
        goto out_free;
    }
    r = lock_op(img, l, BLK__OSD_OP_TYPE__OP_LOCK);
    if (r == 0)
      break;
    if (r != -EBUSY)
      goto out_free;
    if (flags & BLK_IMAGE_EXCLUSIVE) {
      r = lb_err(-EBUSY, "image '%s' is in use: its exclusive lock is held by client %s",
                 img->name, h.held ? h.nonce : "(another)");
      goto out_free;
    }
    if (!requested) {
      struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_SETXATTR,
                                  .key = REQUEST_KEY, .data = c->nonce,
                                  .data_len = (uint32_t)strlen(c->nonce),
                                  .length = strlen(c->nonce) };
      if (lb_obj_sync(img->io, &req, NULL, 0, NULL, NULL) == 0)
        requested = true;
    }
    if (util_now_ms() >= deadline) {
      r = lb_err(-EBUSY, "image '%s' is in use: client %s did not release its exclusive lock "
                 "within image_lock_timeout", img->name, h.held ? h.nonce : "(another)");
      goto out_free;
    }
    usleep(200 * 1000);
  }
  if (requested) {
    struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_RMXATTR,
                                .key = REQUEST_KEY };
    lb_obj_sync(img->io, &req, NULL, 0, NULL, NULL);
    lb_clear_err();
  }
  img->lock = l;
  if ((r = run_task(c, l, start_task)) < 0) {
    img->lock = NULL;
    lock_op(img, l, BLK__OSD_OP_TYPE__OP_UNLOCK);
    goto out_free;
  }
  return 0;
out_free:
  if (requested) {
    char keep[LB_MSG];
    snprintf(keep, sizeof keep, "%s", blk_last_error());
    struct objecter_req req = { .name = l->hname, .op = BLK__OSD_OP_TYPE__OP_RMXATTR,
                                .key = REQUEST_KEY };
    lb_obj_sync(img->io, &req, NULL, 0, NULL, NULL);
    lb_set_msg(keep);
  }
  free(l);
  return r;
}

void image_lock_release(blk_image *img)
{
  struct img_lock *l = img->lock;
  if (!l)
    return;
  char keep[LB_MSG];
  snprintf(keep, sizeof keep, "%s", blk_last_error());
  run_task(img->io->c, l, stop_task);
  if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == LOCK_HELD) {
    int r = lock_op(img, l, BLK__OSD_OP_TYPE__OP_UNLOCK);
    if (r < 0)
      log_warn("libblk", "image '%s': unlock failed: %s", img->name, blk_last_error());
  }
  lb_set_msg(keep);
  img->lock = NULL;
  free(l);
}
