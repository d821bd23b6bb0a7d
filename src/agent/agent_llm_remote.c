/*
 * agent_llm_remote.c: the remote language-model backend: any server that speaks OpenAI's
 * POST /v1/chat/completions with "stream": true (vLLM, TGI, llama.cpp's server, Ollama, hosted APIs).
 *
 * Each reply sends the whole conversation
 *
 *   POST {base}/v1/chat/completions
 *   Content-Type: application/json
 *   Accept: text/event-stream
 *   Authorization: Bearer KEY                          (when a key was given)
 *
 *   {"model":"NAME","messages":[{"role":"system","content":"..."},...],"stream":true,"max_tokens":256}
 *
 * and reads the reply as Server-Sent Events (sse.h), handing each delta's text to the caller the moment its
 * event is complete. The server keeps no state for us, so prepare and sync have nothing to do; the endpoint's
 * own prompt cache (vLLM's prefix caching, llama.cpp's slots) is what spares it re-reading the history.
 *
 * Design choices:
 * - Each conversation owns one curl easy handle inside its own multi handle, reused across its replies, so
 *   the TCP (and TLS) connection to the server stays open between turns. The transfer is driven with
 *   curl_multi_poll rather than curl_easy_perform because cancel must be prompt: curl_multi_wakeup, which
 *   any thread may call, interrupts the wait at once, whereas a progress callback only runs about once a
 *   second while the server is silent. After a cancel the write callback refuses further bytes, so no piece
 *   reaches the caller once cancel has returned and the reply has noticed it.
 * - The timeout is a silence limit: no byte for timeout_s seconds (while connecting, before the headers, or
 *   between events) fails the reply. A slow but steady stream never times out, however long it runs.
 * - After "data: [DONE]" the rest of the response (normally just the chunked-encoding trailer) is waited for
 *   briefly so the connection can be reused; a server that keeps the response open anyway is cut off after
 *   DONE_GRACE_MS, and the reply still succeeds.
 * - A stream that ends cleanly (the HTTP response completed) without [DONE] is accepted as a complete reply
 *   when it carried at least one event: some servers omit the marker, and nothing was lost. One that carried
 *   no event at all is not a chat-completions stream (BANTER_ERR_FORMAT). A connection that breaks before the
 *   response is complete is BANTER_ERR_IO, whatever was delivered before.
 * - An HTTP error's message is the server's own (error.message, error, message or detail of a JSON body, else
 *   the start of the body as text), cleaned of control characters and truncated, plus a hint for the usual
 *   causes (401/403: the key; 404: the URL). Redirects are not followed (a POST would turn into a GET); the
 *   message names the new location instead.
 * - Sizes are bounded: the response body to BODY_MAX bytes, one SSE line to 1 MiB, an error body to
 *   ERRBODY_MAX bytes kept (the rest is read and dropped).
 * - Message text that is not valid UTF-8 (an assistant reply cut inside a character at barge-in) has each
 *   invalid byte replaced by U+FFFD, since JSON strings must be UTF-8.
 * - libcurl is initialized once per process (pthread_once) and never cleaned up: other parts of the process
 *   may be using it, and its global state is what the C runtime frees at exit.
 */
#include "agent/agent_llm.h"
#include "agent/sse.h"
#include "core/core.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_MAX ((size_t)16 << 20) /* longest response body accepted */
#define ERRBODY_MAX 8192            /* bytes of an HTTP error's body kept for its message */
#define ERRTEXT_MAX 300             /* bytes of the server's message quoted in ours */
#define DONE_GRACE_MS 200.0         /* how long the end of the response is awaited after [DONE] */
#define KEY_MAX 8192                /* longest API key accepted */
#define DEFAULT_MAX_TOKENS 256
#define DEFAULT_TIMEOUT_S 30.0

struct remote {
    char *url;   /* the full endpoint, .../chat/completions */
    char *model; /* the "model" field sent */
    char *auth;  /* "Authorization: Bearer KEY", or NULL */
    double timeout_s;
    char *desc; /* "remote model NAME at URL" */
};

struct conv {
    const struct remote *r;
    int max_tokens;
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers;
    atomic_bool cancel; /* set by conv_cancel (any thread), cleared when a reply starts */

    /* The reply in progress; written only by the thread running it (the callbacks run inside
     * curl_multi_perform on that thread). */
    struct agent_sse sse;
    agent_piece_fn fn;
    void *user;
    double t0;                 /* core_time_ms at the start of the reply */
    double last_byte_ms;       /* when the last byte (header or body) arrived */
    double headers_ms;         /* since t0, when the final response's headers were complete (0 = not yet) */
    double first_piece_ms;     /* since t0 (0 = none yet) */
    long http_status;          /* of the final response so far (0 = none) */
    char content_type[128];    /* its Content-Type */
    char location[512];        /* its Location */
    size_t n_body;             /* body bytes received */
    char errbody[ERRBODY_MAX]; /* the start of an error response's body */
    size_t errbody_len;
    int fail;           /* a callback's failure (0 = none) */
    char fail_msg[640]; /* its message */
    char curl_err[CURL_ERROR_SIZE];
};

/* ------------------------------------------------------------------------------------------------------- */
/* libcurl's process-wide initialization */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void init_curl(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ------------------------------------------------------------------------------------------------------- */
/* text helpers */

/* Length of the valid UTF-8 sequence at s[0, n) (n >= 1), or 0 if it is not one. The rules are RFC 3629's:
 * no overlong forms, no surrogates, nothing above U+10FFFF (what jansson accepts in a string). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* A JSON string of s (NUL-terminated), with every byte that does not start a valid UTF-8 sequence replaced by
 * U+FFFD. NULL when out of memory. */
static json_t *json_text(const char *s)
{
    size_t n = strlen(s), i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) break;
        i += k;
    }
    if (i == n) return json_stringn(s, n);
    /* Each invalid byte (1 byte) becomes 3 bytes. */
    size_t cap;
    if (core_mul_overflow(n, 3, &cap)) return NULL;
    char *fixed = core_malloc(cap);
    if (!fixed) return NULL;
    size_t o = 0;
    for (i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (k) {
            memcpy(fixed + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(fixed, o);
    core_free(fixed);
    return j;
}

/* Copies server-provided text into dst for a message: control characters become spaces (runs collapse into
 * one), surrounding space is trimmed, and more than ERRTEXT_MAX bytes are cut at a character boundary with
 * "...". */
static void clean_text(char *dst, size_t dst_len, const char *src, size_t n)
{
    BANTER_ASSERT(dst_len >= 8);
    size_t room = dst_len - 4, o = 0, i = 0;
    if (room > ERRTEXT_MAX) room = ERRTEXT_MAX;
    bool space = true; /* drops leading space */
    for (; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            if (!space && o < room) dst[o++] = ' ';
            space = true;
            continue;
        }
        if (o >= room) break;
        dst[o++] = (char)c;
        space = false;
    }
    bool cut = false;
    for (; i < n; i++)
        if ((unsigned char)src[i] > ' ' && src[i] != 0x7f) cut = true;
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    if (cut) {
        while (o > 0 && ((unsigned char)dst[o - 1] & 0xc0) == 0x80)
            o--;
        if (o > 0 && (unsigned char)dst[o - 1] >= 0xc0) o--;
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
}

/* The message of an HTTP error body: JSON error.message / error / message / detail, else the text. */
static void error_body_text(const char *body, size_t n, char *dst, size_t dst_len)
{
    dst[0] = 0;
    json_t *root = n ? json_loadb(body, n, 0, NULL) : NULL;
    if (json_is_object(root)) {
        json_t *e = json_object_get(root, "error");
        json_t *m = NULL;
        if (json_is_string(e))
            m = e;
        else if (json_is_object(e))
            m = json_object_get(e, "message");
        if (!json_is_string(m)) m = json_object_get(root, "message");
        if (!json_is_string(m)) m = json_object_get(root, "detail");
        if (json_is_string(m)) {
            clean_text(dst, dst_len, json_string_value(m), json_string_length(m));
        } else {
            json_t *what = e ? e : json_object_get(root, "detail");
            char *dump = json_dumps(what ? what : root, JSON_COMPACT);
            if (dump) clean_text(dst, dst_len, dump, strlen(dump));
            free(dump); /* allocated by jansson */
        }
        json_decref(root);
        if (dst[0]) return;
    } else {
        json_decref(root);
    }
    clean_text(dst, dst_len, body, n);
}

/* ------------------------------------------------------------------------------------------------------- */
/* curl callbacks */

__attribute__((format(printf, 3, 4))) static void set_fail(struct conv *c, int status, const char *fmt, ...)
{
    if (c->fail) return; /* the first failure is the cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_msg, sizeof c->fail_msg, fmt, ap);
    va_end(ap);
    c->fail = status;
}

static bool cancelled(struct conv *c)
{
    return atomic_load_explicit(&c->cancel, memory_order_acquire);
}

static bool status_ok(long status)
{
    return status >= 200 && status < 300;
}

static int on_piece(const char *text, size_t len, void *user)
{
    struct conv *c = user;
    if (cancelled(c)) return 0;
    if (c->first_piece_ms == 0) c->first_piece_ms = core_time_ms() - c->t0;
    return c->fn(text, len, c->user);
}

/* Copies a header's value (after "Name:"), trimmed, into dst. */
static void header_value(const char *line, size_t n, size_t name_len, char *dst, size_t dst_len)
{
    size_t a = name_len + 1, b = n;
    while (a < b && (line[a] == ' ' || line[a] == '\t'))
        a++;
    while (b > a && (unsigned char)line[b - 1] <= ' ')
        b--;
    size_t k = b - a < dst_len - 1 ? b - a : dst_len - 1;
    memcpy(dst, line + a, k);
    dst[k] = 0;
}

static bool header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && line[k] == ':' && strncasecmp(line, name, k) == 0;
}

/* Called once per header line, including the status line of each response (a 100 Continue comes before the
 * final one) and the blank line that ends the headers. */
static size_t on_header(char *line, size_t size, size_t nitems, void *user)
{
    struct conv *c = user;
    size_t n = size * nitems;
    c->last_byte_ms = core_time_ms();
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        size_t i = 5;
        while (i < n && line[i] != ' ')
            i++;
        while (i < n && line[i] == ' ')
            i++;
        long status = 0;
        for (int d = 0; d < 3 && i < n && line[i] >= '0' && line[i] <= '9'; d++, i++)
            status = status * 10 + (line[i] - '0');
        c->http_status = status;
        c->content_type[0] = 0;
        c->location[0] = 0;
    } else if (header_is(line, n, "content-type")) {
        header_value(line, n, strlen("content-type"), c->content_type, sizeof c->content_type);
    } else if (header_is(line, n, "location")) {
        header_value(line, n, strlen("location"), c->location, sizeof c->location);
    } else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
        if (c->http_status >= 200 && c->headers_ms == 0) c->headers_ms = core_time_ms() - c->t0;
    }
    return n;
}

/* Body bytes: fed to the event-stream parser, or kept for the message of an HTTP error. Returning less than
 * n makes curl end the transfer with CURLE_WRITE_ERROR; c->fail then says why. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    struct conv *c = user;
    size_t n = size * nmemb;
    c->last_byte_ms = core_time_ms();
    if (c->headers_ms == 0) c->headers_ms = c->last_byte_ms - c->t0;
    if (cancelled(c)) {
        set_fail(c, BANTER_ERR_CANCELLED, "the reply was cancelled");
        return 0;
    }
    if (!status_ok(c->http_status)) {
        size_t k = ERRBODY_MAX - c->errbody_len;
        if (k > n) k = n;
        memcpy(c->errbody + c->errbody_len, data, k);
        c->errbody_len += k;
        return n;
    }
    if (n > BODY_MAX - c->n_body) {
        set_fail(c, BANTER_ERR_FORMAT, "%s: the reply is longer than %zu MiB", c->r->url, BODY_MAX >> 20);
        return 0;
    }
    c->n_body += n;
    if (c->sse.done) return n; /* the rest after [DONE] is ignored */
    char msg[sizeof c->fail_msg - 128];
    int rc = agent_sse_feed(&c->sse, data, n, on_piece, c, msg, sizeof msg);
    if (rc == BANTER_ERR_CANCELLED)
        set_fail(c, rc, "the reply was %s", cancelled(c) ? "cancelled" : "stopped by its receiver");
    else if (rc)
        set_fail(c, rc, "%s: %s", c->r->url, msg);
    return rc ? 0 : n;
}

/* ------------------------------------------------------------------------------------------------------- */
/* the request */

/* The request body (allocated by jansson: free with free()), or NULL with the status in *rc. */
static char *build_request(const struct conv *c, const banter_chat_message *msgs, size_t n, int *rc,
                           char *err, size_t err_len)
{
    json_t *root = json_object(), *arr = json_array();
    bool bad = !root || !arr;
    if (!bad) bad |= json_object_set_new(root, "model", json_string(c->r->model)) != 0;
    for (size_t i = 0; i < n && !bad; i++) {
        if (!msgs[i].role || !msgs[i].content || !msgs[i].role[0]) {
            core_errf(err, err_len, "message %zu of the conversation has no role or no content", i);
            json_decref(arr);
            json_decref(root);
            *rc = BANTER_ERR_INVALID_ARG;
            return NULL;
        }
        json_t *m = json_object();
        bad |= !m;
        if (!bad) bad |= json_object_set_new(m, "role", json_text(msgs[i].role)) != 0;
        if (!bad) bad |= json_object_set_new(m, "content", json_text(msgs[i].content)) != 0;
        if (!bad) {
            bad |= json_array_append_new(arr, m) != 0;
        } else {
            json_decref(m);
        }
    }
    if (!bad) {
        bad |= json_object_set_new(root, "messages", arr) != 0;
        arr = NULL;
    }
    if (!bad) bad |= json_object_set_new(root, "stream", json_true()) != 0;
    if (!bad) bad |= json_object_set_new(root, "max_tokens", json_integer(c->max_tokens)) != 0;
    char *body = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(arr);
    json_decref(root);
    if (!body) {
        core_errf(err, err_len, "out of memory building the request to %s", c->r->url);
        *rc = BANTER_ERR_NOMEM;
    }
    return body;
}

/* ------------------------------------------------------------------------------------------------------- */
/* the transfer */

/* Why a transfer curl gave up on failed, in words: the system's reason when there is one. */
static void curl_reason(struct conv *c, CURLcode res, char *dst, size_t dst_len)
{
    long os_errno = 0;
    curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &os_errno);
    if (os_errno > 0 &&
        (res == CURLE_COULDNT_CONNECT || res == CURLE_RECV_ERROR || res == CURLE_SEND_ERROR)) {
        char buf[128];
        core_errf(dst, dst_len, "%s", strerror_r((int)os_errno, buf, sizeof buf));
    } else if (c->curl_err[0]) {
        core_errf(dst, dst_len, "%s", c->curl_err);
    } else {
        core_errf(dst, dst_len, "%s", curl_easy_strerror(res));
    }
}

/* The status and message of a transfer that ended (or was stopped) with result res. */
static int outcome(struct conv *c, int loop_rc, bool finished, CURLcode res, char *err, size_t err_len)
{
    const char *url = c->r->url;
    if (loop_rc) return loop_rc; /* the message is already in err */
    if (c->fail) {
        core_errf(err, err_len, "%s", c->fail_msg);
        return c->fail;
    }
    /* After [DONE] the reply is complete: a response that does not end, or a connection that breaks while
     * it ends, loses nothing. (The loop only leaves a transfer unfinished in that case.) */
    if (c->sse.done) return 0;
    BANTER_ASSERT(finished);
    if (res != CURLE_OK) {
        char why[CURL_ERROR_SIZE + 64];
        curl_reason(c, res, why, sizeof why);
        switch (res) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_OPERATION_TIMEDOUT:
            core_errf(err, err_len, "cannot reach %s: %s", url, why);
            break;
        case CURLE_GOT_NOTHING:
            core_errf(err, err_len, "%s: the server closed the connection without replying", url);
            break;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
            core_errf(err, err_len, "%s: the connection broke in the middle of the reply (%s)", url, why);
            break;
        default:
            core_errf(err, err_len, "%s: %s", url, why);
            break;
        }
        return BANTER_ERR_IO;
    }
    if (!status_ok(c->http_status)) {
        char text[ERRTEXT_MAX + 8];
        error_body_text(c->errbody, c->errbody_len, text, sizeof text);
        const char *hint = "";
        if (c->http_status == 401 || c->http_status == 403)
            hint = " (check the API key)";
        else if (c->http_status == 404)
            hint = " (give the server's base address, such as http://host:8080)";
        if (c->http_status >= 300 && c->http_status < 400 && c->location[0])
            core_errf(err, err_len, "%s: HTTP %ld: the server redirects to %s; use that URL", url,
                      c->http_status, c->location);
        else
            core_errf(err, err_len, "%s: HTTP %ld%s%s%s", url, c->http_status, text[0] ? ": " : "", text,
                      hint);
        return BANTER_ERR_IO;
    }
    char msg[sizeof c->fail_msg - 128];
    int rc = agent_sse_finish(&c->sse, on_piece, c, msg, sizeof msg);
    if (rc == BANTER_ERR_CANCELLED) {
        core_errf(err, err_len, "the reply was %s", cancelled(c) ? "cancelled" : "stopped by its receiver");
        return rc;
    }
    if (rc) {
        core_errf(err, err_len, "%s: %s", url, msg);
        return rc;
    }
    if (!c->sse.done && c->sse.n_events == 0) {
        core_errf(err, err_len,
                  "%s: the reply has no events (Content-Type: %s); is this an OpenAI-compatible "
                  "chat completions endpoint?",
                  url, c->content_type[0] ? c->content_type : "none");
        return BANTER_ERR_FORMAT;
    }
    return 0;
}

/* Runs the prepared transfer to its end, a failure, a cancel or the silence limit. */
static int transfer(struct conv *c, char *err, size_t err_len)
{
    const char *url = c->r->url;
    CURLMcode mc = curl_multi_add_handle(c->multi, c->easy);
    if (mc != CURLM_OK) {
        core_errf(err, err_len, "cannot start the request to %s: %s", url, curl_multi_strerror(mc));
        return BANTER_ERR_IO;
    }
    double timeout_ms = c->r->timeout_s * 1000.0, done_at = 0;
    int running = 1, loop_rc = 0;
    for (;;) {
        mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK) {
            core_errf(err, err_len, "%s: %s", url, curl_multi_strerror(mc));
            loop_rc = BANTER_ERR_IO;
            break;
        }
        if (!running) break;
        if (cancelled(c)) {
            core_errf(err, err_len, "the reply was cancelled");
            loop_rc = BANTER_ERR_CANCELLED;
            break;
        }
        double now = core_time_ms(), deadline;
        if (c->sse.done) {
            if (done_at == 0) done_at = now;
            deadline = done_at + DONE_GRACE_MS;
            if (now >= deadline) break;
        } else {
            deadline = c->last_byte_ms + timeout_ms;
            if (now >= deadline) {
                /* The pre-transfer time is set once a connection (new or reused) carries the request. */
                curl_off_t pretransfer_us = 0;
                curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
                if (pretransfer_us == 0)
                    core_errf(err, err_len, "cannot reach %s: no connection within %g s", url,
                              c->r->timeout_s);
                else if (c->http_status == 0)
                    core_errf(err, err_len, "%s: the server did not answer within %g s", url,
                              c->r->timeout_s);
                else
                    core_errf(err, err_len, "%s: the server sent nothing for %g s in the middle of the reply",
                              url, c->r->timeout_s);
                loop_rc = BANTER_ERR_IO;
                break;
            }
        }
        double wait = deadline - now;
        int wait_ms = wait > 1000 ? 1000 : wait < 1 ? 1 : (int)ceil(wait);
        mc = curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL);
        if (mc != CURLM_OK) {
            core_errf(err, err_len, "%s: %s", url, curl_multi_strerror(mc));
            loop_rc = BANTER_ERR_IO;
            break;
        }
    }
    bool finished = false;
    CURLcode res = CURLE_OK;
    CURLMsg *m;
    int n_left;
    while ((m = curl_multi_info_read(c->multi, &n_left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy) {
            finished = true;
            res = m->data.result;
        }
    int rc = outcome(c, loop_rc, finished, res, err, err_len);
    /* Removing an unfinished transfer closes its connection; a finished one goes back to the cache. */
    curl_multi_remove_handle(c->multi, c->easy);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------- */
/* the ops */

static int conv_reply(void *p, const banter_chat_message *msgs, size_t n, agent_piece_fn fn, void *user,
                      struct agent_llm_stats *st, char *err, size_t err_len)
{
    struct conv *c = p;
    struct agent_llm_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    c->t0 = core_time_ms();
    atomic_store_explicit(&c->cancel, false, memory_order_release);
    if (!fn || (n > 0 && !msgs)) {
        core_errf(err, err_len, "reply needs messages and a piece callback");
        return BANTER_ERR_INVALID_ARG;
    }
    int rc = 0;
    char *body = build_request(c, msgs, n, &rc, err, err_len);
    if (!body) return rc;

    agent_sse_init(&c->sse, 0);
    c->fn = fn;
    c->user = user;
    c->last_byte_ms = c->t0;
    c->headers_ms = c->first_piece_ms = 0;
    c->http_status = 0;
    c->content_type[0] = c->location[0] = 0;
    c->n_body = c->errbody_len = 0;
    c->fail = 0;
    c->fail_msg[0] = c->curl_err[0] = 0;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));

    rc = transfer(c, err, err_len);

    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, NULL);
    free(body); /* allocated by jansson */
    st->n_generated = c->sse.n_pieces;
    st->prefill_ms = c->headers_ms;
    st->first_piece_ms = c->first_piece_ms;
    st->total_ms = core_time_ms() - c->t0;
    agent_sse_deinit(&c->sse);
    c->fn = NULL;
    c->user = NULL;
    return rc;
}

static int conv_prepare(void *p, const banter_chat_message *msgs, size_t n, struct agent_llm_stats *st,
                        char *err, size_t err_len)
{
    if (st) memset(st, 0, sizeof *st);
    return 0;
}

static int conv_sync(void *p, const banter_chat_message *msgs, size_t n)
{
    return 0;
}

static void conv_cancel(void *p)
{
    struct conv *c = p;
    atomic_store_explicit(&c->cancel, true, memory_order_release);
    curl_multi_wakeup(c->multi);
}

static int conv_cached(void *p)
{
    return -1;
}

static void conv_close(void *p)
{
    struct conv *c = p;
    if (!c) return;
    curl_multi_cleanup(c->multi);
    curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    core_free(c);
}

/* Appends one header line to the list; false when out of memory. */
static bool add_header(struct curl_slist **list, const char *h)
{
    struct curl_slist *l = curl_slist_append(*list, h);
    if (!l) return false;
    *list = l;
    return true;
}

static int conv_open(void *backend, const struct agent_reply_config *cfg, void **out, char *err,
                     size_t err_len)
{
    const struct remote *r = backend;
    *out = NULL;
    if (cfg && cfg->max_tokens < 0) {
        core_errf(err, err_len, "max_tokens must be positive, or 0 for the default %d (got %d)",
                  DEFAULT_MAX_TOKENS, cfg->max_tokens);
        return BANTER_ERR_INVALID_ARG;
    }
    struct conv *c = core_calloc(1, sizeof *c);
    if (!c) goto fail_alloc;
    c->r = r;
    c->max_tokens = cfg && cfg->max_tokens > 0 ? cfg->max_tokens : DEFAULT_MAX_TOKENS;
    atomic_init(&c->cancel, false);
    c->easy = curl_easy_init();
    if (!c->easy) goto fail_easy;
    c->multi = curl_multi_init();
    if (!c->multi) goto fail_multi;
    /* "Expect:" turns off curl's 100-continue handshake for large bodies, which costs a round trip (or a
     * second's wait on servers that ignore it). */
    if (!add_header(&c->headers, "Content-Type: application/json") ||
        !add_header(&c->headers, "Accept: text/event-stream") || !add_header(&c->headers, "Expect:") ||
        (r->auth && !add_header(&c->headers, r->auth)))
        goto fail_headers;

    CURL *e = c->easy;
    bool bad = false;
    bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(r->timeout_s * 1000.0)) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    if (bad) {
        core_errf(err, err_len, "this libcurl does not accept the options a request to %s needs", r->url);
        conv_close(c);
        return BANTER_ERR_UNSUPPORTED;
    }
    *out = c;
    return 0;

fail_headers:
    curl_slist_free_all(c->headers);
    curl_multi_cleanup(c->multi);
fail_multi:
    curl_easy_cleanup(c->easy);
fail_easy:
    core_free(c);
fail_alloc:
    core_errf(err, err_len, "out of memory opening a conversation with %s", r->url);
    return BANTER_ERR_NOMEM;
}

static const char *remote_describe(void *backend)
{
    const struct remote *r = backend;
    return r->desc;
}

static void remote_close(void *backend)
{
    struct remote *r = backend;
    if (!r) return;
    core_free(r->desc);
    if (r->auth) {
        /* The key should not linger in freed memory. */
        volatile char *k = r->auth;
        for (size_t i = 0; k[i]; i++)
            k[i] = 0;
        core_free(r->auth);
    }
    core_free(r->model);
    core_free(r->url);
    core_free(r);
}

static const struct agent_llm_ops remote_ops = {
    .name = "remote",
    .close = remote_close,
    .describe = remote_describe,
    .conv_open = conv_open,
    .conv_close = conv_close,
    .prepare = conv_prepare,
    .reply = conv_reply,
    .sync = conv_sync,
    .cancel = conv_cancel,
    .cached = conv_cached,
};

/* ------------------------------------------------------------------------------------------------------- */
/* opening */

static bool has_prefix_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* The endpoint for a base URL (see agent_llm_remote_open), validated by curl's URL parser; NULL with a
 * message and status on failure. */
static char *endpoint_url(const char *url, int *rc, char *err, size_t err_len)
{
    *rc = BANTER_ERR_INVALID_ARG;
    if (!url || !url[0]) {
        core_errf(err, err_len, "no model server URL given (such as http://localhost:8080)");
        return NULL;
    }
    if (!has_prefix_nocase(url, "http://") && !has_prefix_nocase(url, "https://")) {
        core_errf(err, err_len, "the model server URL must start with http:// or https:// (got \"%.200s\")",
                  url);
        return NULL;
    }
    for (const char *s = url; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) {
            core_errf(err, err_len, "the model server URL contains a space or control character: \"%.200s\"",
                      url);
            return NULL;
        }

    char *host = NULL, *path = NULL, *new_path = NULL, *full = NULL, *result = NULL;
    const char *why = NULL;
    CURLU *u = curl_url();
    if (!u) goto nomem;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc == CURLUE_OK && (!host || !host[0])) why = "no host";
    if (uc == CURLUE_OK && !why) uc = curl_url_get(u, CURLUPART_PATH, &path, 0);
    if (uc != CURLUE_OK || why) goto invalid;

    /* The path without trailing slashes, then whatever part of /v1/chat/completions it lacks. */
    size_t n = strlen(path), len;
    while (n > 0 && path[n - 1] == '/')
        n--;
    const char *suffix = ends_with(path, n, "/chat/completions") ? ""
                         : ends_with(path, n, "/v1")             ? "/chat/completions"
                                                                 : "/v1/chat/completions";
    if (core_add_overflow(n, strlen(suffix) + 1, &len)) goto nomem;
    new_path = core_malloc(len);
    if (!new_path) goto nomem;
    memcpy(new_path, path, n);
    memcpy(new_path + n, suffix, strlen(suffix) + 1);
    uc = curl_url_set(u, CURLUPART_PATH, new_path, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_URL, &full, 0);
    if (uc != CURLUE_OK) goto invalid;
    result = core_strdup(full);
    if (!result) goto nomem;
    *rc = 0;
    goto out;

invalid:
    core_errf(err, err_len, "invalid model server URL \"%.200s\": %s", url,
              why ? why : curl_url_strerror(uc));
    goto out;
nomem:
    core_errf(err, err_len, "out of memory");
    *rc = BANTER_ERR_NOMEM;
out:
    core_free(new_path);
    curl_free(full);
    curl_free(path);
    curl_free(host);
    curl_url_cleanup(u);
    return result;
}

int agent_llm_remote_open(const char *url, const char *model, const char *api_key, double timeout_s,
                          struct agent_llm *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    if (!(timeout_s >= 0) || timeout_s > 1e6) {
        core_errf(err, err_len, "the model server timeout must be 0 (default, %g s) to 1e6 seconds (got %g)",
                  DEFAULT_TIMEOUT_S, timeout_s);
        return BANTER_ERR_INVALID_ARG;
    }
    if (!model || !model[0]) model = "default";
    json_t *probe = json_string(model);
    if (!probe) {
        core_errf(err, err_len, "the model name is not valid UTF-8");
        return BANTER_ERR_INVALID_ARG;
    }
    json_decref(probe);
    if (api_key && api_key[0]) {
        size_t k = strnlen(api_key, KEY_MAX + 1);
        if (k > KEY_MAX) {
            core_errf(err, err_len, "the API key is longer than %d bytes", KEY_MAX);
            return BANTER_ERR_INVALID_ARG;
        }
        for (size_t i = 0; i < k; i++)
            if ((unsigned char)api_key[i] < ' ' || api_key[i] == 0x7f) {
                core_errf(err, err_len, "the API key contains a control character (a line break?)");
                return BANTER_ERR_INVALID_ARG;
            }
    }
    pthread_once(&curl_once, init_curl);
    if (curl_init_result != CURLE_OK) {
        core_errf(err, err_len, "libcurl failed to initialize: %s", curl_easy_strerror(curl_init_result));
        return BANTER_ERR_INTERNAL;
    }

    int rc;
    char *endpoint = endpoint_url(url, &rc, err, err_len);
    if (!endpoint) return rc;
    struct remote *r = core_calloc(1, sizeof *r);
    if (!r) goto fail_nomem;
    r->url = endpoint;
    endpoint = NULL;
    r->timeout_s = timeout_s > 0 ? timeout_s : DEFAULT_TIMEOUT_S;
    r->model = core_strdup(model);
    if (!r->model) goto fail_nomem;
    if (api_key && api_key[0]) {
        const char *prefix = "Authorization: Bearer ";
        size_t len;
        if (core_add_overflow(strlen(prefix), strlen(api_key) + 1, &len)) goto fail_nomem;
        r->auth = core_malloc(len);
        if (!r->auth) goto fail_nomem;
        memcpy(r->auth, prefix, strlen(prefix));
        memcpy(r->auth + strlen(prefix), api_key, strlen(api_key) + 1);
    }
    int dn = snprintf(NULL, 0, "remote model %s at %s", r->model, r->url);
    if (dn < 0) goto fail_nomem;
    r->desc = core_malloc((size_t)dn + 1);
    if (!r->desc) goto fail_nomem;
    snprintf(r->desc, (size_t)dn + 1, "remote model %s at %s", r->model, r->url);
    out->ops = &remote_ops;
    out->state = r;
    return 0;

fail_nomem:
    core_free(endpoint);
    remote_close(r);
    core_errf(err, err_len, "out of memory opening the remote model backend");
    return BANTER_ERR_NOMEM;
}
