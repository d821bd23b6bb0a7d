/*
 * gguf.h: reading and writing GGUF files (versions 2 and 3), the model format of the llama.cpp ecosystem.
 *
 * File layout (all integers little-endian):
 *
 *   uint32 magic "GGUF" (bytes 47 47 55 46)
 *   uint32 version               2 or 3 (v1 used 32-bit counts and is rejected)
 *   uint64 n_tensors
 *   uint64 n_kv
 *   n_kv times:   string key; uint32 value_type; value
 *   n_tensors times: string name; uint32 n_dims (1..4); uint64 ne[n_dims]; uint32 ggml_type; uint64 offset
 *   padding to `general.alignment` (default 32)
 *   tensor data: each tensor at data_start + offset, offsets aligned to the alignment
 *
 *   string = uint64 length + bytes (no NUL)
 *   value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string,
 *                9 array (uint32 elem_type, uint64 n, then n values; arrays may nest), 10 u64, 11 i64, 12 f64
 *
 * The reader maps the file read-only and validates everything before use: counts against the bytes that remain,
 * string lengths, nesting depth, tensor dimensions (positive, product without overflow), types (known), offsets
 * (aligned, inside the file, no overlap with the header) and data sizes. A bad file gives GGUF errors naming the
 * offending key or tensor, never a crash or an allocation larger than the file justifies.
 */
#ifndef BANTER_GGUF_H
#define BANTER_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_N_VTYPES
};

/* A string inside the mapping: not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

struct gguf_kv {
    struct gguf_str key;
    enum gguf_vtype type;
    /* Scalars (type != STRING/ARRAY): the value widened. */
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
    } v;
    struct gguf_str str; /* type == STRING */
    /* type == ARRAY: element type, count, and for scalar elements a pointer to the packed little-endian
     * elements inside the mapping. For string elements, strs[i] (allocated by the reader). Nested arrays are
     * validated and skipped: data and strs are NULL for them. */
    enum gguf_vtype arr_type;
    uint64_t arr_n;
    const void *arr_data;
    struct gguf_str *arr_strs;
    /* The value exactly as encoded in the file (the bytes after value_type), so that any entry, nested arrays
     * included, can be copied verbatim by gguf_writer_copy_kv. NULL for entries built by hand. */
    const void *raw;
    uint64_t raw_len;
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];     /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint32_t type;     /* a ggml type id (tensor.h enum tensor_type) */
    uint64_t offset;   /* relative to the data section */
    uint64_t n_bytes;  /* exact size from type and shape */
    const void *data;  /* inside the mapping */
};

struct gguf_file {
    uint32_t version;
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section in the file */
    const uint8_t *base;  /* the whole file */
    uint64_t size;
    int mapped;           /* 1 if base is an mmap this struct owns */
};

/* Opens and validates a file. Returns 0 (BANTER_OK) or a negative banter_status with a message in err. */
int gguf_open(const char *path, struct gguf_file **out, char *err, size_t err_len);

/* Same, over a caller-owned buffer that must outlive the gguf_file (fuzzing, tests). */
int gguf_open_memory(const void *data, size_t size, struct gguf_file **out, char *err, size_t err_len);

void gguf_close(struct gguf_file *f);

/* Lookups return NULL when absent. */
const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Typed getters: 0 on success; BANTER_ERR_NOT_FOUND if absent; BANTER_ERR_FORMAT if the type does not fit
 * (integers convert between widths when the value fits; floats accept f32/f64). */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
/* Returns a NUL-terminated copy in buf (truncated to buf_len); BANTER_ERR_FORMAT if not a string. */
int gguf_get_str(const struct gguf_file *f, const char *key, char *buf, size_t buf_len);
/* An array of the given element type (or any type when want == GGUF_N_VTYPES). */
const struct gguf_kv *gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype want);

/* Scalar array element i as double / int64 (no bounds check beyond an assert). */
double gguf_arr_f64(const struct gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const struct gguf_kv *kv, uint64_t i);

/* Writes the value of kv as text into buf (truncated to buf_len, always NUL-terminated): numbers, quoted
 * strings with control characters escaped, and arrays as `[type x n] item, item, ...` showing at most
 * max_items items. Returns the number of characters written. */
size_t gguf_describe_value(const struct gguf_kv *kv, size_t max_items, char *buf, size_t buf_len);

const char *gguf_vtype_name(enum gguf_vtype t);
/* Size of a scalar value type, 0 for string/array/invalid. */
size_t gguf_vtype_size(enum gguf_vtype t);

/* ------------------------------------------------------------------------------------------------------------
 * Writer: collect metadata and tensors in memory, then write the file in one go.
 */
struct gguf_writer;

struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);
/* Each setter copies its arguments. Returns 0 or BANTER_ERR_NOMEM. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* An array of scalars (elem_type not STRING/ARRAY), n elements packed in data. */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem_type, const void *data,
                        uint64_t n);
/* An array of strings given as (ptr,len) pairs. */
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs, uint64_t n);
/* Copies the kv entry from another file (any type, nested arrays included). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv);
/* Adds a tensor; data (n_bytes computed from type and shape) is copied, NULL meaning zeros. Returns 0,
 * BANTER_ERR_INVALID_ARG (unknown type, bad shape, duplicate name) or BANTER_ERR_NOMEM. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, const void *data);
/* Writes a version 3 file. Tensor data is aligned to 32 bytes, or to the value of a "general.alignment" u32
 * entry when one was set (it must be a power of two). Returns 0 or a banter_status with err filled. */
int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t err_len);

#endif
