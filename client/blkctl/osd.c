/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl osd ...`.
 *   osd tree                  hierarchy with up/in and weights (STATUS read)
 *   osd df                    each OSD's data area: size, used, avail, %use
 *                             and nearfull/full, as last reported to the
 *                             leader (STATUS read; docs/osd.md "Full OSDs")
 *   osd out N | in N          OsdMark OUT/IN (a Raft-committed change)
 *   osd reweight N W          OsdReweight, W in [0, 1000] (1.0 = 1 TiB)
 *   osd blocklist add NONCE [--expire S] | ls | rm NONCE
 *                             BlocklistChange (fencing, docs/osd.md)
 *   osd map POOL OBJECT       PG, up set, acting set and primary computed
 *                             locally from the map (common/pgmap.h), as
 *                             every client and OSD computes them
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/blkctl/blkctl.h"
#include "common/clustermap.h"
#include "common/pgmap.h"

static int cmp_host(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int osd_tree(struct blkctl *b)
{
  Blk__MonReply *rep;
  struct cluster_map *m;
  int r = blkctl_read_status(b, &rep, &m);
  if (r)
    return r;
  /* distinct hosts, sorted */
  const char **hosts = calloc(m->n_osds + 1, sizeof *hosts);
  size_t nh = 0;
  double total_w = 0;
  for (size_t i = 0; hosts && i < m->n_osds; i++) {
    if (!m->osds[i].exists)
      continue;
    total_w += m->osds[i].weight / 65536.0;
    bool seen = false;
    for (size_t k = 0; k < nh; k++)
      seen |= !strcmp(hosts[k], m->osds[i].host);
    if (!seen)
      hosts[nh++] = m->osds[i].host;
  }
  if (hosts)
    qsort(hosts, nh, sizeof *hosts, cmp_host);
  if (b->json) {
    json_begin_obj();
    json_begin_arr("nodes");
    json_begin_obj();
    json_int("id", -1);
    json_str("name", "default");
    json_str("type", "root");
    json_double("weight", total_w);
    json_end_obj();
    for (size_t k = 0; hosts && k < nh; k++) {
      double hw = 0;
      for (size_t i = 0; i < m->n_osds; i++)
        if (m->osds[i].exists && !strcmp(m->osds[i].host, hosts[k]))
          hw += m->osds[i].weight / 65536.0;
      json_begin_obj();
      json_int("id", -2 - (long long)k);
      json_str("name", hosts[k]);
      json_str("type", "host");
      json_double("weight", hw);
      json_end_obj();
      for (size_t i = 0; i < m->n_osds; i++) {
        const struct cm_osd *o = &m->osds[i];
        if (!o->exists || strcmp(o->host, hosts[k]))
          continue;
        json_begin_obj();
        json_int("id", o->id);
        json_str("type", "osd");
        json_str("host", o->host);
        json_double("weight", o->weight / 65536.0);
        json_str("status", o->up ? "up" : "down");
        json_bool("in", o->in);
        json_str("addr", o->addr);
        json_end_obj();
      }
    }
    json_end_arr();
    json_uint("epoch", m->epoch);
    json_end_obj();
    json_done();
  } else {
    printf("%-6s %-9s %-22s %-7s %s\n", "ID", "WEIGHT", "TYPE NAME", "STATUS", "IN");
    printf("%-6d %-9.5f %-22s\n", -1, total_w, "root default");
    for (size_t k = 0; hosts && k < nh; k++) {
      double hw = 0;
      for (size_t i = 0; i < m->n_osds; i++)
        if (m->osds[i].exists && !strcmp(m->osds[i].host, hosts[k]))
          hw += m->osds[i].weight / 65536.0;
      char label[96];
      snprintf(label, sizeof label, "    host %s", hosts[k]);
      printf("%-6d %-9.5f %-22s\n", -2 - (int)k, hw, label);
      for (size_t i = 0; i < m->n_osds; i++) {
        const struct cm_osd *o = &m->osds[i];
        if (!o->exists || strcmp(o->host, hosts[k]))
          continue;
        snprintf(label, sizeof label, "        osd.%d", o->id);
        printf("%-6d %-9.5f %-22s %-7s %s\n", o->id, o->weight / 65536.0, label,
               o->up ? "up" : "down", o->in ? "in" : "out");
      }
    }
  }
  free(hosts);
  clustermap_free(m);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

static const Blk__OsdSpace *space_of(const Blk__MonReply *rep, int32_t id)
{
  for (size_t i = 0; i < rep->n_osd_space; i++)
    if (rep->osd_space[i]->osd == id)
      return rep->osd_space[i];
  return NULL;
}

static int osd_df(struct blkctl *b)
{
  Blk__MonReply *rep;
  struct cluster_map *m;
  int r = blkctl_read_status(b, &rep, &m);
  if (r)
    return r;
  static const char *const state[] = { "ok", "nearfull", "full" };
  if (b->json) {
    json_begin_obj();
    json_begin_arr("nodes");
  } else {
    printf("%-6s %-9s %10s %10s %10s %6s %-8s %s\n", "ID", "WEIGHT", "SIZE_MiB", "USED_MiB",
           "AVAIL_MiB", "%USE", "SPACE", "STATUS");
  }
  for (size_t i = 0; i < m->n_osds; i++) {
    const struct cm_osd *o = &m->osds[i];
    if (!o->exists)
      continue;
    const Blk__OsdSpace *sp = space_of(rep, o->id);
    double size = sp ? (double)sp->total_bytes / 1048576 : 0;
    double used = sp ? (double)sp->used_bytes / 1048576 : 0;
    double pct = sp && sp->total_bytes ? 100.0 * (double)sp->used_bytes / (double)sp->total_bytes : 0;
    const char *sps = sp ? state[sp->space > 2 ? 2 : sp->space] : "unknown";
    if (b->json) {
      json_begin_obj();
      json_int("id", o->id);
      json_double("weight", o->weight / 65536.0);
      json_bool("reported", sp != NULL);
      json_uint("bytes_total", sp ? sp->total_bytes : 0);
      json_uint("bytes_used", sp ? sp->used_bytes : 0);
      json_double("utilization", pct);
      json_str("space", sps);
      json_str("status", o->up ? "up" : "down");
      json_end_obj();
    } else if (sp) {
      printf("%-6d %-9.5f %10.1f %10.1f %10.1f %6.2f %-8s %s\n", o->id, o->weight / 65536.0,
             size, used, size - used, pct, sps, o->up ? "up" : "down");
    } else {
      printf("%-6d %-9.5f %10s %10s %10s %6s %-8s %s\n", o->id, o->weight / 65536.0, "-", "-",
             "-", "-", sps, o->up ? "up" : "down");
    }
  }
  if (b->json) {
    json_end_arr();
    json_end_obj();
    json_done();
  }
  clustermap_free(m);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

static int parse_id(const char *s, int32_t *id)
{
  char *end;
  long v = strtol(s, &end, 10);
  if (!strncmp(s, "osd.", 4))
    v = strtol(s + 4, &end, 10);
  if (*end || end == s || v < 0 || v >= CM_MAX_OSDS)
    return -1;
  *id = (int32_t)v;
  return 0;
}

static int osd_change(struct blkctl *b, Blk__MapTxn *txn, const char *what)
{
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  Blk__MonReply *rep;
  cmd.txn = txn;
  int r = blkctl_mon_command(b, &cmd, &rep);
  if (r)
    return r;
  if (b->json) {
    json_begin_obj();
    json_str("result", what);
    json_uint("epoch", rep->epoch);
    json_end_obj();
    json_done();
  } else {
    printf("%s (epoch %llu)\n", what, (unsigned long long)rep->epoch);
  }
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

static void print_set(const int32_t *s, size_t n)
{
  putchar('[');
  for (size_t i = 0; i < n; i++)
    printf("%s%d", i ? "," : "", s[i]);
  putchar(']');
}

static int osd_map(struct blkctl *b, const char *pool_name, const char *obj)
{
  Blk__MonReply *rep;
  struct cluster_map *m;
  int r = blkctl_read_status(b, &rep, &m);
  if (r)
    return r;
  blk__mon_reply__free_unpacked(rep, NULL);
  const struct cm_pool *pool = clustermap_pool_by_name(m, pool_name);
  if (!pool) {
    clustermap_free(m);
    return blkctl_fail(ENOENT, "pool '%s' does not exist", pool_name);
  }
  struct pgmap *pm = pgmap_build(m);
  uint32_t pg;
  int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr = 0, nu = 0;
  if (!pm || pgmap_object_pg(pool, obj, &pg) < 0 ||
      pgmap_pg_sets(pm, m, pool, pg, raw, &nr, up, &nu) < 0) {
    pgmap_free(pm);
    clustermap_free(m);
    return blkctl_fail(EINVAL, "cannot compute placement");
  }
  if (b->json) {
    json_begin_obj();
    json_uint("epoch", m->epoch);
    json_str("pool", pool->name);
    json_uint("pool_id", pool->id);
    json_str("objname", obj);
    char pgid[32];
    snprintf(pgid, sizeof pgid, "%u.%x", pool->id, pg);
    json_str("pgid", pgid);
    json_uint("pg", pg);
    json_begin_arr("raw");
    for (size_t i = 0; i < nr; i++)
      json_int(NULL, raw[i]);
    json_end_arr();
    json_begin_arr("up");
    for (size_t i = 0; i < nu; i++)
      json_int(NULL, up[i]);
    json_end_arr();
    json_int("up_primary", nu ? up[0] : -1);
    json_begin_arr("acting");
    for (size_t i = 0; i < nu; i++)
      json_int(NULL, up[i]);
    json_end_arr();
    json_int("acting_primary", nu ? up[0] : -1);
    json_end_obj();
    json_done();
  } else {
    printf("osdmap e%llu pool '%s' (%u) object '%s' -> pg %u.%x -> up (",
           (unsigned long long)m->epoch, pool->name, pool->id, obj, pool->id, pg);
    print_set(up, nu);
    printf(", p%d) acting (", nu ? up[0] : -1);
    print_set(up, nu);
    printf(", p%d)\n", nu ? up[0] : -1);
  }
  pgmap_free(pm);
  clustermap_free(m);
  return 0;
}

/* osd blocklist add NONCE [--expire SECONDS] | ls | rm NONCE */
static int osd_blocklist(struct blkctl *b, int argc, char **argv)
{
  static const char *usage =
      "usage: blkctl osd blocklist add NONCE [--expire SECONDS] | blocklist ls | "
      "blocklist rm NONCE";
  if (argc == 3 && !strcmp(argv[2], "ls")) {
    Blk__MonReply *rep;
    struct cluster_map *m;
    int r = blkctl_read_status(b, &rep, &m);
    if (r)
      return r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (b->json) {
      json_begin_obj();
      json_uint("epoch", m->epoch);
      json_begin_arr("blocklist");
    }
    for (size_t i = 0; i < m->n_blocklist; i++) {
      const struct cm_blocklist *e = &m->blocklist[i];
      if (e->expire_ms && e->expire_ms <= now)
        continue;   /* expired: no longer enforced */
      if (b->json) {
        json_begin_obj();
        json_str("nonce", e->nonce);
        json_int("expire_ms", e->expire_ms);
        json_end_obj();
      } else if (e->expire_ms) {
        printf("%s expires in %lld s\n", e->nonce, (e->expire_ms - now + 999) / 1000);
      } else {
        printf("%s\n", e->nonce);
      }
    }
    if (b->json) {
      json_end_arr();
      json_end_obj();
      json_done();
    }
    blk__mon_reply__free_unpacked(rep, NULL);
    clustermap_free(m);
    return 0;
  }
  bool add = argc >= 4 && !strcmp(argv[2], "add"), rm = argc == 4 && !strcmp(argv[2], "rm");
  if (!add && !rm)
    return blkctl_fail(EINVAL, "%s", usage);
  uint32_t expire = 0;
  if (add && argc == 6 && !strcmp(argv[4], "--expire")) {
    char *end;
    unsigned long v = strtoul(argv[5], &end, 10);
    if (*end || end == argv[5] || argv[5][0] == '-' || v == 0 || v > 10u * 365 * 86400)
      return blkctl_fail(EINVAL, "bad --expire '%s' (1..315360000 seconds)", argv[5]);
    expire = (uint32_t)v;
  } else if (add && argc != 4) {
    return blkctl_fail(EINVAL, "%s", usage);
  }
  if (!clustermap_valid_nonce(argv[3]))
    return blkctl_fail(EINVAL, "bad client nonce '%s' (1-63 of 0-9 A-Z a-z _ -)", argv[3]);
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__BlocklistChange bc = BLK__BLOCKLIST_CHANGE__INIT;
  bc.nonce = argv[3];
  bc.remove = rm;
  bc.expire_s = expire;
  txn.blocklist = &bc;
  char what[160];
  if (rm)
    snprintf(what, sizeof what, "un-blocklisted client %s", argv[3]);
  else if (expire)
    snprintf(what, sizeof what, "blocklisted client %s for %u s", argv[3], expire);
  else
    snprintf(what, sizeof what, "blocklisted client %s", argv[3]);
  return osd_change(b, &txn, what);
}

int cmd_osd(struct blkctl *b, int argc, char **argv)
{
  static const char *usage =
      "usage: blkctl osd tree | osd df | osd out|in|down N... | osd reweight N WEIGHT | "
      "osd map POOL OBJECT | osd blocklist add NONCE [--expire SECONDS] | osd blocklist ls | "
      "osd blocklist rm NONCE";
  if (argc == 2 && !strcmp(argv[1], "tree"))
    return osd_tree(b);
  if (argc == 2 && !strcmp(argv[1], "df"))
    return osd_df(b);
  if (argc >= 2 && !strcmp(argv[1], "blocklist"))
    return osd_blocklist(b, argc, argv);
  if (argc == 4 && !strcmp(argv[1], "map"))
    return osd_map(b, argv[2], argv[3]);
  int32_t id;
  if (argc >= 3 && argc <= 66 && (!strcmp(argv[1], "out") || !strcmp(argv[1], "in") ||
                                   !strcmp(argv[1], "down"))) {
    int32_t ids[64];
    for (int i = 2; i < argc; i++)
      if (parse_id(argv[i], &ids[i - 2]) < 0)
        return blkctl_fail(EINVAL, "bad osd id '%s'", argv[i]);
    Blk__MapTxn txn = BLK__MAP_TXN__INIT;
    Blk__OsdMark mk = BLK__OSD_MARK__INIT;
    mk.ids = ids;
    mk.n_ids = (size_t)(argc - 2);
    mk.what = !strcmp(argv[1], "out") ? BLK__OSD_MARK__WHAT__OUT
              : !strcmp(argv[1], "in") ? BLK__OSD_MARK__WHAT__IN : BLK__OSD_MARK__WHAT__DOWN;
    txn.osd_mark = &mk;
    char what[128];
    int n = snprintf(what, sizeof what, "marked");
    for (int i = 2; i < argc && n < (int)sizeof what - 16; i++)
      n += snprintf(what + n, sizeof what - (size_t)n, " osd.%d", ids[i - 2]);
    snprintf(what + n, sizeof what - (size_t)n, " %s", argv[1]);
    return osd_change(b, &txn, what);
  }
  if (argc == 4 && !strcmp(argv[1], "reweight")) {
    if (parse_id(argv[2], &id) < 0)
      return blkctl_fail(EINVAL, "bad osd id '%s'", argv[2]);
    char *end;
    double w = strtod(argv[3], &end);
    if (*end || end == argv[3] || w < 0 || w > 1000)
      return blkctl_fail(EINVAL, "bad weight '%s' (0..1000, 1.0 = 1 TiB)", argv[3]);
    Blk__MapTxn txn = BLK__MAP_TXN__INIT;
    Blk__OsdReweight rw = BLK__OSD_REWEIGHT__INIT;
    rw.id = id;
    rw.weight = (uint32_t)(w * 65536.0 + 0.5);
    txn.osd_reweight = &rw;
    char what[64];
    snprintf(what, sizeof what, "reweighted osd.%d to %.5f", id, rw.weight / 65536.0);
    return osd_change(b, &txn, what);
  }
  return blkctl_fail(EINVAL, "%s", usage);
}
