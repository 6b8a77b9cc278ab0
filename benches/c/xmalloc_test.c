/* xmalloc-test, after Lever and Boreham, "malloc() Performance in a Multithreaded Linux
 * Environment" (USENIX 2000 Freenix), as mimalloc-bench describes its version (the update
 * in the SuperMalloc repository): purely allocating threads and purely freeing threads, with
 * blocks of various small sizes migrating from the first to the second. Written from that
 * description, not from its code.
 * Each producer mallocs BLOCKS blocks of random size (8..1024 B, log-uniform, so small
 * sizes dominate), writes a byte of each, and groups them in batches of 64 (the batch is a
 * malloc'd array too); full batches go onto one shared stack. Consumers take the whole
 * stack at once and free every block and batch: every free is remote, and no consumer
 * ever allocates. MODE 0: the stack is lock-free (push by compare-and-swap, take by
 * exchange, so there is no ABA); MODE 1: the same stack under a mutex. At most 256 batches
 * wait at a time (a producer yields while the stack is that full).
 * Usage: xmalloc_test [PRODUCERS=2] [CONSUMERS=2] [BLOCKS_PER_PRODUCER=2000000] [MODE=0] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "bench.h"

enum { BATCH = 64, MAX_WAITING = 256, MAX_THREADS = 128 };

struct batch {
    struct batch *next;
    long n;
    void *blocks[BATCH];
};

static _Atomic(struct batch *) stack;
static atomic_long waiting, producers_left;
static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static long blocks_per_producer, mode;
static _Atomic uint64_t checksum;

static void push(struct batch *b) {
    while (atomic_load_explicit(&waiting, memory_order_relaxed) >= MAX_WAITING) sched_yield();
    atomic_fetch_add_explicit(&waiting, 1, memory_order_relaxed);
    if (mode == 1) {
        pthread_mutex_lock(&stack_lock);
        b->next = atomic_load_explicit(&stack, memory_order_relaxed);
        atomic_store_explicit(&stack, b, memory_order_relaxed);
        pthread_mutex_unlock(&stack_lock);
        return;
    }
    struct batch *head = atomic_load_explicit(&stack, memory_order_relaxed);
    do b->next = head;
    while (!atomic_compare_exchange_weak_explicit(&stack, &head, b, memory_order_release,
                                                  memory_order_relaxed));
}

static struct batch *take_all(void) {
    if (mode == 1) {
        pthread_mutex_lock(&stack_lock);
        struct batch *all = atomic_load_explicit(&stack, memory_order_relaxed);
        atomic_store_explicit(&stack, NULL, memory_order_relaxed);
        pthread_mutex_unlock(&stack_lock);
        return all;
    }
    return atomic_exchange_explicit(&stack, NULL, memory_order_acquire);
}

static void *producer(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15u | 1;
    struct batch *b = NULL;
    for (long i = 0; i < blocks_per_producer; i++) {
        if (!b) {
            if (!(b = malloc(sizeof *b))) abort();
            b->n = 0;
        }
        uint64_t r = bench_rand(&s);
        unsigned shift = 3 + (unsigned)(r % 8); /* 8 << 0..7: 8 B..1 KiB */
        size_t size = ((size_t)1 << shift) + (size_t)(r >> 8) % ((size_t)1 << shift);
        if (size > 1024) size = 1024;
        char *p = malloc(size);
        if (!p) abort();
        p[0] = (char)r;
        b->blocks[b->n++] = p;
        if (b->n == BATCH) push(b), b = NULL;
    }
    if (b) push(b);
    atomic_fetch_sub(&producers_left, 1);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    uint64_t sum = 0;
    for (;;) {
        int done = atomic_load(&producers_left) == 0; /* read before the take */
        struct batch *b = take_all();
        if (!b) {
            if (done) break;
            sched_yield();
            continue;
        }
        while (b) {
            struct batch *next = b->next;
            for (long i = 0; i < b->n; i++) {
                sum += (unsigned char)((char *)b->blocks[i])[0];
                free(b->blocks[i]);
            }
            free(b);
            atomic_fetch_sub_explicit(&waiting, 1, memory_order_relaxed);
            b = next;
        }
    }
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

int main(int argc, char **argv) {
    long producers = bench_arg(argc, argv, 1, 2), consumers = bench_arg(argc, argv, 2, 2);
    blocks_per_producer = bench_arg(argc, argv, 3, 2000000);
    mode = bench_arg(argc, argv, 4, 0);
    if (producers < 1 || consumers < 1 || producers + consumers > MAX_THREADS) return 2;
    atomic_store(&producers_left, producers);
    pthread_t th[MAX_THREADS];
    for (long i = 0; i < consumers; i++) pthread_create(&th[i], NULL, consumer, NULL);
    for (long i = 0; i < producers; i++)
        pthread_create(&th[consumers + i], NULL, producer, (void *)(uintptr_t)(i + 1));
    for (long i = 0; i < producers + consumers; i++) pthread_join(th[i], NULL);
    bench_sink(atomic_load(&checksum));
    return 0;
}
