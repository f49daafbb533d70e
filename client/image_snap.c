/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: image snapshots (docs/snapshots.md), self-managed as in
 * Ceph RBD: the image header holds snap_seq (ids are allocated by a
 * version-guarded header update, never reused) and the list of snapshots.
 * The OSDs know nothing of images: every write carries the image's snap
 * context (seq + existing ids) and the OSD clones an object on its first
 * change after a snapshot (osd/snap.c).
 *
 * Who switches the snap context: the writer (the exclusive lock holder).
 * A snapshot created through the writer's own handle flushes, updates the
 * header, then switches.  One created through another handle (blkctl
 * while an NBD server writes) updates the header, then waits until the
 * writer confirms: the writer re-reads the header at every lock renewal
 * (image_snap_refresh, a quarter lease) and, on a new seq, switches and
 * sets the header xattr "snap_ack" to the seq.  Writes issued before the
 * switch are in the snapshot, none issued after it: crash-consistent.
 * Without a live writer nothing needs to switch: the next open reads the
 * header.  Removing a snapshot updates the header, then sends OP_SNAPTRIM
 * (with the remaining ids) to every data object: clones no snapshot needs
 * any more are deleted, freeing their space.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define HDR_RETRIES 20
#define ACK_KEY "snap_ack"

void image_snapc_free(struct img_snapc *sc)
{
  free(sc->snaps);
  memset(sc, 0, sizeof *sc);
}

int image_snapc_from_header(const Blk__ImageHeader *h, struct img_snapc *sc)
{
  memset(sc, 0, sizeof *sc);
  sc->seq = h->snap_seq;
  if (!h->n_snaps)
    return 0;
  sc->snaps = malloc(h->n_snaps * sizeof *sc->snaps);
  if (!sc->snaps)
    return lb_err(-ENOMEM, "out of memory");
  for (size_t i = 0; i < h->n_snaps; i++)
    sc->snaps[i] = h->snaps[h->n_snaps - 1 - i]->id;   /* descending */
  sc->n = h->n_snaps;
  return 0;
}

static bool snapc_equal(const struct img_snapc *a, const struct img_snapc *b)
{
  return a->seq == b->seq && a->n == b->n &&
         (!a->n || !memcmp(a->snaps, b->snaps, a->n * sizeof *a->snaps));
}

/* ---- the writer's refresh (library thread) ---- */

struct refresh {
  blk_image *img;
  void (*done)(void *arg);
  void *arg;
};

static void refresh_end(struct refresh *rf)
{
  rf->done(rf->arg);
  free(rf);
}

static void ack_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                   uint32_t len)
{
  struct refresh *rf = arg;
  (void)data;
  (void)len;
  if (err < 0)
    log_warn("libblk", "image '%s': cannot acknowledge the snapshot context: %s", rf->img->name,
             rep && rep->message && rep->message[0] ? rep->message : strerror(-err));
  refresh_end(rf);
}

static void refresh_read_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                            uint32_t len)
{
  struct refresh *rf = arg;
  blk_image *img = rf->img;
  (void)rep;
  Blk__ImageHeader *h = err < 0 ? NULL : blk__image_header__unpack(NULL, len, data);
  struct img_snapc sc;
  if (!h || strcmp(h->id, img->id) || image_snapc_from_header(h, &sc) < 0) {
    if (h)
      blk__image_header__free_unpacked(h, NULL);
    refresh_end(rf);
    return;
  }
  blk__image_header__free_unpacked(h, NULL);
  if (sc.seq < img->snapc.seq || snapc_equal(&sc, &img->snapc)) {
    image_snapc_free(&sc);
    refresh_end(rf);
    return;
  }
  bool new_seq = sc.seq > img->snapc.seq;
  image_snapc_free(&img->snapc);
  img->snapc = sc;   /* from now on every write carries it */
  if (!new_seq) {
    refresh_end(rf);
    return;
  }
  log_info("libblk", "image '%s': snapshot context now seq %" PRIu64 " (%zu snapshots)",
           img->name, sc.seq, sc.n);
  char hname[64], v[24];
  image_header_name(img->id, hname, sizeof hname);
  snprintf(v, sizeof v, "%" PRIu64, sc.seq);
  struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_SETXATTR, .key = ACK_KEY,
                              .data = v, .data_len = (uint32_t)strlen(v), .length = strlen(v) };
  if (lb_objecter_op(img->io, &req, ack_cb, rf) < 0)
    refresh_end(rf);
}

void image_snap_refresh(blk_image *img, void (*done)(void *arg), void *arg)
{
  struct refresh *rf = calloc(1, sizeof *rf);
  if (!rf) {
    done(arg);
    return;
  }
  *rf = (struct refresh){ img, done, arg };
  char hname[64];
  image_header_name(img->id, hname, sizeof hname);
  struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_READ };
  if (lb_objecter_op(img->io, &req, refresh_read_cb, rf) < 0)
    refresh_end(rf);
}

/* Library thread: install a new snap context (the writer's own create). */
struct snapc_task {
  struct lb_task t;
  blk_image *img;
  struct img_snapc sc;
  struct lb_sync s;
};

static void snapc_task_fn(struct lb_task *t)
{
  struct snapc_task *st = (struct snapc_task *)t;
  if (st->sc.seq >= st->img->snapc.seq) {
    image_snapc_free(&st->img->snapc);
    st->img->snapc = st->sc;
    memset(&st->sc, 0, sizeof st->sc);
  }
  lb_sync_done(&st->s, 0, NULL);
}

static int snapc_install(blk_image *img, const Blk__ImageHeader *h)
{
  struct snapc_task st = { .t.fn = snapc_task_fn, .img = img };
  int r = image_snapc_from_header(h, &st.sc);
  if (r < 0)
    return r;
  lb_sync_init(&st.s);
  r = lb_submit(img->io->c, &st.t);
  if (r == 0)
    r = (int)lb_sync_wait(&st.s);
  else
    lb_err(r, "cluster not connected");
  lb_sync_destroy(&st.s);
  image_snapc_free(&st.sc);
  return r;
}

/* ---- header updates ---- */

static bool snap_name_ok(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  return n > 0 && n <= 200 && !strchr(s, '/') && !strchr(s, '@');
}

static Blk__ImageHeader__Snapshot *find_snap(const Blk__ImageHeader *h, const char *name)
{
  for (size_t i = 0; i < h->n_snaps; i++)
    if (!strcmp(h->snaps[i]->name, name))
      return h->snaps[i];
  return NULL;
}

/* Read-modify-write the header of img with fn (guarded by the object
 * version, retried on a concurrent change).  fn returns 0 to write,
 * 1 to stop without writing, <0 to fail (message set).  On success *out
 * (if not NULL) is the header as written. */
typedef int (*hdr_fn)(blk_image *img, Blk__ImageHeader *h, void *arg);

static int hdr_update(blk_image *img, hdr_fn fn, void *arg, Blk__ImageHeader **out)
{
  int r = -ECANCELED;
  for (int attempt = 0; attempt < HDR_RETRIES; attempt++) {
    Blk__ImageHeader *h;
    uint64_t ver[2];
    if ((r = image_header_read(img->io, img->id, &h, ver)) < 0)
      return r;
    r = fn(img, h, arg);
    if (r == 0)
      r = image_header_write(img->io, h, ver);
    if (r >= 0 && out)
      *out = h;
    else
      blk__image_header__free_unpacked(h, NULL);
    if (r != -ECANCELED)
      return r < 0 ? r : 0;
  }
  return lb_err(r, "the header of image '%s' kept changing", img->name);
}

static int fn_create(blk_image *img, Blk__ImageHeader *h, void *arg)
{
  const char *name = arg;
  if (find_snap(h, name))
    return lb_err(-EEXIST, "image '%s' already has a snapshot '%s'", img->name, name);
  Blk__ImageHeader__Snapshot **v = realloc(h->snaps, (h->n_snaps + 1) * sizeof *v);
  if (!v)
    return lb_err(-ENOMEM, "out of memory");
  h->snaps = v;
  Blk__ImageHeader__Snapshot *s = malloc(sizeof *s);
  char *n = strdup(name);
  if (!s || !n) {
    free(s);
    free(n);
    return lb_err(-ENOMEM, "out of memory");
  }
  blk__image_header__snapshot__init(s);
  s->id = h->snap_seq + 1;
  s->name = n;
  s->size = h->size;
  s->create_time_ms = (uint64_t)util_wall_ms();
  h->snaps[h->n_snaps++] = s;
  h->snap_seq = s->id;
  return 0;
}

LB_API int blk_image_snap_create(blk_image *img, const char *snap)
{
  lb_clear_err();
  if (!img)
    return lb_err(-EINVAL, "image is NULL");
  if (!snap_name_ok(snap))
    return lb_err(-EINVAL, "bad snapshot name '%s' (1..200 bytes, no '/' or '@')",
                  snap ? snap : "");
  if (img->snap_id)
    return lb_err(-EROFS, "image '%s' is open at a snapshot", img->name);
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_snap_create from a libblk callback");
  bool writer = !img->rdonly && image_lock_check_write(img) == 0;
  if (writer) {
    int fr = blk_image_flush(img);   /* acknowledged writes are in the snapshot */
    if (fr < 0)
      return fr;
  }
  Blk__ImageHeader *h = NULL;
  int r = hdr_update(img, fn_create, (void *)snap, &h);
  if (r < 0)
    return r;
  uint64_t seq = h->snap_seq;
  if (writer) {
    r = snapc_install(img, h);
    blk__image_header__free_unpacked(h, NULL);
    return r;
  }
  blk__image_header__free_unpacked(h, NULL);
  /* another client may be writing: wait until it switched */
  int64_t lease = config_get_int(img->io->c->cfg, "image_lock_lease");
  if (lease <= 0)
    lease = 10000;
  int64_t deadline = util_now_ms() + lease + 2000;
  char hname[64];
  image_header_name(img->id, hname, sizeof hname);
  for (;;) {
    r = image_lock_check_free(img->io, img->id);
    if (r == 0)
      return 0;   /* no live writer: the next one reads the header */
    if (r != -EBUSY)
      return r;
    char v[32] = "";
    struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_GETXATTR,
                                .key = ACK_KEY };
    int64_t n = lb_obj_sync(img->io, &req, v, sizeof v - 1, NULL, NULL);
    if (n >= 0) {
      v[n] = 0;
      if (strtoull(v, NULL, 10) >= seq) {
        lb_clear_err();
        return 0;
      }
    }
    if (util_now_ms() > deadline)
      return lb_err(-ETIMEDOUT, "snapshot '%s' of image '%s' created (id %" PRIu64 ") but its "
                    "writer did not switch to it within %" PRId64 " ms: writes after this "
                    "call may be in it", snap, img->name, seq, lease + 2000);
    usleep(100 * 1000);
  }
}

LB_API int blk_image_snap_list(blk_image *img, struct blk_snap_info **snaps, size_t *n)
{
  lb_clear_err();
  if (!img || !snaps || !n)
    return lb_err(-EINVAL, "blk_image_snap_list: NULL argument");
  Blk__ImageHeader *h;
  int r = image_header_read(img->io, img->id, &h, NULL);
  if (r < 0)
    return r;
  struct blk_snap_info *v = calloc(h->n_snaps + 1, sizeof *v);
  if (!v) {
    blk__image_header__free_unpacked(h, NULL);
    return lb_err(-ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < h->n_snaps; i++) {
    v[i].id = h->snaps[i]->id;
    snprintf(v[i].name, sizeof v[i].name, "%s", h->snaps[i]->name);
    v[i].size = h->snaps[i]->size;
    v[i].create_time_ms = h->snaps[i]->create_time_ms;
    v[i].is_protected = h->snaps[i]->protected_;
  }
  *snaps = v;
  *n = h->n_snaps;
  blk__image_header__free_unpacked(h, NULL);
  return 0;
}

LB_API void blk_image_snap_list_free(struct blk_snap_info *snaps)
{
  free(snaps);
}

struct rm_arg {
  const char *name;
  uint64_t max_size;             /* largest size of the head and every snapshot */
};

static int fn_remove(blk_image *img, Blk__ImageHeader *h, void *arg)
{
  struct rm_arg *a = arg;
  size_t k = h->n_snaps;
  for (size_t i = 0; i < h->n_snaps; i++)
    if (!strcmp(h->snaps[i]->name, a->name))
      k = i;
  if (k == h->n_snaps)
    return lb_err(-ENOENT, "image '%s' has no snapshot '%s'", img->name, a->name);
  if (h->snaps[k]->protected_)
    return lb_err(-EBUSY, "snapshot '%s' of image '%s' is protected; unprotect it first",
                  a->name, img->name);
  a->max_size = h->size;
  for (size_t i = 0; i < h->n_snaps; i++)
    if (h->snaps[i]->size > a->max_size)
      a->max_size = h->snaps[i]->size;
  protobuf_c_message_free_unpacked((ProtobufCMessage *)h->snaps[k], NULL);
  memmove(&h->snaps[k], &h->snaps[k + 1], (h->n_snaps - k - 1) * sizeof *h->snaps);
  h->n_snaps--;
  return 0;
}

LB_API int blk_image_snap_remove(blk_image *img, const char *snap)
{
  lb_clear_err();
  if (!img || !snap)
    return lb_err(-EINVAL, "blk_image_snap_remove: NULL argument");
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_snap_remove from a libblk callback");
  struct rm_arg a = { snap, 0 };
  Blk__ImageHeader *h = NULL;
  int r = hdr_update(img, fn_remove, &a, &h);
  if (r < 0)
    return r;
  struct img_snapc sc;
  r = image_snapc_from_header(h, &sc);
  uint32_t order = h->order;
  blk__image_header__free_unpacked(h, NULL);
  if (r < 0)
    return r;
  /* a writer's context still naming the removed id is harmless (no new
   * clone covers it once seq is past it); its next refresh drops it */
  /* free the clones only this snapshot needed */
  r = image_io_snaptrim(img->io, img->id, order, a.max_size, &sc);
  image_snapc_free(&sc);
  return r;
}

struct flag_arg {
  const char *name;
  int op;                        /* 1 protect, 0 unprotect, 2 rename */
  const char *dst;
};

static int fn_flag(blk_image *img, Blk__ImageHeader *h, void *arg)
{
  struct flag_arg *a = arg;
  Blk__ImageHeader__Snapshot *s = find_snap(h, a->name);
  if (!s)
    return lb_err(-ENOENT, "image '%s' has no snapshot '%s'", img->name, a->name);
  if (a->op == 2) {
    if (find_snap(h, a->dst))
      return lb_err(-EEXIST, "image '%s' already has a snapshot '%s'", img->name, a->dst);
    char *n = strdup(a->dst);
    if (!n)
      return lb_err(-ENOMEM, "out of memory");
    free(s->name);
    s->name = n;
    return 0;
  }
  if (s->protected_ == (a->op == 1))
    return 1;   /* already so */
  s->protected_ = a->op == 1;
  return 0;
}

static int set_flag(blk_image *img, const char *snap, int op, const char *dst)
{
  lb_clear_err();
  if (!img || !snap)
    return lb_err(-EINVAL, "NULL argument");
  if (op == 2 && !snap_name_ok(dst))
    return lb_err(-EINVAL, "bad snapshot name '%s' (1..200 bytes, no '/' or '@')",
                  dst ? dst : "");
  struct flag_arg a = { snap, op, dst };
  return hdr_update(img, fn_flag, &a, NULL);
}

LB_API int blk_image_snap_protect(blk_image *img, const char *snap)
{
  return set_flag(img, snap, 1, NULL);
}

LB_API int blk_image_snap_unprotect(blk_image *img, const char *snap)
{
  return set_flag(img, snap, 0, NULL);
}

LB_API int blk_image_snap_rename(blk_image *img, const char *src, const char *dst)
{
  return set_flag(img, src, 2, dst);
}

LB_API int blk_image_snap_rollback(blk_image *img, const char *snap,
                                   void (*progress)(uint64_t done, uint64_t total, void *arg),
                                   void *arg)
{
  lb_clear_err();
  if (!img || !snap)
    return lb_err(-EINVAL, "blk_image_snap_rollback: NULL argument");
  if (img->rdonly)
    return lb_err(-EROFS, "image '%s' must be open read-write to roll back", img->name);
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_snap_rollback from a libblk callback");
  blk_image *s;
  int r = blk_image_open(img->io, img->name, snap, BLK_IMAGE_RDONLY, &s);
  if (r < 0)
    return r;
  uint64_t size = blk_image_size(s);
  if (size != blk_image_size(img) && (r = blk_image_resize(img, size)) < 0) {
    blk_image_close(s);
    return r;
  }
  uint64_t objsize = 1ull << img->order;
  uint8_t *buf = malloc(objsize);
  uint8_t *zero = calloc(1, objsize);
  if (!buf || !zero)
    r = lb_err(-ENOMEM, "out of memory");
  for (uint64_t off = 0; r == 0 && off < size; off += objsize) {
    uint64_t len = size - off < objsize ? size - off : objsize;
    int64_t n = blk_image_read(s, off, len, buf);
    if (n < 0) {
      r = (int)n;
      break;
    }
    /* the writes carry the snap context: the other snapshots keep theirs */
    if (!memcmp(buf, zero, len))
      r = blk_image_discard(img, off, len) < 0 ? -EIO : 0;
    else
      r = blk_image_write(img, off, len, buf) < 0 ? -EIO : 0;
    if (r < 0)
      r = lb_err(-EIO, "rolling back image '%s' at offset %" PRIu64 ": %s", img->name, off,
                 blk_last_error());
    if (progress)
      progress(off + len, size, arg);
  }
  free(buf);
  free(zero);
  blk_image_close(s);
  if (r == 0)
    r = blk_image_flush(img);
  return r;
}
