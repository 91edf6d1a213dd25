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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nginx_upstream_lines),
		cmocka_unit_test(test_separators_first_last),
		cmocka_unit_test(test_empty_set_and_count),
		cmocka_unit_test(test_payload_ssl_port_comment),
		cmocka_unit_test(test_standalone_rules),
		cmocka_unit_test(test_errors_with_position),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
