/* False-sharing check (cache-scratch): the main thread allocates one small object per
 * thread and hands them out; each thread frees its object, then repeatedly allocates an
 * object of the same size and writes it many times. An allocator that gives those objects
 * out of the main thread's cache lines makes the threads fight over lines.
 * Usage: false_sharing [THREADS=2] [ITERATIONS=2000] [WRITES=20000] [SIZE=8] */
#include <pthread.h>

#include "bench.h"

struct arg {
    char *initial;
    long iterations, writes, size;
};

static void *worker(void *p) {
    struct arg *a = p;
    free(a->initial);
    for (long i = 0; i < a->iterations; i++) {
        volatile char *obj = malloc((size_t)a->size);
        for (long w = 0; w < a->writes; w++)
            for (long k = 0; k < a->size; k++) obj[k] = (char)(obj[k] + 1);
        free((void *)obj);
    }
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2), iterations = bench_arg(argc, argv, 2, 2000);
    long writes = bench_arg(argc, argv, 3, 20000), size = bench_arg(argc, argv, 4, 8);
    pthread_t th[64];
    struct arg args[64];
    for (long t = 0; t < threads; t++) {
        args[t] = (struct arg){malloc((size_t)size), iterations, writes, size};
        pthread_create(&th[t], NULL, worker, &args[t]);
    }
    for (long t = 0; t < threads; t++) pthread_join(th[t], NULL);
    return 0;
}
