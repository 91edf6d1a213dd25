/*
 * secret — password files (see secret.h).
 */
#include "secret.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *secret_read(const char *path, char *err, size_t err_len)
{
	char buf[SECRET_MAX + 3];	/* the secret, CR LF, and one byte to see "too long" */
	struct stat st;
	ssize_t n = 0;

	/*
	 * Look before opening: opening a device or a FIFO acts (a watchdog device
	 * starts its countdown, a FIFO's writer is let through), and the path may
	 * come from a less trusted source than the file (an overlay, whose policy
	 * is checked after its keys are). The fstat below catches a swap between.
	 */
	if (lstat(path, &st) < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & 0006) {
		snprintf(err, err_len, "%s: readable or writable by others (mode %04o); chmod o-rw",
			 path, (unsigned)st.st_mode & 07777);
		close(fd);
		return NULL;
	}
	size_t got = 0;
	while (got < sizeof(buf) && (n = read(fd, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	int read_errno = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(read_errno));
		explicit_bzero(buf, sizeof(buf));
		return NULL;
	}
	bool full = got == sizeof(buf);
	if (got > 0 && buf[got - 1] == '\n')
		got--;
	if (got > 0 && buf[got - 1] == '\r')
		got--;
	const char *why = NULL;
	if (got == 0)
		why = "empty";
	else if (full || got > SECRET_MAX)
		why = "too long";
	else if (memchr(buf, '\0', got))
		why = "holds a NUL byte";
	if (why) {
		snprintf(err, err_len, "%s: %s", path, why);
		explicit_bzero(buf, sizeof(buf));
		return NULL;
	}
	char *s = xmalloc(got + 1);
	memcpy(s, buf, got);
	s[got] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return s;
}

void secret_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}
