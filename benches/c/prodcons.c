/* Producer/consumer (xmalloc-style): producers allocate blocks of random size (8..512 B)
 * and pass them through bounded queues; consumers free them. Every free is remote.
 * Usage: prodcons [PAIRS=2] [BLOCKS_PER_PRODUCER=4000000] */
#include <pthread.h>

#include "bench.h"

enum { QCAP = 4096, BATCH = 64 };

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    void *items[QCAP];
    long head, tail; /* tail - head items; NULL item = end */
};

static void push(struct queue *q, void **batch, int n) {
    pthread_mutex_lock(&q->lock);
    while (q->tail - q->head + n > QCAP) pthread_cond_wait(&q->not_full, &q->lock);
    for (int i = 0; i < n; i++) q->items[q->tail++ % QCAP] = batch[i];
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static int pop(struct queue *q, void **batch) {
    pthread_mutex_lock(&q->lock);
    while (q->tail == q->head) pthread_cond_wait(&q->not_empty, &q->lock);
    int n = 0;
    while (q->head < q->tail && n < BATCH) batch[n++] = q->items[q->head++ % QCAP];
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return n;
}

struct pair {
    struct queue q;
    long blocks;
    uint64_t sum;
};

static void *producer(void *arg) {
    struct pair *p = arg;
    uint64_t s = (uintptr_t)arg | 1;
    void *batch[BATCH];
    int n = 0;
    for (long i = 0; i < p->blocks; i++) {
        uint64_t r = bench_rand(&s);
        size_t size = 8 + r % 505;
        char *b = malloc(size);
        b[0] = (char)r;
        batch[n++] = b;
        if (n == BATCH) push(&p->q, batch, n), n = 0;
    }
    batch[n++] = NULL;
    push(&p->q, batch, n);
    return NULL;
}

static void *consumer(void *arg) {
    struct pair *p = arg;
    void *batch[BATCH];
    for (;;) {
        int n = pop(&p->q, batch);
        for (int i = 0; i < n; i++) {
            if (batch[i] == NULL) return NULL;
            p->sum += (unsigned char)((char *)batch[i])[0];
            free(batch[i]);
        }
    }
}

int main(int argc, char **argv) {
    long pairs = bench_arg(argc, argv, 1, 2), blocks = bench_arg(argc, argv, 2, 4000000);
    struct pair *ps = calloc((size_t)pairs, sizeof *ps);
    pthread_t th[128];
    for (long i = 0; i < pairs; i++) {
        pthread_mutex_init(&ps[i].q.lock, NULL);
        pthread_cond_init(&ps[i].q.not_empty, NULL);
        pthread_cond_init(&ps[i].q.not_full, NULL);
        ps[i].blocks = blocks;
        pthread_create(&th[2 * i], NULL, producer, &ps[i]);
        pthread_create(&th[2 * i + 1], NULL, consumer, &ps[i]);
    }
    uint64_t sum = 0;
    for (long i = 0; i < 2 * pairs; i++) pthread_join(th[i], NULL);
    for (long i = 0; i < pairs; i++) sum += ps[i].sum;
    bench_sink(sum);
    free(ps);
    return 0;
}
