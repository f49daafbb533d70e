/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see log.h.  Each line is formatted into a stack buffer and
 * written with one write(2) so that lines from several threads do not mix.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_name = "blk";
static volatile int log_level = LOG_INFO;
static const char level_char[] = "EWIDT";

void log_init(const char *daemon_name, enum log_level level)
{
  if (daemon_name)
    log_name = daemon_name;
  log_level = level;
}

void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return (enum log_level)log_level; }

int log_parse_level(const char *s, enum log_level *out)
{
  static const char *names[] = { "error", "warn", "info", "debug", "trace" };
  for (int i = 0; i < 5; i++) {
    if (strcmp(s, names[i]) == 0 || (s[0] == '0' + i && s[1] == 0)) {
      *out = (enum log_level)i;
      return 0;
    }
  }
  return -EINVAL;
}

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
  char buf[2048];
  struct timeval tv;
  struct tm tm;
  int saved = errno;
  size_t n;
  va_list ap;

  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, sizeof buf - n, ".%03ldZ %s %s %c: ",
                        (long)(tv.tv_usec / 1000), log_name, subsys,
                        level_char[lvl < 0 || lvl > 4 ? 0 : lvl]);
  if (n < sizeof buf) {
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    va_end(ap);
    if (m > 0)
      n += (size_t)m;
  }
  if (n > sizeof buf - 2)
    n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t r = write(STDERR_FILENO, buf, n);
  (void)r;
  errno = saved;
}
