/*
 * vad.h: voice activity detection and endpointing on the pipeline's 20 ms frames (AUDIO_FRAME = 320 samples
 * of 16 kHz mono float, see audio.h).
 *
 * Two parts, so that a different detector (a neural one such as Silero VAD) can replace the first without
 * touching the second:
 *   1. The detector turns each frame into a speech probability. The built-in one is a small signal-processing
 *      detector (vad.c): energy in the 300-3000 Hz speech band against an adaptive noise floor, gated by
 *      voicing (periodicity in the pitch range), so steady noise of any level and a noise level that changes
 *      never start a turn, while speech at 10 dB SNR does.
 *   2. The endpointer turns probabilities into events with hysteresis: SPEECH_START after min_speech_ms of
 *      frames at or above start_prob (one frame's dropout allowed), SPEECH_END after end_silence_ms of frames
 *      below stay_prob. The lower stay threshold carries unvoiced sounds and the gaps between words; the
 *      end_silence wait (the hangover) carries pauses inside a sentence.
 *
 * Default endpoint: 400 ms of silence. The endpoint wait is the largest single part of the "end of user
 * speech to first reply audio" latency, so it is as short as speech allows: the shortest wait that split no
 * utterance of the Flite test set in any noise condition (350 ms split the 250 ms intra-sentence pause at 10
 * dB SNR), and 160 ms longer than the longest pause measured inside a single utterance of the human
 * recordings in pocketsphinx-testdata (240 ms). Measured endpoint delay: p50 367 ms, p95 407 ms (vad.c has
 * the details). Callers that can wait longer for fewer premature endpoints (slow speakers, dictation) raise
 * end_silence_ms.
 *
 * Timestamps are sample positions at 16 kHz counted from vad_open / vad_reset (divide by 16 for ms).
 *
 * A struct vad is used by one thread at a time. It allocates only in vad_open; vad_feed allocates nothing.
 */
#ifndef BANTER_VAD_H
#define BANTER_VAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Zero in any field means its default (vad_config_default fills them in). */
struct vad_config {
    float margin_db;    /* speech-band energy above the noise floor that counts as speech (default 6 dB) */
    float min_level_db; /* speech-band level (dBFS) below which nothing is speech (default -60 dBFS) */
    int min_speech_ms;  /* speech needed before SPEECH_START (default 80 ms) */
    int end_silence_ms; /* silence that ends a turn: the endpoint (default 400 ms) */
    int preroll_ms;     /* audio kept from before the detected start, for the recognizer (default 200 ms;
                           negative = none) */
    float start_prob;   /* probability a frame needs to count toward a start (default 0.5) */
    float stay_prob;    /* probability that keeps a turn going (default 0.2) */
};

void vad_config_default(struct vad_config *cfg);

enum vad_event_type {
    VAD_NONE = 0,
    VAD_SPEECH_START = 1,
    VAD_SPEECH_END = 2,
};

/* What vad_feed tells about one frame. Positions are in samples at 16 kHz since vad_open / vad_reset. */
struct vad_event {
    enum vad_event_type type; /* the event decided on this frame, at most one */
    float prob;               /* this frame's speech probability, 0..1 */
    bool in_speech;           /* inside a turn after this frame (from SPEECH_START until SPEECH_END) */
    int64_t frame_end;        /* end of this frame: when anything reported here was decided */
    /* SPEECH_START: the first speech frame, and where the pre-roll before it begins (>= 0). The audio from
     * preroll_start up to frame_end can be fetched with vad_recent(v, buf, frame_end - preroll_start). */
    int64_t start;
    int64_t preroll_start;
    /* SPEECH_END: the end of the last speech frame (where speech really ended); decided at frame_end, so the
     * endpoint delay is frame_end - end. */
    int64_t end;
};

struct vad;

/* Opens a detector with cfg (NULL = defaults). Returns NULL for an invalid config (logged) or out of memory.
 * Close with vad_close (accepts NULL). */
struct vad *vad_open(const struct vad_config *cfg);
void vad_close(struct vad *v);

/* Forgets all audio and state (noise floor included), as if just opened; positions restart at 0. */
void vad_reset(struct vad *v);

/* Feeds one frame of AUDIO_FRAME samples. Fills *ev and returns its type (VAD_NONE, VAD_SPEECH_START,
 * VAD_SPEECH_END), or BANTER_ERR_INVALID_ARG for NULL arguments. */
int vad_feed(struct vad *v, const float *frame, struct vad_event *ev);

/* Like vad_feed, with the speech probability computed by another detector (prob in 0..1); frame is kept for
 * the pre-roll only and may be NULL (then the pre-roll holds silence). */
int vad_feed_prob(struct vad *v, const float *frame, float prob, struct vad_event *ev);

/* Copies the last n samples fed (n at most vad_recent_capacity) into out, oldest first, and returns how many
 * were copied (fewer at the very start of a stream). */
size_t vad_recent(const struct vad *v, float *out, size_t n);
size_t vad_recent_capacity(const struct vad *v);

/* The resolved configuration (defaults filled in). */
const struct vad_config *vad_get_config(const struct vad *v);

/* Diagnostics of the built-in detector: the noise floor estimate and the last frame's speech-band level (both
 * dBFS) and voicing (0..1). */
float vad_noise_floor_db(const struct vad *v);
void vad_last_features(const struct vad *v, float *level_db, float *voicing);

#endif
