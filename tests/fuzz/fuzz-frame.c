/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the frame decoder: the input is a byte stream as a
 * peer would send it after the banner; frames are parsed one after another
 * with the same frame_parse() the messenger uses, under small limits so
 * that the bounds checks are exercised.  Every accepted frame must lie
 * inside the input and its lengths within the limits.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const struct frame_limits lim = { 4096, 65536 };
  size_t off = 0;
  for (;;) {
    struct frame_hdr h;
    size_t need;
    const char *why;
    int r = frame_parse(data + off, size - off, &lim, &h, &need, &why);
    if (r <= 0) {
      if (r < 0 && !why)
        abort();
      break;
    }
    if (need > size - off || h.payload_len > lim.max_payload ||
        h.data_len > lim.max_data)
      abort();
    off += need;
  }
  return 0;
}
