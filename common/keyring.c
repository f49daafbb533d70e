/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see keyring.h.  The parser is line based: a section
 * header "[entity]", then "key = B64" and "caps SERVICE = "TEXT"" lines
 * (the quotes are optional; Ceph writes them).  Unknown settings are
 * errors, not silently ignored, so that a typo in "caps" cannot drop a
 * restriction.  Entries are kept in an array in file order.
 */
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caps.h"

#define KEYRING_MAX_FILE (1u << 20)

struct keyring {
  struct keyring_entry *e;
  size_t n, cap;
};

struct keyring *keyring_new(void)
{
  struct keyring *kr = calloc(1, sizeof *kr);
  if (!kr)
    errno = ENOMEM;
  return kr;
}

static void entry_clear(struct keyring_entry *e)
{
  OPENSSL_cleanse(e->key, sizeof e->key);
  free(e->caps_mon);
  free(e->caps_osd);
  e->caps_mon = e->caps_osd = NULL;
}

void keyring_free(struct keyring *kr)
{
  if (!kr)
    return;
  for (size_t i = 0; i < kr->n; i++)
    entry_clear(&kr->e[i]);
  free(kr->e);
  free(kr);
}

bool keyring_entity_valid(const char *name)
{
  if (!name)
    return false;
  size_t tl;
  if (strncmp(name, "client.", 7) == 0)
    tl = 7;
  else if (strncmp(name, "osd.", 4) == 0)
    tl = 4;
  else if (strncmp(name, "mon.", 4) == 0)
    tl = 4;
  else
    return false;
  size_t n = strlen(name);
  if (n >= KEYRING_MAX_ENTITY || (n == tl && tl != 4) ||
      (n == tl && strncmp(name, "mon.", 4) != 0))
    return false;
  for (size_t i = tl; i < n; i++) {
    char ch = name[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
      return false;
  }
  return true;
}

const struct keyring_entry *keyring_find(const struct keyring *kr, const char *entity)
{
  for (size_t i = 0; i < kr->n; i++)
    if (strcmp(kr->e[i].entity, entity) == 0)
      return &kr->e[i];
  return NULL;
}

static struct keyring_entry *find_mut(struct keyring *kr, const char *entity)
{
  return (struct keyring_entry *)keyring_find(kr, entity);
}

size_t keyring_count(const struct keyring *kr)
{
  return kr->n;
}

const struct keyring_entry *keyring_at(const struct keyring *kr, size_t i)
{
  return i < kr->n ? &kr->e[i] : NULL;
}

int keyring_set_key(struct keyring *kr, const char *entity, const uint8_t key[KEYRING_KEY_LEN])
{
  if (!keyring_entity_valid(entity))
    return -EINVAL;
  struct keyring_entry *e = find_mut(kr, entity);
  if (!e) {
    if (kr->n == kr->cap) {
      size_t nc = kr->cap ? kr->cap * 2 : 8;
      struct keyring_entry *ne = malloc(nc * sizeof *ne);
      if (!ne)
        return -ENOMEM;
      /* copy by hand so that the old array can be wiped */
      if (kr->n)
        memcpy(ne, kr->e, kr->n * sizeof *ne);
      if (kr->e) {
        OPENSSL_cleanse(kr->e, kr->n * sizeof *kr->e);
        free(kr->e);
      }
      kr->e = ne;
      kr->cap = nc;
    }
    e = &kr->e[kr->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->entity, sizeof e->entity, "%s", entity);
  }
  memcpy(e->key, key, KEYRING_KEY_LEN);
  return 0;
}

int keyring_set_caps(struct keyring *kr, const char *entity, const char *service,
                     const char *text, char *err, size_t errlen)
{
  enum caps_service svc;
  if (caps_service_from_name(service, &svc) < 0) {
    if (err)
      snprintf(err, errlen, "unknown service '%s' (expected mon or osd)", service ? service : "");
    return -EINVAL;
  }
  struct keyring_entry *e = find_mut(kr, entity);
  if (!e)
    return -ENOENT;
  char *dup = NULL;
  if (text) {
    caps *c = caps_parse(svc, text, err, errlen);
    if (!c)
      return errno == ENOMEM ? -ENOMEM : -EINVAL;
    caps_free(c);
    dup = strdup(text);
    if (!dup)
      return -ENOMEM;
  }
  char **slot = svc == CAPS_MON ? &e->caps_mon : &e->caps_osd;
  free(*slot);
  *slot = dup;
  return 0;
}

int keyring_remove(struct keyring *kr, const char *entity)
{
  struct keyring_entry *e = find_mut(kr, entity);
  if (!e)
    return -ENOENT;
  entry_clear(e);
  size_t i = (size_t)(e - kr->e);
  memmove(&kr->e[i], &kr->e[i + 1], (kr->n - i - 1) * sizeof *e);
  kr->n--;
  OPENSSL_cleanse(&kr->e[kr->n], sizeof *e);
  return 0;
}

/* ---- keys ---------------------------------------------------------------- */

int keyring_generate_key(uint8_t key[KEYRING_KEY_LEN])
{
  return RAND_bytes(key, KEYRING_KEY_LEN) == 1 ? 0 : -EIO;
}

static int b64val(char ch)
{
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

int keyring_key_decode(const char *b64, size_t len, uint8_t key[KEYRING_KEY_LEN])
{
  /* 32 bytes = 10 full groups + one group of 2 bytes: 43 chars + '=' */
  if (len != KEYRING_KEY_B64_LEN || b64[43] != '=')
    return -EINVAL;
  uint8_t out[33];
  size_t o = 0;
  for (size_t i = 0; i < 44; i += 4) {
    int v[4];
    for (int k = 0; k < 4; k++)
      v[k] = (i + k == 43) ? 0 : b64val(b64[i + k]);
    if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
      return -EINVAL;
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    out[o++] = (uint8_t)(w >> 16);
    out[o++] = (uint8_t)(w >> 8);
    if (o < 33)
      out[o++] = (uint8_t)w;
  }
  /* the unused low bits of the last char must be zero (canonical form) */
  int ok = (b64val(b64[42]) & 3) == 0;
  memcpy(key, out, KEYRING_KEY_LEN);
  OPENSSL_cleanse(out, sizeof out);
  if (!ok) {
    OPENSSL_cleanse(key, KEYRING_KEY_LEN);
    return -EINVAL;
  }
  return 0;
}

void keyring_key_encode(const uint8_t key[KEYRING_KEY_LEN], char out[KEYRING_KEY_B64_LEN + 1])
{
  EVP_EncodeBlock((unsigned char *)out, key, KEYRING_KEY_LEN);
  out[KEYRING_KEY_B64_LEN] = 0;
}

/* ---- reading ------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static bool is_space(char ch)
{
  return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Trim [*s, *e) of white space. */
static void trim(const char **s, const char **e)
{
  while (*s < *e && is_space(**s))
    (*s)++;
  while (*e > *s && is_space((*e)[-1]))
    (*e)--;
}

int keyring_parse(struct keyring *kr, const char *text, size_t len, const char *fname,
                  char *err, size_t errlen)
{
  const char *p = text, *end = text + len;
  int line = 0;
  struct keyring_entry *cur = NULL;
  bool cur_has_key = false;
  char cur_name[KEYRING_MAX_ENTITY] = "";
  if (!fname)
    fname = "keyring";
  while (p < end) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *s = p, *e = le;
    p = nl ? nl + 1 : end;
    trim(&s, &e);
    if (s == e || *s == '#' || *s == ';')
      continue;
    if (memchr(s, 0, (size_t)(e - s))) {
      set_err(err, errlen, "%s:%d: NUL byte in keyring", fname, line);
      return -EINVAL;
    }
    if (*s == '[') {
      if (cur_name[0] && !cur_has_key) {
        set_err(err, errlen, "%s:%d: section [%s] has no key", fname, line, cur_name);
        return -EINVAL;
      }
      if (e[-1] != ']') {
        set_err(err, errlen, "%s:%d: expected ']' at the end of the section header", fname, line);
        return -EINVAL;
      }
      const char *ns = s + 1, *ne = e - 1;
      trim(&ns, &ne);
      if ((size_t)(ne - ns) >= KEYRING_MAX_ENTITY) {
        set_err(err, errlen, "%s:%d: entity name too long", fname, line);
        return -EINVAL;
      }
      memcpy(cur_name, ns, (size_t)(ne - ns));
      cur_name[ne - ns] = 0;
      if (!keyring_entity_valid(cur_name)) {
        set_err(err, errlen, "%s:%d: bad entity name '%s' (expected client.ID, osd.ID or mon.)",
                fname, line, cur_name);
        return -EINVAL;
      }
      if (keyring_find(kr, cur_name)) {
        set_err(err, errlen, "%s:%d: entity %s appears twice", fname, line, cur_name);
        return -EINVAL;
      }
      cur = NULL;               /* created when its key is seen */
      cur_has_key = false;
      continue;
    }
    if (!cur_name[0]) {
      set_err(err, errlen, "%s:%d: setting outside of an [entity] section", fname, line);
      return -EINVAL;
    }
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq) {
      set_err(err, errlen, "%s:%d: expected 'name = value'", fname, line);
      return -EINVAL;
    }
    const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    trim(&vs, &ve);
    size_t kl = (size_t)(ke - ks);
    if (kl == 3 && memcmp(ks, "key", 3) == 0) {
      if (cur_has_key) {
        set_err(err, errlen, "%s:%d: second key for %s", fname, line, cur_name);
        return -EINVAL;
      }
      uint8_t key[KEYRING_KEY_LEN];
      if (keyring_key_decode(vs, (size_t)(ve - vs), key) < 0) {
        set_err(err, errlen, "%s:%d: key of %s is not the base64 of 32 bytes (256 bits)",
                fname, line, cur_name);
        return -EINVAL;
      }
      int r = keyring_set_key(kr, cur_name, key);
      OPENSSL_cleanse(key, sizeof key);
      if (r < 0) {
        set_err(err, errlen, "%s:%d: %s", fname, line, strerror(-r));
        return r;
      }
      cur = find_mut(kr, cur_name);
      cur_has_key = true;
    } else if (kl > 5 && memcmp(ks, "caps", 4) == 0 && is_space(ks[4])) {
      const char *ss = ks + 4, *se = ke;
      trim(&ss, &se);
      char svc[8];
      if ((size_t)(se - ss) >= sizeof svc) {
        set_err(err, errlen, "%s:%d: unknown service '%.*s' (expected mon or osd)", fname,
                line, (int)(se - ss > 32 ? 32 : se - ss), ss);
        return -EINVAL;
      }
      memcpy(svc, ss, (size_t)(se - ss));
      svc[se - ss] = 0;
      if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
        vs++;
        ve--;
      } else if (memchr(vs, '"', (size_t)(ve - vs))) {
        set_err(err, errlen, "%s:%d: unbalanced '\"' in caps", fname, line);
        return -EINVAL;
      }
      if (!cur) {
        set_err(err, errlen, "%s:%d: caps before the key of %s", fname, line, cur_name);
        return -EINVAL;
      }
      if ((size_t)(ve - vs) > KEYRING_MAX_CAPS) {
        set_err(err, errlen, "%s:%d: caps longer than %d bytes", fname, line, KEYRING_MAX_CAPS);
        return -EINVAL;
      }
      char *txt = strndup(vs, (size_t)(ve - vs));
      if (!txt)
        return -ENOMEM;
      char cerr[200];
      int r = keyring_set_caps(kr, cur_name, svc, txt, cerr, sizeof cerr);
      free(txt);
      if (r < 0) {
        set_err(err, errlen, "%s:%d: %s", fname, line, cerr);
        return r;
      }
    } else {
      set_err(err, errlen, "%s:%d: unknown setting '%.*s' (expected key or caps SERVICE)",
              fname, line, (int)(kl > 32 ? 32 : kl), ks);
      return -EINVAL;
    }
  }
  if (cur_name[0] && !cur_has_key) {
    set_err(err, errlen, "%s:%d: section [%s] has no key", fname, line, cur_name);
    return -EINVAL;
  }
  return 0;
}

/* Read a whole (small) file.  *buf is malloc'ed (caller wipes + frees). */
static int read_secret_file(const char *path, char **buf, size_t *len, bool *insecure,
                            char *warn, size_t warnlen, char *err, size_t errlen)
{
  if (insecure)
    *insecure = false;
  if (warn && warnlen)
    warn[0] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    set_err(err, errlen, "%s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    set_err(err, errlen, "%s: %s", path, strerror(e));
    close(fd);
    return -e;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > KEYRING_MAX_FILE) {
    set_err(err, errlen, "%s: not a regular file of at most 1 MiB", path);
    close(fd);
    return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    if (insecure)
      *insecure = true;
    set_err(warn, warnlen, "%s is accessible by group or others (mode %04o); "
                           "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
  }
  char *b = malloc((size_t)st.st_size + 1);
  if (!b) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      set_err(err, errlen, "%s: %s", path, n < 0 ? strerror(e) : "short read");
      OPENSSL_cleanse(b, got);
      free(b);
      close(fd);
      return -e;
    }
    got += (size_t)n;
  }
  close(fd);
  b[got] = 0;
  *buf = b;
  *len = got;
  return 0;
}

int keyring_load(const char *path, struct keyring **out, bool *insecure, char *warn,
                 size_t warnlen, char *err, size_t errlen)
{
  char *buf;
  size_t len;
  int r = read_secret_file(path, &buf, &len, insecure, warn, warnlen, err, errlen);
  if (r < 0)
    return r;
  struct keyring *kr = keyring_new();
  if (!kr) {
    r = -ENOMEM;
    goto out_free_buf;
  }
  r = keyring_parse(kr, buf, len, path, err, errlen);
  if (r < 0) {
    keyring_free(kr);
    goto out_free_buf;
  }
  *out = kr;
out_free_buf:
  OPENSSL_cleanse(buf, len);
  free(buf);
  return r;
}

int keyring_read_key_file(const char *path, uint8_t key[KEYRING_KEY_LEN],
                          bool *insecure, char *warn, size_t warnlen,
                          char *err, size_t errlen)
{
  char *buf;
  size_t len;
  int r = read_secret_file(path, &buf, &len, insecure, warn, warnlen, err, errlen);
  if (r < 0)
    return r;
  const char *s = buf, *e = buf + len;
  while (s < e && (is_space(*s) || *s == '\n'))
    s++;
  while (e > s && (is_space(e[-1]) || e[-1] == '\n'))
    e--;
  r = keyring_key_decode(s, (size_t)(e - s), key);
  if (r < 0)
    set_err(err, errlen, "%s: expected the base64 of a 32-byte (256-bit) key", path);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return r;
}

/* ---- writing ------------------------------------------------------------- */

char *keyring_format(const struct keyring *kr)
{
  size_t cap = 1;
  for (size_t i = 0; i < kr->n; i++) {
    const struct keyring_entry *e = &kr->e[i];
    cap += strlen(e->entity) + 3 + 8 + KEYRING_KEY_B64_LEN + 1;
    if (e->caps_mon)
      cap += strlen(e->caps_mon) + 18;
    if (e->caps_osd)
      cap += strlen(e->caps_osd) + 18;
  }
  char *out = malloc(cap);
  if (!out) {
    errno = ENOMEM;
    return NULL;
  }
  size_t used = 0;
  out[0] = 0;
  for (size_t i = 0; i < kr->n; i++) {
    const struct keyring_entry *e = &kr->e[i];
    char b64[KEYRING_KEY_B64_LEN + 1];
    keyring_key_encode(e->key, b64);
    used += (size_t)snprintf(out + used, cap - used, "[%s]\n\tkey = %s\n", e->entity, b64);
    OPENSSL_cleanse(b64, sizeof b64);
    if (e->caps_mon)
      used += (size_t)snprintf(out + used, cap - used, "\tcaps mon = \"%s\"\n", e->caps_mon);
    if (e->caps_osd)
      used += (size_t)snprintf(out + used, cap - used, "\tcaps osd = \"%s\"\n", e->caps_osd);
  }
  return out;
}

int keyring_write(const struct keyring *kr, const char *path)
{
  char *text = keyring_format(kr);
  if (!text)
    return -ENOMEM;
  size_t len = strlen(text);
  size_t pl = strlen(path) + 16;
  char *tmp = malloc(pl);
  int r = 0;
  if (!tmp) {
    r = -ENOMEM;
    goto out_free_text;
  }
  snprintf(tmp, pl, "%s.tmp", path);
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    r = -errno;
    goto out_free_tmp;
  }
  /* the umask may only remove bits; make sure of 0600 exactly */
  if (fchmod(fd, 0600) < 0) {
    r = -errno;
    goto out_close;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = -errno;
      goto out_close;
    }
    off += (size_t)n;
  }
  if (fsync(fd) < 0) {
    r = -errno;
    goto out_close;
  }
  if (close(fd) < 0) {
    r = -errno;
    fd = -1;
    goto out_unlink;
  }
  fd = -1;
  if (rename(tmp, path) < 0) {
    r = -errno;
    goto out_unlink;
  }
  /* make the rename durable: fsync the directory */
  char *slash = strrchr(tmp, '/');
  if (slash == tmp)
    slash[1] = 0;
  else if (slash)
    *slash = 0;
  int dfd = open(slash ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) < 0)
      r = -errno;
    close(dfd);
  }
  goto out_free_tmp;
out_close:
  close(fd);
out_unlink:
  unlink(tmp);
out_free_tmp:
  free(tmp);
out_free_text:
  OPENSSL_cleanse(text, len);
  free(text);
  return r;
}
