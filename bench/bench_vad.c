/*
 * bench_vad.c: how well and how fast the voice activity detector works on the labelled Flite test set
 * (tests/vad_testset.h): per noise condition, utterances detected, false starts and split turns, frame
 * accuracy, precision and recall of speech frames, start error, endpoint delay (mean, p50, p95: the time from
 * the true end of speech to the SPEECH_END decision) and CPU time per 20 ms frame. Not a test: it prints.
 *
 *   bench_vad                      the defaults
 *   bench_vad --end-ms N           another endpoint silence
 *   bench_vad --sweep              endpoint silence 200..600 ms: splits against delay (how the default was
 * set) bench_vad --pauses             pauses inside the human recordings of pocketsphinx-testdata (one
 * utterance per file): each file's longest internal pause, the bound for the endpoint
 */
#include "../tests/vad_testset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_DATA "/usr/share/pocketsphinx/test/data"

static void run_conditions(const struct ts_set *set, const struct vad_config *cfg, int verbose)
{
    struct vad *v = vad_open(cfg);
    if (!v) {
        fprintf(stderr, "bench_vad: bad config\n");
        exit(1);
    }
    printf("endpoint silence %d ms, margin %.1f dB, min speech %d ms\n", vad_get_config(v)->end_silence_ms,
           vad_get_config(v)->margin_db, vad_get_config(v)->min_speech_ms);
    printf("%-16s %5s %5s %5s %7s %6s %6s %16s %22s %8s\n", "condition", "found", "false", "split", "frame%",
           "prec%", "recall", "start err ms", "endpoint delay ms", "us/frame");
    printf("%-16s %5s %5s %5s %7s %6s %6s %16s %22s %8s\n", "", "", "", "", "", "", "%", "mean  max|.|",
           "mean   p50   p95", "");
    double all_delay[TS_MAX_UTT * TS_N_CONDITIONS];
    int n_all = 0;
    for (int c = 0; c < TS_N_CONDITIONS; c++) {
        struct ts_stream st;
        ts_stream_build(set, ts_conditions[c].noise, ts_conditions[c].snr_db, 1000 + (uint64_t)c, &st);
        struct ts_score sc;
        ts_run(v, st.x, st.n, &sc);
        ts_score_stream(&st, &sc);
        double se_mean = 0, se_max = 0, d_mean = 0;
        for (int i = 0; i < sc.n_detected; i++) {
            se_mean += sc.start_err_ms[i] / sc.n_detected;
            if (fabs(sc.start_err_ms[i]) > se_max) se_max = fabs(sc.start_err_ms[i]);
        }
        for (int i = 0; i < sc.n_delay; i++) {
            d_mean += sc.delay_ms[i] / sc.n_delay;
            all_delay[n_all++] = sc.delay_ms[i];
        }
        double prec = sc.tp + sc.fp ? 100.0 * sc.tp / (double)(sc.tp + sc.fp) : 0;
        double rec = sc.tp + sc.fn ? 100.0 * sc.tp / (double)(sc.tp + sc.fn) : 0;
        double p50 = ts_percentile(sc.delay_ms, sc.n_delay, 50),
               p95 = ts_percentile(sc.delay_ms, sc.n_delay, 95);
        printf("%-16s %2d/%-2d %5d %5d %7.2f %6.2f %6.2f %7.1f %7.1f %6.0f %6.0f %6.0f %8.2f\n",
               ts_conditions[c].name, sc.n_detected, sc.n_utt, sc.n_false, sc.n_split, 100 * ts_accuracy(&sc),
               prec, rec, se_mean, se_max, d_mean, p50, p95, 1000.0 * sc.cpu_ms / (double)sc.n_frames);
        if (verbose) {
            for (int u = 0; u < st.n_utt; u++)
                printf("    truth %6.2f-%6.2f s  %-6s %s\n", st.truth_start[u] / 16000.0,
                       st.truth_end[u] / 16000.0, set->utt[u].voice, set->utt[u].text);
            for (int s = 0; s < sc.n_seg; s++)
                printf("    turn  %6.2f-%6.2f s (decided %.2f)\n", sc.seg_start[s] / 16000.0,
                       sc.seg_end[s] / 16000.0, sc.seg_decided[s] / 16000.0);
        }
        ts_stream_free(&st);
    }
    printf("%-16s endpoint delay over all conditions: p50 %.0f ms, p95 %.0f ms\n\n", "all",
           ts_percentile(all_delay, n_all, 50), ts_percentile(all_delay, n_all, 95));
    vad_close(v);
}

/* The longest run of frames below stay_prob between the first and the last speech frame of x: the pause that
 * the endpoint silence must outlast for this utterance to stay one turn. */
static double longest_pause_ms(struct vad *v, const float *x, size_t n)
{
    struct vad_event ev;
    const float stay = vad_get_config(v)->stay_prob;
    long first = -1, last = -1, run = 0, longest = 0, f = 0;
    vad_reset(v);
    for (size_t off = 0; off + AUDIO_FRAME <= n; off += AUDIO_FRAME, f++) {
        if (vad_feed(v, x + off, &ev) == VAD_SPEECH_START && first < 0)
            first = (long)(ev.start / AUDIO_FRAME);
        if (first >= 0 && ev.prob >= stay) {
            if (last >= 0 && run > longest) longest = run;
            last = f;
            run = 0;
        } else if (first >= 0) {
            run++;
        }
    }
    return longest * 20.0;
}

/* Pauses inside single utterances: the human recordings of pocketsphinx-testdata and the Flite sentences. */
static void pauses(const struct ts_set *set)
{
    static const char *files[] = {
        PS_DATA "/goforward.raw",
        PS_DATA "/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
        PS_DATA "/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
        PS_DATA "/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
        PS_DATA "/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
        PS_DATA "/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
        PS_DATA "/cards/001.wav",
        PS_DATA "/cards/002.wav",
        PS_DATA "/cards/003.wav",
        PS_DATA "/cards/004.wav",
        PS_DATA "/cards/005.wav",
    };
    struct vad *v = vad_open(NULL);
    printf("longest pause (frames below stay_prob) inside single utterances:\n");
    double all_max = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        struct audio_buf b = {0};
        char err[256];
        if (strstr(files[i], ".raw")) {
            FILE *f = fopen(files[i], "rb");
            if (!f) continue;
            int16_t pcm[AUDIO_RATE * 4];
            size_t n = fread(pcm, sizeof *pcm, AUDIO_RATE * 4, f);
            fclose(f);
            b.samples = core_malloc(n * sizeof(float));
            b.n = n;
            audio_s16_to_f32(pcm, b.samples, n);
        } else if (audio_read_file(files[i], AUDIO_RATE, 0, &b, err, sizeof err)) {
            printf("  %s\n", err);
            continue;
        }
        double mx = longest_pause_ms(v, b.samples, b.n);
        printf("  %-48s %4.0f ms\n", strrchr(files[i], '/') + 1, mx);
        if (mx > all_max) all_max = mx;
        audio_buf_free(&b);
    }
    printf("  human recordings: longest %.0f ms\n", all_max);
    all_max = 0;
    for (int u = 0; u < set->n_utt; u++) {
        if (set->utt[u].n_clips != 1) continue;
        double mx = longest_pause_ms(v, set->utt[u].clip[0].x, set->utt[u].clip[0].n);
        if (mx > all_max) all_max = mx;
    }
    printf("  Flite sentences (clean, %d): longest %.0f ms\n\n", set->n_utt - 2, all_max);
    vad_close(v);
}

/* Prints every frame of one condition's stream: time, truth, level, floor, voicing, probability, state. */
static void trace(const struct ts_set *set, const struct vad_config *cfg, int c)
{
    struct vad *v = vad_open(cfg);
    struct ts_stream st;
    ts_stream_build(set, ts_conditions[c].noise, ts_conditions[c].snr_db, 1000 + (uint64_t)c, &st);
    struct vad_event ev;
    for (size_t off = 0; off + AUDIO_FRAME <= st.n; off += AUDIO_FRAME) {
        vad_feed(v, st.x + off, &ev);
        int truth = 0;
        for (int u = 0; u < st.n_utt; u++)
            if ((int64_t)off >= st.truth_start[u] && (int64_t)off < st.truth_end[u]) truth = 1;
        float lev, voi;
        vad_last_features(v, &lev, &voi);
        printf("%7.2f %d %7.1f %7.1f %5.2f %5.2f %d%s\n", off / 16000.0, truth, lev, vad_noise_floor_db(v),
               voi, ev.prob, ev.in_speech,
               ev.type == VAD_SPEECH_START ? " START"
               : ev.type == VAD_SPEECH_END ? " END"
                                           : "");
    }
    ts_stream_free(&st);
    vad_close(v);
}

int main(int argc, char **argv)
{
    int trace_cond = -1;
    struct vad_config cfg = {0};
    int sweep = 0, do_pauses = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--end-ms") && i + 1 < argc) {
            cfg.end_silence_ms = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--margin") && i + 1 < argc) {
            cfg.margin_db = strtof(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--sweep")) {
            sweep = 1;
        } else if (!strcmp(argv[i], "--pauses")) {
            do_pauses = 1;
        } else if (!strcmp(argv[i], "--trace") && i + 1 < argc) {
            trace_cond = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "-v")) {
            verbose = 1;
        } else {
            fprintf(stderr, "usage: bench_vad [--end-ms N] [--margin DB] [--sweep] [--pauses] [-v]\n");
            return 2;
        }
    }
    struct ts_set set;
    double t0 = core_time_ms();
    if (ts_set_build(&set)) {
        fprintf(stderr, "bench_vad: Flite synthesis failed\n");
        return 1;
    }
    printf("test set: %d utterances per condition (Flite slt + kal16), synthesized in %.0f ms\n\n", set.n_utt,
           core_time_ms() - t0);
    if (do_pauses) {
        pauses(&set);
    } else if (trace_cond >= 0 && trace_cond < TS_N_CONDITIONS) {
        trace(&set, &cfg, trace_cond);
    } else if (sweep) {
        for (int ms = 200; ms <= 600; ms += 50) {
            cfg.end_silence_ms = ms;
            run_conditions(&set, &cfg, 0);
        }
    } else {
        run_conditions(&set, &cfg, verbose);
    }
    ts_set_free(&set);
    return 0;
}
