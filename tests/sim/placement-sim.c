/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: placement-sim builds a synthetic cluster (root -> hosts ->
 * OSDs), places every PG of one pool with common/placement.c and reports
 * (1) balance: PG replicas per OSD relative to its weight share, before and
 * after the upmap balancer, and (2) movement: the replicas moved (set
 * difference: data that must be copied) and the PGs whose member set
 * changes when one OSD is added (to an existing host or on a new host),
 * marked out, purged, or reweighted, against the minimum (the replicas the
 * changed OSD gains or loses; each lies in a distinct PG), plus the PGs
 * whose members stay but whose primary changes (peering only, no data).
 * Everything is deterministic; times are wall clock of this process.
 * With --check it exits 1 unless the balance goal and the movement goal
 * for adding one OSD (new host and existing host, <= 1.2x the minimum)
 * hold, so a small run doubles as a CTest.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/placement.h"

#define W1 PLACEMENT_WEIGHT_ONE

struct opts {
  uint32_t osds, hosts, pgs_per_osd, size;
  bool mixed, balance, check;
  uint32_t max_dev;        /* permille */
  uint32_t trials;         /* OSDs tried per movement experiment */
  enum placement_domain domain;
};

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t osd_weight(const struct opts *o, uint32_t id)
{
  if (!o->mixed)
    return W1;
  /* 1, 2, 4 or 8 TiB devices, picked by a hash of the id */
  return W1 << (placement_hash32(&id, sizeof id, 0x5eed) % 4);
}

static placement_map *build(const struct opts *o)
{
  placement_map *m = placement_map_new();
  if (!m)
    return NULL;
  for (uint32_t h = 0; h < o->hosts; h++)
    if (placement_map_add_host(m, h) < 0)
      goto out_free;
  for (uint32_t id = 0; id < o->osds; id++) {
    uint32_t host = (uint32_t)((uint64_t)id * o->hosts / o->osds);
    if (placement_map_add_osd(m, id, host, osd_weight(o, id), true) < 0)
      goto out_free;
  }
  return m;

out_free:
  fprintf(stderr, "placement-sim: %s\n", placement_last_error());
  placement_map_free(m);
  return NULL;
}

/* Sets of every PG, stride size, UINT32_MAX padding.  Caller frees. */
static uint32_t *map_all(const placement_map *m, const struct placement_pool *p,
                         const struct placement_upmap *ups, size_t n_ups,
                         double *secs)
{
  uint32_t *sets = malloc((size_t)p->pg_num * p->size * sizeof *sets);
  if (!sets)
    return NULL;
  double t0 = now();
  for (uint32_t pg = 0; pg < p->pg_num; pg++) {
    uint32_t *s = &sets[(size_t)pg * p->size];
    int n = placement_pg_osds(m, p, pg, ups, n_ups, s, p->size);
    if (n < 0) {
      fprintf(stderr, "placement-sim: %s\n", placement_last_error());
      free(sets);
      return NULL;
    }
    for (uint32_t k = (uint32_t)n; k < p->size; k++)
      s[k] = UINT32_MAX;
  }
  *secs = now() - t0;
  return sets;
}

struct balance { double max, mean, min, stddev; uint64_t replicas, short_pgs; };

/* Replicas per in OSD divided by its weight share, over OSD ids < cap. */
static struct balance balance_of(const placement_map *m,
                                 const struct placement_pool *p,
                                 const uint32_t *sets, uint32_t cap)
{
  uint32_t *cnt = calloc(cap, sizeof *cnt);
  struct balance b = { 0, 0, 1e30, 0, 0, 0 };
  if (!cnt)
    return b;
  for (uint64_t i = 0; i < (uint64_t)p->pg_num * p->size; i++) {
    if (sets[i] == UINT32_MAX) {
      b.short_pgs++;
      continue;
    }
    cnt[sets[i]]++;
    b.replicas++;
  }
  double W = (double)placement_map_in_weight(m), sum = 0, sq = 0;
  uint32_t n = 0;
  for (uint32_t id = 0; id < cap; id++) {
    uint32_t w;
    bool in;
    if (placement_map_osd_info(m, id, NULL, &w, &in) < 0 || !in)
      continue;
    double rel = cnt[id] / ((double)b.replicas * w / W);
    b.max = rel > b.max ? rel : b.max;
    b.min = rel < b.min ? rel : b.min;
    sum += rel;
    sq += rel * rel;
    n++;
  }
  b.mean = sum / n;
  b.stddev = sqrt(sq / n - b.mean * b.mean);
  free(cnt);
  return b;
}

/* Mean replicas / share per weight class (mixed weights only). */
static void print_classes(const placement_map *m, const uint32_t *sets,
                          const struct placement_pool *p, uint32_t cap)
{
  uint32_t *cnt = calloc(cap, sizeof *cnt);
  double sum[4] = { 0 }, n[4] = { 0 }, replicas = 0;
  if (!cnt)
    return;
  for (uint64_t i = 0; i < (uint64_t)p->pg_num * p->size; i++)
    if (sets[i] != UINT32_MAX) {
      cnt[sets[i]]++;
      replicas++;
    }
  double W = (double)placement_map_in_weight(m);
  for (uint32_t id = 0; id < cap; id++) {
    uint32_t w;
    bool in;
    if (placement_map_osd_info(m, id, NULL, &w, &in) < 0 || !in)
      continue;
    int k = __builtin_ctz(w / W1);
    sum[k] += cnt[id] / (replicas * w / W);
    n[k]++;
  }
  printf("  mean by weight:");
  for (int k = 0; k < 4; k++)
    if (n[k])
      printf("  %uT %.4f", 1u << k, sum[k] / n[k]);
  printf("\n");
  free(cnt);
}

static void print_balance(const char *what, struct balance b, double secs)
{
  printf("%-28s max %.4f  mean %.4f  min %.4f  stddev %.4f  (%.2f s)\n",
         what, b.max, b.mean, b.min, b.stddev, secs);
}

/* rep: replicas moved (members of b not in a: data movement); pgs: PGs
 * whose member set changed; prim: PGs whose member set is the same but
 * whose first member (primary) changed (peering, no data); min_rep: the
 * replicas the changed OSD gains or loses. */
struct moved { uint64_t rep, pgs, prim, min_rep; };

static struct moved compare(const struct placement_pool *p, const uint32_t *a,
                            const uint32_t *b, uint32_t osd)
{
  struct moved mv = { 0, 0, 0, 0 };
  uint64_t in_a = 0, in_b = 0;
  for (uint32_t pg = 0; pg < p->pg_num; pg++) {
    const uint32_t *x = &a[(size_t)pg * p->size], *y = &b[(size_t)pg * p->size];
    uint32_t r = 0, gone = 0;
    for (uint32_t i = 0; i < p->size; i++) {
      bool found = y[i] == UINT32_MAX, kept = x[i] == UINT32_MAX;
      for (uint32_t j = 0; j < p->size; j++) {
        found |= y[i] == x[j];
        kept |= x[i] == y[j];
      }
      r += !found;
      gone += !kept;
      in_a += x[i] == osd;
      in_b += y[i] == osd;
    }
    mv.rep += r;
    mv.pgs += r > 0 || gone > 0;
    mv.prim += r == 0 && gone == 0 && x[0] != y[0];
  }
  mv.min_rep = in_a > in_b ? in_a - in_b : in_b - in_a;
  return mv;
}

enum change {
  ADD_NEW_HOST, ADD_IN_HOST, MARK_OUT, PURGE, PURGE_AFTER_OUT, REWEIGHT,
  N_CHANGES
};

static const char *const change_name[N_CHANGES] = {
  "add 1 OSD on a new host:", "add 1 OSD to a host:", "mark 1 OSD out:",
  "purge 1 OSD:", "purge 1 OSD already out:", "reweight 1 OSD to 50%:",
};

/* Apply change c (trial t) to a copy of m; the changed OSD in *osd. */
static placement_map *changed(const placement_map *m, const struct opts *o,
                              enum change c, uint32_t t, uint32_t *osd)
{
  placement_map *x = placement_map_dup(m);
  uint32_t victim = (o->osds / 2 + 1 + t * 997u) % o->osds, host;
  uint32_t new_id = o->osds + t;
  int r = -EINVAL;
  if (!x)
    return NULL;
  placement_map_osd_info(m, victim, &host, NULL, NULL);
  *osd = victim;
  switch (c) {
  case ADD_NEW_HOST:
    *osd = new_id;
    r = placement_map_add_host(x, o->hosts + t);
    if (r == 0)
      r = placement_map_add_osd(x, new_id, o->hosts + t, osd_weight(o, new_id),
                                true);
    break;
  case ADD_IN_HOST:
    *osd = new_id;
    r = placement_map_add_osd(x, new_id, host, osd_weight(o, new_id), true);
    break;
  case MARK_OUT: r = placement_map_set_in(x, victim, false); break;
  case PURGE:
  case PURGE_AFTER_OUT: r = placement_map_remove_osd(x, victim); break;
  case REWEIGHT:
    r = placement_map_set_weight(x, victim, osd_weight(o, victim) / 2);
    break;
  case N_CHANGES: break;
  }
  if (r < 0) {
    fprintf(stderr, "placement-sim: %s\n", placement_last_error());
    placement_map_free(x);
    return NULL;
  }
  return x;
}

/* Movement experiment c over o->trials different OSDs; prints the sums
 * as fractions of one trial's total and the ratio to the minimum. */
static int experiment(const placement_map *m, const struct opts *o,
                      enum change c, const struct placement_pool *p,
                      const struct placement_upmap *ups, size_t n_ups,
                      const uint32_t *base, double *ratio)
{
  struct moved sum = { 0, 0, 0, 0 };
  double secs = 0;
  for (uint32_t t = 0; t < o->trials; t++) {
    uint32_t osd;
    double s1;
    placement_map *x = changed(m, o, c, t, &osd);
    if (!x)
      return -1;
    uint32_t *sets = map_all(x, p, ups, n_ups, &s1);
    placement_map_free(x);
    if (!sets)
      return -1;
    struct moved mv = compare(p, base, sets, osd);
    if (c == PURGE_AFTER_OUT) {
      /* Movement from the out map to the purged one; the minimum is still
       * what the OSD held before it went out. */
      double s2;
      x = changed(m, o, MARK_OUT, t, &osd);
      uint32_t *outs = x ? map_all(x, p, ups, n_ups, &s2) : NULL;
      placement_map_free(x);
      if (!outs) {
        free(sets);
        return -1;
      }
      struct moved held = compare(p, base, outs, osd);
      mv = compare(p, outs, sets, osd);
      mv.min_rep = held.min_rep;
      free(outs);
    }
    sum.rep += mv.rep;
    sum.pgs += mv.pgs;
    sum.prim += mv.prim;
    sum.min_rep += mv.min_rep;
    secs += s1;
    free(sets);
  }
  double total = (double)p->pg_num * p->size * o->trials;
  double pgs = (double)p->pg_num * o->trials;
  double r = sum.min_rep ? (double)sum.rep / sum.min_rep : 0;
  double rp = sum.min_rep ? (double)sum.pgs / sum.min_rep : 0;
  printf("%-28s replicas %.6f (min %.6f, x%.3f)  PGs %.6f (min %.6f, x%.3f)"
         "  primary-only PGs %.6f (%llu)  (%.2f s)\n", change_name[c],
         sum.rep / total, sum.min_rep / total, r, sum.pgs / pgs,
         sum.min_rep / pgs, rp, sum.prim / pgs, (unsigned long long)sum.prim,
         secs / o->trials);
  if (ratio)
    *ratio = r > rp ? r : rp;
  return 0;
}

static void usage(FILE *f)
{
  fprintf(f, "usage: placement-sim [--osds N] [--hosts H] [--pgs-per-osd K]"
             " [--size S]\n       [--weights uniform|mixed] [--domain host|osd]"
             " [--balance] [--max-dev PERMILLE] [--trials T] [--check]\n");
}

static int parse_u32(const char *s, uint32_t *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || end == s || v > UINT32_MAX)
    return -EINVAL;
  *out = (uint32_t)v;
  return 0;
}

int main(int argc, char **argv)
{
  struct opts o = { 10000, 1000, 100, 3, false, false, false, 50, 1,
                    PLACEMENT_DOMAIN_HOST };
  static const struct option lo[] = {
    { "osds", required_argument, 0, 'n' },
    { "hosts", required_argument, 0, 'H' },
    { "pgs-per-osd", required_argument, 0, 'k' },
    { "size", required_argument, 0, 's' },
    { "weights", required_argument, 0, 'w' },
    { "domain", required_argument, 0, 'd' },
    { "balance", no_argument, 0, 'b' },
    { "max-dev", required_argument, 0, 'm' },
    { "check", no_argument, 0, 'c' },
    { "trials", required_argument, 0, 't' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
  };
  int c, bad = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'n': bad |= parse_u32(optarg, &o.osds); break;
    case 'H': bad |= parse_u32(optarg, &o.hosts); break;
    case 'k': bad |= parse_u32(optarg, &o.pgs_per_osd); break;
    case 's': bad |= parse_u32(optarg, &o.size); break;
    case 'm': bad |= parse_u32(optarg, &o.max_dev); break;
    case 't': bad |= parse_u32(optarg, &o.trials); break;
    case 'b': o.balance = true; break;
    case 'c': o.check = true; break;
    case 'w':
      if (strcmp(optarg, "mixed") == 0)
        o.mixed = true;
      else if (strcmp(optarg, "uniform") != 0)
        bad = 1;
      break;
    case 'd':
      if (strcmp(optarg, "osd") == 0)
        o.domain = PLACEMENT_DOMAIN_OSD;
      else if (strcmp(optarg, "host") != 0)
        bad = 1;
      break;
    case 'h': usage(stdout); return 0;
    default: bad = 1;
    }
  }
  if (bad || optind != argc || o.osds == 0 || o.hosts == 0 ||
      o.hosts > o.osds || o.pgs_per_osd == 0 || o.size == 0 || o.trials == 0 ||
      o.size > PLACEMENT_MAX_SIZE) {
    usage(stderr);
    return 2;
  }

  double t_start = now(), secs;
  struct placement_pool p = {
    1, o.size, (uint32_t)(((uint64_t)o.osds * o.pgs_per_osd + o.size / 2) / o.size),
    o.domain,
  };
  placement_map *m = build(&o);
  if (!m)
    return 1;
  printf("cluster: %u OSDs on %u hosts, weights %s, pool size %u, pg_num %u,"
         " domain %s, in weight %.2f\n", o.osds, o.hosts,
         o.mixed ? "mixed (1/2/4/8)" : "uniform", o.size, p.pg_num,
         o.domain == PLACEMENT_DOMAIN_HOST ? "host" : "osd",
         placement_map_in_weight(m) / (double)W1);

  uint32_t *base = map_all(m, &p, NULL, 0, &secs);
  if (!base)
    return 1;
  struct balance b = balance_of(m, &p, base, o.osds);
  printf("short PGs (fewer than size): %llu\n", (unsigned long long)b.short_pgs);
  print_balance("balance straw2:", b, secs);
  if (o.mixed)
    print_classes(m, base, &p, o.osds);
  printf("  per-PG mapping time: %.2f us\n", secs / p.pg_num * 1e6);
  int rc = 0;

  struct placement_upmap *ups = NULL;
  size_t n_ups = 0;
  if (o.balance) {
    double t0 = now();
    int moves = placement_balance(m, &p, NULL, 0, o.max_dev, SIZE_MAX, &ups,
                                  &n_ups);
    double tb = now() - t0;
    if (moves < 0) {
      fprintf(stderr, "placement-sim: %s\n", placement_last_error());
      return 1;
    }
    uint32_t *bal = map_all(m, &p, ups, n_ups, &secs);
    if (!bal)
      return 1;
    struct balance bb = balance_of(m, &p, bal, o.osds);
    printf("balancer: %d moves, %zu exceptions (%.2f%% of PGs, %zu bytes),"
           " %.2f s\n", moves, n_ups, 100.0 * n_ups / p.pg_num,
           n_ups * 16, tb);
    print_balance("balance straw2+upmap:", bb, secs);
    if (o.mixed)
      print_classes(m, bal, &p, o.osds);
    if (o.check && bb.max > 1.0 + o.max_dev / 1000.0 + 1e-9) {
      printf("CHECK FAILED: balanced max %.4f > %.3f\n", bb.max,
             1.0 + o.max_dev / 1000.0);
      rc = 1;
    }
    free(base);
    base = bal;   /* movement with exceptions kept */
  }

  /* Movement.  The exceptions (if any) stay as they are, as in a cluster
   * between two balancer runs. */
  printf("movement, sum over %u trial(s) (a different OSD each):\n", o.trials);
  for (int ch = 0; ch < N_CHANGES; ch++) {
    double ratio;
    if (experiment(m, &o, (enum change)ch, &p, ups, n_ups, base, &ratio) < 0)
      return 1;
    if (o.check && (ch == ADD_NEW_HOST || ch == ADD_IN_HOST) && ratio > 1.2) {
      printf("CHECK FAILED: %s moved x%.3f the minimum\n", change_name[ch],
             ratio);
      rc = 1;
    }
  }

  printf("total time: %.2f s\n", now() - t_start);
  free(ups);
  free(base);
  placement_map_free(m);
  return rc;
}
