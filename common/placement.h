/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: placement computes where data lives, identically on every
 * monitor, OSD and client, from the cluster map alone (DESIGN.md §2).
 *
 *   object name --xxh32--> 32-bit hash --stable_mod(pg_num)--> PG
 *   (pool, PG) --rendezvous top-k over failure domains--> raw set
 *       --upmap exceptions--> mapped set --up bitmap--> up set
 *
 * The hierarchy is root -> host -> osd.  Each OSD has a weight in 16.16
 * fixed point (0x10000 == 1.0, conventionally one TiB of capacity) and an
 * in/out flag.  For a PG every in OSD gets one straw2 key (an exponential
 * arrival time with rate = its weight); a failure domain (host, or the
 * OSD itself) takes the best key of its in OSDs, and the raw set is the
 * `size` domains with the smallest keys, in key order, each represented
 * by its best OSD (out[0] is the primary).  Out OSDs take no part.  Adding,
 * removing, marking out or reweighting one OSD moves only that OSD's
 * replicas.  The "up" flag is not an input here; a down-but-in OSD stays
 * in the raw set (the PG is undersized) and placement_up_set() filters it
 * out.
 *
 * Every step is integer-only: the straw2 keys use a fixed-point logarithm
 * computed from a table built with integer arithmetic, so every node on any
 * CPU or libc computes the same result.  docs/placement.md specifies each
 * step byte for byte; changing any of them remaps the whole cluster.
 *
 * Ownership: every pointer argument is borrowed for the duration of the
 * call and never retained; output buffers belong to the caller.  The map
 * owns all its memory (placement_map_free).  A placement_map is not
 * thread-safe for writes; concurrent readers are
 * fine once it is no longer modified (the cluster map publishes a new map
 * per epoch and never mutates a published one).
 */
#ifndef BLK_COMMON_PLACEMENT_H
#define BLK_COMMON_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct placement_map placement_map;

#define PLACEMENT_WEIGHT_ONE 0x10000u   /* 1.0 in 16.16 fixed point */
#define PLACEMENT_MAX_SIZE 16           /* largest replica count */
#define PLACEMENT_MAX_WEIGHT 0xFFFFFFu  /* per OSD: 255.99 (capacity units) */
#define PLACEMENT_MAX_OSDS (1u << 20)   /* OSDs (and hosts) per map */

enum placement_domain {
  PLACEMENT_DOMAIN_HOST = 0,   /* replicas on distinct hosts (default) */
  PLACEMENT_DOMAIN_OSD = 1,    /* replicas on distinct OSDs (one-host clusters) */
};

/* The pool fields placement needs (the cluster map owns the rest). */
struct placement_pool {
  uint32_t id;
  uint32_t size;               /* replicas wanted, 1..PLACEMENT_MAX_SIZE */
  uint32_t pg_num;             /* 1..2^31 */
  enum placement_domain domain;
};

/*
 * One upmap exception: in PG (pool, pg), replace raw member `from` by `to`.
 * Lists are sorted by (pool, pg, from) with no duplicate (pool, pg, from);
 * placement_upmap_sort() establishes that.  Wire/map encoding: four
 * little-endian uint32 in field order, 16 bytes per item.
 */
struct placement_upmap {
  uint32_t pool;
  uint32_t pg;
  uint32_t from;
  uint32_t to;
};

/* ---- hashing and object -> PG ---- */

/* xxHash32 (seed given) of len bytes; the one object-name hash, frozen. */
uint32_t placement_hash32(const void *buf, size_t len, uint32_t seed);

/* The straw2 draw hash: xxHash32 with seed level_seed of the 16 bytes
 * pool, pg, rank, item, each little-endian uint32 (frozen).  The PG ->
 * OSDs draw calls it once per in OSD with PLACEMENT_SEED_OSD and rank
 * PLACEMENT_DRAW_RANK; PLACEMENT_SEED_HOST was the host level's seed
 * before the top-k draw and is no longer used for placement. */
uint32_t placement_draw_hash(uint32_t level_seed, uint32_t pool, uint32_t pg,
                             uint32_t rank, uint32_t item);
#define PLACEMENT_SEED_HOST 0x54534f48u  /* "HOST" read little-endian */
#define PLACEMENT_SEED_OSD 0x0044534fu   /* "OSD\0" read little-endian */
#define PLACEMENT_DRAW_RANK 0u           /* the one rank of the top-k draw */

/* -log2((h + 1) / 2^32) in 32.32 fixed point, integer-only (frozen):
 * 0 for h == 0xffffffff, 32 << 32 for h == 0. */
uint64_t placement_neglog2(uint32_t h);

/* Smallest 2^k - 1 >= pg_num - 1 (Ceph's pg_num_mask); 0 for pg_num <= 1. */
uint32_t placement_pg_num_mask(uint32_t pg_num);

/* Ceph stable_mod: x mod b that moves minimal keys when b grows by one.
 * bmask must be placement_pg_num_mask(b). */
uint32_t placement_stable_mod(uint32_t x, uint32_t b, uint32_t bmask);

/* PG of an object name in a pool with pg_num PGs: 0, or -EINVAL if
 * pg_num is 0 or name is NULL with len > 0.  Result in *pg. */
int placement_object_pg(const void *name, size_t len, uint32_t pg_num,
                        uint32_t *pg);

/* ---- building the hierarchy ---- */

/* New empty map; NULL with errno ENOMEM.  Free with placement_map_free. */
placement_map *placement_map_new(void);
/* Free a map and everything it owns; NULL is a no-op. */
void placement_map_free(placement_map *map);
/* Deep copy (for a new epoch); NULL with errno ENOMEM. Caller frees. */
placement_map *placement_map_dup(const placement_map *map);

/* Add an empty host.  0; -EINVAL if the id exists or the map is full;
 * -ENOMEM. */
int placement_map_add_host(placement_map *map, uint32_t host_id);
/* Remove an empty host.  0; -EINVAL if unknown or it still has OSDs. */
int placement_map_remove_host(placement_map *map, uint32_t host_id);
/* Add an OSD under host_id with weight (16.16, 1..PLACEMENT_MAX_WEIGHT)
 * and in flag.  0; -EINVAL on unknown host, duplicate OSD id, zero or too
 * large weight; -ENOMEM. */
int placement_map_add_osd(placement_map *map, uint32_t osd_id,
                          uint32_t host_id, uint32_t weight, bool in);
/* Remove an OSD from the hierarchy (purge).  0; -EINVAL if unknown. */
int placement_map_remove_osd(placement_map *map, uint32_t osd_id);
/* Change an OSD's weight (same bounds as add).  0 or -EINVAL. */
int placement_map_set_weight(placement_map *map, uint32_t osd_id,
                             uint32_t weight);
/* Mark an OSD in or out.  0 or -EINVAL if unknown. */
int placement_map_set_in(placement_map *map, uint32_t osd_id, bool in);

/* Queries: counts, and per-OSD lookups (-EINVAL if unknown). */
size_t placement_map_num_hosts(const placement_map *map);
size_t placement_map_num_osds(const placement_map *map);
int placement_map_osd_info(const placement_map *map, uint32_t osd_id,
                           uint32_t *host_id, uint32_t *weight, bool *in);
/* Sum of the weights of the OSDs that are in (16.16, 64-bit). */
uint64_t placement_map_in_weight(const placement_map *map);
/* Fill ids[0..cap) with all OSD ids in ascending order; returns the count
 * (may exceed cap: then only cap were written). */
size_t placement_map_osd_ids(const placement_map *map, uint32_t *ids,
                             size_t cap);

/* ---- PG -> OSDs ---- */

/* Check a pool's fields: 0 or -EINVAL (size 0 or > MAX, pg_num 0,
 * unknown domain). */
int placement_pool_check(const struct placement_pool *pool);

/* Raw set of PG pg (rendezvous top-k): up to pool->size OSD ids into
 * out[0..cap), primary first, distinct failure domains, never an out OSD.
 * Returns the count (fewer than size only if fewer domains have an in
 * OSD) or -EINVAL (bad pool, pg >= pg_num, cap < size).  O(in OSDs), no
 * allocation. */
int placement_pg_raw(const placement_map *map,
                     const struct placement_pool *pool, uint32_t pg,
                     uint32_t *out, size_t cap);

/* Mapped set: the raw set with the upmap exceptions for (pool, pg) from
 * ups[0..n_ups) applied in place (sorted list; borrowed for the call).
 * An exception is skipped if `from` is absent, `to` is unknown, out or
 * already a member, or `to` would share a failure domain with another
 * member.  Same returns as placement_pg_raw. */
int placement_pg_osds(const placement_map *map,
                      const struct placement_pool *pool, uint32_t pg,
                      const struct placement_upmap *ups, size_t n_ups,
                      uint32_t *out, size_t cap);

/* Up set: copy the members of set[0..n) whose bit is set in up_bitmap
 * (bit i of byte i/8 = OSD i; ids >= 8*bitmap_len count as down) into
 * out (room for n), order kept; out[0] is then the acting primary.
 * Returns the count.  set and out may alias. */
size_t placement_up_set(const uint32_t *set, size_t n,
                        const uint8_t *up_bitmap, size_t bitmap_len,
                        uint32_t *out);

/* ---- upmap exceptions ---- */

/* Sort ups[0..n) by (pool, pg, from).  0, or -EINVAL on a duplicate
 * (pool, pg, from) or from == to. */
int placement_upmap_sort(struct placement_upmap *ups, size_t n);

/*
 * Balancer (monitor side).  From the current map and pool, compute a new
 * exception list for that pool so that every in OSD holds at most
 * floor(target * (1000 + max_dev_permille) / 1000) PG replicas, target
 * being its weight share of pg_num * size.  Deterministic.  Valid entries
 * of cur[0..n_cur) for this pool are kept as the starting point (other
 * pools' entries are copied through unchanged); at most max_changes
 * replica moves are added.  On success *out is a malloc'd sorted list
 * (caller frees with free()) of *n_out items and the return is the number
 * of moves made (>= 0); -EINVAL on a bad pool, -ENOMEM.
 */
int placement_balance(const placement_map *map,
                      const struct placement_pool *pool,
                      const struct placement_upmap *cur, size_t n_cur,
                      uint32_t max_dev_permille, size_t max_changes,
                      struct placement_upmap **out, size_t *n_out);

/* Last error message of this thread (static storage, valid until the next
 * failing call in this thread); "" if none. */
const char *placement_last_error(void);

#endif
