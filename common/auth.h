/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the cephx-like authentication protocol (DESIGN.md §8,
 * docs/auth.md), as I/O-free functions: each step consumes the packed
 * protobuf payload of the peer's message (proto/auth.proto) and produces
 * the packed payload of the answer.  The caller moves bytes (msgr frames
 * of the MSG_AUTH_* types) and supplies the wall clock, so every step is
 * unit-testable and fuzzable.
 *
 *  1. client -> mon   AuthHello{entity, modes}
 *     mon -> client   AuthChallenge{server_challenge, mode}
 *  2. client -> mon   AuthProof{client_challenge, proof}
 *        proof = HMAC-SHA256(key, "blk-auth-proof-v1" || T), where T is
 *        the SHA-256 transcript of entity, modes, server_challenge, mode,
 *        client_challenge.  The key never travels; the server challenge is
 *        single use, so a recorded exchange cannot be replayed.
 *     mon -> client   AuthReply{session key sealed with the client key
 *        (AES-256-GCM, AAD = T), ticket for the OSD service}
 *  3. client -> OSD   Authorizer{ticket, nonce, timestamp, modes, proof}
 *        proof = HMAC(session_key, ...) over all of them.  The OSD opens
 *        the ticket with its current or previous rotating secret, checks
 *        expiry, the clock window, the proof, and that the nonce is new.
 *     OSD -> client   AuthorizerReply{server_nonce, mode, proof}
 *
 * Both exchanges end with a per-connection key (conn_key) derived from
 * the session key and both sides' randomness; it is what
 * msgr_conn_set_protection() takes.  MACs and keys are compared with
 * CRYPTO_memcmp; secrets are wiped with OPENSSL_cleanse.
 *
 * The wire-protection primitives (sign or encrypt one frame) live here
 * too (struct auth_wire); the messenger calls them.
 */
#ifndef BLK_COMMON_AUTH_H
#define BLK_COMMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/keyring.h"

#define AUTH_KEY_LEN 32
#define AUTH_NONCE_LEN 32          /* challenges and authorizer nonces */
#define AUTH_GCM_NONCE_LEN 12
#define AUTH_GCM_TAG_LEN 16
#define AUTH_MAC_LEN 32            /* HMAC-SHA256 */

enum auth_mode {
  AUTH_MODE_NONE = 0,              /* no authentication, no protection */
  AUTH_MODE_CEPHX = 1,             /* authenticated; every frame signed */
  AUTH_MODE_SECURE = 2,            /* authenticated; every frame encrypted */
};
#define AUTH_MODE_BIT(m) (1u << (m))
/* The modes a peer configured with m accepts: m and the stronger ones. */
unsigned auth_modes_at_least(enum auth_mode m);
/* "none" | "cephx" | "secure" -> mode.  0 or -EINVAL. */
int auth_mode_parse(const char *s, enum auth_mode *m);
const char *auth_mode_name(enum auth_mode m);

/* Parameters (from the auth_* options, docs/auth.md). */
struct auth_params {
  enum auth_mode mode;             /* auth_mode */
  int64_t ticket_ttl_ms;           /* auth_ticket_ttl */
  int64_t clock_skew_ms;           /* auth_clock_skew: authorizer window */
  int64_t challenge_ttl_ms;        /* auth_challenge_ttl */
  int64_t secret_ttl_ms;           /* auth_service_secret_ttl: rotation period */
  size_t replay_cache_size;        /* auth_replay_cache_size */
};
/* The defaults of the option table (mode cephx). */
void auth_params_default(struct auth_params *p);
struct config;
/* Read the auth_* options of cfg.  0, or -EINVAL with a message in err
 * (unknown auth_mode, a ttl <= 0, ticket ttl above the rotation period:
 * a ticket must stay verifiable for its whole life, and an OSD keeps the
 * current and the previous secret only). */
int auth_params_from_config(const struct config *cfg, struct auth_params *p,
                            char *err, size_t errlen);

/* ---- crypto primitives --------------------------------------------------- */

/* Constant-time equality. */
bool auth_equal(const void *a, const void *b, size_t n);
/* HMAC-SHA256 over the concatenation of iov[0..n).  0 or -EIO. */
int auth_hmac(const uint8_t key[AUTH_KEY_LEN], const struct iovec *iov, int n,
              uint8_t out[AUTH_MAC_LEN]);
/* AES-256-GCM seal: out gets len bytes of ciphertext then the 16-byte
 * tag; nonce_out a fresh random nonce.  0 or -EIO. */
int auth_seal(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
              const void *pt, size_t len, uint8_t nonce_out[AUTH_GCM_NONCE_LEN],
              uint8_t *out);
/* AES-256-GCM open of ct[0..len) (ciphertext then tag): pt gets len - 16
 * bytes.  0, -EBADMSG (forged/corrupt or wrong key), -EIO. */
int auth_open(const uint8_t key[AUTH_KEY_LEN], const void *aad, size_t aadlen,
              const uint8_t nonce[AUTH_GCM_NONCE_LEN], const uint8_t *ct,
              size_t len, uint8_t *pt);

/* ---- rotating service secrets (monitor makes them, OSDs hold them) ------- */

struct auth_secret {
  uint64_t id;                     /* 0 = unset */
  uint8_t key[AUTH_KEY_LEN];
  int64_t expires_ms;              /* when it should stop sealing tickets */
};

struct auth_rotating {
  struct auth_secret cur, prev;    /* tickets are sealed with cur */
};

/* Start with secret id 1 valid for period_ms.  0 or -EIO. */
int auth_rotating_init(struct auth_rotating *r, int64_t now_ms, int64_t period_ms);
/* True when cur has expired and rotate should run. */
bool auth_rotating_due(const struct auth_rotating *r, int64_t now_ms);
/* prev = cur; cur = a new random secret with id + 1.  0 or -EIO. */
int auth_rotating_rotate(struct auth_rotating *r, int64_t now_ms, int64_t period_ms);
/* The secret with this id (cur or prev), NULL if neither. */
const struct auth_secret *auth_rotating_find(const struct auth_rotating *r, uint64_t id);
void auth_rotating_clear(struct auth_rotating *r);
/* Monitor -> OSD distribution: SealedSecrets under the OSD's session key.
 * *out is malloc'ed.  0, -ENOMEM, -EIO. */
int auth_secrets_seal(const struct auth_rotating *r, const uint8_t key[AUTH_KEY_LEN],
                      uint8_t **out, size_t *outlen);
/* OSD side: open a SealedSecrets into *r.  0, -EBADMSG, -EPROTO (bad
 * encoding), -EACCES (err set by the monitor). */
int auth_secrets_open(const uint8_t key[AUTH_KEY_LEN], const uint8_t *in, size_t len,
                      struct auth_rotating *r);

/* ---- client <-> monitor exchange ----------------------------------------- */

/* What a client holds after authenticating: enough to reach OSDs. */
struct auth_creds {
  char entity[KEYRING_MAX_ENTITY];
  uint8_t session_key[AUTH_KEY_LEN];
  uint8_t *ticket;                 /* packed Ticket, malloc'ed */
  size_t ticket_len;
  int64_t expires_ms;              /* ticket expiry (wall clock) */
};
void auth_creds_clear(struct auth_creds *cr);

enum auth_client_state { AC_INIT, AC_HELLO_SENT, AC_PROOF_SENT, AC_DONE, AC_FAILED };

struct auth_client {
  enum auth_client_state state;
  char entity[KEYRING_MAX_ENTITY];
  uint8_t key[AUTH_KEY_LEN];
  unsigned modes;
  uint8_t server_challenge[AUTH_NONCE_LEN];
  uint8_t client_challenge[AUTH_NONCE_LEN];
  uint8_t transcript[32];
  /* results, valid in AC_DONE: */
  enum auth_mode mode;             /* the wire mode the monitor chose */
  uint8_t conn_key[AUTH_KEY_LEN];  /* for msgr_conn_set_protection */
  struct auth_creds creds;
};

/* Prepare to authenticate entity with key, accepting the modes bitmask. */
void auth_client_init(struct auth_client *ac, const char *entity,
                      const uint8_t key[AUTH_KEY_LEN], unsigned modes);
/* Wipe keys and free the ticket. */
void auth_client_clear(struct auth_client *ac);
/* The AuthHello payload (*out malloc'ed).  0, -ENOMEM, -EINVAL (state). */
int auth_client_hello(struct auth_client *ac, uint8_t **out, size_t *outlen);
/* Consume the AuthChallenge, produce the AuthProof.  0, -EPROTO (bad
 * message), -EACCES (no acceptable mode; err says), -ENOMEM, -EIO. */
int auth_client_proof(struct auth_client *ac, const uint8_t *in, size_t len,
                      uint8_t **out, size_t *outlen, char *err, size_t errlen);
/* Consume the AuthReply.  0 (state AC_DONE: mode, conn_key and creds are
 * set), -EACCES (refused, err has the monitor's message), -EBADMSG (the
 * reply does not open with our key: not our monitor), -EPROTO. */
int auth_client_finish(struct auth_client *ac, const uint8_t *in, size_t len,
                       char *err, size_t errlen);

enum auth_server_state { AS_INIT, AS_CHALLENGED, AS_DONE, AS_FAILED };

/* Monitor side, one per connection. */
struct auth_server {
  enum auth_server_state state;
  enum auth_mode mode;             /* this monitor's auth_mode */
  char entity[KEYRING_MAX_ENTITY];
  unsigned client_modes;
  uint8_t server_challenge[AUTH_NONCE_LEN];
  int64_t challenge_ms;
  /* results, valid in AS_DONE: */
  uint8_t session_key[AUTH_KEY_LEN];
  uint8_t conn_key[AUTH_KEY_LEN];
  int64_t expires_ms;
};

void auth_server_init(struct auth_server *as, enum auth_mode mode);
void auth_server_clear(struct auth_server *as);
/* Consume an AuthHello, produce the AuthChallenge.  Unknown entities get
 * a challenge too (the failure shows at the proof, indistinguishable from
 * a bad key).  0; -EACCES when the client accepts no mode of ours (the
 * challenge says so; send it, then close); -EPROTO; -ENOMEM; -EIO. */
int auth_server_challenge(struct auth_server *as, const uint8_t *in, size_t len,
                          int64_t now_ms, uint8_t **out, size_t *outlen,
                          char *err, size_t errlen);
/* Consume an AuthProof: verify it against db's key for the entity; on
 * success make a session key, seal it for the client, and issue a ticket
 * for the OSD service sealed with osd->cur carrying the entity's osd caps.
 * *out is the AuthReply to send either way.  0 (AS_DONE); -EACCES
 * (refused: unknown entity, bad proof, stale or reused challenge; err
 * says which, the reply does not); -EPROTO; -ENOMEM; -EIO. */
int auth_server_verify(struct auth_server *as, const uint8_t *in, size_t len,
                       const struct keyring *db, const struct auth_rotating *osd,
                       const struct auth_params *p, int64_t now_ms,
                       uint8_t **out, size_t *outlen, char *err, size_t errlen);

/* ---- client <-> OSD: the authorizer --------------------------------------- */

struct auth_authorizer {
  uint8_t nonce[AUTH_NONCE_LEN];
  uint8_t session_key[AUTH_KEY_LEN];
  unsigned modes;
  bool done;
  enum auth_mode mode;             /* valid when done */
  uint8_t conn_key[AUTH_KEY_LEN];  /* valid when done */
};

/* Build an Authorizer from creds (fresh nonce, now_ms).  0, -EINVAL (no
 * ticket), -ENOMEM, -EIO. */
int auth_authorizer_build(const struct auth_creds *cr, unsigned modes, int64_t now_ms,
                          struct auth_authorizer *st, uint8_t **out, size_t *outlen);
/* Consume the AuthorizerReply: check the OSD's proof (mutual auth) and
 * derive conn_key.  0, -EACCES (refused; err), -EBADMSG (bad proof),
 * -EPROTO. */
int auth_authorizer_finish(struct auth_authorizer *st, const uint8_t *in, size_t len,
                           char *err, size_t errlen);
void auth_authorizer_clear(struct auth_authorizer *st);

/* Bounded cache of authorizer nonces seen within the clock window. */
typedef struct auth_replay_cache auth_replay_cache;
/* capacity entries; NULL with errno = ENOMEM. */
auth_replay_cache *auth_replay_new(size_t capacity, int64_t window_ms);
void auth_replay_free(auth_replay_cache *rc);
/* Record (nonce, ts); false if it was seen (a replay) or falls below the
 * floor raised by evicting still-valid entries when full. */
bool auth_replay_check_insert(auth_replay_cache *rc, const uint8_t nonce[AUTH_NONCE_LEN],
                              int64_t ts_ms, int64_t now_ms);

/* An authenticated session on an OSD. */
struct auth_session {
  char entity[KEYRING_MAX_ENTITY];
  char *caps_osd;                  /* malloc'ed caps text from the ticket */
  uint8_t session_key[AUTH_KEY_LEN];
  uint8_t conn_key[AUTH_KEY_LEN];
  enum auth_mode mode;
  int64_t expires_ms;
};
void auth_session_clear(struct auth_session *s);

/* OSD side: verify an Authorizer against the held secrets, the clock and
 * the replay cache; fill *s and produce the AuthorizerReply (*out, sent
 * in every case).  mode is this OSD's auth_mode.  0; -EACCES (expired
 * ticket, unknown secret id, forged, out of window, replay, no common
 * mode; err says which); -EPROTO; -ENOMEM; -EIO. */
int auth_authorizer_verify(const struct auth_rotating *secrets, auth_replay_cache *rc,
                           const struct auth_params *p, enum auth_mode mode,
                           int64_t now_ms, const uint8_t *in, size_t len,
                           struct auth_session *s, uint8_t **out, size_t *outlen,
                           char *err, size_t errlen);

/* ---- wire protection (used by msgr) --------------------------------------- */

/* One direction pair of frame protection for one connection.  Frames are
 * numbered per direction from 0; the number is never sent, so a dropped,
 * replayed or reordered frame fails verification. */
struct auth_wire;
/* NULL with errno = ENOMEM/EIO/EINVAL (mode NONE is not a protection). */
struct auth_wire *auth_wire_new(enum auth_mode mode, const uint8_t key[AUTH_KEY_LEN],
                                bool is_client);
void auth_wire_free(struct auth_wire *w);
enum auth_mode auth_wire_mode(const struct auth_wire *w);
/* Bytes appended after the data segment: 16 (the GCM tag) for cephx and
 * secure, 0 otherwise. */
size_t auth_wire_trailer_len(enum auth_mode mode);
/* Both modes: AES-256-GCM under the direction's key, IV = dir(4) || seq(8).
 * cephx (GMAC): trailer = tag over AAD dir(1) || seq(8) || hdr || body,
 * nothing encrypted.
 * secure: encrypt body in place; aad = the header fields that do not
 * depend on the ciphertext (aadlen bytes); trailer = GCM tag.  For secure
 * the caller fills the header's crcs after sealing.  0 or -EIO. */
int auth_wire_seal(struct auth_wire *w, const uint8_t *hdr, size_t hdrlen,
                   uint8_t *body, size_t bodylen, uint8_t *trailer);
/* The reverse for a received frame: verify (and decrypt in place).
 * 0, -EBADMSG (forged, corrupt, replayed or reordered), -EIO. */
int auth_wire_open(struct auth_wire *w, const uint8_t *hdr, size_t hdrlen,
                   uint8_t *body, size_t bodylen, const uint8_t *trailer);

#endif
