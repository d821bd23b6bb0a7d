/*
 * bench.c: `banter bench llm`, the language-model speed benchmark.
 *
 * Measures, on one model file and one machine, in one run:
 * - prefill: tokens/s feeding a fresh sequence a prompt of --prompt tokens (batches of 512);
 * - decode: tokens/s of one sequence generating --gen tokens one step at a time;
 * - batched decode: aggregate tokens/s when N sequences each advance one token per forward pass;
 * - the machine's read bandwidth, and the decode bound it implies (weight bytes streamed per token).
 * Each figure is the median of --reps repetitions. Token ids are fixed pseudo-random values, so sampling cost and
 * text do not matter; this measures the engine.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *USAGE =
    "usage: banter bench llm --model FILE [options]\n"
    "\n"
    "Prints prefill and decode speed (tokens/s), batched decode speed for several concurrent sequences, memory,\n"
    "and the machine's measured read bandwidth, as a table or (--json) as one JSON object:\n"
    "  {\"prefill_tps\", \"decode_tps\", \"batched\": [{\"sequences\", \"decode_tps\"}], \"bandwidth_gbs\", ...}\n"
    "\n"
    "options:\n"
    "  -m, --model FILE     GGUF model\n"
    "      --prompt N       prefill length in tokens (default 512)\n"
    "      --gen N          decode steps per measurement (default 64)\n"
    "      --seqs LIST      concurrent sequence counts for batched decode (default 8,32; 0 or '' = skip)\n"
    "      --reps N         repetitions; the median is reported (default 3)\n"
    "  -t, --threads N      kernel threads (default: all cores)\n"
    "      --json           one JSON object on standard output\n";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint32_t rng_state = 12345;
static banter_token rand_token(int n_vocab)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    /* Stay clear of the low ids where control tokens live. */
    return (banter_token)(300 + (rng_state >> 8) % (uint32_t)(n_vocab > 600 ? n_vocab - 300 : 1));
}

/* Decodes `steps` single-token steps for each of the n_seqs open sequences in one batch per step. Returns the
 * aggregate tokens/s, or -1 on error. */
static double decode_steps(banter_context *c, const int *seqs, int n_seqs, int steps, int n_vocab,
                           banter_batch_entry *batch)
{
    double t0 = cli_now_ms();
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < n_seqs; i++)
            batch[i] = (banter_batch_entry){rand_token(n_vocab), seqs[i], banter_seq_len(c, seqs[i]), true};
        if (banter_decode(c, batch, n_seqs) != BANTER_OK) {
            fprintf(stderr, "banter bench: decode failed: %s\n", banter_context_error(c));
            return -1;
        }
    }
    double ms = cli_now_ms() - t0;
    return ms > 0 ? (double)n_seqs * steps * 1000.0 / ms : 0;
}

static int bench_llm(int argc, char **argv)
{
    const char *model_path = NULL, *seq_list = "8,32";
    long n_prompt = 512, n_gen = 64, reps = 3, threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--prompt")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1 << 16, &n_prompt)) return 2;
        } else if (!strcmp(a, "--gen")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1 << 16, &n_gen)) return 2;
        } else if (!strcmp(a, "--seqs")) {
            if (!(seq_list = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--reps")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 100, &reps)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else {
            fprintf(stderr, "banter bench llm: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path) {
        fprintf(stderr, "banter bench llm: --model FILE is required\n");
        cli_model_hint();
        return 2;
    }
    long seq_counts[16];
    int n_counts = 0;
    for (const char *p = seq_list; *p;) {
        char buf[16];
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof buf || n_counts == 16) {
            fprintf(stderr, "banter bench llm: --seqs wants a comma-separated list like 8,32\n");
            return 2;
        }
        memcpy(buf, p, k);
        buf[k] = 0;
        long v;
        if (!cli_parse_int(buf, "--seqs entry", 0, 1024, &v)) return 2;
        if (v > 0) seq_counts[n_counts++] = v;
        p += k;
        if (*p == ',') p++;
    }
    long max_seqs = 1;
    for (int i = 0; i < n_counts; i++)
        if (seq_counts[i] > max_seqs) max_seqs = seq_counts[i];

    char err[512];
    banter_model *m = NULL;
    banter_model_config mc = banter_model_config_default();
    mc.n_threads = (int)threads;
    if (banter_model_open(model_path, &mc, &m, err, sizeof err) != BANTER_OK) {
        fprintf(stderr, "banter bench llm: cannot load '%s': %s\n", model_path, err);
        return 1;
    }
    banter_model_desc d;
    banter_model_describe(m, &d);
    int code = 1;
    banter_context *c = NULL;
    banter_token *prompt = NULL;
    banter_batch_entry *batch = NULL;
    int *seqs = NULL;
    double *samples = calloc((size_t)reps, sizeof *samples);
    double batched_tps[16] = {0};

    if (!json) fprintf(stderr, "measuring memory bandwidth...\n");
    double bw = banter_measure_bandwidth((int)threads, 1.0);

    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = (int)(n_prompt + n_gen + 8);
    cc.n_seq = (int)max_seqs;
    cc.n_batch = 512;
    cc.n_outputs = (int)max_seqs;
    cc.n_threads = (int)threads;
    prompt = malloc((size_t)n_prompt * sizeof *prompt);
    batch = malloc((size_t)max_seqs * sizeof *batch);
    seqs = malloc((size_t)max_seqs * sizeof *seqs);
    if (!samples || !prompt || !batch || !seqs) goto done;
    banter_status rc = banter_context_open(m, &cc, &c);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter bench llm: cannot create a context: %s\n", banter_status_str(rc));
        goto done;
    }
    for (long i = 0; i < n_prompt; i++) prompt[i] = rand_token(d.n_vocab);

    /* Prefill. */
    if (!json) fprintf(stderr, "prefill %ld tokens x %ld...\n", n_prompt, reps);
    for (long r = 0; r < reps; r++) {
        int seq;
        if (banter_seq_open(c, &seq) != BANTER_OK) goto done;
        double t0 = cli_now_ms();
        rc = banter_seq_feed(c, seq, prompt, (int)n_prompt, NULL);
        double ms = cli_now_ms() - t0;
        banter_seq_close(c, seq);
        if (rc != BANTER_OK) {
            fprintf(stderr, "banter bench llm: prefill failed: %s\n", banter_context_error(c));
            goto done;
        }
        samples[r] = n_prompt * 1000.0 / ms;
    }
    double prefill_tps = median(samples, (int)reps);

    /* Single-sequence decode after a short prompt. */
    if (!json) fprintf(stderr, "decode %ld tokens x %ld...\n", n_gen, reps);
    for (long r = 0; r < reps; r++) {
        int seq;
        if (banter_seq_open(c, &seq) != BANTER_OK || banter_seq_feed(c, seq, prompt, 8, NULL) != BANTER_OK)
            goto done;
        samples[r] = decode_steps(c, &seq, 1, (int)n_gen, d.n_vocab, batch);
        banter_seq_close(c, seq);
        if (samples[r] < 0) goto done;
    }
    double decode_tps = median(samples, (int)reps);

    /* Batched decode. */
    for (int k = 0; k < n_counts; k++) {
        int n = (int)seq_counts[k];
        if (!json) fprintf(stderr, "batched decode, %d sequences x %ld steps x %ld...\n", n, n_gen, reps);
        for (long r = 0; r < reps; r++) {
            for (int i = 0; i < n; i++) {
                if (banter_seq_open(c, &seqs[i]) != BANTER_OK ||
                    banter_seq_feed(c, seqs[i], prompt + i % 8, 8, NULL) != BANTER_OK)
                    goto done;
            }
            samples[r] = decode_steps(c, seqs, n, (int)n_gen, d.n_vocab, batch);
            for (int i = 0; i < n; i++) banter_seq_close(c, seqs[i]);
            if (samples[r] < 0) goto done;
        }
        batched_tps[k] = median(samples, (int)reps);
    }

    double bound = bw > 0 && d.n_bytes ? bw * 1e9 / (double)d.n_bytes : 0;
    if (json) {
        printf("{\"model\": \"%s\", \"arch\": \"%s\", \"weight_type\": \"%s\", \"model_bytes\": %llu, "
               "\"context_bytes\": %zu, \"threads\": %ld, \"cpu\": \"%s\", \"prompt_tokens\": %ld, "
               "\"prefill_tps\": %.2f, \"decode_tps\": %.2f, \"batched\": [",
               d.name, d.arch, d.weight_type, (unsigned long long)d.n_bytes, banter_context_bytes(c), threads,
               banter_cpu_features(), n_prompt, prefill_tps, decode_tps);
        for (int k = 0; k < n_counts; k++)
            printf("%s{\"sequences\": %ld, \"decode_tps\": %.2f}", k ? ", " : "", seq_counts[k], batched_tps[k]);
        printf("], \"bandwidth_gbs\": %.2f, \"decode_bound_tps\": %.2f}\n", bw, bound);
    } else {
        printf("model            %s (%s, %s, %.1f MB of weights)\n", d.name, d.arch, d.weight_type,
               d.n_bytes / 1e6);
        printf("kernels          %s, %s threads\n", banter_cpu_features(), threads ? "set" : "all");
        printf("context memory   %.1f MB (%ld sequences x %d positions)\n", banter_context_bytes(c) / 1e6,
               max_seqs, cc.n_ctx);
        printf("read bandwidth   %.1f GB/s  -> decode bound %.1f t/s\n", bw, bound);
        printf("%-28s %12s\n", "measurement", "tokens/s");
        printf("%-28s %12.1f\n", "prefill", prefill_tps);
        printf("%-28s %12.1f   (%.0f%% of bound)\n", "decode, 1 sequence", decode_tps,
               bound > 0 ? 100 * decode_tps / bound : 0);
        for (int k = 0; k < n_counts; k++) {
            char label[64];
            snprintf(label, sizeof label, "decode, %ld sequences", seq_counts[k]);
            printf("%-28s %12.1f   (%.2fx one sequence)\n", label, batched_tps[k],
                   decode_tps > 0 ? batched_tps[k] / decode_tps : 0);
        }
        printf("(medians of %ld runs)\n", reps);
    }
    code = 0;
done:
    free(samples);
    free(prompt);
    free(batch);
    free(seqs);
    banter_context_close(c);
    banter_model_close(m);
    return code;
}

int cmd_bench(int argc, char **argv)
{
    static const char *usage = "usage: banter bench llm --model FILE [options]   (see banter bench llm --help)\n"
                               "       banter bench voice [--model FILE] [options] (see banter bench voice --help)\n"
                               "       banter bench serve (-m FILE | --url URL) [options] (see banter bench serve --help)\n";
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "llm")) return bench_llm(argc - 1, argv + 1);
    if (!strcmp(argv[1], "voice")) return cmd_bench_voice(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return cmd_bench_serve(argc - 1, argv + 1);
    fprintf(stderr, "banter bench: unknown benchmark '%s'\n%s", argv[1], usage);
    return 2;
}
