/*
 * test_tokenizer.c: the SentencePiece and byte-level BPE tokenizers against llama.cpp's results.
 *
 *   1. Synthetic vocabularies written with the GGUF writer (always run): SentencePiece merges by score, byte
 *      fallback, unknown tokens, user-defined and control tokens with and without parse_special, the buffer
 *      protocol, invalid metadata rejected with a message, and the load time of a 262144-token vocabulary.
 *   2. llama.cpp's tokenizer test cases (../shared/fixtures/tokenizer, llama-spm and gpt-2): every case must
 *      give exactly the reference ids. Each case is the text between "\n__ggml_vocab_test__\n" separators
 *      (so the newline before a separator is not part of the case); the .out has one line of ids per case.
 *   3. The prompts of the model fixtures (../shared/fixtures/llm) tokenized with BOS must equal their
 *      .tokens files.
 *   4. Round trips (detokenize(tokenize(s)) == s), invalid UTF-8, parse_special and end-of-generation
 *      tokens on the real vocabularies.
 * Parts 2-4 are skipped (exit 77) when ../shared is absent.
 */
#include "banter.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "llm/vocab.h"
#include "llm/vocab_impl.h"
#include "test.h"

#include <stdint.h>

/* ------------------------------------------------------------------------------------------------------------
 * Helpers
 */

static char *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) buf[n > 0 ? n : 0] = 0;
    *size = n > 0 ? (size_t)n : 0;
    return buf;
}

static struct llm_vocab *load_vocab(const char *path)
{
    struct gguf_file *f = NULL;
    char err[256];
    if (gguf_open(path, &f, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return NULL;
    }
    struct llm_vocab *v = NULL;
    if (llm_vocab_load(f, &v, err, sizeof err) != 0) fprintf(stderr, "%s: %s\n", path, err);
    gguf_close(f);
    return v;
}

/* Tokenizes into a static buffer; returns the count (or -1 on error). */
static int32_t toks[65536];
static long tokenize(const struct llm_vocab *v, const char *s, size_t len, bool bos, bool special)
{
    size_t n = 0;
    int rc = llm_tokenize(v, s, len, bos, special, toks, sizeof toks / sizeof toks[0], &n);
    return rc == 0 ? (long)n : -1;
}

static long tokenize_str(const struct llm_vocab *v, const char *s, bool bos, bool special)
{
    return tokenize(v, s, strlen(s), bos, special);
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Parses space-separated ids from s[0..len) into out; returns the count. */
static size_t parse_ids(const char *s, size_t len, int32_t *out, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r'))
            i++;
        if (i >= len) break;
        long x = 0;
        bool neg = s[i] == '-';
        if (neg) i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            x = x * 10 + (s[i++] - '0');
        out[n++] = (int32_t)(neg ? -x : x);
        while (i < len && s[i] != ' ' && s[i] != '\n')
            i++;
    }
    return n;
}

/* Tokenizes then detokenizes and checks the text comes back. */
static void check_round_trip(const struct llm_vocab *v, const char *s, size_t len)
{
    long n = tokenize(v, s, len, false, false);
    CHECK(n >= 0);
    if (n < 0) return;
    static char buf[1 << 16];
    long m = llm_detokenize(v, toks, (size_t)n, false, buf, sizeof buf);
    CHECK_INT_EQ(m, (long)len);
    if (m == (long)len && memcmp(buf, s, len) != 0) {
        test_n_failed++;
        fprintf(stderr, "round trip changed \"%.*s\" into \"%s\"\n", (int)len, s, buf);
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * 1. Synthetic vocabularies
 */

struct tok_def {
    const char *text;
    float score;
    int type;
};

/* Writes a vocabulary to a temporary file and loads it; extra metadata through the callback. */
static struct llm_vocab *synth_vocab(const char *model, const struct tok_def *defs, size_t n,
                                     const char **merges, size_t n_merges,
                                     void (*extra)(struct gguf_writer *), int *rc_out, char *err,
                                     size_t err_len)
{
    struct gguf_writer *w = gguf_writer_new();
    BANTER_ASSERT(w);
    struct gguf_str *strs = calloc(n ? n : 1, sizeof *strs);
    float *scores = calloc(n ? n : 1, sizeof *scores);
    int32_t *types = calloc(n ? n : 1, sizeof *types);
    for (size_t i = 0; i < n; i++) {
        strs[i] = (struct gguf_str){defs[i].text, strlen(defs[i].text)};
        scores[i] = defs[i].score;
        types[i] = defs[i].type;
    }
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, n);
    if (merges) {
        struct gguf_str *ms = calloc(n_merges ? n_merges : 1, sizeof *ms);
        for (size_t i = 0; i < n_merges; i++)
            ms[i] = (struct gguf_str){merges[i], strlen(merges[i])};
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", ms, n_merges);
        free(ms);
    }
    if (extra) extra(w);
    char path[256];
    snprintf(path, sizeof path, "/tmp/banter_test_tok_%ld.gguf", (long)getpid());
    char werr[256];
    int rc = gguf_writer_write(w, path, werr, sizeof werr);
    BANTER_ASSERT(rc == 0);
    gguf_writer_free(w);
    free(strs);
    free(scores);
    free(types);

    struct gguf_file *f = NULL;
    rc = gguf_open(path, &f, err, err_len);
    BANTER_ASSERT(rc == 0);
    struct llm_vocab *v = NULL;
    rc = llm_vocab_load(f, &v, err, err_len);
    if (rc_out) *rc_out = rc;
    gguf_close(f);
    unlink(path);
    return v;
}

static void no_space_prefix(struct gguf_writer *w)
{
    gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
}

static void test_synthetic_spm(void)
{
    /* ids:                0        1       2        3                4 */
    struct tok_def defs[] = {{"<unk>", 0, 2},
                             {"<s>", 0, 3},
                             {"</s>", 0, 3},
                             {"<ctl>", 0, 3},
                             {"<user>", 0, 4},
                             /* 5 .. */
                             {"\xe2\x96\x81", -1, 1},
                             {"a", -1, 1},
                             {"b", -1, 1},
                             {"c", -1, 1},
                             {"ab", -5, 1},
                             /* 10 .. */
                             {"bc", -2, 1},
                             {"abc", -3, 1},
                             {"\xe2\x96\x81"
                              "a",
                              -4, 1},
                             {"<0x41>", 0, 6},
                             {"<0xC3>", 0, 6},
                             /* 15 */
                             {"<0xA9>", 0, 6},
                             {"<unused>", 0, 5}};
    size_t n = sizeof defs / sizeof defs[0];
    char err[256];
    struct llm_vocab *v = synth_vocab("llama", defs, n, NULL, 0, no_space_prefix, NULL, err, sizeof err);
    CHECK(v != NULL);
    if (!v) return;
    CHECK_INT_EQ(llm_vocab_n_tokens(v), (long)n);
    CHECK_INT_EQ(llm_vocab_bos(v), 1);
    CHECK_INT_EQ(llm_vocab_eos(v), 2);
    CHECK_INT_EQ(llm_vocab_unk(v), 0);
    CHECK(llm_vocab_add_bos(v));
    CHECK_INT_EQ(llm_vocab_find(v, "abc", 3), 11);
    CHECK_INT_EQ(llm_vocab_find(v, "abd", 3), -1);

    /* "abc": bc (-2) beats ab (-5), then a+bc = abc (-3). */
    long k = tokenize_str(v, "abc", false, false);
    CHECK_INT_EQ(k, 1);
    CHECK_INT_EQ(toks[0], 11);
    /* " ab": ▁a (-4) beats ab (-5); the pair (▁a, b) is no token, so: ▁a b. */
    k = tokenize_str(v, " ab", false, false);
    CHECK_INT_EQ(k, 2);
    CHECK_INT_EQ(toks[0], 12);
    CHECK_INT_EQ(toks[1], 7);
    /* Equal scores merge the leftmost pair first: "bcbc" -> bc bc. */
    k = tokenize_str(v, "bcbc", false, false);
    CHECK_INT_EQ(k, 2);
    CHECK_INT_EQ(toks[0], 10);
    CHECK_INT_EQ(toks[1], 10);
    /* Byte fallback: "A" has a byte token, "é" (C3 A9) too; "Z" has none and becomes <unk>. */
    k = tokenize_str(v, "A\xc3\xa9Z", true, false);
    CHECK_INT_EQ(k, 5);
    CHECK_INT_EQ(toks[0], 1);
    CHECK_INT_EQ(toks[1], 13);
    CHECK_INT_EQ(toks[2], 14);
    CHECK_INT_EQ(toks[3], 15);
    CHECK_INT_EQ(toks[4], 0);

    /* User-defined tokens are split out always, control tokens only with parse_special. */
    k = tokenize_str(v, "a<user>b<ctl>", false, false);
    CHECK(k >= 3);
    CHECK_INT_EQ(toks[0], 6);
    CHECK_INT_EQ(toks[1], 4);
    CHECK_INT_EQ(toks[2], 7);
    for (long i = 3; i < k; i++)
        CHECK(toks[i] != 3);
    k = tokenize_str(v, "a<user>b<ctl>", false, true);
    CHECK_INT_EQ(k, 4);
    CHECK_INT_EQ(toks[3], 3);

    /* Buffer protocol: too small gives INVALID_ARG and the full count. */
    int32_t small[2];
    size_t n_out = 0;
    CHECK_INT_EQ(llm_tokenize(v, "a b c", 5, true, false, small, 2, &n_out), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(n_out, 6);
    CHECK_INT_EQ(small[0], 1);
    CHECK_INT_EQ(llm_tokenize(v, "", 0, false, false, NULL, 0, &n_out), 0);
    CHECK_INT_EQ(n_out, 0);

    /* Pieces. */
    char buf[16];
    CHECK_INT_EQ(llm_token_to_piece(v, 12, false, buf, sizeof buf), 2);
    CHECK(memcmp(buf, " a", 2) == 0);
    CHECK_INT_EQ(llm_token_to_piece(v, 14, false, buf, sizeof buf), 1);
    CHECK_INT_EQ((unsigned char)buf[0], 0xC3);
    CHECK_INT_EQ(llm_token_to_piece(v, 3, false, buf, sizeof buf), 0);
    CHECK_INT_EQ(llm_token_to_piece(v, 3, true, buf, sizeof buf), 5);
    CHECK_INT_EQ(llm_token_to_piece(v, 4, false, buf, sizeof buf), 6);
    CHECK_INT_EQ(llm_token_to_piece(v, 16, true, buf, sizeof buf), 0);
    CHECK_INT_EQ(llm_token_to_piece(v, 11, false, buf, 1), 3); /* truncated, full length reported */
    CHECK_INT_EQ(llm_token_to_piece(v, -1, false, buf, sizeof buf), -1);
    CHECK_INT_EQ(llm_token_to_piece(v, (int32_t)n, false, buf, sizeof buf), -1);
    CHECK(llm_token_is_eog(v, 2));
    CHECK(!llm_token_is_eog(v, 1));
    llm_vocab_free(v);
}

static void test_synthetic_bpe(void)
{
    /* Byte-level: "Ġ" (U+0120) stands for a space. */
    struct tok_def defs[] = {{"h", 0, 1},
                             {"e", 0, 1},
                             {"l", 0, 1},
                             {"o", 0, 1},
                             {"\xc4\xa0", 0, 1},
                             {"he", 0, 1},
                             {"ll", 0, 1},
                             {"hell", 0, 1},
                             {"hello", 0, 1},
                             {"\xc4\xa0h", 0, 1},
                             {"<|endoftext|>", 0, 3}};
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 h"};
    char err[256];
    struct llm_vocab *v =
        synth_vocab("gpt2", defs, sizeof defs / sizeof defs[0], merges, 5, NULL, NULL, err, sizeof err);
    CHECK(v != NULL);
    if (!v) return;
    CHECK_STR_EQ(llm_vocab_describe(v), "bpe:gpt-2");
    CHECK(!llm_vocab_add_bos(v));
    long k = tokenize_str(v, "hello", true, false);
    CHECK_INT_EQ(k, 1);
    CHECK_INT_EQ(toks[0], 8);
    /* " hello" is one word " hello": Ġ h merges (rank 4) only after h e (rank 0) is taken: Ġ he... */
    k = tokenize_str(v, " hello", false, false);
    CHECK_INT_EQ(k, 2);
    CHECK_INT_EQ(toks[0], 4);
    CHECK_INT_EQ(toks[1], 8);
    CHECK(llm_token_is_eog(v, 10));
    CHECK_INT_EQ(llm_vocab_eot(v), 10);
    k = tokenize_str(v, "<|endoftext|>", false, true);
    CHECK_INT_EQ(k, 1);
    CHECK_INT_EQ(toks[0], 10);
    char buf[16];
    CHECK_INT_EQ(llm_token_to_piece(v, 9, false, buf, sizeof buf), 2);
    CHECK(memcmp(buf, " h", 2) == 0);
    llm_vocab_free(v);

    /* Malformed metadata is refused with a message. */
    const char *bad_merges[] = {"h e", "nospace"};
    int rc = 0;
    v = synth_vocab("gpt2", defs, sizeof defs / sizeof defs[0], bad_merges, 2, NULL, &rc, err, sizeof err);
    CHECK(v == NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    CHECK(strstr(err, "merges") != NULL);
    v = synth_vocab("gpt2", defs, sizeof defs / sizeof defs[0], NULL, 0, NULL, &rc, err, sizeof err);
    CHECK(v == NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    v = synth_vocab("bert", defs, sizeof defs / sizeof defs[0], NULL, 0, NULL, &rc, err, sizeof err);
    CHECK(v == NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_UNSUPPORTED);
}

static void wrong_scores(struct gguf_writer *w)
{
    float s[3] = {0, 0, 0};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, s, 3);
}

static void bad_bos(struct gguf_writer *w)
{
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000000);
}

static void test_synthetic_invalid(void)
{
    struct tok_def defs[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"a", 0, 1}, {"b", 0, 99}};
    char err[256];
    int rc = 0;
    struct llm_vocab *v = synth_vocab("llama", defs, 5, NULL, 0, wrong_scores, &rc, err, sizeof err);
    CHECK(v == NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    CHECK(strstr(err, "scores") != NULL);
    /* An out-of-range id is ignored, an unknown token type reads as undefined. */
    v = synth_vocab("llama", defs, 5, NULL, 0, bad_bos, &rc, err, sizeof err);
    CHECK(v != NULL);
    if (v) {
        CHECK_INT_EQ(llm_vocab_bos(v), -1);
        CHECK_INT_EQ(llm_vocab_token_type(v, 4), LLM_TOKEN_UNDEFINED);
        long k = tokenize_str(v, "ab", true, false);
        CHECK(k >= 1);
        llm_vocab_free(v);
    }
}

/* A Gemma-sized vocabulary (262144 tokens) must load quickly: hashing, no quadratic work. */
static void test_large_vocab_load(void)
{
    size_t n = 262144;
    struct tok_def *defs = calloc(n, sizeof *defs);
    char *texts = calloc(n, 16);
    for (size_t i = 0; i < n; i++) {
        char *t = texts + 16 * i;
        if (i < 256)
            snprintf(t, 16, "<0x%02zX>", i);
        else if (i % 50 == 0)
            snprintf(t, 16, "<ctl%zu>", i);
        else
            snprintf(t, 16, "\xe2\x96\x81w%zx", i);
        defs[i] = (struct tok_def){t, -(float)i, i < 256 ? 6 : i % 50 == 0 ? 3 : 1};
    }
    /* Writing and reading the file are not what is measured: time the load alone. */
    struct gguf_writer *w = gguf_writer_new();
    struct gguf_str *strs = calloc(n, sizeof *strs);
    float *scores = calloc(n, sizeof *scores);
    int32_t *types = calloc(n, sizeof *types);
    for (size_t i = 0; i < n; i++) {
        strs[i] = (struct gguf_str){defs[i].text, strlen(defs[i].text)};
        scores[i] = defs[i].score;
        types[i] = defs[i].type;
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, n);
    char path[256], err[256];
    snprintf(path, sizeof path, "/tmp/banter_test_tok_big_%ld.gguf", (long)getpid());
    CHECK_INT_EQ(gguf_writer_write(w, path, err, sizeof err), 0);
    gguf_writer_free(w);
    struct gguf_file *f = NULL;
    CHECK_INT_EQ(gguf_open(path, &f, err, sizeof err), 0);
    if (f) {
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            struct llm_vocab *v = NULL;
            double t0 = core_time_ms();
            CHECK_INT_EQ(llm_vocab_load(f, &v, err, sizeof err), 0);
            double dt = core_time_ms() - t0;
            if (dt < best) best = dt;
            if (v) {
                CHECK_INT_EQ(llm_vocab_n_tokens(v), (long)n);
                CHECK_INT_EQ(llm_vocab_find(v, strs[123457].ptr, strs[123457].len), 123457);
                double t1 = core_time_ms();
                long k = tokenize_str(v, "w1 <ctl100> w2", false, true);
                double dt2 = core_time_ms() - t1;
                CHECK(k > 0);
                if (rep == 0) printf("tokenizing with it: %.2f ms\n", dt2);
                llm_vocab_free(v);
            }
        }
        /* Printed, not asserted (timings fail on loaded machines); a release build takes tens of ms. */
        printf("262144-token vocabulary loads in %.1f ms\n", best);
        gguf_close(f);
    }
    unlink(path);
    free(strs);
    free(scores);
    free(types);
    free(texts);
    free(defs);
}

/* ------------------------------------------------------------------------------------------------------------
 * Pre-tokenizers: words as the reference regexes cut them (expected splits worked out by hand from the
 * patterns, with "|" between words).
 */

static void check_split(enum llm_bpe_pre pre, const char *text, const char *want)
{
    size_t ends[256], n = 0;
    CHECK_INT_EQ(llm_bpe_split_words(pre, text, strlen(text), ends, 256, &n), 0);
    char got[1024];
    size_t g = 0, start = 0;
    for (size_t i = 0; i < n && g + 2 < sizeof got; i++) {
        if (i) got[g++] = '|';
        for (size_t j = start; j < ends[i] && g + 2 < sizeof got; j++)
            got[g++] = text[j];
        start = ends[i];
    }
    got[g] = 0;
    CHECK_STR_EQ(got, want);
}

static void test_pretokenizers(void)
{
    const char *s = "Hello world's 12345 !!\n\n  x";
    check_split(LLM_PRE_GPT2, s, "Hello| world|'s| 12345| !!|\n\n | x");
    check_split(LLM_PRE_LLAMA3, s, "Hello| world|'s| |123|45| !!\n\n| | x");
    check_split(LLM_PRE_QWEN2, s, "Hello| world|'s| |1|2|3|4|5| !!\n\n| | x");
    check_split(LLM_PRE_SMOLLM, s, "Hello| world|'s| |1|2|3|4|5| !!|\n\n | x");
    /* Contractions: case-sensitive for GPT-2, not for Llama 3. */
    check_split(LLM_PRE_GPT2, "I'LL go", "I|'|LL| go");
    check_split(LLM_PRE_LLAMA3, "I'LL go", "I|'LL| go");
    /* Llama 3: one non-letter may lead a word, newlines end punctuation runs, whitespace before newlines. */
    check_split(LLM_PRE_LLAMA3, "$hello (x)\r\n  \nend", "$hello| (|x|)\r\n|  \n|end");
    /* Unicode classes: letters and digits beyond ASCII, and U+3000 as whitespace. */
    check_split(LLM_PRE_GPT2, "caf\xc3\xa9 \xd9\xa3\xd9\xa4\xe3\x80\x80\xe6\x97\xa5",
                "caf\xc3\xa9| \xd9\xa3\xd9\xa4|\xe3\x80\x80|\xe6\x97\xa5");
    /* An invalid byte is one U+FFFD, a non-letter non-digit. */
    check_split(LLM_PRE_GPT2, "a\xff\xfe b", "a|\xff\xfe| b");
}

/* ------------------------------------------------------------------------------------------------------------
 * 2. llama.cpp's tokenizer cases
 */

static void test_reference_cases(const char *vocab_path, const char *name)
{
    char inp_path[1024], out_path[1024];
    snprintf(inp_path, sizeof inp_path, "%s.inp", vocab_path);
    snprintf(out_path, sizeof out_path, "%s.out", vocab_path);
    struct llm_vocab *v = load_vocab(vocab_path);
    CHECK(v != NULL);
    size_t n_inp = 0, n_out = 0;
    char *inp = read_all(inp_path, &n_inp), *out = read_all(out_path, &n_out);
    CHECK(inp != NULL && out != NULL);
    if (!v || !inp || !out) goto done;

    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sep_len = strlen(sep);
    const char *p = inp, *end = inp + n_inp, *line = out, *out_end = out + n_out;
    int n_cases = 0, n_bad = 0;
    static int32_t want[8192];
    while (p < end) {
        const char *s = memmem(p, (size_t)(end - p), sep, sep_len);
        if (!s) break;
        size_t len = (size_t)(s - p);
        const char *nl = memchr(line, '\n', (size_t)(out_end - line));
        if (!nl) nl = out_end;
        size_t n_want = parse_ids(line, (size_t)(nl - line), want, sizeof want / sizeof want[0]);
        line = nl < out_end ? nl + 1 : out_end;

        long k = tokenize(v, p, len, false, false);
        bool ok = k == (long)n_want && memcmp(toks, want, n_want * sizeof(int32_t)) == 0;
        test_n_checks++;
        if (!ok) {
            test_n_failed++;
            if (n_bad++ < 8) {
                fprintf(stderr, "%s case %d \"%.*s\": ids differ\n", name, n_cases, (int)len, p);
                print_ids("want", want, n_want);
                print_ids("got ", toks, k > 0 ? (size_t)k : 0);
            }
        }
        /* Every case is valid UTF-8, so it must also come back unchanged. */
        check_round_trip(v, p, len);
        n_cases++;
        p = s + sep_len;
    }
    printf("%s: %d reference cases, %d differ\n", name, n_cases, n_bad);
    CHECK(n_cases >= 30);

done:
    free(inp);
    free(out);
    llm_vocab_free(v);
}

/* ------------------------------------------------------------------------------------------------------------
 * 3. Model fixture prompts
 */

static void test_prompt_fixture(const char *base)
{
    char path[1024];
    size_t n_prompt = 0, n_tokens = 0;
    snprintf(path, sizeof path, "%s.prompt", base);
    char *prompt = read_all(path, &n_prompt);
    snprintf(path, sizeof path, "%s.tokens", base);
    char *tokens = read_all(path, &n_tokens);
    snprintf(path, sizeof path, "%s.gguf", base);
    struct llm_vocab *v = load_vocab(path);
    CHECK(prompt && tokens && v);
    if (prompt && tokens && v) {
        /* The prompt is one line; its newline is not part of it. */
        while (n_prompt > 0 && (prompt[n_prompt - 1] == '\n' || prompt[n_prompt - 1] == '\r'))
            n_prompt--;
        static int32_t want[4096];
        size_t n_want = parse_ids(tokens, n_tokens, want, sizeof want / sizeof want[0]);
        long k = tokenize(v, prompt, n_prompt, true, true);
        bool ok = k == (long)n_want && memcmp(toks, want, n_want * sizeof(int32_t)) == 0;
        test_n_checks++;
        if (!ok) {
            test_n_failed++;
            fprintf(stderr, "%s: prompt tokens differ\n", base);
            print_ids("want", want, n_want);
            print_ids("got ", toks, k > 0 ? (size_t)k : 0);
        }
        /* Without BOS and special parsing the prompt gives the same ids after the BOS. */
        k = tokenize(v, prompt, n_prompt, false, false);
        CHECK_INT_EQ(k, (long)n_want - 1);
        if (k == (long)n_want - 1) CHECK(memcmp(toks, want + 1, (size_t)k * sizeof(int32_t)) == 0);
        char text[1024];
        long m = llm_detokenize(v, want, n_want, false, text, sizeof text);
        CHECK_INT_EQ(m, (long)n_prompt);
        CHECK(m == (long)n_prompt && memcmp(text, prompt, n_prompt) == 0);
    }
    free(prompt);
    free(tokens);
    llm_vocab_free(v);
}

/* ------------------------------------------------------------------------------------------------------------
 * 4. Behaviour on the real vocabularies
 */

static void test_invalid_utf8(const struct llm_vocab *v, const char *name)
{
    static const char *const bad[] = {
        "\xff",     "\xc3",        "a\x80z",       "\xe2\x96",         "\xf0\x9f\x98",
        "\xc3\x28", "x\xfe\xff y", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long a = tokenize_str(v, bad[i], true, true);
        CHECK(a > 0);
        if (a <= 0) continue;
        int32_t first[64];
        memcpy(first, toks, (size_t)(a < 64 ? a : 64) * sizeof(int32_t));
        long b = tokenize_str(v, bad[i], true, true);
        CHECK_INT_EQ(a, b);
        CHECK(memcmp(first, toks, (size_t)(a < 64 ? a : 64) * sizeof(int32_t)) == 0);
        char buf[256];
        CHECK(llm_detokenize(v, toks, (size_t)b, true, buf, sizeof buf) >= 0);
    }
    /* Random bytes never crash and every id is in range. */
    uint64_t x = 0x1234567;
    char junk[512];
    for (int rep = 0; rep < 200; rep++) {
        size_t len = 1 + rep % 500;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (char)(x >> 24);
        }
        long k = tokenize(v, junk, len, rep & 1, rep & 2);
        CHECK(k >= 0);
        bool in_range = true;
        for (long i = 0; i < k; i++)
            in_range = in_range && toks[i] >= 0 && toks[i] < llm_vocab_n_tokens(v);
        CHECK(in_range);
    }
    (void)name;
}

static void test_llama_spm(const char *path)
{
    struct llm_vocab *v = load_vocab(path);
    CHECK(v != NULL);
    if (!v) return;
    CHECK_STR_EQ(llm_vocab_describe(v), "spm");
    CHECK_INT_EQ(llm_vocab_n_tokens(v), 32000);
    CHECK(llm_token_is_eog(v, 2));
    /* Byte fallback for a character outside the vocabulary: U+1F99C as <0xF0> <0x9F> <0xA6> <0x9C>. */
    long k = tokenize_str(v, "\xf0\x9f\xa6\x9c", false, false);
    CHECK_INT_EQ(k, 5);
    if (k == 5) {
        CHECK_INT_EQ(toks[0], 29871); /* "▁" */
        CHECK_INT_EQ(toks[1], 0xF0 + 3);
        CHECK_INT_EQ(toks[4], 0x9C + 3);
    }
    /* Invalid bytes become byte tokens: "\xff" -> ▁ <0xFF>. */
    k = tokenize_str(v, "\xff", false, false);
    CHECK_INT_EQ(k, 2);
    CHECK_INT_EQ(toks[1], 0xFF + 3);
    /* parse_special: "<s>" in the text is BOS only when asked for. */
    k = tokenize_str(v, "<s>hi", false, true);
    CHECK(k >= 2);
    CHECK_INT_EQ(toks[0], 1);
    k = tokenize_str(v, "<s>hi", false, false);
    CHECK(k >= 2);
    for (long i = 0; i < k; i++)
        CHECK(toks[i] != 1);
    test_invalid_utf8(v, "llama-spm");
    llm_vocab_free(v);
}

static void test_gpt2(const char *path)
{
    struct llm_vocab *v = load_vocab(path);
    CHECK(v != NULL);
    if (!v) return;
    CHECK_STR_EQ(llm_vocab_describe(v), "bpe:gpt-2");
    CHECK(llm_token_is_eog(v, 50256));
    CHECK_INT_EQ(llm_vocab_eos(v), 50256);
    CHECK(!llm_vocab_add_bos(v));
    /* An invalid byte is U+FFFD, exactly like the encoded replacement character. */
    long a = tokenize_str(v, "\xff", false, false);
    int32_t first[8];
    memcpy(first, toks, sizeof first);
    long b = tokenize_str(v, "\xef\xbf\xbd", false, false);
    CHECK_INT_EQ(a, b);
    CHECK(a > 0 && memcmp(first, toks, (size_t)a * sizeof(int32_t)) == 0);
    /* parse_special. */
    long k = tokenize_str(v, "hi<|endoftext|>", false, true);
    CHECK_INT_EQ(k, 2);
    CHECK_INT_EQ(toks[1], 50256);
    k = tokenize_str(v, "hi<|endoftext|>", false, false);
    CHECK(k > 2);
    for (long i = 0; i < k; i++)
        CHECK(toks[i] != 50256);
    char buf[64];
    CHECK_INT_EQ(llm_token_to_piece(v, 50256, false, buf, sizeof buf), 0);
    CHECK_INT_EQ(llm_token_to_piece(v, 50256, true, buf, sizeof buf), 13);
    /* "Ġworld" is " world". */
    CHECK_INT_EQ(llm_token_to_piece(v, 995, false, buf, sizeof buf), 6);
    CHECK(memcmp(buf, " world", 6) == 0);
    test_invalid_utf8(v, "gpt-2");
    llm_vocab_free(v);
}

static void test_gemma(const char *path)
{
    struct llm_vocab *v = load_vocab(path);
    CHECK(v != NULL);
    if (!v) return;
    int32_t sot = llm_vocab_find(v, "<start_of_turn>", 15), eot = llm_vocab_find(v, "<end_of_turn>", 13);
    CHECK(sot >= 0 && eot >= 0);
    CHECK_INT_EQ(llm_vocab_eot(v), eot);
    CHECK(llm_token_is_eog(v, eot));
    CHECK(llm_token_is_eog(v, llm_vocab_eos(v)));
    CHECK(!llm_token_is_eog(v, sot));
    CHECK(!llm_token_is_eog(v, llm_vocab_bos(v)));
    const char *chat = "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n";
    long k = tokenize_str(v, chat, true, true);
    CHECK(k > 4);
    if (k > 4) {
        CHECK_INT_EQ(toks[0], llm_vocab_bos(v));
        CHECK_INT_EQ(toks[1], sot);
        int n_sot = 0, n_eot = 0;
        for (long i = 0; i < k; i++)
            n_sot += toks[i] == sot, n_eot += toks[i] == eot;
        CHECK_INT_EQ(n_sot, 2);
        CHECK_INT_EQ(n_eot, 1);
    }
    k = tokenize_str(v, chat, true, false);
    bool none = true;
    for (long i = 0; i < k; i++)
        none = none && toks[i] != sot && toks[i] != eot;
    CHECK(none);
    /* Rendering: control tokens vanish unless asked for. */
    int32_t ids[3] = {sot, llm_vocab_find(v, "\xe2\x96\x81hello", 8), eot};
    char buf[128];
    CHECK_INT_EQ(llm_detokenize(v, ids, 3, false, buf, sizeof buf), 5);
    CHECK_STR_EQ(buf, "hello");
    CHECK_INT_EQ(llm_detokenize(v, ids, 3, true, buf, sizeof buf), 34);
    CHECK_STR_EQ(buf, "<start_of_turn> hello<end_of_turn>");
    /* Truncation keeps the NUL and reports the full length. */
    CHECK_INT_EQ(llm_detokenize(v, ids, 3, true, buf, 4), 34);
    CHECK_STR_EQ(buf, "<st");
    test_invalid_utf8(v, "gemma");
    llm_vocab_free(v);
}

int main(void)
{
    test_synthetic_spm();
    test_synthetic_bpe();
    test_synthetic_invalid();
    test_large_vocab_load();
    test_pretokenizers();

    char path[512];
    if (!test_shared_path("fixtures/tokenizer/ggml-vocab-llama-spm.gguf", path, sizeof path)) {
        test_finish("test_tokenizer");
        return TEST_SKIP_CODE;
    }
    test_reference_cases(path, "llama-spm");
    test_llama_spm(path);
    if (test_shared_path("fixtures/tokenizer/ggml-vocab-gpt-2.gguf", path, sizeof path)) {
        test_reference_cases(path, "gpt-2");
        test_gpt2(path);
    }
    static const char *const models[] = {"gemma3-tiny-f32",   "gemma3-small-f16",    "gemma3-small-q8_0",
                                         "gemma3-small-q4_0", "gemma3-small-q4_k_m", "llama-tiny-spm-f16"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/llm/%s.gguf", models[i]);
        if (!test_shared_path(rel, path, sizeof path)) continue;
        snprintf(path, sizeof path, "../shared/fixtures/llm/%s", models[i]);
        test_prompt_fixture(path);
    }
    if (test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", path, sizeof path)) test_gemma(path);
    return test_finish("test_tokenizer");
}
