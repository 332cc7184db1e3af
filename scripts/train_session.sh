#!/usr/bin/env bash
# One training session of the shipped default model (quality 2, rate 0.3 of
# configs/photos.py) on a 2-core CPU: the autoencoder on one core, its
# diffusion decoder on the other, then export, held-out eval and model card.
#
#   bash scripts/train_session.sh                        # everything
#   AE_STEPS=6000 DIFF_STEPS=8000 bash scripts/train_session.sh
#   STAGES="export eval card" bash scripts/train_session.sh
#
# The model grows over sessions, and a session may run on another machine
# with none of the last one's workdirs: every run starts from the weights the
# last session committed (`train.init_from` a bundle, a fresh optimizer) and
# the card appends this session's runs to its history. Those weights are the
# work-in-progress bundle $WIP (weights/quality_2, committed, not installed)
# until the model is good enough to ship, then the shipped bundle itself.
# SHIP=1 exports to the shipped bundle (and evaluates it and writes the model
# card); otherwise export writes $WIP and appends to its history only. With
# neither holding a photo model the runs start from scratch. Within a session
# every run resumes from its checkpoints when the script is rerun.
#
# The diffusion decoder trains on the autoencoder while it still trains: it
# starts at the autoencoder's first checkpoint and restarts every DIFF_CHUNK
# steps (resuming exactly), each restart conditioning on the autoencoder's
# latest checkpoint, so it ends on the weights that ship. (ASSUMPTION: the
# residual the decoder models changes slowly enough late in training; the
# held-out probe, scripts/probe_heldout.py, is the check.)
#
# Environment: PHOTOS (the corpus, gathered if missing), RUNS, BUNDLE, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PHOTOS=${PHOTOS:-$HOME/.cache/hific_diffusion/photos}
RUNS=${RUNS:-runs/session}
BUNDLE=${BUNDLE:-hific_diffusion/assets/quality_2}
STAGES=${STAGES:-"corpus train export eval card"}
AE_STEPS=${AE_STEPS:-5000}
DIFF_STEPS=${DIFF_STEPS:-6000}
DIFF_CHUNK=${DIFF_CHUNK:-2000}
# 2 steps: on held-out crops 1 step gave 1.5x the original's high-pass energy
# (noise), 2 steps 0.6x with LPIPS almost as low (weights/README.md).
DECODE=${DECODE:-"--decode=diffusion.steps=2 --decode=diffusion.tile=0"}
export HFD_PHOTOS=$PHOTOS
mkdir -p "$RUNS"

# Continue from the last session's weights, or start from scratch.
WIP=${WIP:-weights/quality_2}
SHIP=${SHIP:-0}
OUT=$WIP
[ "$SHIP" = 1 ] && OUT=$BUNDLE
INIT=() INIT_DIFF=()
SNAPSHOT=$RUNS/previous_bundle  # export overwrites the source: keep a copy
for src in "$WIP" "$BUNDLE"; do
  if [ -d "$SNAPSHOT" ] || grep -q '"photo model' "$src/model_card.json" 2>/dev/null; then
    [ -d "$SNAPSHOT" ] || cp -r "$src" "$SNAPSHOT"
    INIT=(--config.train.init_from="$SNAPSHOT")
    # a work-in-progress bundle may hold the autoencoder alone
    [ -f "$SNAPSHOT/weights/diffusion.npz" ] && INIT_DIFF=("${INIT[@]}")
    break
  fi
done
# The autoencoder's learning rate decays over each session's steps (cosine to
# a tenth): the weights a session ends on, and ships, are the decayed ones.
# ASSUMPTION: a fresh optimizer each session restarts at train.lr.
AE_ARGS=(--config.train.schedule=cosine --config.train.min_lr_ratio=0.1)
LPIPS=(--config.diffusion.perceptual_weight=0.9 --config.diffusion.perceptual_net=alexnet)

train() {  # train NAME CONFIG STEPS CORE [overrides...]
  local name=$1 config=$2 steps=$3 core=$4
  shift 4
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c "$core" \
    "$PY" -m hific_diffusion.train --config="$config" --workdir="$RUNS/$name" \
    --config.train.steps="$steps" "$@" >> "$RUNS/$name.log" 2>&1
  tail -n 1 "$RUNS/$name.log"
}

diffusion() {
  # The first chunk conditions on the last session's autoencoder when there
  # is one (no core idles waiting for this session's first checkpoint).
  [ -n "${INIT[*]}" ] || until [ -n "$(ls "$RUNS/ae_0.3/checkpoints" 2>/dev/null)" ]; do sleep 60; done
  local k ae
  for ((k = DIFF_CHUNK; ; k += DIFF_CHUNK)); do
    ((k > DIFF_STEPS)) && k=$DIFF_STEPS
    ae=$RUNS/ae_0.3
    [ -n "$(ls "$ae/checkpoints" 2>/dev/null)" ] || ae=$SNAPSHOT
    # The training photos' x_mse by this autoencoder, decoded from real files
    # of the whole photos (rebuilt only when the autoencoder changed).
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 "$PY" -m \
      hific_diffusion.data.reconstructions --autoencoder="$ae" --data="$PHOTOS/train" \
      --out="$RUNS/x_mse_0.3" >> "$RUNS/diffusion_0.3.log" 2>&1
    train diffusion_0.3 photos:diffusion:0.3 "$k" 0 "${LPIPS[@]}" "${INIT_DIFF[@]}" \
      --config.train.autoencoder_checkpoint="$ae" --config.data.reconstructions="$RUNS/x_mse_0.3"
    ((k >= DIFF_STEPS)) && break
  done
}

for stage in $STAGES; do
  case $stage in
    corpus)
      [ -f "$PHOTOS/manifest.json" ] || "$PY" -m hific_diffusion.data.photo_corpus --out "$PHOTOS"
      ;;
    train)
      train ae_0.3 photos:autoencoder:0.3 "$AE_STEPS" 1 "${INIT[@]}" "${AE_ARGS[@]}" & a=$!
      diffusion & d=$!
      wait $a
      wait $d
      ;;
    export)
      rm -rf "$OUT"
      args=(--workdir="$RUNS/ae_0.3")
      if [ -d "$RUNS/diffusion_0.3/checkpoints" ]; then
        # shellcheck disable=SC2206
        args+=(--workdir="$RUNS/diffusion_0.3" $DECODE)
      fi
      # float16 weights: half the bundle (three rate points within the install budget)
      "$PY" -m hific_diffusion.export "${args[@]}" --out="$OUT" --weights_dtype=float16
      ;;
    eval)
      [ "$SHIP" = 1 ] || continue
      "$PY" -m hific_diffusion.eval --config=photos:diffusion:0.3 --bundle="$OUT" \
        --out="$RUNS/eval" --config.eval.decoders="('mse','diffusion')"
      ;;
    card)
      extra=(--eval="$RUNS/eval")
      [ "$SHIP" = 1 ] || extra=(--history-only)
      "$PY" scripts/write_model_card.py --bundle="$OUT" "${extra[@]}" \
        --photos="$PHOTOS" --previous="$SNAPSHOT/model_card.json" \
        --run autoencoder="$RUNS/ae_0.3" \
        $([ -f "$RUNS/diffusion_0.3/metrics.jsonl" ] && echo --run diffusion="$RUNS/diffusion_0.3")
      ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
