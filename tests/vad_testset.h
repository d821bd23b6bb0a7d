/*
 * vad_testset.h: the labelled voice-activity test set, built at run time from synthesized speech (CMU Flite,
 * voices slt and kal16), shared by tests/test_vad.c and bench/bench_vad.c. Nothing is stored on disk: the
 * same seeds give the same audio on every run.
 *
 * A stream is 1 s of lead-in, then utterances separated by 0.8-1.6 s gaps (seeded), then 1.5 s of tail. Each
 * utterance's true speech region is the non-silent extent of its synthesized waveform: from the first to the
 * last 5 ms window whose RMS is within 40 dB of the clip's loudest window. One utterance is two clauses
 * synthesized apart and joined by a 250 ms pause: it is one turn, and a detector that ends the turn in the
 * pause has split it. Noise is mixed in at a stated SNR, the ratio of the mean power of the speech regions to
 * the mean power of the noise: white Gaussian noise, or "pink+hum" (1/f-shaped noise plus a 50 Hz mains hum
 * with its harmonics, half the noise power each). Every utterance is scaled to the same mean power (-26
 * dBFS), so the SNR holds per utterance, not only on average over voices of different loudness.
 *
 * Scoring (ts_score): a detected turn runs from a SPEECH_START's start to the following SPEECH_END's end. A
 * true utterance is detected when exactly one detected turn overlaps it; two or more is a split; a detected
 * turn that overlaps none is a false start. Frame scores compare, per 20 ms frame, "inside a true utterance"
 * with "inside a detected turn" (segment-level labels: pauses inside an utterance count as speech, because
 * the pipeline needs the whole turn). Endpoint delay = when SPEECH_END was decided - the true end; start
 * error = detected start - true start.
 */
#ifndef BANTER_VAD_TESTSET_H
#define BANTER_VAD_TESTSET_H

#include "audio/audio.h"
#include "audio/vad.h"
#include "core/core.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few Flite 2.2 declarations we need, written out because <flite/flite.h> pulls in cst_audio.h, whose own
 * audio_write_file() conflicts with audio.h's. cst_wave's layout is Flite's public one (cst_wave.h). */
typedef struct cst_voice_struct cst_voice;
typedef struct cst_wave_struct {
    const char *type;
    int sample_rate;
    int num_samples;
    int num_channels;
    short *samples;
} cst_wave;
int flite_init(void);
cst_wave *flite_text_to_wave(const char *text, cst_voice *voice);
void delete_wave(cst_wave *w);
cst_voice *register_cmu_us_slt(const char *voxdir);
cst_voice *register_cmu_us_kal16(const char *voxdir);

#define TS_MAX_UTT 32
#define TS_MAX_SEG 128

enum ts_noise { TS_NOISE_NONE, TS_NOISE_WHITE, TS_NOISE_PINK_HUM };

struct ts_clip {
    float *x; /* 16 kHz, trimmed to the speech extent */
    size_t n;
};

/* One synthesized utterance (all clips of one sentence in one voice). */
struct ts_utterance {
    struct ts_clip clip[2]; /* one clip, or two clauses for the paused sentence */
    int n_clips;
    const char *voice;
    const char *text; /* the sentence, or the first clause */
};

struct ts_set {
    struct ts_utterance utt[TS_MAX_UTT];
    int n_utt;
};

struct ts_stream {
    float *x;
    size_t n;
    int64_t truth_start[TS_MAX_UTT], truth_end[TS_MAX_UTT];
    int n_utt;
};

static const char *const ts_sentences[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Please book a table for two at seven tonight.",
    "What is the weather going to be like tomorrow morning?",
    "Yes.",
    "Turn left at the next intersection, then continue straight ahead.",
    "How many kilometers is it to the nearest train station?",
    "I would like to hear some music.",
    "Thank you very much for your help.",
};
#define TS_N_SENTENCES (int)(sizeof ts_sentences / sizeof *ts_sentences)
/* The two clauses spoken with a 250 ms pause between them. */
static const char *const ts_clauses[2] = {"I was thinking about it for a while",
                                          "and now I have decided to go."};
#define TS_PAUSE_MS 250

static uint64_t ts_rng_state;
static inline void ts_seed(uint64_t s)
{
    ts_rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}
static inline double ts_uniform(void) /* [0, 1) */
{
    ts_rng_state ^= ts_rng_state << 13;
    ts_rng_state ^= ts_rng_state >> 7;
    ts_rng_state ^= ts_rng_state << 17;
    return (double)(ts_rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static inline double ts_gauss(void)
{
    double u = ts_uniform(), w = ts_uniform();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * w);
}

/* Synthesizes text with voice v at 16 kHz and trims it to its non-silent extent. Returns 0 or -1. */
static inline int ts_synth(cst_voice *v, const char *text, struct ts_clip *c)
{
    cst_wave *w = flite_text_to_wave(text, v);
    if (!w || w->num_samples <= 0 || w->num_channels != 1) {
        if (w) delete_wave(w);
        return -1;
    }
    size_t n = (size_t)w->num_samples;
    float *x = malloc(n * sizeof *x);
    audio_s16_to_f32(w->samples, x, n);
    int rate = w->sample_rate;
    delete_wave(w);
    if (rate != AUDIO_RATE) {
        struct audio_resampler *r = audio_resampler_open(rate, AUDIO_RATE, -1);
        size_t cap = audio_resample_max_out(r, n) + AUDIO_RATE;
        float *y = calloc(cap, sizeof *y);
        size_t m = audio_resample(r, x, n, y, cap);
        static const float zeros[1024];
        m += audio_resample(r, zeros, 1024, y + m, cap - m);
        audio_resampler_close(r);
        free(x);
        x = y;
        n = m;
    }
    /* 5 ms windows: the loudest sets the reference; the extent is within 40 dB of it. */
    const size_t win = 80;
    size_t nw = n / win;
    double peak = 0;
    for (size_t i = 0; i < nw; i++) {
        double s = 0;
        for (size_t k = 0; k < win; k++)
            s += (double)x[i * win + k] * x[i * win + k];
        if (s > peak) peak = s;
    }
    size_t first = nw, last = 0;
    for (size_t i = 0; i < nw; i++) {
        double s = 0;
        for (size_t k = 0; k < win; k++)
            s += (double)x[i * win + k] * x[i * win + k];
        if (s > peak * 1e-4) {
            if (first == nw) first = i;
            last = i;
        }
    }
    if (first == nw) {
        free(x);
        return -1;
    }
    c->n = (last + 1 - first) * win;
    c->x = malloc(c->n * sizeof *c->x);
    memcpy(c->x, x + first * win, c->n * sizeof *c->x);
    free(x);
    return 0;
}

/* Scales an utterance so its clips' mean power is TS_LEVEL_DB dBFS: the voices differ by several dB, and a
 * stream's SNR should hold for each of its utterances. */
#define TS_LEVEL_DB (-26.0)
static inline void ts_normalize(struct ts_utterance *u)
{
    double p = 0;
    size_t n = 0;
    for (int k = 0; k < u->n_clips; k++) {
        for (size_t i = 0; i < u->clip[k].n; i++)
            p += (double)u->clip[k].x[i] * u->clip[k].x[i];
        n += u->clip[k].n;
    }
    double g = sqrt(pow(10.0, TS_LEVEL_DB / 10) / (p / (double)n));
    for (int k = 0; k < u->n_clips; k++)
        for (size_t i = 0; i < u->clip[k].n; i++)
            u->clip[k].x[i] = (float)(u->clip[k].x[i] * g);
}

/* Synthesizes every sentence in both voices (and the paused sentence in both). Returns 0 or -1. */
static inline int ts_set_build(struct ts_set *s)
{
    memset(s, 0, sizeof *s);
    flite_init();
    cst_voice *voices[2] = {register_cmu_us_slt(NULL), register_cmu_us_kal16(NULL)};
    const char *names[2] = {"slt", "kal16"};
    if (!voices[0] || !voices[1]) return -1;
    for (int vi = 0; vi < 2; vi++) {
        for (int i = 0; i < TS_N_SENTENCES; i++) {
            struct ts_utterance *u = &s->utt[s->n_utt++];
            u->voice = names[vi];
            u->n_clips = 1;
            u->text = ts_sentences[i];
            if (ts_synth(voices[vi], ts_sentences[i], &u->clip[0])) return -1;
            ts_normalize(u);
        }
        struct ts_utterance *u = &s->utt[s->n_utt++];
        u->voice = names[vi];
        u->n_clips = 2;
        u->text = ts_clauses[0];
        for (int k = 0; k < 2; k++)
            if (ts_synth(voices[vi], ts_clauses[k], &u->clip[k])) return -1;
        ts_normalize(u);
    }
    return 0;
}

static inline void ts_set_free(struct ts_set *s)
{
    for (int i = 0; i < s->n_utt; i++)
        for (int k = 0; k < s->utt[i].n_clips; k++)
            free(s->utt[i].clip[k].x);
    memset(s, 0, sizeof *s);
}

/* Fills y[0..n) with unit-power noise of the given kind. */
static inline void ts_noise(enum ts_noise kind, float *y, size_t n)
{
    if (kind == TS_NOISE_NONE) {
        memset(y, 0, n * sizeof *y);
        return;
    }
    if (kind == TS_NOISE_WHITE) {
        for (size_t i = 0; i < n; i++)
            y[i] = (float)ts_gauss();
        return;
    }
    /* Pink-ish: white noise through one-pole low-passes at octave-spaced corners, each weighted so every
     * octave carries about the same power; plus a 50 Hz hum with harmonics 100-250 Hz. */
    static const double corners[] = {25, 100, 400, 1600, 6400};
    double st[5] = {0}, a[5], g[5];
    for (int k = 0; k < 5; k++) {
        a[k] = exp(-2 * M_PI * corners[k] / AUDIO_RATE);
        g[k] = 1.0 / sqrt(corners[k]);
    }
    double ps = 0, hs = 0;
    float *hum = malloc(n * sizeof *hum);
    static const double harm[] = {1.0, 0.5, 0.35, 0.25, 0.15};
    double phase = ts_uniform() * 2 * M_PI;
    for (size_t i = 0; i < n; i++) {
        double w = ts_gauss(), s = 0;
        for (int k = 0; k < 5; k++) {
            st[k] = a[k] * st[k] + (1 - a[k]) * w;
            s += g[k] * st[k]; /* power ~ 1 / (smallest corner above f): about 1/f */
        }
        y[i] = (float)s;
        ps += s * s;
        double t = (double)i / AUDIO_RATE, h = 0;
        for (int k = 0; k < 5; k++)
            h += harm[k] * sin(2 * M_PI * 50.0 * (k + 1) * t + phase * (k + 1));
        hum[i] = (float)h;
        hs += h * h;
    }
    double kp = ps > 0 ? sqrt(0.5 * n / ps) : 0, kh = hs > 0 ? sqrt(0.5 * n / hs) : 0;
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(y[i] * kp + hum[i] * kh);
    free(hum);
}

/* Lays the utterances out in a stream with seeded gaps and mixes in noise at snr_db. */
static inline void ts_stream_build(const struct ts_set *s, enum ts_noise kind, double snr_db, uint64_t seed,
                                   struct ts_stream *out)
{
    memset(out, 0, sizeof *out);
    ts_seed(seed);
    const size_t lead = AUDIO_RATE, tail = AUDIO_RATE * 3 / 2, pause = TS_PAUSE_MS * AUDIO_RATE / 1000;
    size_t gaps[TS_MAX_UTT], n = lead + tail;
    for (int i = 0; i < s->n_utt; i++) {
        gaps[i] = (size_t)((0.8 + 0.8 * ts_uniform()) * AUDIO_RATE);
        for (int k = 0; k < s->utt[i].n_clips; k++)
            n += s->utt[i].clip[k].n + (k ? pause : 0);
        if (i + 1 < s->n_utt) n += gaps[i];
    }
    out->x = calloc(n, sizeof *out->x);
    out->n = n;
    size_t pos = lead;
    double sp = 0;
    size_t sn = 0;
    for (int i = 0; i < s->n_utt; i++) {
        out->truth_start[i] = (int64_t)pos;
        for (int k = 0; k < s->utt[i].n_clips; k++) {
            if (k) pos += pause;
            const struct ts_clip *c = &s->utt[i].clip[k];
            memcpy(out->x + pos, c->x, c->n * sizeof *c->x);
            for (size_t j = 0; j < c->n; j++)
                sp += (double)c->x[j] * c->x[j];
            sn += c->n;
            pos += c->n;
        }
        out->truth_end[i] = (int64_t)pos;
        if (i + 1 < s->n_utt) pos += gaps[i];
    }
    out->n_utt = s->n_utt;
    if (kind != TS_NOISE_NONE) {
        float *nz = malloc(n * sizeof *nz);
        ts_noise(kind, nz, n);
        double g = sqrt(sp / (double)sn / pow(10.0, snr_db / 10));
        for (size_t i = 0; i < n; i++)
            out->x[i] += (float)(g * nz[i]);
        free(nz);
    }
}

static inline void ts_stream_free(struct ts_stream *st)
{
    free(st->x);
    memset(st, 0, sizeof *st);
}

struct ts_score {
    int n_utt, n_detected, n_split, n_merged, n_false;
    double start_err_ms[TS_MAX_UTT]; /* detected start - true start, per detected utterance */
    double delay_ms[TS_MAX_UTT];     /* endpoint decided - true end, per detected utterance */
    int n_delay;
    long tp, fp, fn, tn; /* frames */
    int64_t seg_start[TS_MAX_SEG], seg_end[TS_MAX_SEG], seg_decided[TS_MAX_SEG];
    int n_seg;
    double cpu_ms; /* vad_feed time for the whole stream */
    long n_frames;
};

/* Runs a fresh detector over a stream (any tail shorter than a frame is dropped) and scores it. */
static inline void ts_run(struct vad *v, const float *x, size_t n, struct ts_score *sc)
{
    memset(sc, 0, sizeof *sc);
    vad_reset(v);
    struct vad_event ev;
    int64_t open_start = -1;
    double t0 = core_cpu_ms();
    for (size_t off = 0; off + AUDIO_FRAME <= n; off += AUDIO_FRAME) {
        int t = vad_feed(v, x + off, &ev);
        sc->n_frames++;
        if (t == VAD_SPEECH_START) {
            open_start = ev.start;
        } else if (t == VAD_SPEECH_END && sc->n_seg < TS_MAX_SEG) {
            sc->seg_start[sc->n_seg] = open_start;
            sc->seg_end[sc->n_seg] = ev.end;
            sc->seg_decided[sc->n_seg] = ev.frame_end;
            sc->n_seg++;
            open_start = -1;
        }
    }
    sc->cpu_ms = core_cpu_ms() - t0;
    if (open_start >= 0 && sc->n_seg < TS_MAX_SEG) { /* still in a turn when the stream ended */
        sc->seg_start[sc->n_seg] = open_start;
        sc->seg_end[sc->n_seg] = (int64_t)n;
        sc->seg_decided[sc->n_seg] = -1;
        sc->n_seg++;
    }
}

static inline void ts_score_stream(const struct ts_stream *st, struct ts_score *sc)
{
    sc->n_utt = st->n_utt;
    for (int s = 0; s < sc->n_seg; s++) {
        int hits = 0;
        for (int u = 0; u < st->n_utt; u++)
            if (sc->seg_start[s] < st->truth_end[u] && sc->seg_end[s] > st->truth_start[u]) hits++;
        if (hits == 0) sc->n_false++;
        if (hits > 1) sc->n_merged++;
    }
    for (int u = 0; u < st->n_utt; u++) {
        int hits = 0, which = -1;
        for (int s = 0; s < sc->n_seg; s++)
            if (sc->seg_start[s] < st->truth_end[u] && sc->seg_end[s] > st->truth_start[u]) {
                hits++;
                which = s;
            }
        if (hits > 1) sc->n_split++;
        if (hits != 1) continue;
        sc->start_err_ms[sc->n_detected] = (double)(sc->seg_start[which] - st->truth_start[u]) / 16.0;
        sc->n_detected++;
        if (sc->seg_decided[which] >= 0)
            sc->delay_ms[sc->n_delay++] = (double)(sc->seg_decided[which] - st->truth_end[u]) / 16.0;
    }
    for (long f = 0; f < sc->n_frames; f++) {
        int64_t mid = f * AUDIO_FRAME + AUDIO_FRAME / 2;
        int truth = 0, det = 0;
        for (int u = 0; u < st->n_utt; u++)
            if (mid >= st->truth_start[u] && mid < st->truth_end[u]) truth = 1;
        for (int s = 0; s < sc->n_seg; s++)
            if (mid >= sc->seg_start[s] && mid < sc->seg_end[s]) det = 1;
        if (truth && det) sc->tp++;
        if (!truth && det) sc->fp++;
        if (truth && !det) sc->fn++;
        if (!truth && !det) sc->tn++;
    }
}

static inline double ts_accuracy(const struct ts_score *sc)
{
    long all = sc->tp + sc->fp + sc->fn + sc->tn;
    return all ? (double)(sc->tp + sc->tn) / (double)all : 0;
}

static inline int ts_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100, nearest rank) of v[0..n), sorting v in place. */
static inline double ts_percentile(double *v, int n, double p)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, ts_cmp_double);
    int k = (int)ceil(p / 100.0 * n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

/* The conditions every consumer reports on. */
struct ts_condition {
    const char *name;
    enum ts_noise noise;
    double snr_db;
};
static const struct ts_condition ts_conditions[] = {
    {"clean", TS_NOISE_NONE, 0},
    {"white 20 dB", TS_NOISE_WHITE, 20},
    {"white 10 dB", TS_NOISE_WHITE, 10},
    {"pink+hum 20 dB", TS_NOISE_PINK_HUM, 20},
    {"pink+hum 10 dB", TS_NOISE_PINK_HUM, 10},
};
#define TS_N_CONDITIONS (int)(sizeof ts_conditions / sizeof *ts_conditions)

#endif
