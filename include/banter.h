/*
 * banter.h: the public C API of Banter, a real-time voice AI engine.
 *
 * Everything a program needs to load a language model from a GGUF file, hold many conversations against it at
 * once, and inspect or create model files. Every engine object is an opaque handle; its struct lives in src/.
 *
 * Conventions that hold for every function below:
 * - Functions return a banter_status: BANTER_OK (0) or a negative error. banter_status_str() names it, and the
 *   handle involved keeps a human-readable message for its last error (banter_model_error(), ...).
 * - Results go into out-parameters, which are set to NULL (or 0) on failure.
 * - Constructors and destructors come in pairs (open/close); every destructor accepts NULL.
 * - Config structs: zero means "default". banter_*_config_default() fills one in.
 * - Threads: a handle is used by one thread at a time. Different handles may be used from different threads,
 *   and a banter_model may be shared by any number of contexts on any threads (it is read-only after open).
 * - The library never prints and never exits: diagnostics go through banter_set_log().
 */
#ifndef BANTER_H
#define BANTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BANTER_BUILD)
#define BANTER_API __attribute__((visibility("default")))
#else
#define BANTER_API
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Status codes. Published values are never renumbered.
 */
typedef enum banter_status {
    BANTER_OK = 0,
    BANTER_ERR_INVALID_ARG = -1, /* a caller passed something the API does not accept */
    BANTER_ERR_NOMEM = -2,       /* an allocation failed */
    BANTER_ERR_IO = -3,          /* a file could not be opened, read or written */
    BANTER_ERR_FORMAT = -4,      /* a file is corrupt, truncated or not of the expected format */
    BANTER_ERR_UNSUPPORTED = -5, /* valid input that this build does not handle (architecture, tensor type) */
    BANTER_ERR_CONTEXT_FULL = -6, /* a sequence has no room left in its context window */
    BANTER_ERR_CANCELLED = -7,   /* work was stopped by a callback or a cancel request */
    BANTER_ERR_NOT_FOUND = -8,   /* a named key, tensor or sequence does not exist */
    BANTER_ERR_INTERNAL = -9,    /* a bug in Banter; the message says where */
    BANTER_ERR_BUSY = -10,       /* the object is doing something that must finish (or be cancelled) first */
} banter_status;

/* A static English name for a status ("ok", "out of memory", ...). Never NULL. Thread-safe. */
BANTER_API const char *banter_status_str(banter_status status);

/* The library version as "MAJOR.MINOR.PATCH". Static string. Thread-safe. */
BANTER_API const char *banter_version(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Logging. The library reports what it chose (kernels, threads, model shape) and what went wrong through one
 * process-wide callback. Without one, nothing is printed.
 */
typedef enum banter_log_level {
    BANTER_LOG_ERROR = 0,
    BANTER_LOG_WARN = 1,
    BANTER_LOG_INFO = 2,
    BANTER_LOG_DEBUG = 3,
} banter_log_level;

/* Called with one complete line (no trailing newline). May be called from any thread, concurrently. */
typedef void (*banter_log_fn)(banter_log_level level, const char *line, void *user);

/* Installs the log callback and the most verbose level passed to it. NULL removes it. Call it before other
 * threads use the library; it is not synchronized against concurrent logging. */
BANTER_API void banter_set_log(banter_log_fn fn, banter_log_level max_level, void *user);

/* ---------------------------------------------------------------------------------------------------------------
 * System information.
 */

/* A static description of the CPU kernels chosen at start-up, e.g. "avx512-vnni". Thread-safe. */
BANTER_API const char *banter_cpu_features(void);

/* Measures the machine's memory read bandwidth in GB/s by streaming a buffer larger than the caches with
 * n_threads threads (0 = all cores) for about `seconds`. Returns 0 on allocation failure. Thread-safe. */
BANTER_API double banter_measure_bandwidth(int n_threads, double seconds);

/* ---------------------------------------------------------------------------------------------------------------
 * GGUF inspection: read the metadata and tensor table of any GGUF file (model or vocabulary).
 */
typedef struct banter_gguf banter_gguf;

/* Opens and validates a GGUF file (mapped read-only). On failure *out is NULL and, if err is not NULL, a message
 * naming the problem is written to err (err_len bytes at most, NUL-terminated). Close with banter_gguf_close. */
BANTER_API banter_status banter_gguf_open(const char *path, banter_gguf **out, char *err, size_t err_len);
BANTER_API void banter_gguf_close(banter_gguf *g);

BANTER_API uint32_t banter_gguf_version(const banter_gguf *g);
BANTER_API size_t banter_gguf_n_kv(const banter_gguf *g);
BANTER_API size_t banter_gguf_n_tensors(const banter_gguf *g);

/* Writes "key = value" for metadata entry i into buf (truncated to buf_len, always NUL-terminated). Arrays show
 * their type, length and first max_items items. Returns BANTER_ERR_INVALID_ARG if i is out of range. */
BANTER_API banter_status banter_gguf_describe_kv(const banter_gguf *g, size_t i, size_t max_items, char *buf,
                                                 size_t buf_len);

/* Tensor i's name, type name, shape (ne[0] is the contiguous dimension), data offset and size. The strings are
 * owned by g and live until banter_gguf_close. */
typedef struct banter_tensor_info {
    const char *name;
    const char *type_name;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t offset;
    uint64_t n_bytes;
} banter_tensor_info;
BANTER_API banter_status banter_gguf_tensor(const banter_gguf *g, size_t i, banter_tensor_info *info);

/* ---------------------------------------------------------------------------------------------------------------
 * Models. A banter_model is a loaded GGUF language model: weights (mapped, never copied unless repacked once for
 * speed), hyperparameters, tokenizer and chat template. It is immutable after open and may be shared by any
 * number of contexts and threads.
 */
typedef struct banter_model banter_model;

typedef struct banter_model_config {
    int n_threads; /* threads for the kernels of contexts created from this model; 0 = all cores */
} banter_model_config;

BANTER_API banter_model_config banter_model_config_default(void);

/* Loads a model. On failure *out is NULL and err (if not NULL) holds a message naming the problem. */
BANTER_API banter_status banter_model_open(const char *path, const banter_model_config *cfg, banter_model **out,
                                           char *err, size_t err_len);
BANTER_API void banter_model_close(banter_model *m);

typedef struct banter_model_desc {
    const char *arch;       /* "gemma3", "llama" */
    const char *name;       /* general.name, or "" */
    const char *chat_format; /* "gemma", "llama3", "chatml", "llama2" */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    uint64_t n_params;      /* parameters in the weight tensors */
    uint64_t n_bytes;       /* bytes of the weight tensors */
    const char *weight_type; /* the most common weight type, e.g. "Q8_0" */
    int32_t bos, eos, eot;  /* special tokens, -1 when absent */
} banter_model_desc;

/* Fills *desc. Strings are owned by the model. Thread-safe. */
BANTER_API void banter_model_describe(const banter_model *m, banter_model_desc *desc);

/* ---------------------------------------------------------------------------------------------------------------
 * Tokens and text. Thread-safe (the model is read-only).
 */
typedef int32_t banter_token;

/* Tokenizes len bytes of text (invalid UTF-8 is replaced by U+FFFD per bad byte, as the reference tokenizers do).
 * add_bos prepends BOS where the model asks for it; parse_special recognizes control tokens such as
 * "<start_of_turn>" written in the text. Writes at most n_max tokens; *n_out receives the full count, and if it
 * exceeds n_max the result is BANTER_ERR_INVALID_ARG with nothing useful in tokens (call again, larger). */
BANTER_API banter_status banter_tokenize(const banter_model *m, const char *text, size_t len, bool add_bos,
                                         bool parse_special, banter_token *tokens, size_t n_max, size_t *n_out);

/* The text of one token as it appears in output (SentencePiece "▁" becomes a space, byte tokens become their
 * byte). Control tokens yield "" unless render_special. Returns the byte length, which may exceed buf_len (the
 * output is then truncated); -1 for an invalid token. The output is not NUL-terminated. */
BANTER_API int banter_token_to_piece(const banter_model *m, banter_token t, bool render_special, char *buf,
                                     size_t buf_len);

/* True for tokens that end a turn (EOS, EOT, <end_of_turn>, <|eot_id|>, ...). */
BANTER_API bool banter_token_is_eog(const banter_model *m, banter_token t);

/* ---------------------------------------------------------------------------------------------------------------
 * Chat formatting. Renders messages with the model's chat format into the exact prompt text the model was
 * trained on, optionally ending with the opening of an assistant turn.
 */
typedef struct banter_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 text */
} banter_chat_message;

/* Writes the rendered prompt (NUL-terminated) into buf. Returns the length needed without the NUL, which may be
 * >= buf_len (then call again with a larger buffer), or -1 if a role is unknown. Thread-safe. */
BANTER_API long banter_chat_render(const banter_model *m, const banter_chat_message *msgs, size_t n_msgs,
                                   bool add_assistant_prompt, char *buf, size_t buf_len);

/* ---------------------------------------------------------------------------------------------------------------
 * Contexts and sequences. A context holds the KV caches of up to n_seq conversations ("sequences") and runs
 * batched forward passes over them. Memory for activations and caches is allocated once, at open.
 */
typedef struct banter_context banter_context;

typedef struct banter_context_config {
    int n_ctx;   /* positions per sequence; 0 = min(model's training context, 4096) */
    int n_seq;   /* sequences that may exist at once; 0 = 1 */
    int n_batch; /* most tokens in one forward pass; 0 = 512 */
    int n_outputs; /* most batch entries with want_logits in one forward pass; 0 = max(n_seq, 1) */
    int n_threads; /* kernel threads; 0 = the model's setting */
} banter_context_config;

BANTER_API banter_context_config banter_context_config_default(void);

BANTER_API banter_status banter_context_open(const banter_model *m, const banter_context_config *cfg,
                                             banter_context **out);
BANTER_API void banter_context_close(banter_context *c);

/* The message of the context's last error. Owned by the context, valid until its next call. */
BANTER_API const char *banter_context_error(const banter_context *c);

/* Positions per sequence (the n_ctx the context was opened with, defaults resolved). */
BANTER_API int banter_context_n_ctx(const banter_context *c);

/* Bytes held by the context (KV caches plus scratch). */
BANTER_API size_t banter_context_bytes(const banter_context *c);

/* Creates an empty sequence and writes its id (0 .. n_seq-1). BANTER_ERR_CONTEXT_FULL when all are in use. */
BANTER_API banter_status banter_seq_open(banter_context *c, int *seq);

/* Frees a sequence and its cache. Accepts ids that are not open (no-op). */
BANTER_API void banter_seq_close(banter_context *c, int seq);

/* Number of positions held in the sequence's cache (the next token goes at this position). */
BANTER_API int banter_seq_len(const banter_context *c, int seq);

/* Drops every cached position >= n_keep, so the sequence continues from position n_keep. Used for barge-in
 * rollback and regeneration. n_keep must be <= banter_seq_len. */
BANTER_API banter_status banter_seq_truncate(banter_context *c, int seq, int n_keep);

/* Opens a new sequence holding a copy of the first n_keep positions of src (n_keep < 0 = all). One prefilled
 * system prompt can seed many conversations this way. */
BANTER_API banter_status banter_seq_fork(banter_context *c, int src, int n_keep, int *dst);

/* One entry of a batch: feed `token` at position `pos` of sequence `seq`. Positions of one sequence must be
 * consecutive and continue from banter_seq_len. When want_logits is set, the logits after this token are kept. */
typedef struct banter_batch_entry {
    banter_token token;
    int seq;
    int pos;
    bool want_logits;
} banter_batch_entry;

/* Runs one forward pass over n entries (any mix of sequences, at most n_batch). On success, banter_logits(c, i)
 * returns the logits of entry i if it asked for them. On error no sequence is changed. */
BANTER_API banter_status banter_decode(banter_context *c, const banter_batch_entry *entries, int n);

/* The n_vocab logits of batch entry i of the last banter_decode, or NULL if it did not ask for them. Owned by the
 * context; valid until the next banter_decode. */
BANTER_API const float *banter_logits(const banter_context *c, int i);

/* Appends tokens to a sequence, in chunks of n_batch, keeping only the logits of the last token (returned through
 * *logits when not NULL, valid until the next decode). The common "prefill" step. */
BANTER_API banter_status banter_seq_feed(banter_context *c, int seq, const banter_token *tokens, int n,
                                         const float **logits);

/* Asks the context to stop the banter_decode (or generation) in progress at the next step boundary. May be called
 * from any thread. The call in progress then returns BANTER_ERR_CANCELLED and the flag is cleared. */
BANTER_API void banter_context_cancel(banter_context *c);

/* ---------------------------------------------------------------------------------------------------------------
 * Sampling.
 */
typedef struct banter_sampler banter_sampler;

typedef struct banter_sampler_config {
    float temperature;  /* 0 = greedy (argmax, ties to the lowest id); default 0.8 in banter_sampler_config_default */
    int top_k;          /* 0 = off */
    float top_p;        /* 1 or 0 = off */
    float min_p;        /* 0 = off */
    float repeat_penalty; /* 1 or 0 = off; divides positive and multiplies negative logits of recent tokens */
    int repeat_last_n;  /* how many recent tokens the penalty looks at; 0 = 64 */
    uint64_t seed;      /* 0 = a fixed default seed, so runs are reproducible */
} banter_sampler_config;

BANTER_API banter_sampler_config banter_sampler_config_default(void);
BANTER_API banter_status banter_sampler_open(const banter_sampler_config *cfg, int n_vocab, banter_sampler **out);
BANTER_API void banter_sampler_close(banter_sampler *s);

/* Picks a token from logits (not modified). Deterministic for a given seed and sequence of calls. */
BANTER_API banter_token banter_sampler_sample(banter_sampler *s, const float *logits);

/* Tells the sampler a token was emitted or fed (for the repetition penalty). */
BANTER_API void banter_sampler_accept(banter_sampler *s, banter_token t);

/* Forgets the accepted history and restarts the random stream from the seed. */
BANTER_API void banter_sampler_reset(banter_sampler *s);

/* ---------------------------------------------------------------------------------------------------------------
 * Generation: feed a prompt, then sample and stream tokens until an end-of-generation token, max_tokens, a full
 * context, a cancel, or the callback returning 0.
 */

/* Called once per generated token with its text piece (not NUL-terminated). Return nonzero to continue, 0 to
 * stop. */
typedef int (*banter_token_fn)(banter_token t, const char *piece, size_t piece_len, void *user);

typedef struct banter_generate_stats {
    int n_prompt;        /* tokens fed */
    int n_generated;     /* tokens sampled (including a final end-of-generation token) */
    double prefill_ms;   /* wall time of feeding the prompt */
    double decode_ms;    /* wall time of the decode steps */
    bool stopped_eog;    /* ended on an end-of-generation token */
} banter_generate_stats;

BANTER_API banter_status banter_generate(banter_context *c, int seq, const banter_token *prompt, int n_prompt,
                                         banter_sampler *s, int max_tokens, banter_token_fn on_token, void *user,
                                         banter_generate_stats *stats);

/* ---------------------------------------------------------------------------------------------------------------
 * Synthetic models: a random-weight GGUF model of a real architecture and shape, for tests and benchmarks that
 * must not depend on a download.
 */
typedef struct banter_synth_config {
    const char *arch;        /* "gemma3" (default) or "llama" */
    const char *shape;       /* "tiny", "270m", "1b"; default "tiny" */
    const char *weight_type; /* "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M"; default "Q8_0" */
    const char *vocab_from;  /* copy the tokenizer from this GGUF; NULL = a small synthetic vocabulary */
    uint64_t seed;           /* 0 = 1 */
} banter_synth_config;

/* Writes a synthetic model to path. err as in banter_model_open. Thread-safe. */
BANTER_API banter_status banter_model_synth(const banter_synth_config *cfg, const char *path, char *err,
                                            size_t err_len);

/* ---------------------------------------------------------------------------------------------------------------
 * Speech: recognition (ASR) and synthesis (TTS) with the built-in engines. Audio crosses the API as mono float
 * samples in [-1, 1] at BANTER_SAMPLE_RATE (16 kHz) in both directions; files in other formats and rates are
 * converted on the way in.
 */
#define BANTER_SAMPLE_RATE 16000

/* Reads a sound file (WAV, FLAC, Ogg, ...; any rate and channel count) as 16 kHz mono float. Files longer than
 * max_seconds (0 = 3600) are refused. *samples is freed with banter_audio_free. Thread-safe. */
BANTER_API banter_status banter_audio_read(const char *path, double max_seconds, float **samples, size_t *n,
                                           char *err, size_t err_len);
BANTER_API void banter_audio_free(float *samples);

/* Writes 16 kHz mono float samples as 16-bit WAV (FLAC for .flac, Ogg Vorbis for .ogg). Thread-safe. */
BANTER_API banter_status banter_audio_write(const char *path, const float *samples, size_t n, char *err,
                                            size_t err_len);

/* A speech recognizer: a loaded model and one decoder. Opening one loads the model (PocketSphinx: 0.5-1 s and
 * about 100 MB), so open it once and keep it; each utterance after that is cheap. One thread at a time. */
typedef struct banter_asr banter_asr;

typedef struct banter_asr_config {
    const char *engine;    /* "pocketsphinx" (the default, also for NULL or "") */
    bool second_pass;      /* rescore each utterance when it ends: a little more accurate, but the final text
                              comes ~100-150 ms later instead of ~10 ms. Default off (latency first). */
    const char *model_dir; /* directory holding en-us/ (NULL = Debian's /usr/share/pocketsphinx/model) */
} banter_asr_config;

/* What one utterance cost. */
typedef struct banter_asr_timing {
    double audio_ms;  /* length of the audio recognized */
    double decode_ms; /* wall time spent recognizing it (audio_ms / decode_ms is the speed-up over real time) */
    double final_ms;  /* wall time from the last sample to the final text (inside banter_asr_end) */
} banter_asr_timing;

BANTER_API banter_asr_config banter_asr_config_default(void);

/* Loads a recognizer. On failure *out is NULL and err (if not NULL) holds a message naming the problem (unknown
 * engine, missing model files). Thread-safe. Close with banter_asr_close (accepts NULL). */
BANTER_API banter_status banter_asr_open(const banter_asr_config *cfg, banter_asr **out, char *err,
                                         size_t err_len);
BANTER_API void banter_asr_close(banter_asr *a);

/* The message of the recognizer's last error. Owned by a, valid until its next call. */
BANTER_API const char *banter_asr_error(const banter_asr *a);

/* Recognizes one utterance of n samples (16 kHz mono float). *text receives the words in lower case separated
 * by single spaces ("" when nothing was recognized); it is owned by a and valid until the next call on a.
 * timing may be NULL. */
BANTER_API banter_status banter_asr_transcribe(banter_asr *a, const float *samples, size_t n, const char **text,
                                               banter_asr_timing *timing);

/* Reads a sound file (WAV, FLAC, Ogg, ...; any rate and channel count, converted to 16 kHz mono) and recognizes
 * it as one utterance, like banter_asr_transcribe. BANTER_ERR_IO for a file that cannot be opened,
 * BANTER_ERR_FORMAT for one that is not audio; banter_asr_error says which. */
BANTER_API banter_status banter_asr_transcribe_file(banter_asr *a, const char *path, const char **text,
                                                    banter_asr_timing *timing);

/* Streaming recognition of one utterance: begin, feed samples as they arrive (any number at a time), read the
 * partial hypothesis whenever wanted, and end to get the final text. begin during an utterance abandons it. */
BANTER_API banter_status banter_asr_begin(banter_asr *a);
BANTER_API banter_status banter_asr_feed(banter_asr *a, const float *samples, size_t n);

/* The best hypothesis so far ("" before any word, or outside an utterance). Owned by a, valid until its next
 * call. Computing it costs a little, so ask every few hundred ms rather than every frame. */
BANTER_API const char *banter_asr_partial(banter_asr *a);

/* Ends the utterance. *text as in banter_asr_transcribe; timing may be NULL. */
BANTER_API banter_status banter_asr_end(banter_asr *a, const char **text, banter_asr_timing *timing);

/* A speech synthesizer: an engine with a voice, rate and pitch. The engines' libraries keep global state, so
 * each engine runs on one worker thread of its own, shared by every handle of that engine: handles may be used
 * from any threads at once and their requests take turns. Each handle is used by one thread at a time. */
typedef struct banter_tts banter_tts;

typedef struct banter_tts_config {
    const char *engine; /* "flite" (the default, also for NULL or "") or "espeak" (eSpeak NG) */
    const char *voice;  /* flite: "slt" (default, the most natural) or "kal16"; espeak: any eSpeak NG voice or
                           language name ("en-us" by default, "en", "de", "fr", ...). NULL = the default. */
    int rate;           /* speaking rate in words per minute, 80 to 450; 0 = the voice's normal pace (~175) */
    int pitch;          /* 1 (lowest) to 100 (highest), 50 = the voice's natural pitch; 0 = 50 */
} banter_tts_config;

/* Where a piece of audio belongs. Text is spoken in chunks of a clause or a sentence (cut as banter's reply
 * chunker cuts streamed text), each synthesized as it comes, so audio starts after the first clause. */
typedef struct banter_tts_chunk {
    int index;            /* 0, 1, ... in text order */
    size_t text_offset;   /* the byte span of the input text this chunk speaks */
    size_t text_len;
    size_t sample_offset; /* samples delivered for earlier chunks (where this chunk starts in the whole audio) */
    size_t n_samples;     /* samples of this chunk delivered so far, including this piece */
    bool done;            /* this is the chunk's last piece; n_samples is its final length */
} banter_tts_chunk;

/* Receives audio as it is produced: n samples (16 kHz mono float), which may be 0 on a chunk's last piece.
 * samples and chunk are borrowed for the call. Called on the engine's worker thread while the caller of
 * banter_tts_synthesize waits: keep it short, and do not call banter_tts functions from it other than
 * banter_tts_cancel. Return nonzero to continue, 0 to stop (the synthesis then returns BANTER_ERR_CANCELLED). */
typedef int (*banter_tts_audio_fn)(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user);

typedef struct banter_tts_stats {
    size_t n_samples;      /* audio produced, in samples */
    int n_chunks;          /* text chunks spoken */
    double first_audio_ms; /* from the call to the first audio sample (0 when there was no audio) */
    double total_ms;       /* wall time of the whole call */
} banter_tts_stats;

BANTER_API banter_tts_config banter_tts_config_default(void);

/* Opens a synthesizer, starting its engine's worker thread if no handle of that engine is open. An unknown
 * engine or voice, or a rate or pitch out of range, is BANTER_ERR_INVALID_ARG (BANTER_ERR_NOT_FOUND for an
 * unknown voice) with a message in err. Thread-safe. Close with banter_tts_close (accepts NULL). */
BANTER_API banter_status banter_tts_open(const banter_tts_config *cfg, banter_tts **out, char *err,
                                         size_t err_len);
BANTER_API void banter_tts_close(banter_tts *t);

/* The message of the synthesizer's last error. Owned by t, valid until its next call. */
BANTER_API const char *banter_tts_error(const banter_tts *t);

/* Speaks UTF-8 text, delivering audio through on_audio as it is produced, and returns when all of it has been
 * delivered. Empty or blank text produces no audio and no callback. stats may be NULL. */
BANTER_API banter_status banter_tts_synthesize(banter_tts *t, const char *text, banter_tts_audio_fn on_audio,
                                               void *user, banter_tts_stats *stats);

/* Speaks text into a sound file at 16 kHz (16-bit WAV, or FLAC if the path ends in .flac). stats may be NULL. */
BANTER_API banter_status banter_tts_synthesize_file(banter_tts *t, const char *text, const char *path,
                                                    banter_tts_stats *stats);

/* Asks the synthesis in progress on t to stop at its next piece of audio; it then returns BANTER_ERR_CANCELLED.
 * May be called from any thread, including from on_audio. Without a synthesis in progress it does nothing. */
BANTER_API void banter_tts_cancel(banter_tts *t);

/* ---------------------------------------------------------------------------------------------------------------
 * Conversations: the voice pipeline. A banter_session holds one spoken conversation: audio in, spoken answer out.
 * Inside, every stage streams into the next (see the README): voice activity detection finds the end of the
 * user's turn, the recognizer's final text becomes a user message, the language model prefills only the new
 * turn's tokens into the conversation's KV cache and streams its reply into a clause chunker, and each clause is
 * synthesized as soon as it is complete. Speech during the reply (barge-in) stops generation and playback at
 * once, cuts the assistant's message to the words actually played, and truncates the KV cache to match.
 */

/* A language model for conversations: the native engine on a GGUF file, or a remote OpenAI-compatible
 * server. One serves any number of sessions (up to n_sessions for the native engine). Thread-safe. */
typedef struct banter_llm banter_llm;

typedef struct banter_llm_config {
    const char *model;        /* GGUF file for the native engine; or NULL and: */
    const char *url;          /* an OpenAI-compatible server ("http://host:port", "/v1" optional), streamed over
                                 SSE from /v1/chat/completions */
    const char *remote_model; /* the "model" field sent to the server (NULL = "default") */
    const char *api_key;      /* sent as "Authorization: Bearer KEY" (NULL = none) */
    double timeout_s;         /* remote: the longest wait for any byte of the answer; 0 = 30 */
    int n_ctx;                /* native: positions per conversation; 0 = min(model's, 4096) */
    int n_sessions;           /* native: conversations at once (KV caches); 0 = 1 */
    int n_threads;            /* native: kernel threads; 0 = all cores */
} banter_llm_config;

BANTER_API banter_llm_config banter_llm_config_default(void);

/* Opens a language model (exactly one of model and url). On failure *out is NULL and err holds a message. */
BANTER_API banter_status banter_llm_open(const banter_llm_config *cfg, banter_llm **out, char *err,
                                         size_t err_len);
BANTER_API void banter_llm_close(banter_llm *l);

/* A one-line description of the model. Owned by l. Thread-safe. */
BANTER_API const char *banter_llm_describe(const banter_llm *l);

typedef struct banter_session banter_session;

typedef enum banter_session_state {
    BANTER_STATE_LISTENING = 0,     /* waiting for the user */
    BANTER_STATE_USER_SPEAKING = 1, /* the user is speaking */
    BANTER_STATE_THINKING = 2,      /* the turn ended; the reply is being prepared, nothing audible yet */
    BANTER_STATE_SPEAKING = 3,      /* reply audio is being played */
} banter_session_state;

/* "listening", "user_speaking", "thinking", "speaking". Static. */
BANTER_API const char *banter_session_state_str(banter_session_state state);

typedef enum banter_event_type {
    BANTER_EVENT_STATE = 1,        /* the state changed to ev->state */
    BANTER_EVENT_SPEECH_START = 2, /* speech began at input sample ev->sample_pos */
    BANTER_EVENT_SPEECH_END = 3,   /* speech ended at ev->sample_pos; the endpoint was decided now */
    BANTER_EVENT_PARTIAL = 4,      /* ev->text: the recognizer's hypothesis so far */
    BANTER_EVENT_USER_TEXT = 5,    /* ev->text: the final transcript, now the user's message */
    BANTER_EVENT_NO_TURN = 6,      /* speech ended but nothing was recognized; no turn was taken */
    BANTER_EVENT_REPLY_TEXT = 7,   /* ev->text: the next piece of the reply as the model writes it */
    BANTER_EVENT_REPLY_CHUNK = 8,  /* ev->text: a clause handed to the synthesizer */
    BANTER_EVENT_AUDIO = 9,        /* ev->samples: reply audio as it is synthesized (before it is played) */
    BANTER_EVENT_BARGE_IN = 10,    /* the user interrupted; ev->text: the part of the reply that was heard */
    BANTER_EVENT_REPLY_DONE = 11,  /* ev->text: the assistant message as it now stands in the history */
    BANTER_EVENT_TURN = 12,        /* ev->turn: the latency record of the turn that just ended */
    BANTER_EVENT_ERROR = 13,       /* ev->status and ev->text: what failed; the session carries on */
} banter_event_type;

/* The latency record of one turn. Positions count input samples (16 kHz) since the session opened; times are
 * wall milliseconds after the endpoint was decided (0 when the stage did not happen). The headline figure is
 * total_ms: end of user speech to first reply audio = endpoint_delay_ms + processing_ms. */
typedef struct banter_turn_stats {
    int turn;                 /* 1, 2, ... */
    int64_t speech_end_pos;   /* where the user's speech ended in the input */
    int64_t endpoint_pos;     /* where the endpoint was decided (speech end + the silence wait) */
    double endpoint_delay_ms; /* (endpoint_pos - speech_end_pos) in ms of audio */
    double asr_final_ms;      /* the recognizer's final text */
    double first_token_ms;    /* the model's first piece of text */
    double first_chunk_ms;    /* the first clause handed to the synthesizer */
    double first_audio_ms;    /* the first reply sample ready to play: the processing latency */
    double processing_ms;     /* = first_audio_ms */
    double total_ms;          /* endpoint_delay_ms + processing_ms */
    double reply_ms;          /* until the reply was fully generated and synthesized */
    double cpu_ms;            /* CPU time of the whole process from the endpoint to the end of the reply */
    int n_prompt;             /* tokens of the prompt (native engine) */
    int n_prefilled;          /* of which prefilled in this turn (the rest was cached, or prefilled
                                 speculatively while the user paused) */
    int n_speculated;         /* tokens prefilled speculatively before the endpoint */
    int n_generated;          /* pieces of reply text generated */
    size_t n_reply_samples;   /* reply audio synthesized */
    bool interrupted;         /* the user barged in */
    bool failed;              /* the language model failed and an apology was spoken */
} banter_turn_stats;

typedef struct banter_event {
    banter_event_type type;
    banter_session_state state; /* the state after this event */
    const char *text;           /* NUL-terminated UTF-8, or NULL */
    const float *samples;       /* AUDIO: 16 kHz mono float */
    size_t n_samples;
    int64_t sample_pos; /* SPEECH_START / SPEECH_END: input position */
    const banter_turn_stats *turn; /* TURN */
    banter_status status;          /* ERROR */
} banter_event;

/* Receives the session's events. Everything it points to is borrowed for the call. Called from the thread
 * that calls banter_session_process and from the session's own threads, never two at once for one session.
 * It must not call banter_session_* functions (it may signal another thread that does). */
typedef void (*banter_event_fn)(const banter_event *ev, void *user);

typedef struct banter_session_config {
    const char *system_prompt; /* NULL = a short voice-assistant prompt; "" = none */
    banter_tts_config tts;     /* the assistant's voice (zero = Flite slt) */
    const banter_sampler_config *sampler; /* NULL = banter_sampler_config_default() */
    int max_reply_tokens;      /* 0 = 200 */
    int end_silence_ms;        /* silence that ends the user's turn; 0 = 400 (the recognizer's endpoint) */
    int speculate_ms;          /* after this much silence, answer the partial transcript before the endpoint
                                  (held, played at the endpoint if the final transcript is the same);
                                  0 = 150, negative = never */
    bool no_barge_in;          /* ignore speech while the assistant speaks (for open speakers without echo
                                  cancellation) */
    const char *apology;       /* spoken when the language model fails; NULL = a default sentence */
    bool no_playout;           /* the application plays the AUDIO events itself and does not take output from
                                  banter_session_process: audio counts as played as soon as it is delivered
                                  (so a barge-in keeps everything synthesized so far) */
    bool manual_turns;         /* no voice activity detection: all input is the user's turn until
                                  banter_session_commit (push-to-talk, or a client that detects turns itself) */
    bool no_auto_reply;        /* a finished user turn becomes a message but is not answered until
                                  banter_session_respond (no speculative reply either) */
    bool text_only;            /* replies are text only (REPLY_TEXT events, no synthesis; banter_session_respond
                                  chooses per reply) */
} banter_session_config;

BANTER_API banter_session_config banter_session_config_default(void);

/* Opens a conversation on a language model and a recognizer (whose loaded model it shares; the session takes
 * a decoder of its own). Starts the session's reply thread. on_event may be NULL. On failure *out is NULL and
 * err holds a message. Close with banter_session_close, before the llm and asr it uses. */
BANTER_API banter_status banter_session_open(banter_llm *llm, banter_asr *asr, const banter_session_config *cfg,
                                             banter_event_fn on_event, void *user, banter_session **out,
                                             char *err, size_t err_len);

/* Stops the reply in progress and frees the session. Accepts NULL. */
BANTER_API void banter_session_close(banter_session *s);

/* Full-duplex audio, the way a sound card runs: n samples of microphone input in (16 kHz mono float; NULL =
 * silence), n samples of speaker output out (reply audio, or silence; NULL = discard). Call it at the pace of
 * real time with any n (20 ms is natural). The output written here is what counts as played, which is what a
 * barge-in keeps; a reply is complete (REPLY_DONE, TURN) once all its audio was taken here, unless the session
 * was opened with no_playout. Input beyond 1 s per call is rejected (BANTER_ERR_INVALID_ARG). */
BANTER_API banter_status banter_session_process(banter_session *s, const float *in, float *out, size_t n);

/* A typed user turn: the text is answered as if it had been spoken (interrupting a reply in progress). */
BANTER_API banter_status banter_session_send_text(banter_session *s, const char *text);

/* Stops the reply in progress as a barge-in would (the message is cut to what was played); a reply asked for
 * but not begun yet ends as soon as it begins (with its REPLY_DONE and TURN events). No effect when idle. */
BANTER_API void banter_session_interrupt(banter_session *s);

/* Changes the settings of an open session: system_prompt (replaces the system message; the KV cache keeps
 * what still matches), tts (from the next reply), end_silence_ms, speculate_ms, no_barge_in, apology,
 * manual_turns, no_auto_reply, text_only and max_reply_tokens (from the next reply, at most its value at open).
 * sampler and no_playout keep their values from open. Call it
 * from the thread that calls banter_session_process. Returns BANTER_ERR_INVALID_ARG (nothing changed) for
 * settings out of range or a voice that does not exist, with a message in err. */
BANTER_API banter_status banter_session_update(banter_session *s, const banter_session_config *cfg, char *err,
                                               size_t err_len);

/* Ends the user's turn now, as the endpoint would: the audio since the turn began (with manual_turns, all input
 * since the last commit or clear) is transcribed into a user message (USER_TEXT) and answered unless
 * no_auto_reply. BANTER_ERR_NOT_FOUND when there is no speech to commit (nothing was recognized: NO_TURN). Call
 * it from the thread that calls banter_session_process. */
BANTER_API banter_status banter_session_commit(banter_session *s);

/* Drops the user's turn in progress (its audio is forgotten). Same thread as banter_session_process. */
BANTER_API void banter_session_clear_input(banter_session *s);

/* Appends a message to the history without answering it. role is "user" or "assistant". BANTER_ERR_BUSY while
 * a reply is being generated; BANTER_ERR_INVALID_ARG for another role, or empty or oversized text (64 KiB).
 * Thread-safe. */
BANTER_API banter_status banter_session_add_message(banter_session *s, const char *role, const char *text);

/* Answers the history as it stands (after banter_session_add_message, or a turn taken with no_auto_reply); with
 * audio false the reply is text only (REPLY_TEXT events, no synthesis). BANTER_ERR_BUSY when a reply is already
 * being generated; BANTER_ERR_INVALID_ARG when the history does not end with a user message. Thread-safe. */
BANTER_API banter_status banter_session_respond(banter_session *s, bool audio);

/* The listener heard only the first `played` samples (16 kHz) of the last reply's audio: its message (and the
 * language model's cache) is cut to the words heard by then, as at a barge-in. A reply still in progress is
 * stopped there. A cut never lengthens the message (cutting again at a later point changes nothing; a reply cut
 * to nothing has no message left, and cutting it again is BANTER_OK with no change). Returns
 * BANTER_ERR_NOT_FOUND when the history does not end with the last reply made by this session, and writes
 * the length of the reply's audio so far in samples to *reply_samples when not NULL (on BANTER_OK).
 * Thread-safe. */
BANTER_API banter_status banter_session_truncate(banter_session *s, size_t played, size_t *reply_samples);

BANTER_API banter_session_state banter_session_get_state(const banter_session *s);

/* True while a turn is being answered or reply audio waits to be played. */
BANTER_API bool banter_session_busy(const banter_session *s);

/* Blocks until the session has no reply being generated (audio may still wait to be played), or timeout_ms
 * passes (negative = forever). Returns true when idle. */
BANTER_API bool banter_session_wait_reply(banter_session *s, int timeout_ms);

/* Messages in the history, and a copy of message i: its role ("system", "user", "assistant") and its content
 * written NUL-terminated into buf (truncated to buf_len). Returns the content's full length, or -1 when i is out
 * of range. Thread-safe with the session's own threads. */
BANTER_API size_t banter_session_n_messages(const banter_session *s);
BANTER_API long banter_session_message(const banter_session *s, size_t i, const char **role, char *buf,
                                       size_t buf_len);

/* Tokens held in the conversation's KV cache (native engine), or -1 (remote). */
BANTER_API int banter_session_cached_tokens(const banter_session *s);

#ifdef __cplusplus
}
#endif

#endif /* BANTER_H */
