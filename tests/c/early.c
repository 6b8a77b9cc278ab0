/* Early and re-entrant calls under LD_PRELOAD=libpoolside.so.
 *
 * - malloc from a .preinit_array function and from the earliest constructor: before
 *   them, ld.so and libc have already called malloc (poolside's first call initialised it
 *   before any constructor); these must work and be poolside's.
 * - general-dynamic TLS of dlopen'ed libraries: glibc's __tls_get_addr allocates those
 *   blocks, and grows the DTV, with malloc. A malloc that itself reached __tls_get_addr
 *   would recurse forever. Threads started before the dlopens then touch every module's
 *   TLS, while others start and stop.
 *
 * Usage: early DIR N: DIR/libtls<i>.so for i < N, each built from tls_lib.c. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

static int early_ok;

static void allocate_some(void) {
    int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "poolside_owns");
    char *p = malloc(100), *c = calloc(10, 10);
    void *a = NULL;
    if (p && c && owns && owns(p) && owns(c) && posix_memalign(&a, 64, 10) == 0) {
        p = realloc(p, 10000);
        if (p && owns(p)) early_ok++;
    }
    free(p);
    free(c);
    free(a);
}

static void preinit(int argc, char **argv, char **envp) {
    (void)argc, (void)argv, (void)envp;
    allocate_some();
}
__attribute__((section(".preinit_array"), used)) static void (*preinit_fn)(int, char **, char **) = preinit;

__attribute__((constructor(101))) static void first_constructor(void) { allocate_some(); }

enum { MAX_LIBS = 64, THREADS = 4 };
static int nlibs;
static char *(*tls_fns[MAX_LIBS])(void);
static pthread_barrier_t loaded;

/* Touches every module's TLS block from this thread; checks it is private and zeroed. */
static void touch_all(uintptr_t tag) {
    for (int i = 0; i < nlibs; i++) {
        char *block = tls_fns[i]();
        CHECK(block != NULL);
        CHECK(block[0] == 0 || block[0] == (char)tag);
        memset(block, (int)tag, 4096);
    }
    for (int i = 0; i < nlibs; i++) CHECK(tls_fns[i]()[4095] == (char)tag);
}

static void *early_thread(void *arg) {
    pthread_barrier_wait(&loaded); /* started before the dlopens, runs after them */
    touch_all((uintptr_t)arg);
    return NULL;
}

static void *late_thread(void *arg) {
    touch_all((uintptr_t)arg);
    void *p = malloc(1000);
    CHECK(p != NULL);
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    CHECK_MSG(early_ok == 2, "early allocations: %d of 2 worked", early_ok);
    nlibs = atoi(argv[2]);
    CHECK(nlibs > 0 && nlibs <= MAX_LIBS);
    pthread_t early[THREADS];
    CHECK(pthread_barrier_init(&loaded, NULL, THREADS + 1) == 0);
    for (uintptr_t t = 0; t < THREADS; t++) CHECK(pthread_create(&early[t], NULL, early_thread, (void *)(t + 1)) == 0);
    for (int i = 0; i < nlibs; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/libtls%d.so", argv[1], i);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CHECK_MSG(h != NULL, "%s", dlerror());
        tls_fns[i] = (char *(*)(void))dlsym(h, "tls_block");
        CHECK(tls_fns[i] != NULL);
    }
    pthread_barrier_wait(&loaded);
    touch_all(100);
    for (int round = 0; round < 20; round++) {
        pthread_t late[THREADS];
        for (uintptr_t t = 0; t < THREADS; t++) CHECK(pthread_create(&late[t], NULL, late_thread, (void *)(t + 10)) == 0);
        for (int t = 0; t < THREADS; t++) CHECK(pthread_join(late[t], NULL) == 0);
    }
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(early[t], NULL) == 0);
    puts("early: ok");
    return 0;
}
