/*
 * assets.h: the web page that `banter serve` answers at "/" (the files of web/), embedded in the binary.
 *
 * At build time cmake/embed_assets.cmake turns every file directly in web/ into a byte array of a generated C
 * source (web_assets.c in the build tree) and lists them in srv_assets, each under the path "/NAME" with a
 * Content-Type from its extension. There are no files to install and nothing is read from disk at run time;
 * the data is constant and may be used from any thread.
 */
#ifndef BANTER_SERVER_ASSETS_H
#define BANTER_SERVER_ASSETS_H

#include <stddef.h>

struct srv_asset {
    const char *path;         /* "/index.html" */
    const char *content_type; /* "text/html; charset=utf-8" */
    const unsigned char *data; /* [len] bytes, followed by a NUL that len does not count */
    size_t len;
};

/* The embedded files, sorted by path (generated). */
extern const struct srv_asset srv_assets[];
extern const size_t srv_n_assets;

/* The asset served at a request path (without its query string): "/" is "/index.html". Returns a pointer to
 * static data, or NULL when no file has that path. */
const struct srv_asset *srv_asset_find(const char *path);

#endif
