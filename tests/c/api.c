/* The poolside_* C API through include/poolside.h. Built twice by capi_api.rs: linked with
 * libpoolside.so and with libpoolside.a. Single-threaded except where threads are the
 * point, and nothing prints between two snapshots, so counter deltas are exact. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "poolside.h"

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=\"x.y.z\""
#endif

static poolside_stats_t before, after;

static void snap(poolside_stats_t *s) { CHECK(poolside_stats_snapshot(s) == 0); }

static void version(void) {
    CHECK(strcmp(poolside_version(), EXPECTED_VERSION) == 0);
}

static void allocation_functions(void) {
    char *p = poolside_malloc(100);
    CHECK(p != NULL && poolside_owns(p));
    CHECK(poolside_usable_size(p) >= 100);
    memset(p, 7, 100);
    p = poolside_realloc(p, 100000);
    CHECK(p != NULL && p[99] == 7 && poolside_usable_size(p) >= 100000);
    unsigned char *c = poolside_calloc(1000, 3);
    CHECK(c != NULL);
    for (int i = 0; i < 3000; i++) CHECK(c[i] == 0);
    void *a = poolside_aligned_alloc(1 << 16, 10);
    CHECK(a != NULL && (uintptr_t)a % (1 << 16) == 0);
    errno = 0;
    CHECK(poolside_aligned_alloc(48, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(poolside_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(poolside_calloc(SIZE_MAX, 2) == NULL && errno == ENOMEM);
    void *z1 = poolside_malloc(0), *z2 = poolside_malloc(0);
    CHECK(z1 && z2 && z1 != z2);
    CHECK(poolside_realloc(z1, 0) == NULL);
    errno = 99;
    poolside_free(p);
    poolside_free(c);
    poolside_free(a);
    poolside_free(z2);
    poolside_free(NULL);
    CHECK(errno == 99);
    int local;
    CHECK(!poolside_owns(&local) && !poolside_owns(NULL) && poolside_usable_size(&local) == 0);
    poolside_free(&local); /* foreign: ignored */
}

/* Exact counter deltas for one size class. */
static void stats_counters(void) {
    enum { N = 1000, SIZE = 200 };
    static void *blocks[N];
    snap(&before);
    CHECK(before.num_slots == POOLSIDE_HUGE_SLOT + 1 && before.num_classes == POOLSIDE_LARGE_SLOT);
    for (int i = 0; i < N; i++) blocks[i] = poolside_malloc(SIZE);
    snap(&after);
    size_t bs = poolside_usable_size(blocks[0]);
    int c = -1;
    for (uint32_t i = 0; i < after.num_classes; i++)
        if (after.classes[i].block_size == bs) c = (int)i;
    CHECK_MSG(c >= 0, "no class of block size %zu", bs);
    CHECK_MSG(after.classes[c].allocs - before.classes[c].allocs == N, "allocs delta %llu",
              (unsigned long long)(after.classes[c].allocs - before.classes[c].allocs));
    CHECK(after.classes[c].requested_bytes - before.classes[c].requested_bytes == (uint64_t)N * SIZE);
    CHECK(after.classes[c].live_bytes - before.classes[c].live_bytes == (uint64_t)N * bs);
    CHECK(after.allocs - before.allocs == N);
    CHECK(after.reserved_bytes >= after.live_bytes && after.peak_reserved_bytes >= after.reserved_bytes);
    snap(&before);
    for (int i = 0; i < N; i++) poolside_free(blocks[i]);
    snap(&after);
    CHECK(after.classes[c].frees - before.classes[c].frees == N);
    CHECK(before.classes[c].live_bytes - after.classes[c].live_bytes == (uint64_t)N * bs);

    /* Large and huge requests land in their own slots. */
    snap(&before);
    void *large = poolside_malloc(3u << 20), *huge = poolside_malloc(40u << 20);
    snap(&after);
    CHECK(after.classes[POOLSIDE_LARGE_SLOT].allocs - before.classes[POOLSIDE_LARGE_SLOT].allocs == 1);
    CHECK(after.classes[POOLSIDE_HUGE_SLOT].allocs - before.classes[POOLSIDE_HUGE_SLOT].allocs == 1);
    CHECK(after.classes[POOLSIDE_HUGE_SLOT].requested_bytes - before.classes[POOLSIDE_HUGE_SLOT].requested_bytes == 40u << 20);
    poolside_free(large);
    poolside_free(huge);
    CHECK(poolside_stats_snapshot(NULL) == EINVAL);
}

/* Freed memory goes back to the OS on poolside_purge. */
static void purge(void) {
    enum { N = 64 };
    static char *big[N];
    for (int i = 0; i < N; i++) {
        big[i] = poolside_malloc(2u << 20);
        CHECK(big[i] != NULL);
        memset(big[i], 1, 2u << 20);
    }
    snap(&before);
    for (int i = 0; i < N; i++) poolside_free(big[i]);
    poolside_purge();
    snap(&after);
    CHECK_MSG(after.purged_bytes - before.purged_bytes >= (uint64_t)N << 20,
              "purged only %llu bytes", (unsigned long long)(after.purged_bytes - before.purged_bytes));
    CHECK(after.reserved_bytes + ((uint64_t)N << 20) <= before.reserved_bytes);
}

/* Threads that exit hand their memory back: blocks they leave behind are freed by another
 * thread, their pages are reused, and the pool does not grow with the number of threads. */
enum { PER_THREAD = 4000, THREADS = 64 };
static void *leftover[PER_THREAD];

static void *worker(void *arg) {
    (void)arg;
    static __thread void *mine[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        mine[i] = poolside_malloc(64 + (i % 32) * 16);
        CHECK(mine[i] != NULL);
        memset(mine[i], 0x33, 64);
    }
    /* Half freed here, half left for the main thread to free after this one is gone. */
    for (int i = 0; i < PER_THREAD; i++) {
        if (i % 2) poolside_free(mine[i]);
        else leftover[i] = mine[i];
    }
    return NULL;
}

static void thread_exit(void) {
    uint64_t first_reserved = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        for (int i = 0; i < PER_THREAD; i += 2) {
            CHECK(((unsigned char *)leftover[i])[63] == 0x33);
            poolside_free(leftover[i]);
        }
        poolside_collect();
        if (t == 1) {
            snap(&before);
            first_reserved = before.reserved_bytes;
        }
    }
    snap(&after);
    /* One thread's blocks take about 1.3 MB; were exited heaps not reused, 62 more threads
     * would add about 80 MB. */
    CHECK_MSG(after.reserved_bytes <= first_reserved + (8u << 20),
              "reserved grew from %llu to %llu over %d exiting threads",
              (unsigned long long)first_reserved, (unsigned long long)after.reserved_bytes, THREADS);
    CHECK(after.heaps_active + after.heaps_abandoned <= 4);
}

int main(void) {
    version();
    allocation_functions();
    stats_counters();
    purge();
    thread_exit();
    puts("api: ok");
    return 0;
}
