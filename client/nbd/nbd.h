/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blk-nbd's private header, sectioned by file.
 *   main.c    options, config, daemonizing, signals; builds the server
 *   server.c  listeners, accept, the fixed newstyle handshake and options
 *   conn.c    the transmission phase: requests, libblk calls, replies
 *   export.c  pools (ioctx) and exports (one shared open image per name)
 *   tls.c     OpenSSL contexts (x509 directory, PSK file) for STARTTLS
 * Threads: two event loops.  blk-nbd's own loop (main.c) runs the
 * listeners, the handshake and option phase of every connection, the
 * exports (open, probe, list, close: synchronous libblk calls), and the
 * transmission phase of TLS connections.  libblk's library thread runs
 * the transmission phase of plain TCP and unix connections: after
 * NBD_OPT_GO / EXPORT_NAME the socket and any bytes already buffered are
 * handed over (blk_cluster_call), a bufferevent on libblk's event base
 * (blk_cluster_event_base) reads the requests, the aio calls take libblk's
 * direct path and the callbacks reply in place: no thread switch per
 * request.  Such a connection is "remote" (c->remote) and owned by the
 * library thread from the handover on; it comes back to blk-nbd's loop
 * only once, to be freed (its export reference is dropped there).
 * Messages to blk-nbd's loop go through the server's inbox: a wait-free
 * queue (liburcu wfcqueue) plus an eventfd, carrying completed requests of
 * TLS connections (pushed by libblk callbacks) and freed remote
 * connections.  So no state needs a lock: export state and reference
 * counts, srv->conns and srv->nconns belong to blk-nbd's loop; a
 * connection (its refs, requests, reply buffers) belongs to the loop that
 * serves it; each loop has its own cache of request buffers.  e->stale is
 * the one field both write (atomic).
 */
#ifndef BLK_CLIENT_NBD_NBD_H
#define BLK_CLIENT_NBD_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

#include "blk/libblk.h"
#include "client/nbd/proto.h"

struct event_base;
struct event;
struct bufferevent;
struct evconnlistener;
typedef struct ssl_ctx_st SSL_CTX;

enum nbd_tls_mode { NBD_TLS_OFF = 0, NBD_TLS_ON, NBD_TLS_REQUIRE };
/* How structured READ replies find holes: by scanning the data read for
 * zero runs (no extra cluster op), from the image's allocation map (a
 * block status beside each large read), or not at all. */
enum nbd_read_holes { NBD_HOLES_SCAN = 0, NBD_HOLES_MAP, NBD_HOLES_OFF };

/* Everything main.c parsed; strings borrowed from argv for the process. */
struct nbd_config {
  const char *conf_path;      /* blk.conf for blk_cluster_conf_read */
  const char *client_id;      /* optional: conf "name" */
  const char *keyring;        /* optional: conf "keyring" (borrowed from argv) */
  const char *key_file;       /* optional: conf "key_file" (a file holding the bare key) */
  const char *listen[8];      /* HOST:PORT, TCP */
  size_t nlisten;
  const char *socket_path;    /* unix socket, or NULL */
  int socket_mode;            /* chmod of the socket, -1 = umask default */
  bool read_only;
  const char **images;        /* exported POOL/IMAGE[@SNAP]; none = any */
  size_t nimages;
  const char **pools;         /* pools listed by NBD_OPT_LIST when nimages == 0 */
  size_t npools;
  enum nbd_tls_mode tls;
  const char *tls_certs;      /* dir with ca-cert.pem server-cert.pem server-key.pem */
  const char *tls_psk;        /* PSK file: "identity:hexkey" lines */
  bool tls_verify_peer;
  unsigned max_inflight;      /* per connection */
  enum nbd_read_holes read_holes;
  unsigned lock_wait_s;       /* image_lock_timeout override, 0 = config's */
  bool own_io_thread;         /* --io-thread own: transmission stays on
                               * blk-nbd's loop (no handover) */
  const char *ready_file;     /* written once listening (tests, blkctl map) */
};

struct nbd_pool {
  struct nbd_pool *next;
  char *name;
  blk_ioctx *ioctx;
};

/* One open image shared by every connection that selected it (multi-conn).
 * refs: connections using it (blk-nbd's loop only; a remote connection's
 * reference is dropped there when it is freed); closed at the last put.
 * name, img, read_only do not change while a reference is held. */
struct nbd_export {
  struct nbd_export *next;
  struct nbd_server *srv;
  char *name;           /* POOL/IMAGE[@SNAP] */
  blk_image *img;
  uint64_t size;        /* at open (logs); requests use blk_image_size */
  bool read_only;
  bool stale;           /* lock handed over: new connections open afresh
                         * (atomic: set by either loop) */
  int refs;
  /* asynchronous open (img == NULL while opening): blk_image_open runs on
   * a helper thread so that waiting for the exclusive lock never blocks
   * the loop; the thread writes open_fd when done, the loop joins it and
   * answers the waiting connections (each holds a ref on the export and
   * one on itself) */
  bool opening;
  pthread_t thread;
  int open_fd;          /* eventfd, -1 when not opening */
  struct event *open_ev;
  blk_ioctx *io;        /* borrowed from srv->pools */
  char image[256], snap[256];
  int open_r;           /* written by the thread before open_fd */
  char open_err[512];
  struct nbd_conn *waiters; /* linked by wait_next */
};

struct nbd_server {
  struct event_base *base;
  const struct nbd_config *cfg;
  blk_cluster *cluster;
  SSL_CTX *tls_ctx;
  struct nbd_pool *pools;
  struct nbd_export *exports;
  struct evconnlistener *listeners[9];
  size_t nlisteners;
  struct nbd_conn *conns;     /* doubly linked, open local connections */
  unsigned nconns;            /* local open + remote not yet freed */
  bool stopping;
  /* the inbox: requests of local connections completed on libblk's thread
   * and freed remote connections (multi-producer, blk-nbd's loop consumes) */
  struct cds_wfcq_head cq_head;
  struct cds_wfcq_tail cq_tail;
  int cq_fd;                  /* eventfd */
  struct event *cq_ev;
  uint64_t next_conn_id;
  /* free small requests: [0] blk-nbd's loop, [1] libblk's thread */
  struct nbd_req_cache {
    struct nbd_req *head;
    unsigned n;
  } req_cache[2];
  /* libblk's thread only: remote connections with an open socket */
  struct event_base *lbase;   /* blk_cluster_event_base, NULL: no handover */
  struct nbd_conn *rconns;
  bool rstopping;             /* stop seen there: close, adopt no more */
};

/* An inbox entry.  The producer stores kind with release order just
 * before the enqueue, the consumer loads it with acquire order. */
enum nbd_msg_kind { NBD_MSG_REQ, NBD_MSG_CONN_FREE };
struct nbd_msg {
  struct cds_wfcq_node node;
  enum nbd_msg_kind kind;
};

enum nbd_phase { NBD_PH_FLAGS, NBD_PH_OPTIONS, NBD_PH_TRANSMISSION };

/* A client connection.  refs: 1 for the socket while open + 1 per request
 * in flight (changed only by the loop serving it).  Freed when the socket
 * is closed and the last request has completed, so a late libblk
 * completion never finds a freed connection. */
struct nbd_conn {
  struct nbd_conn *prev, *next;
  struct nbd_server *srv;
  struct event_base *base;   /* the loop serving it (srv->base or srv->lbase) */
  struct bufferevent *bev;   /* NULL once closed (and during the handover) */
  bool listed;               /* in srv->conns / srv->rconns (socket open) */
  bool remote;               /* served on libblk's thread (transmission) */
  int fd;                    /* during the handover: the socket */
  struct evbuffer *pend_in, *pend_out; /* during the handover: buffered bytes */
  bool parsing;              /* inside nbd_conn_transmission_input */
  struct nbd_msg free_msg;   /* remote: "free me" to blk-nbd's loop */
  uint64_t id;
  char peer[80];
  int refs;
  enum nbd_phase phase;
  uint32_t cflags;           /* client handshake flags */
  bool tls;                  /* TLS is up */
  bool structured;           /* structured replies negotiated */
  bool meta_alloc;           /* base:allocation selected ... */
  char *meta_export;         /* ... for this export name */
  uint64_t skip;             /* input bytes still to discard */
  bool closing;              /* close once output is flushed */
  struct event *flush_timer; /* polls TLS's lower buffer while closing */
  unsigned flush_polls;
  bool disc;                 /* NBD_CMD_DISC seen: read nothing more */
  /* NBD_OPT_GO / EXPORT_NAME waiting for an asynchronous open: input is
   * left unparsed until nbd_conn_open_done */
  bool opening;
  struct nbd_conn *wait_next;
  uint32_t go_opt;
  bool go_want_name, go_want_desc;
  char *go_name;             /* owned while opening */
  /* transmission */
  struct nbd_export *exp;
  struct nbd_session sess;
  unsigned inflight;
};

/* A request in flight (transmission phase). */
struct nbd_req {
  struct nbd_msg msg;        /* local connections: the completion message */
  struct nbd_conn *conn;     /* holds a ref */
  struct nbd_request r;
  uint8_t *buf;              /* READ data / WRITE payload, owned */
  int64_t result;            /* set on libblk's thread */
  int pending;               /* sub-operations left (atomic) */
  bool want_holes;           /* a block status runs beside the read */
  int bs_result;
  struct nbd_extent *ext;    /* block status result, owned */
  size_t next;
  /* small requests (len <= NBD_REQ_SMALL) use small_buf and are recycled
   * through the serving loop's srv->req_cache instead of two mallocs and
   * frees per request */
  bool small;
  struct nbd_req *cache_next;
  uint8_t small_buf[];
};
#define NBD_REQ_SMALL 4096u
#define NBD_REQ_CACHE 256u

/* server.c */
/* Build the server on base (listeners, TLS, completion queue) from cfg
 * and a connected cluster (borrowed; both outlive the server).  0 or
 * -errno with a message in err. */
int nbd_server_init(struct nbd_server *srv, struct event_base *base,
                    const struct nbd_config *cfg, blk_cluster *cluster, char *err,
                    size_t errlen);
/* Stop accepting; connections finish their requests and close; when the
 * last one is gone the loop is broken. */
void nbd_server_stop(struct nbd_server *srv);
/* Free what init built (after the loop ended). */
void nbd_server_free(struct nbd_server *srv);
/* The loop serving c: drop one reference of c (frees it at zero; a
 * remote connection is sent to blk-nbd's loop to be freed). */
void nbd_conn_put(struct nbd_conn *c);
/* blk-nbd's loop: free a remote connection that came back (its export
 * reference is dropped here).  Ends the loop when stopping and last. */
void nbd_conn_free_remote(struct nbd_conn *c);
/* blk-nbd's loop: transmission has started on c: serve it here (TLS, or
 * no libblk loop) or hand it to libblk's thread. */
void nbd_conn_begin(struct nbd_conn *c);
/* Close the socket now (idempotent); requests in flight keep the struct. */
void nbd_conn_close(struct nbd_conn *c);
/* Close once the output buffer is written. */
void nbd_conn_close_after_flush(struct nbd_conn *c);
/* Loop thread: the asynchronous open c waited for has finished: e holds a
 * new reference for c (NULL when r < 0, err then says why).  Answers the
 * pending option (or closes) and drops the connection reference the
 * waiter held. */
void nbd_conn_open_done(struct nbd_conn *c, struct nbd_export *e, int r, const char *err);

/* conn.c */
/* Parse and run the requests in c's input (transmission phase). */
void nbd_conn_transmission_input(struct nbd_conn *c);
/* Drain the inbox (runs on blk-nbd's loop when the eventfd fires, and at
 * teardown). */
void nbd_conn_completions(struct nbd_server *srv);
/* Free the cache of recycled small requests (server teardown). */
void nbd_req_cache_free(struct nbd_server *srv);
/* Output buffer dropped below the high mark: resume reading if paused. */
void nbd_conn_output_drained(struct nbd_conn *c);

/* export.c */
/* The ioctx of a pool, opened on first use (owned by srv).  NULL + errno. */
blk_ioctx *nbd_pool_ioctx(struct nbd_server *srv, const char *pool);
/* May this server export name at all (configured list)?  */
bool nbd_export_allowed(const struct nbd_server *srv, const char *name);
/* Find or open the export called name; *out holds a new reference.
 * 0 or -errno (-ENOENT no such image, -EINVAL bad name, -EACCES not
 * exported) with a message in err. */
int nbd_export_get(struct nbd_server *srv, const char *name, struct nbd_export **out,
                   char *err, size_t errlen);
/* As nbd_export_get, but never waits on the loop: returns 0 with *out
 * (export already open), 1 when c was queued on an open running on a
 * helper thread (nbd_conn_open_done(c, ...) follows on the loop; c got a
 * reference for it), or -errno with a message in err. */
int nbd_export_get_async(struct nbd_server *srv, const char *name, struct nbd_conn *c,
                         struct nbd_export **out, char *err, size_t errlen);
/* Wait for the helper threads of opens still running and answer their
 * waiters (server teardown, loop no longer running). */
void nbd_export_finish_opens(struct nbd_server *srv);
/* Drop a reference; the image is closed at the last. */
void nbd_export_put(struct nbd_export *e);
/* Size and read-only-ness of an export for NBD_OPT_INFO without taking
 * a reference: an open export answers, else the image is opened read-only
 * (no lock) and closed again.  0 or -errno as nbd_export_get. */
int nbd_export_probe(struct nbd_server *srv, const char *name, uint64_t *size, bool *ro,
                     char *err, size_t errlen);
/* Transmission flags for an export / for a read-only or writable one. */
uint16_t nbd_export_tflags(const struct nbd_export *e);
uint16_t nbd_tflags(bool read_only);
/* Names this server lists (NBD_OPT_LIST): *names (free with
 * blk_image_list_free-like nbd_names_free) and *n.  0 or -errno. */
int nbd_export_list(struct nbd_server *srv, char ***names, size_t *n);
void nbd_names_free(char **names, size_t n);

/* tls.c */
/* Build the server SSL_CTX from cfg (x509 dir and/or PSK file).  NULL with
 * a message in err. Free with nbd_tls_free. */
SSL_CTX *nbd_tls_new(const struct nbd_config *cfg, char *err, size_t errlen);
void nbd_tls_free(SSL_CTX *ctx);
/* Wrap an open bufferevent in a server-side TLS filter (takes ownership of
 * under, freed with the result).  NULL on failure (under is then freed). */
struct bufferevent *nbd_tls_wrap(SSL_CTX *ctx, struct event_base *base,
                                 struct bufferevent *under);

#endif
