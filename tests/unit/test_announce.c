/*
 * Unit tests for announce's pure parts: the UUID v4 format, the rise/fall
 * hysteresis, the node lifecycle table, the Curator 5 ServiceInstance JSON
 * (every field, its type, and no other field) and the `address: auto`
 * interface choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "announce.h"
#include "config.h"
#include "health.h"
#include "instance.h"

static void assert_uuid_v4(const char *s)
{
	assert_int_equal(strlen(s), ANNOUNCE_UUID_LEN);
	for (size_t i = 0; i < ANNOUNCE_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			assert_int_equal(s[i], '-');
			continue;
		}
		assert_true((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'));
	}
	assert_int_equal(s[14], '4');
	assert_non_null(strchr("89ab", s[19]));
}

static void test_uuid_format(void **state)
{
	uint8_t zero[16] = { 0 }, ones[16], seq[16];
	char out[ANNOUNCE_UUID_LEN + 1];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 16; i++)
		seq[i] = (uint8_t)(i * 17);
	announce_uuid_format(zero, out);
	assert_uuid_v4(out);
	assert_string_equal(out, "00000000-0000-4000-8000-000000000000");
	announce_uuid_format(ones, out);
	assert_uuid_v4(out);
	assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
	announce_uuid_format(seq, out);
	assert_uuid_v4(out);
	assert_string_equal(out, "00112233-4455-4677-8899-aabbccddeeff");
}

/* One check result through health.h's machine with an entry's parameters. */
static enum health_transition step(struct health *h, bool passed, uint32_t rise, uint32_t fall)
{
	struct check_conf c = { .rise = rise, .fall = fall };
	struct health_params p;

	announce_health_params(&p, &c);
	return health_on_check(h, &p, passed, 1000);
}

static void test_health_rise_fall(void **state)
{
	struct health h;

	/* starts down; one pass is not enough with rise 2 */
	health_init_checking(&h, 0);
	assert_false(health_routable(&h));
	assert_int_equal(step(&h, true, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, true, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, true, 2, 3), HEALTH_T_CHECK_UP);
	assert_true(health_routable(&h));
	assert_int_equal(step(&h, true, 2, 3), HEALTH_T_NONE);
	/* fall 3: two failures and a pass reset the count */
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, true, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_CHECK_DOWN);
	assert_false(health_routable(&h));
	assert_int_equal(step(&h, false, 2, 3), HEALTH_T_NONE);
	/* every failed attempt is counted (zklb_announce_check_failures_total) */
	assert_int_equal(h.check_failures_total, 7);
	/* rise/fall 0 behave as 1 */
	struct health z;
	health_init_checking(&z, 0);
	assert_int_equal(step(&z, true, 0, 0), HEALTH_T_CHECK_UP);
	assert_int_equal(step(&z, false, 0, 0), HEALTH_T_CHECK_DOWN);
}

/* auto follows the credentials; open and creator are what they say. */
static void test_acl_for(void **state)
{
	assert_int_equal(announce_acl_for(ANNOUNCE_ACL_AUTO, true), ZK_ACL_CREATOR);
	assert_int_equal(announce_acl_for(ANNOUNCE_ACL_AUTO, false), ZK_ACL_OPEN);
	assert_int_equal(announce_acl_for(ANNOUNCE_ACL_OPEN, true), ZK_ACL_OPEN);
	assert_int_equal(announce_acl_for(ANNOUNCE_ACL_CREATOR, true), ZK_ACL_CREATOR);
	assert_int_equal(announce_acl_for(ANNOUNCE_ACL_CREATOR, false), ZK_ACL_CREATOR);
}

static void test_node_transitions(void **state)
{
	assert_true(announce_node_allowed(ANNOUNCE_ABSENT, ANNOUNCE_CREATING));
	assert_false(announce_node_allowed(ANNOUNCE_ABSENT, ANNOUNCE_PRESENT));
	assert_false(announce_node_allowed(ANNOUNCE_ABSENT, ANNOUNCE_DELETING));
	assert_true(announce_node_allowed(ANNOUNCE_CREATING, ANNOUNCE_PRESENT));
	assert_true(announce_node_allowed(ANNOUNCE_CREATING, ANNOUNCE_ABSENT));
	assert_false(announce_node_allowed(ANNOUNCE_CREATING, ANNOUNCE_DELETING));
	assert_true(announce_node_allowed(ANNOUNCE_PRESENT, ANNOUNCE_DELETING));
	assert_true(announce_node_allowed(ANNOUNCE_PRESENT, ANNOUNCE_ABSENT));
	assert_false(announce_node_allowed(ANNOUNCE_PRESENT, ANNOUNCE_CREATING));
	assert_true(announce_node_allowed(ANNOUNCE_DELETING, ANNOUNCE_ABSENT));
	assert_true(announce_node_allowed(ANNOUNCE_DELETING, ANNOUNCE_PRESENT));
	assert_false(announce_node_allowed(ANNOUNCE_DELETING, ANNOUNCE_CREATING));
	assert_string_equal(announce_node_name(ANNOUNCE_PRESENT), "registered");
}

/* Exactly Curator 5's fields, in its order, with its types; no "enabled". */
static void test_curator_json(void **state)
{
	static const char *const keys[] = { "name", "id", "address", "port", "sslPort",
					    "payload", "registrationTimeUTC", "serviceType",
					    "uriSpec" };
	json_t *payload = json_pack("{s:s, s:i}", "zone", "a", "weight", 3);
	json_t *o = announce_curator_json("web", "6a1f0000-0000-4000-8000-000000000001",
					  "10.0.0.5", 9001, 0, payload, NULL, 1416800000000LL);
	const char *k;
	json_t *v;
	size_t i = 0;

	json_object_foreach(o, k, v) {
		assert_true(i < 9);
		assert_string_equal(k, keys[i]);
		i++;
	}
	assert_int_equal(i, 9);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "web");
	assert_string_equal(json_string_value(json_object_get(o, "id")),
			    "6a1f0000-0000-4000-8000-000000000001");
	assert_string_equal(json_string_value(json_object_get(o, "address")), "10.0.0.5");
	assert_true(json_is_integer(json_object_get(o, "port")));
	assert_int_equal(json_integer_value(json_object_get(o, "port")), 9001);
	assert_true(json_is_null(json_object_get(o, "sslPort")));
	/* a Map payload, as Curator writes one: "@class" first, then the keys */
	json_t *want = json_pack("{s:s, s:s, s:i}", "@class", "java.util.LinkedHashMap",
				 "zone", "a", "weight", 3);
	assert_true(json_equal(json_object_get(o, "payload"), want));
	assert_string_equal(json_object_iter_key(json_object_iter(json_object_get(o, "payload"))),
			    "@class");
	json_decref(want);
	assert_true(json_is_integer(json_object_get(o, "registrationTimeUTC")));
	assert_true(json_integer_value(json_object_get(o, "registrationTimeUTC")) == 1416800000000LL);
	assert_string_equal(json_string_value(json_object_get(o, "serviceType")), "DYNAMIC");
	assert_true(json_is_null(json_object_get(o, "uriSpec")));
	assert_null(json_object_get(o, "enabled"));

	/* zklb's own reader (Curator's rules) takes it back as it was meant. */
	char *text = json_dumps(o, JSON_COMPACT);
	struct instance in;
	char reason[INSTANCE_REASON_MAX];
	assert_int_equal(instance_decode_curator("6a1f0000-0000-4000-8000-000000000001", text,
						 strlen(text), &in, reason, sizeof(reason)),
			 INSTANCE_OK);
	assert_string_equal(in.host, "10.0.0.5");
	assert_int_equal(in.port, 9001);
	assert_int_equal(in.ssl_port, 0);
	assert_true(in.enabled);
	assert_true(in.registered_at_ms == 1416800000000LL);
	free(text);
	json_decref(o);

	/* sslPort set, no payload */
	o = announce_curator_json("db", "x", "db.internal", 5432, 5433, NULL, NULL, 1);
	assert_true(json_is_integer(json_object_get(o, "sslPort")));
	assert_int_equal(json_integer_value(json_object_get(o, "sslPort")), 5433);
	assert_true(json_is_null(json_object_get(o, "payload")));
	assert_string_equal(json_string_value(json_object_get(o, "address")), "db.internal");
	json_decref(o);

	/* payload_class names the class a payload-class consumer deserializes */
	o = announce_curator_json("web", "x", "10.0.0.5", 9001, 0, payload,
				  "com.example.InstanceDetails", 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "payload"),
							      "@class")),
			    "com.example.InstanceDetails");
	json_decref(o);
	json_decref(payload);
}

static struct sockaddr_in sin4(const char *ip)
{
	struct sockaddr_in s;
	memset(&s, 0, sizeof(s));
	s.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &s.sin_addr);
	return s;
}

static void test_pick_address(void **state)
{
	struct sockaddr_in lo = sin4("127.0.0.1"), down = sin4("10.0.0.9"), up = sin4("10.1.2.3"),
			   later = sin4("192.168.1.1");
	struct sockaddr_in6 v6;
	struct ifaddrs i_lo, i_down, i_v6, i_noaddr, i_up, i_later;
	char out[64];

	memset(&v6, 0, sizeof(v6));
	v6.sin6_family = AF_INET6;
	memset(&i_lo, 0, sizeof(i_lo));
	memset(&i_down, 0, sizeof(i_down));
	memset(&i_v6, 0, sizeof(i_v6));
	memset(&i_noaddr, 0, sizeof(i_noaddr));
	memset(&i_up, 0, sizeof(i_up));
	memset(&i_later, 0, sizeof(i_later));
	i_lo.ifa_name = "lo";
	i_lo.ifa_flags = IFF_UP | IFF_LOOPBACK;
	i_lo.ifa_addr = (struct sockaddr *)&lo;
	i_lo.ifa_next = &i_down;
	i_down.ifa_name = "eth0";
	i_down.ifa_flags = 0;
	i_down.ifa_addr = (struct sockaddr *)&down;
	i_down.ifa_next = &i_v6;
	i_v6.ifa_name = "eth1";
	i_v6.ifa_flags = IFF_UP;
	i_v6.ifa_addr = (struct sockaddr *)&v6;
	i_v6.ifa_next = &i_noaddr;
	i_noaddr.ifa_name = "tun0";
	i_noaddr.ifa_flags = IFF_UP;
	i_noaddr.ifa_addr = NULL;
	i_noaddr.ifa_next = &i_up;
	i_up.ifa_name = "eth2";
	i_up.ifa_flags = IFF_UP;
	i_up.ifa_addr = (struct sockaddr *)&up;
	i_up.ifa_next = &i_later;
	i_later.ifa_name = "eth3";
	i_later.ifa_flags = IFF_UP;
	i_later.ifa_addr = (struct sockaddr *)&later;

	assert_true(announce_pick_address(&i_lo, out, sizeof(out)));
	assert_string_equal(out, "10.1.2.3");
	/* only loopback and down interfaces: none */
	i_down.ifa_next = NULL;
	assert_false(announce_pick_address(&i_lo, out, sizeof(out)));
	assert_false(announce_pick_address(NULL, out, sizeof(out)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_format),
		cmocka_unit_test(test_health_rise_fall),
		cmocka_unit_test(test_node_transitions),
		cmocka_unit_test(test_acl_for),
		cmocka_unit_test(test_curator_json),
		cmocka_unit_test(test_pick_address),
	};
	return cmocka_run_group_tests_name("announce", tests, NULL, NULL);
}
