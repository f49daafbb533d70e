/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: libFuzzer target for journal record decoding, the code that
 * reads whatever a crash left on the device.  The input is taken as the
 * bytes found at a journal position: header parse, crc check, op iteration
 * and the block tables must never read outside the input nor crash,
 * whatever the lengths claim.  To get past the crc the target also re-seals
 * the input (so mutations explore the op decoder, not just the crc).
 * The same input is also taken as a batch (format version 2: what the
 * device really holds): header parse, header-area crc (re-sealed too),
 * record framing, and each record image rebuilt from it goes through the
 * record decoder above.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "osd/internal.h"

static void decode(uint8_t *buf, size_t size)
{
  struct jrec_hdr h;
  if (jrec_parse_hdr(buf, size, &h) < 0)
    return;
  if (jrec_verify(buf, &h) < 0)
    return;
  struct jrec_iter it;
  struct jop op;
  jrec_iter_init(&it, buf, &h);
  size_t total = 0;
  while (jrec_iter_next(&it, &op) > 0) {
    total += op.klen + op.vlen;
    if (op.klen)
      total += op.key[op.klen - 1];
    if (op.vlen && op.val)
      total += op.val[op.vlen - 1];
  }
  for (uint32_t i = 0; i < h.n_data; i++) {
    total += jrec_data_lba(buf, &h, i);
    total += buf[jrec_data_off(&h, i) + STORE_BLOCK - 1];
  }
  for (uint32_t i = 0; i < h.n_direct; i++) {
    uint64_t lba;
    uint32_t crc;
    jrec_direct(buf, &h, i, &lba, &crc);
    total += lba + crc;
  }
  volatile size_t sink = total;
  (void)sink;
}

/* The input as a batch: every record image it frames is decoded. */
static void decode_batch(uint8_t *buf, size_t size, uint8_t *img)
{
  struct jbat_hdr b;
  if (jbat_parse_hdr(buf, size, &b) < 0)
    return;
  if (jbat_verify(buf, &b) < 0) {
    jbat_seal(buf, &b);
    if (jbat_verify(buf, &b) < 0)
      abort();            /* seal and verify disagree */
  }
  struct jbat_iter it;
  struct jbat_rec r;
  jbat_iter_init(&it, buf, &b);
  while (jbat_iter_next(&it, &r) > 0) {
    if (r.rec_len > 64 * STORE_BLOCK)
      return;
    jbat_rec_image(img, buf, &r);
    decode(img, r.rec_len);
    struct jrec_hdr h;
    if (jrec_parse_hdr(img, r.rec_len, &h) == 0) {
      jrec_seal(img, &h);
      decode(img, r.rec_len);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 8)
    return 0;
  /* a journal position holds whole blocks: pad to a block multiple */
  size_t n = (size + STORE_BLOCK - 1) & ~(size_t)(STORE_BLOCK - 1);
  if (n > 64 * STORE_BLOCK)
    return 0;
  uint8_t *buf = calloc(1, n);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  decode(buf, n);
  /* second pass: a valid crc, so the op decoder sees the mutated body */
  struct jrec_hdr h;
  if (jrec_parse_hdr(buf, n, &h) == 0) {
    jrec_seal(buf, &h);
    decode(buf, n);
  }
  memcpy(buf, data, size);
  memset(buf + size, 0, n - size);
  uint8_t *img = malloc(64 * STORE_BLOCK);
  if (img) {
    decode_batch(buf, n, img);
    free(img);
  }
  free(buf);
  return 0;
}
