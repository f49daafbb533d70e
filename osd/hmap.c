/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a small intrusive chained hash map (entries embed struct
 * hnode and carry their full 64-bit hash; callers compare keys).  The
 * bucket array doubles when the load passes 1, so lookups stay O(1) for the
 * overlay, pending-block and share-count maps of the store.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "osd/internal.h"

int hmap_init(struct hmap *m, size_t nb)
{
  size_t n = 16;
  while (n < nb)
    n <<= 1;
  m->b = calloc(n, sizeof *m->b);
  if (!m->b)
    return -ENOMEM;
  m->nb = n;
  m->n = 0;
  return 0;
}

void hmap_destroy(struct hmap *m)
{
  free(m->b);
  m->b = NULL;
  m->nb = m->n = 0;
}

static void hmap_grow(struct hmap *m)
{
  size_t nn = m->nb * 2;
  struct hnode **nb = calloc(nn, sizeof *nb);
  if (!nb)
    return;             /* keep the longer chains; still correct */
  for (size_t i = 0; i < m->nb; i++) {
    struct hnode *e = m->b[i];
    while (e) {
      struct hnode *nx = e->next;
      size_t j = e->hash & (nn - 1);
      e->next = nb[j];
      nb[j] = e;
      e = nx;
    }
  }
  free(m->b);
  m->b = nb;
  m->nb = nn;
}

void hmap_insert(struct hmap *m, struct hnode *e, uint64_t hash)
{
  if (m->n >= m->nb)
    hmap_grow(m);
  e->hash = hash;
  size_t i = hash & (m->nb - 1);
  e->next = m->b[i];
  m->b[i] = e;
  m->n++;
}

void hmap_remove(struct hmap *m, struct hnode *e)
{
  struct hnode **pp = &m->b[e->hash & (m->nb - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = e->next;
    m->n--;
  }
}

struct hnode *hmap_first(const struct hmap *m, uint64_t hash)
{
  struct hnode *e = m->b[hash & (m->nb - 1)];
  while (e && e->hash != hash)
    e = e->next;
  return e;
}

struct hnode *hmap_next_same(struct hnode *e)
{
  uint64_t h = e->hash;
  e = e->next;
  while (e && e->hash != h)
    e = e->next;
  return e;
}

uint64_t hash_bytes(const void *p, size_t n)
{
  /* eight bytes per step (each step a bijection of the state for a given
   * word), the tail packed into one last word with the length, then a
   * final mix: in memory only, so the values may change between builds.
   * Byte-wise FNV-1a cost a dependent multiply per byte of 40-70 byte
   * metadata keys, several times per op. */
  const uint8_t *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t t = (uint64_t)n << 56;
  for (size_t i = 0; i < n; i++)
    t |= (uint64_t)s[i] << (8 * i);
  h = (h ^ t) * 0x9e3779b97f4a7c15ull;
  return hash_u64(h);
}
