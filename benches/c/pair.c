/* malloc + free pairs of one size: the cost of the small-object path through the C entry
 * points. Usage: pair SIZE PAIRS. benches/c_pairs.sh runs it under each allocator, under
 * callgrind (instructions per pair) and timed. */
#include "bench.h"

int main(int argc, char **argv) {
    size_t size = (size_t)bench_arg(argc, argv, 1, 256);
    long pairs = bench_arg(argc, argv, 2, 1000000);
    uint64_t sum = 0;
    for (long i = 0; i < pairs; i++) {
        volatile char *p = malloc(size);
        p[0] = 1; /* the block is used, as a program would */
        sum += (uintptr_t)p & 1;
        free((void *)p);
    }
    bench_sink(sum + 1);
    return 0;
}
