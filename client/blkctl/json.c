/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a minimal streaming JSON writer for --format json.  It
 * tracks nesting to place commas; keys are ignored inside arrays.  Output
 * is one line, so scripts can pipe it to jq or python.
 */
#include <stdio.h>

#include "client/blkctl/blkctl.h"

static int depth;
static bool first[64] = { true };
static bool in_arr[64];

static void sep(const char *key)
{
  if (!first[depth])
    putchar(',');
  first[depth] = false;
  if (key && !in_arr[depth]) {
    putchar('"');
    for (const char *p = key; *p; p++)
      putchar(*p);
    fputs("\":", stdout);
  }
}

static void push(bool arr)
{
  if (depth < 63) {
    depth++;
    first[depth] = true;
    in_arr[depth] = arr;
  }
}

static void put_escaped(const char *s)
{
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

void json_begin_obj(void) { if (depth || !first[0]) sep(NULL); putchar('{'); push(false); }
void json_key_obj(const char *key) { sep(key); putchar('{'); push(false); }
void json_end_obj(void) { putchar('}'); if (depth) depth--; }
void json_begin_arr(const char *key) { sep(key); putchar('['); push(true); }
void json_end_arr(void) { putchar(']'); if (depth) depth--; }
void json_str(const char *key, const char *v) { sep(key); put_escaped(v); }
void json_int(const char *key, long long v) { sep(key); printf("%lld", v); }
void json_uint(const char *key, unsigned long long v) { sep(key); printf("%llu", v); }
void json_bool(const char *key, bool v) { sep(key); fputs(v ? "true" : "false", stdout); }
void json_double(const char *key, double v) { sep(key); printf("%.4f", v); }
void json_done(void) { putchar('\n'); depth = 0; first[0] = true; }
