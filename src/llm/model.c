/*
 * model.c: loading a GGUF language model into a banter_model.
 *
 * The GGUF file stays mapped for the model's lifetime and weight matrices point into the mapping. Only small
 * norm vectors stored in a 16-bit type are converted to f32 once. Every tensor is checked for presence, type
 * and exact shape against the hyperparameters before use, so a model whose metadata and tensors disagree is
 * refused with a message naming the tensor instead of being read out of bounds.
 *
 * Gemma 3 specifics (as llama.cpp defines the architecture):
 * - layer il uses a sliding window iff `il % pattern < pattern - 1` (pattern from
 *   gemma3.attention.sliding_window_pattern, 6 when absent); sliding layers use rope.freq_base_swa (10000) and
 *   no rope scaling, global layers rope.freq_base with the linear scaling factor if present;
 * - attention scale 1/sqrt(head_dim), except the 62-layer 27B model which uses 1/sqrt(n_embd/n_head);
 * - embeddings scaled by sqrt(n_embd); the output matrix is tied to token_embd.
 */
#include "llm/model.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int get_u32(const struct gguf_file *f, const char *arch, const char *suffix, uint32_t *out, bool required,
                   char *err, size_t err_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_u32(f, key, out);
    if (rc == BANTER_ERR_NOT_FOUND && !required) return BANTER_OK;
    if (rc != BANTER_OK) {
        core_errf(err, err_len, "model: metadata key '%s' is %s", key,
                  rc == BANTER_ERR_NOT_FOUND ? "missing" : "not an unsigned integer");
        return rc == BANTER_ERR_NOT_FOUND ? BANTER_ERR_FORMAT : rc;
    }
    return BANTER_OK;
}

static int get_f32(const struct gguf_file *f, const char *arch, const char *suffix, float *out, bool required,
                   char *err, size_t err_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(f, key, out);
    if (rc == BANTER_ERR_NOT_FOUND && !required) return BANTER_OK;
    if (rc != BANTER_OK) {
        core_errf(err, err_len, "model: metadata key '%s' is %s", key,
                  rc == BANTER_ERR_NOT_FOUND ? "missing" : "not a float");
        return BANTER_ERR_FORMAT;
    }
    return BANTER_OK;
}

/* Finds a tensor and checks its shape is exactly [ne0, ne1] (ne1 = 0 for vectors). */
static int find_tensor(const struct banter_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                       const struct gguf_tensor **out, char *err, size_t err_len)
{
    *out = NULL;
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (!required) return BANTER_OK;
        core_errf(err, err_len, "model: tensor '%s' is missing", name);
        return BANTER_ERR_FORMAT;
    }
    uint32_t want_dims = ne1 ? 2 : 1;
    bool ok = t->ne[0] == ne0 && (ne1 ? t->ne[1] == ne1 : t->ne[1] == 1) && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok || t->n_dims > want_dims) {
        core_errf(err, err_len, "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                  name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                  (long long)ne0, (long long)(ne1 ? ne1 : 1));
        return BANTER_ERR_FORMAT;
    }
    const struct tensor_traits *tr = tensor_traits(t->type);
    if (!tr || !tr->supported) {
        core_errf(err, err_len, "model: tensor '%s' has type %s, which Banter cannot compute with yet "
                                "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)",
                  name, tensor_type_name(t->type));
        return BANTER_ERR_UNSUPPORTED;
    }
    *out = t;
    return BANTER_OK;
}

static int load_mat(struct banter_model *m, const char *name, int64_t n_cols, int64_t n_rows, bool required,
                    struct tensor_mat *mat, char *err, size_t err_len)
{
    const struct gguf_tensor *t;
    int rc = find_tensor(m, name, n_cols, n_rows, required, &t, err, err_len);
    if (rc != BANTER_OK || !t) return rc;
    mat->type = t->type;
    mat->n_cols = n_cols;
    mat->n_rows = n_rows;
    mat->row_bytes = tensor_row_size(t->type, n_cols);
    mat->data = t->data;
    if (mat->row_bytes == 0) {
        core_errf(err, err_len, "model: tensor '%s' row of %lld values does not fit type %s blocks", name,
                  (long long)n_cols, tensor_type_name(t->type));
        return BANTER_ERR_FORMAT;
    }
    return BANTER_OK;
}

/* A vector of n floats: the mapped data when stored as F32, else a converted copy owned by the model. */
static int load_vec(struct banter_model *m, const char *name, int64_t n, bool required, const float **out,
                    char *err, size_t err_len)
{
    *out = NULL;
    const struct gguf_tensor *t;
    int rc = find_tensor(m, name, n, 0, required, &t, err, err_len);
    if (rc != BANTER_OK || !t) return rc;
    if (t->type == TENSOR_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return BANTER_OK;
    }
    float *copy = core_alloc_aligned((size_t)n * sizeof(float));
    if (!copy) {
        core_errf(err, err_len, "model: out of memory converting '%s'", name);
        return BANTER_ERR_NOMEM;
    }
    float **grown = core_realloc(m->owned_f32, (size_t)(m->n_owned_f32 + 1) * sizeof *grown);
    if (!grown) {
        core_free_aligned(copy);
        core_errf(err, err_len, "model: out of memory converting '%s'", name);
        return BANTER_ERR_NOMEM;
    }
    m->owned_f32 = grown;
    m->owned_f32[m->n_owned_f32++] = copy;
    if (t->type == TENSOR_F32) memcpy(copy, t->data, (size_t)n * sizeof(float));
    else tensor_dequantize(t->type, t->data, copy, n);
    *out = copy;
    return BANTER_OK;
}

static int load_hparams(struct banter_model *m, char *err, size_t err_len)
{
    struct llm_hparams *hp = &m->hp;
    const char *a = m->arch_name;
    const struct gguf_file *f = m->gguf;
    uint32_t n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_head_kv = 0, key_len = 0, val_len = 0, ctx = 0;
    uint32_t n_rot = 0, n_swa = 0, pattern = 0;
    int rc;
    if ((rc = get_u32(f, a, "embedding_length", &n_embd, true, err, err_len)) ||
        (rc = get_u32(f, a, "block_count", &n_layer, true, err, err_len)) ||
        (rc = get_u32(f, a, "feed_forward_length", &n_ff, true, err, err_len)) ||
        (rc = get_u32(f, a, "attention.head_count", &n_head, true, err, err_len)) ||
        (rc = get_u32(f, a, "context_length", &ctx, false, err, err_len)))
        return rc;
    n_head_kv = n_head;
    if ((rc = get_u32(f, a, "attention.head_count_kv", &n_head_kv, false, err, err_len)) ||
        (rc = get_u32(f, a, "attention.key_length", &key_len, false, err, err_len)) ||
        (rc = get_u32(f, a, "attention.value_length", &val_len, false, err, err_len)) ||
        (rc = get_u32(f, a, "rope.dimension_count", &n_rot, false, err, err_len)))
        return rc;
    if (n_embd == 0 || n_embd > 65536 || n_layer == 0 || n_layer > LLM_MAX_LAYERS || n_ff == 0 || n_ff > 1 << 20 ||
        n_head == 0 || n_head > 1024 || n_head_kv == 0 || n_head % n_head_kv != 0) {
        core_errf(err, err_len,
                  "model: implausible shape (embedding %u, layers %u, ffn %u, heads %u, kv heads %u)", n_embd,
                  n_layer, n_ff, n_head, n_head_kv);
        return BANTER_ERR_FORMAT;
    }
    if (key_len == 0) key_len = n_embd / n_head;
    if (val_len == 0) val_len = key_len;
    if (key_len != val_len || key_len == 0 || key_len > 1024 || key_len % 2) {
        core_errf(err, err_len, "model: unsupported head sizes (key %u, value %u)", key_len, val_len);
        return BANTER_ERR_UNSUPPORTED;
    }
    if (n_rot == 0) n_rot = key_len;
    if (n_rot > key_len || n_rot % 2) {
        core_errf(err, err_len, "model: rope.dimension_count %u does not fit head size %u", n_rot, key_len);
        return BANTER_ERR_FORMAT;
    }
    hp->n_embd = (int)n_embd;
    hp->n_layer = (int)n_layer;
    hp->n_ff = (int)n_ff;
    hp->n_head = (int)n_head;
    hp->n_head_kv = (int)n_head_kv;
    hp->head_dim = (int)key_len;
    hp->n_rot = (int)n_rot;
    hp->n_ctx_train = ctx ? (int)(ctx > (1u << 24) ? (1u << 24) : ctx) : 4096;
    hp->eps = 1e-6f;
    hp->rope_base = 10000.0f;
    hp->rope_scale = 1.0f;
    if ((rc = get_f32(f, a, "attention.layer_norm_rms_epsilon", &hp->eps, false, err, err_len)) ||
        (rc = get_f32(f, a, "rope.freq_base", &hp->rope_base, false, err, err_len)))
        return rc;
    float scaling = 0;
    if ((rc = get_f32(f, a, "rope.scaling.factor", &scaling, false, err, err_len))) return rc;
    char stype[32] = "";
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_get_str(f, key, stype, sizeof stype);
    if (scaling > 0 && strcmp(stype, "none") != 0) {
        if (stype[0] && strcmp(stype, "linear") != 0) {
            core_errf(err, err_len, "model: rope scaling type '%s' is not supported", stype);
            return BANTER_ERR_UNSUPPORTED;
        }
        hp->rope_scale = 1.0f / scaling;
    }
    if ((rc = get_f32(f, a, "final_logit_softcapping", &hp->logit_softcap, false, err, err_len))) return rc;
    if (!(hp->logit_softcap >= 0) || !isfinite(hp->logit_softcap)) {
        core_errf(err, err_len, "model: implausible final_logit_softcapping %g", hp->logit_softcap);
        return BANTER_ERR_FORMAT;
    }
    if (!(hp->eps > 0 && hp->eps < 1) || !(hp->rope_base > 0) || !isfinite(hp->rope_base)) {
        core_errf(err, err_len, "model: implausible norm epsilon %g or rope base %g", hp->eps, hp->rope_base);
        return BANTER_ERR_FORMAT;
    }

    if (m->arch == LLM_ARCH_GEMMA3) {
        hp->rope_neox = true;
        hp->gemma_norms = true;
        hp->gelu = true;
        hp->embd_scale = sqrtf((float)n_embd);
        hp->attn_scale = n_layer == 62 ? 1.0f / sqrtf((float)(n_embd / n_head)) : 1.0f / sqrtf((float)key_len);
        if ((rc = get_u32(f, a, "attention.sliding_window", &n_swa, false, err, err_len)) ||
            (rc = get_u32(f, a, "attention.sliding_window_pattern", &pattern, false, err, err_len)))
            return rc;
        hp->rope_base_swa = 10000.0f;
        if ((rc = get_f32(f, a, "rope.freq_base_swa", &hp->rope_base_swa, false, err, err_len))) return rc;
        if (n_swa > 0) {
            if (pattern == 0) pattern = 6;
            hp->n_swa = (int)n_swa;
            for (uint32_t il = 0; il < n_layer; il++) hp->swa_layer[il] = il % pattern < pattern - 1;
        }
    } else {
        hp->rope_neox = false;
        hp->gemma_norms = false;
        hp->gelu = false;
        hp->embd_scale = 1.0f;
        hp->attn_scale = 1.0f / sqrtf((float)key_len);
        hp->rope_base_swa = hp->rope_base;
    }
    return BANTER_OK;
}

static int load_weights(struct banter_model *m, char *err, size_t err_len)
{
    const struct llm_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff, V = hp->n_vocab;
    int rc;
    if ((rc = load_mat(m, "token_embd.weight", E, V, true, &m->tok_embd, err, err_len)) ||
        (rc = load_vec(m, "output_norm.weight", E, true, &m->output_norm, err, err_len)))
        return rc;
    m->output = m->tok_embd;
    if ((rc = load_mat(m, "output.weight", E, V, false, &m->output, err, err_len))) return rc;
    if (!hp->rope_neox && (rc = load_vec(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs, err,
                                         err_len)))
        return rc;
    m->layers = core_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        core_errf(err, err_len, "model: out of memory");
        return BANTER_ERR_NOMEM;
    }
    for (int il = 0; il < hp->n_layer; il++) {
        struct llm_layer *L = &m->layers[il];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s.weight", il, s), n)
        if ((rc = load_vec(m, NAME("attn_norm"), E, true, &L->attn_norm, err, err_len)) ||
            (rc = load_mat(m, NAME("attn_q"), E, Q, true, &L->wq, err, err_len)) ||
            (rc = load_mat(m, NAME("attn_k"), E, KV, true, &L->wk, err, err_len)) ||
            (rc = load_mat(m, NAME("attn_v"), E, KV, true, &L->wv, err, err_len)) ||
            (rc = load_mat(m, NAME("attn_output"), Q, E, true, &L->wo, err, err_len)) ||
            (rc = load_vec(m, NAME("ffn_norm"), E, true, &L->ffn_norm, err, err_len)) ||
            (rc = load_mat(m, NAME("ffn_gate"), E, F, true, &L->w_gate, err, err_len)) ||
            (rc = load_mat(m, NAME("ffn_up"), E, F, true, &L->w_up, err, err_len)) ||
            (rc = load_mat(m, NAME("ffn_down"), F, E, true, &L->w_down, err, err_len)))
            return rc;
        if (hp->gemma_norms) {
            if ((rc = load_vec(m, NAME("attn_q_norm"), hp->head_dim, true, &L->q_norm, err, err_len)) ||
                (rc = load_vec(m, NAME("attn_k_norm"), hp->head_dim, true, &L->k_norm, err, err_len)) ||
                (rc = load_vec(m, NAME("post_attention_norm"), E, true, &L->post_attn_norm, err, err_len)) ||
                (rc = load_vec(m, NAME("post_ffw_norm"), E, true, &L->post_ffn_norm, err, err_len)))
                return rc;
        }
#undef NAME
    }
    /* Statistics for describe(): parameters, bytes, and the type holding the most bytes. */
    uint64_t bytes_by_type[TENSOR_N_TYPES] = {0};
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct gguf_tensor *t = &m->gguf->tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->n_bytes += t->n_bytes;
        if (t->type < TENSOR_N_TYPES) bytes_by_type[t->type] += t->n_bytes;
    }
    for (uint32_t t = 0; t < TENSOR_N_TYPES; t++)
        if (bytes_by_type[t] > bytes_by_type[m->main_type]) m->main_type = t;
    return BANTER_OK;
}

BANTER_API banter_model_config banter_model_config_default(void)
{
    banter_model_config c = {0};
    return c;
}

BANTER_API banter_status banter_model_open(const char *path, const banter_model_config *cfg, banter_model **out,
                                           char *err, size_t err_len)
{
    char local_err[256];
    if (!err) {
        err = local_err;
        err_len = sizeof local_err;
    }
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    if (!path) {
        core_errf(err, err_len, "model: no path given");
        return BANTER_ERR_INVALID_ARG;
    }
    banter_model_config def = banter_model_config_default();
    if (!cfg) cfg = &def;
    int64_t t0 = core_time_ns();
    struct banter_model *m = core_calloc(1, sizeof *m);
    if (!m) {
        core_errf(err, err_len, "model: out of memory");
        return BANTER_ERR_NOMEM;
    }
    int rc = gguf_open(path, &m->gguf, err, err_len);
    if (rc != BANTER_OK) goto fail;
    rc = gguf_get_str(m->gguf, "general.architecture", m->arch_name, sizeof m->arch_name);
    if (rc != BANTER_OK) {
        core_errf(err, err_len, "model: '%s' has no general.architecture; is it a language model GGUF?", path);
        rc = BANTER_ERR_FORMAT;
        goto fail;
    }
    if (!strcmp(m->arch_name, "gemma3")) m->arch = LLM_ARCH_GEMMA3;
    else if (!strcmp(m->arch_name, "llama")) m->arch = LLM_ARCH_LLAMA;
    else {
        core_errf(err, err_len, "model: architecture '%s' is not supported (supported: gemma3, llama)",
                  m->arch_name);
        rc = BANTER_ERR_UNSUPPORTED;
        goto fail;
    }
    gguf_get_str(m->gguf, "general.name", m->name, sizeof m->name);
    if ((rc = load_hparams(m, err, err_len)) != BANTER_OK) goto fail;
    if ((rc = llm_vocab_load(m->gguf, &m->vocab, err, err_len)) != BANTER_OK) goto fail;
    m->hp.n_vocab = llm_vocab_n_tokens(m->vocab);
    if ((rc = load_weights(m, err, err_len)) != BANTER_OK) goto fail;
    m->chat = llm_chat_detect(m->gguf, m->arch_name);
    m->n_threads = cfg->n_threads > 0 ? cfg->n_threads : core_n_cpus();
    core_info("loaded %s model '%s' (%d layers, %d wide, vocabulary %d, %s weights, %.1f MB) in %.0f ms",
              m->arch_name, m->name, m->hp.n_layer, m->hp.n_embd, m->hp.n_vocab, tensor_type_name(m->main_type),
              (double)m->n_bytes / 1e6, (double)(core_time_ns() - t0) / 1e6);
    *out = m;
    return BANTER_OK;
fail:
    banter_model_close(m);
    return rc;
}

BANTER_API void banter_model_close(banter_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned_f32; i++) core_free_aligned(m->owned_f32[i]);
    core_free(m->owned_f32);
    core_free(m->layers);
    llm_vocab_free(m->vocab);
    gguf_close(m->gguf);
    core_free(m);
}

BANTER_API void banter_model_describe(const banter_model *m, banter_model_desc *d)
{
    memset(d, 0, sizeof *d);
    d->arch = m->arch_name;
    d->name = m->name;
    d->chat_format = llm_chat_format_name(m->chat);
    d->n_vocab = m->hp.n_vocab;
    d->n_embd = m->hp.n_embd;
    d->n_layer = m->hp.n_layer;
    d->n_head = m->hp.n_head;
    d->n_head_kv = m->hp.n_head_kv;
    d->head_dim = m->hp.head_dim;
    d->n_ff = m->hp.n_ff;
    d->n_ctx_train = m->hp.n_ctx_train;
    d->n_params = m->n_params;
    d->n_bytes = m->n_bytes;
    d->weight_type = tensor_type_name(m->main_type);
    d->bos = llm_vocab_bos(m->vocab);
    d->eos = llm_vocab_eos(m->vocab);
    d->eot = llm_vocab_eot(m->vocab);
}

BANTER_API banter_status banter_tokenize(const banter_model *m, const char *text, size_t len, bool add_bos,
                                         bool parse_special, banter_token *tokens, size_t n_max, size_t *n_out)
{
    if (!m || (!text && len) || !n_out || (!tokens && n_max)) return BANTER_ERR_INVALID_ARG;
    return llm_tokenize(m->vocab, text ? text : "", len, add_bos, parse_special, tokens, n_max, n_out);
}

BANTER_API int banter_token_to_piece(const banter_model *m, banter_token t, bool render_special, char *buf,
                                     size_t buf_len)
{
    if (!m) return -1;
    return llm_token_to_piece(m->vocab, t, render_special, buf, buf_len);
}

BANTER_API bool banter_token_is_eog(const banter_model *m, banter_token t)
{
    return m && llm_token_is_eog(m->vocab, t);
}

BANTER_API long banter_chat_render(const banter_model *m, const banter_chat_message *msgs, size_t n_msgs,
                                   bool add_assistant_prompt, char *buf, size_t buf_len)
{
    if (!m || (!msgs && n_msgs)) return -1;
    return llm_chat_render(m->chat, m->vocab, msgs, n_msgs, add_assistant_prompt, buf, buf_len);
}
