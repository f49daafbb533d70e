/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blkctl nbd, the hypervisor-side commands around blk-nbd.
 *   nbd serve [blk-nbd options] [POOL/IMAGE ...]   exec blk-nbd in the foreground
 *   nbd map POOL/IMAGE [--read-only] [--socket-mode OCTAL]
 *   nbd unmap POOL/IMAGE|/dev/nbdN
 *   nbd ls
 * map starts one blk-nbd per image (daemonized, unix socket only) with its
 * state in <config dir>/nbd/: NAME.sock, NAME.pid, NAME.log and, when the
 * kernel has nbd and nbd-client is installed, NAME.dev with the /dev/nbdN
 * it attached (NAME is POOL/IMAGE with '/' written as '~', a character
 * URIs never escape, so the socket path can go into a QEMU URI as is).  Without the
 * nbd module map says so and still prints the socket and the QEMU URI, so
 * QEMU can use the export directly.  blk-nbd is found as $BLK_NBD, next
 * to blkctl (build tree: ../nbd/blk-nbd), or in $PATH.
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/blkctl/blkctl.h"

/* snprintf that reports truncation (paths here are built from user names) */
static int fmt_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fmt_path(char *out, size_t n, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(out, n, fmt, ap);
  va_end(ap);
  return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

static void nbd_usage(FILE *f)
{
  fprintf(f, "usage: blkctl nbd serve [blk-nbd options] [POOL/IMAGE ...]\n"
             "       blkctl nbd map POOL/IMAGE [--read-only] [--socket-mode OCTAL]\n"
             "       blkctl nbd unmap POOL/IMAGE|/dev/nbdN\n"
             "       blkctl nbd ls\n");
}

/* Path of the blk-nbd binary into out (PATH_MAX). */
static void find_blk_nbd(char *out, size_t n)
{
  const char *env = getenv("BLK_NBD");
  char self[PATH_MAX];
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return;
  }
  ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
  if (l > 0) {
    self[l] = '\0';
    char *dir = dirname(self);
    fmt_path(out, n, "%s/../nbd/blk-nbd", dir);
    if (access(out, X_OK) == 0)
      return;
    fmt_path(out, n, "%s/blk-nbd", dir);
    if (access(out, X_OK) == 0)
      return;
  }
  snprintf(out, n, "blk-nbd");
}

/* <dir of the config>/nbd, created. */
static int state_dir(struct blkctl *b, char *out, size_t n)
{
  char conf[PATH_MAX];
  snprintf(conf, sizeof conf, "%s", b->conf_path);
  if (fmt_path(out, n, "%s/nbd", dirname(conf)) < 0)
    return blkctl_fail(ENAMETOOLONG, "config path too long");
  if (mkdir(out, 0755) < 0 && errno != EEXIST)
    return blkctl_fail(errno, "cannot create %s: %s", out, strerror(errno));
  return 0;
}

static void encode_name(const char *name, char *out, size_t n)
{
  size_t o = 0;
  for (const char *p = name; *p && o + 4 < n; p++) {
    out[o++] = *p == '/' ? '~' : *p;
  }
  out[o] = '\0';
}

static void decode_name(const char *enc, char *out, size_t n)
{
  size_t o = 0;
  for (const char *p = enc; *p && o + 1 < n; p++) {
    out[o++] = *p == '~' ? '/' : *p;
  }
  out[o] = '\0';
}

static bool valid_export(const char *name)
{
  const char *slash = strchr(name, '/');
  return slash && slash != name && slash[1] && !strchr(slash + 1, '/') && strlen(name) < 512;
}

static int run_wait(char *const argv[], bool quiet)
{
  pid_t pid = fork();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    if (quiet) {
      FILE *f = freopen("/dev/null", "w", stdout);
      (void)f;
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0)
    return -errno;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static long read_pid(const char *path)
{
  FILE *f = fopen(path, "r");
  long pid = 0;
  if (!f)
    return 0;
  if (fscanf(f, "%ld", &pid) != 1)
    pid = 0;
  fclose(f);
  return pid;
}

static bool have_kernel_nbd(void)
{
  return access("/dev/nbd0", F_OK) == 0 || access("/sys/module/nbd", F_OK) == 0;
}

static bool in_path(const char *cmd)
{
  const char *path = getenv("PATH");
  char buf[PATH_MAX];
  if (!path)
    return false;
  char *dup = strdup(path), *save = NULL;
  bool found = false;
  for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    snprintf(buf, sizeof buf, "%s/%s", d, cmd);
    found = access(buf, X_OK) == 0;
  }
  free(dup);
  return found;
}

/* The first /dev/nbdN with no server attached. */
static int free_nbd_dev(char *out, size_t n)
{
  for (int i = 0; i < 256; i++) {
    char p[64];
    snprintf(p, sizeof p, "/sys/block/nbd%d", i);
    if (access(p, F_OK) < 0)
      break;
    snprintf(p, sizeof p, "/sys/block/nbd%d/pid", i);
    if (access(p, F_OK) == 0)
      continue; /* in use */
    snprintf(out, n, "/dev/nbd%d", i);
    return 0;
  }
  return -ENODEV;
}

static int nbd_map(struct blkctl *b, int argc, char **argv)
{
  const char *name = NULL, *mode = "0660";
  bool ro = false;
  char dir[PATH_MAX], enc[1600], sock[PATH_MAX], pidf[PATH_MAX], logf[PATH_MAX], exe[PATH_MAX];
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--read-only"))
      ro = true;
    else if (!strcmp(argv[i], "--socket-mode") && i + 1 < argc)
      mode = argv[++i];
    else if (argv[i][0] != '-' && !name)
      name = argv[i];
    else
      return blkctl_fail(EINVAL, "nbd map: unexpected argument '%s'", argv[i]);
  }
  if (!name || !valid_export(name))
    return blkctl_fail(EINVAL, "nbd map: give POOL/IMAGE");
  int r = state_dir(b, dir, sizeof dir);
  if (r)
    return r;
  encode_name(name, enc, sizeof enc);
  if (fmt_path(sock, sizeof sock, "%s/%s.sock", dir, enc) < 0 ||
      fmt_path(pidf, sizeof pidf, "%s/%s.pid", dir, enc) < 0 ||
      fmt_path(logf, sizeof logf, "%s/%s.log", dir, enc) < 0)
    return blkctl_fail(ENAMETOOLONG, "nbd map: state path too long");
  long old = read_pid(pidf);
  if (old > 0 && kill((pid_t)old, 0) == 0)
    return blkctl_fail(EEXIST, "%s is already mapped (blk-nbd pid %ld, socket %s)", name, old,
                       sock);
  find_blk_nbd(exe, sizeof exe);
  char *args[20];
  int n = 0;
  args[n++] = exe;
  args[n++] = "-c";
  args[n++] = (char *)b->conf_path;
  args[n++] = "--socket";
  args[n++] = sock;
  args[n++] = "--socket-mode";
  args[n++] = (char *)mode;
  args[n++] = "--daemon";
  args[n++] = "--pid-file";
  args[n++] = pidf;
  args[n++] = "--log-file";
  args[n++] = logf;
  if (ro)
    args[n++] = "--read-only";
  args[n++] = (char *)name;
  args[n] = NULL;
  r = run_wait(args, false);
  if (r != 0)
    return blkctl_fail(r == 127 ? ENOENT : r, "nbd map %s: blk-nbd failed (see %s)", name,
                       logf);
  char dev[64] = "";
  if (!have_kernel_nbd()) {
    printf("blkctl: this kernel has no nbd module (/dev/nbd0 missing; try 'modprobe nbd'):\n"
           "        no block device attached; the export is served on the unix socket.\n");
  } else if (!in_path("nbd-client")) {
    printf("blkctl: nbd-client is not installed: no block device attached.\n");
  } else if (free_nbd_dev(dev, sizeof dev) < 0) {
    printf("blkctl: no free /dev/nbdN: no block device attached.\n");
    dev[0] = '\0';
  } else {
    char *nc[] = { "nbd-client", "-unix", sock, "-N", (char *)name, dev, "-persist", NULL };
    r = run_wait(nc, true);
    if (r != 0) {
      printf("blkctl: nbd-client %s failed (exit %d): no block device attached.\n", dev, r);
      dev[0] = '\0';
    } else {
      char devf[PATH_MAX];
      fmt_path(devf, sizeof devf, "%s/%s.dev", dir, enc);
      FILE *f = fopen(devf, "w");
      if (f) {
        fprintf(f, "%s\n", dev);
        fclose(f);
      }
    }
  }
  if (dev[0])
    printf("%s\n", dev);
  printf("socket: %s\nqemu:   nbd+unix:///%s?socket=%s\n", sock, name, sock);
  return 0;
}

static int nbd_unmap(struct blkctl *b, int argc, char **argv)
{
  char dir[PATH_MAX], enc[1600], path[PATH_MAX], dev[64] = "";
  if (argc != 1)
    return blkctl_fail(EINVAL, "nbd unmap: give POOL/IMAGE or /dev/nbdN");
  int r = state_dir(b, dir, sizeof dir);
  if (r)
    return r;
  const char *target = argv[0];
  char name[1600] = "";
  if (!strncmp(target, "/dev/nbd", 8)) {
    /* find the mapping that owns this device */
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
      size_t l = strlen(de->d_name);
      if (l < 5 || strcmp(de->d_name + l - 4, ".dev"))
        continue;
      fmt_path(path, sizeof path, "%s/%s", dir, de->d_name);
      FILE *f = fopen(path, "r");
      char got[64] = "";
      if (f) {
        if (!fgets(got, sizeof got, f))
          got[0] = '\0';
        fclose(f);
      }
      got[strcspn(got, "\n")] = '\0';
      if (!strcmp(got, target)) {
        de->d_name[l - 4] = '\0';
        decode_name(de->d_name, name, sizeof name);
        break;
      }
    }
    if (d)
      closedir(d);
    if (!name[0])
      return blkctl_fail(ENOENT, "%s is not mapped by blkctl", target);
  } else {
    if (!valid_export(target))
      return blkctl_fail(EINVAL, "nbd unmap: give POOL/IMAGE or /dev/nbdN");
    snprintf(name, sizeof name, "%s", target);
  }
  encode_name(name, enc, sizeof enc);
  fmt_path(path, sizeof path, "%s/%s.dev", dir, enc);
  FILE *f = fopen(path, "r");
  if (f) {
    if (fgets(dev, sizeof dev, f))
      dev[strcspn(dev, "\n")] = '\0';
    fclose(f);
    if (dev[0]) {
      char *nc[] = { "nbd-client", "-d", dev, NULL };
      if (run_wait(nc, true) != 0)
        fprintf(stderr, "blkctl: nbd-client -d %s failed; stopping the server anyway\n", dev);
    }
    unlink(path);
  }
  fmt_path(path, sizeof path, "%s/%s.pid", dir, enc);
  long pid = read_pid(path);
  if (pid <= 0 || kill((pid_t)pid, 0) < 0) {
    unlink(path);
    return blkctl_fail(ENOENT, "%s is not mapped", name);
  }
  kill((pid_t)pid, SIGTERM);
  for (int i = 0; i < 150 && kill((pid_t)pid, 0) == 0; i++)
    usleep(100 * 1000);
  if (kill((pid_t)pid, 0) == 0)
    return blkctl_fail(EBUSY, "blk-nbd pid %ld for %s did not stop", pid, name);
  unlink(path);
  fmt_path(path, sizeof path, "%s/%s.sock", dir, enc);
  unlink(path);
  printf("unmapped %s%s%s\n", name, dev[0] ? " from " : "", dev);
  return 0;
}

static int nbd_ls(struct blkctl *b)
{
  char dir[PATH_MAX], path[PATH_MAX];
  int r = state_dir(b, dir, sizeof dir);
  if (r)
    return r;
  DIR *d = opendir(dir);
  if (!d)
    return blkctl_fail(errno, "%s: %s", dir, strerror(errno));
  if (b->json)
    printf("[");
  else
    printf("%-32s %-8s %-12s %s\n", "image", "pid", "device", "socket");
  struct dirent *de;
  int count = 0;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 5 || strcmp(de->d_name + l - 4, ".pid"))
      continue;
    char enc[1024], name[1024], dev[64] = "-";
    if (fmt_path(enc, sizeof enc, "%.*s", (int)(l - 4), de->d_name) < 0)
      continue;
    decode_name(enc, name, sizeof name);
    fmt_path(path, sizeof path, "%s/%s", dir, de->d_name);
    long pid = read_pid(path);
    if (pid <= 0 || kill((pid_t)pid, 0) < 0)
      continue; /* stale: the server is gone */
    fmt_path(path, sizeof path, "%s/%s.dev", dir, enc);
    FILE *f = fopen(path, "r");
    if (f) {
      if (!fgets(dev, sizeof dev, f))
        snprintf(dev, sizeof dev, "-");
      dev[strcspn(dev, "\n")] = '\0';
      fclose(f);
    }
    fmt_path(path, sizeof path, "%s/%s.sock", dir, enc);
    if (b->json)
      printf("%s{\"image\":\"%s\",\"pid\":%ld,\"device\":%s%s%s,\"socket\":\"%s\"}",
             count ? "," : "", name, pid, strcmp(dev, "-") ? "\"" : "",
             strcmp(dev, "-") ? dev : "null", strcmp(dev, "-") ? "\"" : "", path);
    else
      printf("%-32s %-8ld %-12s %s\n", name, pid, dev, path);
    count++;
  }
  closedir(d);
  if (b->json)
    printf("]\n");
  return 0;
}

int cmd_nbd(struct blkctl *b, int argc, char **argv)
{
  if (argc < 2) {
    nbd_usage(stderr);
    return EINVAL;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "serve")) {
    char exe[PATH_MAX];
    find_blk_nbd(exe, sizeof exe);
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
      return ENOMEM;
    int n = 0;
    args[n++] = exe;
    args[n++] = "-c";
    args[n++] = (char *)b->conf_path;
    for (int i = 2; i < argc; i++)
      args[n++] = argv[i];
    args[n] = NULL;
    fflush(NULL);
    execvp(exe, args);
    int e = errno;
    free(args);
    return blkctl_fail(e, "cannot run %s: %s (set $BLK_NBD)", exe, strerror(e));
  }
  if (!strcmp(sub, "map"))
    return nbd_map(b, argc - 2, argv + 2);
  if (!strcmp(sub, "unmap"))
    return nbd_unmap(b, argc - 2, argv + 2);
  if (!strcmp(sub, "ls"))
    return nbd_ls(b);
  nbd_usage(stderr);
  return blkctl_fail(EINVAL, "unknown nbd command '%s'", sub);
}
