/* NumPy .npy files (format versions 1.0, 2.0 and 3.0): the CLI's and training's array I/O.
 * Internal API (not installed). Supported element types: '<f4' (float32), '<i4' (int32) and
 * '<i8' (int64), C order only, up to 4 dimensions. Data is read and written as raw little-endian
 * bytes (little-endian host, checked at compile time in npy.c). NaN/Inf checks are the caller's. */
#ifndef FL_NPY_H
#define FL_NPY_H

#include "fastlstm/fastlstm.h"

#include <stddef.h>
#include <stdint.h>

#define FL_NPY_MAX_DIMS 4

typedef struct fl_npy {
    char dtype;                     /* 'f' float32, 'i' int32, 'l' int64 */
    int ndim;                       /* 0..FL_NPY_MAX_DIMS (0: a scalar, count 1) */
    int64_t shape[FL_NPY_MAX_DIMS]; /* unused dimensions are 0 */
    void *data;                     /* count elements, fl_malloc'd, owned by the struct */
    size_t count;                   /* product of shape */
} fl_npy;

/* Read an array. On success the caller owns out->data (release with fl_npy_free). On error *out
 * is zeroed and fl_last_error() names the file and the problem: FL_ERR_IO (cannot open / read),
 * FL_ERR_FORMAT (bad magic, malformed header, truncated or trailing data), FL_ERR_DTYPE (element type
 * other than <f4 <i4 <i8), FL_ERR_UNSUPPORTED (fortran_order True, or more than 4 dimensions),
 * FL_ERR_NOMEM. */
fl_status fl_npy_load(const char *path, fl_npy *out);

/* Release a->data and zero *a. Accepts NULL and already-freed arrays. */
void fl_npy_free(fl_npy *a);

/* Write a C-order array of ndim (0..4) dimensions; count = product of shape. The file is written
 * to "<path>.tmp.<pid>" and renamed into place. FL_ERR_ARG for bad shapes, FL_ERR_IO on failure. */
fl_status fl_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape);
fl_status fl_npy_save_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape);

/* Convert an integer array ('i' or 'l') to int32 in place (a->dtype becomes 'i'), checking that every
 * element lies in [0, limit) when limit > 0, else in the int32 range. `what` names the array in
 * errors ("x.npy"). FL_ERR_DTYPE for a float array, FL_ERR_DATA for a value out of range (naming
 * the element index), FL_ERR_NOMEM. On error *a is unchanged. */
fl_status fl_npy_ids_to_i32(fl_npy *a, int64_t limit, const char *what);

#endif
