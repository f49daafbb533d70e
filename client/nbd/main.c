/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blk-nbd's entry point: parse options, connect to the
 * cluster with libblk, build the server (server.c) and run the libevent
 * loop until SIGTERM/SIGINT, which stops accepting and lets connections
 * finish what they have in flight (a second signal, or 10 s, cuts that
 * short).  --daemon forks *before* libblk starts its threads; the child
 * reports through a pipe whether it came up, so the parent's exit status
 * says if the server is listening (blkctl nbd map relies on that).
 *
 *   blk-nbd [-c CONF] [--id NAME] [--listen HOST:PORT ...] [--socket PATH]
 *           [--socket-mode OCTAL] [--read-only] [--pool POOL ...]
 *           [--tls off|on|require] [--tls-certs DIR] [--tls-psk FILE]
 *           [--tls-verify-peer] [--max-inflight N] [--read-holes scan|map|off]
 *           [--lock-wait SECONDS] [--io-thread libblk|own] [--daemon]
 *           [--pid-file PATH] [--log-file PATH] [--log-level LEVEL]
 *           [POOL/IMAGE[@SNAP] ...]
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/nbd/nbd.h"
#include "common/log.h"
#include "common/util.h"

#define SUB "nbd"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: blk-nbd [-c CONF] [--id NAME] [--keyring PATH] [--key-file PATH] [--listen HOST:PORT ...] [--socket PATH]\n"
          "               [--socket-mode OCTAL] [--read-only] [--pool POOL ...]\n"
          "               [--tls off|on|require] [--tls-certs DIR] [--tls-psk FILE]\n"
          "               [--tls-verify-peer] [--max-inflight N] [--read-holes scan|map|off]\n"
          "               [--lock-wait SECONDS] [--io-thread libblk|own] [--daemon]\n"
          "               [--pid-file PATH] [--log-file PATH] [--log-level LEVEL]\n"
          "               [POOL/IMAGE[@SNAP] ...]\n"
          "Exports blkstore images over NBD.  With no image named, any POOL/IMAGE the\n"
          "key can open is served and NBD_OPT_LIST shows the images of the --pool\n"
          "pools.  Default listener: 127.0.0.1:10809 when neither --listen nor\n"
          "--socket is given.  See docs/nbd.md.\n");
}

struct stop_ctx {
  struct nbd_server *srv;
  struct event_base *base;
  struct event *timer;
  int signals;
};

static void stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
  struct stop_ctx *s = arg;
  (void)fd;
  (void)what;
  log_warn(SUB, "connections did not finish within 10 s; stopping anyway");
  event_base_loopbreak(s->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
  struct stop_ctx *s = arg;
  (void)what;
  if (++s->signals > 1) {
    event_base_loopbreak(s->base);
    return;
  }
  log_info(SUB, "signal %d: stopping (finishing requests in flight)", (int)sig);
  struct timeval tv = { 10, 0 };
  s->timer = evtimer_new(s->base, stop_timeout_cb, s);
  if (s->timer)
    evtimer_add(s->timer, &tv);
  nbd_server_stop(s->srv);
}

static int parse_args(int argc, char **argv, struct nbd_config *cfg, bool *daemonize,
                      const char **pid_file, const char **log_file, const char **log_level)
{
  static const char *images[256], *pools[64];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                     \
  do {                                                             \
    if (!v) {                                                      \
      fprintf(stderr, "blk-nbd: %s needs a value\n", a);           \
      return -EINVAL;                                              \
    }                                                              \
    i++;                                                           \
  } while (0)
    if (!strcmp(a, "-c") || !strcmp(a, "--conf")) {
      NEED();
      cfg->conf_path = v;
    } else if (!strcmp(a, "--id")) {
      NEED();
      cfg->client_id = v;
    } else if (!strcmp(a, "--keyring")) {
      NEED();
      cfg->keyring = v;
    } else if (!strcmp(a, "--key-file")) {
      NEED();
      cfg->key_file = v;
    } else if (!strcmp(a, "--listen")) {
      NEED();
      if (cfg->nlisten >= sizeof cfg->listen / sizeof cfg->listen[0]) {
        fprintf(stderr, "blk-nbd: too many --listen\n");
        return -EINVAL;
      }
      cfg->listen[cfg->nlisten++] = v;
    } else if (!strcmp(a, "--socket")) {
      NEED();
      cfg->socket_path = v;
    } else if (!strcmp(a, "--socket-mode")) {
      NEED();
      char *end;
      long m = strtol(v, &end, 8);
      if (*end || m < 0 || m > 07777) {
        fprintf(stderr, "blk-nbd: bad --socket-mode '%s' (octal, e.g. 0660)\n", v);
        return -EINVAL;
      }
      cfg->socket_mode = (int)m;
    } else if (!strcmp(a, "--read-only") || !strcmp(a, "-r")) {
      cfg->read_only = true;
    } else if (!strcmp(a, "--pool")) {
      NEED();
      if (cfg->npools >= sizeof pools / sizeof pools[0])
        return -EINVAL;
      pools[cfg->npools++] = v;
    } else if (!strcmp(a, "--tls")) {
      NEED();
      if (!strcmp(v, "off"))
        cfg->tls = NBD_TLS_OFF;
      else if (!strcmp(v, "on"))
        cfg->tls = NBD_TLS_ON;
      else if (!strcmp(v, "require"))
        cfg->tls = NBD_TLS_REQUIRE;
      else {
        fprintf(stderr, "blk-nbd: bad --tls '%s' (off, on or require)\n", v);
        return -EINVAL;
      }
    } else if (!strcmp(a, "--tls-certs")) {
      NEED();
      cfg->tls_certs = v;
    } else if (!strcmp(a, "--tls-psk")) {
      NEED();
      cfg->tls_psk = v;
    } else if (!strcmp(a, "--tls-verify-peer")) {
      cfg->tls_verify_peer = true;
    } else if (!strcmp(a, "--max-inflight")) {
      NEED();
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 4096) {
        fprintf(stderr, "blk-nbd: bad --max-inflight '%s' (1..4096)\n", v);
        return -EINVAL;
      }
      cfg->max_inflight = (unsigned)n;
    } else if (!strcmp(a, "--read-holes")) {
      NEED();
      if (!strcmp(v, "scan"))
        cfg->read_holes = NBD_HOLES_SCAN;
      else if (!strcmp(v, "map"))
        cfg->read_holes = NBD_HOLES_MAP;
      else if (!strcmp(v, "off"))
        cfg->read_holes = NBD_HOLES_OFF;
      else {
        fprintf(stderr, "blk-nbd: bad --read-holes '%s' (scan, map or off)\n", v);
        return -EINVAL;
      }
    } else if (!strcmp(a, "--io-thread")) {
      NEED();
      if (!strcmp(v, "libblk"))
        cfg->own_io_thread = false;
      else if (!strcmp(v, "own"))
        cfg->own_io_thread = true;
      else {
        fprintf(stderr, "blk-nbd: bad --io-thread '%s' (libblk or own)\n", v);
        return -EINVAL;
      }
    } else if (!strcmp(a, "--lock-wait")) {
      NEED();
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || end == v || n < 1 || n > 3600) {
        fprintf(stderr, "blk-nbd: bad --lock-wait '%s' (seconds, 1..3600)\n", v);
        return -EINVAL;
      }
      cfg->lock_wait_s = (unsigned)n;
    } else if (!strcmp(a, "--daemon") || !strcmp(a, "-d")) {
      *daemonize = true;
    } else if (!strcmp(a, "--pid-file")) {
      NEED();
      *pid_file = v;
    } else if (!strcmp(a, "--log-file")) {
      NEED();
      *log_file = v;
    } else if (!strcmp(a, "--log-level")) {
      NEED();
      *log_level = v;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 1;
    } else if (a[0] == '-') {
      fprintf(stderr, "blk-nbd: unknown option '%s'\n", a);
      usage(stderr);
      return -EINVAL;
    } else {
      char p[256], im[256], sn[256];
      if (nbd_export_name_split(a, strlen(a), p, im, sn) < 0) {
        fprintf(stderr, "blk-nbd: '%s' is not POOL/IMAGE[@SNAP]\n", a);
        return -EINVAL;
      }
      if (cfg->nimages >= sizeof images / sizeof images[0])
        return -EINVAL;
      images[cfg->nimages++] = a;
    }
#undef NEED
  }
  cfg->images = images;
  cfg->pools = pools;
  if (cfg->tls == NBD_TLS_OFF && (cfg->tls_certs || cfg->tls_psk))
    cfg->tls = NBD_TLS_REQUIRE; /* credentials given: TLS it is */
  if (cfg->tls != NBD_TLS_OFF && !cfg->tls_certs && !cfg->tls_psk) {
    fprintf(stderr, "blk-nbd: --tls %s needs --tls-certs DIR or --tls-psk FILE\n",
            cfg->tls == NBD_TLS_ON ? "on" : "require");
    return -EINVAL;
  }
  if (cfg->nlisten == 0 && !cfg->socket_path)
    cfg->listen[cfg->nlisten++] = "127.0.0.1:10809";
  return 0;
}

int main(int argc, char **argv)
{
  struct nbd_config cfg = { .socket_mode = -1, .max_inflight = 128 };
  bool daemonize = false;
  const char *pid_file = NULL, *log_file = NULL, *log_level = NULL;
  int notify[2] = { -1, -1 };
  char err[1024];
  int r;

  signal(SIGPIPE, SIG_IGN);
  log_init("blk-nbd", LOG_INFO);
  cfg.conf_path = getenv("BLK_CONF");
  r = parse_args(argc, argv, &cfg, &daemonize, &pid_file, &log_file, &log_level);
  if (r)
    return r > 0 ? 0 : EINVAL;
  if (!cfg.conf_path)
    cfg.conf_path = "./run/blk.conf";
  if (log_level) {
    enum log_level lv;
    if (log_parse_level(log_level, &lv) < 0) {
      fprintf(stderr, "blk-nbd: bad --log-level '%s'\n", log_level);
      return EINVAL;
    }
    log_set_level(lv);
  }
  if (daemonize) {
    if (pipe2(notify, O_CLOEXEC) < 0) {
      perror("blk-nbd: pipe");
      return EIO;
    }
    pid_t pid = fork();
    if (pid < 0) {
      perror("blk-nbd: fork");
      return EIO;
    }
    if (pid > 0) {
      /* parent: wait for the child's verdict */
      unsigned char st = EIO;
      close(notify[1]);
      if (read(notify[0], &st, 1) != 1) {
        int ws;
        waitpid(pid, &ws, 0);
        st = WIFEXITED(ws) && WEXITSTATUS(ws) ? (unsigned char)WEXITSTATUS(ws) : EIO;
      }
      return st;
    }
    close(notify[0]);
    setsid();
  }
  if (log_file) {
    int fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
      fprintf(stderr, "blk-nbd: %s: %s\n", log_file, strerror(errno));
      return EIO;
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
  }

  blk_cluster *cluster = NULL;
  struct event_base *base = NULL;
  struct nbd_server srv;
  bool srv_built = false;
  int rc = 0;
  r = blk_cluster_create(&cluster);
  if (r < 0) {
    fprintf(stderr, "blk-nbd: cannot create the cluster handle: %s\n", strerror(-r));
    rc = -r;
    goto out;
  }
  r = blk_cluster_conf_read(cluster, cfg.conf_path);
  if (r < 0) {
    fprintf(stderr, "blk-nbd: cannot read config %s: %s\n", cfg.conf_path, strerror(-r));
    rc = -r;
    goto out;
  }
  if (cfg.client_id && (r = blk_cluster_conf_set(cluster, "name", cfg.client_id)) < 0) {
    fprintf(stderr, "blk-nbd: --id %s: %s\n", cfg.client_id, strerror(-r));
    rc = -r;
    goto out;
  }
  if (cfg.keyring && (r = blk_cluster_conf_set(cluster, "keyring", cfg.keyring)) < 0) {
    fprintf(stderr, "blk-nbd: --keyring %s: %s\n", cfg.keyring, strerror(-r));
    rc = -r;
    goto out;
  }
  if (cfg.key_file && (r = blk_cluster_conf_set(cluster, "key_file", cfg.key_file)) < 0) {
    fprintf(stderr, "blk-nbd: --key-file %s: %s\n", cfg.key_file, strerror(-r));
    rc = -r;
    goto out;
  }
  if (cfg.lock_wait_s) {
    /* how long a read-write open waits for another writer's lock */
    char v[32];
    snprintf(v, sizeof v, "%us", cfg.lock_wait_s);
    if ((r = blk_cluster_conf_set(cluster, "image_lock_timeout", v)) < 0) {
      fprintf(stderr, "blk-nbd: --lock-wait %s: %s\n", v, strerror(-r));
      rc = -r;
      goto out;
    }
  }
  r = blk_cluster_connect(cluster);
  if (r < 0) {
    fprintf(stderr, "blk-nbd: cannot connect to the cluster: %s\n", strerror(-r));
    rc = -r;
    goto out;
  }
  base = event_base_new();
  if (!base) {
    rc = ENOMEM;
    goto out;
  }
  r = nbd_server_init(&srv, base, &cfg, cluster, err, sizeof err);
  srv_built = true;
  if (r < 0) {
    fprintf(stderr, "blk-nbd: %s\n", err);
    rc = -r;
    goto out;
  }
  /* named exports are opened now, so a typo fails at start */
  for (size_t i = 0; i < cfg.nimages; i++) {
    struct nbd_export *e;
    r = nbd_export_get(&srv, cfg.images[i], &e, err, sizeof err);
    if (r < 0) {
      fprintf(stderr, "blk-nbd: %s\n", err);
      rc = -r;
      goto out;
    }
    nbd_export_put(e);
  }
  if (pid_file && util_write_pidfile(pid_file) < 0) {
    fprintf(stderr, "blk-nbd: cannot write %s: %s\n", pid_file, strerror(errno));
    rc = EIO;
    goto out;
  }
  struct stop_ctx sc = { .srv = &srv, .base = base };
  struct event *sigint = evsignal_new(base, SIGINT, signal_cb, &sc);
  struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, &sc);
  evsignal_add(sigint, NULL);
  evsignal_add(sigterm, NULL);
  log_info(SUB, "serving %zu named export(s)%s", cfg.nimages,
           cfg.nimages ? "" : " (any POOL/IMAGE)");
  if (daemonize) {
    unsigned char ok = 0;
    if (write(notify[1], &ok, 1) != 1)
      log_warn(SUB, "cannot notify the parent");
    close(notify[1]);
    notify[1] = -1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      dup2(devnull, STDOUT_FILENO);
      if (!log_file)
        dup2(devnull, STDERR_FILENO);
      close(devnull);
    }
  }
  event_base_dispatch(base);
  log_info(SUB, "stopped");
  event_free(sigint);
  event_free(sigterm);
  if (sc.timer)
    event_free(sc.timer);
  if (pid_file)
    unlink(pid_file);
out:
  if (daemonize && notify[1] >= 0) {
    unsigned char st = (unsigned char)(rc ? rc : EIO);
    if (write(notify[1], &st, 1) != 1) {
      /* the parent sees EOF and uses our exit status */
    }
  }
  if (srv_built)
    nbd_server_free(&srv);
  if (base)
    event_base_free(base);
  if (cluster)
    blk_cluster_shutdown(cluster);
  return rc;
}
