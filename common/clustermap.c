/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see clustermap.h.  Conversions copy strings into fixed
 * buffers after checking their length, so a hostile map cannot overflow
 * anything; apply() validates before it changes anything, so a failed
 * transaction leaves the map exactly as it was.
 */
#include "clustermap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cluster_map *clustermap_new(void)
{
  struct cluster_map *m = calloc(1, sizeof *m);
  if (!m)
    errno = ENOMEM;
  else
    m->next_pool_id = 1;
  return m;
}

void clustermap_free(struct cluster_map *m)
{
  if (!m)
    return;
  free(m->osds);
  free(m->pools);
  free(m->blocklist);
  free(m);
}

struct cluster_map *clustermap_dup(const struct cluster_map *m)
{
  struct cluster_map *d = malloc(sizeof *d);
  if (!d)
    goto out_nomem;
  *d = *m;
  d->osds = NULL;
  d->pools = NULL;
  d->blocklist = NULL;
  if (m->n_osds) {
    d->osds = malloc(m->n_osds * sizeof *d->osds);
    if (!d->osds)
      goto out_free;
    memcpy(d->osds, m->osds, m->n_osds * sizeof *d->osds);
  }
  if (m->n_pools) {
    d->pools = malloc(m->n_pools * sizeof *d->pools);
    if (!d->pools)
      goto out_free;
    memcpy(d->pools, m->pools, m->n_pools * sizeof *d->pools);
  }
  if (m->n_blocklist) {
    d->blocklist = malloc(m->n_blocklist * sizeof *d->blocklist);
    if (!d->blocklist)
      goto out_free;
    memcpy(d->blocklist, m->blocklist, m->n_blocklist * sizeof *d->blocklist);
  }
  return d;
out_free:
  clustermap_free(d);
out_nomem:
  errno = ENOMEM;
  return NULL;
}

bool clustermap_valid_name(const char *s)
{
  size_t n = 0;
  if (!s)
    return false;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return false;
  }
  return n > 0 && n < CM_MAX_NAME;
}

const char *clustermap_fd_name(enum cm_failure_domain fd)
{
  return fd == CM_FD_OSD ? "osd" : "host";
}

static int copy_str(char *dst, size_t cap, const char *src)
{
  size_t n = src ? strlen(src) : 0;
  if (n >= cap)
    return -EINVAL;
  memcpy(dst, src ? src : "", n + 1);
  return 0;
}

static int parse_fd(const char *s, enum cm_failure_domain *out)
{
  if (!s || !*s || !strcmp(s, "host"))
    *out = CM_FD_HOST;
  else if (!strcmp(s, "osd"))
    *out = CM_FD_OSD;
  else
    return -EINVAL;
  return 0;
}

static int grow_osds(struct cluster_map *m, size_t n)
{
  if (n <= m->n_osds)
    return 0;
  struct cm_osd *o = realloc(m->osds, n * sizeof *o);
  if (!o)
    return -ENOMEM;
  memset(o + m->n_osds, 0, (n - m->n_osds) * sizeof *o);
  for (size_t i = m->n_osds; i < n; i++)
    o[i].id = (int32_t)i;
  m->osds = o;
  m->n_osds = n;
  return 0;
}

int clustermap_from_pb(const Blk__ClusterMap *pb, struct cluster_map **out)
{
  struct cluster_map *m = clustermap_new();
  if (!m)
    return -ENOMEM;
  int r = -EINVAL;
  if (copy_str(m->fsid, sizeof m->fsid, pb->fsid) < 0 || pb->n_mons > CM_MAX_MONS ||
      pb->n_osds > CM_MAX_OSDS || pb->n_pools > 100000)
    goto out_free;
  m->epoch = pb->epoch;
  m->stamp_ms = pb->stamp_ms;
  m->next_pool_id = pb->next_pool_id ? pb->next_pool_id : 1;
  for (size_t i = 0; i < pb->n_mons; i++) {
    struct cm_mon *mm = &m->mons[i];
    if (copy_str(mm->name, sizeof mm->name, pb->mons[i]->name) < 0 ||
        copy_str(mm->addr, sizeof mm->addr, pb->mons[i]->addr) < 0)
      goto out_free;
    mm->rank = pb->mons[i]->rank;
  }
  m->n_mons = pb->n_mons;
  for (size_t i = 0; i < pb->n_osds; i++) {
    const Blk__OsdInfo *po = pb->osds[i];
    if (po->id < 0 || po->id >= CM_MAX_OSDS)
      goto out_free;
    if ((r = grow_osds(m, (size_t)po->id + 1)) < 0)
      goto out_free;
    r = -EINVAL;
    struct cm_osd *o = &m->osds[po->id];
    if (o->exists)
      goto out_free;   /* duplicate id */
    o->exists = true;
    o->id = po->id;
    if (copy_str(o->uuid, sizeof o->uuid, po->uuid) < 0 ||
        copy_str(o->host, sizeof o->host, po->host) < 0 ||
        copy_str(o->addr, sizeof o->addr, po->addr) < 0)
      goto out_free;
    o->up = po->up;
    o->in = po->in;
    o->weight = po->weight;
    o->up_from = po->up_from;
    o->down_at = po->down_at;
    o->device_size = po->device_size;
    o->down_stamp_ms = po->down_stamp_ms;
  }
  if (pb->n_pools) {
    m->pools = calloc(pb->n_pools, sizeof *m->pools);
    if (!m->pools) {
      r = -ENOMEM;
      goto out_free;
    }
  }
  for (size_t i = 0; i < pb->n_pools; i++) {
    const Blk__Pool *pp = pb->pools[i];
    struct cm_pool *p = &m->pools[i];
    if (!clustermap_valid_name(pp->name) || pp->pg_num == 0 ||
        pp->pg_num > CM_MAX_PG_NUM || pp->size == 0 || pp->size > CM_MAX_POOL_SIZE ||
        pp->min_size == 0 || pp->min_size > pp->size ||
        parse_fd(pp->failure_domain, &p->failure_domain) < 0 ||
        copy_str(p->application, sizeof p->application, pp->application) < 0)
      goto out_free;
    for (size_t j = 0; j < i; j++)
      if (m->pools[j].id == pp->id || !strcmp(m->pools[j].name, pp->name))
        goto out_free;
    p->id = pp->id;
    strcpy(p->name, pp->name);
    p->size = pp->size;
    p->min_size = pp->min_size;
    p->pg_num = pp->pg_num;
    p->created_epoch = pp->created_epoch;
    m->n_pools = i + 1;
  }
  if (pb->n_blocklist > CM_MAX_BLOCKLIST)
    goto out_free;
  if (pb->n_blocklist) {
    m->blocklist = calloc(pb->n_blocklist, sizeof *m->blocklist);
    if (!m->blocklist) {
      r = -ENOMEM;
      goto out_free;
    }
  }
  for (size_t i = 0; i < pb->n_blocklist; i++) {
    const Blk__BlocklistEntry *be = pb->blocklist[i];
    if (!clustermap_valid_nonce(be->nonce) || be->expire_ms < 0 ||
        (i && strcmp(m->blocklist[i - 1].nonce, be->nonce) >= 0))
      goto out_free;   /* bad, unsorted or duplicate */
    strcpy(m->blocklist[i].nonce, be->nonce);
    m->blocklist[i].expire_ms = be->expire_ms;
    m->n_blocklist = i + 1;
  }
  *out = m;
  return 0;
out_free:
  clustermap_free(m);
  return r;
}

Blk__ClusterMap *clustermap_to_pb(const struct cluster_map *m)
{
  Blk__ClusterMap *pb = calloc(1, sizeof *pb);
  if (!pb)
    return NULL;
  blk__cluster_map__init(pb);
  pb->fsid = (char *)m->fsid;
  pb->epoch = m->epoch;
  pb->stamp_ms = m->stamp_ms;
  pb->next_pool_id = m->next_pool_id;
  size_t nosd = 0;
  for (size_t i = 0; i < m->n_osds; i++)
    nosd += m->osds[i].exists;
  /* one allocation for all element structs and pointer arrays */
  size_t need = m->n_mons * (sizeof(Blk__MonInfo) + sizeof(void *)) +
                nosd * (sizeof(Blk__OsdInfo) + sizeof(void *)) +
                m->n_pools * (sizeof(Blk__Pool) + sizeof(void *)) +
                m->n_blocklist * (sizeof(Blk__BlocklistEntry) + sizeof(void *));
  char *blk = calloc(1, need + 1);
  if (!blk) {
    free(pb);
    return NULL;
  }
  pb->mons = (Blk__MonInfo **)blk;
  Blk__MonInfo *mi = (Blk__MonInfo *)(pb->mons + m->n_mons);
  pb->osds = (Blk__OsdInfo **)(mi + m->n_mons);
  Blk__OsdInfo *oi = (Blk__OsdInfo *)(pb->osds + nosd);
  pb->pools = (Blk__Pool **)(oi + nosd);
  Blk__Pool *pi = (Blk__Pool *)(pb->pools + m->n_pools);
  pb->blocklist = (Blk__BlocklistEntry **)(pi + m->n_pools);
  Blk__BlocklistEntry *bi = (Blk__BlocklistEntry *)(pb->blocklist + m->n_blocklist);
  for (size_t i = 0; i < m->n_blocklist; i++) {
    blk__blocklist_entry__init(&bi[i]);
    bi[i].nonce = (char *)m->blocklist[i].nonce;
    bi[i].expire_ms = m->blocklist[i].expire_ms;
    pb->blocklist[i] = &bi[i];
  }
  pb->n_blocklist = m->n_blocklist;
  for (size_t i = 0; i < m->n_mons; i++) {
    blk__mon_info__init(&mi[i]);
    mi[i].name = (char *)m->mons[i].name;
    mi[i].addr = (char *)m->mons[i].addr;
    mi[i].rank = m->mons[i].rank;
    pb->mons[i] = &mi[i];
  }
  pb->n_mons = m->n_mons;
  size_t k = 0;
  for (size_t i = 0; i < m->n_osds; i++) {
    const struct cm_osd *o = &m->osds[i];
    if (!o->exists)
      continue;
    blk__osd_info__init(&oi[k]);
    oi[k].id = o->id;
    oi[k].uuid = (char *)o->uuid;
    oi[k].host = (char *)o->host;
    oi[k].addr = (char *)o->addr;
    oi[k].up = o->up;
    oi[k].in = o->in;
    oi[k].weight = o->weight;
    oi[k].up_from = o->up_from;
    oi[k].down_at = o->down_at;
    oi[k].device_size = o->device_size;
    oi[k].down_stamp_ms = o->down_stamp_ms;
    pb->osds[k] = &oi[k];
    k++;
  }
  pb->n_osds = nosd;
  for (size_t i = 0; i < m->n_pools; i++) {
    const struct cm_pool *p = &m->pools[i];
    blk__pool__init(&pi[i]);
    pi[i].id = p->id;
    pi[i].name = (char *)p->name;
    pi[i].size = p->size;
    pi[i].min_size = p->min_size;
    pi[i].pg_num = p->pg_num;
    pi[i].failure_domain = (char *)clustermap_fd_name(p->failure_domain);
    pi[i].application = (char *)p->application;
    pi[i].created_epoch = p->created_epoch;
    pb->pools[i] = &pi[i];
  }
  pb->n_pools = m->n_pools;
  return pb;
}

void clustermap_pb_free(Blk__ClusterMap *pb)
{
  if (!pb)
    return;
  free(pb->mons);
  free(pb);
}

int clustermap_encode(const struct cluster_map *m, uint8_t **buf, size_t *len)
{
  Blk__ClusterMap *pb = clustermap_to_pb(m);
  if (!pb)
    return -ENOMEM;
  size_t n = blk__cluster_map__get_packed_size(pb);
  uint8_t *b = malloc(n ? n : 1);
  if (!b) {
    clustermap_pb_free(pb);
    return -ENOMEM;
  }
  blk__cluster_map__pack(pb, b);
  clustermap_pb_free(pb);
  *buf = b;
  *len = n;
  return 0;
}

int clustermap_decode(const uint8_t *buf, size_t len, struct cluster_map **out)
{
  Blk__ClusterMap *pb = blk__cluster_map__unpack(NULL, len, buf);
  if (!pb)
    return -EINVAL;
  int r = clustermap_from_pb(pb, out);
  blk__cluster_map__free_unpacked(pb, NULL);
  return r;
}

const struct cm_pool *clustermap_pool_by_name(const struct cluster_map *m,
                                              const char *name)
{
  for (size_t i = 0; i < m->n_pools; i++)
    if (!strcmp(m->pools[i].name, name))
      return &m->pools[i];
  return NULL;
}

const struct cm_pool *clustermap_pool_by_id(const struct cluster_map *m, uint32_t id)
{
  for (size_t i = 0; i < m->n_pools; i++)
    if (m->pools[i].id == id)
      return &m->pools[i];
  return NULL;
}

const struct cm_osd *clustermap_osd(const struct cluster_map *m, int32_t id)
{
  if (id < 0 || (size_t)id >= m->n_osds || !m->osds[id].exists)
    return NULL;
  return &m->osds[id];
}

void clustermap_osd_counts(const struct cluster_map *m, unsigned *total,
                           unsigned *up, unsigned *in)
{
  *total = *up = *in = 0;
  for (size_t i = 0; i < m->n_osds; i++) {
    if (!m->osds[i].exists)
      continue;
    (*total)++;
    *up += m->osds[i].up;
    *in += m->osds[i].in;
  }
}

bool clustermap_valid_nonce(const char *s)
{
  size_t n = 0;
  if (!s)
    return false;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return false;
  }
  return n > 0 && n < CM_MAX_NONCE;
}

bool clustermap_blocklisted(const struct cluster_map *m, const char *nonce, int64_t now_ms)
{
  size_t lo = 0, hi = m->n_blocklist;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(m->blocklist[mid].nonce, nonce);
    if (c == 0)
      return !m->blocklist[mid].expire_ms || m->blocklist[mid].expire_ms > now_ms;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static int apply_pool_create(struct cluster_map *m, const Blk__PoolCreate *pc,
                             char *err, size_t errlen)
{
  enum cm_failure_domain fd;
  uint32_t size = pc->size ? pc->size : 3;
  uint32_t min_size = pc->min_size ? pc->min_size : (size > 1 ? size - size / 2 : 1);
  if (!clustermap_valid_name(pc->name))
    return fail(err, errlen, -EINVAL, "invalid pool name '%s' (use 1-63 of A-Z a-z 0-9 _ . -)",
                pc->name ? pc->name : "");
  if (clustermap_pool_by_name(m, pc->name))
    return fail(err, errlen, -EEXIST, "pool '%s' already exists", pc->name);
  if (pc->pg_num == 0 || pc->pg_num > CM_MAX_PG_NUM)
    return fail(err, errlen, -EINVAL, "pg_num %u out of range (1..%u)", pc->pg_num,
                CM_MAX_PG_NUM);
  if (size > CM_MAX_POOL_SIZE)
    return fail(err, errlen, -EINVAL, "size %u out of range (1..%u)", size, CM_MAX_POOL_SIZE);
  if (min_size > size)
    return fail(err, errlen, -EINVAL, "min_size %u must not exceed size %u", min_size, size);
  if (parse_fd(pc->failure_domain, &fd) < 0)
    return fail(err, errlen, -EINVAL, "failure domain '%s' is not host or osd",
                pc->failure_domain);
  if (pc->application && strlen(pc->application) >= CM_MAX_NAME)
    return fail(err, errlen, -EINVAL, "application name too long");
  struct cm_pool *np = realloc(m->pools, (m->n_pools + 1) * sizeof *np);
  if (!np)
    return fail(err, errlen, -ENOMEM, "out of memory");
  m->pools = np;
  struct cm_pool *p = &m->pools[m->n_pools++];
  memset(p, 0, sizeof *p);
  p->id = m->next_pool_id++;
  strcpy(p->name, pc->name);
  p->size = size;
  p->min_size = min_size;
  p->pg_num = pc->pg_num;
  p->failure_domain = fd;
  copy_str(p->application, sizeof p->application, pc->application);
  p->created_epoch = m->epoch + 1;
  return 1;
}

static int apply_pool_remove(struct cluster_map *m, const Blk__PoolRemove *pr,
                             char *err, size_t errlen)
{
  for (size_t i = 0; i < m->n_pools; i++) {
    if (strcmp(m->pools[i].name, pr->name ? pr->name : "") == 0) {
      memmove(&m->pools[i], &m->pools[i + 1], (m->n_pools - i - 1) * sizeof *m->pools);
      m->n_pools--;
      return 1;
    }
  }
  return fail(err, errlen, -ENOENT, "pool '%s' does not exist", pr->name ? pr->name : "");
}

static int apply_osd_boot(struct cluster_map *m, const Blk__OsdBoot *ob, int64_t stamp,
                          char *err, size_t errlen)
{
  if (ob->id < 0 || ob->id >= CM_MAX_OSDS)
    return fail(err, errlen, -EINVAL, "osd id %d out of range", ob->id);
  if (!clustermap_valid_name(ob->host))
    return fail(err, errlen, -EINVAL, "invalid host name '%s'", ob->host ? ob->host : "");
  if ((ob->uuid && strlen(ob->uuid) >= 40) || !ob->addr || !*ob->addr ||
      strlen(ob->addr) >= CM_MAX_ADDR)
    return fail(err, errlen, -EINVAL, "invalid osd uuid or address");
  const struct cm_osd *cur = clustermap_osd(m, ob->id);
  if (cur && cur->uuid[0] && ob->uuid && ob->uuid[0] && strcmp(cur->uuid, ob->uuid))
    return fail(err, errlen, -EEXIST, "osd.%d exists with another uuid (%s)", ob->id, cur->uuid);
  if (grow_osds(m, (size_t)ob->id + 1) < 0)
    return fail(err, errlen, -ENOMEM, "out of memory");
  struct cm_osd *o = &m->osds[ob->id];
  bool fresh = !o->exists;
  o->exists = true;
  o->id = ob->id;
  copy_str(o->uuid, sizeof o->uuid, ob->uuid);
  copy_str(o->host, sizeof o->host, ob->host);
  copy_str(o->addr, sizeof o->addr, ob->addr);
  o->device_size = ob->device_size;
  if (fresh) {
    o->in = true;
    o->weight = ob->weight ? ob->weight : CM_WEIGHT_ONE;
  }
  o->up = true;
  o->up_from = m->epoch + 1;
  o->down_stamp_ms = 0;
  (void)stamp;
  return 1;
}

static int apply_osd_mark(struct cluster_map *m, const Blk__OsdMark *om, int64_t stamp,
                          char *err, size_t errlen)
{
  if (om->n_ids == 0)
    return fail(err, errlen, -EINVAL, "no osd ids given");
  for (size_t i = 0; i < om->n_ids; i++)
    if (!clustermap_osd(m, om->ids[i]))
      return fail(err, errlen, -ENOENT, "osd.%d does not exist", om->ids[i]);
  bool changed = false;
  for (size_t i = 0; i < om->n_ids; i++) {
    struct cm_osd *o = &m->osds[om->ids[i]];
    switch (om->what) {
    case BLK__OSD_MARK__WHAT__DOWN:
      if (o->up) {
        o->up = false;
        o->down_at = m->epoch + 1;
        o->down_stamp_ms = stamp;
        changed = true;
      }
      break;
    case BLK__OSD_MARK__WHAT__UP:
      if (!o->up) {
        o->up = true;
        o->up_from = m->epoch + 1;
        o->down_stamp_ms = 0;
        changed = true;
      }
      break;
    case BLK__OSD_MARK__WHAT__OUT:
      changed |= o->in;
      o->in = false;
      break;
    case BLK__OSD_MARK__WHAT__IN:
      changed |= !o->in;
      o->in = true;
      break;
    default:
      return fail(err, errlen, -EINVAL, "unknown osd mark %d", om->what);
    }
  }
  return changed ? 1 : 0;
}

/* Add/replace or remove an entry; entries expired at stamp are dropped
 * in the same change (only the txn's own stamp is used: deterministic). */
static int apply_blocklist(struct cluster_map *m, const Blk__BlocklistChange *bc, int64_t stamp,
                           char *err, size_t errlen)
{
  if (!clustermap_valid_nonce(bc->nonce))
    return fail(err, errlen, -EINVAL, "invalid client nonce '%s' (1-63 of 0-9 A-Z a-z _ -)",
                bc->nonce ? bc->nonce : "");
  size_t pos = 0;
  bool found = false;
  for (; pos < m->n_blocklist; pos++) {
    int c = strcmp(m->blocklist[pos].nonce, bc->nonce);
    if (c >= 0) {
      found = c == 0;
      break;
    }
  }
  if (!bc->remove && bc->expire_s &&
      (stamp < 0 || stamp > INT64_MAX - (int64_t)bc->expire_s * 1000))
    return fail(err, errlen, -EINVAL, "blocklist expiry needs a valid txn stamp (got %lld ms)",
                (long long)stamp);
  if (bc->remove && !found)
    return fail(err, errlen, -ENOENT, "client %s is not blocklisted", bc->nonce);
  if (!bc->remove && !found && m->n_blocklist >= CM_MAX_BLOCKLIST)
    return fail(err, errlen, -ENOSPC, "blocklist full (%d entries)", CM_MAX_BLOCKLIST);
  if (bc->remove) {
    memmove(&m->blocklist[pos], &m->blocklist[pos + 1],
            (m->n_blocklist - pos - 1) * sizeof *m->blocklist);
    m->n_blocklist--;
  } else {
    if (!found) {
      struct cm_blocklist *nb = realloc(m->blocklist, (m->n_blocklist + 1) * sizeof *nb);
      if (!nb)
        return fail(err, errlen, -ENOMEM, "out of memory");
      m->blocklist = nb;
      memmove(&nb[pos + 1], &nb[pos], (m->n_blocklist - pos) * sizeof *nb);
      m->n_blocklist++;
      strcpy(nb[pos].nonce, bc->nonce);
    }
    m->blocklist[pos].expire_ms = bc->expire_s ? stamp + (int64_t)bc->expire_s * 1000 : 0;
  }
  size_t k = 0;
  for (size_t i = 0; i < m->n_blocklist; i++)
    if (!m->blocklist[i].expire_ms || m->blocklist[i].expire_ms > stamp)
      m->blocklist[k++] = m->blocklist[i];
  m->n_blocklist = k;
  return 1;
}

int clustermap_apply(struct cluster_map *m, const Blk__MapTxn *txn, char *err,
                     size_t errlen)
{
  int r;
  if (err && errlen)
    err[0] = 0;
  int nops = !!txn->pool_create + !!txn->pool_remove + !!txn->osd_boot +
             !!txn->osd_mark + !!txn->osd_reweight + !!txn->init +
             !!txn->osd_create + (txn->auth.len > 0) + !!txn->blocklist;
  if (nops != 1)
    return fail(err, errlen, -EINVAL, "a map transaction must hold exactly one change");
  if (txn->init) {
    if (m->epoch != 0)
      return fail(err, errlen, -EEXIST, "cluster already initialized (epoch %llu)",
                  (unsigned long long)m->epoch);
    struct cluster_map *n;
    if ((r = clustermap_from_pb(txn->init, &n)) < 0)
      return fail(err, errlen, r, "invalid initial map");
    free(m->osds);
    free(m->pools);
    free(m->blocklist);
    *m = *n;
    free(n);
    m->epoch = 1;
    m->stamp_ms = txn->stamp_ms;
    return 1;
  }
  if (m->epoch == 0)
    return fail(err, errlen, -EAGAIN, "cluster not initialized yet");
  if (txn->pool_create)
    r = apply_pool_create(m, txn->pool_create, err, errlen);
  else if (txn->pool_remove)
    r = apply_pool_remove(m, txn->pool_remove, err, errlen);
  else if (txn->osd_boot)
    r = apply_osd_boot(m, txn->osd_boot, txn->stamp_ms, err, errlen);
  else if (txn->osd_mark)
    r = apply_osd_mark(m, txn->osd_mark, txn->stamp_ms, err, errlen);
  else if (txn->blocklist)
    r = apply_blocklist(m, txn->blocklist, txn->stamp_ms, err, errlen);
  else if (txn->osd_reweight) {
    const Blk__OsdReweight *rw = txn->osd_reweight;
    if (!clustermap_osd(m, rw->id))
      return fail(err, errlen, -ENOENT, "osd.%d does not exist", rw->id);
    if (rw->weight > 1000u * CM_WEIGHT_ONE)
      return fail(err, errlen, -EINVAL, "weight out of range");
    r = m->osds[rw->id].weight != rw->weight;
    m->osds[rw->id].weight = rw->weight;
  } else if (txn->osd_create) {
    const Blk__OsdCreate *oc = txn->osd_create;
    int32_t id = oc->id;
    if (id < 0) {
      for (id = 0; id < CM_MAX_OSDS && clustermap_osd(m, id); id++)
        ;
    }
    if (id >= CM_MAX_OSDS)
      return fail(err, errlen, -ENOSPC, "no free osd id");
    if (clustermap_osd(m, id))
      return fail(err, errlen, -EEXIST, "osd.%d already exists", id);
    if (oc->uuid && strlen(oc->uuid) >= 40)
      return fail(err, errlen, -EINVAL, "invalid uuid");
    if (grow_osds(m, (size_t)id + 1) < 0)
      return fail(err, errlen, -ENOMEM, "out of memory");
    struct cm_osd *o = &m->osds[id];
    memset(o, 0, sizeof *o);
    o->exists = true;
    o->id = id;
    o->in = true;
    o->weight = CM_WEIGHT_ONE;
    copy_str(o->uuid, sizeof o->uuid, oc->uuid);
    strcpy(o->host, "unknown");
    r = 1;
  } else {
    r = 0;   /* auth-only change: the map is untouched */
  }
  if (r == 1) {
    m->epoch++;
    m->stamp_ms = txn->stamp_ms;
  }
  return r;
}
