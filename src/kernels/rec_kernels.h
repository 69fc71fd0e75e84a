/* Old name of the kernel table header, kept only for tests/test_golden.c (owned elsewhere): the
 * recurrent-step kernels now live in the one fl_kernels table of kernels.h. Delete this header once
 * test_golden.c includes kernels.h and calls fl_kernels_get. */
#ifndef FL_REC_KERNELS_H
#define FL_REC_KERNELS_H
#include "kernels.h"
#define fl_rec_kernels_get fl_kernels_get
#endif
