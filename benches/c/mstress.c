/* mstress, after mimalloc's test/test-stress.c as mimalloc-bench describes it: server-like
 * allocation with N threads, sizes in powers of two, objects that migrate between threads
 * and some with long lives, threads with unequal work, and every phase's threads destroyed
 * and new ones created while some objects survive. Written from that description, not from
 * mimalloc's code.
 * Each round starts THREADS threads and joins them all. Thread t (of T) does
 * 2 * OPS * (t + 1) / (T + 1) operations (the same total as T * OPS, unequally shared) on
 * a local array of LOCAL slots and one array of SHARED slots common to all threads. An
 * operation picks a random local slot; one time in four it swaps that slot's block with a
 * random shared slot's (an atomic exchange, so the block it takes was most often allocated
 * by another thread, maybe one of an earlier round); otherwise it frees the slot's block
 * and allocates a new one there. A new block is 8 << k bytes (k = 0..5: 8-256 B), one in
 * 100 is 1-8 KiB and one in 1000 is 64-512 KiB, and it is written whole. At exit a thread
 * frees its local blocks, except every eighth, which it swaps into the shared array
 * (freeing what comes back). Shared blocks live across rounds; main frees them at the end.
 * Usage: mstress [THREADS=4] [ROUNDS=10] [OPS=250000] [LOCAL=500] [SHARED=1000] */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bench.h"

enum { MAX_THREADS = 256 };

static _Atomic(char *) *shared;
static long threads, ops, local_n, shared_n;

struct job {
    long t, round;
};

static char *new_block(uint64_t r) {
    size_t size;
    if (r % 1000 == 0) size = 65536 + (size_t)(r >> 20) % (458752 + 1);
    else if (r % 100 == 0) size = 1024 + (size_t)(r >> 20) % 7169;
    else size = (size_t)8 << ((r >> 20) % 6);
    char *p = malloc(size);
    if (!p) abort();
    memset(p, (int)(r >> 8), size);
    return p;
}

static void *worker(void *arg) {
    struct job *j = arg;
    uint64_t s = (uint64_t)(j->t + 1) * 0x9e3779b97f4a7c15u ^ (uint64_t)j->round << 32;
    s |= 1;
    char **local = calloc((size_t)local_n, sizeof *local);
    if (!local) abort();
    long my_ops = 2 * ops * (j->t + 1) / (threads + 1);
    uint64_t sum = 0;
    for (long i = 0; i < my_ops; i++) {
        uint64_t r = bench_rand(&s);
        long k = (long)(r % (uint64_t)local_n);
        if ((r >> 12) % 4 == 0) {
            long g = (long)((r >> 24) % (uint64_t)shared_n);
            local[k] = atomic_exchange_explicit(&shared[g], local[k], memory_order_acq_rel);
            if (local[k]) sum += (unsigned char)local[k][0];
        } else {
            free(local[k]);
            local[k] = new_block(bench_rand(&s));
        }
    }
    for (long k = 0; k < local_n; k++) {
        if (k % 8 == 0) {
            long g = (long)(bench_rand(&s) % (uint64_t)shared_n);
            free(atomic_exchange_explicit(&shared[g], local[k], memory_order_acq_rel));
        } else {
            free(local[k]);
        }
    }
    free(local);
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    threads = bench_arg(argc, argv, 1, 4);
    long rounds = bench_arg(argc, argv, 2, 10);
    ops = bench_arg(argc, argv, 3, 250000);
    local_n = bench_arg(argc, argv, 4, 500);
    shared_n = bench_arg(argc, argv, 5, 1000);
    if (threads < 1 || threads > MAX_THREADS || local_n < 1 || shared_n < 1) return 2;
    shared = calloc((size_t)shared_n, sizeof *shared);
    if (!shared) abort();
    pthread_t tid[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    for (long r = 0; r < rounds; r++) {
        for (long t = 0; t < threads; t++) {
            jobs[t] = (struct job){t, r};
            pthread_create(&tid[t], NULL, worker, &jobs[t]);
        }
        for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    }
    for (long g = 0; g < shared_n; g++) free(atomic_load(&shared[g]));
    free(shared);
    return 0;
}
