/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: see pgmap.h. */
#include "common/pgmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct pgmap {
  placement_map *pl;
};

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct pgmap *pgmap_build(const struct cluster_map *m)
{
  struct pgmap *pm = calloc(1, sizeof *pm);
  const char **hosts = calloc(m->n_osds + 1, sizeof *hosts);
  if (!pm || !hosts)
    goto out_nomem;
  pm->pl = placement_map_new();
  if (!pm->pl)
    goto out_nomem;
  size_t nh = 0;
  for (size_t i = 0; i < m->n_osds; i++) {
    if (!m->osds[i].exists)
      continue;
    bool seen = false;
    for (size_t k = 0; k < nh && !seen; k++)
      seen = !strcmp(hosts[k], m->osds[i].host);
    if (!seen)
      hosts[nh++] = m->osds[i].host;
  }
  qsort(hosts, nh, sizeof *hosts, cmp_str);
  for (size_t k = 0; k < nh; k++)
    if (placement_map_add_host(pm->pl, (uint32_t)k) < 0)
      goto out_inval;
  for (size_t i = 0; i < m->n_osds; i++) {
    const struct cm_osd *o = &m->osds[i];
    if (!o->exists)
      continue;
    const char *h = o->host;
    const char **f = bsearch(&h, hosts, nh, sizeof *hosts, cmp_str);
    uint32_t w = o->weight;
    bool in = o->in && w > 0;
    if (w == 0)
      w = 1;
    if (w > PLACEMENT_MAX_WEIGHT)
      w = PLACEMENT_MAX_WEIGHT;
    if (!f || placement_map_add_osd(pm->pl, (uint32_t)o->id, (uint32_t)(f - hosts), w, in) < 0)
      goto out_inval;
  }
  free(hosts);
  return pm;
out_inval:
  free(hosts);
  pgmap_free(pm);
  errno = EINVAL;
  return NULL;
out_nomem:
  free(hosts);
  pgmap_free(pm);
  errno = ENOMEM;
  return NULL;
}

void pgmap_free(struct pgmap *pm)
{
  if (!pm)
    return;
  placement_map_free(pm->pl);
  free(pm);
}

int pgmap_object_pg(const struct cm_pool *pool, const char *name, uint32_t *pg)
{
  return placement_object_pg(name, strlen(name), pool->pg_num, pg);
}

int pgmap_pg_sets(const struct pgmap *pm, const struct cluster_map *m,
                  const struct cm_pool *pool, uint32_t pg, int32_t *raw, size_t *n_raw,
                  int32_t *up, size_t *n_up)
{
  struct placement_pool pp = {
    .id = pool->id, .size = pool->size, .pg_num = pool->pg_num,
    .domain = pool->failure_domain == CM_FD_OSD ? PLACEMENT_DOMAIN_OSD : PLACEMENT_DOMAIN_HOST,
  };
  uint32_t set[PLACEMENT_MAX_SIZE];
  int n = placement_pg_osds(pm->pl, &pp, pg, NULL, 0, set, PLACEMENT_MAX_SIZE);
  if (n < 0)
    return n;
  if ((size_t)n > PGMAP_MAX_SIZE)
    n = PGMAP_MAX_SIZE;
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    raw[i] = (int32_t)set[i];
    const struct cm_osd *o = clustermap_osd(m, (int32_t)set[i]);
    if (o && o->up)
      up[k++] = (int32_t)set[i];
  }
  *n_raw = (size_t)n;
  *n_up = k;
  return 0;
}
