/*
 * asr_pocketsphinx.c: the built-in recognizer, CMU PocketSphinx (Debian 12's 5prealpha API) with the packaged
 * US English model (/usr/share/pocketsphinx/model/en-us: acoustic model, 3-gram LM, CMU dictionary).
 *
 * Choices:
 * - Forward pass only by default ("-fwdflat no -bestpath no"): PocketSphinx's second and third passes rescore
 *   the whole utterance at its end, which costs 100-150 ms (up to ~400 ms) after the user stops speaking. The
 *   forward pass alone has the final text a few ms after the last frame, at a small cost in accuracy that
 *   tests/test_asr.c measures and prints. second_pass turns the passes back on for offline transcription.
 * - A decoder holds its own copy of the models (the 5prealpha API cannot share them) and is not thread-safe,
 *   so each decoder serves one stream (asr.c pools them). ps_init and ps_free touch library-global state
 *   (logging, the config parser), so they run under one process-wide lock; decoding itself needs none.
 * - The library's logging goes through one process-wide callback installed once: its INFO chatter becomes
 *   debug lines, its warnings and errors our warnings and errors. Nothing reaches stderr.
 * - Adaptation: the decoder normalizes features with a live cepstral mean that follows the speaker and the
 *   channel from one utterance to the next. Starting from the model's initial mean, the first utterance of a
 *   fresh decoder is slow to finish (measured: ~150 ms from the last sample to the final text instead of
 *   ~10-30 ms, and half-speed decoding) and slightly worse; after one utterance of real speech it is not. So
 * a pooled decoder keeps its adapted mean when it passes to a new stream (the mean is 13 numbers about the
 *   microphone and voice, nothing of what was said), and only a process's first utterance per decoder pays.
 *   Warming up on noise at load was tried: it makes the first utterance fast but adapts the mean to noise,
 * and the first real utterance came out worse.
 * - Some of the library's errors call exit() (E_FATAL). The paths it would trip on (missing model files) are
 *   checked before ps_init, so a bad installation returns an error instead of ending the process.
 */
#include "asr/asr.h"

#include "core/core.h"

#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PS_DEFAULT_MODEL_DIR "/usr/share/pocketsphinx/model"
#define PS_PATH_MAX 1024

struct ps_shared {
    char hmm[PS_PATH_MAX];  /* acoustic model directory */
    char lm[PS_PATH_MAX];   /* language model */
    char dict[PS_PATH_MAX]; /* pronunciation dictionary */
    bool second_pass;
};

struct ps_dec {
    ps_decoder_t *ps;
    bool in_utt;
};

static pthread_mutex_t g_ps_lock = PTHREAD_MUTEX_INITIALIZER; /* guards ps_init / ps_free / cmd_ln */
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;

static void log_line(void *user, err_lvl_t level, const char *fmt, ...)
{
    (void)user;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    if (n == 0) return;
    banter_log_level ours = level >= ERR_ERROR  ? BANTER_LOG_ERROR
                            : level == ERR_WARN ? BANTER_LOG_WARN
                                                : BANTER_LOG_DEBUG;
    core_log(ours, "pocketsphinx: %s", line);
}

static void install_log(void)
{
    err_set_callback(log_line, NULL);
    /* Some messages (ps_init's table of its configuration) bypass the callback and go straight to the log
     * file, stderr by default: NULL turns that off. */
    err_set_logfp(NULL);
}

static int join_path(char *out, const char *dir, const char *rel, char *err, size_t err_len)
{
    int n = snprintf(out, PS_PATH_MAX, "%s/%s", dir, rel);
    if (n < 0 || n >= PS_PATH_MAX) {
        core_errf(err, err_len, "PocketSphinx model directory path is too long: %s", dir);
        return BANTER_ERR_INVALID_ARG;
    }
    return 0;
}

static int need_file(const char *path, char *err, size_t err_len)
{
    if (access(path, R_OK) == 0) return 0;
    core_errf(
        err, err_len,
        "PocketSphinx model file %s is missing or unreadable; install Debian's pocketsphinx-en-us package "
        "(apt-get install pocketsphinx-en-us) or point model_dir at a directory with en-us/",
        path);
    return BANTER_ERR_NOT_FOUND;
}

static int load_model(const struct asr_config *cfg, void **shared, char *err, size_t err_len)
{
    *shared = NULL;
    pthread_once(&g_log_once, install_log);
    const char *dir = cfg->model_dir && *cfg->model_dir ? cfg->model_dir : PS_DEFAULT_MODEL_DIR;
    struct ps_shared *sh = core_calloc(1, sizeof *sh);
    if (!sh) {
        core_errf(err, err_len, "out of memory");
        return BANTER_ERR_NOMEM;
    }
    char probe[PS_PATH_MAX];
    int rc = join_path(sh->hmm, dir, "en-us/en-us", err, err_len);
    if (!rc) rc = join_path(sh->lm, dir, "en-us/en-us.lm.bin", err, err_len);
    if (!rc) rc = join_path(sh->dict, dir, "en-us/cmudict-en-us.dict", err, err_len);
    static const char *const AM_FILES[] = {"mdef",    "means",       "variances", "transition_matrices",
                                           "sendump", "feat.params", "noisedict", NULL};
    for (const char *const *f = AM_FILES; !rc && *f; f++) {
        rc = join_path(probe, sh->hmm, *f, err, err_len);
        if (!rc) rc = need_file(probe, err, err_len);
    }
    if (!rc) rc = need_file(sh->lm, err, err_len);
    if (!rc) rc = need_file(sh->dict, err, err_len);
    if (rc) {
        core_free(sh);
        return rc;
    }
    sh->second_pass = cfg->second_pass;
    *shared = sh;
    return 0;
}

static void unload_model(void *shared)
{
    core_free(shared);
}

static int open_decoder(void *shared, void **out, char *err, size_t err_len)
{
    struct ps_shared *sh = shared;
    *out = NULL;
    struct ps_dec *d = core_calloc(1, sizeof *d);
    if (!d) {
        core_errf(err, err_len, "out of memory");
        return BANTER_ERR_NOMEM;
    }
    const char *passes = sh->second_pass ? "yes" : "no";
    pthread_mutex_lock(&g_ps_lock);
    cmd_ln_t *config =
        cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", sh->hmm, "-lm", sh->lm, "-dict", sh->dict, "-fwdflat",
                    passes, "-bestpath", passes, "-samprate", "16000", "-dither", "no", NULL);
    if (config) d->ps = ps_init(config);
    if (config) cmd_ln_free_r(config); /* the decoder holds its own reference */
    pthread_mutex_unlock(&g_ps_lock);
    if (!d->ps) {
        core_free(d);
        core_errf(err, err_len, "PocketSphinx could not load its model from %s (see the debug log for why)",
                  sh->hmm);
        return BANTER_ERR_FORMAT;
    }
    *out = d;
    return 0;
}

static void close_decoder(void *dec)
{
    struct ps_dec *d = dec;
    pthread_mutex_lock(&g_ps_lock);
    ps_free(d->ps);
    pthread_mutex_unlock(&g_ps_lock);
    core_free(d);
}

static int begin_utt(void *dec, char *err, size_t err_len)
{
    struct ps_dec *d = dec;
    if (d->in_utt) ps_end_utt(d->ps);
    d->in_utt = false;
    if (ps_start_utt(d->ps) < 0) {
        core_errf(err, err_len, "PocketSphinx could not start an utterance");
        return BANTER_ERR_INTERNAL;
    }
    d->in_utt = true;
    return 0;
}

static int feed_utt(void *dec, const float *pcm, size_t n, char *err, size_t err_len)
{
    struct ps_dec *d = dec;
    int16_t block[1024];
    while (n > 0) {
        size_t k = n < 1024 ? n : 1024;
        /* PocketSphinx takes 16-bit samples: scale, round and clip. */
        for (size_t i = 0; i < k; i++) {
            float v = pcm[i] * 32768.0f;
            v = v > 32767.0f ? 32767.0f : v < -32768.0f ? -32768.0f : v;
            block[i] = (int16_t)(v >= 0 ? v + 0.5f : v - 0.5f);
        }
        if (ps_process_raw(d->ps, block, k, FALSE, FALSE) < 0) {
            core_errf(err, err_len, "PocketSphinx failed to process audio");
            return BANTER_ERR_INTERNAL;
        }
        pcm += k;
        n -= k;
    }
    return 0;
}

static const char *partial_hyp(void *dec)
{
    struct ps_dec *d = dec;
    const char *hyp = ps_get_hyp(d->ps, NULL);
    return hyp ? hyp : "";
}

static int end_utt(void *dec, const char **text, char *err, size_t err_len)
{
    struct ps_dec *d = dec;
    *text = "";
    if (!d->in_utt) return 0;
    d->in_utt = false;
    if (ps_end_utt(d->ps) < 0) {
        core_errf(err, err_len, "PocketSphinx failed to finish the utterance");
        return BANTER_ERR_INTERNAL;
    }
    const char *hyp = ps_get_hyp(d->ps, NULL);
    *text = hyp ? hyp : "";
    return 0;
}

const struct asr_engine asr_pocketsphinx = {
    .name = "pocketsphinx",
    .load = load_model,
    .unload = unload_model,
    .open = open_decoder,
    .close = close_decoder,
    .begin = begin_utt,
    .feed = feed_utt,
    .partial = partial_hyp,
    .end = end_utt,
};
