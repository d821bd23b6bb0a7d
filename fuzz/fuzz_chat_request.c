/*
 * fuzz_chat_request.c: libFuzzer target for the chat-completions request parser and the output filter
 * (src/server/chat.c).
 *
 * The input is parsed as a request body from an exact-size heap copy (so ASan sees any read past the end). On
 * success the request must satisfy what the server relies on: 1..CHAT_MAX_MESSAGES messages with a mapped role
 * and NUL-terminated content, at most CHAT_MAX_TEXT bytes of text in all, a sane max_tokens and at most
 * CHAT_MAX_STOP non-empty stop strings; on failure there must be a message and nothing allocated (LeakSanitizer
 * checks the latter).
 *
 * Then the input's bytes are fed to the filter as generated text, in pieces whose lengths come from the input
 * itself, with the request's stop strings (or fixed ones when the parse failed). After every piece the
 * released part (text[0, safe)) must be valid UTF-8 and must never change afterwards, and at the end the text
 * must hold no stop string and render into a chunk that parses back as JSON.
 *
 * Seeds: fuzz/corpus/chat_request (valid requests of every shape, and a few invalid ones).
 */
#include "server/chat.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_request(const struct chat_request *r)
{
    if (r->n_msgs < 1 || r->n_msgs > CHAT_MAX_MESSAGES || !r->msgs) abort();
    size_t total = 0;
    for (size_t i = 0; i < r->n_msgs; i++) {
        const char *role = r->msgs[i].role;
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))) abort();
        if (!r->msgs[i].content) abort();
        total += strlen(r->msgs[i].content);
    }
    if (total > CHAT_MAX_TEXT) abort();
    if (r->max_tokens < 0 || r->max_tokens > CHAT_MAX_TOKENS) abort();
    if (r->n_stop > CHAT_MAX_STOP) abort();
    for (size_t i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0] || strlen(r->stop[i]) > CHAT_MAX_STOP_LEN) abort();
    if (r->include_usage && !r->stream) abort();
    struct agent_reply_config rc;
    chat_request_reply_config(r, &rc);
    if (rc.max_tokens < 1 || !(rc.sampler.temperature >= 0 && rc.sampler.temperature <= 2)) abort();
}

static bool valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

static void run_filter(const struct chat_request *req, const uint8_t *data, size_t size)
{
    struct chat_filter f;
    chat_filter_init(&f, req);
    char *released = malloc(size * 3 + 4); /* every byte may become a 3-byte U+FFFD */
    size_t n_released = 0;
    size_t off = 0, k = 0;
    while (off < size) {
        size_t n = 1 + data[k++ % size] % 7;
        if (n > size - off) n = size - off;
        int rc = chat_filter_feed(&f, (const char *)data + off, n);
        off += n;
        if (rc < 0) abort();
        if (f.safe > f.len) abort();
        /* What was released stays as it was. */
        const char *text = f.text ? f.text : ""; /* NULL until something was kept */
        if (f.safe < n_released || memcmp(text, released, n_released)) abort();
        if (!valid_utf8(text, f.safe)) abort();
        memcpy(released, text, f.safe);
        n_released = f.safe;
        if (rc == 0) break;
    }
    if (chat_filter_finish(&f)) abort();
    if (f.safe != f.len || f.len < n_released || memcmp(f.text ? f.text : "", released, n_released)) abort();
    if (!valid_utf8(f.text ? f.text : "", f.len)) abort();
    for (size_t i = 0; i < f.n_stop && f.text; i++)
        if (memmem(f.text, f.len, f.stop[i], strlen(f.stop[i]))) abort();
    struct chat_meta m;
    chat_meta_init(&m, 1, 2, 3, "model", true);
    size_t len = 0;
    char *ev = chat_render_chunk(&m, false, f.text ? f.text : "", f.len, NULL, &len);
    if (!ev || len < 8) abort();
    json_t *j = json_loadb(ev + 6, len - 8, JSON_ALLOW_NUL, NULL); /* "\u0000" is valid JSON */
    if (!j) abort();
    json_decref(j);
    free(ev);
    free(released);
    chat_filter_deinit(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    struct chat_request req;
    char err[256];
    err[0] = 0;
    int rc = chat_request_parse(copy, size, &req, err, sizeof err);
    if (rc == 0) {
        check_request(&req);
        run_filter(&req, data, size);
    } else {
        if ((rc != BANTER_ERR_INVALID_ARG && rc != BANTER_ERR_NOMEM) || !err[0] || req.msgs || req.model ||
            req.n_stop)
            abort();
        /* Fixed stop strings, one of them multi-byte, for inputs that are not requests. */
        static const char body[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                   "\"stop\":[\"\\n\\n\",\"END\",\"\\u00e9t\\u00e9\"]}";
        struct chat_request fixed;
        if (chat_request_parse(body, sizeof body - 1, &fixed, err, sizeof err)) abort();
        run_filter(&fixed, data, size);
        chat_request_free(&fixed);
    }
    chat_request_free(&req);
    free(copy);
    return 0;
}
