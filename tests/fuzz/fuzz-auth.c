/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the auth decoders and verifiers (common/auth.c).
 * The first byte picks the entry point; the rest is the peer's message.
 * Fixed keys and secrets are set up once.  Beyond "no crash, no leak,
 * no undefined behaviour", every verifier must refuse: the fuzzer does not
 * know the keys, so an accepted proof, reply, authorizer or frame would be
 * a forgery, and aborts.  (The secrets seed is sealed with the fixed key
 * so that the bundle decoder behind the AEAD is reached.)
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/keyring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct keyring *db;
static struct auth_rotating osd;
static struct auth_params params;
static auth_replay_cache *rc;
static const uint8_t key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
#define NOW 1800000000000LL

static void init_once(void)
{
  if (db)
    return;
  db = keyring_new();
  keyring_set_key(db, "client.admin", key);
  auth_params_default(&params);
  auth_rotating_init(&osd, NOW, 3600000);
  rc = auth_replay_new(256, params.clock_skew_ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  init_once();
  if (size < 1)
    return 0;
  const uint8_t *in = data + 1;
  size_t len = size - 1;
  char err[256];
  uint8_t *out = NULL;
  size_t ol = 0;
  int r;
  switch (data[0] % 8) {
  case 0: {                         /* monitor: hello */
    struct auth_server as;
    auth_server_init(&as, AUTH_MODE_CEPHX);
    r = auth_server_challenge(&as, in, len, NOW, &out, &ol, err, sizeof err);
    if (r == 0 && as.state != AS_CHALLENGED)
      abort();
    break;
  }
  case 1: {                         /* monitor: proof after a real challenge */
    struct auth_server as;
    auth_server_init(&as, AUTH_MODE_CEPHX);
    static const uint8_t hello[] = { 0x0a, 0x0c, 'c', 'l', 'i', 'e', 'n', 't', '.', 'a', 'd', 'm',
                                     'i', 'n', 0x10, 0x07 };
    if (auth_server_challenge(&as, hello, sizeof hello, NOW, &out, &ol, err, sizeof err) != 0)
      abort();
    free(out);
    out = NULL;
    r = auth_server_verify(&as, in, len, db, &osd, &params, NOW, &out, &ol, err, sizeof err);
    if (r == 0)
      abort();
    break;
  }
  case 2: {                         /* client: challenge */
    struct auth_client ac;
    auth_client_init(&ac, "client.admin", key, 7);
    uint8_t *h;
    size_t hl;
    if (auth_client_hello(&ac, &h, &hl) != 0)
      abort();
    free(h);
    r = auth_client_proof(&ac, in, len, &out, &ol, err, sizeof err);
    auth_client_clear(&ac);
    break;
  }
  case 3: {                         /* client: reply (must not open) */
    struct auth_client ac;
    auth_client_init(&ac, "client.admin", key, 7);
    ac.state = AC_PROOF_SENT;
    r = auth_client_finish(&ac, in, len, err, sizeof err);
    if (r == 0)
      abort();
    auth_client_clear(&ac);
    break;
  }
  case 4: {                         /* OSD: authorizer */
    struct auth_session s;
    r = auth_authorizer_verify(&osd, rc, &params, AUTH_MODE_CEPHX, NOW, in, len, &s, &out, &ol,
                               err, sizeof err);
    if (r == 0)
      abort();
    auth_session_clear(&s);
    break;
  }
  case 5: {                         /* client: authorizer reply */
    struct auth_authorizer az;
    memset(&az, 0, sizeof az);
    az.modes = 7;
    r = auth_authorizer_finish(&az, in, len, err, sizeof err);
    if (r == 0 || az.done)
      abort();
    break;
  }
  case 6: {                         /* OSD: sealed secrets (the seed is sealed with
                                       key, so a valid bundle is reachable and its
                                       decoder is fuzzed; what opens must be sane) */
    struct auth_rotating got;
    if (auth_secrets_open(key, in, len, &got) == 0 && (got.cur.id == 0 || got.cur.id == got.prev.id))
      abort();
    break;
  }
  default: {                        /* a protected frame: header, body, trailer */
    enum auth_mode m = (len & 1) ? AUTH_MODE_CEPHX : AUTH_MODE_SECURE;
    size_t tl = auth_wire_trailer_len(m);
    if (len < 24 + tl)
      break;
    struct auth_wire *w = auth_wire_new(m, key, false);
    uint8_t *body = malloc(len);
    memcpy(body, in, len);
    if (auth_wire_open(w, body, 24, body + 24, len - 24 - tl, body + len - tl) == 0)
      abort();
    free(body);
    auth_wire_free(w);
    break;
  }
  }
  free(out);
  return 0;
}
