/*
 * transcribe.c: `banter transcribe FILE...`, which prints what the built-in recognizer (PocketSphinx) hears
 * in each sound file, optionally with the decoding time.
 *
 * The recognizer is loaded once and reused for every file, as a server would. A file that cannot be read is
 * reported and skipped; the exit code is 1 if any file failed.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: banter transcribe [--second-pass] [--timing] [--model-dir DIR] FILE...\n"
    "\n"
    "Prints the words spoken in each sound file, recognized by the built-in speech recognizer (CMU "
    "PocketSphinx\n"
    "with Debian's US English model). Files may be WAV, FLAC or Ogg at any sample rate, mono or stereo; they "
    "are\n"
    "converted to 16 kHz mono first. Each file is recognized as one utterance, so short recordings (a "
    "sentence\n"
    "or a few) work best. With one file the transcript is printed alone; with several, each line starts "
    "with\n"
    "the file name. Words come out in lower case without punctuation.\n"
    "\n"
    "options:\n"
    "  --second-pass   also run PocketSphinx's second and third decoding passes at the end of each "
    "utterance:\n"
    "                  a little more accurate on clean speech, but the final text comes ~100-400 ms after "
    "the\n"
    "                  audio ends instead of ~10-30 ms (what live conversation uses by default)\n"
    "  --timing        after each transcript, print the audio length, the decoding time, the speed-up over "
    "real\n"
    "                  time, and how long after the last sample the final text was ready\n"
    "  --model-dir DIR directory holding en-us/ (default: /usr/share/pocketsphinx/model from Debian's\n"
    "                  pocketsphinx-en-us package)\n"
    "\n"
    "exit status: 0 when every file was transcribed, 1 when a file or the model could not be read, 2 on a "
    "usage\n"
    "error.\n"
    "\n"
    "examples:\n"
    "  banter transcribe question.wav\n"
    "  banter transcribe --timing /usr/share/pocketsphinx/test/data/librivox/*.wav\n"
    "  banter say \"Turn left at the station.\" -o /tmp/t.wav && banter transcribe /tmp/t.wav\n";

int cmd_transcribe(int argc, char **argv)
{
    banter_asr_config cfg = banter_asr_config_default();
    bool timing = false, only_files = false;
    /* Files in command-line order; options may come before or after them, "--" ends the options. */
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) {
        fprintf(stderr, "banter: out of memory\n");
        return 1;
    }
    int n_files = 0, code = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_files || a[0] != '-' || a[1] == 0) {
            files[n_files++] = a;
        } else if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            goto done;
        } else if (!strcmp(a, "--second-pass")) {
            cfg.second_pass = true;
        } else if (!strcmp(a, "--timing")) {
            timing = true;
        } else if (!strcmp(a, "--model-dir")) {
            if (!(cfg.model_dir = cli_value(argc, argv, &i))) {
                code = 2;
                goto done;
            }
        } else if (!strcmp(a, "--")) {
            only_files = true;
        } else {
            fprintf(stderr, "banter: transcribe: unknown option '%s' (see --help)\n", a);
            code = 2;
            goto done;
        }
    }
    if (n_files == 0) {
        fprintf(stderr, "banter: transcribe needs at least one sound file (see --help)\n");
        code = 2;
        goto done;
    }

    char err[512];
    banter_asr *asr = NULL;
    if (banter_asr_open(&cfg, &asr, err, sizeof err) != BANTER_OK) {
        fprintf(stderr, "banter: %s\n", err);
        code = 1;
        goto done;
    }
    for (int f = 0; f < n_files; f++) {
        const char *text = NULL;
        banter_asr_timing t;
        if (banter_asr_transcribe_file(asr, files[f], &text, &t) != BANTER_OK) {
            fprintf(stderr, "banter: %s\n", banter_asr_error(asr));
            code = 1;
            continue;
        }
        if (n_files > 1)
            printf("%s: %s\n", files[f], text);
        else
            printf("%s\n", text);
        if (timing)
            printf("  %.2f s of audio decoded in %.3f s (%.1fx real time); final text %.1f ms after the last "
                   "sample%s\n",
                   t.audio_ms / 1000.0, t.decode_ms / 1000.0,
                   t.decode_ms > 0 ? t.audio_ms / t.decode_ms : 0.0, t.final_ms,
                   cfg.second_pass ? " (second pass on)" : "");
        fflush(stdout);
    }
    banter_asr_close(asr);
done:
    free(files);
    return code;
}
