/*
 * test_audio.c: sound files and resampling: WAV and FLAC round trips, stereo downmix, rates from 8 to 48 kHz
 * resampled to 16 kHz with a sine's frequency and level preserved (measured with a Goertzel filter), the
 * streaming resampler in odd chunk sizes against one pass and within its stated output bound, and bad files
 * (missing, a directory, empty, not audio, truncated, impossible header fields, a huge declared length, NaN
 * samples) refused with a message or read safely; allocation failures injected at every step of a read.
 */
#include "audio/audio.h"
#include "banter.h"
#include "test.h"

#include "core/core.h"

#include <sndfile.h>
#include <stdlib.h>
#include <sys/stat.h>

static char g_dir[128];

static double goertzel_power(const float *x, size_t n, double freq, int rate)
{
    double w = 2 * M_PI * freq / rate, c = 2 * cos(w), s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        double s0 = x[i] + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return (s1 * s1 + s2 * s2 - c * s1 * s2) / ((double)n * n / 4);
}

static void write_stereo_sine(const char *path, int rate, double f, double seconds, int format)
{
    SF_INFO info = {0};
    info.samplerate = rate;
    info.channels = 2;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    CHECK(sf != NULL);
    if (!sf) return;
    size_t n = (size_t)(rate * seconds);
    float *x = malloc(2 * n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        float v = (float)(0.5 * sin(2 * M_PI * f * (double)i / rate));
        x[2 * i] = v;
        x[2 * i + 1] = v; /* same on both channels: the downmix keeps the level */
    }
    sf_writef_float(sf, x, (sf_count_t)n);
    sf_close(sf);
    free(x);
}

static void check_rates(void)
{
    const int rates[] = {8000, 16000, 22050, 44100, 48000};
    const int formats[] = {SF_FORMAT_WAV | SF_FORMAT_PCM_16, SF_FORMAT_FLAC | SF_FORMAT_PCM_16,
                           SF_FORMAT_OGG | SF_FORMAT_VORBIS};
    for (size_t ri = 0; ri < sizeof rates / sizeof *rates; ri++) {
        for (size_t fi = 0; fi < sizeof formats / sizeof *formats; fi++) {
            char path[256];
            snprintf(path, sizeof path, "%s/sine-%d-%zu.snd", g_dir, rates[ri], fi);
            write_stereo_sine(path, rates[ri], 1000.0, 0.5, formats[fi]);
            struct audio_buf b;
            char err[256] = "";
            int rc = audio_read_file(path, AUDIO_RATE, 0, &b, err, sizeof err);
            CHECK_INT_EQ(rc, BANTER_OK);
            if (rc != BANTER_OK) {
                fprintf(stderr, "%s\n", err);
                continue;
            }
            CHECK_INT_EQ(b.rate, AUDIO_RATE);
            CHECK_NEAR((double)b.n, 0.5 * AUDIO_RATE, 0.01 * AUDIO_RATE);
            /* Skip the edges where the filter and codec start up. */
            size_t lo = b.n / 10, n = b.n - 2 * lo;
            double p1k = goertzel_power(b.samples + lo, n, 1000.0, AUDIO_RATE);
            double p3k = goertzel_power(b.samples + lo, n, 3000.0, AUDIO_RATE);
            CHECK_NEAR(sqrt(p1k), 0.5, 0.05); /* amplitude of the 1 kHz tone */
            CHECK(p3k < p1k * 1e-3);
            audio_buf_free(&b);
        }
    }
}

static void check_round_trip(void)
{
    const char *names[] = {"rt.wav", "rt.flac"};
    float x[1600];
    for (int i = 0; i < 1600; i++)
        x[i] = (float)(0.3 * sin(i * 0.05)) + (i == 800 ? 2.0f : 0.0f); /* one clip */
    for (int k = 0; k < 2; k++) {
        char path[256], err[256];
        snprintf(path, sizeof path, "%s/%s", g_dir, names[k]);
        CHECK_INT_EQ(audio_write_file(path, x, 1600, 16000, err, sizeof err), BANTER_OK);
        struct audio_buf b;
        CHECK_INT_EQ(audio_read_file(path, 0, 0, &b, err, sizeof err), BANTER_OK);
        CHECK_INT_EQ(b.n, 1600);
        CHECK_INT_EQ(b.rate, 16000);
        double worst = 0;
        for (size_t i = 0; i < b.n && i < 1600; i++)
            if (i != 800 && fabs(b.samples[i] - x[i]) > worst) worst = fabs(b.samples[i] - x[i]);
        CHECK(worst < 1.0 / 16384);
        CHECK(b.samples[800] <= 1.0f && b.samples[800] > 0.99f); /* clipped, not wrapped */
        audio_buf_free(&b);
    }
    int16_t s[4];
    float f[4] = {2.0f, -2.0f, 0.5f, NAN};
    audio_f32_to_s16(f, s, 4);
    CHECK_INT_EQ(s[0], 32767);
    CHECK_INT_EQ(s[1], -32768);
    CHECK_INT_EQ(s[2], 16384);
    CHECK_INT_EQ(s[3], 0);
}

static void check_streaming(void)
{
    const int n = 48000;
    float *x = malloc(n * sizeof *x), *one = malloc(20000 * sizeof *one), *str = malloc(20000 * sizeof *str);
    for (int i = 0; i < n; i++)
        x[i] = (float)sin(i * 0.01) * 0.4f;
    struct audio_resampler *a = audio_resampler_open(48000, 16000, -1),
                           *b = audio_resampler_open(48000, 16000, -1);
    CHECK(a && b);
    size_t n1 = audio_resample(a, x, n, one, 20000);
    size_t n2 = 0;
    const int chunks[] = {1, 7, 160, 333, 960, 4097};
    for (int pos = 0, k = 0; pos < n; k++) {
        int c = chunks[k % 6];
        if (c > n - pos) c = n - pos;
        n2 += audio_resample(b, x + pos, (size_t)c, str + n2, 20000 - n2);
        pos += c;
    }
    CHECK(n1 > 15000 && n2 > 15000);
    size_t m = n1 < n2 ? n1 : n2;
    double worst = 0;
    for (size_t i = 0; i < m; i++)
        if (fabs(one[i] - str[i]) > worst) worst = fabs(one[i] - str[i]);
    CHECK(worst < 1e-5);
    /* A tiny output buffer keeps the rest for later instead of losing it. */
    struct audio_resampler *c = audio_resampler_open(16000, 16000, -1);
    float small[10], rest[4000];
    size_t got = audio_resample(c, x, 3000, small, 10);
    got += audio_resample(c, NULL, 0, rest, 4000);
    CHECK(got > 2900);
    CHECK(audio_resampler_open(0, 16000, -1) == NULL);
    CHECK(audio_resampler_open(16000, 10000000, -1) == NULL);
    audio_resampler_close(a);
    audio_resampler_close(b);
    audio_resampler_close(c);
    audio_resampler_close(NULL);
    free(x);
    free(one);
    free(str);
}

static void check_bad_files(void)
{
    char path[256], err[256];
    struct audio_buf b;
    CHECK_INT_EQ(audio_read_file("/nonexistent/x.wav", 16000, 0, &b, err, sizeof err), BANTER_ERR_IO);
    CHECK(strstr(err, "x.wav") != NULL);
    snprintf(path, sizeof path, "%s/garbage.wav", g_dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 1000; i++)
        fputc((i * 37) & 0xff, f);
    fclose(f);
    CHECK_INT_EQ(audio_read_file(path, 16000, 0, &b, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(b.samples == NULL && b.n == 0);
    snprintf(path, sizeof path, "%s/empty.wav", g_dir);
    CHECK_INT_EQ(audio_write_file(path, NULL, 0, 16000, err, sizeof err), BANTER_OK);
    CHECK(audio_read_file(path, 16000, 0, &b, err, sizeof err) != BANTER_OK);
    /* A WAV cut in the middle of its data reads what is there; cut inside the header, it is refused. */
    float x[8000] = {0};
    snprintf(path, sizeof path, "%s/cut.wav", g_dir);
    audio_write_file(path, x, 8000, 16000, err, sizeof err);
    CHECK_INT_EQ(truncate(path, 44 + 2000), 0);
    CHECK_INT_EQ(audio_read_file(path, 16000, 0, &b, err, sizeof err), BANTER_OK);
    CHECK(b.n <= 1000);
    audio_buf_free(&b);
    CHECK_INT_EQ(truncate(path, 20), 0);
    CHECK(audio_read_file(path, 16000, 0, &b, err, sizeof err) != BANTER_OK);
    /* Longer than the caller's limit. */
    snprintf(path, sizeof path, "%s/long.wav", g_dir);
    audio_write_file(path, x, 8000, 16000, err, sizeof err);
    CHECK_INT_EQ(audio_read_file(path, 16000, 0.25, &b, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK(strstr(err, "limit") != NULL);
    CHECK_INT_EQ(audio_read_file(path, 5, 0, &b, err, sizeof err), BANTER_ERR_INVALID_ARG);
}

/* Ogg/Vorbis through audio_write_file (lossy: the tone's level and the length survive). */
static void check_ogg(void)
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/tone.ogg", g_dir);
    const size_t n = 16000;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(0.4 * sin(2 * M_PI * 440.0 * (double)i / 16000));
    CHECK_INT_EQ(audio_write_file(path, x, n, 16000, err, sizeof err), BANTER_OK);
    struct audio_buf b;
    int rc = audio_read_file(path, 0, 0, &b, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_OK);
    if (rc == BANTER_OK) {
        CHECK_NEAR((double)b.n, (double)n, 400);
        CHECK_NEAR(sqrt(goertzel_power(b.samples + 2000, 12000, 440.0, 16000)), 0.4, 0.04);
        audio_buf_free(&b);
    }
    free(x);
}

/* Writes a 16-bit mono WAV of n samples of a sine and returns its path in buf. */
static const char *write_wav(const char *name, size_t n, char *buf, size_t len)
{
    char err[256];
    snprintf(buf, len, "%s/%s", g_dir, name);
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(0.25 * sin(0.1 * (double)i));
    CHECK_INT_EQ(audio_write_file(buf, x, n, 16000, err, sizeof err), BANTER_OK);
    free(x);
    return buf;
}

static void patch_u32(const char *path, long off, uint32_t v)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    fseek(f, off, SEEK_SET);
    fwrite(b, 1, 4, f);
    fclose(f);
}

static void patch_u16(const char *path, long off, uint16_t v)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    unsigned char b[2] = {v & 0xff, v >> 8};
    fseek(f, off, SEEK_SET);
    fwrite(b, 1, 2, f);
    fclose(f);
}

/* Hostile headers: libsndfile's canonical 44-byte WAV header has the channel count at 22, the rate at 24, the
 * byte rate at 28 and the data size at 40 (RIFF size at 4). */
static void check_hostile_headers(void)
{
    char path[256], err[256];
    struct audio_buf b;
    /* A data chunk that claims 2 GB in a 16 KB file: what is there is read, nothing more is allocated. */
    write_wav("huge.wav", 8000, path, sizeof path);
    patch_u32(path, 4, 0x7ffffff0u);
    patch_u32(path, 40, 0x7fffffc0u);
    int rc = audio_read_file(path, 16000, 0, &b, err, sizeof err);
    printf("  2 GB declared in a 16 KB WAV: %s\n", rc == BANTER_OK ? "read what is there" : err);
    if (rc == BANTER_OK) {
        CHECK(b.n <= 8000);
        audio_buf_free(&b);
    } else {
        CHECK(err[0] != 0);
    }
    /* The same claim against a short limit is refused, by the header or by what is read. */
    rc = audio_read_file(path, 16000, 0.1, &b, err, sizeof err);
    CHECK(rc != BANTER_OK);
    CHECK(b.samples == NULL);
    /* A sample rate of 500 Hz. */
    write_wav("rate.wav", 4000, path, sizeof path);
    patch_u32(path, 24, 500);
    patch_u32(path, 28, 1000);
    rc = audio_read_file(path, 16000, 0, &b, err, sizeof err);
    printf("  500 Hz: %s\n", err);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    CHECK(strstr(err, "rate") != NULL || strstr(err, "not a readable") != NULL);
    /* 0 and 40 channels. */
    const uint16_t chans[] = {0, 40};
    for (int i = 0; i < 2; i++) {
        write_wav("chan.wav", 4000, path, sizeof path);
        patch_u16(path, 22, chans[i]);
        rc = audio_read_file(path, 16000, 0, &b, err, sizeof err);
        printf("  %d channels: %s\n", chans[i], err);
        CHECK(rc == BANTER_ERR_FORMAT);
        CHECK(b.samples == NULL);
    }
    /* A text file, a headerless raw recording, a directory. */
    snprintf(path, sizeof path, "%s/notes.txt", g_dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 50; i++)
        fputs("this is not a sound file, just some text\n", f);
    fclose(f);
    CHECK_INT_EQ(audio_read_file(path, 16000, 0, &b, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, "notes.txt") != NULL);
    if (access("/usr/share/pocketsphinx/test/data/goforward.raw", R_OK) == 0)
        CHECK_INT_EQ(
            audio_read_file("/usr/share/pocketsphinx/test/data/goforward.raw", 16000, 0, &b, err, sizeof err),
            BANTER_ERR_FORMAT);
    CHECK_INT_EQ(audio_read_file(g_dir, 16000, 0, &b, err, sizeof err), BANTER_ERR_IO);
    /* A zero-byte file. */
    snprintf(path, sizeof path, "%s/zero.wav", g_dir);
    f = fopen(path, "w");
    fclose(f);
    CHECK_INT_EQ(audio_read_file(path, 16000, 0, &b, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, "empty") != NULL);
    /* Bad arguments. */
    CHECK_INT_EQ(audio_read_file(NULL, 16000, 0, &b, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(audio_read_file(path, 16000, -1, &b, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(audio_read_file(path, 16000, NAN, &b, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(audio_write_file("/nonexistent-dir/x.wav", (const float[]){0}, 1, 16000, err, sizeof err),
                 BANTER_ERR_IO);
    CHECK_INT_EQ(audio_write_file(path, NULL, 5, 16000, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(audio_write_file(path, (const float[]){0}, 1, 0, err, sizeof err), BANTER_ERR_INVALID_ARG);
}

/* A float WAV holding NaN, infinities and values beyond full scale reads back finite and within [-1, 1]. */
static void check_float_samples(void)
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/float.wav", g_dir);
    SF_INFO info = {0};
    info.samplerate = 16000;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    CHECK(sf != NULL);
    if (!sf) return;
    float x[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = i % 4 == 0 ? NAN : i % 4 == 1 ? INFINITY : i % 4 == 2 ? 7.5f : -0.5f;
    sf_write_float(sf, x, 1000);
    sf_close(sf);
    const int rates[] = {0, 48000};
    for (int r = 0; r < 2; r++) {
        struct audio_buf b;
        CHECK_INT_EQ(audio_read_file(path, rates[r], 0, &b, err, sizeof err), BANTER_OK);
        int ok = 1;
        for (size_t i = 0; i < b.n; i++)
            if (!(b.samples[i] >= -1.0f && b.samples[i] <= 1.0f)) ok = 0;
        CHECK(ok);
        CHECK_INT_EQ(b.n, rates[r] ? 3000 : 1000);
        audio_buf_free(&b);
    }
}

/* Every allocation of a read (with resampling) fails in turn: a clean error, nothing leaked (ASan checks). */
static void check_alloc_failures(void)
{
    char path[256], err[256];
    write_wav("alloc.wav", 20000, path, sizeof path);
    int n_ok = 0;
    for (long k = 0; k < 40; k++) {
        struct audio_buf b;
        core_fail_alloc_after(k);
        int rc = audio_read_file(path, 22050, 0, &b, err, sizeof err);
        core_fail_alloc_after(-1);
        CHECK(rc == BANTER_OK || rc == BANTER_ERR_NOMEM);
        if (rc == BANTER_OK) {
            n_ok++;
            CHECK_INT_EQ(b.n, 27563);
            audio_buf_free(&b);
        } else {
            CHECK(b.samples == NULL);
        }
    }
    CHECK(n_ok > 0);
}

/* With out_cap = audio_resample_max_out(n), every call takes all its input, for many rates and chunk sizes.
 */
static void check_max_out(void)
{
    const int pairs[][2] = {{8000, 16000},  {11025, 16000}, {22050, 16000}, {44100, 16000},  {48000, 16000},
                            {16000, 48000}, {16000, 44100}, {16000, 8000},  {384000, 16000}, {1000, 16000}};
    float in[5000], out[100000];
    for (int i = 0; i < 5000; i++)
        in[i] = (float)sin(i * 0.03);
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        struct audio_resampler *r = audio_resampler_open(pairs[p][0], pairs[p][1], -1);
        CHECK(r != NULL);
        if (!r) continue;
        size_t total_in = 0, total_out = 0;
        int fits = 1;
        for (size_t c = 1; c < 5000 && total_in < 200000; c = c * 3 + 1) {
            size_t cap = audio_resample_max_out(r, c);
            if (cap > sizeof out / sizeof *out) cap = sizeof out / sizeof *out;
            size_t got = audio_resample(r, in, c, out, cap);
            if (got > cap) fits = 0;
            /* All input taken: asking again with no input and no room gives nothing back and keeps nothing.
             */
            if (audio_resample_max_out(r, 0) > 4 + (size_t)(pairs[p][1] / pairs[p][0]) + 1) fits = 0;
            total_in += c;
            total_out += got;
        }
        CHECK(fits);
        /* The output rate holds (less the filter's held-back tail). */
        double want = (double)total_in * pairs[p][1] / pairs[p][0];
        CHECK(total_out <= want + 4 && total_out > want - 200.0 * pairs[p][1] / 1000);
        audio_resampler_close(r);
    }
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/banter-test-audio-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    check_round_trip();
    check_rates();
    check_streaming();
    check_bad_files();
    check_ogg();
    check_hostile_headers();
    check_float_samples();
    check_alloc_failures();
    check_max_out();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) return 1;
    return test_finish("test_audio");
}
