/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: RocksDB key and value encodings of the store's metadata
 * (byte tables in internal.h).  Object keys embed the name followed by a
 * NUL so that a PG's objects list in name order and a name's clones follow
 * it in snap order; chunk keys extend the object key so an object's chunks
 * sit together.  Attributes live inside the onode (they are small and read
 * together); omap entries get their own keys under a per-object omap id,
 * so dropping an object's omap is one range delete.
 */
#include <errno.h>
#include <stdlib.h>

#include "osd/internal.h"

size_t meta_okey(uint8_t *buf, uint8_t type, uint32_t pool, uint32_t pg,
                 const char *name, uint64_t snap)
{
  size_t n = strlen(name);
  buf[0] = type;
  put_be32(buf + 1, pool);
  put_be32(buf + 5, pg);
  memcpy(buf + 9, name, n);
  buf[9 + n] = 0;
  put_be64(buf + 10 + n, snap);
  return 18 + n;
}

size_t meta_ckey(uint8_t *buf, uint32_t pool, uint32_t pg, const char *name,
                 uint64_t snap, uint32_t chunk)
{
  size_t n = meta_okey(buf, KEY_CHUNK, pool, pg, name, snap);
  put_be32(buf + n, chunk);
  return n + 4;
}

int meta_parse_okey(const uint8_t *k, size_t klen, uint32_t *pool,
                    uint32_t *pg, const uint8_t **name, size_t *nlen,
                    uint64_t *snap)
{
  if (klen < 18)
    return -EINVAL;
  const uint8_t *z = memchr(k + 9, 0, klen - 9);
  if (!z || (size_t)(z - k) + 9 > klen)
    return -EINVAL;
  *pool = get_be32(k + 1);
  *pg = get_be32(k + 5);
  *name = k + 9;
  *nlen = (size_t)(z - (k + 9));
  *snap = get_be64(z + 1);
  return 0;
}

void chunk_encode(const struct chunk_map *c, uint8_t *buf)
{
  for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++) {
    put_le64(buf + 12 * i, c->blk[i]);
    put_le32(buf + 12 * i + 8, c->crc[i]);
  }
}

int chunk_decode(const uint8_t *buf, size_t len, struct chunk_map *c)
{
  if (len != CHUNK_VAL_LEN)
    return -EINVAL;
  for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++) {
    c->blk[i] = get_le64(buf + 12 * i);
    c->crc[i] = get_le32(buf + 12 * i + 8);
  }
  return 0;
}

bool chunk_empty(const struct chunk_map *c)
{
  for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++)
    if (c->blk[i])
      return false;
  return true;
}

uint8_t *onode_encode(const struct onode *o, size_t *len)
{
  size_t n = ONODE_HDR;
  for (uint32_t i = 0; i < o->n_attrs; i++)
    n += 6 + strlen(o->attrs[i].name) + o->attrs[i].vlen;
  uint8_t *b = malloc(n);
  if (!b)
    return NULL;
  put_le32(b, 1);
  put_le32(b + 4, 0);
  put_le64(b + 8, o->size);
  put_le64(b + 16, o->omap_id);
  put_le32(b + 24, o->n_attrs);
  uint8_t *p = b + ONODE_HDR;
  for (uint32_t i = 0; i < o->n_attrs; i++) {
    size_t nl = strlen(o->attrs[i].name);
    put_le16(p, (uint16_t)nl);
    memcpy(p + 2, o->attrs[i].name, nl);
    p += 2 + nl;
    put_le32(p, o->attrs[i].vlen);
    if (o->attrs[i].vlen)
      memcpy(p + 4, o->attrs[i].val, o->attrs[i].vlen);
    p += 4 + o->attrs[i].vlen;
  }
  *len = n;
  return b;
}

void onode_clear(struct onode *o)
{
  for (uint32_t i = 0; i < o->n_attrs; i++) {
    free(o->attrs[i].name);
    free(o->attrs[i].val);
  }
  free(o->attrs);
  memset(o, 0, sizeof *o);
}

/* onode_decode, or with keep false onode_decode_hdr: the same checks of
 * the whole encoding, attributes counted in *na_out but not copied; with
 * only set, just the attribute of that name is copied. */
static int onode_parse(const uint8_t *buf, size_t len, struct onode *o, bool keep,
                       const char *only, uint32_t *na_out)
{
  memset(o, 0, sizeof *o);
  if (len < ONODE_HDR || get_le32(buf) != 1)
    return -EINVAL;
  o->size = get_le64(buf + 8);
  o->omap_id = get_le64(buf + 16);
  uint32_t na = get_le32(buf + 24);
  if (na > len / 6)
    return -EINVAL;
  const uint8_t *p = buf + ONODE_HDR, *end = buf + len;
  for (uint32_t i = 0; i < na; i++) {
    if (end - p < 2)
      goto out_bad;
    size_t nl = get_le16(p);
    if ((size_t)(end - p) < 2 + nl + 4)
      goto out_bad;
    char name[STORE_NAME_MAX_INT + 1];
    if (nl == 0 || nl > STORE_NAME_MAX_INT)
      goto out_bad;
    memcpy(name, p + 2, nl);
    name[nl] = 0;
    p += 2 + nl;
    uint32_t vl = get_le32(p);
    p += 4;
    if ((size_t)(end - p) < vl)
      goto out_bad;
    if (keep && (!only || strcmp(name, only) == 0) && onode_set_attr(o, name, p, vl) < 0)
      goto out_bad;
    p += vl;
  }
  if (p != end)
    goto out_bad;
  if (na_out)
    *na_out = na;
  return 0;
out_bad:
  onode_clear(o);
  return -EINVAL;
}

int onode_decode(const uint8_t *buf, size_t len, struct onode *o)
{
  return onode_parse(buf, len, o, true, NULL, NULL);
}

int onode_decode_attr(const uint8_t *buf, size_t len, struct onode *o, const char *name)
{
  return onode_parse(buf, len, o, true, name, NULL);
}

int onode_decode_hdr(const uint8_t *buf, size_t len, struct onode *o, uint32_t *n_attrs)
{
  return onode_parse(buf, len, o, false, NULL, n_attrs);
}

struct onode_attr *onode_find_attr(const struct onode *o, const char *name)
{
  for (uint32_t i = 0; i < o->n_attrs; i++)
    if (strcmp(o->attrs[i].name, name) == 0)
      return &o->attrs[i];
  return NULL;
}

int onode_set_attr(struct onode *o, const char *name, const void *v,
                   size_t len)
{
  uint8_t *nv = malloc(len ? len : 1);
  if (!nv)
    return -ENOMEM;
  if (len)
    memcpy(nv, v, len);
  struct onode_attr *a = onode_find_attr(o, name);
  if (a) {
    free(a->val);
    a->val = nv;
    a->vlen = (uint32_t)len;
    return 0;
  }
  if (o->n_attrs == o->cap_attrs) {
    uint32_t nc = o->cap_attrs ? o->cap_attrs * 2 : 4;
    struct onode_attr *na = realloc(o->attrs, nc * sizeof *na);
    if (!na) {
      free(nv);
      return -ENOMEM;
    }
    o->attrs = na;
    o->cap_attrs = nc;
  }
  char *nn = strdup(name);
  if (!nn) {
    free(nv);
    return -ENOMEM;
  }
  /* keep sorted by name so the encoding is canonical */
  uint32_t i = o->n_attrs;
  while (i > 0 && strcmp(o->attrs[i - 1].name, name) > 0) {
    o->attrs[i] = o->attrs[i - 1];
    i--;
  }
  o->attrs[i].name = nn;
  o->attrs[i].val = nv;
  o->attrs[i].vlen = (uint32_t)len;
  o->n_attrs++;
  return 0;
}

bool onode_rm_attr(struct onode *o, const char *name)
{
  struct onode_attr *a = onode_find_attr(o, name);
  if (!a)
    return false;
  free(a->name);
  free(a->val);
  uint32_t i = (uint32_t)(a - o->attrs);
  memmove(&o->attrs[i], &o->attrs[i + 1],
          (o->n_attrs - i - 1) * sizeof *o->attrs);
  o->n_attrs--;
  return true;
}

int onode_copy(struct onode *dst, const struct onode *src)
{
  memset(dst, 0, sizeof *dst);
  dst->size = src->size;
  dst->omap_id = src->omap_id;
  for (uint32_t i = 0; i < src->n_attrs; i++)
    if (onode_set_attr(dst, src->attrs[i].name, src->attrs[i].val,
                       src->attrs[i].vlen) < 0) {
      onode_clear(dst);
      return -ENOMEM;
    }
  return 0;
}
