/*
 * test_session_api.c: the session functions a realtime client drives: add_message and respond, truncate,
 * interrupt before a reply begins, commit and clear_input (manual_turns), no_auto_reply, text_only, update,
 * and the no_playout barge-in estimate (what real time since the first audio allows).
 *
 * The language model is the fixture ../shared/fixtures/llm/gemma3-tiny-f32.gguf (random weights: gibberish
 * replies, which is all the mechanics need), sampled with a fixed seed so that the same history gives the
 * same reply. Speech is synthesized with Flite and fed as fast as the session takes it: the VAD and the
 * recognizer run on the audio's clock, so only the barge-in estimate, which is about wall time, waits on the
 * real clock.
 *
 * Most sessions are opened with no_playout, so a reply is complete as soon as it is synthesized; the ones
 * that test a reply in progress play out through banter_session_process and simply stop taking its output,
 * which holds the reply open for as long as the test needs. Every wait is bounded, so a bug fails a check
 * instead of hanging the test.
 */
#include "banter.h"
#include "core/core.h"
#include "speech.h"
#include "test.h"

#include <ctype.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS (TEST_ASAN ? 120000 : 30000)

/* ---- events -------------------------------------------------------------------------------------------- */

/* What the session reported since the last rec_reset. seq numbers every event but STATE, so order can be
 * checked; the *_seq fields are 0 when the event did not occur. */
struct evs {
    int seq;
    int n_speech_start, n_user, n_no_turn, n_reply_text, n_chunk, n_audio_ev, n_barge, n_done, n_turns,
        n_errors;
    int first_text_seq, first_audio_seq, last_audio_seq, done_seq, turn_seq, barge_seq;
    char user[512];
    char reply[8192]; /* the REPLY_TEXT pieces, concatenated */
    char done[8192];  /* the last REPLY_DONE text */
    char heard[8192]; /* the last BARGE_IN text */
    size_t audio;     /* AUDIO samples */
    banter_turn_stats turn;
    double t_first_audio, t_turn, t_barge;
};

struct rec {
    pthread_mutex_t lock;
    struct evs e;
};

static void append(char *dst, size_t cap, const char *s)
{
    size_t l = strlen(dst);
    if (s) snprintf(dst + l, cap - l, "%s", s);
}

static void on_event(const banter_event *ev, void *user)
{
    struct rec *r = user;
    pthread_mutex_lock(&r->lock);
    struct evs *e = &r->e;
    if (ev->type != BANTER_EVENT_STATE) e->seq++;
    switch (ev->type) {
    case BANTER_EVENT_SPEECH_START:
        e->n_speech_start++;
        break;
    case BANTER_EVENT_USER_TEXT:
        e->n_user++;
        snprintf(e->user, sizeof e->user, "%s", ev->text);
        break;
    case BANTER_EVENT_NO_TURN:
        e->n_no_turn++;
        break;
    case BANTER_EVENT_REPLY_TEXT:
        if (!e->n_reply_text++) e->first_text_seq = e->seq;
        append(e->reply, sizeof e->reply, ev->text);
        break;
    case BANTER_EVENT_REPLY_CHUNK:
        e->n_chunk++;
        break;
    case BANTER_EVENT_AUDIO:
        if (!e->n_audio_ev++) {
            e->first_audio_seq = e->seq;
            e->t_first_audio = core_time_ms();
        }
        e->last_audio_seq = e->seq;
        e->audio += ev->n_samples;
        break;
    case BANTER_EVENT_BARGE_IN:
        e->n_barge++;
        e->barge_seq = e->seq;
        e->t_barge = core_time_ms();
        snprintf(e->heard, sizeof e->heard, "%s", ev->text ? ev->text : "");
        break;
    case BANTER_EVENT_REPLY_DONE:
        e->n_done++;
        e->done_seq = e->seq;
        snprintf(e->done, sizeof e->done, "%s", ev->text ? ev->text : "");
        break;
    case BANTER_EVENT_TURN:
        e->n_turns++;
        e->turn_seq = e->seq;
        e->t_turn = core_time_ms();
        e->turn = *ev->turn;
        break;
    case BANTER_EVENT_ERROR:
        printf("  session error: %s\n", ev->text ? ev->text : "");
        e->n_errors++;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&r->lock);
}

/* The callback runs with the session's lock held, so the test never calls the session with r->lock held. */
static void rec_reset(struct rec *r)
{
    pthread_mutex_lock(&r->lock);
    memset(&r->e, 0, sizeof r->e);
    pthread_mutex_unlock(&r->lock);
}

static void snap(struct rec *r, struct evs *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->e;
    pthread_mutex_unlock(&r->lock);
}

static int count_at(struct rec *r, size_t field)
{
    pthread_mutex_lock(&r->lock);
    int n = *(const int *)((const char *)&r->e + field);
    pthread_mutex_unlock(&r->lock);
    return n;
}
#define COUNT(r, f) count_at((r), offsetof(struct evs, f))

/* Polls until n TURN events arrived (true) or timeout_ms passed (false). With pump set, plays reply audio out
 * through banter_session_process meanwhile, as fast as it comes. */
static bool wait_turns_pump(banter_session *s, struct rec *r, int n, int timeout_ms, bool pump)
{
    double end = core_time_ms() + timeout_ms;
    while (COUNT(r, n_turns) < n) {
        if (core_time_ms() > end) return false;
        if (pump) CHECK_INT_EQ(banter_session_process(s, NULL, NULL, 320), 0);
        usleep(1000);
    }
    return true;
}

static bool wait_turns(struct rec *r, int n, int timeout_ms)
{
    return wait_turns_pump(NULL, r, n, timeout_ms, false);
}

/* ---- sessions and audio -------------------------------------------------------------------------------- */

static banter_llm *g_llm;
static banter_asr *g_asr;
static float *g_speech; /* Flite: SENTENCE */
static size_t g_n_speech;
#define SENTENCE "the weather is nice today and we can go for a walk in the park"

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

static banter_sampler_config g_sampler;

static banter_session_config base_config(int max_tokens, bool no_playout)
{
    banter_session_config sc = banter_session_config_default();
    sc.max_reply_tokens = max_tokens;
    sc.no_playout = no_playout;
    sc.system_prompt = "You are terse.";
    sc.sampler = &g_sampler;
    return sc;
}

static banter_session *open_session(const banter_session_config *sc, struct rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    banter_session *s = NULL;
    char err[512] = "";
    int rc = banter_session_open(g_llm, g_asr, sc, on_event, r, &s, err, sizeof err);
    if (rc) printf("  session_open: %s (%s)\n", banter_status_str(rc), err);
    CHECK_INT_EQ(rc, 0);
    return s;
}

static void close_session(banter_session *s, struct rec *r)
{
    banter_session_close(s);
    pthread_mutex_destroy(&r->lock);
}

/* Feeds n samples (NULL = silence) in 20 ms frames, as fast as the session takes them. */
static void feed_fast(banter_session *s, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 320) {
        size_t k = n - i < 320 ? n - i : 320;
        CHECK_INT_EQ(banter_session_process(s, x ? x + i : NULL, NULL, k), 0);
    }
}

/* Message i's content into buf (returns its role, or "" when out of range). */
static const char *msg(banter_session *s, size_t i, char *buf, size_t len)
{
    const char *role = NULL;
    buf[0] = 0;
    if (banter_session_message(s, i, &role, buf, len) < 0 || !role) return "";
    return role;
}

static const char *last_role(banter_session *s)
{
    char buf[16];
    size_t n = banter_session_n_messages(s);
    return n ? msg(s, n - 1, buf, sizeof buf) : "";
}

/* text without leading and trailing blanks, as the session stores a reply. */
static void trim(const char *text, char *out, size_t len)
{
    while (*text == ' ' || *text == '\n' || *text == '\t')
        text++;
    snprintf(out, len, "%s", text);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\n' || out[n - 1] == '\t'))
        out[--n] = 0;
}

/* cut is a strict prefix of full that ends at the end of a word. */
static bool word_prefix(const char *cut, const char *full)
{
    size_t n = strlen(cut);
    return n < strlen(full) && strncmp(cut, full, n) == 0 && (n == 0 || isspace((unsigned char)full[n]));
}

/* Waits until the session's worker has finished its job and recorded the cache (cached_tokens moves off old).
 */
static int wait_cached_change(banter_session *s, int old)
{
    double end = core_time_ms() + 5000;
    int c;
    while ((c = banter_session_cached_tokens(s)) == old && core_time_ms() < end)
        usleep(1000);
    return c;
}

static void print_elapsed(const char *name, double t0)
{
    printf("  %s: %.0f ms\n", name, core_time_ms() - t0);
}

/* ---- add_message and respond --------------------------------------------------------------------------- */

static void test_add_respond(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(24, true);
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    char buf[8192], full[8192];
    CHECK_INT_EQ(banter_session_n_messages(s), 1);
    CHECK_INT_EQ(banter_session_respond(s, true), BANTER_ERR_INVALID_ARG); /* nothing to answer */

    /* Bad arguments change nothing. */
    char *big = malloc(65538);
    BANTER_ASSERT(big);
    memset(big, 'a', 65537);
    big[65537] = 0;
    CHECK_INT_EQ(banter_session_add_message(s, "system", "be nice"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, "tool", "42"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, "User", "hi"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, NULL, "hi"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, "user", NULL), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, "user", ""), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(s, "user", big), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_add_message(NULL, "user", "hi"), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_respond(NULL, true), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_n_messages(s), 1);

    /* A message, then an answer with audio. */
    CHECK_INT_EQ(banter_session_add_message(s, "user", "hello there, how are you today"), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 2);
    struct evs e;
    snap(&r, &e);
    CHECK_INT_EQ(e.n_turns + e.n_reply_text + e.n_user, 0); /* added, not answered, and not a user turn */
    CHECK_INT_EQ(banter_session_respond(s, true), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    printf("  reply: \"%s\" (%zu samples)\n", e.reply, e.audio);
    CHECK(e.n_reply_text > 0);
    CHECK(e.audio > 0);
    CHECK_INT_EQ(e.n_done, 1);
    CHECK_INT_EQ(e.n_turns, 1);
    CHECK_INT_EQ(e.n_errors, 0);
    CHECK_INT_EQ(e.n_barge, 0);
    CHECK(e.first_text_seq > 0 && e.first_text_seq < e.first_audio_seq);
    CHECK(e.last_audio_seq < e.done_seq && e.done_seq < e.turn_seq);
    CHECK(!e.turn.interrupted && !e.turn.failed);
    CHECK_INT_EQ(e.turn.n_reply_samples, e.audio);
    CHECK(e.turn.n_prompt > 0);
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_LISTENING);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 0, buf, sizeof buf), "system");
    CHECK_STR_EQ(buf, "You are terse.");
    CHECK_STR_EQ(msg(s, 1, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, "hello there, how are you today");
    CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
    trim(e.reply, full, sizeof full);
    CHECK(strlen(full) > 0);
    CHECK_STR_EQ(buf, full);
    CHECK_STR_EQ(buf, e.done);

    /* An interrupt with no reply in progress changes nothing. */
    banter_session_interrupt(s);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
    CHECK_STR_EQ(buf, full);
    CHECK_INT_EQ(COUNT(&r, n_barge), 0);

    /* The history ends with the assistant: nothing to answer. */
    CHECK_INT_EQ(banter_session_respond(s, true), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_respond(s, false), BANTER_ERR_INVALID_ARG);

    /* A text-only answer: text, no synthesis. */
    rec_reset(&r);
    CHECK_INT_EQ(banter_session_add_message(s, "user", "and what about tomorrow"), 0);
    CHECK_INT_EQ(banter_session_respond(s, false), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK_INT_EQ(e.n_audio_ev, 0);
    CHECK_INT_EQ(e.audio, 0);
    CHECK_INT_EQ(e.n_chunk, 0);
    CHECK_INT_EQ(e.n_done, 1);
    CHECK(!e.turn.interrupted && !e.turn.failed);
    CHECK_INT_EQ(banter_session_n_messages(s), 5);
    CHECK_STR_EQ(msg(s, 3, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, "and what about tomorrow");
    CHECK_STR_EQ(msg(s, 4, buf, sizeof buf), "assistant");
    trim(e.reply, full, sizeof full);
    CHECK(strlen(full) > 0);
    CHECK_STR_EQ(buf, full);
    CHECK_STR_EQ(buf, e.done);

    /* An assistant message added by the application: still nothing to answer; a user message after it is. */
    CHECK_INT_EQ(banter_session_add_message(s, "assistant", "I said that already."), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 6);
    CHECK_STR_EQ(msg(s, 5, buf, sizeof buf), "assistant");
    CHECK_STR_EQ(buf, "I said that already.");
    CHECK_INT_EQ(banter_session_respond(s, false), BANTER_ERR_INVALID_ARG);
    /* The largest message accepted is 64 KiB (not answered: it would not fit the context). */
    big[65536] = 0;
    CHECK_INT_EQ(banter_session_add_message(s, "user", big), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 7);
    free(big);
    close_session(s, &r);
    print_elapsed("add_message and respond", t0);
}

#define WEATHER "what do you know about the weather"
#define STORY "tell me a long story about the sea"

/* Opens a no_playout session, asks question, and waits for the complete audio reply: the same question and
 * max_tokens give the same reply (text and audio) in every session. */
static banter_session *answered_session(struct rec *r, const char *question, int max_tokens, char *full,
                                        size_t full_len, size_t *audio)
{
    banter_session_config sc = base_config(max_tokens, true);
    banter_session *s = open_session(&sc, r);
    if (!s) return NULL;
    CHECK_INT_EQ(banter_session_add_message(s, "user", question), 0);
    CHECK_INT_EQ(banter_session_respond(s, true), 0);
    CHECK(wait_turns(r, 1, TIMEOUT_MS));
    struct evs e;
    snap(r, &e);
    *audio = e.audio;
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    msg(s, 2, full, full_len);
    CHECK_STR_EQ(full, e.done);
    return s;
}

/* ---- a reply in progress: busy, and truncate stops it -------------------------------------------------- */

static void test_in_progress(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(60, false); /* played out through process: held open until then */
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    char buf[8192], full[8192];
    CHECK_INT_EQ(banter_session_add_message(s, "user", STORY), 0);
    CHECK_INT_EQ(banter_session_respond(s, true), 0);
    CHECK_INT_EQ(banter_session_respond(s, true), BANTER_ERR_BUSY); /* asked for, not begun or begun */
    CHECK_INT_EQ(banter_session_add_message(s, "user", "hurry up"), BANTER_ERR_BUSY);
    CHECK(banter_session_wait_reply(s, TIMEOUT_MS)); /* synthesized; nothing played yet */
    CHECK(banter_session_busy(s));
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_SPEAKING);
    CHECK_INT_EQ(banter_session_respond(s, false), BANTER_ERR_BUSY);
    CHECK_INT_EQ(banter_session_add_message(s, "user", "hurry up"), BANTER_ERR_BUSY);
    CHECK_INT_EQ(banter_session_add_message(s, "assistant", "fine"), BANTER_ERR_BUSY);
    CHECK_INT_EQ(banter_session_n_messages(s), 2); /* the reply's message is not in yet */
    struct evs e;
    snap(&r, &e);
    CHECK_INT_EQ(e.n_turns, 0);
    printf("  reply: %zu samples of audio\n", e.audio);
    CHECK(e.audio > 48000); /* long enough that 1.5 s is a strict part of it */

    /* Play 1.5 s of it; the listener says it heard 0.25 s. */
    float out[320];
    double energy = 0;
    for (int k = 0; k < 75; k++) {
        CHECK_INT_EQ(banter_session_process(s, NULL, out, 320), 0);
        for (int i = 0; i < 320; i++)
            energy += (double)out[i] * out[i];
    }
    CHECK(energy > 0); /* the reply was playing */
    size_t rs = 0;
    CHECK_INT_EQ(banter_session_truncate(s, 4000, &rs), 0);
    CHECK_INT_EQ(rs, e.audio);
    CHECK(wait_turns(&r, 1, 10000)); /* stopped: no more playout needed */
    snap(&r, &e);
    CHECK_INT_EQ(e.n_barge, 1);
    CHECK_INT_EQ(e.n_done, 1);
    CHECK(e.turn.interrupted);
    CHECK(e.barge_seq < e.done_seq);
    trim(e.reply, full, sizeof full);
    printf("  full: \"%.60s...\" (%zu bytes)\n  heard at 4000 samples: \"%s\"\n", full, strlen(full), e.done);
    /* BARGE_IN tells the reply's text as written (it may begin with blanks), REPLY_DONE the message. */
    trim(e.heard, buf, sizeof buf);
    CHECK_STR_EQ(buf, e.done);
    CHECK(word_prefix(e.done, full));
    CHECK(strlen(e.done) < strlen(full) / 2); /* a quarter second of several seconds */
    char done[8192];
    snprintf(done, sizeof done, "%s", e.done);
    if (e.done[0]) {
        CHECK_INT_EQ(banter_session_n_messages(s), 3);
        CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
        CHECK_STR_EQ(buf, e.done);
    } else {
        CHECK_INT_EQ(banter_session_n_messages(s), 2);
    }
    CHECK(!banter_session_busy(s));
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_LISTENING);
    /* Nothing of the stopped reply is played any more. */
    energy = 0;
    for (int k = 0; k < 10; k++) {
        CHECK_INT_EQ(banter_session_process(s, NULL, out, 320), 0);
        for (int i = 0; i < 320; i++)
            energy += (double)out[i] * out[i];
    }
    CHECK(energy == 0);
    close_session(s, &r);

    /* The same reply, complete, cut at the same 0.25 s: the same words (the listener's count, not the 1.5 s
     * played, decided). */
    size_t a = 0;
    s = answered_session(&r, STORY, 60, buf, sizeof buf, &a);
    if (s) {
        snap(&r, &e);
        trim(e.reply, buf, sizeof buf);
        CHECK_STR_EQ(buf, full);
        CHECK_INT_EQ(banter_session_truncate(s, 4000, NULL), 0);
        size_t n = banter_session_n_messages(s);
        CHECK_INT_EQ(n, done[0] ? 3 : 2);
        msg(s, n - 1, buf, sizeof buf);
        CHECK_STR_EQ(done[0] ? buf : "", done);
        close_session(s, &r);
    }
    print_elapsed("a reply in progress", t0);
}

/* ---- reply text with a NUL byte -------------------------------------------------------------------------
 */

/* This model's reply to STORY (60 tokens) contains a byte token 0x00, which cannot stand in C-string text: the
 * session drops it, and a complete reply's message must be exactly the text its REPLY_TEXT events showed (a NUL
 * kept in the reply once cut the stored message short of what had been shown). */
static void test_reply_with_nul(void)
{
    struct rec r;
    char message[8192], shown[8192];
    size_t a = 0;
    banter_session *s = answered_session(&r, STORY, 60, message, sizeof message, &a);
    if (!s) return;
    struct evs e;
    snap(&r, &e);
    trim(e.reply, shown, sizeof shown);
    printf("  reply shown: %zu bytes, stored: %zu bytes\n", strlen(shown), strlen(message));
    CHECK_STR_EQ(message, shown);
    close_session(s, &r);
}

/* ---- truncate after a complete reply ------------------------------------------------------------------- */

static void test_truncate(void)
{
    double t0 = core_time_ms();
    struct rec r;
    char full[8192], buf[8192], half[8192];
    size_t a = 0;
    banter_session *s = answered_session(&r, WEATHER, 40, full, sizeof full, &a);
    if (!s) return;
    printf("  reply: \"%s\" (%zu samples)\n", full, a);
    CHECK(a > 16000);
    int c0 = wait_cached_change(s, 0); /* the worker recorded its cache: it is idle */
    CHECK(c0 > 0);

    /* Half the audio was heard: a strict prefix of whole words, and the cache follows. */
    size_t rs = 0;
    CHECK_INT_EQ(banter_session_truncate(s, a / 2, &rs), 0);
    CHECK_INT_EQ(rs, a);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 2, half, sizeof half), "assistant");
    printf("  heard at half: \"%s\"\n", half);
    CHECK(strlen(half) > 0);
    CHECK(word_prefix(half, full));
    int c1 = wait_cached_change(s, c0);
    printf("  cache: %d -> %d tokens\n", c0, c1);
    CHECK(c1 < c0);

    /* A later point does not lengthen it, nor does the whole reply. */
    rs = 0;
    CHECK_INT_EQ(banter_session_truncate(s, a * 3 / 4, &rs), 0);
    CHECK_INT_EQ(rs, a);
    msg(s, 2, buf, sizeof buf);
    CHECK_STR_EQ(buf, half);
    CHECK_INT_EQ(banter_session_truncate(s, a, NULL), 0);
    CHECK_INT_EQ(banter_session_truncate(s, (size_t)-1, NULL), 0);
    msg(s, 2, buf, sizeof buf);
    CHECK_STR_EQ(buf, half);
    CHECK_INT_EQ(banter_session_cached_tokens(s), c1);

    /* Nothing heard: the message goes, the history ends with the user's, and it can be answered again. */
    CHECK_INT_EQ(banter_session_truncate(s, 0, &rs), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 2);
    CHECK_STR_EQ(last_role(s), "user");
    int c2 = wait_cached_change(s, c1);
    CHECK(c2 < c1);
    int rc = banter_session_truncate(s, a, NULL); /* the reply is gone; nothing comes back */
    CHECK(rc == BANTER_OK || rc == BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(banter_session_n_messages(s), 2);
    rec_reset(&r);
    CHECK_INT_EQ(banter_session_respond(s, false), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    struct evs e;
    snap(&r, &e);
    CHECK(!e.turn.interrupted && !e.turn.failed);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
    CHECK_STR_EQ(buf, e.done);
    CHECK(strlen(buf) > 0);

    /* The history ends with a user message: no reply to cut, and the out-parameter is left alone. */
    CHECK_INT_EQ(banter_session_add_message(s, "user", "thanks"), 0);
    rs = 12345;
    CHECK_INT_EQ(banter_session_truncate(s, 100, &rs), BANTER_ERR_NOT_FOUND);
    CHECK_INT_EQ(rs, 12345);
    CHECK_INT_EQ(banter_session_n_messages(s), 4);
    CHECK_INT_EQ(banter_session_truncate(NULL, 100, NULL), BANTER_ERR_INVALID_ARG);
    close_session(s, &r);

    /* The same conversation again (the same seed: the same reply): the whole audio keeps the whole message,
     * and a quarter keeps a prefix of what half kept. */
    char full2[8192], quarter[8192];
    size_t a2 = 0;
    s = answered_session(&r, WEATHER, 40, full2, sizeof full2, &a2);
    if (!s) return;
    CHECK_STR_EQ(full2, full);
    CHECK_INT_EQ(a2, a);
    wait_cached_change(s, 0);
    CHECK_INT_EQ(banter_session_truncate(s, a2, NULL), 0);
    msg(s, 2, buf, sizeof buf);
    CHECK_STR_EQ(buf, full2);
    CHECK_INT_EQ(banter_session_truncate(s, a2 / 4, NULL), 0);
    msg(s, 2, quarter, sizeof quarter);
    printf("  heard at a quarter: \"%s\"\n", quarter);
    CHECK(strlen(quarter) <= strlen(half));
    CHECK(strncmp(quarter, half, strlen(quarter)) == 0);
    close_session(s, &r);
    print_elapsed("truncate", t0);
}

/* ---- interrupt before the reply begins ----------------------------------------------------------------- */

/* respond then interrupt at once: the worker has usually not taken the reply yet, which must then end as soon
 * as it begins (and if it has, the interrupt stops it before its first audio). */
static void test_interrupt_before_begin(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(200, true);
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    int n_before_begin = 0;
    for (int k = 0; k < 5; k++) {
        if (strcmp(last_role(s), "user"))
            CHECK_INT_EQ(banter_session_add_message(s, "user", "tell me everything"), 0);
        size_t n_before = banter_session_n_messages(s);
        rec_reset(&r);
        usleep(20000); /* the worker finishes the last job's cache work, so the next one waits for it */
        double t = core_time_ms();
        CHECK_INT_EQ(banter_session_respond(s, true), 0);
        banter_session_interrupt(s);
        bool ended = wait_turns(&r, 1, TIMEOUT_MS);
        double dt = core_time_ms() - t;
        CHECK(ended);
        CHECK(banter_session_wait_reply(s, 5000));
        struct evs e;
        snap(&r, &e);
        printf("  interrupt %d: ended after %.0f ms, interrupted %d, %d pieces, %zu samples\n", k, dt,
               e.turn.interrupted, e.n_reply_text, e.audio);
        CHECK(e.turn.interrupted);
        CHECK_INT_EQ(e.n_done, 1);
        CHECK(dt < (TEST_ASAN ? 5000 : 1000));
        char buf[8192];
        size_t n = banter_session_n_messages(s);
        if (e.n_reply_text == 0) {
            /* Stopped before its first piece: nothing was said, and nothing is in the history. */
            n_before_begin++;
            CHECK_INT_EQ(e.audio, 0);
            CHECK_STR_EQ(e.done, "");
            CHECK(n == n_before || (n == n_before + 1 && msg(s, n - 1, buf, sizeof buf) && !buf[0]));
        } else {
            /* The test thread lost the race (the worker began first): the interrupt stopped a reply in
             * progress, whose message is what real time allowed of its audio. */
            CHECK(n == n_before ||
                  (n == n_before + 1 && !strcmp(msg(s, n - 1, buf, sizeof buf), "assistant") &&
                   !strcmp(buf, e.done)));
            char full[8192];
            trim(e.reply, full, sizeof full);
            CHECK(!e.done[0] || word_prefix(e.done, full));
        }
    }
    CHECK(n_before_begin > 0);
    /* The session goes on: the next reply is complete. */
    rec_reset(&r);
    if (strcmp(last_role(s), "user")) CHECK_INT_EQ(banter_session_add_message(s, "user", "go on"), 0);
    CHECK_INT_EQ(banter_session_respond(s, false), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    struct evs e;
    snap(&r, &e);
    CHECK(!e.turn.interrupted);
    CHECK(e.n_reply_text > 0);
    close_session(s, &r);
    print_elapsed("interrupt before the reply begins", t0);
}

/* ---- manual turns and text-only replies ---------------------------------------------------------------- */

static void check_recognized(const char *got)
{
    int n_ref = 0;
    int errs = word_errors(SENTENCE, got, &n_ref);
    printf("  recognized: \"%s\" (%d of %d words wrong)\n", got, errs, n_ref);
    CHECK(n_ref > 0 && (double)errs / n_ref <= 0.25);
}

static void test_manual_text_only(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(16, true);
    sc.manual_turns = true;
    sc.text_only = true;
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    char buf[8192], full[8192];
    CHECK_INT_EQ(banter_session_commit(s), BANTER_ERR_NOT_FOUND); /* nothing fed */
    CHECK_INT_EQ(banter_session_commit(NULL), BANTER_ERR_INVALID_ARG);

    /* A spoken turn, ended by the application, answered in text. */
    feed_fast(s, NULL, 3200);
    feed_fast(s, g_speech, g_n_speech);
    feed_fast(s, NULL, 4800);
    struct evs e;
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user, 0); /* no endpoint of its own, however long the silence */
    CHECK_INT_EQ(e.n_turns, 0);
    CHECK_INT_EQ(banter_session_commit(s), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user, 1);
    check_recognized(e.user);
    CHECK_INT_EQ(e.n_speech_start, 0);
    CHECK(e.n_reply_text > 0);
    CHECK_INT_EQ(e.n_audio_ev, 0);
    CHECK_INT_EQ(e.n_chunk, 0);
    CHECK(!e.turn.interrupted && !e.turn.failed);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 1, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, e.user);
    CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
    trim(e.reply, full, sizeof full);
    CHECK_STR_EQ(buf, full);
    CHECK_INT_EQ(banter_session_commit(s), BANTER_ERR_NOT_FOUND); /* committed already */

    /* Speech cleared before the commit is forgotten. */
    rec_reset(&r);
    feed_fast(s, g_speech, g_n_speech);
    banter_session_clear_input(s);
    CHECK_INT_EQ(banter_session_commit(s), BANTER_ERR_NOT_FOUND);
    usleep(100000);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user, 0);
    CHECK_INT_EQ(e.n_turns, 0);
    CHECK_INT_EQ(e.n_speech_start, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK(!banter_session_busy(s));

    /* A sent turn: text only too. */
    rec_reset(&r);
    CHECK_INT_EQ(banter_session_send_text(s, "what is the time"), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK_INT_EQ(e.n_audio_ev, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 5);

    /* respond chooses per reply: audio even though the session is text-only. */
    rec_reset(&r);
    CHECK_INT_EQ(banter_session_add_message(s, "user", "say it aloud"), 0);
    CHECK_INT_EQ(banter_session_respond(s, true), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK(e.audio > 0);
    CHECK_INT_EQ(e.turn.n_reply_samples, e.audio);
    close_session(s, &r);
    print_elapsed("manual turns and text only", t0);
}

/* ---- no_auto_reply with the VAD ------------------------------------------------------------------------ */

static void test_no_auto_reply(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(16, true);
    sc.no_auto_reply = true;
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    char buf[8192], full[8192];
    feed_fast(s, NULL, 4800);
    feed_fast(s, g_speech, g_n_speech);
    feed_fast(s, NULL, 16000);
    struct evs e;
    snap(&r, &e);
    CHECK_INT_EQ(e.n_speech_start, 1);
    CHECK_INT_EQ(e.n_user, 1);
    check_recognized(e.user);
    CHECK_INT_EQ(banter_session_n_messages(s), 2);
    CHECK_STR_EQ(msg(s, 1, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, e.user);
    /* Not answered, not even speculatively. */
    usleep(300000);
    feed_fast(s, NULL, 3200);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_reply_text, 0);
    CHECK_INT_EQ(e.n_turns, 0);
    CHECK_INT_EQ(e.audio, 0);
    CHECK(!banter_session_busy(s));
    CHECK_INT_EQ(banter_session_get_state(s), BANTER_STATE_LISTENING);
    CHECK_INT_EQ(banter_session_n_messages(s), 2);

    CHECK_INT_EQ(banter_session_respond(s, false), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK_INT_EQ(e.audio, 0);
    CHECK(!e.turn.interrupted && !e.turn.failed);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
    trim(e.reply, full, sizeof full);
    CHECK_STR_EQ(buf, full);

    /* commit with the VAD: the turn ends before the VAD's endpoint, and the silence after it takes no second
     * turn; nothing in progress: nothing to commit. */
    CHECK_INT_EQ(banter_session_commit(s), BANTER_ERR_NOT_FOUND);
    rec_reset(&r);
    feed_fast(s, g_speech, g_n_speech);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_speech_start, 1);
    CHECK_INT_EQ(e.n_user, 0);
    CHECK_INT_EQ(banter_session_commit(s), 0);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user, 1);
    check_recognized(e.user);
    feed_fast(s, NULL, 16000);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user + e.n_no_turn, 1);
    CHECK_INT_EQ(e.n_turns, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 4);
    CHECK_STR_EQ(msg(s, 3, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, e.user);
    close_session(s, &r);
    print_elapsed("no_auto_reply", t0);
}

/* ---- update -------------------------------------------------------------------------------------------- */

static void test_update(void)
{
    double t0 = core_time_ms();
    struct rec r;
    banter_session_config sc = base_config(16, true);
    banter_session *s = open_session(&sc, &r);
    if (!s) return;
    char buf[8192], err[256];

    banter_session_config u = sc;
    u.system_prompt = "You are a pirate.";
    CHECK_INT_EQ(banter_session_update(s, &u, err, sizeof err), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 1);
    CHECK_STR_EQ(msg(s, 0, buf, sizeof buf), "system");
    CHECK_STR_EQ(buf, "You are a pirate.");
    CHECK_INT_EQ(banter_session_add_message(s, "user", "where is the treasure"), 0);
    CHECK_INT_EQ(banter_session_respond(s, false), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    struct evs e;
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK(!e.turn.failed && !e.turn.interrupted);
    CHECK_INT_EQ(e.n_errors, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 0, buf, sizeof buf), "system");
    CHECK_STR_EQ(buf, "You are a pirate.");

    /* Refused settings change nothing, the good ones beside them included. */
    banter_session_config bad = u;
    bad.system_prompt = "You are a parrot.";
    bad.tts.voice = "no-such-voice";
    err[0] = 0;
    CHECK_INT_EQ(banter_session_update(s, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK(err[0] != 0);
    bad = u;
    bad.system_prompt = "You are a parrot.";
    bad.end_silence_ms = 50;
    CHECK_INT_EQ(banter_session_update(s, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    bad.end_silence_ms = 20000;
    CHECK_INT_EQ(banter_session_update(s, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    bad.end_silence_ms = -1;
    CHECK_INT_EQ(banter_session_update(s, &bad, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_update(s, NULL, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_update(NULL, &u, err, sizeof err), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_session_n_messages(s), 3);
    CHECK_STR_EQ(msg(s, 0, buf, sizeof buf), "system");
    CHECK_STR_EQ(buf, "You are a pirate.");

    /* Manual turns switched on: commit ends a turn, the VAD is off. */
    u.manual_turns = true;
    CHECK_INT_EQ(banter_session_update(s, &u, err, sizeof err), 0);
    CHECK_INT_EQ(banter_session_commit(s), BANTER_ERR_NOT_FOUND);
    rec_reset(&r);
    feed_fast(s, g_speech, g_n_speech);
    feed_fast(s, NULL, 8000);
    snap(&r, &e);
    CHECK_INT_EQ(e.n_speech_start, 0);
    CHECK_INT_EQ(e.n_user, 0);
    CHECK_INT_EQ(banter_session_commit(s), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK_INT_EQ(e.n_user, 1);
    check_recognized(e.user);
    CHECK(e.n_reply_text > 0);
    CHECK(e.audio > 0); /* the session is not text-only */
    CHECK_INT_EQ(banter_session_n_messages(s), 5);

    /* Text-only switched on: a sent turn is answered without audio. */
    u.text_only = true;
    CHECK_INT_EQ(banter_session_update(s, &u, err, sizeof err), 0);
    rec_reset(&r);
    CHECK_INT_EQ(banter_session_send_text(s, "and then"), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    snap(&r, &e);
    CHECK(e.n_reply_text > 0);
    CHECK_INT_EQ(e.n_audio_ev, 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 7);

    /* An empty system prompt removes the system message. */
    u.system_prompt = "";
    CHECK_INT_EQ(banter_session_update(s, &u, err, sizeof err), 0);
    CHECK_INT_EQ(banter_session_n_messages(s), 6);
    CHECK_STR_EQ(msg(s, 0, buf, sizeof buf), "user");
    CHECK_STR_EQ(buf, "where is the treasure");
    close_session(s, &r);
    print_elapsed("update", t0);
}

/* ---- the no_playout barge-in estimate ------------------------------------------------------------------ */

/* Feeds speech frame by frame, as fast as taken, until a BARGE_IN or the end of the speech. */
static void speak_until_barge(banter_session *s, struct rec *r, const float *x, size_t n)
{
    for (size_t i = 0; i < n && COUNT(r, n_barge) == 0; i += 320)
        CHECK_INT_EQ(banter_session_process(s, x + i, NULL, n - i < 320 ? n - i : 320), 0);
}

static void test_barge_estimate(void)
{
    double t0 = core_time_ms();
    size_t n_stop = 0;
    float *stop = flite("stop please", &n_stop);
    size_t lo = 0;
    while (lo < n_stop && fabsf(stop[lo]) < 0.01f)
        lo++; /* its leading silence would only waste real time */
    struct rec r;
    char full[8192], buf[8192];
    banter_session_config sc = base_config(60, true);
    banter_session *s = open_session(&sc, &r);
    if (!s) {
        free(stop);
        return;
    }

    /* A reply whose audio was all delivered much faster than real time, then speech at once. */
    CHECK_INT_EQ(banter_session_add_message(s, "user", STORY), 0);
    CHECK_INT_EQ(banter_session_respond(s, true), 0);
    CHECK(wait_turns(&r, 1, TIMEOUT_MS));
    struct evs e;
    snap(&r, &e);
    msg(s, 2, full, sizeof full);
    CHECK_STR_EQ(full, e.done);
    double ahead_ms = e.audio * 1000.0 / 16000 - (core_time_ms() - e.t_first_audio);
    printf("  reply of %.0f ms of audio, complete %.0f ms after its first audio\n", e.audio / 16.0,
           e.t_turn - e.t_first_audio);
    if (ahead_ms < 1500) {
        printf("  SKIP the estimate: synthesis was not well ahead of real time (%.0f ms)\n", ahead_ms);
    } else {
        speak_until_barge(s, &r, stop + lo, n_stop - lo);
        snap(&r, &e);
        double at_ms = e.t_barge - e.t_first_audio;
        printf("  barge-in %.0f ms after the first audio; heard \"%s\" of \"%.60s...\"\n", at_ms, e.heard,
               full);
        CHECK_INT_EQ(e.n_barge, 1);
        CHECK(word_prefix(e.heard, full));
        size_t n = banter_session_n_messages(s);
        if (e.heard[0]) {
            CHECK_INT_EQ(n, 3);
            CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
            CHECK_STR_EQ(buf, e.heard);
        } else {
            CHECK_INT_EQ(n, 2);
        }
        /* At most what that much real time speaks: the proportion of the text, with a clause of slack. */
        double frac = at_ms * 16.0 / (double)e.audio;
        CHECK((double)strlen(e.heard) <= (frac + 0.35) * (double)strlen(full));
    }
    close_session(s, &r);

    /* A short reply that real time has played in full: speech after it cuts nothing. */
    sc = base_config(6, true);
    s = open_session(&sc, &r);
    if (s) {
        CHECK_INT_EQ(banter_session_add_message(s, "user", "hi"), 0);
        CHECK_INT_EQ(banter_session_respond(s, true), 0);
        CHECK(wait_turns(&r, 1, TIMEOUT_MS));
        snap(&r, &e);
        msg(s, 2, full, sizeof full);
        CHECK(e.audio > 0 && e.audio < 16000 * 4);
        double until = e.t_first_audio + e.audio / 16.0 + 200;
        while (core_time_ms() < until)
            usleep(10000);
        rec_reset(&r);
        feed_fast(s, stop + lo, n_stop - lo);
        snap(&r, &e);
        CHECK_INT_EQ(e.n_speech_start, 1);
        CHECK_INT_EQ(e.n_barge, 0);
        CHECK_STR_EQ(msg(s, 2, buf, sizeof buf), "assistant");
        CHECK_STR_EQ(buf, full);
        close_session(s, &r);
    }
    free(stop);
    print_elapsed("the no_playout barge-in estimate", t0);
}

int main(void)
{
    char path[512], err[512];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", path, sizeof path)) return TEST_SKIP_CODE;
    if (banter_asr_open(NULL, &g_asr, err, sizeof err)) {
        printf("SKIP: no speech recognizer: %s\n", err);
        return TEST_SKIP_CODE;
    }
    banter_llm_config lc = banter_llm_config_default();
    lc.model = path;
    lc.n_ctx = 2048;
    lc.n_sessions = 2;
    lc.n_threads = 1;
    CHECK_INT_EQ(banter_llm_open(&lc, &g_llm, err, sizeof err), 0);
    if (!g_llm) {
        printf("cannot open %s: %s\n", path, err);
        banter_asr_close(g_asr);
        return test_finish("test_session_api");
    }
    /* Greedy decoding of this random-weight model writes only newlines; sampling with the default (fixed)
     * seed and a repeat penalty writes words, the same ones for the same history in every session. */
    g_sampler = banter_sampler_config_default();
    g_sampler.temperature = 0.8f;
    g_sampler.repeat_penalty = 1.3f;
    g_speech = flite(SENTENCE, &g_n_speech);

    test_add_respond();
    test_in_progress();
    test_truncate();
    test_interrupt_before_begin();
    test_reply_with_nul();
    test_manual_text_only();
    test_no_auto_reply();
    test_update();
    test_barge_estimate();

    free(g_speech);
    banter_llm_close(g_llm);
    banter_asr_close(g_asr);
    return test_finish("test_session_api");
}
