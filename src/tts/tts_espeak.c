/*
 * tts_espeak.c: the alternative synthesizer, eSpeak NG: formant synthesis in about a hundred languages,
 * robotic but tiny and fast (first audio well under a millisecond after it starts on a clause).
 *
 * eSpeak NG is one global synthesizer, so it runs on tts.c's eSpeak worker thread only. It is initialized in
 * synchronous mode (ENOUTPUT_MODE_SYNCHRONOUS): espeak_ng_Synthesize returns when the text is spoken, and the
 * synth callback receives 16-bit samples at 22050 Hz in buffers of BUFFER_MS as they are produced; the
 * callback passes them to the job's sink, which resamples to 16 kHz, and returns 1 to abort when the job is
 * cancelled. The sink travels as the synthesis call's user_data, which eSpeak hands back in every event.
 *
 * Voice, rate (words per minute) and pitch (0-100) map to eSpeak's own parameters one to one. Changing voices
 * loads files, so the current voice is remembered and reloaded only when a job asks for a different one; rate
 * and pitch are set before every job (a voice change resets them).
 *
 * The library is initialized once per process and never terminated: eSpeak NG 1.51 (Debian 12) hangs in
 * espeak_ng_Initialize or espeak_ng_Terminate when initialized a second time after a Terminate (its internal
 * command thread is cancelled, not stopped, and leaves its flags behind). So when the last eSpeak handle
 * closes, the worker thread ends but the library keeps its voice data (reachable from its globals, a few MB)
 * for the next worker, which may run on a different thread; that is safe because only one worker exists at a
 * time and synchronous mode does not use the library's own threads.
 */
#include "tts/tts.h"

#include "core/core.h"

#include <espeak-ng/espeak_ng.h>

#include <stdio.h>
#include <string.h>

#define BUFFER_MS 20

struct espeak_state {
    char voice[64]; /* the voice currently loaded, "" before the first */
};

/* Process-wide, because the library is: eSpeak's output rate, and whether the library has been initialized.
 * Both are read and written only by whichever thread is the eSpeak worker at the time (one at a time). */
static int g_rate = 22050;
static bool g_initialized;

static int on_samples(short *wav, int n, espeak_EVENT *events)
{
    /* The first event of every call carries the user_data of the synthesis it belongs to. */
    struct tts_sink *sink = events ? events->user_data : NULL;
    if (!sink || !wav || n <= 0) return 0;
    return tts_sink_put(sink, wav, (size_t)n, g_rate) ? 1 : 0;
}

static int espeak_engine_init(void **state, char *err, size_t err_len)
{
    *state = NULL;
    struct espeak_state *st = core_calloc(1, sizeof *st);
    if (!st) {
        core_errf(err, err_len, "out of memory starting eSpeak NG");
        return BANTER_ERR_NOMEM;
    }
    if (!g_initialized) {
        espeak_ng_InitializePath(NULL);
        espeak_ng_ERROR_CONTEXT ctx = NULL;
        espeak_ng_STATUS status = espeak_ng_Initialize(&ctx);
        if (status == ENS_OK) status = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, BUFFER_MS, NULL);
        if (status != ENS_OK) {
            char msg[256];
            espeak_ng_GetStatusCodeMessage(status, msg, sizeof msg);
            espeak_ng_ClearErrorContext(&ctx);
            core_errf(err, err_len,
                      "eSpeak NG could not start: %s (is the espeak-ng-data package installed?)", msg);
            core_free(st);
            return BANTER_ERR_NOT_FOUND;
        }
        espeak_SetSynthCallback(on_samples);
        g_rate = espeak_ng_GetSampleRate();
        g_initialized = true;
    }
    *state = st;
    return 0;
}

static void espeak_engine_deinit(void *state)
{
    /* The library stays initialized: see the header comment. */
    core_free(state);
}

static int espeak_engine_select(void *state, const struct tts_voice *voice, char *err, size_t err_len)
{
    struct espeak_state *st = state;
    if (strcmp(st->voice, voice->name) != 0) {
        espeak_ng_STATUS status = espeak_ng_SetVoiceByName(voice->name);
        if (status != ENS_OK) {
            /* eSpeak may have dropped the previous voice: load it again on the next job. */
            st->voice[0] = 0;
            core_errf(
                err, err_len,
                "eSpeak NG has no voice '%s' (try en-us, en, de, fr, es; `espeak-ng --voices` lists them)",
                voice->name);
            return BANTER_ERR_NOT_FOUND;
        }
        snprintf(st->voice, sizeof st->voice, "%s", voice->name);
    }
    espeak_ng_SetParameter(espeakRATE, voice->rate, 0);
    espeak_ng_SetParameter(espeakPITCH, voice->pitch, 0);
    return 0;
}

static int espeak_engine_synth(void *state, const char *text, struct tts_sink *sink, char *err,
                               size_t err_len)
{
    (void)state;
    espeak_ng_STATUS status =
        espeak_ng_Synthesize(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, sink);
    if (status != ENS_OK && status != ENS_SPEECH_STOPPED) {
        char msg[256];
        espeak_ng_GetStatusCodeMessage(status, msg, sizeof msg);
        core_errf(err, err_len, "eSpeak NG could not synthesize the text: %s", msg);
        return BANTER_ERR_INTERNAL;
    }
    return 0;
}

const struct tts_engine tts_espeak = {
    .name = "espeak",
    .default_voice = "en-us",
    .init = espeak_engine_init,
    .deinit = espeak_engine_deinit,
    .select = espeak_engine_select,
    .synth = espeak_engine_synth,
};
