/*
 * synth.h: internals of synthetic models (synth.c) that tests reach directly. The public entry point is
 * banter_model_synth in banter.h.
 */
#ifndef BANTER_LLM_SYNTH_H
#define BANTER_LLM_SYNTH_H

#include <stdbool.h>
#include <stddef.h>

struct gguf_writer;

/* Sets the tokenizer.* entries of the synthetic SentencePiece vocabulary of n_vocab tokens (at least 467) in w:
 * Gemma's control tokens (<pad> <eos> <bos> <unk> <start_of_turn> <end_of_turn>) when gemma, Llama 2's (<unk> <s>
 * </s>) otherwise, then 256 byte tokens, characters, English words with all their prefixes, and fillers.
 * Returns 0, BANTER_ERR_INVALID_ARG for a size outside 467 .. 2^24, or BANTER_ERR_NOMEM. */
int llm_synth_vocab(struct gguf_writer *w, size_t n_vocab, bool gemma);

#endif
