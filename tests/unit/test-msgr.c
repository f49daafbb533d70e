/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Messenger tests over real sockets on 127.0.0.1 and unix sockets, in one
 * process and one event loop: echo calls, many calls in flight, large data,
 * timeouts, refused connections, reconnect after the server returns, and
 * hostile input (bad banner, corrupt header, oversized lengths, bad body
 * crc) closing the connection without harm.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/frame.h"
#include "common/msgr.h"

enum { T_ECHO = 1, T_SILENT = 2, T_CLOSE = 3 };

struct srv {
  struct event_base *base;
  msgr *m;
  char addr[128];
  int frames, closes;
};

static void srv_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  struct srv *s = ctx;
  s->frames++;
  if (f->type == T_ECHO)
    msgr_send(c, T_ECHO, FRAME_F_REPLY, f->tid, f->payload, f->payload_len,
              f->data, f->data_len);
  else if (f->type == T_CLOSE)
    msgr_conn_close(c);
}

static void srv_close(void *ctx, msgr_conn *c, int err)
{
  struct srv *s = ctx;
  s->closes++;
}

static const struct frame_limits lim = { 1 << 20, 16 << 20 };

static void srv_start(struct srv *s, struct event_base *base, const char *addr)
{
  static const struct msgr_ops ops = { .on_frame = srv_frame, .on_close = srv_close };
  s->base = base;
  s->m = msgr_new(base, &lim, &ops, s);
  assert_non_null(s->m);
  assert_int_equal(msgr_listen(s->m, addr), 0);
  assert_int_equal(msgr_listen_addr(s->m, 0, s->addr, sizeof s->addr), 0);
  if (strncmp(addr, "unix:", 5) == 0)
    snprintf(s->addr, sizeof s->addr, "%s", addr);
}

struct result {
  int done, err;
  uint32_t len;
  uint32_t crc;
};

static void on_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct result *r = arg;
  r->done++;
  r->err = err;
  if (f) {
    r->len = f->data_len;
    r->crc = crc32c(0, f->data, f->data_len);
  }
}

static void run_until(struct event_base *base, int *flag, int target)
{
  for (int i = 0; i < 200000 && *flag < target; i++)
    event_base_loop(base, EVLOOP_ONCE);
  assert_true(*flag >= target);
}

static void echo_on(const char *listen)
{
  struct event_base *base = event_base_new();
  struct srv s = { 0 };
  srv_start(&s, base, listen);
  msgr *cm = msgr_new(base, &lim, NULL, NULL);
  msgr_conn *c = msgr_connect(cm, s.addr);
  assert_non_null(c);

  /* one call, then 500 in flight, then a large one */
  char small[100];
  memset(small, 'x', sizeof small);
  struct result r = { 0 };
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, small, sizeof small, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.len, sizeof small);

  static struct result many[500];
  int total = 0;
  for (int i = 0; i < 500; i++) {
    memset(&many[i], 0, sizeof many[i]);
    assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, small, (uint32_t)(i % 100), 5000,
                                  on_reply, &many[i]), 0);
  }
  for (int i = 0; i < 500; i++) {
    run_until(base, &many[i].done, 1);
    assert_int_equal(many[i].err, 0);
    assert_int_equal(many[i].len, (uint32_t)(i % 100));
    total += many[i].done;
  }
  assert_int_equal(total, 500);

  size_t big = 8u << 20;
  uint8_t *buf = malloc(big);
  for (size_t i = 0; i < big; i++)
    buf[i] = (uint8_t)(i * 131 + 7);
  memset(&r, 0, sizeof r);
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, buf, (uint32_t)big, 10000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.len, big);
  assert_int_equal(r.crc, crc32c(0, buf, big));
  free(buf);

  /* sync form */
  struct msgr_frame *rep = NULL;
  assert_int_equal(msgr_call_sync(c, T_ECHO, NULL, "hi", 2, 5000, &rep), 0);
  assert_int_equal(rep->data_len, 2);
  assert_memory_equal(rep->data, "hi", 2);
  msgr_frame_free(rep);

  msgr_conn_put(c);
  msgr_free(cm);
  msgr_free(s.m);
  event_base_free(base);
}

static void test_echo_tcp(void **st) { (void)st; echo_on("127.0.0.1:0"); }
static void test_echo_unix(void **st)
{
  (void)st;
  char path[64];
  snprintf(path, sizeof path, "unix:/tmp/blk-test-msgr-%d.sock", (int)getpid());
  echo_on(path);
}

static void test_timeout_and_reset(void **st)
{
  (void)st;
  struct event_base *base = event_base_new();
  struct srv s = { 0 };
  srv_start(&s, base, "127.0.0.1:0");
  msgr *cm = msgr_new(base, &lim, NULL, NULL);
  msgr_conn *c = msgr_connect(cm, s.addr);

  struct result r = { 0 };
  assert_int_equal(msgr_call_pb(c, T_SILENT, NULL, NULL, 0, 100, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, -ETIMEDOUT);

  /* the server closes: the pending call fails with -ECONNRESET */
  struct result r2 = { 0 }, r3 = { 0 };
  assert_int_equal(msgr_call_pb(c, T_SILENT, NULL, NULL, 0, 0, on_reply, &r2), 0);
  assert_int_equal(msgr_call_pb(c, T_CLOSE, NULL, NULL, 0, 0, on_reply, &r3), 0);
  run_until(base, &r3.done, 1);
  run_until(base, &r2.done, 1);
  assert_int_equal(r2.err, -ECONNRESET);
  assert_int_equal(r3.err, -ECONNRESET);

  /* the connection comes back by itself on the next call */
  struct result r4 = { 0 };
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, "a", 1, 5000, on_reply, &r4), 0);
  run_until(base, &r4.done, 1);
  assert_int_equal(r4.err, 0);

  msgr_conn_put(c);
  msgr_free(cm);
  msgr_free(s.m);
  event_base_free(base);
}

static void test_refused_then_server_appears(void **st)
{
  (void)st;
  struct event_base *base = event_base_new();
  char path[64], addr[80];
  snprintf(path, sizeof path, "/tmp/blk-test-msgr-late-%d.sock", (int)getpid());
  snprintf(addr, sizeof addr, "unix:%s", path);
  unlink(path);
  msgr *cm = msgr_new(base, &lim, NULL, NULL);
  msgr_conn *c = msgr_connect(cm, addr);
  struct result r = { 0 };
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, "a", 1, 0, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, -ECONNRESET);

  struct srv s = { 0 };
  srv_start(&s, base, addr);
  struct result r2 = { 0 };
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, "b", 1, 5000, on_reply, &r2), 0);
  run_until(base, &r2.done, 1);
  assert_int_equal(r2.err, 0);
  assert_null(msgr_connect(cm, "nonsense"));
  assert_null(msgr_connect(cm, "1.2.3.4:99999"));

  msgr_conn_put(c);
  msgr_free(cm);
  msgr_free(s.m);
  event_base_free(base);
}

/* Raw hostile bytes: each must close the connection, and the server must
 * keep serving others. */
static void send_raw_expect_close(struct srv *s, const void *bytes, size_t n)
{
  struct sockaddr_storage ss;
  unsigned sl;
  assert_int_equal(msgr_parse_addr(s->addr, &ss, &sl), 0);
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
  assert_int_equal(write(fd, bytes, n), (ssize_t)n);
  int before = s->closes;
  run_until(s->base, &s->closes, before + 1);
  char b[64];
  /* we may first read the server's banner; then EOF */
  ssize_t got;
  while ((got = read(fd, b, sizeof b)) > 0)
    ;
  assert_int_equal(got, 0);
  close(fd);
}

static void test_hostile_input(void **st)
{
  (void)st;
  struct event_base *base = event_base_new();
  struct srv s = { 0 };
  srv_start(&s, base, "127.0.0.1:0");

  send_raw_expect_close(&s, "GET / HTTP/1.0\r\n\r\n", 18);

  uint8_t buf[FRAME_BANNER_LEN + FRAME_HDR_LEN + 8];
  memcpy(buf, FRAME_BANNER, FRAME_BANNER_LEN);
  struct frame_hdr h = { .type = T_ECHO, .tid = 1, .payload_len = 0, .data_len = 8,
                         .data_crc = crc32c(0, "12345678", 8) };
  frame_hdr_encode(&h, buf + FRAME_BANNER_LEN);
  memcpy(buf + FRAME_BANNER_LEN + FRAME_HDR_LEN, "12345678", 8);

  uint8_t bad[sizeof buf];
  memcpy(bad, buf, sizeof buf);
  bad[FRAME_BANNER_LEN + 17] ^= 1;               /* header crc mismatch */
  send_raw_expect_close(&s, bad, sizeof bad);

  memcpy(bad, buf, sizeof buf);
  bad[sizeof bad - 1] ^= 0x80;                   /* data crc mismatch */
  send_raw_expect_close(&s, bad, sizeof bad);

  struct frame_hdr huge = h;
  huge.data_len = 0xFFFFFFF0u;                   /* above the limit */
  memcpy(bad, buf, sizeof buf);
  frame_hdr_encode(&huge, bad + FRAME_BANNER_LEN);
  send_raw_expect_close(&s, bad, FRAME_BANNER_LEN + FRAME_HDR_LEN);

  /* a good frame still works on a fresh connection */
  msgr *cm = msgr_new(base, &lim, NULL, NULL);
  msgr_conn *c = msgr_connect(cm, s.addr);
  struct result r = { 0 };
  assert_int_equal(msgr_call_pb(c, T_ECHO, NULL, "ok", 2, 5000, on_reply, &r), 0);
  run_until(base, &r.done, 1);
  assert_int_equal(r.err, 0);
  msgr_conn_put(c);
  msgr_free(cm);
  msgr_free(s.m);
  event_base_free(base);
}

static void test_frame_decode(void **st)
{
  (void)st;
  uint8_t b[FRAME_HDR_LEN];
  struct frame_hdr h = { .flags = FRAME_F_REPLY, .type = 7, .tid = 0x1122334455667788ull,
                         .payload_len = 10, .data_len = 20, .payload_crc = 1, .data_crc = 2 }, o;
  frame_hdr_encode(&h, b);
  const char *why;
  assert_int_equal(frame_hdr_decode(b, &lim, &o, &why), 0);
  assert_true(o.tid == h.tid && o.type == 7 && o.payload_len == 10 && o.data_len == 20);
  struct frame_limits tiny = { 5, 100 };
  assert_int_equal(frame_hdr_decode(b, &tiny, &o, &why), -EMSGSIZE);
  assert_non_null(strstr(why, "payload"));
  b[0] ^= 1;
  assert_int_equal(frame_hdr_decode(b, &lim, &o, &why), -EPROTO);
  struct sockaddr_storage ss;
  unsigned sl;
  assert_int_equal(msgr_parse_addr("[::1]:80", &ss, &sl), 0);
  assert_int_equal(msgr_parse_addr("127.0.0.1:", &ss, &sl), -EINVAL);
  assert_int_equal(msgr_parse_addr("host:1", &ss, &sl), -EINVAL);
  assert_int_equal(msgr_parse_addr("unix:", &ss, &sl), -EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_frame_decode),
    cmocka_unit_test(test_echo_tcp),
    cmocka_unit_test(test_echo_unix),
    cmocka_unit_test(test_timeout_and_reset),
    cmocka_unit_test(test_refused_then_server_appears),
    cmocka_unit_test(test_hostile_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
