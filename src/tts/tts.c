/*
 * tts.c: the engine registry, one worker thread per engine, the audio sink at the engine edge, and the public
 * banter_tts API (see tts.h for the design).
 *
 * Workers live in a process-wide table, one slot per engine, under g_workers_lock, counted by the handles
 * that use them: the first banter_tts_open of an engine starts its worker (which loads the library on its own
 * thread, so every call into the library comes from that one thread), the last close stops and joins it (the
 * worker unloads the library on its way out, so nothing is left behind at exit).
 *
 * Memory: the sink and its conversion buffers live in the worker (allocated once); a chunk that needs
 * resampling opens a resampler and closes it when the chunk is drained, so each chunk's sample count is exact
 * and nothing carries over between chunks of different handles.
 */
#include "tts/tts.h"

#include "audio/audio.h"
#include "core/core.h"
#include "tts/chunker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define SINK_BLOCK 1024 /* native samples converted at a time */
#define SINK_OUT_CAP 4096

static const struct tts_engine *const ENGINES[] = {&tts_flite, &tts_espeak, NULL};
#define N_ENGINES 2

enum { JOB_SYNTH, JOB_CHECK };

struct tts_sink {
    struct tts_job *job;
    banter_tts_chunk chunk;
    struct audio_resampler *rs;
    int rs_rate;
    size_t n_native; /* samples the engine gave for this chunk, at rs_rate */
    bool stopped;    /* the job was cancelled or failed: drop further audio */
    float in[SINK_BLOCK];
    float out[SINK_OUT_CAP];
};

struct tts_worker {
    const struct tts_engine *engine;
    int slot;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;         /* signalled when a job is queued or stop is set */
    pthread_cond_t done;         /* broadcast when a job finishes */
    struct tts_job *head, *tail; /* FIFO of queued jobs; guarded by lock */
    bool stop;                   /* guarded by lock */
    bool started;                /* init finished (init_rc says how); guarded by lock */
    int init_rc;
    char init_err[256];
    int n_handles;                  /* guarded by g_workers_lock */
    void *state;                    /* the engine's; worker thread only */
    struct tts_sink sink;           /* worker thread only */
    char text[TTS_CHUNKER_CAP + 1]; /* the chunk being spoken, NUL-terminated; worker thread only */
};

struct banter_tts {
    const struct tts_engine *engine;
    struct tts_worker *w;
    struct tts_voice voice;
    atomic_bool cancel; /* set by banter_tts_cancel; seen by the job in progress */
    char err[256];
};

static pthread_mutex_t g_workers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tts_worker *g_workers[N_ENGINES]; /* guarded by g_workers_lock */

const struct tts_engine *const *tts_engines(void)
{
    return ENGINES;
}

const struct tts_engine *tts_engine_find(const char *name)
{
    if (!name || !*name) return ENGINES[0];
    if (!strcmp(name, "espeak-ng")) name = "espeak";
    for (const struct tts_engine *const *e = ENGINES; *e; e++)
        if (!strcmp((*e)->name, name)) return *e;
    return NULL;
}

/* ---- the sink: engine audio in, 16 kHz float pieces out ---- */

static bool job_cancelled(const struct tts_job *job)
{
    return atomic_load_explicit(&job->cancel, memory_order_relaxed) ||
           atomic_load_explicit(&job->t->cancel, memory_order_relaxed);
}

static void stop_job(struct tts_sink *sink, int rc, const char *msg)
{
    if (sink->stopped) return;
    sink->stopped = true;
    if (sink->job->rc == 0) {
        sink->job->rc = rc;
        core_errf(sink->job->err, sizeof sink->job->err, "%s", msg);
    }
}

/* Hands n samples (and, with done, the end of the chunk) to the job's callback. */
static void deliver(struct tts_sink *sink, const float *x, size_t n, bool done)
{
    struct tts_job *job = sink->job;
    if (sink->stopped) return;
    if (job_cancelled(job)) {
        stop_job(sink, BANTER_ERR_CANCELLED, "synthesis was cancelled");
        return;
    }
    if (n > 0 && job->stats.n_samples == 0) job->stats.first_audio_ms = core_time_ms() - job->t_submit;
    sink->chunk.n_samples += n;
    sink->chunk.done = done;
    job->stats.n_samples += n;
    if (job->on_audio && !job->on_audio(x, n, &sink->chunk, job->user))
        stop_job(sink, BANTER_ERR_CANCELLED, "synthesis was stopped by the audio callback");
}

int tts_sink_put(struct tts_sink *sink, const int16_t *pcm, size_t n, int rate)
{
    if (sink->stopped) return 1;
    if (rate != AUDIO_RATE && sink->rs_rate != rate) {
        if (sink->rs) {
            /* An engine that changes its rate inside a chunk would need a drain here; none does. */
            audio_resampler_close(sink->rs);
            sink->rs = NULL;
        }
        sink->rs = audio_resampler_open(rate, AUDIO_RATE, -1);
        if (!sink->rs) {
            stop_job(sink, BANTER_ERR_NOMEM, "could not open a resampler for the synthesizer's audio");
            return 1;
        }
        sink->rs_rate = rate;
        sink->n_native = 0;
    }
    while (n > 0 && !sink->stopped) {
        size_t k = n < SINK_BLOCK ? n : SINK_BLOCK;
        for (size_t i = 0; i < k; i++)
            sink->in[i] = (float)pcm[i] * (1.0f / 32768.0f);
        if (rate == AUDIO_RATE) {
            deliver(sink, sink->in, k, false);
        } else {
            sink->n_native += k;
            size_t got = audio_resample(sink->rs, sink->in, k, sink->out, SINK_OUT_CAP);
            deliver(sink, sink->out, got, false);
        }
        pcm += k;
        n -= k;
    }
    return sink->stopped ? 1 : 0;
}

/* Ends a chunk: drains the resampler so the chunk's length is exactly its native length at 16 kHz, then
 * delivers the chunk's final (empty) piece. */
static void end_chunk(struct tts_sink *sink)
{
    if (sink->rs) {
        static const float zeros[256];
        size_t want = (size_t)((double)sink->n_native * AUDIO_RATE / sink->rs_rate + 0.5);
        size_t pushed = 0;
        while (!sink->stopped && sink->chunk.n_samples < want && pushed < (size_t)sink->rs_rate) {
            size_t got = audio_resample(sink->rs, zeros, 256, sink->out, SINK_OUT_CAP);
            pushed += 256;
            size_t room = want - sink->chunk.n_samples;
            deliver(sink, sink->out, got < room ? got : room, false);
        }
        audio_resampler_close(sink->rs);
        sink->rs = NULL;
        sink->rs_rate = 0;
        sink->n_native = 0;
    }
    deliver(sink, sink->out, 0, true);
}

/* ---- the worker ---- */

static int speak_chunk(const struct tts_chunk *c, void *user)
{
    struct tts_worker *w = user;
    struct tts_sink *sink = &w->sink;
    struct tts_job *job = sink->job;
    BANTER_ASSERT(c->len < sizeof w->text);
    memcpy(w->text, c->text, c->len);
    w->text[c->len] = 0;
    sink->chunk.sample_offset += sink->chunk.n_samples;
    sink->chunk.index = c->index;
    sink->chunk.text_offset = c->offset;
    sink->chunk.text_len = c->len;
    sink->chunk.n_samples = 0;
    sink->chunk.done = false;
    char err[256] = "";
    int rc = w->engine->synth(w->state, w->text, sink, err, sizeof err);
    if (rc) {
        if (job->rc == 0) {
            job->rc = rc;
            core_errf(job->err, sizeof job->err, "%s", err);
        }
        sink->stopped = true;
    }
    end_chunk(sink);
    job->stats.n_chunks = c->index + 1;
    return !sink->stopped;
}

static void run_job(struct tts_worker *w, struct tts_job *job)
{
    job->rc = w->engine->select(w->state, &job->t->voice, job->err, sizeof job->err);
    if (job->rc || job->kind == JOB_CHECK) return;

    struct tts_sink *sink = &w->sink;
    sink->job = job;
    sink->stopped = false;
    memset(&sink->chunk, 0, sizeof sink->chunk);
    struct tts_chunker chunker;
    tts_chunker_init(&chunker, NULL);
    if (tts_chunker_feed(&chunker, job->text, job->len, speak_chunk, w) == 0)
        tts_chunker_flush(&chunker, speak_chunk, w);
    if (sink->rs) { /* a chunk was cut short: its resampler is still open */
        audio_resampler_close(sink->rs);
        sink->rs = NULL;
        sink->rs_rate = 0;
    }
    sink->job = NULL;
}

static void *worker_main(void *arg)
{
    struct tts_worker *w = arg;
    int rc = w->engine->init(&w->state, w->init_err, sizeof w->init_err);
    pthread_mutex_lock(&w->lock);
    w->init_rc = rc;
    w->started = true;
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->lock);
    if (rc) return NULL;

    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->wake, &w->lock);
        /* Earliest deadline first: many sessions share this thread, and a reply's first clause (due now) must not
         * wait behind the rest of another reply that is already well ahead of its listener. */
        struct tts_job *job = NULL, *prev = NULL;
        double best = 0;
        for (struct tts_job *j = w->head, *p = NULL; j; p = j, j = j->next) {
            double d = job_cancelled(j) ? -1 : j->deadline;
            if (!job || d < best) job = j, prev = p, best = d;
        }
        if (job) {
            if (prev) prev->next = job->next;
            else w->head = job->next;
            if (w->tail == job) w->tail = prev;
        }
        pthread_mutex_unlock(&w->lock);
        if (!job) break; /* stop, and the queue is empty */

        run_job(w, job);
        job->stats.total_ms = core_time_ms() - job->t_submit;
        pthread_mutex_lock(&w->lock);
        job->done = true;
        pthread_cond_broadcast(&w->done);
        pthread_mutex_unlock(&w->lock);
    }
    w->engine->deinit(w->state);
    w->state = NULL;
    return NULL;
}

static void worker_free(struct tts_worker *w)
{
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    core_free(w);
}

/* Starts the engine's worker or takes another reference to it. Called with g_workers_lock held. */
static int worker_acquire(const struct tts_engine *engine, struct tts_worker **out, char *err, size_t err_len)
{
    int slot = 0;
    while (ENGINES[slot] != engine)
        slot++;
    struct tts_worker *w = g_workers[slot];
    if (w) {
        w->n_handles++;
        *out = w;
        return 0;
    }
    w = core_calloc(1, sizeof *w);
    if (!w) {
        core_errf(err, err_len, "out of memory starting the %s synthesizer", engine->name);
        return BANTER_ERR_NOMEM;
    }
    w->engine = engine;
    w->slot = slot;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        core_errf(err, err_len, "could not start the %s synthesizer's thread", engine->name);
        worker_free(w);
        return BANTER_ERR_NOMEM;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->started)
        pthread_cond_wait(&w->done, &w->lock);
    pthread_mutex_unlock(&w->lock);
    if (w->init_rc) {
        int rc = w->init_rc;
        core_errf(err, err_len, "%s", w->init_err);
        pthread_join(w->thread, NULL);
        worker_free(w);
        return rc;
    }
    core_info("tts: %s synthesizer started on its own thread", engine->name);
    w->n_handles = 1;
    g_workers[slot] = w;
    *out = w;
    return 0;
}

/* Drops a reference; the last one stops and joins the worker. Called with g_workers_lock held. */
static void worker_release(struct tts_worker *w)
{
    if (--w->n_handles > 0) return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    g_workers[w->slot] = NULL;
    worker_free(w);
}

void tts_job_init(struct tts_job *job, banter_tts *t, const char *text, size_t len,
                  banter_tts_audio_fn on_audio, void *user)
{
    memset(job, 0, sizeof *job);
    job->t = t;
    job->text = text;
    job->len = len;
    job->on_audio = on_audio;
    job->user = user;
    atomic_init(&job->cancel, false);
    job->kind = JOB_SYNTH;
}

void tts_submit(struct tts_job *job)
{
    struct tts_worker *w = job->t->w;
    job->t_submit = core_time_ms();
    if (job->deadline <= 0) job->deadline = job->t_submit;
    job->done = false;
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

int tts_wait(struct tts_job *job)
{
    struct tts_worker *w = job->t->w;
    pthread_mutex_lock(&w->lock);
    while (!job->done)
        pthread_cond_wait(&w->done, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return job->rc;
}

/* ---- the public API ---- */

BANTER_API banter_tts_config banter_tts_config_default(void)
{
    banter_tts_config cfg = {.engine = "flite", .voice = NULL, .rate = 0, .pitch = 0};
    return cfg;
}

BANTER_API banter_status banter_tts_open(const banter_tts_config *cfg, banter_tts **out, char *err,
                                         size_t err_len)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    banter_tts_config defaults = banter_tts_config_default();
    if (!cfg) cfg = &defaults;
    const struct tts_engine *engine = tts_engine_find(cfg->engine);
    if (!engine) {
        core_errf(err, err_len, "unknown speech synthesizer '%s' (this build has: flite, espeak)",
                  cfg->engine);
        return BANTER_ERR_INVALID_ARG;
    }
    if (cfg->rate != 0 && (cfg->rate < 80 || cfg->rate > 450)) {
        core_errf(err, err_len, "speaking rate must be 80 to 450 words per minute, or 0 for normal (got %d)",
                  cfg->rate);
        return BANTER_ERR_INVALID_ARG;
    }
    if (cfg->pitch < 0 || cfg->pitch > 100) {
        core_errf(err, err_len, "pitch must be 1 to 100 (50 = natural), or 0 for natural (got %d)",
                  cfg->pitch);
        return BANTER_ERR_INVALID_ARG;
    }
    const char *voice = cfg->voice && *cfg->voice ? cfg->voice : engine->default_voice;
    if (strlen(voice) >= sizeof(((struct tts_voice *)0)->name)) {
        core_errf(err, err_len, "voice name is too long: '%s'", voice);
        return BANTER_ERR_INVALID_ARG;
    }

    banter_tts *t = core_calloc(1, sizeof *t);
    if (!t) {
        core_errf(err, err_len, "out of memory opening the synthesizer");
        return BANTER_ERR_NOMEM;
    }
    t->engine = engine;
    snprintf(t->voice.name, sizeof t->voice.name, "%s", voice);
    t->voice.rate = cfg->rate ? cfg->rate : 175;
    t->voice.pitch = cfg->pitch ? cfg->pitch : 50;
    atomic_init(&t->cancel, false);

    pthread_mutex_lock(&g_workers_lock);
    int rc = worker_acquire(engine, &t->w, err, err_len);
    pthread_mutex_unlock(&g_workers_lock);
    if (rc) goto fail_worker;

    /* The voice is checked by the engine itself, on its thread, so the error names what the engine has. */
    struct tts_job check;
    tts_job_init(&check, t, "", 0, NULL, NULL);
    check.kind = JOB_CHECK;
    tts_submit(&check);
    rc = tts_wait(&check);
    if (rc) {
        core_errf(err, err_len, "%s", check.err);
        goto fail_voice;
    }
    *out = t;
    return BANTER_OK;

fail_voice:
    pthread_mutex_lock(&g_workers_lock);
    worker_release(t->w);
    pthread_mutex_unlock(&g_workers_lock);
fail_worker:
    core_free(t);
    return rc;
}

BANTER_API void banter_tts_close(banter_tts *t)
{
    if (!t) return;
    pthread_mutex_lock(&g_workers_lock);
    worker_release(t->w);
    pthread_mutex_unlock(&g_workers_lock);
    core_free(t);
}

BANTER_API const char *banter_tts_error(const banter_tts *t)
{
    return t ? t->err : "no synthesizer (NULL handle)";
}

BANTER_API banter_status banter_tts_synthesize(banter_tts *t, const char *text, banter_tts_audio_fn on_audio,
                                               void *user, banter_tts_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    if (!t) return BANTER_ERR_INVALID_ARG;
    t->err[0] = 0;
    if (!text) {
        core_errf(t->err, sizeof t->err, "no text to speak (NULL)");
        return BANTER_ERR_INVALID_ARG;
    }
    atomic_store(&t->cancel, false);
    struct tts_job job;
    tts_job_init(&job, t, text, strlen(text), on_audio, user);
    tts_submit(&job);
    int rc = tts_wait(&job);
    if (rc) core_errf(t->err, sizeof t->err, "%s", job.err);
    if (stats) *stats = job.stats;
    return (banter_status)rc;
}

struct pcm_collect {
    float *x;
    size_t n, cap;
    bool oom;
};

static int collect_audio(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    (void)chunk;
    struct pcm_collect *c = user;
    if (c->n + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : AUDIO_RATE * 4;
        while (cap < c->n + n)
            cap *= 2;
        float *grown = core_realloc(c->x, cap * sizeof *grown);
        if (!grown) {
            c->oom = true;
            return 0;
        }
        c->x = grown;
        c->cap = cap;
    }
    memcpy(c->x + c->n, samples, n * sizeof *samples);
    c->n += n;
    return 1;
}

BANTER_API banter_status banter_tts_synthesize_file(banter_tts *t, const char *text, const char *path,
                                                    banter_tts_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    if (!t) return BANTER_ERR_INVALID_ARG;
    if (!path || !*path) {
        core_errf(t->err, sizeof t->err, "no output file given");
        return BANTER_ERR_INVALID_ARG;
    }
    struct pcm_collect c = {0};
    banter_status rc = banter_tts_synthesize(t, text, collect_audio, &c, stats);
    if (c.oom) {
        core_errf(t->err, sizeof t->err, "out of memory holding the synthesized audio");
        rc = BANTER_ERR_NOMEM;
    }
    if (rc == BANTER_OK) {
        rc = (banter_status)audio_write_file(path, c.x, c.n, AUDIO_RATE, t->err, sizeof t->err);
    }
    core_free(c.x);
    return rc;
}

BANTER_API void banter_tts_cancel(banter_tts *t)
{
    if (t) atomic_store(&t->cancel, true);
}
