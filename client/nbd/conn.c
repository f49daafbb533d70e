/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the transmission phase of one connection.  The read
 * callback decodes as many whole requests as the input holds (a WRITE is
 * taken only once its whole payload is there), checks each one against
 * what was negotiated (proto.c) and starts the libblk call; many requests
 * run at once, up to max_inflight per connection, after which reading
 * pauses until replies go out.  A refused WRITE still has its payload
 * skipped so the stream stays in sync; a bad magic closes the connection.
 *
 * This code runs on the loop serving the connection: libblk's library
 * thread for plain TCP and unix connections (handed over after the
 * handshake, see nbd.h), blk-nbd's loop for TLS ones.  libblk calls back
 * on its own thread: for a connection served there the callback replies
 * in place (complete_one); for one served on blk-nbd's loop it stores the
 * result in the request and pushes it on the server's inbox, then writes
 * the eventfd, and blk-nbd's loop replies.  A request holds a reference
 * on its connection, so a client that disconnects with writes in flight
 * loses nothing that was acknowledged (nothing was) and the server never
 * touches freed memory: the writes complete in the cluster, their replies
 * are dropped.
 *
 * Replies: simple replies unless structured replies were negotiated;
 * then READ answers with OFFSET_DATA chunks and, for reads of at least
 * HOLE_MIN bytes without DF, OFFSET_HOLE chunks for zero ranges.  How the
 * zero ranges are found is --read-holes: "scan" (default) looks for runs
 * of zero 4 KiB blocks in the data read (no extra cluster op: unallocated
 * ranges read as zeroes, so they are found, and so are written zeroes);
 * "map" runs a block status beside the read and sends a hole where the
 * allocation map says hole/zero *and* the data is zero (measured: 64 KiB
 * random reads lose 30-50 % of their IOPS to the extra op, see
 * docs/nbd.md).  BLOCK_STATUS answers base:allocation from
 * blk_image_aio_block_status.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/nbd/nbd.h"
#include "common/log.h"

#define SUB "nbd"
#define HOLE_MIN (64u * 1024)                /* reads this big look for holes */
#define OUT_HIGH (64u * 1024 * 1024)         /* pause reading above this output */
#define MAX_READ_CHUNKS 64

/* ---- libblk thread side: record and reply or hand over ---- */

static void complete_one(struct nbd_req *q);

static void req_done(struct nbd_req *q)
{
  if (__atomic_sub_fetch(&q->pending, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  if (q->conn->remote) {
    /* served on this thread: reply now, no thread crossing */
    complete_one(q);
    return;
  }
  struct nbd_server *srv = q->conn->srv; /* srv outlives every request */
  /* release: what this thread wrote in q is visible to the loop that
   * reads the kind (liburcu orders it too, but sanitizers cannot see that) */
  __atomic_store_n(&q->msg.kind, NBD_MSG_REQ, __ATOMIC_RELEASE);
  /* Wake the loop only when the queue was empty: the loop drains until
   * the queue is empty, so a completion queued behind others is found by
   * the drain that the first one's wakeup started (one eventfd write per
   * batch, not per request). */
  if (cds_wfcq_enqueue(&srv->cq_head, &srv->cq_tail, &q->msg.node))
    return;
  uint64_t one = 1;
  ssize_t w = write(srv->cq_fd, &one, sizeof one);
  (void)w; /* EAGAIN: the counter is saturated, the loop wakes anyway */
}

static void io_cb(void *arg, int64_t result)
{
  struct nbd_req *q = arg;
  q->result = result;
  req_done(q);
}

static void bs_cb(void *arg, int result, const struct blk_extent *ext, size_t n)
{
  struct nbd_req *q = arg;
  q->bs_result = result;
  if (result >= 0 && n > 0) {
    q->ext = malloc(n * sizeof *q->ext);
    if (q->ext) {
      for (size_t i = 0; i < n; i++) {
        q->ext[i].offset = ext[i].offset;
        q->ext[i].length = ext[i].length;
        q->ext[i].flags = ext[i].flags;
      }
      q->next = n;
    } else {
      q->bs_result = -ENOMEM;
    }
  }
  if (q->want_holes) {
    /* beside a read: only a hint, the read's result is what counts */
  } else {
    q->result = q->bs_result < 0 ? q->bs_result : 0;
  }
  req_done(q);
}

/* ---- loop side ---- */

static void free_ref_cb(const void *data, size_t len, void *arg);

/* The loop serving q's connection: free q (a small one goes back to that
 * loop's cache). */
static void req_free(struct nbd_req *q)
{
  free(q->ext);
  if (!q->small) {
    free(q->buf);
    free(q);
    return;
  }
  struct nbd_req_cache *rc = &q->conn->srv->req_cache[q->conn->remote];
  if (rc->n >= NBD_REQ_CACHE) {
    free(q);
    return;
  }
  q->cache_next = rc->head;
  rc->head = q;
  rc->n++;
}

/* The loop serving c: a zeroed request; I/O up to NBD_REQ_SMALL bytes gets
 * the inline buffer (recycled through that loop's cache), larger I/O a
 * buffer of its own.  NULL when out of memory. */
static struct nbd_req *req_alloc(struct nbd_conn *c, uint32_t len, bool io)
{
  struct nbd_req *q;
  if (!io || len > NBD_REQ_SMALL) {
    q = calloc(1, sizeof *q);
    if (q && io && !(q->buf = malloc(len))) {
      free(q);
      return NULL;
    }
    return q;
  }
  struct nbd_req_cache *rc = &c->srv->req_cache[c->remote];
  if ((q = rc->head) != NULL) {
    rc->head = q->cache_next;
    rc->n--;
  } else if (!(q = malloc(sizeof *q + NBD_REQ_SMALL))) {
    return NULL;
  }
  memset(q, 0, sizeof *q);
  q->small = true;
  q->buf = q->small_buf;
  return q;
}

void nbd_req_cache_free(struct nbd_server *srv)
{
  for (size_t i = 0; i < 2; i++) {
    struct nbd_req_cache *rc = &srv->req_cache[i];
    while (rc->head) {
      struct nbd_req *q = rc->head;
      rc->head = q->cache_next;
      free(q);
    }
    rc->n = 0;
  }
}

/* Append q's read data to out: a large buffer is handed over without a
 * copy; a small inline one (4 KiB: cheaper to copy than to reference)
 * is copied and the request recycled. */
static void add_read_data(struct evbuffer *out, struct nbd_req *q, const uint8_t *p,
                          uint32_t len)
{
  if (!q->small && p == q->buf && len == q->r.len &&
      evbuffer_add_reference(out, q->buf, len, free_ref_cb, q->buf) == 0) {
    q->buf = NULL;
    return;
  }
  evbuffer_add(out, p, len);
}

static void reply_simple(struct nbd_conn *c, uint64_t cookie, int neg_errno)
{
  uint8_t h[NBD_SIMPLE_REPLY_LEN];
  nbd_simple_reply_encode(h, nbd_errno_to_wire(neg_errno), cookie);
  evbuffer_add(bufferevent_get_output(c->bev), h, sizeof h);
}

static void reply_error_chunk(struct nbd_conn *c, uint64_t cookie, int neg_errno)
{
  uint8_t h[NBD_CHUNK_HDR_LEN + 6];
  nbd_chunk_encode(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 6);
  nbd_put32(h + NBD_CHUNK_HDR_LEN, nbd_errno_to_wire(neg_errno));
  nbd_put16(h + NBD_CHUNK_HDR_LEN + 4, 0);
  evbuffer_add(bufferevent_get_output(c->bev), h, sizeof h);
}

/* Any reply to a request that carries no data. */
static void reply_status(struct nbd_conn *c, const struct nbd_request *r, int neg_errno)
{
  if (neg_errno < 0)
    log_debug(SUB, "conn %llu: cmd %u off %llu len %u: error %d", (unsigned long long)c->id,
              r->type, (unsigned long long)r->offset, r->len, neg_errno);
  /* READ must get a structured reply once negotiated; others may be simple */
  if (c->sess.structured && neg_errno < 0 &&
      (r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS))
    reply_error_chunk(c, r->cookie, neg_errno);
  else if (c->sess.structured && r->type == NBD_CMD_READ) {
    /* a zero-length read: one NONE chunk */
    uint8_t h[NBD_CHUNK_HDR_LEN];
    nbd_chunk_encode(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, r->cookie, 0);
    evbuffer_add(bufferevent_get_output(c->bev), h, sizeof h);
  } else
    reply_simple(c, r->cookie, neg_errno);
}

static void free_ref_cb(const void *data, size_t len, void *arg)
{
  (void)data;
  (void)len;
  free(arg);
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
  return n == 0 || !memcmp(p, z, n);
}

static void data_chunk(struct evbuffer *out, uint64_t cookie, uint16_t flags, uint64_t off,
                       const uint8_t *p, uint32_t len)
{
  uint8_t h[NBD_CHUNK_HDR_LEN + 8];
  nbd_chunk_encode(h, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie, len + 8);
  nbd_put64(h + NBD_CHUNK_HDR_LEN, off);
  evbuffer_add(out, h, sizeof h);
  evbuffer_add(out, p, len);
}

/* A successful structured READ with hole detection. */
static void reply_read_holes(struct nbd_conn *c, struct nbd_req *q)
{
  struct evbuffer *out = bufferevent_get_output(c->bev);
  uint32_t (*d)[2] = malloc(MAX_READ_CHUNKS * sizeof *d);
  size_t nd = 0;
  if (d)
    nd = nbd_extents_to_descriptors(q->ext, q->next, q->r.offset, q->r.len, d,
                                    MAX_READ_CHUNKS);
  /* the last descriptor stretches to the end when the chunk cap cut it */
  uint64_t covered = 0;
  for (size_t i = 0; i < nd; i++)
    covered += d[i][0];
  if (nd && covered < q->r.len)
    d[nd - 1][0] += (uint32_t)(q->r.len - covered), d[nd - 1][1] = 0;
  if (nd == 0 || (nd == 1 && d[0][1] == 0)) {
    free(d);
    d = NULL;
    nd = 0;
  }
  if (!nd) {
    uint8_t h[NBD_CHUNK_HDR_LEN + 8];
    nbd_chunk_encode(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, q->r.cookie,
                     q->r.len + 8);
    nbd_put64(h + NBD_CHUNK_HDR_LEN, q->r.offset);
    evbuffer_add(out, h, sizeof h);
    add_read_data(out, q, q->buf, q->r.len);
    return;
  }
  /* merge neighbours into data or verified-zero runs */
  uint64_t pos = 0;
  size_t i = 0;
  while (i < nd) {
    bool zero = (d[i][1] & (NBD_STATE_HOLE | NBD_STATE_ZERO)) && all_zero(q->buf + pos, d[i][0]);
    uint64_t run = d[i][0];
    size_t j = i + 1;
    while (j < nd) {
      bool z2 = (d[j][1] & (NBD_STATE_HOLE | NBD_STATE_ZERO)) &&
                all_zero(q->buf + pos + run, d[j][0]);
      if (z2 != zero)
        break;
      run += d[j][0];
      j++;
    }
    uint16_t fl = j == nd ? NBD_REPLY_FLAG_DONE : 0;
    if (zero) {
      uint8_t h[NBD_CHUNK_HDR_LEN + 12];
      nbd_chunk_encode(h, fl, NBD_REPLY_TYPE_OFFSET_HOLE, q->r.cookie, 12);
      nbd_put64(h + NBD_CHUNK_HDR_LEN, q->r.offset + pos);
      nbd_put32(h + NBD_CHUNK_HDR_LEN + 8, (uint32_t)run);
      evbuffer_add(out, h, sizeof h);
    } else {
      data_chunk(out, q->r.cookie, fl, q->r.offset + pos, q->buf + pos, (uint32_t)run);
    }
    pos += run;
    i = j;
  }
  free(d);
}

static void reply_read(struct nbd_conn *c, struct nbd_req *q)
{
  struct evbuffer *out = bufferevent_get_output(c->bev);
  if (q->result < 0) {
    reply_status(c, &q->r, (int)q->result);
    return;
  }
  if (c->sess.structured) {
    if (q->want_holes && q->bs_result >= 0 && q->ext) {
      reply_read_holes(c, q);
      return;
    }
    if (c->srv->cfg->read_holes == NBD_HOLES_SCAN && !(q->r.flags & NBD_CMD_FLAG_DF) &&
        q->r.len >= HOLE_MIN) {
      struct nbd_extent ext[MAX_READ_CHUNKS];
      size_t n = nbd_zero_scan(q->buf, q->r.offset, q->r.len, HOLE_MIN, ext, MAX_READ_CHUNKS);
      if (n > 0) {
        q->ext = malloc(n * sizeof *q->ext);
        if (q->ext) {
          memcpy(q->ext, ext, n * sizeof *ext);
          q->next = n;
          reply_read_holes(c, q);
          return;
        }
      }
    }
    uint8_t h[NBD_CHUNK_HDR_LEN + 8];
    nbd_chunk_encode(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, q->r.cookie,
                     q->r.len + 8);
    nbd_put64(h + NBD_CHUNK_HDR_LEN, q->r.offset);
    evbuffer_add(out, h, sizeof h);
  } else {
    uint8_t h[NBD_SIMPLE_REPLY_LEN];
    nbd_simple_reply_encode(h, 0, q->r.cookie);
    evbuffer_add(out, h, sizeof h);
  }
  /* hand a large buffer to the evbuffer: no copy of the data */
  add_read_data(out, q, q->buf, q->r.len);
}

static void reply_block_status(struct nbd_conn *c, struct nbd_req *q)
{
  if (q->result < 0) {
    reply_status(c, &q->r, (int)q->result);
    return;
  }
  size_t max = (q->r.flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
  uint32_t (*d)[2] = malloc(max * sizeof *d);
  if (!d) {
    reply_status(c, &q->r, -ENOMEM);
    return;
  }
  /* answer only what libblk described (it may cover less than asked) */
  uint32_t len = q->r.len;
  if (q->next > 0) {
    const struct nbd_extent *last = &q->ext[q->next - 1];
    uint64_t end = last->offset + last->length;
    if (end > q->r.offset && end - q->r.offset < len)
      len = (uint32_t)(end - q->r.offset);
  }
  size_t nd = nbd_extents_to_descriptors(q->ext, q->next, q->r.offset, len, d, max);
  uint32_t plen = (uint32_t)(4 + 8 * nd);
  uint8_t *p = malloc(NBD_CHUNK_HDR_LEN + plen);
  if (!p) {
    free(d);
    reply_status(c, &q->r, -ENOMEM);
    return;
  }
  nbd_chunk_encode(p, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, q->r.cookie, plen);
  nbd_put32(p + NBD_CHUNK_HDR_LEN, NBD_META_ID_BASE_ALLOCATION);
  for (size_t i = 0; i < nd; i++) {
    nbd_put32(p + NBD_CHUNK_HDR_LEN + 4 + 8 * i, d[i][0]);
    nbd_put32(p + NBD_CHUNK_HDR_LEN + 8 + 8 * i, d[i][1]);
  }
  evbuffer_add(bufferevent_get_output(c->bev), p, NBD_CHUNK_HDR_LEN + plen);
  free(p);
  free(d);
}

static bool conn_may_read(struct nbd_conn *c)
{
  return c->bev && !c->closing && !c->disc && c->inflight < c->srv->cfg->max_inflight &&
         evbuffer_get_length(bufferevent_get_output(c->bev)) < OUT_HIGH;
}

/* After a reply or a drained output: read more, or finish a disconnect. */
static void conn_after_reply(struct nbd_conn *c)
{
  if (!c->bev)
    return;
  if (c->disc) {
    if (c->inflight == 0)
      nbd_conn_close_after_flush(c);
    return;
  }
  if (conn_may_read(c)) {
    bufferevent_enable(c->bev, EV_READ);
    /* requests already buffered raise no new read event */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)))
      nbd_conn_transmission_input(c);
  }
}

void nbd_conn_output_drained(struct nbd_conn *c)
{
  if (c->phase == NBD_PH_TRANSMISSION)
    conn_after_reply(c);
}

/* The loop serving q's connection: reply to the completed request q, free
 * it, read on, drop its connection reference. */
static void complete_one(struct nbd_req *q)
{
  struct nbd_conn *c = q->conn;
  c->inflight--;
  if (q->result == -EBUSY && c->exp && q->r.type != NBD_CMD_READ &&
      q->r.type != NBD_CMD_BLOCK_STATUS &&
      !__atomic_exchange_n(&c->exp->stale, true, __ATOMIC_RELAXED)) {
    /* libblk handed the image's lock to another client */
    log_warn(SUB, "export %s: image lock handed over, writes now fail; new connections "
             "will reopen it", c->exp->name);
  }
  if (c->bev) {
    switch (q->r.type) {
    case NBD_CMD_READ:
      reply_read(c, q);
      break;
    case NBD_CMD_BLOCK_STATUS:
      reply_block_status(c, q);
      break;
    default:
      reply_status(c, &q->r, q->result < 0 ? (int)q->result : 0);
      break;
    }
  } else if (q->r.type == NBD_CMD_WRITE && q->result < 0) {
    log_warn(SUB, "conn %llu: write off %llu len %u failed after the client left: %s",
             (unsigned long long)c->id, (unsigned long long)q->r.offset, q->r.len,
             strerror((int)-q->result));
  }
  req_free(q);
  conn_after_reply(c);
  nbd_conn_put(c);
}

void nbd_conn_completions(struct nbd_server *srv)
{
  struct cds_wfcq_node *n;
  while ((n = __cds_wfcq_dequeue_blocking(&srv->cq_head, &srv->cq_tail)) != NULL) {
    struct nbd_msg *m = caa_container_of(n, struct nbd_msg, node);
    if (__atomic_load_n(&m->kind, __ATOMIC_ACQUIRE) == NBD_MSG_CONN_FREE)
      nbd_conn_free_remote(caa_container_of(m, struct nbd_conn, free_msg));
    else
      complete_one(caa_container_of(m, struct nbd_req, msg));
  }
}

/* Start a checked request; replies at once when there is nothing to do. */
static void conn_submit(struct nbd_conn *c, struct nbd_req *q)
{
  blk_image *img = c->exp->img;
  const struct nbd_request *r = &q->r;
  int rc;
  q->conn = c;
  q->pending = 1;
  c->refs++;
  c->inflight++;
  switch (r->type) {
  case NBD_CMD_READ:
    q->want_holes = c->srv->cfg->read_holes == NBD_HOLES_MAP && c->sess.structured &&
                    !(r->flags & NBD_CMD_FLAG_DF) && r->len >= HOLE_MIN;
    if (q->want_holes) {
      q->pending = 2;
      rc = blk_image_aio_block_status(img, r->offset, r->len, bs_cb, q);
      if (rc < 0) {
        q->want_holes = false;
        q->pending = 1;
      }
    }
    rc = blk_image_aio_read(img, r->offset, r->len, q->buf, io_cb, q);
    break;
  case NBD_CMD_WRITE:
    rc = blk_image_aio_write(img, r->offset, r->len, q->buf,
                             (r->flags & NBD_CMD_FLAG_FUA) ? BLK_WRITE_FUA : 0, io_cb, q);
    break;
  case NBD_CMD_FLUSH:
    rc = blk_image_aio_flush(img, io_cb, q);
    break;
  case NBD_CMD_TRIM:
    rc = blk_image_aio_discard(img, r->offset, r->len, io_cb, q);
    break;
  case NBD_CMD_WRITE_ZEROES:
    rc = blk_image_aio_write_zeroes(img, r->offset, r->len,
                                    (r->flags & NBD_CMD_FLAG_NO_HOLE) ? BLK_ZERO_NO_HOLE : 0,
                                    io_cb, q);
    break;
  case NBD_CMD_BLOCK_STATUS:
    rc = blk_image_aio_block_status(img, r->offset, r->len, bs_cb, q);
    break;
  default:
    rc = -EINVAL;
    break;
  }
  if (rc < 0) {
    /* not started: no callback will come for this sub-operation */
    q->result = rc;
    req_done(q);
  }
}

/* A request that needs no libblk call: answer now, in order with the rest
 * (replies may be out of order anyway; the cookie matches them). */
static void conn_reply_now(struct nbd_conn *c, const struct nbd_request *r, int neg_errno)
{
  reply_status(c, r, neg_errno);
}

static void transmission_parse(struct nbd_conn *c)
{
  while (conn_may_read(c)) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (c->skip) {
      size_t k = avail < c->skip ? avail : (size_t)c->skip;
      evbuffer_drain(in, k);
      c->skip -= k;
      if (c->skip)
        return;
      continue;
    }
    uint8_t h[NBD_REQUEST_LEN];
    struct nbd_request r;
    if (avail < sizeof h)
      break;
    evbuffer_copyout(in, h, sizeof h);
    if (nbd_request_decode(h, &r) < 0) {
      log_info(SUB, "conn %llu %s: bad request magic, closing", (unsigned long long)c->id,
               c->peer);
      nbd_conn_close(c);
      return;
    }
    uint64_t payload;
    /* the image's current size: libblk's header watch follows a resize
     * made through another handle (docs/images.md), so a client that knows
     * the new size (or ignores the old one) may use it */
    c->sess.size = blk_image_size(c->exp->img);
    int chk = nbd_request_check(&r, &c->sess, &payload);
    if (chk == 0 && r.type == NBD_CMD_WRITE && avail < sizeof h + payload) {
      /* wait for the whole payload (at most NBD_MAX_PAYLOAD) */
      break;
    }
    evbuffer_drain(in, sizeof h);
    if (chk < 0) {
      log_debug(SUB, "conn %llu: refused cmd %u flags 0x%x off %llu len %u: %d",
                (unsigned long long)c->id, r.type, r.flags, (unsigned long long)r.offset,
                r.len, chk);
      conn_reply_now(c, &r, chk);
      c->skip = payload;
      continue;
    }
    if (r.type == NBD_CMD_DISC) {
      log_debug(SUB, "conn %llu: NBD_CMD_DISC", (unsigned long long)c->id);
      c->disc = true;
      bufferevent_disable(c->bev, EV_READ);
      if (c->inflight == 0)
        nbd_conn_close_after_flush(c);
      return;
    }
    if (r.type == NBD_CMD_CACHE ||
        (r.len == 0 && r.type != NBD_CMD_FLUSH && r.type != NBD_CMD_BLOCK_STATUS)) {
      /* CACHE: libblk keeps no cache to fill, the range is valid: done.
       * Zero-length I/O: nothing to do. */
      conn_reply_now(c, &r, 0);
      continue;
    }
    if (r.type == NBD_CMD_WRITE_ZEROES && (r.flags & NBD_CMD_FLAG_FAST_ZERO) &&
        (r.flags & NBD_CMD_FLAG_NO_HOLE)) {
      /* zeroes that must stay allocated are written as data: not fast */
      conn_reply_now(c, &r, -ENOTSUP);
      continue;
    }
    bool io = r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE;
    struct nbd_req *q = req_alloc(c, r.len, io);
    if (!q) {
      nbd_conn_close(c);
      return;
    }
    q->r = r;
    q->conn = c;
    if (r.type == NBD_CMD_WRITE)
      evbuffer_remove(in, q->buf, r.len);
    conn_submit(c, q);
  }
  if (c->bev && !c->closing && !c->disc && !conn_may_read(c))
    bufferevent_disable(c->bev, EV_READ);
}

void nbd_conn_transmission_input(struct nbd_conn *c)
{
  /* a reply sent from inside the parse (a request libblk refused at once,
   * answered in place on libblk's thread) asks to read on: the parse loop
   * already does */
  if (c->parsing)
    return;
  c->parsing = true;
  c->refs++; /* a close inside the parse must not free c under it */
  transmission_parse(c);
  c->parsing = false;
  nbd_conn_put(c);
}
