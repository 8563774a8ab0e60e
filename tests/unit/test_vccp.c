/* The checkpoint protocol (vccp) on 3 real MPI ranks, against a fake
 * fabric (the ops struct, frames and markers as MPI messages on their own
 * communicator: FIFO per pair, as the real fabric promises) and a fake QEMU
 * (a thread speaking QMP on a unix socket, writing a VM state through the
 * descriptor getfd passes).  It relaunches itself under mpirun -np 3.
 *
 * Epoch 1: frames in flight at the cut (written by each "VM" just before
 * its marker) land in the receivers' saved queues, in order; rank 2 marks
 * late, and nobody saves before it has every marker; the files verify
 * against the manifest; latest names epoch 1.  Epoch 2: rank 2's QEMU fails
 * the save: every rank aborts, the epoch's files go, latest stays on 1,
 * every VM is resumed. */
#include "test.h"
#include "test_mpi.h"
#include "vctime.h"
#include "afile.h"
#include "manifest.h"
#include "qmp.h"
#include "rq.h"
#include "vccp.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define NRANKS		3
#define INFLIGHT	3		/* frames each VM writes just before its cut */
#define VMSTATE_SIZE	(3 << 20) + 123
#define LATE_RANK	2
#define LATE_MS		400
#define TAG_F		7

static int rank, size;
static char dir[PATH_MAX];

/* ---- fake QEMU ----------------------------------------------------------- */

struct fakeq {
	char path[108];
	int lfd;
	pthread_t th;
	int epoch;			/* counts "stop" */
	int fail_epoch;			/* query-migrate fails in this epoch */
	atomic_int stops, conts, migrates;
	bool plain_caps;		/* x-ignore-shared off since the last migrate */
	atomic_int plain_migrates;	/* migrates that came after that */
	_Atomic double t_migrate;	/* wall time of the last migrate */
};

static void q_say(int fd, const char *id, const char *ret)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "{\"return\": %s, \"id\": \"%s\"}\r\n", ret, id);
	CHECK(write(fd, buf, (size_t)n) == n);
}

static void *fakeq_main(void *arg)
{
	struct fakeq *fq = arg;
	int fd = accept(fq->lfd, NULL, NULL), passed = -1, queries = 0;
	char buf[65536];
	size_t len = 0;

	CHECK(fd >= 0);
	const char *greet = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
	CHECK(write(fd, greet, strlen(greet)) == (ssize_t)strlen(greet));
	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { buf + len, sizeof(buf) - 1 - len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(fd, &mh, 0);
		if (n <= 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_type == SCM_RIGHTS)
				memcpy(&passed, CMSG_DATA(c), sizeof(int));
		len += (size_t)n;
		/* split on balanced braces: commands carry no braces in strings */
		for (;;) {
			size_t end = 0;
			int depth = 0;
			for (; end < len; end++) {
				depth += buf[end] == '{';
				depth -= buf[end] == '}';
				if (depth == 0 && buf[end] == '}')
					break;
			}
			if (end >= len)
				break;
			json_error_t jerr;
			json_t *req = json_loadb(buf, end + 1, 0, &jerr);
			memmove(buf, buf + end + 1, len - end - 1);
			len -= end + 1;
			CHECK(req);
			const char *cmd = json_string_value(json_object_get(req, "execute"));
			const char *id = json_string_value(json_object_get(req, "id"));
			CHECK(cmd && id);
			if (!strcmp(cmd, "stop")) {
				fq->epoch++;
				queries = 0;
				atomic_fetch_add(&fq->stops, 1);
				q_say(fd, id, "{}");
			} else if (!strcmp(cmd, "cont")) {
				atomic_fetch_add(&fq->conts, 1);
				q_say(fd, id, "{}");
			} else if (!strcmp(cmd, "getfd")) {
				CHECK(passed >= 0);
				q_say(fd, id, "{}");
			} else if (!strcmp(cmd, "migrate-set-capabilities")) {
				/* a TLM hop leaves x-ignore-shared on: a checkpoint
				 * must turn it off or the RAM is left out */
				json_t *c, *caps = json_object_get(json_object_get(req, "arguments"),
								 "capabilities");
				size_t i;
				json_array_foreach(caps, i, c)
					if (!strcmp(json_string_value(json_object_get(c, "capability")),
						    "x-ignore-shared") &&
					    json_is_false(json_object_get(c, "state")))
						fq->plain_caps = true;
				q_say(fd, id, "{}");
			} else if (!strcmp(cmd, "migrate")) {
				/* the VM state: a pattern of this rank and epoch */
				CHECK(passed >= 0);
				if (fq->plain_caps)
					atomic_fetch_add(&fq->plain_migrates, 1);
				fq->plain_caps = false;
				static uint8_t st[VMSTATE_SIZE];
				for (size_t i = 0; i < sizeof(st); i++)
					st[i] = (uint8_t)(i * 7 + rank * 31 + fq->epoch);
				CHECK(write(passed, st, sizeof(st)) == (ssize_t)sizeof(st));
				close(passed);
				passed = -1;
				fq->t_migrate = vc_wall_s();
				atomic_fetch_add(&fq->migrates, 1);
				q_say(fd, id, "{}");
			} else if (!strcmp(cmd, "query-migrate")) {
				queries++;
				if (queries < 2)
					q_say(fd, id, "{\"status\": \"active\", \"ram\": {\"transferred\": 1, \"total\": 2}}");
				else if (fq->epoch == fq->fail_epoch)
					q_say(fd, id, "{\"status\": \"failed\", \"error-desc\": \"disk on fire\"}");
				else
					q_say(fd, id, "{\"status\": \"completed\", \"ram\": {\"transferred\": 2, \"total\": 2}}");
			} else {
				q_say(fd, id, "{}");	/* qmp_capabilities, migrate-set-parameters */
			}
			json_decref(req);
		}
	}
	close(fd);
	return NULL;
}

static void fakeq_start(struct fakeq *fq)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(fq->path, sizeof(fq->path), "%s/qmp%d.sock", dir, rank);
	strcpy(sa.sun_path, fq->path);
	fq->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(fq->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(fq->lfd, 1) == 0);
	CHECK(pthread_create(&fq->th, NULL, fakeq_main, fq) == 0);
}

/* ---- fake fabric --------------------------------------------------------- */

struct fakefab {
	MPI_Comm comm;
	bool held, draining;
	struct rq *rq;
	vccp_marker_cb cb;
	void *cbctx;
	int link_calls;			/* link_empty calls this epoch */
	double drain_since;
	bool wrote;			/* in-flight frames sent this epoch */
	uint32_t seq[NRANKS];		/* frames sent to each peer */
	uint32_t got[NRANKS];		/* frames received from each peer */
	int delivered;			/* frames written straight to the VM */
	_Atomic double t_last_marker;	/* wall time the last marker came */
	struct qmp *q;
	struct worker *w;
};

/* message: u8 kind (1 frame, 2 marker), u8 from, u32 seq or epoch */
static void ff_send(struct fakefab *f, int to, uint8_t kind, uint64_t v)
{
	uint8_t m[10] = { kind, (uint8_t)rank };
	memcpy(m + 2, &v, 8);
	CHECK(MPI_Send(m, sizeof(m), MPI_BYTE, to, TAG_F, f->comm) == MPI_SUCCESS);
}

static void ff_poll(struct fakefab *f)
{
	for (;;) {
		int flag = 0;
		MPI_Status st;
		MPI_Iprobe(MPI_ANY_SOURCE, TAG_F, f->comm, &flag, &st);
		if (!flag)
			return;
		uint8_t m[10];
		MPI_Recv(m, sizeof(m), MPI_BYTE, st.MPI_SOURCE, TAG_F, f->comm, MPI_STATUS_IGNORE);
		uint64_t v;
		memcpy(&v, m + 2, 8);
		if (m[0] == 2) {
			f->t_last_marker = vc_wall_s();
			if (f->cb)
				f->cb(f->cbctx, m[1], v);
			continue;
		}
		/* a frame: its payload says who sent it and its number */
		CHECK_EQ(v, f->got[m[1]]);	/* FIFO per channel */
		f->got[m[1]]++;
		uint8_t frame[20] = { 0 };
		frame[0] = m[1];
		memcpy(frame + 4, &v, 8);
		if (f->held || rq_count(f->rq))
			CHECK_EQ(rq_push(f->rq, m[1], frame, sizeof(frame)), 0);
		else
			f->delivered++;
	}
}

static void ops_hold(void *ctx, bool hold)
{
	struct fakefab *f = ctx;
	f->held = hold;
	if (hold) {
		f->link_calls = 0;
		f->wrote = false;
	}
	while (!hold && rq_count(f->rq)) {	/* the queue goes to the VM first */
		rq_pop(f->rq);
		f->delivered++;
	}
}

static void ops_drain(void *ctx, bool drain)
{
	struct fakefab *f = ctx;
	f->draining = drain;
	if (drain)
		f->drain_since = vc_mono_s();
}

/* The paused VM's link: what it wrote before the pause is read now and
 * forwarded, ahead of the marker.  The late rank takes its time. */
static bool ops_link_empty(void *ctx)
{
	struct fakefab *f = ctx;
	f->link_calls++;
	if (rank == LATE_RANK && vc_mono_s() - f->drain_since < LATE_MS / 1000.0)
		return false;
	if (!f->wrote) {
		for (int p = 0; p < size; p++)
			for (int k = 0; k < INFLIGHT && p != rank; k++)
				ff_send(f, p, 1, f->seq[p]++);
		f->wrote = true;
	}
	return true;
}

static int ops_unread(void *ctx)
{
	return 0;
}

static int ops_send_marker(void *ctx, uint64_t epoch)
{
	struct fakefab *f = ctx;
	for (int p = 0; p < size; p++)
		if (p != rank)
			ff_send(f, p, 2, epoch);
	return 0;
}

static struct rq *ops_take_rq(void *ctx)
{
	struct fakefab *f = ctx;
	struct rq *q = f->rq;
	f->rq = rq_create();
	return q;
}

static void ops_put_rq(void *ctx, struct rq *q)
{
	struct fakefab *f = ctx;
	CHECK_EQ(rq_count(f->rq), 0);
	rq_destroy(f->rq);
	f->rq = q;
}

static size_t ops_rq_count(void *ctx)
{
	return rq_count(((struct fakefab *)ctx)->rq);
}

static void ops_set_marker_cb(void *ctx, vccp_marker_cb cb, void *vctx)
{
	struct fakefab *f = ctx;
	f->cb = cb;
	f->cbctx = vctx;
}

static void ops_progress(void *ctx)
{
	struct fakefab *f = ctx;
	struct pollfd p[2] = { { .fd = qmp_fd(f->q), .events = POLLIN },
			       { .fd = worker_fd(f->w), .events = POLLIN } };
	ff_poll(f);
	poll(p, 2, 1);
	qmp_pump(f->q);
	worker_dispatch(f->w);
}

static const struct vccp_fabric_ops ops = {
	.hold = ops_hold, .drain = ops_drain, .link_empty = ops_link_empty,
	.unread = ops_unread, .send_marker = ops_send_marker, .take_rq = ops_take_rq,
	.put_rq = ops_put_rq, .rq_count = ops_rq_count, .set_marker_cb = ops_set_marker_cb,
	.progress = ops_progress,
};

/* ---- the test ------------------------------------------------------------ */

/* Drive until this rank's epoch is over (vccp idle again). */
static void run_epoch(struct vccp *v, struct fakefab *f, bool request)
{
	bool busy, started = false;
	double end = vc_mono_s() + 60;

	if (request)
		CHECK_EQ(vccp_request(v, "test"), 0);
	while (vc_mono_s() < end) {
		CHECK_EQ(vccp_progress(v, &busy), 0);
		ops_progress(f);
		if (vccp_active(v))
			started = true;
		else if (started)
			return;
	}
	CHECK(!"the epoch did not end within 60 s");
}


int main(int argc, char **argv)
{
	int provided;

	if (!getenv("OMPI_COMM_WORLD_SIZE"))
		test_mpi_relaunch(argv, "3");
	MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	CHECK_EQ(size, NRANKS);
	if (rank == 0) {
		snprintf(dir, sizeof(dir), "/tmp/vc-test-vccp.XXXXXX");
		CHECK(mkdtemp(dir));
	}
	MPI_Bcast(dir, sizeof(dir), MPI_CHAR, 0, MPI_COMM_WORLD);
	char ck[PATH_MAX + 8];
	snprintf(ck, sizeof(ck), "%s/ck", dir);

	struct fakeq fq = { .fail_epoch = rank == 2 ? 2 : -1 };
	fakeq_start(&fq);
	char why[256];
	struct qmp *q = qmp_connect(fq.path, 5000, why, sizeof(why));
	CHECK(q);
	struct fakefab f = { .rq = rq_create(), .q = q, .w = worker_create(2) };
	CHECK(f.w);
	MPI_Comm_dup(MPI_COMM_WORLD, &f.comm);
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0)
		CHECK_EQ(afile_mkdir_p(ck, 0700), 0);
	MPI_Barrier(MPI_COMM_WORLD);

	json_t *conf = json_pack("{s:s, s:s}", "memory", "64M", "vcpus", "1");
	struct vccp_opts o = { .dir = ck, .config = conf, .fab = &ops, .fab_ctx = &f,
			       .worker = f.w };
	struct vccp *v = vccp_create(MPI_COMM_WORLD, &o);
	CHECK(v);
	vccp_set_qmp(v, q);
	json_decref(conf);

	/* a config key a restore would refuse is refused at the source */
	json_t *badconf = json_pack("{s:s}", "qemu", "/bin/false");
	struct vccp_opts ob = o;
	ob.config = badconf;
	CHECK(vccp_create(MPI_COMM_WORLD, &ob) == NULL);
	json_decref(badconf);

	/* ---- epoch 1 ---- */
	run_epoch(v, &f, rank == 0);
	json_t *last;
	if (rank == 0) {
		last = vccp_last_json(v);
		CHECK(last);
		CHECK(!strcmp(json_string_value(json_object_get(last, "status")), "ok"));
		json_decref(last);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	CHECK_EQ(atomic_load(&fq.stops), 1);
	CHECK_EQ(atomic_load(&fq.conts), 1);
	CHECK_EQ(atomic_load(&fq.plain_migrates), atomic_load(&fq.migrates));
	CHECK(atomic_load(&fq.migrates) >= 1);
	/* nobody saved before it held every marker: the late rank's marker
	 * came at least LATE_MS after the others paused */
	CHECK(fq.t_migrate >= f.t_last_marker);
	double t_mig = fq.t_migrate, t_mark = f.t_last_marker;
	double all_mig[NRANKS], all_mark[NRANKS];
	MPI_Allgather(&t_mig, 1, MPI_DOUBLE, all_mig, 1, MPI_DOUBLE, MPI_COMM_WORLD);
	MPI_Allgather(&t_mark, 1, MPI_DOUBLE, all_mark, 1, MPI_DOUBLE, MPI_COMM_WORLD);
	for (int r = 0; r < size; r++)
		CHECK(all_mig[r] >= all_mark[r]);

	char edir[PATH_MAX + 32], path[PATH_MAX + 64];
	snprintf(edir, sizeof(edir), "%s/epoch-000001", ck);
	json_t *m = NULL;
	CHECK_EQ(manifest_read(edir, &m, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(edir, m, rank, why, sizeof(why)), 0);
	json_t *ri = json_array_get(json_object_get(m, "ranks"), (size_t)rank);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(ri, "vmstate"), "size")),
		 VMSTATE_SIZE);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(ri, "rq"), "frames")),
		 INFLIGHT * (size - 1));
	json_decref(m);
	/* the saved queue: every frame in flight at the cut, per sender in order */
	struct rq *saved;
	snprintf(path, sizeof(path), "%s/rank%d.rq", edir, rank);
	CHECK_EQ(rq_load(path, 1, rank, &saved, why, sizeof(why)), 0);
	CHECK_EQ(rq_count(saved), INFLIGHT * (size - 1));
	uint64_t next[NRANKS] = { 0 };
	int from;
	const uint8_t *fr;
	uint16_t flen;
	while (rq_peek(saved, &from, &fr, &flen) == 0) {
		uint64_t seq;
		memcpy(&seq, fr + 4, 8);
		CHECK_EQ(fr[0], from);
		CHECK_EQ(seq, next[from]);
		next[from]++;
		rq_pop(saved);
	}
	rq_destroy(saved);
	/* after the resume the queue went to the VM */
	CHECK_EQ(rq_count(f.rq), 0);
	CHECK_EQ(f.delivered, INFLIGHT * (size - 1));
	char lpath[PATH_MAX + 16], target[64] = "";
	snprintf(lpath, sizeof(lpath), "%s/latest", ck);
	CHECK(readlink(lpath, target, sizeof(target) - 1) > 0);
	CHECK(!strcmp(target, "epoch-000001"));

	/* ---- epoch 2: rank 2's QEMU fails the save ---- */
	MPI_Barrier(MPI_COMM_WORLD);
	run_epoch(v, &f, rank == 0);
	CHECK_EQ(atomic_load(&fq.conts), 2);	/* every VM resumed anyway */
	if (rank == 0) {
		last = vccp_last_json(v);
		CHECK(!strcmp(json_string_value(json_object_get(last, "status")), "aborted"));
		json_decref(last);
	}
	CHECK_EQ(vccp_finish(v, 30000), 0);	/* also waits for the clean-up */
	MPI_Barrier(MPI_COMM_WORLD);
	memset(target, 0, sizeof(target));
	CHECK(readlink(lpath, target, sizeof(target) - 1) > 0);
	CHECK(!strcmp(target, "epoch-000001"));
	snprintf(edir, sizeof(edir), "%s/epoch-000002", ck);
	if (rank == 0) {
		struct stat st;
		CHECK(stat(edir, &st) < 0 && errno == ENOENT);
	}
	snprintf(edir, sizeof(edir), "%s/epoch-000001", ck);
	m = NULL;
	CHECK_EQ(manifest_read(edir, &m, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(edir, m, rank, why, sizeof(why)), 0);
	json_decref(m);

	vccp_destroy(v);
	qmp_close(q);
	pthread_join(fq.th, NULL);
	close(fq.lfd);
	unlink(fq.path);
	worker_destroy(f.w);
	rq_destroy(f.rq);
	MPI_Comm_free(&f.comm);
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0) {
		ckpt_remove_tree(dir);
		printf("vccp: 2 epochs on %d ranks (one committed, one aborted) as expected\n", size);
	}
	MPI_Finalize();
	return 0;
}
