/*
 * fastlstm array I/O: NumPy .npy files (format versions 1.0, 2.0 and 3.0), the format the CLI reads
 * inputs from and writes outputs to, and training reads data sets from.
 *
 * Supported element types: '<f4' (float32), '<i4' (int32) and '<i8' (int64), C order only, up to
 * four dimensions. Data is read and written as raw little-endian bytes. Loading does not check for
 * NaN/Inf: that is the caller's choice (fl_session_run checks its inputs).
 */
#ifndef FASTLSTM_IO_H
#define FASTLSTM_IO_H

#include "fastlstm/fastlstm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_NPY_MAX_DIMS 4

/* Element types of an fl_npy (the values are characters so that they read well in a debugger). */
#define FL_NPY_F32 'f' /* float32 */
#define FL_NPY_I32 'i' /* int32 */
#define FL_NPY_I64 'l' /* int64 */

/* An array read from (or to be written to) a .npy file. */
typedef struct fl_npy {
    char dtype;                     /* FL_NPY_F32, FL_NPY_I32 or FL_NPY_I64 */
    int ndim;                       /* 0..FL_NPY_MAX_DIMS (0: a scalar, count 1) */
    int64_t shape[FL_NPY_MAX_DIMS]; /* unused dimensions are 0 */
    void *data;                     /* count elements, owned by the struct: release with fl_npy_free */
    size_t count;                   /* product of shape */
} fl_npy;

/* Read an array. On success the caller owns out->data (release with fl_npy_free). On error *out is
 * zeroed and fl_last_error() names the file and the problem: FL_ERR_IO (cannot open / read),
 * FL_ERR_FORMAT (bad magic, malformed header, truncated or trailing data), FL_ERR_DTYPE (element
 * type other than <f4 <i4 <i8), FL_ERR_UNSUPPORTED (fortran_order True, or more than 4 dimensions),
 * FL_ERR_NOMEM, FL_ERR_ARG (NULL path or out). */
FL_API fl_status fl_npy_load(const char *path, fl_npy *out);

/* Release a->data and zero *a. Accepts NULL and already-freed (zeroed) arrays. */
FL_API void fl_npy_free(fl_npy *a);

/* Write a C-order array of ndim (0..4) dimensions; count = product of shape. The caller keeps
 * ownership of data and shape. The file is replaced atomically (a temporary file in the same
 * directory, fsync'd, renamed over path): on error an existing file at path is untouched.
 * Errors: FL_ERR_ARG (NULL path, bad ndim or shape, NULL data with count > 0, a path too long for
 * the temporary name), FL_ERR_IO (cannot create, write or rename; the message names the path),
 * FL_ERR_NOMEM. */
FL_API fl_status fl_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape);
FL_API fl_status fl_npy_save_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape);

/* Convert an integer array (FL_NPY_I32 or FL_NPY_I64) to int32 in place (a->dtype becomes
 * FL_NPY_I32), checking that every element lies in [0, limit) when limit > 0, else in the int32
 * range. `what` names the array in errors ("x.npy"; NULL: "array"). FL_ERR_DTYPE for a float array,
 * FL_ERR_DATA for a value out of range (naming the element index), FL_ERR_NOMEM, FL_ERR_ARG (NULL a).
 * On error *a is unchanged. */
FL_API fl_status fl_npy_ids_to_i32(fl_npy *a, int64_t limit, const char *what);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_IO_H */
