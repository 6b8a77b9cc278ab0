/* glibc-simple, after glibc's benchtests/bench-malloc-simple.c (used by mimalloc-bench as
 * glibc-simple), written from its description, not its code: malloc and free of a varying
 * number of blocks of one small size, which is what a per-thread cache (glibc's tcache)
 * serves. For each size of 16, 64, 256 and 1024 B and each batch of 25, 100, 400 and
 * 1600 blocks, PAIRS / batch times: malloc the whole batch (writing a byte of each block),
 * then free it in allocation order; so every (size, batch) case makes PAIRS malloc/free
 * pairs. Like the original, the whole series runs three times: in the main thread, in a
 * second thread (a thread's first heap), and in the main thread again after that thread
 * exited. glibc itself is slow from 1024 B x 400 up: each batch's frees leave more than its
 * trim threshold (128 KiB) free at the top of the heap, which it gives back to the system
 * and faults in again on the next batch.
 * Usage: glibc_simple [PAIRS=300000] */
#include <pthread.h>

#include "bench.h"

static const size_t sizes[] = {16, 64, 256, 1024};
static const long batches[] = {25, 100, 400, 1600};
static long pairs;

static void *series(void *arg) {
    (void)arg;
    static _Thread_local void *blocks[1600];
    uint64_t sum = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t b = 0; b < sizeof batches / sizeof *batches; b++)
            for (long it = 0; it < pairs / batches[b]; it++) {
                for (long i = 0; i < batches[b]; i++) {
                    char *p = malloc(sizes[s]);
                    if (!p) abort();
                    p[0] = (char)i;
                    blocks[i] = p;
                }
                for (long i = 0; i < batches[b]; i++) {
                    sum += (unsigned char)((char *)blocks[i])[0];
                    free(blocks[i]);
                }
            }
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    pairs = bench_arg(argc, argv, 1, 300000);
    series(NULL);
    pthread_t t;
    pthread_create(&t, NULL, series, NULL);
    pthread_join(t, NULL);
    series(NULL);
    return 0;
}
