/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for what a client or peer can make a monitor decode:
 * the first byte picks the input kind, the rest is protobuf bytes.
 *   0: a ClusterMap (a full map from a monitor, or an init txn)
 *   1: a MapTxn applied to a small fixed map (what `blkctl` proposes and
 *      every node applies as an incremental)
 *   2: a MapUpdate (what subscribers receive)
 * Every decoded map must re-encode and decode to the same epoch; apply
 * must either change the map by exactly one epoch or leave it unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/clustermap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cluster_map *base_map(void)
{
  Blk__MonInfo mi = BLK__MON_INFO__INIT, *mp[1] = { &mi };
  mi.name = "a";
  mi.addr = "127.0.0.1:6789";
  mi.rank = 1;
  Blk__ClusterMap init = BLK__CLUSTER_MAP__INIT;
  init.fsid = "00000000-0000-4000-8000-000000000000";
  init.mons = mp;
  init.n_mons = 1;
  Blk__MapTxn t = BLK__MAP_TXN__INIT;
  t.init = &init;
  struct cluster_map *m = clustermap_new();
  char err[128];
  if (!m || clustermap_apply(m, &t, err, sizeof err) != 1)
    abort();
  Blk__PoolCreate pc = BLK__POOL_CREATE__INIT;
  pc.name = "KVMpool";
  pc.pg_num = 128;
  Blk__MapTxn t2 = BLK__MAP_TXN__INIT;
  t2.pool_create = &pc;
  if (clustermap_apply(m, &t2, err, sizeof err) != 1)
    abort();
  Blk__OsdBoot ob = BLK__OSD_BOOT__INIT;
  ob.id = 0;
  ob.host = "h0";
  ob.addr = "127.0.0.1:6800";
  Blk__MapTxn t3 = BLK__MAP_TXN__INIT;
  t3.osd_boot = &ob;
  if (clustermap_apply(m, &t3, err, sizeof err) != 1)
    abort();
  return m;
}

static void check_roundtrip(const struct cluster_map *m)
{
  uint8_t *buf;
  size_t len;
  struct cluster_map *back;
  if (clustermap_encode(m, &buf, &len) < 0)
    return;
  if (clustermap_decode(buf, len, &back) < 0 || back->epoch != m->epoch ||
      back->n_pools != m->n_pools)
    abort();
  clustermap_free(back);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  char err[256];
  switch (data[0] % 3) {
  case 0: {
    struct cluster_map *m;
    if (clustermap_decode(p, n, &m) == 0) {
      check_roundtrip(m);
      clustermap_free(m);
    }
    break;
  }
  case 1: {
    Blk__MapTxn *t = blk__map_txn__unpack(NULL, n, p);
    if (!t)
      break;
    struct cluster_map *m = base_map();
    uint64_t before = m->epoch;
    int r = clustermap_apply(m, t, err, sizeof err);
    if ((r == 1 && m->epoch != before + 1) || (r != 1 && m->epoch != before))
      abort();
    if (r < 0 && err[0] == 0)
      abort();   /* every refusal says why */
    check_roundtrip(m);
    clustermap_free(m);
    blk__map_txn__free_unpacked(t, NULL);
    break;
  }
  case 2: {
    Blk__MapUpdate *u = blk__map_update__unpack(NULL, n, p);
    if (!u)
      break;
    struct cluster_map *m = base_map();
    for (size_t i = 0; i < u->n_txns; i++)
      clustermap_apply(m, u->txns[i], err, sizeof err);
    if (u->full) {
      struct cluster_map *f;
      if (clustermap_from_pb(u->full, &f) == 0)
        clustermap_free(f);
    }
    clustermap_free(m);
    blk__map_update__free_unpacked(u, NULL);
    break;
  }
  }
  return 0;
}
