/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: formatting, opening (journal replay, allocator rebuild)
 * and closing the store.
 *
 * mkfs invalidates block 0 first, zeroes the journal, creates the RocksDB
 * with the store uuid, "applied" = 0 and "ckpt" = (0, position 0, chain
 * seed), and writes the superblock last: an interrupted mkfs leaves a
 * device that open refuses, never a half store.
 *
 * Replay (synchronous, before the loop is attached) starts at the ckpt
 * position (a batch boundary) and reads the journal a batch at a time: a
 * batch must pass its header crc and hold the next seq, else the one at
 * journal offset 0 is tried (the writer wraps when a batch does not fit).
 * Each record's image is rebuilt from the batch and accepted only if its
 * header is sane, its seq is the next one, it chains to the previous
 * record's crc and its crc matches (records of the first batch up to the
 * checkpointed seq are skipped).  Records after
 * "applied" get their metadata applied (with "applied" in the same batch)
 * once their direct blocks are verified against the crcs in the record; all
 * replayed records get their journaled blocks rewritten.  The first failure
 * ends the replay: a torn or corrupt tail is the end of the journal.  A
 * fresh checkpoint then makes the result stable, so replaying is never
 * needed twice, and the allocator is rebuilt by scanning every chunk map.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "osd/store_int.h"

#define SUB "store"

char *store_default_data_dir(const char *dev_path)
{
  char *s = NULL;
  if (asprintf(&s, "%s.db", dev_path) < 0)
    return NULL;
  return s;
}

static int dev_open(const char *path, bool create, uint64_t want,
                    uint64_t *size)
{
  int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC | (create ? O_CREAT : 0),
                0644);
  if (fd < 0) {
    int e = errno;
    log_err(SUB, "cannot open device %s: %s", path, strerror(e));
    return -e;
  }
  struct stat sb;
  if (fstat(fd, &sb) < 0)
    goto out_errno;
  if (S_ISBLK(sb.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, size) < 0)
      goto out_errno;
  } else if (S_ISREG(sb.st_mode)) {
    if (want && (uint64_t)sb.st_size < want) {
      if (ftruncate(fd, (off_t)want) < 0)
        goto out_errno;
      sb.st_size = (off_t)want;
    }
    *size = (uint64_t)sb.st_size;
  } else {
    log_err(SUB, "%s is neither a block device nor a regular file", path);
    close(fd);
    return -EINVAL;
  }
  return fd;
out_errno: {
  int e = errno;
  log_err(SUB, "device %s: %s", path, strerror(e));
  close(fd);
  return -e;
}
}

static rocksdb_options_t *db_options(bool create)
{
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, create);
  rocksdb_options_set_error_if_exists(o, create);
  rocksdb_options_set_max_background_jobs(o, 2);
  rocksdb_options_set_compression(o, rocksdb_no_compression);
  rocksdb_options_set_keep_log_file_num(o, 2);
  rocksdb_options_set_max_open_files(o, 256);
  /* the hot keys (chunk maps, onodes) are rewritten with values of the
   * same size: update them in the memtable instead of adding a version
   * each time, which keeps the skiplist small (measured, docs/store.md).
   * Iterators then see in-place changes made while they run; that is safe
   * here because every iterator (listing, omap copy, fsck, allocator
   * rebuild) runs on the loop thread, which is also the only writer of
   * the keys they visit (the sync thread writes only "Sckpt"). */
  rocksdb_options_set_allow_concurrent_memtable_write(o, 0);
  rocksdb_options_set_inplace_update_support(o, 1);
  return o;
}

static int db_put(rocksdb_t *db, rocksdb_writeoptions_t *wo, const char *k,
                  size_t kl, const void *v, size_t vl)
{
  char *err = NULL;
  rocksdb_put(db, wo, k, kl, v, vl, &err);
  if (err) {
    log_err(SUB, "rocksdb put: %s", err);
    free(err);
    return -EIO;
  }
  return 0;
}

/* Read or write all of len bytes at off, retrying short transfers and
 * EINTR; a zero-length transfer is -EIO. */
static int prw_all(int fd, void *buf, size_t len, uint64_t off, bool write)
{
  uint8_t *p = buf;
  while (len) {
    ssize_t r = write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      return -EIO;
    p += r;
    off += (uint64_t)r;
    len -= (size_t)r;
  }
  return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
  return prw_all(fd, (void *)buf, len, off, true);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
  return prw_all(fd, buf, len, off, false);
}

int store_mkfs(const char *dev_path, const char *data_dir,
               const struct store_mkfs_opts *opts, const config *cfg)
{
  uint64_t dev_size = 0;
  int r;
  uint8_t *buf = NULL;
  int fd = dev_open(dev_path, opts->device_size != 0, opts->device_size,
                    &dev_size);
  if (fd < 0)
    return fd;
  if (posix_memalign((void **)&buf, STORE_BLOCK, 1 << 20) != 0) {
    r = -ENOMEM;
    goto out_close;
  }
  uint64_t use = opts->device_size ? opts->device_size : dev_size;
  if (use > dev_size) {
    log_err(SUB, "device %s has %llu bytes, fewer than asked (%llu)", dev_path,
            (unsigned long long)dev_size, (unsigned long long)use);
    r = -EINVAL;
    goto out_free;
  }
  use &= ~(uint64_t)(STORE_BLOCK - 1);
  if (!opts->force) {
    struct superblock old;
    char err[160];
    if (dev_size >= STORE_BLOCK &&
        pread_all(fd, buf, STORE_BLOCK, 0) == 0 &&
        sb_decode(buf, 0, &old, err, sizeof err) != -ENODATA) {
      log_err(SUB, "device %s already holds a store (osd.%u); use --force to "
              "overwrite it", dev_path, old.osd_id);
      r = -EEXIST;
      goto out_free;
    }
    char cur[4096];
    snprintf(cur, sizeof cur, "%s/CURRENT", data_dir);
    if (access(cur, F_OK) == 0) {
      log_err(SUB, "data directory %s already holds a RocksDB; use --force to "
              "overwrite it", data_dir);
      r = -EEXIST;
      goto out_free;
    }
  }
  uint64_t jsize = opts->journal_size;
  if (!jsize)
    jsize = cfg ? (uint64_t)config_get_int(cfg, "osd_store_journal_size")
                : 64ull << 20;
  jsize &= ~(uint64_t)(STORE_BLOCK - 1);
  if (jsize > use / 4)
    jsize = (use / 4) & ~(uint64_t)(STORE_BLOCK - 1);
  struct superblock sb = { 0 };
  sb.version = SB_VERSION;
  sb.block_size = STORE_BLOCK;
  sb.osd_id = opts->osd_id;
  sb.device_size = use;
  sb.journal_offset = STORE_BLOCK;
  sb.journal_size = jsize;
  sb.data_offset = (STORE_BLOCK + jsize + 65535) & ~(uint64_t)65535;
  sb.data_size = use > sb.data_offset
                     ? (use - sb.data_offset) & ~(uint64_t)(STORE_BLOCK - 1)
                     : 0;
  if (jsize < 64 * STORE_BLOCK || sb.data_size < 64 * STORE_BLOCK) {
    log_err(SUB, "device %s is too small (%llu bytes) for a store", dev_path,
            (unsigned long long)use);
    r = -EINVAL;
    goto out_free;
  }
  if (getrandom(sb.uuid, sizeof sb.uuid, 0) != sizeof sb.uuid ||
      getrandom(&sb.chain_seed, sizeof sb.chain_seed, 0) !=
          sizeof sb.chain_seed) {
    r = -EIO;
    goto out_free;
  }
  /* invalidate, then zero the journal */
  memset(buf, 0, 1 << 20);
  if ((r = pwrite_all(fd, buf, STORE_BLOCK, 0)) < 0)
    goto out_io;
  for (uint64_t o = 0; o < jsize; o += 1 << 20) {
    size_t n = jsize - o < (1u << 20) ? (size_t)(jsize - o) : 1u << 20;
    if ((r = pwrite_all(fd, buf, n, sb.journal_offset + o)) < 0)
      goto out_io;
  }
  if (fdatasync(fd) < 0) {
    r = -errno;
    goto out_io;
  }
  if (mkdir(data_dir, 0755) < 0 && errno != EEXIST) {
    r = -errno;
    log_err(SUB, "cannot create data directory %s: %s", data_dir,
            strerror(errno));
    goto out_free;
  }
  rocksdb_options_t *dbo = db_options(true);
  char *err = NULL;
  if (opts->force) {
    rocksdb_destroy_db(dbo, data_dir, &err);
    free(err);
    err = NULL;
  }
  rocksdb_t *db = rocksdb_open(dbo, data_dir, &err);
  if (!db) {
    log_err(SUB, "cannot create RocksDB in %s: %s", data_dir, err);
    free(err);
    rocksdb_options_destroy(dbo);
    r = -EIO;
    goto out_free;
  }
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wo, 1);
  uint8_t v[CKPT_LEN], z[8] = { 0 };
  st_ckpt_encode(v, 0, 0, sb.chain_seed);
  r = db_put(db, wo, SYS_UUID, sizeof SYS_UUID - 1, sb.uuid, 16);
  if (!r)
    r = db_put(db, wo, SYS_APPLIED, sizeof SYS_APPLIED - 1, z, 8);
  if (!r)
    r = db_put(db, wo, SYS_CKPT, sizeof SYS_CKPT - 1, v, sizeof v);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_close(db);
  rocksdb_options_destroy(dbo);
  if (r < 0)
    goto out_free;
  sb_encode(&sb, buf);
  if ((r = pwrite_all(fd, buf, STORE_BLOCK, 0)) < 0)
    goto out_io;
  if (fdatasync(fd) < 0) {
    r = -errno;
    goto out_io;
  }
  log_info(SUB, "formatted %s for osd.%u: journal %llu MiB, data area %llu "
           "MiB, metadata in %s", dev_path, sb.osd_id,
           (unsigned long long)(jsize >> 20),
           (unsigned long long)(sb.data_size >> 20), data_dir);
  r = 0;
  goto out_free;
out_io:
  log_err(SUB, "write to %s failed: %s", dev_path, strerror(-r));
out_free:
  free(buf);
out_close:
  close(fd);
  return r;
}

/* ---- open ---- */

static int db_get_u(struct store *st, const char *k, uint8_t *out, size_t n)
{
  char *err = NULL;
  size_t l = 0;
  char *v = rocksdb_get(st->db, st->ro, k, strlen(k), &l, &err);
  if (err) {
    log_err(SUB, "rocksdb get %s: %s", k + 1, err);
    free(err);
    return -EIO;
  }
  if (!v || l != n) {
    free(v);
    return -ENODATA;
  }
  memcpy(out, v, n);
  free(v);
  return 0;
}

struct replay_state {
  uint64_t pos, seq, applied;
  uint32_t prev;
  uint64_t replayed, meta_applied;
};

/* Largest batch the writer makes in a journal of J bytes: at most 4 MiB
 * of records, or one record (at most J/4) and its header area; never more
 * than the journal. */
static uint64_t batch_max(uint64_t J)
{
  uint64_t m = J / 4 + 2 * STORE_BLOCK;
  if (m < (4u << 20) + 2 * STORE_BLOCK)
    m = (4u << 20) + 2 * STORE_BLOCK;
  return m < J ? m : J;
}

/* Read and check the batch header area at pos, then the whole batch, into
 * buf.  0 and *b, or <0 (no batch there, bad crc, I/O error). */
static int replay_read(struct store *st, uint8_t *buf, uint64_t pos,
                       struct jbat_hdr *b)
{
  uint64_t J = st->sb.journal_size;
  uint64_t ph = pos % J;
  uint64_t max = batch_max(J);
  int r = pread_all(st->fd, buf, STORE_BLOCK, st->sb.journal_offset + ph);
  if (r < 0)
    return r;
  if (jbat_parse_hdr(buf, J - ph < max ? J - ph : max, b) < 0) {
    log_debug(SUB, "replay: no batch header at journal offset %llu",
              (unsigned long long)ph);
    return -EINVAL;
  }
  if (b->len > STORE_BLOCK &&
      (r = pread_all(st->fd, buf + STORE_BLOCK, b->len - STORE_BLOCK,
                     st->sb.journal_offset + ph + STORE_BLOCK)) < 0)
    return r;
  r = jbat_verify(buf, b);
  if (r < 0)
    log_debug(SUB, "replay: batch at journal offset %llu fails its check",
              (unsigned long long)ph);
  return r;
}

static bool batch_holds(const struct jbat_hdr *b, uint64_t seq)
{
  return b->first_seq <= seq && seq - b->first_seq < b->n_rec;
}

/* Check and act on one record (image in rec): 0 to go on, 1 to end the
 * journal here, <0 on an error. */
static int replay_record(struct store *st, struct replay_state *rs, bool data,
                         const uint8_t *rec, const struct jrec_hdr *hp,
                         uint8_t *blk)
{
  const struct jrec_hdr h = *hp;
  uint64_t nblocks = st->sb.data_size / STORE_BLOCK;
  int r;
  /* block numbers must lie in the data area */
  bool bad = false;
  for (uint32_t i = 0; i < h.n_data && !bad; i++)
    bad = jrec_data_lba(rec, &h, i) >= nblocks;
  for (uint32_t i = 0; i < h.n_direct && !bad; i++) {
    uint64_t lba;
    uint32_t crc;
    jrec_direct(rec, &h, i, &lba, &crc);
    bad = lba >= nblocks;
    if (!bad && !data && h.seq > rs->applied) {
      /* direct data must have reached the device, or the record never
       * completed */
      if (pread_all(st->fd, blk, STORE_BLOCK,
                    st->sb.data_offset + lba * STORE_BLOCK) < 0 ||
          crc32c(0, blk, STORE_BLOCK) != crc) {
        log_warn(SUB, "journal record %llu: direct block %llu not on the "
                 "device; end of journal", (unsigned long long)h.seq,
                 (unsigned long long)lba);
        bad = true;
      }
    }
  }
  if (bad) {
    log_warn(SUB, "journal record %llu rejected; replay ends here",
             (unsigned long long)h.seq);
    return 1;
  }
  if (!data && h.seq > rs->applied) {
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    st_batch_record(b, rec, &h);
    uint8_t v[8];
    put_le64(v, h.seq);
    rocksdb_writebatch_put(b, SYS_APPLIED, sizeof SYS_APPLIED - 1,
                           (const char *)v, 8);
    char *err = NULL;
    rocksdb_write(st->db, st->wo, b, &err);
    rocksdb_writebatch_destroy(b);
    if (err) {
      log_err(SUB, "replay: rocksdb write: %s", err);
      free(err);
      return -EIO;
    }
    rs->meta_applied++;
  }
  for (uint32_t i = 0; data && i < h.n_data; i++) {
    uint64_t lba = jrec_data_lba(rec, &h, i);
    r = pwrite_all(st->fd, rec + jrec_data_off(&h, i), STORE_BLOCK,
                   st->sb.data_offset + lba * STORE_BLOCK);
    if (r < 0) {
      log_err(SUB, "replay: data write failed: %s", strerror(-r));
      return r;
    }
  }
  return 0;
}

/* One pass over the journal from rs.  Pass 1 (data == false) verifies and
 * applies metadata and finds the end; pass 2 (data == true) rewrites the
 * journaled blocks of the first `limit` records found by pass 1.  Batches
 * are read whole; within one, records up to rs->seq - 1 (checkpointed:
 * the checkpoint may end inside a batch) are skipped, the next must carry
 * seq rs->seq and chain to rs->prev, and the first record that fails its
 * check ends the journal.  rs->pos advances past a batch only when all of
 * its records were taken, so the writer starts over the batch otherwise. */
static int replay(struct store *st, struct replay_state *rs, bool data,
                  uint64_t limit)
{
  uint64_t J = st->sb.journal_size;
  uint8_t *buf, *rec, *blk;
  int r = 0;
  if (posix_memalign((void **)&buf, STORE_BLOCK, batch_max(J)) ||
      posix_memalign((void **)&rec, STORE_BLOCK, J / 4 + STORE_BLOCK) ||
      posix_memalign((void **)&blk, STORE_BLOCK, STORE_BLOCK))
    abort();
  bool end = false;
  while (!end && (!data || rs->replayed < limit)) {
    struct jbat_hdr b;
    uint64_t at = rs->pos;
    /* the batch must hold rs->seq (a stale batch of an earlier lap holds
     * lower ones; the writer's wrap puts the next one at offset 0) */
    int rr = replay_read(st, buf, at, &b);
    if ((rr < 0 || !batch_holds(&b, rs->seq)) && at % J != 0) {
      at += J - at % J;
      rr = replay_read(st, buf, at, &b);
    }
    if (rr < 0 || !batch_holds(&b, rs->seq))
      break;
    struct jbat_iter it;
    struct jbat_rec br;
    jbat_iter_init(&it, buf, &b);
    uint32_t taken = 0;
    while ((rr = jbat_iter_next(&it, &br)) > 0) {
      if (br.seq < rs->seq) {
        taken++;         /* checkpointed already */
        continue;
      }
      if (data && rs->replayed >= limit) {
        end = true;
        break;
      }
      struct jrec_hdr h;
      if (br.rec_len > J / 4 || br.seq != rs->seq) {
        end = true;
        break;
      }
      jbat_rec_image(rec, buf, &br);
      if (jrec_parse_hdr(rec, J / 4, &h) < 0 || h.len != br.rec_len ||
          h.prev_crc != rs->prev || jrec_verify(rec, &h) < 0) {
        log_debug(SUB, "replay: record %llu (batch at journal offset %llu) "
                  "fails its check", (unsigned long long)br.seq,
                  (unsigned long long)(at % J));
        end = true;
        break;
      }
      r = replay_record(st, rs, data, rec, &h, blk);
      if (r != 0) {
        end = true;
        break;
      }
      rs->prev = h.crc;
      rs->seq++;
      rs->replayed++;
      taken++;
    }
    if (r < 0)
      break;
    if (rr < 0)
      end = true;
    if (!end && taken == b.n_rec)
      rs->pos = at + b.len;
    else if (taken)
      rs->pos = at;
  }
  if (r > 0)
    r = 0;
  free(buf);
  free(rec);
  free(blk);
  return r;
}

static int build_alloc(struct store *st)
{
  uint64_t nblocks = st->sb.data_size / STORE_BLOCK;
  st->alloc = alloc_new(nblocks);
  if (!st->alloc)
    return -ENOMEM;
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ro);
  uint8_t pfx = KEY_CHUNK;
  int r = 0;
  for (rocksdb_iter_seek(it, (const char *)&pfx, 1); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (kl < 1 || k[0] != KEY_CHUNK)
      break;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    struct chunk_map cm;
    if (chunk_decode(v, vl, &cm) < 0) {
      log_err(SUB, "corrupt chunk map in metadata; run blk-osd --fsck");
      r = -EUCLEAN;
      break;
    }
    for (unsigned i = 0; i < STORE_CHUNK_BLOCKS; i++) {
      if (!cm.blk[i])
        continue;
      if (cm.blk[i] > nblocks) {
        log_err(SUB, "metadata references block %llu outside the data area; "
                "run blk-osd --fsck", (unsigned long long)(cm.blk[i] - 1));
        r = -EUCLEAN;
        break;
      }
      alloc_incref(st->alloc, cm.blk[i] - 1);
    }
    if (r)
      break;
  }
  rocksdb_iter_destroy(it);
  return r;
}

int store_open(const char *dev_path, const char *data_dir,
               struct event_base *base, const config *cfg, store **out)
{
  struct store *st = calloc(1, sizeof *st);
  uint8_t *buf = NULL;
  int r;
  char err[200];
  if (!st)
    return -ENOMEM;
  st->fd = -1;
  st->efd = -1;
  st->sync_efd = -1;
  pthread_mutex_init(&st->sync_lock, NULL);
  pthread_cond_init(&st->sync_cond, NULL);
  st->base = base;
  st->cfg = cfg;
  st->dev_path = strdup(dev_path);
  if (hmap_init(&st->ovl, 1024) < 0 || hmap_init(&st->pend, 4096) < 0 ||
      hmap_init(&st->objw, 256) < 0 || !st->dev_path) {
    r = -ENOMEM;
    goto out_free;
  }
  uint64_t dev_size;
  st->fd = dev_open(dev_path, false, 0, &dev_size);
  if (st->fd < 0) {
    r = st->fd;
    goto out_free;
  }
  if (posix_memalign((void **)&buf, STORE_BLOCK, STORE_BLOCK)) {
    r = -ENOMEM;
    goto out_free;
  }
  if (dev_size < STORE_BLOCK || (r = pread_all(st->fd, buf, STORE_BLOCK, 0)) < 0) {
    log_err(SUB, "device %s: cannot read the superblock", dev_path);
    r = -EINVAL;
    goto out_free;
  }
  r = sb_decode(buf, dev_size, &st->sb, err, sizeof err);
  if (r < 0) {
    log_err(SUB, "device %s: %s", dev_path, err);
    if (r == -ENODATA)
      r = -EINVAL;
    goto out_free;
  }
  st->deferred_max = cfg ? (uint64_t)config_get_int(cfg, "osd_store_deferred_max")
                         : 4096;
  st->nearfull_pct = cfg ? (uint32_t)config_get_int(cfg, "osd_store_nearfull_ratio")
                         : 85;
  st->ckpt_pct = cfg ? (uint32_t)config_get_int(cfg, "osd_store_ckpt_journal_pct")
                     : 25;
  st->ckpt_interval_ms = cfg ? config_get_int(cfg, "osd_store_ckpt_interval")
                             : 500;
  st->apply_delay_us = cfg ? config_get_int(cfg, "osd_store_apply_delay") * 1000 : 25000;
  st->apply_max = cfg ? (uint32_t)config_get_int(cfg, "osd_store_apply_batch") : 256;
  if (st->apply_max < 1)
    st->apply_max = 1;
  st->jdsync = cfg ? config_get_bool(cfg, "osd_store_journal_dsync") : true;
  int64_t dmq = cfg ? config_get_int(cfg, "osd_store_direct_min_queue") : 0;
  st->direct_min_queue = dmq < 0 ? 0 : dmq > 1000000 ? 1000000 : (uint32_t)dmq;
  if (st->ckpt_pct < 1 || st->ckpt_pct > 90)
    st->ckpt_pct = 25;

  /* metadata */
  st->dbopt = db_options(false);
  /* memtables bounded (RocksDB's default is 64 MiB each, two of them:
   * most of an OSD's RSS after a large write; docs/osd.md "Memory") */
  if (cfg)
    rocksdb_options_set_write_buffer_size(st->dbopt,
                                          (size_t)config_get_int(cfg, "osd_store_db_write_buffer"));
  /* The WAL is written by RocksDB only when a checkpoint asks for it: the
   * journal already holds every unapplied change, and replay re-applies
   * whatever RocksDB lost (a lost tail is a prefix: "Sapplied" tells). */
  rocksdb_options_set_manual_wal_flush(st->dbopt, 1);
  char *e = NULL;
  st->db = rocksdb_open(st->dbopt, data_dir, &e);
  if (!st->db) {
    log_err(SUB, "cannot open metadata (RocksDB) in %s: %s", data_dir, e);
    free(e);
    r = -ENOENT;
    goto out_free;
  }
  st->wo = rocksdb_writeoptions_create();
  st->wo_sync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(st->wo_sync, 1);
  st->ro = rocksdb_readoptions_create();
  uint8_t uuid[16], applied[8], ck[CKPT_LEN];
  if (db_get_u(st, SYS_UUID, uuid, 16) < 0 ||
      memcmp(uuid, st->sb.uuid, 16) != 0) {
    log_err(SUB, "metadata in %s does not belong to the store on %s "
            "(uuid mismatch)", data_dir, dev_path);
    r = -EINVAL;
    goto out_free;
  }
  if (db_get_u(st, SYS_APPLIED, applied, 8) < 0 ||
      db_get_u(st, SYS_CKPT, ck, CKPT_LEN) < 0) {
    log_err(SUB, "metadata in %s lacks the journal state", data_dir);
    r = -EUCLEAN;
    goto out_free;
  }
  struct replay_state rs = { 0 };
  rs.applied = get_le64(applied);
  rs.seq = get_le64(ck) + 1;
  rs.pos = get_le64(ck + 8);
  rs.prev = get_le32(ck + 16);
  log_debug(SUB, "replay from seq %llu at journal position %llu (applied %llu)",
            (unsigned long long)rs.seq, (unsigned long long)rs.pos,
            (unsigned long long)rs.applied);
  struct replay_state rs0 = rs;
  r = replay(st, &rs, false, 0);
  if (r < 0)
    goto out_free;
  /* the metadata of every replayed record is durable before any of their
   * blocks is rewritten (see the checkpoint's step 0 in store.c) */
  if (rs.replayed) {
    char *fe = NULL;
    rocksdb_flush_wal(st->db, 1, &fe);
    if (fe) {
      log_err(SUB, "replay: rocksdb WAL flush: %s", fe);
      free(fe);
      r = -EIO;
      goto out_free;
    }
    struct replay_state rs2 = rs0;
    r = replay(st, &rs2, true, rs.replayed);
    if (r < 0)
      goto out_free;
    if (rs2.replayed != rs.replayed || rs2.pos != rs.pos) {
      log_err(SUB, "replay: the journal changed between passes");
      r = -EIO;
      goto out_free;
    }
  }
  uint64_t last = rs.seq - 1;
  if (rs.applied > last) {
    log_warn(SUB, "journal ends at record %llu but metadata has %llu applied: "
             "records were lost from the journal", (unsigned long long)last,
             (unsigned long long)rs.applied);
    last = rs.applied;
  }
  if (rs.replayed && fdatasync(st->fd) < 0) {
    r = -errno;
    log_err(SUB, "flush of %s failed: %s", dev_path, strerror(errno));
    goto out_free;
  }
  st_ckpt_encode(ck, last, rs.pos, rs.prev);
  if ((r = st_db_put_sync(st, SYS_CKPT, sizeof SYS_CKPT - 1, ck, CKPT_LEN)) < 0)
    goto out_free;
  if (rs.replayed)
    log_info(SUB, "journal replay: %llu records (%llu applied to metadata), "
             "last seq %llu", (unsigned long long)rs.replayed,
             (unsigned long long)rs.meta_applied, (unsigned long long)last);
  st->next_seq = last + 1;
  st->acked_seq = st->meta_seq = st->ckpt_seq = last;
  st->last_crc = rs.prev;
  st->jhead = st->jtail = rs.pos;
  if (getrandom(&st->nonce, sizeof st->nonce, 0) != sizeof st->nonce)
    st->nonce = (uint64_t)time(NULL) ^ (uint64_t)getpid();

  struct timespec ta, tb;
  clock_gettime(CLOCK_MONOTONIC, &ta);
  if ((r = build_alloc(st)) < 0)
    goto out_free;
  clock_gettime(CLOCK_MONOTONIC, &tb);
  double alloc_ms = (double)(tb.tv_sec - ta.tv_sec) * 1e3 +
                    (double)(tb.tv_nsec - ta.tv_nsec) / 1e6;

  /* io_uring + libevent */
  r = io_uring_queue_init(512, &st->ring, 0);
  if (r < 0) {
    log_err(SUB, "io_uring_queue_init: %s", strerror(-r));
    goto out_free;
  }
  st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (st->efd < 0 || io_uring_register_eventfd(&st->ring, st->efd) < 0) {
    r = -errno;
    log_err(SUB, "eventfd: %s", strerror(errno));
    goto out_free;
  }
  st->ev_ring = event_new(base, st->efd, EV_READ | EV_PERSIST, st_on_ring, st);
  st->ev_defer = event_new(base, -1, 0, st_on_defer, st);
  st->ev_timer = event_new(base, -1, EV_PERSIST, st_on_timer, st);
  st->ev_apply = event_new(base, -1, 0, st_on_apply, st);
  st->apply_b = rocksdb_writebatch_create();
  if (!st->ev_ring || !st->ev_defer || !st->ev_timer || !st->ev_apply || !st->apply_b) {
    r = -ENOMEM;
    goto out_free;
  }
  event_add(st->ev_ring, NULL);
  st->sync_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (st->sync_efd < 0 ||
      !(st->ev_sync = event_new(base, st->sync_efd, EV_READ | EV_PERSIST,
                                st_on_sync, st))) {
    r = -ENOMEM;
    goto out_free;
  }
  event_add(st->ev_sync, NULL);
  if ((r = -pthread_create(&st->sync_tid, NULL, st_sync_thread, st)) < 0) {
    log_err(SUB, "cannot start the checkpoint sync thread: %s", strerror(-r));
    goto out_free;
  }
  st->sync_started = true;
  struct timeval tv = { st->ckpt_interval_ms / 1000,
                        (st->ckpt_interval_ms % 1000) * 1000 };
  event_add(st->ev_timer, &tv);
  free(buf);
  log_info(SUB, "opened %s (osd.%u): %llu/%llu blocks used (allocator "
           "rebuilt from the chunk maps in %.1f ms)", dev_path,
           st->sb.osd_id, (unsigned long long)alloc_used(st->alloc),
           (unsigned long long)alloc_nblocks(st->alloc), alloc_ms);
  *out = st;
  return 0;
out_free:
  free(buf);
  st_free_runtime(st);
  return r;
}

void st_free_runtime(struct store *st)
{
  if (st->sync_started) {
    pthread_mutex_lock(&st->sync_lock);
    st->sync_stop = true;
    pthread_cond_signal(&st->sync_cond);
    pthread_mutex_unlock(&st->sync_lock);
    pthread_join(st->sync_tid, NULL);
  }
  if (st->ev_sync)
    event_free(st->ev_sync);
  if (st->sync_efd >= 0)
    close(st->sync_efd);
  pthread_mutex_destroy(&st->sync_lock);
  pthread_cond_destroy(&st->sync_cond);
  if (st->ev_ring)
    event_free(st->ev_ring);
  if (st->ev_defer)
    event_free(st->ev_defer);
  if (st->ev_timer)
    event_free(st->ev_timer);
  if (st->ev_apply)
    event_free(st->ev_apply);
  st_retire_free(st);   /* a failed store's unapplied records */
  if (st->apply_b)
    rocksdb_writebatch_destroy(st->apply_b);
  free(st->apply_clean);
  free(st->apply_kv);
  if (st->efd >= 0) {
    io_uring_queue_exit(&st->ring);
    close(st->efd);
  }
  hmap_foreach(&st->ovl, i, e)
    free(e);
  for (int c = 0; c < OVL_POOL_CLASSES; c++)
    while (st->ovl_pool[c]) {
      struct ovl *o = st->ovl_pool[c];
      st->ovl_pool[c] = (struct ovl *)o->hn.next;
      free(o);
    }
  hmap_foreach(&st->pend, i, e) {
    struct pend *p = (struct pend *)e;
    rb_put(st, p->rb);
    rb_put(st, p->wrb);
    free(p);
  }
  hmap_foreach(&st->objw, i, e)
    free(e);
  hmap_destroy(&st->ovl);
  hmap_destroy(&st->pend);
  hmap_destroy(&st->objw);
  rb_put(st, st->jw.hrb);   /* a batch still in flight (abandoned store) */
  st->jw.hrb = NULL;
  for (int c = 0; c < 16; c++)
    while (st->pool[c]) {
      struct recbuf *rb = st->pool[c];
      st->pool[c] = rb->next_free;
      free(rb->mem);
      free(rb);
    }
  struct prep *p = &st->prep;
  free(p->ou);
  free(p->ru);
  free(p->pb);
  free(p->frees);
  free(p->delr);
  free(p->objs);
  free(p->dcrc);
  for (size_t i = 0; i < p->nareas; i++)
    free(p->areas[i]);
  free(p->areas);
  free(st->jw.iov);
  free(st->jd);
  free(st->rel);
  free(st->ck_ents);
  free(st->ckw);
  alloc_free_all(st->alloc);
  if (st->db)
    rocksdb_close(st->db);
  if (st->dbopt)
    rocksdb_options_destroy(st->dbopt);
  if (st->wo)
    rocksdb_writeoptions_destroy(st->wo);
  if (st->wo_sync)
    rocksdb_writeoptions_destroy(st->wo_sync);
  if (st->ro)
    rocksdb_readoptions_destroy(st->ro);
  if (st->fd >= 0)
    close(st->fd);
  free(st->dev_path);
  free(st);
}

void store_close(store *st)
{
  if (!st)
    return;
  st_drain(st);
  if (!st->failed)
    store_checkpoint_sync(st);
  st_apply(st);
  while (st->ck_busy || st->reading)
    event_base_loop(st->base, EVLOOP_ONCE);
  if (st->jw_count)
    log_info(SUB, "closing %s: %llu journal writes (%.1f records, %.1f KiB, "
             "%.0f us each; %.2f KiB per record), %llu checkpoints (%.0f us "
             "each, %llu blocks written back)",
             st->dev_path, (unsigned long long)st->jw_count,
             (double)st->jw_records / (double)st->jw_count,
             (double)st->jw_bytes / 1024.0 / (double)st->jw_count,
             (double)st->jw_ns / 1000.0 / (double)st->jw_count,
             (double)st->jw_bytes / 1024.0 / (double)st->jw_records,
             (unsigned long long)st->ck_count,
             st->ck_count ? (double)st->ck_ns / 1000.0 / (double)st->ck_count : 0,
             (unsigned long long)st->ck_blocks);
  if (st->small_direct)
    log_info(SUB, "closing %s: %llu transactions wrote small blocks direct "
             "(queue depth >= %u)", st->dev_path,
             (unsigned long long)st->small_direct, st->direct_min_queue);
  if (st->prep_count)
    log_info(SUB, "closing %s: %llu transactions prepared (%.1f us each), "
             "metadata apply %.1f us CPU per journal write (%llu batches of %.1f "
             "records, %.1f us CPU each; %llu of %llu key writes coalesced)",
             st->dev_path,
             (unsigned long long)st->prep_count,
             (double)st->prep_ns / 1000.0 / (double)st->prep_count,
             st->jw_count ? (double)st->apply_ns / 1000.0 / (double)st->jw_count : 0,
             (unsigned long long)st->apply_count,
             st->apply_count ? (double)st->apply_recs / (double)st->apply_count : 0,
             st->apply_count ? (double)st->apply_ns / 1000.0 / (double)st->apply_count : 0,
             (unsigned long long)st->apply_skipped, (unsigned long long)st->apply_ops);
  if (st->rb_gets)
    log_info(SUB, "closing %s: %llu aligned buffers taken, %llu of them newly "
             "allocated", st->dev_path, (unsigned long long)st->rb_gets,
             (unsigned long long)st->rb_allocs);
  st_free_runtime(st);
}

/* ---- test hooks ---- */

int64_t store_debug_block_offset(store *st, const struct store_oid *oid,
                                 uint64_t off)
{
  if (store_checkpoint_sync(st) < 0)
    return -EIO;
  struct chunk_map cm;
  int r = st_load_chunk(st, oid, (uint32_t)(off / STORE_CHUNK_SIZE), &cm);
  if (r < 0)
    return r;
  unsigned i = (unsigned)((off % STORE_CHUNK_SIZE) / STORE_BLOCK);
  if (r == 0 || !cm.blk[i])
    return -ENOENT;
  return (int64_t)(st->sb.data_offset + (cm.blk[i] - 1) * STORE_BLOCK);
}

const char *store_debug_device(store *st)
{
  return st->dev_path;
}

uint64_t store_debug_acked_seq(store *st)
{
  return st->acked_seq;
}

void store_debug_abandon(store *st)
{
  /* I/O in flight owns buffers: let it finish, start nothing new, tell
   * nobody (a killed process acknowledges nothing more) */
  st->failed = true;
  for (struct jtx *j = st->q_head; j; j = j->next)
    j->cb = NULL;
  while (st->jw_busy || st->ck_busy || st->reading)
    event_base_loop(st->base, EVLOOP_ONCE);
  for (struct jtx *j = st->q_head; j; j = j->next)
    while (j->direct_left)
      event_base_loop(st->base, EVLOOP_ONCE);
  struct jtx *lists[2] = { st->q_head, st->blocked_head };
  for (int i = 0; i < 2; i++)
    for (struct jtx *j = lists[i], *nx; j; j = nx) {
      nx = j->next;
      rb_put(st, j->rb);
      store_txn_free(j->txn);
      free(j->dw);
      free(j);
    }
  st->q_head = st->blocked_head = NULL;
  st->q_len = 0;
  for (struct rreq *r = st->waiting, *nx; r; r = nx) {
    nx = r->next;
    rb_put(st, r->bounce);
    free(r->runs);
    free(r->blocks);
    free(r->what);
    free(r);
  }
  st->waiting = NULL;
  for (struct rreq *r = st->ready_head, *nx; r; r = nx) {
    nx = r->next;
    rb_put(st, r->bounce);
    free(r->runs);
    free(r->blocks);
    free(r->what);
    free(r);
  }
  st->ready_head = NULL;
  st_free_runtime(st);
}

int store_debug_journal_last(store *st, uint64_t *dev_off, uint32_t *len)
{
  if (!st->last_rec_len)
    return -ENOENT;
  *dev_off = st->sb.journal_offset + st->last_rec_pos % st->sb.journal_size;
  *len = st->last_rec_len;
  return 0;
}
