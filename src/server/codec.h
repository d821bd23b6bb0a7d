/*
 * codec.h: the byte encodings of the realtime protocol: base64 (RFC 4648, standard alphabet, padded) for audio
 * inside JSON, and G.711 mu-law and A-law (ITU-T G.711) for telephony audio at 8 kHz.
 */
#ifndef BANTER_SERVER_CODEC_H
#define BANTER_SERVER_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Characters base64_encode writes for n bytes (without the terminating NUL). */
size_t base64_encoded_len(size_t n);

/* Encodes in[0, n) into out, which has room for base64_encoded_len(n) + 1 bytes; NUL-terminates it. Returns the
 * length written. */
size_t base64_encode(const unsigned char *in, size_t n, char *out);

/* Decodes base64 text in[0, n) into out (room for n / 4 * 3 bytes suffices). Padding is optional; anything else
 * outside the alphabet (whitespace included), padding in the middle, or a length that leaves 1 character over
 * is an error. Returns the bytes written, or -1. */
long base64_decode(const char *in, size_t n, unsigned char *out);

/* One 16-bit linear sample to G.711 and back. */
uint8_t g711_ulaw_encode(int16_t x);
int16_t g711_ulaw_decode(uint8_t u);
uint8_t g711_alaw_encode(int16_t x);
int16_t g711_alaw_decode(uint8_t a);

#endif
