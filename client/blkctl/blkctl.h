/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blkctl, the operator's tool, sectioned by file:
 *   main.c     global options and the command table
 *   cluster.c  cluster init
 *   status.c   status, mon stat
 *   osd.c      osd tree / out / in / reweight / map
 *   object.c   object put / get / rm / stat / ls (through the objecter)
 *   objbench.c object bench: IOPS and latency of object ops
 *   pool.c     pool create / ls / rm
 *   monbench.c mon bench: commit latency of map changes
 *   monwatch.c mon watch: subscribe and print map updates
 *   json.c     a tiny JSON writer for --format json
 *   image.c    image create / ls / info / resize / rm / rename / du /
 *              import / export / bench (through libblk)
 * Exit codes follow the ceph tool: 0 success, otherwise the errno of the
 * failure (2 ENOENT, 17 EEXIST, 22 EINVAL incl. usage errors, 110
 * ETIMEDOUT when no monitor quorum answered); see docs/blkctl.md.
 */
#ifndef BLK_CLIENT_BLKCTL_H
#define BLK_CLIENT_BLKCTL_H

#include <stdbool.h>
#include <stdio.h>

#include "client/monc.h"
#include "common/config.h"

struct event_base;

struct blkctl {
  const char *conf_path;
  config *cfg;             /* loaded lazily by blkctl_connect */
  bool json;
  int timeout_ms;
  struct event_base *base;
  monc *monc;
  const char *prog;
  /* auth (docs/auth.md): override name / keyring / key_file of the config */
  const char *name, *keyring, *key_file;
  char name_buf[80];
  const char *sets[16];      /* --set OPTION=VALUE */
  int n_sets;
};

/* Load the config and build the monitor client.  0 or an exit code. */
int blkctl_connect(struct blkctl *b);
/* Send a command; on failure print the error and return an exit code;
 * on success *reply is set (caller frees) and 0 is returned. */
int blkctl_mon_command(struct blkctl *b, Blk__MonCommand *cmd, Blk__MonReply **reply);
/* Linearizable STATUS read: *rep (free with blk__mon_reply__free_unpacked)
 * and *map (clustermap_free).  0 or an exit code (error printed). */
struct cluster_map;
int blkctl_read_status(struct blkctl *b, Blk__MonReply **rep, struct cluster_map **map);
/* Print "blkctl: <msg>" to stderr and return code (an errno value). */
int blkctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a negative errno. */
int blkctl_exit_code(int neg_errno);

int cmd_cluster(struct blkctl *b, int argc, char **argv);
int cmd_status(struct blkctl *b, int argc, char **argv);
int cmd_mon(struct blkctl *b, int argc, char **argv);
int cmd_osd(struct blkctl *b, int argc, char **argv);
int cmd_pool(struct blkctl *b, int argc, char **argv);
int cmd_object(struct blkctl *b, int argc, char **argv);
int cmd_image(struct blkctl *b, int argc, char **argv);
int cmd_object_bench(struct blkctl *b, int argc, char **argv);
int cmd_mon_bench(struct blkctl *b, int argc, char **argv);
int cmd_mon_watch(struct blkctl *b, int argc, char **argv);
int cmd_nbd(struct blkctl *b, int argc, char **argv);   /* nbd.c */
int cmd_auth(struct blkctl *b, int argc, char **argv);
int cmd_pg(struct blkctl *b, int argc, char **argv);    /* pg.c */

/* json.c: writes to stdout with correct commas and escaping. */
void json_begin_obj(void);
void json_end_obj(void);
void json_begin_arr(const char *key);
void json_end_arr(void);
void json_key_obj(const char *key);
void json_str(const char *key, const char *v);
void json_int(const char *key, long long v);
void json_uint(const char *key, unsigned long long v);
void json_bool(const char *key, bool v);
void json_double(const char *key, double v);
void json_done(void);

#endif
