/* vcluster-ctl: talk to a running virtual cluster through rank 0's control
 * socket (RUN/ctl.sock).
 *
 *   vcluster-ctl [--run-dir DIR] [--json] status|shutdown|checkpoint
 *   vcluster-ctl migrate NODE --to HOST|RANK [--streams N] [--rehearse]
 */
#include "ctl.h"
#include "rundir.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vcluster-ctl [--run-dir DIR] [--json] COMMAND\n"
		"Commands:\n"
		"  status     per-rank VM state, frames and bytes forwarded, queue depths\n"
		"  shutdown   power every VM down (grace period as the launcher's --grace)\n"
		"  checkpoint checkpoint the whole cluster now and wait for the outcome\n"
		"             (exit 0 committed, 1 aborted); --no-wait returns at once;\n"
		"             --mode live|stop: this one's kind (default: the job's --checkpoint-mode)\n"
		"  migrate NODE --to HOST|RANK [--streams N] [--bandwidth MIB/S] [--rehearse]\n"
		"             move a running node (node1) to a spare rank (launcher --vms);\n"
		"             not built yet: --rehearse sends the whole VM with QEMU's migration\n"
		"             and keeps the node at its source; waits, prints progress and the\n"
		"             outcome (exit 0 rehearsed, 1 failed)\n"
		"--run-dir defaults to the newest run: $XDG_RUNTIME_DIR/vcluster/latest or\n"
		"/tmp/vcluster-UID/latest (followed only when it, its directory and its target\n"
		"are yours and writable by no one else).\n"
		"--json prints the launcher's reply as it came.\n"
		"--version prints the release and the control protocol's version.\n");
}

static void print_status(json_t *rep)
{
	json_t *ranks = json_object_get(rep, "ranks"), *r;
	size_t i;

	printf("run directory %s, %d ranks, up %.0f s\n",
	       json_string_value(json_object_get(rep, "run_dir")),
	       (int)json_integer_value(json_object_get(rep, "size")),
	       json_number_value(json_object_get(rep, "uptime_s")));
	printf("%-5s %-12s %-8s %-9s %12s %12s %12s %12s %8s %8s %8s\n", "rank", "host", "node", "vm",
	       "frames-out", "bytes-out", "frames-in", "bytes-in", "sendq", "deliverq", "stalls");
	json_array_foreach(ranks, i, r) {
		json_t *f = json_object_get(r, "fabric");
		const char *host = json_string_value(json_object_get(r, "host"));
		const char *node = json_string_value(json_object_get(r, "node"));
		printf("%-5d %-12s %-8s %-9s", (int)json_integer_value(json_object_get(r, "rank")),
		       host ? host : "?", node ? node : "-", json_string_value(json_object_get(r, "vm")));
		if (f)
			printf(" %12lld %12lld %12lld %12lld %8lld %8lld %8lld",
			       json_integer_value(json_object_get(f, "frames_from_vm")),
			       json_integer_value(json_object_get(f, "bytes_from_vm")),
			       json_integer_value(json_object_get(f, "frames_to_vm")),
			       json_integer_value(json_object_get(f, "bytes_to_vm")),
			       json_integer_value(json_object_get(f, "send_queue_batches")),
			       json_integer_value(json_object_get(f, "deliver_queue_bytes")),
			       json_integer_value(json_object_get(f, "backpressure_stalls")));
		json_t *st = json_object_get(r, "status");
		if (st)
			printf("  exit %lld", json_integer_value(st));
		const char *reason = json_string_value(json_object_get(r, "reason"));
		if (reason)
			printf(" (%s)", reason);
		putchar('\n');
	}	json_t *m = json_object_get(rep, "migration");
	if (m && json_is_true(json_object_get(m, "active")))
		printf("migration %lld: node%lld from rank %lld to rank %lld, %s, %.1f of %.1f MiB\n",
		       json_integer_value(json_object_get(m, "id")),
		       json_integer_value(json_object_get(m, "node")),
		       json_integer_value(json_object_get(m, "from")),
		       json_integer_value(json_object_get(m, "to")),
		       json_string_value(json_object_get(m, "phase")),
		       json_integer_value(json_object_get(m, "sent")) / 1048576.0,
		       json_integer_value(json_object_get(m, "total")) / 1048576.0);
	else if (m)
		printf("last migration %lld: %s\n", json_integer_value(json_object_get(m, "id")),
		       json_string_value(json_object_get(m, "result")));
}

/* One request on a fresh connection; the reply or NULL (reported). */
static const char *ckpt_mode;	/* --mode, or NULL */
static json_t *req_args;	/* more fields of the request (migrate's), or NULL */

static json_t *request(const char *path, const char *cmd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vcluster-ctl: socket path too long: %s\n", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "vcluster-ctl: %s: %s (is the virtual cluster running?)\n",
			path, strerror(errno));
		close(fd);
		return NULL;
	}
	/* Only our own launcher (or root's) is believed. */
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		fprintf(stderr, "vcluster-ctl: %s is served by uid %u (pid %d), not by you: "
			"not your virtual cluster\n", path, (unsigned)cred.uid, (int)cred.pid);
		close(fd);
		return NULL;
	}
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	json_t *o = json_pack("{s:i, s:s}", "vcluster-ctl", CTL_PROTO_VERSION, "command", cmd);
	if (ckpt_mode)
		json_object_set_new(o, "mode", json_string(ckpt_mode));
	if (req_args)
		json_object_update(o, req_args);
	char req[1024];
	int n = (int)json_dumpb(o, req, sizeof(req) - 1, JSON_COMPACT);
	json_decref(o);
	req[n++] = '\n';
	if (write(fd, req, (size_t)n) != n) {
		fprintf(stderr, "vcluster-ctl: sending to %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	static char buf[1 << 20];
	size_t len = 0;
	ssize_t k;
	while (len < sizeof(buf) - 1 && (k = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)k;
	buf[len] = '\0';
	close(fd);
	json_error_t jerr;
	json_t *rep = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
	if (!rep)
		fprintf(stderr, "vcluster-ctl: no valid reply from %s\n", path);
	return rep;
}

/* Poll status until the requested epoch has ended; print its outcome. */
static int wait_checkpoint(const char *path, json_t *started, int json_out)
{
	json_int_t after = json_integer_value(json_object_get(started, "after_epoch"));
	json_decref(started);
	for (int i = 0; i < 4 * 3600; i++) {
		usleep(250 * 1000);
		json_t *st = request(path, "status");
		if (!st)
			return 1;
		json_t *last = json_object_get(st, "last_checkpoint");
		if (last && json_integer_value(json_object_get(last, "epoch")) > after &&
		    !json_is_true(json_object_get(st, "checkpointing"))) {
			const char *status = json_string_value(json_object_get(last, "status"));
			int ok = status && !strcmp(status, "ok");
			if (json_out) {
				char *t = json_dumps(last, JSON_COMPACT);
				printf("%s\n", t);
				free(t);
			} else {
				printf("checkpoint epoch %lld %s: %s, %.1f MiB in %.2f s "
				       "(save %.2f s, flush %.3f s, wait %.3f s, resume skew %.1f ms)\n",
				       json_integer_value(json_object_get(last, "epoch")),
				       ok ? "committed" : "aborted",
				       json_string_value(json_object_get(last, "dir")),
				       json_integer_value(json_object_get(last, "bytes")) / 1048576.0,
				       json_number_value(json_object_get(last, "total_s")),
				       json_number_value(json_object_get(last, "save_max_s")),
				       json_number_value(json_object_get(last, "flush_max_s")),
				       json_number_value(json_object_get(last, "wait_max_s")),
				       json_number_value(json_object_get(last, "resume_skew_ms")));
			}
			json_decref(st);
			return ok ? 0 : 1;
		}
		json_decref(st);
	}
	fprintf(stderr, "vcluster-ctl: the checkpoint did not finish within an hour\n");
	return 1;
}

/* Poll status until migration `id` has ended: progress about once a
 * second, then its result (exit 0 done, 1 failed). */
static int wait_migration(const char *path, json_t *started, int json_out)
{
	json_int_t id = json_integer_value(json_object_get(started, "id"));
	json_int_t last_sent = -1;

	printf("%s\n", json_string_value(json_object_get(started, "message")));
	json_decref(started);
	for (int i = 0; i < 4 * 3600; i++) {
		usleep(250 * 1000);
		json_t *st = request(path, "status");
		if (!st)
			return 1;
		json_t *m = json_object_get(st, "migration");
		if (!m || json_integer_value(json_object_get(m, "id")) != id) {
			json_decref(st);
			continue;
		}
		if (json_is_true(json_object_get(m, "active"))) {
			json_int_t sent = json_integer_value(json_object_get(m, "sent"));
			if (i % 4 == 0 && sent != last_sent && !json_out)
				printf("node%lld -> rank %lld: %s, %.1f of %.1f MiB\n",
				       json_integer_value(json_object_get(m, "node")),
				       json_integer_value(json_object_get(m, "to")),
				       json_string_value(json_object_get(m, "phase")), sent / 1048576.0,
				       json_integer_value(json_object_get(m, "total")) / 1048576.0);
			last_sent = sent;
			json_decref(st);
			continue;
		}
		int ok = json_is_true(json_object_get(m, "ok"));
		if (json_out) {
			char *t = json_dumps(m, JSON_COMPACT);
			printf("%s\n", t);
			free(t);
		} else {
			fprintf(ok ? stdout : stderr, "%s%s\n", ok ? "" : "vcluster-ctl: ",
				json_string_value(json_object_get(m, "result")));
		}
		json_decref(st);
		return ok ? 0 : 1;
	}
	fprintf(stderr, "vcluster-ctl: the migration did not end within an hour\n");
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "run-dir", required_argument, 0, 'd' }, { "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' }, { "no-wait", no_argument, 0, 'n' },
		{ "version", no_argument, 0, 'V' }, { "mode", required_argument, 0, 'm' },
		{ "to", required_argument, 0, 't' }, { "streams", required_argument, 0, 's' },
		{ "rehearse", no_argument, 0, 'r' }, { "bandwidth", required_argument, 0, 'b' }, { 0 }
	};
	int rehearse = 0, bandwidth = -1;
	const char *to = NULL;
	int streams = 0;
	char dir[PATH_MAX] = "", path[PATH_MAX + 16];
	int json_out = 0, no_wait = 0, ch;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': snprintf(dir, sizeof(dir), "%s", optarg); break;
		case 'j': json_out = 1; break;
		case 'n': no_wait = 1; break;
		case 't': to = optarg; break;
		case 'r': rehearse = 1; break;
		case 'b': bandwidth = atoi(optarg); break;
		case 's': streams = atoi(optarg);
			if (streams < 1) {
				fprintf(stderr, "vcluster-ctl: --streams %s: want a positive number\n", optarg);
				return 2;
			}
			break;
		case 'm':
			if (strcmp(optarg, "live") && strcmp(optarg, "stop")) {
				fprintf(stderr, "vcluster-ctl: --mode '%s' is not one of live, stop\n", optarg);
				return 2;
			}
			ckpt_mode = optarg;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': {
			static const struct version_item v[] = {
				{ "wire", "ctl", CTL_PROTO_VERSION }, { NULL, NULL, 0 }
			};
			return version_print(stdout, "vcluster-ctl", v) ? 1 : 0;
		}
		default: usage(stderr); return 2;
		}
	}
	const char *cmd = optind < argc ? argv[optind] : "";
	bool migrate = !strcmp(cmd, "migrate");
	if (optind != argc - 1 - migrate || (migrate && !to)) {
		if (migrate)
			fprintf(stderr, "vcluster-ctl: migrate NODE --to HOST|RANK [--streams N]\n");
		else
			usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "shutdown") && strcmp(cmd, "checkpoint") && !migrate) {
		fprintf(stderr, "vcluster-ctl: unknown command '%s' (status, shutdown, checkpoint, "
			"migrate)\n", cmd);
		return 2;
	}
	if (migrate) {
		req_args = json_pack("{s:s, s:s}", "node", argv[optind + 1], "to", to);
		if (streams)
			json_object_set_new(req_args, "streams", json_integer(streams));
		if (rehearse)
			json_object_set_new(req_args, "rehearse", json_true());
		if (bandwidth >= 0)
			json_object_set_new(req_args, "bandwidth_mib", json_integer(bandwidth));
	}
	char why[2 * PATH_MAX];
	if (!dir[0] ? rundir_find_latest(dir, sizeof(dir), why, sizeof(why)) < 0
		    : rundir_check(dir, why, sizeof(why)) < 0) {
		fprintf(stderr, "vcluster-ctl: %s\n", why);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);

	json_t *rep = request(path, cmd);
	json_decref(req_args);
	req_args = NULL;
	if (!rep)
		return 1;
	if (!json_is_true(json_object_get(rep, "ok"))) {
		fprintf(stderr, "vcluster-ctl: %s\n",
			json_string_value(json_object_get(rep, "error")));
		return 1;
	}
	if (!strcmp(cmd, "checkpoint") && !no_wait)
		return wait_checkpoint(path, rep, json_out);
	if (!strcmp(cmd, "migrate") && !no_wait)
		return wait_migration(path, rep, json_out);
	if (json_out) {
		char *t = json_dumps(rep, JSON_COMPACT);
		printf("%s\n", t);
		free(t);
	} else if (!strcmp(cmd, "status")) {
		print_status(rep);
	} else {
		printf("%s\n", json_string_value(json_object_get(rep, "message")));
	}
	json_decref(rep);
	return 0;
}
