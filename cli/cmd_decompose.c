/* fastlstm decompose: replace LSTM (and head) weight matrices by SVD or CP factors. */
#include "cli.h"
#include "fastlstm/decompose.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "decompose";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm decompose MODEL -o OUT [--method svd|cp|dense] (--rank R | --tol E | --budget X)\n"
            "                          [--head] [--head-rank R] [--layer K:ih=SPEC,hh=SPEC ...]\n"
            "                          [--seed S] [--max-iter N] [--cp-tol E]\n\n"
            "Decompose the LSTM weight matrices of MODEL (dense or already decomposed; decomposed matrices\n"
            "are reconstructed first) and write the result to OUT. Biases and the embedding stay dense.\n"
            "  SVD: W (4H, n) ~ U V, truncated SVD in double (LAPACK dgesdd), sqrt(s) folded into each side.\n"
            "  CP:  W viewed as a 4 x H x n tensor ~ sum_r a_r (x) b_r (x) c_r, by alternating least squares.\n"
            "Prints, per matrix, the rank, parameters and flops before -> after, and the relative error\n"
            "||W - W~||_F / ||W||_F (plus ALS sweeps for CP), then totals. Progress goes to stderr.\n\n"
            "rank choice (one of; a rank in --layer/--head-rank overrides it for that matrix):\n"
            "  --rank R        the same rank for every decomposed matrix\n"
            "  --tol E         the smallest rank with relative error <= E, 0 < E < 1 (exact for SVD; for CP a\n"
            "                  doubling-then-bisection search over ALS runs, which can take long)\n"
            "  --budget X      the largest rank keeping each matrix within X times its dense parameters\n\n"
            "options:\n"
            "  -o, --output OUT  output model file (safetensors)\n"
            "  --method M      svd (default), cp, or dense for the LSTM matrices\n"
            "  --head          also SVD-decompose the head (never CP)\n"
            "  --head-rank R   SVD the head at rank R (implies --head)\n"
            "  --layer K:ih=SPEC,hh=SPEC  per-layer override, repeatable; SPEC is dense, svd, svd:R, cp or\n"
            "                  cp:R (without :R the rank comes from --rank, --tol or --budget); parts hr\n"
            "                  (LSTMP projection: dense or SVD) and ih_reverse, hh_reverse, hr_reverse\n"
            "                  (bidirectional) set those matrices; --method cp keeps projections dense\n"
            "  --seed S        CP-ALS seed (default 0)\n"
            "  --max-iter N    CP-ALS sweep cap (default 200)\n"
            "  --cp-tol E      CP-ALS stops when the relative error improves by less than E (default 1e-7)\n"
            "  -h, --help      show this help\n\n"
            "examples:\n"
            "  fastlstm decompose lm.safetensors -o lm-svd64.safetensors --rank 64\n"
            "  fastlstm decompose lm.safetensors -o lm-svd.safetensors --tol 0.3 --head\n"
            "  fastlstm decompose lm.safetensors -o lm-cp.safetensors --method cp --rank 128 --max-iter 100\n"
            "  fastlstm decompose lm.safetensors -o lm-mix.safetensors --rank 64 --layer 0:ih=dense,hh=cp:32\n");
}

static bool parse_method(const char *s, fl_method *m) {
    if (!strcmp(s, "svd")) *m = FL_METHOD_SVD;
    else if (!strcmp(s, "cp")) *m = FL_METHOD_CP;
    else if (!strcmp(s, "dense")) *m = FL_METHOD_DENSE;
    else return false;
    return true;
}

/* SPEC: dense | svd | svd:R | cp | cp:R. rank 0 when not given. */
static bool parse_spec(const char *s, fl_mat_spec *out) {
    char name[16];
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n == 0 || n >= sizeof name) return false;
    memcpy(name, s, n);
    name[n] = '\0';
    if (!parse_method(name, &out->method)) return false;
    out->rank = 0;
    if (!colon) return true;
    if (out->method == FL_METHOD_DENSE) return false;
    char *end;
    long r = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || r < 1 || r > 65536) return false;
    out->rank = (int)r;
    return true;
}

/* Index of the matrix of kind k, layer l, direction d of m, or nmat if it has none. */
static size_t find_matrix(const fl_model *m, size_t nmat, fl_mat_kind k, long l, int d) {
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info mi;
        if (fl_model_matrix_info(m, i, &mi) == FL_OK && mi.kind == k && mi.layer == l && mi.direction == d) return i;
    }
    return nmat;
}

/* K:ih=SPEC,hh=SPEC,hr=SPEC,ih_reverse=SPEC,... (each part optional, in any order) into the specs of
 * layer K's matrices: weight_ih, weight_hh, weight_hr (projection) of the forward or reverse direction. */
static bool parse_layer(const char *s, const fl_model *m, size_t nmat, int layers, fl_mat_spec *specs) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    char *colon = strchr(buf, ':');
    if (!colon) return false;
    *colon = '\0';
    char *end;
    long k = strtol(buf, &end, 10);
    if (end == buf || *end || k < 0 || k >= layers) return false;
    char *save = NULL;
    int n = 0;
    for (char *item = strtok_r(colon + 1, ",", &save); item; item = strtok_r(NULL, ",", &save), n++) {
        char *eq = strchr(item, '=');
        if (!eq) return false;
        *eq = '\0';
        const int dir = strstr(item, "_reverse") != NULL;
        if (dir) *strstr(item, "_reverse") = '\0';
        fl_mat_kind kind;
        if (!strcmp(item, "ih")) kind = FL_MAT_IH;
        else if (!strcmp(item, "hh")) kind = FL_MAT_HH;
        else if (!strcmp(item, "hr")) kind = FL_MAT_PROJ;
        else return false;
        size_t i = find_matrix(m, nmat, kind, k, dir);
        if (i == nmat || !parse_spec(eq + 1, &specs[i])) return false;
    }
    return n > 0;
}

typedef struct progress {
    const fl_model *m;
    size_t nmat;
    int *sweeps, *converged; /* [nmat] */
} progress;

static void on_progress(void *ctx, const fl_decomp_event *ev) {
    progress *p = ctx;
    char rank[48];
    fl_matrix_info mi;
    if (fl_model_matrix_info(p->m, ev->index, &mi)) snprintf(mi.name, sizeof mi.name, "matrix %zu", ev->index);
    if (ev->spec.method == FL_METHOD_DENSE) snprintf(rank, sizeof rank, "dense");
    else if (ev->spec.rank > 0) snprintf(rank, sizeof rank, "%s rank %d", fl_method_name(ev->spec.method), ev->spec.rank);
    else snprintf(rank, sizeof rank, "%s (rank from tol/budget)", fl_method_name(ev->spec.method));
    if (!ev->done) {
        fprintf(stderr, "[%zu/%zu] %s: %s ...\n", ev->index + 1, p->nmat, mi.name, rank);
    } else {
        p->sweeps[ev->index] = ev->cp_iterations;
        p->converged[ev->index] = ev->cp_converged;
        if (ev->spec.method == FL_METHOD_CP)
            fprintf(stderr, "[%zu/%zu] %s: %s, rel error %.4g, %d ALS sweeps%s, %.2f s\n", ev->index + 1,
                    p->nmat, mi.name, rank, ev->rel_error, ev->cp_iterations,
                    ev->cp_converged ? "" : " (hit --max-iter)", ev->seconds);
        else
            fprintf(stderr, "[%zu/%zu] %s: %s, rel error %.4g, %.2f s\n", ev->index + 1, p->nmat,
                    mi.name, rank, ev->rel_error, ev->seconds);
    }
    fflush(stderr);
}

static double ratio(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

static int print_table(const fl_model *m, const fl_model *dm, const progress *p) {
    printf("%-20s %-6s %6s %25s %25s %10s %8s\n", "matrix", "method", "rank", "params before -> after",
           "flops before -> after", "rel_error", "als");
    size_t pb = 0, pa = 0, fb = 0, fa = 0;
    for (size_t i = 0; i < p->nmat; i++) {
        fl_matrix_info a, b;
        fl_status st = fl_model_matrix_info(m, i, &a);
        if (!st) st = fl_model_matrix_info(dm, i, &b);
        if (st) return cli_fail_status(CMD, st);
        char rank[16], params[48], flops[48], als[24];
        if (b.method == FL_METHOD_DENSE) snprintf(rank, sizeof rank, "-");
        else snprintf(rank, sizeof rank, "%d", b.rank);
        snprintf(params, sizeof params, "%zu -> %zu", a.params, b.params);
        snprintf(flops, sizeof flops, "%zu -> %zu", a.flops, b.flops);
        if (b.method == FL_METHOD_CP) snprintf(als, sizeof als, "%d%s", p->sweeps[i], p->converged[i] ? "" : "*");
        else snprintf(als, sizeof als, "-");
        printf("%-20s %-6s %6s %25s %25s %10.4g %8s\n", b.name, fl_method_name(b.method), rank, params, flops,
               b.rel_error, als);
        pb += a.params, pa += b.params, fb += a.flops, fa += b.flops;
    }
    printf("\nweight matrices: params %zu -> %zu (x%.3f, %.2fx compression), flops %zu -> %zu (x%.3f)\n", pb, pa,
           ratio(pa, pb), ratio(pb, pa), fb, fa, ratio(fa, fb));
    size_t mb = fl_model_num_params(m), ma = fl_model_num_params(dm);
    size_t sb = fl_model_flops_per_step(m), sa = fl_model_flops_per_step(dm);
    printf("whole model:     params %zu -> %zu (x%.3f), flops/step %zu -> %zu (x%.3f)\n", mb, ma, ratio(ma, mb),
           sb, sa, ratio(sa, sb));
    for (size_t i = 0; i < p->nmat; i++) {
        fl_matrix_info b;
        if (!fl_model_matrix_info(dm, i, &b) && b.method == FL_METHOD_CP && !p->converged[i]) {
            printf("(* CP-ALS hit --max-iter before converging)\n");
            break;
        }
    }
    return CLI_OK;
}

int cmd_decompose(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *v;
    const char *layer_args[256];
    int n_layer_args = 0;
    fl_decomp_opts o = fl_decomp_opts_default();
    long head_rank = 0, lv;
    int n_choice = 0;
    bool head = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int t;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if ((t = cli_take(CMD, argc, argv, &i, "-o", &v)) || (t = cli_take(CMD, argc, argv, &i, "--output", &v))) {
            if (t < 0) return CLI_USAGE;
            out = v;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--method", &v))) {
            if (t < 0) return CLI_USAGE;
            if (!parse_method(v, &o.method))
                return cli_fail(CMD, CLI_USAGE, "--method expects svd, cp or dense, got '%s'", v);
        } else if ((t = cli_take(CMD, argc, argv, &i, "--rank", &v))) {
            if (t < 0 || !cli_parse_int(CMD, "--rank", v, 1, 65536, &lv)) return CLI_USAGE;
            o.rank = (int)lv;
            n_choice++;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--tol", &v))) {
            if (t < 0 || !cli_parse_double(CMD, "--tol", v, 1e-12, 0.999999, &o.tol)) return CLI_USAGE;
            n_choice++;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--budget", &v))) {
            if (t < 0 || !cli_parse_double(CMD, "--budget", v, 1e-9, 1.0, &o.budget)) return CLI_USAGE;
            n_choice++;
        } else if (!strcmp(a, "--head")) {
            head = true;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--head-rank", &v))) {
            if (t < 0 || !cli_parse_int(CMD, "--head-rank", v, 1, 1 << 30, &head_rank)) return CLI_USAGE;
            head = true;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--layer", &v))) {
            if (t < 0) return CLI_USAGE;
            if (n_layer_args == (int)(sizeof layer_args / sizeof layer_args[0]))
                return cli_fail(CMD, CLI_USAGE, "too many --layer options");
            layer_args[n_layer_args++] = v;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--seed", &v))) {
            if (t < 0 || !cli_parse_int(CMD, "--seed", v, 0, LONG_MAX, &lv)) return CLI_USAGE;
            o.seed = (uint64_t)lv;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--max-iter", &v))) {
            if (t < 0 || !cli_parse_int(CMD, "--max-iter", v, 1, 1000000, &lv)) return CLI_USAGE;
            o.cp_max_iter = (int)lv;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--cp-tol", &v))) {
            if (t < 0 || !cli_parse_double(CMD, "--cp-tol", v, 0, 1, &o.cp_tol)) return CLI_USAGE;
        } else if ((t = cli_positional(CMD, a, &in))) {
            return t;
        }
    }
    if (!in) return cli_fail(CMD, CLI_USAGE, "MODEL is required (see 'fastlstm decompose --help')");
    if (!out) return cli_fail(CMD, CLI_USAGE, "-o OUT is required (see 'fastlstm decompose --help')");
    if (n_choice > 1) return cli_fail(CMD, CLI_USAGE, "give only one of --rank, --tol and --budget");

    fl_model *m = NULL, *dm = NULL;
    fl_status st = fl_model_load(in, &m);
    if (st) return cli_fail_status(CMD, st);
    const fl_arch *arch = fl_model_arch(m);
    size_t nmat = fl_model_num_matrices(m);
    int rc = CLI_ERR;
    fl_mat_spec *specs = calloc(nmat, sizeof *specs);
    progress p = {.m = m, .nmat = nmat, .sweeps = calloc(nmat, sizeof(int)), .converged = calloc(nmat, sizeof(int))};
    if (!specs || !p.sweeps || !p.converged) {
        rc = cli_fail(CMD, CLI_ERR, "out of memory");
        goto done;
    }
    if (head && arch->head == FL_HEAD_NONE) {
        rc = cli_fail(CMD, CLI_USAGE, "--head: %s has no head", in);
        goto done;
    }
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info mi;
        fl_model_matrix_info(m, i, &mi);
        bool is_head = mi.kind == FL_MAT_HEAD;
        if (mi.kind == FL_MAT_PROJ) /* no gate axis: SVD when asked for, else dense */
            specs[i] = o.method == FL_METHOD_SVD ? (fl_mat_spec){FL_METHOD_SVD, o.rank} : (fl_mat_spec){FL_METHOD_DENSE, 0};
        else if (!is_head) specs[i] = (fl_mat_spec){o.method, o.method == FL_METHOD_DENSE ? 0 : o.rank};
        else if (head) specs[i] = (fl_mat_spec){FL_METHOD_SVD, head_rank > 0 ? (int)head_rank : o.rank};
        else specs[i] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    }
    for (int k = 0; k < n_layer_args; k++) {
        if (!parse_layer(layer_args[k], m, nmat, arch->layers, specs)) {
            rc = cli_fail(CMD, CLI_USAGE, "--layer expects K:ih=SPEC,hh=SPEC with K in [0, %d), parts ih, hh, hr "
                          "(projection models) and ih_reverse, hh_reverse, hr_reverse (bidirectional models), "
                          "and SPEC one of dense, svd, svd:R, cp, cp:R; got '%s'", arch->layers, layer_args[k]);
            goto done;
        }
    }
    for (size_t i = 0; i < nmat; i++)
        if (specs[i].method != FL_METHOD_DENSE && specs[i].rank == 0 && o.rank > 0) specs[i].rank = o.rank;
    // A decomposed target without a rank needs --tol or --budget: a usage error, caught before any work.
    for (size_t i = 0; i < nmat && !(o.tol > 0) && !(o.budget > 0); i++)
        if (specs[i].method != FL_METHOD_DENSE && specs[i].rank == 0) {
            fl_matrix_info mi;
            if (fl_model_matrix_info(m, i, &mi)) snprintf(mi.name, sizeof mi.name, "matrix %zu", i);
            rc = cli_fail(CMD, CLI_USAGE, "%s: %s needs a rank: give --rank, --tol or --budget, or a rank in "
                          "--layer / --head-rank (see 'fastlstm decompose --help')", mi.name, fl_method_name(specs[i].method));
            goto done;
        }
    o.specs = specs;
    o.include_head = head;
    if ((st = fl_model_decompose_ex(m, &o, on_progress, &p, &dm))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    if ((st = fl_model_save(dm, out))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    rc = print_table(m, dm, &p);
    if (rc == CLI_OK) printf("wrote %s\n", out);
done:
    free(specs);
    free(p.sweeps);
    free(p.converged);
    fl_model_free(dm);
    fl_model_free(m);
    return rc;
}
