/*
 * chat.h: chat formats: turning a list of messages into the exact prompt text a model was trained on.
 *
 * Formats are hand-written renderers of the common templates (no Jinja interpreter); the format is
 * detected from the model's tokenizer.chat_template text, then from its architecture and vocabulary. The
 * rendered text contains control tokens written out ("<start_of_turn>", "<|eot_id|>", ...), so it must be
 * tokenized with parse_special, and it does not start with BOS: the tokenizer adds that (llm_tokenize
 * with add_bos).
 *
 *   GEMMA   <start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n
 *           <start_of_turn>model\n{assistant}<end_of_turn>\n
 *           (no system role: system text joins the next user turn; contents are trimmed)
 *   LLAMA3  <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>   (contents trimmed)
 *   CHATML  <|im_start|>{role}\n{content}<|im_end|>\n
 *   LLAMA2  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 *           (contents trimmed)
 * With add_assistant the text ends with the opening of an assistant turn ("<start_of_turn>model\n",
 * "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|im_start|>assistant\n"; LLAMA2 needs nothing).
 */
#ifndef BANTER_LLM_CHAT_H
#define BANTER_LLM_CHAT_H

#include "banter.h"

#include <stdbool.h>
#include <stddef.h>

struct gguf_file;
struct llm_vocab;

enum llm_chat_format {
    LLM_CHAT_GEMMA = 1,
    LLM_CHAT_LLAMA3 = 2,
    LLM_CHAT_CHATML = 3,
    LLM_CHAT_LLAMA2 = 4,
};

/* Picks the format for a model: markers in tokenizer.chat_template ("<start_of_turn>", "<|start_header_id|>",
 * "<|im_start|>", "[INST]"), else the architecture (gemma* -> GEMMA; qwen* -> CHATML; llama -> LLAMA3 when
 * the vocabulary has "<|eot_id|>", CHATML when it has "<|im_start|>", else LLAMA2), else the vocabulary's
 * turn markers, else CHATML. arch may be NULL. Never fails. */
enum llm_chat_format llm_chat_detect(const struct gguf_file *f, const char *arch);

/* "gemma", "llama3", "chatml", "llama2" (static strings); "unknown" for other values. */
const char *llm_chat_format_name(enum llm_chat_format fmt);

/* The format with that name; 0 (BANTER_OK) or BANTER_ERR_NOT_FOUND. */
int llm_chat_format_from_name(const char *name, enum llm_chat_format *out);

/* Renders n messages (roles "system", "user", "assistant") into buf, NUL-terminated and truncated to len
 * bytes (buf may be NULL when len is 0). Returns the full length without the NUL, which may be >= len (call
 * again with a larger buffer), or -1 for an unknown role, a NULL role or content, or an unknown format. v may
 * be NULL; when given, LLAMA2 writes its BOS/EOS texts. Thread-safe. */
long llm_chat_render(enum llm_chat_format fmt, const struct llm_vocab *v, const banter_chat_message *msgs,
                     size_t n, bool add_assistant, char *buf, size_t len);

#endif
