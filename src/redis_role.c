/*
 * redis_role — request and judgement of the redis_role check (see redis_role.h).
 *
 * The judge is a two-step sequence: the AUTH reply (when AUTH was sent) must
 * be a status "OK"; the ROLE reply must be an array whose first element is a
 * bulk or status string. "master" passes a check that wants the master,
 * "slave" one that wants a replica; anything else (including "sentinel")
 * fails with the role it saw.
 */
#include "redis_role.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/*
 * hiredis's reader allocates an array reply's element table as soon as it
 * reads the header: "*100000000\r\n" (a dozen hostile bytes) would cost
 * 800 MB. Readers zklb uses get hiredis's own object functions with
 * createArray refusing more than REDIS_ROLE_ARRAY_MAX elements (the reader
 * then fails with an out-of-memory error). Set once, read-only after.
 */
static redisReplyObjectFunctions bounded_fns;
static void *(*hiredis_create_array)(const redisReadTask *t, int elements);
static bool bounded_ok;
static pthread_once_t bounded_once = PTHREAD_ONCE_INIT;

static void *bounded_create_array(const redisReadTask *t, int elements)
{
	if (elements < 0 || elements > REDIS_ROLE_ARRAY_MAX)
		return NULL;
	return hiredis_create_array(t, elements);
}

static void bounded_init(void)
{
	redisReader *r = redisReaderCreate();
	if (!r || !r->fn)
		return;
	bounded_fns = *r->fn;
	hiredis_create_array = r->fn->createArray;
	bounded_fns.createArray = bounded_create_array;
	bounded_ok = true;
	redisReaderFree(r);
}

bool redis_role_bound_reader(struct redisReader *r)
{
	pthread_once(&bounded_once, bounded_init);
	if (!bounded_ok || !r)
		return false;
	r->fn = &bounded_fns;
	return true;
}

struct redis_role_judge {
	redisReader *reader;		/* owned; hiredis's RESP parser */
	enum redis_role_want want;	/* which role passes */
	bool awaiting_auth;		/* the next reply answers AUTH */
	size_t fed;			/* bytes fed so far, capped by REDIS_ROLE_REPLY_MAX */
	enum check_verdict verdict;	/* MORE until decided, then fixed */
	char reason[96];		/* the reason of the decided verdict */
};

char *redis_role_request(const char *password, size_t *len)
{
	char *auth = NULL, *role = NULL;
	int auth_len = 0;

	if (password) {
		const char *argv[] = { "AUTH", password };
		const size_t argvlen[] = { 4, strlen(password) };
		auth_len = redisFormatCommandArgv(&auth, 2, argv, argvlen);
		if (auth_len < 0)
			return NULL;
	}
	const char *rargv[] = { "ROLE" };
	const size_t rargvlen[] = { 4 };
	int role_len = redisFormatCommandArgv(&role, 1, rargv, rargvlen);
	if (role_len < 0) {
		redisFreeCommand(auth);
		return NULL;
	}
	char *out = xmalloc((size_t)auth_len + (size_t)role_len);
	if (auth)
		memcpy(out, auth, (size_t)auth_len);
	memcpy(out + auth_len, role, (size_t)role_len);
	*len = (size_t)auth_len + (size_t)role_len;
	if (auth) {
		/* the password must not linger in freed memory */
		explicit_bzero(auth, (size_t)auth_len);
		redisFreeCommand(auth);
	}
	redisFreeCommand(role);
	return out;
}

struct redis_role_judge *redis_role_judge_new(enum redis_role_want want, bool has_auth)
{
	struct redis_role_judge *j = xcalloc(1, sizeof(*j));
	j->reader = redisReaderCreate();
	if (!j->reader || !redis_role_bound_reader(j->reader)) {
		if (j->reader)
			redisReaderFree(j->reader);
		free(j);
		return NULL;
	}
	j->want = want;
	j->awaiting_auth = has_auth;
	j->verdict = CHECK_VERDICT_MORE;
	return j;
}

void redis_role_judge_free(struct redis_role_judge *j)
{
	if (!j)
		return;
	redisReaderFree(j->reader);
	free(j);
}

static enum check_verdict judge_decide(struct redis_role_judge *j, bool passed, const char *reason)
{
	j->verdict = passed ? CHECK_VERDICT_PASS : CHECK_VERDICT_FAIL;
	snprintf(j->reason, sizeof(j->reason), "%s", reason);
	return j->verdict;
}

/* Printable prefix of a server's error text, for a log line. */
static void judge_error_text(char *out, size_t size, const char *prefix, const redisReply *r)
{
	size_t n = r->str ? r->len : 0;
	size_t at = (size_t)snprintf(out, size, "%s", prefix);
	for (size_t i = 0; i < n && at + 1 < size; i++) {
		unsigned char ch = (unsigned char)r->str[i];
		out[at++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (at < size)
		out[at] = '\0';
}

enum check_verdict redis_role_verdict(const struct redisReply *r, enum redis_role_want want,
				      char *reason, size_t size)
{
	if (r->type == REDIS_REPLY_ERROR) {
		judge_error_text(reason, size, "error reply: ", r);
		return CHECK_VERDICT_FAIL;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
	    (r->element[0]->type != REDIS_REPLY_STRING && r->element[0]->type != REDIS_REPLY_STATUS)) {
		snprintf(reason, size, "bad reply");
		return CHECK_VERDICT_FAIL;
	}
	static const char *const names[] = { [REDIS_ROLE_MASTER] = "master",
					     [REDIS_ROLE_REPLICA] = "slave" };
	const redisReply *role = r->element[0];
	bool match = role->len == strlen(names[want]) && memcmp(role->str, names[want], role->len) == 0;
	judge_error_text(reason, size, "role ", role);
	return match ? CHECK_VERDICT_PASS : CHECK_VERDICT_FAIL;
}

enum check_verdict redis_role_auth_verdict(const struct redisReply *r, char *reason, size_t size)
{
	if (r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0)
		return CHECK_VERDICT_PASS;
	if (r->type == REDIS_REPLY_ERROR)
		judge_error_text(reason, size, "auth refused: ", r);
	else
		snprintf(reason, size, "bad reply");
	return CHECK_VERDICT_FAIL;
}

/* One complete reply; returns MORE while the sequence is not over. */
static enum check_verdict judge_reply(struct redis_role_judge *j, const redisReply *r)
{
	char text[96];

	if (j->awaiting_auth) {
		j->awaiting_auth = false;
		if (redis_role_auth_verdict(r, text, sizeof(text)) == CHECK_VERDICT_PASS)
			return CHECK_VERDICT_MORE;
		return judge_decide(j, false, text);
	}
	enum check_verdict v = redis_role_verdict(r, j->want, text, sizeof(text));
	return judge_decide(j, v == CHECK_VERDICT_PASS, text);
}

enum check_verdict redis_role_judge_feed(struct redis_role_judge *j, const void *buf, size_t len,
					 char *reason, size_t size)
{
	if (j->verdict == CHECK_VERDICT_MORE && len) {
		if (len > REDIS_ROLE_REPLY_MAX - j->fed) {
			judge_decide(j, false, "reply too long");
		} else if (redisReaderFeed(j->reader, buf, len) != REDIS_OK) {
			judge_decide(j, false, "protocol error");
		} else {
			j->fed += len;
		}
	}
	while (j->verdict == CHECK_VERDICT_MORE) {
		void *reply = NULL;
		if (redisReaderGetReply(j->reader, &reply) != REDIS_OK) {
			judge_decide(j, false, "protocol error");
			break;
		}
		if (!reply)
			break;
		judge_reply(j, reply);
		freeReplyObject(reply);
	}
	if (j->verdict != CHECK_VERDICT_MORE)
		snprintf(reason, size, "%s", j->reason);
	return j->verdict;
}
