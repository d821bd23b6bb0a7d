/*
 * codec.c: base64 and G.711 (see codec.h).
 *
 * G.711 as the ITU-T recommendation defines it, on 14-bit (mu-law) and 13-bit (A-law) samples taken from the
 * top of the 16-bit ones: mu-law adds a bias of 33 to the magnitude and codes the segment (the position of the
 * highest set bit) and the 4 bits below it, all inverted; A-law codes the 13-bit
 * magnitude the same way without a bias (segment 0 is linear) and inverts the even bits (XOR 0x55).
 */
#include "server/codec.h"

#include <stdbool.h>

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long base64_decode(const char *in, size_t n, unsigned char *out)
{
    /* Up to two '=' at the very end (only where the length is a multiple of 4). */
    size_t len = n;
    if (len % 4 == 0 && len > 0 && in[len - 1] == '=') {
        len--;
        if (in[len - 1] == '=') len--;
    }
    if (len % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The leftover bits of a short final group must be zero (a canonical encoding). */
    if (acc != 0) return -1;
    return (long)o;
}

uint8_t g711_ulaw_encode(int16_t x)
{
    int v = x >> 2; /* the 14-bit sample (rounded toward minus infinity, as the usual 16-bit front end does) */
    int mask = 0xff;
    if (v < 0) {
        v = -v;
        mask = 0x7f;
    }
    if (v > 8159) v = 8159;
    v += 33; /* the bias, 132 in 16-bit units */
    if (v > 0x1fff) return (uint8_t)(0x7f ^ mask); /* the top of the range: the largest code */
    int seg = 7;
    for (int m = 0x1000; seg > 0 && !(v & m); m >>= 1) seg--;
    return (uint8_t)((seg << 4 | (v >> (seg + 1) & 0x0f)) ^ mask);
}

int16_t g711_ulaw_decode(uint8_t u)
{
    int v = (uint8_t)~u;
    int seg = v >> 4 & 7, mant = v & 0x0f;
    int mag = ((mant << 3) + 132) << seg;
    mag -= 132;
    return (int16_t)(v & 0x80 ? -mag : mag);
}

uint8_t g711_alaw_encode(int16_t x)
{
    int v = x >> 3; /* 13-bit */
    int sign = v >= 0 ? 0x80 : 0;
    int mag = v >= 0 ? v : -v - 1;
    if (mag > 0xfff) mag = 0xfff;
    int seg = 7;
    for (int m = 0x800; seg > 0 && !(mag & m); m >>= 1) seg--;
    int mant = seg == 0 ? mag >> 1 & 0x0f : mag >> seg & 0x0f;
    return (uint8_t)((sign | seg << 4 | mant) ^ 0x55);
}

int16_t g711_alaw_decode(uint8_t a)
{
    int v = a ^ 0x55;
    int seg = v >> 4 & 7, mant = v & 0x0f;
    int mag = seg == 0 ? (mant << 4) + 8 : ((mant << 4) + 0x108) << (seg - 1);
    return (int16_t)(v & 0x80 ? mag : -mag);
}
