/* Multi-threaded stress under LD_PRELOAD=libpoolside.so: mixed sizes, blocks freed by other
 * threads than their allocator, realloc chains, forks while threads allocate, thread
 * churn. Every block carries a pattern derived from its address and size, checked before
 * it is freed, so any overlap, lost write or double hand-out shows.
 *
 * Usage: stress [ROUNDS]   (work per thread scales with ROUNDS; default 40) */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { WORKERS = 4, SLOTS = 4096, LOCAL = 256 };

/* Blocks in flight between threads: any thread may take and free what another left. */
static _Atomic(uintptr_t) exchange[SLOTS];
static atomic_int stop_forking;
static int forks_done;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mostly small, some medium, a few large and huge: all the engine's regimes. */
static size_t pick_size(uint64_t *s) {
    uint64_t r = next_rand(s);
    switch (r % 100) {
    case 0: return (size_t)(16u << 20) + r % (8u << 20);    /* huge mapping */
    case 1 ... 3: return (size_t)(1u << 20) + r % (3u << 20); /* large span */
    case 4 ... 14: return 1024 + r % 65536;
    default: return r % 512;
    }
}

/* A block's header: its size, then a pattern word at both ends and in the middle. */
static uint64_t pattern(const void *p, size_t n) { return ((uintptr_t)p * 0x9E3779B97F4A7C15ull) ^ n; }

static void *make(size_t n) {
    size_t room = n < 16 ? 16 : n;
    unsigned char *p = malloc(room);
    CHECK(p != NULL);
    CHECK(malloc_usable_size(p) >= room);
    uint64_t v = pattern(p, room);
    memcpy(p, &room, 8);
    memcpy(p + room - 8, &v, 8);
    if (room >= 24) memcpy(p + 8 + (room - 16) / 2 / 8 * 8, &v, 8);
    return p;
}

static void check_block(const unsigned char *p) {
    size_t room;
    memcpy(&room, p, 8);
    uint64_t v = pattern(p, room), end, mid;
    memcpy(&end, p + room - 8, 8);
    CHECK_MSG(end == v, "block %p of %zu bytes: tail overwritten", (const void *)p, room);
    if (room >= 24) {
        memcpy(&mid, p + 8 + (room - 16) / 2 / 8 * 8, 8);
        CHECK_MSG(mid == v, "block %p of %zu bytes: middle overwritten", (const void *)p, room);
    }
}

static void destroy(void *p) {
    check_block(p);
    free(p);
}

/* Grows and shrinks one block through every regime, checking the kept prefix each time. */
static void realloc_chain(uint64_t *s) {
    size_t n = 1 + next_rand(s) % 64;
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    unsigned char seed = (unsigned char)next_rand(s);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i);
    for (int step = 0; step < 24; step++) {
        size_t m = (step % 6 == 5) ? 1 + next_rand(s) % 100 : n * 2 + next_rand(s) % 1000;
        if (m > (40u << 20)) m = 1 + next_rand(s) % 4096;
        unsigned char *q = realloc(p, m);
        CHECK(q != NULL);
        size_t keep = n < m ? n : m;
        for (size_t i = 0; i < keep; i++) CHECK_MSG(q[i] == (unsigned char)(seed + i), "realloc chain lost byte %zu of %zu", i, keep);
        for (size_t i = keep; i < m; i++) q[i] = (unsigned char)(seed + i);
        p = q;
        n = m;
    }
    free(p);
}

static void worker_round(uint64_t *s, void **local) {
    for (int i = 0; i < 2000; i++) {
        uint64_t r = next_rand(s);
        int k = (int)(r % LOCAL);
        if (local[k]) destroy(local[k]);
        local[k] = make(pick_size(s));
        if (r % 3 == 0) {
            /* Hand a block to whoever comes next; free what was there. */
            uintptr_t mine = (uintptr_t)make(pick_size(s));
            uintptr_t old = atomic_exchange(&exchange[(r >> 20) % SLOTS], mine);
            if (old) destroy((void *)old);
        }
        if (r % 97 == 0) {
            void *c = calloc(1 + r % 300, 8);
            CHECK(c != NULL);
            for (size_t j = 0; j < (1 + r % 300) * 8; j++) CHECK(((unsigned char *)c)[j] == 0);
            free(c);
        }
        if (r % 211 == 0) {
            void *a = NULL;
            size_t align = (size_t)8 << (r % 14);
            CHECK(posix_memalign(&a, align, 1 + r % 5000) == 0 && (uintptr_t)a % align == 0);
            free(a);
        }
    }
    realloc_chain(s);
}

struct worker_arg {
    uint64_t seed;
    int rounds;
};

static void *worker(void *arg) {
    struct worker_arg *w = arg;
    uint64_t s = w->seed;
    void *local[LOCAL] = {0};
    for (int r = 0; r < w->rounds; r++) worker_round(&s, local);
    for (int k = 0; k < LOCAL; k++)
        if (local[k]) destroy(local[k]);
    return NULL;
}

/* Short-lived threads: allocate, leave blocks in the exchange, exit. */
static void *short_lived(void *arg) {
    uint64_t s = (uintptr_t)arg | 1;
    for (int i = 0; i < 200; i++) {
        uintptr_t mine = (uintptr_t)make(next_rand(&s) % 2048);
        uintptr_t old = atomic_exchange(&exchange[next_rand(&s) % SLOTS], mine);
        if (old) destroy((void *)old);
    }
    return NULL;
}

/* The child of a fork taken while other threads allocate: the allocator must be usable
 * (no lock left held), including from a new thread, and blocks the parent left in the
 * exchange are intact. */
static void child_work(void) {
    for (int i = 0; i < SLOTS; i += 17) {
        uintptr_t b = atomic_load(&exchange[i]);
        if (b) check_block((void *)b);
    }
    uint64_t s = 12345;
    void *local[LOCAL] = {0};
    worker_round(&s, local);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, short_lived, (void *)7) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    for (int k = 0; k < LOCAL; k++)
        if (local[k]) destroy(local[k]);
    _exit(0);
}

static void *forker(void *arg) {
    int forks = *(int *)arg, done = 0;
    for (int i = 0; i < forks && !atomic_load(&stop_forking); i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child_work();
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child %d failed: status %d", i, status);
        done++;
        usleep(1000);
    }
    forks_done = done;
    return NULL;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    CHECK(rounds > 0);
    pthread_t workers[WORKERS], fork_thread;
    struct worker_arg args[WORKERS];
    for (int t = 0; t < WORKERS; t++) {
        args[t] = (struct worker_arg){.seed = 0x1234567ull * (t + 1) | 1, .rounds = rounds};
        CHECK(pthread_create(&workers[t], NULL, worker, &args[t]) == 0);
    }
    int forks = 20;
    CHECK(pthread_create(&fork_thread, NULL, forker, &forks) == 0);
    /* Thread churn while the workers run. */
    for (int wave = 0; wave < rounds; wave++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, short_lived, (void *)(uintptr_t)(wave * 8 + i + 1)) == 0);
        for (int i = 0; i < 8; i++) CHECK(pthread_join(t[i], NULL) == 0);
    }
    for (int t = 0; t < WORKERS; t++) CHECK(pthread_join(workers[t], NULL) == 0);
    atomic_store(&stop_forking, 1);
    CHECK(pthread_join(fork_thread, NULL) == 0);
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t b = atomic_exchange(&exchange[i], 0);
        if (b) destroy((void *)b);
    }
    /* The forks must have overlapped the workers, or the fork check checked nothing. */
    CHECK_MSG(forks_done > 0, "no fork happened while the workers ran");
    printf("stress: ok (%d forks while allocating)\n", forks_done);
    return 0;
}
