/*
 * test_gguf.c: the GGUF reader and writer.
 *
 *   1. Round trip: every value type (scalars, strings, arrays of each scalar type, string arrays, nested
 * arrays) and tensors of several types and ranks go through the writer and come back unchanged through the
 * reader, the typed getters, the public inspection API and a verbatim copy (which must reproduce the file
 * byte for byte).
 *   2. Real files: the model and vocabulary fixtures in ../shared open, validate and copy (skipped when
 * absent).
 *   3. Hostile input: every truncation of a small valid file, a few thousand random corruptions, and one
 * crafted file per rule the reader enforces, each of which must fail cleanly with a message naming the
 * problem.
 *   4. Allocation failures injected at every allocation of an open must give BANTER_ERR_NOMEM and leak
 * nothing (run under ASan or valgrind to see leaks).
 */
#include "banter.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "tensor/tensor.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------------------------
 * Helpers
 */

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static void tmp_path(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/banter_test_gguf_%ld_%s.gguf", (long)getpid(), tag);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Reads every parsed field, so ASan sees any pointer that leaves the buffer. */
static uint64_t touch_all(const struct gguf_file *f)
{
    uint64_t sum = 0;
    char buf[256];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        for (uint64_t j = 0; j < kv->key.len; j++)
            sum += (uint8_t)kv->key.ptr[j];
        for (uint64_t j = 0; j < kv->str.len; j++)
            sum += (uint8_t)kv->str.ptr[j];
        if (kv->type == GGUF_ARRAY && kv->arr_data)
            for (uint64_t j = 0; j < kv->arr_n; j++)
                sum += (uint64_t)gguf_arr_i64(kv, j);
        if (kv->arr_strs)
            for (uint64_t j = 0; j < kv->arr_n; j++)
                for (uint64_t k = 0; k < kv->arr_strs[j].len; k++)
                    sum += (uint8_t)kv->arr_strs[j].ptr[k];
        for (uint64_t j = 0; j < kv->raw_len; j++)
            sum += ((const uint8_t *)kv->raw)[j];
        sum += gguf_describe_value(kv, 4, buf, sizeof buf);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        const uint8_t *d = t->data;
        sum += d[0] + d[t->n_bytes - 1];
    }
    return sum;
}

/* ------------------------------------------------------------------------------------------------------------
 * 1. Round trip
 */

static const char *const STRS[] = {"alpha", "", "line\nbreak \"quoted\"", "\xe2\x96\x81token"};

/* A nested array, as encoded after value_type: [array x 2] of ([u8 x 3] 1 2 3) and ([string x 1] "hi"). */
static const uint8_t NESTED[] = {9, 0, 0, 0, 2, 0, 0, 0, 0,   0,  0, 0,          /* elem type array, n = 2 */
                                 0, 0, 0, 0, 3, 0, 0, 0, 0,   0,  0, 0, 1, 2, 3, /* [u8 x 3] */
                                 8, 0, 0, 0, 1, 0, 0, 0, 0,   0,  0, 0,          /* [string x 1] */
                                 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'};

static int build_sample(struct gguf_writer *w, uint32_t alignment)
{
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", "test");
    if (alignment) rc |= gguf_writer_set_u32(w, "general.alignment", alignment);
    rc |= gguf_writer_set_u32(w, "t.u32", 4000000000u);
    rc |= gguf_writer_set_i32(w, "t.i32", -123456);
    rc |= gguf_writer_set_u64(w, "t.u64", UINT64_MAX);
    rc |= gguf_writer_set_f32(w, "t.f32", 0.1f);
    rc |= gguf_writer_set_bool(w, "t.bool", true);
    rc |= gguf_writer_set_str(w, "t.str", "hello\n\"world\"\x01");
    rc |= gguf_writer_set_str(w, "t.replaced", "first");
    rc |= gguf_writer_set_str(w, "t.replaced", "second");

    /* Scalars without a setter go through copy_kv of hand-built entries. */
    struct gguf_kv kv;
    static const struct {
        const char *key;
        enum gguf_vtype type;
        int64_t i;
        double f;
    } hand[] = {{"t.u8", GGUF_U8, 200, 0},         {"t.i8", GGUF_I8, -100, 0},
                {"t.u16", GGUF_U16, 60000, 0},     {"t.i16", GGUF_I16, -30000, 0},
                {"t.i64", GGUF_I64, INT64_MIN, 0}, {"t.f64", GGUF_F64, 0, 1e-300}};
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) {
        memset(&kv, 0, sizeof kv);
        kv.key.ptr = hand[i].key;
        kv.key.len = strlen(hand[i].key);
        kv.type = hand[i].type;
        if (hand[i].type == GGUF_F64)
            kv.v.f64 = hand[i].f;
        else if (hand[i].type == GGUF_U8 || hand[i].type == GGUF_U16)
            kv.v.u64 = (uint64_t)hand[i].i;
        else
            kv.v.i64 = hand[i].i;
        rc |= gguf_writer_copy_kv(w, &kv);
    }

    /* One array per scalar element type, each holding 0, 1, 2 ... (and a negative value where signed). */
    for (int t = 0; t < GGUF_N_VTYPES; t++) {
        size_t es = gguf_vtype_size((enum gguf_vtype)t);
        if (!es) continue;
        uint8_t data[5 * 8];
        for (int j = 0; j < 5; j++) {
            int64_t iv = j == 4 ? -1 : j;
            double dv = j == 4 ? -0.5 : j;
            uint8_t *p = data + j * es;
            switch (t) {
            case GGUF_F32: {
                float x = (float)dv;
                memcpy(p, &x, 4);
                break;
            }
            case GGUF_F64:
                memcpy(p, &dv, 8);
                break;
            case GGUF_BOOL:
                *p = (uint8_t)(j & 1);
                break;
            default:
                memcpy(p, &iv, es);
                break; /* little-endian truncation of the int64 */
            }
        }
        char key[32];
        snprintf(key, sizeof key, "t.arr.%s", gguf_vtype_name((enum gguf_vtype)t));
        rc |= gguf_writer_set_arr(w, key, (enum gguf_vtype)t, data, 5);
    }
    rc |= gguf_writer_set_arr(w, "t.arr.empty", GGUF_I32, NULL, 0);
    struct gguf_str strs[4];
    for (int i = 0; i < 4; i++)
        strs[i] = (struct gguf_str){STRS[i], strlen(STRS[i])};
    rc |= gguf_writer_set_arr_str(w, "t.arr.str", strs, 4);
    /* A key with an embedded NUL byte and a value string with one. */
    memset(&kv, 0, sizeof kv);
    kv.key = (struct gguf_str){"t.nested", 8};
    kv.type = GGUF_ARRAY;
    kv.arr_type = GGUF_ARRAY;
    kv.arr_n = 2;
    kv.raw = NESTED;
    kv.raw_len = sizeof NESTED;
    rc |= gguf_writer_copy_kv(w, &kv);
    memset(&kv, 0, sizeof kv);
    kv.key = (struct gguf_str){"t.nested_no_raw", 15};
    kv.type = GGUF_ARRAY;
    kv.arr_type = GGUF_ARRAY;
    kv.arr_n = 2;
    CHECK_INT_EQ(gguf_writer_copy_kv(w, &kv), BANTER_ERR_INVALID_ARG);

    /* Tensors: F32 2-D, F16 1-D of odd length (forces padding), F32 4-D, and Q8_0 if the tensor module knows
     * it. */
    float a[4 * 3];
    for (int i = 0; i < 12; i++)
        a[i] = (float)i * 0.5f;
    int64_t ne_a[2] = {4, 3};
    rc |= gguf_writer_add_tensor(w, "a.weight", TENSOR_F32, 2, ne_a, a);
    uint16_t h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (uint16_t)(0x3c00 + i);
    int64_t ne_h[1] = {7};
    rc |= gguf_writer_add_tensor(w, "h.weight", TENSOR_F16, 1, ne_h, h);
    float c[16];
    for (int i = 0; i < 16; i++)
        c[i] = -(float)i;
    int64_t ne_c[4] = {2, 2, 2, 2};
    rc |= gguf_writer_add_tensor(w, "c.weight", TENSOR_F32, 4, ne_c, c);
    uint8_t q[2 * 34];
    for (int i = 0; i < (int)sizeof q; i++)
        q[i] = (uint8_t)(i * 7);
    int64_t ne_q[2] = {32, 2};
    rc |= gguf_writer_add_tensor(w, "q.weight", TENSOR_Q8_0, 2, ne_q, q);
    return rc;
}

static void check_sample(const struct gguf_file *f, uint32_t alignment)
{
    CHECK_INT_EQ(f->version, 3);
    CHECK_INT_EQ(f->alignment, alignment ? alignment : 32);
    CHECK_INT_EQ(f->data_offset % f->alignment, 0);
    uint32_t u32;
    int64_t i64;
    float f32;
    bool b;
    char s[64];
    CHECK_INT_EQ(gguf_get_u32(f, "t.u32", &u32), 0);
    CHECK_INT_EQ(u32, 4000000000u);
    CHECK_INT_EQ(gguf_get_i64(f, "t.i32", &i64), 0);
    CHECK_INT_EQ(i64, -123456);
    CHECK_INT_EQ(gguf_get_u32(f, "t.i32", &u32), BANTER_ERR_FORMAT); /* negative */
    CHECK_INT_EQ(gguf_get_i64(f, "t.u64", &i64), BANTER_ERR_FORMAT); /* above INT64_MAX */
    CHECK_INT_EQ(gguf_get_u32(f, "t.u64", &u32), BANTER_ERR_FORMAT);
    CHECK(gguf_find(f, "t.u64") && gguf_find(f, "t.u64")->v.u64 == UINT64_MAX);
    CHECK_INT_EQ(gguf_get_u32(f, "t.u8", &u32), 0);
    CHECK_INT_EQ(u32, 200);
    CHECK_INT_EQ(gguf_get_i64(f, "t.i8", &i64), 0);
    CHECK_INT_EQ(i64, -100);
    CHECK_INT_EQ(gguf_get_u32(f, "t.u16", &u32), 0);
    CHECK_INT_EQ(u32, 60000);
    CHECK_INT_EQ(gguf_get_i64(f, "t.i16", &i64), 0);
    CHECK_INT_EQ(i64, -30000);
    CHECK_INT_EQ(gguf_get_i64(f, "t.i64", &i64), 0);
    CHECK(i64 == INT64_MIN);
    CHECK_INT_EQ(gguf_get_f32(f, "t.f32", &f32), 0);
    CHECK(f32 == 0.1f);
    CHECK(gguf_find(f, "t.f64") && gguf_find(f, "t.f64")->v.f64 == 1e-300);
    CHECK_INT_EQ(gguf_get_f32(f, "t.f64", &f32), 0);
    CHECK_INT_EQ(gguf_get_f32(f, "t.u32", &f32), BANTER_ERR_FORMAT);
    CHECK_INT_EQ(gguf_get_bool(f, "t.bool", &b), 0);
    CHECK(b);
    CHECK_INT_EQ(gguf_get_bool(f, "t.u8", &b), BANTER_ERR_FORMAT);
    CHECK_INT_EQ(gguf_get_str(f, "t.replaced", s, sizeof s), 0);
    CHECK_STR_EQ(s, "second");
    CHECK_INT_EQ(gguf_get_str(f, "t.str", s, 6), 0); /* truncated */
    CHECK_STR_EQ(s, "hello");
    CHECK_INT_EQ(gguf_get_str(f, "t.u8", s, sizeof s), BANTER_ERR_FORMAT);
    CHECK_INT_EQ(gguf_get_str(f, "missing", s, sizeof s), BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(gguf_get_u32(f, "missing", &u32), BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(gguf_get_i64(f, "missing", &i64), BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(gguf_get_f32(f, "missing", &f32), BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(gguf_get_bool(f, "missing", &b), BANTER_ERR_NOT_FOUND);
    CHECK(gguf_find(f, "t.u3") == NULL);
    CHECK(gguf_find(f, "") == NULL);

    for (int t = 0; t < GGUF_N_VTYPES; t++) {
        if (!gguf_vtype_size((enum gguf_vtype)t)) continue;
        char key[32];
        snprintf(key, sizeof key, "t.arr.%s", gguf_vtype_name((enum gguf_vtype)t));
        const struct gguf_kv *kv = gguf_get_arr(f, key, (enum gguf_vtype)t);
        CHECK(kv != NULL);
        if (!kv) continue;
        CHECK(gguf_get_arr(f, key, t == GGUF_U8 ? GGUF_I8 : GGUF_U8) == NULL);
        CHECK(gguf_get_arr(f, key, GGUF_N_VTYPES) == kv);
        CHECK_INT_EQ(kv->arr_n, 5);
        for (int j = 0; j < 4; j++) {
            if (t == GGUF_BOOL) {
                CHECK_INT_EQ(gguf_arr_i64(kv, (uint64_t)j), j & 1);
            } else {
                CHECK_INT_EQ(gguf_arr_i64(kv, (uint64_t)j), j);
                CHECK_NEAR(gguf_arr_f64(kv, (uint64_t)j), j, 0);
            }
        }
        if (t == GGUF_F32 || t == GGUF_F64)
            CHECK_NEAR(gguf_arr_f64(kv, 4), -0.5, 0);
        else if (t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64)
            CHECK_INT_EQ(gguf_arr_i64(kv, 4), -1);
        else if (t == GGUF_U8)
            CHECK_INT_EQ(gguf_arr_i64(kv, 4), 255);
        else if (t == GGUF_U32)
            CHECK_NEAR(gguf_arr_f64(kv, 4), 4294967295.0, 0);
    }
    const struct gguf_kv *e = gguf_get_arr(f, "t.arr.empty", GGUF_I32);
    CHECK(e && e->arr_n == 0);
    const struct gguf_kv *sa = gguf_get_arr(f, "t.arr.str", GGUF_STRING);
    CHECK(sa && sa->arr_n == 4 && sa->arr_strs);
    if (sa && sa->arr_strs)
        for (int i = 0; i < 4; i++)
            CHECK(sa->arr_strs[i].len == strlen(STRS[i]) &&
                  !memcmp(sa->arr_strs[i].ptr, STRS[i], strlen(STRS[i])));
    const struct gguf_kv *n = gguf_get_arr(f, "t.nested", GGUF_ARRAY);
    CHECK(n && n->arr_n == 2 && n->arr_data == NULL && n->arr_strs == NULL);
    CHECK(n && n->raw_len == sizeof NESTED && !memcmp(n->raw, NESTED, sizeof NESTED));
    CHECK(gguf_find(f, "t.nested_no_raw") == NULL);

    CHECK_INT_EQ(f->n_tensors, 4);
    const struct gguf_tensor *ta = gguf_find_tensor(f, "a.weight");
    CHECK(ta && ta->n_dims == 2 && ta->ne[0] == 4 && ta->ne[1] == 3 && ta->ne[2] == 1 && ta->n_bytes == 48);
    if (ta) {
        float v[12];
        memcpy(v, ta->data, sizeof v);
        CHECK(v[5] == 2.5f);
    }
    const struct gguf_tensor *th = gguf_find_tensor(f, "h.weight");
    CHECK(th && th->type == TENSOR_F16 && th->n_bytes == 14);
    if (th) {
        uint16_t v;
        memcpy(&v, (const uint8_t *)th->data + 12, 2);
        CHECK_INT_EQ(v, 0x3c06);
    }
    const struct gguf_tensor *tc = gguf_find_tensor(f, "c.weight");
    CHECK(tc && tc->n_dims == 4 && tc->ne[3] == 2 && tc->n_bytes == 64);
    const struct gguf_tensor *tq = gguf_find_tensor(f, "q.weight");
    CHECK(tq && tq->type == TENSOR_Q8_0 && tq->n_bytes == 68);
    if (tq) CHECK_INT_EQ(((const uint8_t *)tq->data)[67], (uint8_t)(67 * 7));
    CHECK(gguf_find_tensor(f, "missing") == NULL);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        CHECK_INT_EQ(f->tensors[i].offset % f->alignment, 0);
        CHECK_INT_EQ(((const uint8_t *)f->tensors[i].data - f->base) % f->alignment, 0);
    }
}

static void test_round_trip(void)
{
    char path[256], copy_path[256], err[512];
    for (int pass = 0; pass < 2; pass++) {
        uint32_t alignment = pass ? 64 : 0;
        tmp_path(path, sizeof path, "rt");
        tmp_path(copy_path, sizeof copy_path, "rtcopy");
        struct gguf_writer *w = gguf_writer_new();
        CHECK(w != NULL);
        CHECK_INT_EQ(build_sample(w, alignment), 0);
        /* Bad tensors are refused. */
        int64_t ne_bad[2] = {33, 1};
        CHECK_INT_EQ(gguf_writer_add_tensor(w, "bad", TENSOR_Q8_0, 2, ne_bad, NULL), BANTER_ERR_INVALID_ARG);
        CHECK_INT_EQ(gguf_writer_add_tensor(w, "a.weight", TENSOR_F32, 1, ne_bad, NULL),
                     BANTER_ERR_INVALID_ARG);
        CHECK_INT_EQ(gguf_writer_add_tensor(w, "bad", 1000, 1, ne_bad, NULL), BANTER_ERR_INVALID_ARG);
        CHECK_INT_EQ(gguf_writer_add_tensor(w, "bad", TENSOR_F32, 5, ne_bad, NULL), BANTER_ERR_INVALID_ARG);
        CHECK_INT_EQ(gguf_writer_write(w, path, err, sizeof err), 0);
        CHECK_INT_EQ(gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err), BANTER_ERR_IO);
        CHECK(strstr(err, "/nonexistent-dir/x.gguf") != NULL);
        gguf_writer_free(w);

        struct gguf_file *f = NULL;
        int rc = gguf_open(path, &f, err, sizeof err);
        CHECK_INT_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "%s\n", err);
            continue;
        }
        check_sample(f, alignment);

        /* A verbatim copy of every entry and tensor reproduces the file exactly. */
        w = gguf_writer_new();
        for (uint64_t i = 0; i < f->n_kv; i++)
            CHECK_INT_EQ(gguf_writer_copy_kv(w, &f->kv[i]), 0);
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const struct gguf_tensor *t = &f->tensors[i];
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            CHECK_INT_EQ(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data), 0);
        }
        CHECK_INT_EQ(gguf_writer_write(w, copy_path, err, sizeof err), 0);
        gguf_writer_free(w);
        size_t n1 = 0, n2 = 0;
        uint8_t *b1 = read_all(path, &n1), *b2 = read_all(copy_path, &n2);
        CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1));
        /* The memory reader agrees with the file reader. */
        struct gguf_file *m = NULL;
        CHECK_INT_EQ(gguf_open_memory(b1, n1, &m, err, sizeof err), 0);
        if (m) {
            check_sample(m, alignment);
            gguf_close(m);
        }
        free(b1);
        free(b2);

        /* Copies of hand-built entries and scalar/string arrays without raw bytes take the encoding path. */
        w = gguf_writer_new();
        for (uint64_t i = 0; i < f->n_kv; i++) {
            struct gguf_kv kv = f->kv[i];
            if (kv.type == GGUF_ARRAY && kv.arr_type == GGUF_ARRAY) continue;
            kv.raw = NULL;
            kv.raw_len = 0;
            CHECK_INT_EQ(gguf_writer_copy_kv(w, &kv), 0);
        }
        CHECK_INT_EQ(gguf_writer_write(w, copy_path, err, sizeof err), 0);
        gguf_writer_free(w);
        struct gguf_file *g = NULL;
        CHECK_INT_EQ(gguf_open(copy_path, &g, err, sizeof err), 0);
        if (g) {
            CHECK_INT_EQ(g->n_kv, f->n_kv - 1);
            for (uint64_t i = 0; i < g->n_kv; i++) {
                char key[64];
                snprintf(key, sizeof key, "%.*s", (int)g->kv[i].key.len, g->kv[i].key.ptr);
                const struct gguf_kv *o = gguf_find(f, key);
                CHECK(o && o->raw_len == g->kv[i].raw_len && !memcmp(o->raw, g->kv[i].raw, o->raw_len));
            }
            gguf_close(g);
        }

        /* The public inspection API. */
        banter_gguf *bg = NULL;
        CHECK_INT_EQ(banter_gguf_open(path, &bg, err, sizeof err), BANTER_OK);
        if (bg) {
            CHECK_INT_EQ(banter_gguf_version(bg), 3);
            CHECK_INT_EQ(banter_gguf_n_kv(bg), f->n_kv);
            CHECK_INT_EQ(banter_gguf_n_tensors(bg), 4);
            char line[256];
            for (size_t i = 0; i < banter_gguf_n_kv(bg); i++) {
                CHECK_INT_EQ(banter_gguf_describe_kv(bg, i, 2, line, sizeof line), BANTER_OK);
                const char *key = line;
                if (!strncmp(key, "t.str =", 7)) CHECK_STR_EQ(line, "t.str = \"hello\\n\\\"world\\\"\\x01\"");
                if (!strncmp(key, "t.f32 =", 7)) CHECK_STR_EQ(line, "t.f32 = 0.1");
                if (!strncmp(key, "t.f64 =", 7)) CHECK_STR_EQ(line, "t.f64 = 1e-300");
                if (!strncmp(key, "t.u64 =", 7)) CHECK_STR_EQ(line, "t.u64 = 18446744073709551615");
                if (!strncmp(key, "t.i64 =", 7)) CHECK_STR_EQ(line, "t.i64 = -9223372036854775808");
                if (!strncmp(key, "t.bool =", 8)) CHECK_STR_EQ(line, "t.bool = true");
                if (!strncmp(key, "t.arr.str =", 11))
                    CHECK_STR_EQ(line, "t.arr.str = [string x 4] \"alpha\", \"\", ...");
                if (!strncmp(key, "t.arr.i8 =", 10)) CHECK_STR_EQ(line, "t.arr.i8 = [i8 x 5] 0, 1, ...");
                if (!strncmp(key, "t.arr.u64 =", 11)) CHECK_STR_EQ(line, "t.arr.u64 = [u64 x 5] 0, 1, ...");
                if (!strncmp(key, "t.arr.empty =", 13)) CHECK_STR_EQ(line, "t.arr.empty = [i32 x 0]");
                if (!strncmp(key, "t.nested =", 10))
                    CHECK_STR_EQ(line, "t.nested = [array x 2] (nested arrays not shown)");
                /* Truncation keeps the NUL. */
                char small[8];
                CHECK_INT_EQ(banter_gguf_describe_kv(bg, i, 100, small, sizeof small), BANTER_OK);
                CHECK(strlen(small) <= 7);
            }
            CHECK_INT_EQ(banter_gguf_describe_kv(bg, banter_gguf_n_kv(bg), 2, line, sizeof line),
                         BANTER_ERR_INVALID_ARG);
            CHECK_STR_EQ(line, "");
            size_t all_items = 0;
            for (size_t i = 0; i < banter_gguf_n_kv(bg); i++) {
                banter_gguf_describe_kv(bg, i, SIZE_MAX, line, sizeof line);
                if (!strncmp(line, "t.arr.f32 =", 11)) {
                    CHECK_STR_EQ(line, "t.arr.f32 = [f32 x 5] 0, 1, 2, 3, -0.5");
                    all_items = 1;
                }
            }
            CHECK(all_items);
            banter_tensor_info ti;
            CHECK_INT_EQ(banter_gguf_tensor(bg, 0, &ti), BANTER_OK);
            CHECK_STR_EQ(ti.name, "a.weight");
            CHECK_STR_EQ(ti.type_name, "F32");
            CHECK_INT_EQ(ti.n_dims, 2);
            CHECK_INT_EQ(ti.ne[1], 3);
            CHECK_INT_EQ(ti.n_bytes, 48);
            CHECK_INT_EQ(banter_gguf_tensor(bg, 3, &ti), BANTER_OK);
            CHECK_STR_EQ(ti.name, "q.weight");
            CHECK_STR_EQ(ti.type_name, "Q8_0");
            CHECK_INT_EQ(banter_gguf_tensor(bg, 4, &ti), BANTER_ERR_INVALID_ARG);
            CHECK(ti.name == NULL);
            banter_gguf_close(bg);
        }
        banter_gguf_close(NULL);
        CHECK_INT_EQ(banter_gguf_open("/nonexistent.gguf", &bg, err, sizeof err), BANTER_ERR_IO);
        CHECK(bg == NULL);
        CHECK(strstr(err, "/nonexistent.gguf") != NULL);

        gguf_close(f);
        remove(path);
        remove(copy_path);
    }
    gguf_close(NULL);
    gguf_writer_free(NULL);
}

/* ------------------------------------------------------------------------------------------------------------
 * 2. Real files
 */

static void check_real(const char *rel, int is_model)
{
    char path[512], err[512], copy_path[256];
    if (!test_shared_path(rel, path, sizeof path)) return;
    struct gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", rel, err);
        return;
    }
    CHECK(f->version == 2 || f->version == 3);
    CHECK(f->n_kv > 0);
    char arch[64];
    CHECK_INT_EQ(gguf_get_str(f, "general.architecture", arch, sizeof arch), 0);
    const struct gguf_kv *tok = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING);
    CHECK(tok && tok->arr_n > 0);
    if (is_model) CHECK(f->n_tensors > 0);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(gguf_find_tensor(f, name) == t);
        CHECK(tensor_traits(t->type) != NULL);
        CHECK((const uint8_t *)t->data + t->n_bytes <= f->base + f->size);
        CHECK_INT_EQ(t->offset % f->alignment, 0);
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)f->kv[i].key.len, f->kv[i].key.ptr);
        CHECK(gguf_find(f, key) == &f->kv[i]);
    }
    touch_all(f);

    /* Copy everything and read it back: same entries, same tensor data. */
    tmp_path(copy_path, sizeof copy_path, "realcopy");
    struct gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < f->n_kv; i++)
        CHECK_INT_EQ(gguf_writer_copy_kv(w, &f->kv[i]), 0);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_INT_EQ(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data), 0);
    }
    CHECK_INT_EQ(gguf_writer_write(w, copy_path, err, sizeof err), 0);
    gguf_writer_free(w);
    struct gguf_file *g = NULL;
    CHECK_INT_EQ(gguf_open(copy_path, &g, err, sizeof err), 0);
    if (g) {
        CHECK_INT_EQ(g->n_kv, f->n_kv);
        CHECK_INT_EQ(g->n_tensors, f->n_tensors);
        for (uint64_t i = 0; i < g->n_kv && i < f->n_kv; i++)
            CHECK(g->kv[i].raw_len == f->kv[i].raw_len &&
                  !memcmp(g->kv[i].raw, f->kv[i].raw, f->kv[i].raw_len));
        for (uint64_t i = 0; i < g->n_tensors && i < f->n_tensors; i++)
            CHECK(g->tensors[i].n_bytes == f->tensors[i].n_bytes &&
                  !memcmp(g->tensors[i].data, f->tensors[i].data, f->tensors[i].n_bytes));
        gguf_close(g);
    }
    remove(copy_path);
    printf("  %s: GGUF v%u, %" PRIu64 " keys, %" PRIu64 " tensors, arch %s, %" PRIu64 " tokens\n", rel,
           f->version, f->n_kv, f->n_tensors, arch, tok ? tok->arr_n : 0);
    gguf_close(f);
}

static void test_real_files(void)
{
    static const char *const models[] = {
        "fixtures/llm/gemma3-tiny-f32.gguf",     "fixtures/llm/gemma3-small-f16.gguf",
        "fixtures/llm/gemma3-small-q8_0.gguf",   "fixtures/llm/gemma3-small-q4_0.gguf",
        "fixtures/llm/gemma3-small-q4_k_m.gguf", "fixtures/llm/llama-tiny-spm-f16.gguf"};
    static const char *const vocabs[] = {"fixtures/tokenizer/ggml-vocab-gpt-2.gguf",
                                         "fixtures/tokenizer/ggml-vocab-llama-spm.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        check_real(models[i], 1);
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++)
        check_real(vocabs[i], 0);
}

/* ------------------------------------------------------------------------------------------------------------
 * 3. Hostile input
 */

/* A small valid file with a string array, a nested array and two tensors, in memory. */
static uint8_t *small_file(size_t *size)
{
    char path[256], err[256];
    tmp_path(path, sizeof path, "small");
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "x");
    gguf_writer_set_u32(w, "x.n", 7);
    struct gguf_str strs[3] = {{"a", 1}, {"bc", 2}, {"", 0}};
    gguf_writer_set_arr_str(w, "x.tokens", strs, 3);
    float fv[3] = {1, 2, 3};
    gguf_writer_set_arr(w, "x.scores", GGUF_F32, fv, 3);
    struct gguf_kv kv = {.key = {"x.nested", 8}, .type = GGUF_ARRAY, .raw = NESTED, .raw_len = sizeof NESTED};
    gguf_writer_copy_kv(w, &kv);
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne[2] = {4, 2};
    gguf_writer_add_tensor(w, "t0", TENSOR_F32, 2, ne, a);
    int64_t ne1[1] = {3};
    gguf_writer_add_tensor(w, "t1", TENSOR_F32, 1, ne1, a);
    CHECK_INT_EQ(gguf_writer_write(w, path, err, sizeof err), 0);
    gguf_writer_free(w);
    uint8_t *b = read_all(path, size);
    remove(path);
    return b;
}

static int open_copy(const uint8_t *bytes, size_t n, char *err, size_t err_len, uint64_t *touched)
{
    /* An exact-size heap copy, so that ASan catches any read past the end. */
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, bytes, n);
    struct gguf_file *f = NULL;
    int rc = gguf_open_memory(copy, n, &f, err, err_len);
    if (rc == 0) {
        uint64_t s = touch_all(f);
        if (touched) *touched += s;
        gguf_close(f);
    } else {
        CHECK(f == NULL);
        CHECK(strncmp(err, "gguf: ", 6) == 0);
    }
    free(copy);
    return rc;
}

static void test_truncation_and_corruption(void)
{
    size_t size = 0;
    uint8_t *b = small_file(&size);
    CHECK(b != NULL && size > 100);
    if (!b) return;
    char err[512];
    uint64_t touched = 0;
    CHECK_INT_EQ(open_copy(b, size, err, sizeof err, &touched), 0);
    int n_bad = 0;
    for (size_t len = 0; len < size; len++) {
        int rc = open_copy(b, len, err, sizeof err, NULL);
        if (rc != BANTER_ERR_FORMAT) {
            n_bad++;
            fprintf(stderr, "truncation to %zu of %zu bytes: rc %d\n", len, size, rc);
        }
    }
    CHECK_INT_EQ(n_bad, 0);

    int n_opened = 0, n_failed = 0;
    n_bad = 0;
    for (int it = 0; it < 4000; it++) {
        uint8_t *c = malloc(size);
        memcpy(c, b, size);
        int n_flips = 1 + (int)(rng() % 3) * (it & 1);
        for (int k = 0; k < n_flips; k++) {
            size_t pos = (size_t)(rng() % size);
            uint64_t r = rng();
            /* Half of the time, write one of the values that sit on boundaries. */
            static const uint8_t special[] = {0, 1, 0x7f, 0x80, 0xff, 4, 5, 9, 13, 64};
            c[pos] = (r & 1) ? (uint8_t)(r >> 8) : special[(r >> 8) % sizeof special];
        }
        int rc = open_copy(c, size, err, sizeof err, &touched);
        if (rc == 0)
            n_opened++;
        else if (rc == BANTER_ERR_FORMAT)
            n_failed++;
        else
            n_bad++;
        free(c);
    }
    CHECK_INT_EQ(n_bad, 0);
    CHECK(n_failed > 0);
    printf("  corruptions: %d opened, %d rejected (checksum %" PRIu64 ")\n", n_opened, n_failed, touched);
    free(b);
}

/* A byte builder for crafted files. */
struct bb {
    uint8_t buf[4096];
    size_t n;
};

static void bb_bytes(struct bb *b, const void *p, size_t n)
{
    if (b->n + n > sizeof b->buf) abort();
    memcpy(b->buf + b->n, p, n);
    b->n += n;
}
static void bb_u32(struct bb *b, uint32_t v)
{
    bb_bytes(b, &v, 4);
}
static void bb_u64(struct bb *b, uint64_t v)
{
    bb_bytes(b, &v, 8);
}
static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}
static void bb_header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    bb_bytes(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
/* A tensor entry with up to 4 dims. */
static void bb_tensor(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
/* Pads to 32 and appends n data bytes. */
static void bb_data(struct bb *b, size_t n)
{
    while (b->n % 32)
        b->buf[b->n++] = 0;
    for (size_t i = 0; i < n; i++)
        b->buf[b->n++] = (uint8_t)i;
}

static void expect_fail(const char *what, struct bb *b, int want_rc, const char *want_msg)
{
    char err[512] = "";
    int rc = open_copy(b->buf, b->n, err, sizeof err, NULL);
    test_n_checks++;
    if (rc != want_rc || !strstr(err, want_msg)) {
        test_n_failed++;
        fprintf(stderr, "crafted case '%s': rc %d (want %d), message \"%s\" (want it to contain \"%s\")\n",
                what, rc, want_rc, err, want_msg);
    }
}

static void test_crafted(void)
{
    struct bb b;
    const int F = BANTER_ERR_FORMAT;

    b.n = 0;
    expect_fail("empty", &b, F, "too small");
    bb_header(&b, 3, 0, 0);
    b.buf[3] = 'X';
    expect_fail("bad magic", &b, F, "not a GGUF file");
    bb_header(&b, 1, 0, 0);
    expect_fail("version 1", &b, F, "version 1 is not supported");
    bb_header(&b, 4, 0, 0);
    expect_fail("version 4", &b, F, "unsupported GGUF version 4");
    bb_header(&b, 0x03000000, 0, 0);
    expect_fail("big-endian", &b, F, "big-endian");

    bb_header(&b, 3, 0, 0);
    {
        char err[256];
        CHECK_INT_EQ(open_copy(b.buf, b.n, err, sizeof err, NULL), 0); /* empty but valid */
        bb_header(&b, 2, 0, 0);
        CHECK_INT_EQ(open_copy(b.buf, b.n, err, sizeof err, NULL), 0); /* version 2 */
    }

    bb_header(&b, 3, 0, (uint64_t)1 << 60);
    expect_fail("huge n_kv", &b, F, "metadata entries");
    bb_header(&b, 3, 0, UINT64_MAX);
    bb_u64(&b, 0);
    expect_fail("n_kv max", &b, F, "metadata entries");

    bb_header(&b, 3, 0, 1);
    bb_u64(&b, (uint64_t)1 << 62);
    bb_u32(&b, 0);
    expect_fail("huge key length", &b, F, "has length 4611686018427387904");

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_STRING);
    bb_u64(&b, UINT64_MAX);
    expect_fail("huge string length", &b, F, "key 'k': the string value has length");

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_ARRAY);
    bb_u32(&b, GGUF_U32);
    bb_u64(&b, (uint64_t)1 << 62);
    expect_fail("huge u32 array", &b, F, "array of 4611686018427387904 u32 values");

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_ARRAY);
    bb_u32(&b, GGUF_STRING);
    bb_u64(&b, (uint64_t)1 << 61);
    bb_u64(&b, 0);
    expect_fail("huge string array", &b, F, "strings needs more than");

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_ARRAY);
    bb_u32(&b, GGUF_ARRAY);
    bb_u64(&b, UINT64_MAX);
    bb_u64(&b, 0);
    bb_u32(&b, 0);
    expect_fail("huge nested array", &b, F, "arrays needs more than");

    /* Arrays nested 100 deep: each level is one array holding the next. */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "bomb");
    bb_u32(&b, GGUF_ARRAY);
    for (int i = 0; i < 100; i++) {
        bb_u32(&b, GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_U8);
    bb_u64(&b, 0);
    expect_fail("nesting bomb", &b, F, "nested deeper than 8");
    /* Depth 8 is fine. */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "deep");
    bb_u32(&b, GGUF_ARRAY);
    for (int i = 0; i < 7; i++) {
        bb_u32(&b, GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_U8);
    bb_u64(&b, 1);
    bb_bytes(&b, "z", 1);
    {
        char err[256];
        int rc = open_copy(b.buf, b.n, err, sizeof err, NULL);
        CHECK_INT_EQ(rc, 0);
        if (rc) fprintf(stderr, "depth 8: %s\n", err);
    }

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u32(&b, 0);
    expect_fail("unknown value type", &b, F, "unknown value type 13");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    expect_fail("unknown element type", &b, F, "unknown array element type 77");

    bb_header(&b, 3, 0, 2);
    bb_str(&b, "dup");
    bb_u32(&b, GGUF_U8);
    bb_bytes(&b, "a", 1);
    bb_str(&b, "dup");
    bb_u32(&b, GGUF_U8);
    bb_bytes(&b, "b", 1);
    expect_fail("duplicate key", &b, F, "key 'dup' appears twice (entries 0 and 1)");

    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_U32);
    bb_u32(&b, 48);
    expect_fail("alignment 48", &b, F, "general.alignment is 48 (must be a nonzero power of two)");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_U32);
    bb_u32(&b, 0);
    expect_fail("alignment 0", &b, F, "general.alignment is 0");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_U64);
    bb_u64(&b, 32);
    expect_fail("alignment u64", &b, F, "general.alignment has type u64");

    bb_header(&b, 3, (uint64_t)1 << 58, 0);
    expect_fail("huge n_tensors", &b, F, "tensors but only");

    uint64_t ne[5] = {8, 1, 1, 1, 1};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 5, ne, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("n_dims 5", &b, F, "tensor 0 't' has 5 dimensions");
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 0, ne, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("n_dims 0", &b, F, "has 0 dimensions");

    uint64_t ne0[2] = {8, 0};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, ne0, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("ne 0", &b, F, "dimension 1 of size 0");
    uint64_t neneg[1] = {UINT64_MAX};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, neneg, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("ne negative", &b, F, "dimension 0 of size 18446744073709551615");

    uint64_t nebig[4] = {(uint64_t)1 << 40, (uint64_t)1 << 40, 1 << 20, 1 << 20};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "big", 4, nebig, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("ne product overflow", &b, F, "tensor 0 'big' has too many elements");
    uint64_t ne_lim[2] = {(uint64_t)1 << 30, (uint64_t)1 << 30};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "big", 2, ne_lim, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("ne product above the limit", &b, F, "has too many elements");
    ne_lim[0] = ne_lim[1] = (uint64_t)1 << 20;
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "big", 2, ne_lim, TENSOR_F32, 0);
    bb_data(&b, 32);
    expect_fail("ne product huge", &b, F, "runs past the end of the file");

    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "blk.0.attn_q.weight", 1, ne, 1000, 0);
    bb_data(&b, 32);
    expect_fail("unknown type", &b, F, "tensor 0 'blk.0.attn_q.weight' has unknown type id 1000");
    if (!tensor_traits(4)) {
        bb_header(&b, 3, 1, 0);
        bb_tensor(&b, "t", 1, ne, 4, 0);
        bb_data(&b, 32);
        expect_fail("retired type 4", &b, F, "unknown type id 4");
    }
    uint64_t ne33[1] = {33};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "q", 1, ne33, TENSOR_Q8_0, 0);
    bb_data(&b, 64);
    expect_fail("ne0 not a block multiple", &b, F, "ne[0] = 33 is not a multiple");

    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, ne, TENSOR_F32, 8);
    bb_data(&b, 64);
    expect_fail("misaligned offset", &b, F, "tensor 't' data offset 8 is not a multiple of the alignment 32");

    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "blk.0.attn_q.weight", 1, ne, TENSOR_F32, 1 << 20);
    bb_data(&b, 32);
    expect_fail("data out of file", &b, F,
                "tensor 'blk.0.attn_q.weight' data [offset 1048576, 32 bytes] runs past the end of the file");
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, ne, TENSOR_F32, UINT64_MAX - 31);
    bb_data(&b, 32);
    expect_fail("offset overflow", &b, F, "runs past the end of the file");
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, ne, TENSOR_F32, 0);
    bb_data(&b, 31);
    expect_fail("data one byte short", &b, F, "[offset 0, 32 bytes] runs past the end");
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, ne, TENSOR_F32, 0);
    expect_fail("data section missing", &b, F, "the data section would start at offset");

    uint64_t ne16[1] = {16};
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne16, TENSOR_F32, 0);
    bb_tensor(&b, "b", 1, ne, TENSOR_F32, 32);
    bb_data(&b, 96);
    expect_fail("overlap", &b, F, "tensors 'a' [offset 0, 64 bytes] and 'b' [offset 32, 32 bytes] overlap");
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne, TENSOR_F32, 0);
    bb_tensor(&b, "b", 1, ne, TENSOR_F32, 0);
    bb_data(&b, 64);
    expect_fail("same offset", &b, F, "overlap");
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne, TENSOR_F32, 0);
    bb_tensor(&b, "a", 1, ne, TENSOR_F32, 32);
    bb_data(&b, 64);
    expect_fail("duplicate tensor", &b, F, "tensor name 'a' appears twice");
    /* Out of order but disjoint is fine. */
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne, TENSOR_F32, 32);
    bb_tensor(&b, "b", 1, ne, TENSOR_F32, 0);
    bb_data(&b, 64);
    {
        char err[256];
        CHECK_INT_EQ(open_copy(b.buf, b.n, err, sizeof err, NULL), 0);
    }

    /* Names with control characters are escaped in messages. */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "evil\n\x1b[31m", 1, ne, 1000, 0);
    bb_data(&b, 32);
    expect_fail("escaped name", &b, F, "'evil\\x0a\\x1b[31m'");

    /* gguf_open's own failures. */
    char err[512];
    struct gguf_file *f = (struct gguf_file *)&b; /* must be reset to NULL */
    CHECK_INT_EQ(gguf_open("/nonexistent/file.gguf", &f, err, sizeof err), BANTER_ERR_IO);
    CHECK(f == NULL);
    CHECK(strstr(err, "cannot open '/nonexistent/file.gguf'") != NULL);
    CHECK_INT_EQ(gguf_open("/tmp", &f, err, sizeof err), BANTER_ERR_IO);
    CHECK(strstr(err, "not a regular file") != NULL);
    char path[256];
    tmp_path(path, sizeof path, "empty");
    FILE *fp = fopen(path, "wb");
    if (fp) fclose(fp);
    CHECK_INT_EQ(gguf_open(path, &f, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, "too small") != NULL);
    /* A format error through gguf_open names the path. */
    bb_header(&b, 1, 0, 0);
    fp = fopen(path, "wb");
    if (fp) {
        fwrite(b.buf, 1, b.n, fp);
        fclose(fp);
    }
    CHECK_INT_EQ(gguf_open(path, &f, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, path) != NULL && strstr(err, "version 1") != NULL);
    remove(path);
    CHECK_INT_EQ(gguf_open_memory(NULL, 0, &f, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK_INT_EQ(gguf_open_memory(b.buf, b.n, &f, NULL, 0), BANTER_ERR_FORMAT); /* no err buffer */
}

/* ------------------------------------------------------------------------------------------------------------
 * 4. Allocation failures
 */

static void test_alloc_failures(void)
{
    size_t size = 0;
    uint8_t *b = small_file(&size);
    if (!b) return;
    char err[512], path[256];
    tmp_path(path, sizeof path, "nomem");
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(b, 1, size, fp);
        fclose(fp);
    }
    int n_allocs[3] = {-1, -1, -1};
    for (int which = 0; which < 3; which++) {
        for (long k = 0; k < 1000; k++) {
            core_fail_alloc_after(k);
            int rc;
            if (which == 0) {
                struct gguf_file *f = NULL;
                rc = gguf_open_memory(b, size, &f, err, sizeof err);
                core_fail_alloc_after(-1);
                if (!rc)
                    gguf_close(f);
                else
                    CHECK(f == NULL);
            } else if (which == 1) {
                struct gguf_file *f = NULL;
                rc = gguf_open(path, &f, err, sizeof err);
                core_fail_alloc_after(-1);
                if (!rc) gguf_close(f);
            } else {
                banter_gguf *g = NULL;
                rc = banter_gguf_open(path, &g, err, sizeof err);
                core_fail_alloc_after(-1);
                if (!rc)
                    banter_gguf_close(g);
                else
                    CHECK(g == NULL);
            }
            if (rc == 0) {
                n_allocs[which] = (int)k;
                break;
            }
            CHECK_INT_EQ(rc, BANTER_ERR_NOMEM);
            CHECK(strstr(err, "out of memory") != NULL);
        }
        CHECK(n_allocs[which] > 0);
    }
    printf("  allocation failures: open_memory needs %d allocations, open %d, banter_gguf_open %d\n",
           n_allocs[0], n_allocs[1], n_allocs[2]);

    /* The writer: every step may fail; freeing afterwards must release what was made. */
    int n_ok = 0;
    for (long k = 0; k < 1000 && !n_ok; k++) {
        core_fail_alloc_after(k);
        struct gguf_writer *w = gguf_writer_new();
        int rc = w ? build_sample(w, 64) : BANTER_ERR_NOMEM;
        core_fail_alloc_after(-1);
        if (w && rc == 0) n_ok = 1;
        gguf_writer_free(w);
    }
    CHECK(n_ok);
    remove(path);
    free(b);
}

int main(void)
{
    printf("round trip\n");
    test_round_trip();
    printf("real files\n");
    test_real_files();
    printf("truncation and corruption\n");
    test_truncation_and_corruption();
    printf("crafted files\n");
    test_crafted();
    printf("allocation failures\n");
    test_alloc_failures();
    return test_finish("test_gguf");
}
