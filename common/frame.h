/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the wire frame of every blkstore connection (DESIGN.md §3).
 * A frame is a fixed 40-byte header, a protobuf-c payload and an optional
 * raw data segment (block data never goes inside protobuf bytes):
 *
 *   offset size field          (all integers little-endian)
 *   0      4    magic          0x4D4B4C42 ("BLKM" read as bytes B L K M)
 *   4      1    version        1
 *   5      1    flags          FRAME_F_*
 *   6      2    type           message type (common/msgtypes.h)
 *   8      8    tid            transaction id; a reply carries the request's
 *   16     4    payload_len    bytes of protobuf payload that follow
 *   20     4    data_len       bytes of raw data after the payload
 *   24     4    payload_crc    crc32c of the payload
 *   28     4    data_crc       crc32c of the data segment
 *   32     4    reserved       0
 *   36     4    header_crc     crc32c of bytes 0..35
 *   40          payload, then data, then the trailer (if any)
 *
 * Wire protection (docs/auth.md §6), set per connection after the auth
 * exchange; a protected frame carries one of two flags and a trailer:
 *
 *   flag            trailer after the data segment
 *   FRAME_F_SIGNED  16 bytes GMAC: AES-256-GCM tag, nonce as below, no
 *                   plaintext, AAD = dir(1) || seq(8, LE) ||
 *                   header bytes 0..39 || payload || data
 *   FRAME_F_SECURE  16 bytes AES-256-GCM tag; payload and data are the
 *                   ciphertext (same lengths), nonce = dir(4) || seq(8, LE),
 *                   AAD = header bytes 0..23 (magic .. data_len)
 *
 * seq counts the frames of one direction since protection started (never
 * sent); dir is 1 client->server, 2 server->client; k_dir is derived from
 * the connection key per direction.  The crcs always describe the bytes
 * on the wire (the ciphertext in secure mode), so transport errors are
 * still told apart from forgery.  A connection is either unprotected or,
 * from a defined frame on, protected in each direction: a frame whose
 * flag does not match, or whose trailer does not verify, closes it.
 *
 * The decoder trusts nothing: the header crc is checked first, then both
 * lengths against the connection's limits, before anything is allocated.
 * Before the first frame each side sends an 8-byte banner "BLKSTOR\x01".
 */
#ifndef BLK_COMMON_FRAME_H
#define BLK_COMMON_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x4D4B4C42u
#define FRAME_VERSION 1
#define FRAME_HDR_LEN 40
#define FRAME_BANNER "BLKSTOR\x01"
#define FRAME_BANNER_LEN 8

enum {
  FRAME_F_REPLY = 0x01,     /* answers the request with the same tid */
  FRAME_F_ONEWAY = 0x02,    /* needs no reply */
  FRAME_F_SIGNED = 0x04,    /* cephx mode: 16-byte GMAC trailer */
  FRAME_F_SECURE = 0x08,    /* secure mode: encrypted, 16-byte GCM tag trailer */
};
#define FRAME_F_PROTECTED (FRAME_F_SIGNED | FRAME_F_SECURE)
#define FRAME_SIGNED_TRAILER 16
#define FRAME_SECURE_TRAILER 16
#define FRAME_SECURE_AAD_LEN 24   /* header bytes covered as GCM AAD */

/* Trailer bytes a frame with these flags carries (0 or 16). */
static inline uint32_t frame_trailer_len(uint8_t flags)
{
  return (flags & FRAME_F_SIGNED) ? FRAME_SIGNED_TRAILER
       : (flags & FRAME_F_SECURE) ? FRAME_SECURE_TRAILER : 0;
}

struct frame_hdr {
  uint8_t flags;
  uint16_t type;
  uint64_t tid;
  uint32_t payload_len;
  uint32_t data_len;
  uint32_t payload_crc;
  uint32_t data_crc;
};

struct frame_limits {
  uint32_t max_payload;
  uint32_t max_data;
};

/* Encode a header into out[FRAME_HDR_LEN] (computes the header crc). */
void frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN]);

/* Decode and validate a header.  Returns 0, or:
 *   -EPROTO   bad magic, version or reserved bits, or header crc mismatch
 *   -EMSGSIZE a length above the limits
 * On error *why (if non-NULL) points at a static description. */
int frame_hdr_decode(const uint8_t in[FRAME_HDR_LEN], const struct frame_limits *lim,
                     struct frame_hdr *h, const char **why);

/* Verify payload and data against the crcs in h.  0 or -EBADMSG. */
int frame_verify_body(const struct frame_hdr *h, const uint8_t *payload,
                      const uint8_t *data);

/* Parse the next frame at buf[0..len).  Returns:
 *   1  a complete frame whose body crcs verified: *h filled, *frame_len =
 *      header + payload + data + trailer bytes (the trailer is not checked
 *      here: that is the connection's protection, auth_wire_open);
 *   0  more bytes needed: *frame_len = total bytes needed once known
 *      (FRAME_HDR_LEN while the header is incomplete);
 *  <0  a bad frame (-EPROTO, -EMSGSIZE, -EBADMSG), *why set.
 * Nothing is allocated; lengths are bounded before *frame_len is set. */
int frame_parse(const uint8_t *buf, size_t len, const struct frame_limits *lim,
                struct frame_hdr *h, size_t *frame_len, const char **why);

#endif
