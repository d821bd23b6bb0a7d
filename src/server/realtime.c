/*
 * realtime.c: the WebSocket endpoint /v1/realtime (see realtime.h for the threads and limits, and
 * docs/realtime.md for the protocol).
 *
 * A connection's life: the loop accepts the upgrade (rt_check_upgrade, then LWS_CALLBACK_ESTABLISHED creates
 * the struct rt_conn and queues it for a worker, which opens the session and sends session.created). Each complete
 * text message goes into the inbox and the connection onto the run queue (at most once); a worker takes it and
 * handles its messages in order. When the client leaves, the loop marks the connection gone; the worker that
 * takes it next closes the session (whose threads then emit nothing more) and frees it.
 *
 * Locks: conn->lock guards the inbox, the outbox, the flags and the protocol state that session events and
 * client events share (item ids, the open response). Session events arrive with the session's own lock held, so
 * the order is session lock, then conn->lock: a worker never calls a banter_session function while it holds
 * conn->lock. rt->lock guards the run queue, the connection list and the loop's wake-up.
 */
#include "server/realtime.h"

#include "audio/audio.h"
#include "core/core.h"
#include "server/codec.h"
#include "server/metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_SESSIONS 16
#define DEFAULT_MAX_MESSAGE ((size_t)16 << 20)
#define DEFAULT_IDLE_S 600
#define DEFAULT_WORKERS 2
#define MSGS_PER_TURN 8   /* messages a worker handles before letting other connections run */
#define ENGINE_RATE 16000 /* the pipeline's rate */
#define PCM_RATE 24000    /* pcm16 in and out */
#define G711_RATE 8000
#define MAX_ID 64

enum fmt { FMT_PCM16 = 0, FMT_ULAW, FMT_ALAW };

/* A message: inbox (payload at data) or outbox (LWS_PRE bytes of headroom, then the payload). */
struct msg {
    struct msg *next;
    size_t len;
    bool binary;
    unsigned char data[];
};

struct rt_conn {
    struct rt *rt;
    unsigned long serial;
    bool beta; /* the beta generation's names */

    /* Loop thread only. */
    struct lws *wsi;
    unsigned char *rx;
    size_t rx_len, rx_cap;
    bool rx_binary, rx_overflow;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    struct msg *in_head, *in_tail;
    size_t in_bytes;
    struct msg *out_head, *out_tail;
    size_t out_bytes;
    bool gone;        /* the client left: close the session and free (set by the loop thread only) */
    bool queued;      /* on the run queue, or being run */
    bool kill;        /* the loop must close the connection now */
    int kill_status;  /* its close status */
    char kill_reason[96];
    bool close_after; /* close once the outbox is written */
    /* Protocol state shared with session events. */
    unsigned long next_id;
    char user_item[MAX_ID];  /* the user item being spoken, or "" */
    char last_item[MAX_ID];  /* the conversation's last item, or "" */
    char asst_item[MAX_ID];  /* the last assistant item, for truncate */
    size_t asst_audio_ms;    /* how much audio it had */
    char partial[512];       /* the last partial transcript sent */
    bool resp_open;
    bool resp_text_only;     /* the open response has no audio */
    bool next_text_only;     /* the next response's modality (response.create; else the session's) */
    bool sess_text_only;     /* the session's modality (session.update) */
    bool resp_cancelled;
    bool cancel_requested;   /* response.cancel came for the response in progress (or about to begin) */
    bool resp_failed;
    char resp_id[MAX_ID], resp_item[MAX_ID];
    char *resp_text;         /* the reply's text so far (deltas sent) */
    size_t resp_text_len, resp_text_cap;
    char hold[4];            /* bytes of an unfinished UTF-8 character held back from a delta */
    size_t n_hold;
    char *resp_final;        /* the assistant message as it stood at REPLY_DONE */
    size_t resp_audio_samples; /* output-rate samples sent */
    double t_resp_audio;     /* wall ms of the response's first audio */
    struct audio_resampler *out_rs;
    enum fmt out_fmt;        /* read by session events; written by the worker under lock */

    /* The worker that holds the connection only. */
    banter_session *sess;
    bool opened;
    banter_session_config cfg;
    char *instructions;      /* cfg.system_prompt points here (or NULL) */
    char *voice;             /* the voice name as the client gave it (NULL = default) */
    double speed;
    int max_reply_open;      /* the session's reply limit at open: later ones can only lower it */
    bool vad;                /* server VAD (else manual turns) */
    bool create_response, interrupt_response;
    int silence_ms;
    enum fmt in_fmt;
    struct audio_resampler *in_rs;
    float *in_buf, *in_rs_buf;
    size_t in_cap, in_rs_cap;

    struct rt_conn *next;     /* rt's list, guarded by rt->lock */
    struct rt_conn *run_next; /* run queue, guarded by rt->lock */
};

struct rt {
    banter_llm *llm;
    banter_asr *asr;
    int max_sessions;
    size_t max_message;
    int idle_timeout_s;
    char *instructions;
    char *model_id;
    struct metrics *metrics;
    struct lws_context *ctx;

    pthread_mutex_t lock;
    pthread_cond_t cond;      /* the run queue has work, or quit */
    pthread_cond_t freed_cond; /* a connection was freed */
    bool quit;
    bool loop_detached;
    struct rt_conn *conns; /* every connection not yet freed */
    int n_conns;
    int n_sessions; /* open sessions */
    unsigned long serial;
    struct rt_conn *run_head, *run_tail;
    struct rt_conn **live; /* the loop's scratch for rt_service: [cap_live] */
    int cap_live;
    pthread_t *workers;
    int n_workers;
};

/* ---- output ---- */

/* Wakes the loop to write (any thread). */
static void wake(struct rt *rt)
{
    pthread_mutex_lock(&rt->lock);
    if (!rt->loop_detached) lws_cancel_service(rt->ctx);
    pthread_mutex_unlock(&rt->lock);
}

/* Queues a serialized event (c->lock held). A client that does not read gets its connection closed. */
static void push_text_locked(struct rt_conn *c, const char *text, size_t len)
{
    if (c->gone || c->kill) return;
    if (c->out_bytes + len > RT_MAX_OUTBOX) {
        c->kill = true;
        c->kill_status = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        snprintf(c->kill_reason, sizeof c->kill_reason, "the client does not read its events");
        core_warn("realtime: connection %lu does not read (%zu bytes waiting); closing it", c->serial,
                  c->out_bytes);
        return;
    }
    struct msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) {
        c->kill = true;
        c->kill_status = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
        snprintf(c->kill_reason, sizeof c->kill_reason, "out of memory");
        return;
    }
    m->next = NULL;
    m->len = len;
    m->binary = false;
    memcpy(m->data + LWS_PRE, text, len);
    if (c->out_tail) c->out_tail->next = m;
    else c->out_head = m;
    c->out_tail = m;
    c->out_bytes += len;
}

/* Serializes ev (which it takes), adds "event_id" and queues it (c->lock held). */
static void send_locked(struct rt_conn *c, json_t *ev)
{
    if (!ev) return;
    char id[MAX_ID];
    snprintf(id, sizeof id, "event_%lu_%lu", c->serial, ++c->next_id);
    json_object_set_new(ev, "event_id", json_string(id));
    size_t n = json_dumpb(ev, NULL, 0, JSON_COMPACT);
    char *buf = n ? malloc(n) : NULL;
    if (buf && json_dumpb(ev, buf, n, JSON_COMPACT) == n) push_text_locked(c, buf, n);
    free(buf);
    json_decref(ev);
}

static void send_event(struct rt_conn *c, json_t *ev)
{
    pthread_mutex_lock(&c->lock);
    send_locked(c, ev);
    pthread_mutex_unlock(&c->lock);
    wake(c->rt);
}

/* An error event: type is OpenAI's error type, code a short machine-readable code; code, param and event_id
 * may be NULL. */
static json_t *error_json(const char *type, const char *code, const char *param, const char *event_id,
                          const char *msg)
{
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "code", code ? json_string(code) : json_null());
    json_t *jm = json_string(msg);
    json_object_set_new(e, "message", jm ? jm : json_string("(the message is not valid UTF-8)"));
    json_object_set_new(e, "param", param ? json_string(param) : json_null());
    json_object_set_new(e, "event_id", event_id ? json_string(event_id) : json_null());
    return json_pack("{s:s,s:o}", "type", "error", "error", e);
}

static void send_error(struct rt_conn *c, const char *type, const char *code, const char *param, const char *event_id,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(struct rt_conn *c, const char *type, const char *code, const char *param, const char *event_id,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_debug("realtime: connection %lu: error: %s", c->serial, msg);
    if (c->rt->metrics) metrics_error(c->rt->metrics, !strcmp(type, "server_error") ? "internal" : "invalid_request");
    send_event(c, error_json(type, code, param, event_id, msg));
}

static void new_id(struct rt_conn *c, const char *prefix, char *out)
{
    snprintf(out, MAX_ID, "%s_%lu_%lu", prefix, c->serial, ++c->next_id);
}

/* ---- formats ---- */

static int fmt_rate(enum fmt f)
{
    return f == FMT_PCM16 ? PCM_RATE : G711_RATE;
}

static const char *fmt_beta(enum fmt f)
{
    return f == FMT_PCM16 ? "pcm16" : f == FMT_ULAW ? "g711_ulaw" : "g711_alaw";
}

static const char *fmt_ga(enum fmt f)
{
    return f == FMT_PCM16 ? "audio/pcm" : f == FMT_ULAW ? "audio/pcmu" : "audio/pcma";
}

static json_t *fmt_ga_json(enum fmt f)
{
    json_t *j = json_pack("{s:s}", "type", fmt_ga(f));
    if (f == FMT_PCM16) json_object_set_new(j, "rate", json_integer(PCM_RATE));
    return j;
}

static bool parse_fmt_beta(const char *s, enum fmt *f)
{
    if (!strcmp(s, "pcm16")) *f = FMT_PCM16;
    else if (!strcmp(s, "g711_ulaw")) *f = FMT_ULAW;
    else if (!strcmp(s, "g711_alaw")) *f = FMT_ALAW;
    else return false;
    return true;
}

/* GA: {"type": "audio/pcm", "rate": 24000} | {"type": "audio/pcmu"} | {"type": "audio/pcma"}. */
static bool parse_fmt_ga(json_t *j, enum fmt *f, char *why, size_t why_len)
{
    const char *t = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !t) {
        snprintf(why, why_len, "a format is an object with a \"type\"");
        return false;
    }
    if (!strcmp(t, "audio/pcm")) {
        json_t *r = json_object_get(j, "rate");
        if (r && json_integer_value(r) != PCM_RATE) {
            snprintf(why, why_len, "audio/pcm is supported at rate 24000 only");
            return false;
        }
        *f = FMT_PCM16;
    } else if (!strcmp(t, "audio/pcmu")) {
        *f = FMT_ULAW;
    } else if (!strcmp(t, "audio/pcma")) {
        *f = FMT_ALAW;
    } else {
        snprintf(why, why_len, "unknown audio format '%s' (audio/pcm, audio/pcmu or audio/pcma)", t);
        return false;
    }
    return true;
}

/* ---- session events -> server events ---- */

static json_t *assistant_item(struct rt_conn *c, const char *status, const char *text)
{
    json_t *part;
    if (c->resp_text_only)
        part = json_pack("{s:s,s:s}", "type", c->beta ? "text" : "output_text", "text", text ? text : "");
    else
        part = json_pack("{s:s,s:s}", "type", c->beta ? "audio" : "output_audio", "transcript", text ? text : "");
    json_t *content = json_array();
    if (text) json_array_append_new(content, part);
    else json_decref(part);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "id", c->resp_item, "object", "realtime.item", "type", "message",
                     "status", status, "role", "assistant", "content", content);
}

static json_t *user_item(const char *id, const char *transcript, bool audio)
{
    json_t *part = audio ? json_pack("{s:s,s:s}", "type", "input_audio", "transcript", transcript)
                         : json_pack("{s:s,s:s}", "type", "input_text", "text", transcript);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:[o]}", "id", id, "object", "realtime.item", "type", "message",
                     "status", "completed", "role", "user", "content", part);
}

/* A new item entered the conversation (c->lock held): created (beta) / added and done (GA). */
static void item_added_locked(struct rt_conn *c, json_t *item, bool done)
{
    json_t *prev = c->last_item[0] ? json_string(c->last_item) : json_null();
    if (c->beta) {
        send_locked(c, json_pack("{s:s,s:o,s:O}", "type", "conversation.item.created", "previous_item_id", prev,
                                 "item", item));
    } else {
        send_locked(c, json_pack("{s:s,s:o,s:O}", "type", "conversation.item.added", "previous_item_id", prev,
                                 "item", item));
        if (done) send_locked(c, json_pack("{s:s,s:O}", "type", "conversation.item.done", "item", item));
    }
    snprintf(c->last_item, sizeof c->last_item, "%s", json_string_value(json_object_get(item, "id")));
    json_decref(item);
}

static json_t *part_json(struct rt_conn *c, const char *text)
{
    if (c->resp_text_only) return json_pack("{s:s,s:s}", "type", c->beta ? "text" : "output_text", "text", text);
    return json_pack("{s:s,s:s}", "type", c->beta ? "audio" : "output_audio", "transcript", text);
}

/* Opens the response the session's reply events belong to, if none is open (c->lock held). */
static void ensure_response(struct rt_conn *c)
{
    if (c->resp_open) return;
    c->resp_open = true;
    c->resp_text_only = c->next_text_only;
    c->resp_cancelled = c->resp_failed = false;
    c->resp_text_len = 0;
    c->n_hold = 0;
    free(c->resp_final);
    c->resp_final = NULL;
    c->resp_audio_samples = 0;
    c->t_resp_audio = 0;
    audio_resampler_close(c->out_rs);
    c->out_rs = audio_resampler_open(ENGINE_RATE, fmt_rate(c->out_fmt), -1);
    new_id(c, "resp", c->resp_id);
    new_id(c, "item", c->resp_item);
    send_locked(c, json_pack("{s:s,s:{s:s,s:s,s:s,s:[],s:n}}", "type", "response.created", "response", "id",
                             c->resp_id, "object", "realtime.response", "status", "in_progress", "output", "usage"));
    send_locked(c, json_pack("{s:s,s:s,s:i,s:o}", "type", "response.output_item.added", "response_id", c->resp_id,
                             "output_index", 0, "item", assistant_item(c, "in_progress", NULL)));
    item_added_locked(c, assistant_item(c, "in_progress", NULL), false);
    send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:o}", "type", "response.content_part.added", "response_id",
                             c->resp_id, "item_id", c->resp_item, "output_index", 0, "content_index", 0, "part",
                             part_json(c, "")));
}

/* Length of the longest prefix of s[0, n) that does not end inside a UTF-8 character. */
static size_t utf8_complete(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--, back++;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return back + 1 >= need ? n : i - 1;
}

static void on_reply_text(struct rt_conn *c, const char *piece)
{
    ensure_response(c);
    size_t len = strlen(piece);
    size_t need = c->resp_text_len + c->n_hold + len + 1;
    if (need > c->resp_text_cap) {
        size_t cap = c->resp_text_cap ? c->resp_text_cap : 256;
        while (cap < need) cap *= 2;
        char *p = realloc(c->resp_text, cap);
        if (!p) return;
        c->resp_text = p;
        c->resp_text_cap = cap;
    }
    /* The delta starts with what was held back. */
    char *d = c->resp_text + c->resp_text_len;
    memcpy(d, c->hold, c->n_hold);
    memcpy(d + c->n_hold, piece, len);
    size_t total = c->n_hold + len;
    size_t ok = utf8_complete(d, total);
    c->n_hold = total - ok;
    memcpy(c->hold, d + ok, c->n_hold);
    if (!ok) return;
    json_t *delta = json_stringn(d, ok);
    if (!delta) delta = json_string("\xef\xbf\xbd"); /* invalid UTF-8 from the model: a replacement character */
    else c->resp_text_len += ok;
    const char *type = c->resp_text_only ? (c->beta ? "response.text.delta" : "response.output_text.delta")
                                         : (c->beta ? "response.audio_transcript.delta"
                                                    : "response.output_audio_transcript.delta");
    send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:o}", "type", type, "response_id", c->resp_id, "item_id",
                             c->resp_item, "output_index", 0, "content_index", 0, "delta", delta));
}

static void on_audio(struct rt_conn *c, const float *x, size_t n)
{
    ensure_response(c);
    if (!c->out_rs || n == 0) return;
    size_t cap = audio_resample_max_out(c->out_rs, n);
    float *y = malloc(cap * sizeof *y);
    size_t bytes_per = c->out_fmt == FMT_PCM16 ? 2 : 1;
    unsigned char *raw = y ? malloc(cap * bytes_per + 1) : NULL;
    char *b64 = raw ? malloc(base64_encoded_len(cap * bytes_per) + 1) : NULL;
    if (!b64) goto out;
    size_t m = audio_resample(c->out_rs, x, n, y, cap);
    if (m == 0) goto out;
    for (size_t i = 0; i < m; i++) {
        float v = y[i] * 32768.0f;
        int16_t s = v >= 32767.0f ? 32767 : v <= -32768.0f ? -32768 : (int16_t)v;
        if (c->out_fmt == FMT_PCM16) {
            raw[2 * i] = (unsigned char)(s & 0xff);
            raw[2 * i + 1] = (unsigned char)((uint16_t)s >> 8);
        } else {
            raw[i] = c->out_fmt == FMT_ULAW ? g711_ulaw_encode(s) : g711_alaw_encode(s);
        }
    }
    size_t bl = base64_encode(raw, m * bytes_per, b64);
    if (c->t_resp_audio == 0) c->t_resp_audio = core_time_ms();
    c->resp_audio_samples += m;
    send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s%}", "type", c->beta ? "response.audio.delta"
                                                                        : "response.output_audio.delta",
                             "response_id", c->resp_id, "item_id", c->resp_item, "output_index", 0, "content_index",
                             0, "delta", b64, bl));
out:
    free(y);
    free(raw);
    free(b64);
}

static json_t *turn_json(const banter_turn_stats *t)
{
    return json_pack("{s:i,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:i,s:i,s:i,s:I,s:b,s:b}", "turn",
                     t->turn, "speech_end_pos", (json_int_t)t->speech_end_pos, "endpoint_pos",
                     (json_int_t)t->endpoint_pos, "endpoint_delay_ms", t->endpoint_delay_ms, "asr_final_ms",
                     t->asr_final_ms, "first_token_ms", t->first_token_ms, "first_chunk_ms", t->first_chunk_ms,
                     "first_audio_ms", t->first_audio_ms, "processing_ms", t->processing_ms, "total_ms", t->total_ms,
                     "reply_ms", t->reply_ms, "cpu_ms", t->cpu_ms, "n_prompt", t->n_prompt, "n_prefilled",
                     t->n_prefilled, "n_speculated", t->n_speculated, "n_generated", t->n_generated,
                     "n_reply_samples", (json_int_t)t->n_reply_samples, "interrupted", t->interrupted, "failed",
                     t->failed);
}

/* The reply's turn ended: close its response (c->lock held). */
static void on_turn(struct rt_conn *c, const banter_turn_stats *t)
{
    ensure_response(c);
    const char *final = c->resp_final ? c->resp_final : "";
    json_t *jfinal = json_string(final);
    if (!jfinal) jfinal = json_string("");
    const char *text = json_string_value(jfinal);
    const char *status = t->failed || c->resp_failed ? "failed"
                         : t->interrupted || c->resp_cancelled ? "cancelled"
                                                              : "completed";
    if (c->resp_text_only) {
        send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s}", "type",
                                 c->beta ? "response.text.done" : "response.output_text.done", "response_id",
                                 c->resp_id, "item_id", c->resp_item, "output_index", 0, "content_index", 0, "text",
                                 text));
    } else {
        send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i}", "type",
                                 c->beta ? "response.audio.done" : "response.output_audio.done", "response_id",
                                 c->resp_id, "item_id", c->resp_item, "output_index", 0, "content_index", 0));
        send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:s}", "type",
                                 c->beta ? "response.audio_transcript.done" : "response.output_audio_transcript.done",
                                 "response_id", c->resp_id, "item_id", c->resp_item, "output_index", 0,
                                 "content_index", 0, "transcript", text));
    }
    send_locked(c, json_pack("{s:s,s:s,s:s,s:i,s:i,s:o}", "type", "response.content_part.done", "response_id",
                             c->resp_id, "item_id", c->resp_item, "output_index", 0, "content_index", 0, "part",
                             part_json(c, text)));
    const char *item_status = !strcmp(status, "completed") ? "completed" : "incomplete";
    send_locked(c, json_pack("{s:s,s:s,s:i,s:o}", "type", "response.output_item.done", "response_id", c->resp_id,
                             "output_index", 0, "item", assistant_item(c, item_status, text)));
    if (!c->beta)
        send_locked(c, json_pack("{s:s,s:o}", "type", "conversation.item.done", "item",
                                 assistant_item(c, item_status, text)));
    json_t *details = json_null();
    if (!strcmp(status, "cancelled"))
        details = json_pack("{s:s,s:s}", "type", "cancelled", "reason",
                            c->cancel_requested ? "client_cancelled" : "turn_detected");
    else if (!strcmp(status, "failed"))
        details = json_pack("{s:s,s:{s:s,s:s}}", "type", "failed", "error", "type", "server_error", "code",
                            "llm_failed");
    json_t *usage = json_pack("{s:i,s:i,s:i}", "total_tokens", t->n_prompt + t->n_generated, "input_tokens",
                              t->n_prompt, "output_tokens", t->n_generated);
    send_locked(c, json_pack("{s:s,s:{s:s,s:s,s:s,s:o,s:[o],s:o}}", "type", "response.done", "response", "id",
                             c->resp_id, "object", "realtime.response", "status", status, "status_details", details,
                             "output", assistant_item(c, item_status, text), "usage", usage));
    send_locked(c, json_pack("{s:s,s:o}", "type", "banter.turn", "turn", turn_json(t)));
    json_decref(jfinal);
    if (c->resp_final && *c->resp_final) {
        snprintf(c->asst_item, sizeof c->asst_item, "%s", c->resp_item);
        c->asst_audio_ms = c->resp_audio_samples * 1000 / (size_t)fmt_rate(c->out_fmt);
    } else {
        c->asst_item[0] = 0;
    }
    c->resp_open = false;
    c->cancel_requested = false;
    c->next_text_only = c->sess_text_only;
}

static void on_user_text(struct rt_conn *c, const char *text)
{
    if (!c->user_item[0]) new_id(c, "item", c->user_item);
    json_t *jt = json_string(text);
    if (!jt) jt = json_string("");
    json_t *prev = c->last_item[0] ? json_string(c->last_item) : json_null();
    send_locked(c, json_pack("{s:s,s:o,s:s}", "type", "input_audio_buffer.committed", "previous_item_id", prev,
                             "item_id", c->user_item));
    item_added_locked(c, user_item(c->user_item, json_string_value(jt), true), true);
    send_locked(c, json_pack("{s:s,s:s,s:i,s:O}", "type", "conversation.item.input_audio_transcription.completed",
                             "item_id", c->user_item, "content_index", 0, "transcript", jt));
    json_decref(jt);
    c->user_item[0] = 0;
    c->partial[0] = 0;
}

static void on_partial(struct rt_conn *c, const char *p)
{
    if (!c->user_item[0]) new_id(c, "item", c->user_item);
    size_t old = strlen(c->partial), n = strlen(p);
    /* Deltas can only add: a hypothesis that revises earlier words waits for the final transcript. */
    if (n <= old || strncmp(p, c->partial, old)) {
        if (n < sizeof c->partial && strncmp(p, c->partial, old)) snprintf(c->partial, sizeof c->partial, "%s", p);
        return;
    }
    size_t ok = utf8_complete(p + old, n - old);
    json_t *d = json_stringn(p + old, ok);
    if (!d) return;
    send_locked(c, json_pack("{s:s,s:s,s:i,s:o}", "type", "conversation.item.input_audio_transcription.delta",
                             "item_id", c->user_item, "content_index", 0, "delta", d));
    if (n < sizeof c->partial) memcpy(c->partial, p, old + ok), c->partial[old + ok] = 0;
}

static void on_session_event(const banter_event *ev, void *user)
{
    struct rt_conn *c = user;
    pthread_mutex_lock(&c->lock);
    double now;
    switch (ev->type) {
    case BANTER_EVENT_SPEECH_START:
        new_id(c, "item", c->user_item);
        c->partial[0] = 0;
        send_locked(c, json_pack("{s:s,s:I,s:s}", "type", "input_audio_buffer.speech_started", "audio_start_ms",
                                 (json_int_t)(ev->sample_pos / (ENGINE_RATE / 1000)), "item_id", c->user_item));
        break;
    case BANTER_EVENT_SPEECH_END:
        if (!c->user_item[0]) new_id(c, "item", c->user_item);
        send_locked(c, json_pack("{s:s,s:I,s:s}", "type", "input_audio_buffer.speech_stopped", "audio_end_ms",
                                 (json_int_t)(ev->sample_pos / (ENGINE_RATE / 1000)), "item_id", c->user_item));
        break;
    case BANTER_EVENT_PARTIAL:
        if (ev->text) on_partial(c, ev->text);
        break;
    case BANTER_EVENT_USER_TEXT:
        if (ev->text) on_user_text(c, ev->text);
        break;
    case BANTER_EVENT_NO_TURN:
        c->user_item[0] = 0;
        c->partial[0] = 0;
        break;
    case BANTER_EVENT_REPLY_TEXT:
        if (ev->text) on_reply_text(c, ev->text);
        break;
    case BANTER_EVENT_AUDIO:
        on_audio(c, ev->samples, ev->n_samples);
        break;
    case BANTER_EVENT_BARGE_IN:
        if (c->resp_open) {
            c->resp_cancelled = true;
        } else if (c->asst_item[0]) {
            /* A reply already complete was still being played: its message was cut at the clock's estimate. */
            now = core_time_ms();
            json_int_t ms = (json_int_t)c->asst_audio_ms;
            if (c->t_resp_audio > 0 && now - c->t_resp_audio < (double)ms) ms = (json_int_t)(now - c->t_resp_audio);
            send_locked(c, json_pack("{s:s,s:s,s:i,s:I}", "type", "conversation.item.truncated", "item_id",
                                     c->asst_item, "content_index", 0, "audio_end_ms", ms));
        }
        break;
    case BANTER_EVENT_REPLY_DONE:
        free(c->resp_final);
        c->resp_final = strdup(ev->text ? ev->text : "");
        break;
    case BANTER_EVENT_TURN:
        if (ev->turn) {
            on_turn(c, ev->turn);
            if (c->rt->metrics) metrics_turn(c->rt->metrics, ev->turn);
        }
        break;
    case BANTER_EVENT_ERROR: {
        if (c->resp_open) c->resp_failed = true;
        if (c->rt->metrics) metrics_error(c->rt->metrics, "session");
        send_locked(c, error_json("server_error", banter_status_str(ev->status), NULL, NULL,
                                  ev->text ? ev->text : "error"));
        break;
    }
    default:
        break;
    }
    pthread_mutex_unlock(&c->lock);
    wake(c->rt);
}

/* ---- the session object ---- */

static json_t *turn_detection_json(struct rt_conn *c)
{
    if (!c->vad) return json_null();
    return json_pack("{s:s,s:f,s:i,s:i,s:b,s:b}", "type", "server_vad", "threshold", 0.5, "prefix_padding_ms", 300,
                     "silence_duration_ms", c->silence_ms, "create_response", c->create_response,
                     "interrupt_response", c->interrupt_response);
}

static json_t *session_json(struct rt_conn *c)
{
    char id[MAX_ID];
    snprintf(id, sizeof id, "sess_%lu", c->serial);
    const char *instr = c->instructions ? c->instructions : c->rt->instructions ? c->rt->instructions : "";
    json_t *ji = json_string(instr);
    if (!ji) ji = json_string("");
    const char *voice = c->voice ? c->voice : "slt";
    json_t *mods = c->cfg.text_only ? json_pack("[s]", "text") : json_pack("[s,s]", "audio", "text");
    if (c->beta)
        return json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:s,s:s,s:o,s:o,s:f,s:i}", "id", id, "object", "realtime.session",
                         "model", c->rt->model_id, "modalities", mods, "instructions", ji, "voice", voice,
                         "input_audio_format", fmt_beta(c->in_fmt), "output_audio_format", fmt_beta(c->out_fmt),
                         "input_audio_transcription", json_pack("{s:s}", "model", "banter"), "turn_detection",
                         turn_detection_json(c), "temperature", 0.8, "max_response_output_tokens",
                         c->cfg.max_reply_tokens);
    json_decref(mods);
    mods = c->cfg.text_only ? json_pack("[s]", "text") : json_pack("[s]", "audio");
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:{s:{s:o,s:o,s:{s:s}},s:{s:o,s:s,s:f}},s:i}", "type", "realtime",
                     "object", "realtime.session", "id", id, "model", c->rt->model_id, "output_modalities", mods,
                     "instructions", ji, "audio", "input", "format", fmt_ga_json(c->in_fmt), "turn_detection",
                     turn_detection_json(c), "transcription", "model", "banter", "output", "format",
                     fmt_ga_json(c->out_fmt), "voice", voice, "speed", c->speed, "max_output_tokens",
                     c->cfg.max_reply_tokens);
}

/* ---- client events ---- */

/* The engine and voice a client's voice name means. */
static void set_voice(const char *voice, banter_tts_config *tc)
{
    /* OpenAI's voice names have no counterpart here: they get the default voice, so their clients just work. */
    static const char *const openai_voices[] = {"alloy", "ash",   "ballad", "coral", "echo",  "fable", "onyx",
                                                "nova",  "sage",  "shimmer", "verse", "marin", "cedar"};
    tc->engine = "espeak"; /* any other name is an eSpeak NG voice (or refused by it) */
    tc->voice = voice;
    if (!strcmp(voice, "slt") || !strcmp(voice, "kal16")) tc->engine = "flite";
    for (size_t i = 0; i < sizeof openai_voices / sizeof *openai_voices; i++)
        if (!strcmp(voice, openai_voices[i])) {
            tc->engine = "flite";
            tc->voice = "slt";
        }
}

/* obj's "modalities" (beta) or "output_modalities" (GA), when present: ["text"] means text only; any list with
 * "audio" means audio with its transcript. Returns false after an error event. */
static bool parse_modalities(struct rt_conn *c, json_t *obj, const char *where, const char *eid, bool *text_only)
{
    json_t *m = json_object_get(obj, "modalities");
    if (!m) m = json_object_get(obj, "output_modalities");
    if (!m) return true;
    bool has_audio = false, ok = json_is_array(m) && json_array_size(m) > 0;
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || (strcmp(s, "audio") && strcmp(s, "text"))) ok = false;
        else if (!strcmp(s, "audio")) has_audio = true;
    }
    if (!ok) {
        char param[32];
        snprintf(param, sizeof param, "%s.modalities", where);
        send_error(c, "invalid_request_error", "invalid_value", param, eid,
                   "modalities must be [\"text\"], [\"audio\"] or [\"audio\", \"text\"]");
        return false;
    }
    *text_only = !has_audio;
    return true;
}

/* session.update: everything is checked before anything changes. */
static void handle_session_update(struct rt_conn *c, json_t *root, const char *eid)
{
    json_t *sess = json_object_get(root, "session");
    if (!json_is_object(sess)) {
        send_error(c, "invalid_request_error", "invalid_value", "session", eid, "'session' must be an object");
        return;
    }
    char why[160];
    banter_session_config cfg = c->cfg;
    enum fmt in_fmt = c->in_fmt, out_fmt = c->out_fmt;
    bool vad = c->vad, create = c->create_response, interrupt = c->interrupt_response;
    int silence = c->silence_ms;
    double speed = c->speed;
    const char *instructions = NULL, *voice = NULL;

    json_t *j = json_object_get(sess, "instructions");
    if (j && !json_is_null(j)) {
        if (!json_is_string(j) || json_string_length(j) > 65536) {
            send_error(c, "invalid_request_error", "invalid_value", "session.instructions", eid,
                       "'instructions' must be a string of at most 64 KiB");
            return;
        }
        instructions = json_string_value(j);
    }
    json_t *audio = json_object_get(sess, "audio");
    json_t *ain = json_is_object(audio) ? json_object_get(audio, "input") : NULL;
    json_t *aout = json_is_object(audio) ? json_object_get(audio, "output") : NULL;
    j = json_object_get(sess, "voice");
    if (!j && json_is_object(aout)) j = json_object_get(aout, "voice");
    if (j) {
        if (!json_is_string(j) || json_string_length(j) == 0 || json_string_length(j) > 64) {
            send_error(c, "invalid_request_error", "invalid_value", "session.voice", eid,
                       "'voice' must be a voice name: slt or kal16 (Flite), an eSpeak NG voice, or an OpenAI voice "
                       "name (which gets slt)");
            return;
        }
        voice = json_string_value(j);
    }
    j = json_object_get(sess, "input_audio_format");
    if (j && (!json_is_string(j) || !parse_fmt_beta(json_string_value(j), &in_fmt))) {
        send_error(c, "invalid_request_error", "invalid_value", "session.input_audio_format", eid,
                   "'input_audio_format' must be \"pcm16\", \"g711_ulaw\" or \"g711_alaw\"");
        return;
    }
    j = json_object_get(sess, "output_audio_format");
    if (j && (!json_is_string(j) || !parse_fmt_beta(json_string_value(j), &out_fmt))) {
        send_error(c, "invalid_request_error", "invalid_value", "session.output_audio_format", eid,
                   "'output_audio_format' must be \"pcm16\", \"g711_ulaw\" or \"g711_alaw\"");
        return;
    }
    if (json_is_object(ain) && (j = json_object_get(ain, "format")) && !parse_fmt_ga(j, &in_fmt, why, sizeof why)) {
        send_error(c, "invalid_request_error", "invalid_value", "session.audio.input.format", eid, "%s", why);
        return;
    }
    if (json_is_object(aout) && (j = json_object_get(aout, "format")) &&
        !parse_fmt_ga(j, &out_fmt, why, sizeof why)) {
        send_error(c, "invalid_request_error", "invalid_value", "session.audio.output.format", eid, "%s", why);
        return;
    }
    if (json_is_object(aout) && (j = json_object_get(aout, "speed"))) {
        double v = json_number_value(j);
        if (!json_is_number(j) || v < 0.5 || v > 2.5) {
            send_error(c, "invalid_request_error", "invalid_value", "session.audio.output.speed", eid,
                       "'speed' must be a number from 0.5 to 2.5");
            return;
        }
        speed = v;
    }
    /* turn_detection: null (manual turns) or an object. */
    json_t *td = json_object_get(sess, "turn_detection");
    const char *td_param = "session.turn_detection";
    if (!td && json_is_object(ain)) {
        td = json_object_get(ain, "turn_detection");
        td_param = "session.audio.input.turn_detection";
    }
    if (td) {
        if (json_is_null(td)) {
            vad = false;
        } else if (!json_is_object(td)) {
            send_error(c, "invalid_request_error", "invalid_value", td_param, eid,
                       "'turn_detection' must be null or an object");
            return;
        } else {
            const char *type = json_string_value(json_object_get(td, "type"));
            if (type && strcmp(type, "server_vad") && strcmp(type, "semantic_vad")) {
                send_error(c, "invalid_request_error", "invalid_value", td_param, eid,
                           "turn_detection type '%s' is not supported (server_vad or semantic_vad)", type);
                return;
            }
            vad = true;
            json_t *x = json_object_get(td, "silence_duration_ms");
            if (x) {
                if (!json_is_integer(x) || json_integer_value(x) < 100 || json_integer_value(x) > 10000) {
                    send_error(c, "invalid_request_error", "invalid_value", td_param, eid,
                               "'silence_duration_ms' must be an integer from 100 to 10000");
                    return;
                }
                silence = (int)json_integer_value(x);
            }
            if ((x = json_object_get(td, "create_response"))) {
                if (!json_is_boolean(x)) {
                    send_error(c, "invalid_request_error", "invalid_value", td_param, eid,
                               "'create_response' must be a boolean");
                    return;
                }
                create = json_is_true(x);
            }
            if ((x = json_object_get(td, "interrupt_response"))) {
                if (!json_is_boolean(x)) {
                    send_error(c, "invalid_request_error", "invalid_value", td_param, eid,
                               "'interrupt_response' must be a boolean");
                    return;
                }
                interrupt = json_is_true(x);
            }
        }
    }
    j = json_object_get(sess, "max_response_output_tokens");
    const char *mparam = "session.max_response_output_tokens";
    if (!j) {
        j = json_object_get(sess, "max_output_tokens");
        mparam = "session.max_output_tokens";
    }
    if (j) {
        json_int_t v = json_integer_value(j);
        const char *inf = json_string_value(j);
        if (inf && !strcmp(inf, "inf")) {
            cfg.max_reply_tokens = 65536;
        } else if (json_is_integer(j) && v >= 1 && v <= 65536) {
            cfg.max_reply_tokens = (int)v;
        } else {
            send_error(c, "invalid_request_error", "invalid_value", mparam, eid,
                       "the reply limit must be an integer from 1 to 65536, or \"inf\"");
            return;
        }
    }
    if (!parse_modalities(c, sess, "session", eid, &cfg.text_only)) return;

    /* Apply: the session first (it may refuse the voice), then our side. */
    char *new_instr = instructions ? strdup(instructions) : NULL;
    char *new_voice = voice ? strdup(voice) : NULL;
    if ((instructions && !new_instr) || (voice && !new_voice)) {
        free(new_instr);
        free(new_voice);
        send_error(c, "server_error", "out_of_memory", NULL, eid, "out of memory");
        return;
    }
    if (instructions) cfg.system_prompt = new_instr;
    if (voice) set_voice(new_voice, &cfg.tts);
    cfg.tts.rate = speed == 1.0 ? 0 : (int)(175 * speed + 0.5);
    cfg.manual_turns = !vad;
    cfg.end_silence_ms = silence;
    cfg.no_auto_reply = vad && !create;
    cfg.no_barge_in = vad && !interrupt;
    char err[256] = "";
    banter_status st = banter_session_update(c->sess, &cfg, err, sizeof err);
    if (st) {
        free(new_instr);
        free(new_voice);
        send_error(c, "invalid_request_error", "invalid_value", voice ? "session.voice" : "session", eid,
                   "cannot apply the settings: %s", err[0] ? err : banter_status_str(st));
        return;
    }
    if (instructions) {
        free(c->instructions);
        c->instructions = new_instr;
    }
    if (voice) {
        free(c->voice);
        c->voice = new_voice;
    }
    if (cfg.max_reply_tokens > c->max_reply_open) cfg.max_reply_tokens = c->max_reply_open; /* as the session does */
    c->cfg = cfg;
    c->vad = vad;
    c->create_response = create;
    c->interrupt_response = interrupt;
    c->silence_ms = silence;
    c->speed = speed;
    if (in_fmt != c->in_fmt) {
        audio_resampler_close(c->in_rs);
        c->in_rs = NULL;
        c->in_fmt = in_fmt;
    }
    pthread_mutex_lock(&c->lock);
    c->out_fmt = out_fmt; /* from the next response */
    c->sess_text_only = cfg.text_only;
    if (!c->resp_open) c->next_text_only = cfg.text_only;
    send_locked(c, json_pack("{s:s,s:o}", "type", "session.updated", "session", session_json(c)));
    pthread_mutex_unlock(&c->lock);
    wake(c->rt);
}

/* Decodes audio in the input format to 16 kHz float into c->in_buf; returns the sample count or -1. */
static long decode_audio(struct rt_conn *c, const unsigned char *raw, size_t n)
{
    size_t count = c->in_fmt == FMT_PCM16 ? n / 2 : n;
    if (count > c->in_cap) {
        float *p = realloc(c->in_buf, count * sizeof *p);
        if (!p) return -1;
        c->in_buf = p;
        c->in_cap = count;
    }
    for (size_t i = 0; i < count; i++) {
        int16_t s = c->in_fmt == FMT_PCM16 ? (int16_t)(uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8)
                    : c->in_fmt == FMT_ULAW ? g711_ulaw_decode(raw[i])
                                            : g711_alaw_decode(raw[i]);
        c->in_buf[i] = (float)s / 32768.0f;
    }
    if (!c->in_rs) c->in_rs = audio_resampler_open(fmt_rate(c->in_fmt), ENGINE_RATE, -1);
    if (!c->in_rs) return -1;
    size_t cap = audio_resample_max_out(c->in_rs, count);
    if (cap > c->in_rs_cap) {
        float *p = realloc(c->in_rs_buf, cap * sizeof *p);
        if (!p) return -1;
        c->in_rs_buf = p;
        c->in_rs_cap = cap;
    }
    return (long)audio_resample(c->in_rs, c->in_buf, count, c->in_rs_buf, cap);
}

static void handle_append(struct rt_conn *c, json_t *root, const char *eid)
{
    json_t *a = json_object_get(root, "audio");
    if (!json_is_string(a)) {
        send_error(c, "invalid_request_error", "invalid_value", "audio", eid,
                   "'audio' must be a string: base64 of audio in the session's input format (%s)",
                   c->beta ? fmt_beta(c->in_fmt) : fmt_ga(c->in_fmt));
        return;
    }
    size_t len = json_string_length(a);
    unsigned char *raw = malloc(len / 4 * 3 + 3);
    long n = raw ? base64_decode(json_string_value(a), len, raw) : -1;
    if (n < 0) {
        free(raw);
        send_error(c, "invalid_request_error", "invalid_value", "audio", eid,
                   raw ? "'audio' is not valid base64" : "out of memory");
        return;
    }
    if (c->in_fmt == FMT_PCM16 && n % 2) {
        free(raw);
        send_error(c, "invalid_request_error", "invalid_value", "audio", eid,
                   "pcm16 audio must be whole 16-bit samples (an even number of bytes), got %ld bytes", n);
        return;
    }
    long m = decode_audio(c, raw, (size_t)n);
    free(raw);
    if (m < 0) {
        send_error(c, "server_error", "out_of_memory", NULL, eid, "out of memory decoding audio");
        return;
    }
    for (long at = 0; at < m;) {
        size_t k = (size_t)(m - at) > ENGINE_RATE ? ENGINE_RATE : (size_t)(m - at);
        banter_session_process(c->sess, c->in_rs_buf + at, NULL, k);
        at += (long)k;
    }
}

static void handle_item_create(struct rt_conn *c, json_t *root, const char *eid)
{
    json_t *item = json_object_get(root, "item");
    if (!json_is_object(item)) {
        send_error(c, "invalid_request_error", "invalid_value", "item", eid, "'item' must be an object");
        return;
    }
    const char *type = json_string_value(json_object_get(item, "type"));
    if (type && strcmp(type, "message")) {
        send_error(c, "invalid_request_error", "unsupported", "item.type", eid,
                   "items of type '%s' are not supported; only messages", type);
        return;
    }
    const char *role = json_string_value(json_object_get(item, "role"));
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))) {
        send_error(c, "invalid_request_error", "invalid_value", "item.role", eid,
                   "'role' must be \"user\", \"assistant\" or \"system\"");
        return;
    }
    json_t *content = json_object_get(item, "content");
    if (!json_is_array(content) || json_array_size(content) == 0 || json_array_size(content) > 64) {
        send_error(c, "invalid_request_error", "invalid_value", "item.content", eid,
                   "'content' must be a non-empty array of text parts");
        return;
    }
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *pt = json_string_value(json_object_get(part, "type"));
        json_t *tx = json_object_get(part, "text");
        if (!pt || (strcmp(pt, "input_text") && strcmp(pt, "text") && strcmp(pt, "output_text")) ||
            !json_is_string(tx)) {
            send_error(c, "invalid_request_error", "unsupported", "item.content", eid,
                       "content parts must be text (input_text, text or output_text with a \"text\" string); for "
                       "audio use input_audio_buffer.append");
            return;
        }
        total += json_string_length(tx) + 1;
    }
    if (total > 65536) {
        send_error(c, "invalid_request_error", "invalid_value", "item.content", eid,
                   "the message is too long (at most 64 KiB of text)");
        return;
    }
    char *text = malloc(total + 1);
    if (!text) {
        send_error(c, "server_error", "out_of_memory", NULL, eid, "out of memory");
        return;
    }
    size_t at = 0;
    json_array_foreach(content, i, part)
    {
        json_t *tx = json_object_get(part, "text");
        if (at) text[at++] = ' ';
        memcpy(text + at, json_string_value(tx), json_string_length(tx));
        at += json_string_length(tx);
    }
    text[at] = 0;
    char id[MAX_ID];
    const char *given = json_string_value(json_object_get(item, "id"));
    if (given && (strlen(given) == 0 || strlen(given) >= MAX_ID)) {
        free(text);
        send_error(c, "invalid_request_error", "invalid_value", "item.id", eid, "'id' must be 1 to %d characters",
                   MAX_ID - 1);
        return;
    }
    banter_status st;
    if (!strcmp(role, "system")) {
        /* The system message is the session's instructions. */
        banter_session_config cfg = c->cfg;
        cfg.system_prompt = text;
        char err[256] = "";
        st = banter_session_update(c->sess, &cfg, err, sizeof err);
        if (!st) {
            free(c->instructions);
            c->instructions = text;
            c->cfg.system_prompt = text;
            text = NULL;
        }
    } else {
        st = banter_session_add_message(c->sess, role, text);
    }
    if (st) {
        free(text);
        if (st == BANTER_ERR_BUSY)
            send_error(c, "invalid_request_error", "conversation_already_has_active_response", NULL, eid,
                       "a response is in progress; wait for response.done (or send response.cancel) before adding "
                       "items");
        else
            send_error(c, "invalid_request_error", "invalid_value", "item", eid, "cannot add the item: %s",
                       banter_status_str(st));
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (given) snprintf(id, sizeof id, "%s", given);
    else new_id(c, "item", id);
    json_t *jt = json_string(text ? text : c->instructions);
    if (!jt) jt = json_string("");
    json_t *it;
    if (!strcmp(role, "user")) {
        it = user_item(id, json_string_value(jt), false);
    } else {
        const char *ptype = !strcmp(role, "assistant") ? (c->beta ? "text" : "output_text") : "input_text";
        it = json_pack("{s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:O}]}", "id", id, "object", "realtime.item", "type", "message",
                       "status", "completed", "role", role, "content", "type", ptype, "text", jt);
    }
    json_decref(jt);
    item_added_locked(c, it, true);
    if (!strcmp(role, "assistant")) c->asst_item[0] = 0; /* it has no audio to truncate */
    pthread_mutex_unlock(&c->lock);
    wake(c->rt);
    free(text);
}

static void handle_response_create(struct rt_conn *c, json_t *root, const char *eid)
{
    json_t *r = json_object_get(root, "response");
    bool text_only = c->cfg.text_only;
    if (r && !json_is_null(r)) {
        if (!json_is_object(r)) {
            send_error(c, "invalid_request_error", "invalid_value", "response", eid, "'response' must be an object");
            return;
        }
        const char *conv = json_string_value(json_object_get(r, "conversation"));
        if (conv && strcmp(conv, "auto")) {
            send_error(c, "invalid_request_error", "unsupported", "response.conversation", eid,
                       "out-of-band responses (conversation \"%s\") are not supported", conv);
            return;
        }
        if (!parse_modalities(c, r, "response", eid, &text_only)) return;
    }
    pthread_mutex_lock(&c->lock);
    bool was = c->next_text_only;
    if (!c->resp_open) c->next_text_only = text_only;
    pthread_mutex_unlock(&c->lock);
    banter_status st = banter_session_respond(c->sess, !text_only);
    if (st) {
        pthread_mutex_lock(&c->lock);
        if (!c->resp_open) c->next_text_only = was;
        pthread_mutex_unlock(&c->lock);
        if (st == BANTER_ERR_BUSY)
            send_error(c, "invalid_request_error", "conversation_already_has_active_response", NULL, eid,
                       "a response is already in progress");
        else
            send_error(c, "invalid_request_error", "invalid_value", NULL, eid,
                       "there is nothing to respond to: the conversation must end with a user message");
    }
}

static void handle_truncate(struct rt_conn *c, json_t *root, const char *eid)
{
    const char *item = json_string_value(json_object_get(root, "item_id"));
    json_t *je = json_object_get(root, "audio_end_ms");
    json_t *ci = json_object_get(root, "content_index");
    if (!item) {
        send_error(c, "invalid_request_error", "invalid_value", "item_id", eid, "'item_id' must be a string");
        return;
    }
    if (!json_is_integer(je) || json_integer_value(je) < 0) {
        send_error(c, "invalid_request_error", "invalid_value", "audio_end_ms", eid,
                   "'audio_end_ms' must be a non-negative integer");
        return;
    }
    if (ci && json_integer_value(ci) != 0) {
        send_error(c, "invalid_request_error", "invalid_value", "content_index", eid,
                   "'content_index' must be 0 (an assistant message has one content part)");
        return;
    }
    pthread_mutex_lock(&c->lock);
    bool known = (c->resp_open && !strcmp(item, c->resp_item)) || (c->asst_item[0] && !strcmp(item, c->asst_item));
    pthread_mutex_unlock(&c->lock);
    json_int_t ms = json_integer_value(je);
    size_t played = ms > (json_int_t)(SIZE_MAX / 16) ? SIZE_MAX : (size_t)ms * (ENGINE_RATE / 1000);
    banter_status st = known ? banter_session_truncate(c->sess, played, NULL) : BANTER_ERR_NOT_FOUND;
    if (st) {
        send_error(c, "invalid_request_error", "item_truncate_invalid_item_id", "item_id", eid,
                   "item '%s' cannot be truncated: only the last assistant message with audio can", item);
        return;
    }
    send_event(c, json_pack("{s:s,s:s,s:i,s:I}", "type", "conversation.item.truncated", "item_id", item,
                            "content_index", 0, "audio_end_ms", ms));
}

static void handle_message(struct rt_conn *c, struct msg *m)
{
    if (m->binary) {
        send_error(c, "invalid_request_error", "invalid_message", NULL, NULL,
                   "binary messages are not supported: send JSON text events");
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)m->data, m->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        send_error(c, "invalid_request_error", "invalid_json", NULL, NULL,
                   root ? "an event must be a JSON object" : "invalid JSON: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
        json_decref(root);
        return;
    }
    const char *eid = json_string_value(json_object_get(root, "event_id"));
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type) {
        send_error(c, "invalid_request_error", "missing_type", "type", eid, "the event has no \"type\" string");
    } else if (!strcmp(type, "session.update")) {
        handle_session_update(c, root, eid);
    } else if (!strcmp(type, "input_audio_buffer.append")) {
        handle_append(c, root, eid);
    } else if (!strcmp(type, "input_audio_buffer.commit")) {
        banter_status st = banter_session_commit(c->sess);
        if (st == BANTER_ERR_NOT_FOUND)
            send_error(c, "invalid_request_error", "input_audio_buffer_commit_empty", NULL, eid,
                       "there is no speech in the input audio buffer to commit");
        else if (st)
            send_error(c, "server_error", banter_status_str(st), NULL, eid, "commit failed: %s",
                       banter_status_str(st));
    } else if (!strcmp(type, "input_audio_buffer.clear")) {
        banter_session_clear_input(c->sess);
        pthread_mutex_lock(&c->lock);
        c->user_item[0] = 0;
        c->partial[0] = 0;
        send_locked(c, json_pack("{s:s}", "type", "input_audio_buffer.cleared"));
        pthread_mutex_unlock(&c->lock);
        wake(c->rt);
    } else if (!strcmp(type, "conversation.item.create")) {
        handle_item_create(c, root, eid);
    } else if (!strcmp(type, "response.create")) {
        handle_response_create(c, root, eid);
    } else if (!strcmp(type, "response.cancel")) {
        if (!banter_session_busy(c->sess)) {
            send_error(c, "invalid_request_error", "response_cancel_not_active", NULL, eid,
                       "there is no response in progress to cancel");
        } else {
            pthread_mutex_lock(&c->lock);
            c->cancel_requested = true;
            pthread_mutex_unlock(&c->lock);
            banter_session_interrupt(c->sess);
        }
    } else if (!strcmp(type, "conversation.item.truncate")) {
        handle_truncate(c, root, eid);
    } else if (!strcmp(type, "conversation.item.delete") || !strcmp(type, "conversation.item.retrieve") ||
               !strcmp(type, "output_audio_buffer.clear")) {
        send_error(c, "invalid_request_error", "unsupported", "type", eid, "'%s' is not supported by this server",
                   type);
    } else {
        send_error(c, "invalid_request_error", "unknown_event", "type", eid, "unknown event type '%.64s'", type);
    }
    json_decref(root);
}

/* ---- connection lifetime (workers) ---- */

static bool open_session(struct rt_conn *c)
{
    struct rt *rt = c->rt;
    c->cfg = banter_session_config_default();
    c->cfg.no_playout = true;
    c->cfg.system_prompt = rt->instructions;
    c->vad = true;
    c->create_response = c->interrupt_response = true;
    c->silence_ms = c->cfg.end_silence_ms;
    c->speed = 1.0;
    c->max_reply_open = c->cfg.max_reply_tokens;
    char err[256] = "";
    banter_status st = banter_session_open(rt->llm, rt->asr, &c->cfg, on_session_event, c, &c->sess, err, sizeof err);
    if (st) {
        core_warn("realtime: connection %lu: cannot open a session: %s", c->serial, err);
        send_error(c, "server_error", "session_failed", NULL, NULL, "cannot open a session: %s", err);
        pthread_mutex_lock(&c->lock);
        c->close_after = true;
        pthread_mutex_unlock(&c->lock);
        wake(rt);
        return false;
    }
    c->cfg.system_prompt = rt->instructions;
    pthread_mutex_lock(&rt->lock);
    rt->n_sessions++;
    pthread_mutex_unlock(&rt->lock);
    if (rt->metrics) metrics_session_open(rt->metrics);
    pthread_mutex_lock(&c->lock);
    send_locked(c, json_pack("{s:s,s:o}", "type", "session.created", "session", session_json(c)));
    pthread_mutex_unlock(&c->lock);
    wake(rt);
    return true;
}

static void free_msgs(struct msg *m)
{
    while (m) {
        struct msg *n = m->next;
        free(m);
        m = n;
    }
}

static void conn_free(struct rt_conn *c)
{
    struct rt *rt = c->rt;
    if (c->sess) {
        banter_session_close(c->sess);
        if (rt->metrics) metrics_session_close(rt->metrics);
    }
    pthread_mutex_lock(&rt->lock);
    if (c->sess) rt->n_sessions--;
    for (struct rt_conn **p = &rt->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    rt->n_conns--;
    pthread_cond_broadcast(&rt->freed_cond);
    pthread_mutex_unlock(&rt->lock);
    free_msgs(c->in_head);
    free_msgs(c->out_head);
    free(c->rx);
    free(c->resp_text);
    free(c->resp_final);
    free(c->instructions);
    free(c->voice);
    free(c->in_buf);
    free(c->in_rs_buf);
    audio_resampler_close(c->in_rs);
    audio_resampler_close(c->out_rs);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Puts c on the run queue unless it is there or running (c->lock held). */
static void schedule_locked(struct rt_conn *c)
{
    if (c->queued) return;
    c->queued = true;
    struct rt *rt = c->rt;
    pthread_mutex_lock(&rt->lock);
    c->run_next = NULL;
    if (rt->run_tail) rt->run_tail->run_next = c;
    else rt->run_head = c;
    rt->run_tail = c;
    pthread_cond_signal(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
}

/* Runs a connection: its session's opening, up to MSGS_PER_TURN messages, or its end. */
static void run_conn(struct rt_conn *c)
{
    if (!c->opened) {
        c->opened = true;
        pthread_mutex_lock(&c->lock);
        bool gone = c->gone;
        pthread_mutex_unlock(&c->lock);
        if (!gone && !open_session(c)) {
            pthread_mutex_lock(&c->lock);
            free_msgs(c->in_head);
            c->in_head = c->in_tail = NULL;
            c->in_bytes = 0;
            pthread_mutex_unlock(&c->lock);
        }
    }
    for (int k = 0;; k++) {
        pthread_mutex_lock(&c->lock);
        if (c->gone) {
            pthread_mutex_unlock(&c->lock);
            conn_free(c);
            return;
        }
        struct msg *m = k < MSGS_PER_TURN ? c->in_head : NULL;
        if (!m) {
            c->queued = false;
            if (c->in_head) schedule_locked(c); /* more waits: behind the other connections */
            pthread_mutex_unlock(&c->lock);
            return;
        }
        c->in_head = m->next;
        if (!c->in_head) c->in_tail = NULL;
        c->in_bytes -= m->len;
        pthread_mutex_unlock(&c->lock);
        if (c->sess) handle_message(c, m);
        free(m);
    }
}

static void *worker_main(void *arg)
{
    struct rt *rt = arg;
    pthread_mutex_lock(&rt->lock);
    for (;;) {
        while (!rt->quit && !rt->run_head) pthread_cond_wait(&rt->cond, &rt->lock);
        if (!rt->run_head) break;
        struct rt_conn *c = rt->run_head;
        rt->run_head = c->run_next;
        if (!rt->run_head) rt->run_tail = NULL;
        pthread_mutex_unlock(&rt->lock);
        run_conn(c);
        pthread_mutex_lock(&rt->lock);
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/* ---- the loop side ---- */

int rt_check_upgrade(struct rt *rt, struct lws *wsi, char *msg, size_t msg_len)
{
    char uri[256] = "";
    lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (strcmp(uri, "/v1/realtime")) {
        snprintf(msg, msg_len, "no WebSocket endpoint at %s; the realtime API is at /v1/realtime", uri);
        return 404;
    }
    if (!rt || !rt->llm || !rt->asr) {
        snprintf(msg, msg_len, "this server has no %s: start it with a model (banter serve -m MODEL.gguf)",
                 rt && rt->llm ? "speech recognizer" : "language model");
        return 503;
    }
    pthread_mutex_lock(&rt->lock);
    int n = rt->n_conns;
    pthread_mutex_unlock(&rt->lock);
    if (n >= rt->max_sessions) {
        snprintf(msg, msg_len, "the server is at its limit of %d realtime sessions; try again later",
                 rt->max_sessions);
        if (rt->metrics) metrics_error(rt->metrics, "busy");
        return 503;
    }
    return 0;
}

static bool wants_beta(struct lws *wsi)
{
    char buf[512] = "";
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_PROTOCOL) > 0 && strstr(buf, "openai-beta.realtime-v1"))
        return true;
#if defined(LWS_WITH_CUSTOM_HEADERS)
    buf[0] = 0;
    if (lws_hdr_custom_copy(wsi, buf, sizeof buf, "openai-beta:", 12) > 0 && strstr(buf, "realtime=v1")) return true;
#endif
    for (int i = 0; lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++)
        if (!strcmp(buf, "beta=1") || !strcmp(buf, "beta=true")) return true;
    return false;
}

static void kill_conn(struct lws *wsi, int status, const char *reason)
{
    lws_close_reason(wsi, (enum lws_close_status)status, (unsigned char *)reason, strlen(reason));
}

static int on_receive(struct rt *rt, struct rt_conn *c, struct lws *wsi, const void *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        c->rx_len = 0;
        c->rx_binary = lws_frame_is_binary(wsi);
    }
    lws_set_timer_usecs(wsi, (lws_usec_t)rt->idle_timeout_s * LWS_US_PER_SEC);
    bool done = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    if (c->rx_overflow || c->rx_len + len > rt->max_message) {
        /* Too large: nothing more is kept, and once the client has finished sending it (so that it reads the
         * close frame rather than a reset connection), the connection is closed with 1009. */
        if (!c->rx_overflow) {
            core_warn("realtime: connection %lu sent a message over %zu bytes; closing it", c->serial,
                      rt->max_message);
            if (rt->metrics) metrics_error(rt->metrics, "invalid_request");
            c->rx_overflow = true;
            free(c->rx);
            c->rx = NULL;
            c->rx_len = c->rx_cap = 0;
        }
        if (!done) return 0;
        kill_conn(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
        return -1;
    }
    if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len + 1) cap *= 2;
        unsigned char *p = realloc(c->rx, cap);
        if (!p) {
            kill_conn(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
            return -1;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!done) return 0;
    struct msg *m = malloc(sizeof *m + c->rx_len + 1);
    if (!m) {
        kill_conn(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return -1;
    }
    m->next = NULL;
    m->len = c->rx_len;
    m->binary = c->rx_binary;
    memcpy(m->data, c->rx, c->rx_len);
    m->data[c->rx_len] = 0;
    c->rx_len = 0;
    if (c->rx_cap > ((size_t)1 << 20)) { /* do not keep a large buffer for a connection's lifetime */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    pthread_mutex_lock(&c->lock);
    if (c->in_bytes + m->len > RT_MAX_INBOX) {
        pthread_mutex_unlock(&c->lock);
        free(m);
        core_warn("realtime: connection %lu sends faster than it can be handled; closing it", c->serial);
        kill_conn(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, "input arrives faster than it can be handled");
        return -1;
    }
    if (c->in_tail) c->in_tail->next = m;
    else c->in_head = m;
    c->in_tail = m;
    c->in_bytes += m->len;
    schedule_locked(c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static int on_writable(struct rt_conn *c, struct lws *wsi)
{
    pthread_mutex_lock(&c->lock);
    struct msg *m = c->out_head;
    if (m) {
        c->out_head = m->next;
        if (!c->out_head) c->out_tail = NULL;
        c->out_bytes -= m->len;
    }
    bool more = c->out_head != NULL;
    bool close_now = !m && c->close_after;
    pthread_mutex_unlock(&c->lock);
    if (close_now) {
        kill_conn(wsi, LWS_CLOSE_STATUS_NORMAL, "closing");
        return -1;
    }
    if (!m) return 0;
    int n = lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
    free(m);
    if (n < 0) return -1;
    pthread_mutex_lock(&c->lock);
    more = more || c->close_after;
    pthread_mutex_unlock(&c->lock);
    if (more) lws_callback_on_writable(wsi);
    return 0;
}

int rt_callback(struct rt *rt, struct lws *wsi, enum lws_callback_reasons reason, struct rt_conn **slot, void *in,
                size_t len)
{
    struct rt_conn *c = (struct rt_conn *)*slot;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        c = calloc(1, sizeof *c);
        if (!c) return -1;
        c->rt = rt;
        c->wsi = wsi;
        c->beta = wants_beta(wsi);
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_lock(&rt->lock);
        c->serial = ++rt->serial;
        c->next = rt->conns;
        rt->conns = c;
        rt->n_conns++;
        pthread_mutex_unlock(&rt->lock);
        *slot = (struct rt_conn *)c;
        core_debug("realtime: connection %lu open (%s names)", c->serial, c->beta ? "beta" : "GA");
        lws_set_timer_usecs(wsi, (lws_usec_t)rt->idle_timeout_s * LWS_US_PER_SEC);
        pthread_mutex_lock(&c->lock);
        schedule_locked(c); /* opens the session */
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return c ? on_receive(rt, c, wsi, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? on_writable(c, wsi) : 0;
    case LWS_CALLBACK_TIMER:
        if (!c) return 0;
        core_info("realtime: connection %lu idle for %d s; closing it", c->serial, rt->idle_timeout_s);
        send_error(c, "invalid_request_error", "idle_timeout", NULL, NULL,
                   "no events for %d seconds: the session is closed", rt->idle_timeout_s);
        pthread_mutex_lock(&c->lock);
        c->close_after = true;
        pthread_mutex_unlock(&c->lock);
        /* A client that does not read either is dropped a little later. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (!c) return 0;
        *slot = NULL;
        core_debug("realtime: connection %lu closed", c->serial);
        pthread_mutex_lock(&c->lock);
        c->wsi = NULL;
        c->gone = true;
        schedule_locked(c); /* the worker closes the session and frees it */
        pthread_mutex_unlock(&c->lock);
        return 0;
    default:
        return 0;
    }
}

void rt_service(struct rt *rt)
{
    if (!rt) return;
    /* The connections are collected under rt->lock and visited after it is released: the lock order is
     * conn->lock before rt->lock (scheduling takes them so). A connection that is not gone cannot be freed
     * meanwhile: only this thread marks connections gone, and only gone ones are freed. */
    pthread_mutex_lock(&rt->lock);
    if (rt->n_conns > rt->cap_live) {
        struct rt_conn **p = realloc(rt->live, (size_t)rt->n_conns * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&rt->lock);
            return; /* out of memory: tried again at the next wake-up */
        }
        rt->live = p;
        rt->cap_live = rt->n_conns;
    }
    struct rt_conn **live = rt->live;
    int n = 0;
    for (struct rt_conn *c = rt->conns; c; c = c->next)
        if (!c->gone && c->wsi) live[n++] = c;
    pthread_mutex_unlock(&rt->lock);
    for (int i = 0; i < n; i++) {
        struct rt_conn *c = live[i];
        pthread_mutex_lock(&c->lock);
        bool kill = c->kill, want = c->out_head || c->close_after;
        int status = c->kill_status;
        char reason[96];
        memcpy(reason, c->kill_reason, sizeof reason);
        if (kill) c->kill = false, c->close_after = false;
        pthread_mutex_unlock(&c->lock);
        if (kill) {
            kill_conn(c->wsi, status, reason);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        } else if (want) {
            lws_callback_on_writable(c->wsi);
        }
    }
}

int rt_sessions(struct rt *rt)
{
    if (!rt) return 0;
    pthread_mutex_lock(&rt->lock);
    int n = rt->n_sessions;
    pthread_mutex_unlock(&rt->lock);
    return n;
}

int rt_open(const struct rt_config *cfg, struct lws_context *ctx, struct rt **out, char *err, size_t err_len)
{
    *out = NULL;
    struct rt *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, err_len, "out of memory");
        return BANTER_ERR_NOMEM;
    }
    rt->llm = cfg->llm;
    rt->asr = cfg->asr;
    rt->max_sessions = cfg->max_sessions > 0 ? cfg->max_sessions : DEFAULT_MAX_SESSIONS;
    rt->max_message = cfg->max_message ? cfg->max_message : DEFAULT_MAX_MESSAGE;
    rt->idle_timeout_s = cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : DEFAULT_IDLE_S;
    rt->metrics = cfg->metrics;
    rt->ctx = ctx;
    rt->instructions = cfg->instructions ? strdup(cfg->instructions) : NULL;
    rt->model_id = strdup(cfg->model_id ? cfg->model_id : "banter");
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->cond, NULL);
    pthread_cond_init(&rt->freed_cond, NULL);
    int n = cfg->n_workers > 0 ? cfg->n_workers : DEFAULT_WORKERS;
    rt->workers = calloc((size_t)n, sizeof *rt->workers);
    if (!rt->model_id || (cfg->instructions && !rt->instructions) || !rt->workers) {
        snprintf(err, err_len, "out of memory");
        rt_close(rt);
        return BANTER_ERR_NOMEM;
    }
    for (; rt->n_workers < n; rt->n_workers++)
        if (pthread_create(&rt->workers[rt->n_workers], NULL, worker_main, rt)) {
            snprintf(err, err_len, "cannot start a realtime worker thread");
            rt_close(rt);
            return BANTER_ERR_NOMEM;
        }
    *out = rt;
    return 0;
}

void rt_detach_loop(struct rt *rt)
{
    if (!rt) return;
    pthread_mutex_lock(&rt->lock);
    rt->loop_detached = true;
    pthread_mutex_unlock(&rt->lock);
}

void rt_close(struct rt *rt)
{
    if (!rt) return;
    rt_detach_loop(rt);
    /* Every connection was closed with the context, so each is queued to be freed: wait for the workers. */
    pthread_mutex_lock(&rt->lock);
    while (rt->n_conns > 0 && rt->n_workers > 0) pthread_cond_wait(&rt->freed_cond, &rt->lock);
    rt->quit = true;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
    for (int i = 0; i < rt->n_workers; i++) pthread_join(rt->workers[i], NULL);
    free(rt->workers);
    pthread_cond_destroy(&rt->cond);
    pthread_cond_destroy(&rt->freed_cond);
    pthread_mutex_destroy(&rt->lock);
    free(rt->live);
    free(rt->instructions);
    free(rt->model_id);
    free(rt);
}
