/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the caps parser (and, through it, the keyring
 * parser).  The first input byte picks the service; the rest is caps text.
 * Properties checked: a failed parse always leaves a "caps: column N: "
 * message with N inside the text (+1 for end); a successful parse
 * normalizes to text that parses again to the same normal form, and the
 * evaluator never grants a bit that was not asked about.  The same bytes
 * are also fed to keyring_parse, whose errors must name file:line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/caps.h"
#include "common/keyring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > 8192)
    return 0;
  enum caps_service svc = data[0] & 1 ? CAPS_OSD : CAPS_MON;
  char *text = malloc(size);
  memcpy(text, data + 1, size - 1);
  text[size - 1] = 0;
  size_t tl = strlen(text);
  char err[256];
  caps *c = caps_parse(svc, text, err, sizeof err);
  if (!c) {
    int col = 0;
    if (sscanf(err, "caps: column %d: ", &col) != 1 || col < 1 ||
        (size_t)col > (tl > CAPS_MAX_TEXT ? CAPS_MAX_TEXT : tl) + 1)
      abort();
  } else {
    char norm[8192], norm2[8192];
    size_t n = caps_format(c, norm, sizeof norm);
    if (n >= sizeof norm)
      abort();
    caps *c2 = caps_parse(svc, norm, err, sizeof err);
    if (!c2)
      abort();
    caps_format(c2, norm2, sizeof norm2);
    if (strcmp(norm, norm2) != 0)
      abort();
    const char *pools[] = { NULL, "KVMpool", "a" };
    for (int p = 0; p < 3; p++)
      for (unsigned need = 1; need <= CAP_ALL; need++)
        if (caps_allows(c, svc, pools[p], need) != caps_allows(c2, svc, pools[p], need))
          abort();
    caps_free(c2);
    caps_free(c);
  }
  struct keyring *kr = keyring_new();
  err[0] = 0;
  if (keyring_parse(kr, (const char *)data + 1, size - 1, "f", err, sizeof err) < 0 &&
      strncmp(err, "f:", 2) != 0 && err[0])
    abort();
  keyring_free(kr);
  free(text);
  return 0;
}
