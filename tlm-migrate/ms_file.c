/* mstream file transport: one file per stream, the same framing as TCP. */
#define LOG_PREFIX "mstream"
#include "ms_core.h"
#include "ms_wire.h"
#include "ms_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- file transport -------------------------------------------------------- */

static int file_writev(int fd, struct iovec *iov, int iovcnt)
{
	ssize_t n;

	while (iovcnt > 0) {
		n = writev(fd, iov, iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int file_send(struct ms_chan *ch, struct iovec *iov, int iovcnt)
{
	return file_writev(ch->fd, iov, iovcnt);
}

static int fd_read_full(int fd, void *buf, size_t len, size_t *got)
{
	ssize_t n;

	*got = 0;
	while (*got < len) {
		n = read(fd, (char *)buf + *got, len - *got);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		*got += (size_t)n;
	}
	return 0;
}

static int file_recv(struct ms_chan *ch, void *buf, size_t len, size_t *got)
{
	if (ms_exiting(ch->ms)) {
		*got = 0;
		return -ECANCELED;
	}
	return fd_read_full(ch->fd, buf, len, got);
}

/* Regular files never block for long: the threads check exiting between
 * chunks, nothing to wake. */
static void file_abort(struct ms_chan *ch)
{
}

static int file_send_finish(struct ms_chan *ch)
{
	if (fsync(ch->fd))
		return ms_fail_ch(ch, -errno, "fsync: %s", strerror(errno));
	return 0;
}

/* The end marker must be the last thing in the file. */
static int file_recv_finish(struct ms_chan *ch)
{
	uint8_t extra[64];
	size_t got;
	int r;

	r = fd_read_full(ch->fd, extra, sizeof(extra), &got);
	if (r)
		return ms_fail_ch(ch, r, "read: %s", strerror(-r));
	if (got)
		return ms_fail_ch(ch, -EBADMSG, "%s%zu bytes after the end-of-stream marker",
				  got == sizeof(extra) ? "at least " : "", got);
	return 0;
}

/* A file has no challenge: its stream key is bound to the hello alone. */
static const uint8_t file_no_chal[MS_CHAL_SIZE];

static int file_create_open(struct mstream *ms, const void *where, int n)
{
	const char *const *paths = where;
	uint8_t hello[MS_HELLO_MAX];
	struct iovec iov;
	struct ms_chan *ch;
	int i, r;

	for (i = 0; i < n; i++) {
		ch = &ms->ch[i];
		ch->name = strdup(paths[i]);
		if (!ch->name)
			return ms_fail(ms, -ENOMEM, "out of memory");
		ch->fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC |
			      O_NOFOLLOW | O_CLOEXEC, 0600);
		if (ch->fd < 0)
			return ms_fail_ch(ch, -errno, "create: %s",
					  strerror(errno));
		r = ms_encode_hello(ms, hello, i, NULL);
		if (!r && ms->auth)
			r = ms_auth_stream(ch, file_no_chal, hello);
		if (r)
			return ms_fail_ch(ch, r, "hello: %s", strerror(-r));
		iov = (struct iovec){ hello, ms_hello_size(ms) };
		r = file_writev(ch->fd, &iov, 1);
		if (r)
			return ms_fail_ch(ch, r, "write hello: %s",
					  strerror(-r));
	}
	return 0;
}

static int file_read_open(struct mstream *ms, const void *where, int n)
{
	const char *const *paths = where;
	uint8_t hello[MS_HELLO_MAX];
	size_t size = ms_hello_size(ms);
	char why[256];
	size_t got;
	int i, fd, idx = -1, r;

	for (i = 0; i < n; i++) {
		fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return ms_fail(ms, -errno, "file %s: open: %s",
				       paths[i], strerror(errno));
		r = fd_read_full(fd, hello, size, &got);
		if (!r && got < size) {
			snprintf(why, sizeof(why), "truncated hello (%zu of %zu bytes)",
				 got, size);
			r = -EBADMSG;
		} else if (r) {
			snprintf(why, sizeof(why), "read: %s", strerror(-r));
		} else {
			idx = ms_check_hello_auth(ms, hello, NULL, why,
						  sizeof(why));
			if (!idx)
				idx = ms_check_hello_fields(ms, hello, why,
							    sizeof(why));
			if (idx >= 0 && ms->ch[idx].fd >= 0) {
				snprintf(why, sizeof(why), "holds stream %d, as does %s",
					 idx, ms->ch[idx].name);
				idx = -EPROTO;
			}
			r = idx < 0 ? -EBADMSG : 0;
		}
		if (r) {
			close(fd);
			return ms_fail(ms, r, "file %s: %s", paths[i], why);
		}
		ms->ch[idx].fd = fd;
		ms->ch[idx].name = strdup(paths[i]);
		if (!ms->ch[idx].name)
			return ms_fail(ms, -ENOMEM, "out of memory");
		if (ms->auth) {
			r = ms_auth_stream(&ms->ch[idx], file_no_chal, hello);
			if (r)
				return ms_fail(ms, r, "file %s: stream key: %s",
					       paths[i], strerror(-r));
		}
	}
	return 0;
}

const struct ms_ops ms_file_send_ops = {
	.name = "file-write",
	.open = file_create_open,
	.send = file_send,
	.recv = file_recv,
	.finish = file_send_finish,
	.abort = file_abort,
	.close = ms_fd_close,
	.eof_mid = "file truncated mid-chunk",
	.eof_between = "file truncated: no end-of-stream marker",
	.eof_err = -EBADMSG,
};

const struct ms_ops ms_file_recv_ops = {
	.name = "file-read",
	.open = file_read_open,
	.send = file_send,
	.recv = file_recv,
	.finish = file_recv_finish,
	.abort = file_abort,
	.close = ms_fd_close,
	.eof_mid = "file truncated mid-chunk",
	.eof_between = "file truncated: no end-of-stream marker",
	.eof_err = -EBADMSG,
};
