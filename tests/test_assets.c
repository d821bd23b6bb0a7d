/*
 * test_assets.c: the web page embedded in the binary (src/server/assets.h) and the server's route for it:
 *   1. Every file of web/ is embedded under "/NAME", byte for byte as it is on disk, NUL-terminated, with the
 *      Content-Type of its extension; nothing else is embedded; "/" is index.html; unknown paths are NULL.
 *   2. The page loads nothing from other hosts, and the files it names (script, style, worklet) are there.
 *   3. GET of each file from a running server (which requires an API key for its API routes) answers 200
 *      without the key, with the same bytes, its Content-Type and Cache-Control: no-cache; "/?key=..." is the
 *      page; POST / is 405.
 * Run from the project root (ctest does), where web/ is.
 */
#include "server/assets.h"
#include "server/server.h"

#include "http.h"
#include "test.h"

#include <curl/curl.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

static int port;

static void request(const char *method, const char *path, struct http_resp *out)
{
    bool post = !strcmp(method, "POST");
    struct http_req rq = {.port = port, .method = method, .path = path, .body = post ? "x" : NULL,
                          .len = post ? 1 : 0, .timeout_s = 30};
    out->abort_after = 0;
    CHECK_INT_EQ(http_request(&rq, out), CURLE_OK);
}

/* Reads a whole file; *len gets its size. NULL if it cannot be read. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!b) break;
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static const char *expected_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".json")) return "application/json";
    return NULL; /* not checked */
}

static bool contains(const struct srv_asset *a, const char *needle)
{
    return a && memmem(a->data, a->len, needle, strlen(needle)) != NULL;
}

/* 1: the table against web/ on disk. */
static void test_embedded_equals_disk(void)
{
    DIR *d = opendir("web");
    CHECK(d != NULL);
    if (!d) return;
    size_t n_files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        size_t nl = strlen(name);
        if (name[0] == '.' || (nl && name[nl - 1] == '~')) continue;
        char path[512], url[512];
        snprintf(path, sizeof path, "web/%s", name);
        struct stat st;
        if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        n_files++;
        snprintf(url, sizeof url, "/%s", name);
        const struct srv_asset *a = srv_asset_find(url);
        CHECK(a != NULL);
        if (!a) {
            fprintf(stderr, "  web/%s is not embedded (rebuild?)\n", name);
            continue;
        }
        size_t len = 0;
        char *disk = read_file(path, &len);
        CHECK(disk != NULL);
        CHECK_INT_EQ(a->len, len);
        if (disk && a->len == len && memcmp(a->data, disk, len)) {
            CHECK(!"embedded bytes differ from the file");
            fprintf(stderr, "  web/%s differs from its embedded copy (rebuild?)\n", name);
        }
        CHECK_INT_EQ(a->data[a->len], 0);
        const char *want = expected_type(name);
        if (want) CHECK_STR_EQ(a->content_type, want);
        free(disk);
    }
    closedir(d);
    CHECK(n_files >= 4);
    CHECK_INT_EQ(srv_n_assets, n_files);

    CHECK(srv_asset_find("/") == srv_asset_find("/index.html"));
    CHECK(srv_asset_find("/index.html") != NULL);
    CHECK(srv_asset_find("/nope.js") == NULL);
    CHECK(srv_asset_find("") == NULL);
    CHECK(srv_asset_find(NULL) == NULL);
    CHECK(srv_asset_find("/../web/index.html") == NULL);
    CHECK(srv_asset_find("index.html") == NULL);
}

/* 2: what the page names is there, and nothing comes from elsewhere. */
static void test_page_is_self_contained(void)
{
    const struct srv_asset *index = srv_asset_find("/"), *app = srv_asset_find("/app.js");
    CHECK(contains(index, "src=\"/app.js\""));
    CHECK(contains(index, "href=\"/style.css\""));
    CHECK(srv_asset_find("/style.css") != NULL);
    CHECK(contains(app, "'/audio-worklet.js'"));
    CHECK(srv_asset_find("/audio-worklet.js") != NULL);
    CHECK(contains(app, "/v1/realtime"));
    CHECK(contains(app, "window.banterStats"));
    for (size_t i = 0; i < srv_n_assets; i++) {
        const struct srv_asset *a = &srv_assets[i];
        bool remote = contains(a, "http://") || contains(a, "https://") || contains(a, "src=\"//") ||
                      contains(a, "href=\"//") || contains(a, "@import");
        CHECK(!remote);
        if (remote) fprintf(stderr, "  %s refers to another host\n", a->path);
    }
}

static void *run_server(void *arg)
{
    CHECK_INT_EQ(srv_run(arg), 0);
    return NULL;
}

/* 3: the route, over HTTP. */
static void test_route(void)
{
    struct http_resp r;
    for (size_t i = 0; i < srv_n_assets; i++) {
        const struct srv_asset *a = &srv_assets[i];
        request("GET", a->path, &r);
        CHECK_INT_EQ(r.status, 200);
        CHECK_STR_EQ(r.ctype, a->content_type);
        CHECK_STR_EQ(r.cache, "no-cache");
        CHECK_INT_EQ(r.len, a->len);
        CHECK(r.len == a->len && (!r.len || !memcmp(r.body, a->data, r.len)));
        free(r.body);
    }
    const struct srv_asset *index = srv_asset_find("/index.html");
    const char *pages[] = {"/", "/?key=abc&beta=1"};
    for (size_t i = 0; i < 2; i++) {
        request("GET", pages[i], &r);
        CHECK_INT_EQ(r.status, 200);
        CHECK_STR_EQ(r.ctype, "text/html; charset=utf-8");
        CHECK(r.len == index->len && !memcmp(r.body, index->data, r.len));
        free(r.body);
    }
    request("POST", "/", &r);
    CHECK_INT_EQ(r.status, 405);
    free(r.body);
    request("GET", "/no-such-file.js", &r);
    CHECK(r.status == 404 || r.status == 401);
    free(r.body);
    /* The API behind the page still wants its key. */
    request("GET", "/v1/models", &r);
    CHECK_INT_EQ(r.status, 401);
    free(r.body);
}

int main(void)
{
    test_embedded_equals_disk();
    test_page_is_self_contained();

    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[256];
    struct srv_config cfg = {.port = 0, .api_key = "assets-key"};
    struct srv *s = NULL;
    int st = srv_open(&cfg, NULL, &s, err, sizeof err);
    CHECK_INT_EQ(st, 0);
    if (st) {
        fprintf(stderr, "srv_open: %s\n", err);
        return test_finish("test_assets");
    }
    port = srv_port(s);
    pthread_t loop;
    pthread_create(&loop, NULL, run_server, s);
    test_route();
    srv_stop(s);
    pthread_join(loop, NULL);
    srv_close(s);
    curl_global_cleanup();
    return test_finish("test_assets");
}
