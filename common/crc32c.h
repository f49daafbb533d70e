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

#endif
