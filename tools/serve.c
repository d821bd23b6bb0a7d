/*
 * serve.c: `banter serve`, the HTTP server with OpenAI-compatible speech routes.
 *
 * The server is not part of the public API yet, so this command (alone among the subcommands) includes the
 * internal server/server.h; it links the static library, which carries it. The recognizer is loaded once at
 * start (as a server should); if it cannot be loaded the server still runs, and transcriptions answer 503.
 * SIGINT and SIGTERM stop the event loop through srv_stop, which is async-signal-safe.
 */
#include "cli.h"
#include "server/server.h"

#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *USAGE =
    "usage: banter serve [-m MODEL.gguf | --llm-url URL] [--host H] [--port P] [--api-key K] [options]\n"
    "\n"
    "Runs Banter as a server: live voice conversations over the OpenAI Realtime API's WebSocket protocol, and\n"
    "OpenAI-compatible HTTP routes, so clients and SDKs written for OpenAI work by pointing their base URL at\n"
    "http://HOST:PORT/v1. One process holds every conversation; their language-model steps are batched into\n"
    "shared forward passes. Routes:\n"
    "\n"
    "  GET  /                         a web page that talks with Banter from the microphone\n"
    "  WS   /v1/realtime              realtime voice conversations (docs/realtime.md: events, formats, limits)\n"
    "  POST /v1/chat/completions      chat completions, whole or streamed (\"stream\": true, server-sent events)\n"
    "  POST /v1/audio/speech          JSON {\"input\", \"voice\", \"response_format\": \"wav\"|\"pcm\", \"speed\"}\n"
    "                                 -> 24 kHz 16-bit mono WAV or raw PCM. Voices: slt (default) and kal16\n"
    "                                 (Flite), any eSpeak NG voice; OpenAI's names (alloy, nova, ...) get slt\n"
    "  POST /v1/audio/transcriptions  multipart/form-data with a `file` field (WAV, FLAC or Ogg)\n"
    "  GET  /v1/models                the model list (one entry, \"banter\")\n"
    "  GET  /health                   {\"status\":\"ok\"}\n"
    "  GET  /metrics                  Prometheus metrics: sessions, turns, latency per stage, tokens, batches\n"
    "\n"
    "Without a language model the speech routes still work; realtime and chat answer 503.\n"
    "\n"
    "language model:\n"
    "  -m, --model FILE     GGUF model run in this process (gemma3 or llama architecture)\n"
    "      --llm-url URL    or an OpenAI-compatible server (llama.cpp server, vLLM, ...): http://host:port\n"
    "      --llm-model NAME the model name sent to that server (default \"default\")\n"
    "      --llm-key KEY    its API key (default: $BANTER_API_KEY, then $OPENAI_API_KEY)\n"
    "  -c, --ctx N          context positions per conversation (default 2048)\n"
    "  -t, --threads N      kernel threads (default: all cores)\n"
    "  -s, --instructions TEXT\n"
    "                       the conversations' default instructions (clients may set their own)\n"
    "server:\n"
    "  --host H             address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 = every\n"
    "                       interface)\n"
    "  --port P             TCP port (default 8080; 0 = any free port, printed at start)\n"
    "  --api-key K          require \"Authorization: Bearer K\" on every request (WebSocket clients may offer\n"
    "                       the subprotocol openai-insecure-api-key.K instead); set one before listening\n"
    "                       beyond 127.0.0.1\n"
    "  --origin URL         allow browsers on the web origin URL (or \"*\") to call the server (CORS and\n"
    "                       WebSocket); the server's own page is always allowed\n"
    "  --max-sessions N     realtime conversations at once (default 16); more are refused with 503\n"
    "  --max-message BYTES  largest WebSocket message (default 16777216); larger ones close the connection\n"
    "  --idle-timeout S     close a realtime connection that sends nothing for S seconds (default 600)\n"
    "  --workers N          threads computing HTTP responses (default 2)\n"
    "  --rt-workers N       threads handling realtime events (default 2)\n"
    "  -v, --verbose        log each request, connection and error\n"
    "\n"
    "Stop it with Ctrl-C (SIGINT) or SIGTERM.\n"
    "\n"
    "examples:\n"
    "  banter serve -m models/gemma-3-270m-it-Q8_0.gguf        then open http://127.0.0.1:8080/\n"
    "  curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
    "       -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'\n"
    "  curl -s localhost:8080/v1/audio/speech -H 'Content-Type: application/json' \\\n"
    "       -d '{\"input\":\"Hello from Banter.\"}' -o hello.wav\n"
    "  curl -s localhost:8080/v1/audio/transcriptions -F file=@hello.wav\n";

static struct srv *volatile running; /* read by the signal handler */

static void on_signal(int sig)
{
    (void)sig;
    if (running) srv_stop(running);
}

int cmd_serve(int argc, char **argv)
{
    struct srv_config cfg = {.port = 8080};
    bool verbose = false;
    banter_llm_config lc = banter_llm_config_default();
    lc.n_ctx = 2048;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--host")) {
            if (!(cfg.host = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--port")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--port", 0, 65535, &v)) return 2;
            cfg.port = (int)v;
        } else if (!strcmp(a, "--api-key")) {
            if (!(cfg.api_key = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--origin")) {
            if (!(cfg.allowed_origin = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--workers")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--workers", 1, 64, &v)) return 2;
            cfg.n_workers = (int)v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(lc.model = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--llm-url")) {
            if (!(lc.url = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--llm-model")) {
            if (!(lc.remote_model = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--llm-key")) {
            if (!(lc.api_key = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--ctx", 64, 1 << 20, &v)) return 2;
            lc.n_ctx = (int)v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--threads", 1, 1024, &v)) return 2;
            lc.n_threads = (int)v;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--instructions")) {
            if (!(cfg.instructions = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--max-sessions")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--max-sessions", 1, 4000, &v)) return 2;
            cfg.max_sessions = (int)v;
        } else if (!strcmp(a, "--max-message")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--max-message", 1024, 1L << 30, &v)) return 2;
            cfg.max_message = (size_t)v;
        } else if (!strcmp(a, "--idle-timeout")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--idle-timeout", 1, 86400, &v)) return 2;
            cfg.idle_timeout_s = (int)v;
        } else if (!strcmp(a, "--rt-workers")) {
            const char *s = cli_value(argc, argv, &i);
            if (!s || !cli_parse_int(s, "--rt-workers", 1, 64, &v)) return 2;
            cfg.rt_workers = (int)v;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "banter serve: unknown argument '%s' (see banter serve --help)\n", a);
            return 2;
        }
    }
    cli_log_init(verbose ? BANTER_LOG_DEBUG : BANTER_LOG_WARN);

    char err[512];
    banter_llm *llm = NULL;
    if (lc.model && lc.url) {
        fprintf(stderr, "banter serve: give either -m MODEL or --llm-url URL, not both\n");
        return 2;
    }
    if (lc.model || lc.url) {
        if (!lc.api_key && lc.url) lc.api_key = getenv("BANTER_API_KEY");
        if (!lc.api_key && lc.url) lc.api_key = getenv("OPENAI_API_KEY");
        /* One conversation per realtime session, plus one per HTTP worker for chat completions. */
        lc.n_sessions = (cfg.max_sessions ? cfg.max_sessions : 16) + (cfg.n_workers ? cfg.n_workers : 2);
        fprintf(stderr, "banter serve: loading the language model...\n");
        if (banter_llm_open(&lc, &llm, err, sizeof err)) {
            fprintf(stderr, "banter serve: %s\n", err);
            if (lc.model) cli_model_hint();
            return 1;
        }
        fprintf(stderr, "banter serve: language model: %s\n", banter_llm_describe(llm));
        cfg.llm = llm;
    } else {
        fprintf(stderr, "banter serve: no language model (-m MODEL.gguf or --llm-url URL): realtime and chat "
                        "completions will answer 503\n");
    }

    banter_asr *asr = NULL;
    banter_asr_config ac = banter_asr_config_default();
    if (banter_asr_open(&ac, &asr, err, sizeof err))
        fprintf(stderr, "banter serve: no speech recognizer (%s); transcriptions and realtime will answer 503\n", err);

    struct srv *s = NULL;
    if (srv_open(&cfg, asr, &s, err, sizeof err)) {
        fprintf(stderr, "banter serve: %s\n", err);
        banter_asr_close(asr);
        banter_llm_close(llm);
        return 1;
    }
    running = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    printf("listening on http://%s:%d\n", cfg.host ? cfg.host : "127.0.0.1", srv_port(s));
    fflush(stdout);
    int st = srv_run(s);

    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    running = NULL;
    srv_close(s);
    banter_asr_close(asr);
    banter_llm_close(llm);
    if (st) {
        fprintf(stderr, "banter serve: the event loop failed (%s)\n", banter_status_str(st));
        return 1;
    }
    fprintf(stderr, "banter serve: stopped\n");
    return 0;
}
