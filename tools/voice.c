/*
 * voice.c: the conversation driver shared by `banter talk` and `banter bench voice` (see voice.h).
 *
 * Audio goes into the session in 20 ms frames, the way a sound card delivers it: each frame of input returns a
 * frame of output, and at real-time pace the driver sleeps until the frame's moment on an absolute clock (so
 * time spent in processing is not added to the pace). Session events arrive on other threads; the driver keeps
 * what it needs under its own lock and prints the transcript as it forms.
 */
#include "voice.h"
#include "cli.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME 320

const char *const VOICE_OPTIONS_HELP =
    "language model:\n"
    "  -m, --model FILE       GGUF model run in this process (gemma3 or llama architecture)\n"
    "      --llm-url URL      or an OpenAI-compatible server (llama.cpp server, vLLM, ...): http://host:port\n"
    "      --llm-model NAME   the model name sent to the server (default \"default\")\n"
    "      --api-key KEY      sent as a Bearer token (default: $BANTER_API_KEY, then $OPENAI_API_KEY)\n"
    "      --llm-timeout S    longest wait for the server, in seconds (default 30)\n"
    "  -s, --system TEXT      system prompt (default: a short voice-assistant prompt)\n"
    "  -n, --max-tokens N     longest reply in tokens (default 200)\n"
    "      --temp T           sampling temperature, 0 = greedy (default 0.8)\n"
    "      --seed N           random seed (default 0 = fixed, reproducible)\n"
    "  -c, --ctx N            context positions (default 4096 or the model's, if smaller); older turns are\n"
    "                         left out when the conversation outgrows it\n"
    "  -t, --threads N        kernel threads (default: all cores)\n"
    "voice:\n"
    "      --tts ENGINE       flite (default, natural US English) or espeak (eSpeak NG, many languages)\n"
    "      --voice V          flite: slt (default) or kal16; espeak: a voice or language (en-us, de, fr, ...)\n"
    "      --rate WPM         speaking rate, 80 to 450 words per minute (default: the voice's own)\n"
    "      --pitch P          1 to 100, 50 = natural (default)\n"
    "turn-taking:\n"
    "      --end-silence MS   silence that ends the user's turn, 100 to 10000 (default 400; raise it for slow\n"
    "                         speakers, lower it for snappier but more interrupt-prone turns)\n"
    "      --speculate MS     how far into a pause the partial transcript is answered speculatively (default\n"
    "                         150 ms; the answer is held, and played at the endpoint if the transcript holds)\n"
    "      --no-speculate     never answer before the endpoint\n"
    "      --no-barge-in      ignore the user's speech while the assistant speaks (for open speakers)\n"
    "  -q, --quiet            do not print the transcript\n"
    "  -v, --verbose          log what the engines chose and did\n";

void voice_opts_default(struct voice_opts *o)
{
    memset(o, 0, sizeof *o);
    o->temp = 0.8;
    o->max_tokens = 200;
    o->end_silence_ms = 400;
    o->timeout_s = 30;
}

int voice_parse_opt(struct voice_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v;
    long n;
    double x;
#define VALUE()                                                                                                \
    do {                                                                                                       \
        v = cli_value(argc, argv, i);                                                                          \
        if (!v) return -1;                                                                                     \
    } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        VALUE();
        o->model = v;
    } else if (!strcmp(a, "--llm-url")) {
        VALUE();
        o->url = v;
    } else if (!strcmp(a, "--llm-model")) {
        VALUE();
        o->remote_model = v;
    } else if (!strcmp(a, "--api-key")) {
        VALUE();
        o->api_key = v;
    } else if (!strcmp(a, "--llm-timeout")) {
        VALUE();
        if (!cli_parse_float(v, "--llm-timeout", 0.1, 3600, &x)) return -1;
        o->timeout_s = x;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
        VALUE();
        o->system = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
        VALUE();
        if (!cli_parse_int(v, "--max-tokens", 1, 65536, &n)) return -1;
        o->max_tokens = (int)n;
    } else if (!strcmp(a, "--temp")) {
        VALUE();
        if (!cli_parse_float(v, "--temp", 0, 10, &x)) return -1;
        o->temp = x;
    } else if (!strcmp(a, "--seed")) {
        VALUE();
        if (!cli_parse_int(v, "--seed", 0, 2147483647L, &n)) return -1;
        o->seed = n;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
        VALUE();
        if (!cli_parse_int(v, "--ctx", 64, 1 << 20, &n)) return -1;
        o->n_ctx = (int)n;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        VALUE();
        if (!cli_parse_int(v, "--threads", 1, 1024, &n)) return -1;
        o->n_threads = (int)n;
    } else if (!strcmp(a, "--tts")) {
        VALUE();
        o->tts_engine = v;
    } else if (!strcmp(a, "--voice")) {
        VALUE();
        o->voice = v;
    } else if (!strcmp(a, "--rate")) {
        VALUE();
        if (!cli_parse_int(v, "--rate", 80, 450, &n)) return -1;
        o->rate = (int)n;
    } else if (!strcmp(a, "--pitch")) {
        VALUE();
        if (!cli_parse_int(v, "--pitch", 1, 100, &n)) return -1;
        o->pitch = (int)n;
    } else if (!strcmp(a, "--end-silence")) {
        VALUE();
        if (!cli_parse_int(v, "--end-silence", 100, 10000, &n)) return -1;
        o->end_silence_ms = (int)n;
    } else if (!strcmp(a, "--speculate")) {
        VALUE();
        if (!cli_parse_int(v, "--speculate", 20, 10000, &n)) return -1;
        o->speculate_ms = (int)n;
    } else if (!strcmp(a, "--no-speculate")) {
        o->no_speculate = true;
    } else if (!strcmp(a, "--no-barge-in")) {
        o->no_barge_in = true;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        o->quiet = true;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose = true;
    } else {
        return 0;
    }
#undef VALUE
    return 1;
}

struct turn_rec {
    banter_turn_stats st;
    char *user, *reply;
};

struct voice_driver {
    banter_llm *llm;
    banter_asr *asr;
    banter_session *s;
    bool quiet;
    struct timespec t0; /* the pace clock's origin */
    long long frames;   /* frames fed */

    pthread_mutex_t lock; /* guards everything below */
    struct turn_rec *turns;
    int n_turns, cap_turns;
    struct turn_rec pending; /* REPLY_DONE's texts, until the turn's TURN record arrives */
    bool has_pending;
    char *user_text; /* the current turn's, until its record arrives */
    int n_errors;
    bool printing_reply;
    float *reply_audio;
    size_t n_reply_audio, cap_reply_audio;

    /* The feeding thread's own. */
    float *timeline;
    size_t n_timeline, cap_timeline;
};

static char *dup_text(const char *t)
{
    size_t n = strlen(t ? t : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, t ? t : "", n + 1);
    return d;
}

static bool append_f(float **buf, size_t *n, size_t *cap, const float *x, size_t k)
{
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 1 << 16;
        while (c < *n + k) c *= 2;
        float *b = realloc(*buf, c * sizeof *b);
        if (!b) return false;
        *buf = b;
        *cap = c;
    }
    if (x) memcpy(*buf + *n, x, k * sizeof *x);
    else memset(*buf + *n, 0, k * sizeof **buf);
    *n += k;
    return true;
}

static void on_event(const banter_event *ev, void *user)
{
    struct voice_driver *d = user;
    pthread_mutex_lock(&d->lock);
    switch (ev->type) {
    case BANTER_EVENT_USER_TEXT:
        free(d->user_text);
        d->user_text = dup_text(ev->text);
        if (!d->quiet) {
            if (d->printing_reply) fputc('\n', stdout);
            d->printing_reply = false;
            printf("user: %s\n", ev->text);
        }
        break;
    case BANTER_EVENT_NO_TURN:
        if (!d->quiet) printf("(speech, but nothing recognized: no turn)\n");
        break;
    case BANTER_EVENT_REPLY_TEXT:
        if (!d->quiet) {
            if (!d->printing_reply) fputs("assistant: ", stdout);
            d->printing_reply = true;
            fputs(ev->text, stdout);
        }
        break;
    case BANTER_EVENT_AUDIO:
        append_f(&d->reply_audio, &d->n_reply_audio, &d->cap_reply_audio, ev->samples, ev->n_samples);
        break;
    case BANTER_EVENT_BARGE_IN:
        if (!d->quiet) {
            if (d->printing_reply) fputc('\n', stdout);
            d->printing_reply = false;
            printf("(interrupted; the user heard: \"%s\")\n", ev->text);
        }
        break;
    case BANTER_EVENT_REPLY_DONE:
        if (!d->quiet && d->printing_reply) fputc('\n', stdout);
        d->printing_reply = false;
        if (d->has_pending) {
            free(d->pending.user);
            free(d->pending.reply);
        }
        memset(&d->pending, 0, sizeof d->pending);
        d->pending.user = d->user_text ? d->user_text : dup_text("");
        d->user_text = NULL;
        d->pending.reply = dup_text(ev->text);
        d->has_pending = true;
        break;
    case BANTER_EVENT_TURN:
        if (!d->has_pending) break;
        if (d->n_turns == d->cap_turns) {
            int c = d->cap_turns ? d->cap_turns * 2 : 16;
            struct turn_rec *t = realloc(d->turns, (size_t)c * sizeof *t);
            if (!t) break;
            d->turns = t;
            d->cap_turns = c;
        }
        d->pending.st = *ev->turn;
        d->turns[d->n_turns++] = d->pending;
        memset(&d->pending, 0, sizeof d->pending);
        d->has_pending = false;
        break;
    case BANTER_EVENT_ERROR:
        d->n_errors++;
        fprintf(stderr, "banter: %s\n", ev->text ? ev->text : banter_status_str(ev->status));
        break;
    default:
        break;
    }
    fflush(stdout);
    pthread_mutex_unlock(&d->lock);
}

int voice_open(const struct voice_opts *o, struct voice_driver **out)
{
    *out = NULL;
    if (!o->model && !o->url) {
        fprintf(stderr, "banter: no language model: give one with --model FILE (or a server with --llm-url)\n");
        cli_model_hint();
        return 1;
    }
    if (o->model && o->url) {
        fprintf(stderr, "banter: give either --model or --llm-url, not both\n");
        return 2;
    }
    struct voice_driver *d = calloc(1, sizeof *d);
    if (!d) return 1;
    pthread_mutex_init(&d->lock, NULL);
    d->quiet = o->quiet;
    char err[512];
    banter_llm_config lc = banter_llm_config_default();
    lc.model = o->model;
    lc.url = o->url;
    lc.remote_model = o->remote_model;
    lc.api_key = o->api_key;
    if (!lc.api_key && o->url) lc.api_key = getenv("BANTER_API_KEY");
    if (!lc.api_key && o->url) lc.api_key = getenv("OPENAI_API_KEY");
    lc.timeout_s = o->timeout_s;
    lc.n_ctx = o->n_ctx;
    lc.n_threads = o->n_threads;
    if (banter_llm_open(&lc, &d->llm, err, sizeof err)) {
        fprintf(stderr, "banter: %s\n", err);
        if (o->model) cli_model_hint();
        voice_close(d);
        return 1;
    }
    banter_asr_config ac = banter_asr_config_default();
    if (banter_asr_open(&ac, &d->asr, err, sizeof err)) {
        fprintf(stderr, "banter: %s\n(the speech recognizer's model comes with Debian's pocketsphinx-en-us "
                        "package: scripts/install-deps.sh installs it)\n", err);
        voice_close(d);
        return 1;
    }
    banter_session_config sc = banter_session_config_default();
    sc.system_prompt = o->system;
    sc.tts.engine = o->tts_engine;
    sc.tts.voice = o->voice;
    sc.tts.rate = o->rate;
    sc.tts.pitch = o->pitch;
    sc.end_silence_ms = o->end_silence_ms;
    sc.max_reply_tokens = o->max_tokens;
    sc.speculate_ms = o->no_speculate ? -1 : o->speculate_ms;
    sc.no_barge_in = o->no_barge_in;
    banter_sampler_config smp = banter_sampler_config_default();
    smp.temperature = (float)o->temp;
    smp.seed = (uint64_t)o->seed;
    sc.sampler = &smp;
    banter_status rc = banter_session_open(d->llm, d->asr, &sc, on_event, d, &d->s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "banter: %s\n", err);
        voice_close(d);
        return rc == BANTER_ERR_INVALID_ARG || rc == BANTER_ERR_NOT_FOUND ? 2 : 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &d->t0);
    *out = d;
    return 0;
}

void voice_finish(struct voice_driver *d)
{
    banter_session_close(d->s);
    d->s = NULL;
}

void voice_close(struct voice_driver *d)
{
    if (!d) return;
    banter_session_close(d->s);
    banter_asr_close(d->asr);
    banter_llm_close(d->llm);
    for (int i = 0; i < d->n_turns; i++) {
        free(d->turns[i].user);
        free(d->turns[i].reply);
    }
    if (d->has_pending) {
        free(d->pending.user);
        free(d->pending.reply);
    }
    free(d->turns);
    free(d->user_text);
    free(d->reply_audio);
    free(d->timeline);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* One 20 ms frame in and out, then (at real-time pace) a sleep until the frame's moment. */
static void step(struct voice_driver *d, const float *in, size_t n, bool fast)
{
    float out[FRAME];
    banter_session_process(d->s, in, out, n);
    size_t at = d->n_timeline;
    if (append_f(&d->timeline, &d->n_timeline, &d->cap_timeline, out, n) && in) {
        for (size_t i = 0; i < n; i++) d->timeline[at + i] += in[i];
    }
    d->frames++;
    if (fast) return;
    long long ns = d->t0.tv_nsec + d->frames * 20000000LL;
    struct timespec due = {d->t0.tv_sec + (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
}

static void resync(struct voice_driver *d, bool fast)
{
    /* After a pause in feeding (or at the start), restart the pace clock so no burst of catch-up frames. */
    if (fast) return;
    clock_gettime(CLOCK_MONOTONIC, &d->t0);
    d->frames = 0;
}

void voice_feed(struct voice_driver *d, const float *samples, size_t n, bool fast)
{
    resync(d, fast);
    for (size_t i = 0; i < n; i += FRAME) step(d, samples + i, n - i < FRAME ? n - i : FRAME, fast);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

bool voice_wait_idle(struct voice_driver *d, double max_s, bool fast)
{
    resync(d, fast);
    double deadline = now_s() + max_s;
    for (long long k = 0; now_s() < deadline; k++) {
        if (k > 0 && !banter_session_busy(d->s) && banter_session_get_state(d->s) != BANTER_STATE_USER_SPEAKING)
            return true;
        /* As fast as processed: while the reply is being prepared, wait for it rather than spin. */
        if (fast) banter_session_wait_reply(d->s, 50);
        step(d, NULL, FRAME, fast);
    }
    return false;
}

void voice_wait_speaking(struct voice_driver *d, int ms, double max_s, bool fast)
{
    resync(d, fast);
    double deadline = now_s() + max_s;
    int heard = 0;
    for (long long k = 0; heard < ms && now_s() < deadline; k++) {
        banter_session_state st = banter_session_get_state(d->s);
        if (st == BANTER_STATE_SPEAKING) heard += 20;
        else if (k > 0 && !banter_session_busy(d->s) && st == BANTER_STATE_LISTENING) return;
        step(d, NULL, FRAME, fast);
    }
}

int voice_n_turns(const struct voice_driver *d)
{
    pthread_mutex_lock((pthread_mutex_t *)&d->lock);
    int n = d->n_turns;
    pthread_mutex_unlock((pthread_mutex_t *)&d->lock);
    return n;
}

const banter_turn_stats *voice_turn(const struct voice_driver *d, int i)
{
    return &d->turns[i].st;
}

const char *voice_user_text(const struct voice_driver *d, int i)
{
    return d->turns[i].user;
}

const char *voice_reply_text(const struct voice_driver *d, int i)
{
    return d->turns[i].reply;
}

int voice_n_errors(const struct voice_driver *d)
{
    pthread_mutex_lock((pthread_mutex_t *)&d->lock);
    int n = d->n_errors;
    pthread_mutex_unlock((pthread_mutex_t *)&d->lock);
    return n;
}

const float *voice_reply_audio(const struct voice_driver *d, size_t *n)
{
    *n = d->n_reply_audio;
    return d->reply_audio;
}

const float *voice_timeline(const struct voice_driver *d, size_t *n)
{
    *n = d->n_timeline;
    return d->timeline;
}

banter_session *voice_session(struct voice_driver *d)
{
    return d->s;
}

void voice_print_table(const struct voice_driver *d, FILE *f)
{
    fprintf(f, "\nlatency per turn (ms; 'total' = end of user speech to first reply audio = endpoint + "
               "processing):\n");
    fprintf(f, "%4s %8s %8s %8s %8s %8s %8s %8s %8s %7s %7s %7s %6s\n", "turn", "endpoint", "asr", "token",
            "clause", "audio", "process", "total", "reply", "cpu", "prompt", "prefill", "spec");
    for (int i = 0; i < d->n_turns; i++) {
        const banter_turn_stats *t = &d->turns[i].st;
        fprintf(f, "%4d %8.0f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.0f %7.0f %7d %7d %6d%s%s\n", t->turn,
                t->endpoint_delay_ms, t->asr_final_ms, t->first_token_ms, t->first_chunk_ms, t->first_audio_ms,
                t->processing_ms, t->total_ms, t->reply_ms, t->cpu_ms, t->n_prompt, t->n_prefilled,
                t->n_speculated, t->interrupted ? "  interrupted" : "", t->failed ? "  failed" : "");
    }
    fprintf(f, "(endpoint: silence waited after speech; asr/token/clause/audio: after the endpoint, the "
               "recognizer's final text, the first reply text, the first clause sent to the voice, the first "
               "audio; prompt/prefill/spec: prompt tokens, tokens prefilled after the endpoint, tokens prefilled "
               "during the user's pause)\n");
}
