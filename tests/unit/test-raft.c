/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for mon/raft.c: targeted scenarios driven by hand through a
 * tiny in-memory harness (a message queue the test delivers explicitly,
 * a stored log, an applied list).  The randomized, adversarial coverage
 * lives in tests/sim/raft-sim.c; these pin down single behaviours.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mon/raft.h"

#define N_MAX 5
#define Q_MAX 4096
#define LOG_MAX 256

struct tnode {
  raft *r;
  uint32_t id;
  uint64_t term;
  uint32_t vote;
  struct { uint64_t term; uint32_t type; uint64_t cmd; } log[LOG_MAX];
  uint64_t last;                /* stored log: 1..last (index 0 unused) */
  uint64_t snap_index, snap_term;
  uint64_t applied[LOG_MAX];    /* applied command per index (0 = noop) */
  uint64_t n_applied, applied_index;
  int installs;
  uint64_t reads_done[16];
  int read_err[16];
  int n_reads_done;
};

struct qmsg {
  struct raft_msg m;
  struct raft_entry ents[64];
  uint64_t data[64];
  uint64_t snap;
};

static struct tnode tn[N_MAX];
static size_t n_tn;
static struct qmsg *q;
static size_t n_q;

static int t_persist_state(void *ctx, uint64_t term, uint32_t vote)
{
  struct tnode *n = ctx;
  n->term = term;
  n->vote = vote;
  return 0;
}

static int t_persist_entries(void *ctx, const struct raft_entry *es, size_t c)
{
  struct tnode *n = ctx;
  assert_true(c > 0);
  assert_true(es[0].index <= n->last + 1);
  n->last = es[0].index - 1;
  for (size_t i = 0; i < c; i++) {
    uint64_t idx = es[i].index;
    assert_true(idx < LOG_MAX);
    n->log[idx].term = es[i].term;
    n->log[idx].type = es[i].type;
    n->log[idx].cmd = 0;
    if (es[i].len == sizeof(uint64_t))
      memcpy(&n->log[idx].cmd, es[i].data, sizeof(uint64_t));
    n->last = idx;
  }
  return 0;
}

static void t_send(void *ctx, const struct raft_msg *m)
{
  (void)ctx;
  assert_true(n_q < Q_MAX);
  assert_true(m->n_entries <= 64);
  struct qmsg *x = &q[n_q++];
  x->m = *m;
  for (size_t i = 0; i < m->n_entries; i++) {
    x->ents[i] = m->entries[i];
    x->data[i] = 0;
    if (m->entries[i].len == sizeof(uint64_t))
      memcpy(&x->data[i], m->entries[i].data, sizeof(uint64_t));
    x->ents[i].data = m->entries[i].len ? &x->data[i] : NULL;
  }
  x->m.entries = m->n_entries ? x->ents : NULL;
  if (m->snap_len == sizeof(uint64_t)) {
    memcpy(&x->snap, m->snap_data, sizeof x->snap);
    x->m.snap_data = &x->snap;
  }
}

static void t_apply(void *ctx, const struct raft_entry *e)
{
  struct tnode *n = ctx;
  assert_int_equal(e->index, n->applied_index + 1);
  uint64_t cmd = 0;
  if (e->len == sizeof cmd)
    memcpy(&cmd, e->data, sizeof cmd);
  n->applied[e->index] = cmd;
  n->applied_index = e->index;
  n->n_applied++;
}

/* The snapshot is just the applied index (8 bytes). */
static int t_snapshot_get(void *ctx, uint64_t *index, uint64_t *term,
                          void **data, size_t *len)
{
  struct tnode *n = ctx;
  uint64_t *p = malloc(sizeof *p);
  if (!p)
    return -ENOMEM;
  *p = n->applied_index;
  *index = n->applied_index;
  *term = n->applied_index == n->snap_index ? n->snap_term
                                             : n->log[n->applied_index].term;
  *data = p;
  *len = sizeof *p;
  return 0;
}

static int t_snapshot_install(void *ctx, uint64_t index, uint64_t term,
                              const void *data, size_t len)
{
  struct tnode *n = ctx;
  uint64_t v;
  assert_int_equal(len, sizeof v);
  memcpy(&v, data, sizeof v);
  assert_int_equal(v, index);
  n->snap_index = index;
  n->snap_term = term;
  n->applied_index = index;
  n->last = index;
  n->installs++;
  return 0;
}

static void t_read_done(void *ctx, uint64_t id, int err)
{
  struct tnode *n = ctx;
  assert_true(n->n_reads_done < 16);
  n->reads_done[n->n_reads_done] = id;
  n->read_err[n->n_reads_done++] = err;
}

static const struct raft_io t_io = {
  t_persist_state, t_persist_entries, t_send, t_apply, t_snapshot_get,
  t_snapshot_install, t_read_done,
};

static struct raft_config cfg_for(uint32_t id, size_t n)
{
  struct raft_config c = {
    .id = id, .n_peers = n, .election_ticks = 10, .heartbeat_ticks = 2,
    .seed = 42, .max_append_entries = 4,
  };
  for (size_t i = 0; i < n; i++)
    c.peers[i] = (uint32_t)i + 1;
  return c;
}

static int setup(void **state)
{
  (void)state;
  memset(tn, 0, sizeof tn);
  n_tn = 0;
  q = calloc(Q_MAX, sizeof *q);
  n_q = 0;
  return q ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < n_tn; i++)
    raft_free(tn[i].r);
  free(q);
  return 0;
}

static void cluster(size_t n)
{
  n_tn = n;
  for (size_t i = 0; i < n; i++) {
    struct raft_config c = cfg_for((uint32_t)i + 1, n);
    c.seed = 1000 + i;
    tn[i].id = (uint32_t)i + 1;
    tn[i].r = raft_new(&c, &t_io, &tn[i], NULL);
    assert_non_null(tn[i].r);
  }
}

/* Deliver queued messages (and those they cause) except to/from `cut`
 * (0 = none).  Returns how many were delivered. */
static size_t deliver(uint32_t cut)
{
  size_t delivered = 0;
  while (n_q > 0) {
    struct qmsg *batch = malloc(n_q * sizeof *batch);
    assert_non_null(batch);
    size_t nb = n_q;
    memcpy(batch, q, nb * sizeof *batch);
    n_q = 0;
    for (size_t i = 0; i < nb; i++) {
      struct qmsg *x = &batch[i];
      x->m.entries = x->m.n_entries ? x->ents : NULL;
      for (size_t k = 0; k < x->m.n_entries; k++)
        x->ents[k].data = x->ents[k].len ? &x->data[k] : NULL;
      if (x->m.snap_len)
        x->m.snap_data = &x->snap;
      if (cut && (x->m.from == cut || x->m.to == cut))
        continue;
      assert_int_equal(raft_step(tn[x->m.to - 1].r, &x->m), 0);
      delivered++;
    }
    free(batch);
  }
  return delivered;
}

static void tick_all(int times, uint32_t cut)
{
  for (int t = 0; t < times; t++) {
    for (size_t i = 0; i < n_tn; i++)
      raft_tick(tn[i].r);
    deliver(cut);
  }
}

static int leader_slot(void)
{
  int l = -1;
  for (size_t i = 0; i < n_tn; i++)
    if (raft_is_leader(tn[i].r)) {
      assert_int_equal(l, -1);  /* at most one */
      l = (int)i;
    }
  return l;
}

/* ------------------------------------------------------------------------ */

static void test_single_node_commits(void **state)
{
  (void)state;
  cluster(1);
  for (int t = 0; t < 20 && !raft_is_leader(tn[0].r); t++)
    raft_tick(tn[0].r);
  assert_true(raft_is_leader(tn[0].r));
  assert_int_equal(raft_leader(tn[0].r), 1);
  assert_int_equal(raft_term(tn[0].r), 1);
  assert_int_equal(tn[0].term, 1);      /* persisted */
  assert_int_equal(tn[0].vote, 1);
  assert_int_equal(raft_commit_index(tn[0].r), 1);   /* the NOOP */
  uint64_t cmd = 77, idx = 0, term = 0;
  assert_int_equal(raft_propose(tn[0].r, &cmd, sizeof cmd, &idx, &term), 0);
  assert_int_equal(idx, 2);
  assert_int_equal(term, 1);
  assert_int_equal(raft_commit_index(tn[0].r), 2);
  assert_int_equal(raft_applied_index(tn[0].r), 2);
  assert_int_equal(tn[0].applied[2], 77);
  assert_int_equal(tn[0].last, 2);
  /* a read completes at once */
  assert_int_equal(raft_read_index(tn[0].r, 5), 0);
  assert_int_equal(tn[0].n_reads_done, 1);
  assert_int_equal(tn[0].reads_done[0], 5);
  assert_int_equal(tn[0].read_err[0], 0);
  assert_int_equal(n_q, 0);
}

static void test_three_node_election(void **state)
{
  (void)state;
  cluster(3);
  int t;
  for (t = 0; t < 40 && leader_slot() < 0; t++)
    tick_all(1, 0);
  int l = leader_slot();
  assert_true(l >= 0);
  tick_all(4, 0);                       /* heartbeats carry the commit */
  assert_int_equal(leader_slot(), l);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(raft_leader(tn[i].r), (uint32_t)l + 1);
    assert_int_equal(raft_term(tn[i].r), raft_term(tn[l].r));
    assert_int_equal(raft_commit_index(tn[i].r), 1);
    assert_int_equal(raft_applied_index(tn[i].r), 1);
  }
  /* PreVote: the winner needed only one real term */
  assert_int_equal(raft_term(tn[l].r), 1);
  /* followers refuse proposals */
  uint64_t cmd = 1;
  assert_int_equal(raft_propose(tn[(l + 1) % 3].r, &cmd, sizeof cmd, NULL,
                                NULL), -ENOTCONN);
  assert_int_equal(raft_read_index(tn[(l + 1) % 3].r, 1), -ENOTCONN);
  /* a proposal replicates and commits everywhere */
  assert_int_equal(raft_propose(tn[l].r, &cmd, sizeof cmd, NULL, NULL), 0);
  tick_all(4, 0);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(raft_applied_index(tn[i].r), 2);

  /* CheckQuorum: a leader cut off from everyone steps down, the others
   * elect a new one in a later term */
  uint64_t old_term = raft_term(tn[l].r);
  tick_all(60, (uint32_t)l + 1);
  assert_false(raft_is_leader(tn[l].r));
  int l2 = leader_slot();
  assert_true(l2 >= 0 && l2 != l);
  assert_true(raft_term(tn[l2].r) > old_term);
  /* the isolated node did not inflate its term (PreVote) */
  assert_int_equal(raft_term(tn[l].r), old_term);
}

static void test_stale_term_append_rejected(void **state)
{
  (void)state;
  n_tn = 3;
  struct raft_entry es[1] = { { .term = 2, .index = 1 } };
  struct raft_persisted init = { .term = 5, .entries = es, .n_entries = 1 };
  struct raft_config c = cfg_for(1, 3);
  tn[0].id = 1;
  tn[0].r = raft_new(&c, &t_io, &tn[0], &init);
  tn[1].r = raft_new((c.id = 2, &c), &t_io, &tn[1], NULL);
  tn[2].r = raft_new((c.id = 3, &c), &t_io, &tn[2], NULL);
  uint64_t data = 9;
  struct raft_entry ne = { .term = 3, .index = 1, .len = 8, .data = &data };
  struct raft_msg m = {
    .type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 3,
    .prev_index = 0, .prev_term = 0, .entries = &ne, .n_entries = 1,
    .commit = 1,
  };
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(n_q, 1);
  assert_int_equal(q[0].m.type, RAFT_MSG_APPEND_RESP);
  assert_int_equal(q[0].m.to, 2);
  assert_true(q[0].m.reject);
  assert_int_equal(q[0].m.term, 5);      /* tells the stale leader our term */
  assert_int_equal(raft_term(tn[0].r), 5);
  assert_int_equal(raft_last_index(tn[0].r), 1);
  assert_int_equal(raft_commit_index(tn[0].r), 0);
  assert_int_equal(tn[0].last, 0);       /* nothing persisted */
  /* a node learns the higher term from such an answer */
  n_q = 0;
  struct raft_msg v = { .type = RAFT_MSG_VOTE, .from = 3, .to = 2,
                        .term = 3 };
  assert_int_equal(raft_step(tn[1].r, &v), 0);  /* node 2 at term 3 */
  assert_int_equal(raft_term(tn[1].r), 3);
  struct raft_msg resp = { .type = RAFT_MSG_APPEND_RESP, .from = 1, .to = 2,
                           .term = 5, .reject = true };
  assert_int_equal(raft_step(tn[1].r, &resp), 0);
  assert_int_equal(raft_term(tn[1].r), 5);
  assert_int_equal(tn[1].term, 5);
}

static void test_log_conflict_truncation(void **state)
{
  (void)state;
  n_tn = 1;
  /* follower log: 1/1 2/1 3/2 4/2 (entries 3 and 4 from a deposed leader) */
  uint64_t d[4] = { 11, 12, 13, 14 };
  struct raft_entry es[4];
  for (int i = 0; i < 4; i++) {
    es[i] = (struct raft_entry){ .term = i < 2 ? 1 : 2, .index = i + 1,
                                 .len = 8, .data = &d[i] };
    tn[0].log[i + 1].term = es[i].term;
    tn[0].log[i + 1].cmd = d[i];
  }
  tn[0].last = 4;
  struct raft_persisted init = { .term = 3, .entries = es, .n_entries = 4 };
  struct raft_config c = cfg_for(1, 3);
  tn[0].id = 1;
  tn[0].r = raft_new(&c, &t_io, &tn[0], &init);
  assert_non_null(tn[0].r);
  assert_int_equal(raft_last_index(tn[0].r), 4);

  /* leader of term 3 probes at 4/3: rejected with a hint that skips the
   * whole of term 2 */
  struct raft_msg m = { .type = RAFT_MSG_APPEND, .from = 2, .to = 1,
                        .term = 3, .prev_index = 4, .prev_term = 3 };
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(n_q, 1);
  assert_true(q[0].m.reject);
  assert_int_equal(q[0].m.match_index, 2);
  n_q = 0;

  /* entries 3/3 4/3 5/3 after 2/1: 3 and 4 are replaced */
  uint64_t nd[3] = { 23, 24, 25 };
  struct raft_entry ne[3];
  for (int i = 0; i < 3; i++)
    ne[i] = (struct raft_entry){ .term = 3, .index = 3 + i, .len = 8,
                                 .data = &nd[i] };
  m.prev_index = 2;
  m.prev_term = 1;
  m.entries = ne;
  m.n_entries = 3;
  m.commit = 4;
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(n_q, 1);
  assert_false(q[0].m.reject);
  assert_int_equal(q[0].m.match_index, 5);
  assert_int_equal(raft_last_index(tn[0].r), 5);
  assert_int_equal(tn[0].last, 5);
  assert_int_equal(tn[0].log[3].term, 3);
  assert_int_equal(tn[0].log[3].cmd, 23);
  assert_int_equal(tn[0].log[4].cmd, 24);
  assert_int_equal(tn[0].log[2].cmd, 12);
  /* commit = min(leader commit, last new entry) */
  assert_int_equal(raft_commit_index(tn[0].r), 4);
  assert_int_equal(tn[0].applied[3], 23);
  assert_int_equal(raft_applied_index(tn[0].r), 4);

  /* a duplicate of an old, shorter APPEND must not truncate anything */
  n_q = 0;
  m.n_entries = 1;
  m.commit = 3;
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(raft_last_index(tn[0].r), 5);
  assert_int_equal(raft_commit_index(tn[0].r), 4);
}

static void test_snapshot_install(void **state)
{
  (void)state;
  /* follower side: an empty node receives a snapshot */
  n_tn = 1;
  struct raft_config c = cfg_for(1, 3);
  tn[0].id = 1;
  tn[0].r = raft_new(&c, &t_io, &tn[0], NULL);
  uint64_t snap = 10;
  struct raft_msg m = { .type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 1,
                        .term = 2, .snap_index = 10, .snap_term = 2,
                        .snap_data = &snap, .snap_len = 8, .read_seq = 3 };
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(tn[0].installs, 1);
  assert_int_equal(raft_first_index(tn[0].r), 11);
  assert_int_equal(raft_last_index(tn[0].r), 10);
  assert_int_equal(raft_commit_index(tn[0].r), 10);
  assert_int_equal(raft_applied_index(tn[0].r), 10);
  assert_int_equal(raft_leader(tn[0].r), 2);
  assert_int_equal(n_q, 1);
  assert_int_equal(q[0].m.type, RAFT_MSG_SNAPSHOT_RESP);
  assert_int_equal(q[0].m.match_index, 10);
  assert_int_equal(q[0].m.read_seq, 3);
  /* the log continues after the snapshot */
  n_q = 0;
  uint64_t d = 5;
  struct raft_entry e = { .term = 2, .index = 11, .len = 8, .data = &d };
  struct raft_msg a = { .type = RAFT_MSG_APPEND, .from = 2, .to = 1,
                        .term = 2, .prev_index = 10, .prev_term = 2,
                        .entries = &e, .n_entries = 1, .commit = 11 };
  assert_int_equal(raft_step(tn[0].r, &a), 0);
  assert_false(q[0].m.reject);
  assert_int_equal(raft_applied_index(tn[0].r), 11);
  assert_int_equal(tn[0].applied[11], 5);
  /* a stale, older snapshot is answered without reinstalling */
  n_q = 0;
  assert_int_equal(raft_step(tn[0].r, &m), 0);
  assert_int_equal(tn[0].installs, 1);
  assert_int_equal(q[0].m.match_index, 11);
  raft_free(tn[0].r);
  memset(tn, 0, sizeof tn);
  n_q = 0;

  /* leader side: a node that missed compacted entries gets a snapshot */
  cluster(3);
  int l;
  for (int t = 0; t < 40 && leader_slot() < 0; t++)
    tick_all(1, 0);
  l = leader_slot();
  assert_true(l >= 0);
  uint32_t lag = (uint32_t)((l + 1) % 3) + 1;
  for (uint64_t cmd = 100; cmd < 120; cmd++) {
    assert_int_equal(raft_propose(tn[l].r, &cmd, sizeof cmd, NULL, NULL), 0);
    tick_all(1, lag);
  }
  tick_all(3, lag);
  uint64_t applied = raft_applied_index(tn[l].r);
  assert_int_equal(applied, 21);
  tn[l].snap_index = applied;
  tn[l].snap_term = tn[l].log[applied].term;
  assert_int_equal(raft_compact(tn[l].r, applied), 0);
  assert_int_equal(raft_first_index(tn[l].r), 22);
  assert_int_equal(raft_compact(tn[l].r, applied + 5), -EINVAL);
  tick_all(4, 0);
  struct tnode *f = &tn[lag - 1];
  assert_int_equal(f->installs, 1);
  assert_int_equal(raft_applied_index(f->r), 21);
  assert_int_equal(raft_first_index(f->r), 22);
  uint64_t cmd = 500;
  assert_int_equal(raft_propose(tn[l].r, &cmd, sizeof cmd, NULL, NULL), 0);
  tick_all(4, 0);
  assert_int_equal(raft_applied_index(f->r), 22);
  assert_int_equal(f->applied[22], 500);
}

static void test_read_index_waits_for_own_term(void **state)
{
  (void)state;
  cluster(3);
  /* elect node 1 by hand: PreVote then Vote, holding back its APPENDs */
  int t;
  for (t = 0; t < 40; t++) {
    raft_tick(tn[0].r);
    if (n_q > 0)
      break;
  }
  assert_true(n_q > 0);             /* node 1 timed out first: PREVOTEs */
  while (!raft_is_leader(tn[0].r)) {
    /* deliver only election traffic */
    struct qmsg x = q[0];
    memmove(q, q + 1, (n_q - 1) * sizeof *q);
    n_q--;
    x.m.entries = NULL;
    assert_true(x.m.type != RAFT_MSG_APPEND);
    assert_int_equal(raft_step(tn[x.m.to - 1].r, &x.m), 0);
  }
  assert_int_equal(raft_commit_index(tn[0].r), 0);
  /* the NOOP is not committed: the read must wait for it, even once a
   * majority confirmed the leadership */
  n_q = 0;                          /* the NOOP's APPENDs are lost */
  assert_int_equal(raft_read_index(tn[0].r, 7), 0);
  assert_true(n_q > 0);             /* a heartbeat round for the read */
  assert_int_equal(q[0].m.read_seq, 1);
  n_q = 0;
  uint64_t term = raft_term(tn[0].r);
  struct raft_msg ack = { .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1,
                          .term = term, .match_index = 0, .read_seq = 1 };
  assert_int_equal(raft_step(tn[0].r, &ack), 0);
  assert_int_equal(tn[0].n_reads_done, 0);
  /* node 2 now stores the NOOP: it commits, the read completes */
  ack.match_index = 1;
  assert_int_equal(raft_step(tn[0].r, &ack), 0);
  assert_int_equal(raft_commit_index(tn[0].r), 1);
  assert_int_equal(tn[0].n_reads_done, 1);
  assert_int_equal(tn[0].reads_done[0], 7);
  assert_int_equal(tn[0].read_err[0], 0);
  assert_true(tn[0].applied_index >= 1);

  /* an answer to an older heartbeat does not confirm a newer read */
  n_q = 0;
  assert_int_equal(raft_read_index(tn[0].r, 9), 0);
  ack.read_seq = 1;
  assert_int_equal(raft_step(tn[0].r, &ack), 0);
  assert_int_equal(tn[0].n_reads_done, 1);
  ack.read_seq = 2;
  assert_int_equal(raft_step(tn[0].r, &ack), 0);
  assert_int_equal(tn[0].n_reads_done, 2);
  assert_int_equal(tn[0].reads_done[1], 9);
  assert_int_equal(tn[0].read_err[1], 0);

  /* a read needs a fresh heartbeat round: nothing answers -> no result */
  assert_int_equal(raft_read_index(tn[0].r, 8), 0);
  n_q = 0;                          /* the heartbeats are lost */
  assert_int_equal(tn[0].n_reads_done, 2);
  /* losing leadership fails the pending read with -EAGAIN */
  struct raft_msg up = { .type = RAFT_MSG_APPEND_RESP, .from = 3, .to = 1,
                         .term = term + 1, .reject = true };
  assert_int_equal(raft_step(tn[0].r, &up), 0);
  assert_false(raft_is_leader(tn[0].r));
  assert_int_equal(tn[0].n_reads_done, 3);
  assert_int_equal(tn[0].reads_done[2], 8);
  assert_int_equal(tn[0].read_err[2], -EAGAIN);
}

static void test_no_commit_of_old_term_by_counting(void **state)
{
  (void)state;
  n_tn = 3;
  uint64_t d = 1;
  struct raft_entry e1[2] = {
    { .term = 1, .index = 1, .len = 8, .data = &d },
    { .term = 2, .index = 2, .len = 8, .data = &d },
  };
  for (uint32_t i = 0; i < 3; i++) {
    struct raft_config c = cfg_for(i + 1, 3);
    c.max_append_entries = 1;
    c.seed = i == 0 ? 1 : 1000 + i;
    struct raft_persisted init = { .term = 2, .entries = e1,
                                   .n_entries = i == 0 ? 2 : 1 };
    tn[i].id = i + 1;
    tn[i].last = init.n_entries;
    tn[i].r = raft_new(&c, &t_io, &tn[i], &init);
    assert_non_null(tn[i].r);
  }
  /* node 1 (the only one holding 2/2) wins term 3 */
  while (n_q == 0)
    raft_tick(tn[0].r);
  while (!raft_is_leader(tn[0].r)) {
    assert_true(n_q > 0);
    struct qmsg x = q[0];
    memmove(q, q + 1, (n_q - 1) * sizeof *q);
    n_q--;
    assert_int_equal(raft_step(tn[x.m.to - 1].r, &x.m), 0);
  }
  assert_int_equal(raft_term(tn[0].r), 3);
  /* deliver one message at a time: the commit index jumps from 0 straight
   * to the NOOP of term 3, never stopping at 2/2 */
  int steps = 0;
  while (n_q > 0 && steps++ < 200) {
    struct qmsg x = q[0];
    memmove(q, q + 1, (n_q - 1) * sizeof *q);
    n_q--;
    x.m.entries = x.m.n_entries ? x.ents : NULL;
    for (size_t k = 0; k < x.m.n_entries; k++)
      x.ents[k].data = x.ents[k].len ? &x.data[k] : NULL;
    assert_int_equal(raft_step(tn[x.m.to - 1].r, &x.m), 0);
    uint64_t c = raft_commit_index(tn[0].r);
    assert_true(c == 0 || c >= 3);
    if (x.m.to == 2 && x.m.type == RAFT_MSG_APPEND && x.m.n_entries == 1 &&
        x.ents[0].index == 2)
      assert_int_equal(c, 0);   /* 2/2 reached a majority: still 0 */
  }
  assert_int_equal(raft_commit_index(tn[0].r), 3);
}

static void test_malformed_rejected(void **state)
{
  (void)state;
  n_tn = 1;
  struct raft_config c = cfg_for(1, 3);
  tn[0].id = 1;
  tn[0].r = raft_new(&c, &t_io, &tn[0], NULL);
  raft *r = tn[0].r;
  struct raft_msg ok = { .type = RAFT_MSG_APPEND, .from = 2, .to = 1,
                         .term = 1 };
  struct raft_msg m;

  m = ok; m.type = 0;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.type = 99;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.from = 9;                       /* not a member */
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.from = 1;                       /* from ourselves */
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.to = 3;                         /* not for us */
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.term = 0;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  assert_int_equal(raft_step(r, NULL), -EINVAL);

  static struct raft_entry many[RAFT_MSG_MAX_ENTRIES + 1];
  for (size_t i = 0; i < RAFT_MSG_MAX_ENTRIES + 1; i++)
    many[i] = (struct raft_entry){ .term = 1, .index = i + 1 };
  m = ok; m.entries = many; m.n_entries = RAFT_MSG_MAX_ENTRIES + 1;
  assert_int_equal(raft_step(r, &m), -EINVAL);      /* too many */
  m = ok; m.entries = NULL; m.n_entries = 2;
  assert_int_equal(raft_step(r, &m), -EINVAL);      /* no array */

  struct raft_entry gap[2] = { { .term = 1, .index = 1 },
                               { .term = 1, .index = 3 } };
  m = ok; m.entries = gap; m.n_entries = 2;
  assert_int_equal(raft_step(r, &m), -EINVAL);      /* not contiguous */
  struct raft_entry off[1] = { { .term = 1, .index = 5 } };
  m = ok; m.entries = off; m.n_entries = 1;
  assert_int_equal(raft_step(r, &m), -EINVAL);      /* not after prev */
  struct raft_entry future[1] = { { .term = 4, .index = 1 } };
  m = ok; m.entries = future; m.n_entries = 1;
  assert_int_equal(raft_step(r, &m), -EINVAL);      /* term above msg's */
  struct raft_entry badtype[1] = { { .term = 1, .index = 1, .type = 7 } };
  m = ok; m.entries = badtype; m.n_entries = 1;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  struct raft_entry nodata[1] = { { .term = 1, .index = 1, .len = 4 } };
  m = ok; m.entries = nodata; m.n_entries = 1;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.type = RAFT_MSG_SNAPSHOT; m.snap_index = 0;
  assert_int_equal(raft_step(r, &m), -EINVAL);
  m = ok; m.type = RAFT_MSG_VOTE; m.n_entries = 1; m.entries = many;
  assert_int_equal(raft_step(r, &m), -EINVAL);

  /* none of it changed anything or produced a message */
  assert_int_equal(n_q, 0);
  assert_int_equal(raft_term(r), 0);
  assert_int_equal(raft_last_index(r), 0);
  assert_int_equal(tn[0].last, 0);
  assert_int_equal(tn[0].term, 0);

  /* and the well-formed one is accepted */
  assert_int_equal(raft_step(r, &ok), 0);
  assert_int_equal(raft_term(r), 1);

  /* bad configurations */
  struct raft_config bad = cfg_for(9, 3);           /* id not a member */
  errno = 0;
  assert_null(raft_new(&bad, &t_io, NULL, NULL));
  assert_int_equal(errno, EINVAL);
  bad = cfg_for(1, 3);
  bad.peers[2] = 2;                                 /* duplicate */
  assert_null(raft_new(&bad, &t_io, NULL, NULL));
  bad = cfg_for(1, 3);
  bad.heartbeat_ticks = bad.election_ticks;
  assert_null(raft_new(&bad, &t_io, NULL, NULL));
  struct raft_entry ie[2] = { { .term = 2, .index = 1 },
                              { .term = 1, .index = 2 } };
  struct raft_persisted pi = { .term = 2, .entries = ie, .n_entries = 2 };
  c = cfg_for(1, 3);
  assert_null(raft_new(&c, &t_io, NULL, &pi));      /* terms go down */
}

/* Random messages, valid or not, from members or not: the core answers 0
 * or -EINVAL, never crashes, never applies out of order, never commits
 * beyond its log. */
static uint64_t fz_state = 12345;
static uint64_t fz(void)
{
  fz_state ^= fz_state << 13;
  fz_state ^= fz_state >> 7;
  fz_state ^= fz_state << 17;
  return fz_state;
}

static int fz_install(void *ctx, uint64_t index, uint64_t term,
                      const void *data, size_t len)
{
  struct tnode *n = ctx;
  (void)term; (void)data; (void)len;
  n->applied_index = index;
  n->installs++;
  return 0;
}

static int fz_persist_entries(void *ctx, const struct raft_entry *es,
                              size_t c)
{
  (void)ctx;
  assert_true(c > 0);
  for (size_t i = 1; i < c; i++)
    assert_int_equal(es[i].index, es[0].index + i);
  return 0;
}

static void fz_apply(void *ctx, const struct raft_entry *e)
{
  struct tnode *n = ctx;
  assert_int_equal(e->index, n->applied_index + 1);
  n->applied_index = e->index;
  n->n_applied++;
}

static void test_random_messages_never_crash(void **state)
{
  (void)state;
  struct raft_io io = t_io;
  io.snapshot_install = fz_install;
  io.persist_entries = fz_persist_entries;
  io.apply = fz_apply;
  n_tn = 1;
  struct raft_config c = cfg_for(1, 3);
  tn[0].id = 1;
  tn[0].r = raft_new(&c, &io, &tn[0], NULL);
  assert_non_null(tn[0].r);
  static uint64_t data[8];
  struct raft_entry es[8];
  size_t accepted = 0;
  for (int iter = 0; iter < 200000; iter++) {
    /* mostly near the node's own position, so that much gets through */
    uint64_t rt = raft_term(tn[0].r), rl = raft_last_index(tn[0].r);
    uint64_t dt = fz() % 4, dp = fz() % 6;
    uint64_t t0 = rt + dt >= 2 ? rt + dt - 2 : 0;
    uint64_t p0 = rl + dp >= 3 ? rl + dp - 3 : 0;
    struct raft_msg m = {
      .type = (uint32_t)(fz() % 10), .from = (uint32_t)(fz() % 5),
      .to = fz() % 8 ? 1 : (uint32_t)(fz() % 4), .term = t0,
      .last_index = p0 + fz() % 3, .last_term = t0 ? t0 - fz() % 2 : 0,
      .prev_index = p0, .prev_term = p0 ? (t0 ? t0 - fz() % 2 : 0) : 0,
      .commit = p0 + fz() % 4,
      .granted = fz() % 2, .reject = fz() % 2, .match_index = p0 + fz() % 4,
      .snap_index = p0 + fz() % 4, .snap_term = t0, .read_seq = fz() % 4,
    };
    if (fz() % 100 == 0)
      m.prev_index = fz();      /* wild values too */
    if (fz() % 100 == 0)
      m.match_index = fz();
    if (fz() % 200 == 0)
      m.term = RAFT_MAX_VALUE + 1 + fz() % 1000;  /* must be refused */
    if (fz() % 200 == 0)
      m.snap_index = RAFT_MAX_VALUE + 1 + fz() % 1000;
    if (fz() % 3 == 0) {
      m.n_entries = fz() % 8 + (fz() % 100 == 0 ? RAFT_MSG_MAX_ENTRIES : 0);
      if (m.n_entries > 8)
        m.entries = NULL;
      else {
        uint64_t t = m.prev_term;
        for (size_t i = 0; i < m.n_entries; i++) {
          t += fz() % 4 == 0;
          es[i] = (struct raft_entry){
            .index = m.prev_index + 1 + i + (fz() % 20 == 0),
            .term = t, .type = (uint32_t)(fz() % 3 == 0),
            .len = fz() % 2 ? 8 : 0,
          };
          es[i].data = es[i].len ? &data[i] : NULL;
        }
        m.entries = es;
      }
    }
    if (m.type == RAFT_MSG_SNAPSHOT && fz() % 2) {
      m.snap_data = data;
      m.snap_len = 8;
    }
    int err = raft_step(tn[0].r, &m);
    assert_true(err == 0 || err == -EINVAL);
    accepted += err == 0;
    assert_true(raft_commit_index(tn[0].r) <= raft_last_index(tn[0].r));
    assert_true(raft_applied_index(tn[0].r) <= raft_commit_index(tn[0].r));
    assert_true(raft_first_index(tn[0].r) <= raft_last_index(tn[0].r) + 1);
    if (fz() % 4 == 0)
      raft_tick(tn[0].r);
    if (fz() % 50 == 0) {
      uint64_t cmd = 1;
      (void)raft_propose(tn[0].r, &cmd, sizeof cmd, NULL, NULL);
      (void)raft_read_index(tn[0].r, (uint64_t)iter);
    }
    if (fz() % 100 == 0)
      (void)raft_compact(tn[0].r, raft_applied_index(tn[0].r));
    n_q = 0;
    tn[0].n_reads_done = 0;
  }
  /* the mix must reach the state machine, not just the validator */
  print_message("accepted %zu, term %llu, last %llu, commit %llu, "
                "applied %llu, installs %d\n", accepted,
                (unsigned long long)raft_term(tn[0].r),
                (unsigned long long)raft_last_index(tn[0].r),
                (unsigned long long)raft_commit_index(tn[0].r),
                (unsigned long long)tn[0].n_applied, tn[0].installs);
  assert_true(accepted > 10000);
  assert_true(raft_term(tn[0].r) < 200000);  /* grew step by step */
  assert_true(raft_last_index(tn[0].r) > 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_single_node_commits, setup, teardown),
    cmocka_unit_test_setup_teardown(test_three_node_election, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stale_term_append_rejected, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_log_conflict_truncation, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_snapshot_install, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_index_waits_for_own_term, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_no_commit_of_old_term_by_counting,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_malformed_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_random_messages_never_crash, setup,
                                    teardown),
  };
  log_init("test-raft", LOG_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
