/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: pools and exports.  A pool's ioctx is created on first use
 * and kept until the server stops.  An export is one open blk_image per
 * export name, shared by every connection that selects it (multi-conn):
 * the first NBD_OPT_GO opens it, each connection holds a reference, the
 * last one to leave closes it (so the image's exclusive lock is released
 * when nobody uses the export).  All of this runs on blk-nbd's loop, never
 * on libblk's thread (the opens, probes, listings and closes are
 * synchronous libblk calls, which would wait for that thread): a
 * connection served there hands its reference back with itself when it is
 * freed (nbd_conn_free_remote), so the reference counts stay plain ints.
 * The one field that thread writes is `stale` (atomic).
 *
 * Multi-conn is advertised because every connection goes through the same
 * image handle and libblk acknowledges a write only when it is durable on
 * every replica of the acting set: a write acknowledged on connection A is
 * visible to a read on connection B, and FLUSH (or FUA) on any connection
 * has nothing left to make durable.
 *
 * Opening a read-write image may wait for its exclusive lock (up to
 * libblk's image_lock_timeout, blk-nbd --lock-wait).  nbd_export_get_async
 * therefore runs blk_image_open on a helper thread (libblk's API may be
 * called from any thread) while the export sits in the list with
 * opening set; connections that select it meanwhile queue on it.  The
 * thread only stores its result and writes the export's eventfd; the loop
 * joins it and answers every waiter, so export state stays loop-only.
 *
 * If another client takes the image's exclusive lock (libblk hands it
 * over when asked, e.g. for live migration), every later write on this
 * handle fails with -EBUSY.  The export is then marked stale: connections
 * already on it keep their handle (reads work, writes get EIO), and new
 * connections open the image afresh, which asks for the lock back.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "client/nbd/nbd.h"
#include "common/log.h"

#define SUB "nbd"

blk_ioctx *nbd_pool_ioctx(struct nbd_server *srv, const char *pool)
{
  for (struct nbd_pool *p = srv->pools; p; p = p->next)
    if (!strcmp(p->name, pool))
      return p->ioctx;
  struct nbd_pool *p = calloc(1, sizeof *p);
  if (!p || !(p->name = strdup(pool))) {
    free(p);
    errno = ENOMEM;
    return NULL;
  }
  int r = blk_ioctx_create(srv->cluster, pool, &p->ioctx);
  if (r < 0) {
    free(p->name);
    free(p);
    errno = -r;
    return NULL;
  }
  p->next = srv->pools;
  srv->pools = p;
  return p->ioctx;
}

bool nbd_export_allowed(const struct nbd_server *srv, const char *name)
{
  const struct nbd_config *cfg = srv->cfg;
  if (cfg->nimages == 0)
    return true;
  for (size_t i = 0; i < cfg->nimages; i++)
    if (!strcmp(cfg->images[i], name))
      return true;
  return false;
}

/* Split NAME into pool/image/snap (each 256 bytes) and check that this
 * server exports it; 0 or -EINVAL/-EACCES with err filled. */
static int export_name_check(struct nbd_server *srv, const char *name, char *pool, char *image,
                             char *snap, char *err, size_t errlen)
{
  if (nbd_export_name_split(name, strlen(name), pool, image, snap) < 0) {
    snprintf(err, errlen, "export name '%.200s' is not POOL/IMAGE[@SNAP]", name);
    return -EINVAL;
  }
  if (!nbd_export_allowed(srv, name)) {
    snprintf(err, errlen, "'%s' is not exported by this server", name);
    return -EACCES;
  }
  return 0;
}

/* A new, unlinked, not yet opened export of pool/image@snap named NAME
 * (the caller owns *out and frees e->name and e on failure); 0 or -errno
 * with err filled. */
static int export_alloc(struct nbd_server *srv, const char *name, const char *pool,
                        const char *image, const char *snap, struct nbd_export **out,
                        char *err, size_t errlen)
{
  blk_ioctx *io = nbd_pool_ioctx(srv, pool);
  if (!io) {
    int e = errno;
    snprintf(err, errlen, "pool '%s': %s", pool, strerror(e));
    return -e;
  }
  struct nbd_export *e = calloc(1, sizeof *e);
  if (!e || !(e->name = strdup(name))) {
    free(e);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  e->srv = srv;
  e->io = io;
  e->read_only = srv->cfg->read_only || snap[0];
  snprintf(e->image, sizeof e->image, "%s", image);
  snprintf(e->snap, sizeof e->snap, "%s", snap);
  *out = e;
  return 0;
}

/* The open, current (not stale) export of this name, or NULL. */
static struct nbd_export *export_find_open(struct nbd_server *srv, const char *name)
{
  for (struct nbd_export *e = srv->exports; e; e = e->next)
    if (e->img && !__atomic_load_n(&e->stale, __ATOMIC_RELAXED) && !strcmp(e->name, name))
      return e;
  return NULL;
}

int nbd_export_get(struct nbd_server *srv, const char *name, struct nbd_export **out,
                   char *err, size_t errlen)
{
  char pool[256], image[256], snap[256];
  int cr = export_name_check(srv, name, pool, image, snap, err, errlen);
  if (cr < 0)
    return cr;
  struct nbd_export *e = export_find_open(srv, name);
  if (e) {
    e->refs++;
    *out = e;
    return 0;
  }
  int r = export_alloc(srv, name, pool, image, snap, &e, err, errlen);
  if (r < 0)
    return r;
  r = blk_image_open(e->io, image, snap[0] ? snap : NULL, e->read_only ? BLK_IMAGE_RDONLY : 0,
                     &e->img);
  if (r < 0) {
    snprintf(err, errlen, "cannot open image %s: %s", name, strerror(-r));
    log_info(SUB, "%s", err);
    free(e->name);
    free(e);
    return r;
  }
  e->size = blk_image_size(e->img);
  e->refs = 1;
  e->next = srv->exports;
  srv->exports = e;
  log_info(SUB, "export %s opened (%llu bytes%s)", name, (unsigned long long)e->size,
           e->read_only ? ", read-only" : "");
  *out = e;
  return 0;
}

static void *open_thread(void *arg)
{
  struct nbd_export *e = arg;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int r = blk_image_open(e->io, e->image, e->snap[0] ? e->snap : NULL,
                         e->read_only ? BLK_IMAGE_RDONLY : 0, &e->img);
  if (r < 0) {
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    snprintf(e->open_err, sizeof e->open_err, "cannot open image %s: %s (after %.1f s)", e->name,
             blk_last_error()[0] ? blk_last_error() : strerror(-r), waited);
    e->img = NULL;
  }
  e->open_r = r;
  uint64_t one = 1;
  if (write(e->open_fd, &one, sizeof one) != (ssize_t)sizeof one)
    abort(); /* an eventfd write cannot fail here; a lost wakeup would hang the waiters */
  return NULL;
}

/* Loop thread (or teardown): the helper thread has finished. */
static void open_finish(struct nbd_export *e)
{
  struct nbd_server *srv = e->srv;
  pthread_join(e->thread, NULL);
  if (e->open_ev)
    event_free(e->open_ev);
  e->open_ev = NULL;
  close(e->open_fd);
  e->open_fd = -1;
  e->opening = false;
  struct nbd_conn *w = e->waiters;
  e->waiters = NULL;
  if (e->open_r < 0) {
    log_warn(SUB, "%s", e->open_err);
    struct nbd_export **pp = &srv->exports;
    while (*pp && *pp != e)
      pp = &(*pp)->next;
    if (*pp)
      *pp = e->next;
    while (w) {
      struct nbd_conn *next = w->wait_next;
      nbd_conn_open_done(w, NULL, e->open_r, e->open_err);
      w = next;
    }
    free(e->name);
    free(e);
    return;
  }
  e->size = blk_image_size(e->img);
  log_info(SUB, "export %s opened (%llu bytes%s)", e->name, (unsigned long long)e->size,
           e->read_only ? ", read-only" : "");
  /* each waiter owns one of e->refs; keep e alive while answering them */
  e->refs++;
  while (w) {
    struct nbd_conn *next = w->wait_next;
    nbd_conn_open_done(w, e, 0, NULL);
    w = next;
  }
  nbd_export_put(e);
}

static void open_ev_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  open_finish(arg);
}

int nbd_export_get_async(struct nbd_server *srv, const char *name, struct nbd_conn *c,
                         struct nbd_export **out, char *err, size_t errlen)
{
  char pool[256], image[256], snap[256];
  int cr = export_name_check(srv, name, pool, image, snap, err, errlen);
  if (cr < 0)
    return cr;
  for (struct nbd_export *e = srv->exports; e; e = e->next) {
    if (__atomic_load_n(&e->stale, __ATOMIC_RELAXED) || strcmp(e->name, name))
      continue;
    if (e->img) {
      e->refs++;
      *out = e;
      return 0;
    }
    if (e->opening) {
      e->refs++;
      c->refs++;
      c->wait_next = e->waiters;
      e->waiters = c;
      return 1;
    }
  }
  struct nbd_export *e;
  int ar = export_alloc(srv, name, pool, image, snap, &e, err, errlen);
  if (ar < 0)
    return ar;
  e->open_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->open_fd < 0) {
    int er = errno;
    snprintf(err, errlen, "eventfd: %s", strerror(er));
    goto out_free;
  }
  e->open_ev = event_new(srv->base, e->open_fd, EV_READ, open_ev_cb, e);
  if (!e->open_ev || event_add(e->open_ev, NULL) < 0) {
    snprintf(err, errlen, "cannot add the open event");
    goto out_close_fd;
  }
  e->opening = true;
  int pr = pthread_create(&e->thread, NULL, open_thread, e);
  if (pr != 0) {
    snprintf(err, errlen, "cannot start the open thread: %s", strerror(pr));
    goto out_close_fd;
  }
  e->refs = 1;
  c->refs++;
  e->waiters = c;
  c->wait_next = NULL;
  e->next = srv->exports;
  srv->exports = e;
  log_info(SUB, "opening export %s%s", name,
           e->read_only ? " (read-only)" : " (waits for the exclusive lock if held)");
  return 1;

out_close_fd:
  if (e->open_ev)
    event_free(e->open_ev);
  close(e->open_fd);
out_free:
  free(e->name);
  free(e);
  return -ENOMEM;
}

void nbd_export_finish_opens(struct nbd_server *srv)
{
  for (;;) {
    struct nbd_export *e = srv->exports;
    while (e && !e->opening)
      e = e->next;
    if (!e)
      return;
    log_info(SUB, "waiting for the open of %s to finish", e->name);
    open_finish(e);
  }
}

void nbd_export_put(struct nbd_export *e)
{
  if (--e->refs > 0)
    return;
  struct nbd_server *srv = e->srv;
  struct nbd_export **pp = &srv->exports;
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp)
    *pp = e->next;
  if (e->img) {
    int r = blk_image_close(e->img);
    if (r < 0)
      log_warn(SUB, "closing %s: %s", e->name, strerror(-r));
    else
      log_info(SUB, "export %s closed (no connection left)", e->name);
  }
  free(e->name);
  free(e);
}

int nbd_export_probe(struct nbd_server *srv, const char *name, uint64_t *size, bool *ro,
                     char *err, size_t errlen)
{
  char pool[256], image[256], snap[256];
  int cr = export_name_check(srv, name, pool, image, snap, err, errlen);
  if (cr < 0)
    return cr;
  const struct nbd_export *open = export_find_open(srv, name);
  if (open) {
    *size = blk_image_size(open->img);
    *ro = open->read_only;
    return 0;
  }
  blk_ioctx *io = nbd_pool_ioctx(srv, pool);
  if (!io) {
    int e = errno;
    snprintf(err, errlen, "pool '%s': %s", pool, strerror(e));
    return -e;
  }
  /* read-only: asking about an image must not take (or move) its lock */
  blk_image *img;
  int r = blk_image_open(io, image, snap[0] ? snap : NULL, BLK_IMAGE_RDONLY, &img);
  if (r < 0) {
    snprintf(err, errlen, "cannot open image %s: %s", name, strerror(-r));
    return r;
  }
  *size = blk_image_size(img);
  *ro = srv->cfg->read_only || snap[0];
  blk_image_close(img);
  return 0;
}

uint16_t nbd_export_tflags(const struct nbd_export *e)
{
  return nbd_tflags(e->read_only);
}

uint16_t nbd_tflags(bool read_only)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF |
               NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
  if (read_only)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
         NBD_FLAG_SEND_FAST_ZERO;
  return f;
}

void nbd_names_free(char **names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

static int names_add(char ***names, size_t *n, size_t *cap, const char *s)
{
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    char **nn = realloc(*names, nc * sizeof *nn);
    if (!nn)
      return -ENOMEM;
    *names = nn;
    *cap = nc;
  }
  if (!((*names)[*n] = strdup(s)))
    return -ENOMEM;
  (*n)++;
  return 0;
}

int nbd_export_list(struct nbd_server *srv, char ***names, size_t *n)
{
  const struct nbd_config *cfg = srv->cfg;
  size_t cap = 0;
  int r = 0;
  *names = NULL;
  *n = 0;
  for (size_t i = 0; i < cfg->nimages && r == 0; i++)
    r = names_add(names, n, &cap, cfg->images[i]);
  /* the --pool pools, else every pool of the map; pools the key may not
   * read (-EACCES/-EPERM) are left out: the listing shows what it reaches */
  char **all = NULL;
  size_t npools = cfg->nimages ? 0 : cfg->npools;
  if (!cfg->nimages && !npools) {
    int lr = blk_pool_list(srv->cluster, &all, &npools);
    if (lr < 0) {
      log_warn(SUB, "list: pools: %s", strerror(-lr));
      npools = 0;
    }
  }
  for (size_t p = 0; p < npools && r == 0; p++) {
    const char *pool = all ? all[p] : cfg->pools[p];
    blk_ioctx *io = nbd_pool_ioctx(srv, pool);
    char **imgs = NULL;
    size_t ni = 0;
    if (!io) {
      log_warn(SUB, "list: pool %s: %s", pool, strerror(errno));
      continue;
    }
    int lr = blk_image_list(io, &imgs, &ni);
    if (lr < 0) {
      if (lr == -EACCES || lr == -EPERM)
        log_debug(SUB, "list: pool %s: not readable with this key", pool);
      else
        log_warn(SUB, "list: pool %s: %s", pool, strerror(-lr));
      continue;
    }
    for (size_t i = 0; i < ni && r == 0; i++) {
      char full[600];
      snprintf(full, sizeof full, "%s/%s", pool, imgs[i]);
      r = names_add(names, n, &cap, full);
    }
    blk_image_list_free(imgs, ni);
  }
  blk_pool_list_free(all, all ? npools : 0);
  if (r < 0) {
    nbd_names_free(*names, *n);
    *names = NULL;
    *n = 0;
  }
  return r;
}
