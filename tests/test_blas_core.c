/* Which OpenBLAS core the library advises (fl_blas_advice_for, the rule of fl_blas_core_advice):
 * generic kernels on an AVX2 / AVX-512 CPU get the matching core; AVX2-class cores, and CPUs
 * without AVX2, get none. Also: the live functions answer consistently on this machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "blas_threads.h"
#include "fastlstm/fastlstm.h"

static void expect(const char *core, bool avx2, bool avx512, const char *want) {
    const char *got = fl_blas_advice_for(core, avx2, avx512);
    if (!want ? got != NULL : !got || strcmp(got, want))
        fail_msg("core %s, avx2 %d, avx512 %d: advice %s, want %s", core ? core : "NULL", avx2, avx512,
                 got ? got : "none", want ? want : "none");
}

static void test_rule(void **state) {
    (void)state;
    expect("Prescott", true, true, "SkylakeX"); /* OpenBLAS 0.3.21 on Intel family 6 model 207 */
    expect("Prescott", true, false, "Haswell");
    expect("Nehalem", true, false, "Haswell");
    expect("Sandybridge", true, true, "SkylakeX"); /* AVX without AVX2 kernels */
    expect("Prescott", false, false, NULL);        /* nothing better on this CPU */
    expect("Haswell", true, true, NULL);           /* set on purpose on these machines: kept */
    expect("HASWELL", true, false, NULL);
    expect("Zen", true, true, NULL);
    expect("SkylakeX", true, true, NULL);
    expect("Cooperlake", true, true, NULL);
    expect("SapphireRapids", true, true, NULL);
    expect(NULL, true, true, NULL);
}

static void test_live(void **state) {
    (void)state;
    const char *core = fl_blas_core(), *advice = fl_blas_core_advice();
    assert_non_null(core);
    assert_true(strlen(core) > 0);
    if (advice) assert_true(!strcmp(advice, "SkylakeX") || !strcmp(advice, "Haswell"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rule), cmocka_unit_test(test_live)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
