/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: a deterministic simulation of PG replication and peering
 * (docs/osd.md "Peering simulation").  One process, one thread, one PRNG
 * per seed, a fake clock in ticks.  NOSD simulated OSDs hold NPG PGs of
 * size 3 / min_size 2; a fake monitor publishes map epochs (an OSD that
 * is crashed or cut off is marked down after a grace, out after longer,
 * up again when it is back: its new up_from starts a new interval); a
 * fake network delays (hence reorders), drops, and cuts messages, and
 * drops every message of a connection whose end restarted (TCP reset).
 * Faults: crash (everything not durable is lost; the store completes
 * transactions in order after a random delay), restart, partition of a
 * group of OSDs from the rest (the monitor and the client stay with the
 * majority side).
 *
 * What runs the daemon's code: every decision of peering is
 * osd/peering_plan.c, called as osd/peering.c calls it: may the PG go
 * active (past intervals), the authoritative member, and the objects each
 * member needs (by log or backfill, divergent entries).  What is modeled
 * after the daemon: the write path (the primary assigns (epoch, v),
 * replicates to every acting member with prev, acks the client when all
 * are durable; replicas refuse a RepOp from an epoch older than their
 * fence (-ESTALE) or whose prev is not their last (-EAGAIN), which
 * re-peers), the PG log trimmed to LOGMAX entries, and the peering
 * protocol (query fences members; pull from the authoritative member;
 * push whole objects; activate with the authoritative log; writes still
 * in flight are acked if the final log holds them).  Past intervals come
 * from the monitor's map history (from the newest last-epoch-started
 * among the answers), as Ceph derives them, with the daemon's code
 * (pplan_intervals_from_history).  --map-history models the daemon's
 * feed exactly (the recorded intervals plus those of the map history,
 * whose members still up are queried first); --recorded-intervals the
 * former feed (each OSD records the intervals it saw end while a member,
 * answers carry them), which loses writes: docs/osd.md "Past intervals
 * from the map history".
 *
 * Checks: at every activation, the new primary holds every acknowledged
 * write at its newest acknowledged version (or a newer version some
 * primary assigned, with that write's content); at the end of a seed
 * (faults healed, every OSD back) every PG must become active+clean
 * within a bound, and every member must hold every acknowledged write
 * and be identical to the others.  A violation prints the seed, the
 * replay command and the last trace lines; exit 1.  --bug MODE plants a
 * bug (in peering_plan via PPLAN_FAULT_INJECTION, or in the modeled
 * write path) and --expect-violation turns "a safety check failed" into
 * success, so CTest proves the checks bite.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "osd/peering_plan.h"

#define NOSD 6
#define NPG 2
#define SIZE 3
#define MIN_SIZE 2
#define NOBJ 6
#define LOGMAX 8
#define MAXINF 8                /* client writes in flight per PG */
#define CLIENT NOSD             /* network endpoints: OSDs, client, monitor */
#define MON (NOSD + 1)
#define NEP (NOSD + 2)

#define CHAOS_TICKS 3000
#define SETTLE_TICKS 4000
#define MON_TICK 5
#define DOWN_GRACE 40
#define OUT_DELAY 250
#define PEER_TIMEOUT 120
#define WRITE_TIMEOUT 120
#define DOWN_RETRY 40

/* ---- PRNG, options, trace ---------------------------------------------------- */

#include "tests/sim/sim-rng.h"

enum sim_bug { BUG_NONE, BUG_NO_PAST_INTERVALS, BUG_ACK_BEFORE_ALL, BUG_CHOOSE_OLDEST,
               BUG_NO_DIVERGENT, BUG_NO_UNLOGGED, BUG_UNION_INTERVALS };
static const char *const bug_names[] = { "", "no-past-intervals", "ack-before-all",
                                         "choose-oldest", "no-divergent", "no-unlogged",
                                         "union-intervals" };

static struct {
  bool verbose, expect_violation;
  bool recorded;                /* --recorded-intervals: the daemon's former feed */
  bool maphist;                 /* --map-history: the daemon's feed (recorded
                                 * intervals and those of the map history) */
  enum sim_bug bug;
} opt;

static uint64_t cur_seed;
static int64_t now;

static struct {
  uint64_t epochs, crashes, partitions, writes, acked, peerings, activations, downs, backfills,
      log_recoveries, items, dropped, delivered, max_settle;
} stats;

/* the last trace lines of the seed, printed on a violation */
#define TRACE_KEEP 300
static char trace_ring[TRACE_KEEP][160];
static unsigned trace_n;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
  char line[160];
  va_list ap;
  va_start(ap, fmt);
  int k = snprintf(line, sizeof line, "t=%-5" PRId64 " ", now);
  vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
  va_end(ap);
  if (opt.verbose)
    puts(line);
  memcpy(trace_ring[trace_n++ % TRACE_KEEP], line, sizeof line);
}

static void fail(bool safety, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(bool safety, const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  if (!opt.verbose && !opt.expect_violation) {
    unsigned first = trace_n > TRACE_KEEP ? trace_n - TRACE_KEEP : 0;
    for (unsigned i = first; i < trace_n; i++)
      fprintf(stderr, "%s\n", trace_ring[i % TRACE_KEEP]);
  }
  fprintf(stderr, "peering-sim: seed %" PRIu64 " tick %" PRId64 ": %s: ", cur_seed, now,
          safety ? "VIOLATION" : "LIVENESS FAILURE");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nreplay: peering-sim --seed %" PRIu64 " --verbose%s%s%s\n", cur_seed,
          opt.maphist ? " --map-history" : opt.recorded ? " --recorded-intervals" : "", opt.bug ? " --bug " : "", bug_names[opt.bug]);
  exit(opt.expect_violation && safety ? 0 : 1);
}

static void *xcalloc(size_t n, size_t sz)
{
  void *p = calloc(n ? n : 1, sz);
  if (!p) {
    perror("calloc");
    exit(2);
  }
  return p;
}

/* ---- PG state ---------------------------------------------------------------- */

static char obj_names[NOBJ][4];

enum { OP_WRITE = 1, OP_REMOVE = 2 };

struct obj {
  bool exists;
  struct pg_ver ver;
  uint32_t val;
};

/* One PG on one OSD: the in-memory state, or the durable one. */
struct pgs {
  struct pg_log_ent log[LOGMAX];   /* names point into obj_names */
  size_t n;
  struct pg_ver last, tail;
  uint64_t les;
  uint32_t unlogged;            /* objects recovery installed that no log
                                 * entry describes yet */
  struct pg_ver unl_ver[NOBJ];  /* the version each was installed at, as the
                                 * daemon records it ((0,0) for a removal) */
  /* --recorded-intervals: the past intervals this OSD recorded (as
   * osd/pg.c note_prior does; persisted at once) */
  struct pplan_interval past[PPLAN_MAX_INTERVALS];
  size_t n_past;
  struct obj obj[NOBJ];
};

static int obj_index(const char *name)
{
  for (int i = 0; i < NOBJ; i++)
    if (!strcmp(obj_names[i], name))
      return i;
  return -1;
}

static void pgs_append(struct pgs *s, struct pg_ver ver, int obj, uint8_t op, uint32_t val)
{
  if (s->n == LOGMAX) {
    s->tail = s->log[0].ver;
    memmove(&s->log[0], &s->log[1], (LOGMAX - 1) * sizeof s->log[0]);
    s->n--;
  }
  struct pg_log_ent *e = &s->log[s->n++];
  memset(e, 0, sizeof *e);
  e->ver = ver;
  e->op = op;
  e->name = obj_names[obj];
  s->last = ver;
  s->unlogged &= ~(1u << obj);
  s->obj[obj].exists = op == OP_WRITE;
  s->obj[obj].ver = ver;
  s->obj[obj].val = op == OP_WRITE ? val : 0;
}

/* ---- maps -------------------------------------------------------------------- */

struct map {
  bool up[NOSD], in[NOSD];
  uint64_t up_from[NOSD];
};

#define MAXEP 8192
static struct map hist[MAXEP];   /* hist[e]: the map of epoch e (1..n_ep) */
static uint64_t n_ep;
static int perm[NPG][NOSD];      /* placement preference per PG */

/* The acting set of g in epoch e: the first SIZE "in" OSDs of the
 * preference, those up among them (down but in: not replaced yet). */
static size_t acting_of(int g, uint64_t e, int32_t *out, uint64_t *uf)
{
  size_t n = 0, chosen = 0;
  for (int k = 0; k < NOSD && chosen < SIZE; k++) {
    int o = perm[g][k];
    if (!hist[e].in[o])
      continue;
    chosen++;
    if (hist[e].up[o]) {
      if (uf)
        uf[n] = hist[e].up_from[o];
      out[n++] = o;
    }
  }
  return n;
}

static bool same_interval(int g, uint64_t a, uint64_t b)
{
  int32_t x[SIZE], y[SIZE];
  uint64_t ux[SIZE], uy[SIZE];
  size_t nx = acting_of(g, a, x, ux), ny = acting_of(g, b, y, uy);
  return nx == ny && !memcmp(x, y, nx * sizeof *x) && !memcmp(ux, uy, nx * sizeof *ux);
}

/* The first epoch of the interval of g that contains epoch e. */
static uint64_t interval_start(int g, uint64_t e)
{
  while (e > 1 && same_interval(g, e - 1, e))
    e--;
  return e;
}

/* The set of g in epoch e, for pplan_intervals_from_history. */
static int epoch_set(void *arg, uint64_t e, struct pplan_epoch_set *out)
{
  int g = (int)(intptr_t)arg;
  if (e < 1 || e > n_ep)
    return -ENOENT;
  memset(out, 0, sizeof *out);
  out->n = acting_of(g, e, out->acting, out->up_from);
  out->min_size = MIN_SIZE;
  return 0;
}

/* The past intervals of g from epoch `from` to `before` - 1, derived from
 * the monitor's map history by the daemon's code (peering_plan). */
static void past_intervals(int g, uint64_t from, uint64_t before, struct pplan_interval *iv,
                           size_t *n_iv)
{
  if (pplan_intervals_from_history(from, before, epoch_set, (void *)(intptr_t)g, iv, n_iv, NULL) < 0) {
    fprintf(stderr, "peering-sim: map history incomplete\n");
    exit(2);
  }
}

/* ---- messages and events --------------------------------------------------------- */

enum mtype { M_MAP, M_CW, M_CREPLY, M_REPOP, M_REPOP_R, M_QUERY, M_INFO, M_PULL, M_PULL_R,
             M_PUSH, M_PUSH_R, M_ACT, M_ACT_R };
static const char *const mnames[] = { "map", "write", "write-reply", "repop", "repop-reply",
                                      "query", "info", "pull", "pull-reply", "push",
                                      "push-reply", "activate", "activate-reply" };

struct msg {
  enum mtype type;
  int from, to;
  uint64_t from_inc, to_inc;
  int pg;
  uint64_t epoch, seq, wid;
  int err, idx;
  struct pg_ver ver, prev;
  int obj;
  uint8_t op;
  uint32_t val, mask;
  struct pgs st;                /* info, pull reply, push objects, activate log */
};

struct ev {
  int64_t t;
  uint64_t order;
  struct msg *m;                /* delivery (owned) */
  /* durable: the store makes snap the durable state of (osd, pg) */
  int osd, pg;
  uint64_t inc;
  struct pgs *snap;             /* owned */
  struct msg *cont;             /* sent once durable (owned) */
};

static struct ev *heap;
static size_t heap_n, heap_cap;
static uint64_t ev_order;

static void heap_push(struct ev e)
{
  if (heap_n == heap_cap) {
    heap_cap = heap_cap ? heap_cap * 2 : 1024;
    heap = realloc(heap, heap_cap * sizeof *heap);
    if (!heap) {
      perror("realloc");
      exit(2);
    }
  }
  e.order = ev_order++;
  size_t i = heap_n++;
  while (i) {
    size_t p = (i - 1) / 2;
    if (heap[p].t < e.t || (heap[p].t == e.t && heap[p].order < e.order))
      break;
    heap[i] = heap[p];
    i = p;
  }
  heap[i] = e;
}

static struct ev heap_pop(void)
{
  struct ev top = heap[0], last = heap[--heap_n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= heap_n)
      break;
    if (c + 1 < heap_n &&
        (heap[c + 1].t < heap[c].t || (heap[c + 1].t == heap[c].t && heap[c + 1].order < heap[c].order)))
      c++;
    if (last.t < heap[c].t || (last.t == heap[c].t && last.order < heap[c].order))
      break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = last;
  return top;
}

static void ev_free(struct ev *e)
{
  free(e->m);
  free(e->snap);
  free(e->cont);
}

/* ---- OSDs ------------------------------------------------------------------------ */

enum pstate { P_NONE, P_QUERY, P_PULL, P_PUSH, P_ACT, P_ACTIVE, P_RETRY };

struct wr {                     /* a client write in flight on the primary */
  bool used, acked;
  struct pg_ver ver;
  uint64_t wid;
  uint32_t want, done;          /* acting-index bits */
  int64_t start;
};

struct prim {                   /* primary-side state of one PG */
  enum pstate state;
  uint64_t seq;
  int64_t deadline, retry_at;
  int32_t who[PPLAN_MAX_MEMBERS];
  size_t n_who, n_act;
  bool got[PPLAN_MAX_MEMBERS];
  struct pgs info[PPLAN_MAX_MEMBERS];
  int auth;
  struct pgs authst;
  struct pplan_item *items;
  size_t n_items;
  uint32_t pending;
  struct wr w[MAXINF];
};

struct sosd {
  bool alive;
  int side;                     /* 0: with the monitor and the client */
  uint64_t inc;                 /* incarnation: bumps at each crash */
  uint64_t epoch;
  int64_t last_durable;
  struct pgs mem[NPG], dur[NPG];
  uint64_t fence[NPG];
  bool member[NPG];             /* in the acting set of its map */
  int32_t acting[NPG][SIZE];
  size_t n_acting[NPG];
  uint64_t interval[NPG];
  uint64_t seen_start[NPG];     /* first epoch of the interval as it saw it */
  bool went_active[NPG];        /* volatile, as in osd/pg.c */
  struct prim pr[NPG];
};

static struct sosd osds[NOSD];
static bool chaos_on;           /* faults are being injected */
static unsigned max_faults;     /* OSDs down or cut off at once, at most */
static unsigned step_crash_pm;  /* crash of a primary between recovery and activation */

static unsigned faults_now(void)
{
  unsigned bad = 0;
  for (int o = 0; o < NOSD; o++)
    bad += !osds[o].alive || osds[o].side;
  return bad;
}
static unsigned drop_pm;        /* message drop rate, per mille */
static int64_t fifo_t[NEP][NEP];   /* last delivery time per (from, to) */
static int max_delay;

static bool ep_alive(int ep) { return ep >= NOSD || osds[ep].alive; }
static int ep_side(int ep) { return ep >= NOSD ? 0 : osds[ep].side; }
static uint64_t ep_inc(int ep) { return ep >= NOSD ? 0 : osds[ep].inc; }

static struct msg *msg_new(enum mtype t, int from, int to, int pg)
{
  struct msg *m = xcalloc(1, sizeof *m);
  m->type = t;
  m->from = from;
  m->to = to;
  m->pg = pg;
  m->from_inc = ep_inc(from);
  m->to_inc = ep_inc(to);
  m->epoch = from < NOSD ? osds[from].epoch : n_ep;
  return m;
}

static void net_send(struct msg *m)
{
  if (m->from != m->to && chance(drop_pm)) {
    stats.dropped++;
    free(m);
    return;
  }
  int64_t t = now;
  if (m->from != m->to) {
    /* one connection per pair, in order (TCP): messages between two
     * endpoints never overtake each other; different pairs do */
    t += 1 + (int64_t)rnd_below((unsigned)max_delay);
    if (t < fifo_t[m->from][m->to])
      t = fifo_t[m->from][m->to];
    fifo_t[m->from][m->to] = t;
  }
  heap_push((struct ev){ .t = t, .m = m, .osd = -1 });
}

/* Queue s as the next durable state of (o, g); cont is sent once it is. */
static void store_queue(int o, int g, struct msg *cont)
{
  struct sosd *x = &osds[o];
  int64_t t = now + 1 + (int64_t)rnd_below(8);
  if (t < x->last_durable)
    t = x->last_durable;
  x->last_durable = t;
  struct pgs *snap = xcalloc(1, sizeof *snap);
  *snap = x->mem[g];
  heap_push((struct ev){ .t = t, .osd = o, .pg = g, .inc = x->inc, .snap = snap, .cont = cont });
}

/* ---- acknowledged writes and the checks ---------------------------------------------- */

struct wrec {                   /* every version a primary assigned */
  int pg, obj;
  uint8_t op;
  uint32_t val;
  struct pg_ver ver;
};

#define MAXW 65536
static struct wrec assigned[MAXW];
static size_t n_assigned;
static struct wrec latest_acked[NPG][NOBJ];   /* ver 0'0: none */
static uint64_t next_wid;
static uint32_t next_val;

struct cw {                     /* client side of a write */
  bool used;
  uint64_t wid;
  int pg, obj;
  uint8_t op;
  uint32_t val;
  int64_t sent;
};
static struct cw client_w[NPG][MAXINF];

static const struct wrec *assigned_find(int g, struct pg_ver v)
{
  for (size_t i = n_assigned; i-- > 0;)
    if (assigned[i].pg == g && !pg_ver_cmp(assigned[i].ver, v))
      return &assigned[i];
  return NULL;
}

/* Was object k of g removed by a write newer than v (acknowledged or
 * not)? */
static bool removed_after(int g, int k, struct pg_ver v)
{
  for (size_t i = 0; i < n_assigned; i++)
    if (assigned[i].pg == g && assigned[i].obj == k && assigned[i].op == OP_REMOVE &&
        pg_ver_cmp(assigned[i].ver, v) > 0)
      return true;
  return false;
}

/* Does s hold every acknowledged write of g?  If not, why in buf.  An
 * absent object has no version in the daemon (two members that both lack
 * it need nothing), so absence is right when the newest acknowledged op
 * is a remove, or some primary removed the object after it (the members
 * must then agree: final_check compares them). */
static bool holds_acked(int g, const struct pgs *s, char *buf, size_t n)
{
  for (int k = 0; k < NOBJ; k++) {
    const struct wrec *a = &latest_acked[g][k];
    if (!a->ver.epoch && !a->ver.v)
      continue;
    const struct obj *o = &s->obj[k];
    if (!o->exists && (a->op == OP_REMOVE || removed_after(g, k, a->ver)))
      continue;
    if (pg_ver_cmp(o->ver, a->ver) < 0 || !o->exists) {
      snprintf(buf, n, "object %s: acknowledged %s at %" PRIu64 "'%" PRIu64 " (val %08x), found %s at %"
               PRIu64 "'%" PRIu64 " — acknowledged write lost", obj_names[k],
               a->op == OP_WRITE ? "write" : "remove", a->ver.epoch, a->ver.v, a->val,
               o->exists ? "it" : "its absence", o->ver.epoch, o->ver.v);
      return false;
    }
    const struct wrec *w = assigned_find(g, o->ver);
    bool exists = w && w->op == OP_WRITE;
    if (!w || o->exists != exists || (exists && o->val != w->val)) {
      snprintf(buf, n, "object %s at %" PRIu64 "'%" PRIu64 ": content does not match the write of that version",
               obj_names[k], o->ver.epoch, o->ver.v);
      return false;
    }
  }
  return true;
}

/* ---- the primary: peering ------------------------------------------------------------ */

static void start_peering(int o, int g);
static void deliver_local(struct msg *m);

static void fail_writes(int o, int g, bool all)
{
  struct prim *p = &osds[o].pr[g];
  for (int i = 0; i < MAXINF; i++) {
    struct wr *w = &p->w[i];
    if (!w->used || (!all && w->acked))
      continue;
    if (!w->acked) {
      struct msg *r = msg_new(M_CREPLY, o, CLIENT, g);
      r->wid = w->wid;
      r->err = -ESTALE;
      net_send(r);
    }
    w->used = false;
  }
}

static void prim_reset(int o, int g)
{
  struct prim *p = &osds[o].pr[g];
  pplan_items_free(p->items, p->n_items);
  p->items = NULL;
  p->n_items = 0;
  p->state = P_NONE;
}

static void peering_retry(int o, int g, int64_t after, const char *why)
{
  struct prim *p = &osds[o].pr[g];
  trace("osd.%d pg %d: peering restarts (%s)", o, g, why);
  pplan_items_free(p->items, p->n_items);
  p->items = NULL;
  p->n_items = 0;
  p->state = P_RETRY;
  p->retry_at = now + after;
}

static void send_activate(int o, int g)
{
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  p->state = P_ACT;
  p->pending = 0;
  const struct pgs *a = &p->info[p->auth];
  for (size_t i = 0; i < p->n_act; i++) {
    struct msg *m = msg_new(M_ACT, o, p->who[i], g);
    m->seq = p->seq;
    m->idx = (int)i;
    memcpy(m->st.log, a->log, sizeof a->log);
    m->st.n = a->n;
    m->st.last = a->last;
    m->st.tail = a->tail;
    m->st.les = opt.recorded ? x->epoch : x->interval[g];
    p->pending |= 1u << i;
    if (i == 0)
      deliver_local(m);
    else
      net_send(m);
  }
}

static void go_active(int o, int g)
{
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  p->state = P_ACTIVE;
  stats.activations++;
  char why[256];
  if (!holds_acked(g, &x->mem[g], why, sizeof why))
    fail(true, "pg %d went active on osd.%d at epoch %" PRIu64 " without an acknowledged write: %s",
         g, o, x->epoch, why);
  trace("osd.%d pg %d: active at epoch %" PRIu64 " (interval %" PRIu64 "), last %" PRIu64 "'%" PRIu64
        ", %zu members", o, g, x->epoch, x->interval[g], x->mem[g].last.epoch, x->mem[g].last.v,
        p->n_act);
  /* writes in flight that the final log holds are acknowledged */
  for (int i = 0; i < MAXINF; i++) {
    struct wr *w = &p->w[i];
    if (!w->used)
      continue;
    bool in_log = false;
    for (size_t k = 0; k < x->mem[g].n; k++)
      in_log |= !pg_ver_cmp(x->mem[g].log[k].ver, w->ver);
    if (in_log && !w->acked) {
      struct msg *r = msg_new(M_CREPLY, o, CLIENT, g);
      r->wid = w->wid;
      r->ver = w->ver;
      net_send(r);
      trace("osd.%d pg %d: write %" PRIu64 "'%" PRIu64 " acknowledged at activation", o, g,
            w->ver.epoch, w->ver.v);
    }
    if (!in_log && !w->acked) {
      struct msg *r = msg_new(M_CREPLY, o, CLIENT, g);
      r->wid = w->wid;
      r->err = -EAGAIN;
      net_send(r);
    }
    w->used = false;
  }
}

static void push_phase(int o, int g)
{
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  p->state = P_PUSH;
  p->pending = 0;
  for (size_t i = 0; i < p->n_act; i++) {
    uint32_t mask = 0;
    for (size_t k = 0; k < p->n_items; k++)
      if (p->items[k].targets & (1u << i))
        mask |= 1u << obj_index(p->items[k].name);
    if (!mask)
      continue;
    struct msg *m = msg_new(M_PUSH, o, p->who[i], g);
    m->seq = p->seq;
    m->idx = (int)i;
    m->mask = mask;
    memcpy(m->st.obj, p->authst.obj, sizeof m->st.obj);
    p->pending |= 1u << i;
    if (i == 0)
      deliver_local(m);
    else
      net_send(m);
  }
  if (!p->pending)
    send_activate(o, g);
}

/* --recorded-intervals: the intervals the answers carry, merged (as
 * osd/peering.c learn_intervals does), in first-epoch order. */
/* Primary o of PG g queries OSD id (seen in a past interval) unless it is
 * already asked, down in epoch ep, or the member table is full; returns
 * whether a query went out. */
static bool ask_member(struct prim *p, int o, int32_t id, int g, uint64_t ep)
{
  for (size_t i = 0; i < p->n_who; i++)
    if (p->who[i] == id)
      return false;
  if (!hist[ep].up[id] || p->n_who == PPLAN_MAX_MEMBERS)
    return false;
  p->got[p->n_who] = false;
  p->who[p->n_who] = id;
  struct msg *q = msg_new(M_QUERY, o, id, g);
  q->seq = p->seq;
  q->idx = (int)p->n_who++;
  net_send(q);
  return true;
}

static void recorded_intervals(const struct prim *p, struct pplan_interval *iv, size_t *n_iv)
{
  *n_iv = 0;
  for (size_t i = 0; i < p->n_who; i++)
    for (size_t k = 0; k < p->info[i].n_past; k++) {
      const struct pplan_interval *x = &p->info[i].past[k];
      bool known = false;
      size_t at = *n_iv;
      for (size_t j = 0; j < *n_iv && !known; j++) {
        known = iv[j].first == x->first && iv[j].last == x->last && iv[j].n_acting == x->n_acting &&
                !memcmp(iv[j].acting, x->acting, x->n_acting * sizeof *x->acting);
        if (at == *n_iv && iv[j].first > x->first)
          at = j;
      }
      if (known || *n_iv == PPLAN_MAX_INTERVALS)
        continue;
      memmove(&iv[at + 1], &iv[at], (*n_iv - at) * sizeof *iv);
      iv[at] = *x;
      (*n_iv)++;
    }
}

/* Every queried member answered: the plan decides. */
static void decide(int o, int g)
{
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  struct pplan_member mem[PPLAN_MAX_MEMBERS];
  const char *names[PPLAN_MAX_MEMBERS][NOBJ], *unames[PPLAN_MAX_MEMBERS][NOBJ];
  memset(mem, 0, sizeof mem);
  uint64_t les = 0;
  for (size_t i = 0; i < p->n_who; i++) {
    struct pgs *s = &p->info[i];
    mem[i].osd = p->who[i];
    mem[i].target = i < p->n_act;
    mem[i].last = s->last;
    mem[i].tail = s->tail;
    mem[i].log = s->log;
    mem[i].n = s->n;
    mem[i].les = s->les;
    size_t nl = 0;
    for (int k = 0; k < NOBJ; k++)
      if (s->obj[k].exists)
        names[i][nl++] = obj_names[k];
    mem[i].listed = names[i];
    mem[i].n_listed = nl;
    size_t nu = 0;
    for (int k = 0; k < NOBJ; k++)
      if (s->unlogged & (1u << k))
        unames[i][nu++] = obj_names[k];
    mem[i].unlogged = unames[i];
    mem[i].n_unlogged = nu;
    mem[i].listed_ok = true;
    if (s->les > les)
      les = s->les;
  }
  struct pplan_interval iv[PPLAN_MAX_INTERVALS];
  size_t n_iv, blocking = 0;
  bool may = true;
  if (opt.maphist) {
    /* osd/peering.c maybe_choose: the intervals of the map history since
     * the newest les among the answers; their members up and not asked
     * yet are asked first */
    past_intervals(g, les, x->interval[g], iv, &n_iv);
    bool asked = false;
    for (size_t k = 0; k < n_iv; k++)
      for (size_t a = 0; a < iv[k].n_acting; a++)
        asked |= ask_member(p, o, iv[k].acting[a], g, x->epoch);
    if (asked)
      return;
    may = pplan_may_activate(iv, n_iv, mem, p->n_who, &blocking);
  }
  if (may) {
    if (opt.recorded)
      recorded_intervals(p, iv, &n_iv);
    else
      past_intervals(g, les, x->interval[g], iv, &n_iv);
    may = pplan_may_activate(iv, n_iv, mem, p->n_who, &blocking);
  }
  if (!may) {
    stats.downs++;
    char set[64] = "";
    for (size_t a = 0; a < iv[blocking].n_acting; a++)
      snprintf(set + strlen(set), sizeof set - strlen(set), "%s%d", a ? "," : "",
               iv[blocking].acting[a]);
    trace("osd.%d pg %d: down: no member of interval %" PRIu64 "-%" PRIu64 " [%s] answered", o, g,
          iv[blocking].first, iv[blocking].last, set);
    p->state = P_RETRY;
    p->retry_at = now + DOWN_RETRY;
    return;
  }
  p->auth = pplan_choose_auth(mem, p->n_who);
  uint32_t backfill = 0;
  if (pplan_recovery(mem, p->n_who, p->auth, &p->items, &p->n_items, &backfill) < 0) {
    fprintf(stderr, "peering-sim: out of memory\n");
    exit(2);
  }
  stats.backfills += (uint64_t)__builtin_popcount(backfill);
  stats.items += p->n_items;
  for (size_t i = 0; i < p->n_act; i++)
    if (!(backfill & (1u << i)) && (int)i != p->auth)
      stats.log_recoveries++;
  trace("osd.%d pg %d: %zu answers, auth osd.%d (last %" PRIu64 "'%" PRIu64 "), %zu objects to "
        "recover, backfill mask %x, %zu past intervals from les %" PRIu64, o, g, p->n_who,
        p->who[p->auth], p->info[p->auth].last.epoch, p->info[p->auth].last.v, p->n_items,
        backfill, n_iv, les);
  for (size_t k = 0; opt.verbose && k < p->n_items; k++)
    trace("  recover %s on mask %x", p->items[k].name, p->items[k].targets);
  if (!p->n_items) {
    send_activate(o, g);
  } else if (p->auth == 0) {
    p->authst = x->mem[g];
    push_phase(o, g);
  } else {
    p->state = P_PULL;
    struct msg *m = msg_new(M_PULL, o, p->who[p->auth], g);
    m->seq = p->seq;
    net_send(m);
  }
}

static void start_peering(int o, int g)
{
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  pplan_items_free(p->items, p->n_items);
  p->items = NULL;
  p->n_items = 0;
  p->seq++;
  p->state = P_QUERY;
  p->deadline = now + PEER_TIMEOUT;
  stats.peerings++;
  memcpy(p->who, x->acting[g], x->n_acting[g] * sizeof(int32_t));
  p->n_who = p->n_act = x->n_acting[g];
  /* probe: the members of the intervals since this OSD's les, up in its map */
  struct pplan_interval iv[PPLAN_MAX_INTERVALS];
  size_t n_iv;
  if (opt.recorded) {
    n_iv = x->mem[g].n_past;
    memcpy(iv, x->mem[g].past, n_iv * sizeof *iv);
  } else {
    past_intervals(g, x->mem[g].les, x->interval[g], iv, &n_iv);
  }
  for (size_t k = 0; k < n_iv; k++)
    for (size_t a = 0; a < iv[k].n_acting; a++) {
      int32_t id = iv[k].acting[a];
      bool dup = false;
      for (size_t i = 0; i < p->n_who && !dup; i++)
        dup = p->who[i] == id;
      if (!dup && hist[x->epoch].up[id] && p->n_who < PPLAN_MAX_MEMBERS)
        p->who[p->n_who++] = id;
    }
  memset(p->got, 0, sizeof p->got);
  p->got[0] = true;
  p->info[0] = x->mem[g];
  trace("osd.%d pg %d: peering at epoch %" PRIu64 " (seq %" PRIu64 "), asking %zu", o, g, x->epoch,
        p->seq, p->n_who - 1);
  for (size_t i = 1; i < p->n_who; i++) {
    struct msg *m = msg_new(M_QUERY, o, p->who[i], g);
    m->seq = p->seq;
    m->idx = (int)i;
    net_send(m);
  }
  if (p->n_who == 1)
    decide(o, g);
}

/* ---- maps on an OSD -------------------------------------------------------------------- */

static void crash(int o)
{
  struct sosd *x = &osds[o];
  for (int g = 0; g < NPG; g++) {
    prim_reset(o, g);
    memset(&x->pr[g], 0, sizeof x->pr[g]);
    x->mem[g] = x->dur[g];
    x->fence[g] = 0;
    x->member[g] = false;
  }
  x->alive = false;
  x->inc++;
  x->epoch = 0;
  stats.crashes++;
  trace("osd.%d crashes (not durable: lost)", o);
}

/* Bring o's map to epoch e; a new interval of a PG it is in starts
 * peering (primary) or waits (replica). */
static void osd_catch_up(int o, uint64_t e)
{
  struct sosd *x = &osds[o];
  if (!x->alive || e <= x->epoch)
    return;
  uint64_t from = x->epoch;
  x->epoch = e;
  for (int g = 0; g < NPG && opt.recorded; g++) {
    /* osd/pg.c: each map that starts an interval of which this OSD is a
     * member records the one that ended (a restarted OSD starts from the
     * current map: it records nothing it missed) */
    for (uint64_t k = from; from && k < e; k++) {
      if (same_interval(g, k, k + 1))
        continue;
      int32_t nx[SIZE], pv[SIZE];
      size_t nn = acting_of(g, k + 1, nx, NULL), np = acting_of(g, k, pv, NULL);
      bool mine = false;
      for (size_t i = 0; i < nn; i++)
        mine |= nx[i] == o;
      if (mine) {
        struct pgs *ps[2] = { &x->mem[g], &x->dur[g] };
        for (int c = 0; c < 2; c++) {
          if (x->went_active[g])
            ps[c]->n_past = 0;
          pplan_interval_note(ps[c]->past, &ps[c]->n_past, x->seen_start[g], k, pv, np, MIN_SIZE);
        }
        x->went_active[g] = false;
      }
      x->seen_start[g] = k + 1;
    }
    if (!from)
      x->seen_start[g] = e;
  }
  for (int g = 0; g < NPG; g++) {
    int32_t a[SIZE];
    size_t na = acting_of(g, e, a, NULL);
    bool mine = false;
    for (size_t i = 0; i < na; i++)
      mine |= a[i] == o;
    bool changed = !from || !x->member[g] || !mine;
    for (uint64_t k = from ? from : 1; !changed && k < e; k++)
      changed = !same_interval(g, k, k + 1);
    if (!changed)
      continue;
    if (x->member[g] || x->pr[g].state != P_NONE) {
      fail_writes(o, g, true);
      prim_reset(o, g);
    }
    x->member[g] = mine;
    if (!mine)
      continue;
    memcpy(x->acting[g], a, na * sizeof *a);
    x->n_acting[g] = na;
    x->interval[g] = interval_start(g, e);
    if (a[0] == o)
      start_peering(o, g);
  }
}

/* ---- message handlers ----------------------------------------------------------------- */

static struct prim *prim_for(const struct msg *m, enum pstate want)
{
  struct sosd *x = &osds[m->to];
  struct prim *p = &x->pr[m->pg];
  if (!x->member[m->pg] || x->acting[m->pg][0] != m->to || p->state != want || p->seq != m->seq)
    return NULL;
  return p;
}

static void reply(const struct msg *req, enum mtype t, int err, struct msg **out)
{
  struct msg *r = msg_new(t, req->to, req->from, req->pg);
  r->seq = req->seq;
  r->idx = req->idx;
  r->err = err;
  r->ver = req->ver;
  r->to_inc = req->from_inc;   /* a restarted requester never sees it */
  *out = r;
}

static void on_client_write(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  struct msg *r;
  int slot = -1;
  for (int i = 0; i < MAXINF && slot < 0; i++)
    if (!p->w[i].used)
      slot = i;
  if (!x->member[g] || x->acting[g][0] != o || p->state != P_ACTIVE ||
      x->n_acting[g] < MIN_SIZE || slot < 0) {
    reply(m, M_CREPLY, -EAGAIN, &r);
    r->wid = m->wid;
    net_send(r);
    return;
  }
  struct pgs *s = &x->mem[g];
  struct pg_ver prev = s->last, ver = { x->epoch, s->last.v + 1 };
  if (n_assigned == MAXW) {
    fprintf(stderr, "peering-sim: too many writes\n");
    exit(2);
  }
  assigned[n_assigned++] = (struct wrec){ g, m->obj, m->op, m->val, ver };
  stats.writes++;
  pgs_append(s, ver, m->obj, m->op, m->val);
  struct wr *w = &p->w[slot];
  *w = (struct wr){ .used = true, .ver = ver, .wid = m->wid, .start = now,
                    .want = (1u << x->n_acting[g]) - 1 };
  trace("osd.%d pg %d: write %s %s -> %" PRIu64 "'%" PRIu64 " (val %08x)", o, g,
        m->op == OP_WRITE ? "write" : "remove", obj_names[m->obj], ver.epoch, ver.v, m->val);
  struct msg *self = msg_new(M_REPOP_R, o, o, g);
  self->ver = ver;
  self->idx = 0;
  store_queue(o, g, self);
  for (size_t i = 1; i < x->n_acting[g]; i++) {
    struct msg *rp = msg_new(M_REPOP, o, x->acting[g][i], g);
    rp->ver = ver;
    rp->prev = prev;
    rp->obj = m->obj;
    rp->op = m->op;
    rp->val = m->val;
    rp->idx = (int)i;
    net_send(rp);
  }
}

static void on_repop(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct msg *r;
  if (m->epoch < x->fence[g]) {
    reply(m, M_REPOP_R, -ESTALE, &r);
    net_send(r);
    return;
  }
  if (pg_ver_cmp(m->prev, x->mem[g].last)) {
    reply(m, M_REPOP_R, -EAGAIN, &r);
    net_send(r);
    return;
  }
  pgs_append(&x->mem[g], m->ver, m->obj, m->op, m->val);
  reply(m, M_REPOP_R, 0, &r);
  store_queue(o, g, r);
}

static void on_repop_reply(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct prim *p = &x->pr[g];
  if (!x->member[g] || x->acting[g][0] != o)
    return;
  struct wr *w = NULL;
  for (int i = 0; i < MAXINF && !w; i++)
    if (p->w[i].used && !pg_ver_cmp(p->w[i].ver, m->ver))
      w = &p->w[i];
  if (!w)
    return;
  if (m->err) {
    if (p->state == P_ACTIVE)
      peering_retry(o, g, 2, m->err == -ESTALE ? "a replica is fenced" : "a replica has a gap");
    return;
  }
  w->done |= 1u << m->idx;
  bool enough = w->done == w->want;
  if (opt.bug == BUG_ACK_BEFORE_ALL)
    enough = (w->done & 1u) && __builtin_popcount(w->done) >= MIN_SIZE;
  if (enough && !w->acked && p->state == P_ACTIVE) {
    w->acked = true;
    struct msg *r = msg_new(M_CREPLY, o, CLIENT, g);
    r->wid = w->wid;
    r->ver = w->ver;
    net_send(r);
  }
  if (w->done == w->want)
    w->used = false;
}

static void on_query(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct msg *r;
  if (m->epoch < x->fence[g]) {
    reply(m, M_INFO, -ESTALE, &r);
  } else {
    x->fence[g] = m->epoch;
    reply(m, M_INFO, 0, &r);
    r->st = x->mem[g];
  }
  net_send(r);
}

static void on_info(struct msg *m)
{
  struct prim *p = prim_for(m, P_QUERY);
  if (!p || m->idx <= 0 || (size_t)m->idx >= p->n_who || p->got[m->idx])
    return;
  if (m->err) {
    peering_retry(m->to, m->pg, 10, "a member refused the query");
    return;
  }
  p->got[m->idx] = true;
  p->info[m->idx] = m->st;
  /* members of intervals learnt from the answer, up: queried too */
  struct sosd *x = &osds[m->to];
  for (size_t k = 0; opt.recorded && k < m->st.n_past; k++)
    for (size_t a = 0; a < m->st.past[k].n_acting; a++)
      ask_member(p, m->to, m->st.past[k].acting[a], m->pg, x->epoch);
  for (size_t i = 0; i < p->n_who; i++)
    if (!p->got[i])
      return;
  decide(m->to, m->pg);
}

static void on_pull(struct msg *m)
{
  struct sosd *x = &osds[m->to];
  struct msg *r;
  reply(m, M_PULL_R, m->epoch < x->fence[m->pg] ? -ESTALE : 0, &r);
  r->st = x->mem[m->pg];
  net_send(r);
}

static void on_pull_reply(struct msg *m)
{
  struct prim *p = prim_for(m, P_PULL);
  if (!p)
    return;
  if (m->err) {
    peering_retry(m->to, m->pg, 10, "pull refused");
    return;
  }
  p->authst = m->st;
  push_phase(m->to, m->pg);
}

static void on_push(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct msg *r;
  if (m->epoch < x->fence[g]) {
    reply(m, M_PUSH_R, -ESTALE, &r);
    net_send(r);
    return;
  }
  for (int k = 0; k < NOBJ; k++)
    if (m->mask & (1u << k)) {
      x->mem[g].obj[k] = m->st.obj[k];
      x->mem[g].unl_ver[k] = m->st.obj[k].exists ? m->st.obj[k].ver : (struct pg_ver){ 0, 0 };
    }
  x->mem[g].unlogged |= m->mask;
  reply(m, M_PUSH_R, 0, &r);
  store_queue(o, g, r);
}

static void on_push_reply(struct msg *m)
{
  struct prim *p = prim_for(m, P_PUSH);
  if (!p)
    return;
  if (m->err) {
    peering_retry(m->to, m->pg, 10, "push refused");
    return;
  }
  p->pending &= ~(1u << m->idx);
  if (!p->pending && chaos_on && faults_now() < max_faults && chance(step_crash_pm)) {
    /* a crash between recovery and activation: the targets keep
     * objects newer than their logs */
    trace("osd.%d crashes between recovery and activation", m->to);
    crash(m->to);
    return;
  }
  if (!p->pending)
    send_activate(m->to, m->pg);
}

static void on_activate(struct msg *m)
{
  int o = m->to, g = m->pg;
  struct sosd *x = &osds[o];
  struct msg *r;
  if (m->epoch < x->fence[g]) {
    reply(m, M_ACT_R, -ESTALE, &r);
    net_send(r);
    return;
  }
  x->fence[g] = m->epoch;
  struct pgs *s = &x->mem[g];
  memcpy(s->log, m->st.log, sizeof s->log);
  s->n = m->st.n;
  s->last = m->st.last;
  s->tail = m->st.tail;
  s->les = m->st.les;
  if (opt.recorded) {
    s->n_past = 0;
    x->went_active[g] = true;
  }
  /* an object recovery installed stays unlogged until a log entry as new
   * as it describes it, or (as the daemon's pg_unlogged_settle) the log's
   * trim point is not older than the installed version */
  for (int k = 0; k < NOBJ; k++) {
    for (size_t i = 0; i < s->n && (s->unlogged & (1u << k)); i++)
      if (s->log[i].name == obj_names[k] && pg_ver_cmp(s->log[i].ver, s->unl_ver[k]) >= 0)
        s->unlogged &= ~(1u << k);
    if (pg_ver_cmp(s->unl_ver[k], s->tail) <= 0)
      s->unlogged &= ~(1u << k);
  }
  reply(m, M_ACT_R, 0, &r);
  store_queue(o, g, r);
}

static void on_activate_reply(struct msg *m)
{
  struct prim *p = prim_for(m, P_ACT);
  if (!p)
    return;
  if (m->err) {
    peering_retry(m->to, m->pg, 10, "activation refused");
    return;
  }
  p->pending &= ~(1u << m->idx);
  if (!p->pending)
    go_active(m->to, m->pg);
}

static void on_client_reply(struct msg *m)
{
  int g = m->pg;
  struct cw *c = NULL;
  for (int i = 0; i < MAXINF && !c; i++)
    if (client_w[g][i].used && client_w[g][i].wid == m->wid)
      c = &client_w[g][i];
  if (!c)
    return;
  c->used = false;
  if (m->err)
    return;
  stats.acked++;
  struct wrec *a = &latest_acked[g][c->obj];
  trace("client: pg %d %s %s acknowledged at %" PRIu64 "'%" PRIu64, g,
        c->op == OP_WRITE ? "write" : "remove", obj_names[c->obj], m->ver.epoch, m->ver.v);
  if (pg_ver_cmp(m->ver, a->ver) > 0)
    *a = (struct wrec){ g, c->obj, c->op, c->val, m->ver };
}

static void dispatch(struct msg *m)
{
  if (m->to == CLIENT) {
    if (m->type == M_CREPLY)
      on_client_reply(m);
    return;
  }
  if (m->to >= NOSD)
    return;
  if (m->type == M_MAP) {
    osd_catch_up(m->to, m->epoch);
    return;
  }
  /* a request from a newer epoch: the OSD gets that map first */
  osd_catch_up(m->to, m->epoch);
  switch (m->type) {
  case M_CW: on_client_write(m); break;
  case M_REPOP: on_repop(m); break;
  case M_REPOP_R: on_repop_reply(m); break;
  case M_QUERY: on_query(m); break;
  case M_INFO: on_info(m); break;
  case M_PULL: on_pull(m); break;
  case M_PULL_R: on_pull_reply(m); break;
  case M_PUSH: on_push(m); break;
  case M_PUSH_R: on_push_reply(m); break;
  case M_ACT: on_activate(m); break;
  case M_ACT_R: on_activate_reply(m); break;
  default: break;
  }
}

/* A message from an OSD to itself: the local store path, no network. */
static void deliver_local(struct msg *m)
{
  switch (m->type) {
  case M_PUSH: on_push(m); break;
  case M_ACT: on_activate(m); break;
  default: dispatch(m); break;
  }
  free(m);
}

static void deliver(struct msg *m)
{
  bool ok = ep_alive(m->from) && ep_alive(m->to) && ep_side(m->from) == ep_side(m->to) &&
            ep_inc(m->from) == m->from_inc && ep_inc(m->to) == m->to_inc;
  if (!ok) {
    stats.dropped++;
    return;
  }
  stats.delivered++;
  if (opt.verbose && m->type != M_MAP)
    trace("  %s %d -> %d pg %d seq %" PRIu64 " err %d", mnames[m->type], m->from, m->to, m->pg,
          m->seq, m->err);
  dispatch(m);
}

/* ---- the monitor, the client, faults ----------------------------------------------------- */

static int64_t unreach_since[NOSD], down_since[NOSD];

static void monitor_tick(bool settle)
{
  struct map nm = hist[n_ep];
  bool changed = false;
  for (int o = 0; o < NOSD; o++) {
    bool reach = osds[o].alive && osds[o].side == 0;
    if (reach)
      unreach_since[o] = -1;
    else if (unreach_since[o] < 0)
      unreach_since[o] = now;
    if (nm.up[o] && !reach && now - unreach_since[o] >= DOWN_GRACE) {
      nm.up[o] = false;
      down_since[o] = now;
      changed = true;
    } else if (!nm.up[o] && nm.in[o] && !settle && now - down_since[o] >= OUT_DELAY) {
      nm.in[o] = false;
      changed = true;
    } else if (!nm.up[o] && reach) {
      nm.up[o] = nm.in[o] = true;
      nm.up_from[o] = n_ep + 1;
      changed = true;
    }
  }
  if (changed) {
    if (n_ep + 1 >= MAXEP) {
      fprintf(stderr, "peering-sim: too many epochs\n");
      exit(2);
    }
    hist[++n_ep] = nm;
    stats.epochs++;
    /* per OSD: up+in "", down+in "d", up+out "u", down+out "D" */
    char s[128] = "";
    for (int o = 0; o < NOSD; o++)
      snprintf(s + strlen(s), sizeof s - strlen(s), " %d%s", o,
               nm.up[o] ? nm.in[o] ? "" : "u" : nm.in[o] ? "d" : "D");
    for (int g = 0; g < NPG; g++) {
      int32_t a[SIZE];
      size_t na = acting_of(g, n_ep, a, NULL);
      snprintf(s + strlen(s), sizeof s - strlen(s), "  pg%d [", g);
      for (size_t i = 0; i < na; i++)
        snprintf(s + strlen(s), sizeof s - strlen(s), "%s%d", i ? "," : "", a[i]);
      snprintf(s + strlen(s), sizeof s - strlen(s), "]");
    }
    trace("mon: epoch %" PRIu64 ":%s", n_ep, s);
  }
  for (int o = 0; o < NOSD; o++) {
    struct msg *m = msg_new(M_MAP, MON, o, -1);
    m->epoch = n_ep;
    net_send(m);
  }
}

static void client_tick(void)
{
  for (int g = 0; g < NPG; g++) {
    for (int i = 0; i < MAXINF; i++)
      if (client_w[g][i].used && now - client_w[g][i].sent > 400)
        client_w[g][i].used = false;   /* given up; a late ack still counts */
    if (!chance(150))
      continue;
    int slot = -1;
    for (int i = 0; i < 4 && slot < 0; i++)
      if (!client_w[g][i].used)
        slot = i;
    int32_t a[SIZE];
    if (slot < 0 || !acting_of(g, n_ep, a, NULL))
      continue;
    struct cw *c = &client_w[g][slot];
    *c = (struct cw){ .used = true, .wid = ++next_wid, .pg = g, .obj = (int)rnd_below(NOBJ),
                      .op = chance(150) ? OP_REMOVE : OP_WRITE, .val = ++next_val, .sent = now };
    struct msg *m = msg_new(M_CW, CLIENT, a[0], g);
    m->wid = c->wid;
    m->obj = c->obj;
    m->op = c->op;
    m->val = c->val;
    net_send(m);
  }
}

static void fault_tick(void)
{
  if (!chance(12))
    return;
  int bad = (int)faults_now();
  int o = (int)rnd_below(NOSD);
  struct sosd *x = &osds[o];
  unsigned kind = rnd_below(10);
  if (!x->alive) {
    x->alive = true;
    trace("osd.%d restarts", o);
  } else if (x->side) {
    for (int k = 0; k < NOSD; k++)
      osds[k].side = 0;
    trace("partition healed");
  } else if ((unsigned)bad < max_faults && kind < 6) {
    crash(o);
  } else if ((unsigned)bad < max_faults) {
    /* cut o (and maybe a neighbour) off from the monitor and the rest */
    x->side = 1;
    stats.partitions++;
    int k = (int)rnd_below(NOSD);
    if ((unsigned)bad + 1 < max_faults && osds[k].alive && chance(500))
      osds[k].side = 1;
    trace("partition: osd.%d%s cut off", o, osds[k].side && k != o ? " and another" : "");
  }
}

static void osd_tick(int o)
{
  struct sosd *x = &osds[o];
  if (!x->alive)
    return;
  for (int g = 0; g < NPG; g++) {
    struct prim *p = &x->pr[g];
    if (!x->member[g] || x->acting[g][0] != o)
      continue;
    if (p->state == P_RETRY && now >= p->retry_at) {
      start_peering(o, g);
    } else if (p->state != P_ACTIVE && p->state != P_RETRY && p->state != P_NONE &&
               now > p->deadline) {
      peering_retry(o, g, 1, "stuck");
    } else if (p->state == P_ACTIVE) {
      for (int i = 0; i < MAXINF; i++)
        if (p->w[i].used && now - p->w[i].start > WRITE_TIMEOUT) {
          peering_retry(o, g, 1, "a write timed out");
          break;
        }
    }
  }
}

/* ---- one seed ------------------------------------------------------------------------------- */

static bool all_clean(void)
{
  for (int g = 0; g < NPG; g++) {
    int32_t a[SIZE];
    size_t na = acting_of(g, n_ep, a, NULL);
    if (na != SIZE)
      return false;
    struct sosd *x = &osds[a[0]];
    if (!x->alive || x->epoch != n_ep || x->pr[g].state != P_ACTIVE)
      return false;
    for (int i = 0; i < MAXINF; i++)
      if (x->pr[g].w[i].used || client_w[g][i].used)
        return false;
  }
  return true;
}

static void final_check(void)
{
  for (int g = 0; g < NPG; g++) {
    int32_t a[SIZE];
    size_t na = acting_of(g, n_ep, a, NULL);
    for (size_t i = 0; i < na; i++) {
      char why[256];
      const struct pgs *s = &osds[a[i]].dur[g];
      if (!holds_acked(g, s, why, sizeof why))
        fail(true, "pg %d clean, osd.%d (durable): %s", g, a[i], why);
      const struct pgs *s0 = &osds[a[0]].dur[g];
      for (int k = 0; k < NOBJ; k++)
        if (s->obj[k].exists != s0->obj[k].exists ||
            (s->obj[k].exists && (pg_ver_cmp(s->obj[k].ver, s0->obj[k].ver) ||
                                  s->obj[k].val != s0->obj[k].val)))
          fail(true, "pg %d clean but object %s differs: osd.%d %" PRIu64 "'%" PRIu64
               " vs osd.%d %" PRIu64 "'%" PRIu64, g, obj_names[k], a[0], s0->obj[k].ver.epoch,
               s0->obj[k].ver.v, a[i], s->obj[k].ver.epoch, s->obj[k].ver.v);
      if (pg_ver_cmp(s->last, s0->last))
        fail(true, "pg %d clean but osd.%d's last differs from the primary's", g, a[i]);
    }
  }
}

static void run_seed(uint64_t seed)
{
  cur_seed = seed;
  rng_state = seed * 0x2545F4914F6CDD1Dull + 1;
  now = 0;
  trace_n = 0;
  while (heap_n) {
    struct ev e = heap_pop();
    ev_free(&e);
  }
  for (int o = 0; o < NOSD; o++)
    for (int g = 0; g < NPG; g++)
      pplan_items_free(osds[o].pr[g].items, osds[o].pr[g].n_items);
  memset(osds, 0, sizeof osds);
  memset(fifo_t, 0, sizeof fifo_t);
  memset(latest_acked, 0, sizeof latest_acked);
  memset(client_w, 0, sizeof client_w);
  n_assigned = 0;
  for (int g = 0; g < NPG; g++) {
    for (int k = 0; k < NOSD; k++)
      perm[g][k] = k;
    for (int k = NOSD - 1; k > 0; k--) {
      int j = (int)rnd_below((unsigned)k + 1), t = perm[g][k];
      perm[g][k] = perm[g][j];
      perm[g][j] = t;
    }
  }
  drop_pm = rnd_below(40);
  max_delay = 2 + (int)rnd_below(12);
  max_faults = 1 + rnd_below(4);
  step_crash_pm = rnd_below(300);
  n_ep = 1;
  memset(&hist[0], 0, sizeof hist[0]);
  for (int o = 0; o < NOSD; o++) {
    hist[1].up[o] = hist[1].in[o] = true;
    hist[1].up_from[o] = 1;
    osds[o].alive = true;
    unreach_since[o] = -1;
  }
  trace("seed %" PRIu64 ": drop %u/1000, delay <= %d, faults <= %u, step crash %u/1000, pg0 [%d %d %d ...] pg1 [%d %d %d ...]",
        seed, drop_pm, max_delay, max_faults, step_crash_pm, perm[0][0], perm[0][1], perm[0][2], perm[1][0],
        perm[1][1], perm[1][2]);
  for (int o = 0; o < NOSD; o++)
    osd_catch_up(o, 1);
  int64_t settle_start = 0;
  for (now = 0;; now++) {
    bool chaos = now < CHAOS_TICKS;
    chaos_on = chaos;
    if (!chaos && !settle_start) {
      settle_start = now;
      drop_pm = 0;
      for (int o = 0; o < NOSD; o++) {
        osds[o].side = 0;
        osds[o].alive = true;
      }
      trace("heal: every OSD back, no more drops");
    }
    while (heap_n && heap[0].t <= now) {
      struct ev e = heap_pop();
      if (e.m) {
        deliver(e.m);
      } else if (osds[e.osd].alive && osds[e.osd].inc == e.inc) {
        osds[e.osd].dur[e.pg] = *e.snap;
        if (e.cont) {
          if (e.cont->to == e.osd) {
            deliver_local(e.cont);
            e.cont = NULL;
          } else {
            net_send(e.cont);
            e.cont = NULL;
          }
        }
      }
      ev_free(&e);
    }
    if (now % MON_TICK == 0)
      monitor_tick(!chaos);
    if (chaos) {
      fault_tick();
      if (now < CHAOS_TICKS - 200)
        client_tick();
    } else {
      for (int g = 0; g < NPG; g++)
        for (int i = 0; i < MAXINF; i++)
          if (client_w[g][i].used && now - client_w[g][i].sent > 400)
            client_w[g][i].used = false;
    }
    for (int o = 0; o < NOSD; o++)
      osd_tick(o);
    if (!chaos && now % 10 == 0 && all_clean())
      break;
    if (now - settle_start > SETTLE_TICKS && settle_start)
      fail(false, "the PGs did not become active+clean within %d ticks after healing", SETTLE_TICKS);
  }
  if ((uint64_t)(now - settle_start) > stats.max_settle)
    stats.max_settle = (uint64_t)(now - settle_start);
  final_check();
}

static void usage(void)
{
  fprintf(stderr, "usage: peering-sim [--seed N | --seeds N [--start N]] [--verbose] [--recorded-intervals | --map-history]\n"
                  "                   [--bug no-past-intervals|ack-before-all|choose-oldest|no-divergent|\n"
                  "                          no-unlogged|union-intervals]\n"
                  "                   [--expect-violation]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  uint64_t start = 1, count = 100;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if ((!strcmp(a, "--seed") || !strcmp(a, "--seeds") || !strcmp(a, "--start")) && v) {
      uint64_t n = strtoull(v, &end, 0);
      if (!*v || *end) {
        fprintf(stderr, "peering-sim: %s wants a number, not '%s'\n", a, v);
        return 2;
      }
      if (!strcmp(a, "--seed")) {
        start = n;
        count = 1;
      } else if (!strcmp(a, "--seeds")) {
        count = n;
      } else {
        start = n;
      }
      i++;
    } else if (!strcmp(a, "--verbose")) {
      opt.verbose = true;
    } else if (!strcmp(a, "--expect-violation")) {
      opt.expect_violation = true;
    } else if (!strcmp(a, "--recorded-intervals")) {
      opt.recorded = true;
    } else if (!strcmp(a, "--map-history")) {
      opt.recorded = opt.maphist = true;
    } else if (!strcmp(a, "--bug") && v) {
      size_t b;
      for (b = 1; b < sizeof bug_names / sizeof *bug_names; b++)
        if (!strcmp(v, bug_names[b]))
          break;
      if (b == sizeof bug_names / sizeof *bug_names) {
        fprintf(stderr, "peering-sim: unknown bug '%s'\n", v);
        usage();
      }
      opt.bug = (enum sim_bug)b;
      i++;
    } else {
      usage();
    }
  }
  for (int k = 0; k < NOBJ; k++)
    snprintf(obj_names[k], sizeof obj_names[k], "o%d", k);
  pplan_bug = opt.bug == BUG_NO_PAST_INTERVALS ? PPLAN_BUG_NO_PAST_INTERVALS
              : opt.bug == BUG_CHOOSE_OLDEST   ? PPLAN_BUG_CHOOSE_OLDEST
              : opt.bug == BUG_NO_DIVERGENT    ? PPLAN_BUG_NO_DIVERGENT
              : opt.bug == BUG_NO_UNLOGGED     ? PPLAN_BUG_NO_UNLOGGED
              : opt.bug == BUG_UNION_INTERVALS ? PPLAN_BUG_UNION_INTERVALS
                                               : PPLAN_BUG_NONE;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t s = start; s < start + count; s++)
    run_seed(s);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  while (heap_n) {
    struct ev e = heap_pop();
    ev_free(&e);
  }
  free(heap);
  for (int o = 0; o < NOSD; o++)
    for (int g = 0; g < NPG; g++)
      pplan_items_free(osds[o].pr[g].items, osds[o].pr[g].n_items);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("peering-sim: %" PRIu64 " seeds from %" PRIu64 " in %.1f s: %" PRIu64 " epochs, %" PRIu64
         " crashes, %" PRIu64 " partitions, %" PRIu64 " writes (%" PRIu64 " acknowledged), %" PRIu64
         " peerings, %" PRIu64 " activations, %" PRIu64 " waits for a past interval (down), %" PRIu64
         " backfills, %" PRIu64 " recoveries by log, %" PRIu64 " objects recovered, %" PRIu64
         " messages delivered, %" PRIu64 " dropped, longest settle %" PRIu64 " ticks\n",
         count, start, secs, stats.epochs, stats.crashes, stats.partitions, stats.writes,
         stats.acked, stats.peerings, stats.activations, stats.downs, stats.backfills,
         stats.log_recoveries, stats.items, stats.delivered, stats.dropped, stats.max_settle);
  if (opt.expect_violation) {
    fprintf(stderr, "peering-sim: --bug %s was not caught in %" PRIu64 " seeds\n",
            bug_names[opt.bug], count);
    return 1;
  }
  return 0;
}
