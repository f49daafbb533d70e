/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl mon bench [--count N]` measures the commit latency
 * of map changes: N sequential changes (create, then remove, of a scratch
 * pool) from one process over one connection, each acknowledged only
 * after the quorum has committed and the leader applied it; prints mean
 * and percentiles.  Also times N linearizable reads (ReadIndex).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/blkctl/blkctl.h"
#include "common/util.h"

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void report(struct blkctl *b, const char *what, int64_t *us, int n)
{
  qsort(us, (size_t)n, sizeof *us, cmp_i64);
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += (double)us[i];
  double mean = sum / n / 1000.0;
  double p50 = us[n / 2] / 1000.0, p99 = us[(n * 99) / 100 >= n ? n - 1 : (n * 99) / 100] / 1000.0;
  if (b->json) {
    json_key_obj(what);
    json_int("count", n);
    json_double("mean_ms", mean);
    json_double("p50_ms", p50);
    json_double("p99_ms", p99);
    json_double("max_ms", us[n - 1] / 1000.0);
    json_end_obj();
  } else {
    printf("%-14s %5d ops  mean %7.3f ms  p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms\n", what, n,
           mean, p50, p99, us[n - 1] / 1000.0);
  }
}

static int64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int cmd_mon_bench(struct blkctl *b, int argc, char **argv)
{
  int n = 200;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--count") && i + 1 < argc) {
      n = atoi(argv[++i]);
      if (n < 2 || n > 100000)
        return blkctl_fail(EINVAL, "--count must be 2..100000");
    } else {
      return blkctl_fail(EINVAL, "usage: blkctl mon bench [--count N]");
    }
  }
  int64_t *w = calloc((size_t)n, sizeof *w), *r = calloc((size_t)n, sizeof *r);
  if (!w || !r) {
    free(w);
    free(r);
    return ENOMEM;
  }
  int rc = 0;
  char name[64];
  snprintf(name, sizeof name, "bench-%d", (int)getpid());
  for (int i = 0; i < n && !rc; i++) {
    Blk__MapTxn txn = BLK__MAP_TXN__INIT;
    Blk__PoolCreate pc = BLK__POOL_CREATE__INIT;
    Blk__PoolRemove pr = BLK__POOL_REMOVE__INIT;
    if (i % 2 == 0) {
      pc.name = name;
      pc.pg_num = 8;
      pc.size = 3;
      pc.min_size = 2;
      txn.pool_create = &pc;
    } else {
      pr.name = name;
      txn.pool_remove = &pr;
    }
    Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
    cmd.txn = &txn;
    Blk__MonReply *rep;
    int64_t t0 = now_us();
    rc = blkctl_mon_command(b, &cmd, &rep);
    w[i] = now_us() - t0;
    if (!rc)
      blk__mon_reply__free_unpacked(rep, NULL);
  }
  for (int i = 0; i < n && !rc; i++) {
    Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
    cmd.read = BLK__MON_COMMAND__READ__MAP;
    Blk__MonReply *rep;
    int64_t t0 = now_us();
    rc = blkctl_mon_command(b, &cmd, &rep);
    r[i] = now_us() - t0;
    if (!rc)
      blk__mon_reply__free_unpacked(rep, NULL);
  }
  if (!rc) {
    if (b->json)
      json_begin_obj();
    report(b, "map-change", w, n);
    report(b, "read-index", r, n);
    if (b->json) {
      json_end_obj();
      json_done();
    }
  }
  free(w);
  free(r);
  return rc;
}
