/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected
 * 0x82F63B78), the checksum of every frame on the wire and every block at
 * rest (DESIGN.md I5).  Uses the SSE4.2 crc32 instruction when the CPU has
 * it (checked once at start), else slicing-by-8 tables.
 * Conventions match iSCSI/ext4/RocksDB: crc32c("123456789") == 0xE3069283.
 */
#ifndef BLK_COMMON_CRC32C_H
#define BLK_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: pass 0 to start; the result of one call may be passed
 * as crc to the next to checksum data given in pieces. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* "Feed n zero bytes" to the raw CRC register, precomputed as four byte
 * tables (the step is linear over GF(2)).  With it crcs combine without
 * reading data again: crc32c(0, A || B) ==
 * crc32c_shift_apply(s, crc32c(0, A)) ^ crc32c(0, B) when B is n bytes
 * (the pre- and post-inversions cancel). */
struct crc32c_shift {
  uint32_t t[4][256];
};
/* Build s for n bytes (bitwise, ~n * 256 steps: do it once). */
void crc32c_shift_init(struct crc32c_shift *s, size_t n);
static inline uint32_t crc32c_shift_apply(const struct crc32c_shift *s, uint32_t x)
{
  return s->t[0][x & 0xff] ^ s->t[1][(x >> 8) & 0xff] ^ s->t[2][(x >> 16) & 0xff] ^
         s->t[3][x >> 24];
}

#endif
