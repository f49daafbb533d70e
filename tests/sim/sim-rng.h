/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the deterministic PRNG of the simulators (raft-sim,
 * peering-sim): splitmix64 over one global state, so that a seed replays
 * a run exactly.  Each simulator sets rng_state from its --seed.
 */
#ifndef BLK_SIM_RNG_H
#define BLK_SIM_RNG_H

#include <stdbool.h>
#include <stdint.h>

static uint64_t rng_state;

/* The next 64 pseudo-random bits. */
static inline uint64_t rnd(void)
{
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n) (0 when n is 0). */
static inline unsigned rnd_below(unsigned n) { return n ? (unsigned)(rnd() % n) : 0; }
/* True with probability per_mille / 1000. */
static inline bool chance(unsigned per_mille) { return rnd_below(1000) < per_mille; }

#endif
