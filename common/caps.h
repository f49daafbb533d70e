/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: capabilities ("caps") say what an entity may do on one
 * service (mon or osd).  The text form is parsed by a hand-written
 * tokenizer + recursive-descent parser; the grammar (EBNF in docs/auth.md
 * §3) is:
 *
 *   caps    = clause { "," clause } ;
 *   clause  = "allow" perm [ "pool" "=" name ]
 *           | [ "allow" ] "profile" ( "admin" | "osd" | "mon" ) ;
 *   perm    = "*" | letters ;      letters: r, w, x, each at most once
 *   name    = 1*63 ( ALPHA | DIGIT | "_" | "-" | "." ) ;
 *
 * White space (space, tab) may separate any two tokens.  Errors name the
 * 1-based column: "caps: column 12: expected 'r', 'w', 'x' or '*' after
 * 'allow'".  Evaluation: a request needing bits NEED on pool P is allowed
 * when the union of the bits granted by the clauses that apply to P covers
 * NEED.  A clause with pool=NAME applies only to that pool (never to
 * requests without a pool); "*" grants every bit; profiles expand as the
 * table in docs/auth.md §3 says.
 */
#ifndef BLK_COMMON_CAPS_H
#define BLK_COMMON_CAPS_H

#include <stdbool.h>
#include <stddef.h>

enum {
  CAP_R = 1,       /* read: maps, objects, status */
  CAP_W = 2,       /* write: objects, map changes */
  CAP_X = 4,       /* execute: class methods, admin commands, auth */
  CAP_ALL = 7,
};

enum caps_service { CAPS_MON = 0, CAPS_OSD = 1, CAPS_N_SERVICES };

#define CAPS_MAX_CLAUSES 64
#define CAPS_MAX_TEXT 4096

typedef struct caps caps;

/* Parse text as the caps of service svc.  Returns a new caps (free with
 * caps_free), or NULL with errno = EINVAL and "caps: column N: ..." in
 * err, or errno = ENOMEM. */
caps *caps_parse(enum caps_service svc, const char *text, char *err, size_t errlen);
void caps_free(caps *c);

/* True when c (the caps of service svc) grants every bit of need for
 * pool (NULL: a request not about a pool, e.g. a map read).  c == NULL,
 * need == 0 or caps of another service grant nothing. */
bool caps_allows(const caps *c, enum caps_service svc, const char *pool, unsigned need);
enum caps_service caps_service_of(const caps *c);

/* "mon" / "osd" -> service; -EINVAL for anything else. */
int caps_service_from_name(const char *name, enum caps_service *svc);
const char *caps_service_name(enum caps_service svc);

/* The canonical text of c (clauses normalized, e.g. "allow rwx pool=a,
 * profile osd") into out.  Returns the length it needs (like snprintf). */
size_t caps_format(const caps *c, char *out, size_t n);

#endif
