/* Loads libpoolside_cuda.so with dlopen, as PyTorch does, and allocates from four threads
 * on both simulated devices, so that a configuration warning printed per thread, per
 * device or per parse would show as several lines. Exits non-zero on any failure. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

typedef void *(*alloc_fn)(size_t, int, void *);
typedef void (*free_fn)(void *, size_t, int, void *);

static alloc_fn alloc;
static free_fn release;

static void *worker(void *arg) {
  int device = (int)(size_t)arg % 2;
  for (int i = 0; i < 100; i++) {
    void *p = alloc(1000 + (size_t)i * 4096, device, (void *)0x1234);
    if (!p) return (void *)1;
    release(p, 1000 + (size_t)i * 4096, device, (void *)0x1234);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  alloc = (alloc_fn)dlsym(lib, "poolside_cuda_malloc");
  release = (free_fn)dlsym(lib, "poolside_cuda_free");
  if (!alloc || !release) { fprintf(stderr, "dlsym failed\n"); return 1; }
  pthread_t t[4];
  for (size_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  int failed = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    failed |= r != NULL;
  }
  if (failed) { fprintf(stderr, "an allocation failed\n"); return 1; }
  printf("conf_warnings: ok\n");
  return 0;
}
