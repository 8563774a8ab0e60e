/* mstream address lists: "HOST:PORT[,...]" and files of them. */
#include "mstream.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- address lists ----------------------------------------------------- */

/* Parse one trimmed entry s[0..len).  0 or -EINVAL with why. */
static int ms_parse_addr(const char *s, size_t len, struct mstream_addr *a,
			 char *why, size_t whylen)
{
	const char *host = s, *colon, *port;
	size_t hlen, plen, i;
	unsigned long v = 0;

	if (!len) {
		snprintf(why, whylen, "empty entry");
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close) {
			snprintf(why, whylen, "missing ']'");
			return -EINVAL;
		}
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		if (colon == s + len || *colon != ':') {
			snprintf(why, whylen, "missing :PORT after ']'");
			return -EINVAL;
		}
	} else {
		colon = memchr(s, ':', len);
		if (!colon) {
			snprintf(why, whylen, "missing :PORT");
			return -EINVAL;
		}
		if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
			snprintf(why, whylen, "an IPv6 address needs brackets, as in [::1]:7000");
			return -EINVAL;
		}
		hlen = (size_t)(colon - s);
	}
	port = colon + 1;
	plen = len - (size_t)(port - s);
	if (!hlen) {
		snprintf(why, whylen, "missing host");
		return -EINVAL;
	}
	if (hlen >= MSTREAM_HOST_MAX) {
		snprintf(why, whylen, "host longer than %d bytes",
			 MSTREAM_HOST_MAX - 1);
		return -EINVAL;
	}
	for (i = 0; i < hlen; i++) {
		if (isspace((unsigned char)host[i]) || host[i] == ',' ||
		    host[i] == '[' || host[i] == ']' || host[i] == '#') {
			snprintf(why, whylen, "bad character '%c' in host",
				 host[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < plen && plen <= 5; i++) {
		if (!isdigit((unsigned char)port[i]))
			break;
		v = v * 10 + (unsigned long)(port[i] - '0');
	}
	if (!plen || plen > 5 || i < plen || v > 65535) {
		snprintf(why, whylen, "bad port \"%.*s\" (expected 0-65535)",
			 (int)plen, port);
		return -EINVAL;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	a->port = (uint16_t)v;
	return 0;
}

static void ms_trim(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

/* Append to a growing array. */
static int ms_addrs_push(struct mstream_addr **v, int *n,
			 const struct mstream_addr *a)
{
	struct mstream_addr *nv;

	nv = realloc(*v, (size_t)(*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = *a;
	*v = nv;
	return 0;
}

int mstream_addrs_parse(const char *spec, struct mstream_addr **addrs,
			int *naddrs, char *err, size_t errlen)
{
	struct mstream_addr a, *v = NULL;
	const char *p = spec, *end, *s;
	char why[128];
	size_t len;
	int n = 0, r;

	*addrs = NULL;
	*naddrs = 0;
	if (!spec) {
		snprintf(err, errlen, "no addresses");
		return -EINVAL;
	}
	len = strlen(spec);
	s = spec;
	ms_trim(&s, &len);
	if (!len) {
		snprintf(err, errlen, "no addresses");
		return -EINVAL;
	}
	for (;;) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		s = p;
		len = (size_t)(end - p);
		ms_trim(&s, &len);
		if (n == MSTREAM_MAX_STREAMS) {
			snprintf(err, errlen, "more than %d addresses",
				 MSTREAM_MAX_STREAMS);
			r = -EINVAL;
			goto out_free;
		}
		r = ms_parse_addr(s, len, &a, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "entry %d \"%.*s\": %s", n + 1,
				 (int)len, s, why);
			goto out_free;
		}
		r = ms_addrs_push(&v, &n, &a);
		if (r) {
			snprintf(err, errlen, "out of memory");
			goto out_free;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	*addrs = v;
	*naddrs = n;
	return 0;

out_free:
	free(v);
	return r;
}

int mstream_addrs_load(const char *path, struct mstream_addr **addrs,
		       int *naddrs, char *err, size_t errlen)
{
	struct mstream_addr a, *v = NULL;
	char *line = NULL, why[128], *hash;
	size_t cap = 0, len;
	const char *s;
	int n = 0, lineno = 0, r = 0;
	FILE *f;

	*addrs = NULL;
	*naddrs = 0;
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		s = line;
		len = strlen(line);
		ms_trim(&s, &len);
		if (!len)
			continue;
		if (n == MSTREAM_MAX_STREAMS) {
			snprintf(err, errlen, "%s:%d: more than %d addresses",
				 path, lineno, MSTREAM_MAX_STREAMS);
			r = -EINVAL;
			goto out_free;
		}
		r = ms_parse_addr(s, len, &a, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "%s:%d: \"%.*s\": %s", path,
				 lineno, (int)len, s, why);
			goto out_free;
		}
		r = ms_addrs_push(&v, &n, &a);
		if (r) {
			snprintf(err, errlen, "out of memory");
			goto out_free;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out_free;
	}
	if (!n) {
		r = -EINVAL;
		snprintf(err, errlen, "%s: no addresses", path);
		goto out_free;
	}
	free(line);
	fclose(f);
	*addrs = v;
	*naddrs = n;
	return 0;

out_free:
	free(line);
	fclose(f);
	free(v);
	return r;
}
