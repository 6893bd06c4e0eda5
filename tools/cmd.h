/* cmd.h - the subcommands of the `ember` command, one file each under tools/.
 *
 * tools/ember.c holds main() and the table below; each subcommand lives in its own file
 * (tools/train.c, tools/generate.c, ...) and exports one `int cmd_<name>(int argc, char **argv)`,
 * where argv[0] is the subcommand's name. Return 0 on success, 1 on a failure that was reported
 * on stderr, 2 on a usage error. Adding a command: declare it here and add its row to the table in
 * tools/ember.c; the Makefile links every .c file under tools/ into build/ember.
 */
#ifndef EMBER_TOOLS_CMD_H
#define EMBER_TOOLS_CMD_H

int cmd_version(int argc, char **argv);
int cmd_ops(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#endif
