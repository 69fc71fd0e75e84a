/* Reader of the golden gradient files written by tests/gen_grad_golden.py (format in its
 * docstring): named float32 / int32 records. Included by the gradient tests; static helpers. */
#ifndef FL_TESTS_GRAD_GOLDEN_H
#define FL_TESTS_GRAD_GOLDEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct record {
    char name[64];
    int is_int, ndim;
    uint32_t dims[4];
    size_t count;
    void *data;
} record;

typedef struct golden {
    record *r;
    uint32_t n;
} golden;

static bool read_u32(FILE *f, uint32_t *v) { return fread(v, 4, 1, f) == 1; }

static bool golden_load(const char *path, golden *g) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4];
    uint32_t version;
    bool ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "FLGG", 4) && read_u32(f, &version) &&
              version == 1 && read_u32(f, &g->n) && g->n < 1000;
    g->r = ok ? calloc(g->n, sizeof(record)) : NULL;
    for (uint32_t i = 0; ok && i < g->n; i++) {
        record *r = &g->r[i];
        uint32_t len, dt, nd;
        ok = read_u32(f, &len) && len < sizeof r->name && fread(r->name, 1, len, f) == len &&
             read_u32(f, &dt) && read_u32(f, &nd) && nd <= 4;
        if (!ok) break;
        r->is_int = dt == 1;
        r->ndim = (int)nd;
        r->count = 1;
        for (uint32_t k = 0; ok && k < nd; k++) {
            ok = read_u32(f, &r->dims[k]);
            r->count *= r->dims[k];
        }
        r->data = ok ? malloc(r->count * 4 + 4) : NULL;
        ok = ok && fread(r->data, 4, r->count, f) == r->count;
    }
    fclose(f);
    return ok;
}

static void golden_free(golden *g) {
    for (uint32_t i = 0; g->r && i < g->n; i++) free(g->r[i].data);
    free(g->r);
}

static const record *golden_find(const golden *g, const char *name) {
    for (uint32_t i = 0; i < g->n; i++)
        if (!strcmp(g->r[i].name, name)) return &g->r[i];
    return NULL;
}

#endif
