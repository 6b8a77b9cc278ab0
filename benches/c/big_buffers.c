/* A loop over 5 to 25 MiB buffers: allocate, touch every page, free. The pattern of a
 * program that builds large temporary buffers (decompression, image processing); it
 * shows how an allocator caches, reuses and purges huge blocks.
 * Usage: big_buffers [ITERATIONS=2000] [LIVE=2] */
#include <string.h>

#include "bench.h"

int main(int argc, char **argv) {
    long iterations = bench_arg(argc, argv, 1, 2000), live = bench_arg(argc, argv, 2, 2);
    char *held[16] = {0};
    if (live > 16) live = 16;
    uint64_t s = 7, sum = 0;
    for (long i = 0; i < iterations; i++) {
        uint64_t r = bench_rand(&s);
        size_t n = ((size_t)5 << 20) + (size_t)(r % ((size_t)20 << 20));
        long k = (long)(r >> 48) % live;
        free(held[k]);
        char *p = malloc(n);
        for (size_t off = 0; off < n; off += 4096) p[off] = (char)off;
        sum += (unsigned char)p[n / 2 / 4096 * 4096];
        held[k] = p;
    }
    for (long k = 0; k < live; k++) free(held[k]);
    bench_sink(sum);
    return 0;
}
