/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the cluster map in memory (DESIGN.md §2) and the one
 * deterministic function that changes it, clustermap_apply().  The
 * monitors apply committed Raft entries with it; OSDs and clients apply
 * the same MapTxn records they receive as incremental maps, so every node
 * derives the identical map for an epoch.  Validation inside apply uses
 * only fixed constants (never local configuration) so that it cannot
 * diverge between nodes; configurable limits are checked by the proposing
 * monitor before proposing.
 *
 * The in-memory form uses plain C structs; the protobuf ClusterMap
 * (proto/map.proto) is the wire and disk form.  OSDs are indexed by id
 * (osds[id], `exists` marks used slots).
 * Threading: a map is immutable once published; writers work on a copy
 * (clustermap_dup) and publish it (RCU in the client library).
 */
#ifndef BLK_COMMON_CLUSTERMAP_H
#define BLK_COMMON_CLUSTERMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/map.pb-c.h"

#define CM_MAX_NAME 64          /* pool, host, mon names incl. NUL */
#define CM_MAX_ADDR 128
#define CM_MAX_PG_NUM 65536u    /* hard ceiling; mon_max_pg_num may be lower */
#define CM_MAX_POOL_SIZE 10u
#define CM_MAX_OSDS 65536
#define CM_MAX_MONS 7
#define CM_WEIGHT_ONE 0x10000u

enum cm_failure_domain { CM_FD_HOST = 0, CM_FD_OSD = 1 };

struct cm_mon {
  char name[CM_MAX_NAME];
  char addr[CM_MAX_ADDR];
  uint32_t rank;
};

struct cm_osd {
  bool exists;
  bool up, in;
  int32_t id;
  char uuid[40];
  char host[CM_MAX_NAME];
  char addr[CM_MAX_ADDR];
  uint32_t weight;              /* 16.16 */
  uint64_t up_from, down_at;
  uint64_t device_size;
  int64_t down_stamp_ms;
};

struct cm_pool {
  uint32_t id;
  char name[CM_MAX_NAME];
  uint32_t size, min_size, pg_num;
  enum cm_failure_domain failure_domain;
  char application[CM_MAX_NAME];
  uint64_t created_epoch;
};

/* A fenced client (docs/osd.md "Fencing"). */
#define CM_MAX_NONCE 64         /* client nonce incl. NUL */
#define CM_MAX_BLOCKLIST 4096   /* entries kept in a map */
struct cm_blocklist {
  char nonce[CM_MAX_NONCE];
  int64_t expire_ms;            /* wall clock; 0 = until removed */
};

struct cluster_map {
  char fsid[40];
  uint64_t epoch;
  int64_t stamp_ms;
  struct cm_mon mons[CM_MAX_MONS];
  size_t n_mons;
  struct cm_osd *osds;          /* indexed by id; n_osds = max id + 1 */
  size_t n_osds;
  struct cm_pool *pools;
  size_t n_pools;
  uint32_t next_pool_id;
  struct cm_blocklist *blocklist; /* in nonce order (owned) */
  size_t n_blocklist;
};

/* Allocate an empty map (epoch 0).  NULL with errno on failure. */
struct cluster_map *clustermap_new(void);
void clustermap_free(struct cluster_map *m);
/* Deep copy.  NULL with errno on failure. */
struct cluster_map *clustermap_dup(const struct cluster_map *m);

/* Convert from the wire form, validating every field (names, bounds,
 * duplicate ids).  Returns 0 or -EINVAL/-ENOMEM; *out is new. */
int clustermap_from_pb(const Blk__ClusterMap *pb, struct cluster_map **out);
/* Serialize to a malloc'ed buffer.  Returns 0 or -ENOMEM. */
int clustermap_encode(const struct cluster_map *m, uint8_t **buf, size_t *len);
/* Parse bytes produced by clustermap_encode. */
int clustermap_decode(const uint8_t *buf, size_t len, struct cluster_map **out);
/* Build the wire form; free with clustermap_pb_free. NULL on ENOMEM. */
Blk__ClusterMap *clustermap_to_pb(const struct cluster_map *m);
void clustermap_pb_free(Blk__ClusterMap *pb);

/* Apply one transaction.  Returns 1 if the map changed (epoch advanced by
 * one, stamp_ms = txn->stamp_ms), 0 if the transaction is valid but
 * changes nothing (e.g. an auth-only change), or a negative errno with a
 * message in err (the map is unchanged):
 *   -EEXIST pool/osd exists, -ENOENT unknown pool/osd/blocklist entry,
 *   -EINVAL bad value.
 * Blocklist changes compute expiries from txn->stamp_ms and drop entries
 * expired at txn->stamp_ms, so they stay deterministic. */
int clustermap_apply(struct cluster_map *m, const Blk__MapTxn *txn,
                     char *err, size_t errlen);

/* Lookups (borrowed pointers into m, valid while m is). */
const struct cm_pool *clustermap_pool_by_name(const struct cluster_map *m,
                                              const char *name);
const struct cm_pool *clustermap_pool_by_id(const struct cluster_map *m,
                                            uint32_t id);
const struct cm_osd *clustermap_osd(const struct cluster_map *m, int32_t id);
/* True if nonce is on m's blocklist and its entry has not expired at
 * now_ms (wall clock). */
bool clustermap_blocklisted(const struct cluster_map *m, const char *nonce,
                            int64_t now_ms);
/* A client nonce: [0-9A-Za-z_-], 1..63 chars. */
bool clustermap_valid_nonce(const char *s);
/* Counts for status lines. */
void clustermap_osd_counts(const struct cluster_map *m, unsigned *total,
                           unsigned *up, unsigned *in);

/* A name for pools, hosts and entities: [A-Za-z0-9_.-], 1..63 chars. */
bool clustermap_valid_name(const char *s);
const char *clustermap_fd_name(enum cm_failure_domain fd);

#endif
