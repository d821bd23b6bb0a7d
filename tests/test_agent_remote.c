/*
 * test_agent_remote.c: the remote language-model backend (agent_llm_remote.c) and its event-stream parser
 * (sse.c).
 *
 * The backend is tested against a test double of a model server: an HTTP server written here, on a thread
 * listening on 127.0.0.1 (port 0, so the system picks a free one). For each request it records the request
 * bytes and answers with a scripted response: raw HTTP bytes, sent whole or in small writes with pauses, or
 * not at all, with the connection then closed, kept alive for the next request, or held open until the client
 * leaves. Nothing here needs a real model or the network beyond the loopback interface.
 *
 *   1. Parser: one stream with every feature (comments, event/id/retry fields, multi-line data, CRLF, empty
 *      and role-only deltas, a usage chunk) gives the same pieces fed whole, split at every position,
 *      byte by byte and in random pieces; lone-CR line ends; [DONE] ends it; error events in all three forms;
 *      each kind of malformed stream fails with BANTER_ERR_FORMAT; line and data limits; the callback can
 *      stop; failures are sticky; an unterminated last event is dispatched at the end; injected allocation
 *      failures.
 *   2. Opening: the URL rule (base, /v1, full path, trailing slashes, other prefixes), refused URLs, keys and
 *      timeouts, describe, the no-op ops (prepare, sync, cached), injected allocation failures.
 *   3. A streamed reply: the pieces concatenate to the text sent, and the server received a POST to
 *      /v1/chat/completions with a JSON body (model, messages in order, stream: true, max_tokens) and the
 *      Authorization header (absent without a key); text that is not UTF-8 is sent repaired; stats.
 *   4. Transport: events split across many small writes with pauses, byte by byte; CRLF and keep-alive
 *      comments; the connection kept and reused for the next reply; a server that keeps the response open
 *      after [DONE].
 *   5. Failures: HTTP 500 with a JSON error (its message surfaces), 401 with a text body, 404 without body,
 *      a redirect; connection refused; a server that never answers and one that stalls mid-reply (timeout
 *      0.5 s); a connection broken mid-reply; garbage, HTML, a plain JSON body, an empty body; an error
 *      event; a stream without [DONE] (accepted after content); an oversized line; a body over 16 MiB.
 *   6. Stopping: cancel from another thread during a slow stream and during silence (prompt, no piece after
 *      it, the conversation usable afterwards); the piece callback returning 0.
 * Elapsed times are printed; the only time checks are generous "does not hang" bounds.
 */
#include "agent/agent_llm.h"
#include "agent/sse.h"
#include "core/core.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define CHECK_CONTAINS(hay, needle)                                                                          \
    do {                                                                                                     \
        const char *h_ = (hay), *n_ = (needle);                                                              \
        test_n_checks++;                                                                                     \
        if (!h_ || !strstr(h_, n_)) {                                                                        \
            test_n_failed++;                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: \"%s\" contains \"%s\"\n", __FILE__, __LINE__,             \
                    h_ ? h_ : "(null)", n_);                                                                 \
        }                                                                                                    \
    } while (0)

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------------------------------------- */
/* a growable byte buffer */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        BANTER_ASSERT(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    BANTER_ASSERT(n >= 0 && (size_t)n < sizeof tmp);
    buf_add(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------------------------------------------- */
/* streams */

/* One chat.completion.chunk with a content delta, as a JSON line (allocated by jansson). */
static char *chunk_json(const char *content)
{
    json_t *j = json_pack("{s:s, s:s, s:[{s:i, s:{s:s}, s:n}]}", "id", "chatcmpl-1", "object",
                          "chat.completion.chunk", "choices", "index", 0, "delta", "content", content,
                          "finish_reason");
    BANTER_ASSERT(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    BANTER_ASSERT(s);
    return s;
}

/* An event stream of the given pieces: a role chunk, one chunk per piece, a finish chunk, then [DONE] (when
 * done). eol ends each line; with extras, keep-alive comments and event/id/retry fields are mixed in. */
static void make_stream(struct buf *b, const char *const *pieces, size_t n, const char *eol, bool extras,
                        bool done)
{
    if (extras) buf_fmt(b, ": keep-alive%sretry: 3000%s%s", eol, eol, eol);
    buf_fmt(b, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}%s%s",
            eol, eol);
    for (size_t i = 0; i < n; i++) {
        char *js = chunk_json(pieces[i]);
        if (extras) buf_fmt(b, "event: message%sid: %zu%s", eol, i, eol);
        buf_str(b, "data: ");
        buf_str(b, js);
        buf_fmt(b, "%s%s", eol, eol);
        if (extras) buf_fmt(b, ":%s", eol);
        free(js);
    }
    buf_fmt(b, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}%s%s", eol, eol);
    if (done) buf_fmt(b, "data: [DONE]%s%s", eol, eol);
}

static const char *const PIECES[] = {
    "Hel", "lo", ", wor", "ld! ", "Gr\xc3\xbc\xc3\x9f Gott ", "\"quoted\" \\ ", "line\nbreak ", "done."};
#define N_PIECES (sizeof PIECES / sizeof PIECES[0])

static void joined_pieces(char *dst, size_t len)
{
    dst[0] = 0;
    for (size_t i = 0; i < N_PIECES; i++) {
        BANTER_ASSERT(strlen(dst) + strlen(PIECES[i]) < len);
        memcpy(dst + strlen(dst), PIECES[i], strlen(PIECES[i]) + 1);
    }
}

/* ------------------------------------------------------------------------------------------------------- */
/* collecting pieces */

struct collected {
    char text[1 << 16];
    size_t len;
    atomic_int n;
    int stop_after; /* return 0 after this many pieces (0 = never) */
};

static int collect(const char *piece, size_t len, void *user)
{
    struct collected *col = user;
    BANTER_ASSERT(len > 0);
    BANTER_ASSERT(col->len + len < sizeof col->text);
    memcpy(col->text + col->len, piece, len);
    col->len += len;
    col->text[col->len] = 0;
    int n = atomic_fetch_add(&col->n, 1) + 1;
    return !(col->stop_after && n >= col->stop_after);
}

static void collected_reset(struct collected *col)
{
    col->text[0] = 0;
    col->len = 0;
    atomic_store(&col->n, 0);
    col->stop_after = 0;
}

/* ------------------------------------------------------------------------------------------------------- */
/* 1. the parser */

struct parse_result {
    int status;
    bool done;
    int n_pieces;
    char text[8192];
    size_t len;
    char err[512];
};

static int parse_collect(const char *piece, size_t len, void *user)
{
    struct parse_result *r = user;
    BANTER_ASSERT(r->len + len < sizeof r->text);
    memcpy(r->text + r->len, piece, len);
    r->len += len;
    r->text[r->len] = 0;
    return 1;
}

/* Parses s[0, n) fed in the pieces that cuts[0 .. n_cuts) (increasing positions) make. */
static void parse_cuts(const char *s, size_t n, const size_t *cuts, size_t n_cuts, size_t max_line,
                       struct parse_result *r)
{
    memset(r, 0, sizeof *r);
    struct agent_sse p;
    agent_sse_init(&p, max_line);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i <= n_cuts && !rc; i++) {
        size_t end = i < n_cuts ? cuts[i] : n;
        rc = agent_sse_feed(&p, s + at, end - at, parse_collect, r, r->err, sizeof r->err);
        at = end;
    }
    if (!rc) rc = agent_sse_finish(&p, parse_collect, r, r->err, sizeof r->err);
    r->status = rc;
    r->done = p.done;
    r->n_pieces = p.n_pieces;
    agent_sse_deinit(&p);
}

static void parse_whole(const char *s, size_t max_line, struct parse_result *r)
{
    parse_cuts(s, strlen(s), NULL, 0, max_line, r);
}

static void test_sse_splits(void)
{
    /* After the pieces: a chunk whose JSON spans three data lines, a usage chunk without choices, a chunk
     * with only reasoning text, [DONE], and a chunk after it that must be ignored. */
    struct buf s = {0};
    make_stream(&s, PIECES, N_PIECES, "\r\n", true, false);
    buf_str(&s,
            "data: {\"choices\":\r\ndata: [{\"index\":0,\r\ndata: \"delta\":{\"content\":\"!\"}}]}\r\n\r\n");
    buf_str(&s, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\r\n\r\n");
    buf_str(&s, "data:{\"choices\":[{\"delta\":{\"content\":null,\"reasoning_content\":\"hmm\"}}]}\n\n");
    buf_str(&s, "data: [DONE]\r\n\r\n");
    buf_str(&s, "data: {\"choices\":[{\"delta\":{\"content\":\"after done\"}}]}\r\n\r\n");
    char want[1024];
    joined_pieces(want, sizeof want - 2);
    memcpy(want + strlen(want), "!", 2);

    struct parse_result whole, r;
    parse_whole(s.p, 0, &whole);
    CHECK_INT_EQ(whole.status, 0);
    CHECK(whole.done);
    CHECK_STR_EQ(whole.text, want);
    CHECK_INT_EQ(whole.n_pieces, (int)N_PIECES + 1);

    /* Every split into two pieces. */
    int bad = 0;
    for (size_t cut = 0; cut <= s.len; cut++) {
        parse_cuts(s.p, s.len, &cut, 1, 0, &r);
        if (r.status != 0 || !r.done || strcmp(r.text, want) || r.n_pieces != whole.n_pieces) bad++;
    }
    CHECK_INT_EQ(bad, 0);

    /* Byte by byte. */
    size_t *cuts = malloc(s.len * sizeof *cuts);
    BANTER_ASSERT(cuts);
    for (size_t i = 0; i < s.len; i++)
        cuts[i] = i + 1;
    parse_cuts(s.p, s.len, cuts, s.len - 1, 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK(r.done);
    CHECK_STR_EQ(r.text, want);

    /* Random pieces. */
    srand(1234);
    bad = 0;
    for (int trial = 0; trial < 300; trial++) {
        size_t n_cuts = 0, at = 0;
        while (n_cuts < s.len) {
            at += 1 + (size_t)rand() % 40;
            if (at >= s.len) break;
            cuts[n_cuts++] = at;
        }
        parse_cuts(s.p, s.len, cuts, n_cuts, 0, &r);
        if (r.status != 0 || !r.done || strcmp(r.text, want)) bad++;
    }
    CHECK_INT_EQ(bad, 0);
    free(cuts);

    /* The same stream with LF and with lone CR line ends. */
    const char *eols[] = {"\n", "\r"};
    for (int e = 0; e < 2; e++) {
        struct buf t = {0};
        make_stream(&t, PIECES, N_PIECES, eols[e], true, true);
        joined_pieces(want, sizeof want);
        for (size_t cut = 0; cut <= t.len; cut++) {
            parse_cuts(t.p, t.len, &cut, 1, 0, &r);
            if (r.status != 0 || !r.done || strcmp(r.text, want)) bad++;
        }
        CHECK_INT_EQ(bad, 0);
        free(t.p);
    }
    free(s.p);
}

static void test_sse_events(void)
{
    struct parse_result r;

    /* An event without a blank line before the end is still dispatched; so is an unterminated last line. */
    parse_whole("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_STR_EQ(r.text, "a");
    CHECK(!r.done);
    parse_whole("data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_STR_EQ(r.text, "b");
    CHECK(r.done);

    /* Empty data, events without data, comments only: nothing, no failure. */
    parse_whole("data:\n\nevent: ping\n\n: hello\n\nid: 7\n\n\n\n", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_INT_EQ(r.n_pieces, 0);
    CHECK(!r.done);

    /* A field without a colon, and one with two spaces (the second is part of the value). */
    parse_whole("data\ndata:  {\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\n\n", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_STR_EQ(r.text, "c");

    /* "[DONE]" with surrounding whitespace; bytes after it are not even looked at. */
    parse_whole("data:  [DONE] \n\n<html>garbage", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK(r.done);

    /* An escaped NUL in content is delivered (as one byte). */
    parse_whole("data: {\"choices\":[{\"delta\":{\"content\":\"x\\u0000y\"}}]}\n\n", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_INT_EQ(r.len, 3);

    /* Error events: OpenAI's shape, a plain string, llama.cpp's "error:" field, an "event: error". */
    parse_whole("data: {\"choices\":[{\"delta\":{\"content\":\"part\"}}]}\n\n"
                "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n",
                0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_IO);
    CHECK_STR_EQ(r.text, "part");
    CHECK_CONTAINS(r.err, "model overloaded");
    parse_whole("data: {\"error\":\"out of memory on GPU 0\"}\n\n", 0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_IO);
    CHECK_CONTAINS(r.err, "out of memory on GPU 0");
    parse_whole("error: {\"code\":500,\"message\":\"context shift disabled\",\"type\":\"server_error\"}\n\n",
                0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_IO);
    CHECK_CONTAINS(r.err, "context shift disabled");
    parse_whole("event: error\ndata: upstream went away\n\n", 0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_IO);
    CHECK_CONTAINS(r.err, "upstream went away");
    parse_whole("data: {\"error\":{\"code\":42}}\n\n", 0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_IO);
    CHECK_CONTAINS(r.err, "42");
    /* "error": null is not an error (some servers send it in every chunk). */
    parse_whole("data: {\"error\":null,\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n", 0, &r);
    CHECK_INT_EQ(r.status, 0);
    CHECK_STR_EQ(r.text, "ok");
}

static void test_sse_malformed(void)
{
    struct parse_result r;
    struct {
        const char *stream, *msg;
    } cases[] = {
        {"data: hello world\n\n", "not JSON"},
        {"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]\n\n", "not JSON"},
        {"data: [1,2,3]\n\n", "not a JSON object"},
        {"data: \"text\"\n\n", "not a JSON object"},
        {"data: {\"choices\":{\"delta\":{}}}\n\n", "\"choices\" is not an array"},
        {"data: {\"choices\":[7]}\n\n", "a choice is not an object"},
        {"data: {\"choices\":[{\"delta\":\"hi\"}]}\n\n", "\"delta\" is not an object"},
        {"data: {\"choices\":[{\"delta\":{\"content\":12}}]}\n\n", "\"content\" is not a string"},
        {"<!DOCTYPE html>\n<html><body>Bad gateway</body></html>\n", "not an event stream"},
        {"{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}", "not an event stream"},
        {"{\n  \"id\": \"x\"\n}\n", "not an event stream"},
        {"Internal Server Error\n", "not an event stream"},
        {"\x01\x02\xff: data\n", "\\x01\\x02\\xff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parse_whole(cases[i].stream, 0, &r);
        CHECK_INT_EQ(r.status, BANTER_ERR_FORMAT);
        CHECK_CONTAINS(r.err, cases[i].msg);
    }

    /* Limits: a line of exactly max_line bytes is fine, one more byte is not; data joined over lines too. */
    char line[80];
    memset(line, 0, sizeof line);
    memcpy(line, ": ", 2);
    memset(line + 2, 'x', 62); /* 64 bytes */
    memcpy(line + 64, "\n", 2);
    parse_whole(line, 64, &r);
    CHECK_INT_EQ(r.status, 0);
    memcpy(line + 64, "x\n", 3);
    parse_whole(line, 64, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_FORMAT);
    CHECK_CONTAINS(r.err, "longer than 64 bytes");
    /* Without a line end at all: caught while gathering. */
    line[64] = 'x';
    line[65] = 0;
    parse_whole(line, 64, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_FORMAT);
    parse_whole("data: 0123456789012345678901234567890123456789\ndata: 0123456789012345678901234567890\n\n",
                64, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_FORMAT);
    CHECK_CONTAINS(r.err, "more than 64 bytes of data");

    /* The default limit is 1 MiB. */
    size_t big = AGENT_SSE_MAX_LINE + 10;
    char *huge = malloc(big + 1);
    BANTER_ASSERT(huge);
    memcpy(huge, "data: ", 6);
    memset(huge + 6, 'a', big - 6);
    huge[big] = 0;
    parse_whole(huge, 0, &r);
    CHECK_INT_EQ(r.status, BANTER_ERR_FORMAT);
    CHECK_CONTAINS(r.err, "longer than 1048576 bytes");
    free(huge);

    /* Failures are sticky. */
    struct agent_sse p;
    char err[512];
    agent_sse_init(&p, 0);
    CHECK_INT_EQ(agent_sse_feed(&p, "data: nope\n\n", 12, parse_collect, &r, err, sizeof err),
                 BANTER_ERR_FORMAT);
    err[0] = 0;
    const char *good = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
    CHECK_INT_EQ(agent_sse_feed(&p, good, strlen(good), parse_collect, &r, err, sizeof err),
                 BANTER_ERR_FORMAT);
    CHECK_CONTAINS(err, "not JSON");
    CHECK_INT_EQ(agent_sse_finish(&p, parse_collect, &r, NULL, 0), BANTER_ERR_FORMAT);
    agent_sse_deinit(&p);
}

static int stop_second(const char *piece, size_t len, void *user)
{
    int *n = user;
    return ++*n < 2;
}

static void test_sse_stop_and_oom(void)
{
    struct buf b = {0};
    make_stream(&b, PIECES, N_PIECES, "\n", false, true);
    struct agent_sse p;
    char err[256];
    int n = 0;
    agent_sse_init(&p, 0);
    CHECK_INT_EQ(agent_sse_feed(&p, b.p, b.len, stop_second, &n, err, sizeof err), BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(n, 2);
    CHECK_INT_EQ(agent_sse_feed(&p, b.p, b.len, stop_second, &n, err, sizeof err), BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(n, 2);
    agent_sse_deinit(&p);

    /* Allocation failures while gathering split lines: a clean BANTER_ERR_NOMEM, nothing leaked. */
    int n_nomem = 0, n_ok = 0;
    for (long k = 0; k < 40; k++) {
        struct parse_result r;
        size_t cuts[64];
        for (size_t i = 0; i < 64; i++)
            cuts[i] = (i + 1) * b.len / 65;
        memset(&r, 0, sizeof r);
        core_fail_alloc_after(k);
        agent_sse_init(&p, 0);
        size_t at = 0;
        int rc = 0;
        for (size_t i = 0; i <= 64 && !rc; i++) {
            size_t end = i < 64 ? cuts[i] : b.len;
            rc = agent_sse_feed(&p, b.p + at, end - at, parse_collect, &r, r.err, sizeof r.err);
            at = end;
        }
        core_fail_alloc_after(-1);
        agent_sse_deinit(&p);
        if (rc == BANTER_ERR_NOMEM) {
            n_nomem++;
            CHECK_CONTAINS(r.err, "out of memory");
        } else {
            CHECK_INT_EQ(rc, 0);
            n_ok++;
        }
    }
    CHECK(n_nomem > 0);
    CHECK(n_ok > 0);
    free(b.p);
}

/* ------------------------------------------------------------------------------------------------------- */
/* the test double of a model server */

struct script {
    char *response; /* raw HTTP bytes (owned by the script) */
    size_t len;
    size_t piece;    /* write in pieces of this many bytes (0 = all at once) */
    int pause_ms;    /* between pieces */
    bool silent;     /* read the request and answer nothing, holding the connection */
    bool hold;       /* after the response, hold the connection open until the client leaves */
    bool keep_alive; /* after the response, read the next request on the same connection */
};

struct server {
    int fd, port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    struct script script; /* guarded by lock */
    struct buf request;   /* the last request, guarded by lock */
    int n_requests;       /* guarded by lock */
    int n_connections;    /* guarded by lock */
};

/* Waits up to ms (< 0: until the server stops) for the client to close the connection. True when it did (or
 * the server is stopping), false when ms passed or the client sent more. */
static bool wait_closed(struct server *s, int fd, int ms)
{
    double end = core_time_ms() + ms;
    while (!atomic_load(&s->stop)) {
        int slice = 20;
        if (ms >= 0) {
            double left = end - core_time_ms();
            if (left <= 0) return false;
            if (left < slice) slice = (int)left + 1;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        int k = poll(&pf, 1, slice);
        if (k > 0) {
            char c;
            ssize_t got = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (got <= 0) return true;
            return false;
        }
    }
    return true;
}

/* Reads one request (headers and Content-Length body) into req. False when the client left or the server
 * stops first. */
static bool read_request(struct server *s, int fd, struct buf *req)
{
    req->len = 0;
    size_t need = 0; /* total length once the headers are in */
    for (;;) {
        if (need && req->len >= need) return true;
        if (atomic_load(&s->stop)) return false;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        char tmp[4096];
        ssize_t got = recv(fd, tmp, sizeof tmp, 0);
        if (got <= 0) return false;
        buf_add(req, tmp, (size_t)got);
        char *end = need ? NULL : strstr(req->p, "\r\n\r\n");
        if (end) {
            size_t body = 0;
            for (char *h = req->p; h < end; h = strstr(h, "\r\n") + 2) {
                if (strncasecmp(h, "content-length:", 15) == 0) {
                    const char *d = h + 15;
                    while (*d == ' ')
                        d++;
                    while (*d >= '0' && *d <= '9')
                        body = body * 10 + (size_t)(*d++ - '0');
                }
                if (!strstr(h, "\r\n")) break;
            }
            need = (size_t)(end - req->p) + 4 + body;
        }
    }
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static void serve(struct server *s, int fd)
{
    struct buf req = {0};
    for (;;) {
        if (!read_request(s, fd, &req)) break;
        pthread_mutex_lock(&s->lock);
        s->request.len = 0;
        buf_add(&s->request, req.p, req.len);
        s->n_requests++;
        struct script sc = s->script;
        char *copy = malloc(sc.len ? sc.len : 1);
        BANTER_ASSERT(copy);
        if (sc.len) memcpy(copy, sc.response, sc.len);
        pthread_mutex_unlock(&s->lock);
        sc.response = copy;

        bool alive = true;
        if (sc.silent) {
            wait_closed(s, fd, -1);
            alive = false;
        }
        size_t piece = sc.piece ? sc.piece : (sc.len ? sc.len : 1);
        for (size_t at = 0; alive && at < sc.len; at += piece) {
            size_t k = sc.len - at < piece ? sc.len - at : piece;
            if (!send_all(fd, sc.response + at, k)) alive = false;
            if (alive && sc.pause_ms && at + k < sc.len && wait_closed(s, fd, sc.pause_ms)) alive = false;
        }
        free(copy);
        if (alive && sc.hold) {
            wait_closed(s, fd, -1);
            alive = false;
        }
        if (!alive || !sc.keep_alive) break;
    }
    free(req.p);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = {s->fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&s->lock);
        s->n_connections++;
        pthread_mutex_unlock(&s->lock);
        serve(s, fd);
        close(fd);
    }
    return NULL;
}

static void server_start(struct server *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    BANTER_ASSERT(s->fd >= 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BANTER_ASSERT(bind(s->fd, (struct sockaddr *)&a, sizeof a) == 0);
    BANTER_ASSERT(listen(s->fd, 16) == 0);
    socklen_t alen = sizeof a;
    BANTER_ASSERT(getsockname(s->fd, (struct sockaddr *)&a, &alen) == 0);
    s->port = ntohs(a.sin_port);
    BANTER_ASSERT(pthread_create(&s->thread, NULL, server_main, s) == 0);
}

static void server_stop(struct server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    free(s->script.response);
    free(s->request.p);
    pthread_mutex_destroy(&s->lock);
}

enum framing { CLOSE, LENGTH, CHUNKED_OPEN };

/* Scripts the next answer: an HTTP response with the body, framed by closing the connection (CLOSE), by a
 * Content-Length (LENGTH, connection kept), or as one chunk of a chunked body that never ends (CHUNKED_OPEN).
 */
static void server_answer(struct server *s, int status, const char *ctype, const char *body, size_t body_len,
                          enum framing framing)
{
    struct buf r = {0};
    buf_fmt(&r, "HTTP/1.1 %d %s\r\n", status, status == 200 ? "OK" : "Something");
    if (ctype) buf_fmt(&r, "Content-Type: %s\r\n", ctype);
    if (framing == CLOSE) buf_str(&r, "Connection: close\r\n");
    if (framing == LENGTH) buf_fmt(&r, "Content-Length: %zu\r\n", body_len);
    if (framing == CHUNKED_OPEN) buf_str(&r, "Transfer-Encoding: chunked\r\n");
    buf_str(&r, "\r\n");
    if (framing == CHUNKED_OPEN) buf_fmt(&r, "%zx\r\n", body_len);
    if (body_len) buf_add(&r, body, body_len);
    if (framing == CHUNKED_OPEN) buf_str(&r, "\r\n");
    pthread_mutex_lock(&s->lock);
    free(s->script.response);
    memset(&s->script, 0, sizeof s->script);
    s->script.response = r.p;
    s->script.len = r.len;
    s->script.keep_alive = framing != CLOSE;
    s->script.hold = framing == CHUNKED_OPEN;
    pthread_mutex_unlock(&s->lock);
}

static void server_stream(struct server *s, const char *body, size_t len)
{
    server_answer(s, 200, "text/event-stream", body, len, CLOSE);
}

/* Sets how the scripted answer is sent. */
static void server_pace(struct server *s, size_t piece, int pause_ms, bool hold)
{
    pthread_mutex_lock(&s->lock);
    s->script.piece = piece;
    s->script.pause_ms = pause_ms;
    s->script.hold = hold;
    pthread_mutex_unlock(&s->lock);
}

static void server_silent(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    s->script.silent = true;
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------------------------------------- */
/* a backend and a conversation on the test server */

struct client {
    struct agent_llm llm;
    void *conv;
};

static void client_open(struct client *c, const char *url, const char *key, double timeout_s, int max_tokens)
{
    char err[256];
    int rc = agent_llm_remote_open(url, "test-model", key, timeout_s, &c->llm, err, sizeof err);
    if (rc) fprintf(stderr, "open %s: %s\n", url, err);
    BANTER_ASSERT(rc == 0);
    struct agent_reply_config cfg = {0};
    cfg.max_tokens = max_tokens;
    rc = c->llm.ops->conv_open(c->llm.state, &cfg, &c->conv, err, sizeof err);
    BANTER_ASSERT(rc == 0);
}

static void client_open_server(struct client *c, const struct server *s, double timeout_s)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
    client_open(c, url, NULL, timeout_s, 0);
}

static void client_close(struct client *c)
{
    c->llm.ops->conv_close(c->conv);
    c->llm.ops->close(c->llm.state);
}

static const banter_chat_message HISTORY[] = {
    {"system", "You are terse."},
    {"user", "Say hello."},
    {"assistant", "Hello."},
    {"user", "Again, \"louder\"\n please."},
};
#define N_HISTORY (sizeof HISTORY / sizeof HISTORY[0])

static int client_reply(struct client *c, struct collected *col, struct agent_llm_stats *st, char *err,
                        size_t err_len)
{
    collected_reset(col);
    err[0] = 0;
    return c->llm.ops->reply(c->conv, HISTORY, N_HISTORY, collect, col, st, err, err_len);
}

/* The stream of PIECES, whole. */
static void pieces_stream(struct buf *b, const char *eol, bool extras, bool done)
{
    b->len = 0;
    make_stream(b, PIECES, N_PIECES, eol, extras, done);
}

/* ------------------------------------------------------------------------------------------------------- */
/* 2. opening */

static void check_endpoint(const char *url, const char *want)
{
    struct agent_llm llm;
    char err[256], desc[512];
    int rc = agent_llm_remote_open(url, "m1", NULL, 0, &llm, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", url, err);
        return;
    }
    snprintf(desc, sizeof desc, "remote model m1 at %s", want);
    CHECK_STR_EQ(llm.ops->describe(llm.state), desc);
    llm.ops->close(llm.state);
}

static void check_refused(const char *url, const char *key, double timeout_s, const char *msg)
{
    struct agent_llm llm;
    char err[256] = "";
    int rc = agent_llm_remote_open(url, NULL, key, timeout_s, &llm, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_ERR_INVALID_ARG);
    CHECK_CONTAINS(err, msg);
    CHECK(llm.ops == NULL && llm.state == NULL);
}

static void test_open(void)
{
    check_endpoint("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions");
    check_endpoint("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/chat/completions");
    check_endpoint("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/chat/completions");
    check_endpoint("http://127.0.0.1:8080/v1//", "http://127.0.0.1:8080/v1/chat/completions");
    check_endpoint("HTTP://localhost:8080/v1/chat/completions", "http://localhost:8080/v1/chat/completions");
    check_endpoint("https://api.example.com/openai/v1", "https://api.example.com/openai/v1/chat/completions");
    check_endpoint("https://api.example.com/openai", "https://api.example.com/openai/v1/chat/completions");
    check_endpoint("https://h/deploy/chat/completions", "https://h/deploy/chat/completions");
    check_endpoint("http://[::1]:9000/v1?api-version=2",
                   "http://[::1]:9000/v1/chat/completions?api-version=2");

    check_refused(NULL, NULL, 0, "no model server URL");
    check_refused("", NULL, 0, "no model server URL");
    check_refused("localhost:8080", NULL, 0, "must start with http:// or https://");
    check_refused("ftp://h/", NULL, 0, "must start with http:// or https://");
    check_refused("http://", NULL, 0, "invalid model server URL");
    check_refused("http://a b/v1", NULL, 0, "space or control character");
    check_refused("http://h:99999", NULL, 0, "invalid model server URL");
    check_refused("http://h", "sk-abc\r\nX-Evil: 1", 0, "control character");
    check_refused("http://h", NULL, -1, "timeout");
    check_refused("http://h", NULL, NAN, "timeout");

    /* Defaults: model "default"; the no-op ops. */
    struct agent_llm llm;
    char err[256];
    CHECK_INT_EQ(agent_llm_remote_open("http://h:1", NULL, "", 0, &llm, err, sizeof err), 0);
    CHECK_STR_EQ(llm.ops->name, "remote");
    CHECK_STR_EQ(llm.ops->describe(llm.state), "remote model default at http://h:1/v1/chat/completions");
    void *conv;
    struct agent_reply_config bad = {.max_tokens = -5};
    CHECK_INT_EQ(llm.ops->conv_open(llm.state, &bad, &conv, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_CONTAINS(err, "max_tokens");
    CHECK_INT_EQ(llm.ops->conv_open(llm.state, NULL, &conv, err, sizeof err), 0);
    struct agent_llm_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_INT_EQ(llm.ops->prepare(conv, HISTORY, N_HISTORY, &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.n_fed, 0);
    CHECK_INT_EQ(llm.ops->sync(conv, HISTORY, 2), 0);
    CHECK_INT_EQ(llm.ops->cached(conv), -1);
    llm.ops->cancel(conv); /* idle: no effect */
    /* A message without content is refused before anything is sent. */
    banter_chat_message broken[] = {{"user", NULL}};
    struct collected *col = calloc(1, sizeof *col);
    CHECK_INT_EQ(llm.ops->reply(conv, broken, 1, collect, col, NULL, err, sizeof err),
                 BANTER_ERR_INVALID_ARG);
    CHECK_CONTAINS(err, "message 0");
    free(col);
    llm.ops->conv_close(conv);
    llm.ops->close(llm.state);

    /* Injected allocation failures in open and conv_open: NOMEM or success, never a crash or leak. */
    int n_nomem = 0;
    for (long k = 0; k < 12; k++) {
        core_fail_alloc_after(k);
        int rc = agent_llm_remote_open("http://h:1/v1", "m", "key", 0, &llm, err, sizeof err);
        if (rc == 0) {
            rc = llm.ops->conv_open(llm.state, NULL, &conv, err, sizeof err);
            if (rc == 0) llm.ops->conv_close(conv);
            llm.ops->close(llm.state);
        }
        core_fail_alloc_after(-1);
        if (rc) {
            CHECK_INT_EQ(rc, BANTER_ERR_NOMEM);
            n_nomem++;
        }
    }
    CHECK(n_nomem > 0);
}

/* ------------------------------------------------------------------------------------------------------- */
/* 3. a streamed reply */

/* The value of header `name` in the recorded request (NULL if absent), copied into dst. */
static const char *request_header(const struct buf *req, const char *name, char *dst, size_t len)
{
    const char *end = strstr(req->p, "\r\n\r\n");
    size_t k = strlen(name);
    for (const char *h = strstr(req->p, "\r\n") + 2; h && h < end; h = strstr(h, "\r\n") + 2) {
        if (strncasecmp(h, name, k) == 0 && h[k] == ':') {
            const char *v = h + k + 1;
            while (*v == ' ')
                v++;
            size_t n = (size_t)(strstr(v, "\r\n") - v);
            if (n >= len) n = len - 1;
            memcpy(dst, v, n);
            dst[n] = 0;
            return dst;
        }
    }
    return NULL;
}

static void test_reply(struct server *s)
{
    char url[64], err[512], want[1024], hv[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", s->port);
    struct client c;
    client_open(&c, url, "sk-test-123", 5, 77);
    struct buf b = {0};
    pieces_stream(&b, "\n", false, true);
    server_stream(s, b.p, b.len);
    struct collected *col = calloc(1, sizeof *col);
    struct agent_llm_stats st;
    int rc = client_reply(&c, col, &st, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    joined_pieces(want, sizeof want);
    CHECK_STR_EQ(col->text, want);
    CHECK_INT_EQ(atomic_load(&col->n), (int)N_PIECES);
    CHECK_INT_EQ(st.n_generated, (int)N_PIECES);
    CHECK_INT_EQ(st.n_prompt, 0);
    CHECK(st.prefill_ms > 0);
    CHECK(st.first_piece_ms >= st.prefill_ms);
    CHECK(st.total_ms >= st.first_piece_ms);
    printf("reply: headers %.2f ms, first piece %.2f ms, total %.2f ms\n", st.prefill_ms, st.first_piece_ms,
           st.total_ms);

    /* What the server received. */
    pthread_mutex_lock(&s->lock);
    struct buf req = {0};
    buf_add(&req, s->request.p, s->request.len);
    pthread_mutex_unlock(&s->lock);
    CHECK(strncmp(req.p, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
    CHECK_STR_EQ(request_header(&req, "Content-Type", hv, sizeof hv), "application/json");
    CHECK_STR_EQ(request_header(&req, "Authorization", hv, sizeof hv), "Bearer sk-test-123");
    CHECK_STR_EQ(request_header(&req, "Accept", hv, sizeof hv), "text/event-stream");
    CHECK(request_header(&req, "Expect", hv, sizeof hv) == NULL);
    const char *body = strstr(req.p, "\r\n\r\n") + 4;
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    CHECK(j != NULL);
    if (!j) fprintf(stderr, "  body: %s (%s)\n", body, jerr.text);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "model")), "test-model");
    CHECK(json_is_true(json_object_get(j, "stream")));
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "max_tokens")), 77);
    json_t *msgs = json_object_get(j, "messages");
    CHECK_INT_EQ(json_array_size(msgs), N_HISTORY);
    for (size_t i = 0; i < N_HISTORY && i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        CHECK_STR_EQ(json_string_value(json_object_get(m, "role")), HISTORY[i].role);
        CHECK_STR_EQ(json_string_value(json_object_get(m, "content")), HISTORY[i].content);
        CHECK_INT_EQ(json_object_size(m), 2);
    }
    json_decref(j);
    free(req.p);
    memset(&req, 0, sizeof req);
    client_close(&c);

    /* No key: no Authorization header; default max_tokens; content that is not UTF-8 (a reply cut inside a
     * character at barge-in, a stray Latin-1 byte) goes out with U+FFFD in place of each bad byte. */
    client_open_server(&c, s, 5);
    banter_chat_message cut[] = {{"user", "caf\xe9?"}, {"assistant", "Voil\xc3"}, {"user", "ok"}};
    server_stream(s, b.p, b.len);
    collected_reset(col);
    rc = c.llm.ops->reply(c.conv, cut, 3, collect, col, NULL, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    pthread_mutex_lock(&s->lock);
    buf_add(&req, s->request.p, s->request.len);
    pthread_mutex_unlock(&s->lock);
    CHECK(request_header(&req, "Authorization", hv, sizeof hv) == NULL);
    j = json_loads(strstr(req.p, "\r\n\r\n") + 4, 0, NULL);
    CHECK(j != NULL);
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "max_tokens")), 256);
    msgs = json_object_get(j, "messages");
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "caf\xef\xbf\xbd?");
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(msgs, 1), "content")), "Voil\xef\xbf\xbd");
    json_decref(j);
    free(req.p);
    client_close(&c);
    free(col);
    free(b.p);
}

/* ------------------------------------------------------------------------------------------------------- */
/* 4. transport */

static void test_transport(struct server *s)
{
    char err[512], want[1024];
    joined_pieces(want, sizeof want);
    struct collected *col = calloc(1, sizeof *col);
    struct buf b = {0};
    struct client c;
    client_open_server(&c, s, 5);

    /* Small writes with pauses, then byte by byte (each a TCP segment of its own). */
    size_t pieces[] = {7, 1};
    for (int i = 0; i < 2; i++) {
        pieces_stream(&b, "\n", false, true);
        server_stream(s, b.p, b.len);
        server_pace(s, pieces[i], 1, false);
        double t0 = core_time_ms();
        CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
        CHECK_STR_EQ(col->text, want);
        printf("reply in %zu-byte writes: %.0f ms\n", pieces[i], core_time_ms() - t0);
    }

    /* CRLF line ends, keep-alive comments, event/id/retry fields, in 5-byte writes. */
    pieces_stream(&b, "\r\n", true, true);
    server_stream(s, b.p, b.len);
    server_pace(s, 5, 0, false);
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    CHECK_STR_EQ(col->text, want);

    /* Keep-alive: two replies with Content-Length bodies go over one connection. */
    pthread_mutex_lock(&s->lock);
    int conns0 = s->n_connections, reqs0 = s->n_requests;
    pthread_mutex_unlock(&s->lock);
    pieces_stream(&b, "\n", false, true);
    for (int i = 0; i < 2; i++) {
        server_answer(s, 200, "text/event-stream", b.p, b.len, LENGTH);
        CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
        CHECK_STR_EQ(col->text, want);
    }
    pthread_mutex_lock(&s->lock);
    CHECK_INT_EQ(s->n_connections - conns0, 1);
    CHECK_INT_EQ(s->n_requests - reqs0, 2);
    pthread_mutex_unlock(&s->lock);

    /* A server that keeps the response open after [DONE]: the reply still ends, successfully. */
    server_answer(s, 200, "text/event-stream", b.p, b.len, CHUNKED_OPEN);
    double t0 = core_time_ms();
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    double ms = core_time_ms() - t0;
    CHECK_STR_EQ(col->text, want);
    CHECK(ms < 10000);
    printf("reply with the response held open after [DONE]: %.0f ms\n", ms);

    client_close(&c);
    free(col);
    free(b.p);
}

/* ------------------------------------------------------------------------------------------------------- */
/* 5. failures */

/* Scripts an answer, replies, and checks the status and that the message contains msg. */
static void expect_failure(struct client *c, int want_rc, const char *msg, struct collected *col)
{
    char err[512];
    int rc = client_reply(c, col, NULL, err, sizeof err);
    CHECK_INT_EQ(rc, want_rc);
    CHECK_CONTAINS(err, msg);
}

static void test_http_errors(struct server *s)
{
    struct collected *col = calloc(1, sizeof *col);
    struct client c;
    client_open_server(&c, s, 5);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions: HTTP ", s->port);

    const char *e500 = "{\"error\":{\"message\":\"The model `test-model` does not exist.\",\"type\":"
                       "\"invalid_request_error\",\"code\":\"model_not_found\"}}";
    server_answer(s, 500, "application/json", e500, strlen(e500), CLOSE);
    expect_failure(&c, BANTER_ERR_IO, url, col);
    expect_failure(&c, BANTER_ERR_IO, "HTTP 500: The model `test-model` does not exist.", col);
    CHECK_INT_EQ(atomic_load(&col->n), 0);

    /* vLLM's top-level message, and a long one truncated. */
    const char *e400 = "{\"object\":\"error\",\"message\":\"max_tokens is too large\",\"code\":400}";
    server_answer(s, 400, "application/json", e400, strlen(e400), LENGTH);
    expect_failure(&c, BANTER_ERR_IO, "HTTP 400: max_tokens is too large", col);
    struct buf longmsg = {0};
    buf_str(&longmsg, "{\"error\":\"");
    for (int i = 0; i < 200; i++)
        buf_str(&longmsg, "blah ");
    buf_str(&longmsg, "\"}");
    server_answer(s, 503, "application/json", longmsg.p, longmsg.len, CLOSE);
    char err[512];
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), BANTER_ERR_IO);
    CHECK_CONTAINS(err, "HTTP 503: blah blah");
    CHECK_CONTAINS(err, "...");
    CHECK(strlen(err) < 420);
    free(longmsg.p);

    const char *text401 = "Unauthorized\r\n";
    server_answer(s, 401, "text/plain", text401, strlen(text401), CLOSE);
    expect_failure(&c, BANTER_ERR_IO, "HTTP 401: Unauthorized (check the API key)", col);

    server_answer(s, 404, NULL, "", 0, LENGTH);
    expect_failure(&c, BANTER_ERR_IO, "HTTP 404 (give the server's base address", col);

    pthread_mutex_lock(&s->lock);
    free(s->script.response);
    memset(&s->script, 0, sizeof s->script);
    const char *redirect = "HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/v1/chat/completions\r\n"
                           "Content-Length: 0\r\n\r\n";
    s->script.response = strdup(redirect);
    s->script.len = strlen(redirect);
    s->script.keep_alive = true;
    pthread_mutex_unlock(&s->lock);
    expect_failure(&c, BANTER_ERR_IO, "redirects to https://elsewhere.example/v1/chat/completions", col);

    client_close(&c);
    free(col);
}

static void test_unreachable(void)
{
    struct collected *col = calloc(1, sizeof *col);
    /* A port bound but not listening refuses connections, and nobody else can take it meanwhile. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BANTER_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t alen = sizeof a;
    BANTER_ASSERT(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    char url[64], want[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(want, sizeof want, "cannot reach %s/v1/chat/completions: Connection refused", url);
    struct client c;
    client_open(&c, url, NULL, 5, 0);
    double t0 = core_time_ms();
    expect_failure(&c, BANTER_ERR_IO, want, col);
    CHECK(core_time_ms() - t0 < 10000);
    client_close(&c);
    close(fd);
    free(col);
}

static void test_timeouts(struct server *s)
{
    struct collected *col = calloc(1, sizeof *col);
    struct client c;
    client_open_server(&c, s, 0.5);

    /* Accepts, reads the request, never answers. */
    server_answer(s, 200, "text/event-stream", "", 0, CLOSE);
    server_silent(s);
    double t0 = core_time_ms();
    expect_failure(&c, BANTER_ERR_IO, "the server did not answer within 0.5 s", col);
    double ms = core_time_ms() - t0;
    CHECK(ms < 10000);
    printf("silent server: failed after %.0f ms (timeout 500 ms)\n", ms);

    /* Headers and one piece, then silence. */
    const char *one = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    server_stream(s, one, strlen(one));
    server_pace(s, 0, 0, true);
    t0 = core_time_ms();
    expect_failure(&c, BANTER_ERR_IO, "sent nothing for 0.5 s in the middle of the reply", col);
    ms = core_time_ms() - t0;
    CHECK(ms < 10000);
    CHECK_STR_EQ(col->text, "Hi");
    printf("stalled stream: failed after %.0f ms (timeout 500 ms)\n", ms);

    /* A slow but steady stream (a piece every 200 ms, 1 s in all) is not a timeout. */
    struct buf b = {0};
    pieces_stream(&b, "\n", false, true);
    server_stream(s, b.p, b.len);
    server_pace(s, b.len / 5 + 1, 200, false);
    char err[512], want[1024];
    joined_pieces(want, sizeof want);
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    CHECK_STR_EQ(col->text, want);
    free(b.p);
    client_close(&c);
    free(col);
}

static void test_bad_streams(struct server *s)
{
    struct collected *col = calloc(1, sizeof *col);
    struct client c;
    client_open_server(&c, s, 5);
    char err[512], want[1024];

    const char *garbage = "data: this is not json\n\n";
    server_stream(s, garbage, strlen(garbage));
    expect_failure(&c, BANTER_ERR_FORMAT, "data is not JSON", col);

    const char *html = "<html><body>It works!</body></html>\n";
    server_answer(s, 200, "text/html", html, strlen(html), CLOSE);
    expect_failure(&c, BANTER_ERR_FORMAT, "not an event stream", col);

    const char *plain =
        "{\"id\":\"1\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}";
    server_answer(s, 200, "application/json", plain, strlen(plain), LENGTH);
    expect_failure(&c, BANTER_ERR_FORMAT, "not an event stream", col);

    server_answer(s, 200, "application/json", "", 0, LENGTH);
    expect_failure(&c, BANTER_ERR_FORMAT, "the reply has no events (Content-Type: application/json)", col);

    /* An error event after some content: the content stands, the error surfaces. */
    const char *errev =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"CUDA out of memory\",\"type\":\"server_error\"}}\n\n";
    server_stream(s, errev, strlen(errev));
    expect_failure(&c, BANTER_ERR_IO, "the model server reported an error: CUDA out of memory", col);
    CHECK_STR_EQ(col->text, "Par");

    /* Ends cleanly without [DONE] after content: a complete reply. */
    struct buf b = {0};
    pieces_stream(&b, "\n", false, false);
    server_stream(s, b.p, b.len);
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    joined_pieces(want, sizeof want);
    CHECK_STR_EQ(col->text, want);

    /* A connection that breaks before the promised length: an I/O error, whatever came before. */
    struct buf r = {0};
    buf_fmt(&r, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %zu\r\n\r\n",
            b.len + 500);
    buf_add(&r, b.p, b.len);
    pthread_mutex_lock(&s->lock);
    free(s->script.response);
    memset(&s->script, 0, sizeof s->script);
    s->script.response = r.p;
    s->script.len = r.len;
    pthread_mutex_unlock(&s->lock);
    expect_failure(&c, BANTER_ERR_IO, "the connection broke in the middle of the reply", col);
    CHECK_STR_EQ(col->text, want);

    /* An event line over 1 MiB. */
    size_t big = ((size_t)2 << 20) + 10;
    char *huge = malloc(big);
    BANTER_ASSERT(huge);
    memcpy(huge, "data: ", 6);
    memset(huge + 6, 'x', big - 8);
    memcpy(huge + big - 2, "\n\n", 2);
    server_stream(s, huge, big);
    expect_failure(&c, BANTER_ERR_FORMAT, "a line longer than 1048576 bytes", col);
    free(huge);

    /* A body over 16 MiB, even of harmless keep-alive comments. */
    struct buf pad = {0};
    const char *ping =
        ": ping ping ping ping ping ping ping ping ping ping ping ping ping ping ping ping ping\n";
    while (pad.len <= ((size_t)16 << 20))
        buf_str(&pad, ping);
    server_stream(s, pad.p, pad.len);
    expect_failure(&c, BANTER_ERR_FORMAT, "the reply is longer than 16 MiB", col);
    free(pad.p);

    /* After all that, the conversation still works. */
    server_stream(s, b.p, b.len);
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    CHECK_STR_EQ(col->text, want);
    free(b.p);
    client_close(&c);
    free(col);
}

/* ------------------------------------------------------------------------------------------------------- */
/* 6. stopping */

struct canceller {
    struct client *c;
    struct collected *col;
    int after_pieces; /* cancel once this many pieces arrived (0 = after wait_ms) */
    int wait_ms;
    double at_ms;    /* when cancel was called */
    int n_at_cancel; /* pieces delivered when cancel returned */
};

static void *cancel_main(void *arg)
{
    struct canceller *k = arg;
    double t0 = core_time_ms();
    while (k->after_pieces && atomic_load(&k->col->n) < k->after_pieces && core_time_ms() - t0 < 20000)
        sleep_ms(1);
    if (k->wait_ms) sleep_ms(k->wait_ms);
    k->at_ms = core_time_ms();
    k->c->llm.ops->cancel(k->c->conv);
    k->n_at_cancel = atomic_load(&k->col->n);
    return NULL;
}

static void test_cancel(struct server *s)
{
    struct collected *col = calloc(1, sizeof *col);
    struct client c;
    client_open_server(&c, s, 30);
    char err[512], want[1024];

    /* A slow stream: one event every 300 ms for ~30 s; cancel after the third piece. */
    struct buf b = {0};
    const char *many[100];
    for (int i = 0; i < 100; i++)
        many[i] = "word ";
    make_stream(&b, many, 100, "\n", false, true);
    server_stream(s, b.p, b.len);
    server_pace(s, b.len / 100, 300, false);
    struct canceller k = {&c, col, 3, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_main, &k);
    int rc = client_reply(&c, col, NULL, err, sizeof err);
    double end = core_time_ms();
    pthread_join(th, NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_CANCELLED);
    CHECK_CONTAINS(err, "cancelled");
    CHECK(end - k.at_ms < 10000);
    CHECK(atomic_load(&col->n) >= 3);
    CHECK(atomic_load(&col->n) <= k.n_at_cancel + 1);
    printf("cancel during a slow stream: returned %.1f ms after cancel, %d pieces\n", end - k.at_ms,
           atomic_load(&col->n));

    /* Cancel while the server is silent (no bytes at all for the curl transfer to wake up on). */
    server_answer(s, 200, "text/event-stream", "", 0, CLOSE);
    server_silent(s);
    struct canceller k2 = {&c, col, 0, 300, 0, 0};
    pthread_create(&th, NULL, cancel_main, &k2);
    rc = client_reply(&c, col, NULL, err, sizeof err);
    end = core_time_ms();
    pthread_join(th, NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_CANCELLED);
    CHECK(end - k2.at_ms < 10000);
    printf("cancel while the server is silent: returned %.1f ms after cancel\n", end - k2.at_ms);

    /* The cancel does not carry over: the next reply runs to the end. */
    pieces_stream(&b, "\n", false, true);
    server_stream(s, b.p, b.len);
    CHECK_INT_EQ(client_reply(&c, col, NULL, err, sizeof err), 0);
    joined_pieces(want, sizeof want);
    CHECK_STR_EQ(col->text, want);

    /* The piece callback stops after two pieces: exactly two delivered, then BANTER_ERR_CANCELLED. */
    server_stream(s, b.p, b.len);
    collected_reset(col);
    col->stop_after = 2;
    struct agent_llm_stats st;
    rc = c.llm.ops->reply(c.conv, HISTORY, N_HISTORY, collect, col, &st, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(atomic_load(&col->n), 2);
    CHECK_STR_EQ(col->text, "Hello");
    CHECK_INT_EQ(st.n_generated, 2);
    CHECK_CONTAINS(err, "stopped");

    free(b.p);
    client_close(&c);
    free(col);
}

int main(void)
{
    test_sse_splits();
    test_sse_events();
    test_sse_malformed();
    test_sse_stop_and_oom();
    test_open();
    test_unreachable();

    struct server s;
    server_start(&s);
    test_reply(&s);
    test_transport(&s);
    test_http_errors(&s);
    test_timeouts(&s);
    test_bad_streams(&s);
    test_cancel(&s);
    server_stop(&s);
    return test_finish("test_agent_remote");
}
