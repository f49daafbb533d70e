/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl pg ...`, scrub and repair of PGs (docs/osd.md
 * "Scrub"):
 *   pg scrub PGID | deep-scrub PGID | repair PGID [--timeout SEC]
 *        ask the PG's primary to (deep-)scrub or repair it now; the answer
 *        comes when it is done and lists what was found inconsistent
 *   pg query PGID        state, last scrub times, inconsistencies
 *   pg ls [POOL]         the same, one line per PG
 * PGID is POOL.PG with the pool as id or name and the PG in hex ("1.1f").
 * Like object ops, the request goes straight to the primary computed
 * locally from the map (MSG_PG_SCRUB_CMD); a primary that changed answers
 * -ESTALE and the command retries with a fresh map.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/blkctl/blkctl.h"
#include "common/clustermap.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/pgmap.h"

struct pgref {
  uint32_t pool, pg;
  char pool_name[CM_MAX_NAME];
};

/* Parse PGID against map m: 0, or an exit code after a message. */
static int parse_pgid(const struct cluster_map *m, const char *s, struct pgref *out)
{
  const char *dot = strrchr(s, '.');
  if (!dot || dot == s || !dot[1])
    return blkctl_fail(EINVAL, "bad PGID '%s': expected POOL.PG (e.g. 1.1f or rbd.0)", s);
  char pool[CM_MAX_NAME + 1];
  size_t pl = (size_t)(dot - s);
  if (pl >= sizeof pool)
    return blkctl_fail(EINVAL, "bad PGID '%s': pool name too long", s);
  memcpy(pool, s, pl);
  pool[pl] = 0;
  char *end;
  errno = 0;
  unsigned long pg = strtoul(dot + 1, &end, 16);
  if (*end || errno || pg > UINT32_MAX || dot[1] == '-' || dot[1] == '+')
    return blkctl_fail(EINVAL, "bad PGID '%s': the PG number must be hexadecimal", s);
  const struct cm_pool *p = clustermap_pool_by_name(m, pool);
  if (!p) {
    errno = 0;
    unsigned long id = strtoul(pool, &end, 10);
    if (!*end && !errno && id <= UINT32_MAX)
      p = clustermap_pool_by_id(m, (uint32_t)id);
  }
  if (!p)
    return blkctl_fail(ENOENT, "bad PGID '%s': pool '%s' does not exist", s, pool);
  if (pg >= p->pg_num)
    return blkctl_fail(ENOENT, "bad PGID '%s': pool '%s' has %u PGs (0..%x)", s, p->name,
                       p->pg_num, p->pg_num - 1);
  out->pool = p->id;
  out->pg = (uint32_t)pg;
  snprintf(out->pool_name, sizeof out->pool_name, "%s", p->name);
  return 0;
}

static void fmt_time(char *buf, size_t n, int64_t ms)
{
  if (ms <= 0) {
    snprintf(buf, n, "never");
    return;
  }
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct pgctx {
  struct blkctl *b;
  msgr *msgr;
  struct cluster_map *map;
  struct pgmap *pm;
};

static void pgctx_drop_map(struct pgctx *x)
{
  pgmap_free(x->pm);
  clustermap_free(x->map);
  x->pm = NULL;
  x->map = NULL;
}

static int pgctx_map(struct pgctx *x)
{
  Blk__MonReply *rep;
  pgctx_drop_map(x);
  int r = blkctl_read_status(x->b, &rep, &x->map);
  if (r)
    return r;
  blk__mon_reply__free_unpacked(rep, NULL);
  x->pm = pgmap_build(x->map);
  if (!x->pm)
    return blkctl_fail(ENOMEM, "cannot compute placement");
  return 0;
}

/* Send cmd for ref to its primary; on success *out is the reply (free with
 * blk__pg_scrub_result__free_unpacked).  0 or an exit code. */
static int pg_call(struct pgctx *x, struct pgref *ref, Blk__PgScrubCmd__What what, int timeout_ms,
                   Blk__PgScrubResult **out, int32_t *primary)
{
  for (int attempt = 0;; attempt++) {
    const struct cm_pool *p = clustermap_pool_by_id(x->map, ref->pool);
    int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
    size_t nr = 0, nu = 0;
    if (!p || ref->pg >= p->pg_num)
      return blkctl_fail(ENOENT, "PG %u.%x no longer exists", ref->pool, ref->pg);
    if (pgmap_pg_sets(x->pm, x->map, p, ref->pg, raw, &nr, up, &nu) < 0 || nu == 0)
      return blkctl_fail(EAGAIN, "PG %u.%x has no OSD up (it is down)", ref->pool, ref->pg);
    const struct cm_osd *o = clustermap_osd(x->map, up[0]);
    if (!o || !o->addr[0])
      return blkctl_fail(EAGAIN, "the primary osd.%d of PG %u.%x has no address", up[0],
                         ref->pool, ref->pg);
    *primary = up[0];
    msgr_conn *c = msgr_connect(x->msgr, o->addr);
    if (!c)
      return blkctl_fail(ENOMEM, "cannot connect to osd.%d", up[0]);
    Blk__PgScrubCmd q = BLK__PG_SCRUB_CMD__INIT;
    q.pool = ref->pool;
    q.pg = ref->pg;
    q.epoch = x->map->epoch;
    q.what = what;
    struct msgr_frame *f = NULL;
    int r = msgr_call_sync(c, MSG_PG_SCRUB_CMD, (const ProtobufCMessage *)&q, NULL, 0, timeout_ms,
                           &f);
    msgr_conn_close(c);
    msgr_conn_put(c);
    if (r < 0)
      return blkctl_fail(blkctl_exit_code(r), "osd.%d (%s) did not answer for PG %u.%x: %s",
                         up[0], o->addr, ref->pool, ref->pg,
                         r == -ETIMEDOUT ? "timed out (is the PG active+clean?)" : strerror(-r));
    Blk__PgScrubResult *res = blk__pg_scrub_result__unpack(NULL, f->payload_len, f->payload);
    msgr_frame_free(f);
    if (!res)
      return blkctl_fail(EPROTO, "osd.%d sent a malformed reply", up[0]);
    if (res->err == -ESTALE && attempt < 5) {
      blk__pg_scrub_result__free_unpacked(res, NULL);
      struct timespec ts = { 0, 300 * 1000 * 1000 };
      nanosleep(&ts, NULL);
      if ((r = pgctx_map(x)))
        return r;
      continue;
    }
    if (res->err < 0) {
      int code = blkctl_fail(blkctl_exit_code(res->err), "PG %u.%x: %s", ref->pool, ref->pg,
                             res->message[0] ? res->message : strerror(-res->err));
      blk__pg_scrub_result__free_unpacked(res, NULL);
      return code;
    }
    *out = res;
    return 0;
  }
}

static void print_result(struct blkctl *b, const struct pgref *ref, int32_t primary,
                         const char *what, const Blk__PgScrubResult *r)
{
  char ls[40], ld[40];
  fmt_time(ls, sizeof ls, r->last_scrub_ms);
  fmt_time(ld, sizeof ld, r->last_deep_scrub_ms);
  if (b->json) {
    json_begin_obj();
    char pgid[32];
    snprintf(pgid, sizeof pgid, "%u.%x", ref->pool, ref->pg);
    json_str("pgid", pgid);
    json_str("pool", ref->pool_name);
    json_int("primary", primary);
    json_str("state", r->state);
    json_str("last_scrub", ls);
    json_str("last_deep_scrub", ld);
    json_uint("objects", r->objects);
    json_uint("bytes", r->bytes);
    json_int("duration_ms", r->duration_ms);
    json_uint("inconsistent", r->inconsistent);
    json_uint("repaired", r->repaired);
    json_begin_arr("errors");
    for (size_t i = 0; i < r->n_errors; i++)
      json_str(NULL, r->errors[i]);
    json_end_arr();
    json_end_obj();
    json_done();
    return;
  }
  if (what)
    printf("pg %u.%x %s done on osd.%d: %llu objects, %u inconsistent, %llu bytes read in "
           "%lld ms%s\n",
           ref->pool, ref->pg, what, primary, (unsigned long long)r->objects, r->inconsistent,
           (unsigned long long)r->bytes, (long long)r->duration_ms,
           r->repaired ? "" : "");
  if (r->repaired)
    printf("pg %u.%x repaired %u objects\n", ref->pool, ref->pg, r->repaired);
  printf("pg %u.%x state %s primary osd.%d\n", ref->pool, ref->pg, r->state, primary);
  printf("  last scrub %s, last deep scrub %s, inconsistent %u\n", ls, ld, r->inconsistent);
  for (size_t i = 0; i < r->n_errors; i++)
    printf("  %s\n", r->errors[i]);
}

static int pg_ls(struct pgctx *x, const char *pool_name)
{
  const struct cluster_map *m = x->map;
  if (pool_name && !clustermap_pool_by_name(m, pool_name))
    return blkctl_fail(ENOENT, "pool '%s' does not exist", pool_name);
  if (x->b->json)
    json_begin_arr(NULL);
  else
    printf("%-8s %-40s %-5s %8s %5s %-20s %-20s\n", "PG", "STATE", "PRIM", "OBJECTS", "INCON",
           "LAST_SCRUB", "LAST_DEEP_SCRUB");
  int rc = 0;
  /* pg_call may refetch the map (x->map changes): always index the current one */
  for (size_t i = 0; x->map && i < x->map->n_pools; i++) {
    if (pool_name && strcmp(x->map->pools[i].name, pool_name))
      continue;
    uint32_t pool_id = x->map->pools[i].id, n = x->map->pools[i].pg_num;
    for (uint32_t pg = 0; pg < n && x->map && i < x->map->n_pools; pg++) {
      struct pgref ref = { pool_id, pg, "" };
      snprintf(ref.pool_name, sizeof ref.pool_name, "%s", x->map->pools[i].name);
      if (x->map->pools[i].id != pool_id)
        break;
      Blk__PgScrubResult *r = NULL;
      int32_t prim = -1;
      int e = pg_call(x, &ref, BLK__PG_SCRUB_CMD__WHAT__QUERY, x->b->timeout_ms, &r, &prim);
      if (e) {
        rc = e;
        continue;
      }
      char ls[40], ld[40], id[32];
      fmt_time(ls, sizeof ls, r->last_scrub_ms);
      fmt_time(ld, sizeof ld, r->last_deep_scrub_ms);
      snprintf(id, sizeof id, "%u.%x", pool_id, pg);
      if (x->b->json) {
        json_begin_obj();
        json_str("pgid", id);
        json_str("state", r->state);
        json_int("primary", prim);
        json_uint("objects", r->objects);
        json_uint("inconsistent", r->inconsistent);
        json_str("last_scrub", ls);
        json_str("last_deep_scrub", ld);
        json_end_obj();
      } else {
        printf("%-8s %-40s %-5d %8llu %5u %-20s %-20s\n", id, r->state, prim,
               (unsigned long long)r->objects, r->inconsistent, ls, ld);
      }
      blk__pg_scrub_result__free_unpacked(r, NULL);
    }
  }
  if (x->b->json) {
    json_end_arr();
    json_done();
  }
  return rc;
}

int cmd_pg(struct blkctl *b, int argc, char **argv)
{
  const char *usage = "usage: blkctl pg scrub|deep-scrub|repair|query PGID [--timeout SEC] | "
                      "pg ls [POOL]";
  int timeout_s = 300;
  char *args[4];
  int na = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
      char *end;
      long t = strtol(argv[++i], &end, 10);
      if (*end || t <= 0 || t > 86400)
        return blkctl_fail(EINVAL, "bad --timeout '%s' (seconds, 1..86400)", argv[i]);
      timeout_s = (int)t;
    } else if (na < 4) {
      args[na++] = argv[i];
    } else {
      return blkctl_fail(EINVAL, "%s", usage);
    }
  }
  if (na < 1)
    return blkctl_fail(EINVAL, "%s", usage);
  Blk__PgScrubCmd__What what;
  const char *verb = args[0];
  bool ls = !strcmp(verb, "ls");
  if (!strcmp(verb, "scrub"))
    what = BLK__PG_SCRUB_CMD__WHAT__SCRUB;
  else if (!strcmp(verb, "deep-scrub"))
    what = BLK__PG_SCRUB_CMD__WHAT__DEEP;
  else if (!strcmp(verb, "repair"))
    what = BLK__PG_SCRUB_CMD__WHAT__REPAIR;
  else if (!strcmp(verb, "query"))
    what = BLK__PG_SCRUB_CMD__WHAT__QUERY;
  else if (ls)
    what = BLK__PG_SCRUB_CMD__WHAT__QUERY;
  else
    return blkctl_fail(EINVAL, "unknown pg command '%s'; %s", verb, usage);
  if ((ls && na > 2) || (!ls && na != 2))
    return blkctl_fail(EINVAL, "%s", usage);
  int r = blkctl_connect(b);
  if (r)
    return r;
  struct pgctx x = { .b = b };
  struct frame_limits lim = {
    (uint32_t)config_get_int(b->cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(b->cfg, "msgr_max_data"),
  };
  x.msgr = msgr_new(b->base, &lim, NULL, NULL);
  if (!x.msgr)
    return blkctl_fail(ENOMEM, "out of memory");
  msgr_set_timeouts(x.msgr, (int)config_get_int(b->cfg, "msgr_connect_timeout"), 500);
  /* OSDs accept only authenticated connections: present an authorizer */
  if (monc_auth_mode(b->monc) != AUTH_MODE_NONE)
    msgr_set_client_auth(x.msgr, monc_osd_auth_start, b->monc);
  if ((r = pgctx_map(&x)))
    goto out;
  if (ls) {
    r = pg_ls(&x, na == 2 ? args[1] : NULL);
    goto out;
  }
  struct pgref ref;
  if ((r = parse_pgid(x.map, args[1], &ref)))
    goto out;
  Blk__PgScrubResult *res = NULL;
  int32_t prim = -1;
  r = pg_call(&x, &ref, what, what == BLK__PG_SCRUB_CMD__WHAT__QUERY ? b->timeout_ms
                                                                      : timeout_s * 1000,
              &res, &prim);
  if (r)
    goto out;
  print_result(b, &ref, prim, what == BLK__PG_SCRUB_CMD__WHAT__QUERY ? NULL : verb, res);
  blk__pg_scrub_result__free_unpacked(res, NULL);
out:
  pgctx_drop_map(&x);
  msgr_free(x.msgr);
  return r;
}
