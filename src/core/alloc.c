/* Aligned allocation with a failure-injection hook for tests. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Failure injection: remaining successful allocations, or -1 for unlimited. Process-wide by
 * design (tests only); atomic so concurrent sessions stay well-defined. */
static _Atomic long fail_after = -1;

void fl_alloc_fail_after(long n) { atomic_store(&fail_after, n); }

void *fl_malloc(size_t bytes) {
    long left = atomic_load(&fail_after);
    if (left >= 0) {
        if (left == 0) return NULL;
        atomic_store(&fail_after, left - 1);
    }
    if (bytes == 0) bytes = 1;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    return aligned_alloc(64, rounded);
}

void *fl_calloc(size_t count, size_t size) {
    size_t bytes;
    if (!fl_mul_ok(count, size, &bytes)) return NULL;
    void *p = fl_malloc(bytes);
    if (p) memset(p, 0, bytes ? bytes : 1);
    return p;
}

void fl_free(void *p) { free(p); }
