/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: encoding and checking of journal records (byte table in
 * internal.h).  These functions are pure (no I/O) so that the decoder can be
 * fuzzed: every length read from a record is checked against the record's
 * size before it is used.  Writing, group commit, replay and trimming live
 * in store.c; this file only knows what a record looks like.  On the
 * device records travel in batches, one per group commit (format version
 * 2): the batch's header area packs the records' heads (header + metadata)
 * and the data blocks follow, so a small write no longer costs a header
 * block of its own; replay rebuilds each record's image from the batch and
 * checks it exactly as before (jbat_*).
 */
#include <errno.h>
#include <pthread.h>

#include "common/crc32c.h"
#include "osd/internal.h"

uint8_t *jop_encode(uint8_t *p, enum jop_type t, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
  *p++ = (uint8_t)t;
  switch (t) {
  case JOP_PUT:
    put_le16(p, (uint16_t)klen);
    put_le32(p + 2, (uint32_t)vlen);
    p += 6;
    memcpy(p, key, klen);
    p += klen;
    if (vlen)
      memcpy(p, val, vlen);
    p += vlen;
    break;
  case JOP_DEL:
    put_le16(p, (uint16_t)klen);
    p += 2;
    memcpy(p, key, klen);
    p += klen;
    break;
  case JOP_DELRANGE:
    put_le16(p, (uint16_t)klen);
    put_le16(p + 2, (uint16_t)vlen);
    p += 4;
    memcpy(p, key, klen);
    p += klen;
    memcpy(p, val, vlen);
    p += vlen;
    break;
  }
  return p;
}

/* The crc of X || B from crc32c(0, X) and crc32c(0, B) for a 4096-byte
 * block B (common/crc32c.h: crc32c_shift). */
static struct crc32c_shift zshift;
static pthread_once_t zshift_once = PTHREAD_ONCE_INIT;

static void zshift_init(void)
{
  crc32c_shift_init(&zshift, STORE_BLOCK);
}

uint32_t jrec_crc_append_block(uint32_t crc, uint32_t block_crc)
{
  pthread_once(&zshift_once, zshift_init);
  return crc32c_shift_apply(&zshift, crc) ^ block_crc;
}

static void jrec_put_hdr(uint8_t *rec, const struct jrec_hdr *h)
{
  put_le32(rec, JREC_MAGIC);
  put_le32(rec + 4, 0);
  put_le64(rec + 8, h->seq);
  put_le32(rec + 16, h->len);
  put_le32(rec + 20, h->meta_len);
  put_le32(rec + 24, h->prev_crc);
  put_le32(rec + 28, h->n_ops);
  put_le32(rec + 32, h->n_data);
  put_le32(rec + 36, h->n_direct);
  put_le64(rec + 40, h->nonce);
}

void jrec_seal(uint8_t *rec, struct jrec_hdr *h)
{
  jrec_put_hdr(rec, h);
  h->crc = crc32c(0, rec, h->len);
  put_le32(rec + 4, h->crc);
}

void jrec_seal_crcs(uint8_t *rec, struct jrec_hdr *h, const uint32_t *data_crcs)
{
  jrec_put_hdr(rec, h);
  size_t head = h->len - (size_t)h->n_data * STORE_BLOCK;
  uint32_t c = crc32c(0, rec, head);
  for (uint32_t i = 0; i < h->n_data; i++)
    c = jrec_crc_append_block(c, data_crcs[i]);
  h->crc = c;
  put_le32(rec + 4, h->crc);
}

int jrec_parse_hdr(const uint8_t *buf, uint64_t max_len, struct jrec_hdr *h)
{
  if (get_le32(buf) != JREC_MAGIC)
    return -EINVAL;
  h->crc = get_le32(buf + 4);
  h->seq = get_le64(buf + 8);
  h->len = get_le32(buf + 16);
  h->meta_len = get_le32(buf + 20);
  h->prev_crc = get_le32(buf + 24);
  h->n_ops = get_le32(buf + 28);
  h->n_data = get_le32(buf + 32);
  h->n_direct = get_le32(buf + 36);
  h->nonce = get_le64(buf + 40);
  if (h->len < STORE_BLOCK || (h->len & (STORE_BLOCK - 1)) || h->len > max_len)
    return -EINVAL;
  if (h->n_data > h->len / STORE_BLOCK || h->n_direct > h->len ||
      h->n_ops > h->len || h->meta_len > h->len)
    return -EINVAL;
  uint64_t tables = 8ull * h->n_data + 12ull * h->n_direct;
  if (tables > h->meta_len)
    return -EINVAL;
  uint64_t head = (JREC_HDR + (uint64_t)h->meta_len + STORE_BLOCK - 1) &
                  ~(uint64_t)(STORE_BLOCK - 1);
  if (head + (uint64_t)h->n_data * STORE_BLOCK != h->len)
    return -EINVAL;
  return 0;
}

void jrec_iter_init(struct jrec_iter *it, const uint8_t *rec,
                    const struct jrec_hdr *h)
{
  it->p = rec + JREC_HDR;
  it->end = rec + JREC_HDR + h->meta_len - 8ull * h->n_data -
            12ull * h->n_direct;
  it->left = h->n_ops;
}

int jrec_iter_next(struct jrec_iter *it, struct jop *op)
{
  if (it->left == 0)
    return it->p == it->end ? 0 : -EINVAL;
  size_t avail = (size_t)(it->end - it->p);
  if (avail < 3)
    return -EINVAL;
  const uint8_t *p = it->p;
  op->type = (enum jop_type)p[0];
  switch (p[0]) {
  case JOP_PUT: {
    if (avail < 7)
      return -EINVAL;
    op->klen = get_le16(p + 1);
    op->vlen = get_le32(p + 3);
    if (op->klen == 0 || avail - 7 < op->klen || avail - 7 - op->klen < op->vlen)
      return -EINVAL;
    op->key = p + 7;
    op->val = p + 7 + op->klen;
    it->p = p + 7 + op->klen + op->vlen;
    break;
  }
  case JOP_DEL:
    op->klen = get_le16(p + 1);
    if (op->klen == 0 || avail - 3 < op->klen)
      return -EINVAL;
    op->key = p + 3;
    op->val = NULL;
    op->vlen = 0;
    it->p = p + 3 + op->klen;
    break;
  case JOP_DELRANGE:
    if (avail < 5)
      return -EINVAL;
    op->klen = get_le16(p + 1);
    op->vlen = get_le16(p + 3);
    if (op->klen == 0 || op->vlen == 0 || avail - 5 < op->klen ||
        avail - 5 - op->klen < op->vlen)
      return -EINVAL;
    op->key = p + 5;
    op->val = p + 5 + op->klen;
    it->p = p + 5 + op->klen + op->vlen;
    break;
  default:
    return -EINVAL;
  }
  it->left--;
  return 1;
}

int jrec_verify(const uint8_t *rec, const struct jrec_hdr *h)
{
  uint32_t saved = h->crc;
  uint32_t c = crc32c(0, rec, 4);
  static const uint8_t zero4[4];
  c = crc32c(c, zero4, 4);
  c = crc32c(c, rec + 8, h->len - 8);
  if (c != saved)
    return -EBADMSG;
  struct jrec_iter it;
  struct jop op;
  int r;
  jrec_iter_init(&it, rec, h);
  while ((r = jrec_iter_next(&it, &op)) > 0)
    ;
  return r;
}

uint64_t jrec_data_lba(const uint8_t *rec, const struct jrec_hdr *h, uint32_t i)
{
  const uint8_t *t = rec + JREC_HDR + h->meta_len - 8ull * h->n_data -
                     12ull * h->n_direct;
  return get_le64(t + 8ull * i);
}

void jrec_direct(const uint8_t *rec, const struct jrec_hdr *h, uint32_t i,
                 uint64_t *lba, uint32_t *crc)
{
  const uint8_t *t = rec + JREC_HDR + h->meta_len - 12ull * h->n_direct;
  *lba = get_le64(t + 12ull * i);
  *crc = get_le32(t + 12ull * i + 8);
}

uint64_t jrec_data_off(const struct jrec_hdr *h, uint32_t i)
{
  return (uint64_t)h->len - (uint64_t)(h->n_data - i) * STORE_BLOCK;
}

/* ---- batches (byte table in internal.h) ---- */

uint32_t jbat_head_bytes(const uint8_t *rec)
{
  return JREC_HDR + get_le32(rec + 20);
}

uint8_t *jbat_add(uint8_t *p, const uint8_t *rec)
{
  uint32_t n = jbat_head_bytes(rec);
  memcpy(p, rec, n);
  return p + n;
}

void jbat_seal(uint8_t *batch, struct jbat_hdr *b)
{
  put_le32(batch, JBAT_MAGIC);
  put_le32(batch + 4, 0);
  put_le64(batch + 8, b->first_seq);
  put_le32(batch + 16, b->n_rec);
  put_le32(batch + 20, b->hlen);
  put_le32(batch + 24, b->len);
  put_le32(batch + 28, 0);
  put_le64(batch + 32, b->nonce);
  b->crc = crc32c(0, batch, b->hlen);
  put_le32(batch + 4, b->crc);
}

int jbat_parse_hdr(const uint8_t *buf, uint64_t max_len, struct jbat_hdr *b)
{
  if (get_le32(buf) != JBAT_MAGIC)
    return -EINVAL;
  b->crc = get_le32(buf + 4);
  b->first_seq = get_le64(buf + 8);
  b->n_rec = get_le32(buf + 16);
  b->hlen = get_le32(buf + 20);
  b->len = get_le32(buf + 24);
  b->nonce = get_le64(buf + 32);
  if (b->hlen < STORE_BLOCK || (b->hlen & (STORE_BLOCK - 1)) ||
      (b->len & (STORE_BLOCK - 1)) || b->len < b->hlen || b->len > max_len)
    return -EINVAL;
  if (b->n_rec == 0 || b->n_rec > (b->hlen - JBAT_HDR) / JREC_HDR)
    return -EINVAL;
  return 0;
}

int jbat_verify(const uint8_t *batch, const struct jbat_hdr *b)
{
  static const uint8_t zero4[4];
  uint32_t c = crc32c(0, batch, 4);
  c = crc32c(c, zero4, 4);
  c = crc32c(c, batch + 8, b->hlen - 8);
  return c == b->crc ? 0 : -EBADMSG;
}

void jbat_iter_init(struct jbat_iter *it, const uint8_t *batch,
                    const struct jbat_hdr *b)
{
  it->batch = batch;
  it->hlen = b->hlen;
  it->len = b->len;
  it->off = JBAT_HDR;
  it->left = b->n_rec;
  it->data_off = b->hlen;
}

int jbat_iter_next(struct jbat_iter *it, struct jbat_rec *r)
{
  if (it->left == 0)
    return it->data_off == it->len ? 0 : -EINVAL;
  if (it->hlen - it->off < JREC_HDR)
    return -EINVAL;
  const uint8_t *h = it->batch + it->off;
  uint32_t meta_len = get_le32(h + 20);
  uint32_t n_data = get_le32(h + 32);
  if (meta_len > it->hlen - it->off - JREC_HDR)
    return -EINVAL;
  uint64_t data = (uint64_t)n_data * STORE_BLOCK;
  if (data > it->len - it->data_off)
    return -EINVAL;
  r->head = h;
  r->head_len = JREC_HDR + meta_len;
  r->n_data = n_data;
  r->data_off = it->data_off;
  r->rec_len = (((uint64_t)JREC_HDR + meta_len + STORE_BLOCK - 1) &
                ~(uint64_t)(STORE_BLOCK - 1)) + data;
  r->seq = get_le64(h + 8);
  it->off += r->head_len;
  it->data_off += data;
  it->left--;
  return 1;
}

void jbat_rec_image(uint8_t *dst, const uint8_t *batch, const struct jbat_rec *r)
{
  uint64_t head = r->rec_len - (uint64_t)r->n_data * STORE_BLOCK;
  memcpy(dst, r->head, r->head_len);
  memset(dst + r->head_len, 0, head - r->head_len);
  memcpy(dst + head, batch + r->data_off, (size_t)r->n_data * STORE_BLOCK);
}
