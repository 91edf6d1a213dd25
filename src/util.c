/*
 * util — see util.h.
 */
#include "util.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t now_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t now_us(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000u;
}

uint64_t wall_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000u;
}

struct timeval timeval_from_ms(uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
			      .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
	return tv;
}

/*
 * Parse a non-negative decimal with an optional fraction; returns the end or NULL.
 * All digits go into one mantissa (exact below 2^53) divided once by 10^n:
 * summing 0.1-steps instead made "0.75" 0.7500000000000001, so "0.75k" was
 * not a whole number of bytes.
 */
static const char *parse_number(const char *s, double *out)
{
	const char *p = s;
	double v = 0;
	int frac = 0;
	bool digits = false;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p++ - '0');
		digits = true;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (*p++ - '0');
			frac++;
			digits = true;
		}
	}
	if (!digits)
		return NULL;
	*out = frac ? v / pow(10, frac) : v;
	return p;
}

bool duration_parse(const char *s, uint64_t *out_ms)
{
	static const struct { const char *unit; double ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	double v;
	const char *p = parse_number(s, &v);
	if (!p)
		return false;
	if (*p == '\0') {
		if (v != 0)
			return false;	/* a bare number is ambiguous unless it is zero */
		*out_ms = 0;
		return true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].unit) == 0) {
			double ms = v * units[i].ms;
			if (ms > 1e15)
				return false;
			*out_ms = (uint64_t)llround(ms);
			return true;
		}
	}
	return false;
}

void duration_format(uint64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

bool size_parse(const char *s, uint64_t *out_bytes)
{
	double v;
	const char *p = parse_number(s, &v);
	if (!p)
		return false;
	double mult;
	switch (*p) {
	case '\0': mult = 1; break;
	case 'b': case 'B': mult = 1; p++; break;
	case 'k': case 'K': mult = 1024.0; p++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; p++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; p++; break;
	default: return false;
	}
	if ((*p == 'b' || *p == 'B') && mult > 1)
		p++;	/* "16kb" */
	if (*p != '\0')
		return false;
	double bytes = v * mult;
	if (bytes > 1e15 || bytes != floor(bytes))
		return false;
	*out_bytes = (uint64_t)bytes;
	return true;
}

bool net_split_host_port(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return false;
		hl = (size_t)(close - s - 1);
		if (hl == 0 || hl >= hostlen)
			return false;
		memcpy(host, s + 1, hl);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return false;
		hl = (size_t)(colon - s);
		if (hl == 0 || hl >= hostlen || memchr(s, ':', hl))
			return false;	/* bare IPv6 without brackets is ambiguous */
		memcpy(host, s, hl);
	}
	host[hl] = '\0';
	const char *p = colon + 1;
	if (*p == '\0')
		return false;
	unsigned long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return false;
	}
	*port = (uint16_t)v;
	return true;
}

bool net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
		const char *path = s + 5;
		size_t pl = strlen(path);
		if (pl == 0 || pl >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "unix socket path must be 1..%zu bytes",
				 sizeof(un->sun_path) - 1);
			return false;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, pl + 1);
		out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + 1);
		return true;
	}

	char host[256];
	uint16_t port;
	if (!net_split_host_port(s, host, sizeof(host), &port)) {
		snprintf(err, errlen, "'%s' is not host:port, [ipv6]:port or unix:/path", s);
		return false;
	}
	if (port == 0) {
		snprintf(err, errlen, "port must be 1..65535");
		return false;
	}
	return net_addr_resolve(strcmp(host, "*") == 0 ? NULL : host, port, out, err, errlen);
}

/* getaddrinfo() for one TCP address; node NULL = any (passive). */
static int lookup(const char *node, uint16_t port, int flags, struct net_addr *out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | flags | (node ? 0 : AI_PASSIVE) };
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(node, portstr, &hints, &res);
	if (rc == 0 && !res)
		rc = EAI_NONAME;
	if (rc == 0) {
		memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
		out->len = res->ai_addrlen;
	}
	if (res)
		freeaddrinfo(res);
	return rc;
}

/*
 * The common spellings ("10.0.0.5", "::1") without getaddrinfo(), which even
 * for a literal reads gai.conf and asks the kernel over netlink: 100,000
 * instances cost the control thread a second that way. getaddrinfo() still
 * takes every other spelling (inet_aton forms, scope ids), with its verdict.
 */
static bool numeric_fast(const char *host, uint16_t port, struct net_addr *out)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
	struct in_addr a4;
	struct in6_addr a6;

	if (!host)
		return false;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		memset(&out->ss, 0, sizeof(out->ss));
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr = a4;
		out->len = sizeof(*in);
		return true;
	}
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		memset(&out->ss, 0, sizeof(out->ss));
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_addr = a6;
		out->len = sizeof(*in6);
		return true;
	}
	return false;
}

bool net_addr_numeric(const char *host, uint16_t port, struct net_addr *out)
{
	return numeric_fast(host, port, out) || lookup(host, port, AI_NUMERICHOST, out) == 0;
}

bool net_addr_resolve(const char *host, uint16_t port, struct net_addr *out, char *err,
		      size_t errlen)
{
	int rc = lookup(host, port, AI_NUMERICHOST, out);
	if (rc == EAI_NONAME && host)
		rc = lookup(host, port, 0, out);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve '%s': %s", host ? host : "*",
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return false;
	}
	return true;
}

bool sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a6) ||
		       (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
	}
	return false;
}

void net_addr_format(const struct net_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	switch (a->ss.ss_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
		break;
	}
	case AF_UNIX:
		snprintf(buf, len, "unix:%s", ((const struct sockaddr_un *)&a->ss)->sun_path);
		break;
	default:
		snprintf(buf, len, "?");
	}
}

static void oom(size_t n)
{
	log_error("out of memory allocating %zu bytes", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom(strlen(s) + 1);
	return p;
}

bool name_is_portable(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

void rng_seed(struct rng *r, uint64_t seed)
{
	/* splitmix64 to spread weak seeds */
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	r->s = (z ^ (z >> 31)) | 1;
}

uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

size_t fd_read_full(int fd, char *buf, size_t max)
{
	size_t got = 0;
	while (got < max) {
		ssize_t r = read(fd, buf + got, max - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static int write_full(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Fill a new temporary file: data, owner (uid/gid -1: as created), then mode
 * (after fchown, which clears set-id bits), fsync, close. 0 or -errno; fd is
 * closed either way.
 */
static int temp_fill(int fd, const void *data, size_t len, unsigned mode, int64_t uid, int64_t gid)
{
	int rc = write_full(fd, data, len);

	if (rc == 0 && (uid >= 0 || gid >= 0) && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
		rc = -errno;
	if (rc == 0 && fchmod(fd, (mode_t)mode) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* The directory part of path ("." or "/" where that is all there is). */
static int path_dir(const char *path, char *dir, size_t len, const char **base)
{
	const char *slash = strrchr(path, '/');
	*base = slash ? slash + 1 : path;
	if (!**base)
		return -EINVAL;
	if (slash == path)
		snprintf(dir, len, "/");
	else if (slash)
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, len, ".");
	return 0;
}

int file_write_temp(const char *path, const void *data, size_t len, unsigned mode,
		    char *tmp, size_t tmp_len, char *err, size_t errlen)
{
	char dir[4096];
	const char *base;
	int fd, rc;

	if (path_dir(path, dir, sizeof(dir), &base) < 0) {
		snprintf(err, errlen, "%s: not a file name", path);
		return -EINVAL;
	}
	if ((size_t)snprintf(tmp, tmp_len, "%s/.%s.XXXXXX", dir, base) >= tmp_len) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "create a temporary file in %s: %s", dir, strerror(-rc));
		return rc;
	}
	rc = temp_fill(fd, data, len, mode, -1, -1);
	if (rc < 0) {
		snprintf(err, errlen, "write %s: %s", tmp, strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

int file_replace(const char *tmp, const char *path, char *err, size_t errlen)
{
	char dir[4096];
	const char *base;
	int fd, rc = 0;

	if (path_dir(path, dir, sizeof(dir), &base) < 0) {
		snprintf(err, errlen, "%s: not a file name", path);
		unlink(tmp);
		return -EINVAL;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		snprintf(err, errlen, "write %s: %s", path, strerror(-rc));
		unlink(tmp);
		return rc;
	}
	/* The rename itself survives a power cut only once the directory is synced. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		rc = -errno;
		snprintf(err, errlen, "fsync %s: %s", dir, strerror(-rc));
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
		      char *err, size_t errlen)
{
	char tmp[4096];
	int rc = file_write_temp(path, data, len, mode, tmp, sizeof(tmp), err, errlen);
	return rc < 0 ? rc : file_replace(tmp, path, err, errlen);
}

int file_write_atomic_at(int dfd, const char *dir, const char *name, const void *data, size_t len,
			 unsigned mode, int64_t uid, int64_t gid, char *err, size_t errlen)
{
	char tmp[300];
	int fd = -1, rc;

	/* mkostemp has no *at form: the same O_EXCL loop, with a name that cannot be followed. */
	for (int tries = 0; fd < 0 && tries < 100; tries++) {
		if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.%06llx", name,
				     (unsigned long long)(now_us() ^ ((uint64_t)tries << 20)) & 0xffffffu) >=
		    sizeof(tmp)) {
			snprintf(err, errlen, "%s/%s: name too long", dir, name);
			return -ENAMETOOLONG;
		}
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "create a temporary file in %s: %s", dir, strerror(-rc));
		return rc;
	}
	rc = temp_fill(fd, data, len, mode, uid, gid);
	if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "write %s/%s: %s", dir, name, strerror(-rc));
		unlinkat(dfd, tmp, 0);
		return rc;
	}
	/* The rename itself survives a power cut only once the directory is synced. */
	if (fsync(dfd) < 0) {
		rc = -errno;
		snprintf(err, errlen, "fsync %s: %s", dir, strerror(-rc));
	}
	return rc;
}

int dir_make(const char *dir, unsigned mode)
{
	char p[4096];
	size_t n = strlen(dir);

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
			return -errno;
		if (i < n)
			p[i] = '/';
	}
	return 0;
}
