/*
 * voice.h: what `banter talk` and `banter bench voice` share: the options that set up a conversation (language
 * model, voice, turn-taking), and a driver that plays sound files into a session at the pace of real time and
 * collects what comes back.
 */
#ifndef BANTER_TOOLS_VOICE_H
#define BANTER_TOOLS_VOICE_H

#include "banter.h"

#include <stdbool.h>
#include <stdio.h>

struct voice_opts {
    const char *model, *url, *remote_model, *api_key;
    double timeout_s;
    const char *system;
    const char *tts_engine, *voice;
    int rate, pitch;
    int end_silence_ms;
    int max_tokens;
    int n_ctx, n_threads;
    double temp;
    long seed;
    bool no_speculate;
    int speculate_ms; /* 0 = the session's default */
    bool no_barge_in;
    bool quiet;   /* print no transcript */
    bool verbose;
};

void voice_opts_default(struct voice_opts *o);

/* Parses the option at argv[*i] if it is a conversation option (advancing *i past its value). Returns 1 when it
 * was one, 0 when it is not, -1 on a bad value (message printed). */
int voice_parse_opt(struct voice_opts *o, int argc, char **argv, int *i);

/* The help text of those options. */
extern const char *const VOICE_OPTIONS_HELP;

/* Opens the language model (printing the model hint when none is given), the recognizer and a session whose
 * events go to the driver. Returns 0, or 1 after printing why not. */
struct voice_driver;
int voice_open(const struct voice_opts *o, struct voice_driver **out);
void voice_close(struct voice_driver *d);

/* Closes the session (its threads stop), keeping what was recorded: call it before reading the results below. */
void voice_finish(struct voice_driver *d);

/* Feeds samples at real-time pace (fast = as fast as processed), collecting the output. */
void voice_feed(struct voice_driver *d, const float *samples, size_t n, bool fast);

/* Feeds silence until the session has answered and played everything (or max_s passes). Returns false on
 * timeout. */
bool voice_wait_idle(struct voice_driver *d, double max_s, bool fast);

/* Feeds silence until the reply has been audible for ms (or the session went idle first). */
void voice_wait_speaking(struct voice_driver *d, int ms, double max_s, bool fast);

/* The turns completed so far and their records. */
int voice_n_turns(const struct voice_driver *d);
const banter_turn_stats *voice_turn(const struct voice_driver *d, int i);
/* Texts of turn i: what the user said (recognized) and the assistant's message as heard. */
const char *voice_user_text(const struct voice_driver *d, int i);
const char *voice_reply_text(const struct voice_driver *d, int i);
/* Errors the session reported. */
int voice_n_errors(const struct voice_driver *d);

/* The reply audio of every turn, concatenated (what a speaker played), and the whole conversation as heard in
 * the room (input and output mixed on one timeline). */
const float *voice_reply_audio(const struct voice_driver *d, size_t *n);
const float *voice_timeline(const struct voice_driver *d, size_t *n);

banter_session *voice_session(struct voice_driver *d);

/* Prints the latency table of all turns. */
void voice_print_table(const struct voice_driver *d, FILE *f);

#endif
