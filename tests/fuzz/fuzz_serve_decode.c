/* libFuzzer harness: fastlstm serve's request decoders (cli/serve/decode.c), the code that reads
 * every byte a client sends. The first input byte picks the decoder (JSON or .npy), the kind of
 * request (predict or stream step) and the model (features D = 3, or token ids with vocabulary 10,
 * with or without a tokenizer: a word vocabulary, or a char one, built once by the library, for
 * "texts"); the rest is the body. Checks the contract: an error is a 4xx/5xx with a message and a
 * zeroed input; a success has B, T within the limits, lengths in [1, T], ids in range, finite
 * features, and its features survive a round trip through the JSON encoder and decoder unchanged. */
#include "serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SEQ = 64, MAX_BATCH = 8 };

static fl_vocab *vocabs[2]; /* word, char: built once (LLVMFuzzerInitialize) */

static fl_vocab *build_vocab(const char *corpus, fl_token_mode mode) {
    char path[] = "/tmp/fl_fuzz_vocab_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    FILE *f = fdopen(fd, "w");
    if (!f) abort();
    fputs(corpus, f);
    fclose(f);
    fl_vocab *v = NULL;
    if (fl_vocab_build(path, mode, 0, &v)) abort();
    remove(path);
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    vocabs[0] = build_vocab("the cat sat on the mat\nthe dog\n", FL_TOKENS_WORD);
    vocabs[1] = build_vocab("abc d\xc3\xa9\n", FL_TOKENS_CHAR);
    return 0;
}

static void check_ok(const srv_input *in, const fl_arch *a, bool stream) {
    if (in->B < 1 || in->B > (stream ? 1 : MAX_BATCH) || in->T < 1 || in->T > MAX_SEQ) abort();
    if (!(a->vocab > 0 ? in->tokens && !in->x : in->x && !in->tokens)) abort();
    if (in->texts && (!in->lengths || a->vocab == 0)) abort();
    size_t n = (size_t)in->B * in->T;
    for (size_t i = 0; i < n; i++) {
        if (a->vocab > 0 && (in->tokens[i] < 0 || in->tokens[i] >= a->vocab)) abort();
        for (int d = 0; a->vocab == 0 && d < in->D; d++)
            if (!isfinite(in->x[i * in->D + d])) abort();
    }
    for (int b = 0; in->lengths && b < in->B; b++)
        if (in->lengths[b] < 1 || in->lengths[b] > in->T) abort();
}

/* Features -> {"inputs": ...} -> decode: the same floats back. */
static void round_trip(const srv_input *in, const fl_arch *a, bool stream) {
    srv_buf b = {0};
    int64_t shape[3] = {in->B, in->T, in->D};
    srv_buf_printf(&b, "{\"inputs\":");
    if (stream) srv_json_array(&b, in->x, 2, shape + 1);
    else srv_json_array(&b, in->x, 3, shape);
    srv_buf_put(&b, "}", 1);
    if (b.failed) abort();
    srv_input back;
    srv_err e;
    if (srv_decode_json(b.p, b.len, a, NULL, stream, MAX_SEQ, MAX_BATCH, &back, &e)) abort();
    if (back.B != in->B || back.T != in->T || memcmp(back.x, in->x, (size_t)in->B * in->T * in->D * sizeof *in->x))
        abort();
    srv_input_free(&back);
    srv_buf_free(&b);
    // And the .npy encoder produces a file the .npy decoder takes (as a stream: (T, D)).
    srv_npy_f32(&b, in->x, 2, shape + 1);
    if (b.failed || srv_decode_npy(b.p, b.len, a, true, MAX_SEQ, MAX_BATCH, &back, &e)) abort();
    srv_input_free(&back);
    srv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const fl_arch feat = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_NONE};
    const fl_arch ids = {.vocab = 10, .input = 4, .hidden = 4, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 10};
    bool npy = data[0] & 1, stream = data[0] & 2;
    const fl_arch *a = data[0] & 4 ? &ids : &feat;
    const fl_vocab *vocab = data[0] & 8 ? vocabs[data[0] >> 4 & 1] : NULL;
    // The JSON decoder takes a length, so the body needs no terminator: copy it into an exact-size
    // buffer so that ASan sees any read past its end.
    size_t n = size - 1;
    char *body = malloc(n ? n : 1);
    if (!body) return 0;
    memcpy(body, data + 1, n);
    srv_input in;
    srv_err e = {0};
    int rc = npy ? srv_decode_npy(body, n, a, stream, MAX_SEQ, MAX_BATCH, &in, &e)
                 : srv_decode_json(body, n, a, vocab, stream, MAX_SEQ, MAX_BATCH, &in, &e);
    if (rc) {
        if (rc < 400 || rc > 599 || rc != e.code || !e.msg[0] || in.x || in.tokens || in.lengths) abort();
    } else {
        check_ok(&in, a, stream);
        if (a->vocab == 0) round_trip(&in, a, stream);
        srv_input_free(&in);
    }
    free(body);
    return 0;
}
