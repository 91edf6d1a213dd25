/*
 * check — the active health check runner: one `struct check` probes one
 * address every interval on a libevent base (the control thread's) and
 * reports each result through a callback. It keeps no health state: the
 * caller (checker.c, for services) feeds results to health_on_check() through
 * the service, which logs the state changes.
 *
 * Types (enum check_kind in config.h):
 *   tcp          a non-blocking connect completes within the timeout.
 *   send_expect  connect, send conf->send, read until the reply starts with
 *                conf->expect; a reply that diverges from it fails at once.
 *                No expect: pass once `send` is written. Neither: like tcp.
 *   http         "GET <path> HTTP/1.0" with a Host header (the address as
 *                "ip:port"); a 2xx or 3xx status line passes.
 *   redis_role   "AUTH <password>" (when conf->password_file is set; the file
 *                is read when the check starts) then "ROLE"; passes when the
 *                role is "master" (conf->role master) or "slave" (replica).
 *                The replies are judged by redis_role.c.
 *   mysql_primary  log in as conf->user (password from conf->password_file,
 *                read when the check starts) with mysql_native_password,
 *                then "SELECT @@global.read_only": passes on 0 (a writable
 *                primary). The protocol is spoken by mysql_probe.c.
 * The timeout covers the whole attempt (connect, send and read).
 *
 * Scheduling: the first attempt starts at a random offset in [0, interval),
 * and each next one interval ±10% after the previous one finished, so hosts
 * started together do not probe in lockstep and attempts never overlap.
 *
 * Reasons passed to the callback are short and fit a log line: "ok",
 * "status 200" (passes); "connect refused", "connect timeout", "connect
 * failed: <errno text>", "timeout", "unexpected reply", "connection closed",
 * "connection reset", "bad status line", "status 503", "read error: <errno
 * text>", "write error: <errno text>" (failures); redis_role: "role master",
 * "role slave" (pass or fail), "auth refused: <error>", "error reply:
 * <error>", "bad reply", "protocol error", "reply too long"; mysql_primary:
 * "read_only 0" (pass), "read_only 1", "auth refused: <code>: <message>",
 * "error <code>: <message>", "packet too long", "protocol error: <what>".
 * A local problem (socket() failing with EMFILE, say) says nothing about the
 * backend: it is logged at warn and the attempt is skipped, not reported.
 *
 * With the service's tls: (check_use_tls), a tcp check is the TLS handshake
 * and the others run inside TLS: check_transport_open() in check.c is the one
 * place a connected socket becomes a (TLS or plain) bufferevent.
 *
 * Thread: everything runs on the base's thread; no locks.
 */
#ifndef ZKLB_CHECK_H
#define ZKLB_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "util.h"

struct check_conf;

struct check;
struct tls_ctx;

/*
 * One result. reason is valid only during the call. elapsed_ms: from the start
 * of the attempt to the result. The callback may call check_stop(c) (the object
 * is reclaimed after the loop turn) and may start or stop other checks.
 */
typedef void (*check_result_fn)(struct check *c, bool passed, const char *reason,
				uint64_t elapsed_ms, void *arg);

/*
 * Start probing addr. base, conf, addr and on_result must not be NULL; label
 * may be. conf and label are copied (the config may be freed on
 * reload while the check runs); addr is copied. label prefixes the runner's
 * own log lines, e.g. "svc=web be=10.0.0.5:9001". Returns NULL (and logs) when
 * conf->type is CHECK_NONE, interval_ms or timeout_ms is 0, or the http path
 * holds a space or control character. The first result comes no sooner than
 * the next loop iteration, never from inside check_start(). redis_role: also
 * NULL (and logs) when the password file cannot be read or others may read it
 * (redis_role, mysql_primary).
 */
struct check *check_start(struct event_base *base, const struct check_conf *conf,
			  const struct net_addr *addr, const char *label,
			  check_result_fn on_result, void *arg);

/*
 * Stop: abandon an attempt in progress and cancel the timer; no callback is
 * made afterwards. The socket and the memory are reclaimed by the loop on its
 * next turn (or by event_base_free()), never under a running callback, so
 * this is safe from inside the check's own on_result. c must not be used
 * after the call. NULL is a no-op.
 */
void check_stop(struct check *c);

/*
 * Probe over TLS with ctx (a reference is taken), verifying `host` (or the
 * context's server_name): a tcp check is the handshake, send_expect and http
 * run inside TLS. Call right after check_start(), before the loop runs.
 */
void check_use_tls(struct check *c, struct tls_ctx *ctx, const char *host);

/* ---- pure pieces, exported for the unit tests ---- */

/* How a reply read so far compares with what the check wants. */
enum check_verdict {
	CHECK_VERDICT_MORE = 0,		/* undecided: read more */
	CHECK_VERDICT_PASS,
	CHECK_VERDICT_FAIL,
};

/*
 * Delay before the next attempt: uniform in [0, interval) for the first,
 * in [interval − interval/10, interval − interval/10 + interval/5] after that.
 */
uint64_t check_delay_ms(uint64_t interval_ms, bool first, struct rng *r);

/* send_expect: does reply[0..len) start with (or still agree with) expect? */
enum check_verdict check_expect_verdict(const void *reply, size_t len, const void *expect,
					size_t expect_len);

/*
 * http: judge the status line in reply[0..len). *status is set to the code
 * once a status line parses (else 0: "bad status line"). Anything but
 * "HTTP/d.d ddd" followed by SP/CR/LF fails, as does a line over 1024 bytes.
 */
enum check_verdict check_http_verdict(const char *reply, size_t len, int *status);

#endif
