/*
 * fuzz_codec.c: libFuzzer target for the realtime protocol's byte codecs (src/server/codec.c).
 *
 * The input is taken as base64 text: a decode that succeeds must encode back to the same text (with the padding
 * the input may have left out restored), and the decoded length must fit the bound callers allocate (n / 4 * 3
 * + 3). The input is also taken as bytes to encode, which must decode back to them, and as G.711 codes, whose
 * decoded samples must encode back to the same codes (every code is the image of its own decoding), except
 * mu-law's two zeros (0x7f and 0xff both decode to 0).
 *
 * Seeds: none committed; the alphabet and padding are found quickly from the comparisons in the decoder.
 */
#include "server/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *dec = malloc(size / 4 * 3 + 3);
    char *enc = malloc(base64_encoded_len(size / 4 * 3 + 3) + 1);
    if (!dec || !enc) abort();
    long n = base64_decode((const char *)data, size, dec);
    if (n >= 0) {
        if ((size_t)n > size / 4 * 3 + 3) abort();
        size_t e = base64_encode(dec, (size_t)n, enc);
        if (e < size || memcmp(enc, data, size) != 0) abort();
        for (size_t i = size; i < e; i++)
            if (enc[i] != '=') abort();
    }
    free(dec);
    free(enc);

    char *e2 = malloc(base64_encoded_len(size) + 1);
    unsigned char *d2 = malloc(size + 3);
    if (!e2 || !d2) abort();
    size_t el = base64_encode(data, size, e2);
    if (el != base64_encoded_len(size) || base64_decode(e2, el, d2) != (long)size || memcmp(d2, data, size)) abort();
    free(e2);
    free(d2);

    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        if (g711_alaw_encode(g711_alaw_decode(c)) != c) abort();
        if (c != 0x7f && g711_ulaw_encode(g711_ulaw_decode(c)) != c) abort();
    }
    return 0;
}
