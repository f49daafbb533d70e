/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see msgr.h for the contract and frame.h for the format.
 *
 * Each connection has a nonblocking socket, a read event and a write
 * event.  Input is read into one growable buffer; complete frames are
 * handed to the handler in place (no copy), then the remainder is moved to
 * the front.  The buffer grows to the size of the largest frame seen (never
 * beyond the limits, which are checked on the header before growing) and
 * shrinks back when it empties.  Output frames are queued as single
 * allocations (header, payload, data) and written with writev; sends made
 * during one loop iteration are coalesced: a send only activates the write
 * event, and the write happens once the current callbacks return.
 *
 * Wire protection (msgr_conn_set_protection, docs/auth.md §7) is a
 * struct auth_wire per TCP connection: a frame is signed or encrypted in
 * its output buffer when it is queued (so queue order is sequence order),
 * and verified/decrypted in place in the input buffer before its handler
 * runs.  Without protection the only cost is a pointer test per frame.
 *
 * Pending calls live in a per-connection hash by tid and in a list in
 * deadline order of insertion; a 25 ms sweep timer fails expired ones.
 *
 * Reference counting: an accepted connection holds one reference for the
 * msgr while it is open.  An outgoing connection is owned by its users
 * only; the msgr merely lists it.  Callbacks run with a temporary
 * reference held, so a user may put its last reference from inside one.
 */
#include "msgr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "msgtypes.h"

#define PENDING_BUCKETS 64
#define IN_MIN_CAP 65536
#define SWEEP_MS 25
#define MAX_IOV 64

struct outbuf {
  struct outbuf *next;
  size_t len, off;
  size_t cap;          /* OB_POOL_BYTES: from/to the msgr's pool */
  uint8_t buf[];
};

/* Frames carrying data (a 4 KiB write: ~4.3 KiB with header and payload)
 * reuse their buffers through a small per-msgr free list instead of a
 * large malloc + free each; smaller frames use malloc (thread cache). */
#define OB_POOL_MIN 1024
#define OB_POOL_BYTES 8192
#define OB_POOL_MAX 64

static void outbuf_free(msgr *m, struct outbuf *o);

struct pending {
  struct pending *hnext;           /* hash chain */
  struct pending *prev, *next;     /* conn's list */
  uint64_t tid;
  int64_t deadline;                /* ms, monotonic; 0 = none */
  msgr_reply_fn cb;
  void *arg;
};

enum conn_state { C_IDLE, C_CONNECTING, C_OPEN, C_CLOSED };

struct msgr_conn {
  msgr *m;
  int refs;
  bool outgoing;
  enum conn_state state;
  int fd;
  char peer[128];
  struct sockaddr_storage sa;
  unsigned salen;
  struct event *rev, *wev, *retry_ev;
  uint8_t *in;
  size_t in_len, in_cap;
  bool banner_in;
  struct outbuf *oq_head, *oq_tail;
  struct pending *ph[PENDING_BUCKETS];
  struct pending *plist;
  uint64_t next_tid;
  int backoff_ms;
  int connect_err;                 /* deferred failure of connect() */
  int last_err;                    /* why the connection last failed */
  int64_t next_attempt;            /* ms; connect not before */
  int64_t connect_deadline;
  struct msgr_conn *prev, *next;   /* msgr's list, while linked */
  bool linked;
  void *priv;
  struct auth_wire *wire;          /* protection of the current TCP connection */
  /* client-side auth (msgr_set_client_auth): frames held until the
   * exchange of this TCP connection is done, in queue order */
  struct held *held_head, *held_tail;
  bool auth_running;
};

struct held {
  struct held *next;
  uint16_t type;
  uint8_t flags;
  uint64_t tid;
  uint32_t plen, dlen;
  uint8_t buf[];
};

struct msgr {
  struct event_base *base;
  struct frame_limits lim;
  struct msgr_ops ops;
  void *ctx;
  struct msgr_conn *conns;
  struct listener { int fd; struct event *ev; char *unix_path; } listeners[8];
  int n_listeners;
  struct event *sweep_ev;
  int connect_timeout_ms;
  int max_backoff_ms;
  int tcp_user_timeout_ms;
  bool require_auth;
  msgr_auth_start_fn auth_start;   /* client-side auth hook, or NULL */
  void *auth_ctx;
  struct outbuf *ob_pool;          /* free data-frame buffers (owned) */
  unsigned ob_npool;
};

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- addresses ---------------------------------------------------------- */

int msgr_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *sslen)
{
  memset(ss, 0, sizeof *ss);
  if (!addr)
    return -EINVAL;
  if (strncmp(addr, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    const char *p = addr + 5;
    if (!*p || strlen(p) >= sizeof un->sun_path)
      return -EINVAL;
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, p);
    *sslen = sizeof *un;
    return 0;
  }
  char host[64];
  const char *colon, *hs = addr, *he;
  if (*addr == '[') {
    he = strchr(addr, ']');
    if (!he || he[1] != ':')
      return -EINVAL;
    hs = addr + 1;
    colon = he + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon)
      return -EINVAL;
    he = colon;
  }
  if ((size_t)(he - hs) >= sizeof host || he == hs)
    return -EINVAL;
  memcpy(host, hs, (size_t)(he - hs));
  host[he - hs] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535)
    return -EINVAL;
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    *sslen = sizeof *in4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *sslen = sizeof *in6;
    return 0;
  }
  return -EINVAL;
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
  char h[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, h, sizeof h);
    snprintf(out, n, "%s:%u", h, ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof h);
    snprintf(out, n, "[%s]:%u", h, ntohs(a->sin6_port));
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *a = (const void *)ss;
    snprintf(out, n, "unix:%s", a->sun_path[0] ? a->sun_path : "(peer)");
  } else {
    snprintf(out, n, "?");
  }
}

/* ---- connection life cycle --------------------------------------------- */

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void conn_retry_cb(evutil_socket_t fd, short what, void *arg);
static void conn_start_connect(msgr_conn *c);
static int conn_queue_frame(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
                            const void *payload, uint32_t plen,
                            const struct ProtobufCMessage *msg,
                            const void *data, uint32_t dlen);

static msgr_conn *conn_alloc(msgr *m, bool outgoing)
{
  msgr_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->m = m;
  c->outgoing = outgoing;
  c->fd = -1;
  c->state = outgoing ? C_IDLE : C_OPEN;
  c->next_tid = 1;
  c->next = m->conns;
  if (m->conns)
    m->conns->prev = c;
  m->conns = c;
  c->linked = true;
  return c;
}

static void conn_unlink(msgr_conn *c)
{
  if (!c->m || !c->linked)
    return;
  c->linked = false;
  if (c->prev)
    c->prev->next = c->next;
  else
    c->m->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void pending_remove(msgr_conn *c, struct pending *p)
{
  struct pending **pp = &c->ph[p->tid % PENDING_BUCKETS];
  while (*pp && *pp != p)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = p->hnext;
  if (p->prev)
    p->prev->next = p->next;
  else
    c->plist = p->next;
  if (p->next)
    p->next->prev = p->prev;
}

static struct pending *pending_find(msgr_conn *c, uint64_t tid)
{
  for (struct pending *p = c->ph[tid % PENDING_BUCKETS]; p; p = p->hnext)
    if (p->tid == tid)
      return p;
  return NULL;
}

static void fail_pending(msgr_conn *c, int err)
{
  /* Detach the whole list first: callbacks may issue new calls. */
  struct pending *p = c->plist;
  c->plist = NULL;
  memset(c->ph, 0, sizeof c->ph);
  while (p) {
    struct pending *n = p->next;
    p->cb(p->arg, err, NULL);
    free(p);
    p = n;
  }
}

static void drop_output(msgr_conn *c)
{
  struct outbuf *o = c->oq_head;
  while (o) {
    struct outbuf *n = o->next;
    outbuf_free(c->m, o);
    o = n;
  }
  c->oq_head = c->oq_tail = NULL;
  struct held *h = c->held_head;
  while (h) {
    struct held *n = h->next;
    free(h);
    h = n;
  }
  c->held_head = c->held_tail = NULL;
}

static void conn_teardown_fd(msgr_conn *c)
{
  if (c->rev) {
    event_free(c->rev);
    c->rev = NULL;
  }
  if (c->wev) {
    event_free(c->wev);
    c->wev = NULL;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  free(c->in);
  c->in = NULL;
  c->in_len = c->in_cap = 0;
  c->banner_in = false;
  /* a new TCP connection needs a new auth exchange */
  auth_wire_free(c->wire);
  c->wire = NULL;
  c->auth_running = false;
}

/* Close with error err: pending calls fail with -ECONNRESET. */
static void conn_fail(msgr_conn *c, int err)
{
  if (c->state == C_CLOSED || (c->state == C_IDLE && c->fd < 0 && !c->oq_head && !c->plist))
    return;
  bool was_open = c->state == C_OPEN;
  if (err)
    c->last_err = err;
  msgr_conn_get(c);
  conn_teardown_fd(c);
  drop_output(c);
  if (c->outgoing) {
    c->state = C_IDLE;
    int max = c->m ? c->m->max_backoff_ms : 2000;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 50;
    if (c->backoff_ms > max)
      c->backoff_ms = max;
    c->next_attempt = now_ms() + c->backoff_ms;
  } else {
    c->state = C_CLOSED;
  }
  fail_pending(c, -ECONNRESET);
  if (c->m && c->m->ops.on_close && (was_open || !c->outgoing))
    c->m->ops.on_close(c->m->ctx, c, err);
  if (!c->outgoing && c->m) {
    conn_unlink(c);
    msgr_conn_put(c);     /* the msgr's reference */
  }
  msgr_conn_put(c);
}

void msgr_conn_close(msgr_conn *c)
{
  conn_fail(c, 0);
}

msgr_conn *msgr_conn_get(msgr_conn *c)
{
  c->refs++;
  return c;
}

void msgr_conn_put(msgr_conn *c)
{
  if (!c || --c->refs > 0)
    return;
  conn_teardown_fd(c);
  drop_output(c);
  if (c->plist)
    fail_pending(c, -ECANCELED);
  if (c->retry_ev)
    event_free(c->retry_ev);
  conn_unlink(c);
  free(c);
}

const char *msgr_conn_peer(const msgr_conn *c) { return c->peer; }
int msgr_conn_last_error(const msgr_conn *c) { return c->last_err; }
bool msgr_conn_is_open(const msgr_conn *c) { return c->state == C_OPEN; }
void msgr_conn_set_priv(msgr_conn *c, void *priv) { c->priv = priv; }
void *msgr_conn_priv(const msgr_conn *c) { return c->priv; }

static void tune_socket(msgr *m, int fd, int family)
{
  int one = 1;
  if (family != AF_UNIX) {
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    /* Data unacknowledged this long means the peer is gone (a cut link):
     * fail the connection instead of retransmitting with ever longer
     * backoff, so that it is re-established promptly when the path heals. */
    unsigned uto = (unsigned)m->tcp_user_timeout_ms;
    if (uto)
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
  }
}

static int conn_attach_fd(msgr_conn *c, int fd)
{
  c->fd = fd;
  c->rev = event_new(c->m->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
  c->wev = event_new(c->m->base, fd, EV_WRITE, conn_write_cb, c);
  c->in_cap = IN_MIN_CAP;
  c->in = malloc(c->in_cap);
  if (!c->rev || !c->wev || !c->in)
    return -ENOMEM;
  return 0;
}

/* m: the msgr whose pool to use (NULL: none). */
static struct outbuf *outbuf_new(msgr *m, size_t len)
{
  struct outbuf *o;
  size_t cap = len;
  if (len > OB_POOL_MIN && len <= OB_POOL_BYTES) {
    cap = OB_POOL_BYTES;
    if (m && m->ob_pool) {
      o = m->ob_pool;
      m->ob_pool = o->next;
      m->ob_npool--;
      goto got;
    }
  }
  o = malloc(sizeof *o + cap);
  if (!o)
    return NULL;
got:
  o->next = NULL;
  o->len = len;
  o->off = 0;
  o->cap = cap;
  return o;
}

static void outbuf_free(msgr *m, struct outbuf *o)
{
  if (m && o->cap == OB_POOL_BYTES && m->ob_npool < OB_POOL_MAX) {
    o->next = m->ob_pool;
    m->ob_pool = o;
    m->ob_npool++;
    return;
  }
  free(o);
}

static void queue_front(msgr_conn *c, struct outbuf *o)
{
  o->next = c->oq_head;
  c->oq_head = o;
  if (!c->oq_tail)
    c->oq_tail = o;
}

static void queue_back(msgr_conn *c, struct outbuf *o)
{
  if (c->oq_tail)
    c->oq_tail->next = o;
  else
    c->oq_head = o;
  c->oq_tail = o;
}

static void conn_opened(msgr_conn *c)
{
  c->state = C_OPEN;
  c->backoff_ms = 0;
  event_add(c->rev, NULL);
  struct outbuf *b = outbuf_new(c->m, FRAME_BANNER_LEN);
  if (!b) {
    conn_fail(c, -ENOMEM);
    return;
  }
  memcpy(b->buf, FRAME_BANNER, FRAME_BANNER_LEN);
  queue_front(c, b);
  event_active(c->wev, EV_WRITE, 0);
}

static void conn_connect_done(msgr_conn *c)
{
  int err = c->connect_err;
  socklen_t l = sizeof err;
  c->connect_err = 0;
  if (!err && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
    err = errno;
  if (err) {
    log_debug("msgr", "connect to %s failed: %s", c->peer, strerror(err));
    conn_fail(c, -err);
    return;
  }
  conn_opened(c);
}

static void conn_start_connect(msgr_conn *c)
{
  msgr *m = c->m;
  int64_t now = now_ms();
  if (!m || c->state != C_IDLE)
    return;
  if (now < c->next_attempt) {
    if (!c->retry_ev)
      c->retry_ev = evtimer_new(m->base, conn_retry_cb, c);
    if (c->retry_ev && !evtimer_pending(c->retry_ev, NULL)) {
      struct timeval tv = { 0, (suseconds_t)((c->next_attempt - now) * 1000) };
      evtimer_add(c->retry_ev, &tv);
    }
    return;
  }
  int fd = socket(c->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    log_warn("msgr", "socket for %s: %s", c->peer, strerror(errno));
    c->next_attempt = now + 100;
    conn_start_connect(c);   /* arms the retry timer */
    return;
  }
  tune_socket(m, fd, c->sa.ss_family);
  if (conn_attach_fd(c, fd) < 0) {
    conn_teardown_fd(c);
    c->next_attempt = now + 100;
    return;
  }
  c->state = C_CONNECTING;
  c->connect_deadline = now + m->connect_timeout_ms;
  if (connect(fd, (struct sockaddr *)&c->sa, c->salen) == 0) {
    conn_opened(c);
  } else if (errno == EINPROGRESS) {
    event_add(c->wev, NULL);
  } else {
    /* Fail from the loop, never from inside the caller's send. */
    c->connect_err = errno;
    event_active(c->wev, EV_WRITE, 0);
  }
}

static void conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
  msgr_conn *c = arg;
  if (c->state == C_IDLE && (c->oq_head || c->plist || c->held_head))
    conn_start_connect(c);
}

msgr_conn *msgr_connect(msgr *m, const char *addr)
{
  struct sockaddr_storage ss;
  unsigned sl;
  if (msgr_parse_addr(addr, &ss, &sl) < 0) {
    errno = EINVAL;
    return NULL;
  }
  msgr_conn *c = conn_alloc(m, true);
  if (!c) {
    errno = ENOMEM;
    return NULL;
  }
  c->sa = ss;
  c->salen = sl;
  snprintf(c->peer, sizeof c->peer, "%s", addr);
  c->refs = 1;
  return c;
}

/* ---- output ------------------------------------------------------------- */

/* One writev of the head of the output queue; what was written is
 * dequeued.  Bytes written or -errno. */
static ssize_t conn_write_once(msgr_conn *c)
{
  struct iovec iov[MAX_IOV];
  int n = 0;
  for (struct outbuf *o = c->oq_head; o && n < MAX_IOV; o = o->next, n++) {
    iov[n].iov_base = o->buf + o->off;
    iov[n].iov_len = o->len - o->off;
  }
  ssize_t w = writev(c->fd, iov, n);
  if (w < 0)
    return -errno;
  size_t left = (size_t)w;
  while (left && c->oq_head) {
    struct outbuf *o = c->oq_head;
    size_t avail = o->len - o->off;
    if (left < avail) {
      o->off += left;
      break;
    }
    left -= avail;
    c->oq_head = o->next;
    if (!c->oq_head)
      c->oq_tail = NULL;
    outbuf_free(c->m, o);
  }
  return w;
}

static void conn_flush(msgr_conn *c)
{
  while (c->oq_head) {
    ssize_t w = conn_write_once(c);
    if (w == -EINTR)
      continue;
    if (w == -EAGAIN || w == -EWOULDBLOCK) {
      event_add(c->wev, NULL);
      return;
    }
    if (w < 0) {
      log_debug("msgr", "write to %s: %s", c->peer, strerror((int)-w));
      conn_fail(c, (int)w);
      return;
    }
  }
}

void msgr_conn_flush_now(msgr_conn *c)
{
  /* errors and a full socket buffer are left to the write event, which
   * is active already (the frames were queued in this callback) */
  if (c->state == C_OPEN && c->oq_head && !c->held_head && !c->auth_running)
    (void)conn_write_once(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
  msgr_conn *c = arg;
  if (c->state == C_CONNECTING) {
    conn_connect_done(c);
    return;
  }
  if (c->state == C_OPEN) {
    msgr_conn_get(c);
    if (c->held_head && !c->wire && !c->auth_running && c->m && c->m->auth_start) {
      c->auth_running = true;
      c->m->auth_start(c->m->auth_ctx, c);
    }
    if (c->state == C_OPEN)
      conn_flush(c);
    msgr_conn_put(c);
  }
}

/* Protect the frame in buf (header to be encoded, body, room for the
 * trailer): sign, or encrypt and then checksum the ciphertext. */
static int conn_seal(msgr_conn *c, struct frame_hdr *h, uint8_t *buf)
{
  uint8_t *body = buf + FRAME_HDR_LEN;
  size_t blen = (size_t)h->payload_len + h->data_len;
  uint8_t *trailer = body + blen;
  int r;
  if (h->flags & FRAME_F_SIGNED) {
    h->payload_crc = crc32c(0, body, h->payload_len);
    h->data_crc = crc32c(0, body + h->payload_len, h->data_len);
    frame_hdr_encode(h, buf);
    r = auth_wire_seal(c->wire, buf, FRAME_HDR_LEN, body, blen, trailer);
  } else {
    frame_hdr_encode(h, buf);      /* bytes 0..23 (the AAD) are final */
    r = auth_wire_seal(c->wire, buf, FRAME_SECURE_AAD_LEN, body, blen, trailer);
    h->payload_crc = crc32c(0, body, h->payload_len);
    h->data_crc = crc32c(0, body + h->payload_len, h->data_len);
    frame_hdr_encode(h, buf);
  }
  if (r < 0)
    log_err("msgr", "protecting a frame to %s failed", c->peer);
  return r;
}

/* Keep a frame of an outgoing connection that has not authenticated
 * yet (msgr_set_client_auth); it is protected and queued by
 * msgr_conn_auth_done. */
static int conn_hold_frame(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
                           const void *payload, uint32_t plen,
                           const struct ProtobufCMessage *msg,
                           const void *data, uint32_t dlen)
{
  struct held *h = malloc(sizeof *h + (size_t)plen + dlen);
  if (!h)
    return -ENOMEM;
  h->next = NULL;
  h->type = type;
  h->flags = flags;
  h->tid = tid;
  h->plen = plen;
  h->dlen = dlen;
  if (msg)
    protobuf_c_message_pack(msg, h->buf);
  else if (plen)
    memcpy(h->buf, payload, plen);
  if (dlen)
    memcpy(h->buf + plen, data, dlen);
  if (c->held_tail)
    c->held_tail->next = h;
  else
    c->held_head = h;
  c->held_tail = h;
  if (c->state == C_OPEN) {
    if (!event_pending(c->wev, EV_WRITE, NULL))
      event_active(c->wev, EV_WRITE, 0);   /* starts the exchange */
  } else if (c->state == C_IDLE) {
    conn_start_connect(c);
  }
  return 0;
}

void msgr_set_client_auth(msgr *m, msgr_auth_start_fn start, void *ctx)
{
  m->auth_start = start;
  m->auth_ctx = ctx;
}

void msgr_conn_auth_done(msgr_conn *c, int err)
{
  c->auth_running = false;
  if (!c->m || c->fd < 0)
    return;                        /* the TCP connection is gone already */
  if (err == 0 && !c->wire)
    err = -EPROTO;
  if (err < 0) {
    if (c->state != C_OPEN && c->state != C_CONNECTING)
      return;
    c->last_err = err;
    /* the waiting calls learn why (e.g. -EACCES), not just a reset */
    msgr_conn_get(c);
    fail_pending(c, err);
    conn_fail(c, err);
    msgr_conn_put(c);
    return;
  }
  struct held *h = c->held_head;
  c->held_head = c->held_tail = NULL;
  while (h) {
    struct held *n = h->next;
    if (c->state == C_OPEN)
      conn_queue_frame(c, h->type, h->flags, h->tid, h->buf, h->plen, NULL,
                       h->buf + h->plen, h->dlen);
    free(h);
    h = n;
  }
}

static int conn_queue_frame(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
                            const void *payload, uint32_t plen,
                            const struct ProtobufCMessage *msg,
                            const void *data, uint32_t dlen)
{
  if (c->state == C_CLOSED || !c->m)
    return -ENOTCONN;
  if (msg)
    plen = (uint32_t)protobuf_c_message_get_packed_size(msg);
  if (flags & FRAME_F_PROTECTED)
    return -EINVAL;                /* the messenger sets these itself */
  if (c->outgoing && c->m->auth_start && !c->wire &&
      (type < MSG_AUTH_FIRST || type > MSG_AUTH_LAST))
    return conn_hold_frame(c, type, flags, tid, payload, plen, msg, data, dlen);
  if (c->wire)
    flags |= auth_wire_mode(c->wire) == AUTH_MODE_CEPHX ? FRAME_F_SIGNED : FRAME_F_SECURE;
  uint32_t tlen = frame_trailer_len(flags);
  struct outbuf *o = outbuf_new(c->m, FRAME_HDR_LEN + (size_t)plen + dlen + tlen);
  if (!o)
    return -ENOMEM;
  uint8_t *pp = o->buf + FRAME_HDR_LEN;
  if (msg)
    protobuf_c_message_pack(msg, pp);
  else if (plen)
    memcpy(pp, payload, plen);
  if (dlen)
    memcpy(pp + plen, data, dlen);
  struct frame_hdr h = {
    .flags = flags, .type = type, .tid = tid, .payload_len = plen, .data_len = dlen,
  };
  if (c->wire) {
    int r = conn_seal(c, &h, o->buf);
    if (r < 0) {
      outbuf_free(c->m, o);
      return r;
    }
  } else {
    h.payload_crc = crc32c(0, pp, plen);
    h.data_crc = crc32c(0, pp + plen, dlen);
    frame_hdr_encode(&h, o->buf);
  }
  queue_back(c, o);
  if (c->state == C_OPEN) {
    if (!event_pending(c->wev, EV_WRITE, NULL))
      event_active(c->wev, EV_WRITE, 0);
  } else if (c->state == C_IDLE) {
    conn_start_connect(c);
  }
  return 0;
}

int msgr_send(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
              const void *payload, uint32_t payload_len,
              const void *data, uint32_t data_len)
{
  return conn_queue_frame(c, type, flags, tid, payload, payload_len, NULL,
                          data, data_len);
}

int msgr_send_pb(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
                 const struct ProtobufCMessage *msg, const void *data,
                 uint32_t data_len)
{
  return conn_queue_frame(c, type, flags, tid, NULL, 0, msg, data, data_len);
}

int msgr_reply_pb(msgr_conn *c, const struct msgr_frame *req, uint16_t type,
                  const struct ProtobufCMessage *msg, const void *data,
                  uint32_t data_len)
{
  return conn_queue_frame(c, type, FRAME_F_REPLY, req->tid, NULL, 0, msg,
                          data, data_len);
}

static int conn_call(msgr_conn *c, uint16_t type, const void *payload, uint32_t plen,
                     const struct ProtobufCMessage *msg, const void *data, uint32_t data_len,
                     int timeout_ms, msgr_reply_fn cb, void *arg)
{
  struct pending *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  p->tid = c->next_tid++;
  p->cb = cb;
  p->arg = arg;
  p->deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
  /* conn_queue_frame never fails the connection synchronously (connect
   * errors are delivered from the loop), so cb cannot run before return. */
  int r = conn_queue_frame(c, type, 0, p->tid, payload, plen, msg, data, data_len);
  if (r < 0) {
    free(p);
    return r;
  }
  p->hnext = c->ph[p->tid % PENDING_BUCKETS];
  c->ph[p->tid % PENDING_BUCKETS] = p;
  p->next = c->plist;
  if (c->plist)
    c->plist->prev = p;
  c->plist = p;
  return 0;
}

int msgr_call_pb(msgr_conn *c, uint16_t type, const struct ProtobufCMessage *msg,
                 const void *data, uint32_t data_len, int timeout_ms,
                 msgr_reply_fn cb, void *arg)
{
  return conn_call(c, type, NULL, 0, msg, data, data_len, timeout_ms, cb, arg);
}

int msgr_call(msgr_conn *c, uint16_t type, const void *payload, uint32_t payload_len,
              const void *data, uint32_t data_len, int timeout_ms,
              msgr_reply_fn cb, void *arg)
{
  return conn_call(c, type, payload, payload_len, NULL, data, data_len, timeout_ms, cb, arg);
}

/* ---- input -------------------------------------------------------------- */

static void conn_protocol_error(msgr_conn *c, int err, const char *why)
{
  log_warn("msgr", "closing connection from %s: %s", c->peer, why);
  conn_fail(c, err);
}

/* Check a received frame against the connection's protection (and the
 * auth gate); decrypt in place.  Returns false after closing c. */
static bool conn_open_frame(msgr_conn *c, const struct frame_hdr *h, uint8_t *frame)
{
  char why[160];
  if (!c->wire) {
    if (h->flags & FRAME_F_PROTECTED) {
      conn_protocol_error(c, -EPROTO, "protected frame before the auth exchange ended");
      return false;
    }
    if (c->m->require_auth && (h->type < MSG_AUTH_FIRST || h->type > MSG_AUTH_LAST)) {
      snprintf(why, sizeof why, "frame type %u before authentication", h->type);
      conn_protocol_error(c, -EACCES, why);
      return false;
    }
    return true;
  }
  uint8_t want = auth_wire_mode(c->wire) == AUTH_MODE_CEPHX ? FRAME_F_SIGNED : FRAME_F_SECURE;
  if ((h->flags & FRAME_F_PROTECTED) != want) {
    snprintf(why, sizeof why, "frame type %u without %s protection", h->type,
             auth_mode_name(auth_wire_mode(c->wire)));
    conn_protocol_error(c, -EPROTO, why);
    return false;
  }
  uint8_t *body = frame + FRAME_HDR_LEN;
  size_t blen = (size_t)h->payload_len + h->data_len;
  int r = auth_wire_open(c->wire, frame,
                         want == FRAME_F_SIGNED ? FRAME_HDR_LEN : FRAME_SECURE_AAD_LEN,
                         body, blen, body + blen);
  if (r < 0) {
    snprintf(why, sizeof why, "frame type %u tid %llu failed %s verification "
             "(tampered, replayed or reordered)", h->type, (unsigned long long)h->tid,
             auth_mode_name(auth_wire_mode(c->wire)));
    conn_protocol_error(c, -EBADMSG, why);
    return false;
  }
  return true;
}

int msgr_conn_set_protection(msgr_conn *c, enum auth_mode mode,
                             const uint8_t key[AUTH_KEY_LEN], bool is_client)
{
  if (mode != AUTH_MODE_CEPHX && mode != AUTH_MODE_SECURE)
    return -EINVAL;
  if (c->state != C_OPEN)
    return -ENOTCONN;
  if (c->wire)
    return -EALREADY;
  struct auth_wire *w = auth_wire_new(mode, key, is_client);
  if (!w)
    return -errno;
  c->wire = w;
  log_debug("msgr", "connection with %s now %s", c->peer, auth_mode_name(mode));
  return 0;
}

enum auth_mode msgr_conn_protection(const msgr_conn *c)
{
  return c->wire ? auth_wire_mode(c->wire) : AUTH_MODE_NONE;
}

void msgr_set_require_auth(msgr *m, bool on)
{
  m->require_auth = on;
}

/* Process complete frames in c->in.  Returns false if c was closed. */
static bool conn_process(msgr_conn *c)
{
  size_t off = 0;
  bool alive = true;
  if (!c->banner_in) {
    if (c->in_len < FRAME_BANNER_LEN)
      return true;
    if (memcmp(c->in, FRAME_BANNER, FRAME_BANNER_LEN) != 0) {
      conn_protocol_error(c, -EPROTO, "bad banner (not a blkstore peer?)");
      return false;
    }
    c->banner_in = true;
    off = FRAME_BANNER_LEN;
  }
  for (;;) {
    struct frame_hdr h;
    const char *why;
    size_t need;
    int r = frame_parse(c->in + off, c->in_len - off, &c->m->lim, &h, &need, &why);
    if (r < 0) {
      conn_protocol_error(c, r, why);
      return false;
    }
    if (r == 0) {
      if (need > c->in_cap) {
        /* move what we have to the front, then grow to fit the frame;
         * need was bounded by the limits before we get here */
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        off = 0;
        uint8_t *ni = realloc(c->in, need);
        if (!ni) {
          conn_fail(c, -ENOMEM);
          return false;
        }
        c->in = ni;
        c->in_cap = need;
      }
      break;
    }
    uint8_t *payload = c->in + off + FRAME_HDR_LEN;
    uint8_t *data = payload + h.payload_len;
    if ((c->wire || (h.flags & FRAME_F_PROTECTED) || c->m->require_auth) &&
        !conn_open_frame(c, &h, c->in + off))
      return false;
    off += need;
    struct msgr_frame f = {
      .type = h.type, .flags = h.flags, .tid = h.tid, .payload = payload,
      .payload_len = h.payload_len, .data = data, .data_len = h.data_len,
    };
    if (h.flags & FRAME_F_REPLY) {
      struct pending *p = pending_find(c, h.tid);
      if (!p) {
        log_debug("msgr", "reply tid %llu from %s matches no call (timed out?)",
                  (unsigned long long)h.tid, c->peer);
        continue;
      }
      pending_remove(c, p);
      p->cb(p->arg, 0, &f);
      free(p);
    } else if (c->m->ops.on_frame) {
      c->m->ops.on_frame(c->m->ctx, c, &f);
    }
    if (c->state != C_OPEN) {
      alive = false;
      break;
    }
  }
  if (alive && off) {
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    if (c->in_len == 0 && c->in_cap > 4 * IN_MIN_CAP) {
      uint8_t *ni = realloc(c->in, IN_MIN_CAP);
      if (ni) {
        c->in = ni;
        c->in_cap = IN_MIN_CAP;
      }
    }
  }
  return alive;
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
  msgr_conn *c = arg;
  msgr_conn_get(c);
  for (int rounds = 0; rounds < 16 && c->state == C_OPEN; rounds++) {
    if (c->in_cap - c->in_len < 4096 && c->in_cap < IN_MIN_CAP * 4) {
      uint8_t *ni = realloc(c->in, c->in_cap * 2);
      if (!ni) {
        conn_fail(c, -ENOMEM);
        break;
      }
      c->in = ni;
      c->in_cap *= 2;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0) {
      log_debug("msgr", "%s closed the connection", c->peer);
      conn_fail(c, 0);
      break;
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        conn_fail(c, -errno);
      break;
    }
    c->in_len += (size_t)n;
    if (!conn_process(c))
      break;
    if (c->in_len < c->in_cap)
      break;      /* drained the socket */
  }
  msgr_conn_put(c);
}

/* ---- listening ---------------------------------------------------------- */

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
  msgr *m = arg;
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log_warn("msgr", "accept: %s", strerror(errno));
      return;
    }
    tune_socket(m, fd, ss.ss_family);
    msgr_conn *c = conn_alloc(m, false);
    if (!c) {
      close(fd);
      continue;
    }
    c->refs = 1;
    c->sa = ss;
    c->salen = sl;
    addr_text(&ss, c->peer, sizeof c->peer);
    if (conn_attach_fd(c, fd) < 0) {
      conn_fail(c, -ENOMEM);
      continue;
    }
    conn_opened(c);
    if (m->ops.on_accept && c->state == C_OPEN)
      m->ops.on_accept(m->ctx, c);
  }
}

int msgr_listen(msgr *m, const char *addr)
{
  struct sockaddr_storage ss;
  unsigned sl;
  int r = msgr_parse_addr(addr, &ss, &sl);
  if (r < 0)
    return r;
  if (m->n_listeners == (int)(sizeof m->listeners / sizeof m->listeners[0]))
    return -ENOSPC;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_UNIX)
    unlink(((struct sockaddr_un *)&ss)->sun_path);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
    r = -errno;
    close(fd);
    return r;
  }
  struct listener *l = &m->listeners[m->n_listeners];
  l->fd = fd;
  l->unix_path = ss.ss_family == AF_UNIX ? strdup(((struct sockaddr_un *)&ss)->sun_path) : NULL;
  l->ev = event_new(m->base, fd, EV_READ | EV_PERSIST, accept_cb, m);
  if (!l->ev) {
    close(fd);
    free(l->unix_path);
    return -ENOMEM;
  }
  event_add(l->ev, NULL);
  m->n_listeners++;
  return 0;
}

int msgr_listen_addr(msgr *m, int i, char *out, size_t n)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (i < 0 || i >= m->n_listeners)
    return -ENOENT;
  if (getsockname(m->listeners[i].fd, (struct sockaddr *)&ss, &sl) < 0)
    return -errno;
  addr_text(&ss, out, n);
  return 0;
}

/* ---- timeouts ----------------------------------------------------------- */

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
  msgr *m = arg;
  int64_t now = now_ms();
  msgr_conn *c = m->conns;
  while (c) {
    msgr_conn *next = c->next;
    msgr_conn_get(c);
    if (c->state == C_CONNECTING && now >= c->connect_deadline) {
      log_debug("msgr", "connect to %s timed out", c->peer);
      conn_fail(c, -ETIMEDOUT);
    }
    /* a dropped frame of an idle outgoing connection: retry connecting */
    if (c->state == C_IDLE && c->plist && now >= c->next_attempt)
      conn_start_connect(c);
    struct pending *p = c->plist;
    while (p) {
      struct pending *pn = p->next;
      if (p->deadline && now >= p->deadline) {
        pending_remove(c, p);
        p->cb(p->arg, -ETIMEDOUT, NULL);
        free(p);
        pn = c->plist;   /* the callback may have changed the list */
      }
      p = pn;
    }
    next = c->next;
    msgr_conn_put(c);
    c = next;
  }
}

msgr *msgr_new(struct event_base *base, const struct frame_limits *lim,
               const struct msgr_ops *ops, void *ctx)
{
  msgr *m = calloc(1, sizeof *m);
  if (!m) {
    errno = ENOMEM;
    return NULL;
  }
  m->base = base;
  m->lim = *lim;
  if (ops)
    m->ops = *ops;
  m->ctx = ctx;
  m->connect_timeout_ms = 3000;
  m->max_backoff_ms = 2000;
  m->tcp_user_timeout_ms = 10000;
  m->sweep_ev = event_new(base, -1, EV_PERSIST, sweep_cb, m);
  if (!m->sweep_ev) {
    free(m);
    errno = ENOMEM;
    return NULL;
  }
  struct timeval tv = { 0, SWEEP_MS * 1000 };
  event_add(m->sweep_ev, &tv);
  return m;
}

void msgr_set_tcp_user_timeout(msgr *m, int ms)
{
  m->tcp_user_timeout_ms = ms > 0 ? ms : 0;
}

void msgr_set_timeouts(msgr *m, int connect_timeout_ms, int max_backoff_ms)
{
  if (connect_timeout_ms > 0)
    m->connect_timeout_ms = connect_timeout_ms;
  if (max_backoff_ms > 0)
    m->max_backoff_ms = max_backoff_ms;
}

void msgr_free(msgr *m)
{
  if (!m)
    return;
  for (int i = 0; i < m->n_listeners; i++) {
    event_free(m->listeners[i].ev);
    close(m->listeners[i].fd);
    if (m->listeners[i].unix_path) {
      unlink(m->listeners[i].unix_path);
      free(m->listeners[i].unix_path);
    }
  }
  while (m->conns) {
    msgr_conn *c = m->conns;
    msgr_conn_get(c);
    conn_teardown_fd(c);
    drop_output(c);
    fail_pending(c, -ECANCELED);
    conn_unlink(c);
    bool drop_msgr_ref = !c->outgoing && c->state != C_CLOSED;
    c->state = C_CLOSED;
    if (c->retry_ev) {
      event_free(c->retry_ev);
      c->retry_ev = NULL;
    }
    c->m = NULL;
    if (drop_msgr_ref)
      msgr_conn_put(c);
    msgr_conn_put(c);
  }
  event_free(m->sweep_ev);
  while (m->ob_pool) {
    struct outbuf *o = m->ob_pool;
    m->ob_pool = o->next;
    free(o);
  }
  free(m);
}

/* ---- synchronous calls --------------------------------------------------- */

struct sync_call {
  bool done;
  int err;
  struct msgr_frame *reply;
};

static void sync_cb(void *arg, int err, const struct msgr_frame *reply)
{
  struct sync_call *sc = arg;
  sc->done = true;
  sc->err = err;
  if (err == 0) {
    struct msgr_frame *f = malloc(sizeof *f + reply->payload_len + reply->data_len + 1);
    if (!f) {
      sc->err = -ENOMEM;
      return;
    }
    *f = *reply;
    uint8_t *p = (uint8_t *)(f + 1);
    memcpy(p, reply->payload, reply->payload_len);
    memcpy(p + reply->payload_len, reply->data, reply->data_len);
    f->payload = p;
    f->data = p + reply->payload_len;
    sc->reply = f;
  }
}

int msgr_call_sync(msgr_conn *c, uint16_t type, const struct ProtobufCMessage *msg,
                   const void *data, uint32_t data_len, int timeout_ms,
                   struct msgr_frame **reply_out)
{
  struct sync_call sc = { 0 };
  struct event_base *base = c->m ? c->m->base : NULL;
  if (!base)
    return -ENOTCONN;
  int r = msgr_call_pb(c, type, msg, data, data_len, timeout_ms, sync_cb, &sc);
  if (r < 0)
    return r;
  while (!sc.done)
    event_base_loop(base, EVLOOP_ONCE);
  if (sc.err == 0)
    *reply_out = sc.reply;
  return sc.err;
}

void msgr_frame_free(struct msgr_frame *f)
{
  free(f);
}
