/* A program built against an installed fastlstm (tests/test_install.sh): it sees only the public
 * headers and the installed library. Creates a small sequence classifier with random weights, runs
 * one batch through a session and prints the outputs. */
#include <fastlstm/fastlstm.h>
#include <fastlstm/io.h>

#include <stdio.h>

static int fail(const char *what, fl_status st) {
    fprintf(stderr, "hello: %s: %s: %s\n", what, fl_status_str(st), fl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    fl_arch a = {.vocab = 0, .input = 3, .hidden = 8, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 4};
    fl_model *m = NULL;
    fl_session *s = NULL;
    fl_status st = fl_model_create(&a, NULL, &m);
    if (st) return fail("create", st);
    if ((st = fl_model_init_random(m, 42))) return fail("init", st);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = 2;
    o.max_seq = 5;
    if ((st = fl_session_create(m, &o, &s))) return fail("session", st);
    float x[2 * 5 * 3], y[2 * 4];
    for (int i = 0; i < 2 * 5 * 3; i++) x[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 2, .seq = 5, .x = x, .y = y};
    if ((st = fl_session_run(s, &io))) return fail("run", st);
    printf("fastlstm %s, %zu parameters\n", fl_version(), fl_model_num_params(m));
    for (int i = 0; i < 2 * 4; i++) printf("%.6f%c", y[i], i % 4 == 3 ? '\n' : ' ');
    /* Optional: write the outputs as .npy through the public I/O header. */
    if (argc > 1) {
        int64_t shape[2] = {2, 4};
        if ((st = fl_npy_save_f32(argv[1], y, 2, shape))) return fail("save", st);
    }
    fl_session_free(s);
    fl_model_free(m);
    return 0;
}
