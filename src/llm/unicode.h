/*
 * unicode.h: the little Unicode the tokenizers need: lenient UTF-8 decoding and encoding, and the character
 * classes (\p{L}, \p{N}, \s) that byte-level BPE pre-tokenizers split on.
 *
 * Decoding follows the reference tokenizers (llama.cpp's unicode_cpt_from_utf8) rather than strict UTF-8: a
 * lead byte announces the sequence length and the continuation bytes must be 10xxxxxx, but overlong forms and
 * surrogates are accepted. A byte that cannot start a sequence (or starts a truncated one, or one beyond
 * U+10FFFF) decodes as U+FFFD and consumes one byte, so every input decodes deterministically and tokenizes
 * like the reference does.
 *
 * The class tables are generated from UnicodeData.txt (Unicode 15.0) by scripts/gen_unicode_tables.py.
 */
#ifndef BANTER_LLM_UNICODE_H
#define BANTER_LLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

struct llm_unicode_range {
    uint32_t first, last; /* inclusive */
};

extern const struct llm_unicode_range llm_unicode_letters[];
extern const size_t llm_unicode_letters_n;
extern const struct llm_unicode_range llm_unicode_numbers[];
extern const size_t llm_unicode_numbers_n;

enum {
    LLM_CPT_LETTER = 1 << 0,     /* general category L* */
    LLM_CPT_NUMBER = 1 << 1,     /* general category N* */
    LLM_CPT_WHITESPACE = 1 << 2, /* the White_Space property (what \s matches) */
    LLM_CPT_VALID = 1 << 3,      /* a code point at all (<= U+10FFFF); every class above implies it */
};

#define LLM_CPT_REPLACEMENT 0xFFFDu

/* Decodes one code point from s[0..len) (len >= 1) and stores the bytes consumed (1..4) in *n. */
uint32_t llm_utf8_decode(const char *s, size_t len, size_t *n);

/* Length of the UTF-8 sequence a lead byte announces (1 for continuation and invalid bytes), clamped by the
 * caller to the bytes that remain. Used to cut text into characters the way SentencePiece does. */
static inline size_t llm_utf8_len(unsigned char c)
{
    static const unsigned char lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* Encodes cp (<= 0x1FFFFF) into out (4 bytes of room); returns the byte count. */
size_t llm_utf8_encode(uint32_t cp, char *out);

/* The LLM_CPT_* classes of a code point. */
unsigned llm_unicode_flags(uint32_t cp);

#endif
