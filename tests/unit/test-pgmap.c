/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/pgmap.c: the cluster map -> placement bridge that
 * every OSD and client uses.  Properties: sets of distinct OSDs in distinct
 * hosts (failure domain host) or OSDs, primary first; up set = raw set
 * without down OSDs, order kept; an out OSD or weight 0 is never placed;
 * the result does not depend on the order in which hosts and OSDs appear
 * in the map; object names map to the same PG as placement_object_pg.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/pgmap.h"

/* n_hosts hosts "h<k>" with per OSDs each; ids in order or reversed */
static struct cluster_map *mkmap(int n_hosts, int per, bool reverse)
{
  Blk__ClusterMap pb = BLK__CLUSTER_MAP__INIT;
  int n = n_hosts * per;
  Blk__OsdInfo oi[32], *op[32];
  char hosts[32][8];
  assert_true(n <= 32);
  for (int i = 0; i < n; i++) {
    int id = reverse ? n - 1 - i : i;
    blk__osd_info__init(&oi[i]);
    oi[i].id = id;
    snprintf(hosts[i], sizeof hosts[i], "h%d", id / per);
    oi[i].host = hosts[i];
    oi[i].addr = "127.0.0.1:1";
    oi[i].uuid = "";
    oi[i].up = oi[i].in = true;
    oi[i].weight = 0x10000;
    op[i] = &oi[i];
  }
  pb.osds = op;
  pb.n_osds = (size_t)n;
  pb.fsid = "x";
  pb.epoch = 5;
  Blk__Pool pool = BLK__POOL__INIT, *pp = &pool;
  pool.id = 1;
  pool.name = "rbd";
  pool.size = 3;
  pool.min_size = 2;
  pool.pg_num = 64;
  pool.failure_domain = "host";
  pb.pools = &pp;
  pb.n_pools = 1;
  struct cluster_map *m;
  assert_int_equal(clustermap_from_pb(&pb, &m), 0);
  return m;
}

static void sets_are_valid(void **state)
{
  (void)state;
  struct cluster_map *m = mkmap(4, 2, false);
  struct pgmap *pm = pgmap_build(m);
  assert_non_null(pm);
  for (uint32_t pg = 0; pg < 64; pg++) {
    int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
    size_t nr, nu;
    assert_int_equal(pgmap_pg_sets(pm, m, &m->pools[0], pg, raw, &nr, up, &nu), 0);
    assert_int_equal(nr, 3);
    assert_int_equal(nu, 3);
    for (size_t i = 0; i < nr; i++)
      for (size_t k = i + 1; k < nr; k++)
        assert_int_not_equal(raw[i] / 2, raw[k] / 2);   /* distinct hosts */
    assert_memory_equal(raw, up, sizeof *raw * 3);
  }
  int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr, nu;
  assert_int_equal(pgmap_pg_sets(pm, m, &m->pools[0], 64, raw, &nr, up, &nu), -EINVAL);
  pgmap_free(pm);
  clustermap_free(m);
}

static void down_and_out(void **state)
{
  (void)state;
  struct cluster_map *m = mkmap(4, 2, false);
  struct pgmap *pm = pgmap_build(m);
  int32_t raw0[64][PGMAP_MAX_SIZE], raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr, nu;
  for (uint32_t pg = 0; pg < 64; pg++)
    assert_int_equal(pgmap_pg_sets(pm, m, &m->pools[0], pg, raw0[pg], &nr, up, &nu), 0);
  pgmap_free(pm);
  /* down: raw unchanged, up filtered, order kept */
  m->osds[3].up = false;
  pm = pgmap_build(m);
  int undersized = 0;
  for (uint32_t pg = 0; pg < 64; pg++) {
    assert_int_equal(pgmap_pg_sets(pm, m, &m->pools[0], pg, raw, &nr, up, &nu), 0);
    assert_memory_equal(raw, raw0[pg], sizeof *raw * nr);
    size_t k = 0;
    for (size_t i = 0; i < nr; i++)
      if (raw[i] != 3)
        assert_int_equal(up[k++], raw[i]);
    assert_int_equal(nu, k);
    undersized += nu < 3;
  }
  assert_true(undersized > 0);
  pgmap_free(pm);
  /* out, or weight 0: never placed */
  m->osds[3].up = true;
  m->osds[3].in = false;
  m->osds[5].weight = 0;
  pm = pgmap_build(m);
  for (uint32_t pg = 0; pg < 64; pg++) {
    assert_int_equal(pgmap_pg_sets(pm, m, &m->pools[0], pg, raw, &nr, up, &nu), 0);
    assert_int_equal(nr, 3);
    for (size_t i = 0; i < nr; i++)
      assert_true(raw[i] != 3 && raw[i] != 5);
  }
  pgmap_free(pm);
  clustermap_free(m);
}

static void order_independent(void **state)
{
  (void)state;
  struct cluster_map *a = mkmap(5, 2, false), *b = mkmap(5, 2, true);
  struct pgmap *pa = pgmap_build(a), *pb = pgmap_build(b);
  for (uint32_t pg = 0; pg < 64; pg++) {
    int32_t ra[PGMAP_MAX_SIZE], rb[PGMAP_MAX_SIZE], u[PGMAP_MAX_SIZE];
    size_t na, nb, nu;
    assert_int_equal(pgmap_pg_sets(pa, a, &a->pools[0], pg, ra, &na, u, &nu), 0);
    assert_int_equal(pgmap_pg_sets(pb, b, &b->pools[0], pg, rb, &nb, u, &nu), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ra, rb, sizeof *ra * na);
  }
  uint32_t pg1, pg2;
  assert_int_equal(pgmap_object_pg(&a->pools[0], "blk_data.1.0", &pg1), 0);
  assert_int_equal(placement_object_pg("blk_data.1.0", 12, 64, &pg2), 0);
  assert_int_equal(pg1, pg2);
  pgmap_free(pa);
  pgmap_free(pb);
  clustermap_free(a);
  clustermap_free(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(sets_are_valid),
    cmocka_unit_test(down_and_out),
    cmocka_unit_test(order_independent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
