/*
 * chunker.h: cuts a streamed text (an LLM's token pieces) into clause-sized chunks for speech synthesis.
 *
 * Speech can start as soon as the first clause is complete, so the chunker emits a chunk the moment a clause
 * boundary is certain, and the first chunk of a reply may be short (two words are enough at a comma): that
 * chunk decides the reply's time to first audio. For the same reason a caller may end the first chunk after
 * first_max_words words (or first_max_bytes bytes) even where no punctuation came: the session does (five
 * words), so a reply that opens with a long sentence starts speaking early, at the price of a small pause in
 * its prosody. Later chunks are cut only where the pause is natural
 * (sentence ends, ; and :, commas once a clause is long enough), because every chunk is synthesized as its
 * own utterance and too many cuts make the prosody choppy.
 *
 * A boundary is punctuation followed by whitespace, so the chunker waits for the next piece before it cuts:
 * "3.5", "1,000" and "e.g.x" never cut, and abbreviations ("Dr.", "e.g.", "Mrs.") and single-letter initials
 * ("J. Smith") are recognized by the word before the dot. Closing quotes and brackets after the punctuation
 * stay with their clause. A newline ends a chunk (list items in model output often have no punctuation).
 * CJK full-width sentence ends (。！？) cut at once, since that script puts no space after them.
 *
 * Pieces may split a UTF-8 character; the pending text is kept byte for byte until a boundary, and a cut
 * never lands inside a character. A clause that grows past max_bytes without a boundary is cut at its last
 * space (or character boundary), so synthesis latency stays bounded. flush() emits what is left at the end of
 * the stream, dropping an incomplete trailing character.
 *
 * Storage is inside the struct (no allocation); a chunker is used by one thread at a time.
 */
#ifndef BANTER_TTS_CHUNKER_H
#define BANTER_TTS_CHUNKER_H

#include <stdbool.h>
#include <stddef.h>

#define TTS_CHUNKER_CAP 1024 /* bytes of pending text; max_bytes is clamped below this */

struct tts_chunker_config {
    int first_min_words;  /* the first chunk may end at any clause boundary once it has this many words; 0 = 2
                           */
    int comma_min_words;  /* later chunks end at a comma once they have this many words; 0 = 8 */
    int clause_min_words; /* later chunks end at ; or : once they have this many words; 0 = 4 */
    size_t max_bytes;     /* cut without a boundary beyond this many bytes; 0 = 300 */
    int first_max_words;  /* the first chunk ends after this many words even without a boundary; 0 = off */
    size_t first_max_bytes; /* ... or beyond this many bytes (at its last space); 0 = max_bytes */
};

/* One emitted chunk: text trimmed of surrounding whitespace, never empty. `offset` is the byte position of
 * text[0] in everything fed since init, so a caller can map the chunk back into its full text. */
struct tts_chunk {
    const char *text; /* borrowed: valid only during the callback */
    size_t len;
    size_t offset;
    int index; /* 0 for the first chunk since init */
};

/* Receives each chunk; returns nonzero to continue, 0 to stop (feed/flush then return BANTER_ERR_CANCELLED).
 */
typedef int (*tts_chunk_fn)(const struct tts_chunk *chunk, void *user);

struct tts_chunker {
    struct tts_chunker_config cfg;
    char buf[TTS_CHUNKER_CAP]; /* pending text: bytes [0, len) */
    size_t len;
    size_t base;   /* stream offset of buf[0] */
    int n_emitted; /* chunks emitted since init */
};

/* Prepares a chunker (cfg NULL = defaults). Caller-owned storage; nothing to free. */
void tts_chunker_init(struct tts_chunker *c, const struct tts_chunker_config *cfg);

/* Appends len bytes of text and emits every chunk that became complete. Returns 0, or BANTER_ERR_CANCELLED
 * when the callback asked to stop (the rest of this text is then dropped; init the chunker before reuse). */
int tts_chunker_feed(struct tts_chunker *c, const char *text, size_t len, tts_chunk_fn emit, void *user);

/* Emits the pending text as a final chunk (if it holds anything but whitespace) and empties the chunker.
 * Returns 0 or BANTER_ERR_CANCELLED. A new stream (the next reply) starts with tts_chunker_init. */
int tts_chunker_flush(struct tts_chunker *c, tts_chunk_fn emit, void *user);

#endif
