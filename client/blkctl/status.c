/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: read-only views of the cluster: `status`, `mon stat`
 * (`osd ...` is in osd.c).  Each is one linearizable read from the leader (MonCommand
 * read STATUS), rendered as text or JSON.  Health is derived here from
 * the map and the leader's quorum view:
 *   HEALTH_OK    every monitor in quorum, every OSD up and in, every PG
 *                reported active+clean by its primary
 *   HEALTH_WARN  a monitor out of quorum, OSDs down/out, no OSDs yet, PGs
 *                not active+clean (or not reported yet), OSDs nearfull,
 *                the monitors' map history trimmed (mon_map_history_max)
 *                past the last start of some PGs
 *   HEALTH_ERR   an OSD full (its PGs refuse new data: docs/osd.md
 *                "Full OSDs")
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/blkctl/blkctl.h"
#include "common/clustermap.h"

int blkctl_read_status(struct blkctl *b, Blk__MonReply **rep, struct cluster_map **map)
{
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  cmd.read = BLK__MON_COMMAND__READ__STATUS;
  int r = blkctl_mon_command(b, &cmd, rep);
  if (r)
    return r;
  if (!(*rep)->map || !(*rep)->status || clustermap_from_pb((*rep)->map, map) < 0) {
    blk__mon_reply__free_unpacked(*rep, NULL);
    return blkctl_fail(EPROTO, "the monitor sent an invalid map");
  }
  return 0;
}

static bool in_quorum(const Blk__MonStatus *st, uint32_t rank)
{
  for (size_t i = 0; i < st->n_quorum; i++)
    if (st->quorum[i] == rank)
      return true;
  return false;
}

static const char *mon_name(const struct cluster_map *m, uint32_t rank)
{
  for (size_t i = 0; i < m->n_mons; i++)
    if (m->mons[i].rank == rank)
      return m->mons[i].name;
  return "?";
}

struct health {
  char lines[8][200];
  int n;
  bool err;              /* HEALTH_ERR rather than HEALTH_WARN */
};

static void health_add(struct health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void health_add(struct health *h, const char *fmt, ...)
{
  if (h->n == 8)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->lines[h->n++], sizeof h->lines[0], fmt, ap);
  va_end(ap);
}

static void compute_health(const struct cluster_map *m, const Blk__MonReply *rep,
                           struct health *h)
{
  const Blk__MonStatus *st = rep->status;
  unsigned total, up, in;
  if (st->n_quorum < m->n_mons) {
    char down[256] = "";
    for (size_t i = 0; i < m->n_mons; i++)
      if (!in_quorum(st, m->mons[i].rank))
        snprintf(down + strlen(down), sizeof down - strlen(down), "%s%s", down[0] ? "," : "",
                 m->mons[i].name);
    health_add(h, "%zu/%zu mons down, quorum %zu: out of quorum: %s",
               m->n_mons - st->n_quorum, m->n_mons, st->n_quorum, down);
  }
  clustermap_osd_counts(m, &total, &up, &in);
  unsigned pgs = 0;
  for (size_t i = 0; i < m->n_pools; i++)
    pgs += m->pools[i].pg_num;
  if (total == 0)
    health_add(h, "no OSDs in the cluster%s", pgs ? "; every PG is inactive (unplaced)" : "");
  if (up < total)
    health_add(h, "%u osds down", total - up);
  if (in < total)
    health_add(h, "%u osds out", total - in);
  /* space: one line for the full OSDs, one for the nearfull ones */
  for (uint32_t want = 2; want >= 1; want--) {
    char ids[160] = "";
    unsigned cnt = 0;
    for (size_t i = 0; i < rep->n_osd_space; i++) {
      const Blk__OsdSpace *sp = rep->osd_space[i];
      if (sp->space != want || !sp->total_bytes)
        continue;
      cnt++;
      size_t l = strlen(ids);
      if (l < sizeof ids - 24)
        snprintf(ids + l, sizeof ids - l, "%sosd.%d (%llu%%)", l ? ", " : "", sp->osd,
                 (unsigned long long)(sp->used_bytes * 100 / sp->total_bytes));
      else if (ids[l - 1] != '.')
        snprintf(ids + l, sizeof ids - l, ", ...");
    }
    if (cnt) {
      health_add(h, "%u osd%s %s: %s", cnt, cnt > 1 ? "s" : "", want == 2 ? "full" : "nearfull",
                 ids);
      if (want == 2)
        h->err = true;
    }
  }
  /* PGs: every one must be reported active+clean by its primary */
  if (total && pgs) {
    unsigned clean = 0, known = 0;
    for (size_t i = 0; i < rep->n_pg_states; i++) {
      known += rep->pg_states[i]->count;
      if (!strcmp(rep->pg_states[i]->state, "active+clean"))
        clean += rep->pg_states[i]->count;
    }
    if (clean < pgs)
      health_add(h, "%u of %u pgs not active+clean (%u not reported yet)", pgs - clean, pgs,
                 pgs > known ? pgs - known : 0);
  }
  if (rep->history_trimmed_pgs)
    health_add(h, "map history trimmed past the last activation of %u PGs (their peering may "
               "wait or be incomplete)", rep->history_trimmed_pgs);
}

int cmd_status(struct blkctl *b, int argc, char **argv)
{
  if (argc != 1)
    return blkctl_fail(EINVAL, "usage: blkctl status [--format json]");
  Blk__MonReply *rep;
  struct cluster_map *m;
  int r = blkctl_read_status(b, &rep, &m);
  if (r)
    return r;
  const Blk__MonStatus *st = rep->status;
  struct health h = { .n = 0 };
  compute_health(m, rep, &h);
  unsigned total, up, in, pgs = 0;
  clustermap_osd_counts(m, &total, &up, &in);
  for (size_t i = 0; i < m->n_pools; i++)
    pgs += m->pools[i].pg_num;
  const char *hs = h.err ? "HEALTH_ERR" : h.n ? "HEALTH_WARN" : "HEALTH_OK";
  uint64_t used = 0, size = 0;
  for (size_t i = 0; i < rep->n_osd_space; i++) {
    used += rep->osd_space[i]->used_bytes;
    size += rep->osd_space[i]->total_bytes;
  }
  if (b->json) {
    json_begin_obj();
    json_str("fsid", m->fsid);
    json_key_obj("health");
    json_str("status", hs);
    json_begin_arr("checks");
    for (int i = 0; i < h.n; i++)
      json_str(NULL, h.lines[i]);
    json_end_arr();
    json_end_obj();
    json_uint("epoch", m->epoch);
    json_key_obj("map_history");
    json_uint("first", rep->history_first);
    json_uint("floor", rep->history_floor);
    json_uint("trimmed_pgs", rep->history_trimmed_pgs);
    json_end_obj();
    json_key_obj("monmap");
    json_uint("num_mons", m->n_mons);
    json_str("leader", mon_name(m, st->leader_rank));
    json_uint("term", st->term);
    json_begin_arr("quorum_names");
    for (size_t i = 0; i < st->n_quorum; i++)
      json_str(NULL, mon_name(m, st->quorum[i]));
    json_end_arr();
    json_end_obj();
    json_key_obj("osdmap");
    json_uint("num_osds", total);
    json_uint("num_up_osds", up);
    json_uint("num_in_osds", in);
    json_end_obj();
    json_key_obj("pgmap");
    json_uint("num_pools", m->n_pools);
    json_uint("num_pgs", pgs);
    json_uint("recovery_objects_left", rep->recovery_left);
    json_uint("recovery_objects_total", rep->recovery_total);
    json_uint("bytes_used", used);
    json_uint("bytes_avail", size - used);
    json_uint("bytes_total", size);
    json_begin_arr("pgs_by_state");
    unsigned known = 0;
    for (size_t i = 0; i < rep->n_pg_states; i++) {
      json_begin_obj();
      json_str("state_name", rep->pg_states[i]->state);
      json_uint("count", rep->pg_states[i]->count);
      json_end_obj();
      known += rep->pg_states[i]->count;
    }
    if (pgs > known) {
      json_begin_obj();
      json_str("state_name", total ? "unknown" : "inactive");
      json_uint("count", pgs - known);
      json_end_obj();
    }
    json_end_arr();
    json_end_obj();
    json_end_obj();
    json_done();
  } else {
    printf("  cluster:\n    id:     %s\n    health: %s\n", m->fsid, hs);
    for (int i = 0; i < h.n; i++)
      printf("            %s\n", h.lines[i]);
    printf("\n  services:\n    mon: %zu daemons, quorum ", m->n_mons);
    for (size_t i = 0; i < st->n_quorum; i++)
      printf("%s%s", i ? "," : "", mon_name(m, st->quorum[i]));
    printf(" (leader %s, term %llu)\n", mon_name(m, st->leader_rank),
           (unsigned long long)st->term);
    printf("    osd: %u osds: %u up, %u in; epoch e%llu\n", total, up, in,
           (unsigned long long)m->epoch);
    printf("    map history: epochs %llu..%llu kept (floor %llu)\n",
           (unsigned long long)rep->history_first, (unsigned long long)m->epoch,
           (unsigned long long)rep->history_floor);
    printf("\n  data:\n    pools:   %zu pools, %u pgs\n", m->n_pools, pgs);
    unsigned known = 0;
    for (size_t i = 0; i < rep->n_pg_states; i++) {
      printf("    %s %u %s\n", i ? "        " : "pgs:    ", rep->pg_states[i]->count,
             rep->pg_states[i]->state);
      known += rep->pg_states[i]->count;
    }
    if (pgs > known)
      printf("    %s %u %s\n", known ? "        " : "pgs:    ", pgs - known,
             total ? "unknown (not reported by a primary)" : "inactive (no OSDs to place them on)");
    if (rep->recovery_total)
      printf("    recovery: %llu of %llu objects left (%.0f%% done)\n",
             (unsigned long long)rep->recovery_left, (unsigned long long)rep->recovery_total,
             100.0 * (double)(rep->recovery_total - rep->recovery_left) /
                 (double)rep->recovery_total);
    if (size)
      printf("    usage:   %.1f MiB used, %.1f MiB / %.1f MiB avail (up OSDs' data areas)\n",
             (double)used / 1048576, (double)(size - used) / 1048576, (double)size / 1048576);
  }
  clustermap_free(m);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

int cmd_mon(struct blkctl *b, int argc, char **argv)
{
  if (argc >= 2 && !strcmp(argv[1], "bench"))
    return cmd_mon_bench(b, argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "watch"))
    return cmd_mon_watch(b, argc, argv);
  if (argc != 2 || strcmp(argv[1], "stat") != 0)
    return blkctl_fail(EINVAL, "usage: blkctl mon stat|bench|watch [--format json]");
  Blk__MonReply *rep;
  struct cluster_map *m;
  int r = blkctl_read_status(b, &rep, &m);
  if (r)
    return r;
  const Blk__MonStatus *st = rep->status;
  if (b->json) {
    json_begin_obj();
    json_uint("epoch", m->epoch);
    json_str("fsid", m->fsid);
    json_str("leader", mon_name(m, st->leader_rank));
    json_uint("leader_rank", st->leader_rank);
    json_uint("term", st->term);
    json_uint("commit_index", st->commit_index);
    json_begin_arr("quorum");
    for (size_t i = 0; i < st->n_quorum; i++)
      json_str(NULL, mon_name(m, st->quorum[i]));
    json_end_arr();
    json_begin_arr("mons");
    for (size_t i = 0; i < m->n_mons; i++) {
      json_begin_obj();
      json_str("name", m->mons[i].name);
      json_uint("rank", m->mons[i].rank);
      json_str("addr", m->mons[i].addr);
      json_bool("in_quorum", in_quorum(st, m->mons[i].rank));
      json_end_obj();
    }
    json_end_arr();
    json_end_obj();
    json_done();
  } else {
    printf("e%llu: %zu mons at {", (unsigned long long)m->epoch, m->n_mons);
    for (size_t i = 0; i < m->n_mons; i++)
      printf("%s%s=%s", i ? "," : "", m->mons[i].name, m->mons[i].addr);
    printf("}, term %llu, leader %u %s, quorum ", (unsigned long long)st->term,
           st->leader_rank, mon_name(m, st->leader_rank));
    for (size_t i = 0; i < st->n_quorum; i++)
      printf("%s%s", i ? "," : "", mon_name(m, st->quorum[i]));
    printf("\n");
  }
  clustermap_free(m);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}
