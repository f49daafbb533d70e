/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see auth.h for the protocol and docs/auth.md for the
 * message sequence.  Everything here is pure computation over byte
 * buffers: OpenSSL 3 EVP for SHA-256, HMAC (EVP_MAC) and AES-256-GCM;
 * protobuf-c for the messages.  Decoders bound every length before use
 * and treat the peer's bytes as hostile (tests/fuzz/fuzz-auth.c).
 *
 * Key derivation is HMAC-SHA256 with a distinct ASCII label per use, so
 * no key is ever used for two purposes: the client key only proves the
 * transcript and seals the session secret; the session key only signs
 * authorizers and derives per-connection keys; a connection key only
 * derives the two per-direction wire keys.
 */
#include "auth.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "proto/auth.pb-c.h"

#define MAX_TICKET 65536          /* a packed Ticket is ~200 bytes + caps */
#define MAX_MESSAGE 200

/* ---- small helpers ------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static int pack_msg(const ProtobufCMessage *m, uint8_t **out, size_t *outlen)
{
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(n ? n : 1);
  if (!b)
    return -ENOMEM;
  protobuf_c_message_pack(m, b);
  *out = b;
  *outlen = n;
  return 0;
}

static void wipe_free(uint8_t *p, size_t n)
{
  if (p) {
    OPENSSL_cleanse(p, n);
    free(p);
  }
}

static bool bin_is(const ProtobufCBinaryData *b, size_t n)
{
  return b->len == n && (n == 0 || b->data);
}

unsigned auth_modes_at_least(enum auth_mode m)
{
  unsigned bits = 0;
  for (int i = m; i <= AUTH_MODE_SECURE; i++)
    bits |= AUTH_MODE_BIT(i);
  return bits;
}

int auth_mode_parse(const char *s, enum auth_mode *m)
{
  if (!s)
    return -EINVAL;
  if (strcmp(s, "none") == 0)
    *m = AUTH_MODE_NONE;
  else if (strcmp(s, "cephx") == 0)
    *m = AUTH_MODE_CEPHX;
  else if (strcmp(s, "secure") == 0)
    *m = AUTH_MODE_SECURE;
  else
    return -EINVAL;
  return 0;
}

const char *auth_mode_name(enum auth_mode m)
{
  switch (m) {
  case AUTH_MODE_NONE: return "none";
  case AUTH_MODE_CEPHX: return "cephx";
  case AUTH_MODE_SECURE: return "secure";
  }
  return "?";
}

void auth_params_default(struct auth_params *p)
{
  p->mode = AUTH_MODE_CEPHX;
  p->ticket_ttl_ms = 3600 * 1000;
  p->clock_skew_ms = 30 * 1000;
  p->challenge_ttl_ms = 30 * 1000;
  p->secret_ttl_ms = 3600 * 1000;
  p->replay_cache_size = 65536;
}

int auth_params_from_config(const struct config *cfg, struct auth_params *p,
                            char *err, size_t errlen)
{
  struct auth_params n;
  const char *m = config_get_str(cfg, "auth_mode");
  if (auth_mode_parse(m, &n.mode) < 0) {
    set_err(err, errlen, "auth_mode '%s': expected none, cephx or secure", m);
    return -EINVAL;
  }
  n.ticket_ttl_ms = config_get_int(cfg, "auth_ticket_ttl");
  n.secret_ttl_ms = config_get_int(cfg, "auth_service_secret_ttl");
  n.clock_skew_ms = config_get_int(cfg, "auth_clock_skew");
  n.challenge_ttl_ms = config_get_int(cfg, "auth_challenge_ttl");
  int64_t rcs = config_get_int(cfg, "auth_replay_cache_size");
  if (n.ticket_ttl_ms <= 0 || n.secret_ttl_ms <= 0 || n.clock_skew_ms <= 0 ||
      n.challenge_ttl_ms <= 0) {
    set_err(err, errlen, "auth_*_ttl and auth_clock_skew must be positive");
    return -EINVAL;
  }
  if (n.ticket_ttl_ms > n.secret_ttl_ms) {
    set_err(err, errlen, "auth_ticket_ttl (%lld ms) exceeds auth_service_secret_ttl (%lld ms): "
            "tickets would outlive the secrets that open them",
            (long long)n.ticket_ttl_ms, (long long)n.secret_ttl_ms);
    return -EINVAL;
  }
  if (rcs < 16 || rcs > (1 << 24)) {
    set_err(err, errlen, "auth_replay_cache_size must be 16..16777216");
    return -EINVAL;
  }
  n.replay_cache_size = (size_t)rcs;
  *p = n;
  return 0;
}

/* ---- crypto primitives --------------------------------------------------- */

bool auth_equal(const void *a, const void *b, size_t n)
{
  return CRYPTO_memcmp(a, b, n) == 0;
}

static EVP_MAC *hmac_alg;
static EVP_CIPHER *gcm_alg;
static EVP_MD *sha256_alg;
static pthread_once_t alg_once = PTHREAD_ONCE_INIT;

static void alg_fetch(void)
{
  hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
  gcm_alg = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  sha256_alg = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static bool algs(void)
{
  pthread_once(&alg_once, alg_fetch);
  return hmac_alg && gcm_alg && sha256_alg;
}

static EVP_MAC_CTX *hmac_ctx_new(const uint8_t key[AUTH_KEY_LEN])
{
  if (!algs())
    return NULL;
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_alg);
  if (!ctx)
    return NULL;
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
    OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_init(ctx, key, AUTH_KEY_LEN, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

int auth_hmac(const uint8_t key[AUTH_KEY_LEN], const struct iovec *iov, int n,
              uint8_t out[AUTH_MAC_LEN])
{
  EVP_MAC_CTX *ctx = hmac_ctx_new(key);
  if (!ctx)
    return -EIO;
  int r = 0;
  for (int i = 0; i < n && r == 0; i++)
    if (iov[i].iov_len && EVP_MAC_update(ctx, iov[i].iov_base, iov[i].iov_len) != 1)
      r = -EIO;
  size_t ol = 0;
  if (r == 0 && (EVP_MAC_final(ctx, out, &ol, AUTH_MAC_LEN) != 1 || ol != AUTH_MAC_LEN))
    r = -EIO;
  EVP_MAC_CTX_free(ctx);
  return r;
}

/* HMAC(key, label || parts...): the one key-derivation function. */
static int derive(const uint8_t key[AUTH_KEY_LEN], const char *label,
                  const struct iovec *parts, int n, uint8_t out[AUTH_MAC_LEN])
{
  struct iovec iov[8];
  if (n > 7)
    return -EINVAL;
  iov[0].iov_base = (void *)label;
  iov[0].iov_len = strlen(label) + 1;        /* the NUL separates label from data */
  for (int i = 0; i < n; i++)
    iov[i + 1] = parts[i];
  return auth_hmac(key, iov, n + 1, out);
}

static int gcm(bool enc, const uint8_t key[AUTH_KEY_LEN], const uint8_t nonce[AUTH_GCM_NONCE_LEN],
               const void *aad, size_t aadlen, const uint8_t *in, size_t len,
               uint8_t *out, uint8_t tag[AUTH_GCM_TAG_LEN])
{
  if (!algs() || len > INT32_MAX || aadlen > INT32_MAX)
    return -EIO;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx)
    return -EIO;
  int r = -EIO, ol;
  if (EVP_CipherInit_ex(ctx, gcm_alg, NULL, key, nonce, enc) != 1)
    goto out;
  if (aadlen && EVP_CipherUpdate(ctx, NULL, &ol, aad, (int)aadlen) != 1)
    goto out;
  if (len && EVP_CipherUpdate(ctx, out, &ol, in, (int)len) != 1)
    goto out;
  if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AUTH_GCM_TAG_LEN, tag) != 1)
    goto out;
  if (EVP_CipherFinal_ex(ctx, out + len, &ol) != 1) {
    r = enc ? -EIO : -EBADMSG;
    goto out;
  }
  if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AUTH_GCM_TAG_LEN, tag) != 1)
    goto out;
  r = 0;
out:
  EVP_CIPHER_CTX_free(ctx);
  return r;
}

int auth_seal(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
              const void *pt, size_t len, uint8_t nonce_out[AUTH_GCM_NONCE_LEN],
              uint8_t *out)
{
  if (RAND_bytes(nonce_out, AUTH_GCM_NONCE_LEN) != 1)
    return -EIO;
  return gcm(true, key, nonce_out, aad, aadlen, pt, len, out, out + len);
}

int auth_open(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
              const uint8_t nonce[AUTH_GCM_NONCE_LEN], const uint8_t *ct,
              size_t len, uint8_t *pt)
{
  if (len < AUTH_GCM_TAG_LEN)
    return -EBADMSG;
  uint8_t tag[AUTH_GCM_TAG_LEN];
  memcpy(tag, ct + len - AUTH_GCM_TAG_LEN, AUTH_GCM_TAG_LEN);
  int r = gcm(false, key, nonce, aad, aadlen, ct, len - AUTH_GCM_TAG_LEN, pt, tag);
  if (r < 0)
    OPENSSL_cleanse(pt, len - AUTH_GCM_TAG_LEN);
  return r;
}

static int sha256(const struct iovec *iov, int n, uint8_t out[32])
{
  if (!algs())
    return -EIO;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int r = -EIO;
  if (ctx && EVP_DigestInit_ex(ctx, sha256_alg, NULL) == 1) {
    r = 0;
    for (int i = 0; i < n && r == 0; i++)
      if (iov[i].iov_len && EVP_DigestUpdate(ctx, iov[i].iov_base, iov[i].iov_len) != 1)
        r = -EIO;
    if (r == 0 && EVP_DigestFinal_ex(ctx, out, NULL) != 1)
      r = -EIO;
  }
  EVP_MD_CTX_free(ctx);
  return r;
}

/* Seal pt into a malloc'ed ciphertext+tag with a fresh nonce. */
static int seal_alloc(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
                      const uint8_t *pt, size_t len, uint8_t nonce[AUTH_GCM_NONCE_LEN],
                      uint8_t **ct, size_t *ctlen)
{
  uint8_t *b = malloc(len + AUTH_GCM_TAG_LEN);
  if (!b)
    return -ENOMEM;
  int r = auth_seal(key, aad, aadlen, pt, len, nonce, b);
  if (r < 0) {
    free(b);
    return r;
  }
  *ct = b;
  *ctlen = len + AUTH_GCM_TAG_LEN;
  return 0;
}

/* Open into a malloc'ed plaintext (wipe-free it). */
static int open_alloc(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
                      const ProtobufCBinaryData *nonce, const ProtobufCBinaryData *ct,
                      uint8_t **pt, size_t *ptlen)
{
  if (!bin_is(nonce, AUTH_GCM_NONCE_LEN) || ct->len < AUTH_GCM_TAG_LEN || ct->len > MAX_TICKET)
    return -EPROTO;
  size_t n = ct->len - AUTH_GCM_TAG_LEN;
  uint8_t *b = malloc(n ? n : 1);
  if (!b)
    return -ENOMEM;
  int r = auth_open(key, aad, aadlen, nonce->data, ct->data, ct->len, b);
  if (r < 0) {
    free(b);
    return r;
  }
  *pt = b;
  *ptlen = n;
  return 0;
}

/* ---- rotating secrets ---------------------------------------------------- */

static int secret_new(struct auth_secret *s, uint64_t id, int64_t now_ms, int64_t period_ms)
{
  if (RAND_bytes(s->key, AUTH_KEY_LEN) != 1)
    return -EIO;
  s->id = id;
  s->expires_ms = now_ms + period_ms;
  return 0;
}

int auth_rotating_init(struct auth_rotating *r, int64_t now_ms, int64_t period_ms)
{
  memset(r, 0, sizeof *r);
  return secret_new(&r->cur, 1, now_ms, period_ms);
}

bool auth_rotating_due(const struct auth_rotating *r, int64_t now_ms)
{
  return now_ms >= r->cur.expires_ms;
}

int auth_rotating_rotate(struct auth_rotating *r, int64_t now_ms, int64_t period_ms)
{
  struct auth_secret next;
  int rc = secret_new(&next, r->cur.id + 1, now_ms, period_ms);
  if (rc < 0)
    return rc;
  r->prev = r->cur;
  r->cur = next;
  OPENSSL_cleanse(&next, sizeof next);
  return 0;
}

const struct auth_secret *auth_rotating_find(const struct auth_rotating *r, uint64_t id)
{
  if (id && r->cur.id == id)
    return &r->cur;
  if (id && r->prev.id == id)
    return &r->prev;
  return NULL;
}

void auth_rotating_clear(struct auth_rotating *r)
{
  OPENSSL_cleanse(r, sizeof *r);
}

static const char secrets_aad[] = "blk-secrets-v1";

int auth_secrets_seal(const struct auth_rotating *r, const uint8_t key[AUTH_KEY_LEN],
                      uint8_t **out, size_t *outlen)
{
  Blk__ServiceSecret s[2] = { BLK__SERVICE_SECRET__INIT, BLK__SERVICE_SECRET__INIT };
  Blk__ServiceSecret *ps[2] = { &s[0], &s[1] };
  const struct auth_secret *src[2] = { &r->cur, &r->prev };
  Blk__ServiceSecrets ss = BLK__SERVICE_SECRETS__INIT;
  for (int i = 0; i < 2; i++) {
    if (!src[i]->id)
      continue;
    s[ss.n_secrets].id = src[i]->id;
    s[ss.n_secrets].key.data = (uint8_t *)src[i]->key;
    s[ss.n_secrets].key.len = AUTH_KEY_LEN;
    s[ss.n_secrets].expires_ms = src[i]->expires_ms;
    ss.n_secrets++;
  }
  ss.secrets = ps;
  uint8_t *pt;
  size_t ptlen;
  int rc = pack_msg(&ss.base, &pt, &ptlen);
  if (rc < 0)
    return rc;
  uint8_t nonce[AUTH_GCM_NONCE_LEN];
  Blk__SealedSecrets sealed = BLK__SEALED_SECRETS__INIT;
  rc = seal_alloc(key, secrets_aad, sizeof secrets_aad, pt, ptlen, nonce,
                  &sealed.sealed.data, &sealed.sealed.len);
  wipe_free(pt, ptlen);
  if (rc < 0)
    return rc;
  sealed.nonce.data = nonce;
  sealed.nonce.len = sizeof nonce;
  rc = pack_msg(&sealed.base, out, outlen);
  free(sealed.sealed.data);
  return rc;
}

int auth_secrets_open(const uint8_t key[AUTH_KEY_LEN], const uint8_t *in, size_t len,
                      struct auth_rotating *r)
{
  Blk__SealedSecrets *sealed = blk__sealed_secrets__unpack(NULL, len, in);
  if (!sealed)
    return -EPROTO;
  int rc;
  if (sealed->err) {
    rc = -EACCES;
    goto out_sealed;
  }
  uint8_t *pt;
  size_t ptlen;
  rc = open_alloc(key, secrets_aad, sizeof secrets_aad, &sealed->nonce, &sealed->sealed,
                  &pt, &ptlen);
  if (rc < 0)
    goto out_sealed;
  Blk__ServiceSecrets *ss = blk__service_secrets__unpack(NULL, ptlen, pt);
  wipe_free(pt, ptlen);
  if (!ss) {
    rc = -EPROTO;
    goto out_sealed;
  }
  struct auth_rotating nr;
  memset(&nr, 0, sizeof nr);
  rc = 0;
  if (ss->n_secrets < 1 || ss->n_secrets > 2 ||
      (ss->n_secrets == 2 && ss->secrets[0]->id == ss->secrets[1]->id))
    rc = -EPROTO;
  for (size_t i = 0; i < ss->n_secrets && rc == 0; i++) {
    struct auth_secret *d = i == 0 ? &nr.cur : &nr.prev;
    if (!ss->secrets[i]->id || !bin_is(&ss->secrets[i]->key, AUTH_KEY_LEN)) {
      rc = -EPROTO;
      break;
    }
    d->id = ss->secrets[i]->id;
    memcpy(d->key, ss->secrets[i]->key.data, AUTH_KEY_LEN);
    d->expires_ms = ss->secrets[i]->expires_ms;
  }
  for (size_t i = 0; i < ss->n_secrets; i++)
    if (ss->secrets[i]->key.data)
      OPENSSL_cleanse(ss->secrets[i]->key.data, ss->secrets[i]->key.len);
  blk__service_secrets__free_unpacked(ss, NULL);
  if (rc == 0)
    *r = nr;
  OPENSSL_cleanse(&nr, sizeof nr);
out_sealed:
  blk__sealed_secrets__free_unpacked(sealed, NULL);
  return rc;
}

/* ---- client <-> monitor -------------------------------------------------- */

void auth_creds_clear(struct auth_creds *cr)
{
  wipe_free(cr->ticket, cr->ticket_len);
  OPENSSL_cleanse(cr, sizeof *cr);
}

static int transcript(const char *entity, unsigned client_modes,
                      const uint8_t server_challenge[AUTH_NONCE_LEN], enum auth_mode mode,
                      const uint8_t client_challenge[AUTH_NONCE_LEN], uint8_t out[32])
{
  static const char tag[] = "blk-auth-v1";
  uint8_t el[4], cm[4], md[4];
  size_t n = strlen(entity);
  put32(el, (uint32_t)n);
  put32(cm, client_modes);
  put32(md, (uint32_t)mode);
  struct iovec iov[] = {
    { (void *)tag, sizeof tag }, { el, 4 }, { (void *)entity, n }, { cm, 4 },
    { (void *)server_challenge, AUTH_NONCE_LEN }, { md, 4 },
    { (void *)client_challenge, AUTH_NONCE_LEN },
  };
  return sha256(iov, (int)(sizeof iov / sizeof *iov), out);
}

static int client_proof_mac(const uint8_t key[AUTH_KEY_LEN], const uint8_t t[32],
                            uint8_t out[AUTH_MAC_LEN])
{
  struct iovec p = { (void *)t, 32 };
  return derive(key, "blk-auth-proof-v1", &p, 1, out);
}

static int mon_conn_key(const uint8_t session_key[AUTH_KEY_LEN], const uint8_t t[32],
                        uint8_t out[AUTH_KEY_LEN])
{
  struct iovec p = { (void *)t, 32 };
  return derive(session_key, "blk-conn-mon-v1", &p, 1, out);
}

static const char session_aad_tag[] = "blk-session-v1";

void auth_client_init(struct auth_client *ac, const char *entity,
                      const uint8_t key[AUTH_KEY_LEN], unsigned modes)
{
  memset(ac, 0, sizeof *ac);
  snprintf(ac->entity, sizeof ac->entity, "%s", entity);
  memcpy(ac->key, key, AUTH_KEY_LEN);
  ac->modes = modes;
  ac->state = AC_INIT;
}

void auth_client_clear(struct auth_client *ac)
{
  auth_creds_clear(&ac->creds);
  OPENSSL_cleanse(ac, sizeof *ac);
}

int auth_client_hello(struct auth_client *ac, uint8_t **out, size_t *outlen)
{
  if (ac->state != AC_INIT)
    return -EINVAL;
  Blk__AuthHello h = BLK__AUTH_HELLO__INIT;
  h.entity = ac->entity;
  h.modes = ac->modes;
  int r = pack_msg(&h.base, out, outlen);
  if (r == 0)
    ac->state = AC_HELLO_SENT;
  return r;
}

int auth_client_proof(struct auth_client *ac, const uint8_t *in, size_t len,
                      uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
  if (ac->state != AC_HELLO_SENT) {
    set_err(err, errlen, "auth: challenge without a hello");
    return -EPROTO;
  }
  ac->state = AC_FAILED;
  Blk__AuthChallenge *c = blk__auth_challenge__unpack(NULL, len, in);
  if (!c) {
    set_err(err, errlen, "auth: undecodable challenge");
    return -EPROTO;
  }
  int r = 0;
  if (c->err) {
    set_err(err, errlen, "auth: the monitor accepts none of our wire modes");
    r = -EACCES;
  } else if (!bin_is(&c->server_challenge, AUTH_NONCE_LEN) || c->mode > AUTH_MODE_SECURE) {
    set_err(err, errlen, "auth: malformed challenge");
    r = -EPROTO;
  } else if (!(ac->modes & AUTH_MODE_BIT(c->mode))) {
    set_err(err, errlen, "auth: the monitor chose wire mode %s, which we do not accept",
            auth_mode_name((enum auth_mode)c->mode));
    r = -EACCES;
  }
  if (r == 0) {
    memcpy(ac->server_challenge, c->server_challenge.data, AUTH_NONCE_LEN);
    ac->mode = (enum auth_mode)c->mode;
  }
  blk__auth_challenge__free_unpacked(c, NULL);
  if (r < 0)
    return r;
  if (RAND_bytes(ac->client_challenge, AUTH_NONCE_LEN) != 1)
    return -EIO;
  uint8_t mac[AUTH_MAC_LEN];
  if (transcript(ac->entity, ac->modes, ac->server_challenge, ac->mode,
                 ac->client_challenge, ac->transcript) < 0 ||
      client_proof_mac(ac->key, ac->transcript, mac) < 0)
    return -EIO;
  Blk__AuthProof p = BLK__AUTH_PROOF__INIT;
  p.client_challenge.data = ac->client_challenge;
  p.client_challenge.len = AUTH_NONCE_LEN;
  p.proof.data = mac;
  p.proof.len = sizeof mac;
  r = pack_msg(&p.base, out, outlen);
  if (r == 0)
    ac->state = AC_PROOF_SENT;
  return r;
}

static void copy_message(char *err, size_t errlen, const char *what, const char *msg)
{
  char clean[MAX_MESSAGE + 1];
  size_t i = 0;
  for (; msg && msg[i] && i < MAX_MESSAGE; i++)
    clean[i] = (msg[i] >= 0x20 && msg[i] < 0x7f) ? msg[i] : '?';
  clean[i] = 0;
  set_err(err, errlen, "%s: %s", what, i ? clean : "refused");
}

int auth_client_finish(struct auth_client *ac, const uint8_t *in, size_t len,
                       char *err, size_t errlen)
{
  if (ac->state != AC_PROOF_SENT) {
    set_err(err, errlen, "auth: reply without a proof");
    return -EPROTO;
  }
  ac->state = AC_FAILED;
  Blk__AuthReply *rep = blk__auth_reply__unpack(NULL, len, in);
  if (!rep) {
    set_err(err, errlen, "auth: undecodable reply");
    return -EPROTO;
  }
  int r = 0;
  uint8_t *pt = NULL;
  size_t ptlen = 0;
  Blk__SessionSecret *ss = NULL;
  if (rep->err) {
    copy_message(err, errlen, "auth: the monitor refused", rep->message);
    r = -EACCES;
    goto out;
  }
  if (rep->ticket.len > MAX_TICKET) {
    set_err(err, errlen, "auth: ticket too large");
    r = -EPROTO;
    goto out;
  }
  uint8_t aad[sizeof session_aad_tag + 32];
  memcpy(aad, session_aad_tag, sizeof session_aad_tag);
  memcpy(aad + sizeof session_aad_tag, ac->transcript, 32);
  r = open_alloc(ac->key, aad, sizeof aad, &rep->session_nonce, &rep->session_sealed,
                 &pt, &ptlen);
  if (r == -EBADMSG) {
    set_err(err, errlen, "auth: the session key does not open with our key "
                         "(not our monitor, or tampered)");
    goto out;
  }
  if (r < 0) {
    set_err(err, errlen, "auth: malformed session secret");
    goto out;
  }
  ss = blk__session_secret__unpack(NULL, ptlen, pt);
  if (!ss || !bin_is(&ss->session_key, AUTH_KEY_LEN)) {
    set_err(err, errlen, "auth: malformed session secret");
    r = -EPROTO;
    goto out;
  }
  auth_creds_clear(&ac->creds);
  snprintf(ac->creds.entity, sizeof ac->creds.entity, "%s", ac->entity);
  memcpy(ac->creds.session_key, ss->session_key.data, AUTH_KEY_LEN);
  ac->creds.expires_ms = ss->expires_ms;
  if (rep->ticket.len) {
    ac->creds.ticket = malloc(rep->ticket.len);
    if (!ac->creds.ticket) {
      r = -ENOMEM;
      goto out;
    }
    memcpy(ac->creds.ticket, rep->ticket.data, rep->ticket.len);
    ac->creds.ticket_len = rep->ticket.len;
  }
  if (mon_conn_key(ac->creds.session_key, ac->transcript, ac->conn_key) < 0) {
    r = -EIO;
    goto out;
  }
  ac->state = AC_DONE;
out:
  if (ss) {
    if (ss->session_key.data)
      OPENSSL_cleanse(ss->session_key.data, ss->session_key.len);
    blk__session_secret__free_unpacked(ss, NULL);
  }
  wipe_free(pt, ptlen);
  blk__auth_reply__free_unpacked(rep, NULL);
  return r;
}

void auth_server_init(struct auth_server *as, enum auth_mode mode)
{
  memset(as, 0, sizeof *as);
  as->mode = mode;
  as->state = AS_INIT;
}

void auth_server_clear(struct auth_server *as)
{
  OPENSSL_cleanse(as, sizeof *as);
}

int auth_server_challenge(struct auth_server *as, const uint8_t *in, size_t len,
                          int64_t now_ms, uint8_t **out, size_t *outlen,
                          char *err, size_t errlen)
{
  if (as->state != AS_INIT) {
    as->state = AS_FAILED;
    set_err(err, errlen, "auth: second hello on one connection");
    return -EPROTO;
  }
  as->state = AS_FAILED;
  Blk__AuthHello *h = blk__auth_hello__unpack(NULL, len, in);
  if (!h) {
    set_err(err, errlen, "auth: undecodable hello");
    return -EPROTO;
  }
  int r = 0;
  if (!keyring_entity_valid(h->entity)) {
    set_err(err, errlen, "auth: hello names no valid entity");
    r = -EPROTO;
  } else {
    snprintf(as->entity, sizeof as->entity, "%s", h->entity);
    as->client_modes = h->modes;
  }
  blk__auth_hello__free_unpacked(h, NULL);
  if (r < 0)
    return r;
  Blk__AuthChallenge c = BLK__AUTH_CHALLENGE__INIT;
  c.mode = as->mode;
  if (!(as->client_modes & AUTH_MODE_BIT(as->mode))) {
    set_err(err, errlen, "auth: %s accepts no wire mode of ours (%s)", as->entity,
            auth_mode_name(as->mode));
    c.err = -EACCES;
    r = pack_msg(&c.base, out, outlen);
    return r < 0 ? r : -EACCES;
  }
  if (RAND_bytes(as->server_challenge, AUTH_NONCE_LEN) != 1)
    return -EIO;
  c.server_challenge.data = as->server_challenge;
  c.server_challenge.len = AUTH_NONCE_LEN;
  r = pack_msg(&c.base, out, outlen);
  if (r < 0)
    return r;
  as->challenge_ms = now_ms;
  as->state = AS_CHALLENGED;
  return 0;
}

static int refuse_reply(uint8_t **out, size_t *outlen)
{
  Blk__AuthReply rep = BLK__AUTH_REPLY__INIT;
  rep.err = -EACCES;
  rep.message = (char *)"authentication failed";
  return pack_msg(&rep.base, out, outlen);
}

/* Seal a ticket for entity's session with the OSD service secret. */
static int make_ticket(const struct auth_secret *sec, const char *entity, const char *caps_osd,
                       const uint8_t session_key[AUTH_KEY_LEN], int64_t issued_ms,
                       int64_t expires_ms, uint8_t **out, size_t *outlen)
{
  Blk__TicketBody body = BLK__TICKET_BODY__INIT;
  body.entity = (char *)entity;
  body.session_key.data = (uint8_t *)session_key;
  body.session_key.len = AUTH_KEY_LEN;
  body.caps_osd = (char *)(caps_osd ? caps_osd : "");
  body.issued_ms = issued_ms;
  body.expires_ms = expires_ms;
  uint8_t *pt;
  size_t ptlen;
  int r = pack_msg(&body.base, &pt, &ptlen);
  if (r < 0)
    return r;
  uint8_t aad[14 + 8];
  memcpy(aad, "blk-ticket-v1", 14);
  put64(aad + 14, sec->id);
  uint8_t nonce[AUTH_GCM_NONCE_LEN];
  Blk__Ticket t = BLK__TICKET__INIT;
  t.secret_id = sec->id;
  r = seal_alloc(sec->key, aad, sizeof aad, pt, ptlen, nonce, &t.sealed.data, &t.sealed.len);
  wipe_free(pt, ptlen);
  if (r < 0)
    return r;
  t.nonce.data = nonce;
  t.nonce.len = sizeof nonce;
  r = pack_msg(&t.base, out, outlen);
  free(t.sealed.data);
  return r;
}

int auth_server_verify(struct auth_server *as, const uint8_t *in, size_t len,
                       const struct keyring *db, const struct auth_rotating *osd,
                       const struct auth_params *p, int64_t now_ms,
                       uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
  *out = NULL;
  if (as->state != AS_CHALLENGED) {
    as->state = AS_FAILED;
    set_err(err, errlen, "auth: proof without an outstanding challenge (replay?)");
    int r = refuse_reply(out, outlen);
    return r < 0 ? r : -EACCES;
  }
  as->state = AS_FAILED;          /* the challenge is spent, whatever happens */
  Blk__AuthProof *pr = blk__auth_proof__unpack(NULL, len, in);
  if (!pr || !bin_is(&pr->client_challenge, AUTH_NONCE_LEN) || !bin_is(&pr->proof, AUTH_MAC_LEN)) {
    if (pr)
      blk__auth_proof__free_unpacked(pr, NULL);
    set_err(err, errlen, "auth: malformed proof from %s", as->entity);
    return -EPROTO;
  }
  int r = 0;
  uint8_t t[32], mac[AUTH_MAC_LEN];
  const struct keyring_entry *e = keyring_find(db, as->entity);
  if (now_ms - as->challenge_ms > p->challenge_ttl_ms || now_ms < as->challenge_ms) {
    set_err(err, errlen, "auth: challenge for %s expired", as->entity);
    r = -EACCES;
  } else if (!e) {
    set_err(err, errlen, "auth: unknown entity %s", as->entity);
    r = -EACCES;
  } else if (transcript(as->entity, as->client_modes, as->server_challenge, as->mode,
                        pr->client_challenge.data, t) < 0 ||
             client_proof_mac(e->key, t, mac) < 0) {
    r = -EIO;
  } else if (!auth_equal(mac, pr->proof.data, AUTH_MAC_LEN)) {
    set_err(err, errlen, "auth: bad proof from %s (wrong key?)", as->entity);
    r = -EACCES;
  }
  blk__auth_proof__free_unpacked(pr, NULL);
  if (r == -EACCES) {
    int r2 = refuse_reply(out, outlen);
    return r2 < 0 ? r2 : r;
  }
  if (r < 0)
    return r;

  /* success: session key, sealed for the client; ticket for the OSDs */
  int64_t expires = now_ms + p->ticket_ttl_ms;
  if (RAND_bytes(as->session_key, AUTH_KEY_LEN) != 1 ||
      mon_conn_key(as->session_key, t, as->conn_key) < 0)
    return -EIO;
  as->expires_ms = expires;
  Blk__SessionSecret ss = BLK__SESSION_SECRET__INIT;
  ss.session_key.data = as->session_key;
  ss.session_key.len = AUTH_KEY_LEN;
  ss.expires_ms = expires;
  uint8_t *pt;
  size_t ptlen;
  r = pack_msg(&ss.base, &pt, &ptlen);
  if (r < 0)
    return r;
  uint8_t aad[sizeof session_aad_tag + 32];
  memcpy(aad, session_aad_tag, sizeof session_aad_tag);
  memcpy(aad + sizeof session_aad_tag, t, 32);
  uint8_t nonce[AUTH_GCM_NONCE_LEN];
  Blk__AuthReply rep = BLK__AUTH_REPLY__INIT;
  r = seal_alloc(e->key, aad, sizeof aad, pt, ptlen, nonce, &rep.session_sealed.data,
                 &rep.session_sealed.len);
  wipe_free(pt, ptlen);
  if (r < 0)
    return r;
  rep.session_nonce.data = nonce;
  rep.session_nonce.len = sizeof nonce;
  rep.expires_ms = expires;
  if (osd && osd->cur.id) {
    r = make_ticket(&osd->cur, as->entity, e->caps_osd, as->session_key, now_ms, expires,
                    &rep.ticket.data, &rep.ticket.len);
    if (r < 0) {
      free(rep.session_sealed.data);
      return r;
    }
  }
  r = pack_msg(&rep.base, out, outlen);
  free(rep.session_sealed.data);
  free(rep.ticket.data);
  if (r == 0)
    as->state = AS_DONE;
  return r;
}

/* ---- the authorizer ------------------------------------------------------ */

static int authz_proof(const uint8_t session_key[AUTH_KEY_LEN], const uint8_t *ticket,
                       size_t ticket_len, const uint8_t nonce[AUTH_NONCE_LEN], int64_t ts,
                       unsigned modes, uint8_t out[AUTH_MAC_LEN])
{
  uint8_t th[32], tsb[8], mb[4];
  struct iovec tv = { (void *)ticket, ticket_len };
  if (sha256(&tv, 1, th) < 0)
    return -EIO;
  put64(tsb, (uint64_t)ts);
  put32(mb, modes);
  struct iovec iov[] = { { th, 32 }, { (void *)nonce, AUTH_NONCE_LEN }, { tsb, 8 }, { mb, 4 } };
  return derive(session_key, "blk-authz-v1", iov, 4, out);
}

static int authz_reply_proof(const uint8_t session_key[AUTH_KEY_LEN],
                             const uint8_t cn[AUTH_NONCE_LEN], const uint8_t sn[AUTH_NONCE_LEN],
                             enum auth_mode mode, const char *label, uint8_t out[AUTH_MAC_LEN])
{
  uint8_t mb[4];
  put32(mb, (uint32_t)mode);
  struct iovec iov[] = { { (void *)cn, AUTH_NONCE_LEN }, { (void *)sn, AUTH_NONCE_LEN }, { mb, 4 } };
  return derive(session_key, label, iov, 3, out);
}

int auth_authorizer_build(const struct auth_creds *cr, unsigned modes, int64_t now_ms,
                          struct auth_authorizer *st, uint8_t **out, size_t *outlen)
{
  memset(st, 0, sizeof *st);
  if (!cr->ticket || !cr->ticket_len)
    return -EINVAL;
  if (RAND_bytes(st->nonce, AUTH_NONCE_LEN) != 1)
    return -EIO;
  memcpy(st->session_key, cr->session_key, AUTH_KEY_LEN);
  st->modes = modes;
  uint8_t mac[AUTH_MAC_LEN];
  if (authz_proof(cr->session_key, cr->ticket, cr->ticket_len, st->nonce, now_ms, modes, mac) < 0)
    return -EIO;
  Blk__Authorizer a = BLK__AUTHORIZER__INIT;
  a.ticket.data = cr->ticket;
  a.ticket.len = cr->ticket_len;
  a.nonce.data = st->nonce;
  a.nonce.len = AUTH_NONCE_LEN;
  a.timestamp_ms = now_ms;
  a.modes = modes;
  a.proof.data = mac;
  a.proof.len = sizeof mac;
  return pack_msg(&a.base, out, outlen);
}

int auth_authorizer_finish(struct auth_authorizer *st, const uint8_t *in, size_t len,
                           char *err, size_t errlen)
{
  if (st->done) {
    set_err(err, errlen, "auth: second authorizer reply");
    return -EPROTO;
  }
  Blk__AuthorizerReply *rep = blk__authorizer_reply__unpack(NULL, len, in);
  if (!rep) {
    set_err(err, errlen, "auth: undecodable authorizer reply");
    return -EPROTO;
  }
  int r = 0;
  uint8_t mac[AUTH_MAC_LEN];
  if (rep->err) {
    copy_message(err, errlen, "auth: the OSD refused", rep->message);
    r = rep->err == -EKEYEXPIRED ? -EKEYEXPIRED : -EACCES;
  } else if (!bin_is(&rep->server_nonce, AUTH_NONCE_LEN) || !bin_is(&rep->proof, AUTH_MAC_LEN) ||
             rep->mode > AUTH_MODE_SECURE || !(st->modes & AUTH_MODE_BIT(rep->mode))) {
    set_err(err, errlen, "auth: malformed authorizer reply");
    r = -EPROTO;
  } else if (authz_reply_proof(st->session_key, st->nonce, rep->server_nonce.data,
                               (enum auth_mode)rep->mode, "blk-authz-reply-v1", mac) < 0) {
    r = -EIO;
  } else if (!auth_equal(mac, rep->proof.data, AUTH_MAC_LEN)) {
    set_err(err, errlen, "auth: the OSD's proof is wrong (not a holder of the service secret)");
    r = -EBADMSG;
  } else if (authz_reply_proof(st->session_key, st->nonce, rep->server_nonce.data,
                               (enum auth_mode)rep->mode, "blk-conn-osd-v1", st->conn_key) < 0) {
    r = -EIO;
  } else {
    st->mode = (enum auth_mode)rep->mode;
    st->done = true;
  }
  blk__authorizer_reply__free_unpacked(rep, NULL);
  return r;
}

void auth_authorizer_clear(struct auth_authorizer *st)
{
  OPENSSL_cleanse(st, sizeof *st);
}

void auth_session_clear(struct auth_session *s)
{
  if (s->caps_osd) {
    OPENSSL_cleanse(s->caps_osd, strlen(s->caps_osd));
    free(s->caps_osd);
  }
  OPENSSL_cleanse(s, sizeof *s);
}

static int authz_refuse(int err, const char *msg, uint8_t **out, size_t *outlen)
{
  Blk__AuthorizerReply rep = BLK__AUTHORIZER_REPLY__INIT;
  rep.err = err;
  rep.message = (char *)msg;
  return pack_msg(&rep.base, out, outlen);
}

int auth_authorizer_verify(const struct auth_rotating *secrets, auth_replay_cache *rc,
                           const struct auth_params *p, enum auth_mode mode,
                           int64_t now_ms, const uint8_t *in, size_t len,
                           struct auth_session *s, uint8_t **out, size_t *outlen,
                           char *err, size_t errlen)
{
  memset(s, 0, sizeof *s);
  *out = NULL;
  Blk__Authorizer *a = blk__authorizer__unpack(NULL, len, in);
  Blk__Ticket *t = NULL;
  Blk__TicketBody *body = NULL;
  uint8_t *pt = NULL;
  size_t ptlen = 0;
  int r = 0, wire_err = -EACCES;
  const char *wire_msg = "authorization failed";
  if (!a || !bin_is(&a->nonce, AUTH_NONCE_LEN) || !bin_is(&a->proof, AUTH_MAC_LEN) ||
      a->ticket.len == 0 || a->ticket.len > MAX_TICKET) {
    set_err(err, errlen, "auth: malformed authorizer");
    r = -EPROTO;
    goto out;
  }
  t = blk__ticket__unpack(NULL, a->ticket.len, a->ticket.data);
  if (!t) {
    set_err(err, errlen, "auth: malformed ticket");
    r = -EPROTO;
    goto out;
  }
  const struct auth_secret *sec = auth_rotating_find(secrets, t->secret_id);
  if (!sec) {
    set_err(err, errlen, "auth: ticket sealed with unknown service secret %llu (rotated out?)",
            (unsigned long long)t->secret_id);
    wire_err = -EKEYEXPIRED;
    wire_msg = "ticket sealed with a retired secret; authenticate again";
    r = -EACCES;
    goto out;
  }
  uint8_t aad[14 + 8];
  memcpy(aad, "blk-ticket-v1", 14);
  put64(aad + 14, sec->id);
  r = open_alloc(sec->key, aad, sizeof aad, &t->nonce, &t->sealed, &pt, &ptlen);
  if (r < 0) {
    set_err(err, errlen, "auth: ticket does not open (forged or corrupt)");
    r = r == -EBADMSG ? -EACCES : r;
    goto out;
  }
  body = blk__ticket_body__unpack(NULL, ptlen, pt);
  if (!body || !bin_is(&body->session_key, AUTH_KEY_LEN) || !keyring_entity_valid(body->entity)) {
    set_err(err, errlen, "auth: malformed ticket body");
    r = -EPROTO;
    goto out;
  }
  if (now_ms >= body->expires_ms) {
    set_err(err, errlen, "auth: ticket of %s expired", body->entity);
    wire_err = -EKEYEXPIRED;
    wire_msg = "ticket expired; authenticate again";
    r = -EACCES;
    goto out;
  }
  uint8_t mac[AUTH_MAC_LEN];
  if (authz_proof(body->session_key.data, a->ticket.data, a->ticket.len, a->nonce.data,
                  a->timestamp_ms, a->modes, mac) < 0) {
    r = -EIO;
    goto out;
  }
  if (!auth_equal(mac, a->proof.data, AUTH_MAC_LEN)) {
    set_err(err, errlen, "auth: bad authorizer proof for %s", body->entity);
    r = -EACCES;
    goto out;
  }
  if (a->timestamp_ms < now_ms - p->clock_skew_ms || a->timestamp_ms > now_ms + p->clock_skew_ms) {
    set_err(err, errlen, "auth: authorizer of %s is %lld ms off our clock (window %lld ms)",
            body->entity, (long long)(a->timestamp_ms - now_ms), (long long)p->clock_skew_ms);
    wire_msg = "authorizer timestamp outside the clock window";
    r = -EACCES;
    goto out;
  }
  if (!(a->modes & AUTH_MODE_BIT(mode))) {
    set_err(err, errlen, "auth: %s accepts no wire mode of ours (%s)", body->entity,
            auth_mode_name(mode));
    wire_msg = "no common wire mode";
    r = -EACCES;
    goto out;
  }
  if (!auth_replay_check_insert(rc, a->nonce.data, a->timestamp_ms, now_ms)) {
    set_err(err, errlen, "auth: replayed authorizer for %s", body->entity);
    r = -EACCES;
    goto out;
  }
  /* accepted */
  uint8_t sn[AUTH_NONCE_LEN];
  Blk__AuthorizerReply rep = BLK__AUTHORIZER_REPLY__INIT;
  if (RAND_bytes(sn, sizeof sn) != 1 ||
      authz_reply_proof(body->session_key.data, a->nonce.data, sn, mode,
                        "blk-authz-reply-v1", mac) < 0 ||
      authz_reply_proof(body->session_key.data, a->nonce.data, sn, mode,
                        "blk-conn-osd-v1", s->conn_key) < 0) {
    r = -EIO;
    goto out;
  }
  s->caps_osd = strdup(body->caps_osd ? body->caps_osd : "");
  if (!s->caps_osd) {
    r = -ENOMEM;
    goto out;
  }
  snprintf(s->entity, sizeof s->entity, "%s", body->entity);
  memcpy(s->session_key, body->session_key.data, AUTH_KEY_LEN);
  s->mode = mode;
  s->expires_ms = body->expires_ms;
  rep.server_nonce.data = sn;
  rep.server_nonce.len = sizeof sn;
  rep.mode = mode;
  rep.proof.data = mac;
  rep.proof.len = sizeof mac;
  r = pack_msg(&rep.base, out, outlen);
out:
  if (r == -EACCES) {
    int r2 = authz_refuse(wire_err, wire_msg, out, outlen);
    if (r2 < 0)
      r = r2;
  }
  if (r < 0)
    auth_session_clear(s);
  if (body) {
    if (body->session_key.data)
      OPENSSL_cleanse(body->session_key.data, body->session_key.len);
    blk__ticket_body__free_unpacked(body, NULL);
  }
  wipe_free(pt, ptlen);
  if (t)
    blk__ticket__free_unpacked(t, NULL);
  if (a)
    blk__authorizer__free_unpacked(a, NULL);
  return r;
}

/* ---- replay cache -------------------------------------------------------- */

struct rc_entry {
  uint8_t nonce[AUTH_NONCE_LEN];
  int64_t ts;
  int32_t next;                   /* bucket chain, -1 = end */
};

struct auth_replay_cache {
  size_t cap, head, count;        /* ring of entries in insertion order */
  size_t nbuckets;
  int64_t window_ms;
  int64_t floor_ms;               /* refuse timestamps <= this */
  uint64_t hkey[2];               /* secret bucket hash key: an authenticated
                                     client cannot aim nonces at one bucket */
  int32_t *buckets;
  struct rc_entry *e;
};

auth_replay_cache *auth_replay_new(size_t capacity, int64_t window_ms)
{
  if (capacity < 1 || capacity > (1u << 24)) {
    errno = EINVAL;
    return NULL;
  }
  auth_replay_cache *rc = calloc(1, sizeof *rc);
  if (!rc)
    goto fail;
  rc->cap = capacity;
  rc->nbuckets = 1;
  while (rc->nbuckets < capacity)
    rc->nbuckets <<= 1;
  rc->window_ms = window_ms;
  rc->floor_ms = INT64_MIN;
  rc->buckets = malloc(rc->nbuckets * sizeof *rc->buckets);
  rc->e = calloc(capacity, sizeof *rc->e);
  if (!rc->buckets || !rc->e)
    goto fail;
  for (size_t i = 0; i < rc->nbuckets; i++)
    rc->buckets[i] = -1;
  if (RAND_bytes((unsigned char *)rc->hkey, sizeof rc->hkey) != 1) {
    auth_replay_free(rc);
    errno = EIO;
    return NULL;
  }
  rc->hkey[1] |= 1;
  return rc;
fail:
  auth_replay_free(rc);
  errno = ENOMEM;
  return NULL;
}

void auth_replay_free(auth_replay_cache *rc)
{
  if (!rc)
    return;
  free(rc->buckets);
  free(rc->e);
  free(rc);
}

static size_t rc_bucket(const auth_replay_cache *rc, const uint8_t *nonce)
{
  uint64_t a, b;
  memcpy(&a, nonce, sizeof a);
  memcpy(&b, nonce + 8, sizeof b);
  uint64_t h = ((a ^ rc->hkey[0]) * rc->hkey[1]) ^ b;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)(h & (rc->nbuckets - 1));
}

static void rc_evict_oldest(auth_replay_cache *rc)
{
  size_t idx = (rc->head + rc->cap - rc->count) % rc->cap;
  struct rc_entry *old = &rc->e[idx];
  int32_t *pp = &rc->buckets[rc_bucket(rc, old->nonce)];
  while (*pp != -1 && *pp != (int32_t)idx)
    pp = &rc->e[*pp].next;
  if (*pp == (int32_t)idx)
    *pp = old->next;
  rc->count--;
}

bool auth_replay_check_insert(auth_replay_cache *rc, const uint8_t nonce[AUTH_NONCE_LEN],
                              int64_t ts_ms, int64_t now_ms)
{
  /* entries whose timestamp left the window are refused by the window
   * check anyway: drop them from the old end */
  while (rc->count) {
    const struct rc_entry *old = &rc->e[(rc->head + rc->cap - rc->count) % rc->cap];
    if (old->ts >= now_ms - rc->window_ms)
      break;
    rc_evict_oldest(rc);
  }
  if (ts_ms <= rc->floor_ms || ts_ms < now_ms - rc->window_ms)
    return false;
  for (int32_t i = rc->buckets[rc_bucket(rc, nonce)]; i != -1; i = rc->e[i].next)
    if (memcmp(rc->e[i].nonce, nonce, AUTH_NONCE_LEN) == 0)
      return false;
  if (rc->count == rc->cap) {
    /* full of live entries: forget the oldest, but refuse anything as old */
    const struct rc_entry *old = &rc->e[(rc->head + rc->cap - rc->count) % rc->cap];
    if (old->ts > rc->floor_ms)
      rc->floor_ms = old->ts;
    rc_evict_oldest(rc);
    if (ts_ms <= rc->floor_ms)
      return false;
  }
  struct rc_entry *e = &rc->e[rc->head];
  memcpy(e->nonce, nonce, AUTH_NONCE_LEN);
  e->ts = ts_ms;
  size_t b = rc_bucket(rc, nonce);
  e->next = rc->buckets[b];
  rc->buckets[b] = (int32_t)rc->head;
  rc->head = (rc->head + 1) % rc->cap;
  rc->count++;
  return true;
}

/* ---- wire protection ----------------------------------------------------- */

/* Both modes are AES-256-GCM under a per-direction key with the 96-bit IV
 * dir(4) || seq(8, LE).  cephx authenticates the whole frame as AAD and
 * encrypts nothing (GMAC, NIST SP 800-38D); secure encrypts the body.
 * Each direction has its own key (the label and dir are inputs of the
 * derivation) and a counter that only goes up, so an IV is never reused
 * under a key.  The key schedule runs once per connection; a frame only
 * sets the IV on the context it already has. */
struct wire_dir {
  uint64_t seq;
  uint8_t dir;                    /* 1 = client to server, 2 = server to client */
  EVP_CIPHER_CTX *cipher;         /* owned; key set once in wire_dir_init */
};

struct auth_wire {
  enum auth_mode mode;
  struct wire_dir tx, rx;
};

size_t auth_wire_trailer_len(enum auth_mode mode)
{
  return mode == AUTH_MODE_CEPHX || mode == AUTH_MODE_SECURE ? AUTH_GCM_TAG_LEN : 0;
}

static int wire_dir_init(struct wire_dir *d, enum auth_mode mode,
                         const uint8_t conn_key[AUTH_KEY_LEN], uint8_t dir, bool enc)
{
  uint8_t k[AUTH_KEY_LEN];
  struct iovec part = { &dir, 1 };
  if (derive(conn_key, mode == AUTH_MODE_CEPHX ? "blk-wire-gmac-v1" : "blk-wire-gcm-v1",
             &part, 1, k) < 0)
    return -EIO;
  d->dir = dir;
  d->seq = 0;
  int r = 0;
  d->cipher = EVP_CIPHER_CTX_new();
  if (!d->cipher || EVP_CipherInit_ex(d->cipher, gcm_alg, NULL, k, NULL, enc) != 1)
    r = -EIO;
  OPENSSL_cleanse(k, sizeof k);
  return r;
}

struct auth_wire *auth_wire_new(enum auth_mode mode, const uint8_t key[AUTH_KEY_LEN],
                                bool is_client)
{
  if (mode != AUTH_MODE_CEPHX && mode != AUTH_MODE_SECURE) {
    errno = EINVAL;
    return NULL;
  }
  if (!algs()) {
    errno = EIO;
    return NULL;
  }
  struct auth_wire *w = calloc(1, sizeof *w);
  if (!w) {
    errno = ENOMEM;
    return NULL;
  }
  w->mode = mode;
  uint8_t txd = is_client ? 1 : 2, rxd = is_client ? 2 : 1;
  if (wire_dir_init(&w->tx, mode, key, txd, true) < 0 ||
      wire_dir_init(&w->rx, mode, key, rxd, false) < 0) {
    auth_wire_free(w);
    errno = EIO;
    return NULL;
  }
  return w;
}

void auth_wire_free(struct auth_wire *w)
{
  if (!w)
    return;
  EVP_CIPHER_CTX_free(w->tx.cipher);
  EVP_CIPHER_CTX_free(w->rx.cipher);
  OPENSSL_cleanse(w, sizeof *w);
  free(w);
}

enum auth_mode auth_wire_mode(const struct auth_wire *w)
{
  return w->mode;
}

/* One frame through d's GCM context.  gmac: aad = dir || seq || hdr ||
 * body, nothing encrypted.  Otherwise aad = hdr and body is encrypted
 * (enc) or decrypted in place.  Opening checks the tag in constant time
 * (EVP_CipherFinal_ex); a mismatch is -EBADMSG. */
static int wire_gcm(struct wire_dir *d, bool enc, bool gmac, const uint8_t *hdr, size_t hdrlen,
                    uint8_t *body, size_t bodylen, uint8_t tag[AUTH_GCM_TAG_LEN])
{
  uint8_t iv[AUTH_GCM_NONCE_LEN] = { 0 };
  iv[0] = d->dir;                 /* bytes 0..3: direction, 4..11: counter (LE) */
  put64(iv + 4, d->seq);
  int ol;
  if (bodylen > INT32_MAX || hdrlen > INT32_MAX)
    return -EIO;
  if (EVP_CipherInit_ex(d->cipher, NULL, NULL, NULL, iv, enc) != 1)
    return -EIO;
  if (gmac) {
    uint8_t pre[9];
    pre[0] = d->dir;
    put64(pre + 1, d->seq);
    if (EVP_CipherUpdate(d->cipher, NULL, &ol, pre, sizeof pre) != 1 ||
        EVP_CipherUpdate(d->cipher, NULL, &ol, hdr, (int)hdrlen) != 1 ||
        (bodylen && EVP_CipherUpdate(d->cipher, NULL, &ol, body, (int)bodylen) != 1))
      return -EIO;
  } else if (EVP_CipherUpdate(d->cipher, NULL, &ol, hdr, (int)hdrlen) != 1 ||
             (bodylen && EVP_CipherUpdate(d->cipher, body, &ol, body, (int)bodylen) != 1)) {
    return -EIO;
  }
  if (!enc && EVP_CIPHER_CTX_ctrl(d->cipher, EVP_CTRL_GCM_SET_TAG, AUTH_GCM_TAG_LEN, tag) != 1)
    return -EIO;
  uint8_t fin[16];
  if (EVP_CipherFinal_ex(d->cipher, fin, &ol) != 1)
    return enc ? -EIO : -EBADMSG;
  if (enc && EVP_CIPHER_CTX_ctrl(d->cipher, EVP_CTRL_GCM_GET_TAG, AUTH_GCM_TAG_LEN, tag) != 1)
    return -EIO;
  return 0;
}

int auth_wire_seal(struct auth_wire *w, const uint8_t *hdr, size_t hdrlen,
                   uint8_t *body, size_t bodylen, uint8_t *trailer)
{
  int r = wire_gcm(&w->tx, true, w->mode == AUTH_MODE_CEPHX, hdr, hdrlen, body, bodylen,
                   trailer);
  if (r == 0)
    w->tx.seq++;
  return r;
}

int auth_wire_open(struct auth_wire *w, const uint8_t *hdr, size_t hdrlen,
                   uint8_t *body, size_t bodylen, const uint8_t *trailer)
{
  uint8_t tag[AUTH_GCM_TAG_LEN];
  memcpy(tag, trailer, sizeof tag);
  int r = wire_gcm(&w->rx, false, w->mode == AUTH_MODE_CEPHX, hdr, hdrlen, body, bodylen, tag);
  if (r == 0)
    w->rx.seq++;
  return r;
}
