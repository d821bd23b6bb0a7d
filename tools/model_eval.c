/*
 * model_eval.c: `banter model eval`, which writes the logits after every prompt token, for cross-checking the
 * engine against other implementations on the same file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: banter model eval --model FILE --prompt TEXT --logits OUT [options]\n"
    "\n"
    "Tokenizes TEXT (with BOS where the model wants it), feeds it, and writes the logits after each prompt token\n"
    "to OUT: float32 little-endian, one row of n_vocab values per token, in order (row i follows tokens 0..i).\n"
    "The token ids go to standard output, space-separated.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE     GGUF model\n"
    "  -p, --prompt TEXT    the prompt\n"
    "  -o, --logits OUT     output file for the logits\n"
    "      --no-bos         do not add BOS\n"
    "      --special        parse control tokens written in TEXT (e.g. <start_of_turn>)\n"
    "      --sequential     feed one token per forward pass instead of one batch (for comparison)\n"
    "  -t, --threads N      kernel threads (default: all cores)\n";

int cmd_model_eval(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *out_path = NULL;
    bool bos = true, special = false, sequential = false;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--logits")) {
            if (!(out_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--no-bos")) {
            bos = false;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--sequential")) {
            sequential = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "banter model eval: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path || !prompt || !out_path) {
        fprintf(stderr, "banter model eval: --model, --prompt and --logits are required (see --help)\n");
        if (!model_path) cli_model_hint();
        return 2;
    }
    char err[512];
    banter_model *m = NULL;
    banter_context *c = NULL;
    banter_token *toks = NULL;
    FILE *out = NULL;
    int code = 1;
    banter_model_config mc = banter_model_config_default();
    mc.n_threads = (int)threads;
    if (banter_model_open(model_path, &mc, &m, err, sizeof err) != BANTER_OK) {
        fprintf(stderr, "banter model eval: cannot load '%s': %s\n", model_path, err);
        return 1;
    }
    banter_model_desc d;
    banter_model_describe(m, &d);
    size_t n = 0, len = strlen(prompt);
    banter_tokenize(m, prompt, len, bos, special, NULL, 0, &n);
    if (n == 0) {
        fprintf(stderr, "banter model eval: the prompt has no tokens\n");
        goto done;
    }
    toks = malloc(n * sizeof *toks);
    if (!toks || banter_tokenize(m, prompt, len, bos, special, toks, n, &n) != BANTER_OK) goto done;
    /* Chunks of up to 64 rows keep the logits buffer small even for 262144-token vocabularies. */
    int chunk = sequential ? 1 : 64;
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = (int)n + 1;
    cc.n_batch = chunk;
    cc.n_outputs = chunk;
    banter_status rc = banter_context_open(m, &cc, &c);
    int seq = 0;
    if (rc != BANTER_OK || (rc = banter_seq_open(c, &seq)) != BANTER_OK) {
        fprintf(stderr, "banter model eval: cannot create a context: %s\n", banter_status_str(rc));
        goto done;
    }
    out = fopen(out_path, "wb");
    if (!out) {
        perror(out_path);
        goto done;
    }
    banter_batch_entry batch[64];
    for (size_t done = 0; done < n;) {
        int k = (int)(n - done < (size_t)chunk ? n - done : (size_t)chunk);
        for (int i = 0; i < k; i++) batch[i] = (banter_batch_entry){toks[done + i], seq, (int)(done + i), true};
        if ((rc = banter_decode(c, batch, k)) != BANTER_OK) {
            fprintf(stderr, "banter model eval: %s\n", banter_context_error(c));
            goto done;
        }
        for (int i = 0; i < k; i++)
            if (fwrite(banter_logits(c, i), sizeof(float), (size_t)d.n_vocab, out) != (size_t)d.n_vocab) {
                perror(out_path);
                goto done;
            }
        done += (size_t)k;
    }
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", toks[i]);
    printf("\n");
    code = 0;
done:
    if (out && fclose(out) != 0 && code == 0) {
        perror(out_path);
        code = 1;
    }
    free(toks);
    banter_context_close(c);
    banter_model_close(m);
    return code;
}
