/* LSTM extras (peepholes, clip, input_forget): storage, model-file text, and the plain step that
 * sessions run for models that have them. See lstm_ext.h. The step is written like the scalar
 * reference kernels: one pass over the gates per unit, in float, with the recurrent product through
 * fl_mat_apply (dense W_hh: extras models are never decomposed). It never allocates. */
#include "lstm_ext.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fl_status fl_lstm_ext_create(int layers, int hidden, fl_lstm_ext **out) {
    *out = NULL;
    if (layers < 1 || hidden < 1) return fl_fail(FL_ERR_ARG, "fl_lstm_ext_create: %d layers of %d units", layers, hidden);
    size_t L = (size_t)layers, np = L * 3 * (size_t)hidden;
    size_t bytes = sizeof(fl_lstm_ext) + 64 + np * sizeof(float) + L * sizeof(float) + L * sizeof(int);
    fl_lstm_ext *e = fl_calloc(1, bytes);
    if (!e) return fl_fail(FL_ERR_NOMEM, "out of memory for LSTM extras");
    e->layers = layers;
    e->hidden = hidden;
    e->peep = (float *)((char *)e + ((sizeof *e + 63) & ~(size_t)63));
    e->clip = e->peep + np;
    e->input_forget = (int *)(e->clip + L);
    *out = e;
    return FL_OK;
}

void fl_lstm_ext_free(fl_lstm_ext *e) { fl_free(e); }

fl_status fl_lstm_ext_clone(const fl_lstm_ext *e, fl_lstm_ext **out) {
    fl_status st = fl_lstm_ext_create(e->layers, e->hidden, out);
    if (st) return st;
    size_t L = (size_t)e->layers;
    memcpy((*out)->peep, e->peep, L * 3 * (size_t)e->hidden * sizeof(float));
    memcpy((*out)->clip, e->clip, L * sizeof(float));
    memcpy((*out)->input_forget, e->input_forget, L * sizeof(int));
    return FL_OK;
}

fl_status fl_lstm_ext_refuse(const fl_model *m, const char *what) {
    if (!m || !m->ext) return FL_OK;
    return fl_fail(FL_ERR_UNSUPPORTED, "%s is not supported for a model with LSTM extras (peepholes, clip or "
                   "input_forget, as imported from ONNX): such models run inference only", what);
}

/* ------------------------------------------------------------ model-file text */

char *fl_lstm_ext_to_json(const fl_lstm_ext *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON *clip = cJSON_AddArrayToObject(root, "clip"), *inf = cJSON_AddArrayToObject(root, "input_forget");
    cJSON *peep = cJSON_AddArrayToObject(root, "peepholes");
    bool ok = root && clip && inf && peep;
    char num[32];
    size_t P = 3 * (size_t)e->hidden;
    for (int l = 0; ok && l < e->layers; l++) {
        snprintf(num, sizeof num, "%.9g", (double)e->clip[l]);
        ok = cJSON_AddItemToArray(clip, cJSON_CreateString(num)) && cJSON_AddItemToArray(inf, cJSON_CreateNumber(e->input_forget[l]));
        cJSON *row = cJSON_CreateArray();
        ok = ok && row && cJSON_AddItemToArray(peep, row);
        for (size_t k = 0; ok && k < P; k++) {
            snprintf(num, sizeof num, "%.9g", (double)e->peep[(size_t)l * P + k]);
            ok = cJSON_AddItemToArray(row, cJSON_CreateString(num));
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text) + 1;
    char *out = fl_malloc(n);
    if (out) memcpy(out, text, n);
    cJSON_free(text);
    return out;
}

/* A float written by fl_lstm_ext_to_json: a string holding a finite number. */
static bool parse_float(const cJSON *v, float *out) {
    if (!cJSON_IsString(v)) return false;
    char *end;
    double d = strtod(v->valuestring, &end);
    if (*end || end == v->valuestring || !isfinite(d) || fabs(d) > 3.4e38) return false;
    *out = (float)d;
    return true;
}

fl_status fl_lstm_ext_parse(const char *path, const char *json, fl_model *m) {
    const fl_arch *a = &m->arch;
    for (int l = 0; l < a->layers; l++)
        if (m->layer[l].wih.method != FL_METHOD_DENSE || m->layer[l].whh.method != FL_METHOD_DENSE)
            return fl_fail(FL_ERR_UNSUPPORTED, "%s: LSTM extras on a decomposed layer %d", path, l);
    cJSON *root = cJSON_Parse(json);
    if (!root) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"lstm_ext\" is not JSON", path);
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(root, "clip");
    const cJSON *inf = cJSON_GetObjectItemCaseSensitive(root, "input_forget");
    const cJSON *peep = cJSON_GetObjectItemCaseSensitive(root, "peepholes");
    fl_status st = FL_OK;
    if (!cJSON_IsArray(clip) || !cJSON_IsArray(inf) || !cJSON_IsArray(peep) || cJSON_GetArraySize(clip) != a->layers ||
        cJSON_GetArraySize(inf) != a->layers || cJSON_GetArraySize(peep) != a->layers) {
        cJSON_Delete(root);
        return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"lstm_ext\" needs clip, input_forget and peepholes for %d layers",
                       path, a->layers);
    }
    fl_lstm_ext *e;
    st = fl_lstm_ext_create(a->layers, a->hidden, &e);
    size_t P = 3 * (size_t)a->hidden;
    for (int l = 0; l < a->layers && !st; l++) {
        const cJSON *f = cJSON_GetArrayItem(inf, l), *row = cJSON_GetArrayItem(peep, l);
        if (!parse_float(cJSON_GetArrayItem(clip, l), &e->clip[l]) || e->clip[l] < 0)
            st = fl_fail(FL_ERR_FORMAT, "%s: lstm_ext clip of layer %d is not a number >= 0", path, l);
        else if (!cJSON_IsNumber(f) || (f->valuedouble != 0 && f->valuedouble != 1))
            st = fl_fail(FL_ERR_FORMAT, "%s: lstm_ext input_forget of layer %d is not 0 or 1", path, l);
        else if (!cJSON_IsArray(row) || (size_t)cJSON_GetArraySize(row) != P)
            st = fl_fail(FL_ERR_FORMAT, "%s: lstm_ext peepholes of layer %d are not %zu numbers", path, l, P);
        e->input_forget[l] = !st && f->valuedouble == 1;
        for (size_t k = 0; k < P && !st; k++)
            if (!parse_float(cJSON_GetArrayItem(row, (int)k), &e->peep[(size_t)l * P + k]))
                st = fl_fail(FL_ERR_NONFINITE, "%s: lstm_ext peephole %zu of layer %d is not a finite number", path, k, l);
    }
    cJSON_Delete(root);
    if (st) {
        fl_lstm_ext_free(e);
        return st;
    }
    m->ext = e;
    return FL_OK;
}

/* ------------------------------------------------------------ the step */

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }
static float clipf(float x, float t) { return t > 0 ? (x > t ? t : x < -t ? -t : x) : x; }

void fl_lstm_ext_step(const fl_model *m, int l, int B, float *gx, const float *h, float *c, float *h_out) {
    const fl_lstm_ext *e = m->ext;
    const int H = m->arch.hidden, G = 4 * H;
    const float t = e->clip[l], *pi = e->peep + (size_t)l * 3 * H, *po = pi + H, *pf = po + H;
    FL_ASSERT(m->layer[l].whh.method == FL_METHOD_DENSE);
    // gx (B, 4H) += h (B, H) W_hh^T: the gate pre-activations, PyTorch order i, f, g, o
    fl_mat_apply(&m->layer[l].whh, B, h, H, 1.0f, gx, G, NULL);
    for (int b = 0; b < B; b++) {
        const float *g = gx + (size_t)b * G;
        float *cb = c + (size_t)b * H, *hb = h_out + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float ig = sigm(clipf(g[j] + pi[j] * cb[j], t));
            float fg = e->input_forget[l] ? 1.0f - ig : sigm(clipf(g[H + j] + pf[j] * cb[j], t));
            float gg = tanhf(clipf(g[2 * H + j], t));
            float cn = fg * cb[j] + ig * gg;
            float og = sigm(clipf(g[3 * H + j] + po[j] * cn, t));
            cb[j] = cn;
            hb[j] = og * tanhf(cn);
        }
    }
}
