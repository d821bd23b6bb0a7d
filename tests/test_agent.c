/*
 * test_agent.c: the agent: the native backend's KV-cache reuse, the heard-text mapping, and whole spoken
 * conversations through banter_session with real speech.
 *
 * Speech: Debian's pocketsphinx-testdata recording goforward.raw (a human saying "go forward ten meters") and
 * sentences synthesized with Flite's slt voice, which PocketSphinx recognizes at 5-9% WER. Audio goes in at the
 * pace of real time in 20 ms frames, as from a microphone, so the VAD, the endpoint, the speculative reply and
 * barge-in all run on their real clocks.
 *
 * The language model is a synthetic tiny Gemma 3 (random weights, real format): its replies are gibberish,
 * which is all the mechanics need. Correctness of cache reuse is checked against an independent computation:
 * the same messages answered greedily by a fresh conversation with nothing cached must give the same text.
 *
 * Bounds: the recognized words of goforward.raw must be exact (test_asr measures WER 0 for it), and the Flite
 * sentences within WER 0.15 (measured 5-9%).
 */
#include "agent/agent.h"
#include "agent/agent_llm.h"
#include "banter.h"
#include "core/core.h"
#include "speech.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static char g_model[256];

/* ---- the native backend ---------------------------------------------------------------------------------- */

struct text {
    char s[4096];
    size_t n;
    int stop_after; /* pieces; 0 = never */
    int pieces;
};

static int collect_piece(const char *p, size_t len, void *user)
{
    struct text *t = user;
    if (t->n + len < sizeof t->s) {
        memcpy(t->s + t->n, p, len);
        t->n += len;
        t->s[t->n] = 0;
    }
    t->pieces++;
    return !(t->stop_after && t->pieces >= t->stop_after);
}

static int reply(struct agent_llm *be, void *conv, const banter_chat_message *m, size_t n, struct text *out,
                 struct agent_llm_stats *st)
{
    memset(out, 0, sizeof *out);
    char err[256] = "";
    int rc = be->ops->reply(conv, m, n, collect_piece, out, st, err, sizeof err);
    if (rc) printf("reply: %s (%s)\n", banter_status_str(rc), err);
    return rc;
}

static void *open_conv(struct agent_llm *be, int max_tokens)
{
    struct agent_reply_config rc = {.max_tokens = max_tokens};
    rc.sampler = banter_sampler_config_default();
    rc.sampler.temperature = 0; /* greedy: the reference comparison needs determinism */
    void *conv = NULL;
    char err[256];
    CHECK_INT_EQ(be->ops->conv_open(be->state, &rc, &conv, err, sizeof err), 0);
    return conv;
}

/* The independent reference: a fresh context of the same model prefills a conversation's prompt tokens in one
 * go and decodes greedily; the conversation's reply (built on a cache grown turn by turn, truncated, reused)
 * must be the same text. */
static banter_model *g_ref_model;

struct ref_text {
    char s[4096];
    size_t n;
};

static int ref_piece(banter_token t, const char *p, size_t len, void *user)
{
    (void)t;
    struct ref_text *r = user;
    if (r->n + len < sizeof r->s) {
        memcpy(r->s + r->n, p, len);
        r->n += len;
        r->s[r->n] = 0;
    }
    return 1;
}

static void check_against_reference(void *conv, int n_prompt, const char *got, int max_tokens)
{
    int n = 0;
    const banter_token *toks = agent_llm_native_tokens(conv, &n);
    CHECK(n >= n_prompt);
    banter_context_config cc = banter_context_config_default();
    cc.n_ctx = 1024;
    banter_context *ctx = NULL;
    CHECK_INT_EQ(banter_context_open(g_ref_model, &cc, &ctx), 0);
    int seq;
    CHECK_INT_EQ(banter_seq_open(ctx, &seq), 0);
    banter_sampler_config sc = banter_sampler_config_default();
    sc.temperature = 0;
    banter_model_desc d;
    banter_model_describe(g_ref_model, &d);
    banter_sampler *smp = NULL;
    CHECK_INT_EQ(banter_sampler_open(&sc, d.n_vocab, &smp), 0);
    struct ref_text r = {{0}, 0};
    CHECK_INT_EQ(banter_generate(ctx, seq, toks, n_prompt, smp, max_tokens, ref_piece, &r, NULL), 0);
    CHECK_STR_EQ(got, r.s);
    banter_sampler_close(smp);
    banter_context_close(ctx);
}

static void test_backend_cache(void)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, 4, 2, &be, err, sizeof err), 0);
    void *a = open_conv(&be, 12);
    struct text t1, t2;
    struct agent_llm_stats s1, s2;

    banter_chat_message m[6] = {{"system", "You are terse."}, {"user", "hello there"}};
    CHECK_INT_EQ(reply(&be, a, m, 2, &t1, &s1), 0);
    CHECK(t1.n > 0);
    CHECK_INT_EQ(s1.n_fed, s1.n_prompt); /* nothing was cached */
    check_against_reference(a, s1.n_prompt, t1.s, 12);
    int cached1 = be.ops->cached(a);
    CHECK(cached1 > s1.n_prompt);
    int n_before = 0;
    const banter_token *tk = agent_llm_native_tokens(a, &n_before);
    banter_token before[1024];
    memcpy(before, tk, (size_t)n_before * sizeof *tk);

    /* Turn 2: the model's own reply as the session stores it (trimmed); only the new turn's tokens are fed, the
     * reply's tokens stay as generated, and the answer is the reference's. */
    char trimmed[4096];
    const char *a0 = t1.s;
    while (*a0 == ' ' || *a0 == '\n') a0++;
    snprintf(trimmed, sizeof trimmed, "%s", a0);
    size_t tl = strlen(trimmed);
    while (tl > 0 && (trimmed[tl - 1] == ' ' || trimmed[tl - 1] == '\n')) trimmed[--tl] = 0;
    m[2] = (banter_chat_message){"assistant", trimmed};
    m[3] = (banter_chat_message){"user", "what time is it"};
    CHECK_INT_EQ(reply(&be, a, m, 4, &t2, &s2), 0);
    printf("turn 2: prompt %d tokens, fed %d, cached before %d\n", s2.n_prompt, s2.n_fed, cached1);
    CHECK_INT_EQ(s2.n_fed, s2.n_prompt - cached1);
    CHECK(s2.n_fed < s2.n_prompt / 2);
    tk = agent_llm_native_tokens(a, &n_before);
    CHECK(memcmp(tk, before, (size_t)cached1 * sizeof *tk) == 0);
    check_against_reference(a, s2.n_prompt, t2.s, 12);

    /* Barge-in: the assistant's message cut to its first word; sync drops the cache beyond it (keeping the
     * tokens before), and the next answer is again the reference's. */
    /* (the synthetic model's words are long: cut at half the reply, on a character boundary) */
    char cut[4096];
    size_t k = 0;
    while (t2.s[k] == ' ' || t2.s[k] == '\n') k++;
    size_t c0 = k, half = k + (strlen(t2.s) - k) / 2;
    while (half > c0 && ((unsigned char)t2.s[half] & 0xC0) == 0x80) half--;
    memcpy(cut, t2.s + c0, half - c0);
    cut[half - c0] = 0;
    while (half - c0 > 0 && cut[strlen(cut) - 1] == ' ') cut[strlen(cut) - 1] = 0;
    int n_full = 0;
    tk = agent_llm_native_tokens(a, &n_full);
    memcpy(before, tk, (size_t)n_full * sizeof *tk);
    m[4] = (banter_chat_message){"assistant", cut};
    CHECK_INT_EQ(be.ops->sync(a, m, 5), 0);
    int cached_cut = be.ops->cached(a);
    printf("cut to \"%s\": cache %d -> %d tokens (prompt %d)\n", cut, n_full, cached_cut, s2.n_prompt);
    CHECK(cached_cut < n_full);
    CHECK(cached_cut >= s2.n_prompt);
    tk = agent_llm_native_tokens(a, &n_before);
    CHECK(memcmp(tk, before, (size_t)cached_cut * sizeof *tk) == 0);
    m[5] = (banter_chat_message){"user", "say that again"};
    struct text t3;
    struct agent_llm_stats s3;
    CHECK_INT_EQ(reply(&be, a, m, 6, &t3, &s3), 0);
    CHECK_INT_EQ(s3.n_fed, s3.n_prompt - cached_cut);
    check_against_reference(a, s3.n_prompt, t3.s, 12);

    /* Speculative prefill: prepare, then the reply feeds one token. */
    void *c = open_conv(&be, 12);
    struct agent_llm_stats sp, sr;
    struct text ref;
    CHECK_INT_EQ(be.ops->prepare(c, m, 2, &sp, err, sizeof err), 0);
    CHECK_INT_EQ(sp.n_fed, sp.n_prompt - 1);
    CHECK_INT_EQ(reply(&be, c, m, 2, &ref, &sr), 0);
    printf("speculative prefill: %d of %d tokens before, %d after\n", sp.n_fed, sp.n_prompt, sr.n_fed);
    CHECK(sr.n_fed >= 1 && sr.n_fed <= 3);
    check_against_reference(c, sr.n_prompt, ref.s, 12);

    /* The callback stops a reply; the conversation still works. */
    struct text stop;
    memset(&stop, 0, sizeof stop);
    stop.stop_after = 2;
    CHECK_INT_EQ(be.ops->reply(c, m, 4, collect_piece, &stop, NULL, err, sizeof err), BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(stop.pieces, 2);
    CHECK_INT_EQ(reply(&be, c, m, 4, &ref, &sr), 0);
    check_against_reference(c, sr.n_prompt, ref.s, 12);

    /* Every sequence in use: a clear error. */
    void *b = open_conv(&be, 12);
    void *d = open_conv(&be, 12);
    CHECK(b != NULL && d != NULL);
    void *e = NULL;
    struct agent_reply_config rcfg = {.max_tokens = 4};
    rcfg.sampler = banter_sampler_config_default();
    CHECK_INT_EQ(be.ops->conv_open(be.state, &rcfg, &e, err, sizeof err), BANTER_ERR_CONTEXT_FULL);
    CHECK(strstr(err, "in use") != NULL);
    be.ops->conv_close(d);
    be.ops->conv_close(c);
    be.ops->conv_close(b);
    be.ops->conv_close(a);
    be.ops->close(be.state);
}

/* A conversation longer than the context: old turns are left out (once, down to half the context), replies
 * keep coming, and the turn after a drop again costs only its own tokens. */
static void test_backend_overflow(void)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 256, 1, 2, &be, err, sizeof err), 0);
    void *a = open_conv(&be, 8);
    enum { TURNS = 24 };
    static char replies[TURNS][4096];
    banter_chat_message m[2 * TURNS + 1];
    m[0] = (banter_chat_message){"system", "Be brief."};
    size_t n = 1;
    int drops = 0, last_dropped = 0;
    for (int t = 0; t < TURNS; t++) {
        m[n++] = (banter_chat_message){"user", "tell me one more thing about the weather in the park"};
        struct text out;
        struct agent_llm_stats st;
        int cached = be.ops->cached(a);
        if (reply(&be, a, m, n, &out, &st) != 0) {
            CHECK(0);
            break;
        }
        CHECK(st.n_prompt + 8 <= 256);
        if (st.n_dropped != last_dropped) {
            drops++;
            CHECK(st.n_prompt <= 128);
            last_dropped = st.n_dropped;
        } else if (t > 0) {
            CHECK_INT_EQ(st.n_fed, st.n_prompt - cached);
        }
        memcpy(replies[t], out.s, out.n + 1);
        m[n++] = (banter_chat_message){"assistant", replies[t]};
    }
    printf("overflow: %d drops over %d turns (context 256)\n", drops, TURNS);
    CHECK(drops >= 1);
    CHECK(drops < TURNS / 2);
    be.ops->conv_close(a);
    be.ops->close(be.state);
}

struct cancel_arg {
    struct agent_llm *be;
    void *conv;
};

static void *cancel_later(void *p)
{
    struct cancel_arg *c = p;
    usleep(20000);
    c->be->ops->cancel(c->conv);
    return NULL;
}

static int slow_piece(const char *p, size_t len, void *user)
{
    usleep(5000);
    return collect_piece(p, len, user);
}

static void test_backend_cancel(void)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, 1, 2, &be, err, sizeof err), 0);
    void *a = open_conv(&be, 2000);
    banter_chat_message m[1] = {{"user", "talk for a long time"}};
    struct cancel_arg ca = {&be, a};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &ca);
    struct text out;
    memset(&out, 0, sizeof out);
    double t0 = core_time_ms();
    int rc = be.ops->reply(a, m, 1, slow_piece, &out, NULL, err, sizeof err);
    pthread_join(th, NULL);
    CHECK_INT_EQ(rc, BANTER_ERR_CANCELLED);
    printf("cancel: stopped after %d pieces, %.0f ms\n", out.pieces, core_time_ms() - t0);
    CHECK(out.pieces < 2000);
    struct agent_llm_stats st;
    CHECK_INT_EQ(reply(&be, a, m, 1, &out, &st), 0); /* usable again */
    be.ops->conv_close(a);
    be.ops->close(be.state);
}

/* ---- heard text -------------------------------------------------------------------------------------------- */

static void test_heard_len(void)
{
    const char *r = "Hello there. How are you today?";
    /* Two spans: "Hello there." (0-12) samples 0-1000, "How are you today?" (13-31) samples 1000-3000. */
    struct agent_span sp[2] = {{0, 12, 0, 1000}, {13, 18, 1000, 2000}};
    size_t n = strlen(r);
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 0), 0);
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 400), 0);     /* inside "Hello" (pos 4.8) */
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 600), 5);     /* pos 7.2, inside "there.": "Hello" */
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 1000), 12);   /* the first clause, whole */
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 1500), 16);   /* pos 17.5, inside "are": "... How" */
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 1900), 20);   /* pos 21.1, inside "you": "... How are" */
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 3000), n);
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 2, 99999), n);
    CHECK_INT_EQ(agent_heard_len(r, n, sp, 0, 500), 0);
    /* A span that lies outside the text is ignored rather than trusted. */
    struct agent_span bad[1] = {{10, 100, 0, 10}};
    CHECK_INT_EQ(agent_heard_len(r, n, bad, 1, 10), 0);
}

/* ---- spoken conversations ---------------------------------------------------------------------------------- */

#define MAX_TURNS 8

struct rec {
    pthread_mutex_t lock;
    int n_user, n_turns, n_barge, n_errors, n_speech_start, n_no_turn;
    char user[MAX_TURNS][512];
    char reply[MAX_TURNS][4096]; /* REPLY_TEXT pieces of each turn */
    char done[MAX_TURNS][4096];  /* REPLY_DONE text */
    char heard[MAX_TURNS][4096];
    banter_turn_stats turns[MAX_TURNS];
    size_t audio;
    int n_reply_turn; /* the turn the REPLY_TEXT pieces belong to */
};

static void on_event(const banter_event *ev, void *user)
{
    struct rec *r = user;
    pthread_mutex_lock(&r->lock);
    switch (ev->type) {
    case BANTER_EVENT_SPEECH_START: r->n_speech_start++; break;
    case BANTER_EVENT_USER_TEXT:
        if (r->n_user < MAX_TURNS) snprintf(r->user[r->n_user], sizeof r->user[0], "%s", ev->text);
        r->n_user++;
        break;
    case BANTER_EVENT_NO_TURN: r->n_no_turn++; break;
    case BANTER_EVENT_REPLY_TEXT:
        if (r->n_turns < MAX_TURNS) {
            size_t l = strlen(r->reply[r->n_turns]);
            snprintf(r->reply[r->n_turns] + l, sizeof r->reply[0] - l, "%s", ev->text);
        }
        break;
    case BANTER_EVENT_AUDIO: r->audio += ev->n_samples; break;
    case BANTER_EVENT_BARGE_IN:
        if (r->n_barge < MAX_TURNS) snprintf(r->heard[r->n_barge], sizeof r->heard[0], "%s", ev->text);
        r->n_barge++;
        break;
    case BANTER_EVENT_REPLY_DONE:
        if (r->n_turns < MAX_TURNS) snprintf(r->done[r->n_turns], sizeof r->done[0], "%s", ev->text);
        break;
    case BANTER_EVENT_TURN:
        if (r->n_turns < MAX_TURNS) r->turns[r->n_turns] = *ev->turn;
        r->n_turns++;
        break;
    case BANTER_EVENT_ERROR:
        printf("  session error: %s\n", ev->text);
        r->n_errors++;
        break;
    default: break;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Feeds audio in 20 ms frames at real-time pace (NULL = silence). */
static void feed(banter_session *s, const float *x, size_t n)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (size_t i = 0; i < n; i += 320) {
        size_t k = n - i < 320 ? n - i : 320;
        float out[320];
        CHECK_INT_EQ(banter_session_process(s, x ? x + i : NULL, out, k), 0);
        t.tv_nsec += 20000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    }
}

/* Feeds silence until the session has answered and played everything (at most max_s). */
static bool settle(banter_session *s, double max_s)
{
    for (int k = 0; k < (int)(max_s * 50); k++) {
        feed(s, NULL, 320);
        if (k > 10 && !banter_session_busy(s) && banter_session_get_state(s) == BANTER_STATE_LISTENING)
            return true;
    }
    return false;
}

static float *flite(const char *text, size_t *n)
{
    banter_tts *t = NULL;
    char err[256];
    BANTER_ASSERT(banter_tts_open(NULL, &t, err, sizeof err) == BANTER_OK);
    struct pcm p = {0};
    BANTER_ASSERT(banter_tts_synthesize(t, text, append_pcm, &p, NULL) == BANTER_OK);
    banter_tts_close(t);
    *n = p.n;
    return p.x;
}

static banter_session *open_session(banter_llm *llm, banter_asr *asr, struct rec *r, int max_tokens,
                                    int speculate_ms)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    banter_session_config sc = banter_session_config_default();
    sc.max_reply_tokens = max_tokens;
    sc.speculate_ms = speculate_ms;
    banter_sampler_config smp = banter_sampler_config_default();
    smp.temperature = 0;
    sc.sampler = &smp;
    banter_session *s = NULL;
    char err[512];
    CHECK_INT_EQ(banter_session_open(llm, asr, &sc, on_event, r, &s, err, sizeof err), 0);
    return s;
}

static void print_turn(const banter_turn_stats *t)
{
    printf("  turn %d: endpoint %.0f ms, asr %.1f, first token %.1f, first clause %.1f, first audio %.1f ms; "
           "total %.0f ms; prompt %d, prefilled %d, speculated %d%s\n",
           t->turn, t->endpoint_delay_ms, t->asr_final_ms, t->first_token_ms, t->first_chunk_ms,
           t->first_audio_ms, t->total_ms, t->n_prompt, t->n_prefilled, t->n_speculated,
           t->interrupted ? ", interrupted" : "");
}

/* Two turns of real speech: recognized, answered aloud, the second prefilling only its own tokens. */
static void test_conversation(banter_llm *llm, banter_asr *asr)
{
    size_t n_go = 0;
    float *go = read_raw_s16(DATA "/goforward.raw", &n_go);
    if (!go) {
        printf("skipping the conversation test: %s/goforward.raw missing (pocketsphinx-testdata)\n", DATA);
        return;
    }
    const char *sentence = "please call me back when you get home tonight";
    size_t n_fl = 0;
    float *fl = flite(sentence, &n_fl);

    struct rec r;
    banter_session *s = open_session(llm, asr, &r, 10, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 1); /* the default system prompt */
    feed(s, NULL, 8000);
    feed(s, go, n_go);
    CHECK(settle(s, 60));
    CHECK_INT_EQ(r.n_turns, 1);
    CHECK_STR_EQ(r.user[0], "go forward ten meters");
    CHECK(strlen(r.reply[0]) > 0);
    CHECK(r.audio > 1600);
    print_turn(&r.turns[0]);
    const banter_turn_stats *t1 = &r.turns[0];
    CHECK(t1->first_audio_ms > 0);
    CHECK_NEAR(t1->total_ms, t1->endpoint_delay_ms + t1->processing_ms, 1e-6);
    CHECK(t1->endpoint_delay_ms >= 380 && t1->endpoint_delay_ms <= 440);
    CHECK(!t1->interrupted && !t1->failed);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    const char *role;
    char buf[4096];
    banter_session_message(s, 1, &role, buf, sizeof buf);
    CHECK_STR_EQ(role, "user");
    CHECK_STR_EQ(buf, "go forward ten meters");
    banter_session_message(s, 2, &role, buf, sizeof buf);
    CHECK_STR_EQ(role, "assistant");
    CHECK_STR_EQ(buf, r.done[0]);
    int cached1 = banter_session_cached_tokens(s);
    CHECK(cached1 > t1->n_prompt);

    feed(s, fl, n_fl);
    CHECK(settle(s, 60));
    CHECK_INT_EQ(r.n_turns, 2);
    int n_ref1, n_ref2;
    int errs = word_errors("go forward ten meters", r.user[0], &n_ref1) + word_errors(sentence, r.user[1], &n_ref2);
    double w = (double)errs / (n_ref1 + n_ref2);
    printf("  flite: \"%s\" -> \"%s\"; WER of both turns %.2f\n", sentence, r.user[1], w);
    CHECK(w <= 0.25);
    const banter_turn_stats *t2 = &r.turns[1];
    print_turn(t2);
    /* Only the new turn's tokens were fed (before or after the endpoint); a rejected speculation may have fed
     * part of them twice, so the bound is the new tokens, twice. */
    int new_tokens = t2->n_prompt - cached1;
    CHECK(new_tokens > 0);
    CHECK(t2->n_prefilled <= new_tokens);
    CHECK(t2->n_prefilled + t2->n_speculated <= 2 * new_tokens);
    printf("  reply 2: \"%s\"\n", r.reply[1]);
    bool spoken = false;
    for (const char *q = r.reply[1]; *q; q++) spoken |= *q != ' ' && *q != '\n';
    CHECK(!spoken || t2->first_audio_ms > 0);
    CHECK_INT_EQ(r.n_errors, 0);
    CHECK_INT_EQ(r.n_barge, 0);
    banter_session_close(s);
    free(go);
    free(fl);
}

/* The user speaks while the assistant is speaking: generation and playback stop, the message is cut to what
 * was heard, and the cache follows the cut. */
static void test_barge_in(banter_llm *llm, banter_asr *asr)
{
    size_t n1 = 0, n2 = 0;
    float *q1 = flite("tell me a very long story about the sea", &n1);
    float *q2 = flite("stop please", &n2);
    struct rec r;
    banter_session *s = open_session(llm, asr, &r, 120, 0);
    feed(s, NULL, 4000);
    feed(s, q1, n1);
    /* Wait for the reply to be audible, then let it play 0.8 s. */
    int k = 0;
    while (banter_session_get_state(s) != BANTER_STATE_SPEAKING && k++ < 1500) feed(s, NULL, 320);
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_SPEAKING);
    feed(s, NULL, 12800);
    feed(s, q2, n2);
    CHECK(settle(s, 120));
    CHECK_INT_EQ(r.n_barge, 1);
    CHECK(r.n_turns >= 2);
    CHECK(r.turns[0].interrupted);
    print_turn(&r.turns[0]);
    print_turn(&r.turns[1]);
    /* What was heard is a proper prefix of the reply, by whole words, and the history holds exactly it. */
    const char *full = r.reply[0];
    const char *heard = r.heard[0];
    while (*full == ' ') full++;
    printf("  reply: \"%.80s...\" (%zu bytes)\n  heard: \"%s\"\n", full, strlen(full), heard);
    CHECK(strlen(heard) > 0);
    CHECK(strlen(heard) < strlen(full));
    CHECK(strncmp(full, heard, strlen(heard)) == 0);
    CHECK(full[strlen(heard)] == ' ' || full[strlen(heard)] == 0);
    CHECK_STR_EQ(r.done[0], heard);
    const char *role;
    char buf[4096];
    banter_session_message(s, 2, &role, buf, sizeof buf);
    CHECK_STR_EQ(role, "assistant");
    CHECK_STR_EQ(buf, heard);
    /* The second turn's prompt is the cut history: its cache continued from the cut (only the new turn's
     * tokens were fed), and after it the cache holds the prompt and the reply. */
    const banter_turn_stats *t2 = &r.turns[r.n_turns - 1];
    CHECK(t2->n_prefilled + t2->n_speculated < t2->n_prompt / 2);
    CHECK(banter_session_cached_tokens(s) >= t2->n_prompt);
    banter_session_close(s);
    free(q1);
    free(q2);
}

/* Silence and noise alone never start a turn. */
static void test_no_false_turns(banter_llm *llm, banter_asr *asr)
{
    struct rec r;
    banter_session *s = open_session(llm, asr, &r, 8, 0);
    size_t n = 16000 * 4;
    float *x = calloc(n, sizeof *x);
    feed(s, x, n); /* digital silence */
    uint32_t seed = 12345;
    for (int level = 0; level < 2; level++) {
        float amp = level == 0 ? 0.01f : 0.08f; /* about -43 and -25 dBFS */
        float lp = 0;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1664525u + 1013904223u;
            float white = ((float)(seed >> 8) / 16777216.0f) * 2 - 1;
            lp = 0.9f * lp + 0.1f * white; /* steady, brownish noise like a fan or a road */
            x[i] = amp * (white * 0.3f + lp * 3.0f);
        }
        feed(s, x, n);
    }
    CHECK_INT_EQ(r.n_speech_start, 0);
    CHECK_INT_EQ(r.n_user, 0);
    CHECK_INT_EQ(r.n_turns, 0);
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_LISTENING);
    banter_session_close(s);
    free(x);
}

/* Bad input: the session answers with an error and carries on. */
static void test_bad_input(banter_llm *llm, banter_asr *asr)
{
    struct rec r;
    banter_session *s = open_session(llm, asr, &r, 6, 0);
    float big[16001] = {0};
    CHECK_INT_EQ(banter_session_process(s, big, NULL, 16001), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_process(NULL, big, NULL, 10), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_send_text(s, ""), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_send_text(s, "  \n"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_send_text(s, NULL), BANTER_ERR_INVALID_ARG);
    /* NaN, infinities and clipping in the input. */
    float junk[320];
    for (int i = 0; i < 320; i++) junk[i] = i % 3 == 0 ? NAN : (i % 3 == 1 ? INFINITY : -50.0f);
    for (int k = 0; k < 50; k++) CHECK_INT_EQ(banter_session_process(s, junk, NULL, 320), 0);
    settle(s, 30);
    /* A typed turn works (and a second one interrupts the first). */
    CHECK_INT_EQ(banter_session_send_text(s, "hello"), 0);
    CHECK_INT_EQ(banter_session_send_text(s, "hello again"), 0);
    CHECK(settle(s, 60));
    CHECK(r.n_turns >= 1);

    /* Interrupts before the first piece of a reply, and repeated typed turns: no crash, the session goes on. */
    for (int k = 0; k < 5; k++) {
        CHECK_INT_EQ(banter_session_send_text(s, "hi"), 0);
        banter_session_interrupt(s);
        usleep(1000 * k);
    }
    CHECK(settle(s, 60));
    banter_session_close(s);

    /* A session closed in the middle of a reply. */
    s = open_session(llm, asr, &r, 400, 0);
    CHECK_INT_EQ(banter_session_send_text(s, "talk"), 0);
    feed(s, NULL, 3200);
    banter_session_close(s);

    /* Bad configurations. */
    char err[256];
    banter_session *bad = NULL;
    CHECK_INT_EQ(banter_session_open(NULL, asr, NULL, NULL, NULL, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    banter_session_config sc = banter_session_config_default();
    sc.end_silence_ms = 50;
    CHECK_INT_EQ(banter_session_open(llm, asr, &sc, NULL, NULL, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK(bad == NULL);
    sc = banter_session_config_default();
    sc.tts.voice = "no-such-voice";
    CHECK(banter_session_open(llm, asr, &sc, NULL, NULL, &bad, err, sizeof err) != 0);
    CHECK(bad == NULL);
    banter_llm *l = NULL;
    banter_llm_config lc = banter_llm_config_default();
    CHECK_INT_EQ(banter_llm_open(&lc, &l, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK(strstr(err, "no language model") != NULL);
    lc.model = "/nonexistent/model.gguf";
    CHECK(banter_llm_open(&lc, &l, err, sizeof err) != 0);
    CHECK(l == NULL);
    lc.url = "http://127.0.0.1:9";
    CHECK_INT_EQ(banter_llm_open(&lc, &l, err, sizeof err), BANTER_ERR_INVALID_ARG);
}

/* Endless speech (a stuck microphone, a radio): the turn is cut at 30 s and taken, the rest of that speech is
 * ignored, and the session then works as before. Fed faster than real time: only the audio's clock matters. */
static void test_endless_speech(banter_llm *llm, banter_asr *asr)
{
    size_t n1 = 0, n2 = 0;
    float *a = flite("the weather is nice today and we can go for a walk in the park", &n1);
    float *b = flite("my brother lives in a small house near the river", &n2);
    /* Trim each sentence's leading and trailing silence so that the joins leave no pause to end a turn. */
    size_t cap = 16000 * 40, n = 0;
    float *x = calloc(cap, sizeof *x);
    for (int k = 0; n < 16000 * 34; k++) {
        const float *src = k % 2 ? b : a;
        size_t len = k % 2 ? n2 : n1, lo = 0, hi = len;
        while (lo < len && fabsf(src[lo]) < 0.01f) lo++;
        while (hi > lo && fabsf(src[hi - 1]) < 0.01f) hi--;
        if (n + (hi - lo) > cap) break;
        memcpy(x + n, src + lo, (hi - lo) * sizeof *x);
        n += hi - lo;
    }
    struct rec r;
    banter_session *s = open_session(llm, asr, &r, 6, 0);
    for (size_t i = 0; i < n; i += 320) banter_session_process(s, x + i, NULL, n - i < 320 ? n - i : 320);
    printf("  endless speech: %.1f s fed, %d speech starts, %d turns taken, %d without words\n", n / 16000.0,
           r.n_speech_start, r.n_user, r.n_no_turn);
    CHECK_INT_EQ(r.n_speech_start, 1);
    CHECK_INT_EQ(r.n_user + r.n_no_turn, 1); /* one turn, cut at 30 s */
    CHECK(settle(s, 60));
    CHECK_INT_EQ(banter_session_send_text(s, "are you still there"), 0);
    CHECK(settle(s, 60));
    CHECK(r.n_turns >= 1);
    CHECK_INT_EQ(r.n_errors, 0);
    banter_session_close(s);
    free(a);
    free(b);
    free(x);
}

/* An application that plays the audio events itself (no_playout) and never calls process: replies complete,
 * and a barge-in keeps what was delivered. */
static void test_no_playout(banter_llm *llm, banter_asr *asr)
{
    struct rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    banter_session_config sc = banter_session_config_default();
    sc.no_playout = true;
    sc.max_reply_tokens = 8;
    banter_sampler_config smp = banter_sampler_config_default();
    smp.temperature = 0;
    sc.sampler = &smp;
    banter_session *s = NULL;
    char err[256];
    CHECK_INT_EQ(banter_session_open(llm, asr, &sc, on_event, &r, &s, err, sizeof err), 0);
    CHECK_INT_EQ(banter_session_send_text(s, "hello"), 0);
    for (int k = 0; k < 3000 && banter_session_busy(s); k++) usleep(10000);
    CHECK(!banter_session_busy(s));
    CHECK_INT_EQ(r.n_turns, 1);
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_LISTENING);
    char buf[4096];
    const char *role;
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    banter_session_message(s, 2, &role, buf, sizeof buf);
    CHECK_STR_EQ(buf, r.done[0]);
    banter_session_close(s);
}

/* A remote model that is down: the user hears an apology, the error is reported, the session survives. */
static void test_remote_down(banter_asr *asr)
{
    banter_llm_config lc = banter_llm_config_default();
    lc.url = "http://127.0.0.1:9"; /* the discard port: nothing listens there */
    lc.timeout_s = 2;
    banter_llm *l = NULL;
    char err[256];
    CHECK_INT_EQ(banter_llm_open(&lc, &l, err, sizeof err), 0);
    struct rec r;
    banter_session *s = open_session(l, asr, &r, 8, 0);
    for (int turn = 0; turn < 2; turn++) {
        CHECK_INT_EQ(banter_session_send_text(s, "are you there"), 0);
        CHECK(settle(s, 60));
    }
    CHECK_INT_EQ(r.n_turns, 2);
    CHECK_INT_EQ(r.n_errors, 2);
    CHECK(r.turns[0].failed && r.turns[1].failed);
    CHECK(r.audio > 16000); /* the apology was spoken */
    CHECK_INT_EQ(banter_session_n_messages(s), 3); /* system and the two user turns: no invented answers */
    CHECK_INT_EQ(banter_session_cached_tokens(s), -1);
    banter_session_close(s);
    banter_llm_close(l);
}

int main(void)
{
    test_heard_len();
    snprintf(g_model, sizeof g_model, "/tmp/banter-test-agent-%d.gguf", (int)getpid());
    banter_synth_config sc = {.arch = "gemma3", .shape = "tiny", .weight_type = "Q8_0", .seed = 7};
    char err[512];
    if (banter_model_synth(&sc, g_model, err, sizeof err)) {
        printf("cannot write the test model: %s\n", err);
        return 1;
    }
    CHECK_INT_EQ(banter_model_open(g_model, NULL, &g_ref_model, err, sizeof err), 0);
    test_backend_cache();
    banter_model_close(g_ref_model);
    test_backend_overflow();
    test_backend_cancel();

    banter_asr *asr = NULL;
    if (banter_asr_open(NULL, &asr, err, sizeof err)) {
        printf("skipping the spoken tests: %s\n", err);
        unlink(g_model);
        return test_finish("test_agent");
    }
    banter_llm_config lc = banter_llm_config_default();
    lc.model = g_model;
    lc.n_sessions = 4;
    lc.n_threads = 2;
    banter_llm *llm = NULL;
    CHECK_INT_EQ(banter_llm_open(&lc, &llm, err, sizeof err), 0);
    test_conversation(llm, asr);
    test_barge_in(llm, asr);
    test_no_false_turns(llm, asr);
    test_bad_input(llm, asr);
    test_no_playout(llm, asr);
    test_endless_speech(llm, asr);
    test_remote_down(asr);
    banter_llm_close(llm);
    banter_asr_close(asr);
    unlink(g_model);
    return test_finish("test_agent");
}
