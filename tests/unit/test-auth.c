/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The auth protocol, I/O-free: the full client -> mon -> OSD exchange;
 * the key never on the wire; wrong key, unknown entity, replayed proof,
 * stale challenge, mode mismatch, tampered reply; tickets across secret
 * rotation, expiry, forged tickets, stolen tickets without the session
 * key, the clock window and authorizer replay; the bounded replay cache;
 * secret distribution; and the per-frame wire primitives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/caps.h"
#include "common/config.h"
#include "common/keyring.h"
#include "proto/auth.pb-c.h"

#define NOW 1800000000000LL       /* a fixed wall clock, ms */

struct world {
  struct keyring *db;
  uint8_t admin_key[32], kvm_key[32];
  struct auth_rotating osd;
  struct auth_params p;
  auth_replay_cache *rc;
};

static int setup(void **st)
{
  struct world *w = calloc(1, sizeof *w);
  w->db = keyring_new();
  keyring_generate_key(w->admin_key);
  keyring_generate_key(w->kvm_key);
  keyring_set_key(w->db, "client.admin", w->admin_key);
  keyring_set_key(w->db, "client.KVMpool", w->kvm_key);
  char err[200];
  keyring_set_caps(w->db, "client.admin", "osd", "allow *", err, sizeof err);
  keyring_set_caps(w->db, "client.KVMpool", "osd", "allow rwx pool=KVMpool", err, sizeof err);
  auth_params_default(&w->p);
  assert_int_equal(auth_rotating_init(&w->osd, NOW, 3600 * 1000), 0);
  w->rc = auth_replay_new(1024, w->p.clock_skew_ms);
  *st = w;
  return 0;
}

static int teardown(void **st)
{
  struct world *w = *st;
  keyring_free(w->db);
  auth_replay_free(w->rc);
  free(w);
  return 0;
}

struct wire_log {               /* every byte that "crossed the wire" */
  uint8_t *b;
  size_t n;
};

static void logw(struct wire_log *l, const uint8_t *p, size_t n)
{
  if (!l)
    return;
  l->b = realloc(l->b, l->n + n);
  memcpy(l->b + l->n, p, n);
  l->n += n;
}

/* Run the mon exchange; returns the result of auth_server_verify and
 * (when it succeeded) of auth_client_finish in *finish. */
static int mon_exchange(struct world *w, const char *entity, const uint8_t *key,
                        unsigned modes, enum auth_mode mon_mode, struct auth_client *ac,
                        struct auth_server *as, int *finish, struct wire_log *log,
                        uint8_t **hello_out, size_t *hello_len, uint8_t **proof_out,
                        size_t *proof_len)
{
  char err[256];
  uint8_t *m1, *m2, *m3, *m4;
  size_t l1, l2, l3, l4;
  auth_client_init(ac, entity, key, modes);
  auth_server_init(as, mon_mode);
  assert_int_equal(auth_client_hello(ac, &m1, &l1), 0);
  logw(log, m1, l1);
  int r = auth_server_challenge(as, m1, l1, NOW, &m2, &l2, err, sizeof err);
  if (r < 0) {
    free(m1);
    if (r == -EACCES) {
      char cerr[256];
      uint8_t *x;
      size_t xl;
      assert_int_equal(auth_client_proof(ac, m2, l2, &x, &xl, cerr, sizeof cerr), -EACCES);
      free(m2);
    }
    return r;
  }
  logw(log, m2, l2);
  r = auth_client_proof(ac, m2, l2, &m3, &l3, err, sizeof err);
  assert_int_equal(r, 0);
  logw(log, m3, l3);
  r = auth_server_verify(as, m3, l3, w->db, &w->osd, &w->p, NOW + 5, &m4, &l4, err, sizeof err);
  assert_non_null(m4);
  logw(log, m4, l4);
  *finish = auth_client_finish(ac, m4, l4, err, sizeof err);
  if (hello_out) {
    *hello_out = m1;
    *hello_len = l1;
  } else {
    free(m1);
  }
  if (proof_out) {
    *proof_out = m3;
    *proof_len = l3;
  } else {
    free(m3);
  }
  free(m2);
  free(m4);
  return r;
}

static bool contains(const struct wire_log *l, const uint8_t *needle, size_t n)
{
  for (size_t i = 0; i + n <= l->n; i++)
    if (memcmp(l->b + i, needle, n) == 0)
      return true;
  return false;
}

static void test_full_exchange(void **st)
{
  struct world *w = *st;
  struct auth_client ac;
  struct auth_server as;
  struct wire_log log = { 0 };
  int fin;
  assert_int_equal(mon_exchange(w, "client.KVMpool", w->kvm_key,
                                auth_modes_at_least(AUTH_MODE_CEPHX), AUTH_MODE_CEPHX,
                                &ac, &as, &fin, &log, NULL, NULL, NULL, NULL), 0);
  assert_int_equal(fin, 0);
  assert_int_equal(ac.state, AC_DONE);
  assert_int_equal(as.state, AS_DONE);
  assert_int_equal(ac.mode, AUTH_MODE_CEPHX);
  assert_memory_equal(ac.conn_key, as.conn_key, 32);
  assert_memory_equal(ac.creds.session_key, as.session_key, 32);
  assert_memory_not_equal(ac.conn_key, ac.creds.session_key, 32);
  assert_true(ac.creds.ticket_len > 0);
  assert_true(ac.creds.expires_ms == NOW + 5 + w->p.ticket_ttl_ms);
  /* neither the key nor the session key ever crossed the wire */
  assert_false(contains(&log, w->kvm_key, 32));
  assert_false(contains(&log, ac.creds.session_key, 32));
  assert_false(contains(&log, w->kvm_key, 8));

  /* authorizer to an OSD */
  struct auth_authorizer az;
  uint8_t *a1, *a2;
  size_t l1, l2;
  char err[256];
  assert_int_equal(auth_authorizer_build(&ac.creds, auth_modes_at_least(AUTH_MODE_CEPHX),
                                         NOW + 100, &az, &a1, &l1), 0);
  struct auth_session s;
  int r = auth_authorizer_verify(&w->osd, w->rc, &w->p, AUTH_MODE_SECURE, NOW + 120, a1, l1,
                                 &s, &a2, &l2, err, sizeof err);
  if (r)
    fail_msg("%s", err);
  assert_string_equal(s.entity, "client.KVMpool");
  assert_string_equal(s.caps_osd, "allow rwx pool=KVMpool");
  assert_int_equal(s.mode, AUTH_MODE_SECURE);
  assert_memory_equal(s.session_key, ac.creds.session_key, 32);
  caps *c = caps_parse(CAPS_OSD, s.caps_osd, err, sizeof err);
  assert_true(caps_allows(c, CAPS_OSD, "KVMpool", CAP_W));
  assert_false(caps_allows(c, CAPS_OSD, "other", CAP_R));
  caps_free(c);
  assert_int_equal(auth_authorizer_finish(&az, a2, l2, err, sizeof err), 0);
  assert_true(az.done);
  assert_int_equal(az.mode, AUTH_MODE_SECURE);
  assert_memory_equal(az.conn_key, s.conn_key, 32);
  assert_memory_not_equal(az.conn_key, ac.conn_key, 32);
  /* a second reply is refused */
  assert_int_equal(auth_authorizer_finish(&az, a2, l2, err, sizeof err), -EPROTO);

  /* the same authorizer replayed (to this OSD): refused */
  struct auth_session s2;
  uint8_t *a3;
  size_t l3;
  r = auth_authorizer_verify(&w->osd, w->rc, &w->p, AUTH_MODE_SECURE, NOW + 130, a1, l1,
                             &s2, &a3, &l3, err, sizeof err);
  assert_int_equal(r, -EACCES);
  assert_non_null(strstr(err, "replayed authorizer"));
  struct auth_authorizer az2 = az;
  az2.done = false;
  assert_int_equal(auth_authorizer_finish(&az2, a3, l3, err, sizeof err), -EACCES);
  free(a3);
  auth_session_clear(&s);
  free(a1);
  free(a2);
  auth_client_clear(&ac);
  auth_server_clear(&as);
  free(log.b);
}

static void test_refusals(void **st)
{
  struct world *w = *st;
  struct auth_client ac;
  struct auth_server as;
  int fin;
  uint8_t wrong[32];
  keyring_generate_key(wrong);
  /* wrong key */
  assert_int_equal(mon_exchange(w, "client.admin", wrong, AUTH_MODE_BIT(AUTH_MODE_CEPHX),
                                AUTH_MODE_CEPHX, &ac, &as, &fin, NULL, NULL, NULL, NULL, NULL),
                   -EACCES);
  assert_int_equal(fin, -EACCES);
  assert_int_equal(ac.state, AC_FAILED);
  auth_client_clear(&ac);
  /* unknown entity: same answer on the wire */
  assert_int_equal(mon_exchange(w, "client.nobody", wrong, AUTH_MODE_BIT(AUTH_MODE_CEPHX),
                                AUTH_MODE_CEPHX, &ac, &as, &fin, NULL, NULL, NULL, NULL, NULL),
                   -EACCES);
  assert_int_equal(fin, -EACCES);
  auth_client_clear(&ac);
  /* the monitor wants secure, the client only accepts cephx */
  assert_int_equal(mon_exchange(w, "client.admin", w->admin_key, AUTH_MODE_BIT(AUTH_MODE_CEPHX),
                                AUTH_MODE_SECURE, &ac, &as, &fin, NULL, NULL, NULL, NULL, NULL),
                   -EACCES);
  auth_client_clear(&ac);
  /* secure both ways works and reports the mode */
  assert_int_equal(mon_exchange(w, "client.admin", w->admin_key,
                                auth_modes_at_least(AUTH_MODE_CEPHX), AUTH_MODE_SECURE,
                                &ac, &as, &fin, NULL, NULL, NULL, NULL, NULL), 0);
  assert_int_equal(fin, 0);
  assert_int_equal(ac.mode, AUTH_MODE_SECURE);
  auth_client_clear(&ac);

  /* garbage hello */
  char err[256];
  uint8_t *out;
  size_t ol;
  auth_server_init(&as, AUTH_MODE_CEPHX);
  assert_int_equal(auth_server_challenge(&as, (const uint8_t *)"\xff\xff\xff", 3, NOW, &out,
                                         &ol, err, sizeof err), -EPROTO);
  auth_server_init(&as, AUTH_MODE_CEPHX);
  Blk__AuthHello h = BLK__AUTH_HELLO__INIT;
  h.entity = (char *)"root";
  h.modes = 7;
  uint8_t hb[64];
  size_t hl = blk__auth_hello__pack(&h, hb);
  assert_int_equal(auth_server_challenge(&as, hb, hl, NOW, &out, &ol, err, sizeof err), -EPROTO);
  assert_string_equal(err, "auth: hello names no valid entity");
}

static void test_replayed_exchange(void **st)
{
  struct world *w = *st;
  struct auth_client ac;
  struct auth_server as;
  int fin;
  uint8_t *hello, *proof, *out;
  size_t hl, pl, ol;
  char err[256];
  assert_int_equal(mon_exchange(w, "client.admin", w->admin_key, AUTH_MODE_BIT(AUTH_MODE_CEPHX),
                                AUTH_MODE_CEPHX, &ac, &as, &fin, NULL, &hello, &hl, &proof, &pl), 0);
  assert_int_equal(fin, 0);
  /* replay the proof on the finished server: no challenge outstanding */
  assert_int_equal(auth_server_verify(&as, proof, pl, w->db, &w->osd, &w->p, NOW, &out, &ol,
                                      err, sizeof err), -EACCES);
  assert_non_null(strstr(err, "without an outstanding challenge"));
  free(out);
  /* an attacker replays the recorded hello + proof on a new connection */
  struct auth_server as2;
  auth_server_init(&as2, AUTH_MODE_CEPHX);
  assert_int_equal(auth_server_challenge(&as2, hello, hl, NOW + 10, &out, &ol, err, sizeof err), 0);
  free(out);
  assert_int_equal(auth_server_verify(&as2, proof, pl, w->db, &w->osd, &w->p, NOW + 11, &out, &ol,
                                      err, sizeof err), -EACCES);
  assert_non_null(strstr(err, "bad proof from client.admin"));
  /* the refusal carries no session material */
  Blk__AuthReply *rep = blk__auth_reply__unpack(NULL, ol, out);
  assert_int_equal(rep->err, -EACCES);
  assert_int_equal(rep->session_sealed.len, 0);
  assert_int_equal(rep->ticket.len, 0);
  blk__auth_reply__free_unpacked(rep, NULL);
  free(out);
  /* a stale challenge is refused even with the right proof */
  struct auth_client ac3;
  struct auth_server as3;
  uint8_t *m1, *m2, *m3;
  size_t l1, l2, l3;
  auth_client_init(&ac3, "client.admin", w->admin_key, AUTH_MODE_BIT(AUTH_MODE_CEPHX));
  auth_server_init(&as3, AUTH_MODE_CEPHX);
  assert_int_equal(auth_client_hello(&ac3, &m1, &l1), 0);
  assert_int_equal(auth_server_challenge(&as3, m1, l1, NOW, &m2, &l2, err, sizeof err), 0);
  assert_int_equal(auth_client_proof(&ac3, m2, l2, &m3, &l3, err, sizeof err), 0);
  assert_int_equal(auth_server_verify(&as3, m3, l3, w->db, &w->osd, &w->p,
                                      NOW + w->p.challenge_ttl_ms + 1, &out, &ol, err, sizeof err),
                   -EACCES);
  assert_non_null(strstr(err, "expired"));
  free(out);
  free(m1);
  free(m2);
  free(m3);
  auth_client_clear(&ac3);
  free(hello);
  free(proof);
  auth_client_clear(&ac);
}

static void test_tampered_reply(void **st)
{
  struct world *w = *st;
  struct auth_client ac;
  struct auth_server as;
  uint8_t *m1, *m2, *m3, *m4;
  size_t l1, l2, l3, l4;
  char err[256];
  auth_client_init(&ac, "client.admin", w->admin_key, AUTH_MODE_BIT(AUTH_MODE_CEPHX));
  auth_server_init(&as, AUTH_MODE_CEPHX);
  assert_int_equal(auth_client_hello(&ac, &m1, &l1), 0);
  assert_int_equal(auth_server_challenge(&as, m1, l1, NOW, &m2, &l2, err, sizeof err), 0);
  assert_int_equal(auth_client_proof(&ac, m2, l2, &m3, &l3, err, sizeof err), 0);
  assert_int_equal(auth_server_verify(&as, m3, l3, w->db, &w->osd, &w->p, NOW, &m4, &l4,
                                      err, sizeof err), 0);
  Blk__AuthReply *rep = blk__auth_reply__unpack(NULL, l4, m4);
  rep->session_sealed.data[3] ^= 0x10;
  uint8_t buf[4096];
  size_t bl = blk__auth_reply__pack(rep, buf);
  blk__auth_reply__free_unpacked(rep, NULL);
  struct auth_client copy = ac;
  assert_int_equal(auth_client_finish(&copy, buf, bl, err, sizeof err), -EBADMSG);
  assert_non_null(strstr(err, "does not open with our key"));
  /* the untouched reply still works */
  assert_int_equal(auth_client_finish(&ac, m4, l4, err, sizeof err), 0);
  free(m1);
  free(m2);
  free(m3);
  free(m4);
  auth_client_clear(&ac);
}

static void get_creds(struct world *w, struct auth_creds *out)
{
  struct auth_client ac;
  struct auth_server as;
  int fin;
  assert_int_equal(mon_exchange(w, "client.admin", w->admin_key, 7, AUTH_MODE_CEPHX,
                                &ac, &as, &fin, NULL, NULL, NULL, NULL, NULL), 0);
  assert_int_equal(fin, 0);
  *out = ac.creds;
  ac.creds.ticket = NULL;
  auth_client_clear(&ac);
}

static int verify_at(struct world *w, const struct auth_creds *cr, int64_t build_ms,
                     int64_t now_ms, char *err, struct auth_authorizer *az, uint8_t **rep,
                     size_t *repl)
{
  uint8_t *a;
  size_t al;
  struct auth_session s;
  assert_int_equal(auth_authorizer_build(cr, 7, build_ms, az, &a, &al), 0);
  int r = auth_authorizer_verify(&w->osd, w->rc, &w->p, AUTH_MODE_CEPHX, now_ms, a, al, &s,
                                 rep, repl, err, 256);
  free(a);
  auth_session_clear(&s);
  return r;
}

static void test_tickets_rotation_expiry(void **st)
{
  struct world *w = *st;
  struct auth_creds cr;
  get_creds(w, &cr);
  char err[256];
  struct auth_authorizer az;
  uint8_t *rep;
  size_t repl;
  int64_t period = 3600 * 1000;

  assert_int_equal(verify_at(w, &cr, NOW + 1000, NOW + 1000, err, &az, &rep, &repl), 0);
  free(rep);
  /* one rotation: the ticket opens with the previous secret */
  assert_false(auth_rotating_due(&w->osd, NOW + 1000));
  assert_true(auth_rotating_due(&w->osd, NOW + period));
  assert_int_equal(auth_rotating_rotate(&w->osd, NOW + period, period), 0);
  assert_int_equal(w->osd.cur.id, 2);
  assert_int_equal(w->osd.prev.id, 1);
  assert_int_equal(verify_at(w, &cr, NOW + 2000, NOW + 2000, err, &az, &rep, &repl), 0);
  free(rep);
  /* expired: refused, and the client learns it must re-authenticate */
  int64_t late = cr.expires_ms + 1;
  assert_int_equal(verify_at(w, &cr, late, late, err, &az, &rep, &repl), -EACCES);
  assert_non_null(strstr(err, "expired"));
  assert_int_equal(auth_authorizer_finish(&az, rep, repl, err, sizeof err), -EKEYEXPIRED);
  free(rep);
  /* two rotations: the secret is gone */
  assert_int_equal(auth_rotating_rotate(&w->osd, NOW + 2 * period, period), 0);
  assert_null(auth_rotating_find(&w->osd, 1));
  assert_int_equal(verify_at(w, &cr, NOW + 3000, NOW + 3000, err, &az, &rep, &repl), -EACCES);
  assert_non_null(strstr(err, "unknown service secret 1"));
  assert_int_equal(auth_authorizer_finish(&az, rep, repl, err, sizeof err), -EKEYEXPIRED);
  free(rep);
  auth_creds_clear(&cr);

  /* a fresh ticket is sealed with the current secret */
  get_creds(w, &cr);
  Blk__Ticket *t = blk__ticket__unpack(NULL, cr.ticket_len, cr.ticket);
  assert_int_equal(t->secret_id, 3);
  blk__ticket__free_unpacked(t, NULL);

  /* clock window */
  assert_int_equal(verify_at(w, &cr, NOW - w->p.clock_skew_ms - 1, NOW, err, &az, &rep, &repl),
                   -EACCES);
  assert_non_null(strstr(err, "off our clock"));
  free(rep);
  assert_int_equal(verify_at(w, &cr, NOW + w->p.clock_skew_ms + 1, NOW, err, &az, &rep, &repl),
                   -EACCES);
  free(rep);

  /* a stolen ticket without the session key */
  struct auth_creds thief = cr;
  keyring_generate_key(thief.session_key);
  assert_int_equal(verify_at(w, &thief, NOW, NOW, err, &az, &rep, &repl), -EACCES);
  assert_non_null(strstr(err, "bad authorizer proof"));
  free(rep);

  /* a forged ticket (one bit flipped in the sealed body) */
  t = blk__ticket__unpack(NULL, cr.ticket_len, cr.ticket);
  t->sealed.data[10] ^= 1;
  uint8_t tb[1024];
  struct auth_creds forged = cr;
  forged.ticket = tb;
  forged.ticket_len = blk__ticket__pack(t, tb);
  blk__ticket__free_unpacked(t, NULL);
  assert_int_equal(verify_at(w, &forged, NOW, NOW, err, &az, &rep, &repl), -EACCES);
  assert_non_null(strstr(err, "does not open"));
  free(rep);

  /* an OSD without the secret cannot fake the reply (mutual auth) */
  assert_int_equal(verify_at(w, &cr, NOW, NOW, err, &az, &rep, &repl), 0);
  Blk__AuthorizerReply *ar = blk__authorizer_reply__unpack(NULL, repl, rep);
  ar->proof.data[0] ^= 1;
  uint8_t rb[256];
  size_t rbl = blk__authorizer_reply__pack(ar, rb);
  blk__authorizer_reply__free_unpacked(ar, NULL);
  assert_int_equal(auth_authorizer_finish(&az, rb, rbl, err, sizeof err), -EBADMSG);
  free(rep);
  auth_creds_clear(&cr);
}

static void test_replay_cache(void **st)
{
  (void)st;
  auth_replay_cache *rc = auth_replay_new(4, 1000);
  uint8_t n[6][32];
  for (int i = 0; i < 6; i++)
    keyring_generate_key(n[i]);
  for (int i = 0; i < 4; i++)
    assert_true(auth_replay_check_insert(rc, n[i], NOW + i, NOW + 10));
  for (int i = 0; i < 4; i++)
    assert_false(auth_replay_check_insert(rc, n[i], NOW + i, NOW + 10));
  /* full: inserting evicts n[0] and raises the floor to its timestamp */
  assert_true(auth_replay_check_insert(rc, n[4], NOW + 5, NOW + 10));
  assert_false(auth_replay_check_insert(rc, n[0], NOW + 0, NOW + 10));
  /* a new nonce with an old timestamp is refused too (fail closed) */
  assert_false(auth_replay_check_insert(rc, n[5], NOW + 0, NOW + 10));
  /* still-remembered ones stay refused */
  assert_false(auth_replay_check_insert(rc, n[2], NOW + 2, NOW + 10));
  /* outside the window */
  assert_false(auth_replay_check_insert(rc, n[5], NOW - 2000, NOW + 10));
  /* time passes: old entries expire, new ones go in */
  assert_true(auth_replay_check_insert(rc, n[5], NOW + 5000, NOW + 5000));
  assert_false(auth_replay_check_insert(rc, n[5], NOW + 5000, NOW + 5001));
  auth_replay_free(rc);

  /* many distinct nonces through a small cache: never a false replay of a
   * fresh nonce with a fresh timestamp, always a replay of the last ones */
  rc = auth_replay_new(64, 1000);
  uint8_t last[32];
  for (int i = 0; i < 5000; i++) {
    uint8_t x[32];
    keyring_generate_key(x);
    assert_true(auth_replay_check_insert(rc, x, NOW + i, NOW + i));
    if (i > 0)
      assert_false(auth_replay_check_insert(rc, last, NOW + i - 1, NOW + i));
    memcpy(last, x, 32);
  }
  auth_replay_free(rc);
}

static void test_secrets_distribution(void **st)
{
  struct world *w = *st;
  uint8_t sk[32], other[32];
  keyring_generate_key(sk);
  keyring_generate_key(other);
  struct auth_rotating r;
  assert_int_equal(auth_rotating_init(&r, NOW, 1000), 0);
  assert_int_equal(auth_rotating_rotate(&r, NOW + 1000, 1000), 0);
  uint8_t *b;
  size_t bl;
  assert_int_equal(auth_secrets_seal(&r, sk, &b, &bl), 0);
  struct auth_rotating got;
  assert_int_equal(auth_secrets_open(other, b, bl, &got), -EBADMSG);
  assert_int_equal(auth_secrets_open(sk, b, bl, &got), 0);
  assert_memory_equal(&got, &r, sizeof r);
  free(b);
  (void)w;
  auth_rotating_clear(&r);
}

static void test_primitives(void **st)
{
  (void)st;
  uint8_t key[32];
  for (int i = 0; i < 32; i++)
    key[i] = (uint8_t)i;
  const char *msg = "what do ya want for nothing?";
  uint8_t mac[32], ref[32];
  struct iovec iov[2] = { { (void *)msg, 10 }, { (void *)(msg + 10), strlen(msg) - 10 } };
  assert_int_equal(auth_hmac(key, iov, 2, mac), 0);
  size_t rl = 0;
  assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, 32, (const void *)msg,
                            strlen(msg), ref, sizeof ref, &rl));
  assert_memory_equal(mac, ref, 32);
  assert_true(auth_equal(mac, ref, 32));
  ref[31] ^= 1;
  assert_false(auth_equal(mac, ref, 32));

  uint8_t nonce[12], ct[64 + 16], pt[64];
  assert_int_equal(auth_seal(key, "aad", 3, msg, 20, nonce, ct), 0);
  assert_int_equal(auth_open(key, "aad", 3, nonce, ct, 36, pt), 0);
  assert_memory_equal(pt, msg, 20);
  assert_int_equal(auth_open(key, "aaD", 3, nonce, ct, 36, pt), -EBADMSG);
  ct[0] ^= 1;
  assert_int_equal(auth_open(key, "aad", 3, nonce, ct, 36, pt), -EBADMSG);

  enum auth_mode m;
  assert_int_equal(auth_mode_parse("secure", &m), 0);
  assert_int_equal(m, AUTH_MODE_SECURE);
  assert_int_equal(auth_mode_parse("tls", &m), -EINVAL);
  assert_int_equal(auth_modes_at_least(AUTH_MODE_CEPHX), 6);
}

static void wire_roundtrip(enum auth_mode mode)
{
  uint8_t key[32];
  keyring_generate_key(key);
  struct auth_wire *cli = auth_wire_new(mode, key, true);
  struct auth_wire *srv = auth_wire_new(mode, key, false);
  assert_non_null(cli);
  assert_non_null(srv);
  size_t tl = auth_wire_trailer_len(mode);
  uint8_t hdr[40], body[3][100], orig[3][100], tr[3][16];
  memset(hdr, 0x42, sizeof hdr);
  for (int f = 0; f < 3; f++) {
    for (int i = 0; i < 100; i++)
      orig[f][i] = body[f][i] = (uint8_t)(i * 7 + f);
    assert_int_equal(auth_wire_seal(cli, hdr, 24, body[f], 100, tr[f]), 0);
    if (mode == AUTH_MODE_SECURE)
      assert_memory_not_equal(body[f], orig[f], 100);
    else                          /* GMAC signs and leaves the body as it is */
      assert_memory_equal(body[f], orig[f], 100);
  }
  /* reordered: frame 1 first fails */
  uint8_t tmp[100];
  memcpy(tmp, body[1], 100);
  assert_int_equal(auth_wire_open(srv, hdr, 24, tmp, 100, tr[1]), -EBADMSG);
  auth_wire_free(srv);
  srv = auth_wire_new(mode, key, false);
  /* in order: all open */
  for (int f = 0; f < 3; f++) {
    memcpy(tmp, body[f], 100);
    assert_int_equal(auth_wire_open(srv, hdr, 24, tmp, 100, tr[f]), 0);
    assert_memory_equal(tmp, orig[f], 100);
  }
  /* replayed: frame 2 again fails */
  memcpy(tmp, body[2], 100);
  assert_int_equal(auth_wire_open(srv, hdr, 24, tmp, 100, tr[2]), -EBADMSG);
  /* reflected: the client cannot be fed its own frame */
  struct auth_wire *cli2 = auth_wire_new(mode, key, true);
  memcpy(tmp, body[0], 100);
  assert_int_equal(auth_wire_open(cli2, hdr, 24, tmp, 100, tr[0]), -EBADMSG);
  auth_wire_free(cli2);
  /* dropped: skipping frame 0 makes frame 1 fail */
  struct auth_wire *srv2 = auth_wire_new(mode, key, false);
  memcpy(tmp, body[1], 100);
  assert_int_equal(auth_wire_open(srv2, hdr, 24, tmp, 100, tr[1]), -EBADMSG);
  auth_wire_free(srv2);
  /* a body bit flip, a tag bit flip, a last-byte flip each fail */
  for (int t = 0; t < 3; t++) {
    uint8_t trc[16];
    srv2 = auth_wire_new(mode, key, false);
    memcpy(tmp, body[0], 100);
    memcpy(trc, tr[0], 16);
    if (t == 0)
      tmp[50] ^= 0x10;
    else if (t == 1)
      trc[0] ^= 1;
    else
      tmp[99] ^= 0x80;
    assert_int_equal(auth_wire_open(srv2, hdr, 24, tmp, 100, trc), -EBADMSG);
    auth_wire_free(srv2);
  }
  /* a header bit flip fails */
  srv2 = auth_wire_new(mode, key, false);
  hdr[6] ^= 1;
  memcpy(tmp, body[0], 100);
  assert_int_equal(auth_wire_open(srv2, hdr, 24, tmp, 100, tr[0]), -EBADMSG);
  auth_wire_free(srv2);
  hdr[6] ^= 1;
  /* another key (another connection) does not verify the frame */
  uint8_t key2[32];
  keyring_generate_key(key2);
  srv2 = auth_wire_new(mode, key2, false);
  memcpy(tmp, body[0], 100);
  assert_int_equal(auth_wire_open(srv2, hdr, 24, tmp, 100, tr[0]), -EBADMSG);
  auth_wire_free(srv2);
  assert_true(tl == 16u);
  auth_wire_free(cli);
  auth_wire_free(srv);
  assert_null(auth_wire_new(AUTH_MODE_NONE, key, true));
}

/* Reference GMAC with a fresh OpenSSL context: tag of AES-256-GCM(key,
 * iv) over aad with no plaintext. */
static void ref_gmac(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad,
                     size_t aadlen, uint8_t tag[16])
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int ol;
  uint8_t fin[16];
  assert_non_null(c);
  assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv), 1);
  assert_int_equal(EVP_EncryptUpdate(c, NULL, &ol, aad, (int)aadlen), 1);
  assert_int_equal(EVP_EncryptFinal_ex(c, fin, &ol), 1);
  assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
  EVP_CIPHER_CTX_free(c);
}

/* The wire trailers are exactly what docs/auth.md §3 says, checked with
 * independent one-shot OpenSSL calls (so a context reused per frame can
 * not silently degrade, e.g. to an empty key or a repeated IV, with both
 * ends agreeing). */
static void test_wire_known_answer(void **st)
{
  (void)st;
  uint8_t ck[32], hdr[40], body[300], orig[300], tr[16];
  keyring_generate_key(ck);
  for (int i = 0; i < 40; i++)
    hdr[i] = (uint8_t)(i + 1);
  for (int i = 0; i < 300; i++)
    orig[i] = (uint8_t)(i * 13);
  for (int mode = AUTH_MODE_CEPHX; mode <= AUTH_MODE_SECURE; mode++) {
    /* k_dir = HMAC(conn_key, label NUL dir), client -> server is dir 1 */
    const char *label = mode == AUTH_MODE_CEPHX ? "blk-wire-gmac-v1" : "blk-wire-gcm-v1";
    uint8_t dir = 1, kdir[32], prev[16] = { 0 };
    struct iovec kv[2] = { { (void *)label, strlen(label) + 1 }, { &dir, 1 } };
    assert_int_equal(auth_hmac(ck, kv, 2, kdir), 0);
    struct auth_wire *w = auth_wire_new((enum auth_mode)mode, ck, true);
    for (uint64_t seq = 0; seq < 3; seq++) {
      memcpy(body, orig, sizeof body);
      size_t aadlen = mode == AUTH_MODE_CEPHX ? 40 : 24;
      assert_int_equal(auth_wire_seal(w, hdr, aadlen, body, sizeof body, tr), 0);
      uint8_t iv[12] = { 1, 0, 0, 0 };
      for (int i = 0; i < 8; i++)
        iv[4 + i] = (uint8_t)(seq >> (8 * i));
      if (mode == AUTH_MODE_CEPHX) {
        /* GMAC: AES-256-GCM tag over dir || seq || header || body, no
         * plaintext; the body goes out unchanged */
        uint8_t aad[9 + 40 + 300], ref[16];
        aad[0] = 1;
        memcpy(aad + 1, iv + 4, 8);
        memcpy(aad + 9, hdr, 40);
        memcpy(aad + 49, orig, 300);
        ref_gmac(kdir, iv, aad, sizeof aad, ref);
        assert_memory_equal(tr, ref, 16);
        assert_memory_equal(body, orig, 300);
        /* a fresh IV per frame gives a fresh tag for the same frame */
        assert_memory_not_equal(tr, prev, 16);
        memcpy(prev, tr, 16);
      } else {
        uint8_t ct[300 + 16], pt[300];
        memcpy(ct, body, 300);
        memcpy(ct + 300, tr, 16);
        assert_int_equal(auth_open(kdir, hdr, 24, iv, ct, sizeof ct, pt), 0);
        assert_memory_equal(pt, orig, 300);
      }
    }
    auth_wire_free(w);
  }
}

static void test_wire_cephx(void **st) { (void)st; wire_roundtrip(AUTH_MODE_CEPHX); }
static void test_wire_secure(void **st) { (void)st; wire_roundtrip(AUTH_MODE_SECURE); }

static void test_params_from_config(void **st)
{
  (void)st;
  config *cfg = config_new("osd", "0");
  struct auth_params p, d;
  char err[256];
  auth_params_default(&d);
  assert_int_equal(auth_params_from_config(cfg, &p, err, sizeof err), 0);
  assert_int_equal(p.mode, AUTH_MODE_CEPHX);
  assert_int_equal(p.ticket_ttl_ms, d.ticket_ttl_ms);
  assert_int_equal(p.secret_ttl_ms, d.secret_ttl_ms);
  assert_int_equal(p.clock_skew_ms, d.clock_skew_ms);
  assert_int_equal(p.replay_cache_size, d.replay_cache_size);
  assert_int_equal(config_set(cfg, "auth_mode", "secure"), 0);
  assert_int_equal(config_set(cfg, "auth_ticket_ttl", "10m"), 0);
  assert_int_equal(auth_params_from_config(cfg, &p, err, sizeof err), 0);
  assert_int_equal(p.mode, AUTH_MODE_SECURE);
  assert_int_equal(p.ticket_ttl_ms, 600000);
  assert_int_equal(config_set(cfg, "auth_ticket_ttl", "2h"), 0);
  assert_int_equal(auth_params_from_config(cfg, &p, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "exceeds auth_service_secret_ttl"));
  assert_int_equal(config_set(cfg, "auth_ticket_ttl", "1h"), 0);
  assert_int_equal(config_set(cfg, "auth_mode", "kerberos"), 0);
  assert_int_equal(auth_params_from_config(cfg, &p, err, sizeof err), -EINVAL);
  assert_string_equal(err, "auth_mode 'kerberos': expected none, cephx or secure");
  config_free(cfg);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_full_exchange, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replayed_exchange, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tampered_reply, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tickets_rotation_expiry, setup, teardown),
    cmocka_unit_test(test_replay_cache),
    cmocka_unit_test_setup_teardown(test_secrets_distribution, setup, teardown),
    cmocka_unit_test(test_primitives),
    cmocka_unit_test(test_wire_known_answer),
    cmocka_unit_test(test_wire_cephx),
    cmocka_unit_test(test_wire_secure),
    cmocka_unit_test(test_params_from_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
