/*
 * make_corpus.c: writes the seed corpus of fuzz_gguf (fuzz/corpus/gguf/) with the GGUF writer, so the seeds
 * are well-formed files that exercise every value type, several tensor types and a non-default alignment,
 * each under 4 KB. Run through fuzz/make_corpus.sh; the output is committed, so this only needs rerunning
 * when the seeds should change.
 */
#include "gguf/gguf.h"
#include "tensor/tensor.h"

#include <stdio.h>
#include <string.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "make_corpus: %s failed (%d)\n", what, rc);
    return 1;
}

/* Metadata shaped like a model's: every scalar type, a small vocabulary, scores, token types, a nested array.
 */
static void add_metadata(struct gguf_writer *w)
{
    static const char *const toks[] = {"<pad>", "<eos>",  "<bos>", "\xe2\x96\x81the",
                                       "a\nb",  "<0x0A>", "",      "z"};
    struct gguf_str strs[8];
    float scores[8];
    int32_t types[8];
    for (int i = 0; i < 8; i++) {
        strs[i] = (struct gguf_str){toks[i], strlen(toks[i])};
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    gguf_writer_set_str(w, "general.architecture", "gemma3");
    gguf_writer_set_str(w, "general.name", "seed");
    gguf_writer_set_u32(w, "gemma3.block_count", 1);
    gguf_writer_set_u64(w, "seed.u64", 1234567890123ull);
    gguf_writer_set_i32(w, "seed.i32", -7);
    gguf_writer_set_f32(w, "gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
    gguf_writer_set_bool(w, "seed.bool", true);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 8);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, 8);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 8);
    static const uint8_t nested[] = {9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,  0,
                                     1, 2, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'x'};
    struct gguf_kv kv = {
        .key = {"seed.nested", 11}, .type = GGUF_ARRAY, .raw = nested, .raw_len = sizeof nested};
    gguf_writer_copy_kv(w, &kv);
    struct gguf_kv k8 = {.key = {"seed.u8", 7}, .type = GGUF_U8, .v.u64 = 200};
    gguf_writer_copy_kv(w, &k8);
    struct gguf_kv kf = {.key = {"seed.f64", 8}, .type = GGUF_F64, .v.f64 = 0.25};
    gguf_writer_copy_kv(w, &kf);
}

static int write(struct gguf_writer *w, const char *dir, const char *name)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = gguf_writer_write(w, path, err, sizeof err);
    gguf_writer_free(w);
    if (rc) {
        fprintf(stderr, "make_corpus: %s\n", err);
        return 1;
    }
    printf("wrote %s\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "fuzz/corpus/gguf";
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37 + 11);
    int rc;

    /* A tiny model: metadata plus F32, F16 and Q8_0 tensors. */
    struct gguf_writer *w = gguf_writer_new();
    if (!w) return fail("gguf_writer_new", -2);
    add_metadata(w);
    int64_t ne_a[2] = {8, 2}, ne_b[1] = {16}, ne_c[2] = {32, 2};
    if ((rc = gguf_writer_add_tensor(w, "token_embd.weight", TENSOR_F32, 2, ne_a, data)))
        return fail("F32", rc);
    if ((rc = gguf_writer_add_tensor(w, "output_norm.weight", TENSOR_F16, 1, ne_b, data)))
        return fail("F16", rc);
    if ((rc = gguf_writer_add_tensor(w, "blk.0.attn_q.weight", TENSOR_Q8_0, 2, ne_c, data)))
        return fail("Q8_0", rc);
    if (write(w, dir, "tiny-model.gguf")) return 1;

    /* Metadata only, like a vocabulary file. */
    w = gguf_writer_new();
    if (!w) return fail("gguf_writer_new", -2);
    add_metadata(w);
    if (write(w, dir, "metadata-only.gguf")) return 1;

    /* Alignment 64 with block-quantized tensors of two block sizes. */
    w = gguf_writer_new();
    if (!w) return fail("gguf_writer_new", -2);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "general.alignment", 64);
    int64_t ne_q4[2] = {32, 3}, ne_k[1] = {256};
    if ((rc = gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", TENSOR_Q4_0, 2, ne_q4, data)))
        return fail("Q4_0", rc);
    if ((rc = gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", TENSOR_Q4_K, 1, ne_k, data)))
        return fail("Q4_K", rc);
    int64_t ne_4d[4] = {2, 2, 2, 2};
    if ((rc = gguf_writer_add_tensor(w, "conv.weight", TENSOR_F32, 4, ne_4d, data))) return fail("4-D", rc);
    if (write(w, dir, "align64-quant.gguf")) return 1;

    /* The smallest valid file: a header with nothing in it. */
    w = gguf_writer_new();
    if (!w) return fail("gguf_writer_new", -2);
    return write(w, dir, "empty.gguf");
}
