/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl object bench POOL [--seconds S] [--size BYTES]
 * [--qd N] [--objects N] [--read]`: keeps N ops in flight through the
 * objecter (writes of BYTES at offset 0 of bench.<k>, or reads of them
 * after a write pass) for S seconds, then prints IOPS, throughput and
 * latency percentiles.  A measurement tool, not a test.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/blkctl/blkctl.h"
#include "client/objecter.h"
#include "common/config.h"
#include "common/util.h"

struct bench {
  objecter *o;
  const char *pool;
  uint8_t *buf;
  uint32_t size;
  unsigned objects, next;
  bool read;
  int64_t end_ms;
  int inflight;
  uint64_t done, errors;
  int64_t *lat_us;
  size_t n_lat, cap_lat;
  int first_err;
  unsigned limit;               /* > 0: stop after this many issues */
};

struct bop {
  struct bench *b;
  int64_t t0_us;
};

static int64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void issue(struct bench *b);

static void on_done(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                    uint32_t len)
{
  struct bop *op = arg;
  struct bench *b = op->b;
  (void)rep;
  (void)data;
  (void)len;
  b->inflight--;
  if (err) {
    b->errors++;
    if (!b->first_err)
      b->first_err = err;
  } else {
    b->done++;
    if (b->n_lat == b->cap_lat) {
      b->cap_lat = b->cap_lat ? b->cap_lat * 2 : 4096;
      b->lat_us = realloc(b->lat_us, b->cap_lat * sizeof *b->lat_us);
      if (!b->lat_us)
        abort();
    }
    b->lat_us[b->n_lat++] = now_us() - op->t0_us;
  }
  free(op);
  if (err != -ECANCELED && util_now_ms() < b->end_ms && (!b->limit || b->next < b->limit))
    issue(b);
}

static void issue(struct bench *b)
{
  char name[32];
  snprintf(name, sizeof name, "bench.%u", b->next++ % b->objects);
  struct objecter_req req = { .pool = b->pool, .name = name, .osd = -1 };
  req.op = b->read ? BLK__OSD_OP_TYPE__OP_READ : BLK__OSD_OP_TYPE__OP_WRITE;
  req.length = b->size;
  if (!b->read) {
    req.data = b->buf;
    req.data_len = b->size;
  }
  struct bop *op = malloc(sizeof *op);
  if (!op)
    return;
  op->b = b;
  op->t0_us = now_us();
  if (objecter_op(b->o, &req, on_done, op) == 0)
    b->inflight++;
  else
    free(op);
}

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void run(struct blkctl *bc, struct bench *b, double secs, unsigned qd)
{
  b->end_ms = util_now_ms() + (int64_t)(secs * 1000);
  for (unsigned i = 0; i < qd; i++)
    issue(b);
  while (b->inflight > 0)
    event_base_loop(bc->base, EVLOOP_ONCE);
}

int cmd_object_bench(struct blkctl *bc, int argc, char **argv)
{
  struct bench b = { .size = 4096, .objects = 1024 };
  double secs = 10;
  unsigned qd = 16;
  if (argc < 3)
    return blkctl_fail(EINVAL, "usage: blkctl object bench POOL [--seconds S] [--size BYTES] "
                               "[--qd N] [--objects N] [--read]");
  b.pool = argv[2];
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      secs = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      uint64_t v;
      if (config_parse_size(argv[++i], &v) < 0 || v == 0 || v > (64u << 20))
        return blkctl_fail(EINVAL, "bad --size");
      b.size = (uint32_t)v;
    } else if (!strcmp(argv[i], "--qd") && i + 1 < argc) {
      qd = (unsigned)atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--objects") && i + 1 < argc) {
      b.objects = (unsigned)atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--read")) {
      b.read = true;
    } else {
      return blkctl_fail(EINVAL, "unknown bench option '%s'", argv[i]);
    }
  }
  if (!qd || !b.objects || secs <= 0)
    return blkctl_fail(EINVAL, "--qd, --objects and --seconds must be positive");
  int rc = blkctl_connect(bc);
  if (rc)
    return rc;
  b.o = objecter_new(bc->base, bc->monc, bc->cfg);
  b.buf = malloc(b.size);
  if (!b.o || !b.buf)
    return blkctl_fail(ENOMEM, "out of memory");
  for (uint32_t i = 0; i < b.size; i++)
    b.buf[i] = (uint8_t)(i * 131 + 7);
  if (monc_auth_refused(bc->monc) || objecter_wait_map(b.o, bc->timeout_ms) < 0) {
    rc = monc_auth_refused(bc->monc)
             ? blkctl_fail(EACCES, "authentication as %s failed: %s", monc_entity(bc->monc),
                           monc_auth_error(bc->monc))
             : blkctl_fail(ETIMEDOUT, "no map");
    goto out;
  }
  if (b.read) {
    /* every object must exist first: one write pass */
    b.read = false;
    b.limit = b.objects;
    run(bc, &b, 3600, qd < b.objects ? qd : b.objects);
    b.read = true;
    b.limit = 0;
    b.next = 0;
    b.done = b.errors = 0;
    b.n_lat = 0;
  }
  int64_t t0 = util_now_ms();
  run(bc, &b, secs, qd);
  double el = (double)(util_now_ms() - t0) / 1000.0;
  qsort(b.lat_us, b.n_lat, sizeof *b.lat_us, cmp_i64);
#define PCT(p) (b.n_lat ? b.lat_us[(size_t)((double)(b.n_lat - 1) * (p))] : 0)
  double iops = (double)b.done / el;
  if (bc->json) {
    json_begin_obj();
    json_str("op", b.read ? "read" : "write");
    json_uint("size", b.size);
    json_uint("qd", qd);
    json_uint("ops", b.done);
    json_uint("errors", b.errors);
    json_double("seconds", el);
    json_double("iops", iops);
    json_double("mib_s", iops * b.size / 1048576.0);
    json_int("lat_p50_us", PCT(0.5));
    json_int("lat_p99_us", PCT(0.99));
    json_int("lat_max_us", PCT(1.0));
    json_end_obj();
    json_done();
  } else {
    printf("%s %u B qd %u: %llu ops in %.2f s = %.0f IOPS, %.1f MiB/s; latency p50 %lld us, "
           "p99 %lld us, max %lld us; %llu errors\n",
           b.read ? "read" : "write", b.size, qd, (unsigned long long)b.done, el, iops,
           iops * b.size / 1048576.0, (long long)PCT(0.5), (long long)PCT(0.99),
           (long long)PCT(1.0), (unsigned long long)b.errors);
  }
  if (b.errors)
    rc = blkctl_fail(blkctl_exit_code(b.first_err), "%llu ops failed (first: %s)",
                     (unsigned long long)b.errors, strerror(-b.first_err));
out:
  objecter_free(b.o);
  free(b.buf);
  free(b.lat_us);
  return rc;
}
