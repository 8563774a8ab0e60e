/* The keys a restore accepts: what a checkpoint writes passes; any other
 * key (a program, a directory) or a non-string value is refused with one
 * line naming where and the key. */
#include "test.h"
#include "restore.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	char why[256];
	struct restore_settings s = {
		.memory = "256M", .vcpus = "1", .subnet = "10.77.0.0/24", .guest_cmd = "true",
		.append = "", .kernel = "/k", .initrd = "/i", .disk = "/d",
		.vm = "none", .synth_rate = "100", .synth_seconds = "10", .maxcpus = "2",
	};
	json_t *conf = restore_config_build(&s);

	/* the writer writes only what the reader takes */
	CHECK_EQ(restore_config_check(conf, "M", why, sizeof(why)), 0);
	const char *key;
	json_t *val;
	json_object_foreach(conf, key, val) {
		bool listed = false;
		for (int i = 0; restore_config_keys[i]; i++)
			listed |= !strcmp(restore_config_keys[i], key);
		CHECK(listed);
	}
	CHECK_EQ(restore_config_check(NULL, "M", why, sizeof(why)), 0);
	CHECK(!strcmp(json_string_value(json_object_get(conf, "vm")), "none"));
	CHECK(!strcmp(json_string_value(json_object_get(conf, "synth-rate")), "100"));
	CHECK(!strcmp(json_string_value(json_object_get(conf, "maxcpus")), "2"));

	const char *bad[] = { "qemu", "run-dir", "checkpoint-dir", "restore", "timeout", NULL };
	for (int i = 0; bad[i]; i++) {
		json_t *c = json_deep_copy(conf);
		json_object_set_new(c, bad[i], json_string("/tmp/x"));
		why[0] = '\0';
		CHECK_EQ(restore_config_check(c, "/ck/epoch-000001/manifest", why, sizeof(why)),
			 -EINVAL);
		CHECK(strstr(why, "/ck/epoch-000001/manifest"));
		CHECK(strstr(why, bad[i]));
		CHECK(!strchr(why, '\n'));
		json_decref(c);
	}
	json_t *c = json_deep_copy(conf);
	json_object_set_new(c, "memory", json_integer(256));
	CHECK_EQ(restore_config_check(c, "M", why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "'memory' is not a string"));
	json_decref(c);
	c = json_array();
	CHECK_EQ(restore_config_check(c, "M", why, sizeof(why)), -EINVAL);
	json_decref(c);
	json_decref(conf);
	return 0;
}
