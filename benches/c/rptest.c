/* rptest, after the rpmalloc benchmark (github.com/mjansson/rpmalloc-benchmark), which
 * mimalloc-bench runs in a modified form as rptest, written from its published
 * description, not its code: threads allocate and free blocks whose sizes are skewed
 * small, keep a working set that they partly replace, and now and then hand a whole
 * working set to another thread, which frees it (a cross-thread "rate").
 * Each thread, LOOPS times: mallocs BLOCKS blocks (writing the first and last byte of each),
 * then REPLACE times frees a random one and mallocs another in its place; then, every
 * CROSS_RATE-th loop, it hands the whole set to the next thread's inbox (a mutex-protected
 * list) and starts a new set, and in other loops frees its blocks newest first; last, it
 * frees every set in its own inbox. Sizes: 16 << k to 32 << k bytes with k = 0 half the
 * time, 1 a quarter of the time, and so on up to k = 10 (16 KiB-32 KiB). Sets still in an
 * inbox when the threads are done are freed by main.
 * Usage: rptest [THREADS=2] [LOOPS=2000] [BLOCKS=1000] [REPLACE=2000] [CROSS_RATE=4] */
#include <pthread.h>

#include "bench.h"

enum { MAX_THREADS = 256 };

struct set {
    struct set *next;
    char *blocks[];
};

static struct inbox {
    pthread_mutex_t lock;
    struct set *head;
} inboxes[MAX_THREADS];

static long threads, loops, nblocks, replace, cross_rate;

static char *new_block(uint64_t r) {
    unsigned k = (unsigned)__builtin_ctzll(r | 1ull << 10); /* P(k) = 2^-(k+1), k <= 10 */
    size_t size = ((size_t)16 << k) + (size_t)(r >> 32) % ((size_t)16 << k);
    char *p = malloc(size);
    if (!p) abort();
    p[0] = (char)r;
    p[size - 1] = (char)k;
    return p;
}

static uint64_t free_set(struct set *st) {
    uint64_t sum = 0;
    for (long i = nblocks - 1; i >= 0; i--) {
        sum += (unsigned char)st->blocks[i][0];
        free(st->blocks[i]);
    }
    free(st);
    return sum;
}

static void *worker(void *arg) {
    long t = (long)(uintptr_t)arg;
    uint64_t s = (uint64_t)(t + 1) * 0x9e3779b97f4a7c15u | 1, sum = 0;
    struct inbox *mine = &inboxes[t], *next = &inboxes[(t + 1) % threads];
    for (long l = 0; l < loops; l++) {
        struct set *st = malloc(sizeof *st + (size_t)nblocks * sizeof(char *));
        if (!st) abort();
        for (long i = 0; i < nblocks; i++) st->blocks[i] = new_block(bench_rand(&s));
        for (long i = 0; i < replace; i++) {
            uint64_t r = bench_rand(&s);
            long k = (long)(r % (uint64_t)nblocks);
            sum += (unsigned char)st->blocks[k][0];
            free(st->blocks[k]);
            st->blocks[k] = new_block(bench_rand(&s));
        }
        if (cross_rate > 0 && l % cross_rate == 0 && threads > 1) {
            pthread_mutex_lock(&next->lock);
            st->next = next->head;
            next->head = st;
            pthread_mutex_unlock(&next->lock);
        } else {
            sum += free_set(st);
        }
        pthread_mutex_lock(&mine->lock);
        struct set *got = mine->head;
        mine->head = NULL;
        pthread_mutex_unlock(&mine->lock);
        while (got) {
            struct set *n = got->next;
            sum += free_set(got);
            got = n;
        }
    }
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    threads = bench_arg(argc, argv, 1, 2);
    loops = bench_arg(argc, argv, 2, 2000);
    nblocks = bench_arg(argc, argv, 3, 1000);
    replace = bench_arg(argc, argv, 4, 2000);
    cross_rate = bench_arg(argc, argv, 5, 4);
    if (threads < 1 || threads > MAX_THREADS || nblocks < 1) return 2;
    pthread_t tid[MAX_THREADS];
    for (long t = 0; t < threads; t++) {
        pthread_mutex_init(&inboxes[t].lock, NULL);
        pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t);
    }
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    uint64_t sum = 0;
    for (long t = 0; t < threads; t++)
        for (struct set *st = inboxes[t].head, *n; st; st = n) n = st->next, sum += free_set(st);
    bench_sink(sum);
    return 0;
}
