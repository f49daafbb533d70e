/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: private header of the OSD store, sectioned by file.  The
 * on-disk formats (superblock, journal record, RocksDB keys and values) are
 * defined here as byte tables; all multi-byte integers on the device and in
 * RocksDB values are little-endian, RocksDB keys use big-endian integers so
 * that they sort numerically.
 */
#ifndef BLK_OSD_INTERNAL_H
#define BLK_OSD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "common/endian.h"

#define STORE_BLOCK 4096u
#define STORE_BLOCK_SHIFT 12
/* Metadata granularity: one RocksDB value per chunk of an object. */
#define STORE_CHUNK_BLOCKS 32u
#define STORE_CHUNK_SIZE (STORE_CHUNK_BLOCKS * STORE_BLOCK)

/* byte order: common/endian.h */

/* ==== format.c: superblock ====
 *
 * Block 0 of the device (4096 bytes, little-endian):
 *   off  len  field
 *     0    8  magic "BLKSTOR\0"
 *     8    4  format version (1)
 *    12    4  block size (4096)
 *    16   16  store uuid (random at mkfs)
 *    32    4  OSD id
 *    36    4  reserved (0)
 *    40    8  device size used by the store (bytes)
 *    48    8  journal offset (bytes, multiple of 4096)
 *    56    8  journal size (bytes, multiple of 4096)
 *    64    8  data area offset (bytes, multiple of 4096)
 *    72    8  data area size (bytes, multiple of 4096)
 *    80    4  journal chain seed (crc "before" the first record)
 *    84 4008  zero
 *  4092    4  crc32c of bytes 0..4091
 */
#define SB_MAGIC "BLKSTOR"
#define SB_VERSION 2u    /* 2: journal batches (one header area per group) */

struct superblock {
  uint32_t version;
  uint32_t block_size;
  uint8_t uuid[16];
  uint32_t osd_id;
  uint64_t device_size;
  uint64_t journal_offset;
  uint64_t journal_size;
  uint64_t data_offset;
  uint64_t data_size;
  uint32_t chain_seed;
};

/* Encode sb into the 4096-byte block buf. */
void sb_encode(const struct superblock *sb, uint8_t *buf);
/* Decode and validate: -ENODATA if no magic (not a store), -EUCLEAN on a
 * bad crc, -EINVAL on an impossible layout (message in err[errlen]). */
int sb_decode(const uint8_t *buf, uint64_t dev_size, struct superblock *sb,
              char *err, size_t errlen);

/* ==== journal.c: journal record codec ====
 *
 * A record starts at a 4096-aligned journal position and never wraps (when
 * it does not fit before the end of the journal the writer starts it at
 * journal offset 0).  Little-endian:
 *   off  len  field
 *     0    4  magic 0x4A524E4C ("LNRJ")
 *     4    4  crc32c of the whole record (length `len`) with this field 0
 *     8    8  seq (1, 2, 3, ... without gaps)
 *    16    4  len: record bytes, multiple of 4096 (header .. last data block)
 *    20    4  meta_len: bytes of the metadata section (after the header)
 *    24    4  prev_crc: crc field of the previous record (chain; the first
 *             record after mkfs chains to the superblock's seed)
 *    28    4  n_ops: metadata operations
 *    32    4  n_data: deferred data blocks (journaled data)
 *    36    4  n_direct: direct-written blocks (data not in the journal)
 *    40    8  session nonce (random per store_open)
 *    48       metadata section (meta_len bytes):
 *               n_ops ops, each: u8 type, then
 *                 PUT:    u16 klen, u32 vlen, key, value
 *                 DEL:    u16 klen, key
 *                 DELRNG: u16 klen1, u16 klen2, key1, key2 ([key1,key2))
 *               n_data  x u64 data-area block (the i-th data block's home)
 *               n_direct x (u64 data-area block, u32 crc32c of its 4 KiB)
 *    ...      zero padding to a 4096 boundary
 *    ...      n_data blocks of 4096 bytes
 *
 * The chain (prev_crc) plus the per-open nonce means a stale record left
 * behind by an earlier crash can never be taken for the successor of a
 * record written after it.  A direct block's crc lets replay reject a record
 * whose directly-written data never reached the device.
 */
#define JREC_MAGIC 0x4A524E4Cu
#define JREC_HDR 48u
enum jop_type { JOP_PUT = 1, JOP_DEL = 2, JOP_DELRANGE = 3 };

struct jrec_hdr {
  uint32_t crc;
  uint64_t seq;
  uint32_t len;
  uint32_t meta_len;
  uint32_t prev_crc;
  uint32_t n_ops;
  uint32_t n_data;
  uint32_t n_direct;
  uint64_t nonce;
};

/* One decoded metadata operation; pointers borrow the record buffer. */
struct jop {
  enum jop_type type;
  const uint8_t *key;
  size_t klen;
  const uint8_t *val;   /* PUT: value; DELRANGE: end key */
  size_t vlen;
};

/* Cursor over a record's metadata section. */
struct jrec_iter {
  const uint8_t *p, *end;
  uint32_t left;
};

/* Size of the metadata section for ops totalling `ops_bytes` encoded bytes,
 * and of the whole record (rounded up to 4096). */
static inline uint64_t jrec_size(uint64_t ops_bytes, uint32_t n_data,
                                 uint32_t n_direct)
{
  uint64_t meta = ops_bytes + 8ull * n_data + 12ull * n_direct;
  uint64_t head = (JREC_HDR + meta + STORE_BLOCK - 1) & ~(uint64_t)(STORE_BLOCK - 1);
  return head + (uint64_t)n_data * STORE_BLOCK;
}
/* Encoded size of one op. */
static inline size_t jop_size(enum jop_type t, size_t klen, size_t vlen)
{
  return t == JOP_PUT ? 7 + klen + vlen : t == JOP_DEL ? 3 + klen : 5 + klen + vlen;
}
/* Append one op at p (which must have jop_size bytes); returns p advanced. */
uint8_t *jop_encode(uint8_t *p, enum jop_type t, const void *key, size_t klen,
                    const void *val, size_t vlen);
/* Write the header (computing crc over the record's len bytes, whose
 * metadata and data must already be in place) into rec. */
void jrec_seal(uint8_t *rec, struct jrec_hdr *h);
/* jrec_seal for a record whose n_data journaled blocks (the last n_data x
 * 4096 bytes) have the crc32c values data_crcs[0..n_data) already: only the
 * header and metadata are read, the record crc is combined from the block
 * crcs (same value as jrec_seal's).  data_crcs is borrowed for the call. */
void jrec_seal_crcs(uint8_t *rec, struct jrec_hdr *h, const uint32_t *data_crcs);
/* crc32c(0, X || B) from crc = crc32c(0, X) and block_crc = crc32c(0, B),
 * B being 4096 bytes long. */
uint32_t jrec_crc_append_block(uint32_t crc, uint32_t block_crc);
/* Parse and check a header at buf (only the first 4096 bytes are looked at):
 * 0 if the header is plausible (magic, sizes within max_len), -EINVAL. */
int jrec_parse_hdr(const uint8_t *buf, uint64_t max_len, struct jrec_hdr *h);
/* Verify crc over len bytes and decode-check the metadata section.  0 or
 * -EBADMSG (crc) / -EINVAL (malformed). */
int jrec_verify(const uint8_t *rec, const struct jrec_hdr *h);
/* Iterate ops: init then next until it returns 0 (end) or -EINVAL. */
void jrec_iter_init(struct jrec_iter *it, const uint8_t *rec,
                    const struct jrec_hdr *h);
int jrec_iter_next(struct jrec_iter *it, struct jop *op);
/* Block list accessors (valid after jrec_verify). */
uint64_t jrec_data_lba(const uint8_t *rec, const struct jrec_hdr *h, uint32_t i);
void jrec_direct(const uint8_t *rec, const struct jrec_hdr *h, uint32_t i,
                 uint64_t *lba, uint32_t *crc);
/* Offset of deferred data block i within the record. */
uint64_t jrec_data_off(const struct jrec_hdr *h, uint32_t i);

/* ---- journal batches (format version 2) ----
 * What the device holds is a batch per group commit, not the records one
 * by one: a header area with the batch header and the head (header +
 * metadata section, unpadded) of each record, then the journaled data
 * blocks of all records in record order.  A 4 KiB write at QD32 thus costs
 * ~4 KiB of journal, not 8 (one 4 KiB header block per record before).
 * A record's crc and chain are those of its image as defined above (head
 * zero-padded to 4096, then its data blocks), which replay rebuilds from
 * the batch (jbat_rec_image) and checks with jrec_verify.  A batch starts
 * at a 4096-aligned journal position and never wraps.  Little-endian:
 *   off  len  field
 *     0    4  magic 0x4A424154 ("TABJ")
 *     4    4  crc32c of the header area (hlen bytes) with this field 0
 *     8    8  seq of the first record
 *    16    4  n_rec: records in the batch (>= 1)
 *    20    4  hlen: header area bytes, multiple of 4096
 *    24    4  len: batch bytes (hlen + 4096 x data blocks of all records)
 *    28    4  zero
 *    32    8  session nonce (random per store_open)
 *    40       n_rec record heads, each JREC_HDR + its meta_len bytes
 *    ...      zero padding to hlen
 *    hlen     the records' data blocks (record 1's n_data blocks, then
 *             record 2's, ...)
 * The header crc covers the framing; each record's crc covers its own head
 * and data.  Replay takes records in order and stops at the first that
 * fails (torn batch: a prefix of an unacknowledged group may be replayed,
 * each record whole or not at all). */
#define JBAT_MAGIC 0x4A424154u
#define JBAT_HDR 40u

struct jbat_hdr {
  uint32_t crc;
  uint64_t first_seq;
  uint32_t n_rec;
  uint32_t hlen;
  uint32_t len;
  uint64_t nonce;
};

/* One record of a batch; head borrows the batch buffer. */
struct jbat_rec {
  const uint8_t *head;  /* JREC_HDR + meta_len bytes */
  uint32_t head_len;
  uint32_t n_data;
  uint64_t data_off;    /* offset of its first data block in the batch */
  uint64_t rec_len;     /* length of its record image */
  uint64_t seq;
};

/* Cursor over the records of a batch. */
struct jbat_iter {
  const uint8_t *batch;
  uint32_t hlen, len, off, left;
  uint64_t data_off;
};

/* Bytes a record (image at rec, as sealed by jrec_seal*) takes in a batch's
 * header area. */
uint32_t jbat_head_bytes(const uint8_t *rec);
/* Header area size for heads totalling head_bytes. */
static inline uint64_t jbat_hlen(uint64_t head_bytes)
{
  return (JBAT_HDR + head_bytes + STORE_BLOCK - 1) & ~(uint64_t)(STORE_BLOCK - 1);
}
/* Copy the head of record image rec to p (jbat_head_bytes(rec) bytes);
 * returns p advanced. */
uint8_t *jbat_add(uint8_t *p, const uint8_t *rec);
/* Write the batch header into batch (whose heads are in place and whose
 * padding up to b->hlen is zero) and set b->crc. */
void jbat_seal(uint8_t *batch, struct jbat_hdr *b);
/* Parse the fixed header at buf (first 4096 bytes): 0 if plausible (magic,
 * sizes within max_len), -EINVAL. */
int jbat_parse_hdr(const uint8_t *buf, uint64_t max_len, struct jbat_hdr *b);
/* Check the header area crc (b->hlen bytes at batch): 0 or -EBADMSG. */
int jbat_verify(const uint8_t *batch, const struct jbat_hdr *b);
/* Iterate records: init, then next returns 1 (r filled), 0 (end, all data
 * accounted for) or -EINVAL (framing does not add up). */
void jbat_iter_init(struct jbat_iter *it, const uint8_t *batch,
                    const struct jbat_hdr *b);
int jbat_iter_next(struct jbat_iter *it, struct jbat_rec *r);
/* Rebuild record r's image into dst (r->rec_len bytes) from the batch
 * (b->len bytes at batch). */
void jbat_rec_image(uint8_t *dst, const uint8_t *batch, const struct jbat_rec *r);

/* ==== alloc.c: data-area block allocator ====
 * A bitmap over data-area blocks (1 = used) with a next-fit cursor, plus a
 * hash of share counts for blocks referenced more than once (clones).
 * Not thread-safe: used from the loop thread only. */
struct alloc;
struct alloc *alloc_new(uint64_t nblocks);
void alloc_free_all(struct alloc *a);
/* Allocate up to want contiguous free blocks (at least 1): returns the
 * count with *start set, or 0 when nothing is free. */
uint64_t alloc_get(struct alloc *a, uint64_t want, uint64_t *start);
/* Mark [start, start+n) used/free (must currently be free/used). */
void alloc_mark_used(struct alloc *a, uint64_t start, uint64_t n);
void alloc_release(struct alloc *a, uint64_t start, uint64_t n);
bool alloc_is_used(const struct alloc *a, uint64_t blk);
/* Share counts: references = 1 + extra.  incref on an unused block marks it
 * used.  decref returns the references left (0 = the block is no longer
 * referenced: it stays marked used until alloc_release). */
void alloc_incref(struct alloc *a, uint64_t blk);
uint32_t alloc_decref(struct alloc *a, uint64_t blk);
uint32_t alloc_refs(const struct alloc *a, uint64_t blk);
uint64_t alloc_nblocks(const struct alloc *a);
uint64_t alloc_used(const struct alloc *a);

/* ==== hmap.c: intrusive chained hash map ====
 * Entries embed struct hnode; the map never allocates entries, only its
 * bucket array (grown by doubling). */
struct hnode {
  struct hnode *next;
  uint64_t hash;
};
struct hmap {
  struct hnode **b;
  size_t nb, n;
};
int hmap_init(struct hmap *m, size_t nb);
void hmap_destroy(struct hmap *m);
void hmap_insert(struct hmap *m, struct hnode *e, uint64_t hash);
void hmap_remove(struct hmap *m, struct hnode *e);
/* First node with this hash (then follow hmap_next_same). */
struct hnode *hmap_first(const struct hmap *m, uint64_t hash);
struct hnode *hmap_next_same(struct hnode *e);
uint64_t hash_bytes(const void *p, size_t n);
static inline uint64_t hash_u64(uint64_t x)
{
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return x;
}
#define hmap_foreach(m, i, e) \
  for (size_t i = 0; i < (m)->nb; i++) \
    for (struct hnode *e = (m)->b[i], *e##_nx = e ? e->next : NULL; e; \
         e = e##_nx, e##_nx = e ? e->next : NULL)

/* ==== meta.c: RocksDB keys and values ====
 *
 * Keys (integers big-endian):
 *   'O' pool:4 pg:4 name '\0' snap:8               -> onode
 *   'C' pool:4 pg:4 name '\0' snap:8 chunk:4       -> chunk map
 *   'M' omap_id:8 key                               -> omap value
 *   'S' "applied"  -> u64 seq of the last record whose metadata is applied
 *   'S' "ckpt"     -> checkpoint (journal replay start), see store.c
 *
 * Onode value (little-endian):
 *   0  4 encoding version (1)      4  4 flags (0)
 *   8  8 size                     16  8 omap_id (0 = no omap)
 *  24  4 n_attrs                  28  .. attrs: u16 nlen, name, u32 vlen, value
 *
 * Chunk value: 32 entries of 12 bytes: u64 block+1 (0 = hole), u32 crc32c
 * of the 4 KiB block.  A chunk with no blocks has no key.
 */
#define KEY_ONODE 'O'
#define KEY_CHUNK 'C'
#define KEY_OMAP 'M'
#define KEY_SYS 'S'
#define CHUNK_VAL_LEN (STORE_CHUNK_BLOCKS * 12u)
#define ONODE_HDR 28u
#define STORE_NAME_MAX_INT 1024

struct chunk_map {
  uint64_t blk[STORE_CHUNK_BLOCKS];   /* data-area block + 1; 0 = hole */
  uint32_t crc[STORE_CHUNK_BLOCKS];
};

struct onode_attr {
  char *name;
  uint8_t *val;
  uint32_t vlen;
};
struct onode {
  uint64_t size;
  uint64_t omap_id;
  uint32_t n_attrs, cap_attrs;
  struct onode_attr *attrs;   /* owned; sorted by name */
};

/* Object key prefix 'O'..snap into buf (>= 1 + 8 + namelen + 1 + 8 + 4). */
size_t meta_okey(uint8_t *buf, uint8_t type, uint32_t pool, uint32_t pg,
                 const char *name, uint64_t snap);
size_t meta_ckey(uint8_t *buf, uint32_t pool, uint32_t pg, const char *name,
                 uint64_t snap, uint32_t chunk);
/* Parse an 'O' key: name pointer/length into key. -EINVAL if malformed. */
int meta_parse_okey(const uint8_t *k, size_t klen, uint32_t *pool,
                    uint32_t *pg, const uint8_t **name, size_t *nlen,
                    uint64_t *snap);
void chunk_encode(const struct chunk_map *c, uint8_t *buf);
int chunk_decode(const uint8_t *buf, size_t len, struct chunk_map *c);
bool chunk_empty(const struct chunk_map *c);
/* Onode codec: encode returns malloc'd bytes (NULL on ENOMEM). */
uint8_t *onode_encode(const struct onode *o, size_t *len);
int onode_decode(const uint8_t *buf, size_t len, struct onode *o);
/* onode_decode without copying the attributes (o->n_attrs stays 0, their
 * count goes to *n_attrs): the size-only lookups of the I/O path. */
int onode_decode_hdr(const uint8_t *buf, size_t len, struct onode *o, uint32_t *n_attrs);
/* onode_decode keeping only the attribute called name (if present). */
int onode_decode_attr(const uint8_t *buf, size_t len, struct onode *o, const char *name);
void onode_clear(struct onode *o);
int onode_copy(struct onode *dst, const struct onode *src);
struct onode_attr *onode_find_attr(const struct onode *o, const char *name);
int onode_set_attr(struct onode *o, const char *name, const void *v,
                   size_t len);
bool onode_rm_attr(struct onode *o, const char *name);

/* ==== bench.c: store benchmark (blk-osd --bench) ==== */
struct store;
struct event_base;
struct bench_opts {
  double seconds;       /* per random test */
  uint64_t dataset;     /* bytes of objects to spread I/O over */
  unsigned seq_qd;      /* queue depth of the 1 MiB sequential tests */
  const char *only;     /* run only tests whose name contains this, or NULL */
  double settle;        /* seconds of idle time between tests */
};
/* Run the benchmark against an open store; print the table to stdout.
 * 0 or -errno. */
int store_bench(struct store *st, struct event_base *base,
                const struct bench_opts *o);

#endif
