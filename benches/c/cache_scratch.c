/* cache-scratch, after the benchmark of Berger et al., "Hoard: A Scalable Memory Allocator
 * for Multithreaded Applications" (ASPLOS 2000): passive false sharing. The main thread
 * allocates one small object per thread, all at once (so an allocator may pack them into
 * one cache line), and hands one to each thread. Each thread frees the object it was given,
 * then ITERATIONS times allocates an object of the same size, writes each of its bytes
 * REPETITIONS times and frees it. An allocator that hands a thread memory freed into the
 * cache line of another thread's objects makes the threads' writes contend.
 * Usage: cache_scratch [THREADS=2] [ITERATIONS=1000] [OBJECT_SIZE=8] [REPETITIONS=1000000] */
#include <pthread.h>

#include "bench.h"

struct job {
    char *given;
    long iterations, size, repetitions;
};

static void *worker(void *arg) {
    struct job *j = arg;
    free(j->given);
    uint64_t sum = 0;
    for (long i = 0; i < j->iterations; i++) {
        volatile char *p = malloc(j->size);
        if (!p) abort();
        for (long r = 0; r < j->repetitions; r++)
            for (long b = 0; b < j->size; b++) p[b] = (char)(p[b] + r + b);
        sum += (uint64_t)p[0];
        free((void *)p);
    }
    bench_sink(sum);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = bench_arg(argc, argv, 1, 2);
    long iterations = bench_arg(argc, argv, 2, 1000);
    long size = bench_arg(argc, argv, 3, 8);
    long repetitions = bench_arg(argc, argv, 4, 1000000);
    if (threads < 1 || threads > 256 || size < 1) return 2;
    pthread_t tid[256];
    struct job jobs[256];
    for (long t = 0; t < threads; t++) {
        jobs[t] = (struct job){malloc(size), iterations, size, repetitions / iterations};
        if (!jobs[t].given) abort();
    }
    for (long t = 0; t < threads; t++) pthread_create(&tid[t], NULL, worker, &jobs[t]);
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return 0;
}
