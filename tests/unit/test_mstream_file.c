/* The mstream file sink and reader: N files written by N threads, read back
 * in any path order through the receive callback with every CRC checked;
 * truncated, bit-flipped, extended, mixed-up and missing files are refused
 * with the file named.  Files live in a private temp directory, removed at
 * the end. */
#include "test.h"
#include "mstream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NFILES	3
#define NCHUNKS	300

static char dir[64], paths[NFILES][96], why[1024];
static const char *pathv[NFILES];

static size_t chunk_len(uint64_t i)
{
	return (size_t)((i * 1231) % 5000);
}

static uint8_t chunk_byte(uint64_t i, size_t j)
{
	return (uint8_t)(i * 13 + j * 3 + 5);
}

struct rx {
	pthread_mutex_t lock;
	uint8_t seen[NCHUNKS];
	int64_t last[NFILES];
	int data, marks, bad;
};

static struct rx rx;

static int rx_cb(void *arg, const struct mstream_chunk *c)
{
	const uint8_t *p = c->data;
	bool ok;

	pthread_mutex_lock(&rx.lock);
	if (c->all) {
		ok = c->type == 2 && c->tag == 7 && c->len == 0;
		rx.marks++;
	} else {
		ok = c->type == 1 && c->tag < NCHUNKS &&
		     c->len == chunk_len(c->tag) &&
		     (int64_t)c->tag > rx.last[c->stream];
		for (size_t j = 0; ok && j < c->len; j++)
			ok = p[j] == chunk_byte(c->tag, j);
		if (ok) {
			rx.last[c->stream] = (int64_t)c->tag;
			ok = !rx.seen[c->tag]++;
		}
		rx.data++;
	}
	rx.bad += !ok;
	pthread_mutex_unlock(&rx.lock);
	return 0;
}

/* Write the set of files; returns the session. */
static uint64_t write_set(uint64_t session)
{
	struct mstream_opts o = { .nstreams = NFILES, .session_id = session,
				  .queue_depth = 2 };
	struct mstream *ms = mstream_create(&o);
	uint8_t buf[5000];

	CHECK(ms);
	CHECK_EQ(mstream_open_files(ms, pathv, NFILES), 0);
	for (uint64_t i = 0; i < NCHUNKS; i++) {
		for (size_t j = 0; j < chunk_len(i); j++)
			buf[j] = chunk_byte(i, j);
		CHECK_EQ(mstream_send(ms, 1, i, buf, chunk_len(i)), 0);
		if (i == NCHUNKS / 2)
			CHECK_EQ(mstream_send_all(ms, 2, 7, NULL, 0), 0);
	}
	CHECK_EQ(mstream_finish(ms), 0);
	session = mstream_session(ms);
	CHECK(session != 0);
	mstream_destroy(ms);
	return session;
}

/* Read the set back (paths in the order given); returns mstream_wait()'s
 * result, with the error text in why. */
static int read_set(const char *const *order, uint64_t session, int *open_r)
{
	struct mstream_opts o = { .nstreams = NFILES, .session_id = session,
				  .recv_cb = rx_cb };
	struct mstream *ms = mstream_create(&o);
	int r;

	CHECK(ms);
	memset(rx.seen, 0, sizeof(rx.seen));
	for (int i = 0; i < NFILES; i++)
		rx.last[i] = -1;
	rx.data = rx.marks = rx.bad = 0;
	*open_r = mstream_read_files(ms, order, NFILES);
	r = *open_r ? *open_r : mstream_wait(ms, 5000);
	mstream_error(ms, why, sizeof(why));
	if (r)
		fprintf(stderr, "read: %d: %s\n", r, why);
	mstream_destroy(ms);
	return r;
}

static off_t file_size(const char *path)
{
	struct stat st;

	CHECK_EQ(stat(path, &st), 0);
	return st.st_size;
}

static void flip_bit(const char *path, off_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, &b, 1, off), 1);
	b ^= mask;
	CHECK_EQ(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void expect_refused(int r, int err, const char *path, const char *text)
{
	CHECK_EQ(r, err);
	CHECK(strstr(why, path));
	if (!strstr(why, text)) {
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", why, text);
		exit(1);
	}
}

/* Runs on every exit, a failed CHECK included: no files left behind. */
static void cleanup(void)
{
	char keep[96];

	for (int i = 0; i < NFILES; i++)
		unlink(paths[i]);
	snprintf(keep, sizeof(keep), "%s/keep", dir);
	unlink(keep);
	rmdir(dir);
}

int main(void)
{
	const char *shuffled[NFILES];
	uint64_t session;
	int r, open_r;

	pthread_mutex_init(&rx.lock, NULL);
	snprintf(dir, sizeof(dir), "/tmp/vc-test-mstream-file.XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	for (int i = 0; i < NFILES; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/stream-%d.vcms", dir, i);
		pathv[i] = paths[i];
		shuffled[(i + 1) % NFILES] = paths[i];
	}

	/* Round trip, files given in another order than their streams. */
	session = write_set(0);
	struct stat st;
	CHECK_EQ(stat(paths[0], &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(read_set(shuffled, 0, &open_r), 0);
	CHECK_EQ(rx.bad, 0);
	CHECK_EQ(rx.data, NCHUNKS);
	CHECK_EQ(rx.marks, NFILES);
	for (int i = 0; i < NCHUNKS; i++)
		CHECK_EQ(rx.seen[i], 1);
	CHECK_EQ(read_set(pathv, session, &open_r), 0);	/* expected session */

	/* A reader expecting another session refuses the first file. */
	r = read_set(pathv, session + 1, &open_r);
	CHECK_EQ(open_r, r);
	expect_refused(r, -EBADMSG, paths[0], "session");

	/* Truncated mid-chunk. */
	off_t size = file_size(paths[1]);
	CHECK_EQ(truncate(paths[1], size - 7), 0);
	r = read_set(pathv, 0, &open_r);
	CHECK_EQ(open_r, 0);
	expect_refused(r, -EBADMSG, paths[1], "file truncated mid-chunk");

	/* Truncated exactly before the end marker (40 + 4 bytes). */
	write_set(0);
	CHECK_EQ(truncate(paths[2], file_size(paths[2]) - 44), 0);
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[2], "no end-of-stream marker");

	/* Truncated inside the hello. */
	write_set(0);
	CHECK_EQ(truncate(paths[0], 10), 0);
	r = read_set(pathv, 0, &open_r);
	CHECK_EQ(open_r, r);
	expect_refused(r, -EBADMSG, paths[0], "truncated hello (10 of 40 bytes)");

	/* A flipped bit in a payload, in a header, in the hello. */
	write_set(0);
	flip_bit(paths[2], file_size(paths[2]) / 2, 0x08);
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[2], "CRC32C");

	write_set(0);
	flip_bit(paths[1], 40 + 20, 0x01);	/* first chunk's tag */
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[1], "chunk seq 0: chunk header CRC32C");

	write_set(0);
	flip_bit(paths[0], 17, 0x40);		/* the hello's session */
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[0], "hello header CRC32C");

	/* Bytes after the end marker. */
	write_set(0);
	int fd = open(paths[1], O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "junk", 4), 4);
	close(fd);
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[1], "4 bytes after the end-of-stream marker");

	/* Files of two different sets mixed up. */
	write_set(0);
	char keep[96];
	snprintf(keep, sizeof(keep), "%s/keep", dir);
	CHECK_EQ(rename(paths[2], keep), 0);
	write_set(0);
	CHECK_EQ(rename(keep, paths[2]), 0);
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[2], "session");

	/* The same file twice, and a missing one. */
	write_set(0);
	const char *twice[NFILES] = { paths[0], paths[1], paths[1] };
	r = read_set(twice, 0, &open_r);
	expect_refused(r, -EBADMSG, paths[1], "holds stream 1, as does");
	CHECK_EQ(unlink(paths[1]), 0);
	r = read_set(pathv, 0, &open_r);
	expect_refused(r, -ENOENT, paths[1], "No such file");

	/* A sink that cannot create its file names it. */
	struct mstream_opts o = { .nstreams = 1 };
	struct mstream *ms = mstream_create(&o);
	char nodir[128];
	const char *bad = nodir;
	snprintf(nodir, sizeof(nodir), "%s/no/such/dir", dir);
	CHECK(ms);
	CHECK_EQ(mstream_open_files(ms, &bad, 1), -ENOENT);
	mstream_error(ms, why, sizeof(why));
	CHECK(strstr(why, "stream 0 (") && strstr(why, nodir));
	mstream_destroy(ms);

	cleanup();
	CHECK(access(dir, F_OK) != 0);
	pthread_mutex_destroy(&rx.lock);
	printf("ok\n");
	return 0;
}
