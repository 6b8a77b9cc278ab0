// When the OS says no. Run under LD_PRELOAD=libpoolside.so in one of two modes:
//   oom inject   with the fault-injection build: poolside_test_inject_map_failures(0)
//                makes every further mmap of the engine fail;
//   oom limit    under `ulimit -v` (the test harness sets it): the kernel refuses.
// Either way: every entry point returns NULL with ENOMEM (posix_memalign returns ENOMEM,
// new throws std::bad_alloc, nothrow new returns nullptr), blocks allocated before are
// intact, a failed realloc leaves its block alone, and once memory is available again
// the process goes on allocating.
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::_Exit(1);                                                               \
        }                                                                                \
    } while (0)

static void (*inject)(long);
static volatile std::size_t big = std::size_t(200) << 20;

struct Block {
    unsigned char* p;
    std::size_t n;
};
// Fixed storage: while memory is refused, nothing here may need to allocate.
static Block survivors[64];
static int nsurvivors;
static void* spill[1 << 20];
static std::size_t nspill;

static unsigned char tag(const void* p, std::size_t i) {
    return static_cast<unsigned char>((reinterpret_cast<std::uintptr_t>(p) >> 4) + i * 131);
}

static void keep(std::size_t n) {
    auto* p = static_cast<unsigned char*>(std::malloc(n));
    CHECK(p != nullptr);
    for (std::size_t i = 0; i < n; i += 61) p[i] = tag(p, i);
    survivors[nsurvivors++] = Block{p, n};
}

static void survivors_intact() {
    for (int k = 0; k < nsurvivors; k++)
        for (std::size_t i = 0; i < survivors[k].n; i += 61) CHECK(survivors[k].p[i] == tag(survivors[k].p, i));
}

template <typename F>
static bool throws_bad_alloc(F f) {
    try {
        f();
    } catch (const std::bad_alloc&) {
        return true;
    }
    return false;
}

// Every entry point, with a request no cached memory can serve.
static void every_entry_point_fails() {
    errno = 0;
    CHECK(std::malloc(big) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(std::calloc(big / 8, 8) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(4096, big) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(1 << 20, big) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(big) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(big) == nullptr && errno == ENOMEM);
    void* out = &out;
    CHECK(posix_memalign(&out, 64, big) == ENOMEM && out == &out);
    Block& victim = survivors[0];
    errno = 0;
    CHECK(std::realloc(victim.p, big) == nullptr && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(victim.p, big / 4, 4) == nullptr && errno == ENOMEM);
    CHECK(throws_bad_alloc([] { ::operator delete(::operator new(big)); }));
    CHECK(throws_bad_alloc([] { ::operator delete[](::operator new[](big)); }));
    CHECK(throws_bad_alloc([] {
        ::operator delete(::operator new(big, std::align_val_t(256)), std::align_val_t(256));
    }));
    CHECK(::operator new(big, std::nothrow) == nullptr);
    CHECK(::operator new[](big, std::align_val_t(64), std::nothrow) == nullptr);
    survivors_intact();
}

// Small requests succeed from memory already held until that runs out, then fail too.
static void exhaust(std::size_t size) {
    for (;;) {
        CHECK(nspill < sizeof spill / sizeof spill[0]);
        errno = 0;
        void* p = std::malloc(size);
        if (p == nullptr) {
            CHECK(errno == ENOMEM);
            break;
        }
        std::memset(p, 0x77, size < 64 ? size : 64);
        spill[nspill++] = p;
    }
    CHECK(throws_bad_alloc([size] { ::operator delete(::operator new(size)); }));
    CHECK(std::calloc(1, size) == nullptr);
}

static void release_spill() {
    for (std::size_t i = 0; i < nspill; i++) {
        CHECK(static_cast<unsigned char*>(spill[i])[0] == 0x77);
        std::free(spill[i]);
    }
    nspill = 0;
}

// Started before the failures, allocates only once they begin: a thread with no heap yet
// while no memory can be had (pthread_create itself needs malloc for the thread's DTV).
static pthread_barrier_t failing;
static void* thread_allocates(void*) {
    pthread_barrier_wait(&failing);
    pthread_barrier_wait(&failing);
    errno = 0;
    void* p = std::malloc(100);
    CHECK(p != nullptr || errno == ENOMEM);
    std::free(p);
    return nullptr;
}

// A new_handler that makes memory available again: new must retry and succeed.
static int handler_calls;
static void allow_maps_again() {
    ++handler_calls;
    inject(-1);
}

static void recovers() {
    std::vector<void*> blocks;
    for (int i = 0; i < 100; i++) {
        void* p = std::malloc(std::size_t(1 + i) * 4096);
        CHECK(p != nullptr);
        std::memset(p, i, 4096);
        blocks.push_back(p);
    }
    void* b = std::malloc(big);
    CHECK(b != nullptr);
    std::memset(b, 1, 1 << 20);
    std::free(b);
    for (void* p : blocks) std::free(p);
    auto* v = new std::vector<int>(1000000, 3);
    CHECK((*v)[999999] == 3);
    delete v;
}

int main(int argc, char** argv) {
    CHECK(argc == 2);
    bool injected = std::strcmp(argv[1], "inject") == 0;
    CHECK(injected || std::strcmp(argv[1], "limit") == 0);
    if (injected) {
        inject = reinterpret_cast<void (*)(long)>(dlsym(RTLD_DEFAULT, "poolside_test_inject_map_failures"));
        CHECK(inject != nullptr);
    }
    // Blocks of every regime that must survive everything below.
    std::size_t sizes[] = {8, 100, 3000, 70000, 900000, 3 << 20, 20 << 20};
    for (std::size_t n : sizes) keep(n);
    pthread_t late_thread;
    if (injected) {
        CHECK(pthread_barrier_init(&failing, nullptr, 2) == 0);
        CHECK(pthread_create(&late_thread, nullptr, thread_allocates, nullptr) == 0);
        pthread_barrier_wait(&failing);
        inject(0);
    } else {
        // Take what the address-space limit leaves in big pieces, then every size fails.
        for (;;) {
            CHECK(nspill < sizeof spill / sizeof spill[0]);
            void* p = std::malloc(std::size_t(8) << 20);
            if (p == nullptr) break;
            static_cast<unsigned char*>(p)[0] = 0x77;
            spill[nspill++] = p;
        }
        CHECK(nspill > 0);
    }
    every_entry_point_fails();
    exhaust(1000);
    exhaust(24);
    exhaust(200000);
    every_entry_point_fails();
    survivors_intact();
    if (injected) {
        pthread_barrier_wait(&failing);
        CHECK(pthread_join(late_thread, nullptr) == 0);
        // The handler lets memory through again; the failed new then succeeds.
        std::set_new_handler(allow_maps_again);
        void* p = ::operator new(big);
        CHECK(p != nullptr && handler_calls == 1);
        ::operator delete(p);
        std::set_new_handler(nullptr);
    }
    release_spill();
    survivors_intact();
    recovers();
    for (int k = 0; k < nsurvivors; k++) std::free(survivors[k].p);
    std::printf("oom %s: ok\n", argv[1]);
    return 0;
}
