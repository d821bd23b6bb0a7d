/*
 * bench_serve.c: `banter bench serve`, a load generator for the realtime endpoint of `banter serve`.
 *
 * N scripted conversations talk at once over WebSocket (docs/realtime.md), each the way a phone call would: one
 * unbroken stream of 40 ms pcm16 24 kHz input_audio_buffer.append events at the pace of real time, carrying a
 * spoken question (Flite, synthesized once at start, resampled 16 -> 24 kHz here), then silence until the reply's
 * response.done has arrived and at least a second of silence was sent, then the next question. The server's own
 * VAD ends each turn. Per turn the client measures the time from sending the append that holds the question's
 * last sample to receiving the first response.output_audio.delta, and keeps the server's banter.turn record
 * (total_ms, processing_ms, first_token_ms) and response.done's usage.output_tokens.
 *
 * Design: one thread, one lws context, N client connections. A context timer ticks every 5 ms and asks each
 * connection whose next 40 ms chunk is due for a write; each write sends one chunk and asks again if the
 * connection is behind, so a late connection catches up instead of drifting. The lag of each send behind its
 * schedule is recorded: a client that could not keep pace would make the numbers meaningless, and the run says
 * so. Audio deltas (most of the traffic) are recognized by their type without parsing their JSON.
 *
 * With -m MODEL and no --url, the server is this same binary (/proc/self/exe serve --port 0), started as a child
 * and stopped with SIGINT at the end; its CPU time (/proc/PID/stat) over each run is divided by the turns. With
 * --url the machine's CPU time (/proc/stat, which includes this client) is used instead.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, pipe2 */
#endif
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE =
    "usage: banter bench serve (-m MODEL.gguf | --url ws://HOST:PORT/v1/realtime) [options]\n"
    "\n"
    "Load-tests the realtime endpoint of `banter serve`: N conversations at once, each streaming spoken\n"
    "questions (Flite) as pcm16 24 kHz in 40 ms input_audio_buffer.append events at the pace of real time,\n"
    "with about a second of silence after each question (streamed too, so the server's VAD hears the end of\n"
    "speech) and silence while the reply comes; the next question follows the reply's response.done.\n"
    "\n"
    "Measured per turn:\n"
    "  first audio (client)  from sending the append holding the question's last sample to receiving the first\n"
    "                        response.output_audio.delta; nothing is subtracted, so it includes the endpoint\n"
    "                        silence the server's VAD waits for (silence_duration_ms, 400 by default)\n"
    "  server total_ms       the server's banter.turn record: end of speech to first reply audio\n"
    "Per run: turns completed, p50/p95 of both (first audio over every turn whose reply began, even if it\n"
    "then timed out; server total over completed turns), generated tokens/s (response.done\n"
    "usage.output_tokens summed over the run's wall time, all conversations together), CPU ms per completed\n"
    "turn (the server child's user+system time over the run; with --url the whole machine's, this client\n"
    "included), and a real-time verdict. Between runs it waits for the server to go idle.\n"
    "\n"
    "Real-time means: every turn completed (none failed, errored or timed out), the p95 of first audio (client)\n"
    "is under the endpoint silence plus --rt-ms (200 ms by default: 600 ms with the server's default VAD), and\n"
    "this client sent every conversation's audio within 200 ms of its schedule.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE     start `banter serve -m FILE --port 0` as a child (this binary) and stop it at the end\n"
    "      --url URL        or use a running server: ws://HOST:PORT/v1/realtime (http:// is taken as ws://;\n"
    "                       a URL without a path gets /v1/realtime)\n"
    "      --api-key K      send \"Authorization: Bearer K\"\n"
    "  -n N                 conversations at once (default 4)\n"
    "      --sessions LIST  a curve: one run per count, comma-separated (e.g. 1,4,16,32), in the same server\n"
    "      --turns T        questions per conversation (default 3)\n"
    "      --silence-ms MS  ask the server's VAD for this much silence to end a turn (session.update;\n"
    "                       default: the server's own, 400)\n"
    "      --max-tokens N   limit each reply to N tokens (session.update max_output_tokens; default: the\n"
    "                       server's 200). A real model's spoken answers are some 20-60 tokens; a random one\n"
    "                       always writes the most it may, which costs CPU that a real conversation would not\n"
    "      --rt-ms MS       the real-time budget above the endpoint silence (default 200)\n"
    "      --ramp MS        spread the conversations' starts over MS (default 2000)\n"
    "      --turn-timeout S a turn fails if its response.done has not come S seconds after the question\n"
    "                       (default 60); connecting has 30 s\n"
    "      --serve-arg ARG  pass ARG to the child server (repeat for each word, e.g. --serve-arg -t\n"
    "                       --serve-arg 2); --max-sessions is set to the largest N plus 4 unless given here\n"
    "      --json           print one JSON object instead of the table\n"
    "  -v, --verbose        the child server's log goes to stderr (else to a file, shown on failure)\n"
    "\n"
    "Progress goes to stderr every 5 s. Exit status: 0 when every run completed all its turns, 1 otherwise\n"
    "(or when the server cannot be reached or started), 2 for bad options.\n"
    "\n"
    "examples:\n"
    "  banter model synth --shape 270m --type Q8_0 -o /tmp/270m.gguf\n"
    "  banter bench serve -m /tmp/270m.gguf --sessions 1,4,16,32 --turns 3\n"
    "  banter serve -m model.gguf --port 8080 &  banter bench serve --url ws://127.0.0.1:8080/v1/realtime -n 8\n";

static const char *const QUESTIONS[] = {
    "what is the weather like today",
    "can you tell me how to get to the nearest station",
    "how long does it take to walk to the park",
    "what time does the train to london leave in the morning",
    "could you book a table for two people at seven",
    "what should we buy for breakfast tomorrow",
    "when is the meeting with the design team",
    "where did i leave my keys last night",
};
#define N_QUESTIONS ((int)(sizeof QUESTIONS / sizeof QUESTIONS[0]))

#define CHUNK_MS 40
#define RATE 24000
#define CHUNK (RATE * CHUNK_MS / 1000) /* samples per append */
#define TICK_US 5000
#define LEAD_MS 400           /* silence before the first question */
#define TAIL_MS 1000          /* silence after each question, at least */
#define CONNECT_TIMEOUT_MS 30000.0
#define CLOSE_GRACE_MS 5000.0
#define LAG_LIMIT_MS 200.0    /* a send later than this behind its schedule: the client fell behind */
#define BANTER_TURN_WAIT_MS 2000.0 /* after response.done, how long banter.turn may take */
#define MAX_RX ((size_t)64 << 20)
#define SILENT 0.003f          /* about -50 dBFS: quieter samples at the ends of a question are trimmed */
#define TX_CAP 4096

/* ---- clock, statistics ---- */

/* ---- the questions: Flite at 16 kHz, resampled to 24 kHz pcm16 ---- */

/* 16 -> 24 kHz: output sample j sits at input time 2j/3, so three filter phases (0, 2/3, 1/3 of a sample).
 * Each is a Hann-windowed sinc with its cutoff at 7.2 kHz (0.45 of the input rate), 2*HALF taps, normalized to
 * unit gain. Output is 16-bit with clipping. */
#define HALF 16
static int16_t *resample_16_to_24(const float *x, size_t n, size_t *n_out)
{
    double h[3][2 * HALF];
    for (int ph = 0; ph < 3; ph++) {
        double frac = ph / 3.0, sum = 0;
        for (int k = 0; k < 2 * HALF; k++) {
            double t = (k - HALF + 1) - frac; /* tap distance from the output time, in input samples */
            double fc = 0.45;
            double s = fabs(t) < 1e-9 ? 2 * fc : sin(2 * M_PI * fc * t) / (M_PI * t);
            double w = 0.5 + 0.5 * cos(M_PI * t / HALF);
            h[ph][k] = s * w;
            sum += h[ph][k];
        }
        for (int k = 0; k < 2 * HALF; k++) h[ph][k] /= sum;
    }
    size_t m = n * 3 / 2;
    int16_t *y = malloc((m ? m : 1) * sizeof *y);
    if (!y) return NULL;
    for (size_t j = 0; j < m; j++) {
        size_t base = 2 * j / 3; /* the input sample at or before the output time */
        int ph = (int)(2 * j % 3);
        double acc = 0;
        for (int k = 0; k < 2 * HALF; k++) {
            long i = (long)base + k - HALF + 1;
            if (i >= 0 && (size_t)i < n) acc += h[ph][k] * x[i];
        }
        long v = lrint(acc * 32767.0);
        y[j] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
    }
    *n_out = m;
    return y;
}

/* ---- one conversation ---- */

struct turn_rec {
    bool ok;              /* response.done completed after the question, with audio */
    bool timed_out;
    bool errored;         /* an error event, or a response that was not "completed" */
    double first_audio_ms; /* client-measured; -1 if none */
    double srv_total_ms, srv_processing_ms, srv_first_token_ms; /* banter.turn; -1 if none */
    int out_tokens;
};

enum phase { PH_WAITING, PH_CONNECTING, PH_OPEN, PH_CLOSING, PH_DONE };
enum stage { ST_LEAD, ST_SPEECH, ST_WAIT };

struct bench;

struct conv {
    struct bench *b;
    int id;
    struct lws *wsi;
    enum phase phase;
    bool failed;       /* ended before its turns were done */
    char why[160];     /* why it failed */
    double t_start;    /* when to connect */
    double t_connect;  /* connect began */
    double t_closing;  /* the close was asked for */
    bool created;      /* session.created seen */
    bool update_pending; /* session.update to send before the audio */

    /* The audio stream: chunk k is due at t_stream + k * CHUNK_MS. */
    double t_stream;
    long n_chunks;
    double max_lag_ms;

    enum stage stage;
    int turn;              /* the current turn */
    const int16_t *q;      /* its question */
    size_t q_n, q_pos;
    long silence_chunks;   /* silence sent since the question ended */
    double t_speech_end;
    double t_first_audio;
    bool resp_early;       /* the open response began before the question ended (a split turn) */
    bool got_done, got_turn;
    double t_done;
    struct turn_rec *turns;

    unsigned char *rx;
    size_t rx_len, rx_cap;
    bool rx_overflow;
    unsigned char tx[LWS_PRE + TX_CAP];
};

struct bench {
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;
    const char *host, *path, *api_key;
    int port;
    int turns;
    int silence_ms; /* asked for with session.update; 0 = the server's */
    int max_tokens; /* the replies' token limit asked for with session.update; 0 = the server's */
    int srv_silence_ms; /* what session.created reported */
    double turn_timeout_ms;
    double ramp_ms;
    bool verbose;

    const int16_t *questions[N_QUESTIONS];
    size_t n_question[N_QUESTIONS];
    int16_t silence[CHUNK];

    struct conv *convs;
    int n_convs;
    int n_turns_done;  /* turns finished (any outcome) in this run */
    int n_failed_turns;
    bool run_over;
    double t_run0, t_last_progress;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void conv_fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void conv_fail(struct conv *c, const char *fmt, ...)
{
    if (!c->failed && c->phase != PH_DONE) {
        c->failed = true;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof c->why, fmt, ap);
        va_end(ap);
    }
    if (c->wsi && c->phase != PH_CLOSING && c->phase != PH_DONE) {
        c->phase = PH_CLOSING;
        c->t_closing = cli_now_ms();
        lws_callback_on_writable(c->wsi);
    } else if (!c->wsi) {
        c->phase = PH_DONE;
    }
}

static void next_question(struct conv *c)
{
    int q = (c->id + c->turn) % N_QUESTIONS;
    c->q = c->b->questions[q];
    c->q_n = c->b->n_question[q];
    c->q_pos = 0;
    c->stage = ST_SPEECH;
    c->silence_chunks = 0;
    c->t_speech_end = c->t_first_audio = c->t_done = 0;
    c->got_done = c->got_turn = false;
    struct turn_rec *t = &c->turns[c->turn];
    memset(t, 0, sizeof *t);
    t->first_audio_ms = t->srv_total_ms = t->srv_processing_ms = t->srv_first_token_ms = -1;
}

/* The current turn is over (ok or not): record it and move on, or end the conversation. */
static void end_turn(struct conv *c, bool timed_out)
{
    struct bench *b = c->b;
    struct turn_rec *t = &c->turns[c->turn];
    t->timed_out = timed_out;
    if (c->t_first_audio > 0) t->first_audio_ms = c->t_first_audio - c->t_speech_end;
    t->ok = !timed_out && !t->errored && c->got_done && c->t_first_audio > 0;
    b->n_turns_done++;
    if (!t->ok) b->n_failed_turns++;
    c->turn++;
    if (timed_out) {
        conv_fail(c, "turn %d: no response.done %.0f s after the question", c->turn, b->turn_timeout_ms / 1000);
        return;
    }
    if (c->turn >= b->turns) {
        c->phase = PH_CLOSING;
        c->t_closing = cli_now_ms();
        lws_callback_on_writable(c->wsi);
        return;
    }
    next_question(c);
}

/* Reads the value of the top-level "type" key from the first bytes of a server event without parsing it. The
 * server writes "type" first; if it did not, the caller parses the whole message. */
static bool sniff_type(const char *m, size_t n, char *out, size_t cap)
{
    size_t lim = n < 96 ? n : 96;
    const char *p = memmem(m, lim, "\"type\"", 6);
    if (!p) return false;
    p += 6;
    const char *end = m + lim;
    while (p < end && (*p == ' ' || *p == ':')) p++;
    if (p >= end || *p != '"') return false;
    p++;
    size_t k = 0;
    while (p < end && *p != '"' && k + 1 < cap) out[k++] = *p++;
    if (p >= end || *p != '"') return false;
    out[k] = 0;
    return true;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static void on_message(struct conv *c, const char *m, size_t n)
{
    struct bench *b = c->b;
    double now = cli_now_ms();
    char type[64];
    if (sniff_type(m, n, type, sizeof type)) {
        if (!strcmp(type, "response.output_audio.delta") || !strcmp(type, "response.audio.delta")) {
            if (c->stage == ST_WAIT && !c->resp_early && c->t_first_audio == 0) c->t_first_audio = now;
            return;
        }
        if (strstr(type, "transcript") && strstr(type, ".delta")) return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(m, n, 0, &jerr);
    if (!root) {
        conv_fail(c, "the server sent a message that is not JSON (%s)", jerr.text);
        return;
    }
    const char *t = json_string_value(json_object_get(root, "type"));
    if (!t) t = "";
    if (!strcmp(t, "session.created")) {
        c->created = true;
        json_t *td = json_object_get(json_object_get(root, "session"), "turn_detection");
        if (!td) {
            json_t *in = json_object_get(json_object_get(json_object_get(root, "session"), "audio"), "input");
            td = json_object_get(in, "turn_detection");
        }
        double s = num(td, "silence_duration_ms");
        if (s > 0 && !b->srv_silence_ms) b->srv_silence_ms = (int)s;
        c->t_stream = now;
        c->n_chunks = 0;
        c->stage = ST_LEAD;
        c->turn = 0;
        next_question(c);
        c->stage = ST_LEAD;
        c->update_pending = b->silence_ms > 0 || b->max_tokens > 0;
        if (c->update_pending) lws_callback_on_writable(c->wsi);
    } else if (!strcmp(t, "error")) {
        json_t *e = json_object_get(root, "error");
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (b->verbose || !c->why[0])
            snprintf(c->why, sizeof c->why, "error event: %s", msg ? msg : "(no message)");
        if (b->verbose) fprintf(stderr, "bench serve: conversation %d: %s\n", c->id, c->why);
        if (c->created && c->turn < b->turns) c->turns[c->turn].errored = true;
    } else if (!strcmp(t, "response.created")) {
        c->resp_early = c->stage != ST_WAIT;
    } else if (!strcmp(t, "response.done")) {
        json_t *r = json_object_get(root, "response");
        if (c->resp_early) {
            c->resp_early = false; /* a reply to part of the question: not this turn's */
        } else if (c->stage == ST_WAIT && !c->got_done) {
            c->got_done = true;
            c->t_done = now;
            struct turn_rec *tr = &c->turns[c->turn];
            const char *st = json_string_value(json_object_get(r, "status"));
            if (!st || strcmp(st, "completed")) tr->errored = true;
            double ot = num(json_object_get(r, "usage"), "output_tokens");
            tr->out_tokens = ot > 0 ? (int)ot : 0;
        }
    } else if (!strcmp(t, "banter.turn")) {
        if (c->stage == ST_WAIT && c->got_done && !c->got_turn) {
            json_t *tj = json_object_get(root, "turn");
            struct turn_rec *tr = &c->turns[c->turn];
            tr->srv_total_ms = num(tj, "total_ms");
            tr->srv_processing_ms = num(tj, "processing_ms");
            tr->srv_first_token_ms = num(tj, "first_token_ms");
            c->got_turn = true;
        }
    }
    json_decref(root);
}

/* Sends the next 40 ms of the stream. */
static int send_chunk(struct conv *c)
{
    struct bench *b = c->b;
    const int16_t *src = b->silence;
    int16_t buf[CHUNK];
    bool speech_ends = false;
    if (c->stage == ST_SPEECH) {
        size_t k = c->q_n - c->q_pos < CHUNK ? c->q_n - c->q_pos : CHUNK;
        memcpy(buf, c->q + c->q_pos, k * sizeof *buf);
        memset(buf + k, 0, (CHUNK - k) * sizeof *buf);
        c->q_pos += k;
        speech_ends = c->q_pos >= c->q_n;
        src = buf;
    }
    unsigned char raw[CHUNK * 2];
    for (int i = 0; i < CHUNK; i++) { /* little-endian pcm16, whatever the host */
        raw[2 * i] = (unsigned char)((uint16_t)src[i] & 0xff);
        raw[2 * i + 1] = (unsigned char)((uint16_t)src[i] >> 8);
    }
    static const char head[] = "{\"type\":\"input_audio_buffer.append\",\"audio\":\"";
    char *p = (char *)c->tx + LWS_PRE;
    memcpy(p, head, sizeof head - 1);
    int len = (int)sizeof head - 1;
    int e = lws_b64_encode_string((const char *)raw, (int)sizeof raw, p + len, TX_CAP - len - 4);
    if (e < 0) return -1;
    len += e;
    p[len++] = '"';
    p[len++] = '}';
    if (lws_write(c->wsi, c->tx + LWS_PRE, (size_t)len, LWS_WRITE_TEXT) < len) return -1;
    double now = cli_now_ms();
    double lag = now - (c->t_stream + (double)c->n_chunks * CHUNK_MS);
    if (lag > c->max_lag_ms) c->max_lag_ms = lag;
    c->n_chunks++;
    if (c->stage == ST_LEAD) {
        if (c->n_chunks * CHUNK_MS >= LEAD_MS) c->stage = ST_SPEECH;
    } else if (c->stage == ST_SPEECH) {
        if (speech_ends) {
            c->stage = ST_WAIT;
            c->t_speech_end = now;
        }
    } else {
        c->silence_chunks++;
    }
    return 0;
}

static bool chunk_due(const struct conv *c, double now)
{
    return c->phase == PH_OPEN && c->created && now >= c->t_stream + (double)c->n_chunks * CHUNK_MS;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct conv *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (c && c->b->api_key) {
            unsigned char **p = in, *end = *p + len;
            char v[320];
            int k = snprintf(v, sizeof v, "Bearer %s", c->b->api_key);
            if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)v, k, p, end))
                return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c && c->phase == PH_CONNECTING) c->phase = PH_OPEN;
        else if (c) lws_callback_on_writable(wsi); /* it failed meanwhile: close it */
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            c->wsi = NULL;
            const char *why = in && len ? (const char *)in : "connection failed";
            conv_fail(c, "cannot connect: %s%s", why,
                      strstr(why, "not 101") ? " (the server refused the WebSocket upgrade: its session limit "
                                               "--max-sessions, a missing --api-key, or not a realtime endpoint)"
                                             : "");
            c->phase = PH_DONE;
        }
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2) {
            const unsigned char *s = in;
            conv_fail(c, "the server closed the connection (status %d%s%.*s)", s[0] << 8 | s[1], len > 2 ? ": " : "",
                      (int)(len - 2), (const char *)in + 2);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c) break;
        if (c->rx_len + len > c->rx_cap && !c->rx_overflow) {
            size_t cap = (c->rx_len + len) * 2;
            if (cap > MAX_RX) cap = MAX_RX;
            unsigned char *g = cap >= c->rx_len + len ? realloc(c->rx, cap) : NULL;
            if (!g) {
                c->rx_overflow = true;
            } else {
                c->rx = g;
                c->rx_cap = cap;
            }
        }
        if (!c->rx_overflow) {
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += len;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (c->rx_overflow) conv_fail(c, "a server message over %zu bytes", MAX_RX);
            else if (!lws_frame_is_binary(wsi)) on_message(c, (const char *)c->rx, c->rx_len);
            c->rx_len = 0;
            c->rx_overflow = false;
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c) break;
        if (c->phase == PH_CLOSING) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"done", 4);
            return -1;
        }
        if (c->update_pending) {
            c->update_pending = false;
            char vad[160] = "", limit[64] = "";
            if (c->b->silence_ms)
                snprintf(vad, sizeof vad, ",\"audio\":{\"input\":{\"turn_detection\":{\"type\":\"server_vad\","
                         "\"silence_duration_ms\":%d}}}", c->b->silence_ms);
            if (c->b->max_tokens) snprintf(limit, sizeof limit, ",\"max_output_tokens\":%d", c->b->max_tokens);
            int k = snprintf((char *)c->tx + LWS_PRE, TX_CAP,
                             "{\"type\":\"session.update\",\"session\":{\"type\":\"realtime\"%s%s}}", vad, limit);
            if (lws_write(wsi, c->tx + LWS_PRE, (size_t)k, LWS_WRITE_TEXT) < k) conv_fail(c, "cannot send session.update");
            else lws_callback_on_writable(wsi);
        } else if (chunk_due(c, cli_now_ms())) {
            if (send_chunk(c)) {
                conv_fail(c, "cannot send audio");
                break;
            }
            if (chunk_due(c, cli_now_ms())) lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c && c->phase != PH_CLOSING && c->phase != PH_DONE) conv_fail(c, "the server closed the connection");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (c) {
            if (c->phase != PH_CLOSING && c->phase != PH_DONE && c->turn < c->b->turns)
                conv_fail(c, "the connection was lost");
            c->wsi = NULL;
            c->phase = PH_DONE;
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols PROTOCOLS[] = {
    {"banter-bench-serve", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void start_conv(struct conv *c)
{
    struct bench *b = c->b;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = b->ctx;
    ci.address = b->host;
    ci.port = b->port;
    ci.path = b->path;
    ci.host = b->host;
    ci.origin = NULL;
    ci.protocol = NULL;
    ci.local_protocol_name = PROTOCOLS[0].name;
    ci.userdata = c;
    ci.pwsi = &c->wsi;
    c->phase = PH_CONNECTING;
    c->t_connect = cli_now_ms();
    if (!lws_client_connect_via_info(&ci) && c->phase == PH_CONNECTING) {
        c->wsi = NULL;
        conv_fail(c, "cannot start a connection to %s:%d", b->host, b->port);
        c->phase = PH_DONE;
    }
}

/* The 5 ms tick: starts conversations on schedule, asks for due writes, enforces the timeouts, ends the run. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
    struct bench *b = lws_container_of(sul, struct bench, tick);
    double now = cli_now_ms();
    bool all_done = true;
    for (int i = 0; i < b->n_convs; i++) {
        struct conv *c = &b->convs[i];
        if (interrupted && c->phase != PH_DONE && c->phase != PH_WAITING) conv_fail(c, "interrupted");
        if (c->phase == PH_WAITING) {
            if (interrupted) {
                c->phase = PH_DONE;
                c->failed = true;
                snprintf(c->why, sizeof c->why, "interrupted");
            } else if (now >= c->t_start) {
                start_conv(c);
            }
        }
        if ((c->phase == PH_CONNECTING || (c->phase == PH_OPEN && !c->created)) &&
            now - c->t_connect > CONNECT_TIMEOUT_MS)
            conv_fail(c, "no session.created %.0f s after connecting", CONNECT_TIMEOUT_MS / 1000);
        if (c->phase == PH_OPEN && c->created && c->stage == ST_WAIT) {
            bool tail_done = c->silence_chunks * CHUNK_MS >= TAIL_MS;
            if (c->got_done && tail_done && (c->got_turn || now - c->t_done > BANTER_TURN_WAIT_MS))
                end_turn(c, false);
            else if (!c->got_done && now - c->t_speech_end > b->turn_timeout_ms)
                end_turn(c, true);
        }
        /* A connection that cannot close politely (still connecting, or a server that stopped reading so the
         * close frame cannot be written) is dropped. */
        if (c->phase == PH_CLOSING && c->wsi && now - c->t_closing > CLOSE_GRACE_MS) {
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE, LWS_TO_KILL_ASYNC);
            c->t_closing = now; /* once per grace period */
        }
        if (chunk_due(c, now)) lws_callback_on_writable(c->wsi);
        if (c->phase != PH_DONE) all_done = false;
    }
    if (now - b->t_last_progress >= 5000) {
        b->t_last_progress = now;
        int total = b->n_convs * b->turns;
        fprintf(stderr, "  N=%d: %d/%d turns done, %d failed, %.0f s\n", b->n_convs, b->n_turns_done, total,
                b->n_failed_turns, (now - b->t_run0) / 1000);
    }
    if (all_done) {
        b->run_over = true;
        lws_cancel_service(b->ctx);
        return;
    }
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, TICK_US);
}

/* ---- CPU time ---- */

/* The server child's user+system time in ms, or the machine's busy time (pid 0); -1 if unreadable. */
static double cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    double hz = (double)sysconf(_SC_CLK_TCK);
    if (pid > 0) snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else snprintf(path, sizeof path, "/proc/stat");
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (pid > 0) {
        /* After the command name's closing parenthesis: state is field 3, utime 14, stime 15. */
        char *p = strrchr(buf, ')');
        if (!p) return -1;
        unsigned long long ut = 0, st = 0;
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
        return (double)(ut + st) * 1000.0 / hz;
    }
    unsigned long long v[8] = {0};
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) < 4)
        return -1;
    /* Busy = everything but idle (3) and iowait (4). */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000.0 / hz;
}

static double self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

/* Between runs: the server may still be finishing replies of conversations that timed out (their sessions close
 * when a worker gets to them). Waits, up to 120 s, until the server (or with pid 0 the machine) uses under 15% of
 * a core over half a second, so that one run's leftovers do not load the next. */
static void wait_quiet(pid_t pid)
{
    double t0 = cli_now_ms(), prev = cpu_ms(pid);
    bool told = false;
    usleep(500000);
    while (!interrupted && prev >= 0 && cli_now_ms() - t0 < 120000) {
        double cur = cpu_ms(pid);
        if (cur < 0 || cur - prev < 75) break;
        if (!told) fprintf(stderr, "  waiting for the server to go idle before the next run...\n");
        told = true;
        prev = cur;
        usleep(500000);
    }
}

/* ---- one run ---- */

struct result {
    int n, turns_ok, turns_total, timed_out, errored, failed_convs, n_created;
    double fa_p50, fa_p95, tot_p50, tot_p95, proc_p50, proc_p95, tok_p50, tok_p95;
    double tokens_per_s, cpu_ms_per_turn, client_cpu_ms_per_turn, wall_s, max_lag_ms;
    double rt_bound_ms;
    bool realtime;
    char first_error[200];
};

static int run(struct bench *b, int n, pid_t server, double rt_ms, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    struct conv *cv = calloc((size_t)n, sizeof *cv);
    struct turn_rec *tr = calloc((size_t)n * (size_t)b->turns, sizeof *tr);
    if (!cv || !tr) {
        free(cv);
        free(tr);
        fprintf(stderr, "banter bench serve: out of memory\n");
        return 1;
    }
    double t0 = cli_now_ms();
    for (int i = 0; i < n; i++) {
        cv[i].b = b;
        cv[i].id = i;
        cv[i].turns = tr + (size_t)i * (size_t)b->turns;
        cv[i].t_start = t0 + (n > 1 ? b->ramp_ms * i / n : 0);
    }
    b->convs = cv;
    b->n_convs = n;
    b->n_turns_done = b->n_failed_turns = 0;
    b->run_over = false;
    b->t_run0 = b->t_last_progress = t0;
    double cpu0 = cpu_ms(server), self0 = self_cpu_ms();
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, 1);
    while (!b->run_over)
        if (lws_service(b->ctx, 0) < 0) break;
    lws_sul_cancel(&b->tick);
    double wall = cli_now_ms() - t0;
    double cpu1 = cpu_ms(server), self1 = self_cpu_ms();

    int cap = n * b->turns;
    double *fa = malloc((size_t)cap * sizeof *fa), *tot = malloc((size_t)cap * sizeof *tot);
    double *proc = malloc((size_t)cap * sizeof *proc), *tok = malloc((size_t)cap * sizeof *tok);
    int n_fa = 0, n_tot = 0, n_proc = 0, n_tok = 0;
    long tokens = 0;
    r->turns_total = cap;
    for (int i = 0; i < n; i++) {
        struct conv *c = &cv[i];
        if (c->failed) {
            r->failed_convs++;
            if (!r->first_error[0]) snprintf(r->first_error, sizeof r->first_error, "conversation %d: %s", i, c->why);
        }
        if (c->max_lag_ms > r->max_lag_ms) r->max_lag_ms = c->max_lag_ms;
        if (c->created) r->n_created++;
        for (int t = 0; t < c->turn && t < b->turns; t++) {
            struct turn_rec *x = &c->turns[t];
            if (x->timed_out) r->timed_out++;
            if (x->errored) r->errored++;
            tokens += x->out_tokens;
            /* First audio counts for every turn whose reply began, even one that then failed or timed out: under
             * overload that is the latency a caller hears. */
            if (fa && x->first_audio_ms >= 0) fa[n_fa++] = x->first_audio_ms;
            if (!x->ok) continue;
            r->turns_ok++;
            if (tot && x->srv_total_ms >= 0) tot[n_tot++] = x->srv_total_ms;
            if (proc && x->srv_processing_ms >= 0) proc[n_proc++] = x->srv_processing_ms;
            if (tok && x->srv_first_token_ms >= 0) tok[n_tok++] = x->srv_first_token_ms;
        }
    }
    r->fa_p50 = cli_percentile(fa, n_fa, 50);
    r->fa_p95 = cli_percentile(fa, n_fa, 95);
    r->tot_p50 = cli_percentile(tot, n_tot, 50);
    r->tot_p95 = cli_percentile(tot, n_tot, 95);
    r->proc_p50 = cli_percentile(proc, n_proc, 50);
    r->proc_p95 = cli_percentile(proc, n_proc, 95);
    r->tok_p50 = cli_percentile(tok, n_tok, 50);
    r->tok_p95 = cli_percentile(tok, n_tok, 95);
    r->wall_s = wall / 1000;
    r->tokens_per_s = wall > 0 ? tokens / (wall / 1000) : 0;
    r->cpu_ms_per_turn = cpu0 >= 0 && cpu1 >= 0 && r->turns_ok ? (cpu1 - cpu0) / r->turns_ok : -1;
    r->client_cpu_ms_per_turn = r->turns_ok ? (self1 - self0) / r->turns_ok : -1;
    int silence = b->silence_ms ? b->silence_ms : b->srv_silence_ms ? b->srv_silence_ms : 400;
    r->rt_bound_ms = silence + rt_ms;
    r->realtime = r->turns_ok == r->turns_total && r->fa_p95 >= 0 && r->fa_p95 < r->rt_bound_ms &&
                  r->max_lag_ms < LAG_LIMIT_MS;
    free(fa);
    free(tot);
    free(proc);
    free(tok);
    for (int i = 0; i < n; i++) free(cv[i].rx);
    free(cv);
    free(tr);
    b->convs = NULL;
    b->n_convs = 0;
    return 0;
}

/* ---- the child server ---- */

struct child {
    pid_t pid;
    int port;
    int out_fd; /* its stdout, kept open so that it never writes into a closed pipe */
    char log[96];
};

/* Starts `/proc/self/exe serve -m MODEL --port 0 ...` and waits (up to 180 s) for its "listening on" line. */
static int start_server(const char *model, int max_sessions, char **extra, int n_extra, bool verbose,
                        struct child *ch)
{
    memset(ch, 0, sizeof *ch);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) {
        fprintf(stderr, "banter bench serve: pipe: %s\n", strerror(errno));
        return 1;
    }
    int logfd = 2;
    if (!verbose) {
        snprintf(ch->log, sizeof ch->log, "/tmp/banter-bench-serve-%d.log", (int)getpid());
        logfd = open(ch->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "banter bench serve: cannot write %s: %s\n", ch->log, strerror(errno));
            close(fds[0]);
            close(fds[1]);
            return 1;
        }
    }
    char ms[16];
    snprintf(ms, sizeof ms, "%d", max_sessions);
    char **args = calloc((size_t)n_extra + 10, sizeof *args);
    if (!args) {
        fprintf(stderr, "banter bench serve: out of memory\n");
        return 1;
    }
    int k = 0;
    args[k++] = "banter";
    args[k++] = "serve";
    args[k++] = "-m";
    args[k++] = (char *)model;
    args[k++] = "--port";
    args[k++] = "0";
    args[k++] = "--max-sessions";
    args[k++] = ms;
    for (int i = 0; i < n_extra; i++) args[k++] = extra[i];
    args[k] = NULL;
    /* The binary's own path, read before forking (under valgrind /proc/self/exe names the tool, but readlink on
     * it gives the program). */
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) snprintf(self, sizeof self, "/proc/self/exe");
    else self[sl] = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "banter bench serve: fork: %s\n", strerror(errno));
        free(args);
        return 1;
    }
    if (pid == 0) {
        dup2(fds[1], 1); /* dup2 clears close-on-exec on the copies */
        if (logfd != 2) dup2(logfd, 2);
        signal(SIGINT, SIG_DFL);
        execv(self, args);
        fprintf(stderr, "cannot run %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    free(args);
    close(fds[1]);
    if (logfd != 2) close(logfd);
    ch->pid = pid;
    char line[256];
    size_t len = 0;
    double deadline = cli_now_ms() + 180000;
    while (!interrupted) {
        double left = deadline - cli_now_ms();
        if (left <= 0) break;
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pf, 1, left > 1000 ? 1000 : (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t got = read(fds[0], line + len, sizeof line - 1 - len);
        if (got <= 0) break; /* the child exited */
        len += (size_t)got;
        line[len] = 0;
        char *nl = strchr(line, '\n');
        if (nl || len == sizeof line - 1) {
            const char *p = strstr(line, "listening on http://");
            const char *colon = p ? strrchr(p, ':') : NULL;
            long port = colon ? strtol(colon + 1, NULL, 10) : 0;
            if (port > 0 && port < 65536) {
                ch->port = (int)port;
                ch->out_fd = fds[0];
                return 0;
            }
            break;
        }
    }
    close(fds[0]);
    fprintf(stderr, "banter bench serve: the server did not start%s", interrupted ? " (interrupted)" : "");
    if (ch->log[0]) fprintf(stderr, "; its log (%s):\n", ch->log);
    else fprintf(stderr, "\n");
    if (ch->log[0]) {
        FILE *f = fopen(ch->log, "r");
        char buf[512];
        while (f && fgets(buf, sizeof buf, f)) fputs(buf, stderr);
        if (f) fclose(f);
        unlink(ch->log);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ch->pid = 0;
    return 1;
}

/* SIGINT, then up to 60 s for it to stop, then SIGKILL. Returns the child's exit status, or -1. */
static int stop_server(struct child *ch)
{
    if (ch->pid <= 0) return -1;
    kill(ch->pid, SIGINT);
    close(ch->out_fd);
    int status = 0;
    for (int i = 0; i < 600; i++) {
        pid_t w = waitpid(ch->pid, &status, WNOHANG);
        if (w == ch->pid) {
            ch->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        }
        usleep(100000);
    }
    fprintf(stderr, "banter bench serve: the server did not stop within 60 s of SIGINT; killing it\n");
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, &status, 0);
    ch->pid = 0;
    return -1;
}

/* ---- options ---- */

/* ws://host[:port][/path] (or http://). host and path are written into buf. */
static bool parse_url(const char *url, char *buf, size_t cap, const char **host, int *port, const char **path)
{
    const char *rest;
    if (!strncmp(url, "ws://", 5)) rest = url + 5;
    else if (!strncmp(url, "http://", 7)) rest = url + 7;
    else return false;
    size_t hl = strcspn(rest, ":/");
    if (hl == 0 || hl + 1 >= cap / 2) return false;
    memcpy(buf, rest, hl);
    buf[hl] = 0;
    *host = buf;
    *port = 80;
    rest += hl;
    if (*rest == ':') {
        char *end;
        long p = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || p <= 0 || p > 65535 || (*end && *end != '/')) return false;
        *port = (int)p;
        rest = end;
    }
    char *pb = buf + hl + 1;
    size_t room = cap - hl - 1;
    if (!*rest || !strcmp(rest, "/")) rest = "/v1/realtime";
    if (strlen(rest) + 1 > room) return false;
    memcpy(pb, rest, strlen(rest) + 1);
    *path = pb;
    return true;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1000 || n == max || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) return -1;
    }
    return n;
}

static void fmt_ms(char *buf, size_t cap, double a, double b)
{
    if (a < 0) snprintf(buf, cap, "-");
    else snprintf(buf, cap, "%.0f / %.0f", a, b);
}

int cmd_bench_serve(int argc, char **argv)
{
    const char *model = NULL, *url = NULL, *api_key = NULL;
    int sessions[32] = {4}, n_sessions = 1;
    long turns = 3, silence = 0, max_tokens = 0, rt_ms = 200, ramp = 2000, timeout_s = 60;
    bool json = false, verbose = false, user_max_sessions = false;
    char **extra = calloc((size_t)argc + 1, sizeof *extra);
    int n_extra = 0;
    if (!extra) return 1;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long x;
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            free(extra);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) goto out;
        } else if (!strcmp(a, "--url")) {
            if (!(url = cli_value(argc, argv, &i))) goto out;
        } else if (!strcmp(a, "--api-key")) {
            if (!(api_key = cli_value(argc, argv, &i))) goto out;
        } else if (!strcmp(a, "-n")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "-n", 1, 1000, &x)) goto out;
            sessions[0] = (int)x;
            n_sessions = 1;
        } else if (!strcmp(a, "--sessions")) {
            if (!(v = cli_value(argc, argv, &i))) goto out;
            n_sessions = parse_list(v, sessions, 32);
            if (n_sessions < 1) {
                fprintf(stderr, "banter bench serve: --sessions wants a comma-separated list of counts from 1 to "
                                "1000, like 1,4,16,32 (got '%s')\n", v);
                goto out;
            }
        } else if (!strcmp(a, "--turns")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--turns", 1, 1000, &turns)) goto out;
        } else if (!strcmp(a, "--silence-ms")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--silence-ms", 100, 10000, &silence)) goto out;
        } else if (!strcmp(a, "--max-tokens")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--max-tokens", 1, 65536, &max_tokens)) goto out;
        } else if (!strcmp(a, "--rt-ms")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--rt-ms", 1, 100000, &rt_ms)) goto out;
        } else if (!strcmp(a, "--ramp")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--ramp", 0, 600000, &ramp)) goto out;
        } else if (!strcmp(a, "--turn-timeout")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, "--turn-timeout", 1, 3600, &timeout_s))
                goto out;
        } else if (!strcmp(a, "--serve-arg")) {
            if (!(v = cli_value(argc, argv, &i))) goto out;
            if (!strcmp(v, "--max-sessions")) user_max_sessions = true;
            extra[n_extra++] = (char *)v;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "banter bench serve: unknown option '%s' (see banter bench serve --help)\n", a);
            goto out;
        }
    }
    if (!model == !url) {
        fprintf(stderr, "banter bench serve: give either -m MODEL (to start a server) or --url "
                        "ws://HOST:PORT/v1/realtime (a running one)%s\n", model ? ", not both" : "");
        goto out;
    }
    if (url && n_extra) {
        fprintf(stderr, "banter bench serve: --serve-arg applies only to the server started with -m\n");
        goto out;
    }
    char urlbuf[512];
    struct bench *b = calloc(1, sizeof *b);
    if (!b) {
        rc = 1;
        goto out;
    }
    if (url && !parse_url(url, urlbuf, sizeof urlbuf, &b->host, &b->port, &b->path)) {
        fprintf(stderr, "banter bench serve: --url must look like ws://127.0.0.1:8080/v1/realtime (got '%s')\n",
                url);
        free(b);
        goto out;
    }
    rc = 1;
    cli_log_init(verbose ? BANTER_LOG_INFO : BANTER_LOG_WARN);
    b->turns = (int)turns;
    b->silence_ms = (int)silence;
    b->max_tokens = (int)max_tokens;
    b->turn_timeout_ms = (double)timeout_s * 1000;
    b->ramp_ms = (double)ramp;
    b->verbose = verbose;
    b->api_key = api_key;
    int max_n = 0;
    for (int i = 0; i < n_sessions; i++)
        if (sessions[i] > max_n) max_n = sessions[i];

    struct sigaction sa, old_int, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    /* The questions, spoken once. */
    char err[512];
    banter_tts *tts = NULL;
    int16_t *qs[N_QUESTIONS] = {0};
    struct child ch = {0};
    struct result *res = calloc((size_t)n_sessions, sizeof *res);
    int n_res = 0;
    if (!res) goto fail_res;
    if (banter_tts_open(NULL, &tts, err, sizeof err)) {
        fprintf(stderr, "banter bench serve: cannot open the Flite voice: %s\n", err);
        goto fail_tts;
    }
    for (int i = 0; i < N_QUESTIONS; i++) {
        struct cli_pcm p = {0};
        banter_status st = banter_tts_synthesize(tts, QUESTIONS[i], cli_pcm_collect, &p, NULL);
        /* Flite pads its speech with silence; cut it, so that the question's last sample is the end of speech
         * (the measured interval then starts where the speaker stopped, as the server's VAD sees it). */
        size_t lo = 0, hi = p.n;
        while (lo < hi && fabsf(p.x[lo]) < SILENT) lo++;
        while (hi > lo && fabsf(p.x[hi - 1]) < SILENT) hi--;
        if (!st && hi > lo) qs[i] = resample_16_to_24(p.x + lo, hi - lo, &b->n_question[i]);
        free(p.x);
        if (!qs[i]) {
            fprintf(stderr, "banter bench serve: cannot synthesize the questions: %s\n",
                    st ? banter_tts_error(tts) : "out of memory");
            goto fail_speech;
        }
        b->questions[i] = qs[i];
    }

    if (model) {
        if (access(model, R_OK)) {
            fprintf(stderr, "banter bench serve: cannot read the model '%s': %s\n", model, strerror(errno));
            cli_model_hint();
            goto fail_speech;
        }
        fprintf(stderr, "starting banter serve -m %s...\n", model);
        if (start_server(model, user_max_sessions ? 16 : max_n + 4, extra, n_extra, verbose, &ch)) goto fail_speech;
        b->host = "127.0.0.1";
        b->port = ch.port;
        b->path = "/v1/realtime";
        fprintf(stderr, "server pid %d on port %d\n", (int)ch.pid, ch.port);
    }

    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.protocols = PROTOCOLS;
    ci.gid = -1;
    ci.uid = -1;
    ci.connect_timeout_secs = 10;
    ci.timeout_secs = 30;
    lws_set_log_level(verbose ? LLL_ERR | LLL_WARN : 0, NULL);
    b->ctx = lws_create_context(&ci);
    if (!b->ctx) {
        fprintf(stderr, "banter bench serve: cannot create a WebSocket client context\n");
        goto fail_ctx;
    }

    rc = 0;
    for (int i = 0; i < n_sessions && !interrupted; i++) {
        fprintf(stderr, "run %d/%d: %d conversation%s x %d turn%s against ws://%s:%d%s\n", i + 1, n_sessions,
                sessions[i], sessions[i] == 1 ? "" : "s", b->turns, b->turns == 1 ? "" : "s", b->host, b->port,
                b->path);
        if (run(b, sessions[i], ch.pid, (double)rt_ms, &res[n_res])) {
            rc = 1;
            break;
        }
        struct result *r = &res[n_res++];
        if (r->turns_ok < r->turns_total) rc = 1;
        if (r->first_error[0]) fprintf(stderr, "  %s\n", r->first_error);
        if (r->n_created == 0 && !interrupted) {
            fprintf(stderr, "banter bench serve: no conversation completed a turn at ws://%s:%d%s (%s)%s\n",
                    b->host, b->port, b->path, r->first_error, url ? " - is `banter serve -m MODEL` running there?" : "");
            n_res--;
            break;
        }
        if (i + 1 < n_sessions) wait_quiet(ch.pid);
    }
    if (interrupted) fprintf(stderr, "banter bench serve: interrupted\n");

    if (json) {
        printf("{\"url\": \"ws://%s:%d%s\", \"model\": ", b->host, b->port, b->path);
        if (model) {
            json_t *s = json_string(model);
            char *d = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            printf("%s", d ? d : "null");
            free(d);
            json_decref(s);
        } else {
            printf("null");
        }
        printf(", \"turns_per_conversation\": %d, \"endpoint_silence_ms\": %d, \"cpu_source\": \"%s\", \"runs\": [",
               b->turns, b->silence_ms ? b->silence_ms : b->srv_silence_ms, ch.pid ? "server" : "machine");
        int best = 0;
        for (int i = 0; i < n_res; i++) {
            struct result *r = &res[i];
            if (r->realtime && r->n > best) best = r->n;
            printf("%s{\"sessions\": %d, \"turns_ok\": %d, \"turns_total\": %d, \"timed_out\": %d, \"errored\": %d, "
                   "\"failed_conversations\": %d, \"first_audio_p50_ms\": %.1f, \"first_audio_p95_ms\": %.1f, "
                   "\"server_total_p50_ms\": %.1f, \"server_total_p95_ms\": %.1f, \"server_processing_p50_ms\": "
                   "%.1f, \"server_processing_p95_ms\": %.1f, \"server_first_token_p50_ms\": %.1f, "
                   "\"server_first_token_p95_ms\": %.1f, \"tokens_per_s\": %.1f, \"cpu_ms_per_turn\": %.0f, "
                   "\"client_cpu_ms_per_turn\": %.0f, \"wall_s\": %.1f, \"max_send_lag_ms\": %.1f, "
                   "\"realtime_bound_ms\": %.0f, \"realtime\": %s}",
                   i ? ", " : "", r->n, r->turns_ok, r->turns_total, r->timed_out, r->errored, r->failed_convs,
                   r->fa_p50, r->fa_p95, r->tot_p50, r->tot_p95, r->proc_p50, r->proc_p95, r->tok_p50, r->tok_p95,
                   r->tokens_per_s, r->cpu_ms_per_turn, r->client_cpu_ms_per_turn, r->wall_s, r->max_lag_ms,
                   r->rt_bound_ms, r->realtime ? "true" : "false");
        }
        printf("], \"largest_realtime_sessions\": %d}\n", best);
    } else if (n_res) {
        printf("%5s %10s %21s %21s %9s %12s %10s\n", "N", "turns ok", "first audio p50/p95", "server total p50/p95",
               "tokens/s", "CPU ms/turn", "real-time");
        int best = 0;
        for (int i = 0; i < n_res; i++) {
            struct result *r = &res[i];
            char ok[24], fa[32], tot[32], cpu[16];
            snprintf(ok, sizeof ok, "%d/%d", r->turns_ok, r->turns_total);
            fmt_ms(fa, sizeof fa, r->fa_p50, r->fa_p95);
            fmt_ms(tot, sizeof tot, r->tot_p50, r->tot_p95);
            if (r->cpu_ms_per_turn < 0) snprintf(cpu, sizeof cpu, "-");
            else snprintf(cpu, sizeof cpu, "%.0f", r->cpu_ms_per_turn);
            printf("%5d %10s %18s ms %18s ms %9.1f %12s %10s\n", r->n, ok, fa, tot, r->tokens_per_s, cpu,
                   r->realtime ? "yes" : "no");
            if (r->realtime && r->n > best) best = r->n;
        }
        double bound = res[0].rt_bound_ms;
        printf("(first audio: client-measured, end of the question's audio to the first reply audio, including the\n"
               " server's %.0f ms endpoint silence; CPU: %s; real-time: every turn completed, p95 first audio < %.0f "
               "ms\n and the client kept pace)\n",
               bound - (double)rt_ms, ch.pid ? "the server process" : "the whole machine, this client included",
               bound);
        if (best)
            printf("largest N that kept every conversation real-time with p95 < %.0f ms (endpoint silence + %ld "
                   "ms): %d\n", bound, rt_ms, best);
        else
            printf("largest N that kept every conversation real-time with p95 < %.0f ms (endpoint silence + %ld "
                   "ms): none\n", bound, rt_ms);
    }
    if (!n_res) rc = 1;

    lws_context_destroy(b->ctx);
fail_ctx:
    if (ch.pid) {
        int st = stop_server(&ch);
        if (st != 0) {
            fprintf(stderr, "banter bench serve: the server did not stop cleanly (status %d)%s%s\n", st,
                    ch.log[0] ? "; its log: " : "", ch.log);
            rc = 1;
        } else if (ch.log[0]) {
            unlink(ch.log);
        }
    }
fail_speech:
    for (int i = 0; i < N_QUESTIONS; i++) free(qs[i]);
    banter_tts_close(tts);
fail_tts:
    free(res);
fail_res:
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGINT, &old_int, NULL);
    free(b);
out:
    free(extra);
    return rc;
}
