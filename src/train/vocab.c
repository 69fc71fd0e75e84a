/* Vocabularies for text models: word or character tokens, frequency-capped, with "<unk>" as id 0;
 * stored in a model as JSON {"type": "word"|"char", "tokens": [...]} plus, for a text classifier
 * (labelled text, src/train/dataset.c), "labels": [...] — the class names in class-id order. */
#include "train_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNK "<unk>"
#define EOS "<eos>"

struct fl_vocab {
    fl_token_mode mode;
    int n;
    char **tok;      /* [n], each owned */
    int32_t *table;  /* open addressing: id or -1; cap entries */
    size_t cap;
    int n_labels;    /* text classifier: class names, each owned; 0 for a language model */
    char **labels;
};

int fl_vocab_size(const fl_vocab *v) { return v ? v->n : 0; }

static int32_t vocab_lookup(const fl_vocab *v, const char *s, size_t n);

void fl_vocab_free(fl_vocab *v) {
    if (!v) return;
    for (int i = 0; v->tok && i < v->n; i++) fl_free(v->tok[i]);
    fl_free(v->tok);
    fl_free(v->table);
    for (int i = 0; v->labels && i < v->n_labels; i++) fl_free(v->labels[i]);
    fl_free(v->labels);
    fl_free(v);
}

int fl_vocab_num_labels(const fl_vocab *v) { return v ? v->n_labels : 0; }
const char *fl_vocab_label(const fl_vocab *v, int i) { return v && i >= 0 && i < v->n_labels ? v->labels[i] : NULL; }
fl_token_mode fl_vocab_mode(const fl_vocab *v) { return v ? v->mode : FL_TOKENS_WORD; }

int32_t fl_vocab_find(const fl_vocab *v, const char *s, size_t n) { return vocab_lookup(v, s, n); }

fl_status fl_vocab_set_labels(fl_vocab *v, char **labels, int n) {
    char **c = fl_calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    if (!c) return fl_fail(FL_ERR_NOMEM, "out of memory for label names");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(labels[i]) + 1;
        if (!(c[i] = fl_malloc(len))) {
            for (int k = 0; k < i; k++) fl_free(c[k]);
            fl_free(c);
            return fl_fail(FL_ERR_NOMEM, "out of memory for label names");
        }
        memcpy(c[i], labels[i], len);
    }
    for (int i = 0; v->labels && i < v->n_labels; i++) fl_free(v->labels[i]);
    fl_free(v->labels);
    v->labels = c;
    v->n_labels = n;
    return FL_OK;
}

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* Slot of token s[0..n) in a table of ids into toks: its id's slot, or an empty slot (-1). */
static size_t find_slot(int32_t *table, size_t cap, char **toks, const char *s, size_t n) {
    size_t i = (size_t)hash_str(s, n) & (cap - 1);
    while (table[i] >= 0) {
        const char *t = toks[table[i]];
        if (strlen(t) == n && !memcmp(t, s, n)) return i;
        i = (i + 1) & (cap - 1);
    }
    return i;
}

static int32_t vocab_lookup(const fl_vocab *v, const char *s, size_t n) {
    size_t i = find_slot(v->table, v->cap, v->tok, s, n);
    return v->table[i];
}

/* Read a whole file. */
fl_status fl_read_text_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = fl_malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = fl_malloc(2 * cap + 1);
        if (nb) memcpy(nb, buf, n);
        fl_free(buf);
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) return fl_fail(FL_ERR_NOMEM, "%s: out of memory reading the file", path);
    if (err) {
        fl_free(buf);
        return fl_fail(FL_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return FL_OK;
}

/* Length of the UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t k = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return k;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Next token of text[*pos..len): start and length; returns false at the end. In word mode a
 * newline yields "<eos>". *bad is set for invalid UTF-8 in char mode. */
bool fl_text_next_token(const char *text, size_t len, size_t *pos, fl_token_mode mode, const char **s,
                       size_t *n, bool *bad) {
    size_t p = *pos;
    if (mode == FL_TOKENS_CHAR) {
        if (p >= len) return false;
        size_t k = utf8_len((const unsigned char *)text + p, len - p);
        if (k == 0) {
            *bad = true;
            return false;
        }
        *s = text + p;
        *n = k;
        *pos = p + k;
        return true;
    }
    while (p < len && is_space(text[p]) && text[p] != '\n') p++;
    if (p >= len) return false;
    if (text[p] == '\n') {
        *s = EOS;
        *n = strlen(EOS);
        *pos = p + 1;
        return true;
    }
    size_t q = p;
    while (q < len && !is_space(text[q])) q++;
    *s = text + p;
    *n = q - p;
    *pos = q;
    return true;
}

typedef struct counted {
    int32_t count, first;
} counted;


/* qsort has no context argument in C11: sort indices with a file-level comparator on a copy. */
typedef struct order {
    int32_t id, count, first;
} order;

static int cmp_order(const void *a, const void *b) {
    const order *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

static fl_status vocab_alloc(fl_vocab *v, int n) {
    v->cap = 16;
    while (v->cap < 2 * (size_t)n + 2) v->cap *= 2;
    v->tok = fl_calloc((size_t)n, sizeof(char *));
    v->table = fl_malloc(v->cap * sizeof(int32_t));
    if (!v->tok || !v->table) return fl_fail(FL_ERR_NOMEM, "out of memory building a vocabulary");
    memset(v->table, 0xff, v->cap * sizeof(int32_t));
    return FL_OK;
}

static fl_status vocab_add(fl_vocab *v, const char *s, size_t n) {
    char *c = fl_malloc(n + 1);
    if (!c) return fl_fail(FL_ERR_NOMEM, "out of memory building a vocabulary");
    memcpy(c, s, n);
    c[n] = '\0';
    v->tok[v->n] = c;
    size_t slot = find_slot(v->table, v->cap, v->tok, s, n);
    if (v->table[slot] < 0) v->table[slot] = v->n; /* duplicates (only from foreign JSON) keep the first id */
    v->n++;
    return FL_OK;
}

fl_status fl_vocab_build(const char *path, fl_token_mode mode, int max_size, fl_vocab **out) {
    if (!path || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_vocab_build");
    *out = NULL;
    if (mode != FL_TOKENS_WORD && mode != FL_TOKENS_CHAR) return fl_fail(FL_ERR_ARG, "unknown token mode");
    char *text;
    size_t len;
    fl_status st = fl_read_text_file(path, &text, &len);
    if (st) return st;
    st = fl_vocab_build_buffer(text, len, path, mode, max_size, out);
    fl_free(text);
    return st;
}

fl_status fl_vocab_build_buffer(const char *text, size_t len, const char *path, fl_token_mode mode,
                                int max_size, fl_vocab **out) {
    *out = NULL;
    fl_status st = FL_OK;
    /* Pass 1: distinct tokens with counts and first positions, in a growing table. */
    size_t cap = 1024, distinct = 0;
    char **toks = fl_calloc(cap / 2, sizeof(char *));
    counted *cnt = fl_calloc(cap / 2, sizeof(counted));
    int32_t *table = fl_malloc(cap * sizeof(int32_t));
    fl_vocab *v = NULL;
    order *ord = NULL;
    if (!toks || !cnt || !table) {
        st = fl_fail(FL_ERR_NOMEM, "%s: out of memory building the vocabulary", path);
        goto done;
    }
    memset(table, 0xff, cap * sizeof(int32_t));
    size_t pos = 0, total = 0;
    const char *s;
    size_t n;
    bool bad = false;
    while (fl_text_next_token(text, len, &pos, mode, &s, &n, &bad)) {
        total++;
        if (n == strlen(UNK) && !memcmp(s, UNK, n)) continue; /* the corpus's own <unk> is ours */
        size_t slot = find_slot(table, cap, toks, s, n);
        if (table[slot] >= 0) {
            cnt[table[slot]].count++;
            continue;
        }
        if (2 * (distinct + 1) > cap) { /* grow and rehash */
            size_t ncap = cap * 2;
            char **nt = fl_calloc(ncap / 2, sizeof(char *));
            counted *nc = fl_calloc(ncap / 2, sizeof(counted));
            int32_t *ntab = fl_malloc(ncap * sizeof(int32_t));
            if (!nt || !nc || !ntab) {
                fl_free(nt), fl_free(nc), fl_free(ntab);
                st = fl_fail(FL_ERR_NOMEM, "%s: out of memory building the vocabulary", path);
                goto done;
            }
            memcpy(nt, toks, distinct * sizeof(char *));
            memcpy(nc, cnt, distinct * sizeof(counted));
            memset(ntab, 0xff, ncap * sizeof(int32_t));
            for (size_t i = 0; i < distinct; i++)
                ntab[find_slot(ntab, ncap, nt, nt[i], strlen(nt[i]))] = (int32_t)i;
            fl_free(toks), fl_free(cnt), fl_free(table);
            toks = nt, cnt = nc, table = ntab, cap = ncap;
            slot = find_slot(table, cap, toks, s, n);
        }
        char *c = fl_malloc(n + 1);
        if (!c) {
            st = fl_fail(FL_ERR_NOMEM, "%s: out of memory building the vocabulary", path);
            goto done;
        }
        memcpy(c, s, n);
        c[n] = '\0';
        toks[distinct] = c;
        cnt[distinct] = (counted){1, (int32_t)distinct};
        table[slot] = (int32_t)distinct++;
        if (distinct >= (size_t)INT32_MAX / 4) {
            st = fl_fail(FL_ERR_DATA, "%s: too many distinct tokens", path);
            goto done;
        }
    }
    if (bad) {
        st = fl_fail(FL_ERR_DATA, "%s: invalid UTF-8 at byte %zu", path, pos);
        goto done;
    }
    if (total == 0) {
        st = fl_fail(FL_ERR_DATA, "%s: empty corpus (no tokens)", path);
        goto done;
    }
    if (distinct < 2) {
        st = fl_fail(FL_ERR_DATA, "%s: vocabulary of %zu distinct token(s); a language model needs at least 2",
                     path, distinct);
        goto done;
    }
    ord = fl_malloc(distinct * sizeof(order));
    v = fl_calloc(1, sizeof *v);
    if (!ord || !v) {
        st = fl_fail(FL_ERR_NOMEM, "%s: out of memory building the vocabulary", path);
        goto done;
    }
    for (size_t i = 0; i < distinct; i++) ord[i] = (order){(int32_t)i, cnt[i].count, cnt[i].first};
    qsort(ord, distinct, sizeof(order), cmp_order);
    size_t keep = distinct;
    if (max_size > 0 && keep > (size_t)max_size - 1) keep = max_size > 1 ? (size_t)max_size - 1 : 0;
    if (keep < 1) {
        st = fl_fail(FL_ERR_ARG, "vocabulary cap %d leaves no token besides <unk>", max_size);
        goto done;
    }
    v->mode = mode;
    if ((st = vocab_alloc(v, (int)keep + 1))) goto done;
    if ((st = vocab_add(v, UNK, strlen(UNK)))) goto done;
    for (size_t i = 0; i < keep; i++) {
        const char *t = toks[ord[i].id];
        if ((st = vocab_add(v, t, strlen(t)))) goto done;
    }
done:
    for (size_t i = 0; toks && i < distinct; i++) fl_free(toks[i]);
    fl_free(toks);
    fl_free(cnt);
    fl_free(table);
    fl_free(ord);
    if (st) {
        fl_vocab_free(v);
        return st;
    }
    *out = v;
    return FL_OK;
}

fl_status fl_vocab_attach(const fl_vocab *v, fl_model *m) {
    if (!v || !m) return fl_fail(FL_ERR_ARG, "NULL argument to fl_vocab_attach");
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!root || !arr) {
        cJSON_Delete(root);
        cJSON_Delete(arr);
        return fl_fail(FL_ERR_NOMEM, "out of memory writing the vocabulary");
    }
    cJSON_AddItemToObject(root, "tokens", arr);
    bool ok = cJSON_AddStringToObject(root, "type", v->mode == FL_TOKENS_CHAR ? "char" : "word") != NULL;
    for (int i = 0; ok && i < v->n; i++) {
        cJSON *s = cJSON_CreateString(v->tok[i]);
        ok = s && cJSON_AddItemToArray(arr, s);
    }
    if (ok && v->n_labels > 0) {
        cJSON *lab = cJSON_AddArrayToObject(root, "labels");
        ok = lab != NULL;
        for (int i = 0; ok && i < v->n_labels; i++) {
            cJSON *s = cJSON_CreateString(v->labels[i]);
            ok = s && cJSON_AddItemToArray(lab, s);
        }
    }
    char *txt = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!txt) return fl_fail(FL_ERR_NOMEM, "out of memory writing the vocabulary");
    size_t n = strlen(txt) + 1;
    char *copy = fl_malloc(n);
    if (copy) memcpy(copy, txt, n);
    cJSON_free(txt);
    if (!copy) return fl_fail(FL_ERR_NOMEM, "out of memory writing the vocabulary");
    fl_free(m->tokenizer);
    m->tokenizer = copy;
    return FL_OK;
}

fl_status fl_vocab_from_model(const fl_model *m, fl_vocab **out) {
    if (!m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_vocab_from_model");
    *out = NULL;
    if (!m->tokenizer) return fl_fail(FL_ERR_FORMAT, "the model has no vocabulary (not a text model)");
    cJSON *root = cJSON_Parse(m->tokenizer);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    fl_status st = FL_OK;
    fl_vocab *v = NULL;
    if (!root || !cJSON_IsString(type) || !cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 2 ||
        (strcmp(type->valuestring, "word") && strcmp(type->valuestring, "char"))) {
        st = fl_fail(FL_ERR_FORMAT, "model vocabulary: expected {\"type\": \"word\"|\"char\", \"tokens\": [...]}");
        goto done;
    }
    int n = cJSON_GetArraySize(arr);
    v = fl_calloc(1, sizeof *v);
    if (!v) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory reading the vocabulary");
        goto done;
    }
    v->mode = strcmp(type->valuestring, "char") ? FL_TOKENS_WORD : FL_TOKENS_CHAR;
    if ((st = vocab_alloc(v, n))) goto done;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it)) {
            st = fl_fail(FL_ERR_FORMAT, "model vocabulary: token %d is not a string", v->n);
            goto done;
        }
        if ((st = vocab_add(v, it->valuestring, strlen(it->valuestring)))) goto done;
    }
    if (strcmp(v->tok[0], UNK)) {
        st = fl_fail(FL_ERR_FORMAT, "model vocabulary: token 0 must be \"%s\"", UNK);
        goto done;
    }
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (lab) {
        int nl = cJSON_IsArray(lab) ? cJSON_GetArraySize(lab) : 0;
        if (nl < 2) {
            st = fl_fail(FL_ERR_FORMAT, "model vocabulary: \"labels\" must be an array of >= 2 names");
            goto done;
        }
        if (!(v->labels = fl_calloc((size_t)nl, sizeof(char *)))) {
            st = fl_fail(FL_ERR_NOMEM, "out of memory reading the label names");
            goto done;
        }
        cJSON_ArrayForEach(it, lab) {
            if (!cJSON_IsString(it)) {
                st = fl_fail(FL_ERR_FORMAT, "model vocabulary: label %d is not a string", v->n_labels);
                goto done;
            }
            size_t len = strlen(it->valuestring) + 1;
            if (!(v->labels[v->n_labels] = fl_malloc(len))) {
                st = fl_fail(FL_ERR_NOMEM, "out of memory reading the label names");
                goto done;
            }
            memcpy(v->labels[v->n_labels++], it->valuestring, len);
        }
    }
done:
    cJSON_Delete(root);
    if (st) {
        fl_vocab_free(v);
        return st;
    }
    *out = v;
    return FL_OK;
}

fl_status fl_vocab_encode(const fl_vocab *v, const char *text, size_t len, int32_t *ids, size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!v || !n || (!text && len) || (!ids && cap)) return fl_fail(FL_ERR_ARG, "NULL argument to fl_vocab_encode");
    size_t pos = 0, k = 0, sn;
    const char *s;
    bool bad = false;
    while (fl_text_next_token(text, len, &pos, v->mode, &s, &sn, &bad)) {
        if (k < cap) {
            int32_t id = vocab_lookup(v, s, sn);
            ids[k] = id < 0 ? 0 : id;
        }
        k++;
    }
    if (bad) return fl_fail(FL_ERR_DATA, "invalid UTF-8 at byte %zu of the text", pos);
    *n = k;
    return FL_OK;
}

fl_status fl_dataset_load_text(const char *path, const fl_vocab *v, fl_dataset **out) {
    if (!path || !v || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dataset_load_text");
    *out = NULL;
    char *text;
    size_t len;
    fl_status st = fl_read_text_file(path, &text, &len);
    if (st) return st;
    size_t cap = 1024, n = 0, pos = 0, sn;
    int32_t *ids = fl_malloc(cap * sizeof(int32_t));
    const char *s;
    bool bad = false;
    while (ids && fl_text_next_token(text, len, &pos, v->mode, &s, &sn, &bad)) {
        if (n == cap) {
            int32_t *ni = fl_malloc(2 * cap * sizeof(int32_t));
            if (ni) memcpy(ni, ids, n * sizeof(int32_t));
            fl_free(ids);
            ids = ni;
            cap *= 2;
            if (!ids) break;
        }
        int32_t id = vocab_lookup(v, s, sn);
        ids[n++] = id < 0 ? 0 : id;
    }
    fl_free(text);
    if (!ids) return fl_fail(FL_ERR_NOMEM, "%s: out of memory tokenizing", path);
    if (bad) st = fl_fail(FL_ERR_DATA, "%s: invalid UTF-8 at byte %zu", path, pos);
    else if (n < 2) st = fl_fail(FL_ERR_DATA, "%s: %zu token(s); a language model needs at least 2", path, n);
    else st = fl_dataset_lm(ids, n, v->n, out);
    fl_free(ids);
    return st;
}
