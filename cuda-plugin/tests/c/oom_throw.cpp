// An out-of-memory must reach the caller (PyTorch) as a C++ exception carrying the message.
#include <dlfcn.h>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <stdexcept>

int main(int, char **argv) {
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  auto alloc = reinterpret_cast<void *(*)(size_t, int, void *)>(dlsym(lib, "poolside_cuda_malloc"));
  if (!alloc) return 1;
  if (!alloc(1 << 20, 0, nullptr)) return 2;
  try {
    alloc(size_t(1) << 40, 0, nullptr);
  } catch (const std::runtime_error &e) {
    if (std::strncmp(e.what(), "CUDA out of memory. Tried to allocate 1024.00 GiB", 49) != 0) {
      std::fprintf(stderr, "wrong message: %s\n", e.what());
      return 3;
    }
    // Sizes near SIZE_MAX once rounded to 0 and returned one shared pointer: each must
    // throw the out-of-memory message instead.
    const size_t huge[] = {SIZE_MAX, SIZE_MAX - 0x1fe, SIZE_MAX / 2 + 1};
    for (size_t h : huge) {
      try {
        void *p = alloc(h, 0, nullptr);
        std::fprintf(stderr, "malloc(%zx) returned %p\n", h, p);
        return 6;
      } catch (const std::runtime_error &e3) {
        if (std::strncmp(e3.what(), "CUDA out of memory. Tried to allocate", 37) != 0) {
          std::fprintf(stderr, "wrong message for %zx: %s\n", h, e3.what());
          return 7;
        }
      }
    }
    try {
      alloc(16, 9, nullptr);
    } catch (const std::runtime_error &e2) {
      // The header promises: anything but an out-of-memory starts with "poolside: ".
      if (std::strncmp(e2.what(), "poolside: invalid device 9", 26) != 0) {
        std::fprintf(stderr, "wrong message: %s\n", e2.what());
        return 8;
      }
      std::printf("oom_throw: ok: %s | %s\n", e.what(), e2.what());
      return 0;
    }
    return 5;
  }
  return 4;
}
