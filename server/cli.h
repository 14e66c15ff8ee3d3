/* The admin commands of sigil-server (entry, agent, token, bundle, federation, audit):
 * SPIRE-shaped command lines that talk to the running server's admin API over its Unix
 * socket. server/main.c hands every command it does not run itself to sigil_cli_main. */
#ifndef SIGIL_CLI_H
#define SIGIL_CLI_H

/* Default admin socket; --admin-socket or SIGIL_ADMIN_SOCKET choose another. */
#define SIGIL_CLI_ADMIN_SOCKET_DEFAULT "/run/sigil/server/admin.sock"

/* Exit codes of every admin command (the groups' --help lists them). */
enum sigil_cli_exit {
    SIGIL_CLI_EXIT_OK = 0,   /* done */
    SIGIL_CLI_EXIT_FAIL = 1, /* the server or a local check refused it; import items failed */
    SIGIL_CLI_EXIT_UNREACHABLE = 2, /* no admin socket to talk to, or the conversation broke */
    SIGIL_CLI_EXIT_USAGE = 64,      /* a command line we do not understand */
};

/* Runs one admin command: argv[0] is the group ("entry"), argv[1] the command ("create"),
 * the rest its options. Prints results on stdout, errors on stderr. Returns an exit code
 * of enum sigil_cli_exit. */
int sigil_cli_main(int argc, char **argv);

#endif
