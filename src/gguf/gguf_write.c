/*
 * gguf_write.c: the GGUF writer (version 3). The file layout is described in gguf.h.
 *
 * The writer keeps every metadata value already encoded (the bytes that follow value_type in the file), so
 * setters, copies from another file and nested arrays all take the same path, and writing is a straight
 * sequence of fwrite calls. Setting a key that already exists replaces its value in place, keeping the order
 * of first use.
 *
 * Tensors are written in the order they were added. Each one's offset is the previous end rounded up to the
 * alignment, and the data section starts at the header's end rounded up the same way: the packing llama.cpp's
 * reader expects. The alignment is 32 unless a "general.alignment" u32 entry was set, which must then be a
 * power of two (it is written like any other entry, so readers find it).
 */
#include "gguf/gguf.h"

#include "core/core.h"
#include "tensor/tensor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GGUF_WRITE_VERSION 3

struct wkv {
    char *key;
    size_t key_len;
    enum gguf_vtype type;
    uint8_t *val; /* encoded value */
    size_t val_len;
};

struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t n_bytes;
    void *data;
    uint64_t offset; /* assigned by gguf_writer_write */
};

struct gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
};

struct gguf_writer *gguf_writer_new(void)
{
    return core_calloc(1, sizeof(struct gguf_writer));
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        core_free(w->kv[i].key);
        core_free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        core_free(w->t[i].name);
        core_free(w->t[i].data);
    }
    core_free(w->kv);
    core_free(w->t);
    core_free(w);
}

/* Grows an array of `size`-byte items so that one more fits. */
static int reserve(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 16, bytes;
    if (core_mul_overflow(ncap, size, &bytes)) return BANTER_ERR_NOMEM;
    void *p = core_realloc(*items, bytes);
    if (!p) return BANTER_ERR_NOMEM;
    *items = p;
    *cap = ncap;
    return 0;
}

/* Stores an encoded value under key (key_len bytes). Takes ownership of val, also on failure. */
static int put(struct gguf_writer *w, const char *key, size_t key_len, enum gguf_vtype type, uint8_t *val,
               size_t val_len)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        struct wkv *e = &w->kv[i];
        if (e->key_len == key_len && !memcmp(e->key, key, key_len)) {
            core_free(e->val);
            e->type = type;
            e->val = val;
            e->val_len = val_len;
            return 0;
        }
    }
    char *k = core_strndup(key, key_len);
    if (!k || reserve((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
        core_free(k);
        core_free(val);
        return BANTER_ERR_NOMEM;
    }
    w->kv[w->n_kv++] =
        (struct wkv){.key = k, .key_len = key_len, .type = type, .val = val, .val_len = val_len};
    return 0;
}

static int put_bytes(struct gguf_writer *w, const char *key, enum gguf_vtype type, const void *bytes,
                     size_t n)
{
    if (!w || !key) return BANTER_ERR_INVALID_ARG;
    uint8_t *val = core_malloc(n);
    if (!val) return BANTER_ERR_NOMEM;
    if (n) memcpy(val, bytes, n);
    return put(w, key, strlen(key), type, val, n);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return put_bytes(w, key, GGUF_U32, &v, 4);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return put_bytes(w, key, GGUF_I32, &v, 4);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return put_bytes(w, key, GGUF_U64, &v, 8);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return put_bytes(w, key, GGUF_F32, &v, 4);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return put_bytes(w, key, GGUF_BOOL, &b, 1);
}

/* Encodes a string (u64 length + bytes) at p; returns the bytes written. */
static size_t enc_str(uint8_t *p, const char *s, uint64_t len)
{
    memcpy(p, &len, 8);
    if (len) memcpy(p + 8, s, (size_t)len);
    return 8 + (size_t)len;
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    if (!w || !key || !v) return BANTER_ERR_INVALID_ARG;
    size_t len = strlen(v), n;
    if (core_add_overflow(len, 8, &n)) return BANTER_ERR_NOMEM;
    uint8_t *val = core_malloc(n);
    if (!val) return BANTER_ERR_NOMEM;
    enc_str(val, v, len);
    return put(w, key, strlen(key), GGUF_STRING, val, n);
}

/* Encodes the array header (elem type, count) followed by `body` bytes of elements; returns the buffer. */
static uint8_t *arr_new(enum gguf_vtype elem, uint64_t n, size_t body, size_t *len)
{
    if (core_add_overflow(body, 12, len)) return NULL;
    uint8_t *val = core_malloc(*len);
    if (!val) return NULL;
    uint32_t et = (uint32_t)elem;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    return val;
}

static int set_arr(struct gguf_writer *w, const char *key, size_t key_len, enum gguf_vtype elem_type,
                   const void *data, uint64_t n)
{
    size_t es = gguf_vtype_size(elem_type), body, len;
    if (!es || (n && !data)) return BANTER_ERR_INVALID_ARG;
    if (n > SIZE_MAX || core_mul_overflow((size_t)n, es, &body)) return BANTER_ERR_NOMEM;
    uint8_t *val = arr_new(elem_type, n, body, &len);
    if (!val) return BANTER_ERR_NOMEM;
    if (body) memcpy(val + 12, data, body);
    return put(w, key, key_len, GGUF_ARRAY, val, len);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem_type, const void *data,
                        uint64_t n)
{
    if (!w || !key) return BANTER_ERR_INVALID_ARG;
    return set_arr(w, key, strlen(key), elem_type, data, n);
}

static int set_arr_str(struct gguf_writer *w, const char *key, size_t key_len, const struct gguf_str *strs,
                       uint64_t n)
{
    if (n && !strs) return BANTER_ERR_INVALID_ARG;
    if (n > SIZE_MAX / 8) return BANTER_ERR_NOMEM;
    size_t body = 0, len;
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len && !strs[i].ptr) return BANTER_ERR_INVALID_ARG;
        if (strs[i].len > SIZE_MAX || core_add_overflow(body, 8, &body) ||
            core_add_overflow(body, (size_t)strs[i].len, &body))
            return BANTER_ERR_NOMEM;
    }
    uint8_t *val = arr_new(GGUF_STRING, n, body, &len);
    if (!val) return BANTER_ERR_NOMEM;
    size_t o = 12;
    for (uint64_t i = 0; i < n; i++)
        o += enc_str(val + o, strs[i].ptr, strs[i].len);
    return put(w, key, key_len, GGUF_ARRAY, val, len);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs, uint64_t n)
{
    if (!w || !key) return BANTER_ERR_INVALID_ARG;
    return set_arr_str(w, key, strlen(key), strs, n);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
    if (!w || !kv || (kv->key.len && !kv->key.ptr) || kv->key.len > SIZE_MAX) return BANTER_ERR_INVALID_ARG;
    const char *key = kv->key.ptr ? kv->key.ptr : "";
    size_t key_len = (size_t)kv->key.len;
    if ((unsigned)kv->type >= GGUF_N_VTYPES) return BANTER_ERR_INVALID_ARG;
    if (kv->raw) {
        /* Entries read from a file carry their encoded bytes: copy them verbatim (nested arrays included). */
        if (kv->raw_len > SIZE_MAX) return BANTER_ERR_NOMEM;
        uint8_t *val = core_malloc((size_t)kv->raw_len);
        if (!val) return BANTER_ERR_NOMEM;
        if (kv->raw_len) memcpy(val, kv->raw, (size_t)kv->raw_len);
        return put(w, key, key_len, kv->type, val, (size_t)kv->raw_len);
    }
    /* An entry built by hand: encode it from its fields. */
    size_t es = gguf_vtype_size(kv->type);
    if (es) {
        uint8_t buf[8];
        switch (kv->type) {
        case GGUF_U8:
            buf[0] = (uint8_t)kv->v.u64;
            break;
        case GGUF_I8:
            buf[0] = (uint8_t)(int8_t)kv->v.i64;
            break;
        case GGUF_BOOL:
            buf[0] = kv->v.b ? 1 : 0;
            break;
        case GGUF_U16: {
            uint16_t x = (uint16_t)kv->v.u64;
            memcpy(buf, &x, 2);
            break;
        }
        case GGUF_I16: {
            int16_t x = (int16_t)kv->v.i64;
            memcpy(buf, &x, 2);
            break;
        }
        case GGUF_U32: {
            uint32_t x = (uint32_t)kv->v.u64;
            memcpy(buf, &x, 4);
            break;
        }
        case GGUF_I32: {
            int32_t x = (int32_t)kv->v.i64;
            memcpy(buf, &x, 4);
            break;
        }
        case GGUF_F32: {
            float x = (float)kv->v.f64;
            memcpy(buf, &x, 4);
            break;
        }
        default:
            memcpy(buf, &kv->v, 8);
            break; /* u64, i64, f64 */
        }
        uint8_t *val = core_malloc(es);
        if (!val) return BANTER_ERR_NOMEM;
        memcpy(val, buf, es);
        return put(w, key, key_len, kv->type, val, es);
    }
    if (kv->type == GGUF_STRING) {
        if ((kv->str.len && !kv->str.ptr) || kv->str.len > SIZE_MAX - 8) return BANTER_ERR_INVALID_ARG;
        uint8_t *val = core_malloc((size_t)kv->str.len + 8);
        if (!val) return BANTER_ERR_NOMEM;
        enc_str(val, kv->str.ptr, kv->str.len);
        return put(w, key, key_len, GGUF_STRING, val, (size_t)kv->str.len + 8);
    }
    if (kv->arr_type == GGUF_STRING) return set_arr_str(w, key, key_len, kv->arr_strs, kv->arr_n);
    if (gguf_vtype_size(kv->arr_type)) return set_arr(w, key, key_len, kv->arr_type, kv->arr_data, kv->arr_n);
    return BANTER_ERR_INVALID_ARG; /* a nested array without its encoded bytes cannot be rebuilt */
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, const void *data)
{
    if (!w || !name || !ne || n_dims < 1 || n_dims > 4) return BANTER_ERR_INVALID_ARG;
    const struct tensor_traits *tr = tensor_traits(type);
    if (!tr || tr->blck <= 0) return BANTER_ERR_INVALID_ARG;
    struct wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t bytes = 0;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0) return BANTER_ERR_INVALID_ARG;
        t.ne[d] = ne[d];
    }
    if (t.ne[0] % tr->blck) return BANTER_ERR_INVALID_ARG;
    bytes = (uint64_t)(t.ne[0] / tr->blck);
    if (__builtin_mul_overflow(bytes, (uint64_t)tr->size, &bytes)) return BANTER_ERR_INVALID_ARG;
    for (int d = 1; d < 4; d++)
        if (__builtin_mul_overflow(bytes, (uint64_t)t.ne[d], &bytes)) return BANTER_ERR_INVALID_ARG;
    if (bytes > SIZE_MAX) return BANTER_ERR_NOMEM;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return BANTER_ERR_INVALID_ARG;
    t.n_bytes = bytes;
    t.name = core_strdup(name);
    /* NULL data means zeros, which lets callers fill a file's layout first and its data elsewhere. */
    t.data = data ? core_malloc((size_t)bytes) : core_calloc(1, (size_t)bytes);
    if (!t.name || !t.data || reserve((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t)) {
        core_free(t.name);
        core_free(t.data);
        return BANTER_ERR_NOMEM;
    }
    if (data) memcpy(t.data, data, (size_t)bytes);
    w->t[w->n_t++] = t;
    return 0;
}

/* Buffered output that remembers the position and the first error. */
struct out {
    FILE *fp;
    uint64_t pos;
    int failed;
};

static void emit(struct out *o, const void *p, size_t n)
{
    if (o->failed || !n) return;
    if (fwrite(p, 1, n, o->fp) != n) o->failed = 1;
    o->pos += n;
}

static void emit_u32(struct out *o, uint32_t v)
{
    emit(o, &v, 4);
}

static void emit_u64(struct out *o, uint64_t v)
{
    emit(o, &v, 8);
}

static void emit_pad(struct out *o, uint64_t alignment)
{
    static const uint8_t zeros[64];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad && !o->failed) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        emit(o, zeros, n);
        pad -= n;
    }
}

/* Each tensor starts at the previous end rounded up to the alignment. Returns nonzero on overflow. */
static int assign_offsets(struct gguf_writer *w, uint64_t alignment)
{
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t pad = (alignment - off % alignment) % alignment;
        if (__builtin_add_overflow(off, pad, &off)) return 1;
        w->t[i].offset = off;
        if (__builtin_add_overflow(off, w->t[i].n_bytes, &off)) return 1;
    }
    return 0;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t err_len)
{
    if (!w || !path) {
        core_errf(err, err_len, "gguf: writer or path missing");
        return BANTER_ERR_INVALID_ARG;
    }
    uint64_t alignment = 32;
    for (size_t i = 0; i < w->n_kv; i++) {
        const struct wkv *e = &w->kv[i];
        if (e->key_len == 17 && !memcmp(e->key, "general.alignment", 17)) {
            uint32_t a = 0;
            if (e->type == GGUF_U32 && e->val_len == 4) memcpy(&a, e->val, 4);
            if (!a || (a & (a - 1))) {
                core_errf(err, err_len, "gguf: general.alignment must be a u32 power of two");
                return BANTER_ERR_INVALID_ARG;
            }
            alignment = a;
        }
    }
    if (assign_offsets(w, alignment)) {
        core_errf(err, err_len, "gguf: tensor data larger than 2^64 bytes");
        return BANTER_ERR_INVALID_ARG;
    }

    struct out o = {.fp = fopen(path, "wb")};
    if (!o.fp) {
        core_errf(err, err_len, "gguf: cannot create '%s': %s", path, strerror(errno));
        return BANTER_ERR_IO;
    }
    emit(&o, "GGUF", 4);
    emit_u32(&o, GGUF_WRITE_VERSION);
    emit_u64(&o, w->n_t);
    emit_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        const struct wkv *e = &w->kv[i];
        emit_u64(&o, e->key_len);
        emit(&o, e->key, e->key_len);
        emit_u32(&o, (uint32_t)e->type);
        emit(&o, e->val, e->val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        size_t len = strlen(t->name);
        emit_u64(&o, len);
        emit(&o, t->name, len);
        emit_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            emit_u64(&o, (uint64_t)t->ne[d]);
        emit_u32(&o, t->type);
        emit_u64(&o, t->offset);
    }
    emit_pad(&o, alignment);
    uint64_t data_start = o.pos;
    for (size_t i = 0; i < w->n_t && !o.failed; i++) {
        emit_pad(&o, alignment);
        BANTER_ASSERT(o.failed || o.pos - data_start == w->t[i].offset);
        emit(&o, w->t[i].data, (size_t)w->t[i].n_bytes);
    }
    int saved = o.failed ? errno : 0;
    if (fclose(o.fp) != 0 && !o.failed) {
        o.failed = 1;
        saved = errno;
    }
    if (o.failed) {
        core_errf(err, err_len, "gguf: cannot write '%s': %s", path, strerror(saved ? saved : EIO));
        remove(path);
        return BANTER_ERR_IO;
    }
    return 0;
}
