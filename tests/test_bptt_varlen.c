/* Masked variable-length training (src/train/bptt.c with lengths, src/train/data.c):
 *  - every parameter's gradient against central differences of an independent double-precision
 *    reference that runs each sequence only over its own length (dense, SVD, CP; classifier and
 *    language model with a padding id and a carried initial state);
 *  - PyTorch autograd on pack_padded_sequence (tests/gen_grad_golden.py, "varlen" cases);
 *  - invariances: padded values do not matter, sorted and unsorted batches agree, full lengths
 *    equal no lengths, the final state is each sequence's own;
 *  - bad lengths refused; data sets carry lengths (set, labelled text, split) into the trainer. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fastlstm/train.h"
#include "grad_check.h"
#include "testutil.h"

/* ---------------------------------------------------------------- double reference */

/* Mean cross-entropy, each sequence b run alone over its first lens[b] steps (a reverse direction
 * from step lens[b] - 1 down; a projection h = W_hr (o * tanh(c)) of size P): per-step targets
 * counted only there, the classifier reading step lens[b] - 1. */
static double ref_loss(const problem *pr, const fl_model *m, const double *p, const data *d) {
    const fl_arch *a = &m->arch;
    const int B = pr->B, T = pr->T, H = a->hidden, D = a->input, V = a->head_out, L = a->layers;
    const int dirs = a->bidirectional ? 2 : 1, P = a->proj > 0 ? a->proj : H, Wd = dirs * P, mx = D > Wd ? D : Wd;
    double *X = calloc((size_t)T * mx, sizeof(double)), *Y = calloc((size_t)T * Wd, sizeof(double));
    double *W = calloc((size_t)4 * H * mx, sizeof(double)), *U = calloc((size_t)4 * H * P, sizeof(double));
    double *Wh = calloc((size_t)V * Wd, sizeof(double)), *z = calloc(V, sizeof(double));
    double *Wr = calloc((size_t)P * H, sizeof(double));
    double h[64], c[64], mo[64], gates[256];
    ref_dense(m, &m->head, p, Wh);
    const double *hb = p + (m->head_b - m->params);
    double loss = 0;
    int count = 0;
    for (int b = 0; b < B; b++) {
        const int n = d->lens[b];
        for (int t = 0; t < n; t++)
            for (int k = 0; k < D; k++) {
                size_t i = (size_t)t * B + b;
                X[t * D + k] = a->vocab ? p[(m->embed - m->params) + d->tokens[i] * D + k] : d->x[i * D + k];
            }
        int in = D;
        for (int l = 0; l < L; l++) {
            for (int dir = 0; dir < dirs; dir++) {
                const int idx = l * dirs + dir;
                const fl_layer *ly = &m->layer[idx];
                ref_dense(m, &ly->wih, p, W);
                ref_dense(m, &ly->whh, p, U);
                if (a->proj > 0) ref_dense(m, &ly->whr, p, Wr);
                const double *bi = p + (ly->b_ih - m->params), *bh = p + (ly->b_hh - m->params);
                for (int j = 0; j < P; j++) h[j] = d->h0 ? d->h0[((size_t)idx * B + b) * P + j] : 0;
                for (int j = 0; j < H; j++) c[j] = d->c0 ? d->c0[((size_t)idx * B + b) * H + j] : 0;
                for (int s = 0; s < n; s++) {
                    const int t = dir ? n - 1 - s : s;
                    for (int r = 0; r < 4 * H; r++) {
                        double v = bi[r] + bh[r];
                        for (int k = 0; k < in; k++) v += W[r * in + k] * X[t * in + k];
                        for (int k = 0; k < P; k++) v += U[r * P + k] * h[k];
                        gates[r] = v;
                    }
                    for (int j = 0; j < H; j++) {
                        c[j] = sig(gates[H + j]) * c[j] + sig(gates[j]) * tanh(gates[2 * H + j]);
                        mo[j] = sig(gates[3 * H + j]) * tanh(c[j]);
                    }
                    for (int j = 0; j < P; j++) {
                        double v = mo[j];
                        if (a->proj > 0) {
                            v = 0;
                            for (int k = 0; k < H; k++) v += Wr[j * H + k] * mo[k];
                        }
                        h[j] = Y[t * Wd + dir * P + j] = v;
                    }
                }
            }
            memcpy(X, Y, (size_t)n * Wd * sizeof(double));
            in = Wd;
        }
        const bool per_step = a->head == FL_HEAD_PER_STEP;
        for (int t = per_step ? 0 : n - 1; t < n; t++) {
            double mz = -1e300, se = 0;
            for (int v = 0; v < V; v++) {
                double s = hb[v];
                for (int k = 0; k < Wd; k++) s += Wh[v * Wd + k] * X[t * Wd + k];
                z[v] = s;
                if (s > mz) mz = s;
            }
            for (int v = 0; v < V; v++) se += exp(z[v] - mz);
            loss += log(se) + mz - z[d->targets[per_step ? (size_t)t * B + b : (size_t)b]];
            count++;
        }
    }
    free(X), free(Y), free(W), free(U), free(Wh), free(z), free(Wr);
    return loss / count;
}

static problem cls_problem(fl_mat_spec ih, fl_mat_spec hh, fl_mat_spec head) {
    problem p = {.arch = {.vocab = 0, .input = 3, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP,
                          .head_out = 3},
                 .B = 4, .T = 5, .lens = {2, 5, 1, 4}};
    for (int l = 0; l < 2; l++) p.specs[2 * l] = ih, p.specs[2 * l + 1] = hh;
    p.specs[4] = head;
    return p;
}

static problem lm_problem(fl_mat_spec ih, fl_mat_spec hh, fl_mat_spec head) {
    problem p = {.arch = {.vocab = 6, .input = 3, .hidden = 4, .layers = 2, .head = FL_HEAD_PER_STEP,
                          .head_out = 6, .has_padding = 1, .padding_idx = 2},
                 .B = 3, .T = 5, .use_state = true, .lens = {3, 1, 5}};
    for (int l = 0; l < 2; l++) p.specs[2 * l] = ih, p.specs[2 * l + 1] = hh;
    p.specs[4] = head;
    return p;
}

static void test_fd_cls(void **st) {
    problem p = cls_problem(DN, DN, DN);
    check_elementwise(&p, ref_loss, 31);
    p = cls_problem((fl_mat_spec){FL_METHOD_SVD, 2}, (fl_mat_spec){FL_METHOD_SVD, 3}, (fl_mat_spec){FL_METHOD_SVD, 2});
    check_elementwise(&p, ref_loss, 31);
    p = cls_problem((fl_mat_spec){FL_METHOD_CP, 3}, (fl_mat_spec){FL_METHOD_CP, 2}, DN);
    p.use_state = true;
    check_elementwise(&p, ref_loss, 31);
}

static void test_fd_lm(void **st) {
    problem p = lm_problem(DN, DN, DN);
    check_elementwise(&p, ref_loss, 31);
    p = lm_problem((fl_mat_spec){FL_METHOD_SVD, 2}, (fl_mat_spec){FL_METHOD_CP, 3}, (fl_mat_spec){FL_METHOD_SVD, 3});
    check_elementwise(&p, ref_loss, 31);
}

/* Bidirectional layers (1 to 3), dense and decomposed, with and without lengths. */
static problem bidir_problem(int layers, fl_head_kind head, fl_mat_spec ih, fl_mat_spec hh, fl_mat_spec hd) {
    problem p = {.arch = {.vocab = head == FL_HEAD_PER_STEP ? 6 : 0, .input = 3, .hidden = 4, .layers = layers,
                          .head = head, .head_out = head == FL_HEAD_PER_STEP ? 6 : 3, .bidirectional = 1},
                 .B = 3, .T = 4, .lens = {2, 4, 1}};
    for (int i = 0; i < 2 * layers; i++) p.specs[2 * i] = ih, p.specs[2 * i + 1] = hh;
    p.specs[4 * layers] = hd;
    return p;
}

static void test_fd_bidir(void **st) {
    const fl_mat_spec S2 = {FL_METHOD_SVD, 2}, S3 = {FL_METHOD_SVD, 3}, C2 = {FL_METHOD_CP, 2}, C3 = {FL_METHOD_CP, 3};
    problem p = bidir_problem(1, FL_HEAD_LAST_STEP, DN, DN, DN);
    check_elementwise(&p, ref_loss, 31);
    p.lens[0] = p.lens[1] = p.lens[2] = p.T; /* full lengths: the plain bidirectional batch */
    p.use_state = true;
    check_elementwise(&p, ref_loss, 31);
    p = bidir_problem(2, FL_HEAD_LAST_STEP, S2, S3, S2);
    check_elementwise(&p, ref_loss, 31);
    p = bidir_problem(3, FL_HEAD_LAST_STEP, C3, C2, DN);
    p.specs[3] = DN; /* mixed: layer 0's reverse W_hh dense */
    check_elementwise(&p, ref_loss, 31);
    p = bidir_problem(2, FL_HEAD_PER_STEP, DN, S2, DN); /* a tagger over tokens */
    p.use_state = true;
    check_elementwise(&p, ref_loss, 31);
}

/* Projections (LSTMP): dense and SVD W_hr, with bidirectional layers and lengths. Specs per
 * direction: ih, hh, hr; then the head. */
static problem proj_problem(int layers, int bidir, fl_head_kind head, fl_mat_spec hr) {
    problem p = {.arch = {.vocab = head == FL_HEAD_PER_STEP ? 6 : 0, .input = 3, .hidden = 5, .layers = layers,
                          .head = head, .head_out = head == FL_HEAD_PER_STEP ? 6 : 3, .bidirectional = bidir,
                          .proj = 3},
                 .B = 3, .T = 4, .use_state = true, .lens = {3, 4, 1}};
    const int nd = layers * (bidir ? 2 : 1);
    for (int i = 0; i < nd; i++) p.specs[3 * i] = p.specs[3 * i + 1] = DN, p.specs[3 * i + 2] = hr;
    p.specs[3 * nd] = DN;
    return p;
}

static void test_fd_proj(void **st) {
    const fl_mat_spec S2 = {FL_METHOD_SVD, 2};
    problem p = proj_problem(2, 0, FL_HEAD_LAST_STEP, DN);
    check_elementwise(&p, ref_loss, 31);
    p = proj_problem(1, 0, FL_HEAD_PER_STEP, S2); /* an LSTMP language model with a carried state */
    p.lens[0] = p.lens[1] = p.lens[2] = p.T;
    check_elementwise(&p, ref_loss, 31);
    p = proj_problem(2, 1, FL_HEAD_LAST_STEP, S2);
    p.specs[0] = (fl_mat_spec){FL_METHOD_CP, 2};
    p.specs[4] = S2; /* layer 0 reverse W_hh */
    check_elementwise(&p, ref_loss, 31);
}

/* The training forward computes what the inference runtime (fl_session_run with lengths) does:
 * the loss of the session's outputs equals the bptt loss, for a bidirectional classifier and a
 * bidirectional tagger with a padding id, unsorted lengths. */
static void check_runtime(const problem *p) {
    fl_model *m = make_model(p, 51);
    data d;
    make_data(p, 52, &d);
    fl_bptt_batch in = batch_of(p, &d);
    fl_bptt *w;
    double loss;
    assert_int_equal(fl_bptt_create(m, p->B, p->T, &w), FL_OK);
    assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_OK);
    fl_session *s;
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = p->B;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    float *y = malloc(fl_run_output_size(m, p->B, p->T) * sizeof(float));
    fl_run_io io = {.layout = FL_TIME_MAJOR, .batch = p->B, .seq = p->T, .x = d.x, .tokens = d.tokens,
                    .h0 = d.h0, .c0 = d.c0, .y = y, .lengths = d.lens};
    if (fl_session_run(s, &io) != FL_OK) fail_msg("fl_session_run: %s", fl_last_error());
    const int V = p->arch.head_out, B = p->B;
    double sum = 0;
    int count = 0;
    for (int t = 0; t < p->T; t++)
        for (int b = 0; b < B; b++) {
            const bool per_step = p->arch.head == FL_HEAD_PER_STEP;
            if (per_step ? t >= d.lens[b] : t > 0) continue;
            const float *z = y + (per_step ? (size_t)t * B + b : (size_t)b) * V;
            double mz = -1e300, se = 0;
            for (int v = 0; v < V; v++) mz = z[v] > mz ? z[v] : mz;
            for (int v = 0; v < V; v++) se += exp(z[v] - mz);
            sum += log(se) + mz - z[d.targets[per_step ? (size_t)t * B + b : (size_t)b]];
            count++;
        }
    if (fabs(sum / count - loss) > 1e-4 * fabs(loss)) fail_msg("runtime loss %.7g, training loss %.7g", sum / count, loss);
    free(y);
    fl_session_free(s);
    fl_bptt_free(w);
    fl_model_free(m);
    free_data(&d);
}

static void test_matches_runtime(void **st) {
    problem p = bidir_problem(2, FL_HEAD_LAST_STEP, DN, (fl_mat_spec){FL_METHOD_SVD, 3}, DN);
    p.use_state = true;
    check_runtime(&p);
    p = bidir_problem(3, FL_HEAD_PER_STEP, (fl_mat_spec){FL_METHOD_CP, 3}, DN, DN);
    p.arch.has_padding = 1;
    p.arch.padding_idx = 1;
    check_runtime(&p);
    p = cls_problem(DN, DN, DN);
    check_runtime(&p);
    p = proj_problem(2, 1, FL_HEAD_LAST_STEP, (fl_mat_spec){FL_METHOD_SVD, 2});
    check_runtime(&p);
    p = proj_problem(2, 0, FL_HEAD_PER_STEP, DN);
    check_runtime(&p);
}

/* Padded inputs do not matter; sorted rows give the unsorted batch's loss and gradients; lengths
 * of T equal no lengths; the final state is each row's state at its last valid step. */
static void test_invariances(void **st) {
    problem p = cls_problem(DN, (fl_mat_spec){FL_METHOD_SVD, 3}, DN);
    p.use_state = true;
    fl_model *m = make_model(&p, 41);
    data d;
    make_data(&p, 42, &d);
    fl_bptt_batch in = batch_of(&p, &d);
    double l0, l1;
    fl_model *g0 = grad_of(&p, m, &in, 0, 0, &l0);
    for (int t = 0; t < p.T; t++) /* garbage in every padded cell */
        for (int b = 0; b < p.B; b++)
            if (t >= d.lens[b])
                for (int k = 0; k < p.arch.input; k++) d.x[((size_t)t * p.B + b) * p.arch.input + k] = 1e3f;
    fl_model *g1 = grad_of(&p, m, &in, 0, 0, &l1);
    assert_true(l0 == l1);
    for (size_t i = 0; i < m->n_params; i++) assert_true(fabs(g0->params[i] - g1->params[i]) <= 1e-6);
    fl_model_free(g1);

    /* rows sorted by decreasing length: (1, 3, 0, 2) for lengths (2, 5, 1, 4) */
    const int order[4] = {1, 3, 0, 2};
    const int B = p.B, D = p.arch.input, H = p.arch.hidden, L = p.arch.layers;
    data s = {0};
    s.x = malloc((size_t)p.T * B * D * sizeof(float));
    s.targets = malloc((size_t)B * sizeof(int32_t));
    s.lens = malloc((size_t)B * sizeof(int32_t));
    s.h0 = malloc((size_t)L * B * H * sizeof(float));
    s.c0 = malloc((size_t)L * B * H * sizeof(float));
    for (int b = 0; b < B; b++) {
        const int o = order[b];
        s.targets[b] = d.targets[o];
        s.lens[b] = d.lens[o];
        for (int t = 0; t < p.T; t++)
            memcpy(s.x + ((size_t)t * B + b) * D, d.x + ((size_t)t * B + o) * D, (size_t)D * sizeof(float));
        for (int l = 0; l < L; l++) {
            memcpy(s.h0 + ((size_t)l * B + b) * H, d.h0 + ((size_t)l * B + o) * H, (size_t)H * sizeof(float));
            memcpy(s.c0 + ((size_t)l * B + b) * H, d.c0 + ((size_t)l * B + o) * H, (size_t)H * sizeof(float));
        }
    }
    fl_bptt_batch sin = batch_of(&p, &s);
    fl_model *g2 = grad_of(&p, m, &sin, 0, 0, &l1);
    assert_true(fabs(l0 - l1) <= 1e-6 * fabs(l0));
    for (size_t i = 0; i < m->n_params; i++)
        if (fabs(g0->params[i] - g2->params[i]) > 1e-5 * (1 + fabs(g0->params[i])))
            fail_msg("sorted batch: gradient %zu = %.8g, unsorted %.8g", i, g2->params[i], g0->params[i]);
    fl_model_free(g2);

    /* final state: each sorted row against the same sequence run alone at its own length */
    fl_bptt *w, *w1;
    assert_int_equal(fl_bptt_create(m, B, p.T, &w), FL_OK);
    assert_int_equal(fl_bptt_create(m, 1, p.T, &w1), FL_OK);
    assert_int_equal(fl_bptt_forward(w, m, &sin, 0, NULL, &l1, NULL), FL_OK);
    float *hn = malloc((size_t)L * B * H * sizeof(float)), *cn = malloc((size_t)L * B * H * sizeof(float));
    fl_bptt_final_state(w, hn, cn);
    assert_int_equal(fl_bptt_count(w), (size_t)B);
    for (int b = 0; b < B; b++) {
        float x1[5 * 3], h1[2 * 5], c1[2 * 5], h01[2 * 5], c01[2 * 5], hr[2 * 5], cr[2 * 5];
        for (int t = 0; t < s.lens[b]; t++) memcpy(x1 + t * D, s.x + ((size_t)t * B + b) * D, (size_t)D * sizeof(float));
        for (int l = 0; l < L; l++) {
            memcpy(h01 + l * H, s.h0 + ((size_t)l * B + b) * H, (size_t)H * sizeof(float));
            memcpy(c01 + l * H, s.c0 + ((size_t)l * B + b) * H, (size_t)H * sizeof(float));
        }
        fl_bptt_batch one = {1, s.lens[b], x1, NULL, s.targets + b, h01, c01, NULL};
        assert_int_equal(fl_bptt_forward(w1, m, &one, 0, NULL, &l1, NULL), FL_OK);
        fl_bptt_final_state(w1, h1, c1);
        for (int l = 0; l < L; l++)
            for (int j = 0; j < H; j++) {
                hr[l * H + j] = hn[((size_t)l * B + b) * H + j];
                cr[l * H + j] = cn[((size_t)l * B + b) * H + j];
            }
        for (int k = 0; k < L * H; k++) {
            assert_true(fabs(hr[k] - h1[k]) <= 1e-5f);
            assert_true(fabs(cr[k] - c1[k]) <= 1e-5f);
        }
    }

    /* lengths all T == no lengths */
    for (int b = 0; b < B; b++) s.lens[b] = p.T;
    double lf, ln;
    fl_model *gf = grad_of(&p, m, &sin, 0, 0, &lf);
    sin.lengths = NULL;
    fl_model *gn = grad_of(&p, m, &sin, 0, 0, &ln);
    assert_true(fabs(lf - ln) <= 1e-7 * fabs(ln));
    for (size_t i = 0; i < m->n_params; i++) assert_true(fabs(gf->params[i] - gn->params[i]) <= 1e-6);
    /* bad lengths */
    int32_t bad[3] = {0, p.T + 1, -1};
    for (int k = 0; k < 3; k++) {
        s.lens[2] = bad[k];
        sin.lengths = s.lens;
        assert_int_equal(fl_bptt_forward(w, m, &sin, 0, NULL, &l1, NULL), FL_ERR_ARG);
        assert_non_null(strstr(fl_last_error(), "sequence 2"));
    }
    free(hn), free(cn);
    fl_bptt_free(w), fl_bptt_free(w1);
    fl_model_free(gf), fl_model_free(gn), fl_model_free(g0), fl_model_free(m);
    free_data(&d);
    free_data(&s);
}

/* ---------------------------------------------------------------- PyTorch golden */

static void test_torch_golden(void **st) {
    golden_generate(tmp_dir, "varlen");
    problem cls = {.arch = {.vocab = 0, .input = 5, .hidden = 7, .layers = 2, .head = FL_HEAD_LAST_STEP,
                            .head_out = 4},
                   .B = 5, .T = 6};
    for (int i = 0; i < 5; i++) cls.specs[i] = DN;
    check_golden(tmp_dir, "cls_varlen", &cls);
    cls.specs[0] = cls.specs[2] = (fl_mat_spec){FL_METHOD_SVD, 3};
    cls.specs[1] = cls.specs[3] = (fl_mat_spec){FL_METHOD_SVD, 4};
    cls.specs[4] = (fl_mat_spec){FL_METHOD_SVD, 2};
    check_golden(tmp_dir, "cls_varlen_svd", &cls);
    problem lm = {.arch = {.vocab = 9, .input = 4, .hidden = 6, .layers = 2, .head = FL_HEAD_PER_STEP,
                           .head_out = 9, .has_padding = 1, .padding_idx = 0},
                  .B = 4, .T = 7, .use_state = true};
    for (int i = 0; i < 5; i++) lm.specs[i] = DN;
    check_golden(tmp_dir, "lm_varlen_pad", &lm);
    problem cp = {.arch = {.vocab = 9, .input = 4, .hidden = 6, .layers = 1, .head = FL_HEAD_PER_STEP,
                           .head_out = 9, .has_padding = 1, .padding_idx = 0},
                  .B = 3, .T = 5, .use_state = true,
                  .specs = {{FL_METHOD_CP, 3}, {FL_METHOD_CP, 2}, {FL_METHOD_DENSE, 0}}};
    check_golden(tmp_dir, "lm_varlen_cp", &cp);

    problem bi = {.arch = {.vocab = 0, .input = 5, .hidden = 6, .layers = 2, .head = FL_HEAD_LAST_STEP,
                           .head_out = 4, .bidirectional = 1},
                  .B = 3, .T = 5, .use_state = true};
    for (int i = 0; i < 9; i++) bi.specs[i] = DN;
    check_golden(tmp_dir, "cls_bidir", &bi);
    bi = (problem){.arch = {.vocab = 0, .input = 4, .hidden = 5, .layers = 3, .head = FL_HEAD_LAST_STEP,
                            .head_out = 3, .bidirectional = 1},
                   .B = 4, .T = 6};
    for (int i = 0; i < 13; i++) bi.specs[i] = DN;
    check_golden(tmp_dir, "cls_bidir_varlen", &bi);
    bi = (problem){.arch = {.vocab = 8, .input = 4, .hidden = 5, .layers = 1, .head = FL_HEAD_PER_STEP,
                            .head_out = 8, .bidirectional = 1, .has_padding = 1, .padding_idx = 0},
                   .B = 3, .T = 6, .use_state = true};
    for (int i = 0; i < 5; i++) bi.specs[i] = DN;
    check_golden(tmp_dir, "tag_bidir_varlen_pad", &bi);
    bi = (problem){.arch = {.vocab = 0, .input = 4, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP,
                            .head_out = 3, .bidirectional = 1},
                   .B = 4, .T = 6, .use_state = true};
    for (int i = 0; i < 4; i++) bi.specs[2 * i] = (fl_mat_spec){FL_METHOD_SVD, 2}, bi.specs[2 * i + 1] = (fl_mat_spec){FL_METHOD_SVD, 3};
    bi.specs[8] = (fl_mat_spec){FL_METHOD_SVD, 2};
    check_golden(tmp_dir, "cls_bidir_svd_varlen", &bi);

    problem pj = {.arch = {.vocab = 0, .input = 4, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP,
                           .head_out = 3, .proj = 3},
                  .B = 4, .T = 6, .use_state = true};
    for (int i = 0; i < 7; i++) pj.specs[i] = DN;
    check_golden(tmp_dir, "cls_proj_varlen", &pj);
    pj = (problem){.arch = {.vocab = 0, .input = 4, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP,
                            .head_out = 3, .proj = 2, .bidirectional = 1},
                   .B = 4, .T = 5, .use_state = true};
    for (int i = 0; i < 13; i++) pj.specs[i] = DN;
    check_golden(tmp_dir, "cls_bidir_proj_varlen", &pj);
    pj = (problem){.arch = {.vocab = 7, .input = 4, .hidden = 6, .layers = 2, .head = FL_HEAD_PER_STEP,
                            .head_out = 7, .proj = 4},
                   .B = 3, .T = 5, .use_state = true};
    for (int i = 0; i < 6; i++) pj.specs[i] = (fl_mat_spec){FL_METHOD_SVD, 2};
    pj.specs[6] = DN;
    check_golden(tmp_dir, "lm_proj_svd", &pj);
}

/* ---------------------------------------------------------------- data sets and the trainer */

/* A trainer step on a set with lengths equals the masked bptt of the same sequences, whatever the
 * padding holds; labelled text and splits carry lengths; bad lengths are refused. */
static void test_dataset_lengths(void **st) {
    enum { N = 6, T = 5, D = 3 };
    float x[N * T * D];
    int32_t y[N] = {0, 1, 2, 1, 0, 2}, lens[N] = {5, 2, 1, 4, 3, 5};
    fl_rng r;
    fl_rng_seed(&r, 7);
    for (int i = 0; i < N * T * D; i++) x[i] = (float)fl_rng_normal(&r);
    fl_dataset *d, *d2;
    assert_int_equal(fl_dataset_classify(N, T, D, x, NULL, y, 3, &d), FL_OK);
    assert_null(fl_dataset_lengths(d, NULL));
    int32_t bad[N] = {5, 2, 0, 4, 3, 5};
    assert_int_equal(fl_dataset_set_lengths(d, bad), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "sequence 2"));
    bad[2] = T + 1;
    assert_int_equal(fl_dataset_set_lengths(d, bad), FL_ERR_DATA);
    assert_int_equal(fl_dataset_set_lengths(d, lens), FL_OK);
    int left = -1;
    assert_memory_equal(fl_dataset_lengths(d, &left), lens, sizeof lens);
    assert_int_equal(left, 0);
    for (int i = 0; i < N; i++) /* garbage in the padding of a second copy */
        for (int t = lens[i]; t < T; t++)
            for (int k = 0; k < D; k++) x[(i * T + t) * D + k] = 50.0f;
    assert_int_equal(fl_dataset_classify(N, T, D, x, NULL, y, 3, &d2), FL_OK);
    assert_int_equal(fl_dataset_set_lengths(d2, lens), FL_OK);

    fl_arch a = {.input = D, .hidden = 4, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 3};
    fl_model *m1, *m2;
    assert_int_equal(fl_model_create(&a, NULL, &m1), FL_OK);
    assert_int_equal(fl_model_init_random(m1, 3), FL_OK);
    assert_int_equal(fl_model_create(&a, NULL, &m2), FL_OK);
    memcpy(m2->params, m1->params, m1->n_params * sizeof(float));
    fl_train_opts o = fl_train_opts_default();
    o.batch = 4;
    o.optim = FL_OPTIM_SGD;
    o.lr = 0.1f;
    fl_trainer *t1, *t2;
    assert_int_equal(fl_trainer_create(m1, &o, &t1), FL_OK);
    assert_int_equal(fl_trainer_create(m2, &o, &t2), FL_OK);
    for (int s = 0; s < 3; s++) {
        double l1, l2;
        assert_int_equal(fl_trainer_step(t1, d, &l1), FL_OK);
        assert_int_equal(fl_trainer_step(t2, d2, &l2), FL_OK);
        assert_true(isfinite(l1) && fabs(l1 - l2) <= 1e-6 * fabs(l1));
    }
    for (size_t i = 0; i < m1->n_params; i++) assert_true(fabs(m1->params[i] - m2->params[i]) <= 1e-6);

    /* The first batch's loss is the mean of the per-sequence losses of each sequence run alone. */
    fl_eval_result ev, one;
    assert_int_equal(fl_model_evaluate(m1, d2, 4, 1, &ev), FL_OK);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        fl_dataset *di;
        assert_int_equal(fl_dataset_classify(1, lens[i], D, x + i * T * D, NULL, y + i, 3, &di), FL_OK);
        assert_int_equal(fl_model_evaluate(m1, di, 1, 1, &one), FL_OK);
        sum += one.loss;
        fl_dataset_free(di);
    }
    assert_true(fabs(ev.loss - sum / N) <= 1e-5 * fabs(ev.loss));

    /* split keeps each sequence's length */
    fl_dataset *p1, *p2;
    assert_int_equal(fl_dataset_split(d, 0.5, 9, &p1, &p2), FL_OK);
    for (int h = 0; h < 2; h++) {
        const fl_dataset *q = h ? p2 : p1;
        const int32_t *ql = fl_dataset_lengths(q, NULL);
        assert_non_null(ql);
        for (size_t i = 0; i < fl_dataset_size(q); i++) {
            int found = 0;
            for (int j = 0; j < N; j++)
                found |= !memcmp(fl_dataset_features(q) + i * T * D, fl_dataset_features(d) + j * T * D,
                                 sizeof(float) * T * D) && ql[i] == lens[j];
            assert_true(found);
        }
    }
    fl_dataset_free(p1), fl_dataset_free(p2);
    fl_trainer_free(t1), fl_trainer_free(t2);
    fl_model_free(m1), fl_model_free(m2);
    fl_dataset_free(d), fl_dataset_free(d2);
}

/* Labelled text: left-padded rows with their lengths; a classifier trained on them masks the
 * padding (a line's loss does not depend on the longest line in the file). */
static void test_labelled_lengths(void **st) {
    const char *path = tmp_path("lab.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("pos\tgood fine good\nneg\tbad\npos\tfine good\nneg\tbad bad fine bad bad\n", f);
    fclose(f);
    fl_data_spec s = {.path = path, .format = FL_DATA_LABELLED};
    fl_vocab *v;
    fl_dataset *d;
    assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_WORD, 0, 0, &v, &d), FL_OK);
    int left = 0;
    const int32_t *l = fl_dataset_lengths(d, &left);
    assert_non_null(l);
    assert_int_equal(left, 1);
    const int32_t want[4] = {3, 1, 2, 5};
    assert_memory_equal(l, want, sizeof want);
    assert_int_equal(fl_dataset_seq(d), 5);
    assert_int_equal(fl_dataset_ids(d)[5 + 4], fl_dataset_ids(d)[3 * 5 + 0]); /* "bad" last, as stored */
    s.lengths = "x.npy";
    fl_dataset *d2;
    assert_int_equal(fl_data_load_with(&s, 0, v, 0, &d2), FL_ERR_ARG);
    fl_vocab_free(v);
    fl_dataset_free(d);
}

static int setup(void **st) { return tmp_dir_make("fl_varlen"); }
static int teardown(void **st) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_cls),          cmocka_unit_test(test_fd_lm),
        cmocka_unit_test(test_fd_bidir),        cmocka_unit_test(test_fd_proj),
        cmocka_unit_test(test_matches_runtime),
        cmocka_unit_test(test_invariances),     cmocka_unit_test(test_torch_golden),
        cmocka_unit_test(test_dataset_lengths), cmocka_unit_test(test_labelled_lengths),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
