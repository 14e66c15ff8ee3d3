/* `sigil-server ca show|prepare|activate|retire`: an operator's root CA rotation, run locally
 * against the database and ca.key_dir that --config names (like `migrate`); running servers
 * follow through their periodic CA journal re-read (ca.check_interval). */
#ifndef SIGIL_CLI_CA_H
#define SIGIL_CLI_CA_H

/* Runs one ca command: argv[0] is "ca", argv[1] the step, the rest its options. Prints results
 * on stdout, errors on stderr. Returns an exit code of enum sigil_cli_exit (cli.h). */
int sigil_cli_ca_main(int argc, char **argv);

#endif
