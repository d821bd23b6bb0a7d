/*
 * model_info.c: `banter model info FILE [--all]`, a readable dump of any GGUF file (model or vocabulary):
 * version, every metadata entry, the tensor table, and a summary of parameters and bytes by weight type.
 *
 * It goes through the public GGUF inspection API only, so it shows exactly what the library validated: a file
 * this command opens is one the reader accepts, and a file it rejects prints the reader's message naming the
 * bad key or tensor. Arrays are cut to their first few items unless --all asks for every one; then the line
 * buffer grows until the whole value fits.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHORT_ITEMS 8
#define MAX_LINE_BYTES ((size_t)1 << 28) /* --all: the largest value we are willing to print on one line */

#define USAGE_LINE "usage: banter model info FILE [--all]\n"

static const char *USAGE =
    USAGE_LINE "\n"
               "Prints what a GGUF file holds: its version, every metadata entry, the tensor table\n"
               "(name, type, shape with the contiguous dimension first, data offset and size) and a\n"
               "summary (tensor count, parameters, bytes by tensor type). The file is validated on the\n"
               "way; a corrupt file gives a message naming the bad entry.\n"
               "\n"
               "options:\n"
               "  --all       show every item of array values (default: the first 8)\n"
               "  -h, --help  show this help\n";

/* Writes v with thousands separators. */
static const char *with_commas(uint64_t v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

static const char *human_bytes(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", v);
    else
        snprintf(buf, len, "%.1f %s", x, units[u]);
    return buf;
}

static void shape_text(const banter_tensor_info *t, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (uint32_t d = 0; d < t->n_dims && o < len; d++) {
        int n = snprintf(buf + o, len - o, "%s%" PRId64, d ? ", " : "[", t->ne[d]);
        if (n < 0) break;
        o += (size_t)n;
    }
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Prints metadata entry i; with `all`, grows the buffer until the whole value fits. */
static int print_kv(const banter_gguf *g, size_t i, bool all, char **buf, size_t *cap)
{
    for (;;) {
        if (banter_gguf_describe_kv(g, i, all ? SIZE_MAX : SHORT_ITEMS, *buf, *cap) != BANTER_OK) return -1;
        size_t n = strlen(*buf);
        if (!all || n + 1 < *cap || *cap >= MAX_LINE_BYTES) {
            printf("  %s%s\n", *buf, n + 1 >= *cap ? " [cut]" : "");
            return 0;
        }
        char *bigger = realloc(*buf, *cap * 4);
        if (!bigger) return -1;
        *buf = bigger;
        *cap *= 4;
    }
}

struct type_total {
    const char *name;
    uint64_t n_tensors, n_params, n_bytes;
};

int cmd_model_info(int argc, char **argv)
{
    const char *path = NULL;
    bool all = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--all")) {
            all = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "banter: unknown option '%s' for model info\n" USAGE_LINE, argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "banter: model info takes one file (got '%s' and '%s')\n" USAGE_LINE, path,
                    argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "banter: model info needs a GGUF file\n" USAGE_LINE);
        return 2;
    }

    char err[1024];
    banter_gguf *g = NULL;
    banter_status st = banter_gguf_open(path, &g, err, sizeof err);
    if (st != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", err[0] ? err : banter_status_str(st));
        return 1;
    }
    size_t n_kv = banter_gguf_n_kv(g), n_t = banter_gguf_n_tensors(g);
    printf("%s: GGUF version %" PRIu32 ", %zu metadata entries, %zu tensors\n", path, banter_gguf_version(g),
           n_kv, n_t);

    size_t cap = 4096;
    char *line = malloc(cap);
    if (!line) goto nomem;
    printf("\nmetadata:\n");
    for (size_t i = 0; i < n_kv; i++)
        if (print_kv(g, i, all, &line, &cap)) goto nomem;
    free(line);
    line = NULL;

    /* Column width follows the longest name, within reason. */
    int name_w = 4;
    for (size_t i = 0; i < n_t; i++) {
        banter_tensor_info t;
        if (banter_gguf_tensor(g, i, &t) == BANTER_OK && (int)strlen(t.name) > name_w)
            name_w = (int)strlen(t.name);
    }
    if (name_w > 60) name_w = 60;

    struct type_total totals[64];
    size_t n_types = 0;
    uint64_t sum_params = 0, sum_bytes = 0;
    if (n_t) {
        printf("\ntensors:\n  %5s  %-*s  %-7s  %-24s  %14s  %14s\n", "#", name_w, "name", "type", "shape",
               "offset", "bytes");
    }
    for (size_t i = 0; i < n_t; i++) {
        banter_tensor_info t;
        if (banter_gguf_tensor(g, i, &t) != BANTER_OK) continue;
        char shape[128];
        shape_text(&t, shape, sizeof shape);
        printf("  %5zu  %-*s  %-7s  %-24s  %14" PRIu64 "  %14" PRIu64 "\n", i, name_w, t.name, t.type_name,
               shape, t.offset, t.n_bytes);
        /* The reader bounds every shape (each ne > 0, product < 2^48), so this product cannot overflow. */
        uint64_t params = (uint64_t)t.ne[0] * (uint64_t)t.ne[1] * (uint64_t)t.ne[2] * (uint64_t)t.ne[3];
        sum_params += params;
        sum_bytes += t.n_bytes;
        size_t k = 0;
        while (k < n_types && strcmp(totals[k].name, t.type_name))
            k++;
        if (k == n_types && n_types < sizeof totals / sizeof totals[0])
            totals[n_types++] = (struct type_total){.name = t.type_name};
        if (k < n_types) {
            totals[k].n_tensors++;
            totals[k].n_params += params;
            totals[k].n_bytes += t.n_bytes;
        }
    }

    char a[64], b[64];
    printf("\nsummary:\n");
    printf("  tensors      %zu\n", n_t);
    printf("  parameters   %s\n", with_commas(sum_params, a, sizeof a));
    printf("  tensor data  %s bytes (%s)\n", with_commas(sum_bytes, a, sizeof a),
           human_bytes(sum_bytes, b, sizeof b));
    if (n_types) {
        printf("  by type:\n");
        for (size_t k = 0; k < n_types; k++) {
            char c[64];
            printf("    %-7s  %5" PRIu64 " tensors  %16s parameters  %16s bytes (%s)\n", totals[k].name,
                   totals[k].n_tensors, with_commas(totals[k].n_params, a, sizeof a),
                   with_commas(totals[k].n_bytes, b, sizeof b), human_bytes(totals[k].n_bytes, c, sizeof c));
        }
    }
    banter_gguf_close(g);
    return 0;

nomem:
    free(line);
    banter_gguf_close(g);
    fprintf(stderr, "banter: out of memory while printing %s\n", path);
    return 1;
}
