/* Atomic file replacement (see atomic_file.h): temp file in the target's directory, write, fflush,
 * fsync, rename over the target, fsync the directory. The only place the library writes files. */
#include "atomic_file.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

static const char TMP_SUFFIX[] = ".tmp.XXXXXX";

/* Like mkstemp on tmp (path of len bytes + TMP_SUFFIX), but with mode 0666 less the umask, as a
 * plain fopen would create it: mkstemp makes 0600, and reading the umask means setting it, which
 * is process-wide and so not safe in a library. O_EXCL makes the name ours; a clash tries again. */
static int create_temp(char *tmp, size_t len) {
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)tmp;
    for (int attempt = 0; attempt < 100; attempt++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t y = x;
        for (size_t k = 0; k < 6; k++, y /= 36) tmp[len + 5 + k] = digits[y % 36];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

/* fsync the directory holding path, so that the rename is durable. Failure to open the directory
 * (some file systems refuse) is not an error; a failing fsync is. */
static fl_status sync_dir(const char *path, char *scratch, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(scratch, n, ".");
    else if (slash == path) snprintf(scratch, n, "/");
    else snprintf(scratch, n, "%.*s", (int)(slash - path), path);
    int fd = open(scratch, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return FL_OK;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL && err != EROFS)
        return fl_fail(FL_ERR_IO, "%s: cannot sync directory %s: %s", path, scratch, strerror(err));
    return FL_OK;
}

fl_status fl_atomic_write(const char *path, fl_atomic_write_fn fn, void *ctx) {
    if (!path || !fn) return fl_fail(FL_ERR_ARG, "NULL argument to fl_atomic_write");
    size_t len = strlen(path);
    if (len == 0) return fl_fail(FL_ERR_ARG, "cannot write a file with an empty path");
    if (len + sizeof TMP_SUFFIX > PATH_MAX)
        return fl_fail(FL_ERR_ARG, "%.200s...: path of %zu bytes too long for a temporary file (limit %d)", path,
                       len, PATH_MAX - (int)sizeof TMP_SUFFIX);
    char *tmp = fl_malloc(len + sizeof TMP_SUFFIX);
    if (!tmp) return fl_fail(FL_ERR_NOMEM, "%s: out of memory for the temporary file name", path);
    memcpy(tmp, path, len);
    memcpy(tmp + len, TMP_SUFFIX, sizeof TMP_SUFFIX);

    fl_status st = FL_OK;
    int fd = create_temp(tmp, len);
    if (fd < 0) {
        st = fl_fail(FL_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        fl_free(tmp);
        return st;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        st = fl_fail(FL_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(errno));
        close(fd);
    } else {
        st = fn(ctx, f, tmp);
        if (!st && (ferror(f) || fflush(f) != 0))
            st = fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (!st && fsync(fileno(f)) != 0) st = fl_fail(FL_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && !st) st = fl_fail(FL_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    }
    if (!st && rename(tmp, path) != 0)
        st = fl_fail(FL_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (st) unlink(tmp);
    else st = sync_dir(path, tmp, len + sizeof TMP_SUFFIX);
    fl_free(tmp);
    return st;
}

typedef struct buffer {
    const void *data;
    size_t n;
} buffer;

static fl_status write_buffer(void *ctx, FILE *f, const char *tmp) {
    const buffer *b = ctx;
    if (b->n && fwrite(b->data, 1, b->n, f) != b->n)
        return fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return FL_OK;
}

fl_status fl_atomic_write_buffer(const char *path, const void *data, size_t n) {
    if (!data && n) return fl_fail(FL_ERR_ARG, "%s: NULL data to write", path ? path : "(null)");
    buffer b = {data, n};
    return fl_atomic_write(path, write_buffer, &b);
}
