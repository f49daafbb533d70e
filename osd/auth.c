/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the OSD's side of auth (docs/auth.md §4.2, §4.3, §8).
 *  - The OSD logs in to the monitors as osd.N (monc, with the key of its
 *    keyring), then fetches the rotating service secrets
 *    (MSG_AUTH_GET_SECRETS, sealed with the session key) and refetches
 *    them when the current one reaches its expiry (the leader rotates
 *    then) or when a client presents a ticket sealed with a newer secret.
 *  - Every accepted connection must open with MSG_AUTH_AUTHORIZER (the
 *    messenger's require_auth gate refuses anything else): the ticket is
 *    opened with the current or previous secret, its expiry, the proof,
 *    the clock window and the nonce (replay cache) are checked, then the
 *    connection is protected (cephx signing or secure) and the session
 *    (entity, parsed osd caps, expiry) hangs on the connection's priv.
 *  - Every client op is checked against the session's osd caps for its
 *    pool (osd_op_allowed, called from pg.c): reads need r, writes w,
 *    locks w+x; an expired session gets -EKEYEXPIRED (the client fetches
 *    a new ticket and reconnects).  Replication, peering and heartbeat
 *    frames are accepted only from osd.* entities.
 *  - Outgoing OSD -> OSD connections present an authorizer built from the
 *    OSD's own ticket (monc_osd_auth_start).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/caps.h"
#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"
#include "proto/auth.pb-c.h"

#define FETCH_RETRY_MS 200

struct osd_session {
  struct osd_session *prev, *next;   /* osd_auth's list (freed at stop) */
  struct auth_session s;
  caps *osd_caps;                    /* NULL: no osd caps (nothing allowed) */
  bool peer;                         /* an osd.* entity */
};

struct osd_auth {
  struct auth_params p;
  struct auth_rotating secrets;
  bool fetching;
  int64_t last_fetch_ms;             /* monotonic */
  auth_replay_cache *rc;
  struct osd_session *sessions;
};

int osd_auth_prepare(struct osd *osd)
{
  char err[512];
  struct osd_auth *oa = calloc(1, sizeof *oa);
  if (!oa)
    return -ENOMEM;
  osd->auth = oa;
  if (auth_params_from_config(osd->cfg, &oa->p, err, sizeof err) < 0) {
    log_err("auth", "%s", err);
    return -EINVAL;
  }
  /* the OSD authenticates as osd.N unless configured otherwise */
  if (!*config_get_str(osd->cfg, "name")) {
    char name[32];
    snprintf(name, sizeof name, "osd.%d", osd->id);
    config_set(osd->cfg, "name", name);
  }
  if (oa->p.mode == AUTH_MODE_NONE)
    return 0;
  oa->rc = auth_replay_new(oa->p.replay_cache_size, oa->p.clock_skew_ms);
  if (!oa->rc)
    return -ENOMEM;
  return 0;
}

int osd_auth_start(struct osd *osd)
{
  struct osd_auth *oa = osd->auth;
  if (oa->p.mode == AUTH_MODE_NONE)
    return 0;
  msgr_set_require_auth(osd->msgr, true);
  msgr_set_client_auth(osd->msgr, monc_osd_auth_start, osd->monc);
  log_info("auth", "auth_mode %s as %s", auth_mode_name(oa->p.mode), monc_entity(osd->monc));
  return 0;
}

static void session_free(struct osd_auth *oa, struct osd_session *s)
{
  if (!s)
    return;
  if (s->prev)
    s->prev->next = s->next;
  else
    oa->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  auth_session_clear(&s->s);
  caps_free(s->osd_caps);
  free(s);
}

void osd_auth_stop(struct osd *osd)
{
  struct osd_auth *oa = osd->auth;
  if (!oa)
    return;
  while (oa->sessions)
    session_free(oa, oa->sessions);
  auth_replay_free(oa->rc);
  auth_rotating_clear(&oa->secrets);
  free(oa);
  osd->auth = NULL;
}

void osd_auth_on_close(struct osd *osd, msgr_conn *c)
{
  if (osd->auth)
    session_free(osd->auth, msgr_conn_priv(c));
  msgr_conn_set_priv(c, NULL);
}

/* ---- service secrets ------------------------------------------------------------ */

static void on_secrets(void *arg, int err, const struct auth_rotating *r)
{
  struct osd *osd = arg;
  struct osd_auth *oa = osd->auth;
  if (!oa)
    return;
  oa->fetching = false;
  if (err < 0) {
    log_debug("auth", "fetching the service secrets failed: %s", strerror(-err));
    return;
  }
  if (r->cur.id != oa->secrets.cur.id)
    log_info("auth", "service secret now id %llu (previous %llu)",
             (unsigned long long)r->cur.id, (unsigned long long)r->prev.id);
  bool first = !oa->secrets.cur.id;
  auth_rotating_clear(&oa->secrets);
  oa->secrets = *r;
  if (first && osd->map && !osd->booted && !osd->stopping)
    osd->boot_sent_ms = 0;   /* the timer boots us now */
}

static void fetch_secrets(struct osd *osd, bool now)
{
  struct osd_auth *oa = osd->auth;
  int64_t t = util_now_ms();
  if (oa->fetching || (!now && t - oa->last_fetch_ms < FETCH_RETRY_MS) || osd->stopping)
    return;
  oa->last_fetch_ms = t;
  if (monc_fetch_secrets(osd->monc, on_secrets, osd) == 0)
    oa->fetching = true;
  else
    monc_renew(osd->monc);   /* no authenticated monitor connection yet */
}

bool osd_auth_ready(const struct osd *osd)
{
  const struct osd_auth *oa = osd->auth;
  return !oa || oa->p.mode == AUTH_MODE_NONE || oa->secrets.cur.id != 0;
}

void osd_auth_tick(struct osd *osd)
{
  struct osd_auth *oa = osd->auth;
  if (!oa || oa->p.mode == AUTH_MODE_NONE)
    return;
  if (!oa->secrets.cur.id || util_wall_ms() >= oa->secrets.cur.expires_ms)
    fetch_secrets(osd, false);
}

/* ---- authorizers ---------------------------------------------------------------- */

/* The secret id the authorizer's ticket names (0 if undecodable). */
static uint64_t ticket_secret_id(const struct msgr_frame *f)
{
  uint64_t id = 0;
  Blk__Authorizer *a = blk__authorizer__unpack(NULL, f->payload_len, f->payload);
  if (!a)
    return 0;
  Blk__Ticket *t = blk__ticket__unpack(NULL, a->ticket.len, a->ticket.data);
  if (t) {
    id = t->secret_id;
    blk__ticket__free_unpacked(t, NULL);
  }
  blk__authorizer__free_unpacked(a, NULL);
  return id;
}

static void refuse(msgr_conn *c, const struct msgr_frame *f, int err, const char *msg)
{
  Blk__AuthorizerReply rep = BLK__AUTHORIZER_REPLY__INIT;
  rep.err = err;
  rep.message = (char *)msg;
  msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&rep, NULL, 0);
}

static void on_authorizer(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  struct osd_auth *oa = osd->auth;
  if (msgr_conn_priv(c) || msgr_conn_protection(c) != AUTH_MODE_NONE) {
    log_warn("auth", "%s: second authorizer on a connection; closing", msgr_conn_peer(c));
    msgr_conn_close(c);
    return;
  }
  uint64_t sid = ticket_secret_id(f);
  if (sid > oa->secrets.cur.id) {
    /* a newer secret than ours: fetch it; the client retries */
    fetch_secrets(osd, true);
    log_info("auth", "authorizer from %s names service secret %llu, newer than ours (%llu): "
             "fetching; the client retries", msgr_conn_peer(c), (unsigned long long)sid,
             (unsigned long long)oa->secrets.cur.id);
    refuse(c, f, -EAGAIN, "this OSD does not have the service secret of the ticket yet; retry");
    return;
  }
  struct osd_session *s = calloc(1, sizeof *s);
  if (!s) {
    refuse(c, f, -ENOMEM, "out of memory");
    return;
  }
  uint8_t *out = NULL;
  size_t outlen = 0;
  char err[256] = "";
  int r = auth_authorizer_verify(&oa->secrets, oa->rc, &oa->p, oa->p.mode, util_wall_ms(),
                                 f->payload, f->payload_len, &s->s, &out, &outlen, err,
                                 sizeof err);
  if (out)
    msgr_send(c, f->type, FRAME_F_REPLY, f->tid, out, (uint32_t)outlen, NULL, 0);
  free(out);
  if (r < 0) {
    log_warn("auth", "authorizer from %s refused: %s", msgr_conn_peer(c), err);
    auth_session_clear(&s->s);
    free(s);
    return;   /* the gate refuses anything else on this connection */
  }
  if (s->s.caps_osd && s->s.caps_osd[0]) {
    s->osd_caps = caps_parse(CAPS_OSD, s->s.caps_osd, err, sizeof err);
    if (!s->osd_caps)
      log_warn("auth", "%s: osd caps '%s' do not parse: %s", s->s.entity, s->s.caps_osd, err);
  }
  s->peer = !strncmp(s->s.entity, "osd.", 4);
  r = msgr_conn_set_protection(c, s->s.mode, s->s.conn_key, false);
  if (r < 0) {
    log_err("auth", "cannot protect the connection of %s: %s", s->s.entity, strerror(-r));
    auth_session_clear(&s->s);
    caps_free(s->osd_caps);
    free(s);
    msgr_conn_close(c);
    return;
  }
  s->next = oa->sessions;
  if (oa->sessions)
    oa->sessions->prev = s;
  oa->sessions = s;
  msgr_conn_set_priv(c, s);
  log_debug("auth", "%s authorized from %s (%s)", s->s.entity, msgr_conn_peer(c),
            auth_mode_name(s->s.mode));
}

bool osd_auth_gate(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  struct osd_auth *oa = osd->auth;
  if (f->type == MSG_AUTH_AUTHORIZER) {
    if (oa->p.mode != AUTH_MODE_NONE)
      on_authorizer(osd, c, f);
    return false;
  }
  if (oa->p.mode == AUTH_MODE_NONE)
    return true;
  struct osd_session *s = msgr_conn_priv(c);
  if (!s) {
    log_warn("auth", "%s: frame type %u without an authorizer; closing", msgr_conn_peer(c),
             f->type);
    msgr_conn_close(c);
    return false;
  }
  if (f->type != MSG_OSD_OP && f->type != MSG_PG_SCRUB_CMD && !s->peer) {
    log_warn("auth", "%s (%s) sent an OSD-to-OSD message (type %u); closing", s->s.entity,
             msgr_conn_peer(c), f->type);
    msgr_conn_close(c);
    return false;
  }
  return true;
}

static unsigned op_need(int op)
{
  switch (op) {
  case BLK__OSD_OP_TYPE__OP_READ:
  case BLK__OSD_OP_TYPE__OP_STAT:
  case BLK__OSD_OP_TYPE__OP_LIST:
  case BLK__OSD_OP_TYPE__OP_GETXATTR:
  case BLK__OSD_OP_TYPE__OP_OMAP_GET:
  case BLK__OSD_OP_TYPE__OP_OMAP_LIST:
  case BLK__OSD_OP_TYPE__OP_MAPEXT:
    return CAP_R;
  case BLK__OSD_OP_TYPE__OP_LOCK_INFO:
    return CAP_R | CAP_X;
  case BLK__OSD_OP_TYPE__OP_LOCK:
  case BLK__OSD_OP_TYPE__OP_UNLOCK:
  case BLK__OSD_OP_TYPE__OP_LOCK_BREAK:
    return CAP_W | CAP_X;
  default:
    return CAP_W;            /* every other op changes the object */
  }
}

static int allowed_need(struct osd *osd, msgr_conn *c, const char *pool, unsigned need,
                        char *msg, size_t msglen)
{
  struct osd_auth *oa = osd->auth;
  if (!oa || oa->p.mode == AUTH_MODE_NONE)
    return 0;
  const struct osd_session *s = msgr_conn_priv(c);
  if (!s) {
    snprintf(msg, msglen, "not authenticated");
    return -EACCES;
  }
  if (util_wall_ms() > s->s.expires_ms) {
    snprintf(msg, msglen, "the ticket of %s expired; authenticate again", s->s.entity);
    return -EKEYEXPIRED;
  }
  if (s->osd_caps && caps_allows(s->osd_caps, CAPS_OSD, pool, need))
    return 0;
  snprintf(msg, msglen, "permission denied: %s (osd caps '%s') may not %s%s in pool %s",
           s->s.entity, s->s.caps_osd ? s->s.caps_osd : "",
           need & CAP_W ? "write" : "read", need & CAP_X ? "/lock" : "", pool);
  return -EACCES;
}

int osd_op_allowed(struct osd *osd, msgr_conn *c, const char *pool, int op, char *msg,
                   size_t msglen)
{
  return allowed_need(osd, c, pool, op_need(op), msg, msglen);
}

int osd_pg_cmd_allowed(struct osd *osd, msgr_conn *c, const char *pool, bool change, char *msg,
                       size_t msglen)
{
  return allowed_need(osd, c, pool, change ? CAP_R | CAP_W | CAP_X : CAP_R, msg, msglen);
}
