/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a libblk test driver for image snapshots, checking the
 * image and every snapshot byte for byte against in-memory models through
 * the public API only (also the leak check under ASan/LSan).
 *   snap-model POOL IMAGE [--ops N] [--seed S] [--keep]
 *     creates IMAGE (6 MiB, 64 KiB objects so that ops span many objects)
 *     and runs N random ops on a read-write handle: writes, discards,
 *     write-zeroes, resizes (grow/shrink), snapshot create (up to 6 live),
 *     snapshot remove, rollback to a random snapshot, clone of a snapshot
 *     (written through its own handle against a model, sometimes
 *     flattened, then removed), and checks: the head
 *     against its model every 10 ops, every snapshot (opened at the
 *     snapshot, read whole) after each snapshot op and at the end; the
 *     error paths (write to a snapshot handle, duplicate name, remove of a
 *     protected snapshot, image remove with snapshots).  With --keep the
 *     image and snapshot "keep" (the final head) stay for the caller.
 * Exit 0 on success, 1 on a mismatch or error (with a message).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk/libblk.h"

#define MAX_SIZE (12u << 20)
#define MAX_SNAPS 6

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#include <stdarg.h>
static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "snap-model: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (last error: %s)\n", blk_last_error());
  va_end(ap);
  exit(1);
}

struct msnap {
  char name[32];
  uint8_t *data;
  uint64_t size;
  bool live;
};

static uint8_t *head;
static uint64_t head_size;
static struct msnap snaps[256];
static int n_snaps;
static uint8_t *rbuf;

static void check_range(blk_image *img, const uint8_t *model, uint64_t size, const char *what)
{
  if (blk_image_size(img) != size)
    die("%s: size %" PRIu64 ", model %" PRIu64, what, blk_image_size(img), size);
  int64_t n = blk_image_read(img, 0, size, rbuf);
  if (n != (int64_t)size)
    die("%s: read returned %" PRId64, what, n);
  for (uint64_t i = 0; i < size; i++)
    if (rbuf[i] != model[i])
      die("%s: byte %" PRIu64 " is 0x%02x, model 0x%02x", what, i, rbuf[i], model[i]);
}

static void check_snap(blk_ioctx *io, const char *image, struct msnap *s)
{
  blk_image *si;
  int r = blk_image_open(io, image, s->name, 0, &si);
  if (r < 0)
    die("open %s@%s: %d", image, s->name, r);
  char what[80];
  snprintf(what, sizeof what, "snapshot %s", s->name);
  check_range(si, s->data, s->size, what);
  uint8_t b = 1;
  if (blk_image_write(si, 0, 1, &b) != -EROFS)
    die("a write to snapshot %s was not refused with EROFS", s->name);
  blk_image_close(si);
}

static void check_all(blk_ioctx *io, const char *image, blk_image *img)
{
  check_range(img, head, head_size, "head");
  for (int i = 0; i < n_snaps; i++)
    if (snaps[i].live)
      check_snap(io, image, &snaps[i]);
}

static int live_snap(void)
{
  int cand[256], n = 0;
  for (int i = 0; i < n_snaps; i++)
    if (snaps[i].live)
      cand[n++] = i;
  return n ? cand[rnd() % (uint64_t)n] : -1;
}

int main(int argc, char **argv)
{
  if (argc < 3)
    die("usage: snap-model POOL IMAGE [--ops N] [--seed S] [--keep]");
  int ops = 200;
  bool keep = false;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--ops") && i + 1 < argc)
      ops = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      rng = strtoull(argv[++i], NULL, 0) | 1;
    else if (!strcmp(argv[i], "--keep"))
      keep = true;
    else
      die("unknown option %s", argv[i]);
  }
  const char *image = argv[2];
  blk_cluster *c;
  blk_ioctx *io;
  if (blk_cluster_create(&c) < 0 || blk_cluster_connect(c) < 0)
    die("cannot connect");
  if (blk_ioctx_create(c, argv[1], &io) < 0)
    die("ioctx %s", argv[1]);
  head_size = 6u << 20;
  head = calloc(1, MAX_SIZE);
  rbuf = malloc(MAX_SIZE);
  uint8_t *wbuf = malloc(256 << 10);
  if (!head || !rbuf || !wbuf)
    die("out of memory");
  int r = blk_image_create(io, image, head_size, 16);
  if (r < 0)
    die("create: %d", r);
  blk_image *img;
  if ((r = blk_image_open(io, image, NULL, 0, &img)) < 0)
    die("open: %d", r);
  unsigned created = 0, clones = 0;
  for (int op = 0; op < ops; op++) {
    unsigned k = (unsigned)(rnd() % 100);
    if (k < 45) {   /* write */
      uint64_t len = 1 + rnd() % (200 << 10);
      uint64_t off = rnd() % head_size;
      if (off + len > head_size)
        len = head_size - off;
      for (uint64_t i = 0; i < len; i++)
        wbuf[i] = (uint8_t)rnd();
      if (blk_image_write(img, off, len, wbuf) != (int64_t)len)
        die("op %d: write %" PRIu64 "+%" PRIu64, op, off, len);
      memcpy(head + off, wbuf, len);
    } else if (k < 55) {   /* discard / write-zeroes */
      uint64_t len = 1 + rnd() % (300 << 10);
      uint64_t off = rnd() % head_size;
      if (off + len > head_size)
        len = head_size - off;
      int rr = k < 50 ? blk_image_discard(img, off, len) : blk_image_write_zeroes(img, off, len, 0);
      if (rr < 0)
        die("op %d: discard/zero %" PRIu64 "+%" PRIu64 ": %d", op, off, len, rr);
      memset(head + off, 0, len);
    } else if (k < 60) {   /* resize */
      uint64_t ns = (1 + rnd() % (MAX_SIZE >> 16)) << 16;
      if (blk_image_resize(img, ns) < 0)
        die("op %d: resize to %" PRIu64, op, ns);
      if (ns > head_size)
        memset(head + head_size, 0, ns - head_size);
      head_size = ns;
    } else if (k < 75) {   /* snapshot create */
      int live = 0;
      for (int i = 0; i < n_snaps; i++)
        live += snaps[i].live;
      if (live >= MAX_SNAPS || n_snaps == 256)
        continue;
      struct msnap *s = &snaps[n_snaps];
      snprintf(s->name, sizeof s->name, "s%u", created++);
      if ((r = blk_image_snap_create(img, s->name)) < 0)
        die("op %d: snap create %s: %d", op, s->name, r);
      if (blk_image_snap_create(img, s->name) != -EEXIST)
        die("op %d: duplicate snapshot name accepted", op);
      s->data = malloc(head_size ? head_size : 1);
      if (!s->data)
        die("out of memory");
      memcpy(s->data, head, head_size);
      s->size = head_size;
      s->live = true;
      n_snaps++;
      check_snap(io, image, s);
    } else if (k < 83) {   /* snapshot remove (sometimes protected first) */
      int i = live_snap();
      if (i < 0)
        continue;
      if (rnd() % 4 == 0) {
        if (blk_image_snap_protect(img, snaps[i].name) < 0)
          die("protect");
        if (blk_image_snap_remove(img, snaps[i].name) != -EBUSY)
          die("op %d: a protected snapshot was removed", op);
        if (blk_image_snap_unprotect(img, snaps[i].name) < 0)
          die("unprotect");
      }
      if ((r = blk_image_snap_remove(img, snaps[i].name)) < 0)
        die("op %d: snap rm %s: %d", op, snaps[i].name, r);
      snaps[i].live = false;
      free(snaps[i].data);
      snaps[i].data = NULL;
      check_all(io, image, img);
    } else if (k < 92 && k >= 88) {   /* clone, write the child, maybe flatten */
      int i = live_snap();
      if (i < 0)
        continue;
      char child[300];
      snprintf(child, sizeof child, "%s-c%d", image, op);
      if (blk_image_clone(io, image, snaps[i].name, child) != -EINVAL)
        die("op %d: clone of an unprotected snapshot accepted", op);
      if (blk_image_snap_protect(img, snaps[i].name) < 0 ||
          (r = blk_image_clone(io, image, snaps[i].name, child)) < 0)
        die("op %d: clone %s@%s: %d", op, image, snaps[i].name, r);
      uint8_t *cm = calloc(1, MAX_SIZE);
      uint64_t csize = snaps[i].size;
      if (!cm)
        die("out of memory");
      memcpy(cm, snaps[i].data, csize);
      blk_image *ci;
      if ((r = blk_image_open(io, child, NULL, 0, &ci)) < 0)
        die("open clone: %d", r);
      check_range(ci, cm, csize, "fresh clone");
      for (int w = 0; w < 8; w++) {
        uint64_t len = 1 + rnd() % (100 << 10), off = rnd() % csize;
        if (off + len > csize)
          len = csize - off;
        if (w == 3) {
          if (blk_image_discard(ci, off, len) < 0)
            die("clone discard");
          memset(cm + off, 0, len);
          continue;
        }
        for (uint64_t b = 0; b < len; b++)
          wbuf[b] = (uint8_t)rnd();
        if (blk_image_write(ci, off, len, wbuf) != (int64_t)len)
          die("clone write");
        memcpy(cm + off, wbuf, len);
      }
      check_range(ci, cm, csize, "clone after writes");
      check_snap(io, image, &snaps[i]);   /* the parent snapshot is untouched */
      if (rnd() % 2) {
        if ((r = blk_image_flatten(ci, NULL, NULL)) < 0)
          die("flatten: %d", r);
        check_range(ci, cm, csize, "clone after flatten");
        if (blk_image_flatten(ci, NULL, NULL) != -EINVAL)
          die("a flattened image is still a clone");
      } else if (blk_image_snap_unprotect(img, snaps[i].name) != -EBUSY) {
        die("op %d: unprotect with a clone was not refused", op);
      }
      blk_image_close(ci);
      free(cm);
      if ((r = blk_image_remove(io, child)) < 0)
        die("remove clone: %d", r);
      if ((r = blk_image_snap_unprotect(img, snaps[i].name)) < 0)
        die("unprotect after the clone is gone: %d", r);
      clones++;
    } else if (k < 88) {   /* rollback */
      int i = live_snap();
      if (i < 0)
        continue;
      if ((r = blk_image_snap_rollback(img, snaps[i].name, NULL, NULL)) < 0)
        die("op %d: rollback to %s: %d", op, snaps[i].name, r);
      memset(head, 0, MAX_SIZE);
      memcpy(head, snaps[i].data, snaps[i].size);
      head_size = snaps[i].size;
      check_all(io, image, img);
    } else {
      check_range(img, head, head_size, "head");
    }
    if (op % 10 == 9)
      check_range(img, head, head_size, "head");
  }
  blk_image_flush(img);
  check_all(io, image, img);
  /* listing matches the model */
  struct blk_snap_info *v;
  size_t n;
  if (blk_image_snap_list(img, &v, &n) < 0)
    die("snap list");
  size_t live = 0;
  for (int i = 0; i < n_snaps; i++)
    if (snaps[i].live) {
      bool found = false;
      for (size_t j = 0; j < n; j++)
        found |= !strcmp(v[j].name, snaps[i].name) && v[j].size == snaps[i].size;
      if (!found)
        die("snapshot %s missing from the list", snaps[i].name);
      live++;
    }
  if (live != n)
    die("list has %zu snapshots, model %zu", n, live);
  blk_image_snap_list_free(v);
  if (blk_image_snap_create(img, "keep") < 0)
    die("snap create keep");
  if (blk_image_close(img) < 0)
    die("close");
  if ((r = blk_image_remove(io, image)) != -ENOTEMPTY)
    die("an image with snapshots: remove gave %d, not -ENOTEMPTY", r);
  if (!keep) {
    if ((r = blk_image_open(io, image, NULL, 0, &img)) < 0)
      die("reopen: %d", r);
    check_all(io, image, img);
    for (int i = 0; i < n_snaps; i++)
      if (snaps[i].live && blk_image_snap_remove(img, snaps[i].name) < 0)
        die("final snap rm %s", snaps[i].name);
    if (blk_image_snap_remove(img, "keep") < 0)
      die("snap rm keep");
    if (blk_image_close(img) < 0)
      die("close");
    if ((r = blk_image_remove(io, image)) < 0)
      die("image remove: %d", r);
  }
  for (int i = 0; i < n_snaps; i++)
    free(snaps[i].data);
  free(head);
  free(rbuf);
  free(wbuf);
  blk_ioctx_destroy(io);
  blk_cluster_shutdown(c);
  printf("snap-model: %d ops, %u snapshots created, %u clones: OK\n", ops, created, clones);
  return 0;
}
