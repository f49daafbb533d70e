/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: pools and exports.  A pool's ioctx is created on first use
 * and kept until the server stops.  An export is one open blk_image per
 * export name, shared by every connection that selects it (multi-conn):
 * the first NBD_OPT_GO opens it, each connection holds a reference, the
 * last one to leave closes it (so the image's exclusive lock is released
 * when nobody uses the export).  All of this runs on the loop thread; the
 * reference counts are plain ints.
 *
 * Multi-conn is advertised because every connection goes through the same
 * image handle and libblk acknowledges a write only when it is durable on
 * every replica of the acting set: a write acknowledged on connection A is
 * visible to a read on connection B, and FLUSH (or FUA) on any connection
 * has nothing left to make durable.
 *
 * If another client takes the image's exclusive lock (libblk hands it
 * over when asked, e.g. for live migration), every later write on this
 * handle fails with -EBUSY.  The export is then marked stale: connections
 * already on it keep their handle (reads work, writes get EIO), and new
 * connections open the image afresh, which asks for the lock back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int nbd_export_get(struct nbd_server *srv, const char *name, struct nbd_export **out,
                   char *err, size_t errlen)
{
  char pool[256], image[256], snap[256];
  if (nbd_export_name_split(name, strlen(name), pool, image, snap) < 0) {
    snprintf(err, errlen, "export name '%.200s' is not POOL/IMAGE[@SNAP]", name);
    return -EINVAL;
  }
  if (!nbd_export_allowed(srv, name)) {
    snprintf(err, errlen, "'%s' is not exported by this server", name);
    return -EACCES;
  }
  for (struct nbd_export *e = srv->exports; e; e = e->next)
    if (e->img && !e->stale && !strcmp(e->name, name)) {
      e->refs++;
      *out = e;
      return 0;
    }
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
  e->read_only = srv->cfg->read_only || snap[0];
  int r = blk_image_open(io, image, snap[0] ? snap : NULL, e->read_only ? BLK_IMAGE_RDONLY : 0,
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
  if (nbd_export_name_split(name, strlen(name), pool, image, snap) < 0) {
    snprintf(err, errlen, "export name '%.200s' is not POOL/IMAGE[@SNAP]", name);
    return -EINVAL;
  }
  if (!nbd_export_allowed(srv, name)) {
    snprintf(err, errlen, "'%s' is not exported by this server", name);
    return -EACCES;
  }
  for (struct nbd_export *e = srv->exports; e; e = e->next)
    if (e->img && !e->stale && !strcmp(e->name, name)) {
      *size = e->size;
      *ro = e->read_only;
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
  for (size_t p = 0; cfg->nimages == 0 && p < cfg->npools && r == 0; p++) {
    blk_ioctx *io = nbd_pool_ioctx(srv, cfg->pools[p]);
    char **imgs = NULL;
    size_t ni = 0;
    if (!io) {
      log_warn(SUB, "list: pool %s: %s", cfg->pools[p], strerror(errno));
      continue;
    }
    int lr = blk_image_list(io, &imgs, &ni);
    if (lr < 0) {
      log_warn(SUB, "list: pool %s: %s", cfg->pools[p], strerror(-lr));
      continue;
    }
    for (size_t i = 0; i < ni && r == 0; i++) {
      char full[600];
      snprintf(full, sizeof full, "%s/%s", cfg->pools[p], imgs[i]);
      r = names_add(names, n, &cap, full);
    }
    blk_image_list_free(imgs, ni);
  }
  if (r < 0) {
    nbd_names_free(*names, *n);
    *names = NULL;
    *n = 0;
  }
  return r;
}
