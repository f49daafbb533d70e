/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl object ...`, object I/O through the objecter
 * (client/objecter.h): placement computed locally, ops sent to the PG
 * primary, transient errors retried until client_op_timeout.
 *   object put POOL NAME FILE|-        write the whole object (writefull)
 *   object get POOL NAME [FILE|-] [--osd N]
 *                                      read it (--osd: that OSD's own copy,
 *                                      for verification)
 *   object rm POOL NAME
 *   object stat POOL NAME [--osd N]    size (and version)
 *   object ls POOL [--osd N]           names, sorted (all PGs in parallel)
 * Object ops for images (docs/osd.md "Object ops"), one op each:
 *   object zero POOL NAME OFF LEN | truncate POOL NAME SIZE
 *   object setxattr POOL NAME KEY VALUE | getxattr POOL NAME KEY | rmxattr ...
 *   object omap-set POOL NAME KEY VALUE | omap-get ... KEY | omap-rm ... KEY
 *   object omap-ls POOL NAME [--after KEY] [--max N]
 *   object mapext POOL NAME [OFF LEN]
 *   object lock POOL NAME LOCK COOKIE [--lease-ms MS] | unlock ... COOKIE
 *   object lock-info POOL NAME LOCK | lock-break POOL NAME LOCK [HOLDER]
 * Options: --nonce NONCE acts as that client (lock holder identity, the
 * name `osd blocklist` fences); --assert-version E.V guards a change
 * (0.0 = the object must not exist).  Values print raw (getxattr,
 * omap-get); the version of the object is printed on stderr-free lines
 * with --format json.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/blkctl/blkctl.h"
#include "client/objecter.h"
#include "common/clustermap.h"

struct sync_res {
  bool done;
  int err;
  char msg[256];
  uint8_t *data;
  uint32_t len;
  uint64_t size, ver_epoch, ver;
  bool has_ver;
  uint8_t *errdata;             /* data of a failed op (lock holder) */
  uint32_t errlen;
  ProtobufCBinaryData *values;  /* omap-ls, parallel to names */
  uint64_t *extents;
  size_t n_extents;
  bool more;
  char **names;
  size_t n_names, cap;
  int pending;
};

static void sync_cb(void *arg, int err, const Blk__OsdOpReply *rep, const uint8_t *data,
                    uint32_t len)
{
  struct sync_res *r = arg;
  if (err && !r->err) {
    r->err = err;
    snprintf(r->msg, sizeof r->msg, "%s", rep && rep->message[0] ? rep->message : strerror(-err));
    if (rep && rep->version) {
      r->has_ver = true;
      r->ver_epoch = rep->version->epoch;
      r->ver = rep->version->v;
    }
    if (len && (r->errdata = malloc(len)) != NULL) {
      memcpy(r->errdata, data, len);
      r->errlen = len;
    }
  }
  if (!err && rep) {
    r->size = rep->size;
    if (rep->version) {
      r->has_ver = true;
      r->ver_epoch = rep->version->epoch;
      r->ver = rep->version->v;
    }
    r->more = rep->more;
    if (rep->n_values) {
      r->values = calloc(rep->n_values, sizeof *r->values);
      for (size_t i = 0; r->values && i < rep->n_values; i++) {
        r->values[i].data = malloc(rep->values[i].len + 1);
        if (!r->values[i].data)
          abort();
        memcpy(r->values[i].data, rep->values[i].data, rep->values[i].len);
        r->values[i].len = rep->values[i].len;
      }
    }
    if (rep->n_extents) {
      r->extents = malloc(rep->n_extents * sizeof *r->extents);
      if (!r->extents)
        abort();
      memcpy(r->extents, rep->extents, rep->n_extents * sizeof *r->extents);
      r->n_extents = rep->n_extents;
    }
    if (len) {
      r->data = malloc(len);
      if (r->data) {
        memcpy(r->data, data, len);
        r->len = len;
      }
    }
    for (size_t i = 0; i < rep->n_names; i++) {
      if (r->n_names == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->names = realloc(r->names, r->cap * sizeof *r->names);
        if (!r->names)
          abort();
      }
      r->names[r->n_names++] = strdup(rep->names[i]);
    }
  }
  if (--r->pending <= 0)
    r->done = true;
}

static void run_until(struct blkctl *b, struct sync_res *r)
{
  while (!r->done)
    event_base_loop(b->base, EVLOOP_ONCE);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f)
    return -errno;
  size_t cap = 1 << 16, n = 0;
  uint8_t *b = malloc(cap);
  while (b) {
    size_t k = fread(b + n, 1, cap - n, f);
    n += k;
    if (n < cap)
      break;
    cap *= 2;
    uint8_t *nb = realloc(b, cap);
    if (!nb) {
      free(b);
      b = NULL;
    } else {
      b = nb;
    }
  }
  int err = ferror(f) ? -EIO : 0;
  if (f != stdin)
    fclose(f);
  if (!b)
    return -ENOMEM;
  if (err) {
    free(b);
    return err;
  }
  *buf = b;
  *len = n;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end || s[0] == '-')
    return -EINVAL;
  *out = v;
  return 0;
}

/* "E.V" or "E'V" */
static int parse_version(const char *s, uint64_t *e, uint64_t *v)
{
  char buf[64];
  snprintf(buf, sizeof buf, "%s", s);
  char *sep = strpbrk(buf, ".'");
  if (!sep)
    return -EINVAL;
  *sep = 0;
  return parse_u64(buf, e) < 0 || parse_u64(sep + 1, v) < 0 ? -EINVAL : 0;
}

/* One object op: subcommand -> op type and number of positional args
 * after POOL NAME (min..max). */
static const struct obj_sub {
  const char *name;
  Blk__OsdOpType op;
  int min, max;
} obj_subs[] = {
  { "zero", BLK__OSD_OP_TYPE__OP_ZERO, 2, 2 },
  { "truncate", BLK__OSD_OP_TYPE__OP_TRUNCATE, 1, 1 },
  { "setxattr", BLK__OSD_OP_TYPE__OP_SETXATTR, 2, 2 },
  { "getxattr", BLK__OSD_OP_TYPE__OP_GETXATTR, 1, 1 },
  { "rmxattr", BLK__OSD_OP_TYPE__OP_RMXATTR, 1, 1 },
  { "omap-set", BLK__OSD_OP_TYPE__OP_OMAP_SET, 2, 2 },
  { "omap-get", BLK__OSD_OP_TYPE__OP_OMAP_GET, 1, 1 },
  { "omap-rm", BLK__OSD_OP_TYPE__OP_OMAP_RM, 1, 1 },
  { "omap-ls", BLK__OSD_OP_TYPE__OP_OMAP_LIST, 0, 0 },
  { "mapext", BLK__OSD_OP_TYPE__OP_MAPEXT, 0, 2 },
  { "lock", BLK__OSD_OP_TYPE__OP_LOCK, 2, 2 },
  { "unlock", BLK__OSD_OP_TYPE__OP_UNLOCK, 2, 2 },
  { "lock-info", BLK__OSD_OP_TYPE__OP_LOCK_INFO, 1, 1 },
  { "lock-break", BLK__OSD_OP_TYPE__OP_LOCK_BREAK, 1, 2 },
};

/* Print a lock holder record (docs/osd.md "Lock record"). */
static void print_lock(struct blkctl *b, const uint8_t *d, uint32_t n)
{
  if (n == 0) {
    if (b->json) {
      json_begin_obj();
      json_bool("locked", false);
      json_end_obj();
      json_done();
    } else {
      printf("free\n");
    }
    return;
  }
  if (n < 12 || d[0] != 1 || 12u + d[1] + (d[2] | (d[3] << 8)) != n) {
    printf("corrupt lock record (%u bytes)\n", n);
    return;
  }
  int64_t exp = 0;
  for (int i = 7; i >= 0; i--)
    exp = (exp << 8) | d[4 + i];
  char nonce[256], cookie[1100];
  snprintf(nonce, sizeof nonce, "%.*s", d[1], (const char *)d + 12);
  snprintf(cookie, sizeof cookie, "%.*s", d[2] | (d[3] << 8), (const char *)d + 12 + d[1]);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long left = exp - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  if (b->json) {
    json_begin_obj();
    json_bool("locked", left > 0);
    json_str("holder", nonce);
    json_str("cookie", cookie);
    json_int("expire_ms", exp);
    json_int("expires_in_ms", left);
    json_end_obj();
    json_done();
  } else {
    printf("holder %s cookie %s expires_in_ms %lld%s\n", nonce, cookie, left,
           left > 0 ? "" : " (expired)");
  }
}

int cmd_object(struct blkctl *b, int argc, char **argv)
{
  static const char *usage =
      "usage: blkctl object put POOL NAME FILE|- | get POOL NAME [FILE|-] [--osd N] | "
      "rm POOL NAME | stat POOL NAME [--osd N] | ls POOL [--osd N] | "
      "zero POOL NAME OFF LEN | truncate POOL NAME SIZE | "
      "setxattr|omap-set POOL NAME KEY VALUE | getxattr|rmxattr|omap-get|omap-rm POOL NAME KEY | "
      "omap-ls POOL NAME [--after KEY] [--max N] | mapext POOL NAME [OFF LEN] | "
      "lock|unlock POOL NAME LOCK COOKIE [--lease-ms MS] | lock-info POOL NAME LOCK | "
      "lock-break POOL NAME LOCK [HOLDER]; options --nonce NONCE, --assert-version E.V";
  if (argc >= 2 && !strcmp(argv[1], "bench"))
    return cmd_object_bench(b, argc, argv);
  int32_t osd = -1;
  const char *nonce = NULL, *after = NULL;
  uint64_t lease = 0, max = 0, ae = 0, av = 0;
  bool guard = false;
  char *args[8];
  int na = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--osd") && i + 1 < argc) {
      osd = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--nonce") && i + 1 < argc) {
      nonce = argv[++i];
    } else if (!strcmp(argv[i], "--after") && i + 1 < argc) {
      after = argv[++i];
    } else if (!strcmp(argv[i], "--max") && i + 1 < argc) {
      if (parse_u64(argv[++i], &max) < 0 || max > 10000)
        return blkctl_fail(EINVAL, "bad --max '%s' (0..10000)", argv[i]);
    } else if (!strcmp(argv[i], "--lease-ms") && i + 1 < argc) {
      if (parse_u64(argv[++i], &lease) < 0)
        return blkctl_fail(EINVAL, "bad --lease-ms '%s'", argv[i]);
    } else if (!strcmp(argv[i], "--assert-version") && i + 1 < argc) {
      if (parse_version(argv[++i], &ae, &av) < 0)
        return blkctl_fail(EINVAL, "bad --assert-version '%s' (EPOCH.V)", argv[i]);
      guard = true;
    } else if (na < 8) {
      args[na++] = argv[i];
    } else {
      return blkctl_fail(EINVAL, "%s", usage);
    }
  }
  if (na < 2)
    return blkctl_fail(EINVAL, "%s", usage);
  const char *sub = args[0], *pool = args[1];
  bool ls = !strcmp(sub, "ls");
  if ((ls && na != 2) || (!ls && na < 3))
    return blkctl_fail(EINVAL, "%s", usage);
  const struct obj_sub *os = NULL;
  for (size_t i = 0; i < sizeof obj_subs / sizeof *obj_subs; i++)
    if (!strcmp(sub, obj_subs[i].name))
      os = &obj_subs[i];
  if (os && (na - 3 < os->min || na - 3 > os->max))
    return blkctl_fail(EINVAL, "%s", usage);
  int rc = blkctl_connect(b);
  if (rc)
    return rc;
  objecter *o = objecter_new(b->base, b->monc, b->cfg);
  if (!o)
    return blkctl_fail(ENOMEM, "out of memory");
  struct sync_res r = { .pending = 1 };
  struct objecter_req req = { .pool = pool, .name = na > 2 ? args[2] : NULL, .osd = osd };
  req.has_assert_version = guard;
  req.assert_epoch = ae;
  req.assert_v = av;
  uint8_t *in = NULL;
  size_t in_len = 0;
  if (nonce && objecter_set_nonce(o, nonce) < 0) {
    rc = blkctl_fail(EINVAL, "bad --nonce '%s' (1..19 of 0-9 A-Z a-z _ -)", nonce);
    goto out;
  }
  if (objecter_wait_map(o, b->timeout_ms) < 0) {
    rc = blkctl_fail(ETIMEDOUT, "no map from the monitors within %d ms", b->timeout_ms);
    goto out;
  }
  if (os) {
    req.op = os->op;
    const char *a3 = na > 3 ? args[3] : NULL, *a4 = na > 4 ? args[4] : NULL;
    uint64_t x = 0, y = 0;
    switch (os->op) {
    case BLK__OSD_OP_TYPE__OP_ZERO:
    case BLK__OSD_OP_TYPE__OP_MAPEXT:
      if (a3 && (parse_u64(a3, &x) < 0 || parse_u64(a4, &y) < 0)) {
        rc = blkctl_fail(EINVAL, "bad offset or length '%s' '%s'", a3, a4);
        goto out;
      }
      req.offset = x;
      req.length = a3 ? y : UINT64_MAX;
      break;
    case BLK__OSD_OP_TYPE__OP_TRUNCATE:
      if (parse_u64(a3, &x) < 0) {
        rc = blkctl_fail(EINVAL, "bad size '%s'", a3);
        goto out;
      }
      req.offset = x;
      break;
    case BLK__OSD_OP_TYPE__OP_LOCK:
    case BLK__OSD_OP_TYPE__OP_UNLOCK:
      req.key = a3;
      req.data = a4;
      req.data_len = (uint32_t)strlen(a4);
      req.offset = lease;
      break;
    case BLK__OSD_OP_TYPE__OP_LOCK_BREAK:
    case BLK__OSD_OP_TYPE__OP_SETXATTR:
    case BLK__OSD_OP_TYPE__OP_OMAP_SET:
      req.key = a3;
      req.data = a4;
      req.data_len = a4 ? (uint32_t)strlen(a4) : 0;
      break;
    case BLK__OSD_OP_TYPE__OP_OMAP_LIST:
      req.list_after = after;
      req.list_max = (uint32_t)max;
      break;
    default:
      req.key = a3;
    }
  } else if (!strcmp(sub, "put")) {
    if (na != 4) {
      rc = blkctl_fail(EINVAL, "%s", usage);
      goto out;
    }
    int e = read_file(args[3], &in, &in_len);
    if (e < 0) {
      rc = blkctl_fail(-e, "cannot read %s: %s", args[3], strerror(-e));
      goto out;
    }
    req.op = BLK__OSD_OP_TYPE__OP_WRITEFULL;
    req.data = in;
    req.data_len = (uint32_t)in_len;
  } else if (!strcmp(sub, "get")) {
    req.op = BLK__OSD_OP_TYPE__OP_READ;
  } else if (!strcmp(sub, "rm")) {
    req.op = BLK__OSD_OP_TYPE__OP_REMOVE;
  } else if (!strcmp(sub, "stat")) {
    req.op = BLK__OSD_OP_TYPE__OP_STAT;
  } else if (ls) {
    const struct cm_pool *p = clustermap_pool_by_name(objecter_map(o), pool);
    if (!p) {
      rc = blkctl_fail(ENOENT, "pool '%s' does not exist", pool);
      goto out;
    }
    /* one LIST per PG, all in flight; pages of 10000 are enough here */
    req.op = BLK__OSD_OP_TYPE__OP_LIST;
    req.list_max = 10000;
    r.pending = (int)p->pg_num;
    for (uint32_t pg = 0; pg < p->pg_num; pg++) {
      req.pg = pg;
      if (objecter_op(o, &req, sync_cb, &r) < 0)
        r.pending--;
    }
    if (r.pending <= 0)
      r.done = true;
    goto wait;
  } else {
    rc = blkctl_fail(EINVAL, "%s", usage);
    goto out;
  }
  if (objecter_op(o, &req, sync_cb, &r) < 0) {
    rc = blkctl_fail(EINVAL, "bad request");
    goto out;
  }
wait:
  run_until(b, &r);
  if (r.err) {
    rc = blkctl_fail(blkctl_exit_code(r.err), "object %s %s/%s: %s", sub, pool,
                     req.name ? req.name : "", r.msg);
    if (r.has_ver && r.err == -ECANCELED && guard)
      fprintf(stderr, "blkctl: object version %llu.%llu\n", (unsigned long long)r.ver_epoch,
              (unsigned long long)r.ver);
    goto out;
  }
  if (!strcmp(sub, "get") || (os && (os->op == BLK__OSD_OP_TYPE__OP_GETXATTR ||
                                     os->op == BLK__OSD_OP_TYPE__OP_OMAP_GET))) {
    FILE *f = !os && na > 3 && strcmp(args[3], "-") ? fopen(args[3], "wb") : stdout;
    if (!f || (r.len && fwrite(r.data, 1, r.len, f) != r.len)) {
      rc = blkctl_fail(EIO, "cannot write the output");
    }
    if (f && f != stdout)
      fclose(f);
  } else if (os && os->op == BLK__OSD_OP_TYPE__OP_LOCK_INFO) {
    print_lock(b, r.data, r.len);
  } else if (os && os->op == BLK__OSD_OP_TYPE__OP_OMAP_LIST) {
    if (b->json) {
      json_begin_obj();
      json_begin_arr("omap");
      for (size_t i = 0; i < r.n_names; i++) {
        char *v = r.values ? (char *)r.values[i].data : NULL;
        if (v)
          v[r.values[i].len] = 0;
        json_begin_obj();
        json_str("key", r.names[i]);
        json_str("value", v ? v : "");
        json_end_obj();
      }
      json_end_arr();
      json_bool("more", r.more);
      json_end_obj();
      json_done();
    } else {
      for (size_t i = 0; i < r.n_names; i++)
        printf("%s\t%.*s\n", r.names[i], r.values ? (int)r.values[i].len : 0,
               r.values ? (const char *)r.values[i].data : "");
      if (r.more)
        printf("(more)\n");
    }
  } else if (os && os->op == BLK__OSD_OP_TYPE__OP_MAPEXT) {
    if (b->json) {
      json_begin_obj();
      json_begin_arr("extents");
      for (size_t i = 0; i + 1 < r.n_extents; i += 2) {
        json_begin_obj();
        json_uint("offset", r.extents[i]);
        json_uint("length", r.extents[i + 1]);
        json_end_obj();
      }
      json_end_arr();
      json_end_obj();
      json_done();
    } else {
      for (size_t i = 0; i + 1 < r.n_extents; i += 2)
        printf("%llu %llu\n", (unsigned long long)r.extents[i],
               (unsigned long long)r.extents[i + 1]);
    }
  } else if (!strcmp(sub, "stat")) {
    if (b->json) {
      json_begin_obj();
      json_str("pool", pool);
      json_str("name", req.name);
      json_uint("size", r.size);
      json_uint("version_epoch", r.ver_epoch);
      json_uint("version", r.ver);
      json_end_obj();
      json_done();
    } else {
      printf("%s/%s size %llu version %llu.%llu\n", pool, req.name, (unsigned long long)r.size,
             (unsigned long long)r.ver_epoch, (unsigned long long)r.ver);
    }
  } else if (ls) {
    qsort(r.names, r.n_names, sizeof *r.names, cmp_str);
    if (b->json) {
      json_begin_obj();
      json_begin_arr("objects");
      for (size_t i = 0; i < r.n_names; i++)
        json_str(NULL, r.names[i]);
      json_end_arr();
      json_end_obj();
      json_done();
    } else {
      for (size_t i = 0; i < r.n_names; i++)
        printf("%s\n", r.names[i]);
    }
  } else {
    /* changes: put, rm, zero, truncate, xattr/omap changes, locks */
    if (b->json) {
      json_begin_obj();
      json_uint("version_epoch", r.ver_epoch);
      json_uint("version", r.ver);
      json_end_obj();
      json_done();
    } else if (os) {
      printf("version %llu.%llu\n", (unsigned long long)r.ver_epoch, (unsigned long long)r.ver);
    }
  }
out:
  objecter_free(o);
  free(in);
  free(r.data);
  free(r.errdata);
  for (size_t i = 0; r.values && i < r.n_names; i++)
    free(r.values[i].data);
  free(r.values);
  free(r.extents);
  for (size_t i = 0; i < r.n_names; i++)
    free(r.names[i]);
  free(r.names);
  return rc;
}
