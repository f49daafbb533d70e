/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the NBD wire format (fixed newstyle handshake, options,
 * transmission requests, simple and structured replies) as constants,
 * byte tables and pure decode/encode/check functions.  Nothing here does
 * I/O or knows about libevent or libblk, so the same code is used by the
 * server (server.c, conn.c) and by the libFuzzer target
 * tests/fuzz/fuzz-nbd.c.  Every integer on the wire is BIG-endian
 * (network order).  Written from the public NBD protocol specification
 * (NetworkBlockDevice/nbd doc/proto.md).
 *
 * Handshake (server first):
 *   S: off 0  u64 NBDMAGIC   0x4e42444d41474943 ("NBDMAGIC")
 *      off 8  u64 IHAVEOPT   0x49484156454f5054 ("IHAVEOPT")
 *      off 16 u16 handshake flags (FIXED_NEWSTYLE | NO_ZEROES)
 *   C: off 0  u32 client flags (C_FIXED_NEWSTYLE | C_NO_ZEROES)
 * Option request (client), 16 bytes + data:
 *      off 0  u64 IHAVEOPT
 *      off 8  u32 option
 *      off 12 u32 length of data
 *      off 16 data[length]
 * Option reply (server), 20 bytes + data:
 *      off 0  u64 0x0003e889045565a9
 *      off 8  u32 option (echoed)
 *      off 12 u32 reply type (bit 31 set = error)
 *      off 16 u32 length of data
 *      off 20 data[length]
 * NBD_OPT_INFO / NBD_OPT_GO data:
 *      u32 name length N, name[N], u16 number of info requests R, u16[R]
 * NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT data:
 *      u32 name length N, name[N], u32 number of queries Q,
 *      Q x (u32 query length L, query[L])
 * NBD_REP_INFO data: u16 info type, then
 *      NBD_INFO_EXPORT (0):     u64 size, u16 transmission flags
 *      NBD_INFO_NAME (1):       name (rest of the reply)
 *      NBD_INFO_DESCRIPTION(2): text (rest of the reply)
 *      NBD_INFO_BLOCK_SIZE (3): u32 minimum, u32 preferred, u32 maximum
 * NBD_REP_SERVER data: u32 name length N, name[N] (+ optional details)
 * NBD_REP_META_CONTEXT data: u32 context id, name (rest of the reply)
 * NBD_OPT_EXPORT_NAME reply (no option reply header):
 *      u64 size, u16 transmission flags, 124 zero bytes unless NO_ZEROES
 *
 * Transmission request (client), 28 bytes + data for WRITE:
 *      off 0  u32 0x25609513
 *      off 4  u16 command flags
 *      off 6  u16 type
 *      off 8  u64 cookie (opaque, echoed)
 *      off 16 u64 offset
 *      off 24 u32 length
 * Simple reply, 16 bytes (+ length bytes of data for a successful READ):
 *      off 0  u32 0x67446698
 *      off 4  u32 error (NBD errno values below)
 *      off 8  u64 cookie
 * Structured reply chunk, 20 bytes + payload:
 *      off 0  u32 0x668e33ef
 *      off 4  u16 flags (DONE = 1)
 *      off 6  u16 chunk type
 *      off 8  u64 cookie
 *      off 16 u32 payload length
 *   OFFSET_DATA (1):   u64 offset, data[payload length - 8]
 *   OFFSET_HOLE (2):   u64 offset, u32 hole size
 *   BLOCK_STATUS (5):  u32 context id, n x (u32 length, u32 status flags)
 *   ERROR (2^15+1):    u32 error, u16 message length M, message[M]
 */
#ifndef BLK_CLIENT_NBD_PROTO_H
#define BLK_CLIENT_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBD_MAGIC 0x4e42444d41474943ULL
#define NBD_IHAVEOPT 0x49484156454f5054ULL
#define NBD_REP_MAGIC 0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* options */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

/* option reply types */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR(n) ((1u << 31) | (n))
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9)

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* commands and command flags */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured reply */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR ((1u << 15) | 1)

/* errors on the wire */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* base:allocation status flags (same bits as libblk's extent flags) */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)
#define NBD_META_BASE_ALLOCATION "base:allocation"
#define NBD_META_ID_BASE_ALLOCATION 1u

/* Limits of this server. */
#define NBD_HANDSHAKE_LEN 18
#define NBD_OPT_HDR_LEN 16
#define NBD_OPT_REPLY_HDR_LEN 20
#define NBD_REQUEST_LEN 28
#define NBD_SIMPLE_REPLY_LEN 16
#define NBD_CHUNK_HDR_LEN 20
#define NBD_MAX_OPT_LEN (64u * 1024)      /* larger options: ERR_TOO_BIG */
#define NBD_MAX_STRING 4096u              /* names and queries (spec limit) */
#define NBD_MAX_PAYLOAD (32u * 1024 * 1024) /* READ/WRITE length, advertised */
#define NBD_MAX_EXTENTS 8192u             /* descriptors per BLOCK_STATUS chunk */

static inline void nbd_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void nbd_put64(uint8_t *p, uint64_t v)
{
  nbd_put32(p, (uint32_t)(v >> 32));
  nbd_put32(p + 4, (uint32_t)v);
}
static inline uint16_t nbd_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t nbd_get32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t nbd_get64(const uint8_t *p)
{
  return ((uint64_t)nbd_get32(p) << 32) | nbd_get32(p + 4);
}

/* ---- handshake and options ---- */

/* Fill the 18-byte server greeting. */
void nbd_greeting_encode(uint8_t out[NBD_HANDSHAKE_LEN]);
/* Check the 4-byte client flags: 0, or -EPROTO when unknown bits are set
 * (the spec says the server must then close). */
int nbd_client_flags_check(uint32_t flags);

struct nbd_opt_hdr {
  uint32_t opt;
  uint32_t len;
};
/* Decode a 16-byte option header; -EPROTO when the magic is wrong. */
int nbd_opt_hdr_decode(const uint8_t in[NBD_OPT_HDR_LEN], struct nbd_opt_hdr *h);
/* Fill a 20-byte option reply header. */
void nbd_opt_reply_encode(uint8_t out[NBD_OPT_REPLY_HDR_LEN], uint32_t opt, uint32_t type,
                          uint32_t len);

/* A parsed NBD_OPT_INFO/GO body.  name and reqs point into the caller's
 * buffer (borrowed for as long as it lives). */
struct nbd_info_req {
  const uint8_t *name;
  uint32_t name_len;
  uint16_t nreqs;
  const uint8_t *reqs; /* nreqs x u16 */
};
/* Parse an INFO/GO body: 0, or -EINVAL when lengths are inconsistent,
 * the name is longer than NBD_MAX_STRING or contains a NUL byte. */
int nbd_info_req_parse(const uint8_t *d, uint32_t len, struct nbd_info_req *r);
/* The i-th requested info type (i < r->nreqs). */
uint16_t nbd_info_req_get(const struct nbd_info_req *r, uint16_t i);

/* A parsed LIST/SET_META_CONTEXT body; pointers borrowed as above. */
struct nbd_meta_req {
  const uint8_t *name;
  uint32_t name_len;
  uint32_t nqueries;
  const uint8_t *queries; /* nqueries x (u32 len, bytes) */
  uint32_t queries_len;
};
/* Parse a meta context body: 0 or -EINVAL (inconsistent lengths, strings
 * over NBD_MAX_STRING or with NUL bytes, trailing garbage). */
int nbd_meta_req_parse(const uint8_t *d, uint32_t len, struct nbd_meta_req *r);
/* Iterate the queries of a parsed body: *pos starts at 0; returns true and
 * sets the query and its length (borrowed) while queries remain. */
bool nbd_meta_req_next(const struct nbd_meta_req *r, uint32_t *pos, const uint8_t **q,
                       uint32_t *qlen);
/* Does a query select base:allocation?  For LIST, "base:" also matches
 * (list_all); for SET only the full name does. */
bool nbd_meta_query_selects_alloc(const uint8_t *q, uint32_t qlen, bool list);

/* Split an export name "POOL/IMAGE" or "POOL/IMAGE@SNAP" into NUL-terminated
 * parts (each at most 255 bytes, pool and image non-empty, no NUL, the image
 * has no further '/').  snap[0] is '\0' when there is no snapshot.  0 or
 * -EINVAL. */
int nbd_export_name_split(const char *name, size_t len, char pool[256], char image[256],
                          char snap[256]);

/* ---- transmission ---- */

struct nbd_request {
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint32_t len;
};
/* Decode a 28-byte request header; -EPROTO when the magic is wrong (the
 * stream cannot be resynchronised: close). */
int nbd_request_decode(const uint8_t in[NBD_REQUEST_LEN], struct nbd_request *r);
/* Encode a request header (used by the fuzz seeds and tests). */
void nbd_request_encode(uint8_t out[NBD_REQUEST_LEN], const struct nbd_request *r);

/* What a connection negotiated, for checking requests. */
struct nbd_session {
  uint64_t size;       /* export size in bytes */
  uint16_t tflags;     /* transmission flags sent to the client */
  bool structured;     /* NBD_OPT_STRUCTURED_REPLY acknowledged */
  bool meta_alloc;     /* base:allocation selected */
};

/* Check a decoded request against the session.  Returns 0 when it may be
 * executed, else the negative errno to reply (-EINVAL unknown command or
 * flag, misuse, oversized; -ENOSPC write past the end; -EPERM write to a
 * read-only export; -ENOTSUP fast zero not possible is decided later).
 * *payload is always set to the number of bytes that follow the header
 * (WRITE's length, even when the request is refused, so the caller can
 * skip them and stay in sync). */
int nbd_request_check(const struct nbd_request *r, const struct nbd_session *s,
                      uint64_t *payload);

/* Map a negative errno to the NBD wire error value (EIO for unknown). */
uint32_t nbd_errno_to_wire(int neg_errno);

/* Fill a 16-byte simple reply header. */
void nbd_simple_reply_encode(uint8_t out[NBD_SIMPLE_REPLY_LEN], uint32_t error,
                             uint64_t cookie);
/* Fill a 20-byte structured chunk header. */
void nbd_chunk_encode(uint8_t out[NBD_CHUNK_HDR_LEN], uint16_t flags, uint16_t type,
                      uint64_t cookie, uint32_t len);

/* One base:allocation descriptor before encoding. */
struct nbd_extent {
  uint64_t offset;
  uint64_t length;
  uint32_t flags; /* NBD_STATE_* */
};
/* Turn extents (sorted, possibly overlapping the range edges or with gaps)
 * into at most max descriptors covering [off, off+len) from off onward:
 * clipped to the range, adjacent equal states merged, gaps reported as
 * allocated data (status 0), each length fitting in u32.  Writes pairs
 * (length, status) to out (host order) and returns how many (>= 1 when
 * len > 0). */
size_t nbd_extents_to_descriptors(const struct nbd_extent *ext, size_t n, uint64_t off,
                                  uint32_t len, uint32_t (*out)[2], size_t max);

/* Find zero runs in buf (the data of [off, off+len)): 4 KiB blocks aligned
 * on the image (a shorter block only at the end), runs of at least min_run
 * bytes become HOLE|ZERO extents, what lies between them data extents.
 * Writes at most max extents (sorted, inside the range) and returns how
 * many; what follows the last one is data. */
size_t nbd_zero_scan(const uint8_t *buf, uint64_t off, uint32_t len, uint32_t min_run,
                     struct nbd_extent *ext, size_t max);

#endif
