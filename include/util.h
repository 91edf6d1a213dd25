/*
 * util — small helpers every module uses: clocks, duration/size parsing,
 * socket address parsing, allocation that never returns NULL.
 */
#ifndef ZKLB_UTIL_H
#define ZKLB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic clock in milliseconds / microseconds (CLOCK_MONOTONIC). */
uint64_t now_ms(void);
uint64_t now_us(void);
/* Wall clock in milliseconds since the epoch. */
uint64_t wall_ms(void);
/* ms as a struct timeval, e.g. for a libevent timer. */
struct timeval timeval_from_ms(uint64_t ms);

/*
 * Parse a duration such as "250ms", "5s", "2m", "1h", "1.5s" or a bare "0".
 * Returns false on anything else (including overflow and negative values).
 */
bool duration_parse(const char *s, uint64_t *out_ms);
/* Format ms as the shortest exact duration string ("1500ms", "5s", "2m"). */
void duration_format(uint64_t ms, char *buf, size_t len);

/* Parse a size such as "512", "16k", "1m", "1g" (powers of 1024). */
bool size_parse(const char *s, uint64_t *out_bytes);

/*
 * A listen or backend address: "host:port", "[v6]:port", "*:port" (any),
 * or "unix:/path". Host names are resolved with getaddrinfo (numeric first).
 */
struct net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Parse and resolve; on failure writes a message into err and returns false. */
bool net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen);
/*
 * host and port to an address: an IP literal, else a name looked up with
 * getaddrinfo() (blocks for as long as DNS takes). host NULL = any.
 */
bool net_addr_resolve(const char *host, uint16_t port, struct net_addr *out, char *err,
		      size_t errlen);
/* Only an IP literal ("10.0.0.5", "::1", "fe80::1%eth0"); never blocks. */
bool net_addr_numeric(const char *host, uint16_t port, struct net_addr *out);
/* Split "host:port" / "[v6]:port" without resolving. host must hold 256 bytes. */
bool net_split_host_port(const char *s, char *host, size_t hostlen, uint16_t *port);
/* "127.0.0.1:9001", "[::1]:9001" or "unix:/path". */
void net_addr_format(const struct net_addr *a, char *buf, size_t len);
/* 127.0.0.0/8, ::1 or ::ffff:127.x.x.x. */
bool sockaddr_is_loopback(const struct sockaddr *sa);

/* Allocation that logs and aborts on out-of-memory rather than returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/*
 * s is 1..max bytes of POSIX's portable filename character set,
 * [A-Za-z0-9._-] (service names, cache file names).
 */
bool name_is_portable(const char *s, size_t max);

/* Set O_NONBLOCK and FD_CLOEXEC; 0 or -errno. */
int fd_set_nonblock(int fd);

/* Read up to max bytes, retrying EINTR, until EOF or an error; returns the bytes read. */
size_t fd_read_full(int fd, char *buf, size_t max);

/* A small xorshift PRNG; each thread owns one. Never returns the same stream for two seeds. */
struct rng {
	uint64_t s;
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, n) for n > 0. */
uint32_t rng_below(struct rng *r, uint32_t n);

/*
 * Replace the file at path with data[0..len) atomically: a temporary file in
 * the same directory (".<name>.XXXXXX"), fchmod(mode), fsync, rename over
 * path, fsync of the directory. A reader sees the old file or the new one,
 * never a torn one; on failure path is untouched and the temporary file is
 * gone. Returns 0, or -errno with a message in err (a failed fsync of the
 * directory is reported too, although the new file is then in place).
 * Blocking file I/O. It is file_write_temp() then file_replace().
 */
int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
		      char *err, size_t errlen);

/*
 * The first half: data[0..len) in a new temporary file beside path
 * (".<name>.XXXXXX", mode, fsynced), its name in tmp. Returns 0, or -errno
 * with a message in err and nothing left behind. For a candidate that must
 * pass a check before it replaces path.
 */
int file_write_temp(const char *path, const void *data, size_t len, unsigned mode,
		    char *tmp, size_t tmp_len, char *err, size_t errlen);

/* The second half: rename tmp over path, fsync the directory. tmp is gone either way. */
int file_replace(const char *tmp, const char *path, char *err, size_t errlen);

/*
 * file_write_atomic for name inside the directory open at dfd (dir: its path, for
 * messages), and owned by uid:gid (-1: left as created) — set with fchown
 * on the temporary file before the rename, so no path is ever followed:
 * the temporary file is created O_EXCL|O_NOFOLLOW and renamed over name, so
 * a symlink at name is replaced, not written through.
 */
int file_write_atomic_at(int dfd, const char *dir, const char *name, const void *data, size_t len,
			 unsigned mode, int64_t uid, int64_t gid, char *err, size_t errlen);

/*
 * mkdir -p: create dir and each missing ancestor with mode. Returns 0 (also
 * when dir already exists), or -errno (-EINVAL for "", -ENAMETOOLONG from
 * 4096 bytes on).
 * Blocking file I/O.
 */
int dir_make(const char *dir, unsigned mode);

#endif
