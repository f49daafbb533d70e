/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: see objecter.h. */
#include "client/objecter.h"

#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/pgmap.h"
#include "common/util.h"

struct obj_op {
  struct obj_op *prev, *next;
  objecter *o;
  char pool[CM_MAX_NAME];
  char *name;
  Blk__OsdOpType op;
  uint64_t offset, length;
  uint8_t *data;
  bool data_owned;              /* data is our copy (else borrowed from the caller) */
  uint32_t data_len, crc;
  uint32_t pg;
  char *list_after;
  char *key;
  bool has_assert_version;
  Blk__PgVersion assert_version;
  uint64_t snap_seq, snapid;    /* snapshots */
  uint64_t *snaps;
  size_t n_snaps;
  uint32_t list_max;
  int32_t osd;
  char reqid[48];
  int64_t deadline;
  uint64_t need_epoch;
  bool in_call;
  msgr_conn *conn;              /* the OSD connection of the call (borrowed from conns) */
  unsigned attempts;
  struct event *retry_ev;       /* in the op's own allocation (event_assign) */
  char name_buf[96];            /* name, when it fits (image data objects do) */
  char last_why[160];
  objecter_cb cb;
  void *arg;
};

struct osd_conn {
  msgr_conn *c;
  char addr[CM_MAX_ADDR];
};

struct objecter {
  struct event_base *base;
  monc *mc;
  msgr *msgr;
  struct pgmap *pgmap;
  /* primaries computed from the current map, per pool id (index) and PG:
   * placement runs once per PG and map instead of once per op.  Entries
   * are PRIMARY_UNKNOWN until computed; dropped at every new map. */
  struct pg_primaries {
    int32_t *primary;
    uint32_t pg_num;
  } *prim;
  size_t n_prim;
  const struct cluster_map *map;
  struct obj_op *ops;
  struct osd_conn *conns;
  size_t n_conns;
  char nonce[20];
  uint64_t seq;
  int64_t op_timeout;
};

static void op_send_first(struct obj_op *op, bool first);
static void op_send(struct obj_op *op)
{
  op_send_first(op, false);
}

static void op_finish(struct obj_op *op, int err, const Blk__OsdOpReply *rep,
                      const uint8_t *data, uint32_t len)
{
  objecter *o = op->o;
  if (op->prev)
    op->prev->next = op->next;
  else
    o->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  event_del(op->retry_ev);
  op->cb(op->arg, err, rep, data, len);
  if (op->name != op->name_buf)
    free(op->name);
  if (op->data_owned)
    free(op->data);
  free(op->list_after);
  free(op->key);
  free(op->snaps);
  free(op);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  op_send(arg);
}

static void op_later(struct obj_op *op, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  event_add(op->retry_ev, &tv);
}

static msgr_conn *osd_conn(objecter *o, int32_t id)
{
  const struct cm_osd *od = clustermap_osd(o->map, id);
  if (!od || !od->addr[0])
    return NULL;
  if ((size_t)id >= o->n_conns) {
    size_t n = (size_t)id + 8;
    struct osd_conn *c = realloc(o->conns, n * sizeof *c);
    if (!c)
      return NULL;
    memset(c + o->n_conns, 0, (n - o->n_conns) * sizeof *c);
    o->conns = c;
    o->n_conns = n;
  }
  struct osd_conn *oc = &o->conns[id];
  if (oc->c && strcmp(oc->addr, od->addr)) {
    msgr_conn_close(oc->c);
    msgr_conn_put(oc->c);
    oc->c = NULL;
  }
  if (!oc->c) {
    oc->c = msgr_connect(o->msgr, od->addr);
    snprintf(oc->addr, sizeof oc->addr, "%s", od->addr);
  }
  return oc->c;
}

/* A bump allocator for decoding one reply on the stack: an OsdOpReply is
 * a few small allocations (the struct, its message, the version); they
 * come from buf, anything beyond falls back to malloc.  Saves several
 * malloc/free pairs per op. */
struct reply_arena {
  size_t used;
  _Alignas(max_align_t) uint8_t buf[1024];
};

static void *arena_alloc(void *data, size_t size)
{
  struct reply_arena *a = data;
  size_t need = (size + 15) & ~(size_t)15;
  if (need <= sizeof a->buf - a->used) {
    void *p = a->buf + a->used;
    a->used += need;
    return p;
  }
  return malloc(size);
}

static void arena_free(void *data, void *p)
{
  struct reply_arena *a = data;
  if ((uint8_t *)p >= a->buf && (uint8_t *)p < a->buf + sizeof a->buf)
    return;   /* freed with the arena */
  free(p);
}

static void on_reply(void *arg, int err, const struct msgr_frame *f)
{
  struct obj_op *op = arg;
  objecter *o = op->o;
  op->in_call = false;
  if (err == -ECANCELED) {
    op_finish(op, -ECANCELED, NULL, NULL, 0);
    return;
  }
  if (err == -EACCES) {
    /* the OSD refused our authorizer (auth.md §4.2): final */
    Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
    char msg[480];
    snprintf(msg, sizeof msg, "authentication refused: %s", monc_auth_error(o->mc));
    rep.err = -EACCES;
    rep.message = msg;
    op_finish(op, -EACCES, &rep, NULL, 0);
    return;
  }
  if (err < 0) {
    snprintf(op->last_why, sizeof op->last_why, "osd: %s", strerror(-err));
    monc_renew(o->mc);
    op_later(op, 100);
    return;
  }
  struct reply_arena arena;
  arena.used = 0;
  ProtobufCAllocator alloc = { .alloc = arena_alloc, .free = arena_free, .allocator_data = &arena };
  Blk__OsdOpReply *rep = blk__osd_op_reply__unpack(&alloc, f->payload_len, f->payload);
  if (!rep) {
    snprintf(op->last_why, sizeof op->last_why, "undecodable reply");
    op_later(op, 100);
    return;
  }
  int e = rep->err;
  if (e == -EKEYEXPIRED && monc_renew_ticket(o->mc)) {
    /* our ticket expired on this OSD: a new one, a new connection */
    snprintf(op->last_why, sizeof op->last_why, "%s", rep->message);
    blk__osd_op_reply__free_unpacked(rep, &alloc);
    if (op->conn && msgr_conn_protection(op->conn) != AUTH_MODE_NONE)
      msgr_conn_close(op->conn);   /* the next connection presents the new ticket */
    op_later(op, 100);
    return;
  }
  /* -ESHUTDOWN: the OSD is stopping (transient), unless this client is
   * blocklisted (fenced: final) */
  bool fenced = e == -ESHUTDOWN && strstr(rep->message, "blocklisted");
  if (e == -ESTALE || (e == -ESHUTDOWN && !fenced) || (e == -EAGAIN && op->osd < 0 &&
                                           strstr(rep->message, "retry")) ||
      (e == -ETIMEDOUT && op->osd < 0)) {
    snprintf(op->last_why, sizeof op->last_why, "%s", rep->message[0] ? rep->message : strerror(-e));
    if (e == -ESTALE && o->map && rep->epoch > o->map->epoch) {
      op->need_epoch = rep->epoch;
      monc_want_epoch(o->mc, rep->epoch);
    } else {
      monc_renew(o->mc);
    }
    blk__osd_op_reply__free_unpacked(rep, &alloc);
    op_later(op, e == -ESTALE && op->need_epoch ? 0 : 100);
    return;
  }
  char *msg = rep->message;   /* decoded: freed with the reply */
  if (e == 0 && f->data_len && crc32c(0, f->data, f->data_len) != rep->data_crc) {
    e = -EIO;
    rep->message = (char *)"read data failed its crc32c";
  }
  op_finish(op, e, rep, f->data, f->data_len);
  rep->message = msg;         /* never hand the literal to the decoder's free */
  blk__osd_op_reply__free_unpacked(rep, &alloc);
}

#define PRIMARY_UNKNOWN INT32_MIN

static void primaries_drop(objecter *o)
{
  for (size_t i = 0; i < o->n_prim; i++)
    free(o->prim[i].primary);
  free(o->prim);
  o->prim = NULL;
  o->n_prim = 0;
}

/* The primary (first up member) of PG pg of pool in the current map, or
 * -1 when no member is up.  0, or -EINVAL (no such PG). */
static int primary_lookup(objecter *o, const struct cm_pool *pool, uint32_t pg, int32_t *out)
{
  if (pg >= pool->pg_num)
    return -EINVAL;
  struct pg_primaries *pp = NULL;
  if (pool->id < 4096) {
    size_t id = (size_t)pool->id;
    if (id >= o->n_prim) {
      struct pg_primaries *np = realloc(o->prim, (id + 1) * sizeof *np);
      if (np) {
        memset(np + o->n_prim, 0, (id + 1 - o->n_prim) * sizeof *np);
        o->prim = np;
        o->n_prim = id + 1;
      }
    }
    if (id < o->n_prim) {
      pp = &o->prim[id];
      if (pp->primary && pp->pg_num != pool->pg_num) {
        free(pp->primary);
        pp->primary = NULL;
      }
      if (!pp->primary && (pp->primary = malloc(pool->pg_num * sizeof *pp->primary))) {
        pp->pg_num = pool->pg_num;
        for (uint32_t i = 0; i < pool->pg_num; i++)
          pp->primary[i] = PRIMARY_UNKNOWN;
      }
      if (pp->primary && pp->primary[pg] != PRIMARY_UNKNOWN) {
        *out = pp->primary[pg];
        return 0;
      }
    }
  }
  int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr = 0, nu = 0;
  if (pgmap_pg_sets(o->pgmap, o->map, pool, pg, raw, &nr, up, &nu) < 0)
    return -EINVAL;
  *out = nu ? up[0] : -1;
  if (pp && pp->primary)
    pp->primary[pg] = *out;
  return 0;
}

/* Send op now.  first: called from objecter_op, where the callback must
 * not run: anything that would finish the op goes through the loop. */
static void op_send_first(struct obj_op *op, bool first)
{
  objecter *o = op->o;
  int64_t left = op->deadline - util_now_ms();
  if (first && left <= 0) {
    op_later(op, 0);
    return;
  }
  if (left <= 0) {
    Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
    char msg[240];
    snprintf(msg, sizeof msg, "no answer within %lld ms%s%s", (long long)o->op_timeout,
             op->last_why[0] ? ": last " : "", op->last_why);
    rep.err = -ETIMEDOUT;
    rep.message = msg;
    op_finish(op, -ETIMEDOUT, &rep, NULL, 0);
    return;
  }
  if (!o->map || o->map->epoch < op->need_epoch) {
    monc_renew(o->mc);
    op_later(op, 200);   /* also woken by the next map */
    return;
  }
  const struct cm_pool *pool = clustermap_pool_by_name(o->map, op->pool);
  if (!pool && first) {
    op_later(op, 0);
    return;
  }
  if (!pool) {
    Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
    rep.err = -ENOENT;
    rep.message = "no such pool";
    op_finish(op, -ENOENT, &rep, NULL, 0);
    return;
  }
  uint32_t pg = op->pg;
  if (op->op != BLK__OSD_OP_TYPE__OP_LIST)
    pgmap_object_pg(pool, op->name, &pg);
  int32_t target = op->osd;
  if (pg >= pool->pg_num || (target < 0 && primary_lookup(o, pool, pg, &target) < 0)) {
    if (first) {
      op_later(op, 0);
      return;
    }
    Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
    rep.err = -EINVAL;
    rep.message = "no such PG";
    op_finish(op, -EINVAL, &rep, NULL, 0);
    return;
  }
  msgr_conn *c = target >= 0 ? osd_conn(o, target) : NULL;
  if (!c) {
    snprintf(op->last_why, sizeof op->last_why, "PG %u.%x has no up OSD", pool->id, pg);
    op_later(op, 250);
    return;
  }
  Blk__OsdOp req = BLK__OSD_OP__INIT;
  req.pool = pool->id;
  req.pg = pg;
  req.name = op->name ? op->name : "";
  req.op = op->op;
  req.offset = op->offset;
  req.length = op->data ? op->data_len : op->length;
  req.data_crc = op->crc;
  req.epoch = o->map->epoch;
  req.reqid = op->reqid;
  req.list_after = op->list_after ? op->list_after : "";
  req.list_max = op->list_max;
  req.local = op->osd >= 0;
  req.resend = op->attempts++ > 0;
  req.key = op->key ? op->key : "";
  req.has_assert_version = op->has_assert_version;
  if (op->has_assert_version)
    req.assert_version = &op->assert_version;
  req.snap_seq = op->snap_seq;
  req.snaps = op->snaps;
  req.n_snaps = op->n_snaps;
  req.snapid = op->snapid;
  int tmo = left < 10000 ? (int)left : 10000;
  if (msgr_call_pb(c, MSG_OSD_OP, (const ProtobufCMessage *)&req, op->data, op->data_len, tmo,
                   on_reply, op) < 0) {
    op_later(op, 100);
    return;
  }
  op->in_call = true;
  op->conn = c;
}

static void on_map(void *arg, const struct cluster_map *map, const struct cluster_map *prev)
{
  objecter *o = arg;
  (void)prev;
  struct pgmap *pm = pgmap_build(map);
  if (!pm)
    return;
  pgmap_free(o->pgmap);
  o->pgmap = pm;
  primaries_drop(o);   /* computed from the previous map */
  o->map = map;
  for (struct obj_op *op = o->ops; op; op = op->next)
    if (!op->in_call && evtimer_pending(op->retry_ev, NULL) && map->epoch >= op->need_epoch &&
        op->need_epoch) {
      event_del(op->retry_ev);
      op_later(op, 0);
    }
}

objecter *objecter_new(struct event_base *base, monc *mc, const config *cfg)
{
  objecter *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->base = base;
  o->mc = mc;
  o->op_timeout = config_get_int(cfg, "client_op_timeout");
  struct frame_limits lim = {
    (uint32_t)config_get_int(cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(cfg, "msgr_max_data"),
  };
  o->msgr = msgr_new(base, &lim, NULL, NULL);
  if (!o->msgr || monc_subscribe(mc, on_map, o) < 0) {
    msgr_free(o->msgr);
    free(o);
    errno = ENOMEM;
    return NULL;
  }
  msgr_set_timeouts(o->msgr, (int)config_get_int(cfg, "msgr_connect_timeout"), 500);
  if (monc_auth_mode(mc) != AUTH_MODE_NONE)
    msgr_set_client_auth(o->msgr, monc_osd_auth_start, mc);   /* authorizer per OSD conn */
  unsigned char r[8];
  RAND_bytes(r, sizeof r);
  snprintf(o->nonce, sizeof o->nonce, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
           r[3], r[4], r[5], r[6], r[7]);
  return o;
}

void objecter_free(objecter *o)
{
  if (!o)
    return;
  for (size_t i = 0; i < o->n_conns; i++)
    if (o->conns[i].c)
      msgr_conn_put(o->conns[i].c);
  msgr_free(o->msgr);   /* calls in flight finish with -ECANCELED */
  while (o->ops)
    op_finish(o->ops, -ECANCELED, NULL, NULL, 0);
  free(o->conns);
  pgmap_free(o->pgmap);
  primaries_drop(o);
  free(o);
}

int objecter_op(objecter *o, const struct objecter_req *req, objecter_cb cb, void *arg)
{
  if (!req->pool || strlen(req->pool) >= CM_MAX_NAME ||
      (req->op != BLK__OSD_OP_TYPE__OP_LIST && (!req->name || !req->name[0])))
    return -EINVAL;
  /* one allocation for the op and its retry timer */
  size_t evsz = event_get_struct_event_size();
  size_t opsz = (sizeof(struct obj_op) + 15) & ~(size_t)15;
  struct obj_op *op = calloc(1, opsz + evsz);
  if (!op)
    return -ENOMEM;
  op->o = o;
  strcpy(op->pool, req->pool);
  size_t nl = req->name ? strlen(req->name) : 0;
  if (req->name && nl < sizeof op->name_buf) {
    memcpy(op->name_buf, req->name, nl + 1);
    op->name = op->name_buf;
  } else {
    op->name = req->name ? strdup(req->name) : NULL;
  }
  op->list_after = req->list_after ? strdup(req->list_after) : NULL;
  op->key = req->key ? strdup(req->key) : NULL;
  op->retry_ev = (struct event *)((uint8_t *)op + opsz);
  if (evtimer_assign(op->retry_ev, o->base, retry_cb, op) < 0)
    op->retry_ev = NULL;
  if (req->data_len && req->data_borrowed) {
    op->data = (uint8_t *)req->data;   /* the caller keeps it until cb */
  } else if (req->data_len) {
    op->data = malloc(req->data_len);
    op->data_owned = true;
    if (op->data)
      memcpy(op->data, req->data, req->data_len);
  }
  if (req->n_snaps) {
    op->snaps = malloc(req->n_snaps * sizeof *op->snaps);
    if (op->snaps) {
      memcpy(op->snaps, req->snaps, req->n_snaps * sizeof *op->snaps);
      op->n_snaps = req->n_snaps;
    }
  }
  op->snap_seq = req->snap_seq;
  op->snapid = req->snapid;
  if ((req->name && !op->name) || (req->list_after && !op->list_after) ||
      (req->key && !op->key) || !op->retry_ev ||
      (req->data_len && !op->data) || (req->n_snaps && !op->snaps)) {
    free(op->snaps);
    if (op->name != op->name_buf)
      free(op->name);
    free(op->list_after);
    free(op->key);
    if (op->data_owned)
      free(op->data);
    free(op);
    return -ENOMEM;
  }
  op->op = req->op;
  op->offset = req->offset;
  op->length = req->length;
  op->data_len = req->data_len;
  op->crc = crc32c(0, op->data, op->data_len);
  op->pg = req->pg;
  op->list_max = req->list_max;
  op->osd = req->osd;
  op->has_assert_version = req->has_assert_version;
  blk__pg_version__init(&op->assert_version);
  op->assert_version.epoch = req->assert_epoch;
  op->assert_version.v = req->assert_v;
  /* "<nonce>.<seq>", formatted by hand: this runs for every op */
  {
    size_t nnl = strlen(o->nonce);
    char dig[24];
    int nd = 0;
    uint64_t v = ++o->seq;
    do {
      dig[nd++] = (char)('0' + v % 10);
      v /= 10;
    } while (v);
    memcpy(op->reqid, o->nonce, nnl);   /* nonce < 20 bytes, seq < 21 digits: fits 48 */
    op->reqid[nnl] = '.';
    for (int i = 0; i < nd; i++)
      op->reqid[nnl + 1 + i] = dig[nd - 1 - i];
    op->reqid[nnl + 1 + nd] = '\0';
  }
  op->deadline = util_now_ms() + o->op_timeout;
  op->cb = cb;
  op->arg = arg;
  op->next = o->ops;
  if (o->ops)
    o->ops->prev = op;
  o->ops = op;
  /* send now rather than from a zero timer (one loop pass per op saved);
   * anything that would complete the op is deferred to the loop */
  op_send_first(op, true);
  return 0;
}

const struct cluster_map *objecter_map(objecter *o)
{
  return o->map;
}

int objecter_wait_map(objecter *o, int timeout_ms)
{
  int64_t deadline = util_now_ms() + timeout_ms;
  while (!o->map && util_now_ms() < deadline) {
    if (monc_auth_refused(o->mc))
      return -EACCES;
    struct timeval tv = { 0, 50 * 1000 };
    event_base_loopexit(o->base, &tv);
    event_base_dispatch(o->base);
  }
  return o->map ? 0 : -ETIMEDOUT;
}

const char *objecter_nonce(const objecter *o)
{
  return o->nonce;
}

int objecter_set_nonce(objecter *o, const char *nonce)
{
  size_t n = nonce ? strlen(nonce) : 0;
  if (n == 0 || n >= sizeof o->nonce || o->seq)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = nonce[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return -EINVAL;
  }
  memcpy(o->nonce, nonce, n + 1);
  return 0;
}
