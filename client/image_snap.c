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
  if (h->parent && h->parent->image_id[0]) {
    /* a clone's snapshot keeps reading its parent after a flatten */
    Blk__ImageHeader__Parent *p = malloc(sizeof *p);
    char *pool = strdup(h->parent->pool), *pid = strdup(h->parent->image_id);
    if (!p || !pool || !pid) {
      free(p);
      free(pool);
      free(pid);
      return lb_err(-ENOMEM, "out of memory");
    }
    blk__image_header__parent__init(p);
    p->pool = pool;
    p->image_id = pid;
    p->snap_id = h->parent->snap_id;
    p->overlap = h->parent->overlap < h->size ? h->parent->overlap : h->size;
    s->parent = p;
  }
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
  char parent_id[32];            /* the removed snapshot's parent ("" = none) */
};

/* Does the header still need parent_id (its own parent or a snapshot's)? */
static bool needs_parent(const Blk__ImageHeader *h, const char *parent_id)
{
  if (h->parent && !strcmp(h->parent->image_id, parent_id))
    return true;
  for (size_t i = 0; i < h->n_snaps; i++)
    if (h->snaps[i]->parent && !strcmp(h->snaps[i]->parent->image_id, parent_id))
      return true;
  return false;
}

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
  a->parent_id[0] = 0;
  if (h->snaps[k]->parent)
    snprintf(a->parent_id, sizeof a->parent_id, "%s", h->snaps[k]->parent->image_id);
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
  struct rm_arg a = { snap, 0, "" };
  Blk__ImageHeader *h = NULL;
  int r = hdr_update(img, fn_remove, &a, &h);
  if (r < 0)
    return r;
  if (a.parent_id[0] && !needs_parent(h, a.parent_id) &&
      (r = image_parent_detach(img->io, a.parent_id, img->id)) < 0) {
    blk__image_header__free_unpacked(h, NULL);
    return r;
  }
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
  for (size_t i = 0; a->op == 0 && i < h->n_children; i++)
    if (h->children[i]->snap_id == s->id)
      return lb_err(-EBUSY, "snapshot '%s' of image '%s' has clones (image children); flatten "
                    "or remove them first", a->name, img->name);
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
  char keep[LB_MSG];
  snprintf(keep, sizeof keep, "%s", blk_last_error());
  blk_image_close(s);
  if (r < 0)
    lb_set_msg(keep);
  if (r == 0)
    r = blk_image_flush(img);
  return r;
}

/* ---- clones ---- */

struct child_arg {
  const char *snap;              /* the parent snapshot (create) */
  const char *child_id;
  uint64_t snap_id, size;        /* out (create) */
  bool add;
};

static int fn_child(blk_image *img, Blk__ImageHeader *h, void *arg)
{
  struct child_arg *a = arg;
  if (!a->add) {
    size_t k = h->n_children;
    for (size_t i = 0; i < h->n_children; i++)
      if (!strcmp(h->children[i]->image_id, a->child_id))
        k = i;
    if (k == h->n_children)
      return 1;
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h->children[k], NULL);
    memmove(&h->children[k], &h->children[k + 1], (h->n_children - k - 1) * sizeof *h->children);
    h->n_children--;
    return 0;
  }
  Blk__ImageHeader__Snapshot *s = find_snap(h, a->snap);
  if (!s)
    return lb_err(-ENOENT, "image '%s' has no snapshot '%s'", img->name, a->snap);
  if (!s->protected_)
    return lb_err(-EINVAL, "snapshot '%s' of image '%s' is not protected (snap protect it "
                  "before cloning)", a->snap, img->name);
  a->snap_id = s->id;
  a->size = s->size;
  Blk__ImageHeader__Child **v = realloc(h->children, (h->n_children + 1) * sizeof *v);
  if (!v)
    return lb_err(-ENOMEM, "out of memory");
  h->children = v;
  Blk__ImageHeader__Child *c = malloc(sizeof *c);
  char *pool = strdup(img->io->pool), *id = strdup(a->child_id);
  if (!c || !pool || !id) {
    free(c);
    free(pool);
    free(id);
    return lb_err(-ENOMEM, "out of memory");
  }
  blk__image_header__child__init(c);
  c->pool = pool;
  c->image_id = id;
  c->snap_id = s->id;
  h->children[h->n_children++] = c;
  return 0;
}

int image_parent_detach(blk_ioctx *io, const char *parent_id, const char *child_id)
{
  blk_image p = { .io = io };
  snprintf(p.id, sizeof p.id, "%s", parent_id);
  snprintf(p.name, sizeof p.name, "(id %s)", parent_id);
  struct child_arg a = { .child_id = child_id, .add = false };
  int r = hdr_update(&p, fn_child, &a, NULL);
  if (r == -ENOENT) {   /* the parent is gone */
    lb_clear_err();
    r = 0;
  }
  return r;
}

LB_API int blk_image_clone(blk_ioctx *io, const char *parent, const char *snap,
                           const char *child)
{
  lb_clear_err();
  if (!io || !parent || !snap || !child)
    return lb_err(-EINVAL, "blk_image_clone: NULL argument");
  blk_image *p;
  int r = blk_image_open(io, parent, NULL, BLK_IMAGE_RDONLY, &p);
  if (r < 0)
    return r;
  char cid[32];
  struct child_arg a = { .snap = snap, .child_id = cid, .add = true };
  if ((r = image_new_id(cid)) == 0)
    r = hdr_update(p, fn_child, &a, NULL);   /* first: unprotect now refuses */
  if (r == 0) {
    Blk__ImageHeader h = BLK__IMAGE_HEADER__INIT;
    Blk__ImageHeader__Parent par = BLK__IMAGE_HEADER__PARENT__INIT;
    h.format = 1;
    h.id = cid;
    h.size = a.size;
    h.order = p->order;
    h.create_time_ms = (uint64_t)util_wall_ms();
    par.pool = io->pool;
    par.image_id = p->id;
    par.snap_id = a.snap_id;
    par.overlap = a.size;
    h.parent = &par;
    r = image_create_hdr(io, child, &h);   /* no data is copied */
    if (r < 0) {
      char keep[LB_MSG];
      snprintf(keep, sizeof keep, "%s", blk_last_error());
      image_parent_detach(io, p->id, cid);
      lb_set_msg(keep);
    }
  }
  char keep[LB_MSG];
  snprintf(keep, sizeof keep, "%s", blk_last_error());
  blk_image_close(p);
  if (r < 0)
    lb_set_msg(keep);
  return r;
}

LB_API int blk_image_children(blk_image *img, const char *snap, char ***names, size_t *n)
{
  lb_clear_err();
  if (!img || !names || !n)
    return lb_err(-EINVAL, "blk_image_children: NULL argument");
  Blk__ImageHeader *h;
  int r = image_header_read(img->io, img->id, &h, NULL);
  if (r < 0)
    return r;
  uint64_t sid = 0;
  if (snap) {
    Blk__ImageHeader__Snapshot *s = find_snap(h, snap);
    if (!s) {
      blk__image_header__free_unpacked(h, NULL);
      return lb_err(-ENOENT, "image '%s' has no snapshot '%s'", img->name, snap);
    }
    sid = s->id;
  }
  char **v = calloc(h->n_children + 1, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; v && i < h->n_children; i++) {
    if (sid && h->children[i]->snap_id != sid)
      continue;
    char nm[256], full[400];
    if (image_dir_name_of(img->io, h->children[i]->image_id, nm, sizeof nm) < 0)
      snprintf(nm, sizeof nm, "(id %s, being created or removed)", h->children[i]->image_id);
    snprintf(full, sizeof full, "%s/%s", h->children[i]->pool, nm);
    if (!(v[k] = strdup(full)))
      break;
    k++;
  }
  blk__image_header__free_unpacked(h, NULL);
  lb_clear_err();
  if (!v)
    return lb_err(-ENOMEM, "out of memory");
  *names = v;
  *n = k;
  return 0;
}

int image_copyup_sync(blk_image *img, uint64_t objno, uint8_t *buf)
{
  uint64_t overlap = __atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE);
  uint64_t start = objno << img->order, objsize = 1ull << img->order;
  if (start >= overlap)
    return 0;
  uint64_t span = overlap - start < objsize ? overlap - start : objsize;
  char cname[80], pname[80];
  image_data_name(img->id, objno, cname, sizeof cname);
  struct objecter_req st = { .name = cname, .op = BLK__OSD_OP_TYPE__OP_STAT };
  int64_t r = lb_obj_sync(img->io, &st, NULL, 0, NULL, NULL);
  if (r == 0)
    return 0;   /* the child has it */
  if (r != -ENOENT)
    return (int)r;
  r = -ENOENT;
  for (size_t l = 0; r == -ENOENT && l < img->n_anc; l++) {
    /* the nearest ancestor holding the object */
    uint64_t ls = img->anc[l].overlap > start ? img->anc[l].overlap - start : 0;
    if (ls > span)
      ls = span;
    if (!ls)
      break;
    image_data_name(img->anc[l].id, objno, pname, sizeof pname);
    struct objecter_req rd = { .name = pname, .op = BLK__OSD_OP_TYPE__OP_READ, .length = ls,
                               .snapid = img->anc[l].snap };
    r = lb_obj_sync(img->io, &rd, buf, ls, NULL, NULL);
  }
  if (r == -ENOENT) {
    lb_clear_err();
    return 0;
  }
  if (r < 0)
    return (int)r;
  /* no snap context needed (and img->snapc belongs to the library
   * thread): the object is created with the bytes every snapshot of the
   * child reads through the parent anyway, so a snapshot that finds it
   * unchanged (seq 0) reads the same data */
  struct objecter_req wr = { .name = cname, .op = BLK__OSD_OP_TYPE__OP_WRITEFULL, .data = buf,
                             .data_len = (uint32_t)r, .length = (uint64_t)r,
                             .has_assert_version = true };
  r = lb_obj_sync(img->io, &wr, NULL, 0, NULL, NULL);
  if (r == -ECANCELED) {   /* written meanwhile */
    lb_clear_err();
    r = 0;
  }
  return (int)r;
}

static int fn_unparent(blk_image *img, Blk__ImageHeader *h, void *arg)
{
  (void)img;
  (void)arg;
  if (!h->parent)
    return 1;
  protobuf_c_message_free_unpacked((ProtobufCMessage *)h->parent, NULL);
  h->parent = NULL;
  return 0;
}

LB_API int blk_image_flatten(blk_image *img,
                             void (*progress)(uint64_t done, uint64_t total, void *arg),
                             void *arg)
{
  lb_clear_err();
  if (!img)
    return lb_err(-EINVAL, "image is NULL");
  if (img->rdonly)
    return lb_err(-EROFS, "image '%s' must be open read-write to flatten", img->name);
  if (!img->parent_id[0] || !__atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE))
    return lb_err(-EINVAL, "image '%s' is not a clone (or already flattened)", img->name);
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_flatten from a libblk callback");
  uint64_t overlap = __atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE);
  uint64_t objsize = 1ull << img->order, nobj = (overlap + objsize - 1) >> img->order;
  uint8_t *buf = malloc(objsize);
  if (!buf)
    return lb_err(-ENOMEM, "out of memory");
  int r = 0;
  for (uint64_t o = 0; r == 0 && o < nobj; o++) {
    r = image_copyup_sync(img, o, buf);
    if (progress)
      progress((o + 1) << img->order > overlap ? overlap : (o + 1) << img->order, overlap, arg);
  }
  free(buf);
  if (r < 0)
    return r;
  /* every object is the child's now: forget the parent */
  Blk__ImageHeader *h = NULL;
  if ((r = hdr_update(img, fn_unparent, NULL, &h)) < 0)
    return r;
  __atomic_store_n(&img->parent_overlap, 0, __ATOMIC_RELEASE);
  /* the child's snapshots taken before may still read the parent */
  if (!h || !needs_parent(h, img->parent_id))
    r = image_parent_detach(img->io, img->parent_id, img->id);
  if (h)
    blk__image_header__free_unpacked(h, NULL);
  return r;
}

int image_load_ancestry(blk_image *img, const Blk__ImageHeader__Parent *p)
{
  img->n_anc = 0;
  img->parent_id[0] = 0;
  img->parent_overlap = 0;
  if (!p || !p->image_id[0])
    return 0;
  char pool[64], id[32];
  uint64_t snap = p->snap_id, overlap = p->overlap;
  snprintf(pool, sizeof pool, "%s", p->pool);
  snprintf(id, sizeof id, "%s", p->image_id);
  for (;;) {
    if (img->n_anc == sizeof img->anc / sizeof img->anc[0])
      return lb_err(-ELOOP, "image '%s': more than 16 levels of parents", img->name);
    if (strcmp(pool, img->io->pool))
      return lb_err(-EXDEV, "image '%s': parent in another pool ('%s')", img->name, pool);
    struct img_parent *a = &img->anc[img->n_anc++];
    snprintf(a->id, sizeof a->id, "%s", id);
    a->snap = snap;
    a->overlap = overlap;
    Blk__ImageHeader *h;
    int r = image_header_read(img->io, a->id, &h, NULL);
    if (r < 0)
      return r;
    const Blk__ImageHeader__Parent *np = NULL;
    for (size_t i = 0; i < h->n_snaps; i++)
      if (h->snaps[i]->id == a->snap && h->snaps[i]->parent && h->snaps[i]->parent->image_id[0])
        np = h->snaps[i]->parent;
    if (np) {
      snprintf(pool, sizeof pool, "%s", np->pool);
      snprintf(id, sizeof id, "%s", np->image_id);
      snap = np->snap_id;
      if (np->overlap < overlap)
        overlap = np->overlap;
    }
    blk__image_header__free_unpacked(h, NULL);
    if (!np)
      break;
  }
  snprintf(img->parent_id, sizeof img->parent_id, "%s", img->anc[0].id);
  img->parent_snap = img->anc[0].snap;
  img->parent_overlap = img->anc[0].overlap;
  return 0;
}
