// The C++ half of operator new (see new_delete.rs): the new_handler loop and the throw.
//
// These functions are reached by a tail jump from the exported mangled symbols, so they
// behave exactly as the operators: on failure, call the current new_handler and retry;
// with no handler, throw std::bad_alloc (or return null, for the nothrow forms).
//
// They use no C++ library symbol directly, so libpoolside.so does not depend on
// libstdc++: a C program under the preload would otherwise load it (about 1.5 MiB of RSS)
// for nothing. Operator new is only ever called by a C++ program, whose C++ runtime is
// loaded; the failure paths find that runtime's get_new_handler, and its own operators
// (which throw its std::bad_alloc, the type the program's catch clauses match), at the
// time they need them. The fast path is untouched.
#include <dlfcn.h>
#include <unistd.h>

#include <cstddef>

#define POOLSIDE_HIDDEN __attribute__((visibility("hidden")))

// In Rust (new_delete.rs). align 0 means the default new alignment.
extern "C" POOLSIDE_HIDDEN void* __poolside_cxx_alloc(std::size_t size,
                                                      std::size_t align) noexcept;

namespace {

using handler_t = void (*)();
using new_t = void* (*)(std::size_t);
using new_aligned_nothrow_t = void* (*)(std::size_t, std::size_t, const void*);
using new_nothrow_t = void* (*)(std::size_t, const void*);

// The program's C++ runtime, found by name among the loaded objects (never loaded here).
void* cxx_runtime() {
    static void* handle;
    void* h = __atomic_load_n(&handle, __ATOMIC_ACQUIRE);
    if (h == nullptr) {
        static const char* const names[] = {"libstdc++.so.6", "libc++.so.1", "libc++abi.so.1"};
        for (const char* name : names) {
            h = dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
            if (h != nullptr) break;
        }
        if (h != nullptr) __atomic_store_n(&handle, h, __ATOMIC_RELEASE);
    }
    return h;
}

// A symbol of the C++ runtime itself: never poolside's own export of the same name.
void* runtime_symbol(const char* name) {
    void* h = cxx_runtime();
    return h == nullptr ? nullptr : dlsym(h, name);
}

[[noreturn]] void no_runtime() {
    static const char msg[] =
        "poolside: operator new failed and no C++ runtime is loaded to throw bad_alloc\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

handler_t current_handler() {
    auto get = reinterpret_cast<handler_t (*)()>(runtime_symbol("_ZSt15get_new_handlerv"));
    return get == nullptr ? nullptr : get();
}

// Throws the runtime's std::bad_alloc: with no new_handler installed, the runtime's own
// operator new throws it at once for a size no allocator can serve.
[[noreturn, gnu::cold, gnu::noinline]] void throw_bad_alloc() {
    auto runtime_new = reinterpret_cast<new_t>(runtime_symbol("_Znwm"));
    if (runtime_new == nullptr) no_runtime();
    runtime_new(~std::size_t{0});
    no_runtime();  // unreachable: it cannot return memory for that size
}

bool is_power_of_two(std::size_t a) { return a != 0 && (a & (a - 1)) == 0; }

// Alignments up to the default are what plain new gives anyway.
std::size_t effective_align(std::size_t align) {
    return align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? 0 : align;
}

[[gnu::cold, gnu::noinline]] void* retry_or_throw(std::size_t size, std::size_t align) {
    for (;;) {
        handler_t handler = current_handler();
        if (handler == nullptr) throw_bad_alloc();
        handler();
        if (void* p = __poolside_cxx_alloc(size, align)) return p;
    }
}

// The nothrow forms fail through the runtime's own nothrow operator, which calls the
// throwing operator (poolside's, so the allocation is retried here under the handler
// loop) and turns whatever it throws into a null return, as the standard says.
[[gnu::cold, gnu::noinline]] void* retry_or_null(std::size_t size, std::size_t align) {
    if (current_handler() == nullptr) return nullptr;
    char tag = 0;  // std::nothrow_t is empty: any address does for the reference
    if (align == 0) {
        auto f = reinterpret_cast<new_nothrow_t>(runtime_symbol("_ZnwmRKSt9nothrow_t"));
        return f == nullptr ? nullptr : f(size, &tag);
    }
    auto f = reinterpret_cast<new_aligned_nothrow_t>(
        runtime_symbol("_ZnwmSt11align_val_tRKSt9nothrow_t"));
    return f == nullptr ? nullptr : f(size, align, &tag);
}

}  // namespace

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new(std::size_t size) {
    void* p = __poolside_cxx_alloc(size, 0);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_throw(size, 0);
}

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_nothrow(std::size_t size) {
    void* p = __poolside_cxx_alloc(size, 0);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_null(size, 0);
}

// An alignment that is not a power of two breaks the operator's precondition; no handler
// could make it satisfiable, so it fails at once.
extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_aligned(std::size_t size, std::size_t align) {
    if (!is_power_of_two(align)) throw_bad_alloc();
    align = effective_align(align);
    void* p = __poolside_cxx_alloc(size, align);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_throw(size, align);
}

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_aligned_nothrow(std::size_t size,
                                                                  std::size_t align) {
    if (!is_power_of_two(align)) return nullptr;
    align = effective_align(align);
    void* p = __poolside_cxx_alloc(size, align);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_null(size, align);
}
