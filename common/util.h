/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: small helpers every program needs: pid files, monotonic
 * and wall clocks in ms, uuid generation, parsing the monitor list from
 * the config.  No state.
 */
#ifndef BLK_COMMON_UTIL_H
#define BLK_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/clustermap.h"
#include "common/config.h"

int64_t util_now_ms(void);        /* CLOCK_MONOTONIC */
int64_t util_wall_ms(void);       /* CLOCK_REALTIME */
/* Write the current pid to path (created 0644).  0 or -errno. */
int util_write_pidfile(const char *path);
/* A random RFC 4122 version-4 uuid as 36 chars + NUL. */
int util_uuid(char out[37]);
/* Fill mons[] from mon_initial_members and mon_host (ranks 1..n in
 * order).  0, or -EINVAL with a message in err. */
int util_monmap_from_config(const config *cfg, struct cm_mon *mons, size_t *n,
                            char *err, size_t errlen);
/* mkdir -p; 0 or -errno. */
int util_mkdir_p(const char *path, unsigned mode);

#endif
