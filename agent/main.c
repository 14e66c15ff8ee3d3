/* sigil-agent: the node agent's program. `run` (attestation, sync, serving: agent.h) is
 * dispatched here; every other command is a Workload API client (cli.h). */
#include <signal.h>
#include <string.h>

#include "agent.h"
#include "cli.h"

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* sigil/rpc.h: a vanished peer must not kill us */
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        return sigil_agent_run_main(argc - 1, argv + 1);
    return sigil_agent_cli_main(argc, argv);
}
