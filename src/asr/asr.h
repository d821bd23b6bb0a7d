/*
 * asr.h: the speech recognizer interface: engines, the shared model, and per-conversation streams.
 *
 * An engine is a small table of functions (struct asr_engine); asr.c holds the registry of engines that this
 * build has and picks one by name ("pocketsphinx" is the built-in default). Above the table, two objects:
 *
 * - asr_model: what is loaded once and shared (acoustic model, dictionary, language model). Loading is slow
 *   (PocketSphinx: 0.5-1 s and ~100 MB), so a process opens one and keeps it. Thread-safe.
 * - asr_stream: one recognizer instance, used by one thread at a time, that decodes one utterance after
 *   another: begin, feed 16 kHz float samples as they arrive, ask for the partial hypothesis at any time, end
 *   to get the final text. A session holds one stream for its whole life, so opening it is off the turn path.
 *
 * Engines whose decoders cannot share loaded data (PocketSphinx 5prealpha keeps its models inside the
 * decoder, and a decoder is not thread-safe) keep a pool of decoders in the model: a stream takes an idle
 * decoder, or loads a new one if every decoder is busy, and gives it back when closed. The model loads its
 * first decoder at open, so the first stream costs nothing. A decoder adapts to the audio it hears (cepstral
 * mean) and keeps that adaptation from one utterance, and one stream, to the next (asr_pocketsphinx.c says
 * why): a process's first utterance per decoder is the slow one.
 *
 * Timing: each utterance records how much audio it heard, the wall time spent decoding it (feed + end), and
 * the wall time of end alone: the delay between the last sample and the final text, which is the figure that
 * adds to a turn's latency.
 */
#ifndef BANTER_ASR_H
#define BANTER_ASR_H

#include <stdbool.h>
#include <stddef.h>

struct asr_config {
    const char *engine; /* NULL or "" = "pocketsphinx" */
    bool second_pass;   /* PocketSphinx: run the flat-lexicon and best-path passes at end (~100-150 ms) */
    const char
        *model_dir; /* NULL = the engine's packaged model (PocketSphinx: /usr/share/pocketsphinx/model) */
};

/* The record of one utterance. */
struct asr_timing {
    double audio_ms;  /* audio fed since begin */
    double decode_ms; /* wall time inside feed and end */
    double final_ms;  /* wall time inside end: last sample to final text */
};

/* An engine's functions. `shared` is what load returns; `dec` is one decoder. Every function returns 0 or a
 * negative banter_status and writes a message to err on failure. open and close may be called from several
 * threads at once (an engine whose library has global state serializes them itself); begin, feed, partial and
 * end are called by the one thread that holds the decoder. */
struct asr_engine {
    const char *name;
    int (*load)(const struct asr_config *cfg, void **shared, char *err, size_t err_len);
    void (*unload)(void *shared);
    int (*open)(void *shared, void **dec, char *err, size_t err_len);
    void (*close)(void *dec);
    int (*begin)(void *dec, char *err, size_t err_len);
    int (*feed)(void *dec, const float *pcm, size_t n, char *err, size_t err_len);
    /* The best hypothesis so far ("" when none); owned by the decoder, valid until its next call. */
    const char *(*partial)(void *dec);
    /* Finishes the utterance; *text is owned by the decoder, valid until its next begin or close. */
    int (*end)(void *dec, const char **text, char *err, size_t err_len);
};

/* The engines this build has (NULL-terminated), and lookup by name (NULL if unknown). */
const struct asr_engine *const *asr_engines(void);
const struct asr_engine *asr_engine_find(const char *name);

struct asr_model;
struct asr_stream;

/* Loads the engine's model and its first decoder. On failure *out is NULL and err holds the reason. */
int asr_model_open(const struct asr_config *cfg, struct asr_model **out, char *err, size_t err_len);
/* Frees the model and its idle decoders. Every stream must be closed first. Accepts NULL. */
void asr_model_close(struct asr_model *m);
const char *asr_model_engine(const struct asr_model *m);

/* Takes a decoder for a new stream (loading another one if all are in use). Thread-safe. */
int asr_stream_open(struct asr_model *m, struct asr_stream **out, char *err, size_t err_len);
/* Gives the decoder back to the model (an utterance in progress is abandoned). Accepts NULL. */
void asr_stream_close(struct asr_stream *s);

/* One utterance. A stream is used by one thread at a time. begin while an utterance is open restarts it. */
int asr_stream_begin(struct asr_stream *s);
int asr_stream_feed(struct asr_stream *s, const float *pcm, size_t n);
/* The partial hypothesis; owned by the stream, valid until its next call. "" outside an utterance. */
const char *asr_stream_partial(struct asr_stream *s);
/* Ends the utterance: *text (owned by the stream, valid until the next begin or close) and *timing (may be
 * NULL) are filled in. */
int asr_stream_end(struct asr_stream *s, const char **text, struct asr_timing *timing);
/* The message of the stream's last error ("" if none). */
const char *asr_stream_error(const struct asr_stream *s);
bool asr_stream_in_utterance(const struct asr_stream *s);

/* The shared model behind a public recognizer handle (for conversations that open their own streams). */
typedef struct banter_asr banter_asr;
struct asr_model *asr_handle_model(banter_asr *a);

/* The PocketSphinx engine (asr_pocketsphinx.c). */
extern const struct asr_engine asr_pocketsphinx;

#endif
