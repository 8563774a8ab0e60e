/* livesave: a live RAM save of a memfd that a "guest" thread keeps writing
 * reads back exactly as the memory was when the guest was stopped; a guest
 * rewriting everything flat out still gets a bounded save; a failed or
 * abandoned save leaves no file, and never removes a file it did not make. */
#include "test.h"
#include "livesave.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PS	4096u
#define NPAGES	3000u
#define NWORDS	((NPAGES + 63) / 64)
#define NFILES	3

static char dir[] = "/tmp/test_livesave.XXXXXX";

/* The fake VM: RAM on a memfd, and QEMU's two-stage dirty log. */
struct fake {
	int fd;
	uint8_t *ram;
	uint64_t pending[NWORDS];	/* set by the guest as it writes */
	uint64_t visible[NWORDS];	/* what sync handed over */
	int hot;			/* pages the guest writes: 0..hot-1 */
	int sleep_us;
	bool stop, running;
	bool fail_sync;
	bool never_quiet;		/* every sync reports page 0 dirty too */
	uint64_t seq;
	pthread_t tid;
};

static void *guest(void *arg)
{
	struct fake *f = arg;
	uint64_t x = 12345;
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t pg = (x >> 33) % (uint64_t)f->hot;
		uint64_t v[2] = { pg, ++f->seq };
		/* write the whole page (the restore check compares whole pages) */
		for (unsigned i = 0; i < PS; i += sizeof(v))
			memcpy(f->ram + pg * PS + i, v, sizeof(v));
		__atomic_or_fetch(&f->pending[pg / 64], 1ull << (pg % 64), __ATOMIC_RELEASE);
		if (f->sleep_us)
			usleep((useconds_t)f->sleep_us);
	}
	return NULL;
}

static int fake_sync(void *ctx, char *why, size_t whylen)
{
	struct fake *f = ctx;
	if (f->fail_sync) {
		snprintf(why, whylen, "QEMU said no");
		return -EIO;
	}
	for (unsigned w = 0; w < NWORDS; w++)
		__atomic_or_fetch(&f->visible[w], __atomic_exchange_n(&f->pending[w], 0,
				  __ATOMIC_ACQ_REL), __ATOMIC_RELEASE);
	/* A busy machine may starve the guest thread for a whole round, which
	 * would make the round quiet: the flat-out cases must not be. */
	if (f->never_quiet)
		__atomic_or_fetch(&f->visible[0], 1ull, __ATOMIC_RELEASE);
	return 0;
}

static uint64_t fake_take(void *ctx, int block, uint64_t w)
{
	struct fake *f = ctx;
	CHECK_EQ(block, 0);
	return __atomic_exchange_n(&f->visible[w], 0, __ATOMIC_ACQ_REL);
}

static const struct livesave_src_ops fake_ops = { fake_sync, fake_take };

static void fake_init(struct fake *f, int hot, int sleep_us)
{
	memset(f, 0, sizeof(*f));
	f->fd = memfd_create("test_livesave", 0);
	CHECK(f->fd >= 0);
	CHECK(ftruncate(f->fd, (off_t)NPAGES * PS) == 0);
	f->ram = mmap(NULL, (size_t)NPAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	CHECK(f->ram != MAP_FAILED);
	/* some data before the save starts; the rest stays zero */
	for (unsigned pg = 0; pg < NPAGES; pg += 3)
		memset(f->ram + (size_t)pg * PS, (int)(pg % 251) + 1, PS);
	f->hot = hot;
	f->sleep_us = sleep_us;
}

static void guest_start(struct fake *f)
{
	CHECK(pthread_create(&f->tid, NULL, guest, f) == 0);
	f->running = true;
}

static void guest_pause(struct fake *f)
{
	if (!f->running)
		return;
	__atomic_store_n(&f->stop, true, __ATOMIC_RELEASE);
	pthread_join(f->tid, NULL);
	f->running = false;
}

static void fake_free(struct fake *f)
{
	guest_pause(f);
	munmap(f->ram, (size_t)NPAGES * PS);
	close(f->fd);
}

static struct livesave_params params(struct fake *f, const char *tag, int max_rounds,
				     uint64_t ready_pages)
{
	static char paths[NFILES][256];
	struct livesave_params p = { .epoch = 4, .rank = 1, .page_size = PS, .nfiles = NFILES,
				     .nblocks = 1, .max_rounds = max_rounds,
				     .ready_pages = ready_pages, .round_ms = 5 };
	for (int i = 0; i < NFILES; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s.ram.%d", dir, tag, i);
		p.paths[i] = paths[i];
	}
	strcpy(p.blocks[0].name, "pc.ram");
	p.blocks[0].length = (uint64_t)NPAGES * PS;
	p.blocks[0].fd = f->fd;
	return p;
}

/* What a caller's loop does: wait for the fd, then read the state. */
static enum livesave_state wait_for(struct livesave *ls, enum livesave_state want)
{
	time_t t0 = time(NULL);
	for (;;) {
		enum livesave_state st = livesave_poll(ls);
		if (st == want || st == LIVESAVE_FAILED || st == LIVESAVE_DONE)
			return st;
		CHECK(time(NULL) - t0 < 60);
		struct pollfd pfd = { .fd = livesave_fd(ls), .events = POLLIN };
		poll(&pfd, 1, 1000);
	}
}

static uint8_t *image;

static int apply(void *arg, const struct liveram_info *in, uint32_t block, uint64_t first,
		 uint32_t n, const void *pages)
{
	(void)arg;
	CHECK_EQ(block, 0);
	CHECK_EQ(in->epoch, 4);
	memcpy(image + first * PS, pages, (size_t)n * PS);
	return 0;
}

static void check_restores(struct fake *f, const struct livesave_params *p)
{
	image = calloc(NPAGES, PS);
	CHECK(image);
	for (int i = 0; i < NFILES; i++) {
		char why[256] = "";
		int r = liveram_read(p->paths[i], apply, NULL, NULL, why, sizeof(why));
		if (r) {
			fprintf(stderr, "%s: %s\n", p->paths[i], why);
			exit(1);
		}
	}
	for (unsigned pg = 0; pg < NPAGES; pg++)
		if (memcmp(image + (size_t)pg * PS, f->ram + (size_t)pg * PS, PS)) {
			fprintf(stderr, "page %u differs after the restore\n", pg);
			exit(1);
		}
	free(image);
}

static uint64_t max_bytes;	/* for the next save() */

static void save(int hot, int sleep_us, int max_rounds, uint64_t ready, const char *tag,
		 struct livesave_result *res)
{
	struct fake f;
	char why[256] = "";

	fake_init(&f, hot, sleep_us);
	f.never_quiet = ready == 0;
	struct livesave_params p = params(&f, tag, max_rounds, ready);
	p.max_bytes = max_bytes;
	guest_start(&f);
	struct livesave *ls = livesave_start(&p, &fake_ops, &f, why, sizeof(why));
	CHECK(ls);
	CHECK_EQ(livesave_finish(ls) == -EBUSY || livesave_poll(ls) == LIVESAVE_READY, 1);
	CHECK_EQ(wait_for(ls, LIVESAVE_READY), LIVESAVE_READY);
	usleep(20000);			/* the guest keeps running after READY */
	guest_pause(&f);		/* the cut: the VM is paused */
	CHECK_EQ(livesave_finish(ls), 0);
	CHECK_EQ(livesave_finish(ls), -EALREADY);
	CHECK_EQ(wait_for(ls, LIVESAVE_DONE), LIVESAVE_DONE);
	livesave_result(ls, res);
	livesave_destroy(ls);
	CHECK(f.seq > 0);
	check_restores(&f, &p);
	fake_free(&f);
}

static void test_converges(void)
{
	struct livesave_result r;
	save(40, 200, 10, 64, "calm", &r);
	CHECK_EQ(r.bound, 0);
	CHECK_EQ(r.nfiles, NFILES);
	CHECK(r.full_pages >= NPAGES / 3 && r.full_pages < NPAGES);	/* zeros skipped */
	CHECK(r.rounds >= 1 && r.rounds <= 10);
	CHECK(r.bytes > r.full_pages * PS);
}

static void test_dirtier_bounded(void)
{
	struct livesave_result r;
	save(NPAGES, 0, 4, 0, "dirty", &r);	/* never quiet: the bound ends it */
	CHECK_EQ(r.rounds, 4);
	CHECK_EQ(r.bound, 1);
	CHECK(r.pages > r.full_pages);
}

/* The same writer with the files capped at about 1.5 images: the rounds
 * stop at the cap, long before max_rounds; the image is still exact. */
static void test_dirtier_capped(void)
{
	struct livesave_result r;
	max_bytes = (uint64_t)NPAGES * PS * 3 / 2;
	save(NPAGES, 0, 50, 0, "capped", &r);
	max_bytes = 0;
	CHECK_EQ(r.bound, 2);
	CHECK(r.rounds < 50);
	/* at most one round past the cap, plus the cut's */
	CHECK(r.bytes <= (uint64_t)NPAGES * PS * 3 / 2 + 2 * ((uint64_t)NPAGES * (PS + 24) + 4096));
}

static void test_failures(void)
{
	struct fake f;
	char why[256] = "";
	struct stat st;

	fake_init(&f, 10, 100);
	/* Abandoned before the cut: its files go. */
	struct livesave_params p = params(&f, "gone", 3, 0);
	struct livesave *ls = livesave_start(&p, &fake_ops, &f, why, sizeof(why));
	CHECK(ls);
	livesave_destroy(ls);
	for (int i = 0; i < NFILES; i++)
		CHECK(stat(p.paths[i], &st) < 0 && errno == ENOENT);

	/* A file in the way is named and kept; the others are not left. */
	p = params(&f, "taken", 3, 0);
	int fd = open(p.paths[1], O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK(livesave_start(&p, &fake_ops, &f, why, sizeof(why)) == NULL && errno == EEXIST);
	CHECK(strstr(why, p.paths[1]));
	CHECK(stat(p.paths[1], &st) == 0);
	CHECK(stat(p.paths[0], &st) < 0);
	unlink(p.paths[1]);

	/* The dirty log fails: FAILED, why says so, no file is left. */
	f.fail_sync = true;
	p = params(&f, "nosync", 3, 0);
	ls = livesave_start(&p, &fake_ops, &f, why, sizeof(why));
	CHECK(ls);
	CHECK_EQ(wait_for(ls, LIVESAVE_READY), LIVESAVE_FAILED);
	CHECK(strstr(livesave_why(ls), "QEMU said no"));
	livesave_destroy(ls);
	for (int i = 0; i < NFILES; i++)
		CHECK(stat(p.paths[i], &st) < 0 && errno == ENOENT);

	/* Bad parameters. */
	p.nfiles = 0;
	CHECK(livesave_start(&p, &fake_ops, &f, why, sizeof(why)) == NULL && errno == EINVAL);
	fake_free(&f);
}

int main(void)
{
	char cmd[256];

	CHECK(mkdtemp(dir));
	test_converges();
	test_dirtier_bounded();
	test_dirtier_capped();
	test_failures();
	snprintf(cmd, sizeof(cmd), "rm -r %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_livesave: ok\n");
	return 0;
}
