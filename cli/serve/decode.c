/* Request decoding and answer encoding for fastlstm serve: JSON bodies (cJSON) and .npy bodies
 * into srv_input; float arrays out as nested JSON or .npy bytes.
 *
 * Everything that arrives from a client is checked here, before anything is queued: nesting and
 * shapes against the model (features (B, T, D) or token ids (B, T); a stream step drops the B),
 * finiteness and float range of features, integral ids in [0, vocab), lengths in [1, T], and the
 * server's limits on batch and sequence length. Sizes are multiplied only after each factor is
 * bounded by a limit, so no product overflows. Ragged JSON rows are accepted: they are padded with
 * zeros to the longest and their lengths recorded (a variable-length batch). "texts" are tokenized
 * with the model's tokenizer (fl_vocab_encode, as the data layer reads a corpus) into ragged rows of
 * token ids, the same as sending those ids in "inputs". */
#include "serve.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_fail(srv_err *e, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

void srv_input_free(srv_input *in) {
    if (!in) return;
    free(in->x);
    free(in->tokens);
    free(in->lengths);
    memset(in, 0, sizeof *in);
}

/* Allocate the padded arrays of *in for B x T (D from the model). */
static int alloc_input(srv_input *in, const fl_arch *a, int B, int T, bool lengths, srv_err *e) {
    in->B = B;
    in->T = T;
    in->D = a->vocab > 0 ? 0 : a->input;
    size_t n = (size_t)B * (size_t)T;
    if (a->vocab > 0)
        in->tokens = calloc(n, sizeof *in->tokens);
    else
        in->x = calloc(n * (size_t)in->D, sizeof *in->x);
    if (lengths) in->lengths = calloc((size_t)B, sizeof *in->lengths);
    if ((a->vocab > 0 ? !in->tokens : !in->x) || (lengths && !in->lengths))
        return srv_fail(e, 500, "out of memory for a %d x %d input", B, T);
    return 0;
}

/* One JSON number as a feature (finite, in float range) or a token id (integral, in [0, vocab)). */
static int take_number(const cJSON *v, const fl_arch *a, float *xf, int32_t *xt, const char *where, srv_err *e) {
    if (!cJSON_IsNumber(v)) return srv_fail(e, 400, "%s: expected a number", where);
    double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > FLT_MAX) return srv_fail(e, 400, "%s: %g is not a finite float32", where, d);
    if (a->vocab > 0) {
        if (d != floor(d) || d < 0 || d >= a->vocab)
            return srv_fail(e, 400, "%s: token id %g is not an integer in [0, %d)", where, d, a->vocab);
        *xt = (int32_t)d;
    } else {
        *xf = (float)d;
    }
    return 0;
}

/* Fill row b (T steps) of in from the JSON array `row` of `len` steps. */
static int take_row(const cJSON *row, int b, int len, const fl_arch *a, srv_input *in, bool stream, srv_err *e) {
    char where[96];
    int t = 0;
    for (const cJSON *step = row->child; step; step = step->next, t++) {
        size_t at = (size_t)b * in->T + t;
        if (stream) snprintf(where, sizeof where, "inputs[%d]", t);
        else snprintf(where, sizeof where, "inputs[%d][%d]", b, t);
        if (a->vocab > 0) {
            if (take_number(step, a, NULL, &in->tokens[at], where, e)) return e->code;
            continue;
        }
        if (!cJSON_IsArray(step))
            return srv_fail(e, 400, "%s: expected %d features (the model's input size), got %s", where, a->input,
                            cJSON_IsNumber(step) ? "a number" : "something else");
        int d = cJSON_GetArraySize(step);
        if (d != a->input) return srv_fail(e, 400, "%s: has %d features, the model takes %d", where, d, a->input);
        int k = 0;
        for (const cJSON *v = step->child; v; v = v->next, k++) {
            char w2[112];
            snprintf(w2, sizeof w2, "%s[%d]", where, k);
            if (take_number(v, a, &in->x[at * in->D + k], NULL, w2, e)) return e->code;
        }
    }
    (void)len;
    return 0;
}

/* "texts": [B] strings (exactly one for a stream step) -> ragged token rows. Checks everything
 * before allocating: the count, each string's token count (1..max_seq). */
static int decode_texts(const cJSON *texts, const fl_arch *a, const fl_vocab *vocab, bool stream, int max_seq,
                        int max_batch, srv_input *out, srv_err *e) {
    if (!vocab || a->vocab <= 0) /* a tokenizer only makes sense in front of an embedding */
        return srv_fail(e, 400, "\"texts\": this model has no tokenizer (it was not trained on text); send token "
                                "ids in \"inputs\"");
    if (!cJSON_IsArray(texts)) return srv_fail(e, 400, "\"texts\" must be an array of strings");
    int B = cJSON_GetArraySize(texts);
    if (B < 1) return srv_fail(e, 400, "\"texts\" is empty");
    if (stream && B != 1) return srv_fail(e, 400, "a stream step takes one text, got %d", B);
    if (B > max_batch) return srv_fail(e, 413, "batch: %d texts, the limit is %d (--max-batch)", B, max_batch);
    int T = 0, b = 0;
    for (const cJSON *t = texts->child; t; t = t->next, b++) {
        if (!cJSON_IsString(t)) return srv_fail(e, 400, "texts[%d]: expected a string", b);
        size_t k;
        fl_status st = fl_vocab_encode(vocab, t->valuestring, strlen(t->valuestring), NULL, 0, &k);
        if (st) return srv_fail(e, 400, "texts[%d]: %s", b, fl_last_error());
        if (k < 1) return srv_fail(e, 400, "texts[%d]: no tokens (empty or only white space)", b);
        if (k > (size_t)max_seq)
            return srv_fail(e, 413, "sequence length: texts[%d] has %zu tokens, the limit is %d (--max-seq)", b, k,
                            max_seq);
        if ((int)k > T) T = (int)k;
    }
    if (alloc_input(out, a, B, T, true, e)) return e->code;
    out->texts = true;
    b = 0;
    for (const cJSON *t = texts->child; t; t = t->next, b++) {
        size_t k;
        int32_t *row = out->tokens + (size_t)b * T;
        if (fl_vocab_encode(vocab, t->valuestring, strlen(t->valuestring), row, (size_t)T, &k))
            return srv_fail(e, 500, "texts[%d]: %s", b, fl_last_error());
        for (size_t i = 0; i < k; i++)
            if (row[i] < 0 || row[i] >= a->vocab)
                return srv_fail(e, 500, "texts[%d]: the tokenizer gave id %d, outside the model's vocabulary of %d", b,
                                (int)row[i], a->vocab);
        out->lengths[b] = (int32_t)k;
    }
    return 0;
}

int srv_decode_json(const char *body, size_t n, const fl_arch *a, const fl_vocab *vocab, bool stream, int max_seq,
                    int max_batch, srv_input *out, srv_err *e) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(body, n);
    int rc = 0;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= body && at <= body + n ? (size_t)(at - body) : 0;
        return srv_fail(e, 400, "malformed JSON near byte %zu", off);
    }
    if (!cJSON_IsObject(root)) {
        rc = srv_fail(e, 400, "the body must be a JSON object with \"inputs\"");
        goto done;
    }
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    const cJSON *lengths = cJSON_GetObjectItemCaseSensitive(root, "lengths");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(root, "state");
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(root, "texts");
    if (texts) {
        if (inputs || lengths) rc = srv_fail(e, 400, "\"texts\" comes alone: without \"inputs\" or \"lengths\"");
        else if (state && !cJSON_IsBool(state)) rc = srv_fail(e, 400, "\"state\" must be true or false");
        else if (stream && state) rc = srv_fail(e, 400, "a stream step takes only its frames (\"inputs\" or \"texts\")");
        else if (!(rc = decode_texts(texts, a, vocab, stream, max_seq, max_batch, out, e))) out->state = cJSON_IsTrue(state);
        goto done;
    }
    if (!cJSON_IsArray(inputs)) {
        rc = srv_fail(e, 400, "\"inputs\" is missing or not an array");
        goto done;
    }
    if (state && !cJSON_IsBool(state)) {
        rc = srv_fail(e, 400, "\"state\" must be true or false");
        goto done;
    }
    if (stream && (lengths || state)) {
        rc = srv_fail(e, 400, "a stream step takes only \"inputs\" (its frames)");
        goto done;
    }
    // rows: the B sequences (a stream step is one sequence: inputs itself).
    int B = stream ? 1 : cJSON_GetArraySize(inputs);
    if (B < 1) {
        rc = srv_fail(e, 400, "\"inputs\" is empty");
        goto done;
    }
    if (B > max_batch) {
        rc = srv_fail(e, 413, "batch: %d sequences, the limit is %d (--max-batch)", B, max_batch);
        goto done;
    }
    int T = 0;
    bool ragged = false;
    int b = 0;
    for (const cJSON *row = stream ? inputs : inputs->child; row; row = stream ? NULL : row->next, b++) {
        if (!cJSON_IsArray(row)) {
            rc = srv_fail(e, 400, "inputs[%d]: expected an array of time steps", b);
            goto done;
        }
        int len = cJSON_GetArraySize(row);
        if (len < 1) {
            rc = srv_fail(e, 400, stream ? "inputs: no frames" : "inputs[%d]: no time steps", b);
            goto done;
        }
        if (len > max_seq) {
            rc = srv_fail(e, 413, "sequence length: inputs[%d] has %d steps, the limit is %d (--max-seq)", b, len,
                          max_seq);
            goto done;
        }
        if (b > 0 && len != T) ragged = true;
        if (len > T) T = len;
    }
    bool has_len = ragged || (lengths && !cJSON_IsNull(lengths));
    if ((rc = alloc_input(out, a, B, T, has_len, e))) goto done;
    out->state = cJSON_IsTrue(state);
    b = 0;
    for (const cJSON *row = stream ? inputs : inputs->child; row; row = stream ? NULL : row->next, b++) {
        int len = cJSON_GetArraySize(row);
        if ((rc = take_row(row, b, len, a, out, stream, e))) goto done;
        if (has_len) out->lengths[b] = len;
    }
    if (lengths && !cJSON_IsNull(lengths)) {
        if (!cJSON_IsArray(lengths) || cJSON_GetArraySize(lengths) != B) {
            rc = srv_fail(e, 400, "\"lengths\" must be an array of %d integers (one per sequence)", B);
            goto done;
        }
        b = 0;
        for (const cJSON *v = lengths->child; v; v = v->next, b++) {
            double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (d != floor(d) || d < 1 || d > out->lengths[b]) {
                rc = srv_fail(e, 400, "lengths[%d] must be an integer in [1, %d] (the steps given)", b,
                              out->lengths[b]);
                goto done;
            }
            out->lengths[b] = (int32_t)d;
        }
    }
done:
    cJSON_Delete(root);
    if (rc) srv_input_free(out);
    return rc;
}

/* ---------------------------------------------------------------- .npy */

/* Find `'key':` in the header dictionary; returns the text after the colon (spaces skipped). */
static const char *npy_field(const char *h, size_t n, const char *key) {
    size_t k = strlen(key);
    for (size_t i = 0; i + k + 2 < n; i++) {
        if ((h[i] == '\'' || h[i] == '"') && !memcmp(h + i + 1, key, k) && h[i + 1 + k] == h[i]) {
            const char *p = h + i + k + 2;
            while (p < h + n && *p == ' ') p++;
            if (p < h + n && *p == ':') {
                p++;
                while (p < h + n && *p == ' ') p++;
                return p < h + n ? p : NULL; /* a value, not the end of the header */
            }
        }
    }
    return NULL;
}

int srv_decode_npy(const void *body, size_t n, const fl_arch *a, bool stream, int max_seq, int max_batch,
                   srv_input *out, srv_err *e) {
    memset(out, 0, sizeof *out);
    const unsigned char *p = body;
    if (n < 10 || memcmp(p, "\x93NUMPY", 6)) return srv_fail(e, 400, ".npy body: bad magic (expected \\x93NUMPY)");
    int major = p[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)p[8] | (size_t)p[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12) return srv_fail(e, 400, ".npy body: truncated header");
        hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
        hstart = 12;
    } else {
        return srv_fail(e, 400, ".npy body: format version %d is not 1, 2 or 3", major);
    }
    if (hlen > n - hstart) return srv_fail(e, 400, ".npy body: header of %zu bytes runs past the body", hlen);
    const char *h = (const char *)p + hstart;
    const char *descr = npy_field(h, hlen, "descr"), *fo = npy_field(h, hlen, "fortran_order"),
               *shape = npy_field(h, hlen, "shape");
    if (!descr || !fo || !shape) return srv_fail(e, 400, ".npy body: header lacks descr, fortran_order or shape");
    size_t left = hlen - (size_t)(descr - h);
    char dt = 0;
    size_t isize = 0;
    if (left >= 5 && (!memcmp(descr + 1, "<f4", 3) || !memcmp(descr + 1, "<i4", 3) || !memcmp(descr + 1, "<i8", 3)) &&
        (descr[0] == '\'' || descr[0] == '"') && descr[4] == descr[0]) {
        isize = (size_t)(descr[3] - '0');
        dt = descr[2] == 'f' ? 'f' : isize == 8 ? 'l' : 'i';
    } else {
        return srv_fail(e, 400, ".npy body: element type must be '<f4', '<i4' or '<i8'");
    }
    if ((size_t)(h + hlen - fo) < 5 || memcmp(fo, "False", 5))
        return srv_fail(e, 400, ".npy body: fortran_order must be False");
    if (*shape != '(') return srv_fail(e, 400, ".npy body: shape is not a tuple");
    int64_t dims[4];
    int nd = 0;
    const char *q = shape + 1, *end = h + hlen;
    while (q < end && *q != ')') {
        while (q < end && (*q == ' ' || *q == ',')) q++;
        if (q < end && *q == ')') break;
        if (q >= end || *q < '0' || *q > '9') return srv_fail(e, 400, ".npy body: malformed shape");
        int64_t v = 0;
        while (q < end && *q >= '0' && *q <= '9') {
            if (v > (int64_t)1 << 40) return srv_fail(e, 400, ".npy body: dimension too large");
            v = v * 10 + (*q++ - '0');
        }
        if (nd == 4) return srv_fail(e, 400, ".npy body: more than 4 dimensions");
        dims[nd++] = v;
    }
    if (q >= end) return srv_fail(e, 400, ".npy body: malformed shape");
    bool ids = a->vocab > 0;
    if (ids && dt == 'f') return srv_fail(e, 400, ".npy body: the model takes token ids (<i4 or <i8), got <f4");
    if (!ids && dt != 'f') return srv_fail(e, 400, ".npy body: the model takes float32 features (<f4), got integers");
    int want = (ids ? 2 : 3) - (stream ? 1 : 0);
    if (nd != want)
        return srv_fail(e, 400, ".npy body: expected %d dimensions (%s), got %d", want,
                        stream ? (ids ? "T" : "T, D") : (ids ? "B, T" : "B, T, D"), nd);
    int64_t B = stream ? 1 : dims[0], T = dims[stream ? 0 : 1];
    if (!ids && dims[nd - 1] != a->input)
        return srv_fail(e, 400, ".npy body: %lld features per step, the model takes %d", (long long)dims[nd - 1],
                        a->input);
    if (B < 1 || T < 1) return srv_fail(e, 400, ".npy body: empty batch or sequence");
    if (B > max_batch) return srv_fail(e, 413, "batch: %lld sequences, the limit is %d (--max-batch)", (long long)B, max_batch);
    if (T > max_seq)
        return srv_fail(e, 413, "sequence length: %lld steps, the limit is %d (--max-seq)", (long long)T, max_seq);
    size_t count = (size_t)B * (size_t)T * (ids ? 1 : (size_t)a->input);
    size_t data = hstart + hlen;
    if (n - data != count * isize)
        return srv_fail(e, 400, ".npy body: %zu data bytes, the shape needs %zu", n - data, count * isize);
    if (alloc_input(out, a, (int)B, (int)T, false, e)) return e->code;
    const unsigned char *src = p + data;
    for (size_t i = 0; i < count; i++) {
        if (dt == 'f') {
            float v;
            memcpy(&v, src + 4 * i, 4);
            if (!isfinite(v)) {
                srv_input_free(out);
                return srv_fail(e, 400, ".npy body: element %zu is not finite", i);
            }
            out->x[i] = v;
        } else {
            int64_t v;
            if (dt == 'i') {
                int32_t v32;
                memcpy(&v32, src + 4 * i, 4);
                v = v32;
            } else {
                memcpy(&v, src + 8 * i, 8);
            }
            if (v < 0 || v >= a->vocab) {
                srv_input_free(out);
                return srv_fail(e, 400, ".npy body: token id %lld at element %zu is not in [0, %d)", (long long)v, i,
                                a->vocab);
            }
            out->tokens[i] = (int32_t)v;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- encoding */

void srv_buf_put(srv_buf *b, const void *p, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        srv_buf_put(b, tmp, (size_t)k);
        return;
    }
    char *big = malloc((size_t)k + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    srv_buf_put(b, big, (size_t)k);
    free(big);
}

void srv_buf_free(srv_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Written by hand rather than through cJSON: a cJSON node per float costs ~64 bytes and outputs
 * run to millions of floats (B x T x vocabulary). */
void srv_json_array(srv_buf *b, const float *v, int ndim, const int64_t *shape) {
    if (ndim == 0) {
        char num[32];
        int k = snprintf(num, sizeof num, "%.9g", (double)*v);
        srv_buf_put(b, num, (size_t)k);
        return;
    }
    size_t inner = 1;
    for (int i = 1; i < ndim; i++) inner *= (size_t)shape[i];
    srv_buf_put(b, "[", 1);
    for (int64_t i = 0; i < shape[0]; i++) {
        if (i) srv_buf_put(b, ",", 1);
        srv_json_array(b, v + (size_t)i * inner, ndim - 1, shape + 1);
    }
    srv_buf_put(b, "]", 1);
}

void srv_npy_f32(srv_buf *b, const float *v, int ndim, const int64_t *shape) {
    char dict[160];
    int k = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld%s", (long long)shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        count *= (size_t)shape[i];
    }
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    // Pad with spaces so that the data starts on a 64-byte boundary, header ending in '\n'.
    size_t total = 10 + (size_t)k + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)k + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    srv_buf_put(b, pre, 10);
    srv_buf_put(b, dict, (size_t)k);
    for (size_t i = 0; i < pad; i++) srv_buf_put(b, " ", 1);
    srv_buf_put(b, "\n", 1);
    srv_buf_put(b, v, count * sizeof *v);
}
