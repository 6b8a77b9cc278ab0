/* Threads that work on big buffers: each of THREADS threads (more than the cores, by
 * default) loops over buffers of 1 to MAX_MIB MiB (uniformly random sizes, LIVE of them
 * live per thread): it frees a random one of its buffers, allocates a new one, and writes
 * one byte in every page of it (so a reused buffer costs writes, a fresh one page faults).
 * Half the sizes are below 4 MiB and half above, so in poolside both large spans of the
 * arena and huge blocks (mappings of their own) are exercised; in every allocator the
 * sizes are past the small-object caches, so this shows how allocation, caching and
 * purging of big blocks scale with threads (locks held over system calls).
 * Every free is on the allocating thread: for these sizes poolside's frees go to the
 * shared arena from any thread, so remote frees would add nothing.
 * Usage: large_threads [THREADS=4] [ITERATIONS_PER_THREAD=1500] [LIVE=3] [MAX_MIB=8] */
#include <pthread.h>

#include "bench.h"

enum { MAX_LIVE = 16 };

struct worker {
    pthread_t tid;
    long iterations, live;
    size_t max;
    uint64_t seed, sum;
};

static void *run(void *arg) {
    struct worker *w = arg;
    char *held[MAX_LIVE] = {0};
    uint64_t s = w->seed, sum = 0;
    const size_t min = (size_t)1 << 20;
    for (long i = 0; i < w->iterations; i++) {
        uint64_t r = bench_rand(&s);
        size_t n = min + (size_t)(r % (w->max - min));
        long k = (long)((r >> 48) % (uint64_t)w->live);
        free(held[k]);
        char *p = malloc(n);
        if (!p) {
            fputs("large_threads: out of memory\n", stderr);
            exit(1);
        }
        for (size_t off = 0; off < n; off += 4096) p[off] = (char)(off >> 12);
        sum += (unsigned char)p[n / 2 / 4096 * 4096];
        held[k] = p;
    }
    for (long k = 0; k < w->live; k++) free(held[k]);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 4), iterations = bench_arg(argc, argv, 2, 1500);
    long live = bench_arg(argc, argv, 3, 3), max_mib = bench_arg(argc, argv, 4, 8);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (live < 1) live = 1;
    if (live > MAX_LIVE) live = MAX_LIVE;
    if (max_mib < 2) max_mib = 2;
    struct worker w[64];
    for (long t = 0; t < threads; t++) {
        w[t] = (struct worker){.iterations = iterations, .live = live,
                               .max = (size_t)max_mib << 20, .seed = 0x9e3779b97f4a7c15u * (uint64_t)(t + 1)};
        if (pthread_create(&w[t].tid, NULL, run, &w[t])) {
            fputs("large_threads: pthread_create failed\n", stderr);
            return 1;
        }
    }
    uint64_t sum = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(w[t].tid, NULL);
        sum += w[t].sum;
    }
    bench_sink(sum);
    return 0;
}
