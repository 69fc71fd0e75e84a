/* First non-finite entry of a float array, at memory speed.
 *
 * fl_session_run checks every input value before it runs (x, h0, c0: a NaN or Inf is refused with
 * its position), and that check was a scalar loop with an early exit, `if (!isfinite(p[i])) return
 * i`, which the compiler cannot vectorise: ~2.6 cycles per value. At batch 20, seq 35, input 650
 * (455,000 values per run) it took 11-12 us per time step of a 2 x 650 session (3% of an SVD / CP
 * h/16 step, 0.4 us of a batch-1 step's 15.7), measured by timers around the session's phases
 * (session 11, Xeon Emerald Rapids, one thread). Here the values are scanned in blocks of BLOCK
 * with no exit inside a block: a value is non-finite exactly when its exponent bits are all ones,
 * so each block ORs (bits & exponent) == exponent over its values, a loop of fixed trip count the
 * compiler vectorises at -O2 (no float arithmetic, so no -ffast-math question), and only a block
 * that found one is walked again to name the first. The result is the same index as the scalar
 * loop's (tests/test_finite.c against it, NaN / Inf / -Inf at every position of a block and the
 * tail). Scanning the 455,000 values (1.8 MB) alone, median of 41 in one process: 283 us scalar,
 * 85 us blocked (16-byte vectors: the generic files are built for baseline x86-64); inside a session
 * 6.9-8.6 us per step afterwards (x, the caller's buffer, comes from memory there). */
#include "internal.h"

#include <stdint.h>
#include <string.h>

enum { BLOCK = 256 };

static long first_in(const float *p, size_t n, size_t base) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof u);
        if ((u & 0x7f800000u) == 0x7f800000u) return (long)(base + i);
    }
    return -1;
}

long fl_find_nonfinite(const float *p, size_t n) {
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        uint32_t bad = 0;
        for (int j = 0; j < BLOCK; j++) {
            uint32_t u;
            memcpy(&u, p + i + j, sizeof u); /* the bits, without aliasing the float as an integer */
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return first_in(p + i, BLOCK, i);
    }
    return first_in(p + i, n - i, i);
}
