/* glibc-thread, after glibc's benchtests/bench-malloc-thread.c (used by mimalloc-bench as
 * glibc-thread), written from its description, not its code: THREADS threads, each over a
 * working set of SLOTS blocks of its own; every iteration frees the block in a random slot
 * and mallocs a new one there, of a random size drawn from an inverse-square distribution
 * (many more small blocks than large ones, as real programs allocate) between 4 B and
 * MAX_SIZE. The original goes to 32 KiB; the default here is 4 KiB. Sizes and slots come
 * from a table made before the threads start, so the loop costs little besides malloc and
 * free. No block changes threads.
 * Usage: glibc_thread [THREADS=2] [ITERATIONS=30000000] [SLOTS=1024] [MAX_SIZE=4096] */
#include <pthread.h>

#include "bench.h"

enum { TABLE = 1 << 16, MIN_SIZE = 4 };

struct pick {
    uint32_t size, slot;
};

static struct pick table[TABLE];
static long iterations, slots;

static void *worker(void *arg) {
    void **set = calloc((size_t)slots, sizeof *set);
    if (!set) abort();
    uint64_t sum = 0;
    long j = (long)(uintptr_t)arg * 7919; /* each thread walks the table from its own place */
    for (long i = 0; i < iterations; i++, j++) {
        struct pick pk = table[j & (TABLE - 1)];
        free(set[pk.slot]);
        char *p = malloc(pk.size);
        if (!p) abort();
        p[0] = (char)i;
        set[pk.slot] = p;
        sum += pk.size;
    }
    for (long k = 0; k < slots; k++) free(set[k]);
    free(set);
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2);
    iterations = bench_arg(argc, argv, 2, 30000000);
    slots = bench_arg(argc, argv, 3, 1024);
    long max = bench_arg(argc, argv, 4, 4096);
    if (threads < 1 || threads > 256 || slots < 1 || max < MIN_SIZE) return 2;
    /* Inverse-square density on [MIN_SIZE, max]: inverse of its distribution function. */
    double lo = 1.0 / MIN_SIZE, hi = 1.0 / (double)max;
    uint64_t s = 42;
    for (long i = 0; i < TABLE; i++) {
        double u = (double)(bench_rand(&s) >> 11) / (double)(1ull << 53);
        table[i].size = (uint32_t)(1.0 / (lo - u * (lo - hi)));
        table[i].slot = (uint32_t)(bench_rand(&s) % (uint64_t)slots);
    }
    pthread_t tid[256];
    for (long t = 0; t < threads; t++) pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t);
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return 0;
}
