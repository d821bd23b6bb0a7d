/*
 * context.c: contexts, sequences and their KV caches; batch validation; prefill and generation helpers.
 *
 * KV cache layout: for every sequence and layer, K and V as [cap][n_head_kv * head_dim] f32 rows. Global
 * layers have cap = n_ctx and store position p at row p. Sliding-window layers only ever look back n_swa
 * positions, so they keep a ring of cap = n_swa + n_batch + LLM_ROLLBACK_MARGIN rows (row = p % cap): large
 * enough that a whole batch can be written before attention reads it, and that a rollback (barge-in) of up
 * to n_batch + margin positions still finds every key it needs. A deeper rollback re-prefills the kept tokens
 * from the sequence's token history, which is always correct, only slower; it is logged.
 *
 * Everything is allocated at open: caches for n_seq sequences, scratch for n_batch tokens, logits for
 * n_outputs rows. Nothing is allocated per token.
 */
#include "core/core.h"
#include "core/pool.h"
#include "llm/model.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

#define LLM_ROLLBACK_MARGIN 256

static void set_err(struct banter_context *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct banter_context *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

BANTER_API banter_context_config banter_context_config_default(void)
{
    banter_context_config c = {0};
    return c;
}

static void *scratch(struct banter_context *c, size_t n_floats)
{
    size_t bytes;
    if (core_mul_overflow(n_floats, sizeof(float), &bytes)) return NULL;
    void *p = core_alloc_aligned(bytes);
    if (p) c->n_bytes += bytes;
    return p;
}

static size_t max_act_size(const struct banter_model *m, int n_tok, int n_out)
{
    size_t best = tensor_act_size(&m->output, n_out);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct llm_layer *L = &m->layers[il];
        const struct tensor_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            size_t s = tensor_act_size(mats[i], n_tok);
            if (s > best) best = s;
        }
    }
    return best;
}

BANTER_API banter_status banter_context_open(const banter_model *m, const banter_context_config *cfg,
                                             banter_context **out)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    if (!m) return BANTER_ERR_INVALID_ARG;
    banter_context_config def = banter_context_config_default();
    if (!cfg) cfg = &def;
    if (cfg->n_ctx < 0 || cfg->n_seq < 0 || cfg->n_batch < 0 || cfg->n_outputs < 0 || cfg->n_threads < 0 ||
        cfg->n_seq > 4096 || cfg->n_batch > 65536 || cfg->n_ctx > (1 << 24))
        return BANTER_ERR_INVALID_ARG;
    const struct llm_hparams *hp = &m->hp;
    struct banter_context *c = core_calloc(1, sizeof *c);
    if (!c) return BANTER_ERR_NOMEM;
    c->model = m;
    c->n_ctx = cfg->n_ctx ? cfg->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_seq = cfg->n_seq ? cfg->n_seq : 1;
    c->n_batch = cfg->n_batch ? cfg->n_batch : 512;
    c->n_outputs = cfg->n_outputs ? cfg->n_outputs : c->n_seq;
    if (c->n_outputs > c->n_batch) c->n_outputs = c->n_batch;
    int n_threads = cfg->n_threads ? cfg->n_threads : m->n_threads;
    int n_kv = hp->n_head_kv * hp->head_dim, n_q = hp->n_head * hp->head_dim;
    int B = c->n_batch;

    c->pool = pool_open(n_threads);
    c->cap = core_calloc((size_t)hp->n_layer, sizeof *c->cap);
    c->seqs = core_calloc((size_t)c->n_seq, sizeof *c->seqs);
    if (!c->pool || !c->cap || !c->seqs) goto fail;
    for (int il = 0; il < hp->n_layer; il++) {
        long cap = c->n_ctx;
        if (hp->swa_layer[il] && hp->n_swa > 0) {
            long ring = (long)hp->n_swa + B + LLM_ROLLBACK_MARGIN;
            if (ring < cap) cap = ring;
        }
        c->cap[il] = (int)cap;
    }
    for (int s = 0; s < c->n_seq; s++) {
        struct llm_seq *q = &c->seqs[s];
        q->tokens = core_calloc((size_t)c->n_ctx, sizeof *q->tokens);
        q->k = core_calloc((size_t)hp->n_layer, sizeof *q->k);
        q->v = core_calloc((size_t)hp->n_layer, sizeof *q->v);
        if (!q->tokens || !q->k || !q->v) goto fail;
        c->n_bytes += (size_t)c->n_ctx * sizeof *q->tokens;
        for (int il = 0; il < hp->n_layer; il++) {
            size_t n = (size_t)c->cap[il] * (size_t)n_kv;
            q->k[il] = scratch(c, n);
            q->v[il] = scratch(c, n);
            if (!q->k[il] || !q->v[il]) goto fail;
        }
    }
    int wide = n_q > hp->n_embd ? n_q : hp->n_embd;
    int half = hp->n_rot / 2;
    c->x = scratch(c, (size_t)B * hp->n_embd);
    c->h = scratch(c, (size_t)B * wide);
    c->q = scratch(c, (size_t)B * n_q);
    c->kb = scratch(c, (size_t)B * n_kv);
    c->vb = scratch(c, (size_t)B * n_kv);
    c->att = scratch(c, (size_t)B * n_q);
    c->o = scratch(c, (size_t)B * hp->n_embd);
    c->g = scratch(c, (size_t)B * hp->n_ff);
    c->u = scratch(c, (size_t)B * hp->n_ff);
    c->scores_stride = c->n_ctx + hp->head_dim + 16;
    c->scores = scratch(c, (size_t)pool_n_threads(c->pool) * (size_t)c->scores_stride);
    c->logits = scratch(c, (size_t)c->n_outputs * hp->n_vocab);
    c->rope_cos = scratch(c, (size_t)B * half);
    c->rope_sin = scratch(c, (size_t)B * half);
    c->rope_cos_swa = scratch(c, (size_t)B * half);
    c->rope_sin_swa = scratch(c, (size_t)B * half);
    c->out_row = core_calloc((size_t)B, sizeof *c->out_row);
    c->chunk_next = core_calloc((size_t)(4 * hp->n_layer + 1), sizeof *c->chunk_next);
    c->inv_freq = core_calloc((size_t)half, sizeof *c->inv_freq);
    c->inv_freq_swa = core_calloc((size_t)half, sizeof *c->inv_freq_swa);
    c->act_stride = (max_act_size(m, B, c->n_outputs) + 63) & ~(size_t)63;
    c->actq = core_alloc_aligned(3 * c->act_stride);
    c->n_bytes += 3 * c->act_stride;
    if (!c->x || !c->h || !c->q || !c->kb || !c->vb || !c->att || !c->o || !c->g || !c->u || !c->scores ||
        !c->logits || !c->rope_cos || !c->rope_sin || !c->rope_cos_swa || !c->rope_sin_swa || !c->out_row ||
        !c->inv_freq || !c->inv_freq_swa || !c->actq || !c->chunk_next)
        goto fail;
    for (int i = 0; i < half; i++) {
        double e = -2.0 * i / hp->n_rot;
        double div = m->rope_freqs ? (double)m->rope_freqs[i] : 1.0;
        c->inv_freq[i] = pow(hp->rope_base, e) * hp->rope_scale / div;
        c->inv_freq_swa[i] = pow(hp->rope_base_swa, e) / div;
    }
    core_info("context: %d sequences x %d positions, batch %d, %d threads, %s kernels, %.1f MB",
              c->n_seq, c->n_ctx, c->n_batch, pool_n_threads(c->pool), banter_cpu_features(),
              (double)c->n_bytes / 1e6);
    *out = c;
    return BANTER_OK;
fail:
    banter_context_close(c);
    return BANTER_ERR_NOMEM;
}

BANTER_API void banter_context_close(banter_context *c)
{
    if (!c) return;
    const struct llm_hparams *hp = &c->model->hp;
    if (c->seqs) {
        for (int s = 0; s < c->n_seq; s++) {
            struct llm_seq *q = &c->seqs[s];
            for (int il = 0; q->k && il < hp->n_layer; il++) core_free_aligned(q->k[il]);
            for (int il = 0; q->v && il < hp->n_layer; il++) core_free_aligned(q->v[il]);
            core_free(q->k);
            core_free(q->v);
            core_free(q->tokens);
        }
    }
    core_free(c->seqs);
    core_free(c->cap);
    float *bufs[] = {c->x, c->h, c->q, c->kb, c->vb, c->att, c->o, c->g, c->u, c->scores, c->logits,
                     c->rope_cos, c->rope_sin, c->rope_cos_swa, c->rope_sin_swa};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) core_free_aligned(bufs[i]);
    core_free_aligned(c->actq);
    core_free(c->out_row);
    core_free((void *)c->chunk_next);
    core_free(c->inv_freq);
    core_free(c->inv_freq_swa);
    pool_close(c->pool);
    core_free(c);
}

BANTER_API const char *banter_context_error(const banter_context *c)
{
    return c ? c->err : "no context";
}

BANTER_API int banter_context_n_ctx(const banter_context *c)
{
    return c ? c->n_ctx : 0;
}

BANTER_API size_t banter_context_bytes(const banter_context *c)
{
    return c ? c->n_bytes : 0;
}

static bool seq_ok(const struct banter_context *c, int seq)
{
    return c && seq >= 0 && seq < c->n_seq && c->seqs[seq].in_use;
}

BANTER_API banter_status banter_seq_open(banter_context *c, int *seq)
{
    if (!c || !seq) return BANTER_ERR_INVALID_ARG;
    *seq = -1;
    for (int s = 0; s < c->n_seq; s++) {
        if (!c->seqs[s].in_use) {
            c->seqs[s].in_use = true;
            c->seqs[s].len = 0;
            c->seqs[s].swa_lo = 0;
            *seq = s;
            return BANTER_OK;
        }
    }
    set_err(c, "all %d sequences are in use", c->n_seq);
    return BANTER_ERR_CONTEXT_FULL;
}

BANTER_API void banter_seq_close(banter_context *c, int seq)
{
    if (seq_ok(c, seq)) c->seqs[seq].in_use = false;
}

BANTER_API int banter_seq_len(const banter_context *c, int seq)
{
    return seq_ok(c, seq) ? c->seqs[seq].len : 0;
}

/* True if the sliding-window rings of q still hold every key that position n_keep will attend to. */
static bool swa_can_resume(const struct banter_context *c, const struct llm_seq *q, int n_keep)
{
    int n_swa = c->model->hp.n_swa;
    if (n_swa <= 0) return true;
    int need = n_keep - n_swa + 1;
    if (need < 0) need = 0;
    return need >= q->swa_lo;
}

static banter_status refeed(struct banter_context *c, int seq, int n_keep)
{
    struct llm_seq *q = &c->seqs[seq];
    core_info("sequence %d: rolling back past the sliding-window cache, re-prefilling %d tokens", seq, n_keep);
    /* The token history is read while feeding; positions 0..n_keep-1 are rewritten with the same tokens. */
    q->len = 0;
    q->swa_lo = 0;
    banter_batch_entry chunk[64];
    for (int done = 0; done < n_keep;) {
        int m = n_keep - done < 64 ? n_keep - done : 64;
        if (m > c->n_batch) m = c->n_batch;
        for (int i = 0; i < m; i++) {
            chunk[i].token = q->tokens[done + i];
            chunk[i].seq = seq;
            chunk[i].pos = done + i;
            chunk[i].want_logits = false;
        }
        banter_status rc = banter_decode(c, chunk, m);
        if (rc != BANTER_OK) return rc;
        done += m;
    }
    return BANTER_OK;
}

BANTER_API banter_status banter_seq_truncate(banter_context *c, int seq, int n_keep)
{
    if (!seq_ok(c, seq)) return BANTER_ERR_INVALID_ARG;
    struct llm_seq *q = &c->seqs[seq];
    if (n_keep < 0 || n_keep > q->len) {
        set_err(c, "cannot truncate sequence %d of %d positions to %d", seq, q->len, n_keep);
        return BANTER_ERR_INVALID_ARG;
    }
    if (n_keep == q->len) return BANTER_OK;
    if (!swa_can_resume(c, q, n_keep)) return refeed(c, seq, n_keep);
    q->len = n_keep;
    return BANTER_OK;
}

BANTER_API banter_status banter_seq_fork(banter_context *c, int src, int n_keep, int *dst)
{
    if (!dst) return BANTER_ERR_INVALID_ARG;
    *dst = -1;
    if (!seq_ok(c, src)) return BANTER_ERR_INVALID_ARG;
    struct llm_seq *s = &c->seqs[src];
    if (n_keep < 0) n_keep = s->len;
    if (n_keep > s->len) return BANTER_ERR_INVALID_ARG;
    int d;
    banter_status rc = banter_seq_open(c, &d);
    if (rc != BANTER_OK) return rc;
    struct llm_seq *q = &c->seqs[d];
    const struct llm_hparams *hp = &c->model->hp;
    size_t row = (size_t)hp->n_head_kv * hp->head_dim * sizeof(float);
    for (int il = 0; il < hp->n_layer; il++) {
        /* Global layers: the first n_keep rows. Rings: the whole ring (positions are modulo cap). */
        size_t rows = c->cap[il] < c->n_ctx ? (size_t)c->cap[il] : (size_t)n_keep;
        memcpy(q->k[il], s->k[il], rows * row);
        memcpy(q->v[il], s->v[il], rows * row);
    }
    memcpy(q->tokens, s->tokens, (size_t)s->len * sizeof *q->tokens);
    q->len = s->len;
    q->swa_lo = s->swa_lo;
    rc = banter_seq_truncate(c, d, n_keep);
    if (rc != BANTER_OK) {
        banter_seq_close(c, d);
        return rc;
    }
    *dst = d;
    return BANTER_OK;
}

BANTER_API void banter_context_cancel(banter_context *c)
{
    if (c) atomic_store_explicit(&c->cancel, 1, memory_order_release);
}

BANTER_API banter_status banter_decode(banter_context *c, const banter_batch_entry *e, int n)
{
    if (!c || (!e && n)) return BANTER_ERR_INVALID_ARG;
    c->n_last = 0;
    if (n <= 0) return n == 0 ? BANTER_OK : BANTER_ERR_INVALID_ARG;
    if (n > c->n_batch) {
        set_err(c, "batch of %d entries exceeds n_batch %d", n, c->n_batch);
        return BANTER_ERR_INVALID_ARG;
    }
    /* Validate everything before touching any cache: sequences open, positions consecutive per sequence and
     * continuing from its length, tokens in range, room left, output rows available. next[] is kept in the
     * out_row scratch to avoid allocating: first pass uses the seqs' len as the running position. */
    int n_out = 0;
    int n_vocab = c->model->hp.n_vocab;
    for (int i = 0; i < n; i++) {
        if (!seq_ok(c, e[i].seq)) {
            set_err(c, "batch entry %d names sequence %d, which is not open", i, e[i].seq);
            return BANTER_ERR_INVALID_ARG;
        }
        if (e[i].token < 0 || e[i].token >= n_vocab) {
            set_err(c, "batch entry %d has token %d outside the vocabulary (%d)", i, e[i].token, n_vocab);
            return BANTER_ERR_INVALID_ARG;
        }
        if (e[i].want_logits) n_out++;
    }
    if (n_out > c->n_outputs) {
        set_err(c, "batch asks for %d logit rows, the context was opened for %d (n_outputs)", n_out,
                c->n_outputs);
        return BANTER_ERR_INVALID_ARG;
    }
    for (int i = 0; i < n; i++) {
        const struct llm_seq *q = &c->seqs[e[i].seq];
        /* The expected position is len + (earlier entries of the same sequence in this batch). */
        int expect = q->len;
        for (int j = 0; j < i; j++)
            if (e[j].seq == e[i].seq) expect++;
        if (e[i].pos != expect) {
            set_err(c, "batch entry %d: sequence %d expects position %d, got %d", i, e[i].seq, expect, e[i].pos);
            return BANTER_ERR_INVALID_ARG;
        }
        if (e[i].pos >= c->n_ctx) {
            set_err(c, "sequence %d is full (%d positions)", e[i].seq, c->n_ctx);
            return BANTER_ERR_CONTEXT_FULL;
        }
    }
    int row = 0;
    for (int i = 0; i < n; i++) c->out_row[i] = e[i].want_logits ? row++ : -1;
    if (atomic_exchange_explicit(&c->cancel, 0, memory_order_acq_rel)) {
        set_err(c, "cancelled");
        return BANTER_ERR_CANCELLED;
    }
    int rc = llm_forward(c, e, n);
    if (rc != BANTER_OK) {
        if (rc == BANTER_ERR_CANCELLED) set_err(c, "cancelled");
        return (banter_status)rc;
    }
    for (int i = 0; i < n; i++) {
        struct llm_seq *q = &c->seqs[e[i].seq];
        q->tokens[e[i].pos] = e[i].token;
        q->len = e[i].pos + 1;
    }
    /* Rings lose the positions that the newest writes displaced. */
    for (int i = 0; i < n; i++) {
        struct llm_seq *q = &c->seqs[e[i].seq];
        for (int il = 0; il < c->model->hp.n_layer; il++) {
            if (c->cap[il] < c->n_ctx) {
                int lo = q->len - c->cap[il];
                if (lo > q->swa_lo) q->swa_lo = lo;
                break;
            }
        }
    }
    c->n_last = n;
    return BANTER_OK;
}

BANTER_API const float *banter_logits(const banter_context *c, int i)
{
    if (!c || i < 0 || i >= c->n_last || c->out_row[i] < 0) return NULL;
    return c->logits + (size_t)c->out_row[i] * (size_t)c->model->hp.n_vocab;
}

BANTER_API banter_status banter_seq_feed(banter_context *c, int seq, const banter_token *tokens, int n,
                                         const float **logits)
{
    if (logits) *logits = NULL;
    if (!seq_ok(c, seq) || n < 0 || (!tokens && n)) return BANTER_ERR_INVALID_ARG;
    if (c->seqs[seq].len + n > c->n_ctx) {
        set_err(c, "feeding %d tokens to sequence %d (%d held) exceeds the context of %d positions", n, seq,
                c->seqs[seq].len, c->n_ctx);
        return BANTER_ERR_CONTEXT_FULL;
    }
    banter_batch_entry *batch = core_malloc((size_t)(n < c->n_batch ? n : c->n_batch) * sizeof *batch + 1);
    if (!batch) return BANTER_ERR_NOMEM;
    int done = 0;
    banter_status rc = BANTER_OK;
    while (done < n) {
        int m = n - done < c->n_batch ? n - done : c->n_batch;
        int base = c->seqs[seq].len;
        for (int i = 0; i < m; i++) {
            batch[i].token = tokens[done + i];
            batch[i].seq = seq;
            batch[i].pos = base + i;
            batch[i].want_logits = (done + i == n - 1);
        }
        rc = banter_decode(c, batch, m);
        if (rc != BANTER_OK) break;
        done += m;
    }
    core_free(batch);
    if (rc == BANTER_OK && logits && n > 0) *logits = banter_logits(c, c->n_last - 1);
    return rc;
}

BANTER_API banter_status banter_generate(banter_context *c, int seq, const banter_token *prompt, int n_prompt,
                                         banter_sampler *s, int max_tokens, banter_token_fn on_token, void *user,
                                         banter_generate_stats *stats)
{
    banter_generate_stats st = {0};
    if (stats) *stats = st;
    if (!seq_ok(c, seq) || !s || n_prompt < 0 || (n_prompt && !prompt)) return BANTER_ERR_INVALID_ARG;
    if (n_prompt == 0) {
        set_err(c, "generation needs at least one prompt token");
        return BANTER_ERR_INVALID_ARG;
    }
    const struct banter_model *m = c->model;
    double t0 = core_time_ms();
    const float *logits = NULL;
    banter_status rc = banter_seq_feed(c, seq, prompt, n_prompt, &logits);
    st.n_prompt = n_prompt;
    st.prefill_ms = core_time_ms() - t0;
    for (int i = 0; i < n_prompt; i++) banter_sampler_accept(s, prompt[i]);
    double t1 = core_time_ms();
    char piece[256];
    while (rc == BANTER_OK && (max_tokens <= 0 || st.n_generated < max_tokens)) {
        banter_token t = banter_sampler_sample(s, logits);
        banter_sampler_accept(s, t);
        st.n_generated++;
        if (banter_token_is_eog(m, t)) {
            st.stopped_eog = true;
            break;
        }
        int len = banter_token_to_piece(m, t, false, piece, sizeof piece);
        if (len < 0) len = 0;
        if (len > (int)sizeof piece) len = sizeof piece;
        if (on_token && !on_token(t, piece, (size_t)len, user)) break;
        if (c->seqs[seq].len >= c->n_ctx) {
            set_err(c, "sequence %d is full (%d positions)", seq, c->n_ctx);
            rc = BANTER_ERR_CONTEXT_FULL;
            break;
        }
        banter_batch_entry e = {t, seq, c->seqs[seq].len, true};
        rc = banter_decode(c, &e, 1);
        logits = banter_logits(c, 0);
    }
    st.decode_ms = core_time_ms() - t1;
    if (stats) *stats = st;
    return rc;
}
