// C++ operators new and delete under LD_PRELOAD=libpoolside.so: every form is poolside's,
// aligned forms align, and failure follows the standard: call the new_handler, retry,
// throw std::bad_alloc when there is none (nothrow forms return nullptr).
#include <dlfcn.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                                \
        }                                                                                \
    } while (0)

static int (*owns)(const void*);
static volatile std::size_t huge_size = SIZE_MAX / 2;

struct alignas(256) Wide {
    char bytes[256];
};

static void every_form_is_poolside() {
    void* p = ::operator new(40);
    CHECK(owns(p));
    ::operator delete(p);
    p = ::operator new[](40);
    CHECK(owns(p));
    ::operator delete[](p);
    p = ::operator new(40, std::nothrow);
    CHECK(owns(p));
    ::operator delete(p, std::nothrow);
    p = ::operator new[](40, std::nothrow);
    CHECK(owns(p));
    ::operator delete[](p, std::nothrow);
    p = ::operator new(40);
    ::operator delete(p, 40);  // sized
    p = ::operator new[](40);
    ::operator delete[](p, 40);
    for (std::size_t a = 1; a <= (1u << 20); a <<= 1) {
        auto al = std::align_val_t(a);
        void* q = ::operator new(100, al);
        CHECK(owns(q) && reinterpret_cast<std::uintptr_t>(q) % a == 0);
        ::operator delete(q, al);
        q = ::operator new[](100, al);
        CHECK(owns(q) && reinterpret_cast<std::uintptr_t>(q) % a == 0);
        ::operator delete[](q, al);
        q = ::operator new(100, al, std::nothrow);
        CHECK(q && reinterpret_cast<std::uintptr_t>(q) % a == 0);
        ::operator delete(q, al, std::nothrow);
        q = ::operator new[](100, al, std::nothrow);
        CHECK(q && reinterpret_cast<std::uintptr_t>(q) % a == 0);
        ::operator delete[](q, al, std::nothrow);
        q = ::operator new(100, al);
        ::operator delete(q, 100, al);  // sized and aligned
        q = ::operator new[](100, al);
        ::operator delete[](q, 100, al);
    }
    // Through the language: new-expressions of over-aligned types use the aligned forms.
    Wide* w = new Wide;
    CHECK(owns(w) && reinterpret_cast<std::uintptr_t>(w) % 256 == 0);
    delete w;
    Wide* ws = new Wide[7];
    CHECK(reinterpret_cast<std::uintptr_t>(ws) % 256 == 0);
    delete[] ws;
    auto s = std::make_unique<std::string>(1000, 'x');
    CHECK(owns(s->data()));
}

static void throws_bad_alloc() {
    bool thrown = false;
    try {
        void* p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc&) {
        thrown = true;
    }
    CHECK(thrown);
    thrown = false;
    try {
        void* p = ::operator new[](huge_size, std::align_val_t(64));
        ::operator delete[](p);
    } catch (const std::bad_alloc&) {
        thrown = true;
    }
    CHECK(thrown);
    thrown = false;
    try {
        // Through the standard library: the allocator's request reaches operator new.
        char* p = std::allocator<char>().allocate(huge_size / 2);
        std::allocator<char>().deallocate(p, huge_size / 2);
    } catch (const std::bad_alloc&) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(::operator new(huge_size, std::nothrow) == nullptr);
    CHECK(::operator new[](huge_size, std::nothrow) == nullptr);
    CHECK(::operator new(huge_size, std::align_val_t(4096), std::nothrow) == nullptr);
    CHECK(::operator new[](huge_size, std::align_val_t(4096), std::nothrow) == nullptr);
}

// The handler is called once per failed attempt, until it uninstalls itself. (A handler
// that makes room, after which the retry succeeds, is checked in oom.cpp, where the OS
// refuses memory until the handler lets it give again.)
static int handler_calls;
static void counting_handler_then_give_up() {
    ++handler_calls;
    if (handler_calls == 3) std::set_new_handler(nullptr);  // then new throws
}
static void throwing_handler() {
    ++handler_calls;
    throw std::bad_alloc();
}

static void new_handler_protocol() {
    handler_calls = 0;
    std::set_new_handler(counting_handler_then_give_up);
    bool thrown = false;
    try {
        void* p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc&) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler(counting_handler_then_give_up);
    CHECK(::operator new(huge_size, std::nothrow) == nullptr && handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler(throwing_handler);
    CHECK(::operator new(huge_size, std::align_val_t(128), std::nothrow) == nullptr);
    CHECK(handler_calls == 1);
    std::set_new_handler(nullptr);
}

static void threads_and_containers() {
    std::vector<std::thread> ts;
    std::vector<std::unique_ptr<std::map<int, std::string>>> maps(4);
    for (int t = 0; t < 4; t++) {
        ts.emplace_back([t, &maps] {
            auto m = std::make_unique<std::map<int, std::string>>();
            for (int i = 0; i < 20000; i++) (*m)[i] = std::string(i % 100, char('a' + t));
            maps[t] = std::move(m);
        });
    }
    for (auto& th : ts) th.join();
    std::size_t total = 0;
    for (auto& m : maps)
        for (auto& kv : *m) total += kv.second.size();
    CHECK(total == 4u * 200u * (99u * 100u / 2u));
    maps.clear();  // freed by another thread than the one that allocated
}

int main() {
    owns = reinterpret_cast<int (*)(const void*)>(dlsym(RTLD_DEFAULT, "poolside_owns"));
    CHECK(owns != nullptr);
    every_form_is_poolside();
    throws_bad_alloc();
    new_handler_protocol();
    threads_and_containers();
    std::puts("cxx_new: ok");
    return 0;
}
