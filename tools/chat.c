/*
 * chat.c: `banter chat`, a terminal conversation with a GGUF model.
 *
 * Each turn renders the whole conversation with the model's chat format, tokenizes it, and feeds only what
 * differs from what the sequence's cache already holds (the longest common token prefix is kept). So a new
 * turn costs its own tokens, and the cache always agrees exactly with the rendered conversation.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: banter chat --model FILE [options]\n"
    "\n"
    "Talk to a GGUF language model. Without -p, reads one user message per line from standard input and keeps\n"
    "the conversation (and its KV cache) across turns; an empty line or end of input ends the session.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE       GGUF model (gemma3 or llama architecture)\n"
    "  -p, --prompt TEXT      one-shot: answer TEXT and exit\n"
    "  -s, --system TEXT      system prompt\n"
    "  -n, --max-tokens N     most tokens per reply (default 256)\n"
    "      --temp T           sampling temperature, 0 = greedy (default 0.8)\n"
    "      --top-k K          keep the K most likely tokens (default 40, 0 = off)\n"
    "      --top-p P          nucleus sampling threshold (default 0.95, 1 = off)\n"
    "      --min-p P          drop tokens below P x the top probability (default 0.05, 0 = off)\n"
    "      --repeat-penalty R penalty for recently seen tokens (default 1.0 = off)\n"
    "      --seed N           random seed (default 0 = fixed, reproducible)\n"
    "  -c, --ctx N            context positions (default 4096 or the model's, if smaller)\n"
    "  -t, --threads N        kernel threads (default: all cores)\n"
    "      --stats            print prompt and generation speed after each reply\n"
    "  -v, --verbose          log what the engine chose (kernels, memory)\n"
    "\n"
    "example:\n"
    "  banter chat -m gemma-3-270m-it-Q8_0.gguf -p \"Name three colours.\" --temp 0 --stats\n";

struct chat_state {
    banter_model *model;
    banter_context *ctx;
    banter_sampler *sampler;
    int seq;
    banter_chat_message *msgs;
    size_t n_msgs, cap_msgs;
    char *reply;
    size_t reply_len, reply_cap;
    banter_token *toks;
    size_t toks_cap;
    banter_token *cached; /* the tokens the sequence's cache holds, as last fed */
    size_t n_cached, cap_cached;
};

static int on_token(banter_token t, const char *piece, size_t len, void *user)
{
    struct chat_state *st = user;
    if (st->n_cached == st->cap_cached) {
        size_t cap = st->cap_cached * 2 + 16;
        banter_token *c = realloc(st->cached, cap * sizeof *c);
        if (!c) return 0;
        st->cached = c;
        st->cap_cached = cap;
    }
    st->cached[st->n_cached++] = t;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (st->reply_len + len + 1 > st->reply_cap) {
        size_t cap = (st->reply_cap + len + 1) * 2;
        char *r = realloc(st->reply, cap);
        if (!r) return 0;
        st->reply = r;
        st->reply_cap = cap;
    }
    memcpy(st->reply + st->reply_len, piece, len);
    st->reply_len += len;
    st->reply[st->reply_len] = 0;
    return 1;
}

static bool push_msg(struct chat_state *st, const char *role, const char *content)
{
    if (st->n_msgs == st->cap_msgs) {
        size_t cap = st->cap_msgs ? st->cap_msgs * 2 : 8;
        banter_chat_message *m = realloc(st->msgs, cap * sizeof *m);
        if (!m) return false;
        st->msgs = m;
        st->cap_msgs = cap;
    }
    char *copy = strdup(content);
    if (!copy) return false;
    st->msgs[st->n_msgs].role = role;
    st->msgs[st->n_msgs].content = copy;
    st->n_msgs++;
    return true;
}

/* Renders the conversation with the model's chat format and tokenizes it into st->toks. */
static int render_tokens(struct chat_state *st, size_t *n_tok)
{
    long need = banter_chat_render(st->model, st->msgs, st->n_msgs, true, NULL, 0);
    if (need < 0) return 1;
    char *prompt = malloc((size_t)need + 1);
    if (!prompt) return 1;
    banter_chat_render(st->model, st->msgs, st->n_msgs, true, prompt, (size_t)need + 1);
    banter_status rc = banter_tokenize(st->model, prompt, (size_t)need, true, true, st->toks, st->toks_cap, n_tok);
    if (rc != BANTER_OK && *n_tok > st->toks_cap) {
        banter_token *t = realloc(st->toks, *n_tok * sizeof *t);
        if (!t) {
            free(prompt);
            return 1;
        }
        st->toks = t;
        st->toks_cap = *n_tok;
        rc = banter_tokenize(st->model, prompt, (size_t)need, true, true, st->toks, st->toks_cap, n_tok);
    }
    free(prompt);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: could not tokenize the conversation: %s\n", banter_status_str(rc));
        return 1;
    }
    return 0;
}

/* One user turn: render, tokenize, reuse the cached prefix, generate. Returns 0 or an exit code. */
static int turn(struct chat_state *st, const char *user_text, int max_tokens, bool stats)
{
    if (!push_msg(st, "user", user_text)) return 1;
    size_t n_tok = 0;
    banter_status rc;
    for (;;) {
        if (render_tokens(st, &n_tok) != 0) return 1;
        /* Room for the reply: when the conversation no longer fits, drop the oldest exchange (the system prompt
         * stays). The cache then re-prefills from the first changed token. */
        if ((long)n_tok + max_tokens <= banter_context_n_ctx(st->ctx)) break;
        size_t first = st->n_msgs && !strcmp(st->msgs[0].role, "system") ? 1 : 0;
        if (st->n_msgs - first <= 1) {
            if ((long)n_tok < banter_context_n_ctx(st->ctx)) break; /* the reply gets what room is left */
            fprintf(stderr, "banter: the message (%zu tokens) does not fit the context of %d positions\n", n_tok,
                    banter_context_n_ctx(st->ctx));
            free((char *)st->msgs[--st->n_msgs].content);
            return 0;
        }
        size_t drop = st->n_msgs - first >= 3 ? 2 : 1;
        for (size_t i = first; i < first + drop; i++) free((char *)st->msgs[i].content);
        memmove(st->msgs + first, st->msgs + first + drop, (st->n_msgs - first - drop) * sizeof *st->msgs);
        st->n_msgs -= drop;
        fprintf(stderr, "banter: context full; dropped the oldest exchange\n");
    }
    /* Keep the longest prefix the cache already holds; feed only the rest. */
    size_t keep = 0;
    int held = banter_seq_len(st->ctx, st->seq);
    while (keep < st->n_cached && keep < n_tok && (int)keep < held && st->cached[keep] == st->toks[keep]) keep++;
    if (keep == n_tok) keep = n_tok - 1; /* always feed at least one token to get fresh logits */
    rc = banter_seq_truncate(st->ctx, st->seq, (int)keep);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", banter_context_error(st->ctx));
        return 1;
    }
    /* What the cache will hold: these tokens, then every generated token on_token sees (each is decoded). */
    if (n_tok > st->cap_cached) {
        banter_token *t = realloc(st->cached, n_tok * sizeof *t);
        if (!t) return 1;
        st->cached = t;
        st->cap_cached = n_tok;
    }
    memcpy(st->cached, st->toks, n_tok * sizeof *st->cached);
    st->n_cached = n_tok;
    st->reply_len = 0;
    banter_generate_stats gs;
    rc = banter_generate(st->ctx, st->seq, st->toks + keep, (int)(n_tok - keep), st->sampler, max_tokens,
                         on_token, st, &gs);
    printf("\n");
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: generation stopped: %s (%s)\n", banter_status_str(rc),
                banter_context_error(st->ctx));
        if (rc != BANTER_ERR_CONTEXT_FULL) return 1;
    }
    if (!push_msg(st, "assistant", st->reply ? st->reply : "")) return 1;
    if (stats) {
        int n_dec = gs.n_generated > 1 ? gs.n_generated - 1 : 0;
        fprintf(stderr, "[prompt: %d new tokens (%zu reused) in %.1f ms, %.1f t/s | reply: %d tokens in %.1f ms, "
                        "%.1f t/s%s]\n",
                gs.n_prompt, keep, gs.prefill_ms, gs.prefill_ms > 0 ? gs.n_prompt * 1000.0 / gs.prefill_ms : 0,
                gs.n_generated, gs.decode_ms, gs.decode_ms > 0 ? n_dec * 1000.0 / gs.decode_ms : 0,
                gs.stopped_eog ? "" : ", no end-of-turn");
    }
    return 0;
}

int cmd_chat(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *system = NULL;
    long max_tokens = 256, top_k = 40, seed = 0, n_ctx = 0, threads = 0;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    bool stats = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
            if (!(system = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1 << 20, &max_tokens)) return 2;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, a, 0, 100, &temp)) return 2;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 0, 1 << 24, &top_k)) return 2;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, a, 0, 1, &top_p)) return 2;
        } else if (!strcmp(a, "--min-p")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, a, 0, 1, &min_p)) return 2;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, a, 0.01, 100, &rep)) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 0, 0x7fffffffL, &seed)) return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 16, 1 << 24, &n_ctx)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "banter chat: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path) {
        fprintf(stderr, "banter chat: --model FILE is required\n");
        cli_model_hint();
        return 2;
    }
    if (verbose) cli_log_init(BANTER_LOG_INFO);
    struct chat_state st = {0};
    char err[512];
    banter_model_config mc = banter_model_config_default();
    mc.n_threads = (int)threads;
    banter_status rc = banter_model_open(model_path, &mc, &st.model, err, sizeof err);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter chat: cannot load '%s': %s\n", model_path, err);
        if (rc == BANTER_ERR_IO) cli_model_hint();
        return 1;
    }
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = (int)n_ctx;
    int exit_code = 1;
    if ((rc = banter_context_open(st.model, &cc, &st.ctx)) != BANTER_OK) {
        fprintf(stderr, "banter chat: cannot create a context: %s\n", banter_status_str(rc));
        goto done;
    }
    banter_sampler_config sc = banter_sampler_config_default();
    sc.temperature = (float)temp;
    sc.top_k = (int)top_k;
    sc.top_p = (float)top_p;
    sc.min_p = (float)min_p;
    sc.repeat_penalty = (float)rep;
    sc.seed = (uint64_t)seed;
    banter_model_desc d;
    banter_model_describe(st.model, &d);
    if ((rc = banter_sampler_open(&sc, d.n_vocab, &st.sampler)) != BANTER_OK ||
        (rc = banter_seq_open(st.ctx, &st.seq)) != BANTER_OK) {
        fprintf(stderr, "banter chat: %s\n", banter_status_str(rc));
        goto done;
    }
    if (system && !push_msg(&st, "system", system)) goto done;
    if (prompt) {
        exit_code = turn(&st, prompt, (int)max_tokens, stats);
        goto done;
    }
    fprintf(stderr, "banter: %s model '%s' (%s, %s). Type a message and press Enter; an empty line quits.\n",
            d.arch, d.name, d.weight_type, d.chat_format);
    char line[8192];
    exit_code = 0;
    for (;;) {
        fputs("> ", stderr);
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) break;
        if ((exit_code = turn(&st, line, (int)max_tokens, stats)) != 0) break;
    }
done:
    for (size_t i = 0; i < st.n_msgs; i++) free((char *)st.msgs[i].content);
    free(st.msgs);
    free(st.reply);
    free(st.toks);
    free(st.cached);
    banter_sampler_close(st.sampler);
    banter_context_close(st.ctx);
    banter_model_close(st.model);
    return exit_code;
}
