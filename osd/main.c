/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blk-osd's entry point.  It only parses options and config
 * and runs one of the store tools: --mkfs formats a device, --fsck checks
 * it (exit 1 on any inconsistency), --bench measures it.  The replication
 * layer (PGs, messenger) will add the daemon mode here.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "osd/internal.h"
#include "osd/osd.h"
#include "osd/store.h"

static void usage(FILE *f)
{
  fprintf(f,
    "usage: blk-osd --id N [-c CONF] --device PATH [--data DIR]   (run the daemon)\n"
    "       blk-osd --mkfs --device PATH --osd-id N [--data DIR] [--force]\n"
    "               [--size SIZE] [--journal-size SIZE]\n"
    "       blk-osd --fsck [--deep] --device PATH [--data DIR]\n"
    "       blk-osd --bench --device PATH [--data DIR] [--bench-time SECS]\n"
    "               [--bench-size SIZE] [--bench-seq-qd N] [--bench-only NAME]\n"
    "               [--bench-settle SECS]\n"
    "       blk-osd --corrupt-object|--remove-object POOL.PG/NAME --device PATH [--data DIR]\n"
    "               (test tools on a stopped OSD: flip bytes in the object's first\n"
    "               data block on the device / remove the object; PG in hex)\n"
    "common: [--conf FILE] [--set NAME=VALUE]... [--log-level LEVEL]\n"
    "        --help-config lists every option\n"
    "The data directory (RocksDB) defaults to <device>.db.\n");
}

/* Test tool on a stopped OSD: flip 16 bytes of the first data block of
 * an object on the device (so reads fail their crc32c), or remove the
 * object.  spec is POOL.PG/NAME (PG in hex).  Closes st.  Exit code. */
static int debug_object(store *st, bool corrupt, const char *spec)
{
  unsigned pool, pg;
  int n = 0;
  if (sscanf(spec, "%u.%x/%n", &pool, &pg, &n) != 2 || n == 0 || !spec[n]) {
    fprintf(stderr, "blk-osd: bad object '%s' (POOL.PG/NAME, PG in hex)\n", spec);
    store_close(st);
    return 2;
  }
  struct store_oid oid = { pool, pg, spec + n, STORE_SNAP_HEAD };
  struct store_stat sst;
  int r = store_stat_sync(st, &oid, &sst);
  if (r < 0) {
    fprintf(stderr, "blk-osd: object %s: %s\n", spec, strerror(-r));
    store_close(st);
    return 1;
  }
  if (!corrupt) {
    store_txn *t = store_txn_new();
    r = t ? store_txn_remove(t, &oid) : -ENOMEM;
    r = r < 0 ? (store_txn_free(t), r) : store_queue_sync(st, t);
    store_close(st);
    if (r < 0)
      fprintf(stderr, "blk-osd: remove %s: %s\n", spec, strerror(-r));
    else
      printf("removed %s\n", spec);
    return r < 0 ? 1 : 0;
  }
  int64_t off = store_debug_block_offset(st, &oid, 0);
  char *devpath = strdup(store_debug_device(st));
  store_close(st);
  if (off < 0 || !devpath) {
    fprintf(stderr, "blk-osd: object %s has no data block: %s\n", spec,
            strerror(off < 0 ? (int)-off : ENOMEM));
    free(devpath);
    return 1;
  }
  int fd = open(devpath, O_RDWR);
  uint8_t b[16];
  bool ok = fd >= 0 && pread(fd, b, sizeof b, off) == (ssize_t)sizeof b;
  for (size_t i = 0; i < sizeof b; i++)
    b[i] ^= 0xA5;
  ok = ok && pwrite(fd, b, sizeof b, off) == (ssize_t)sizeof b && fsync(fd) == 0;
  if (!ok)
    fprintf(stderr, "blk-osd: cannot corrupt %s at %s offset %lld: %s\n", spec, devpath,
            (long long)off, strerror(errno));
  else
    printf("corrupted %s: 16 bytes at device offset %lld\n", spec, (long long)off);
  if (fd >= 0)
    close(fd);
  free(devpath);
  return ok ? 0 : 1;
}

enum { O_MKFS = 256, O_FSCK, O_BENCH, O_DEEP, O_FORCE, O_SIZE, O_JSIZE,
       O_BTIME, O_BSIZE, O_BQD, O_BONLY, O_BSETTLE, O_SET, O_LOG, O_HELPCFG,
       O_CORRUPT, O_RMOBJ };

int main(int argc, char **argv)
{
  static const struct option lo[] = {
    { "mkfs", no_argument, 0, O_MKFS }, { "fsck", no_argument, 0, O_FSCK },
    { "bench", no_argument, 0, O_BENCH }, { "deep", no_argument, 0, O_DEEP },
    { "force", no_argument, 0, O_FORCE }, { "device", required_argument, 0, 'd' },
    { "data", required_argument, 0, 'D' }, { "osd-id", required_argument, 0, 'i' },
    { "id", required_argument, 0, 'i' },
    { "size", required_argument, 0, O_SIZE },
    { "journal-size", required_argument, 0, O_JSIZE },
    { "bench-time", required_argument, 0, O_BTIME },
    { "bench-size", required_argument, 0, O_BSIZE },
    { "bench-seq-qd", required_argument, 0, O_BQD },
    { "bench-only", required_argument, 0, O_BONLY },
    { "bench-settle", required_argument, 0, O_BSETTLE },
    { "conf", required_argument, 0, 'c' }, { "set", required_argument, 0, O_SET },
    { "log-level", required_argument, 0, O_LOG },
    { "help-config", no_argument, 0, O_HELPCFG }, { "help", no_argument, 0, 'h' },
    { "corrupt-object", required_argument, 0, O_CORRUPT },
    { "remove-object", required_argument, 0, O_RMOBJ },
    { 0, 0, 0, 0 } };
  int mode = 0, c;
  bool deep = false;
  const char *conf = NULL, *loglevel = NULL, *id = NULL;
  char *sets[64];
  int nsets = 0;
  struct store_mkfs_opts mo = { 0 };
  struct bench_opts bo = { .settle = 2 };
  const char *dev = NULL, *data = NULL, *obj_arg = NULL;
  while ((c = getopt_long(argc, argv, "hc:", lo, NULL)) != -1) {
    switch (c) {
    case O_MKFS: case O_FSCK: case O_BENCH: case O_CORRUPT: case O_RMOBJ:
      if (c == O_CORRUPT || c == O_RMOBJ)
        obj_arg = optarg;
      if (mode && mode != c) {
        fprintf(stderr, "blk-osd: choose one of --mkfs, --fsck, --bench\n");
        return 2;
      }
      mode = c;
      break;
    case O_DEEP: deep = true; break;
    case O_FORCE: mo.force = true; break;
    case 'd': dev = optarg; break;
    case 'D': data = optarg; break;
    case 'i': {
      char *end;
      unsigned long v = strtoul(optarg, &end, 10);
      if (*end || !*optarg || v > UINT32_MAX) {
        fprintf(stderr, "blk-osd: bad --osd-id '%s'\n", optarg);
        return 2;
      }
      mo.osd_id = (uint32_t)v;
      id = optarg;
      break;
    }
    case O_SIZE: case O_JSIZE: case O_BSIZE: {
      uint64_t v;
      if (config_parse_size(optarg, &v) < 0) {
        fprintf(stderr, "blk-osd: bad size '%s'\n", optarg);
        return 2;
      }
      if (c == O_SIZE) mo.device_size = v;
      else if (c == O_JSIZE) mo.journal_size = v;
      else bo.dataset = v;
      break;
    }
    case O_BTIME: bo.seconds = atof(optarg); break;
    case O_BQD: bo.seq_qd = (unsigned)atoi(optarg); break;
    case O_BONLY: bo.only = optarg; break;
    case O_BSETTLE: bo.settle = atof(optarg); break;
    case 'c': conf = optarg; break;
    case O_SET:
      if (nsets == 64) {
        fprintf(stderr, "blk-osd: too many --set\n");
        return 2;
      }
      sets[nsets++] = optarg;
      break;
    case O_LOG: loglevel = optarg; break;
    case O_HELPCFG: config_print_help(stdout); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc || (!mode && !id)) {
    usage(stderr);
    return 2;
  }
  if (!conf && !mode)
    conf = getenv("BLK_CONF");
  if (!conf && !mode)
    conf = "./run/blk.conf";
  config *cfg = config_new("osd", id);
  if (!cfg) {
    perror("blk-osd: config");
    return 1;
  }
  int rc = 1;
  char *err = NULL, *ddir = NULL;
  struct event_base *base = NULL;
  store *st = NULL;
  if (conf && config_load_file(cfg, conf, &err) < 0) {
    fprintf(stderr, "blk-osd: %s: %s\n", conf, err ? err : "cannot load");
    free(err);
    goto out_cfg;
  }
  for (int i = 0; i < nsets; i++) {
    char *eq = strchr(sets[i], '=');
    if (!eq) {
      fprintf(stderr, "blk-osd: --set wants NAME=VALUE, not '%s'\n", sets[i]);
      goto out_cfg;
    }
    *eq = 0;
    if (config_set(cfg, sets[i], eq + 1) < 0) {
      fprintf(stderr, "blk-osd: bad option %s=%s\n", sets[i], eq + 1);
      goto out_cfg;
    }
  }
  if (loglevel && config_set(cfg, "log_level", loglevel) < 0) {
    fprintf(stderr, "blk-osd: bad log level '%s'\n", loglevel);
    goto out_cfg;
  }
  enum log_level lvl = LOG_INFO;
  log_parse_level(config_get_str(cfg, "log_level"), &lvl);
  static char lname[32];
  snprintf(lname, sizeof lname, "osd.%s", id ? id : "?");
  log_init(lname, lvl);
  if (!dev || !*dev)
    dev = config_get_str(cfg, "osd_device");
  if (!data || !*data)
    data = config_get_str(cfg, "osd_data");
  if (!dev || !*dev) {
    fprintf(stderr, "blk-osd: --device is required\n");
    goto out_cfg;
  }
  if (!data || !*data) {
    ddir = store_default_data_dir(dev);
    data = ddir;
  }
  if (mode == O_MKFS) {
    if (!id) {
      fprintf(stderr, "blk-osd: --mkfs needs --osd-id\n");
      goto out_cfg;
    }
    int r = store_mkfs(dev, data, &mo, cfg);
    if (r < 0)
      fprintf(stderr, "blk-osd: mkfs of %s failed: %s\n", dev, strerror(-r));
    rc = r < 0 ? 1 : 0;
    goto out_cfg;
  }
  base = event_base_new();
  if (!base)
    goto out_cfg;
  int r = store_open(dev, data, base, cfg, &st);
  if (r < 0) {
    fprintf(stderr, "blk-osd: cannot open the store on %s: %s\n", dev,
            strerror(-r));
    goto out_base;
  }
  if (!mode) {
    signal(SIGPIPE, SIG_IGN);
    struct osd osd = { .cfg = cfg, .base = base, .st = st, .id = (int32_t)mo.osd_id };
    char pidfile[4200];
    const char *run_dir = config_get_str(cfg, "run_dir");
    util_mkdir_p(run_dir, 0755);
    snprintf(pidfile, sizeof pidfile, "%s/osd.%d.pid", run_dir, osd.id);
    r = osd_start(&osd);
    if (r == 0) {
      util_write_pidfile(pidfile);
      event_base_dispatch(base);
      unlink(pidfile);
      rc = osd.stopping ? 0 : 1;
    }
    osd_stop(&osd);
  } else if (mode == O_CORRUPT || mode == O_RMOBJ) {
    rc = debug_object(st, mode == O_CORRUPT, obj_arg);
    st = NULL;   /* closed by debug_object */
  } else if (mode == O_FSCK) {
    r = store_fsck(st, deep);
    if (r < 0)
      fprintf(stderr, "blk-osd: fsck could not run: %s\n", strerror(-r));
    else if (r > 0)
      fprintf(stderr, "blk-osd: fsck found %d problem(s)\n", r);
    else
      printf("fsck: clean\n");
    struct store_statfs sf;   /* space accounting, for tests and operators */
    store_statfs(st, &sf);
    printf("fsck: used %llu of %llu bytes\n", (unsigned long long)sf.used,
           (unsigned long long)sf.total);
    rc = r == 0 ? 0 : 1;
  } else {
    r = store_bench(st, base, &bo);
    rc = r < 0 ? 1 : 0;
  }
  if (st)
    store_close(st);
out_base:
  event_base_free(base);
out_cfg:
  free(ddir);
  config_free(cfg);
  return rc;
}
