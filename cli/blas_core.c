/* Which OpenBLAS kernels the CLI runs. OpenBLAS picks a core's kernels when it is loaded; one that
 * does not know the CPU falls back to generic ones (OpenBLAS 0.3.21 on Intel family 6 model 207:
 * Prescott, sgemm 31.5 GFLOP/s instead of 141.7 with its SkylakeX kernels by `fastlstm profile`, 2026-12-01), which
 * slows everything that goes through BLAS: training's GEMMs, the SVD of `decompose`, the planner's
 * measurements. OpenBLAS reads OPENBLAS_CORETYPE only at load time, so when it is unset and the
 * library advises a core (fl_blas_core_advice), the CLI sets it and starts itself again, once. A
 * user's own OPENBLAS_CORETYPE, whatever it says, is left alone (these machines set Haswell on
 * purpose), as is FASTLSTM_BLAS_CORE=keep. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set when this process is the restarted one: the core OpenBLAS had chosen by itself. */
#define FALLBACK_ENV "FASTLSTM_BLAS_FALLBACK"

void cli_blas_core_start(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *keep = getenv("FASTLSTM_BLAS_CORE");
    if (keep && !strcmp(keep, "keep")) return;
    const char *want = fl_blas_core_advice();
    if (!want) return;
    if (setenv(FALLBACK_ENV, fl_blas_core(), 1) || setenv("OPENBLAS_CORETYPE", want, 1)) return;
    execv("/proc/self/exe", argv);
    /* no restart (no /proc, say): go on with OpenBLAS's own choice */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(FALLBACK_ENV);
}

void cli_blas_print(FILE *f) {
    const char *set = getenv("OPENBLAS_CORETYPE"), *was = getenv(FALLBACK_ENV);
    fprintf(f, "  BLAS: OpenBLAS runs its %s kernels", fl_blas_core());
    if (set && was)
        fprintf(f, " (OPENBLAS_CORETYPE=%s set by fastlstm: on its own OpenBLAS chose %s, below this CPU)\n", set,
                was);
    else if (set)
        fprintf(f, " (OPENBLAS_CORETYPE=%s from the environment)\n", set);
    else if (fl_blas_core_advice())
        fprintf(f, ", below this CPU: OPENBLAS_CORETYPE=%s would be faster\n", fl_blas_core_advice());
    else
        fprintf(f, "\n");
}
