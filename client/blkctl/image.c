/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl image ...`, block images through libblk (the public
 * API only, as any application would use it):
 *   image create POOL/NAME --size 10G [--object-size 4M]
 *   image ls POOL                       (--format json: a list of names)
 *   image info POOL/NAME
 *   image resize POOL/NAME --size S [--allow-shrink]
 *   image rm POOL/NAME
 *   image rename POOL/SRC [POOL/]DST
 *   image du POOL/NAME | POOL           provisioned vs used bytes
 *   image import FILE|NBD-URI POOL/NAME [--object-size 4M]
 *   image export POOL/NAME FILE|NBD-URI
 *   image bench POOL/NAME --io-type write|read [--io-size 4K]
 *        [--io-threads 16] [--io-pattern rand|seq] [--io-total 1G]
 *   image snap create|rm|rollback|protect|unprotect POOL/NAME@SNAP
 *   image snap rename POOL/NAME@SNAP NEWSNAP | image snap ls POOL/NAME
 * Read-only commands (info, du, export) take POOL/NAME@SNAP too.
 *   image clone POOL/NAME@SNAP POOL/CHILD | image children POOL/NAME[@SNAP]
 *   image flatten POOL/CHILD
 *   image diff POOL/NAME[@TO] [--from-snap FROM]      changed extents
 *   image export-diff POOL/NAME[@TO] [--from-snap FROM] FILE|-
 *   image import-diff FILE|- POOL/NAME
 * Diffs compare the two versions in 64 KiB chunks (ranges that are holes
 * in both are skipped by block status); the diff stream format is in
 * docs/snapshots.md.
 * Import and export are sparse-aware: import reads only the file's data
 * extents (SEEK_DATA/SEEK_HOLE) and skips all-zero chunks; export asks the
 * image for its allocated extents (block status) and writes only data,
 * leaving holes in a file target (or zeroing them on an NBD target).
 * Copies keep a window of chunks in flight with libblk's aio calls; a
 * progress bar is drawn on stderr only when it is a terminal.
 * Errors exit with the errno of the failure (2 ENOENT unknown pool/image,
 * 16 EBUSY image in use, 17 EEXIST, 22 EINVAL bad size / I/O past end).
 */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blk/libblk.h"
#include "client/blkctl/blkctl.h"
#include "common/config.h"

#define COPY_CHUNK (4u << 20)
#define COPY_SLOTS 8

struct ctx {
  blk_cluster *c;
  blk_ioctx *io;
};

static int fail_lib(int r, const char *what)
{
  const char *m = blk_last_error();
  return blkctl_fail(blkctl_exit_code(r), "%s: %s", what, m && *m ? m : strerror(-r));
}

static int connect_pool(struct blkctl *b, const char *pool, struct ctx *x)
{
  int r = blk_cluster_create(&x->c);
  if (r < 0)
    return fail_lib(r, "cannot create the cluster handle");
  if (!getenv("BLK_CONF") || strcmp(getenv("BLK_CONF"), b->conf_path)) {
    r = blk_cluster_conf_read(x->c, b->conf_path);
    if (r < 0) {
      int code = fail_lib(r, "cannot read the config");
      blk_cluster_shutdown(x->c);
      x->c = NULL;
      return code;
    }
  }
  /* the identity given on the command line (--id/--name, --keyring,
   * --key-file) wins over the config file's */
  if ((b->name && (r = blk_cluster_conf_set(x->c, "name", b->name)) < 0) ||
      (b->keyring && (r = blk_cluster_conf_set(x->c, "keyring", b->keyring)) < 0) ||
      (b->key_file && (r = blk_cluster_conf_set(x->c, "key_file", b->key_file)) < 0)) {
    int code = fail_lib(r, "bad --name, --keyring or --key-file");
    blk_cluster_shutdown(x->c);
    x->c = NULL;
    return code;
  }
  if (b->timeout_ms > 0) {
    char v[32];
    snprintf(v, sizeof v, "%dms", b->timeout_ms);
    blk_cluster_conf_set(x->c, "client_timeout", v);
  }
  r = blk_cluster_connect(x->c);
  if (r < 0) {
    int code = fail_lib(r, "cannot connect to the cluster");
    blk_cluster_shutdown(x->c);
    x->c = NULL;
    return code;
  }
  r = blk_ioctx_create(x->c, pool, &x->io);
  if (r < 0) {
    int code = fail_lib(r, "cannot open the pool");
    blk_cluster_shutdown(x->c);
    x->c = NULL;
    return code;
  }
  return 0;
}

static void ctx_close(struct ctx *x)
{
  blk_ioctx_destroy(x->io);
  blk_cluster_shutdown(x->c);
}

/* Split "POOL/NAME" into pool[] and name[].  0 or an exit code. */
static int split_spec(const char *spec, char *pool, size_t pn, char *name, size_t nn)
{
  const char *sl = spec ? strchr(spec, '/') : NULL;
  if (!sl || sl == spec || !sl[1] || (size_t)(sl - spec) >= pn || strlen(sl + 1) >= nn)
    return blkctl_fail(EINVAL, "bad image spec '%s' (POOL/NAME)", spec ? spec : "");
  memcpy(pool, spec, (size_t)(sl - spec));
  pool[sl - spec] = 0;
  snprintf(name, nn, "%s", sl + 1);
  return 0;
}

static int parse_size_arg(const char *opt, const char *s, uint64_t *out)
{
  if (config_parse_size(s, out) < 0)
    return blkctl_fail(EINVAL, "bad %s '%s' (a number with an optional K/M/G/T suffix)", opt, s);
  if (*out == 0)
    return blkctl_fail(EINVAL, "%s must be greater than zero", opt);
  return 0;
}

static int order_of(uint64_t object_size, int *order)
{
  for (int o = 12; o <= 26; o++)
    if ((1ull << o) == object_size) {
      *order = o;
      return 0;
    }
  return blkctl_fail(EINVAL, "--object-size must be a power of two from 4K to 64M");
}

static void human(uint64_t v, char *out, size_t n)
{
  const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double d = (double)v;
  int i = 0;
  while (d >= 1024 && i < 5) {
    d /= 1024;
    i++;
  }
  if (i == 0)
    snprintf(out, n, "%llu B", (unsigned long long)v);
  else
    snprintf(out, n, "%.4g %s", d, u[i]);
}

/* ---- open an image for a command ---- */

static int open_image(struct blkctl *b, const char *spec, int flags, struct ctx *x,
                      blk_image **img, char *name, size_t nn)
{
  char pool[64];
  int rc = split_spec(spec, pool, sizeof pool, name, nn);
  if (rc)
    return rc;
  char *at = strchr(name, '@');   /* NAME@SNAP: the snapshot, read-only */
  if (at)
    *at++ = 0;
  if (at && !*at)
    return blkctl_fail(EINVAL, "bad image spec '%s' (POOL/NAME[@SNAP])", spec);
  if ((rc = connect_pool(b, pool, x)))
    return rc;
  int r = blk_image_open(x->io, name, at, flags, img);
  if (r < 0) {
    rc = fail_lib(r, "cannot open the image");
    ctx_close(x);
  }
  return rc;
}

/* ---- progress ---- */

struct progress {
  bool on;
  const char *what;
  uint64_t total;
  int last_pct;
};

static void progress_init(struct progress *p, const char *what, uint64_t total)
{
  p->on = isatty(2);
  p->what = what;
  p->total = total ? total : 1;
  p->last_pct = -1;
}

static void progress_set(struct progress *p, uint64_t done)
{
  if (!p->on)
    return;
  int pct = (int)(done * 100 / p->total);
  if (pct == p->last_pct)
    return;
  p->last_pct = pct;
  int bars = pct / 4;
  fprintf(stderr, "\r%s: [%.*s%*s] %3d%%", p->what, bars, "=========================", 25 - bars,
          "", pct);
  fflush(stderr);
}

static void progress_done(struct progress *p)
{
  if (p->on && p->last_pct >= 0)
    fprintf(stderr, "\r%s: done.%40s\n", p->what, "");
}

/* ---- a window of aio chunks ---- */

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

struct slot {
  struct window *w;
  enum slot_state st;
  uint8_t *buf;
  uint64_t off;
  size_t len;
  int64_t result;
  char msg[256];
};

struct window {
  pthread_mutex_t m;
  pthread_cond_t cv;
  struct slot slots[COPY_SLOTS];
};

static int window_init(struct window *w)
{
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  for (int i = 0; i < COPY_SLOTS; i++) {
    w->slots[i].w = w;
    if (!(w->slots[i].buf = malloc(COPY_CHUNK)))
      return -ENOMEM;
  }
  return 0;
}

static void window_destroy(struct window *w)
{
  for (int i = 0; i < COPY_SLOTS; i++)
    free(w->slots[i].buf);
  pthread_mutex_destroy(&w->m);
  pthread_cond_destroy(&w->cv);
}

static void slot_cb(void *arg, int64_t result)
{
  struct slot *s = arg;
  pthread_mutex_lock(&s->w->m);
  s->result = result;
  if (result < 0)
    snprintf(s->msg, sizeof s->msg, "%s", blk_last_error());
  s->st = SLOT_DONE;
  pthread_cond_broadcast(&s->w->cv);
  pthread_mutex_unlock(&s->w->m);
}

/* Wait for a slot that is free or done; returns it (state unchanged). */
static struct slot *window_get(struct window *w, bool want_free_only)
{
  pthread_mutex_lock(&w->m);
  for (;;) {
    for (int i = 0; i < COPY_SLOTS; i++)
      if (w->slots[i].st == SLOT_DONE || (!want_free_only && w->slots[i].st == SLOT_FREE)) {
        pthread_mutex_unlock(&w->m);
        return &w->slots[i];
      }
    bool busy = false;
    for (int i = 0; i < COPY_SLOTS; i++)
      busy |= w->slots[i].st == SLOT_BUSY;
    if (!busy) {
      pthread_mutex_unlock(&w->m);
      return NULL;
    }
    pthread_cond_wait(&w->cv, &w->m);
  }
}

static bool all_zero(const uint8_t *p, size_t n)
{
  static const uint8_t z[4096];
  while (n >= sizeof z) {
    if (memcmp(p, z, sizeof z))
      return false;
    p += sizeof z;
    n -= sizeof z;
  }
  return memcmp(p, z, n) == 0;
}

/* ---- commands ---- */

static int cmd_create(struct blkctl *b, int argc, char **argv)
{
  char pool[64], name[256];
  uint64_t size = 0, objsize = 0;
  int order = 0, rc;
  if (argc < 3)
    return blkctl_fail(EINVAL, "usage: blkctl image create POOL/NAME --size SIZE [--object-size S]");
  if ((rc = split_spec(argv[2], pool, sizeof pool, name, sizeof name)))
    return rc;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      if ((rc = parse_size_arg("--size", argv[++i], &size)))
        return rc;
    } else if (!strcmp(argv[i], "--object-size") && i + 1 < argc) {
      if ((rc = parse_size_arg("--object-size", argv[++i], &objsize)) ||
          (rc = order_of(objsize, &order)))
        return rc;
    } else {
      return blkctl_fail(EINVAL, "unknown option '%s'", argv[i]);
    }
  }
  if (!size)
    return blkctl_fail(EINVAL, "--size is required");
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    return rc;
  int r = blk_image_create(x.io, name, size, order);
  if (r < 0)
    rc = fail_lib(r, "cannot create the image");
  ctx_close(&x);
  return rc;
}

static int cmd_ls(struct blkctl *b, int argc, char **argv)
{
  if (argc != 3 || strchr(argv[2], '/'))
    return blkctl_fail(EINVAL, "usage: blkctl image ls POOL [--format json]");
  struct ctx x;
  int rc = connect_pool(b, argv[2], &x);
  if (rc)
    return rc;
  char **names;
  size_t n;
  int r = blk_image_list(x.io, &names, &n);
  if (r < 0) {
    rc = fail_lib(r, "cannot list images");
  } else {
    if (b->json) {
      json_begin_arr(NULL);
      for (size_t i = 0; i < n; i++)
        json_str(NULL, names[i]);
      json_end_arr();
      json_done();
    } else {
      for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
    }
    blk_image_list_free(names, n);
  }
  ctx_close(&x);
  return rc;
}

static int cmd_info(struct blkctl *b, int argc, char **argv)
{
  if (argc != 3)
    return blkctl_fail(EINVAL, "usage: blkctl image info POOL/NAME");
  struct ctx x;
  blk_image *img;
  char name[256];
  int rc = open_image(b, argv[2], BLK_IMAGE_RDONLY, &x, &img, name, sizeof name);
  if (rc)
    return rc;
  struct blk_image_info info;
  blk_image_stat(img, &info);
  char hs[32], os[32];
  human(info.size, hs, sizeof hs);
  human(info.object_size, os, sizeof os);
  if (b->json) {
    json_begin_obj();
    json_str("name", name);
    json_str("id", info.id);
    json_uint("size", info.size);
    json_uint("order", info.order);
    json_uint("object_size", info.object_size);
    json_uint("num_objects", info.num_objects);
    json_str("block_name_prefix", "blk_data");
    json_end_obj();
    json_done();
  } else {
    printf("image '%s':\n\tsize %s (%llu bytes) in %llu objects\n\torder %u (%s objects)\n"
           "\tid: %s\n\tblock_name_prefix: blk_data.%s\n",
           name, hs, (unsigned long long)info.size, (unsigned long long)info.num_objects,
           info.order, os, info.id, info.id);
  }
  blk_image_close(img);
  ctx_close(&x);
  return 0;
}

static int cmd_resize(struct blkctl *b, int argc, char **argv)
{
  uint64_t size = 0;
  bool shrink = false;
  int rc;
  if (argc < 3)
    return blkctl_fail(EINVAL, "usage: blkctl image resize POOL/NAME --size SIZE [--allow-shrink]");
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      if ((rc = parse_size_arg("--size", argv[++i], &size)))
        return rc;
    } else if (!strcmp(argv[i], "--allow-shrink")) {
      shrink = true;
    } else {
      return blkctl_fail(EINVAL, "unknown option '%s'", argv[i]);
    }
  }
  if (!size)
    return blkctl_fail(EINVAL, "--size is required");
  struct ctx x;
  blk_image *img;
  char name[256];
  if ((rc = open_image(b, argv[2], BLK_IMAGE_EXCLUSIVE, &x, &img, name, sizeof name)))
    return rc;
  if (size < blk_image_size(img) && !shrink) {
    rc = blkctl_fail(EINVAL, "shrinking '%s' from %llu to %llu bytes deletes data: pass "
                             "--allow-shrink", name, (unsigned long long)blk_image_size(img),
                     (unsigned long long)size);
  } else {
    int r = blk_image_resize(img, size);
    if (r < 0)
      rc = fail_lib(r, "cannot resize the image");
  }
  int r = blk_image_close(img);
  if (r < 0 && !rc)
    rc = fail_lib(r, "close");
  ctx_close(&x);
  return rc;
}

static int cmd_rm(struct blkctl *b, int argc, char **argv)
{
  char pool[64], name[256];
  int rc;
  if (argc != 3)
    return blkctl_fail(EINVAL, "usage: blkctl image rm POOL/NAME");
  if ((rc = split_spec(argv[2], pool, sizeof pool, name, sizeof name)))
    return rc;
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    return rc;
  int r = blk_image_remove(x.io, name);
  if (r < 0)
    rc = fail_lib(r, "cannot remove the image");
  ctx_close(&x);
  return rc;
}

static int cmd_rename(struct blkctl *b, int argc, char **argv)
{
  char pool[64], name[256], pool2[64], dst[256];
  int rc;
  if (argc != 4)
    return blkctl_fail(EINVAL, "usage: blkctl image rename POOL/SRC [POOL/]DST");
  if ((rc = split_spec(argv[2], pool, sizeof pool, name, sizeof name)))
    return rc;
  if (strchr(argv[3], '/')) {
    if ((rc = split_spec(argv[3], pool2, sizeof pool2, dst, sizeof dst)))
      return rc;
    if (strcmp(pool, pool2))
      return blkctl_fail(EINVAL, "rename cannot move an image to another pool");
  } else {
    snprintf(dst, sizeof dst, "%s", argv[3]);
  }
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    return rc;
  int r = blk_image_rename(x.io, name, dst);
  if (r < 0)
    rc = fail_lib(r, "cannot rename the image");
  ctx_close(&x);
  return rc;
}

/* ---- block status, synchronously ---- */

struct bs_res {
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
  int result;
  char msg[256];
  struct blk_extent *ext;
  size_t n;
};

static void bs_cb(void *arg, int result, const struct blk_extent *ext, size_t n)
{
  struct bs_res *r = arg;
  pthread_mutex_lock(&r->m);
  r->result = result;
  if (result == 0) {
    r->ext = malloc(n * sizeof *ext);
    if (r->ext) {
      memcpy(r->ext, ext, n * sizeof *ext);
      r->n = n;
    } else {
      r->result = -ENOMEM;
    }
  } else {
    snprintf(r->msg, sizeof r->msg, "%s", blk_last_error());
  }
  r->done = true;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->m);
}

/* Extents of [off, off+len) (at least one; caller frees *ext). */
static int block_status(blk_image *img, uint64_t off, uint64_t len, struct blk_extent **ext,
                        size_t *n, char *msg, size_t mn)
{
  struct bs_res r = { .done = false };
  pthread_mutex_init(&r.m, NULL);
  pthread_cond_init(&r.cv, NULL);
  int rc = blk_image_aio_block_status(img, off, len, bs_cb, &r);
  if (rc == 0) {
    pthread_mutex_lock(&r.m);
    while (!r.done)
      pthread_cond_wait(&r.cv, &r.m);
    pthread_mutex_unlock(&r.m);
    rc = r.result;
    if (rc < 0)
      snprintf(msg, mn, "%s", r.msg);
  } else {
    snprintf(msg, mn, "%s", blk_last_error());
  }
  pthread_mutex_destroy(&r.m);
  pthread_cond_destroy(&r.cv);
  *ext = r.ext;
  *n = r.n;
  return rc;
}

static int du_one(blk_image *img, const char *name, uint64_t *used_out, char *msg, size_t mn)
{
  uint64_t size = blk_image_size(img), off = 0, used = 0;
  while (off < size) {
    struct blk_extent *ext;
    size_t n;
    int r = block_status(img, off, size - off, &ext, &n, msg, mn);
    if (r < 0)
      return r;
    for (size_t i = 0; i < n; i++) {
      if (!(ext[i].flags & BLK_EXTENT_HOLE))
        used += ext[i].length;
      off = ext[i].offset + ext[i].length;
    }
    free(ext);
  }
  (void)name;
  *used_out = used;
  return 0;
}

struct diff_out;
static int diff_walk(blk_image *from, blk_image *to, struct diff_out *d);
static uint64_t diff_count(blk_image *from, blk_image *to, int *err);

static void du_row(struct blkctl *b, const char *name, uint64_t prov, uint64_t used)
{
  if (b->json) {
    json_begin_obj();
    json_str("name", name);
    json_uint("provisioned_size", prov);
    json_uint("used_size", used);
    json_end_obj();
  } else {
    char hp[32], hu[32];
    human(prov, hp, sizeof hp);
    human(used, hu, sizeof hu);
    printf("%-30s %14s %14s\n", name, hp, hu);
  }
}

/* Snapshot rows of image `name` (open read-only as img): each snapshot's
 * USED is the bytes that differ from the previous snapshot (the data it
 * holds on its own at most, as rbd du reports).  0 or an exit code. */
static int du_snaps(struct blkctl *b, blk_ioctx *io, const char *name, blk_image *img,
                    uint64_t *tu)
{
  struct blk_snap_info *v;
  size_t n;
  int r = blk_image_snap_list(img, &v, &n);
  if (r < 0)
    return fail_lib(r, "cannot list snapshots");
  blk_image *prev = NULL;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    blk_image *si;
    if ((r = blk_image_open(io, name, v[i].name, BLK_IMAGE_RDONLY, &si)) < 0) {
      rc = fail_lib(r, "cannot open a snapshot");
      break;
    }
    int err = 0;
    uint64_t used = diff_count(prev, si, &err);
    if (err < 0) {
      rc = fail_lib(err, "du of a snapshot");
      blk_image_close(si);
      break;
    }
    char row[600];
    snprintf(row, sizeof row, "%s@%s", name, v[i].name);
    du_row(b, row, v[i].size, used);
    *tu += used;
    if (prev)
      blk_image_close(prev);
    prev = si;
  }
  if (prev)
    blk_image_close(prev);
  blk_image_snap_list_free(v);
  return rc;
}

static int cmd_du(struct blkctl *b, int argc, char **argv)
{
  if (argc != 3)
    return blkctl_fail(EINVAL, "usage: blkctl image du POOL/NAME | POOL");
  char pool[64], one[256] = "";
  int rc;
  if (strchr(argv[2], '/')) {
    if ((rc = split_spec(argv[2], pool, sizeof pool, one, sizeof one)))
      return rc;
  } else {
    snprintf(pool, sizeof pool, "%s", argv[2]);
  }
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    return rc;
  char **names = NULL;
  size_t n = 0;
  char *single[1] = { one };
  if (one[0]) {
    names = single;
    n = 1;
  } else {
    int r = blk_image_list(x.io, &names, &n);
    if (r < 0) {
      rc = fail_lib(r, "cannot list images");
      ctx_close(&x);
      return rc;
    }
  }
  if (b->json)
    json_begin_arr(NULL);
  else
    printf("%-30s %14s %14s\n", "NAME", "PROVISIONED", "USED");
  uint64_t tp = 0, tu = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    blk_image *img;
    char nm[256];
    snprintf(nm, sizeof nm, "%s", names[i]);
    char *at = strchr(nm, '@');   /* NAME@SNAP: that snapshot only */
    if (at)
      *at++ = 0;
    int r = blk_image_open(x.io, nm, at, BLK_IMAGE_RDONLY, &img);
    if (r < 0) {
      rc = fail_lib(r, "cannot open the image");
      break;
    }
    if (!at && (rc = du_snaps(b, x.io, nm, img, &tu))) {
      blk_image_close(img);
      break;
    }
    uint64_t used;
    char msg[256];
    r = du_one(img, names[i], &used, msg, sizeof msg);
    uint64_t prov = blk_image_size(img);
    blk_image_close(img);
    if (r < 0) {
      rc = blkctl_fail(blkctl_exit_code(r), "du of '%s': %s", names[i], msg);
      break;
    }
    tp += prov;
    tu += used;
    du_row(b, names[i], prov, used);
  }
  if (b->json) {
    json_end_arr();
    json_done();
  } else if (!rc && n > 1) {
    char hp[32], hu[32];
    human(tp, hp, sizeof hp);
    human(tu, hu, sizeof hu);
    printf("%-30s %14s %14s\n", "<TOTAL>", hp, hu);
  }
  if (!one[0])
    blk_image_list_free(names, n);
  ctx_close(&x);
  return rc;
}

/* ---- import ---- */

static bool is_nbd_uri(const char *s)
{
  return !strncmp(s, "nbd://", 6) || !strncmp(s, "nbds://", 7) || !strncmp(s, "nbd+unix://", 11) ||
         !strncmp(s, "nbds+unix://", 12);
}

struct source {
  int fd;
  struct nbd_handle *nbd;
  uint64_t size;
};

static int source_read(struct source *s, void *buf, size_t len, uint64_t off)
{
  if (s->nbd)
    return nbd_pread(s->nbd, buf, len, off, 0) < 0 ? -EIO : 0;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    done += (size_t)n;
  }
  return 0;
}

/* Next data range at or after off: [*start, *end).  false at the end. */
static bool source_next_data(struct source *s, uint64_t off, uint64_t *start, uint64_t *end)
{
  if (off >= s->size)
    return false;
  if (s->nbd) {
    *start = off;
    *end = s->size;
    return true;
  }
  off_t d = lseek(s->fd, (off_t)off, SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO)
      return false;
    *start = off;         /* no SEEK_DATA: everything is data */
    *end = s->size;
    return true;
  }
  off_t h = lseek(s->fd, d, SEEK_HOLE);
  *start = (uint64_t)d;
  *end = h < 0 || (uint64_t)h > s->size ? s->size : (uint64_t)h;
  return *start < s->size;
}

static int window_reap(struct window *w, struct slot *s, const char *what, int *rc)
{
  if (s->st == SLOT_DONE) {
    if (s->result < 0 && !*rc)
      *rc = blkctl_fail(blkctl_exit_code((int)s->result), "%s at offset %llu: %s", what,
                        (unsigned long long)s->off, s->msg);
    s->st = SLOT_FREE;
  }
  (void)w;
  return *rc;
}

static int cmd_import(struct blkctl *b, int argc, char **argv)
{
  int order = 0, rc;
  uint64_t objsize;
  char pool[64], name[256];
  if (argc < 4)
    return blkctl_fail(EINVAL, "usage: blkctl image import FILE|NBD-URI POOL/NAME "
                               "[--object-size S]");
  const char *src = argv[2];
  if ((rc = split_spec(argv[3], pool, sizeof pool, name, sizeof name)))
    return rc;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--object-size") && i + 1 < argc) {
      if ((rc = parse_size_arg("--object-size", argv[++i], &objsize)) ||
          (rc = order_of(objsize, &order)))
        return rc;
    } else {
      return blkctl_fail(EINVAL, "unknown option '%s'", argv[i]);
    }
  }
  struct source s = { .fd = -1 };
  if (is_nbd_uri(src)) {
    s.nbd = nbd_create();
    if (!s.nbd || nbd_connect_uri(s.nbd, src) < 0) {
      rc = blkctl_fail(EIO, "cannot connect to %s: %s", src, nbd_get_error());
      nbd_close(s.nbd);
      return rc;
    }
    int64_t sz = nbd_get_size(s.nbd);
    if (sz < 0) {
      rc = blkctl_fail(EIO, "%s: %s", src, nbd_get_error());
      nbd_close(s.nbd);
      return rc;
    }
    s.size = (uint64_t)sz;
  } else {
    s.fd = open(src, O_RDONLY | O_CLOEXEC);
    if (s.fd < 0)
      return blkctl_fail(errno, "cannot open %s: %s", src, strerror(errno));
    off_t end = lseek(s.fd, 0, SEEK_END);
    s.size = end > 0 ? (uint64_t)end : 0;
  }
  if (s.size == 0) {
    rc = blkctl_fail(EINVAL, "%s is empty: nothing to import", src);
    goto out_src;
  }
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    goto out_src;
  int r = blk_image_create(x.io, name, s.size, order);
  if (r < 0) {
    rc = fail_lib(r, "cannot create the image");
    goto out_ctx;
  }
  blk_image *img;
  if ((r = blk_image_open(x.io, name, NULL, BLK_IMAGE_EXCLUSIVE, &img)) < 0) {
    rc = fail_lib(r, "cannot open the new image");
    goto out_ctx;
  }
  struct window w;
  if (window_init(&w) < 0) {
    rc = blkctl_fail(ENOMEM, "out of memory");
    goto out_win;
  }
  struct progress p;
  progress_init(&p, "Importing", s.size);
  uint64_t off = 0, ds, de;
  while (!rc && source_next_data(&s, off, &ds, &de)) {
    for (uint64_t pos = ds; pos < de && !rc;) {
      /* chunks aligned to COPY_CHUNK so that they map onto whole objects */
      uint64_t lim = (pos / COPY_CHUNK + 1) * COPY_CHUNK;
      size_t len = (size_t)((lim < de ? lim : de) - pos);
      struct slot *sl = window_get(&w, false);
      if (window_reap(&w, sl, "write", &rc))
        break;
      if ((r = source_read(&s, sl->buf, len, pos)) < 0) {
        rc = blkctl_fail(EIO, "read of %s at %llu failed: %s", src, (unsigned long long)pos,
                         s.nbd ? nbd_get_error() : strerror(-r));
        break;
      }
      if (!all_zero(sl->buf, len)) {
        sl->off = pos;
        sl->len = len;
        sl->st = SLOT_BUSY;
        if ((r = blk_image_aio_write(img, pos, len, sl->buf, 0, slot_cb, sl)) < 0) {
          sl->st = SLOT_FREE;
          rc = fail_lib(r, "write");
        }
      }
      pos += len;
      progress_set(&p, pos);
    }
    off = de;
  }
  struct slot *sl;
  while ((sl = window_get(&w, true)))
    window_reap(&w, sl, "write", &rc);
  if (!rc && (r = blk_image_flush(img)) < 0)
    rc = fail_lib(r, "flush");
  progress_done(&p);
out_win:
  window_destroy(&w);
  r = blk_image_close(img);
  if (r < 0 && !rc)
    rc = fail_lib(r, "close");
out_ctx:
  ctx_close(&x);
out_src:
  if (s.fd >= 0)
    close(s.fd);
  nbd_close(s.nbd);
  return rc;
}

/* ---- export ---- */

static int target_write(int fd, struct nbd_handle *nbd, const void *buf, size_t len, uint64_t off)
{
  if (nbd)
    return nbd_pwrite(nbd, buf, len, off, 0) < 0 ? -EIO : 0;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    done += (size_t)n;
  }
  return 0;
}

/* A completed read: write its non-zero 64 KiB pieces to the target. */
static int export_reap(struct slot *s, int fd, struct nbd_handle *nbd, int *rc)
{
  if (s->st != SLOT_DONE)
    return *rc;
  s->st = SLOT_FREE;
  if (s->result < 0) {
    if (!*rc)
      *rc = blkctl_fail(blkctl_exit_code((int)s->result), "read at offset %llu: %s",
                        (unsigned long long)s->off, s->msg);
    return *rc;
  }
  /* runs of non-zero 4 KiB blocks are written; all-zero blocks of a file
   * target stay holes (an NBD target gets everything) */
  size_t p = 0;
  /* pieces end on absolute 4 KiB boundaries, as the target's blocks do */
#define PIECE(at) (4096 - (size_t)((s->off + (at)) & 4095))
  while (p < s->len && !*rc) {
    size_t n = s->len - p < PIECE(p) ? s->len - p : PIECE(p);
    if (!nbd && all_zero(s->buf + p, n)) {
      p += n;
      continue;
    }
    size_t q = p + n;
    while (q < s->len) {
      size_t m = s->len - q < PIECE(q) ? s->len - q : PIECE(q);
      if (!nbd && all_zero(s->buf + q, m))
        break;
      q += m;
    }
    int r = target_write(fd, nbd, s->buf + p, q - p, s->off + p);
    if (r < 0)
      *rc = blkctl_fail(EIO, "write of the target at %llu failed: %s",
                        (unsigned long long)(s->off + p), nbd ? nbd_get_error() : strerror(-r));
    p = q;
  }
#undef PIECE
  return *rc;
}

static int cmd_export(struct blkctl *b, int argc, char **argv)
{
  if (argc != 4)
    return blkctl_fail(EINVAL, "usage: blkctl image export POOL/NAME FILE|NBD-URI");
  const char *dst = argv[3];
  struct ctx x;
  blk_image *img;
  char name[256];
  int rc = open_image(b, argv[2], BLK_IMAGE_RDONLY, &x, &img, name, sizeof name);
  if (rc)
    return rc;
  uint64_t size = blk_image_size(img);
  int fd = -1;
  struct nbd_handle *nbd = NULL;
  if (is_nbd_uri(dst)) {
    nbd = nbd_create();
    if (!nbd || nbd_connect_uri(nbd, dst) < 0) {
      rc = blkctl_fail(EIO, "cannot connect to %s: %s", dst, nbd_get_error());
      goto out;
    }
    int64_t ts = nbd_get_size(nbd);
    if (ts < 0 || (uint64_t)ts < size) {
      rc = blkctl_fail(ENOSPC, "%s is smaller (%lld bytes) than the image (%llu bytes)", dst,
                       (long long)ts, (unsigned long long)size);
      goto out;
    }
    if (nbd_is_read_only(nbd) == 1) {
      rc = blkctl_fail(EROFS, "%s is read-only", dst);
      goto out;
    }
  } else {
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      rc = blkctl_fail(errno, "cannot create %s: %s", dst, strerror(errno));
      goto out;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fd, (off_t)size) < 0) {
      rc = blkctl_fail(errno, "cannot size %s: %s", dst, strerror(errno));
      goto out;
    }
  }
  struct window w;
  if (window_init(&w) < 0) {
    window_destroy(&w);
    rc = blkctl_fail(ENOMEM, "out of memory");
    goto out;
  }
  struct progress p;
  progress_init(&p, "Exporting", size);
  uint64_t off = 0;
  while (off < size && !rc) {
    struct blk_extent *ext;
    size_t n;
    char msg[256];
    int r = block_status(img, off, size - off, &ext, &n, msg, sizeof msg);
    if (r < 0) {
      rc = blkctl_fail(blkctl_exit_code(r), "block status at %llu: %s", (unsigned long long)off,
                       msg);
      break;
    }
    for (size_t i = 0; i < n && !rc; i++) {
      uint64_t es = ext[i].offset, ee = es + ext[i].length;
      if (ext[i].flags & BLK_EXTENT_HOLE) {
        if (nbd) {
          int zr = nbd_can_zero(nbd) == 1 ? nbd_zero(nbd, ee - es, es, 0) : -1;
          if (zr < 0) {
            for (uint64_t q = es; q < ee && !rc; q += COPY_CHUNK) {
              size_t zl = ee - q < COPY_CHUNK ? (size_t)(ee - q) : COPY_CHUNK;
              struct slot *sl = window_get(&w, false);
              if (export_reap(sl, fd, nbd, &rc))
                break;
              memset(sl->buf, 0, zl);
              if (target_write(fd, nbd, sl->buf, zl, q) < 0)
                rc = blkctl_fail(EIO, "write of %s: %s", dst, nbd_get_error());
            }
          }
        }
        continue;
      }
      for (uint64_t q = es; q < ee && !rc;) {
        uint64_t lim = (q / COPY_CHUNK + 1) * COPY_CHUNK;
        size_t len = (size_t)((lim < ee ? lim : ee) - q);
        struct slot *sl = window_get(&w, false);
        if (export_reap(sl, fd, nbd, &rc))
          break;
        sl->off = q;
        sl->len = len;
        sl->st = SLOT_BUSY;
        if ((r = blk_image_aio_read(img, q, len, sl->buf, slot_cb, sl)) < 0) {
          sl->st = SLOT_FREE;
          rc = fail_lib(r, "read");
        }
        q += len;
      }
    }
    off = n ? ext[n - 1].offset + ext[n - 1].length : size;
    free(ext);
    progress_set(&p, off);
  }
  struct slot *sl;
  while ((sl = window_get(&w, true)))
    export_reap(sl, fd, nbd, &rc);
  window_destroy(&w);
  progress_done(&p);
  if (!rc && nbd && nbd_flush(nbd, 0) < 0)
    rc = blkctl_fail(EIO, "flush of %s: %s", dst, nbd_get_error());
  if (!rc && fd >= 0 && fsync(fd) < 0 && errno != EINVAL)
    rc = blkctl_fail(errno, "fsync of %s: %s", dst, strerror(errno));
out:
  if (fd >= 0 && close(fd) < 0 && !rc)
    rc = blkctl_fail(errno, "close of %s: %s", dst, strerror(errno));
  if (nbd) {
    nbd_shutdown(nbd, 0);
    nbd_close(nbd);
  }
  blk_image_close(img);
  ctx_close(&x);
  return rc;
}

/* ---- bench ---- */

struct bench {
  blk_image *img;
  bool write, rand;
  uint64_t io_size, total, size;
  uint64_t issued_bytes, next_off;
  uint64_t done, errors;
  int first_err;
  char first_msg[256];
  int64_t *lat_us;
  size_t n_lat, cap_lat;
  unsigned inflight;
  uint64_t rng;
  pthread_mutex_t m;
  pthread_cond_t cv;
};

struct bench_op {
  struct bench *b;
  uint8_t *buf;
  int64_t t0_us;
};

static int64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void bench_cb(void *arg, int64_t result);

/* Issue the next op for slot op; call with b->m held.  false when done. */
static bool bench_issue(struct bench *b, struct bench_op *op)
{
  if (b->issued_bytes >= b->total)
    return false;
  uint64_t blocks = b->size / b->io_size;
  uint64_t off;
  if (b->rand) {
    off = (rng_next(&b->rng) % blocks) * b->io_size;
  } else {
    off = b->next_off;
    b->next_off += b->io_size;
    if (b->next_off + b->io_size > b->size)
      b->next_off = 0;
  }
  b->issued_bytes += b->io_size;
  b->inflight++;
  op->t0_us = now_us();
  int r = b->write ? blk_image_aio_write(b->img, off, b->io_size, op->buf, 0, bench_cb, op)
                   : blk_image_aio_read(b->img, off, b->io_size, op->buf, bench_cb, op);
  if (r < 0) {
    b->inflight--;
    b->errors++;
    if (!b->first_err) {
      b->first_err = r;
      snprintf(b->first_msg, sizeof b->first_msg, "%s", blk_last_error());
    }
    return false;
  }
  return true;
}

static void bench_cb(void *arg, int64_t result)
{
  struct bench_op *op = arg;
  struct bench *b = op->b;
  int64_t lat = now_us() - op->t0_us;
  pthread_mutex_lock(&b->m);
  b->inflight--;
  if (result < 0) {
    b->errors++;
    if (!b->first_err) {
      b->first_err = (int)result;
      snprintf(b->first_msg, sizeof b->first_msg, "%s", blk_last_error());
    }
  } else {
    b->done++;
    if (b->n_lat < b->cap_lat)
      b->lat_us[b->n_lat++] = lat;
  }
  if (!b->first_err)
    bench_issue(b, op);
  if (b->inflight == 0)
    pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->m);
}

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int cmd_bench(struct blkctl *bc, int argc, char **argv)
{
  struct bench b = { .io_size = 4096, .total = 1ull << 30, .rand = false, .rng = 0x9e3779b97f4a7c15ull };
  unsigned threads = 16;
  const char *type = NULL;
  int rc;
  if (argc < 3)
    return blkctl_fail(EINVAL, "usage: blkctl image bench POOL/NAME --io-type write|read "
                               "[--io-size 4K] [--io-threads 16] [--io-pattern rand|seq] "
                               "[--io-total 1G]");
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--io-type") && i + 1 < argc) {
      type = argv[++i];
    } else if (!strcmp(argv[i], "--io-size") && i + 1 < argc) {
      if ((rc = parse_size_arg("--io-size", argv[++i], &b.io_size)))
        return rc;
    } else if (!strcmp(argv[i], "--io-threads") && i + 1 < argc) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 1024)
        return blkctl_fail(EINVAL, "bad --io-threads '%s' (1..1024)", argv[i]);
      threads = (unsigned)v;
    } else if (!strcmp(argv[i], "--io-pattern") && i + 1 < argc) {
      const char *p = argv[++i];
      if (!strcmp(p, "rand"))
        b.rand = true;
      else if (!strcmp(p, "seq"))
        b.rand = false;
      else
        return blkctl_fail(EINVAL, "bad --io-pattern '%s' (rand or seq)", p);
    } else if (!strcmp(argv[i], "--io-total") && i + 1 < argc) {
      if ((rc = parse_size_arg("--io-total", argv[++i], &b.total)))
        return rc;
    } else {
      return blkctl_fail(EINVAL, "unknown option '%s'", argv[i]);
    }
  }
  if (!type || (strcmp(type, "write") && strcmp(type, "read")))
    return blkctl_fail(EINVAL, "--io-type write|read is required");
  b.write = !strcmp(type, "write");
  if (b.io_size > (64u << 20))
    return blkctl_fail(EINVAL, "--io-size at most 64M");
  struct ctx x;
  char name[256];
  if ((rc = open_image(bc, argv[2], b.write ? BLK_IMAGE_EXCLUSIVE : BLK_IMAGE_RDONLY, &x, &b.img,
                       name, sizeof name)))
    return rc;
  b.size = blk_image_size(b.img);
  if (b.size < b.io_size) {
    rc = blkctl_fail(EINVAL, "image '%s' (%llu bytes) is smaller than --io-size", name,
                     (unsigned long long)b.size);
    goto out;
  }
  b.cap_lat = (size_t)(b.total / b.io_size) + 1;
  b.lat_us = malloc(b.cap_lat * sizeof *b.lat_us);
  struct bench_op *ops = calloc(threads, sizeof *ops);
  if (!b.lat_us || !ops) {
    free(ops);
    rc = blkctl_fail(ENOMEM, "out of memory");
    goto out;
  }
  pthread_mutex_init(&b.m, NULL);
  pthread_cond_init(&b.cv, NULL);
  for (unsigned i = 0; i < threads; i++) {
    ops[i].b = &b;
    ops[i].buf = malloc(b.io_size);
    if (ops[i].buf)
      for (uint64_t k = 0; k < b.io_size; k++)
        ops[i].buf[k] = (uint8_t)(k * 131 + i * 7 + 1);
  }
  int64_t t0 = now_us();
  pthread_mutex_lock(&b.m);
  for (unsigned i = 0; i < threads; i++)
    if (!ops[i].buf || !bench_issue(&b, &ops[i]))
      break;
  while (b.inflight > 0)
    pthread_cond_wait(&b.cv, &b.m);
  pthread_mutex_unlock(&b.m);
  double el = (double)(now_us() - t0) / 1e6;
  qsort(b.lat_us, b.n_lat, sizeof *b.lat_us, cmp_i64);
#define PCT(p) (b.n_lat ? b.lat_us[(size_t)((double)(b.n_lat - 1) * (p))] : 0)
  double iops = el > 0 ? (double)b.done / el : 0;
  double lat_sum = 0;
  for (size_t k = 0; k < b.n_lat; k++)
    lat_sum += (double)b.lat_us[k];
  double lat_mean = b.n_lat ? lat_sum / (double)b.n_lat : 0;
  double mibs = iops * (double)b.io_size / 1048576.0;
  if (bc->json) {
    json_begin_obj();
    json_str("io_type", type);
    json_str("io_pattern", b.rand ? "rand" : "seq");
    json_uint("io_size", b.io_size);
    json_uint("io_threads", threads);
    json_uint("ops", b.done);
    json_uint("errors", b.errors);
    json_double("seconds", el);
    json_double("iops", iops);
    json_double("mib_s", mibs);
    json_double("lat_mean_us", lat_mean);
    json_int("lat_p50_us", PCT(0.5));
    json_int("lat_p90_us", PCT(0.9));
    json_int("lat_p99_us", PCT(0.99));
    json_int("lat_p999_us", PCT(0.999));
    json_end_obj();
    json_done();
  } else {
    printf("bench %s %s io_size %llu io_threads %u: %llu ops in %.2f s\n"
           "  %.0f IOPS, %.2f MiB/s, latency mean %.0f us, p50 %lld us, p90 %lld us, p99 %lld us, "
           "p99.9 %lld us\n",
           b.rand ? "rand" : "seq", type, (unsigned long long)b.io_size, threads,
           (unsigned long long)b.done, el, iops, mibs, lat_mean, (long long)PCT(0.5),
           (long long)PCT(0.9), (long long)PCT(0.99), (long long)PCT(0.999));
  }
  if (b.errors)
    rc = blkctl_fail(blkctl_exit_code(b.first_err), "%llu ops failed (first: %s)",
                     (unsigned long long)b.errors, b.first_msg);
  for (unsigned i = 0; i < threads; i++)
    free(ops[i].buf);
  free(ops);
  pthread_mutex_destroy(&b.m);
  pthread_cond_destroy(&b.cv);
out:
  free(b.lat_us);
  {
    int r = blk_image_close(b.img);
    if (r < 0 && !rc)
      rc = fail_lib(r, "close");
  }
  ctx_close(&x);
  return rc;
}

/* ---- snapshots ---- */

/* progress callback of rollback and flatten: arg is the progress bar */
static void lib_progress(uint64_t done, uint64_t total, void *arg)
{
  progress_set(arg, done);
  (void)total;
}

static int cmd_snap(struct blkctl *b, int argc, char **argv)
{
  const char *usage = "usage: blkctl image snap create|rm|rollback|protect|unprotect "
                      "POOL/NAME@SNAP | snap rename POOL/NAME@SNAP NEWSNAP | snap ls POOL/NAME";
  if (argc < 4)
    return blkctl_fail(EINVAL, "%s", usage);
  const char *op = argv[2];
  bool ls = !strcmp(op, "ls") || !strcmp(op, "list");
  bool rename = !strcmp(op, "rename") || !strcmp(op, "mv");
  if (argc != (rename ? 5 : 4))
    return blkctl_fail(EINVAL, "%s", usage);
  char spec[600];
  snprintf(spec, sizeof spec, "%s", argv[3]);
  char *at = strchr(spec, '@');
  if (ls ? at != NULL : !at || !at[1])
    return blkctl_fail(EINVAL, "%s: '%s' %s", op, argv[3],
                       ls ? "names an image, not a snapshot (POOL/NAME)"
                          : "must name a snapshot (POOL/NAME@SNAP)");
  const char *snap = NULL;
  if (at) {
    *at = 0;
    snap = at + 1;
  }
  bool rollback = !strcmp(op, "rollback");
  if (!ls && !rename && !rollback && strcmp(op, "create") && strcmp(op, "rm") &&
      strcmp(op, "remove") && strcmp(op, "protect") && strcmp(op, "unprotect"))
    return blkctl_fail(EINVAL, "unknown snap command '%s'; %s", op, usage);
  struct ctx x;
  blk_image *img;
  char name[256];
  int rc = open_image(b, spec, rollback ? BLK_IMAGE_EXCLUSIVE : BLK_IMAGE_RDONLY, &x, &img, name,
                      sizeof name);
  if (rc)
    return rc;
  int r = 0;
  if (ls) {
    struct blk_snap_info *v;
    size_t n;
    r = blk_image_snap_list(img, &v, &n);
    if (r == 0) {
      if (b->json)
        json_begin_arr(NULL);
      else
        printf("%6s  %-24s %14s  %-19s  %s\n", "SNAPID", "NAME", "SIZE", "TIMESTAMP", "PROTECTED");
      for (size_t i = 0; i < n; i++) {
        time_t t = (time_t)(v[i].create_time_ms / 1000);
        struct tm tm;
        char ts[32];
        gmtime_r(&t, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        if (b->json) {
          json_begin_obj();
          json_uint("id", v[i].id);
          json_str("name", v[i].name);
          json_uint("size", v[i].size);
          json_uint("timestamp_ms", v[i].create_time_ms);
          json_bool("protected", v[i].is_protected);
          json_end_obj();
        } else {
          printf("%6llu  %-24s %14llu  %-19s  %s\n", (unsigned long long)v[i].id, v[i].name,
                 (unsigned long long)v[i].size, ts, v[i].is_protected ? "yes" : "no");
        }
      }
      if (b->json) {
        json_end_arr();
        json_done();
      }
      blk_image_snap_list_free(v);
    }
  } else if (!strcmp(op, "create")) {
    r = blk_image_snap_create(img, snap);
  } else if (!strcmp(op, "rm") || !strcmp(op, "remove")) {
    r = blk_image_snap_remove(img, snap);
  } else if (!strcmp(op, "protect")) {
    r = blk_image_snap_protect(img, snap);
  } else if (!strcmp(op, "unprotect")) {
    r = blk_image_snap_unprotect(img, snap);
  } else if (rename) {
    r = blk_image_snap_rename(img, snap, argv[4]);
  } else {
    struct progress pr;
    progress_init(&pr, "Rolling back", blk_image_size(img));
    r = blk_image_snap_rollback(img, snap, lib_progress, &pr);
    progress_done(&pr);
  }
  if (r < 0) {
    char what[300];
    snprintf(what, sizeof what, "snap %s %s@%s", op, name, snap ? snap : "");
    rc = fail_lib(r, what);
  }
  r = blk_image_close(img);
  if (r < 0 && !rc)
    rc = fail_lib(r, "close");
  ctx_close(&x);
  return rc;
}

/* ---- clones ---- */

static int cmd_clone(struct blkctl *b, int argc, char **argv)
{
  if (argc != 4)
    return blkctl_fail(EINVAL, "usage: blkctl image clone POOL/NAME@SNAP POOL/CHILD");
  char pool[64], name[256], cpool[64], child[256];
  int rc;
  if ((rc = split_spec(argv[2], pool, sizeof pool, name, sizeof name)) ||
      (rc = split_spec(argv[3], cpool, sizeof cpool, child, sizeof child)))
    return rc;
  char *at = strchr(name, '@');
  if (!at || !at[1])
    return blkctl_fail(EINVAL, "clone: '%s' must name a snapshot (POOL/NAME@SNAP)", argv[2]);
  *at++ = 0;
  if (strcmp(pool, cpool))
    return blkctl_fail(EXDEV, "clone: the child must be in the parent's pool '%s'", pool);
  struct ctx x;
  if ((rc = connect_pool(b, pool, &x)))
    return rc;
  int r = blk_image_clone(x.io, name, at, child);
  if (r < 0)
    rc = fail_lib(r, "cannot clone");
  ctx_close(&x);
  return rc;
}

static int cmd_children(struct blkctl *b, int argc, char **argv)
{
  if (argc != 3)
    return blkctl_fail(EINVAL, "usage: blkctl image children POOL/NAME[@SNAP]");
  char spec[600];
  snprintf(spec, sizeof spec, "%s", argv[2]);
  char *at = strchr(spec, '@');
  if (at)
    *at++ = 0;
  struct ctx x;
  blk_image *img;
  char name[256];
  int rc = open_image(b, spec, BLK_IMAGE_RDONLY, &x, &img, name, sizeof name);
  if (rc)
    return rc;
  char **v;
  size_t n;
  int r = blk_image_children(img, at, &v, &n);
  if (r < 0) {
    rc = fail_lib(r, "cannot list children");
  } else {
    if (b->json)
      json_begin_arr(NULL);
    for (size_t i = 0; i < n; i++) {
      if (b->json)
        json_str(NULL, v[i]);
      else
        printf("%s\n", v[i]);
    }
    if (b->json) {
      json_end_arr();
      json_done();
    }
    blk_image_list_free(v, n);
  }
  blk_image_close(img);
  ctx_close(&x);
  return rc;
}

static int cmd_flatten(struct blkctl *b, int argc, char **argv)
{
  if (argc != 3)
    return blkctl_fail(EINVAL, "usage: blkctl image flatten POOL/CHILD");
  struct ctx x;
  blk_image *img;
  char name[256];
  int rc = open_image(b, argv[2], BLK_IMAGE_EXCLUSIVE, &x, &img, name, sizeof name);
  if (rc)
    return rc;
  struct progress pr;
  progress_init(&pr, "Flattening", blk_image_size(img));
  int r = blk_image_flatten(img, lib_progress, &pr);
  progress_done(&pr);
  if (r < 0)
    rc = fail_lib(r, "cannot flatten");
  r = blk_image_close(img);
  if (r < 0 && !rc)
    rc = fail_lib(r, "close");
  ctx_close(&x);
  return rc;
}

/* ---- diffs ---- */

#define DIFF_CHUNK (64u << 10)
#define DIFF_MAGIC "blkdiff1"

struct diff_out {
  bool list;                     /* image diff: text lines */
  bool count_only;               /* image du: count the bytes only */
  FILE *f;                       /* export-diff stream */
  uint64_t run_off, run_len;     /* pending run */
  int run_kind;                  /* 0 none, 'W' data, 'Z' zero */
  uint8_t *run_buf;              /* data of a pending 'W' run (up to COPY_CHUNK) */
  uint64_t bytes;
};

static int put_u64(FILE *f, uint64_t v)
{
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  return fwrite(b, 1, 8, f) == 8 ? 0 : -EIO;
}

static int get_u64(FILE *f, uint64_t *v)
{
  uint8_t b[8];
  if (fread(b, 1, 8, f) != 8)
    return -EIO;
  *v = 0;
  for (int i = 7; i >= 0; i--)
    *v = *v << 8 | b[i];
  return 0;
}

static int diff_flush(struct diff_out *d)
{
  if (!d->run_kind)
    return 0;
  d->bytes += d->run_len;
  int r = 0;
  if (d->count_only) {
  } else if (d->list) {
    printf("%llu %llu %s\n", (unsigned long long)d->run_off, (unsigned long long)d->run_len,
           d->run_kind == 'W' ? "data" : "zero");
  } else if (fputc(d->run_kind, d->f) == EOF || put_u64(d->f, d->run_off) ||
             put_u64(d->f, d->run_len) ||
             (d->run_kind == 'W' && fwrite(d->run_buf, 1, d->run_len, d->f) != d->run_len)) {
    r = -EIO;
  }
  d->run_kind = 0;
  return r;
}

static int diff_emit(struct diff_out *d, int kind, uint64_t off, uint64_t len, const uint8_t *data)
{
  if (d->run_kind == kind && d->run_off + d->run_len == off && d->run_len + len <= COPY_CHUNK) {
    if (kind == 'W' && !d->list)
      memcpy(d->run_buf + d->run_len, data, len);
    d->run_len += len;
    return 0;
  }
  int r = diff_flush(d);
  d->run_kind = kind;
  d->run_off = off;
  d->run_len = len;
  if (kind == 'W' && !d->list)
    memcpy(d->run_buf, data, len);
  return r;
}

/* Walk `to` against `from` (NULL: against zeroes) and emit what differs. */
static int diff_walk(blk_image *from, blk_image *to, struct diff_out *d)
{
  uint64_t size = blk_image_size(to);
  uint64_t fsize = from ? blk_image_size(from) : 0;
  uint8_t *a = malloc(DIFF_CHUNK), *b = malloc(DIFF_CHUNK);
  int r = a && b ? 0 : -ENOMEM;
  for (uint64_t off = 0; r == 0 && off < size;) {
    /* skip what is a hole in both */
    struct blk_extent *ex = NULL, *fx = NULL;
    size_t n = 0, fn = 0;
    uint64_t span = size - off < COPY_CHUNK * 16ull ? size - off : COPY_CHUNK * 16ull;
    char msg[256];
    if ((r = block_status(to, off, span, &ex, &n, msg, sizeof msg)) < 0)
      break;
    if (from && off < fsize &&
        (r = block_status(from, off, fsize - off < span ? fsize - off : span, &fx, &fn, msg,
                          sizeof msg)) < 0) {
      free(ex);
      break;
    }
    for (uint64_t c = off; r == 0 && c < off + span; c += DIFF_CHUNK) {
      uint64_t len = off + span - c < DIFF_CHUNK ? off + span - c : DIFF_CHUNK;
      bool data = false;
      for (size_t i = 0; i < n; i++)
        data |= !(ex[i].flags & BLK_EXTENT_HOLE) && ex[i].offset < c + len &&
                ex[i].offset + ex[i].length > c;
      for (size_t i = 0; i < fn; i++)
        data |= !(fx[i].flags & BLK_EXTENT_HOLE) && fx[i].offset < c + len &&
                fx[i].offset + fx[i].length > c;
      if (!data)
        continue;
      if (blk_image_read(to, c, len, b) != (int64_t)len) {
        r = -EIO;
        break;
      }
      memset(a, 0, len);
      if (from && c < fsize) {
        uint64_t fl = fsize - c < len ? fsize - c : len;
        if (blk_image_read(from, c, fl, a) != (int64_t)fl) {
          r = -EIO;
          break;
        }
      }
      if (!memcmp(a, b, len))
        continue;
      r = diff_emit(d, all_zero(b, len) ? 'Z' : 'W', c, len, b);
    }
    free(ex);
    free(fx);
    off += span;
  }
  if (r == 0)
    r = diff_flush(d);
  free(a);
  free(b);
  return r;
}

static uint64_t diff_count(blk_image *from, blk_image *to, int *err)
{
  struct diff_out d = { .list = true, .count_only = true };
  *err = diff_walk(from, to, &d);
  return d.bytes;
}

/* Open POOL/NAME[@TO] and, with --from-snap, the FROM snapshot too. */
static int diff_open(struct blkctl *b, int argc, char **argv, int first_opt, struct ctx *x,
                     blk_image **to, blk_image **from, const char **from_snap, char *name,
                     size_t nn, const char **to_snap, char *spec, size_t sn)
{
  *from = NULL;
  *from_snap = NULL;
  for (int i = first_opt; i < argc; i++) {
    if (!strcmp(argv[i], "--from-snap") && i + 1 < argc)
      *from_snap = argv[++i];
    else
      return blkctl_fail(EINVAL, "unknown option '%s'", argv[i]);
  }
  snprintf(spec, sn, "%s", argv[2]);
  char *at = strchr(spec, '@');
  *to_snap = at ? at + 1 : NULL;
  int rc = open_image(b, argv[2], BLK_IMAGE_RDONLY, x, to, name, nn);
  if (rc)
    return rc;
  if (*from_snap) {
    char *a2 = strchr(name, '@');
    if (a2)
      *a2 = 0;
    int r = blk_image_open(x->io, name, *from_snap, BLK_IMAGE_RDONLY, from);
    if (r < 0) {
      rc = fail_lib(r, "cannot open the --from-snap snapshot");
      blk_image_close(*to);
      ctx_close(x);
      return rc;
    }
  }
  return 0;
}

static int cmd_diff(struct blkctl *b, int argc, char **argv)
{
  bool exp = !strcmp(argv[1], "export-diff");
  if (argc < (exp ? 4 : 3))
    return blkctl_fail(EINVAL, "usage: blkctl image %s POOL/NAME[@TO] [--from-snap FROM]%s",
                       argv[1], exp ? " FILE|-" : "");
  const char *file = exp ? argv[argc - 1] : NULL;
  struct ctx x;
  blk_image *to, *from;
  const char *from_snap = NULL, *to_snap = NULL;
  char name[256], spec[600];
  int rc = diff_open(b, exp ? argc - 1 : argc, argv, 3, &x, &to, &from, &from_snap, name,
                     sizeof name, &to_snap, spec, sizeof spec);
  if (rc)
    return rc;
  struct diff_out d = { .list = !exp };
  int r = 0;
  if (exp) {
    d.run_buf = malloc(COPY_CHUNK);
    d.f = !strcmp(file, "-") ? stdout : fopen(file, "wb");
    if (!d.f || !d.run_buf) {
      rc = blkctl_fail(EIO, "cannot write '%s': %s", file, strerror(errno));
      goto out;
    }
    const char *fs = from_snap ? from_snap : "", *ts = to_snap ? to_snap : "";
    fwrite(DIFF_MAGIC, 1, 8, d.f);
    fputc('F', d.f);
    put_u64(d.f, strlen(fs));
    fwrite(fs, 1, strlen(fs), d.f);
    fputc('T', d.f);
    put_u64(d.f, strlen(ts));
    fwrite(ts, 1, strlen(ts), d.f);
    fputc('S', d.f);
    put_u64(d.f, blk_image_size(to));
  }
  r = diff_walk(from, to, &d);
  if (exp && r == 0 && (fputc('E', d.f) == EOF || fflush(d.f)))
    r = -EIO;
  if (r < 0)
    rc = fail_lib(r, "diff");
  else if (exp)
    fprintf(stderr, "exported %llu changed bytes\n", (unsigned long long)d.bytes);
out:
  if (d.f && d.f != stdout && fclose(d.f) && !rc)
    rc = blkctl_fail(EIO, "cannot write '%s'", file);
  free(d.run_buf);
  if (from)
    blk_image_close(from);
  blk_image_close(to);
  ctx_close(&x);
  return rc;
}

static int cmd_import_diff(struct blkctl *b, int argc, char **argv)
{
  if (argc != 4)
    return blkctl_fail(EINVAL, "usage: blkctl image import-diff FILE|- POOL/NAME");
  FILE *f = !strcmp(argv[2], "-") ? stdin : fopen(argv[2], "rb");
  if (!f)
    return blkctl_fail(errno == ENOENT ? ENOENT : EIO, "cannot read '%s': %s", argv[2],
                       strerror(errno));
  char magic[8];
  char fs[256] = "", ts[256] = "";
  uint64_t n, size;
  int rc = 0;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, DIFF_MAGIC, 8) || fgetc(f) != 'F' ||
      get_u64(f, &n) || n >= sizeof fs || fread(fs, 1, n, f) != n || fgetc(f) != 'T' ||
      get_u64(f, &n) || n >= sizeof ts || fread(ts, 1, n, f) != (size_t)n || fgetc(f) != 'S' ||
      get_u64(f, &size)) {
    if (f != stdin)
      fclose(f);
    return blkctl_fail(EINVAL, "'%s' is not a blkctl diff stream", argv[2]);
  }
  ts[n] = 0;
  struct ctx x;
  blk_image *img;
  char name[256];
  if ((rc = open_image(b, argv[3], BLK_IMAGE_EXCLUSIVE, &x, &img, name, sizeof name))) {
    if (f != stdin)
      fclose(f);
    return rc;
  }
  uint8_t *buf = malloc(COPY_CHUNK);
  int r = buf ? 0 : -ENOMEM;
  if (r == 0 && fs[0]) {
    /* the target must hold the diff's base snapshot */
    blk_image *base;
    r = blk_image_open(x.io, name, fs, BLK_IMAGE_RDONLY, &base);
    if (r == 0)
      blk_image_close(base);   /* else: "image ... has no snapshot 'FROM'" */
  }
  if (r == 0 && size != blk_image_size(img))
    r = blk_image_resize(img, size);
  for (int k; r == 0 && (k = fgetc(f)) != 'E';) {
    uint64_t off, len;
    if ((k != 'W' && k != 'Z') || get_u64(f, &off) || get_u64(f, &len) || len > COPY_CHUNK ||
        off + len > size) {
      rc = blkctl_fail(EINVAL, "'%s': corrupt diff record", argv[2]);
      r = 1;
      break;
    }
    if (k == 'W') {
      if (fread(buf, 1, len, f) != len) {
        rc = blkctl_fail(EINVAL, "'%s': truncated diff", argv[2]);
        r = 1;
        break;
      }
      r = blk_image_write(img, off, len, buf) == (int64_t)len ? 0 : -EIO;
    } else {
      r = blk_image_discard(img, off, len);
    }
  }
  if (r == 0)
    r = blk_image_flush(img);
  if (r == 0 && ts[0])
    r = blk_image_snap_create(img, ts);   /* the target now matches TO */
  if (r < 0)
    rc = fail_lib(r, "import-diff");
  free(buf);
  if (f != stdin)
    fclose(f);
  int cr = blk_image_close(img);
  if (cr < 0 && !rc)
    rc = fail_lib(cr, "close");
  ctx_close(&x);
  return rc;
}

static void image_usage(FILE *f)
{
  fprintf(f, "usage: blkctl image COMMAND ...\n"
             "  create POOL/NAME --size SIZE [--object-size 4M]\n"
             "  ls POOL [--format json]\n"
             "  info POOL/NAME\n"
             "  resize POOL/NAME --size SIZE [--allow-shrink]\n"
             "  rm POOL/NAME\n"
             "  rename POOL/SRC [POOL/]DST\n"
             "  du POOL/NAME | POOL\n"
             "  import FILE|NBD-URI POOL/NAME [--object-size 4M]\n"
             "  export POOL/NAME FILE|NBD-URI\n"
             "  bench POOL/NAME --io-type write|read [--io-size 4K] [--io-threads 16]\n"
             "        [--io-pattern rand|seq] [--io-total 1G]\n"
             "  snap create|rm|rollback|protect|unprotect POOL/NAME@SNAP\n"
             "  snap rename POOL/NAME@SNAP NEWSNAP | snap ls POOL/NAME [--format json]\n"
             "  (info, du and export take POOL/NAME@SNAP: the snapshot, read-only)\n"
             "  clone POOL/NAME@SNAP POOL/CHILD | children POOL/NAME[@SNAP] | flatten POOL/CHILD\n"
             "  diff POOL/NAME[@TO] [--from-snap FROM]\n"
             "  export-diff POOL/NAME[@TO] [--from-snap FROM] FILE|-\n"
             "  import-diff FILE|- POOL/NAME\n");
}

int cmd_image(struct blkctl *b, int argc, char **argv)
{
  static const struct {
    const char *name;
    int (*fn)(struct blkctl *, int, char **);
  } subs[] = {
    { "create", cmd_create }, { "ls", cmd_ls }, { "list", cmd_ls }, { "info", cmd_info },
    { "resize", cmd_resize }, { "rm", cmd_rm }, { "remove", cmd_rm }, { "rename", cmd_rename },
    { "mv", cmd_rename }, { "du", cmd_du }, { "import", cmd_import }, { "export", cmd_export },
    { "bench", cmd_bench }, { "snap", cmd_snap }, { "clone", cmd_clone },
    { "children", cmd_children }, { "flatten", cmd_flatten }, { "diff", cmd_diff },
    { "export-diff", cmd_diff }, { "import-diff", cmd_import_diff },
  };
  if (argc < 2) {
    image_usage(stderr);
    return EINVAL;
  }
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
    if (!strcmp(argv[1], subs[i].name))
      return subs[i].fn(b, argc, argv);
  fprintf(stderr, "blkctl: unknown image command '%s'\n", argv[1]);
  image_usage(stderr);
  return EINVAL;
}
