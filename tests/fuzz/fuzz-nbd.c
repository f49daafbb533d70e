/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for blk-nbd's wire code (client/nbd/proto.c): the input
 * is what a client sends after the server greeting: 4 bytes of client
 * flags, options (each parsed with the server's own INFO/GO, meta context
 * and export name parsers), and, after an NBD_OPT_GO whose body parses,
 * transmission requests checked against a session whose size and flags
 * come from the GO body.  Properties checked on every accepted message:
 * parsed strings lie inside the option, an accepted request stays inside
 * the export and under the payload limit, a WRITE's payload is skipped
 * exactly, and block status descriptors cover a prefix of the range
 * contiguously with at most max entries, and the zero scan of a READ
 * reports only zero bytes as holes, inside the range, in order.  proto.c is compiled into this
 * target (included below) so it is instrumented for coverage.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/nbd/proto.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_descriptors(const uint8_t *d, size_t n, uint64_t off, uint32_t len)
{
  struct nbd_extent ext[16];
  size_t ne = 0;
  uint64_t pos = off;
  /* extents from the input: sorted, as libblk gives them (with gaps) */
  for (size_t i = 0; i + 3 <= n && ne < 16; i += 3) {
    pos += d[i] * 512u;
    uint64_t l = (uint64_t)(d[i + 1] + 1) * 4096u;
    ext[ne].offset = pos;
    ext[ne].length = l;
    ext[ne].flags = d[i + 2] & 3;
    pos += l;
    ne++;
  }
  uint32_t out[64][2];
  size_t max = 1 + (n % 64);
  size_t nd = nbd_extents_to_descriptors(ext, ne, off, len, out, max);
  if (len && (nd == 0 || nd > max))
    abort();
  uint64_t sum = 0;
  for (size_t i = 0; i < nd; i++) {
    if (out[i][0] == 0 || out[i][1] > 3)
      abort();
    sum += out[i][0];
  }
  if (sum > len || (nd < max && sum != len))
    abort();
}

/* nbd_zero_scan over the input itself as read data */
static void check_zero_scan(const uint8_t *d, size_t n)
{
  if (n < 3)
    return;
  uint64_t off = (uint64_t)d[0] * 512;
  uint32_t min = 1u + d[1] * 64u;
  size_t max = 2 + d[2] % 16;
  d += 3;
  n -= 3;
  struct nbd_extent ext[32];
  size_t ne = nbd_zero_scan(d, off, (uint32_t)n, min, ext, max);
  if (ne > max)
    abort();
  uint64_t pos = off;
  for (size_t i = 0; i < ne; i++) {
    if (ext[i].offset < pos || ext[i].length == 0 || ext[i].offset + ext[i].length > off + n)
      abort();
    if (ext[i].flags) {
      if (ext[i].length < min)
        abort();
      for (uint64_t k = 0; k < ext[i].length; k++)
        if (d[ext[i].offset - off + k])
          abort();
    }
    pos = ext[i].offset + ext[i].length;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t off = 0;
  check_zero_scan(data, size);
  struct nbd_session s = { .size = 1u << 20, .tflags = NBD_FLAG_HAS_FLAGS };
  bool transmission = false;
  if (size < 4)
    return 0;
  if (nbd_client_flags_check(nbd_get32(data)) < 0)
    return 0;
  off = 4;
  while (!transmission && size - off >= NBD_OPT_HDR_LEN) {
    struct nbd_opt_hdr h;
    if (nbd_opt_hdr_decode(data + off, &h) < 0)
      return 0;
    off += NBD_OPT_HDR_LEN;
    if (h.len > NBD_MAX_OPT_LEN || h.len > size - off)
      return 0; /* the server skips it; nothing more to parse here */
    const uint8_t *d = data + off;
    off += h.len;
    struct nbd_info_req ir;
    struct nbd_meta_req mr;
    char pool[256], image[256], snap[256];
    switch (h.opt) {
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      if (nbd_info_req_parse(d, h.len, &ir) == 0) {
        if (ir.name < d || ir.name + ir.name_len > d + h.len ||
            ir.reqs + 2 * (size_t)ir.nreqs != d + h.len)
          abort();
        for (uint16_t i = 0; i < ir.nreqs; i++)
          (void)nbd_info_req_get(&ir, i);
        if (nbd_export_name_split((const char *)ir.name, ir.name_len, pool, image, snap) == 0 &&
            (!pool[0] || !image[0] || strchr(image, '/')))
          abort();
        if (h.opt == NBD_OPT_GO) {
          /* session parameters from the body so requests meet edges */
          s.size = ir.name_len ? (uint64_t)ir.name[0] << (ir.name_len % 40) : 0;
          s.tflags = NBD_FLAG_HAS_FLAGS |
                     ((ir.nreqs & 1) ? NBD_FLAG_READ_ONLY : NBD_FLAG_SEND_FAST_ZERO);
          s.structured = ir.nreqs & 2;
          s.meta_alloc = ir.nreqs & 4;
          transmission = true;
        }
      }
      break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      if (nbd_meta_req_parse(d, h.len, &mr) == 0) {
        uint32_t pos = 0, seen = 0, ql;
        const uint8_t *q;
        while (nbd_meta_req_next(&mr, &pos, &q, &ql)) {
          if (q < d || q + ql > d + h.len)
            abort();
          (void)nbd_meta_query_selects_alloc(q, ql, h.opt == NBD_OPT_LIST_META_CONTEXT);
          seen++;
        }
        if (seen != mr.nqueries)
          abort();
      }
      break;
    case NBD_OPT_EXPORT_NAME:
      (void)nbd_export_name_split((const char *)d, h.len, pool, image, snap);
      break;
    default:
      break;
    }
  }
  while (transmission && size - off >= NBD_REQUEST_LEN) {
    struct nbd_request r;
    uint64_t payload;
    if (nbd_request_decode(data + off, &r) < 0)
      return 0;
    off += NBD_REQUEST_LEN;
    int rc = nbd_request_check(&r, &s, &payload);
    if (payload != (r.type == NBD_CMD_WRITE ? r.len : 0))
      abort();
    if (rc == 0) {
      bool ranged = r.type != NBD_CMD_DISC && r.type != NBD_CMD_FLUSH;
      if (ranged && (r.offset > s.size || r.len > s.size - r.offset))
        abort();
      if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE) && r.len > NBD_MAX_PAYLOAD)
        abort();
      if ((r.type == NBD_CMD_WRITE || r.type == NBD_CMD_TRIM ||
           r.type == NBD_CMD_WRITE_ZEROES) && (s.tflags & NBD_FLAG_READ_ONLY))
        abort();
      if (r.type == NBD_CMD_BLOCK_STATUS)
        check_descriptors(data + off, size - off, r.offset, r.len);
    } else if (rc != -EINVAL && rc != -ENOSPC && rc != -EPERM) {
      abort();
    }
    (void)nbd_errno_to_wire(rc);
    if (payload > size - off)
      return 0;
    off += payload;
  }
  return 0;
}
