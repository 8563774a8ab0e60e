/* vcluster-ckpt: check and show checkpoints, without a cluster.
 *
 *   vcluster-ckpt verify DIR [EPOCH|latest]   check every file; exit 0 if good
 *   vcluster-ckpt show DIR [EPOCH|latest]     the checkpoint as JSON
 *   vcluster-ckpt list DIR                    every epoch and whether it is complete
 *   vcluster-ckpt rq FILE                     a receive queue file as JSON
 *   vcluster-ckpt --version                   the release and format versions
 *
 * verify runs the same checks as a restore: the manifest (magic, version,
 * length, CRC32C), that it names every rank's files, and each file's size
 * and CRC32C, RAM files in whichever checkpoint directory the manifest
 * names.  A problem is reported in one line naming the file.
 */
#include "manifest.h"
#include "rq.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vcluster-ckpt verify DIR [EPOCH|latest]\n"
		"       vcluster-ckpt show DIR [EPOCH|latest]\n"
		"       vcluster-ckpt list DIR\n"
		"       vcluster-ckpt rq FILE\n"
		"       vcluster-ckpt --version\n"
		"DIR is a --checkpoint-dir (the first of several: RAM files in the others\n"
		"are found through the manifest); EPOCH defaults to latest.\n");
}

static void mac_str(const uint8_t *m, char *out, size_t len)
{
	snprintf(out, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* One frame of a receive queue as JSON.  A frame may be any length from 0
 * (a checkpoint that verifies says nothing about its frames): only the
 * fields it holds are read -- dst needs 6 bytes, src 12, the type 14. */
static json_t *decode_frame(int from, const uint8_t *f, uint16_t len)
{
	json_t *o = json_pack("{s:i, s:i}", "from_rank", from, "length", len);
	char mac[18];

	if (len >= 6) {
		mac_str(f, mac, sizeof(mac));
		json_object_set_new(o, "dst", json_string(mac));
	}
	if (len >= 12) {
		mac_str(f + 6, mac, sizeof(mac));
		json_object_set_new(o, "src", json_string(mac));
	}
	json_object_set_new(o, "ethertype", json_string(len < 14 ? "runt" :
		f[12] == 8 && f[13] == 0 ? "ipv4" : f[12] == 8 && f[13] == 6 ? "arp" : "other"));
	return o;
}

static int cmd_verify_show(const char *dir, const char *which, int show)
{
	char edir[PATH_MAX], why[512];
	uint64_t epoch;
	json_t *m;

	if (ckpt_resolve(dir, which, edir, sizeof(edir), &epoch, &m, why, sizeof(why)) < 0) {
		fprintf(stderr, "vcluster-ckpt: %s\n", why);
		return 1;
	}
	int n = (int)json_integer_value(json_object_get(m, "nranks")), bad = 0;
	json_t *checks = json_array();
	for (int r = 0; r < n; r++) {
		int rc = ckpt_verify_rank(edir, m, r, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "vcluster-ckpt: %s\n", why);
			bad++;
		}
		json_array_append_new(checks, json_pack("{s:i, s:s}", "rank", r, "result",
							rc < 0 ? why : "ok"));
		if (rc == 0 && show) {
			/* decode the receive queue into the output too */
			struct rq *q;
			char path[PATH_MAX + 32];
			snprintf(path, sizeof(path), "%s/rank%d.rq", edir, r);
			if (rq_load(path, epoch, r, &q, why, sizeof(why)) == 0) {
				json_t *ri = json_array_get(json_object_get(m, "ranks"), (size_t)r);
				json_t *frames = json_array();
				int from;
				const uint8_t *f;
				uint16_t len;
				while (rq_peek(q, &from, &f, &len) == 0) {
					json_array_append_new(frames, decode_frame(from, f, len));
					rq_pop(q);
				}
				json_object_set_new(json_object_get(ri, "rq"), "decoded", frames);
				rq_destroy(q);
			}
		}
	}
	json_t *out = show ? json_pack("{s:s, s:O, s:o, s:b}", "epoch_dir", edir, "manifest", m,
				       "checks", checks, "valid", !bad)
			   : json_pack("{s:s, s:I, s:i, s:o, s:b}", "epoch_dir", edir,
				       "epoch", (json_int_t)epoch, "nranks", n, "checks", checks,
				       "valid", !bad);
	char *text = json_dumps(out, JSON_INDENT(2));
	if (show || !bad)
		printf("%s\n", text);
	free(text);
	json_decref(out);
	json_decref(m);
	return bad ? 1 : 0;
}

static int cmd_list(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX], why[512];

	if (!d) {
		fprintf(stderr, "vcluster-ckpt: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	json_t *arr = json_array();
	while ((de = readdir(d))) {
		uint64_t e;
		if (ckpt_epoch_from_name(de->d_name, &e) < 0)
			continue;	/* only names the writer makes */
		json_t *m;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int r = manifest_read(path, &m, why, sizeof(why));
		json_array_append_new(arr, json_pack("{s:s, s:b, s:s?}", "dir", de->d_name,
						     "complete", r == 0,
						     "created", r == 0 ? json_string_value(json_object_get(m, "created")) : NULL));
		json_decref(m);
	}
	closedir(d);
	char target[64] = "";
	snprintf(path, sizeof(path), "%s/latest", dir);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n > 0)
		target[n] = '\0';
	json_t *out = json_pack("{s:s, s:s, s:o}", "dir", dir, "latest", target, "epochs", arr);
	char *text = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("%s\n", text);
	free(text);
	json_decref(out);
	return 0;
}

static int cmd_rq(const char *file)
{
	char why[512];
	struct rq *q;
	/* The epoch and rank are in the file; read them without a claim. */
	FILE *f = fopen(file, "rb");
	unsigned char hdr[40];
	if (!f || fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr)) {
		fprintf(stderr, "vcluster-ckpt: %s: %s\n", file, f ? "too short" : strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	uint64_t epoch = 0;
	for (int i = 0; i < 8; i++)
		epoch = epoch << 8 | hdr[24 + i];
	int rank = hdr[32] << 24 | hdr[33] << 16 | hdr[34] << 8 | hdr[35];
	if (rq_load(file, epoch, rank, &q, why, sizeof(why)) < 0) {
		fprintf(stderr, "vcluster-ckpt: %s: %s\n", file, why);
		return 1;
	}
	printf("{\"file\": \"%s\", \"epoch\": %llu, \"rank\": %d, \"frames\": %zu, \"bytes\": %zu}\n",
	       file, (unsigned long long)epoch, rank, rq_count(q), rq_bytes(q));
	rq_destroy(q);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		static const struct version_item v[] = {
			{ "format", "manifest", MANIFEST_VERSION },
			{ "format", "rq", RQ_VERSION },
			{ NULL, NULL, 0 }
		};
		return version_print(stdout, "vcluster-ckpt", v) ? 1 : 0;
	}
	if (argc >= 3 && argc <= 4 && (!strcmp(argv[1], "verify") || !strcmp(argv[1], "show")))
		return cmd_verify_show(argv[2], argc == 4 ? argv[3] : "latest",
				       !strcmp(argv[1], "show"));
	if (argc == 3 && !strcmp(argv[1], "list"))
		return cmd_list(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "rq"))
		return cmd_rq(argv[2]);
	usage(stderr);
	return 2;
}
