/* Extras of the recurrent step for tests and benchmarks (the session uses recurrent.h only). */
#ifndef FL_RECURRENT_LEVELS_H
#define FL_RECURRENT_LEVELS_H

#include "recurrent.h"

/* fl_rec_create with a named kernel level ("ref", "avx2", "avx512") instead of the dispatched one.
 * FL_ERR_UNSUPPORTED if the name is unknown or this CPU lacks the level. */
fl_status fl_rec_create_with(const fl_layer *ly, int max_batch, int threads, const char *kernels,
                             fl_rec **out);

/* Name of the kernel level r uses; static storage. */
const char *fl_rec_kernels_name(const fl_rec *r);

#endif
