// The CUDA graph hooks of PyTorch's CUDAPluggableAllocator (PyTorch >= 2.3). PyTorch's
// Python setters take a raw address and call it as a C++ function of these exact types
// (torch/csrc/cuda/Module.cpp reinterpret_casts the address to
// `void(int, c10::cuda::MempoolId_t, std::function<bool(cudaStream_t)>)`), so these three
// entries are C++: unmangled (extern "C") names, C++ parameter types, by value as PyTorch
// declares them. PyTorch calls them from the thread that begins, ends or destroys a
// capture (CUDAGraph::capture_begin / capture_end / reset, or cudagraph trees' pool
// manager), outside its own allocator lock.
//
// The filter is a C++ std::function. Rust never sees it as such: it gets a heap copy
// behind a C predicate (call_filter) and a C destructor (drop_filter), both noexcept, so no
// C++ exception ever crosses a Rust frame. The Rust side answers 0 or fills a message; only
// the frames here throw, and only towards PyTorch, which turns the exception into a Python
// RuntimeError as for its own allocator's TORCH_CHECKs.
//
// Whether this process's PyTorch passes these types is checked before the hooks are set
// (poolside_cuda_graph_hook_abi_ok, called by poolside.torch.enable()): the setters'
// mangled names in libtorch_cuda.so spell every parameter type, so a PyTorch built with
// another standard library (libc++'s std::__1::function), another MempoolId_t or another
// stream type lacks the name, and enable() leaves that hook unset and says so.
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <utility>

struct CUstream_st;
using cudaStream_t = CUstream_st*;
// c10::cuda::MempoolId_t (c10/cuda/CUDACachingAllocator.h).
using MempoolId = std::pair<unsigned long long, unsigned long long>;
using StreamFilter = std::function<bool(cudaStream_t)>;

// The Rust side (cuda-plugin/src/abi/graph.rs). Each returns 0, or nonzero with a message
// in errbuf.
extern "C" {
typedef int (*poolside_filter_call)(void* ctx, void* stream, char* errbuf, size_t errlen);
typedef void (*poolside_filter_drop)(void* ctx);
int poolside_cuda_begin_allocate_to_pool_impl(int device, uint64_t id_first, uint64_t id_second,
                                              poolside_filter_call call, void* ctx,
                                              poolside_filter_drop drop, char* errbuf,
                                              size_t errlen);
int poolside_cuda_end_allocate_to_pool_impl(int device, uint64_t id_first, uint64_t id_second,
                                            char* errbuf, size_t errlen);
int poolside_cuda_release_pool_impl(int device, uint64_t id_first, uint64_t id_second,
                                    char* errbuf, size_t errlen);
}

namespace {

void copy_message(char* buf, size_t len, const char* msg) {
  if (buf == nullptr || len == 0) return;
  std::strncpy(buf, msg, len - 1);
  buf[len - 1] = '\0';
}

// 1: the filter accepts the stream (its allocations go to the capture's private pool);
// 0: it does not; -1: it threw (PyTorch's filter calls cudaStreamGetCaptureInfo and
// throws when that fails), the message in errbuf. Called by Rust under the device's pool
// lock, so one call at a time per filter.
int call_filter(void* ctx, void* stream, char* errbuf, size_t errlen) noexcept {
  try {
    const auto& f = *static_cast<const StreamFilter*>(ctx);
    return f(static_cast<cudaStream_t>(stream)) ? 1 : 0;
  } catch (const std::exception& e) {
    copy_message(errbuf, errlen, e.what());
  } catch (...) {
    copy_message(errbuf, errlen, "unknown C++ exception");
  }
  return -1;
}

void drop_filter(void* ctx) noexcept { delete static_cast<StreamFilter*>(ctx); }

[[noreturn]] void fail(const char* errbuf, const char* fallback) {
  throw std::runtime_error(errbuf[0] ? errbuf : fallback);
}

// The setters whose mangled names prove the parameter types above (libstdc++'s
// std::function, std::pair<unsigned long long, unsigned long long>, CUstream_st*).
constexpr const char* kSetters[][2] = {
    {"set_begin_allocate_to_pool",
     "_ZN5torch4cuda22CUDAPluggableAllocator22CUDAPluggableAllocator26set_begin_allocate_to_"
     "poolESt8functionIFviSt4pairIyyES3_IFbP11CUstream_stEEEE"},
    {"set_end_allocate_to_pool_fn",
     "_ZN5torch4cuda22CUDAPluggableAllocator22CUDAPluggableAllocator27set_end_allocate_to_"
     "pool_fnESt8functionIFviSt4pairIyyEEE"},
    {"set_release_pool",
     "_ZN5torch4cuda22CUDAPluggableAllocator22CUDAPluggableAllocator16set_release_"
     "poolESt8functionIFviSt4pairIyyEEE"},
};

}  // namespace

// PyTorch's beginAllocateToPool: from now until the matching end, allocations on streams
// that `filter` accepts come from the private pool `id` (made on first use; a pool given
// again is shared and its use count goes up, as torch.cuda.graph(pool=...) does).
extern "C" void poolside_cuda_begin_allocate_to_pool(int device, MempoolId id,
                                                     StreamFilter filter) {
  // Owned by Rust once the call succeeds; freed through drop_filter.
  auto* f = new StreamFilter(std::move(filter));
  char err[512] = {0};
  if (poolside_cuda_begin_allocate_to_pool_impl(device, id.first, id.second, call_filter, f,
                                                drop_filter, err, sizeof err) != 0) {
    delete f;  // Rust did not keep it
    fail(err, "poolside: beginAllocateToPool failed");
  }
}

// PyTorch's endAllocateToPool: the capture into `id` is over; its pool keeps its memory.
extern "C" void poolside_cuda_end_allocate_to_pool(int device, MempoolId id) {
  char err[512] = {0};
  if (poolside_cuda_end_allocate_to_pool_impl(device, id.first, id.second, err, sizeof err) != 0)
    fail(err, "poolside: endAllocateToPool failed");
}

// PyTorch's releasePool: one graph using `id` is gone; at the last, the pool's memory is
// freed once its last block is freed.
extern "C" void poolside_cuda_release_pool(int device, MempoolId id) {
  char err[512] = {0};
  if (poolside_cuda_release_pool_impl(device, id.first, id.second, err, sizeof err) != 0)
    fail(err, "poolside: releasePool failed");
}

// 1 when this process's libtorch_cuda.so (already loaded: RTLD_NOLOAD, never loaded here)
// declares `setter` (a name in kSetters) with the parameter types the entries above are
// compiled with; 0 otherwise (no PyTorch, another ABI, an unknown setter).
extern "C" int poolside_cuda_graph_hook_abi_ok(const char* setter) {
  if (setter == nullptr) return 0;
  const char* mangled = nullptr;
  for (const auto& s : kSetters) {
    if (std::strcmp(s[0], setter) == 0) mangled = s[1];
  }
  if (mangled == nullptr) return 0;
  void* handle = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return 0;
  void* sym = dlsym(handle, mangled);
  // PyTorch holds the library; NOLOAD only added a reference.
  dlclose(handle);
  return sym != nullptr ? 1 : 0;
}
