/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: see monc.h. */
#include "client/monc.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/keyring.h"
#include "common/log.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "proto/auth.pb-c.h"

struct monc_req {
  struct monc_req *prev, *next;
  monc *mc;
  uint16_t type;
  const ProtobufCMessageDescriptor *desc;
  uint8_t *buf;
  size_t len;
  int64_t deadline;
  size_t cur;                     /* monitor tried now */
  struct event *retry_ev;
  bool in_call;                   /* a msgr call is outstanding */
  monc_reply_fn cb;
  void *arg;
};

struct monc {
  struct event_base *base;
  struct monc_req *reqs;          /* asynchronous calls in progress */
  /* subscription */
  monc_map_fn sub_cb;
  void *sub_arg;
  struct cluster_map *map;
  size_t sub_cur;
  bool sub_inflight, sub_want_full;
  uint64_t want_epoch;            /* a peer showed this epoch: get it */
  struct event *sub_ev;
  msgr *msgr;
  struct cm_mon mons[CM_MAX_MONS];
  size_t n_mons;
  msgr_conn *conns[CM_MAX_MONS];
  char why[CM_MAX_MONS][160];     /* last failure per monitor */
  size_t cur;
  uint64_t req_seq;
  char nonce[20];
  /* auth (docs/auth.md §8): one exchange per monitor TCP connection */
  struct auth_params ap;
  char entity[KEYRING_MAX_ENTITY];
  uint8_t key[AUTH_KEY_LEN];
  bool have_key, renew;
  char auth_why[400];             /* why the last authentication failed */
  bool refused;                   /* a monitor refused us (or no key) */
  struct auth_creds creds;        /* the newest ticket (for OSDs) */
  bool have_creds;
  uint8_t sess_key[CM_MAX_MONS][AUTH_KEY_LEN];   /* per monitor connection */
  bool sess_ok[CM_MAX_MONS];
  struct event *renew_ev;
};

static void monc_on_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f);
static void monc_on_close(void *ctx, msgr_conn *c, int err);
static int monc_auth_init(monc *mc, const config *cfg, char *err, size_t errlen);
static void renew_cb(evutil_socket_t fd, short what, void *arg);
static void monc_auth_start(void *ctx, msgr_conn *c);

monc *monc_new(struct event_base *base, const config *cfg, char *err, size_t errlen)
{
  monc *mc = calloc(1, sizeof *mc);
  if (!mc) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mc->base = base;
  if (util_monmap_from_config(cfg, mc->mons, &mc->n_mons, err, errlen) < 0) {
    free(mc);
    return NULL;
  }
  struct frame_limits lim = {
    (uint32_t)config_get_int(cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(cfg, "msgr_max_data"),
  };
  static const struct msgr_ops ops = { .on_frame = monc_on_frame, .on_close = monc_on_close };
  mc->msgr = msgr_new(base, &lim, &ops, mc);
  if (!mc->msgr) {
    snprintf(err, errlen, "out of memory");
    free(mc);
    return NULL;
  }
  msgr_set_timeouts(mc->msgr, (int)config_get_int(cfg, "msgr_connect_timeout"), 200);
  if (monc_auth_init(mc, cfg, err, errlen) < 0) {
    monc_free(mc);
    return NULL;
  }
  for (size_t i = 0; i < mc->n_mons; i++) {
    mc->conns[i] = msgr_connect(mc->msgr, mc->mons[i].addr);
    if (!mc->conns[i]) {
      snprintf(err, errlen, "invalid monitor address '%s'", mc->mons[i].addr);
      monc_free(mc);
      return NULL;
    }
  }
  unsigned char r[8];
  RAND_bytes(r, sizeof r);
  snprintf(mc->nonce, sizeof mc->nonce, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
           r[3], r[4], r[5], r[6], r[7]);
  mc->cur = (size_t)r[0] % mc->n_mons;
  return mc;
}

static void req_finish(struct monc_req *rq, int err, const Blk__MonReply *rep);

void monc_free(monc *mc)
{
  if (!mc)
    return;
  /* calls in flight fail with -ECANCELED from msgr_free (their requests
   * finish there); the others are finished here */
  for (size_t i = 0; i < mc->n_mons; i++)
    if (mc->conns[i])
      msgr_conn_put(mc->conns[i]);
  msgr_free(mc->msgr);
  while (mc->reqs)
    req_finish(mc->reqs, -ECANCELED, NULL);
  if (mc->sub_ev)
    event_free(mc->sub_ev);
  if (mc->renew_ev)
    event_free(mc->renew_ev);
  clustermap_free(mc->map);
  auth_creds_clear(&mc->creds);
  OPENSSL_cleanse(mc->key, sizeof mc->key);
  OPENSSL_cleanse(mc->sess_key, sizeof mc->sess_key);
  free(mc);
}

static size_t find_mon(const monc *mc, const char *addr)
{
  for (size_t i = 0; i < mc->n_mons; i++)
    if (!strcmp(mc->mons[i].addr, addr))
      return i;
  return SIZE_MAX;
}

static void sleep_loop(struct event_base *base, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
}

int monc_command(monc *mc, Blk__MonCommand *cmd, int timeout_ms, Blk__MonReply **reply,
                 char *err, size_t errlen)
{
  char req_id[64];
  if (cmd->txn && (!cmd->txn->req_id || !cmd->txn->req_id[0])) {
    snprintf(req_id, sizeof req_id, "%s-%llu", mc->nonce, (unsigned long long)++mc->req_seq);
    cmd->txn->req_id = req_id;
  }
  for (size_t i = 0; i < mc->n_mons; i++)
    mc->why[i][0] = 0;
  int64_t deadline = util_now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      break;
    size_t i = mc->cur;
    int attempt = left < 2000 ? (int)left : 2000;
    struct msgr_frame *f = NULL;
    int r = msgr_call_sync(mc->conns[i], MSG_MON_COMMAND, (const ProtobufCMessage *)cmd,
                           NULL, 0, attempt, &f);
    if (r == -EACCES || r == -EKEYREJECTED || r == -ENOKEY) {
      snprintf(err, errlen, "authentication as %s failed: %s", mc->entity,
               mc->auth_why[0] ? mc->auth_why : strerror(-r));
      return -EACCES;
    }
    if (r < 0) {
      int why = msgr_conn_last_error(mc->conns[i]);
      snprintf(mc->why[i], sizeof mc->why[i], "%s",
               r == -ETIMEDOUT ? "no answer (timed out)"
                               : strerror(why ? -why : -r));
      mc->cur = (i + 1) % mc->n_mons;
      if (mc->cur == 0 || mc->n_mons == 1)
        sleep_loop(mc->base, 100);
      continue;
    }
    Blk__MonReply *rep = blk__mon_reply__unpack(NULL, f->payload_len, f->payload);
    msgr_frame_free(f);
    if (!rep) {
      snprintf(mc->why[i], sizeof mc->why[i], "sent an undecodable reply");
      mc->cur = (i + 1) % mc->n_mons;
      continue;
    }
    if (rep->err == -ENOTCONN || rep->err == -EAGAIN) {
      size_t l = rep->leader_addr[0] ? find_mon(mc, rep->leader_addr) : SIZE_MAX;
      snprintf(mc->why[i], sizeof mc->why[i], "%s",
               rep->err == -EAGAIN ? "leadership changing" : "is not the leader and knows none");
      if (l != SIZE_MAX && l != i) {
        mc->cur = l;
      } else {
        /* no leader known yet (election running): wait a little */
        if (l == SIZE_MAX)
          mc->cur = (i + 1) % mc->n_mons;
        sleep_loop(mc->base, 50);
      }
      blk__mon_reply__free_unpacked(rep, NULL);
      continue;
    }
    *reply = rep;
    return 0;
  }
  size_t n = (size_t)snprintf(err, errlen, "no monitor quorum answered within %d ms:", timeout_ms);
  for (size_t i = 0; i < mc->n_mons && n < errlen; i++)
    n += (size_t)snprintf(err + n, errlen - n, " mon.%s (%s): %s;", mc->mons[i].name,
                          mc->mons[i].addr, mc->why[i][0] ? mc->why[i] : "not tried");
  return -ETIMEDOUT;
}

/* ---- asynchronous calls ------------------------------------------------- */

static void req_attempt(struct monc_req *rq);

static void req_finish(struct monc_req *rq, int err, const Blk__MonReply *rep)
{
  monc *mc = rq->mc;
  if (rq->prev)
    rq->prev->next = rq->next;
  else
    mc->reqs = rq->next;
  if (rq->next)
    rq->next->prev = rq->prev;
  if (rq->retry_ev)
    event_free(rq->retry_ev);
  rq->cb(rq->arg, err, rep);
  free(rq->buf);
  free(rq);
}

static void req_retry_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  req_attempt(arg);
}

static void req_later(struct monc_req *rq, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  event_add(rq->retry_ev, &tv);
}

static void req_on_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct monc_req *rq = arg;
  monc *mc = rq->mc;
  rq->in_call = false;
  if (err == -ECANCELED || err == -EACCES) {
    req_finish(rq, err, NULL);
    return;
  }
  if (err < 0) {
    /* The next call starts at the next monitor too: a short call (a
     * beacon, a failure report) spends its whole time on this one, and
     * retried from the same unreachable leader every later call would
     * time out the same way (a cut-off leader: failure reports never
     * reached the new one, test-osd-lease). */
    if (mc->cur == rq->cur)
      mc->cur = (rq->cur + 1) % mc->n_mons;
    rq->cur = (rq->cur + 1) % mc->n_mons;
    req_later(rq, rq->cur == 0 || mc->n_mons == 1 ? 100 : 0);
    return;
  }
  Blk__MonReply *rep = blk__mon_reply__unpack(NULL, f->payload_len, f->payload);
  if (!rep) {
    rq->cur = (rq->cur + 1) % mc->n_mons;
    req_later(rq, 50);
    return;
  }
  if (rep->err == -ENOTCONN || rep->err == -EAGAIN) {
    size_t l = rep->leader_addr[0] ? find_mon(mc, rep->leader_addr) : SIZE_MAX;
    if (l != SIZE_MAX && l != rq->cur) {
      rq->cur = l;
      req_later(rq, 0);
    } else {
      if (l == SIZE_MAX)
        rq->cur = (rq->cur + 1) % mc->n_mons;
      req_later(rq, 50);
    }
    blk__mon_reply__free_unpacked(rep, NULL);
    return;
  }
  mc->cur = rq->cur;    /* remember the leader for the next call */
  req_finish(rq, 0, rep);
  blk__mon_reply__free_unpacked(rep, NULL);
}

static void req_attempt(struct monc_req *rq)
{
  monc *mc = rq->mc;
  int64_t left = rq->deadline - util_now_ms();
  if (left <= 0) {
    req_finish(rq, -ETIMEDOUT, NULL);
    return;
  }
  ProtobufCMessage *msg = protobuf_c_message_unpack(rq->desc, NULL, rq->len, rq->buf);
  if (!msg) {
    req_finish(rq, -EINVAL, NULL);
    return;
  }
  int attempt = left < 2000 ? (int)left : 2000;
  int r = msgr_call_pb(mc->conns[rq->cur], rq->type, msg, NULL, 0, attempt, req_on_reply, rq);
  protobuf_c_message_free_unpacked(msg, NULL);
  if (r < 0) {
    rq->cur = (rq->cur + 1) % mc->n_mons;
    req_later(rq, 100);
    return;
  }
  rq->in_call = true;
}

int monc_call_async(monc *mc, uint16_t type, const ProtobufCMessage *msg, int timeout_ms,
                    monc_reply_fn cb, void *arg)
{
  struct monc_req *rq = calloc(1, sizeof *rq);
  if (!rq)
    return -ENOMEM;
  rq->len = protobuf_c_message_get_packed_size(msg);
  rq->buf = malloc(rq->len ? rq->len : 1);
  rq->retry_ev = evtimer_new(mc->base, req_retry_cb, rq);
  if (!rq->buf || !rq->retry_ev) {
    if (rq->retry_ev)
      event_free(rq->retry_ev);
    free(rq->buf);
    free(rq);
    return -ENOMEM;
  }
  protobuf_c_message_pack(msg, rq->buf);
  rq->mc = mc;
  rq->type = type;
  rq->desc = msg->descriptor;
  rq->deadline = util_now_ms() + timeout_ms;
  rq->cur = mc->cur;
  rq->cb = cb;
  rq->arg = arg;
  rq->next = mc->reqs;
  if (mc->reqs)
    mc->reqs->prev = rq;
  mc->reqs = rq;
  req_later(rq, 0);    /* never call back from inside this call */
  return 0;
}

int monc_command_async(monc *mc, Blk__MonCommand *cmd, int timeout_ms, monc_reply_fn cb,
                       void *arg)
{
  char req_id[64];
  char *saved = NULL;
  bool set = false;
  if (cmd->txn && (!cmd->txn->req_id || !cmd->txn->req_id[0])) {
    snprintf(req_id, sizeof req_id, "%s-%llu", mc->nonce, (unsigned long long)++mc->req_seq);
    saved = cmd->txn->req_id;
    cmd->txn->req_id = req_id;
    set = true;
  }
  int r = monc_call_async(mc, MSG_MON_COMMAND, (const ProtobufCMessage *)cmd, timeout_ms, cb,
                          arg);
  if (set)
    cmd->txn->req_id = saved;
  return r;
}

/* ---- map subscription ---------------------------------------------------- */

#define MONC_SUB_RENEW_MS 3000

static void sub_send(monc *mc);

static void sub_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  sub_send(arg);
}

static void sub_arm(monc *mc, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  event_add(mc->sub_ev, &tv);
}

static void sub_on_reply(void *arg, int err, const struct msgr_frame *f)
{
  monc *mc = arg;
  mc->sub_inflight = false;
  if (err == -ECANCELED)
    return;
  Blk__MonReply *rep = err ? NULL : blk__mon_reply__unpack(NULL, f->payload_len, f->payload);
  if (!rep || rep->err) {
    log_debug("monc", "subscription to mon.%s failed: %s", mc->mons[mc->sub_cur].name,
              err ? strerror(-err) : "bad reply");
    mc->sub_cur = (mc->sub_cur + 1) % mc->n_mons;
    sub_arm(mc, 100);
  } else if (mc->want_epoch > rep->epoch) {
    /* this monitor is behind what a peer has seen: try the next one */
    log_info("monc", "mon.%s is at epoch %llu, a peer has %llu: subscribing elsewhere",
             mc->mons[mc->sub_cur].name, (unsigned long long)rep->epoch,
             (unsigned long long)mc->want_epoch);
    mc->sub_cur = (mc->sub_cur + 1) % mc->n_mons;
    sub_arm(mc, 200);
  } else {
    sub_arm(mc, MONC_SUB_RENEW_MS);
  }
  if (rep)
    blk__mon_reply__free_unpacked(rep, NULL);
}

static void sub_send(monc *mc)
{
  if (mc->sub_inflight) {
    sub_arm(mc, MONC_SUB_RENEW_MS);
    return;
  }
  Blk__Subscribe s = BLK__SUBSCRIBE__INIT;
  s.have_epoch = mc->map && !mc->sub_want_full ? mc->map->epoch : 0;
  int r = msgr_call_pb(mc->conns[mc->sub_cur], MSG_MON_SUBSCRIBE, (const ProtobufCMessage *)&s,
                       NULL, 0, 2000, sub_on_reply, mc);
  if (r < 0) {
    mc->sub_cur = (mc->sub_cur + 1) % mc->n_mons;
    sub_arm(mc, 100);
    return;
  }
  mc->sub_inflight = true;
}

static void sub_publish(monc *mc, struct cluster_map *nm)
{
  struct cluster_map *old = mc->map;
  mc->map = nm;
  mc->sub_want_full = false;
  if (nm->epoch >= mc->want_epoch)
    mc->want_epoch = 0;
  if (mc->sub_cb)
    mc->sub_cb(mc->sub_arg, nm, old);
  clustermap_free(old);
}

static void sub_on_update(monc *mc, const struct msgr_frame *f)
{
  Blk__MapUpdate *u = blk__map_update__unpack(NULL, f->payload_len, f->payload);
  if (!u) {
    log_warn("monc", "undecodable map update; asking for a full map");
    goto want_full;
  }
  if (u->full) {
    struct cluster_map *nm;
    if (clustermap_from_pb(u->full, &nm) < 0) {
      log_warn("monc", "invalid full map");
      blk__map_update__free_unpacked(u, NULL);
      goto want_full;
    }
    if (!mc->map || nm->epoch > mc->map->epoch)
      sub_publish(mc, nm);
    else
      clustermap_free(nm);
    blk__map_update__free_unpacked(u, NULL);
    return;
  }
  if (!u->n_txns || (mc->map && u->to <= mc->map->epoch)) {
    blk__map_update__free_unpacked(u, NULL);
    return;   /* nothing new */
  }
  if (!mc->map || u->from != mc->map->epoch) {
    log_info("monc", "map gap (have %llu, update from %llu); asking for a full map",
             mc->map ? (unsigned long long)mc->map->epoch : 0ULL, (unsigned long long)u->from);
    blk__map_update__free_unpacked(u, NULL);
    goto want_full;
  }
  struct cluster_map *nm = clustermap_dup(mc->map);
  if (!nm) {
    blk__map_update__free_unpacked(u, NULL);
    goto want_full;
  }
  char err[160];
  for (size_t i = 0; i < u->n_txns; i++) {
    int r = clustermap_apply(nm, u->txns[i], err, sizeof err);
    if (r != 1) {
      log_warn("monc", "map txn %zu of update %llu..%llu does not apply (%d: %s); asking for a full map",
               i, (unsigned long long)u->from, (unsigned long long)u->to, r, err);
      clustermap_free(nm);
      blk__map_update__free_unpacked(u, NULL);
      goto want_full;
    }
  }
  blk__map_update__free_unpacked(u, NULL);
  sub_publish(mc, nm);
  return;
want_full:
  mc->sub_want_full = true;
  sub_arm(mc, 0);
}

static void monc_on_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  monc *mc = ctx;
  (void)c;
  if (f->type == MSG_MAP_UPDATE && mc->sub_ev)
    sub_on_update(mc, f);
}

static void monc_on_close(void *ctx, msgr_conn *c, int err)
{
  monc *mc = ctx;
  (void)err;
  for (size_t i = 0; i < mc->n_mons; i++)
    if (mc->conns[i] == c)
      mc->sess_ok[i] = false;
  if (!mc->sub_ev || c != mc->conns[mc->sub_cur])
    return;
  /* the monitor we subscribed to went away: resubscribe elsewhere */
  mc->sub_cur = (mc->sub_cur + 1) % mc->n_mons;
  if (!mc->sub_inflight)
    sub_arm(mc, 50);
}

int monc_subscribe(monc *mc, monc_map_fn cb, void *arg)
{
  if (mc->sub_ev)
    return -EBUSY;
  mc->sub_ev = evtimer_new(mc->base, sub_timer_cb, mc);
  if (!mc->sub_ev)
    return -ENOMEM;
  mc->sub_cb = cb;
  mc->sub_arg = arg;
  mc->sub_cur = mc->cur;
  sub_arm(mc, 0);
  return 0;
}

const struct cluster_map *monc_map(const monc *mc)
{
  return mc->map;
}

void monc_renew(monc *mc)
{
  if (mc->sub_ev && !mc->sub_inflight)
    sub_arm(mc, 0);
}

void monc_want_epoch(monc *mc, uint64_t epoch)
{
  if (mc->map && epoch <= mc->map->epoch)
    return;
  if (epoch > mc->want_epoch)
    mc->want_epoch = epoch;
  monc_renew(mc);
}

/* ---- authentication (docs/auth.md §4.1, §8) ------------------------------- */

static int monc_auth_init(monc *mc, const config *cfg, char *err, size_t errlen)
{
  if (auth_params_from_config(cfg, &mc->ap, err, errlen) < 0)
    return -EINVAL;
  mc->renew = config_get_bool(cfg, "auth_ticket_renew");
  const char *name = config_get_str(cfg, "name");
  snprintf(mc->entity, sizeof mc->entity, "%s", *name ? name : "client.admin");
  if (mc->ap.mode == AUTH_MODE_NONE)
    return 0;
  if (!keyring_entity_valid(mc->entity)) {
    snprintf(err, errlen, "invalid name '%s' (TYPE.ID, e.g. client.admin)", mc->entity);
    return -EINVAL;
  }
  mc->renew_ev = evtimer_new(mc->base, renew_cb, mc);
  msgr_set_client_auth(mc->msgr, monc_auth_start, mc);
  bool insecure = false;
  char warn[512] = "", e2[512] = "";
  const char *key = config_get_str(cfg, "key");
  const char *key_file = config_get_str(cfg, "key_file");
  const char *keyring = config_get_str(cfg, "keyring");
  if (*key) {
    if (keyring_key_decode(key, strlen(key), mc->key) < 0) {
      snprintf(err, errlen, "the key given for %s is not a base64 256-bit key", mc->entity);
      return -EINVAL;
    }
    mc->have_key = true;
  } else if (*key_file) {
    if (keyring_read_key_file(key_file, mc->key, &insecure, warn, sizeof warn, e2,
                              sizeof e2) < 0) {
      snprintf(mc->auth_why, sizeof mc->auth_why, "no key for %s: %s", mc->entity, e2);
    } else {
      mc->have_key = true;
    }
  } else if (*keyring) {
    struct keyring *kr = NULL;
    if (keyring_load(keyring, &kr, &insecure, warn, sizeof warn, e2, sizeof e2) < 0) {
      snprintf(mc->auth_why, sizeof mc->auth_why, "no key for %s: %s", mc->entity, e2);
    } else {
      const struct keyring_entry *e = keyring_find(kr, mc->entity);
      if (e) {
        memcpy(mc->key, e->key, AUTH_KEY_LEN);
        mc->have_key = true;
      } else {
        snprintf(mc->auth_why, sizeof mc->auth_why, "no key for %s in keyring %s", mc->entity,
                 keyring);
      }
      keyring_free(kr);
    }
  } else {
    snprintf(mc->auth_why, sizeof mc->auth_why,
             "no key for %s: set keyring, key_file or key (auth_mode is %s)", mc->entity,
             auth_mode_name(mc->ap.mode));
  }
  if (insecure)
    log_warn("monc", "%s", warn);
  return 0;
}

struct mon_auth_op {
  monc *mc;
  msgr_conn *c;                   /* reference */
  size_t idx;
  struct auth_client ac;
};

static void auth_op_free(struct mon_auth_op *op)
{
  auth_client_clear(&op->ac);
  msgr_conn_put(op->c);
  free(op);
}

static void auth_fail(struct mon_auth_op *op, int err)
{
  msgr_conn *c = msgr_conn_get(op->c);
  auth_op_free(op);
  msgr_conn_auth_done(c, err);
  msgr_conn_put(c);
}

static void renew_cb(evutil_socket_t fd, short what, void *arg)
{
  monc *mc = arg;
  (void)fd;
  (void)what;
  /* a new exchange on every monitor connection: close them; the next
   * request (the subscription renews at once) authenticates again */
  log_debug("monc", "renewing the ticket of %s", mc->entity);
  for (size_t i = 0; i < mc->n_mons; i++)
    if (msgr_conn_protection(mc->conns[i]) != AUTH_MODE_NONE)
      msgr_conn_close(mc->conns[i]);
  monc_renew(mc);
}

static void on_auth_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct mon_auth_op *op = arg;
  monc *mc = op->mc;
  if (err < 0) {
    auth_fail(op, err == -ETIMEDOUT ? -ETIMEDOUT : err);
    return;
  }
  char why[256] = "";
  int r = auth_client_finish(&op->ac, f->payload, f->payload_len, why, sizeof why);
  if (r < 0) {
    snprintf(mc->auth_why, sizeof mc->auth_why, "%s (%s)",
             why[0] ? why : strerror(-r), msgr_conn_peer(op->c));
    log_info("monc", "authentication as %s to %s failed: %s", mc->entity,
             msgr_conn_peer(op->c), mc->auth_why);
    mc->refused = true;
    auth_fail(op, -EACCES);
    return;
  }
  r = msgr_conn_set_protection(op->c, op->ac.mode, op->ac.conn_key, true);
  if (r < 0) {
    auth_fail(op, r);
    return;
  }
  if (op->idx != SIZE_MAX) {
    memcpy(mc->sess_key[op->idx], op->ac.creds.session_key, AUTH_KEY_LEN);
    mc->sess_ok[op->idx] = true;
  }
  if (op->ac.creds.ticket) {
    auth_creds_clear(&mc->creds);
    mc->creds = op->ac.creds;           /* take the ticket */
    memset(&op->ac.creds, 0, sizeof op->ac.creds);
    mc->have_creds = true;
    if (mc->renew && mc->renew_ev) {
      int64_t left = mc->creds.expires_ms - util_wall_ms();
      int64_t in = left * 3 / 4;
      if (in < 100)
        in = 100;
      event_del(mc->renew_ev);
      struct timeval tv = { (time_t)(in / 1000), (suseconds_t)(in % 1000) * 1000 };
      evtimer_add(mc->renew_ev, &tv);
    }
  }
  mc->auth_why[0] = 0;
  mc->refused = false;
  log_debug("monc", "authenticated as %s to %s (%s)", mc->entity, msgr_conn_peer(op->c),
            auth_mode_name(op->ac.mode));
  msgr_conn *c = msgr_conn_get(op->c);
  auth_op_free(op);
  msgr_conn_auth_done(c, 0);
  msgr_conn_put(c);
}

static void on_challenge(void *arg, int err, const struct msgr_frame *f)
{
  struct mon_auth_op *op = arg;
  monc *mc = op->mc;
  if (err < 0) {
    auth_fail(op, err);
    return;
  }
  uint8_t *out = NULL;
  size_t outlen = 0;
  char why[256] = "";
  int r = auth_client_proof(&op->ac, f->payload, f->payload_len, &out, &outlen, why, sizeof why);
  if (r < 0) {
    snprintf(mc->auth_why, sizeof mc->auth_why, "%s", why[0] ? why : strerror(-r));
    auth_fail(op, -EACCES);
    return;
  }
  r = msgr_call(op->c, MSG_AUTH_PROOF, out, (uint32_t)outlen, NULL, 0, 5000, on_auth_reply, op);
  free(out);
  if (r < 0)
    auth_fail(op, r);
}

void monc_mon_auth_start(void *ctx, msgr_conn *c)
{
  monc_auth_start(ctx, c);
}

static void monc_auth_start(void *ctx, msgr_conn *c)
{
  monc *mc = ctx;
  size_t idx = 0;
  while (idx < mc->n_mons && mc->conns[idx] != c)
    idx++;
  if (idx == mc->n_mons)
    idx = SIZE_MAX;          /* another messenger's connection (monc_mon_auth_start) */
  if (!mc->have_key) {
    mc->refused = true;
    msgr_conn_auth_done(c, -EACCES);
    return;
  }
  struct mon_auth_op *op = calloc(1, sizeof *op);
  if (!op) {
    msgr_conn_auth_done(c, -ENOMEM);
    return;
  }
  op->mc = mc;
  op->c = msgr_conn_get(c);
  op->idx = idx;
  auth_client_init(&op->ac, mc->entity, mc->key, auth_modes_at_least(mc->ap.mode));
  uint8_t *out = NULL;
  size_t outlen = 0;
  int r = auth_client_hello(&op->ac, &out, &outlen);
  if (r == 0)
    r = msgr_call(c, MSG_AUTH_HELLO, out, (uint32_t)outlen, NULL, 0, 5000, on_challenge, op);
  free(out);
  if (r < 0)
    auth_fail(op, r);
}

const char *monc_auth_error(const monc *mc)
{
  return mc->auth_why;
}

enum auth_mode monc_auth_mode(const monc *mc)
{
  return mc->ap.mode;
}

bool monc_auth_refused(const monc *mc)
{
  return mc->refused;
}

const char *monc_entity(const monc *mc)
{
  return mc->entity;
}

bool monc_renew_ticket(monc *mc)
{
  if (mc->ap.mode == AUTH_MODE_NONE || !mc->renew_ev || !mc->renew)
    return false;
  event_del(mc->renew_ev);
  struct timeval tv = { 0, 0 };
  evtimer_add(mc->renew_ev, &tv);
  return true;
}

/* ---- OSD connections: the authorizer (§4.2) ---------------------------------- */

struct osd_auth_op {
  monc *mc;
  msgr_conn *c;                   /* reference */
  struct auth_authorizer az;
};

static void osd_auth_done(struct osd_auth_op *op, int err)
{
  msgr_conn *c = op->c;
  auth_authorizer_clear(&op->az);
  free(op);
  msgr_conn_auth_done(c, err);
  msgr_conn_put(c);
}

static void on_authorizer_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct osd_auth_op *op = arg;
  monc *mc = op->mc;
  if (err < 0) {
    osd_auth_done(op, err);
    return;
  }
  Blk__AuthorizerReply *rep = blk__authorizer_reply__unpack(NULL, f->payload_len, f->payload);
  int rerr = rep ? rep->err : -EPROTO;
  if (rep && rerr < 0)
    snprintf(mc->auth_why, sizeof mc->auth_why, "%s refused by %s: %s", mc->entity,
             msgr_conn_peer(op->c), rep->message);
  if (rep)
    blk__authorizer_reply__free_unpacked(rep, NULL);
  if (rerr == -EKEYEXPIRED || rerr == -EAGAIN) {
    log_info("monc", "%s: authorizer not accepted yet (%s); retrying", msgr_conn_peer(op->c),
             mc->auth_why);
    /* our ticket is too old for the OSD, or the OSD is behind: get a new
     * ticket / let it catch up, and retry */
    if (rerr == -EKEYEXPIRED && mc->renew)
      monc_renew_ticket(mc);
    osd_auth_done(op, -EAGAIN);
    return;
  }
  char why[256] = "";
  int r = auth_authorizer_finish(&op->az, f->payload, f->payload_len, why, sizeof why);
  if (r < 0) {
    if (rerr == 0)
      snprintf(mc->auth_why, sizeof mc->auth_why, "%s: %s", msgr_conn_peer(op->c),
               why[0] ? why : strerror(-r));
    log_warn("monc", "authorizer to %s refused: %s", msgr_conn_peer(op->c), mc->auth_why);
    osd_auth_done(op, -EACCES);
    return;
  }
  r = msgr_conn_set_protection(op->c, op->az.mode, op->az.conn_key, true);
  osd_auth_done(op, r);
}

void monc_osd_auth_start(void *ctx, msgr_conn *c)
{
  monc *mc = ctx;
  if (mc->ap.mode == AUTH_MODE_NONE) {
    msgr_conn_auth_done(c, -EPROTO);
    return;
  }
  if (!mc->have_creds) {
    /* not logged in yet, or logged in before the monitors had a service
     * secret (no ticket): log in again; the caller retries */
    log_info("monc", "no ticket yet for %s: logging in again", msgr_conn_peer(c));
    if (msgr_conn_protection(mc->conns[mc->sub_cur]) != AUTH_MODE_NONE)
      monc_renew_ticket(mc);
    msgr_conn_auth_done(c, -EAGAIN);
    return;
  }
  if (mc->renew && mc->creds.expires_ms - util_wall_ms() < 1000)
    monc_renew_ticket(mc);
  struct osd_auth_op *op = calloc(1, sizeof *op);
  if (!op) {
    msgr_conn_auth_done(c, -ENOMEM);
    return;
  }
  op->mc = mc;
  op->c = msgr_conn_get(c);
  uint8_t *out = NULL;
  size_t outlen = 0;
  int r = auth_authorizer_build(&mc->creds, auth_modes_at_least(mc->ap.mode), util_wall_ms(),
                                &op->az, &out, &outlen);
  if (r == 0)
    r = msgr_call(c, MSG_AUTH_AUTHORIZER, out, (uint32_t)outlen, NULL, 0, 5000,
                  on_authorizer_reply, op);
  free(out);
  if (r < 0)
    osd_auth_done(op, r);
}

/* ---- service secrets for OSDs (§4.3) -------------------------------------------- */

struct secrets_op {
  uint8_t key[AUTH_KEY_LEN];
  monc_secrets_fn cb;
  void *arg;
};

static void on_secrets(void *arg, int err, const struct msgr_frame *f)
{
  struct secrets_op *op = arg;
  struct auth_rotating r = { 0 };
  if (err == 0)
    err = auth_secrets_open(op->key, f->payload, f->payload_len, &r);
  op->cb(op->arg, err, err == 0 ? &r : NULL);
  auth_rotating_clear(&r);
  OPENSSL_cleanse(op->key, sizeof op->key);
  free(op);
}

int monc_fetch_secrets(monc *mc, monc_secrets_fn cb, void *arg)
{
  for (size_t k = 0; k < mc->n_mons; k++) {
    size_t i = (mc->sub_cur + k) % mc->n_mons;
    if (!mc->sess_ok[i] || msgr_conn_protection(mc->conns[i]) == AUTH_MODE_NONE)
      continue;
    struct secrets_op *op = calloc(1, sizeof *op);
    if (!op)
      return -ENOMEM;
    memcpy(op->key, mc->sess_key[i], AUTH_KEY_LEN);
    op->cb = cb;
    op->arg = arg;
    int r = msgr_call(mc->conns[i], MSG_AUTH_GET_SECRETS, NULL, 0, NULL, 0, 3000, on_secrets, op);
    if (r < 0) {
      free(op);
      return r;
    }
    return 0;
  }
  return -ENOTCONN;
}
