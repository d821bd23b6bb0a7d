/*
 * server.c: the HTTP server behind `banter serve` (see server.h for the routes and the threading contract).
 *
 * A request's life: the event loop sees its headers (LWS_CALLBACK_HTTP), checks the route, the method and the
 * API key, and answers small things (health, models, errors) itself. A POST's body is collected into one
 * buffer sized from Content-Length (at most max_body, else 413), and the request is then queued for a worker.
 * The worker computes the whole response (status, content type, body bytes) into the request, pushes it onto
 * the done list and wakes the loop with lws_cancel_service. On LWS_CALLBACK_EVENT_WAIT_CANCELLED the loop
 * drains the done list and asks each request's connection for a writable callback, where it writes the
 * headers and then the body in chunks of WRITE_CHUNK bytes.
 *
 * Ownership: a struct req belongs to the loop except while it is "in the worker" (from queueing until the
 * loop takes it off the done list): then the worker owns the request and response fields, and the loop
 * touches only its own fields (wsi, in_worker). A client that disconnects meanwhile orphans its request (wsi
 * = NULL, cancelled set so the worker can stop early); the loop frees it when it comes back on the done list.
 *
 * A streamed chat completion is the one response written while its worker still runs: the worker appends
 * events to the request's queue (qlock), puts the request on the wake list and wakes the loop, which asks for
 * a writable callback and writes what is queued. The headers carry no length, so the stream ends by closing
 * the connection once the worker is done (back from the done list) and the queue is empty. The queue holds at
 * most about STREAM_MAX_QUEUED bytes: a worker whose client does not read pauses there, and cancels its
 * generation after STREAM_STALL_S. A client that leaves cancels the generation at once (ops->cancel through
 * req.conv, which qlock keeps valid). The wake list and the done list are drained together, wake first, so a
 * request is never freed while it is still linked on the wake list.
 */
#include "server/server.h"

#include "agent/agent.h"
#include "audio/audio.h"
#include "core/core.h"
#include "server/assets.h"
#include "server/chat.h"
#include "server/metrics.h"
#include "server/realtime.h"
#include "server/multipart.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY ((size_t)25 << 20)
#define DEFAULT_WORKERS 2
#define DEFAULT_QUEUE 64
#define WRITE_CHUNK 16384
#define HEADER_BUF 2048
#define MAX_INPUT_CHARS 4096 /* OpenAI's limit on speech input */
#define OUT_RATE 24000       /* OpenAI's speech output: 24 kHz 16-bit mono */
#define JOB_TIMEOUT_S 600    /* how long a connection may wait for its worker */
#define STREAM_MAX_QUEUED ((size_t)256 << 10) /* stream bytes waiting for a slow client before the worker pauses */
#define STREAM_STALL_S 30 /* how long a paused worker waits for its client before cancelling the generation */

enum route { ROUTE_NONE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_SPEECH, ROUTE_TRANSCRIPTIONS, ROUTE_CHAT, ROUTE_METRICS };

/* One queued piece of a streamed response. */
struct chunk {
    struct chunk *next;
    char *data; /* [len], malloc'd; off bytes already written */
    size_t len, off;
};

struct req {
    struct srv *srv;
    enum route route;

    /* Loop-owned. */
    struct lws *wsi; /* NULL once the client is gone */
    bool in_worker;  /* queued, computing, or on the done list */
    bool ready;      /* a response is set and waits to be written */
    bool headers_sent;
    bool close_after;       /* close the connection after the response (its body was not read) */
    size_t sent;            /* body bytes written */
    size_t want;            /* the body's declared length */
    char content_type[160]; /* the request's Content-Type (multipart needs its boundary) */
    char query[512];        /* the request's query string, for response_format on transcriptions */
    atomic_bool cancelled;  /* set by the loop when the client leaves; read by the worker */

    /* Request body [len]: filled by the loop, read by the worker. */
    char *body;
    size_t len;

    /* Response: written by the worker (or the loop for what it answers itself). */
    int status;
    const char *ctype; /* a string literal */
    char *out;         /* [out_len] bytes, malloc'd */
    size_t out_len;
    char allow[32]; /* Allow header for 405 */
    const struct srv_asset *asset; /* a file of the web page: the body is its static data instead of out */

    struct req *next; /* queue or done list link; guarded by srv.lock */

    /* A streamed response (see the file comment). */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;          /* signalled when the loop took bytes off the queue or the client left */
    bool streaming;                /* (qlock) the worker started a stream: status and ctype are set */
    struct chunk *q_head, *q_tail; /* (qlock) events waiting to be written */
    size_t q_bytes;                /* (qlock) their unwritten bytes */
    void *conv;                    /* (qlock) the conversation generating, for the loop to cancel */
    bool on_wake;                  /* (srv.lock) linked on srv.wake */
    struct req *wake_next;         /* (srv.lock) */
};

struct pss {
    struct req *r;       /* the connection's request in progress, or NULL */
    struct rt_conn *rtc; /* after a WebSocket upgrade: the realtime connection */
};

struct srv {
    char *host, *api_key, *origin, *model_id;
    size_t max_body;
    int max_queue;
    banter_asr *asr;
    pthread_mutex_t asr_lock; /* the recognizer is used by one worker at a time */
    banter_llm *llm;          /* borrowed; thread-safe */
    struct metrics metrics;   /* thread-safe */
    struct rt *rt;            /* the realtime endpoint */
    atomic_uint_fast64_t n_ids; /* makes response ids unique within the process */

    struct lws_context *ctx;
    struct lws_vhost *vh;
    int port;
    atomic_bool stop;

    pthread_mutex_t lock; /* guards queue_*, n_queued, quit, done */
    pthread_cond_t cond;
    struct req *queue_head, *queue_tail;
    int n_queued;
    bool quit;
    atomic_bool quitting; /* mirrors quit for long work to poll without the lock */
    struct req *done;
    struct req *wake; /* requests with stream events to write, linked by wake_next */

    pthread_t *workers;
    int n_workers;
    banter_tts *keep_flite; /* keeps Flite's engine thread alive between requests */

    unsigned char wbuf[LWS_PRE + WRITE_CHUNK]; /* the loop's write scratch */
};

/* ---- responses ---- */

static void req_free(struct req *r)
{
    if (!r) return;
    while (r->q_head) {
        struct chunk *c = r->q_head;
        r->q_head = c->next;
        free(c->data);
        free(c);
    }
    pthread_cond_destroy(&r->qcond);
    pthread_mutex_destroy(&r->qlock);
    free(r->body);
    free(r->out);
    free(r);
}

static void set_response(struct req *r, int status, const char *ctype, char *out, size_t len)
{
    free(r->out);
    r->status = status;
    r->ctype = ctype;
    r->out = out;
    r->out_len = len;
}

static void set_json(struct req *r, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        set_response(r, 500, "text/plain", NULL, 0);
        return;
    }
    set_response(r, status, "application/json", s, strlen(s));
}

static void set_error(struct req *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(struct req *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    set_json(r, status,
             json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type", type, "param", "code"));
}

/* ---- the worker pool ---- */

/* Number of UTF-8 code points in s (continuation bytes are not counted). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

struct pcm {
    float *s;
    size_t n, cap;
    struct req *r;
};

static int collect_pcm(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    (void)chunk;
    struct pcm *p = user;
    if (atomic_load_explicit(&p->r->cancelled, memory_order_relaxed) ||
        atomic_load_explicit(&p->r->srv->quitting, memory_order_relaxed))
        return 0;
    if (p->n + n > p->cap) {
        size_t cap = p->cap ? p->cap : 16000;
        while (cap < p->n + n)
            cap *= 2;
        float *s = realloc(p->s, cap * sizeof *s);
        if (!s) return 0;
        p->s = s;
        p->cap = cap;
    }
    memcpy(p->s + p->n, samples, n * sizeof *samples);
    p->n += n;
    return 1;
}

/* Resamples 16 kHz float to OUT_RATE 16-bit, flushing the resampler's delay with silence so that the output
 * is exactly as long as the input. Returns a malloc'd [*n_out] buffer, or NULL when out of memory. */
static int16_t *to_out_rate(const float *in, size_t n, size_t *n_out)
{
    size_t target = n * OUT_RATE / AUDIO_RATE;
    struct audio_resampler *rs = audio_resampler_open(AUDIO_RATE, OUT_RATE, -1);
    if (!rs) return NULL;
    size_t cap = audio_resample_max_out(rs, n) + OUT_RATE;
    float *f = malloc(cap * sizeof *f);
    int16_t *s16 = NULL;
    if (!f) goto out;
    size_t got = audio_resample(rs, in, n, f, cap);
    static const float zeros[1600];
    for (int i = 0; got < target && i < 50; i++)
        got += audio_resample(rs, zeros, 1600, f + got, cap - got);
    if (got > target) got = target;
    s16 = malloc((got ? got : 1) * sizeof *s16);
    if (!s16) goto out;
    audio_f32_to_s16(f, s16, got);
    *n_out = got;
out:
    free(f);
    audio_resampler_close(rs);
    return s16;
}

static void put_le(unsigned char *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* POST /v1/audio/speech: {"input", "voice", "response_format", "speed"} -> audio. */
static void do_speech(struct req *r)
{
    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", r->len, 0, &je);
    if (!root || !json_is_object(root)) {
        set_error(r, 400, "the request body must be a JSON object (%s)",
                  root ? "got another JSON value" : je.text);
        json_decref(root);
        return;
    }
    const char *input = json_string_value(json_object_get(root, "input"));
    json_t *jv = json_object_get(root, "voice"), *jf = json_object_get(root, "response_format");
    json_t *js = json_object_get(root, "speed");
    const char *voice = jv ? json_string_value(jv) : "slt";
    const char *format = jf ? json_string_value(jf) : "wav";
    double speed = 1.0;
    if (!input || !input[0]) {
        set_error(r, 400, "'input' is required: a non-empty string with the text to speak");
        goto done;
    }
    if (utf8_chars(input) > MAX_INPUT_CHARS) {
        set_error(r, 400, "'input' is too long: at most %d characters", MAX_INPUT_CHARS);
        goto done;
    }
    if (!voice || !voice[0]) {
        set_error(r, 400, "'voice' must be a string: \"slt\" or \"kal16\" (Flite) or an eSpeak NG voice");
        goto done;
    }
    if (!format || (strcmp(format, "wav") && strcmp(format, "pcm"))) {
        set_error(r, 400,
                  "'response_format' must be \"wav\" or \"pcm\" (this server does not encode mp3, opus, aac "
                  "or flac)");
        goto done;
    }
    if (js) {
        speed = json_is_number(js) ? json_number_value(js) : -1;
        if (!(speed >= 0.25 && speed <= 4.0)) {
            set_error(r, 400, "'speed' must be a number from 0.25 to 4.0");
            goto done;
        }
    }

    /* OpenAI's voice names have no counterpart here; they get the default voice so OpenAI clients just work.
     */
    static const char *const openai_voices[] = {"alloy", "ash",  "ballad",  "coral", "echo", "fable",
                                                "onyx",  "nova", "shimmer", "sage",  "verse"};
    banter_tts_config tc = banter_tts_config_default();
    tc.engine = "espeak";
    tc.voice = voice;
    if (!strcmp(voice, "slt") || !strcmp(voice, "kal16")) tc.engine = "flite";
    for (size_t i = 0; i < sizeof openai_voices / sizeof *openai_voices; i++)
        if (!strcmp(voice, openai_voices[i])) tc.engine = "flite", tc.voice = "slt";
    if (speed != 1.0) {
        /* The engines take words per minute around a normal pace of ~175, within 80..450. */
        double wpm = 175.0 * speed;
        tc.rate = wpm < 80 ? 80 : wpm > 450 ? 450 : (int)(wpm + 0.5);
    }
    char err[256];
    banter_tts *tts = NULL;
    int st = banter_tts_open(&tc, &tts, err, sizeof err);
    if (st) {
        set_error(r, st == BANTER_ERR_NOT_FOUND || st == BANTER_ERR_INVALID_ARG ? 400 : 500, "voice '%s': %s",
                  voice, err);
        goto done;
    }
    struct pcm pcm = {.r = r};
    st = banter_tts_synthesize(tts, input, collect_pcm, &pcm, NULL);
    if (st) {
        set_error(r, 500, "synthesis failed: %s", banter_tts_error(tts));
        banter_tts_close(tts);
        free(pcm.s);
        goto done;
    }
    banter_tts_close(tts);

    size_t n = 0;
    int16_t *s16 = to_out_rate(pcm.s, pcm.n, &n);
    free(pcm.s);
    if (!s16) {
        set_error(r, 500, "out of memory");
        goto done;
    }
    bool wav = !strcmp(format, "wav");
    size_t hdr = wav ? 44 : 0, bytes = n * 2;
    unsigned char *out = malloc(hdr + bytes + 1);
    if (!out) {
        free(s16);
        set_error(r, 500, "out of memory");
        goto done;
    }
    if (wav) {
        memcpy(out, "RIFF", 4);
        put_le(out + 4, (uint32_t)(36 + bytes), 4);
        memcpy(out + 8, "WAVEfmt ", 8);
        put_le(out + 16, 16, 4);           /* fmt chunk size */
        put_le(out + 20, 1, 2);            /* PCM */
        put_le(out + 22, 1, 2);            /* mono */
        put_le(out + 24, OUT_RATE, 4);     /* sample rate */
        put_le(out + 28, OUT_RATE * 2, 4); /* byte rate */
        put_le(out + 32, 2, 2);            /* block align */
        put_le(out + 34, 16, 2);           /* bits per sample */
        memcpy(out + 36, "data", 4);
        put_le(out + 40, (uint32_t)bytes, 4);
    }
    for (size_t i = 0; i < n; i++)
        put_le(out + hdr + 2 * i, (uint16_t)s16[i], 2);
    free(s16);
    set_response(r, 200, wav ? "audio/wav" : "audio/pcm", (char *)out, hdr + bytes);
done:
    json_decref(root);
}

/* Finds key=value in a query string (no percent-decoding: the values we read are plain words). */
static bool query_get(const char *q, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t l = amp ? (size_t)(amp - q) : strlen(q);
        if (l > kl && !strncmp(q, key, kl) && q[kl] == '=') {
            snprintf(out, cap, "%.*s", (int)(l - kl - 1), q + kl + 1);
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

/* POST /v1/audio/transcriptions: multipart form with `file` (and optional response_format) -> {"text"}. */
static void do_transcription(struct req *r)
{
    struct srv *s = r->srv;
    char err[256], boundary[SRV_MULTIPART_MAX_BOUNDARY + 1];
    if (srv_multipart_boundary(r->content_type, boundary, sizeof boundary, err, sizeof err)) {
        set_error(r, 400, "the body must be multipart/form-data: %s", err);
        return;
    }
    struct srv_part parts[16];
    size_t n_parts = 0;
    if (srv_multipart_parse(r->body ? r->body : "", r->len, boundary, parts, 16, &n_parts, err, sizeof err)) {
        set_error(r, 400, "malformed multipart body: %s", err);
        return;
    }
    const struct srv_part *file = srv_multipart_find(parts, n_parts, "file");
    for (size_t i = 0; file && i < n_parts; i++)
        if (&parts[i] != file && srv_multipart_find(parts + i, 1, "file")) {
            set_error(r, 400, "the 'file' field appears more than once; send one audio file per request");
            return;
        }
    if (!file || !file->len) {
        set_error(r, 400, "a non-empty 'file' field with the audio is required");
        return;
    }
    char format[16] = "json";
    const struct srv_part *fp = srv_multipart_find(parts, n_parts, "response_format");
    if (fp)
        snprintf(format, sizeof format, "%.*s", (int)(fp->len < 15 ? fp->len : 15), fp->data);
    else
        query_get(r->query, "response_format", format, sizeof format);
    if (strcmp(format, "json") && strcmp(format, "text") && strcmp(format, "verbose_json")) {
        set_error(r, 400, "'response_format' must be json, text or verbose_json");
        return;
    }
    if (!s->asr) {
        set_error(r, 503, "this server was started without a speech recognizer");
        return;
    }

    char path[] = "/tmp/banter-upload-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        set_error(r, 500, "cannot create a temporary file: %s", strerror(errno));
        return;
    }
    size_t off = 0;
    while (off < file->len) {
        ssize_t w = write(fd, file->data + off, file->len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    if (off < file->len) {
        unlink(path);
        set_error(r, 500, "cannot write a temporary file: %s", strerror(errno));
        return;
    }

    pthread_mutex_lock(&s->asr_lock);
    const char *text = NULL;
    banter_asr_timing timing = {0};
    int st = banter_asr_transcribe_file(s->asr, path, &text, &timing);
    if (st) {
        int status =
            st == BANTER_ERR_FORMAT || st == BANTER_ERR_IO || st == BANTER_ERR_INVALID_ARG ? 400 : 500;
        set_error(r, status, "%s", banter_asr_error(s->asr));
    } else if (!strcmp(format, "text")) {
        size_t l = strlen(text);
        char *out = malloc(l + 2);
        if (out) memcpy(out, text, l), out[l] = '\n', out[l + 1] = 0;
        if (out)
            set_response(r, 200, "text/plain; charset=utf-8", out, l + 1);
        else
            set_error(r, 500, "out of memory");
    } else if (!strcmp(format, "verbose_json")) {
        set_json(r, 200,
                 json_pack("{s:s,s:s,s:f,s:s}", "task", "transcribe", "language", "english", "duration",
                           timing.audio_ms / 1000.0, "text", text));
    } else {
        set_json(r, 200, json_pack("{s:s}", "text", text));
    }
    pthread_mutex_unlock(&s->asr_lock);
    unlink(path);
}

/* ---- chat completions ---- */

/* An error answered as a whole response, naming the field at fault (param) when there is one. */
static void set_chat_error(struct req *r, int status, const char *msg, const char *param)
{
    size_t len = 0;
    char *out = chat_render_error(msg, status >= 500 ? "server_error" : "invalid_request_error", param, false,
                                  &len);
    if (out)
        set_response(r, status, "application/json", out, len);
    else
        set_response(r, 500, "text/plain", NULL, 0);
}

/* Asks the loop to write r's queued stream events. */
static void wake(struct req *r)
{
    struct srv *s = r->srv;
    pthread_mutex_lock(&s->lock);
    if (!r->on_wake) {
        r->on_wake = true;
        r->wake_next = s->wake;
        s->wake = r;
    }
    pthread_mutex_unlock(&s->lock);
    lws_cancel_service(s->ctx);
}

static bool gone(const struct req *r)
{
    return atomic_load_explicit(&r->cancelled, memory_order_relaxed) ||
           atomic_load_explicit(&r->srv->quitting, memory_order_relaxed);
}

struct chat_job {
    struct req *r;
    const struct chat_request *cr;
    struct chat_filter filt;
    struct chat_meta meta;
    size_t released; /* bytes of filt.text already queued as events */
    bool nomem, stalled;
};

/* Queues one stream event (taking data), waiting while the queue is full. Returns false when the event was
 * dropped: the client left, the server is stopping, or the client read nothing for STREAM_STALL_S. */
static bool stream_push(struct chat_job *j, char *data, size_t len)
{
    struct req *r = j->r;
    struct chunk *c = data ? malloc(sizeof *c) : NULL;
    if (!c) {
        free(data);
        j->nomem = true;
        return false;
    }
    *c = (struct chunk){NULL, data, len, 0};
    pthread_mutex_lock(&r->qlock);
    double t0 = core_time_ms();
    while (r->q_bytes > STREAM_MAX_QUEUED && !gone(r)) {
        if (core_time_ms() - t0 > STREAM_STALL_S * 1000.0) {
            j->stalled = true;
            break;
        }
        /* Timed, because a stopping server signals no request's condition. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&r->qcond, &r->qlock, &ts);
    }
    bool ok = !j->stalled && !gone(r);
    if (ok) {
        if (r->q_tail)
            r->q_tail->next = c;
        else
            r->q_head = c;
        r->q_tail = c;
        r->q_bytes += len;
        r->streaming = true;
    }
    pthread_mutex_unlock(&r->qlock);
    if (!ok) {
        free(c->data);
        free(c);
        return false;
    }
    wake(r);
    return true;
}

/* Queues the text the filter has made final since the last call, as one content event. */
static bool stream_text(struct chat_job *j)
{
    if (j->filt.safe <= j->released) return true;
    size_t len = 0;
    char *ev = chat_render_chunk(&j->meta, false, j->filt.text + j->released, j->filt.safe - j->released, NULL,
                                 &len);
    j->released = j->filt.safe;
    return stream_push(j, ev, len);
}

static int on_piece(const char *piece, size_t len, void *user)
{
    struct chat_job *j = user;
    if (gone(j->r)) return 0;
    int rc = chat_filter_feed(&j->filt, piece, len);
    if (rc < 0) {
        j->nomem = true;
        return 0;
    }
    if (j->cr->stream && !stream_text(j)) return 0;
    return rc; /* 0 once a stop string ended the reply */
}

/* POST /v1/chat/completions (see chat.h for the format). */
static void do_chat(struct req *r)
{
    struct srv *s = r->srv;
    struct chat_request cr;
    char err[512];
    int rc = chat_request_parse(r->body, r->len, &cr, err, sizeof err);
    if (rc) {
        set_chat_error(r, rc == BANTER_ERR_NOMEM ? 500 : 400, err, cr.param);
        return;
    }
    struct chat_job j = {.r = r, .cr = &cr};
    struct agent_llm_stats st = {0};
    void *conv = NULL;
    const struct agent_llm *be = s->llm ? &s->llm->be : NULL;
    if (!be) {
        set_chat_error(r, 503, "this server was started without a language model, so it cannot answer chats",
                       NULL);
        goto out;
    }
    struct agent_reply_config rcfg;
    chat_request_reply_config(&cr, &rcfg);
    rc = be->ops->conv_open(be->state, &rcfg, &conv, err, sizeof err);
    if (rc) {
        char msg[640];
        snprintf(msg, sizeof msg, "the language model cannot take this conversation now (%s); retry later",
                 err[0] ? err : banter_status_str(rc));
        metrics_error(&s->metrics, "busy");
        set_chat_error(r, rc == BANTER_ERR_NOMEM || rc == BANTER_ERR_INVALID_ARG ? 500 : 503, msg, NULL);
        goto out;
    }
    pthread_mutex_lock(&r->qlock);
    r->conv = conv;
    pthread_mutex_unlock(&r->qlock);

    uint64_t n = atomic_fetch_add_explicit(&s->n_ids, 1, memory_order_relaxed);
    uint64_t rnd = ((uint64_t)(uintptr_t)r * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)core_time_ms() << 20) ^ n;
    chat_meta_init(&j.meta, rnd, n, (long long)time(NULL), cr.model ? cr.model : s->model_id, cr.include_usage);
    chat_filter_init(&j.filt, &cr);
    if (cr.stream) {
        r->status = 200;
        r->ctype = "text/event-stream";
        size_t len = 0;
        char *ev = chat_render_chunk(&j.meta, true, NULL, 0, NULL, &len);
        if (!stream_push(&j, ev, len)) goto generated; /* nothing to send it to */
    }
    err[0] = 0;
    rc = gone(r) ? BANTER_ERR_CANCELLED
                 : be->ops->reply(conv, cr.msgs, cr.n_msgs, on_piece, &j, &st, err, sizeof err);
generated:
    pthread_mutex_lock(&r->qlock);
    r->conv = NULL;
    pthread_mutex_unlock(&r->qlock);
    be->ops->conv_close(conv);
    metrics_llm_tokens(&s->metrics, st.n_prompt, st.n_fed, st.n_generated);

    if (rc == BANTER_ERR_CANCELLED && j.filt.stopped) rc = 0; /* a stop string ended it: a normal end */
    if (!rc && chat_filter_finish(&j.filt)) j.nomem = true;
    if (gone(r) || j.stalled) {
        set_error(r, 499, "client went away"); /* not sent: the connection is closing */
        goto done;
    }
    if (!rc && j.nomem) rc = BANTER_ERR_NOMEM;
    if (rc) {
        metrics_error(&s->metrics, "llm");
        char msg[640];
        snprintf(msg, sizeof msg, "the language model failed: %s", err[0] ? err : banter_status_str(rc));
        if (!r->streaming) {
            set_chat_error(r, 500, msg, NULL);
        } else {
            size_t len = 0;
            char *ev = chat_render_error(msg, "server_error", NULL, true, &len);
            if (stream_push(&j, ev, len)) stream_push(&j, strdup(CHAT_SSE_DONE), strlen(CHAT_SSE_DONE));
        }
        goto done;
    }
    const char *finish = !j.filt.stopped && st.n_generated >= rcfg.max_tokens ? "length" : "stop";
    struct chat_usage u = {st.n_prompt, st.n_generated};
    if (cr.stream) {
        size_t len = 0;
        char *ev;
        if (!stream_text(&j)) goto done;
        ev = chat_render_chunk(&j.meta, false, NULL, 0, finish, &len);
        if (!stream_push(&j, ev, len)) goto done;
        if (cr.include_usage) {
            ev = chat_render_usage_chunk(&j.meta, &u, &len);
            if (!stream_push(&j, ev, len)) goto done;
        }
        stream_push(&j, strdup(CHAT_SSE_DONE), strlen(CHAT_SSE_DONE));
    } else {
        size_t len = 0;
        char *out = chat_render_completion(&j.meta, j.filt.text, j.filt.len, finish, &u, &len);
        if (out)
            set_response(r, 200, "application/json", out, len);
        else
            set_chat_error(r, 500, "out of memory", NULL);
    }
done:
    chat_filter_deinit(&j.filt);
out:
    chat_request_free(&cr);
}

static void *worker_main(void *arg)
{
    struct srv *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->quit && !s->queue_head)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->quit) break;
        struct req *r = s->queue_head;
        s->queue_head = r->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        pthread_mutex_unlock(&s->lock);

        if (atomic_load_explicit(&r->cancelled, memory_order_relaxed))
            set_error(r, 499, "client went away");
        else if (r->route == ROUTE_SPEECH)
            do_speech(r);
        else if (r->route == ROUTE_TRANSCRIPTIONS)
            do_transcription(r);
        else if (r->route == ROUTE_CHAT)
            do_chat(r);
        else
            set_error(r, 500, "internal error: route %d has no worker", (int)r->route);

        pthread_mutex_lock(&s->lock);
        r->next = s->done;
        s->done = r;
        pthread_mutex_unlock(&s->lock);
        lws_cancel_service(s->ctx);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the event loop ---- */

static void respond(struct req *r)
{
    r->ready = true;
    lws_callback_on_writable(r->wsi);
}

static void respond_error(struct req *r, int status, const char *msg)
{
    set_error(r, status, "%s", msg);
    respond(r);
}

/* Hands a request whose body is complete to the workers (503 when the queue is full). */
static void dispatch(struct req *r)
{
    struct srv *s = r->srv;
    pthread_mutex_lock(&s->lock);
    bool full = s->n_queued >= s->max_queue;
    if (!full) {
        r->next = NULL;
        if (s->queue_tail)
            s->queue_tail->next = r;
        else
            s->queue_head = r;
        s->queue_tail = r;
        s->n_queued++;
        r->in_worker = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (full) {
        respond_error(r, 503, "the server is busy; retry later");
        return;
    }
    /* The connection may wait for its worker for long (a long text to speak); lws's own timeouts are shorter.
     */
    lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, JOB_TIMEOUT_S);
}

/* Takes finished requests off the done list: orphans are freed, the others get a writable callback. */
static void drain_done(struct srv *s)
{
    pthread_mutex_lock(&s->lock);
    /* Streams with events to write first, under the lock: a worker may link its request again at once. */
    for (struct req *w = s->wake; w; w = w->wake_next) {
        w->on_wake = false;
        if (w->wsi) lws_callback_on_writable(w->wsi);
    }
    s->wake = NULL;
    struct req *r = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->lock);
    while (r) {
        struct req *next = r->next;
        r->in_worker = false;
        if (!r->wsi)
            req_free(r);
        else if (r->status == 499) /* a stream whose client stopped reading: drop the connection */
            lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        else
            respond(r);
        r = next;
    }
}

/* The client left (or the transaction ended): forget the request, or orphan it if a worker has it. */
static void detach(struct pss *pss)
{
    struct req *r = pss ? pss->r : NULL;
    if (!r) return;
    pss->r = NULL;
    r->wsi = NULL;
    if (r->in_worker) {
        atomic_store_explicit(&r->cancelled, true, memory_order_relaxed);
        /* A generation stops now rather than at its next piece (a long prefill has none), and a worker
         * waiting for queue room wakes up. */
        pthread_mutex_lock(&r->qlock);
        if (r->conv) r->srv->llm->be.ops->cancel(r->conv);
        pthread_cond_broadcast(&r->qcond);
        pthread_mutex_unlock(&r->qlock);
    } else {
        req_free(r);
    }
}

/* Constant-time comparison, so the key cannot be guessed a byte at a time from response times. */
static bool same_secret(const char *a, size_t la, const char *b, size_t lb)
{
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static bool authorized(struct srv *s, struct lws *wsi)
{
    if (!s->api_key) return true;
    char h[512];
    int n = lws_hdr_copy(wsi, h, sizeof h, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 7 || strncasecmp(h, "Bearer ", 7)) return false;
    return same_secret(h + 7, strlen(h + 7), s->api_key, strlen(s->api_key));
}

static void on_http(struct srv *s, struct lws *wsi, struct pss *pss, const char *uri)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r) return; /* the connection then times out; nothing better to do without memory */
    pthread_mutex_init(&r->qlock, NULL);
    pthread_cond_init(&r->qcond, NULL);
    r->srv = s;
    r->wsi = wsi;
    pss->r = r;

    const char *method = "?";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
        method = "GET";
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
        method = "POST";
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI))
        method = "OPTIONS";
    core_debug("serve: %s %s", method, uri);

    /* The web page's files (web/, embedded in the binary) need no API key: a browser cannot send one when it
     * loads a page, and they hold nothing secret; the page hands ?key= on to the WebSocket itself. */
    const struct srv_asset *asset = srv_asset_find(uri);
    if (asset && strcmp(method, "GET")) {
        snprintf(r->allow, sizeof r->allow, "GET");
        respond_error(r, 405, "the web page's files are read with GET");
        return;
    }
    if (asset) {
        r->asset = asset;
        set_response(r, 200, asset->content_type, NULL, asset->len);
        respond(r);
        return;
    }

    const char *allow = "GET";
    if (!strcmp(uri, "/health"))
        r->route = ROUTE_HEALTH;
    else if (!strcmp(uri, "/v1/models"))
        r->route = ROUTE_MODELS;
    else if (!strcmp(uri, "/v1/audio/speech"))
        r->route = ROUTE_SPEECH, allow = "POST";
    else if (!strcmp(uri, "/v1/audio/transcriptions"))
        r->route = ROUTE_TRANSCRIPTIONS, allow = "POST";
    else if (!strcmp(uri, "/v1/chat/completions"))
        r->route = ROUTE_CHAT, allow = "POST";
    else if (!strcmp(uri, "/metrics"))
        r->route = ROUTE_METRICS;
    snprintf(r->allow, sizeof r->allow, "%s%s", allow, s->origin ? ", OPTIONS" : "");

    if (!strcmp(method, "OPTIONS") && s->origin && r->route != ROUTE_NONE) {
        set_response(r, 204, "text/plain", NULL, 0);
        respond(r);
        return;
    }
    bool post = !strcmp(method, "POST");
    if (post) r->close_after = true; /* until the body has been read */
    if (!authorized(s, wsi)) {
        respond_error(r, 401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'");
        return;
    }
    if (r->route == ROUTE_NONE && !strcmp(uri, "/v1/realtime")) {
        respond_error(r, 426,
                      "the realtime API is a WebSocket: connect to ws://HOST:PORT/v1/realtime with an Upgrade "
                      "request (see docs/realtime.md)");
        return;
    }
    if (r->route == ROUTE_NONE) {
        respond_error(r, 404,
                      "no such route; this server has GET / (a web page), WebSocket /v1/realtime, GET /health, "
                      "GET /v1/models, POST /v1/audio/speech, POST /v1/audio/transcriptions, "
                      "POST /v1/chat/completions and GET /metrics");
        return;
    }
    if (strcmp(method, allow)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s is not allowed here; use %s", method, allow);
        respond_error(r, 405, msg);
        return;
    }
    if (r->route == ROUTE_HEALTH) {
        set_json(r, 200, json_pack("{s:s}", "status", "ok"));
        respond(r);
        return;
    }
    if (r->route == ROUTE_MODELS) {
        set_json(r, 200,
                 json_pack("{s:s,s:[{s:s,s:s,s:s}]}", "object", "list", "data", "id", s->model_id, "object",
                           "model", "owned_by", "banter"));
        respond(r);
        return;
    }
    if (r->route == ROUTE_METRICS) {
        /* Rendered here: a few kilobytes under one short lock, cheaper than a trip through the workers. */
        size_t len = 0;
        struct agent_sched_stats sched;
        if (s->llm) agent_llm_native_sched_stats(&s->llm->be, &sched);
        char *text = metrics_render(&s->metrics, s->llm ? &sched : NULL, &len);
        if (text)
            set_response(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        else
            set_error(r, 500, "out of memory");
        respond(r);
        return;
    }

    /* A POST to a computing route: collect the body, then queue it. */
    char cl[32] = "";
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        respond_error(r, 411, "a Content-Length header is required");
        return;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long want = strtoull(cl, &end, 10);
    if (errno || end == cl || *end || cl[0] == '-') {
        respond_error(r, 400, "Content-Length is not a number");
        return;
    }
    if (want > s->max_body) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is too large (at most %zu bytes)", s->max_body);
        respond_error(r, 413, msg);
        return;
    }
    lws_hdr_copy(wsi, r->content_type, sizeof r->content_type, WSI_TOKEN_HTTP_CONTENT_TYPE);
    lws_hdr_copy(wsi, r->query, sizeof r->query, WSI_TOKEN_HTTP_URI_ARGS);
    r->want = (size_t)want;
    r->body = malloc(r->want + 1);
    if (!r->body) {
        respond_error(r, 500, "out of memory");
        return;
    }
    if (r->want == 0) {
        r->close_after = false;
        dispatch(r);
    }
}

/* The route label of r's response in banter_http_requests_total: one of a fixed few. */
static const char *route_label(const struct req *r)
{
    if (r->asset) return "web";
    switch (r->route) {
    case ROUTE_HEALTH: return "/health";
    case ROUTE_MODELS: return "/v1/models";
    case ROUTE_SPEECH: return "/v1/audio/speech";
    case ROUTE_TRANSCRIPTIONS: return "/v1/audio/transcriptions";
    case ROUTE_CHAT: return "/v1/chat/completions";
    case ROUTE_METRICS: return "/metrics";
    default: return "other";
    }
}

/* Writes what a stream has queued (at most WRITE_CHUNK bytes a call); once its worker is done and nothing is
 * left, closes the connection, which ends the response (its headers gave no length). */
static void write_stream(struct srv *s, struct lws *wsi, struct pss *pss, int *close)
{
    struct req *r = pss->r;
    size_t n = 0;
    pthread_mutex_lock(&r->qlock);
    while (r->q_head && n < WRITE_CHUNK) {
        struct chunk *c = r->q_head;
        size_t k = c->len - c->off;
        if (k > WRITE_CHUNK - n) k = WRITE_CHUNK - n;
        memcpy(s->wbuf + LWS_PRE + n, c->data + c->off, k);
        c->off += k;
        n += k;
        if (c->off == c->len) {
            r->q_head = c->next;
            if (!r->q_head) r->q_tail = NULL;
            free(c->data);
            free(c);
        }
    }
    r->q_bytes -= n;
    bool more = r->q_head != NULL;
    if (n) pthread_cond_signal(&r->qcond);
    pthread_mutex_unlock(&r->qlock);
    if (n) {
        if (lws_write(wsi, s->wbuf + LWS_PRE, n, LWS_WRITE_HTTP) != (int)n) {
            *close = 1;
            return;
        }
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, JOB_TIMEOUT_S); /* a stream is alive while it flows */
        if (more || !r->in_worker) lws_callback_on_writable(wsi);
        return;
    }
    if (!r->in_worker) {
        /* Closed from a callback that wrote nothing, so lws has flushed everything written before. */
        detach(pss);
        *close = 1;
    }
}

static void write_response(struct srv *s, struct lws *wsi, struct pss *pss, int *close)
{
    struct req *r = pss->r;
    if (!r) return;
    pthread_mutex_lock(&r->qlock);
    bool streaming = r->streaming; /* once set, the worker has set status and ctype and never changes them */
    pthread_mutex_unlock(&r->qlock);
    if (!streaming && (!r->ready || r->in_worker)) return;
    if (!r->headers_sent) {
        unsigned char *start = s->wbuf + LWS_PRE, *p = start, *end = s->wbuf + sizeof s->wbuf;
        static const char cors_methods[] = "GET, POST, OPTIONS";
        static const char cors_headers[] = "Authorization, Content-Type";
        /* A stream's length is unknown: lws then sends "connection: close" and the end of the stream is the
         * end of the connection. */
        bool ok = !lws_add_http_common_headers(wsi, (unsigned)r->status, r->ctype,
                                               streaming ? LWS_ILLEGAL_HTTP_CONTENT_LEN : r->out_len, &p, end);
        if (ok && s->origin)
            ok = !lws_add_http_header_by_name(
                wsi, (const unsigned char *)"access-control-allow-origin:", (const unsigned char *)s->origin,
                (int)strlen(s->origin), &p, end);
        if (ok && s->origin && r->status == 204)
            ok = !lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-methods:",
                                              (const unsigned char *)cors_methods, (int)strlen(cors_methods),
                                              &p, end) &&
                 !lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-headers:",
                                              (const unsigned char *)cors_headers, (int)strlen(cors_headers),
                                              &p, end) &&
                 !lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-max-age:",
                                              (const unsigned char *)"86400", 5, &p, end);
        if (ok && r->status == 405)
            ok = !lws_add_http_header_by_name(
                wsi, (const unsigned char *)"allow:", (const unsigned char *)r->allow, (int)strlen(r->allow),
                &p, end);
        if (ok && r->status == 503)
            ok = !lws_add_http_header_by_name(
                wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"1", 1, &p, end);
        /* The page is revalidated on every load, so a rebuilt server is never answered from a stale cache. */
        if (ok && r->asset)
            ok = !lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                              (const unsigned char *)"no-cache", 8, &p, end) &&
                 !lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                              (const unsigned char *)"nosniff", 7, &p, end);
        if (ok && streaming)
            ok = !lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                              (const unsigned char *)"no-cache", 8, &p, end);
        if (ok && r->close_after)
            ok = !lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                               &p, end);
        if (!ok || lws_finalize_write_http_header(wsi, start, &p, end)) {
            *close = 1;
            return;
        }
        r->headers_sent = true;
        metrics_http(&s->metrics, route_label(r), r->status);
        core_debug("serve: -> %d (%zu bytes)", r->status, r->out_len);
        if (r->out_len || streaming) {
            lws_callback_on_writable(wsi);
            return;
        }
    } else if (streaming) {
        write_stream(s, wsi, pss, close);
        return;
    } else {
        size_t n = r->out_len - r->sent;
        if (n > WRITE_CHUNK) n = WRITE_CHUNK;
        bool last = r->sent + n == r->out_len;
        memcpy(s->wbuf + LWS_PRE, (r->asset ? (const char *)r->asset->data : r->out) + r->sent, n);
        if (lws_write(wsi, s->wbuf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n) {
            *close = 1;
            return;
        }
        r->sent += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return;
        }
    }
    /* The whole response is out. */
    bool close_after = r->close_after;
    detach(pss);
    if (close_after || lws_http_transaction_completed(wsi)) *close = 1;
}

/* Writes a small JSON error response at once and reports that the connection was answered (for refusing a
 * WebSocket upgrade, where lws expects the response to be complete when the callback returns). */
static int refuse_upgrade(struct srv *s, struct lws *wsi, int status, const char *msg)
{
    json_t *j = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type",
                          status == 401 ? "authentication_error" : "invalid_request_error", "param", "code");
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    size_t blen = body ? strlen(body) : 0;
    metrics_http(&s->metrics, "/v1/realtime", status);
    /* Written whole, as HTTP/1.1 (what WebSocket clients expect in answer to their upgrade request). */
    const char *reason = status == 401 ? "Unauthorized" : status == 403 ? "Forbidden" : status == 404 ? "Not Found"
                         : status == 503 ? "Service Unavailable" : "Bad Request";
    unsigned char buf[LWS_PRE + 2048];
    int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n%s",
                     status, reason, blen, status == 503 ? "Retry-After: 1\r\n" : "", body ? body : "");
    free(body);
    if (n < 0 || (size_t)n >= sizeof buf - LWS_PRE ||
        lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS) != n)
        return -1;
    core_debug("serve: upgrade refused: %d %s", status, msg);
    return 1;
}

/* The API key of a WebSocket upgrade: the Authorization header, or (browsers cannot set headers) the
 * subprotocol "openai-insecure-api-key.KEY". */
static bool ws_authorized(struct srv *s, struct lws *wsi)
{
    if (!s->api_key || authorized(s, wsi)) return true;
    char list[1024];
    if (lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) <= 0) return false;
    static const char pre[] = "openai-insecure-api-key.";
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", "))
        if (!strncmp(tok, pre, sizeof pre - 1) &&
            same_secret(tok + sizeof pre - 1, strlen(tok + sizeof pre - 1), s->api_key, strlen(s->api_key)))
            return true;
    return false;
}

/* A browser's Origin must be the server's own, or the one allowed with --origin (or "*"). Clients that are not
 * browsers send none. */
static bool origin_allowed(struct srv *s, struct lws *wsi)
{
    char origin[256], host[256];
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return true;
    if (s->origin && (!strcmp(s->origin, "*") || !strcmp(s->origin, origin))) return true;
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0) return false;
    const char *o = origin;
    if (!strncmp(o, "http://", 7)) o += 7;
    else if (!strncmp(o, "https://", 8)) o += 8;
    else return false;
    return !strcmp(o, host);
}

static int confirm_upgrade(struct srv *s, struct lws *wsi, const char *proto)
{
    if (strcmp(proto, "websocket")) return refuse_upgrade(s, wsi, 400, "only WebSocket upgrades are supported");
    if (!ws_authorized(s, wsi))
        return refuse_upgrade(s, wsi, 401,
                              "missing or wrong API key: send 'Authorization: Bearer KEY' or the subprotocol "
                              "'openai-insecure-api-key.KEY'");
    if (!origin_allowed(s, wsi))
        return refuse_upgrade(s, wsi, 403, "this web origin may not use the server (see banter serve --origin)");
    char msg[256];
    int status = rt_check_upgrade(s->rt, wsi, msg, sizeof msg);
    return status ? refuse_upgrade(s, wsi, status, msg) : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    struct srv *s = ctx ? lws_context_user(ctx) : NULL;
    struct pss *pss = user;
    int close = 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (pss->r) detach(pss);
        on_http(s, wsi, pss, in ? (const char *)in : "");
        return pss->r ? 0 : -1;
    case LWS_CALLBACK_HTTP_BODY: {
        struct req *r = pss->r;
        if (!r || r->ready || r->in_worker || !r->body) return 0; /* already answered: the body is dropped */
        if (len > r->want - r->len) {
            respond_error(r, 413, "the request body is longer than its Content-Length");
            return 0;
        }
        memcpy(r->body + r->len, in, len);
        r->len += len;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        struct req *r = pss->r;
        if (!r || r->ready || r->in_worker || !r->body) return 0;
        r->body[r->len] = 0;
        if (r->len < r->want) {
            respond_error(r, 400, "the request body is shorter than its Content-Length");
            return 0;
        }
        r->close_after = false;
        dispatch(r);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        write_response(s, wsi, pss, &close);
        return close ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        detach(pss);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s) drain_done(s);
        if (s) rt_service(s->rt);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(s, wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_TIMER:
    case LWS_CALLBACK_CLOSED:
        return s && s->rt ? rt_callback(s->rt, wsi, reason, &pss->rtc, in, len) : -1;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* The WebSocket subprotocols OpenAI's realtime clients offer ("realtime", and the beta's
 * "openai-beta.realtime-v1"); a client that offers none lands on "http", which handles WebSocket too. */
static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(struct pss), 65536, 0, NULL, 0},
    {"realtime", callback, sizeof(struct pss), 65536, 0, NULL, 0},
    {"openai-beta.realtime-v1", callback, sizeof(struct pss), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- lifetime ---- */

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    core_log(level & LLL_ERR ? BANTER_LOG_ERROR : BANTER_LOG_WARN, "libwebsockets: %.*s", (int)n, line);
}

static void stop_workers(struct srv *s)
{
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    atomic_store(&s->quitting, true);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
}

int srv_open(const struct srv_config *cfg, banter_asr *asr, struct srv **out, char *err, size_t err_len)
{
    char dummy[8];
    if (!err) err = dummy, err_len = sizeof dummy;
    err[0] = 0;
    *out = NULL;
    struct srv_config c = cfg ? *cfg : (struct srv_config){0};
    if (c.port < 0 || c.port > 65535 || c.n_workers < 0 || c.n_workers > 256 || c.max_queue < 0) {
        snprintf(err, err_len, "bad server config: port must be 0..65535, n_workers 0..256, max_queue >= 0");
        return BANTER_ERR_INVALID_ARG;
    }
    int st = BANTER_ERR_IO;
    struct srv *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->host = strdup(c.host ? c.host : "127.0.0.1");
    s->api_key = c.api_key && c.api_key[0] ? strdup(c.api_key) : NULL;
    s->origin = c.allowed_origin && c.allowed_origin[0] ? strdup(c.allowed_origin) : NULL;
    s->model_id = strdup(c.model_id ? c.model_id : "banter");
    if (!s->host || !s->model_id || (c.api_key && c.api_key[0] && !s->api_key) ||
        (c.allowed_origin && c.allowed_origin[0] && !s->origin)) {
        st = BANTER_ERR_NOMEM;
        goto fail_strings;
    }
    s->max_body = c.max_body ? c.max_body : DEFAULT_MAX_BODY;
    s->max_queue = c.max_queue ? c.max_queue : DEFAULT_QUEUE;
    s->asr = asr;
    s->llm = c.llm;
    metrics_init(&s->metrics);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->asr_lock, NULL);
    pthread_cond_init(&s->cond, NULL);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = s;
    info.protocols = protocols;
    info.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        snprintf(err, err_len, "cannot start libwebsockets");
        goto fail_ctx;
    }
    info.port = c.port;
    info.iface = s->host;
    info.vhost_name = "banter";
    s->vh = lws_create_vhost(s->ctx, &info);
    if (!s->vh) {
        snprintf(err, err_len,
                 "cannot listen on %s:%d (is the port in use, or the address not this machine's?)", s->host,
                 c.port);
        goto fail_vhost;
    }
    s->port = lws_get_vhost_listen_port(s->vh);

    struct rt_config rc = {.llm = c.llm, .asr = asr, .max_sessions = c.max_sessions, .max_message = c.max_message,
                           .idle_timeout_s = c.idle_timeout_s, .n_workers = c.rt_workers,
                           .instructions = c.instructions, .model_id = s->model_id, .metrics = &s->metrics};
    if (rt_open(&rc, s->ctx, &s->rt, err, err_len)) goto fail_vhost;

    /* Keeping one Flite handle open keeps its engine thread alive, so requests do not start and stop it. */
    banter_tts_config tc = banter_tts_config_default();
    if (banter_tts_open(&tc, &s->keep_flite, err, err_len)) goto fail_vhost;

    int n_workers = c.n_workers ? c.n_workers : DEFAULT_WORKERS;
    s->workers = calloc((size_t)n_workers, sizeof *s->workers);
    if (!s->workers) {
        st = BANTER_ERR_NOMEM;
        goto fail_workers;
    }
    for (; s->n_workers < n_workers; s->n_workers++)
        if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s)) {
            snprintf(err, err_len, "cannot start a worker thread");
            goto fail_workers;
        }
    *out = s;
    return BANTER_OK;

fail_workers:
    if (!err[0]) snprintf(err, err_len, "out of memory");
    stop_workers(s);
    free(s->workers);
    banter_tts_close(s->keep_flite);
fail_vhost:
    rt_detach_loop(s->rt);
    lws_context_destroy(s->ctx);
    rt_close(s->rt);
fail_ctx:
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->asr_lock);
    pthread_mutex_destroy(&s->lock);
    metrics_deinit(&s->metrics);
fail_strings:
    free(s->host);
    free(s->api_key);
    free(s->origin);
    free(s->model_id);
    free(s);
    if (!err[0]) snprintf(err, err_len, "out of memory");
    return st;
nomem:
    snprintf(err, err_len, "out of memory");
    return BANTER_ERR_NOMEM;
}

struct metrics *srv_metrics(struct srv *s)
{
    return &s->metrics;
}

int srv_port(const struct srv *s)
{
    return s->port;
}

int srv_run(struct srv *s)
{
    while (!atomic_load_explicit(&s->stop, memory_order_acquire))
        if (lws_service(s->ctx, 0) < 0) return BANTER_ERR_IO;
    return BANTER_OK;
}

void srv_stop(struct srv *s)
{
    atomic_store_explicit(&s->stop, true, memory_order_release);
    lws_cancel_service(s->ctx);
}

static void free_list(struct req *r)
{
    while (r) {
        struct req *next = r->next;
        req_free(r);
        r = next;
    }
}

void srv_close(struct srv *s)
{
    if (!s) return;
    /* Workers first (their current job stops at its next step), so none wakes a destroyed context; then the
     * connections, whose close callbacks orphan the requests still on the lists; then those lists. */
    stop_workers(s);
    free(s->workers);
    rt_detach_loop(s->rt);
    lws_context_destroy(s->ctx);
    rt_close(s->rt); /* the realtime connections were closed with the context: their sessions now */
    free_list(s->queue_head);
    free_list(s->done);
    banter_tts_close(s->keep_flite);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->asr_lock);
    pthread_mutex_destroy(&s->lock);
    metrics_deinit(&s->metrics);
    free(s->host);
    free(s->api_key);
    free(s->origin);
    free(s->model_id);
    free(s);
}
