/*
 * cli.h: what the `banter` subcommands share. Each subcommand lives in its own file as
 * `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand's name) and returns the process exit code:
 * 0 on success, 1 on a runtime failure, 2 on a usage error. Subcommands use the public header only.
 */
#ifndef BANTER_CLI_H
#define BANTER_CLI_H

#include "banter.h"

#include <stdbool.h>

int cmd_chat(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_model_info(int argc, char **argv);
int cmd_model_eval(int argc, char **argv);
int cmd_model_tokenize(int argc, char **argv);
int cmd_model_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_transcribe(int argc, char **argv);
int cmd_say(int argc, char **argv);
int cmd_talk(int argc, char **argv);
int cmd_bench_voice(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Installs a stderr logger showing messages up to `level` ("banter: ..." prefix). */
void cli_log_init(banter_log_level level);

/* True if s is "-h" or "--help". */
bool cli_is_help(const char *s);

/* Strict number parsing: the whole string must be a number within [lo, hi]. Prints an error naming `what` and
 * returns false otherwise. */
bool cli_parse_int(const char *s, const char *what, long lo, long hi, long *out);
bool cli_parse_float(const char *s, const char *what, double lo, double hi, double *out);

/* For options taking a value: returns argv[++*i] or prints "OPTION needs a value" and returns NULL. */
const char *cli_value(int argc, char **argv, int *i);

/* The hint printed when a model path is missing or cannot be opened. */
void cli_model_hint(void);

/* What the benchmarks share: a monotonic clock in milliseconds, and the nearest-rank percentile p (0-100) of
 * v[0, n), which sorts v in place (-1 when n is 0). */
double cli_now_ms(void);
double cli_percentile(double *v, int n, double p);

/* Synthesized audio collected into one growing buffer: pass cli_pcm_collect and a zeroed struct cli_pcm to
 * banter_tts_synthesize; free x afterwards. */
struct cli_pcm {
    float *x;
    size_t n, cap;
};
int cli_pcm_collect(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user);

#endif
