/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the cluster handle and the library thread.  Before
 * connect, the handle is only configuration (config files read and
 * options set are remembered, so that changing "name" rebuilds the config
 * for the new entity's sections).  Connect builds the event base, the
 * monitor client and the objecter on the caller's thread, runs the loop
 * there until the first map arrives, then hands the loop to a library
 * thread.  From then on other threads talk to the loop only through the
 * task queue: a mutex-protected singly linked list plus an eventfd whose
 * read event drains the list.  Work submitted on the library thread
 * itself (aio calls from callbacks, blk_cluster_call from a function the
 * loop runs) skips both: it goes on a loop-local list and a libevent
 * event without fd is activated in place (event_active), so it runs later
 * in the same loop pass, which keeps the rule that a callback never runs
 * inside the call that started it.  An application that serves its own
 * sockets on the library thread (blk-nbd, through blk_cluster_event_base)
 * thus sends a request and gets its completion without a thread switch.
 * Last-error messages are per thread
 * (__thread buffer); the library thread sets its own before invoking a
 * callback, and synchronous calls copy the message of their completion
 * into the caller's buffer.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proto/map.pb-c.h"

static __thread char tls_err[LB_MSG];
static __thread blk_cluster *tls_loop;  /* the cluster whose loop this thread runs */

int lb_err(int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_err, sizeof tls_err, fmt, ap);
  va_end(ap);
  return err;
}

void lb_set_msg(const char *msg)
{
  snprintf(tls_err, sizeof tls_err, "%s", msg ? msg : "");
}

void lb_clear_err(void)
{
  tls_err[0] = 0;
}

bool lb_on_loop(void)
{
  return tls_loop != NULL;
}

LB_API const char *blk_last_error(void)
{
  return tls_err;
}

/* ---- synchronous completions ---- */

void lb_sync_init(struct lb_sync *s)
{
  pthread_mutex_init(&s->m, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->done = false;
  s->r = 0;
  s->msg[0] = 0;
}

void lb_sync_destroy(struct lb_sync *s)
{
  pthread_mutex_destroy(&s->m);
  pthread_cond_destroy(&s->cv);
}

void lb_sync_done(struct lb_sync *s, int64_t r, const char *msg)
{
  pthread_mutex_lock(&s->m);
  s->r = r;
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
  s->done = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->m);
}

int64_t lb_sync_wait(struct lb_sync *s)
{
  pthread_mutex_lock(&s->m);
  while (!s->done)
    pthread_cond_wait(&s->cv, &s->m);
  pthread_mutex_unlock(&s->m);
  if (s->r < 0)
    lb_set_msg(s->msg[0] ? s->msg : strerror((int)-s->r));
  return s->r;
}

/* ---- task queue ---- */

int lb_submit(blk_cluster *c, struct lb_task *t)
{
  t->next = NULL;
  if (tls_loop == c) {
    /* the direct path: c->stopping is written by the shutting-down thread */
    pthread_mutex_lock(&c->q_lock);
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->q_lock);
    if (stopping)
      return -ESHUTDOWN;
    if (c->l_tail)
      c->l_tail->next = t;
    else
      c->l_head = t;
    c->l_tail = t;
    event_active(c->local_ev, EV_READ, 0);  /* no-op while already active */
    return 0;
  }
  pthread_mutex_lock(&c->q_lock);
  if (c->stopping || !c->connected) {
    pthread_mutex_unlock(&c->q_lock);
    return c->connected ? -ESHUTDOWN : -ENOTCONN;
  }
  bool was_empty = c->q_head == NULL;
  if (c->q_tail)
    c->q_tail->next = t;
  else
    c->q_head = t;
  c->q_tail = t;
  pthread_mutex_unlock(&c->q_lock);
  if (was_empty) {
    uint64_t one = 1;
    ssize_t w = write(c->efd, &one, sizeof one);
    (void)w;   /* a full counter still wakes the loop */
  }
  return 0;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
  blk_cluster *c = arg;
  uint64_t v;
  (void)what;
  ssize_t r = read(fd, &v, sizeof v);
  (void)r;
  for (;;) {
    pthread_mutex_lock(&c->q_lock);
    struct lb_task *t = c->q_head;
    c->q_head = c->q_tail = NULL;
    pthread_mutex_unlock(&c->q_lock);
    if (!t)
      break;
    while (t) {
      struct lb_task *next = t->next;
      t->fn(t);
      t = next;
    }
  }
}

/* Run the tasks submitted on the library thread (loop-local list); tasks
 * they submit in turn re-activate the event and run in the same pass. */
static void run_local(blk_cluster *c)
{
  struct lb_task *t = c->l_head;
  c->l_head = c->l_tail = NULL;
  while (t) {
    struct lb_task *next = t->next;
    t->fn(t);
    t = next;
  }
}

static void on_local(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  run_local(arg);
}

static void *loop_main(void *arg)
{
  blk_cluster *c = arg;
  tls_loop = c;
  event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY);
  return NULL;
}

int lb_objecter_op(blk_ioctx *io, const struct objecter_req *req, objecter_cb cb, void *arg)
{
  struct objecter_req r = *req;
  r.pool = io->pool;
  r.osd = -1;
  return objecter_op(io->c->obj, &r, cb, arg);
}

/* ---- configuration ---- */

static int entity_split(const char *entity, char *type, size_t tn, char *id, size_t in)
{
  const char *dot = strchr(entity, '.');
  if (!dot || dot == entity || !dot[1] || (size_t)(dot - entity) >= tn || strlen(dot + 1) >= in)
    return -EINVAL;
  memcpy(type, entity, (size_t)(dot - entity));
  type[dot - entity] = 0;
  strcpy(id, dot + 1);
  return 0;
}

/* Rebuild c->cfg for c->entity from the remembered files and overrides. */
static int cfg_rebuild(blk_cluster *c)
{
  char type[32], id[64];
  if (entity_split(c->entity, type, sizeof type, id, sizeof id) < 0)
    return lb_err(-EINVAL, "bad entity name '%s' (TYPE.ID, e.g. client.admin)", c->entity);
  config *cfg = config_new(type, id);
  if (!cfg)
    return lb_err(-ENOMEM, "out of memory");
  for (size_t i = 0; i < c->n_conf_paths; i++) {
    char *err = NULL;
    int r = config_load_file(cfg, c->conf_paths[i], &err);
    if (r < 0) {
      lb_err(r, "%s: %s", c->conf_paths[i], err ? err : strerror(-r));
      free(err);
      config_free(cfg);
      return r;
    }
  }
  for (size_t i = 0; i < c->n_ovr; i++)
    config_set(cfg, c->ovr[i].opt, c->ovr[i].val);   /* validated when set */
  config_free(c->cfg);
  c->cfg = cfg;
  return 0;
}

LB_API int blk_cluster_create(blk_cluster **out)
{
  lb_clear_err();
  if (!out)
    return lb_err(-EINVAL, "blk_cluster_create: out is NULL");
  blk_cluster *c = calloc(1, sizeof *c);
  if (!c)
    return lb_err(-ENOMEM, "out of memory");
  pthread_mutex_init(&c->q_lock, NULL);
  pthread_mutex_init(&c->reg_lock, NULL);
  c->efd = -1;
  /* a library logs only warnings and errors (stderr) unless told with
   * blk_cluster_conf_set(c, "log_level", ...) */
  log_init("libblk", LOG_WARN);
  snprintf(c->entity, sizeof c->entity, "client.admin");
  int r = cfg_rebuild(c);
  if (r < 0)
    goto out_free;
  const char *env = getenv("BLK_CONF");
  if (env && *env) {
    r = blk_cluster_conf_read(c, env);
    if (r < 0)
      goto out_free;
  }
  *out = c;
  return 0;
out_free:
  config_free(c->cfg);
  pthread_mutex_destroy(&c->q_lock);
  pthread_mutex_destroy(&c->reg_lock);
  free(c);
  return r;
}

LB_API int blk_cluster_conf_read(blk_cluster *c, const char *path)
{
  lb_clear_err();
  if (!c)
    return lb_err(-EINVAL, "cluster handle is NULL");
  if (c->connected)
    return lb_err(-EISCONN, "config must be read before connecting");
  if (!path) {
    const char *env = getenv("BLK_CONF");
    if (env && *env)
      path = env;
    else if (access("./run/blk.conf", R_OK) == 0)
      path = "./run/blk.conf";
    else
      path = "/etc/blk/blk.conf";
  }
  char *err = NULL;
  int r = config_load_file(c->cfg, path, &err);
  if (r < 0) {
    lb_err(r, "%s: %s", path, err ? err : r == -ENOENT ? "no such file" : strerror(-r));
    free(err);
    return r;
  }
  char **p = realloc(c->conf_paths, (c->n_conf_paths + 1) * sizeof *p);
  if (!p)
    return lb_err(-ENOMEM, "out of memory");
  c->conf_paths = p;
  if (!(p[c->n_conf_paths] = strdup(path)))
    return lb_err(-ENOMEM, "out of memory");
  c->n_conf_paths++;
  /* the overrides win over the file */
  for (size_t i = 0; i < c->n_ovr; i++)
    config_set(c->cfg, c->ovr[i].opt, c->ovr[i].val);
  return 0;
}

LB_API int blk_cluster_conf_set(blk_cluster *c, const char *opt, const char *val)
{
  lb_clear_err();
  if (!c || !opt || !val)
    return lb_err(-EINVAL, "blk_cluster_conf_set: NULL argument");
  if (c->connected)
    return lb_err(-EISCONN, "options must be set before connecting");
  if (!strcmp(opt, "name") || !strcmp(opt, "id")) {
    char ent[80], type[32], id[64];
    snprintf(ent, sizeof ent, "%s%s", !strcmp(opt, "id") || !strchr(val, '.') ? "client." : "",
             val);
    if (entity_split(ent, type, sizeof type, id, sizeof id) < 0)
      return lb_err(-EINVAL, "bad entity name '%s' (TYPE.ID, e.g. client.admin)", val);
    char old[80];
    snprintf(old, sizeof old, "%s", c->entity);
    snprintf(c->entity, sizeof c->entity, "%s", ent);
    int r = cfg_rebuild(c);
    if (r < 0) {
      snprintf(c->entity, sizeof c->entity, "%s", old);
      return r;
    }
    /* the monitor client reads the entity from the option "name" (when
     * this build's option table has it) */
    opt = "name";
    val = c->entity;
    if (config_set(c->cfg, opt, val) < 0)
      return 0;
    goto remember;
  }
  int r = config_set(c->cfg, opt, val);
  if (r == -ENOENT)
    return lb_err(r, "unknown option '%s' (see docs/configuration.md)", opt);
  if (r < 0)
    return lb_err(r, "bad value '%s' for option '%s'", val, opt);
remember:;
  struct lb_override *o = realloc(c->ovr, (c->n_ovr + 1) * sizeof *o);
  if (!o)
    return lb_err(-ENOMEM, "out of memory");
  c->ovr = o;
  o[c->n_ovr].opt = strdup(opt);
  o[c->n_ovr].val = strdup(val);
  if (!o[c->n_ovr].opt || !o[c->n_ovr].val) {
    free(o[c->n_ovr].opt);
    free(o[c->n_ovr].val);
    return lb_err(-ENOMEM, "out of memory");
  }
  c->n_ovr++;
  return 0;
}

LB_API int blk_cluster_connect(blk_cluster *c)
{
  char err[512];
  lb_clear_err();
  if (!c)
    return lb_err(-EINVAL, "cluster handle is NULL");
  if (c->connected || c->base)
    return lb_err(-EISCONN, "already connected");
  for (size_t i = 0; i < c->n_ovr; i++) {
    enum log_level lvl;
    if (!strcmp(c->ovr[i].opt, "log_level") && log_parse_level(c->ovr[i].val, &lvl) == 0)
      log_set_level(lvl);
  }
  c->base = event_base_new();
  if (!c->base)
    return lb_err(-ENOMEM, "cannot create the event loop");
  int r;
  c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (c->efd < 0) {
    r = lb_err(-errno, "eventfd: %s", strerror(errno));
    goto out_base;
  }
  c->wake_ev = event_new(c->base, c->efd, EV_READ | EV_PERSIST, on_wake, c);
  if (!c->wake_ev || event_add(c->wake_ev, NULL) < 0) {
    r = lb_err(-ENOMEM, "cannot create the wake event");
    goto out_efd;
  }
  c->local_ev = event_new(c->base, -1, 0, on_local, c);
  if (!c->local_ev) {
    r = lb_err(-ENOMEM, "cannot create the local task event");
    goto out_ev;
  }
  c->mc = monc_new(c->base, c->cfg, err, sizeof err);
  if (!c->mc) {
    r = lb_err(-EINVAL, "%s", err);
    goto out_ev;
  }
  c->obj = objecter_new(c->base, c->mc, c->cfg);
  if (!c->obj) {
    r = lb_err(-ENOMEM, "cannot create the object client");
    goto out_monc;
  }
  int tmo = (int)config_get_int(c->cfg, "client_timeout");
  if (objecter_wait_map(c->obj, tmo) < 0) {
    r = lb_err(-ETIMEDOUT, "no cluster map from the monitors (%s) within %d ms",
               config_get_str(c->cfg, "mon_host"), tmo);
    goto out_obj;
  }
  /* the identity lock records name and blocklisting fences */
  snprintf(c->nonce, sizeof c->nonce, "%s", objecter_nonce(c->obj));
  c->connected = true;
  if ((r = pthread_create(&c->thread, NULL, loop_main, c)) != 0) {
    c->connected = false;
    r = lb_err(-r, "cannot start the library thread: %s", strerror(r));
    goto out_obj;
  }
  c->thread_started = true;
  return 0;
out_obj:
  objecter_free(c->obj);
  c->obj = NULL;
out_monc:
  monc_free(c->mc);
  c->mc = NULL;
out_ev:
  if (c->local_ev)
    event_free(c->local_ev);
  c->local_ev = NULL;
  if (c->wake_ev)
    event_free(c->wake_ev);
  c->wake_ev = NULL;
out_efd:
  close(c->efd);
  c->efd = -1;
out_base:
  event_base_free(c->base);
  c->base = NULL;
  return r;
}

static void stop_task(struct lb_task *t)
{
  blk_cluster *c = *(blk_cluster **)(t + 1);
  free(t);
  event_base_loopbreak(c->base);
}

LB_API void blk_cluster_shutdown(blk_cluster *c)
{
  if (!c)
    return;
  /* handles the caller left open: images first (drain, unlock) */
  for (;;) {
    pthread_mutex_lock(&c->reg_lock);
    blk_image *img = c->images;
    pthread_mutex_unlock(&c->reg_lock);
    if (!img)
      break;
    blk_image_close(img);   /* unregisters it */
  }
  while (c->ioctxs)
    blk_ioctx_destroy(c->ioctxs);
  if (c->thread_started) {
    struct lb_task *t = malloc(sizeof *t + sizeof c);
    if (t) {
      t->fn = stop_task;
      memcpy(t + 1, &c, sizeof c);
      if (lb_submit(c, t) < 0)
        free(t);
    }
    pthread_mutex_lock(&c->q_lock);
    c->stopping = true;
    pthread_mutex_unlock(&c->q_lock);
    if (!t) {
      /* no memory for the task: break the loop from here (best effort) */
      event_base_loopbreak(c->base);
      uint64_t one = 1;
      ssize_t w = write(c->efd, &one, sizeof one);
      (void)w;
    }
    pthread_join(c->thread, NULL);
    /* tasks queued after the stop run now, on this thread, as the loop's
     * owner: they see the objecter cancel their ops */
    tls_loop = c;
    on_wake(c->efd, EV_READ, c);
    run_local(c);            /* submitted on the loop before it stopped */
    objecter_free(c->obj);   /* remaining ops complete with -ECANCELED */
    on_wake(c->efd, EV_READ, c);
    run_local(c);
    tls_loop = NULL;
  } else {
    objecter_free(c->obj);
  }
  monc_free(c->mc);
  if (c->local_ev)
    event_free(c->local_ev);
  if (c->wake_ev)
    event_free(c->wake_ev);
  if (c->efd >= 0)
    close(c->efd);
  if (c->base)
    event_base_free(c->base);
  config_free(c->cfg);
  for (size_t i = 0; i < c->n_conf_paths; i++)
    free(c->conf_paths[i]);
  free(c->conf_paths);
  for (size_t i = 0; i < c->n_ovr; i++) {
    free(c->ovr[i].opt);
    free(c->ovr[i].val);
  }
  free(c->ovr);
  pthread_mutex_destroy(&c->q_lock);
  pthread_mutex_destroy(&c->reg_lock);
  free(c);
}

/* ---- running the caller's code on the library thread ---- */

struct call_task {
  struct lb_task t;
  void (*fn)(void *arg);
  void *arg;
};

static void call_task_run(struct lb_task *t)
{
  struct call_task *ct = (struct call_task *)t;
  void (*fn)(void *) = ct->fn;
  void *arg = ct->arg;
  free(ct);
  lb_clear_err();
  fn(arg);
}

LB_API int blk_cluster_call(blk_cluster *c, void (*fn)(void *arg), void *arg)
{
  lb_clear_err();
  if (!c || !fn)
    return lb_err(-EINVAL, "blk_cluster_call: NULL argument");
  struct call_task *ct = malloc(sizeof *ct);
  if (!ct)
    return lb_err(-ENOMEM, "out of memory");
  ct->t.fn = call_task_run;
  ct->fn = fn;
  ct->arg = arg;
  int r = lb_submit(c, &ct->t);
  if (r < 0) {
    free(ct);
    return lb_err(r, "cluster not connected or shutting down");
  }
  return 0;
}

LB_API struct event_base *blk_cluster_event_base(blk_cluster *c)
{
  lb_clear_err();
  if (!c || !c->connected) {
    lb_err(-ENOTCONN, "cluster not connected");
    errno = ENOTCONN;
    return NULL;
  }
  return c->base;
}

LB_API bool blk_cluster_on_loop(blk_cluster *c)
{
  return c && tls_loop == c;
}

void lb_image_register(blk_image *img)
{
  blk_cluster *c = img->io->c;
  pthread_mutex_lock(&c->reg_lock);
  img->prev = NULL;
  img->next = c->images;
  if (c->images)
    c->images->prev = img;
  c->images = img;
  pthread_mutex_unlock(&c->reg_lock);
}

void lb_image_unregister(blk_image *img)
{
  blk_cluster *c = img->io->c;
  pthread_mutex_lock(&c->reg_lock);
  if (img->prev)
    img->prev->next = img->next;
  else if (c->images == img)
    c->images = img->next;
  if (img->next)
    img->next->prev = img->prev;
  img->prev = img->next = NULL;
  pthread_mutex_unlock(&c->reg_lock);
}

/* ---- I/O contexts ---- */

struct pool_check {
  struct lb_task t;
  blk_ioctx *io;
  struct lb_sync s;
};

static void pool_check_task(struct lb_task *t)
{
  struct pool_check *pc = (struct pool_check *)t;
  const struct cluster_map *m = objecter_map(pc->io->c->obj);
  bool ok = m && clustermap_pool_by_name(m, pc->io->pool);
  lb_sync_done(&pc->s, ok ? 0 : -ENOENT, NULL);
}

LB_API int blk_ioctx_create(blk_cluster *c, const char *pool, blk_ioctx **out)
{
  lb_clear_err();
  if (!c || !pool || !out)
    return lb_err(-EINVAL, "blk_ioctx_create: NULL argument");
  if (!*pool || strlen(pool) >= sizeof ((blk_ioctx *)0)->pool)
    return lb_err(-EINVAL, "bad pool name '%s'", pool);
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous call from a libblk callback");
  blk_ioctx *io = calloc(1, sizeof *io);
  if (!io)
    return lb_err(-ENOMEM, "out of memory");
  io->c = c;
  snprintf(io->pool, sizeof io->pool, "%s", pool);
  struct pool_check pc = { .t.fn = pool_check_task, .io = io };
  lb_sync_init(&pc.s);
  int r = lb_submit(c, &pc.t);
  if (r == 0)
    r = (int)lb_sync_wait(&pc.s);
  lb_sync_destroy(&pc.s);
  if (r < 0) {
    free(io);
    if (r == -ENOENT)
      return lb_err(r, "no such pool '%s'", pool);
    return lb_err(r, "cluster not connected");
  }
  pthread_mutex_lock(&c->reg_lock);
  io->next = c->ioctxs;
  if (c->ioctxs)
    c->ioctxs->prev = io;
  c->ioctxs = io;
  pthread_mutex_unlock(&c->reg_lock);
  *out = io;
  return 0;
}

LB_API void blk_ioctx_destroy(blk_ioctx *io)
{
  if (!io)
    return;
  blk_cluster *c = io->c;
  pthread_mutex_lock(&c->reg_lock);
  if (io->prev)
    io->prev->next = io->next;
  else if (c->ioctxs == io)
    c->ioctxs = io->next;
  if (io->next)
    io->next->prev = io->prev;
  pthread_mutex_unlock(&c->reg_lock);
  free(io);
}

/* ---- pools ---- */

struct pool_list {
  struct lb_task t;
  blk_cluster *c;
  char **names;
  size_t n;
  struct lb_sync s;
};

static void pool_list_task(struct lb_task *t)
{
  struct pool_list *pl = (struct pool_list *)t;
  const struct cluster_map *m = objecter_map(pl->c->obj);
  int r = 0;
  if (!m) {
    r = -ENOTCONN;
  } else if (m->n_pools) {
    pl->names = calloc(m->n_pools, sizeof *pl->names);
    for (size_t i = 0; pl->names && i < m->n_pools; i++) {
      if (!(pl->names[i] = strdup(m->pools[i].name)))
        break;
      pl->n++;
    }
    if (pl->n < m->n_pools)
      r = -ENOMEM;
  }
  lb_sync_done(&pl->s, r, NULL);
}

static int cmp_name(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

LB_API int blk_pool_list(blk_cluster *c, char ***names, size_t *n)
{
  lb_clear_err();
  if (!c || !names || !n)
    return lb_err(-EINVAL, "blk_pool_list: NULL argument");
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous call from a libblk callback");
  struct pool_list pl = { .t.fn = pool_list_task, .c = c };
  lb_sync_init(&pl.s);
  int r = lb_submit(c, &pl.t);
  if (r == 0)
    r = (int)lb_sync_wait(&pl.s);
  lb_sync_destroy(&pl.s);
  if (r < 0) {
    blk_pool_list_free(pl.names, pl.n);
    return lb_err(r, r == -ENOMEM ? "out of memory" : "cluster not connected");
  }
  if (pl.n > 1)
    qsort(pl.names, pl.n, sizeof *pl.names, cmp_name);
  *names = pl.names;
  *n = pl.n;
  return 0;
}

LB_API void blk_pool_list_free(char **names, size_t n)
{
  blk_image_list_free(names, n);   /* the same kind of array */
}

/* ---- fencing: blocklist a client through the monitors ---- */

struct bl_task {
  struct lb_task t;
  blk_cluster *c;
  const char *nonce;
  uint32_t expire_s;
  uint64_t epoch;               /* out: the epoch that holds the entry */
  struct lb_sync s;
};

static void bl_reply(void *arg, int err, const Blk__MonReply *reply)
{
  struct bl_task *bt = arg;
  char msg[LB_MSG];
  if (err == 0 && reply && reply->err < 0)
    err = reply->err;
  if (err < 0) {
    snprintf(msg, sizeof msg, "blocklisting client %s failed: %s", bt->nonce,
             reply && reply->message && reply->message[0] ? reply->message : strerror(-err));
    lb_sync_done(&bt->s, err, msg);
    return;
  }
  bt->epoch = reply ? reply->epoch : 0;
  lb_sync_done(&bt->s, 0, NULL);
}

static void bl_start(struct lb_task *t)
{
  struct bl_task *bt = (struct bl_task *)t;
  Blk__MonCommand cmd = BLK__MON_COMMAND__INIT;
  Blk__MapTxn txn = BLK__MAP_TXN__INIT;
  Blk__BlocklistChange bc = BLK__BLOCKLIST_CHANGE__INIT;
  bc.nonce = (char *)bt->nonce;
  bc.expire_s = bt->expire_s;
  txn.blocklist = &bc;
  cmd.txn = &txn;
  int r = monc_command_async(bt->c->mc, &cmd, (int)config_get_int(bt->c->cfg, "client_timeout"),
                             bl_reply, bt);
  if (r < 0)
    lb_sync_done(&bt->s, r, "cannot send the blocklist command");
}

static void epoch_task(struct lb_task *t)
{
  struct bl_task *bt = (struct bl_task *)t;
  const struct cluster_map *m = objecter_map(bt->c->obj);
  uint64_t e = m ? m->epoch : 0;
  if (e < bt->epoch)
    monc_want_epoch(bt->c->mc, bt->epoch);
  lb_sync_done(&bt->s, (int64_t)e, NULL);
}

int lb_blocklist(blk_cluster *c, const char *nonce, uint32_t expire_s)
{
  if (lb_on_loop())
    return lb_err(-EDEADLK, "synchronous call from a libblk callback");
  struct bl_task bt = { .t.fn = bl_start, .c = c, .nonce = nonce, .expire_s = expire_s };
  lb_sync_init(&bt.s);
  int r = lb_submit(c, &bt.t);
  if (r == 0)
    r = (int)lb_sync_wait(&bt.s);
  lb_sync_destroy(&bt.s);
  if (r < 0)
    return r;
  /* our next ops must carry an epoch that has the entry: OSDs then refuse
   * the fenced client's ops from before ours are applied */
  int64_t deadline = util_now_ms() + config_get_int(c->cfg, "client_timeout");
  for (;;) {
    bt.t.fn = epoch_task;
    lb_sync_init(&bt.s);
    r = lb_submit(c, &bt.t);
    int64_t e = r == 0 ? lb_sync_wait(&bt.s) : r;
    lb_sync_destroy(&bt.s);
    if (e < 0)
      return (int)e;
    if ((uint64_t)e >= bt.epoch)
      return 0;
    if (util_now_ms() > deadline)
      return lb_err(-ETIMEDOUT, "the map with client %s blocklisted (epoch %llu) did not arrive",
                    nonce, (unsigned long long)bt.epoch);
    usleep(20 * 1000);
  }
}
