/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see config.h.  Values are kept per (section, name) in a
 * small array; configs are read once at start and are not hot, so linear
 * search is fine.  Parsing never trusts line lengths: lines are scanned in
 * place within the given buffer.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct config_value {
  char *section;  /* NULL for command-line overrides */
  char *name;
  char *value;
};

struct config {
  char *type;          /* "mon" */
  char *fullname;      /* "mon.a" or NULL */
  struct config_value *v;
  size_t n, cap;
};

static const struct config_option *option_find(const char *name)
{
  for (const struct config_option *o = config_options; o->name; o++)
    if (strcmp(o->name, name) == 0)
      return o;
  return NULL;
}

static void normalize(char *s)
{
  for (; *s; s++) {
    if (*s == ' ' || *s == '-')
      *s = '_';
    else
      *s = (char)tolower((unsigned char)*s);
  }
}

config *config_new(const char *type, const char *id)
{
  config *cfg = calloc(1, sizeof *cfg);
  if (!cfg)
    return NULL;
  cfg->type = strdup(type ? type : "client");
  if (id && *id) {
    size_t n = strlen(cfg->type) + strlen(id) + 2;
    cfg->fullname = malloc(n);
    if (cfg->fullname)
      snprintf(cfg->fullname, n, "%s.%s", cfg->type, id);
  }
  if (!cfg->type || (id && *id && !cfg->fullname)) {
    config_free(cfg);
    errno = ENOMEM;
    return NULL;
  }
  return cfg;
}

void config_free(config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n; i++) {
    free(cfg->v[i].section);
    free(cfg->v[i].name);
    free(cfg->v[i].value);
  }
  free(cfg->v);
  free(cfg->type);
  free(cfg->fullname);
  free(cfg);
}

static int check_value(const struct config_option *o, const char *value)
{
  uint64_t sz;
  int64_t ms;
  char *end;
  switch (o->type) {
  case CFG_STR:
    return 0;
  case CFG_INT:
    errno = 0;
    (void)strtoll(value, &end, 0);
    return (errno || end == value || *end) ? -EINVAL : 0;
  case CFG_BOOL:
    return (!strcmp(value, "true") || !strcmp(value, "false") ||
            !strcmp(value, "1") || !strcmp(value, "0") ||
            !strcmp(value, "yes") || !strcmp(value, "no")) ? 0 : -EINVAL;
  case CFG_SIZE:
    return config_parse_size(value, &sz);
  case CFG_MS:
    return config_parse_ms(value, &ms);
  }
  return -EINVAL;
}

static int store(config *cfg, const char *section, const char *name,
                 const char *value)
{
  for (size_t i = 0; i < cfg->n; i++) {
    struct config_value *cv = &cfg->v[i];
    if (strcmp(cv->name, name) == 0 &&
        ((!section && !cv->section) ||
         (section && cv->section && strcmp(section, cv->section) == 0))) {
      char *nv = strdup(value);
      if (!nv)
        return -ENOMEM;
      free(cv->value);
      cv->value = nv;
      return 0;
    }
  }
  if (cfg->n == cfg->cap) {
    size_t nc = cfg->cap ? cfg->cap * 2 : 32;
    struct config_value *nvv = realloc(cfg->v, nc * sizeof *nvv);
    if (!nvv)
      return -ENOMEM;
    cfg->v = nvv;
    cfg->cap = nc;
  }
  struct config_value *cv = &cfg->v[cfg->n];
  cv->section = section ? strdup(section) : NULL;
  cv->name = strdup(name);
  cv->value = strdup(value);
  if ((section && !cv->section) || !cv->name || !cv->value) {
    free(cv->section);
    free(cv->name);
    free(cv->value);
    return -ENOMEM;
  }
  cfg->n++;
  return 0;
}

int config_set(config *cfg, const char *name, const char *value)
{
  char norm[128];
  if (strlen(name) >= sizeof norm)
    return -ENOENT;
  strcpy(norm, name);
  normalize(norm);
  const struct config_option *o = option_find(norm);
  if (!o)
    return -ENOENT;
  if (check_value(o, value) < 0)
    return -EINVAL;
  return store(cfg, NULL, norm, value);
}

static int seterr(char **err, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
      *err = NULL;
    va_end(ap);
  }
  return -EINVAL;
}

static const char *trim(char *s, char *e)
{
  while (s < e && isspace((unsigned char)*s))
    s++;
  while (e > s && isspace((unsigned char)e[-1]))
    e--;
  *e = 0;
  return s;
}

int config_parse(config *cfg, const char *text, size_t len, const char *origin,
                 char **err)
{
  char *buf = malloc(len + 1);
  char section[128] = "global";
  int lineno = 0, r = 0;

  if (!buf)
    return -ENOMEM;
  memcpy(buf, text, len);
  buf[len] = 0;
  if (memchr(buf, 0, len)) {
    free(buf);
    return seterr(err, "%s: contains a NUL byte", origin);
  }
  for (char *line = buf; line && *line;) {
    char *nl = strchr(line, '\n');
    char *end = nl ? nl : line + strlen(line);
    char *next = nl ? nl + 1 : NULL;
    lineno++;
    /* strip comments */
    for (char *c = line; c < end; c++)
      if (*c == '#' || *c == ';') {
        end = c;
        break;
      }
    const char *l = trim(line, end);
    if (*l == 0) {
      line = next;
      continue;
    }
    if (*l == '[') {
      const char *close = strchr(l, ']');
      size_t n = close ? (size_t)(close - l - 1) : 0;
      if (!close || close[1] || n == 0 || n >= sizeof section) {
        r = seterr(err, "%s:%d: bad section header '%s'", origin, lineno, l);
        break;
      }
      memcpy(section, l + 1, n);
      section[n] = 0;
      normalize(section);
      line = next;
      continue;
    }
    const char *eq = strchr(l, '=');
    if (!eq) {
      r = seterr(err, "%s:%d: expected 'name = value', got '%s'", origin,
                 lineno, l);
      break;
    }
    char name[128];
    char *k = (char *)l, *ke = (char *)eq;
    const char *key = trim(k, ke);
    const char *val = trim((char *)eq + 1, (char *)eq + 1 + strlen(eq + 1));
    if (strlen(key) >= sizeof name || !*key) {
      r = seterr(err, "%s:%d: bad option name", origin, lineno);
      break;
    }
    strcpy(name, key);
    normalize(name);
    const struct config_option *o = option_find(name);
    if (!o) {
      r = seterr(err, "%s:%d: unknown option '%s'", origin, lineno, name);
      break;
    }
    if (check_value(o, val) < 0) {
      r = seterr(err, "%s:%d: bad value '%s' for option '%s'", origin, lineno,
                 val, name);
      break;
    }
    if ((r = store(cfg, section, name, val)) < 0)
      break;
    line = next;
  }
  free(buf);
  return r;
}

int config_load_file(config *cfg, const char *path, char **err)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    int e = errno;
    seterr(err, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  char *text = NULL;
  size_t cap = 0, len = 0;
  int r = 0;
  for (;;) {
    if (len + 4096 > cap) {
      if (cap >= (1u << 20)) {
        r = seterr(err, "%s: larger than 1 MiB", path);
        break;
      }
      cap = cap ? cap * 2 : 8192;
      char *nt = realloc(text, cap);
      if (!nt) {
        r = -ENOMEM;
        break;
      }
      text = nt;
    }
    size_t n = fread(text + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  if (r == 0)
    r = config_parse(cfg, text ? text : "", len, path, err);
  free(text);
  return r;
}

static const char *lookup(const config *cfg, const char *name)
{
  const char *by_full = NULL, *by_type = NULL, *by_global = NULL;
  for (size_t i = 0; i < cfg->n; i++) {
    const struct config_value *cv = &cfg->v[i];
    if (strcmp(cv->name, name) != 0)
      continue;
    if (!cv->section)
      return cv->value;
    if (cfg->fullname && strcmp(cv->section, cfg->fullname) == 0)
      by_full = cv->value;
    else if (strcmp(cv->section, cfg->type) == 0)
      by_type = cv->value;
    else if (strcmp(cv->section, "global") == 0)
      by_global = cv->value;
  }
  return by_full ? by_full : by_type ? by_type : by_global;
}

static const char *get(const config *cfg, const char *name,
                       const struct config_option **po)
{
  const struct config_option *o = option_find(name);
  if (!o) {
    fprintf(stderr, "BUG: undeclared config option '%s'\n", name);
    abort();
  }
  *po = o;
  const char *v = lookup(cfg, name);
  return v ? v : o->def;
}

const char *config_get_str(const config *cfg, const char *name)
{
  const struct config_option *o;
  return get(cfg, name, &o);
}

int64_t config_get_int(const config *cfg, const char *name)
{
  const struct config_option *o;
  const char *v = get(cfg, name, &o);
  if (o->type == CFG_SIZE) {
    uint64_t b = 0;
    config_parse_size(v, &b);
    return (int64_t)b;
  }
  if (o->type == CFG_MS) {
    int64_t ms = 0;
    config_parse_ms(v, &ms);
    return ms;
  }
  return strtoll(v, NULL, 0);
}

bool config_get_bool(const config *cfg, const char *name)
{
  const struct config_option *o;
  const char *v = get(cfg, name, &o);
  return !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes");
}

int config_parse_size(const char *s, uint64_t *out)
{
  char *end;
  if (!s || !isdigit((unsigned char)*s))
    return -EINVAL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno)
    return -ERANGE;
  int shift = 0;
  switch (toupper((unsigned char)*end)) {
  case 0: break;
  case 'B': shift = 0; end++; break;
  case 'K': shift = 10; end++; break;
  case 'M': shift = 20; end++; break;
  case 'G': shift = 30; end++; break;
  case 'T': shift = 40; end++; break;
  case 'P': shift = 50; end++; break;
  default: return -EINVAL;
  }
  if (shift && (*end == 'i' || *end == 'I'))
    end++;
  if (shift && (*end == 'B' || *end == 'b'))
    end++;
  if (*end)
    return -EINVAL;
  if (shift && v > (ULLONG_MAX >> shift))
    return -ERANGE;
  *out = (uint64_t)v << shift;
  return 0;
}

int config_parse_ms(const char *s, int64_t *out)
{
  char *end;
  if (!s || !isdigit((unsigned char)*s))
    return -EINVAL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno)
    return -ERANGE;
  long long mul;
  if (!*end || !strcmp(end, "ms"))
    mul = 1;
  else if (!strcmp(end, "s"))
    mul = 1000;
  else if (!strcmp(end, "m") || !strcmp(end, "min"))
    mul = 60000;
  else if (!strcmp(end, "h"))
    mul = 3600000;
  else
    return -EINVAL;
  if (v > LLONG_MAX / mul)
    return -ERANGE;
  *out = v * mul;
  return 0;
}

void config_print_help(FILE *f)
{
  static const char *tn[] = { "string", "int", "bool", "size", "duration" };
  for (const struct config_option *o = config_options; o->name; o++)
    fprintf(f, "  %-28s %-8s default: %-12s %s\n", o->name, tn[o->type],
            *o->def ? o->def : "\"\"", o->help);
}
