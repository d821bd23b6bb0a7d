/*
 * test_synth.c: synthetic models (banter_model_synth, src/llm/synth.c).
 *
 * A synthetic model must be indistinguishable in layout from what llama.cpp's converter and quantizer write, so
 * the checks are: the metadata and tensor table of every architecture and weight type against an independent
 * statement of the expected layout, and (when ../shared is present) against the reference files of the same
 * shape; the weights' statistics and their agreement across types; the vocabulary (tokenizing with it gives whole
 * English words, the tiny one tokenizes exactly like the fixtures'); copying a vocabulary from another file;
 * determinism; the errors for bad configurations, which must leave no file behind; and that the engine loads
 * and runs every synthesized model.
 */
#include "test.h"

#include "banter.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "llm/synth.h"
#include "llm/vocab.h"
#include "tensor/tensor.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

static char tmpdir[64];

static const char *tmp_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static int synth(const char *arch, const char *shape, const char *type, const char *vocab_from, uint64_t seed,
                 const char *path)
{
    banter_synth_config cfg = {arch, shape, type, vocab_from, seed};
    char err[256] = "";
    int rc = banter_model_synth(&cfg, path, err, sizeof err);
    if (rc) fprintf(stderr, "  synth %s %s %s: %s (%s)\n", arch, shape, type, banter_status_str(rc), err);
    return rc;
}

static uint32_t get_u32(const struct gguf_file *f, const char *key)
{
    uint32_t v = 0xFFFFFFFFu;
    if (gguf_get_u32(f, key, &v)) fprintf(stderr, "  missing u32 key %s\n", key);
    return v;
}

static float get_f32(const struct gguf_file *f, const char *key)
{
    float v = -1;
    if (gguf_get_f32(f, key, &v)) fprintf(stderr, "  missing f32 key %s\n", key);
    return v;
}

static bool str_is(const struct gguf_str *s, const char *lit)
{
    return s->len == strlen(lit) && !memcmp(s->ptr, lit, s->len);
}

/* ------------------------------------------------------------------------------------------------------------
 * The expected layout, stated independently of synth.c. Only the tiny shapes (rows of 64 or 128 values), where
 * llama.cpp's K-quant fallbacks apply to every matrix: Q4_K -> Q4_0 (ours), Q6_K -> Q8_0.
 */
struct expect_tensor {
    char name[64];
    int n_dims;
    int64_t ne[2];
    uint32_t type;
};

static uint32_t matrix_type(const char *wtype)
{
    if (!strcmp(wtype, "F32")) return TENSOR_F32;
    if (!strcmp(wtype, "F16")) return TENSOR_F16;
    if (!strcmp(wtype, "BF16")) return TENSOR_BF16;
    if (!strcmp(wtype, "Q8_0")) return TENSOR_Q8_0;
    return TENSOR_Q4_0; /* Q4_0, and Q4_K_M's Q4_K on short rows */
}

static int expect_tiny(const char *arch, const char *wtype, int64_t n_vocab, struct expect_tensor *out)
{
    const bool gemma = !strcmp(arch, "gemma3"), q4 = !strcmp(wtype, "Q4_0") || !strcmp(wtype, "Q4_K_M");
    const bool q4km = !strcmp(wtype, "Q4_K_M");
    const uint32_t mat = matrix_type(wtype), outt = q4 ? TENSOR_Q8_0 : mat;
    int n = 0;
#define E(nm, nd, a, b, t)                                                                                        \
    do {                                                                                                          \
        snprintf(out[n].name, sizeof out[n].name, "%s", nm);                                                      \
        out[n].n_dims = nd;                                                                                       \
        out[n].ne[0] = a;                                                                                         \
        out[n].ne[1] = b;                                                                                         \
        out[n].type = t;                                                                                          \
        n++;                                                                                                      \
    } while (0)
    E("token_embd.weight", 2, 64, n_vocab, gemma ? outt : mat);
    for (int i = 0; i < 4; i++) {
        /* use_more_bits(i, 4): i < 0 || i >= 3 || i % 3 == 2, so layers 2 and 3. */
        uint32_t more = q4km && (i == 2 || i == 3) ? TENSOR_Q8_0 : mat;
        char nm[64];
#define L(suffix, nd, a, b, t)                                                                                    \
    do {                                                                                                          \
        snprintf(nm, sizeof nm, "blk.%d.%s.weight", i, suffix);                                                   \
        E(nm, nd, a, b, t);                                                                                       \
    } while (0)
        L("attn_norm", 1, 64, 1, TENSOR_F32);
        L("attn_q", 2, 64, 128, mat);
        L("attn_k", 2, 64, 64, mat);
        L("attn_v", 2, 64, 64, more);
        L("attn_output", 2, 128, 64, mat);
        L("ffn_norm", 1, 64, 1, TENSOR_F32);
        L("ffn_gate", 2, 64, 128, mat);
        L("ffn_up", 2, 64, 128, mat);
        L("ffn_down", 2, 128, 64, more);
        if (gemma) {
            L("attn_q_norm", 1, 32, 1, TENSOR_F32);
            L("attn_k_norm", 1, 32, 1, TENSOR_F32);
            L("post_attention_norm", 1, 64, 1, TENSOR_F32);
            L("post_ffw_norm", 1, 64, 1, TENSOR_F32);
        }
#undef L
    }
    E("output_norm.weight", 1, 64, 1, TENSOR_F32);
    if (!gemma) E("output.weight", 2, 64, n_vocab, outt);
#undef E
    return n;
}

static void check_tensors(const struct gguf_file *f, const struct expect_tensor *ex, int n_ex, const char *what)
{
    CHECK_INT_EQ(f->n_tensors, n_ex);
    for (int i = 0; i < n_ex; i++) {
        const struct gguf_tensor *t = gguf_find_tensor(f, ex[i].name);
        if (!t) {
            fprintf(stderr, "  %s: tensor %s missing\n", what, ex[i].name);
            CHECK(t != NULL);
            continue;
        }
        if ((int)t->n_dims != ex[i].n_dims || t->ne[0] != ex[i].ne[0] || t->ne[1] != ex[i].ne[1] ||
            t->type != ex[i].type) {
            fprintf(stderr, "  %s: %s is %uD [%lld, %lld] %s, expected %dD [%lld, %lld] %s\n", what, ex[i].name,
                    t->n_dims, (long long)t->ne[0], (long long)t->ne[1], tensor_type_name(t->type), ex[i].n_dims,
                    (long long)ex[i].ne[0], (long long)ex[i].ne[1], tensor_type_name(ex[i].type));
            CHECK(0);
        }
    }
}

static const char *const WTYPES[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M"};
static const uint32_t FILE_TYPES[] = {0, 1, 32, 7, 2, 15};

static void test_layout(void)
{
    struct expect_tensor ex[64];
    for (int a = 0; a < 2; a++) {
        const char *arch = a ? "llama" : "gemma3";
        for (size_t t = 0; t < sizeof WTYPES / sizeof *WTYPES; t++) {
            char path[128], name[64], what[64];
            snprintf(name, sizeof name, "%s-tiny-%s.gguf", arch, WTYPES[t]);
            snprintf(what, sizeof what, "%s tiny %s", arch, WTYPES[t]);
            tmp_path(name, path, sizeof path);
            CHECK_INT_EQ(synth(arch, "tiny", WTYPES[t], NULL, 7, path), BANTER_OK);
            char tmp[160];
            snprintf(tmp, sizeof tmp, "%s.tmp", path);
            CHECK(!exists(tmp));
            struct gguf_file *f = NULL;
            char err[256];
            int rc = gguf_open(path, &f, err, sizeof err);
            CHECK_INT_EQ(rc, BANTER_OK);
            if (rc) {
                fprintf(stderr, "  %s: %s\n", what, err);
                continue;
            }
            char s[64], key[96];
            CHECK(gguf_get_str(f, "general.architecture", s, sizeof s) == 0 && !strcmp(s, arch));
            CHECK(gguf_get_str(f, "general.name", s, sizeof s) == 0);
            char want_name[64];
            snprintf(want_name, sizeof want_name, "synthetic-%s-tiny-seed7", arch);
            CHECK_STR_EQ(s, want_name);
            CHECK_INT_EQ(get_u32(f, "general.alignment"), 32);
            CHECK_INT_EQ(f->alignment, 32);
            CHECK_INT_EQ(get_u32(f, "general.file_type"), FILE_TYPES[t]);
            CHECK_INT_EQ(get_u32(f, "general.quantization_version"), 2);
#define AK(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
            CHECK_INT_EQ(get_u32(f, AK("context_length")), 2048);
            CHECK_INT_EQ(get_u32(f, AK("embedding_length")), 64);
            CHECK_INT_EQ(get_u32(f, AK("block_count")), 4);
            CHECK_INT_EQ(get_u32(f, AK("feed_forward_length")), 128);
            CHECK_INT_EQ(get_u32(f, AK("attention.head_count")), 4);
            CHECK_INT_EQ(get_u32(f, AK("attention.head_count_kv")), 2);
            CHECK_INT_EQ(get_u32(f, AK("attention.key_length")), 32);
            CHECK_INT_EQ(get_u32(f, AK("attention.value_length")), 32);
            CHECK_NEAR(get_f32(f, AK("attention.layer_norm_rms_epsilon")), 1e-6, 1e-12);
            if (a == 0) {
                CHECK_NEAR(get_f32(f, AK("rope.freq_base")), 1e6, 0);
                CHECK_NEAR(get_f32(f, AK("rope.freq_base_swa")), 1e4, 0);
                CHECK_INT_EQ(get_u32(f, AK("attention.sliding_window")), 16);
                CHECK_INT_EQ(get_u32(f, AK("attention.sliding_window_pattern")), 2);
                CHECK(gguf_find(f, AK("rope.dimension_count")) == NULL);
            } else {
                CHECK_NEAR(get_f32(f, AK("rope.freq_base")), 1e4, 0);
                CHECK_INT_EQ(get_u32(f, AK("rope.dimension_count")), 32);
                CHECK(gguf_find(f, AK("attention.sliding_window")) == NULL);
            }
#undef AK
            const struct gguf_kv *tokens = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING);
            CHECK(tokens != NULL);
            CHECK(tokens && tokens->arr_n == 467);
            CHECK(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_F32) != NULL);
            CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32) != NULL);
            CHECK(gguf_get_str(f, "tokenizer.ggml.model", s, sizeof s) == 0 && !strcmp(s, "llama"));
            CHECK_INT_EQ(get_u32(f, "tokenizer.ggml.bos_token_id"), a ? 1 : 2);
            CHECK_INT_EQ(get_u32(f, "tokenizer.ggml.eos_token_id"), a ? 2 : 1);
            if (tokens && tokens->arr_n == 467) {
                CHECK(str_is(&tokens->arr_strs[a ? 1 : 2], a ? "<s>" : "<bos>"));
                CHECK(str_is(&tokens->arr_strs[a ? 2 : 1], a ? "</s>" : "<eos>"));
            }
            bool b = false;
            CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b) == 0 && b);
            CHECK(gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b) == 0 && !b);
            int n_ex = expect_tiny(arch, WTYPES[t], 467, ex);
            check_tensors(f, ex, n_ex, what);
            gguf_close(f);
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Weights: statistics as the fixtures have them, and the same underlying values in every type.
 */
static bool load_f32(const struct gguf_file *f, const char *name, float **out, int64_t *n)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return false;
    *n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    *out = malloc((size_t)*n * sizeof(float));
    tensor_dequantize(t->type, t->data, *out, *n);
    return true;
}

static void stats(const float *x, int64_t n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(s2 / (double)n);
}

static void test_weights(void)
{
    char p32[128], path[128], name[64];
    tmp_path("gemma3-tiny-F32.gguf", p32, sizeof p32);
    struct gguf_file *f32 = NULL;
    char err[256];
    if (gguf_open(p32, &f32, err, sizeof err)) {
        CHECK(0);
        return;
    }
    static const struct {
        const char *name;
        double mean, std;
    } want[] = {
        {"token_embd.weight", 0, 0.125},        /* 1/sqrt(64) */
        {"blk.1.attn_q.weight", 0, 0.125},      /* 1/sqrt(n_in) */
        {"blk.1.attn_output.weight", 0, 0.0442}, /* 0.5/sqrt(128) */
        {"blk.1.ffn_down.weight", 0, 0.0442},
        {"blk.1.attn_norm.weight", 1, 0.1},
        {"output_norm.weight", 1, 0.1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        float *x;
        int64_t n;
        if (!load_f32(f32, want[i].name, &x, &n)) {
            CHECK(0);
            continue;
        }
        double m, s;
        stats(x, n, &m, &s);
        double tol = n > 1000 ? 0.1 : 0.35; /* relative, looser for the 64-value norms */
        CHECK_NEAR(m, want[i].mean, 3 * want[i].std / sqrt((double)n) + 1e-9);
        CHECK_NEAR(s / want[i].std, 1.0, tol);
        free(x);
    }
    /* Every type holds the same random values, rounded: compare token_embd and a layer-2 ffn_down (Q8_0 in
     * Q4_K_M's more-bits layers) with the F32 file. */
    static const double tol[] = {0, 1e-3, 8e-3, 1e-2, 0.15, 0.15};
    for (size_t t = 1; t < sizeof WTYPES / sizeof *WTYPES; t++) {
        snprintf(name, sizeof name, "gemma3-tiny-%s.gguf", WTYPES[t]);
        tmp_path(name, path, sizeof path);
        struct gguf_file *f = NULL;
        if (gguf_open(path, &f, err, sizeof err)) {
            CHECK(0);
            continue;
        }
        static const char *const names[] = {"token_embd.weight", "blk.2.ffn_down.weight", "blk.0.attn_q.weight"};
        for (int k = 0; k < 3; k++) {
            float *a, *b;
            int64_t na, nb;
            if (!load_f32(f32, names[k], &a, &na) || !load_f32(f, names[k], &b, &nb)) {
                CHECK(0);
                continue;
            }
            CHECK_INT_EQ(na, nb);
            double d2 = 0, a2 = 0;
            for (int64_t i = 0; i < na; i++) {
                d2 += (double)(a[i] - b[i]) * (a[i] - b[i]);
                a2 += (double)a[i] * a[i];
            }
            double rel = sqrt(d2 / a2);
            if (!(rel <= tol[t])) fprintf(stderr, "  %s %s: relative rms error %.4g\n", WTYPES[t], names[k], rel);
            CHECK(rel <= tol[t]);
            free(a);
            free(b);
        }
        gguf_close(f);
    }
    gguf_close(f32);
}

/* ------------------------------------------------------------------------------------------------------------
 * Comparison with the reference files of the same shape.
 */
static bool kv_equal(const struct gguf_kv *a, const struct gguf_kv *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_STRING:
        return a->str.len == b->str.len && !memcmp(a->str.ptr, b->str.ptr, a->str.len);
    case GGUF_ARRAY:
        if (a->arr_type != b->arr_type || a->arr_n != b->arr_n) return false;
        if (a->arr_type == GGUF_STRING) {
            for (uint64_t i = 0; i < a->arr_n; i++)
                if (a->arr_strs[i].len != b->arr_strs[i].len ||
                    memcmp(a->arr_strs[i].ptr, b->arr_strs[i].ptr, a->arr_strs[i].len))
                    return false;
            return true;
        }
        if (!a->arr_data || !b->arr_data) return a->arr_data == b->arr_data;
        return !memcmp(a->arr_data, b->arr_data, a->arr_n * gguf_vtype_size(a->arr_type));
    case GGUF_BOOL:
        return a->v.b == b->v.b;
    case GGUF_F32:
    case GGUF_F64:
        return a->v.f64 == b->v.f64;
    default:
        return a->v.u64 == b->v.u64;
    }
}

/* Every key of the fixture is in ours with the same value, except `skip`; ours has only the extra keys listed. */
static void compare_with_fixture(const char *ours_path, const char *fixture_path, const char *const *extra)
{
    struct gguf_file *ours = NULL, *ref = NULL;
    char err[256];
    if (gguf_open(ours_path, &ours, err, sizeof err) || gguf_open(fixture_path, &ref, err, sizeof err)) {
        fprintf(stderr, "  %s\n", err);
        CHECK(0);
        gguf_close(ours);
        return;
    }
    for (uint64_t i = 0; i < ref->n_kv; i++) {
        const struct gguf_kv *r = &ref->kv[i];
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)r->key.len, r->key.ptr);
        const struct gguf_kv *o = gguf_find(ours, key);
        if (!o || !kv_equal(o, r)) fprintf(stderr, "  %s: key %s %s\n", fixture_path, key, o ? "differs" : "missing");
        CHECK(o && kv_equal(o, r));
    }
    for (uint64_t i = 0; i < ours->n_kv; i++) {
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)ours->kv[i].key.len, ours->kv[i].key.ptr);
        if (gguf_find(ref, key)) continue;
        bool allowed = false;
        for (const char *const *e = extra; *e; e++) allowed |= !strcmp(key, *e);
        if (!allowed) fprintf(stderr, "  %s: we add key %s\n", fixture_path, key);
        CHECK(allowed);
    }
    CHECK_INT_EQ(ours->n_tensors, ref->n_tensors);
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
        const struct gguf_tensor *r = &ref->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)r->name.len, r->name.ptr);
        const struct gguf_tensor *o = gguf_find_tensor(ours, name);
        bool same = o && o->n_dims == r->n_dims && !memcmp(o->ne, r->ne, sizeof o->ne) && o->type == r->type;
        if (!same) fprintf(stderr, "  %s: tensor %s %s\n", fixture_path, name, o ? "differs" : "missing");
        CHECK(same);
    }
    gguf_close(ref);
    gguf_close(ours);
}

/* Reads a fixture's .tokens file (space-separated ids). */
static int read_ids(const char *path, int32_t *ids, int max)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    int n = 0;
    long v;
    while (n < max && fscanf(fp, "%ld", &v) == 1) ids[n++] = (int32_t)v;
    fclose(fp);
    return n;
}

static void test_fixtures(void)
{
    char fx[256], ours[128];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", fx, sizeof fx)) return;
    static const char *const extra_ftype[] = {"general.file_type", "general.quantization_version", NULL};
    static const char *const none[] = {NULL};

    /* gemma3 tiny: the same keys and values (vocabulary included, byte for byte) and the same tensor table. */
    tmp_path("gemma3-tiny-f32-seed1.gguf", ours, sizeof ours);
    CHECK_INT_EQ(synth("gemma3", "tiny", "F32", NULL, 1, ours), BANTER_OK);
    compare_with_fixture(ours, fx, extra_ftype);

    /* Its vocabulary tokenizes the fixture's prompt exactly as llama.cpp did. */
    char prompt_path[256], tokens_path[256], prompt[1024] = "";
    snprintf(prompt_path, sizeof prompt_path, "../shared/fixtures/llm/gemma3-tiny-f32.prompt");
    snprintf(tokens_path, sizeof tokens_path, "../shared/fixtures/llm/gemma3-tiny-f32.tokens");
    FILE *fp = fopen(prompt_path, "r");
    if (fp) {
        if (!fgets(prompt, sizeof prompt, fp)) prompt[0] = 0;
        fclose(fp);
    }
    prompt[strcspn(prompt, "\n")] = 0;
    int32_t want[256], got[256];
    int n_want = read_ids(tokens_path, want, 256);
    struct gguf_file *f = NULL;
    struct llm_vocab *v = NULL;
    char err[256];
    CHECK(n_want > 1);
    if (n_want > 1 && gguf_open(ours, &f, err, sizeof err) == 0 && llm_vocab_load(f, &v, err, sizeof err) == 0) {
        size_t n = 0;
        CHECK_INT_EQ(llm_tokenize(v, prompt, strlen(prompt), true, false, got, 256, &n), 0);
        CHECK_INT_EQ(n, n_want);
        CHECK(n == (size_t)n_want && !memcmp(got, want, n * sizeof *got));
    } else {
        fprintf(stderr, "  tokenizer: %s\n", err);
        CHECK(0);
    }
    llm_vocab_free(v);
    gguf_close(f);

    /* llama tiny with the Llama 2 vocabulary copied from the fixture: the whole file's metadata is the same. */
    if (!test_shared_path("fixtures/llm/llama-tiny-spm-f16.gguf", fx, sizeof fx)) return;
    tmp_path("llama-tiny-f16-seed3.gguf", ours, sizeof ours);
    CHECK_INT_EQ(synth("llama", "tiny", "F16", fx, 3, ours), BANTER_OK);
    compare_with_fixture(ours, fx, none);
}

/* ------------------------------------------------------------------------------------------------------------
 * Vocabularies.
 */
static int cmp_str(const void *a, const void *b)
{
    const struct gguf_str *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Writes a vocabulary-only GGUF file with the synthetic vocabulary and opens it. */
static struct gguf_file *vocab_file(size_t n_vocab, bool gemma, const char *path)
{
    struct gguf_writer *w = gguf_writer_new();
    char err[256];
    struct gguf_file *f = NULL;
    CHECK(w != NULL);
    if (!w) return NULL;
    CHECK_INT_EQ(gguf_writer_set_str(w, "general.architecture", gemma ? "gemma3" : "llama"), 0);
    CHECK_INT_EQ(llm_synth_vocab(w, n_vocab, gemma), 0);
    CHECK_INT_EQ(gguf_writer_write(w, path, err, sizeof err), 0);
    gguf_writer_free(w);
    CHECK_INT_EQ(gguf_open(path, &f, err, sizeof err), 0);
    return f;
}

static void check_big_vocab(size_t n_vocab, bool gemma)
{
    char path[128];
    tmp_path(gemma ? "vocab-gemma.gguf" : "vocab-llama.gguf", path, sizeof path);
    struct gguf_file *f = vocab_file(n_vocab, gemma, path);
    if (!f) return;
    const struct gguf_kv *tokens = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING);
    const struct gguf_kv *types = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32);
    const struct gguf_kv *scores = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_F32);
    CHECK(tokens && types && scores);
    if (!tokens || !types || !scores) {
        gguf_close(f);
        return;
    }
    CHECK_INT_EQ(tokens->arr_n, n_vocab);
    CHECK_INT_EQ(types->arr_n, n_vocab);
    CHECK_INT_EQ(scores->arr_n, n_vocab);

    /* Unique strings; every normal piece of more than one character has its prefix one character shorter in the
     * vocabulary (what lets SentencePiece's merges reach whole words); scores decrease with the id. */
    struct gguf_str *sorted = malloc(n_vocab * sizeof *sorted);
    memcpy(sorted, tokens->arr_strs, n_vocab * sizeof *sorted);
    qsort(sorted, n_vocab, sizeof *sorted, cmp_str);
    int dups = 0, open_prefix = 0, bad_scores = 0;
    for (size_t i = 1; i < n_vocab; i++) dups += cmp_str(&sorted[i - 1], &sorted[i]) == 0;
    for (size_t i = 0; i < n_vocab; i++) {
        if (gguf_arr_i64(types, i) != 1) continue;
        if (i > 0 && gguf_arr_i64(types, i - 1) == 1 && !(gguf_arr_f64(scores, i) < gguf_arr_f64(scores, i - 1)))
            bad_scores++;
        struct gguf_str s = tokens->arr_strs[i];
        size_t cut = s.len;
        do cut--;
        while (cut > 0 && ((uint8_t)s.ptr[cut] & 0xC0) == 0x80);
        if (cut == 0) continue;
        struct gguf_str pre = {s.ptr, cut};
        if (!bsearch(&pre, sorted, n_vocab, sizeof *sorted, cmp_str)) {
            if (open_prefix < 5) fprintf(stderr, "  no prefix of %.*s\n", (int)s.len, s.ptr);
            open_prefix++;
        }
    }
    CHECK_INT_EQ(dups, 0);
    CHECK_INT_EQ(open_prefix, 0);
    CHECK_INT_EQ(bad_scores, 0);
    free(sorted);

    /* English tokenizes into whole words: each word is exactly the token "▁word". */
    struct llm_vocab *v = NULL;
    char err[256];
    if (llm_vocab_load(f, &v, err, sizeof err)) {
        fprintf(stderr, "  llm_vocab_load: %s\n", err);
        CHECK(0);
        gguf_close(f);
        return;
    }
    static const char *const text[] = {"Hello", "!", " Who", " are", " you", "?", " I", " would", " like", " to",
                                       " book", " a", " table", " for", " two", " at", " an", " Italian",
                                       " restaurant", " tomorrow", " evening", ",", " please", ".", " Thanks",
                                       " for", " your", " help", " with", " the", " train", " to", " London",
                                       " on", " Monday", " morning", "."};
    size_t n_text = sizeof text / sizeof *text;
    char joined[1024] = "";
    int32_t want[64], got[64];
    want[0] = llm_vocab_bos(v);
    for (size_t i = 0; i < n_text; i++) {
        strcat(joined, text[i]);
        char piece[64];
        snprintf(piece, sizeof piece, "%s%s", text[i][0] == ' ' || i == 0 ? "\xe2\x96\x81" : "",
                 text[i][0] == ' ' ? text[i] + 1 : text[i]);
        want[i + 1] = llm_vocab_find(v, piece, strlen(piece));
        if (want[i + 1] < 0) fprintf(stderr, "  no token %s\n", piece);
        CHECK(want[i + 1] >= 0);
    }
    size_t n = 0;
    CHECK_INT_EQ(llm_tokenize(v, joined, strlen(joined), true, false, got, 64, &n), 0);
    CHECK_INT_EQ(n, n_text + 1);
    CHECK(n == n_text + 1 && !memcmp(got, want, n * sizeof *got));
    /* Unknown words still tokenize (into pieces), and non-ASCII text falls back to bytes. */
    const char *odd = "Zyxqwv naïve 東京";
    CHECK_INT_EQ(llm_tokenize(v, odd, strlen(odd), false, false, got, 64, &n), 0);
    CHECK(n > 3);
    char back[128];
    CHECK_INT_EQ(llm_detokenize(v, got, n, false, back, sizeof back), (long)strlen(odd));
    CHECK_STR_EQ(back, odd);
    llm_vocab_free(v);
    gguf_close(f);
}

static void test_vocab(void)
{
    check_big_vocab(262144, true);
    check_big_vocab(128256, false);
    /* Sizes outside what the builder supports are refused. */
    struct gguf_writer *w = gguf_writer_new();
    CHECK_INT_EQ(llm_synth_vocab(w, 100, true), BANTER_ERR_INVALID_ARG);
    gguf_writer_free(w);
}

/* A model that takes its vocabulary from another file carries exactly that file's tokenizer entries. */
static void test_vocab_from(void)
{
    char src[128], dst[128], err[256];
    tmp_path("gemma3-tiny-Q8_0.gguf", src, sizeof src);
    tmp_path("llama-vocab-from.gguf", dst, sizeof dst);
    CHECK_INT_EQ(synth("llama", "tiny", "Q8_0", src, 5, dst), BANTER_OK);
    struct gguf_file *a = NULL, *b = NULL;
    if (gguf_open(src, &a, err, sizeof err) || gguf_open(dst, &b, err, sizeof err)) {
        CHECK(0);
        gguf_close(a);
        return;
    }
    int n_tok_a = 0, n_tok_b = 0;
    for (uint64_t i = 0; i < a->n_kv; i++) {
        if (a->kv[i].key.len < 10 || memcmp(a->kv[i].key.ptr, "tokenizer.", 10)) continue;
        n_tok_a++;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)a->kv[i].key.len, a->kv[i].key.ptr);
        const struct gguf_kv *o = gguf_find(b, key);
        CHECK(o && kv_equal(o, &a->kv[i]));
    }
    for (uint64_t i = 0; i < b->n_kv; i++)
        n_tok_b += b->kv[i].key.len >= 10 && !memcmp(b->kv[i].key.ptr, "tokenizer.", 10);
    CHECK_INT_EQ(n_tok_b, n_tok_a);
    CHECK(gguf_find(b, "tokenizer.ggml.pre") == NULL); /* not mixed with the synthetic llama entries */
    gguf_close(a);
    gguf_close(b);

    /* A real vocabulary sets the model's vocabulary size. */
    char fx[256];
    if (test_shared_path("fixtures/tokenizer/ggml-vocab-llama-spm.gguf", fx, sizeof fx)) {
        tmp_path("llama-spm.gguf", dst, sizeof dst);
        CHECK_INT_EQ(synth("llama", "tiny", "Q4_0", fx, 1, dst), BANTER_OK);
        struct expect_tensor ex[64];
        int n_ex = expect_tiny("llama", "Q4_0", 32000, ex);
        if (gguf_open(dst, &b, err, sizeof err) == 0) {
            check_tensors(b, ex, n_ex, "llama tiny Q4_0, Llama 2 vocabulary");
            gguf_close(b);
        } else {
            CHECK(0);
        }
    }

    /* A file without a vocabulary is refused and nothing is written. */
    char novocab[128];
    tmp_path("no-vocab.gguf", novocab, sizeof novocab);
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    CHECK_INT_EQ(gguf_writer_write(w, novocab, err, sizeof err), 0);
    gguf_writer_free(w);
    tmp_path("from-no-vocab.gguf", dst, sizeof dst);
    banter_synth_config cfg = {.arch = "gemma3", .vocab_from = novocab};
    err[0] = 0;
    CHECK_INT_EQ(banter_model_synth(&cfg, dst, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, "tokenizer.ggml.tokens") != NULL);
    CHECK(!exists(dst));
    cfg.vocab_from = "/nonexistent/vocab.gguf";
    CHECK(banter_model_synth(&cfg, dst, err, sizeof err) != BANTER_OK);
    CHECK(strstr(err, "/nonexistent/vocab.gguf") != NULL);
    CHECK(!exists(dst));
}

static void test_determinism(void)
{
    static const char *const types[] = {"F16", "Q8_0", "Q4_K_M"};
    for (int t = 0; t < 3; t++) {
        char a[128], b[128], c[128];
        tmp_path("det-a.gguf", a, sizeof a);
        tmp_path("det-b.gguf", b, sizeof b);
        tmp_path("det-c.gguf", c, sizeof c);
        CHECK_INT_EQ(synth("gemma3", "tiny", types[t], NULL, 42, a), BANTER_OK);
        CHECK_INT_EQ(synth("gemma3", "tiny", types[t], NULL, 42, b), BANTER_OK);
        CHECK_INT_EQ(synth("gemma3", "tiny", types[t], NULL, 43, c), BANTER_OK);
        size_t na = 0, nb = 0, nc = 0;
        uint8_t *da = read_all(a, &na), *db = read_all(b, &nb), *dc = read_all(c, &nc);
        CHECK(da && db && dc);
        CHECK(na > 0 && na == nb && !memcmp(da, db, na));
        CHECK(na == nc && memcmp(da, dc, na) != 0); /* same layout, other weights */
        free(da);
        free(db);
        free(dc);
    }
    /* Seed 0 means seed 1. */
    char a[128], b[128];
    tmp_path("det-0.gguf", a, sizeof a);
    tmp_path("det-1.gguf", b, sizeof b);
    CHECK_INT_EQ(synth("gemma3", "tiny", "Q8_0", NULL, 0, a), BANTER_OK);
    CHECK_INT_EQ(synth("gemma3", "tiny", "Q8_0", NULL, 1, b), BANTER_OK);
    size_t na = 0, nb = 0;
    uint8_t *da = read_all(a, &na), *db = read_all(b, &nb);
    CHECK(da && db && na == nb && !memcmp(da, db, na));
    free(da);
    free(db);
}

static void test_bad_config(void)
{
    static const struct {
        const char *arch, *shape, *type, *needle;
    } bad[] = {
        {"gpt2", "tiny", "F32", "gpt2"},
        {"gemma3", "7b", "F32", "7b"},
        {"gemma3", "tiny", "Q5_K", "Q5_K"},
        {"llama", "270m", "F32", "270m"},
        {"GEMMA3", "tiny", "F32", "GEMMA3"},
    };
    char path[128], err[256];
    tmp_path("bad.gguf", path, sizeof path);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        banter_synth_config cfg = {bad[i].arch, bad[i].shape, bad[i].type, NULL, 1};
        err[0] = 0;
        CHECK_INT_EQ(banter_model_synth(&cfg, path, err, sizeof err), BANTER_ERR_INVALID_ARG);
        if (!strstr(err, bad[i].needle)) fprintf(stderr, "  message '%s' does not name '%s'\n", err, bad[i].needle);
        CHECK(strstr(err, bad[i].needle) != NULL);
        CHECK(!exists(path));
    }
    banter_synth_config cfg = {0};
    CHECK_INT_EQ(banter_model_synth(&cfg, NULL, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_model_synth(&cfg, "", NULL, 0), BANTER_ERR_INVALID_ARG);
    /* An unwritable path: an I/O error, and neither the file nor its temporary is left. */
    CHECK_INT_EQ(banter_model_synth(&cfg, "/nonexistent-dir/model.gguf", err, sizeof err), BANTER_ERR_IO);
    CHECK(strstr(err, "/nonexistent-dir/model.gguf") != NULL);
    /* Zero config = gemma3 tiny Q8_0, and NULL config is the same. */
    char a[128], b[128];
    tmp_path("defaults-a.gguf", a, sizeof a);
    tmp_path("defaults-b.gguf", b, sizeof b);
    CHECK_INT_EQ(banter_model_synth(&cfg, a, err, sizeof err), BANTER_OK);
    CHECK_INT_EQ(banter_model_synth(NULL, b, NULL, 0), BANTER_OK);
    struct gguf_file *f = NULL;
    if (gguf_open(a, &f, err, sizeof err) == 0) {
        CHECK_INT_EQ(get_u32(f, "general.file_type"), 7);
        CHECK_INT_EQ(get_u32(f, "gemma3.embedding_length"), 64);
        gguf_close(f);
    } else {
        CHECK(0);
    }
    size_t na = 0, nb = 0;
    uint8_t *da = read_all(a, &na), *db = read_all(b, &nb);
    CHECK(da && db && na == nb && !memcmp(da, db, na));
    free(da);
    free(db);
}

/* Allocation failures at every point leave nothing behind and report out of memory. */
static void test_alloc_failures(void)
{
    char path[128], tmp[160], err[256];
    tmp_path("oom.gguf", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    banter_synth_config cfg = {.arch = "llama", .weight_type = "Q4_0"};
    int n_fail = 0;
    for (long k = 0; k < 100000; k++) {
        core_fail_alloc_after(k);
        int rc = banter_model_synth(&cfg, path, err, sizeof err);
        core_fail_alloc_after(-1);
        if (rc == BANTER_OK) break;
        n_fail++;
        if (rc != BANTER_ERR_NOMEM) fprintf(stderr, "  allocation %ld: %s (%s)\n", k, banter_status_str(rc), err);
        CHECK_INT_EQ(rc, BANTER_ERR_NOMEM);
        CHECK(!exists(path) && !exists(tmp));
        if (rc != BANTER_ERR_NOMEM) break;
    }
    CHECK(n_fail > 10);
    CHECK(exists(path));
}

/* The engine loads every synthesized model, reads its shape as written, and runs it to finite logits. */
static void test_model_open(void)
{
    for (int a = 0; a < 2; a++) {
        const char *arch = a ? "llama" : "gemma3";
        for (size_t t = 0; t < sizeof WTYPES / sizeof *WTYPES; t++) {
            char path[128], name[64], err[256] = "";
            snprintf(name, sizeof name, "%s-tiny-%s.gguf", arch, WTYPES[t]);
            tmp_path(name, path, sizeof path);
            banter_model_config mcfg = banter_model_config_default();
            mcfg.n_threads = 1;
            banter_model *m = NULL;
            int rc = banter_model_open(path, &mcfg, &m, err, sizeof err);
            if (rc) fprintf(stderr, "  banter_model_open %s: %s (%s)\n", name, banter_status_str(rc), err);
            CHECK_INT_EQ(rc, BANTER_OK);
            if (rc) continue;
            banter_model_desc d;
            banter_model_describe(m, &d);
            CHECK_STR_EQ(d.arch, arch);
            CHECK_INT_EQ(d.n_vocab, 467);
            CHECK_INT_EQ(d.n_embd, 64);
            CHECK_INT_EQ(d.n_layer, 4);
            CHECK_INT_EQ(d.n_head, 4);
            CHECK_INT_EQ(d.n_head_kv, 2);
            CHECK_INT_EQ(d.head_dim, 32);
            CHECK_INT_EQ(d.n_ff, 128);
            CHECK_INT_EQ(d.bos, a ? 1 : 2);
            CHECK_INT_EQ(d.eos, a ? 2 : 1);

            const char *text = "hello world, the restaurant in the north is cheap";
            banter_token toks[64];
            size_t n = 0;
            CHECK_INT_EQ(banter_tokenize(m, text, strlen(text), true, false, toks, 64, &n), BANTER_OK);
            CHECK(n > 2 && toks[0] == d.bos);
            banter_context_config ccfg = banter_context_config_default();
            ccfg.n_ctx = 64;
            banter_context *c = NULL;
            CHECK_INT_EQ(banter_context_open(m, &ccfg, &c), BANTER_OK);
            int seq = -1;
            const float *logits = NULL;
            if (c && banter_seq_open(c, &seq) == BANTER_OK &&
                banter_seq_feed(c, seq, toks, (int)n, &logits) == BANTER_OK && logits) {
                int finite = 0;
                for (int i = 0; i < d.n_vocab; i++) finite += isfinite(logits[i]) != 0;
                CHECK_INT_EQ(finite, d.n_vocab);
            } else {
                fprintf(stderr, "  %s: feeding the prompt failed: %s\n", name, c ? banter_context_error(c) : "");
                CHECK(0);
            }
            banter_context_close(c);
            banter_model_close(m);
        }
    }
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/banter-test-synth-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_layout();
    test_weights();
    test_fixtures();
    test_vocab();
    test_vocab_from();
    test_determinism();
    test_bad_config();
    test_alloc_failures();
    test_model_open();
    cleanup();
    return test_finish("test_synth");
}
