/* sigil-agent: the node agent's program. Today it holds the Workload API client commands;
 * the `run` command (attestation, sync, serving) joins them when it exists. */
#include <signal.h>

#include "cli.h"

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* sigil/rpc.h: a vanished peer must not kill us */
    return sigil_agent_cli_main(argc, argv);
}
