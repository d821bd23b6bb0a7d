/*
 * test_chat.c: chat formats.
 *
 *   1. Each format renders a system + user + assistant + user conversation exactly as the model's
 *      template does (expected strings written out by hand from the templates).
 *   2. The buffer protocol: a short buffer gets a truncated, NUL-terminated prefix and the full length;
 *      an unknown role gives -1.
 *   3. Format names and detection from a chat template, the architecture and the vocabulary (synthetic
 *      GGUF files written with the GGUF writer).
 *   4. With ../shared present: a Gemma prompt rendered and tokenized with the Gemma fixture's vocabulary
 *      puts the turn markers in as single control tokens.
 */
#include "banter.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "llm/chat.h"
#include "llm/vocab.h"
#include "test.h"

static const banter_chat_message conv[] = {
    {"system", "You are terse.\n"},
    {"user", " Hi there "},
    {"assistant", "Hello."},
    {"user", "Book a table"},
};
static const size_t n_conv = sizeof conv / sizeof conv[0];

static void check_render(enum llm_chat_format fmt, const banter_chat_message *msgs, size_t n, bool add,
                         const char *want)
{
    char buf[1024];
    long k = llm_chat_render(fmt, NULL, msgs, n, add, buf, sizeof buf);
    CHECK_INT_EQ(k, (long)strlen(want));
    CHECK_STR_EQ(buf, want);
}

static void test_formats(void)
{
    check_render(LLM_CHAT_GEMMA, conv, n_conv, true,
                 "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n"
                 "<start_of_turn>model\nHello.<end_of_turn>\n"
                 "<start_of_turn>user\nBook a table<end_of_turn>\n"
                 "<start_of_turn>model\n");
    check_render(LLM_CHAT_GEMMA, conv + 1, 1, false, "<start_of_turn>user\nHi there<end_of_turn>\n");
    check_render(LLM_CHAT_LLAMA3, conv, n_conv, true,
                 "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nBook a table<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_render(LLM_CHAT_CHATML, conv, n_conv, true,
                 "<|im_start|>system\nYou are terse.\n<|im_end|>\n"
                 "<|im_start|>user\n Hi there <|im_end|>\n"
                 "<|im_start|>assistant\nHello.<|im_end|>\n"
                 "<|im_start|>user\nBook a table<|im_end|>\n"
                 "<|im_start|>assistant\n");
    check_render(LLM_CHAT_CHATML, conv, n_conv, false,
                 "<|im_start|>system\nYou are terse.\n<|im_end|>\n"
                 "<|im_start|>user\n Hi there <|im_end|>\n"
                 "<|im_start|>assistant\nHello.<|im_end|>\n"
                 "<|im_start|>user\nBook a table<|im_end|>\n");
    check_render(LLM_CHAT_LLAMA2, conv, n_conv, true,
                 "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello. </s>"
                 "<s>[INST] Book a table [/INST]");
    /* No messages: only the assistant opening. */
    check_render(LLM_CHAT_GEMMA, NULL, 0, true, "<start_of_turn>model\n");
    check_render(LLM_CHAT_CHATML, NULL, 0, false, "");
}

static void test_buffer_protocol(void)
{
    char big[1024], small[10];
    long need = llm_chat_render(LLM_CHAT_CHATML, NULL, conv, n_conv, true, big, sizeof big);
    CHECK(need > 10);
    memset(small, 'x', sizeof small);
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_CHATML, NULL, conv, n_conv, true, small, sizeof small), need);
    CHECK_INT_EQ(small[9], 0);
    CHECK(memcmp(small, big, 9) == 0);
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_CHATML, NULL, conv, n_conv, true, NULL, 0), need);
    /* Exactly need bytes is one short (no room for the NUL); need + 1 fits. */
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_CHATML, NULL, conv, n_conv, true, big, (size_t)need), need);
    CHECK_INT_EQ((long)strlen(big), need - 1);
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_CHATML, NULL, conv, n_conv, true, big, (size_t)need + 1), need);
    CHECK_INT_EQ((long)strlen(big), need);

    banter_chat_message bad[] = {{"user", "hi"}, {"tool", "x"}};
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_GEMMA, NULL, bad, 2, true, big, sizeof big), -1);
    banter_chat_message null_content[] = {{"user", NULL}};
    CHECK_INT_EQ(llm_chat_render(LLM_CHAT_LLAMA3, NULL, null_content, 1, true, big, sizeof big), -1);
    CHECK_INT_EQ(llm_chat_render((enum llm_chat_format)99, NULL, conv, 1, true, big, sizeof big), -1);
}

static void test_names(void)
{
    enum llm_chat_format all[] = {LLM_CHAT_GEMMA, LLM_CHAT_LLAMA3, LLM_CHAT_CHATML, LLM_CHAT_LLAMA2};
    for (size_t i = 0; i < 4; i++) {
        enum llm_chat_format back = 0;
        CHECK_INT_EQ(llm_chat_format_from_name(llm_chat_format_name(all[i]), &back), 0);
        CHECK_INT_EQ(back, all[i]);
    }
    CHECK_STR_EQ(llm_chat_format_name(LLM_CHAT_GEMMA), "gemma");
    CHECK_STR_EQ(llm_chat_format_name((enum llm_chat_format)0), "unknown");
    enum llm_chat_format f;
    CHECK_INT_EQ(llm_chat_format_from_name("vicuna", &f), BANTER_ERR_NOT_FOUND);
}

/* Writes a GGUF with an optional chat template and a few tokens, and returns the detected format. */
static enum llm_chat_format detect(const char *tmpl, const char *arch, const char *const *tokens,
                                   size_t n_tokens)
{
    struct gguf_writer *w = gguf_writer_new();
    BANTER_ASSERT(w);
    if (arch) gguf_writer_set_str(w, "general.architecture", arch);
    if (tmpl) gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
    struct gguf_str strs[8];
    for (size_t i = 0; i < n_tokens; i++)
        strs[i] = (struct gguf_str){tokens[i], strlen(tokens[i])};
    if (n_tokens) gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n_tokens);
    char path[256], err[256];
    snprintf(path, sizeof path, "/tmp/banter_test_chat_%ld.gguf", (long)getpid());
    BANTER_ASSERT(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    struct gguf_file *f = NULL;
    BANTER_ASSERT(gguf_open(path, &f, err, sizeof err) == 0);
    enum llm_chat_format fmt = llm_chat_detect(f, arch);
    gguf_close(f);
    unlink(path);
    return fmt;
}

static void test_detect(void)
{
    static const char *const plain[] = {"<s>", "</s>", "a"};
    static const char *const l3[] = {"<|begin_of_text|>", "<|eot_id|>", "a"};
    static const char *const qw[] = {"<|im_start|>", "<|im_end|>", "a"};
    static const char *const gm[] = {"<bos>", "<start_of_turn>", "<end_of_turn>"};
    CHECK_INT_EQ(detect("{{ '<start_of_turn>' + role }}", "llama", plain, 3), LLM_CHAT_GEMMA);
    CHECK_INT_EQ(detect("{{ '<|start_header_id|>' }}", "gemma3", plain, 3), LLM_CHAT_LLAMA3);
    CHECK_INT_EQ(detect("{{ '<|im_start|>' + role }}", "llama", plain, 3), LLM_CHAT_CHATML);
    CHECK_INT_EQ(detect("{{ '[INST] ' + content }}", "llama", l3, 3), LLM_CHAT_LLAMA2);
    CHECK_INT_EQ(detect(NULL, "gemma3", plain, 3), LLM_CHAT_GEMMA);
    CHECK_INT_EQ(detect(NULL, "llama", plain, 3), LLM_CHAT_LLAMA2);
    CHECK_INT_EQ(detect(NULL, "llama", l3, 3), LLM_CHAT_LLAMA3);
    CHECK_INT_EQ(detect(NULL, "llama", qw, 3), LLM_CHAT_CHATML);
    CHECK_INT_EQ(detect(NULL, "qwen2", plain, 3), LLM_CHAT_CHATML);
    CHECK_INT_EQ(detect(NULL, "phi9", gm, 3), LLM_CHAT_GEMMA);
    CHECK_INT_EQ(detect(NULL, NULL, NULL, 0), LLM_CHAT_CHATML);
    CHECK_INT_EQ(llm_chat_detect(NULL, "gemma3"), LLM_CHAT_GEMMA);
}

static void test_gemma_fixture(void)
{
    char path[512];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", path, sizeof path)) return;
    struct gguf_file *f = NULL;
    char err[256];
    CHECK_INT_EQ(gguf_open(path, &f, err, sizeof err), 0);
    if (!f) return;
    CHECK_INT_EQ(llm_chat_detect(f, "gemma3"), LLM_CHAT_GEMMA);
    struct llm_vocab *v = NULL;
    CHECK_INT_EQ(llm_vocab_load(f, &v, err, sizeof err), 0);
    gguf_close(f);
    if (!v) return;
    char text[1024];
    long k = llm_chat_render(LLM_CHAT_GEMMA, v, conv, n_conv, true, text, sizeof text);
    CHECK(k > 0 && k < (long)sizeof text);
    int32_t toks[512];
    size_t n = 0;
    CHECK_INT_EQ(llm_tokenize(v, text, (size_t)k, true, true, toks, 512, &n), 0);
    int32_t sot = llm_vocab_find(v, "<start_of_turn>", 15), eot = llm_vocab_find(v, "<end_of_turn>", 13);
    int n_sot = 0, n_eot = 0;
    for (size_t i = 0; i < n; i++)
        n_sot += toks[i] == sot, n_eot += toks[i] == eot;
    CHECK_INT_EQ(toks[0], llm_vocab_bos(v));
    CHECK_INT_EQ(toks[1], sot);
    CHECK_INT_EQ(n_sot, 4);
    CHECK_INT_EQ(n_eot, 3);
    CHECK(llm_token_is_eog(v, eot));
    /* Rendering the tokens back with specials gives the text again, up to the space SentencePiece puts after
     * each control token. */
    char back[1024];
    CHECK(llm_detokenize(v, toks, n, true, back, sizeof back) > 0);
    CHECK(strstr(back, "<start_of_turn>") == back + strlen("<bos>"));
    llm_vocab_free(v);
}

int main(void)
{
    test_formats();
    test_buffer_protocol();
    test_names();
    test_detect();
    test_gemma_fixture();
    return test_finish("test_chat");
}
