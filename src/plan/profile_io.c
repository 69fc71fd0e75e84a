/* Machine profile, JSON save / load. The file carries the machine identity (fl_machine_id) so a
 * profile measured on one machine type is not reused on another (fl_profile_check_machine);
 * version 1 files (no identity, no reported sizes, one curve) still load, and so do files without
 * the int8 / bf16 kernel rates ("quant") and version 2 files (no "lowrank": the low-rank step's
 * parts, format 3; the cost model then prices that step by the efficiencies) and version 3 files
 * (format 4 adds, each optional: the input projection stages in "lowrank", without which such a W_ih
 * is priced by the GEMM rate and the efficiencies; thread_sync_seconds / thread_switch_seconds,
 * without which the sync is read off the curves and no layer switch is priced) and version 4 files
 * (format 5 adds, each optional: run_reread, without which no run's cold start is priced;
 * recurrent_far, without which every dense step is priced from the H 256 rates; in "lowrank", stage
 * 2's output walks, without which the input projection's writes are priced at its table's buffer,
 * and the step's kernels timed with their weights beyond the private level, without which the step
 * is priced from its near tables alone) and version 5 files (format 6 adds, optional,
 * thread_scale_pk, without which an SVD / CP input projection's stages take thread_scale_proj's
 * speed-ups) and version 6 files (format 7 adds, optional, "speed": the machine's speed while the
 * profile was measured, without which nothing is said of it) and version 7 files (format 8 adds,
 * optional, "activations": a session's activation cost by footprint, cost_act.c, without which the
 * older gx-from-memory term prices it; and, optional in any, wake_proj_macs, without which every
 * input projection is split by parallel_proj_macs alone). Load validates every field and names it
 * in the error. */
#include "atomic_file.h"
#include "profile_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

fl_status fl_profile_default_path(char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len;
    if (xdg && *xdg) len = snprintf(buf, n, "%s/fastlstm/profile.json", xdg);
    else if (home && *home) len = snprintf(buf, n, "%s/.cache/fastlstm/profile.json", home);
    else return fl_fail(FL_ERR_ARG, "no HOME or XDG_CACHE_HOME to place the profile in");
    if (len < 0 || (size_t)len >= n) return fl_fail(FL_ERR_ARG, "profile path too long");
    return FL_OK;
}

/* mkdir -p of the directory part of path. */
static void make_parent_dirs(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return;
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
}

static void add_curve(cJSON *root, const char *key, const size_t *bytes, const double *bw, int n) {
    cJSON *curve = cJSON_AddArrayToObject(root, key);
    for (int k = 0; k < n; k++) {
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "bytes", (double)bytes[k]);
        cJSON_AddNumberToObject(pt, "bandwidth", bw[k]);
        cJSON_AddItemToArray(curve, pt);
    }
}

static void add_quant(cJSON *root, const fl_profile *p);
static void add_lowrank(cJSON *root, const fl_profile *p);
static void add_array(cJSON *o, const char *key, const double *v, int n);
static void add_eff(cJSON *o, const double *rec, const double *gemm, const double (*rec_rows)[FL_PROFILE_GEMM_POINTS],
                    const double (*gemm_rows)[FL_PROFILE_GEMM_POINTS]);

static fl_status write_profile_text(void *ctx, FILE *f, const char *tmp) {
    if (fputs((const char *)ctx, f) < 0 || fputc('\n', f) == EOF)
        return fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return FL_OK;
}

fl_status fl_profile_save(const fl_profile *p, const char *path) {
    if (!p || !path) return fl_fail(FL_ERR_ARG, "NULL argument to fl_profile_save");
    cJSON *root = cJSON_CreateObject(), *levels = cJSON_CreateArray();
    if (!root || !levels) {
        cJSON_Delete(root), cJSON_Delete(levels);
        return fl_fail(FL_ERR_NOMEM, "out of memory writing a profile");
    }
    cJSON_AddNumberToObject(root, "version", 8);
    cJSON *id = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(id, "vendor", p->id.vendor);
    cJSON_AddNumberToObject(id, "family", p->id.family);
    cJSON_AddNumberToObject(id, "model", p->id.model);
    cJSON_AddNumberToObject(id, "stepping", p->id.stepping);
    cJSON_AddNumberToObject(id, "cores", p->id.cores);
    cJSON_AddStringToObject(id, "kernels", p->id.kernels);
    cJSON_AddNumberToObject(id, "llc_bytes", (double)p->id.llc_bytes);
    cJSON_AddStringToObject(root, "cache_source", p->cache_source);
    cJSON_AddNumberToObject(root, "cores", p->cores);
    cJSON_AddNumberToObject(root, "simd_bits", p->simd_bits);
    for (int i = 0; i < p->n_levels; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "level", p->level[i].level);
        cJSON_AddNumberToObject(l, "bytes", (double)p->level[i].bytes);
        cJSON_AddNumberToObject(l, "shared_cpus", p->level[i].shared_cpus);
        cJSON_AddNumberToObject(l, "bandwidth", p->level[i].bandwidth);
        cJSON_AddNumberToObject(l, "reported_bytes", (double)p->level[i].reported_bytes);
        cJSON_AddNumberToObject(l, "all_cores_bytes", (double)p->level[i].all_cores_bytes);
        cJSON_AddNumberToObject(l, "all_cores_bandwidth", p->level[i].all_cores_bandwidth);
        cJSON_AddItemToArray(levels, l);
    }
    cJSON_AddItemToObject(root, "caches", levels);
    cJSON_AddNumberToObject(root, "dram_bandwidth", p->dram_bandwidth);
    cJSON_AddNumberToObject(root, "dram_bandwidth_all", p->dram_bandwidth_all);
    cJSON_AddNumberToObject(root, "gemm_flops", p->gemm_flops);
    cJSON_AddNumberToObject(root, "gemv_flops", p->gemv_flops);
    cJSON *eff = cJSON_AddObjectToObject(root, "efficiency");
    add_eff(eff, p->rec_efficiency, p->gemm_efficiency, p->rec_rows_efficiency, p->gemm_rows_efficiency);
    if (p->rec_efficiency_lo[FL_METHOD_SVD] > 0 || p->rec_efficiency_lo[FL_METHOD_CP] > 0)
        add_eff(cJSON_AddObjectToObject(eff, "rank_h16"), p->rec_efficiency_lo, p->gemm_efficiency_lo,
                p->rec_rows_efficiency_lo, p->gemm_rows_efficiency_lo);
    add_curve(root, "curve", p->curve_bytes, p->curve_bandwidth, p->n_curve);
    add_curve(root, "curve_all", p->curve_all_bytes, p->curve_all_bandwidth, p->n_curve_all);
    cJSON_AddNumberToObject(root, "curve_all_threads", p->curve_all_threads);
    cJSON_AddNumberToObject(root, "parallel_step_bytes", p->parallel_step_bytes);
    cJSON_AddNumberToObject(root, "parallel_proj_macs", p->parallel_proj_macs);
    if (p->wake_proj_macs > 0) cJSON_AddNumberToObject(root, "wake_proj_macs", p->wake_proj_macs); /* optional */
    cJSON *rows = cJSON_AddArrayToObject(root, "gemm_rows_flops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(rows, cJSON_CreateNumber(p->gemm_rows_flops[k]));
    cJSON *recr = cJSON_AddArrayToObject(root, "rec_rows_flops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(recr, cJSON_CreateNumber(p->rec_rows_flops[k]));
    add_array(root, "thread_scale_rec", p->thread_scale_rec, FL_PROFILE_GEMM_POINTS);
    add_array(root, "thread_scale_proj", p->thread_scale_proj, FL_PROFILE_GEMM_POINTS);
    add_array(root, "thread_scale_proj_memory", p->thread_scale_proj_mem, FL_PROFILE_GEMM_POINTS);
    if (p->thread_scale_pk[0] > 0) add_array(root, "thread_scale_pk", p->thread_scale_pk, FL_PROFILE_GEMM_POINTS); /* format 6 */
    add_array(root, "cold_gx_seconds", &p->cold_gx_seconds[0][0], 6); /* dense, svd, cp: at rank H/16, H/4 */
    if (fl_profile_has_act(p)) { /* format 8 */
        cJSON *act = cJSON_AddObjectToObject(root, "activations");
        add_array(act, "bytes", p->act_bytes, FL_PROFILE_ACT_POINTS);
        add_array(act, "seconds_per_byte", p->act_seconds, FL_PROFILE_ACT_POINTS);
    }
    if (p->speed_samples > 0) { /* format 7 */
        cJSON *sp = cJSON_AddObjectToObject(root, "speed");
        cJSON_AddNumberToObject(sp, "fastest", p->speed_fastest);
        cJSON_AddNumberToObject(sp, "median", p->speed_median);
        cJSON_AddNumberToObject(sp, "p90", p->speed_p90);
        cJSON_AddNumberToObject(sp, "slow", p->speed_slow);
        cJSON_AddNumberToObject(sp, "samples", p->speed_samples);
    }
    bool reread = false;
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) reread |= p->run_reread[k] > 0;
    if (reread) add_array(root, "run_reread", p->run_reread, FL_PROFILE_REREAD_POINTS); /* format 5 */
    if (p->rec_far_bytes > 0) { /* format 5 */
        cJSON *far = cJSON_AddObjectToObject(root, "recurrent_far");
        cJSON_AddNumberToObject(far, "bytes", p->rec_far_bytes);
        add_array(far, "rows_flops", p->rec_rows_flops_far, FL_PROFILE_GEMM_POINTS);
        add_array(far, "thread_scale", p->thread_scale_rec_far, FL_PROFILE_GEMM_POINTS);
    }
    if (p->thread_sync_seconds > 0 || p->thread_switch_seconds > 0) { /* format 4 (session 13, sync2) */
        cJSON_AddNumberToObject(root, "thread_sync_seconds", p->thread_sync_seconds);
        cJSON_AddNumberToObject(root, "thread_switch_seconds", p->thread_switch_seconds);
    }
    cJSON_AddNumberToObject(root, "step_overhead", p->step_overhead);
    cJSON_AddNumberToObject(root, "cell_seconds", p->cell_seconds);
    cJSON_AddNumberToObject(root, "cell_seconds_b1", p->cell_seconds_b1);
    cJSON_AddNumberToObject(root, "bias_seconds", p->bias_seconds);
    cJSON_AddNumberToObject(root, "bias_seconds_cached", p->bias_seconds_cached);
    cJSON_AddNumberToObject(root, "rec_memory_factor", p->rec_memory_factor);
    add_quant(root, p);
    add_lowrank(root, p);
    cJSON_AddBoolToObject(root, "measured", p->measured != 0);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return fl_fail(FL_ERR_NOMEM, "out of memory writing a profile");
    make_parent_dirs(path);
    fl_status st = fl_atomic_write(path, write_profile_text, text);
    free(text);
    return st;
}

/* Positive finite number field; false (with the error set) otherwise. */
static bool get_num(const cJSON *o, const char *key, const char *path, double lo, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo) {
        fl_fail(FL_ERR_FORMAT, "%s: field '%s' missing or not a number >= %g", path, key, lo);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

/* Optional array of n numbers >= 0; false (with the error set) if malformed. */
static bool get_array(const cJSON *o, const char *key, const char *path, int n, double *out) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key), *r;
    if (!t) return true;
    if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != n) {
        fl_fail(FL_ERR_FORMAT, "%s: '%s' must be an array of %d numbers", path, key, n);
        return false;
    }
    int k = 0;
    cJSON_ArrayForEach(r, t) {
        if (!cJSON_IsNumber(r) || !isfinite(r->valuedouble) || r->valuedouble < 0) {
            fl_fail(FL_ERR_FORMAT, "%s: '%s' entry %d is not a number >= 0", path, key, k);
            return false;
        }
        out[k++] = r->valuedouble;
    }
    return true;
}

/* Optional "recurrent_far" (format 5): bytes > 0 and both tables, rows_flops all > 0. */
static bool get_far(const cJSON *root, const char *path, fl_profile *p) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "recurrent_far"), *b;
    if (!o) return true;
    b = cJSON_GetObjectItemCaseSensitive(o, "bytes");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(b) || !(b->valuedouble > 0) || !isfinite(b->valuedouble) ||
        !cJSON_GetObjectItemCaseSensitive(o, "rows_flops") || !cJSON_GetObjectItemCaseSensitive(o, "thread_scale")) {
        fl_fail(FL_ERR_FORMAT, "%s: 'recurrent_far' must hold bytes > 0, rows_flops and thread_scale", path);
        return false;
    }
    if (!get_array(o, "rows_flops", path, FL_PROFILE_GEMM_POINTS, p->rec_rows_flops_far) ||
        !get_array(o, "thread_scale", path, FL_PROFILE_GEMM_POINTS, p->thread_scale_rec_far))
        return false;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        if (!(p->rec_rows_flops_far[k] > 0)) {
            fl_fail(FL_ERR_FORMAT, "%s: 'recurrent_far' rows_flops entry %d is not > 0", path, k);
            return false;
        }
    p->rec_far_bytes = b->valuedouble;
    return true;
}

/* Optional array of FL_PROFILE_GEMM_POINTS numbers >= 0. */
static bool get_table(const cJSON *o, const char *key, const char *path, double *out) {
    return get_array(o, key, path, FL_PROFILE_GEMM_POINTS, out);
}

static void add_array(cJSON *o, const char *key, const double *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int k = 0; k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[k]));
}

/* One rank's SVD / CP efficiencies (fl_profile.rec_efficiency and the rest, or their _lo twins):
 * {"svd_recurrent", "cp_recurrent", "svd_gemm", "cp_gemm": numbers, and "<those>_rows": [4]}. */
static void add_eff(cJSON *o, const double *rec, const double *gemm, const double (*rec_rows)[FL_PROFILE_GEMM_POINTS],
                    const double (*gemm_rows)[FL_PROFILE_GEMM_POINTS]) {
    cJSON_AddNumberToObject(o, "svd_recurrent", rec[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(o, "cp_recurrent", rec[FL_METHOD_CP]);
    cJSON_AddNumberToObject(o, "svd_gemm", gemm[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(o, "cp_gemm", gemm[FL_METHOD_CP]);
    add_array(o, "svd_recurrent_rows", rec_rows[FL_METHOD_SVD], FL_PROFILE_GEMM_POINTS);
    add_array(o, "cp_recurrent_rows", rec_rows[FL_METHOD_CP], FL_PROFILE_GEMM_POINTS);
    add_array(o, "svd_gemm_rows", gemm_rows[FL_METHOD_SVD], FL_PROFILE_GEMM_POINTS);
    add_array(o, "cp_gemm_rows", gemm_rows[FL_METHOD_CP], FL_PROFILE_GEMM_POINTS);
}

/* The object add_eff writes: the four numbers required, each rows table optional; false (with the
 * error set) if malformed. */
static bool get_eff(const cJSON *o, const char *path, double *rec, double *gemm, double (*rec_rows)[FL_PROFILE_GEMM_POINTS],
                    double (*gemm_rows)[FL_PROFILE_GEMM_POINTS]) {
    return get_num(o, "svd_recurrent", path, 0, &rec[FL_METHOD_SVD]) &&
           get_num(o, "cp_recurrent", path, 0, &rec[FL_METHOD_CP]) &&
           get_num(o, "svd_gemm", path, 0, &gemm[FL_METHOD_SVD]) && get_num(o, "cp_gemm", path, 0, &gemm[FL_METHOD_CP]) &&
           get_table(o, "svd_recurrent_rows", path, rec_rows[FL_METHOD_SVD]) &&
           get_table(o, "cp_recurrent_rows", path, rec_rows[FL_METHOD_CP]) &&
           get_table(o, "svd_gemm_rows", path, gemm_rows[FL_METHOD_SVD]) &&
           get_table(o, "cp_gemm_rows", path, gemm_rows[FL_METHOD_CP]);
}

/* The int8 / bf16 kernel rates: {"bf16": {"recurrent_rows": [5], "gemm_rows": [4]}, "int8": ...}. */
static const fl_precision quant_precs[2] = {FL_PRECISION_BF16, FL_PRECISION_INT8};

static void add_quant(cJSON *root, const fl_profile *p) {
    cJSON *q = cJSON_AddObjectToObject(root, "quant");
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_AddObjectToObject(q, fl_precision_name(quant_precs[i]));
        add_array(o, "recurrent_rows", p->qrec_flops[quant_precs[i]], FL_PROFILE_GEMM_POINTS + 1);
        add_array(o, "gemm_rows", p->qgemm_flops[quant_precs[i]], FL_PROFILE_GEMM_POINTS);
    }
}

/* Optional as a whole and per precision (profiles written before the quant kernels were measured
 * have none: the cost model then uses the f32 rates, see fl_profile). */
static bool get_quant(const cJSON *root, const char *path, fl_profile *p) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quant");
    if (!q) return true;
    if (!cJSON_IsObject(q)) {
        fl_fail(FL_ERR_FORMAT, "%s: 'quant' must be an object", path);
        return false;
    }
    for (int i = 0; i < 2; i++) {
        const fl_precision pr = quant_precs[i];
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(q, fl_precision_name(pr));
        if (!o) continue;
        if (!cJSON_IsObject(o)) {
            fl_fail(FL_ERR_FORMAT, "%s: 'quant.%s' must be an object", path, fl_precision_name(pr));
            return false;
        }
        if (!get_array(o, "recurrent_rows", path, FL_PROFILE_GEMM_POINTS + 1, p->qrec_flops[pr]) ||
            !get_array(o, "gemm_rows", path, FL_PROFILE_GEMM_POINTS, p->qgemm_flops[pr]))
            return false;
    }
    return true;
}

/* The low-rank step's parts (format 3): {"proj_seconds", "svd_panel_seconds", "cp_panel_seconds":
 * [FL_PROFILE_LR_RANKS x FL_PROFILE_LR_ROWS] rank-major, "gx_copy_seconds": number}; none when not
 * measured. Format 4 adds the input projection's stages, "ih_in_seconds", "ih_svd_out_seconds",
 * "ih_cp_out_seconds" (the same shape), when measured; format 5 the step's kernels with their
 * weights beyond the private level, "proj_far_seconds", "svd_panel_far_seconds",
 * "cp_panel_far_seconds" (the same shape), when measured. */
enum { LR_N = FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS };

static void add_lowrank(cJSON *root, const fl_profile *p) {
    if (!(p->lr_proj_seconds[0][0] > 0)) return;
    cJSON *o = cJSON_AddObjectToObject(root, "lowrank");
    add_array(o, "proj_seconds", &p->lr_proj_seconds[0][0], LR_N);
    add_array(o, "svd_panel_seconds", &p->lr_panel_seconds[FL_METHOD_SVD][0][0], LR_N);
    add_array(o, "cp_panel_seconds", &p->lr_panel_seconds[FL_METHOD_CP][0][0], LR_N);
    cJSON_AddNumberToObject(o, "gx_copy_seconds", p->gx_copy_seconds);
    if (p->lr_ih_in_seconds[0][0] > 0) {
        add_array(o, "ih_in_seconds", &p->lr_ih_in_seconds[0][0], LR_N);
        add_array(o, "ih_svd_out_seconds", &p->lr_ih_out_seconds[FL_METHOD_SVD][0][0], LR_N);
        add_array(o, "ih_cp_out_seconds", &p->lr_ih_out_seconds[FL_METHOD_CP][0][0], LR_N);
    }
    if (p->lr_ih_walk_bytes[0] > 0) {
        add_array(o, "ih_walk_bytes", p->lr_ih_walk_bytes, FL_PROFILE_IH_WALKS);
        add_array(o, "ih_walk_seconds", p->lr_ih_walk_seconds, FL_PROFILE_IH_WALKS);
    }
    if (p->lr_proj_far_seconds[0][0] > 0) {
        add_array(o, "proj_far_seconds", &p->lr_proj_far_seconds[0][0], LR_N);
        add_array(o, "svd_panel_far_seconds", &p->lr_panel_far_seconds[FL_METHOD_SVD][0][0], LR_N);
        add_array(o, "cp_panel_far_seconds", &p->lr_panel_far_seconds[FL_METHOD_CP][0][0], LR_N);
    }
}

/* Stage 2's output walks (format 5): "ih_walk_bytes" (growing) and "ih_walk_seconds", both of
 * FL_PROFILE_IH_WALKS numbers > 0, or neither (a version 4 file). */
static bool get_walks(const cJSON *o, const char *path, fl_profile *p) {
    const bool b = cJSON_GetObjectItemCaseSensitive(o, "ih_walk_bytes") != NULL,
               s = cJSON_GetObjectItemCaseSensitive(o, "ih_walk_seconds") != NULL;
    if (!b && !s) return true;
    if (b != s) {
        fl_fail(FL_ERR_FORMAT, "%s: 'lowrank' lacks '%s'", path, b ? "ih_walk_seconds" : "ih_walk_bytes");
        return false;
    }
    if (!get_array(o, "ih_walk_bytes", path, FL_PROFILE_IH_WALKS, p->lr_ih_walk_bytes) ||
        !get_array(o, "ih_walk_seconds", path, FL_PROFILE_IH_WALKS, p->lr_ih_walk_seconds))
        return false;
    for (int i = 0; i < FL_PROFILE_IH_WALKS; i++) {
        if (!(p->lr_ih_walk_bytes[i] > (i ? p->lr_ih_walk_bytes[i - 1] : 0))) {
            fl_fail(FL_ERR_FORMAT, "%s: 'lowrank.ih_walk_bytes' entry %d is not > 0 and above the one before", path, i);
            return false;
        }
        if (!(p->lr_ih_walk_seconds[i] > 0)) {
            fl_fail(FL_ERR_FORMAT, "%s: 'lowrank.ih_walk_seconds' entry %d is not a number > 0", path, i);
            return false;
        }
    }
    return true;
}

/* Tables keys[0..n) of o into dst[i] (LR_N numbers > 0 each); a missing one refused, naming it. */
static bool get_tables(const cJSON *o, const char *path, int n, const char *const *keys, double *const *dst) {
    for (int i = 0; i < n; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(o, keys[i])) {
            fl_fail(FL_ERR_FORMAT, "%s: 'lowrank' lacks '%s'", path, keys[i]);
            return false;
        }
        if (!get_array(o, keys[i], path, LR_N, dst[i])) return false;
        for (int k = 0; k < LR_N; k++)
            if (!(dst[i][k] > 0)) {
                fl_fail(FL_ERR_FORMAT, "%s: 'lowrank.%s' entry %d is not a number > 0", path, keys[i], k);
                return false;
            }
    }
    return true;
}

/* Optional as a whole (older profiles: the step priced by the efficiencies); when present every
 * table of the step is required, all of them positive; the input projection's three (format 4) and
 * the step's far tables (format 5) are each optional together: none (an older file), or all three. */
static bool get_opt_tables(const cJSON *o, const char *path, const char *const *keys, double *const *dst) {
    bool any = false;
    for (int i = 0; i < 3; i++) any = any || cJSON_GetObjectItemCaseSensitive(o, keys[i]);
    return !any || get_tables(o, path, 3, keys, dst);
}

static bool get_lowrank(const cJSON *root, const char *path, fl_profile *p) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "lowrank");
    if (!o) return true;
    static const char *const keys[3] = {"proj_seconds", "svd_panel_seconds", "cp_panel_seconds"};
    double *const dst[3] = {&p->lr_proj_seconds[0][0], &p->lr_panel_seconds[FL_METHOD_SVD][0][0],
                            &p->lr_panel_seconds[FL_METHOD_CP][0][0]};
    static const char *const ih_keys[3] = {"ih_in_seconds", "ih_svd_out_seconds", "ih_cp_out_seconds"};
    double *const ih_dst[3] = {&p->lr_ih_in_seconds[0][0], &p->lr_ih_out_seconds[FL_METHOD_SVD][0][0],
                               &p->lr_ih_out_seconds[FL_METHOD_CP][0][0]};
    if (!cJSON_IsObject(o)) {
        fl_fail(FL_ERR_FORMAT, "%s: 'lowrank' must be an object", path);
        return false;
    }
    if (!get_tables(o, path, 3, keys, dst) || !get_num(o, "gx_copy_seconds", path, 0, &p->gx_copy_seconds))
        return false;
    static const char *const far_keys[3] = {"proj_far_seconds", "svd_panel_far_seconds", "cp_panel_far_seconds"};
    double *const far_dst[3] = {&p->lr_proj_far_seconds[0][0], &p->lr_panel_far_seconds[FL_METHOD_SVD][0][0],
                                &p->lr_panel_far_seconds[FL_METHOD_CP][0][0]};
    return get_opt_tables(o, path, ih_keys, ih_dst) && get_opt_tables(o, path, far_keys, far_dst) &&
           get_walks(o, path, p);
}

/* Optional number >= 0 (left as it is when absent); false (with the error set) if malformed. */
static bool get_opt(const cJSON *o, const char *key, const char *path, double *out) {
    if (!cJSON_GetObjectItemCaseSensitive(o, key)) return true;
    return get_num(o, key, path, 0, out);
}

/* Optional "speed" (format 7): fastest <= median <= p90, all > 0, slow in [0, 1], samples >= 1. */
static bool get_speed(const cJSON *root, const char *path, fl_profile *p) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "speed");
    double n;
    if (!o) return true;
    if (!cJSON_IsObject(o)) {
        fl_fail(FL_ERR_FORMAT, "%s: 'speed' must be an object", path);
        return false;
    }
    if (!get_num(o, "fastest", path, 0, &p->speed_fastest) || !get_num(o, "median", path, 0, &p->speed_median) ||
        !get_num(o, "p90", path, 0, &p->speed_p90) || !get_num(o, "slow", path, 0, &p->speed_slow) ||
        !get_num(o, "samples", path, 1, &n))
        return false;
    if (!(p->speed_fastest > 0) || p->speed_median < p->speed_fastest || p->speed_p90 < p->speed_median ||
        p->speed_slow > 1 || n > 1e6) {
        fl_fail(FL_ERR_FORMAT, "%s: 'speed' needs 0 < fastest <= median <= p90, slow <= 1 and 1..1e6 samples", path);
        return false;
    }
    p->speed_samples = (int)n; /* after the range check: a cast out of int's range is undefined */
    return true;
}

/* Optional "activations" (format 8): footprints > 0 and rising, seconds per byte >= 0. */
static bool get_act(const cJSON *root, const char *path, fl_profile *p) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "activations");
    if (!o) return true;
    if (!cJSON_IsObject(o) || !cJSON_GetObjectItemCaseSensitive(o, "bytes") ||
        !cJSON_GetObjectItemCaseSensitive(o, "seconds_per_byte")) {
        fl_fail(FL_ERR_FORMAT, "%s: 'activations' must hold bytes and seconds_per_byte", path);
        return false;
    }
    if (!get_array(o, "bytes", path, FL_PROFILE_ACT_POINTS, p->act_bytes) ||
        !get_array(o, "seconds_per_byte", path, FL_PROFILE_ACT_POINTS, p->act_seconds))
        return false;
    for (int k = 0; k < FL_PROFILE_ACT_POINTS; k++)
        if (!(p->act_bytes[k] > (k ? p->act_bytes[k - 1] : 0))) {
            fl_fail(FL_ERR_FORMAT, "%s: 'activations' bytes must be > 0 and rising", path);
            return false;
        }
    return true;
}

/* Optional curve: an array of at most FL_PROFILE_MAX_CURVE {bytes, bandwidth} points, growing in bytes. */
static bool get_curve(const cJSON *root, const char *key, const char *path, size_t *bytes, double *bw, int *n) {
    const cJSON *curve = cJSON_GetObjectItemCaseSensitive(root, key), *r;
    *n = 0;
    if (!curve) return true;
    if (!cJSON_IsArray(curve) || cJSON_GetArraySize(curve) > FL_PROFILE_MAX_CURVE) {
        fl_fail(FL_ERR_FORMAT, "%s: '%s' must be an array of at most %d points", path, key, FL_PROFILE_MAX_CURVE);
        return false;
    }
    cJSON_ArrayForEach(r, curve) {
        double b, v;
        if (!get_num(r, "bytes", path, 1, &b) || !get_num(r, "bandwidth", path, 1, &v)) return false;
        if (*n && (size_t)b <= bytes[*n - 1]) {
            fl_fail(FL_ERR_FORMAT, "%s: '%s' points must grow in bytes", path, key);
            return false;
        }
        bytes[*n] = (size_t)b;
        bw[(*n)++] = v;
    }
    return true;
}

fl_status fl_profile_load(const char *path, fl_profile *out) {
    if (!path || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_profile_load");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap > (1u << 20)) {
                fclose(f), fl_free(text);
                return fl_fail(FL_ERR_FORMAT, "%s: profile larger than 1 MiB", path);
            }
            char *t = fl_malloc(cap ? 2 * cap : 8192);
            if (!t) {
                fclose(f), fl_free(text);
                return fl_fail(FL_ERR_NOMEM, "out of memory reading %s", path);
            }
            if (text) memcpy(t, text, len);
            fl_free(text);
            text = t;
            cap = cap ? 2 * cap : 8192;
        }
        size_t got = fread(text + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        fl_free(text);
        return fl_fail(FL_ERR_IO, "%s: read failed", path);
    }
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    fl_free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fl_fail(FL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    fl_profile p = {0};
    double v;
    fl_status st = FL_ERR_FORMAT;
    const cJSON *levels = cJSON_GetObjectItemCaseSensitive(root, "caches"), *l;
    if (!get_num(root, "version", path, 1, &v)) goto done;
    if (v > 8 || v != floor(v)) {
        st = fl_fail(FL_ERR_VERSION, "%s: profile version %g, expected 1 to 8", path, v);
        goto done;
    }
    if (!get_num(root, "cores", path, 1, &v)) goto done;
    p.cores = (int)v;
    if (!get_num(root, "simd_bits", path, 1, &v)) goto done;
    p.simd_bits = (int)v;
    if (!cJSON_IsArray(levels) || cJSON_GetArraySize(levels) < 1 ||
        cJSON_GetArraySize(levels) > FL_PROFILE_MAX_LEVELS) {
        fl_fail(FL_ERR_FORMAT, "%s: 'caches' must be an array of 1 to %d levels", path,
                FL_PROFILE_MAX_LEVELS);
        goto done;
    }
    cJSON_ArrayForEach(l, levels) {
        fl_cache_level *c = &p.level[p.n_levels];
        double lv, b, s, bw, rb = 0, ab = 0, abw = 0;
        if (!get_num(l, "level", path, 1, &lv) || !get_num(l, "bytes", path, 1, &b) ||
            !get_num(l, "shared_cpus", path, 1, &s) || !get_num(l, "bandwidth", path, 0, &bw) ||
            !get_opt(l, "reported_bytes", path, &rb) || !get_opt(l, "all_cores_bytes", path, &ab) ||
            !get_opt(l, "all_cores_bandwidth", path, &abw)) /* optional: older profiles have none */
            goto done;
        *c = (fl_cache_level){(int)lv, (size_t)b, (int)s, bw, (size_t)rb, (size_t)ab, abw};
        if (p.n_levels > 0 && c->bytes <= p.level[p.n_levels - 1].bytes) {
            fl_fail(FL_ERR_FORMAT, "%s: cache levels must grow in size", path);
            goto done;
        }
        p.n_levels++;
    }
    if (!get_num(root, "dram_bandwidth", path, 1, &p.dram_bandwidth) ||
        !get_num(root, "gemm_flops", path, 1, &p.gemm_flops) ||
        !get_num(root, "gemv_flops", path, 1, &p.gemv_flops) ||
        !get_num(root, "step_overhead", path, 0, &p.step_overhead) ||
        !get_opt(root, "dram_bandwidth_all", path, &p.dram_bandwidth_all)) /* optional */
        goto done;
    if (!get_table(root, "gemm_rows_flops", path, p.gemm_rows_flops) ||
        !get_table(root, "rec_rows_flops", path, p.rec_rows_flops) ||
        !get_table(root, "thread_scale_rec", path, p.thread_scale_rec) || /* optional */
        !get_table(root, "thread_scale_proj", path, p.thread_scale_proj) ||
        !get_table(root, "thread_scale_proj_memory", path, p.thread_scale_proj_mem) || /* optional */
        !get_table(root, "thread_scale_pk", path, p.thread_scale_pk) ||                /* optional, format 6 */
        !get_array(root, "cold_gx_seconds", path, 6, &p.cold_gx_seconds[0][0]) ||  /* optional */
        !get_array(root, "run_reread", path, FL_PROFILE_REREAD_POINTS, p.run_reread) || /* optional, format 5 */
        !get_far(root, path, &p) ||                                                   /* optional, format 5 */
        !get_opt(root, "thread_sync_seconds", path, &p.thread_sync_seconds) ||      /* optional, format 4 */
        !get_opt(root, "thread_switch_seconds", path, &p.thread_switch_seconds))    /* optional, format 4 */
        goto done;
    const cJSON *eff = cJSON_GetObjectItemCaseSensitive(root, "efficiency"); /* optional as a whole */
    const cJSON *eff_lo = eff ? cJSON_GetObjectItemCaseSensitive(eff, "rank_h16") : NULL; /* optional */
    if ((eff && !get_eff(eff, path, p.rec_efficiency, p.gemm_efficiency, p.rec_rows_efficiency,
                         p.gemm_rows_efficiency)) ||
        (eff_lo && !get_eff(eff_lo, path, p.rec_efficiency_lo, p.gemm_efficiency_lo, p.rec_rows_efficiency_lo,
                            p.gemm_rows_efficiency_lo)))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "cell_seconds") && /* optional */
        !get_num(root, "cell_seconds", path, 0, &p.cell_seconds))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "cell_seconds_b1") && /* optional: 0 falls back to cell_seconds */
        !get_num(root, "cell_seconds_b1", path, 0, &p.cell_seconds_b1))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias_seconds") && /* optional */
        !get_num(root, "bias_seconds", path, 0, &p.bias_seconds))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias_seconds_cached") && /* optional */
        !get_num(root, "bias_seconds_cached", path, 0, &p.bias_seconds_cached))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "rec_memory_factor") && /* optional */
        !get_num(root, "rec_memory_factor", path, 0, &p.rec_memory_factor))
        goto done;
    double cat = 0;
    if (!get_curve(root, "curve", path, p.curve_bytes, p.curve_bandwidth, &p.n_curve) ||
        !get_curve(root, "curve_all", path, p.curve_all_bytes, p.curve_all_bandwidth, &p.n_curve_all) ||
        !get_opt(root, "curve_all_threads", path, &cat) ||
        !get_opt(root, "parallel_step_bytes", path, &p.parallel_step_bytes) ||
        !get_opt(root, "parallel_proj_macs", path, &p.parallel_proj_macs) ||
        !get_opt(root, "wake_proj_macs", path, &p.wake_proj_macs))
        goto done;
    if (!get_quant(root, path, &p) || !get_lowrank(root, path, &p) || !get_speed(root, path, &p) || !get_act(root, path, &p))
        goto done;
    p.curve_all_threads = (int)cat;
    if (p.n_curve_all && p.curve_all_threads < 2) {
        fl_fail(FL_ERR_FORMAT, "%s: 'curve_all' needs 'curve_all_threads' >= 2", path);
        goto done;
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "cache_source");
    if (cJSON_IsString(src)) snprintf(p.cache_source, sizeof p.cache_source, "%s", src->valuestring);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "machine");
    if (id) { /* optional: a profile without it names no machine and fl_profile_check_machine refuses it */
        const cJSON *vendor = cJSON_GetObjectItemCaseSensitive(id, "vendor"),
                    *kern = cJSON_GetObjectItemCaseSensitive(id, "kernels");
        double fam, mod, stp, cor, llc;
        if (!cJSON_IsString(vendor) || !cJSON_IsString(kern)) {
            fl_fail(FL_ERR_FORMAT, "%s: 'machine' needs strings 'vendor' and 'kernels'", path);
            goto done;
        }
        if (!get_num(id, "family", path, 0, &fam) || !get_num(id, "model", path, 0, &mod) ||
            !get_num(id, "stepping", path, 0, &stp) || !get_num(id, "cores", path, 1, &cor) ||
            !get_num(id, "llc_bytes", path, 0, &llc))
            goto done;
        snprintf(p.id.vendor, sizeof p.id.vendor, "%s", vendor->valuestring);
        snprintf(p.id.kernels, sizeof p.id.kernels, "%s", kern->valuestring);
        p.id.family = (int)fam, p.id.model = (int)mod, p.id.stepping = (int)stp, p.id.cores = (int)cor;
        p.id.llc_bytes = (size_t)llc;
    }
    p.measured = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "measured"));
    *out = p;
    st = FL_OK;
done:
    cJSON_Delete(root);
    return st;
}
