/*
 * http.h: the HTTP client the server tests share: one request to 127.0.0.1:PORT with libcurl, the response's
 * status, body (NUL-terminated), Content-Type and Cache-Control collected.
 */
#ifndef BANTER_TEST_HTTP_H
#define BANTER_TEST_HTTP_H

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_resp {
    long status;
    char *body; /* [len] + NUL, malloc'd (free it), NULL when the body was empty */
    size_t len;
    char ctype[128];
    char cache[128]; /* the Cache-Control header, "" when absent */
    size_t abort_after; /* set before the request: nonzero fails the transfer once this many bytes arrived */
};

struct http_req {
    int port;
    const char *method, *path;
    const char *key;    /* sent as "Authorization: Bearer KEY"; NULL = none */
    const char *ctype;  /* Content-Type; NULL = none */
    const char *origin; /* Origin; NULL = none */
    const char *body;   /* [len] bytes; NULL = no body */
    size_t len;
    curl_mime *(*make_mime)(CURL *, void *); /* a multipart body instead (NULL = none) */
    void *mime_user;
    long timeout_s;
};

static size_t http_on_data(char *p, size_t size, size_t n, void *user)
{
    struct http_resp *r = user;
    size_t add = size * n;
    char *b = realloc(r->body, r->len + add + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, add);
    r->body = b;
    r->len += add;
    b[r->len] = 0;
    if (r->abort_after && r->len >= r->abort_after) return 0;
    return add;
}

static size_t http_on_header(char *p, size_t size, size_t n, void *user)
{
    struct http_resp *r = user;
    size_t len = size * n;
    static const char name[] = "cache-control:";
    if (len > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        const char *v = p + sizeof name - 1;
        size_t vl = len - (sizeof name - 1);
        while (vl && *v == ' ') v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
        snprintf(r->cache, sizeof r->cache, "%.*s", (int)vl, v);
    }
    return len;
}

/* Sends rq; out is reset (keeping its abort_after) and filled. Returns the curl result. */
static inline CURLcode http_request(const struct http_req *rq, struct http_resp *out)
{
    size_t abort_after = out->abort_after;
    memset(out, 0, sizeof *out);
    out->abort_after = abort_after;
    CURL *c = curl_easy_init();
    char url[256], line[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", rq->port, rq->path);
    struct curl_slist *h = NULL;
    if (rq->key) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", rq->key);
        h = curl_slist_append(h, line);
    }
    if (rq->ctype) {
        snprintf(line, sizeof line, "Content-Type: %s", rq->ctype);
        h = curl_slist_append(h, line);
    }
    if (rq->origin) {
        snprintf(line, sizeof line, "Origin: %s", rq->origin);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, rq->timeout_s > 0 ? rq->timeout_s : 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_mime *mime = rq->make_mime ? rq->make_mime(c, rq->mime_user) : NULL;
    if (mime) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    } else if (rq->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(out->ctype, sizeof out->ctype, "%s", ct ? ct : "");
    curl_mime_free(mime);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

#endif
