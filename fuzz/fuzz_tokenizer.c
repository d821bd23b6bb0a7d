/*
 * fuzz_tokenizer.c: libFuzzer target for the tokenizers and the vocabulary loader.
 *
 * The first input byte picks what the rest is:
 * - even: text, tokenized (with and without special-token parsing) by the real SentencePiece and byte-level BPE
 *   vocabularies in ../shared/fixtures/tokenizer (when present), then every piece rendered and the ids
 *   detokenized; ids must be in range and detokenizing must not fail;
 * - odd: a GGUF file whose tokenizer metadata is loaded as a vocabulary (hostile token tables, scores, types,
 *   merges, special ids), then a fixed text tokenized with it.
 * Seeds: fuzz/corpus/tokenizer.
 */
#include "core/core.h"
#include "gguf/gguf.h"
#include "llm/vocab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct llm_vocab *g_vocabs[2];
static struct gguf_file *g_files[2];
static volatile uint64_t sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *paths[2] = {"../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf",
                            "../shared/fixtures/tokenizer/ggml-vocab-gpt-2.gguf"};
    for (int i = 0; i < 2; i++) {
        if (gguf_open(paths[i], &g_files[i], NULL, 0) != 0) continue;
        if (llm_vocab_load(g_files[i], &g_vocabs[i], NULL, 0) != 0) g_vocabs[i] = NULL;
    }
    return 0;
}

static void exercise(const struct llm_vocab *v, const char *text, size_t len)
{
    int32_t ids[4096];
    char piece[256], out[16384];
    for (int special = 0; special < 2; special++) {
        size_t n = 0;
        int rc = llm_tokenize(v, text, len, true, special, ids, 4096, &n);
        if (rc != 0 && n <= 4096) abort(); /* only "too many" may fail */
        if (rc != 0) continue;
        int n_vocab = llm_vocab_n_tokens(v);
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= n_vocab) abort();
            int pl = llm_token_to_piece(v, ids[i], special, piece, sizeof piece);
            if (pl < 0) abort();
            sink += (uint64_t)pl;
        }
        long dl = llm_detokenize(v, ids, n, special, out, sizeof out);
        if (dl < 0) abort();
        sink += (uint64_t)dl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        if (n > 4096) return 0;
        char *text = malloc(n ? n : 1); /* exact size, so ASan sees reads past the end */
        if (!text) return 0;
        memcpy(text, body, n);
        for (int i = 0; i < 2; i++)
            if (g_vocabs[i]) exercise(g_vocabs[i], text, n);
        free(text);
        return 0;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    memcpy(copy, body, n);
    struct gguf_file *f = NULL;
    if (gguf_open_memory(copy, n, &f, NULL, 0) == 0) {
        struct llm_vocab *v = NULL;
        if (llm_vocab_load(f, &v, NULL, 0) == 0) {
            static const char sample[] = "Hello world, <s> the caf\xc3\xa9 is 3.5km away!\n\t  ok";
            exercise(v, sample, sizeof sample - 1);
            llm_vocab_free(v);
        }
        gguf_close(f);
    }
    free(copy);
    return 0;
}
