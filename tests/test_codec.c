/*
 * test_codec.c: base64 and G.711 (src/server/codec.c).
 *
 * base64: RFC 4648's test vectors, round trips of every length up to 300 bytes, and what must be refused.
 * G.711: every 16-bit sample encoded and every code decoded, compared with Python's audioop (lin2ulaw, ulaw2lin,
 * lin2alaw, alaw2lin: CPython's implementation of the ITU-T algorithms), an independent reference run at test
 * time; skipped (only that part) where python3 or audioop is missing.
 */
#include "server/codec.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>

static void test_base64(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[64];
    unsigned char back[64];
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(plain[i]);
        CHECK_INT_EQ(base64_encoded_len(n), strlen(coded[i]));
        CHECK_INT_EQ(base64_encode((const unsigned char *)plain[i], n, out), strlen(coded[i]));
        CHECK_STR_EQ(out, coded[i]);
        long m = base64_decode(coded[i], strlen(coded[i]), back);
        CHECK_INT_EQ(m, n);
        CHECK(m >= 0 && memcmp(back, plain[i], n) == 0);
    }
    /* Unpadded input is accepted. */
    CHECK_INT_EQ(base64_decode("Zm9vYg", 6, back), 4);
    CHECK(memcmp(back, "foob", 4) == 0);
    /* Every length, every byte value. */
    unsigned char data[300], dec[300];
    char enc[404];
    for (int i = 0; i < 300; i++) data[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= 300; n++) {
        size_t e = base64_encode(data, n, enc);
        long d = base64_decode(enc, e, dec);
        CHECK_INT_EQ(d, n);
        CHECK(d >= 0 && memcmp(dec, data, n) == 0);
    }
    /* Refused: characters outside the alphabet, whitespace, padding in the middle, a dangling character, extra
     * padding, and non-zero leftover bits. */
    static const char *const bad[] = {"Zm9v!", "Zm9 v", "Zm9v\n", "Zg==Zg==", "Zm9vY", "Zg===", "=", "Zh==", "Zm9="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        long r = base64_decode(bad[i], strlen(bad[i]), back);
        if (r != -1) fprintf(stderr, "accepted bad base64 '%s'\n", bad[i]);
        CHECK_INT_EQ(r, -1);
    }
}

/* Python's audioop tables: 65536 mu-law and 65536 A-law codes for every sample (-32768..32767, little-endian
 * order), then 256 + 256 decoded samples. */
static bool reference_tables(uint8_t *ulaw, uint8_t *alaw, int16_t *ulaw_dec, int16_t *alaw_dec)
{
    const char *cmd =
        "python3 -W ignore -c \"import audioop,sys,struct;"
        "lin=struct.pack('<65536h',*range(-32768,32768));"
        "codes=bytes(range(256));"
        "sys.stdout.buffer.write(audioop.lin2ulaw(lin,2)+audioop.lin2alaw(lin,2)+"
        "audioop.ulaw2lin(codes,2)+audioop.alaw2lin(codes,2))\" 2>/dev/null";
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    bool ok = fread(ulaw, 1, 65536, p) == 65536 && fread(alaw, 1, 65536, p) == 65536 &&
              fread(ulaw_dec, 2, 256, p) == 256 && fread(alaw_dec, 2, 256, p) == 256;
    ok = pclose(p) == 0 && ok;
    return ok;
}

static void test_g711(void)
{
    static uint8_t ulaw[65536], alaw[65536];
    int16_t ulaw_dec[256], alaw_dec[256];
    if (!reference_tables(ulaw, alaw, ulaw_dec, alaw_dec)) {
        printf("SKIP G.711 comparison: python3 with audioop is not available\n");
        return;
    }
    int bad_u = 0, bad_a = 0;
    for (int i = 0; i < 65536; i++) {
        int16_t x = (int16_t)(i - 32768);
        bad_u += g711_ulaw_encode(x) != ulaw[i];
        bad_a += g711_alaw_encode(x) != alaw[i];
    }
    CHECK_INT_EQ(bad_u, 0);
    CHECK_INT_EQ(bad_a, 0);
    for (int c = 0; c < 256; c++) {
        CHECK_INT_EQ(g711_ulaw_decode((uint8_t)c), ulaw_dec[c]);
        CHECK_INT_EQ(g711_alaw_decode((uint8_t)c), alaw_dec[c]);
    }
}

int main(void)
{
    test_base64();
    test_g711();
    return test_finish("test_codec");
}
