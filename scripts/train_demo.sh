#!/usr/bin/env bash
# Trains the bundled default model (configs/demo.py) from scratch with the
# project's own commands, exports it, evaluates it on the held-out photos and
# writes MODEL_CARD.md. About an hour on 2 CPU cores; much less on a GPU.
#
#   bash scripts/train_demo.sh                 # everything
#   STAGES="stage2 export eval card" bash scripts/train_demo.sh   # resume later stages
#
# Rerunning a stage resumes its training from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/demo}
BUNDLE=${BUNDLE:-hific_diffusion/assets/quality_2}
PY=${PYTHON:-python}
STAGES=${STAGES:-"autoencoder stage2 export eval card"}
mkdir -p "$RUNS"

train() {
  local task=$1 t0=$SECONDS
  "$PY" -m hific_diffusion.train --config="demo:$task" --workdir="$RUNS/$task" \
    --config.train.autoencoder_checkpoint="$RUNS/autoencoder" > "$RUNS/$task.log" 2>&1
  echo $((SECONDS - t0)) > "$RUNS/$task.seconds"
  tail -n 1 "$RUNS/$task.log"
}

for stage in $STAGES; do
  case $stage in
    autoencoder) train autoencoder ;;
    stage2)
      # Both stage-2 decoders read the same frozen stage 1: train them side by side.
      train diffusion & d=$!
      train flow & f=$!
      wait $d
      wait $f
      ;;
    export)
      rm -rf "$BUNDLE"
      "$PY" -m hific_diffusion.export --workdir="$RUNS/autoencoder" \
        --workdir="$RUNS/diffusion" --workdir="$RUNS/flow" --out="$BUNDLE"
      ;;
    eval) "$PY" -m hific_diffusion.eval --config=demo --bundle="$BUNDLE" --out="$RUNS/eval" ;;
    card) "$PY" scripts/write_demo_card.py --runs="$RUNS" --eval="$RUNS/eval" --bundle="$BUNDLE" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
