/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: object operations of the public API.  Each call becomes
 * one `struct obj_call` (a copy of the request with its own strings, plus
 * where the result goes) queued to the library thread, which starts the
 * objecter op; the objecter's callback copies read data / size / version
 * out and completes either a waiting synchronous caller (lb_sync) or the
 * user's aio callback.  Write data is copied by the objecter when the op
 * starts, so a caller's buffer is not touched after the op is sent.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct obj_call {
  struct lb_task t;
  blk_ioctx *io;
  struct objecter_req req;
  char *name, *key;              /* owned copies */
  void *rbuf;                    /* read destination (borrowed) */
  size_t rlen;
  bool full_len;                 /* result = value length (xattr/omap get) */
  uint64_t *size_out;
  uint64_t *ver_out;             /* [2]: epoch, v */
  struct lb_sync *sync;          /* synchronous caller, or */
  blk_callback cb;               /* aio callback */
  void *arg;
};

static void call_free(struct obj_call *oc)
{
  free(oc->name);
  free(oc->key);
  free(oc);
}

static void call_done(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                      uint32_t len)
{
  struct obj_call *oc = arg;
  int64_t r = err;
  const char *msg = NULL;
  char buf[LB_MSG];
  if (err == 0) {
    if (oc->rbuf) {
      size_t n = len < oc->rlen ? len : oc->rlen;
      memcpy(oc->rbuf, data, n);
      r = oc->full_len ? (int64_t)len : (int64_t)n;
    } else if (oc->full_len) {
      r = len;
    }
    if (oc->size_out && rep)
      *oc->size_out = rep->size;
    if (oc->ver_out) {
      oc->ver_out[0] = rep && rep->version ? rep->version->epoch : 0;
      oc->ver_out[1] = rep && rep->version ? rep->version->v : 0;
    }
  } else {
    snprintf(buf, sizeof buf, "%s %s: %s", oc->req.op == BLK__OSD_OP_TYPE__OP_READ ? "read" : "op",
             oc->name ? oc->name : "", rep && rep->message && rep->message[0] ? rep->message
                                                                        : strerror(-err));
    msg = buf;
  }
  if (oc->sync) {
    lb_sync_done(oc->sync, r, msg);
  } else {
    if (msg)
      lb_set_msg(msg);
    else
      lb_clear_err();
    oc->cb(oc->arg, r);
  }
  call_free(oc);
}

static void call_task(struct lb_task *t)
{
  struct obj_call *oc = (struct obj_call *)t;
  int r = lb_objecter_op(oc->io, &oc->req, call_done, oc);
  if (r < 0)
    call_done(oc, r, NULL, NULL, 0);
}

static struct obj_call *call_new(blk_ioctx *io, const struct objecter_req *req)
{
  struct obj_call *oc = calloc(1, sizeof *oc);
  if (!oc)
    return NULL;
  oc->t.fn = call_task;
  oc->io = io;
  oc->req = *req;
  oc->name = req->name ? strdup(req->name) : NULL;
  oc->key = req->key ? strdup(req->key) : NULL;
  if ((req->name && !oc->name) || (req->key && !oc->key)) {
    call_free(oc);
    return NULL;
  }
  oc->req.name = oc->name;
  oc->req.key = oc->key;
  return oc;
}

int64_t lb_obj_sync(blk_ioctx *io, const struct objecter_req *req, void *rbuf, size_t rlen,
                    uint64_t *size, uint64_t ver[2])
{
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous call from a libblk callback");
  struct obj_call *oc = call_new(io, req);
  if (!oc)
    return lb_err(-ENOMEM, "out of memory");
  struct lb_sync s;
  lb_sync_init(&s);
  oc->sync = &s;
  oc->rbuf = rbuf;
  oc->rlen = rlen;
  oc->size_out = size;
  oc->ver_out = ver;
  oc->full_len = req->op == BLK__OSD_OP_TYPE__OP_GETXATTR ||
                 req->op == BLK__OSD_OP_TYPE__OP_OMAP_GET;
  int64_t r = lb_submit(io->c, &oc->t);
  if (r < 0) {
    call_free(oc);
    lb_sync_destroy(&s);
    return lb_err((int)r, "cluster not connected");
  }
  r = lb_sync_wait(&s);
  lb_sync_destroy(&s);
  return r;
}

static int check_name(blk_ioctx *io, const char *name)
{
  lb_clear_err();
  if (!io)
    return lb_err(-EINVAL, "I/O context is NULL");
  if (!name || !*name)
    return lb_err(-EINVAL, "empty object name");
  return 0;
}

LB_API int64_t blk_object_read(blk_ioctx *io, const char *name, uint64_t off, size_t len,
                               void *buf)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if (len == 0)
    return 0;
  if (!buf || len > UINT32_MAX)
    return lb_err(-EINVAL, "bad read buffer or length");
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_READ, .offset = off,
                              .length = len };
  return lb_obj_sync(io, &req, buf, len, NULL, NULL);
}

LB_API int blk_object_write(blk_ioctx *io, const char *name, uint64_t off, size_t len,
                            const void *buf)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if ((!buf && len) || len > UINT32_MAX)
    return lb_err(-EINVAL, "bad write buffer or length");
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_WRITE, .offset = off,
                              .length = len, .data = buf, .data_len = (uint32_t)len };
  return (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
}

LB_API int blk_object_write_full(blk_ioctx *io, const char *name, size_t len, const void *buf)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if ((!buf && len) || len > UINT32_MAX)
    return lb_err(-EINVAL, "bad write buffer or length");
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_WRITEFULL,
                              .length = len, .data = buf, .data_len = (uint32_t)len };
  return (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
}

LB_API int blk_object_remove(blk_ioctx *io, const char *name)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_REMOVE };
  return (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
}

LB_API int blk_object_stat(blk_ioctx *io, const char *name, uint64_t *size)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  uint64_t sz = 0;
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_STAT };
  r = (int)lb_obj_sync(io, &req, NULL, 0, &sz, NULL);
  if (r == 0 && size)
    *size = sz;
  return r;
}

LB_API int blk_object_truncate(blk_ioctx *io, const char *name, uint64_t size)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_TRUNCATE, .offset = size };
  return (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
}

static int kv_get(blk_ioctx *io, Blk__OsdOpType op, const char *name, const char *key, void *buf,
                  size_t len)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if (!key || !*key || (!buf && len))
    return lb_err(-EINVAL, "empty key or NULL buffer");
  struct objecter_req req = { .name = name, .op = op, .key = key };
  int64_t n = lb_obj_sync(io, &req, buf, len, NULL, NULL);
  return n > INT32_MAX ? -EOVERFLOW : (int)n;
}

static int kv_set(blk_ioctx *io, Blk__OsdOpType op, const char *name, const char *key,
                  const void *val, size_t len)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if (!key || !*key || (!val && len) || len > UINT32_MAX)
    return lb_err(-EINVAL, "empty key or bad value");
  struct objecter_req req = { .name = name, .op = op, .key = key, .data = val,
                              .data_len = (uint32_t)len, .length = len };
  return (int)lb_obj_sync(io, &req, NULL, 0, NULL, NULL);
}

LB_API int blk_object_getxattr(blk_ioctx *io, const char *name, const char *key, void *buf,
                               size_t len)
{
  return kv_get(io, BLK__OSD_OP_TYPE__OP_GETXATTR, name, key, buf, len);
}

LB_API int blk_object_setxattr(blk_ioctx *io, const char *name, const char *key,
                               const void *val, size_t len)
{
  return kv_set(io, BLK__OSD_OP_TYPE__OP_SETXATTR, name, key, val, len);
}

LB_API int blk_object_rmxattr(blk_ioctx *io, const char *name, const char *key)
{
  return kv_set(io, BLK__OSD_OP_TYPE__OP_RMXATTR, name, key, NULL, 0);
}

LB_API int blk_object_omap_get(blk_ioctx *io, const char *name, const char *key, void *buf,
                               size_t len)
{
  return kv_get(io, BLK__OSD_OP_TYPE__OP_OMAP_GET, name, key, buf, len);
}

LB_API int blk_object_omap_set(blk_ioctx *io, const char *name, const char *key,
                               const void *val, size_t len)
{
  return kv_set(io, BLK__OSD_OP_TYPE__OP_OMAP_SET, name, key, val, len);
}

LB_API int blk_object_omap_rm(blk_ioctx *io, const char *name, const char *key)
{
  return kv_set(io, BLK__OSD_OP_TYPE__OP_OMAP_RM, name, key, NULL, 0);
}

static int aio_start(blk_ioctx *io, const struct objecter_req *req, void *rbuf, size_t rlen,
                     blk_callback cb, void *arg)
{
  if (!cb)
    return lb_err(-EINVAL, "NULL callback");
  struct obj_call *oc = call_new(io, req);
  if (!oc)
    return lb_err(-ENOMEM, "out of memory");
  oc->rbuf = rbuf;
  oc->rlen = rlen;
  oc->cb = cb;
  oc->arg = arg;
  int r = lb_submit(io->c, &oc->t);
  if (r < 0) {
    call_free(oc);
    return lb_err(r, "cluster not connected or shutting down");
  }
  return 0;
}

LB_API int blk_object_aio_read(blk_ioctx *io, const char *name, uint64_t off, size_t len,
                               void *buf, blk_callback cb, void *arg)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if (!buf || len == 0 || len > UINT32_MAX)
    return lb_err(-EINVAL, "bad read buffer or length");
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_READ, .offset = off,
                              .length = len };
  return aio_start(io, &req, buf, len, cb, arg);
}

LB_API int blk_object_aio_write(blk_ioctx *io, const char *name, uint64_t off, size_t len,
                                const void *buf, blk_callback cb, void *arg)
{
  int r = check_name(io, name);
  if (r < 0)
    return r;
  if (!buf || len == 0 || len > UINT32_MAX)
    return lb_err(-EINVAL, "bad write buffer or length");
  /* the objecter copies the data only when the op starts on the library
   * thread; the buffer stays borrowed until cb, as documented */
  struct objecter_req req = { .name = name, .op = BLK__OSD_OP_TYPE__OP_WRITE, .offset = off,
                              .length = len, .data = buf, .data_len = (uint32_t)len };
  return aio_start(io, &req, NULL, 0, cb, arg);
}
