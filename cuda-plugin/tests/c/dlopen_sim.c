/* Loads libpoolside_cuda.so with dlopen and calls it by name, as PyTorch's
 * CUDAPluggableAllocator does, on the simulated driver. Exits non-zero on any failure. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "poolside_cuda.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)

int main(int argc, char **argv) {
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  void *(*alloc)(size_t, int, void *) = dlsym(lib, "poolside_cuda_malloc");
  void (*release)(void *, size_t, int, void *) = dlsym(lib, "poolside_cuda_free");
  void (*init)(int) = dlsym(lib, "poolside_cuda_init");
  void (*empty)(void) = dlsym(lib, "poolside_cuda_empty_cache");
  void (*fraction)(double, int) = dlsym(lib, "poolside_cuda_set_memory_fraction");
  void *(*base)(void *, size_t *) = dlsym(lib, "poolside_cuda_base_alloc");
  void (*record)(void *, void *) = dlsym(lib, "poolside_cuda_record_stream");
  int (*stats)(int, struct DeviceSection *) = dlsym(lib, "poolside_cuda_memory_stats");
  void (*reset)(int) = dlsym(lib, "poolside_cuda_reset_peak_stats");
  void *(*impl)(size_t, int, void *, char *, size_t) = dlsym(lib, "poolside_cuda_malloc_impl");
  CHECK(alloc && release && init && empty && fraction && base && record && stats && reset && impl);

  init(0);
  init(2);
  void *stream = (void *)0x1234;
  void *small = alloc(1000, 0, stream);
  void *large = alloc(50u << 20, 0, stream);
  CHECK(small && large && small != large);
  CHECK(((uintptr_t)small % 512) == 0 && ((uintptr_t)large % 512) == 0);
  size_t sz = 0;
  CHECK(base((char *)large + 4096, &sz) == large && sz == (50u << 20));
  record(large, (void *)0x5678);

  struct DeviceSection s;
  CHECK(stats(0, &s) == 0);
  CHECK(s.present == 1 && s.device == 0);
  CHECK(s.allocated_bytes.current == (50u << 20) + 1024);
  CHECK(s.requested_bytes.current == (50u << 20) + 1000);
  CHECK(s.reserved_bytes.current >= s.allocated_bytes.current);
  CHECK(stats(99, &s) == 1);
  CHECK(stats(0, NULL) == 2);

  release(small, 1000, 0, stream);
  release(large, 50u << 20, 0, stream);
  release(NULL, 0, 0, stream);
  empty(); /* waits for the record_stream event */
  CHECK(stats(0, &s) == 0);
  CHECK(s.allocated_bytes.current == 0 && s.reserved_bytes.current == 0);
  CHECK(s.allocated_bytes.peak == (50u << 20) + 1024);
  reset(0);
  CHECK(stats(0, &s) == 0 && s.allocated_bytes.peak == 0);

  /* The failure path without C++: NULL plus PyTorch's message. */
  char err[1024];
  fraction(0.5, 0); /* of the 64 MiB simulated device */
  CHECK(impl(40u << 20, 0, stream, err, sizeof err) == NULL);
  CHECK(strstr(err, "CUDA out of memory. Tried to allocate 40.00 MiB") == err);
  CHECK(impl(1000, 7, stream, err, sizeof err) == NULL && strstr(err, "invalid device 7"));
  CHECK(stats(0, &s) == 0 && s.ooms == 1 && s.alloc_retries == 2);
  CHECK(alloc(0, 0, stream) == NULL);
  printf("dlopen_sim: ok\n");
  return 0;
}
