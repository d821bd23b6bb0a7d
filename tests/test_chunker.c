/*
 * test_chunker.c: the clause chunker that cuts a streamed reply into pieces for speech synthesis.
 *
 *   1. Clause cutting: sentence ends always cut; the first chunk may end at a comma after two words; later
 *      chunks cut at commas only when long, at ; and : when moderately long.
 *   2. Abbreviations, initials, decimals, thousands separators, times, list numbers, ellipses and closing
 *      quotes do not cut (or cut in the right place).
 *   3. Streaming: the same text fed whole, byte by byte, and in random pieces gives the same chunks,
 * including text whose UTF-8 characters are split across pieces; offsets point back into the original text.
 *   4. Flush: the tail comes out at the end; an incomplete trailing character is dropped; whitespace-only
 *      text gives no chunk.
 *   5. Limits: a clause without punctuation is cut at a space once it reaches max_bytes; a text without any
 *      space is cut at a character boundary; newlines end chunks; the callback can stop the stream.
 */
#include "core/core.h"
#include "test.h"
#include "tts/chunker.h"

#define MAX_CHUNKS 64

struct collected {
    int n;
    char text[MAX_CHUNKS][TTS_CHUNKER_CAP + 1];
    size_t offset[MAX_CHUNKS];
    int stop_after; /* return 0 after this many chunks (0 = never) */
};

static int collect(const struct tts_chunk *chunk, void *user)
{
    struct collected *col = user;
    BANTER_ASSERT(col->n < MAX_CHUNKS);
    CHECK_INT_EQ(chunk->index, col->n);
    CHECK(chunk->len > 0);
    memcpy(col->text[col->n], chunk->text, chunk->len);
    col->text[col->n][chunk->len] = 0;
    col->offset[col->n] = chunk->offset;
    col->n++;
    return !(col->stop_after && col->n >= col->stop_after);
}

/* Feeds text in pieces of `piece` bytes (0 = whole), flushes, and collects the chunks. */
static void run(const char *text, size_t piece, const struct tts_chunker_config *cfg, struct collected *col)
{
    memset(col, 0, sizeof *col);
    struct tts_chunker c;
    tts_chunker_init(&c, cfg);
    size_t n = strlen(text);
    if (piece == 0) piece = n ? n : 1;
    for (size_t i = 0; i < n; i += piece) {
        size_t k = n - i < piece ? n - i : piece;
        CHECK_INT_EQ(tts_chunker_feed(&c, text + i, k, collect, col), 0);
    }
    CHECK_INT_EQ(tts_chunker_flush(&c, collect, col), 0);
}

/* Checks that text cuts into exactly the chunks in `want` (NULL-terminated), fed whole and byte by byte, and
 * that every chunk's offset points at its text in the input. */
static void expect_chunks(const char *text, const char *const *want)
{
    int n_want = 0;
    while (want[n_want])
        n_want++;
    size_t pieces[] = {0, 1, 3, 7};
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        struct collected col;
        run(text, pieces[p], NULL, &col);
        CHECK_INT_EQ(col.n, n_want);
        if (col.n != n_want) fprintf(stderr, "  text: \"%s\" (pieces of %zu)\n", text, pieces[p]);
        for (int i = 0; i < col.n && i < n_want; i++) {
            CHECK_STR_EQ(col.text[i], want[i]);
            CHECK(col.offset[i] + strlen(col.text[i]) <= strlen(text));
            CHECK(!memcmp(text + col.offset[i], col.text[i], strlen(col.text[i])));
        }
    }
}

static void test_clauses(void)
{
    expect_chunks("Hello there. How are you today? I am fine!",
                  (const char *[]){"Hello there.", "How are you today?", "I am fine!", NULL});
    /* The first chunk may be short at a comma; a later comma cuts only after eight words. */
    expect_chunks("Well, I think so, but let me check the schedule first, because it changes often.",
                  (const char *[]){"Well, I think so,",
                                   "but let me check the schedule first, because it changes often.", NULL});
    expect_chunks("Sure, the museum opens at nine, and the tickets cost twelve euros for adults, with "
                  "discounts for students.",
                  (const char *[]){"Sure, the museum opens at nine,",
                                   "and the tickets cost twelve euros for adults,",
                                   "with discounts for students.", NULL});
    /* One word before a comma is too short even for the first chunk. */
    expect_chunks("Yes, of course.", (const char *[]){"Yes, of course.", NULL});
    /* ; and : cut once a later clause has four words. */
    expect_chunks(
        "Okay then. Here is the plan: we leave at noon; you bring the map.",
        (const char *[]){"Okay then.", "Here is the plan:", "we leave at noon;", "you bring the map.", NULL});
    expect_chunks("Right. Note: it rains.", (const char *[]){"Right.", "Note: it rains.", NULL});
    expect_chunks("Hi!", (const char *[]){"Hi!", NULL});
}

static void test_not_boundaries(void)
{
    expect_chunks("Dr. Smith and Mrs. Jones met at 3.5 km, e.g. near the park. Then they left.",
                  (const char *[]){"Dr. Smith and Mrs. Jones met at 3.5 km,", "e.g. near the park.",
                                   "Then they left.", NULL});
    expect_chunks(
        "It costs 1,250.75 dollars at 10:30 today. J. R. R. Tolkien wrote it.",
        (const char *[]){"It costs 1,250.75 dollars at 10:30 today.", "J. R. R. Tolkien wrote it.", NULL});
    expect_chunks("The answer is 42. So there.", (const char *[]){"The answer is 42.", "So there.", NULL});
    expect_chunks("1. Preheat the oven. 2. Mix the flour.",
                  (const char *[]){"1. Preheat the oven.", "2. Mix the flour.", NULL});
    expect_chunks("Wait... what? Neither do I. OK.",
                  (const char *[]){"Wait...", "what?", "Neither do I.", "OK.", NULL});
    expect_chunks("He said \"stop.\" Then (quietly!) he left.",
                  (const char *[]){"He said \"stop.\"", "Then (quietly!)", "he left.", NULL});
    expect_chunks("Visit example.com/a.b or version 2.0.1 now. Done.",
                  (const char *[]){"Visit example.com/a.b or version 2.0.1 now.", "Done.", NULL});
}

static void test_utf8(void)
{
    /* "Café au lait… très bien. Ünïcödé, ça va “oui.” Fin" with multi-byte characters everywhere, including
     * the ellipsis and the closing quote. */
    const char *text = "Caf\xC3\xA9 au lait\xE2\x80\xA6 tr\xC3\xA8s bien. \xC3\x9Cn\xC3\xAF c\xC3\xB6"
                       "d\xC3\xA9, \xC3\xA7"
                       "a va \xE2\x80\x9Coui.\xE2\x80\x9D Fin";
    const char *want[] = {"Caf\xC3\xA9 au lait\xE2\x80\xA6", "tr\xC3\xA8s bien.",
                          "\xC3\x9Cn\xC3\xAF c\xC3\xB6"
                          "d\xC3\xA9, \xC3\xA7"
                          "a va \xE2\x80\x9Coui.\xE2\x80\x9D",
                          "Fin", NULL};
    expect_chunks(text, want);
    /* Every split point of a 4-byte character (an emoji) across two pieces. */
    const char *emoji = "Nice one \xF0\x9F\x98\x80 really. Next";
    for (size_t cut = 0; cut <= strlen(emoji); cut++) {
        struct collected col;
        memset(&col, 0, sizeof col);
        struct tts_chunker c;
        tts_chunker_init(&c, NULL);
        tts_chunker_feed(&c, emoji, cut, collect, &col);
        tts_chunker_feed(&c, emoji + cut, strlen(emoji) - cut, collect, &col);
        tts_chunker_flush(&c, collect, &col);
        CHECK_INT_EQ(col.n, 2);
        CHECK_STR_EQ(col.text[0], "Nice one \xF0\x9F\x98\x80 really.");
        CHECK_STR_EQ(col.text[1], "Next");
    }
    /* CJK sentence ends cut without a following space. */
    expect_chunks("\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82\xE5\x86\x8D\xE8\xA7\x81\xEF\xBC\x81",
                  (const char *[]){"\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82",
                                   "\xE5\x86\x8D\xE8\xA7\x81\xEF\xBC\x81", NULL});
}

static void test_flush(void)
{
    /* The stream ended inside a character: the partial bytes are dropped, the rest is kept. */
    struct collected col;
    run("It was fine \xE2\x80", 0, NULL, &col);
    CHECK_INT_EQ(col.n, 1);
    CHECK_STR_EQ(col.text[0], "It was fine");
    run("   \n\t  ", 0, NULL, &col);
    CHECK_INT_EQ(col.n, 0);
    run("", 0, NULL, &col);
    CHECK_INT_EQ(col.n, 0);
    /* No punctuation at all: everything comes out at flush. */
    run("no punctuation here", 1, NULL, &col);
    CHECK_INT_EQ(col.n, 1);
    CHECK_STR_EQ(col.text[0], "no punctuation here");
    /* Offsets keep counting across chunks: the second chunk starts after leading spaces. */
    run("  One two.   Three", 0, NULL, &col);
    CHECK_INT_EQ(col.n, 2);
    CHECK_INT_EQ(col.offset[0], 2);
    CHECK_INT_EQ(col.offset[1], 13);
}

static void test_limits(void)
{
    /* Newlines end chunks (lists without punctuation). */
    expect_chunks("Things to pack\n- a tent\n- two lamps\n\nThat is all",
                  (const char *[]){"Things to pack", "- a tent", "- two lamps", "That is all", NULL});

    struct tts_chunker_config cfg = {.max_bytes = 40};
    char text[600];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "word%02d ", i);
    struct collected col;
    run(text, 5, &cfg, &col);
    CHECK(col.n >= 7);
    size_t total = 0;
    for (int i = 0; i < col.n; i++) {
        CHECK(strlen(col.text[i]) <= 40);
        CHECK(col.text[i][strlen(col.text[i]) - 1] != ' ');
        total += strlen(col.text[i]) + 1;
    }
    CHECK_INT_EQ(total, n); /* every word came out exactly once */

    /* No spaces at all, with 2-byte characters: cuts land on character boundaries. */
    n = 0;
    for (int i = 0; i < 100; i++) {
        text[n++] = (char)0xC3;
        text[n++] = (char)0xA9;
    }
    text[n] = 0;
    run(text, 3, &cfg, &col);
    CHECK(col.n >= 5);
    total = 0;
    for (int i = 0; i < col.n; i++) {
        size_t len = strlen(col.text[i]);
        CHECK(len % 2 == 0);
        CHECK((unsigned char)col.text[i][0] == 0xC3);
        total += len;
    }
    CHECK_INT_EQ(total, 200);

    /* The callback stops the stream. */
    memset(&col, 0, sizeof col);
    col.stop_after = 1;
    struct tts_chunker c;
    tts_chunker_init(&c, NULL);
    CHECK_INT_EQ(tts_chunker_feed(&c, "One. Two. Three.", 16, collect, &col), BANTER_ERR_CANCELLED);
    CHECK_INT_EQ(col.n, 1);
}

/* The session's first-chunk limits: the first chunk ends after first_max_words words or first_max_bytes bytes
 * even without punctuation, and later chunks follow the normal rules. */
static void test_first_chunk_limits(void)
{
    struct tts_chunker_config cfg = {.first_max_words = 5, .first_max_bytes = 60};
    struct collected col;
    const char *text = "The capital of France is Paris and it has been for a very long time indeed.";
    for (size_t piece = 0; piece <= 7; piece++) {
        run(text, piece, &cfg, &col);
        CHECK_INT_EQ(col.n, 2);
        CHECK_STR_EQ(col.text[0], "The capital of France is");
        CHECK_STR_EQ(col.text[1], "Paris and it has been for a very long time indeed.");
        CHECK_INT_EQ(col.offset[1], 25);
    }
    /* Punctuation before the word limit still cuts first. */
    run("Sure! The capital of France is Paris.", 0, &cfg, &col);
    CHECK_INT_EQ(col.n, 2);
    CHECK_STR_EQ(col.text[0], "Sure!");
    /* Long words without spaces: the byte limit cuts at the last space, or inside the word. */
    run("Supercalifragilisticexpialidocious antidisestablishmentarianism floccinaucinihilipilification "
        "is long.", 4, &cfg, &col);
    CHECK(col.n >= 2);
    CHECK(strlen(col.text[0]) <= 60);
    CHECK_STR_EQ(col.text[0], "Supercalifragilisticexpialidocious");
    char word[200];
    memset(word, 'a', 150);
    word[150] = 0;
    run(word, 1, &cfg, &col);
    CHECK(col.n >= 2);
    CHECK_INT_EQ(strlen(col.text[0]), 60);
    /* Off by default. */
    run(text, 0, NULL, &col);
    CHECK_INT_EQ(col.n, 1);
}

int main(void)
{
    test_first_chunk_limits();
    test_clauses();
    test_not_boundaries();
    test_utf8();
    test_flush();
    test_limits();
    return test_finish("test_chunker");
}
