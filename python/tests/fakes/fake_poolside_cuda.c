/* A stand-in for libpoolside_cuda with the same exported names, for tests without the
 * real library. memory_stats fills DeviceSection word by word with a pattern the tests
 * predict from the Rust layout (word i = 1000 * (device + 1) + i + 100000 * resets), so a
 * Python field mapped to the wrong offset shows up as a wrong value. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define WORDS 34 /* sizeof(DeviceSection) / 8 */
#define DEVICES 8

static int resets[DEVICES];

void *poolside_cuda_malloc(size_t size, int device, void *stream) { (void)size; (void)device; (void)stream; return 0; }
void poolside_cuda_free(void *p, size_t size, int device, void *stream) { (void)p; (void)size; (void)device; (void)stream; }
void poolside_cuda_init(int device_count) { (void)device_count; }
void poolside_cuda_empty_cache(void) {}
void poolside_cuda_set_memory_fraction(double fraction, int device) { (void)fraction; (void)device; }
void *poolside_cuda_base_alloc(void *p, size_t *size) { (void)size; return p; }
void poolside_cuda_record_stream(void *p, void *stream) { (void)p; (void)stream; }
/* The graph entries take C++ types in the real library; only their addresses matter here. */
void poolside_cuda_begin_allocate_to_pool(void) {}
void poolside_cuda_end_allocate_to_pool(void) {}
void poolside_cuda_release_pool(void) {}
/* FAKE_POOLSIDE_GRAPH_ABI=0 imitates a torch whose C++ signatures differ. */
int poolside_cuda_graph_hook_abi_ok(const char *setter) {
    const char *v = getenv("FAKE_POOLSIDE_GRAPH_ABI");
    (void)setter;
    return !(v && v[0] == '0');
}

int poolside_cuda_memory_stats(int device, uint64_t *out) {
    if (device < 0 || device >= DEVICES) return 22;
    for (int i = 0; i < WORDS; i++) out[i] = 1000u * (uint64_t)(device + 1) + (uint64_t)i + 100000u * (uint64_t)resets[device];
    out[1] = 1u | ((uint64_t)(uint32_t)device << 32); /* present = 1, device */
    return 0;
}

void poolside_cuda_reset_peak_stats(int device) {
    if (device >= 0 && device < DEVICES) resets[device]++;
}
