/* Machine profile, the machine's speed while it is measured (fl_profile.speed_*, format 7,
 * profile_speed.c): the statistics of the speed samples, the probe that takes them, the field in
 * the profile file (saved, loaded, refused when malformed, absent from older files), and the note
 * `fastlstm profile` prints when the machine ran at two speeds. Hand-made samples; the probe's
 * sample is checked for being a time, never for its size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "plan/profile_internal.h"
#include "json_file.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 10 fast samples, 6 at 1.36x, one "none" (0): the 0 is left out, the median is fast, the 90th
 * percentile slow, 6 of 16 slow. */
static void test_stats(void **state) {
    (void)state;
    double v[17];
    for (int i = 0; i < 16; i++) v[i] = i % 8 < 3 ? 68e-6 : 50e-6; /* 6 slow, spread among the fast */
    v[16] = 0;
    fl_profile p;
    memset(&p, 0, sizeof p);
    fl_profile_speed_stats(v, 17, &p);
    assert_int_equal(p.speed_samples, 16);
    assert_true(p.speed_fastest == 50e-6);
    assert_true(p.speed_median == 50e-6);
    assert_true(p.speed_p90 == 68e-6);
    assert_true(fabs(p.speed_slow - 6.0 / 16) < 1e-12);
    /* a sample just under 1.15x the fastest is not slow; one at it is */
    const double w[4] = {10e-6, 11.4e-6, 11.5e-6, 10e-6};
    fl_profile_speed_stats(w, 4, &p);
    assert_true(fabs(p.speed_slow - 0.25) < 1e-12);
    /* no samples (a probe that could not run): every figure 0 */
    const double z[3] = {0, 0, 0};
    fl_profile_speed_stats(z, 3, &p);
    assert_int_equal(p.speed_samples, 0);
    assert_true(p.speed_fastest == 0 && p.speed_median == 0 && p.speed_p90 == 0 && p.speed_slow == 0);
}

/* The probe times its product (a positive, finite time) where the kernels have one, and says it
 * has none (0) where they do not. */
static void test_probe(void **state) {
    (void)state;
    fl_speed_probe s;
    assert_int_equal(fl_speed_probe_init(&s), FL_OK);
    const double t = fl_speed_probe_sample(&s);
    if (s.k) assert_true(t > 0 && isfinite(t));
    else assert_true(t == 0);
    fl_speed_probe_free(&s);
    assert_null(s.k);
    assert_true(fl_speed_probe_sample(&s) == 0);
}

static void set_speed(fl_profile *p, double slow) {
    p->speed_fastest = 47.6e-6, p->speed_median = 52.5e-6, p->speed_p90 = 64.2e-6, p->speed_slow = slow;
    p->speed_samples = 80;
}

/* Saved (version 8 now) with "speed", loaded back; a version 6 file without it loads with it 0; a
 * malformed one is refused, naming the field. */
static void test_round_trip(void **state) {
    (void)state;
    fl_profile p, q;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    set_speed(&p, 0.45);
    const char *path = tmp_path("speed_profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_true(q.speed_fastest == p.speed_fastest && q.speed_median == p.speed_median);
    assert_true(q.speed_p90 == p.speed_p90 && q.speed_slow == p.speed_slow);
    assert_int_equal(q.speed_samples, 80);
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *old = cJSON_Duplicate(root, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(old, "speed");
    cJSON_SetNumberValue(cJSON_GetObjectItem(old, "version"), 6);
    json_file_write(path, old);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_int_equal(q.speed_samples, 0);
    assert_true(q.speed_fastest == 0 && q.speed_slow == 0);
    cJSON *sp = cJSON_GetObjectItem(root, "speed");
    cJSON_SetNumberValue(cJSON_GetObjectItem(sp, "median"), 40e-6); /* below the fastest */
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "'speed'"));
    cJSON_SetNumberValue(cJSON_GetObjectItem(sp, "median"), 52.5e-6);
    cJSON_SetNumberValue(cJSON_GetObjectItem(sp, "samples"), 1e20); /* beyond int: refused, not cast */
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "1..1e6 samples"));
    cJSON_ReplaceItemInObjectCaseSensitive(root, "speed", cJSON_CreateNumber(1));
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "'speed' must be an object"));
    cJSON_Delete(old);
    cJSON_Delete(root);
}

/* `fastlstm profile` on a saved profile of this machine: the speed line, and the note when the
 * machine ran at two speeds (45% of the samples slow, the 90th percentile 1.35x the fastest); no
 * note at 2%. */
static void run_profile(double slow, char *text, size_t n) {
    const char *cli = getenv("FL_CLI");
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    set_speed(&p, slow);
    const char *prof = tmp_path("cli_speed_profile.json"), *out = tmp_path("cli_speed_out.txt");
    assert_int_equal(fl_profile_save(&p, prof), FL_OK);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s profile --profile %s > %s 2>&1", cli, prof, out);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    const size_t len = fread(text, 1, n - 1, f);
    fclose(f);
    text[len] = 0;
}

static void test_cli_note(void **state) {
    (void)state;
    if (!getenv("FL_CLI")) skip();
    static char text[1 << 16];
    run_profile(0.45, text, sizeof text);
    if (!strstr(text, "speed while measuring: a fixed product in L2 took 47.6 us at the fastest, 52.5 median, 64.2") ||
        !strstr(text, "45% of 80 samples 1.15x the fastest or slower") ||
        !strstr(text, "the machine ran at two speeds while it was profiled") || !strstr(text, "up to 1.35x off")) {
        print_error("%s\n", text);
        fail();
    }
    run_profile(0.02, text, sizeof text);
    if (!strstr(text, "2% of 80 samples") || strstr(text, "two speeds")) {
        print_error("%s\n", text);
        fail();
    }
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_profile_speed");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_cli_note),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
