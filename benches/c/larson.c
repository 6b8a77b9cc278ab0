/* Larson-style server simulation: each thread owns a table of live blocks and repeatedly
 * replaces a random one with a new block of random size (16..1024 B); every round, each
 * thread hands its table to a fresh thread and exits, so blocks are freed by threads other
 * than the one that allocated them and threads come and go.
 * Usage: larson [THREADS=4] [ROUNDS=20] [OPS_PER_ROUND=400000] [SLOTS=2000] */
#include <pthread.h>
#include <string.h>

#include "bench.h"

struct table {
    void **slots;
    long nslots, ops, rounds;
    uint64_t seed, sum;
};

static void *run(void *arg) {
    struct table *t = arg;
    for (long i = 0; i < t->ops; i++) {
        uint64_t r = bench_rand(&t->seed);
        long k = (long)(r % (uint64_t)t->nslots);
        free(t->slots[k]);
        size_t n = 16 + (r >> 32) % 1009;
        char *p = malloc(n);
        p[0] = (char)r;
        p[n - 1] = (char)i;
        t->sum += (uintptr_t)p[0];
        t->slots[k] = p;
    }
    if (--t->rounds > 0) {
        pthread_t next;
        pthread_create(&next, NULL, run, t);
        pthread_detach(next);
    } else {
        for (long k = 0; k < t->nslots; k++) free(t->slots[k]);
        free(t->slots);
    }
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 4), rounds = bench_arg(argc, argv, 2, 20);
    long ops = bench_arg(argc, argv, 3, 400000), nslots = bench_arg(argc, argv, 4, 2000);
    struct table *tables = calloc((size_t)threads, sizeof *tables);
    for (long t = 0; t < threads; t++) {
        tables[t] = (struct table){.nslots = nslots, .ops = ops, .rounds = rounds, .seed = 88172645463325252ull + (uint64_t)t};
        tables[t].slots = calloc((size_t)nslots, sizeof(void *));
        for (long k = 0; k < nslots; k++) tables[t].slots[k] = malloc(16 + (size_t)k % 1000);
    }
    pthread_t first[64];
    for (long t = 0; t < threads; t++) pthread_create(&first[t], NULL, run, &tables[t]);
    for (long t = 0; t < threads; t++) pthread_join(first[t], NULL);
    /* Successor threads are detached; wait until every table finished its rounds. */
    for (;;) {
        int done = 1;
        for (long t = 0; t < threads; t++) done &= __atomic_load_n(&tables[t].rounds, __ATOMIC_ACQUIRE) <= 0;
        if (done) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    uint64_t sum = 0;
    for (long t = 0; t < threads; t++) sum += tables[t].sum;
    bench_sink(sum);
    free(tables);
    return 0;
}
