/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/: crc32c, config parsing, sizes and durations. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/crc32c.h"

static void test_crc32c_vectors(void **state)
{
  (void)state;
  assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(crc32c(0, "", 0), 0);
  unsigned char z[32] = { 0 };
  assert_int_equal(crc32c(0, z, 32), 0x8A9136AAu);  /* RFC 3720 B.4 */
  unsigned char ff[32];
  memset(ff, 0xff, sizeof ff);
  assert_int_equal(crc32c(0, ff, 32), 0x62A8AB43u);
  /* incremental == one shot, at odd alignments */
  unsigned char buf[1000];
  for (int i = 0; i < 1000; i++)
    buf[i] = (unsigned char)(i * 7 + 3);
  uint32_t whole = crc32c(0, buf + 1, 999);
  uint32_t part = crc32c(crc32c(0, buf + 1, 333), buf + 334, 666);
  assert_int_equal(whole, part);
  /* long buffers (the interleaved hardware lanes) against a bitwise
   * reference, at every length around the lane boundaries */
  static unsigned char big[3 * 4096 + 64];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (unsigned char)((i * 2654435761u) >> 13);
  for (size_t len = 0; len <= sizeof big - 8; len += (len < 1600 ? 1 : 509)) {
    uint32_t ref = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
      ref ^= big[3 + i];
      for (int k = 0; k < 8; k++)
        ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
    }
    assert_int_equal(crc32c(0, big + 3, len), ~ref);
  }
}

static void test_config_layers(void **state)
{
  (void)state;
  config *cfg = config_new("mon", "a");
  char *err = NULL;
  const char *text =
      "# comment\n[global]\nmon host = 1.2.3.4:1\nlog level = debug\n"
      "[mon]\nmon_election_timeout = 2s\n[mon.a]\nlog-level = trace ; x\n"
      "[mon.b]\nlog_level = error\n";
  assert_int_equal(config_parse(cfg, text, strlen(text), "t", &err), 0);
  assert_string_equal(config_get_str(cfg, "mon_host"), "1.2.3.4:1");
  assert_string_equal(config_get_str(cfg, "log_level"), "trace");
  assert_int_equal(config_get_int(cfg, "mon_election_timeout"), 2000);
  assert_int_equal(config_get_int(cfg, "mon_heartbeat_interval"), 100);
  assert_int_equal(config_set(cfg, "log-level", "warn"), 0);
  assert_string_equal(config_get_str(cfg, "log_level"), "warn");
  assert_int_equal(config_set(cfg, "no_such_option", "1"), -ENOENT);
  assert_int_equal(config_set(cfg, "mon_snapshot_every", "12x"), -EINVAL);
  config_free(cfg);
}

static void test_config_errors(void **state)
{
  (void)state;
  static const char *bad[] = { "[global\n", "novalue\n", "bogus = 1\n",
                               "mon_snapshot_every = abc\n", "[]\n" };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    config *cfg = config_new("osd", "1");
    char *err = NULL;
    assert_int_equal(config_parse(cfg, bad[i], strlen(bad[i]), "f", &err),
                     -EINVAL);
    assert_non_null(err);
    assert_non_null(strstr(err, "f:1:"));
    free(err);
    config_free(cfg);
  }
}

static void test_sizes(void **state)
{
  (void)state;
  uint64_t v;
  int64_t ms;
  assert_int_equal(config_parse_size("10G", &v), 0);
  assert_true(v == 10ull << 30);
  assert_int_equal(config_parse_size("4KiB", &v), 0);
  assert_true(v == 4096);
  assert_int_equal(config_parse_size("512", &v), 0);
  assert_true(v == 512);
  assert_int_equal(config_parse_size("x", &v), -EINVAL);
  assert_int_equal(config_parse_size("10Q", &v), -EINVAL);
  assert_int_equal(config_parse_size("99999999999P", &v), -ERANGE);
  assert_int_equal(config_parse_ms("5s", &ms), 0);
  assert_true(ms == 5000);
  assert_int_equal(config_parse_ms("10m", &ms), 0);
  assert_true(ms == 600000);
  assert_int_equal(config_parse_ms("-1", &ms), -EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crc32c_vectors),
    cmocka_unit_test(test_config_layers),
    cmocka_unit_test(test_config_errors),
    cmocka_unit_test(test_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
