/*
 * audio.c: sound files in and out (libsndfile), the streaming resampler (speexdsp, float API) and sample
 * format conversion. See audio.h for the pipeline's internal format (mono float32 at 16 kHz).
 *
 * Reading. A file's header is untrusted: its channel count (1..32), sample rate (1000..384000 Hz) and frame
 * count are checked before anything is sized from them, and the length limit (max_seconds) is applied both to
 * the declared count and to what is actually read, because some containers (Ogg, headerless streams) declare
 * no count or a wrong one. Frames are read in fixed blocks, averaged across channels into a mono buffer that
 * grows geometrically up to the limit, so a header that lies about its length cannot make us allocate more
 * than the limit allows. Non-finite samples (float files) become 0 and everything is clamped to [-1, 1], so
 * NaN never reaches the resampler (whose filter memory it would poison) or the recognizer.
 *
 * Resampling. speexdsp's resampler at quality 5 by default (its "desktop" default: ~-90 dB stopband, a
 * few percent of one core for 48 -> 16 kHz). We call speex_resampler_skip_zeros() on every resampler so
 * output sample k lies at time k / out_rate, aligned with the input instead of delayed by the filter's half
 * length; the price is that the last half filter length of input is held back until more input (or zeros)
 * follows. audio_read_file() flushes that tail with zeros and trims the result to round(n_in * out_rate /
 * in_rate) samples, so a one-shot conversion has exactly the expected length, and the streaming resampler fed
 * the same input in any chunking produces the same samples. Input that does not fit in the caller's output
 * buffer is kept in a pending buffer (grown on demand, never per frame in steady use) and consumed first on
 * the next call.
 *
 * Writing. 16-bit PCM WAV by default, FLAC (16-bit) for a path ending in .flac, Ogg/Vorbis for .ogg/.oga.
 * We convert to 16 bits ourselves (audio_f32_to_s16: clipped, rounded) rather than let libsndfile wrap
 * out-of-range floats around.
 *
 * Threads: every function here may run on several threads at once on different objects. The one shared thing is
 * libsndfile's message for a failed open (sf_strerror(NULL) is process-global), so under concurrent failures a
 * message may name another file's problem; the status is still right, since we open the file ourselves first.
 */
#include "audio/audio.h"

#include "core/core.h"

#include <sndfile.h>
#include <speex/speex_resampler.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CHANNELS 32
#define MIN_RATE 1000
#define MAX_RATE 384000
#define DEFAULT_MAX_SECONDS 3600.0
#define DEFAULT_QUALITY 5
#define READ_BLOCK 4096 /* frames per sf_readf_float call */

void audio_buf_free(struct audio_buf *b)
{
    if (!b) return;
    core_free(b->samples);
    b->samples = NULL;
    b->n = 0;
    b->rate = 0;
}

/* ---- conversion ---- */

void audio_s16_to_f32(const int16_t *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)in[i] * (1.0f / 32768.0f);
}

void audio_f32_to_s16(const float *in, int16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = in[i] * 32768.0f;
        /* NaN fails both comparisons and lands on 0. */
        if (x >= 32767.0f) {
            out[i] = 32767;
        } else if (x <= -32768.0f) {
            out[i] = -32768;
        } else if (x == x) {
            out[i] = (int16_t)lrintf(x);
        } else {
            out[i] = 0;
        }
    }
}

static float sanitize(float x)
{
    if (!isfinite(x)) return 0.0f;
    if (x > 1.0f) return 1.0f;
    if (x < -1.0f) return -1.0f;
    return x;
}

/* ---- streaming resampler ---- */

struct audio_resampler {
    SpeexResamplerState *st;
    int in_rate, out_rate;
    float *pending; /* [n_pending] input not consumed yet (the caller's output buffer was full) */
    size_t n_pending, pending_cap;
};

struct audio_resampler *audio_resampler_open(int in_rate, int out_rate, int quality)
{
    if (in_rate < MIN_RATE || in_rate > MAX_RATE || out_rate < MIN_RATE || out_rate > MAX_RATE) {
        core_error("audio: resampler rates %d -> %d Hz out of range (%d..%d)", in_rate, out_rate, MIN_RATE,
                   MAX_RATE);
        return NULL;
    }
    if (quality < 0) quality = DEFAULT_QUALITY;
    if (quality > 10) quality = 10;
    struct audio_resampler *r = core_calloc(1, sizeof *r);
    if (!r) return NULL;
    int err = 0;
    r->st = speex_resampler_init(1, (spx_uint32_t)in_rate, (spx_uint32_t)out_rate, quality, &err);
    if (!r->st) {
        core_error("audio: speexdsp resampler %d -> %d Hz: %s", in_rate, out_rate,
                   speex_resampler_strerror(err));
        core_free(r);
        return NULL;
    }
    speex_resampler_skip_zeros(r->st);
    r->in_rate = in_rate;
    r->out_rate = out_rate;
    return r;
}

void audio_resampler_close(struct audio_resampler *r)
{
    if (!r) return;
    if (r->st) speex_resampler_destroy(r->st);
    core_free(r->pending);
    core_free(r);
}

/* Runs speex on in[0..n_in) into out[0..out_cap); returns samples written, *used = input consumed. speex
 * takes 32-bit lengths, so long buffers go through in slices. */
static size_t run_speex(struct audio_resampler *r, const float *in, size_t n_in, float *out, size_t out_cap,
                        size_t *used)
{
    size_t n_out = 0, n_used = 0;
    while (n_used < n_in && n_out < out_cap) {
        size_t ni = n_in - n_used, no = out_cap - n_out;
        if (ni > (1u << 30)) ni = 1u << 30;
        if (no > (1u << 30)) no = 1u << 30;
        spx_uint32_t li = (spx_uint32_t)ni, lo = (spx_uint32_t)no;
        speex_resampler_process_float(r->st, 0, in + n_used, &li, out + n_out, &lo);
        n_used += li;
        n_out += lo;
        if (li == 0 && lo == 0) break; /* no progress: the filter needs more room than out_cap leaves */
    }
    *used = n_used;
    return n_out;
}

/* Keeps in[0..n) for the next call, after what is already pending. */
static void keep_pending(struct audio_resampler *r, const float *in, size_t n)
{
    if (n == 0) return;
    size_t need;
    if (core_add_overflow(r->n_pending, n, &need)) need = SIZE_MAX;
    if (need > r->pending_cap) {
        size_t cap = r->pending_cap ? r->pending_cap : 1024;
        while (cap < need && cap <= SIZE_MAX / 2 / sizeof(float))
            cap *= 2;
        float *p = cap >= need ? core_realloc(r->pending, cap * sizeof(float)) : NULL;
        if (!p) {
            core_error("audio: resampler out of memory keeping %zu pending samples; dropping them", n);
            return;
        }
        r->pending = p;
        r->pending_cap = cap;
    }
    memmove(r->pending + r->n_pending, in, n * sizeof(float));
    r->n_pending += n;
}

size_t audio_resample(struct audio_resampler *r, const float *in, size_t n_in, float *out, size_t out_cap)
{
    if (!r || (!in && n_in) || (!out && out_cap)) return 0;
    size_t n_out = 0, used = 0;
    if (r->n_pending) {
        n_out = run_speex(r, r->pending, r->n_pending, out, out_cap, &used);
        memmove(r->pending, r->pending + used, (r->n_pending - used) * sizeof(float));
        r->n_pending -= used;
        if (r->n_pending) {
            keep_pending(r, in, n_in);
            return n_out;
        }
    }
    n_out += run_speex(r, in, n_in, out + n_out, out_cap - n_out, &used);
    keep_pending(r, in + used, n_in - used);
    return n_out;
}

size_t audio_resample_max_out(const struct audio_resampler *r, size_t n_in)
{
    if (!r) return 0;
    size_t total;
    if (core_add_overflow(n_in, r->n_pending, &total)) return SIZE_MAX;
    /* ceil(total * out / in) without overflow, plus slack for speex's fractional phase. */
    size_t q = total / (size_t)r->in_rate, rem = total % (size_t)r->in_rate, a, b, c;
    if (core_mul_overflow(q, (size_t)r->out_rate, &a)) return SIZE_MAX;
    b = (rem * (size_t)r->out_rate + (size_t)r->in_rate - 1) / (size_t)r->in_rate;
    if (core_add_overflow(a, b, &c) || core_add_overflow(c, 4, &c)) return SIZE_MAX;
    return c;
}

/* ---- reading ---- */

static int is_rate_ok(int rate)
{
    return rate >= MIN_RATE && rate <= MAX_RATE;
}

/* Resamples buf (mono, buf->rate) to `rate` in one go, with an exact output length. */
static int resample_buf(struct audio_buf *buf, int rate, char *err, size_t err_len)
{
    double want_d = floor((double)buf->n * rate / buf->rate + 0.5);
    if (want_d < 1) want_d = 1;
    if (want_d > (double)(SIZE_MAX / sizeof(float) / 2)) {
        core_errf(err, err_len, "audio too long to resample");
        return BANTER_ERR_INVALID_ARG;
    }
    size_t want = (size_t)want_d;
    struct audio_resampler *r = audio_resampler_open(buf->rate, rate, -1);
    if (!r) {
        core_errf(err, err_len, "could not open a resampler for %d -> %d Hz", buf->rate, rate);
        return BANTER_ERR_NOMEM;
    }
    float *out = core_malloc(want * sizeof(float));
    if (!out) {
        audio_resampler_close(r);
        core_errf(err, err_len, "out of memory resampling %zu samples", buf->n);
        return BANTER_ERR_NOMEM;
    }
    size_t got = 0, used = 0;
    got = run_speex(r, buf->samples, buf->n, out, want, &used);
    /* Flush the filter's held-back tail with zeros until the expected length is reached. */
    static const float zeros[256];
    for (int guard = 0; got < want && guard < 100000; guard++) {
        size_t u;
        got += run_speex(r, zeros, 256, out + got, want - got, &u);
    }
    audio_resampler_close(r);
    for (size_t i = got; i < want; i++)
        out[i] = 0.0f;
    for (size_t i = 0; i < want; i++)
        out[i] = sanitize(out[i]);
    core_free(buf->samples);
    buf->samples = out;
    buf->n = want;
    buf->rate = rate;
    return BANTER_OK;
}

static int status_of_sf_error(int e)
{
    return e == SF_ERR_SYSTEM ? BANTER_ERR_IO : BANTER_ERR_FORMAT;
}

int audio_read_file(const char *path, int rate, double max_seconds, struct audio_buf *out, char *err,
                    size_t err_len)
{
    if (out) *out = (struct audio_buf){0};
    if (!path || !out) {
        core_errf(err, err_len, "audio_read_file: no path or no output");
        return BANTER_ERR_INVALID_ARG;
    }
    if (rate != 0 && !is_rate_ok(rate)) {
        core_errf(err, err_len, "requested sample rate %d Hz is out of range (%d..%d)", rate, MIN_RATE,
                  MAX_RATE);
        return BANTER_ERR_INVALID_ARG;
    }
    if (!(max_seconds >= 0) || max_seconds > 1e7) {
        core_errf(err, err_len, "bad length limit %g s", max_seconds);
        return BANTER_ERR_INVALID_ARG;
    }
    if (max_seconds == 0) max_seconds = DEFAULT_MAX_SECONDS;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        core_errf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return BANTER_ERR_IO;
    }
    struct stat stt;
    if (fstat(fd, &stt) != 0 || S_ISDIR(stt.st_mode)) {
        core_errf(err, err_len, "%s: %s", path, S_ISDIR(stt.st_mode) ? "is a directory" : strerror(errno));
        close(fd);
        return BANTER_ERR_IO;
    }
    if (S_ISREG(stt.st_mode) && stt.st_size == 0) {
        core_errf(err, err_len, "%s: the file is empty", path);
        close(fd);
        return BANTER_ERR_FORMAT;
    }
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &info, 1 /* sf_close closes fd */);
    if (!sf) {
        int e = sf_error(NULL);
        core_errf(err, err_len, "%s: not a readable sound file (%s)", path, sf_strerror(NULL));
        close(fd);
        return status_of_sf_error(e);
    }

    int rc = BANTER_OK;
    float *block = NULL, *mono = NULL;
    size_t n = 0, cap = 0;
    if (info.channels < 1 || info.channels > MAX_CHANNELS) {
        core_errf(err, err_len, "%s: %d channels (supported: 1..%d)", path, info.channels, MAX_CHANNELS);
        rc = BANTER_ERR_FORMAT;
        goto done;
    }
    if (!is_rate_ok(info.samplerate)) {
        core_errf(err, err_len, "%s: sample rate %d Hz (supported: %d..%d)", path, info.samplerate, MIN_RATE,
                  MAX_RATE);
        rc = BANTER_ERR_FORMAT;
        goto done;
    }
    double max_frames_d = floor(max_seconds * info.samplerate);
    if (max_frames_d > (double)(SIZE_MAX / sizeof(float) / 4))
        max_frames_d = (double)(SIZE_MAX / sizeof(float) / 4);
    size_t max_frames = (size_t)max_frames_d;
    if (info.frames < 0) {
        core_errf(err, err_len, "%s: negative frame count in the header", path);
        rc = BANTER_ERR_FORMAT;
        goto done;
    }
    /* SF_COUNT_MAX means "unknown length" (a stream); anything else is checked against the limit now. */
    if (info.frames != SF_COUNT_MAX && (double)info.frames > max_frames_d) {
        core_errf(err, err_len, "%s: %.1f s of audio is longer than the limit of %.0f s", path,
                  (double)info.frames / info.samplerate, max_seconds);
        rc = BANTER_ERR_INVALID_ARG;
        goto done;
    }
    block = core_malloc((size_t)READ_BLOCK * (size_t)info.channels * sizeof(float));
    if (!block) {
        rc = BANTER_ERR_NOMEM;
        core_errf(err, err_len, "out of memory reading %s", path);
        goto done;
    }
    /* Start from the declared size (bounded by the limit and by a modest first guess) and grow as needed. */
    cap = info.frames != SF_COUNT_MAX && info.frames > 0 ? (size_t)info.frames : 16384;
    if (cap > 16u * 1024 * 1024) cap = 16u * 1024 * 1024;
    if (cap > max_frames + 1) cap = max_frames + 1;
    if (cap < 1) cap = 1;
    mono = core_malloc(cap * sizeof(float));
    if (!mono) {
        rc = BANTER_ERR_NOMEM;
        core_errf(err, err_len, "out of memory reading %s", path);
        goto done;
    }
    const int ch = info.channels;
    const float inv_ch = 1.0f / (float)ch;
    for (;;) {
        sf_count_t got = sf_readf_float(sf, block, READ_BLOCK);
        if (got <= 0) break;
        size_t g = (size_t)got;
        if (n + g > max_frames) {
            core_errf(err, err_len, "%s: audio is longer than the limit of %.0f s", path, max_seconds);
            rc = BANTER_ERR_INVALID_ARG;
            goto done;
        }
        if (n + g > cap) {
            size_t ncap = cap * 2 > n + g ? cap * 2 : n + g;
            if (ncap > max_frames + 1) ncap = max_frames + 1;
            float *p = core_realloc(mono, ncap * sizeof(float));
            if (!p) {
                rc = BANTER_ERR_NOMEM;
                core_errf(err, err_len, "out of memory reading %s", path);
                goto done;
            }
            mono = p;
            cap = ncap;
        }
        for (size_t i = 0; i < g; i++) {
            const float *f = block + i * (size_t)ch;
            float s = 0.0f;
            for (int c = 0; c < ch; c++)
                s += isfinite(f[c]) ? f[c] : 0.0f;
            mono[n + i] = sanitize(ch == 1 ? s : s * inv_ch);
        }
        n += g;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR) {
        core_errf(err, err_len, "%s: read error: %s", path, sf_strerror(sf));
        rc = BANTER_ERR_FORMAT;
        goto done;
    }
    if (n == 0) {
        core_errf(err, err_len, "%s: the file holds no audio", path);
        rc = BANTER_ERR_FORMAT;
        goto done;
    }
    if (info.frames != SF_COUNT_MAX && (sf_count_t)n < info.frames)
        core_warn("audio: %s: header declares %lld frames but only %zu could be read", path,
                  (long long)info.frames, n);
    out->samples = mono;
    out->n = n;
    out->rate = info.samplerate;
    mono = NULL;
    if (rate != 0 && rate != out->rate) {
        rc = resample_buf(out, rate, err, err_len);
        if (rc) audio_buf_free(out);
    }
done:
    core_free(mono);
    core_free(block);
    sf_close(sf);
    return rc;
}

/* ---- writing ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

int audio_write_file(const char *path, const float *samples, size_t n, int rate, char *err, size_t err_len)
{
    if (!path || (!samples && n)) {
        core_errf(err, err_len, "audio_write_file: no path or no samples");
        return BANTER_ERR_INVALID_ARG;
    }
    if (!is_rate_ok(rate)) {
        core_errf(err, err_len, "sample rate %d Hz is out of range (%d..%d)", rate, MIN_RATE, MAX_RATE);
        return BANTER_ERR_INVALID_ARG;
    }
    int vorbis = ends_with(path, ".ogg") || ends_with(path, ".oga");
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = 1;
    if (ends_with(path, ".flac"))
        info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    else if (vorbis)
        info.format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
    else
        info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    /* A WAV file's sizes are 32-bit: 2 bytes per sample plus the header must fit. */
    if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAV && n > (0xFFFFFFFFu - 64) / 2) {
        core_errf(err, err_len, "%s: %zu samples do not fit in a WAV file (4 GB limit)", path, n);
        return BANTER_ERR_INVALID_ARG;
    }
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) {
        core_errf(err, err_len, "%s: cannot write: %s", path, sf_strerror(NULL));
        return BANTER_ERR_IO;
    }
    int rc = BANTER_OK;
    enum { BLOCK = 4096 };
    int16_t pcm[BLOCK];
    float fl[BLOCK];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < BLOCK ? n - off : BLOCK;
        sf_count_t wrote;
        if (vorbis) {
            for (size_t i = 0; i < k; i++)
                fl[i] = sanitize(samples[off + i]);
            wrote = sf_write_float(sf, fl, (sf_count_t)k);
        } else {
            audio_f32_to_s16(samples + off, pcm, k);
            wrote = sf_write_short(sf, pcm, (sf_count_t)k);
        }
        if (wrote != (sf_count_t)k) {
            core_errf(err, err_len, "%s: write failed: %s", path, sf_strerror(sf));
            rc = BANTER_ERR_IO;
            break;
        }
        off += k;
    }
    if (sf_close(sf) != 0 && rc == BANTER_OK) {
        core_errf(err, err_len, "%s: closing failed", path);
        rc = BANTER_ERR_IO;
    }
    return rc;
}
