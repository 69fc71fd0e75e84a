/* Machine profile, detection: what the machine reports about itself. Cache topology from /sys
 * (fallback CPUID's deterministic cache leaves, then glibc's sysconf, then defaults), SIMD width and
 * the machine identity (vendor, family, model, stepping, cores, kernel level) from CPUID. Nothing
 * here is measured; the reported capacities are replaced by measured ones in profile.c, because a
 * virtual machine may report them wrong (profile_knee.c). Also fl_profile_override, which poses
 * as another machine. */
#include "tuning_consts.h"
#include "profile_internal.h"
#include "kernels/kernels.h"

#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ detection */

/* Read the first line of a small text file into buf; false if absent. */
static bool read_line(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\r\n")] = 0;
    return ok;
}

/* "48K", "1024K", "32M", "512" -> bytes; 0 when malformed. */
static size_t parse_size(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return 0;
    if (*end == 'K' || *end == 'k') v <<= 10;
    else if (*end == 'M' || *end == 'm') v <<= 20;
    else if (*end == 'G' || *end == 'g') v <<= 30;
    return (size_t)v;
}

/* "0-1,4,6-7" -> number of CPUs listed; 0 when malformed. */
static int count_cpu_list(const char *s) {
    int count = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10);
        if (end == s) return 0;
        long b = a;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            if (end == s + 1 || b < a) return 0;
            s = end;
        }
        count += (int)(b - a + 1);
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return count;
}

static void add_level(fl_profile *p, int level, size_t bytes, int shared) {
    if (bytes == 0 || p->n_levels >= FL_PROFILE_MAX_LEVELS) return;
    for (int i = 0; i < p->n_levels; i++)
        if (p->level[i].level == level) return; /* one entry per level (data, not instruction) */
    p->level[p->n_levels++] = (fl_cache_level){level, bytes, shared > 0 ? shared : 1, 0.0, bytes, 0, 0.0};
}

static int cmp_level(const void *a, const void *b) {
    const fl_cache_level *x = a, *y = b;
    return (x->level > y->level) - (x->level < y->level);
}

static void detect_sysfs(fl_profile *p) {
    char path[128], buf[256];
    for (int idx = 0; idx < 16; idx++) {
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        if (!read_line(path, buf, sizeof buf)) continue;
        int level = atoi(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        if (!read_line(path, buf, sizeof buf) || !strcmp(buf, "Instruction")) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        if (!read_line(path, buf, sizeof buf)) continue;
        size_t bytes = parse_size(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", idx);
        int shared = read_line(path, buf, sizeof buf) ? count_cpu_list(buf) : 1;
        if (level >= 1) add_level(p, level, bytes, shared);
    }
}

static void detect_sysconf(fl_profile *p) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE),
         l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l1 > 0) add_level(p, 1, (size_t)l1, 1);
    if (l2 > 0) add_level(p, 2, (size_t)l2, 1);
    if (l3 > 0) add_level(p, 3, (size_t)l3, p->cores);
#else
    (void)p;
#endif
}

/* CPUID's deterministic cache parameters: leaf 0x8000001D on AMD (with topology extensions), leaf 4
 * on Intel. Each subleaf describes one cache: type (1 data, 3 unified), level, the logical CPUs
 * sharing it, and ways x partitions x line size x sets = bytes. */
static void detect_cpuid(fl_profile *p) {
    unsigned a, b, c, d;
    unsigned leaf = 0;
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x8000001Du &&
        __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c & (1u << 22)))
        leaf = 0x8000001Du;
    else if (__get_cpuid(0, &a, &b, &c, &d) && a >= 4)
        leaf = 4;
    if (!leaf) return;
    for (unsigned sub = 0; sub < 16; sub++) {
        __cpuid_count(leaf, sub, a, b, c, d);
        unsigned type = a & 0x1f;
        if (type == 0) break;
        if (type != 1 && type != 3) continue;
        int level = (int)((a >> 5) & 7);
        int shared = (int)((a >> 14) & 0xfff) + 1;
        size_t bytes = (size_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) * ((b & 0xfff) + 1) * ((size_t)c + 1);
        if (level >= 1) add_level(p, level, bytes, shared > p->cores ? p->cores : shared);
    }
}

fl_status fl_machine_id_detect(fl_machine_id *out) {
    if (!out) return fl_fail(FL_ERR_ARG, "machine id is NULL");
    memset(out, 0, sizeof *out);
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        memcpy(out->vendor, &b, 4);
        memcpy(out->vendor + 4, &d, 4);
        memcpy(out->vendor + 8, &c, 4);
        out->vendor[12] = 0;
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int family = (int)((a >> 8) & 0xf), model = (int)((a >> 4) & 0xf);
        if (family == 0xf) family += (int)((a >> 20) & 0xff);
        if (family >= 6) model += (int)((a >> 16) & 0xf) << 4;
        out->family = family;
        out->model = model;
        out->stepping = (int)(a & 0xf);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    out->cores = cores > 0 ? (int)cores : 1;
    snprintf(out->kernels, sizeof out->kernels, "%s", fl_kernels_get()->name);
    return FL_OK;
}

/* "AuthenticAMD family 25 model 17 stepping 1, 2 CPUs, avx512 kernels" */
static void describe(const fl_machine_id *m, char *buf, size_t n) {
    snprintf(buf, n, "%s family %d model %d stepping %d, %d CPUs, %s kernels", m->vendor[0] ? m->vendor : "(unknown vendor)",
             m->family, m->model, m->stepping, m->cores, m->kernels[0] ? m->kernels : "(unknown)");
}

fl_status fl_profile_check_machine(const fl_profile *p, const fl_machine_id *here) {
    if (!p || !here) return fl_fail(FL_ERR_ARG, "NULL argument to fl_profile_check_machine");
    const fl_machine_id *m = &p->id;
    char a[160], b[160];
    describe(here, b, sizeof b);
    if (!m->vendor[0])
        return fl_fail(FL_ERR_UNSUPPORTED,
                       "the profile names no machine (written by an older fastlstm); this machine is %s: "
                       "run `fastlstm profile --refresh` to measure it", b);
    if (strcmp(m->vendor, here->vendor) || m->family != here->family || m->model != here->model ||
        m->stepping != here->stepping || m->cores != here->cores || strcmp(m->kernels, here->kernels)) {
        describe(m, a, sizeof a);
        return fl_fail(FL_ERR_UNSUPPORTED,
                       "the profile was measured on another machine type (%s); this machine is %s: "
                       "run `fastlstm profile --refresh` to measure it", a, b);
    }
    return FL_OK;
}

/* Defaults when the rates are not measured: a modest desktop core. */
static void default_rates(fl_profile *p) {
    static const double level_bw[] = {200e9, 120e9, 80e9, 60e9};
    for (int i = 0; i < p->n_levels; i++) p->level[i].bandwidth = level_bw[i < 4 ? i : 3];
    p->dram_bandwidth = 20e9;
    p->gemm_flops = 50e9;
    p->gemv_flops = 20e9;
    p->step_overhead = 0.5e-6;
    p->measured = 0;
}

fl_status fl_profile_detect(fl_profile *out) {
    if (!out) return fl_fail(FL_ERR_ARG, "profile is NULL");
    memset(out, 0, sizeof *out);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    out->cores = cores > 0 ? (int)cores : 1;
    __builtin_cpu_init();
    out->simd_bits = __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("avx2") ? 256 : 128;
    fl_machine_id_detect(&out->id);
    const char *source = "sysfs";
    detect_sysfs(out);
    if (out->n_levels == 0) detect_cpuid(out), source = "cpuid";
    if (out->n_levels == 0) detect_sysconf(out), source = "sysconf";
    if (out->n_levels == 0) {
        source = "default";
        add_level(out, 1, 32u << 10, 1);
        add_level(out, 2, 1u << 20, 1);
        add_level(out, 3, 8u << 20, out->cores);
    }
    snprintf(out->cache_source, sizeof out->cache_source, "%s", source);
    /* The runtime's thread rule (src/core/tuning_consts.h, the one place it is defined). */
    out->parallel_step_bytes = FL_MIN_PARALLEL_BYTES;
    out->parallel_proj_macs = FL_MIN_PARALLEL_MACS;
    out->wake_proj_macs = FL_WAKE_MIN_MACS;
    qsort(out->level, (size_t)out->n_levels, sizeof out->level[0], cmp_level);
    default_rates(out);
    return FL_OK;
}


fl_status fl_profile_override(fl_profile *p, double cache_bytes, double bandwidth,
                              double cache_bandwidth, double flops) {
    if (!p) return fl_fail(FL_ERR_ARG, "profile is NULL");
    if (isnan(cache_bytes) || isnan(bandwidth) || isnan(cache_bandwidth) || isnan(flops))
        return fl_fail(FL_ERR_ARG, "profile override is NaN");
    if (cache_bytes > 0 || bandwidth > 0 || cache_bandwidth > 0) {
        /* the measured all-cores rates describe this machine's memory, not the posed one's */
        p->n_curve = p->n_curve_all = 0;
        p->dram_bandwidth_all = 0;
        for (int i = 0; i < p->n_levels; i++) p->level[i].all_cores_bandwidth = 0;
    }
    if (bandwidth > 0) p->dram_bandwidth = bandwidth;
    if (flops > 0) {
        p->gemm_flops = p->gemv_flops = flops;
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p->gemm_rows_flops[k] = p->rec_rows_flops[k] = flops;
        /* this machine's int8 / bf16 rates say nothing of the posed one: they take the f32 rates */
        memset(p->qrec_flops, 0, sizeof p->qrec_flops);
        memset(p->qgemm_flops, 0, sizeof p->qgemm_flops);
    }
    if (cache_bytes > 0) {
        size_t c = (size_t)cache_bytes;
        int keep = 0;
        while (keep < p->n_levels && p->level[keep].bytes < c) keep++;
        /* keep levels smaller than c; the next (or a new) level becomes the last with capacity c */
        fl_cache_level last = keep < p->n_levels ? p->level[keep]
                                                 : (fl_cache_level){.level = keep + 1, .bytes = c, .shared_cpus = p->cores > 1 ? p->cores : 1};
        if (keep == FL_PROFILE_MAX_LEVELS) keep--;
        last.bytes = c;
        if (keep == 0) last.level = 1;
        p->level[keep] = last;
        p->n_levels = keep + 1;
    }
    fl_cache_level *ll = &p->level[p->n_levels - 1];
    if (cache_bandwidth > 0) ll->bandwidth = cache_bandwidth;
    else if (ll->bandwidth <= 0) ll->bandwidth = 3.0 * p->dram_bandwidth;
    for (int i = p->n_levels - 2; i >= 0; i--)
        if (p->level[i].bandwidth <= 0) p->level[i].bandwidth = p->level[i + 1].bandwidth;
    return FL_OK;
}

