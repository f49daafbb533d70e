/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: image metadata (docs/images.md has the byte-level
 * formats).  A pool's images are listed in one directory object,
 * `blk_directory`, whose content is an ImageDirectory protobuf (name ->
 * id, sorted by name).  Every update is a read-modify-write: read the
 * object and its version, change the record, WRITEFULL it asserting that
 * version (OsdOp.has_assert_version; "must not exist" when it was
 * missing); -ECANCELED means another client changed it in between, so the
 * update is redone from a fresh read (bounded retries).  An image is the
 * header object `blk_header.<id>` (an ImageHeader protobuf: size, order,
 * features, snapshot and parent placeholders) and data objects
 * `blk_data.<id>.<objno as 16 hex digits>` created only when written.
 * Metadata calls are synchronous and run on the caller's thread as a
 * sequence of synchronous object ops; only the data path (image_io.c)
 * runs as state machines on the library thread.
 * Crash ordering: create writes the header before the directory entry
 * (a crash leaves an unreferenced header, never a dangling entry); remove
 * deletes data, then the header, then the entry; shrink deletes data
 * beyond the new end before the header records the smaller size, so a
 * later grow never exposes old bytes.
 * Resize visibility: only the lock holder resizes, so its size is the
 * truth.  Every other open handle of the head (read-only opens, and a
 * writer that handed its lock over) runs a header watch on the library
 * thread: every image_refresh_interval it reads the header (one small
 * OP_READ) and adopts the size it finds (docs/images.md says why a poll
 * and not a notify).
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/image.pb-c.h"

#define DIR_OBJECT "blk_directory"
#define META_MAX (4u << 20)        /* largest directory/header object read */
#define DIR_RETRIES 20

void image_header_name(const char *id, char *out, size_t n)
{
  snprintf(out, n, "blk_header.%s", id);
}

void image_data_name(const char *id, uint64_t objno, char *out, size_t n)
{
  /* on every I/O: formatted by hand (snprintf showed in client profiles) */
  static const char pre[] = "blk_data.", hex[] = "0123456789abcdef";
  size_t il = strlen(id);
  if (n < sizeof pre - 1 + il + 1 + 16 + 1) {
    snprintf(out, n, "blk_data.%s.%016" PRIx64, id, objno);
    return;
  }
  char *p = out;
  memcpy(p, pre, sizeof pre - 1);
  p += sizeof pre - 1;
  memcpy(p, id, il);
  p += il;
  *p++ = '.';
  for (int i = 15; i >= 0; i--)
    *p++ = hex[(objno >> (4 * i)) & 15];
  *p = '\0';
}

/* Read a whole object into *buf (caller frees) with its version.  0 with
 * *len, -ENOENT (missing: *buf NULL, ver 0.0), or -errno. */
static int obj_read_all(blk_ioctx *io, const char *name, uint8_t **buf, size_t *len,
                        uint64_t ver[2])
{
  *buf = NULL;
  *len = 0;
  ver[0] = ver[1] = 0;
  uint8_t *b = malloc(META_MAX);
  if (!b)
    return lb_err(-ENOMEM, "out of memory");
  uint64_t size = 0;
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_READ };
  int64_t n = lb_obj_sync(io, &req, b, META_MAX, &size, ver);
  if (n < 0) {
    free(b);
    return (int)n;
  }
  if ((uint64_t)n >= META_MAX) {
    free(b);
    return lb_err(-EFBIG, "%s is larger than %u bytes", name, META_MAX);
  }
  *buf = b;
  *len = (size_t)n;
  return 0;
}

static bool name_ok(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 200)
    return false;
  for (const char *p = name; *p; p++)
    if (*p == '/' || (unsigned char)*p < 0x20)
      return false;
  return true;
}

/* ---- directory ---- */

struct dir {
  Blk__ImageDirectory *pb;       /* NULL when the object does not exist */
  uint64_t ver[2];
};

static int dir_read(blk_ioctx *io, struct dir *d)
{
  uint8_t *b;
  size_t len;
  d->pb = NULL;
  int r = obj_read_all(io, DIR_OBJECT, &b, &len, d->ver);
  if (r == -ENOENT) {
    lb_clear_err();
    d->ver[0] = d->ver[1] = 0;
    return 0;
  }
  if (r < 0)
    return r;
  d->pb = blk__image_directory__unpack(NULL, len, b);
  free(b);
  if (!d->pb)
    return lb_err(-EIO, "pool '%s': %s is not a valid image directory", io->pool, DIR_OBJECT);
  return 0;
}

static void dir_free(struct dir *d)
{
  if (d->pb)
    blk__image_directory__free_unpacked(d->pb, NULL);
  d->pb = NULL;
}

static const char *dir_find(const struct dir *d, const char *name)
{
  if (!d->pb)
    return NULL;
  for (size_t i = 0; i < d->pb->n_images; i++)
    if (!strcmp(d->pb->images[i]->name, name))
      return d->pb->images[i]->id;
  return NULL;
}

static int entry_cmp(const void *a, const void *b)
{
  const Blk__ImageDirectory__Entry *x = *(Blk__ImageDirectory__Entry *const *)a;
  const Blk__ImageDirectory__Entry *y = *(Blk__ImageDirectory__Entry *const *)b;
  return strcmp(x->name, y->name);
}

/* Write the directory made of the entries of d minus `drop` (NULL) plus
 * (add_name, add_id) (NULL), asserting d's version.  0, -ECANCELED (it
 * changed: redo), -errno. */
static int dir_write(blk_ioctx *io, const struct dir *d, const char *drop, const char *add_name,
                     const char *add_id)
{
  size_t n = d->pb ? d->pb->n_images : 0;
  Blk__ImageDirectory out = BLK__IMAGE_DIRECTORY__INIT;
  Blk__ImageDirectory__Entry add = BLK__IMAGE_DIRECTORY__ENTRY__INIT;
  out.images = calloc(n + 1, sizeof *out.images);
  if (!out.images)
    return lb_err(-ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++)
    if (!drop || strcmp(d->pb->images[i]->name, drop))
      out.images[out.n_images++] = d->pb->images[i];
  if (add_name) {
    add.name = (char *)add_name;
    add.id = (char *)add_id;
    out.images[out.n_images++] = &add;
  }
  qsort(out.images, out.n_images, sizeof *out.images, entry_cmp);
  size_t len = blk__image_directory__get_packed_size(&out);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) {
    free(out.images);
    return lb_err(-ENOMEM, "out of memory");
  }
  blk__image_directory__pack(&out, buf);
  free(out.images);
  struct objecter_req req = { .name = DIR_OBJECT, .op = BLK__OSD_OP_TYPE__OP_WRITEFULL,
                              .data = buf, .data_len = (uint32_t)len, .length = len,
                              .has_assert_version = true, .assert_epoch = d->ver[0],
                              .assert_v = d->ver[1] };
  int r = (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
  free(buf);
  return r;
}

/* Look up name's id into id[32].  0, -ENOENT (message set), -errno. */
static int dir_lookup(blk_ioctx *io, const char *name, char id[32])
{
  struct dir d;
  int r = dir_read(io, &d);
  if (r < 0)
    return r;
  const char *found = dir_find(&d, name);
  if (found)
    snprintf(id, 32, "%s", found);
  dir_free(&d);
  if (!found)
    return lb_err(-ENOENT, "no image '%s' in pool '%s'", name, io->pool);
  return 0;
}

/* ---- header ---- */

int image_header_read(blk_ioctx *io, const char *id, Blk__ImageHeader **out, uint64_t ver[2])
{
  char hname[64];
  uint8_t *b;
  size_t len;
  uint64_t v[2];
  image_header_name(id, hname, sizeof hname);
  int r = obj_read_all(io, hname, &b, &len, ver ? ver : v);
  if (r == -ENOENT)
    return lb_err(-ENOENT, "image header %s is missing", hname);
  if (r < 0)
    return r;
  *out = blk__image_header__unpack(NULL, len, b);
  free(b);
  if (!*out || (*out)->order < 12 || (*out)->order > 26 || strcmp((*out)->id, id)) {
    if (*out)
      blk__image_header__free_unpacked(*out, NULL);
    return lb_err(-EIO, "image header %s is corrupt", hname);
  }
  return 0;
}

static int header_read(blk_ioctx *io, const char *id, Blk__ImageHeader **out)
{
  return image_header_read(io, id, out, NULL);
}

int image_header_write(blk_ioctx *io, const Blk__ImageHeader *h, const uint64_t ver[2])
{
  char hname[64];
  image_header_name(h->id, hname, sizeof hname);
  size_t len = blk__image_header__get_packed_size(h);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return lb_err(-ENOMEM, "out of memory");
  blk__image_header__pack(h, buf);
  struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_WRITEFULL, .data = buf,
                              .data_len = (uint32_t)len, .length = len };
  if (ver) {
    req.has_assert_version = true;
    req.assert_epoch = ver[0];
    req.assert_v = ver[1];
  }
  int r = (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
  free(buf);
  return r;
}

static int header_write(blk_ioctx *io, const Blk__ImageHeader *h)
{
  return image_header_write(io, h, NULL);
}

/* ---- public API ---- */

LB_API int blk_image_create(blk_ioctx *io, const char *name, uint64_t size, int order)
{
  lb_clear_err();
  if (!io)
    return lb_err(-EINVAL, "I/O context is NULL");
  if (!name_ok(name))
    return lb_err(-EINVAL, "bad image name '%s' (1..200 bytes, no '/')", name ? name : "");
  if (size == 0)
    return lb_err(-EINVAL, "image size must be greater than zero");
  if (order == 0)
    order = 22;
  if (order < 12 || order > 26)
    return lb_err(-EINVAL, "object size must be 2^12 (4 KiB) .. 2^26 (64 MiB), got 2^%d", order);
  if (size > (UINT64_MAX >> 1))
    return lb_err(-EINVAL, "image size too large");
  char id[32];
  int r = image_new_id(id);
  if (r < 0)
    return r;
  Blk__ImageHeader h = BLK__IMAGE_HEADER__INIT;
  h.format = 1;
  h.id = id;
  h.size = size;
  h.order = (uint32_t)order;
  h.create_time_ms = (uint64_t)util_wall_ms();
  return image_create_hdr(io, name, &h);
}

int image_new_id(char id[32])
{
  unsigned char rb[8];
  if (RAND_bytes(rb, sizeof rb) != 1)
    return lb_err(-EIO, "no random bytes for the image id");
  for (int i = 0; i < 8; i++)
    snprintf(id + 2 * i, 3, "%02x", rb[i]);
  return 0;
}

int image_dir_name_of(blk_ioctx *io, const char *id, char *out, size_t n)
{
  struct dir d;
  int r = dir_read(io, &d);
  if (r < 0)
    return r;
  r = -ENOENT;
  for (size_t i = 0; d.pb && i < d.pb->n_images; i++)
    if (!strcmp(d.pb->images[i]->id, id)) {
      snprintf(out, n, "%s", d.pb->images[i]->name);
      r = 0;
    }
  dir_free(&d);
  return r;
}

int image_create_hdr(blk_ioctx *io, const char *name, const Blk__ImageHeader *hp)
{
  const char *id = hp->id;
  const Blk__ImageHeader h = *hp;
  int r = 0;
  bool header_written = false;
  for (int attempt = 0; attempt < DIR_RETRIES; attempt++) {
    struct dir d;
    if ((r = dir_read(io, &d)) < 0)
      break;
    if (dir_find(&d, name)) {
      dir_free(&d);
      r = lb_err(-EEXIST, "image '%s' already exists in pool '%s'", name, io->pool);
      break;
    }
    if (!header_written) {
      if ((r = header_write(io, &h)) < 0) {
        dir_free(&d);
        break;
      }
      header_written = true;
    }
    r = dir_write(io, &d, NULL, name, id);
    dir_free(&d);
    if (r != -ECANCELED)
      break;
  }
  if (r < 0 && header_written) {
    char hname[64];
    image_header_name(id, hname, sizeof hname);
    char keep[LB_MSG];
    snprintf(keep, sizeof keep, "%s", blk_last_error());
    blk_object_remove(io, hname);
    lb_set_msg(keep);
  }
  return r;
}

LB_API int blk_image_list(blk_ioctx *io, char ***names, size_t *n)
{
  lb_clear_err();
  if (!io || !names || !n)
    return lb_err(-EINVAL, "blk_image_list: NULL argument");
  struct dir d;
  int r = dir_read(io, &d);
  if (r < 0)
    return r;
  size_t cnt = d.pb ? d.pb->n_images : 0;
  char **v = calloc(cnt + 1, sizeof *v);
  if (!v) {
    dir_free(&d);
    return lb_err(-ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < cnt; i++) {
    if (!(v[i] = strdup(d.pb->images[i]->name))) {
      blk_image_list_free(v, i);
      dir_free(&d);
      return lb_err(-ENOMEM, "out of memory");
    }
  }
  dir_free(&d);
  *names = v;
  *n = cnt;
  return 0;
}

LB_API void blk_image_list_free(char **names, size_t n)
{
  if (!names)
    return;
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

LB_API int blk_image_rename(blk_ioctx *io, const char *src, const char *dst)
{
  lb_clear_err();
  if (!io || !name_ok(src) || !name_ok(dst))
    return lb_err(-EINVAL, "bad image name (1..200 bytes, no '/')");
  int r = 0;
  for (int attempt = 0; attempt < DIR_RETRIES; attempt++) {
    struct dir d;
    if ((r = dir_read(io, &d)) < 0)
      return r;
    const char *id = dir_find(&d, src);
    if (!id) {
      dir_free(&d);
      return lb_err(-ENOENT, "no image '%s' in pool '%s'", src, io->pool);
    }
    if (dir_find(&d, dst)) {
      dir_free(&d);
      return lb_err(-EEXIST, "image '%s' already exists in pool '%s'", dst, io->pool);
    }
    char idc[32];
    snprintf(idc, sizeof idc, "%s", id);
    r = dir_write(io, &d, src, dst, idc);
    dir_free(&d);
    if (r != -ECANCELED)
      return r;
  }
  return lb_err(r, "directory of pool '%s' kept changing", io->pool);
}

LB_API int blk_image_remove(blk_ioctx *io, const char *name)
{
  lb_clear_err();
  if (!io || !name_ok(name))
    return lb_err(-EINVAL, "bad image name '%s'", name ? name : "");
  char id[32];
  int r = dir_lookup(io, name, id);
  if (r < 0)
    return r;
  Blk__ImageHeader *h = NULL;
  r = header_read(io, id, &h);
  if (r < 0 && r != -ENOENT)
    return r;
  if (h) {
    if ((r = image_lock_check_free(io, id)) < 0) {
      blk__image_header__free_unpacked(h, NULL);
      if (r == -EBUSY)
        return lb_err(r, "image '%s' is open by a writer (its lock is held)", name);
      return r;
    }
    if (h->n_snaps) {
      size_t ns = h->n_snaps;
      blk__image_header__free_unpacked(h, NULL);
      return lb_err(-ENOTEMPTY, "image '%s' has %zu snapshot(s); remove them first", name, ns);
    }
    struct img_snapc sc = { h->snap_seq, NULL, 0 };
    r = image_io_trim(io, id, h->order, 0, h->size, &sc);
    if (r == 0 && h->parent && h->parent->image_id[0])
      r = image_parent_detach(io, h->parent->image_id, id);   /* a clone */
    blk__image_header__free_unpacked(h, NULL);
    if (r < 0)
      return r;
    char hname[64];
    image_header_name(id, hname, sizeof hname);
    r = blk_object_remove(io, hname);
    if (r < 0 && r != -ENOENT)
      return r;
  }
  for (int attempt = 0; attempt < DIR_RETRIES; attempt++) {
    struct dir d;
    if ((r = dir_read(io, &d)) < 0)
      return r;
    const char *cur = dir_find(&d, name);
    if (!cur || strcmp(cur, id)) {
      dir_free(&d);
      return 0;          /* someone else removed or replaced it meanwhile */
    }
    r = dir_write(io, &d, name, NULL, NULL);
    dir_free(&d);
    if (r != -ECANCELED)
      return r;
  }
  return lb_err(r, "directory of pool '%s' kept changing", io->pool);
}

/* ---- header watch (library thread) ---- */

/* The periodic header refresh of one handle.  Created by watch_start on
 * the library thread, freed by watch_stop there (or by the read callback
 * when a stop came while a read was in flight). */
struct img_watch {
  blk_image *img;
  struct event *timer;
  int64_t interval_ms;
  char hname[64];
  bool busy;                 /* a header read is in flight */
  bool stopping;
  struct lb_sync *stopped;   /* watch_stop waits here while busy */
};

static void watch_arm(struct img_watch *w)
{
  struct timeval tv = { w->interval_ms / 1000, (w->interval_ms % 1000) * 1000 };
  evtimer_add(w->timer, &tv);
}

static void watch_free(struct img_watch *w)
{
  if (w->timer)
    event_free(w->timer);
  free(w);
}

static void watch_read_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                          uint32_t len)
{
  struct img_watch *w = arg;
  blk_image *img = w->img;
  (void)rep;
  w->busy = false;
  if (w->stopping) {
    struct lb_sync *s = w->stopped;
    img->watch = NULL;
    watch_free(w);
    if (s)
      lb_sync_done(s, 0, NULL);
    return;
  }
  Blk__ImageHeader *h = err < 0 ? NULL : blk__image_header__unpack(NULL, len, data);
  /* the holder's own size is the truth (a shrink lowers it before the
   * header): adopt the header's only while this handle holds no lock */
  if (h && !strcmp(h->id, img->id) && !image_lock_held(img)) {
    uint64_t old = __atomic_load_n(&img->size, __ATOMIC_ACQUIRE);
    if (h->size != old) {
      __atomic_store_n(&img->size, h->size, __ATOMIC_RELEASE);
      uint64_t ov = h->parent ? h->parent->overlap : 0;
      if (__atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE) > ov)
        __atomic_store_n(&img->parent_overlap, ov, __ATOMIC_RELEASE);
      log_info("libblk", "image '%s': resized by another client: %" PRIu64 " -> %" PRIu64
               " bytes", img->name, old, h->size);
    }
  }
  if (h)
    blk__image_header__free_unpacked(h, NULL);
  watch_arm(w);
}

static void watch_tick(evutil_socket_t fd, short what, void *arg)
{
  struct img_watch *w = arg;
  (void)fd;
  (void)what;
  if (w->stopping)
    return;
  if (image_lock_held(w->img)) {
    watch_arm(w);   /* the holder needs no refresh; look again later */
    return;
  }
  struct objecter_req req = { .name = w->hname, .op = BLK__OSD_OP_TYPE__OP_READ };
  w->busy = true;
  if (lb_objecter_op(w->img->io, &req, watch_read_cb, w) < 0) {
    w->busy = false;
    watch_arm(w);
  }
}

struct watch_task {
  struct lb_task t;
  blk_image *img;
  struct lb_sync s;
};

static void watch_start_fn(struct lb_task *t)
{
  struct watch_task *wt = (struct watch_task *)t;
  blk_image *img = wt->img;
  int64_t ms = config_get_int(img->io->c->cfg, "image_refresh_interval");
  struct img_watch *w = ms > 0 ? calloc(1, sizeof *w) : NULL;
  if (w) {
    w->img = img;
    w->interval_ms = ms;
    image_header_name(img->id, w->hname, sizeof w->hname);
    w->timer = evtimer_new(img->io->c->base, watch_tick, w);
    if (!w->timer) {
      free(w);
      w = NULL;
    } else {
      watch_arm(w);
    }
  }
  img->watch = w;   /* NULL: no watch (disabled or out of memory) */
  lb_sync_done(&wt->s, 0, NULL);
}

static void watch_stop_fn(struct lb_task *t)
{
  struct watch_task *wt = (struct watch_task *)t;
  struct img_watch *w = wt->img->watch;
  if (!w) {
    lb_sync_done(&wt->s, 0, NULL);
    return;
  }
  w->stopping = true;
  evtimer_del(w->timer);
  if (w->busy) {
    w->stopped = &wt->s;   /* the read callback frees w and completes s */
    return;
  }
  wt->img->watch = NULL;
  watch_free(w);
  lb_sync_done(&wt->s, 0, NULL);
}

/* Caller thread: start / stop img's header watch (snapshot opens have a
 * fixed size and none). */
static void image_watch_run(blk_image *img, void (*fn)(struct lb_task *t))
{
  struct watch_task wt = { .t.fn = fn, .img = img };
  lb_sync_init(&wt.s);
  if (lb_submit(img->io->c, &wt.t) == 0)
    lb_sync_wait(&wt.s);
  lb_sync_destroy(&wt.s);
}

LB_API int blk_image_open(blk_ioctx *io, const char *name, const char *snap, int flags,
                          blk_image **out)
{
  lb_clear_err();
  if (!io || !out)
    return lb_err(-EINVAL, "blk_image_open: NULL argument");
  if (!name_ok(name))
    return lb_err(-EINVAL, "bad image name '%s'", name ? name : "");
  if (snap && !snap[0])
    snap = NULL;
  if (snap)
    flags |= BLK_IMAGE_RDONLY;   /* snapshots are read-only */
  if (flags & ~(BLK_IMAGE_RDONLY | BLK_IMAGE_EXCLUSIVE))
    return lb_err(-EINVAL, "unknown open flags 0x%x", (unsigned)flags);
  char id[32];
  int r = dir_lookup(io, name, id);
  if (r < 0)
    return r;
  Blk__ImageHeader *h;
  if ((r = header_read(io, id, &h)) < 0)
    return r;
  blk_image *img = calloc(1, sizeof *img);
  if (!img) {
    blk__image_header__free_unpacked(h, NULL);
    return lb_err(-ENOMEM, "out of memory");
  }
  img->io = io;
  snprintf(img->name, sizeof img->name, "%s", name);
  snprintf(img->id, sizeof img->id, "%s", id);
  img->order = h->order;
  img->size = h->size;
  img->rdonly = flags & BLK_IMAGE_RDONLY;
  for (size_t i = 0; snap && i < h->n_snaps; i++)
    if (!strcmp(h->snaps[i]->name, snap)) {
      img->snap_id = h->snaps[i]->id;
      img->size = h->snaps[i]->size;
    }
  if (snap && !img->snap_id) {
    blk__image_header__free_unpacked(h, NULL);
    free(img);
    return lb_err(-ENOENT, "image '%s' has no snapshot '%s'", name, snap);
  }
  const Blk__ImageHeader__Parent *par = h->parent;
  for (size_t i = 0; snap && i < h->n_snaps; i++)
    if (h->snaps[i]->id == img->snap_id)
      par = h->snaps[i]->parent;   /* the parent of the snapshot */
  r = image_load_ancestry(img, par);   /* a clone (parents in the same pool) */
  blk__image_header__free_unpacked(h, NULL);
  if (r < 0) {
    free(img);
    return r;
  }
  if (!img->rdonly) {
    r = image_lock_acquire(img, flags);
    if (r < 0) {
      free(img);
      return r;
    }
    /* the header may have changed while we waited for the lock */
    if ((r = header_read(io, id, &h)) < 0) {
      image_lock_release(img);
      free(img);
      return r;
    }
    img->size = h->size;
    r = image_snapc_from_header(h, &img->snapc);
    blk__image_header__free_unpacked(h, NULL);
    if (r < 0) {
      image_lock_release(img);
      free(img);
      return r;
    }
  }
  lb_image_register(img);
  if (!img->snap_id)
    image_watch_run(img, watch_start_fn);
  *out = img;
  return 0;
}

struct drain_task {
  struct lb_task t;
  blk_image *img;
  struct lb_sync s;
};

static void drain_task_fn(struct lb_task *t)
{
  struct drain_task *dt = (struct drain_task *)t;
  image_io_drain(dt->img, &dt->s);
}

/* Caller thread: wait until no request of img is in flight. */
static int image_drain(blk_image *img)
{
  struct drain_task dt = { .t.fn = drain_task_fn, .img = img };
  lb_sync_init(&dt.s);
  int r = lb_submit(img->io->c, &dt.t);
  if (r == 0)
    r = (int)lb_sync_wait(&dt.s);
  lb_sync_destroy(&dt.s);
  return r;
}

LB_API int blk_image_close(blk_image *img)
{
  lb_clear_err();
  if (!img)
    return 0;
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_close from a libblk callback");
  if (!img->snap_id)
    image_watch_run(img, watch_stop_fn);
  int r = image_drain(img);
  if (r == 0 && img->write_err < 0)
    r = lb_err(img->write_err, "a write of image '%s' failed before close", img->name);
  if (!img->rdonly)
    image_lock_release(img);
  lb_image_unregister(img);
  free(img->zeroes);
  image_snapc_free(&img->snapc);
  free(img);
  return r;
}

LB_API uint64_t blk_image_size(blk_image *img)
{
  return img ? __atomic_load_n(&img->size, __ATOMIC_ACQUIRE) : 0;
}

LB_API int blk_image_stat(blk_image *img, struct blk_image_info *info)
{
  lb_clear_err();
  if (!img || !info)
    return lb_err(-EINVAL, "blk_image_stat: NULL argument");
  memset(info, 0, sizeof *info);
  info->size = blk_image_size(img);
  info->order = img->order;
  info->object_size = 1ull << img->order;
  info->num_objects = (info->size + info->object_size - 1) >> img->order;
  snprintf(info->id, sizeof info->id, "%s", img->id);
  return 0;
}

LB_API int blk_image_resize(blk_image *img, uint64_t size)
{
  lb_clear_err();
  if (!img)
    return lb_err(-EINVAL, "image is NULL");
  if (img->rdonly)
    return lb_err(-EROFS, "image '%s' is open %s", img->name,
                  img->snap_id ? "at a snapshot (read-only)" : "read-only");
  if (size == 0)
    return lb_err(-EINVAL, "image size must be greater than zero");
  if (size > (UINT64_MAX >> 1))
    return lb_err(-EINVAL, "image size too large");
  if (lb_on_loop())
    return lb_err(-EDEADLK, "blk_image_resize from a libblk callback");
  int r = image_lock_check_write(img);
  if (r < 0)
    return r;
  Blk__ImageHeader *h;
  if ((r = header_read(img->io, img->id, &h)) < 0)
    return r;
  uint64_t old = h->size;
  if (size < old) {
    /* new I/O beyond the new end fails from now on; wait for what is in
     * flight, then delete the data past the end before the header shrinks */
    __atomic_store_n(&img->size, size, __ATOMIC_RELEASE);
    if ((r = image_drain(img)) < 0) {
      blk__image_header__free_unpacked(h, NULL);
      return r;
    }
    struct img_snapc sc;
    r = image_snapc_from_header(h, &sc);   /* the header's: the newest */
    if (r == 0)
      r = image_io_trim(img->io, img->id, img->order, size, old, &sc);
    image_snapc_free(&sc);
    if (r < 0) {
      blk__image_header__free_unpacked(h, NULL);
      return r;
    }
  }
  /* guarded: snapshot operations update the header concurrently */
  for (int attempt = 0; attempt < DIR_RETRIES; attempt++) {
    uint64_t ver[2];
    blk__image_header__free_unpacked(h, NULL);
    if ((r = image_header_read(img->io, img->id, &h, ver)) < 0)
      return r;
    h->size = size;
    if (h->parent && h->parent->overlap > size)
      h->parent->overlap = size;   /* a clone never sees the parent past a shrink */
    r = image_header_write(img->io, h, ver);
    if (r != -ECANCELED)
      break;
  }
  blk__image_header__free_unpacked(h, NULL);
  if (r < 0)
    return r;
  __atomic_store_n(&img->size, size, __ATOMIC_RELEASE);
  if (__atomic_load_n(&img->parent_overlap, __ATOMIC_ACQUIRE) > size)
    __atomic_store_n(&img->parent_overlap, size, __ATOMIC_RELEASE);
  return 0;
}
