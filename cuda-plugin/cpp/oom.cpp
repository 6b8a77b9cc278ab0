// The allocation entry PyTorch calls. PyTorch does not check the returned pointer on the
// pluggable path, so an allocation that fails must reach it as a C++ exception. The Rust
// side returns NULL and a message; only this frame throws, and no Rust frame is ever
// between the throw and PyTorch.
//
// Which exception: when PyTorch's libc10 is in the process, a real c10::OutOfMemoryError,
// which PyTorch's own error translation turns into torch.cuda.OutOfMemoryError (a subclass
// of RuntimeError), exactly as for its native allocator. Otherwise, or if anything about
// that PyTorch build is not as expected, std::runtime_error (a plain RuntimeError).
#include <cxxabi.h>
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <typeinfo>

extern "C" void* poolside_cuda_malloc_impl(size_t size, int device, void* stream,
                                           char* errbuf, size_t errlen);

namespace {

// c10::SourceLocation (c10/util/StringUtil.h), passed by value to c10::Error's constructor.
struct SourceLocation {
  const char* function;
  const char* file;
  uint32_t line;
};

// c10::Error::Error(SourceLocation, std::string) with the cxx11 string ABI. The mangled
// name encodes both parameter types, so a PyTorch built with another string ABI or another
// signature simply lacks the symbol and we fall back.
using ErrorCtor = void (*)(void* self, SourceLocation, std::string);
constexpr const char* kErrorCtor =
    "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE";
constexpr const char* kOomVtable = "_ZTVN3c1016OutOfMemoryErrorE";
constexpr const char* kOomTypeinfo = "_ZTIN3c1016OutOfMemoryErrorE";
// Room for the exception object. sizeof(c10::Error) is 128 bytes in PyTorch 2.11 (a vtable
// pointer, two strings, a vector, a shared_ptr, a lazy pointer and a raw pointer); the
// constructor writes only that much, so a generous buffer covers other versions too.
constexpr size_t kErrorBytes = 1024;

// The libraries PyTorch loads that define OutOfMemoryError's vtable and type_info (weak,
// emitted in every library that uses the class). RTLD_NOLOAD: never load PyTorch ourselves.
constexpr const char* kTorchLibs[] = {"libc10_cuda.so", "libtorch_cuda.so", "libtorch_python.so"};

void* symbol_in(const char* lib, const char* name) {
  void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return nullptr;
  void* sym = dlsym(handle, name);
  // The library stays loaded: PyTorch holds it, and NOLOAD only added a reference.
  dlclose(handle);
  return sym;
}

void destroy_error(void* obj) {
  // c10::Error's primary base is std::exception at offset 0, so this is a virtual call to
  // OutOfMemoryError's complete-object destructor.
  static_cast<std::exception*>(obj)->~exception();
}

// Throws c10::OutOfMemoryError(msg) if this process has PyTorch's libc10 loaded and it looks
// as expected; returns (without throwing) otherwise.
void throw_torch_oom(const char* msg) {
  auto ctor = reinterpret_cast<ErrorCtor>(symbol_in("libc10.so", kErrorCtor));
  if (ctor == nullptr) return;
  void* vtable = nullptr;
  void* typeinfo = nullptr;
  for (const char* lib : kTorchLibs) {
    vtable = symbol_in(lib, kOomVtable);
    typeinfo = symbol_in(lib, kOomTypeinfo);
    if (vtable != nullptr && typeinfo != nullptr) break;
  }
  if (vtable == nullptr || typeinfo == nullptr) return;
  void* obj = abi::__cxa_allocate_exception(kErrorBytes);
  std::memset(obj, 0, kErrorBytes);
  try {
    ctor(obj, SourceLocation{"poolside_cuda_malloc", __FILE__, __LINE__}, std::string(msg));
  } catch (...) {
    abi::__cxa_free_exception(obj);
    return;
  }
  // What OutOfMemoryError's inherited constructor does after the base constructor: point
  // the object at the derived class's vtable (its address point is past the offset-to-top
  // and type_info slots).
  *static_cast<void**>(obj) = static_cast<char*>(vtable) + 2 * sizeof(void*);
  abi::__cxa_throw(obj, static_cast<std::type_info*>(typeinfo), destroy_error);
}

}  // namespace

extern "C" void* poolside_cuda_malloc(size_t size, int device, void* stream) {
  char errbuf[1024];
  errbuf[0] = '\0';
  void* p = poolside_cuda_malloc_impl(size, device, stream, errbuf, sizeof errbuf);
  if (p == nullptr && size != 0) {
    const char* msg = errbuf[0] ? errbuf : "poolside: allocation failed";
    if (std::strncmp(msg, "CUDA out of memory.", 19) == 0) throw_torch_oom(msg);
    throw std::runtime_error(msg);
  }
  return p;
}
