/* glibc/POSIX behaviour of the malloc family, run under LD_PRELOAD=libpoolside.so.
 *
 * Also run without the preload (argument "glibc"), where it checks the same contract of
 * glibc itself, minus what only poolside promises (foreign pointers, exact usable size
 * against its own block sizes): a check that fails on glibc would be a wrong check. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void __libc_free(void *);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);

static int on_poolside;
static int (*owns)(const void *);

/* Keeps the compiler from folding calls with constant arguments. */
static volatile size_t huge = SIZE_MAX;
static volatile size_t zero = 0;
/* The foreign-pointer checks free what the compiler can see is not a heap block; calling
 * through these hides that from its warnings (the calls are the point of the test). */
static void (*volatile free_fn)(void *) = free;
/* cfree has no default version in glibc 2.36 (link-time), so it is looked up; poolside
 * exports it, and without poolside a missing cfree is replaced by free. */
static void (*volatile cfree_fn)(void *) = free;

static void fill(unsigned char *p, size_t n, unsigned char v) { memset(p, v, n); }
static void check_fill(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++) CHECK_MSG(p[i] == v, "byte %zu is %d, want %d", i, p[i], v);
}

static void failures_set_errno(void) {
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(huge / 2 + 1) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(huge / 2, 3) == NULL && errno == ENOMEM); /* overflow */
    errno = 0;
    CHECK(calloc(huge >> 44, huge >> 10) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(64, huge - 4096) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(4096, huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(huge) == NULL && errno == ENOMEM);
    void *out = (void *)0x1;
    CHECK(posix_memalign(&out, 64, huge) == ENOMEM && out == (void *)0x1);

    char *p = malloc(100);
    CHECK(p != NULL);
    fill((unsigned char *)p, 100, 0x5a);
    errno = 0;
    CHECK(realloc(p, huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(p, huge / 2, 3) == NULL && errno == ENOMEM);
    check_fill((unsigned char *)p, 100, 0x5a); /* old block intact */
    free(p);
}

static void bad_alignments(void) {
    void *out = (void *)0x1;
    CHECK(posix_memalign(&out, 3, 10) == EINVAL && out == (void *)0x1);
    CHECK(posix_memalign(&out, 4, 10) == EINVAL); /* below sizeof(void*) */
    CHECK(posix_memalign(&out, 0, 10) == EINVAL);
    CHECK(posix_memalign(&out, 24, 10) == EINVAL);
    /* glibc before 2.38 treats aligned_alloc as memalign (rounding the alignment up); only
     * poolside promises EINVAL, as glibc 2.38 and C17 do. */
    if (on_poolside) {
        errno = 0;
        CHECK(aligned_alloc(3, 10) == NULL && errno == EINVAL);
        errno = 0;
        CHECK(aligned_alloc(0, 10) == NULL && errno == EINVAL);
    }
    /* memalign rounds a bad alignment up to a power of two, as glibc does. */
    char *m = memalign(24, 100);
    CHECK(m != NULL && (uintptr_t)m % 32 == 0);
    free(m);
    errno = 0;
    CHECK(memalign(huge / 2 + 2, 10) == NULL && errno == EINVAL);
}

static void zero_sizes(void) {
    void *a = malloc(zero), *b = malloc(zero);
    CHECK(a != NULL && b != NULL && a != b);
    free(a);
    free(b);
    void *c = calloc(zero, 10);
    CHECK(c != NULL);
    free(c);
    void *r = realloc(NULL, zero); /* malloc(0) */
    CHECK(r != NULL);
    errno = 1234;
    CHECK(realloc(r, zero) == NULL); /* frees r */
    CHECK(errno == 1234);
    void *al = aligned_alloc(256, zero);
    CHECK(al != NULL && (uintptr_t)al % 256 == 0);
    free(al);
    void *pv = pvalloc(zero);
    CHECK(pv != NULL && (uintptr_t)pv % 4096 == 0);
    free(pv);
    free(NULL);
    cfree_fn(NULL);
}

static void realloc_rules(void) {
    char *p = realloc(NULL, 40);
    CHECK(p != NULL);
    for (int i = 0; i < 40; i++) p[i] = (char)(i * 7);
    /* Grow through every regime: small classes, large spans, huge mappings. */
    size_t sizes[] = {41, 1000, 70000, 1u << 20, (1u << 20) + 1, 5u << 20, 40u << 20, 100, 10};
    size_t have = 40;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *q = realloc(p, sizes[k]);
        CHECK(q != NULL);
        size_t keep = have < sizes[k] ? have : sizes[k];
        for (size_t i = 0; i < keep; i++) CHECK_MSG(q[i] == (char)(i * 7 + k), "realloc lost byte %zu", i);
        for (size_t i = 0; i < sizes[k]; i++) q[i] = (char)(i * 7 + k + 1);
        p = q;
        have = sizes[k];
    }
    free(p);
    char *ra = reallocarray(NULL, 10, 10);
    CHECK(ra != NULL);
    memset(ra, 1, 100);
    ra = reallocarray(ra, 100, 100);
    CHECK(ra != NULL && ra[99] == 1);
    free(ra);
}

static void alignments(void) {
    for (size_t a = 1; a <= (1u << 22); a <<= 1) {
        size_t sizes[] = {0, 1, a, a + 1, 3 * a, 100000};
        for (size_t k = 0; k < 6; k++) {
            char *p = aligned_alloc(a, sizes[k]);
            CHECK_MSG(p != NULL && (uintptr_t)p % a == 0, "aligned_alloc(%zu, %zu) = %p", a, sizes[k], p);
            memset(p, 0xcd, sizes[k]);
            free(p);
            void *q = NULL;
            if (a >= sizeof(void *)) {
                CHECK(posix_memalign(&q, a, sizes[k]) == 0 && (uintptr_t)q % a == 0);
                memset(q, 0xab, sizes[k]);
                free(q);
            }
            q = memalign(a, sizes[k]);
            CHECK(q != NULL && (uintptr_t)q % a == 0);
            free(q);
        }
    }
    /* malloc's own alignment: 16 bytes for every block that could hold a 16-aligned object. */
    for (size_t n = 1; n < 2000; n++) {
        void *p = malloc(n);
        CHECK(p != NULL);
        CHECK_MSG((uintptr_t)p % (n >= 16 ? 16 : 8) == 0, "malloc(%zu) = %p", n, p);
        free(p);
    }
    char *v = valloc(5000);
    CHECK(v != NULL && (uintptr_t)v % 4096 == 0);
    memset(v, 1, 5000);
    free(v);
    char *pv = pvalloc(5000);
    CHECK(pv != NULL && (uintptr_t)pv % 4096 == 0 && malloc_usable_size(pv) >= 8192);
    memset(pv, 1, 8192); /* pvalloc rounds the size up to whole pages */
    free(pv);
}

static void calloc_zeroes(void) {
    /* Dirty memory first, so that a reused block would show if calloc skipped zeroing. */
    size_t sizes[] = {8, 24, 200, 4000, 70000, 1u << 20, 3u << 20, 20u << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int round = 0; round < 3; round++) {
            unsigned char *d = malloc(sizes[k]);
            CHECK(d != NULL);
            memset(d, 0xff, sizes[k]);
            free(d);
            unsigned char *c = calloc(1, sizes[k]);
            CHECK(c != NULL);
            check_fill(c, sizes[k], 0);
            memset(c, 0xee, sizes[k]);
            free(c);
        }
    }
}

/* Every block is aligned for any object of its size (glibc's guarantee): 16 bytes above
 * 8, 8 up to 8. malloc and calloc reach it through the size, without a branch. */
static void natural_alignment(void) {
    for (size_t s = 0; s <= 300; s++) {
        void *m = malloc(s), *c = calloc(1, s), *c2 = calloc(s, 3);
        size_t want = s > 8 ? 16 : 8, want3 = 3 * s > 8 ? 16 : 8;
        CHECK(m != NULL && (uintptr_t)m % want == 0 && malloc_usable_size(m) >= s);
        CHECK(c != NULL && (uintptr_t)c % want == 0 && malloc_usable_size(c) >= s);
        CHECK(c2 != NULL && (uintptr_t)c2 % want3 == 0 && malloc_usable_size(c2) >= 3 * s);
        check_fill(c, s, 0);
        check_fill(c2, 3 * s, 0);
        free(m);
        free(c);
        free(c2);
    }
}

static void free_preserves_errno(void) {
    size_t sizes[] = {1, 100, 5000, 300000, 2u << 20, 64u << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        void *p = malloc(sizes[k]);
        CHECK(p != NULL);
        errno = 4321;
        free(p);
        CHECK(errno == 4321);
    }
    errno = 77;
    free(NULL);
    CHECK(errno == 77);
}

/* Exactness: every byte up to the usable size is the caller's (writing it disturbs no
 * neighbour), and, for size classes, one byte more no longer fits in place. */
static void usable_size_exact(void) {
    CHECK(malloc_usable_size(NULL) == 0);
    enum { N = 64 };
    for (size_t n = 0; n < 3000; n += 7) {
        unsigned char *b[N];
        size_t us[N];
        for (int i = 0; i < N; i++) {
            b[i] = malloc(n);
            CHECK(b[i] != NULL);
            us[i] = malloc_usable_size(b[i]);
            CHECK_MSG(us[i] >= n, "usable %zu < %zu", us[i], n);
            memset(b[i], i, us[i]);
        }
        for (int i = 0; i < N; i++) check_fill(b[i], us[i], (unsigned char)i);
        if (on_poolside) {
            /* Resizing within the usable size keeps the block; one byte more moves it. */
            unsigned char *same = realloc(b[0], us[0]);
            CHECK(same == b[0]);
            unsigned char *moved = realloc(b[1], us[1] + 1);
            CHECK(moved != NULL && moved != b[1]);
            check_fill(moved, us[1], 1);
            b[1] = moved;
        }
        for (int i = 0; i < N; i++) free(b[i]);
    }
}

static void aliases(void) {
    char *p = __libc_malloc(100);
    CHECK(p != NULL);
    memset(p, 3, 100);
    p = __libc_realloc(p, 5000);
    CHECK(p != NULL && p[99] == 3);
    __libc_free(p);
    unsigned char *c = __libc_calloc(10, 10);
    CHECK(c != NULL);
    check_fill(c, 100, 0);
    __libc_free(c);
    void *m = __libc_memalign(512, 10);
    CHECK(m != NULL && (uintptr_t)m % 512 == 0);
    free(m); /* blocks move freely between the names */
    void *v = __libc_valloc(10);
    CHECK(v != NULL && (uintptr_t)v % 4096 == 0);
    cfree_fn(v);
    void *pv = __libc_pvalloc(10);
    CHECK(pv != NULL && (uintptr_t)pv % 4096 == 0);
    __libc_free(pv);
    if (on_poolside) {
        void *q = __libc_malloc(10);
        CHECK(owns(q));
        free(q);
    }
}

/* Pointers poolside did not allocate: ignored by free, size 0, realloc refuses them. */
static void foreign_pointers(void) {
    static char in_data[256];
    char on_stack[256];
    char *mapped = mmap(NULL, 1u << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mapped != MAP_FAILED);
    memset(mapped, 0x42, 1u << 16);
    /* glibc's own malloc, reached around the preload: a real heap block of another
     * allocator, as a program could hold from before poolside was loaded. */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(libc != NULL);
    void *(*glibc_malloc)(size_t) = (void *(*)(size_t))dlsym(libc, "malloc");
    CHECK(glibc_malloc != NULL);
    char *theirs = glibc_malloc(100);
    CHECK(theirs != NULL);
    memset(theirs, 0x24, 100);
    char *foreign[] = {in_data, on_stack + 16, mapped, mapped + 4096, theirs};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        CHECK_MSG(malloc_usable_size(foreign[i]) == 0, "foreign %zu (%p): %zu", i, (void *)foreign[i], malloc_usable_size(foreign[i]));
        CHECK(!owns(foreign[i]));
        errno = 0;
        CHECK(realloc(foreign[i], 1000) == NULL && errno == ENOMEM);
        free_fn(foreign[i]);
        cfree_fn(foreign[i]);
    }
    check_fill((unsigned char *)mapped, 1u << 16, 0x42);
    check_fill((unsigned char *)theirs, 100, 0x24);
    munmap(mapped, 1u << 16);
}

int main(int argc, char **argv) {
    on_poolside = !(argc > 1 && strcmp(argv[1], "glibc") == 0);
    void (*cfree_sym)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (cfree_sym != NULL) cfree_fn = cfree_sym;
    if (on_poolside) {
        CHECK_MSG(cfree_sym != NULL, "libpoolside.so exports no cfree");
        owns = (int (*)(const void *))dlsym(RTLD_DEFAULT, "poolside_owns");
        CHECK_MSG(owns != NULL, "libpoolside.so is not loaded");
        void *p = malloc(10);
        CHECK_MSG(owns(p), "malloc is not poolside's");
        free(p);
    }
    failures_set_errno();
    bad_alignments();
    zero_sizes();
    realloc_rules();
    alignments();
    calloc_zeroes();
    natural_alignment();
    free_preserves_errno();
    usable_size_exact();
    aliases();
    if (on_poolside) foreign_pointers();
    puts("semantics: ok");
    return 0;
}
