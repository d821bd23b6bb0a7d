/*
 * forward.c: the batched transformer forward pass shared by Gemma 3 and Llama.
 *
 * One call processes n batch entries that may belong to many sequences. Matrix products see all n tokens at
 * once, so each weight is streamed from memory once per step however many sequences take part; attention is per
 * entry over its own sequence's cache.
 *
 * The whole pass is one pool run: every thread walks the layers and the phases below, taking its share of each
 * (rows of a matrix, entries, attention pairs), with a barrier between phases. This avoids waking the pool a
 * dozen times per layer, which matters for single-token decode steps of a few milliseconds.
 *
 * Per layer, for x [n, n_embd]:
 *   h = rmsnorm(x) * attn_norm
 *   q = h Wq, k = h Wk, v = h Wv                  [n, n_head*hd], [n, n_kv*hd]
 *   (Gemma) q, k = rmsnorm per head * q_norm / k_norm
 *   q, k = rope(pos)                              NEOX halves (Gemma) or adjacent pairs (Llama)
 *   cache[seq][pos] = k, v
 *   a = softmax(q K^T * scale + causal/window mask) V
 *   o = a Wo;  (Gemma) o = rmsnorm(o) * post_attn_norm
 *   x += o
 *   h = rmsnorm(x) * ffn_norm
 *   f = (act(h Wgate) * (h Wup)) Wdown;  (Gemma) f = rmsnorm(f) * post_ffn_norm
 *   x += f
 * Then logits = (rmsnorm(x) * output_norm) Wout, for the entries that want them only.
 */
#include "core/core.h"
#include "core/pool.h"
#include "llm/model.h"
#include "tensor/vec.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

struct fwd {
    struct banter_context *c;
    const banter_batch_entry *e;
    int n;
    int n_out;
    int stop;  /* written by thread 0 before a barrier, read by all after it */
    int phase; /* index of the current matrix phase (each thread keeps its own copy in step) */
};

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    float ss = vec_dot_f32(x, x, n);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void rope_head(float *x, const float *cs, const float *sn, int n_rot, bool neox)
{
    int half = n_rot / 2;
    if (neox) {
        for (int i = 0; i < half; i++) {
            float a = x[i], b = x[i + half];
            x[i] = a * cs[i] - b * sn[i];
            x[i + half] = a * sn[i] + b * cs[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cs[i] - b * sn[i];
            x[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    }
}

/* [lo, hi) of n items for thread ith of nth, in chunks that are multiples of `align`. */
static void split(int64_t n, int64_t align, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t chunks = (n + align - 1) / align;
    int64_t per = chunks / nth, extra = chunks % nth;
    int64_t c0 = ith * per + (ith < extra ? ith : extra);
    int64_t c1 = c0 + per + (ith < extra ? 1 : 0);
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}

/* y_k = x W_k for up to three matrices sharing one input: the input is converted once per activation format
 * (rows split over threads), then each thread computes its slice of every matrix's rows. */
static void matmul_group(struct fwd *f, int ith, int nth, const float *x, int n, int n_mats,
                         const struct tensor_mat *const *w, float *const *y)
{
    struct banter_context *c = f->c;
    struct pool *pool = c->pool;
    uint32_t fmt[3];
    int buf_of[3];
    int n_fmt = 0;
    for (int k = 0; k < n_mats; k++) {
        uint32_t vdt = tensor_traits(w[k]->type)->vec_dot_type;
        int b = -1;
        for (int j = 0; j < n_fmt; j++)
            if (fmt[j] == vdt) b = j;
        if (b < 0) {
            b = n_fmt;
            fmt[n_fmt++] = vdt;
            tensor_act_convert(w[k], x, (size_t)w[k]->n_cols, n,
                               (uint8_t *)c->actq + (size_t)b * c->act_stride, ith, nth);
        }
        buf_of[k] = b;
    }
    pool_barrier(pool);
    /* For a few tokens (decode steps), rows are handed out in chunks from a shared counter rather than split in
     * fixed shares: memory bandwidth is shared and a thread can be slowed or preempted, and fixed shares would
     * leave the others waiting at the barrier. Chunks are large (1/8 of a thread's share, at least 256 KB of
     * weights) because each kernel call starts its weight streams cold and reads several parts of its range at
     * once. For many tokens the kernels rearrange the activations once per call, so each thread gets one
     * contiguous share (one call) instead. */
    int64_t total = 0, chunk[3], n_chunks[3];
    for (int k = 0; k < n_mats; k++) {
        int64_t min_rows = (int64_t)((256 * 1024 + w[k]->row_bytes - 1) / w[k]->row_bytes);
        chunk[k] = w[k]->n_rows / ((int64_t)nth * (n <= 4 ? 8 : 1));
        if (chunk[k] < min_rows) chunk[k] = min_rows;
        chunk[k] = (chunk[k] + 15) & ~(int64_t)15;
        n_chunks[k] = (w[k]->n_rows + chunk[k] - 1) / chunk[k];
        total += n_chunks[k];
    }
    _Atomic long *next = &c->chunk_next[f->phase++];
    for (;;) {
        long idx = atomic_fetch_add_explicit(next, 1, memory_order_relaxed);
        if (idx >= total) break;
        int k = 0;
        while (idx >= n_chunks[k]) idx -= n_chunks[k++];
        int64_t r0 = idx * chunk[k], r1 = r0 + chunk[k] < w[k]->n_rows ? r0 + chunk[k] : w[k]->n_rows;
        tensor_matmul_rows(w[k], (uint8_t *)c->actq + (size_t)buf_of[k] * c->act_stride, n, y[k],
                           (size_t)w[k]->n_rows, r0, r1);
    }
    pool_barrier(pool);
}

static void matmul1(struct fwd *f, int ith, int nth, const float *x, int n, const struct tensor_mat *w, float *y)
{
    const struct tensor_mat *ws[1] = {w};
    float *ys[1] = {y};
    matmul_group(f, ith, nth, x, n, 1, ws, ys);
}

static void attention(struct fwd *f, int il, int ith, int nth)
{
    struct banter_context *c = f->c;
    const struct llm_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, n_kv = hp->n_head_kv, group = hp->n_head / hp->n_head_kv;
    int kv_row = n_kv * hd, q_row = hp->n_head * hd;
    int cap = c->cap[il];
    bool ring = cap < c->n_ctx;
    bool swa = hp->swa_layer[il] && hp->n_swa > 0;
    float *scores = c->scores + (size_t)ith * (size_t)c->scores_stride;
    for (int pair = ith; pair < f->n * hp->n_head; pair += nth) {
        int i = pair / hp->n_head, h = pair % hp->n_head, kh = h / group;
        const banter_batch_entry *e = &f->e[i];
        const struct llm_seq *s = &c->seqs[e->seq];
        int p = e->pos;
        int lo = swa ? p - hp->n_swa + 1 : 0;
        if (lo < 0) lo = 0;
        int n_keys = p - lo + 1;
        const float *K = s->k[il] + (size_t)kh * hd, *V = s->v[il] + (size_t)kh * hd;
        const float *qv = c->q + (size_t)i * q_row + (size_t)h * hd;
        float *out = c->att + (size_t)i * q_row + (size_t)h * hd;
        /* Keys lo..p sit in at most two contiguous runs of cache rows (one when the ring does not wrap). */
        int r0 = ring ? lo % cap : lo;
        int run1 = ring && r0 + n_keys > cap ? cap - r0 : n_keys;
        vec_scores_f32(qv, K + (size_t)r0 * kv_row, kv_row, run1, hd, hp->attn_scale, scores);
        if (run1 < n_keys) vec_scores_f32(qv, K, kv_row, n_keys - run1, hd, hp->attn_scale, scores + run1);
        float mx = -INFINITY;
        for (int j = 0; j < n_keys; j++)
            if (scores[j] > mx) mx = scores[j];
        float sum = 0;
        for (int j = 0; j < n_keys; j++) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n_keys; j++) scores[j] *= inv;
        vec_wsum_f32(V + (size_t)r0 * kv_row, kv_row, scores, run1, hd, out);
        if (run1 < n_keys) {
            float *tmp = scores + n_keys; /* scores_stride leaves a head's room after n_ctx scores */
            vec_wsum_f32(V, kv_row, scores + run1, n_keys - run1, hd, tmp);
            for (int t = 0; t < hd; t++) out[t] += tmp[t];
        }
    }
}

static void fwd_worker(void *arg, int ith, int nth)
{
    struct fwd local = *(struct fwd *)arg; /* per-thread copy for the phase index; stop is read from the shared one */
    struct fwd *shared = arg, *f = &local;
    struct banter_context *c = f->c;
    const struct banter_model *m = c->model;
    const struct llm_hparams *hp = &m->hp;
    const banter_batch_entry *e = f->e;
    struct pool *pool = c->pool;
    int n = f->n;
    int E = hp->n_embd, hd = hp->head_dim, H = hp->n_head, KVH = hp->n_head_kv, F = hp->n_ff;
    int QW = H * hd, KW = KVH * hd, half = hp->n_rot / 2;

    /* Embeddings and this batch's rotary tables, entries split over threads. */
    for (int i = ith; i < n; i += nth) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (size_t)e[i].token * m->tok_embd.row_bytes;
        float *x = c->x + (size_t)i * E;
        tensor_dequantize(m->tok_embd.type, row, x, E);
        if (hp->embd_scale != 1.0f)
            for (int j = 0; j < E; j++) x[j] *= hp->embd_scale;
        for (int j = 0; j < half; j++) {
            double a = e[i].pos * c->inv_freq[j], b = e[i].pos * c->inv_freq_swa[j];
            c->rope_cos[(size_t)i * half + j] = (float)cos(a);
            c->rope_sin[(size_t)i * half + j] = (float)sin(a);
            c->rope_cos_swa[(size_t)i * half + j] = (float)cos(b);
            c->rope_sin_swa[(size_t)i * half + j] = (float)sin(b);
        }
    }
    pool_barrier(pool);

    for (int il = 0; il < hp->n_layer; il++) {
        if (shared->stop) return;
        const struct llm_layer *L = &m->layers[il];
        bool swa = hp->swa_layer[il] && hp->n_swa > 0;
        const float *rc = swa ? c->rope_cos_swa : c->rope_cos, *rs = swa ? c->rope_sin_swa : c->rope_sin;

        for (int i = ith; i < n; i += nth)
            rmsnorm(c->h + (size_t)i * E, c->x + (size_t)i * E, L->attn_norm, E, hp->eps);
        pool_barrier(pool);
        {
            const struct tensor_mat *ws[3] = {&L->wq, &L->wk, &L->wv};
            float *ys[3] = {c->q, c->kb, c->vb};
            matmul_group(f, ith, nth, c->h, n, 3, ws, ys);
        }
        for (int i = ith; i < n; i += nth) {
            for (int h = 0; h < H; h++) {
                float *qh = c->q + (size_t)i * QW + (size_t)h * hd;
                if (hp->gemma_norms) rmsnorm(qh, qh, L->q_norm, hd, hp->eps);
                rope_head(qh, rc + (size_t)i * half, rs + (size_t)i * half, hp->n_rot, hp->rope_neox);
            }
            for (int h = 0; h < KVH; h++) {
                float *kh = c->kb + (size_t)i * KW + (size_t)h * hd;
                if (hp->gemma_norms) rmsnorm(kh, kh, L->k_norm, hd, hp->eps);
                rope_head(kh, rc + (size_t)i * half, rs + (size_t)i * half, hp->n_rot, hp->rope_neox);
            }
            struct llm_seq *s = &c->seqs[e[i].seq];
            int cap = c->cap[il];
            size_t row = (size_t)(cap < c->n_ctx ? e[i].pos % cap : e[i].pos);
            memcpy(s->k[il] + row * KW, c->kb + (size_t)i * KW, (size_t)KW * sizeof(float));
            memcpy(s->v[il] + row * KW, c->vb + (size_t)i * KW, (size_t)KW * sizeof(float));
        }
        pool_barrier(pool);
        attention(f, il, ith, nth);
        pool_barrier(pool);
        matmul1(f, ith, nth, c->att, n, &L->wo, c->o);
        for (int i = ith; i < n; i += nth) {
            float *o = c->o + (size_t)i * E, *x = c->x + (size_t)i * E;
            if (hp->gemma_norms) rmsnorm(o, o, L->post_attn_norm, E, hp->eps);
            for (int j = 0; j < E; j++) x[j] += o[j];
            rmsnorm(c->h + (size_t)i * E, x, L->ffn_norm, E, hp->eps);
        }
        pool_barrier(pool);
        {
            const struct tensor_mat *ws[2] = {&L->w_gate, &L->w_up};
            float *ys[2] = {c->g, c->u};
            matmul_group(f, ith, nth, c->h, n, 2, ws, ys);
        }
        {
            int64_t lo, hi;
            split((int64_t)n * F, 64, ith, nth, &lo, &hi);
            if (hi > lo) {
                if (hp->gelu) vec_gelu_mul_f32(c->g + lo, c->u + lo, (int)(hi - lo));
                else vec_silu_mul_f32(c->g + lo, c->u + lo, (int)(hi - lo));
            }
        }
        pool_barrier(pool);
        matmul1(f, ith, nth, c->g, n, &L->w_down, c->o);
        for (int i = ith; i < n; i += nth) {
            float *o = c->o + (size_t)i * E, *x = c->x + (size_t)i * E;
            if (hp->gemma_norms) rmsnorm(o, o, L->post_ffn_norm, E, hp->eps);
            for (int j = 0; j < E; j++) x[j] += o[j];
        }
        if (ith == 0 && atomic_load_explicit(&c->cancel, memory_order_acquire)) shared->stop = 1;
        pool_barrier(pool);
    }

    /* Output rows only for the entries that asked (out_row numbers them 0..n_out-1 in batch order). */
    for (int i = ith; i < n; i += nth)
        if (c->out_row[i] >= 0)
            rmsnorm(c->h + (size_t)c->out_row[i] * E, c->x + (size_t)i * E, m->output_norm, E, hp->eps);
    pool_barrier(pool);
    if (f->n_out) matmul1(f, ith, nth, c->h, f->n_out, &m->output, c->logits);
    if (f->n_out && hp->logit_softcap > 0) {
        int64_t lo, hi;
        split((int64_t)f->n_out * hp->n_vocab, 1024, ith, nth, &lo, &hi);
        float cap = hp->logit_softcap, inv = 1.0f / cap;
        for (int64_t j = lo; j < hi; j++) c->logits[j] = cap * tanhf(c->logits[j] * inv);
    }
}

int llm_forward(struct banter_context *c, const banter_batch_entry *e, int n)
{
    struct fwd f = {c, e, n, 0, 0, 0};
    memset((void *)c->chunk_next, 0, (size_t)(4 * c->model->hp.n_layer + 1) * sizeof *c->chunk_next);
    for (int i = 0; i < n; i++) f.n_out += c->out_row[i] >= 0;
    pool_run(c->pool, fwd_worker, &f);
    if (f.stop) {
        atomic_store_explicit(&c->cancel, 0, memory_order_release);
        return BANTER_ERR_CANCELLED;
    }
    return BANTER_OK;
}
