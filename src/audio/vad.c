/*
 * vad.c: the built-in voice activity detector and the endpointing state machine (interface in vad.h).
 *
 * Detector, per 20 ms frame:
 *   - Speech band. The frame goes through a 300 Hz high-pass and a 3 kHz low-pass (two second-order
 * Butterworth sections, state kept across frames). Mains hum and rumble sit below the band, hiss mostly above
 * it, and the band still holds the first two formants of every vowel.
 *   - Level. e = 10 log10(mean square) of the band signal, in dBFS.
 *   - Noise floor, a minimum-statistics style tracker on e: it falls at once to a quieter frame; outside a
 *     turn it rises toward unvoiced frames with a 200 ms time constant (steady noise of a new, higher level
 * is learnt within about half a second); and it never stays below the minimum of e over the last 2.4 s (six
 *     0.4 s sub-windows), which bounds how long any rise can take, even inside a turn or for periodic noise.
 *   - Voicing. The largest normalized autocorrelation of the band signal over lags 40..228 (pitch 70..400
 * Hz), on the 20 ms frame against the 14 ms before it. Voiced speech gives 0.6-0.95; white and pink noise
 *     stay low; hum's period (16.7-20 ms) is outside the lag range and mostly outside the band anyway.
 *   - Probability p = P_level * (0.25 + 0.75 P_voiced), where P_level is a logistic of (e - floor - margin)
 * and of (e - min_level), and P_voiced a logistic of the voicing around 0.45. A loud unvoiced frame reaches
 * at most 0.25: below start_prob (0.5), so noise alone cannot start a turn, but above stay_prob (0.2), so
 *     fricatives and plosives inside a turn keep it going.
 *
 * Endpointer: see vad.h. SPEECH_START is reported once min_speech_ms of start-level frames have been seen,
 * with the position of the first of them; SPEECH_END once end_silence_ms of frames below stay_prob have
 * followed the last speech frame, with that frame's end as the speech end.
 *
 * Measurements behind the defaults (bench_vad on this machine; the Flite test set of tests/vad_testset.h: 18
 * utterances of slt and kal16, each at -26 dBFS, clean and with white and pink+hum noise at 20 and 10 dB
 * SNR):
 *   - End silence, `bench_vad --sweep`: the shortest wait that splits no utterance in any condition (one of
 *     them holds a 250 ms pause between two clauses) is 400 ms; 350 ms splits one in each 10 dB condition,
 * 300 ms one in every noisy condition, 250 ms two or three. The longest pause inside one utterance, counted
 * as frames below stay_prob (`bench_vad --pauses`), is 240 ms in the human recordings of
 * pocketsphinx-testdata (read speech with commas, digits, card names) and 220 ms in the Flite sentences. So
 * 400 ms: 160 ms over the longest natural pause measured. Endpoint delay at 400 ms (true end of speech to
 * SPEECH_END), over all conditions: p50 367 ms, p95 407 ms (noise hides the weakest last sounds, so in noise
 * the wait starts a little before the true end and the delay comes out under 400 ms).
 *   - Margin: 4, 5 and 6 dB all find every utterance with no false start; 6 dB keeps the most distance from
 *     noise (frame accuracy 0.1-0.4 points under 4 dB). Frame accuracy at the defaults: clean 99.2%, white
 *     20 dB 97.6%, white 10 dB 96.6%, pink+hum 20 dB 97.8%, pink+hum 10 dB 96.5%; precision >= 99.9% in noise
 *     (missed frames are the weak onsets and tails under the noise).
 *   - Cost: about 13 us of one core per 20 ms frame (0.07% of real time), most of it the voicing search.
 * Limits: whispered (unvoiced) speech never starts a turn; a steady periodic sound in the speech band (a
 * sustained tone, music) at stream start looks voiced until the 2.4 s minimum catches up with it.
 */
#include "audio/vad.h"

#include "audio/audio.h"
#include "core/core.h"

#include <math.h>
#include <string.h>

#define DEFAULT_MARGIN_DB 6.0f
#define DEFAULT_MIN_LEVEL_DB (-60.0f)
#define DEFAULT_MIN_SPEECH_MS 80
#define DEFAULT_END_SILENCE_MS 400
#define DEFAULT_PREROLL_MS 200
#define DEFAULT_START_PROB 0.5f
#define DEFAULT_STAY_PROB 0.2f

#define FRAME AUDIO_FRAME
#define FRAME_MS 20
#define LAG_MIN 40      /* 400 Hz */
#define LAG_MAX 228     /* 70 Hz */
#define VOICE_WIN 480   /* 30 ms voicing window */
#define BAND_HIST 768   /* band signal kept: the window plus the longest lag, rounded up to whole frames */
#define FLOOR_RISE 0.1f /* per frame: a 200 ms time constant */
#define MIN_WIN 20      /* frames per minimum-statistics sub-window (0.4 s) */
#define N_MIN_WIN 6     /* sub-windows: 2.4 s of history */
#define E_MIN (-100.0f)
#define MAX_BACK 16      /* frames a start may reach back over unvoiced onset (320 ms) */
#define BACK_SNR_DB 3.0f /* level over the floor that such onset frames need */

struct biquad {
    float b0, b1, b2, a1, a2;
    float z1, z2; /* transposed direct form II state */
};

struct vad {
    struct vad_config cfg;
    int min_speech_frames, end_silence_frames, preroll_samples;

    /* detector */
    struct biquad hp, lp;
    float band[BAND_HIST]; /* the latest band-passed samples, oldest first; this frame is the last FRAME */
    float floor_db;
    float win_min[N_MIN_WIN];       /* minima of finished sub-windows, ring */
    int n_win_done;                 /* finished sub-windows (saturates at N_MIN_WIN) */
    int win_pos;                    /* next ring slot */
    float cur_min;                  /* minimum of the sub-window in progress */
    int cur_n;                      /* frames in it */
    float last_voicing, last_level; /* of the last frame, for diagnostics */

    /* endpointer */
    int64_t n_frames; /* frames fed since open/reset */
    bool in_speech;
    int64_t cand_first;           /* first frame of a possible start, -1 = none */
    int cand_count;               /* start-level frames since cand_first */
    int cand_gap;                 /* consecutive frames below start level inside the candidate */
    int64_t last_speech;          /* last frame at or above stay level inside a turn */
    float snr_hist[MAX_BACK + 8]; /* level over the floor (dB) of the latest frames, ring by frame number */
    float last_snr;               /* of the frame being fed */

    /* ring of recent input for the pre-roll */
    float *ring; /* [ring_cap] */
    size_t ring_cap, ring_pos, ring_fill;
};

void vad_config_default(struct vad_config *cfg)
{
    *cfg = (struct vad_config){
        .margin_db = DEFAULT_MARGIN_DB,
        .min_level_db = DEFAULT_MIN_LEVEL_DB,
        .min_speech_ms = DEFAULT_MIN_SPEECH_MS,
        .end_silence_ms = DEFAULT_END_SILENCE_MS,
        .preroll_ms = DEFAULT_PREROLL_MS,
        .start_prob = DEFAULT_START_PROB,
        .stay_prob = DEFAULT_STAY_PROB,
    };
}

/* Second-order Butterworth (Q = 1/sqrt 2) low- or high-pass at f Hz, from the bilinear transform. */
static void biquad_init(struct biquad *q, double f, int highpass)
{
    double w = 2 * M_PI * f / AUDIO_RATE, c = cos(w);
    double alpha = sin(w) * M_SQRT1_2; /* sin(w) / (2 Q) with Q = 1/sqrt(2) */
    double a0 = 1 + alpha;
    double b0 = highpass ? (1 + c) / 2 : (1 - c) / 2, b1 = highpass ? -(1 + c) : 1 - c;
    q->b0 = (float)(b0 / a0);
    q->b1 = (float)(b1 / a0);
    q->b2 = (float)(b0 / a0);
    q->a1 = (float)(-2 * c / a0);
    q->a2 = (float)((1 - alpha) / a0);
    q->z1 = q->z2 = 0;
}

static float biquad_step(struct biquad *q, float x)
{
    float y = q->b0 * x + q->z1;
    q->z1 = q->b1 * x - q->a1 * y + q->z2;
    q->z2 = q->b2 * x - q->a2 * y;
    return y;
}

static float logistic(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static int ms_to_frames(int ms)
{
    return (ms + FRAME_MS - 1) / FRAME_MS;
}

void vad_reset(struct vad *v)
{
    if (!v) return;
    biquad_init(&v->hp, 300.0, 1);
    biquad_init(&v->lp, 3000.0, 0);
    memset(v->band, 0, sizeof v->band);
    v->floor_db = v->cfg.min_level_db;
    v->n_win_done = v->win_pos = 0;
    v->cur_min = INFINITY;
    v->cur_n = 0;
    v->last_voicing = 0;
    v->last_level = E_MIN;
    v->n_frames = 0;
    v->in_speech = false;
    v->cand_first = -1;
    v->cand_count = v->cand_gap = 0;
    v->last_speech = -1;
    memset(v->snr_hist, 0, sizeof v->snr_hist);
    v->last_snr = 0;
    v->ring_pos = v->ring_fill = 0;
    memset(v->ring, 0, v->ring_cap * sizeof(float));
}

struct vad *vad_open(const struct vad_config *cfg)
{
    struct vad_config c;
    vad_config_default(&c);
    if (cfg) {
        if (cfg->margin_db != 0) c.margin_db = cfg->margin_db;
        if (cfg->min_level_db != 0) c.min_level_db = cfg->min_level_db;
        if (cfg->min_speech_ms != 0) c.min_speech_ms = cfg->min_speech_ms;
        if (cfg->end_silence_ms != 0) c.end_silence_ms = cfg->end_silence_ms;
        if (cfg->preroll_ms != 0) c.preroll_ms = cfg->preroll_ms < 0 ? 0 : cfg->preroll_ms;
        if (cfg->start_prob != 0) c.start_prob = cfg->start_prob;
        if (cfg->stay_prob != 0) c.stay_prob = cfg->stay_prob;
    }
    if (!(c.margin_db > 0 && c.margin_db <= 60) || !(c.min_level_db >= -120 && c.min_level_db <= 0) ||
        c.min_speech_ms < FRAME_MS || c.min_speech_ms > 2000 || c.end_silence_ms < FRAME_MS ||
        c.end_silence_ms > 60000 || c.preroll_ms < 0 || c.preroll_ms > 10000 ||
        !(c.start_prob > 0 && c.start_prob < 1) || !(c.stay_prob > 0 && c.stay_prob <= c.start_prob)) {
        core_error("vad: invalid config (margin %g dB, min level %g dB, min speech %d ms, end silence %d ms, "
                   "preroll %d ms, start %g, stay %g)",
                   c.margin_db, c.min_level_db, c.min_speech_ms, c.end_silence_ms, c.preroll_ms, c.start_prob,
                   c.stay_prob);
        return NULL;
    }
    struct vad *v = core_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->cfg = c;
    v->min_speech_frames = ms_to_frames(c.min_speech_ms);
    v->end_silence_frames = ms_to_frames(c.end_silence_ms);
    v->preroll_samples = c.preroll_ms * (AUDIO_RATE / 1000);
    /* The ring spans the pre-roll, the frames that had to be seen before a start (plus the one dropout a
     * candidate may contain) and the current frame. */
    v->ring_cap = (size_t)v->preroll_samples + (size_t)(v->min_speech_frames + 2 + MAX_BACK) * FRAME;
    v->ring = core_malloc(v->ring_cap * sizeof(float));
    if (!v->ring) {
        core_free(v);
        return NULL;
    }
    vad_reset(v);
    return v;
}

void vad_close(struct vad *v)
{
    if (!v) return;
    core_free(v->ring);
    core_free(v);
}

const struct vad_config *vad_get_config(const struct vad *v)
{
    return v ? &v->cfg : NULL;
}

float vad_noise_floor_db(const struct vad *v)
{
    return v ? v->floor_db : 0.0f;
}

void vad_last_features(const struct vad *v, float *level_db, float *voicing)
{
    if (level_db) *level_db = v ? v->last_level : 0.0f;
    if (voicing) *voicing = v ? v->last_voicing : 0.0f;
}

size_t vad_recent_capacity(const struct vad *v)
{
    return v ? v->ring_cap : 0;
}

size_t vad_recent(const struct vad *v, float *out, size_t n)
{
    if (!v || !out) return 0;
    if (n > v->ring_fill) n = v->ring_fill;
    /* The oldest wanted sample is n before the write position. */
    size_t start = (v->ring_pos + v->ring_cap - n) % v->ring_cap;
    size_t first = v->ring_cap - start < n ? v->ring_cap - start : n;
    memcpy(out, v->ring + start, first * sizeof(float));
    memcpy(out + first, v->ring, (n - first) * sizeof(float));
    return n;
}

static void ring_push(struct vad *v, const float *frame)
{
    for (size_t i = 0; i < FRAME; i++) {
        v->ring[v->ring_pos] = frame ? frame[i] : 0.0f;
        v->ring_pos = v->ring_pos + 1 == v->ring_cap ? 0 : v->ring_pos + 1;
    }
    v->ring_fill = v->ring_fill + FRAME > v->ring_cap ? v->ring_cap : v->ring_fill + FRAME;
}

/* The largest normalized autocorrelation of the band signal over the pitch lags, on a VOICE_WIN window ending
 * with this frame against the same window LAG samples earlier. */
static float voicing(const float *band)
{
    const float *x = band + BAND_HIST - VOICE_WIN; /* the window; x[-k] reaches further back */
    double e0 = 0, ek = 0;
    for (int n = 0; n < VOICE_WIN; n++)
        e0 += (double)x[n] * x[n];
    for (int n = 0; n < VOICE_WIN; n++)
        ek += (double)x[n - LAG_MIN] * x[n - LAG_MIN];
    if (e0 <= 1e-20) return 0.0f;
    float best = 0.0f;
    for (int k = LAG_MIN; k <= LAG_MAX; k++) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const float *y = x - k;
        for (int n = 0; n < VOICE_WIN; n += 4) {
            s0 += x[n] * y[n];
            s1 += x[n + 1] * y[n + 1];
            s2 += x[n + 2] * y[n + 2];
            s3 += x[n + 3] * y[n + 3];
        }
        double r = (double)(s0 + s1) + (double)(s2 + s3);
        if (ek > 1e-20) {
            float c = (float)(r / sqrt(e0 * ek));
            if (c > best) best = c;
        }
        /* Slide the lagged window one sample further back: it gains x[-k-1] and loses x[VOICE_WIN-1-k]. */
        double in = x[-k - 1], out = x[VOICE_WIN - 1 - k];
        ek += in * in - out * out;
        if (ek < 0) ek = 0;
    }
    return best;
}

static void track_floor(struct vad *v, float e, bool may_rise)
{
    if (e < v->floor_db)
        v->floor_db = e;
    else if (may_rise)
        v->floor_db += FLOOR_RISE * (e - v->floor_db);

    if (e < v->cur_min) v->cur_min = e;
    if (++v->cur_n == MIN_WIN) {
        v->win_min[v->win_pos] = v->cur_min;
        v->win_pos = (v->win_pos + 1) % N_MIN_WIN;
        if (v->n_win_done < N_MIN_WIN) v->n_win_done++;
        v->cur_min = INFINITY;
        v->cur_n = 0;
    }
    /* Only once the whole history is there: at the start of a stream its minimum would be speech's own. */
    if (v->n_win_done == N_MIN_WIN) {
        float m = v->cur_min;
        for (int i = 0; i < N_MIN_WIN; i++)
            if (v->win_min[i] < m) m = v->win_min[i];
        if (m > v->floor_db) v->floor_db = m;
    }
}

static float detect(struct vad *v, const float *frame)
{
    memmove(v->band, v->band + FRAME, (BAND_HIST - FRAME) * sizeof(float));
    float *x = v->band + BAND_HIST - FRAME;
    double ss = 0;
    for (int i = 0; i < FRAME; i++) {
        float s = frame[i];
        if (!(s == s)) s = 0; /* NaN */
        float y = biquad_step(&v->lp, biquad_step(&v->hp, s));
        x[i] = y;
        ss += (double)y * y;
    }
    /* A denormal or runaway filter state (from inf input) is reset rather than carried on. */
    if (!isfinite(ss)) {
        biquad_init(&v->hp, 300.0, 1);
        biquad_init(&v->lp, 3000.0, 0);
        memset(v->band, 0, sizeof v->band);
        ss = 0;
    }
    float e = ss > 0 ? (float)(10.0 * log10(ss / FRAME)) : E_MIN;
    if (e < E_MIN) e = E_MIN;
    float vc = voicing(v->band);
    float p_voiced = logistic((vc - 0.45f) / 0.05f);
    float p_level =
        logistic((e - v->floor_db - v->cfg.margin_db) / 1.5f) * logistic((e - v->cfg.min_level_db) / 1.5f);
    float p = p_level * (0.25f + 0.75f * p_voiced);
    v->last_snr = e - v->floor_db;
    track_floor(v, e, !v->in_speech && p_voiced < 0.5f);
    v->last_voicing = vc;
    v->last_level = e;
    return p;
}

static int endpoint(struct vad *v, float p, struct vad_event *ev)
{
    const int64_t f = v->n_frames++;
    memset(ev, 0, sizeof *ev);
    ev->prob = p;
    ev->frame_end = (f + 1) * FRAME;
    const int n_hist = (int)(sizeof v->snr_hist / sizeof *v->snr_hist);
    v->snr_hist[f % n_hist] = v->last_snr;
    if (!v->in_speech) {
        if (p >= v->cfg.start_prob) {
            if (v->cand_first < 0) {
                v->cand_first = f;
                v->cand_count = 0;
            }
            v->cand_count++;
            v->cand_gap = 0;
            if (v->cand_count >= v->min_speech_frames) {
                v->in_speech = true;
                v->last_speech = f;
                ev->type = VAD_SPEECH_START;
                /* Speech often opens unvoiced or weak ("th", "s", "h"): reach back over the frames just
                 * before the voiced run that stood clearly above the noise floor. */
                int64_t first = v->cand_first;
                while (first > 0 && v->cand_first - first < MAX_BACK && first > f - n_hist + 1 &&
                       v->snr_hist[(first - 1) % n_hist] >= BACK_SNR_DB)
                    first--;
                ev->start = first * FRAME;
                int64_t pre = ev->start - v->preroll_samples;
                int64_t oldest = ev->frame_end - (int64_t)v->ring_fill;
                if (pre < oldest) pre = oldest;
                ev->preroll_start = pre < 0 ? 0 : pre;
                v->cand_first = -1;
            }
        } else if (v->cand_first >= 0 && ++v->cand_gap > 1) {
            v->cand_first = -1;
            v->cand_count = v->cand_gap = 0;
        }
    } else {
        if (p >= v->cfg.stay_prob) {
            v->last_speech = f;
        } else if (f - v->last_speech >= v->end_silence_frames) {
            v->in_speech = false;
            ev->type = VAD_SPEECH_END;
            ev->end = (v->last_speech + 1) * FRAME;
            v->cand_first = -1;
            v->cand_count = v->cand_gap = 0;
        }
    }
    ev->in_speech = v->in_speech;
    return ev->type;
}

int vad_feed(struct vad *v, const float *frame, struct vad_event *ev)
{
    if (!v || !frame || !ev) return BANTER_ERR_INVALID_ARG;
    ring_push(v, frame);
    return endpoint(v, detect(v, frame), ev);
}

int vad_feed_prob(struct vad *v, const float *frame, float prob, struct vad_event *ev)
{
    if (!v || !ev) return BANTER_ERR_INVALID_ARG;
    if (!(prob >= 0)) prob = 0;
    if (prob > 1) prob = 1;
    ring_push(v, frame);
    v->last_snr = prob >= v->cfg.stay_prob ? BACK_SNR_DB : 0; /* no levels: reach back over likely frames */
    return endpoint(v, prob, ev);
}
