/*
 * llm_api.c: the public banter_llm handle: one of the agent's language-model backends (agent_llm.h), picked by
 * the config (a GGUF file for the native engine, or a URL for a remote server).
 */
#include "agent/agent_llm.h"
#include "agent/agent.h"
#include "core/core.h"

#include <string.h>

BANTER_API banter_llm_config banter_llm_config_default(void)
{
    banter_llm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.timeout_s = 30;
    cfg.n_sessions = 1;
    return cfg;
}

BANTER_API banter_status banter_llm_open(const banter_llm_config *cfg, banter_llm **out, char *err, size_t err_len)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    banter_llm_config defaults = banter_llm_config_default();
    if (!cfg) cfg = &defaults;
    bool has_model = cfg->model && *cfg->model;
    bool has_url = cfg->url && *cfg->url;
    if (has_model == has_url) {
        core_errf(err, err_len, has_model ? "give either a model file or a server URL, not both"
                                          : "no language model: give a GGUF model file or a server URL");
        return BANTER_ERR_INVALID_ARG;
    }
    if (cfg->n_ctx < 0 || cfg->n_sessions < 0 || cfg->n_threads < 0 || cfg->timeout_s < 0 ||
        cfg->n_sessions > 4096) {
        core_errf(err, err_len, "invalid language model settings (negative n_ctx, n_sessions, n_threads or "
                                "timeout, or more than 4096 sessions)");
        return BANTER_ERR_INVALID_ARG;
    }
    banter_llm *l = core_calloc(1, sizeof *l);
    if (!l) {
        core_errf(err, err_len, "out of memory");
        return BANTER_ERR_NOMEM;
    }
    int rc;
    if (has_model)
        rc = agent_llm_native_open(cfg->model, cfg->n_ctx, cfg->n_sessions, cfg->n_threads, &l->be, err, err_len);
    else
        rc = agent_llm_remote_open(cfg->url, cfg->remote_model, cfg->api_key, cfg->timeout_s, &l->be, err,
                                   err_len);
    if (rc) {
        core_free(l);
        return (banter_status)rc;
    }
    core_info("language model: %s", l->be.ops->describe(l->be.state));
    *out = l;
    return BANTER_OK;
}

BANTER_API void banter_llm_close(banter_llm *l)
{
    if (!l) return;
    l->be.ops->close(l->be.state);
    core_free(l);
}

BANTER_API const char *banter_llm_describe(const banter_llm *l)
{
    return l ? l->be.ops->describe(l->be.state) : "";
}
