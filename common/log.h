/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: leveled logging to stderr, one line per event:
 *   2026-11-22T02:45:32.123Z mon.a raft I: became leader term=3
 * The daemon name is set once at start (log_init); the subsystem is a
 * short tag given at each call site.  Daemons started by deploy/ redirect
 * stderr to <run dir>/log/<name>.log.  log_set_level() may be called at
 * any time; the level is read without locking (an int store is atomic).
 */
#ifndef BLK_COMMON_LOG_H
#define BLK_COMMON_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3, LOG_TRACE = 4 };

/* Set the name printed on each line (borrowed: must outlive the process). */
void log_init(const char *daemon_name, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug|trace" or "0".."4"; returns -EINVAL if bad. */
int log_parse_level(const char *s, enum log_level *out);

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_enabled(lvl) ((int)(lvl) <= (int)log_get_level())
#define blk_log(lvl, sub, ...) \
  do { if (log_enabled(lvl)) log_msg(lvl, sub, __VA_ARGS__); } while (0)
#define log_err(sub, ...)   blk_log(LOG_ERR, sub, __VA_ARGS__)
#define log_warn(sub, ...)  blk_log(LOG_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...)  blk_log(LOG_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) blk_log(LOG_DEBUG, sub, __VA_ARGS__)
#define log_trace(sub, ...) blk_log(LOG_TRACE, sub, __VA_ARGS__)

#endif
