/*
 * say.c: `banter say TEXT -o FILE`, which speaks a text with a built-in synthesizer (Flite or eSpeak NG) into
 * a 16 kHz sound file and reports how fast the first audio came.
 *
 * Time to first audio is the figure that matters in conversation (the text is spoken clause by clause, so it
 * is the time to synthesize the first clause), so it is printed beside the audio length and the total time.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: banter say TEXT -o FILE [--engine flite|espeak] [--voice V] [--rate WPM] [--pitch P]\n"
    "\n"
    "Speaks TEXT (UTF-8; \"-\" reads it from standard input) with a built-in speech synthesizer and writes "
    "the\n"
    "audio to FILE: 16 kHz mono, 16-bit WAV, or FLAC if FILE ends in .flac. The text is spoken clause by\n"
    "clause, as a live reply is, and the command prints the time to the first audio, the audio length and "
    "the\n"
    "total synthesis time.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE  where to write the audio (required)\n"
    "  --engine E         flite (default): CMU Flite, natural-sounding US English voices\n"
    "                     espeak: eSpeak NG, robotic but very fast, and speaks about a hundred languages\n"
    "  --voice V          flite: slt (default, female, the most natural) or kal16 (male, diphone)\n"
    "                     espeak: a voice or language name: en-us (default), en, de, fr, es, ...\n"
    "                     (`espeak-ng --voices` lists them)\n"
    "  --rate WPM         speaking rate, 80 to 450 words per minute (default: the voice's own, ~175)\n"
    "  --pitch P          1 (lowest) to 100 (highest); 50 is the voice's natural pitch (default)\n"
    "\n"
    "exit status: 0 on success, 1 when the file could not be written, 2 on a usage error (including an "
    "unknown\n"
    "engine or voice).\n"
    "\n"
    "examples:\n"
    "  banter say \"Hello! How can I help you today?\" -o hello.wav\n"
    "  banter say \"Guten Tag, wie geht es Ihnen?\" --engine espeak --voice de -o gruss.wav\n"
    "  echo \"Reading from a pipe.\" | banter say - --voice kal16 --rate 200 -o pipe.flac\n";

/* Reads all of standard input into a NUL-terminated string (NULL on failure). */
static char *read_stdin(void)
{
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    while (s) {
        size_t got = fread(s + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
        if (n + 1 == cap) {
            char *grown = realloc(s, cap * 2);
            if (!grown) {
                free(s);
                return NULL;
            }
            s = grown;
            cap *= 2;
        }
    }
    if (s) s[n] = 0;
    return s;
}

int cmd_say(int argc, char **argv)
{
    banter_tts_config cfg = banter_tts_config_default();
    const char *text = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        }
        const char **dst = NULL;
        if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            dst = &out;
        else if (!strcmp(a, "--engine"))
            dst = &cfg.engine;
        else if (!strcmp(a, "--voice"))
            dst = &cfg.voice;
        if (dst) {
            if (!(*dst = cli_value(argc, argv, &i))) return 2;
            continue;
        }
        if (!strcmp(a, "--rate") || !strcmp(a, "--pitch")) {
            bool rate = !strcmp(a, "--rate");
            const char *v = cli_value(argc, argv, &i);
            long x;
            if (!v || !cli_parse_int(v, a, rate ? 80 : 1, rate ? 450 : 100, &x)) return 2;
            if (rate)
                cfg.rate = (int)x;
            else
                cfg.pitch = (int)x;
            continue;
        }
        if (a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "banter: say: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (text) {
            fprintf(stderr,
                    "banter: say takes one text; quote it if it has spaces: banter say \"%s %s\" ...\n", text,
                    a);
            return 2;
        }
        text = a;
    }
    if (!text) {
        fprintf(stderr, "banter: say needs a text to speak (see --help)\n");
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "banter: say needs an output file: -o FILE (see --help)\n");
        return 2;
    }

    char *owned = NULL;
    if (!strcmp(text, "-")) {
        if (!(text = owned = read_stdin())) {
            fprintf(stderr, "banter: could not read the text from standard input\n");
            return 1;
        }
    }
    char err[512];
    banter_tts *tts = NULL;
    banter_status rc = banter_tts_open(&cfg, &tts, err, sizeof err);
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", err);
        free(owned);
        return rc == BANTER_ERR_INVALID_ARG || rc == BANTER_ERR_NOT_FOUND ? 2 : 1;
    }
    banter_tts_stats st;
    rc = banter_tts_synthesize_file(tts, text, out, &st);
    int code = 0;
    if (rc != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", banter_tts_error(tts));
        code = 1;
    } else {
        double seconds = (double)st.n_samples / BANTER_SAMPLE_RATE;
        printf(
            "wrote %s: %.2f s of audio (16 kHz) in %d chunk%s; first audio after %.1f ms, all synthesized in "
            "%.1f ms (%.0fx real time)\n",
            out, seconds, st.n_chunks, st.n_chunks == 1 ? "" : "s", st.first_audio_ms, st.total_ms,
            st.total_ms > 0 ? seconds * 1000.0 / st.total_ms : 0.0);
        if (st.n_samples == 0)
            fprintf(stderr, "banter: warning: the text had nothing to speak; the file is empty\n");
    }
    banter_tts_close(tts);
    free(owned);
    return code;
}
