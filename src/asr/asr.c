/*
 * asr.c: the engine registry, the shared model with its decoder pool, and streams (see asr.h).
 *
 * The pool is a stack of idle decoders under the model's mutex. A stream pops one, or loads a new decoder
 * outside the lock (loading takes up to a second and must not block streams that only need an idle one), and
 * pushes it back on close. Decoders are freed only when the model closes: a decoder, once loaded, is worth
 * keeping for the next conversation.
 *
 * The public banter_asr is one model with one stream: the simple case of one caller transcribing. The agent,
 * which serves many sessions, opens one asr_model and a stream per session instead.
 */
#include "asr/asr.h"

#include "audio/audio.h"
#include "core/core.h"

#include <pthread.h>
#include <string.h>

static const struct asr_engine *const ENGINES[] = {&asr_pocketsphinx, NULL};

const struct asr_engine *const *asr_engines(void)
{
    return ENGINES;
}

const struct asr_engine *asr_engine_find(const char *name)
{
    if (!name || !*name) return ENGINES[0];
    for (const struct asr_engine *const *e = ENGINES; *e; e++)
        if (!strcmp((*e)->name, name)) return *e;
    return NULL;
}

struct asr_model {
    const struct asr_engine *engine;
    void *shared;
    pthread_mutex_t lock;
    void **idle;   /* [n_idle] decoders not held by a stream; guarded by lock */
    size_t n_idle; /* guarded by lock */
    size_t cap_idle;
    size_t n_busy; /* decoders held by open streams; guarded by lock */
};

struct asr_stream {
    struct asr_model *model;
    void *dec;
    bool in_utt;
    double audio_ms, decode_ms;
    const char *text; /* the last final text, owned by the decoder */
    char err[256];
};

int asr_model_open(const struct asr_config *cfg, struct asr_model **out, char *err, size_t err_len)
{
    *out = NULL;
    struct asr_config defaults = {0};
    if (!cfg) cfg = &defaults;
    const struct asr_engine *engine = asr_engine_find(cfg->engine);
    if (!engine) {
        core_errf(err, err_len, "unknown speech recognizer '%s' (this build has: pocketsphinx)", cfg->engine);
        return BANTER_ERR_INVALID_ARG;
    }
    struct asr_model *m = core_calloc(1, sizeof *m);
    if (!m) goto fail_nomem;
    m->cap_idle = 4;
    m->idle = core_calloc(m->cap_idle, sizeof *m->idle);
    if (!m->idle) goto fail_idle;
    m->engine = engine;
    int rc = engine->load(cfg, &m->shared, err, err_len);
    if (rc) goto fail_load;
    double t0 = core_time_ms();
    rc = engine->open(m->shared, &m->idle[0], err, err_len);
    if (rc) goto fail_open;
    m->n_idle = 1;
    pthread_mutex_init(&m->lock, NULL);
    core_info("asr: %s recognizer loaded in %.0f ms", engine->name, core_time_ms() - t0);
    *out = m;
    return BANTER_OK;

fail_open:
    engine->unload(m->shared);
fail_load:
    core_free(m->idle);
    core_free(m);
    return rc;
fail_idle:
    core_free(m);
fail_nomem:
    core_errf(err, err_len, "out of memory loading the speech recognizer");
    return BANTER_ERR_NOMEM;
}

void asr_model_close(struct asr_model *m)
{
    if (!m) return;
    BANTER_ASSERT(m->n_busy == 0); /* a stream outlived its model */
    for (size_t i = 0; i < m->n_idle; i++)
        m->engine->close(m->idle[i]);
    m->engine->unload(m->shared);
    pthread_mutex_destroy(&m->lock);
    core_free(m->idle);
    core_free(m);
}

const char *asr_model_engine(const struct asr_model *m)
{
    return m->engine->name;
}

int asr_stream_open(struct asr_model *m, struct asr_stream **out, char *err, size_t err_len)
{
    *out = NULL;
    struct asr_stream *s = core_calloc(1, sizeof *s);
    if (!s) {
        core_errf(err, err_len, "out of memory opening a recognizer stream");
        return BANTER_ERR_NOMEM;
    }
    pthread_mutex_lock(&m->lock);
    /* Reserve room to give the decoder back later, so closing a stream never needs to allocate. */
    size_t total = m->n_idle + m->n_busy + 1;
    if (total > m->cap_idle) {
        void **grown = core_realloc(m->idle, total * 2 * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&m->lock);
            core_free(s);
            core_errf(err, err_len, "out of memory opening a recognizer stream");
            return BANTER_ERR_NOMEM;
        }
        m->idle = grown;
        m->cap_idle = total * 2;
    }
    if (m->n_idle > 0) s->dec = m->idle[--m->n_idle];
    m->n_busy++;
    pthread_mutex_unlock(&m->lock);

    if (!s->dec) {
        double t0 = core_time_ms();
        int rc = m->engine->open(m->shared, &s->dec, err, err_len);
        if (rc) {
            pthread_mutex_lock(&m->lock);
            m->n_busy--;
            pthread_mutex_unlock(&m->lock);
            core_free(s);
            return rc;
        }
        core_info("asr: every decoder was busy; loaded another in %.0f ms", core_time_ms() - t0);
    }
    s->model = m;
    s->text = "";
    *out = s;
    return BANTER_OK;
}

void asr_stream_close(struct asr_stream *s)
{
    if (!s) return;
    struct asr_model *m = s->model;
    if (s->in_utt) {
        const char *ignored;
        if (m->engine->end(s->dec, &ignored, s->err, sizeof s->err)) {
            /* A decoder that cannot finish an utterance is not trusted with the next one. */
            m->engine->close(s->dec);
            s->dec = NULL;
        }
    }
    pthread_mutex_lock(&m->lock);
    if (s->dec) {
        BANTER_ASSERT(m->n_idle < m->cap_idle);
        m->idle[m->n_idle++] = s->dec;
    }
    m->n_busy--;
    pthread_mutex_unlock(&m->lock);
    core_free(s);
}

int asr_stream_begin(struct asr_stream *s)
{
    if (s->in_utt) {
        const char *ignored;
        s->in_utt = false;
        int rc = s->model->engine->end(s->dec, &ignored, s->err, sizeof s->err);
        if (rc) return rc;
    }
    s->err[0] = 0;
    s->text = "";
    s->audio_ms = s->decode_ms = 0;
    int rc = s->model->engine->begin(s->dec, s->err, sizeof s->err);
    if (rc) return rc;
    s->in_utt = true;
    return BANTER_OK;
}

int asr_stream_feed(struct asr_stream *s, const float *pcm, size_t n)
{
    if (!s->in_utt) {
        core_errf(s->err, sizeof s->err, "feed called outside an utterance (call begin first)");
        return BANTER_ERR_INVALID_ARG;
    }
    if (n == 0) return BANTER_OK;
    double t0 = core_time_ms();
    int rc = s->model->engine->feed(s->dec, pcm, n, s->err, sizeof s->err);
    s->decode_ms += core_time_ms() - t0;
    s->audio_ms += (double)n * 1000.0 / 16000.0;
    return rc;
}

const char *asr_stream_partial(struct asr_stream *s)
{
    if (!s->in_utt) return "";
    double t0 = core_time_ms();
    const char *text = s->model->engine->partial(s->dec);
    s->decode_ms += core_time_ms() - t0;
    return text ? text : "";
}

int asr_stream_end(struct asr_stream *s, const char **text, struct asr_timing *timing)
{
    *text = NULL;
    if (timing) memset(timing, 0, sizeof *timing);
    if (!s->in_utt) {
        core_errf(s->err, sizeof s->err, "end called outside an utterance (call begin first)");
        return BANTER_ERR_INVALID_ARG;
    }
    s->in_utt = false;
    double t0 = core_time_ms();
    const char *result = NULL;
    int rc = s->model->engine->end(s->dec, &result, s->err, sizeof s->err);
    double final_ms = core_time_ms() - t0;
    s->decode_ms += final_ms;
    if (rc) return rc;
    s->text = result ? result : "";
    *text = s->text;
    if (timing) {
        timing->audio_ms = s->audio_ms;
        timing->decode_ms = s->decode_ms;
        timing->final_ms = final_ms;
    }
    return BANTER_OK;
}

const char *asr_stream_error(const struct asr_stream *s)
{
    return s->err;
}

bool asr_stream_in_utterance(const struct asr_stream *s)
{
    return s->in_utt;
}

/* ---- the public API: a banter_asr is a model with one stream ---- */

struct banter_asr {
    struct asr_model *model;
    struct asr_stream *stream;
    char err[256];
};

BANTER_API banter_asr_config banter_asr_config_default(void)
{
    banter_asr_config cfg = {.engine = "pocketsphinx", .second_pass = false, .model_dir = NULL};
    return cfg;
}

BANTER_API banter_status banter_asr_open(const banter_asr_config *cfg, banter_asr **out, char *err,
                                         size_t err_len)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    banter_asr_config defaults = banter_asr_config_default();
    if (!cfg) cfg = &defaults;
    struct asr_config ac = {
        .engine = cfg->engine, .second_pass = cfg->second_pass, .model_dir = cfg->model_dir};
    banter_asr *a = core_calloc(1, sizeof *a);
    if (!a) {
        core_errf(err, err_len, "out of memory opening the speech recognizer");
        return BANTER_ERR_NOMEM;
    }
    int rc = asr_model_open(&ac, &a->model, err, err_len);
    if (rc) {
        core_free(a);
        return (banter_status)rc;
    }
    *out = a;
    return BANTER_OK;
}

struct asr_model *asr_handle_model(banter_asr *a)
{
    return a ? a->model : NULL;
}

/* The handle's own stream is opened on first use, so that a handle used only to share its model with
 * conversations (banter_session_open) leaves the model's first decoder to them. */
static int ensure_stream(banter_asr *a)
{
    if (a->stream) return 0;
    return asr_stream_open(a->model, &a->stream, a->err, sizeof a->err);
}

BANTER_API void banter_asr_close(banter_asr *a)
{
    if (!a) return;
    asr_stream_close(a->stream);
    asr_model_close(a->model);
    core_free(a);
}

BANTER_API const char *banter_asr_error(const banter_asr *a)
{
    return a ? a->err : "no recognizer (NULL handle)";
}

/* Copies the stream's error into the handle after a failed call. */
static banter_status asr_result(banter_asr *a, int rc)
{
    if (rc && a->stream) core_errf(a->err, sizeof a->err, "%s", asr_stream_error(a->stream));
    return (banter_status)rc;
}

BANTER_API banter_status banter_asr_begin(banter_asr *a)
{
    if (!a) return BANTER_ERR_INVALID_ARG;
    a->err[0] = 0;
    int rc = ensure_stream(a);
    if (rc) return (banter_status)rc;
    return asr_result(a, asr_stream_begin(a->stream));
}

BANTER_API banter_status banter_asr_feed(banter_asr *a, const float *samples, size_t n)
{
    if (!a) return BANTER_ERR_INVALID_ARG;
    if (!samples && n > 0) {
        core_errf(a->err, sizeof a->err, "feed: samples is NULL");
        return BANTER_ERR_INVALID_ARG;
    }
    int rc = ensure_stream(a);
    if (rc) return (banter_status)rc;
    return asr_result(a, asr_stream_feed(a->stream, samples, n));
}

BANTER_API const char *banter_asr_partial(banter_asr *a)
{
    return a && a->stream ? asr_stream_partial(a->stream) : "";
}

BANTER_API banter_status banter_asr_end(banter_asr *a, const char **text, banter_asr_timing *timing)
{
    if (!text) return BANTER_ERR_INVALID_ARG;
    *text = NULL;
    if (timing) memset(timing, 0, sizeof *timing);
    if (!a) return BANTER_ERR_INVALID_ARG;
    int rc = ensure_stream(a);
    if (rc) return (banter_status)rc;
    struct asr_timing t;
    rc = asr_stream_end(a->stream, text, &t);
    if (rc == 0 && timing) {
        timing->audio_ms = t.audio_ms;
        timing->decode_ms = t.decode_ms;
        timing->final_ms = t.final_ms;
    }
    return asr_result(a, rc);
}

BANTER_API banter_status banter_asr_transcribe(banter_asr *a, const float *samples, size_t n,
                                               const char **text, banter_asr_timing *timing)
{
    if (!text) return BANTER_ERR_INVALID_ARG;
    *text = NULL;
    if (timing) memset(timing, 0, sizeof *timing);
    banter_status rc = banter_asr_begin(a);
    if (rc == BANTER_OK) rc = banter_asr_feed(a, samples, n);
    if (rc == BANTER_OK) rc = banter_asr_end(a, text, timing);
    return rc;
}

BANTER_API banter_status banter_asr_transcribe_file(banter_asr *a, const char *path, const char **text,
                                                    banter_asr_timing *timing)
{
    if (!text) return BANTER_ERR_INVALID_ARG;
    *text = NULL;
    if (timing) memset(timing, 0, sizeof *timing);
    if (!a) return BANTER_ERR_INVALID_ARG;
    if (!path) {
        core_errf(a->err, sizeof a->err, "no file given");
        return BANTER_ERR_INVALID_ARG;
    }
    struct audio_buf buf = {0};
    int rc = audio_read_file(path, AUDIO_RATE, 0, &buf, a->err, sizeof a->err);
    if (rc) return (banter_status)rc;
    rc = banter_asr_transcribe(a, buf.samples, buf.n, text, timing);
    audio_buf_free(&buf);
    return (banter_status)rc;
}
