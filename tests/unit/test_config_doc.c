/*
 * Unit tests for config_doc: zklb's schema has a description for every key
 * and none for a key that does not exist (this test fails when a key is
 * added to config_keys.c without a row in config_doc.c); what the walk hands
 * out (type, default, reload) comes from the schema; and the walk reports
 * each kind of problem, checked on a small schema of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config_doc.h"
#include "schema.h"

struct seen {
	char path[160];
	char type[160];
	char def[64];
	bool has_def;
	bool reload;
	bool required;
	bool section;
	char same_as[160];
};

struct collect {
	struct seen keys[200];
	size_t n;
	char problems[8][240];
	size_t n_problems;
};

static void on_key(const struct config_doc_key *k, void *arg)
{
	struct collect *c = arg;
	assert_true(c->n < 200);
	struct seen *s = &c->keys[c->n++];
	snprintf(s->path, sizeof(s->path), "%s", k->path);
	snprintf(s->type, sizeof(s->type), "%s", k->type);
	s->has_def = k->def != NULL;
	snprintf(s->def, sizeof(s->def), "%s", k->def ? k->def : "");
	s->reload = k->reload;
	s->required = k->required;
	s->section = k->section;
	snprintf(s->same_as, sizeof(s->same_as), "%s", k->same_as ? k->same_as : "");
}

static void on_problem(const char *msg, void *arg)
{
	struct collect *c = arg;
	print_message("config_doc: %s\n", msg);
	if (c->n_problems < 8)
		snprintf(c->problems[c->n_problems], sizeof(c->problems[0]), "%s", msg);
	c->n_problems++;
}

static const struct seen *find(const struct collect *c, const char *path)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->keys[i].path, path) == 0)
			return &c->keys[i];
	fail_msg("no key %s", path);
	return NULL;
}

static void test_every_key_of_zklb_is_described(void **state)
{
	static struct collect c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_doc_walk(on_key, on_problem, &c), 0);
	assert_int_equal(c.n_problems, 0);
	assert_true(c.n > 60);
	for (size_t i = 0; i < c.n; i++) {
		assert_true(c.keys[i].path[0] != '\0');
		assert_true(c.keys[i].type[0] != '\0');
		assert_null(strchr(c.keys[i].type, '?'));
	}
}

static void test_walk_reads_the_schema(void **state)
{
	static struct collect c;
	memset(&c, 0, sizeof(c));
	config_doc_walk(on_key, on_problem, &c);

	const struct seen *reuse = find(&c, "services.NAME.pool.reuse");
	assert_string_equal(reuse->type, "one of: none, http1, redis, memcached");
	assert_true(reuse->has_def);
	assert_true(reuse->reload);
	/* Reloadable only if every section above is: zookeeper: is read at start. */
	assert_false(find(&c, "zookeeper.session_timeout")->reload);
	assert_false(find(&c, "admin.listen")->reload);
	assert_true(find(&c, "log.level")->reload);
	assert_true(find(&c, "zookeeper.hosts")->required);
	assert_false(find(&c, "zookeeper.hosts")->has_def);
	assert_string_equal(find(&c, "services.NAME.max_buffer")->type, "size 1k..1g");
	assert_string_equal(find(&c, "services.NAME.health.check.rise")->type, "integer 1..1000");
	/* Collections: services.NAME.*, announce[].*, sync[].* */
	assert_true(find(&c, "services")->section);
	find(&c, "announce[].port");
	find(&c, "sync[].max_size");
	/* The check section is shared: walked once, referred to after. */
	assert_string_equal(find(&c, "announce[].check")->same_as, "services.NAME.health.check");
	for (size_t i = 0; i < c.n; i++)
		assert_null(strstr(c.keys[i].path, "announce[].check."));
}

/* A schema of its own: one key described, one not, one parsed by a function. */
static void fn_any(struct schema_ctx *v, const struct schema_path *p, const json_t *val, void *field)
{
}

static const struct schema_range r_small = { 1, 9 };
static const struct schema_key inner_keys[] = {
	{ "depth", S_U32, "3", S_RELOAD, 0, &r_small, NULL },
};
static const struct schema_section inner = { inner_keys, 1, NULL };
static const struct schema_key top_keys[] = {
	{ "name", S_STR, NULL, S_REQ, 0, NULL, NULL },
	{ "undocumented", S_BOOL, "true", S_RELOAD, 0, NULL, NULL },
	{ "custom", S_FN, NULL, 0, 0, NULL, fn_any },
	{ "tree", S_SECTION, NULL, S_RELOAD, 0, &inner, NULL },
};
static const struct schema_section top = { top_keys, 4, NULL };

static void test_problems_are_reported(void **state)
{
	static const struct config_doc_row rows[] = {
		{ "name", NULL, "A name." },
		{ "custom", NULL, "Described, but no type said." },
		{ "tree", NULL, "A section." },
		{ "tree.depth", NULL, "How deep." },
		{ "gone", NULL, "A key that was removed from the schema." },
	};
	static struct collect c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_doc_walk_schema(&top, rows, 5, on_key, on_problem, &c), 3);
	assert_int_equal(c.n_problems, 3);
	assert_non_null(strstr(c.problems[0], "undocumented: no description"));
	assert_non_null(strstr(c.problems[1], "custom: parsed by a function"));
	assert_non_null(strstr(c.problems[2], "gone: described, but the schema has no such key"));
	assert_int_equal(c.n, 5);
	assert_string_equal(find(&c, "tree.depth")->type, "integer 1..9");
	assert_string_equal(find(&c, "tree.depth")->def, "3");
	assert_true(find(&c, "tree.depth")->reload);
	assert_true(find(&c, "name")->required);
	assert_false(find(&c, "custom")->reload);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_key_of_zklb_is_described),
		cmocka_unit_test(test_walk_reads_the_schema),
		cmocka_unit_test(test_problems_are_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
