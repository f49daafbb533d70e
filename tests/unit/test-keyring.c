/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyrings: parse Ceph's format (and what `blkctl cluster init` writes),
 * lookup, round trip through keyring_write (mode 0600) and keyring_load,
 * the group/other-readable warning, --key-file, strict 256-bit keys, and
 * parse errors naming file:line (and the caps column).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/keyring.h"

static char dir[64];

static int setup(void **st)
{
  (void)st;
  snprintf(dir, sizeof dir, "/tmp/blk-test-keyring-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
  (void)st;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

/* 32 bytes 0..31 */
#define KEY0 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static void test_parse_lookup(void **st)
{
  (void)st;
  const char *text =
      "# written by hand\n"
      "[client.admin]\n"
      "\tkey = " KEY0 "\n"
      "\tcaps mon = \"allow *\"\n"
      "\tcaps osd = \"allow *\"\n"
      "\n"
      "[client.KVMpool]\n"
      "  key=" KEY0 "  \r\n"
      "  caps mon = \"allow r\"\n"
      "  caps osd = allow rwx pool=KVMpool\n"
      "; a comment\n"
      "[osd.3]\n"
      "\tkey = " KEY0 "\n"
      "[mon.]\n"
      "\tkey = " KEY0 "\n";
  struct keyring *kr = keyring_new();
  char err[256] = "";
  int r = keyring_parse(kr, text, strlen(text), "k", err, sizeof err);
  if (r)
    fail_msg("%s", err);
  assert_int_equal(keyring_count(kr), 4);
  const struct keyring_entry *e = keyring_find(kr, "client.KVMpool");
  assert_non_null(e);
  for (int i = 0; i < 32; i++)
    assert_int_equal(e->key[i], i);
  assert_string_equal(e->caps_mon, "allow r");
  assert_string_equal(e->caps_osd, "allow rwx pool=KVMpool");
  e = keyring_find(kr, "osd.3");
  assert_non_null(e);
  assert_null(e->caps_mon);
  assert_non_null(keyring_find(kr, "mon."));
  assert_null(keyring_find(kr, "client.nobody"));
  assert_string_equal(keyring_at(kr, 0)->entity, "client.admin");

  /* caps from the keyring evaluate */
  caps *c = caps_parse(CAPS_OSD, keyring_find(kr, "client.KVMpool")->caps_osd, err, sizeof err);
  assert_true(caps_allows(c, CAPS_OSD, "KVMpool", CAP_W));
  assert_false(caps_allows(c, CAPS_OSD, "rbd", CAP_R));
  caps_free(c);

  assert_int_equal(keyring_remove(kr, "osd.3"), 0);
  assert_int_equal(keyring_remove(kr, "osd.3"), -ENOENT);
  assert_int_equal(keyring_count(kr), 3);
  assert_non_null(keyring_find(kr, "mon."));
  keyring_free(kr);
}

static void expect_parse_error(const char *text, const char *want)
{
  struct keyring *kr = keyring_new();
  char err[256] = "";
  int r = keyring_parse(kr, text, strlen(text), "/etc/blk/x.keyring", err, sizeof err);
  assert_int_equal(r, -EINVAL);
  if (strcmp(err, want) != 0)
    fail_msg("got \"%s\", want \"%s\"", err, want);
  keyring_free(kr);
}

static void test_parse_errors(void **st)
{
  (void)st;
  expect_parse_error("key = " KEY0 "\n",
                     "/etc/blk/x.keyring:1: setting outside of an [entity] section");
  expect_parse_error("[client.a\n", "/etc/blk/x.keyring:1: expected ']' at the end of the section header");
  expect_parse_error("[root]\n", "/etc/blk/x.keyring:1: bad entity name 'root' (expected client.ID, osd.ID or mon.)");
  expect_parse_error("[client.a]\n\tkey = AAAA\n",
                     "/etc/blk/x.keyring:2: key of client.a is not the base64 of 32 bytes (256 bits)");
  /* 31 bytes is not a key, nor is a non-canonical last char */
  expect_parse_error("[client.a]\n\tkey = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",
                     "/etc/blk/x.keyring:2: key of client.a is not the base64 of 32 bytes (256 bits)");
  expect_parse_error("[client.a]\n\tkey = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",
                     "/etc/blk/x.keyring:2: key of client.a is not the base64 of 32 bytes (256 bits)");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n\tcaps osd = \"allow rwz\"\n",
                     "/etc/blk/x.keyring:3: caps: column 9: expected 'r', 'w', 'x' or '*' after 'allow'");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n\tcaps mgr = \"allow r\"\n",
                     "/etc/blk/x.keyring:3: unknown service 'mgr' (expected mon or osd)");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n\tcap osd = \"allow r\"\n",
                     "/etc/blk/x.keyring:3: unknown setting 'cap osd' (expected key or caps SERVICE)");
  expect_parse_error("[client.a]\n\tcaps osd = \"allow r\"\n",
                     "/etc/blk/x.keyring:2: caps before the key of client.a");
  expect_parse_error("[client.a]\n[client.b]\n\tkey = " KEY0 "\n",
                     "/etc/blk/x.keyring:2: section [client.a] has no key");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n[client.a]\n",
                     "/etc/blk/x.keyring:3: entity client.a appears twice");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n\tkey = " KEY0 "\n",
                     "/etc/blk/x.keyring:3: second key for client.a");
  expect_parse_error("[client.a]\n\tkey = " KEY0 "\n\tcaps osd = \"allow r\n",
                     "/etc/blk/x.keyring:3: unbalanced '\"' in caps");
  expect_parse_error("[client.a]\n", "/etc/blk/x.keyring:1: section [client.a] has no key");
  expect_parse_error("[client.a]\nkey\n", "/etc/blk/x.keyring:2: expected 'name = value'");
}

static void test_write_load(void **st)
{
  (void)st;
  struct keyring *kr = keyring_new();
  uint8_t k1[32], k2[32];
  assert_int_equal(keyring_generate_key(k1), 0);
  assert_int_equal(keyring_generate_key(k2), 0);
  assert_memory_not_equal(k1, k2, 32);
  assert_int_equal(keyring_set_key(kr, "client.admin", k1), 0);
  assert_int_equal(keyring_set_key(kr, "osd.0", k2), 0);
  assert_int_equal(keyring_set_key(kr, "bogus", k2), -EINVAL);
  assert_int_equal(keyring_set_key(kr, "client.", k2), -EINVAL);
  assert_int_equal(keyring_set_key(kr, "client.a b", k2), -EINVAL);
  char err[200];
  assert_int_equal(keyring_set_caps(kr, "client.admin", "mon", "allow *", err, sizeof err), 0);
  assert_int_equal(keyring_set_caps(kr, "client.admin", "osd", "allow rwx pool=KVMpool", err, sizeof err), 0);
  assert_int_equal(keyring_set_caps(kr, "osd.0", "mon", "profile osd", err, sizeof err), 0);
  assert_int_equal(keyring_set_caps(kr, "osd.0", "osd", "allow q", err, sizeof err), -EINVAL);
  assert_string_equal(err, "caps: column 7: expected 'r', 'w', 'x' or '*' after 'allow'");
  assert_int_equal(keyring_set_caps(kr, "osd.9", "osd", "allow r", err, sizeof err), -ENOENT);

  char path[128];
  snprintf(path, sizeof path, "%s/blk.keyring", dir);
  mode_t old = umask(0);        /* a permissive umask must not leak through */
  assert_int_equal(keyring_write(kr, path), 0);
  umask(old);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 0600);

  struct keyring *back = NULL;
  bool insecure = true;
  char warn[256] = "x";
  int r = keyring_load(path, &back, &insecure, warn, sizeof warn, err, sizeof err);
  if (r)
    fail_msg("%s", err);
  assert_false(insecure);
  assert_string_equal(warn, "");
  const struct keyring_entry *e = keyring_find(back, "client.admin");
  assert_memory_equal(e->key, k1, 32);
  assert_string_equal(e->caps_osd, "allow rwx pool=KVMpool");
  assert_memory_equal(keyring_find(back, "osd.0")->key, k2, 32);
  assert_string_equal(keyring_find(back, "osd.0")->caps_mon, "profile osd");
  keyring_free(back);

  /* group-readable: loads, with a warning */
  assert_int_equal(chmod(path, 0640), 0);
  back = NULL;
  assert_int_equal(keyring_load(path, &back, &insecure, warn, sizeof warn, err, sizeof err), 0);
  assert_true(insecure);
  assert_non_null(strstr(warn, "accessible by group or others (mode 0640)"));
  assert_non_null(strstr(warn, path));
  keyring_free(back);

  /* missing file */
  char missing[160];
  snprintf(missing, sizeof missing, "%s/nope", dir);
  assert_int_equal(keyring_load(missing, &back, &insecure, warn, sizeof warn, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "No such file"));
  keyring_free(kr);
}

static void test_cluster_init_format(void **st)
{
  (void)st;
  /* byte for byte what blkctl cluster init writes today */
  char b64[KEYRING_KEY_B64_LEN + 1];
  uint8_t key[32];
  assert_int_equal(keyring_generate_key(key), 0);
  keyring_key_encode(key, b64);
  assert_int_equal(strlen(b64), 44);
  char text[256];
  snprintf(text, sizeof text,
           "[client.admin]\n\tkey = %s\n\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n", b64);
  char path[128];
  snprintf(path, sizeof path, "%s/blk.client.admin.keyring", dir);
  write_file(path, text, 0600);
  struct keyring *kr = NULL;
  bool insecure;
  char warn[200], err[200];
  assert_int_equal(keyring_load(path, &kr, &insecure, warn, sizeof warn, err, sizeof err), 0);
  assert_memory_equal(keyring_find(kr, "client.admin")->key, key, 32);
  /* and keyring_format writes the same bytes back */
  char *again = keyring_format(kr);
  assert_string_equal(again, text);
  free(again);
  keyring_free(kr);
}

static void test_key_file(void **st)
{
  (void)st;
  char path[128], err[200], warn[200];
  bool insecure;
  uint8_t key[32];
  snprintf(path, sizeof path, "%s/admin.key", dir);
  write_file(path, "  " KEY0 "\n\n", 0400);
  assert_int_equal(keyring_read_key_file(path, key, &insecure, warn, sizeof warn, err, sizeof err), 0);
  assert_false(insecure);
  for (int i = 0; i < 32; i++)
    assert_int_equal(key[i], i);
  write_file(path, KEY0 "\n", 0644);
  assert_int_equal(keyring_read_key_file(path, key, &insecure, warn, sizeof warn, err, sizeof err), 0);
  assert_true(insecure);
  write_file(path, "[client.admin]\n\tkey = " KEY0 "\n", 0600);
  assert_int_equal(keyring_read_key_file(path, key, &insecure, warn, sizeof warn, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "expected the base64 of a 32-byte (256-bit) key"));
  /* encode/decode round trip */
  uint8_t k[32], d[32];
  char b[45];
  for (int round = 0; round < 100; round++) {
    assert_int_equal(keyring_generate_key(k), 0);
    keyring_key_encode(k, b);
    assert_int_equal(keyring_key_decode(b, strlen(b), d), 0);
    assert_memory_equal(k, d, 32);
  }
  assert_int_equal(keyring_key_decode(b, 43, d), -EINVAL);
  b[5] = '!';
  assert_int_equal(keyring_key_decode(b, 44, d), -EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_lookup),
    cmocka_unit_test(test_parse_errors),
    cmocka_unit_test(test_write_load),
    cmocka_unit_test(test_cluster_init_format),
    cmocka_unit_test(test_key_file),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
