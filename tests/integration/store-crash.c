/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the store crash test.  Each round forks a child that opens
 * the store (replaying whatever the last kill left) and runs a random
 * transaction workload (writes small and large, zero, truncate, remove,
 * attrs, omap, clones; up to 8 transactions in flight).  After the store
 * acknowledges a transaction the child writes (index, result) to a pipe.
 * The parent SIGKILLs the child at a random moment -- in some rounds right
 * after the child made the next journal write torn (store_debug_tear_next_
 * write) -- then opens the store itself and checks it against its model:
 * every transaction reported acknowledged must be there, and transactions
 * in flight at the kill may be there only wholly and in order (the state
 * must equal the model after some prefix of the unacknowledged ones).  The
 * transactions are generated from (round seed, index) on both sides, so
 * the parent knows what each one did.  Then fsck must find nothing.
 * Rounds cycle osd_store_direct_min_queue through 0 (small writes deferred),
 * 1 with osd_store_deferred_max 64K (the full blocks of every write up to
 * 64 KiB go direct as plain writes whenever another transaction waits)
 * and 8 (the default): the run fails if no small write ever went direct.
 *
 *   store-crash [--kills N] [--seed S] [--dir DIR] [--keep]
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "osd/store.h"

#define NOBJ 8
#define OMAX (256 * 1024)
#define QD 8

struct mobj {
  bool exists;
  uint64_t size;
  uint8_t data[OMAX];
  bool has_attr, has_omap;
  char attr[16], omap[16];
};

struct model {
  struct mobj o[NOBJ];
};

enum gop { G_WRITE, G_ZERO, G_TRUNC, G_REMOVE, G_SETATTR, G_OMAP, G_CLONE };

struct gen_op {
  enum gop t;
  int obj, dst;
  uint64_t off, len;
  unsigned seed;
  char val[16];
};

struct gen_txn {
  int n;
  struct gen_op op[3];
};

static uint64_t mix(uint64_t x)
{
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return x;
}

static void gen(uint64_t round_seed, uint32_t idx, struct gen_txn *t)
{
  uint64_t s = mix(round_seed * 1000003u + idx + 1);
#define R(n) ((s = mix(s + 0x9E3779B97F4A7C15ull)) % (n))
  t->n = 1 + (int)R(3);
  for (int i = 0; i < t->n; i++) {
    struct gen_op *o = &t->op[i];
    memset(o, 0, sizeof *o);
    o->obj = (int)R(NOBJ);
    uint64_t k = R(100);
    o->t = k < 55 ? G_WRITE : k < 62 ? G_ZERO : k < 68 ? G_TRUNC
         : k < 74 ? G_REMOVE : k < 84 ? G_SETATTR : k < 92 ? G_OMAP : G_CLONE;
    o->seed = (unsigned)R(1u << 30);
    switch (o->t) {
    case G_WRITE:
      o->len = R(4) == 0 ? 33 * 1024 + R(100 * 1024) : 1 + R(9000);
      if (R(2))
        o->len = (o->len + 4095) & ~4095ull;
      o->off = R(OMAX - o->len);
      if (R(2))
        o->off &= ~4095ull;
      break;
    case G_ZERO:
      o->len = R(64 * 1024);
      o->off = R(OMAX - o->len);
      break;
    case G_TRUNC:
      o->off = R(OMAX);
      break;
    case G_SETATTR:
    case G_OMAP:
      snprintf(o->val, sizeof o->val, "v%u", o->seed % 100000);
      break;
    case G_CLONE:
      o->dst = (o->obj + 1 + (int)R(NOBJ - 1)) % NOBJ;
      break;
    default:
      break;
    }
  }
#undef R
}

static void pattern(uint8_t *b, uint64_t len, unsigned seed)
{
  for (uint64_t i = 0; i < len; i++)
    b[i] = (uint8_t)(seed + i * 29 + (i >> 11));
}

static void obj_create(struct mobj *m)
{
  if (!m->exists) {
    memset(m, 0, sizeof *m);
    m->exists = true;
  }
}

/* Apply t to m; returns the result the store must report. */
static int model_apply(struct model *m, const struct gen_txn *t)
{
  static struct model tmp;
  static uint8_t buf[OMAX];
  tmp = *m;
  for (int i = 0; i < t->n; i++) {
    const struct gen_op *o = &t->op[i];
    struct mobj *x = &tmp.o[o->obj];
    switch (o->t) {
    case G_WRITE:
      obj_create(x);
      pattern(buf, o->len, o->seed);
      memcpy(x->data + o->off, buf, o->len);
      if (o->off + o->len > x->size)
        x->size = o->off + o->len;
      break;
    case G_ZERO:
      obj_create(x);
      memset(x->data + o->off, 0, o->len);
      if (o->off + o->len > x->size)
        x->size = o->off + o->len;
      break;
    case G_TRUNC:
      obj_create(x);
      if (o->off < x->size)
        memset(x->data + o->off, 0, OMAX - o->off);
      x->size = o->off;
      break;
    case G_REMOVE:
      if (!x->exists)
        return -ENOENT;
      memset(x, 0, sizeof *x);
      break;
    case G_SETATTR:
      obj_create(x);
      x->has_attr = true;
      snprintf(x->attr, sizeof x->attr, "%s", o->val);
      break;
    case G_OMAP:
      obj_create(x);
      x->has_omap = true;
      snprintf(x->omap, sizeof x->omap, "%s", o->val);
      break;
    case G_CLONE:
      if (!x->exists)
        return -ENOENT;
      tmp.o[o->dst] = *x;
      break;
    }
  }
  *m = tmp;
  return 0;
}

static void oname(char *b, size_t n, int i)
{
  snprintf(b, n, "rbd_data.%d", i);
}

static store_txn *build(const struct gen_txn *t)
{
  static uint8_t buf[OMAX];
  store_txn *x = store_txn_new();
  for (int i = 0; i < t->n; i++) {
    const struct gen_op *o = &t->op[i];
    char n1[32], n2[32];
    oname(n1, sizeof n1, o->obj);
    oname(n2, sizeof n2, o->dst);
    struct store_oid a = { 1, 0, n1, STORE_SNAP_HEAD };
    struct store_oid b = { 1, 0, n2, STORE_SNAP_HEAD };
    switch (o->t) {
    case G_WRITE:
      pattern(buf, o->len, o->seed);
      store_txn_write(x, &a, o->off, o->len, buf);
      break;
    case G_ZERO: store_txn_zero(x, &a, o->off, o->len); break;
    case G_TRUNC: store_txn_truncate(x, &a, o->off); break;
    case G_REMOVE: store_txn_remove(x, &a); break;
    case G_SETATTR: store_txn_setattr(x, &a, "v", o->val, strlen(o->val)); break;
    case G_OMAP: store_txn_omap_set(x, &a, "k", o->val, strlen(o->val)); break;
    case G_CLONE: store_txn_clone(x, &a, &b); break;
    }
  }
  return x;
}

/* ---- child ---- */

struct child {
  store *st;
  int fd;
  uint64_t seed;
  uint32_t next, inflight;
  int tear_after;
  uint32_t acks;
};

struct ack {
  uint32_t idx;
  int32_t result;
  uint32_t sdirect;   /* store_statfs small_direct at the ack */
};

struct csub {
  struct child *c;
  uint32_t idx;
};

static void child_submit(struct child *c);

static void child_cb(void *arg, int result)
{
  struct csub *s = arg;
  struct child *c = s->c;
  struct store_statfs sf;
  store_statfs(c->st, &sf);
  struct ack a = { s->idx, result, (uint32_t)sf.small_direct };
  if (write(c->fd, &a, sizeof a) != sizeof a)
    _exit(3);
  free(s);
  c->inflight--;
  c->acks++;
  if (c->tear_after >= 0 && c->acks == (uint32_t)c->tear_after)
    store_debug_tear_next_write(c->st);
  child_submit(c);
}

static void child_submit(struct child *c)
{
  while (c->inflight < QD) {
    struct gen_txn t;
    gen(c->seed, c->next, &t);
    struct csub *s = malloc(sizeof *s);
    s->c = c;
    s->idx = c->next++;
    c->inflight++;
    store_queue(c->st, build(&t), child_cb, s);
  }
}

static int child_main(const char *dev, const char *data, config *cfg,
                      uint64_t seed, int tear_after, int fd)
{
  struct event_base *base = event_base_new();
  struct child c = { 0 };
  c.fd = fd;
  c.seed = seed;
  c.tear_after = tear_after;
  if (store_open(dev, data, base, cfg, &c.st) < 0)
    return 4;
  struct ack ready = { UINT32_MAX, 0, 0 };
  if (write(fd, &ready, sizeof ready) != sizeof ready)
    return 3;
  child_submit(&c);
  event_base_dispatch(base);
  return 0;
}

/* ---- parent ---- */

static struct model cur, cand;

static bool state_equals(store *st, const struct model *m, char *why, size_t wl)
{
  static uint8_t buf[OMAX];
  for (int i = 0; i < NOBJ; i++) {
    char n[32];
    oname(n, sizeof n, i);
    struct store_oid o = { 1, 0, n, STORE_SNAP_HEAD };
    const struct mobj *x = &m->o[i];
    struct store_stat s;
    int r = store_stat_sync(st, &o, &s);
    if (r == -ENOENT && !x->exists)
      continue;
    if (r < 0 || !x->exists) {
      snprintf(why, wl, "%s: stat %d, model exists %d", n, r, x->exists);
      return false;
    }
    if (s.size != x->size) {
      snprintf(why, wl, "%s: size %llu, model %llu", n,
               (unsigned long long)s.size, (unsigned long long)x->size);
      return false;
    }
    r = store_read_sync(st, &o, 0, OMAX, buf);
    if (r != (int)x->size || memcmp(buf, x->data, x->size) != 0) {
      snprintf(why, wl, "%s: data differs (read %d)", n, r);
      return false;
    }
    void *v;
    size_t vl;
    r = store_getattr_sync(st, &o, "v", &v, &vl);
    bool ok = x->has_attr ? r == 0 && vl == strlen(x->attr) &&
                                memcmp(v, x->attr, vl) == 0
                          : r == -ENODATA;
    if (r == 0)
      free(v);
    if (!ok) {
      snprintf(why, wl, "%s: attr differs (%d)", n, r);
      return false;
    }
    r = store_omap_get_sync(st, &o, "k", &v, &vl);
    ok = x->has_omap ? r == 0 && vl == strlen(x->omap) &&
                           memcmp(v, x->omap, vl) == 0
                     : r == -ENODATA;
    if (r == 0)
      free(v);
    if (!ok) {
      snprintf(why, wl, "%s: omap differs (%d)", n, r);
      return false;
    }
  }
  return true;
}

static int rm_one(const char *p, const struct stat *s, int f, struct FTW *w)
{
  (void)s; (void)f; (void)w;
  return remove(p);
}

int main(int argc, char **argv)
{
  int kills = 200;
  uint64_t seed = (uint64_t)time(NULL);
  const char *base_dir = "/tmp";
  bool keep = false;
  static const struct option lo[] = {
    { "kills", required_argument, 0, 'k' }, { "seed", required_argument, 0, 's' },
    { "dir", required_argument, 0, 'd' }, { "keep", no_argument, 0, 'K' },
    { 0, 0, 0, 0 } };
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'k': kills = atoi(optarg); break;
    case 's': seed = strtoull(optarg, NULL, 0); break;
    case 'd': base_dir = optarg; break;
    case 'K': keep = true; break;
    default:
      fprintf(stderr, "usage: store-crash [--kills N] [--seed S] [--dir DIR] [--keep]\n");
      return 2;
    }
  }
  log_init("crash", getenv("CRASH_VERBOSE") ? LOG_TRACE : LOG_ERR);
  char dir[512], dev[600], data[600];
  snprintf(dir, sizeof dir, "%s/blkstore-crash.XXXXXX", base_dir);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(dev, sizeof dev, "%s/dev", dir);
  snprintf(data, sizeof data, "%s/db", dir);
  config *cfg = config_new("osd", "0");
  config_set(cfg, "osd_store_ckpt_interval", "30ms");
  struct store_mkfs_opts mo = { .device_size = 64 << 20,
                                .journal_size = 1 << 20 };
  if (store_mkfs(dev, data, &mo, cfg) < 0)
    return 1;
  printf("store-crash: seed %llu, %d kills, in %s\n", (unsigned long long)seed,
         kills, dir);
  fflush(stdout);
  srand((unsigned)seed);
  memset(&cur, 0, sizeof cur);
  int failures = 0;
  uint64_t total_acks = 0, total_inflight_present = 0, tears = 0;
  uint64_t total_sdirect = 0;
  static const char *const dmq[3] = { "0", "1", "8" };
  static const char *const dmax[3] = { "4K", "64K", "4K" };
  struct event_base *base = event_base_new();
  for (int round = 0; round < kills && !failures; round++) {
    uint64_t rseed = mix(seed + (uint64_t)round);
    int tear_after = rand() % 3 == 0 ? rand() % 60 : -1;
    config_set(cfg, "osd_store_direct_min_queue", dmq[round % 3]);
    config_set(cfg, "osd_store_deferred_max", dmax[round % 3]);
    uint32_t sdirect = 0;
    int p[2];
    if (pipe(p) < 0)
      return 1;
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      _exit(child_main(dev, data, cfg, rseed, tear_after, p[1]));
    }
    close(p[1]);
    /* collect acks until a random deadline after the child is ready */
    int budget_ms = rand() % 250;
    uint64_t acked = 0;
    bool ready = false;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long el = (now.tv_sec - t0.tv_sec) * 1000 +
                (now.tv_nsec - t0.tv_nsec) / 1000000;
      if (ready && el >= budget_ms)
        break;
      if (el > 20000) {
        fprintf(stderr, "round %d: child not ready after 20 s\n", round);
        failures++;
        break;
      }
      struct pollfd pf = { p[0], POLLIN, 0 };
      if (poll(&pf, 1, 5) <= 0)
        continue;
      struct ack a;
      ssize_t n = read(p[0], &a, sizeof a);
      if (n != sizeof a) {
        fprintf(stderr, "round %d: child died early\n", round);
        failures++;
        break;
      }
      if (a.idx == UINT32_MAX) {
        ready = true;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        continue;
      }
      if (a.idx != acked) {
        fprintf(stderr, "round %d: ack %u out of order (expected %llu)\n",
                round, a.idx, (unsigned long long)acked);
        failures++;
        break;
      }
      struct gen_txn t;
      gen(rseed, a.idx, &t);
      int want = model_apply(&cur, &t);
      if (want != a.result) {
        fprintf(stderr, "round %d: txn %u returned %d, model says %d\n", round,
                a.idx, a.result, want);
        failures++;
        break;
      }
      sdirect = a.sdirect;
      acked++;
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* acks written before the kill but not read yet are acknowledged too */
    struct ack a;
    while (!failures && read(p[0], &a, sizeof a) == sizeof a) {
      if (a.idx == UINT32_MAX)
        continue;
      struct gen_txn t;
      gen(rseed, a.idx, &t);
      if (model_apply(&cur, &t) != a.result) {
        fprintf(stderr, "round %d: late ack %u result mismatch\n", round, a.idx);
        failures++;
      }
      sdirect = a.sdirect;
      acked++;
    }
    close(p[0]);
    if (failures)
      break;
    total_acks += acked;
    total_sdirect += sdirect;
    if (tear_after >= 0)
      tears++;
    /* reopen and find the prefix of in-flight transactions that survived */
    store *st;
    if (store_open(dev, data, base, cfg, &st) < 0) {
      fprintf(stderr, "round %d: reopen failed\n", round);
      failures++;
      break;
    }
    cand = cur;
    bool found = false;
    char why[256] = "", first_why[256] = "";
    for (uint32_t k = 0; k <= QD; k++) {
      if (k > 0) {
        struct gen_txn t;
        gen(rseed, (uint32_t)acked + k - 1, &t);
        model_apply(&cand, &t);
      }
      if (state_equals(st, &cand, why, sizeof why)) {
        found = true;
        cur = cand;
        total_inflight_present += k;
        break;
      }
      if (k == 0)
        snprintf(first_why, sizeof first_why, "%s", why);
      if (getenv("CRASH_VERBOSE"))
        fprintf(stderr, "  candidate +%u: %s\n", k, why);
    }
    if (!found) {
      fprintf(stderr, "round %d (seed %llu, %llu acked, tear %d): state "
              "matches no prefix of the in-flight transactions: %s\n", round,
              (unsigned long long)rseed, (unsigned long long)acked, tear_after,
              first_why);
      failures++;
    }
    int probs = store_fsck(st, round % 10 == 0);
    if (probs != 0) {
      fprintf(stderr, "round %d: fsck found %d problem(s)\n", round, probs);
      failures++;
    }
    store_close(st);
    if ((round + 1) % 50 == 0) {
      printf("store-crash: %d rounds, %llu acknowledged txns checked\n",
             round + 1, (unsigned long long)total_acks);
      fflush(stdout);
    }
  }
  event_base_free(base);
  config_free(cfg);
  if (!failures && kills >= 30 && total_sdirect == 0) {
    fprintf(stderr, "no small write went direct (osd_store_direct_min_queue "
            "not exercised)\n");
    failures++;
  }
  printf("store-crash: %s after %llu acknowledged transactions, %llu in-flight "
         "ones found applied, %llu torn journal writes, %llu transactions "
         "prepared with small direct writes (seed %llu)\n",
         failures ? "FAILED" : "passed", (unsigned long long)total_acks,
         (unsigned long long)total_inflight_present, (unsigned long long)tears,
         (unsigned long long)total_sdirect, (unsigned long long)seed);
  if (!keep)
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);   /* rerun with --seed */
  else
    printf("store-crash: store kept in %s\n", dir);
  return failures ? 1 : 0;
}
