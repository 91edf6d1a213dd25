/*
 * Unit tests for upgrade's new side, against a real socket pair playing the
 * old process: a well-formed offer is taken as sent (sockets by key and
 * count, announced ids, the session after ZK?/ZK!, READY); every malformed
 * or cut-short offer is refused, leaks no descriptor, and leaves the start
 * to proceed afresh; without the environment variable nothing happens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upgrade.h"

#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

/* The old process's side of the protocol, written independently of upgrade.c. */
static void old_send(int sock, const char *text, const int *fds, unsigned n)
{
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	char cbuf[CMSG_SPACE(8 * sizeof(int))];
	if (n) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)iov.iov_len);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A socket pair whose new-process end is named by UPGRADE_ENV; returns the old end. */
static int pair(void)
{
	int sv[2];
	char v[16];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	snprintf(v, sizeof(v), "%d", sv[1]);
	setenv(UPGRADE_ENV, v, 1);
	return sv[0];
}

static void test_not_an_upgrade(void **state)
{
	unsetenv(UPGRADE_ENV);
	assert_null(upgrade_inherit_open());
	assert_false(upgrade_inherit_take(NULL, "x", 1, (int[1]){ 0 }));
	upgrade_inherit_free(NULL);
}

static void test_offer_taken_as_sent(void **state)
{
	int old = pair();
	int p[2], q[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	old_send(old, "SOCK 2 127.0.0.1:8080", p, 2);
	old_send(old, "SOCK 1 unix:/run/zklb/admin.sock", q, 1);
	old_send(old, "ANN 9001 " UUID " app", NULL, 0);
	old_send(old, "ZK 1a2b3c 000102030405060708090a0b0c0d0e0f", NULL, 0);
	old_send(old, "END", NULL, 0);
	old_send(old, "ZK!", NULL, 0);	/* the answer to ZK?, queued in advance */
	close(p[0]);
	close(p[1]);
	close(q[0]);

	struct upgrade_inherit *in = upgrade_inherit_open();
	assert_non_null(in);
	assert_null(getenv(UPGRADE_ENV));	/* not passed on to commands */
	int fds[3] = { -1, -1, -1 };
	assert_false(upgrade_inherit_take(in, "127.0.0.1:8080", 3, fds));	/* another count */
	assert_int_equal(fds[0], -1);
	assert_true(upgrade_inherit_take(in, "127.0.0.1:8080", 2, fds));
	assert_true(fds[0] >= 0 && fds[1] >= 0);
	assert_false(upgrade_inherit_take(in, "127.0.0.1:8080", 2, fds + 2));	/* taken once */
	assert_false(upgrade_inherit_take(in, "127.0.0.1:9", 1, fds + 2));
	close(fds[0]);
	close(fds[1]);

	const char *svc, *id;
	uint16_t port;
	assert_true(upgrade_inherit_announced(in, 0, &svc, &port, &id));
	assert_string_equal(svc, "app");
	assert_int_equal(port, 9001);
	assert_string_equal(id, UUID);
	assert_false(upgrade_inherit_announced(in, 1, &svc, &port, &id));

	int64_t sid;
	char pw[16];
	assert_true(upgrade_inherit_session(in, &sid, pw));
	assert_int_equal(sid, 0x1a2b3c);
	for (int i = 0; i < 16; i++)
		assert_int_equal(pw[i], i);
	assert_false(upgrade_inherit_session(in, &sid, pw));	/* once */
	upgrade_inherit_ready(in);
	char buf[16] = "";
	assert_int_equal(recv(old, buf, sizeof(buf), 0), 3);	/* ZK? */
	assert_int_equal(recv(old, buf, sizeof(buf) - 1, 0), 5);
	buf[5] = '\0';
	assert_string_equal(buf, "READY");
	upgrade_inherit_free(in);	/* closes the "admin socket" nobody took: q's last reader */
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(write(q[1], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(q[1]);
	close(old);
}

static void test_malformed_offers_refused_without_leaks(void **state)
{
	static const char *const bad[] = {
		"SOCK 3 127.0.0.1:80",			/* 3 announced, 1 sent */
		"SOCK 1 ",				/* no key */
		"ZK zz 000102030405060708090a0b0c0d0e0f",
		"ZK 12 0001",				/* short password */
		"ZK 12 000102030405060708090a0b0c0d0e0g",
		"ANN 70000 " UUID " app",
		"ANN 80 not-a-uuid app",
		"ANN 80 " UUID,				/* no service */
		"HELLO",
		NULL,					/* EOF before END */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int before = open_fds();
		int old = pair();
		int p[2];
		assert_int_equal(pipe(p), 0);
		if (bad[i])
			old_send(old, bad[i], p, strncmp(bad[i], "SOCK", 4) == 0 ? 1 : 0);
		close(p[0]);
		close(p[1]);
		close(old);	/* EOF after the bad message (or at once) */
		assert_null(upgrade_inherit_open());
		assert_int_equal(open_fds(), before);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_an_upgrade),
		cmocka_unit_test(test_offer_taken_as_sent),
		cmocka_unit_test(test_malformed_offers_refused_without_leaks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
