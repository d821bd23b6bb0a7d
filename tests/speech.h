/*
 * speech.h: helpers the speech tests share: word error rate, reading raw PCM, collecting synthesized audio,
 * and whether the build runs under AddressSanitizer (whose slowdown some tests scale down for).
 */
#ifndef BANTER_TEST_SPEECH_H
#define BANTER_TEST_SPEECH_H

#include "banter.h"
#include "core/core.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

#define DATA "/usr/share/pocketsphinx/test/data"

/* Helpers are file-local in each test, and not every test uses all of them. */
#define SPEECH_FN static __attribute__((unused))

/* ---- word error rate ---- */

#define MAX_WORDS 256

/* Splits text into lower-case words (letters, digits and apostrophes), writing them into store. */
SPEECH_FN int split_words(const char *text, char store[MAX_WORDS][32])
{
    int n = 0;
    const char *p = text;
    while (*p && n < MAX_WORDS) {
        while (*p && !(isalnum((unsigned char)*p) || *p == '\''))
            p++;
        int k = 0;
        while (*p && (isalnum((unsigned char)*p) || *p == '\'')) {
            if (k < 31) store[n][k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        if (k > 0) store[n++][k] = 0;
    }
    return n;
}

/* Word-level edit distance between ref and hyp; *n_ref receives the reference length. */
SPEECH_FN int word_errors(const char *ref, const char *hyp, int *n_ref)
{
    static char r[MAX_WORDS][32], h[MAX_WORDS][32];
    int nr = split_words(ref, r), nh = split_words(hyp, h);
    static int d[MAX_WORDS + 1][MAX_WORDS + 1];
    for (int i = 0; i <= nr; i++)
        d[i][0] = i;
    for (int j = 0; j <= nh; j++)
        d[0][j] = j;
    for (int i = 1; i <= nr; i++)
        for (int j = 1; j <= nh; j++) {
            int sub = d[i - 1][j - 1] + (strcmp(r[i - 1], h[j - 1]) != 0);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    *n_ref = nr;
    return d[nr][nh];
}

/* ---- audio helpers ---- */

SPEECH_FN float *read_raw_s16(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *n = (size_t)bytes / 2;
    int16_t *s = malloc(*n * 2 + 1);
    float *x = malloc(*n * sizeof *x + 1);
    BANTER_ASSERT(s && x);
    BANTER_ASSERT(fread(s, 2, *n, f) == *n);
    fclose(f);
    for (size_t i = 0; i < *n; i++)
        x[i] = (float)s[i] / 32768.0f;
    free(s);
    return x;
}

struct pcm {
    float *x;
    size_t n, cap;
};

/* A banter_tts_audio_fn that appends to a struct pcm. */
SPEECH_FN int append_pcm(const float *samples, size_t n, const banter_tts_chunk *chunk, void *user)
{
    (void)chunk;
    struct pcm *p = user;
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 16000;
        p->x = realloc(p->x, p->cap * sizeof *p->x);
        BANTER_ASSERT(p->x);
    }
    memcpy(p->x + p->n, samples, n * sizeof *samples);
    p->n += n;
    return 1;
}


#endif
