/* Shared by the safetensors reader (safetensors.c) and writer (safetensors_write.c). Internal. */
#ifndef FL_SAFETENSORS_INTERNAL_H
#define FL_SAFETENSORS_INTERNAL_H

#include "internal.h"

/* The safetensors dtype string of a precision ("F32", "BF16", "I8"). */
const char *fl_st_dtype_name(fl_precision p);

/* FL_ERR_NONFINITE naming the file, tensor and index of the first NaN/Inf in p[0..n). */
fl_status fl_st_check_finite(const char *path, const char *name, const float *p, size_t n);

#endif
