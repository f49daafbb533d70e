/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: helpers shared by the store unit tests: a scratch store
 * (a real file under /tmp opened with O_DIRECT, a real RocksDB next to it,
 * a real libevent loop and io_uring), reopened or "crashed"
 * (store_debug_abandon) at will, removed at the end.
 */
#ifndef BLK_TESTS_STORE_HELPERS_H
#define BLK_TESTS_STORE_HELPERS_H

#include <event2/event.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "osd/store.h"

struct tstore {
  char dir[256], dev[300], data[300];
  struct event_base *base;
  config *cfg;
  store *st;
};

static int ts_rm_one(const char *p, const struct stat *s, int f, struct FTW *w)
{
  (void)s; (void)f; (void)w;
  return remove(p);
}

static void ts_rmrf(const char *dir)
{
  nftw(dir, ts_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make a scratch directory and format a store of `size` bytes in it.
 * opts: "name=value" config overrides (NULL-terminated), may be NULL. */
static void ts_init(struct tstore *t, uint64_t size, uint64_t jsize,
                    const char *const *opts)
{
  memset(t, 0, sizeof *t);
  log_init("test", LOG_ERR);
  snprintf(t->dir, sizeof t->dir, "/tmp/blkstore-test.XXXXXX");
  assert_non_null(mkdtemp(t->dir));
  snprintf(t->dev, sizeof t->dev, "%s/dev", t->dir);
  snprintf(t->data, sizeof t->data, "%s/db", t->dir);
  t->cfg = config_new("osd", "0");
  assert_non_null(t->cfg);
  for (int i = 0; opts && opts[i]; i++) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", opts[i]);
    char *eq = strchr(buf, '=');
    assert_non_null(eq);
    *eq = 0;
    assert_int_equal(config_set(t->cfg, buf, eq + 1), 0);
  }
  struct store_mkfs_opts mo = { .osd_id = 0, .device_size = size,
                                .journal_size = jsize };
  assert_int_equal(store_mkfs(t->dev, t->data, &mo, t->cfg), 0);
  t->base = event_base_new();
  assert_non_null(t->base);
}

static void ts_open(struct tstore *t)
{
  assert_int_equal(store_open(t->dev, t->data, t->base, t->cfg, &t->st), 0);
}

static void ts_close(struct tstore *t)
{
  store_close(t->st);
  t->st = NULL;
}

static void ts_crash(struct tstore *t)
{
  store_debug_abandon(t->st);
  t->st = NULL;
}

static void ts_fini(struct tstore *t)
{
  if (t->st)
    ts_close(t);
  event_base_free(t->base);
  config_free(t->cfg);
  ts_rmrf(t->dir);
}

static struct store_oid ts_oid(const char *name)
{
  struct store_oid o = { 1, 7, name, STORE_SNAP_HEAD };
  return o;
}

/* Write len bytes of pattern `seed` at off in one transaction. */
static int ts_write(struct tstore *t, const char *name, uint64_t off,
                    uint64_t len, unsigned seed)
{
  uint8_t *b = malloc(len ? len : 1);
  for (uint64_t i = 0; i < len; i++)
    b[i] = (uint8_t)(seed * 131 + (off + i) * 7 + ((off + i) >> 12));
  store_txn *x = store_txn_new();
  struct store_oid o = ts_oid(name);
  store_txn_write(x, &o, off, len, b);
  free(b);
  return store_queue_sync(t->st, x);
}

/* Check that [off, off+len) holds pattern `seed`. */
static void ts_check(struct tstore *t, const char *name, uint64_t off,
                     uint64_t len, unsigned seed)
{
  uint8_t *b = malloc(len);
  struct store_oid o = ts_oid(name);
  int r = store_read_sync(t->st, &o, off, len, b);
  uint64_t bad = UINT64_MAX;
  for (uint64_t i = 0; r >= 0 && i < len && bad == UINT64_MAX; i++)
    if (b[i] != (uint8_t)(seed * 131 + (off + i) * 7 + ((off + i) >> 12)))
      bad = off + i;
  free(b);
  assert_true(r >= 0);
  if (bad != UINT64_MAX)
    fail_msg("%s: byte %llu differs", name, (unsigned long long)bad);
}

#endif
