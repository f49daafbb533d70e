/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: encoding and validation of the frame header documented in
 * frame.h.  Pure functions with no allocation, so the decoder is easy to
 * fuzz (tests/fuzz/fuzz-frame.c).
 */
#include "frame.h"

#include <errno.h>
#include <string.h>

#include "crc32c.h"
#include "endian.h"

void frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN])
{
  put_le32(out, FRAME_MAGIC);
  out[4] = FRAME_VERSION;
  out[5] = h->flags;
  put_le16(out + 6, h->type);
  put_le64(out + 8, h->tid);
  put_le32(out + 16, h->payload_len);
  put_le32(out + 20, h->data_len);
  put_le32(out + 24, h->payload_crc);
  put_le32(out + 28, h->data_crc);
  put_le32(out + 32, 0);
  put_le32(out + 36, crc32c(0, out, 36));
}

int frame_hdr_decode(const uint8_t in[FRAME_HDR_LEN], const struct frame_limits *lim,
                     struct frame_hdr *h, const char **why)
{
  const char *w = NULL;
  int r = 0;
  if (get_le32(in) != FRAME_MAGIC) {
    w = "bad magic";
    r = -EPROTO;
  } else if (in[4] != FRAME_VERSION) {
    w = "unsupported frame version";
    r = -EPROTO;
  } else if (get_le32(in + 36) != crc32c(0, in, 36)) {
    w = "header checksum mismatch";
    r = -EPROTO;
  } else if (get_le32(in + 32) != 0 ||
             (in[5] & ~(FRAME_F_REPLY | FRAME_F_ONEWAY | FRAME_F_PROTECTED)) ||
             (in[5] & FRAME_F_PROTECTED) == FRAME_F_PROTECTED) {
    w = "reserved bits set";
    r = -EPROTO;
  } else {
    h->flags = in[5];
    h->type = get_le16(in + 6);
    h->tid = get_le64(in + 8);
    h->payload_len = get_le32(in + 16);
    h->data_len = get_le32(in + 20);
    h->payload_crc = get_le32(in + 24);
    h->data_crc = get_le32(in + 28);
    if (h->payload_len > lim->max_payload) {
      w = "payload longer than msgr_max_payload";
      r = -EMSGSIZE;
    } else if (h->data_len > lim->max_data) {
      w = "data longer than msgr_max_data";
      r = -EMSGSIZE;
    }
  }
  if (why)
    *why = w;
  return r;
}

int frame_verify_body(const struct frame_hdr *h, const uint8_t *payload,
                      const uint8_t *data)
{
  if (crc32c(0, payload, h->payload_len) != h->payload_crc)
    return -EBADMSG;
  if (crc32c(0, data, h->data_len) != h->data_crc)
    return -EBADMSG;
  return 0;
}

int frame_parse(const uint8_t *buf, size_t len, const struct frame_limits *lim,
                struct frame_hdr *h, size_t *frame_len, const char **why)
{
  *why = NULL;
  if (len < FRAME_HDR_LEN) {
    *frame_len = FRAME_HDR_LEN;
    return 0;
  }
  int r = frame_hdr_decode(buf, lim, h, why);
  if (r < 0)
    return r;
  size_t need = FRAME_HDR_LEN + (size_t)h->payload_len + h->data_len +
                frame_trailer_len(h->flags);
  *frame_len = need;
  if (len < need)
    return 0;
  const uint8_t *payload = buf + FRAME_HDR_LEN;
  if (frame_verify_body(h, payload, payload + h->payload_len) < 0) {
    *why = "payload or data checksum mismatch";
    return -EBADMSG;
  }
  return 1;
}
