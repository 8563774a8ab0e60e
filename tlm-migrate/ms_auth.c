/* mstream authentication: HKDF and HMAC-SHA256 through GnuTLS (see
 * ms_auth.h), and the shared-secret helpers of mstream.h. */
#define LOG_PREFIX "mstream"
#include "ms_auth.h"
#include "ms_wire.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define MS_HKDF_SALT	"vcluster mstream 2"
#define MS_INFO_HS	"vcms2 handshake"
#define MS_INFO_STREAM	"vcms2 stream"

static int ms_gnutls_err(int r)
{
	return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
}

int ms_auth_init(struct mstream *ms)
{
	gnutls_datum_t key = { ms->secret, (unsigned)ms->o.secret_len };
	gnutls_datum_t salt = { (void *)MS_HKDF_SALT, sizeof(MS_HKDF_SALT) - 1 };
	gnutls_datum_t prk = { ms->prk, MS_MAC_LEN };
	gnutls_datum_t info = { (void *)MS_INFO_HS, sizeof(MS_INFO_HS) - 1 };
	int r;

	r = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &key, &salt, ms->prk);
	if (!r)
		r = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &info, ms->khs,
				       MS_MAC_LEN);
	return r ? ms_gnutls_err(r) : 0;
}

int ms_auth_mac(const uint8_t key[MS_MAC_LEN], const char *label,
		uint8_t out[MS_MAC_LEN], int n, ...)
{
	gnutls_hmac_hd_t h;
	va_list ap;
	int r, i;

	r = gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key, MS_MAC_LEN);
	if (r)
		return ms_gnutls_err(r);
	r = gnutls_hmac(h, label, strlen(label));
	va_start(ap, n);
	for (i = 0; i < n && !r; i++) {
		const void *p = va_arg(ap, const void *);
		size_t len = va_arg(ap, size_t);

		r = gnutls_hmac(h, p, len);
	}
	va_end(ap);
	gnutls_hmac_deinit(h, out);
	return r ? ms_gnutls_err(r) : 0;
}

int ms_auth_stream(struct ms_chan *ch, const uint8_t *chal,
		   const uint8_t *hello)
{
	struct mstream *ms = ch->ms;
	uint8_t info[sizeof(MS_INFO_STREAM) - 1 + 2 * MS_HELLO_SIGNED];
	gnutls_datum_t prk = { ms->prk, MS_MAC_LEN };
	gnutls_datum_t di = { info, sizeof(info) };
	gnutls_hmac_hd_t h;
	int r;

	memcpy(info, MS_INFO_STREAM, sizeof(MS_INFO_STREAM) - 1);
	memcpy(info + sizeof(MS_INFO_STREAM) - 1, chal, MS_HELLO_SIGNED);
	memcpy(info + sizeof(MS_INFO_STREAM) - 1 + MS_HELLO_SIGNED, hello,
	       MS_HELLO_SIGNED);
	r = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &di, ch->key,
			       MS_MAC_LEN);
	if (r)
		return ms_gnutls_err(r);
	ms_auth_stream_free(ch);
	r = gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, ch->key, MS_MAC_LEN);
	if (r)
		return ms_gnutls_err(r);
	ch->mac = h;
	return 0;
}

int ms_auth_chunk(struct ms_chan *ch, const uint8_t *hdr, const void *data,
		  size_t len, uint8_t out[MS_MAC_LEN])
{
	gnutls_hmac_hd_t h = ch->mac;
	int r;

	r = gnutls_hmac(h, hdr, MS_CHUNK_HDR_SIZE);
	if (!r && len)
		r = gnutls_hmac(h, data, len);
	/* Output also resets the handle for the next chunk. */
	gnutls_hmac_output(h, out);
	return r ? ms_gnutls_err(r) : 0;
}

bool ms_auth_equal(const uint8_t *a, const uint8_t *b)
{
	return gnutls_memcmp(a, b, MS_MAC_LEN) == 0;
}

int ms_auth_random(void *buf, size_t len)
{
	ssize_t n = getrandom(buf, len, 0);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

void ms_auth_stream_free(struct ms_chan *ch)
{
	if (ch->mac)
		gnutls_hmac_deinit(ch->mac, NULL);
	ch->mac = NULL;
}

/* ---- shared secrets (mstream.h) ----------------------------------------- */

int mstream_secret_parse(const char *hex, uint8_t *buf, size_t cap,
			 size_t *len, char *err, size_t errlen)
{
	size_t n = 0, i, hl;
	const char *s = hex;

	while (*s && isspace((unsigned char)*s))
		s++;
	hl = strlen(s);
	while (hl && isspace((unsigned char)s[hl - 1]))
		hl--;
	if (hl % 2) {
		snprintf(err, errlen, "an odd number of hex digits (%zu)", hl);
		return -EINVAL;
	}
	if (hl / 2 < MS_SECRET_MIN || hl / 2 > MS_SECRET_MAX || hl / 2 > cap) {
		snprintf(err, errlen, "%zu bytes, expected %d to %d (%d to %d hex digits)",
			 hl / 2, MS_SECRET_MIN, MS_SECRET_MAX,
			 2 * MS_SECRET_MIN, 2 * MS_SECRET_MAX);
		return -EINVAL;
	}
	for (i = 0; i < hl; i += 2, n++) {
		char pair[3] = { s[i], s[i + 1], 0 };
		char *end;

		if (!isxdigit((unsigned char)s[i]) ||
		    !isxdigit((unsigned char)s[i + 1])) {
			snprintf(err, errlen, "not a hex digit at position %zu",
				 isxdigit((unsigned char)s[i]) ? i + 2 : i + 1);
			return -EINVAL;
		}
		buf[n] = (uint8_t)strtoul(pair, &end, 16);
	}
	*len = n;
	return 0;
}

int mstream_secret_load(const char *path, uint8_t *buf, size_t cap,
			size_t *len, char *err, size_t errlen)
{
	char text[2 * MS_SECRET_MAX + 8], why[128];
	struct stat st;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
			 errno == ELOOP ? " (a symbolic link: refused)" : "");
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto out_close;
	}
	r = -EPERM;
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %u, not by this user (%u)",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out_close;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s: mode %04o: readable by others (chmod 600)",
			 path, (unsigned)(st.st_mode & 07777));
		goto out_close;
	}
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
		goto out_close;
	}
	text[n] = '\0';
	r = mstream_secret_parse(text, buf, cap, len, why, sizeof(why));
	if (r)
		snprintf(err, errlen, "%s: %s", path, why);
out_close:
	close(fd);
	explicit_bzero(text, sizeof(text));
	return r;
}

int mstream_secret_generate(const char *path, char *err, size_t errlen)
{
	uint8_t raw[32];
	char text[2 * sizeof(raw) + 2];
	size_t i;
	int fd, r;

	r = ms_auth_random(raw, sizeof(raw));
	if (r) {
		snprintf(err, errlen, "getrandom: %s", strerror(-r));
		return r;
	}
	for (i = 0; i < sizeof(raw); i++)
		snprintf(text + 2 * i, 3, "%02x", raw[i]);
	text[2 * sizeof(raw)] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_wipe;
	}
	if (write(fd, text, 2 * sizeof(raw) + 1) != (ssize_t)(2 * sizeof(raw) + 1) ||
	    fsync(fd) < 0) {
		r = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: write: %s", path, strerror(-r));
		close(fd);
		unlink(path);
		goto out_wipe;
	}
	close(fd);
	r = 0;
out_wipe:
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(text, sizeof(text));
	return r;
}
