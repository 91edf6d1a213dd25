/*
 * command — run one shell command (`/bin/sh -c LINE`) for the control
 * thread without blocking it: sync's on_change hooks.
 *
 * The command is started with posix_spawn in a process group of its own,
 * stdin from /dev/null, stdout and stderr into a pipe we read, an empty
 * signal mask, default signal dispositions (SIGPIPE included, which zklb
 * ignores) and none of zklb's other descriptors (a ZooKeeper socket held
 * by a long-lived child would keep the session, and its ephemeral nodes,
 * alive after zklb is gone). Its exit is seen through a pidfd (a 20 ms poll
 * where the kernel has none). The first lines of its output are kept for
 * the log line. At the timeout the process group gets SIGTERM, and SIGKILL
 * one second later if the command has not exited by then; when the shell
 * exits after the SIGTERM, what is left of its group (a child that ignores
 * SIGTERM) gets SIGKILL at once, before the shell is reaped. A command that
 * finishes in time may leave children running (a daemon it starts).
 *
 * Lifecycle (enum command_state), changed by command_set_state() only:
 *   RUNNING --exit--> DONE
 *      \--timeout--> KILLING --exit--> DONE
 *
 * Thread: the control thread (base). The done callback runs from an event
 * callback, exactly once; the command frees itself when it returns.
 */
#ifndef ZKLB_COMMAND_H
#define ZKLB_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct command;

#define COMMAND_OUTPUT_MAX 512		/* bytes of output kept for the log */
#define COMMAND_OUTPUT_LINES 4		/* lines of output kept for the log */

struct command_result {
	bool exited;			/* it exited by itself: exit_code is valid */
	int exit_code;			/* exited: its status */
	int signal;			/* !exited: the signal that ended it */
	bool timed_out;			/* the timeout fired and we killed it */
	uint64_t elapsed_ms;		/* from the start to the exit */
	const char *output;		/* borrowed; the first lines of stdout+stderr (see
					   struct command_output), "" if none */
};

typedef void command_done_fn(void *arg, const struct command_result *r);

/*
 * Start line (copied) under /bin/sh -c. timeout_ms 0 = none. Returns NULL
 * with a message in err when it cannot start (pipe or spawn failure); done
 * is then never called.
 */
struct command *command_start(struct event_base *base, const char *line, uint64_t timeout_ms,
			      command_done_fn *done, void *arg, char *err, size_t errlen);

/*
 * Forget a running command at once: no callback, nothing killed (it runs on
 * and is reaped by whoever inherits it). For shutdown. Not from inside done.
 */
void command_abandon(struct command *c);

/* The process id (for logs and tests). */
int command_pid(const struct command *c);

/* What a command printed, as kept for the log line. */
struct command_output {
	char text[COMMAND_OUTPUT_MAX];	/* NUL-terminated; lines joined with " | " */
	size_t len;			/* bytes in text */
	unsigned lines;			/* lines started */
	bool in_line;			/* the last byte kept was inside a line */
	bool cut;			/* output was dropped; text ends with "..." */
};

/*
 * Pure: add the bytes in[0..n) to o (zero it first). Keeps at most
 * COMMAND_OUTPUT_LINES non-empty lines and COMMAND_OUTPUT_MAX bytes; CR is
 * dropped, other control bytes become '?'; anything beyond is dropped and
 * marked with a trailing "...".
 */
void command_output_add(struct command_output *o, const char *in, size_t n);

#endif
