/*
 * tts_flite.c: the default synthesizer, CMU Flite 2.2 with its packaged US English voices: cmu_us_slt (a
 * statistical parametric "clustergen" voice, the most natural one Debian ships) and cmu_us_kal16 (a diphone
 * voice, robotic but very fast). Both produce 16 kHz, the pipeline's own rate, so no resampling happens here.
 *
 * Streaming: Flite analyses a whole utterance before it makes sound, so the text arrives here one clause at a
 * time (tts.c chunks it), and within a clause Flite's audio streaming hook (an audio_streaming_info stored in
 * the voice's "streaming_info" feature) hands over each block of samples as the waveform generator produces
 * it, instead of after the whole clause. The hook's return value stops synthesis on cancel.
 *
 * Voice settings are features of the (global) voice object, so they are applied before every job: rate as
 * "duration_stretch" (175 wpm / rate), pitch as a factor 2^((pitch - 50) / 50) on the voice's F0: "f0_shift"
 * for clustergen voices, the target mean "int_f0_target_mean" for the diphone voice. Everything here runs on
 * tts.c's Flite worker thread, the only thread that touches Flite.
 */
#include "tts/tts.h"

#include "core/core.h"

#include <flite/flite.h>

#include <math.h>
#include <string.h>

cst_voice *register_cmu_us_slt(const char *voxdir);
void unregister_cmu_us_slt(cst_voice *v);
cst_voice *register_cmu_us_kal16(const char *voxdir);
void unregister_cmu_us_kal16(cst_voice *v);

struct flite_voice {
    const char *name;
    cst_voice *v;
    bool clustergen; /* pitch through f0_shift (true) or int_f0_target_mean (false) */
    float f0_mean;   /* the diphone voice's own target mean F0, Hz */
};

struct flite_state {
    struct flite_voice voices[2]; /* slt, kal16 */
    struct flite_voice *cur;
    struct tts_sink *sink; /* the sink of the synthesis in progress */
};

static int stream_chunk(const cst_wave *w, int start, int size, int last, cst_audio_streaming_info *asi)
{
    (void)last;
    struct flite_state *st = asi->userdata;
    if (!st->sink || size <= 0) return CST_AUDIO_STREAM_CONT;
    int stop = tts_sink_put(st->sink, w->samples + start, (size_t)size, w->sample_rate);
    return stop ? CST_AUDIO_STREAM_STOP : CST_AUDIO_STREAM_CONT;
}

static void attach_stream(struct flite_state *st, cst_voice *v)
{
    cst_audio_streaming_info *asi = new_audio_streaming_info();
    asi->asc = stream_chunk;
    asi->min_buffsize = 320; /* 20 ms pieces */
    asi->userdata = st;
    /* The voice's features own the info from here on and free it with the voice. */
    feat_set(v->features, "streaming_info", audio_streaming_info_val(asi));
}

static int flite_engine_init(void **state, char *err, size_t err_len)
{
    *state = NULL;
    struct flite_state *st = core_calloc(1, sizeof *st);
    if (!st) {
        core_errf(err, err_len, "out of memory starting Flite");
        return BANTER_ERR_NOMEM;
    }
    flite_init();
    st->voices[0] = (struct flite_voice){.name = "slt", .v = register_cmu_us_slt(NULL), .clustergen = true};
    st->voices[1] =
        (struct flite_voice){.name = "kal16", .v = register_cmu_us_kal16(NULL), .clustergen = false};
    for (int i = 0; i < 2; i++) {
        if (!st->voices[i].v) {
            core_errf(err, err_len, "Flite could not load its %s voice", st->voices[i].name);
            if (st->voices[0].v) unregister_cmu_us_slt(st->voices[0].v);
            core_free(st);
            return BANTER_ERR_FORMAT;
        }
        attach_stream(st, st->voices[i].v);
    }
    st->voices[1].f0_mean = flite_get_param_float(st->voices[1].v->features, "int_f0_target_mean", 100.0f);
    *state = st;
    return 0;
}

static void flite_engine_deinit(void *state)
{
    struct flite_state *st = state;
    if (!st) return;
    unregister_cmu_us_slt(st->voices[0].v);
    unregister_cmu_us_kal16(st->voices[1].v);
    core_free(st);
}

static int flite_engine_select(void *state, const struct tts_voice *voice, char *err, size_t err_len)
{
    struct flite_state *st = state;
    const char *name = voice->name;
    if (!strncmp(name, "cmu_us_", 7)) name += 7;
    struct flite_voice *fv = NULL;
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, st->voices[i].name)) fv = &st->voices[i];
    if (!fv) {
        core_errf(err, err_len, "Flite has no voice '%s' (voices: slt, the default, and kal16)", voice->name);
        return BANTER_ERR_NOT_FOUND;
    }
    float factor = powf(2.0f, (float)(voice->pitch - 50) / 50.0f);
    flite_feat_set_float(fv->v->features, "duration_stretch", 175.0f / (float)voice->rate);
    if (fv->clustergen)
        flite_feat_set_float(fv->v->features, "f0_shift", factor);
    else
        flite_feat_set_float(fv->v->features, "int_f0_target_mean", fv->f0_mean * factor);
    st->cur = fv;
    return 0;
}

static int flite_engine_synth(void *state, const char *text, struct tts_sink *sink, char *err, size_t err_len)
{
    struct flite_state *st = state;
    BANTER_ASSERT(st->cur);
    st->sink = sink;
    cst_wave *w = flite_text_to_wave(text, st->cur->v);
    st->sink = NULL;
    if (!w) {
        core_errf(err, err_len, "Flite could not synthesize the text");
        return BANTER_ERR_INTERNAL;
    }
    delete_wave(w);
    return 0;
}

const struct tts_engine tts_flite = {
    .name = "flite",
    .default_voice = "slt",
    .init = flite_engine_init,
    .deinit = flite_engine_deinit,
    .select = flite_engine_select,
    .synth = flite_engine_synth,
};
