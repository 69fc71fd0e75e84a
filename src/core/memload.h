/* In-memory variants of the file loaders, for the fuzz harnesses (tests/fuzz) and tests.
 * Internal API (not installed). Each parses buf[0, n) exactly as the file loader parses a file of
 * those bytes (same checks, same statuses, same error text); `name` stands for the path in error
 * messages. The buffer is only read and is not kept past the call. */
#ifndef FL_MEMLOAD_H
#define FL_MEMLOAD_H

#include "fastlstm/fastlstm.h"
#include "fastlstm/train.h"
#include "npy.h"

#include <stddef.h>

/* As fl_model_load (safetensors.c). */
fl_status fl_model_load_memory(const void *buf, size_t n, const char *name, fl_model **out);

/* As fl_npy_load (npy.c). */
fl_status fl_npy_load_memory(const void *buf, size_t n, const char *name, fl_npy *out);

/* As fl_trainer_resume (train/checkpoint.c). */
fl_status fl_trainer_resume_memory(const void *buf, size_t n, const char *name, fl_model **model,
                                   fl_trainer **out);

/* Bytes of tensor data (the sum of every tensor's element count, times 4, without alignment padding)
 * of a model of architecture a with the nmat = 2 * layers (+ 1 with a head) matrix specs, computed
 * without allocating: loaders compare it with the file size before fl_model_create. */
double fl_model_data_bytes(const fl_arch *a, const fl_mat_spec *specs, size_t nmat);

#endif
