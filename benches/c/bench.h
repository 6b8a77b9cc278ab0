/* Shared bits of the allocation benchmarks: a fast PRNG and argument parsing. The programs
 * do a fixed amount of work and time nothing themselves; benches/preload.sh measures them
 * from outside (wall time and peak RSS) under each allocator. */
#ifndef POOLSIDE_BENCH_H
#define POOLSIDE_BENCH_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t bench_rand(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline long bench_arg(int argc, char **argv, int i, long dflt) {
    return argc > i ? atol(argv[i]) : dflt;
}

/* Keeps results observable so the compiler cannot drop the work. */
static inline void bench_sink(uint64_t v) {
    if (v == 0x1234567) puts("");
}
#endif
