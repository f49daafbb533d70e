/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the monitor's side of auth (docs/auth.md §4, §5, §8).
 *  - The auth database (entities -> key + caps, and the rotating OSD
 *    service secrets) is a packed AuthDb replicated through Raft as
 *    MapTxn.auth: the leader builds the whole next database (version + 1)
 *    from its applied copy and proposes it; the state machine refuses a
 *    version that does not follow (two concurrent changes cannot lose one
 *    another; the loser gets -ESTALE and blkctl retries).  Every monitor
 *    keeps a decoded copy, refreshed when the applied version moves.
 *  - Bootstrap: the leader of a cluster without a database proposes
 *    version 1 with the entities of its keyring file (the client.admin
 *    keyring blkctl cluster init wrote) and a first service secret.
 *    Until it commits, those entities can authenticate from the file.
 *  - Rotation: the leader rotates the service secret every
 *    auth_service_secret_ttl (a 200 ms timer checks auth_rotating_due).
 *  - Sessions: each connection has a struct mon_session (the msgr_conn's
 *    priv) running auth_server; once done the connection is protected
 *    and every other frame is checked against the entity's mon caps:
 *    reads, status and subscriptions need r, changes w, OSD daemon
 *    messages x (profile osd), auth commands x plus r or w.
 *  - Monitor <-> monitor: a monitor's outgoing (Raft) connections log in
 *    as "mon." with the monitors' shared key from the keyring file (the
 *    messenger holds the frames until then, msgr_set_client_auth); MSG_RAFT
 *    is accepted only on a connection authenticated as "mon.".
 */
#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/caps.h"
#include "common/keyring.h"
#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "mon/mon.h"
#include "proto/auth.pb-c.h"

#define AUTH_TICK_MS 200
#define AUTH_PROPOSE_RETRY_MS 1000

struct mon_session {
  struct mon_session *prev, *next; /* mon_auth's list (freed at stop) */
  struct auth_server as;
  bool done;
  char entity[KEYRING_MAX_ENTITY];
  caps *mon_caps;                  /* NULL: no mon caps (nothing allowed) */
  uint8_t session_key[AUTH_KEY_LEN];
  int64_t expires_ms;
};

struct mon_auth {
  struct auth_params p;
  struct keyring *boot;            /* the keyring file's entities */
  struct keyring *db;              /* decoded replicated database */
  struct auth_rotating rot;
  uint64_t version;                /* of db/rot; 0 = none yet */
  struct event *tick_ev;
  int64_t proposed_ms;             /* last proposal (throttle) */
  struct mon_session *sessions;
  bool peer_auth;                  /* "mon." key known: Raft is authenticated */
  uint8_t mon_key[AUTH_KEY_LEN];
};

static void session_free(struct mon_auth *ma, struct mon_session *s);

uint64_t mon_auth_db_version(const uint8_t *data, size_t len)
{
  if (!len)
    return 0;
  Blk__AuthDb *d = blk__auth_db__unpack(NULL, len, data);
  if (!d)
    return 0;
  uint64_t v = d->version;
  blk__auth_db__free_unpacked(d, NULL);
  return v;
}

/* Bring ma->db/rot up to the applied database.  0 or -errno. */
static int db_refresh(struct mon *mon)
{
  struct mon_auth *ma = mon->auth;
  const uint8_t *data;
  size_t len;
  mon_state_auth(mon->state, &data, &len);
  if (!len)
    return 0;
  Blk__AuthDb *d = blk__auth_db__unpack(NULL, len, data);
  if (!d) {
    log_err("auth", "undecodable auth database");
    return -EINVAL;
  }
  if (d->version == ma->version) {
    blk__auth_db__free_unpacked(d, NULL);
    return 0;
  }
  struct keyring *kr = keyring_new();
  char err[256];
  int r = kr ? keyring_parse(kr, d->keyring, strlen(d->keyring), "auth database", err,
                             sizeof err)
             : -ENOMEM;
  if (r < 0) {
    log_err("auth", "auth database version %llu does not parse: %s",
            (unsigned long long)d->version, kr ? err : "out of memory");
    keyring_free(kr);
    blk__auth_db__free_unpacked(d, NULL);
    return r;
  }
  struct auth_rotating rot = { 0 };
  for (size_t i = 0; i < d->n_secrets && i < 2; i++) {
    struct auth_secret *s = i == 0 ? &rot.cur : &rot.prev;
    if (d->secrets[i]->key.len != AUTH_KEY_LEN)
      continue;
    s->id = d->secrets[i]->id;
    memcpy(s->key, d->secrets[i]->key.data, AUTH_KEY_LEN);
    s->expires_ms = d->secrets[i]->expires_ms;
  }
  keyring_free(ma->db);
  ma->db = kr;
  auth_rotating_clear(&ma->rot);
  ma->rot = rot;
  auth_rotating_clear(&rot);
  ma->version = d->version;
  blk__auth_db__free_unpacked(d, NULL);
  return 0;
}

/* Pack the database (kr, rot) as the next version.  *out malloc'ed. */
static int db_pack(struct mon *mon, const struct keyring *kr, const struct auth_rotating *rot,
                   uint8_t **out, size_t *outlen)
{
  Blk__AuthDb d = BLK__AUTH_DB__INIT;
  Blk__ServiceSecret ss[2] = { BLK__SERVICE_SECRET__INIT, BLK__SERVICE_SECRET__INIT };
  Blk__ServiceSecret *sp[2];
  size_t n = 0;
  d.version = mon->auth->version + 1;
  d.keyring = keyring_format(kr);
  if (!d.keyring)
    return -ENOMEM;
  const struct auth_secret *s[2] = { &rot->cur, &rot->prev };
  for (int i = 0; i < 2; i++) {
    if (!s[i]->id)
      continue;
    ss[n].id = s[i]->id;
    ss[n].key.data = (uint8_t *)s[i]->key;
    ss[n].key.len = AUTH_KEY_LEN;
    ss[n].expires_ms = s[i]->expires_ms;
    sp[n] = &ss[n];
    n++;
  }
  d.secrets = sp;
  d.n_secrets = n;
  size_t len = blk__auth_db__get_packed_size(&d);
  uint8_t *buf = malloc(len);
  if (buf)
    blk__auth_db__pack(&d, buf);
  size_t kl = strlen(d.keyring);
  OPENSSL_cleanse(d.keyring, kl);
  free(d.keyring);
  if (!buf)
    return -ENOMEM;
  *out = buf;
  *outlen = len;
  return 0;
}

/* Propose (kr, rot) as the next database; answer (c, tid) with text when
 * applied (c NULL: nobody to answer). */
static int db_propose(struct mon *mon, const struct keyring *kr, const struct auth_rotating *rot,
                      msgr_conn *c, uint64_t tid, const char *text)
{
  uint8_t *buf;
  size_t len;
  int r = db_pack(mon, kr, rot, &buf, &len);
  if (r < 0)
    return r;
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  txn.auth.data = buf;
  txn.auth.len = len;
  r = c ? commands_propose_for(mon, c, tid, &txn, text) : commands_propose(mon, &txn);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return r;
}

/* ---- leader: bootstrap and rotation ---------------------------------------- */

static void auth_tick(evutil_socket_t fd, short what, void *arg)
{
  struct mon *mon = arg;
  struct mon_auth *ma = mon->auth;
  (void)fd;
  (void)what;
  db_refresh(mon);
  if (!raft_is_leader(mon->raft) || ma->p.mode == AUTH_MODE_NONE)
    return;
  /* only a leader whose state covers its term's entries decides, and only
   * once the initial map is in (before it every change is refused) */
  if (raft_applied_index(mon->raft) < raft_commit_index(mon->raft) ||
      mon_state_map(mon->state)->epoch == 0)
    return;
  int64_t now = util_now_ms();
  if (ma->proposed_ms && now - ma->proposed_ms < AUTH_PROPOSE_RETRY_MS)
    return;
  int64_t wall = util_wall_ms();
  if (ma->version == 0) {
    struct keyring *kr = keyring_new();
    struct auth_rotating rot = { 0 };
    if (!kr || auth_rotating_init(&rot, wall, ma->p.secret_ttl_ms) < 0) {
      keyring_free(kr);
      return;
    }
    char err[256];
    for (size_t i = 0; ma->boot && i < keyring_count(ma->boot); i++) {
      const struct keyring_entry *e = keyring_at(ma->boot, i);
      if (!strncmp(e->entity, "mon.", 4))
        continue;        /* the monitors' own key stays in their files */
      keyring_set_key(kr, e->entity, e->key);
      keyring_set_caps(kr, e->entity, "mon", e->caps_mon, err, sizeof err);
      keyring_set_caps(kr, e->entity, "osd", e->caps_osd, err, sizeof err);
    }
    int r = db_propose(mon, kr, &rot, NULL, 0, NULL);
    log_info("auth", "bootstrap: proposing the auth database with %zu entities (%s)",
             keyring_count(kr), r < 0 ? strerror(-r) : "ok");
    keyring_free(kr);
    auth_rotating_clear(&rot);
    ma->proposed_ms = now;
    return;
  }
  if (auth_rotating_due(&ma->rot, wall)) {
    struct auth_rotating rot = ma->rot;
    if (auth_rotating_rotate(&rot, wall, ma->p.secret_ttl_ms) == 0) {
      int r = db_propose(mon, ma->db, &rot, NULL, 0, NULL);
      log_info("auth", "rotating the OSD service secret to id %llu (%s)",
               (unsigned long long)rot.cur.id, r < 0 ? strerror(-r) : "proposed");
    }
    auth_rotating_clear(&rot);
    ma->proposed_ms = now;
  }
}

/* ---- monitor -> monitor: log in as "mon." ---------------------------------- */

struct peer_auth_op {
  msgr_conn *c;                    /* reference */
  struct auth_client ac;
};

static void peer_auth_done(struct peer_auth_op *op, int err)
{
  msgr_conn *c = op->c;
  auth_client_clear(&op->ac);
  free(op);
  msgr_conn_auth_done(c, err);
  msgr_conn_put(c);
}

static void on_peer_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct peer_auth_op *op = arg;
  char why[256] = "";
  if (err == 0 && (err = auth_client_finish(&op->ac, f->payload, f->payload_len, why,
                                            sizeof why)) < 0)
    log_warn("auth", "monitor %s refused our authentication as mon.: %s", msgr_conn_peer(op->c),
             why);
  if (err == 0)
    err = msgr_conn_set_protection(op->c, op->ac.mode, op->ac.conn_key, true);
  peer_auth_done(op, err);
}

static void on_peer_challenge(void *arg, int err, const struct msgr_frame *f)
{
  struct peer_auth_op *op = arg;
  uint8_t *out = NULL;
  size_t outlen = 0;
  char why[256] = "";
  if (err == 0)
    err = auth_client_proof(&op->ac, f->payload, f->payload_len, &out, &outlen, why,
                            sizeof why);
  if (err == 0)
    err = msgr_call(op->c, MSG_AUTH_PROOF, out, (uint32_t)outlen, NULL, 0, 3000, on_peer_reply,
                    op);
  free(out);
  if (err < 0)
    peer_auth_done(op, err);
}

static void peer_auth_start(void *ctx, msgr_conn *c)
{
  struct mon *mon = ctx;
  struct mon_auth *ma = mon->auth;
  struct peer_auth_op *op = calloc(1, sizeof *op);
  if (!op) {
    msgr_conn_auth_done(c, -ENOMEM);
    return;
  }
  op->c = msgr_conn_get(c);
  auth_client_init(&op->ac, "mon.", ma->mon_key, auth_modes_at_least(ma->p.mode));
  uint8_t *out = NULL;
  size_t outlen = 0;
  int r = auth_client_hello(&op->ac, &out, &outlen);
  if (r == 0)
    r = msgr_call(c, MSG_AUTH_HELLO, out, (uint32_t)outlen, NULL, 0, 3000, on_peer_challenge, op);
  free(out);
  if (r < 0)
    peer_auth_done(op, r);
}

int mon_auth_start(struct mon *mon)
{
  struct mon_auth *ma = calloc(1, sizeof *ma);
  if (!ma)
    return -ENOMEM;
  mon->auth = ma;
  char err[512];
  int r = auth_params_from_config(mon->cfg, &ma->p, err, sizeof err);
  if (r < 0) {
    log_err("auth", "%s", err);
    return r;
  }
  const char *path = config_get_str(mon->cfg, "keyring");
  if (*path) {
    bool insecure = false;
    char warn[512];
    r = keyring_load(path, &ma->boot, &insecure, warn, sizeof warn, err, sizeof err);
    if (r < 0) {
      if (ma->p.mode != AUTH_MODE_NONE)
        log_warn("auth", "cannot load the bootstrap keyring: %s", err);
      ma->boot = NULL;
    } else if (insecure) {
      log_warn("auth", "%s", warn);
    }
  }
  const struct keyring_entry *me = ma->boot ? keyring_find(ma->boot, "mon.") : NULL;
  if (ma->p.mode != AUTH_MODE_NONE && me) {
    memcpy(ma->mon_key, me->key, AUTH_KEY_LEN);
    ma->peer_auth = true;
    msgr_set_client_auth(mon->msgr, peer_auth_start, mon);
    msgr_set_require_auth(mon->msgr, true);
  } else if (ma->p.mode != AUTH_MODE_NONE) {
    log_warn("auth", "no [mon.] key in %s: monitor-to-monitor traffic is NOT authenticated",
             *path ? path : "(no keyring)");
  }
  ma->tick_ev = event_new(mon->base, -1, EV_PERSIST, auth_tick, mon);
  if (!ma->tick_ev)
    return -ENOMEM;
  struct timeval tv = { 0, AUTH_TICK_MS * 1000 };
  event_add(ma->tick_ev, &tv);
  log_info("auth", "auth_mode %s", auth_mode_name(ma->p.mode));
  return 0;
}

void mon_auth_stop(struct mon *mon)
{
  struct mon_auth *ma = mon->auth;
  if (!ma)
    return;
  if (ma->tick_ev)
    event_free(ma->tick_ev);
  while (ma->sessions)
    session_free(ma, ma->sessions);
  keyring_free(ma->boot);
  keyring_free(ma->db);
  auth_rotating_clear(&ma->rot);
  OPENSSL_cleanse(ma->mon_key, sizeof ma->mon_key);
  free(ma);
  mon->auth = NULL;
}

/* ---- sessions ------------------------------------------------------------------ */

static void session_free(struct mon_auth *ma, struct mon_session *s)
{
  if (!s)
    return;
  if (s->prev)
    s->prev->next = s->next;
  else
    ma->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  auth_server_clear(&s->as);
  caps_free(s->mon_caps);
  OPENSSL_cleanse(s->session_key, sizeof s->session_key);
  free(s);
}

void mon_auth_on_close(struct mon *mon, msgr_conn *c)
{
  if (mon->auth)
    session_free(mon->auth, msgr_conn_priv(c));
  msgr_conn_set_priv(c, NULL);
}

/* The keyring that authenticates entity: the database, or, before the
 * database exists (and always for "mon."), the keyring file. */
static const struct keyring *lookup_db(struct mon_auth *ma, const char *entity)
{
  if (ma->db && keyring_find(ma->db, entity))
    return ma->db;
  if (ma->boot && (ma->version == 0 || !strncmp(entity, "mon.", 4)))
    return ma->boot;
  return ma->db ? ma->db : ma->boot;
}

static void send_raw_reply(msgr_conn *c, const struct msgr_frame *f, const uint8_t *buf,
                           size_t len)
{
  msgr_send(c, f->type, FRAME_F_REPLY, f->tid, buf, (uint32_t)len, NULL, 0);
}

static void on_hello(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon_auth *ma = mon->auth;
  struct mon_session *s = msgr_conn_priv(c);
  if (s && s->done) {
    log_warn("auth", "%s: a second authentication on an authenticated connection; refused",
             msgr_conn_peer(c));
    msgr_conn_close(c);
    return;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      return;
    s->next = ma->sessions;
    if (ma->sessions)
      ma->sessions->prev = s;
    ma->sessions = s;
    msgr_conn_set_priv(c, s);
  }
  auth_server_clear(&s->as);
  auth_server_init(&s->as, ma->p.mode);
  uint8_t *out = NULL;
  size_t outlen = 0;
  char err[256] = "";
  int r = auth_server_challenge(&s->as, f->payload, f->payload_len, util_wall_ms(), &out,
                                &outlen, err, sizeof err);
  if (out)
    send_raw_reply(c, f, out, outlen);
  free(out);
  if (r < 0 && r != -EACCES)
    log_warn("auth", "hello from %s: %s", msgr_conn_peer(c), err);
}

static void on_proof(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon_auth *ma = mon->auth;
  struct mon_session *s = msgr_conn_priv(c);
  if (!s || s->done) {
    msgr_conn_close(c);
    return;
  }
  db_refresh(mon);
  uint8_t *out = NULL;
  size_t outlen = 0;
  char err[256] = "";
  const struct keyring *db = lookup_db(ma, s->as.entity);
  struct keyring *empty = NULL;
  if (!db)
    db = empty = keyring_new();
  int r = db ? auth_server_verify(&s->as, f->payload, f->payload_len, db, &ma->rot, &ma->p,
                                  util_wall_ms(), &out, &outlen, err, sizeof err)
             : -ENOMEM;
  if (out)
    send_raw_reply(c, f, out, outlen);
  free(out);
  if (r < 0) {
    keyring_free(empty);
    log_warn("auth", "authentication of %s from %s refused: %s", s->as.entity,
             msgr_conn_peer(c), err);
    return;   /* the gate refuses everything else on this connection */
  }
  const struct keyring_entry *e = keyring_find(db, s->as.entity);
  snprintf(s->entity, sizeof s->entity, "%s", s->as.entity);
  memcpy(s->session_key, s->as.session_key, AUTH_KEY_LEN);
  s->expires_ms = s->as.expires_ms;
  caps_free(s->mon_caps);
  s->mon_caps = NULL;
  if (e && e->caps_mon)
    s->mon_caps = caps_parse(CAPS_MON, e->caps_mon, err, sizeof err);
  keyring_free(empty);
  if (msgr_conn_protection(c) == AUTH_MODE_NONE &&
      (r = msgr_conn_set_protection(c, s->as.mode, s->as.conn_key, false)) < 0) {
    log_err("auth", "cannot protect the connection of %s: %s", s->entity, strerror(-r));
    msgr_conn_close(c);
    return;
  }
  s->done = true;
  log_info("auth", "%s authenticated from %s (%s)", s->entity, msgr_conn_peer(c),
           auth_mode_name(s->as.mode));
}

static bool allowed(const struct mon_session *s, unsigned need)
{
  return s && s->mon_caps && caps_allows(s->mon_caps, CAPS_MON, NULL, need);
}

static void on_get_secrets(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon_auth *ma = mon->auth;
  struct mon_session *s = msgr_conn_priv(c);
  db_refresh(mon);
  uint8_t *out = NULL;
  size_t outlen = 0;
  Blk__SealedSecrets ref = BLK__SEALED_SECRETS__INIT;
  if (!s || !s->done || !allowed(s, CAP_R | CAP_X) || strncmp(s->entity, "osd.", 4)) {
    log_warn("auth", "%s (%s) asked for the service secrets: refused", s ? s->entity : "?",
             msgr_conn_peer(c));
    ref.err = -EACCES;
    msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&ref, NULL, 0);
    return;
  }
  if (!ma->rot.cur.id) {
    ref.err = -EAGAIN;
    msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&ref, NULL, 0);
    return;
  }
  if (auth_secrets_seal(&ma->rot, s->session_key, &out, &outlen) < 0) {
    ref.err = -EIO;
    msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&ref, NULL, 0);
    return;
  }
  send_raw_reply(c, f, out, outlen);
  free(out);
}

/* ---- auth commands ------------------------------------------------------------- */

/* The keyring section of e (with its caps lines or, as Ceph's
 * get-or-create prints it, the key only); malloc'ed. */
static char *entry_text(const struct keyring_entry *e, bool with_caps)
{
  struct keyring *one = keyring_new();
  char err[64];
  if (!one)
    return NULL;
  keyring_set_key(one, e->entity, e->key);
  if (with_caps) {
    keyring_set_caps(one, e->entity, "mon", e->caps_mon, err, sizeof err);
    keyring_set_caps(one, e->entity, "osd", e->caps_osd, err, sizeof err);
  }
  char *t = keyring_format(one);
  keyring_free(one);
  return t;
}

static void on_auth_command(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon_auth *ma = mon->auth;
  struct mon_session *s = msgr_conn_priv(c);
  Blk__AuthCommand *cmd = blk__auth_command__unpack(NULL, f->payload_len, f->payload);
  char msg[600];
  if (!cmd) {
    commands_reply(c, f->tid, f->type, -EINVAL, "malformed auth command", NULL);
    return;
  }
  bool change = !strcmp(cmd->op, "get-or-create") || !strcmp(cmd->op, "caps") ||
                !strcmp(cmd->op, "del") || !strcmp(cmd->op, "import");
  bool read = !strcmp(cmd->op, "get") || !strcmp(cmd->op, "get-key") || !strcmp(cmd->op, "ls");
  if (!change && !read) {
    snprintf(msg, sizeof msg, "unknown auth command '%s'", cmd->op);
    commands_reply(c, f->tid, f->type, -EINVAL, msg, NULL);
    goto out;
  }
  if (ma->p.mode != AUTH_MODE_NONE && !allowed(s, (change ? CAP_W : CAP_R) | CAP_X)) {
    snprintf(msg, sizeof msg, "permission denied: %s may not %s auth entities (needs mon '%s')",
             s && s->done ? s->entity : "this client", change ? "change" : "read",
             change ? "allow rwx' or 'profile admin" : "allow rx' or 'profile admin");
    commands_reply(c, f->tid, f->type, -EACCES, msg, NULL);
    goto out;
  }
  if (!raft_is_leader(mon->raft)) {
    commands_reply(c, f->tid, f->type, -ENOTCONN, "not the leader", quorum_leader_addr(mon));
    goto out;
  }
  db_refresh(mon);
  if (ma->version == 0) {
    commands_reply(c, f->tid, f->type, -EAGAIN, "the auth database is being created; retry",
                   quorum_leader_addr(mon));
    goto out;
  }
  if (!strcmp(cmd->op, "ls")) {
    char *t = keyring_format(ma->db);
    /* a listing shows entities and caps, never keys */
    size_t n = 0, cap = t ? strlen(t) + 1 : 1;
    char *o = malloc(cap);
    if (t && o) {
      for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        if (!strstr(line, "key = "))
          n += (size_t)snprintf(o + n, cap - n, "%s%s\n", line[0] == '[' && n ? "\n" : "", line);
      o[n] = 0;
    }
    commands_reply(c, f->tid, f->type, o ? 0 : -ENOMEM, o ? o : "out of memory", NULL);
    if (t)
      OPENSSL_cleanse(t, strlen(t));
    free(t);
    free(o);
    goto out;
  }
  if (strcmp(cmd->op, "import") && !keyring_entity_valid(cmd->entity)) {
    snprintf(msg, sizeof msg, "invalid entity '%s' (TYPE.ID with TYPE client, osd or mon)",
             cmd->entity);
    commands_reply(c, f->tid, f->type, -EINVAL, msg, NULL);
    goto out;
  }
  const struct keyring_entry *e = strcmp(cmd->op, "import") ? keyring_find(ma->db, cmd->entity)
                                                           : NULL;
  if (!strcmp(cmd->op, "get") || !strcmp(cmd->op, "get-key")) {
    if (!e) {
      snprintf(msg, sizeof msg, "entity %s does not exist", cmd->entity);
      commands_reply(c, f->tid, f->type, -ENOENT, msg, NULL);
      goto out;
    }
    char b64[KEYRING_KEY_B64_LEN + 2];
    keyring_key_encode(e->key, b64);
    char *t = !strcmp(cmd->op, "get") ? entry_text(e, true) : NULL;
    commands_reply(c, f->tid, f->type, 0, t ? t : strcat(b64, "\n"), NULL);
    if (t)
      OPENSSL_cleanse(t, strlen(t));
    free(t);
    OPENSSL_cleanse(b64, sizeof b64);
    goto out;
  }
  /* changes: build the next database from a copy */
  char *cur = keyring_format(ma->db);
  struct keyring *kr = keyring_new();
  char err[512] = "";
  int r = cur && kr ? keyring_parse(kr, cur, strlen(cur), "auth database", err, sizeof err)
                    : -ENOMEM;
  if (cur)
    OPENSSL_cleanse(cur, strlen(cur));
  free(cur);
  char *text = NULL;
  if (r == 0 && !strcmp(cmd->op, "get-or-create")) {
    if (e) {
      /* existing: same caps (or none given) -> return it; other caps -> refuse */
      bool same = !cmd->has_caps ||
                  (!strcmp(e->caps_mon ? e->caps_mon : "", cmd->caps_mon) &&
                   !strcmp(e->caps_osd ? e->caps_osd : "", cmd->caps_osd));
      if (!same) {
        snprintf(msg, sizeof msg, "%s exists with other caps (mon '%s', osd '%s'); "
                 "use blkctl auth caps to change them", e->entity, e->caps_mon ? e->caps_mon : "",
                 e->caps_osd ? e->caps_osd : "");
        commands_reply(c, f->tid, f->type, -EEXIST, msg, NULL);
      } else {
        char *t = entry_text(e, false);
        commands_reply(c, f->tid, f->type, t ? 0 : -ENOMEM, t ? t : "out of memory", NULL);
        if (t)
          OPENSSL_cleanse(t, strlen(t));
        free(t);
      }
      keyring_free(kr);
      goto out;
    }
    uint8_t key[KEYRING_KEY_LEN];
    r = keyring_generate_key(key);
    if (r == 0)
      r = keyring_set_key(kr, cmd->entity, key);
    OPENSSL_cleanse(key, sizeof key);
  }
  if (r == 0 && (!strcmp(cmd->op, "get-or-create") || !strcmp(cmd->op, "caps"))) {
    if (!e && !strcmp(cmd->op, "caps")) {
      snprintf(err, sizeof err, "entity %s does not exist", cmd->entity);
      r = -ENOENT;
    } else {
      r = keyring_set_caps(kr, cmd->entity, "mon", cmd->caps_mon[0] ? cmd->caps_mon : NULL,
                           err, sizeof err);
      if (r == 0)
        r = keyring_set_caps(kr, cmd->entity, "osd", cmd->caps_osd[0] ? cmd->caps_osd : NULL,
                             err, sizeof err);
    }
  }
  if (r == 0 && !strcmp(cmd->op, "del")) {
    r = keyring_remove(kr, cmd->entity);
    if (r < 0)
      snprintf(err, sizeof err, "entity %s does not exist", cmd->entity);
  }
  if (r == 0 && !strcmp(cmd->op, "import")) {
    struct keyring *in = keyring_new();
    r = in ? keyring_parse(in, cmd->keyring, strlen(cmd->keyring), "import", err, sizeof err)
           : -ENOMEM;
    for (size_t i = 0; r == 0 && i < keyring_count(in); i++) {
      const struct keyring_entry *ie = keyring_at(in, i);
      r = keyring_set_key(kr, ie->entity, ie->key);
      if (r == 0)
        r = keyring_set_caps(kr, ie->entity, "mon", ie->caps_mon, err, sizeof err);
      if (r == 0)
        r = keyring_set_caps(kr, ie->entity, "osd", ie->caps_osd, err, sizeof err);
    }
    if (r == 0)
      snprintf(msg, sizeof msg, "imported %zu entities\n", keyring_count(in));
    keyring_free(in);
    text = r == 0 ? strdup(msg) : NULL;
  }
  if (r == 0 && !strcmp(cmd->op, "get-or-create"))
    text = entry_text(keyring_find(kr, cmd->entity), false);
  if (r == 0 && !strcmp(cmd->op, "caps"))
    snprintf(msg, sizeof msg, "updated caps for %s\n", cmd->entity), text = strdup(msg);
  if (r == 0 && !strcmp(cmd->op, "del"))
    snprintf(msg, sizeof msg, "removed %s\n", cmd->entity), text = strdup(msg);
  if (r == 0)
    r = db_propose(mon, kr, &ma->rot, c, f->tid, text);
  if (r < 0)
    commands_reply(c, f->tid, f->type, r, err[0] ? err : strerror(-r),
                   r == -ENOTCONN ? quorum_leader_addr(mon) : NULL);
  else
    log_info("auth", "%s: auth %s %s proposed", s && s->done ? s->entity : "(no auth)", cmd->op,
             cmd->entity);
  if (text)
    OPENSSL_cleanse(text, strlen(text));
  free(text);
  keyring_free(kr);
out:
  blk__auth_command__free_unpacked(cmd, NULL);
}

/* ---- the gate ------------------------------------------------------------------- */

static unsigned frame_need(const struct msgr_frame *f, bool *osd_change)
{
  *osd_change = false;
  switch (f->type) {
  case MSG_MON_SUBSCRIBE:
    return CAP_R;
  case MSG_OSD_BEACON:
  case MSG_OSD_FAILURE:
  case MSG_PG_STATS:
    return CAP_X;
  case MSG_MON_COMMAND: {
    Blk__MonCommand *cmd = blk__mon_command__unpack(NULL, f->payload_len, f->payload);
    if (!cmd)
      return CAP_R;          /* commands.c answers the malformed command */
    unsigned need = CAP_R;
    if (cmd->txn) {
      need = CAP_W;
      *osd_change = cmd->txn->osd_boot || cmd->txn->osd_mark;
    }
    blk__mon_command__free_unpacked(cmd, NULL);
    return need;
  }
  default:
    return CAP_R;
  }
}

bool mon_auth_gate(struct mon *mon, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon_auth *ma = mon->auth;
  switch (f->type) {
  case MSG_AUTH_HELLO:
    if (ma->p.mode != AUTH_MODE_NONE)
      on_hello(mon, c, f);
    return false;
  case MSG_AUTH_PROOF:
    if (ma->p.mode != AUTH_MODE_NONE)
      on_proof(mon, c, f);
    return false;
  case MSG_AUTH_GET_SECRETS:
    if (ma->p.mode != AUTH_MODE_NONE)
      on_get_secrets(mon, c, f);
    return false;
  case MSG_RAFT: {
    if (ma->p.mode == AUTH_MODE_NONE || !ma->peer_auth)
      return true;           /* no monitor key configured (logged at start) */
    struct mon_session *s = msgr_conn_priv(c);
    if (s && s->done && !strcmp(s->entity, "mon.") &&
        msgr_conn_protection(c) != AUTH_MODE_NONE)
      return true;
    log_warn("auth", "%s: Raft message from %s; closing", msgr_conn_peer(c),
             s && s->done ? s->entity : "an unauthenticated peer");
    msgr_conn_close(c);
    return false;
  }
  default:
    break;
  }
  if (ma->p.mode == AUTH_MODE_NONE) {
    if (f->type == MSG_MON_AUTH_COMMAND) {
      on_auth_command(mon, c, f);
      return false;
    }
    return true;
  }
  struct mon_session *s = msgr_conn_priv(c);
  if (!s || !s->done || msgr_conn_protection(c) == AUTH_MODE_NONE) {
    log_warn("auth", "%s: frame type %u before authentication; closing", msgr_conn_peer(c),
             f->type);
    msgr_conn_close(c);
    return false;
  }
  if (s->expires_ms && util_wall_ms() > s->expires_ms) {
    log_info("auth", "%s: session of %s expired; closing", msgr_conn_peer(c), s->entity);
    msgr_conn_close(c);
    return false;
  }
  if (f->type == MSG_MON_AUTH_COMMAND) {
    on_auth_command(mon, c, f);
    return false;
  }
  bool osd_change;
  unsigned need = frame_need(f, &osd_change);
  if (allowed(s, need) ||
      (osd_change && !strncmp(s->entity, "osd.", 4) && allowed(s, CAP_R | CAP_X)))
    return true;
  char msg[300];
  snprintf(msg, sizeof msg, "permission denied: %s lacks mon '%s' for this request",
           s->entity, need == CAP_R ? "allow r" : need == CAP_W ? "allow w" : "allow x");
  log_info("auth", "%s (%s): %s", s->entity, msgr_conn_peer(c), msg);
  if (f->flags & FRAME_F_ONEWAY)
    return false;
  commands_reply(c, f->tid, f->type, -EACCES, msg, NULL);
  return false;
}
