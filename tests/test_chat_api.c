/*
 * test_chat_api.c: POST /v1/chat/completions, first as pure functions (src/server/chat.c), then end to end
 * against an in-process server with the tiny test model, with libcurl and raw sockets as clients:
 *   1. Request parsing: a full valid request; every kind of invalid one gets its message and the field named.
 *   2. The filter: pieces that end inside a UTF-8 character are held back, invalid bytes become U+FFFD, stop
 *      strings are found across piece boundaries and cut out.
 *   3. Rendering: the completion, chunk, usage and error objects parse back as JSON with the right fields.
 *   4. The server: a greedy completion, the same request streamed (every event parsed; the deltas concatenate
 *      to the same text), usage numbers, stop strings, 400s with their param, 503 without a model, more
 *      requests than conversations, a client that leaves mid-stream, and the API key.
 */
#include "core/core.h"
#include "server/chat.h"
#include "server/server.h"

#include "http.h"
#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#define KEY "chat-key"

/* ---- pure functions ---- */

static void test_parse_valid(void)
{
    const char *body = "{\"model\":\"gpt-x\",\"messages\":["
                       "{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},"
                       "{\"type\":\"text\",\"text\":\"there\"}]},"
                       "{\"role\":\"assistant\",\"content\":null},"
                       "{\"role\":\"user\",\"content\":\"caf\\u00e9\",\"name\":\"bob\"}],"
                       "\"max_tokens\":10,\"max_completion_tokens\":20,\"temperature\":0.5,\"top_p\":0.9,"
                       "\"seed\":42,\"stop\":[\"END\",\"\\n\\n\"],\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"n\":1,\"frequency_penalty\":0,"
                       "\"tools\":[],\"tool_choice\":\"none\",\"response_format\":{\"type\":\"text\"},"
                       "\"unknown\":{\"x\":[1,2]}}";
    struct chat_request r;
    char err[256];
    int rc = chat_request_parse(body, strlen(body), &r, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_STR_EQ(r.model, "gpt-x");
    CHECK_INT_EQ(r.n_msgs, 4);
    CHECK_STR_EQ(r.msgs[0].role, "system");
    CHECK_STR_EQ(r.msgs[0].content, "Be brief.");
    CHECK_STR_EQ(r.msgs[1].role, "user");
    CHECK_STR_EQ(r.msgs[1].content, "Hello\nthere");
    CHECK_STR_EQ(r.msgs[2].role, "assistant");
    CHECK_STR_EQ(r.msgs[2].content, "");
    CHECK_STR_EQ(r.msgs[3].content, "caf\xC3\xA9");
    CHECK_INT_EQ(r.max_tokens, 20);
    CHECK_INT_EQ(r.n_stop, 2);
    CHECK_STR_EQ(r.stop[1], "\n\n");
    CHECK(r.stream && r.include_usage);
    struct agent_reply_config rc2;
    chat_request_reply_config(&r, &rc2);
    CHECK_NEAR(rc2.sampler.temperature, 0.5, 1e-6);
    CHECK_NEAR(rc2.sampler.top_p, 0.9, 1e-6);
    CHECK_INT_EQ(rc2.sampler.seed, 42);
    CHECK_INT_EQ(rc2.max_tokens, 20);
    chat_request_free(&r);
    CHECK(r.msgs == NULL && r.n_msgs == 0);

    /* Minimal: defaults. top_p 0 means greedy. A single stop string. */
    body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0,\"stop\":\"x\",\"stream\":null}";
    CHECK_INT_EQ(chat_request_parse(body, strlen(body), &r, err, sizeof err), 0);
    CHECK(r.model == NULL && !r.stream && r.n_stop == 1);
    chat_request_reply_config(&r, &rc2);
    CHECK_INT_EQ(rc2.max_tokens, CHAT_DEFAULT_MAX_TOKENS);
    CHECK_NEAR(rc2.sampler.temperature, 0, 0);
    chat_request_free(&r);
    chat_request_free(&r); /* twice is harmless */
}

static void test_parse_invalid(void)
{
    static const struct {
        const char *body, *param, *says;
    } cases[] = {
        {"", "", "not valid JSON"},
        {"{\"messages\":", "", "not valid JSON"},
        {"[1,2]", "", "JSON object"},
        {"{}", "messages", "required"},
        {"{\"messages\":{}}", "messages", "must be an array"},
        {"{\"messages\":[]}", "messages", "at least one"},
        {"{\"messages\":[1]}", "messages[0]", "must be an object"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "must be a string"},
        {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0].role", "system, developer"},
        {"{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "missing"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content", "missing"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "string or an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
         "messages[0].content[0]", "only text"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0]",
         "'messages[0].content[0].text' must be a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[7]}]}", "messages[0].content[0]", "must be an object"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":3}", "model", "'model' must be"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens", "from 1 to"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", "max_tokens", "integer"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":100000}",
         "max_completion_tokens", "from 1 to"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":2.5}", "temperature", "0 to 2"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature",
         "number"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":-0.1}", "top_p", "0 to 1"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", "seed", "integer"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n", "'n' must be 1"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         "stop", "at most 4"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",1]}", "stop", "strings"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":\"\"}", "stop", "1 to 256"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":5}", "stop", "strings"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", "stream", "true or false"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{\"include_usage\":true}}",
         "stream_options", "only allowed"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"stream_options\":"
         "{\"include_usage\":1}}",
         "stream_options.include_usage", "true or false"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", "tools",
         "not supported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{}]}", "functions",
         "not supported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}", "tool_choice",
         "not supported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
         "response_format", "not supported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":\"text\"}",
         "response_format", "must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chat_request r;
        char err[256] = "";
        int rc = chat_request_parse(cases[i].body, strlen(cases[i].body), &r, err, sizeof err);
        CHECK_INT_EQ(rc, BANTER_ERR_INVALID_ARG);
        CHECK_STR_EQ(r.param, cases[i].param);
        CHECK(strstr(err, cases[i].says) != NULL);
        if (!strstr(err, cases[i].says)) fprintf(stderr, "  case %zu: message \"%s\"\n", i, err);
        CHECK(r.msgs == NULL && r.model == NULL && r.n_stop == 0);
    }

    /* Too much text in all: each message is fine, together they are over the limit. */
    size_t each = CHAT_MAX_TEXT / 2 + 10;
    char *big = malloc(2 * each + 256);
    size_t off = (size_t)sprintf(big, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(big + off, 'a', each);
    off += each;
    off += (size_t)sprintf(big + off, "\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"");
    memset(big + off, 'b', each);
    off += each;
    off += (size_t)sprintf(big + off, "\"}]}]}");
    struct chat_request r;
    char err[256];
    CHECK_INT_EQ(chat_request_parse(big, off, &r, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK(strstr(err, "too long") != NULL);
    CHECK_STR_EQ(r.param, "messages");
    free(big);
}

static void test_filter(void)
{
    struct chat_filter f;
    chat_filter_init(&f, NULL);
    /* "é" (C3 A9) split across pieces, then a 4-byte emoji split three ways. */
    CHECK_INT_EQ(chat_filter_feed(&f, "h\xC3", 2), 1);
    CHECK_INT_EQ(f.safe, 1);
    CHECK_INT_EQ(f.len, 1);
    CHECK_INT_EQ(chat_filter_feed(&f, "\xA9!", 2), 1);
    CHECK_STR_EQ(f.text, "h\xC3\xA9!");
    CHECK_INT_EQ(f.safe, 4);
    chat_filter_feed(&f, "\xF0\x9F", 2);
    chat_filter_feed(&f, "\x98", 1);
    CHECK_INT_EQ(f.safe, 4);
    chat_filter_feed(&f, "\x80", 1);
    CHECK_STR_EQ(f.text, "h\xC3\xA9!\xF0\x9F\x98\x80");
    /* Invalid bytes: a stray continuation, an overlong lead, a lead cut short by ASCII, a surrogate. */
    chat_filter_feed(&f, "\x80" "\xC0" "\xE2\x82" "x" "\xED\xA0\x80", 9);
    CHECK_STR_EQ(f.text, "h\xC3\xA9!\xF0\x9F\x98\x80"
                         "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    /* An incomplete character at the end of the generation. */
    chat_filter_feed(&f, "\xE2\x82", 2);
    size_t before = f.len;
    CHECK_INT_EQ(chat_filter_finish(&f), 0);
    CHECK_INT_EQ(f.len, before + 3);
    CHECK_INT_EQ(f.safe, f.len);
    json_t *valid = json_stringn(f.text, f.len); /* jansson refuses invalid UTF-8 */
    CHECK(valid != NULL);
    json_decref(valid);
    chat_filter_deinit(&f);

    /* Stop strings across pieces: "END" arrives as "E" | "N" | "D". */
    struct chat_request r;
    char err[256];
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"END\",\"\xC3\xA9t\xC3\xA9\"]}";
    CHECK_INT_EQ(chat_request_parse(body, strlen(body), &r, err, sizeof err), 0);
    chat_filter_init(&f, &r);
    CHECK_INT_EQ(chat_filter_feed(&f, "abcE", 4), 1);
    CHECK_INT_EQ(f.safe, 3); /* "E" may start "END" */
    CHECK_INT_EQ(chat_filter_feed(&f, "N", 1), 1);
    CHECK_INT_EQ(f.safe, 3);
    CHECK_INT_EQ(chat_filter_feed(&f, "Dxyz", 4), 0);
    CHECK(f.stopped);
    CHECK_STR_EQ(f.text, "abc");
    CHECK_INT_EQ(f.safe, 3);
    CHECK_INT_EQ(chat_filter_feed(&f, "more", 4), 0); /* nothing after a stop */
    CHECK_STR_EQ(f.text, "abc");
    chat_filter_deinit(&f);

    /* A false start is released when it stops matching; a stop string split inside a character. */
    chat_filter_init(&f, &r);
    chat_filter_feed(&f, "EN", 2);
    CHECK_INT_EQ(f.safe, 0);
    chat_filter_feed(&f, "x \xC3", 3);
    CHECK_INT_EQ(f.safe, 4); /* "ENx " is final; the lone C3 is held back as an incomplete character */
    chat_filter_feed(&f, "\xA9t\xC3", 3);
    CHECK_INT_EQ(f.safe, 4); /* "ét" may start "été" */
    chat_filter_feed(&f, "\xA9 tail", 7);
    CHECK(f.stopped);
    CHECK_STR_EQ(f.text, "ENx ");
    chat_filter_deinit(&f);

    /* The end of the generation releases a held-back partial match. */
    chat_filter_init(&f, &r);
    chat_filter_feed(&f, "okEN", 4);
    CHECK_INT_EQ(f.safe, 2);
    chat_filter_finish(&f);
    CHECK_INT_EQ(f.safe, 4);
    CHECK_STR_EQ(f.text, "okEN");
    chat_filter_deinit(&f);
    chat_request_free(&r);
}

static json_t *parse_event(const char *ev, size_t len)
{
    CHECK(len > 8 && !strncmp(ev, "data: ", 6) && !strcmp(ev + len - 2, "\n\n"));
    return json_loadb(ev + 6, len - 8, 0, NULL);
}

static void test_render(void)
{
    struct chat_meta m;
    chat_meta_init(&m, 0x0123456789abcdefull, 0xdeadbeefull, 1700000000, "tiny", true);
    CHECK_STR_EQ(m.id, "chatcmpl-0123456789abcdefdeadbeef");
    struct chat_usage u = {7, 5};
    size_t len = 0;
    char *s = chat_render_completion(&m, "hi \"there\"\n", 11, "length", &u, &len);
    json_t *j = json_loadb(s, len, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "chat.completion");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "id")), m.id);
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "created")), 1700000000);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "model")), "tiny");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(c0, "index")), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(c0, "finish_reason")), "length");
    json_t *msg = json_object_get(c0, "message");
    CHECK_STR_EQ(json_string_value(json_object_get(msg, "role")), "assistant");
    CHECK_STR_EQ(json_string_value(json_object_get(msg, "content")), "hi \"there\"\n");
    json_t *ju = json_object_get(j, "usage");
    CHECK_INT_EQ(json_integer_value(json_object_get(ju, "prompt_tokens")), 7);
    CHECK_INT_EQ(json_integer_value(json_object_get(ju, "completion_tokens")), 5);
    CHECK_INT_EQ(json_integer_value(json_object_get(ju, "total_tokens")), 12);
    json_decref(j);
    free(s);

    s = chat_render_chunk(&m, true, NULL, 0, NULL, &len);
    j = parse_event(s, len);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(c0, "delta"), "role")), "assistant");
    CHECK(json_is_null(json_object_get(c0, "finish_reason")));
    CHECK(json_is_null(json_object_get(j, "usage")) && json_object_get(j, "usage"));
    json_decref(j);
    free(s);

    s = chat_render_chunk(&m, false, "x\xC3\xA9", 3, NULL, &len);
    j = parse_event(s, len);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(c0, "delta"), "content")), "x\xC3\xA9");
    CHECK(json_object_get(json_object_get(c0, "delta"), "role") == NULL);
    json_decref(j);
    free(s);

    s = chat_render_chunk(&m, false, NULL, 0, "stop", &len);
    j = parse_event(s, len);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_INT_EQ(json_object_size(json_object_get(c0, "delta")), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    json_decref(j);
    free(s);

    s = chat_render_usage_chunk(&m, &u, &len);
    j = parse_event(s, len);
    CHECK_INT_EQ(json_array_size(json_object_get(j, "choices")), 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 12);
    json_decref(j);
    free(s);

    /* An error message cut inside a character still renders as valid JSON. */
    s = chat_render_error("bad \xC3", NULL, "messages[0].role", false, &len);
    j = json_loadb(s, len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    CHECK_STR_EQ(json_string_value(json_object_get(e, "message")), "bad \xEF\xBF\xBD");
    CHECK_STR_EQ(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    CHECK_STR_EQ(json_string_value(json_object_get(e, "param")), "messages[0].role");
    CHECK(json_is_null(json_object_get(e, "code")));
    json_decref(j);
    free(s);
}

/* ---- the server ---- */

static int port;

/* Sends one request (out->abort_after, when set beforehand, cuts the transfer short). */
static CURLcode request(const char *method, const char *path, const char *key, const char *body,
                        struct http_resp *out)
{
    struct http_req rq = {.port = port, .method = method, .path = path, .key = key,
                          .ctype = "application/json", .body = body, .len = body ? strlen(body) : 0,
                          .timeout_s = 300};
    return http_request(&rq, out);
}

static CURLcode post(const char *body, struct http_resp *out)
{
    out->abort_after = 0;
    return request("POST", "/v1/chat/completions", KEY, body, out);
}

/* Checks an OpenAI-shaped error with the given status and param (NULL: null). */
static void check_error(const struct http_resp *r, long status, const char *param)
{
    CHECK_INT_EQ(r->status, status);
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    CHECK(msg && msg[0]);
    CHECK_STR_EQ(json_string_value(json_object_get(e, "type")),
                 status >= 500 ? "server_error" : "invalid_request_error");
    if (param)
        CHECK_STR_EQ(json_string_value(json_object_get(e, "param")), param);
    else
        CHECK(json_is_null(json_object_get(e, "param")));
    if (!msg) fprintf(stderr, "  body was %.*s\n", (int)r->len, r->body ? r->body : "");
    json_decref(j);
}

/* The content and usage of a non-streamed completion (content malloc'd). */
static char *completion_text(const struct http_resp *r, const char *model, const char **finish_out, int *prompt,
                             int *completion)
{
    CHECK_INT_EQ(r->status, 200);
    CHECK(!strncmp(r->ctype, "application/json", 16));
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "chat.completion");
    const char *id = json_string_value(json_object_get(j, "id"));
    CHECK(id && !strncmp(id, "chatcmpl-", 9) && strlen(id) == 9 + 24);
    CHECK(json_integer_value(json_object_get(j, "created")) > 1600000000);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "model")), model);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_INT_EQ(json_array_size(json_object_get(j, "choices")), 1);
    const char *finish = json_string_value(json_object_get(c0, "finish_reason"));
    CHECK(finish && (!strcmp(finish, "stop") || !strcmp(finish, "length")));
    *finish_out = finish && !strcmp(finish, "length") ? "length" : "stop";
    json_t *msg = json_object_get(c0, "message");
    CHECK_STR_EQ(json_string_value(json_object_get(msg, "role")), "assistant");
    const char *content = json_string_value(json_object_get(msg, "content"));
    CHECK(content != NULL);
    json_t *u = json_object_get(j, "usage");
    *prompt = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    *completion = (int)json_integer_value(json_object_get(u, "completion_tokens"));
    CHECK_INT_EQ(json_integer_value(json_object_get(u, "total_tokens")), *prompt + *completion);
    char *out = strdup(content ? content : "");
    json_decref(j);
    return out;
}

/* Parses a whole event stream: every event is "data: ..." and a blank line; each JSON one a chunk of one id.
 * Returns the concatenated content (malloc'd) with the finish reason and usage (-1 when none). */
static char *stream_text(const struct http_resp *r, const char **finish_out, int *prompt, int *completion,
                         int *n_events)
{
    CHECK_INT_EQ(r->status, 200);
    CHECK(!strncmp(r->ctype, "text/event-stream", 17));
    size_t cap = r->len + 1, tl = 0;
    char *text = calloc(1, cap);
    *finish_out = NULL;
    *prompt = *completion = -1;
    *n_events = 0;
    bool done = false, role_seen = false;
    char id[64] = "";
    const char *p = r->body ? r->body : "", *end = p + r->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        CHECK(nl != NULL);
        if (!nl) break;
        CHECK(!done); /* nothing after [DONE] */
        CHECK(nl - p > 6 && !strncmp(p, "data: ", 6));
        CHECK(nl + 1 < end && nl[1] == '\n'); /* each event ends with a blank line */
        const char *data = p + 6;
        size_t dl = (size_t)(nl - data);
        p = nl + 2;
        (*n_events)++;
        if (dl == 6 && !strncmp(data, "[DONE]", 6)) {
            done = true;
            continue;
        }
        json_t *j = json_loadb(data, dl, 0, NULL);
        CHECK(j != NULL);
        if (!j) {
            fprintf(stderr, "  bad event: %.*s\n", (int)dl, data);
            continue;
        }
        CHECK_STR_EQ(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
        const char *jid = json_string_value(json_object_get(j, "id"));
        CHECK(jid != NULL);
        if (!id[0] && jid) snprintf(id, sizeof id, "%s", jid);
        CHECK_STR_EQ(jid, id);
        json_t *choices = json_object_get(j, "choices");
        json_t *u = json_object_get(j, "usage");
        if (json_array_size(choices) == 0) {
            CHECK(*finish_out != NULL); /* usage comes after the finish */
            *prompt = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
            *completion = (int)json_integer_value(json_object_get(u, "completion_tokens"));
            CHECK_INT_EQ(json_integer_value(json_object_get(u, "total_tokens")), *prompt + *completion);
        } else {
            json_t *c0 = json_array_get(choices, 0);
            json_t *delta = json_object_get(c0, "delta");
            const char *role = json_string_value(json_object_get(delta, "role"));
            CHECK_INT_EQ(role != NULL, *n_events == 1); /* the role comes first, and only there */
            if (role) {
                CHECK_STR_EQ(role, "assistant");
                role_seen = true;
            }
            CHECK(*finish_out == NULL); /* nothing after the finish but usage */
            const char *content = json_string_value(json_object_get(delta, "content"));
            if (content) {
                size_t l = strlen(content);
                CHECK(tl + l < cap);
                if (tl + l < cap) memcpy(text + tl, content, l), tl += l;
            }
            const char *finish = json_string_value(json_object_get(c0, "finish_reason"));
            if (finish) *finish_out = !strcmp(finish, "length") ? "length" : "stop";
        }
        json_decref(j);
    }
    CHECK(done && role_seen && *finish_out);
    return text;
}

static const char *const greedy =
    "{\"model\":\"m1\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"Tell me a story about a cat.\"}],\"temperature\":0,\"max_tokens\":40%s}";

static void test_completions(void)
{
    char body[1024];
    struct http_resp r;
    snprintf(body, sizeof body, greedy, "");
    CHECK_INT_EQ(post(body, &r), CURLE_OK);
    const char *finish = NULL;
    int prompt = 0, completion = 0;
    char *text = completion_text(&r, "m1", &finish, &prompt, &completion);
    printf("completion (%d+%d tokens, %s): \"%s\"\n", prompt, completion, finish, text);
    CHECK(prompt > 5);
    CHECK(completion > 0 && completion <= 40);
    CHECK_INT_EQ(!strcmp(finish, "length"), completion == 40);
    free(r.body);

    /* The same request streamed, with usage: the deltas concatenate to the same text. */
    snprintf(body, sizeof body, greedy, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    CHECK_INT_EQ(post(body, &r), CURLE_OK);
    const char *sfinish = NULL;
    int sp = 0, sc = 0, n_events = 0;
    char *stext = stream_text(&r, &sfinish, &sp, &sc, &n_events);
    CHECK_STR_EQ(stext, text);
    CHECK_STR_EQ(sfinish, finish);
    CHECK_INT_EQ(sp, prompt);
    CHECK_INT_EQ(sc, completion);
    CHECK(n_events >= 4);
    free(r.body);

    /* Streamed without usage: no usage event, and no "usage" key in the chunks. */
    snprintf(body, sizeof body, greedy, ",\"stream\":true");
    post(body, &r);
    char *stext2 = stream_text(&r, &sfinish, &sp, &sc, &n_events);
    CHECK_STR_EQ(stext2, text);
    CHECK_INT_EQ(sp, -1);
    CHECK(r.body && strstr(r.body, "\"usage\"") == NULL);
    free(r.body);
    free(stext2);

    /* A stop string taken from the middle of the greedy text cuts it there, finish "stop". */
    size_t tl = strlen(text);
    if (tl >= 6) {
        char stop[8];
        size_t at = tl / 2;
        while (at > 0 && ((unsigned char)text[at] & 0xC0) == 0x80)
            at--; /* start on a character */
        snprintf(stop, sizeof stop, "%.3s", text + at);
        while (stop[0] && ((unsigned char)stop[strlen(stop) - 1] & 0xC0) >= 0x80)
            stop[strlen(stop) - 1] = 0; /* and end on one */
        char *first = strstr(text, stop);
        json_t *js = json_string(stop);
        char *stop_json = json_dumps(js, JSON_ENCODE_ANY);
        char extra[128];
        snprintf(extra, sizeof extra, ",\"stop\":[\"zzzzqq\",%s]", stop_json);
        snprintf(body, sizeof body, greedy, extra);
        post(body, &r);
        char *cut = completion_text(&r, "m1", &finish, &prompt, &completion);
        CHECK_INT_EQ(strlen(cut), (size_t)(first - text));
        CHECK(!strncmp(cut, text, strlen(cut)));
        CHECK_STR_EQ(finish, "stop");
        free(r.body);
        snprintf(extra, sizeof extra, ",\"stop\":%s,\"stream\":true", stop_json);
        snprintf(body, sizeof body, greedy, extra);
        post(body, &r);
        char *scut = stream_text(&r, &sfinish, &sp, &sc, &n_events);
        CHECK_STR_EQ(scut, cut);
        CHECK_STR_EQ(sfinish, "stop");
        free(r.body);
        free(scut);
        free(cut);
        free(stop_json);
        json_decref(js);
    }
    free(stext);
    free(text);

    /* The model defaults to the server's id; sampling with a seed is repeatable. */
    const char *sampled = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}],"
                          "\"temperature\":1.0,\"top_p\":0.95,\"seed\":7,\"max_completion_tokens\":12}";
    post(sampled, &r);
    char *a = completion_text(&r, "chat-test", &finish, &prompt, &completion);
    free(r.body);
    post(sampled, &r);
    char *b = completion_text(&r, "chat-test", &finish, &prompt, &completion);
    CHECK_STR_EQ(a, b);
    free(r.body);
    free(a);
    free(b);
}

static void test_bad_requests(void)
{
    struct http_resp r;
    post("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", &r);
    check_error(&r, 400, "temperature");
    free(r.body);
    post("{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", &r);
    check_error(&r, 400, "messages[0].role");
    free(r.body);
    post("{\"messages\": [", &r);
    check_error(&r, 400, NULL);
    free(r.body);
    post("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", &r);
    check_error(&r, 400, "tools");
    free(r.body);
    request("GET", "/v1/chat/completions", KEY, NULL, &r);
    check_error(&r, 405, NULL);
    free(r.body);
    /* The key is needed, here and on /metrics. */
    request("POST", "/v1/chat/completions", NULL, "{}", &r);
    check_error(&r, 401, NULL);
    free(r.body);
    request("GET", "/metrics", "nope", NULL, &r);
    check_error(&r, 401, NULL);
    free(r.body);
    request("GET", "/metrics", KEY, NULL, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK(!strncmp(r.ctype, "text/plain", 10));
    CHECK(r.body && strstr(r.body, "banter_http_requests_total{route=\"/v1/chat/completions\",code=\"200\"}"));
    CHECK(r.body && strstr(r.body, "banter_http_requests_total{route=\"/v1/chat/completions\",code=\"400\"}"));
    CHECK(r.body && strstr(r.body, "\nbanter_llm_generated_tokens_total ") &&
          !strstr(r.body, "\nbanter_llm_generated_tokens_total 0\n"));
    /* The scheduler's counters come along with a native model. */
    CHECK(r.body && strstr(r.body, "\nbanter_llm_steps_total ") && !strstr(r.body, "\nbanter_llm_steps_total 0\n"));
    CHECK(r.body && strstr(r.body, "\nbanter_llm_batch_size_bucket{le=\"+Inf\"} "));
    free(r.body);
}

/* A client that leaves after the first bytes of a long stream: the generation is cancelled and everything
 * freed (the sanitizer builds check the latter at exit); the server answers the next request at once. */
static void test_disconnect(void)
{
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Count to a thousand.\"}],"
                       "\"temperature\":1.5,\"max_tokens\":2000,\"stream\":true}";
    for (int i = 0; i < 3; i++) {
        struct http_resp r = {.abort_after = 1 + (size_t)i * 200};
        /* The conversation of the one before is freed a moment after its client left: until then, 503. */
        for (int k = 0; k < 100; k++) {
            r.abort_after = 1 + (size_t)i * 200;
            CURLcode rc = request("POST", "/v1/chat/completions", KEY, body, &r);
            if (r.status != 503) {
                CHECK_INT_EQ(rc, CURLE_WRITE_ERROR);
                break;
            }
            free(r.body);
            r.body = NULL;
            usleep(20000);
        }
        CHECK_INT_EQ(r.status, 200);
        free(r.body);
    }
    /* Also a raw client that sends the request and closes without reading anything. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_INT_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
                     "\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    CHECK_INT_EQ(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    usleep(50000);
    close(fd);

    struct http_resp r;
    double t0 = core_time_ms();
    post("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4}", &r);
    CHECK_INT_EQ(r.status, 200);
    printf("request after disconnects answered in %.0f ms\n", core_time_ms() - t0);
    free(r.body);
}

struct par {
    int i;
    long status;
    bool clean;
};

static void *one_request(void *arg)
{
    struct par *p = arg;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a long poem.\"}],"
                       "\"temperature\":1.2,\"max_tokens\":300}";
    struct http_resp r;
    post(body, &r);
    p->status = r.status;
    if (r.status == 503) {
        json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        p->clean = msg && strstr(msg, "retry later");
        json_decref(j);
    } else {
        p->clean = r.status == 200;
    }
    free(r.body);
    return NULL;
}

/* More requests at once than the model has conversations (2): each is answered, either fully or with a 503
 * that says to retry; none hangs. */
static void test_over_capacity(void)
{
    enum { N = 6 };
    pthread_t th[N];
    struct par p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct par){.i = i};
        pthread_create(&th[i], NULL, one_request, &p[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(p[i].clean);
        ok += p[i].status == 200;
        busy += p[i].status == 503;
    }
    printf("over capacity: %d answered, %d told to retry\n", ok, busy);
    CHECK(ok >= 1);
    CHECK_INT_EQ(ok + busy, N);
}

static void *run_server(void *arg)
{
    CHECK_INT_EQ(srv_run(arg), 0);
    return NULL;
}

int main(void)
{
    test_parse_valid();
    test_parse_invalid();
    test_filter();
    test_render();

    char path[512], err[256];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", path, sizeof path)) {
        test_finish("test_chat_api");
        return test_n_failed ? 1 : TEST_SKIP_CODE;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    banter_llm_config lc = banter_llm_config_default();
    lc.model = path;
    lc.n_sessions = 2;
    lc.n_threads = 2;
    lc.n_ctx = 512;
    banter_llm *llm = NULL;
    int st = banter_llm_open(&lc, &llm, err, sizeof err);
    CHECK_INT_EQ(st, 0);
    if (st) {
        fprintf(stderr, "banter_llm_open: %s\n", err);
        return test_finish("test_chat_api");
    }

    struct srv_config cfg = {.api_key = KEY, .n_workers = 6, .model_id = "chat-test", .llm = llm};
    struct srv *s = NULL;
    st = srv_open(&cfg, NULL, &s, err, sizeof err);
    CHECK_INT_EQ(st, 0);
    if (st) {
        fprintf(stderr, "srv_open: %s\n", err);
        return test_finish("test_chat_api");
    }
    port = srv_port(s);
    pthread_t loop;
    pthread_create(&loop, NULL, run_server, s);
    test_completions();
    test_bad_requests();
    test_disconnect();
    test_over_capacity();
    srv_stop(s);
    pthread_join(loop, NULL);
    srv_close(s);

    /* Without a model: 503 with a message that says why. */
    cfg.llm = NULL;
    cfg.api_key = NULL;
    CHECK_INT_EQ(srv_open(&cfg, NULL, &s, err, sizeof err), 0);
    port = srv_port(s);
    pthread_create(&loop, NULL, run_server, s);
    struct http_resp r;
    request("POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r);
    check_error(&r, 503, NULL);
    CHECK(r.body && strstr(r.body, "without a language model"));
    free(r.body);
    /* Validation still comes first. */
    request("POST", "/v1/chat/completions", NULL, "{\"messages\":7}", &r);
    check_error(&r, 400, "messages");
    free(r.body);
    srv_stop(s);
    pthread_join(loop, NULL);
    srv_close(s);

    banter_llm_close(llm);
    curl_global_cleanup();
    return test_finish("test_chat_api");
}
