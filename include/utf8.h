/*
 * utf8 — well-formed UTF-8 (RFC 3629), for text from outside (ZooKeeper,
 * clients, backends) that zklb shows as JSON or in its logs. Pure; no
 * allocation; depends on nothing of zklb's (log.c uses it).
 *
 * Thread: any.
 */
#ifndef ZKLB_UTF8_H
#define ZKLB_UTF8_H

#include <stddef.h>

/*
 * Bytes of the well-formed UTF-8 character at s (1..4; RFC 3629: no
 * overlong forms, surrogates or code points past U+10FFFF), or 0 when s does
 * not start one. s is NUL-terminated; *s may be NUL (1).
 */
size_t utf8_char_len(const char *s);
/* Replace every byte of s that is not part of a UTF-8 character with '?'. */
void utf8_scrub(char *s);

#endif
