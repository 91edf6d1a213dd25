/*
 * metrics_table — print the families of GET /metrics from the table in
 * src/metrics.c, the one place they are declared:
 *
 *   metrics_table              one family a line, tab-separated:
 *                              NAME TYPE LABELS HELP (LABELS comma-separated)
 *   metrics_table --markdown   the README's list of metric families
 *
 * tests/integration/test_admin.py compares both with the README and with
 * the /metrics of a running zklb. After changing the table, paste the
 * --markdown output between the README's "metrics table" markers.
 */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

/* The labels of a family, the scope's first, joined with sep. */
static void labels(const struct metrics_info *m, const char *sep, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t j = 0; j < METRICS_SCOPE_LABELS && m->scope_labels[j]; j++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? sep : "", m->scope_labels[j]);
	if (m->label)
		snprintf(buf + o, len - o, "%s%s", o ? sep : "", m->label);
}

static void print_tsv(const struct metrics_info *m)
{
	char l[160];
	labels(m, ",", l, sizeof(l));
	printf("%s\t%s\t%s\t%s\n", m->name, m->type, l, m->help);
}

/* Markdown table cells: a '|' would end the cell. */
static void print_cell(const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", stdout);
		else
			putchar(*s);
	}
}

static void print_markdown_row(const struct metrics_info *m)
{
	char l[160];
	labels(m, ", ", l, sizeof(l));
	printf("| `%s%s%s%s` | %s | ", m->name, *l ? "{" : "", l, *l ? "}" : "", m->type);
	print_cell(m->help);
	if (m->label_values) {
		printf(" `%s`: ", m->label);
		for (size_t k = 0; m->label_values(k); k++)
			printf("%s%s", k ? ", " : "", m->label_values(k));
		putchar('.');
	}
	if (m->when)
		printf(" Only %s.", m->when);
	puts(" |");
}

int main(int argc, char **argv)
{
	bool markdown = argc == 2 && strcmp(argv[1], "--markdown") == 0;
	if (argc > 2 || (argc == 2 && !markdown)) {
		fprintf(stderr, "usage: metrics_table [--markdown]\n");
		return 2;
	}
	if (markdown)
		puts("| family | type | help |\n|---|---|---|");
	struct metrics_info m;
	for (size_t i = 0; metrics_info(i, &m); i++) {
		if (markdown)
			print_markdown_row(&m);
		else
			print_tsv(&m);
	}
	return 0;
}
