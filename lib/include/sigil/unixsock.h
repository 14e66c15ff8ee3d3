/* Unix socket paths our servers listen on: when an existing file may be replaced. */
#ifndef SIGIL_UNIXSOCK_H
#define SIGIL_UNIXSOCK_H

/* Decides whether a listener may take path: 0 when nothing is there or it is a stale socket
 * nobody accepts on (the caller then binds a temporary name and renames it over path);
 * SIGIL_ERR_EXISTS when it is not a socket or another server listens on it; SIGIL_ERR_IO
 * when it cannot tell. *why is set on failure. */
int sigil_unixsock_replaceable(const char *path, const char **why);

#endif
