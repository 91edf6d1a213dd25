/*
 * listener — the listening sockets of one configured address.
 *
 * TCP addresses get one socket per worker with SO_REUSEPORT, so the kernel
 * spreads new connections over the workers; a unix: path gets one socket,
 * duplicated for each worker. The control thread opens them and hands one
 * to each worker, which owns it from then on.
 */
#ifndef ZKLB_LISTENER_H
#define ZKLB_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Open n listening sockets for `key` ("host:port", "[v6]:port", "*:port" or
 * "unix:/path") into fds[0..n). A stale unix socket file (nobody accepts on
 * it) is replaced. On failure nothing stays open, err says why, false.
 */
bool listener_open(const char *key, unsigned n, int *fds, char *err, size_t errlen);

/*
 * One listening socket for "unix:/path" whose file gets `mode` before it
 * accepts (services: 0666; the admin API: 0660). The stale-file rule is
 * listener_open's: only a socket nobody accepts on is unlinked, never a
 * regular file. On failure err says why, false.
 */
bool listener_open_unix(const char *key, unsigned mode, int *fd, char *err, size_t errlen);

#endif
