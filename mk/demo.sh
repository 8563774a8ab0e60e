#!/usr/bin/env bash
# make demo: a 2-VM virtual cluster on this host running the network soak.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
np=${VC_DEMO_NP:-2}
echo "== vcluster demo: $np VMs, each running: vcluster-traffic --all --seconds 15"
exec mpirun --oversubscribe --bind-to none -np "$np" build/bin/vcluster-launch \
	--guest-cmd 'vcluster-traffic --all --seconds 15' --timeout 600
