/*
 * model_tokenize.c: `banter model tokenize`, which shows how a model's tokenizer splits a text.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: banter model tokenize --model FILE [options] TEXT\n"
    "\n"
    "Prints one line per token: its id and its text (quoted, with escapes), or with --ids only the ids on one\n"
    "line, space-separated.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model\n"
    "      --no-bos       do not add BOS\n"
    "      --special      parse control tokens written in TEXT (e.g. <start_of_turn>)\n"
    "      --ids          ids only\n";

static void print_quoted(const char *s, int len)
{
    putchar('"');
    for (int i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') fputs("\\n", stdout);
        else if (ch == '\t') fputs("\\t", stdout);
        else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
}

int cmd_model_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *text = NULL;
    bool bos = true, special = false, ids = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--no-bos")) {
            bos = false;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--ids")) {
            ids = true;
        } else if (a[0] == '-' && a[1] && !text) {
            fprintf(stderr, "banter model tokenize: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "banter model tokenize: one TEXT only (quote it)\n");
            return 2;
        }
    }
    if (!model_path || !text) {
        fprintf(stderr, "banter model tokenize: --model FILE and TEXT are required (see --help)\n");
        return 2;
    }
    char err[512];
    banter_model *m = NULL;
    if (banter_model_open(model_path, NULL, &m, err, sizeof err) != BANTER_OK) {
        fprintf(stderr, "banter model tokenize: cannot load '%s': %s\n", model_path, err);
        return 1;
    }
    size_t n = 0, len = strlen(text);
    banter_tokenize(m, text, len, bos, special, NULL, 0, &n);
    banter_token *toks = malloc((n ? n : 1) * sizeof *toks);
    int code = 1;
    if (toks && banter_tokenize(m, text, len, bos, special, toks, n, &n) == BANTER_OK) {
        char piece[512];
        for (size_t i = 0; i < n; i++) {
            if (ids) {
                printf("%s%d", i ? " " : "", toks[i]);
                continue;
            }
            int pl = banter_token_to_piece(m, toks[i], true, piece, sizeof piece);
            printf("%6d ", toks[i]);
            print_quoted(piece, pl < 0 ? 0 : (pl > (int)sizeof piece ? (int)sizeof piece : pl));
            putchar('\n');
        }
        if (ids) putchar('\n');
        code = 0;
    }
    free(toks);
    banter_model_close(m);
    return code;
}
