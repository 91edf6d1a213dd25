/*
 * Unit tests for trunk: the allow list (no open relay), the judgement of a
 * stream's request, both lifecycles, the backend read watermark, and the
 * trunk: section of the configuration. The sockets are tested against real
 * processes in tests/integration/test_trunk.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "trunk.h"

static enum trunk_verdict check(const struct trunk_allow *a, const char *method,
				const char *protocol, const char *authority, struct net_addr *out)
{
	return trunk_request_check(a, method, protocol, authority,
				   authority ? strlen(authority) : 0, out);
}

static void test_allow_list(void **state)
{
	struct announce_conf ann[] = {
		{ .address = "10.0.0.5", .port = 9001 },
		{ .address = "auto", .port = 5432 },
		{ .address = "db.example", .port = 3306 },	/* not numeric: never reachable */
		{ .address = "10.0.0.5", .port = 9001 },	/* twice: once in the list */
	};
	const char *local[] = { "127.0.0.1", "10.0.0.5", "::1" };
	struct trunk_allow a;
	struct net_addr out;
	(void)state;
	trunk_allow_build(&a, ann, 4, local, 3);
	assert_int_equal(a.n, 4);
	assert_int_equal(check(&a, "CONNECT", NULL, "10.0.0.5:9001", &out), TRUNK_ALLOW);
	assert_int_equal(ntohs(((struct sockaddr_in *)&out.ss)->sin_port), 9001);
	assert_int_equal(check(&a, "CONNECT", NULL, "127.0.0.1:5432", &out), TRUNK_ALLOW);
	assert_int_equal(check(&a, "CONNECT", NULL, "[::1]:5432", &out), TRUNK_ALLOW);
	assert_int_equal(check(&a, "CONNECT", NULL, "10.0.0.5:5432", &out), TRUNK_ALLOW);
	/* Announced port on another address, another port, a name: refused. */
	assert_int_equal(check(&a, "CONNECT", NULL, "127.0.0.1:9001", &out), TRUNK_NOT_ANNOUNCED);
	assert_int_equal(check(&a, "CONNECT", NULL, "10.0.0.6:9001", &out), TRUNK_NOT_ANNOUNCED);
	assert_int_equal(check(&a, "CONNECT", NULL, "10.0.0.5:22", &out), TRUNK_NOT_ANNOUNCED);
	assert_int_equal(check(&a, "CONNECT", NULL, "db.example:3306", &out), TRUNK_BAD_REQUEST);
	assert_int_equal(check(&a, "CONNECT", NULL, "localhost:5432", &out), TRUNK_BAD_REQUEST);
	trunk_allow_free(&a);
	assert_int_equal(a.n, 0);
	/* No announce entry: nothing is reachable. */
	trunk_allow_build(&a, NULL, 0, local, 3);
	assert_int_equal(check(&a, "CONNECT", NULL, "127.0.0.1:5432", &out), TRUNK_NOT_ANNOUNCED);
	trunk_allow_free(&a);
}

static void test_request_shapes(void **state)
{
	struct announce_conf ann[] = { { .address = "127.0.0.3", .port = 80 } };
	struct trunk_allow a;
	struct net_addr out;
	(void)state;
	trunk_allow_build(&a, ann, 1, NULL, 0);
	assert_int_equal(check(&a, "GET", NULL, "127.0.0.3:80", &out), TRUNK_BAD_REQUEST);
	assert_int_equal(check(&a, NULL, NULL, "127.0.0.3:80", &out), TRUNK_BAD_REQUEST);
	assert_int_equal(check(&a, "connect", NULL, "127.0.0.3:80", &out), TRUNK_BAD_REQUEST);
	assert_int_equal(check(&a, "CONNECT", NULL, NULL, &out), TRUNK_BAD_REQUEST);
	/* Extended CONNECT (RFC 8441): our protocol only. */
	assert_int_equal(check(&a, "CONNECT", "zklb-tcp", "127.0.0.3:80", &out), TRUNK_ALLOW);
	assert_int_equal(check(&a, "CONNECT", "websocket", "127.0.0.3:80", &out), TRUNK_BAD_REQUEST);
	/* Hostile authorities: no port, port 0, junk, too long, an embedded NUL. */
	const char *bad[] = { "127.0.0.3", "127.0.0.3:", "127.0.0.3:0", "127.0.0.3:99999",
			      ":80", "127.0.0.3:80x", "[127.0.0.3]:80:1", "", "1.2.3.4.5:80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(check(&a, "CONNECT", NULL, bad[i], &out), TRUNK_BAD_REQUEST);
	char big[300];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(check(&a, "CONNECT", NULL, big, &out), TRUNK_BAD_REQUEST);
	assert_int_equal(trunk_request_check(&a, "CONNECT", NULL, "127.0.0.3:80\0x", 14, &out),
			 TRUNK_BAD_REQUEST);
	/* authority_len, not the NUL, ends the value. */
	assert_int_equal(trunk_request_check(&a, "CONNECT", NULL, "127.0.0.3:8000", 12, &out),
			 TRUNK_ALLOW);
	trunk_allow_free(&a);
}

static void test_stream_lifecycle(void **state)
{
	(void)state;
	assert_true(trunk_stream_transition_allowed(TRUNK_STREAM_CONNECTING, TRUNK_STREAM_OPEN));
	assert_true(trunk_stream_transition_allowed(TRUNK_STREAM_CONNECTING, TRUNK_STREAM_CLOSED));
	assert_false(trunk_stream_transition_allowed(TRUNK_STREAM_CONNECTING,
						     TRUNK_STREAM_HALF_CLOSED_LOCAL));
	assert_true(trunk_stream_transition_allowed(TRUNK_STREAM_OPEN,
						    TRUNK_STREAM_HALF_CLOSED_REMOTE));
	assert_true(trunk_stream_transition_allowed(TRUNK_STREAM_OPEN,
						    TRUNK_STREAM_HALF_CLOSED_LOCAL));
	assert_false(trunk_stream_transition_allowed(TRUNK_STREAM_HALF_CLOSED_LOCAL,
						     TRUNK_STREAM_HALF_CLOSED_REMOTE));
	assert_false(trunk_stream_transition_allowed(TRUNK_STREAM_HALF_CLOSED_REMOTE,
						     TRUNK_STREAM_OPEN));
	assert_true(trunk_stream_transition_allowed(TRUNK_STREAM_HALF_CLOSED_REMOTE,
						    TRUNK_STREAM_CLOSED));
	for (int s = 0; s < TRUNK_STREAM_STATES; s++) {
		assert_false(trunk_stream_transition_allowed(TRUNK_STREAM_CLOSED, s));
		assert_false(trunk_stream_transition_allowed(s, s));
		assert_string_not_equal(trunk_stream_state_name(s), "?");
	}
	assert_false(trunk_stream_transition_allowed(TRUNK_STREAM_STATES, TRUNK_STREAM_OPEN));
	assert_string_equal(trunk_stream_state_name(TRUNK_STREAM_STATES), "?");
}

static void test_conn_lifecycle(void **state)
{
	(void)state;
	assert_true(trunk_conn_transition_allowed(TRUNK_CONN_HANDSHAKE, TRUNK_CONN_OPEN));
	assert_true(trunk_conn_transition_allowed(TRUNK_CONN_HANDSHAKE, TRUNK_CONN_CLOSED));
	assert_false(trunk_conn_transition_allowed(TRUNK_CONN_HANDSHAKE, TRUNK_CONN_GOAWAY));
	assert_true(trunk_conn_transition_allowed(TRUNK_CONN_OPEN, TRUNK_CONN_GOAWAY));
	assert_true(trunk_conn_transition_allowed(TRUNK_CONN_GOAWAY, TRUNK_CONN_CLOSED));
	assert_false(trunk_conn_transition_allowed(TRUNK_CONN_GOAWAY, TRUNK_CONN_OPEN));
	assert_false(trunk_conn_transition_allowed(TRUNK_CONN_CLOSED, TRUNK_CONN_OPEN));
	assert_false(trunk_conn_transition_allowed(TRUNK_CONN_CLOSED, TRUNK_CONN_CLOSED));
}

/* Reading the backend stops at the cap and resumes at half (hysteresis). */
static void test_read_watermark(void **state)
{
	(void)state;
	assert_true(trunk_stream_wants_read(0, 65536, true));
	assert_true(trunk_stream_wants_read(65535, 65536, true));
	assert_false(trunk_stream_wants_read(65536, 65536, true));
	assert_false(trunk_stream_wants_read(40000, 65536, false));
	assert_true(trunk_stream_wants_read(32768, 65536, false));
	assert_true(trunk_stream_wants_read(0, 65536, false));
}

/* The payload key is added where no Curator consumer can break on it, nowhere else. */
static void test_payload_advertise(void **state)
{
	(void)state;
	json_t *p = trunk_payload_advertise(NULL, NULL, 4143);
	assert_non_null(p);
	assert_int_equal(json_integer_value(json_object_get(p, TRUNK_PAYLOAD_KEY)), 4143);
	assert_int_equal(json_object_size(p), 1);
	json_decref(p);
	json_t *m = json_pack("{s:s}", "zone", "eu-1");
	p = trunk_payload_advertise(m, NULL, 4143);
	assert_non_null(p);
	assert_string_equal(json_string_value(json_object_get(p, "zone")), "eu-1");
	assert_int_equal(json_integer_value(json_object_get(p, TRUNK_PAYLOAD_KEY)), 4143);
	assert_null(json_object_get(m, TRUNK_PAYLOAD_KEY));	/* the config's own stays */
	json_decref(p);
	assert_null(trunk_payload_advertise(m, "com.example.Meta", 4143));
	json_decref(m);
	json_t *str = json_string("plain");
	assert_null(trunk_payload_advertise(str, NULL, 4143));
	json_decref(str);
	assert_null(trunk_payload_advertise(NULL, NULL, 0));
}

static struct config *load(const char *yaml, struct config_errors *errs)
{
	*errs = (struct config_errors){ 0 };
	return config_load_string(yaml, strlen(yaml), "t.yaml", errs);
}

/* The calling side: what an answer's :status means for the relay. */
static void test_open_result(void **state)
{
	(void)state;
	assert_int_equal(trunk_open_result_from_status(200), TRUNK_OPEN_OK);
	assert_int_equal(trunk_open_result_from_status(299), TRUNK_OPEN_OK);
	assert_int_equal(trunk_open_result_from_status(502), TRUNK_OPEN_REFUSED);
	assert_int_equal(trunk_open_result_from_status(503), TRUNK_OPEN_REFUSED);
	assert_int_equal(trunk_open_result_from_status(504), TRUNK_OPEN_REFUSED);
	assert_int_equal(trunk_open_result_from_status(403), TRUNK_OPEN_NOT_ANNOUNCED);
	assert_int_equal(trunk_open_result_from_status(400), TRUNK_OPEN_BAD_ANSWER);
	assert_int_equal(trunk_open_result_from_status(0), TRUNK_OPEN_BAD_ANSWER);	/* none */
	assert_int_equal(trunk_open_result_from_status(101), TRUNK_OPEN_BAD_ANSWER);
	assert_int_equal(trunk_open_result_from_status(300), TRUNK_OPEN_BAD_ANSWER);
	assert_string_equal(trunk_open_result_name(TRUNK_OPEN_OK), "ok");
	assert_string_equal(trunk_open_result_name(TRUNK_OPEN_TRUNK_FAILED), "trunk_failed");
	assert_string_equal(trunk_open_result_name(TRUNK_OPEN_RESULTS), "?");
}

/* The calling side: which of a peer's connections takes a new stream. */
static void test_pick_conn(void **state)
{
	(void)state;
	uint32_t streams[4] = { 0 };
	bool usable[4] = { false };
	/* None yet: open one. */
	assert_int_equal(trunk_pick_conn(streams, usable, 0, 1), -1);
	/* One, default limit 1: it takes everything, however loaded. */
	streams[0] = 1000;
	usable[0] = true;
	assert_int_equal(trunk_pick_conn(streams, usable, 1, 1), 0);
	/* It goes away (GOAWAY, closing): a new one, even at the limit. */
	usable[0] = false;
	assert_int_equal(trunk_pick_conn(streams, usable, 1, 1), -1);
	/* Limit 2: a busy connection makes a second one open... */
	usable[0] = true;
	streams[0] = 1;
	assert_int_equal(trunk_pick_conn(streams, usable, 1, 2), -1);
	/* ...an idle one takes the stream... */
	streams[0] = 0;
	assert_int_equal(trunk_pick_conn(streams, usable, 1, 2), 0);
	/* ...and with two, the less loaded one. */
	streams[0] = 5;
	streams[1] = 3;
	usable[1] = true;
	assert_int_equal(trunk_pick_conn(streams, usable, 2, 2), 1);
	/* A closing one does not count against the limit, nor take streams. */
	streams[2] = 0;
	usable[2] = false;
	assert_int_equal(trunk_pick_conn(streams, usable, 3, 2), 1);
	usable[1] = false;
	assert_int_equal(trunk_pick_conn(streams, usable, 3, 2), -1);
}

/* The trunk port an instance's payload pairs advertise (hostile bytes from ZooKeeper). */
static uint16_t trunk_port_of(const char *pairs, size_t len)
{
	struct backend *be = backend_new("svc", 1, "id", "127.0.0.1", 80, 0, 1, 0);
	backend_set_payload(be, pairs, (uint16_t)len);
	uint16_t port = atomic_load(&be->trunk_port);
	backend_put(be);
	return port;
}

static void test_payload_trunk_port(void **state)
{
	(void)state;
	static const char ok[] = "zone\0a\0zklb.trunk\0" "4143\0";
	assert_int_equal(trunk_port_of(ok, sizeof(ok) - 1), 4143);
	static const char none[] = "zone\0a\0";
	assert_int_equal(trunk_port_of(none, sizeof(none) - 1), 0);
	assert_int_equal(trunk_port_of(NULL, 0), 0);
	static const char big[] = "zklb.trunk\0" "65536\0";
	assert_int_equal(trunk_port_of(big, sizeof(big) - 1), 0);
	static const char huge[] = "zklb.trunk\099999999999999999999\0";
	assert_int_equal(trunk_port_of(huge, sizeof(huge) - 1), 0);
	static const char text[] = "zklb.trunk\0x1\0";
	assert_int_equal(trunk_port_of(text, sizeof(text) - 1), 0);
	static const char empty[] = "zklb.trunk\0\0";
	assert_int_equal(trunk_port_of(empty, sizeof(empty) - 1), 0);
	static const char negative[] = "zklb.trunk\0-1\0";
	assert_int_equal(trunk_port_of(negative, sizeof(negative) - 1), 0);
	/* Cut short: no NUL after the value, or a key alone. */
	static const char cut[] = "zklb.trunk\0" "4143";
	assert_int_equal(trunk_port_of(cut, sizeof(cut) - 1), 0);
	static const char key_only[] = "zklb.trunk\0";
	assert_int_equal(trunk_port_of(key_only, sizeof(key_only) - 1), 0);
}

/* The configuration must be refused with a message containing `want`. */
static void expect_refused(const char *yaml, const char *want)
{
	struct config_errors errs;
	struct config *c = load(yaml, &errs);
	bool found = false;
	for (size_t i = 0; i < errs.n; i++)
		found |= strstr(errs.msgs[i], want) != NULL;
	if (c || !found) {
		print_message("wanted: %s\n", want);
		for (size_t i = 0; i < errs.n; i++)
			print_message("got:    %s\n", errs.msgs[i]);
	}
	assert_null(c);
	assert_true(found);
	config_errors_free(&errs);
}

/*
 * A trunk: section with certificate files that load, so that each refusal
 * below is for the key it names and not for the files: dir/t.pem, dir/t.key.
 */
static void trunk_tls(char *dir, char *tls, size_t len)
{
	assert_non_null(mkdtemp(dir));
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
		 "ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=t -keyout %s/t.key "
		 "-out %s/t.pem 2>/dev/null && chmod 600 %s/t.key", dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(tls, len, "tls: {ca: %s/t.pem, cert: %s/t.pem, key: %s/t.key}", dir, dir, dir);
}

static void rm_dir(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* via: and connections_per_peer in the configuration. */
static void test_via_config(void **state)
{
	struct config_errors errs;
	char dir[] = "/tmp/zklb-test-trunk-XXXXXX", tls[256], yaml[512];
	(void)state;
	expect_refused("services: {a: {listen: \"127.0.0.1:1\", via: trunk, "
		       "discovery: {type: static, backends: [\"127.0.0.1:2\"]}}}\n",
		       "services.a.via: via: trunk or auto needs a trunk: section");
	expect_refused("services: {a: {listen: \"127.0.0.1:1\", via: sideways, "
		       "discovery: {type: static, backends: [\"127.0.0.1:2\"]}}}\n",
		       "services.a.via: 'sideways' is not one of direct, trunk, auto");
	struct config *c = load("services: {a: {listen: \"127.0.0.1:1\", via: direct, "
				"discovery: {type: static, backends: [\"127.0.0.1:2\"]}}}\n", &errs);
	assert_non_null(c);
	assert_int_equal(c->services[0].via, VIA_DIRECT);
	config_free(c);
	config_errors_free(&errs);

	trunk_tls(dir, tls, sizeof(tls));
	snprintf(yaml, sizeof(yaml), "trunk: {listen: \"127.0.0.1:4143\", connections_per_peer: 17, "
		 "%s}\n", tls);
	expect_refused(yaml, "trunk.connections_per_peer: 17 is out of range 1..16");
	snprintf(yaml, sizeof(yaml), "trunk: {listen: \"127.0.0.1:4143\", connections_per_peer: 2, "
		 "%s}\nservices: {a: {listen: \"127.0.0.1:1\", via: trunk, discovery: {type: static, "
		 "backends: [\"127.0.0.1:2\"]}}}\n", tls);
	c = load(yaml, &errs);
	assert_non_null(c);
	assert_int_equal(c->trunk.connections_per_peer, 2);
	assert_int_equal(c->services[0].via, VIA_TRUNK);
	config_free(c);
	config_errors_free(&errs);
	rm_dir(dir);
}

static void test_config_section(void **state)
{
	struct config_errors errs;
	char dir[] = "/tmp/zklb-test-trunk-XXXXXX", tls[256], yaml[512];
	(void)state;
	struct config *c = load("services: {}\n", &errs);
	assert_non_null(c);
	assert_null(c->trunk.listen);
	config_free(c);
	config_errors_free(&errs);
	/* The keys are required, and the certificate files must load. */
	expect_refused("trunk: {listen: \"127.0.0.1:4143\"}\n", "trunk.tls: required key is missing");
	expect_refused("trunk: {listen: \"127.0.0.1:4143\", tls: {ca: /nonexistent, "
		       "cert: /nonexistent, key: /nonexistent}}\n", "/nonexistent");
	trunk_tls(dir, tls, sizeof(tls));
	snprintf(yaml, sizeof(yaml), "trunk: {listen: \"unix:/tmp/x\", %s}\n", tls);
	expect_refused(yaml, "trunk.listen: 'unix:/tmp/x' is not host:port");
	snprintf(yaml, sizeof(yaml), "trunk: {listen: \"127.0.0.1:4143\", stream_window: 1m, "
		 "connection_window: 64k, %s}\n", tls);
	expect_refused(yaml, "trunk.connection_window: 65536 is below stream_window (1048576)");
	snprintf(yaml, sizeof(yaml), "trunk: {listen: \"127.0.0.1:4143\", %s}\n", tls);
	c = load(yaml, &errs);
	assert_non_null(c);
	assert_string_equal(c->trunk.listen, "127.0.0.1:4143");
	config_free(c);
	config_errors_free(&errs);
	rm_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_request_shapes),
		cmocka_unit_test(test_stream_lifecycle),
		cmocka_unit_test(test_conn_lifecycle),
		cmocka_unit_test(test_read_watermark),
		cmocka_unit_test(test_payload_advertise),
		cmocka_unit_test(test_config_section),
		cmocka_unit_test(test_open_result),
		cmocka_unit_test(test_pick_conn),
		cmocka_unit_test(test_via_config),
		cmocka_unit_test(test_payload_trunk_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
