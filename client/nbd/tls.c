/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: TLS for NBD_OPT_STARTTLS with OpenSSL, in the two forms
 * hypervisor stacks use:
 *   x509: a directory laid out as QEMU's tls-creds-x509 expects
 *         (ca-cert.pem, server-cert.pem, server-key.pem); with
 *         --tls-verify-peer clients must present a certificate signed by
 *         ca-cert.pem (QEMU's verify-peer=on, libvirt's nbd_tls_x509_verify).
 *   PSK:  a key file as QEMU's tls-creds-psk, libnbd and nbdkit read it:
 *         one "identity:hexkey" per line.  Works for TLS 1.3 (the PSK is
 *         offered with SHA-256, the hash GnuTLS clients use) and TLS 1.2.
 * The connection's socket bufferevent is wrapped in a libevent OpenSSL
 * filter right after the STARTTLS acknowledgement was queued, so the ACK
 * goes out in clear text and everything after it is encrypted.
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/nbd/nbd.h"
#include "common/log.h"

#define SUB "nbd-tls"

/* One PSK identity and key. */
struct psk_entry {
  char *identity;
  unsigned char key[256];
  size_t key_len;
};

static struct psk_entry *psk_table;
static size_t psk_count;

static void psk_table_free(void)
{
  for (size_t i = 0; i < psk_count; i++) {
    OPENSSL_cleanse(psk_table[i].key, sizeof psk_table[i].key);
    free(psk_table[i].identity);
  }
  free(psk_table);
  psk_table = NULL;
  psk_count = 0;
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int psk_load(const char *path, char *err, size_t errlen)
{
  FILE *f = fopen(path, "r");
  char line[1024];
  unsigned lineno = 0;
  if (!f) {
    snprintf(err, errlen, "PSK file %s: %s", path, strerror(errno));
    return -errno;
  }
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (n == 0 || line[0] == '#')
      continue;
    char *colon = strchr(line, ':');
    if (!colon || colon == line) {
      snprintf(err, errlen, "PSK file %s:%u: expected identity:hexkey", path, lineno);
      goto bad;
    }
    *colon = '\0';
    const char *hex = colon + 1;
    size_t hl = strlen(hex);
    if (hl == 0 || hl % 2 || hl / 2 > sizeof psk_table[0].key) {
      snprintf(err, errlen, "PSK file %s:%u: key must be an even number of hex digits", path,
               lineno);
      goto bad;
    }
    struct psk_entry *t = realloc(psk_table, (psk_count + 1) * sizeof *t);
    if (!t) {
      snprintf(err, errlen, "out of memory");
      goto bad;
    }
    psk_table = t;
    struct psk_entry *e = &psk_table[psk_count];
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < hl; i += 2) {
      int a = hexval(hex[i]), b = hexval(hex[i + 1]);
      if (a < 0 || b < 0) {
        snprintf(err, errlen, "PSK file %s:%u: bad hex digit", path, lineno);
        goto bad;
      }
      e->key[i / 2] = (unsigned char)(a * 16 + b);
    }
    e->key_len = hl / 2;
    e->identity = strdup(line);
    if (!e->identity) {
      snprintf(err, errlen, "out of memory");
      goto bad;
    }
    psk_count++;
  }
  fclose(f);
  OPENSSL_cleanse(line, sizeof line);
  if (psk_count == 0) {
    snprintf(err, errlen, "PSK file %s has no keys", path);
    return -EINVAL;
  }
  return 0;
bad:
  fclose(f);
  OPENSSL_cleanse(line, sizeof line);
  psk_table_free();
  return -EINVAL;
}

static const struct psk_entry *psk_find(const char *identity)
{
  for (size_t i = 0; i < psk_count; i++)
    if (identity && !strcmp(psk_table[i].identity, identity))
      return &psk_table[i];
  return NULL;
}

/* TLS 1.2 (and OpenSSL's TLS 1.3 compatibility path) */
static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk_len)
{
  (void)ssl;
  const struct psk_entry *e = psk_find(identity);
  if (!e || e->key_len > max_psk_len) {
    log_info(SUB, "unknown PSK identity '%s'", identity ? identity : "");
    return 0;
  }
  memcpy(psk, e->key, e->key_len);
  return (unsigned int)e->key_len;
}

/* TLS 1.3: build a resumption-style session carrying the external PSK */
static int psk_find_session_cb(SSL *ssl, const unsigned char *identity, size_t identity_len,
                               SSL_SESSION **sess)
{
  char id[512];
  *sess = NULL;
  if (identity_len >= sizeof id)
    return 1; /* unknown: continue without PSK (handshake then fails) */
  memcpy(id, identity, identity_len);
  id[identity_len] = '\0';
  const struct psk_entry *e = psk_find(id);
  if (!e) {
    log_info(SUB, "unknown PSK identity '%s'", id);
    return 1;
  }
  const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, (const unsigned char[]){ 0x13, 0x01 });
  if (!cipher)
    return 0;
  SSL_SESSION *s = SSL_SESSION_new();
  if (!s || !SSL_SESSION_set1_master_key(s, e->key, e->key_len) ||
      !SSL_SESSION_set_cipher(s, cipher) ||
      !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return 0;
  }
  *sess = s;
  return 1;
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
  char buf[256];
  unsigned long e = ERR_get_error();
  ERR_error_string_n(e, buf, sizeof buf);
  snprintf(err, errlen, "%s: %s", what, e ? buf : "failed");
}

SSL_CTX *nbd_tls_new(const struct nbd_config *cfg, char *err, size_t errlen)
{
  char path[4096];
  if (!cfg->tls_certs && !cfg->tls_psk) {
    snprintf(err, errlen, "--tls needs --tls-certs DIR or --tls-psk FILE");
    return NULL;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    ssl_err(err, errlen, "SSL_CTX_new");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  if (cfg->tls_certs) {
    snprintf(path, sizeof path, "%s/server-cert.pem", cfg->tls_certs);
    if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) {
      ssl_err(err, errlen, path);
      goto fail;
    }
    snprintf(path, sizeof path, "%s/server-key.pem", cfg->tls_certs);
    if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      ssl_err(err, errlen, path);
      goto fail;
    }
    snprintf(path, sizeof path, "%s/ca-cert.pem", cfg->tls_certs);
    if (cfg->tls_verify_peer) {
      if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
        ssl_err(err, errlen, path);
        goto fail;
      }
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
      if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
  }
  if (cfg->tls_psk) {
    if (psk_load(cfg->tls_psk, err, errlen) < 0)
      goto fail;
    SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
    SSL_CTX_set_psk_find_session_callback(ctx, psk_find_session_cb);
    if (!cfg->tls_certs) {
      /* PSK only: TLS 1.2 needs PSK cipher suites */
      SSL_CTX_set_cipher_list(ctx, "PSK:DHEPSK:ECDHEPSK:!NULL:!aNULL");
    } else {
      SSL_CTX_set_cipher_list(ctx, "DEFAULT:PSK:DHEPSK:ECDHEPSK:!NULL");
    }
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

void nbd_tls_free(SSL_CTX *ctx)
{
  SSL_CTX_free(ctx);
  psk_table_free();
}

struct bufferevent *nbd_tls_wrap(SSL_CTX *ctx, struct event_base *base,
                                 struct bufferevent *under)
{
  SSL *ssl = SSL_new(ctx);
  if (!ssl) {
    bufferevent_free(under);
    return NULL;
  }
  struct bufferevent *b = bufferevent_openssl_filter_new(
      base, under, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  if (!b) {
    SSL_free(ssl);
    bufferevent_free(under);
    return NULL;
  }
  /* clients that close without close_notify are not an error for us */
  bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
  return b;
}
