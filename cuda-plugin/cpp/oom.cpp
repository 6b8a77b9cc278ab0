// The allocation entry PyTorch calls. PyTorch does not check the returned pointer on the
// pluggable path, so an allocation that fails must reach it as a C++ exception (which it
// turns into a Python RuntimeError). The Rust side returns NULL and a message; only this
// frame throws, and no Rust frame is ever between the throw and PyTorch.
#include <cstddef>
#include <stdexcept>

extern "C" void* poolside_cuda_malloc_impl(size_t size, int device, void* stream,
                                           char* errbuf, size_t errlen);

extern "C" void* poolside_cuda_malloc(size_t size, int device, void* stream) {
  char errbuf[1024];
  errbuf[0] = '\0';
  void* p = poolside_cuda_malloc_impl(size, device, stream, errbuf, sizeof errbuf);
  if (p == nullptr && size != 0) {
    throw std::runtime_error(errbuf[0] ? errbuf : "poolside: allocation failed");
  }
  return p;
}
