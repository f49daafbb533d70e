/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Messenger wire protection over real sockets (127.0.0.1), one process:
 * the real auth exchange (common/auth.c) runs over MSG_AUTH_* frames and
 * ends with msgr_conn_set_protection() on both ends.  Then:
 *  - normal traffic (thousands of calls of mixed sizes, 8 MiB frames)
 *    arrives intact in modes none, cephx and secure;
 *  - a tampering proxy thread between client and server flips one bit of
 *    a chosen frame (fixing the crcs as an active attacker would),
 *    duplicates a frame, or swaps two frames: refused (connection closed
 *    with -EBADMSG) in cephx and secure mode, while in mode none the same
 *    tampering goes through unnoticed (so the test can tell);
 *  - the auth gate refuses frames before authentication, an unprotected
 *    frame after protection started is refused, and a reconnect starts a
 *    new unprotected connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/crc32c.h"
#include "common/frame.h"
#include "common/keyring.h"
#include "common/log.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/util.h"

enum { T_ECHO = 1000 };

static const struct frame_limits lim = { 1 << 20, 16 << 20 };

/* ---- server --------------------------------------------------------------- */

struct srv {
  struct event_base *base;
  msgr *m;
  char addr[128];
  enum auth_mode mode;
  struct keyring *db;
  struct auth_rotating osd;
  struct auth_params p;
  int echoes, closes, last_err, authed;
  struct auth_server *live[64];   /* msgr_free does not call on_close */
};

static void srv_track(struct srv *s, struct auth_server *as, struct auth_server *with)
{
  for (int i = 0; i < 64; i++)
    if (s->live[i] == as) {
      s->live[i] = with;
      return;
    }
}

static void srv_accept(void *ctx, msgr_conn *c)
{
  struct srv *s = ctx;
  struct auth_server *as = malloc(sizeof *as);
  auth_server_init(as, s->mode);
  msgr_conn_set_priv(c, as);
  srv_track(s, NULL, as);
}

static void srv_close(void *ctx, msgr_conn *c, int err)
{
  struct srv *s = ctx;
  s->closes++;
  s->last_err = err;
  struct auth_server *as = msgr_conn_priv(c);
  if (as) {
    srv_track(s, as, NULL);
    auth_server_clear(as);
    free(as);
    msgr_conn_set_priv(c, NULL);
  }
}

static void srv_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  struct srv *s = ctx;
  struct auth_server *as = msgr_conn_priv(c);
  uint8_t *out = NULL;
  size_t ol = 0;
  char err[256];
  int r;
  switch (f->type) {
  case MSG_AUTH_HELLO:
    r = auth_server_challenge(as, f->payload, f->payload_len, util_wall_ms(), &out, &ol, err,
                              sizeof err);
    if (out)
      msgr_send(c, MSG_AUTH_HELLO, FRAME_F_REPLY, f->tid, out, (uint32_t)ol, NULL, 0);
    free(out);
    break;         /* on refusal stay open: the gate refuses all but auth */
  case MSG_AUTH_PROOF:
    r = auth_server_verify(as, f->payload, f->payload_len, s->db, &s->osd, &s->p, util_wall_ms(),
                           &out, &ol, err, sizeof err);
    if (out)
      msgr_send(c, MSG_AUTH_PROOF, FRAME_F_REPLY, f->tid, out, (uint32_t)ol, NULL, 0);
    free(out);
    if (r < 0)
      break;       /* refused: the reply says so; the gate keeps it closed */
    /* the reply above is queued unprotected; everything after is not */
    assert_int_equal(msgr_conn_set_protection(c, as->mode, as->conn_key, false), 0);
    assert_int_equal(msgr_conn_set_protection(c, as->mode, as->conn_key, false), -EALREADY);
    s->authed++;
    break;
  case T_ECHO:
    s->echoes++;
    msgr_send(c, T_ECHO, FRAME_F_REPLY, f->tid, f->payload, f->payload_len, f->data, f->data_len);
    break;
  }
}

static uint8_t admin_key[32];

static void srv_start(struct srv *s, struct event_base *base, enum auth_mode mode)
{
  static const struct msgr_ops ops = {
    .on_frame = srv_frame, .on_accept = srv_accept, .on_close = srv_close,
  };
  memset(s, 0, sizeof *s);
  s->base = base;
  s->mode = mode;
  s->db = keyring_new();
  assert_int_equal(keyring_set_key(s->db, "client.admin", admin_key), 0);
  auth_params_default(&s->p);
  assert_int_equal(auth_rotating_init(&s->osd, util_wall_ms(), 3600000), 0);
  s->m = msgr_new(base, &lim, &ops, s);
  assert_non_null(s->m);
  msgr_set_require_auth(s->m, mode != AUTH_MODE_NONE);
  assert_int_equal(msgr_listen(s->m, "127.0.0.1:0"), 0);
  assert_int_equal(msgr_listen_addr(s->m, 0, s->addr, sizeof s->addr), 0);
}

static void srv_stop(struct srv *s)
{
  msgr_free(s->m);
  keyring_free(s->db);
  for (int i = 0; i < 64; i++)
    free(s->live[i]);
}

/* ---- client --------------------------------------------------------------- */

struct cli {
  int closes, last_err;
};

static void cli_close(void *ctx, msgr_conn *c, int err)
{
  struct cli *cl = ctx;
  cl->closes++;
  cl->last_err = err;
}

struct result {
  int done, err;
  uint32_t plen, dlen, pcrc, dcrc;
};

static void on_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct result *r = arg;
  r->done++;
  r->err = err;
  if (f) {
    r->plen = f->payload_len;
    r->dlen = f->data_len;
    r->pcrc = crc32c(0, f->payload, f->payload_len);
    r->dcrc = crc32c(0, f->data, f->data_len);
  }
}

static void run_until(struct event_base *base, int *flag, int target)
{
  for (int i = 0; i < 400000 && *flag < target; i++)
    event_base_loop(base, EVLOOP_ONCE);
  assert_true(*flag >= target);
}

struct auth_step {
  struct auth_client *ac;
  msgr_conn *c;
  bool protect;
  int done, err;
};

static void on_auth_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct auth_step *st = arg;
  char e[256];
  st->done = 1;
  st->err = err;
  if (err)
    return;
  if (f->type == MSG_AUTH_HELLO) {
    uint8_t *out;
    size_t ol;
    st->err = auth_client_proof(st->ac, f->payload, f->payload_len, &out, &ol, e, sizeof e);
    if (st->err == 0) {
      st->done = 0;
      st->err = msgr_call(st->c, MSG_AUTH_PROOF, out, (uint32_t)ol, NULL, 0, 5000,
                          on_auth_reply, st);
      free(out);
      if (st->err)
        st->done = 1;
    }
  } else {
    st->err = auth_client_finish(st->ac, f->payload, f->payload_len, e, sizeof e);
    /* the defined point: every frame after this reply is protected */
    if (st->err == 0 && st->protect)
      st->err = msgr_conn_set_protection(st->c, st->ac->mode, st->ac->conn_key, true);
  }
}

/* Authenticate c as client.admin; with protect == false, skip the final
 * msgr_conn_set_protection (a broken client). */
static int client_auth(struct event_base *base, msgr_conn *c, const uint8_t *key, bool protect)
{
  struct auth_client ac;
  auth_client_init(&ac, "client.admin", key, auth_modes_at_least(AUTH_MODE_CEPHX));
  uint8_t *hello;
  size_t hl;
  assert_int_equal(auth_client_hello(&ac, &hello, &hl), 0);
  struct auth_step st = { .ac = &ac, .c = c, .protect = protect };
  assert_int_equal(msgr_call(c, MSG_AUTH_HELLO, hello, (uint32_t)hl, NULL, 0, 5000,
                             on_auth_reply, &st), 0);
  free(hello);
  run_until(base, &st.done, 1);
  int r = st.err;
  auth_client_clear(&ac);
  return r;
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* ---- normal traffic in every mode ----------------------------------------- */

static void traffic(enum auth_mode mode)
{
  struct event_base *base = event_base_new();
  struct srv s;
  srv_start(&s, base, mode);
  struct cli cl = { 0 };
  static const struct msgr_ops cops = { .on_close = cli_close };
  msgr *cm = msgr_new(base, &lim, &cops, &cl);
  msgr_conn *c = msgr_connect(cm, s.addr);
  if (mode != AUTH_MODE_NONE) {
    assert_int_equal(client_auth(base, c, admin_key, true), 0);
    assert_int_equal(msgr_conn_protection(c), mode);
  }
  /* 3000 calls of mixed sizes, 250 in flight at a time */
  enum { N = 3000, WIN = 250 };
  static struct result res[N];
  static uint8_t buf[70000];
  fill(buf, sizeof buf, 7);
  int done = 0;
  for (int base_i = 0; base_i < N; base_i += WIN) {
    for (int i = base_i; i < base_i + WIN; i++) {
      memset(&res[i], 0, sizeof res[i]);
      uint32_t pl = (uint32_t)(i % 37), dl = (uint32_t)((i * 7919) % 65536);
      assert_int_equal(msgr_call(c, T_ECHO, buf + 1, pl, buf + 100, dl, 10000, on_reply,
                                 &res[i]), 0);
    }
    for (int i = base_i; i < base_i + WIN; i++) {
      run_until(base, &res[i].done, 1);
      uint32_t pl = (uint32_t)(i % 37), dl = (uint32_t)((i * 7919) % 65536);
      assert_int_equal(res[i].err, 0);
      assert_int_equal(res[i].plen, pl);
      assert_int_equal(res[i].dlen, dl);
      assert_int_equal(res[i].pcrc, crc32c(0, buf + 1, pl));
      assert_int_equal(res[i].dcrc, crc32c(0, buf + 100, dl));
      done++;
    }
  }
  assert_int_equal(done, N);
  /* 8 MiB frames */
  size_t big = 8u << 20;
  uint8_t *b = malloc(big);
  for (int k = 0; k < 3; k++) {
    fill(b, big, (uint32_t)k);
    struct result r = { 0 };
    assert_int_equal(msgr_call(c, T_ECHO, "big", 3, b, (uint32_t)big, 20000, on_reply, &r), 0);
    run_until(base, &r.done, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.dlen, big);
    assert_int_equal(r.dcrc, crc32c(0, b, big));
  }
  free(b);
  assert_int_equal(s.closes, 0);
  assert_int_equal(cl.closes, 0);
  assert_int_equal(s.echoes, N + 3);
  msgr_conn_put(c);
  msgr_free(cm);
  srv_stop(&s);
  event_base_free(base);
}

static void test_traffic_none(void **st) { (void)st; traffic(AUTH_MODE_NONE); }
static void test_traffic_cephx(void **st) { (void)st; traffic(AUTH_MODE_CEPHX); }
static void test_traffic_secure(void **st) { (void)st; traffic(AUTH_MODE_SECURE); }

/* ---- the tampering proxy -------------------------------------------------- */

enum action { A_NONE, A_FLIP_PAYLOAD, A_FLIP_DATA, A_FLIP_TRAILER, A_DUP, A_SWAP };

struct proxy {
  int lfd;
  char addr[64];
  const char *target;
  int dir;                        /* 0: client -> server, 1: server -> client */
  int index;                      /* which frame of that direction (0-based) */
  enum action action;
  pthread_t th;
  int applied;
};

struct pbuf {
  uint8_t *b;
  size_t len, cap;
  bool banner;
  int frames;
  uint8_t *held;                  /* A_SWAP: frame waiting for the next one */
  size_t held_len;
};

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32le(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static bool write_all(int fd, const uint8_t *b, size_t n)
{
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w <= 0)
      return false;
    b += w;
    n -= (size_t)w;
  }
  return true;
}

/* Forward the complete frames of pb to out, tampering as told. */
static bool proxy_pump(struct proxy *px, struct pbuf *pb, int dir, int out)
{
  size_t off = 0;
  if (!pb->banner) {
    if (pb->len < FRAME_BANNER_LEN)
      return true;
    if (!write_all(out, pb->b, FRAME_BANNER_LEN))
      return false;
    off = FRAME_BANNER_LEN;
    pb->banner = true;
  }
  while (pb->len - off >= FRAME_HDR_LEN) {
    uint8_t *f = pb->b + off;
    uint32_t pl = get32(f + 16), dl = get32(f + 20);
    size_t n = FRAME_HDR_LEN + (size_t)pl + dl + frame_trailer_len(f[5]);
    if (pb->len - off < n)
      break;
    bool target = dir == px->dir && pb->frames == px->index;
    pb->frames++;
    bool fix = false;
    if (target) {
      switch (px->action) {
      case A_FLIP_PAYLOAD:
        if (pl) {
          f[FRAME_HDR_LEN + pl / 2] ^= 0x04;
          fix = true;
        }
        break;
      case A_FLIP_DATA:
        if (dl) {
          f[FRAME_HDR_LEN + pl + dl / 2] ^= 0x20;
          fix = true;
        }
        break;
      case A_FLIP_TRAILER:
        if (frame_trailer_len(f[5]))
          f[n - 1] ^= 0x01;
        break;
      default:
        break;
      }
      px->applied++;
    }
    if (fix) {
      /* an active attacker fixes the crcs: only the MAC/tag can tell */
      put32le(f + 24, crc32c(0, f + FRAME_HDR_LEN, pl));
      put32le(f + 28, crc32c(0, f + FRAME_HDR_LEN + pl, dl));
      put32le(f + 36, crc32c(0, f, 36));
    }
    if (target && px->action == A_SWAP) {
      pb->held = malloc(n);
      memcpy(pb->held, f, n);
      pb->held_len = n;
    } else {
      if (!write_all(out, f, n))
        return false;
      if (target && px->action == A_DUP && !write_all(out, f, n))
        return false;
      if (pb->held && !target) {
        bool ok = write_all(out, pb->held, pb->held_len);
        free(pb->held);
        pb->held = NULL;
        if (!ok)
          return false;
      }
    }
    off += n;
  }
  memmove(pb->b, pb->b + off, pb->len - off);
  pb->len -= off;
  return true;
}

static void *proxy_main(void *arg)
{
  struct proxy *px = arg;
  int cfd = accept(px->lfd, NULL, NULL);
  if (cfd < 0)
    return NULL;
  struct sockaddr_storage ss;
  unsigned sl;
  msgr_parse_addr(px->target, &ss, &sl);
  int sfd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (connect(sfd, (struct sockaddr *)&ss, sl) < 0) {
    close(cfd);
    close(sfd);
    return NULL;
  }
  struct pbuf pb[2] = { 0 };
  int fds[2] = { cfd, sfd };      /* read side of direction d is fds[d] */
  for (;;) {
    struct pollfd p[2] = { { cfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
    if (poll(p, 2, 10000) <= 0)
      break;
    bool stop = false;
    for (int d = 0; d < 2 && !stop; d++) {
      if (!(p[d].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      struct pbuf *b = &pb[d];
      if (b->cap - b->len < 65536) {
        b->cap = b->cap ? b->cap * 2 : 1 << 20;
        b->b = realloc(b->b, b->cap);
      }
      ssize_t n = read(fds[d], b->b + b->len, b->cap - b->len);
      if (n <= 0) {
        stop = true;
        break;
      }
      b->len += (size_t)n;
      if (!proxy_pump(px, b, d, fds[1 - d]))
        stop = true;
    }
    if (stop)
      break;
  }
  close(cfd);
  close(sfd);
  for (int d = 0; d < 2; d++) {
    free(pb[d].b);
    free(pb[d].held);
  }
  return NULL;
}

static void proxy_start(struct proxy *px, const char *target, int dir, int index, enum action a)
{
  memset(px, 0, sizeof *px);
  px->target = target;
  px->dir = dir;
  px->index = index;
  px->action = a;
  struct sockaddr_storage ss;
  unsigned sl;
  assert_int_equal(msgr_parse_addr("127.0.0.1:0", &ss, &sl), 0);
  px->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_int_equal(bind(px->lfd, (struct sockaddr *)&ss, sl), 0);
  assert_int_equal(listen(px->lfd, 1), 0);
  socklen_t len = sizeof ss;
  getsockname(px->lfd, (struct sockaddr *)&ss, &len);
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  snprintf(px->addr, sizeof px->addr, "127.0.0.1:%u", ntohs(in->sin_port));
  assert_int_equal(pthread_create(&px->th, NULL, proxy_main, px), 0);
}

static void proxy_stop(struct proxy *px)
{
  pthread_join(px->th, NULL);
  close(px->lfd);
}

struct tamper_outcome {
  int ok, reset, corrupted;       /* calls: intact reply, failed, wrong bytes */
  int srv_err, cli_err;           /* close errors seen on each side */
  int srv_echoes;
};

/* Through a proxy that tampers with frame `index` of direction `dir`:
 * authenticate (if mode != none), then 20 echo calls. */
static void tamper_run(enum auth_mode mode, int dir, int index, enum action a,
                       struct tamper_outcome *out)
{
  struct event_base *base = event_base_new();
  struct srv s;
  srv_start(&s, base, mode);
  struct proxy px;
  proxy_start(&px, s.addr, dir, index, a);
  struct cli cl = { 0 };
  static const struct msgr_ops cops = { .on_close = cli_close };
  msgr *cm = msgr_new(base, &lim, &cops, &cl);
  msgr_conn *c = msgr_connect(cm, px.addr);
  if (mode != AUTH_MODE_NONE)
    assert_int_equal(client_auth(base, c, admin_key, true), 0);
  enum { N = 20 };
  struct result res[N];
  uint8_t pay[64], data[2000];
  fill(pay, sizeof pay, 1);
  fill(data, sizeof data, 2);
  for (int i = 0; i < N; i++) {
    memset(&res[i], 0, sizeof res[i]);
    assert_int_equal(msgr_call(c, T_ECHO, pay, sizeof pay, data, sizeof data, 5000, on_reply,
                               &res[i]), 0);
  }
  memset(out, 0, sizeof *out);
  for (int i = 0; i < N; i++) {
    run_until(base, &res[i].done, 1);
    if (res[i].err)
      out->reset++;
    else if (res[i].pcrc == crc32c(0, pay, sizeof pay) && res[i].dcrc == crc32c(0, data, sizeof data))
      out->ok++;
    else
      out->corrupted++;
  }
  /* let the server see the end of the connection */
  msgr_conn_close(c);
  for (int i = 0; i < 2000 && s.closes == 0; i++)
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(500);
  out->srv_err = s.last_err;
  out->cli_err = cl.last_err;
  out->srv_echoes = s.echoes;
  assert_int_equal(px.applied, 1);
  msgr_conn_put(c);
  msgr_free(cm);
  srv_stop(&s);
  proxy_stop(&px);
  event_base_free(base);
}

/* The first frames of each direction are the auth exchange (client:
 * hello, proof; server: challenge, reply) in the protected modes; index 5
 * is an echo in every mode. */
static void test_tamper_refused(void **st)
{
  (void)st;
  static const struct { int dir; enum action a; } cases[] = {
    { 0, A_FLIP_DATA }, { 0, A_FLIP_PAYLOAD }, { 0, A_FLIP_TRAILER }, { 0, A_DUP },
    { 0, A_SWAP }, { 1, A_FLIP_DATA }, { 1, A_FLIP_PAYLOAD }, { 1, A_DUP }, { 1, A_SWAP },
  };
  for (int m = AUTH_MODE_CEPHX; m <= AUTH_MODE_SECURE; m++) {
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
      struct tamper_outcome o;
      tamper_run((enum auth_mode)m, cases[k].dir, 5, cases[k].a, &o);
      /* never a corrupted reply; the first tampered frame kills the
       * connection, so at most the frames before it got answers */
      assert_int_equal(o.corrupted, 0);
      assert_true(o.reset > 0);
      assert_true(o.ok <= 4);
      if (cases[k].dir == 0)
        assert_int_equal(o.srv_err, -EBADMSG);
      else
        assert_int_equal(o.cli_err, -EBADMSG);
    }
  }
}

/* The refusal is logged with the peer's address and the reason. */
static void test_tamper_logged(void **st)
{
  (void)st;
  char path[64];
  snprintf(path, sizeof path, "/tmp/blk-test-msgr-auth-%d.log", (int)getpid());
  fflush(stderr);
  int saved = dup(2);
  FILE *f = fopen(path, "w+");
  assert_non_null(f);
  dup2(fileno(f), 2);
  log_set_level(LOG_WARN);
  struct tamper_outcome o;
  tamper_run(AUTH_MODE_CEPHX, 0, 5, A_FLIP_DATA, &o);
  log_set_level(LOG_ERR);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char buf[8192] = "";
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  unlink(path);
  assert_int_equal(o.srv_err, -EBADMSG);
  if (!strstr(buf, "closing connection from 127.0.0.1:") ||
      !strstr(buf, "failed cephx verification (tampered, replayed or reordered)"))
    fail_msg("log does not name the peer and the reason: %s", buf);
}

/* The same tampering in mode none is not detected: this is what the
 * protection buys (and shows the proxy really tampers). */
static void test_tamper_unnoticed_without_protection(void **st)
{
  (void)st;
  struct tamper_outcome o;
  tamper_run(AUTH_MODE_NONE, 0, 5, A_FLIP_DATA, &o);
  assert_int_equal(o.reset, 0);
  assert_int_equal(o.corrupted, 1);
  assert_int_equal(o.ok, 19);
  tamper_run(AUTH_MODE_NONE, 0, 5, A_DUP, &o);
  assert_int_equal(o.ok, 20);
  assert_int_equal(o.srv_echoes, 21);          /* the duplicate was executed */
  tamper_run(AUTH_MODE_NONE, 1, 5, A_FLIP_PAYLOAD, &o);
  assert_int_equal(o.corrupted, 1);
  /* and with protection but no tampering, everything passes the proxy */
  tamper_run(AUTH_MODE_SECURE, 0, 5, A_NONE, &o);
  assert_int_equal(o.ok, 20);
  assert_int_equal(o.reset, 0);
}

/* ---- gate, mismatch, reconnect ------------------------------------------------ */

static void test_gate_and_mismatch(void **st)
{
  (void)st;
  struct event_base *base = event_base_new();
  struct srv s;
  srv_start(&s, base, AUTH_MODE_CEPHX);
  struct cli cl = { 0 };
  static const struct msgr_ops cops = { .on_close = cli_close };
  msgr *cm = msgr_new(base, &lim, &cops, &cl);
  msgr_conn *c = msgr_connect(cm, s.addr);

  /* no auth: the first non-auth frame is refused */
  struct result r = { 0 };
  assert_int_equal(msgr_call(c, T_ECHO, "x", 1, NULL, 0, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, -ECONNRESET);
  run_until(base, &s.closes, 1);
  assert_int_equal(s.last_err, -EACCES);
  assert_int_equal(s.echoes, 0);

  /* wrong key: refused by the monitor */
  uint8_t wrong[32];
  keyring_generate_key(wrong);
  assert_int_equal(client_auth(base, c, wrong, true), -EACCES);
  /* that connection is spent: a second hello on it gets no answer */
  assert_int_equal(client_auth(base, c, admin_key, true), -ETIMEDOUT);
  msgr_conn_close(c);

  /* authenticated, but the client does not switch on protection: its next
   * (unsigned) frame is refused */
  int closes = s.closes;
  assert_int_equal(client_auth(base, c, admin_key, false), 0);
  assert_int_equal(msgr_conn_protection(c), AUTH_MODE_NONE);
  memset(&r, 0, sizeof r);
  assert_int_equal(msgr_call(c, T_ECHO, "x", 1, NULL, 0, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, -ECONNRESET);
  run_until(base, &s.closes, closes + 1);
  assert_int_equal(s.last_err, -EPROTO);

  /* a proper client works on the reconnected connection... */
  assert_int_equal(client_auth(base, c, admin_key, true), 0);
  assert_int_equal(msgr_conn_protection(c), AUTH_MODE_CEPHX);
  memset(&r, 0, sizeof r);
  assert_int_equal(msgr_call(c, T_ECHO, "y", 1, NULL, 0, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, 0);
  /* ...refuses bad arguments... */
  uint8_t k[32] = { 0 };
  assert_int_equal(msgr_conn_set_protection(c, AUTH_MODE_SECURE, k, true), -EALREADY);
  assert_int_equal(msgr_send(c, T_ECHO, FRAME_F_SIGNED, 9, NULL, 0, NULL, 0), -EINVAL);
  /* ...and after a reconnect starts unprotected again */
  msgr_conn_close(c);
  assert_int_equal(msgr_conn_protection(c), AUTH_MODE_NONE);
  assert_int_equal(msgr_conn_set_protection(c, AUTH_MODE_CEPHX, k, true), -ENOTCONN);
  assert_int_equal(client_auth(base, c, admin_key, true), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(msgr_call(c, T_ECHO, "z", 1, NULL, 0, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, 0);
  assert_int_equal(s.authed, 3);

  msgr_conn_put(c);
  msgr_free(cm);
  srv_stop(&s);
  event_base_free(base);
}

int main(void)
{
  log_init("test-msgr-auth", LOG_ERR);
  signal(SIGPIPE, SIG_IGN);       /* peers and the proxy close under us */
  keyring_generate_key(admin_key);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_traffic_none),
    cmocka_unit_test(test_traffic_cephx),
    cmocka_unit_test(test_traffic_secure),
    cmocka_unit_test(test_tamper_refused),
    cmocka_unit_test(test_tamper_logged),
    cmocka_unit_test(test_tamper_unnoticed_without_protection),
    cmocka_unit_test(test_gate_and_mismatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
