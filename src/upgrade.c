/*
 * upgrade — see upgrade.h.
 *
 * Messages are text on a SOCK_SEQPACKET socket (one message per send, its
 * boundaries kept), descriptors ride along as SCM_RIGHTS. Every message the
 * other side sends is checked before use: counts, lengths, hex, that the
 * descriptors announced are those received.
 */
#include "upgrade.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define FDS_PER_MSG 64			/* descriptors per SOCK message (SCM_MAX_FD is 253) */
#define MSG_MAX 1024			/* longest message */
#define INHERIT_WAIT_MS 5000		/* new side: longest wait for each message */

extern char **environ;

struct upgrade {
	struct event_base *base;		/* ref */
	int sock;				/* owned; our end of the socket */
	pid_t pid;				/* the new process */
	struct event *ev;			/* owned; sock readable */
	struct event *deadline;			/* owned; READY must come before it */
	const struct upgrade_hooks *h;		/* ref */
	void *arg;
	bool released;				/* release_session was called */
	bool over;				/* ready or failed was called */
};

/* Send one message with descriptors (n_fds may be 0). */
static bool send_msg(int sock, const char *text, const int *fds, unsigned n_fds)
{
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	char cbuf[CMSG_SPACE(FDS_PER_MSG * sizeof(int))];
	if (n_fds) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n_fds * sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)iov.iov_len;
}

/*
 * Receive one message into buf (NUL-terminated) and its descriptors (at most
 * FDS_PER_MSG, close-on-exec) into fds. Returns the message length, 0 at
 * EOF, -1 on error or a malformed message (any descriptors are closed).
 */
static ssize_t recv_msg(int sock, char *buf, size_t len, int *fds, unsigned *n_fds)
{
	struct iovec iov = { buf, len - 1 };
	char cbuf[CMSG_SPACE(FDS_PER_MSG * sizeof(int))];
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	*n_fds = 0;
	for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (unsigned i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fds && *n_fds < FDS_PER_MSG)
				fds[(*n_fds)++] = fd;
			else
				close(fd);
		}
	}
	if (n < 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (unsigned i = 0; i < *n_fds; i++)
			close(fds[i]);
		*n_fds = 0;
		return -1;
	}
	buf[n] = '\0';
	return n;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool hex_decode(const char *in, unsigned char *out, size_t n)
{
	if (strlen(in) != 2 * n)
		return false;
	for (size_t i = 0; i < 2 * n; i++) {
		char c = in[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return false;
		out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] | v) : v << 4);
	}
	return true;
}

/* ---- old side ------------------------------------------------------------------ */

/* The attempt is over without READY: reap the new process and serve on. */
static void upgrade_fail(struct upgrade *u, const char *why)
{
	int status = 0;
	char what[160];
	/* Before READY the new process is ours to stop: it must not serve half-started. */
	kill(u->pid, SIGKILL);
	if (waitpid(u->pid, &status, 0) == u->pid && WIFEXITED(status))
		snprintf(what, sizeof(what), "%s (it exited with %d)", why, WEXITSTATUS(status));
	else if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
		snprintf(what, sizeof(what), "%s (it died of signal %d)", why, WTERMSIG(status));
	else
		snprintf(what, sizeof(what), "%s", why);
	u->over = true;
	event_del(u->ev);
	evtimer_del(u->deadline);
	u->h->failed(u->arg, u->released, what);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	upgrade_fail(arg, "the new process was not ready in time");
}

static void on_message(evutil_socket_t fd, short what, void *arg)
{
	struct upgrade *u = arg;
	char buf[MSG_MAX];
	unsigned n_fds;
	ssize_t n = recv_msg(u->sock, buf, sizeof(buf), NULL, &n_fds);
	if (n <= 0) {
		upgrade_fail(u, "the new process ended before it was ready");
	} else if (strcmp(buf, "ZK?") == 0 && !u->released) {
		u->released = true;
		u->h->release_session(u->arg);
		if (!send_msg(u->sock, "ZK!", NULL, 0))
			upgrade_fail(u, "the new process stopped listening");
	} else if (strcmp(buf, "READY") == 0) {
		u->over = true;
		event_del(u->ev);
		evtimer_del(u->deadline);
		u->h->ready(u->arg);
	} else {
		upgrade_fail(u, "the new process sent something unexpected");
	}
}

static bool send_offer(int sock, const struct upgrade_offer *o)
{
	char msg[MSG_MAX];
	for (size_t i = 0; i < o->n_sockets; i++) {
		const struct upgrade_socket *s = &o->sockets[i];
		if (strlen(s->key) > MSG_MAX - 32)
			return false;
		for (unsigned at = 0; at < s->n_fds; at += FDS_PER_MSG) {
			unsigned k = s->n_fds - at < FDS_PER_MSG ? s->n_fds - at : FDS_PER_MSG;
			snprintf(msg, sizeof(msg), "SOCK %u %s", k, s->key);
			if (!send_msg(sock, msg, s->fds + at, k))
				return false;
		}
	}
	for (size_t i = 0; i < o->n_announced; i++) {
		const struct upgrade_announced *an = &o->announced[i];
		snprintf(msg, sizeof(msg), "ANN %u %s %s", an->port, an->id, an->service);
		if (strlen(an->service) > MSG_MAX - 64 || !send_msg(sock, msg, NULL, 0))
			return false;
	}
	if (o->has_session) {
		char pw[33];
		hex_encode((const unsigned char *)o->session_passwd, 16, pw);
		snprintf(msg, sizeof(msg), "ZK %" PRIx64 " %s", (uint64_t)o->session_id, pw);
		if (!send_msg(sock, msg, NULL, 0))
			return false;
	}
	return send_msg(sock, "END", NULL, 0);
}

/* environ with UPGRADE_ENV=fd in place of any such entry; free() the array only. */
static char **child_env(int fd, char *slot, size_t len)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = xcalloc(n + 2, sizeof(*env));
	size_t k = 0, pl = strlen(UPGRADE_ENV);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], UPGRADE_ENV, pl) != 0 || environ[i][pl] != '=')
			env[k++] = environ[i];
	snprintf(slot, len, "%s=%d", UPGRADE_ENV, fd);
	env[k] = slot;
	return env;
}

struct upgrade *upgrade_start(struct event_base *base, const char *binary, char *const argv[],
			      const struct upgrade_offer *offer, uint64_t timeout_ms,
			      const struct upgrade_hooks *h, void *arg, char *err, size_t errlen)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return NULL;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto itself clears close-on-exec in the child (glibc 2.29+). */
	posix_spawn_file_actions_adddup2(&fa, sv[1], sv[1]);
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char slot[64];
	char **env = child_env(sv[1], slot, sizeof(slot));
	pid_t pid;
	int rc = posix_spawn(&pid, binary, &fa, &at, argv, env);
	free(env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(sv[1]);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start %s: %s", binary, strerror(rc));
		close(sv[0]);
		return NULL;
	}
	struct upgrade *u = xcalloc(1, sizeof(*u));
	u->base = base;
	u->sock = sv[0];
	u->pid = pid;
	u->h = h;
	u->arg = arg;
	u->ev = event_new(base, u->sock, EV_READ | EV_PERSIST, on_message, u);
	u->deadline = evtimer_new(base, on_deadline, u);
	if (!send_offer(u->sock, offer)) {
		snprintf(err, errlen, "%s did not take the offer: %s", binary, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		upgrade_free(u);
		return NULL;
	}
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
	event_add(u->ev, NULL);
	evtimer_add(u->deadline, &tv);
	return u;
}

int upgrade_pid(const struct upgrade *u)
{
	return u->pid;
}

void upgrade_free(struct upgrade *u)
{
	if (!u)
		return;
	if (!u->over && u->pid > 0) {
		kill(u->pid, SIGKILL);
		waitpid(u->pid, NULL, 0);
	}
	event_free(u->ev);
	event_free(u->deadline);
	close(u->sock);
	free(u);
}

/* ---- new side ------------------------------------------------------------------ */

struct inherit_socket {
	char *key;				/* owned */
	int *fds;				/* owned array; -1 once taken */
	unsigned n;
};

/* An announced instance's id as offered. */
struct inherit_announced {
	char *service;				/* owned */
	uint16_t port;
	char id[40];				/* a Curator UUID, checked */
};

struct upgrade_inherit {
	int sock;				/* owned */
	struct inherit_announced *ann;		/* owned; n_ann */
	size_t n_ann;
	struct inherit_socket *v;		/* owned; n entries */
	size_t n;
	bool has_session;
	int64_t session_id;
	char passwd[16];
};

/* Wait for and receive one message from the old process. */
static ssize_t inherit_recv(struct upgrade_inherit *in, char *buf, size_t len, int *fds,
			    unsigned *n_fds)
{
	struct pollfd p = { .fd = in->sock, .events = POLLIN };
	*n_fds = 0;
	int r;
	do
		r = poll(&p, 1, INHERIT_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	return recv_msg(in->sock, buf, len, fds, n_fds);
}

static bool inherit_sockets(struct upgrade_inherit *in, const char *key, const int *fds,
			    unsigned n)
{
	struct inherit_socket *s = NULL;
	for (size_t i = 0; i < in->n && !s; i++)
		if (strcmp(in->v[i].key, key) == 0)
			s = &in->v[i];
	if (!s) {
		in->v = xrealloc(in->v, (in->n + 1) * sizeof(*in->v));
		s = &in->v[in->n++];
		s->key = xstrdup(key);
		s->fds = NULL;
		s->n = 0;
	}
	if (s->n + n > 1024)
		return false;
	s->fds = xrealloc(s->fds, (s->n + n) * sizeof(int));
	memcpy(s->fds + s->n, fds, n * sizeof(int));
	s->n += n;
	return true;
}

/* A Curator id as zklb writes them: 36 characters of lower-case hex and dashes. */
static bool uuid_ok(const char *s)
{
	size_t n = strlen(s);
	return n == 36 && strspn(s, "0123456789abcdef-") == n;
}

struct upgrade_inherit *upgrade_inherit_open(void)
{
	const char *v = getenv(UPGRADE_ENV);
	if (!v)
		return NULL;
	char *end;
	long fd = strtol(v, &end, 10);
	unsetenv(UPGRADE_ENV);	/* not for the commands sync and render run */
	if (*end || end == v || fd < 3 || fd > 65535 || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
		log_error("upgrade: %s does not name an open descriptor; starting afresh", UPGRADE_ENV);
		return NULL;
	}
	struct upgrade_inherit *in = xcalloc(1, sizeof(*in));
	in->sock = (int)fd;
	for (;;) {
		char buf[MSG_MAX];
		int fds[FDS_PER_MSG];
		unsigned n_fds, k;
		int off = 0;
		ssize_t n = inherit_recv(in, buf, sizeof(buf), fds, &n_fds);
		char pw[40];
		uint64_t id;
		if (n > 0 && strcmp(buf, "END") == 0)
			break;
		if (n > 0 && sscanf(buf, "SOCK %u %n", &k, &off) == 1 && off > 0 && k == n_fds &&
		    buf[off] && inherit_sockets(in, buf + off, fds, n_fds))
			continue;
		unsigned port;
		char uuid[40];
		if (n > 0 && n_fds == 0 && sscanf(buf, "ANN %u %39s %n", &port, uuid, &off) == 2 &&
		    off > 0 && buf[off] && port > 0 && port < 65536 && uuid_ok(uuid)) {
			in->ann = xrealloc(in->ann, (in->n_ann + 1) * sizeof(*in->ann));
			struct inherit_announced *an = &in->ann[in->n_ann++];
			an->service = xstrdup(buf + off);
			an->port = (uint16_t)port;
			memcpy(an->id, uuid, sizeof(an->id));
			continue;
		}
		if (n > 0 && n_fds == 0 && sscanf(buf, "ZK %" SCNx64 " %39s", &id, pw) == 2 &&
		    hex_decode(pw, (unsigned char *)in->passwd, 16)) {
			in->session_id = (int64_t)id;
			in->has_session = true;
			continue;
		}
		for (unsigned i = 0; i < n_fds; i++)
			close(fds[i]);
		log_error("upgrade: the running process's offer is %s; starting afresh",
			  n < 0 ? "late or unreadable" : n == 0 ? "cut short" : "malformed");
		upgrade_inherit_free(in);
		return NULL;
	}
	log_info("upgrade: took over %zu listening addresses%s from the running process", in->n,
		 in->has_session ? " and its ZooKeeper session" : "");
	return in;
}

bool upgrade_inherit_take(struct upgrade_inherit *in, const char *key, unsigned n, int *fds)
{
	for (size_t i = 0; in && i < in->n; i++) {
		struct inherit_socket *s = &in->v[i];
		if (strcmp(s->key, key) != 0 || !s->fds || s->fds[0] < 0)
			continue;
		if (s->n != n) {
			log_warn("upgrade: %s came with %u sockets, %u wanted: opening new ones", key,
				 s->n, n);
			return false;
		}
		memcpy(fds, s->fds, n * sizeof(int));
		for (unsigned k = 0; k < n; k++)
			s->fds[k] = -1;
		return true;
	}
	return false;
}

bool upgrade_inherit_session(struct upgrade_inherit *in, int64_t *id, char passwd[16])
{
	if (!in || !in->has_session)
		return false;
	in->has_session = false;
	char buf[MSG_MAX];
	unsigned n_fds;
	if (!send_msg(in->sock, "ZK?", NULL, 0) ||
	    inherit_recv(in, buf, sizeof(buf), NULL, &n_fds) <= 0 || strcmp(buf, "ZK!") != 0) {
		log_error("upgrade: the running process did not hand over its ZooKeeper session; "
			  "starting a new one");
		return false;
	}
	*id = in->session_id;
	memcpy(passwd, in->passwd, 16);
	return true;
}

bool upgrade_inherit_announced(const struct upgrade_inherit *in, size_t i, const char **service,
			       uint16_t *port, const char **id)
{
	if (!in || i >= in->n_ann)
		return false;
	*service = in->ann[i].service;
	*port = in->ann[i].port;
	*id = in->ann[i].id;
	return true;
}

void upgrade_inherit_ready(struct upgrade_inherit *in)
{
	if (in && !send_msg(in->sock, "READY", NULL, 0))
		log_error("upgrade: cannot tell the old process we are ready: %s", strerror(errno));
}

void upgrade_inherit_free(struct upgrade_inherit *in)
{
	if (!in)
		return;
	for (size_t i = 0; i < in->n; i++) {
		for (unsigned k = 0; k < in->v[i].n; k++)
			if (in->v[i].fds[k] >= 0)
				close(in->v[i].fds[k]);
		free(in->v[i].fds);
		free(in->v[i].key);
	}
	free(in->v);
	for (size_t i = 0; i < in->n_ann; i++)
		free(in->ann[i].service);
	free(in->ann);
	close(in->sock);
	free(in);
}
