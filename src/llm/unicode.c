/*
 * unicode.c: UTF-8 decoding/encoding and character classes for the tokenizers (see unicode.h).
 *
 * Class lookups are a binary search over the generated range tables (about 700 letter ranges, so ten probes),
 * with a table for ASCII, which is most of what real prompts contain.
 */
#include "llm/unicode.h"

#include <stdbool.h>

uint32_t llm_utf8_decode(const char *str, size_t len, size_t *n)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    if (c < 0x80) {
        *n = 1;
        return c;
    }
    size_t need;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
        need = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        need = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        need = 4;
        cp = c & 0x07;
    } else {
        /* A continuation byte or 0xF8..0xFF cannot start a character. */
        *n = 1;
        return LLM_CPT_REPLACEMENT;
    }
    if (need > len) {
        *n = 1;
        return LLM_CPT_REPLACEMENT;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *n = 1;
            return LLM_CPT_REPLACEMENT;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp > 0x10FFFF) {
        /* Beyond Unicode: treated like any other undecodable byte. */
        *n = 1;
        return LLM_CPT_REPLACEMENT;
    }
    *n = need;
    return cp;
}

size_t llm_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | ((cp >> 18) & 0x07));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool in_ranges(const struct llm_unicode_range *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static bool is_whitespace(uint32_t cp)
{
    /* The White_Space property: few enough to list. */
    if (cp >= 0x09 && cp <= 0x0D) return true;
    if (cp >= 0x2000 && cp <= 0x200A) return true;
    switch (cp) {
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return false;
    }
}

unsigned llm_unicode_flags(uint32_t cp)
{
    if (cp < 0x80) {
        unsigned f = LLM_CPT_VALID;
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) f |= LLM_CPT_LETTER;
        if (cp >= '0' && cp <= '9') f |= LLM_CPT_NUMBER;
        if (is_whitespace(cp)) f |= LLM_CPT_WHITESPACE;
        return f;
    }
    if (cp > 0x10FFFF) return 0;
    unsigned f = LLM_CPT_VALID;
    if (in_ranges(llm_unicode_letters, llm_unicode_letters_n, cp)) f |= LLM_CPT_LETTER;
    if (in_ranges(llm_unicode_numbers, llm_unicode_numbers_n, cp)) f |= LLM_CPT_NUMBER;
    if (is_whitespace(cp)) f |= LLM_CPT_WHITESPACE;
    return f;
}
