/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the consistency check.  After a checkpoint (so RocksDB and
 * the data area hold everything and the overlay is empty) it scans every
 * onode and chunk map, counts the references to each data-area block, and
 * compares the counts with the live allocator: a referenced block marked
 * free is the one unforgivable error (it could be handed out again); a
 * block marked used with no reference is a leak unless it awaits release;
 * share counts must match.  It also checks that chunks decode, lie inside
 * their object's size and belong to an existing object, that omap entries
 * belong to an existing object's omap id, and with deep=true reads every
 * referenced block and verifies its crc32c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "osd/store_int.h"

#define SUB "fsck"

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int store_fsck(store *st, bool deep)
{
  int r = store_checkpoint_sync(st);
  if (r < 0)
    return r;
  uint64_t nblocks = alloc_nblocks(st->alloc);
  uint32_t *refs = calloc(nblocks ? nblocks : 1, sizeof *refs);
  uint64_t *omap_ids = NULL;
  size_t n_omap = 0, c_omap = 0;
  uint8_t *blk = NULL;
  if (!refs || posix_memalign((void **)&blk, STORE_BLOCK, STORE_BLOCK)) {
    free(refs);
    return -ENOMEM;
  }
  int problems = 0;
  uint64_t objects = 0, chunks = 0, blocks = 0;
#define PROBLEM(...)                                                          \
  do {                                                                        \
    problems++;                                                               \
    log_err(SUB, __VA_ARGS__);                                                \
  } while (0)

  /* onodes */
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ro);
  uint8_t pfx = KEY_ONODE;
  for (rocksdb_iter_seek(it, (const char *)&pfx, 1); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (k[0] != KEY_ONODE)
      break;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    uint32_t pool, pg;
    const uint8_t *name;
    size_t nl;
    uint64_t snap;
    struct onode o;
    if (meta_parse_okey(k, kl, &pool, &pg, &name, &nl, &snap) < 0 ||
        onode_decode(v, vl, &o) < 0) {
      PROBLEM("undecodable onode (key of %zu bytes)", kl);
      continue;
    }
    objects++;
    if (o.omap_id) {
      if (n_omap == c_omap) {
        c_omap = c_omap ? c_omap * 2 : 64;
        omap_ids = realloc(omap_ids, c_omap * sizeof *omap_ids);
        if (!omap_ids)
          abort();
      }
      omap_ids[n_omap++] = o.omap_id;
    }
    onode_clear(&o);
  }
  rocksdb_iter_destroy(it);
  if (n_omap)
    qsort(omap_ids, n_omap, sizeof *omap_ids, cmp_u64);
  for (size_t i = 1; i < n_omap; i++)
    if (omap_ids[i] == omap_ids[i - 1])
      PROBLEM("omap id %llx used by two objects",
              (unsigned long long)omap_ids[i]);

  /* chunk maps */
  it = rocksdb_create_iterator(st->db, st->ro);
  pfx = KEY_CHUNK;
  for (rocksdb_iter_seek(it, (const char *)&pfx, 1); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (k[0] != KEY_CHUNK)
      break;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    uint32_t pool, pg;
    const uint8_t *name;
    size_t nl;
    uint64_t snap;
    struct chunk_map cm;
    chunks++;
    if (kl < 4 || meta_parse_okey(k, kl - 4, &pool, &pg, &name, &nl, &snap) < 0 ||
        chunk_decode(v, vl, &cm) < 0) {
      PROBLEM("undecodable chunk map (key of %zu bytes)", kl);
      continue;
    }
    uint32_t ci = get_be32(k + kl - 4);
    char nbuf[STORE_NAME_MAX + 1];
    memcpy(nbuf, name, nl < STORE_NAME_MAX ? nl : STORE_NAME_MAX);
    nbuf[nl < STORE_NAME_MAX ? nl : STORE_NAME_MAX] = 0;
    struct store_oid oid = { pool, pg, nbuf, snap };
    struct onode o;
    int lr = st_load_onode(st, &oid, &o);
    if (lr <= 0) {
      PROBLEM("chunk %u of %u.%x/%s has no object", ci, pool, pg, nbuf);
    } else {
      for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++)
        if (cm.blk[i] &&
            (uint64_t)ci * STORE_CHUNK_SIZE + (uint64_t)i * STORE_BLOCK >= o.size)
          PROBLEM("%u.%x/%s has a block past its size %llu (chunk %u)", pool,
                  pg, nbuf, (unsigned long long)o.size, ci);
      onode_clear(&o);
    }
    for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++) {
      if (!cm.blk[i])
        continue;
      uint64_t b = cm.blk[i] - 1;
      if (b >= nblocks) {
        PROBLEM("%u.%x/%s chunk %u references block %llu outside the data "
                "area", pool, pg, nbuf, ci, (unsigned long long)b);
        continue;
      }
      refs[b]++;
      blocks++;
      if (deep) {
        ssize_t n = pread(st->fd, blk, STORE_BLOCK,
                          (off_t)(st->sb.data_offset + b * STORE_BLOCK));
        if (n != STORE_BLOCK)
          PROBLEM("%u.%x/%s offset %llu: read of block %llu failed", pool, pg,
                  nbuf, (unsigned long long)ci * STORE_CHUNK_SIZE + i * STORE_BLOCK,
                  (unsigned long long)b);
        else if (crc32c(0, blk, STORE_BLOCK) != cm.crc[i])
          PROBLEM("%u.%x/%s offset %llu: checksum mismatch (block %llu)",
                  pool, pg, nbuf,
                  (unsigned long long)ci * STORE_CHUNK_SIZE + i * STORE_BLOCK,
                  (unsigned long long)b);
      }
    }
  }
  rocksdb_iter_destroy(it);

  /* omap entries */
  it = rocksdb_create_iterator(st->db, st->ro);
  pfx = KEY_OMAP;
  uint64_t orphan = 0;
  for (rocksdb_iter_seek(it, (const char *)&pfx, 1); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (k[0] != KEY_OMAP)
      break;
    uint64_t id = kl >= 9 ? get_be64(k + 1) : 0;
    if (!n_omap || !bsearch(&id, omap_ids, n_omap, sizeof *omap_ids, cmp_u64))
      orphan++;
  }
  rocksdb_iter_destroy(it);
  if (orphan)
    PROBLEM("%llu omap entries belong to no object", (unsigned long long)orphan);

  /* allocator vs references */
  uint64_t *pending = calloc(st->nrel + 1, sizeof *pending);
  if (!pending)
    abort();
  for (size_t i = 0; i < st->nrel; i++)
    pending[i] = st->rel[i].blk;
  if (st->nrel)
    qsort(pending, st->nrel, sizeof *pending, cmp_u64);
  uint64_t leaked = 0;
  for (uint64_t b = 0; b < nblocks; b++) {
    bool used = alloc_is_used(st->alloc, b);
    if (refs[b] && !used) {
      PROBLEM("block %llu is referenced %u time(s) but marked free",
              (unsigned long long)b, refs[b]);
    } else if (refs[b] && alloc_refs(st->alloc, b) != refs[b]) {
      PROBLEM("block %llu is referenced %u time(s) but its share count is %u",
              (unsigned long long)b, refs[b], alloc_refs(st->alloc, b));
    } else if (!refs[b] && used &&
               !bsearch(&b, pending, st->nrel, sizeof *pending, cmp_u64)) {
      leaked++;
    }
  }
  if (leaked)
    PROBLEM("%llu blocks are marked used but referenced by nothing",
            (unsigned long long)leaked);
  free(pending);
  log_info(SUB, "%llu objects, %llu chunk maps, %llu block references, %llu "
           "blocks used: %d problem(s)%s", (unsigned long long)objects,
           (unsigned long long)chunks, (unsigned long long)blocks,
           (unsigned long long)alloc_used(st->alloc), problems,
           deep ? " (deep)" : "");
  free(omap_ids);
  free(refs);
  free(blk);
  return problems;
}
