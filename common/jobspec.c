#include "jobspec.h"

#include "afile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOBSPEC_MAX_FILE (1u << 20)
#define JOBSPEC_MAX_LINE 4096

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Unquote a "..." value in place.  Returns NULL with a reason on error. */
static char *unquote(char *v, const char **why)
{
	char *out = v, *p = v + 1;

	for (; *p && *p != '"'; p++) {
		if (*p == '\\') {
			p++;
			if (*p != '"' && *p != '\\') {
				*why = "unknown escape in quoted value (only \\\" and \\\\)";
				return NULL;
			}
		}
		*out++ = *p;
	}
	if (*p != '"') {
		*why = "missing closing quote";
		return NULL;
	}
	if (*trim(p + 1) != '\0') {
		*why = "text after closing quote";
		return NULL;
	}
	*out = '\0';
	return v;
}

int jobspec_parse_text(const char *name, const char *text, jobspec_cb cb,
		       void *ctx, char *err, size_t errlen)
{
	char line[JOBSPEC_MAX_LINE + 1];
	const char *p = text;
	int lineno = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *why = NULL;
		char cbwhy[256] = "";

		lineno++;
		if (len > JOBSPEC_MAX_LINE) {
			snprintf(err, errlen, "%s:%d: line longer than %u bytes",
				 name, lineno, JOBSPEC_MAX_LINE);
			return -EINVAL;
		}
		memcpy(line, p, len);
		line[len] = '\0';
		p = nl ? nl + 1 : p + len;

		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected 'key = value', got '%.60s'",
				 name, lineno, s);
			return -EINVAL;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		if (*key == '\0') {
			snprintf(err, errlen, "%s:%d: missing key before '='",
				 name, lineno);
			return -EINVAL;
		}
		for (char *k = key; *k; k++) {
			if (!isalnum((unsigned char)*k) && *k != '-' && *k != '_') {
				snprintf(err, errlen, "%s:%d: bad character '%c' in key '%s'",
					 name, lineno, *k, key);
				return -EINVAL;
			}
		}
		if (*val == '"' && !unquote(val, &why)) {
			snprintf(err, errlen, "%s:%d: %s: %s", name, lineno, key, why);
			return -EINVAL;
		}
		int r = cb(ctx, key, val, cbwhy, sizeof(cbwhy));
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: %s", name, lineno, cbwhy);
			return r;
		}
	}
	return 0;
}

int jobspec_parse_file(const char *path, jobspec_cb cb, void *ctx,
		       char *err, size_t errlen)
{
	char *text;
	size_t len;
	int r = afile_read_all(path, JOBSPEC_MAX_FILE, &text, &len);

	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 r == -EFBIG ? "job file larger than 1 MiB" : strerror(-r));
		return r;
	}
	if (memchr(text, '\0', len)) {
		snprintf(err, errlen, "%s: not a text file (NUL byte)", path);
		free(text);
		return -EINVAL;
	}
	r = jobspec_parse_text(path, text, cb, ctx, err, errlen);
	free(text);
	return r;
}
