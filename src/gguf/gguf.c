/*
 * gguf.c: the GGUF reader. The file layout is described in gguf.h.
 *
 * A file is untrusted input, so the reader is written as a validator first: every count, length and offset
 * read from the file is checked against the bytes that remain before anything is allocated or dereferenced,
 * and every product or sum of such numbers is overflow-checked. The rules:
 *
 *   - n_kv and n_tensors are bounded by the smallest encoding of one entry (12 bytes per kv: key length and
 * value type; 32 bytes per tensor: name length, n_dims, one ne, type, offset), so the tables we allocate are
 * at most a small multiple of the file size.
 *   - Strings and scalar arrays must fit in what remains. A string array gets a table of (ptr, len) pairs;
 * each string takes at least 8 bytes of file, which bounds that table the same way.
 *   - Nested arrays are walked (they must be well formed) to a depth of GGUF_MAX_DEPTH, then skipped: callers
 * see only their element type and count, plus the raw encoded span for verbatim copies.
 *   - Tensors have 1..4 dimensions, each > 0, a product below GGUF_MAX_ELEMENTS, a type id that
 * tensor_traits() knows, ne[0] a multiple of the block size, an offset aligned to general.alignment, and data
 * that lies inside the file and overlaps no other tensor's data.
 *   - Duplicate keys and duplicate tensor names are errors (lookups would otherwise be ambiguous).
 *
 * Nothing is copied from the mapping: strings and tensor data point into it. Lookups binary-search two arrays
 * of names sorted at open (keys and tensor names); sorting also finds the duplicates, and unlike a hash table
 * it keeps its speed whatever names a hostile file chooses.
 *
 * Integers are read with memcpy, which is correct on the little-endian hosts Banter targets (x86-64); the
 * static assertion below stops a build anywhere else.
 */
#include "gguf/gguf.h"

#include "core/core.h"
#include "tensor/tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader assumes a little-endian host");

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian uint32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 8                     /* arrays nested deeper than this are rejected */
#define GGUF_MAX_ELEMENTS ((int64_t)1 << 48) /* far beyond any real tensor; keeps byte sizes small */
#define GGUF_KV_MIN_BYTES 12                 /* key length (8) + value type (4) */
#define GGUF_TENSOR_MIN_BYTES 32             /* name length, n_dims, one ne, type, offset */

/* A name (key or tensor name) and the index of its entry; arrays of these are sorted by (name, index). */
struct name_ref {
    const char *ptr;
    uint64_t len;
    uint64_t idx;
};

/* The gguf_file handed out is the first member, so a gguf_file pointer is a reader pointer. */
struct reader {
    struct gguf_file f;
    struct name_ref *kv_sorted; /* [n_kv] keys in sorted order, for lookups */
    struct name_ref *t_sorted;  /* [n_tensors] tensor names, the same way */
};

/* Parsing state: a position in the bytes, and what is being read (for error messages). */
struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    char ctx[192]; /* e.g. "key 3 'general.name'"; set before each entry */
    char *err;
    size_t err_len;
};

static int fail(struct cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct cursor *c, const char *fmt, ...)
{
    if (c->err && c->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_len, fmt, ap);
        va_end(ap);
    }
    return BANTER_ERR_FORMAT;
}

static int fail_nomem(struct cursor *c)
{
    core_errf(c->err, c->err_len, "out of memory while reading %s", c->ctx[0] ? c->ctx : "the header");
    return BANTER_ERR_NOMEM;
}

/* Copies an untrusted string into buf for a message: at most ~60 bytes, non-printable bytes as \xNN. */
static const char *show(const struct gguf_str *s, char *buf, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    uint64_t i;
    for (i = 0; i < s->len && o + 8 < n && i < 60; i++) {
        unsigned char ch = (unsigned char)s->ptr[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (i < s->len && o + 4 <= n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

static uint64_t remaining(const struct cursor *c)
{
    return c->size - c->pos;
}

static int take(struct cursor *c, uint64_t n, const uint8_t **out, const char *what)
{
    if (n > remaining(c))
        return fail(c,
                    "%s: %s needs %" PRIu64 " bytes at offset %" PRIu64 " but the file has only %" PRIu64
                    " left (truncated file?)",
                    c->ctx, what, n, c->pos, remaining(c));
    *out = c->base + c->pos;
    c->pos += n;
    return 0;
}

static int read_u32(struct cursor *c, uint32_t *v, const char *what)
{
    const uint8_t *p = NULL;
    int rc = take(c, 4, &p, what);
    if (rc) return rc;
    memcpy(v, p, 4);
    return 0;
}

static int read_u64(struct cursor *c, uint64_t *v, const char *what)
{
    const uint8_t *p = NULL;
    int rc = take(c, 8, &p, what);
    if (rc) return rc;
    memcpy(v, p, 8);
    return 0;
}

static int read_str(struct cursor *c, struct gguf_str *s, const char *what)
{
    uint64_t len;
    int rc = read_u64(c, &len, what);
    if (rc) return rc;
    if (len > remaining(c))
        return fail(c, "%s: %s has length %" PRIu64 " but the file has only %" PRIu64 " bytes left", c->ctx,
                    what, len, remaining(c));
    s->ptr = (const char *)(c->base + c->pos);
    s->len = len;
    c->pos += len;
    return 0;
}

static int check_vtype(struct cursor *c, uint32_t t, const char *what)
{
    if (t >= GGUF_N_VTYPES)
        return fail(c, "%s: unknown %s %" PRIu32 " (GGUF knows 0..%d)", c->ctx, what, t, GGUF_N_VTYPES - 1);
    return 0;
}

/* Validates and skips n values of `type`, where arrays among them are at nesting depth `depth`. */
static int skip_values(struct cursor *c, uint32_t type, uint64_t n, int depth)
{
    size_t es = gguf_vtype_size((enum gguf_vtype)type);
    if (es) {
        if (n > remaining(c) / es)
            return fail(c, "%s: array of %" PRIu64 " %s values needs more than the %" PRIu64 " bytes left",
                        c->ctx, n, gguf_vtype_name((enum gguf_vtype)type), remaining(c));
        c->pos += n * es;
        return 0;
    }
    if (type == GGUF_STRING) {
        if (n > remaining(c) / 8)
            return fail(c, "%s: array of %" PRIu64 " strings needs more than the %" PRIu64 " bytes left",
                        c->ctx, n, remaining(c));
        for (uint64_t i = 0; i < n; i++) {
            struct gguf_str s;
            int rc = read_str(c, &s, "a string in a nested array");
            if (rc) return rc;
        }
        return 0;
    }
    BANTER_ASSERT(type == GGUF_ARRAY);
    if (depth > GGUF_MAX_DEPTH)
        return fail(c, "%s: arrays nested deeper than %d levels", c->ctx, GGUF_MAX_DEPTH);
    if (n > remaining(c) / GGUF_KV_MIN_BYTES)
        return fail(c, "%s: array of %" PRIu64 " arrays needs more than the %" PRIu64 " bytes left", c->ctx,
                    n, remaining(c));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t et;
        uint64_t cnt;
        int rc = read_u32(c, &et, "the element type of a nested array");
        if (!rc) rc = check_vtype(c, et, "nested array element type");
        if (!rc) rc = read_u64(c, &cnt, "the length of a nested array");
        if (!rc) rc = skip_values(c, et, cnt, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

/* Reads one scalar of type t (size es) into kv->v. */
static void widen(struct gguf_kv *kv, enum gguf_vtype t, const uint8_t *p)
{
    switch (t) {
    case GGUF_U8:
        kv->v.u64 = p[0];
        break;
    case GGUF_I8:
        kv->v.i64 = (int8_t)p[0];
        break;
    case GGUF_U16: {
        uint16_t x;
        memcpy(&x, p, 2);
        kv->v.u64 = x;
        break;
    }
    case GGUF_I16: {
        int16_t x;
        memcpy(&x, p, 2);
        kv->v.i64 = x;
        break;
    }
    case GGUF_U32: {
        uint32_t x;
        memcpy(&x, p, 4);
        kv->v.u64 = x;
        break;
    }
    case GGUF_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        kv->v.i64 = x;
        break;
    }
    case GGUF_F32: {
        float x;
        memcpy(&x, p, 4);
        kv->v.f64 = x;
        break;
    }
    case GGUF_BOOL:
        kv->v.b = p[0] != 0;
        break;
    case GGUF_U64:
        memcpy(&kv->v.u64, p, 8);
        break;
    case GGUF_I64:
        memcpy(&kv->v.i64, p, 8);
        break;
    case GGUF_F64:
        memcpy(&kv->v.f64, p, 8);
        break;
    default:
        BANTER_ASSERT(0);
    }
}

static int read_kv(struct cursor *c, struct gguf_kv *kv, uint64_t idx)
{
    char shown[96];
    snprintf(c->ctx, sizeof c->ctx, "metadata entry %" PRIu64, idx);
    int rc = read_str(c, &kv->key, "the key");
    if (rc) return rc;
    snprintf(c->ctx, sizeof c->ctx, "key '%s'", show(&kv->key, shown, sizeof shown));
    uint32_t t;
    if ((rc = read_u32(c, &t, "the value type"))) return rc;
    if ((rc = check_vtype(c, t, "value type"))) return rc;
    kv->type = (enum gguf_vtype)t;
    const uint8_t *start = c->base + c->pos, *p = NULL;
    size_t es = gguf_vtype_size(kv->type);
    if (es) {
        if ((rc = take(c, es, &p, "the value"))) return rc;
        widen(kv, kv->type, p);
    } else if (kv->type == GGUF_STRING) {
        if ((rc = read_str(c, &kv->str, "the string value"))) return rc;
    } else {
        uint32_t et;
        if ((rc = read_u32(c, &et, "the array element type"))) return rc;
        if ((rc = check_vtype(c, et, "array element type"))) return rc;
        kv->arr_type = (enum gguf_vtype)et;
        if ((rc = read_u64(c, &kv->arr_n, "the array length"))) return rc;
        size_t ees = gguf_vtype_size(kv->arr_type);
        if (ees) {
            kv->arr_data = c->base + c->pos;
            if ((rc = skip_values(c, et, kv->arr_n, 2))) return rc;
        } else if (kv->arr_type == GGUF_STRING) {
            if (kv->arr_n > remaining(c) / 8)
                return fail(c, "%s: array of %" PRIu64 " strings needs more than the %" PRIu64 " bytes left",
                            c->ctx, kv->arr_n, remaining(c));
            if (kv->arr_n) {
                kv->arr_strs = core_calloc((size_t)kv->arr_n, sizeof *kv->arr_strs);
                if (!kv->arr_strs) return fail_nomem(c);
            }
            for (uint64_t i = 0; i < kv->arr_n; i++) {
                if ((rc = read_str(c, &kv->arr_strs[i], "a string in the array"))) return rc;
            }
        } else {
            if ((rc = skip_values(c, et, kv->arr_n, 2))) return rc;
        }
    }
    kv->raw = start;
    kv->raw_len = (uint64_t)(c->base + c->pos - start);
    return 0;
}

static int name_cmp(const char *a, uint64_t a_len, const char *b, uint64_t b_len)
{
    uint64_t n = a_len < b_len ? a_len : b_len;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c) return c;
    return a_len < b_len ? -1 : a_len > b_len;
}

static int ref_cmp(const void *x, const void *y)
{
    const struct name_ref *a = x, *b = y;
    int c = name_cmp(a->ptr, a->len, b->ptr, b->len);
    if (c) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorts the n names found at `names` (one every `stride` bytes) into a new array. Equal names end up
 * adjacent, lowest index first; *dup receives the index pair of the first such pair (or stays UINT64_MAX).
 * Sorting rather than hashing keeps lookups O(log n) whatever names a hostile file picks. */
static struct name_ref *sort_names(const struct gguf_str *names, size_t stride, uint64_t n, uint64_t dup[2])
{
    struct name_ref *r = core_malloc((size_t)n * sizeof *r);
    if (!r) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        const struct gguf_str *s = (const struct gguf_str *)((const char *)names + i * stride);
        r[i] = (struct name_ref){s->ptr, s->len, i};
    }
    qsort(r, (size_t)n, sizeof *r, ref_cmp);
    dup[0] = dup[1] = UINT64_MAX;
    for (uint64_t i = 1; i < n; i++) {
        if (!name_cmp(r[i - 1].ptr, r[i - 1].len, r[i].ptr, r[i].len)) {
            dup[0] = r[i - 1].idx;
            dup[1] = r[i].idx;
            break;
        }
    }
    return r;
}

/* Index + 1 of the entry named key, or 0. */
static uint64_t find_name(const struct name_ref *r, uint64_t n, const char *key)
{
    if (!r || !key) return 0;
    uint64_t key_len = strlen(key), lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(r[mid].ptr, r[mid].len, key, key_len);
        if (c == 0) return r[mid].idx + 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Computes the exact byte size of tensor t from its type and shape, after checking the shape. */
static int check_shape(struct cursor *c, struct gguf_tensor *t)
{
    const struct tensor_traits *tr = tensor_traits(t->type);
    if (!tr || tr->blck <= 0)
        return fail(c,
                    "%s has unknown type id %" PRIu32 " (a newer ggml type? this build knows ids below %d)",
                    c->ctx, t->type, TENSOR_N_TYPES);
    int64_t n_el = 1;
    for (uint32_t d = 0; d < 4; d++) {
        if (t->ne[d] <= 0)
            return fail(c, "%s has dimension %" PRIu32 " of size %" PRId64 " (must be positive)", c->ctx, d,
                        t->ne[d]);
        if (__builtin_mul_overflow(n_el, t->ne[d], &n_el) || n_el > GGUF_MAX_ELEMENTS)
            return fail(c,
                        "%s has too many elements (shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                        "], limit %" PRId64 ")",
                        c->ctx, t->ne[0], t->ne[1], t->ne[2], t->ne[3], GGUF_MAX_ELEMENTS);
    }
    if (t->ne[0] % tr->blck)
        return fail(c,
                    "%s: type %s stores blocks of %" PRId64 " values but ne[0] = %" PRId64
                    " is not a multiple of that",
                    c->ctx, tr->name, tr->blck, t->ne[0]);
    /* n_el < 2^48 and a block is at most a few hundred bytes, but check anyway. */
    uint64_t bytes = (uint64_t)(t->ne[0] / tr->blck);
    if (__builtin_mul_overflow(bytes, (uint64_t)tr->size, &bytes))
        return fail(c, "%s: size overflows", c->ctx);
    for (uint32_t d = 1; d < 4; d++)
        if (__builtin_mul_overflow(bytes, (uint64_t)t->ne[d], &bytes))
            return fail(c, "%s: size overflows", c->ctx);
    t->n_bytes = bytes;
    return 0;
}

static int read_tensor_info(struct cursor *c, struct gguf_tensor *t, uint64_t idx)
{
    char shown[96];
    snprintf(c->ctx, sizeof c->ctx, "tensor %" PRIu64, idx);
    int rc = read_str(c, &t->name, "the name");
    if (rc) return rc;
    snprintf(c->ctx, sizeof c->ctx, "tensor %" PRIu64 " '%s'", idx, show(&t->name, shown, sizeof shown));
    if ((rc = read_u32(c, &t->n_dims, "n_dims"))) return rc;
    if (t->n_dims < 1 || t->n_dims > 4)
        return fail(c, "%s has %" PRIu32 " dimensions (GGUF allows 1 to 4)", c->ctx, t->n_dims);
    for (uint32_t d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if ((rc = read_u64(c, &ne, "a dimension"))) return rc;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return fail(c, "%s has dimension %" PRIu32 " of size %" PRIu64 " (must be from 1 to 2^63-1)",
                        c->ctx, d, ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((rc = read_u32(c, &t->type, "the type"))) return rc;
    if ((rc = read_u64(c, &t->offset, "the data offset"))) return rc;
    return check_shape(c, t);
}

struct span {
    uint64_t begin, end, idx;
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Tensor data: aligned, inside the file, and no two tensors share bytes. */
static int check_data(struct cursor *c, struct gguf_file *f)
{
    char a[96], b[96];
    uint64_t avail = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return fail(c, "tensor '%s' data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        show(&t->name, a, sizeof a), t->offset, f->alignment);
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return fail(c,
                        "tensor '%s' data [offset %" PRIu64 ", %" PRIu64
                        " bytes] runs past the end of the file "
                        "(%" PRIu64 " bytes, data section starts at %" PRIu64 ")",
                        show(&t->name, a, sizeof a), t->offset, t->n_bytes, f->size, f->data_offset);
        t->data = f->base + f->data_offset + t->offset;
    }
    if (f->n_tensors < 2) return 0;
    snprintf(c->ctx, sizeof c->ctx, "the tensor data layout");
    struct span *s = core_malloc((size_t)f->n_tensors * sizeof *s);
    if (!s) return fail_nomem(c);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        s[i].begin = f->tensors[i].offset;
        s[i].end = f->tensors[i].offset + f->tensors[i].n_bytes;
        s[i].idx = i;
    }
    qsort(s, (size_t)f->n_tensors, sizeof *s, span_cmp);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        if (s[i].begin < s[i - 1].end) {
            const struct gguf_tensor *x = &f->tensors[s[i - 1].idx], *y = &f->tensors[s[i].idx];
            rc = fail(c,
                      "tensors '%s' [offset %" PRIu64 ", %" PRIu64 " bytes] and '%s' [offset %" PRIu64
                      ", %" PRIu64 " bytes] overlap",
                      show(&x->name, a, sizeof a), x->offset, x->n_bytes, show(&y->name, b, sizeof b),
                      y->offset, y->n_bytes);
            break;
        }
    }
    core_free(s);
    return rc;
}

static int read_alignment(struct cursor *c, struct reader *r)
{
    struct gguf_file *f = &r->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!f->n_kv) return 0;
    uint64_t k = find_name(r->kv_sorted, f->n_kv, "general.alignment");
    if (!k) return 0;
    const struct gguf_kv *kv = &f->kv[k - 1];
    if (kv->type != GGUF_U32)
        return fail(c, "general.alignment has type %s (must be u32)", gguf_vtype_name(kv->type));
    if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)))
        return fail(c, "general.alignment is %" PRIu64 " (must be a nonzero power of two)", kv->v.u64);
    f->alignment = kv->v.u64;
    return 0;
}

static int parse(struct reader *r, struct cursor *c)
{
    struct gguf_file *f = &r->f;
    char a[96];
    int rc;
    snprintf(c->ctx, sizeof c->ctx, "the header");
    if (c->size < 24)
        return fail(c, "file is too small to be GGUF (%" PRIu64 " bytes; the header alone is 24)", c->size);
    uint32_t magic;
    read_u32(c, &magic, "magic");
    if (magic != GGUF_MAGIC) {
        const uint8_t *m = c->base;
        return fail(c, "not a GGUF file (starts with bytes %02x %02x %02x %02x, expected \"GGUF\")", m[0],
                    m[1], m[2], m[3]);
    }
    read_u32(c, &f->version, "version");
    if (f->version == 1)
        return fail(c, "GGUF version 1 is not supported (it predates 64-bit counts); convert the model again "
                       "with a current llama.cpp");
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && f->version != 0)
            return fail(c,
                        "this looks like a big-endian GGUF file (version bytes %08" PRIx32 "), which is not "
                        "supported",
                        f->version);
        return fail(c, "unsupported GGUF version %" PRIu32 " (this reader knows versions 2 and 3)",
                    f->version);
    }
    read_u64(c, &f->n_tensors, "n_tensors");
    read_u64(c, &f->n_kv, "n_kv");
    if (f->n_kv > remaining(c) / GGUF_KV_MIN_BYTES)
        return fail(c,
                    "header claims %" PRIu64 " metadata entries but only %" PRIu64 " bytes follow (each "
                    "entry needs at least %d)",
                    f->n_kv, remaining(c), GGUF_KV_MIN_BYTES);
    if (f->n_kv) {
        f->kv = core_calloc((size_t)f->n_kv, sizeof *f->kv);
        if (!f->kv) return fail_nomem(c);
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if ((rc = read_kv(c, &f->kv[i], i))) return rc;
    }
    snprintf(c->ctx, sizeof c->ctx, "the metadata keys");
    if (f->n_kv) {
        uint64_t dup[2];
        if (!(r->kv_sorted = sort_names(&f->kv[0].key, sizeof(struct gguf_kv), f->n_kv, dup)))
            return fail_nomem(c);
        if (dup[0] != UINT64_MAX)
            return fail(c, "key '%s' appears twice (entries %" PRIu64 " and %" PRIu64 ")",
                        show(&f->kv[dup[0]].key, a, sizeof a), dup[0], dup[1]);
    }
    if ((rc = read_alignment(c, r))) return rc;

    snprintf(c->ctx, sizeof c->ctx, "the tensor table");
    if (f->n_tensors > remaining(c) / GGUF_TENSOR_MIN_BYTES)
        return fail(c,
                    "header claims %" PRIu64 " tensors but only %" PRIu64 " bytes follow the metadata (each "
                    "tensor entry needs at least %d)",
                    f->n_tensors, remaining(c), GGUF_TENSOR_MIN_BYTES);
    if (f->n_tensors) {
        f->tensors = core_calloc((size_t)f->n_tensors, sizeof *f->tensors);
        if (!f->tensors) return fail_nomem(c);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        if ((rc = read_tensor_info(c, &f->tensors[i], i))) return rc;
    }
    snprintf(c->ctx, sizeof c->ctx, "the tensor names");
    if (f->n_tensors) {
        uint64_t dup[2];
        if (!(r->t_sorted = sort_names(&f->tensors[0].name, sizeof(struct gguf_tensor), f->n_tensors, dup)))
            return fail_nomem(c);
        if (dup[0] != UINT64_MAX)
            return fail(c, "tensor name '%s' appears twice (tensors %" PRIu64 " and %" PRIu64 ")",
                        show(&f->tensors[dup[0]].name, a, sizeof a), dup[0], dup[1]);
    }

    /* The data section starts at the next multiple of the alignment. A file without tensors may end before
     * it. */
    uint64_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
    if (pad > remaining(c)) {
        if (f->n_tensors)
            return fail(c,
                        "the data section would start at offset %" PRIu64 " but the file has only %" PRIu64
                        " bytes (truncated file?)",
                        c->pos + pad, c->size);
        pad = remaining(c);
    }
    f->data_offset = c->pos + pad;
    return check_data(c, f);
}

/* Parses base[0..size) into a new reader; `where` prefixes error messages (a path, or NULL). */
static int open_bytes(const uint8_t *base, uint64_t size, int mapped, const char *where,
                      struct gguf_file **out, char *err, size_t err_len)
{
    char msg[512] = "";
    struct reader *r = core_calloc(1, sizeof *r);
    if (!r) {
        core_errf(err, err_len, "gguf: out of memory");
        return BANTER_ERR_NOMEM;
    }
    r->f.base = base;
    r->f.size = size;
    struct cursor c = {.base = base, .size = size, .err = msg, .err_len = sizeof msg};
    int rc = parse(r, &c);
    if (rc) {
        r->f.mapped = 0; /* the caller unmaps on failure */
        gguf_close(&r->f);
        if (where)
            core_errf(err, err_len, "gguf: %s: %s", where, msg);
        else
            core_errf(err, err_len, "gguf: %s", msg);
        return rc;
    }
    r->f.mapped = mapped;
    *out = &r->f;
    return 0;
}

int gguf_open_memory(const void *data, size_t size, struct gguf_file **out, char *err, size_t err_len)
{
    BANTER_ASSERT(out);
    *out = NULL;
    if (!data && size) {
        core_errf(err, err_len, "gguf: no data");
        return BANTER_ERR_INVALID_ARG;
    }
    static const uint8_t empty[1];
    return open_bytes(data ? data : empty, size, 0, NULL, out, err, err_len);
}

int gguf_open(const char *path, struct gguf_file **out, char *err, size_t err_len)
{
    BANTER_ASSERT(out);
    *out = NULL;
    if (!path) {
        core_errf(err, err_len, "gguf: no path given");
        return BANTER_ERR_INVALID_ARG;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        core_errf(err, err_len, "gguf: cannot open '%s': %s", path, strerror(errno));
        return BANTER_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        core_errf(err, err_len, "gguf: cannot stat '%s': %s", path, strerror(errno));
        close(fd);
        return BANTER_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        core_errf(err, err_len, "gguf: '%s' is not a regular file", path);
        close(fd);
        return BANTER_ERR_IO;
    }
    if (st.st_size < 24) {
        core_errf(err, err_len, "gguf: %s: file is too small to be GGUF (%lld bytes; the header alone is 24)",
                  path, (long long)st.st_size);
        close(fd);
        return BANTER_ERR_FORMAT;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (map == MAP_FAILED) {
        core_errf(err, err_len, "gguf: cannot map '%s' (%zu bytes): %s", path, size, strerror(saved));
        return BANTER_ERR_IO;
    }
    int rc = open_bytes(map, size, 1, path, out, err, err_len);
    if (rc) munmap(map, size);
    return rc;
}

void gguf_close(struct gguf_file *f)
{
    if (!f) return;
    struct reader *r = (struct reader *)f;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++)
            core_free(f->kv[i].arr_strs);
    core_free(f->kv);
    core_free(f->tensors);
    core_free(r->kv_sorted);
    core_free(r->t_sorted);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    core_free(r);
}

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key)
{
    if (!f || !f->n_kv) return NULL;
    const struct reader *r = (const struct reader *)f;
    uint64_t k = find_name(r->kv_sorted, f->n_kv, key);
    return k ? &f->kv[k - 1] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    if (!f || !f->n_tensors) return NULL;
    const struct reader *r = (const struct reader *)f;
    uint64_t k = find_name(r->t_sorted, f->n_tensors, name);
    return k ? &f->tensors[k - 1] : NULL;
}

static int is_signed(enum gguf_vtype t)
{
    return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64;
}

static int is_unsigned(enum gguf_vtype t)
{
    return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return BANTER_ERR_NOT_FOUND;
    if (is_unsigned(kv->type) && kv->v.u64 <= UINT32_MAX) {
        *out = (uint32_t)kv->v.u64;
        return 0;
    }
    if (is_signed(kv->type) && kv->v.i64 >= 0 && kv->v.i64 <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->v.i64;
        return 0;
    }
    return BANTER_ERR_FORMAT;
}

int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return BANTER_ERR_NOT_FOUND;
    if (is_signed(kv->type)) {
        *out = kv->v.i64;
        return 0;
    }
    if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->v.u64;
        return 0;
    }
    return BANTER_ERR_FORMAT;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return BANTER_ERR_NOT_FOUND;
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64) return BANTER_ERR_FORMAT;
    *out = (float)kv->v.f64;
    return 0;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return BANTER_ERR_NOT_FOUND;
    if (kv->type != GGUF_BOOL) return BANTER_ERR_FORMAT;
    *out = kv->v.b;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, char *buf, size_t buf_len)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return BANTER_ERR_NOT_FOUND;
    if (kv->type != GGUF_STRING) return BANTER_ERR_FORMAT;
    if (buf_len) {
        size_t n = kv->str.len < buf_len - 1 ? (size_t)kv->str.len : buf_len - 1;
        if (n) memcpy(buf, kv->str.ptr, n);
        buf[n] = 0;
    }
    return 0;
}

const struct gguf_kv *gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype want)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->type != GGUF_ARRAY) return NULL;
    if (want != GGUF_N_VTYPES && kv->arr_type != want) return NULL;
    return kv;
}

double gguf_arr_f64(const struct gguf_kv *kv, uint64_t i)
{
    BANTER_ASSERT(kv && kv->type == GGUF_ARRAY && kv->arr_data && i < kv->arr_n);
    size_t es = gguf_vtype_size(kv->arr_type);
    struct gguf_kv x;
    widen(&x, kv->arr_type, (const uint8_t *)kv->arr_data + i * es);
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) return x.v.f64;
    if (kv->arr_type == GGUF_BOOL) return x.v.b ? 1.0 : 0.0;
    if (is_signed(kv->arr_type)) return (double)x.v.i64;
    return (double)x.v.u64;
}

int64_t gguf_arr_i64(const struct gguf_kv *kv, uint64_t i)
{
    BANTER_ASSERT(kv && kv->type == GGUF_ARRAY && kv->arr_data && i < kv->arr_n);
    size_t es = gguf_vtype_size(kv->arr_type);
    struct gguf_kv x;
    widen(&x, kv->arr_type, (const uint8_t *)kv->arr_data + i * es);
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) {
        /* Truncates toward zero; out-of-range and NaN values saturate rather than invoke undefined behaviour.
         */
        double d = x.v.f64;
        if (d != d) return 0;
        if (d >= 9223372036854775807.0) return INT64_MAX;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    if (kv->arr_type == GGUF_BOOL) return x.v.b;
    if (is_signed(kv->arr_type)) return x.v.i64;
    return (int64_t)x.v.u64; /* u64 values above INT64_MAX wrap, as a cast would */
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
    static const char *const names[GGUF_N_VTYPES] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                     "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)t >= GGUF_N_VTYPES) return "?";
    return names[t];
}

size_t gguf_vtype_size(enum gguf_vtype t)
{
    static const size_t sizes[GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if ((unsigned)t >= GGUF_N_VTYPES) return 0;
    return sizes[t];
}
