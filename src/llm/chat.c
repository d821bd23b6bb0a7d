/*
 * chat.c: the chat formats of chat.h.
 *
 * Each renderer writes through one output helper that counts every byte and copies what fits, so the caller's
 * buffer-too-small protocol (return the needed length, call again) costs nothing special. Whitespace trimming
 * follows the templates: Gemma, Llama 3 and Llama 2 strip each content, ChatML keeps it verbatim.
 */
#include "llm/chat.h"

#include "gguf/gguf.h"
#include "llm/vocab.h"

#include <string.h>

struct out {
    char *buf;
    size_t cap; /* bytes available for text (the NUL excluded) */
    size_t n;   /* bytes the full text needs */
};

static void put(struct out *o, const char *s, size_t len)
{
    if (o->n < o->cap) {
        size_t k = o->cap - o->n < len ? o->cap - o->n : len;
        memcpy(o->buf + o->n, s, k);
    }
    o->n += len;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void put_trimmed(struct out *o, const char *s)
{
    size_t len = strlen(s), a = 0;
    while (a < len && is_space(s[a]))
        a++;
    while (len > a && is_space(s[len - 1]))
        len--;
    put(o, s + a, len - a);
}

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_BAD };

static enum role role_of(const banter_chat_message *m)
{
    if (!m->role || !m->content) return ROLE_BAD;
    if (strcmp(m->role, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(m->role, "user") == 0) return ROLE_USER;
    if (strcmp(m->role, "assistant") == 0) return ROLE_ASSISTANT;
    return ROLE_BAD;
}

static void render_gemma(struct out *o, const banter_chat_message *msgs, size_t n, bool add_assistant)
{
    /* Gemma has no system turn: system text opens the next user turn, separated by a blank line. */
    const char *system = NULL;
    for (size_t i = 0; i < n; i++) {
        enum role r = role_of(&msgs[i]);
        if (r == ROLE_SYSTEM) {
            system = msgs[i].content;
            continue;
        }
        puts_(o, r == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (system && r == ROLE_USER) {
            put_trimmed(o, system);
            puts_(o, "\n\n");
            system = NULL;
        }
        put_trimmed(o, msgs[i].content);
        puts_(o, "<end_of_turn>\n");
    }
    if (add_assistant) puts_(o, "<start_of_turn>model\n");
}

static void render_llama3(struct out *o, const banter_chat_message *msgs, size_t n, bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        puts_(o, "<|start_header_id|>");
        puts_(o, msgs[i].role);
        puts_(o, "<|end_header_id|>\n\n");
        put_trimmed(o, msgs[i].content);
        puts_(o, "<|eot_id|>");
    }
    if (add_assistant) puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(struct out *o, const banter_chat_message *msgs, size_t n, bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        puts_(o, "<|im_start|>");
        puts_(o, msgs[i].role);
        puts_(o, "\n");
        puts_(o, msgs[i].content);
        puts_(o, "<|im_end|>\n");
    }
    if (add_assistant) puts_(o, "<|im_start|>assistant\n");
}

static void render_llama2(struct out *o, const struct llm_vocab *v, const banter_chat_message *msgs, size_t n)
{
    /* Meta's reference: every exchange is "[INST] user [/INST] answer </s>", exchanges after the first start
     * with their own BOS (the first BOS comes from the tokenizer), and a system prompt sits inside the first
     * [INST]. */
    const char *bos = "<s>", *eos = "</s>";
    if (v) {
        const char *t = llm_vocab_token_text(v, llm_vocab_bos(v), NULL);
        if (t) bos = t;
        t = llm_vocab_token_text(v, llm_vocab_eos(v), NULL);
        if (t) eos = t;
    }
    bool in_turn = true;
    puts_(o, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        enum role r = role_of(&msgs[i]);
        if (!in_turn) {
            puts_(o, bos);
            puts_(o, "[INST] ");
            in_turn = true;
        }
        if (r == ROLE_SYSTEM) {
            puts_(o, "<<SYS>>\n");
            put_trimmed(o, msgs[i].content);
            puts_(o, "\n<</SYS>>\n\n");
        } else if (r == ROLE_USER) {
            put_trimmed(o, msgs[i].content);
            puts_(o, " [/INST]");
        } else {
            puts_(o, " ");
            put_trimmed(o, msgs[i].content);
            puts_(o, " ");
            puts_(o, eos);
            in_turn = false;
        }
    }
}

long llm_chat_render(enum llm_chat_format fmt, const struct llm_vocab *v, const banter_chat_message *msgs,
                     size_t n, bool add_assistant, char *buf, size_t len)
{
    if (n > 0 && !msgs) return -1;
    for (size_t i = 0; i < n; i++)
        if (role_of(&msgs[i]) == ROLE_BAD) return -1;
    struct out o = {buf, buf && len ? len - 1 : 0, 0};
    switch (fmt) {
    case LLM_CHAT_GEMMA:
        render_gemma(&o, msgs, n, add_assistant);
        break;
    case LLM_CHAT_LLAMA3:
        render_llama3(&o, msgs, n, add_assistant);
        break;
    case LLM_CHAT_CHATML:
        render_chatml(&o, msgs, n, add_assistant);
        break;
    case LLM_CHAT_LLAMA2:
        render_llama2(&o, v, msgs, n);
        break;
    default:
        return -1;
    }
    if (buf && len) buf[o.n < o.cap ? o.n : o.cap] = 0;
    return (long)o.n;
}

static const struct {
    enum llm_chat_format fmt;
    const char *name;
} names[] = {
    {LLM_CHAT_GEMMA, "gemma"},
    {LLM_CHAT_LLAMA3, "llama3"},
    {LLM_CHAT_CHATML, "chatml"},
    {LLM_CHAT_LLAMA2, "llama2"},
};

const char *llm_chat_format_name(enum llm_chat_format fmt)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].fmt == fmt) return names[i].name;
    return "unknown";
}

int llm_chat_format_from_name(const char *name, enum llm_chat_format *out)
{
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(names[i].name, name) == 0) {
            *out = names[i].fmt;
            return BANTER_OK;
        }
    }
    return BANTER_ERR_NOT_FOUND;
}

/* Whether any token of the file's vocabulary is exactly `text`. A linear scan, done once per model load and
 * only when the file has no chat template. */
static bool vocab_has(const struct gguf_file *f, const char *text)
{
    const struct gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || !kv->arr_strs) return false;
    size_t len = strlen(text);
    for (uint64_t i = 0; i < kv->arr_n; i++)
        if (kv->arr_strs[i].len == len && memcmp(kv->arr_strs[i].ptr, text, len) == 0) return true;
    return false;
}

static bool contains(const struct gguf_str *s, const char *needle)
{
    return s->ptr && memmem(s->ptr, (size_t)s->len, needle, strlen(needle)) != NULL;
}

enum llm_chat_format llm_chat_detect(const struct gguf_file *f, const char *arch)
{
    const struct gguf_kv *kv = f ? gguf_find(f, "tokenizer.chat_template") : NULL;
    if (kv && kv->type == GGUF_STRING) {
        if (contains(&kv->str, "<start_of_turn>")) return LLM_CHAT_GEMMA;
        if (contains(&kv->str, "<|start_header_id|>")) return LLM_CHAT_LLAMA3;
        if (contains(&kv->str, "<|im_start|>")) return LLM_CHAT_CHATML;
        if (contains(&kv->str, "[INST]")) return LLM_CHAT_LLAMA2;
    }
    if (arch && strncmp(arch, "gemma", 5) == 0) return LLM_CHAT_GEMMA;
    if (arch && strncmp(arch, "qwen", 4) == 0) return LLM_CHAT_CHATML;
    if (f && vocab_has(f, "<|eot_id|>")) return LLM_CHAT_LLAMA3;
    if (f && vocab_has(f, "<|im_start|>")) return LLM_CHAT_CHATML;
    if (f && vocab_has(f, "<start_of_turn>")) return LLM_CHAT_GEMMA;
    if (arch && strcmp(arch, "llama") == 0) return LLM_CHAT_LLAMA2;
    return LLM_CHAT_CHATML;
}
