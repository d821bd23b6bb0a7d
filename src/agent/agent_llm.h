/*
 * agent_llm.h: the language-model interface of the agent: something that answers a conversation, streaming.
 *
 * The session (session.c) holds a conversation as a list of chat messages and never sees tokens. It asks its
 * backend conversation to reply to the whole list each turn; what the backend keeps between turns is its own
 * business:
 *
 * - native (agent_llm_native.c): a GGUF model in this process. Each conversation owns one sequence of a shared
 *   context and the exact tokens its KV cache holds. Every call renders the message list with the model's chat
 *   format, tokenizes it, keeps the longest common token prefix with the cache and feeds only the rest. So a
 *   new turn costs only its own tokens; a message list cut at barge-in truncates the cache to the cut
 *   (agent_llm_ops.sync); and a speculative prefill of a partial transcript (agent_llm_ops.prepare) is reused
 *   up to the first token where the final transcript differs. When the conversation outgrows the context, the
 *   oldest user/assistant messages after the system prompt are dropped until the prompt fills at most half of
 *   the context, and the rest is re-prefilled once (a cache shift would save that prefill but is inexact for
 *   sliding-window layers); the dropped count then stays put, so later turns again cost only their own tokens.
 *   The conversations' forward passes are batched: one scheduler thread per backend packs every conversation's
 *   pending decode step and a bounded prefill chunk of each into one pass, samples each conversation's logits
 *   with its own sampler and wakes it (a conversation's thread only queues work and waits). Conversations
 *   whose prompts start with the same system message fork their cache from one prefilled copy of it instead
 *   of prefilling it again (agent_sched_stats.prefix_hits). Neither changes a result: replies and cached tokens
 *   are those of a conversation run alone.
 * - remote (agent_llm_remote.c): an OpenAI-compatible /v1/chat/completions endpoint, streamed over SSE with
 *   libcurl. It keeps nothing: every reply sends the whole list, and prepare and sync do nothing.
 *
 * Threads: a backend is shared by every conversation opened from it and is thread-safe; a conversation is used
 * by one thread at a time, except cancel, which any thread may call at any time.
 */
#ifndef BANTER_AGENT_LLM_H
#define BANTER_AGENT_LLM_H

#include "banter.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one call cost. Times are wall milliseconds from the start of the call. */
struct agent_llm_stats {
    int n_prompt;          /* tokens of the whole prompt (native; 0 for remote) */
    int n_fed;             /* tokens actually prefilled by this call (the rest was cached) */
    int n_generated;       /* pieces delivered (tokens for native, SSE deltas for remote) */
    int n_dropped;         /* oldest messages left out so the conversation fits the context */
    double prefill_ms;     /* until the prompt was in the cache (remote: until the response headers) */
    double first_piece_ms; /* until the first piece of text was delivered (0 when none) */
    double total_ms;
};

/* Receives the reply as it is generated: len bytes of UTF-8 text (a piece may end inside a character). Return
 * nonzero to continue, 0 to stop (the call then returns BANTER_ERR_CANCELLED). */
typedef int (*agent_piece_fn)(const char *piece, size_t len, void *user);

/* How a conversation samples its replies. */
struct agent_reply_config {
    banter_sampler_config sampler; /* native only */
    int max_tokens;                /* longest reply; 0 = 256 */
};

struct agent_llm_ops {
    const char *name; /* "native", "remote" */
    void (*close)(void *backend);
    /* A human-readable description of the model ("gemma3 270M Q8_0 (file.gguf)", "remote gpt-4o at URL"). */
    const char *(*describe)(void *backend);
    int (*conv_open)(void *backend, const struct agent_reply_config *cfg, void **conv, char *err,
                     size_t err_len);
    void (*conv_close)(void *conv);
    /* Brings the conversation's cache in line with msgs (which end with a user message) and prefills the
     * prompt up to the opening of the assistant's turn, without generating: the speculative prefill. */
    int (*prepare)(void *conv, const banter_chat_message *msgs, size_t n, struct agent_llm_stats *st, char *err,
                   size_t err_len);
    /* Replies to msgs, delivering pieces through fn. Returns 0 (also when the model ended or max_tokens was
     * reached), BANTER_ERR_CANCELLED (cancel, or fn returned 0; the pieces delivered so far stand), or an
     * error with a message in err. st may be NULL. */
    int (*reply)(void *conv, const banter_chat_message *msgs, size_t n, agent_piece_fn fn, void *user,
                 struct agent_llm_stats *st, char *err, size_t err_len);
    /* Drops whatever the cache holds beyond what msgs (typically the history after a barge-in cut the last
     * assistant message) render to. Cheap: no prefill. */
    int (*sync)(void *conv, const banter_chat_message *msgs, size_t n);
    /* Stops the prepare or reply in progress at its next step (any thread; no effect when idle). */
    void (*cancel)(void *conv);
    /* Tokens the conversation's cache holds (native), or -1 (remote). */
    int (*cached)(void *conv);
};

/* A backend: its functions and its state. */
struct agent_llm {
    const struct agent_llm_ops *ops;
    void *state;
};

/* Opens the native backend on a GGUF model: one model, one context with n_seq sequences (one per
 * conversation). n_ctx and n_threads as in banter_context_config (0 = default). */
int agent_llm_native_open(const char *model_path, int n_ctx, int n_seq, int n_threads, struct agent_llm *out,
                          char *err, size_t err_len);

/* The tokens a native conversation's cache holds (for tests: what a from-scratch prefill must reproduce). */
const banter_token *agent_llm_native_tokens(void *conv, int *n);

/* What the native backend's scheduler has done since open, for /metrics. A step is one forward pass. */
#define AGENT_SCHED_HIST 6
struct agent_sched_stats {
    uint64_t steps;          /* forward passes run */
    uint64_t entries;        /* tokens in them (prefill plus decode) */
    uint64_t seqs;           /* conversations in them, summed over steps (seqs / steps = mean batch) */
    uint64_t decode_tokens;  /* generated tokens fed (one per decode step of a conversation) */
    uint64_t prefill_tokens; /* prompt tokens fed */
    uint64_t batch_hist[AGENT_SCHED_HIST]; /* steps by conversations in them: 1, 2, 3-4, 5-8, 9-16, 17 or more */
    double busy_ms;          /* wall time spent in passes (and the sampling right after them) */
    uint64_t prefix_hits;    /* first prompts that forked a shared system-prompt prefix */
    uint64_t prefix_misses;  /* first prompts with a shareable prefix that no template held yet */
};

/* Copies the scheduler's counters into *out; all zero for a backend that is not native. Thread-safe. */
void agent_llm_native_sched_stats(const struct agent_llm *llm, struct agent_sched_stats *out);

/* Batching on (the default) or off: off runs one conversation's request per pass, as before the scheduler
 * batched (the benchmark's baseline). No effect on results. Thread-safe; takes effect at the next step. */
void agent_llm_native_set_batching(struct agent_llm *llm, bool on);

/* For tests: the conversation's next forward pass fails (its first entry is made invalid), as a pass that
 * fails for one conversation of a batch would. Thread-safe. */
void agent_llm_native_inject_fault(void *conv);

/* Opens the remote backend: url is the server's base ("http://host:8080" or ".../v1"; the path
 * /v1/chat/completions is appended unless url already ends with it), model the "model" field sent (NULL =
 * "default"), api_key a Bearer token (NULL = none), timeout_s the longest wait for any byte (0 = 30). Nothing
 * is contacted at open. */
int agent_llm_remote_open(const char *url, const char *model, const char *api_key, double timeout_s,
                          struct agent_llm *out, char *err, size_t err_len);

#endif
