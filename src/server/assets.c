/*
 * assets.c: looks up the embedded web page's files by request path (see assets.h). The table is a handful of
 * entries, so a linear scan is the whole index.
 */
#include "server/assets.h"

#include <string.h>

const struct srv_asset *srv_asset_find(const char *path)
{
    if (!path) return NULL;
    if (!strcmp(path, "/")) path = "/index.html";
    for (size_t i = 0; i < srv_n_assets; i++)
        if (!strcmp(srv_assets[i].path, path)) return &srv_assets[i];
    return NULL;
}
