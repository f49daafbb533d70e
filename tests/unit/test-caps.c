/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caps parser and evaluator: every clause form, white space, normalized
 * output, profiles per service, pool restriction, and errors with the
 * exact column and message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/caps.h"

static caps *ok(enum caps_service svc, const char *text)
{
  char err[200] = "";
  caps *c = caps_parse(svc, text, err, sizeof err);
  if (!c)
    fail_msg("'%s' should parse: %s", text, err);
  return c;
}

static void bad(const char *text, const char *want)
{
  char err[200] = "";
  errno = 0;
  caps *c = caps_parse(CAPS_OSD, text, err, sizeof err);
  if (c)
    fail_msg("'%s' should not parse", text);
  assert_int_equal(errno, EINVAL);
  if (strcmp(err, want) != 0)
    fail_msg("'%s': got \"%s\", want \"%s\"", text, err, want);
}

static void test_parse_forms(void **st)
{
  (void)st;
  static const struct { const char *in, *norm; } cases[] = {
    { "allow r", "allow r" },
    { "allow w", "allow w" },
    { "allow x", "allow x" },
    { "allow rw", "allow rw" },
    { "allow rx", "allow rx" },
    { "allow wx", "allow wx" },
    { "allow rwx", "allow rwx" },
    { "allow xwr", "allow rwx" },
    { "allow *", "allow *" },
    { "allow rwx pool=KVMpool", "allow rwx pool=KVMpool" },
    { "  allow   r  pool =  a.b-c_9 ,profile osd ", "allow r pool=a.b-c_9, profile osd" },
    { "profile admin", "profile admin" },
    { "allow profile mon", "profile mon" },
    { "allow r,allow w pool=x,\tprofile osd", "allow r, allow w pool=x, profile osd" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    caps *c = ok(CAPS_OSD, cases[i].in);
    char out[256];
    size_t n = caps_format(c, out, sizeof out);
    assert_int_equal(n, strlen(cases[i].norm));
    assert_string_equal(out, cases[i].norm);
    /* the normalized form parses to the same thing */
    caps *c2 = ok(CAPS_OSD, out);
    char out2[256];
    caps_format(c2, out2, sizeof out2);
    assert_string_equal(out, out2);
    caps_free(c2);
    caps_free(c);
  }
}

static void test_errors(void **st)
{
  (void)st;
  bad("", "caps: column 1: expected 'allow' or 'profile'");
  bad("allow", "caps: column 6: expected 'r', 'w', 'x' or '*' after 'allow'");
  bad("allow r, allow q", "caps: column 16: expected 'r', 'w', 'x' or '*' after 'allow'");
  bad("allow rwq", "caps: column 9: expected 'r', 'w', 'x' or '*' after 'allow'");
  bad("allow rr", "caps: column 8: 'r' repeated in permissions");
  bad("allow r pool", "caps: column 13: expected '=' after 'pool'");
  bad("allow r pool=", "caps: column 14: expected a pool name after 'pool='");
  bad("allow r pool=a b", "caps: column 16: expected ',' or end of caps");
  bad("allow r poo=a", "caps: column 9: expected 'pool=NAME', ',' or end of caps after permissions");
  bad("allow r,", "caps: column 9: expected 'allow' or 'profile'");
  bad("profile", "caps: column 8: expected a profile name (admin, osd or mon) after 'profile'");
  bad("profile root", "caps: column 9: unknown profile 'root' (expected admin, osd or mon)");
  bad("allow r; rm -rf", "caps: column 8: expected 'pool=NAME', ',' or end of caps after permissions");
  bad("deny r", "caps: column 1: expected 'allow' or 'profile'");
  bad("allow r pool=\"x\"", "caps: column 14: expected a pool name after 'pool='");
  char longname[200];
  snprintf(longname, sizeof longname, "allow r pool=%064d", 0);
  bad(longname, "caps: column 14: pool name longer than 63 characters");
  /* too many clauses */
  char many[4096] = "";
  for (int i = 0; i < CAPS_MAX_CLAUSES + 1; i++)
    strcat(many, i ? ",allow r" : "allow r");
  char want[100];
  snprintf(want, sizeof want, "caps: column %d: more than %d clauses",
           CAPS_MAX_CLAUSES * 8 + 1, CAPS_MAX_CLAUSES);
  bad(many, want);
}

static void test_evaluate(void **st)
{
  (void)st;
  caps *c = ok(CAPS_OSD, "allow r, allow rwx pool=KVMpool");
  assert_true(caps_allows(c, CAPS_OSD, "KVMpool", CAP_R | CAP_W | CAP_X));
  assert_true(caps_allows(c, CAPS_OSD, "other", CAP_R));
  assert_false(caps_allows(c, CAPS_OSD, "other", CAP_W));
  assert_false(caps_allows(c, CAPS_OSD, "KVMpool2", CAP_W));
  assert_false(caps_allows(c, CAPS_OSD, NULL, CAP_W));
  assert_true(caps_allows(c, CAPS_OSD, NULL, CAP_R));
  assert_false(caps_allows(c, CAPS_MON, "KVMpool", CAP_R));   /* wrong service */
  assert_false(caps_allows(c, CAPS_OSD, "KVMpool", 0));
  assert_false(caps_allows(NULL, CAPS_OSD, "KVMpool", CAP_R));
  caps_free(c);

  /* bits combine across clauses */
  c = ok(CAPS_OSD, "allow r pool=a, allow w pool=a, allow x");
  assert_true(caps_allows(c, CAPS_OSD, "a", CAP_ALL));
  assert_false(caps_allows(c, CAPS_OSD, "b", CAP_R));
  assert_true(caps_allows(c, CAPS_OSD, "b", CAP_X));
  caps_free(c);

  c = ok(CAPS_MON, "allow *");
  assert_true(caps_allows(c, CAPS_MON, NULL, CAP_ALL));
  caps_free(c);

  c = ok(CAPS_MON, "profile osd");
  assert_true(caps_allows(c, CAPS_MON, NULL, CAP_R | CAP_X));
  assert_false(caps_allows(c, CAPS_MON, NULL, CAP_W));
  caps_free(c);
  c = ok(CAPS_OSD, "profile osd");
  assert_true(caps_allows(c, CAPS_OSD, "any", CAP_ALL));
  caps_free(c);
  c = ok(CAPS_OSD, "profile mon");
  assert_true(caps_allows(c, CAPS_OSD, "p", CAP_R));
  assert_false(caps_allows(c, CAPS_OSD, "p", CAP_W));
  caps_free(c);
  c = ok(CAPS_MON, "profile mon");
  assert_true(caps_allows(c, CAPS_MON, NULL, CAP_ALL));
  caps_free(c);
  c = ok(CAPS_OSD, "profile admin");
  assert_true(caps_allows(c, CAPS_OSD, "p", CAP_ALL));
  caps_free(c);

  enum caps_service s;
  assert_int_equal(caps_service_from_name("mon", &s), 0);
  assert_int_equal(s, CAPS_MON);
  assert_int_equal(caps_service_from_name("osd", &s), 0);
  assert_int_equal(s, CAPS_OSD);
  assert_int_equal(caps_service_from_name("mgr", &s), -EINVAL);
  assert_string_equal(caps_service_name(CAPS_OSD), "osd");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_forms),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_evaluate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
