/*
 * bench_voice.c: `banter bench voice`, the latency benchmark of spoken turns.
 *
 * A scripted conversation: user sentences synthesized with Flite (slt, which the recognizer hears at 5-9% WER)
 * are played into one session at the pace of real time, each after the previous reply has been played and a
 * short gap, exactly as `banter talk --script` does. Each turn's latency record (banter_turn_stats) is
 * collected, and the benchmark prints per stage the median (p50) and 95th percentile (p95), the CPU time per
 * turn, and the recognizer's word error rate over the script.
 *
 * The same script runs twice in one process: as configured (speculative reply on), then with the speculative
 * reply off as the baseline, so the ratio of the two medians is measured on the same machine at the same time.
 * Without --model, a random-weight model of Gemma 3 270M's shape (Q8_0) is written to a temporary file: every
 * stage runs at real size and speed, only the words are gibberish.
 */
#include "cli.h"
#include "voice.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE_HEAD =
    "usage: banter bench voice [--model FILE] [options]\n"
    "\n"
    "Plays a scripted conversation (sentences spoken by Flite) into a session at real-time pace and prints the\n"
    "latency of each stage of every turn as p50 and p95: the silence waited for the endpoint, the recognizer's\n"
    "final text, the first reply text, the first clause, the first reply audio (the processing latency), and\n"
    "the headline total from the end of the user's speech to the first reply audio; plus CPU time per turn\n"
    "and the recognizer's word error rate. The script runs twice: as configured, then with the speculative\n"
    "reply off (the baseline).\n"
    "\n"
    "  --turns N              turns per run (default 8; the script repeats after 10)\n"
    "  --no-baseline          skip the baseline run\n"
    "  --json                 print one JSON object instead of tables\n"
    "Without --model, a random-weight Gemma 3 270M-shaped Q8_0 model is synthesized into a temporary file.\n"
    "The default reply length here is 24 tokens (-n), to keep the playout of each reply short.\n"
    "\n";

static const char *const SCRIPT[] = {
    "what is the weather like today",
    "please call me back when you get home tonight",
    "i would like to book a table for two people at seven",
    "the train to london leaves at nine in the morning",
    "can you tell me how to get to the nearest station",
    "we need to buy some bread and milk for breakfast",
    "the meeting has been moved to next week",
    "my brother lives in a small house near the river",
    "how long does it take to walk to the park",
    "thank you that is all for now",
};
#define N_SCRIPT ((int)(sizeof SCRIPT / sizeof SCRIPT[0]))

/* The nearest-rank percentile, 0 when there is nothing to rank. */
static double pct(double *v, int n, double p)
{
    return n ? cli_percentile(v, n, p) : 0;
}

/* Word-level edit distance. */
static int word_errors(const char *ref, const char *hyp, int *n_ref)
{
    char r[64][32], h[64][32];
    int nr = 0, nh = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass ? hyp : ref;
        char(*w)[32] = pass ? h : r;
        int *n = pass ? &nh : &nr;
        while (*p && *n < 64) {
            while (*p && !isalnum((unsigned char)*p)) p++;
            int k = 0;
            while (*p && (isalnum((unsigned char)*p) || *p == '\'')) {
                if (k < 31) w[*n][k++] = (char)tolower((unsigned char)*p);
                p++;
            }
            if (k) w[(*n)++][k] = 0;
        }
    }
    int d[65][65];
    for (int i = 0; i <= nr; i++) d[i][0] = i;
    for (int j = 0; j <= nh; j++) d[0][j] = j;
    for (int i = 1; i <= nr; i++)
        for (int j = 1; j <= nh; j++) {
            int a = d[i - 1][j - 1] + (strcmp(r[i - 1], h[j - 1]) != 0);
            int b = d[i - 1][j] + 1, c = d[i][j - 1] + 1;
            d[i][j] = a < b ? (a < c ? a : c) : (b < c ? b : c);
        }
    *n_ref = nr;
    return d[nr][nh];
}

enum { ST_ENDPOINT, ST_ASR, ST_TOKEN, ST_CHUNK, ST_AUDIO, ST_TOTAL, ST_CPU, N_ST };
static const char *const ST_NAMES[N_ST] = {"endpoint delay", "asr final",   "first token", "first clause",
                                           "first audio",    "total",       "cpu per turn"};
static const char *const ST_KEYS[N_ST] = {"endpoint_ms", "asr_final_ms", "first_token_ms", "first_chunk_ms",
                                          "processing_ms", "total_ms", "cpu_ms"};

struct result {
    int n_turns, n_expected, n_errors;
    double p50[N_ST], p95[N_ST];
    double wer;
};

static int run(const struct voice_opts *o, float *const *speech, const size_t *n_speech, int turns,
               struct result *res)
{
    memset(res, 0, sizeof *res);
    struct voice_driver *d = NULL;
    int rc = voice_open(o, &d);
    if (rc) return rc;
    float gap[16000] = {0};
    voice_feed(d, gap, 8000, false);
    for (int t = 0; t < turns; t++) {
        voice_feed(d, speech[t % N_SCRIPT], n_speech[t % N_SCRIPT], false);
        voice_wait_idle(d, 120, false);
        voice_feed(d, gap, 8000, false);
        fprintf(stderr, "\r  turn %d/%d", t + 1, turns);
    }
    fprintf(stderr, "\n");
    voice_finish(d);
    int n = voice_n_turns(d);
    double *v = calloc((size_t)(n ? n : 1), sizeof *v);
    for (int s = 0; s < N_ST && v; s++) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            const banter_turn_stats *t = voice_turn(d, i);
            if (t->failed) continue;
            double x = s == ST_ENDPOINT ? t->endpoint_delay_ms
                     : s == ST_ASR      ? t->asr_final_ms
                     : s == ST_TOKEN    ? t->first_token_ms
                     : s == ST_CHUNK    ? t->first_chunk_ms
                     : s == ST_AUDIO    ? t->processing_ms
                     : s == ST_TOTAL    ? t->total_ms
                                        : t->cpu_ms;
            if (s != ST_CPU && s != ST_ENDPOINT && s != ST_ASR && x <= 0) continue; /* stage did not happen */
            v[k++] = x;
        }
        res->p50[s] = pct(v, k, 50);
        res->p95[s] = pct(v, k, 95);
    }
    int errs = 0, words = 0;
    for (int i = 0; i < n; i++) {
        int nr;
        const char *u = voice_user_text(d, i);
        /* Match each recognized turn to its script line by order. */
        errs += word_errors(SCRIPT[i % N_SCRIPT], u, &nr);
        words += nr;
    }
    res->wer = words ? (double)errs / words : 0;
    res->n_turns = n;
    res->n_expected = turns;
    res->n_errors = voice_n_errors(d);
    free(v);
    voice_close(d);
    return 0;
}

static void print_table(const char *name, const struct result *r)
{
    printf("%s: %d of %d turns answered, recognizer WER %.1f%%%s\n", name, r->n_turns, r->n_expected,
           100 * r->wer, r->n_errors ? " (errors reported)" : "");
    printf("  %-16s %9s %9s\n", "stage (ms)", "p50", "p95");
    for (int s = 0; s < N_ST; s++) printf("  %-16s %9.1f %9.1f\n", ST_NAMES[s], r->p50[s], r->p95[s]);
}

int cmd_bench_voice(int argc, char **argv)
{
    struct voice_opts o;
    voice_opts_default(&o);
    o.max_tokens = 24;
    o.quiet = true;
    long turns = 8;
    bool baseline = true, json = false;
    for (int i = 1; i < argc; i++) {
        int r = voice_parse_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (cli_is_help(argv[i])) {
            fputs(USAGE_HEAD, stdout);
            fputs(VOICE_OPTIONS_HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--turns")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(v, "--turns", 1, 1000, &turns)) return 2;
        } else if (!strcmp(argv[i], "--no-baseline")) {
            baseline = false;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else {
            fprintf(stderr, "banter bench voice: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    cli_log_init(o.verbose ? BANTER_LOG_INFO : BANTER_LOG_WARN);
    char tmp[64] = "";
    char err[512];
    if (!o.model && !o.url) {
        snprintf(tmp, sizeof tmp, "/tmp/banter-bench-voice-%d.gguf", (int)getpid());
        fprintf(stderr, "no --model: writing a random-weight Gemma 3 270M-shaped Q8_0 model to %s\n", tmp);
        banter_synth_config sc = {.arch = "gemma3", .shape = "270m", .weight_type = "Q8_0"};
        if (banter_model_synth(&sc, tmp, err, sizeof err)) {
            fprintf(stderr, "banter: %s\n", err);
            return 1;
        }
        o.model = tmp;
    }
    /* The script, spoken by Flite. */
    float *speech[N_SCRIPT];
    size_t n_speech[N_SCRIPT];
    banter_tts *tts = NULL;
    if (banter_tts_open(NULL, &tts, err, sizeof err)) {
        fprintf(stderr, "banter: %s\n", err);
        if (tmp[0]) unlink(tmp);
        return 1;
    }
    for (int i = 0; i < N_SCRIPT; i++) {
        struct cli_pcm p = {0};
        banter_tts_synthesize(tts, SCRIPT[i], cli_pcm_collect, &p, NULL);
        speech[i] = p.x;
        n_speech[i] = p.n;
    }
    banter_tts_close(tts);

    struct result main_r, base_r;
    fprintf(stderr, "run 1: speculative reply %s\n", o.no_speculate ? "off" : "on");
    int rc = run(&o, speech, n_speech, (int)turns, &main_r);
    if (!rc && baseline) {
        struct voice_opts b = o;
        b.no_speculate = true;
        fprintf(stderr, "run 2 (baseline): speculative reply off\n");
        rc = run(&b, speech, n_speech, (int)turns, &base_r);
    }
    if (!rc) {
        if (json) {
            printf("{\"turns\": %d, \"model\": \"%s\", \"wer\": %.4f", main_r.n_turns, o.model ? o.model : o.url,
                   main_r.wer);
            for (int s = 0; s < N_ST; s++)
                printf(", \"%s_p50\": %.2f, \"%s_p95\": %.2f", ST_KEYS[s], main_r.p50[s], ST_KEYS[s], main_r.p95[s]);
            if (baseline) {
                printf(", \"baseline\": {\"turns\": %d", base_r.n_turns);
                for (int s = 0; s < N_ST; s++)
                    printf(", \"%s_p50\": %.2f, \"%s_p95\": %.2f", ST_KEYS[s], base_r.p50[s], ST_KEYS[s],
                           base_r.p95[s]);
                printf("}");
            }
            printf("}\n");
        } else {
            print_table(o.no_speculate ? "as configured (speculative reply off)" : "speculative reply on", &main_r);
            if (baseline) {
                print_table("baseline (speculative reply off)", &base_r);
                if (main_r.p50[ST_AUDIO] > 0)
                    printf("processing p50: %.1f ms vs %.1f ms baseline (%.2fx faster)\n", main_r.p50[ST_AUDIO],
                           base_r.p50[ST_AUDIO], base_r.p50[ST_AUDIO] / main_r.p50[ST_AUDIO]);
            }
            printf("(processing = endpoint decided to first reply audio; total = end of speech to first audio)\n");
        }
        if (main_r.n_turns < main_r.n_expected) rc = 1;
    }
    for (int i = 0; i < N_SCRIPT; i++) free(speech[i]);
    if (tmp[0]) unlink(tmp);
    return rc;
}
