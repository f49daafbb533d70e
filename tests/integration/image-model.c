/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a libblk test driver that checks an image byte for byte
 * against an in-memory model, through the public API only (so it also is
 * the library's leak check under ASan/LSan).
 *   image-model POOL IMAGE model [--ops N] [--seed S]
 *     creates IMAGE (24 MiB, 1 MiB objects), then N random synchronous
 *     ops: writes, reads, discards, write-zeroes (both flags), resizes
 *     (grow and shrink), flushes and block-status queries, each compared
 *     with the model (block status: every byte reported as a hole must be
 *     zero in the model), and checks the error paths (I/O past the end,
 *     zero-length discard, bad open flags); finally reopens the image and
 *     compares all of it.
 *   image-model POOL IMAGE threads [--qd N] [--ops N]
 *     N application threads share one open image, each doing synchronous
 *     writes, reads (checked) and discards in its own 3 MiB region.
 *   image-model POOL IMAGE stress [--seconds S] [--qd N] [--seed S]
 *     keeps N aio writes and reads in flight on 4 KiB-aligned ranges that
 *     never overlap an in-flight write; an acknowledged write updates the
 *     model; any error is a failure (transient failures must not reach the
 *     caller).  On SIGUSR1-free completion it flushes and verifies the
 *     whole image.  Prints "acked N writes".
 * Exit 0 on success, 1 on a mismatch or error (with a message).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blk/libblk.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static uint64_t rnd_below(uint64_t n)
{
  return n ? rnd() % n : 0;
}

#define die(...)                                                                 \
  do {                                                                           \
    fprintf(stderr, "image-model: " __VA_ARGS__);                                \
    fprintf(stderr, " (last error: %s)\n", blk_last_error());                    \
    exit(1);                                                                     \
  } while (0)

static uint8_t *model;
static uint64_t msize;

static void model_resize(uint64_t size)
{
  uint8_t *m = realloc(model, size);
  if (!m)
    die("out of memory");
  if (size > msize)
    memset(m + msize, 0, size - msize);
  model = m;
  msize = size;
}

static void fill(uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(rnd() | 1);
}

static void verify_all(blk_image *img, const char *when)
{
  uint8_t *buf = malloc(msize);
  if (!buf)
    die("out of memory");
  int64_t n = blk_image_read(img, 0, msize, buf);
  if (n != (int64_t)msize)
    die("%s: full read returned %" PRId64, when, n);
  for (uint64_t i = 0; i < msize; i++)
    if (buf[i] != model[i])
      die("%s: byte %" PRIu64 " is %u, model %u", when, i, buf[i], model[i]);
  free(buf);
}

struct bs_wait {
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
  int result;
  struct blk_extent ext[256];
  size_t n;
};

static void bs_cb(void *arg, int result, const struct blk_extent *ext, size_t n)
{
  struct bs_wait *w = arg;
  pthread_mutex_lock(&w->m);
  w->result = result;
  if (result == 0) {
    if (n > 256 || n == 0)
      w->result = -ERANGE;
    else
      memcpy(w->ext, ext, n * sizeof *ext);
    w->n = n;
  }
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->m);
}

static void check_block_status(blk_image *img, uint64_t off, uint64_t len)
{
  struct bs_wait w = { .done = false };
  pthread_mutex_init(&w.m, NULL);
  pthread_cond_init(&w.cv, NULL);
  int r = blk_image_aio_block_status(img, off, len, bs_cb, &w);
  if (r < 0)
    die("block status %" PRIu64 "+%" PRIu64 ": %d", off, len, r);
  pthread_mutex_lock(&w.m);
  while (!w.done)
    pthread_cond_wait(&w.cv, &w.m);
  pthread_mutex_unlock(&w.m);
  pthread_mutex_destroy(&w.m);
  pthread_cond_destroy(&w.cv);
  if (w.result < 0)
    die("block status %" PRIu64 "+%" PRIu64 " failed: %d", off, len, w.result);
  uint64_t pos = off;
  for (size_t i = 0; i < w.n; i++) {
    if (w.ext[i].offset != pos || w.ext[i].length == 0)
      die("block status: extent %zu at %" PRIu64 "+%" PRIu64 " not contiguous from %" PRIu64, i,
          w.ext[i].offset, w.ext[i].length, pos);
    if (w.ext[i].flags & BLK_EXTENT_ZERO)
      for (uint64_t k = w.ext[i].offset; k < w.ext[i].offset + w.ext[i].length; k++)
        if (model[k])
          die("block status says %" PRIu64 "+%" PRIu64 " reads as zeroes, but byte %" PRIu64
              " is %u", w.ext[i].offset, w.ext[i].length, k, model[k]);
    pos += w.ext[i].length;
  }
  if (pos > off + len || pos == off)
    die("block status covered %" PRIu64 "..%" PRIu64 " for %" PRIu64 "+%" PRIu64, off, pos, off,
        len);
}

static void expect_err(int64_t r, int want, const char *what)
{
  if (r != want)
    die("%s returned %" PRId64 ", want %d", what, r, want);
  if (!*blk_last_error())
    die("%s: no error message", what);
  printf("ok: %s -> %d: %s\n", what, want, blk_last_error());
}

static int run_model(blk_ioctx *io, const char *name, long ops)
{
  uint64_t size = 24ull << 20;
  int r = blk_image_create(io, name, size, 20);
  if (r < 0)
    die("create %s: %d", name, r);
  expect_err(blk_image_create(io, name, size, 20), -EEXIST, "create of an existing image");
  expect_err(blk_image_create(io, "zero", 0, 20), -EINVAL, "create with size 0");
  expect_err(blk_image_create(io, "bad", 1 << 20, 30), -EINVAL, "create with order 30");
  blk_image *img;
  expect_err(blk_image_open(io, "nosuch", NULL, 0, &img), -ENOENT, "open of a missing image");
  if ((r = blk_image_open(io, name, NULL, 0, &img)) < 0)
    die("open: %d", r);
  model_resize(size);
  uint8_t *buf = malloc(4u << 20), *rbuf = malloc(4u << 20);
  if (!buf || !rbuf)
    die("out of memory");
  expect_err(blk_image_write(img, size, 1, buf), -EINVAL, "write at the end");
  expect_err(blk_image_write(img, size - 10, 20, buf), -EINVAL, "write across the end");
  expect_err(blk_image_read(img, size + 4096, 1, rbuf), -EINVAL, "read past the end");
  expect_err(blk_image_discard(img, 0, 0), -EINVAL, "discard of zero length");
  expect_err(blk_image_discard(img, size - 1, 2), -EINVAL, "discard across the end");
  for (long i = 0; i < ops; i++) {
    uint64_t kind = rnd_below(100);
    uint64_t maxlen = (4u << 20) < msize ? (4u << 20) : msize;
    uint64_t len = 1 + rnd_below(rnd_below(4) == 0 ? maxlen : 70000);
    if (len > msize)
      len = msize;
    uint64_t off = rnd_below(msize - len + 1);
    if (rnd_below(3) == 0)   /* object-aligned edges half the time */
      off = (off >> 20) << 20;
    if (off + len > msize)
      len = msize - off;
    if (kind < 40) {
      fill(buf, len);
      int64_t n = blk_image_write(img, off, len, buf);
      if (n != (int64_t)len)
        die("op %ld: write %" PRIu64 "+%" PRIu64 " returned %" PRId64, i, off, len, n);
      memcpy(model + off, buf, len);
    } else if (kind < 65) {
      int64_t n = blk_image_read(img, off, len, rbuf);
      if (n != (int64_t)len)
        die("op %ld: read %" PRIu64 "+%" PRIu64 " returned %" PRId64, i, off, len, n);
      if (memcmp(rbuf, model + off, len)) {
        for (uint64_t k = 0; k < len; k++)
          if (rbuf[k] != model[off + k])
            die("op %ld: read %" PRIu64 "+%" PRIu64 ": byte %" PRIu64 " is %u, model %u", i, off,
                len, off + k, rbuf[k], model[off + k]);
      }
    } else if (kind < 75) {
      if ((r = blk_image_discard(img, off, len)) < 0)
        die("op %ld: discard %" PRIu64 "+%" PRIu64 ": %d", i, off, len, r);
      memset(model + off, 0, len);
    } else if (kind < 82) {
      int fl = rnd_below(2) ? BLK_ZERO_NO_HOLE : 0;
      if ((r = blk_image_write_zeroes(img, off, len, fl)) < 0)
        die("op %ld: write_zeroes %" PRIu64 "+%" PRIu64 ": %d", i, off, len, r);
      memset(model + off, 0, len);
    } else if (kind < 90) {
      check_block_status(img, off, len);
    } else if (kind < 95) {
      if ((r = blk_image_flush(img)) < 0)
        die("op %ld: flush: %d", i, r);
    } else {
      uint64_t ns = (1 + rnd_below(32)) << 20;
      ns += rnd_below(2) ? rnd_below(1 << 20) : 0;
      if ((r = blk_image_resize(img, ns)) < 0)
        die("op %ld: resize to %" PRIu64 ": %d", i, ns, r);
      if (blk_image_size(img) != ns)
        die("op %ld: size %" PRIu64 " after resize to %" PRIu64, i, blk_image_size(img), ns);
      model_resize(ns);
    }
  }
  verify_all(img, "before close");
  struct blk_image_info info;
  if (blk_image_stat(img, &info) < 0 || info.size != msize || info.order != 20 ||
      info.object_size != (1u << 20) || info.num_objects != (msize + (1 << 20) - 1) >> 20)
    die("stat mismatch");
  if ((r = blk_image_close(img)) < 0)
    die("close: %d", r);
  if ((r = blk_image_open(io, name, NULL, BLK_IMAGE_RDONLY, &img)) < 0)
    die("reopen: %d", r);
  if (blk_image_size(img) != msize)
    die("size after reopen %" PRIu64 ", model %" PRIu64, blk_image_size(img), msize);
  expect_err(blk_image_write(img, 0, 1, buf), -EROFS, "write to a read-only image");
  verify_all(img, "after reopen");
  blk_image_close(img);
  printf("model: %ld ops, final size %" PRIu64 ": all bytes match\n", ops, msize);
  if ((r = blk_image_remove(io, name)) < 0)
    die("remove: %d", r);
  free(buf);
  free(rbuf);
  return 0;
}

/* ---- stress ---- */

#define BLK 4096

struct sop {
  struct stress *s;
  bool write;
  uint64_t off, len;
  uint8_t *buf;
  bool busy;                     /* issued, callback not yet run */
};

struct stress {
  pthread_mutex_t m;
  pthread_cond_t cv;
  blk_image *img;
  uint8_t *busy;                 /* per 4 KiB block: 0xff write, else reads in flight */
  unsigned inflight;
  bool stop;
  uint64_t acked, reads;
  uint64_t wseq;
  uint64_t woff[1000000], wlen[1000000];
  int err;
  char msg[512];
};

static void stress_issue(struct stress *s, struct sop *op);

static void stress_cb(void *arg, int64_t result)
{
  struct sop *op = arg;
  struct stress *s = op->s;
  pthread_mutex_lock(&s->m);
  if (!op->busy) {
    fprintf(stderr, "image-model: callback for an op not in flight (%s %" PRIu64 "+%" PRIu64 ")\n",
            op->write ? "write" : "read", op->off, op->len);
    abort();
  }
  op->busy = false;
  s->inflight--;
  if (result != (int64_t)op->len && !s->err) {
    s->err = (int)(result < 0 ? result : -EIO);
    snprintf(s->msg, sizeof s->msg, "%s %" PRIu64 "+%" PRIu64 " returned %" PRId64 ": %s",
             op->write ? "write" : "read", op->off, op->len, result, blk_last_error());
  }
  if (op->write) {
    if (result == (int64_t)op->len) {
      memcpy(model + op->off, op->buf, op->len);
      s->acked++;
    }
    for (uint64_t b = op->off / BLK; b < (op->off + op->len) / BLK; b++)
      s->busy[b] = 0;
  } else {
    for (uint64_t b = op->off / BLK; b < (op->off + op->len) / BLK; b++)
      s->busy[b]--;
  }
  if (!op->write && result == (int64_t)op->len) {
    s->reads++;
    /* blocks written meanwhile were excluded when the read started */
    if (memcmp(op->buf, model + op->off, op->len) && !s->err) {
      uint64_t k = 0, bad = 0, tr = 0, tm = 0;
      while (op->buf[k] == model[op->off + k])
        k++;
      for (uint64_t j = k / BLK; j < op->len / BLK; j++)
        bad += memcmp(op->buf + j * BLK, model + op->off + j * BLK, BLK) != 0;
      memcpy(&tr, op->buf + k / BLK * BLK, 8);
      memcpy(&tm, model + op->off + k / BLK * BLK, 8);
      s->err = -EIO;
      snprintf(s->msg, sizeof s->msg, "read %" PRIu64 "+%" PRIu64 " differs from the model at "
               "byte %" PRIu64 " (%" PRIu64 " blocks differ; block written by write #%" PRIu64
               ", model has write #%" PRIu64 "; #%" PRIu64 " wrote %" PRIu64 "+%" PRIu64 ")", op->off, op->len, op->off + k, bad, tr, tm, tr, tr < 1000000 ? s->woff[tr] : 0, tr < 1000000 ? s->wlen[tr] : 0);
    }
  }
  if (!s->stop && !s->err)
    stress_issue(s, op);
  else
    free(op->buf), free(op);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->m);
}

/* call with s->m held */
static void stress_issue(struct stress *s, struct sop *op)
{
  uint64_t nblk = msize / BLK;
  for (int tries = 0; tries < 100; tries++) {
    uint64_t n = 1 + rnd_below(rnd_below(8) == 0 ? 256 : 16);
    uint64_t b = rnd_below(nblk - n + 1);
    bool write = rnd_below(3) != 0, clash = false;
    for (uint64_t k = b; k < b + n && !clash; k++)
      clash = write ? s->busy[k] != 0 : s->busy[k] == 0xff;
    if (clash)
      continue;
    op->write = write;
    op->off = b * BLK;
    op->len = n * BLK;
    free(op->buf);
    op->buf = malloc(op->len);
    if (!op->buf)
      break;
    int r;
    s->inflight++;
    op->busy = true;
    if (op->write) {
      fill(op->buf, op->len);
      s->wseq++;
      if (s->wseq < 1000000) {
        s->woff[s->wseq] = op->off;
        s->wlen[s->wseq] = op->len;
      }
      for (uint64_t k = 0; k < n; k++)
        memcpy(op->buf + k * BLK, &s->wseq, 8);   /* tag each block with the write */
      for (uint64_t k = b; k < b + n; k++)
        s->busy[k] = 0xff;
      r = blk_image_aio_write(s->img, op->off, op->len, op->buf, 0, stress_cb, op);
    } else {
      /* no write may start on these blocks while the read is in flight */
      for (uint64_t k = b; k < b + n; k++)
        s->busy[k]++;
      r = blk_image_aio_read(s->img, op->off, op->len, op->buf, stress_cb, op);
    }
    if (r < 0) {
      s->inflight--;
      for (uint64_t k = b; k < b + n; k++)
        s->busy[k] = op->write ? 0 : s->busy[k] - 1;
      s->err = r;
      snprintf(s->msg, sizeof s->msg, "aio submit: %s", blk_last_error());
      break;
    }
    return;
  }
  free(op->buf);
  free(op);
}

static int run_stress(blk_ioctx *io, const char *name, int seconds, unsigned qd)
{
  uint64_t size = 64ull << 20;
  int r = blk_image_create(io, name, size, 22);
  if (r < 0 && r != -EEXIST)
    die("create: %d", r);
  blk_image *img;
  if ((r = blk_image_open(io, name, NULL, 0, &img)) < 0)
    die("open: %d", r);
  model_resize(size);
  if (blk_image_size(img) != size)
    die("unexpected size");
  /* start from a known state: zero everything */
  if ((r = blk_image_discard(img, 0, size)) < 0)
    die("initial discard: %d", r);
  static struct stress s;
  s.img = img;
  pthread_mutex_init(&s.m, NULL);
  pthread_cond_init(&s.cv, NULL);
  s.busy = calloc(size / BLK, 1);
  if (!s.busy)
    die("out of memory");
  pthread_mutex_lock(&s.m);
  for (unsigned i = 0; i < qd; i++) {
    struct sop *op = calloc(1, sizeof *op);
    if (!op)
      die("out of memory");
    op->s = &s;
    stress_issue(&s, op);
  }
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += seconds;
  while (!s.err && s.inflight) {
    if (pthread_cond_timedwait(&s.cv, &s.m, &end) == ETIMEDOUT)
      break;
  }
  s.stop = true;
  while (s.inflight)
    pthread_cond_wait(&s.cv, &s.m);
  pthread_mutex_unlock(&s.m);
  if (s.err)
    die("stress: %s", s.msg);
  if ((r = blk_image_flush(img)) < 0)
    die("flush: %d", r);
  printf("stress: acked %" PRIu64 " writes, %" PRIu64 " reads verified\n", s.acked, s.reads);
  verify_all(img, "after stress");
  if ((r = blk_image_close(img)) < 0)
    die("close: %d", r);
  if ((r = blk_image_open(io, name, NULL, BLK_IMAGE_RDONLY, &img)) < 0)
    die("reopen: %d", r);
  verify_all(img, "after reopen");
  blk_image_close(img);
  printf("stress: every acknowledged write reads back\n");
  free(s.busy);
  pthread_mutex_destroy(&s.m);
  pthread_cond_destroy(&s.cv);
  return 0;
}

/* ---- threads: sync calls from many application threads ---- */

struct thr {
  pthread_t t;
  blk_image *img;
  uint64_t base, len;            /* this thread's region */
  uint64_t seed;
  long ops;
  char err[256];
};

static void *thr_main(void *arg)
{
  struct thr *t = arg;
  uint8_t *mine = calloc(1, t->len), *buf = malloc(65536), *rb = malloc(65536);
  uint64_t s = t->seed;
  if (!mine || !buf || !rb) {
    snprintf(t->err, sizeof t->err, "out of memory");
    goto out;
  }
  for (long i = 0; i < t->ops; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    uint64_t len = 1 + s % 65536, off = (s >> 20) % (t->len - len + 1);
    if (i % 3 == 0) {
      for (uint64_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(s >> (k % 56)) | 1;
      if (blk_image_write(t->img, t->base + off, len, buf) != (int64_t)len) {
        snprintf(t->err, sizeof t->err, "write: %s", blk_last_error());
        break;
      }
      memcpy(mine + off, buf, len);
    } else if (i % 3 == 1) {
      if (blk_image_read(t->img, t->base + off, len, rb) != (int64_t)len) {
        snprintf(t->err, sizeof t->err, "read: %s", blk_last_error());
        break;
      }
      if (memcmp(rb, mine + off, len)) {
        snprintf(t->err, sizeof t->err, "read %" PRIu64 "+%" PRIu64 " differs", t->base + off,
                 len);
        break;
      }
    } else if (blk_image_discard(t->img, t->base + off, len) < 0) {
      snprintf(t->err, sizeof t->err, "discard: %s", blk_last_error());
      break;
    } else {
      memset(mine + off, 0, len);
    }
  }
out:
  free(mine);
  free(buf);
  free(rb);
  return NULL;
}

static int run_threads(blk_ioctx *io, const char *name, unsigned n, long ops)
{
  uint64_t region = 3ull << 20;  /* regions straddle 1 MiB objects */
  int r = blk_image_create(io, name, region * n, 20);
  if (r < 0)
    die("create: %d", r);
  blk_image *img;
  if ((r = blk_image_open(io, name, NULL, 0, &img)) < 0)
    die("open: %d", r);
  struct thr *t = calloc(n, sizeof *t);
  if (!t)
    die("out of memory");
  for (unsigned i = 0; i < n; i++) {
    t[i] = (struct thr){ .img = img, .base = region * i, .len = region, .seed = 77 + i * 1000003,
                         .ops = ops };
    if (pthread_create(&t[i].t, NULL, thr_main, &t[i]))
      die("pthread_create");
  }
  int bad = 0;
  for (unsigned i = 0; i < n; i++) {
    pthread_join(t[i].t, NULL);
    if (t[i].err[0]) {
      fprintf(stderr, "image-model: thread %u: %s\n", i, t[i].err);
      bad = 1;
    }
  }
  free(t);
  if ((r = blk_image_close(img)) < 0)
    die("close: %d", r);
  if (bad)
    return 1;
  if ((r = blk_image_remove(io, name)) < 0)
    die("remove: %d", r);
  printf("threads: %u threads x %ld sync ops on one image: all consistent\n", n, ops);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: image-model POOL IMAGE model|stress [--ops N] [--seconds S] "
                    "[--qd N] [--seed S]\n");
    return 2;
  }
  long ops = 400;
  int seconds = 10;
  unsigned qd = 8;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--ops"))
      ops = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--seconds"))
      seconds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--qd"))
      qd = (unsigned)atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed"))
      rng = strtoull(argv[i + 1], NULL, 0) | 1;
    else
      die("unknown option %s", argv[i]);
  }
  blk_cluster *c;
  blk_ioctx *io;
  int r = blk_cluster_create(&c);
  if (r < 0)
    die("cluster create: %d", r);
  expect_err(blk_cluster_conf_set(c, "no_such_option", "1"), -ENOENT, "unknown option");
  expect_err(blk_cluster_conf_set(c, "client_op_timeout", "soon"), -EINVAL, "bad option value");
  expect_err(blk_cluster_conf_set(c, "name", "bad."), -EINVAL, "bad entity name");
  expect_err(blk_cluster_conf_read(c, "/nonexistent/blk.conf"), -ENOENT, "missing config file");
  if ((r = blk_cluster_conf_set(c, "name", "client.admin")) < 0)
    die("set name: %d", r);
  if ((r = blk_cluster_connect(c)) < 0)
    die("connect: %d", r);
  expect_err(blk_cluster_connect(c), -EISCONN, "second connect");
  expect_err(blk_cluster_conf_set(c, "log_level", "debug"), -EISCONN, "conf_set after connect");
  expect_err(blk_ioctx_create(c, "nosuchpool", &io), -ENOENT, "ioctx of a missing pool");
  if ((r = blk_ioctx_create(c, argv[1], &io)) < 0)
    die("ioctx %s: %d", argv[1], r);
  if (!strcmp(argv[3], "model"))
    r = run_model(io, argv[2], ops);
  else if (!strcmp(argv[3], "stress"))
    r = run_stress(io, argv[2], seconds, qd);
  else if (!strcmp(argv[3], "threads"))
    r = run_threads(io, argv[2], qd, ops);
  else
    die("unknown mode %s", argv[3]);
  if (!strcmp(argv[3], "model")) {
    /* shutdown closes what the application left open (and releases the
     * image's lock: a second client can then remove it) */
    blk_image *left;
    char lname[300];
    snprintf(lname, sizeof lname, "%s-left", argv[2]);
    if (blk_image_create(io, lname, 1 << 20, 0) < 0 ||
        blk_image_open(io, lname, NULL, 0, &left) < 0 ||
        blk_image_write(left, 0, 5, "hello") != 5)
      die("leftover image");
    blk_cluster_shutdown(c);
    if (blk_cluster_create(&c) < 0 || blk_cluster_connect(c) < 0 ||
        blk_ioctx_create(c, argv[1], &io) < 0)
      die("reconnect");
    if ((r = blk_image_remove(io, lname)) < 0)
      die("remove of the image left open at shutdown: %d", r);
    printf("shutdown closed the image left open and released its lock\n");
    r = 0;
  }
  blk_ioctx_destroy(io);
  blk_cluster_shutdown(c);
  free(model);
  return r;
}
