/*
 * synth.c: synthetic models. banter_model_synth writes a GGUF language model with random weights and the exact
 * file layout of a real architecture and shape, so that tests and benchmarks run at real size without a
 * download.
 *
 * What "exact layout" means here: the metadata keys, tensor names, shapes, types and packing that llama.cpp's
 * converter and quantizer produce for such a model. The reference files in ../shared/fixtures/llm were made that
 * way, and the tests compare against them. Choices a reader needs:
 *
 * - Weights are deterministic in the seed alone, not in the thread count: each tensor is cut into fixed chunks of
 *   rows, and each chunk draws from its own xoshiro256** stream seeded from (seed, tensor, chunk). Values are
 *   approximately normal: the sum of four 16-bit uniforms (Irwin-Hall), which needs no libm, so the bytes are the
 *   same on every machine, and has no outliers beyond 3.5 sigma that would distort a quantized block's scale.
 * - Scales keep activations O(1) through any depth, as in the fixtures: input projections (q, k, v, gate, up,
 *   llama's output) have std 1/sqrt(n_in), projections back into the residual stream (attn_output, ffn_down)
 *   0.5/sqrt(n_in); Gemma's embedding 1/sqrt(n_embd) (the model multiplies it by sqrt(n_embd)), Llama's 0.5;
 *   norm weights 1 + 0.1 N(0,1).
 * - Weight types follow llama.cpp: norms stay F32; the output matrix (token_embd when tied) of a Q4_0/Q4_K_M
 *   file is Q6_K; Q4_K_M puts Q6_K in attn_v and ffn_down of the layers its use_more_bits rule picks; a row
 *   length that is not a multiple of 256 cannot hold K-quants, so Q6_K falls back to Q8_0 and Q4_K to Q4_0
 *   (llama.cpp would pick Q5_0, which Banter does not compute with).
 * - The synthetic vocabulary is SentencePiece ("llama" model): control tokens, 256 byte tokens, single
 *   characters, then English words with every prefix of each word also a token, so that SentencePiece's
 *   pairwise merges always reach the whole word (the leading piece of a word can always absorb the next symbol).
 *   The 467-token size reproduces the fixtures' vocabulary exactly. Larger sizes add capitals, digits,
 *   punctuation, more words and word endings, then unique syllable fillers until the size is reached.
 * - The file is written to PATH.tmp and renamed, so a failure never leaves a partial model at PATH.
 */
#include "banter.h"

#include "core/core.h"
#include "core/pool.h"
#include "gguf/gguf.h"
#include "llm/synth.h"
#include "tensor/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------------
 * Shapes.
 */
struct synth_shape {
    const char *arch, *shape;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx, n_vocab;
    int window, pattern; /* gemma3 sliding-window attention */
    float rope_base, rope_base_swa, eps;
    bool tied_output;
};

static const struct synth_shape SHAPES[] = {
    {"gemma3", "tiny", 64, 4, 4, 2, 32, 128, 2048, 467, 16, 2, 1e6f, 1e4f, 1e-6f, true},
    {"gemma3", "270m", 640, 18, 4, 1, 256, 2048, 32768, 262144, 512, 6, 1e6f, 1e4f, 1e-6f, true},
    {"gemma3", "1b", 1152, 26, 4, 1, 256, 6912, 32768, 262144, 512, 6, 1e6f, 1e4f, 1e-6f, true},
    {"llama", "tiny", 64, 4, 4, 2, 32, 128, 2048, 467, 0, 0, 1e4f, 0, 1e-6f, false},
    {"llama", "1b", 2048, 16, 32, 8, 64, 8192, 131072, 128256, 0, 0, 5e5f, 0, 1e-5f, false},
};

struct synth_wtype {
    const char *name;
    uint32_t file_type; /* llama.cpp's llama_ftype */
    uint32_t matrix;    /* the type of most matrices */
};

static const struct synth_wtype WTYPES[] = {
    {"F32", 0, TENSOR_F32},   {"F16", 1, TENSOR_F16},   {"BF16", 32, TENSOR_BF16},
    {"Q8_0", 7, TENSOR_Q8_0}, {"Q4_0", 2, TENSOR_Q4_0}, {"Q4_K_M", 15, TENSOR_Q4_K},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------------------------
 * Random numbers: splitmix64 for seeding, xoshiro256** for streams.
 */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = seed;
    x ^= splitmix64(&x) + a * 0xD1B54A32D192ED03ull;
    x ^= splitmix64(&x) + b * 0x8CB92BA72F3D8DD7ull;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Approximately N(0,1): four 16-bit uniforms summed have mean 131070 and std sqrt(4 (65536^2 - 1) / 12). */
static inline float rng_normal(struct rng *r)
{
    uint64_t v = rng_next(r);
    int32_t sum = (int32_t)(v & 0xFFFF) + (int32_t)((v >> 16) & 0xFFFF) + (int32_t)((v >> 32) & 0xFFFF) +
                  (int32_t)(v >> 48);
    return (float)(sum - 131070) * (1.0f / 37837.23f);
}

/* ------------------------------------------------------------------------------------------------------------
 * Vocabulary.
 */

/* The fixtures' vocabulary after the control and byte tokens, in order. */
static const char *const BASE_WORDS =
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about "
    "out many then them these so some her would make like him into time has look two more write go see number no "
    "way could people my than first water been call who oil its now find long down day did get come made may part "
    "hello world yes please thank book table restaurant hotel train taxi ticket tomorrow today morning evening "
    "cheap expensive north south east west centre reservation night nights stay leave arrive cambridge london help "
    "weather voice";
static const char *const BASE_PIECES = "ing ed er ly es tion th he in an re on at en nd";

/* More English for the larger vocabularies, roughly by frequency. */
static const char *const MORE_WORDS =
    "i me a am hi hey okay ok sure thanks sorry good great fine well very much just also only even still again "
    "here where why because while after before since until over under between through during without within "
    "around against along across behind beyond near off onto upon toward towards per via yet though although "
    "whether either neither both few several most least any every another such same own too quite rather really "
    "always never often sometimes usually already soon later ago once twice almost enough maybe perhaps probably "
    "say says tell told ask asked answer think thought know knew known want wanted need needed give gave given "
    "take took taken put keep kept let begin began start started show showed try tried turn turned move moved "
    "live lived believe bring brought happen happened feel felt seem seemed become became leave left mean meant "
    "talk talked hear heard speak spoke spoken listen read run ran walk walked sit sat stand stood lose lost pay "
    "paid meet met include continue set learn learned change changed lead understand watch follow stop create "
    "add spend grow open close win offer remember love consider appear buy wait serve die send expect build "
    "fall cut reach kill remain suggest raise pass sell require report decide pull book booked booking "
    "is was be being been are were am do does done doing have having has had will would shall should can could "
    "may might must going gonna thing things something nothing anything everything someone anyone everyone "
    "man men woman women child children person family friend friends home house room rooms door car bus station "
    "airport flight plane city town street road place area country state world life year years month months "
    "week weeks hour hours minute minutes second seconds moment today tonight yesterday now then early late "
    "monday tuesday wednesday thursday friday saturday sunday january february march april june july august "
    "september october november december morning afternoon evening night noon midnight "
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand "
    "million first second third last next previous new old young big small large little long short high low "
    "hot cold warm cool nice bad better best worse worst easy hard free busy ready right wrong true false sure "
    "happy sad important possible different available open closed full empty clean quick slow fast "
    "food drink coffee tea breakfast lunch dinner menu price prices cost pounds dollars euros cheap moderate "
    "expensive italian chinese indian french british thai japanese mexican spanish korean vegetarian "
    "phone number address postcode email name names reference booking reservations guest guests parking wifi "
    "star stars rating type kind area centre center museum park college church theatre cinema hospital police "
    "attraction attractions entrance fee departure destination arrival leaving arriving travel journey trip "
    "question questions problem problems idea ideas reason way ways part parts system information data "
    "computer music song story game team group company business money job work school student students class "
    "teacher water air fire light sound voice word words sentence language english speech text message "
    "yes yeah no not don't can't won't i'm you're it's that's there's let's what's "
    "hello goodbye bye welcome excuse pardon please thanks thank you";
static const char *const MORE_PIECES =
    "s ing ed er ers est ly tion tions sion ment ments ness able ible ful less ous ive al ial ity ize ise ism ist "
    "ic ical ance ence ant ent ary ery ory age ship hood dom ward wise un re in im dis pre mis over under out "
    "th ch sh ph wh qu ck ng nt st sp tr pr br cr dr gr fr pl bl cl fl gl sl";
static const char *const PUNCT = ". , ! ? ' : ; - ( ) \" / & % $ # @ * + = < > [ ] _ ~ ` ^ | \\ { }";

struct vocab {
    char *text;           /* all token strings, NUL-separated */
    size_t text_len, text_cap;
    size_t *off;          /* [n] offsets into text */
    float *score;         /* [n] */
    int32_t *type;        /* [n] llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte */
    size_t n, cap;        /* cap = the vocabulary size asked for */
    uint32_t *table;      /* open-addressing set of token ids + 1, 0 = empty */
    size_t table_mask;
    int failed;           /* an allocation failed */
};

static uint64_t hash_str(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static int vocab_init(struct vocab *v, size_t n_vocab)
{
    memset(v, 0, sizeof *v);
    size_t tsize = 1;
    while (tsize < 2 * n_vocab) tsize <<= 1;
    v->cap = n_vocab;
    v->off = core_malloc(n_vocab * sizeof *v->off);
    v->score = core_malloc(n_vocab * sizeof *v->score);
    v->type = core_malloc(n_vocab * sizeof *v->type);
    v->table = core_calloc(tsize, sizeof *v->table);
    v->table_mask = tsize - 1;
    v->text_cap = n_vocab * 8;
    v->text = core_malloc(v->text_cap);
    if (!v->off || !v->score || !v->type || !v->table || !v->text) return BANTER_ERR_NOMEM;
    return 0;
}

static void vocab_deinit(struct vocab *v)
{
    core_free(v->text);
    core_free(v->table);
    core_free(v->type);
    core_free(v->score);
    core_free(v->off);
}

static bool vocab_full(const struct vocab *v)
{
    return v->n >= v->cap || v->failed;
}

/* Finds the slot of s: the slot holding it, or the empty slot where it would go. */
static size_t vocab_slot(const struct vocab *v, const char *s, size_t len)
{
    size_t i = (size_t)hash_str(s, len) & v->table_mask;
    while (v->table[i]) {
        const char *t = v->text + v->off[v->table[i] - 1];
        if (strlen(t) == len && !memcmp(t, s, len)) return i;
        i = (i + 1) & v->table_mask;
    }
    return i;
}

/* Adds a token unless present or the vocabulary is full. Normal tokens score -(id + 1), as in the fixtures:
 * earlier tokens are preferred merges. */
static void vocab_add(struct vocab *v, const char *s, size_t len, int32_t type)
{
    if (vocab_full(v)) return;
    size_t slot = vocab_slot(v, s, len);
    if (v->table[slot]) return;
    if (v->text_len + len + 1 > v->text_cap) {
        size_t cap = v->text_cap * 2 + len + 1;
        char *t = core_realloc(v->text, cap);
        if (!t) {
            v->failed = 1;
            return;
        }
        v->text = t;
        v->text_cap = cap;
    }
    memcpy(v->text + v->text_len, s, len);
    v->text[v->text_len + len] = 0;
    v->off[v->n] = v->text_len;
    v->text_len += len + 1;
    v->type[v->n] = type;
    v->score[v->n] = type == 1 ? -(float)(v->n + 1) : 0.0f;
    v->table[slot] = (uint32_t)(v->n + 1);
    v->n++;
}

static void vocab_add_str(struct vocab *v, const char *s, int32_t type)
{
    vocab_add(v, s, strlen(s), type);
}

/* "▁" (U+2581) marks a preceding space in SentencePiece pieces. */
#define SPM_SPACE "\xe2\x96\x81"

/* Adds piece (with "▁" in front when word_start) after every shorter prefix of it, so that merges can always
 * build it from the left. Prefixes are cut at UTF-8 character boundaries. */
static void vocab_add_closed(struct vocab *v, const char *piece, size_t len, bool word_start)
{
    char buf[128];
    size_t pre = word_start ? 3 : 0;
    if (len == 0 || len + pre >= sizeof buf) return;
    memcpy(buf, SPM_SPACE, pre);
    memcpy(buf + pre, piece, len);
    for (size_t i = 0; i < len; i++) {
        if (((uint8_t)piece[i] & 0xC0) == 0x80) continue; /* inside a character */
        size_t end = i + 1;
        while (end < len && ((uint8_t)piece[end] & 0xC0) == 0x80) end++;
        vocab_add(v, buf, pre + end, 1);
    }
}

/* Adds every space-separated item of list as a closed piece. */
static void vocab_add_list(struct vocab *v, const char *list, bool word_start, bool capitalize)
{
    const char *p = list;
    while (*p && !vocab_full(v)) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        size_t len = (size_t)(e - p);
        if (len && len < 64) {
            char w[64];
            memcpy(w, p, len);
            if (capitalize && w[0] >= 'a' && w[0] <= 'z') w[0] = (char)(w[0] - 'a' + 'A');
            vocab_add_closed(v, w, len, word_start);
        }
        p = e;
    }
}

/* Adds every space-separated item of list as it is (no prefixes), with "▁" in front when word_start. */
static void vocab_add_plain(struct vocab *v, const char *list, bool word_start)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        size_t len = (size_t)(e - p);
        if (len && len < 60) {
            char w[64];
            memcpy(w, SPM_SPACE, 3);
            memcpy(w + 3, p, len);
            vocab_add(v, word_start ? w : w + 3, word_start ? len + 3 : len, 1);
        }
        p = e;
    }
}

/* Unique pronounceable fillers: consonant-vowel syllables, in a scrambled but fixed order. */
static void vocab_add_fillers(struct vocab *v)
{
    static const char cons[] = "bcdfghjklmnprstvwyz", vow[] = "aeiou";
    const uint64_t n_syl = (sizeof cons - 1) * (sizeof vow - 1); /* 95, coprime with the multiplier below */
    for (int n_s = 2; n_s <= 4 && !vocab_full(v); n_s++) {
        uint64_t total = 1;
        for (int i = 0; i < n_s; i++) total *= n_syl;
        for (uint64_t k = 0; k < total && !vocab_full(v); k++) {
            uint64_t x = (k * 7919u) % total;
            char w[16];
            size_t len = 0;
            for (int i = 0; i < n_s; i++) {
                uint64_t s = x % n_syl;
                x /= n_syl;
                w[len++] = cons[s / (sizeof vow - 1)];
                w[len++] = vow[s % (sizeof vow - 1)];
            }
            vocab_add_closed(v, w, len, (k & 1) == 0);
        }
    }
}

/* Builds the synthetic vocabulary of n_vocab tokens. Gemma's control tokens for gemma3, Llama 2's otherwise. */
static int vocab_build(struct vocab *v, size_t n_vocab, bool gemma)
{
    int rc = vocab_init(v, n_vocab);
    if (rc) return rc;
    if (gemma) {
        vocab_add_str(v, "<pad>", 3);
        vocab_add_str(v, "<eos>", 3);
        vocab_add_str(v, "<bos>", 3);
        vocab_add_str(v, "<unk>", 2);
        vocab_add_str(v, "<start_of_turn>", 3);
        vocab_add_str(v, "<end_of_turn>", 3);
    } else {
        vocab_add_str(v, "<unk>", 2);
        vocab_add_str(v, "<s>", 3);
        vocab_add_str(v, "</s>", 3);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        vocab_add_str(v, s, 6);
    }
    /* The fixtures' pieces, in their order. */
    vocab_add_str(v, SPM_SPACE, 1);
    for (char c = 'a'; c <= 'z'; c++) {
        char s[4] = {0};
        memcpy(s, SPM_SPACE, 3);
        s[3] = c;
        vocab_add(v, s, 4, 1);
    }
    for (char c = 'a'; c <= 'z'; c++) vocab_add(v, &c, 1, 1);
    vocab_add_list(v, ". , ! ? '", false, false);
    vocab_add_plain(v, BASE_WORDS, true);
    vocab_add_plain(v, BASE_PIECES, false);
    /* What larger vocabularies add: capitals, digits and punctuation, then words with their prefixes. */
    for (char c = 'A'; c <= 'Z'; c++) {
        char s[4];
        memcpy(s, SPM_SPACE, 3);
        s[3] = c;
        vocab_add(v, s, 4, 1);
    }
    for (char c = 'A'; c <= 'Z'; c++) vocab_add(v, &c, 1, 1);
    for (char c = '0'; c <= '9'; c++) vocab_add(v, &c, 1, 1);
    vocab_add_list(v, PUNCT, false, false);
    vocab_add_list(v, PUNCT, true, false);
    vocab_add_list(v, BASE_WORDS, true, false);
    vocab_add_list(v, MORE_WORDS, true, false);
    vocab_add_list(v, BASE_WORDS, true, true);
    vocab_add_list(v, MORE_WORDS, true, true);
    vocab_add_list(v, BASE_PIECES, false, false);
    vocab_add_list(v, MORE_PIECES, false, false);
    vocab_add_list(v, MORE_WORDS, false, false);
    vocab_add_fillers(v);
    if (v->failed) return BANTER_ERR_NOMEM;
    BANTER_ASSERT(v->n == n_vocab);
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------
 * Weights.
 */
#define CHUNK_VALUES 65536 /* values per random stream; fixed, so bytes do not depend on the thread count */

struct fill_job {
    uint32_t type;
    int64_t ne0, n_rows;
    int64_t rows_per_chunk, n_chunks;
    size_t row_bytes;
    float mean, std;
    uint64_t seed, tensor_id;
    uint8_t *out;
    float **scratch; /* [nth][rows_per_chunk * ne0] */
};

static void fill_chunk(const struct fill_job *j, int64_t c, float *x)
{
    int64_t r0 = c * j->rows_per_chunk;
    int64_t rows = j->n_rows - r0 < j->rows_per_chunk ? j->n_rows - r0 : j->rows_per_chunk;
    int64_t n = rows * j->ne0;
    struct rng r;
    rng_seed(&r, j->seed, j->tensor_id, (uint64_t)c);
    for (int64_t i = 0; i < n; i++) x[i] = j->mean + j->std * rng_normal(&r);
    uint8_t *dst = j->out + (size_t)r0 * j->row_bytes;
    switch (j->type) {
    case TENSOR_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    case TENSOR_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = tensor_f32_to_f16(x[i]);
        break;
    case TENSOR_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = tensor_f32_to_bf16(x[i]);
        break;
    default:
        tensor_quantize(j->type, x, dst, n);
        break;
    }
}

static void fill_worker(void *arg, int ith, int nth)
{
    const struct fill_job *j = arg;
    for (int64_t c = ith; c < j->n_chunks; c += nth) fill_chunk(j, c, j->scratch[ith]);
}

struct synth {
    const struct synth_shape *sh;
    const struct synth_wtype *wt;
    uint64_t seed;
    int64_t n_vocab;
    struct gguf_writer *w;
    struct pool *pool;
    float **scratch;
    int nth;
    uint64_t n_tensors;
    uint8_t *buf;      /* reused output buffer */
    size_t buf_cap;
    char *err;
    size_t err_len;
};

/* Adds one tensor of random values (2-D when ne1 > 1). */
static int add_tensor(struct synth *s, const char *name, uint32_t type, int64_t ne0, int64_t ne1, float mean,
                      float std)
{
    size_t row_bytes = tensor_row_size(type, ne0), bytes;
    BANTER_ASSERT(row_bytes > 0);
    if (core_mul_overflow(row_bytes, (size_t)ne1, &bytes)) return BANTER_ERR_NOMEM;
    if (bytes > s->buf_cap) {
        core_free(s->buf);
        s->buf = core_malloc(bytes);
        s->buf_cap = s->buf ? bytes : 0;
        if (!s->buf) {
            core_errf(s->err, s->err_len, "synth: out of memory for tensor %s (%zu bytes)", name, bytes);
            return BANTER_ERR_NOMEM;
        }
    }
    int64_t rows_per_chunk = ne0 >= CHUNK_VALUES ? 1 : CHUNK_VALUES / ne0;
    struct fill_job j = {
        .type = type,
        .ne0 = ne0,
        .n_rows = ne1,
        .rows_per_chunk = rows_per_chunk,
        .n_chunks = (ne1 + rows_per_chunk - 1) / rows_per_chunk,
        .row_bytes = row_bytes,
        .mean = mean,
        .std = std,
        .seed = s->seed,
        .tensor_id = s->n_tensors++,
        .out = s->buf,
        .scratch = s->scratch,
    };
    if (s->pool && j.n_chunks > 1)
        pool_run(s->pool, fill_worker, &j);
    else
        fill_worker(&j, 0, 1);
    int64_t ne[2] = {ne0, ne1};
    int rc = gguf_writer_add_tensor(s->w, name, type, ne1 > 1 ? 2 : 1, ne, s->buf);
    if (rc) core_errf(s->err, s->err_len, "synth: cannot add tensor %s: %s", name, banter_status_str(rc));
    return rc;
}

static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type llama.cpp would give a matrix whose rows have ne0 values, with K-quant fallbacks for short rows. */
static uint32_t fit_type(uint32_t type, int64_t ne0)
{
    if (ne0 % 256 == 0) return type;
    if (type == TENSOR_Q6_K) return TENSOR_Q8_0;
    if (type == TENSOR_Q4_K) return TENSOR_Q4_0;
    return type;
}

/* The output matrix of a quantized file (llama.cpp: Q6_K unless the file is Q8_0 or wider). */
static uint32_t output_type(const struct synth_wtype *wt, int64_t ne0)
{
    if (wt->matrix == TENSOR_Q4_0 || wt->matrix == TENSOR_Q4_K) return fit_type(TENSOR_Q6_K, ne0);
    return wt->matrix;
}

static int add_weights(struct synth *s)
{
    const struct synth_shape *sh = s->sh;
    const bool gemma = !strcmp(sh->arch, "gemma3");
    const int64_t E = sh->n_embd, F = sh->n_ff, Q = (int64_t)sh->n_head * sh->head_dim,
                  KV = (int64_t)sh->n_head_kv * sh->head_dim, V = s->n_vocab;
    const uint32_t mat = s->wt->matrix;
    const bool q4km = mat == TENSOR_Q4_K;
    const float ns = 0.1f; /* std of norm weights around 1 */
    int rc;

    uint32_t embd_type = sh->tied_output ? output_type(s->wt, E) : fit_type(mat, E);
    float embd_std = gemma ? 1.0f / sqrtf((float)E) : 0.5f;
    if ((rc = add_tensor(s, "token_embd.weight", embd_type, E, V, 0, embd_std))) return rc;

    for (int i = 0; i < sh->n_layer; i++) {
        char name[64];
        uint32_t vt = q4km && use_more_bits(i, sh->n_layer) ? TENSOR_Q6_K : mat;
        uint32_t dt = vt;
#define T(suffix, type, ne0, ne1, mean, std)                                                                      \
    do {                                                                                                          \
        snprintf(name, sizeof name, "blk.%d." suffix ".weight", i);                                               \
        if ((rc = add_tensor(s, name, (ne1) > 1 ? fit_type(type, ne0) : TENSOR_F32, ne0, ne1, mean, std)))       \
            return rc;                                                                                            \
    } while (0)
        T("attn_norm", TENSOR_F32, E, 1, 1, ns);
        T("attn_q", mat, E, Q, 0, 1.0f / sqrtf((float)E));
        T("attn_k", mat, E, KV, 0, 1.0f / sqrtf((float)E));
        T("attn_v", vt, E, KV, 0, 1.0f / sqrtf((float)E));
        T("attn_output", mat, Q, E, 0, 0.5f / sqrtf((float)Q));
        T("ffn_norm", TENSOR_F32, E, 1, 1, ns);
        T("ffn_gate", mat, E, F, 0, 1.0f / sqrtf((float)E));
        T("ffn_up", mat, E, F, 0, 1.0f / sqrtf((float)E));
        T("ffn_down", dt, F, E, 0, 0.5f / sqrtf((float)F));
        if (gemma) {
            T("attn_q_norm", TENSOR_F32, sh->head_dim, 1, 1, ns);
            T("attn_k_norm", TENSOR_F32, sh->head_dim, 1, 1, ns);
            T("post_attention_norm", TENSOR_F32, E, 1, 1, ns);
            T("post_ffw_norm", TENSOR_F32, E, 1, 1, ns);
        }
#undef T
    }
    if ((rc = add_tensor(s, "output_norm.weight", TENSOR_F32, E, 1, 1, ns))) return rc;
    if (!sh->tied_output &&
        (rc = add_tensor(s, "output.weight", output_type(s->wt, E), E, V, 0, 1.0f / sqrtf((float)E))))
        return rc;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------
 * Metadata.
 */
static int set_hparams(struct synth *s)
{
    const struct synth_shape *sh = s->sh;
    struct gguf_writer *w = s->w;
    char key[96], name[96];
    int rc = 0;
#define K(suffix) (snprintf(key, sizeof key, "%s." suffix, sh->arch), key)
    snprintf(name, sizeof name, "synthetic-%s-%s-seed%llu", sh->arch, sh->shape, (unsigned long long)s->seed);
    rc |= gguf_writer_set_str(w, "general.architecture", sh->arch);
    rc |= gguf_writer_set_str(w, "general.name", name);
    rc |= gguf_writer_set_u32(w, "general.alignment", 32);
    rc |= gguf_writer_set_u32(w, K("context_length"), (uint32_t)sh->n_ctx);
    rc |= gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)sh->n_embd);
    rc |= gguf_writer_set_u32(w, K("block_count"), (uint32_t)sh->n_layer);
    rc |= gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)sh->n_ff);
    rc |= gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)sh->n_head);
    rc |= gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)sh->n_head_kv);
    rc |= gguf_writer_set_u32(w, K("attention.key_length"), (uint32_t)sh->head_dim);
    rc |= gguf_writer_set_u32(w, K("attention.value_length"), (uint32_t)sh->head_dim);
    rc |= gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), sh->eps);
    rc |= gguf_writer_set_f32(w, K("rope.freq_base"), sh->rope_base);
    if (!strcmp(sh->arch, "gemma3")) {
        rc |= gguf_writer_set_u32(w, K("attention.sliding_window"), (uint32_t)sh->window);
        rc |= gguf_writer_set_u32(w, K("attention.sliding_window_pattern"), (uint32_t)sh->pattern);
        rc |= gguf_writer_set_f32(w, K("rope.freq_base_swa"), sh->rope_base_swa);
    } else {
        rc |= gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)sh->head_dim);
    }
#undef K
    return rc ? BANTER_ERR_NOMEM : 0;
}

int llm_synth_vocab(struct gguf_writer *w, size_t n_vocab, bool gemma)
{
    if (n_vocab < 467 || n_vocab > (1u << 24)) return BANTER_ERR_INVALID_ARG;
    struct vocab v;
    int rc = vocab_build(&v, n_vocab, gemma);
    struct gguf_str *strs = rc ? NULL : core_malloc(v.n * sizeof *strs);
    if (!rc && !strs) rc = BANTER_ERR_NOMEM;
    if (!rc) {
        for (size_t i = 0; i < v.n; i++) strs[i] = (struct gguf_str){v.text + v.off[i], strlen(v.text + v.off[i])};
        rc |= gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
        if (!gemma) rc |= gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
        rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, v.n);
        rc |= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, v.score, v.n);
        rc |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, v.type, v.n);
        rc |= gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", gemma ? 2 : 1);
        rc |= gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", gemma ? 1 : 2);
        rc |= gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", gemma ? 3 : 0);
        if (gemma) rc |= gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
        rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
        rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
        if (rc) rc = BANTER_ERR_NOMEM;
    }
    core_free(strs);
    vocab_deinit(&v);
    return rc;
}

/* Copies every tokenizer.* entry of another GGUF file and takes its vocabulary size. */
static int copy_vocab(struct synth *s, const char *path)
{
    struct gguf_file *f = NULL;
    char msg[256];
    int rc = gguf_open(path, &f, msg, sizeof msg);
    if (rc) {
        core_errf(s->err, s->err_len, "synth: cannot read the vocabulary file '%s': %s", path, msg);
        return rc;
    }
    const struct gguf_kv *tokens = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING);
    if (!tokens || tokens->arr_n == 0 || tokens->arr_n > INT32_MAX) {
        core_errf(s->err, s->err_len, "synth: '%s' has no tokenizer.ggml.tokens array of strings", path);
        gguf_close(f);
        return BANTER_ERR_FORMAT;
    }
    s->n_vocab = (int64_t)tokens->arr_n;
    for (uint64_t i = 0; i < f->n_kv && !rc; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10)) {
            rc = gguf_writer_copy_kv(s->w, kv);
            if (rc)
                core_errf(s->err, s->err_len, "synth: cannot copy %.*s from '%s': %s", (int)kv->key.len,
                          kv->key.ptr, path, banter_status_str(rc));
        }
    }
    gguf_close(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------
 * Entry point.
 */
static const char *or_default(const char *s, const char *def)
{
    return s && *s ? s : def;
}

BANTER_API banter_status banter_model_synth(const banter_synth_config *cfg, const char *path, char *err,
                                            size_t err_len)
{
    banter_synth_config c = cfg ? *cfg : (banter_synth_config){0};
    const char *arch = or_default(c.arch, "gemma3"), *shape = or_default(c.shape, "tiny"),
               *type = or_default(c.weight_type, "Q8_0");
    if (!path || !*path) {
        core_errf(err, err_len, "synth: no output path given");
        return BANTER_ERR_INVALID_ARG;
    }
    if (strcmp(arch, "gemma3") && strcmp(arch, "llama")) {
        core_errf(err, err_len, "synth: unknown architecture '%s' (choose gemma3 or llama)", arch);
        return BANTER_ERR_INVALID_ARG;
    }
    struct synth s = {.seed = c.seed ? c.seed : 1, .err = err, .err_len = err_len};
    for (size_t i = 0; i < N_ELEMS(SHAPES); i++)
        if (!strcmp(SHAPES[i].arch, arch) && !strcmp(SHAPES[i].shape, shape)) s.sh = &SHAPES[i];
    if (!s.sh) {
        core_errf(err, err_len, "synth: unknown shape '%s' for %s (choose %s)", shape, arch,
                  strcmp(arch, "gemma3") ? "tiny or 1b" : "tiny, 270m or 1b");
        return BANTER_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < N_ELEMS(WTYPES); i++)
        if (!strcmp(WTYPES[i].name, type)) s.wt = &WTYPES[i];
    if (!s.wt) {
        core_errf(err, err_len, "synth: unknown weight type '%s' (choose F32, F16, BF16, Q8_0, Q4_0 or Q4_K_M)",
                  type);
        return BANTER_ERR_INVALID_ARG;
    }
    s.n_vocab = s.sh->n_vocab;

    char *tmp = NULL;
    size_t tmp_len = strlen(path) + 5;
    int rc = BANTER_ERR_NOMEM;
    double t0 = core_time_ms();
    core_errf(err, err_len, "synth: out of memory");

    tmp = core_malloc(tmp_len);
    if (!tmp) goto fail_tmp;
    snprintf(tmp, tmp_len, "%s.tmp", path);
    s.w = gguf_writer_new();
    if (!s.w) goto fail_writer;
    s.pool = pool_open(0);
    s.nth = s.pool ? pool_n_threads(s.pool) : 1;
    s.scratch = core_calloc((size_t)s.nth, sizeof *s.scratch);
    if (!s.scratch) goto fail_scratch;
    {
        /* A chunk holds at most CHUNK_VALUES values or one row, whichever is more. */
        int64_t widest = s.sh->n_ff > s.sh->n_embd ? s.sh->n_ff : s.sh->n_embd;
        int64_t q = (int64_t)s.sh->n_head * s.sh->head_dim;
        if (q > widest) widest = q;
        size_t n = widest > CHUNK_VALUES ? (size_t)widest : CHUNK_VALUES;
        for (int i = 0; i < s.nth; i++)
            if (!(s.scratch[i] = core_malloc(n * sizeof(float)))) goto fail_fill;
    }

    if ((rc = set_hparams(&s))) goto fail_fill;
    if (c.vocab_from && *c.vocab_from) {
        if ((rc = copy_vocab(&s, c.vocab_from))) goto fail_fill;
    } else if ((rc = llm_synth_vocab(s.w, (size_t)s.n_vocab, !strcmp(arch, "gemma3")))) {
        core_errf(err, err_len, "synth: cannot build the vocabulary: %s", banter_status_str(rc));
        goto fail_fill;
    }
    if (gguf_writer_set_u32(s.w, "general.quantization_version", 2) ||
        gguf_writer_set_u32(s.w, "general.file_type", s.wt->file_type)) {
        rc = BANTER_ERR_NOMEM;
        goto fail_fill;
    }
    if ((rc = add_weights(&s))) goto fail_fill;
    core_free(s.buf);
    s.buf = NULL;
    double t1 = core_time_ms();

    if ((rc = gguf_writer_write(s.w, tmp, err, err_len))) goto fail_fill;
    if (rename(tmp, path) != 0) {
        core_errf(err, err_len, "synth: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        rc = BANTER_ERR_IO;
        remove(tmp);
        goto fail_fill;
    }
    core_info("synth: %s %s %s (vocabulary %lld, seed %llu): weights in %.0f ms, written in %.0f ms", arch, shape,
              type, (long long)s.n_vocab, (unsigned long long)s.seed, t1 - t0, core_time_ms() - t1);
    if (err && err_len) err[0] = 0;
    rc = BANTER_OK;

fail_fill:
    for (int i = 0; i < s.nth; i++) core_free(s.scratch[i]);
    core_free(s.scratch);
    core_free(s.buf);
fail_scratch:
    pool_close(s.pool);
    gguf_writer_free(s.w);
fail_writer:
    core_free(tmp);
fail_tmp:
    return rc;
}
