/*
 * fuzz_gguf.c: libFuzzer target for the GGUF reader.
 *
 * Each input is parsed from an exact-size heap copy (so ASan sees any read past the end), and when it opens,
 * every parsed field is read: keys, strings, array elements through the accessors, raw value spans, the text
 * form of every value, every tensor's first and last data byte, and each lookup by name. Every entry is also
 * copied into a writer (which is freed without writing) to exercise the verbatim copy path.
 *
 * Seeds: fuzz/corpus/gguf (made by fuzz/make_corpus.sh).
 */
#include "core/core.h"
#include "gguf/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void touch(const struct gguf_file *f)
{
    uint64_t sum = 0;
    double dsum = 0;
    char text[512], name[512];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        for (uint64_t j = 0; j < kv->key.len; j++)
            sum += (uint8_t)kv->key.ptr[j];
        if (kv->type == GGUF_STRING)
            for (uint64_t j = 0; j < kv->str.len; j++)
                sum += (uint8_t)kv->str.ptr[j];
        if (kv->type == GGUF_ARRAY && kv->arr_data)
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                sum += (uint64_t)gguf_arr_i64(kv, j);
                dsum += gguf_arr_f64(kv, j);
            }
        if (kv->type == GGUF_ARRAY && kv->arr_strs)
            for (uint64_t j = 0; j < kv->arr_n; j++)
                for (uint64_t k = 0; k < kv->arr_strs[j].len; k++)
                    sum += (uint8_t)kv->arr_strs[j].ptr[k];
        for (uint64_t j = 0; j < kv->raw_len; j++)
            sum += ((const uint8_t *)kv->raw)[j];
        sum += gguf_describe_value(kv, 16, text, sizeof text);

        /* Lookups by the same key (when it has no NUL inside and fits) must find an entry with that key. */
        if (kv->key.len < sizeof name && !memchr(kv->key.ptr, 0, kv->key.len)) {
            memcpy(name, kv->key.ptr, kv->key.len);
            name[kv->key.len] = 0;
            const struct gguf_kv *k2 = gguf_find(f, name);
            if (k2 != kv) abort();
            uint32_t u32;
            int64_t i64;
            float f32;
            bool b;
            sum += (uint64_t)gguf_get_u32(f, name, &u32) + (uint64_t)gguf_get_i64(f, name, &i64);
            sum += (uint64_t)gguf_get_f32(f, name, &f32) + (uint64_t)gguf_get_bool(f, name, &b);
            sum += (uint64_t)gguf_get_str(f, name, text, sizeof text);
            sum += gguf_get_arr(f, name, GGUF_N_VTYPES) != NULL;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        const uint8_t *d = t->data;
        if (t->n_bytes == 0 || t->n_dims < 1 || t->n_dims > 4) abort();
        if (d < f->base + f->data_offset || (uint64_t)(d - f->base) + t->n_bytes > f->size) abort();
        sum += d[0] + d[t->n_bytes - 1];
        for (uint64_t j = 0; j < t->name.len; j++)
            sum += (uint8_t)t->name.ptr[j];
        if (t->name.len < sizeof name && !memchr(t->name.ptr, 0, t->name.len)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = 0;
            if (gguf_find_tensor(f, name) != t) abort();
        }
    }
    struct gguf_writer *w = gguf_writer_new();
    if (w) {
        for (uint64_t i = 0; i < f->n_kv; i++)
            sum += (uint64_t)gguf_writer_copy_kv(w, &f->kv[i]);
        gguf_writer_free(w);
    }
    sink += sum + (dsum != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    struct gguf_file *f = NULL;
    char err[512];
    if (gguf_open_memory(copy, size, &f, err, sizeof err) == 0) {
        touch(f);
        gguf_close(f);
    } else if (f || strncmp(err, "gguf: ", 6) != 0) {
        abort();
    }
    free(copy);
    return 0;
}
