#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [extra trainer flags...]
#   e.g. launch/tpu_pod.sh my-v4-32 us-central2-b elic_mse:0.25 /mnt/shared/elic025
#
# The repository must already be installed on every worker at $REPO_DIR
# (default ~/hific_diffusion) and WORKDIR must be a filesystem all workers
# share (NFS, Filestore or a GCS FUSE mount): checkpoints are written by all
# hosts together. Environment knobs: PROJECT, REPO_DIR, PYTHON,
# EXPECT_HOSTS (fail unless the slice has exactly this many hosts),
# CHECK_TIMEOUT (seconds, default 60) for the pre-flight checks,
# INIT_TIMEOUT (seconds, default 300) for jax.distributed to connect.
set -euo pipefail

die() { echo "tpu_pod.sh: error: $*" >&2; exit 1; }
[[ $# -ge 4 ]] || die "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [trainer flags...]"
TPU=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
REPO_DIR=${REPO_DIR:-'~/hific_diffusion'}
PYTHON=${PYTHON:-python3}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-60}
INIT_TIMEOUT=${INIT_TIMEOUT:-300}
GCLOUD=(gcloud compute tpus tpu-vm)
[[ -n ${PROJECT:-} ]] && GCLOUD+=(--project "$PROJECT")
command -v gcloud >/dev/null || die "gcloud not found; install the Google Cloud SDK"

# Host count: one network endpoint per TPU VM host.
IPS=$(timeout "$CHECK_TIMEOUT" "${GCLOUD[@]}" describe "$TPU" --zone "$ZONE" \
  --format='value(networkEndpoints[].ipAddress)' | tr ';,' '  ') \
  || die "cannot describe TPU $TPU in $ZONE within ${CHECK_TIMEOUT}s"
read -r -a HOSTS <<<"$IPS"
NUM_HOSTS=${#HOSTS[@]}
[[ $NUM_HOSTS -ge 1 ]] || die "TPU $TPU reports no hosts"
if [[ -n ${EXPECT_HOSTS:-} && $NUM_HOSTS -ne $EXPECT_HOSTS ]]; then
  die "TPU $TPU has $NUM_HOSTS hosts, expected $EXPECT_HOSTS"
fi
COORD=${HOSTS[0]}
echo "tpu_pod.sh: $NUM_HOSTS hosts, coordinator $COORD"

# Every worker must reach the coordinator host (its ssh port answers as soon
# as the VM is up; the JAX coordinator port opens only once training starts).
timeout "$CHECK_TIMEOUT" "${GCLOUD[@]}" ssh "$TPU" --zone "$ZONE" --worker=all \
  --command "timeout 10 bash -c '</dev/tcp/$COORD/22' || { echo \"\$(hostname): coordinator $COORD unreachable\" >&2; exit 1; }" \
  || die "not every worker reached the coordinator $COORD within ${CHECK_TIMEOUT}s"

# HFD_MULTIHOST=auto: jax.distributed.initialize() reads the TPU metadata.
CMD="cd $REPO_DIR && HFD_MULTIHOST=auto $PYTHON -m hific_diffusion.train \
  --config=$(printf %q "$CONFIG") --workdir=$(printf %q "$WORKDIR") \
  --config.train.init_timeout=$INIT_TIMEOUT $(printf '%q ' "$@")"
exec "${GCLOUD[@]}" ssh "$TPU" --zone "$ZONE" --worker=all --command "$CMD"
