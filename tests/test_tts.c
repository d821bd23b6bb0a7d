/*
 * test_tts.c: speech synthesis with the built-in engines (Flite slt and kal16, eSpeak NG).
 *
 *   1. Each engine speaks a sentence: the audio is not silent, not clipped beyond [-1, 1], and lasts a
 *      plausible 0.1-0.5 s per word; it arrives in several pieces per chunk (streamed), the first long before
 *      the end; chunks cover the text in order, and per-chunk sample counts add up to the total.
 *      Time to first audio is printed per engine.
 *   2. Rate and pitch: a faster rate gives shorter audio, a different pitch different audio of about the same
 *      length.
 *   3. Concurrency: handles with different engines, voices and settings, used from several threads at once,
 *      produce the audio each produces alone (the engines' global state is serialized by their workers):
 *      bit for bit where the voice is deterministic, the same length and loudness envelope where it is not.
 *   4. Bad configuration (unknown engine or voice, rate or pitch out of range) gives a clear error; empty and
 *      blank text give no audio; very long text works; cancelling (from the callback, or through
 *      banter_tts_cancel) stops early and leaves the handle usable; handles open and close repeatedly.
 *   5. synthesize_file writes a 16 kHz file that reads back with the same length.
 */
#include "audio/audio.h"
#include "banter.h"
#include "core/core.h"
#include "speech.h"
#include "test.h"

#include <pthread.h>

static bool g_quick;

static const char *SENTENCE =
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the "
    "green forest to find its friends.";
#define SENTENCE_WORDS 22

/* Everything a synthesis delivered, with checks of the chunk bookkeeping as it arrives. */
struct capture {
    float *x;
    size_t n, cap;
    int n_calls;
    int n_chunks_done;
    int last_index;
    size_t next_chunk_offset;  /* where the next chunk's samples must start */
    size_t text_end;           /* end of the last chunk's text span */
    size_t chunk_sum;          /* sum of final per-chunk sample counts */
    int stop_after_calls;      /* return 0 after this many calls with audio (0 = never) */
    banter_tts *cancel_handle; /* call banter_tts_cancel on it after the first audio */
    size_t text_len;
    bool bad; /* a bookkeeping check failed */
};

static int on_audio(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    struct capture *c = user;
    if (c->n + n > c->cap) {
        c->cap = (c->n + n) * 2 + 16000;
        c->x = realloc(c->x, c->cap * sizeof *c->x);
        BANTER_ASSERT(c->x);
    }
    if (n) memcpy(c->x + c->n, samples, n * sizeof *samples);
    c->n += n;
    c->n_calls++;
    /* Chunks come in order; the chunk's samples start where the previous chunk's ended. */
    if (chunk->index != c->last_index && chunk->index != c->last_index + 1) c->bad = true;
    if (chunk->sample_offset != c->next_chunk_offset) c->bad = true;
    if (chunk->sample_offset + chunk->n_samples != c->n) c->bad = true;
    if (chunk->text_offset < c->text_end || chunk->text_offset + chunk->text_len > c->text_len) c->bad = true;
    c->last_index = chunk->index;
    if (chunk->done) {
        c->n_chunks_done++;
        c->chunk_sum += chunk->n_samples;
        c->next_chunk_offset = chunk->sample_offset + chunk->n_samples;
        c->text_end = chunk->text_offset + chunk->text_len;
    }
    if (c->cancel_handle && c->n > 0) banter_tts_cancel(c->cancel_handle);
    if (c->stop_after_calls && n > 0 && --c->stop_after_calls == 0) return 0;
    return 1;
}

static void capture_init(struct capture *c, const char *text)
{
    memset(c, 0, sizeof *c);
    c->text_len = strlen(text);
}

static banter_tts *open_tts(const char *engine, const char *voice, int rate, int pitch)
{
    banter_tts_config cfg = banter_tts_config_default();
    cfg.engine = engine;
    cfg.voice = voice;
    cfg.rate = rate;
    cfg.pitch = pitch;
    banter_tts *t = NULL;
    char err[256] = "";
    banter_status rc = banter_tts_open(&cfg, &t, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_OK);
    if (rc) fprintf(stderr, "  banter_tts_open(%s, %s): %s\n", engine, voice ? voice : "default", err);
    return t;
}

static double rms(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0;
}

static uint64_t checksum(const float *x, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        h = (h ^ bits) * 1099511628211ULL;
    }
    return h;
}

/* ---- 1. each engine speaks ---- */

static void test_engine(const char *engine, const char *voice)
{
    banter_tts *t = open_tts(engine, voice, 0, 0);
    if (!t) return;
    struct capture c;
    banter_tts_stats st;
    /* Twice: the first call pays for loading the voice, the second shows the steady state. */
    double first_ms[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        capture_init(&c, SENTENCE);
        CHECK_INT_EQ(banter_tts_synthesize(t, SENTENCE, on_audio, &c, &st), BANTER_OK);
        first_ms[run] = st.first_audio_ms;
        if (run == 0) free(c.x);
    }
    double seconds = (double)c.n / BANTER_SAMPLE_RATE;
    float peak = 0;
    for (size_t i = 0; i < c.n; i++)
        peak = fabsf(c.x[i]) > peak ? fabsf(c.x[i]) : peak;
    printf(
        "%s/%s: %.2f s of audio for %d words in %d chunks, %d pieces; first audio after %.1f ms (first call "
        "%.1f ms), all after %.1f ms; rms %.3f\n",
        engine, voice, seconds, SENTENCE_WORDS, st.n_chunks, c.n_calls, first_ms[1], first_ms[0], st.total_ms,
        rms(c.x, c.n));
    CHECK(!c.bad);
    CHECK_INT_EQ(st.n_samples, c.n);
    CHECK_INT_EQ(c.chunk_sum, c.n);
    CHECK_INT_EQ(c.n_chunks_done, st.n_chunks);
    CHECK(st.n_chunks >= 2);             /* the sentence has a clause boundary after "dog," */
    CHECK(c.n_calls >= 2 * st.n_chunks); /* pieces, not one block per chunk */
    CHECK(seconds >= 0.1 * SENTENCE_WORDS && seconds <= 0.5 * SENTENCE_WORDS);
    CHECK(rms(c.x, c.n) > 0.01);
    CHECK(peak <= 1.0f);
    CHECK(st.first_audio_ms > 0 && st.first_audio_ms < st.total_ms);
    free(c.x);
    banter_tts_close(t);
}

/* ---- 2. rate and pitch ---- */

static size_t speak_len(banter_tts *t, const char *text, uint64_t *sum)
{
    struct capture c;
    capture_init(&c, text);
    CHECK_INT_EQ(banter_tts_synthesize(t, text, on_audio, &c, NULL), BANTER_OK);
    if (sum) *sum = checksum(c.x, c.n);
    free(c.x);
    return c.n;
}

static void test_rate_pitch(const char *engine, const char *voice)
{
    const char *text = "Rate and pitch change how this sentence sounds.";
    banter_tts *slow = open_tts(engine, voice, 120, 0), *fast = open_tts(engine, voice, 350, 0);
    banter_tts *low = open_tts(engine, voice, 0, 20), *high = open_tts(engine, voice, 0, 90);
    if (slow && fast && low && high) {
        uint64_t s_low, s_high;
        size_t n_slow = speak_len(slow, text, NULL), n_fast = speak_len(fast, text, NULL);
        size_t n_low = speak_len(low, text, &s_low), n_high = speak_len(high, text, &s_high);
        printf("%s/%s: 120 wpm %.2f s, 350 wpm %.2f s; pitch 20 %.2f s, pitch 90 %.2f s\n", engine, voice,
               n_slow / 16000.0, n_fast / 16000.0, n_low / 16000.0, n_high / 16000.0);
        CHECK(n_fast * 3 < n_slow * 2); /* 350 vs 120 wpm: well under two thirds */
        CHECK(s_low != s_high);
        CHECK(n_low < n_high * 3 / 2 && n_high < n_low * 3 / 2);
    }
    banter_tts_close(slow);
    banter_tts_close(fast);
    banter_tts_close(low);
    banter_tts_close(high);
}

/* ---- 3. concurrency ---- */

/* Frame energies (20 ms) of x, into env (n_env frames at most); returns the frame count. */
static size_t envelope(const float *x, size_t n, double *env, size_t n_env)
{
    size_t k = 0;
    for (; k < n_env && (k + 1) * 320 <= n; k++) {
        double e = 0;
        for (size_t i = k * 320; i < (k + 1) * 320; i++)
            e += (double)x[i] * x[i];
        env[k] = sqrt(e / 320);
    }
    return k;
}

static double correlation(const double *a, const double *b, size_t n)
{
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

#define MAX_ENV 1000

struct worker_arg {
    banter_tts *t;
    const char *text;
    bool deterministic; /* the voice has no random excitation: results must match bit for bit */
    int rounds;
    struct capture solo; /* what the handle produced alone */
    double solo_env[MAX_ENV];
    size_t n_env;
    int n_bad;
    double worst_corr;
};

/* Does a concurrent result match the solo run? Flite's slt and eSpeak NG add random noise to their excitation
 * (results differ slightly from run to run), so for them: the same length within 0.5% and the same loudness
 * envelope (correlation >= 0.9). A handle that picked up another handle's voice, rate or pitch, or audio from
 * another job, fails that. kal16 is deterministic and must match exactly. */
static bool same_audio(struct worker_arg *a, const struct capture *c)
{
    if (a->deterministic) return c->n == a->solo.n && checksum(c->x, c->n) == checksum(a->solo.x, a->solo.n);
    double dn = fabs((double)c->n - (double)a->solo.n);
    if (dn > 0.005 * (double)a->solo.n) return false;
    double env[MAX_ENV];
    size_t n = envelope(c->x, c->n, env, MAX_ENV);
    n = n < a->n_env ? n : a->n_env;
    double r = correlation(env, a->solo_env, n);
    if (r < a->worst_corr) a->worst_corr = r;
    return r >= 0.9;
}

static void *speak_rounds(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        struct capture c;
        capture_init(&c, a->text);
        if (banter_tts_synthesize(a->t, a->text, on_audio, &c, NULL) != BANTER_OK || c.bad ||
            !same_audio(a, &c))
            a->n_bad++;
        free(c.x);
    }
    return NULL;
}

static void test_concurrency(void)
{
    struct {
        const char *engine, *voice;
        int rate, pitch;
        const char *text;
    } setups[] = {
        {"flite", "slt", 0, 0, "One thread speaks with the slt voice, at its normal pace."},
        {"flite", "kal16", 300, 80, "Another thread speaks with kal sixteen, fast and high."},
        {"espeak", "en-us", 140, 30, "A third thread uses eSpeak, slowly and low."},
        {"flite", "slt", 220, 70, "A fourth handle shares the slt voice with other settings."},
        {"flite", "kal16", 0, 0, "And a fifth shares kal sixteen at its normal settings."},
    };
    enum { N = 5 };
    static struct worker_arg args[N];
    for (int i = 0; i < N; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].t = open_tts(setups[i].engine, setups[i].voice, setups[i].rate, setups[i].pitch);
        args[i].text = setups[i].text;
        args[i].deterministic = !strcmp(setups[i].voice, "kal16");
        args[i].rounds = g_quick ? 1 : 3;
        args[i].worst_corr = 1;
        if (!args[i].t) continue;
        capture_init(&args[i].solo, args[i].text);
        CHECK_INT_EQ(banter_tts_synthesize(args[i].t, args[i].text, on_audio, &args[i].solo, NULL),
                     BANTER_OK);
        args[i].n_env = envelope(args[i].solo.x, args[i].solo.n, args[i].solo_env, MAX_ENV);
    }
    pthread_t threads[N];
    for (int i = 0; i < N; i++)
        if (args[i].t) BANTER_ASSERT(pthread_create(&threads[i], NULL, speak_rounds, &args[i]) == 0);
    int bad = 0;
    double worst = 1;
    for (int i = 0; i < N; i++) {
        if (!args[i].t) continue;
        pthread_join(threads[i], NULL);
        bad += args[i].n_bad;
        worst = args[i].worst_corr < worst ? args[i].worst_corr : worst;
        if (args[i].n_bad)
            fprintf(stderr, "  %s/%s (rate %d, pitch %d): %d of %d rounds differed from the solo run\n",
                    setups[i].engine, setups[i].voice, setups[i].rate, setups[i].pitch, args[i].n_bad,
                    args[i].rounds);
        free(args[i].solo.x);
        banter_tts_close(args[i].t);
    }
    printf("concurrency: %d handles on %d threads, %d rounds each: %d results differed from the solo run "
           "(kal16 bit-exact; others' envelope correlation >= %.3f)\n",
           N, N, args[0].rounds, bad, worst);
    CHECK_INT_EQ(bad, 0);
}

/* ---- 4. errors, edge cases, cancel ---- */

static void expect_open_error(const char *engine, const char *voice, int rate, int pitch, banter_status want,
                              const char *mention)
{
    banter_tts_config cfg = {.engine = engine, .voice = voice, .rate = rate, .pitch = pitch};
    banter_tts *t = (banter_tts *)&cfg;
    char err[256] = "";
    CHECK_INT_EQ(banter_tts_open(&cfg, &t, err, sizeof err), want);
    CHECK(t == NULL);
    if (!strstr(err, mention)) {
        test_n_failed++;
        fprintf(stderr, "%s:%d: error message \"%s\" does not mention \"%s\"\n", __FILE__, __LINE__, err,
                mention);
    }
}

static void test_errors(void)
{
    expect_open_error("festival", NULL, 0, 0, BANTER_ERR_INVALID_ARG, "festival");
    expect_open_error("flite", "nobody", 0, 0, BANTER_ERR_NOT_FOUND, "nobody");
    expect_open_error("espeak", "xx-no-such-voice", 0, 0, BANTER_ERR_NOT_FOUND, "xx-no-such-voice");
    expect_open_error("flite", NULL, 50, 0, BANTER_ERR_INVALID_ARG, "rate");
    expect_open_error("espeak", NULL, 0, 101, BANTER_ERR_INVALID_ARG, "pitch");
    expect_open_error("flite", NULL, 0, -3, BANTER_ERR_INVALID_ARG, "pitch");
    char err[256];
    CHECK_INT_EQ(banter_tts_open(NULL, NULL, err, sizeof err), BANTER_ERR_INVALID_ARG);
    banter_tts_close(NULL);

    banter_tts *t = open_tts("flite", "kal16", 0, 0);
    if (!t) return;
    struct capture c;
    banter_tts_stats st;
    const char *blanks[] = {"", "   ", "\n\t \n"};
    for (int i = 0; i < 3; i++) {
        capture_init(&c, blanks[i]);
        CHECK_INT_EQ(banter_tts_synthesize(t, blanks[i], on_audio, &c, &st), BANTER_OK);
        CHECK_INT_EQ(c.n_calls, 0);
        CHECK_INT_EQ(st.n_samples, 0);
        CHECK_INT_EQ(st.n_chunks, 0);
    }
    CHECK_INT_EQ(banter_tts_synthesize(t, NULL, on_audio, &c, &st), BANTER_ERR_INVALID_ARG);
    CHECK(strstr(banter_tts_error(t), "text") != NULL);
    CHECK_INT_EQ(banter_tts_synthesize(NULL, "hi", on_audio, &c, &st), BANTER_ERR_INVALID_ARG);

    /* Very long text: many chunks, no clause longer than the chunker's limit, all of it spoken. */
    int reps = g_quick ? 8 : 40;
    size_t cap = (size_t)reps * 128 + 1, len = 0;
    char *text = malloc(cap);
    BANTER_ASSERT(text);
    for (int i = 0; i < reps; i++)
        len +=
            (size_t)snprintf(text + len, cap - len, "Sentence number %d goes on and on without a pause ", i);
    capture_init(&c, text);
    double t0 = core_time_ms();
    CHECK_INT_EQ(banter_tts_synthesize(t, text, on_audio, &c, &st), BANTER_OK);
    int words = reps * 10;
    printf("long text: %zu bytes, %d words -> %d chunks, %.1f s of audio in %.0f ms\n", len, words,
           st.n_chunks, c.n / 16000.0, core_time_ms() - t0);
    CHECK(!c.bad);
    CHECK(st.n_chunks >= (int)(len / 300));
    CHECK(c.n >= (size_t)(0.1 * 16000 * words) && c.n <= (size_t)(0.5 * 16000 * words));
    CHECK(c.text_end > len - 40); /* the last chunk reaches the end of the text */
    free(c.x);

    /* Cancel from the callback's return value, then through banter_tts_cancel; the handle keeps working. */
    capture_init(&c, text);
    c.stop_after_calls = 3;
    CHECK_INT_EQ(banter_tts_synthesize(t, text, on_audio, &c, &st), BANTER_ERR_CANCELLED);
    CHECK(c.n > 0 && c.n < 16000);
    CHECK(strstr(banter_tts_error(t), "stopped") != NULL);
    free(c.x);
    capture_init(&c, text);
    c.cancel_handle = t;
    CHECK_INT_EQ(banter_tts_synthesize(t, text, on_audio, &c, &st), BANTER_ERR_CANCELLED);
    CHECK(c.n > 0 && c.n < 16000);
    free(c.x);
    banter_tts_cancel(t); /* nothing in progress: no effect on the next call */
    size_t n = speak_len(t, "Still working.", NULL);
    CHECK(n > 8000);
    free(text);
    banter_tts_close(t);

    /* Workers start and stop with their handles. */
    for (int i = 0; i < 3; i++) {
        banter_tts *a = open_tts("espeak", NULL, 0, 0), *b = open_tts("flite", NULL, 0, 0);
        if (a) CHECK(speak_len(a, "Again.", NULL) > 0);
        banter_tts_close(a);
        if (b) CHECK(speak_len(b, "Again.", NULL) > 0);
        banter_tts_close(b);
    }
}

/* ---- 5. to a file ---- */

static void test_file(void)
{
    banter_tts *t = open_tts("espeak", NULL, 0, 0);
    if (!t) return;
    char path[] = "/tmp/banter_test_tts_XXXXXX.wav";
    int fd = mkstemps(path, 4);
    BANTER_ASSERT(fd >= 0);
    close(fd);
    banter_tts_stats st;
    CHECK_INT_EQ(banter_tts_synthesize_file(t, "Written to a file.", path, &st), BANTER_OK);
    struct audio_buf buf = {0};
    char err[256];
    CHECK_INT_EQ(audio_read_file(path, 0, 0, &buf, err, sizeof err), 0);
    CHECK_INT_EQ(buf.rate, BANTER_SAMPLE_RATE);
    CHECK_INT_EQ(buf.n, st.n_samples);
    audio_buf_free(&buf);
    unlink(path);
    CHECK_INT_EQ(banter_tts_synthesize_file(t, "No such place.", "/nonexistent/dir/out.wav", &st),
                 BANTER_ERR_IO);
    CHECK(strstr(banter_tts_error(t), "/nonexistent/dir/out.wav") != NULL);
    banter_tts_close(t);
}

int main(void)
{
    g_quick = TEST_ASAN || getenv("BANTER_TEST_QUICK");
    test_engine("flite", "slt");
    test_engine("flite", "kal16");
    test_engine("espeak", "en-us");
    test_rate_pitch("flite", "slt");
    test_rate_pitch("flite", "kal16");
    test_rate_pitch("espeak", "en-us");
    test_concurrency();
    test_errors();
    test_file();
    return test_finish("test_tts");
}
