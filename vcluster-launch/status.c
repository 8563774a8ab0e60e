#include "status.h"

#include "vm.h"

json_t *status_ranks_json(const struct status_rank *ranks, int n, double now)
{
	static const char *states[] = { "running", "stopping", "exited" };
	json_t *arr = json_array();

	for (int r = 0; r < n; r++) {
		const struct status_rank *ri = &ranks[r];
		const struct ctrlmsg *s = &ri->stats;
		bool known = ri->have_stats && s->vm_state >= 0 && s->vm_state <= VM_EXITED;
		const char *vm = ri->exited ? "exited" : ri->node < 0 ? (ri->spare_failed ? "spare-failed" : "spare") :
				 known ? states[s->vm_state] : "unknown";
		json_t *o = json_pack("{s:i, s:s, s:s}", "rank", r, "vm", vm, "host", ri->host);
		if (ri->node >= 0)
			json_object_set_new(o, "node", json_sprintf("node%d", ri->node));
		if (ri->exited) {
			json_object_set_new(o, "status", json_integer(ri->status));
			if (ri->reason[0])
				json_object_set_new(o, "reason", json_string(ri->reason));
		}
		if (ri->have_stats) {
			json_object_set_new(o, "stats_age_s", json_real(now - ri->stats_age));
			json_object_set_new(o, "fabric", json_pack(
				"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I}",
				"frames_from_vm", (json_int_t)s->fab.frames_from_vm,
				"bytes_from_vm", (json_int_t)s->fab.bytes_from_vm,
				"frames_to_vm", (json_int_t)s->fab.frames_to_vm,
				"bytes_to_vm", (json_int_t)s->fab.bytes_to_vm,
				"frames_flooded", (json_int_t)s->fab.frames_flooded,
				"frames_discarded", (json_int_t)s->fab.frames_discarded,
				"backpressure_stalls", (json_int_t)s->fab.backpressure_stalls,
				"spill_reads", (json_int_t)s->fab.spill_reads,
				"deliver_queue_bytes", (int)s->fab.deliver_queue_bytes,
				"send_queue_batches", (int)s->peer_queued,
				"npeers", (json_int_t)s->fab.npeers));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}
