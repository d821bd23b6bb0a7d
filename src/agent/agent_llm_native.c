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
 * Scheduling: all conversations share one banter_context, and only the scheduler thread (sched_main) runs its
 * forward passes. A conversation's thread turns its work into a request (a prefill run of tokens, or a single
 * decode token, and whether the last one's logits are to be sampled with the conversation's own sampler),
 * queues it and sleeps until it is done. Each scheduler step packs every queued request into one banter_decode:
 * the single-token decode steps first, then prefill chunks of at most PREFILL_STEP tokens per conversation, up
 * to n_batch entries in all, so a long prefill is spread over several steps and never holds up the others'
 * next tokens. The weights are streamed from memory once per step however many conversations take part, which
 * is where batching wins: a decode step of one token is memory-bound. Right after the pass the scheduler
 * samples each finished request's logits row (the next pass overwrites them) and wakes its thread. Batching
 * can be turned off (agent_llm_native_set_batching): one request per pass, chunks of SERIAL_CHUNK, the old
 * interleaved behaviour, kept as the benchmark's baseline.
 *
 * Cancel marks the conversation; the scheduler drops its request at the next step boundary with
 * BANTER_ERR_CANCELLED, so a barge-in waits for at most one pass. The context's own cancel is never used: it
 * would fail every conversation of a shared pass. When a batched pass fails, each request of the step is run
 * alone (banter_decode changes nothing on error), so only the conversation whose entries fail sees the error.
 *
 * Shared system prompts: the scheduler thread holds nat->lock during each pass; sequence operations (open,
 * close, truncate, fork) and the template table take it too. A template is a sequence holding the tokens of a
 * rendered prompt up to the end of its system message (the text two renders with different first user
 * messages share, found with banter_chat_render; for Gemma it is the opening of the first user turn with the
 * system text in it). When a conversation's cache is empty and its whole prompt, tokenized as a cold prefill
 * would tokenize it, starts with a template's text and tokens, its sequence is forked from the template
 * (banter_seq_fork) and only the rest is prefilled; the cache then holds exactly the tokens and records a cold
 * prefill would. On a miss the conversation prefills everything and then forks its own prefix into a new
 * template (N_TMPL of them, least recently used replaced). Prefixes under MIN_TMPL_TOKENS are not shared: a fork
 * copies whole sliding-window rings, which costs about as much as prefilling a few dozen tokens.
 */
#include "agent/agent_llm.h"
#include "core/core.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    N_BATCH = 512,         /* most entries in one pass */
    PREFILL_STEP = 128,    /* most prefill tokens one conversation adds to a batched step */
    SERIAL_CHUNK = 256,    /* prefill chunk of a pass when batching is off */
    N_TMPL = 4,            /* shared system-prompt prefixes kept */
    MIN_TMPL_TOKENS = 32,  /* shorter prefixes are prefilled rather than forked (see the file comment) */
    GATHER_WAIT_US = 1000, /* longest a step waits for generating conversations to queue their next token */
};

/* One conversation's work for the scheduler: feed toks[0, n) at positions pos.. of seq. The conversation's
 * thread fills it in, queues it and sleeps until done; meanwhile only the scheduler touches it. */
struct req {
    struct conv *c;
    const banter_token *toks; /* [n] */
    int n, pos, seq;
    bool sample;              /* sample the last token's logits with c->sampler into sampled */
    bool gen;                 /* a generated token (counted as decode in the stats) rather than prompt */
    int n_done;               /* tokens in the cache so far */
    banter_token sampled;
    int rc;
    bool done;                /* guarded by sched_mu */
    struct req *next;         /* guarded by sched_mu */
    /* The current step: entries [at, at + take) of the batch; fault makes its first entry invalid. */
    int at, take;
    bool fault;
};

struct tmpl {
    int seq;             /* -1 when the slot is free */
    char *text;          /* [len]: the rendered prefix the tokens stand for */
    size_t len;
    banter_token *toks;  /* [n] */
    size_t *ends;        /* [n]: each token's end in text */
    int n;
    uint64_t used;       /* LRU clock */
};

struct native {
    banter_model *model;
    banter_context *ctx;
    int n_ctx;
    int n_seq;           /* conversations that may be open at once */
    int n_vocab;
    banter_token bos;    /* the model's BOS (-1 when none): added by the tokenizer, absent from the text */
    char desc[256];
    /* Held by the scheduler during each pass and by sequence operations and template lookups. Taken before
     * sched_mu when both are held. */
    pthread_mutex_t lock;
    int n_conv;                 /* open conversations (lock) */
    struct tmpl tmpl[N_TMPL];   /* (lock) */
    uint64_t clock;             /* (lock) */
    pthread_mutex_t sched_mu;   /* guards the queue, stop, batching and stats */
    pthread_cond_t sched_cv;    /* a request arrived, or stop */
    struct req *head, *tail;    /* queued requests, oldest first (sched_mu) */
    bool stop;                  /* (sched_mu) */
    bool batching;              /* (sched_mu) */
    int n_active;               /* conversations in their reply's generation loop (sched_mu) */
    struct agent_sched_stats stats; /* (sched_mu) */
    atomic_uint_least64_t prefix_hits, prefix_misses;
    pthread_t thread;
    bool started;
    /* The scheduler thread's own scratch. */
    banter_batch_entry *batch; /* [N_BATCH] */
    struct req **step;         /* [n_seq]: the requests of the current step */
    int *step_rc;              /* [n_seq]: the status of each */
};

struct conv {
    struct native *nat;
    struct agent_reply_config cfg;
    banter_sampler *sampler;
    int seq;
    atomic_bool cancel;   /* set by cancel, cleared at the start of each call */
    atomic_bool fault;    /* agent_llm_native_inject_fault: the next pass of this conversation fails */
    pthread_cond_t done_cv; /* its request is done (with nat->sched_mu) */
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
    int tmpl_n; /* after a template miss: the prompt's first tokens that are to become a template */
};

static void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static bool cancelled(struct conv *c)
{
    return atomic_load_explicit(&c->cancel, memory_order_acquire);
}

/* ---- The scheduler ---- */

static void finish(struct native *nat, struct req *r, int rc)
{
    r->rc = rc;
    r->done = true;
    pthread_cond_signal(&r->c->done_cv);
}

/* Unlinks r from the queue (sched_mu held). */
static void unlink_req(struct native *nat, struct req *r)
{
    struct req **pp = &nat->head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    BANTER_ASSERT(*pp == r);
    *pp = r->next;
    if (nat->tail == r) nat->tail = prev;
    r->next = NULL;
}

/* Writes r's entries of the current step at batch[r->at]. */
static void put_entries(struct native *nat, struct req *r, banter_batch_entry *b)
{
    for (int i = 0; i < r->take; i++) {
        int j = r->n_done + i;
        b[i] = (banter_batch_entry){r->toks[j], r->seq, r->pos + j, r->sample && j == r->n - 1};
    }
    if (r->fault && r->take > 0) b[0].token = -1;
}

/* Samples r's logits when its last token was in the pass just run, whose entry i is r's first. */
static void after_pass(struct native *nat, struct req *r, int i)
{
    r->n_done += r->take;
    if (r->sample && r->n_done == r->n) {
        const float *logits = banter_logits(nat->ctx, i + r->take - 1);
        BANTER_ASSERT(logits != NULL);
        r->sampled = banter_sampler_sample(r->c->sampler, logits);
    }
}

/* Picks the requests of one step (sched_mu held): every single-token request first, then prefill chunks, within
 * n_batch; returns how many, with each one's entries in at/take. Cancelled requests are finished here. */
static int gather(struct native *nat, int *n_entries)
{
    int n_step = 0, n_ent = 0;
    for (struct req *r = nat->head, *next; r; r = next) {
        next = r->next;
        if (cancelled(r->c)) {
            unlink_req(nat, r);
            finish(nat, r, BANTER_ERR_CANCELLED);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (struct req *r = nat->head; r && n_ent < N_BATCH; r = r->next) {
            int left = r->n - r->n_done;
            if ((left == 1) != (pass == 0)) continue;
            if (!nat->batching && n_step == 1) break;
            int cap = nat->batching ? PREFILL_STEP : SERIAL_CHUNK;
            int take = left < cap ? left : cap;
            if (take > N_BATCH - n_ent) take = N_BATCH - n_ent;
            r->at = n_ent;
            r->take = take;
            r->fault = atomic_exchange_explicit(&r->c->fault, false, memory_order_acq_rel) || r->fault;
            nat->step[n_step++] = r;
            n_ent += take;
        }
    }
    *n_entries = n_ent;
    return n_step;
}

static int hist_bucket(int n_seqs)
{
    /* Buckets of agent_sched_stats.batch_hist: 1, 2, 3-4, 5-8, 9-16, 17+ sequences. */
    int b = 0;
    for (int lim = 1; b < AGENT_SCHED_HIST - 1 && n_seqs > lim; lim *= 2) b++;
    return b;
}

static void *sched_main(void *arg)
{
    struct native *nat = arg;
    int *rcs = nat->step_rc;
    pthread_mutex_lock(&nat->sched_mu);
    for (;;) {
        while (!nat->stop && !nat->head) pthread_cond_wait(&nat->sched_cv, &nat->sched_mu);
        if (nat->stop) break;
        /* A generating conversation's thread needs a moment after its token is sampled (its piece callback,
         * then the next request); waiting briefly for those lets one pass carry all their next tokens
         * instead of starting with whoever came back first. Bounded, so a slow callback delays no one much. */
        if (nat->batching && nat->n_active > 1) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += GATHER_WAIT_US * 1000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            for (;;) {
                int n_queued = 0;
                for (struct req *r = nat->head; r; r = r->next) n_queued++;
                if (nat->stop || n_queued >= nat->n_active) break;
                if (pthread_cond_timedwait(&nat->sched_cv, &nat->sched_mu, &until)) break;
            }
            if (nat->stop) break;
        }
        int n_ent = 0;
        int n_step = gather(nat, &n_ent);
        if (n_step == 0) continue;
        pthread_mutex_unlock(&nat->sched_mu);

        pthread_mutex_lock(&nat->lock);
        double t0 = core_time_ms();
        for (int k = 0; k < n_step; k++) put_entries(nat, nat->step[k], nat->batch + nat->step[k]->at);
        int rc = banter_decode(nat->ctx, nat->batch, n_ent);
        if (!rc) {
            for (int k = 0; k < n_step; k++) {
                after_pass(nat, nat->step[k], nat->step[k]->at);
                rcs[k] = 0;
            }
        } else if (n_step == 1) {
            rcs[0] = rc;
        } else {
            /* One request's entries failed the pass: run each alone so that only its conversation fails. */
            core_log(BANTER_LOG_WARN, "agent: a batched pass of %d conversations failed (%s); running each alone",
                     n_step, banter_context_error(nat->ctx));
            for (int k = 0; k < n_step; k++) {
                struct req *r = nat->step[k];
                put_entries(nat, r, nat->batch);
                rcs[k] = banter_decode(nat->ctx, nat->batch, r->take);
                if (!rcs[k]) after_pass(nat, r, 0);
            }
        }
        double dt = core_time_ms() - t0;
        pthread_mutex_unlock(&nat->lock);

        pthread_mutex_lock(&nat->sched_mu);
        struct agent_sched_stats *st = &nat->stats;
        st->steps++;
        st->entries += (uint64_t)n_ent;
        st->seqs += (uint64_t)n_step;
        st->batch_hist[hist_bucket(n_step)]++;
        st->busy_ms += dt;
        for (int k = 0; k < n_step; k++) {
            struct req *r = nat->step[k];
            if (!rcs[k]) {
                if (r->gen) st->decode_tokens += (uint64_t)r->take;
                else st->prefill_tokens += (uint64_t)r->take;
            }
            r->fault = false;
            if (rcs[k] || r->n_done == r->n) {
                unlink_req(nat, r);
                finish(nat, r, rcs[k]);
            } else if (r->next) {
                /* Not done: to the back, so the prefills take turns at the budget. */
                unlink_req(nat, r);
                nat->tail->next = r;
                nat->tail = r;
            }
        }
    }
    pthread_mutex_unlock(&nat->sched_mu);
    return NULL;
}

/* Queues r for the scheduler and waits until it is done; returns its status. r->n_done tokens are then in the
 * cache, also on error. */
static int submit(struct conv *c, struct req *r)
{
    struct native *nat = c->nat;
    r->c = c;
    r->n_done = 0;
    r->rc = 0;
    r->done = false;
    r->fault = false;
    r->next = NULL;
    if (cancelled(c)) return BANTER_ERR_CANCELLED;
    if (r->n == 0) return 0;
    pthread_mutex_lock(&nat->sched_mu);
    if (nat->tail) nat->tail->next = r;
    else nat->head = r;
    nat->tail = r;
    pthread_cond_signal(&nat->sched_cv);
    while (!r->done) pthread_cond_wait(&c->done_cv, &nat->sched_mu);
    pthread_mutex_unlock(&nat->sched_mu);
    return r->rc;
}

static void tmpl_clear(struct native *nat, struct tmpl *t)
{
    if (t->seq >= 0) banter_seq_close(nat->ctx, t->seq);
    free(t->text);
    free(t->toks);
    free(t->ends);
    memset(t, 0, sizeof *t);
    t->seq = -1;
}

static void native_close(void *state)
{
    struct native *nat = state;
    if (!nat) return;
    if (nat->started) {
        pthread_mutex_lock(&nat->sched_mu);
        nat->stop = true;
        pthread_cond_signal(&nat->sched_cv);
        pthread_mutex_unlock(&nat->sched_mu);
        pthread_join(nat->thread, NULL);
    }
    for (int i = 0; i < N_TMPL; i++) tmpl_clear(nat, &nat->tmpl[i]);
    banter_context_close(nat->ctx);
    banter_model_close(nat->model);
    free(nat->batch);
    free(nat->step);
    free(nat->step_rc);
    pthread_cond_destroy(&nat->sched_cv);
    pthread_mutex_destroy(&nat->sched_mu);
    pthread_mutex_destroy(&nat->lock);
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
    /* The context has more sequences than conversations (the templates'), so count. */
    rc = nat->n_conv < nat->n_seq ? banter_seq_open(nat->ctx, &c->seq) : BANTER_ERR_CONTEXT_FULL;
    if (!rc) nat->n_conv++;
    pthread_mutex_unlock(&nat->lock);
    if (rc) {
        set_err(err, err_len, "all %d conversations of the language model are in use", nat->n_seq);
        banter_sampler_close(c->sampler);
        free(c);
        return rc;
    }
    pthread_cond_init(&c->done_cv, NULL);
    *out = c;
    return 0;
}

static void conv_close(void *p)
{
    struct conv *c = p;
    if (!c) return;
    pthread_mutex_lock(&c->nat->lock);
    banter_seq_close(c->nat->ctx, c->seq);
    c->nat->n_conv--;
    pthread_mutex_unlock(&c->nat->lock);
    pthread_cond_destroy(&c->done_cv);
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
    /* The scheduler drops the conversation's request at its next step (see the file comment). */
    atomic_store_explicit(&c->cancel, true, memory_order_release);
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

/* Records the first n of c->toks, now in the cache, with their texts from c->text. */
static int record_fed(struct conv *c, int n)
{
    for (int i = 0; i < n; i++) {
        size_t end = c->tend[i];
        size_t start = c->ctext_len;
        bool member = end == SIZE_MAX;
        if (member) end = start;
        BANTER_ASSERT(end >= start && end <= c->text_len);
        if (append_cached(c, c->toks[i], c->text + start, end - start)) return BANTER_ERR_NOMEM;
        if (member) c->cend[c->n_cached - 1] = SIZE_MAX;
    }
    return 0;
}

/* Feeds c->toks[0, m) at the end of the cache through the scheduler. With sampled != NULL, the logits of the
 * last token are sampled with c's sampler into *sampled. On error the tokens that did reach the cache are still
 * recorded. */
static int feed(struct conv *c, int m, banter_token *sampled)
{
    struct req r = {.toks = c->toks, .n = m, .pos = c->n_cached, .seq = c->seq, .sample = sampled != NULL};
    int rc = submit(c, &r);
    if (record_fed(c, r.n_done)) return BANTER_ERR_NOMEM;
    if (!rc && sampled) *sampled = r.sampled;
    return rc;
}

/* Feeds one token at the end of the cache; with sampled != NULL its logits are sampled into *sampled. */
static int feed_one(struct conv *c, banter_token t, banter_token *sampled)
{
    struct req r = {.toks = &t, .n = 1, .pos = c->n_cached, .seq = c->seq, .sample = sampled != NULL,
                    .gen = true};
    int rc = submit(c, &r);
    if (!rc && sampled) *sampled = r.sampled;
    return rc;
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

/* ---- Shared system prompts (see the file comment) ---- */

/* The length of the part of c->text that stands for the leading system message of msgs: what two renders with
 * different first user messages have in common, when c->text starts with it; 0 when there is none. */
static size_t system_prefix(struct conv *c, const banter_chat_message *msgs, size_t n)
{
    if (n < 2 || strcmp(msgs[0].role, "system")) return 0;
    banter_chat_message va[2] = {msgs[0], {"user", "a"}}, vb[2] = {msgs[0], {"user", "b"}};
    const banter_model *m = c->nat->model;
    long la = banter_chat_render(m, va, 2, false, NULL, 0);
    long lb = banter_chat_render(m, vb, 2, false, NULL, 0);
    if (la <= 0 || lb <= 0) return 0;
    char *a = malloc((size_t)la + 1), *b = malloc((size_t)lb + 1);
    size_t same = 0;
    if (a && b) {
        banter_chat_render(m, va, 2, false, a, (size_t)la + 1);
        banter_chat_render(m, vb, 2, false, b, (size_t)lb + 1);
        while (same < (size_t)la && same < (size_t)lb && a[same] == b[same]) same++;
        if (same > c->text_len || memcmp(a, c->text, same)) same = 0;
    }
    free(a);
    free(b);
    return same;
}

/* With an empty cache and c->toks[0, m) the whole prompt: when a template holds the first tokens of exactly this
 * tokenization, forks the sequence from it, records those tokens as cached and removes them from c->toks;
 * returns how many (0 on a miss, then c->tmpl_n says how many tokens are to become a template after the feed). */
static int use_template(struct conv *c, const banter_chat_message *msgs, size_t n, int m)
{
    struct native *nat = c->nat;
    c->tmpl_n = 0;
    if (c->n_cached != 0) return 0;
    size_t plen = system_prefix(c, msgs, n);
    /* The tokens that lie wholly within the system prefix, each with an end of its own; one is always left to
     * feed (its logits are needed). */
    int nt = 0;
    while (nt < m - 1 && c->tend[nt] != SIZE_MAX && c->tend[nt] <= plen) nt++;
    if (nt < MIN_TMPL_TOKENS) return 0;
    pthread_mutex_lock(&nat->lock);
    struct tmpl *best = NULL;
    for (int i = 0; i < N_TMPL; i++) {
        struct tmpl *t = &nat->tmpl[i];
        if (t->seq < 0 || t->n > nt || (best && best->n >= t->n)) continue;
        if (t->len > c->text_len || memcmp(t->text, c->text, t->len)) continue;
        if (memcmp(t->toks, c->toks, (size_t)t->n * sizeof *t->toks) ||
            memcmp(t->ends, c->tend, (size_t)t->n * sizeof *t->ends))
            continue;
        best = t;
    }
    int got = 0, dst = -1;
    if (best && banter_seq_fork(nat->ctx, best->seq, -1, &dst) == 0) {
        banter_seq_close(nat->ctx, c->seq);
        c->seq = dst;
        best->used = ++nat->clock;
        got = best->n;
    }
    pthread_mutex_unlock(&nat->lock);
    if (!got) {
        atomic_fetch_add_explicit(&nat->prefix_misses, 1, memory_order_relaxed);
        c->tmpl_n = nt;
        return 0;
    }
    atomic_fetch_add_explicit(&nat->prefix_hits, 1, memory_order_relaxed);
    if (record_fed(c, got)) return BANTER_ERR_NOMEM;
    memmove(c->toks, c->toks + got, (size_t)(m - got) * sizeof *c->toks);
    memmove(c->tend, c->tend + got, (size_t)(m - got) * sizeof *c->tend);
    return got;
}

/* After a miss (c->tmpl_n set by use_template) and a feed past the prefix: keeps a copy of the prefix's cache as
 * a template, replacing the least recently used one. Best effort: on failure there is simply no template. */
static void make_template(struct conv *c)
{
    struct native *nat = c->nat;
    int nt = c->tmpl_n;
    c->tmpl_n = 0;
    if (nt <= 0 || c->n_cached < nt) return;
    size_t len = c->cend[nt - 1];
    struct tmpl fresh = {.seq = -1, .len = len, .n = nt};
    fresh.text = malloc(len + 1);
    fresh.toks = malloc((size_t)nt * sizeof *fresh.toks);
    fresh.ends = malloc((size_t)nt * sizeof *fresh.ends);
    if (!fresh.text || !fresh.toks || !fresh.ends) goto out;
    memcpy(fresh.text, c->ctext, len);
    memcpy(fresh.toks, c->cached, (size_t)nt * sizeof *fresh.toks);
    memcpy(fresh.ends, c->cend, (size_t)nt * sizeof *fresh.ends);
    pthread_mutex_lock(&nat->lock);
    struct tmpl *slot = &nat->tmpl[0];
    for (int i = 0; i < N_TMPL; i++) {
        struct tmpl *t = &nat->tmpl[i];
        if (t->seq >= 0 && t->n == nt && t->len == len && !memcmp(t->text, fresh.text, len) &&
            !memcmp(t->toks, fresh.toks, (size_t)nt * sizeof *t->toks)) {
            slot = NULL; /* another conversation made the same one meanwhile */
            break;
        }
        if (slot->seq >= 0 && (t->seq < 0 || t->used < slot->used)) slot = t;
    }
    if (slot) {
        tmpl_clear(nat, slot);
        if (banter_seq_fork(nat->ctx, c->seq, nt, &fresh.seq) == 0) {
            fresh.used = ++nat->clock;
            *slot = fresh;
            memset(&fresh, 0, sizeof fresh);
        }
    }
    pthread_mutex_unlock(&nat->lock);
out:
    free(fresh.text);
    free(fresh.toks);
    free(fresh.ends);
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
    int rc = use_template(c, msgs, n, m);
    if (rc < 0) goto out;
    m -= rc;
    /* Everything but the last token (reply feeds it to get the logits). */
    rc = 0;
    if (m > 1) {
        st->n_fed = m - 1;
        rc = feed(c, m - 1, NULL);
    }
    if (!rc) make_template(c);
out:
    st->prefill_ms = st->total_ms = core_time_ms() - t0;
    if (rc && rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "prefill failed: %s", banter_status_str(rc));
    return rc;
}

/* Counts the conversation in or out of the generating ones the scheduler waits for. */
static void set_active(struct conv *c, int d)
{
    struct native *nat = c->nat;
    pthread_mutex_lock(&nat->sched_mu);
    nat->n_active += d;
    pthread_cond_signal(&nat->sched_cv);
    pthread_mutex_unlock(&nat->sched_mu);
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
    banter_token t = 0;
    int rc = use_template(c, msgs, n, m);
    if (rc >= 0) {
        m -= rc;
        st->n_fed = m;
        banter_sampler_reset(c->sampler);
        rc = feed(c, m, &t);
    }
    st->prefill_ms = core_time_ms() - t0;
    if (rc) {
        if (rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "prefill failed: %s", banter_status_str(rc));
        return rc;
    }
    char piece[256];
    int n_ctx = nat->n_ctx;
    set_active(c, 1);
    bool at_start = true; /* the chat format trims a message: leading whitespace of the reply is not its text */
    for (int i = 0; i < c->cfg.max_tokens; i++) {
        banter_sampler_accept(c->sampler, t);
        if (banter_token_is_eog(nat->model, t)) {
            /* The end-of-turn token goes into the cache too: the next turn's render has it right here. */
            if (c->n_cached < n_ctx) {
                rc = feed_one(c, t, NULL);
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
        banter_token fed = t;
        rc = feed_one(c, fed, &t);
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
        if (append_cached(c, fed, text, tl)) {
            rc = BANTER_ERR_NOMEM;
            break;
        }
    }
    set_active(c, -1);
    if (rc && rc != BANTER_ERR_CANCELLED) set_err(err, err_len, "generation failed: %s", banter_status_str(rc));
    /* After the reply rather than before it, so that the copy does not delay the first piece. */
    make_template(c);
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
    pthread_mutex_init(&nat->sched_mu, NULL);
    pthread_cond_init(&nat->sched_cv, NULL);
    for (int i = 0; i < N_TMPL; i++) nat->tmpl[i].seq = -1;
    nat->batching = true;
    nat->n_seq = n_seq > 0 ? n_seq : 1;
    int rc = BANTER_ERR_NOMEM;
    nat->batch = malloc(N_BATCH * sizeof *nat->batch);
    nat->step = malloc((size_t)nat->n_seq * sizeof *nat->step);
    nat->step_rc = malloc((size_t)nat->n_seq * sizeof *nat->step_rc);
    if (!nat->batch || !nat->step || !nat->step_rc) goto fail;
    banter_model_config mc = banter_model_config_default();
    mc.n_threads = n_threads;
    rc = banter_model_open(model_path, &mc, &nat->model, err, err_len);
    if (rc) goto fail;
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = n_ctx;
    /* One sequence per conversation, one per template, and one spare so a fork can precede the close of the
     * sequence it replaces. */
    cc.n_seq = nat->n_seq + N_TMPL + 1;
    cc.n_batch = N_BATCH;
    cc.n_outputs = nat->n_seq; /* a step samples at most one row per conversation */
    cc.n_threads = n_threads;
    rc = banter_context_open(nat->model, &cc, &nat->ctx);
    if (rc) {
        set_err(err, err_len, "cannot create a context for %s: %s", model_path, banter_status_str(rc));
        goto fail;
    }
    nat->n_ctx = banter_context_n_ctx(nat->ctx);
    banter_model_desc d;
    banter_model_describe(nat->model, &d);
    nat->bos = d.bos;
    nat->n_vocab = d.n_vocab;
    warm_up(nat);
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    snprintf(nat->desc, sizeof nat->desc, "%s %s, %d layers x %d wide, %s, context %d (%s)", d.arch,
             d.name && *d.name ? d.name : "model", d.n_layer, d.n_embd, d.weight_type, nat->n_ctx, base);
    if (pthread_create(&nat->thread, NULL, sched_main, nat)) {
        set_err(err, err_len, "cannot start the language model's scheduler thread");
        rc = BANTER_ERR_NOMEM;
        goto fail;
    }
    nat->started = true;
    out->ops = &native_ops;
    out->state = nat;
    return 0;
fail:
    native_close(nat);
    return rc;
}

void agent_llm_native_sched_stats(const struct agent_llm *llm, struct agent_sched_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!llm || llm->ops != &native_ops) return;
    struct native *nat = llm->state;
    pthread_mutex_lock(&nat->sched_mu);
    *out = nat->stats;
    pthread_mutex_unlock(&nat->sched_mu);
    out->prefix_hits = atomic_load_explicit(&nat->prefix_hits, memory_order_relaxed);
    out->prefix_misses = atomic_load_explicit(&nat->prefix_misses, memory_order_relaxed);
}

void agent_llm_native_set_batching(struct agent_llm *llm, bool on)
{
    if (!llm || llm->ops != &native_ops) return;
    struct native *nat = llm->state;
    pthread_mutex_lock(&nat->sched_mu);
    nat->batching = on;
    pthread_mutex_unlock(&nat->sched_mu);
}

void agent_llm_native_inject_fault(void *conv)
{
    struct conv *c = conv;
    atomic_store_explicit(&c->fault, true, memory_order_release);
}
