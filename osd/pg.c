/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: PGs on one OSD (DESIGN.md §4, docs/osd.md).
 *
 *  - On every map (pg_on_map) each PG whose up set holds this OSD is found
 *    or created (its log loaded from the store).  When its acting set, its
 *    primary, or a member's up_from changed, a new interval begins: the
 *    primary peers (peering.c), a replica waits for the primary's
 *    PgActivate, and every client op held for the old interval is
 *    answered -ESTALE (the client refetches the map and resends).
 *  - Client ops (primary only): the op's epoch is checked (a newer client
 *    parks the op until this OSD has that map; an op for a PG this OSD is
 *    not primary of gets -ESTALE and the OSD's epoch), then the PG must be
 *    active with at least min_size members (else the op is parked and
 *    fails after osd_op_timeout_undersized: I3).  A write gets the next PG
 *    version (epoch, v), its log entry, its store transaction (object
 *    change + log key in the same transaction) queued locally and, in
 *    parallel, a RepOp to every replica carrying the version and the
 *    previous version.  The client is answered when every acting member
 *    has it durable (I1).  Writes are pipelined in version order: the
 *    store completes transactions in order and each replica applies RepOps
 *    in order (one connection per peer), so ops on one object are ordered.
 *    A read or stat of an object with a write in flight waits for it, so a
 *    read never sees data that is not yet on every member (I2).
 *  - Resends are deduplicated by reqid against the log and the writes in
 *    flight.
 *  - Object ops for images (docs/osd.md "Object ops"): zero, truncate,
 *    xattrs, omap and the lock ops are writes like the above (the lock ops
 *    replicated as the SETXATTR/RMXATTR of their "@lock.<name>" record);
 *    every change also sets the object's version xattr "@ver".  Ops whose
 *    outcome depends on the object (version guard, locks, rmxattr/omap-rm)
 *    are read-modify-write: they wait for writes in flight on the object,
 *    read what they need, then decide; later ops on the object park
 *    behind them (parked ops carry their object name), keeping per-object
 *    order.  op_admit() is the one gate every client op passes first
 *    (blocklist now; auth caps belong there too).
 *  - Replicas apply a RepOp only if its prev version is their last (else
 *    -EAGAIN: the primary re-peers, which repairs the gap by recovery) and
 *    its epoch is not older than the last peering they took part in
 *    (fencing an old primary); data is checked against its crc32c before
 *    anything is queued (I5).
 *  - The PG log lives in the omap of the PG's meta object, one key per
 *    entry ("L" + epoch + v as 16 hex digits each + op + reqid + "/" +
 *    name: the key alone describes the entry, so loading needs no value
 *    reads), trimmed to osd_pg_log_max entries (in batches: pg_log_append);
 *    the newest trimmed version is the key "T" + 32 hex digits.  The same
 *    omap keeps the PG's past intervals since its last activation ("I"
 *    keys, note_prior) and its last epoch started ("E"), for peering,
 *    and the objects recovery installed that no log entry describes yet
 *    ("U" + installed version + name; a sorted array in memory): a log
 *    entry for the object drops its key in the entry's transaction (the
 *    write path looks only when the PG has any), an adopted log those it
 *    describes (pg_unlogged_settle).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "osd/osd.h"
#include "osd/snap.h"

unsigned pg_store_pending;

struct pg_op {
  struct pg_op *next;
  struct pg *pg;
  msgr_conn *conn;              /* client (reference); NULL if gone */
  uint64_t tid;
  struct pg_ver ver;
  char reqid[PG_REQID_MAX];
  char *name;
  int pending;                  /* local + replicas not yet durable */
  bool local_done;
  bool failed;                  /* a replica failed: waits for peering */
  uint64_t seq;                 /* pg->peer_seq when sent */
};

/* ---- small helpers -------------------------------------------------------- */

void pg_meta_oid(const struct pg *pg, struct store_oid *oid)
{
  oid->pool = pg->pool;
  oid->pg = pg->id;
  oid->name = PG_META_NAME;
  oid->snap = STORE_SNAP_HEAD;
}

/* One character per BLK__OSD_OP_TYPE__OP_* value (index = op). */
static const char op_chars[] = "rwfsdlztgxXoOMLkubimT";

void pg_log_key(char *buf, size_t n, const struct pg_log_ent *e)
{
  snprintf(buf, n, "L%016llx%016llx%c%s/%s", (unsigned long long)e->ver.epoch,
           (unsigned long long)e->ver.v, op_chars[e->op < sizeof op_chars - 1 ? e->op : 0], e->reqid, e->name);
}

void pg_tail_key(char *buf, size_t n, struct pg_ver tail)
{
  snprintf(buf, n, "T%016llx%016llx", (unsigned long long)tail.epoch,
           (unsigned long long)tail.v);
}

void pg_interval_key(char *buf, size_t n, const struct pplan_interval *iv)
{
  int len = snprintf(buf, n, "I%016llx%016llx%c", (unsigned long long)iv->first,
                     (unsigned long long)iv->last, iv->maybe_rw ? 'w' : 'r');
  for (size_t a = 0; a < iv->n_acting && len > 0 && (size_t)len < n; a++)
    len += snprintf(buf + len, n - (size_t)len, "%s%d", a ? "," : "", iv->acting[a]);
}

void pg_les_key(char *buf, size_t n, uint64_t les)
{
  snprintf(buf, n, "E%016llx", (unsigned long long)les);
}

void pg_past_clear(struct pg *pg, store_txn *t)
{
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  for (size_t k = 0; k < pg->n_past; k++) {
    pg_interval_key(key, sizeof key, &pg->past[k]);
    store_txn_omap_rm(t, &meta, key);
  }
  pg->n_past = 0;
}

/* ---- unlogged objects ------------------------------------------------------ */

/* "U" + installed version (epoch, v as 16 hex digits each) + name: the key
 * alone describes the record, so pg_load reads no values. */
static void pg_unlogged_key(char *buf, size_t n, const struct pg_unlogged *u)
{
  snprintf(buf, n, "U%016llx%016llx%s", (unsigned long long)u->ver.epoch,
           (unsigned long long)u->ver.v, u->name);
}

/* Index of name in pg->unlogged, or where it would go (*found false). */
static size_t pg_unlogged_find(const struct pg *pg, const char *name, bool *found)
{
  size_t lo = 0, hi = pg->n_unlogged;
  *found = false;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, pg->unlogged[mid].name);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* Insert without touching the store (pg_load, pg_unlogged_add). */
static int pg_unlogged_insert(struct pg *pg, size_t at, const char *name, struct pg_ver ver)
{
  if (pg->n_unlogged == pg->cap_unlogged) {
    size_t nc = pg->cap_unlogged ? pg->cap_unlogged * 2 : 16;
    struct pg_unlogged *nu = realloc(pg->unlogged, nc * sizeof *nu);
    if (!nu)
      return -ENOMEM;
    pg->unlogged = nu;
    pg->cap_unlogged = nc;
  }
  char *n = strdup(name);
  if (!n)
    return -ENOMEM;
  memmove(&pg->unlogged[at + 1], &pg->unlogged[at], (pg->n_unlogged - at) * sizeof *pg->unlogged);
  pg->unlogged[at].name = n;
  pg->unlogged[at].ver = ver;
  pg->n_unlogged++;
  return 0;
}

/* Drop record i from memory and (its key) from t. */
static void pg_unlogged_drop(struct pg *pg, store_txn *t, size_t i)
{
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  pg_unlogged_key(key, sizeof key, &pg->unlogged[i]);
  store_txn_omap_rm(t, &meta, key);
  free(pg->unlogged[i].name);
  memmove(&pg->unlogged[i], &pg->unlogged[i + 1],
          (pg->n_unlogged - i - 1) * sizeof *pg->unlogged);
  pg->n_unlogged--;
}

int pg_unlogged_add(struct pg *pg, store_txn *t, const char *name, struct pg_ver ver)
{
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  bool found;
  size_t at = pg_unlogged_find(pg, name, &found);
  pg_meta_oid(pg, &meta);
  if (found) {
    if (!pg_ver_cmp(pg->unlogged[at].ver, ver))
      return 0;
    pg_unlogged_key(key, sizeof key, &pg->unlogged[at]);
    store_txn_omap_rm(t, &meta, key);
    pg->unlogged[at].ver = ver;
  } else {
    int r = pg_unlogged_insert(pg, at, name, ver);
    if (r < 0)
      return r;
  }
  if (!pg->meta_exists) {
    store_txn_touch(t, &meta);
    pg->meta_exists = true;
  }
  pg_unlogged_key(key, sizeof key, &pg->unlogged[at]);
  return store_txn_omap_set(t, &meta, key, "", 0);
}

size_t pg_unlogged_settle(struct pg *pg, store_txn *t)
{
  if (!pg->n_unlogged)
    return 0;
  /* one pass over the log, a binary search per entry */
  bool *described = calloc(pg->n_unlogged, sizeof *described);
  if (!described)
    return pg->n_unlogged;     /* they stay: a later peering copies them again */
  for (size_t i = 0; i < pg->log_n; i++) {
    const struct pg_log_ent *e = pg_log_at(pg, i);
    bool found;
    size_t at = pg_unlogged_find(pg, e->name, &found);
    if (found && pg_ver_cmp(e->ver, pg->unlogged[at].ver) >= 0)
      described[at] = true;
  }
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  size_t k = 0;
  for (size_t i = 0; i < pg->n_unlogged; i++) {
    struct pg_unlogged *u = &pg->unlogged[i];
    if (described[i] || pg_ver_cmp(u->ver, pg->tail) <= 0) {
      pg_unlogged_key(key, sizeof key, u);
      store_txn_omap_rm(t, &meta, key);
      free(u->name);
    } else {
      pg->unlogged[k++] = *u;
    }
  }
  pg->n_unlogged = k;
  free(described);
  return k;
}

void pg_unlogged_free(struct pg *pg)
{
  for (size_t i = 0; i < pg->n_unlogged; i++)
    free(pg->unlogged[i].name);
  free(pg->unlogged);
  pg->unlogged = NULL;
  pg->n_unlogged = pg->cap_unlogged = 0;
}

bool pg_interval_parse(const char *k, struct pplan_interval *iv)
{
  unsigned long long f, l;
  char rw;
  int used = 0;
  memset(iv, 0, sizeof *iv);
  if (k[0] != 'I' || sscanf(k + 1, "%16llx%16llx%c%n", &f, &l, &rw, &used) != 3 || (rw != 'w' && rw != 'r'))
    return false;
  iv->first = f;
  iv->last = l;
  iv->maybe_rw = rw == 'w';
  for (const char *c = k + 1 + used; *c && iv->n_acting < PPLAN_MAX_SIZE;) {
    char *end;
    long id = strtol(c, &end, 10);
    if (end == c || id < 0 || id > INT32_MAX)
      return false;
    iv->acting[iv->n_acting++] = (int32_t)id;
    c = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return false;
  }
  return true;
}

struct pg_log_ent *pg_log_at(struct pg *pg, size_t i)
{
  return &pg->log[(pg->log_head + i) % pg->log_cap];
}

void pg_log_clear(struct pg *pg)
{
  for (size_t i = 0; i < pg->log_n; i++)
    free(pg_log_at(pg, i)->name);
  pg->log_n = 0;
  pg->log_head = 0;
}

/* Append to the in-memory log (no trimming here).  0 or -ENOMEM. */
int pg_log_push(struct pg *pg, struct pg_ver ver, uint8_t op, const char *reqid,
                const char *name)
{
  if (pg->log_n == pg->log_cap) {
    size_t ncap = pg->log_cap ? pg->log_cap * 2 : 64;
    struct pg_log_ent *nl = malloc(ncap * sizeof *nl);
    if (!nl)
      return -ENOMEM;
    for (size_t i = 0; i < pg->log_n; i++)
      nl[i] = *pg_log_at(pg, i);
    free(pg->log);
    pg->log = nl;
    pg->log_cap = ncap;
    pg->log_head = 0;
  }
  struct pg_log_ent *e = &pg->log[(pg->log_head + pg->log_n) % pg->log_cap];
  e->name = strdup(name);
  if (!e->name)
    return -ENOMEM;
  e->ver = ver;
  e->op = op;
  snprintf(e->reqid, sizeof e->reqid, "%s", reqid ? reqid : "");
  pg->log_n++;
  if (pg_ver_cmp(ver, pg->last) > 0)
    pg->last = ver;
  return 0;
}

/* Drop the entry of version ver from the in-memory log: its transaction
 * failed in the store, so the durable log does not hold it either (later
 * entries stay: the log then has the same hole as the store, which
 * peering fills).  pg->last goes back when it was the newest. */
static void pg_log_forget(struct pg *pg, struct pg_ver ver)
{
  size_t i = pg->log_n;
  while (i-- > 0)
    if (!pg_ver_cmp(pg_log_at(pg, i)->ver, ver))
      break;
  if (i == (size_t)-1)
    return;
  free(pg_log_at(pg, i)->name);
  for (size_t k = i; k + 1 < pg->log_n; k++)
    *pg_log_at(pg, k) = *pg_log_at(pg, k + 1);
  pg->log_n--;
  if (!pg_ver_cmp(pg->last, ver))
    pg->last = pg->log_n ? pg_log_at(pg, pg->log_n - 1)->ver : pg->tail;
}

/* A replicated write (one that carries a PG log entry) failed in this
 * OSD's store.  Errors every member meets alike (a bad op: -ENOENT,
 * -EINVAL, ...) leave every member's log the same once each forgets the
 * entry.  Errors of this member alone -- -ENOSPC (the store refused past
 * osd_full_ratio's margin) and -EIO (a failed device) -- would leave it
 * without an entry the others hold, and a peering that already counted
 * the entry (the member's log is answered from memory, with transactions
 * still queued) would never notice: the OSD stops at once (fail-stop, like
 * a monitor that cannot persist), and its restart peers from what the
 * store really holds. */
static void pg_write_failed(struct pg *pg, struct pg_ver ver, int err)
{
  if (err == -ENOSPC || err == -EIO) {
    log_err("pg", "%u.%x: write v%llu'%llu failed in this OSD's store (%s); osd.%d stops "
            "(fail-stop) and must be restarted", pg->pool, pg->id,
            (unsigned long long)ver.epoch, (unsigned long long)ver.v, strerror(-err),
            pg->osd->id);
    _exit(1);
  }
  pg_log_forget(pg, ver);
}

/* Append a new entry and its omap key to t.  Trimming is batched: once
 * the log is PG_LOG_TRIM_MIN entries longer than its limit, the oldest are
 * dropped down to the limit in this same transaction (at most
 * 4 * PG_LOG_TRIM_MIN at a time, so a lowered limit shrinks a long log
 * gradually).  Trimming one entry per write rewrote the tail key with
 * every write: three of a write's seven metadata keys. */
#define PG_LOG_TRIM_MIN 64
static int pg_log_append(struct pg *pg, store_txn *t, struct pg_ver ver, uint8_t op,
                         const char *reqid, const char *name)
{
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  pg_meta_oid(pg, &meta);
  if (!pg->meta_exists) {
    store_txn_touch(t, &meta);
    pg->meta_exists = true;
  }
  int r = pg_log_push(pg, ver, op, reqid, name);
  if (r < 0)
    return r;
  if (pg->n_unlogged) {
    /* a newer entry describes an object recovery installed */
    bool found;
    size_t at = pg_unlogged_find(pg, name, &found);
    if (found)
      pg_unlogged_drop(pg, t, at);
  }
  pg_log_key(key, sizeof key, pg_log_at(pg, pg->log_n - 1));
  store_txn_omap_set(t, &meta, key, "", 0);
  size_t max = pg->osd->pg_log_max;
  size_t slack = max / 8 < PG_LOG_TRIM_MIN ? max / 8 : PG_LOG_TRIM_MIN;
  if (pg->log_n <= max + slack)
    return 0;
  size_t drop = pg->log_n - max;
  if (drop > 4 * PG_LOG_TRIM_MIN)
    drop = 4 * PG_LOG_TRIM_MIN;
  if (pg->tail.epoch || pg->tail.v) {
    pg_tail_key(key, sizeof key, pg->tail);
    store_txn_omap_rm(t, &meta, key);
  }
  for (size_t i = 0; i < drop; i++) {
    struct pg_log_ent *old = pg_log_at(pg, 0);
    pg_log_key(key, sizeof key, old);
    store_txn_omap_rm(t, &meta, key);
    pg->tail = old->ver;
    free(old->name);
    pg->log_head = (pg->log_head + 1) % pg->log_cap;
    pg->log_n--;
  }
  pg_tail_key(key, sizeof key, pg->tail);
  store_txn_omap_set(t, &meta, key, "", 0);
  return 0;
}

int pg_txn_object(store_txn *t, struct pg *pg, int op, const char *name, const char *key,
                  uint64_t off, uint64_t len, const void *data)
{
  struct store_oid oid = { pg->pool, pg->id, name, STORE_SNAP_HEAD };
  int r = 0;
  switch (op) {
  case BLK__OSD_OP_TYPE__OP_WRITE:
    r = len ? store_txn_write(t, &oid, off, len, data) : store_txn_touch(t, &oid);
    break;
  case BLK__OSD_OP_TYPE__OP_WRITEFULL:
    if ((r = store_txn_touch(t, &oid)) == 0 && (r = store_txn_truncate(t, &oid, 0)) == 0 && len)
      r = store_txn_write(t, &oid, 0, len, data);
    break;
  case BLK__OSD_OP_TYPE__OP_REMOVE:
    /* touch first: removing a missing object is then harmless */
    if ((r = store_txn_touch(t, &oid)) == 0)
      r = store_txn_remove(t, &oid);
    break;
  case BLK__OSD_OP_TYPE__OP_ZERO:
    r = len ? store_txn_zero(t, &oid, off, len) : store_txn_touch(t, &oid);
    break;
  case BLK__OSD_OP_TYPE__OP_TRUNCATE:
    r = store_txn_truncate(t, &oid, off);
    break;
  case BLK__OSD_OP_TYPE__OP_SETXATTR:
    r = key ? store_txn_setattr(t, &oid, key, data, len) : -EINVAL;
    break;
  case BLK__OSD_OP_TYPE__OP_RMXATTR:
    /* touch first: the primary checked that the object exists, a replica
     * or a replay must not fail on it */
    if ((r = store_txn_touch(t, &oid)) == 0)
      r = key ? store_txn_rmattr(t, &oid, key) : -EINVAL;
    break;
  case BLK__OSD_OP_TYPE__OP_OMAP_SET:
    r = key ? store_txn_omap_set(t, &oid, key, data, len) : -EINVAL;
    break;
  case BLK__OSD_OP_TYPE__OP_OMAP_RM:
    if ((r = store_txn_touch(t, &oid)) == 0)
      r = key ? store_txn_omap_rm(t, &oid, key) : -EINVAL;
    break;
  case BLK__OSD_OP_TYPE__OP_SNAPTRIM:
    break;   /* all in its snap plan (osd/snap.c) */
  default:
    r = -EINVAL;
  }
  return r;
}

int pg_txn_version(store_txn *t, struct pg *pg, const char *name, struct pg_ver ver)
{
  struct store_oid oid = { pg->pool, pg->id, name, STORE_SNAP_HEAD };
  uint8_t v[16];
  put_le64(v, ver.epoch);
  put_le64(v + 8, ver.v);
  return store_txn_setattr(t, &oid, PG_VER_ATTR, v, sizeof v);
}

/* ---- PG table ------------------------------------------------------------- */

static size_t pg_hash(uint32_t pool, uint32_t id, size_t n)
{
  return (((size_t)pool * 0x9E3779B1u) ^ id) % n;
}

static int pg_load(struct pg *pg)
{
  struct store_oid meta;
  pg_meta_oid(pg, &meta);
  const char *after = NULL;
  char *after_buf = NULL;
  int r;
  for (;;) {
    struct store_list_ent *ents;
    r = store_omap_list(pg->osd->st, &meta, after, 1000, &ents);
    if (r == -ENOENT) {
      r = 0;
      break;
    }
    if (r < 0)
      break;
    pg->meta_exists = true;
    if (r == 0) {
      store_list_free(ents, 0);
      break;
    }
    for (int i = 0; i < r; i++) {
      const char *k = ents[i].name;
      unsigned long long e, v;
      char opc;
      int used = 0;
      if (k[0] == 'T' && sscanf(k + 1, "%16llx%16llx", &e, &v) == 2) {
        pg->tail.epoch = e;
        pg->tail.v = v;
      } else if (k[0] == 'E' && sscanf(k + 1, "%16llx", &e) == 1) {
        pg->les = e;
      } else if (k[0] == 'I') {
        /* keys sort by first epoch: the intervals load in order */
        struct pplan_interval iv;
        if (pg_interval_parse(k, &iv) && pg->n_past < PPLAN_MAX_INTERVALS)
          pg->past[pg->n_past++] = iv;
      } else if (k[0] == 'U' && strlen(k) > 33 && sscanf(k + 1, "%16llx%16llx", &e, &v) == 2) {
        /* keys sort by version, names in any order */
        bool found;
        size_t at = pg_unlogged_find(pg, k + 33, &found);
        struct pg_ver ver = { e, v };
        if (!found && pg_unlogged_insert(pg, at, k + 33, ver) < 0) {
          store_list_free(ents, r);
          free(after_buf);
          return -ENOMEM;
        }
      } else if (k[0] == 'L' && strlen(k) > 34 && sscanf(k + 1, "%16llx%16llx%c%n", &e, &v, &opc, &used) == 3) {
        const char *rest = k + 1 + used;
        const char *slash = strchr(rest, '/');
        const char *oc = strchr(op_chars, opc);
        if (!slash || !oc)
          continue;
        char reqid[PG_REQID_MAX];
        size_t rl = (size_t)(slash - rest);
        if (rl >= sizeof reqid)
          rl = sizeof reqid - 1;
        memcpy(reqid, rest, rl);
        reqid[rl] = 0;
        struct pg_ver ver = { e, v };
        if (pg_log_push(pg, ver, (uint8_t)(oc - op_chars), reqid, slash + 1) < 0) {
          store_list_free(ents, r);
          free(after_buf);
          return -ENOMEM;
        }
      }
    }
    free(after_buf);
    after_buf = strdup(ents[r - 1].name);
    after = after_buf;
    store_list_free(ents, r);
    if (!after_buf)
      return -ENOMEM;
  }
  free(after_buf);
  if (pg->log_n == 0 && (pg->tail.epoch || pg->tail.v))
    pg->last = pg->tail;
  return r;
}

struct pg *pg_get(struct osd *osd, uint32_t pool, uint32_t pgid, bool create)
{
  if (osd->pg_hash_size) {
    for (struct pg *pg = osd->pg_hash[pg_hash(pool, pgid, osd->pg_hash_size)]; pg; pg = pg->hnext)
      if (pg->pool == pool && pg->id == pgid)
        return pg;
  }
  if (!create)
    return NULL;
  if (osd->n_pgs + 1 > osd->pg_hash_size) {
    size_t n = osd->pg_hash_size ? osd->pg_hash_size * 2 : 256;
    struct pg **h = calloc(n, sizeof *h);
    if (!h)
      return NULL;
    for (size_t i = 0; i < osd->pg_hash_size; i++) {
      struct pg *p = osd->pg_hash[i];
      while (p) {
        struct pg *nx = p->hnext;
        size_t k = pg_hash(p->pool, p->id, n);
        p->hnext = h[k];
        h[k] = p;
        p = nx;
      }
    }
    free(osd->pg_hash);
    osd->pg_hash = h;
    osd->pg_hash_size = n;
  }
  struct pg *pg = calloc(1, sizeof *pg);
  if (!pg)
    return NULL;
  pg->osd = osd;
  pg->pool = pool;
  pg->id = pgid;
  pg->state = PG_STRAY;
  int r = pg_load(pg);
  if (r < 0) {
    log_err("pg", "%u.%x: cannot load the PG log: %s", pool, pgid, strerror(-r));
    pg_log_clear(pg);
    pg_unlogged_free(pg);
    free(pg->log);
    free(pg);
    return NULL;
  }
  size_t k = pg_hash(pool, pgid, osd->pg_hash_size);
  pg->hnext = osd->pg_hash[k];
  osd->pg_hash[k] = pg;
  osd->n_pgs++;
  if (pg->log_n)
    log_debug("pg", "%u.%x: loaded %zu log entries, last %llu'%llu", pool, pgid, pg->log_n,
              (unsigned long long)pg->last.epoch, (unsigned long long)pg->last.v);
  return pg;
}

/* ---- parking ------------------------------------------------------------- */

static struct pg_parked *park_new(msgr_conn *c, const struct msgr_frame *f, int64_t timeout_ms,
                                  int err, const char *why)
{
  struct pg_parked *p = malloc(sizeof *p + f->payload_len + f->data_len);
  if (!p)
    return NULL;
  p->next = NULL;
  p->conn = msgr_conn_get(c);
  p->f = *f;
  memcpy(p->buf, f->payload, f->payload_len);
  memcpy(p->buf + f->payload_len, f->data, f->data_len);
  p->f.payload = p->buf;
  p->f.data = p->buf + f->payload_len;
  p->deadline_ms = util_now_ms() + timeout_ms;
  p->obj = NULL;
  p->err_on_timeout = err;
  snprintf(p->why, sizeof p->why, "%s", why);
  return p;
}

static void park_free(struct pg_parked *p)
{
  free(p->obj);
  msgr_conn_put(p->conn);
  free(p);
}

/* Answer an op: error or result, the object's version, optional data. */
static void reply_op_data(msgr_conn *c, uint64_t tid, int err, const char *msg, uint64_t epoch,
                          struct pg_ver ver, const void *data, uint32_t len)
{
  Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
  Blk__PgVersion pv = BLK__PG_VERSION__INIT;
  rep.err = err;
  rep.message = (char *)(msg ? msg : "");
  rep.epoch = epoch;
  pv.epoch = ver.epoch;
  pv.v = ver.v;
  rep.version = &pv;
  rep.data_crc = crc32c(0, data, len);
  struct msgr_frame req = { .tid = tid };
  msgr_reply_pb(c, &req, MSG_OSD_OP, (const ProtobufCMessage *)&rep, data, len);
}

static void reply_op(msgr_conn *c, uint64_t tid, int err, const char *msg, uint64_t epoch,
                     struct pg_ver ver)
{
  reply_op_data(c, tid, err, msg, epoch, ver, NULL, 0);
}

static void reply_frame_err(struct osd *osd, msgr_conn *c, const struct msgr_frame *f, int err,
                            const char *msg)
{
  struct pg_ver z = { 0, 0 };
  if (f->type == MSG_OSD_OP) {
    reply_op(c, f->tid, err, msg, osd->epoch, z);
  } else {
    Blk__RepOpReply r = BLK__REP_OP_REPLY__INIT;
    r.err = err;
    r.epoch = osd->epoch;
    msgr_reply_pb(c, f, f->type, (const ProtobufCMessage *)&r, NULL, 0);
  }
}

static void pg_park(struct pg *pg, struct pg_parked *p)
{
  if (pg->waiting_tail)
    pg->waiting_tail->next = p;
  else
    pg->waiting = p;
  pg->waiting_tail = p;
}

static void dispatch(struct osd *osd, msgr_conn *c, const struct msgr_frame *f);

/* Re-run every parked op of pg (they park again if still blocked). */
void pg_wake(struct pg *pg)
{
  struct pg_parked *list = pg->waiting;
  pg->waiting = pg->waiting_tail = NULL;
  while (list) {
    struct pg_parked *p = list;
    list = p->next;
    dispatch(pg->osd, p->conn, &p->f);
    park_free(p);
  }
}

static void fail_parked(struct osd *osd, struct pg_parked **head, struct pg_parked **tail,
                        int err, const char *msg)
{
  while (*head) {
    struct pg_parked *p = *head;
    *head = p->next;
    reply_frame_err(osd, p->conn, &p->f, err, msg);
    park_free(p);
  }
  if (tail)
    *tail = NULL;
}

/* ---- writes in flight ------------------------------------------------------ */

static void op_free(struct pg_op *op)
{
  if (op->conn)
    msgr_conn_put(op->conn);
  free(op->name);
  free(op);
}

static void op_unlink(struct pg *pg, struct pg_op *op)
{
  struct pg_op **pp = &pg->inflight, *prev = NULL;
  while (*pp && *pp != op) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (!*pp)
    return;
  *pp = op->next;
  if (pg->inflight_tail == op)
    pg->inflight_tail = prev;
}

/* Forget op (already unlinked): freed now, or by its store callback. */
static void op_detach(struct pg_op *op)
{
  if (op->local_done) {
    op_free(op);
    return;
  }
  op->next = NULL;
  op->pg = NULL;
  if (op->conn)
    msgr_conn_put(op->conn);
  op->conn = NULL;
}

/* Answer the client and forget op if everything is durable. */
static void op_maybe_done(struct pg_op *op)
{
  struct pg *pg = op->pg;
  if (op->pending > 0 || op->failed || !op->local_done)
    return;
  if (op->conn)
    reply_op(op->conn, op->tid, 0, NULL, pg->osd->epoch, op->ver);
  op_unlink(pg, op);
  op_free(op);
  if (pg->waiting)
    pg_wake(pg);
}

static void op_local_cb(void *arg, int result)
{
  struct pg_op *op = arg;
  pg_store_pending--;
  if (!op->pg) {
    op_free(op);     /* the PG went away (stop) */
    return;
  }
  op->local_done = true;
  if (result < 0) {
    log_err("pg", "%u.%x: local write of '%s' v%llu failed: %s", op->pg->pool, op->pg->id,
            op->name, (unsigned long long)op->ver.v, strerror(-result));
    /* the store refused it: the replicas may have it; fail the client, the
     * next peering makes the members agree again */
    if (op->conn) {
      char why[96];
      snprintf(why, sizeof why, "osd.%d store: %s%s", op->pg->osd->id, strerror(-result),
               result == -ENOSPC ? " (OSD full)" : "");
      reply_op(op->conn, op->tid, result, why, op->pg->osd->epoch, op->ver);
    }
    struct pg *pg = op->pg;
    pg_write_failed(pg, op->ver, result);
    op_unlink(pg, op);
    op_free(op);
    if (pg->primary)
      peering_start(pg);
    return;
  }
  op->pending--;
  op_maybe_done(op);
}

struct repop_ctx {
  struct osd *osd;
  uint32_t pool, pgid;
  struct pg_ver ver;
  uint64_t seq;
  int32_t peer;
};

static struct pg_op *find_op(struct pg *pg, struct pg_ver ver)
{
  for (struct pg_op *op = pg->inflight; op; op = op->next)
    if (!pg_ver_cmp(op->ver, ver))
      return op;
  return NULL;
}

static void repop_cb(void *arg, int err, const struct msgr_frame *f)
{
  struct repop_ctx *rc = arg;
  struct osd *osd = rc->osd;
  struct repop_ctx ctx = *rc;
  free(rc);
  if (err == -ECANCELED)
    return;
  struct pg *pg = pg_get(osd, ctx.pool, ctx.pgid, false);
  if (!pg)
    return;
  struct pg_op *op = find_op(pg, ctx.ver);
  if (!op || op->seq != ctx.seq)
    return;   /* answered already (after peering) */
  int rerr = err;
  if (!err) {
    Blk__RepOpReply *r = blk__rep_op_reply__unpack(NULL, f->payload_len, f->payload);
    rerr = r ? r->err : -EPROTO;
    if (r && r->epoch > osd->epoch)
      monc_want_epoch(osd->monc, r->epoch);
    if (r)
      osd_space_note(osd, ctx.peer, r->space);
    if (r)
      blk__rep_op_reply__free_unpacked(r, NULL);
  }
  if (rerr) {
    log_info("pg", "%u.%x: osd.%d did not take v%llu'%llu (%s): peering again", pg->pool,
             pg->id, ctx.peer, (unsigned long long)ctx.ver.epoch,
             (unsigned long long)ctx.ver.v, strerror(-rerr));
    op->failed = true;
    if (pg->primary && pg->state == PG_ACTIVE)
      peering_start(pg);
    return;
  }
  op->pending--;
  op_maybe_done(op);
}

/* Acknowledge or fail the in-flight writes after peering: the final log
 * and every member now agree up to pg->last. */
void pg_activated(struct pg *pg)
{
  pg->osd->stats_dirty = true;
  struct pg_op *op = pg->inflight;
  pg->inflight = pg->inflight_tail = NULL;
  while (op) {
    struct pg_op *nx = op->next;
    op->next = NULL;
    bool held = false;
    for (size_t i = pg->log_n; i-- > 0;) {
      struct pg_log_ent *e = pg_log_at(pg, i);
      if (pg_ver_cmp(e->ver, op->ver) < 0)
        break;
      if (!pg_ver_cmp(e->ver, op->ver)) {
        held = true;
        break;
      }
    }
    if (held && !op->local_done) {
      /* every member has it once the local transaction completes (in order) */
      op->pending = 1;
      op->failed = false;
      op->seq = pg->peer_seq;
      if (pg->inflight_tail)
        pg->inflight_tail->next = op;
      else
        pg->inflight = op;
      pg->inflight_tail = op;
    } else {
      if (op->conn)
        reply_op(op->conn, op->tid, held ? 0 : -EAGAIN, held ? NULL : "write lost in peering; retry",
                 pg->osd->epoch, op->ver);
      op_detach(op);
    }
    op = nx;
  }
  pg_wake(pg);
}

/* ---- client ops ------------------------------------------------------------- */

static bool is_write_op(int op)
{
  switch (op) {
  case BLK__OSD_OP_TYPE__OP_WRITE:
  case BLK__OSD_OP_TYPE__OP_WRITEFULL:
  case BLK__OSD_OP_TYPE__OP_REMOVE:
  case BLK__OSD_OP_TYPE__OP_ZERO:
  case BLK__OSD_OP_TYPE__OP_TRUNCATE:
  case BLK__OSD_OP_TYPE__OP_SETXATTR:
  case BLK__OSD_OP_TYPE__OP_RMXATTR:
  case BLK__OSD_OP_TYPE__OP_OMAP_SET:
  case BLK__OSD_OP_TYPE__OP_OMAP_RM:
  case BLK__OSD_OP_TYPE__OP_LOCK:
  case BLK__OSD_OP_TYPE__OP_UNLOCK:
  case BLK__OSD_OP_TYPE__OP_LOCK_BREAK:
  case BLK__OSD_OP_TYPE__OP_SNAPTRIM:
    return true;
  default:
    return false;
  }
}

static bool is_lock_op(int op)
{
  return op == BLK__OSD_OP_TYPE__OP_LOCK || op == BLK__OSD_OP_TYPE__OP_UNLOCK ||
         op == BLK__OSD_OP_TYPE__OP_LOCK_BREAK || op == BLK__OSD_OP_TYPE__OP_LOCK_INFO;
}

/* A write that must read its object before it is decided: the version
 * guard, the lock ops, and removals that must see the object exist. */
static bool is_rmw(const Blk__OsdOp *req)
{
  return req->has_assert_version || is_lock_op(req->op) ||
         req->op == BLK__OSD_OP_TYPE__OP_RMXATTR || req->op == BLK__OSD_OP_TYPE__OP_OMAP_RM ||
         snap_needs_plan(req);
}

static struct pg_ver ver_decode(const void *val, size_t len)
{
  struct pg_ver v = { 0, 0 };
  if (val && len == 16) {
    v.epoch = get_le64(val);
    v.v = get_le64((const uint8_t *)val + 8);
  }
  return v;
}

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- lock records (docs/osd.md "Lock record") ----
 * The value of xattr "@lock.<name>", little-endian:
 *   off  len  field
 *     0    1  format (1)
 *     1    1  N = length of the holder's client nonce (1..63)
 *     2    2  C = length of the cookie (0..1024)
 *     4    8  expiry, wall-clock ms since the Unix epoch (int64)
 *    12    N  holder nonce (the reqid prefix before '.')
 *  12+N    C  cookie
 */
#define LOCK_REC_HDR 12
#define LOCK_COOKIE_MAX 1024

struct lock_rec {
  char nonce[PG_REQID_MAX];
  char cookie[LOCK_COOKIE_MAX + 1];
  size_t cookie_len;
  int64_t expire_ms;
};

static size_t lock_encode(const struct lock_rec *l, uint8_t *buf)
{
  size_t n = strlen(l->nonce);
  buf[0] = 1;
  buf[1] = (uint8_t)n;
  put_le16(buf + 2, (uint16_t)l->cookie_len);
  put_le64(buf + 4, (uint64_t)l->expire_ms);
  memcpy(buf + LOCK_REC_HDR, l->nonce, n);
  memcpy(buf + LOCK_REC_HDR + n, l->cookie, l->cookie_len);
  return LOCK_REC_HDR + n + l->cookie_len;
}

static int lock_decode(const uint8_t *b, size_t len, struct lock_rec *l)
{
  if (len < LOCK_REC_HDR || b[0] != 1)
    return -EUCLEAN;
  size_t n = b[1], c = get_le16(b + 2);
  if (n == 0 || n >= sizeof l->nonce || c > LOCK_COOKIE_MAX || LOCK_REC_HDR + n + c != len)
    return -EUCLEAN;
  l->expire_ms = (int64_t)get_le64(b + 4);
  memcpy(l->nonce, b + LOCK_REC_HDR, n);
  l->nonce[n] = 0;
  memcpy(l->cookie, b + LOCK_REC_HDR + n, c);
  l->cookie[c] = 0;
  l->cookie_len = c;
  return 0;
}

/* The client nonce of a reqid ("<nonce>.<seq>"). */
static void reqid_nonce(const char *reqid, char *out, size_t n)
{
  size_t l = strcspn(reqid, ".");
  if (l >= n)
    l = n - 1;
  memcpy(out, reqid, l);
  out[l] = 0;
}

/* ---- reads ---- */

struct read_ctx {
  struct pg *pg;
  struct osd *osd;
  msgr_conn *conn;
  uint64_t tid;
  int op;
  char *name, *key, *after;
  uint64_t off, len;
  unsigned max;
  struct store_stat st;
  uint8_t *buf;
  void *vval;                   /* PG_VER_ATTR value */
  size_t vlen;
  struct pg_ver ver;
  void *kval;                   /* xattr/omap value */
  size_t klen;
  struct store_kv *kv;          /* OP_OMAP_LIST */
  size_t n_kv;
  uint64_t *ext;                /* OP_MAPEXT */
  size_t n_ext;
  int pending, ver_r, stat_r;   /* READ/STAT: version and stat in parallel */
  uint64_t snap;                /* store snap read (STORE_SNAP_HEAD or a clone) */
  void *ssval;                  /* snapset (reads at a snapshot) */
  size_t sslen;
};

static void read_ctx_free(struct read_ctx *rc)
{
  msgr_conn_put(rc->conn);
  free(rc->name);
  free(rc->key);
  free(rc->after);
  free(rc->buf);
  free(rc->vval);
  free(rc->kval);
  store_kv_free(rc->kv, rc->n_kv);
  free(rc->ext);
  free(rc->ssval);
  free(rc);
}

static void read_done_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  pg_store_pending--;
  Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
  Blk__PgVersion pv = BLK__PG_VERSION__INIT;
  rep.epoch = rc->osd->epoch;
  rep.message = "";
  pv.epoch = rc->ver.epoch;
  pv.v = rc->ver.v;
  rep.version = &pv;
  const uint8_t *data = NULL;
  size_t n = 0;
  char **names = NULL;
  ProtobufCBinaryData *vals = NULL;
  if (result < 0) {
    rep.err = result;
    rep.message = result == -ENOENT    ? "no such object"
                  : result == -ENODATA ? (rc->op == BLK__OSD_OP_TYPE__OP_GETXATTR
                                              ? "no such attribute"
                                              : "no such key")
                                       : (char *)strerror(-result);
  } else {
    switch (rc->op) {
    case BLK__OSD_OP_TYPE__OP_READ:
    case BLK__OSD_OP_TYPE__OP_STAT:
      n = rc->len;
      data = rc->buf;
      rep.size = rc->st.size;
      break;
    case BLK__OSD_OP_TYPE__OP_GETXATTR:
    case BLK__OSD_OP_TYPE__OP_OMAP_GET:
    case BLK__OSD_OP_TYPE__OP_LOCK_INFO:
      n = rc->klen;
      data = rc->kval;
      break;
    case BLK__OSD_OP_TYPE__OP_OMAP_LIST:
      names = calloc(rc->n_kv + 1, sizeof *names);
      vals = calloc(rc->n_kv + 1, sizeof *vals);
      if (!names || !vals) {
        rep.err = -ENOMEM;
        break;
      }
      for (size_t i = 0; i < rc->n_kv && i < rc->max; i++) {
        names[i] = rc->kv[i].key;
        vals[i].data = rc->kv[i].val;
        vals[i].len = rc->kv[i].len;
        rep.n_names = rep.n_values = i + 1;
      }
      rep.names = names;
      rep.values = vals;
      rep.more = rc->n_kv > rc->max;
      break;
    case BLK__OSD_OP_TYPE__OP_MAPEXT:
      rep.extents = rc->ext;
      rep.n_extents = 2 * rc->n_ext;
      break;
    default:
      break;
    }
  }
  rep.data_crc = crc32c(0, data, n);
  struct msgr_frame req = { .tid = rc->tid };
  msgr_reply_pb(rc->conn, &req, MSG_OSD_OP, (const ProtobufCMessage *)&rep, data, (uint32_t)n);
  free(names);
  free(vals);
  read_ctx_free(rc);
}

static void stat_done_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  if (result == 0 && rc->op == BLK__OSD_OP_TYPE__OP_READ) {
    uint64_t size = rc->st.size;
    uint64_t max = (uint64_t)config_get_int(rc->osd->cfg, "msgr_max_data");
    if (rc->off >= size)
      rc->len = 0;
    else if (rc->len == 0 || rc->off + rc->len > size)
      rc->len = size - rc->off;
    if (rc->len > max) {
      result = -EFBIG;
    } else {
      rc->buf = malloc(rc->len ? rc->len : 1);
      if (!rc->buf) {
        result = -ENOMEM;
      } else if (rc->len) {
        struct store_oid oid = { rc->pg->pool, rc->pg->id, rc->name, rc->snap };
        store_read(rc->osd->st, &oid, rc->off, rc->len, rc->buf, read_done_cb, rc);
        return;   /* pg_store_pending stays counted */
      }
    }
  } else if (rc->op == BLK__OSD_OP_TYPE__OP_STAT) {
    rc->len = 0;
  }
  read_done_cb(rc, result);
}

static void kv_done_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  if (result == -ENODATA && rc->op == BLK__OSD_OP_TYPE__OP_LOCK_INFO)
    result = 0;   /* free: empty data */
  read_done_cb(rc, result);
}

/* READ/STAT: the version lookup and the stat were submitted together
 * (both see the same state); continue once both are back. */
static void rs_part_done(struct read_ctx *rc)
{
  if (--rc->pending > 0)
    return;
  if (rc->ver_r < 0 && rc->ver_r != -ENODATA) {
    read_done_cb(rc, rc->ver_r);
    return;
  }
  rc->ver = ver_decode(rc->vval, rc->vlen);
  stat_done_cb(rc, rc->stat_r);
}

static void rs_ver_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  rc->ver_r = result;
  rs_part_done(rc);
}

static void rs_stat_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  rc->stat_r = result;
  rs_part_done(rc);
}

/* The object's version is known (or the object is missing): run the op. */
static void ver_done_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  if (result < 0 && result != -ENODATA) {
    read_done_cb(rc, result);
    return;
  }
  rc->ver = ver_decode(rc->vval, rc->vlen);
  struct store_oid oid = { rc->pg->pool, rc->pg->id, rc->name, rc->snap };
  store *st = rc->osd->st;
  switch (rc->op) {
  case BLK__OSD_OP_TYPE__OP_GETXATTR:
    store_getattr(st, &oid, rc->key, &rc->kval, &rc->klen, kv_done_cb, rc);
    break;
  case BLK__OSD_OP_TYPE__OP_LOCK_INFO:
    store_getattr(st, &oid, rc->key, &rc->kval, &rc->klen, kv_done_cb, rc);
    break;
  case BLK__OSD_OP_TYPE__OP_OMAP_GET:
    store_omap_get(st, &oid, rc->key, &rc->kval, &rc->klen, kv_done_cb, rc);
    break;
  case BLK__OSD_OP_TYPE__OP_OMAP_LIST:
    store_omap_range(st, &oid, rc->after[0] ? rc->after : NULL, rc->max + 1, &rc->kv, &rc->n_kv,
                     read_done_cb, rc);
    break;
  case BLK__OSD_OP_TYPE__OP_MAPEXT:
    store_mapext(st, &oid, rc->off, rc->len, &rc->ext, &rc->n_ext, read_done_cb, rc);
    break;
  default:
    store_stat_size(st, &oid, &rc->st, stat_done_cb, rc);
  }
}

/* A read at snapshot rc->snap: the snapset is read; resolve and go on. */
static void snap_read_cb(void *arg, int result)
{
  struct read_ctx *rc = arg;
  uint64_t snapid = rc->snap;
  if (result == 0 || result == -ENOENT || result == -ENODATA)
    result = snap_resolve(result ? NULL : rc->ssval, result ? 0 : rc->sslen, snapid, &rc->snap);
  if (result < 0) {
    read_done_cb(rc, result);
    return;
  }
  struct store_oid oid = { rc->pg->pool, rc->pg->id, rc->name, rc->snap };
  store_getattr(rc->osd->st, &oid, PG_VER_ATTR, &rc->vval, &rc->vlen, ver_done_cb, rc);
}

static void do_read(struct pg *pg, msgr_conn *c, uint64_t tid, const Blk__OsdOp *req)
{
  struct read_ctx *rc = calloc(1, sizeof *rc);
  char lkey[STORE_NAME_MAX + 1];
  const char *key = req->key;
  if (req->op == BLK__OSD_OP_TYPE__OP_LOCK_INFO) {
    snprintf(lkey, sizeof lkey, "%s%s", PG_LOCK_PREFIX, req->key);
    key = lkey;
  }
  if (!rc || !(rc->name = strdup(req->name)) || !(rc->key = strdup(key)) ||
      !(rc->after = strdup(req->list_after))) {
    if (rc) {
      free(rc->name);
      free(rc->key);
    }
    free(rc);
    reply_op(c, tid, -ENOMEM, "out of memory", pg->osd->epoch, pg->last);
    return;
  }
  rc->pg = pg;
  rc->osd = pg->osd;
  rc->conn = msgr_conn_get(c);
  rc->tid = tid;
  rc->op = req->op;
  rc->off = req->offset;
  rc->len = req->length;
  rc->max = req->list_max ? req->list_max : 1000;
  if (rc->max > 10000)
    rc->max = 10000;
  rc->snap = STORE_SNAP_HEAD;
  pg_store_pending++;
  if (req->snapid) {
    /* at a snapshot: find the clone first (osd/snap.c) */
    struct store_oid dir = { pg->pool, pg->id, rc->name, SNAP_DIR };
    rc->snap = req->snapid;
    store_getattr(pg->osd->st, &dir, SNAP_ATTR, &rc->ssval, &rc->sslen, snap_read_cb, rc);
    return;
  }
  struct store_oid oid = { pg->pool, pg->id, rc->name, rc->snap };
  if (rc->op == BLK__OSD_OP_TYPE__OP_READ || rc->op == BLK__OSD_OP_TYPE__OP_STAT) {
    rc->pending = 2;
    store_getattr(pg->osd->st, &oid, PG_VER_ATTR, &rc->vval, &rc->vlen, rs_ver_cb, rc);
    store_stat_size(pg->osd->st, &oid, &rc->st, rs_stat_cb, rc);
    return;
  }
  store_getattr(pg->osd->st, &oid, PG_VER_ATTR, &rc->vval, &rc->vlen, ver_done_cb, rc);
}

static void do_list(struct pg *pg, msgr_conn *c, uint64_t tid, const Blk__OsdOp *req)
{
  unsigned max = req->list_max ? req->list_max : 1000;
  if (max > 10000)
    max = 10000;
  struct store_list_ent *ents = NULL;
  int n = store_list(pg->osd->st, pg->pool, pg->id,
                     req->list_after[0] ? req->list_after : NULL, STORE_SNAP_HEAD, max + 1, &ents);
  Blk__OsdOpReply rep = BLK__OSD_OP_REPLY__INIT;
  rep.epoch = pg->osd->epoch;
  rep.message = "";
  if (n < 0) {
    rep.err = n;
  } else {
    rep.names = calloc((size_t)n + 1, sizeof *rep.names);
    for (int i = 0; rep.names && i < n && rep.n_names < max; i++)
      if (ents[i].name[0] != '@' && ents[i].snap == STORE_SNAP_HEAD)
        rep.names[rep.n_names++] = ents[i].name;
    rep.more = (unsigned)n > max;
  }
  struct msgr_frame f = { .tid = tid };
  msgr_reply_pb(c, &f, MSG_OSD_OP, (const ProtobufCMessage *)&rep, NULL, 0);
  free(rep.names);
  if (n >= 0)
    store_list_free(ents, n);
}

static bool write_in_flight(struct pg *pg, const char *name)
{
  for (struct pg_op *op = pg->inflight; op; op = op->next)
    if (!strcmp(op->name, name))
      return true;
  return false;
}

/* ---- writes ---- */

/* A modifying op as replicated: what do_write logs and forwards. */
struct wop {
  int op;
  const char *name, *key, *reqid;
  uint64_t off, len;            /* len: data length, or OP_ZERO's length */
  const void *data;
  uint32_t data_len, crc;
  const struct snap_plan *snap; /* snapshot work first (osd/snap.c), or NULL */
};

/* A resend of a write already in the log or in flight: answered (or
 * re-attached) here, true. */
static bool dedup(struct pg *pg, msgr_conn *c, uint64_t tid, const Blk__OsdOp *req)
{
  if (!req->reqid[0])
    return false;
  for (struct pg_op *op = pg->inflight; op; op = op->next)
    if (!strcmp(op->reqid, req->reqid)) {
      if (op->conn)
        msgr_conn_put(op->conn);
      op->conn = msgr_conn_get(c);
      op->tid = tid;
      return true;
    }
  /* only a resend can be in the log: first attempts skip the scan */
  for (size_t i = pg->log_n; req->resend && i-- > 0;) {
    struct pg_log_ent *e = pg_log_at(pg, i);
    if (!strcmp(e->reqid, req->reqid)) {
      reply_op(c, tid, 0, NULL, pg->osd->epoch, e->ver);
      return true;
    }
  }
  return false;
}

static void do_write(struct pg *pg, msgr_conn *c, uint64_t tid, const struct wop *w)
{
  struct osd *osd = pg->osd;
  struct pg_op *op = calloc(1, sizeof *op);
  store_txn *t = store_txn_new();
  if (!op || !t || !(op->name = strdup(w->name))) {
    free(op);
    store_txn_free(t);
    reply_op(c, tid, -ENOMEM, "out of memory", osd->epoch, pg->last);
    return;
  }
  struct pg_ver prev = pg->last;
  struct pg_ver ver = { osd->epoch, pg->last.v + 1 };
  if (ver.epoch < pg->last.epoch)
    ver.epoch = pg->last.epoch;
  int r = w->snap ? snap_txn(t, pg, w->name, w->snap) : 0;
  if (r == 0)
    r = pg_txn_object(t, pg, w->op, w->name, w->key, w->off, w->len, w->data);
  if (r == 0 && w->op != BLK__OSD_OP_TYPE__OP_REMOVE && w->op != BLK__OSD_OP_TYPE__OP_SNAPTRIM)
    r = pg_txn_version(t, pg, w->name, ver);
  if (r == 0)
    r = pg_log_append(pg, t, ver, (uint8_t)w->op, w->reqid, w->name);
  if (r < 0) {
    store_txn_free(t);
    free(op->name);
    free(op);
    reply_op(c, tid, r, "cannot build the transaction", osd->epoch, pg->last);
    return;
  }
  op->pg = pg;
  op->conn = msgr_conn_get(c);
  op->tid = tid;
  op->ver = ver;
  op->seq = pg->peer_seq;
  snprintf(op->reqid, sizeof op->reqid, "%s", w->reqid);
  op->pending = 1;
  for (size_t i = 1; i < pg->n_acting; i++)
    op->pending += !!(pg->write_mask & (1u << i));
  if (pg->inflight_tail)
    pg->inflight_tail->next = op;
  else
    pg->inflight = op;
  pg->inflight_tail = op;
  /* replicas first, written at once: their journal writes are the
   * critical path (they start a network hop after ours), so they should
   * not also wait for our own transaction preparation */
  Blk__RepOp ro = BLK__REP_OP__INIT;
  Blk__PgVersion pv = BLK__PG_VERSION__INIT, pp = BLK__PG_VERSION__INIT;
  ro.pool = pg->pool;
  ro.pg = pg->id;
  ro.name = (char *)w->name;
  ro.op = w->op;
  ro.offset = w->off;
  ro.length = w->op == BLK__OSD_OP_TYPE__OP_ZERO ? w->len : w->data_len;
  ro.data_crc = w->crc;
  ro.epoch = osd->epoch;
  ro.key = (char *)(w->key ? w->key : "");
  pv.epoch = ver.epoch;
  pv.v = ver.v;
  pp.epoch = prev.epoch;
  pp.v = prev.v;
  ro.version = &pv;
  ro.prev = &pp;
  ro.reqid = (char *)w->reqid;
  if (w->snap)
    snap_plan_to_repop(w->snap, &ro);
  for (size_t i = 1; i < pg->n_acting; i++) {
    if (!(pg->write_mask & (1u << i)))
      continue;   /* being recovered in the background */
    msgr_conn *pc = osd_peer_conn(osd, pg->acting[i]);
    struct repop_ctx *rc = malloc(sizeof *rc);
    if (!pc || !rc || msgr_call_pb(pc, MSG_OSD_REPOP, (const ProtobufCMessage *)&ro, w->data,
                                   w->data_len, (int)osd->op_timeout, repop_cb, rc) < 0) {
      free(rc);
      op->failed = true;
      continue;
    }
    *rc = (struct repop_ctx){ osd, pg->pool, pg->id, ver, op->seq, pg->acting[i] };
    msgr_conn_flush_now(pc);
  }
  pg_store_pending++;
  store_queue(osd->st, t, op_local_cb, op);
  if (op->failed)
    peering_start(pg);
}

/* The wop of a plain client write (its data is the frame's). */
static void wop_from_req(struct wop *w, const Blk__OsdOp *req, const struct msgr_frame *f)
{
  w->op = req->op;
  w->name = req->name;
  w->key = req->key;
  w->reqid = req->reqid;
  w->off = req->offset;
  w->len = req->op == BLK__OSD_OP_TYPE__OP_ZERO ? req->length : f->data_len;
  w->data = f->data;
  w->data_len = f->data_len;
  w->crc = req->data_crc;
  w->snap = NULL;
}

/* ---- read-modify-write ops ---- */

struct pg_rmw {
  struct pg_rmw *next;
  struct osd *osd;
  uint32_t pool, pgid;
  uint64_t gen;                 /* pg->rmw_gen when started */
  struct pg_parked *p;          /* the op's frame (owns the conn reference) */
  Blk__OsdOp *req;              /* unpacked from p */
  int pending, ver_r, aux_r;
  void *ver_val, *aux_val;      /* PG_VER_ATTR; the lock or removed xattr */
  size_t ver_len, aux_len;
  int ss_r;                     /* snapset of the snap directory (osd/snap.c) */
  void *ss_val;
  size_t ss_len;
  char aux_key[STORE_NAME_MAX + 1];
};

static bool rmw_busy(struct pg *pg, const char *name)
{
  for (struct pg_rmw *x = pg->rmw; x; x = x->next)
    if (!strcmp(x->req->name, name))
      return true;
  for (struct pg_parked *p = pg->waiting; p; p = p->next)
    if (p->obj && !strcmp(p->obj, name))
      return true;
  return false;
}

static void rmw_free(struct pg_rmw *x)
{
  if (x->p)
    park_free(x->p);
  if (x->req)
    blk__osd_op__free_unpacked(x->req, NULL);
  free(x->ver_val);
  free(x->aux_val);
  free(x->ss_val);
  free(x);
}

/* Park op f on pg behind the other ops on its object (keeps their order). */
static void park_obj(struct pg *pg, msgr_conn *c, const struct msgr_frame *f, const char *name,
                     const char *why)
{
  struct pg_parked *p = park_new(c, f, pg->osd->op_timeout * 3, -ETIMEDOUT, why);
  if (!p) {
    reply_op(c, f->tid, -ENOMEM, "out of memory", pg->osd->epoch, pg->last);
    return;
  }
  p->obj = strdup(name);
  pg_park(pg, p);
}

/* Decide a read-modify-write op once its object has been read: fills w
 * (the op to replicate) or answers the client and returns false. */
static bool rmw_decide(struct pg *pg, struct pg_rmw *x, struct wop *w, uint8_t *rec)
{
  struct osd *osd = pg->osd;
  const Blk__OsdOp *req = x->req;
  msgr_conn *c = x->p->conn;
  uint64_t tid = x->p->f.tid;
  char msg[400];
  if (x->ver_r < 0 && x->ver_r != -ENOENT && x->ver_r != -ENODATA) {
    reply_op(c, tid, x->ver_r, "cannot read the object", osd->epoch, pg->last);
    return false;
  }
  bool exists = x->ver_r != -ENOENT;
  struct pg_ver cur = ver_decode(x->ver_val, x->ver_len);
  if (req->has_assert_version) {
    struct pg_ver want = { req->assert_version->epoch, req->assert_version->v };
    bool must_be_absent = !want.epoch && !want.v;
    if (must_be_absent ? exists : !exists || pg_ver_cmp(cur, want)) {
      if (!exists)
        snprintf(msg, sizeof msg, "version mismatch: object does not exist (expected %llu'%llu)",
                 (unsigned long long)want.epoch, (unsigned long long)want.v);
      else
        snprintf(msg, sizeof msg, "version mismatch: object is at %llu'%llu (expected %llu'%llu)",
                 (unsigned long long)cur.epoch, (unsigned long long)cur.v,
                 (unsigned long long)want.epoch, (unsigned long long)want.v);
      reply_op(c, tid, -ECANCELED, msg, osd->epoch, cur);
      return false;
    }
  }
  wop_from_req(w, req, &x->p->f);
  switch (req->op) {
  case BLK__OSD_OP_TYPE__OP_RMXATTR:
  case BLK__OSD_OP_TYPE__OP_OMAP_RM:
    if (!exists) {
      reply_op(c, tid, -ENOENT, "no such object", osd->epoch, cur);
      return false;
    }
    if (req->op == BLK__OSD_OP_TYPE__OP_RMXATTR && x->aux_r == -ENODATA) {
      reply_op(c, tid, -ENODATA, "no such attribute", osd->epoch, cur);
      return false;
    }
    return true;
  case BLK__OSD_OP_TYPE__OP_LOCK:
  case BLK__OSD_OP_TYPE__OP_UNLOCK:
  case BLK__OSD_OP_TYPE__OP_LOCK_BREAK:
    break;
  default:
    return true;
  }
  /* lock ops: x->aux_val is the holder record (if any) */
  const char *lname = req->key;
  struct lock_rec h, me;
  bool held = false;
  if (x->aux_r == 0) {
    if (lock_decode(x->aux_val, x->aux_len, &h) < 0) {
      snprintf(msg, sizeof msg, "lock '%.100s' has a corrupt record", lname);
      reply_op(c, tid, -EUCLEAN, msg, osd->epoch, cur);
      return false;
    }
    held = true;
  } else if (x->aux_r != -ENODATA && x->aux_r != -ENOENT) {
    reply_op(c, tid, x->aux_r, "cannot read the lock", osd->epoch, cur);
    return false;
  }
  int64_t now = wall_ms();
  memset(&me, 0, sizeof me);
  reqid_nonce(req->reqid, me.nonce, sizeof me.nonce);
  const uint8_t *data = x->p->f.data;
  uint32_t dlen = x->p->f.data_len;
  bool mine = held && !strcmp(h.nonce, me.nonce) && h.cookie_len == dlen &&
              !memcmp(h.cookie, data, dlen);
  w->key = x->aux_key;
  w->data = NULL;
  w->data_len = 0;
  w->len = 0;
  w->crc = 0;
  if (req->op == BLK__OSD_OP_TYPE__OP_LOCK) {
    if (held && !mine && h.expire_ms > now) {
      snprintf(msg, sizeof msg, "lock '%.100s' is held by client %s (cookie '%.100s') for %lld more ms",
               lname, h.nonce, h.cookie, (long long)(h.expire_ms - now));
      reply_op_data(c, tid, -EBUSY, msg, osd->epoch, cur, x->aux_val, (uint32_t)x->aux_len);
      return false;
    }
    memcpy(me.cookie, data, dlen);
    me.cookie_len = dlen;
    int64_t lease = req->offset ? (int64_t)req->offset : osd->lock_lease_ms;
    me.expire_ms = now + lease;
    w->op = BLK__OSD_OP_TYPE__OP_SETXATTR;
    w->data = rec;
    w->data_len = (uint32_t)lock_encode(&me, rec);
    w->len = w->data_len;
    w->crc = crc32c(0, rec, w->data_len);
    return true;
  }
  if (!held) {
    snprintf(msg, sizeof msg, "lock '%.100s' is not held", lname);
    reply_op(c, tid, -ENOENT, msg, osd->epoch, cur);
    return false;
  }
  if (req->op == BLK__OSD_OP_TYPE__OP_UNLOCK && !mine) {
    snprintf(msg, sizeof msg, "lock '%.100s' is held by client %s (cookie '%.100s'), not by this client",
             lname, h.nonce, h.cookie);
    reply_op_data(c, tid, -EPERM, msg, osd->epoch, cur, x->aux_val, (uint32_t)x->aux_len);
    return false;
  }
  if (req->op == BLK__OSD_OP_TYPE__OP_LOCK_BREAK && dlen &&
      (strlen(h.nonce) != dlen || memcmp(h.nonce, data, dlen))) {
    snprintf(msg, sizeof msg, "lock '%.100s' is held by client %s, not %.*s", lname, h.nonce,
             (int)(dlen > 64 ? 64 : dlen), (const char *)data);
    reply_op_data(c, tid, -ECANCELED, msg, osd->epoch, cur, x->aux_val, (uint32_t)x->aux_len);
    return false;
  }
  w->op = BLK__OSD_OP_TYPE__OP_RMXATTR;
  w->crc = crc32c(0, NULL, 0);
  return true;
}

static void rmw_read_cb(void *arg, int result);
static int op_admit(struct osd *osd, msgr_conn *c, const struct msgr_frame *f,
                    const Blk__OsdOp *req);

static void rmw_aux_cb(void *arg, int result)
{
  struct pg_rmw *x = arg;
  x->aux_r = result;
  rmw_read_cb(x, INT32_MIN);
}

static void rmw_ss_cb(void *arg, int result)
{
  struct pg_rmw *x = arg;
  x->ss_r = result;
  rmw_read_cb(x, INT32_MIN);
}

/* Snapshot work of a decided op (osd/snap.c): false if answered. */
static bool rmw_snap(struct pg *pg, struct pg_rmw *x, struct wop *w, struct snap_plan *sp)
{
  msgr_conn *c = x->p->conn;
  uint64_t tid = x->p->f.tid;
  if (!snap_needs_plan(x->req))
    return true;
  int r = x->ss_r < 0 && x->ss_r != -ENOENT && x->ss_r != -ENODATA ? x->ss_r : 0;
  if (r == 0)
    r = snap_plan_make(x->req, x->ver_r != -ENOENT, x->ss_r ? NULL : x->ss_val,
                       x->ss_r ? 0 : x->ss_len, sp);
  if (r < 0) {
    reply_op(c, tid, r, r == -EUCLEAN ? "corrupt snapset" : "cannot read the snapset",
             pg->osd->epoch, pg->last);
    return false;
  }
  if (x->req->op == BLK__OSD_OP_TYPE__OP_SNAPTRIM && !sp->clone && !sp->n_remove && !sp->has_ss) {
    reply_op(c, tid, 0, NULL, pg->osd->epoch, ver_decode(x->ver_val, x->ver_len));
    return false;   /* nothing to trim */
  }
  w->snap = sp;
  return true;
}

/* result: the version lookup's, or INT32_MIN from rmw_aux_cb. */
static void rmw_read_cb(void *arg, int result)
{
  struct pg_rmw *x = arg;
  if (result != INT32_MIN)
    x->ver_r = result;
  pg_store_pending--;
  if (--x->pending > 0)
    return;
  struct osd *osd = x->osd;
  struct pg *pg = pg_get(osd, x->pool, x->pgid, false);
  if (!pg || pg->rmw_gen != x->gen) {
    /* a new interval began meanwhile: the client resends */
    reply_frame_err(osd, x->p->conn, &x->p->f, -ESTALE, "new interval; retry");
    rmw_free(x);
    return;
  }
  for (struct pg_rmw **pp = &pg->rmw; *pp; pp = &(*pp)->next)
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  if (pg->state != PG_ACTIVE || !pg->primary || pg->n_acting < pg->min_size) {
    /* peering restarted: decide again once active */
    x->p->obj = strdup(x->req->name);
    x->p->deadline_ms = util_now_ms() + osd->op_timeout * 3;
    x->p->err_on_timeout = -ETIMEDOUT;
    snprintf(x->p->why, sizeof x->p->why, "PG %u.%x is peering", pg->pool, pg->id);
    x->p->next = NULL;
    pg_park(pg, x->p);
    x->p = NULL;
    rmw_free(x);
    return;
  }
  struct wop w;
  uint8_t rec[LOCK_REC_HDR + PG_REQID_MAX + LOCK_COOKIE_MAX];
  struct snap_plan sp = { 0 };
  /* admitted again at the decision: a map that arrived meanwhile may
   * have blocklisted the client */
  if (op_admit(osd, x->p->conn, &x->p->f, x->req) == 0 && rmw_decide(pg, x, &w, rec) &&
      rmw_snap(pg, x, &w, &sp))
    do_write(pg, x->p->conn, x->p->f.tid, &w);
  snap_plan_free(&sp);
  rmw_free(x);
  if (pg->waiting)
    pg_wake(pg);
}

/* Read what the op depends on (version, lock record, attribute), then
 * decide in rmw_read_cb.  Later ops on the object park until then. */
static void rmw_start(struct pg *pg, msgr_conn *c, const struct msgr_frame *f)
{
  struct osd *osd = pg->osd;
  struct pg_rmw *x = calloc(1, sizeof *x);
  struct pg_parked *p = x ? park_new(c, f, 0, 0, "") : NULL;
  Blk__OsdOp *req = p ? blk__osd_op__unpack(NULL, p->f.payload_len, p->f.payload) : NULL;
  if (!req) {
    free(x);
    if (p)
      park_free(p);
    reply_op(c, f->tid, -ENOMEM, "out of memory", osd->epoch, pg->last);
    return;
  }
  x->osd = osd;
  x->pool = pg->pool;
  x->pgid = pg->id;
  x->gen = pg->rmw_gen;
  x->p = p;
  x->req = req;
  x->next = pg->rmw;
  pg->rmw = x;
  struct store_oid oid = { pg->pool, pg->id, req->name, STORE_SNAP_HEAD };
  x->aux_r = -ENODATA;
  x->pending = 1;
  if (is_lock_op(req->op)) {
    snprintf(x->aux_key, sizeof x->aux_key, "%s%s", PG_LOCK_PREFIX, req->key);
    x->pending++;
  } else if (req->op == BLK__OSD_OP_TYPE__OP_RMXATTR) {
    snprintf(x->aux_key, sizeof x->aux_key, "%s", req->key);
    x->pending++;
  }
  bool ss = snap_needs_plan(req);
  x->pending += ss;
  pg_store_pending += (unsigned)x->pending;
  bool aux = x->pending - ss > 1;
  store_getattr(osd->st, &oid, PG_VER_ATTR, &x->ver_val, &x->ver_len, rmw_read_cb, x);
  if (aux)
    store_getattr(osd->st, &oid, x->aux_key, &x->aux_val, &x->aux_len, rmw_aux_cb, x);
  if (ss) {
    struct store_oid dir = { pg->pool, pg->id, req->name, SNAP_DIR };
    store_getattr(osd->st, &dir, SNAP_ATTR, &x->ss_val, &x->ss_len, rmw_ss_cb, x);
  }
}

/* Orphan the read-modify-write ops of an ending interval (their reads
 * complete and answer -ESTALE). */
static void rmw_orphan_all(struct pg *pg)
{
  pg->rmw_gen++;
  pg->rmw = NULL;
}

/* ---- admission ---- */

/* Checks every client op passes before anything else (after this OSD has
 * the op's map epoch): the blocklist (fencing).  Auth caps checks belong
 * here too.  Returns 0, or answers the client and returns -errno. */
static int op_admit(struct osd *osd, msgr_conn *c, const struct msgr_frame *f,
                    const Blk__OsdOp *req)
{
  char nonce[PG_REQID_MAX], msg[160];
  reqid_nonce(req->reqid, nonce, sizeof nonce);
  if (nonce[0] && clustermap_blocklisted(osd->map, nonce, wall_ms())) {
    snprintf(msg, sizeof msg, "client %s is blocklisted", nonce);
    log_info("pg", "refusing op from %s: %s (epoch %llu)", msgr_conn_peer(c), msg,
             (unsigned long long)osd->epoch);
    reply_op(c, f->tid, -ESHUTDOWN, msg, osd->epoch, (struct pg_ver){ 0, 0 });
    return -ESHUTDOWN;
  }
  return 0;
}

/* Argument checks of the object ops (before any PG state is looked at):
 * NULL if fine, else the message for -EINVAL. */
static const char *op_bad_args(const Blk__OsdOp *req, const struct msgr_frame *f)
{
  int op = req->op;
  size_t kl = strlen(req->key);
  bool needs_key = op == BLK__OSD_OP_TYPE__OP_GETXATTR || op == BLK__OSD_OP_TYPE__OP_SETXATTR ||
                   op == BLK__OSD_OP_TYPE__OP_RMXATTR || op == BLK__OSD_OP_TYPE__OP_OMAP_GET ||
                   op == BLK__OSD_OP_TYPE__OP_OMAP_SET || op == BLK__OSD_OP_TYPE__OP_OMAP_RM ||
                   is_lock_op(op);
  if (needs_key && (kl == 0 || kl > 1000))
    return "this op needs a key of 1..1000 bytes";
  if ((op == BLK__OSD_OP_TYPE__OP_GETXATTR || op == BLK__OSD_OP_TYPE__OP_SETXATTR ||
       op == BLK__OSD_OP_TYPE__OP_RMXATTR) && req->key[0] == '@')
    return "attribute names starting with '@' are reserved";
  if ((op == BLK__OSD_OP_TYPE__OP_SETXATTR || op == BLK__OSD_OP_TYPE__OP_OMAP_SET) &&
      f->data_len > STORE_VALUE_MAX)
    return "value larger than 65536 bytes";
  if (is_lock_op(op) && op != BLK__OSD_OP_TYPE__OP_LOCK_INFO && !req->reqid[0])
    return "lock ops need a reqid";
  if ((op == BLK__OSD_OP_TYPE__OP_LOCK || op == BLK__OSD_OP_TYPE__OP_UNLOCK) &&
      f->data_len > LOCK_COOKIE_MAX)
    return "lock cookie longer than 1024 bytes";
  if (op == BLK__OSD_OP_TYPE__OP_LOCK && req->offset > 366ull * 86400 * 1000)
    return "lock lease longer than 366 days";
  if (op == BLK__OSD_OP_TYPE__OP_LOCK_BREAK && f->data_len >= PG_REQID_MAX)
    return "holder nonce too long";
  if (req->has_assert_version && (!req->assert_version || !is_write_op(op)))
    return "a version guard needs a version and a modifying op";
  if ((op == BLK__OSD_OP_TYPE__OP_ZERO || op == BLK__OSD_OP_TYPE__OP_MAPEXT) &&
      req->offset + req->length < req->offset)
    return "offset + length overflows";
  if (op == BLK__OSD_OP_TYPE__OP_ZERO && f->data_len)
    return "zero carries no data";
  const char *sbad = snap_bad_args(req);
  if (sbad)
    return sbad;
  if ((op == BLK__OSD_OP_TYPE__OP_TRUNCATE || op == BLK__OSD_OP_TYPE__OP_REMOVE ||
       op == BLK__OSD_OP_TYPE__OP_RMXATTR || op == BLK__OSD_OP_TYPE__OP_OMAP_RM) && f->data_len)
    return "this op carries no data";
  return NULL;
}

static bool is_read_op(int op)
{
  return op == BLK__OSD_OP_TYPE__OP_READ || op == BLK__OSD_OP_TYPE__OP_STAT ||
         op == BLK__OSD_OP_TYPE__OP_GETXATTR || op == BLK__OSD_OP_TYPE__OP_OMAP_GET ||
         op == BLK__OSD_OP_TYPE__OP_OMAP_LIST || op == BLK__OSD_OP_TYPE__OP_MAPEXT ||
         op == BLK__OSD_OP_TYPE__OP_LOCK_INFO;
}

static void handle_op(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__OsdOp *req = blk__osd_op__unpack(NULL, f->payload_len, f->payload);
  if (!req) {
    reply_frame_err(osd, c, f, -EINVAL, "malformed op");
    return;
  }
  char msg[160];
  const struct cluster_map *m = osd->map;
  if (!m || req->epoch > osd->epoch) {
    /* the client knows a newer map: wait for it (a fenced client's op is
     * thus never judged against a map older than the sender's) */
    struct pg_parked *p = park_new(c, f, osd->op_timeout, -ETIMEDOUT, "waiting for a newer map");
    if (p) {
      p->next = osd->map_waiting;
      osd->map_waiting = p;
    }
    monc_want_epoch(osd->monc, req->epoch);
    goto out;
  }
  if (op_admit(osd, c, f, req) < 0)
    goto out;
  const struct cm_pool *pool = clustermap_pool_by_id(m, req->pool);
  if (!pool) {
    reply_op(c, f->tid, req->epoch < osd->epoch ? -ESTALE : -ENOENT, "no such pool", osd->epoch,
             (struct pg_ver){ 0, 0 });
    goto out;
  }
  int aerr = osd_op_allowed(osd, c, pool->name, req->op, msg, sizeof msg);   /* auth.c */
  if (aerr < 0) {
    reply_op(c, f->tid, aerr, msg, osd->epoch, (struct pg_ver){ 0, 0 });
    goto out;
  }
  uint32_t want_pg = req->pg;
  if (req->op != BLK__OSD_OP_TYPE__OP_LIST) {
    size_t nl = strlen(req->name);
    if (nl == 0 || nl > PG_NAME_MAX || req->name[0] == '@' || strlen(req->reqid) >= PG_REQID_MAX) {
      reply_op(c, f->tid, -EINVAL, "bad object name (1..900 bytes, not starting with '@') or reqid",
               osd->epoch, (struct pg_ver){ 0, 0 });
      goto out;
    }
    if (pgmap_object_pg(pool, req->name, &want_pg) < 0 || want_pg != req->pg) {
      reply_op(c, f->tid, -ESTALE, "object is not in that PG at this epoch", osd->epoch,
               (struct pg_ver){ 0, 0 });
      goto out;
    }
    const char *bad = op_bad_args(req, f);
    if (bad) {
      reply_op(c, f->tid, -EINVAL, bad, osd->epoch, (struct pg_ver){ 0, 0 });
      goto out;
    }
  }
  if (req->pg >= pool->pg_num) {
    reply_op(c, f->tid, -ESTALE, "no such PG", osd->epoch, (struct pg_ver){ 0, 0 });
    goto out;
  }
  struct pg *pg = pg_get(osd, req->pool, req->pg, req->local);
  if (req->local) {
    /* debug read of this OSD's own copy */
    if (!pg) {
      reply_op(c, f->tid, -ENOMEM, "out of memory", osd->epoch, (struct pg_ver){ 0, 0 });
    } else if (req->op == BLK__OSD_OP_TYPE__OP_LIST) {
      do_list(pg, c, f->tid, req);
    } else if (is_read_op(req->op)) {
      do_read(pg, c, f->tid, req);
    } else {
      reply_op(c, f->tid, -EINVAL, "local ops are reads only", osd->epoch, pg->last);
    }
    goto out;
  }
  if (!heartbeat_lease_valid(osd, msg, sizeof msg)) {   /* I2: heartbeat.c */
    reply_op(c, f->tid, -ESTALE, msg, osd->epoch, (struct pg_ver){ 0, 0 });
    goto out;
  }
  if (!pg || !pg->primary) {
    snprintf(msg, sizeof msg, "osd.%d is not the primary of PG %u.%x at epoch %llu", osd->id,
             req->pool, req->pg, (unsigned long long)osd->epoch);
    reply_op(c, f->tid, -ESTALE, msg, osd->epoch, (struct pg_ver){ 0, 0 });
    goto out;
  }
  if (pg->state != PG_ACTIVE || pg->n_acting < pg->min_size) {
    bool under = pg->n_acting < pg->min_size;
    if (under)
      snprintf(msg, sizeof msg, "PG %u.%x has %zu of min_size %u members; writes blocked",
               pg->pool, pg->id, pg->n_acting, pg->min_size);
    else
      snprintf(msg, sizeof msg, "PG %u.%x is peering", pg->pool, pg->id);
    struct pg_parked *p = park_new(c, f, under ? osd->undersized_timeout : osd->op_timeout * 3,
                                   under ? -EAGAIN : -ETIMEDOUT, msg);
    if (p) {
      if (req->op != BLK__OSD_OP_TYPE__OP_LIST)
        p->obj = strdup(req->name);   /* keeps per-object order on wake */
      pg_park(pg, p);
    }
    goto out;
  }
  if (req->op == BLK__OSD_OP_TYPE__OP_LIST) {
    do_list(pg, c, f->tid, req);
  } else if (scrub_blocks(pg, req->name)) {
    park_obj(pg, c, f, req->name, "object under repair");
  } else if (is_read_op(req->op)) {
    if (write_in_flight(pg, req->name)) {
      struct pg_parked *p = park_new(c, f, osd->op_timeout * 3, -ETIMEDOUT, "write in flight");
      if (p)
        pg_park(pg, p);
    } else {
      do_read(pg, c, f->tid, req);
    }
  } else if (is_write_op(req->op)) {
    if ((req->op == BLK__OSD_OP_TYPE__OP_WRITE || req->op == BLK__OSD_OP_TYPE__OP_WRITEFULL ||
         req->op == BLK__OSD_OP_TYPE__OP_SETXATTR || req->op == BLK__OSD_OP_TYPE__OP_OMAP_SET ||
         req->op == BLK__OSD_OP_TYPE__OP_LOCK || req->op == BLK__OSD_OP_TYPE__OP_UNLOCK ||
         req->op == BLK__OSD_OP_TYPE__OP_LOCK_BREAK) &&
        (f->data_len != req->length || crc32c(0, f->data, f->data_len) != req->data_crc)) {
      reply_op(c, f->tid, -EBADMSG, "data crc32c or length mismatch", osd->epoch, pg->last);
    } else if (dedup(pg, c, f->tid, req)) {
      /* a resend: answered or re-attached */
    } else if (osd_space_admit(osd, pg, req->op, msg, sizeof msg) < 0) {
      reply_op(c, f->tid, -ENOSPC, msg, osd->epoch, pg->last);
    } else if (rmw_busy(pg, req->name)) {
      park_obj(pg, c, f, req->name, "waiting for an earlier op on the object");
    } else if (is_rmw(req)) {
      if (write_in_flight(pg, req->name))
        park_obj(pg, c, f, req->name, "write in flight");
      else
        rmw_start(pg, c, f);
    } else {
      struct wop w;
      wop_from_req(&w, req, f);
      do_write(pg, c, f->tid, &w);
    }
  } else {
    reply_op(c, f->tid, -EOPNOTSUPP, "unknown op", osd->epoch, pg->last);
  }
out:
  blk__osd_op__free_unpacked(req, NULL);
}

/* ---- replica side ------------------------------------------------------------ */

struct rep_ctx {
  msgr_conn *conn;
  uint64_t tid;
  struct osd *osd;
  uint32_t pool, pgid;
  struct pg_ver ver;     /* the log entry the transaction adds ({0,0}: none) */
};

static void rep_reply(struct osd *osd, msgr_conn *c, uint64_t tid, int err)
{
  Blk__RepOpReply r = BLK__REP_OP_REPLY__INIT;
  r.err = err;
  r.epoch = osd->epoch;
  r.space = osd_space_self(osd, NULL);
  struct msgr_frame req = { .tid = tid };
  msgr_reply_pb(c, &req, MSG_OSD_REPOP, (const ProtobufCMessage *)&r, NULL, 0);
}

static void rep_cb(void *arg, int result)
{
  struct rep_ctx *rc = arg;
  pg_store_pending--;
  if (result < 0 && (rc->ver.epoch || rc->ver.v)) {
    struct pg *pg = pg_get(rc->osd, rc->pool, rc->pgid, false);
    log_err("pg", "%u.%x: replicated write v%llu'%llu failed in the store: %s", rc->pool,
            rc->pgid, (unsigned long long)rc->ver.epoch, (unsigned long long)rc->ver.v,
            strerror(-result));
    if (pg && !pg->primary)
      pg_write_failed(pg, rc->ver, result);
  }
  rep_reply(rc->osd, rc->conn, rc->tid, result);
  msgr_conn_put(rc->conn);
  free(rc);
}

static void handle_repop(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  Blk__RepOp *ro = blk__rep_op__unpack(NULL, f->payload_len, f->payload);
  if (!ro || !ro->version || !ro->prev) {
    rep_reply(osd, c, f->tid, -EINVAL);
    goto out;
  }
  if (!osd->map || ro->epoch > osd->epoch) {
    struct pg_parked *p = park_new(c, f, osd->op_timeout, -ETIMEDOUT, "waiting for a newer map");
    if (p) {
      p->next = osd->map_waiting;
      osd->map_waiting = p;
    }
    monc_want_epoch(osd->monc, ro->epoch);
    goto out;
  }
  struct pg *pg = pg_get(osd, ro->pool, ro->pg, true);
  if (!pg) {
    rep_reply(osd, c, f->tid, -ENOMEM);
    goto out;
  }
  struct pg_ver ver = { ro->version->epoch, ro->version->v };
  struct pg_ver prev = { ro->prev->epoch, ro->prev->v };
  if (ro->epoch < pg->fence_epoch || pg->primary) {
    rep_reply(osd, c, f->tid, -ESTALE);
    goto out;
  }
  bool zero = ro->op == BLK__OSD_OP_TYPE__OP_ZERO;
  if ((zero ? f->data_len != 0 : f->data_len != ro->length) ||
      crc32c(0, f->data, f->data_len) != ro->data_crc) {
    log_warn("pg", "%u.%x: RepOp v%llu from %s fails its crc32c", pg->pool, pg->id,
             (unsigned long long)ver.v, msgr_conn_peer(c));
    rep_reply(osd, c, f->tid, -EBADMSG);
    goto out;
  }
  int r;
  store_txn *t = NULL;
  struct rep_ctx *rc = malloc(sizeof *rc);
  if (!rc) {
    rep_reply(osd, c, f->tid, -ENOMEM);
    goto out;
  }
  rc->pool = pg->pool;
  rc->pgid = pg->id;
  rc->ver = (struct pg_ver){ 0, 0 };
  if (pg_ver_cmp(ver, pg->last) <= 0) {
    /* a resend of something applied: answer once durable (a touch of the
     * meta object orders the answer behind the original transaction) */
    t = store_txn_new();
    struct store_oid meta;
    pg_meta_oid(pg, &meta);
    r = t ? store_txn_touch(t, &meta) : -ENOMEM;
    pg->meta_exists = true;
  } else if (pg_ver_cmp(prev, pg->last) != 0) {
    log_info("pg", "%u.%x: RepOp v%llu'%llu follows %llu'%llu but I have %llu'%llu: refusing",
             pg->pool, pg->id, (unsigned long long)ver.epoch, (unsigned long long)ver.v,
             (unsigned long long)prev.epoch, (unsigned long long)prev.v,
             (unsigned long long)pg->last.epoch, (unsigned long long)pg->last.v);
    free(rc);
    rep_reply(osd, c, f->tid, -EAGAIN);
    goto out;
  } else {
    t = store_txn_new();
    struct snap_plan sp;
    r = !t ? -ENOMEM : snap_plan_from_repop(ro, &sp) ? snap_txn(t, pg, ro->name, &sp) : 0;
    if (r == 0)
      r = pg_txn_object(t, pg, ro->op, ro->name, ro->key[0] ? ro->key : NULL, ro->offset,
                        zero ? ro->length : f->data_len, f->data);
    if (r == 0 && ro->op != BLK__OSD_OP_TYPE__OP_REMOVE && ro->op != BLK__OSD_OP_TYPE__OP_SNAPTRIM)
      r = pg_txn_version(t, pg, ro->name, ver);
    if (r == 0)
      r = pg_log_append(pg, t, ver, (uint8_t)ro->op, ro->reqid, ro->name);
    if (r == 0)
      rc->ver = ver;
  }
  if (r < 0) {
    store_txn_free(t);
    free(rc);
    rep_reply(osd, c, f->tid, r);
    goto out;
  }
  rc->conn = msgr_conn_get(c);
  rc->tid = f->tid;
  rc->osd = osd;
  pg_store_pending++;
  store_queue(osd->st, t, rep_cb, rc);
out:
  if (ro)
    blk__rep_op__free_unpacked(ro, NULL);
}

/* ---- dispatch, maps, timer ---------------------------------------------------- */

static void dispatch(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  if (osd->stopping) {
    reply_frame_err(osd, c, f, -ESHUTDOWN, "osd is stopping");
    return;
  }
  switch (f->type) {
  case MSG_OSD_OP: handle_op(osd, c, f); break;
  case MSG_OSD_REPOP: handle_repop(osd, c, f); break;
  case MSG_PG_QUERY: peering_on_query(osd, c, f); break;
  case MSG_PG_PULL: peering_on_pull(osd, c, f); break;
  case MSG_PG_PUSH: peering_on_push(osd, c, f); break;
  case MSG_PG_ACTIVATE: peering_on_activate(osd, c, f); break;
  case MSG_PG_SCRUB_MAP: scrub_on_map_req(osd, c, f); break;
  case MSG_PG_SCRUB_CMD: scrub_on_cmd(osd, c, f); break;
  default: break;
  }
}

void pg_on_frame(struct osd *osd, msgr_conn *c, const struct msgr_frame *f)
{
  dispatch(osd, c, f);
}

static void pg_end_interval(struct pg *pg, const char *why)
{
  /* client ops held or in flight for the old interval: the client
   * refetches the map and resends (deduplicated by reqid) */
  fail_parked(pg->osd, &pg->waiting, &pg->waiting_tail, -ESTALE, why);
  rmw_orphan_all(pg);
  while (pg->inflight) {
    struct pg_op *op = pg->inflight;
    pg->inflight = op->next;
    if (op->conn)
      reply_op(op->conn, op->tid, -ESTALE, why, pg->osd->epoch, op->ver);
    op_detach(op);
  }
  pg->inflight_tail = NULL;
  peering_free(pg);
  scrub_pg_reset(pg, why);
}

/* arg: (pool << 32 | pg) */
static void past_txn_cb(void *arg, int result)
{
  uint64_t id = (uint64_t)(uintptr_t)arg;
  pg_store_pending--;
  if (result < 0)
    log_err("pg", "%u.%x: cannot record a past interval: %s", (unsigned)(id >> 32),
            (unsigned)(id & 0xffffffffu), strerror(-result));
}

/* Remember the previous interval (prev map's up set, from pg->interval
 * to prev's epoch) as a past interval of the PG, in memory and in the PG
 * meta object (so that a restart keeps it), unless the PG went active
 * since (as far as this OSD knows): then its members hold everything. */
static void note_prior(struct pg *pg, const struct cluster_map *prev,
                       const struct pgmap *prev_pm)
{
  store_txn *t = store_txn_new();
  struct store_oid meta;
  char key[STORE_NAME_MAX + 1];
  bool dirty = false;
  pg_meta_oid(pg, &meta);
  if (t)
    store_txn_touch(t, &meta);
  if (pg->went_active) {
    dirty = pg->n_past > 0;
    if (t)
      pg_past_clear(pg, t);
    pg->n_past = pg->n_prior_primaries = 0;
  }
  const struct cm_pool *pp = prev ? clustermap_pool_by_id(prev, pg->pool) : NULL;
  int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
  size_t nr, nu = 0;
  if (pp && prev_pm && pg->id < pp->pg_num &&
      pgmap_pg_sets(prev_pm, prev, pp, pg->id, raw, &nr, up, &nu) == 0) {
    if (nu && pg->n_prior_primaries < 2 * PGMAP_MAX_SIZE)
      pg->prior_primaries[pg->n_prior_primaries++] = up[0];
    bool full = pg->n_past == PPLAN_MAX_INTERVALS;
    for (size_t k = 0; t && full && k < 2; k++) {   /* the two merged */
      pg_interval_key(key, sizeof key, &pg->past[k]);
      store_txn_omap_rm(t, &meta, key);
    }
    pplan_interval_note(pg->past, &pg->n_past, pg->interval, prev->epoch, up, nu, pp->min_size);
    if (t && full) {   /* the merged one */
      pg_interval_key(key, sizeof key, &pg->past[0]);
      store_txn_omap_set(t, &meta, key, "", 0);
    }
    if (t && pg->n_past) {
      pg_interval_key(key, sizeof key, &pg->past[pg->n_past - 1]);
      store_txn_omap_set(t, &meta, key, "", 0);
      dirty = true;
    }
  }
  if (!t) {
    log_err("pg", "%u.%x: out of memory recording a past interval", pg->pool, pg->id);
    return;
  }
  if (!dirty) {
    store_txn_free(t);
    return;
  }
  pg->meta_exists = true;
  pg_store_pending++;
  uintptr_t id = (uintptr_t)(((uint64_t)pg->pool << 32) | pg->id);
  store_queue(pg->osd->st, t, past_txn_cb, (void *)id);
}

void pg_on_map(struct osd *osd, const struct cluster_map *prev, const struct pgmap *prev_pm)
{
  const struct cluster_map *m = osd->map;
  for (size_t p = 0; p < m->n_pools; p++) {
    const struct cm_pool *pool = &m->pools[p];
    for (uint32_t id = 0; id < pool->pg_num; id++) {
      int32_t raw[PGMAP_MAX_SIZE], up[PGMAP_MAX_SIZE];
      size_t nr, nu;
      if (pgmap_pg_sets(osd->pgmap, m, pool, id, raw, &nr, up, &nu) < 0)
        continue;
      bool mine = false;
      for (size_t i = 0; i < nu; i++)
        mine |= up[i] == osd->id;
      struct pg *pg = pg_get(osd, pool->id, id, mine);
      if (!pg)
        continue;
      pg->size = pool->size;
      pg->min_size = pool->min_size;
      uint64_t uf[PGMAP_MAX_SIZE];
      for (size_t i = 0; i < nu; i++)
        uf[i] = clustermap_osd(m, up[i])->up_from;
      bool changed = !mine ? pg->state != PG_STRAY
                           : pg->n_acting != nu || memcmp(pg->acting, up, nu * sizeof *up) ||
                                 memcmp(pg->acting_up_from, uf, nu * sizeof *uf) ||
                                 pg->state == PG_STRAY;
      if (!changed)
        continue;
      char why[96];
      snprintf(why, sizeof why, "PG %u.%x: new interval at epoch %llu", pool->id, id,
               (unsigned long long)m->epoch);
      if (mine)
        note_prior(pg, prev, prev_pm);
      pg_end_interval(pg, why);
      pg->went_active = false;
      memcpy(pg->acting, up, nu * sizeof *up);
      memcpy(pg->acting_up_from, uf, nu * sizeof *uf);
      pg->n_acting = mine ? nu : 0;
      pg->interval = m->epoch;
      pg->primary = mine && up[0] == osd->id;
      osd->stats_dirty = true;
      if (!mine) {
        pg->state = PG_STRAY;
      } else if (pg->primary) {
        peering_start(pg);
      } else {
        pg->state = PG_REPLICA;
      }
    }
  }
  /* PGs of pools that are gone */
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext)
      if (pg->state != PG_STRAY && !clustermap_pool_by_id(m, pg->pool)) {
        pg_end_interval(pg, "pool removed");
        pg->state = PG_STRAY;
        pg->primary = false;
        pg->n_acting = 0;
      }
  /* requests that waited for this map */
  struct pg_parked *list = osd->map_waiting;
  osd->map_waiting = NULL;
  while (list) {
    struct pg_parked *p = list;
    list = p->next;
    dispatch(osd, p->conn, &p->f);
    park_free(p);
  }
}

static void expire_list(struct osd *osd, struct pg_parked **head, struct pg_parked **tail,
                        int64_t now)
{
  struct pg_parked **pp = head, *last = NULL;
  while (*pp) {
    struct pg_parked *p = *pp;
    if (now >= p->deadline_ms) {
      *pp = p->next;
      log_info("pg", "op from %s failed after waiting: %s", msgr_conn_peer(p->conn), p->why);
      reply_frame_err(osd, p->conn, &p->f, p->err_on_timeout, p->why);
      park_free(p);
    } else {
      last = p;
      pp = &p->next;
    }
  }
  if (tail)
    *tail = last;
}

void pg_tick(struct osd *osd)
{
  int64_t now = util_now_ms();
  expire_list(osd, &osd->map_waiting, NULL, now);
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext) {
      if (pg->waiting)
        expire_list(osd, &pg->waiting, &pg->waiting_tail, now);
      if (pg->primary)
        peering_tick(pg, now);
    }
  if (osd->booted && !osd->stopping &&
      (now - osd->last_stats_ms >= osd->stats_interval ||
       (osd->stats_dirty && now - osd->last_stats_ms >= 200))) {
    osd->stats_dirty = false;
    osd->last_stats_ms = now;
    pg_send_stats(osd);
  }
  scrub_tick(osd);
}

static void on_stats_reply(void *arg, int err, const Blk__MonReply *rep)
{
  (void)arg;
  (void)err;
  (void)rep;
}

void pg_send_stats(struct osd *osd)
{
  size_t n = 0;
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext)
      n += pg->primary;
  Blk__PgStats ps = BLK__PG_STATS__INIT;
  ps.osd = osd->id;
  ps.epoch = osd->epoch;
  Blk__PgStats__Pg *arr = calloc(n + 1, sizeof *arr);
  Blk__PgStats__Pg **ptrs = calloc(n + 1, sizeof *ptrs);
  if (!arr || !ptrs)
    goto out;
  size_t k = 0;
  for (size_t i = 0; i < osd->pg_hash_size; i++)
    for (struct pg *pg = osd->pg_hash[i]; pg; pg = pg->hnext) {
      if (!pg->primary)
        continue;
      blk__pg_stats__pg__init(&arr[k]);
      arr[k].pool = pg->pool;
      arr[k].pg = pg->id;
      arr[k].state = (char *)scrub_pg_state(pg);
      peering_progress(pg, &arr[k].recovery_left, &arr[k].recovery_total);
      arr[k].les = pg->les;   /* the monitors keep the maps since (docs/monitor.md) */
      ptrs[k] = &arr[k];
      k++;
    }
  ps.pgs = ptrs;
  ps.n_pgs = k;
  struct store_statfs sf;
  store_statfs(osd->st, &sf);
  ps.used_bytes = sf.used;
  ps.total_bytes = sf.total;
  ps.space = osd_space_self(osd, NULL);
  monc_call_async(osd->monc, MSG_PG_STATS, (const ProtobufCMessage *)&ps,
                  (int)osd->stats_interval, on_stats_reply, osd);
out:
  free(arr);
  free(ptrs);
}

void pg_free_all(struct osd *osd)
{
  fail_parked(osd, &osd->map_waiting, NULL, -ESHUTDOWN, "osd is stopping");
  for (size_t i = 0; i < osd->pg_hash_size; i++) {
    struct pg *pg = osd->pg_hash[i];
    while (pg) {
      struct pg *nx = pg->hnext;
      pg_end_interval(pg, "osd is stopping");
      scrub_pg_free(pg);
      pg_log_clear(pg);
      pg_unlogged_free(pg);
      free(pg->log);
      free(pg);
      pg = nx;
    }
  }
  free(osd->pg_hash);
  osd->pg_hash = NULL;
  osd->pg_hash_size = osd->n_pgs = 0;
}
