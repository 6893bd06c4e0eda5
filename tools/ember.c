/* ember.c - the `ember` command: a front door to the library.
 *
 * Subcommands grow with the project (train, generate, explain ...). For now:
 *   ember version      the library version
 *   ember ops          the op table: name, arity and flags of every op
 */
#include <ember.h>

#include "../src/ops/op.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: ember <command>\n"
               "  version   print the library version\n"
               "  ops       list the op table\n");
}

static int cmd_ops(void) {
    static const char *flag_names[] = {"prim", "pointwise", "reduction", "view", "extern", "random",
                                       "nodiff", "save_in", "save_out", "create"};
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

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "version")) {
        printf("ember %s\n", em_version());
        return 0;
    }
    if (!strcmp(argv[1], "ops")) return cmd_ops();
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ember: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
