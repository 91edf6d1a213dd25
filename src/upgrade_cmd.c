/*
 * upgrade_cmd — see upgrade_cmd.h.
 *
 * The admin API answers one request per connection and closes it, so each
 * call here is: connect, send the request, read to EOF, parse. Every answer
 * is read as hostile (bounded in size and time, JSON checked field by
 * field, printed with control bytes replaced).
 */
#include "upgrade_cmd.h"
#include "admin.h"
#include "config.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REPLY_MAX (8u << 20)		/* the largest answer read (a big /services) */
#define CALL_TIMEOUT_MS 5000		/* connect, send and each read of one call */

/* The running zklb's admin API, as cfg reaches it. */
struct upgrade_target {
	const char *listen;			/* ref: admin.listen */
	char token[ADMIN_TOKEN_MAX + 1];	/* admin.token_file's token */
	size_t token_len;			/* 0: none */
};

enum upgrade_cmd_outcome upgrade_cmd_verdict(const struct upgrade_cmd_view *before,
					     const struct upgrade_cmd_view *now)
{
	/* The old process hands the admin socket over once the new one serves. */
	if (now->pid != before->pid)
		return UPGRADE_CMD_SERVING;
	if (now->failures > before->failures)
		return UPGRADE_CMD_FAILED;
	return UPGRADE_CMD_WAIT;
}

bool upgrade_cmd_parse_reply(const char *buf, size_t len, int *status, const char **body,
			     size_t *body_len)
{
	static const char proto[] = "HTTP/1.";
	if (len < sizeof(proto) + 5 || memcmp(buf, proto, sizeof(proto) - 1) != 0 ||
	    buf[sizeof(proto)] != ' ')
		return false;
	const char *c = buf + sizeof(proto) + 1;
	if (c[0] < '1' || c[0] > '5' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' ||
	    (c[3] != ' ' && c[3] != '\r'))
		return false;
	*status = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return false;
	*body = end + 4;
	*body_len = len - (size_t)(*body - buf);
	return true;
}

bool upgrade_cmd_parse_view(const char *body, size_t len, struct upgrade_cmd_view *v, char *err,
			    size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je);
	memset(v, 0, sizeof(*v));
	if (!root) {
		snprintf(err, errlen, "GET /services is not JSON: %s", je.text);
		return false;
	}
	json_t *pid = json_object_get(root, "pid");
	json_t *up = json_object_get(root, "upgrade");
	json_t *failures = json_object_get(up, "failures");
	json_t *last = json_object_get(up, "last_failure");
	bool ok = json_is_integer(pid) && json_integer_value(pid) > 0 && json_is_integer(failures) &&
		  json_integer_value(failures) >= 0;
	if (ok) {
		v->pid = (long)json_integer_value(pid);
		v->failures = (uint64_t)json_integer_value(failures);
		snprintf(v->last_failure, sizeof(v->last_failure), "%s",
			 json_is_string(last) ? json_string_value(last) : "");
	} else {
		snprintf(err, errlen, "GET /services has no pid and upgrade.failures "
			 "(a zklb older than `zklb upgrade`? send it SIGUSR2)");
	}
	json_decref(root);
	return ok;
}

/* Control bytes (a hostile answer's escapes) become '?', for one clean line. */
static void printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static int socket_timed(int family, uint64_t timeout_ms)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
	/* SO_SNDTIMEO bounds connect() too on Linux. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* A connected socket to admin.listen (a wildcard host: this host's loopback), or -1 with err. */
static int target_connect(const struct upgrade_target *t, char *err, size_t errlen)
{
	if (strncmp(t->listen, "unix:", 5) == 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		const char *path = t->listen + 5;
		if (strlen(path) >= sizeof(sun.sun_path)) {
			snprintf(err, errlen, "socket path too long");
			return -1;
		}
		memcpy(sun.sun_path, path, strlen(path) + 1);
		int fd = socket_timed(AF_UNIX, CALL_TIMEOUT_MS);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return fd;
		snprintf(err, errlen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	char host[256], port[8];
	uint16_t p;
	if (!net_split_host_port(t->listen, host, sizeof(host), &p)) {
		snprintf(err, errlen, "cannot read the address");
		return -1;
	}
	if (strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");
	snprintf(port, sizeof(port), "%u", (unsigned)p);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s", gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	snprintf(err, errlen, "no address");
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket_timed(ai->ai_family, CALL_TIMEOUT_MS);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			snprintf(err, errlen, "%s", strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * One request; *reply (owned, NUL-terminated) is the whole answer, read to
 * EOF. false with err when no answer came.
 */
static bool target_call(const struct upgrade_target *t, const char *method, const char *path,
			char **reply, size_t *reply_len, char *err, size_t errlen)
{
	int fd = target_connect(t, err, errlen);
	if (fd < 0)
		return false;
	char req[ADMIN_TOKEN_MAX + 256];
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: zklb\r\n%s%s%sContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n", method, path,
			 t->token_len ? "Authorization: Bearer " : "", t->token_len ? t->token : "",
			 t->token_len ? "\r\n" : "");
	bool ok = n > 0 && (size_t)n < sizeof(req) &&
		  send(fd, req, (size_t)n, MSG_NOSIGNAL) == n;
	if (!ok)
		snprintf(err, errlen, "cannot send the request: %s", strerror(errno));
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	while (ok) {
		if (len + 1 == cap) {
			if (cap >= REPLY_MAX) {
				snprintf(err, errlen, "answer larger than %u bytes", REPLY_MAX);
				ok = false;
				break;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t k = recv(fd, buf + len, cap - 1 - len, 0);
		if (k == 0)
			break;
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			snprintf(err, errlen, "no answer: %s", strerror(errno));
			ok = false;
			break;
		}
		len += (size_t)k;
	}
	close(fd);
	if (!ok) {
		free(buf);
		return false;
	}
	buf[len] = '\0';
	*reply = buf;
	*reply_len = len;
	return true;
}

/*
 * One request and its answer split: *reply (owned: free it) holds the body
 * (*body, *body_len) answered with *status. false with err (nothing to free).
 */
static bool target_ask(const struct upgrade_target *t, const char *method, const char *path,
		       char **reply, int *status, const char **body, size_t *body_len, char *err,
		       size_t errlen)
{
	size_t len;
	if (!target_call(t, method, path, reply, &len, err, errlen))
		return false;
	if (upgrade_cmd_parse_reply(*reply, len, status, body, body_len))
		return true;
	snprintf(err, errlen, "%s %s: not an HTTP answer", method, path);
	free(*reply);
	return false;
}

/* GET /services into *v; false with err. */
static bool target_view(const struct upgrade_target *t, struct upgrade_cmd_view *v, char *err,
			size_t errlen)
{
	char *reply;
	size_t body_len;
	const char *body;
	int status;
	if (!target_ask(t, "GET", "/services", &reply, &status, &body, &body_len, err, errlen))
		return false;
	if (status != 200)
		snprintf(err, errlen, "GET /services: status %d%s", status,
			 status == 401 ? " (admin.token_file does not hold the running zklb's token)" : "");
	bool ok = status == 200 && upgrade_cmd_parse_view(body, body_len, v, err, errlen);
	free(reply);
	return ok;
}

/* POST /upgrade; true when it was accepted (202), else err holds the answer. */
static bool target_upgrade(const struct upgrade_target *t, char *err, size_t errlen)
{
	char *reply;
	size_t body_len;
	const char *body;
	int status;
	if (!target_ask(t, "POST", "/upgrade", &reply, &status, &body, &body_len, err, errlen))
		return false;
	bool ok = true;
	if (status != 202) {
		json_t *j = json_loadb(body, body_len, 0, NULL);
		json_t *e = json_object_get(j, "error");
		snprintf(err, errlen, "%d %s", status, json_is_string(e) ? json_string_value(e)
					       : status == 404 ? "(a zklb older than `zklb upgrade`?)" : "");
		json_decref(j);
		ok = false;
	}
	free(reply);
	return ok;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int upgrade_cmd_run(const struct config *cfg, uint64_t timeout_ms, FILE *out, FILE *err)
{
	struct upgrade_target t = { .listen = cfg->admin_listen };
	struct upgrade_cmd_view before, now;
	char why[600];
	if (!t.listen) {
		fprintf(err, "zklb upgrade: admin.listen is off in %s: the running zklb cannot be "
			"reached (send it SIGUSR2 instead)\n", cfg->source);
		return 1;
	}
	if (cfg->admin_token_file &&
	    !admin_token_load(cfg->admin_token_file, t.token, &t.token_len, why, sizeof(why))) {
		fprintf(err, "zklb upgrade: admin.token_file %s: %s\n", cfg->admin_token_file, why);
		return 1;
	}
	if (!target_view(&t, &before, why, sizeof(why))) {
		printable(why);
		fprintf(err, "zklb upgrade: no zklb answers on %s: %s\n", t.listen, why);
		return 1;
	}
	if (!target_upgrade(&t, why, sizeof(why))) {
		/* A start that failed at once (the new binary died before it took the
		 * offer) is counted like a later failure: report it the same way. */
		char scratch[600];
		if (target_view(&t, &now, scratch, sizeof(scratch)) &&
		    upgrade_cmd_verdict(&before, &now) == UPGRADE_CMD_FAILED) {
			printable(now.last_failure);
			fprintf(err, "zklb upgrade: failed: %s; pid %ld serves on as before\n",
				now.last_failure, now.pid);
			return 1;
		}
		printable(why);
		fprintf(err, "zklb upgrade: pid %ld did not start the upgrade: %s\n", before.pid, why);
		return 1;
	}
	uint64_t start = now_ms();
	while (now_ms() - start < timeout_ms) {
		sleep_ms(UPGRADE_CMD_POLL_MS);
		if (!target_view(&t, &now, why, sizeof(why)))
			continue;	/* the socket changing hands, or a busy process: ask again */
		switch (upgrade_cmd_verdict(&before, &now)) {
		case UPGRADE_CMD_SERVING:
			fprintf(out, "zklb upgrade: pid %ld serves; pid %ld drains and exits (%llu ms)\n",
				now.pid, before.pid, (unsigned long long)(now_ms() - start));
			return 0;
		case UPGRADE_CMD_FAILED:
			printable(now.last_failure);
			fprintf(err, "zklb upgrade: failed: %s; pid %ld serves on as before\n",
				now.last_failure, now.pid);
			return 1;
		case UPGRADE_CMD_WAIT:
			break;
		}
	}
	char d[32];
	duration_format(timeout_ms, d, sizeof(d));
	fprintf(err, "zklb upgrade: no outcome within %s (pid %ld asked); see its log\n", d,
		before.pid);
	return 1;
}
