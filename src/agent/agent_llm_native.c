/*
 * agent_llm_native.c: the agent's language model in this process: a GGUF model, one context, one sequence per
 * conversation.
 *
 * The cache of a conversation is described by the exact tokens it holds (conv->cached) and the text they stand
 * for (conv->ctext, with each token's end in conv->cend). Each prepare or reply renders the message list with
 * the model's chat format, keeps the cached tokens whose text is a prefix of the rendered text (truncating the
 * sequence after them), tokenizes only the rest and feeds it. Matching text rather than tokens matters for the
 * model's own replies: the tokens it generated are rarely the ones the tokenizer would choose for the same
 * text, and they are kept as generated (the chat formats trim message text, so the reply's leading whitespace
 * is left out of ctext). A new turn therefore costs only its own tokens, and a reply cut at barge-in keeps
 * exactly the tokens of the words that were heard.
 *
 * The last prompt token is always fed by reply, never left cached by prepare, because the first sampled token
 * needs its logits: a prepared prompt costs one single-token step at the endpoint instead of the whole delta.
 *
 * Context overflow: when the prompt plus max_tokens does not fit n_ctx, the oldest messages after a leading
 * system message are left out, two at a time (a user turn and its reply), until the prompt fills at most half of
 * n_ctx. The number left out (conv->n_skip) only grows, so the rendered prefix stays stable between overflows.
 *
 * Sharing: all conversations share one banter_context, and a forward pass runs over one conversation at a time
 * under backend->lock (interleaved, not batched: batching the sessions' steps into one pass is the scheduler's
 * job). backend->owner records which conversation's pass is running so cancel can stop exactly that pass.
 */
#include "agent/agent_llm.h"
#include "core/core.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct native {
    banter_model *model;
    banter_context *ctx;
    int n_ctx;
    int n_seq;
    banter_token bos; /* the model's BOS (-1 when none): added by the tokenizer, absent from the text */
    char desc[256];
    pthread_mutex_t lock;       /* held for each forward pass and sequence operation */
    pthread_mutex_t owner_lock; /* guards owner */
    struct conv *owner;         /* the conversation whose forward pass is running, or NULL */
};

struct conv {
    struct native *nat;
    struct agent_reply_config cfg;
    banter_sampler *sampler;
    int seq;
    atomic_bool cancel;   /* set by cancel, cleared at the start of each call */
    banter_token *cached; /* [n_cached]: the tokens the sequence's cache holds */
    size_t *cend;         /* [n_cached]: where each one's text ends in ctext */
    int n_cached, cap_cached;
    char *ctext;          /* [ctext_len]: the text the cached tokens stand for */
    size_t ctext_len, cap_ctext;
    banter_token *toks; /* [cap_toks]: scratch for tokenized text */
    size_t *tend;       /* [cap_toks]: each one's end in text */
    int cap_toks;
    char *text; /* [cap_text]: the rendered prompt */
    size_t text_len, cap_text;
    size_t n_skip; /* messages after the system message left out (context overflow) */
};

#include <stdarg.h>

static void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static void native_close(void *state)
{
    struct native *nat = state;
    if (!nat) return;
    banter_context_close(nat->ctx);
    banter_model_close(nat->model);
    pthread_mutex_destroy(&nat->lock);
    pthread_mutex_destroy(&nat->owner_lock);
    free(nat);
}

static const char *native_describe(void *state)
{
    return ((struct native *)state)->desc;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return BANTER_ERR_NOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int conv_open(void *state, const struct agent_reply_config *cfg, void **out, char *err, size_t err_len)
{
    struct native *nat = state;
    *out = NULL;
    struct conv *c = calloc(1, sizeof *c);
    if (!c) return BANTER_ERR_NOMEM;
    c->nat = nat;
    if (cfg) c->cfg = *cfg;
    else c->cfg.sampler = banter_sampler_config_default();
    if (c->cfg.max_tokens <= 0) c->cfg.max_tokens = 256;
    banter_model_desc d;
    banter_model_describe(nat->model, &d);
    int rc = banter_sampler_open(&c->cfg.sampler, d.n_vocab, &c->sampler);
    if (rc) {
        set_err(err, err_len, "invalid sampler settings");
        free(c);
        return rc;
    }
    pthread_mutex_lock(&nat->lock);
    rc = banter_seq_open(nat->ctx, &c->seq);
    pthread_mutex_unlock(&nat->lock);
    if (rc) {
        set_err(err, err_len, "all %d conversations of the language model are in use", nat->n_seq);
        banter_sampler_close(c->sampler);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void conv_close(void *p)
{
    struct conv *c = p;
    if (!c) return;
    pthread_mutex_lock(&c->nat->lock);
    banter_seq_close(c->nat->ctx, c->seq);
    pthread_mutex_unlock(&c->nat->lock);
    banter_sampler_close(c->sampler);
    free(c->cached);
    free(c->cend);
    free(c->ctext);
    free(c->toks);
    free(c->tend);
    free(c->text);
    free(c);
}

static void conv_cancel(void *p)
{
    struct conv *c = p;
    atomic_store_explicit(&c->cancel, true, memory_order_release);
    pthread_mutex_lock(&c->nat->owner_lock);
    if (c->nat->owner == c) banter_context_cancel(c->nat->ctx);
    pthread_mutex_unlock(&c->nat->owner_lock);
}

static int conv_cached(void *p)
{
    return ((struct conv *)p)->n_cached;
}

const banter_token *agent_llm_native_tokens(void *conv, int *n)
{
    struct conv *c = conv;
    *n = c->n_cached;
    return c->cached;
}

static bool cancelled(struct conv *c)
{
    return atomic_load_explicit(&c->cancel, memory_order_acquire);
}

/* Runs one forward pass of n entries for c under the backend lock. A cancel meant for another conversation can
 * leave the context's flag set after that conversation's pass ended; such a stray cancel fails a pass without
 * changing anything, so it is retried. */
static int decode(struct conv *c, const banter_batch_entry *e, int n)
{
    struct native *nat = c->nat;
    for (;;) {
        if (cancelled(c)) return BANTER_ERR_CANCELLED;
        pthread_mutex_lock(&nat->owner_lock);
        nat->owner = c;
        pthread_mutex_unlock(&nat->owner_lock);
        int rc = banter_decode(nat->ctx, e, n);
        pthread_mutex_lock(&nat->owner_lock);
        nat->owner = NULL;
        pthread_mutex_unlock(&nat->owner_lock);
        if (rc != BANTER_ERR_CANCELLED || cancelled(c)) return rc;
    }
}

/* Makes room for n tokens (and their ends) in the scratch arrays. */
static int grow_toks(struct conv *c, size_t n)
{
    size_t cap = (size_t)c->cap_toks;
    void *p = c->toks;
    if (grow(&p, &cap, n, sizeof(banter_token))) return BANTER_ERR_NOMEM;
    c->toks = p;
    cap = (size_t)c->cap_toks;
    p = c->tend;
    if (grow(&p, &cap, n, sizeof(size_t))) return BANTER_ERR_NOMEM;
    c->tend = p;
    c->cap_toks = (int)cap;
    return 0;
}

/* Records a token the cache now holds, whose text is piece[0, len). */
static int append_cached(struct conv *c, banter_token t, const char *piece, size_t len)
{
    size_t cap = (size_t)c->cap_cached;
    void *p = c->cached;
    if (grow(&p, &cap, (size_t)c->n_cached + 1, sizeof(banter_token))) return BANTER_ERR_NOMEM;
    c->cached = p;
    cap = (size_t)c->cap_cached;
    p = c->cend;
    if (grow(&p, &cap, (size_t)c->n_cached + 1, sizeof(size_t))) return BANTER_ERR_NOMEM;
    c->cend = p;
    c->cap_cached = (int)cap;
    p = c->ctext;
    if (grow(&p, &c->cap_ctext, c->ctext_len + len + 1, 1)) return BANTER_ERR_NOMEM;
    c->ctext = p;
    memcpy(c->ctext + c->ctext_len, piece, len);
    c->ctext_len += len;
    c->cached[c->n_cached] = t;
    c->cend[c->n_cached] = c->ctext_len;
    c->n_cached++;
    return 0;
}

/* Tokenizes text[0, len) into c->toks with each token's end in c->tend; returns the count or an error. Token
 * ends come from the tokens' own texts; where those stop adding up to the text (a tokenizer that normalizes),
 * the tokens from there on get no end of their own (SIZE_MAX) but the last, which ends the text. */
static int tokenize_span(struct conv *c, const char *text, size_t len, bool add_bos)
{
    struct native *nat = c->nat;
    size_t n_tok = 0;
    for (;;) {
        int rc = banter_tokenize(nat->model, text, len, add_bos, true, c->toks, (size_t)c->cap_toks, &n_tok);
        if (rc == BANTER_ERR_INVALID_ARG && n_tok > (size_t)c->cap_toks) {
            if (grow_toks(c, n_tok)) return BANTER_ERR_NOMEM;
            continue;
        }
        if (rc) return rc;
        break;
    }
    size_t at = 0, first_bad = n_tok;
    char piece[256];
    for (size_t i = 0; i < n_tok; i++) {
        if (add_bos && i == 0 && c->toks[0] == nat->bos) {
            c->tend[i] = at;
            continue;
        }
        int pl = banter_token_to_piece(nat->model, c->toks[i], true, piece, sizeof piece);
        const char *pp = piece;
        /* SentencePiece vocabularies that add a space prefix put one before each text segment (after a
         * control token) that the text does not have. */
        if (pl > 0 && pl <= (int)sizeof piece && pp[0] == ' ' && (at >= len || text[at] != ' ')) {
            pp++;
            pl--;
        }
        if (pl < 0 || pl > (int)sizeof piece || at + (size_t)pl > len || memcmp(text + at, pp, (size_t)pl) != 0) {
            first_bad = i;
            break;
        }
        at += (size_t)pl;
        c->tend[i] = at;
    }
    if (first_bad == n_tok && at != len) first_bad = 0;
    /* From the first token whose text does not line up, the tokens form one group that is kept or dropped as a
     * whole: only its last token carries an end. */
    for (size_t i = first_bad; i < n_tok; i++) c->tend[i] = i + 1 == n_tok ? len : SIZE_MAX;
    return (int)n_tok;
}

/* Renders msgs (less the skipped ones) into c->text. */
static int render_msgs(struct conv *c, const banter_chat_message *msgs, size_t n, bool add_assistant)
{
    struct native *nat = c->nat;
    /* The view: a leading system message, then everything after the skipped ones. */
    size_t lead = n > 0 && !strcmp(msgs[0].role, "system") ? 1 : 0;
    size_t skip = c->n_skip;
    if (lead + skip > n) skip = n - lead;
    banter_chat_message view_buf[64] = {{0}};
    banter_chat_message *view = view_buf;
    size_t n_view = n - skip;
    if (n_view > 64) {
        view = malloc(n_view * sizeof *view);
        if (!view) return BANTER_ERR_NOMEM;
    }
    if (lead) view[0] = msgs[0];
    memcpy(view + lead, msgs + lead + skip, (n - lead - skip) * sizeof *view);
    int rc = 0;
    long need = banter_chat_render(nat->model, view, n_view, add_assistant, c->text, c->cap_text);
    if (need < 0) {
        rc = BANTER_ERR_INVALID_ARG;
        goto out;
    }
    if ((size_t)need >= c->cap_text) {
        void *p = c->text;
        if (grow(&p, &c->cap_text, (size_t)need + 1, 1)) {
            rc = BANTER_ERR_NOMEM;
            goto out;
        }
        c->text = p;
        banter_chat_render(nat->model, view, n_view, add_assistant, c->text, c->cap_text);
    }
    c->text_len = (size_t)need;
out:
    if (view != view_buf) free(view);
    return rc;
}

/* Keeps the cached tokens whose text is a prefix of the rendered text c->text (at most max_keep of them),
 * truncating the sequence after them, and returns how many were kept. */
static int keep_prefix(struct conv *c, int max_keep)
{
    size_t lim = c->text_len < c->ctext_len ? c->text_len : c->ctext_len;
    size_t same = 0;
    while (same < lim && c->text[same] == c->ctext[same]) same++;
    int k = 0;
    for (int i = 0; i < c->n_cached && i < max_keep; i++) {
        if (c->cend[i] == SIZE_MAX) continue; /* inside a group: kept only with its last token */
        if (c->cend[i] > same) break;
        k = i + 1;
    }
    if (k < c->n_cached) {
        pthread_mutex_lock(&c->nat->lock);
        int rc = banter_seq_truncate(c->nat->ctx, c->seq, k);
        pthread_mutex_unlock(&c->nat->lock);
        if (rc) return rc;
        c->n_cached = k;
        c->ctext_len = k ? c->cend[k - 1] : 0;
    }
    return k;
}

/* After keep_prefix kept k tokens: tokenizes the rest of the rendered text into c->toks (ends in c->tend,
 * relative to c->text). Returns the count or an error. */
static int tokenize_rest(struct conv *c, int k)
{
    size_t from = k ? c->cend[k - 1] : 0;
    int m = tokenize_span(c, c->text + from, c->text_len - from, k == 0);
    for (int i = 0; i < m; i++)
        if (c->tend[i] != SIZE_MAX) c->tend[i] += from;
    return m;
}

/* Feeds c->toks[0, m) at the end of the cache, in chunks. With sampled != NULL, the logits of the last token are
 * sampled under the same hold of the lock as its pass (another conversation's pass would overwrite them). */
static int feed(struct conv *c, int m, banter_token *sampled)
{
    struct native *nat = c->nat;
    enum { CHUNK = 256 };
    banter_batch_entry e[CHUNK];
    int from = 0;
    while (from < m) {
        int n = m - from < CHUNK ? m - from : CHUNK;
        bool last = from + n == m;
        for (int i = 0; i < n; i++) {
            e[i].token = c->toks[from + i];
            e[i].seq = c->seq;
            e[i].pos = c->n_cached + i;
            e[i].want_logits = sampled && last && i == n - 1;
        }
        pthread_mutex_lock(&nat->lock);
        int rc = decode(c, e, n);
        if (!rc && sampled && last) {
            const float *logits = banter_logits(nat->ctx, n - 1);
            BANTER_ASSERT(logits != NULL);
            *sampled = banter_sampler_sample(c->sampler, logits);
        }
        pthread_mutex_unlock(&nat->lock);
        if (rc) return rc;
        for (int i = 0; i < n; i++) {
            size_t end = c->tend[from + i];
            size_t start = c->ctext_len;
            bool member = end == SIZE_MAX;
            if (member) end = start;
            BANTER_ASSERT(end >= start && end <= c->text_len);
            if (append_cached(c, e[i].token, c->text + start, end - start)) return BANTER_ERR_NOMEM;
            if (member) c->cend[c->n_cached - 1] = SIZE_MAX;
        }
        from += n;
    }
    return 0;
}

static void begin_call(struct conv *c, struct agent_llm_stats *st)
{
    atomic_store_explicit(&c->cancel, false, memory_order_release);
    if (st) memset(st, 0, sizeof *st);
}

/* Keeps the cached prefix of the rendered c->text and tokenizes the rest into c->toks; *k receives the tokens
 * kept. With leave_last, the prompt's last token is never counted as cached (reply needs its logits). Returns
 * the count to feed, or an error. */
static int split_prompt(struct conv *c, bool leave_last, int *k)
{
    *k = keep_prefix(c, INT_MAX);
    if (*k < 0) return *k;
    int m = tokenize_rest(c, *k);
    while (m == 0 && leave_last && *k > 0) {
        /* The whole prompt is cached: take its last token back to get its logits. */
        *k = keep_prefix(c, *k - 1);
        if (*k < 0) return *k;
        m = tokenize_rest(c, *k);
    }
    return m;
}

/* Renders msgs and splits the prompt (split_prompt) so that it and a reply of max_tokens (at most half the
 * context) fit, leaving out old messages when they do not (see the file comment). Returns the count to feed, or
 * an error. */
static int plan(struct conv *c, const banter_chat_message *msgs, size_t n, bool leave_last,
                struct agent_llm_stats *st, char *err, size_t err_len)
{
    int n_ctx = c->nat->n_ctx;
    int reserve = c->cfg.max_tokens < n_ctx / 2 ? c->cfg.max_tokens : n_ctx / 2;
    size_t lead = n > 0 && !strcmp(msgs[0].role, "system") ? 1 : 0;
    int k = 0, m = 0;
    int rc = render_msgs(c, msgs, n, true);
    if (!rc) m = rc = split_prompt(c, leave_last, &k);
    if (rc < 0) goto failed;
    if (k + m + reserve > n_ctx) {
        int before = k + m;
        /* Leave out old messages until the prompt fills at most half the context and the view starts with a
         * user message; the last message always stays. */
        while (lead + c->n_skip + 1 < n &&
               (k + m + reserve > n_ctx || k + m > n_ctx / 2 || strcmp(msgs[lead + c->n_skip].role, "user"))) {
            c->n_skip++;
            rc = render_msgs(c, msgs, n, true);
            if (!rc) m = rc = split_prompt(c, leave_last, &k);
            if (rc < 0) goto failed;
        }
        core_log(BANTER_LOG_INFO, "agent: the conversation outgrew the context (%d + %d > %d tokens): leaving "
                 "out its oldest %zu messages; %d tokens are prefilled again", before, reserve, n_ctx, c->n_skip,
                 m);
        if (k + m + reserve > n_ctx) {
            set_err(err, err_len, "the last message (%d tokens with the system prompt) leaves no room for a reply "
                    "in the context", k + m);
            return BANTER_ERR_CONTEXT_FULL;
        }
    }
    st->n_dropped = (int)c->n_skip;
    st->n_prompt = k + m;
    return m;
failed:
    set_err(err, err_len, "cannot render or tokenize the conversation: %s", banter_status_str(rc));
    return rc;
}

static int conv_prepare(void *p, const banter_chat_message *msgs, size_t n, struct agent_llm_stats *st,
                        char *err, size_t err_len)
{
    struct conv *c = p;
    struct agent_llm_stats local;
    if (!st) st = &local;
    begin_call(c, st);
    double t0 = core_time_ms();
    int m = plan(c, msgs, n, false, st, err, err_len);
    if (m < 0) return m;
    /* Everything but the last token (reply feeds it to get the logits). */
    int rc = 0;
    if (m > 1) {
        st->n_fed = m - 1;
        rc = feed(c, m - 1, NULL);
    }
    st->prefill_ms = st->total_ms = core_time_ms() - t0;
    if (rc && rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "prefill failed: %s", banter_status_str(rc));
    return rc;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
}

static int conv_reply(void *p, const banter_chat_message *msgs, size_t n, agent_piece_fn fn, void *user,
                      struct agent_llm_stats *st, char *err, size_t err_len)
{
    struct conv *c = p;
    struct native *nat = c->nat;
    struct agent_llm_stats local;
    if (!st) st = &local;
    begin_call(c, st);
    double t0 = core_time_ms();
    int m = plan(c, msgs, n, true, st, err, err_len);
    if (m < 0) return m;
    st->n_fed = m;
    banter_sampler_reset(c->sampler);
    banter_token t = 0;
    int rc = feed(c, m, &t);
    st->prefill_ms = core_time_ms() - t0;
    if (rc) {
        if (rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "prefill failed: %s", banter_status_str(rc));
        return rc;
    }
    char piece[256];
    int n_ctx = nat->n_ctx;
    bool at_start = true; /* the chat format trims a message: leading whitespace of the reply is not its text */
    for (int i = 0; i < c->cfg.max_tokens; i++) {
        banter_sampler_accept(c->sampler, t);
        if (banter_token_is_eog(nat->model, t)) {
            /* The end-of-turn token goes into the cache too: the next turn's render has it right here. */
            if (c->n_cached < n_ctx) {
                banter_batch_entry e = {t, c->seq, c->n_cached, false};
                pthread_mutex_lock(&nat->lock);
                rc = decode(c, &e, 1);
                pthread_mutex_unlock(&nat->lock);
                int len = banter_token_to_piece(nat->model, t, true, piece, sizeof piece);
                if (len < 0 || len > (int)sizeof piece) len = 0;
                if (!rc) rc = append_cached(c, t, piece, (size_t)len);
            }
            break;
        }
        int len = banter_token_to_piece(nat->model, t, false, piece, sizeof piece);
        if (len < 0) len = 0;
        if (len > (int)sizeof piece) len = (int)sizeof piece;
        st->n_generated++;
        if (st->n_generated == 1) st->first_piece_ms = core_time_ms() - t0;
        if (len > 0 && !fn(piece, (size_t)len, user)) {
            rc = BANTER_ERR_CANCELLED;
            break;
        }
        if (cancelled(c)) {
            rc = BANTER_ERR_CANCELLED;
            break;
        }
        if (c->n_cached >= n_ctx) break; /* plan reserved room; this is the context's hard end */
        banter_batch_entry e = {t, c->seq, c->n_cached, true};
        pthread_mutex_lock(&nat->lock);
        rc = decode(c, &e, 1);
        if (!rc) t = banter_sampler_sample(c->sampler, banter_logits(nat->ctx, 0));
        pthread_mutex_unlock(&nat->lock);
        if (rc) break;
        const char *text = piece;
        size_t tl = (size_t)len;
        if (at_start) {
            while (tl > 0 && is_space(*text)) {
                text++;
                tl--;
            }
            if (tl > 0) at_start = false;
        }
        if (append_cached(c, e.token, text, tl)) {
            rc = BANTER_ERR_NOMEM;
            break;
        }
    }
    if (rc && rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "generation failed: %s", banter_status_str(rc));
    st->total_ms = core_time_ms() - t0;
    return rc;
}

static int conv_sync(void *p, const banter_chat_message *msgs, size_t n)
{
    struct conv *c = p;
    int rc = render_msgs(c, msgs, n, false);
    if (rc) return rc;
    int k = keep_prefix(c, INT_MAX);
    return k < 0 ? k : 0;
}

/* One batched pass and one single-token pass on a scratch sequence, so the first turn does not pay for the
 * page faults of the mapped weights and the first touch of each kernel's memory (measured: the first reply's
 * first token came ~400 ms late without this on a 270M model). */
static void warm_up(struct native *nat)
{
    int seq;
    if (banter_seq_open(nat->ctx, &seq)) return;
    double t0 = core_time_ms();
    enum { N = 32 };
    banter_batch_entry e[N];
    banter_model_desc d;
    banter_model_describe(nat->model, &d);
    banter_token tok = d.bos >= 0 ? d.bos : 0;
    int n = N < nat->n_ctx - 1 ? N : nat->n_ctx - 1;
    for (int i = 0; i < n; i++) e[i] = (banter_batch_entry){tok, seq, i, i == n - 1};
    if (banter_decode(nat->ctx, e, n) == 0) {
        banter_batch_entry one = {tok, seq, n, true};
        banter_decode(nat->ctx, &one, 1);
    }
    banter_seq_close(nat->ctx, seq);
    core_info("agent: language model warmed up in %.0f ms", core_time_ms() - t0);
}

static const struct agent_llm_ops native_ops = {
    .name = "native",
    .close = native_close,
    .describe = native_describe,
    .conv_open = conv_open,
    .conv_close = conv_close,
    .prepare = conv_prepare,
    .reply = conv_reply,
    .sync = conv_sync,
    .cancel = conv_cancel,
    .cached = conv_cached,
};

int agent_llm_native_open(const char *model_path, int n_ctx, int n_seq, int n_threads, struct agent_llm *out,
                          char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    struct native *nat = calloc(1, sizeof *nat);
    if (!nat) return BANTER_ERR_NOMEM;
    pthread_mutex_init(&nat->lock, NULL);
    pthread_mutex_init(&nat->owner_lock, NULL);
    banter_model_config mc = banter_model_config_default();
    mc.n_threads = n_threads;
    int rc = banter_model_open(model_path, &mc, &nat->model, err, err_len);
    if (rc) goto fail;
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = n_ctx;
    cc.n_seq = n_seq > 0 ? n_seq : 1;
    cc.n_threads = n_threads;
    rc = banter_context_open(nat->model, &cc, &nat->ctx);
    if (rc) {
        set_err(err, err_len, "cannot create a context for %s: %s", model_path, banter_status_str(rc));
        goto fail;
    }
    nat->n_ctx = banter_context_n_ctx(nat->ctx);
    nat->n_seq = cc.n_seq;
    banter_model_desc md;
    banter_model_describe(nat->model, &md);
    nat->bos = md.bos;
    warm_up(nat);
    banter_model_desc d;
    banter_model_describe(nat->model, &d);
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    snprintf(nat->desc, sizeof nat->desc, "%s %s, %d layers x %d wide, %s, context %d (%s)", d.arch,
             d.name && *d.name ? d.name : "model", d.n_layer, d.n_embd, d.weight_type, nat->n_ctx, base);
    out->ops = &native_ops;
    out->state = nat;
    return 0;
fail:
    native_close(nat);
    return rc;
}
