/* Which host segments may use transparent huge pages when libpoolside.so is the process's
 * malloc: a dense block (4 KiB) and a sparse one (256 KiB), before and after the pool grows
 * past 64 MiB. Prints "THPeligible_<block>_<when>=<0|1|unknown>" lines, read from
 * /proc/self/smaps, for tests/tests/preload_thp.rs to judge against the kernel's mode. */
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* THPeligible of the mapping that holds addr: 0, 1, or -1 when smaps has no such field. */
static int thp_eligible(unsigned long addr) {
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL);
    char line[512];
    int inside = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = lo <= addr && addr < hi;
            continue;
        }
        if (inside && strncmp(line, "THPeligible:", 12) == 0) {
            found = atoi(line + 12);
            break;
        }
    }
    fclose(f);
    return found;
}

static void report(const char *when, char *dense, char *sparse) {
    const char *names[2] = {"dense", "sparse"};
    char *blocks[2] = {dense, sparse};
    for (int i = 0; i < 2; i++) {
        int e = thp_eligible((unsigned long)blocks[i]);
        if (e < 0)
            printf("THPeligible_%s_%s=unknown\n", names[i], when);
        else
            printf("THPeligible_%s_%s=%d\n", names[i], when, e);
    }
}

int main(void) {
    char *dense = malloc(4 << 10), *sparse = malloc(256 << 10);
    CHECK(dense != NULL && sparse != NULL);
    memset(dense, 1, 4 << 10);
    memset(sparse, 1, 256 << 10);
    report("small", dense, sparse);
    /* Large blocks from the segments (not huge mappings) take the pool past 64 MiB. */
    for (int i = 0; i < 72; i++)
        CHECK(malloc(1 << 20) != NULL);
    report("grown", dense, sparse);
    return 0;
}
