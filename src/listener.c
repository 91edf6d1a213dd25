/*
 * listener — see listener.h.
 */
#include "listener.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096

/* A unix socket path that exists but nobody accepts on is left from a crash. */
static void unlink_stale_unix(const struct sockaddr_un *un)
{
	struct stat st;
	if (stat(un->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (const struct sockaddr *)un, sizeof(*un)) != 0 && errno == ECONNREFUSED)
		unlink(un->sun_path);
	close(fd);
}

/* unix_mode: the socket file's mode, set before listen() so no one connects under a wider one. */
static int open_one(const struct net_addr *a, bool reuseport, unsigned unix_mode, char *err,
		    size_t errlen)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	if (a->ss.ss_family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
			snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (a->ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
	    (a->ss.ss_family == AF_UNIX &&
	     chmod(((const struct sockaddr_un *)&a->ss)->sun_path, unix_mode) != 0) ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

bool listener_open_unix(const char *key, unsigned mode, int *fd, char *err, size_t errlen)
{
	struct net_addr a;
	if (!net_addr_parse(key, &a, err, errlen))
		return false;
	if (a.ss.ss_family != AF_UNIX) {
		snprintf(err, errlen, "not a unix: address");
		return false;
	}
	unlink_stale_unix((const struct sockaddr_un *)&a.ss);
	*fd = open_one(&a, false, mode, err, errlen);
	return *fd >= 0;
}

bool listener_open(const char *key, unsigned n, int *fds, char *err, size_t errlen)
{
	struct net_addr a;
	if (!net_addr_parse(key, &a, err, errlen))
		return false;
	for (unsigned i = 0; i < n; i++)
		fds[i] = -1;
	if (a.ss.ss_family == AF_UNIX) {
		/* Any local user may be a client of a service. */
		if (!listener_open_unix(key, 0666, &fds[0], err, errlen))
			return false;
		for (unsigned i = 1; i < n; i++) {
			fds[i] = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
			if (fds[i] < 0) {
				snprintf(err, errlen, "dup: %s", strerror(errno));
				goto fail;
			}
		}
		return true;
	}
	for (unsigned i = 0; i < n; i++) {
		fds[i] = open_one(&a, true, 0, err, errlen);
		if (fds[i] < 0)
			goto fail;
	}
	return true;
fail:
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (a.ss.ss_family == AF_UNIX)
		unlink(((const struct sockaddr_un *)&a.ss)->sun_path);
	return false;
}

