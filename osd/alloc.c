/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the data-area allocator.  One bit per 4 KiB block (1 =
 * used) and a next-fit cursor, so that consecutive allocations land one
 * after the other (sequential device writes for direct writes).  Blocks
 * referenced more than once (shared by clones) have an entry in a hash of
 * extra references; a block with no entry and its bit set has exactly one
 * reference.  The allocator is rebuilt at open from the metadata (store.c
 * scans every chunk map), so nothing here is persistent.
 */
#include <errno.h>
#include <stdlib.h>

#include "osd/internal.h"

struct shared_ent {
  struct hnode hn;
  uint64_t blk;
  uint32_t extra;
};

struct alloc {
  uint64_t nblocks, used, cursor;
  uint64_t *bits;
  struct hmap shared;
};

struct alloc *alloc_new(uint64_t nblocks)
{
  struct alloc *a = calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->nblocks = nblocks;
  a->bits = calloc((nblocks + 63) / 64 + 1, sizeof(uint64_t));
  if (!a->bits || hmap_init(&a->shared, 64) < 0) {
    free(a->bits);
    free(a);
    errno = ENOMEM;
    return NULL;
  }
  return a;
}

void alloc_free_all(struct alloc *a)
{
  if (!a)
    return;
  hmap_foreach(&a->shared, i, e)
    free(e);
  hmap_destroy(&a->shared);
  free(a->bits);
  free(a);
}

static inline bool bit_get(const uint64_t *b, uint64_t i)
{
  return (b[i >> 6] >> (i & 63)) & 1;
}

bool alloc_is_used(const struct alloc *a, uint64_t blk)
{
  return blk < a->nblocks && bit_get(a->bits, blk);
}

/* First free block in [from, nblocks), or nblocks. */
static uint64_t find_free(const struct alloc *a, uint64_t from)
{
  uint64_t w = from >> 6;
  uint64_t nw = (a->nblocks + 63) / 64;
  if (w >= nw)
    return a->nblocks;
  uint64_t x = ~a->bits[w] & (~0ull << (from & 63));
  for (;;) {
    if (x) {
      uint64_t i = (w << 6) + (uint64_t)__builtin_ctzll(x);
      return i < a->nblocks ? i : a->nblocks;
    }
    if (++w >= nw)
      return a->nblocks;
    x = ~a->bits[w];
  }
}

uint64_t alloc_get(struct alloc *a, uint64_t want, uint64_t *start)
{
  if (a->used >= a->nblocks || want == 0)
    return 0;
  uint64_t s = find_free(a, a->cursor);
  if (s >= a->nblocks)
    s = find_free(a, 0);
  if (s >= a->nblocks)
    return 0;
  uint64_t n = 0;
  while (n < want && s + n < a->nblocks && !bit_get(a->bits, s + n))
    n++;
  alloc_mark_used(a, s, n);
  a->cursor = s + n >= a->nblocks ? 0 : s + n;
  *start = s;
  return n;
}

void alloc_mark_used(struct alloc *a, uint64_t start, uint64_t n)
{
  for (uint64_t i = start; i < start + n; i++) {
    if (!bit_get(a->bits, i)) {
      a->bits[i >> 6] |= 1ull << (i & 63);
      a->used++;
    }
  }
}

void alloc_release(struct alloc *a, uint64_t start, uint64_t n)
{
  for (uint64_t i = start; i < start + n; i++) {
    if (bit_get(a->bits, i)) {
      a->bits[i >> 6] &= ~(1ull << (i & 63));
      a->used--;
    }
  }
}

static struct shared_ent *shared_find(const struct alloc *a, uint64_t blk)
{
  uint64_t h = hash_u64(blk);
  for (struct hnode *e = hmap_first(&a->shared, h); e; e = hmap_next_same(e)) {
    struct shared_ent *s = (struct shared_ent *)e;
    if (s->blk == blk)
      return s;
  }
  return NULL;
}

void alloc_incref(struct alloc *a, uint64_t blk)
{
  if (!bit_get(a->bits, blk)) {
    alloc_mark_used(a, blk, 1);
    return;
  }
  struct shared_ent *s = shared_find(a, blk);
  if (s) {
    s->extra++;
    return;
  }
  s = calloc(1, sizeof *s);
  if (!s)
    abort();            /* a few bytes; the store cannot continue without */
  s->blk = blk;
  s->extra = 1;
  hmap_insert(&a->shared, &s->hn, hash_u64(blk));
}

uint32_t alloc_decref(struct alloc *a, uint64_t blk)
{
  struct shared_ent *s = shared_find(a, blk);
  if (!s)
    return 0;
  uint32_t left = s->extra--;
  if (s->extra == 0) {
    hmap_remove(&a->shared, &s->hn);
    free(s);
  }
  return left;
}

uint32_t alloc_refs(const struct alloc *a, uint64_t blk)
{
  if (!alloc_is_used(a, blk))
    return 0;
  struct shared_ent *s = shared_find(a, blk);
  return 1 + (s ? s->extra : 0);
}

uint64_t alloc_nblocks(const struct alloc *a)
{
  return a->nblocks;
}

uint64_t alloc_used(const struct alloc *a)
{
  return a->used;
}
