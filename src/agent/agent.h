/*
 * agent.h: what the agent's files share: the public language-model handle, and the mapping from audio played
 * to text heard that barge-in uses.
 */
#ifndef BANTER_AGENT_H
#define BANTER_AGENT_H

#include "agent/agent_llm.h"

#include <stddef.h>

struct banter_llm {
    struct agent_llm be;
};

/* One synthesized piece of a reply: the byte span of the reply text it speaks and where its audio lies in the
 * reply's audio. n_samples is the piece's length so far (final once the synthesizer finished it). */
struct agent_span {
    size_t text_off, text_len;
    size_t sample_off, n_samples;
};

/* How many bytes of reply[0, len) a listener heard when `played` samples of the reply's audio had been played,
 * given the spans in audio order. Inside a span, the heard part is taken in proportion to the samples played
 * (speech runs at an even pace within a clause) and then rounded down to the end of the last whole word, so a
 * word cut off mid-way counts as not heard. Trailing whitespace is not counted. */
size_t agent_heard_len(const char *reply, size_t len, const struct agent_span *spans, size_t n_spans,
                       size_t played);

#endif
