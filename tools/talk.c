/*
 * talk.c: `banter talk`, a spoken conversation: one turn from a sound file, a scripted conversation from a
 * directory of sound files, or live with a microphone and a speaker.
 *
 * Files are played into the session at the pace of real time (as a microphone would deliver them), so the
 * latencies printed are the ones a live user would get; --fast feeds them as fast as they are processed. In a
 * script, each turn starts after the assistant has finished speaking and a short gap, or, with --barge-in MS,
 * MS milliseconds after the assistant started speaking: the user interrupts, and the table shows it.
 *
 * Live mode uses PortAudio's default input and output (or --device N) in blocking full-duplex mode at 16 kHz:
 * every 20 ms frame read from the microphone goes in, and the frame that comes back goes to the speaker.
 */
#include "cli.h"
#include "voice.h"

#include <dirent.h>
#include <fcntl.h>
#include <portaudio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE_HEAD =
    "usage: banter talk --model FILE [--in FILE [--out FILE] | --script DIR [--out FILE]] [options]\n"
    "\n"
    "Holds a spoken conversation: speech in, the recognizer's transcript to the language model, its reply spoken\n"
    "clause by clause while it is still being written. Prints the transcript and, per turn, where the time went\n"
    "from the end of the user's speech to the first reply audio.\n"
    "\n"
    "  --in FILE              one turn: the user's speech from a sound file (WAV, FLAC, Ogg; any rate)\n"
    "  --out FILE             with --in: the reply audio; with --script or live: the whole conversation\n"
    "                         (both sides mixed, 16 kHz WAV or FLAC by extension)\n"
    "  --script DIR           a conversation: the sound files in DIR in name order (01.wav, 02.wav, ...),\n"
    "                         one user turn each, each started after the reply to the previous one\n"
    "  --barge-in MS          (script) start each next turn MS ms after the assistant starts speaking,\n"
    "                         interrupting it\n"
    "  --gap MS               (script) silence between a reply and the next turn (default 700)\n"
    "  --fast                 feed files as fast as they are processed instead of at real-time pace\n"
    "  --device N             (live) PortAudio device number for input and output (default: the system's)\n"
    "  --list-devices         list sound devices and exit\n"
    "Without --in or --script: live, from the microphone to the speaker, until Ctrl-C. Use headphones, or\n"
    "--no-barge-in: the assistant's voice on open speakers would interrupt itself.\n"
    "\n";

static const char *USAGE_TAIL =
    "\n"
    "exit status: 0 when every turn was answered, 1 when something failed (no speech found, an unreadable\n"
    "file, a model error), 2 on a usage error.\n"
    "\n"
    "examples:\n"
    "  banter say \"What is the capital of France?\" -o question.wav\n"
    "  banter talk -m gemma-3-270m-it-Q8_0.gguf --in question.wav --out reply.wav\n"
    "  banter talk -m gemma-3-270m-it-Q8_0.gguf --script turns/ --barge-in 800\n"
    "  banter talk --llm-url http://127.0.0.1:8080 --in question.wav --out reply.wav\n";

static void usage(FILE *f)
{
    fputs(USAGE_HEAD, f);
    fputs(VOICE_OPTIONS_HELP, f);
    fputs(USAGE_TAIL, f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_sound_file(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return false;
    return !strcasecmp(dot, ".wav") || !strcasecmp(dot, ".flac") || !strcasecmp(dot, ".ogg") ||
           !strcasecmp(dot, ".oga");
}

/* The sound files of a directory in name order; NULL (after a message) when none or unreadable. */
static char **list_script(const char *dir, int *n)
{
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "banter: cannot open the script directory '%s'\n", dir);
        return NULL;
    }
    char **names = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!is_sound_file(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **g = realloc(names, (size_t)cap * sizeof *g);
            if (!g) break;
            names = g;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[*n] = malloc(len);
        if (!names[*n]) break;
        snprintf(names[*n], len, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(dp);
    if (*n == 0) {
        fprintf(stderr, "banter: no sound files (.wav, .flac, .ogg) in '%s'\n", dir);
        free(names);
        return NULL;
    }
    qsort(names, (size_t)*n, sizeof *names, cmp_str);
    return names;
}

static int write_out(const char *path, const float *x, size_t n)
{
    char err[512];
    if (banter_audio_write(path, x, n, err, sizeof err)) {
        fprintf(stderr, "banter: %s\n", err);
        return 1;
    }
    fprintf(stderr, "wrote %s (%.1f s)\n", path, n / (double)BANTER_SAMPLE_RATE);
    return 0;
}

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Pa_Initialize and Pa_Terminate probe every sound system (ALSA, JACK, OSS), and those libraries print their
 * failures to stderr; that is noise to a user whose machine simply lacks one, so stderr is muted around them. */
static int mute_stderr(void)
{
    fflush(stderr);
    int saved = dup(2);
    int null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) dup2(null, 2);
    if (null >= 0) close(null);
    return saved;
}

static void unmute_stderr(int saved)
{
    if (saved < 0) return;
    dup2(saved, 2);
    close(saved);
}

static PaError pa_init_quiet(void)
{
    int saved = mute_stderr();
    PaError e = Pa_Initialize();
    unmute_stderr(saved);
    return e;
}

static void pa_term_quiet(void)
{
    int saved = mute_stderr();
    Pa_Terminate();
    unmute_stderr(saved);
}

static int list_devices(void)
{
    PaError e = pa_init_quiet();
    if (e != paNoError) {
        fprintf(stderr, "banter: no sound system: %s\n", Pa_GetErrorText(e));
        return 1;
    }
    int n = Pa_GetDeviceCount();
    if (n <= 0) printf("no sound devices\n");
    for (int i = 0; i < n; i++) {
        const PaDeviceInfo *di = Pa_GetDeviceInfo(i);
        if (di)
            printf("%3d  %-40s  in %d, out %d channels, %.0f Hz\n", i, di->name, di->maxInputChannels,
                   di->maxOutputChannels, di->defaultSampleRate);
    }
    pa_term_quiet();
    return 0;
}

/* Live: the default (or chosen) device in blocking full duplex, 20 ms frames, until Ctrl-C. */
static int run_live(struct voice_driver *d, int device, const char *out_path)
{
    PaError e = pa_init_quiet();
    if (e != paNoError) {
        fprintf(stderr, "banter: no sound system (%s); use --in FILE or --script DIR\n", Pa_GetErrorText(e));
        return 1;
    }
    int in_dev = device >= 0 ? device : Pa_GetDefaultInputDevice();
    int out_dev = device >= 0 ? device : Pa_GetDefaultOutputDevice();
    if (in_dev == paNoDevice || out_dev == paNoDevice || in_dev >= Pa_GetDeviceCount() ||
        out_dev >= Pa_GetDeviceCount()) {
        fprintf(stderr, "banter: no %s device found; use --in FILE or --script DIR (or --list-devices)\n",
                in_dev == paNoDevice ? "microphone" : "speaker");
        pa_term_quiet();
        return 1;
    }
    PaStreamParameters ip = {.device = in_dev, .channelCount = 1, .sampleFormat = paFloat32,
                             .suggestedLatency = Pa_GetDeviceInfo(in_dev)->defaultLowInputLatency};
    PaStreamParameters op = {.device = out_dev, .channelCount = 1, .sampleFormat = paFloat32,
                             .suggestedLatency = Pa_GetDeviceInfo(out_dev)->defaultLowOutputLatency};
    PaStream *st = NULL;
    e = Pa_OpenStream(&st, &ip, &op, BANTER_SAMPLE_RATE, 320, paClipOff, NULL, NULL);
    if (e == paNoError) e = Pa_StartStream(st);
    if (e != paNoError) {
        fprintf(stderr, "banter: cannot open the sound device at 16 kHz: %s\n", Pa_GetErrorText(e));
        if (st) Pa_CloseStream(st);
        pa_term_quiet();
        return 1;
    }
    fprintf(stderr, "listening (%s -> %s); speak, and press Ctrl-C to stop\n", Pa_GetDeviceInfo(in_dev)->name,
            Pa_GetDeviceInfo(out_dev)->name);
    signal(SIGINT, on_sigint);
    float in[320], outb[320];
    float *rec = NULL;
    size_t n_rec = 0, cap_rec = 0;
    while (!g_stop) {
        e = Pa_ReadStream(st, in, 320);
        if (e != paNoError && e != paInputOverflowed) break;
        banter_session_process(voice_session(d), in, outb, 320);
        e = Pa_WriteStream(st, outb, 320);
        if (e != paNoError && e != paOutputUnderflowed) break;
        if (out_path) {
            if (n_rec + 320 > cap_rec) {
                size_t c = cap_rec ? cap_rec * 2 : 1 << 18;
                float *g = realloc(rec, c * sizeof *g);
                if (!g) break;
                rec = g;
                cap_rec = c;
            }
            for (int i = 0; i < 320; i++) rec[n_rec + i] = in[i] + outb[i];
            n_rec += 320;
        }
    }
    if (e != paNoError && !g_stop) fprintf(stderr, "banter: sound device error: %s\n", Pa_GetErrorText(e));
    Pa_StopStream(st);
    Pa_CloseStream(st);
    pa_term_quiet();
    int rc = 0;
    if (out_path && n_rec) rc = write_out(out_path, rec, n_rec);
    free(rec);
    return rc;
}

int cmd_talk(int argc, char **argv)
{
    struct voice_opts o;
    voice_opts_default(&o);
    const char *in = NULL, *out = NULL, *script = NULL;
    long barge = -1, gap = 700, device = -1;
    bool fast = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = voice_parse_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--in") || !strcmp(a, "-i")) {
            if (!(in = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!(out = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--script")) {
            if (!(script = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--barge-in")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(v, "--barge-in", 0, 600000, &barge)) return 2;
        } else if (!strcmp(a, "--gap")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(v, "--gap", 0, 600000, &gap)) return 2;
        } else if (!strcmp(a, "--device")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(v, "--device", 0, 4096, &device)) return 2;
        } else if (!strcmp(a, "--list-devices")) {
            return list_devices();
        } else if (!strcmp(a, "--fast")) {
            fast = true;
        } else {
            fprintf(stderr, "banter talk: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (in && script) {
        fprintf(stderr, "banter talk: give --in or --script, not both\n");
        return 2;
    }
    if (barge >= 0 && !script) {
        fprintf(stderr, "banter talk: --barge-in applies to --script\n");
        return 2;
    }
    cli_log_init(o.verbose ? BANTER_LOG_INFO : BANTER_LOG_WARN);

    /* Read the input before loading anything, so a bad file fails fast. */
    char err[512];
    float *user = NULL;
    size_t n_user = 0;
    char **files = NULL;
    int n_files = 0;
    if (in && banter_audio_read(in, 600, &user, &n_user, err, sizeof err)) {
        fprintf(stderr, "banter: %s\n", err);
        return 1;
    }
    if (script && !(files = list_script(script, &n_files))) return 1;

    struct voice_driver *d = NULL;
    int rc = voice_open(&o, &d);
    if (rc) {
        banter_audio_free(user);
        for (int k = 0; k < n_files; k++) free(files[k]);
        free(files);
        return rc;
    }
    if (in) {
        voice_feed(d, user, n_user, fast);
        if (!voice_wait_idle(d, 300, fast)) fprintf(stderr, "banter: no answer within 300 s\n");
        voice_finish(d);
        if (voice_n_turns(d) == 0) {
            fprintf(stderr, "banter: no speech was recognized in %s\n", in);
            rc = 1;
        }
        size_t n;
        const float *x = voice_reply_audio(d, &n);
        if (out && n && write_out(out, x, n)) rc = 1;
    } else if (script) {
        for (int k = 0; k < n_files; k++) {
            float *x = NULL;
            size_t n = 0;
            if (banter_audio_read(files[k], 600, &x, &n, err, sizeof err)) {
                fprintf(stderr, "banter: %s (skipped)\n", err);
                rc = 1;
                continue;
            }
            if (!o.quiet) printf("-- %s\n", files[k]);
            voice_feed(d, x, n, fast);
            banter_audio_free(x);
            if (barge >= 0 && k + 1 < n_files) {
                voice_wait_speaking(d, (int)barge, 300, fast);
            } else {
                if (!voice_wait_idle(d, 300, fast)) fprintf(stderr, "banter: no answer within 300 s\n");
                float *sil = calloc((size_t)gap * 16 + 1, sizeof *sil);
                if (sil) voice_feed(d, sil, (size_t)gap * 16, fast);
                free(sil);
            }
        }
        voice_finish(d);
        if (voice_n_turns(d) < n_files) rc = 1;
        size_t n;
        const float *x = voice_timeline(d, &n);
        if (out && n && write_out(out, x, n)) rc = 1;
    } else {
        rc = run_live(d, (int)device, out);
        voice_finish(d);
    }
    if (voice_n_turns(d) > 0) voice_print_table(d, stdout);
    if (voice_n_errors(d) > 0) rc = 1;
    voice_close(d);
    banter_audio_free(user);
    for (int k = 0; k < n_files; k++) free(files[k]);
    free(files);
    return rc;
}
