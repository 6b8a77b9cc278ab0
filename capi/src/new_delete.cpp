// The C++ half of operator new (see new_delete.rs): the new_handler loop and the throw.
//
// These functions are reached by a tail jump from the exported mangled symbols, so they
// behave exactly as the operators: on failure, call the current new_handler and retry;
// with no handler, throw std::bad_alloc (or return null, for the nothrow forms). They use
// the program's libstdc++ (linked dynamically), so std::set_new_handler in the program
// and catch (const std::bad_alloc&) in the program both see the same objects.
#include <cstddef>
#include <new>

#define POOLSIDE_HIDDEN __attribute__((visibility("hidden")))

// In Rust (new_delete.rs). align 0 means the default new alignment.
extern "C" POOLSIDE_HIDDEN void* __poolside_cxx_alloc(std::size_t size,
                                                      std::size_t align) noexcept;

namespace {

bool is_power_of_two(std::size_t a) { return a != 0 && (a & (a - 1)) == 0; }

// Alignments up to the default are what plain new gives anyway.
std::size_t effective_align(std::size_t align) {
    return align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? 0 : align;
}

[[gnu::cold, gnu::noinline]] void* retry_or_throw(std::size_t size, std::size_t align) {
    for (;;) {
        std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) throw std::bad_alloc();
        handler();
        if (void* p = __poolside_cxx_alloc(size, align)) return p;
    }
}

// As libstdc++'s nothrow new: whatever the handler throws means "no memory".
[[gnu::cold, gnu::noinline]] void* retry_or_null(std::size_t size, std::size_t align) noexcept {
    for (;;) {
        std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) return nullptr;
        try {
            handler();
        } catch (...) {
            return nullptr;
        }
        if (void* p = __poolside_cxx_alloc(size, align)) return p;
    }
}

}  // namespace

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new(std::size_t size) {
    void* p = __poolside_cxx_alloc(size, 0);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_throw(size, 0);
}

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_nothrow(std::size_t size) noexcept {
    void* p = __poolside_cxx_alloc(size, 0);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_null(size, 0);
}

// An alignment that is not a power of two breaks the operator's precondition; no handler
// could make it satisfiable, so it fails at once.
extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_aligned(std::size_t size, std::size_t align) {
    if (!is_power_of_two(align)) throw std::bad_alloc();
    align = effective_align(align);
    void* p = __poolside_cxx_alloc(size, align);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_throw(size, align);
}

extern "C" POOLSIDE_HIDDEN void* poolside_cxx_new_aligned_nothrow(std::size_t size,
                                                                  std::size_t align) noexcept {
    if (!is_power_of_two(align)) return nullptr;
    align = effective_align(align);
    void* p = __poolside_cxx_alloc(size, align);
    if (__builtin_expect(p != nullptr, 1)) return p;
    return retry_or_null(size, align);
}
