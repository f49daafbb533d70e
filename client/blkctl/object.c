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
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  }
  if (!err && rep) {
    r->size = rep->size;
    if (rep->version) {
      r->ver_epoch = rep->version->epoch;
      r->ver = rep->version->v;
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

int cmd_object(struct blkctl *b, int argc, char **argv)
{
  static const char *usage =
      "usage: blkctl object put POOL NAME FILE|- | get POOL NAME [FILE|-] [--osd N] | "
      "rm POOL NAME | stat POOL NAME [--osd N] | ls POOL [--osd N]";
  if (argc >= 2 && !strcmp(argv[1], "bench"))
    return cmd_object_bench(b, argc, argv);
  int32_t osd = -1;
  char *args[8];
  int na = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--osd") && i + 1 < argc) {
      osd = atoi(argv[++i]);
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
  int rc = blkctl_connect(b);
  if (rc)
    return rc;
  objecter *o = objecter_new(b->base, b->monc, b->cfg);
  if (!o)
    return blkctl_fail(ENOMEM, "out of memory");
  struct sync_res r = { .pending = 1 };
  struct objecter_req req = { .pool = pool, .name = na > 2 ? args[2] : NULL, .osd = osd };
  uint8_t *in = NULL;
  size_t in_len = 0;
  if (monc_auth_refused(b->monc) || objecter_wait_map(o, b->timeout_ms) < 0) {
    rc = monc_auth_refused(b->monc)
             ? blkctl_fail(EACCES, "authentication as %s failed: %s", monc_entity(b->monc),
                           monc_auth_error(b->monc))
             : blkctl_fail(ETIMEDOUT, "no map from the monitors within %d ms", b->timeout_ms);
    goto out;
  }
  if (!strcmp(sub, "put")) {
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
    goto out;
  }
  if (!strcmp(sub, "get")) {
    FILE *f = na > 3 && strcmp(args[3], "-") ? fopen(args[3], "wb") : stdout;
    if (!f || (r.len && fwrite(r.data, 1, r.len, f) != r.len)) {
      rc = blkctl_fail(EIO, "cannot write the output");
    }
    if (f && f != stdout)
      fclose(f);
  } else if (!strcmp(sub, "stat")) {
    if (b->json) {
      json_begin_obj();
      json_str("pool", pool);
      json_str("name", req.name);
      json_uint("size", r.size);
      json_end_obj();
      json_done();
    } else {
      printf("%s/%s size %llu\n", pool, req.name, (unsigned long long)r.size);
    }
  } else if (!strcmp(sub, "put") || !strcmp(sub, "rm")) {
    if (b->json) {
      json_begin_obj();
      json_uint("version_epoch", r.ver_epoch);
      json_uint("version", r.ver);
      json_end_obj();
      json_done();
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
  }
out:
  objecter_free(o);
  free(in);
  free(r.data);
  for (size_t i = 0; i < r.n_names; i++)
    free(r.names[i]);
  free(r.names);
  return rc;
}
