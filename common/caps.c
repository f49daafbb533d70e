/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: see caps.h for the grammar and semantics.  The tokenizer
 * turns the text into words ([A-Za-z0-9_.-]+), '*', '=', ',' and end,
 * each with its 1-based column; anything else is a "bad" token that no
 * rule accepts, so the parser reports it with the column it expected
 * something at.  The parser is one function per rule.  A parsed caps is a
 * flat array of clauses; evaluation ORs the bits of every clause that
 * applies to the pool and compares with what is needed.
 */
#include "caps.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAPS_MAX_POOL 64          /* incl. NUL, as CM_MAX_NAME */

enum profile { PROF_NONE, PROF_ADMIN, PROF_OSD, PROF_MON };

struct clause {
  unsigned perm;                  /* CAP_* bits this clause grants */
  bool star;                      /* "allow *" */
  enum profile profile;           /* PROF_NONE for "allow ..." */
  char pool[CAPS_MAX_POOL];       /* "" = every pool */
};

struct caps {
  enum caps_service svc;
  int n;
  struct clause cl[];
};

/* ---- tokenizer ----------------------------------------------------------- */

enum tok_kind { T_WORD, T_STAR, T_EQ, T_COMMA, T_END, T_BAD };

struct tok {
  enum tok_kind kind;
  const char *s;                  /* start in the text */
  size_t len;
  int col;                        /* 1-based */
};

struct parser {
  const char *text;
  size_t len, pos;
  struct tok t;                   /* current token */
  char *err;
  size_t errlen;
  bool failed;
};

static bool word_char(char ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
}

static void next(struct parser *p)
{
  while (p->pos < p->len && (p->text[p->pos] == ' ' || p->text[p->pos] == '\t'))
    p->pos++;
  struct tok *t = &p->t;
  t->s = p->text + p->pos;
  t->col = (int)p->pos + 1;
  t->len = 1;
  if (p->pos >= p->len) {
    t->kind = T_END;
    t->len = 0;
    return;
  }
  char ch = p->text[p->pos];
  if (word_char(ch)) {
    size_t start = p->pos;
    while (p->pos < p->len && word_char(p->text[p->pos]))
      p->pos++;
    t->kind = T_WORD;
    t->len = p->pos - start;
    return;
  }
  p->pos++;
  t->kind = ch == '*' ? T_STAR : ch == '=' ? T_EQ : ch == ',' ? T_COMMA : T_BAD;
}

static bool is_word(const struct tok *t, const char *w)
{
  return t->kind == T_WORD && t->len == strlen(w) && memcmp(t->s, w, t->len) == 0;
}

__attribute__((format(printf, 3, 4)))
static void fail_at(struct parser *p, int col, const char *fmt, ...)
{
  if (p->failed)
    return;
  p->failed = true;
  if (!p->err || !p->errlen)
    return;
  int n = snprintf(p->err, p->errlen, "caps: column %d: ", col);
  if (n < 0 || (size_t)n >= p->errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

/* ---- parser -------------------------------------------------------------- */

/* perm = "*" | letters */
static bool parse_perm(struct parser *p, struct clause *cl)
{
  if (p->t.kind == T_STAR) {
    cl->star = true;
    cl->perm = CAP_ALL;
    next(p);
    return true;
  }
  if (p->t.kind != T_WORD) {
    fail_at(p, p->t.col, "expected 'r', 'w', 'x' or '*' after 'allow'");
    return false;
  }
  unsigned perm = 0;
  for (size_t i = 0; i < p->t.len; i++) {
    char ch = p->t.s[i];
    unsigned bit = ch == 'r' ? CAP_R : ch == 'w' ? CAP_W : ch == 'x' ? CAP_X : 0;
    if (!bit) {
      fail_at(p, p->t.col + (int)i, "expected 'r', 'w', 'x' or '*' after 'allow'");
      return false;
    }
    if (perm & bit) {
      fail_at(p, p->t.col + (int)i, "'%c' repeated in permissions", ch);
      return false;
    }
    perm |= bit;
  }
  cl->perm = perm;
  next(p);
  return true;
}

/* [ "pool" "=" name ] after a perm */
static bool parse_pool(struct parser *p, struct clause *cl)
{
  if (!is_word(&p->t, "pool")) {
    if (p->t.kind == T_COMMA || p->t.kind == T_END)
      return true;
    fail_at(p, p->t.col, "expected 'pool=NAME', ',' or end of caps after permissions");
    return false;
  }
  next(p);
  if (p->t.kind != T_EQ) {
    fail_at(p, p->t.col, "expected '=' after 'pool'");
    return false;
  }
  next(p);
  if (p->t.kind != T_WORD) {
    fail_at(p, p->t.col, "expected a pool name after 'pool='");
    return false;
  }
  if (p->t.len >= CAPS_MAX_POOL) {
    fail_at(p, p->t.col, "pool name longer than %d characters", CAPS_MAX_POOL - 1);
    return false;
  }
  memcpy(cl->pool, p->t.s, p->t.len);
  cl->pool[p->t.len] = 0;
  next(p);
  return true;
}

static bool parse_profile(struct parser *p, struct clause *cl)
{
  next(p);                                     /* "profile" */
  static const struct { const char *name; enum profile prof; } profs[] = {
    { "admin", PROF_ADMIN }, { "osd", PROF_OSD }, { "mon", PROF_MON },
  };
  for (size_t i = 0; i < sizeof profs / sizeof *profs; i++) {
    if (is_word(&p->t, profs[i].name)) {
      cl->profile = profs[i].prof;
      next(p);
      return true;
    }
  }
  if (p->t.kind == T_WORD)
    fail_at(p, p->t.col, "unknown profile '%.*s' (expected admin, osd or mon)",
            (int)(p->t.len > 32 ? 32 : p->t.len), p->t.s);
  else
    fail_at(p, p->t.col, "expected a profile name (admin, osd or mon) after 'profile'");
  return false;
}

/* clause = "allow" perm [pool] | ["allow"] "profile" NAME */
static bool parse_clause(struct parser *p, struct clause *cl)
{
  memset(cl, 0, sizeof *cl);
  if (is_word(&p->t, "profile"))
    return parse_profile(p, cl);
  if (!is_word(&p->t, "allow")) {
    fail_at(p, p->t.col, "expected 'allow' or 'profile'");
    return false;
  }
  next(p);
  if (is_word(&p->t, "profile"))
    return parse_profile(p, cl);
  return parse_perm(p, cl) && parse_pool(p, cl);
}

caps *caps_parse(enum caps_service svc, const char *text, char *err, size_t errlen)
{
  if (err && errlen)
    err[0] = 0;
  if (svc >= CAPS_N_SERVICES || !text) {
    if (err)
      snprintf(err, errlen, "caps: no service or text");
    errno = EINVAL;
    return NULL;
  }
  struct parser p = { .text = text, .len = strlen(text), .err = err, .errlen = errlen };
  if (p.len > CAPS_MAX_TEXT) {
    fail_at(&p, CAPS_MAX_TEXT + 1, "caps longer than %d bytes", CAPS_MAX_TEXT);
    errno = EINVAL;
    return NULL;
  }
  caps *c = calloc(1, sizeof *c + CAPS_MAX_CLAUSES * sizeof c->cl[0]);
  if (!c) {
    errno = ENOMEM;
    return NULL;
  }
  c->svc = svc;
  next(&p);
  for (;;) {
    if (c->n == CAPS_MAX_CLAUSES) {
      fail_at(&p, p.t.col, "more than %d clauses", CAPS_MAX_CLAUSES);
      break;
    }
    if (!parse_clause(&p, &c->cl[c->n]))
      break;
    c->n++;
    if (p.t.kind == T_END)
      break;
    if (p.t.kind != T_COMMA) {
      fail_at(&p, p.t.col, "expected ',' or end of caps");
      break;
    }
    next(&p);
  }
  if (p.failed) {
    free(c);
    errno = EINVAL;
    return NULL;
  }
  return c;
}

void caps_free(caps *c)
{
  free(c);
}

/* ---- evaluation ---------------------------------------------------------- */

static unsigned profile_bits(enum profile prof, enum caps_service svc)
{
  switch (prof) {
  case PROF_ADMIN:
    return CAP_ALL;
  case PROF_OSD:         /* an OSD: reads maps, reports (x) to mons; replicates */
    return svc == CAPS_MON ? (CAP_R | CAP_X) : CAP_ALL;
  case PROF_MON:         /* a monitor: owns the mon service, reads OSD state */
    return svc == CAPS_MON ? CAP_ALL : CAP_R;
  case PROF_NONE:
    break;
  }
  return 0;
}

bool caps_allows(const caps *c, enum caps_service svc, const char *pool, unsigned need)
{
  if (!c || c->svc != svc || need == 0 || (need & ~(unsigned)CAP_ALL))
    return false;
  unsigned have = 0;
  for (int i = 0; i < c->n; i++) {
    const struct clause *cl = &c->cl[i];
    if (cl->profile != PROF_NONE) {
      have |= profile_bits(cl->profile, svc);
    } else if (!cl->pool[0] || (pool && strcmp(cl->pool, pool) == 0)) {
      have |= cl->perm;
    }
    if ((have & need) == need)
      return true;
  }
  return false;
}

enum caps_service caps_service_of(const caps *c)
{
  return c->svc;
}

int caps_service_from_name(const char *name, enum caps_service *svc)
{
  if (name && strcmp(name, "mon") == 0)
    *svc = CAPS_MON;
  else if (name && strcmp(name, "osd") == 0)
    *svc = CAPS_OSD;
  else
    return -EINVAL;
  return 0;
}

const char *caps_service_name(enum caps_service svc)
{
  return svc == CAPS_MON ? "mon" : svc == CAPS_OSD ? "osd" : "?";
}

size_t caps_format(const caps *c, char *out, size_t n)
{
  static const char *const prof_names[] = { "", "admin", "osd", "mon" };
  size_t used = 0;
  for (int i = 0; i < c->n; i++) {
    const struct clause *cl = &c->cl[i];
    char one[CAPS_MAX_POOL + 32];
    if (cl->profile != PROF_NONE) {
      snprintf(one, sizeof one, "profile %s", prof_names[cl->profile]);
    } else {
      char perm[4] = { 0 };
      int k = 0;
      if (cl->star) {
        perm[k++] = '*';
      } else {
        if (cl->perm & CAP_R) perm[k++] = 'r';
        if (cl->perm & CAP_W) perm[k++] = 'w';
        if (cl->perm & CAP_X) perm[k++] = 'x';
      }
      snprintf(one, sizeof one, "allow %s%s%s", perm, cl->pool[0] ? " pool=" : "", cl->pool);
    }
    int w = snprintf(used < n ? out + used : NULL, used < n ? n - used : 0, "%s%s",
                     i ? ", " : "", one);
    if (w > 0)
      used += (size_t)w;
  }
  if (c->n == 0 && n)
    out[0] = 0;
  return used;
}
