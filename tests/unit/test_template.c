/*
 * Unit tests for template: rendering byte by byte (standalone tag lines,
 * separators, inverted sections, payload keys, empty sets) and every compile
 * error with its LINE:COL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

static const char *const keys[] = { "zone", "rack" };
static const char *const vals_a[] = { "z1", "r7" };
static const char *const vals_b[] = { "z2" };

static const struct template_instance two[] = {
	{ .id = "i-a", .address = "10.0.0.1", .port = 8080, .ssl_port = 8443, .weight = 1,
	  .payload_keys = keys, .payload_values = vals_a, .n_payload = 2 },
	{ .id = "i-b", .address = "10.0.0.2", .port = 8081, .weight = 5,
	  .payload_keys = keys, .payload_values = vals_b, .n_payload = 1 },
};

static void expect_render(const char *tpl, const struct template_instance *v, size_t n,
			  const char *want)
{
	char err[128] = "";
	struct template *t = template_compile(tpl, strlen(tpl), err, sizeof(err));
	if (!t)
		fail_msg("compile failed: %s", err);
	size_t len;
	char *out = template_render(t, "web", v, n, &len);
	assert_int_equal(len, strlen(want));
	assert_string_equal(out, want);
	free(out);
	template_free(t);
}

/* Compile a template shipped in conf/templates/ and render it. */
static char *render_shipped(const char *name, const struct template_instance *v, size_t n)
{
	char path[512], text[8192], err[128] = "";
	snprintf(path, sizeof(path), "%s/conf/templates/%s", TEST_SRCDIR, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	struct template *t = template_compile(text, len, err, sizeof(err));
	if (!t)
		fail_msg("%s: %s", name, err);
	size_t out_len;
	char *out = template_render(t, "web", v, n, &out_len);
	template_free(t);
	return out;
}

static void expect_error(const char *tpl, const char *want)
{
	char err[128] = "";
	struct template *t = template_compile(tpl, strlen(tpl), err, sizeof(err));
	if (t)
		fail_msg("'%s' compiled", tpl);
	if (strstr(err, want) != err)
		fail_msg("'%s': error '%s', wanted '%s...'", tpl, err, want);
}

static void test_nginx_upstream_lines(void **state)
{
	expect_render("upstream {{service}} {\n"
		      "    {{#instances}}\n"
		      "    server {{address}}:{{port}} weight={{weight}};\n"
		      "    {{/instances}}\n"
		      "}\n",
		      two, 2,
		      "upstream web {\n"
		      "    server 10.0.0.1:8080 weight=1;\n"
		      "    server 10.0.0.2:8081 weight=5;\n"
		      "}\n");
}

static void test_separators_first_last(void **state)
{
	expect_render("{{#instances}}{{address}}:{{port}}{{^last}},{{/last}}{{/instances}}", two, 2,
		      "10.0.0.1:8080,10.0.0.2:8081");
	expect_render("[{{#instances}}{{^first}}, {{/first}}\"{{id}}\"{{/instances}}]", two, 2,
		      "[\"i-a\", \"i-b\"]");
	expect_render("{{#instances}}{{#first}}>{{/first}}{{id}}{{#last}}<{{/last}}{{/instances}}",
		      two, 1, ">i-a<");
}

static void test_empty_set_and_count(void **state)
{
	const char *tpl = "{{count}} of {{service}}\n"
			  "{{#instances}}\n"
			  "{{id}}\n"
			  "{{/instances}}\n"
			  "{{^instances}}\n"
			  "# none\n"
			  "{{/instances}}\n";
	expect_render(tpl, two, 0, "0 of web\n# none\n");
	expect_render(tpl, two, 2, "2 of web\ni-a\ni-b\n");
}

static void test_payload_ssl_port_comment(void **state)
{
	expect_render("{{! one line per instance }}\n"
		      "{{#instances}}\n"
		      "{{id}} {{payload.zone}} [{{payload.rack}}] [{{ssl_port}}] {{ payload.none }}\n"
		      "{{/instances}}\n",
		      two, 2,
		      "i-a z1 [r7] [8443] \n"
		      "i-b z2 [] [] \n");
}

static void test_standalone_rules(void **state)
{
	/* CRLF lines; a tag that shares its line with text keeps the line. */
	expect_render("a\r\n  {{#instances}}  \r\n{{id}}\r\n{{/instances}}\r\nb", two, 1,
		      "a\r\ni-a\r\nb");
	expect_render("x {{#instances}}{{id}}{{/instances}} y\n", two, 2, "x i-ai-b y\n");
	/* A last line without a newline may be standalone too. */
	expect_render("{{#instances}}\n{{id}}\n{{/instances}}", two, 2, "i-a\ni-b\n");
	expect_render("no tags at all\n", two, 2, "no tags at all\n");
	expect_render("", two, 2, "");
}

static void test_errors_with_position(void **state)
{
	expect_error("{{nope}}", "1:1: unknown tag 'nope'");
	expect_error("ok\n  {{address}}", "2:3: 'address' has a meaning only inside {{#instances}}");
	expect_error("{{#instances}}\n{{id}}\n", "3:1: section 'instances' is never closed");
	expect_error("{{#instances}}{{#first}}{{/instances}}{{/first}}",
		     "1:25: '{{/instances}}' does not close");
	expect_error("x {{/first}}", "1:3: '{{/first}}' closes no open section");
	expect_error("a\nb {{id", "2:3: '{{' without '}}'");
	expect_error("{{#port}}{{/port}}", "1:1: 'port' has a meaning only inside");
	expect_error("{{#instances}}{{#port}}{{/port}}{{/instances}}", "1:15: 'port' is not a section");
	expect_error("{{#instances}}{{#instances}}{{/instances}}{{/instances}}",
		     "1:15: 'instances' cannot be nested");
	expect_error("{{instances}}", "1:1: 'instances' is a section");
	expect_error("{{ }}", "1:1: empty tag");
	expect_error("{{#instances}}{{payload.}}{{/instances}}", "1:15: unknown tag 'payload.'");
	expect_error("{{#instances}}{{payload.a b}}{{/instances}}", "1:15: unknown tag 'payload.a b'");
	expect_error("{{#first}}{{/first}}", "1:1: 'first' has a meaning only inside");
}

static const struct template_instance v6[] = {
	{ .id = "i-6", .address = "fd00::7", .port = 9000, .weight = 2 },
};

static void test_payload_pairs_and_conditions(void **state)
{
	expect_render("{{#instances}}{{id}}:{{#payload}}{{key}}={{value}}{{^last}};{{/last}}{{/payload}}"
		      "{{^payload}}-{{/payload}}{{#ssl_port}} tls={{ssl_port}}{{/ssl_port}}"
		      "{{#payload.rack}} rack={{payload.rack}}{{/payload.rack}}{{^last}}|{{/last}}"
		      "{{/instances}}",
		      two, 2, "i-a:zone=z1;rack=r7 tls=8443 rack=r7|i-b:zone=z2");
	expect_render("{{#instances}}{{endpoint}} {{address}}{{/instances}}", v6, 1, "[fd00::7]:9000 fd00::7");
	expect_error("{{#instances}}{{#payload.a}}{{/payload.b}}{{/instances}}", "1:29: '{{/payload.b}}' does not close");
	expect_error("{{#instances}}{{key}}{{/instances}}", "1:15: 'key' has a meaning only inside {{#payload}}");
	expect_error("{{#instances}}{{#payload}}{{#payload}}{{/payload}}{{/payload}}{{/instances}}",
		     "1:27: 'payload' cannot be nested");
}

static void test_shipped_templates(void **state)
{
	char *out = render_shipped("nginx_upstream.tmpl", two, 2);
	assert_string_equal(out, "upstream web {\n"
				 "    server 10.0.0.1:8080 weight=1;\n"
				 "    server 10.0.0.2:8081 weight=5;\n"
				 "}\n");
	free(out);
	out = render_shipped("haproxy_servers.tmpl", v6, 1);
	assert_string_equal(out, "    server i-6 [fd00::7]:9000 weight 2\n");
	free(out);
	out = render_shipped("lines.tmpl", two, 2);
	assert_string_equal(out, "10.0.0.1:8080\n10.0.0.2:8081\n");
	free(out);

	/* json must be JSON, with every field, for two instances, one, and none. */
	for (size_t n = 0; n <= 2; n++) {
		out = render_shipped("json.tmpl", two, n);
		json_error_t jerr;
		json_t *doc = json_loads(out, 0, &jerr);
		if (!doc)
			fail_msg("json.tmpl with %zu: %s\n%s", n, jerr.text, out);
		assert_int_equal(json_array_size(doc), n);
		if (n == 2) {
			json_t *a = json_array_get(doc, 0), *b = json_array_get(doc, 1);
			assert_string_equal(json_string_value(json_object_get(a, "id")), "i-a");
			assert_string_equal(json_string_value(json_object_get(a, "address")), "10.0.0.1");
			assert_int_equal(json_integer_value(json_object_get(a, "port")), 8080);
			assert_int_equal(json_integer_value(json_object_get(a, "ssl_port")), 8443);
			assert_true(json_is_null(json_object_get(b, "ssl_port")));
			assert_int_equal(json_integer_value(json_object_get(b, "weight")), 5);
			json_t *pa = json_object_get(a, "payload");
			assert_int_equal(json_object_size(pa), 2);
			assert_string_equal(json_string_value(json_object_get(pa, "rack")), "r7");
		}
		json_decref(doc);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nginx_upstream_lines),
		cmocka_unit_test(test_separators_first_last),
		cmocka_unit_test(test_empty_set_and_count),
		cmocka_unit_test(test_payload_ssl_port_comment),
		cmocka_unit_test(test_standalone_rules),
		cmocka_unit_test(test_errors_with_position),
		cmocka_unit_test(test_payload_pairs_and_conditions),
		cmocka_unit_test(test_shipped_templates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
