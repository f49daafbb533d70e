/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blk-mon's entry point.  It parses options and the config,
 * builds the modules (store, state, messenger, quorum, commands) and runs
 * the event loop until SIGTERM/SIGINT; nothing else lives here.
 *
 *   blk-mon --id a [-c blk.conf] [--mkfs] [--set NAME=VALUE ...]
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "mon/mon.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: blk-mon --id NAME [-c CONF] [--mkfs] [--set OPTION=VALUE ...]\n"
          "  --id NAME        this monitor's name (one of mon_initial_members)\n"
          "  -c, --conf PATH  config file (default $BLK_CONF or ./run/blk.conf)\n"
          "  --mkfs           create this monitor's store and exit\n"
          "  --set OPT=VAL    override a config option (repeatable)\n"
          "  --help-config    list every option with its default\n");
}

static void on_frame(void *ctx, msgr_conn *c, const struct msgr_frame *f)
{
  struct mon *mon = ctx;
  if (!mon_auth_gate(mon, c, f))
    return;
  switch (f->type) {
  case MSG_RAFT:
    quorum_on_raft_msg(mon, f);
    break;
  case MSG_MON_COMMAND:
  case MSG_MON_SUBSCRIBE:
  case MSG_MON_MAP_HISTORY:
    commands_on_frame(mon, c, f);
    break;
  case MSG_OSD_BEACON:
  case MSG_OSD_FAILURE:
  case MSG_PG_STATS:
    osdmon_on_frame(mon, c, f);
    break;
  default:
    log_warn("mon", "unknown message type %u from %s", f->type, msgr_conn_peer(c));
    break;
  }
}

static void on_close(void *ctx, msgr_conn *c, int err)
{
  commands_on_close(ctx, c);
  mon_auth_on_close(ctx, c);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
  struct mon *mon = arg;
  log_info("mon", "signal %d: shutting down", (int)sig);
  mon->stopping = true;
  event_base_loopbreak(mon->base);
}

int main(int argc, char **argv)
{
  static const struct option longopts[] = {
    { "id", required_argument, NULL, 'i' },
    { "conf", required_argument, NULL, 'c' },
    { "mkfs", no_argument, NULL, 'm' },
    { "set", required_argument, NULL, 's' },
    { "help-config", no_argument, NULL, 'H' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *id = NULL, *conf = getenv("BLK_CONF");
  bool mkfs = false;
  char *sets[64];
  int nsets = 0, opt, rc = 1;
  while ((opt = getopt_long(argc, argv, "i:c:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'i': id = optarg; break;
    case 'c': conf = optarg; break;
    case 'm': mkfs = true; break;
    case 's':
      if (nsets == 64) {
        fprintf(stderr, "blk-mon: too many --set options\n");
        return 2;
      }
      sets[nsets++] = optarg;
      break;
    case 'H': config_print_help(stdout); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!id || optind != argc) {
    usage(stderr);
    return 2;
  }
  if (!conf)
    conf = "./run/blk.conf";

  struct mon mon = { 0 };
  char err[512];
  char *cerr = NULL;
  mon.cfg = config_new("mon", id);
  if (!mon.cfg)
    return 1;
  if (config_load_file(mon.cfg, conf, &cerr) < 0) {
    fprintf(stderr, "blk-mon: %s\n", cerr ? cerr : "cannot read config");
    free(cerr);
    goto out_cfg;
  }
  for (int i = 0; i < nsets; i++) {
    char *eq = strchr(sets[i], '=');
    if (!eq) {
      fprintf(stderr, "blk-mon: --set needs OPTION=VALUE, got '%s'\n", sets[i]);
      goto out_cfg;
    }
    *eq = 0;
    int r = config_set(mon.cfg, sets[i], eq + 1);
    if (r < 0) {
      fprintf(stderr, "blk-mon: %s option '%s'\n", r == -ENOENT ? "unknown" : "bad value for",
              sets[i]);
      goto out_cfg;
    }
  }
  enum log_level lvl = LOG_INFO;
  log_parse_level(config_get_str(mon.cfg, "log_level"), &lvl);
  static char logname[80];
  snprintf(logname, sizeof logname, "mon.%s", id);
  log_init(logname, lvl);

  if (util_monmap_from_config(mon.cfg, mon.monmap, &mon.n_mons, err, sizeof err) < 0) {
    fprintf(stderr, "blk-mon: %s\n", err);
    goto out_cfg;
  }
  uint32_t rank = 0;
  for (size_t i = 0; i < mon.n_mons; i++)
    if (!strcmp(mon.monmap[i].name, id))
      rank = mon.monmap[i].rank;
  if (!rank) {
    fprintf(stderr, "blk-mon: '%s' is not in mon_initial_members\n", id);
    goto out_cfg;
  }
  const char *run_dir = config_get_str(mon.cfg, "run_dir");
  char data[4096];
  if (*config_get_str(mon.cfg, "mon_data"))
    snprintf(data, sizeof data, "%s", config_get_str(mon.cfg, "mon_data"));
  else
    snprintf(data, sizeof data, "%s/mon.%s", run_dir, id);

  if (mkfs) {
    struct mon_ident ident = { .rank = rank };
    const char *fsid = config_get_str(mon.cfg, "fsid");
    if (strlen(fsid) != 36) {
      fprintf(stderr, "blk-mon: fsid missing or malformed in %s (run blkctl cluster init)\n", conf);
      goto out_cfg;
    }
    strcpy(ident.fsid, fsid);
    snprintf(ident.name, sizeof ident.name, "%s", id);
    util_mkdir_p(run_dir, 0755);
    int r = mon_store_mkfs(data, &ident);
    if (r < 0) {
      fprintf(stderr, "blk-mon: cannot create monitor store in %s: %s\n", data,
              r == -EEXIST ? "a store already exists there" : strerror(-r));
      goto out_cfg;
    }
    printf("created monitor store for mon.%s (rank %u) in %s\n", id, rank, data);
    rc = 0;
    goto out_cfg;
  }

  signal(SIGPIPE, SIG_IGN);
  int r = mon_store_open(data, &mon.store);
  if (r < 0) {
    fprintf(stderr, "blk-mon: cannot open monitor store %s (%s); run blk-mon --mkfs first\n",
            data, strerror(-r));
    goto out_cfg;
  }
  if (mon_store_ident(mon.store, &mon.ident) < 0 || mon.ident.rank != rank ||
      strcmp(mon.ident.fsid, config_get_str(mon.cfg, "fsid")) != 0) {
    fprintf(stderr, "blk-mon: store %s belongs to another monitor or cluster\n", data);
    goto out_store;
  }
  mon.state = mon_state_new((size_t)config_get_int(mon.cfg, "mon_map_history"),
                            (size_t)config_get_int(mon.cfg, "mon_map_history_max"));
  mon.base = event_base_new();
  struct frame_limits lim = {
    (uint32_t)config_get_int(mon.cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(mon.cfg, "msgr_max_data"),
  };
  static const struct msgr_ops ops = { .on_frame = on_frame, .on_close = on_close };
  mon.msgr = mon.base ? msgr_new(mon.base, &lim, &ops, &mon) : NULL;
  if (!mon.state || !mon.msgr)
    goto out_all;
  /* peers must find a restarted monitor quickly: backoff at most an
   * election timeout */
  msgr_set_timeouts(mon.msgr, (int)config_get_int(mon.cfg, "msgr_connect_timeout"),
                    (int)config_get_int(mon.cfg, "mon_election_timeout") / 2);
  msgr_set_tcp_user_timeout(mon.msgr, (int)config_get_int(mon.cfg, "msgr_tcp_user_timeout"));
  mon.snapshot_every = (uint64_t)config_get_int(mon.cfg, "mon_snapshot_every");
  if (mon.snapshot_every == 0)
    mon.snapshot_every = 1000;
  const char *addr = *config_get_str(mon.cfg, "mon_addr") ? config_get_str(mon.cfg, "mon_addr")
                                                          : mon.monmap[rank - 1].addr;
  r = msgr_listen(mon.msgr, addr);
  if (r < 0) {
    log_err("mon", "cannot listen on %s: %s", addr, strerror(-r));
    goto out_all;
  }
  r = mon_auth_start(&mon);
  if (r < 0) {
    log_err("mon", "cannot start auth: %s", strerror(-r));
    goto out_all;
  }
  r = quorum_start(&mon);
  if (r < 0) {
    log_err("mon", "cannot start the quorum: %s", strerror(-r));
    goto out_all;
  }
  r = osdmon_start(&mon);
  if (r < 0) {
    log_err("mon", "cannot start OSD monitoring: %s", strerror(-r));
    quorum_stop(&mon);
    goto out_all;
  }
  mon.sig_ev[0] = evsignal_new(mon.base, SIGTERM, on_signal, &mon);
  mon.sig_ev[1] = evsignal_new(mon.base, SIGINT, on_signal, &mon);
  event_add(mon.sig_ev[0], NULL);
  event_add(mon.sig_ev[1], NULL);
  char pidfile[4200];
  snprintf(pidfile, sizeof pidfile, "%s/mon.%s.pid", run_dir, id);
  util_write_pidfile(pidfile);
  log_info("mon", "mon.%s (rank %u of %zu) listening on %s, store %s, fsid %s", id, rank,
           mon.n_mons, addr, data, mon.ident.fsid);
  event_base_dispatch(mon.base);
  rc = mon.stopping ? 0 : 1;
  unlink(pidfile);
  event_free(mon.sig_ev[0]);
  event_free(mon.sig_ev[1]);
  osdmon_stop(&mon);
  commands_stop(&mon);
  quorum_stop(&mon);
out_all:
  msgr_free(mon.msgr);
  mon_auth_stop(&mon);
  if (mon.base)
    event_base_free(mon.base);
  mon_state_free(mon.state);
out_store:
  mon_store_close(mon.store);
out_cfg:
  config_free(mon.cfg);
  return rc;
}
