/*
 * tts.h: the speech synthesis interface: engines, their worker threads, and requests.
 *
 * An engine is a small table of functions (struct tts_engine); tts.c holds the registry ("flite" is the
 * built-in default, "espeak" the alternative) and everything engines share:
 *
 * - One worker thread per engine. Flite and eSpeak NG both keep process-global state (registered voices and
 *   their features; eSpeak's whole synthesizer), so all calls into a library happen on its worker, which
 * starts when the first handle of that engine opens and stops when the last one closes. Handles on any thread
 * submit jobs to the worker's FIFO queue; a job carries the handle's voice settings, which the worker applies
 * before each job, so handles with different voices do not disturb each other.
 * - Chunking: a job's text goes through the reply chunker (chunker.h), and each chunk is synthesized as its
 * own utterance. Audio of the first clause is out before the rest is synthesized, and every piece of audio is
 *   tagged with the byte span of the text it speaks (banter_tts_chunk), which is what barge-in needs to cut
 * an assistant message at the words actually played.
 * - The engine edge: engines hand 16-bit samples at their native rate to tts_sink_put; the sink converts to
 *   float, resamples to 16 kHz when the engine's rate differs (eSpeak NG: 22050 Hz), and passes pieces to the
 *   job's callback. At the end of a chunk the resampler is drained, so a chunk's sample count is exactly its
 *   duration at 16 kHz and per-chunk counts add up to the total.
 * - Cancellation: a job's cancel flag (or its callback returning 0) stops the engine at its next piece.
 *
 * Callbacks run on the worker thread. A job is caller-owned storage; tts_submit queues it and tts_wait blocks
 * until the worker has finished it (the synchronous public call is the two in a row; the agent can submit a
 * clause and carry on generating).
 */
#ifndef BANTER_TTS_H
#define BANTER_TTS_H

#include "banter.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A voice as an engine sees it: defaults resolved, ranges checked. */
struct tts_voice {
    char name[64]; /* engine-specific voice name */
    int rate;      /* words per minute, 80-450 */
    int pitch;     /* 1-100, 50 = natural */
};

/* Where an engine delivers audio; see tts_sink_put. */
struct tts_sink;

/* 16-bit samples at `rate` Hz from an engine. Returns 0 to continue, nonzero when the engine must stop (the
 * job was cancelled). */
int tts_sink_put(struct tts_sink *sink, const int16_t *pcm, size_t n, int rate);

/* An engine's functions, all called on its worker thread only. Each returns 0 or a negative banter_status
 * with a message in err. */
struct tts_engine {
    const char *name;
    const char *default_voice;
    /* Loads the library (once per worker) and returns the engine's state. */
    int (*init)(void **state, char *err, size_t err_len);
    void (*deinit)(void *state);
    /* Checks a voice and makes it current: BANTER_ERR_NOT_FOUND for a voice the engine does not have. */
    int (*select)(void *state, const struct tts_voice *voice, char *err, size_t err_len);
    /* Synthesizes NUL-terminated text with the current voice into the sink. A sink stop is not an error:
     * return 0 (the caller knows it stopped). */
    int (*synth)(void *state, const char *text, struct tts_sink *sink, char *err, size_t err_len);
};

extern const struct tts_engine tts_flite;
extern const struct tts_engine tts_espeak;

/* The engines this build has (NULL-terminated), and lookup by name (NULL if unknown; NULL or "" = default).
 */
const struct tts_engine *const *tts_engines(void);
const struct tts_engine *tts_engine_find(const char *name);

/* One request: speak `text` (len bytes, need not be NUL-terminated) with handle t's voice. The caller fills
 * the first block, keeps text and the job alive until tts_wait returns, and reads the results after it. */
struct tts_job {
    banter_tts *t;
    const char *text;
    size_t len;
    banter_tts_audio_fn on_audio; /* called on the worker thread; may be NULL */
    void *user;
    atomic_bool cancel; /* set from any thread to stop the job at its next piece */
    double deadline;    /* core_time_ms by which its audio is needed: the worker takes the queued job with the
                           earliest (cancelled ones first, which end at once); 0 = when submitted (FIFO) */

    /* Results, valid after tts_wait. */
    int rc;
    char err[256];
    banter_tts_stats stats;

    /* Private to tts.c. */
    bool done;       /* guarded by the worker's lock */
    int kind;        /* synthesize, or check the voice */
    double t_submit; /* core_time_ms at submit */
    struct tts_job *next;
};

/* Prepares a job (zeroes it and sets the request fields). */
void tts_job_init(struct tts_job *job, banter_tts *t, const char *text, size_t len,
                  banter_tts_audio_fn on_audio, void *user);
/* Queues the job on t's engine worker. Thread-safe. */
void tts_submit(struct tts_job *job);
/* Waits until the worker has finished the job; returns job->rc. */
int tts_wait(struct tts_job *job);

#endif
