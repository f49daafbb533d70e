/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: keyrings in Ceph's format (docs/auth.md §2):
 *
 *   [client.admin]
 *   	key = <base64 of 32 random bytes>
 *   	caps mon = "allow r"
 *   	caps osd = "allow rwx pool=KVMpool"
 *
 * One section per entity; `key` is exactly 256 bits; `caps <service>` is
 * checked with the caps parser (common/caps.h) when the keyring is read,
 * so a keyring that loads has caps that evaluate.  Comments start with
 * '#' or ';'.  A keyring is an in-memory list of entries; the monitor's
 * auth database is one too.  Writing goes to a temporary file created with
 * mode 0600, fsynced and renamed over the target (then the directory is
 * fsynced).  Reading warns (flag +
 * message, never an error) when the file is readable by group or others.
 * A key file (--key-file) holds only the base64 key.
 *
 * Keys are secrets: every buffer that held one is wiped with
 * OPENSSL_cleanse before it is freed.
 */
#ifndef BLK_COMMON_KEYRING_H
#define BLK_COMMON_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYRING_KEY_LEN 32          /* 256-bit keys, always */
#define KEYRING_KEY_B64_LEN 44      /* base64 of 32 bytes, with one '=' */
#define KEYRING_MAX_ENTITY 64       /* "client.KVMpool", "osd.3", "mon." incl. NUL */
#define KEYRING_MAX_CAPS 4096       /* bytes of one caps string */


struct keyring;                     /* opaque */

struct keyring_entry {
  char entity[KEYRING_MAX_ENTITY];
  uint8_t key[KEYRING_KEY_LEN];
  char *caps_mon;                   /* caps text or NULL (no caps) */
  char *caps_osd;
};

/* An empty keyring.  NULL with errno = ENOMEM. */
struct keyring *keyring_new(void);
/* Wipe every key and free.  NULL is a no-op. */
void keyring_free(struct keyring *kr);

/* Parse keyring text (not NUL-terminated: len bytes) into kr, adding its
 * entries (on error, those before the bad line stay).  fname names the
 * source in errors.  Returns 0, or -EINVAL with
 * "FILE:LINE: what" in err (and for bad caps the column, too); -ENOMEM. */
int keyring_parse(struct keyring *kr, const char *text, size_t len, const char *fname,
                  char *err, size_t errlen);

/* Read a keyring file into a new keyring (*out, free with keyring_free).
 * *insecure is set (and a message put in warn) when the file is readable
 * by group or others; that is not an error.  Returns 0, -errno of the
 * open/read with a message in err, or keyring_parse's errors. */
int keyring_load(const char *path, struct keyring **out, bool *insecure, char *warn,
                 size_t warnlen, char *err, size_t errlen);

/* Write kr to path atomically with mode 0600.  0 or -errno. */
int keyring_write(const struct keyring *kr, const char *path);
/* Format kr as keyring text.  Returns a malloc'ed NUL-terminated string
 * (the caller wipes and frees it), or NULL with errno = ENOMEM. */
char *keyring_format(const struct keyring *kr);

/* The entry of entity, borrowed until kr changes or is freed; NULL if
 * absent. */
const struct keyring_entry *keyring_find(const struct keyring *kr, const char *entity);
/* Number of entries and the i-th one (borrowed, insertion order). */
size_t keyring_count(const struct keyring *kr);
const struct keyring_entry *keyring_at(const struct keyring *kr, size_t i);

/* Add entity with key, or replace its key when present (caps are kept).
 * 0, -EINVAL for a bad entity name, -ENOMEM. */
int keyring_set_key(struct keyring *kr, const char *entity, const uint8_t key[KEYRING_KEY_LEN]);
/* Set (text != NULL) or clear (NULL) the caps of entity for service "mon"
 * or "osd".  The text is parsed first.  0, -ENOENT (no such entity),
 * -EINVAL (unknown service or bad caps, message in err), -ENOMEM. */
int keyring_set_caps(struct keyring *kr, const char *entity, const char *service,
                     const char *text, char *err, size_t errlen);
/* Remove entity.  0 or -ENOENT. */
int keyring_remove(struct keyring *kr, const char *entity);

/* True if name is a valid entity: TYPE.ID with TYPE client, osd or mon,
 * ID of [A-Za-z0-9_.-] (may be empty only for "mon."). */
bool keyring_entity_valid(const char *name);

/* 32 random bytes from the OpenSSL CSPRNG.  0 or -EIO. */
int keyring_generate_key(uint8_t key[KEYRING_KEY_LEN]);
/* Strict base64 of exactly 32 bytes (44 chars).  0 or -EINVAL. */
int keyring_key_decode(const char *b64, size_t len, uint8_t key[KEYRING_KEY_LEN]);
void keyring_key_encode(const uint8_t key[KEYRING_KEY_LEN],
                        char out[KEYRING_KEY_B64_LEN + 1]);
/* Read a --key-file: the bare base64 key, optional surrounding white
 * space.  *insecure/warn as keyring_load.  0, -errno, or -EINVAL with a
 * message in err. */
int keyring_read_key_file(const char *path, uint8_t key[KEYRING_KEY_LEN],
                          bool *insecure, char *warn, size_t warnlen,
                          char *err, size_t errlen);

#endif
