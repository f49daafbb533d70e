/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: pure decoding, checking and encoding of NBD messages (the
 * byte tables are in proto.h).  Every length read from the wire is checked
 * against the bytes actually present before it is used; nothing allocates.
 * Request checking follows the specification's error rules: EINVAL for an
 * unknown command or flag or a flag not valid for the command, ENOSPC for
 * a write past the end, EPERM for writes to a read-only export, EINVAL for
 * other ranges past the end or oversized payloads.
 */
#include "client/nbd/proto.h"

#include <errno.h>
#include <string.h>

void nbd_greeting_encode(uint8_t out[NBD_HANDSHAKE_LEN])
{
  nbd_put64(out, NBD_MAGIC);
  nbd_put64(out + 8, NBD_IHAVEOPT);
  nbd_put16(out + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

int nbd_client_flags_check(uint32_t flags)
{
  return (flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) ? -EPROTO : 0;
}

int nbd_opt_hdr_decode(const uint8_t in[NBD_OPT_HDR_LEN], struct nbd_opt_hdr *h)
{
  if (nbd_get64(in) != NBD_IHAVEOPT)
    return -EPROTO;
  h->opt = nbd_get32(in + 8);
  h->len = nbd_get32(in + 12);
  return 0;
}

void nbd_opt_reply_encode(uint8_t out[NBD_OPT_REPLY_HDR_LEN], uint32_t opt, uint32_t type,
                          uint32_t len)
{
  nbd_put64(out, NBD_REP_MAGIC);
  nbd_put32(out + 8, opt);
  nbd_put32(out + 12, type);
  nbd_put32(out + 16, len);
}

static bool has_nul(const uint8_t *p, uint32_t n)
{
  return n && memchr(p, 0, n) != NULL;
}

int nbd_info_req_parse(const uint8_t *d, uint32_t len, struct nbd_info_req *r)
{
  if (len < 6)
    return -EINVAL;
  uint32_t nlen = nbd_get32(d);
  if (nlen > NBD_MAX_STRING || nlen > len - 6)
    return -EINVAL;
  uint16_t nreq = nbd_get16(d + 4 + nlen);
  if ((uint64_t)len != 6 + (uint64_t)nlen + 2 * (uint64_t)nreq)
    return -EINVAL;
  if (has_nul(d + 4, nlen))
    return -EINVAL;
  r->name = d + 4;
  r->name_len = nlen;
  r->nreqs = nreq;
  r->reqs = d + 6 + nlen;
  return 0;
}

uint16_t nbd_info_req_get(const struct nbd_info_req *r, uint16_t i)
{
  return nbd_get16(r->reqs + 2 * (size_t)i);
}

int nbd_meta_req_parse(const uint8_t *d, uint32_t len, struct nbd_meta_req *r)
{
  if (len < 8)
    return -EINVAL;
  uint32_t nlen = nbd_get32(d);
  if (nlen > NBD_MAX_STRING || nlen > len - 8)
    return -EINVAL;
  if (has_nul(d + 4, nlen))
    return -EINVAL;
  uint32_t nq = nbd_get32(d + 4 + nlen);
  uint32_t pos = 8 + nlen;
  /* walk once to validate every query before anything is answered */
  for (uint32_t i = 0; i < nq; i++) {
    if (len - pos < 4)
      return -EINVAL;
    uint32_t ql = nbd_get32(d + pos);
    pos += 4;
    if (ql > NBD_MAX_STRING || ql > len - pos || has_nul(d + pos, ql))
      return -EINVAL;
    pos += ql;
  }
  if (pos != len)
    return -EINVAL;
  r->name = d + 4;
  r->name_len = nlen;
  r->nqueries = nq;
  r->queries = d + 8 + nlen;
  r->queries_len = len - 8 - nlen;
  return 0;
}

bool nbd_meta_req_next(const struct nbd_meta_req *r, uint32_t *pos, const uint8_t **q,
                       uint32_t *qlen)
{
  if (r->queries_len - *pos < 4 || *pos >= r->queries_len)
    return false;
  uint32_t ql = nbd_get32(r->queries + *pos);
  if (ql > r->queries_len - *pos - 4)
    return false;
  *q = r->queries + *pos + 4;
  *qlen = ql;
  *pos += 4 + ql;
  return true;
}

bool nbd_meta_query_selects_alloc(const uint8_t *q, uint32_t qlen, bool list)
{
  static const char full[] = NBD_META_BASE_ALLOCATION;
  if (qlen == sizeof full - 1 && !memcmp(q, full, qlen))
    return true;
  /* LIST accepts the namespace alone ("base:") as "every context in it" */
  return list && qlen == 5 && !memcmp(q, "base:", 5);
}

int nbd_export_name_split(const char *name, size_t len, char pool[256], char image[256],
                          char snap[256])
{
  const char *slash = memchr(name, '/', len);
  if (!slash || memchr(name, '\0', len))
    return -EINVAL;
  size_t plen = (size_t)(slash - name);
  const char *rest = slash + 1;
  size_t rlen = len - plen - 1;
  const char *at = memchr(rest, '@', rlen);
  size_t ilen = at ? (size_t)(at - rest) : rlen;
  size_t slen = at ? rlen - ilen - 1 : 0;
  if (plen == 0 || plen > 255 || ilen == 0 || ilen > 255 || slen > 255 ||
      (at && slen == 0) || memchr(rest, '/', rlen))
    return -EINVAL;
  memcpy(pool, name, plen);
  pool[plen] = '\0';
  memcpy(image, rest, ilen);
  image[ilen] = '\0';
  if (at)
    memcpy(snap, at + 1, slen);
  snap[slen] = '\0';
  return 0;
}

int nbd_request_decode(const uint8_t in[NBD_REQUEST_LEN], struct nbd_request *r)
{
  if (nbd_get32(in) != NBD_REQUEST_MAGIC)
    return -EPROTO;
  r->flags = nbd_get16(in + 4);
  r->type = nbd_get16(in + 6);
  r->cookie = nbd_get64(in + 8);
  r->offset = nbd_get64(in + 16);
  r->len = nbd_get32(in + 24);
  return 0;
}

void nbd_request_encode(uint8_t out[NBD_REQUEST_LEN], const struct nbd_request *r)
{
  nbd_put32(out, NBD_REQUEST_MAGIC);
  nbd_put16(out + 4, r->flags);
  nbd_put16(out + 6, r->type);
  nbd_put64(out + 8, r->cookie);
  nbd_put64(out + 16, r->offset);
  nbd_put32(out + 24, r->len);
}

static bool past_end(const struct nbd_request *r, uint64_t size)
{
  return r->offset > size || r->len > size - r->offset;
}

int nbd_request_check(const struct nbd_request *r, const struct nbd_session *s,
                      uint64_t *payload)
{
  bool ro = s->tflags & NBD_FLAG_READ_ONLY;
  uint16_t allowed;
  *payload = r->type == NBD_CMD_WRITE ? r->len : 0;
  switch (r->type) {
  case NBD_CMD_READ:
    allowed = NBD_CMD_FLAG_DF;
    break;
  case NBD_CMD_WRITE:
    allowed = NBD_CMD_FLAG_FUA;
    break;
  case NBD_CMD_DISC:
  case NBD_CMD_FLUSH:
  case NBD_CMD_CACHE:
    allowed = 0;
    break;
  case NBD_CMD_TRIM:
    allowed = NBD_CMD_FLAG_FUA;
    break;
  case NBD_CMD_WRITE_ZEROES:
    allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    break;
  case NBD_CMD_BLOCK_STATUS:
    allowed = NBD_CMD_FLAG_REQ_ONE;
    break;
  default:
    return -EINVAL;
  }
  if (r->flags & ~allowed)
    return -EINVAL;
  if ((r->flags & NBD_CMD_FLAG_DF) && !s->structured)
    return -EINVAL;
  if ((r->flags & NBD_CMD_FLAG_FAST_ZERO) && !(s->tflags & NBD_FLAG_SEND_FAST_ZERO))
    return -EINVAL;
  switch (r->type) {
  case NBD_CMD_READ:
    if (r->len > NBD_MAX_PAYLOAD)
      return -EINVAL;
    return past_end(r, s->size) ? -EINVAL : 0;
  case NBD_CMD_WRITE:
    if (r->len > NBD_MAX_PAYLOAD)
      return -EINVAL;
    if (ro)
      return -EPERM;
    return past_end(r, s->size) ? -ENOSPC : 0;
  case NBD_CMD_DISC:
    return 0;
  case NBD_CMD_FLUSH:
    return (r->offset || r->len) ? -EINVAL : 0;
  case NBD_CMD_TRIM:
  case NBD_CMD_WRITE_ZEROES:
    if (ro)
      return -EPERM;
    return past_end(r, s->size) ? -ENOSPC : 0;
  case NBD_CMD_CACHE:
    return past_end(r, s->size) ? -EINVAL : 0;
  case NBD_CMD_BLOCK_STATUS:
    if (!s->structured || !s->meta_alloc || r->len == 0)
      return -EINVAL;
    return past_end(r, s->size) ? -EINVAL : 0;
  }
  return -EINVAL;
}

uint32_t nbd_errno_to_wire(int neg_errno)
{
  switch (-neg_errno) {
  case 0:
    return 0;
  case EPERM:
  case EROFS:
  case EACCES:
    return NBD_EPERM;
  case ENOMEM:
    return NBD_ENOMEM;
  case EINVAL:
  case ERANGE:
    return NBD_EINVAL;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return NBD_ENOSPC;
  case EOVERFLOW:
    return NBD_EOVERFLOW;
  case ENOTSUP:
    return NBD_ENOTSUP;
  case ESHUTDOWN:
    return NBD_ESHUTDOWN;
  default:
    return NBD_EIO;
  }
}

void nbd_simple_reply_encode(uint8_t out[NBD_SIMPLE_REPLY_LEN], uint32_t error,
                             uint64_t cookie)
{
  nbd_put32(out, NBD_SIMPLE_REPLY_MAGIC);
  nbd_put32(out + 4, error);
  nbd_put64(out + 8, cookie);
}

void nbd_chunk_encode(uint8_t out[NBD_CHUNK_HDR_LEN], uint16_t flags, uint16_t type,
                      uint64_t cookie, uint32_t len)
{
  nbd_put32(out, NBD_STRUCTURED_REPLY_MAGIC);
  nbd_put16(out + 4, flags);
  nbd_put16(out + 6, type);
  nbd_put64(out + 8, cookie);
  nbd_put32(out + 16, len);
}

size_t nbd_extents_to_descriptors(const struct nbd_extent *ext, size_t n, uint64_t off,
                                  uint32_t len, uint32_t (*out)[2], size_t max)
{
  uint64_t pos = off, end = off + len;
  size_t nd = 0;
  size_t i = 0;
  if (len == 0 || max == 0)
    return 0;
  while (pos < end && nd < max) {
    /* skip extents that end at or before pos */
    while (i < n && (ext[i].length == 0 || ext[i].offset + ext[i].length <= pos))
      i++;
    uint64_t seg_end;
    uint32_t st;
    if (i < n && ext[i].offset <= pos) {
      seg_end = ext[i].offset + ext[i].length;
      st = ext[i].flags & (NBD_STATE_HOLE | NBD_STATE_ZERO);
    } else {
      /* a gap the library did not describe: allocated data */
      seg_end = i < n ? ext[i].offset : end;
      st = 0;
    }
    if (seg_end > end)
      seg_end = end;
    uint64_t l = seg_end - pos;
    if (nd > 0 && out[nd - 1][1] == st && (uint64_t)out[nd - 1][0] + l <= UINT32_MAX) {
      out[nd - 1][0] += (uint32_t)l;
    } else {
      out[nd][0] = (uint32_t)l; /* l <= len <= UINT32_MAX */
      out[nd][1] = st;
      nd++;
    }
    pos = seg_end;
  }
  return nd;
}

static bool zero_block(const uint8_t *p, uint64_t n)
{
  for (uint64_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

size_t nbd_zero_scan(const uint8_t *buf, uint64_t off, uint32_t len, uint32_t min_run,
                     struct nbd_extent *ext, size_t max)
{
  size_t n = 0;
  uint64_t pos = 0;                           /* start of the current data run */
  uint64_t b = (4096 - (off & 4095)) & 4095;  /* first block boundary */
  if (min_run == 0)
    min_run = 1;
  while (b < len && n + 2 <= max) {
    uint64_t blk = len - b < 4096 ? len - b : 4096; /* a short block only at the end */
    if (!zero_block(buf + b, blk)) {
      b += blk;
      continue;
    }
    uint64_t z = b + blk;
    while (z < len) {
      uint64_t zb = len - z < 4096 ? len - z : 4096;
      if (!zero_block(buf + z, zb))
        break;
      z += zb;
    }
    if (z - b >= min_run) {
      if (b > pos) {
        ext[n].offset = off + pos;
        ext[n].length = b - pos;
        ext[n++].flags = 0;
      }
      ext[n].offset = off + b;
      ext[n].length = z - b;
      ext[n++].flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
      pos = z;
    }
    b = z;
  }
  return n;
}
