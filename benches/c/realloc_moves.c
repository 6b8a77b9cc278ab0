/* An LD_PRELOAD shim that counts what realloc does, put in front of the allocator under
 * test (LD_PRELOAD="realloc_moves.so liballoc.so"): for each power-of-two bucket of the
 * new size, how many reallocs moved the block (and how many bytes they copied) and how
 * many kept it in place. Printed to stderr at exit, one line per bucket:
 * "BUCKET moved N copied_bytes B in_place K". Used by benches/realloc_moves.sh.
 *
 * It counts with plain globals and no lock: the programs it is meant for (CPython, sort,
 * sqlite3) realloc from one thread, and a lost count in a threaded one only blurs the
 * figure. It allocates nothing itself. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

static void *(*next_realloc)(void *, size_t);
static unsigned long moved[64], in_place[64], copied[64];

static int bucket(size_t n) {
  int b = 0;
  while (n > 1) {
    n >>= 1;
    b++;
  }
  return b;
}

void *realloc(void *p, size_t n) {
  if (!next_realloc)
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  size_t old = p ? malloc_usable_size(p) : 0;
  void *q = next_realloc(p, n);
  if (p && q) {
    int b = bucket(n);
    if (q == p) {
      in_place[b]++;
    } else {
      moved[b]++;
      copied[b] += old < n ? old : n;
    }
  }
  return q;
}

__attribute__((destructor)) static void report(void) {
  for (int b = 0; b < 64; b++)
    if (moved[b] || in_place[b])
      fprintf(stderr, "%d moved %lu copied_bytes %lu in_place %lu\n", b, moved[b], copied[b],
              in_place[b]);
}
