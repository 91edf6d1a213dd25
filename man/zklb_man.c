/*
 * zklb_man — write zklb.yaml(5) in troff from the schema that validates the
 * configuration (config_doc.h), at build time (man/meson.build):
 *
 *   zklb_man VERSION > zklb.yaml.5
 *
 * It exits 1, printing each problem, when a key has no description or a
 * description names no key: the build then fails instead of shipping a page
 * that disagrees with the validator.
 */
#include "config_doc.h"

#include <stdio.h>
#include <string.h>

/* Text as troff reads it: backslashes escaped, no line that starts a request. */
static void put_text(const char *s, bool code)
{
	bool bol = true;
	for (; *s; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", stdout);
		bol = false;
		if (*s == '\\')
			fputs("\\e", stdout);
		else if (*s == '-' && code)
			fputs("\\-", stdout);
		else if (*s == '\n') {
			putchar('\n');
			bol = true;
		} else
			putchar(*s);
	}
}

static void on_key(const struct config_doc_key *k, void *arg)
{
	bool *in_section = arg;	/* the last heading was a section's */
	if (k->depth == 0 && k->section) {
		fputs(".SS ", stdout);
		put_text(k->path, true);
		putchar('\n');
		*in_section = true;
	} else if (k->depth == 0 && *in_section) {
		puts(".SS Top level");
		*in_section = false;
	}
	fputs(".TP\n.B ", stdout);
	put_text(k->path, true);
	fputs("\n.I ", stdout);
	put_text(k->type, true);
	if (k->required)
		fputs("\n\\(em required", stdout);
	if (k->def) {
		fputs("\n\\(em default ", stdout);
		fputs("\\f(CW", stdout);
		put_text(k->def, true);
		fputs("\\fR", stdout);
	}
	printf("\n\\(em %s\n.br\n", k->reload ? "reloadable" : "read at start");
	put_text(k->text ? k->text : "", false);
	putchar('\n');
	if (k->same_as) {
		fputs("Its keys are those of\n.BR ", stdout);
		put_text(k->same_as, true);
		fputs(" .\n", stdout);
	}
}

static void on_problem(const char *msg, void *arg)
{
	fprintf(stderr, "zklb_man: %s\n", msg);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: zklb_man VERSION > zklb.yaml.5\n");
		return 2;
	}
	if (config_doc_walk(NULL, on_problem, NULL) != 0)
		return 1;
	printf(".TH ZKLB.YAML 5 \"\" \"zklb %s\" \"zklb manual\"\n", argv[1]);
	puts(".SH NAME\n"
	     "zklb.yaml \\- configuration file of zklb, the per-host load balancer\n"
	     ".SH SYNOPSIS\n"
	     ".I /etc/zklb/zklb.yaml\n"
	     ".SH DESCRIPTION\n"
	     "One YAML file, given to\n.BR zklb (8)\nwith\n.BR \\-c .\n"
	     "Check a file with\n.B zklb check \\-c FILE\n"
	     "before it is used: every problem is reported, each as\n"
	     ".IR FILE : LINE : COL \": key.path: message\" .\n"
	     ".PP\n"
	     "Unknown and duplicate keys are errors. YAML anchors, aliases, merge keys and tags\n"
	     "are not supported. Quoted strings stay strings; plain ones that look like numbers,\n"
	     "booleans or null become those.\n"
	     ".PP\n"
	     "A\n.I duration\nis written\n.BR 250ms \", \" 5s \", \" 2m \", \" 1h\n"
	     "(a bare 0 is allowed); a\n.I size\n.BR 512 \", \" 16k \", \" 1m\n(powers of 1024).\n"
	     ".PP\n"
	     "A key marked\n.I reloadable\nis applied by SIGHUP without a restart; one\n"
	     "marked\n.I read at start\nneeds a restart, and a reload that changes it logs which\n"
	     "key and applies the rest.\n"
	     "In key paths,\n.B NAME\nis a service name and\n.B []\nan item of a list.\n"
	     ".SH KEYS\n"
	     "Every key, from the schema that validates the file.");
	bool in_section = true;
	config_doc_walk(on_key, NULL, &in_section);
	puts(".SH EXAMPLE\n"
	     ".EX\n"
	     "zookeeper:\n"
	     "  hosts: \"zk1:2181,zk2:2181,zk3:2181\"\n"
	     "cache_dir: /var/lib/zklb\n"
	     "services:\n"
	     "  web:\n"
	     "    listen: \"127.0.0.1:8080\"\n"
	     "    discovery: {type: curator, path: /services/web}\n"
	     "  legacy:\n"
	     "    listen: \"127.0.0.1:8081\"\n"
	     "    discovery:\n"
	     "      type: static\n"
	     "      backends: [\"10.0.0.5:9001\", \"10.0.0.6:9001 weight=2\"]\n"
	     ".EE\n"
	     ".SH FILES\n"
	     ".TP\n.I /etc/zklb/zklb.yaml\nThe configuration the packaged unit runs with.\n"
	     ".SH SEE ALSO\n"
	     ".BR zklb (8)");
	return 0;
}
