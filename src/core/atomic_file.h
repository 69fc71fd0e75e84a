/* One way to write a file atomically, for every writer in the library (.npy, safetensors,
 * checkpoints, the machine profile). Internal API (not installed). */
#ifndef FL_ATOMIC_FILE_H
#define FL_ATOMIC_FILE_H

#include "fastlstm/fastlstm.h"

#include <stdio.h>

/* Writes the whole content to f. Returns FL_OK, or an error status after recording the detail with
 * fl_fail (tmp is the temporary file's name, for messages). Failed fwrite/fputc calls need not be
 * reported: fl_atomic_write checks the stream's error flag afterwards. */
typedef fl_status (*fl_atomic_write_fn)(void *ctx, FILE *f, const char *tmp);

/* Replace `path` atomically with what fn writes: a temporary file "<path>.tmp.XXXXXX" is created in
 * the same directory (exclusive create, mode 0666 less the umask), written, flushed and fsync'd,
 * renamed over path, and the directory is fsync'd so the rename survives a crash. Readers see either
 * the old file or the complete new one; on any error the old file is untouched and the temporary
 * file is removed. Errors: FL_ERR_ARG (NULL argument, or a path too long for the temporary name: it
 * is never truncated), FL_ERR_IO (cannot create, write, sync or rename; the message names the path
 * and the system error), FL_ERR_NOMEM, or whatever fn returns. */
fl_status fl_atomic_write(const char *path, fl_atomic_write_fn fn, void *ctx);

/* fl_atomic_write of one buffer of n bytes. */
fl_status fl_atomic_write_buffer(const char *path, const void *data, size_t n);

#endif
