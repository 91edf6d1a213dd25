/*
 * upgrade_cmd — `zklb upgrade -c FILE`: the hot upgrade (upgrade.h) asked of
 * the running zklb from the command line, waited for, and reported in one
 * line with an exit status (0: a new process serves; 1: it failed, or no
 * outcome in time; the old process then serves on, as upgrade.h promises).
 *
 * How the running zklb is found: through its admin API, whose address (and
 * bearer token) FILE gives — the same file the running zklb was started
 * with. That is the one handle every running zklb has (there is no pid
 * file, and a pid from elsewhere may name another process by now); the
 * process that answers is the one upgraded, and its answers say how it went.
 * The request is POST /upgrade, a runtime API change, so it needs the unix
 * admin socket or the token, like every change. Then GET /services is polled
 * every UPGRADE_CMD_POLL_MS: a `pid` other than the old one means the new
 * process serves (the old one hands the admin socket over only then); the
 * old pid with `upgrade.failures` grown means it failed, and
 * `upgrade.last_failure` says why.
 *
 * The decision (upgrade_cmd_verdict) and the reading of an answer
 * (upgrade_cmd_parse_reply) are pure; the rest is blocking sockets.
 * Thread: the command's only thread.
 */
#ifndef ZKLB_UPGRADE_CMD_H
#define ZKLB_UPGRADE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;

#define UPGRADE_CMD_POLL_MS 100
#define UPGRADE_CMD_TIMEOUT_MS 40000	/* the running zklb gives the new binary 30 s */

/* What the running zklb said about itself (GET /services). */
struct upgrade_cmd_view {
	long pid;				/* of the process that answered */
	uint64_t failures;			/* upgrade.failures */
	char last_failure[512];			/* upgrade.last_failure */
};

enum upgrade_cmd_outcome {
	UPGRADE_CMD_WAIT = 0,			/* no outcome yet */
	UPGRADE_CMD_SERVING,			/* another process answers: the new one serves */
	UPGRADE_CMD_FAILED,			/* the old one answers, with one failure more */
};

/* Pure: what `now` (an answer) says of the upgrade asked of `before`. */
enum upgrade_cmd_outcome upgrade_cmd_verdict(const struct upgrade_cmd_view *before,
					     const struct upgrade_cmd_view *now);

/*
 * Pure: split an HTTP/1.x response buf[0..len) into its status code and body
 * (a pointer into buf, *body_len bytes). false when it is not one.
 */
bool upgrade_cmd_parse_reply(const char *buf, size_t len, int *status, const char **body,
			     size_t *body_len);

/*
 * Pure: read a GET /services body into *v. false (err says why) when it is
 * not JSON or lacks `pid` (a zklb older than `zklb upgrade`).
 */
bool upgrade_cmd_parse_view(const char *body, size_t len, struct upgrade_cmd_view *v, char *err,
			    size_t errlen);

/*
 * Run the command against the zklb that cfg's admin API reaches; one line to
 * out (success) or err (anything else). Returns the exit status: 0 or 1.
 */
int upgrade_cmd_run(const struct config *cfg, uint64_t timeout_ms, FILE *out, FILE *err);

#endif
