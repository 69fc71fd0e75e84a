/* The cell update's cost at each batch: the profile's batch-1 figure (cell_seconds_b1, the kernel's
 * batch-1 loop) at batch 1, linear in log B to the batch-16 figure (cell_seconds) at 16 and that one
 * above; a profile without the batch-1 figure (older files) prices every batch at cell_seconds, as
 * before. Hand-written profiles, the cell term read back as a prediction less the same prediction
 * with no cell figures; and the profile file round trip. Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "testutil.h"
#include "json_file.h"
#include "flat_profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* input 16, hidden 64, two layers, no head (dense): the cell term is 2 x B x 64 x cell(B). */
static const fl_arch arch = {.input = 16, .hidden = 64, .layers = 2, .head = FL_HEAD_NONE};

static double predict(const fl_profile *p, int batch) {
    fl_cost c;
    assert_int_equal(fl_cost_predict(p, &arch, NULL, batch, 5, 1, &c), FL_OK);
    return c.seconds;
}

/* The cell term p gives a step at `batch`: its prediction less that of p without cell figures. */
static double cell_term(const fl_profile *p, int batch) {
    fl_profile p0 = *p;
    p0.cell_seconds = p0.cell_seconds_b1 = 0;
    return predict(p, batch) - predict(&p0, batch);
}

static void test_cell_batch_terms(void **state) {
    (void)state;
    fl_profile p = flat_profile();
    p.cell_seconds = 8e-3;    /* batch 16 and above */
    p.cell_seconds_b1 = 2e-3; /* batch 1 */
    const double units = 2 * 64;
    assert_close(cell_term(&p, 1), units * 2e-3, 1e-12);
    /* batch 4: half-way in log B from 1 to 16; batch 2: a quarter of the way */
    assert_close(cell_term(&p, 4), 4 * units * 5e-3, 1e-12);
    assert_close(cell_term(&p, 2), 2 * units * 3.5e-3, 1e-12);
    assert_close(cell_term(&p, 16), 16 * units * 8e-3, 1e-12);
    assert_close(cell_term(&p, 64), 64 * units * 8e-3, 1e-12);
    /* the batch-1 figure moves batch 1 alone of these, by its difference only */
    fl_profile q = p;
    q.cell_seconds_b1 = 4e-3;
    assert_close(predict(&q, 1) - predict(&p, 1), units * 2e-3, 1e-12);
    assert_close(predict(&q, 16), predict(&p, 16), 0);
    /* without a batch-1 figure (an older profile): cell_seconds at every batch, as before */
    p.cell_seconds_b1 = 0;
    const int batches[4] = {1, 2, 4, 16};
    for (int k = 0; k < 4; k++) assert_close(cell_term(&p, batches[k]), batches[k] * units * 8e-3, 1e-12);
    /* a negative figure is refused */
    p.cell_seconds_b1 = -1e-9;
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &arch, NULL, 1, 5, 1, &c), FL_ERR_ARG);
}

static void test_cell_profile_file(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    p.cell_seconds = 6.5e-9;
    p.cell_seconds_b1 = 1.25e-9;
    const char *path = "test_cost_cell_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_close(q.cell_seconds, 6.5e-9, 1e-20);
    assert_close(q.cell_seconds_b1, 1.25e-9, 1e-20);
    for (int b = 1; b <= 32; b *= 2) assert_close(predict(&q, b), predict(&p, b), 1e-9 * predict(&p, b));

    /* A profile written before the batch-1 figure loads with it 0 and predicts with cell_seconds at
     * every batch: the batch-1 prediction grows by 2 x 64 x (6.5 - 1.25) ns. */
    cJSON *root = json_file_read(path);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(root, "cell_seconds_b1"));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "cell_seconds_b1");
    json_file_write(path, root);
    cJSON_Delete(root);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_close(q.cell_seconds_b1, 0, 0);
    assert_close(q.cell_seconds, 6.5e-9, 1e-20);
    fl_profile old = p;
    old.cell_seconds_b1 = 0;
    for (int b = 1; b <= 32; b *= 2) assert_close(predict(&q, b), predict(&old, b), 1e-9 * predict(&old, b));
    assert_close(predict(&q, 1) - predict(&p, 1), 2 * 64 * (6.5e-9 - 1.25e-9), 1e-15);

    /* A negative figure in the file is refused, naming it. */
    root = json_file_read(path);
    cJSON_AddNumberToObject(root, "cell_seconds_b1", -1.0);
    json_file_write(path, root);
    cJSON_Delete(root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "cell_seconds_b1"));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cell_batch_terms),
        cmocka_unit_test(test_cell_profile_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
