/*
 * model_synth.c: `banter model synth`, which writes a random-weight GGUF model of a real architecture and shape
 * (banter_model_synth) and reports what it wrote.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *USAGE =
    "usage: banter model synth [--arch gemma3|llama] [--shape tiny|270m|1b] [--type TYPE] [--vocab-from FILE]\n"
    "                          [--seed N] -o FILE\n"
    "\n"
    "Writes a language model with random weights and the exact GGUF layout of a real architecture and shape:\n"
    "the metadata, tensor names, shapes and weight types that llama.cpp's converter and quantizer produce. Every\n"
    "part of the engine runs on it at real size and speed, so it stands in for a download in tests and\n"
    "benchmarks; its text output is gibberish.\n"
    "\n"
    "options:\n"
    "  --arch A          gemma3 (default) or llama\n"
    "  --shape S         tiny:  64 wide, 4 layers, 4 heads / 2 KV heads of 32 (the shape of the test fixtures)\n"
    "                    270m:  Gemma 3 270M (640 wide, 18 layers; gemma3 only)\n"
    "                    1b:    Gemma 3 1B (1152 wide, 26 layers), or Llama 3.2 1B (2048 wide, 16 layers)\n"
    "                    default: tiny\n"
    "  --type T          weight type: F32, F16, BF16, Q8_0 (default), Q4_0, or Q4_K_M (Q4_K, with Q6_K where\n"
    "                    llama.cpp's Q4_K_M puts it); norm weights are always F32\n"
    "  --vocab-from FILE copy the tokenizer (every tokenizer.* entry) from another GGUF file, such as a real model\n"
    "                    or a vocabulary-only file; the vocabulary size follows it. Default: a synthetic\n"
    "                    SentencePiece vocabulary in which common English words are single tokens (467 tokens\n"
    "                    for tiny, 262144 for gemma3 270m/1b, 128256 for llama 1b)\n"
    "  --seed N          random seed (default 1); the same seed gives the same bytes\n"
    "  -o, --output FILE where to write the model (written to FILE.tmp, then renamed)\n"
    "\n"
    "examples:\n"
    "  banter model synth --shape 270m --type Q8_0 -o models/synth-gemma3-270m-q8_0.gguf\n"
    "  banter model synth --arch llama --shape 1b --type Q4_K_M -o models/synth-llama-1b-q4_k_m.gguf\n"
    "  banter model synth --arch llama --vocab-from ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf \\\n"
    "      --type F16 -o /tmp/llama-tiny.gguf\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool one_of(const char *s, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(s, *names)) return true;
    return false;
}

int cmd_model_synth(int argc, char **argv)
{
    static const char *const archs[] = {"gemma3", "llama", NULL};
    static const char *const shapes[] = {"tiny", "270m", "1b", NULL};
    static const char *const types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", NULL};
    banter_synth_config cfg = {.arch = "gemma3", .shape = "tiny", .weight_type = "Q8_0", .seed = 1};
    const char *out = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        }
        const char **dst = NULL;
        if (!strcmp(a, "--arch"))
            dst = &cfg.arch;
        else if (!strcmp(a, "--shape"))
            dst = &cfg.shape;
        else if (!strcmp(a, "--type"))
            dst = &cfg.weight_type;
        else if (!strcmp(a, "--vocab-from"))
            dst = &cfg.vocab_from;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            dst = &out;
        if (dst) {
            if (!(*dst = cli_value(argc, argv, &i))) return 2;
            continue;
        }
        if (!strcmp(a, "--seed")) {
            const char *v = cli_value(argc, argv, &i);
            long seed;
            if (!v || !cli_parse_int(v, "--seed", 0, 0x7fffffffL, &seed)) return 2;
            cfg.seed = (uint64_t)seed;
            continue;
        }
        fprintf(stderr, "banter: model synth: unknown option '%s' (see --help)\n", a);
        return 2;
    }
    if (!one_of(cfg.arch, archs)) {
        fprintf(stderr, "banter: --arch must be gemma3 or llama (got '%s')\n", cfg.arch);
        return 2;
    }
    if (!one_of(cfg.shape, shapes)) {
        fprintf(stderr, "banter: --shape must be tiny, 270m or 1b (got '%s')\n", cfg.shape);
        return 2;
    }
    if (!one_of(cfg.weight_type, types)) {
        fprintf(stderr, "banter: --type must be F32, F16, BF16, Q8_0, Q4_0 or Q4_K_M (got '%s')\n", cfg.weight_type);
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "banter: model synth needs an output file: -o FILE (see --help)\n");
        return 2;
    }

    printf("writing a random-weight %s %s model (%s) to %s ...\n", cfg.arch, cfg.shape, cfg.weight_type, out);
    fflush(stdout);
    double t0 = now_s();
    char err[512];
    banter_status rc = banter_model_synth(&cfg, out, err, sizeof err);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", err);
        return rc == BANTER_ERR_INVALID_ARG ? 2 : 1;
    }
    double dt = now_s() - t0;

    /* Report what the file holds, read back from it. */
    banter_gguf *g = NULL;
    if (banter_gguf_open(out, &g, err, sizeof err) != BANTER_OK) {
        fprintf(stderr, "banter: the written file does not read back: %s\n", err);
        return 1;
    }
    uint64_t n_params = 0, n_vocab = 0;
    size_t n_tensors = banter_gguf_n_tensors(g);
    for (size_t i = 0; i < n_tensors; i++) {
        banter_tensor_info ti;
        if (banter_gguf_tensor(g, i, &ti) != BANTER_OK) continue;
        uint64_t n = 1;
        for (uint32_t d = 0; d < ti.n_dims; d++) n *= (uint64_t)ti.ne[d];
        n_params += n;
        if (!strcmp(ti.name, "token_embd.weight")) n_vocab = (uint64_t)ti.ne[1];
    }
    banter_gguf_close(g);
    struct stat st;
    double mb = stat(out, &st) == 0 ? (double)st.st_size / 1e6 : 0;
    printf("wrote %s: %.1fM parameters in %zu tensors, vocabulary %llu, %.1f MB, in %.2f s\n", out,
           (double)n_params / 1e6, n_tensors, (unsigned long long)n_vocab, mb, dt);
    printf("its weights are random, so its text is gibberish; `banter model info %s` shows its layout\n", out);
    return 0;
}
