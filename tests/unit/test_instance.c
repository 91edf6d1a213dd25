/*
 * Unit tests for instance: Curator and ServerSet decoding of good and bad
 * nodes (every leniency rule Curator's Jackson reader has, and every reason
 * to skip), the diff of two views, and the collapse guard's decisions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "instance.h"

static char reason[INSTANCE_REASON_MAX];

static enum instance_decode cur(const char *name, const char *json, struct instance *out)
{
	reason[0] = '\0';
	return instance_decode_curator(name, json, strlen(json), out, reason, sizeof(reason));
}

static enum instance_decode ss(const char *json, struct instance *out)
{
	reason[0] = '\0';
	return instance_decode_serverset(json, strlen(json), out, reason, sizeof(reason));
}

static void assert_bad(enum instance_decode r, const char *why)
{
	assert_int_equal(r, INSTANCE_BAD);
	if (!strstr(reason, why))
		fail_msg("reason '%s' does not mention '%s'", reason, why);
}

/* ---------- Curator ---------- */

static void test_curator_design_example(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("6a1f", "{\"name\":\"web\",\"id\":\"6a1f\",\"address\":\"10.0.0.5\","
				     "\"port\":9001,\"sslPort\":null,\"payload\":null,"
				     "\"registrationTimeUTC\":1416800000000,\"serviceType\":\"DYNAMIC\","
				     "\"uriSpec\":null}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "6a1f");
	assert_string_equal(i.host, "10.0.0.5");
	assert_int_equal(i.port, 9001);
	assert_int_equal(i.ssl_port, 0);
	assert_int_equal(i.weight, 1);
	assert_true(i.enabled);
	assert_int_equal(i.service_type, INSTANCE_DYNAMIC);
	assert_true(i.registered_at_ms == 1416800000000LL);
}

static void test_curator_id_from_child_name_or_json(void **state)
{
	struct instance i;
	(void)state;
	/* The child name wins, as in Curator's ServiceCache. */
	assert_int_equal(cur("child", "{\"id\":\"json\",\"address\":\"h\",\"port\":1}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "child");
	assert_int_equal(cur(NULL, "{\"id\":\"json\",\"address\":\"h\",\"port\":1}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "json");
	assert_int_equal(cur("", "{\"id\":\"json\",\"address\":\"h\",\"port\":1}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "json");
	assert_bad(cur(NULL, "{\"address\":\"h\",\"port\":1}", &i), "no id");
	assert_bad(cur(NULL, "{\"id\":7,\"address\":\"h\",\"port\":1}", &i), "no id");
	assert_bad(cur(NULL, "{\"id\":\"a\\u0001b\",\"address\":\"h\",\"port\":1}", &i),
		   "invalid id");
}

static void test_curator_long_id(void **state)
{
	char name[INSTANCE_ID_MAX + 10];
	struct instance i;
	(void)state;
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_bad(cur(name, "{\"address\":\"h\",\"port\":1}", &i), "invalid id");
	name[INSTANCE_ID_MAX - 1] = '\0';	/* the longest that fits */
	assert_int_equal(cur(name, "{\"address\":\"h\",\"port\":1}", &i), INSTANCE_OK);
	assert_int_equal(strlen(i.id), INSTANCE_ID_MAX - 1);
}

static void test_curator_unknown_fields_and_payload(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"futureField\":[1,{\"x\":2}],"
				  "\"payload\":{\"@class\":\"com.example.Meta\",\"zone\":\"a\","
				  "\"nested\":{\"@class\":\"java.util.HashMap\",\"k\":[1,2]}}}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"payload\":\"text\"}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"payload\":[\"java.lang.String\",\"x\"]}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"name\":42}", &i), INSTANCE_OK);
}

/* All payload pairs of i as "k=v;k=v;". */
static const char *payload_of(const struct instance *i)
{
	static char out[INSTANCE_PAYLOAD_MAX * 2];
	const char *k, *v;
	size_t n = 0;
	out[0] = '\0';
	for (size_t off = 0; instance_payload_next(i, &off, &k, &v);)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s=%s;", k, v);
	return out;
}

static void test_payload_carried(void **state)
{
	struct instance i, j;
	(void)state;
	/* Top-level scalars in order; "@class", nested values, null and reals left out. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"payload\":{\"@class\":\"x.Y\","
				  "\"zone\":\"eu-1a\",\"weight\":3,\"canary\":true,\"n\":null,\"r\":1.5,"
				  "\"m\":{\"k\":\"v\"},\"l\":[1]}}", &i), INSTANCE_OK);
	assert_string_equal(payload_of(&i), "zone=eu-1a;weight=3;canary=true;");
	/* A string or list payload carries nothing. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"payload\":\"text\"}", &j), INSTANCE_OK);
	assert_int_equal(j.payload_len, 0);
	/* The payload is part of what makes two instances the same. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"payload\":{\"zone\":\"eu-1b\"}}", &j),
			 INSTANCE_OK);
	assert_false(instance_same(&i, &j));
	/* What does not fit is not carried, never cut in the middle. */
	char big[1024];
	snprintf(big, sizeof(big), "{\"address\":\"h\",\"port\":1,\"payload\":{\"a\":\"1\",\"b\":\"%0300d\","
		 "\"c\":\"3\"}}", 0);
	assert_int_equal(cur("a", big, &i), INSTANCE_OK);
	assert_string_equal(payload_of(&i), "a=1;c=3;");
	/* ServerSet: shard and Finagle's metadata map. */
	assert_int_equal(ss("{\"serviceEndpoint\":{\"host\":\"10.0.0.1\",\"port\":80},\"status\":\"ALIVE\","
			    "\"shard\":4,\"metadata\":{\"zone\":\"z\"}}", &i), INSTANCE_OK);
	assert_string_equal(payload_of(&i), "shard=4;zone=z;");
	/* Round trip through the cache's JSON. */
	json_t *o = instance_to_curator_json(&i, "web");
	assert_int_equal(instance_from_curator_json("x", o, &j, reason, sizeof(reason)), INSTANCE_OK);
	json_decref(o);
	assert_string_equal(payload_of(&j), "shard=4;zone=z;");
}

static void test_curator_uri_spec(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"uriSpec\":null}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"uriSpec\":{\"parts\":["
				  "{\"value\":\"scheme\",\"variable\":true},"
				  "{\"value\":\"://\",\"variable\":false}]}}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1}", &i), INSTANCE_OK);
}

static void test_curator_enabled(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1}", &i), INSTANCE_OK);
	assert_true(i.enabled);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":null}", &i),
			 INSTANCE_OK);
	assert_true(i.enabled);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":true}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":false}", &i),
			 INSTANCE_DISABLED);
	assert_false(i.enabled);
	assert_string_equal(i.id, "a");		/* still decoded */
	assert_non_null(strstr(reason, "enabled"));
	/* Jackson's scalar coercions. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":\"false\"}", &i),
			 INSTANCE_DISABLED);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":\"TRUE\"}", &i),
			 INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":0}", &i),
			 INSTANCE_DISABLED);
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":{}}", &i), "enabled");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"enabled\":\"yes\"}", &i), "enabled");
}

static void test_curator_service_type(void **state)
{
	static const struct {
		const char *json;
		enum instance_service_type t;
	} ok[] = {
		{ "{\"address\":\"h\",\"port\":1}", INSTANCE_DYNAMIC },
		{ "{\"address\":\"h\",\"port\":1,\"serviceType\":null}", INSTANCE_DYNAMIC },
		{ "{\"address\":\"h\",\"port\":1,\"serviceType\":\"DYNAMIC\"}", INSTANCE_DYNAMIC },
		{ "{\"address\":\"h\",\"port\":1,\"serviceType\":\"STATIC\"}", INSTANCE_STATIC },
		{ "{\"address\":\"h\",\"port\":1,\"serviceType\":\"PERMANENT\"}", INSTANCE_PERMANENT },
		{ "{\"address\":\"h\",\"port\":1,\"serviceType\":\"DYNAMIC_SEQUENTIAL\"}",
		  INSTANCE_DYNAMIC_SEQUENTIAL },
	};
	struct instance i;
	(void)state;
	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
		assert_int_equal(cur("a", ok[k].json, &i), INSTANCE_OK);
		assert_int_equal(i.service_type, ok[k].t);
	}
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"serviceType\":\"EPHEMERAL\"}", &i),
		   "unknown serviceType");
	/* Jackson enums are case-sensitive. */
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"serviceType\":\"dynamic\"}", &i),
		   "unknown serviceType");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"serviceType\":1}", &i),
		   "serviceType");
	assert_string_equal(instance_service_type_name(INSTANCE_PERMANENT), "PERMANENT");
	/*
	 * A value quoted in the reason is cut at 40 bytes, here inside a two-byte
	 * character: the reason stays UTF-8 (else /services, which shows it as a
	 * JSON string, left the node out of its skipped list).
	 */
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"serviceType\":\"a\u00e9\u00e9"
		       "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		       "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\"}", &i),
		   "unknown serviceType");
	json_t *shown = json_string(reason);
	if (!shown)
		fail_msg("the reason is not UTF-8: %s", reason);
	json_decref(shown);
}

static void test_curator_ports(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":\"9001\"}", &i), INSTANCE_OK);
	assert_int_equal(i.port, 9001);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":9001.0}", &i), INSTANCE_OK);
	assert_int_equal(i.port, 9001);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1}", &i), INSTANCE_OK);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":65535}", &i), INSTANCE_OK);
	assert_int_equal(i.port, 65535);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":9001,\"sslPort\":9443}", &i),
			 INSTANCE_OK);
	assert_int_equal(i.ssl_port, 9443);
	/* TLS-only Curator instance: port null, sslPort set. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":null,\"sslPort\":9443}", &i),
			 INSTANCE_OK);
	assert_int_equal(i.port, 0);
	assert_int_equal(i.ssl_port, 9443);

	assert_bad(cur("a", "{\"address\":\"h\"}", &i), "no port");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":null,\"sslPort\":null}", &i), "no port");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":0}", &i), "out of range");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":65536}", &i), "out of range");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":-1}", &i), "out of range");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":99999999999}", &i), "out of range");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":9001.5}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":\"90x1\"}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":\"\"}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":true}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":[9001]}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1e300}", &i), "not an integer");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1,\"sslPort\":70000}", &i), "sslPort");
}

static void test_curator_address(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"web-1.example.com\",\"port\":1}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.host, "web-1.example.com");
	assert_int_equal(cur("a", "{\"address\":\"::1\",\"port\":1}", &i), INSTANCE_OK);
	assert_string_equal(i.host, "::1");
	assert_int_equal(cur("a", "{\"address\":\"[fe80::1%eth0]\",\"port\":1}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.host, "fe80::1%eth0");
	assert_bad(cur("a", "{\"port\":1}", &i), "no address");
	assert_bad(cur("a", "{\"address\":null,\"port\":1}", &i), "no address");
	assert_bad(cur("a", "{\"address\":\"\",\"port\":1}", &i), "invalid address");
	assert_bad(cur("a", "{\"address\":\"[]\",\"port\":1}", &i), "invalid address");
	assert_bad(cur("a", "{\"address\":\"a b\",\"port\":1}", &i), "invalid address");
	assert_bad(cur("a", "{\"address\":\"h\\n\",\"port\":1}", &i), "invalid address");
	assert_bad(cur("a", "{\"address\":17,\"port\":1}", &i), "invalid address");
}

static void test_curator_not_json(void **state)
{
	struct instance i;
	(void)state;
	assert_bad(cur("a", "", &i), "empty");
	assert_bad(cur("a", "not json", &i), "not JSON");
	assert_bad(cur("a", "{\"address\":\"h\",\"port\":1", &i), "not JSON");
	assert_bad(cur("a", "[1,2]", &i), "not a JSON object");
	assert_bad(cur("a", "\"str\"", &i), "not a JSON object");
	assert_bad(cur("a", "null", &i), "not a JSON object");
	/* Invalid UTF-8 and NUL escapes are refused by the parser. */
	assert_bad(cur("a", "{\"address\":\"\xff\",\"port\":1}", &i), "not JSON");
	assert_bad(cur("a", "{\"address\":\"a\\u0000b\",\"port\":1}", &i), "not JSON");
	/* Jackson stops after the first document; trailing bytes are ignored. */
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1} trailing junk", &i),
			 INSTANCE_OK);
}

static void test_curator_not_nul_terminated(void **state)
{
	const char buf[] = "{\"address\":\"h\",\"port\":12}XXXXXXXX";
	struct instance i;
	(void)state;
	/* Only the first len bytes count. */
	assert_int_equal(instance_decode_curator("a", buf, 26, &i, reason, sizeof(reason)),
			 INSTANCE_OK);
	assert_int_equal(i.port, 12);
	assert_int_equal(instance_decode_curator("a", buf, 20, &i, reason, sizeof(reason)),
			 INSTANCE_BAD);
}

/* A valid instance padded with payload to exactly `size` bytes. */
static char *padded(size_t size)
{
	static const char head[] = "{\"address\":\"h\",\"port\":1,\"payload\":\"";
	static const char tail[] = "\"}";
	char *b = malloc(size);
	assert_non_null(b);
	memcpy(b, head, sizeof(head) - 1);
	memset(b + sizeof(head) - 1, 'x', size - (sizeof(head) - 1) - (sizeof(tail) - 1));
	memcpy(b + size - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	return b;
}

static void test_curator_size_limit(void **state)
{
	struct instance i;
	char *b;
	(void)state;
	b = padded(INSTANCE_MAX_DATA);
	assert_int_equal(instance_decode_curator("a", b, INSTANCE_MAX_DATA, &i, reason,
						 sizeof(reason)),
			 INSTANCE_OK);
	free(b);
	b = padded(INSTANCE_MAX_DATA + 1);
	reason[0] = '\0';
	assert_int_equal(instance_decode_curator("a", b, INSTANCE_MAX_DATA + 1, &i, reason,
						 sizeof(reason)),
			 INSTANCE_BAD);
	assert_non_null(strstr(reason, "limit"));
	free(b);
}

static void test_curator_registration_time_lenient(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"registrationTimeUTC\":\"soon\"}",
			     &i),
			 INSTANCE_OK);
	assert_true(i.registered_at_ms == 0);
	assert_int_equal(cur("a", "{\"address\":\"h\",\"port\":1,\"registrationTimeUTC\":\"1700000000000\"}",
			     &i),
			 INSTANCE_OK);
	assert_true(i.registered_at_ms == 1700000000000LL);
}

static void test_curator_reason_buffer_optional(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(instance_decode_curator("a", "x", 1, &i, NULL, 0), INSTANCE_BAD);
	char tiny[4];
	assert_int_equal(instance_decode_curator("a", "x", 1, &i, tiny, sizeof(tiny)),
			 INSTANCE_BAD);
	assert_int_equal(strlen(tiny), 3);
}

static void test_curator_json_roundtrip(void **state)
{
	struct instance a, b;
	json_t *j;
	(void)state;
	assert_int_equal(cur("id-1", "{\"address\":\"10.1.2.3\",\"port\":80,\"sslPort\":443,"
				     "\"registrationTimeUTC\":5,\"serviceType\":\"STATIC\"}", &a),
			 INSTANCE_OK);
	j = instance_to_curator_json(&a, "web");
	assert_null(json_object_get(j, "enabled"));	/* what Curator 5 writes */
	assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
	assert_int_equal(instance_from_curator_json(NULL, j, &b, reason, sizeof(reason)),
			 INSTANCE_OK);
	assert_true(instance_same(&a, &b));
	assert_int_equal(b.service_type, INSTANCE_STATIC);
	assert_true(b.registered_at_ms == 5);
	json_decref(j);

	a.enabled = false;
	j = instance_to_curator_json(&a, "web");
	assert_true(json_is_false(json_object_get(j, "enabled")));
	assert_int_equal(instance_from_curator_json(NULL, j, &b, reason, sizeof(reason)),
			 INSTANCE_DISABLED);
	json_decref(j);

	j = json_array();
	assert_int_equal(instance_from_curator_json("x", j, &b, reason, sizeof(reason)),
			 INSTANCE_BAD);
	json_decref(j);
}

static void test_curator_dynamic_sequential_id(void **state)
{
	struct instance i;
	(void)state;
	/* The node is the id plus ZooKeeper's counter; Curator's users see the JSON id. */
	assert_int_equal(cur("seq0000000003", "{\"id\":\"seq\",\"address\":\"h\",\"port\":1,"
				"\"serviceType\":\"DYNAMIC_SEQUENTIAL\"}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "seq");
	/* Without a JSON id, the node name is the identity still. */
	assert_int_equal(cur("seq0000000003", "{\"address\":\"h\",\"port\":1,"
				"\"serviceType\":\"DYNAMIC_SEQUENTIAL\"}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "seq0000000003");
	assert_int_equal(cur("seq0000000003", "{\"id\":\"\",\"address\":\"h\",\"port\":1,"
				"\"serviceType\":\"DYNAMIC_SEQUENTIAL\"}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "seq0000000003");
	/* Other types keep the node name (Curator names the node after the id). */
	assert_int_equal(cur("node", "{\"id\":\"json\",\"address\":\"h\",\"port\":1,"
				"\"serviceType\":\"DYNAMIC\"}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "node");
	assert_bad(cur("seq1", "{\"id\":\"a\\u0001b\",\"address\":\"h\",\"port\":1,"
			  "\"serviceType\":\"DYNAMIC_SEQUENTIAL\"}", &i), "invalid id");
}

static void test_cmp_nodes(void **state)
{
	struct instance a = { .id = "x", .registered_at_ms = 100 };
	struct instance b = { .id = "x", .registered_at_ms = 200 };
	struct instance c = { .id = "y", .registered_at_ms = 900 };
	(void)state;
	/* by id first */
	assert_true(instance_cmp_nodes(&a, "n1", &c, "n0") < 0);
	assert_true(instance_cmp_nodes(&c, "n0", &a, "n1") > 0);
	/* then the newer registration first */
	assert_true(instance_cmp_nodes(&b, "x0000000001", &a, "x0000000002") < 0);
	assert_true(instance_cmp_nodes(&a, "x0000000002", &b, "x0000000001") > 0);
	/* then the later node first */
	b.registered_at_ms = a.registered_at_ms;
	assert_true(instance_cmp_nodes(&a, "x0000000002", &b, "x0000000001") < 0);
	assert_true(instance_cmp_nodes(&a, "x0000000001", &b, "x0000000002") > 0);
	assert_int_equal(instance_cmp_nodes(&a, "n", &b, "n"), 0);
}

static void assert_payload(const char *in, const char *cls, const char *want)
{
	json_error_t err;
	json_t *p = in ? json_loads(in, JSON_DECODE_ANY, &err) : NULL;
	json_t *out = instance_curator_payload(p, cls);
	char *got = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
	if (strcmp(got, want) != 0)
		fail_msg("payload %s (class %s): got %s, want %s", in ? in : "NULL",
			 cls ? cls : "-", got, want);
	free(got);
	json_decref(out);
	json_decref(p);
}

/* Each payload as Curator (Jackson, @JsonTypeInfo(use = CLASS)) writes it. */
static void test_curator_payload(void **state)
{
	(void)state;
	assert_payload(NULL, NULL, "null");
	assert_payload("null", NULL, "null");
	assert_payload("{\"zone\":\"a\",\"n\":{\"x\":[1]}}", NULL,
		       "{\"@class\":\"java.util.LinkedHashMap\",\"zone\":\"a\",\"n\":{\"x\":[1]}}");
	assert_payload("{}", NULL, "{\"@class\":\"java.util.LinkedHashMap\"}");
	assert_payload("{\"zone\":\"a\"}", "com.example.D",
		       "{\"@class\":\"com.example.D\",\"zone\":\"a\"}");
	/* a mapping's own "@class" is kept, and moved first as Jackson writes it */
	assert_payload("{\"zone\":\"a\",\"@class\":\"com.example.D\"}", NULL,
		       "{\"@class\":\"com.example.D\",\"zone\":\"a\"}");
	assert_payload("[\"a\",{\"b\":1}]", NULL, "[\"java.util.ArrayList\",[\"a\",{\"b\":1}]]");
	assert_payload("[]", NULL, "[\"java.util.ArrayList\",[]]");
	assert_payload("\"text\"", NULL, "\"text\"");
	assert_payload("true", NULL, "true");
	assert_payload("1.5", NULL, "1.5");
	assert_payload("2147483647", NULL, "2147483647");
	assert_payload("-2147483648", NULL, "-2147483648");
	assert_payload("2147483648", NULL, "[\"java.lang.Long\",2147483648]");
	assert_payload("-2147483649", NULL, "[\"java.lang.Long\",-2147483649]");
}

static void test_java_class_names(void **state)
{
	(void)state;
	assert_true(instance_java_class_ok("InstanceDetails"));
	assert_true(instance_java_class_ok("com.example.InstanceDetails"));
	assert_true(instance_java_class_ok("com.example.Outer$Inner"));
	assert_true(instance_java_class_ok("_a.$b.c9"));
	assert_false(instance_java_class_ok(NULL));
	assert_false(instance_java_class_ok(""));
	assert_false(instance_java_class_ok("com..example"));
	assert_false(instance_java_class_ok(".com"));
	assert_false(instance_java_class_ok("com."));
	assert_false(instance_java_class_ok("com.9x"));
	assert_false(instance_java_class_ok("com.ex ample"));
	assert_false(instance_java_class_ok("java.util.List<String>"));
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(instance_java_class_ok(longname));
	longname[255] = '\0';
	assert_true(instance_java_class_ok(longname));
}

/* ---------- ServerSet ---------- */

static void test_serverset_good(void **state)
{
	struct instance i;
	(void)state;
	assert_int_equal(ss("{\"serviceEndpoint\":{\"host\":\"10.0.0.5\",\"port\":9001},"
			    "\"additionalEndpoints\":{\"http\":{\"host\":\"10.0.0.5\",\"port\":80},"
			    "\"admin\":{\"host\":\"x\",\"port\":\"bad\"}},"
			    "\"status\":\"ALIVE\",\"shard\":3}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "10.0.0.5:9001");
	assert_string_equal(i.host, "10.0.0.5");
	assert_int_equal(i.port, 9001);
	assert_int_equal(i.ssl_port, 0);
	assert_true(i.enabled);

	assert_int_equal(ss("{\"serviceEndpoint\":{\"host\":\"::1\",\"port\":9001},"
			    "\"status\":\"ALIVE\"}", &i),
			 INSTANCE_OK);
	assert_string_equal(i.id, "[::1]:9001");
}

static void test_serverset_status(void **state)
{
	static const char *const not_alive[] = { "DEAD", "STARTING", "STOPPING", "STOPPED",
						 "WARNING", "UNKNOWN", "alive" };
	char json[256];
	struct instance i;
	(void)state;
	for (size_t k = 0; k < sizeof(not_alive) / sizeof(not_alive[0]); k++) {
		snprintf(json, sizeof(json),
			 "{\"serviceEndpoint\":{\"host\":\"h\",\"port\":1},\"status\":\"%s\"}",
			 not_alive[k]);
		assert_int_equal(ss(json, &i), INSTANCE_DISABLED);
		assert_false(i.enabled);
		assert_non_null(strstr(reason, not_alive[k]));
	}
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"h\",\"port\":1}}", &i), "no status");
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"h\",\"port\":1},\"status\":2}", &i),
		   "status");
}

static void test_serverset_bad(void **state)
{
	struct instance i;
	(void)state;
	assert_bad(ss("{\"status\":\"ALIVE\"}", &i), "no serviceEndpoint");
	assert_bad(ss("{\"serviceEndpoint\":\"h:1\",\"status\":\"ALIVE\"}", &i),
		   "no serviceEndpoint");
	assert_bad(ss("{\"serviceEndpoint\":{\"port\":1},\"status\":\"ALIVE\"}", &i),
		   "no serviceEndpoint.host");
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"a b\",\"port\":1},\"status\":\"ALIVE\"}",
		      &i),
		   "invalid serviceEndpoint.host");
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"h\"},\"status\":\"ALIVE\"}", &i),
		   "no serviceEndpoint.port");
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"h\",\"port\":70000},\"status\":\"ALIVE\"}",
		      &i),
		   "out of range");
	assert_bad(ss("{\"serviceEndpoint\":{\"host\":\"h\",\"port\":\"x\"},\"status\":\"ALIVE\"}",
		      &i),
		   "not an integer");
	assert_bad(ss("garbage", &i), "not JSON");
	assert_bad(ss("", &i), "empty");
	assert_bad(ss("[]", &i), "not a JSON object");
}

/* ---------- views: sort, find, diff ---------- */

static struct instance mk(const char *id, const char *host, uint16_t port)
{
	struct instance i;
	memset(&i, 0, sizeof(i));
	snprintf(i.id, sizeof(i.id), "%s", id);
	snprintf(i.host, sizeof(i.host), "%s", host);
	i.port = port;
	i.weight = 1;
	i.enabled = true;
	return i;
}

static void test_sort_find(void **state)
{
	struct instance v[4] = { mk("d", "h", 1), mk("b", "h", 1), mk("a", "h", 1),
				 mk("c", "h", 1) };
	(void)state;
	instance_sort(v, 4);
	assert_string_equal(v[0].id, "a");
	assert_string_equal(v[3].id, "d");
	assert_int_equal(instance_find(v, 4, "c"), 2);
	assert_int_equal(instance_find(v, 4, "a"), 0);
	assert_int_equal(instance_find(v, 4, "zz"), -1);
	assert_int_equal(instance_find(v, 0, "a"), -1);
	instance_sort(NULL, 0);
}

struct seen {
	char log[256];
};

static void record(void *arg, enum instance_change ch, const struct instance *o,
		   const struct instance *n)
{
	static const char tag[] = { '+', '-', '~', '=' };
	struct seen *s = arg;
	size_t len = strlen(s->log);
	const struct instance *i = n ? n : o;
	if (ch == INSTANCE_ADDED)
		assert_null(o);
	if (ch == INSTANCE_REMOVED)
		assert_null(n);
	snprintf(s->log + len, sizeof(s->log) - len, "%c%s ", tag[ch], i->id);
}

static void test_diff(void **state)
{
	struct instance old_v[3] = { mk("a", "h", 1), mk("b", "h", 1), mk("c", "h", 1) };
	struct instance new_v[3] = { mk("b", "h", 2), mk("c", "h", 1), mk("d", "h", 1) };
	struct instance_diff d;
	struct seen s = { "" };
	(void)state;
	instance_diff(old_v, 3, new_v, 3, &d, record, &s);
	assert_int_equal(d.added, 1);
	assert_int_equal(d.removed, 1);
	assert_int_equal(d.changed, 1);
	assert_int_equal(d.kept, 1);
	assert_string_equal(s.log, "-a ~b =c +d ");

	instance_diff(NULL, 0, new_v, 3, &d, NULL, NULL);
	assert_int_equal(d.added, 3);
	instance_diff(old_v, 3, NULL, 0, &d, NULL, NULL);
	assert_int_equal(d.removed, 3);
	instance_diff(old_v, 3, old_v, 3, &d, NULL, NULL);
	assert_int_equal(d.kept, 3);
	assert_int_equal(d.added + d.removed + d.changed, 0);
}

static void test_same(void **state)
{
	struct instance a = mk("a", "h", 1), b = a;
	(void)state;
	assert_true(instance_same(&a, &b));
	b.ssl_port = 5;
	assert_false(instance_same(&a, &b));
	b = a;
	b.weight = 2;
	assert_false(instance_same(&a, &b));
	b = a;
	strcpy(b.host, "g");
	assert_false(instance_same(&a, &b));
	b = a;
	b.registered_at_ms = 99;	/* not a routing property */
	assert_true(instance_same(&a, &b));
}

static void test_endpoint(void **state)
{
	char buf[64];
	(void)state;
	instance_endpoint("10.0.0.1", 80, buf, sizeof(buf));
	assert_string_equal(buf, "10.0.0.1:80");
	instance_endpoint("::1", 80, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:80");
}

/* ---------- guard ---------- */

static const struct instance_guard_params gp = {
	.keep_last_known = true,
	.collapse_guard = 0.5,
	.collapse_hold_ms = 30000,
};

static void test_guard_verdicts(void **state)
{
	struct instance_guard_params p = gp;
	(void)state;
	/* Nothing applied yet: anything applies, even empty. */
	assert_int_equal(instance_guard_verdict(&p, 0, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_verdict(&p, 0, 5), INSTANCE_APPLY);
	/* Empty with keep_last_known. */
	assert_int_equal(instance_guard_verdict(&p, 4, 0), INSTANCE_KEEP);
	/* Shrinks: exactly half is not "more than half". */
	assert_int_equal(instance_guard_verdict(&p, 4, 2), INSTANCE_APPLY);
	assert_int_equal(instance_guard_verdict(&p, 4, 1), INSTANCE_HOLD);
	assert_int_equal(instance_guard_verdict(&p, 10, 4), INSTANCE_HOLD);
	assert_int_equal(instance_guard_verdict(&p, 10, 5), INSTANCE_APPLY);
	assert_int_equal(instance_guard_verdict(&p, 1, 1), INSTANCE_APPLY);
	/* Growth and replacement (same size) are never a collapse. */
	assert_int_equal(instance_guard_verdict(&p, 10, 20), INSTANCE_APPLY);
	assert_int_equal(instance_guard_verdict(&p, 10, 10), INSTANCE_APPLY);
	/* Without keep_last_known an empty set is a collapse like any other. */
	p.keep_last_known = false;
	assert_int_equal(instance_guard_verdict(&p, 4, 0), INSTANCE_HOLD);
	assert_int_equal(instance_guard_verdict(&p, 1, 0), INSTANCE_HOLD);
	/* collapse_guard 1 disables the guard. */
	p.collapse_guard = 1.0;
	assert_int_equal(instance_guard_verdict(&p, 4, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_verdict(&p, 100, 1), INSTANCE_APPLY);
	/* collapse_guard 0: any net loss holds. */
	p.collapse_guard = 0.0;
	assert_int_equal(instance_guard_verdict(&p, 4, 3), INSTANCE_HOLD);
	assert_int_equal(instance_guard_verdict(&p, 4, 4), INSTANCE_APPLY);
	p.keep_last_known = true;
	assert_int_equal(instance_guard_verdict(&p, 4, 0), INSTANCE_KEEP);
	assert_string_equal(instance_verdict_name(INSTANCE_HOLD), "hold");
}

static void test_guard_hold_expires(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	assert_int_equal(instance_guard_step(&g, &gp, 10, 2, 1000), INSTANCE_HOLD);
	assert_int_equal(g.state, INSTANCE_HOLD_HOLDING);
	assert_true(g.hold_until_ms == 31000);
	assert_true(g.holds_total == 1);
	/* A later, different collapse does not push the deadline back. */
	assert_int_equal(instance_guard_step(&g, &gp, 10, 3, 20000), INSTANCE_HOLD);
	assert_true(g.hold_until_ms == 31000);
	assert_true(g.holds_total == 1);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 3, 30999), INSTANCE_HOLD);
	/* Still a collapse at the deadline: it applies. */
	assert_int_equal(instance_guard_step(&g, &gp, 10, 3, 31000), INSTANCE_APPLY);
	assert_int_equal(g.state, INSTANCE_HOLD_IDLE);
}

static void test_guard_hold_recovers(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	assert_int_equal(instance_guard_step(&g, &gp, 10, 1, 0), INSTANCE_HOLD);
	/* The registrars came back: the new view is no collapse and applies now. */
	assert_int_equal(instance_guard_step(&g, &gp, 10, 9, 5000), INSTANCE_APPLY);
	assert_int_equal(g.state, INSTANCE_HOLD_IDLE);
	/* A new collapse starts a new hold with a new deadline. */
	assert_int_equal(instance_guard_step(&g, &gp, 10, 1, 6000), INSTANCE_HOLD);
	assert_true(g.hold_until_ms == 36000);
	assert_true(g.holds_total == 2);
}

static void test_guard_keep_ends_hold(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	assert_int_equal(instance_guard_step(&g, &gp, 10, 2, 0), INSTANCE_HOLD);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 0, 1000), INSTANCE_KEEP);
	assert_int_equal(g.state, INSTANCE_HOLD_IDLE);
	/* Empty never applies, however long it lasts. */
	assert_int_equal(instance_guard_step(&g, &gp, 10, 0, 10000000), INSTANCE_KEEP);
}

static void test_guard_zero_hold_and_overflow(void **state)
{
	struct instance_guard_params p = gp;
	struct instance_guard g = { 0 };
	(void)state;
	p.collapse_hold_ms = 0;
	assert_int_equal(instance_guard_step(&g, &p, 10, 1, 0), INSTANCE_APPLY);
	assert_int_equal(g.state, INSTANCE_HOLD_IDLE);
	p.collapse_hold_ms = UINT64_MAX;
	assert_int_equal(instance_guard_step(&g, &p, 10, 1, 5), INSTANCE_HOLD);
	assert_true(g.hold_until_ms == UINT64_MAX);
	assert_int_equal(instance_guard_step(&g, &p, 10, 1, UINT64_MAX - 1), INSTANCE_HOLD);
}

static void test_guard_collapse_in_steps(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	/* 10 served; registrars expire a few at a time within the hold window. */
	assert_int_equal(instance_guard_step(&g, &gp, 0, 10, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 6, 1000), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 6, 5, 2000), INSTANCE_APPLY);
	/* 5 -> 3 loses only 2 of 5, but 7 of the 10 served a moment ago: held. */
	assert_int_equal(instance_guard_step(&g, &gp, 5, 3, 3000), INSTANCE_HOLD);
	assert_true(g.hold_until_ms == 33000);
	assert_int_equal(instance_guard_step(&g, &gp, 5, 3, 33000), INSTANCE_APPLY);
	/* The 5 were served until now: 3 -> 2 is 3 of 5 within the window. */
	assert_int_equal(instance_guard_step(&g, &gp, 3, 2, 34000), INSTANCE_HOLD);
}

static void test_guard_accepted_collapse_is_new_reference(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	assert_int_equal(instance_guard_step(&g, &gp, 0, 10, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 6, 1000), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 6, 2, 2000), INSTANCE_HOLD);
	assert_int_equal(instance_guard_step(&g, &gp, 6, 2, 32000), INSTANCE_APPLY);
	/* Held long enough: 2 is the reference now, not the 6 it replaced. */
	assert_int_equal(instance_guard_step(&g, &gp, 2, 1, 32001), INSTANCE_APPLY);
}

static void test_guard_reference_window_expires(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	assert_int_equal(instance_guard_step(&g, &gp, 0, 10, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 6, 1000), INSTANCE_APPLY);
	/* 30s after the 10 stopped being served it no longer counts: 6 -> 3 is half. */
	assert_int_equal(instance_guard_step(&g, &gp, 6, 3, 31001), INSTANCE_APPLY);
	/* Growth raises the reference at once. */
	assert_int_equal(instance_guard_step(&g, &gp, 3, 8, 40000), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 8, 3, 40001), INSTANCE_HOLD);
}

static void test_guard_peak_while_served(void **state)
{
	struct instance_guard g = { 0 };
	(void)state;
	/* A view served for hours is still the reference when it is replaced. */
	assert_int_equal(instance_guard_step(&g, &gp, 0, 10, 0), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 10, 6, 7200000), INSTANCE_APPLY);
	assert_int_equal(instance_guard_step(&g, &gp, 6, 4, 7201000), INSTANCE_HOLD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_curator_design_example),
		cmocka_unit_test(test_payload_carried),
		cmocka_unit_test(test_curator_id_from_child_name_or_json),
		cmocka_unit_test(test_curator_long_id),
		cmocka_unit_test(test_curator_unknown_fields_and_payload),
		cmocka_unit_test(test_curator_uri_spec),
		cmocka_unit_test(test_curator_enabled),
		cmocka_unit_test(test_curator_service_type),
		cmocka_unit_test(test_curator_ports),
		cmocka_unit_test(test_curator_address),
		cmocka_unit_test(test_curator_not_json),
		cmocka_unit_test(test_curator_not_nul_terminated),
		cmocka_unit_test(test_curator_size_limit),
		cmocka_unit_test(test_curator_registration_time_lenient),
		cmocka_unit_test(test_curator_reason_buffer_optional),
		cmocka_unit_test(test_curator_json_roundtrip),
		cmocka_unit_test(test_curator_dynamic_sequential_id),
		cmocka_unit_test(test_cmp_nodes),
		cmocka_unit_test(test_curator_payload),
		cmocka_unit_test(test_java_class_names),
		cmocka_unit_test(test_serverset_good),
		cmocka_unit_test(test_serverset_status),
		cmocka_unit_test(test_serverset_bad),
		cmocka_unit_test(test_sort_find),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_guard_verdicts),
		cmocka_unit_test(test_guard_hold_expires),
		cmocka_unit_test(test_guard_hold_recovers),
		cmocka_unit_test(test_guard_keep_ends_hold),
		cmocka_unit_test(test_guard_zero_hold_and_overflow),
		cmocka_unit_test(test_guard_collapse_in_steps),
		cmocka_unit_test(test_guard_accepted_collapse_is_new_reference),
		cmocka_unit_test(test_guard_reference_window_expires),
		cmocka_unit_test(test_guard_peak_while_served),
	};
	return cmocka_run_group_tests_name("instance", tests, NULL, NULL);
}
