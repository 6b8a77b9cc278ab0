/* Mixed-size churn: each thread keeps a working set of blocks whose sizes follow a skewed
 * mix (mostly under 256 B, some to 64 KiB, a few to 1 MiB), replacing random ones and
 * resizing some with realloc. No cross-thread frees: the per-thread fast paths.
 * Usage: churn [THREADS=2] [OPS=6000000] [WORKING_SET=20000] */
#include <pthread.h>
#include <string.h>

#include "bench.h"

struct arg {
    long ops, live;
    uint64_t seed, sum;
};

static size_t pick(uint64_t r) {
    switch (r % 64) {
    case 0: return 65536 + (r >> 8) % (1u << 20);
    case 1 ... 6: return 256 + (r >> 8) % 65536;
    default: return 8 + (r >> 8) % 248;
    }
}

static void *worker(void *p) {
    struct arg *a = p;
    void **set = calloc((size_t)a->live, sizeof(void *));
    for (long i = 0; i < a->ops; i++) {
        uint64_t r = bench_rand(&a->seed);
        long k = (long)((r >> 40) % (uint64_t)a->live);
        if (set[k] && r % 16 == 0) {
            set[k] = realloc(set[k], pick(bench_rand(&a->seed)));
        } else {
            free(set[k]);
            size_t n = pick(r);
            set[k] = malloc(n);
            memset(set[k], (int)r, n < 64 ? n : 64);
        }
        a->sum += ((unsigned char *)set[k])[0];
    }
    for (long k = 0; k < a->live; k++) free(set[k]);
    free(set);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2), ops = bench_arg(argc, argv, 2, 6000000);
    long live = bench_arg(argc, argv, 3, 20000);
    pthread_t th[64];
    struct arg args[64];
    for (long t = 0; t < threads; t++) {
        args[t] = (struct arg){ops, live, 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1), 0};
        pthread_create(&th[t], NULL, worker, &args[t]);
    }
    uint64_t sum = 0;
    for (long t = 0; t < threads; t++) pthread_join(th[t], NULL), sum += args[t].sum;
    bench_sink(sum);
    return 0;
}
