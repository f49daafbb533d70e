/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blkctl's entry point: global options, then a command
 * table dispatching on the first word (ceph/rbd habits).
 *   blkctl [-c CONF] [--format plain|json] [--timeout SECS] COMMAND ...
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/blkctl/blkctl.h"
#include "common/log.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: blkctl [-c CONF] [--format plain|json] [--timeout SECS] COMMAND ...\n"
          "\n"
          "cluster:\n"
          "  cluster init [--run-dir DIR] [--mon NAME=HOST:PORT ...] [--mkfs-mon NAME ...]\n"
          "  status                         health, quorum, OSDs, pools, PGs\n"
          "  mon stat                       monitors, leader and quorum\n"
          "  mon bench [--count N]          commit latency of map changes, ReadIndex reads\n"
          "  mon watch [--from E] [--count N] [--mon NAME]   print map updates as they come\n"
          "pools:\n"
          "  pool create NAME PG_NUM [--size N] [--min-size N] [--failure-domain host|osd]\n"
          "  pool ls\n"
          "  pool rm NAME --yes-i-really-mean-it\n"
          "OSDs:\n"
          "  osd tree                       hosts and OSDs with up/in and weights\n"
          "  osd out N | osd in N | osd down N   mark an OSD out / in / down\n"
          "  osd reweight N WEIGHT          set an OSD's weight (1.0 = 1 TiB)\n"
          "  osd map POOL OBJECT            PG, up and acting sets of an object\n"
          "  pg scrub|deep-scrub|repair|query PGID | pg ls [POOL]   scrub and repair PGs\n"
          "objects:\n"
          "  object put POOL NAME FILE|-    write a whole object\n"
          "  object get POOL NAME [FILE|-] [--osd N]   read it (--osd: that OSD's copy)\n"
          "  object rm POOL NAME | object stat POOL NAME | object ls POOL\n"
          "  object bench POOL [--seconds S] [--size B] [--qd N] [--objects N] [--read]\n"
          "images:\n"
          "  image create|ls|info|resize|rm|rename|du|import|export|bench ...  (blkctl image)\n"
          "auth (docs/auth.md):\n"
          "  auth get-or-create ENTITY [mon CAPS] [osd CAPS] [--print-key] [-o FILE]\n"
          "  auth get ENTITY | auth get-key ENTITY | auth ls | auth del ENTITY\n"
          "  auth caps ENTITY [mon CAPS] [osd CAPS] | auth import -i FILE\n"
          "NBD exports (docs/nbd.md):\n"
          "  nbd serve [blk-nbd options] [POOL/IMAGE ...] | nbd map POOL/IMAGE | nbd unmap ... | nbd ls\n"
          "\n"
          "Identity: --id ID (client.ID) or --name TYPE.ID (default client.admin),\n"
          "  --keyring PATH, --key-file PATH; --set OPTION=VALUE overrides the config.\n"
          "The config is -c PATH, else $BLK_CONF, else ./run/blk.conf.\n"
          "Exit status: 0 on success, else the errno of the failure (see docs/blkctl.md).\n");
}

int blkctl_fail(int code, const char *fmt, ...)
{
  va_list ap;
  fputs("blkctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return code;
}

int blkctl_exit_code(int neg_errno)
{
  int e = neg_errno < 0 ? -neg_errno : neg_errno;
  return e == 0 ? 1 : (e > 255 ? 1 : e);
}

int blkctl_connect(struct blkctl *b)
{
  char *cerr = NULL;
  char err[1024];
  if (b->monc)
    return 0;
  b->cfg = config_new("client", "admin");
  if (!b->cfg)
    return ENOMEM;
  int r = config_load_file(b->cfg, b->conf_path, &cerr);
  if (r < 0) {
    int code = blkctl_fail(blkctl_exit_code(r), "%s%s", cerr ? cerr : "cannot read config",
                           r == -ENOENT ? " (run 'blkctl cluster init' or pass -c PATH)" : "");
    free(cerr);
    return code;
  }
  for (int i = 0; i < b->n_sets; i++) {
    char opt[128];
    const char *eq = strchr(b->sets[i], '=');
    if (!eq || (size_t)(eq - b->sets[i]) >= sizeof opt)
      return blkctl_fail(EINVAL, "--set wants OPTION=VALUE, not '%s'", b->sets[i]);
    memcpy(opt, b->sets[i], (size_t)(eq - b->sets[i]));
    opt[eq - b->sets[i]] = 0;
    if (config_set(b->cfg, opt, eq + 1) < 0)
      return blkctl_fail(EINVAL, "bad option %s", b->sets[i]);
  }
  if ((b->name && config_set(b->cfg, "name", b->name) < 0) ||
      (b->keyring && config_set(b->cfg, "keyring", b->keyring) < 0) ||
      (b->key_file && config_set(b->cfg, "key_file", b->key_file) < 0))
    return blkctl_fail(EINVAL, "bad --name, --keyring or --key-file");
  if (b->timeout_ms <= 0)
    b->timeout_ms = (int)config_get_int(b->cfg, "client_timeout");
  b->monc = monc_new(b->base, b->cfg, err, sizeof err);
  if (!b->monc)
    return blkctl_fail(EINVAL, "%s", err);
  return 0;
}

int blkctl_mon_command(struct blkctl *b, Blk__MonCommand *cmd, Blk__MonReply **reply)
{
  char err[2048];
  int r = blkctl_connect(b);
  if (r)
    return r;
  r = monc_command(b->monc, cmd, b->timeout_ms, reply, err, sizeof err);
  if (r < 0)
    return blkctl_fail(blkctl_exit_code(r), "%s", err);
  if ((*reply)->err < 0) {
    int code = blkctl_fail(blkctl_exit_code((*reply)->err), "%s",
                           (*reply)->message[0] ? (*reply)->message : strerror(-(*reply)->err));
    blk__mon_reply__free_unpacked(*reply, NULL);
    *reply = NULL;
    return code;
  }
  return 0;
}

struct command {
  const char *name;
  int (*fn)(struct blkctl *b, int argc, char **argv);
};

static const struct command commands[] = {
  { "cluster", cmd_cluster },
  { "status", cmd_status },
  { "mon", cmd_mon },
  { "osd", cmd_osd },
  { "pool", cmd_pool },
  { "object", cmd_object },
  { "image", cmd_image },
  { "nbd", cmd_nbd },
  { "auth", cmd_auth },
  { "pg", cmd_pg },
  { NULL, NULL },
};

int main(int argc, char **argv)
{
  struct blkctl b = { .prog = argv[0] };
  int i = 1;
  signal(SIGPIPE, SIG_IGN);
  log_init("blkctl", LOG_WARN);
  b.conf_path = getenv("BLK_CONF");
  /* global options may come before or after the command words */
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int nrest = 0;
  if (!rest)
    return ENOMEM;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((!strcmp(a, "-c") || !strcmp(a, "--conf")) && i + 1 < argc) {
      b.conf_path = argv[++i];
    } else if (!strcmp(a, "--format") && i + 1 < argc) {
      const char *f = argv[++i];
      if (!strcmp(f, "json") || !strcmp(f, "json-pretty"))
        b.json = true;
      else if (strcmp(f, "plain") != 0) {
        free(rest);
        return blkctl_fail(EINVAL, "unknown format '%s' (plain or json)", f);
      }
    } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
      char *end;
      double s = strtod(argv[++i], &end);
      if (*end || s <= 0 || s > 86400) {
        free(rest);
        return blkctl_fail(EINVAL, "bad --timeout '%s' (seconds)", argv[i]);
      }
      b.timeout_ms = (int)(s * 1000);
    } else if (!strcmp(a, "--id") && i + 1 < argc) {
      snprintf(b.name_buf, sizeof b.name_buf, "client.%s", argv[++i]);
      b.name = b.name_buf;
    } else if ((!strcmp(a, "--name") || !strcmp(a, "-n")) && i + 1 < argc) {
      b.name = argv[++i];
    } else if ((!strcmp(a, "--keyring") || !strcmp(a, "-k")) && i + 1 < argc) {
      b.keyring = argv[++i];
    } else if (!strcmp(a, "--key-file") && i + 1 < argc) {
      b.key_file = argv[++i];
    } else if (!strcmp(a, "--set") && i + 1 < argc) {
      if (b.n_sets == 16) {
        free(rest);
        return blkctl_fail(EINVAL, "too many --set");
      }
      b.sets[b.n_sets++] = argv[++i];
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      free(rest);
      return 0;
    } else {
      rest[nrest++] = argv[i];
    }
  }
  if (!b.conf_path)
    b.conf_path = "./run/blk.conf";
  if (nrest == 0) {
    usage(stderr);
    free(rest);
    return EINVAL;
  }
  const struct command *c;
  for (c = commands; c->name; c++)
    if (!strcmp(c->name, rest[0]))
      break;
  if (!c->name) {
    fprintf(stderr, "blkctl: unknown command '%s'\n\n", rest[0]);
    usage(stderr);
    free(rest);
    return EINVAL;
  }
  b.base = event_base_new();
  int rc = b.base ? c->fn(&b, nrest, rest) : ENOMEM;
  monc_free(b.monc);
  config_free(b.cfg);
  if (b.base)
    event_base_free(b.base);
  free(rest);
  return rc;
}
