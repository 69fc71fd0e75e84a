/* fastlstm profile: measure (or show the saved) machine profile the planner uses. */
#include "cli.h"
#include "fastlstm/plan.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_bytes(FILE *f, size_t b) {
    if (b >= (1u << 20) && b % (1u << 20) == 0) fprintf(f, "%zu MiB", b >> 20);
    else if (b >= (1u << 20)) fprintf(f, "%.1f MiB", b / 1048576.0);
    else if (b >= 1024) fprintf(f, "%.4g KiB", b / 1024.0);
    else fprintf(f, "%zu B", b);
}

/* A low-rank table of the profile (seconds, [rank][rows]) as key: rows of ns under lr. */
static void add_lr_table(cJSON *lr, const char *key, const double (*t)[FL_PROFILE_LR_ROWS]) {
    cJSON *a = cJSON_AddArrayToObject(lr, key);
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++) {
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) cJSON_AddItemToArray(row, cJSON_CreateNumber(t[j][k] * 1e9));
        cJSON_AddItemToArray(a, row);
    }
}

cJSON *cli_profile_json(const fl_profile *p) {
    cJSON *o = cJSON_CreateObject(), *levels = cJSON_AddArrayToObject(o, "caches");
    cJSON_AddNumberToObject(o, "cores", p->cores);
    cJSON_AddNumberToObject(o, "simd_bits", p->simd_bits);
    cJSON *id = cJSON_AddObjectToObject(o, "machine");
    cJSON_AddStringToObject(id, "vendor", p->id.vendor);
    cJSON_AddNumberToObject(id, "family", p->id.family);
    cJSON_AddNumberToObject(id, "model", p->id.model);
    cJSON_AddNumberToObject(id, "stepping", p->id.stepping);
    cJSON_AddStringToObject(id, "kernels", p->id.kernels);
    cJSON_AddNumberToObject(id, "llc_bytes", (double)p->id.llc_bytes);
    cJSON_AddStringToObject(o, "cache_source", p->cache_source);
    for (int i = 0; i < p->n_levels; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "level", p->level[i].level);
        cJSON_AddNumberToObject(l, "bytes", (double)p->level[i].bytes);
        cJSON_AddNumberToObject(l, "shared_cpus", p->level[i].shared_cpus);
        cJSON_AddNumberToObject(l, "bandwidth_gbs", p->level[i].bandwidth / 1e9);
        cJSON_AddNumberToObject(l, "reported_bytes", (double)p->level[i].reported_bytes);
        cJSON_AddNumberToObject(l, "all_cores_bytes", (double)p->level[i].all_cores_bytes);
        cJSON_AddItemToArray(levels, l);
    }
    if (p->speed_samples > 0) {
        cJSON *sp = cJSON_AddObjectToObject(o, "speed");
        cJSON_AddNumberToObject(sp, "fastest_us", p->speed_fastest * 1e6);
        cJSON_AddNumberToObject(sp, "median_us", p->speed_median * 1e6);
        cJSON_AddNumberToObject(sp, "p90_us", p->speed_p90 * 1e6);
        cJSON_AddNumberToObject(sp, "slow_share", p->speed_slow);
        cJSON_AddNumberToObject(sp, "samples", p->speed_samples);
    }
    cJSON_AddNumberToObject(o, "dram_bandwidth_gbs", p->dram_bandwidth / 1e9);
    cJSON_AddNumberToObject(o, "gemm_gflops", p->gemm_flops / 1e9);
    cJSON_AddNumberToObject(o, "gemv_gflops", p->gemv_flops / 1e9);
    cJSON *recr = cJSON_AddArrayToObject(o, "rec_rows_gflops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        cJSON_AddItemToArray(recr, cJSON_CreateNumber(p->rec_rows_flops[k] / 1e9));
    cJSON *rows = cJSON_AddArrayToObject(o, "gemm_rows_gflops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        cJSON_AddItemToArray(rows, cJSON_CreateNumber(p->gemm_rows_flops[k] / 1e9));
    cJSON_AddNumberToObject(o, "step_overhead_us", p->step_overhead * 1e6);
    cJSON_AddNumberToObject(o, "svd_recurrent_efficiency", p->rec_efficiency[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(o, "svd_gemm_efficiency", p->gemm_efficiency[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(o, "cp_recurrent_efficiency", p->rec_efficiency[FL_METHOD_CP]);
    cJSON_AddNumberToObject(o, "cp_gemm_efficiency", p->gemm_efficiency[FL_METHOD_CP]);
    if (p->rec_efficiency_lo[FL_METHOD_SVD] > 0 || p->rec_efficiency_lo[FL_METHOD_CP] > 0) {
        cJSON_AddNumberToObject(o, "svd_recurrent_efficiency_h16", p->rec_efficiency_lo[FL_METHOD_SVD]);
        cJSON_AddNumberToObject(o, "svd_gemm_efficiency_h16", p->gemm_efficiency_lo[FL_METHOD_SVD]);
        cJSON_AddNumberToObject(o, "cp_recurrent_efficiency_h16", p->rec_efficiency_lo[FL_METHOD_CP]);
        cJSON_AddNumberToObject(o, "cp_gemm_efficiency_h16", p->gemm_efficiency_lo[FL_METHOD_CP]);
    }
    if (p->lr_proj_seconds[0][0] > 0) { /* [rank 16 << j][rows 1, 4, 16, 64, 256] */
        cJSON *lr = cJSON_AddObjectToObject(o, "lowrank_ns");
        add_lr_table(lr, "proj_per_input_row", p->lr_proj_seconds);
        add_lr_table(lr, "svd_panel_per_unit_row", p->lr_panel_seconds[FL_METHOD_SVD]);
        add_lr_table(lr, "cp_panel_per_unit_row", p->lr_panel_seconds[FL_METHOD_CP]);
        cJSON_AddNumberToObject(lr, "gx_copy_per_byte", p->gx_copy_seconds * 1e9);
        if (p->lr_proj_far_seconds[0][0] > 0) { /* format 5: the same kernels, weights beyond the private level */
            add_lr_table(lr, "proj_far_per_input_row", p->lr_proj_far_seconds);
            add_lr_table(lr, "svd_panel_far_per_unit_row", p->lr_panel_far_seconds[FL_METHOD_SVD]);
            add_lr_table(lr, "cp_panel_far_per_unit_row", p->lr_panel_far_seconds[FL_METHOD_CP]);
        }
        if (p->lr_ih_in_seconds[0][0] > 0) { /* format 4: the input projection's stages, per 64-column panel */
            add_lr_table(lr, "ih_in_per_input_row_panel", p->lr_ih_in_seconds);
            add_lr_table(lr, "ih_svd_out_per_row_panel", p->lr_ih_out_seconds[FL_METHOD_SVD]);
            add_lr_table(lr, "ih_cp_out_per_row_panel", p->lr_ih_out_seconds[FL_METHOD_CP]);
        }
        if (p->lr_ih_walk_bytes[0] > 0) { /* format 5: stage 2's output walks */
            cJSON *wk = cJSON_AddArrayToObject(lr, "ih_walk_per_row_panel");
            for (int i = 0; i < FL_PROFILE_IH_WALKS; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "bytes", p->lr_ih_walk_bytes[i]);
                cJSON_AddNumberToObject(e, "ns", p->lr_ih_walk_seconds[i] * 1e9);
                cJSON_AddItemToArray(wk, e);
            }
        }
    }
    cJSON_AddNumberToObject(o, "cell_ns", p->cell_seconds * 1e9);
    cJSON_AddNumberToObject(o, "cell_b1_ns", p->cell_seconds_b1 * 1e9);
    cJSON_AddNumberToObject(o, "bias_ns", p->bias_seconds * 1e9);
    cJSON_AddNumberToObject(o, "bias_cached_ns", p->bias_seconds_cached * 1e9);
    cJSON_AddNumberToObject(o, "rec_memory_factor", p->rec_memory_factor);
    cJSON *tsr = cJSON_AddArrayToObject(o, "thread_scale_rec"), *tsp = cJSON_AddArrayToObject(o, "thread_scale_proj");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        cJSON_AddItemToArray(tsr, cJSON_CreateNumber(p->thread_scale_rec[k]));
        cJSON_AddItemToArray(tsp, cJSON_CreateNumber(p->thread_scale_proj[k]));
    }
    cJSON *tpm = cJSON_AddArrayToObject(o, "thread_scale_proj_memory");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(tpm, cJSON_CreateNumber(p->thread_scale_proj_mem[k]));
    cJSON *tpk = cJSON_AddArrayToObject(o, "thread_scale_pk");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(tpk, cJSON_CreateNumber(p->thread_scale_pk[k]));
    cJSON *cgx = cJSON_AddArrayToObject(o, "cold_gx_ns_per_byte"); /* dense, svd, cp at rank H/16, H/4 */
    for (int m = 0; m < 3; m++)
        for (int i = 0; i < 2; i++) cJSON_AddItemToArray(cgx, cJSON_CreateNumber(p->cold_gx_seconds[m][i] * 1e9));
    cJSON *act = cJSON_AddObjectToObject(o, "activations"); /* zeros: not measured (cost_act.c) */
    cJSON *actb = cJSON_AddArrayToObject(act, "bytes"), *acts = cJSON_AddArrayToObject(act, "ps_per_byte");
    for (int k = 0; k < FL_PROFILE_ACT_POINTS; k++) {
        cJSON_AddItemToArray(actb, cJSON_CreateNumber(p->act_bytes[k]));
        cJSON_AddItemToArray(acts, cJSON_CreateNumber(p->act_seconds[k] * 1e12));
    }
    cJSON *far = cJSON_AddObjectToObject(o, "recurrent_far"); /* zeros: not measured */
    cJSON_AddNumberToObject(far, "bytes", p->rec_far_bytes);
    cJSON *farr = cJSON_AddArrayToObject(far, "rows_gflops"), *fars = cJSON_AddArrayToObject(far, "thread_scale");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        cJSON_AddItemToArray(farr, cJSON_CreateNumber(p->rec_rows_flops_far[k] / 1e9));
        cJSON_AddItemToArray(fars, cJSON_CreateNumber(p->thread_scale_rec_far[k]));
    }
    cJSON *rr = cJSON_AddArrayToObject(o, "run_reread"); /* after 1/4 .. 4 last levels of traffic; zeros: not measured */
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) cJSON_AddItemToArray(rr, cJSON_CreateNumber(p->run_reread[k]));
    cJSON *quant = cJSON_AddObjectToObject(o, "quant_gflops"); /* zeros: not measured (f32 rates used) */
    for (int q = FL_PRECISION_BF16; q <= FL_PRECISION_INT8; q++) {
        cJSON *e = cJSON_AddObjectToObject(quant, fl_precision_name((fl_precision)q));
        cJSON *a = cJSON_AddArrayToObject(e, "recurrent_rows");
        for (int k = 0; k <= FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(p->qrec_flops[q][k] / 1e9));
        a = cJSON_AddArrayToObject(e, "gemm_rows");
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(p->qgemm_flops[q][k] / 1e9));
    }
    cJSON *curve = cJSON_AddArrayToObject(o, "curve");
    for (int k = 0; k < p->n_curve; k++) {
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "bytes", (double)p->curve_bytes[k]);
        cJSON_AddNumberToObject(pt, "bandwidth_gbs", p->curve_bandwidth[k] / 1e9);
        cJSON_AddItemToArray(curve, pt);
    }
    cJSON *all = cJSON_AddArrayToObject(o, "curve_all");
    for (int k = 0; k < p->n_curve_all; k++) {
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "bytes", (double)p->curve_all_bytes[k]);
        cJSON_AddNumberToObject(pt, "bandwidth_gbs", p->curve_all_bandwidth[k] / 1e9);
        cJSON_AddItemToArray(all, pt);
    }
    cJSON_AddNumberToObject(o, "curve_all_threads", p->curve_all_threads);
    cJSON_AddBoolToObject(o, "measured", p->measured != 0);
    return o;
}

/* The machine's speed while the profile was measured (with detail), and a note when it ran at two
 * speeds: every figure, and every prediction, is then typical of that mix (fl_profile.speed_*). */
static void print_speed(FILE *f, const fl_profile *p, bool detail) {
    if (p->speed_samples < 1 || !(p->speed_fastest > 0)) return;
    const double spread = p->speed_p90 / p->speed_fastest;
    if (detail)
        fprintf(f, "  speed while measuring: a fixed product in L2 took %.1f us at the fastest, %.1f median, %.1f at "
                   "the 90th percentile; %.0f%% of %d samples %.2fx the fastest or slower\n",
                p->speed_fastest * 1e6, p->speed_median * 1e6, p->speed_p90 * 1e6, 100 * p->speed_slow,
                p->speed_samples, FL_PROFILE_SPEED_SLOW);
    if (p->speed_slow >= 0.1 && spread >= FL_PROFILE_SPEED_SLOW)
        fprintf(f, "  note: the machine ran at two speeds while it was profiled (%.0f%% of the speed samples %.2fx the\n"
                   "  fastest or slower: other tenants of the host, most likely). The figures, and the times predicted\n"
                   "  from them, are typical of that mix; at another moment a time may read up to %.2fx off. For\n"
                   "  steadier figures, run `fastlstm profile --refresh` at a quieter time.\n",
                100 * p->speed_slow, FL_PROFILE_SPEED_SLOW, spread);
}

void cli_profile_print(FILE *f, const fl_profile *p, bool detail) {
    fprintf(f, "machine: %d logical CPUs, %d-bit SIMD, %s rates\n", p->cores, p->simd_bits,
            p->measured ? "measured" : "given/default");
    print_speed(f, p, detail);
    if (p->id.vendor[0])
        fprintf(f, "  CPU %s family %d model %d stepping %d, %s kernels\n", p->id.vendor, p->id.family,
                p->id.model, p->id.stepping, p->id.kernels);
    const bool measured_caches = p->n_curve > 0 && p->measured;
    for (int i = 0; i < p->n_levels; i++) {
        const fl_cache_level *l = &p->level[i];
        fprintf(f, "  L%d cache  ", l->level);
        print_bytes(f, l->bytes);
        if (l->shared_cpus > 1) fprintf(f, " shared by %d CPUs", l->shared_cpus);
        else fprintf(f, " per core");
        fprintf(f, ", mat-vec stream %.1f GB/s", l->bandwidth / 1e9);
        if (measured_caches && l->reported_bytes == 0) {
            fprintf(f, " (measured; nothing reported)");
        } else if (measured_caches) {
            /* disagreeing: more than one ladder step (2^(1/4)) apart */
            const double r = (double)l->bytes / (double)l->reported_bytes;
            fprintf(f, " (measured; reported ");
            print_bytes(f, l->reported_bytes);
            /* the private level's report, where the planner counts it (fl_profile_private_bytes) */
            const bool rep_used =
                l->reported_bytes > l->bytes && fl_profile_private_bytes(p) == (double)l->reported_bytes;
            fprintf(f, "%s)", !(r < 0.84 || r > 1.19) ? ""
                              : rep_used ? ", which disagrees: the measurement prices the dense step, the reported size "
                                           "where a low-rank step's weights stop being a core's own"
                                         : ", which disagrees: the measurement is used");
        }
        if (l->all_cores_bytes > 0) {
            fprintf(f, "; all cores together ");
            print_bytes(f, l->all_cores_bytes);
        }
        fputc('\n', f);
    }
    if (measured_caches && p->cache_source[0])
        fprintf(f, "  (capacities measured: the knee of the streaming curve; reported sizes from %s)\n",
                p->cache_source);
    fprintf(f, "  DRAM      mat-vec stream %.1f GB/s\n", p->dram_bandwidth / 1e9);
    fprintf(f, "  sgemm %.1f GFLOP/s, mat-vec (in L1) %.1f GFLOP/s, overhead %.2f us per layer-step\n",
            p->gemm_flops / 1e9, p->gemv_flops / 1e9, p->step_overhead * 1e6);
    if (p->gemm_rows_flops[0] > 0)
        fprintf(f, "  input-projection GEMM at 4/16/64/256 rows: %.1f / %.1f / %.1f / %.1f GFLOP/s\n",
                p->gemm_rows_flops[0] / 1e9, p->gemm_rows_flops[1] / 1e9, p->gemm_rows_flops[2] / 1e9,
                p->gemm_rows_flops[3] / 1e9);
    if (p->rec_rows_flops[0] > 0)
        fprintf(f, "  recurrent step at batch 4/16/64/256: %.1f / %.1f / %.1f / %.1f GFLOP/s\n",
                p->rec_rows_flops[0] / 1e9, p->rec_rows_flops[1] / 1e9, p->rec_rows_flops[2] / 1e9,
                p->rec_rows_flops[3] / 1e9);
    const bool lo = p->rec_efficiency_lo[FL_METHOD_SVD] > 0 || p->rec_efficiency_lo[FL_METHOD_CP] > 0;
    if (p->rec_efficiency[FL_METHOD_SVD] > 0)
        fprintf(f, "  kernel speed vs dense%s: svd %.2f (step) %.2f (gemm), cp %.2f (step) %.2f (gemm)\n",
                lo ? " at rank H/4" : "", p->rec_efficiency[FL_METHOD_SVD], p->gemm_efficiency[FL_METHOD_SVD],
                p->rec_efficiency[FL_METHOD_CP], p->gemm_efficiency[FL_METHOD_CP]);
    if (lo)
        fprintf(f, "  kernel speed vs dense at rank H/16: svd %.2f (step) %.2f (gemm), cp %.2f (step) %.2f (gemm)\n",
                p->rec_efficiency_lo[FL_METHOD_SVD], p->gemm_efficiency_lo[FL_METHOD_SVD],
                p->rec_efficiency_lo[FL_METHOD_CP], p->gemm_efficiency_lo[FL_METHOD_CP]);
    if (p->rec_rows_efficiency[FL_METHOD_SVD][0] > 0) {
        const double *a = p->rec_rows_efficiency[FL_METHOD_SVD], *b = p->rec_rows_efficiency[FL_METHOD_CP];
        fprintf(f, "  step speed vs dense at batch 4/16/64/256: svd %.2f/%.2f/%.2f/%.2f, cp %.2f/%.2f/%.2f/%.2f\n",
                a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]);
    }
    if (p->lr_proj_seconds[0][0] > 0) { /* format 3: the SVD / CP step priced by its parts (cost_lowrank.c) */
        const double *pj = p->lr_proj_seconds[2], *sv = p->lr_panel_seconds[FL_METHOD_SVD][2],
                     *cp = p->lr_panel_seconds[FL_METHOD_CP][2];
        fprintf(f,
                "  low-rank step parts at rank 64, batch 1/16/256: proj %.2f/%.2f/%.2f ns per input and row, "
                "gate panel with its cell svd %.2f/%.2f/%.2f cp %.2f/%.2f/%.2f ns per unit and row; gx copy %.1f GB/s\n",
                pj[0] * 1e9, pj[2] * 1e9, pj[4] * 1e9, sv[0] * 1e9, sv[2] * 1e9, sv[4] * 1e9, cp[0] * 1e9, cp[2] * 1e9,
                cp[4] * 1e9, p->gx_copy_seconds > 0 ? 1e-9 / p->gx_copy_seconds : 0.0);
    }
    if (p->lr_proj_far_seconds[0][0] > 0) { /* format 5: the step's weights beyond the private level */
        const double *pj = p->lr_proj_far_seconds[2], *sv = p->lr_panel_far_seconds[FL_METHOD_SVD][2],
                     *cp = p->lr_panel_far_seconds[FL_METHOD_CP][2];
        fprintf(f,
                "  the same with the weights beyond the private cache, batch 1/16: proj %.2f/%.2f, svd %.2f/%.2f, "
                "cp %.2f/%.2f ns\n",
                pj[0] * 1e9, pj[2] * 1e9, sv[0] * 1e9, sv[2] * 1e9, cp[0] * 1e9, cp[2] * 1e9);
    }
    if (p->lr_ih_in_seconds[0][0] > 0) { /* format 4: an SVD / CP W_ih priced by its stages (cost_lowrank_ih.c) */
        const double *in = p->lr_ih_in_seconds[2], *sv = p->lr_ih_out_seconds[FL_METHOD_SVD][2],
                     *cp = p->lr_ih_out_seconds[FL_METHOD_CP][2];
        fprintf(f,
                "  low-rank input projection at rank 64, rows 1/16/256: stage 1 %.2f/%.2f/%.2f ns per input, row and "
                "64-column panel; stage 2 svd %.1f/%.1f/%.1f cp %.1f/%.1f/%.1f ns per row and panel\n",
                in[0] * 1e9, in[2] * 1e9, in[4] * 1e9, sv[0] * 1e9, sv[2] * 1e9, sv[4] * 1e9, cp[0] * 1e9, cp[2] * 1e9,
                cp[4] * 1e9);
    }
    if (p->lr_ih_walk_bytes[0] > 0) { /* format 5: stage 2's writes beyond what the last level keeps */
        const double *b = p->lr_ih_walk_bytes, *s = p->lr_ih_walk_seconds;
        fprintf(f, "  input projection stage 2 (rank 64) with its output walking %.0f/%.0f/%.0f MB: %.1f/%.1f/%.1f ns "
                   "per row and panel\n", b[0] / 1e6, b[1] / 1e6, b[2] / 1e6, s[0] * 1e9, s[1] * 1e9, s[2] * 1e9);
    }
    if (p->cell_seconds > 0 || p->bias_seconds > 0)
        fprintf(f,
                "  cell update %.2f ns per unit and row (batch 1: %.2f), bias pass %.2f ns per element "
                "(%.2f in cache)\n",
                p->cell_seconds * 1e9, p->cell_seconds_b1 * 1e9, p->bias_seconds * 1e9, p->bias_seconds_cached * 1e9);
    for (int q = FL_PRECISION_BF16; q <= FL_PRECISION_INT8; q++) {
        const double *r = p->qrec_flops[q], *g = p->qgemm_flops[q];
        if (r[0] > 0)
            fprintf(f, "  %s weights: step at batch 1/4/16/64/256 %.1f / %.1f / %.1f / %.1f / %.1f GFLOP/s, "
                       "projection at 4/16/64/256 rows %.1f / %.1f / %.1f / %.1f GFLOP/s\n",
                    fl_precision_name((fl_precision)q), r[0] / 1e9, r[1] / 1e9, r[2] / 1e9, r[3] / 1e9, r[4] / 1e9,
                    g[0] / 1e9, g[1] / 1e9, g[2] / 1e9, g[3] / 1e9);
        else
            fprintf(f, "  %s weights: rates not measured (an older profile): the f32 rates are used, with %d "
                       "bytes per weight (--refresh to measure)\n",
                    fl_precision_name((fl_precision)q), q == FL_PRECISION_INT8 ? 1 : 2);
    }
    if (p->thread_scale_rec[0] > 0)
        fprintf(f, "  speed-up on %d threads: step at batch 4/16/64/256 %.2f / %.2f / %.2f / %.2f, projection at "
                   "4/16/64/256 rows %.2f / %.2f / %.2f / %.2f\n", p->curve_all_threads,
                p->thread_scale_rec[0], p->thread_scale_rec[1], p->thread_scale_rec[2], p->thread_scale_rec[3],
                p->thread_scale_proj[0], p->thread_scale_proj[1], p->thread_scale_proj[2], p->thread_scale_proj[3]);
    if (p->thread_scale_proj_mem[0] > 0)
        fprintf(f, "  speed-up of the projection on a W_ih in memory at 4/16/64/256 rows %.2f / %.2f / %.2f / %.2f\n",
                p->thread_scale_proj_mem[0], p->thread_scale_proj_mem[1], p->thread_scale_proj_mem[2],
                p->thread_scale_proj_mem[3]);
    if (p->thread_scale_pk[0] > 0)
        fprintf(f, "  speed-up of a split packed product (K 64) at 2/8/32/128 Mi multiply-adds %.2f / %.2f / %.2f / %.2f\n",
                p->thread_scale_pk[0], p->thread_scale_pk[1], p->thread_scale_pk[2], p->thread_scale_pk[3]);
    if (p->rec_memory_factor > 0)
        fprintf(f, "  recurrent step on a W_hh in memory runs at %.2f of its in-cache rate (batch 16)\n",
                p->rec_memory_factor);
    const double(*cg)[2] = p->cold_gx_seconds;
    if (cg[0][0] + cg[1][0] + cg[1][1] + cg[2][0] + cg[2][1] > 0)
        fprintf(f, "  step reading its input projections from memory: +%.2f ns per byte dense, svd %.2f / %.2f, "
                   "cp %.2f / %.2f (rank H/16 / H/4)\n",
                cg[0][0] * 1e9, cg[1][0] * 1e9, cg[1][1] * 1e9, cg[2][0] * 1e9, cg[2][1] * 1e9);
    if (p->act_bytes[0] > 0) {
        fprintf(f, "  a session's activations (gx, outputs, input and output copies) with the run's buffers at");
        for (int k = 1; k < FL_PROFILE_ACT_POINTS; k++) fprintf(f, "%s%.0f", k > 1 ? " / " : " ", p->act_bytes[k] / 1e6);
        fprintf(f, " MB: +");
        for (int k = 1; k < FL_PROFILE_ACT_POINTS; k++) fprintf(f, "%s%.0f", k > 1 ? " / " : "", p->act_seconds[k] * 1e12);
        fprintf(f, " ps per byte of a step's traffic (over %.1f MB)\n", p->act_bytes[0] / 1e6);
    }
    if (p->rec_far_bytes > 0)
        fprintf(f, "  dense step with W_hh beyond the private level (%.1f MB) at 4/16/64/256 rows: %.1f / %.1f / %.1f / %.1f "
                   "GFLOP/s, two-thread speed-up %.2f / %.2f / %.2f / %.2f\n", p->rec_far_bytes / 1e6,
                p->rec_rows_flops_far[0] / 1e9, p->rec_rows_flops_far[1] / 1e9, p->rec_rows_flops_far[2] / 1e9,
                p->rec_rows_flops_far[3] / 1e9, p->thread_scale_rec_far[0], p->thread_scale_rec_far[1],
                p->thread_scale_rec_far[2], p->thread_scale_rec_far[3]);
    const double *rr = p->run_reread;
    if (rr[0] + rr[1] + rr[2] + rr[3] + rr[4] > 0)
        fprintf(f, "  a matrix read once per run, found in memory after 1/4 / 1/2 / 1 / 2 / 4 last levels of other "
                   "traffic: %.2f / %.2f / %.2f / %.2f / %.2f\n", rr[0], rr[1], rr[2], rr[3], rr[4]);
    if (detail && p->n_curve > 0) {
        fprintf(f, "  streaming rate by working set (GB/s, 1 thread%s):\n",
                p->n_curve_all == p->n_curve ? " / all cores together" : "");
        for (int k = 0; k < p->n_curve; k++) {
            fprintf(f, "%s%8.3g MB %5.1f", k % 4 ? "  " : "   ", p->curve_bytes[k] / 1e6, p->curve_bandwidth[k] / 1e9);
            if (p->n_curve_all == p->n_curve) fprintf(f, " / %5.1f", p->curve_all_bandwidth[k] / 1e9);
            if (k % 4 == 3 || k + 1 == p->n_curve) fputc('\n', f);
        }
    }
    if (detail)
        fprintf(f, "  machine balance: %.2f flop/byte from DRAM, %.2f from the last cache level; a batch-1\n"
                   "  float32 mat-vec does 0.5 flop/byte, so it is bandwidth-bound below those\n",
                p->gemm_flops / p->dram_bandwidth,
                p->gemm_flops / (p->level[p->n_levels - 1].bandwidth > 0 ? p->level[p->n_levels - 1].bandwidth : 1));
}

int cli_profile_get(const char *cmd, const char *path, bool refresh, bool quiet, fl_profile *out) {
    char def[4096];
    fl_status st;
    const bool given = path != NULL;
    if (!path) {
        if ((st = fl_profile_default_path(def, sizeof def))) return cli_fail_status(cmd, st);
        path = def;
    }
    fl_machine_id here;
    fl_machine_id_detect(&here);
    if (!refresh && (st = fl_profile_load(path, out)) == FL_OK) {
        /* Only a profile of this machine type is used; another one is refused, not reused silently.
         * A default-path profile with no identity (an older fastlstm's) is measured again. */
        if ((st = fl_profile_check_machine(out, &here)) == FL_OK) return CLI_OK;
        if (given || out->id.vendor[0])
            return cli_fail(cmd, CLI_ERR, "%s: %s%s%s%s", path, fl_last_error(), given ? " (here: fastlstm profile --refresh --profile " : "",
                            given ? path : "", given ? ")" : "");
        if (!quiet) fprintf(stderr, "fastlstm %s: ignoring the saved profile: %s\n", cmd, fl_last_error());
        refresh = true;
    }
    if (!refresh && access(path, F_OK) == 0) {
        /* A file that exists but does not load: the user's own file is an error (it would be
         * overwritten otherwise); the default cache is measured again, with a note. */
        if (given)
            return cli_fail(cmd, CLI_ERR, "%s: %s (fastlstm profile --refresh --profile %s measures this machine again)",
                            fl_status_str(st), fl_last_error(), path);
        if (!quiet) fprintf(stderr, "fastlstm %s: ignoring the saved profile: %s\n", cmd, fl_last_error());
    }
    if (!quiet) fprintf(stderr, "fastlstm %s: measuring the machine profile (about half a minute)...\n", cmd);
    if ((st = fl_profile_measure(out))) return cli_fail_status(cmd, st);
    if ((st = fl_profile_save(out, path)) && !quiet)
        fprintf(stderr, "fastlstm %s: warning: could not save the profile: %s\n", cmd, fl_last_error());
    else if (!quiet) fprintf(stderr, "fastlstm %s: profile saved to %s\n", cmd, path);
    return CLI_OK;
}

int cmd_profile(int argc, char **argv) {
    const char *cmd = "profile", *path = NULL;
    bool json = false, refresh = false;
    for (int i = 1; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: fastlstm profile [--json] [--refresh] [--profile PATH]\n\n"
                   "Print the machine profile the planner uses: cache sizes and sharing, SIMD width,\n"
                   "streaming bandwidth from each cache level and DRAM, sgemm and mat-vec flop rates.\n"
                   "Measured once (about half a minute) and saved to PATH (default\n"
                   "~/.cache/fastlstm/profile.json); --refresh measures again. The last line names the\n"
                   "OpenBLAS core this process runs (see BLAS cores in the README). A fixed product is\n"
                   "timed around every pass: a note says so when the machine ran at two speeds (other\n"
                   "tenants of a VM's host), which makes every figure, and every prediction, a mix of the two.\n");
            return CLI_OK;
        } else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--refresh")) refresh = true;
        else if ((r = cli_take(cmd, argc, argv, &i, "--profile", &path))) {
            if (r < 0) return CLI_USAGE;
        } else return cli_fail(cmd, CLI_USAGE, "unknown option '%s' (see --help)", argv[i]);
    }
    fl_profile p;
    int rc = cli_profile_get(cmd, path, refresh, json, &p);
    if (rc) return rc;
    if (json) {
        cJSON *o = cli_profile_json(&p);
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        cli_profile_print(stdout, &p, true);
        cli_blas_print(stdout);
    }
    return CLI_OK;
}
