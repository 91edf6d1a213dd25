/*
 * secret — read a password from a file that only its owner (and group) may
 * read, the way check passwords are given (check.password_file).
 *
 * Thread: any; blocking file I/O on a small file (called at config load and
 * when a check starts, never per connection).
 */
#ifndef ZKLB_SECRET_H
#define ZKLB_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* The largest secret file accepted. */
#define SECRET_MAX 1024

/*
 * Read the secret in path into a NUL-terminated string owned by the caller
 * (free with secret_free()); one trailing "\n" or "\r\n" is dropped. Refused
 * (NULL, with the reason in err[0..err_len)) when the file is not a regular
 * file, is readable or writable by others (mode & 0006), is empty, longer
 * than SECRET_MAX, or holds a NUL byte.
 */
char *secret_read(const char *path, char *err, size_t err_len);

/* Wipe and free a secret_read() result. NULL is a no-op. */
void secret_free(char *s);

#endif
