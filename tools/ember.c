/* ember.c - the `ember` command: a front door to the library.
 *
 * main() dispatches on the first argument through the table `commands`; each subcommand is
 * one file under tools/ (see tools/cmd.h). Defined here:
 *   ember version      the library version
 *   ember ops          the op table: name, arity and flags of every op
 *   ember ops --markdown   the same as the Markdown table at the top of docs/ops.md
 */
#include <ember.h>

#include "../src/ops/op.h"
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the subcommands: name, one line of help, entry point (tools/cmd.h) */
static const struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"version", "print the library version", cmd_version},
    {"ops", "list the op table (--markdown: as in docs/ops.md)", cmd_ops},
    {"train", "train or fine-tune a GPT-2 / Llama model on a text corpus", cmd_train},
    {"generate", "stream text from a model (Ember, llama2.c or GPT-2 file)", cmd_generate},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ember <command> [options]   (ember <command> --help for its options)\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int cmd_version(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("ember %s\n", em_version());
    return 0;
}

static const char *flag_names[] = {"prim", "pointwise", "reduction", "view", "extern", "random",
                                   "nodiff", "save_in", "save_out", "create"};

/* the public functions that reach a row, where they are not simply em_<row> */
static const char *public_names(const char *op) {
    static const char *map[][2] = {
        {"reshape", "em_reshape, em_view, em_flatten, em_squeeze, em_unsqueeze"},
        {"permute", "em_permute, em_transpose"},
        {"slice", "em_slice, em_select"},
        {"copy", "em_clone, em_contiguous"},
        {"full", "em_full, em_zeros, em_ones, em_scalar, em_*_like"},
        {"max_dim", "em_max"},
        {"min_dim", "em_min"},
        {"cross_entropy", "em_cross_entropy, em_cross_entropy_ex"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i][0], op)) return map[i][1];
    return NULL;
}

static int cmd_ops_markdown(void) {
    printf("| row | public function | in | out | kernel | backward | decomposition | flags |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < EMO_NUM_OPS; i++) {
        const emo_def *d = &emo_table[i];
        const char *pub = public_names(d->name);
        printf("| `%s` | ", d->name);
        if (pub) printf("%s", pub); else printf("em_%s", d->name);
        char nin[16], nout[16];
        snprintf(nin, sizeof nin, d->n_in < 0 ? "n" : "%d", d->n_in);
        snprintf(nout, sizeof nout, d->n_out < 0 ? "n" : "%d", d->n_out);
        printf(" | %s | %s | %s | %s | %s |", nin, nout, d->kernel ? "yes" : "-",
               d->backward ? "yes" : (d->flags & (EMO_NODIFF | EMO_CREATE)) ? "none" : "via decomposition",
               d->decomp ? "yes" : "-");
        for (int b = 0; b < (int)(sizeof flag_names / sizeof *flag_names); b++)
            if (d->flags & (1u << b)) printf(" %s", flag_names[b]);
        printf(" |\n");
    }
    return 0;
}

int cmd_ops(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--markdown")) return cmd_ops_markdown();
    printf("%-16s %4s %4s  %-8s %-8s %-8s  flags\n", "op", "in", "out", "kernel", "backward", "decomp");
    for (int i = 0; i < EMO_NUM_OPS; i++) {
        const emo_def *d = &emo_table[i];
        printf("%-16s %4d %4d  %-8s %-8s %-8s ", d->name, d->n_in, d->n_out, d->kernel ? "yes" : "-",
               d->backward ? "yes" : "-", d->decomp ? "yes" : "-");
        for (int b = 0; b < (int)(sizeof flag_names / sizeof *flag_names); b++)
            if (d->flags & (1u << b)) printf(" %s", flag_names[b]);
        printf("\n");
    }
    printf("%d ops\n", EMO_NUM_OPS);
    return 0;
}

/* The thread policy: OpenMP worker threads spin briefly when idle, then sleep
   (OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT=10000, about 0.1 ms of spinning in libgomp).
   Spinning without limit (libgomp's default spins ~3 ms) on 2 cores shared with anything else (a
   compiler in the background, another job) turned a 2.8 CPU-second eager GPT-2 step into 9.6;
   sleeping at once makes every parallel region of a decode step wake its worker (f32 decode
   49-50 -> 52-54 tokens/s with the short spin, docs/performance.md). libgomp reads the variables
   once, when it loads, before main runs, so the command sets them and re-executes itself; a
   policy the user set is kept (OMP_WAIT_POLICY=ACTIVE ember ... spins). */
static void thread_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0 || setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure: then go on as we are */
}

int main(int argc, char **argv) {
    thread_policy(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ember: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
