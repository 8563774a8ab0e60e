/* vcluster-ckpt verify and show on a crafted checkpoint that verifies but
 * whose receive queue holds frames shorter than an Ethernet header (1, 7
 * and 13 bytes): show must read only the bytes each frame has (under
 * ASan an over-read aborts) and print what is there. */
#include "test.h"
#include "afile.h"
#include "manifest.h"
#include "rq.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int ckpt_main(int argc, char **argv);	/* vcluster-ckpt.c, built with -Dmain=ckpt_main */

static char root[] = "/tmp/vc-test-ckpt-show.XXXXXX";

static json_t *entry(const char *dir, const char *name)
{
	char path[PATH_MAX];
	uint32_t crc;
	uint64_t size;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK_EQ(ckpt_file_crc(path, &crc, &size), 0);
	return json_pack("{s:s, s:I, s:I}", "file", name, "size", (json_int_t)size, "crc32c",
			 (json_int_t)crc);
}

int main(void)
{
	char edir[PATH_MAX], path[PATH_MAX + 32], out[PATH_MAX + 32];
	uint8_t frame[64];

	CHECK(mkdtemp(root));
	ckpt_epoch_dir(root, 1, edir, sizeof(edir));
	CHECK_EQ(afile_mkdir_p(edir, 0700), 0);
	snprintf(path, sizeof(path), "%s/rank0.vmstate", edir);
	CHECK_EQ(afile_publish(path, "QEVM", 4, 0600), 0);

	struct rq *q = rq_create();
	memset(frame, 0xab, sizeof(frame));
	frame[12] = 8;
	frame[13] = 0;
	CHECK_EQ(rq_push(q, 1, frame, 1), 0);
	CHECK_EQ(rq_push(q, 1, frame, 7), 0);
	CHECK_EQ(rq_push(q, 2, frame, 13), 0);
	CHECK_EQ(rq_push(q, 2, frame, 60), 0);
	snprintf(path, sizeof(path), "%s/rank0.rq", edir);
	CHECK_EQ(rq_save(q, path, 1, 0, NULL), 0);
	rq_destroy(q);

	json_t *m = json_pack("{s:I, s:i, s:[{s:i, s:o, s:o}], s:{}}", "epoch", (json_int_t)1,
			      "nranks", 1, "ranks", "rank", 0, "vmstate", entry(edir, "rank0.vmstate"),
			      "rq", entry(edir, "rank0.rq"), "config");
	CHECK_EQ(manifest_write(edir, m), 0);
	json_decref(m);
	CHECK_EQ(ckpt_set_latest(root, 1), 0);

	/* Both commands print JSON on stdout: into a file we can read. */
	snprintf(out, sizeof(out), "%s/show.json", root);
	CHECK(freopen(out, "w", stdout));
	char *verify[] = { "vcluster-ckpt", "verify", root, "latest", NULL };
	CHECK_EQ(ckpt_main(4, verify), 0);
	char *show[] = { "vcluster-ckpt", "show", root, "1", NULL };
	CHECK_EQ(ckpt_main(4, show), 0);
	fflush(stdout);

	char *text;
	size_t len;
	CHECK_EQ(afile_read_all(out, 1 << 20, &text, &len), 0);
	char *second = strstr(text, "\n}\n{");	/* verify's object, then show's */
	CHECK(second);
	json_error_t jerr;
	json_t *j = json_loads(second + 3, 0, &jerr);
	CHECK(j);
	CHECK(json_is_true(json_object_get(j, "valid")));
	json_t *fr = json_object_get(json_object_get(json_array_get(json_object_get(
		json_object_get(j, "manifest"), "ranks"), 0), "rq"), "decoded");
	CHECK_EQ(json_array_size(fr), 4);
	json_t *f1 = json_array_get(fr, 0), *f7 = json_array_get(fr, 1);
	json_t *f13 = json_array_get(fr, 2), *f60 = json_array_get(fr, 3);
	CHECK_EQ(json_integer_value(json_object_get(f1, "length")), 1);
	CHECK(!json_object_get(f1, "dst") && !json_object_get(f1, "src"));
	CHECK(!strcmp(json_string_value(json_object_get(f1, "ethertype")), "runt"));
	CHECK(!strcmp(json_string_value(json_object_get(f7, "dst")), "ab:ab:ab:ab:ab:ab"));
	CHECK(!json_object_get(f7, "src"));
	CHECK(json_object_get(f13, "src") && !strcmp(json_string_value(json_object_get(f13, "ethertype")), "runt"));
	CHECK(!strcmp(json_string_value(json_object_get(f60, "ethertype")), "ipv4"));
	json_decref(j);
	free(text);

	/* list shows the epochs the writer names, not look-alikes. */
	char alias[PATH_MAX + 16];
	snprintf(alias, sizeof(alias), "%s/epoch-7", root);
	CHECK_EQ(afile_mkdir_p(alias, 0700), 0);
	CHECK(freopen(out, "w", stdout));
	char *list[] = { "vcluster-ckpt", "list", root, NULL };
	CHECK_EQ(ckpt_main(3, list), 0);
	fflush(stdout);
	CHECK_EQ(afile_read_all(out, 1 << 20, &text, &len), 0);
	CHECK(strstr(text, "\"epoch-000001\"") && !strstr(text, "\"epoch-7\""));
	free(text);
	CHECK_EQ(ckpt_remove_tree(root), 0);
	fprintf(stderr, "ok: vcluster-ckpt show on short frames\n");
	return 0;
}
