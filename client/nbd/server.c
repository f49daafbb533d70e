/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: listeners (TCP and a unix socket), accepted connections and
 * the handshake/option phase of the fixed newstyle protocol.  Each
 * connection is a bufferevent (a TLS filter over the socket bufferevent
 * after NBD_OPT_STARTTLS); its read callback parses as many complete
 * messages as the input holds.  Options are read whole (at most
 * NBD_MAX_OPT_LEN bytes; larger ones get ERR_TOO_BIG and their data is
 * skipped without buffering).  NBD_OPT_GO / EXPORT_NAME take a reference on
 * a shared export and switch the connection to conn.c's transmission code;
 * when the export must be opened first (which may wait for the image's
 * exclusive lock) the open runs on a helper thread (export.c), the
 * connection stops parsing its input and the reply is sent by
 * nbd_conn_open_done, while the loop keeps serving everyone else.
 * Once transmission starts, a plain TCP or unix connection is handed to
 * libblk's library thread (conn_handover): the socket is duplicated, the
 * bytes still buffered both ways are moved to evbuffers of their own, the
 * bufferevent here is freed, and blk_cluster_call runs conn_adopt there,
 * which builds a bufferevent on libblk's event base from them; from then
 * on conn.c runs there for it.  A TLS connection stays on this loop (its
 * filter bufferevent and OpenSSL state would have to move too).
 * A protocol violation that leaves the stream out of sync (bad magic,
 * unknown client flags) closes the connection; everything else gets the
 * specified error reply.  Option state (structured replies, meta context)
 * is forgotten after STARTTLS, as the specification requires.
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "client/nbd/nbd.h"
#include "common/log.h"

#define SUB "nbd"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- connection lifetime ---- */

static void conn_free(struct nbd_conn *c)
{
  if (c->exp)
    nbd_export_put(c->exp);
  free(c->go_name);
  free(c->meta_export);
  free(c);
}

void nbd_conn_put(struct nbd_conn *c)
{
  if (--c->refs > 0)
    return;
  if (!c->remote) {
    conn_free(c);
    return;
  }
  /* libblk's thread: the export reference belongs to blk-nbd's loop; c is
   * not touched here after the enqueue */
  struct nbd_server *srv = c->srv;
  __atomic_store_n(&c->free_msg.kind, NBD_MSG_CONN_FREE, __ATOMIC_RELEASE); /* see req_done */
  if (cds_wfcq_enqueue(&srv->cq_head, &srv->cq_tail, &c->free_msg.node))
    return;
  uint64_t one = 1;
  ssize_t w = write(srv->cq_fd, &one, sizeof one);
  (void)w; /* EAGAIN: the counter is saturated, the loop wakes anyway */
}

void nbd_conn_free_remote(struct nbd_conn *c)
{
  struct nbd_server *srv = c->srv;
  log_debug(SUB, "conn %llu %s: freed", (unsigned long long)c->id, c->peer);
  conn_free(c);
  srv->nconns--;
  if (srv->stopping && srv->nconns == 0)
    event_base_loopbreak(srv->base);
}

void nbd_conn_close(struct nbd_conn *c)
{
  struct nbd_server *srv = c->srv;
  if (!c->listed)
    return;
  log_debug(SUB, "conn %llu %s: closed (%u requests in flight)", (unsigned long long)c->id,
            c->peer, c->inflight);
  if (c->bev)
    bufferevent_free(c->bev);
  c->bev = NULL;
  if (c->flush_timer) {
    event_free(c->flush_timer);
    c->flush_timer = NULL;
  }
  c->listed = false;
  if (c->prev)
    c->prev->next = c->next;
  else if (c->remote)
    srv->rconns = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  if (c->remote) {
    /* counted in srv->nconns until blk-nbd's loop frees it */
    nbd_conn_put(c);
    return;
  }
  srv->nconns--;
  nbd_conn_put(c);
  if (srv->stopping && srv->nconns == 0)
    event_base_loopbreak(srv->base);
}

/* Bytes not yet handed to the kernel: with TLS the filter's output may be
 * empty while the socket bufferevent below still holds ciphertext. */
static size_t conn_output_pending(struct nbd_conn *c)
{
  size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
  struct bufferevent *under = bufferevent_get_underlying(c->bev);
  if (under)
    n += evbuffer_get_length(bufferevent_get_output(under));
  return n;
}

static void conn_flush_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Close when everything is written; polls briefly for TLS's lower buffer
 * (the filter owns its callbacks), giving up after ~5 s. */
static void conn_try_close(struct nbd_conn *c)
{
  if (!c->bev)
    return;
  if (conn_output_pending(c) == 0 || ++c->flush_polls > 500) {
    nbd_conn_close(c);
    return;
  }
  if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
    return; /* the write callback comes back here */
  if (!c->flush_timer)
    c->flush_timer = evtimer_new(c->base, conn_flush_timer_cb, c);
  struct timeval tv = { 0, 10 * 1000 };
  if (c->flush_timer)
    evtimer_add(c->flush_timer, &tv);
  else
    nbd_conn_close(c);
}

static void conn_flush_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  conn_try_close(arg);
}

void nbd_conn_close_after_flush(struct nbd_conn *c)
{
  if (!c->bev)
    return;
  c->closing = true;
  bufferevent_disable(c->bev, EV_READ);
  conn_try_close(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
  struct nbd_conn *c = arg;
  (void)bev;
  if (c->closing) {
    conn_try_close(c);
    return;
  }
  nbd_conn_output_drained(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
  struct nbd_conn *c = arg;
  if (what & BEV_EVENT_CONNECTED)
    return;
  if (what & BEV_EVENT_ERROR) {
    unsigned long e = bufferevent_get_openssl_error(bev);
    log_info(SUB, "conn %llu %s: %s%s", (unsigned long long)c->id, c->peer,
             e ? "TLS error" : "socket error",
             c->phase == NBD_PH_TRANSMISSION ? "" : " during handshake");
  } else if ((what & BEV_EVENT_EOF) && c->phase == NBD_PH_TRANSMISSION && !c->disc) {
    log_info(SUB, "conn %llu %s: client went away without NBD_CMD_DISC",
             (unsigned long long)c->id, c->peer);
  }
  nbd_conn_close(c);
}

static void conn_set_callbacks(struct nbd_conn *c)
{
  bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Transmission of a connection: stop reading (NBD_CMD_DISC semantics),
 * close once the requests in flight are answered. */
static void conn_stop(struct nbd_conn *c)
{
  c->disc = true;
  bufferevent_disable(c->bev, EV_READ);
  if (c->inflight == 0)
    nbd_conn_close_after_flush(c);
}

/* ---- handing a connection over to libblk's thread ---- */

/* The loop that will serve c (base): c's bufferevent there, from c->fd
 * and the bytes buffered before the handover (c->pend_in / pend_out,
 * freed here).  0, or -ENOMEM with the socket closed. */
static int conn_attach(struct nbd_conn *c, struct event_base *base)
{
  c->base = base;
  c->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_CLOSE_ON_FREE);
  if (!c->bev)
    close(c->fd);
  c->fd = -1;
  if (c->bev) {
    bufferevent_set_max_single_read(c->bev, 1 << 20);
    bufferevent_set_max_single_write(c->bev, 1 << 20);
    /* a socket bufferevent freezes the end of its input (only it reads
     * in): thaw it for the bytes that arrived before the handover */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_unfreeze(in, 0);
    int r = evbuffer_add_buffer(in, c->pend_in);
    evbuffer_freeze(in, 0);
    if (r == 0)
      r = evbuffer_add_buffer(bufferevent_get_output(c->bev), c->pend_out);
    if (r < 0) {
      bufferevent_free(c->bev);
      c->bev = NULL;
    } else {
      conn_set_callbacks(c);
    }
  }
  evbuffer_free(c->pend_in);
  evbuffer_free(c->pend_out);
  c->pend_in = c->pend_out = NULL;
  return c->bev ? 0 : -ENOMEM;
}

static void conn_link(struct nbd_conn **head, struct nbd_conn *c)
{
  c->prev = NULL;
  c->next = *head;
  if (*head)
    (*head)->prev = c;
  *head = c;
  c->listed = true;
}

/* libblk's thread (blk_cluster_call): take over a connection handed over
 * by conn_handover and parse what it already sent. */
static void conn_adopt(void *arg)
{
  struct nbd_conn *c = arg;
  struct nbd_server *srv = c->srv;
  if (conn_attach(c, srv->lbase) < 0) {
    log_err(SUB, "conn %llu %s: out of memory taking over the socket, closing",
            (unsigned long long)c->id, c->peer);
    nbd_conn_put(c); /* the socket's reference: freed on blk-nbd's loop */
    return;
  }
  conn_link(&srv->rconns, c);
  log_debug(SUB, "conn %llu %s: served on libblk's thread", (unsigned long long)c->id, c->peer);
  if (srv->rstopping) {
    conn_stop(c); /* the server stopped meanwhile: send the reply, close */
    return;
  }
  nbd_conn_transmission_input(c);
}

/* blk-nbd's loop: move c (transmission just started, plain socket) to
 * libblk's thread; c must not be touched here afterwards. */
static void conn_handover(struct nbd_conn *c)
{
  struct nbd_server *srv = c->srv;
  int fd = bufferevent_getfd(c->bev);
  c->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  c->pend_in = evbuffer_new();
  c->pend_out = evbuffer_new();
  if (c->fd < 0 || !c->pend_in || !c->pend_out) {
    log_warn(SUB, "conn %llu %s: cannot hand the socket over (%s), serving it here",
             (unsigned long long)c->id, c->peer, strerror(c->fd < 0 ? errno : ENOMEM));
    if (c->fd >= 0)
      close(c->fd);
    c->fd = -1;
    if (c->pend_in)
      evbuffer_free(c->pend_in);
    if (c->pend_out)
      evbuffer_free(c->pend_out);
    c->pend_in = c->pend_out = NULL;
    nbd_conn_transmission_input(c);
    return;
  }
  /* no more reads into this bufferevent: its socket events leave this
   * loop's epoll set before the duplicate is watched there */
  bufferevent_disable(c->bev, EV_READ | EV_WRITE);
  /* ... and the start of its output (only it writes out): thaw it to move
   * the replies not yet written (the one to NBD_OPT_GO at least) */
  struct evbuffer *out = bufferevent_get_output(c->bev);
  evbuffer_unfreeze(out, 1);
  if (evbuffer_add_buffer(c->pend_in, bufferevent_get_input(c->bev)) < 0 ||
      evbuffer_add_buffer(c->pend_out, out) < 0) {
    /* cannot happen with both ends thawed; never lose bytes silently */
    log_err(SUB, "conn %llu %s: cannot move the buffered bytes, closing",
            (unsigned long long)c->id, c->peer);
    close(c->fd);
    c->fd = -1;
    evbuffer_free(c->pend_in);
    evbuffer_free(c->pend_out);
    c->pend_in = c->pend_out = NULL;
    nbd_conn_close(c);
    return;
  }
  bufferevent_free(c->bev); /* closes fd; the duplicate keeps the socket */
  c->bev = NULL;
  /* off srv->conns (libblk's thread links it into srv->rconns), still
   * counted in srv->nconns */
  c->listed = false;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->remote = true;
  if (blk_cluster_call(srv->cluster, conn_adopt, c) == 0)
    return;
  /* libblk is shutting down: serve it here after all */
  log_warn(SUB, "conn %llu %s: cannot hand the socket over (%s), serving it here",
           (unsigned long long)c->id, c->peer, blk_last_error());
  c->remote = false;
  if (conn_attach(c, srv->base) < 0) {
    srv->nconns--;
    nbd_conn_put(c);
    return;
  }
  conn_link(&srv->conns, c);
  nbd_conn_transmission_input(c);
}

void nbd_conn_begin(struct nbd_conn *c)
{
  if (c->tls || !c->srv->lbase || c->srv->cfg->own_io_thread)
    nbd_conn_transmission_input(c);
  else
    conn_handover(c);
}

/* ---- option replies ---- */

static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
                      uint32_t len)
{
  uint8_t h[NBD_OPT_REPLY_HDR_LEN];
  struct evbuffer *out = bufferevent_get_output(c->bev);
  nbd_opt_reply_encode(h, opt, type, len);
  evbuffer_add(out, h, sizeof h);
  if (len)
    evbuffer_add(out, data, len);
}

/* An error reply with a human-readable message (the spec allows text). */
static void opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
  log_debug(SUB, "conn %llu: option %u refused: %s", (unsigned long long)c->id, opt, msg);
  opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static void opt_reply_info_export(struct nbd_conn *c, uint32_t opt, uint64_t size,
                                  uint16_t tflags)
{
  uint8_t d[12];
  nbd_put16(d, NBD_INFO_EXPORT);
  nbd_put64(d + 2, size);
  nbd_put16(d + 10, tflags);
  opt_reply(c, opt, NBD_REP_INFO, d, sizeof d);
}

static void opt_reply_info_block_size(struct nbd_conn *c, uint32_t opt)
{
  uint8_t d[14];
  nbd_put16(d, NBD_INFO_BLOCK_SIZE);
  nbd_put32(d + 2, 1);
  nbd_put32(d + 6, 4096);
  nbd_put32(d + 10, NBD_MAX_PAYLOAD);
  opt_reply(c, opt, NBD_REP_INFO, d, sizeof d);
}

static void opt_reply_info_string(struct nbd_conn *c, uint32_t opt, uint16_t type,
                                  const char *s)
{
  size_t n = strlen(s);
  uint8_t *d = malloc(2 + n);
  if (!d)
    return;
  nbd_put16(d, type);
  memcpy(d + 2, s, n);
  opt_reply(c, opt, NBD_REP_INFO, d, (uint32_t)(2 + n));
  free(d);
}

/* ---- entering transmission ---- */

static void conn_start_transmission(struct nbd_conn *c, struct nbd_export *e)
{
  c->exp = e;
  c->phase = NBD_PH_TRANSMISSION;
  c->sess.size = blk_image_size(e->img);
  c->sess.tflags = nbd_export_tflags(e);
  c->sess.structured = c->structured;
  c->sess.meta_alloc = c->meta_alloc && c->meta_export && !strcmp(c->meta_export, e->name);
  log_info(SUB, "conn %llu %s: export %s (%llu bytes%s%s%s%s)", (unsigned long long)c->id,
           c->peer, e->name, (unsigned long long)c->sess.size, e->read_only ? ", read-only" : "",
           c->structured ? ", structured" : "", c->sess.meta_alloc ? ", base:allocation" : "",
           c->tls ? ", TLS" : "");
}

/* The export a name selects: "" = the single configured export, if any. */
static const char *default_name(struct nbd_conn *c, const char *name)
{
  const struct nbd_config *cfg = c->srv->cfg;
  if (name[0] == '\0' && cfg->nimages == 1)
    return cfg->images[0];
  return name;
}

/* The INFO/GO replies for an export of size and read-only-ness ro. */
static void opt_reply_info_go(struct nbd_conn *c, uint32_t opt, const char *real, uint64_t size,
                              bool ro, bool want_name, bool want_desc)
{
  opt_reply_info_export(c, opt, size, nbd_tflags(ro));
  if (want_name)
    opt_reply_info_string(c, opt, NBD_INFO_NAME, real);
  if (want_desc) {
    char desc[NBD_MAX_STRING + 64];
    snprintf(desc, sizeof desc, "blkstore image %s%s", real, ro ? " (read-only)" : "");
    opt_reply_info_string(c, opt, NBD_INFO_DESCRIPTION, desc);
  }
  opt_reply_info_block_size(c, opt);
  opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* The reply to NBD_OPT_EXPORT_NAME (size, flags, maybe 124 zeroes). */
static void opt_reply_export_name(struct nbd_conn *c, struct nbd_export *e)
{
  uint8_t rep[10 + 124];
  memset(rep, 0, sizeof rep);
  nbd_put64(rep, blk_image_size(e->img));
  nbd_put16(rep + 8, nbd_export_tflags(e));
  evbuffer_add(bufferevent_get_output(c->bev), rep,
               (c->cflags & NBD_FLAG_C_NO_ZEROES) ? 10 : sizeof rep);
}

/* Remember what the option waiting for an asynchronous open must answer. */
static void conn_wait_open(struct nbd_conn *c, uint32_t opt, const char *real, bool want_name,
                           bool want_desc)
{
  c->opening = true;
  c->go_opt = opt;
  c->go_want_name = want_name;
  c->go_want_desc = want_desc;
  c->go_name = strdup(real); /* NULL (no memory) only loses NBD_INFO_NAME */
  log_debug(SUB, "conn %llu %s: waiting for export %s to open", (unsigned long long)c->id,
            c->peer, real);
}

/* NBD_OPT_INFO and NBD_OPT_GO. Returns 1 when transmission starts or the
 * connection waits for an asynchronous open. */
static int opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  struct nbd_info_req ir;
  char name[NBD_MAX_STRING + 1];
  char err[512];
  bool want_name = false, want_desc = false;
  if (nbd_info_req_parse(d, len, &ir) < 0) {
    opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO request");
    return 0;
  }
  memcpy(name, ir.name, ir.name_len);
  name[ir.name_len] = '\0';
  for (uint16_t i = 0; i < ir.nreqs; i++) {
    uint16_t t = nbd_info_req_get(&ir, i);
    want_name |= t == NBD_INFO_NAME;
    want_desc |= t == NBD_INFO_DESCRIPTION;
  }
  const char *real = default_name(c, name);
  struct nbd_export *e = NULL;
  uint64_t size;
  bool ro;
  int r = opt == NBD_OPT_INFO ? nbd_export_probe(c->srv, real, &size, &ro, err, sizeof err)
                              : nbd_export_get_async(c->srv, real, c, &e, err, sizeof err);
  if (r < 0) {
    opt_error(c, opt, r == -EACCES ? NBD_REP_ERR_POLICY : NBD_REP_ERR_UNKNOWN, err);
    return 0;
  }
  if (r == 1) {
    conn_wait_open(c, opt, real, want_name, want_desc);
    return 1;
  }
  if (e) {
    size = blk_image_size(e->img);
    ro = e->read_only;
  }
  opt_reply_info_go(c, opt, real, size, ro, want_name, want_desc);
  if (!e)
    return 0;
  conn_start_transmission(c, e);
  return 1;
}

/* NBD_OPT_EXPORT_NAME: no error reply is possible, failure closes. */
static int opt_export_name(struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
  char name[NBD_MAX_STRING + 1];
  char err[512];
  struct nbd_export *e;
  if (len > NBD_MAX_STRING || (len && memchr(d, 0, len))) {
    log_info(SUB, "conn %llu: bad NBD_OPT_EXPORT_NAME, closing", (unsigned long long)c->id);
    return -1;
  }
  memcpy(name, d, len);
  name[len] = '\0';
  const char *real = default_name(c, name);
  int r = nbd_export_get_async(c->srv, real, c, &e, err, sizeof err);
  if (r < 0) {
    log_info(SUB, "conn %llu %s: NBD_OPT_EXPORT_NAME '%s': %s, closing",
             (unsigned long long)c->id, c->peer, name, err);
    return -1;
  }
  if (r == 1) {
    conn_wait_open(c, NBD_OPT_EXPORT_NAME, real, false, false);
    return 1;
  }
  opt_reply_export_name(c, e);
  conn_start_transmission(c, e);
  return 1;
}

static void conn_options_input(struct nbd_conn *c);

void nbd_conn_open_done(struct nbd_conn *c, struct nbd_export *e, int r, const char *err)
{
  char *name = c->go_name;
  c->go_name = NULL;
  c->opening = false;
  if (!c->bev || c->closing) {
    /* the client left (or the server is stopping) while we waited */
    if (e)
      nbd_export_put(e);
    free(name);
    nbd_conn_put(c);
    return;
  }
  /* drop the waiter's reference first: the open socket's keeps c alive,
   * and once transmission starts c may belong to libblk's thread */
  nbd_conn_put(c);
  if (c->go_opt == NBD_OPT_EXPORT_NAME) {
    if (r < 0) {
      log_info(SUB, "conn %llu %s: NBD_OPT_EXPORT_NAME: %s, closing", (unsigned long long)c->id,
               c->peer, err);
      nbd_conn_close(c);
    } else {
      opt_reply_export_name(c, e);
      conn_start_transmission(c, e);
      nbd_conn_begin(c);
    }
  } else if (r < 0) {
    log_info(SUB, "conn %llu %s: NBD_OPT_GO refused: %s", (unsigned long long)c->id, c->peer,
             err);
    /* a lock held by another writer is a refusal, not a missing export
     * (libnbd words ERR_UNKNOWN as "no export named ...") */
    opt_error(c, c->go_opt, r == -EBUSY ? NBD_REP_ERR_POLICY : NBD_REP_ERR_UNKNOWN, err);
    conn_options_input(c); /* options the client sent meanwhile */
  } else {
    opt_reply_info_go(c, c->go_opt, name ? name : e->name, blk_image_size(e->img), e->read_only,
                      c->go_want_name && name, c->go_want_desc);
    conn_start_transmission(c, e);
    nbd_conn_begin(c);
  }
  free(name);
}

static void opt_list(struct nbd_conn *c, uint32_t len)
{
  char **names = NULL;
  size_t n = 0;
  if (len != 0) {
    opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    return;
  }
  int r = nbd_export_list(c->srv, &names, &n);
  if (r < 0) {
    opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_PLATFORM, "cannot list images");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(names[i]);
    uint8_t *d = malloc(4 + l);
    if (!d)
      break;
    nbd_put32(d, (uint32_t)l);
    memcpy(d + 4, names[i], l);
    opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, d, (uint32_t)(4 + l));
    free(d);
  }
  nbd_names_free(names, n);
  opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static void opt_meta_context(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  struct nbd_meta_req mr;
  bool list = opt == NBD_OPT_LIST_META_CONTEXT;
  if (!c->structured) {
    opt_error(c, opt, NBD_REP_ERR_INVALID,
              "negotiate NBD_OPT_STRUCTURED_REPLY before meta contexts");
    return;
  }
  if (nbd_meta_req_parse(d, len, &mr) < 0) {
    opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
    return;
  }
  char name[NBD_MAX_STRING + 1];
  memcpy(name, mr.name, mr.name_len);
  name[mr.name_len] = '\0';
  const char *real = default_name(c, name);
  char pool[256], image[256], snap[256];
  if (nbd_export_name_split(real, strlen(real), pool, image, snap) < 0 ||
      !nbd_export_allowed(c->srv, real)) {
    opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");
    return;
  }
  bool sel = false;
  if (list && mr.nqueries == 0) {
    sel = true;
  } else {
    uint32_t pos = 0;
    const uint8_t *q;
    uint32_t ql;
    while (nbd_meta_req_next(&mr, &pos, &q, &ql))
      sel |= nbd_meta_query_selects_alloc(q, ql, list);
  }
  if (sel) {
    static const char ctx[] = NBD_META_BASE_ALLOCATION;
    uint8_t rd[4 + sizeof ctx - 1];
    nbd_put32(rd, list ? 0 : NBD_META_ID_BASE_ALLOCATION);
    memcpy(rd + 4, ctx, sizeof ctx - 1);
    opt_reply(c, opt, NBD_REP_META_CONTEXT, rd, sizeof rd);
  }
  if (!list) {
    c->meta_alloc = sel;
    free(c->meta_export);
    c->meta_export = strdup(real);
  }
  opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* Returns 0 to go on reading options, 1 when transmission starts (or TLS
 * restarted the input), -1 to close after flushing. */
static int handle_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  const struct nbd_config *cfg = c->srv->cfg;
  bool tls_needed = cfg->tls == NBD_TLS_REQUIRE && !c->tls;
  log_debug(SUB, "conn %llu: option %u len %u", (unsigned long long)c->id, opt, len);
  if (tls_needed && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
    if (opt == NBD_OPT_EXPORT_NAME)
      return -1;
    opt_error(c, opt, NBD_REP_ERR_TLS_REQD, "TLS is required: use NBD_OPT_STARTTLS");
    return 0;
  }
  switch (opt) {
  case NBD_OPT_EXPORT_NAME:
    return opt_export_name(c, d, len);
  case NBD_OPT_ABORT:
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    return -1;
  case NBD_OPT_LIST:
    opt_list(c, len);
    return 0;
  case NBD_OPT_STARTTLS:
    if (len != 0) {
      opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
      return 0;
    }
    if (!c->srv->tls_ctx) {
      opt_error(c, opt, NBD_REP_ERR_UNSUP, "TLS is not configured on this server");
      return 0;
    }
    if (c->tls) {
      opt_error(c, opt, NBD_REP_ERR_INVALID, "TLS is already active");
      return 0;
    }
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    {
      struct bufferevent *tb = nbd_tls_wrap(c->srv->tls_ctx, c->srv->base, c->bev);
      c->bev = tb;
      if (!tb) {
        /* the socket bufferevent was freed by the failed wrap */
        log_err(SUB, "conn %llu: cannot start TLS", (unsigned long long)c->id);
        return -2;
      }
    }
    c->tls = true;
    c->structured = false;
    c->meta_alloc = false;
    free(c->meta_export);
    c->meta_export = NULL;
    conn_set_callbacks(c);
    return 1;
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    return opt_info_go(c, opt, d, len);
  case NBD_OPT_STRUCTURED_REPLY:
    if (len != 0) {
      opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
      return 0;
    }
    c->structured = true;
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    return 0;
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    opt_meta_context(c, opt, d, len);
    return 0;
  default:
    opt_error(c, opt, NBD_REP_ERR_UNSUP, "unknown option");
    return 0;
  }
}

/* Parse options from the input while complete ones are there. */
static void conn_options_input(struct nbd_conn *c)
{
  struct evbuffer *in = bufferevent_get_input(c->bev);
  for (;;) {
    if (c->skip) {
      size_t n = evbuffer_get_length(in);
      size_t k = n < c->skip ? n : (size_t)c->skip;
      evbuffer_drain(in, k);
      c->skip -= k;
      if (c->skip)
        return;
    }
    if (c->phase == NBD_PH_FLAGS) {
      uint8_t f[4];
      if (evbuffer_get_length(in) < 4)
        return; /* wait for the whole word */
      evbuffer_remove(in, f, 4);
      c->cflags = nbd_get32(f);
      if (nbd_client_flags_check(c->cflags) < 0) {
        log_info(SUB, "conn %llu %s: unknown client flags 0x%x, closing",
                 (unsigned long long)c->id, c->peer, c->cflags);
        nbd_conn_close(c);
        return;
      }
      c->phase = NBD_PH_OPTIONS;
      continue;
    }
    if (c->phase != NBD_PH_OPTIONS)
      return;
    uint8_t h[NBD_OPT_HDR_LEN];
    struct nbd_opt_hdr oh;
    if (evbuffer_copyout(in, h, sizeof h) != (ssize_t)sizeof h)
      return;
    if (nbd_opt_hdr_decode(h, &oh) < 0) {
      log_info(SUB, "conn %llu %s: bad option magic, closing", (unsigned long long)c->id,
               c->peer);
      nbd_conn_close(c);
      return;
    }
    if (oh.len > NBD_MAX_OPT_LEN) {
      evbuffer_drain(in, sizeof h);
      if (oh.opt == NBD_OPT_EXPORT_NAME) {
        nbd_conn_close(c);
        return;
      }
      opt_error(c, oh.opt, NBD_REP_ERR_TOO_BIG, "option data too large");
      c->skip = oh.len;
      continue;
    }
    if (evbuffer_get_length(in) < sizeof h + oh.len)
      return;
    evbuffer_drain(in, sizeof h);
    uint8_t *d = NULL;
    if (oh.len) {
      d = malloc(oh.len);
      if (!d) {
        nbd_conn_close(c);
        return;
      }
      evbuffer_remove(in, d, oh.len);
    }
    int r = handle_option(c, oh.opt, d, oh.len);
    free(d);
    if (r == -2) {
      nbd_conn_close(c);
      return;
    }
    if (r < 0) {
      nbd_conn_close_after_flush(c);
      return;
    }
    if (r > 0) {
      /* transmission started, or TLS now owns the input */
      if (c->phase == NBD_PH_TRANSMISSION)
        nbd_conn_begin(c);
      return;
    }
  }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
  struct nbd_conn *c = arg;
  (void)bev;
  if (c->closing || c->opening)
    return; /* an open in progress: the input waits for its answer */
  if (c->phase == NBD_PH_TRANSMISSION)
    nbd_conn_transmission_input(c);
  else
    conn_options_input(c);
}

/* ---- listeners ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
  struct nbd_server *srv = arg;
  (void)l;
  (void)salen;
  if (srv->stopping) {
    close(fd);
    return;
  }
  struct nbd_conn *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->srv = srv;
  c->base = srv->base;
  c->fd = -1;
  c->id = ++srv->next_conn_id;
  c->refs = 1;
  c->phase = NBD_PH_FLAGS;
  if (sa->sa_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(in->sin_port));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  } else if (sa->sa_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, ntohs(in6->sin6_port));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  } else {
    snprintf(c->peer, sizeof c->peer, "unix");
  }
  c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!c->bev) {
    close(fd);
    free(c);
    return;
  }
  /* whole 1 MiB requests per read/write call instead of 16 KiB slices */
  bufferevent_set_max_single_read(c->bev, 1 << 20);
  bufferevent_set_max_single_write(c->bev, 1 << 20);
  conn_link(&srv->conns, c);
  srv->nconns++;
  conn_set_callbacks(c);
  uint8_t g[NBD_HANDSHAKE_LEN];
  nbd_greeting_encode(g);
  evbuffer_add(bufferevent_get_output(c->bev), g, sizeof g);
  log_debug(SUB, "conn %llu %s: accepted", (unsigned long long)c->id, c->peer);
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
  (void)l;
  (void)arg;
  log_warn(SUB, "accept failed: %s", strerror(errno));
}

static int listen_tcp(struct nbd_server *srv, const char *hostport, char *err, size_t errlen)
{
  char host[256];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host || !colon[1]) {
    snprintf(err, errlen, "bad --listen '%s' (HOST:PORT)", hostport);
    return -EINVAL;
  }
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  char *bracket = host[0] == '[' ? strchr(host, ']') : NULL;
  const char *h = host;
  if (bracket) {
    *bracket = '\0';
    h = host + 1;
  }
  struct evutil_addrinfo hints = { 0 }, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST;
  int gr = evutil_getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &ai);
  if (gr != 0 || !ai) {
    snprintf(err, errlen, "bad --listen '%s': %s", hostport, evutil_gai_strerror(gr));
    return -EINVAL;
  }
  struct evconnlistener *l = evconnlistener_new_bind(
      srv->base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
      128, ai->ai_addr, (int)ai->ai_addrlen);
  evutil_freeaddrinfo(ai);
  if (!l) {
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(e));
    return -(e ? e : EADDRINUSE);
  }
  evconnlistener_set_error_cb(l, listener_error_cb);
  srv->listeners[srv->nlisteners++] = l;
  log_info(SUB, "listening on %s", hostport);
  return 0;
}

static int listen_unix(struct nbd_server *srv, const char *path, int mode, char *err,
                       size_t errlen)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sun.sun_path) {
    snprintf(err, errlen, "socket path too long: %s", path);
    return -ENAMETOOLONG;
  }
  strcpy(sun.sun_path, path);
  /* a stale socket from a dead server: remove it, but never a live one */
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    if (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0) {
      close(probe);
      snprintf(err, errlen, "%s: a server is already listening there", path);
      return -EADDRINUSE;
    }
    close(probe);
  }
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path);
  struct evconnlistener *l = evconnlistener_new_bind(
      srv->base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
      (struct sockaddr *)&sun, sizeof sun);
  if (!l) {
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
    return -(e ? e : EIO);
  }
  if (mode >= 0 && chmod(path, (mode_t)mode) < 0) {
    int e = errno;
    evconnlistener_free(l);
    snprintf(err, errlen, "chmod %o %s: %s", mode, path, strerror(e));
    return -e;
  }
  evconnlistener_set_error_cb(l, listener_error_cb);
  srv->listeners[srv->nlisteners++] = l;
  log_info(SUB, "listening on unix socket %s", path);
  return 0;
}

static void cq_cb(evutil_socket_t fd, short what, void *arg)
{
  struct nbd_server *srv = arg;
  uint64_t v;
  (void)what;
  if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
    log_warn(SUB, "eventfd read: %s", strerror(errno));
  nbd_conn_completions(srv);
}

int nbd_server_init(struct nbd_server *srv, struct event_base *base,
                    const struct nbd_config *cfg, blk_cluster *cluster, char *err,
                    size_t errlen)
{
  int r;
  memset(srv, 0, sizeof *srv);
  srv->base = base;
  srv->cfg = cfg;
  srv->cluster = cluster;
  srv->cq_fd = -1;
  cds_wfcq_init(&srv->cq_head, &srv->cq_tail);
  srv->cq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (srv->cq_fd < 0) {
    r = -errno;
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    return r;
  }
  srv->cq_ev = event_new(base, srv->cq_fd, EV_READ | EV_PERSIST, cq_cb, srv);
  if (!srv->cq_ev || event_add(srv->cq_ev, NULL) < 0) {
    snprintf(err, errlen, "cannot add the completion event");
    return -ENOMEM;
  }
  /* transmission of plain connections runs on libblk's loop */
  srv->lbase = blk_cluster_event_base(cluster);
  if (!srv->lbase) {
    snprintf(err, errlen, "libblk: %s", blk_last_error());
    return -ENOTCONN;
  }
  if (cfg->tls != NBD_TLS_OFF) {
    srv->tls_ctx = nbd_tls_new(cfg, err, errlen);
    if (!srv->tls_ctx)
      return -EINVAL;
  }
  for (size_t i = 0; i < cfg->nlisten; i++) {
    r = listen_tcp(srv, cfg->listen[i], err, errlen);
    if (r < 0)
      return r;
  }
  if (cfg->socket_path) {
    r = listen_unix(srv, cfg->socket_path, cfg->socket_mode, err, errlen);
    if (r < 0)
      return r;
  }
  if (srv->nlisteners == 0) {
    snprintf(err, errlen, "nothing to listen on (--listen or --socket)");
    return -EINVAL;
  }
  return 0;
}

/* libblk's thread: stop every remote connection as nbd_server_stop does
 * the local ones, and adopt no more. */
static void remote_stop(void *arg)
{
  struct nbd_server *srv = arg;
  srv->rstopping = true;
  struct nbd_conn *c = srv->rconns, *next;
  for (; c; c = next) {
    next = c->next;
    conn_stop(c);
  }
}

struct remote_close {
  struct nbd_server *srv;
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
};

/* libblk's thread: close every remote connection now (teardown). */
static void remote_close_all(void *arg)
{
  struct remote_close *rc = arg;
  rc->srv->rstopping = true;
  while (rc->srv->rconns)
    nbd_conn_close(rc->srv->rconns);
  pthread_mutex_lock(&rc->m);
  rc->done = true;
  pthread_cond_signal(&rc->cv);
  pthread_mutex_unlock(&rc->m);
}

void nbd_server_stop(struct nbd_server *srv)
{
  if (srv->stopping)
    return;
  srv->stopping = true;
  for (size_t i = 0; i < srv->nlisteners; i++)
    evconnlistener_disable(srv->listeners[i]);
  /* connections still negotiating are simply closed; those transmitting
   * finish what is in flight (their replies are sent) and then close */
  struct nbd_conn *c = srv->conns, *next;
  for (; c; c = next) {
    next = c->next;
    if (c->phase != NBD_PH_TRANSMISSION)
      nbd_conn_close(c);
    else
      conn_stop(c);
  }
  /* the connections served on libblk's thread stop there; each one freed
   * comes back here (nbd_conn_free_remote) */
  if (blk_cluster_call(srv->cluster, remote_stop, srv) < 0)
    log_warn(SUB, "cannot stop the connections on libblk's thread: %s", blk_last_error());
  if (srv->nconns == 0)
    event_base_loopbreak(srv->base);
}

void nbd_server_free(struct nbd_server *srv)
{
  /* force-close what is left (the loop is over; completions that still
   * arrive would find no loop: wait for them by closing the images) */
  while (srv->conns)
    nbd_conn_close(srv->conns);
  if (srv->lbase) {
    /* and those on libblk's thread, there (this thread is not that loop:
     * waiting for it is safe); calls queued before (adoptions) run first */
    struct remote_close rc = { .srv = srv, .done = false };
    pthread_mutex_init(&rc.m, NULL);
    pthread_cond_init(&rc.cv, NULL);
    if (blk_cluster_call(srv->cluster, remote_close_all, &rc) == 0) {
      pthread_mutex_lock(&rc.m);
      while (!rc.done)
        pthread_cond_wait(&rc.cv, &rc.m);
      pthread_mutex_unlock(&rc.m);
    } else {
      log_warn(SUB, "cannot close the connections on libblk's thread: %s", blk_last_error());
    }
    pthread_cond_destroy(&rc.cv);
    pthread_mutex_destroy(&rc.m);
  }
  for (size_t i = 0; i < srv->nlisteners; i++)
    evconnlistener_free(srv->listeners[i]);
  srv->nlisteners = 0;
  if (srv->cfg && srv->cfg->socket_path)
    unlink(srv->cfg->socket_path);
  /* opens still waiting for a lock: bounded by image_lock_timeout */
  nbd_export_finish_opens(srv);
  /* libblk completes or cancels in-flight I/O when images close; drain
   * the inbox so requests and connections are freed (remote connections
   * come back through it once their last request completed) */
  for (struct nbd_export *e = srv->exports; e; e = e->next)
    if (e->img) {
      blk_image_close(e->img);
      e->img = NULL;
    }
  nbd_conn_completions(srv);
  nbd_req_cache_free(srv);
  while (srv->exports) {
    struct nbd_export *e = srv->exports;
    srv->exports = e->next;
    free(e->name);
    free(e);
  }
  while (srv->pools) {
    struct nbd_pool *p = srv->pools;
    srv->pools = p->next;
    blk_ioctx_destroy(p->ioctx);
    free(p->name);
    free(p);
  }
  if (srv->cq_ev)
    event_free(srv->cq_ev);
  if (srv->cq_fd >= 0)
    close(srv->cq_fd);
  if (srv->tls_ctx)
    nbd_tls_free(srv->tls_ctx);
}
