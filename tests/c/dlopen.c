/* The C API without the preload: libpoolside.so loaded with dlopen (so malloc stays
 * glibc's), its poolside_* functions used from threads that existed before the dlopen.
 * Usage: dlopen PATH_TO_LIBPOOLSIDE_SO */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

static void *(*p_malloc)(size_t);
static void (*p_free)(void *);
static int (*p_owns)(const void *);
static void *(*p_realloc)(void *, size_t);
static pthread_barrier_t loaded;

static void *work(void *arg) {
    pthread_barrier_wait(&loaded);
    uintptr_t tag = (uintptr_t)arg;
    enum { N = 2000 };
    static __thread char *blocks[N];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            blocks[i] = p_malloc(1 + (size_t)(i * 37 % 3000));
            CHECK(blocks[i] != NULL && p_owns(blocks[i]));
            blocks[i][0] = (char)tag;
        }
        for (int i = 0; i < N; i++) {
            CHECK(blocks[i][0] == (char)tag);
            blocks[i] = p_realloc(blocks[i], 5000);
            CHECK(blocks[i] != NULL && blocks[i][0] == (char)tag);
            p_free(blocks[i]);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    enum { T = 4 };
    pthread_t th[T];
    CHECK(pthread_barrier_init(&loaded, NULL, T + 1) == 0);
    for (uintptr_t t = 0; t < T; t++) CHECK(pthread_create(&th[t], NULL, work, (void *)(t + 1)) == 0);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "%s", dlerror());
    p_malloc = (void *(*)(size_t))dlsym(h, "poolside_malloc");
    p_free = (void (*)(void *))dlsym(h, "poolside_free");
    p_owns = (int (*)(const void *))dlsym(h, "poolside_owns");
    p_realloc = (void *(*)(void *, size_t))dlsym(h, "poolside_realloc");
    CHECK(p_malloc && p_free && p_owns && p_realloc);
    /* Not preloaded: the program's malloc is still glibc's, and poolside ignores its blocks. */
    char *theirs = malloc(100);
    CHECK(theirs != NULL && !p_owns(theirs));
    memset(theirs, 5, 100);
    p_free(theirs);
    CHECK(theirs[99] == 5);
    free(theirs);
    pthread_barrier_wait(&loaded);
    for (int t = 0; t < T; t++) CHECK(pthread_join(th[t], NULL) == 0);
    puts("dlopen: ok");
    return 0;
}
