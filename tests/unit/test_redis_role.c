/*
 * Unit tests for redis_role: the request bytes (with and without AUTH) and
 * the judge fed real-shaped replies of master, replica and sentinel, split
 * at every byte, plus hostile input: error replies, wrong shapes, garbage,
 * an endless reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_role.h"

#define MASTER_ROLE "*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n"
#define REPLICA_ROLE "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n"
#define SENTINEL_ROLE "*2\r\n$8\r\nsentinel\r\n*1\r\n$10\r\nmymaster-1\r\n"

static enum check_verdict judge_all(enum redis_role_want want, bool auth, const char *bytes,
				    size_t len, char *reason, size_t size)
{
	struct redis_role_judge *j = redis_role_judge_new(want, auth);
	assert_non_null(j);
	enum check_verdict v = redis_role_judge_feed(j, bytes, len, reason, size);
	redis_role_judge_free(j);
	return v;
}

#define JUDGE(want, auth, s, reason) judge_all((want), (auth), (s), sizeof(s) - 1, (reason), sizeof(reason))

static void test_request_role_only(void **state)
{
	size_t len = 0;
	char *req = redis_role_request(NULL, &len);
	const char want[] = "*1\r\n$4\r\nROLE\r\n";
	assert_int_equal(len, sizeof(want) - 1);
	assert_memory_equal(req, want, len);
	free(req);
}

static void test_request_auth_then_role(void **state)
{
	size_t len = 0;
	char *req = redis_role_request("s3 cr\r\net", &len);
	const char want[] = "*2\r\n$4\r\nAUTH\r\n$9\r\ns3 cr\r\net\r\n*1\r\n$4\r\nROLE\r\n";
	assert_int_equal(len, sizeof(want) - 1);
	assert_memory_equal(req, want, len);
	free(req);
}

static void test_master_passes_master(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, MASTER_ROLE, reason), CHECK_VERDICT_PASS);
	assert_string_equal(reason, "role master");
}

static void test_replica_fails_master(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, REPLICA_ROLE, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "role slave");
}

static void test_replica_passes_replica_and_master_fails_it(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_REPLICA, false, REPLICA_ROLE, reason), CHECK_VERDICT_PASS);
	assert_int_equal(JUDGE(REDIS_ROLE_REPLICA, false, MASTER_ROLE, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "role master");
}

static void test_sentinel_fails_both(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, SENTINEL_ROLE, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "role sentinel");
	assert_int_equal(JUDGE(REDIS_ROLE_REPLICA, false, SENTINEL_ROLE, reason), CHECK_VERDICT_FAIL);
}

/* Split anywhere, the verdict is the same and comes only with the last byte. */
static void test_split_at_every_byte(void **state)
{
	const char all[] = "+OK\r\n" MASTER_ROLE;
	size_t len = sizeof(all) - 1;
	for (size_t cut = 0; cut <= len; cut++) {
		char reason[96];
		struct redis_role_judge *j = redis_role_judge_new(REDIS_ROLE_MASTER, true);
		enum check_verdict v = redis_role_judge_feed(j, all, cut, reason, sizeof(reason));
		if (cut < len)
			assert_int_equal(v, CHECK_VERDICT_MORE);
		v = redis_role_judge_feed(j, all + cut, len - cut, reason, sizeof(reason));
		assert_int_equal(v, CHECK_VERDICT_PASS);
		redis_role_judge_free(j);
	}
}

static void test_auth_refused(void **state)
{
	char reason[96];
	const char r[] = "-WRONGPASS invalid username-password pair or user is disabled.\r\n" MASTER_ROLE;
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, true, r, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "auth refused: WRONGPASS invalid username-password pair or user is disabled.");
}

/* Without AUTH, a password-protected server answers ROLE with -NOAUTH. */
static void test_error_reply(void **state)
{
	char reason[96];
	const char r[] = "-NOAUTH Authentication required.\r\n";
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, r, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "error reply: NOAUTH Authentication required.");
}

static void test_auth_answer_must_be_ok(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, true, ":1\r\n" MASTER_ROLE, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "bad reply");
	/* a master role reply in place of +OK is not accepted either */
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, true, MASTER_ROLE MASTER_ROLE, reason),
			 CHECK_VERDICT_FAIL);
}

static void test_wrong_shapes(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "+master\r\n", reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "bad reply");
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*0\r\n", reason), CHECK_VERDICT_FAIL);
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*-1\r\n", reason), CHECK_VERDICT_FAIL);
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*1\r\n:1\r\n", reason), CHECK_VERDICT_FAIL);
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*1\r\n*1\r\n$6\r\nmaster\r\n", reason),
			 CHECK_VERDICT_FAIL);
	/* a prefix of the name is not the name */
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*1\r\n$5\r\nmaste\r\n", reason), CHECK_VERDICT_FAIL);
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*1\r\n$7\r\nmasters\r\n", reason), CHECK_VERDICT_FAIL);
}

static void test_garbage_is_a_protocol_error(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "HTTP/1.1 200 OK\r\n", reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol error");
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "$-7\r\n", reason), CHECK_VERDICT_FAIL);
}

/* An array header announcing a huge count fails before anything is allocated for it. */
static void test_huge_array_header(void **state)
{
	char reason[96];
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*100000000\r\n", reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol error");
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, "*1\r\n*16385\r\n", reason), CHECK_VERDICT_FAIL);
	/* the limit itself is accepted (and waits for the elements) */
	struct redis_role_judge *j = redis_role_judge_new(REDIS_ROLE_MASTER, false);
	assert_int_equal(redis_role_judge_feed(j, "*16384\r\n", 8, reason, sizeof(reason)),
			 CHECK_VERDICT_MORE);
	redis_role_judge_free(j);
}

/* Non-printable bytes of an error text never reach the log line. */
static void test_error_text_is_printable(void **state)
{
	char reason[96];
	const char r[] = "-ERR \x1b[31mred\x01\r\n";
	assert_int_equal(JUDGE(REDIS_ROLE_MASTER, false, r, reason), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "error reply: ERR ?[31mred?");
}

/* A bulk string that never ends is cut off at REDIS_ROLE_REPLY_MAX. */
static void test_endless_reply(void **state)
{
	struct redis_role_judge *j = redis_role_judge_new(REDIS_ROLE_MASTER, false);
	char chunk[1000], reason[96];
	const char head[] = "*1\r\n$100000000\r\n";
	assert_int_equal(redis_role_judge_feed(j, head, sizeof(head) - 1, reason, sizeof(reason)),
			 CHECK_VERDICT_MORE);
	memset(chunk, 'x', sizeof(chunk));
	enum check_verdict v = CHECK_VERDICT_MORE;
	int rounds = 0;
	while (v == CHECK_VERDICT_MORE && rounds++ < 1000)
		v = redis_role_judge_feed(j, chunk, sizeof(chunk), reason, sizeof(reason));
	assert_int_equal(v, CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "reply too long");
	assert_true(rounds <= REDIS_ROLE_REPLY_MAX / (int)sizeof(chunk) + 1);
	/* decided: more bytes change nothing */
	assert_int_equal(redis_role_judge_feed(j, MASTER_ROLE, sizeof(MASTER_ROLE) - 1, reason,
					       sizeof(reason)), CHECK_VERDICT_FAIL);
	redis_role_judge_free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_role_only),
		cmocka_unit_test(test_request_auth_then_role),
		cmocka_unit_test(test_master_passes_master),
		cmocka_unit_test(test_replica_fails_master),
		cmocka_unit_test(test_replica_passes_replica_and_master_fails_it),
		cmocka_unit_test(test_sentinel_fails_both),
		cmocka_unit_test(test_split_at_every_byte),
		cmocka_unit_test(test_auth_refused),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_auth_answer_must_be_ok),
		cmocka_unit_test(test_wrong_shapes),
		cmocka_unit_test(test_garbage_is_a_protocol_error),
		cmocka_unit_test(test_huge_array_header),
		cmocka_unit_test(test_error_text_is_printable),
		cmocka_unit_test(test_endless_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
