/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the messenger — framed, checksummed messages over TCP or
 * unix sockets on one libevent loop (DESIGN.md §3; frame format in
 * frame.h).  One msgr serves one event_base and is used from that loop's
 * thread only.
 *
 *  - msgr_listen() accepts connections; msgr_connect() returns an outgoing
 *    connection that connects lazily and, after a failure, reconnects on
 *    the next send with exponential backoff (capped by
 *    msgr_reconnect_max_backoff).
 *  - msgr_send() queues a frame; msgr_call() sends a request and calls back
 *    exactly once with the reply, -ETIMEDOUT, or -ECONNRESET when the
 *    connection drops first.  Replies are matched by transaction id.
 *  - Received requests and one-way messages go to ops->on_frame.
 *  - A frame that fails validation (header crc, bounds, body crc) closes
 *    the connection and is logged with the peer's address.
 *  - Wire protection (docs/auth.md §6): once the auth exchange has given
 *    both ends a connection key, each calls msgr_conn_set_protection();
 *    from then on every frame is signed (cephx) or encrypted (secure), and
 *    a frame that fails verification closes the connection (logged with
 *    the peer).  A new TCP connection (reconnect) starts unprotected.
 *
 * Ownership: msgr_conn is reference counted (msgr_conn_get/put).  The
 * msgr holds one reference on every open connection; msgr_connect()
 * returns a new reference the caller must put.  A received frame's
 * payload and data are borrowed: valid only during the callback.
 */
#ifndef BLK_COMMON_MSGR_H
#define BLK_COMMON_MSGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "auth.h"
#include "frame.h"

struct event_base;
struct ProtobufCMessage;

typedef struct msgr msgr;
typedef struct msgr_conn msgr_conn;

struct msgr_frame {
  uint16_t type;
  uint8_t flags;
  uint64_t tid;
  const uint8_t *payload;
  uint32_t payload_len;
  uint8_t *data;          /* may be modified in place by the handler */
  uint32_t data_len;
};

struct msgr_ops {
  /* A request or one-way message arrived on c. */
  void (*on_frame)(void *ctx, msgr_conn *c, const struct msgr_frame *f);
  /* Optional: a connection was accepted (server side). */
  void (*on_accept)(void *ctx, msgr_conn *c);
  /* Optional: c closed (err is a negative errno or 0 on orderly close). */
  void (*on_close)(void *ctx, msgr_conn *c, int err);
};

/* Create a messenger on base.  lim bounds every received frame (from the
 * msgr_max_* options).  Returns NULL with errno set. */
msgr *msgr_new(struct event_base *base, const struct frame_limits *lim,
               const struct msgr_ops *ops, void *ctx);
/* Connect timeout and reconnect backoff ceiling (defaults 3 s and 2 s;
 * from msgr_connect_timeout / msgr_reconnect_max_backoff). */
void msgr_set_timeouts(msgr *m, int connect_timeout_ms, int max_backoff_ms);
/* TCP_USER_TIMEOUT for new TCP connections (default 10 s; 0 = kernel
 * default): unacknowledged data older than this fails the connection. */
void msgr_set_tcp_user_timeout(msgr *m, int ms);
/* Close every connection (pending calls fail with -ECANCELED) and free. */
void msgr_free(msgr *m);

/* Listen on "host:port", "[v6]:port" or "unix:/path".  May be called
 * several times.  Returns 0 or -errno. */
int msgr_listen(msgr *m, const char *addr);
/* The bound address of listener i (0-based, in msgr_listen order) as text,
 * e.g. "127.0.0.1:40123" after listening on port 0. */
int msgr_listen_addr(msgr *m, int i, char *out, size_t n);

/* An outgoing connection to addr (connected lazily).  Returns a new
 * reference, or NULL with errno = EINVAL for a bad address. */
msgr_conn *msgr_connect(msgr *m, const char *addr);
msgr_conn *msgr_conn_get(msgr_conn *c);
void msgr_conn_put(msgr_conn *c);
/* Close now; pending calls fail with -ECONNRESET.  An outgoing connection
 * reconnects on its next use. */
void msgr_conn_close(msgr_conn *c);
/* The peer's address as text (borrowed, valid while c is). */
const char *msgr_conn_peer(const msgr_conn *c);
bool msgr_conn_is_open(const msgr_conn *c);
/* The negative errno of the last connection failure (e.g. -ECONNREFUSED),
 * 0 if none: lets tools say why a peer is unreachable. */
int msgr_conn_last_error(const msgr_conn *c);
/* Opaque per-connection pointer for the owner (e.g. a session). */
void msgr_conn_set_priv(msgr_conn *c, void *priv);
void *msgr_conn_priv(const msgr_conn *c);

/* Switch c to wire protection mode (AUTH_MODE_CEPHX or AUTH_MODE_SECURE)
 * with the connection key from the auth exchange (auth_client.conn_key,
 * auth_server.conn_key, auth_authorizer.conn_key, auth_session.conn_key);
 * is_client says which end we are (the two directions use distinct keys
 * and nonces).  Takes effect at a defined point in each direction:
 *  - sending: every frame queued after this call (frames queued before,
 *    e.g. the auth reply itself, go out unprotected and in order first);
 *  - receiving: every frame after the one whose callback is running (call
 *    it from the on_frame / reply callback of the last auth message), or,
 *    called outside a callback, every frame not yet processed.
 * The key is copied (per-direction keys are derived; the caller wipes its
 * copy).  Returns 0; -EALREADY if c is protected already; -EINVAL for
 * mode NONE or an unknown mode; -ENOTCONN if c is not open; -EIO/-ENOMEM. */
int msgr_conn_set_protection(msgr_conn *c, enum auth_mode mode,
                             const uint8_t key[AUTH_KEY_LEN], bool is_client);
/* The protection of c's current connection (AUTH_MODE_NONE if none). */
enum auth_mode msgr_conn_protection(const msgr_conn *c);
/* When on, a connection not yet protected accepts only frames of the auth
 * range (MSG_AUTH_FIRST..MSG_AUTH_LAST); any other frame closes it.  For
 * daemons whose auth_mode is cephx or secure. */
void msgr_set_require_auth(msgr *m, bool on);

/* Client-side authentication of outgoing connections: when set, a frame
 * outside the auth range queued on an outgoing connection that is not
 * protected yet is held (unprotected, in order); once the TCP connection
 * is open start(ctx, c) runs (from the loop, once per TCP connection) and
 * must run the exchange with auth-range frames, call
 * msgr_conn_set_protection, then msgr_conn_auth_done(c, 0): the held
 * frames are then protected and sent.  msgr_conn_auth_done(c, -errno)
 * fails the calls waiting on c with that errno (e.g. -EACCES) and closes
 * the connection.  A reconnect authenticates again. */
typedef void (*msgr_auth_start_fn)(void *ctx, msgr_conn *c);
void msgr_set_client_auth(msgr *m, msgr_auth_start_fn start, void *ctx);
void msgr_conn_auth_done(msgr_conn *c, int err);

/* Queue a frame.  payload and data are copied before return.
 * Returns 0 or -errno (-ENOTCONN if an accepted connection is gone). */
int msgr_send(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
              const void *payload, uint32_t payload_len,
              const void *data, uint32_t data_len);
/* Same, packing a protobuf-c message as the payload. */
int msgr_send_pb(msgr_conn *c, uint16_t type, uint8_t flags, uint64_t tid,
                 const struct ProtobufCMessage *msg,
                 const void *data, uint32_t data_len);
/* Reply to req with the same tid. */
int msgr_reply_pb(msgr_conn *c, const struct msgr_frame *req, uint16_t type,
                  const struct ProtobufCMessage *msg,
                  const void *data, uint32_t data_len);

/* Reply callback: err is 0 with the reply frame (borrowed), or -ETIMEDOUT,
 * -ECONNRESET, -ECANCELED with reply == NULL.  Called exactly once. */
typedef void (*msgr_reply_fn)(void *arg, int err, const struct msgr_frame *reply);

/* Send a request and wait (asynchronously) for its reply.  timeout_ms <= 0
 * means no timeout.  Returns 0 (cb will run later) or -errno (cb will not
 * run). */
int msgr_call_pb(msgr_conn *c, uint16_t type, const struct ProtobufCMessage *msg,
                 const void *data, uint32_t data_len, int timeout_ms,
                 msgr_reply_fn cb, void *arg);

/* Same with an already packed payload (e.g. the auth_* functions'
 * output); payload and data are copied before return. */
int msgr_call(msgr_conn *c, uint16_t type, const void *payload, uint32_t payload_len,
              const void *data, uint32_t data_len, int timeout_ms,
              msgr_reply_fn cb, void *arg);

/* Write c's queued frames now instead of when the current callback returns
 * (latency: e.g. a primary forwards a write to its replicas before its own
 * local work).  Never runs a callback: anything but a full socket buffer
 * is left to the write event, which reports errors as usual. */
void msgr_conn_flush_now(msgr_conn *c);

/* Run base's loop until the call completes: the synchronous form for
 * tools.  On success *reply_out gets a malloc'ed copy of the reply frame
 * (free with msgr_frame_free). */
int msgr_call_sync(msgr_conn *c, uint16_t type, const struct ProtobufCMessage *msg,
                   const void *data, uint32_t data_len, int timeout_ms,
                   struct msgr_frame **reply_out);
void msgr_frame_free(struct msgr_frame *f);

/* Parse "host:port" / "unix:/path" into a sockaddr.  0 or -EINVAL. */
struct sockaddr_storage;
int msgr_parse_addr(const char *addr, struct sockaddr_storage *ss,
                    unsigned *sslen);

#endif
