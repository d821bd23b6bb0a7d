/*
 * audio.h: audio in and out of the pipeline: files (WAV, FLAC, Ogg through libsndfile), resampling (speexdsp),
 * and the pipeline's internal format.
 *
 * Inside Banter, audio between stages is always mono float32 in [-1, 1] at AUDIO_RATE (16 kHz), cut into
 * AUDIO_FRAME (20 ms = 320 samples) frames where a stage works per frame (VAD). Conversion happens only at the
 * edges: when a file or a client's stream comes in, and when audio goes out at the client's rate.
 */
#ifndef BANTER_AUDIO_H
#define BANTER_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#define AUDIO_RATE 16000
#define AUDIO_FRAME 320 /* 20 ms at 16 kHz */

/* A mono float buffer owned by whoever filled it (free with audio_buf_free). */
struct audio_buf {
    float *samples;
    size_t n;
    int rate;
};

void audio_buf_free(struct audio_buf *b);

/* Reads a sound file (any format libsndfile reads: WAV, FLAC, Ogg/Vorbis, ...), downmixes to mono and resamples
 * to `rate` (0 = keep the file's rate). Rejects empty files, files longer than max_seconds (0 = 3600), and
 * unreadable or unsupported ones, with a message naming the problem. Returns 0 or a negative banter_status. */
int audio_read_file(const char *path, int rate, double max_seconds, struct audio_buf *out, char *err,
                    size_t err_len);

/* Writes mono float samples as a 16-bit PCM WAV (or FLAC if the path ends in .flac) at `rate`. */
int audio_write_file(const char *path, const float *samples, size_t n, int rate, char *err, size_t err_len);

/* Streaming resampler (speexdsp): push any number of input samples, get output samples as they are ready. */
struct audio_resampler;
struct audio_resampler *audio_resampler_open(int in_rate, int out_rate, int quality /* 0..10, -1 = default */);
void audio_resampler_close(struct audio_resampler *r);
/* Converts n_in samples; writes at most out_cap samples and returns how many were written. Input that does not
 * fit is kept internally for the next call. */
size_t audio_resample(struct audio_resampler *r, const float *in, size_t n_in, float *out, size_t out_cap);
/* Upper bound of the output for n_in input samples. */
size_t audio_resample_max_out(const struct audio_resampler *r, size_t n_in);

/* 16-bit PCM <-> float, with clipping on the way out. */
void audio_s16_to_f32(const int16_t *in, float *out, size_t n);
void audio_f32_to_s16(const float *in, int16_t *out, size_t n);

#endif
