/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: configuration = one INI file (blk.conf) plus command-line
 * overrides.  Every option is declared once in common/options.c with its
 * type, default and one line of documentation; unknown names are errors.
 * A value is looked up in this order (first hit wins):
 *   1. command-line override (config_set)
 *   2. [<type>.<id>] section, e.g. [mon.a] or [osd.3]
 *   3. [<type>] section, e.g. [mon]
 *   4. [global]
 *   5. the declared default
 * Names are normalized: spaces and dashes are underscores
 * ("mon host" == "mon-host" == "mon_host"), as in Ceph.
 */
#ifndef BLK_COMMON_CONFIG_H
#define BLK_COMMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum config_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_SIZE, CFG_MS };

struct config_option {
  const char *name;
  enum config_type type;
  const char *def;      /* default, as text; "" means empty */
  const char *help;     /* one line */
};

/* The option table (common/options.c), terminated by a NULL name. */
extern const struct config_option config_options[];

typedef struct config config;

/* New config for daemon "type.id" (e.g. "mon", "a"; id may be NULL).
 * Returns NULL with errno set.  Free with config_free(). */
config *config_new(const char *type, const char *id);
void config_free(config *cfg);

/* Load an INI file.  Returns 0, -ENOENT if missing, -EINVAL on a syntax
 * error or unknown option (message in *err, caller frees). */
int config_load_file(config *cfg, const char *path, char **err);
/* Parse INI text (for tests and fuzzing). */
int config_parse(config *cfg, const char *text, size_t len, const char *origin,
                 char **err);
/* Command-line override.  Returns -ENOENT for an unknown option, -EINVAL
 * for a value of the wrong type. */
int config_set(config *cfg, const char *name, const char *value);

/* Getters: the name must be declared in config_options (abort otherwise:
 * that is a programming error).  Returned strings are borrowed from cfg. */
const char *config_get_str(const config *cfg, const char *name);
int64_t config_get_int(const config *cfg, const char *name);
bool config_get_bool(const config *cfg, const char *name);

/* Parse "10G", "512K", "4096" (binary units) into bytes.  -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *out);
/* Parse "250ms", "5s", "10m", "2h" or a plain number of ms. */
int config_parse_ms(const char *s, int64_t *out);

/* Print every option with default and help (for --help-config). */
void config_print_help(FILE *f);

#endif
