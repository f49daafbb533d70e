/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the bridge from a cluster map (clustermap.h) to placement
 * (placement.h): one placement hierarchy per map epoch, built the same way
 * on every node — hosts numbered by sorted host name, OSDs by id, weight
 * from the map (a weight of 0 counts as out), in/out from the map — and the
 * per-PG sets every node derives from it:
 *   raw/mapped set  placement_pg_osds() (no upmap exceptions yet)
 *   up set          the mapped members that are up, order kept
 *   acting set      = up set (no pg_temp yet); acting[0] is the primary
 * Ownership: a pgmap is immutable once built and owns its memory; the
 * cluster map passed in is only read during pgmap_build().
 */
#ifndef BLK_COMMON_PGMAP_H
#define BLK_COMMON_PGMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/clustermap.h"
#include "common/placement.h"

#define PGMAP_MAX_SIZE CM_MAX_POOL_SIZE

struct pgmap;

/* Build the placement view of m.  NULL with errno (ENOMEM, EINVAL). */
struct pgmap *pgmap_build(const struct cluster_map *m);
void pgmap_free(struct pgmap *pm);

/* PG of an object name in pool.  0 or -EINVAL. */
int pgmap_object_pg(const struct cm_pool *pool, const char *name, uint32_t *pg);

/* Sets of PG (pool, pg): raw[] gets the mapped set (*n_raw members), up[]
 * the up members of it in order (*n_up), each with room for
 * PGMAP_MAX_SIZE.  Returns 0 or -EINVAL (pg out of range). */
int pgmap_pg_sets(const struct pgmap *pm, const struct cluster_map *m,
                  const struct cm_pool *pool, uint32_t pg, int32_t *raw,
                  size_t *n_raw, int32_t *up, size_t *n_up);

#endif
