/*
 * test_server.c: the HTTP server driven by a real client (libcurl) and by raw sockets, in-process:
 *   1. GET /health and /v1/models; unknown route 404, wrong method 405, missing/wrong key 401, CORS
 * preflight.
 *   2. POST /v1/audio/speech: a 24 kHz 16-bit mono WAV that reads back longer than 0.3 s; raw PCM; bad JSON,
 *      missing and too long input, bad format -> 400 with OpenAI-shaped errors.
 *   3. A body over max_body -> 413; a client that leaves mid-body, after which the server still answers.
 *   4. POST /v1/audio/transcriptions of a Flite-synthesized WAV recognizes the words; garbage audio -> 400.
 *   5. 16 concurrent speech requests all succeed; then stop and close with nothing left behind.
 *   6. HTTP edge cases: multipart without a boundary, truncated, with two files, an empty or a text file; wrong
 *      methods (405), unknown routes (404), oversized bodies on every POST route (413), bad JSON (400), and the
 *      /metrics counters that saw them.
 */
#include "server/server.h"

#include "speech.h"
#include "http.h"
#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#define KEY "test-key"

static int port;

/* Sends one request. body NULL = no body; mime overrides it. Returns the curl result. */
static CURLcode request(const char *method, const char *path, const char *key, const char *ctype,
                        const char *body, size_t len, curl_mime *(*make_mime)(CURL *, void *),
                        void *mime_user, struct http_resp *out)
{
    struct http_req rq = {.port = port, .method = method, .path = path, .key = key, .ctype = ctype,
                          .origin = "http://app.example", .body = body, .len = len, .make_mime = make_mime,
                          .mime_user = mime_user, .timeout_s = 120};
    out->abort_after = 0;
    return http_request(&rq, out);
}

static CURLcode get(const char *path, const char *key, struct http_resp *out)
{
    return request("GET", path, key, NULL, NULL, 0, NULL, NULL, out);
}

static CURLcode post_json(const char *path, const char *json, struct http_resp *out)
{
    return request("POST", path, KEY, "application/json", json, strlen(json), NULL, NULL, out);
}

/* The error message of an OpenAI-shaped error body, checking its shape; "" if it is not one. */
static void check_error(const struct http_resp *r, long status, const char *what)
{
    CHECK_INT_EQ(r->status, status);
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *type = json_string_value(json_object_get(e, "type"));
    CHECK(msg && msg[0]);
    CHECK_STR_EQ(type, status >= 500 ? "server_error" : "invalid_request_error");
    if (!msg) fprintf(stderr, "  (%s: body was %.*s)\n", what, (int)r->len, r->body ? r->body : "");
    json_decref(j);
}

static uint32_t le32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checks a WAV from /v1/audio/speech and returns its duration read back through banter_audio_read. */
static double check_wav(const struct http_resp *r)
{
    const unsigned char *b = (const unsigned char *)r->body;
    CHECK_INT_EQ(r->status, 200);
    CHECK(r->len > 44);
    if (r->status != 200 || r->len <= 44) return 0;
    CHECK(!memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WAVE", 4));
    CHECK_INT_EQ(b[22] | b[23] << 8, 1);  /* mono */
    CHECK_INT_EQ(le32(b + 24), 24000);    /* rate */
    CHECK_INT_EQ(b[34] | b[35] << 8, 16); /* bits */
    CHECK_INT_EQ(le32(b + 40), r->len - 44);
    char path[] = "/tmp/test_server_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return 0;
    CHECK_INT_EQ(write(fd, r->body, r->len), (long long)r->len);
    close(fd);
    float *s = NULL;
    size_t n = 0;
    char err[256];
    int st = banter_audio_read(path, 0, &s, &n, err, sizeof err);
    unlink(path);
    CHECK_INT_EQ(st, 0);
    banter_audio_free(s);
    return (double)n / BANTER_SAMPLE_RATE;
}

/* A raw connection to the server. */
static int connect_raw(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *run_server(void *arg)
{
    CHECK_INT_EQ(srv_run(arg), 0);
    return NULL;
}

struct upload {
    const char *data;
    size_t len;
    const char *format;
};

static curl_mime *make_upload(CURL *c, void *user)
{
    struct upload *u = user;
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "file");
    curl_mime_filename(p, "speech.wav");
    curl_mime_type(p, "audio/wav");
    curl_mime_data(p, u->data, u->len);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "model");
    curl_mime_data(p, "whisper-1", CURL_ZERO_TERMINATED);
    if (u->format) {
        p = curl_mime_addpart(m);
        curl_mime_name(p, "response_format");
        curl_mime_data(p, u->format, CURL_ZERO_TERMINATED);
    }
    return m;
}

static void *speak_one(void *arg)
{
    struct http_resp r;
    char json[128];
    snprintf(json, sizeof json, "{\"input\":\"request number %d is here\",\"voice\":\"kal16\"}", *(int *)arg);
    CURLcode rc = post_json("/v1/audio/speech", json, &r);
    *(int *)arg = rc == CURLE_OK && r.status == 200 && r.len > 44 && !memcmp(r.body, "RIFF", 4);
    free(r.body);
    return NULL;
}

static void test_basic_routes(void)
{
    struct http_resp r;
    CHECK_INT_EQ(get("/health", KEY, &r), CURLE_OK);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "{\"status\":\"ok\"}");
    CHECK(!strncmp(r.ctype, "application/json", 16));
    free(r.body);

    get("/v1/models", KEY, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body,
                 "{\"object\":\"list\",\"data\":[{\"id\":\"banter-test\",\"object\":\"model\",\"owned_by\":"
                 "\"banter\"}]}");
    free(r.body);

    get("/nope", KEY, &r);
    check_error(&r, 404, "404");
    free(r.body);
    get("/v1/audio/speech", KEY, &r);
    check_error(&r, 405, "405");
    free(r.body);
    request("POST", "/health", KEY, "application/json", "{}", 2, NULL, NULL, &r);
    check_error(&r, 405, "405 post");
    free(r.body);

    get("/health", NULL, &r);
    check_error(&r, 401, "no key");
    free(r.body);
    get("/health", "wrong-key", &r);
    check_error(&r, 401, "wrong key");
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"hi\"}", &r);
    CHECK_INT_EQ(r.status, 200); /* sanity: the right key passes on a POST too */
    free(r.body);

    /* CORS preflight needs no key (browsers send none). */
    request("OPTIONS", "/v1/audio/speech", NULL, NULL, NULL, 0, NULL, NULL, &r);
    CHECK_INT_EQ(r.status, 204);
    free(r.body);
}

static void test_speech(void)
{
    struct http_resp r;
    CHECK_INT_EQ(
        post_json("/v1/audio/speech", "{\"input\":\"Hello there, this is a test of the speech route.\"}", &r),
        CURLE_OK);
    CHECK(!strcmp(r.ctype, "audio/wav"));
    double secs = check_wav(&r);
    CHECK(secs > 0.3);
    size_t wav_len = r.len;
    free(r.body);

    post_json("/v1/audio/speech",
              "{\"input\":\"Hello there, this is a test of the speech route.\",\"response_format\":\"pcm\"}",
              &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(r.len, wav_len - 44); /* the same audio without the header */
    free(r.body);

    post_json("/v1/audio/speech", "{\"input\":\"Slower now.\",\"speed\":0.5,\"voice\":\"en-us\"}", &r);
    CHECK(check_wav(&r) > 0.3);
    free(r.body);

    post_json("/v1/audio/speech", "{\"input\": ", &r);
    check_error(&r, 400, "bad json");
    free(r.body);
    post_json("/v1/audio/speech", "{\"voice\":\"slt\"}", &r);
    check_error(&r, 400, "missing input");
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"\"}", &r);
    check_error(&r, 400, "empty input");
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"x\",\"response_format\":\"mp3\"}", &r);
    check_error(&r, 400, "mp3");
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"x\",\"speed\":9}", &r);
    check_error(&r, 400, "speed");
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"x\",\"voice\":\"no-such-voice-here\"}", &r);
    check_error(&r, 400, "voice");
    free(r.body);

    size_t n = 5000;
    char *big = malloc(n + 32);
    memcpy(big, "{\"input\":\"", 10);
    memset(big + 10, 'a', n);
    memcpy(big + 10 + n, "\"}", 3);
    post_json("/v1/audio/speech", big, &r);
    check_error(&r, 400, "huge input");
    free(r.body);
    free(big);
}

/* Reads what the server answers on fd until it closes (at most cap - 1 bytes). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < cap && (got = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
        n += (size_t)got;
    buf[n] = 0;
    return n;
}

static void test_limits_and_disconnects(void)
{
    /* Over max_body (1 MiB here): answered from the headers alone, before any body is sent. */
    int fd = connect_raw();
    CHECK(fd >= 0);
    const char *hdr = "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
                      "\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n";
    CHECK_INT_EQ(send(fd, hdr, strlen(hdr), MSG_NOSIGNAL), (long long)strlen(hdr));
    char buf[4096];
    read_all(fd, buf, sizeof buf);
    CHECK(!strncmp(buf, "HTTP/1.1 413", 12));
    CHECK(strstr(buf, "invalid_request_error") != NULL);
    close(fd);

    /* Also through curl, which sends the body along. */
    size_t n = (1 << 20) + 100;
    char *big = calloc(1, n);
    struct http_resp r;
    request("POST", "/v1/audio/speech", KEY, "application/json", big, n, NULL, NULL, &r);
    CHECK_INT_EQ(r.status, 413);
    free(r.body);
    free(big);

    /* A client that promises 1000 bytes, sends 10 and leaves. */
    fd = connect_raw();
    const char *part = "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
                       "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"input\":";
    CHECK_INT_EQ(send(fd, part, strlen(part), MSG_NOSIGNAL), (long long)strlen(part));
    usleep(100000);
    close(fd);

    /* One that sends a whole request and leaves before the answer: its worker's result is dropped. */
    fd = connect_raw();
    const char *body = "{\"input\":\"a request nobody waits for, with a few words to speak\"}";
    char whole[512];
    snprintf(whole, sizeof whole,
             "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
             "\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    CHECK_INT_EQ(send(fd, whole, strlen(whole), MSG_NOSIGNAL), (long long)strlen(whole));
    close(fd);

    get("/health", KEY, &r);
    CHECK_INT_EQ(r.status, 200);
    free(r.body);
    post_json("/v1/audio/speech", "{\"input\":\"still here\"}", &r);
    CHECK(check_wav(&r) > 0.3);
    free(r.body);

    /* Two requests on one keep-alive connection. */
    fd = connect_raw();
    const char *two = "GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(send(fd, two, strlen(two), MSG_NOSIGNAL), (long long)strlen(two));
        size_t got = 0;
        char rb[1024];
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (got < sizeof rb - 1) {
            ssize_t k = recv(fd, rb + got, sizeof rb - 1 - got, 0);
            if (k <= 0) break;
            got += (size_t)k;
            rb[got] = 0;
            if (strstr(rb, "{\"status\":\"ok\"}")) break;
        }
        rb[got] = 0;
        CHECK(strstr(rb, "HTTP/1.1 200") != NULL && strstr(rb, "{\"status\":\"ok\"}") != NULL);
    }
    close(fd);
}

static void test_http_edges(const char *wav, size_t wav_len);

static void test_transcription(banter_tts *tts)
{
    const char *ref = "please call me back when you get home tonight";
    char path[] = "/tmp/test_server_tts_XXXXXX.wav";
    int fd = mkstemps(path, 4);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT_EQ(banter_tts_synthesize_file(tts, ref, path, NULL), 0);
    FILE *f = fopen(path, "rb");
    char *wav = malloc(4 << 20);
    size_t len = f ? fread(wav, 1, 4 << 20, f) : 0;
    if (f) fclose(f);
    unlink(path);
    CHECK(len > 44);

    struct http_resp r;
    struct upload u = {wav, len, NULL};
    CHECK_INT_EQ(request("POST", "/v1/audio/transcriptions", KEY, NULL, NULL, 0, make_upload, &u, &r),
                 CURLE_OK);
    CHECK_INT_EQ(r.status, 200);
    json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    const char *text = json_string_value(json_object_get(j, "text"));
    CHECK(text != NULL);
    int n_ref = 0, errors = word_errors(ref, text ? text : "", &n_ref);
    printf("transcription: \"%s\" (%d of %d words wrong)\n", text ? text : "(none)", errors, n_ref);
    CHECK(errors * 2 <= n_ref);
    json_decref(j);
    free(r.body);
    test_http_edges(wav, len);

    u.format = "text";
    request("POST", "/v1/audio/transcriptions", KEY, NULL, NULL, 0, make_upload, &u, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK(!strncmp(r.ctype, "text/plain", 10));
    CHECK(r.len > 0 && r.body[r.len - 1] == '\n');
    free(r.body);

    u.format = NULL;
    u.data = "this is not audio at all, just text";
    u.len = strlen(u.data);
    request("POST", "/v1/audio/transcriptions", KEY, NULL, NULL, 0, make_upload, &u, &r);
    check_error(&r, 400, "not audio");
    free(r.body);

    post_json("/v1/audio/transcriptions", "{}", &r);
    check_error(&r, 400, "not multipart");
    free(r.body);
    free(wav);
}

/* A multipart body with boundary "b" from (name, filename or NULL, data) parts. */
static size_t multipart(char *buf, size_t cap, const char *const parts[][3], int n, bool closed)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        off += (size_t)snprintf(buf + off, cap - off, "--b\r\nContent-Disposition: form-data; name=\"%s\"", parts[i][0]);
        if (parts[i][1]) off += (size_t)snprintf(buf + off, cap - off, "; filename=\"%s\"", parts[i][1]);
        off += (size_t)snprintf(buf + off, cap - off, "\r\n\r\n%s\r\n", parts[i][2]);
    }
    if (closed) off += (size_t)snprintf(buf + off, cap - off, "--b--\r\n");
    return off;
}

/* HTTP edge cases: multipart bodies that are wrong in each way, methods and routes that do not exist. */
static void test_http_edges(const char *wav, size_t wav_len)
{
    struct http_resp r;
    char body[4096];
    const char *const one_file[][3] = {{"file", "a.wav", "RIFFxxxxWAVE"}, {"model", NULL, "whisper-1"}};
    size_t n = multipart(body, sizeof body, one_file, 2, true);

    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data", body, n, NULL, NULL, &r);
    check_error(&r, 400, "no boundary");
    CHECK(r.body && strstr(r.body, "boundary"));
    free(r.body);

    /* Cut before the closing delimiter. */
    n = multipart(body, sizeof body, one_file, 2, false);
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", body, n - 2, NULL, NULL,
            &r);
    check_error(&r, 400, "truncated multipart");
    free(r.body);

    /* The same boundary but a body that is not multipart at all. */
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", "just text", 9, NULL,
            NULL, &r);
    check_error(&r, 400, "not multipart body");
    free(r.body);

    const char *const two_files[][3] = {{"file", "a.wav", "one"}, {"file", "b.wav", "two"}};
    n = multipart(body, sizeof body, two_files, 2, true);
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", body, n, NULL, NULL, &r);
    check_error(&r, 400, "duplicate file");
    CHECK(r.body && strstr(r.body, "more than once"));
    free(r.body);

    const char *const empty[][3] = {{"file", "a.wav", ""}};
    n = multipart(body, sizeof body, empty, 1, true);
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", body, n, NULL, NULL, &r);
    check_error(&r, 400, "empty file");
    free(r.body);

    const char *const no_file[][3] = {{"model", NULL, "whisper-1"}};
    n = multipart(body, sizeof body, no_file, 1, true);
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", body, n, NULL, NULL, &r);
    check_error(&r, 400, "no file");
    free(r.body);

    /* A text file under an audio name. */
    struct upload u = {"hello, I am a text file\n", 24, NULL};
    request("POST", "/v1/audio/transcriptions", KEY, NULL, NULL, 0, make_upload, &u, &r);
    check_error(&r, 400, "text file");
    free(r.body);
    /* And the real thing still works after all that. */
    u = (struct upload){wav, wav_len, "text"};
    request("POST", "/v1/audio/transcriptions", KEY, NULL, NULL, 0, make_upload, &u, &r);
    CHECK_INT_EQ(r.status, 200);
    free(r.body);

    /* Methods a route does not take, and routes that do not exist. */
    static const char *const wrong[][2] = {{"DELETE", "/health"},          {"PUT", "/v1/audio/speech"},
                                           {"GET", "/v1/chat/completions"}, {"POST", "/metrics"},
                                           {"PATCH", "/v1/models"}};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        request(wrong[i][0], wrong[i][1], KEY, "application/json", "{}", 2, NULL, NULL, &r);
        CHECK(r.status == 405 || r.status == 400);
        if (r.status == 405) check_error(&r, 405, wrong[i][1]);
        free(r.body);
    }
    static const char *const unknown[] = {"/v1", "/v1/chat", "/v1/chat/completions/x", "/healthz", "/metrics/"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        get(unknown[i], KEY, &r);
        check_error(&r, 404, unknown[i]);
        free(r.body);
    }
    /* Oversized bodies on the other POST routes. */
    size_t big_n = (1 << 20) + 1;
    char *big = calloc(1, big_n);
    request("POST", "/v1/chat/completions", KEY, "application/json", big, big_n, NULL, NULL, &r);
    check_error(&r, 413, "big chat");
    free(r.body);
    request("POST", "/v1/audio/transcriptions", KEY, "multipart/form-data; boundary=b", big, big_n, NULL, NULL,
            &r);
    check_error(&r, 413, "big upload");
    free(r.body);
    free(big);
    /* Bad JSON on the JSON routes. */
    static const char *const bad_json[] = {"", "{", "[]", "{\"input\":", "null", "{\"input\":\"x\"} trailing"};
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        post_json("/v1/audio/speech", bad_json[i], &r);
        check_error(&r, 400, bad_json[i]);
        free(r.body);
    }
    /* The counters saw all of it. */
    get("/metrics", KEY, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK(r.body && strstr(r.body, "banter_http_requests_total{route=\"/v1/audio/transcriptions\",code=\"400\"}"));
    CHECK(r.body && strstr(r.body, "banter_http_requests_total{route=\"other\",code=\"404\"}"));
    free(r.body);
}

static void test_concurrent(void)
{
    enum { N = 16 };
    pthread_t th[N];
    int arg[N];
    for (int i = 0; i < N; i++) {
        arg[i] = i;
        pthread_create(&th[i], NULL, speak_one, &arg[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += arg[i];
    }
    CHECK_INT_EQ(ok, N);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[256];
    banter_asr *asr = NULL;
    banter_asr_config ac = banter_asr_config_default();
    CHECK_INT_EQ(banter_asr_open(&ac, &asr, err, sizeof err), 0);
    banter_tts *tts = NULL;
    banter_tts_config tc = banter_tts_config_default();
    CHECK_INT_EQ(banter_tts_open(&tc, &tts, err, sizeof err), 0);

    struct srv_config cfg = {.port = 0,
                             .api_key = KEY,
                             .max_body = 1 << 20,
                             .n_workers = 3,
                             .allowed_origin = "http://app.example",
                             .model_id = "banter-test"};
    struct srv *s = NULL;
    int st = srv_open(&cfg, asr, &s, err, sizeof err);
    CHECK_INT_EQ(st, 0);
    if (st) {
        fprintf(stderr, "srv_open: %s\n", err);
        return test_finish("test_server");
    }
    port = srv_port(s);
    CHECK(port > 0);
    pthread_t loop;
    pthread_create(&loop, NULL, run_server, s);

    test_basic_routes();
    test_speech();
    test_limits_and_disconnects();
    test_transcription(tts);
    test_concurrent();

    srv_stop(s);
    pthread_join(loop, NULL);
    srv_close(s);

    /* A second server on the same port fails cleanly while the first listens; a stopped-before-run one
     * closes. */
    struct srv *a = NULL, *b = NULL;
    cfg.port = 0;
    CHECK_INT_EQ(srv_open(&cfg, NULL, &a, err, sizeof err), 0);
    if (a) {
        cfg.port = srv_port(a);
        CHECK(srv_open(&cfg, NULL, &b, err, sizeof err) != 0);
        CHECK(b == NULL);
        srv_stop(a);
        CHECK_INT_EQ(srv_run(a), 0);
        srv_close(a);
    }

    banter_tts_close(tts);
    banter_asr_close(asr);
    curl_global_cleanup();
    return test_finish("test_server");
}
