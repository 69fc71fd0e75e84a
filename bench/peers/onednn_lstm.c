/* Peer benchmark: oneDNN's LSTM primitive (vanilla_lstm, forward inference, f32) on the weights of a
 * fastlstm model file (dense safetensors written by `fastlstm init`, unidirectional or bidirectional).
 *   onednn_lstm MODEL BATCH SEQ ROUNDS
 * One primitive per layer (dnnl_bidirectional_concat for a bidirectional model: [fwd, rev] per step,
 * as PyTorch), executed in turn. oneDNN has no per-sequence lengths: a variable-length batch runs
 * padded to SEQ. Prints one line: "us_per_step MEDIAN MIN MAX" (sequence latency / SEQ) over ROUNDS
 * timed blocks of about 0.2 s each (a tenth of that for ROUNDS <= 2), or "unavailable: why".
 * FL_PEER_BLOCK_MS=M (bench/peers/run.sh, one process per round): blocks of about M ms, no tenth; when
 * one run is longer than a block, as many one-run blocks as fit ROUNDS * M ms, at least one.
 * Threads: oneDNN's OpenMP runtime (OMP_NUM_THREADS). Built by bench/peers/run.sh. */
#include <dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(x)                                                                 \
    do {                                                                         \
        dnnl_status_t s_ = (x);                                                  \
        if (s_ != dnnl_success) {                                                \
            printf("unavailable: oneDNN call %s failed (status %d)\n", #x, (int)s_); \
            exit(0);                                                             \
        }                                                                        \
    } while (0)

static char *header;
static unsigned char *data;

/* Pointer to the f32 data of tensor `name`; count checked against n. */
static const float *tensor(const char *name, size_t n) {
    char key[128];
    snprintf(key, sizeof key, "\"%s\":", name);
    char *p = strstr(header, key);
    if (!p) {
        printf("unavailable: tensor %s not in model (dense model expected)\n", name);
        exit(0);
    }
    p = strstr(p, "data_offsets");
    unsigned long long a, b;
    if (!p || sscanf(strchr(p, '[') + 1, "%llu , %llu", &a, &b) != 2 || b - a != n * 4) {
        printf("unavailable: tensor %s has a bad size\n", name);
        exit(0);
    }
    return (const float *)(data + a);
}

static int meta_int(const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    char *p = strstr(header, k);
    if (!p) return -1;
    p = strchr(p + strlen(k), '"');
    return p ? atoi(p + 1) : -1;
}

/* FL_PEER_CPUTIME=1: CPU time of the whole process (all its threads) instead of wall time, for
 * comparisons on a loaded machine (with OMP_NUM_THREADS=1 that is the one computing thread). */
static double now_us(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("FL_PEER_CPUTIME") && atoi(getenv("FL_PEER_CPUTIME")) == 1;
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static dnnl_memory_t mem_tag(dnnl_engine_t eng, int nd, const dnnl_dims_t dims, dnnl_format_tag_t tag,
                             dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32, tag));
    CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
    return m;
}

/* Reorder user memory into the layout the primitive chose. */
static dnnl_memory_t to_prim(dnnl_engine_t eng, dnnl_stream_t st, dnnl_memory_t user,
                             const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *want) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, want, eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t r;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, user_md, eng, want, eng, NULL));
    CHECK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, m}};
    CHECK(dnnl_primitive_execute(r, st, 2, args));
    CHECK(dnnl_stream_wait(st));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    return m;
}

/* One layer: a primitive and its arguments. */
typedef struct layer {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[10];
    int nargs;
    dnnl_memory_t dst;
} layer;

/* Layer l of the model, direction count dirs, reading src (T, N, in) in tnc. */
static void make_layer(dnnl_engine_t eng, dnnl_stream_t st, int l, int dirs, int T, int N, int in, int H,
                       dnnl_memory_t src, const dnnl_memory_desc_t *src_md, layer *ly) {
    dnnl_memory_desc_t hi_md, ci_md, wl_md, wi_md, b_md, dst_md, ho_md, co_md, any_wl, any_wi;
    dnnl_dims_t it_d = {1, dirs, N, H}, wl_d = {1, dirs, in, 4, H}, wi_d = {1, dirs, H, 4, H}, b_d = {1, dirs, 4, H},
                dst_d = {T, N, dirs * H};
    dnnl_memory_t hi = mem_tag(eng, 4, it_d, dnnl_ldnc, &hi_md), ci = mem_tag(eng, 4, it_d, dnnl_ldnc, &ci_md);
    dnnl_memory_t ho = mem_tag(eng, 4, it_d, dnnl_ldnc, &ho_md), co = mem_tag(eng, 4, it_d, dnnl_ldnc, &co_md);
    ly->dst = mem_tag(eng, 3, dst_d, dnnl_tnc, &dst_md);
    dnnl_memory_t wl_u = mem_tag(eng, 5, wl_d, dnnl_ldigo, &wl_md), wi_u = mem_tag(eng, 5, wi_d, dnnl_ldigo, &wi_md);
    dnnl_memory_t bias = mem_tag(eng, 4, b_d, dnnl_ldgo, &b_md);
    CHECK(dnnl_memory_desc_init_by_tag(&any_wl, 5, wl_d, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&any_wi, 5, wi_d, dnnl_f32, dnnl_format_tag_any));
    // PyTorch weight_ih (4H, in) rows g*H + o -> ldigo [0][d][i][g][o]; bias = b_ih + b_hh.
    float *wl, *wi, *bb;
    CHECK(dnnl_memory_get_data_handle(wl_u, (void **)&wl));
    CHECK(dnnl_memory_get_data_handle(wi_u, (void **)&wi));
    CHECK(dnnl_memory_get_data_handle(bias, (void **)&bb));
    for (int d = 0; d < dirs; d++) {
        char n[64];
        const char *sfx = d ? "_reverse" : "";
        snprintf(n, sizeof n, "lstm.weight_ih_l%d%s", l, sfx);
        const float *Wih = tensor(n, (size_t)4 * H * in);
        snprintf(n, sizeof n, "lstm.weight_hh_l%d%s", l, sfx);
        const float *Whh = tensor(n, (size_t)4 * H * H);
        snprintf(n, sizeof n, "lstm.bias_ih_l%d%s", l, sfx);
        const float *bih = tensor(n, (size_t)4 * H);
        snprintf(n, sizeof n, "lstm.bias_hh_l%d%s", l, sfx);
        const float *bhh = tensor(n, (size_t)4 * H);
        for (int g = 0; g < 4; g++)
            for (int o = 0; o < H; o++) {
                for (int i = 0; i < in; i++) wl[(((size_t)d * in + i) * 4 + g) * H + o] = Wih[((size_t)g * H + o) * in + i];
                for (int i = 0; i < H; i++) wi[(((size_t)d * H + i) * 4 + g) * H + o] = Whh[((size_t)g * H + o) * H + i];
                bb[((size_t)d * 4 + g) * H + o] = bih[g * H + o] + bhh[g * H + o];
            }
    }
    dnnl_rnn_desc_t desc;
    CHECK(dnnl_lstm_forward_desc_init(&desc, dnnl_forward_inference,
                                      dirs == 2 ? dnnl_bidirectional_concat : dnnl_unidirectional_left2right, src_md,
                                      &hi_md, &ci_md, &any_wl, &any_wi, &b_md, &dst_md, &ho_md, &co_md, 0));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    dnnl_memory_t wl_p = to_prim(eng, st, wl_u, &wl_md, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    dnnl_memory_t wi_p = to_prim(eng, st, wi_u, &wi_md, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1));
    const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    dnnl_memory_t sp = NULL;
    if (sp_md && dnnl_memory_desc_get_size(sp_md) > 0) CHECK(dnnl_memory_create(&sp, sp_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_primitive_create(&ly->prim, pd));
    dnnl_exec_arg_t args[10] = {
        {DNNL_ARG_SRC_LAYER, src}, {DNNL_ARG_SRC_ITER, hi},     {DNNL_ARG_SRC_ITER_C, ci},
        {DNNL_ARG_WEIGHTS_LAYER, wl_p}, {DNNL_ARG_WEIGHTS_ITER, wi_p}, {DNNL_ARG_BIAS, bias},
        {DNNL_ARG_DST_LAYER, ly->dst}, {DNNL_ARG_DST_ITER, ho},     {DNNL_ARG_DST_ITER_C, co},
        {DNNL_ARG_SCRATCHPAD, sp}};
    memcpy(ly->args, args, sizeof args);
    ly->nargs = sp ? 10 : 9;
}

static void run_all(dnnl_stream_t st, layer *ly, int L) {
    for (int l = 0; l < L; l++) CHECK(dnnl_primitive_execute(ly[l].prim, st, ly[l].nargs, ly[l].args));
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: onednn_lstm MODEL BATCH SEQ ROUNDS\n");
        return 2;
    }
    const int N = atoi(argv[2]), T = atoi(argv[3]), rounds = atoi(argv[4]);
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        printf("unavailable: cannot open %s\n", argv[1]);
        return 0;
    }
    uint64_t hl;
    if (fread(&hl, 8, 1, f) != 1 || hl > (1u << 24)) {
        printf("unavailable: bad safetensors header\n");
        return 0;
    }
    header = calloc(hl + 1, 1);
    fseek(f, 0, SEEK_END);
    long fsz = ftell(f);
    data = malloc((size_t)fsz);
    fseek(f, 8, SEEK_SET);
    if (fread(header, 1, hl, f) != hl || fread(data, 1, (size_t)fsz - 8 - hl, f) != (size_t)fsz - 8 - hl) {
        printf("unavailable: short read of %s\n", argv[1]);
        return 0;
    }
    fclose(f);
    const int D = meta_int("input"), H = meta_int("hidden"), L = meta_int("layers");
    const int dirs = meta_int("bidirectional") == 1 ? 2 : 1;
    if (D <= 0 || H <= 0 || L <= 0 || L > 64 || meta_int("proj") > 0) {
        printf("unavailable: oneDNN harness needs a dense LSTM without projection (input %d hidden %d)\n", D, H);
        return 0;
    }
    dnnl_engine_t eng;
    dnnl_stream_t st;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t src_md;
    dnnl_dims_t src_d = {T, N, D};
    dnnl_memory_t src = mem_tag(eng, 3, src_d, dnnl_tnc, &src_md);
    float *x;
    CHECK(dnnl_memory_get_data_handle(src, (void **)&x));
    srand(1);
    for (size_t i = 0; i < (size_t)T * N * D; i++) x[i] = (float)rand() / RAND_MAX * 2 - 1;
    layer ly[64];
    for (int l = 0; l < L; l++) {
        dnnl_memory_desc_t in_md;
        dnnl_dims_t in_d = {T, N, l == 0 ? D : dirs * H};
        CHECK(dnnl_memory_desc_init_by_tag(&in_md, 3, in_d, dnnl_f32, dnnl_tnc));
        make_layer(eng, st, l, dirs, T, N, l == 0 ? D : dirs * H, H, l == 0 ? src : ly[l - 1].dst, &in_md, &ly[l]);
    }

    // Calibrate repetitions per round to about 0.2 s (at least 1).
    double t0 = now_us();
    for (int i = 0; i < 2; i++) run_all(st, ly, L);
    CHECK(dnnl_stream_wait(st));
    double one = (now_us() - t0) / 2;
    const char *block_env = getenv("FL_PEER_BLOCK_MS");
    const double block_us = block_env && atof(block_env) > 0 ? atof(block_env) * 1e3 : 200000.0;
    int reps = (int)(block_us / (one > 1 ? one : 1));
    if (rounds <= 2 && !block_env) reps /= 10;
    if (reps < 1) reps = 1;
    double v[64];
    int R = rounds < 1 ? 1 : rounds > 64 ? 64 : rounds;
    if (block_env && reps == 1) {
        const int fit = (int)(R * block_us / (one > 1 ? one : 1) + 0.5);
        R = fit < 1 ? 1 : fit < R ? fit : R;
    }
    for (int r = 0; r < R; r++) {
        t0 = now_us();
        for (int i = 0; i < reps; i++) run_all(st, ly, L);
        CHECK(dnnl_stream_wait(st));
        v[r] = (now_us() - t0) / reps / T;
    }
    qsort(v, (size_t)R, sizeof *v, cmp_d);
    printf("us_per_step %.3f %.3f %.3f\n", v[R / 2], v[0], v[R - 1]);
    return 0;
}
