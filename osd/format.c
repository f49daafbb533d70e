/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the superblock (block 0 of the device): magic, version,
 * uuid, sizes and the journal chain seed, protected by a crc32c.  The
 * byte table is in internal.h.  Decoding checks everything a later stage
 * relies on (aligned, non-overlapping, inside the device) so that a
 * corrupt or foreign device is refused with a message, never trusted.
 */
#include <errno.h>
#include <stdio.h>

#include "common/crc32c.h"
#include "osd/internal.h"

void sb_encode(const struct superblock *sb, uint8_t *buf)
{
  memset(buf, 0, STORE_BLOCK);
  memcpy(buf, SB_MAGIC, 8);
  put_le32(buf + 8, sb->version);
  put_le32(buf + 12, sb->block_size);
  memcpy(buf + 16, sb->uuid, 16);
  put_le32(buf + 32, sb->osd_id);
  put_le64(buf + 40, sb->device_size);
  put_le64(buf + 48, sb->journal_offset);
  put_le64(buf + 56, sb->journal_size);
  put_le64(buf + 64, sb->data_offset);
  put_le64(buf + 72, sb->data_size);
  put_le32(buf + 80, sb->chain_seed);
  put_le32(buf + 4092, crc32c(0, buf, 4092));
}

static bool aligned(uint64_t v)
{
  return (v & (STORE_BLOCK - 1)) == 0;
}

int sb_decode(const uint8_t *buf, uint64_t dev_size, struct superblock *sb,
              char *err, size_t errlen)
{
  if (memcmp(buf, SB_MAGIC, 8) != 0) {
    snprintf(err, errlen, "no store superblock (bad magic)");
    return -ENODATA;
  }
  if (get_le32(buf + 4092) != crc32c(0, buf, 4092)) {
    snprintf(err, errlen, "superblock checksum mismatch");
    return -EUCLEAN;
  }
  memset(sb, 0, sizeof *sb);
  sb->version = get_le32(buf + 8);
  sb->block_size = get_le32(buf + 12);
  memcpy(sb->uuid, buf + 16, 16);
  sb->osd_id = get_le32(buf + 32);
  sb->device_size = get_le64(buf + 40);
  sb->journal_offset = get_le64(buf + 48);
  sb->journal_size = get_le64(buf + 56);
  sb->data_offset = get_le64(buf + 64);
  sb->data_size = get_le64(buf + 72);
  sb->chain_seed = get_le32(buf + 80);
  if (sb->version != SB_VERSION) {
    snprintf(err, errlen, "store format version %u, this build reads only "
             "version %u (journal layout changed): re-create the store with "
             "--mkfs", sb->version, SB_VERSION);
    return -EINVAL;
  }
  if (sb->block_size != STORE_BLOCK) {
    snprintf(err, errlen, "unsupported block size %u", sb->block_size);
    return -EINVAL;
  }
  if (!aligned(sb->journal_offset) || !aligned(sb->journal_size) ||
      !aligned(sb->data_offset) || !aligned(sb->data_size) ||
      sb->journal_offset < STORE_BLOCK || sb->journal_size < 16 * STORE_BLOCK ||
      sb->data_size < STORE_BLOCK ||
      sb->journal_offset + sb->journal_size > sb->data_offset ||
      sb->journal_offset + sb->journal_size < sb->journal_offset ||
      sb->data_offset + sb->data_size > sb->device_size ||
      sb->data_offset + sb->data_size < sb->data_offset) {
    snprintf(err, errlen, "superblock has an impossible layout");
    return -EINVAL;
  }
  if (dev_size && sb->device_size > dev_size) {
    snprintf(err, errlen,
             "device is smaller (%llu bytes) than the store it holds (%llu)",
             (unsigned long long)dev_size,
             (unsigned long long)sb->device_size);
    return -EINVAL;
  }
  return 0;
}
