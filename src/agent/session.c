/*
 * session.c: one spoken conversation: the state machine, turn-taking, barge-in and the latency record.
 *
 * Threads and what each owns:
 * - The caller's thread runs banter_session_process: it cuts the input into 20 ms frames, runs the VAD, feeds
 *   the session's ASR stream while the user speaks, and at the endpoint takes the recognizer's final text (the
 *   forward pass only: ~10-20 ms) and posts a REPLY job. It also plays out reply audio (the output queue), and a
 *   barge-in starts here: speech while a reply is active cancels the model and the synthesizer and empties the
 *   queue at once. The VAD, the ASR stream and the frame buffer belong to this thread alone.
 * - The session's worker thread runs jobs one at a time: SPECULATE and REPLY. Both stream the model's reply into
 *   the clause chunker and hand each clause to the synthesizer as soon as it is complete. REPLY appends the user
 *   message first, waits for playout or a barge-in at the end, then writes the assistant message as heard and
 *   truncates the KV cache to match. SPECULATE is the speculative reply: once the user has been silent for
 *   speculate_ms (less than the endpoint wait), the partial transcript is answered as if it were final, but
 *   held: its audio is queued and not played, and generation stops after the first clause. At the endpoint,
 *   if the final transcript is the same, the held reply becomes the turn's reply and its audio is released at
 *   once (spec_confirm); otherwise it is dropped (spec_reject) and a REPLY follows, reusing whatever prefix of
 *   the cache still matches. The language-model conversation is used by this thread only (cancel excepted).
 * - The synthesizer's worker thread (shared by every handle of the engine, tts.h) delivers audio into the output
 *   queue through on_audio.
 *
 * Everything those threads share is guarded by s->lock (the fields say so). Events are emitted with s->lock held,
 * so callbacks are serialized; they must not call back into the session.
 *
 * Heard text: every piece of synthesized audio carries the byte span of the reply it speaks (agent_span). The
 * samples popped by banter_session_process are what was played; at a barge-in, agent_heard_len maps that count
 * back to the reply text, rounding down to whole words. The assistant message in the history becomes that
 * text, and the backend's sync drops the cached tokens beyond it: the model remembers what the user heard.
 *
 * Bounds: at most 1 s of input per process call; an utterance longer than MAX_UTTERANCE_S is ended there (the
 * rest of that speech is ignored until the VAD sees it end); reply audio waiting to be played is capped at
 * MAX_QUEUE_S (the synthesizer is stopped beyond it).
 */
#include "agent/agent.h"
#include "asr/asr.h"
#include "audio/audio.h"
#include "audio/vad.h"
#include "core/core.h"
#include "tts/chunker.h"
#include "tts/tts.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_UTTERANCE_S 30
#define MAX_QUEUE_S 300
#define PARTIAL_EVERY_MS 300
#define DEFAULT_SYSTEM_PROMPT                                                                                  \
    "You are Banter, a friendly voice assistant. Your words are spoken aloud: answer in one to three short, "      \
    "plain sentences, without lists, markdown or emoji."
#define DEFAULT_APOLOGY "Sorry, I can't answer right now. Please try again in a moment."

/* The reply's clauses: the first one short (it decides the time to first audio), the rest natural. */
static const struct tts_chunker_config REPLY_CHUNKS = {.first_max_words = 5, .first_max_bytes = 40};

/* JOB_MESSAGE appends a user message without answering it (no_auto_reply), after the job before it. */
enum job_kind { JOB_NONE = 0, JOB_SPECULATE, JOB_REPLY, JOB_MESSAGE };

struct msg {
    const char *role; /* static string */
    char *content;
};

/* A turn waiting for the worker, with what the caller's thread measured. */
struct job {
    enum job_kind kind;
    char *text;        /* the user's new message; NULL for a REPLY that answers the history as it stands */
    bool text_only;    /* no synthesis: the reply is text only */
    bool cancelled;    /* interrupted before it began: it ends at once (its user message stays) */
    double t_endpoint; /* wall ms when the endpoint was decided (or the text arrived) */
    double cpu_endpoint;
    banter_turn_stats stats;
};

/* One clause handed to the synthesizer. */
struct tts_req {
    struct tts_job job;
    banter_session *s;
    unsigned gen;       /* the reply it belongs to */
    size_t text_base;   /* where its text starts in the reply */
    int span_base;      /* index of its first span in s->spans, -1 before its first audio */
    int last_chunk;     /* the synthesizer's chunk index of the latest span */
    struct tts_req *next;
};

struct banter_session {
    banter_llm *llm;
    void *conv;
    struct asr_stream *asr;
    struct vad *vad;
    banter_tts *tts;
    banter_event_fn on_event;
    void *user;
    banter_session_config cfg;
    char *system_prompt;
    char *apology;
    char *tts_engine, *tts_voice; /* the voice's settings as given (NULL = default), to tell a change */
    int tts_rate, tts_pitch;
    int max_reply_open;           /* max_reply_tokens at open: the backend conversation's own limit */

    /* The caller's thread only. */
    float frame[AUDIO_FRAME];
    size_t n_frame;
    bool in_utt;            /* an ASR utterance is open */
    bool ignoring;          /* speech being ignored until the VAD ends it (too long, or no barge-in) */
    int64_t utt_samples;
    int silence_frames;     /* consecutive frames below the VAD's stay threshold inside speech */
    bool speculated;        /* a SPECULATE was posted for the current pause */
    double t_partial;
    char last_partial[256];
    float *scratch;         /* [vad_recent_capacity]: the pre-roll */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t worker;
    bool worker_started;

    /* Guarded by lock. */
    banter_session_state state;
    struct msg *msgs;
    size_t n_msgs, cap_msgs;
    struct job pending;     /* the next job (kind JOB_NONE when there is none) */
    bool busy;              /* the worker is running a job */
    bool reply_active;      /* from a REPLY's start until its message is final */
    bool stop;
    int64_t in_pos;         /* input samples consumed */
    int turn;
    unsigned gen;           /* reply generation: audio of an older reply is dropped */
    bool barged;            /* the current reply was interrupted */
    size_t barge_played;    /* its samples played at that moment (or as a truncate says) */
    bool text_only;         /* the current reply is not synthesized */
    bool msg_final;         /* the current reply's assistant message is in the history */
    double t_first_audio;   /* wall ms when the current reply's first audio was delivered (0 before) */
    bool has_reply;         /* reply, spans and reply_pos describe the last reply, whose message may be cut */
    size_t reply_pos;       /* where that reply's assistant message is (or would be, when nothing was heard) */
    bool need_sync;         /* the history was cut while the worker was busy: sync the cache after its job */
    char **retired;         /* message texts replaced while a job's history view may still point at them */
    size_t n_retired, cap_retired;
    banter_tts *next_tts;   /* a new voice from banter_session_update, taken at the next reply */
    char *reply;            /* the current reply's text */
    size_t reply_len, reply_cap;
    struct agent_span *spans;
    size_t n_spans, cap_spans;
    struct tts_req *reqs;   /* clauses submitted for the current reply, oldest first */
    float *queue;           /* reply audio not yet played: [q_head, q_len) */
    size_t q_head, q_len, q_cap;
    size_t reply_samples;   /* synthesized for the current reply */
    size_t played;          /* of which played */
    bool queue_full_warned;
    banter_turn_stats *cur; /* the current turn's record (the worker's), for on_audio */
    double t_endpoint;
    bool synthesized;       /* the current reply is fully generated and synthesized (only playout is left) */
    bool held;              /* the current reply is speculative: its audio waits for the endpoint */
    const char *spec_text;  /* the transcript it answers (the worker's job text, valid while held) */
    int n_submitted;        /* clauses handed to the synthesizer for the current reply */
    int cached_tokens;      /* the backend's cache length after the last job */
    int vad_silence_ms;     /* caller's thread: a new end_silence_ms for the VAD, applied outside speech (0 =
                               none pending) */
    bool clip_warned;       /* caller's thread: a manual turn reached MAX_UTTERANCE_S */
    atomic_bool cancel;     /* the current reply must stop */
};

/* ----------------------------------------------------------------------------------------------------------
 * Small helpers.
 */

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Emits an event; s->lock must be held. */
static void emit(banter_session *s, banter_event *ev)
{
    ev->state = s->state;
    if (s->on_event) s->on_event(ev, s->user);
}

static void emit_text(banter_session *s, banter_event_type type, const char *text)
{
    banter_event ev = {.type = type, .text = text};
    emit(s, &ev);
}

static void set_state(banter_session *s, banter_session_state st)
{
    if (s->state == st) return;
    s->state = st;
    banter_event ev = {.type = BANTER_EVENT_STATE};
    emit(s, &ev);
}

static void emit_error(banter_session *s, banter_status rc, const char *msg)
{
    core_warn("session: %s", msg);
    banter_event ev = {.type = BANTER_EVENT_ERROR, .status = rc, .text = msg};
    emit(s, &ev);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = core_realloc(*p, n * elem);
    if (!q) return BANTER_ERR_NOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Appends a message (lock held). */
static int push_msg(banter_session *s, const char *role, const char *content, size_t len)
{
    void *p = s->msgs;
    if (grow(&p, &s->cap_msgs, s->n_msgs + 1, sizeof *s->msgs)) return BANTER_ERR_NOMEM;
    s->msgs = p;
    char *c = core_malloc(len + 1);
    if (!c) return BANTER_ERR_NOMEM;
    memcpy(c, content, len);
    c[len] = 0;
    s->msgs[s->n_msgs].role = role;
    s->msgs[s->n_msgs].content = c;
    s->n_msgs++;
    return 0;
}

/* The history as chat messages, plus an optional extra user message (lock held). The contents are only freed at
 * close, so the copy of their pointers stays valid while the worker uses it, whatever is appended meanwhile. */
static banter_chat_message *history_view(banter_session *s, const char *extra_user, size_t *n)
{
    size_t cnt = s->n_msgs + (extra_user ? 1 : 0);
    banter_chat_message *v = core_malloc((cnt ? cnt : 1) * sizeof *v);
    if (v) {
        for (size_t i = 0; i < s->n_msgs; i++) {
            v[i].role = s->msgs[i].role;
            v[i].content = s->msgs[i].content;
        }
        if (extra_user) {
            v[s->n_msgs].role = "user";
            v[s->n_msgs].content = extra_user;
        }
    }
    *n = cnt;
    return v;
}

/* The blanks (spaces and newlines) that s[0, n) starts with: a reply's leading ones are not its message's. */
static size_t blank_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\n')) i++;
    return i;
}

size_t agent_heard_len(const char *reply, size_t len, const struct agent_span *spans, size_t n_spans,
                       size_t played)
{
    size_t heard = 0;
    for (size_t i = 0; i < n_spans; i++) {
        const struct agent_span *sp = &spans[i];
        if (sp->text_off > len || sp->text_len > len - sp->text_off) break;
        if (played >= sp->sample_off + sp->n_samples && (sp->n_samples > 0 || played > sp->sample_off)) {
            heard = sp->text_off + sp->text_len;
            continue;
        }
        if (played <= sp->sample_off) break;
        /* Partly played: the proportional position, then back to the end of the last whole word. A word
         * counts as heard only when the position is past its end. */
        size_t pos = sp->text_off + (size_t)((double)sp->text_len * (double)(played - sp->sample_off) /
                                             (double)sp->n_samples);
        size_t end = sp->text_off + sp->text_len;
        if (pos < end && reply[pos] != ' ') {
            while (pos > sp->text_off && reply[pos - 1] != ' ') pos--;
        }
        if (pos > sp->text_off) heard = pos;
        break;
    }
    while (heard > 0 && (reply[heard - 1] == ' ' || reply[heard - 1] == '\n' || reply[heard - 1] == '\t'))
        heard--;
    return heard;
}

/* ----------------------------------------------------------------------------------------------------------
 * Reply audio: from the synthesizer's thread into the output queue.
 */

static int on_audio(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    struct tts_req *r = user;
    banter_session *s = r->s;
    pthread_mutex_lock(&s->lock);
    if (r->gen != s->gen || s->barged || atomic_load_explicit(&s->cancel, memory_order_acquire)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    /* A span per synthesizer chunk. */
    if (r->span_base < 0 || chunk->index != r->last_chunk) {
        void *p = s->spans;
        if (grow(&p, &s->cap_spans, s->n_spans + 1, sizeof *s->spans)) {
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        s->spans = p;
        struct agent_span *sp = &s->spans[s->n_spans];
        sp->text_off = r->text_base + chunk->text_offset;
        sp->text_len = chunk->text_len;
        sp->sample_off = s->reply_samples;
        sp->n_samples = 0;
        if (r->span_base < 0) r->span_base = (int)s->n_spans;
        r->last_chunk = chunk->index;
        s->n_spans++;
    }
    if (n > 0 && (!s->cfg.no_playout || s->held)) {
        size_t pending = s->q_len - s->q_head;
        if (pending + n > (size_t)MAX_QUEUE_S * AUDIO_RATE) {
            if (!s->queue_full_warned) core_warn("session: more than %d s of reply audio waiting; the rest of "
                                                 "the reply is dropped", MAX_QUEUE_S);
            s->queue_full_warned = true;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        if (s->q_head > 0 && s->q_len + n > s->q_cap) {
            memmove(s->queue, s->queue + s->q_head, pending * sizeof *s->queue);
            s->q_len = pending;
            s->q_head = 0;
        }
        void *p = s->queue;
        if (grow(&p, &s->q_cap, s->q_len + n, sizeof *s->queue)) {
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        s->queue = p;
        memcpy(s->queue + s->q_len, samples, n * sizeof *samples);
        s->q_len += n;
    }
    /* Counted only once queued, so audio dropped above never counts as heard. */
    s->spans[s->n_spans - 1].n_samples += n;
    if (n > 0) {
        if (s->cfg.no_playout && !s->held) s->played += n;
        if (!s->held) {
            if (s->t_first_audio == 0) s->t_first_audio = core_time_ms();
            if (s->reply_samples == 0 && s->cur) {
                s->cur->first_audio_ms = core_time_ms() - s->t_endpoint;
                set_state(s, BANTER_STATE_SPEAKING);
            }
            banter_event ev = {.type = BANTER_EVENT_AUDIO, .samples = samples, .n_samples = n};
            emit(s, &ev);
        }
        s->reply_samples += n;
    }
    pthread_mutex_unlock(&s->lock);
    return 1;
}

/* Hands text[off, off+len) of the reply to the synthesizer (worker thread). */
static int submit_clause(banter_session *s, const char *text, size_t len, size_t off)
{
    struct tts_req *r = core_calloc(1, sizeof *r);
    /* The job reads its text from its own copy: the reply buffer moves as the reply grows. */
    char *copy = r ? core_malloc(len + 1) : NULL;
    if (!copy) {
        core_free(r);
        return BANTER_ERR_NOMEM;
    }
    memcpy(copy, text, len);
    copy[len] = 0;
    r->s = s;
    r->text_base = off;
    r->span_base = -1;
    r->last_chunk = -1;
    tts_job_init(&r->job, s->tts, copy, len, on_audio, r);
    pthread_mutex_lock(&s->lock);
    r->gen = s->gen;
    /* When the listener needs this clause: now for the reply's first audio (or a speculative reply, which may be
     * confirmed any moment), else when the audio delivered so far runs out in real time. */
    double now = core_time_ms();
    r->job.deadline = s->t_first_audio > 0 && !s->held
                          ? s->t_first_audio + (double)s->reply_samples * 1000.0 / AUDIO_RATE
                          : now;
    if (r->job.deadline < now - 1000) r->job.deadline = now - 1000; /* late already: among the urgent ones */
    s->n_submitted++;
    struct tts_req **tail = &s->reqs;
    while (*tail) tail = &(*tail)->next;
    *tail = r;
    if (s->barged || atomic_load(&s->cancel)) atomic_store(&r->job.cancel, true);
    if (!s->held) {
        banter_event ev = {.type = BANTER_EVENT_REPLY_CHUNK, .text = copy};
        emit(s, &ev);
    }
    pthread_mutex_unlock(&s->lock);
    tts_submit(&r->job);
    return 0;
}

/* Waits for every submitted clause and frees them (worker thread). Returns the first synthesis error. */
static int wait_clauses(banter_session *s, char *err, size_t err_len)
{
    int first = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct tts_req *r = s->reqs;
        pthread_mutex_unlock(&s->lock);
        if (!r) break;
        int rc = tts_wait(&r->job);
        if (rc && rc != BANTER_ERR_CANCELLED && !first) {
            first = rc;
            core_errf(err, err_len, "speech synthesis failed: %s", r->job.err);
        }
        pthread_mutex_lock(&s->lock);
        s->reqs = r->next;
        pthread_mutex_unlock(&s->lock);
        core_free((void *)r->job.text);
        core_free(r);
    }
    return first;
}

/* Stops the current reply: the model, the synthesizer and playback (lock held). */
static void stop_reply(banter_session *s)
{
    atomic_store_explicit(&s->cancel, true, memory_order_release);
    for (struct tts_req *r = s->reqs; r; r = r->next) atomic_store(&r->job.cancel, true);
    s->q_head = s->q_len = 0;
}

/* How much of the current reply's audio has been heard by now (lock held). With no_playout the application
 * plays the audio as it is delivered, at the pace of real time from the first sample: what was heard is the
 * smaller of what was delivered and what real time allows since then. */
static size_t heard_samples(const banter_session *s)
{
    if (!s->cfg.no_playout) return s->played;
    if (s->t_first_audio <= 0) return 0;
    double elapsed = (core_time_ms() - s->t_first_audio) * AUDIO_RATE / 1000.0;
    return elapsed < (double)s->played ? (size_t)elapsed : s->played;
}

/* A barge-in (lock held): only while a reply is active and its message is not final. played: the samples the
 * listener heard (as far as the session knows, or as the application says). */
static void barge_in_at(banter_session *s, size_t played)
{
    if (!s->reply_active || s->barged || s->msg_final) return;
    s->barged = true;
    s->barge_played = played;
    stop_reply(s);
    s->llm->be.ops->cancel(s->conv);
    size_t heard = agent_heard_len(s->reply, s->reply_len, s->spans, s->n_spans, played);
    char *h = core_malloc(heard + 1);
    if (h) {
        if (heard) memcpy(h, s->reply, heard);
        h[heard] = 0;
    }
    const char *t = h ? h : "";
    t += blank_prefix(t, strlen(t)); /* as the message will hold it */
    emit_text(s, BANTER_EVENT_BARGE_IN, t);
    core_free(h);
    pthread_cond_broadcast(&s->cond);
}

static void barge_in(banter_session *s)
{
    barge_in_at(s, heard_samples(s));
}

static int recut(banter_session *s, size_t played, size_t *cut_len);

/* Speech while the application may still be playing a reply whose message is final (no_playout: the audio was
 * all delivered, but real time says it is not all heard yet): the message is cut as at a barge-in (lock held). */
static void barge_in_final(banter_session *s)
{
    if (!s->cfg.no_playout || !s->has_reply || s->reply_active) return;
    size_t heard = heard_samples(s);
    size_t len;
    if (heard >= s->played || recut(s, heard, &len) || len == SIZE_MAX) return;
    const char *text = len ? s->msgs[s->reply_pos].content : "";
    emit_text(s, BANTER_EVENT_BARGE_IN, text);
}

/* ----------------------------------------------------------------------------------------------------------
 * The worker: speculative prefill and replies.
 */

struct reply_ctx {
    banter_session *s;
    struct tts_chunker chunker;
    banter_turn_stats *st;
    int rc;
    int max_pieces;   /* the reply stops after this many pieces (max_reply_tokens as it was at the start) */
    bool length_stop; /* it did: a normal end, not a cancel */
};

static int on_chunk(const struct tts_chunk *chunk, void *user)
{
    struct reply_ctx *rc = user;
    banter_session *s = rc->s;
    if (atomic_load_explicit(&s->cancel, memory_order_acquire)) return 0;
    pthread_mutex_lock(&s->lock);
    if (rc->st->first_chunk_ms == 0) rc->st->first_chunk_ms = core_time_ms() - s->t_endpoint;
    pthread_mutex_unlock(&s->lock);
    if (submit_clause(s, chunk->text, chunk->len, chunk->offset)) {
        rc->rc = BANTER_ERR_NOMEM;
        return 0;
    }
    return 1;
}

static int on_piece(const char *piece, size_t len, void *user)
{
    struct reply_ctx *rc = user;
    banter_session *s = rc->s;
    if (atomic_load_explicit(&s->cancel, memory_order_acquire)) return 0;
    pthread_mutex_lock(&s->lock);
    /* A speculative reply stops after its first clause until the endpoint confirms or rejects it: that clause
     * is all the head start latency needs, and the rest would be wasted if the user goes on speaking. */
    while (s->held && s->n_submitted > 0 && !s->stop && !atomic_load(&s->cancel) && s->pending.kind != JOB_REPLY)
        pthread_cond_wait(&s->cond, &s->lock);
    if (atomic_load(&s->cancel) || s->stop || (s->held && s->pending.kind == JOB_REPLY)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (rc->st->first_token_ms == 0) rc->st->first_token_ms = core_time_ms() - s->t_endpoint;
    if (rc->st->n_generated >= rc->max_pieces) {
        pthread_mutex_unlock(&s->lock);
        rc->length_stop = true;
        return 0;
    }
    rc->st->n_generated++;
    void *p = s->reply;
    if (grow(&p, &s->reply_cap, s->reply_len + len + 1, 1)) {
        pthread_mutex_unlock(&s->lock);
        rc->rc = BANTER_ERR_NOMEM;
        return 0;
    }
    s->reply = p;
    /* A NUL byte (a model may emit one) cannot stand in text passed on as C strings: it is dropped. */
    size_t at = s->reply_len;
    for (size_t i = 0; i < len; i++)
        if (piece[i]) s->reply[s->reply_len++] = piece[i];
    s->reply[s->reply_len] = 0;
    len = s->reply_len - at;
    if (len == 0) {
        pthread_mutex_unlock(&s->lock);
        return 1;
    }
    if (!s->held) emit_text(s, BANTER_EVENT_REPLY_TEXT, s->reply + at);
    bool text_only = s->text_only;
    /* Only this thread grows (moves) the reply buffer, so the pointer stays valid after the lock. */
    const char *text = s->reply + at;
    pthread_mutex_unlock(&s->lock);
    if (text_only) return 1;
    return tts_chunker_feed(&rc->chunker, text, len, on_chunk, rc) == 0;
}

/* Speaks a fixed text as the reply (the apology), through the same path as model text. */
static void speak_text(banter_session *s, struct reply_ctx *rc, const char *text)
{
    pthread_mutex_lock(&s->lock);
    if (!text) text = s->apology; /* read under the lock: banter_session_update may replace it */
    s->reply_len = 0;
    s->n_spans = 0;
    void *p = s->reply;
    size_t len = strlen(text);
    if (!grow(&p, &s->reply_cap, len + 1, 1)) {
        s->reply = p;
        memcpy(s->reply, text, len + 1);
        s->reply_len = len;
    }
    pthread_mutex_unlock(&s->lock);
    tts_chunker_init(&rc->chunker, &REPLY_CHUNKS);
    if (s->reply_len) {
        tts_chunker_feed(&rc->chunker, s->reply, s->reply_len, on_chunk, rc);
        tts_chunker_flush(&rc->chunker, on_chunk, rc);
    }
}

/* Starts a job's reply (lock held, in the same hold as taking the job, so the endpoint's verdict on a
 * speculation and the history the reply answers are decided atomically). Returns the messages to answer. */
static banter_chat_message *begin_reply(banter_session *s, struct job *j, size_t *n, int *rc)
{
    banter_turn_stats *st = &j->stats;
    bool speculative = j->kind == JOB_SPECULATE;
    *rc = 0;
    if (speculative) {
        s->held = true;
        s->spec_text = j->text;
        j->t_endpoint = core_time_ms();
    } else {
        st->turn = ++s->turn;
        if (j->text) *rc = push_msg(s, "user", j->text, strlen(j->text));
        s->reply_active = true;
    }
    /* The texts earlier jobs' views pointed at are no longer used by anyone. */
    for (size_t i = 0; i < s->n_retired; i++) core_free(s->retired[i]);
    s->n_retired = 0;
    s->text_only = j->text_only;
    s->msg_final = false;
    s->has_reply = false;
    s->t_first_audio = 0;
    s->n_submitted = 0;
    s->gen++;
    s->barged = j->cancelled; /* interrupted before it began: it ends at once */
    atomic_store(&s->cancel, j->cancelled);
    s->reply_len = 0;
    s->n_spans = 0;
    s->reply_samples = 0;
    s->played = 0;
    s->queue_full_warned = false;
    s->cur = st;
    s->synthesized = false;
    s->t_endpoint = j->t_endpoint;
    /* (If the user already speaks again, the state stays theirs; the reply is interrupted at their endpoint.) */
    if (!speculative && s->state != BANTER_STATE_USER_SPEAKING) set_state(s, BANTER_STATE_THINKING);
    banter_chat_message *v = *rc ? NULL : history_view(s, speculative ? j->text : NULL, n);
    if (!v && !*rc) *rc = BANTER_ERR_NOMEM;
    return v;
}

static void run_reply(banter_session *s, struct job *j, banter_chat_message *v, size_t n, int rc)
{
    banter_turn_stats *st = &j->stats;
    bool speculative = j->kind == JOB_SPECULATE;

    pthread_mutex_lock(&s->lock);
    struct reply_ctx ctx = {.s = s, .st = st, .max_pieces = s->cfg.max_reply_tokens};
    pthread_mutex_unlock(&s->lock);
    tts_chunker_init(&ctx.chunker, &REPLY_CHUNKS);
    char err[512] = "";
    struct agent_llm_stats ls;
    memset(&ls, 0, sizeof ls);
    if (!rc) rc = s->llm->be.ops->reply(s->conv, v, n, on_piece, &ctx, &ls, err, sizeof err);
    core_free(v);
    if (ctx.rc) rc = ctx.rc;
    if (rc == BANTER_ERR_CANCELLED && ctx.length_stop && !atomic_load(&s->cancel)) rc = 0;
    bool cancelled = atomic_load(&s->cancel);
    if (!rc && !cancelled && !s->text_only) {
        if (tts_chunker_flush(&ctx.chunker, on_chunk, &ctx) == 0 && ctx.rc) rc = ctx.rc;
    }
    st->n_prompt = ls.n_prompt;
    if (speculative) {
        /* Everything was prefilled before the endpoint. Then wait for the verdict (a short reply can be
         * complete before the user's turn has ended). */
        pthread_mutex_lock(&s->lock);
        st->n_speculated = ls.n_fed;
        st->n_prefilled = 0;
        while (s->held && !s->stop && !atomic_load(&s->cancel) && s->pending.kind != JOB_REPLY)
            pthread_cond_wait(&s->cond, &s->lock);
        bool rejected = s->held || !s->reply_active;
        s->held = false;
        s->spec_text = NULL;
        if (rejected) {
            stop_reply(s);
            pthread_mutex_unlock(&s->lock);
            wait_clauses(s, err, sizeof err);
            pthread_mutex_lock(&s->lock);
            s->cur = NULL;
            s->gen++;
            s->reply_len = 0;
            s->n_spans = 0;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        pthread_mutex_unlock(&s->lock);
    } else {
        st->n_prefilled = ls.n_fed;
    }
    if (rc && rc != BANTER_ERR_CANCELLED) {
        /* The model failed (a remote server down, slow or garbled; a full context): say so aloud, and let the
         * conversation carry on. */
        pthread_mutex_lock(&s->lock);
        if (!err[0]) core_errf(err, sizeof err, "the language model failed: %s", banter_status_str(rc));
        emit_error(s, (banter_status)rc, err);
        st->failed = true;
        pthread_mutex_unlock(&s->lock);
        /* Drop whatever was generated, including clauses already queued. */
        pthread_mutex_lock(&s->lock);
        stop_reply(s);
        pthread_mutex_unlock(&s->lock);
        wait_clauses(s, err, sizeof err);
        pthread_mutex_lock(&s->lock);
        bool barged = s->barged;
        s->gen++;
        atomic_store(&s->cancel, false);
        s->reply_samples = 0;
        s->played = 0;
        bool stopping = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (!barged && !stopping && !s->text_only) speak_text(s, &ctx, NULL);
    }
    char terr[256] = "";
    int trc = wait_clauses(s, terr, sizeof terr);
    if (trc) {
        pthread_mutex_lock(&s->lock);
        emit_error(s, (banter_status)trc, terr);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    st->reply_ms = core_time_ms() - s->t_endpoint;
    s->synthesized = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);

    /* Playout: the message is final once everything was played, or at a barge-in. */
    pthread_mutex_lock(&s->lock);
    while (!s->barged && !s->stop && s->q_head < s->q_len) pthread_cond_wait(&s->cond, &s->lock);
    bool barged = s->barged;
    size_t heard_len = s->reply_len;
    if (barged) {
        heard_len = agent_heard_len(s->reply, s->reply_len, s->spans, s->n_spans, s->barge_played);
    } else {
        while (heard_len > 0 && (s->reply[heard_len - 1] == ' ' || s->reply[heard_len - 1] == '\n')) heard_len--;
    }
    size_t start = blank_prefix(s->reply, heard_len);
    s->reply_pos = s->n_msgs;
    if (!st->failed && heard_len > start) push_msg(s, "assistant", s->reply + start, heard_len - start);
    s->msg_final = true;
    s->has_reply = !st->failed;
    bool cut = barged || st->failed || rc == BANTER_ERR_CANCELLED;
    /* From here a barge-in has nothing left to stop (unless the cache must still be cut to the message). */
    if (!cut) s->reply_active = false;
    st->interrupted = barged;
    st->n_reply_samples = s->reply_samples;
    st->processing_ms = st->first_audio_ms;
    st->total_ms = st->first_audio_ms > 0 ? st->endpoint_delay_ms + st->first_audio_ms : 0;
    st->cpu_ms = cpu_ms() - j->cpu_endpoint;
    s->cur = NULL;
    size_t n_after = s->n_msgs;
    pthread_mutex_unlock(&s->lock);

    /* The model's memory follows what was heard: cut the cache after the heard text (an interrupted or failed
     * reply), so the next turn's render and the cache agree. */
    if (cut) {
        pthread_mutex_lock(&s->lock);
        v = history_view(s, NULL, &n);
        pthread_mutex_unlock(&s->lock);
        if (v) s->llm->be.ops->sync(s->conv, v, n);
        core_free(v);
    }

    pthread_mutex_lock(&s->lock);
    const char *final_text = n_after > 0 && !strcmp(s->msgs[n_after - 1].role, "assistant")
                                 ? s->msgs[n_after - 1].content : "";
    emit_text(s, BANTER_EVENT_REPLY_DONE, final_text);
    banter_event ev = {.type = BANTER_EVENT_TURN, .turn = st};
    emit(s, &ev);
    s->reply_active = false;
    if (s->state == BANTER_STATE_THINKING || s->state == BANTER_STATE_SPEAKING) set_state(s, BANTER_STATE_LISTENING);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *arg)
{
    banter_session *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && s->pending.kind == JOB_NONE) pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop) break;
        struct job j = s->pending;
        memset(&s->pending, 0, sizeof s->pending);
        if (j.kind == JOB_MESSAGE) {
            if (push_msg(s, "user", j.text, strlen(j.text)))
                emit_error(s, BANTER_ERR_NOMEM, "out of memory adding a message");
            core_free(j.text);
            pthread_cond_broadcast(&s->cond);
            continue;
        }
        s->busy = true;
        /* A new voice from banter_session_update: no clause of the old one is in flight between jobs. */
        banter_tts *old_tts = NULL;
        if (s->next_tts) {
            old_tts = s->tts;
            s->tts = s->next_tts;
            s->next_tts = NULL;
        }
        size_t n = 0;
        int rc = 0;
        banter_chat_message *v = begin_reply(s, &j, &n, &rc);
        pthread_mutex_unlock(&s->lock);
        banter_tts_close(old_tts);
        run_reply(s, &j, v, n, rc);
        core_free(j.text);
        pthread_mutex_lock(&s->lock);
        bool resync = s->need_sync;
        s->need_sync = false;
        v = resync ? history_view(s, NULL, &n) : NULL;
        pthread_mutex_unlock(&s->lock);
        /* The history was cut (banter_session_truncate) while this job ran: the cache follows. */
        if (v) s->llm->be.ops->sync(s->conv, v, n);
        core_free(v);
        int cached = s->llm->be.ops->cached(s->conv);
        pthread_mutex_lock(&s->lock);
        s->busy = false;
        s->cached_tokens = cached;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Posts a job (lock held). A REPLY replaces anything pending; a SPECULATE never replaces a REPLY. */
static void post(banter_session *s, enum job_kind kind, const char *text, const banter_turn_stats *stats,
                 double t_endpoint)
{
    if (kind == JOB_SPECULATE && s->pending.kind == JOB_REPLY) return;
    /* A message added while a reply waits joins that reply, which then answers it too. */
    bool keep_reply = kind == JOB_MESSAGE && s->pending.kind == JOB_REPLY;
    bool text_only = keep_reply ? s->pending.text_only : s->cfg.text_only;
    if (keep_reply) kind = JOB_REPLY;
    char *t;
    if (kind != JOB_SPECULATE && s->pending.kind != JOB_SPECULATE && s->pending.text) {
        /* A second turn before the first was taken up: answer (or add) both as one. */
        size_t a = strlen(s->pending.text), b = strlen(text);
        t = core_malloc(a + b + 2);
        if (t) {
            memcpy(t, s->pending.text, a);
            t[a] = ' ';
            memcpy(t + a + 1, text, b + 1);
        }
    } else {
        t = core_strdup(text);
    }
    if (!t) {
        emit_error(s, BANTER_ERR_NOMEM, "out of memory taking a turn");
        return;
    }
    core_free(s->pending.text);
    memset(&s->pending, 0, sizeof s->pending);
    s->pending.kind = kind;
    s->pending.text = t;
    s->pending.text_only = text_only;
    if (stats) s->pending.stats = *stats;
    s->pending.t_endpoint = t_endpoint;
    s->pending.cpu_endpoint = cpu_ms();
    pthread_cond_broadcast(&s->cond);
}

/* Drops a speculative reply that is pending or running (lock held): the transcript changed, or no turn. */
static void spec_reject(banter_session *s)
{
    if (s->pending.kind == JOB_SPECULATE) {
        core_free(s->pending.text);
        memset(&s->pending, 0, sizeof s->pending);
    }
    if (!s->held) return;
    atomic_store_explicit(&s->cancel, true, memory_order_release);
    for (struct tts_req *r = s->reqs; r; r = r->next) atomic_store(&r->job.cancel, true);
    s->llm->be.ops->cancel(s->conv);
    pthread_cond_broadcast(&s->cond);
}

/* The endpoint's transcript is the one the running speculative reply answers: it becomes the turn's reply
 * (lock held). Its times so far are moved onto the endpoint's clock (work done before the endpoint counts as
 * zero), and audio it already made is released at once. */
static void spec_confirm(banter_session *s, const banter_turn_stats *ep, double t_endpoint)
{
    banter_turn_stats *st = s->cur;
    double shift = t_endpoint - s->t_endpoint;
    if (st) {
        st->turn = ++s->turn;
        st->speech_end_pos = ep->speech_end_pos;
        st->endpoint_pos = ep->endpoint_pos;
        st->endpoint_delay_ms = ep->endpoint_delay_ms;
        st->asr_final_ms = ep->asr_final_ms;
        double floor_ms = ep->asr_final_ms;
        if (st->first_token_ms > 0) st->first_token_ms = st->first_token_ms - shift > floor_ms ? st->first_token_ms - shift : floor_ms;
        if (st->first_chunk_ms > 0) st->first_chunk_ms = st->first_chunk_ms - shift > floor_ms ? st->first_chunk_ms - shift : floor_ms;
    }
    s->t_endpoint = t_endpoint;
    push_msg(s, "user", s->spec_text, strlen(s->spec_text));
    s->held = false;
    s->reply_active = true;
    set_state(s, BANTER_STATE_THINKING);
    /* What the held reply wrote and sent to the voice so far, now that it is the turn's. */
    if (s->reply_len) emit_text(s, BANTER_EVENT_REPLY_TEXT, s->reply);
    for (struct tts_req *r = s->reqs; r; r = r->next) emit_text(s, BANTER_EVENT_REPLY_CHUNK, r->job.text);
    if (s->q_len > s->q_head) {
        if (st) st->first_audio_ms = core_time_ms() - t_endpoint;
        s->t_first_audio = core_time_ms();
        set_state(s, BANTER_STATE_SPEAKING);
        banter_event ev = {.type = BANTER_EVENT_AUDIO, .samples = s->queue + s->q_head,
                           .n_samples = s->q_len - s->q_head};
        emit(s, &ev);
        if (s->cfg.no_playout) {
            s->played += s->q_len - s->q_head;
            s->q_head = s->q_len = 0;
        }
    }
    pthread_cond_broadcast(&s->cond);
}

/* ----------------------------------------------------------------------------------------------------------
 * The caller's thread: audio in, turn-taking, audio out.
 */

/* Adds the user's message without answering it (no_auto_reply; lock held): at once when the worker is idle, else
 * after the job it runs (whose reply message comes first). */
static void add_user_message(banter_session *s, const char *text)
{
    if (!s->busy && s->pending.kind == JOB_NONE) {
        if (push_msg(s, "user", text, strlen(text))) emit_error(s, BANTER_ERR_NOMEM, "out of memory adding a message");
        return;
    }
    if (s->pending.kind == JOB_SPECULATE) spec_reject(s);
    post(s, JOB_MESSAGE, text, NULL, 0);
}

/* Ends the utterance in progress; returns true when it became a user turn. */
static bool end_utterance(banter_session *s, const struct vad_event *ev, bool forced)
{
    bool took = false;
    s->in_utt = false;
    const char *text = NULL;
    struct asr_timing at;
    double t_endpoint = core_time_ms();
    int rc = asr_stream_end(s->asr, &text, &at);
    pthread_mutex_lock(&s->lock);
    if (rc) {
        spec_reject(s);
        emit_error(s, (banter_status)rc, asr_stream_error(s->asr));
        set_state(s, BANTER_STATE_LISTENING);
    } else if (!text || !*text) {
        spec_reject(s);
        emit_text(s, BANTER_EVENT_NO_TURN, "");
        if (s->state == BANTER_STATE_USER_SPEAKING) set_state(s, BANTER_STATE_LISTENING);
    } else {
        banter_turn_stats st;
        memset(&st, 0, sizeof st);
        st.speech_end_pos = forced ? ev->frame_end : ev->end;
        st.endpoint_pos = ev->frame_end;
        st.endpoint_delay_ms = (double)(st.endpoint_pos - st.speech_end_pos) * 1000.0 / AUDIO_RATE;
        st.asr_final_ms = core_time_ms() - t_endpoint;
        emit_text(s, BANTER_EVENT_USER_TEXT, text);
        took = true;
        if (s->reply_active) barge_in(s);
        if (s->cfg.no_auto_reply) {
            spec_reject(s);
            add_user_message(s, text);
            if (s->state == BANTER_STATE_USER_SPEAKING) set_state(s, BANTER_STATE_LISTENING);
        } else if (s->held && s->spec_text && !atomic_load(&s->cancel) && !strcmp(s->spec_text, text)) {
            spec_confirm(s, &st, t_endpoint);
        } else {
            spec_reject(s);
            post(s, JOB_REPLY, text, &st, t_endpoint);
            set_state(s, BANTER_STATE_THINKING);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return took;
}

/* A partial transcript, when it says something new (lock held). */
static void emit_partial(banter_session *s, const char *p)
{
    if (p && *p && strncmp(p, s->last_partial, sizeof s->last_partial - 1)) {
        core_errf(s->last_partial, sizeof s->last_partial, "%s", p);
        emit_text(s, BANTER_EVENT_PARTIAL, p);
    }
}

static void on_frame(banter_session *s, const float *frame)
{
    struct vad_event ev;
    vad_feed(s->vad, frame, &ev);
    const struct vad_config *vc = vad_get_config(s->vad);
    if (ev.type == VAD_SPEECH_START) {
        pthread_mutex_lock(&s->lock);
        banter_event e = {.type = BANTER_EVENT_SPEECH_START, .sample_pos = ev.start};
        emit(s, &e);
        bool active = s->reply_active || s->pending.kind == JOB_REPLY;
        if (active && s->cfg.no_barge_in) {
            s->ignoring = true;
        } else {
            if (active) barge_in(s);
            else if (!s->cfg.no_barge_in) barge_in_final(s);
            set_state(s, BANTER_STATE_USER_SPEAKING);
        }
        pthread_mutex_unlock(&s->lock);
        if (!s->ignoring) {
            int rc = asr_stream_begin(s->asr);
            size_t n_pre = (size_t)(ev.frame_end - ev.preroll_start);
            if (n_pre > vad_recent_capacity(s->vad)) n_pre = vad_recent_capacity(s->vad);
            size_t got = vad_recent(s->vad, s->scratch, n_pre);
            if (!rc) rc = asr_stream_feed(s->asr, s->scratch, got);
            if (rc) {
                pthread_mutex_lock(&s->lock);
                emit_error(s, (banter_status)rc, asr_stream_error(s->asr));
                pthread_mutex_unlock(&s->lock);
                s->ignoring = true;
            } else {
                s->in_utt = true;
                s->utt_samples = (int64_t)got;
                s->silence_frames = 0;
                s->speculated = false;
                s->t_partial = core_time_ms();
                s->last_partial[0] = 0;
            }
        }
        return;
    }
    if (ev.type == VAD_SPEECH_END) {
        pthread_mutex_lock(&s->lock);
        banter_event e = {.type = BANTER_EVENT_SPEECH_END, .sample_pos = ev.end};
        emit(s, &e);
        pthread_mutex_unlock(&s->lock);
        if (s->in_utt) end_utterance(s, &ev, false);
        s->ignoring = false;
        return;
    }
    if (!s->in_utt) return;
    int rc = asr_stream_feed(s->asr, frame, AUDIO_FRAME);
    if (rc) {
        pthread_mutex_lock(&s->lock);
        spec_reject(s);
        emit_error(s, (banter_status)rc, asr_stream_error(s->asr));
        pthread_mutex_unlock(&s->lock);
        s->in_utt = false;
        s->ignoring = true;
        return;
    }
    s->utt_samples += AUDIO_FRAME;
    if (s->utt_samples >= (int64_t)MAX_UTTERANCE_S * AUDIO_RATE) {
        core_warn("session: an utterance reached %d s; ending the turn there", MAX_UTTERANCE_S);
        end_utterance(s, &ev, true);
        s->ignoring = true;
        return;
    }
    /* Partial transcripts, and the speculative prefill once the user pauses. */
    double now = core_time_ms();
    bool pause = ev.prob < vc->stay_prob;
    s->silence_frames = pause ? s->silence_frames + 1 : 0;
    if (!pause) s->speculated = false;
    bool want_spec = s->cfg.speculate_ms > 0 && !s->cfg.no_auto_reply && !s->speculated &&
                     s->silence_frames * (AUDIO_FRAME * 1000 / AUDIO_RATE) >= s->cfg.speculate_ms;
    if (now - s->t_partial >= PARTIAL_EVERY_MS || want_spec) {
        const char *p = asr_stream_partial(s->asr);
        s->t_partial = now;
        pthread_mutex_lock(&s->lock);
        emit_partial(s, p);
        if (want_spec) {
            s->speculated = true;
            bool same = s->held && s->spec_text && p && !strcmp(s->spec_text, p);
            if (p && *p && !s->reply_active && !same) {
                spec_reject(s);
                post(s, JOB_SPECULATE, p, NULL, 0);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
}

/* manual_turns: every frame is the user's turn until banter_session_commit (or clear). */
static void on_frame_manual(banter_session *s, const float *frame)
{
    if (!s->in_utt) {
        int rc = asr_stream_begin(s->asr);
        if (rc) {
            pthread_mutex_lock(&s->lock);
            emit_error(s, (banter_status)rc, asr_stream_error(s->asr));
            pthread_mutex_unlock(&s->lock);
            return;
        }
        s->in_utt = true;
        s->utt_samples = 0;
        s->clip_warned = false;
        s->t_partial = core_time_ms();
        s->last_partial[0] = 0;
    }
    if (s->utt_samples >= (int64_t)MAX_UTTERANCE_S * AUDIO_RATE) {
        if (!s->clip_warned) core_warn("session: a turn reached %d s without a commit; the rest of its audio is "
                                       "ignored", MAX_UTTERANCE_S);
        s->clip_warned = true;
        return;
    }
    int rc = asr_stream_feed(s->asr, frame, AUDIO_FRAME);
    if (rc) {
        pthread_mutex_lock(&s->lock);
        emit_error(s, (banter_status)rc, asr_stream_error(s->asr));
        pthread_mutex_unlock(&s->lock);
        const char *text;
        struct asr_timing at;
        asr_stream_end(s->asr, &text, &at);
        s->in_utt = false;
        return;
    }
    s->utt_samples += AUDIO_FRAME;
    double now = core_time_ms();
    if (now - s->t_partial >= PARTIAL_EVERY_MS) {
        s->t_partial = now;
        const char *p = asr_stream_partial(s->asr);
        pthread_mutex_lock(&s->lock);
        emit_partial(s, p);
        pthread_mutex_unlock(&s->lock);
    }
}

/* A new end_silence_ms from banter_session_update takes effect between utterances: the VAD is reopened with it. */
static void apply_vad_silence(banter_session *s)
{
    struct vad_config vc = *vad_get_config(s->vad);
    vc.end_silence_ms = s->vad_silence_ms;
    struct vad *v = vad_open(&vc);
    float *scratch = v ? core_malloc(vad_recent_capacity(v) * sizeof *scratch) : NULL;
    if (!scratch) {
        vad_close(v);
        return; /* tried again at the next call */
    }
    vad_close(s->vad);
    core_free(s->scratch);
    s->vad = v;
    s->scratch = scratch;
    s->vad_silence_ms = 0;
}

BANTER_API banter_status banter_session_process(banter_session *s, const float *in, float *out, size_t n)
{
    if (!s) return BANTER_ERR_INVALID_ARG;
    if (n > AUDIO_RATE) {
        core_warn("session: process called with %zu samples; at most %d (1 s) per call", n, AUDIO_RATE);
        return BANTER_ERR_INVALID_ARG;
    }
    if (s->vad_silence_ms && !s->in_utt && !s->ignoring) apply_vad_silence(s);
    bool manual = s->cfg.manual_turns;
    for (size_t i = 0; i < n; i++) {
        float x = in ? in[i] : 0.0f;
        /* Bad samples (NaN, infinities, out of range) are clipped rather than trusted. */
        if (!(x == x)) x = 0.0f;
        if (x > 1.0f) x = 1.0f;
        if (x < -1.0f) x = -1.0f;
        s->frame[s->n_frame++] = x;
        if (s->n_frame == AUDIO_FRAME) {
            if (manual) on_frame_manual(s, s->frame);
            else on_frame(s, s->frame);
            s->n_frame = 0;
        }
    }
    pthread_mutex_lock(&s->lock);
    s->in_pos += (int64_t)n;
    size_t avail = s->held ? 0 : s->q_len - s->q_head;
    size_t take = avail < n ? avail : n;
    if (out) {
        if (take) memcpy(out, s->queue + s->q_head, take * sizeof *out);
        memset(out + take, 0, (n - take) * sizeof *out);
    }
    s->q_head += take;
    s->played += take;
    if (take && s->q_head == s->q_len) {
        s->q_head = s->q_len = 0;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return BANTER_OK;
}

/* ----------------------------------------------------------------------------------------------------------
 * Open, close and the rest of the API.
 */

BANTER_API const char *banter_session_state_str(banter_session_state state)
{
    switch (state) {
    case BANTER_STATE_LISTENING: return "listening";
    case BANTER_STATE_USER_SPEAKING: return "user_speaking";
    case BANTER_STATE_THINKING: return "thinking";
    case BANTER_STATE_SPEAKING: return "speaking";
    }
    return "unknown";
}

BANTER_API banter_session_config banter_session_config_default(void)
{
    banter_session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.tts = banter_tts_config_default();
    cfg.max_reply_tokens = 200;
    cfg.end_silence_ms = 400;
    cfg.speculate_ms = 150;
    return cfg;
}

BANTER_API banter_status banter_session_open(banter_llm *llm, banter_asr *asr, const banter_session_config *cfg,
                                             banter_event_fn on_event, void *user, banter_session **out,
                                             char *err, size_t err_len)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    if (!llm || !asr) {
        core_errf(err, err_len, "a session needs a language model and a speech recognizer");
        return BANTER_ERR_INVALID_ARG;
    }
    banter_session_config c = banter_session_config_default();
    if (cfg) {
        banter_session_config d = c;
        c = *cfg;
        if (c.max_reply_tokens == 0) c.max_reply_tokens = d.max_reply_tokens;
        if (c.end_silence_ms == 0) c.end_silence_ms = d.end_silence_ms;
        if (c.speculate_ms == 0) c.speculate_ms = d.speculate_ms;
    }
    if (c.max_reply_tokens < 0 || c.max_reply_tokens > 65536 || c.end_silence_ms < 100 ||
        c.end_silence_ms > 10000) {
        core_errf(err, err_len, "invalid session settings: max_reply_tokens must be 1-65536 and end_silence_ms "
                                "100-10000");
        return BANTER_ERR_INVALID_ARG;
    }
    banter_session *s = core_calloc(1, sizeof *s);
    if (!s) {
        core_errf(err, err_len, "out of memory");
        return BANTER_ERR_NOMEM;
    }
    s->llm = llm;
    s->cfg = c;
    s->max_reply_open = c.max_reply_tokens;
    s->on_event = on_event;
    s->user = user;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int rc = BANTER_ERR_NOMEM;
    s->system_prompt = core_strdup(c.system_prompt ? c.system_prompt : DEFAULT_SYSTEM_PROMPT);
    s->apology = core_strdup(c.apology ? c.apology : DEFAULT_APOLOGY);
    if (!s->system_prompt || !s->apology) goto fail;
    if (*s->system_prompt && push_msg(s, "system", s->system_prompt, strlen(s->system_prompt))) goto fail;

    struct agent_reply_config rcfg = {.max_tokens = c.max_reply_tokens};
    rcfg.sampler = c.sampler ? *c.sampler : banter_sampler_config_default();
    rc = llm->be.ops->conv_open(llm->be.state, &rcfg, &s->conv, err, err_len);
    if (rc) goto fail;
    rc = asr_stream_open(asr_handle_model(asr), &s->asr, err, err_len);
    if (rc) goto fail;
    struct vad_config vc;
    vad_config_default(&vc);
    vc.end_silence_ms = c.end_silence_ms;
    s->vad = vad_open(&vc);
    if (!s->vad) {
        rc = BANTER_ERR_NOMEM;
        core_errf(err, err_len, "cannot open the voice activity detector");
        goto fail;
    }
    s->scratch = core_malloc(vad_recent_capacity(s->vad) * sizeof *s->scratch);
    if (!s->scratch) {
        rc = BANTER_ERR_NOMEM;
        goto fail;
    }
    rc = banter_tts_open(&c.tts, &s->tts, err, err_len);
    if (rc) goto fail;
    s->tts_rate = c.tts.rate;
    s->tts_pitch = c.tts.pitch;
    if ((c.tts.engine && !(s->tts_engine = core_strdup(c.tts.engine))) ||
        (c.tts.voice && !(s->tts_voice = core_strdup(c.tts.voice)))) {
        rc = BANTER_ERR_NOMEM;
        goto fail;
    }
    if (pthread_create(&s->worker, NULL, worker_main, s)) {
        rc = BANTER_ERR_NOMEM;
        core_errf(err, err_len, "cannot start the session's thread");
        goto fail;
    }
    s->worker_started = true;
    s->cfg.system_prompt = NULL;
    s->cfg.apology = NULL;
    s->cfg.sampler = NULL;
    *out = s;
    return BANTER_OK;
fail:
    if (rc == BANTER_ERR_NOMEM && err && !*err) core_errf(err, err_len, "out of memory");
    banter_session_close(s);
    return (banter_status)rc;
}

BANTER_API void banter_session_close(banter_session *s)
{
    if (!s) return;
    if (s->worker_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        stop_reply(s);
        if (s->conv) s->llm->be.ops->cancel(s->conv);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->worker, NULL);
    }
    core_free(s->pending.text);
    banter_tts_close(s->tts);
    vad_close(s->vad);
    asr_stream_close(s->asr);
    if (s->conv) s->llm->be.ops->conv_close(s->conv);
    for (size_t i = 0; i < s->n_msgs; i++) core_free(s->msgs[i].content);
    core_free(s->msgs);
    core_free(s->reply);
    core_free(s->spans);
    core_free(s->queue);
    core_free(s->scratch);
    core_free(s->system_prompt);
    core_free(s->apology);
    core_free(s->tts_engine);
    core_free(s->tts_voice);
    banter_tts_close(s->next_tts);
    for (size_t i = 0; i < s->n_retired; i++) core_free(s->retired[i]);
    core_free(s->retired);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    core_free(s);
}

BANTER_API banter_status banter_session_send_text(banter_session *s, const char *text)
{
    if (!s || !text) return BANTER_ERR_INVALID_ARG;
    size_t len = strlen(text);
    size_t a = 0;
    while (a < len && (text[a] == ' ' || text[a] == '\n' || text[a] == '\t')) a++;
    if (a == len) return BANTER_ERR_INVALID_ARG;
    if (len > 65536) {
        core_warn("session: a typed turn of %zu bytes; at most 65536", len);
        return BANTER_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s->lock);
    if (s->reply_active) barge_in(s);
    spec_reject(s);
    emit_text(s, BANTER_EVENT_USER_TEXT, text);
    post(s, JOB_REPLY, text, NULL, core_time_ms());
    set_state(s, BANTER_STATE_THINKING);
    pthread_mutex_unlock(&s->lock);
    return BANTER_OK;
}

BANTER_API void banter_session_interrupt(banter_session *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    barge_in(s);
    if (s->pending.kind == JOB_REPLY) s->pending.cancelled = true;
    pthread_mutex_unlock(&s->lock);
}

/* Keeps a message text that a job's history view may still point at until the next job (lock held). Never
 * fails: room was made beforehand (reserve_retired). */
static void retire(banter_session *s, char *text)
{
    BANTER_ASSERT(s->n_retired < s->cap_retired);
    s->retired[s->n_retired++] = text;
}

static int reserve_retired(banter_session *s, size_t n)
{
    void *p = s->retired;
    if (grow(&p, &s->cap_retired, s->n_retired + n, sizeof *s->retired)) return BANTER_ERR_NOMEM;
    s->retired = p;
    return 0;
}

/* Cuts the last reply's message, already in the history, to what `played` samples of its audio speak, and the
 * cache with it (lock held). Only ever cuts: what was dropped from the cache stays dropped. *cut_len (when not
 * NULL) receives the message's new length, or SIZE_MAX when nothing changed. BANTER_ERR_NOT_FOUND when the
 * history does not end with that reply. */
static int recut(banter_session *s, size_t played, size_t *cut_len)
{
    if (cut_len) *cut_len = SIZE_MAX;
    bool has_msg = s->reply_pos + 1 == s->n_msgs && !strcmp(s->msgs[s->reply_pos].role, "assistant");
    if (!s->has_reply || (!has_msg && s->reply_pos != s->n_msgs)) return BANTER_ERR_NOT_FOUND;
    size_t heard = agent_heard_len(s->reply, s->reply_len, s->spans, s->n_spans, played);
    size_t start = blank_prefix(s->reply, heard);
    size_t now_len = has_msg ? strlen(s->msgs[s->reply_pos].content) : 0;
    if (heard - start >= now_len) return BANTER_OK;
    char *cut = heard > start ? core_malloc(heard - start + 1) : NULL;
    if ((heard > start && !cut) || reserve_retired(s, 1)) {
        core_free(cut);
        return BANTER_ERR_NOMEM;
    }
    retire(s, s->msgs[s->reply_pos].content);
    if (cut) {
        memcpy(cut, s->reply + start, heard - start);
        cut[heard - start] = 0;
        s->msgs[s->reply_pos].content = cut;
    } else {
        s->n_msgs--;
    }
    if (cut_len) *cut_len = heard - start;
    if (!s->busy && s->pending.kind == JOB_NONE) {
        /* The worker is idle, and cannot take a job while the lock is held: cut the cache now. */
        size_t n = 0;
        banter_chat_message *v = history_view(s, NULL, &n);
        if (v) s->llm->be.ops->sync(s->conv, v, n);
        core_free(v);
        s->cached_tokens = s->llm->be.ops->cached(s->conv);
    } else {
        s->need_sync = true;
    }
    return BANTER_OK;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Puts sys (owned; "" = none) in place of the history's system message (lock held, two retired slots
 * reserved). */
static int replace_system(banter_session *s, char *sys)
{
    bool has = s->n_msgs > 0 && !strcmp(s->msgs[0].role, "system");
    if (has && *sys) {
        retire(s, s->msgs[0].content);
        s->msgs[0].content = sys;
        return 0;
    }
    if (has) {
        retire(s, s->msgs[0].content);
        retire(s, sys);
        memmove(s->msgs, s->msgs + 1, (s->n_msgs - 1) * sizeof *s->msgs);
        s->n_msgs--;
        if (s->reply_pos > 0) s->reply_pos--;
        return 0;
    }
    if (!*sys) {
        retire(s, sys);
        return 0;
    }
    void *p = s->msgs;
    if (grow(&p, &s->cap_msgs, s->n_msgs + 1, sizeof *s->msgs)) return BANTER_ERR_NOMEM;
    s->msgs = p;
    memmove(s->msgs + 1, s->msgs, s->n_msgs * sizeof *s->msgs);
    s->msgs[0].role = "system";
    s->msgs[0].content = sys;
    s->n_msgs++;
    s->reply_pos++;
    return 0;
}

BANTER_API banter_status banter_session_update(banter_session *s, const banter_session_config *cfg, char *err,
                                               size_t err_len)
{
    if (!s || !cfg) return BANTER_ERR_INVALID_ARG;
    banter_session_config d = banter_session_config_default();
    int end_silence = cfg->end_silence_ms ? cfg->end_silence_ms : d.end_silence_ms;
    int max_reply = cfg->max_reply_tokens ? cfg->max_reply_tokens : d.max_reply_tokens;
    if (max_reply < 0 || max_reply > 65536) {
        core_errf(err, err_len, "invalid session settings: max_reply_tokens must be 1-65536");
        return BANTER_ERR_INVALID_ARG;
    }
    int speculate = cfg->speculate_ms ? cfg->speculate_ms : d.speculate_ms;
    if (end_silence < 100 || end_silence > 10000) {
        core_errf(err, err_len, "invalid session settings: end_silence_ms must be 100-10000");
        return BANTER_ERR_INVALID_ARG;
    }
    const banter_tts_config *tc = &cfg->tts;
    banter_tts *tts = NULL;
    char *engine = NULL, *voice = NULL, *sys = NULL, *apology = NULL;
    int rc = BANTER_ERR_NOMEM;
    bool new_voice = !same_str(tc->engine, s->tts_engine) || !same_str(tc->voice, s->tts_voice) ||
                     tc->rate != s->tts_rate || tc->pitch != s->tts_pitch;
    if (new_voice) {
        rc = banter_tts_open(tc, &tts, err, err_len);
        if (rc) return BANTER_ERR_INVALID_ARG;
        rc = BANTER_ERR_NOMEM;
        if ((tc->engine && !(engine = core_strdup(tc->engine))) || (tc->voice && !(voice = core_strdup(tc->voice))))
            goto fail;
    }
    const char *want_sys = cfg->system_prompt ? cfg->system_prompt : DEFAULT_SYSTEM_PROMPT;
    if (strcmp(want_sys, s->system_prompt) && !(sys = core_strdup(want_sys))) goto fail;
    const char *want_apology = cfg->apology ? cfg->apology : DEFAULT_APOLOGY;
    if (strcmp(want_apology, s->apology) && !(apology = core_strdup(want_apology))) goto fail;
    char *sys_copy = sys ? core_strdup(sys) : NULL;
    if (sys && !sys_copy) goto fail;

    pthread_mutex_lock(&s->lock);
    if (reserve_retired(s, 3)) {
        pthread_mutex_unlock(&s->lock);
        core_free(sys_copy);
        goto fail;
    }
    if (sys && replace_system(s, sys_copy)) {
        pthread_mutex_unlock(&s->lock);
        core_free(sys_copy);
        goto fail;
    }
    if (sys) {
        core_free(s->system_prompt);
        s->system_prompt = sys;
        sys = NULL;
    }
    if (apology) {
        retire(s, s->apology);
        s->apology = apology;
        apology = NULL;
    }
    banter_tts *old_next = NULL;
    if (tts) {
        old_next = s->next_tts;
        s->next_tts = tts;
        tts = NULL;
        core_free(s->tts_engine);
        core_free(s->tts_voice);
        s->tts_engine = engine;
        s->tts_voice = voice;
        engine = voice = NULL;
        s->tts_rate = tc->rate;
        s->tts_pitch = tc->pitch;
    }
    bool mode_change = s->cfg.manual_turns != cfg->manual_turns;
    s->cfg.end_silence_ms = end_silence;
    /* The language model's conversation was opened with the first limit: a later one can only lower it. */
    s->cfg.max_reply_tokens = max_reply < s->max_reply_open ? max_reply : s->max_reply_open;
    s->cfg.speculate_ms = speculate;
    s->cfg.no_barge_in = cfg->no_barge_in;
    s->cfg.manual_turns = cfg->manual_turns;
    s->cfg.no_auto_reply = cfg->no_auto_reply;
    s->cfg.text_only = cfg->text_only;
    if (cfg->no_auto_reply) spec_reject(s);
    pthread_mutex_unlock(&s->lock);
    banter_tts_close(old_next);
    if (end_silence != vad_get_config(s->vad)->end_silence_ms) s->vad_silence_ms = end_silence;
    if (mode_change) {
        banter_session_clear_input(s);
        vad_reset(s->vad);
        s->ignoring = false;
    }
    return BANTER_OK;
fail:
    banter_tts_close(tts);
    core_free(engine);
    core_free(voice);
    core_free(sys);
    core_free(apology);
    core_errf(err, err_len, "out of memory");
    return (banter_status)rc;
}

BANTER_API banter_status banter_session_commit(banter_session *s)
{
    if (!s) return BANTER_ERR_INVALID_ARG;
    if (!s->in_utt) return BANTER_ERR_NOT_FOUND;
    pthread_mutex_lock(&s->lock);
    int64_t pos = s->in_pos + (int64_t)s->n_frame;
    pthread_mutex_unlock(&s->lock);
    struct vad_event ev;
    memset(&ev, 0, sizeof ev);
    ev.end = ev.frame_end = pos;
    bool took = end_utterance(s, &ev, true);
    /* With the VAD, the rest of this speech is not a new turn: it is ignored until the VAD ends it. */
    if (!s->cfg.manual_turns) s->ignoring = true;
    return took ? BANTER_OK : BANTER_ERR_NOT_FOUND;
}

BANTER_API void banter_session_clear_input(banter_session *s)
{
    if (!s) return;
    if (s->in_utt) {
        const char *text;
        struct asr_timing at;
        asr_stream_end(s->asr, &text, &at);
        s->in_utt = false;
        if (!s->cfg.manual_turns) s->ignoring = true;
    }
    s->n_frame = 0;
    pthread_mutex_lock(&s->lock);
    spec_reject(s);
    if (s->state == BANTER_STATE_USER_SPEAKING) set_state(s, BANTER_STATE_LISTENING);
    pthread_mutex_unlock(&s->lock);
}

BANTER_API banter_status banter_session_add_message(banter_session *s, const char *role, const char *text)
{
    if (!s || !role || !text) return BANTER_ERR_INVALID_ARG;
    const char *r = !strcmp(role, "user") ? "user" : !strcmp(role, "assistant") ? "assistant" : NULL;
    size_t len = strlen(text);
    if (!r || len == 0 || len > 65536) return BANTER_ERR_INVALID_ARG;
    pthread_mutex_lock(&s->lock);
    spec_reject(s);
    /* A reply that is ending (its message is in, the cache being cut) or a message waiting for the worker
     * comes first: they are short. */
    while (!s->stop && !s->reply_active && s->pending.kind != JOB_REPLY &&
           (s->busy || s->pending.kind != JOB_NONE))
        pthread_cond_wait(&s->cond, &s->lock);
    int rc = BANTER_OK;
    if (s->reply_active || s->pending.kind == JOB_REPLY) rc = BANTER_ERR_BUSY;
    else if (s->stop) rc = BANTER_ERR_CANCELLED;
    else rc = push_msg(s, r, text, len);
    if (!rc) s->has_reply = false; /* the history no longer ends with the last reply */
    pthread_mutex_unlock(&s->lock);
    return (banter_status)rc;
}

BANTER_API banter_status banter_session_respond(banter_session *s, bool audio)
{
    if (!s) return BANTER_ERR_INVALID_ARG;
    pthread_mutex_lock(&s->lock);
    int rc = BANTER_OK;
    if (s->reply_active || s->pending.kind == JOB_REPLY) {
        rc = BANTER_ERR_BUSY;
    } else if (s->pending.kind == JOB_MESSAGE) {
        /* The user's turn waits for the worker: it is answered as it is added. */
        s->pending.kind = JOB_REPLY;
    } else {
        spec_reject(s);
        if (s->n_msgs == 0 || strcmp(s->msgs[s->n_msgs - 1].role, "user")) {
            rc = BANTER_ERR_INVALID_ARG;
        } else {
            memset(&s->pending, 0, sizeof s->pending);
            s->pending.kind = JOB_REPLY;
        }
    }
    if (!rc) {
        s->pending.text_only = !audio;
        s->pending.t_endpoint = core_time_ms();
        s->pending.cpu_endpoint = cpu_ms();
        memset(&s->pending.stats, 0, sizeof s->pending.stats);
        if (s->state != BANTER_STATE_USER_SPEAKING) set_state(s, BANTER_STATE_THINKING);
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return (banter_status)rc;
}

BANTER_API banter_status banter_session_truncate(banter_session *s, size_t played, size_t *reply_samples)
{
    if (!s) return BANTER_ERR_INVALID_ARG;
    pthread_mutex_lock(&s->lock);
    int rc = BANTER_OK;
    if (s->reply_active && !s->msg_final && !s->held) {
        /* In progress: stop it there (or cut a barge-in's estimate back to what the listener says). */
        if (reply_samples) *reply_samples = s->reply_samples;
        size_t p = played < s->played ? played : s->played;
        if (!s->barged) barge_in_at(s, p);
        else if (p < s->barge_played) s->barge_played = p;
    } else {
        size_t total = s->reply_samples;
        rc = recut(s, played, NULL);
        if (rc != BANTER_ERR_NOT_FOUND && reply_samples) *reply_samples = total;
    }
    pthread_mutex_unlock(&s->lock);
    return (banter_status)rc;
}

BANTER_API banter_session_state banter_session_get_state(const banter_session *s)
{
    if (!s) return BANTER_STATE_LISTENING;
    banter_session *m = (banter_session *)s;
    pthread_mutex_lock(&m->lock);
    banter_session_state st = m->state;
    pthread_mutex_unlock(&m->lock);
    return st;
}

BANTER_API bool banter_session_busy(const banter_session *s)
{
    if (!s) return false;
    banter_session *m = (banter_session *)s;
    pthread_mutex_lock(&m->lock);
    bool b = m->reply_active || m->pending.kind == JOB_REPLY || m->q_head < m->q_len;
    pthread_mutex_unlock(&m->lock);
    return b;
}

/* No turn waits, and the reply in progress (if any) is fully generated and synthesized (lock held). */
static bool reply_synthesized(const banter_session *s)
{
    return s->pending.kind != JOB_REPLY && (!s->reply_active || s->synthesized);
}

BANTER_API bool banter_session_wait_reply(banter_session *s, int timeout_ms)
{
    if (!s) return true;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (reply_synthesized(s)) break;
        if (timeout_ms < 0) pthread_cond_wait(&s->cond, &s->lock);
        else if (pthread_cond_timedwait(&s->cond, &s->lock, &dl)) break;
    }
    bool idle = reply_synthesized(s);
    pthread_mutex_unlock(&s->lock);
    return idle;
}

BANTER_API size_t banter_session_n_messages(const banter_session *s)
{
    if (!s) return 0;
    banter_session *m = (banter_session *)s;
    pthread_mutex_lock(&m->lock);
    size_t n = m->n_msgs;
    pthread_mutex_unlock(&m->lock);
    return n;
}

BANTER_API long banter_session_message(const banter_session *s, size_t i, const char **role, char *buf,
                                       size_t buf_len)
{
    if (role) *role = NULL;
    if (!s) return -1;
    banter_session *m = (banter_session *)s;
    pthread_mutex_lock(&m->lock);
    long len = -1;
    if (i < m->n_msgs) {
        len = (long)strlen(m->msgs[i].content);
        if (role) *role = m->msgs[i].role;
        if (buf && buf_len) core_errf(buf, buf_len, "%s", m->msgs[i].content);
    }
    pthread_mutex_unlock(&m->lock);
    return len;
}

BANTER_API int banter_session_cached_tokens(const banter_session *s)
{
    if (!s) return -1;
    banter_session *m = (banter_session *)s;
    pthread_mutex_lock(&m->lock);
    int n = m->cached_tokens;
    pthread_mutex_unlock(&m->lock);
    return n;
}
