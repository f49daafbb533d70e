/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see crc32c.h.  The hardware path consumes 8 bytes per
 * instruction; the software path is slicing-by-8 over tables built on first
 * use (pthread_once).  Both keep the pre/post inversion outside the loop.
 * The crc32 instruction has a latency of about 3 cycles but a throughput
 * of one per cycle, so buffers of at least 3 * HW_LANE bytes are cut into
 * three lanes computed interleaved and joined: the raw (uninverted) crc is
 * linear, crc(c, A || B) = shift(crc(c, A), |B|) ^ crc(0, B), where
 * shift(x, HW_LANE) is "feed HW_LANE zero bytes", applied with four byte
 * tables (lane_shift) built with the others.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u

#define HW_LANE 256u

static uint32_t table[8][256];
static struct crc32c_shift lane_shift; /* x -> crc of HW_LANE zeros from x */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static int have_sse42 = -1;

/* The raw crc register x after n zero bytes (bitwise; only at init). */
static uint32_t zeros_shift(uint32_t x, size_t n)
{
  for (size_t i = 0; i < n * 8; i++)
    x = (x & 1) ? (x >> 1) ^ POLY : x >> 1;
  return x;
}

void crc32c_shift_init(struct crc32c_shift *s, size_t n)
{
  uint32_t basis[32];
  for (int b = 0; b < 32; b++)
    basis[b] = zeros_shift(1u << b, n);
  for (int t = 0; t < 4; t++)
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t v = 0;
      for (int b = 0; b < 8; b++)
        if (i & (1u << b))
          v ^= basis[8 * t + b];
      s->t[t][i] = v;
    }
}

static void table_init(void)
{
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
  crc32c_shift_init(&lane_shift, HW_LANE);
  __builtin_cpu_init();
  have_sse42 = __builtin_cpu_supports("sse4.2");
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t len)
{
  while (len && ((uintptr_t)p & 7)) {
    c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    len--;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= c;
    c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
        table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
        table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
        table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--)
    c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t len)
{
  uint64_t c64 = c;
  while (len && ((uintptr_t)p & 7)) {
    c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
    len--;
  }
  while (len >= 3 * HW_LANE) {
    uint64_t b64 = 0, d64 = 0;
    for (size_t i = 0; i < HW_LANE; i += 8) {
      uint64_t w0, w1, w2;
      memcpy(&w0, p + i, 8);
      memcpy(&w1, p + HW_LANE + i, 8);
      memcpy(&w2, p + 2 * HW_LANE + i, 8);
      c64 = __builtin_ia32_crc32di(c64, w0);
      b64 = __builtin_ia32_crc32di(b64, w1);
      d64 = __builtin_ia32_crc32di(d64, w2);
    }
    uint32_t x = (uint32_t)c64;
    x = crc32c_shift_apply(&lane_shift, x);
    x ^= (uint32_t)b64;
    x = crc32c_shift_apply(&lane_shift, x);
    c64 = x ^ (uint32_t)d64;
    p += 3 * HW_LANE;
    len -= 3 * HW_LANE;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
    p += 8;
    len -= 8;
  }
  while (len--)
    c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
  return (uint32_t)c64;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
  pthread_once(&table_once, table_init);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (have_sse42)
    return ~crc_hw(c, buf, len);
#endif
  return ~crc_sw(c, buf, len);
}
