/* alloc-test, after the allocator test of OLogN Technologies (ithare.com, "Testing Memory
 * Allocators: ptmalloc2 vs tcmalloc vs hoard vs jemalloc While Trying to Simulate Real-World
 * Loads", 2018), which mimalloc-bench runs as alloc-test: intensive allocation with a Pareto
 * distribution of sizes up to 1 KiB, lifetimes that are not uniform either (most blocks die
 * young), and accesses to the allocated memory. Written from those descriptions, not from
 * its code.
 * Each thread keeps SLOTS blocks in a ring with a cursor that advances by one every
 * operation. An operation frees the block D slots behind the cursor, D drawn so that small
 * distances (young blocks) are by far the most likely, and mallocs a new one there whose size
 * is Pareto-distributed (scale 8 B, shape 1, cut at 1 KiB); the new block is written whole,
 * and one word of another live block, also chosen young-biased, is read. Sizes and distances
 * come from a table made before the threads start. No block changes threads.
 * Usage: alloc_test [THREADS=2] [OPS=10000000] [SLOTS=65536] */
#include <pthread.h>
#include <string.h>

#include "bench.h"

enum { TABLE = 1 << 16, MAX_SIZE = 1024 };

struct pick {
    uint32_t size, dist, peek;
};

static struct pick table[TABLE];
static long ops, slots;

static void *worker(void *arg) {
    char **ring = calloc((size_t)slots, sizeof *ring);
    if (!ring) abort();
    uint64_t sum = 0;
    long j = (long)(uintptr_t)arg * 12347;
    for (long i = 0; i < ops; i++, j++) {
        struct pick pk = table[j & (TABLE - 1)];
        long cur = i % slots;
        long k = (cur - 1 - (long)pk.dist + slots) % slots;
        free(ring[k]);
        char *p = malloc(pk.size);
        if (!p) abort();
        memset(p, (int)i, pk.size);
        ring[k] = p;
        char *q = ring[(cur - 1 - (long)pk.peek + slots) % slots];
        if (q) sum += (unsigned char)q[0];
    }
    for (long k = 0; k < slots; k++) free(ring[k]);
    free(ring);
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2);
    ops = bench_arg(argc, argv, 2, 10000000);
    slots = bench_arg(argc, argv, 3, 65536);
    if (threads < 1 || threads > 256 || slots < 1) return 2;
    uint64_t s = 7;
    for (long i = 0; i < TABLE; i++) {
        /* Pareto(8, 1): 8 / u, for u uniform in (0, 1]; over 1 KiB is cut to 1 KiB. */
        double u = (double)((bench_rand(&s) >> 11) + 1) / (double)(1ull << 53);
        double size = 8.0 / u;
        table[i].size = size > MAX_SIZE ? MAX_SIZE : (uint32_t)size;
        /* Distances: slots * u^4, so half of them are under slots / 16. */
        for (int f = 0; f < 2; f++) {
            double v = (double)(bench_rand(&s) >> 11) / (double)(1ull << 53);
            uint32_t d = (uint32_t)((double)slots * v * v * v * v);
            if (d >= (uint64_t)slots) d = (uint32_t)(slots - 1);
            if (f == 0) table[i].dist = d;
            else table[i].peek = d;
        }
    }
    pthread_t tid[256];
    for (long t = 0; t < threads; t++) pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t);
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return 0;
}
