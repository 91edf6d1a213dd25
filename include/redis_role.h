/*
 * redis_role — the pure part of the redis_role check: the request (AUTH when
 * a password is given, then ROLE) and the judgement of the replies. No
 * sockets, no clocks: check.c moves the bytes, this module only reads them.
 *
 * Replies are parsed with hiredis's reader (hostile input: a malformed
 * reply, an error reply, a reply of the wrong shape or more than
 * REDIS_ROLE_REPLY_MAX bytes all fail; nothing is trusted beyond what the
 * reader parsed).
 *
 * Thread: any; a judge is used by one thread.
 */
#ifndef ZKLB_REDIS_ROLE_H
#define ZKLB_REDIS_ROLE_H

#include <stdbool.h>
#include <stddef.h>

#include "check.h"
#include "config.h"

/* Bytes of replies a judge reads before it gives up (a master lists its replicas). */
#define REDIS_ROLE_REPLY_MAX (64 * 1024)
/* Elements of one array reply any zklb hiredis reader accepts. */
#define REDIS_ROLE_ARRAY_MAX 16384

struct redis_role_judge;

/*
 * The request bytes: "AUTH <password>" (when password is not NULL) then
 * "ROLE", in RESP. Owned by the caller (free()); *len is set to its length.
 * Returns NULL only when out of memory.
 */
char *redis_role_request(const char *password, size_t *len);

/* A judge for one attempt. has_auth: the request started with AUTH. */
struct redis_role_judge *redis_role_judge_new(enum redis_role_want want, bool has_auth);

/* NULL is a no-op. */
void redis_role_judge_free(struct redis_role_judge *j);

/*
 * Feed buf[0..len) (the next bytes of the replies). Returns MORE until both
 * replies are in, then PASS or FAIL with a short reason in reason[0..size)
 * ("role master", "role slave", "auth refused: <error>", "error reply:
 * <error>", "bad reply", "reply too long", "protocol error"). Once decided,
 * the verdict stays and further bytes are ignored.
 */
enum check_verdict redis_role_judge_feed(struct redis_role_judge *j, const void *buf, size_t len,
					 char *reason, size_t size);

struct redisReply;
struct redisReader;

/*
 * Make hiredis reader r refuse array replies of more than
 * REDIS_ROLE_ARRAY_MAX elements before allocating them (hiredis allocates
 * what the header announces). For every reader of hostile bytes: the
 * judge's, sentinel.c's async contexts'. False when hiredis cannot say.
 */
bool redis_role_bound_reader(struct redisReader *r);

/*
 * The same judgement on replies already parsed (sentinel.c's hiredis
 * client): a ROLE reply, and an AUTH reply (PASS for +OK).
 */
enum check_verdict redis_role_verdict(const struct redisReply *r, enum redis_role_want want,
				      char *reason, size_t size);
enum check_verdict redis_role_auth_verdict(const struct redisReply *r, char *reason, size_t size);

#endif
