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
#include <stdio.h>
#include <string.h>

static const char *USAGE =
    "usage: banter serve [--host H] [--port P] [--api-key K] [--origin URL] [--workers N] [-v]\n"
    "\n"
    "Runs an HTTP server that speaks a subset of OpenAI's audio API, so OpenAI clients and SDKs can use "
    "Banter's\n"
    "built-in speech engines by pointing their base URL at http://HOST:PORT/v1. Routes:\n"
    "\n"
    "  GET  /health                   {\"status\":\"ok\"}\n"
    "  GET  /v1/models                the model list (one entry, \"banter\")\n"
    "  POST /v1/audio/speech          JSON {\"input\": TEXT, \"voice\": V, \"response_format\": "
    "\"wav\"|\"pcm\",\n"
    "                                 \"speed\": 0.25-4.0} -> 24 kHz 16-bit mono WAV, or raw PCM (s16le) "
    "for\n"
    "                                 \"pcm\". Voices: slt (default) and kal16 (Flite), any eSpeak NG voice\n"
    "                                 (en-us, de, fr, ...); OpenAI's names (alloy, nova, ...) get slt.\n"
    "                                 Input is at most 4096 characters.\n"
    "  POST /v1/audio/transcriptions  multipart/form-data with a `file` field (WAV, FLAC or Ogg) and an\n"
    "                                 optional response_format (json, text, verbose_json) -> {\"text\": "
    "...}\n"
    "\n"
    "Errors come back as OpenAI does: {\"error\":{\"message\":...,\"type\":\"invalid_request_error\"}}.\n"
    "Request bodies are limited to 25 MiB. The realtime WebSocket API (/v1/realtime) is not there yet.\n"
    "\n"
    "options:\n"
    "  --host H        address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 = every "
    "interface)\n"
    "  --port P        TCP port (default 8080; 0 = any free port, printed at start)\n"
    "  --api-key K     require \"Authorization: Bearer K\" on every request (default: none; set one before\n"
    "                  listening beyond 127.0.0.1)\n"
    "  --origin URL    allow browsers on the web origin URL (or \"*\") to call the server (CORS)\n"
    "  --workers N     threads computing responses (default 2)\n"
    "  -v, --verbose   log each request and its status\n"
    "\n"
    "Stop it with Ctrl-C (SIGINT) or SIGTERM.\n"
    "\n"
    "examples:\n"
    "  banter serve --port 8080\n"
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
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "banter serve: unknown argument '%s' (see banter serve --help)\n", a);
            return 2;
        }
    }
    cli_log_init(verbose ? BANTER_LOG_DEBUG : BANTER_LOG_WARN);

    char err[256];
    banter_asr *asr = NULL;
    banter_asr_config ac = banter_asr_config_default();
    if (banter_asr_open(&ac, &asr, err, sizeof err))
        fprintf(stderr, "banter serve: no speech recognizer (%s); transcriptions will answer 503\n", err);

    struct srv *s = NULL;
    if (srv_open(&cfg, asr, &s, err, sizeof err)) {
        fprintf(stderr, "banter serve: %s\n", err);
        banter_asr_close(asr);
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
    if (st) {
        fprintf(stderr, "banter serve: the event loop failed (%s)\n", banter_status_str(st));
        return 1;
    }
    fprintf(stderr, "banter serve: stopped\n");
    return 0;
}
