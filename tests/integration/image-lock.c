/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a libblk driver for the exclusive-lock tests
 * (test-image-lock.sh).  Each mode is one client process:
 *   image-lock POOL IMAGE writer ID COUNT
 *       open read-write (waiting for the lock), then COUNT times: read the
 *       counter in block 0, write the record "ID i" into block 1+counter,
 *       write counter+1; close.  Two writers that ever interleaved would
 *       leave a log whose runs alternate.
 *   image-lock POOL IMAGE check-log COUNT
 *       the log must be COUNT records of one writer, then COUNT of the other.
 *   image-lock POOL IMAGE hold ID SECONDS INTERVAL_MS
 *       open read-write, write "ID seq" into block 0 every INTERVAL_MS until
 *       SECONDS pass (exit 0) or a write fails (print it, exit 3).  Prints
 *       "holding" once the lock is held.
 *   image-lock POOL IMAGE take ID [--exclusive]
 *       open read-write (BLK_IMAGE_EXCLUSIVE: fail at once), write "ID"
 *       into block 0, print "took after N ms", close.  Exit 16 on EBUSY.
 *   image-lock POOL IMAGE read0
 *       print block 0's record.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blk/libblk.h"

#define BS 4096

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define die(code, ...)                                                           \
  do {                                                                           \
    fprintf(stderr, "image-lock: " __VA_ARGS__);                                 \
    fprintf(stderr, ": %s\n", blk_last_error());                                 \
    exit(code);                                                                  \
  } while (0)

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc < 4) {
    fprintf(stderr, "usage: image-lock POOL IMAGE writer|check-log|hold|take|read0 ...\n");
    return 2;
  }
  blk_cluster *c;
  blk_ioctx *io;
  blk_image *img;
  int r;
  char buf[BS];
  if ((r = blk_cluster_create(&c)) < 0 || (r = blk_cluster_connect(c)) < 0)
    die(1, "connect");
  if ((r = blk_ioctx_create(c, argv[1], &io)) < 0)
    die(1, "pool %s", argv[1]);
  const char *mode = argv[3];
  int rc = 0;
  if (!strcmp(mode, "writer") && argc == 6) {
    long count = atol(argv[5]);
    if ((r = blk_image_open(io, argv[2], NULL, 0, &img)) < 0)
      die(r == -EBUSY ? 16 : 1, "writer %s: open", argv[4]);
    for (long i = 0; i < count; i++) {
      uint64_t ctr;
      if (blk_image_read(img, 0, BS, buf) != BS)
        die(1, "writer %s: read counter", argv[4]);
      memcpy(&ctr, buf, 8);
      memset(buf, 0, BS);
      snprintf(buf, BS, "%s %ld", argv[4], i);
      if (blk_image_write(img, (1 + ctr) * BS, BS, buf) != BS)
        die(1, "writer %s: write record", argv[4]);
      memset(buf, 0, BS);
      ctr++;
      memcpy(buf, &ctr, 8);
      if (blk_image_write(img, 0, BS, buf) != BS)
        die(1, "writer %s: write counter", argv[4]);
    }
    if ((r = blk_image_close(img)) < 0)
      die(1, "writer %s: close", argv[4]);
    printf("writer %s: %ld records\n", argv[4], count);
  } else if (!strcmp(mode, "check-log") && argc == 5) {
    long count = atol(argv[4]);
    if ((r = blk_image_open(io, argv[2], NULL, BLK_IMAGE_RDONLY, &img)) < 0)
      die(1, "open");
    uint64_t ctr;
    if (blk_image_read(img, 0, BS, buf) != BS)
      die(1, "read counter");
    memcpy(&ctr, buf, 8);
    if (ctr != (uint64_t)(2 * count)) {
      fprintf(stderr, "image-lock: log has %" PRIu64 " records, want %ld\n", ctr, 2 * count);
      rc = 1;
    }
    char first[64] = "", prev[64] = "";
    int runs = 0;
    for (uint64_t k = 0; k < ctr && !rc; k++) {
      if (blk_image_read(img, (1 + k) * BS, BS, buf) != BS)
        die(1, "read record %" PRIu64, k);
      char who[64];
      long i;
      if (sscanf(buf, "%63s %ld", who, &i) != 2) {
        fprintf(stderr, "image-lock: record %" PRIu64 " is garbage\n", k);
        rc = 1;
        break;
      }
      if (strcmp(who, prev)) {
        runs++;
        snprintf(prev, sizeof prev, "%s", who);
        if (!first[0])
          snprintf(first, sizeof first, "%s", who);
      }
      long want = strcmp(who, first) ? (long)k - count : (long)k;
      if (i != want) {
        fprintf(stderr, "image-lock: record %" PRIu64 " is '%s %ld', want index %ld\n", k, who,
                i, want);
        rc = 1;
      }
    }
    if (!rc && runs != 2) {
      fprintf(stderr, "image-lock: %d runs of writers, want 2 (interleaved)\n", runs);
      rc = 1;
    }
    if (!rc)
      printf("log: %" PRIu64 " records in 2 runs (%s first): writers did not interleave\n", ctr,
             first);
    blk_image_close(img);
  } else if (!strcmp(mode, "hold") && argc == 7) {
    int secs = atoi(argv[5]), interval = atoi(argv[6]);
    if ((r = blk_image_open(io, argv[2], NULL, 0, &img)) < 0)
      die(r == -EBUSY ? 16 : 1, "hold: open");
    printf("holding\n");
    int64_t end = now_ms() + secs * 1000;
    for (long seq = 0; now_ms() < end; seq++) {
      memset(buf, 0, BS);
      snprintf(buf, BS, "%s %ld", argv[4], seq);
      int64_t n = blk_image_write(img, 0, BS, buf);
      if (n != BS) {
        printf("write %ld failed: %" PRId64 " (%s)\n", seq, n, blk_last_error());
        rc = 3;
        break;
      }
      usleep((useconds_t)interval * 1000);
    }
    r = blk_image_close(img);
    if (!rc)
      printf("held until the end\n");
  } else if (!strcmp(mode, "take") && argc >= 5) {
    int flags = argc == 6 && !strcmp(argv[5], "--exclusive") ? BLK_IMAGE_EXCLUSIVE : 0;
    int64_t t0 = now_ms();
    if ((r = blk_image_open(io, argv[2], NULL, flags, &img)) < 0) {
      printf("open failed: %d (%s)\n", r, blk_last_error());
      rc = r == -EBUSY ? 16 : 1;
    } else {
      int64_t took = now_ms() - t0;
      memset(buf, 0, BS);
      snprintf(buf, BS, "%s", argv[4]);
      if (blk_image_write(img, 0, BS, buf) != BS)
        die(1, "take: write");
      if ((r = blk_image_close(img)) < 0)
        die(1, "take: close");
      printf("took after %lld ms\n", (long long)took);
    }
  } else if (!strcmp(mode, "read0")) {
    if ((r = blk_image_open(io, argv[2], NULL, BLK_IMAGE_RDONLY, &img)) < 0)
      die(1, "open");
    if (blk_image_read(img, 0, BS, buf) != BS)
      die(1, "read");
    buf[63] = 0;
    printf("%s\n", buf);
    blk_image_close(img);
  } else {
    fprintf(stderr, "image-lock: bad mode or arguments\n");
    rc = 2;
  }
  blk_ioctx_destroy(io);
  blk_cluster_shutdown(c);
  return rc;
}
