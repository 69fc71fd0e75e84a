/* Choose the kernel table once, from CPU detection and FL_KERNELS. */
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const fl_kernels *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;

const fl_kernels *fl_kernels_by_name(const char *name) {
    if (strcmp(name, "ref") == 0) return &fl_kernels_ref;
    return NULL;
}

static void choose(void) {
    const char *want = getenv("FL_KERNELS");
    const fl_kernels *k = NULL;
    if (want && *want) k = fl_kernels_by_name(want);
    chosen = k ? k : &fl_kernels_ref;
}

const fl_kernels *fl_kernels_get(void) {
    pthread_once(&once, choose);
    return chosen;
}
