/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a full OSD (docs/osd.md "Full OSDs").  Every OSD classifies
 * its own data area as ok, nearfull (osd_store_nearfull_ratio, a warning)
 * or full (osd_full_ratio) and tells its peers with every heartbeat answer
 * and every RepOp answer, and the monitors with its PG stats.  A primary
 * refuses an op that may allocate (write, writefull, setxattr, omap set)
 * with -ENOSPC before it takes a PG version when it or any acting member
 * is full, so that a store never has to refuse a replicated transaction
 * (a refused transaction leaves the members to be reconciled by peering,
 * and a member that cannot take the recovery either keeps the PG peering
 * until space comes back).  Removes, truncates, zeroes and the removal of
 * attributes and keys still run: they are how space comes back.  The
 * margin between osd_full_ratio and a really full device absorbs the
 * writes in flight while the news travels (one heartbeat at most: a RepOp
 * answer carries it at once).  Peers' states live in an array indexed by
 * OSD id; an OSD never heard of counts as ok.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "osd/osd.h"

#define OSD_SPACE_HYST 3   /* percent points */

static const char *space_name(uint32_t s)
{
  return s >= OSD_SPACE_FULL ? "full" : s == OSD_SPACE_NEARFULL ? "nearfull" : "ok";
}

uint32_t osd_space_self(struct osd *osd, unsigned *pct)
{
  struct store_statfs sf;
  store_statfs(osd->st, &sf);
  unsigned p = sf.total ? (unsigned)(sf.used * 100 / sf.total) : 0;
  uint32_t s = OSD_SPACE_OK;
  /* full until the use falls OSD_SPACE_HYST points below the ratio: the
   * blocks of overwritten data come back only at the next checkpoint, so
   * the use of a full OSD under writes swings by a point or two */
  uint32_t full_at = osd->full_pct;
  if (osd->space_self == OSD_SPACE_FULL)
    full_at = full_at > OSD_SPACE_HYST ? full_at - OSD_SPACE_HYST : 0;
  if (sf.total && sf.used * 100 >= sf.total * full_at)
    s = OSD_SPACE_FULL;
  else if (sf.nearfull)
    s = OSD_SPACE_NEARFULL;
  if (s != osd->space_self) {
    if (s == OSD_SPACE_FULL)
      log_err("osd", "data area %u%% used (osd_full_ratio %u%%): full, refusing new data",
              p, osd->full_pct);
    else
      log_warn("osd", "data area %u%% used: %s", p, space_name(s));
    osd->space_self = s;
    osd->stats_dirty = true;
  }
  if (pct)
    *pct = p;
  return s;
}

void osd_space_note(struct osd *osd, int32_t id, uint32_t space)
{
  if (id < 0 || id == osd->id || id > 1 << 20)
    return;
  if (space > OSD_SPACE_FULL)
    space = OSD_SPACE_FULL;
  if ((size_t)id >= osd->n_space) {
    if (space == OSD_SPACE_OK)
      return;   /* unknown counts as ok */
    size_t n = (size_t)id + 16;
    uint8_t *a = realloc(osd->space, n);
    if (!a)
      return;
    for (size_t i = osd->n_space; i < n; i++)
      a[i] = OSD_SPACE_OK;
    osd->space = a;
    osd->n_space = n;
  }
  if (osd->space[id] != space)
    log_debug("osd", "osd.%d says its data area is %s", id, space_name(space));
  osd->space[id] = (uint8_t)space;
}

static bool may_allocate(int op)
{
  return op == BLK__OSD_OP_TYPE__OP_WRITE || op == BLK__OSD_OP_TYPE__OP_WRITEFULL ||
         op == BLK__OSD_OP_TYPE__OP_SETXATTR || op == BLK__OSD_OP_TYPE__OP_OMAP_SET;
}

int osd_space_admit(struct osd *osd, const struct pg *pg, int op, char *msg, size_t len)
{
  if (!may_allocate(op))
    return 0;
  unsigned pct;
  if (osd_space_self(osd, &pct) == OSD_SPACE_FULL) {
    snprintf(msg, len, "osd.%d is full (%u%% of its data area used, osd_full_ratio %u%%)",
             osd->id, pct, osd->full_pct);
    return -ENOSPC;
  }
  for (size_t i = 0; i < pg->n_acting; i++) {
    int32_t id = pg->acting[i];
    if (id >= 0 && (size_t)id < osd->n_space && osd->space[id] == OSD_SPACE_FULL) {
      snprintf(msg, len, "osd.%d (a member of PG %u.%x) is full", id, pg->pool, pg->id);
      return -ENOSPC;
    }
  }
  return 0;
}

void osd_space_free(struct osd *osd)
{
  free(osd->space);
  osd->space = NULL;
  osd->n_space = 0;
}
