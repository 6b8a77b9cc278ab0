/* Huge and absurd requests through the malloc family: 2^40..2^47 bytes and sizes near
 * SIZE_MAX, by malloc, calloc, realloc, aligned_alloc, posix_memalign, memalign, valloc and
 * pvalloc. Run twice by tests/tests/preload_huge.rs, with and without
 * LD_PRELOAD=libpoolside.so: each call prints one line "R <call> <size> <answer>", and the
 * test wants the same lines from both, so that the expected answer is glibc's under the
 * kernel's overcommit policy as it is set now, not one written down for some machine.
 *
 * Checked here, under either allocator:
 * - a NULL comes with ENOMEM (posix_memalign: returns ENOMEM, leaves *memptr alone);
 * - a refused realloc leaves the old block, contents and all;
 * - in overcommit mode 0, one mapping above RAM + swap is refused (the kernel's rule);
 * - no call takes a second (work in proportion to the size would: seconds for 2^43);
 * - 16 blocks of 1 GiB, touched once each, cost little RSS live and nothing once freed,
 *   and a 4 MiB calloc afterwards does not stall. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define STALL_S 1.0

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Reads a small /proc file into buf (NUL-terminated); 0 when missing. */
static int read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return 1;
}

static int overcommit_mode(void) {
    char buf[32];
    if (!read_small("/proc/sys/vm/overcommit_memory", buf, sizeof buf)) return -1;
    return atoi(buf);
}

static size_t meminfo_kib(const char *buf, const char *field) {
    const char *p = strstr(buf, field);
    return p ? strtoull(p + strlen(field), NULL, 10) : 0;
}

/* MemTotal + SwapTotal in bytes; 0 when unknown. */
static size_t ram_plus_swap(void) {
    static char buf[8192];
    if (!read_small("/proc/meminfo", buf, sizeof buf)) return 0;
    return (meminfo_kib(buf, "MemTotal:") + meminfo_kib(buf, "SwapTotal:")) * 1024;
}

static size_t rss_bytes(void) {
    char buf[128];
    CHECK(read_small("/proc/self/statm", buf, sizeof buf));
    unsigned long size, resident;
    CHECK(sscanf(buf, "%lu %lu", &size, &resident) == 2);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static int mode;
static size_t limit;
static double t0;

static void start(void) {
    errno = 0;
    t0 = now_s();
}

/* Reports one call's answer; checks errno, the stall bound and the mode-0 rule. */
static void report(const char *call, const char *name, size_t size, void *p, int rc) {
    double took = now_s() - t0;
    int err = errno;
    CHECK_MSG(took < STALL_S, "%s(%s) took %.3f s", call, name, took);
    if (rc >= 0) { /* posix_memalign */
        CHECK_MSG(rc == 0 || rc == ENOMEM, "%s(%s) returned %d", call, name, rc);
    } else if (!p) {
        CHECK_MSG(err == ENOMEM, "%s(%s): NULL with errno %d", call, name, err);
    }
    int refused = rc >= 0 ? rc != 0 : p == NULL;
    if (mode == 0 && limit && size > limit + (1u << 20))
        CHECK_MSG(refused, "%s(%s): mode 0 refuses one mapping above RAM + swap", call, name);
    printf("R %s %s %s\n", call, name, refused ? "NULL" : "ptr");
}

/* Touches the two ends of a block that was handed out, and frees it. */
static void use_and_free(unsigned char *p, size_t size) {
    if (!p) return;
    p[0] = 1;
    p[size - 1] = 2;
    free(p);
}

static void check_fill(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i += 4096) CHECK_MSG(p[i] == v, "byte %zu changed", i);
    CHECK(p[n - 1] == v);
}

/* Keeps the compiler from folding (and warning about) calls with constant sizes. */
static volatile size_t vsize;

static void try_size(const char *name, size_t size) {
    vsize = size;
    size_t n = vsize;
    void *p;

    start();
    p = malloc(n);
    report("malloc", name, n, p, -1);
    use_and_free(p, n);

    start();
    p = calloc(1, n);
    report("calloc(1,n)", name, n, p, -1);
    if (p) CHECK(((unsigned char *)p)[n - 1] == 0);
    use_and_free(p, n);

    /* The same bytes as n/16 elements of 16: the product, not the count, decides. */
    start();
    p = calloc(n / 16, 16);
    report("calloc(n/16,16)", name, n / 16 * 16, p, -1);
    use_and_free(p, n / 16 * 16);

    size_t olds[2] = {100, 8u << 20};
    for (int i = 0; i < 2; i++) {
        unsigned char *old = malloc(olds[i]);
        CHECK(old);
        memset(old, 0x5a, olds[i]);
        start();
        unsigned char *q = realloc(old, n);
        report(i ? "realloc(8MiB)" : "realloc(100)", name, n, q, -1);
        if (q) {
            CHECK(q[0] == 0x5a && q[olds[i] - 1] == 0x5a);
            use_and_free(q, n);
        } else {
            check_fill(old, olds[i], 0x5a);
            free(old);
        }
    }

    size_t aligns[3] = {1u << 16, 1u << 21, 1u << 30};
    for (int i = 0; i < 3; i++) {
        char call[48];
        snprintf(call, sizeof call, "aligned_alloc(%zu)", aligns[i]);
        start();
        p = aligned_alloc(aligns[i], n);
        report(call, name, n, p, -1);
        CHECK(((uintptr_t)p & (aligns[i] - 1)) == 0);
        use_and_free(p, n);

        snprintf(call, sizeof call, "posix_memalign(%zu)", aligns[i]);
        void *out = (void *)0x1;
        start();
        int rc = posix_memalign(&out, aligns[i], n);
        report(call, name, n, out, rc);
        if (rc == 0) {
            CHECK(((uintptr_t)out & (aligns[i] - 1)) == 0);
            use_and_free(out, n);
        } else {
            CHECK_MSG(out == (void *)0x1, "posix_memalign changed *memptr on failure");
        }
    }

    start();
    p = memalign(1u << 16, n);
    report("memalign", name, n, p, -1);
    use_and_free(p, n);

    start();
    p = valloc(n);
    report("valloc", name, n, p, -1);
    use_and_free(p, n);

    start();
    p = pvalloc(n);
    report("pvalloc", name, n, p, -1);
    use_and_free(p, n);
}

/* Huge blocks leave nothing behind, and the next mid-size calloc is served at once. */
static void freed_blocks_leave_nothing(void) {
    enum { WANT = 16 };
    const size_t block = (size_t)1 << 30;
    /* A word per 64 KiB of each block, the cost this guards against. */
    const size_t per_block_by_unit = block / 65536 * 8;
    void *blocks[WANT];
    size_t before = rss_bytes();
    int n = 0;
    for (; n < WANT; n++) {
        start();
        blocks[n] = malloc(block);
        CHECK_MSG(now_s() - t0 < STALL_S, "1 GiB malloc stalled");
        if (!blocks[n]) break;
        ((unsigned char *)blocks[n])[0] = 1;
    }
    if (n < 4) {
        printf("skip: only %d blocks of 1 GiB could be mapped at once\n", n);
        for (int i = 0; i < n; i++) free(blocks[i]);
        return;
    }
    size_t live = rss_bytes() - before;
    CHECK_MSG(live < n * per_block_by_unit / 2, "%d live 1 GiB blocks cost %zu bytes", n, live);
    for (int i = 0; i < n; i++) {
        start();
        free(blocks[i]);
        CHECK_MSG(now_s() - t0 < STALL_S, "1 GiB free stalled");
    }
    size_t rss = rss_bytes();
    size_t after = rss > before ? rss - before : 0;
    CHECK_MSG(after < n * per_block_by_unit / 4, "%d freed 1 GiB blocks left %zu bytes", n, after);
    start();
    unsigned char *c = calloc(1, 4u << 20);
    CHECK_MSG(now_s() - t0 < STALL_S, "4 MiB calloc stalled");
    CHECK(c && c[0] == 0 && c[(4u << 20) - 1] == 0);
    free(c);
    printf("freed: %d blocks of 1 GiB, RSS +%zu live, +%zu after free\n", n, live, after);
}

int main(void) {
    mode = overcommit_mode();
    limit = ram_plus_swap();
    printf("overcommit mode %d, RAM + swap %zu\n", mode, limit);
    char name[32];
    /* 2^32 and 2^34: sizes a machine with RAM may grant, so that the granted path is
     * compared too (both allocators refuse them on a smaller one). */
    try_size("2^32", (size_t)1 << 32);
    try_size("2^34", (size_t)1 << 34);
    for (int k = 40; k <= 47; k++) {
        snprintf(name, sizeof name, "2^%d", k);
        try_size(name, (size_t)1 << k);
    }
    try_size("2^48-64KiB", ((size_t)1 << 48) - 65536);
    try_size("2^48", (size_t)1 << 48);
    try_size("PTRDIFF_MAX", (size_t)PTRDIFF_MAX);
    try_size("PTRDIFF_MAX+1", (size_t)PTRDIFF_MAX + 1);
    try_size("SIZE_MAX-64KiB", SIZE_MAX - 65536);
    try_size("SIZE_MAX-4095", SIZE_MAX - 4095);
    try_size("SIZE_MAX-1", SIZE_MAX - 1);
    try_size("SIZE_MAX", SIZE_MAX);

    /* calloc's product overflows: never a block. */
    static volatile size_t big_n = (size_t)1 << 24, big_s = (size_t)1 << 40;
    start();
    void *p = calloc(big_n, big_s);
    report("calloc(2^24,2^40)", "overflow", SIZE_MAX, p, -1);
    CHECK(!p);
    start();
    p = calloc(big_n << 39, 2); /* 2^63 elements of 2 bytes */
    report("calloc(2^63,2)", "overflow", SIZE_MAX, p, -1);
    CHECK(!p);

    freed_blocks_leave_nothing();
    printf("huge: ok\n");
    return 0;
}
