/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: PGs (Stage B replaces this placeholder). */
#include "osd/osd.h"

void pg_on_map(struct osd *osd, const struct cluster_map *prev) { (void)osd; (void)prev; }
void pg_on_frame(struct osd *osd, msgr_conn *c, const struct msgr_frame *f) { (void)osd; (void)c; (void)f; }
void pg_tick(struct osd *osd) { (void)osd; }
void pg_free_all(struct osd *osd) { (void)osd; }
void pg_send_stats(struct osd *osd) { (void)osd; }
