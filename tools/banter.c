/*
 * banter.c: the `banter` command's entry point; dispatches to one subcommand per file.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *USAGE =
    "usage: banter <command> [options]\n"
    "\n"
    "Banter holds spoken conversations with a language model, in real time, from one process.\n"
    "\n"
    "commands:\n"
    "  talk     a spoken conversation: from a sound file, a scripted set of files, or the microphone\n"
    "  serve    an HTTP server: OpenAI-compatible speech and transcription endpoints (realtime: not yet)\n"
    "  chat     talk to a GGUF language model in the terminal (interactive or one-shot)\n"
    "  model    inspect, evaluate, tokenize with, or synthesize GGUF model files\n"
    "  bench    measure speed (bench llm: tokens/s; bench voice: latency of spoken turns)\n"
    "  transcribe  print the words spoken in sound files (built-in PocketSphinx recognizer)\n"
    "  say      speak a text into a sound file (built-in Flite or eSpeak NG voices)\n"
    "\n"
    "Run `banter <command> --help` for a command's options. `banter --version` prints the version.\n";

static void log_to_stderr(banter_log_level level, const char *line, void *user)
{
    (void)user;
    static const char *names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "banter: %s%s%s\n", level <= BANTER_LOG_WARN ? names[level] : "",
            level <= BANTER_LOG_WARN ? ": " : "", line);
}

void cli_log_init(banter_log_level level)
{
    banter_set_log(log_to_stderr, level, NULL);
}

double cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double cli_percentile(double *v, int n, double p)
{
    if (n <= 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)ceil(p / 100.0 * n - 1e-9) - 1; /* (the epsilon: 0.95 * 20 must rank 19, not 20) */
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

int cli_pcm_collect(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    (void)chunk;
    struct cli_pcm *p = user;
    if (p->n + n > p->cap) {
        size_t cap = (p->n + n) * 2;
        float *g = realloc(p->x, cap * sizeof *g);
        if (!g) return 0;
        p->x = g;
        p->cap = cap;
    }
    memcpy(p->x + p->n, samples, n * sizeof *samples);
    p->n += n;
    return 1;
}

bool cli_is_help(const char *s)
{
    return !strcmp(s, "-h") || !strcmp(s, "--help");
}

bool cli_parse_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != 0 || v < lo || v > hi) {
        fprintf(stderr, "banter: %s must be an integer from %ld to %ld (got '%s')\n", what, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != 0 || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "banter: %s must be a number from %g to %g (got '%s')\n", what, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

const char *cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "banter: %s needs a value (see --help)\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

void cli_model_hint(void)
{
    fprintf(stderr,
            "\n"
            "Banter runs GGUF language models. Good choices (download one, then pass it with --model):\n"
            "  Gemma 3 270M instruct, Q8_0 (~290 MB):  https://huggingface.co/ggml-org/gemma-3-270m-it-GGUF\n"
            "  Gemma 3 1B instruct, Q4_0 QAT (~1 GB): https://huggingface.co/google/gemma-3-1b-it-qat-q4_0-gguf\n"
            "  Llama 3.2 1B instruct, Q4_K_M:          https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF\n"
            "For a dry run without a download, make a random-weight model of the real shape:\n"
            "  banter model synth --arch gemma3 --shape 270m --type Q8_0 -o models/synth-270m.gguf\n"
            "(its answers are gibberish, but every stage runs at real size and speed).\n");
}

int cmd_model(int argc, char **argv)
{
    static const char *usage = "usage: banter model <info|eval|tokenize|synth> [options]\n"
                               "\n"
                               "  info      print a GGUF file's metadata and tensor table\n"
                               "  eval      run a prompt and write float32 logits for every prompt token\n"
                               "  tokenize  print the token ids (and pieces) of a text\n"
                               "  synth     write a random-weight model of a real architecture and shape\n";
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "info")) return cmd_model_info(argc - 1, argv + 1);
    if (!strcmp(sub, "eval")) return cmd_model_eval(argc - 1, argv + 1);
    if (!strcmp(sub, "tokenize")) return cmd_model_tokenize(argc - 1, argv + 1);
    if (!strcmp(sub, "synth")) return cmd_model_synth(argc - 1, argv + 1);
    fprintf(stderr, "banter: unknown model command '%s'\n%s", sub, usage);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd) || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("banter %s (cpu kernels: %s)\n", banter_version(), banter_cpu_features());
        return 0;
    }
    cli_log_init(BANTER_LOG_WARN);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "model")) return cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "transcribe")) return cmd_transcribe(argc - 1, argv + 1);
    if (!strcmp(cmd, "say")) return cmd_say(argc - 1, argv + 1);
    if (!strcmp(cmd, "talk")) return cmd_talk(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "banter: unknown command '%s'\n\n%s", cmd, USAGE);
    return 2;
}
