/* SPDX-License-Identifier: Apache-2.0 */
/*
 * msgr-auth-bench: the cost of wire protection.  One process, two
 * threads, each with its own event loop and messenger, over 127.0.0.1:
 * the client keeps QD requests in flight (msgr_call) against a server
 * that answers at once; for each of the modes none, cephx and secure
 * (after the real auth exchange) it measures throughput, latency
 * percentiles and process CPU per operation.  Modes are interleaved
 * over several rounds, in a fresh random order each round (so no mode
 * always runs right after another), and the median round is reported
 * (ops/s and CPU per op each as their own median), because these
 * machines are shared and noisy.  Built, not run by CTest.
 *
 *   msgr-auth-bench [-q QD] [-s SIZE] [-t SECONDS] [-r ROUNDS] [-o write|read]
 *
 * write: the request carries SIZE bytes of data, the reply none (a 4 KiB
 * write); read: the reverse.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/keyring.h"
#include "common/log.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/util.h"

enum { T_WRITE = 1000, T_READ = 1001 };

static const struct frame_limits lim = { 1 << 20, 64 << 20 };
static uint8_t admin_key[32];
static uint32_t op_size = 4096;
static uint8_t *databuf;

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- server thread ---------------------------------------------------- */

struct srv {
  enum auth_mode mode;
  struct keyring *db;
  struct auth_rotating osd;
  struct auth_params p;
  char addr[64];
  atomic_int ready, stop;
  struct auth_server *live[16];
};

static void srv_accept(void *ctx, msgr_conn *c)
{
  struct srv *s = ctx;
  struct auth_server *as = calloc(1, sizeof *as);
  auth_server_init(as, s->mode);
  msgr_conn_set_priv(c, as);
  for (int i = 0; i < 16; i++)
    if (!s->live[i]) {
      s->live[i] = as;
      break;
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
    auth_server_challenge(as, f->payload, f->payload_len, util_wall_ms(), &out, &ol, err, sizeof err);
    if (out)
      msgr_send(c, MSG_AUTH_HELLO, FRAME_F_REPLY, f->tid, out, (uint32_t)ol, NULL, 0);
    free(out);
    break;
  case MSG_AUTH_PROOF:
    r = auth_server_verify(as, f->payload, f->payload_len, s->db, &s->osd, &s->p,
                           util_wall_ms(), &out, &ol, err, sizeof err);
    if (out)
      msgr_send(c, MSG_AUTH_PROOF, FRAME_F_REPLY, f->tid, out, (uint32_t)ol, NULL, 0);
    free(out);
    if (r == 0)
      msgr_conn_set_protection(c, as->mode, as->conn_key, false);
    else
      fprintf(stderr, "server: %s\n", err);
    break;
  case T_WRITE:
    msgr_send(c, T_WRITE, FRAME_F_REPLY, f->tid, "ok", 2, NULL, 0);
    break;
  case T_READ:
    msgr_send(c, T_READ, FRAME_F_REPLY, f->tid, "ok", 2, databuf, op_size);
    break;
  }
}

static void tick(evutil_socket_t fd, short what, void *arg) { (void)fd; (void)what; (void)arg; }

static void *srv_main(void *arg)
{
  struct srv *s = arg;
  struct event_base *base = event_base_new();
  static const struct msgr_ops ops = { .on_frame = srv_frame, .on_accept = srv_accept };
  msgr *m = msgr_new(base, &lim, &ops, s);
  msgr_set_require_auth(m, s->mode != AUTH_MODE_NONE);
  if (msgr_listen(m, "127.0.0.1:0") < 0 || msgr_listen_addr(m, 0, s->addr, sizeof s->addr) < 0) {
    fprintf(stderr, "listen failed\n");
    exit(1);
  }
  struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
  struct timeval tv = { 0, 50000 };
  event_add(t, &tv);
  atomic_store(&s->ready, 1);
  while (!atomic_load(&s->stop))
    event_base_loop(base, EVLOOP_ONCE);
  event_free(t);
  msgr_free(m);
  event_base_free(base);
  for (int i = 0; i < 16; i++)
    free(s->live[i]);
  return NULL;
}

/* ---- client ----------------------------------------------------------- */

struct auth_step {
  struct auth_client *ac;
  msgr_conn *c;
  int done, err;
};

static void on_auth_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct auth_step *st = arg;
  char e[256] = "";
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
      st->err = msgr_call(st->c, MSG_AUTH_PROOF, out, (uint32_t)ol, NULL, 0, 5000, on_auth_reply, st);
      free(out);
      if (st->err)
        st->done = 1;
    }
  } else {
    st->err = auth_client_finish(st->ac, f->payload, f->payload_len, e, sizeof e);
    if (st->err == 0)
      st->err = msgr_conn_set_protection(st->c, st->ac->mode, st->ac->conn_key, true);
  }
  if (st->err && e[0])
    fprintf(stderr, "client: %s\n", e);
}

struct run {
  msgr_conn *c;
  struct event_base *base;
  int type;
  int64_t end_ns, warm_ns;
  long ops, errors;
  int64_t *lat;
  size_t nlat, caplat;
  int inflight;
};

struct slot {
  struct run *r;
  int64_t start;
};

static void issue(struct slot *sl);

static void on_op(void *arg, int err, const struct msgr_frame *f)
{
  struct slot *sl = arg;
  struct run *r = sl->r;
  int64_t t = now_ns();
  r->inflight--;
  if (err) {
    r->errors++;
    return;
  }
  if (sl->start >= r->warm_ns) {
    r->ops++;
    if (r->nlat < r->caplat)
      r->lat[r->nlat++] = t - sl->start;
  }
  if (t < r->end_ns)
    issue(sl);
}

static void issue(struct slot *sl)
{
  struct run *r = sl->r;
  sl->start = now_ns();
  int e = r->type == T_WRITE
              ? msgr_call(r->c, T_WRITE, "w", 1, databuf, op_size, 10000, on_op, sl)
              : msgr_call(r->c, T_READ, "r", 1, NULL, 0, 10000, on_op, sl);
  if (e == 0)
    r->inflight++;
  else
    r->errors++;
}

static int cmp64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

struct result {
  double ops_s, mb_s, p50_us, p99_us, cpu_us_op;
};

static int one_run(enum auth_mode mode, int type, int qd, double secs, struct result *res)
{
  struct srv s = { .mode = mode };
  s.db = keyring_new();
  keyring_set_key(s.db, "client.admin", admin_key);
  auth_params_default(&s.p);
  auth_rotating_init(&s.osd, util_wall_ms(), 3600000);
  pthread_t th;
  pthread_create(&th, NULL, srv_main, &s);
  while (!atomic_load(&s.ready))
    usleep(1000);
  struct event_base *base = event_base_new();
  msgr *cm = msgr_new(base, &lim, NULL, NULL);
  msgr_conn *c = msgr_connect(cm, s.addr);
  int rc = 0;
  if (mode != AUTH_MODE_NONE) {
    struct auth_client ac;
    auth_client_init(&ac, "client.admin", admin_key, AUTH_MODE_BIT(mode));
    uint8_t *hello;
    size_t hl;
    auth_client_hello(&ac, &hello, &hl);
    struct auth_step st = { .ac = &ac, .c = c };
    msgr_call(c, MSG_AUTH_HELLO, hello, (uint32_t)hl, NULL, 0, 5000, on_auth_reply, &st);
    free(hello);
    while (!st.done)
      event_base_loop(base, EVLOOP_ONCE);
    auth_client_clear(&ac);
    if (st.err || msgr_conn_protection(c) != mode) {
      fprintf(stderr, "auth failed: %s\n", strerror(-st.err));
      rc = -1;
    }
  }
  if (rc == 0) {
    struct run r = { .c = c, .base = base, .type = type };
    r.caplat = (size_t)(secs * 2e6);
    r.lat = malloc(r.caplat * sizeof *r.lat);
    struct slot *slots = calloc((size_t)qd, sizeof *slots);
    int64_t t0 = now_ns();
    r.warm_ns = t0 + 300000000;                 /* 0.3 s warm-up */
    r.end_ns = r.warm_ns + (int64_t)(secs * 1e9);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    for (int i = 0; i < qd; i++) {
      slots[i].r = &r;
      issue(&slots[i]);
    }
    int64_t tw = 0;
    while (r.inflight > 0) {
      event_base_loop(base, EVLOOP_ONCE);
      if (!tw && now_ns() >= r.warm_ns) {
        tw = now_ns();
        getrusage(RUSAGE_SELF, &ru0);
      }
    }
    int64_t t1 = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    double el = (double)(t1 - (tw ? tw : t0)) / 1e9;
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                          ru0.ru_stime.tv_sec) * 1e6 +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                          ru0.ru_stime.tv_usec);
    qsort(r.lat, r.nlat, sizeof *r.lat, cmp64);
    res->ops_s = (double)r.ops / el;
    res->mb_s = res->ops_s * op_size / 1e6;
    res->p50_us = r.nlat ? (double)r.lat[r.nlat / 2] / 1e3 : 0;
    res->p99_us = r.nlat ? (double)r.lat[(size_t)((double)r.nlat * 0.99)] / 1e3 : 0;
    res->cpu_us_op = r.ops ? cpu / (double)r.ops : 0;
    if (r.errors) {
      fprintf(stderr, "%ld errors\n", r.errors);
      rc = -1;
    }
    free(slots);
    free(r.lat);
  }
  msgr_conn_put(c);
  msgr_free(cm);
  event_base_free(base);
  atomic_store(&s.stop, 1);
  pthread_join(th, NULL);
  keyring_free(s.db);
  auth_rotating_clear(&s.osd);
  return rc;
}

static int cmpres(const void *a, const void *b)
{
  double x = ((const struct result *)a)->ops_s, y = ((const struct result *)b)->ops_s;
  return x < y ? -1 : x > y;
}

static int cmpdbl(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
  int qd = 32, rounds = 3, opt;
  double secs = 3;
  int type = T_WRITE;
  while ((opt = getopt(argc, argv, "q:s:t:r:o:")) != -1) {
    switch (opt) {
    case 'q': qd = atoi(optarg); break;
    case 's': op_size = (uint32_t)atoi(optarg); break;
    case 't': secs = atof(optarg); break;
    case 'r': rounds = atoi(optarg); break;
    case 'o': type = strcmp(optarg, "read") == 0 ? T_READ : T_WRITE; break;
    default:
      fprintf(stderr, "usage: %s [-q QD] [-s SIZE] [-t SECONDS] [-r ROUNDS] [-o write|read]\n", argv[0]);
      return 2;
    }
  }
  if (qd < 1 || rounds < 1 || secs <= 0 || rounds > 20) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  log_init("msgr-auth-bench", LOG_WARN);
  keyring_generate_key(admin_key);
  databuf = malloc(op_size ? op_size : 1);
  for (uint32_t i = 0; i < op_size; i++)
    databuf[i] = (uint8_t)(i * 31 + 7);
  struct result res[3][20];
  double cpu[3][20];
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int round = 0; round < rounds; round++) {
    int order[3] = { 0, 1, 2 };
    for (int i = 2; i > 0; i--) {   /* Fisher-Yates */
      int j = rand() % (i + 1), t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    for (int k = 0; k < 3; k++) {
      int m = order[k];
      if (one_run((enum auth_mode)m, type, qd, secs, &res[m][round]) < 0)
        return 1;
      cpu[m][round] = res[m][round].cpu_us_op;
      printf("# round %d: %-6s %10.0f ops/s %8.2f cpu_us/op\n", round + 1,
             auth_mode_name((enum auth_mode)m), res[m][round].ops_s, res[m][round].cpu_us_op);
    }
  }
  printf("# %s %u B, QD %d, %d rounds of %.1f s, median round by ops/s; cpu_us/op is the\n"
         "# median of the rounds' CPU (both ends) per op\n",
         type == T_WRITE ? "write" : "read", op_size, qd, rounds, secs);
  printf("%-7s %10s %9s %9s %9s %11s %9s %9s\n", "mode", "ops/s", "MB/s", "p50_us", "p99_us",
         "cpu_us/op", "vs_none", "cpu_vs");
  double base_ops = 0, base_cpu = 0;
  for (int m = 0; m < 3; m++) {
    qsort(res[m], (size_t)rounds, sizeof res[m][0], cmpres);
    qsort(cpu[m], (size_t)rounds, sizeof cpu[m][0], cmpdbl);
    struct result *r = &res[m][rounds / 2];
    double c = cpu[m][rounds / 2];
    if (m == 0) {
      base_ops = r->ops_s;
      base_cpu = c;
    }
    printf("%-7s %10.0f %9.1f %9.1f %9.1f %11.2f %8.1f%% %8.1f%%\n",
           auth_mode_name((enum auth_mode)m), r->ops_s, r->mb_s, r->p50_us, r->p99_us, c,
           base_ops ? 100.0 * (r->ops_s - base_ops) / base_ops : 0.0,
           base_cpu ? 100.0 * (c - base_cpu) / base_cpu : 0.0);
  }
  free(databuf);
  return 0;
}
