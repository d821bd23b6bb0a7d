/*
 * gguf_api.c: the public "GGUF inspection" functions of banter.h over the internal reader, and the text form
 * of metadata values used by them (and by anything that logs a value).
 *
 * A banter_gguf wraps a gguf_file and adds NUL-terminated copies of the tensor names, because the reader's
 * names point into the mapping without a terminator. They are made once at open, in one allocation.
 *
 * Values are shown as a person would write them: shortest round-trip floats, quoted strings with control
 * characters escaped (a vocabulary holds "\n" and raw bytes), and arrays as `[type x n] item, item, ...`. The
 * output is cut at the caller's buffer; item loops stop as soon as the buffer is full, so describing a
 * 262144-entry vocabulary costs only what is shown.
 */
#include "gguf/gguf.h"

#include "core/core.h"
#include "tensor/tensor.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct banter_gguf {
    struct gguf_file *f;
    char *names;       /* every tensor name, NUL-terminated, back to back */
    const char **name; /* [n_tensors] pointers into names */
};

/* A bounded text buffer: always NUL-terminated, remembers when it overflowed. */
struct sbuf {
    char *p;
    size_t cap;
    size_t len;
    int full;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->full || !b->cap) {
        b->full = 1;
        return;
    }
    size_t room = b->cap - 1 - b->len;
    if (n > room) {
        n = room;
        b->full = 1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Writes s with control characters, quotes and backslashes escaped. */
static void sb_escaped(struct sbuf *b, const char *s, uint64_t len)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t run = 0; /* start of the current run of bytes that need no escape */
    for (uint64_t i = 0; i < len && !b->full; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[4];
        size_t n = 2;
        esc[0] = '\\';
        if (ch == '\n')
            esc[1] = 'n';
        else if (ch == '\t')
            esc[1] = 't';
        else if (ch == '\r')
            esc[1] = 'r';
        else if (ch == '"')
            esc[1] = '"';
        else if (ch == '\\')
            esc[1] = '\\';
        else if (ch < 0x20 || ch == 0x7f) {
            esc[1] = 'x';
            esc[2] = hex[ch >> 4];
            esc[3] = hex[ch & 15];
            n = 4;
        } else {
            continue;
        }
        sb_put(b, s + run, (size_t)(i - run));
        sb_put(b, esc, n);
        run = i + 1;
    }
    if (!b->full && run < len) sb_put(b, s + run, (size_t)(len - run));
}

static void sb_quoted(struct sbuf *b, const struct gguf_str *s)
{
    sb_put(b, "\"", 1);
    sb_escaped(b, s->ptr, s->len);
    sb_put(b, "\"", 1);
}

/* The shortest %g form that reads back as the same value (as float when is_f32). */
static void sb_float(struct sbuf *b, double v, int is_f32)
{
    char tmp[64];
    int lo = is_f32 ? 6 : 15, hi = is_f32 ? 9 : 17;
    for (int prec = lo; prec <= hi; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (is_f32 ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    sb_put(b, tmp, strlen(tmp));
}

static void sb_array_item(struct sbuf *b, const struct gguf_kv *kv, uint64_t i)
{
    switch (kv->arr_type) {
    case GGUF_F32:
    case GGUF_F64:
        sb_float(b, gguf_arr_f64(kv, i), kv->arr_type == GGUF_F32);
        break;
    case GGUF_BOOL:
        sb_printf(b, "%s", gguf_arr_i64(kv, i) ? "true" : "false");
        break;
    case GGUF_U64: {
        uint64_t x;
        memcpy(&x, (const uint8_t *)kv->arr_data + i * 8, 8);
        sb_printf(b, "%" PRIu64, x);
        break;
    }
    default:
        sb_printf(b, "%" PRId64, gguf_arr_i64(kv, i));
        break;
    }
}

static void sb_value(struct sbuf *b, const struct gguf_kv *kv, size_t max_items)
{
    switch (kv->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64:
        sb_printf(b, "%" PRIu64, kv->v.u64);
        return;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        sb_printf(b, "%" PRId64, kv->v.i64);
        return;
    case GGUF_F32:
    case GGUF_F64:
        sb_float(b, kv->v.f64, kv->type == GGUF_F32);
        return;
    case GGUF_BOOL:
        sb_printf(b, "%s", kv->v.b ? "true" : "false");
        return;
    case GGUF_STRING:
        sb_quoted(b, &kv->str);
        return;
    case GGUF_ARRAY:
        break;
    default:
        sb_printf(b, "(unknown type %d)", (int)kv->type);
        return;
    }
    sb_printf(b, "[%s x %" PRIu64 "]", gguf_vtype_name(kv->arr_type), kv->arr_n);
    if (kv->arr_n == 0) return;
    int shown = kv->arr_type == GGUF_STRING ? kv->arr_strs != NULL : kv->arr_data != NULL;
    if (!shown) {
        sb_put(b, " (nested arrays not shown)", 26);
        return;
    }
    uint64_t n = kv->arr_n < max_items ? kv->arr_n : (uint64_t)max_items;
    for (uint64_t i = 0; i < n && !b->full; i++) {
        sb_put(b, i ? ", " : " ", i ? 2 : 1);
        if (kv->arr_type == GGUF_STRING)
            sb_quoted(b, &kv->arr_strs[i]);
        else
            sb_array_item(b, kv, i);
    }
    if (n < kv->arr_n) sb_put(b, n ? ", ..." : " ...", n ? 5 : 4);
}

size_t gguf_describe_value(const struct gguf_kv *kv, size_t max_items, char *buf, size_t buf_len)
{
    struct sbuf b = {.p = buf, .cap = buf_len};
    if (buf_len) buf[0] = 0;
    if (kv) sb_value(&b, kv, max_items);
    return b.len;
}

BANTER_API banter_status banter_gguf_open(const char *path, banter_gguf **out, char *err, size_t err_len)
{
    if (out) *out = NULL;
    if (!path || !out) {
        core_errf(err, err_len, "gguf: banter_gguf_open needs a path and an out pointer");
        return BANTER_ERR_INVALID_ARG;
    }
    struct gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err, err_len);
    if (rc) return (banter_status)rc;
    banter_gguf *g = core_calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->f = f;
    /* Names fit in the file, so their total (plus one NUL each) cannot overflow; check regardless. */
    size_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (core_add_overflow(total, (size_t)f->tensors[i].name.len + 1, &total)) goto nomem;
    if (f->n_tensors) {
        g->names = core_malloc(total);
        g->name = core_calloc((size_t)f->n_tensors, sizeof *g->name);
        if (!g->names || !g->name) goto nomem;
        char *p = g->names;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const struct gguf_str *s = &f->tensors[i].name;
            if (s->len) memcpy(p, s->ptr, (size_t)s->len);
            p[s->len] = 0;
            g->name[i] = p;
            p += s->len + 1;
        }
    }
    *out = g;
    return BANTER_OK;

nomem:
    core_errf(err, err_len, "gguf: out of memory opening '%s'", path);
    if (g) {
        g->f = NULL;
        banter_gguf_close(g);
    }
    gguf_close(f);
    return BANTER_ERR_NOMEM;
}

BANTER_API void banter_gguf_close(banter_gguf *g)
{
    if (!g) return;
    gguf_close(g->f);
    core_free(g->names);
    core_free(g->name);
    core_free(g);
}

BANTER_API uint32_t banter_gguf_version(const banter_gguf *g)
{
    return g ? g->f->version : 0;
}

BANTER_API size_t banter_gguf_n_kv(const banter_gguf *g)
{
    return g ? (size_t)g->f->n_kv : 0;
}

BANTER_API size_t banter_gguf_n_tensors(const banter_gguf *g)
{
    return g ? (size_t)g->f->n_tensors : 0;
}

BANTER_API banter_status banter_gguf_describe_kv(const banter_gguf *g, size_t i, size_t max_items, char *buf,
                                                 size_t buf_len)
{
    if (buf && buf_len) buf[0] = 0;
    if (!g || i >= g->f->n_kv || (!buf && buf_len)) return BANTER_ERR_INVALID_ARG;
    const struct gguf_kv *kv = &g->f->kv[i];
    struct sbuf b = {.p = buf, .cap = buf_len};
    sb_escaped(&b, kv->key.ptr, kv->key.len);
    sb_put(&b, " = ", 3);
    sb_value(&b, kv, max_items);
    return BANTER_OK;
}

BANTER_API banter_status banter_gguf_tensor(const banter_gguf *g, size_t i, banter_tensor_info *info)
{
    if (!info) return BANTER_ERR_INVALID_ARG;
    memset(info, 0, sizeof *info);
    if (!g || i >= g->f->n_tensors) return BANTER_ERR_INVALID_ARG;
    const struct gguf_tensor *t = &g->f->tensors[i];
    info->name = g->name[i];
    info->type_name = tensor_type_name(t->type);
    info->n_dims = t->n_dims;
    for (int d = 0; d < 4; d++)
        info->ne[d] = t->ne[d];
    info->offset = t->offset;
    info->n_bytes = t->n_bytes;
    return BANTER_OK;
}
