/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl mon watch [--from EPOCH] [--count N] [--mon NAME]`
 * subscribes to the map (as OSDs and clients do) and prints every update
 * it receives: a full map or a run of incremental transactions, and the
 * epoch reached by applying them to its own copy with clustermap_apply.
 * It stops after N updates (default: run until interrupted or --timeout).
 * Started with --from E > 0 it holds no map at E, so it cannot apply the
 * incrementals: it checks only that they chain (from == its epoch) and
 * reports "pools" as null until a full map arrives.
 * With --format json each update is one line: {"kind","from","to",
 * "epoch","pools":[...]} so that tests can compare the map it derived with
 * the monitors' map.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/blkctl/blkctl.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/util.h"

struct watch {
  struct blkctl *b;
  bool have_base;           /* map holds the real map at map->epoch */
  struct cluster_map *map;
  int left;
  int err;
};

static void print_update(struct watch *w, const char *kind, uint64_t from, uint64_t to)
{
  if (w->b->json) {
    json_begin_obj();
    json_str("kind", kind);
    json_uint("from", from);
    json_uint("to", to);
    json_uint("epoch", w->map->epoch);
    json_bool("have_base", w->have_base);
    json_begin_arr("pools");
    for (size_t i = 0; w->have_base && i < w->map->n_pools; i++)
      json_str(NULL, w->map->pools[i].name);
    json_end_arr();
    json_end_obj();
    json_done();
  } else {
    printf("%s update %llu -> %llu: epoch e%llu, %zu pools\n", kind,
           (unsigned long long)from, (unsigned long long)to,
           (unsigned long long)w->map->epoch, w->map->n_pools);
  }
  fflush(stdout);
}

static void on_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  struct watch *w = ctx;
  if (f->type != MSG_MAP_UPDATE)
    return;
  Blk__MapUpdate *u = blk__map_update__unpack(NULL, f->payload_len, f->payload);
  if (!u) {
    w->err = blkctl_fail(EPROTO, "undecodable map update");
    w->left = 0;
    return;
  }
  char err[256];
  if (u->full) {
    struct cluster_map *m;
    if (clustermap_from_pb(u->full, &m) < 0) {
      w->err = blkctl_fail(EPROTO, "invalid full map");
      w->left = 0;
    } else {
      clustermap_free(w->map);
      w->map = m;
      w->have_base = true;
      print_update(w, "full", u->from, u->to);
    }
  } else if (u->n_txns) {
    if (u->from != w->map->epoch) {
      w->err = blkctl_fail(EPROTO, "incremental from e%llu does not follow our e%llu",
                           (unsigned long long)u->from, (unsigned long long)w->map->epoch);
      w->left = 0;
    } else if (!w->have_base) {
      w->map->epoch = u->to;   /* chain check only */
      print_update(w, "incremental", u->from, u->to);
    } else {
      for (size_t i = 0; i < u->n_txns; i++) {
        if (clustermap_apply(w->map, u->txns[i], err, sizeof err) != 1) {
          w->err = blkctl_fail(EPROTO, "incremental txn did not apply: %s", err);
          w->left = 0;
          break;
        }
      }
      if (w->left && w->map->epoch != u->to) {
        w->err = blkctl_fail(EPROTO, "incrementals reached e%llu, expected e%llu",
                             (unsigned long long)w->map->epoch, (unsigned long long)u->to);
        w->left = 0;
      }
      if (w->left)
        print_update(w, "incremental", u->from, u->to);
    }
  }
  blk__map_update__free_unpacked(u, NULL);
  if (w->left > 0 && --w->left == 0)
    event_base_loopbreak(w->b->base);
}

static void sub_reply(void *arg, int err, const struct msgr_frame *reply)
{
  struct watch *w = arg;
  if (err < 0) {
    w->err = blkctl_fail(blkctl_exit_code(err), "subscribe failed: %s", strerror(-err));
    w->left = 0;
    event_base_loopbreak(w->b->base);
  }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
  struct watch *w = arg;
  w->err = blkctl_fail(ETIMEDOUT, "timed out waiting for map updates");
  event_base_loopbreak(w->b->base);
}

int cmd_mon_watch(struct blkctl *b, int argc, char **argv)
{
  uint64_t from = 0;
  int count = -1;
  const char *mon = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--from") && i + 1 < argc)
      from = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--count") && i + 1 < argc)
      count = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--mon") && i + 1 < argc)
      mon = argv[++i];
    else
      return blkctl_fail(EINVAL, "usage: blkctl mon watch [--from EPOCH] [--count N] [--mon NAME]");
  }
  int r = blkctl_connect(b);
  if (r)
    return r;
  struct cm_mon mons[CM_MAX_MONS];
  size_t n;
  char err[256];
  if (util_monmap_from_config(b->cfg, mons, &n, err, sizeof err) < 0)
    return blkctl_fail(EINVAL, "%s", err);
  size_t pick = 0;
  if (mon) {
    for (pick = 0; pick < n && strcmp(mons[pick].name, mon); pick++)
      ;
    if (pick == n)
      return blkctl_fail(ENOENT, "no monitor named '%s'", mon);
  }
  struct watch w = { .b = b, .left = count, .map = clustermap_new() };
  struct frame_limits lim = { 64u << 20, 64u << 20 };
  struct msgr_ops ops = { .on_frame = on_frame };
  msgr *m = msgr_new(b->base, &lim, &ops, &w);
  if (m && monc_auth_mode(b->monc) != AUTH_MODE_NONE)
    msgr_set_client_auth(m, monc_mon_auth_start, b->monc);   /* log in first */
  msgr_conn *c = m ? msgr_connect(m, mons[pick].addr) : NULL;
  if (!w.map || !c) {
    msgr_free(m);
    clustermap_free(w.map);
    return ENOMEM;
  }
  w.map->epoch = from;
  w.have_base = from == 0;
  Blk__Subscribe sub = BLK__SUBSCRIBE__INIT;
  sub.have_epoch = from;
  struct event *tev = NULL;
  if (count > 0) {
    tev = evtimer_new(b->base, on_timeout, &w);
    struct timeval tv = { b->timeout_ms / 1000, (b->timeout_ms % 1000) * 1000 };
    evtimer_add(tev, &tv);
  }
  r = msgr_call_pb(c, MSG_MON_SUBSCRIBE, (const ProtobufCMessage *)&sub, NULL, 0,
                   b->timeout_ms, sub_reply, &w);
  if (r == 0 && w.left != 0)
    event_base_dispatch(b->base);
  if (tev)
    event_free(tev);
  msgr_conn_put(c);
  msgr_free(m);
  clustermap_free(w.map);
  return r < 0 ? blkctl_exit_code(r) : w.err;
}
