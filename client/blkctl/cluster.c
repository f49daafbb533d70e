/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: `blkctl cluster init` creates a new cluster's identity:
 * a fresh fsid, blk.conf naming the monitors, an admin keyring (0600),
 * and the stores of the monitors that live on this host (blk-mon --mkfs).
 * On a multi-host cluster the other hosts get a copy of blk.conf and run
 * `blk-mon --mkfs --id NAME` themselves (docs/bootstrap.md).  The first
 * monitor leader then commits the initial cluster map (epoch 1).
 */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/blkctl/blkctl.h"
#include "common/clustermap.h"
#include "common/msgr.h"
#include "common/util.h"

static int find_daemon(const char *name, char *out, size_t n)
{
  char self[PATH_MAX];
  ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
  if (l > 0) {
    self[l] = 0;
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = 0;
      static const char *rel[] = { "%s/%s", "%s/../mon/%s", "%s/../osd/%s", "%s/../../mon/%s" };
      for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        snprintf(out, n, rel[i], self, name);
        if (access(out, X_OK) == 0)
          return 0;
      }
    }
  }
  snprintf(out, n, "%s", name);   /* from PATH */
  return 0;
}

static int run_mkfs(const char *conf, const char *id)
{
  char bin[PATH_MAX];
  find_daemon("blk-mon", bin, sizeof bin);
  pid_t pid = fork();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    execlp(bin, bin, "--mkfs", "--id", id, "-c", conf, (char *)NULL);
    fprintf(stderr, "blkctl: cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0)
    return -errno;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool is_loopback(const char *addr)
{
  return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]", 5) == 0 ||
         strncmp(addr, "unix:", 5) == 0;
}

int cmd_cluster(struct blkctl *b, int argc, char **argv)
{
  if (argc < 2 || strcmp(argv[1], "init") != 0)
    return blkctl_fail(EINVAL, "usage: blkctl cluster init [--run-dir DIR] "
                               "[--mon NAME=HOST:PORT ...] [--mkfs-mon NAME ...] [--force]");
  const char *run_dir = getenv("BLK_RUN_DIR");
  const char *mons[CM_MAX_MONS + 1];
  const char *mkfs_only[CM_MAX_MONS + 1];
  size_t n_mons = 0, n_mkfs = 0;
  bool force = false;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--run-dir") && i + 1 < argc)
      run_dir = argv[++i];
    else if (!strcmp(argv[i], "--mon") && i + 1 < argc) {
      if (n_mons == CM_MAX_MONS)
        return blkctl_fail(EINVAL, "at most %d monitors", CM_MAX_MONS);
      mons[n_mons++] = argv[++i];
    } else if (!strcmp(argv[i], "--mkfs-mon") && i + 1 < argc) {
      if (n_mkfs == CM_MAX_MONS)
        return blkctl_fail(EINVAL, "too many --mkfs-mon");
      mkfs_only[n_mkfs++] = argv[++i];
    } else if (!strcmp(argv[i], "--force"))
      force = true;
    else
      return blkctl_fail(EINVAL, "cluster init: unknown argument '%s'", argv[i]);
  }
  if (!run_dir)
    run_dir = "./run";
  static const char *defaults[] = { "a=127.0.0.1:6789", "b=127.0.0.1:6790", "c=127.0.0.1:6791" };
  if (n_mons == 0) {
    for (size_t i = 0; i < 3; i++)
      mons[i] = defaults[i];
    n_mons = 3;
  }
  if (n_mons % 2 == 0)
    fprintf(stderr, "blkctl: warning: %zu monitors tolerate no more failures than %zu; "
                    "use an odd number\n", n_mons, n_mons - 1);
  char names[512] = "", hosts[1024] = "";
  for (size_t i = 0; i < n_mons; i++) {
    const char *eq = strchr(mons[i], '=');
    char name[CM_MAX_NAME];
    if (!eq || (size_t)(eq - mons[i]) >= sizeof name)
      return blkctl_fail(EINVAL, "--mon wants NAME=HOST:PORT, got '%s'", mons[i]);
    memcpy(name, mons[i], (size_t)(eq - mons[i]));
    name[eq - mons[i]] = 0;
    struct sockaddr_storage ss;
    unsigned sl;
    if (!clustermap_valid_name(name) || msgr_parse_addr(eq + 1, &ss, &sl) < 0)
      return blkctl_fail(EINVAL, "bad monitor '%s' (NAME=HOST:PORT)", mons[i]);
    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? "," : "", name);
    snprintf(hosts + strlen(hosts), sizeof hosts - strlen(hosts), "%s%s", i ? "," : "", eq + 1);
  }
  int r = util_mkdir_p(run_dir, 0755);
  if (r < 0)
    return blkctl_fail(blkctl_exit_code(r), "cannot create %s: %s", run_dir, strerror(-r));
  char abs_run[PATH_MAX];
  if (!realpath(run_dir, abs_run))
    return blkctl_fail(blkctl_exit_code(-errno), "cannot resolve %s", run_dir);
  char conf[PATH_MAX + 16], keyring[PATH_MAX + 32];
  if (getenv("BLK_CONF") || strcmp(b->conf_path, "./run/blk.conf") != 0)
    snprintf(conf, sizeof conf, "%s", b->conf_path);
  else
    snprintf(conf, sizeof conf, "%s/blk.conf", abs_run);
  snprintf(keyring, sizeof keyring, "%s/blk.client.admin.keyring", abs_run);
  if (!force && access(conf, F_OK) == 0)
    return blkctl_fail(EEXIST, "%s exists: a cluster is already initialized there "
                               "(--force to overwrite)", conf);
  char fsid[37];
  if (util_uuid(fsid) < 0)
    return blkctl_fail(EIO, "no randomness for the fsid");

  /* admin key: 256 random bits, base64 */
  unsigned char key[32];
  unsigned char b64[64];
  if (RAND_bytes(key, sizeof key) != 1)
    return blkctl_fail(EIO, "no randomness for the admin key");
  EVP_EncodeBlock(b64, key, sizeof key);
  umask(077);
  FILE *kf = fopen(keyring, "w");
  if (!kf)
    return blkctl_fail(blkctl_exit_code(-errno), "cannot write %s: %s", keyring, strerror(errno));
  fprintf(kf, "[client.admin]\n\tkey = %s\n\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n",
          b64);
  /* the monitors' shared key: they authenticate to each other as mon. */
  if (RAND_bytes(key, sizeof key) != 1) {
    fclose(kf);
    return blkctl_fail(EIO, "no randomness for the monitor key");
  }
  EVP_EncodeBlock(b64, key, sizeof key);
  fprintf(kf, "\n[mon.]\n\tkey = %s\n\tcaps mon = \"allow *\"\n", b64);
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(b64, sizeof b64);
  fclose(kf);
  umask(022);

  FILE *f = fopen(conf, "w");
  if (!f)
    return blkctl_fail(blkctl_exit_code(-errno), "cannot write %s: %s", conf, strerror(errno));
  time_t now = time(NULL);
  char stamp[64];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f,
          "# blkstore cluster configuration, written by blkctl cluster init at %s\n"
          "# Every option and its default: blk-mon --help-config; docs/configuration.md\n"
          "[global]\n"
          "fsid = %s\n"
          "mon_initial_members = %s\n"
          "mon_host = %s\n"
          "run_dir = %s\n"
          "auth_mode = cephx\n"
          "keyring = %s\n",
          stamp, fsid, names, hosts, abs_run, keyring);
  if (fclose(f) != 0)
    return blkctl_fail(EIO, "cannot write %s", conf);

  int made = 0;
  for (size_t i = 0; i < n_mons; i++) {
    char name[CM_MAX_NAME];
    const char *eq = strchr(mons[i], '=');
    memcpy(name, mons[i], (size_t)(eq - mons[i]));
    name[eq - mons[i]] = 0;
    bool want = false;
    if (n_mkfs) {
      for (size_t k = 0; k < n_mkfs; k++)
        want |= !strcmp(mkfs_only[k], name);
    } else {
      want = is_loopback(eq + 1);
    }
    if (!want)
      continue;
    if (run_mkfs(conf, name) < 0)
      return blkctl_fail(EIO, "creating the store of mon.%s failed", name);
    made++;
  }
  printf("cluster %s initialized\n  config:  %s\n  keyring: %s\n  monitors: %s (%s)\n"
         "  monitor stores created here: %d\n",
         fsid, conf, keyring, names, hosts, made);
  return 0;
}
