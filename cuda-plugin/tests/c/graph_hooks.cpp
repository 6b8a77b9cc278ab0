// The CUDA graph hooks called as PyTorch calls them: by address, with a real
// std::pair id and a real std::function filter (here a lambda with state, as
// PyTorch's captures `this`), through dlopen, on the simulated driver.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <utility>

#include "poolside_cuda.h"

using Id = std::pair<unsigned long long, unsigned long long>;
using Filter = std::function<bool(CUstream_st *)>;
using Begin = void (*)(int, Id, Filter);
using EndOrRelease = void (*)(int, Id);
using Malloc = void *(*)(size_t, int, void *);
using Free = void (*)(void *, size_t, int, void *);
using Stats = int (*)(int, DeviceSection *);
using AbiOk = int (*)(const char *);

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "graph_hooks: line %d: %s\n", __LINE__, #cond); \
      return __LINE__;                                               \
    }                                                                \
  } while (0)

int main(int, char **argv) {
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  auto begin = reinterpret_cast<Begin>(dlsym(lib, "poolside_cuda_begin_allocate_to_pool"));
  auto end = reinterpret_cast<EndOrRelease>(dlsym(lib, "poolside_cuda_end_allocate_to_pool"));
  auto release = reinterpret_cast<EndOrRelease>(dlsym(lib, "poolside_cuda_release_pool"));
  auto alloc = reinterpret_cast<Malloc>(dlsym(lib, "poolside_cuda_malloc"));
  auto dealloc = reinterpret_cast<Free>(dlsym(lib, "poolside_cuda_free"));
  auto stats = reinterpret_cast<Stats>(dlsym(lib, "poolside_cuda_memory_stats"));
  auto abi_ok = reinterpret_cast<AbiOk>(dlsym(lib, "poolside_cuda_graph_hook_abi_ok"));
  CHECK(begin && end && release && alloc && dealloc && stats && abi_ok);
  // No PyTorch in this process: the ABI check says no, whatever the setter.
  CHECK(abi_ok("set_begin_allocate_to_pool") == 0);
  CHECK(abi_ok("no_such_setter") == 0);
  CHECK(abi_ok(nullptr) == 0);

  auto *capture = reinterpret_cast<CUstream_st *>(0x7000);
  auto *other = reinterpret_cast<CUstream_st *>(0x8000);
  // The filter's state: how often it was asked, and whether it still exists.
  auto calls = std::make_shared<int>(0);
  std::weak_ptr<int> alive = calls;
  {
    Filter filter = [calls, capture](CUstream_st *s) {
      ++*calls;
      return s == capture;
    };
    begin(0, Id{1, 0}, std::move(filter));
  }
  calls.reset();
  CHECK(!alive.expired());  // the pool keeps its copy

  void *p = alloc(4 << 20, 0, capture);
  void *q = alloc(4 << 20, 0, other);
  CHECK(p && q);
  CHECK(*alive.lock() >= 2);
  DeviceSection s{};
  CHECK(stats(0, &s) == 0);
  CHECK(s.private_pool_bytes.current >= (4u << 20));
  unsigned long long held = s.private_pool_bytes.current;

  // A second begin into the same pool is refused, as PyTorch refuses it.
  try {
    begin(0, Id{1, 0}, [](CUstream_st *) { return true; });
    CHECK(false);
  } catch (const std::runtime_error &e) {
    CHECK(std::strstr(e.what(), "already allocating to pool (1, 0)") != nullptr);
  }

  end(0, Id{1, 0});
  CHECK(alive.expired());  // the pool freed its copy at the end
  try {
    end(0, Id{1, 0});
    CHECK(false);
  } catch (const std::runtime_error &e) {
    CHECK(std::strstr(e.what(), "not allocating to pool (1, 0)") != nullptr);
  }

  // A filter that throws: the allocation throws with its message, nothing crosses Rust.
  begin(0, Id{2, 0}, [](CUstream_st *) -> bool { throw std::runtime_error("capture info gone"); });
  try {
    alloc(4096, 0, capture);
    CHECK(false);
  } catch (const std::runtime_error &e) {
    CHECK(std::strstr(e.what(), "capture info gone") != nullptr);
  }
  end(0, Id{2, 0});
  release(0, Id{2, 0});

  // Released with a live block: the memory stays until the block is freed.
  release(0, Id{1, 0});
  CHECK(stats(0, &s) == 0 && s.private_pool_bytes.current == held);
  dealloc(p, 4 << 20, 0, capture);
  CHECK(stats(0, &s) == 0 && s.private_pool_bytes.current == 0);
  dealloc(q, 4 << 20, 0, other);
  try {
    release(0, Id{1, 0});
    CHECK(false);
  } catch (const std::runtime_error &e) {
    CHECK(std::strstr(e.what(), "no pool (1, 0)") != nullptr);
  }
  std::printf("graph_hooks: ok\n");
  return 0;
}
