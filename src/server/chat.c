/*
 * chat.c: the chat-completions wire format (see chat.h for the request and response layouts).
 *
 * Parsing goes through jansson and then checks every field the server uses, naming the field in both the
 * message and req->param, since a client's first question about a 400 is which field was wrong. Rendering
 * builds jansson objects too: the text handed to them is valid UTF-8 by construction (the filter), so
 * json_stringn never refuses it and the output is always valid JSON.
 *
 * The filter decodes UTF-8 byte by byte with the usual rule for bad input: the longest prefix of a
 * well-formed sequence that is followed by a byte that does not continue it becomes one U+FFFD, and that byte
 * is looked at again as a possible start. Stop strings are searched only from the first byte not yet final
 * (f->safe), since a match starting earlier would have been found when its last byte arrived.
 */
#include "server/chat.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---- */

static int fail(struct chat_request *req, char *err, size_t err_len, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(struct chat_request *req, char *err, size_t err_len, const char *param, const char *fmt, ...)
{
    chat_request_free(req);
    snprintf(req->param, sizeof req->param, "%s", param ? param : "");
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return BANTER_ERR_INVALID_ARG;
}

static int nomem(struct chat_request *req, char *err, size_t err_len)
{
    chat_request_free(req);
    req->param[0] = 0;
    if (err && err_len) snprintf(err, err_len, "out of memory");
    return BANTER_ERR_NOMEM;
}

/* A field's value, with null taken as absent. */
static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static const char *map_role(const char *role)
{
    if (!strcmp(role, "system") || !strcmp(role, "developer")) return "system";
    if (!strcmp(role, "user")) return "user";
    if (!strcmp(role, "assistant")) return "assistant";
    return NULL;
}

/* Parses message i's content into a malloc'd string. Returns 0, or the status of fail/nomem. */
static int parse_content(struct chat_request *req, json_t *c, size_t i, bool assistant, char **out, char *err,
                         size_t err_len)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!c) {
        if (assistant) {
            *out = strdup("");
            return *out ? 0 : nomem(req, err, err_len);
        }
        return fail(req, err, err_len, param, "'%s' is missing: every message needs its text", param);
    }
    if (json_is_string(c)) {
        size_t n = json_string_length(c);
        if (n > CHAT_MAX_TEXT - req->n_text)
            return fail(req, err, err_len, "messages", "the messages are too long (at most %zu bytes of text)",
                        CHAT_MAX_TEXT);
        req->n_text += n;
        *out = strndup(json_string_value(c), n);
        return *out ? 0 : nomem(req, err, err_len);
    }
    if (!json_is_array(c))
        return fail(req, err, err_len, param, "'%s' must be a string or an array of text parts", param);
    /* Parts: measure and check first, then join. */
    size_t total = 0, n_parts = json_array_size(c);
    for (size_t k = 0; k < n_parts; k++) {
        json_t *p = json_array_get(c, k);
        char pp[80];
        snprintf(pp, sizeof pp, "messages[%zu].content[%zu]", i, k);
        if (!json_is_object(p)) return fail(req, err, err_len, pp, "'%s' must be an object", pp);
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!type)
            return fail(req, err, err_len, pp, "'%s.type' must be a string (\"text\")", pp);
        if (strcmp(type, "text"))
            return fail(req, err, err_len, pp,
                        "'%s.type' is '%.40s': only text content parts are supported", pp, type);
        json_t *t = json_object_get(p, "text");
        if (!json_is_string(t)) return fail(req, err, err_len, pp, "'%s.text' must be a string", pp);
        size_t n = json_string_length(t) + (k > 0);
        if (n > CHAT_MAX_TEXT - req->n_text - total)
            return fail(req, err, err_len, "messages", "the messages are too long (at most %zu bytes of text)",
                        CHAT_MAX_TEXT);
        total += n;
    }
    char *s = malloc(total + 1);
    if (!s) return nomem(req, err, err_len);
    size_t off = 0;
    for (size_t k = 0; k < n_parts; k++) {
        json_t *t = json_object_get(json_array_get(c, k), "text");
        if (k > 0) s[off++] = '\n';
        memcpy(s + off, json_string_value(t), json_string_length(t));
        off += json_string_length(t);
    }
    s[off] = 0;
    req->n_text += total;
    *out = s;
    return 0;
}

static int parse_messages(struct chat_request *req, json_t *msgs, char *err, size_t err_len)
{
    if (!msgs) return fail(req, err, err_len, "messages", "'messages' is required: an array of messages");
    if (!json_is_array(msgs)) return fail(req, err, err_len, "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) return fail(req, err, err_len, "messages", "'messages' must hold at least one message");
    if (n > CHAT_MAX_MESSAGES)
        return fail(req, err, err_len, "messages", "too many messages (at most %d)", CHAT_MAX_MESSAGES);
    req->msgs = calloc(n, sizeof *req->msgs);
    if (!req->msgs) return nomem(req, err, err_len);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return fail(req, err, err_len, param, "'%s' must be an object", param);
        snprintf(param, sizeof param, "messages[%zu].role", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) return fail(req, err, err_len, param, "'%s' must be a string", param);
        const char *mapped = map_role(role);
        if (!mapped)
            return fail(req, err, err_len, param,
                        "'%s' is '%.40s': it must be system, developer, user or assistant (tools are not "
                        "supported)",
                        param, role);
        char *content = NULL;
        int rc = parse_content(req, field(m, "content"), i, !strcmp(mapped, "assistant"), &content, err,
                               err_len);
        if (rc) return rc;
        req->msgs[i].role = mapped;
        req->msgs[i].content = content;
        req->n_msgs = i + 1;
    }
    return 0;
}

static int parse_stop(struct chat_request *req, json_t *stop, char *err, size_t err_len)
{
    if (!stop) return 0;
    json_t *one[1] = {stop};
    json_t **list = one;
    size_t n = 1;
    json_t *items[CHAT_MAX_STOP];
    if (json_is_array(stop)) {
        n = json_array_size(stop);
        if (n > CHAT_MAX_STOP)
            return fail(req, err, err_len, "stop", "'stop' may hold at most %d strings", CHAT_MAX_STOP);
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(stop, i);
        list = items;
    } else if (!json_is_string(stop)) {
        return fail(req, err, err_len, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(list[i]))
            return fail(req, err, err_len, "stop", "'stop' must be a string or an array of strings");
        size_t l = json_string_length(list[i]);
        if (l == 0 || l > CHAT_MAX_STOP_LEN)
            return fail(req, err, err_len, "stop", "each 'stop' string must be 1 to %d bytes long",
                        CHAT_MAX_STOP_LEN);
        req->stop[i] = strndup(json_string_value(list[i]), l);
        if (!req->stop[i]) return nomem(req, err, err_len);
        req->n_stop = i + 1;
    }
    return 0;
}

/* An optional number in [lo, hi] into *out; *has set when present. */
static int parse_number(struct chat_request *req, json_t *root, const char *key, double lo, double hi,
                        double *out, bool *has, const char *range, char *err, size_t err_len)
{
    json_t *v = field(root, key);
    if (!v) return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= lo && d <= hi))
        return fail(req, err, err_len, key, "'%s' must be a number %s", key, range);
    *out = d;
    *has = true;
    return 0;
}

/* Features that are refused rather than silently ignored: a client relying on them would get wrong answers. */
static int check_unsupported(struct chat_request *req, json_t *root, char *err, size_t err_len)
{
    static const char *const lists[] = {"tools", "functions"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = field(root, lists[i]);
        if (v && !(json_is_array(v) && json_array_size(v) == 0))
            return fail(req, err, err_len, lists[i], "'%s' is not supported: this server has no tool calling",
                        lists[i]);
    }
    json_t *tc = field(root, "tool_choice");
    if (tc && !(json_is_string(tc) && !strcmp(json_string_value(tc), "none")))
        return fail(req, err, err_len, "tool_choice", "'tool_choice' is not supported (only \"none\")");
    json_t *rf = field(root, "response_format");
    if (rf) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !type)
            return fail(req, err, err_len, "response_format",
                        "'response_format' must be an object with a 'type'");
        if (strcmp(type, "text"))
            return fail(req, err, err_len, "response_format",
                        "'response_format' of type '%.40s' is not supported (only \"text\")", type);
    }
    return 0;
}

int chat_request_parse(const char *body, size_t len, struct chat_request *req, char *err, size_t err_len)
{
    memset(req, 0, sizeof *req);
    if (err && err_len) err[0] = 0;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, 0, &je);
    if (!root) return fail(req, err, err_len, NULL, "the request body is not valid JSON: %s", je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = fail(req, err, err_len, NULL, "the request body must be a JSON object");
        goto out;
    }
    if ((rc = check_unsupported(req, root, err, err_len))) goto out;

    json_t *model = field(root, "model");
    if (model) {
        if (!json_is_string(model) || json_string_length(model) > CHAT_MAX_MODEL) {
            rc = fail(req, err, err_len, "model", "'model' must be a string of at most %d bytes", CHAT_MAX_MODEL);
            goto out;
        }
        req->model = strndup(json_string_value(model), json_string_length(model));
        if (!req->model) {
            rc = nomem(req, err, err_len);
            goto out;
        }
    }
    if ((rc = parse_messages(req, json_object_get(root, "messages"), err, err_len))) goto out;

    static const char *const max_keys[] = {"max_tokens", "max_completion_tokens"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = field(root, max_keys[i]);
        if (!v) continue;
        json_int_t n = json_integer_value(v);
        if (!json_is_integer(v) || n < 1 || n > CHAT_MAX_TOKENS) {
            rc = fail(req, err, err_len, max_keys[i], "'%s' must be an integer from 1 to %d", max_keys[i],
                      CHAT_MAX_TOKENS);
            goto out;
        }
        req->max_tokens = (int)n;
    }
    if ((rc = parse_number(req, root, "temperature", 0, 2, &req->temperature, &req->has_temperature,
                           "from 0 to 2", err, err_len)) ||
        (rc = parse_number(req, root, "top_p", 0, 1, &req->top_p, &req->has_top_p, "from 0 to 1", err,
                           err_len)))
        goto out;
    json_t *seed = field(root, "seed");
    if (seed) {
        if (!json_is_integer(seed)) {
            rc = fail(req, err, err_len, "seed", "'seed' must be an integer");
            goto out;
        }
        req->seed = (uint64_t)json_integer_value(seed);
        req->has_seed = true;
    }
    json_t *n = field(root, "n");
    if (n && (!json_is_integer(n) || json_integer_value(n) != 1)) {
        rc = fail(req, err, err_len, "n", "'n' must be 1: this server produces one choice per request");
        goto out;
    }
    if ((rc = parse_stop(req, field(root, "stop"), err, err_len))) goto out;

    json_t *stream = field(root, "stream");
    if (stream) {
        if (!json_is_boolean(stream)) {
            rc = fail(req, err, err_len, "stream", "'stream' must be true or false");
            goto out;
        }
        req->stream = json_is_true(stream);
    }
    json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) {
            rc = fail(req, err, err_len, "stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (!req->stream) {
            rc = fail(req, err, err_len, "stream_options", "'stream_options' is only allowed with \"stream\": true");
            goto out;
        }
        json_t *iu = field(so, "include_usage");
        if (iu && !json_is_boolean(iu)) {
            rc = fail(req, err, err_len, "stream_options.include_usage",
                      "'stream_options.include_usage' must be true or false");
            goto out;
        }
        req->include_usage = json_is_true(iu);
    }
out:
    json_decref(root);
    return rc;
}

void chat_request_free(struct chat_request *req)
{
    if (!req) return;
    for (size_t i = 0; i < req->n_msgs; i++)
        free((char *)req->msgs[i].content);
    free(req->msgs);
    free(req->model);
    for (size_t i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    memset(req, 0, sizeof *req);
}

void chat_request_reply_config(const struct chat_request *req, struct agent_reply_config *out)
{
    memset(out, 0, sizeof *out);
    out->sampler = banter_sampler_config_default();
    if (req->has_temperature) out->sampler.temperature = (float)req->temperature;
    if (req->has_top_p) {
        if (req->top_p == 0)
            out->sampler.temperature = 0; /* only the likeliest token is left: greedy */
        else
            out->sampler.top_p = (float)req->top_p;
    }
    if (req->has_seed) out->sampler.seed = req->seed;
    out->max_tokens = req->max_tokens ? req->max_tokens : CHAT_DEFAULT_MAX_TOKENS;
}

/* ---- the filter ---- */

void chat_filter_init(struct chat_filter *f, const struct chat_request *req)
{
    memset(f, 0, sizeof *f);
    if (req) {
        f->stop = (const char *const *)req->stop;
        f->n_stop = req->n_stop;
    }
}

void chat_filter_deinit(struct chat_filter *f)
{
    free(f->text);
    memset(f, 0, sizeof *f);
}

static int append(struct chat_filter *f, const void *p, size_t n)
{
    if (f->len + n + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < f->len + n + 1)
            cap *= 2;
        char *t = realloc(f->text, cap);
        if (!t) return BANTER_ERR_NOMEM;
        f->text = t;
        f->cap = cap;
    }
    memcpy(f->text + f->len, p, n);
    f->len += n;
    f->text[f->len] = 0;
    return 0;
}

static int replacement(struct chat_filter *f)
{
    return append(f, "\xEF\xBF\xBD", 3);
}

/* Whether b may follow the sequence so far in f->part (its lead byte and what came after it). */
static bool continues(const struct chat_filter *f, unsigned char b)
{
    if ((b & 0xC0) != 0x80) return false;
    if (f->n_part != 1) return true;
    switch (f->part[0]) { /* the second byte's narrower ranges rule out overlongs and surrogates */
    case 0xE0: return b >= 0xA0;
    case 0xED: return b <= 0x9F;
    case 0xF0: return b >= 0x90;
    case 0xF4: return b <= 0x8F;
    default: return true;
    }
}

static int decode(struct chat_filter *f, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = p[i];
        if (f->n_part) {
            if (continues(f, b)) {
                f->part[f->n_part++] = b;
                if (f->n_part == f->part_need) {
                    if (append(f, f->part, f->n_part)) return BANTER_ERR_NOMEM;
                    f->n_part = 0;
                }
                continue;
            }
            f->n_part = 0;
            if (replacement(f)) return BANTER_ERR_NOMEM;
            /* b starts afresh below. */
        }
        size_t need = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (need == 1) {
            if (append(f, &b, 1)) return BANTER_ERR_NOMEM;
        } else if (need == 0) {
            if (replacement(f)) return BANTER_ERR_NOMEM;
        } else {
            f->part[0] = b;
            f->n_part = 1;
            f->part_need = need;
        }
    }
    return 0;
}

/* Finds the first stop string that starts at or after f->safe; cuts the text there (returns true), or moves
 * f->safe to the start of the longest tail that could still begin one. */
static bool scan_stops(struct chat_filter *f)
{
    for (size_t p = f->safe; p < f->len; p++)
        for (size_t k = 0; k < f->n_stop; k++) {
            size_t l = strlen(f->stop[k]);
            if (l <= f->len - p && !memcmp(f->text + p, f->stop[k], l)) {
                f->len = f->safe = p;
                f->text[p] = 0;
                f->stopped = true;
                return true;
            }
        }
    size_t safe = f->len;
    for (size_t p = f->safe; p < f->len && safe == f->len; p++)
        for (size_t k = 0; k < f->n_stop; k++) {
            size_t l = strlen(f->stop[k]);
            if (f->len - p < l && !memcmp(f->text + p, f->stop[k], f->len - p)) {
                safe = p;
                break;
            }
        }
    f->safe = safe;
    return false;
}

int chat_filter_feed(struct chat_filter *f, const char *piece, size_t len)
{
    if (f->stopped) return 0;
    if (decode(f, (const unsigned char *)piece, len)) return BANTER_ERR_NOMEM;
    return scan_stops(f) ? 0 : 1;
}

int chat_filter_finish(struct chat_filter *f)
{
    if (f->stopped) return 0;
    if (f->n_part) {
        f->n_part = 0;
        if (replacement(f)) return BANTER_ERR_NOMEM;
        if (scan_stops(f)) return 0;
    }
    f->safe = f->len;
    return 0;
}

/* ---- rendering ---- */

void chat_meta_init(struct chat_meta *m, uint64_t r1, uint64_t r2, long long created, const char *model,
                    bool include_usage)
{
    snprintf(m->id, sizeof m->id, "chatcmpl-%016llx%08llx", (unsigned long long)r1,
             (unsigned long long)(r2 & 0xFFFFFFFFu));
    m->created = created;
    m->model = model ? model : "";
    m->include_usage = include_usage;
}

static json_t *usage_json(const struct chat_usage *u)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", u->prompt_tokens, "completion_tokens",
                     u->completion_tokens, "total_tokens", u->prompt_tokens + u->completion_tokens);
}

/* Dumps j (taking its reference) as compact JSON, optionally framed as one stream event. */
static char *dump(json_t *j, bool sse, size_t *out_len)
{
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return NULL;
    size_t n = strlen(s);
    if (!sse) {
        if (out_len) *out_len = n;
        return s;
    }
    char *e = malloc(n + 9);
    if (e) {
        memcpy(e, "data: ", 6);
        memcpy(e + 6, s, n);
        memcpy(e + 6 + n, "\n\n", 3);
        if (out_len) *out_len = n + 8;
    }
    free(s);
    return e;
}

static json_t *base(const struct chat_meta *m, const char *object)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", m->id, "object", object, "created", (json_int_t)m->created,
                     "model", m->model);
}

char *chat_render_completion(const struct chat_meta *m, const char *text, size_t len, const char *finish,
                             const struct chat_usage *u, size_t *out_len)
{
    json_t *j = base(m, "chat.completion");
    json_t *content = json_stringn(text ? text : "", text ? len : 0);
    if (!j || !content) {
        json_decref(j);
        json_decref(content);
        return NULL;
    }
    if (
        json_object_set_new(j, "choices",
                            json_pack("[{s:i,s:{s:s,s:o},s:s}]", "index", 0, "message", "role", "assistant",
                                      "content", content, "finish_reason", finish)) ||
        json_object_set_new(j, "usage", usage_json(u))) {
        json_decref(j);
        return NULL;
    }
    return dump(j, false, out_len);
}

char *chat_render_chunk(const struct chat_meta *m, bool role, const char *text, size_t len, const char *finish,
                        size_t *out_len)
{
    json_t *j = base(m, "chat.completion.chunk");
    json_t *delta = role ? json_pack("{s:s,s:s}", "role", "assistant", "content", "")
                    : text ? json_pack("{s:o}", "content", json_stringn(text, len))
                           : json_object();
    json_t *fin = finish ? json_string(finish) : json_null();
    if (!j || !delta || !fin ||
        json_object_set_new(j, "choices",
                            json_pack("[{s:i,s:o,s:o}]", "index", 0, "delta", delta, "finish_reason", fin)) ||
        (m->include_usage && json_object_set_new(j, "usage", json_null()))) {
        json_decref(j);
        return NULL;
    }
    return dump(j, true, out_len);
}

char *chat_render_usage_chunk(const struct chat_meta *m, const struct chat_usage *u, size_t *out_len)
{
    json_t *j = base(m, "chat.completion.chunk");
    if (!j || json_object_set_new(j, "choices", json_array()) || json_object_set_new(j, "usage", usage_json(u))) {
        json_decref(j);
        return NULL;
    }
    return dump(j, true, out_len);
}

char *chat_render_error(const char *message, const char *type, const char *param, bool sse, size_t *out_len)
{
    /* The message may quote client input cut at a byte limit, which can split a character: json_string
     * refuses invalid UTF-8, so the message goes through the filter first. */
    struct chat_filter f;
    chat_filter_init(&f, NULL);
    const char *m = message ? message : "";
    if (chat_filter_feed(&f, m, strlen(m)) < 0 || chat_filter_finish(&f)) {
        chat_filter_deinit(&f);
        return NULL;
    }
    json_t *msg = json_stringn(f.text ? f.text : "", f.len);
    chat_filter_deinit(&f);
    json_t *p = param && param[0] ? json_string(param) : json_null();
    return dump(json_pack("{s:{s:o,s:s,s:o,s:n}}", "error", "message", msg, "type",
                          type ? type : "invalid_request_error", "param", p, "code"),
                sse, out_len);
}
