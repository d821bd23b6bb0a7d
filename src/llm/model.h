/*
 * model.h: a loaded language model (struct banter_model) and the batched forward pass over many sequences.
 *
 * Architectures are described by hyperparameters plus a few switches rather than one code path each: Gemma 3
 * and Llama differ in norms (Gemma adds Q/K norms and post-attention/post-FFN norms), activation (GELU vs SiLU),
 * embedding scale, RoPE layout (NEOX halves vs interleaved pairs) and sliding-window layers. model.c reads those
 * from GGUF exactly as llama.cpp's converter writes them; forward.c runs them.
 *
 * Norm weights are used as stored: llama.cpp's Gemma converter already adds Gemma's "+1" to every norm weight,
 * so the GGUF value is the multiplier.
 */
#ifndef BANTER_LLM_MODEL_H
#define BANTER_LLM_MODEL_H

#include "banter.h"
#include "gguf/gguf.h"
#include "llm/chat.h"
#include "llm/vocab.h"
#include "tensor/tensor.h"

#include <stdbool.h>
#include <stdint.h>

#define LLM_MAX_LAYERS 256

enum llm_arch {
    LLM_ARCH_GEMMA3,
    LLM_ARCH_LLAMA,
};

struct llm_hparams {
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;   /* key and value head size (they are equal for supported models) */
    int n_ff;
    int n_ctx_train;
    int n_rot;      /* rotary dimensions (<= head_dim) */
    float eps;
    float rope_base;
    float rope_scale;     /* position multiplier of global layers (1 / linear scaling factor) */
    float rope_base_swa;
    int n_swa;            /* sliding window size, 0 = none */
    bool swa_layer[LLM_MAX_LAYERS];
    bool rope_neox;       /* rotate halves (Gemma) instead of adjacent pairs (Llama) */
    bool gemma_norms;     /* Q/K norms and post-attention / post-FFN norms */
    bool gelu;            /* GELU (tanh) gate activation instead of SiLU */
    float embd_scale;     /* multiplies token embeddings (sqrt(n_embd) for Gemma, 1 otherwise) */
    float attn_scale;     /* multiplies Q·K */
    float logit_softcap;  /* final logits become cap * tanh(logits / cap) when > 0 (final_logit_softcapping) */
};

struct llm_layer {
    const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    struct tensor_mat wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct banter_model {
    enum llm_arch arch;
    char arch_name[32];
    char name[128];
    struct llm_hparams hp;
    struct gguf_file *gguf;
    struct llm_vocab *vocab;
    enum llm_chat_format chat;
    struct llm_layer *layers;
    struct tensor_mat tok_embd;
    struct tensor_mat output;   /* tok_embd when tied */
    const float *output_norm;
    const float *rope_freqs;    /* optional per-dimension divisors [n_rot/2] (Llama 3) */
    float **owned_f32;          /* norm weights converted to f32 at load (when not stored as F32) */
    int n_owned_f32;
    int n_threads;
    uint64_t n_params, n_bytes;
    uint32_t main_type;
};

/* ------------------------------------------------------------------------------------------------------------
 * Contexts (context.c): sequences with their KV caches, and the forward pass (forward.c).
 */
struct pool;

struct llm_seq {
    bool in_use;
    int len;           /* positions held */
    int swa_lo;        /* oldest position still held by the sliding-window rings */
    int32_t *tokens;   /* [n_ctx] the tokens at each position, kept for re-prefill after deep rollbacks */
    float **k, **v;    /* per layer: [cap_l][n_head_kv*head_dim] */
};

struct banter_context {
    const struct banter_model *model;
    struct pool *pool;
    int n_ctx, n_seq, n_batch, n_outputs;
    int *cap;                 /* per layer: cache rows (n_ctx for global layers, a ring for sliding ones) */
    struct llm_seq *seqs;
    size_t n_bytes;
    _Atomic int cancel;
    char err[256];

    /* Scratch for one forward pass, sized for n_batch tokens. */
    float *x;       /* [n_batch][n_embd] residual stream */
    float *h;       /* [n_batch][max(n_embd, n_head*head_dim)] normed input / attention output */
    float *q;       /* [n_batch][n_head*head_dim] */
    float *kb, *vb; /* [n_batch][n_head_kv*head_dim] */
    float *att;     /* [n_batch][n_head*head_dim] */
    float *o;       /* [n_batch][n_embd] */
    float *g, *u;   /* [n_batch][n_ff] */
    float *scores;  /* [n_threads][scores_stride]: attention weights plus a head of scratch */
    int scores_stride;
    void *actq;     /* quantized activations: 3 buffers of act_stride bytes (one per activation format) */
    size_t act_stride;
    float *logits;  /* [n_outputs][n_vocab] */
    int *out_row;   /* [n_batch] batch entry -> logits row, or -1 */
    int n_last;     /* entries of the last decode */
    _Atomic long *chunk_next; /* [4 * n_layer + 1] row-chunk counters of the forward pass's matrix phases */
    float *rope_cos, *rope_sin; /* [n_batch][n_rot/2] per-batch tables, global and swa */
    float *rope_cos_swa, *rope_sin_swa;
    double *inv_freq, *inv_freq_swa; /* [n_rot/2] angle per position of each rotary pair */
};

/* Runs the forward pass for a validated batch: writes K/V at each entry's position and logits for the rows that
 * want them (out_row set). Does not change sequence lengths. Returns BANTER_ERR_CANCELLED if cancelled. */
int llm_forward(struct banter_context *c, const banter_batch_entry *e, int n);

#endif
