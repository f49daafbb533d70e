/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the monitor's durable state in RocksDB.  Every write is a
 * synced WriteBatch (fsync of the WAL before return), because Raft acts on
 * what it believes is persisted.  Keys:
 *   "ident"          MonIdent text "fsid\nname\nrank"
 *   "raft/state"     16 bytes: term (u64 LE), vote (u32 LE), 0 (u32)
 *   "log/" + index   a RaftEntry protobuf; index as 8 bytes big-endian so
 *                    that keys sort in log order
 *   "snap/meta"      16 bytes: index (u64 LE), term (u64 LE)
 *   "snap/data"      MonSnapshot protobuf
 * Saving entries first deletes every stored entry from the first new index
 * on (a conflicting suffix), in the same batch.
 */
#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/endian.h"
#include "common/log.h"
#include "mon/mon.h"

struct mon_store {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_writeoptions_t *wsync;
  rocksdb_readoptions_t *ropts;
};

static void log_key(uint64_t index, char out[12])
{
  memcpy(out, "log/", 4);
  put_be64((uint8_t *)out + 4, index);
}

static uint64_t log_key_index(const char *k)
{
  return get_be64((const uint8_t *)k + 4);
}

static int open_db(const char *dir, bool create, mon_store **out)
{
  mon_store *s = calloc(1, sizeof *s);
  char *err = NULL;
  if (!s)
    return -ENOMEM;
  s->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(s->opts, create);
  rocksdb_options_set_error_if_exists(s->opts, create);
  rocksdb_options_set_max_open_files(s->opts, 64);
  rocksdb_options_set_keep_log_file_num(s->opts, 2);
  rocksdb_options_set_info_log_level(s->opts, 2 /* WARN */);
  s->db = rocksdb_open(s->opts, dir, &err);
  if (err) {
    log_err("store", "cannot open monitor store %s: %s", dir, err);
    int r = strstr(err, "exists") ? -EEXIST : strstr(err, "does not exist") ? -ENOENT : -EIO;
    free(err);
    rocksdb_options_destroy(s->opts);
    free(s);
    return r;
  }
  s->wsync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wsync, 1);
  s->ropts = rocksdb_readoptions_create();
  *out = s;
  return 0;
}

void mon_store_close(mon_store *s)
{
  if (!s)
    return;
  rocksdb_close(s->db);
  rocksdb_writeoptions_destroy(s->wsync);
  rocksdb_readoptions_destroy(s->ropts);
  rocksdb_options_destroy(s->opts);
  free(s);
}

static int write_batch(mon_store *s, rocksdb_writebatch_t *b)
{
  char *err = NULL;
  rocksdb_write(s->db, s->wsync, b, &err);
  rocksdb_writebatch_destroy(b);
  if (err) {
    log_err("store", "monitor store write failed: %s", err);
    free(err);
    return -EIO;
  }
  return 0;
}

int mon_store_mkfs(const char *dir, const struct mon_ident *id)
{
  mon_store *s;
  mkdir(dir, 0700);
  int r = open_db(dir, true, &s);
  if (r < 0)
    return r;
  char txt[256];
  int n = snprintf(txt, sizeof txt, "%s\n%s\n%u", id->fsid, id->name, id->rank);
  rocksdb_writebatch_t *b = rocksdb_writebatch_create();
  rocksdb_writebatch_put(b, "ident", 5, txt, (size_t)n);
  uint8_t st[16] = { 0 };
  rocksdb_writebatch_put(b, "raft/state", 10, (const char *)st, sizeof st);
  r = write_batch(s, b);
  mon_store_close(s);
  return r;
}

int mon_store_open(const char *dir, mon_store **out)
{
  return open_db(dir, false, out);
}

int mon_store_ident(mon_store *s, struct mon_ident *id)
{
  char *err = NULL;
  size_t len;
  char *v = rocksdb_get(s->db, s->ropts, "ident", 5, &len, &err);
  if (err || !v) {
    free(err);
    free(v);
    return -ENOENT;
  }
  char txt[256];
  if (len >= sizeof txt)
    len = sizeof txt - 1;
  memcpy(txt, v, len);
  txt[len] = 0;
  free(v);
  memset(id, 0, sizeof *id);
  char *nl1 = strchr(txt, '\n');
  char *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
  if (!nl2 || (size_t)(nl1 - txt) >= sizeof id->fsid ||
      (size_t)(nl2 - nl1 - 1) >= sizeof id->name)
    return -EINVAL;
  memcpy(id->fsid, txt, (size_t)(nl1 - txt));
  memcpy(id->name, nl1 + 1, (size_t)(nl2 - nl1 - 1));
  id->rank = (uint32_t)strtoul(nl2 + 1, NULL, 10);
  return 0;
}

int mon_store_save_state(mon_store *s, uint64_t term, uint32_t vote)
{
  uint8_t st[16] = { 0 };
  put_le64(st, term);
  put_le64(st + 8, vote);
  rocksdb_writebatch_t *b = rocksdb_writebatch_create();
  rocksdb_writebatch_put(b, "raft/state", 10, (const char *)st, sizeof st);
  return write_batch(s, b);
}

int mon_store_save_entries(mon_store *s, const struct raft_entry *e, size_t n)
{
  if (n == 0)
    return 0;
  rocksdb_writebatch_t *b = rocksdb_writebatch_create();
  char from[12], to[12];
  log_key(e[0].index, from);
  log_key(UINT64_MAX, to);
  rocksdb_writebatch_delete_range(b, from, sizeof from, to, sizeof to);
  for (size_t i = 0; i < n; i++) {
    Blk__RaftEntry pe = BLK__RAFT_ENTRY__INIT;
    pe.term = e[i].term;
    pe.index = e[i].index;
    pe.type = e[i].type;
    pe.data.data = (uint8_t *)e[i].data;
    pe.data.len = e[i].len;
    size_t len = blk__raft_entry__get_packed_size(&pe);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
      rocksdb_writebatch_destroy(b);
      return -ENOMEM;
    }
    blk__raft_entry__pack(&pe, buf);
    char k[12];
    log_key(e[i].index, k);
    rocksdb_writebatch_put(b, k, sizeof k, (const char *)buf, len);
    free(buf);
  }
  return write_batch(s, b);
}

int mon_store_save_snapshot(mon_store *s, uint64_t index, uint64_t term,
                            const void *data, size_t len, bool drop_all_log)
{
  uint8_t meta[16];
  put_le64(meta, index);
  put_le64(meta + 8, term);
  rocksdb_writebatch_t *b = rocksdb_writebatch_create();
  rocksdb_writebatch_put(b, "snap/meta", 9, (const char *)meta, sizeof meta);
  rocksdb_writebatch_put(b, "snap/data", 9, data, len);
  char from[12], to[12];
  log_key(0, from);
  log_key(drop_all_log ? UINT64_MAX : index + 1, to);
  rocksdb_writebatch_delete_range(b, from, sizeof from, to, sizeof to);
  return write_batch(s, b);
}

int mon_store_load(mon_store *s, struct mon_store_loaded *out)
{
  char *err = NULL;
  size_t len;
  memset(out, 0, sizeof *out);
  char *v = rocksdb_get(s->db, s->ropts, "raft/state", 10, &len, &err);
  if (err) {
    free(err);
    return -EIO;
  }
  if (v && len == 16) {
    out->p.term = get_le64((uint8_t *)v);
    out->p.vote = (uint32_t)get_le64((uint8_t *)v + 8);
  }
  free(v);
  v = rocksdb_get(s->db, s->ropts, "snap/meta", 9, &len, &err);
  if (!err && v && len == 16) {
    out->p.snap_index = get_le64((uint8_t *)v);
    out->p.snap_term = get_le64((uint8_t *)v + 8);
    free(v);
    v = rocksdb_get(s->db, s->ropts, "snap/data", 9, &len, &err);
    if (err || !v) {
      free(err);
      free(v);
      log_err("store", "snapshot metadata without data: store is damaged");
      return -EIO;
    }
    out->snap = v;
    out->snap_len = len;
  } else {
    free(v);
    free(err);
    err = NULL;
  }
  /* entries after the snapshot, in order; they must be contiguous */
  size_t cap = 0, n = 0;
  rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
  char k[12];
  log_key(out->p.snap_index + 1, k);
  int r = 0;
  for (rocksdb_iter_seek(it, k, sizeof k); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl, vl;
    const char *key = rocksdb_iter_key(it, &kl);
    if (kl != 12 || memcmp(key, "log/", 4) != 0)
      break;
    const char *val = rocksdb_iter_value(it, &vl);
    Blk__RaftEntry *pe = blk__raft_entry__unpack(NULL, vl, (const uint8_t *)val);
    uint64_t idx = log_key_index(key);
    uint64_t want = out->p.snap_index + 1 + n;
    if (!pe || pe->index != idx || idx != want) {
      if (pe)
        blk__raft_entry__free_unpacked(pe, NULL);
      log_err("store", "raft log damaged at index %llu", (unsigned long long)idx);
      r = -EIO;
      break;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      struct raft_entry *ne = realloc(out->entries, cap * sizeof *ne);
      if (!ne) {
        blk__raft_entry__free_unpacked(pe, NULL);
        r = -ENOMEM;
        break;
      }
      out->entries = ne;
    }
    void *data = malloc(pe->data.len ? pe->data.len : 1);
    if (!data) {
      blk__raft_entry__free_unpacked(pe, NULL);
      r = -ENOMEM;
      break;
    }
    if (pe->data.len)
      memcpy(data, pe->data.data, pe->data.len);
    out->entries[n] = (struct raft_entry){ .term = pe->term, .index = pe->index,
                                           .type = pe->type,
                                           .len = (uint32_t)pe->data.len, .data = data };
    n++;
    blk__raft_entry__free_unpacked(pe, NULL);
  }
  rocksdb_iter_destroy(it);
  out->p.entries = out->entries;
  out->p.n_entries = n;
  if (r < 0)
    mon_store_loaded_free(out);
  return r;
}

void mon_store_loaded_free(struct mon_store_loaded *l)
{
  for (size_t i = 0; i < l->p.n_entries; i++)
    free((void *)l->entries[i].data);
  free(l->entries);
  free(l->snap);
  memset(l, 0, sizeof *l);
}
