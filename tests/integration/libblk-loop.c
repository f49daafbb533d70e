/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: checks libblk's library-thread API (blk_cluster_call,
 * blk_cluster_event_base, blk_cluster_on_loop) and the direct path of aio
 * calls made on the library thread, against a real cluster
 * (test-libblk-loop.sh):
 *   libblk-loop POOL IMAGE
 * Before connect the calls fail with -ENOTCONN / NULL.  Then a function
 * run by blk_cluster_call on the library thread checks that it is there,
 * that a synchronous call fails with -EDEADLK and that a second call it
 * queues runs after it returns; it starts a chain of COUNT QD1 writes,
 * each callback (never inside its aio call) starting the next, then reads
 * every block back and compares; then a timer on libblk's event base
 * fires and runs a flush.  A call queued just before blk_cluster_shutdown
 * runs exactly once.  Exit 0 when all holds, 1 with a message otherwise.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blk/libblk.h"

#define BS 4096
#define COUNT 200

struct st {
  blk_cluster *c;
  blk_image *img;
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
  char err[256];         /* first failure, "" = none */
  bool in_call;          /* inside an aio call / the first function */
  bool first_ran, second_ran, second_after;
  int i;                 /* chain position */
  uint8_t buf[BS];
  struct event *timer;
  int shut_calls;
};

static void fail_st(struct st *s, const char *msg)
{
  if (!s->err[0])
    snprintf(s->err, sizeof s->err, "%s", msg);
}

static void finish(struct st *s)
{
  pthread_mutex_lock(&s->m);
  s->done = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->m);
}

static void fill(uint8_t *b, int i)
{
  for (int k = 0; k < BS; k++)
    b[k] = (uint8_t)(i * 7 + k);
}

static void flush_cb(void *arg, int64_t r)
{
  struct st *s = arg;
  if (r != 0)
    fail_st(s, "flush failed");
  if (s->in_call)
    fail_st(s, "flush callback ran inside the aio call");
  finish(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct st *s = arg;
  (void)fd;
  (void)what;
  if (!blk_cluster_on_loop(s->c))
    fail_st(s, "timer on the event base ran off the library thread");
  event_free(s->timer);
  s->timer = NULL;
  s->in_call = true;
  if (blk_image_aio_flush(s->img, flush_cb, s) < 0) {
    fail_st(s, "aio flush from a timer refused");
    s->in_call = false;
    finish(s);
    return;
  }
  s->in_call = false;
}

static void step(struct st *s);

static void io_cb(void *arg, int64_t r)
{
  struct st *s = arg;
  if (s->in_call)
    fail_st(s, "callback ran inside its aio call");
  if (!blk_cluster_on_loop(s->c))
    fail_st(s, "callback ran off the library thread");
  if (r != BS) {
    fail_st(s, "write/read failed");
    finish(s);
    return;
  }
  if (s->i >= COUNT) {
    uint8_t want[BS];
    fill(want, s->i - COUNT);
    if (memcmp(want, s->buf, BS))
      fail_st(s, "read back differs from what was written");
  }
  s->i++;
  step(s);
}

/* Write blocks 0..COUNT-1 one at a time, then read them back. */
static void step(struct st *s)
{
  int r;
  if (s->i == 2 * COUNT) {
    struct event_base *b = blk_cluster_event_base(s->c);
    struct timeval tv = { 0, 10 * 1000 };
    s->timer = b ? evtimer_new(b, timer_cb, s) : NULL;
    if (!s->timer || evtimer_add(s->timer, &tv) < 0) {
      fail_st(s, "cannot add a timer to libblk's event base");
      finish(s);
    }
    return;
  }
  s->in_call = true;
  if (s->i < COUNT) {
    fill(s->buf, s->i);
    r = blk_image_aio_write(s->img, (uint64_t)s->i * BS, BS, s->buf, 0, io_cb, s);
  } else {
    r = blk_image_aio_read(s->img, (uint64_t)(s->i - COUNT) * BS, BS, s->buf, io_cb, s);
  }
  s->in_call = false;
  if (r < 0) {
    fail_st(s, "aio call on the library thread refused");
    finish(s);
  }
}

static void second_fn(void *arg)
{
  struct st *s = arg;
  s->second_ran = true;
  s->second_after = !s->in_call && s->first_ran;
  step(s);
}

static void first_fn(void *arg)
{
  struct st *s = arg;
  s->in_call = true;
  s->first_ran = true;
  if (!blk_cluster_on_loop(s->c))
    fail_st(s, "blk_cluster_call ran off the library thread");
  uint8_t b[BS];
  if (blk_image_read(s->img, 0, BS, b) != -EDEADLK)
    fail_st(s, "a synchronous call on the library thread did not fail with EDEADLK");
  if (blk_cluster_call(s->c, second_fn, s) < 0) {
    fail_st(s, "blk_cluster_call on the library thread refused");
    finish(s);
  }
  s->in_call = false;
}

static void count_fn(void *arg)
{
  ((struct st *)arg)->shut_calls++;
}

static int die(const char *what, int r)
{
  fprintf(stderr, "libblk-loop: %s: %s (%s)\n", what, strerror(-r), blk_last_error());
  return 1;
}

int main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: libblk-loop POOL IMAGE\n");
    return 2;
  }
  static struct st s;
  pthread_mutex_init(&s.m, NULL);
  pthread_cond_init(&s.cv, NULL);
  blk_cluster *c;
  blk_ioctx *io;
  int r = blk_cluster_create(&c);
  if (r < 0)
    return die("cluster create", r);
  s.c = c;
  if (blk_cluster_event_base(c) != NULL || errno != ENOTCONN) {
    fprintf(stderr, "libblk-loop: event base before connect\n");
    return 1;
  }
  if ((r = blk_cluster_call(c, count_fn, &s)) != -ENOTCONN) {
    fprintf(stderr, "libblk-loop: blk_cluster_call before connect gave %d\n", r);
    return 1;
  }
  if ((r = blk_cluster_connect(c)) < 0)
    return die("connect", r);
  if (blk_cluster_on_loop(c)) {
    fprintf(stderr, "libblk-loop: main thread claims to be the library thread\n");
    return 1;
  }
  if ((r = blk_ioctx_create(c, argv[1], &io)) < 0)
    return die("ioctx", r);
  if ((r = blk_image_open(io, argv[2], NULL, 0, &s.img)) < 0)
    return die("open", r);
  if ((r = blk_cluster_call(c, first_fn, &s)) < 0)
    return die("blk_cluster_call", r);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 60;
  pthread_mutex_lock(&s.m);
  while (!s.done && pthread_cond_timedwait(&s.cv, &s.m, &dl) == 0)
    ;
  bool done = s.done;
  pthread_mutex_unlock(&s.m);
  if (!done) {
    fprintf(stderr, "libblk-loop: the chain did not finish within 60 s (at %d)\n", s.i);
    return 1;
  }
  if (!s.second_ran || !s.second_after)
    fail_st(&s, "a call queued on the library thread ran inside its caller");
  if (s.i != 2 * COUNT)
    fail_st(&s, "the chain stopped early");
  if ((r = blk_image_close(s.img)) < 0)
    return die("close", r);
  blk_ioctx_destroy(io);
  if ((r = blk_cluster_call(c, count_fn, &s)) < 0)
    return die("blk_cluster_call before shutdown", r);
  blk_cluster_shutdown(c);
  if (s.shut_calls != 1)
    fail_st(&s, "a call queued before shutdown did not run exactly once");
  if (s.err[0]) {
    fprintf(stderr, "libblk-loop: %s\n", s.err);
    return 1;
  }
  printf("ok: %d QD1 writes and reads chained on the library thread\n", COUNT);
  return 0;
}
