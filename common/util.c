/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_write_pidfile(const char *path)
{
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  FILE *f = fopen(tmp, "w");
  if (!f)
    return -errno;
  fprintf(f, "%d\n", (int)getpid());
  if (fclose(f) != 0 || rename(tmp, path) != 0)
    return -errno;
  return 0;
}

int util_uuid(char out[37])
{
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    return -EIO;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
           b[12], b[13], b[14], b[15]);
  return 0;
}

static size_t split(char *s, char **out, size_t max)
{
  size_t n = 0;
  for (char *tok = strtok(s, ", "); tok && n < max + 1; tok = strtok(NULL, ", "))
    out[n++] = tok;
  return n;
}

int util_monmap_from_config(const config *cfg, struct cm_mon *mons, size_t *n,
                            char *err, size_t errlen)
{
  char names[1024], hosts[2048];
  char *nv[CM_MAX_MONS + 1], *hv[CM_MAX_MONS + 1];
  snprintf(names, sizeof names, "%s", config_get_str(cfg, "mon_initial_members"));
  snprintf(hosts, sizeof hosts, "%s", config_get_str(cfg, "mon_host"));
  size_t nn = split(names, nv, CM_MAX_MONS), nh = split(hosts, hv, CM_MAX_MONS);
  if (nh == 0) {
    snprintf(err, errlen, "mon_host is empty: no monitors configured (is blk.conf right?)");
    return -EINVAL;
  }
  if (nh > CM_MAX_MONS) {
    snprintf(err, errlen, "at most %d monitors are supported", CM_MAX_MONS);
    return -EINVAL;
  }
  if (nn && nn != nh) {
    snprintf(err, errlen, "mon_initial_members has %zu names but mon_host %zu addresses", nn, nh);
    return -EINVAL;
  }
  for (size_t i = 0; i < nh; i++) {
    memset(&mons[i], 0, sizeof mons[i]);
    if (nn) {
      if (!clustermap_valid_name(nv[i])) {
        snprintf(err, errlen, "invalid monitor name '%s'", nv[i]);
        return -EINVAL;
      }
      snprintf(mons[i].name, sizeof mons[i].name, "%s", nv[i]);
    } else {
      snprintf(mons[i].name, sizeof mons[i].name, "%c", (char)('a' + i));
    }
    if (strlen(hv[i]) >= sizeof mons[i].addr) {
      snprintf(err, errlen, "monitor address too long");
      return -EINVAL;
    }
    strcpy(mons[i].addr, hv[i]);
    mons[i].rank = (uint32_t)(i + 1);
  }
  *n = nh;
  return 0;
}

int util_mkdir_p(const char *path, unsigned mode)
{
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return -ENAMETOOLONG;
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
      *p = '/';
    }
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}
