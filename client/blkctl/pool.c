/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl pool create|ls|rm`.  Arguments are checked here
 * first for clear messages (pg_num a number in range, size >= min_size);
 * the monitors check again (they are the authority: pool exists, limits).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/blkctl/blkctl.h"
#include "common/clustermap.h"

static int parse_u32(const char *s, const char *what, uint32_t max, uint32_t *out)
{
  char *end;
  if (!s || !*s || *s == '-' || *s == '+')
    return blkctl_fail(EINVAL, "%s must be a positive number, got '%s'", what, s ? s : "");
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end)
    return blkctl_fail(EINVAL, "%s must be a positive number, got '%s'", what, s);
  if (v == 0 || v > max)
    return blkctl_fail(EINVAL, "%s %s out of range (1..%u)", what, s, max);
  *out = (uint32_t)v;
  return 0;
}

static int pool_create(struct blkctl *b, int argc, char **argv)
{
  const char *usage = "usage: blkctl pool create NAME PG_NUM [--size N] [--min-size N] "
                      "[--failure-domain host|osd]";
  const char *pos[2];
  int npos = 0;
  Blk__PoolCreate pc = BLK__POOL_CREATE__INIT;
  uint32_t size = 3, min_size = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      if (parse_u32(argv[++i], "size", CM_MAX_POOL_SIZE, &size))
        return EINVAL;
    } else if (!strcmp(argv[i], "--min-size") && i + 1 < argc) {
      if (parse_u32(argv[++i], "min_size", CM_MAX_POOL_SIZE, &min_size))
        return EINVAL;
    } else if (!strcmp(argv[i], "--failure-domain") && i + 1 < argc) {
      pc.failure_domain = argv[++i];
      if (strcmp(pc.failure_domain, "host") && strcmp(pc.failure_domain, "osd"))
        return blkctl_fail(EINVAL, "failure domain must be host or osd");
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      return blkctl_fail(EINVAL, "unknown option '%s'\n%s", argv[i], usage);
    } else if (npos < 2) {
      pos[npos++] = argv[i];
    } else {
      return blkctl_fail(EINVAL, "%s", usage);
    }
  }
  if (npos != 2)
    return blkctl_fail(EINVAL, "%s", usage);
  if (!clustermap_valid_name(pos[0]))
    return blkctl_fail(EINVAL, "invalid pool name '%s' (1-63 of A-Z a-z 0-9 _ . -)", pos[0]);
  if (parse_u32(pos[1], "pg_num", CM_MAX_PG_NUM, &pc.pg_num))
    return EINVAL;
  if (min_size == 0)
    min_size = size > 1 ? size - size / 2 : 1;
  if (min_size > size)
    return blkctl_fail(EINVAL, "min_size %u must not exceed size %u", min_size, size);
  pc.name = (char *)pos[0];
  pc.size = size;
  pc.min_size = min_size;
  pc.application = "blk";
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.pool_create = &pc;
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  cmd.txn = &txn;
  Blk__MonReply *rep;
  int r = blkctl_mon_command(b, &cmd, &rep);
  if (r)
    return r;
  printf("pool '%s' created (pg_num %u, size %u, min_size %u, epoch %llu)\n", pos[0], pc.pg_num,
         size, min_size, (unsigned long long)rep->epoch);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

static int pool_ls(struct blkctl *b, int argc, char **argv)
{
  if (argc != 2)
    return blkctl_fail(EINVAL, "usage: blkctl pool ls [--format json]");
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  cmd.read = BLK__MON_COMMAND__READ__MAP;
  Blk__MonReply *rep;
  int r = blkctl_mon_command(b, &cmd, &rep);
  if (r)
    return r;
  struct cluster_map *m;
  if (!rep->map || clustermap_from_pb(rep->map, &m) < 0) {
    blk__mon_reply__free_unpacked(rep, NULL);
    return blkctl_fail(EPROTO, "the monitor sent an invalid map");
  }
  if (b->json) {
    json_begin_obj();
    json_uint("epoch", m->epoch);
    json_begin_arr("pools");
    for (size_t i = 0; i < m->n_pools; i++) {
      const struct cm_pool *p = &m->pools[i];
      json_begin_obj();
      json_uint("id", p->id);
      json_str("name", p->name);
      json_uint("pg_num", p->pg_num);
      json_uint("size", p->size);
      json_uint("min_size", p->min_size);
      json_str("failure_domain", clustermap_fd_name(p->failure_domain));
      json_str("application", p->application);
      json_end_obj();
    }
    json_end_arr();
    json_end_obj();
    json_done();
  } else {
    for (size_t i = 0; i < m->n_pools; i++) {
      const struct cm_pool *p = &m->pools[i];
      printf("%u %s size %u min_size %u pg_num %u failure_domain %s\n", p->id, p->name, p->size,
             p->min_size, p->pg_num, clustermap_fd_name(p->failure_domain));
    }
  }
  clustermap_free(m);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

static int pool_rm(struct blkctl *b, int argc, char **argv)
{
  if (argc != 4 || strcmp(argv[3], "--yes-i-really-mean-it") != 0)
    return blkctl_fail(EINVAL, "usage: blkctl pool rm NAME --yes-i-really-mean-it\n"
                               "(removing a pool destroys all of its data)");
  Blk__PoolRemove pr = BLK__POOL_REMOVE__INIT;
  pr.name = argv[2];
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.pool_remove = &pr;
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  cmd.txn = &txn;
  Blk__MonReply *rep;
  int r = blkctl_mon_command(b, &cmd, &rep);
  if (r)
    return r;
  printf("pool '%s' removed (epoch %llu)\n", argv[2], (unsigned long long)rep->epoch);
  blk__mon_reply__free_unpacked(rep, NULL);
  return 0;
}

int cmd_pool(struct blkctl *b, int argc, char **argv)
{
  if (argc >= 2 && !strcmp(argv[1], "create"))
    return pool_create(b, argc, argv);
  if (argc >= 2 && (!strcmp(argv[1], "ls") || !strcmp(argv[1], "list")))
    return pool_ls(b, argc, argv);
  if (argc >= 2 && (!strcmp(argv[1], "rm") || !strcmp(argv[1], "delete")))
    return pool_rm(b, argc, argv);
  return blkctl_fail(EINVAL, "usage: blkctl pool create|ls|rm ...");
}
