/* Probing a Unix socket path before listening on it, shared by the gRPC and HTTP servers:
 * a stale socket left by a crash is replaced, a live server's or a non-socket file never. */
#include "sigil/unixsock.h"
#include "sigil/err.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int
sigil_unixsock_replaceable(const char *path, const char **why)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path) {
        *why = "socket path is too long";
        return SIGIL_ERR_RANGE;
    }
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        *why = "cannot stat the socket path";
        return SIGIL_ERR_IO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *why = "socket path exists and is not a socket; not replacing it";
        return SIGIL_ERR_EXISTS;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        *why = "socket() failed";
        return SIGIL_ERR_IO;
    }
    /* non-blocking: a live server with a full backlog answers EAGAIN instead of stalling us */
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (r == 0 || errno == EAGAIN) {
        *why = "another server is listening on the socket path";
        r = SIGIL_ERR_EXISTS;
    } else if (errno == ECONNREFUSED) {
        r = 0; /* stale: the caller replaces it by rename */
    } else {
        *why = "cannot probe the existing socket";
        r = SIGIL_ERR_IO;
    }
    close(fd);
    return r;
}
