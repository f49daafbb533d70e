/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see placement.h and docs/placement.md.  The map keeps hosts
 * in an array sorted by id, each with its OSDs sorted by id, plus a global
 * OSD-id -> host-id index sorted by OSD id for lookups.  Ties break
 * towards the lower id, so the result never depends on the order the map
 * was built in.
 *
 * straw2 keys: each in OSD i with weight w_i gets, per PG, the key
 *   s_i = floor(neglog2(hash(OSD, pool, pg, 0, id_i)) * 2^24 / w_i)
 * neglog2 is -log2 of a uniform (0,1] value, an exponential variable (up
 * to the constant ln 2, which does not change the order), so s_i is an
 * exponential arrival time with rate w_i.  A PG's raw set is the `size`
 * failure domains whose best (smallest) key is smallest, in key order
 * (rendezvous top-k): changing one OSD only moves that OSD's replicas.
 *
 * The logarithm: a 1025-entry table of log2(1 + i/1024) in 0.32 fixed
 * point, built at first use by the exact bit-by-bit squaring method in
 * 64-bit integers, then linear interpolation on the remaining 22 bits.
 */
#include "placement.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct pl_osd {
  uint32_t id;
  uint32_t weight;     /* 16.16, > 0 */
  uint32_t lane;       /* draw_lane(id): the PG-independent part of its hash */
  bool in;
};

struct pl_host {
  uint32_t id;
  size_t n_in;         /* OSDs that are in */
  struct pl_osd *osds; /* sorted by id; owned */
  size_t n_osds, cap_osds;
};

struct pl_index {
  uint32_t osd_id;
  uint32_t host_id;
};

struct placement_map {
  struct pl_host *hosts;   /* sorted by id; owned */
  size_t n_hosts, cap_hosts;
  struct pl_index *idx;    /* sorted by osd_id; owned */
  size_t n_osds, cap_idx;
  uint64_t in_weight;
  size_t n_in_osds;        /* OSDs that are in */
};

/* ---- errors ---- */

static _Thread_local char last_error[256];

const char *placement_last_error(void) { return last_error; }

__attribute__((format(printf, 2, 3)))
static int fail(int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  log_debug("placement", "%s", last_error);
  return err;
}

/* ---- xxHash32 ---- */

#define P32_1 0x9E3779B1u
#define P32_2 0x85EBCA77u
#define P32_3 0xC2B2AE3Du
#define P32_4 0x27D4EB2Fu
#define P32_5 0x165667B1u

static inline uint32_t rotl32(uint32_t x, int r)
{
  return (x << r) | (x >> (32 - r));
}

static inline uint32_t rd32le(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline uint32_t xxh_round(uint32_t acc, uint32_t lane)
{
  acc += lane * P32_2;
  acc = rotl32(acc, 13);
  return acc * P32_1;
}

static inline uint32_t xxh_avalanche(uint32_t h)
{
  h ^= h >> 15;
  h *= P32_2;
  h ^= h >> 13;
  h *= P32_3;
  h ^= h >> 16;
  return h;
}

uint32_t placement_hash32(const void *buf, size_t len, uint32_t seed)
{
  const unsigned char *p = buf;
  const unsigned char *end = p + len;
  uint32_t h;

  if (len >= 16) {
    uint32_t v1 = seed + P32_1 + P32_2, v2 = seed + P32_2, v3 = seed,
             v4 = seed - P32_1;
    do {
      v1 = xxh_round(v1, rd32le(p));
      v2 = xxh_round(v2, rd32le(p + 4));
      v3 = xxh_round(v3, rd32le(p + 8));
      v4 = xxh_round(v4, rd32le(p + 12));
      p += 16;
    } while ((size_t)(end - p) >= 16);
    h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
  } else {
    h = seed + P32_5;
  }
  h += (uint32_t)len;
  while ((size_t)(end - p) >= 4) {
    h += rd32le(p) * P32_3;
    h = rotl32(h, 17) * P32_4;
    p += 4;
  }
  while (p < end) {
    h += (uint32_t)*p++ * P32_5;
    h = rotl32(h, 11) * P32_1;
  }
  return xxh_avalanche(h);
}

/* xxHash32 of the 16 little-endian bytes a, b, c, d: one stripe. */
uint32_t placement_draw_hash(uint32_t level_seed, uint32_t pool, uint32_t pg,
                             uint32_t rank, uint32_t item)
{
  uint32_t v1 = xxh_round(level_seed + P32_1 + P32_2, pool);
  uint32_t v2 = xxh_round(level_seed + P32_2, pg);
  uint32_t v3 = xxh_round(level_seed, rank);
  uint32_t v4 = xxh_round(level_seed - P32_1, item);
  uint32_t h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) +
               rotl32(v4, 18);
  return xxh_avalanche(h + 16);
}

/* placement_draw_hash(PLACEMENT_SEED_OSD, pool, pg, PLACEMENT_DRAW_RANK,
 * id) == xxh_avalanche(draw_base(pool, pg) + draw_lane(id)): the item's
 * lane is the only part that depends on the OSD, so the map keeps it per
 * OSD and a PG computes its base once (checked against the plain hash in
 * tests/unit/test-placement.c). */
static inline uint32_t draw_lane(uint32_t id)
{
  return rotl32(xxh_round(PLACEMENT_SEED_OSD - P32_1, id), 18);
}

static inline uint32_t draw_base(uint32_t pool, uint32_t pg)
{
  uint32_t v1 = xxh_round(PLACEMENT_SEED_OSD + P32_1 + P32_2, pool);
  uint32_t v2 = xxh_round(PLACEMENT_SEED_OSD + P32_2, pg);
  uint32_t v3 = xxh_round(PLACEMENT_SEED_OSD, PLACEMENT_DRAW_RANK);
  return rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + 16;
}

/* ---- object -> PG ---- */

uint32_t placement_pg_num_mask(uint32_t pg_num)
{
  if (pg_num <= 1)
    return 0;
  uint32_t m = pg_num - 1;
  m |= m >> 1;
  m |= m >> 2;
  m |= m >> 4;
  m |= m >> 8;
  m |= m >> 16;
  return m;
}

uint32_t placement_stable_mod(uint32_t x, uint32_t b, uint32_t bmask)
{
  if ((x & bmask) < b)
    return x & bmask;
  return x & (bmask >> 1);
}

int placement_object_pg(const void *name, size_t len, uint32_t pg_num,
                        uint32_t *pg)
{
  if (pg_num == 0)
    return fail(-EINVAL, "object_pg: pg_num is 0");
  if (!name && len)
    return fail(-EINVAL, "object_pg: NULL name with length %zu", len);
  uint32_t h = placement_hash32(name ? name : "", len, 0);
  *pg = placement_stable_mod(h, pg_num, placement_pg_num_mask(pg_num));
  return 0;
}

/* ---- fixed-point logarithm ---- */

#define LOG_TBL_BITS 10
static uint64_t log_tbl[(1u << LOG_TBL_BITS) + 1];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

/* log2(m / 2^30) in 0.32 fixed point for m in [2^30, 2^31): each squaring
 * of the mantissa yields the next binary digit of the logarithm. */
static uint64_t log2_q30(uint64_t m)
{
  uint64_t r = 0;
  for (int bit = 31; bit >= 0; bit--) {
    m = (m * m) >> 30;
    if (m >= (1ull << 31)) {
      m >>= 1;
      r |= 1ull << bit;
    }
  }
  return r;
}

static void log_tbl_init(void)
{
  for (uint32_t i = 0; i < (1u << LOG_TBL_BITS); i++)
    log_tbl[i] = log2_q30((1ull << 30) + ((uint64_t)i << (30 - LOG_TBL_BITS)));
  log_tbl[1u << LOG_TBL_BITS] = 1ull << 32;
}

/* Call with the table built (pthread_once done by the caller). */
static inline uint64_t neglog2(uint32_t h)
{
  uint64_t x = (uint64_t)h + 1;                 /* 1 .. 2^32 */
  int e = 63 - __builtin_clzll(x);              /* 0 .. 32 */
  uint64_t frac = (x << (32 - e)) - (1ull << 32);  /* 0.32 mantissa */
  uint32_t i = (uint32_t)(frac >> (32 - LOG_TBL_BITS));
  uint64_t rem = frac & ((1ull << (32 - LOG_TBL_BITS)) - 1);
  uint64_t l = log_tbl[i] +
               (((log_tbl[i + 1] - log_tbl[i]) * rem) >> (32 - LOG_TBL_BITS));
  uint64_t log2x = ((uint64_t)e << 32) + l;
  return (32ull << 32) - log2x;
}

uint64_t placement_neglog2(uint32_t h)
{
  pthread_once(&log_once, log_tbl_init);
  return neglog2(h);
}

/* ---- map building ---- */

placement_map *placement_map_new(void)
{
  placement_map *m = calloc(1, sizeof *m);
  if (!m)
    errno = ENOMEM;
  return m;
}

void placement_map_free(placement_map *map)
{
  if (!map)
    return;
  for (size_t i = 0; i < map->n_hosts; i++)
    free(map->hosts[i].osds);
  free(map->hosts);
  free(map->idx);
  free(map);
}

placement_map *placement_map_dup(const placement_map *map)
{
  placement_map *m = calloc(1, sizeof *m);
  if (!m)
    goto out_enomem;
  m->hosts = calloc(map->n_hosts ? map->n_hosts : 1, sizeof *m->hosts);
  m->idx = malloc((map->n_osds ? map->n_osds : 1) * sizeof *m->idx);
  if (!m->hosts || !m->idx)
    goto out_free_map;
  m->cap_hosts = map->n_hosts ? map->n_hosts : 1;
  m->cap_idx = map->n_osds ? map->n_osds : 1;
  for (size_t i = 0; i < map->n_hosts; i++) {
    const struct pl_host *src = &map->hosts[i];
    struct pl_host *dst = &m->hosts[i];
    *dst = *src;
    dst->cap_osds = src->n_osds ? src->n_osds : 1;
    dst->osds = malloc(dst->cap_osds * sizeof *dst->osds);
    if (!dst->osds)
      goto out_free_map;
    if (src->n_osds)
      memcpy(dst->osds, src->osds, src->n_osds * sizeof *dst->osds);
    m->n_hosts = i + 1;
  }
  if (map->n_osds)
    memcpy(m->idx, map->idx, map->n_osds * sizeof *m->idx);
  m->n_osds = map->n_osds;
  m->in_weight = map->in_weight;
  m->n_in_osds = map->n_in_osds;
  return m;

out_free_map:
  placement_map_free(m);
out_enomem:
  errno = ENOMEM;
  return NULL;
}

/* Index of the first host with id >= host_id. */
static size_t host_lower(const placement_map *m, uint32_t host_id)
{
  size_t lo = 0, hi = m->n_hosts;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->hosts[mid].id < host_id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static struct pl_host *host_find(const placement_map *m, uint32_t host_id)
{
  size_t i = host_lower(m, host_id);
  return i < m->n_hosts && m->hosts[i].id == host_id ? &m->hosts[i] : NULL;
}

static size_t idx_lower(const placement_map *m, uint32_t osd_id)
{
  size_t lo = 0, hi = m->n_osds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->idx[mid].osd_id < osd_id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static size_t member_lower(const struct pl_host *h, uint32_t osd_id)
{
  size_t lo = 0, hi = h->n_osds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (h->osds[mid].id < osd_id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The OSD record and its host, or NULL if unknown. */
static struct pl_osd *osd_find(const placement_map *m, uint32_t osd_id,
                               struct pl_host **host)
{
  size_t i = idx_lower(m, osd_id);
  if (i >= m->n_osds || m->idx[i].osd_id != osd_id)
    return NULL;
  struct pl_host *h = host_find(m, m->idx[i].host_id);
  size_t j = member_lower(h, osd_id);
  if (host)
    *host = h;
  return &h->osds[j];
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
  if (need <= *cap)
    return 0;
  size_t ncap = *cap ? *cap * 2 : 16;
  while (ncap < need)
    ncap *= 2;
  void *p = realloc(*arr, ncap * elem);
  if (!p)
    return -ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

/* Account for OSD o of host h turning in (delta 1) or out (delta -1). */
static void count_in(placement_map *m, struct pl_host *h, uint32_t weight,
                     int delta)
{
  if (delta > 0) {
    m->in_weight += weight;
    m->n_in_osds++;
    h->n_in++;
  } else {
    m->in_weight -= weight;
    m->n_in_osds--;
    h->n_in--;
  }
}

int placement_map_add_host(placement_map *map, uint32_t host_id)
{
  if (map->n_hosts >= PLACEMENT_MAX_OSDS)
    return fail(-EINVAL, "add_host %u: map is full", host_id);
  size_t i = host_lower(map, host_id);
  if (i < map->n_hosts && map->hosts[i].id == host_id)
    return fail(-EINVAL, "add_host %u: duplicate host id", host_id);
  if (grow((void **)&map->hosts, &map->cap_hosts, map->n_hosts + 1,
           sizeof *map->hosts) < 0)
    return fail(-ENOMEM, "add_host %u: out of memory", host_id);
  memmove(&map->hosts[i + 1], &map->hosts[i],
          (map->n_hosts - i) * sizeof *map->hosts);
  map->hosts[i] = (struct pl_host){ .id = host_id };
  map->n_hosts++;
  return 0;
}

int placement_map_remove_host(placement_map *map, uint32_t host_id)
{
  struct pl_host *h = host_find(map, host_id);
  if (!h)
    return fail(-EINVAL, "remove_host %u: unknown host", host_id);
  if (h->n_osds)
    return fail(-EINVAL, "remove_host %u: host still has %zu OSDs", host_id,
                h->n_osds);
  size_t i = (size_t)(h - map->hosts);
  free(h->osds);
  memmove(&map->hosts[i], &map->hosts[i + 1],
          (map->n_hosts - i - 1) * sizeof *map->hosts);
  map->n_hosts--;
  return 0;
}

static int check_weight(const char *what, uint32_t osd_id, uint32_t weight)
{
  if (weight == 0 || weight > PLACEMENT_MAX_WEIGHT)
    return fail(-EINVAL, "%s osd.%u: weight 0x%x out of range 1..0x%x",
                what, osd_id, weight, PLACEMENT_MAX_WEIGHT);
  return 0;
}

int placement_map_add_osd(placement_map *map, uint32_t osd_id,
                          uint32_t host_id, uint32_t weight, bool in)
{
  int r = check_weight("add_osd", osd_id, weight);
  if (r < 0)
    return r;
  struct pl_host *h = host_find(map, host_id);
  if (!h)
    return fail(-EINVAL, "add_osd osd.%u: unknown host %u", osd_id, host_id);
  if (map->n_osds >= PLACEMENT_MAX_OSDS)
    return fail(-EINVAL, "add_osd osd.%u: map is full", osd_id);
  size_t i = idx_lower(map, osd_id);
  if (i < map->n_osds && map->idx[i].osd_id == osd_id)
    return fail(-EINVAL, "add_osd osd.%u: duplicate OSD id", osd_id);
  if (grow((void **)&map->idx, &map->cap_idx, map->n_osds + 1,
           sizeof *map->idx) < 0 ||
      grow((void **)&h->osds, &h->cap_osds, h->n_osds + 1,
           sizeof *h->osds) < 0)
    return fail(-ENOMEM, "add_osd osd.%u: out of memory", osd_id);
  memmove(&map->idx[i + 1], &map->idx[i], (map->n_osds - i) * sizeof *map->idx);
  map->idx[i] = (struct pl_index){ osd_id, host_id };
  map->n_osds++;
  size_t j = member_lower(h, osd_id);
  memmove(&h->osds[j + 1], &h->osds[j], (h->n_osds - j) * sizeof *h->osds);
  h->osds[j] = (struct pl_osd){ osd_id, weight, draw_lane(osd_id), in };
  h->n_osds++;
  if (in)
    count_in(map, h, weight, 1);
  return 0;
}

int placement_map_remove_osd(placement_map *map, uint32_t osd_id)
{
  struct pl_host *h;
  struct pl_osd *o = osd_find(map, osd_id, &h);
  if (!o)
    return fail(-EINVAL, "remove_osd osd.%u: unknown OSD", osd_id);
  if (o->in)
    count_in(map, h, o->weight, -1);
  size_t j = (size_t)(o - h->osds);
  memmove(&h->osds[j], &h->osds[j + 1], (h->n_osds - j - 1) * sizeof *h->osds);
  h->n_osds--;
  size_t i = idx_lower(map, osd_id);
  memmove(&map->idx[i], &map->idx[i + 1],
          (map->n_osds - i - 1) * sizeof *map->idx);
  map->n_osds--;
  return 0;
}

int placement_map_set_weight(placement_map *map, uint32_t osd_id,
                             uint32_t weight)
{
  int r = check_weight("set_weight", osd_id, weight);
  if (r < 0)
    return r;
  struct pl_host *h;
  struct pl_osd *o = osd_find(map, osd_id, &h);
  if (!o)
    return fail(-EINVAL, "set_weight osd.%u: unknown OSD", osd_id);
  if (o->in)
    map->in_weight = map->in_weight - o->weight + weight;
  o->weight = weight;
  return 0;
}

int placement_map_set_in(placement_map *map, uint32_t osd_id, bool in)
{
  struct pl_host *h;
  struct pl_osd *o = osd_find(map, osd_id, &h);
  if (!o)
    return fail(-EINVAL, "set_in osd.%u: unknown OSD", osd_id);
  if (o->in != in) {
    count_in(map, h, o->weight, in ? 1 : -1);
    o->in = in;
  }
  return 0;
}

size_t placement_map_num_hosts(const placement_map *map)
{
  return map->n_hosts;
}

size_t placement_map_num_osds(const placement_map *map)
{
  return map->n_osds;
}

uint64_t placement_map_in_weight(const placement_map *map)
{
  return map->in_weight;
}

int placement_map_osd_info(const placement_map *map, uint32_t osd_id,
                           uint32_t *host_id, uint32_t *weight, bool *in)
{
  struct pl_host *h;
  struct pl_osd *o = osd_find(map, osd_id, &h);
  if (!o)
    return fail(-EINVAL, "osd_info osd.%u: unknown OSD", osd_id);
  if (host_id)
    *host_id = h->id;
  if (weight)
    *weight = o->weight;
  if (in)
    *in = o->in;
  return 0;
}

size_t placement_map_osd_ids(const placement_map *map, uint32_t *ids,
                             size_t cap)
{
  for (size_t i = 0; i < map->n_osds && i < cap; i++)
    ids[i] = map->idx[i].osd_id;
  return map->n_osds;
}

/* ---- PG -> OSDs ---- */

int placement_pool_check(const struct placement_pool *pool)
{
  if (!pool)
    return fail(-EINVAL, "pool is NULL");
  if (pool->size == 0 || pool->size > PLACEMENT_MAX_SIZE)
    return fail(-EINVAL, "pool %u: size %u out of range 1..%d", pool->id,
                pool->size, PLACEMENT_MAX_SIZE);
  if (pool->pg_num == 0 || pool->pg_num > (1u << 31))
    return fail(-EINVAL, "pool %u: pg_num %u out of range 1..2^31",
                pool->id, pool->pg_num);
  if (pool->domain != PLACEMENT_DOMAIN_HOST &&
      pool->domain != PLACEMENT_DOMAIN_OSD)
    return fail(-EINVAL, "pool %u: unknown failure domain %d", pool->id,
                (int)pool->domain);
  return 0;
}

static int check_pg_args(const struct placement_pool *pool, uint32_t pg,
                         size_t cap)
{
  int r = placement_pool_check(pool);
  if (r < 0)
    return r;
  if (pg >= pool->pg_num)
    return fail(-EINVAL, "pool %u: pg %u >= pg_num %u", pool->id, pg,
                pool->pg_num);
  if (cap < pool->size)
    return fail(-EINVAL, "pool %u: output room %zu < size %u", pool->id, cap,
                pool->size);
  return 0;
}

/* One failure domain in the running top-k: its best in OSD and that
 * OSD's straw key. */
struct pl_cand {
  uint64_t key;
  uint32_t osd;
  uint32_t host;
};

/* The total order of the draw: smaller key first, ties to the lower id. */
static inline bool cand_before(uint64_t key, uint32_t osd,
                               const struct pl_cand *c)
{
  return key < c->key || (key == c->key && osd < c->osd);
}

/* Insert c into top[0..*n), kept sorted, at most k entries; the caller
 * has checked that c belongs there (*n < k or c is before top[k-1]). */
static inline void topk_insert(struct pl_cand *top, uint32_t *n, uint32_t k,
                               struct pl_cand c)
{
  uint32_t i = *n < k ? (*n)++ : k - 1;
  while (i > 0 && cand_before(c.key, c.osd, &top[i - 1])) {
    top[i] = top[i - 1];
    i--;
  }
  top[i] = c;
}

/*
 * (bar + 1) * w, or UINT64_MAX if there is no bar yet (bar == UINT64_MAX)
 * or the product does not fit.  An OSD of weight w whose key is k has
 * k <= bar exactly when (nl << 24) < (bar + 1) * w (floor division), so
 * with this limit a key above the bar is rejected before the division;
 * and since neglog2(h) >= 0xFFFFFFFF - h for every h (checked
 * exhaustively over all 2^32 values: -log2(1 - d/2^32) >= d/2^32 *
 * log2(e), and every rounding in neglog2 goes upwards), a hash with
 * ((0xFFFFFFFF - h) << 24) >= limit is rejected before the logarithm.
 * UINT64_MAX is never reached by either left side (< 2^61), so it rejects
 * nothing.
 */
static inline uint64_t bar_limit(uint64_t bar, uint32_t w)
{
  uint64_t lim;
  if (bar == UINT64_MAX || __builtin_mul_overflow(bar + 1, (uint64_t)w, &lim))
    return UINT64_MAX;
  return lim;
}

/*
 * The raw set: rendezvous top-k over failure domains (docs/placement.md
 * §4).  Every in OSD gets one straw key; a domain's key is its best in
 * OSD's; the set is the `size` best domains in key order, each given by
 * its best OSD.  One pass over the in OSDs, no allocation: hosts and
 * their OSDs are already grouped in the map, so a host's best is a local
 * minimum, and the running top-k lives in a stack array.  Keys that
 * cannot enter the result (above the current k-th domain or the host's
 * best so far) are rejected before the logarithm.  The result depends
 * only on the total order (key, OSD id), not on the iteration order.
 * Arguments already checked; hosts_out (room for size) receives each
 * member's host id.
 */
static int pg_raw(const placement_map *m, const struct placement_pool *pool,
                  uint32_t pg, uint32_t *out, uint32_t *hosts_out)
{
  pthread_once(&log_once, log_tbl_init);
  struct pl_cand top[PLACEMENT_MAX_SIZE];
  uint32_t k = pool->size, n = 0;
  bool by_host = pool->domain == PLACEMENT_DOMAIN_HOST;
  uint32_t base = draw_base(pool->id, pg);

  for (size_t i = 0; i < m->n_hosts; i++) {
    const struct pl_host *h = &m->hosts[i];
    if (h->n_in == 0)
      continue;
    struct pl_cand best = { UINT64_MAX, 0, h->id };
    bool have = false;
    /* bar: no key above it can matter (the k-th domain so far, or this
     * host's best so far); lim = bar_limit(bar, lim_w), recomputed when
     * the weight or the bar changes. */
    uint64_t bar = n == k ? top[k - 1].key : UINT64_MAX, lim = UINT64_MAX;
    uint32_t lim_w = 0;
    for (size_t j = 0; j < h->n_osds; j++) {
      const struct pl_osd *o = &h->osds[j];
      if (!o->in)
        continue;
      if (o->weight != lim_w) {
        lim_w = o->weight;
        lim = bar_limit(bar, lim_w);
      }
      uint32_t hash = xxh_avalanche(base + o->lane);
      if ((uint64_t)(0xFFFFFFFFu - hash) << 24 >= lim)
        continue;
      uint64_t nl = neglog2(hash) << 24;
      if (nl >= lim)
        continue;
      struct pl_cand c = { nl / o->weight, o->id, h->id };
      if (n == k && !cand_before(c.key, c.osd, &top[k - 1]))
        continue;
      if (!by_host) {
        topk_insert(top, &n, k, c);
        if (n == k)
          bar = top[k - 1].key;
      } else if (!have || cand_before(c.key, c.osd, &best)) {
        best = c;
        have = true;
        bar = c.key;
      }
      lim_w = 0;
    }
    if (by_host && have)
      topk_insert(top, &n, k, best);
  }
  for (uint32_t r = 0; r < n; r++) {
    out[r] = top[r].osd;
    hosts_out[r] = top[r].host;
  }
  return (int)n;
}

int placement_pg_raw(const placement_map *map,
                     const struct placement_pool *pool, uint32_t pg,
                     uint32_t *out, size_t cap)
{
  uint32_t hosts[PLACEMENT_MAX_SIZE];
  int r = check_pg_args(pool, pg, cap);
  if (r < 0)
    return r;
  return pg_raw(map, pool, pg, out, hosts);
}

/* Index of the first upmap item >= (pool, pg, 0) in a sorted list. */
static size_t upmap_lower(const struct placement_upmap *ups, size_t n,
                          uint32_t pool, uint32_t pg)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ups[mid].pool < pool || (ups[mid].pool == pool && ups[mid].pg < pg))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Apply the exceptions for (pool, pg) to set[0..n) with hosts[0..n).
 * An exception whose `from` is not in the raw set or whose `to` is unknown
 * or out is ignored; the rest are applied together, and only if the result
 * still has distinct OSDs and failure domains (else none is), so the
 * outcome does not depend on the order of the exceptions. */
static void apply_upmaps(const placement_map *m,
                         const struct placement_pool *pool, uint32_t pg,
                         const struct placement_upmap *ups, size_t n_ups,
                         uint32_t *set, uint32_t *hosts, uint32_t n)
{
  uint32_t nset[PLACEMENT_MAX_SIZE], nhosts[PLACEMENT_MAX_SIZE];
  bool changed = false;

  if (!ups || !n_ups)
    return;
  memcpy(nset, set, n * sizeof *set);
  memcpy(nhosts, hosts, n * sizeof *hosts);
  for (size_t i = upmap_lower(ups, n_ups, pool->id, pg);
       i < n_ups && ups[i].pool == pool->id && ups[i].pg == pg; i++) {
    const struct placement_upmap *u = &ups[i];
    uint32_t pos = n;
    for (uint32_t k = 0; k < n; k++)
      if (set[k] == u->from)
        pos = k;
    struct pl_host *h;
    struct pl_osd *o = osd_find(m, u->to, &h);
    if (pos == n || !o || !o->in)
      continue;
    nset[pos] = u->to;
    nhosts[pos] = h->id;
    changed = true;
  }
  if (!changed)
    return;
  for (uint32_t a = 0; a < n; a++)
    for (uint32_t c = a + 1; c < n; c++)
      if (nset[a] == nset[c] || (pool->domain == PLACEMENT_DOMAIN_HOST &&
                                 nhosts[a] == nhosts[c]))
        return;
  memcpy(set, nset, n * sizeof *set);
  memcpy(hosts, nhosts, n * sizeof *hosts);
}

int placement_pg_osds(const placement_map *map,
                      const struct placement_pool *pool, uint32_t pg,
                      const struct placement_upmap *ups, size_t n_ups,
                      uint32_t *out, size_t cap)
{
  uint32_t hosts[PLACEMENT_MAX_SIZE];
  int r = check_pg_args(pool, pg, cap);
  if (r < 0)
    return r;
  int n = pg_raw(map, pool, pg, out, hosts);
  apply_upmaps(map, pool, pg, ups, n_ups, out, hosts, (uint32_t)n);
  return n;
}

size_t placement_up_set(const uint32_t *set, size_t n,
                        const uint8_t *up_bitmap, size_t bitmap_len,
                        uint32_t *out)
{
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t id = set[i];
    if (id / 8 < bitmap_len && (up_bitmap[id / 8] >> (id % 8)) & 1)
      out[k++] = id;
  }
  return k;
}

/* ---- upmap lists ---- */

static int upmap_cmp(const void *a, const void *b)
{
  const struct placement_upmap *x = a, *y = b;
  if (x->pool != y->pool)
    return x->pool < y->pool ? -1 : 1;
  if (x->pg != y->pg)
    return x->pg < y->pg ? -1 : 1;
  if (x->from != y->from)
    return x->from < y->from ? -1 : 1;
  return 0;
}

int placement_upmap_sort(struct placement_upmap *ups, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (ups[i].from == ups[i].to)
      return fail(-EINVAL, "upmap pool %u pg %u: from == to == osd.%u",
                  ups[i].pool, ups[i].pg, ups[i].from);
  if (n > 1)
    qsort(ups, n, sizeof *ups, upmap_cmp);
  for (size_t i = 1; i < n; i++)
    if (upmap_cmp(&ups[i - 1], &ups[i]) == 0)
      return fail(-EINVAL, "upmap pool %u pg %u: duplicate entry for osd.%u",
                  ups[i].pool, ups[i].pg, ups[i].from);
  return 0;
}

/* ---- balancer ---- */

/* Working state of one placement_balance() run; every array is owned. */
struct bal {
  const placement_map *m;
  const struct placement_pool *pool;
  uint32_t S;              /* stride: pool size */
  uint32_t *raw;           /* [pg_num * S] raw (top-k) sets */
  uint32_t *set;           /* [pg_num * S] current sets (with exceptions) */
  uint32_t *hset;          /* [pg_num * S] hosts of set */
  uint8_t *cnt;            /* [pg_num] members per PG */
  size_t N;                /* OSDs, dense index = position in map->idx */
  uint32_t *count;         /* [N] replicas held */
  int64_t *target;         /* [N] weight share, 48.16 replicas */
  uint32_t *limit;         /* [N] most replicas allowed */
  uint32_t *cand;          /* [n_cand] in OSDs by (count - target, id) */
  size_t *cpos;            /* [N] position in cand, or SIZE_MAX */
  size_t n_cand;
};

/* floor(a * b / c) without 128-bit arithmetic; needs (c - 1) * b < 2^64
 * and a result below 2^64. */
static uint64_t muldiv(uint64_t a, uint64_t b, uint64_t c)
{
  return (a / c) * b + ((a % c) * b) / c;
}

static size_t dense(const placement_map *m, uint32_t osd_id)
{
  return idx_lower(m, osd_id);   /* callers pass known ids */
}

static int64_t cand_key(const struct bal *b, size_t i)
{
  return ((int64_t)b->count[i] << 16) - b->target[i];
}

static bool cand_less(const struct bal *b, size_t i, size_t j)
{
  int64_t ki = cand_key(b, i), kj = cand_key(b, j);
  return ki < kj || (ki == kj && i < j);
}

/* Restore cand order around dense OSD i after its count changed. */
static void cand_fix(struct bal *b, size_t i)
{
  size_t p = b->cpos[i];
  if (p == SIZE_MAX)
    return;
  while (p > 0 && cand_less(b, i, b->cand[p - 1])) {
    b->cand[p] = b->cand[p - 1];
    b->cpos[b->cand[p]] = p;
    p--;
  }
  while (p + 1 < b->n_cand && cand_less(b, b->cand[p + 1], i)) {
    b->cand[p] = b->cand[p + 1];
    b->cpos[b->cand[p]] = p;
    p++;
  }
  b->cand[p] = (uint32_t)i;
  b->cpos[i] = p;
}

static int cand_cmp(const void *a, const void *c, void *ctx)
{
  size_t i = *(const uint32_t *)a, j = *(const uint32_t *)c;
  if (i == j)
    return 0;
  return cand_less(ctx, i, j) ? -1 : 1;
}

static int excess_cmp(const void *a, const void *c)
{
  const int64_t *x = a, *y = c;   /* pairs (excess, dense index) */
  if (x[0] != y[0])
    return x[0] > y[0] ? -1 : 1;
  return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Move one replica of PG pg off dense OSD o to the most underfull valid
 * OSD.  true if moved. */
static bool bal_move(struct bal *b, uint32_t pg, size_t o)
{
  uint32_t S = b->S, n = b->cnt[pg];
  uint32_t *set = &b->set[(size_t)pg * S], *hs = &b->hset[(size_t)pg * S];
  const uint32_t *raw = &b->raw[(size_t)pg * S];
  uint32_t oid = b->m->idx[o].osd_id, pos = n;
  for (uint32_t k = 0; k < n; k++)
    if (set[k] == oid)
      pos = k;
  if (pos == n)
    return false;
  for (size_t p = 0; p < b->n_cand; p++) {
    size_t c = b->cand[p];
    if (cand_key(b, c) + (1 << 16) > 0)
      break;                        /* only fill OSDs below their share */
    if (b->count[c] + 1 > b->limit[c])
      continue;
    uint32_t cid = b->m->idx[c].osd_id, chost = b->m->idx[c].host_id;
    bool bad = false;
    for (uint32_t k = 0; k < n; k++) {
      bad |= raw[k] == cid || set[k] == cid;
      if (b->pool->domain == PLACEMENT_DOMAIN_HOST)
        bad |= k != pos && hs[k] == chost;
    }
    if (bad)
      continue;
    set[pos] = cid;
    hs[pos] = chost;
    b->count[o]--;
    b->count[c]++;
    cand_fix(b, c);
    cand_fix(b, o);
    return true;
  }
  return false;
}

static void bal_free(struct bal *b)
{
  free(b->raw);
  free(b->set);
  free(b->hset);
  free(b->cnt);
  free(b->count);
  free(b->target);
  free(b->limit);
  free(b->cand);
  free(b->cpos);
}

int placement_balance(const placement_map *map,
                      const struct placement_pool *pool,
                      const struct placement_upmap *cur, size_t n_cur,
                      uint32_t max_dev_permille, size_t max_changes,
                      struct placement_upmap **out, size_t *n_out)
{
  int r = placement_pool_check(pool);
  if (r < 0)
    return r;
  if ((uint64_t)pool->pg_num * pool->size > UINT32_MAX)
    return fail(-EINVAL, "balance pool %u: pg_num %u x size %u too large",
                pool->id, pool->pg_num, pool->size);
  struct bal b = { .m = map, .pool = pool, .S = pool->size, .N = map->n_osds };
  size_t P = pool->pg_num, S = pool->size, N = map->n_osds;
  uint32_t *off = NULL, *lists = NULL;
  int64_t *over = NULL;
  struct placement_upmap *res = NULL;
  int moves = 0;

  b.raw = malloc(P * S * sizeof *b.raw);
  b.set = malloc(P * S * sizeof *b.set);
  b.hset = malloc(P * S * sizeof *b.hset);
  b.cnt = malloc(P);
  b.count = calloc(N + 1, sizeof *b.count);
  b.target = calloc(N + 1, sizeof *b.target);
  b.limit = calloc(N + 1, sizeof *b.limit);
  b.cand = malloc((N + 1) * sizeof *b.cand);
  b.cpos = malloc((N + 1) * sizeof *b.cpos);
  off = calloc(N + 2, sizeof *off);
  over = malloc((N + 1) * 2 * sizeof *over);
  if (!b.raw || !b.set || !b.hset || !b.cnt || !b.count || !b.target ||
      !b.limit || !b.cand || !b.cpos || !off || !over)
    goto out_enomem;

  /* Current sets: raw sets plus the valid existing exceptions. */
  uint64_t total = 0;
  for (uint32_t pg = 0; pg < P; pg++) {
    uint32_t *set = &b.set[pg * S], *hs = &b.hset[pg * S];
    int n = pg_raw(map, pool, pg, set, hs);
    memcpy(&b.raw[pg * S], set, (size_t)n * sizeof *set);
    apply_upmaps(map, pool, pg, cur, n_cur, set, hs, (uint32_t)n);
    b.cnt[pg] = (uint8_t)n;
    for (int k = 0; k < n; k++)
      b.count[dense(map, set[k])]++;
    total += (uint64_t)n;
  }

  /* Shares and limits of the in OSDs. */
  uint64_t W = map->in_weight;
  for (size_t i = 0; i < N; i++) {
    uint32_t w;
    bool in;
    placement_map_osd_info(map, map->idx[i].osd_id, NULL, &w, &in);
    b.cpos[i] = SIZE_MAX;
    if (!in || W == 0)
      continue;
    /* total <= 2^32 and w < 2^24, so total * w fits */
    uint64_t t = muldiv(total * w, 1u << 16, W);
    uint64_t l = muldiv(t, 1000u + (uint64_t)max_dev_permille, 1000u << 16);
    b.target[i] = (int64_t)t;
    b.limit[i] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
    b.cand[b.n_cand++] = (uint32_t)i;
  }
  qsort_r(b.cand, b.n_cand, sizeof *b.cand, cand_cmp, &b);
  for (size_t p = 0; p < b.n_cand; p++)
    b.cpos[b.cand[p]] = p;

  /* PGs of each OSD (CSR, in PG order). */
  for (size_t i = 0; i < N; i++)
    off[i + 1] = off[i] + b.count[i];
  lists = malloc((total ? total : 1) * sizeof *lists);
  if (!lists)
    goto out_enomem;
  {
    uint32_t *fill = malloc((N + 1) * sizeof *fill);
    if (!fill)
      goto out_enomem;
    memcpy(fill, off, (N + 1) * sizeof *fill);
    for (uint32_t pg = 0; pg < P; pg++)
      for (uint32_t k = 0; k < b.cnt[pg]; k++)
        lists[fill[dense(map, b.set[pg * S + k])]++] = pg;
    free(fill);
  }

  /* Overfull OSDs, most excess first; move replicas off each. */
  size_t n_over = 0;
  for (size_t i = 0; i < N; i++) {
    if (b.count[i] > b.limit[i]) {
      over[2 * n_over] = (int64_t)b.count[i] - b.limit[i];
      over[2 * n_over + 1] = (int64_t)i;
      n_over++;
    }
  }
  qsort(over, n_over, 2 * sizeof *over, excess_cmp);
  for (size_t k = 0; k < n_over && (size_t)moves < max_changes; k++) {
    size_t o = (size_t)over[2 * k + 1];
    for (uint32_t j = off[o]; j < off[o + 1] && b.count[o] > b.limit[o] &&
                              (size_t)moves < max_changes; j++)
      if (bal_move(&b, lists[j], o))
        moves++;
  }

  /* Output: other pools' entries, then this pool's as raw -> set diffs. */
  size_t n_res = 0, cap_res = 16;
  res = malloc(cap_res * sizeof *res);
  if (!res)
    goto out_enomem;
  for (size_t i = 0; i < n_cur; i++) {
    if (cur[i].pool == pool->id)
      continue;
    if (grow((void **)&res, &cap_res, n_res + 1, sizeof *res) < 0)
      goto out_enomem;
    res[n_res++] = cur[i];
  }
  for (uint32_t pg = 0; pg < P; pg++) {
    for (uint32_t k = 0; k < b.cnt[pg]; k++) {
      uint32_t from = b.raw[pg * S + k], to = b.set[pg * S + k];
      if (from == to)
        continue;
      if (grow((void **)&res, &cap_res, n_res + 1, sizeof *res) < 0)
        goto out_enomem;
      res[n_res++] = (struct placement_upmap){ pool->id, pg, from, to };
    }
  }
  qsort(res, n_res, sizeof *res, upmap_cmp);
  bal_free(&b);
  free(off);
  free(lists);
  free(over);
  *out = res;
  *n_out = n_res;
  return moves;

out_enomem:
  bal_free(&b);
  free(off);
  free(lists);
  free(over);
  free(res);
  return fail(-ENOMEM, "balance pool %u: out of memory", pool->id);
}
