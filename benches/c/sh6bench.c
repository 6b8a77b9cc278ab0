/* sh6bench, after MicroQuill's SmartHeap benchmark as mimalloc-bench describes it: a stress
 * test where some objects are freed in the usual last-allocated, first-freed (LIFO) order
 * and others in the order they were allocated (FIFO). Written from that description, not
 * from MicroQuill's code.
 * Each thread, ROUNDS times: mallocs a series of BLOCKS blocks whose sizes grow from MIN_SIZE
 * to MAX_SIZE along the series (block i of n is about MIN + (MAX - MIN) * i / n bytes, and
 * every block's first and last bytes are written), then frees the odd-numbered blocks
 * newest first (LIFO) and the even-numbered ones oldest first (FIFO), reading a byte of
 * each. No block changes threads.
 * Usage: sh6bench [THREADS=2] [ROUNDS=6000] [BLOCKS=2000] [MIN_SIZE=1] [MAX_SIZE=1000] */
#include <pthread.h>

#include "bench.h"

static long rounds, blocks, min_size, max_size;

static void *worker(void *arg) {
    (void)arg;
    char **b = malloc((size_t)blocks * sizeof *b);
    if (!b) abort();
    uint64_t sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < blocks; i++) {
            size_t size = (size_t)(min_size + (max_size - min_size) * i / blocks);
            char *p = malloc(size);
            if (!p) abort();
            p[0] = (char)i;
            p[size - 1] = (char)r;
            b[i] = p;
        }
        for (long i = (blocks - 1) | 1; i >= 1; i -= 2) /* odd blocks, LIFO */
            if (i < blocks) sum += (unsigned char)b[i][0], free(b[i]);
        for (long i = 0; i < blocks; i += 2) /* even blocks, FIFO */
            sum += (unsigned char)b[i][0], free(b[i]);
    }
    free(b);
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2);
    rounds = bench_arg(argc, argv, 2, 6000);
    blocks = bench_arg(argc, argv, 3, 2000);
    min_size = bench_arg(argc, argv, 4, 1);
    max_size = bench_arg(argc, argv, 5, 1000);
    if (threads < 1 || threads > 256 || blocks < 1 || min_size < 1 || max_size < min_size)
        return 2;
    pthread_t tid[256];
    for (long t = 0; t < threads; t++) pthread_create(&tid[t], NULL, worker, NULL);
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return 0;
}
