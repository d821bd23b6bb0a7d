/*
 * test_model.c: what the engine does with bad models and bad requests: files whose tensors are missing, of the
 * wrong shape or of an unsupported type, unknown architectures, implausible shapes; allocation failures while
 * loading and while creating a context; prompts longer than the context; cancellation; and generation's stop
 * conditions. Each must give a clear status and message and leave no leak (the suite also runs under ASan).
 */
#include "banter.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "tensor/tensor.h"
#include "test.h"

#include <stdlib.h>

static char g_tmp[256];

enum edit { EDIT_NONE, EDIT_DROP_TENSOR, EDIT_SHAPE, EDIT_TYPE, EDIT_ARCH, EDIT_ZERO_EMBD, EDIT_KV_HEADS, EDIT_SOFTCAP };

/* Writes a copy of the fixture at src with one edit applied; returns the path. */
static const char *write_edited(const char *src, enum edit ed, const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", g_tmp, name);
    struct gguf_file *f = NULL;
    char err[256];
    if (gguf_open(src, &f, err, sizeof err) != 0) return NULL;
    struct gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (ed == EDIT_ARCH && !strcmp(key, "general.architecture")) gguf_writer_set_str(w, key, "mamba");
        else if (ed == EDIT_ZERO_EMBD && !strcmp(key, "gemma3.embedding_length")) gguf_writer_set_u32(w, key, 0);
        else if (ed == EDIT_KV_HEADS && !strcmp(key, "gemma3.attention.head_count_kv")) gguf_writer_set_u32(w, key, 3);
        else gguf_writer_copy_kv(w, kv);
    }
    if (ed == EDIT_SOFTCAP) gguf_writer_set_f32(w, "gemma3.final_logit_softcapping", 2.0f);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (ed == EDIT_DROP_TENSOR && !strcmp(tn, "blk.2.ffn_up.weight")) continue;
        if (ed == EDIT_SHAPE && !strcmp(tn, "blk.1.attn_q.weight")) {
            ne[1] = ne[1] / 2;
            gguf_writer_add_tensor(w, tn, t->type, t->n_dims, ne, NULL);
            continue;
        }
        if (ed == EDIT_TYPE && !strcmp(tn, "blk.0.ffn_gate.weight")) {
            gguf_writer_add_tensor(w, tn, TENSOR_Q5_0, t->n_dims, ne, NULL);
            continue;
        }
        gguf_writer_add_tensor(w, tn, t->type, t->n_dims, ne, t->data);
    }
    int rc = gguf_writer_write(w, path, err, sizeof err);
    gguf_writer_free(w);
    gguf_close(f);
    return rc == 0 ? path : NULL;
}

static void expect_load_error(const char *src, enum edit ed, const char *name, banter_status want, const char *msg)
{
    const char *p = write_edited(src, ed, name);
    CHECK(p != NULL);
    if (!p) return;
    banter_model *m = (banter_model *)1;
    char err[512] = "";
    banter_status rc = banter_model_open(p, NULL, &m, err, sizeof err);
    CHECK_INT_EQ(rc, want);
    CHECK(m == NULL);
    if (!strstr(err, msg)) fprintf(stderr, "%s: message '%s' lacks '%s'\n", name, err, msg);
    CHECK(strstr(err, msg) != NULL);
}

static void check_bad_models(const char *fixture)
{
    /* The unedited copy loads: the edits below are what breaks the others. */
    const char *p = write_edited(fixture, EDIT_NONE, "same");
    banter_model *m = NULL;
    CHECK(p && banter_model_open(p, NULL, &m, NULL, 0) == BANTER_OK);
    banter_model_close(m);
    expect_load_error(fixture, EDIT_DROP_TENSOR, "drop", BANTER_ERR_FORMAT, "blk.2.ffn_up.weight");
    expect_load_error(fixture, EDIT_SHAPE, "shape", BANTER_ERR_FORMAT, "blk.1.attn_q.weight");
    expect_load_error(fixture, EDIT_TYPE, "type", BANTER_ERR_UNSUPPORTED, "Q5_0");
    expect_load_error(fixture, EDIT_ARCH, "arch", BANTER_ERR_UNSUPPORTED, "mamba");
    expect_load_error(fixture, EDIT_ZERO_EMBD, "embd", BANTER_ERR_FORMAT, "embedding");
    expect_load_error(fixture, EDIT_KV_HEADS, "kvheads", BANTER_ERR_FORMAT, "kv heads");
}

static void check_alloc_failures(const char *fixture)
{
    int opened = 0;
    for (long k = 0; k < 100000 && !opened; k++) {
        banter_model *m = NULL;
        core_fail_alloc_after(k);
        banter_status rc = banter_model_open(fixture, NULL, &m, NULL, 0);
        core_fail_alloc_after(-1);
        if (rc == BANTER_OK) {
            opened = 1;
            banter_model_close(m);
        } else if (rc != BANTER_ERR_NOMEM) {
            fprintf(stderr, "model open with allocation %ld failing: status %d\n", k, rc);
            CHECK_INT_EQ(rc, BANTER_ERR_NOMEM);
            break;
        }
    }
    CHECK(opened);
    banter_model *m = NULL;
    if (banter_model_open(fixture, NULL, &m, NULL, 0) != BANTER_OK) return;
    opened = 0;
    for (long k = 0; k < 100000 && !opened; k++) {
        banter_context *c = NULL;
        banter_context_config cc = banter_context_config_default();
        cc.n_ctx = 64;
        cc.n_seq = 2;
        cc.n_threads = 2;
        core_fail_alloc_after(k);
        banter_status rc = banter_context_open(m, &cc, &c);
        core_fail_alloc_after(-1);
        if (rc == BANTER_OK) {
            opened = 1;
            banter_context_close(c);
        } else {
            CHECK_INT_EQ(rc, BANTER_ERR_NOMEM);
            CHECK(c == NULL);
            if (rc != BANTER_ERR_NOMEM) break;
        }
    }
    CHECK(opened);
    banter_model_close(m);
}

struct stop_after {
    int n, seen;
};

static int stop_cb(banter_token t, const char *piece, size_t len, void *user)
{
    (void)t;
    (void)piece;
    (void)len;
    struct stop_after *s = user;
    return ++s->seen < s->n;
}

static void check_requests(const char *fixture)
{
    banter_model *m = NULL;
    if (banter_model_open(fixture, NULL, &m, NULL, 0) != BANTER_OK) {
        CHECK(0);
        return;
    }
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = 32;
    cc.n_seq = 2;
    cc.n_batch = 16;
    banter_context *c = NULL;
    CHECK_INT_EQ(banter_context_open(m, &cc, &c), BANTER_OK);
    if (!c) {
        banter_model_close(m);
        return;
    }
    CHECK_INT_EQ(banter_context_n_ctx(c), 32);
    int s;
    CHECK_INT_EQ(banter_seq_open(c, &s), BANTER_OK);
    banter_token toks[40];
    for (int i = 0; i < 40; i++) toks[i] = 10 + i;
    /* Longer than the context: refused whole, the sequence untouched. */
    CHECK_INT_EQ(banter_seq_feed(c, s, toks, 40, NULL), BANTER_ERR_CONTEXT_FULL);
    CHECK_INT_EQ(banter_seq_len(c, s), 0);
    CHECK(strstr(banter_context_error(c), "exceeds") != NULL);
    /* Every sequence taken. */
    int s2, s3;
    CHECK_INT_EQ(banter_seq_open(c, &s2), BANTER_OK);
    CHECK_INT_EQ(banter_seq_open(c, &s3), BANTER_ERR_CONTEXT_FULL);
    banter_seq_close(c, s2);
    /* A cancel request stops the next decode, then clears. */
    banter_context_cancel(c);
    CHECK_INT_EQ(banter_seq_feed(c, s, toks, 4, NULL), BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(banter_seq_len(c, s), 0);
    const float *lg = NULL;
    CHECK_INT_EQ(banter_seq_feed(c, s, toks, 4, &lg), BANTER_OK);
    CHECK(lg != NULL);
    /* Generation: greedy equals argmax stepping; the callback can stop it; a full context ends it cleanly. */
    banter_sampler_config sc = {0};
    banter_sampler *sm = NULL;
    banter_model_desc d;
    banter_model_describe(m, &d);
    CHECK_INT_EQ(banter_sampler_open(&sc, d.n_vocab, &sm), BANTER_OK);
    banter_seq_close(c, s);
    CHECK_INT_EQ(banter_seq_open(c, &s), BANTER_OK);
    struct stop_after st = {3, 0};
    banter_generate_stats gs;
    CHECK_INT_EQ(banter_generate(c, s, toks, 4, sm, 100, stop_cb, &st, &gs), BANTER_OK);
    CHECK_INT_EQ(st.seen, 3);
    CHECK_INT_EQ(gs.n_prompt, 4);
    CHECK_INT_EQ(banter_seq_len(c, s), 4 + 2); /* the token that stopped it is not fed */
    banter_seq_close(c, s);
    CHECK_INT_EQ(banter_seq_open(c, &s), BANTER_OK);
    banter_status rc = banter_generate(c, s, toks, 20, sm, 0, NULL, NULL, &gs);
    CHECK(rc == BANTER_ERR_CONTEXT_FULL || (rc == BANTER_OK && gs.stopped_eog));
    CHECK(banter_seq_len(c, s) <= 32);
    CHECK_INT_EQ(banter_generate(c, s, NULL, 0, sm, 1, NULL, NULL, NULL), BANTER_ERR_INVALID_ARG);
    banter_sampler_close(sm);
    /* API misuse is an error, not a crash. */
    CHECK_INT_EQ(banter_decode(c, NULL, 1), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_seq_truncate(c, 99, 0), BANTER_ERR_INVALID_ARG);
    int dst;
    CHECK_INT_EQ(banter_seq_fork(c, 99, 0, &dst), BANTER_ERR_INVALID_ARG);
    CHECK(banter_logits(c, 1000) == NULL);
    banter_seq_close(c, 1234);
    banter_context_close(c);
    banter_context_close(NULL);
    banter_model_close(m);
    banter_model_close(NULL);
    CHECK_INT_EQ(banter_model_open(NULL, NULL, &m, NULL, 0), BANTER_ERR_INVALID_ARG);
}

/* Last-token logits of a short prompt, or NULL. */
static float *prompt_logits(const char *path, int *n_vocab)
{
    banter_model *m = NULL;
    if (banter_model_open(path, NULL, &m, NULL, 0) != BANTER_OK) return NULL;
    banter_model_desc d;
    banter_model_describe(m, &d);
    banter_context *c = NULL;
    float *out = NULL;
    int s;
    const float *lg = NULL;
    banter_token toks[5] = {2, 300, 301, 302, 303};
    if (banter_context_open(m, NULL, &c) == BANTER_OK && banter_seq_open(c, &s) == BANTER_OK &&
        banter_seq_feed(c, s, toks, 5, &lg) == BANTER_OK && (out = malloc((size_t)d.n_vocab * sizeof *out)))
        memcpy(out, lg, (size_t)d.n_vocab * sizeof *out);
    *n_vocab = d.n_vocab;
    banter_context_close(c);
    banter_model_close(m);
    return out;
}

/* final_logit_softcapping (Gemma 2 style) squashes the final logits to cap * tanh(x / cap). */
static void check_softcap(const char *fixture)
{
    const char *p = write_edited(fixture, EDIT_SOFTCAP, "softcap");
    int nv = 0, nv2 = 0;
    float *plain = prompt_logits(fixture, &nv), *capped = p ? prompt_logits(p, &nv2) : NULL;
    CHECK(plain && capped && nv == nv2);
    if (plain && capped) {
        double worst = 0, mx = 0;
        for (int i = 0; i < nv; i++) {
            double want = 2.0 * tanh(plain[i] / 2.0);
            if (fabs(capped[i] - want) > worst) worst = fabs(capped[i] - want);
            if (fabs(plain[i]) > mx) mx = fabs(plain[i]);
        }
        CHECK(worst < 1e-5);
        CHECK(mx > 2.0); /* the cap actually changed something */
    }
    free(plain);
    free(capped);
}

int main(void)
{
    char fixture[512];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", fixture, sizeof fixture)) return TEST_SKIP_CODE;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/banter-test-model-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    check_bad_models(fixture);
    check_alloc_failures(fixture);
    check_requests(fixture);
    check_softcap(fixture);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish("test_model");
}
