/*
 * command — see command.h.
 *
 * Three event sources per command: the pidfd (or a poll timer) for the
 * exit, the pipe for the output, a timer for the timeout and the kill
 * escalation. The exit is what ends the command: the pipe may stay open
 * in a grandchild that was left running, so whatever the pipe holds at the
 * exit is read and the rest is not waited for.
 */
#include "command.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define COMMAND_KILL_GRACE_MS 1000
#define COMMAND_POLL_MS 20

extern char **environ;

enum command_state {
	COMMAND_RUNNING = 0,		/* started, not yet exited */
	COMMAND_KILLING,		/* timed out: SIGTERM sent, SIGKILL after the grace */
	COMMAND_DONE,			/* exited and reaped; the callback has run */
};

struct command {
	enum command_state state;	/* changed by command_set_state() only */
	pid_t pid;			/* the shell; also its process group id */
	int pidfd;			/* owned; -1 when the kernel has no pidfd (poll instead) */
	int out_fd;			/* owned; read end of the output pipe, -1 once closed */
	struct event *exit_ev;		/* owned; pidfd readable, or the poll timer */
	struct event *out_ev;		/* owned; out_fd readable; NULL once closed */
	struct event *timer;		/* owned; timeout, then the kill grace */
	uint64_t started_ms;		/* monotonic */
	uint64_t timeout_ms;		/* 0 = none */
	bool timed_out;			/* the timeout fired */
	struct command_output out;	/* what it printed, for the log */
	command_done_fn *done;		/* caller's; NULL once abandoned */
	void *arg;			/* caller's */
};

/* ---- pure ---------------------------------------------------------------- */

static bool output_put(struct command_output *o, const char *s, size_t n)
{
	/* three bytes stay free for "..." and one for the NUL */
	if (o->len + n + 4 > sizeof(o->text)) {
		o->cut = true;
		return false;
	}
	memcpy(o->text + o->len, s, n);
	o->len += n;
	o->text[o->len] = '\0';
	return true;
}

void command_output_add(struct command_output *o, const char *in, size_t n)
{
	for (size_t i = 0; i < n && !o->cut; i++) {
		char c = in[i];
		if (c == '\r')
			continue;
		if (c == '\n') {
			o->in_line = false;
			continue;
		}
		if (!o->in_line) {
			if (o->lines == COMMAND_OUTPUT_LINES) {
				o->cut = true;
				break;
			}
			if (o->lines > 0 && !output_put(o, " | ", 3))
				break;
			o->lines++;
			o->in_line = true;
		}
		if ((unsigned char)c < 0x20 && c != '\t')
			c = '?';
		else if (c == 0x7f)
			c = '?';
		if (!output_put(o, &c, 1))
			break;
	}
	if (o->cut && (o->len < 3 || strcmp(o->text + o->len - 3, "...") != 0)) {
		memcpy(o->text + o->len, "...", 4);
		o->len += 3;
	}
}

/* ---- the process --------------------------------------------------------- */

static const char *command_state_name(enum command_state s)
{
	switch (s) {
	case COMMAND_RUNNING: return "running";
	case COMMAND_KILLING: return "killing";
	case COMMAND_DONE: return "done";
	}
	return "?";
}

static bool command_set_state(struct command *c, enum command_state to)
{
	bool legal = (c->state == COMMAND_RUNNING && (to == COMMAND_KILLING || to == COMMAND_DONE)) ||
		     (c->state == COMMAND_KILLING && to == COMMAND_DONE);

	if (!legal) {
		log_error("command pid %d: refused transition %s -> %s", (int)c->pid,
			  command_state_name(c->state), command_state_name(to));
		return false;
	}
	c->state = to;
	return true;
}

static void command_close_output(struct command *c)
{
	if (c->out_ev) {
		event_free(c->out_ev);
		c->out_ev = NULL;
	}
	if (c->out_fd >= 0) {
		close(c->out_fd);
		c->out_fd = -1;
	}
}

static void command_release(struct command *c)
{
	command_close_output(c);
	if (c->exit_ev)
		event_free(c->exit_ev);
	if (c->timer)
		event_free(c->timer);
	if (c->pidfd >= 0)
		close(c->pidfd);
	free(c);
}

/* Read what the pipe holds now; false at EOF or error. */
static bool command_read_output(struct command *c)
{
	char buf[4096];

	for (int i = 0; i < 64; i++) {
		ssize_t r = read(c->out_fd, buf, sizeof(buf));
		if (r > 0) {
			command_output_add(&c->out, buf, (size_t)r);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
	return true;
}

static void command_on_output(evutil_socket_t fd, short what, void *arg)
{
	struct command *c = arg;

	if (!command_read_output(c))
		command_close_output(c);
}

/* Reap the shell if it has exited; report and free. */
static void command_check_exit(struct command *c)
{
	struct command_result r;
	int status;
	pid_t p;

	siginfo_t si;

	/*
	 * Timed out: the shell may have died of SIGTERM while a child that
	 * ignores it lives on in the group. SIGKILL the whole group now, while
	 * the unreaped shell still holds its pid (and so the group id) — after
	 * the reap the number could belong to someone else.
	 */
	memset(&si, 0, sizeof(si));
	if (c->timed_out && waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	    si.si_pid == c->pid)
		kill(-c->pid, SIGKILL);
	do {
		p = waitpid(c->pid, &status, WNOHANG);
	} while (p < 0 && errno == EINTR);
	if (p == 0)
		return;
	if (!command_set_state(c, COMMAND_DONE))
		return;
	if (c->out_fd >= 0)
		command_read_output(c);
	memset(&r, 0, sizeof(r));
	if (p < 0) {
		/* Someone else reaped it (should not happen): report what we can. */
		r.exited = false;
		r.signal = 0;
	} else if (WIFEXITED(status)) {
		r.exited = true;
		r.exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		r.signal = WTERMSIG(status);
	}
	r.timed_out = c->timed_out;
	r.elapsed_ms = now_ms() - c->started_ms;
	r.output = c->out.text;
	if (c->done)
		c->done(c->arg, &r);
	command_release(c);
}

static void command_on_exit(evutil_socket_t fd, short what, void *arg)
{
	command_check_exit(arg);
}

static void command_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct command *c = arg;
	struct timeval tv = { COMMAND_KILL_GRACE_MS / 1000, (COMMAND_KILL_GRACE_MS % 1000) * 1000 };

	if (c->state == COMMAND_RUNNING) {
		if (!command_set_state(c, COMMAND_KILLING))
			return;
		c->timed_out = true;
		kill(-c->pid, SIGTERM);
		evtimer_add(c->timer, &tv);
	} else if (c->state == COMMAND_KILLING) {
		kill(-c->pid, SIGKILL);
	}
}

static int command_spawn(const char *line, int out_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	char *argv[] = { "sh", "-c", (char *)line, NULL };
	int rc;

	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	posix_spawn_file_actions_adddup2(&fa, out_w, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

struct command *command_start(struct event_base *base, const char *line, uint64_t timeout_ms,
			      command_done_fn *done, void *arg, char *err, size_t errlen)
{
	struct command *c;
	int fds[2], rc;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return NULL;
	}
	rc = command_spawn(line, fds[1], &pid);
	close(fds[1]);
	if (rc != 0) {
		snprintf(err, errlen, "spawn /bin/sh: %s", strerror(rc));
		close(fds[0]);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->state = COMMAND_RUNNING;
	c->pid = pid;
	c->out_fd = fds[0];
	c->started_ms = now_ms();
	c->timeout_ms = timeout_ms;
	c->done = done;
	c->arg = arg;
	fd_set_nonblock(c->out_fd);
	c->out_ev = event_new(base, c->out_fd, EV_READ | EV_PERSIST, command_on_output, c);
	event_add(c->out_ev, NULL);
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (c->pidfd >= 0) {
		c->exit_ev = event_new(base, c->pidfd, EV_READ | EV_PERSIST, command_on_exit, c);
		event_add(c->exit_ev, NULL);
	} else {
		struct timeval tv = { 0, COMMAND_POLL_MS * 1000 };
		c->pidfd = -1;
		c->exit_ev = event_new(base, -1, EV_PERSIST, command_on_exit, c);
		event_add(c->exit_ev, &tv);
	}
	c->timer = evtimer_new(base, command_on_timer, c);
	if (timeout_ms) {
		struct timeval tv = { (time_t)(timeout_ms / 1000),
				      (suseconds_t)(timeout_ms % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	return c;
}

void command_abandon(struct command *c)
{
	if (c)
		command_release(c);
}

int command_pid(const struct command *c)
{
	return (int)c->pid;
}
