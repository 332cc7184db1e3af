#!/usr/bin/env bash
# Trains the photo models (configs/photos.py: one autoencoder per rate point
# and its diffusion and flow decoders) with the project's own commands, the
# way the shipped quality levels were trained, and exports them as bundles.
#
#   bash scripts/train_photos.sh                       # everything
#   STAGES="export" bash scripts/train_photos.sh       # one stage
#
# Every phase is one `train` run that stops at its step count; rerunning a
# phase resumes it from its last checkpoint (the trainer resumes exactly), so
# the script can be stopped and restarted at any time. Phases that start from
# another run's weights use `train.init_from`. On 2 CPU cores the whole recipe
# takes about a day (two runs side by side, one core each); on a GPU, minutes.
#
# Environment: PHOTOS (the corpus, gathered if missing), RUNS (workdirs),
# MODELS (bundles: $MODELS/quality_<k>), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PHOTOS=${PHOTOS:-$HOME/.cache/hific_diffusion/photos}
RUNS=${RUNS:-runs/photos}
MODELS=${MODELS:-hific_diffusion/assets}
STAGES=${STAGES:-"corpus autoencoder stage2 export"}
export HFD_PHOTOS=$PHOTOS
mkdir -p "$RUNS"

# The rate points, low to high: quality level -> rate (configs/photos.py RATES).
declare -A RATE=([1]=0.15 [2]=0.3 [3]=0.6)
# Stage 1: the middle rate from scratch, the others fine-tuned from it.
AE_STEPS_MID=9000
AE_STEPS_LO=6000
AE_STEPS_HI=8000
# Stage 2 (middle rate): plain v-loss, then LPIPS on the implied x0 (rho 0.9;
# VGG, then AlexNet; see MODEL_CARD.md for the ablation); the other rates
# fine-tune the middle rate's decoders on their own autoencoder.
DIFF_PLAIN_STEPS=9000
DIFF_VGG_STEPS=4000
DIFF_ALEX_STEPS=${DIFF_ALEX_STEPS:-10000}  # probe: LPIPS 0.715x x_mse at 10000
FLOW_STEPS=${FLOW_STEPS:-3000}
FT_STEPS=${FT_STEPS:-1500}
# How the exported decoders sample by default (chosen on the held-out split).
DECODE=${DECODE:-"--decode=diffusion.steps=1 --decode=diffusion.tile=0 --decode=flow.tile=0"}

train() {  # train NAME CONFIG STEPS [overrides...]
  local name=$1 config=$2 steps=$3 t0=$SECONDS
  shift 3
  "$PY" -m hific_diffusion.train --config="$config" --workdir="$RUNS/$name" \
    --config.train.steps="$steps" "$@" >> "$RUNS/$name.log" 2>&1
  echo $((SECONDS - t0)) >> "$RUNS/$name.seconds"
  tail -n 1 "$RUNS/$name.log"
}

lpips() {  # the stage-2 perceptual loss
  echo "--config.diffusion.perceptual_weight=0.9 --config.diffusion.perceptual_net=$1"
}

stage2_mid() {
  local ae="--config.train.autoencoder_checkpoint=$RUNS/ae_0.3"
  train diffusion_0.3 photos:diffusion:0.3 "$DIFF_PLAIN_STEPS" $ae
  # shellcheck disable=SC2046
  train diffusion_lpips_0.3 photos:diffusion:0.3 "$DIFF_VGG_STEPS" $ae $(lpips vgg16) \
    --config.train.init_from="$RUNS/diffusion_0.3"
  # shellcheck disable=SC2046
  train diffusion_alex_0.3 photos:diffusion:0.3 "$DIFF_ALEX_STEPS" $ae $(lpips alexnet) \
    --config.train.init_from="$RUNS/diffusion_lpips_0.3"
}

flow_mid() {
  # shellcheck disable=SC2046
  train flow_0.3 photos:flow:0.3 "$FLOW_STEPS" \
    --config.train.autoencoder_checkpoint="$RUNS/ae_0.3" $(lpips alexnet)
}

stage2_other() {  # stage2_other RATE: both decoders fine-tuned from the middle rate's
  local r=$1 ae="--config.train.autoencoder_checkpoint=$RUNS/ae_$1"
  # shellcheck disable=SC2046
  train "diffusion_$r" "photos:diffusion:$r" "$FT_STEPS" $ae $(lpips alexnet) \
    --config.train.init_from="$RUNS/diffusion_alex_0.3"
  # shellcheck disable=SC2046
  train "flow_$r" "photos:flow:$r" "$FT_STEPS" $ae $(lpips alexnet) \
    --config.train.init_from="$RUNS/flow_0.3"
}

for stage in $STAGES; do
  case $stage in
    corpus)
      [ -f "$PHOTOS/manifest.json" ] || "$PY" -m hific_diffusion.data.photo_corpus --out "$PHOTOS"
      ;;
    autoencoder)
      train ae_0.3 photos:autoencoder:0.3 "$AE_STEPS_MID"
      # The other rates start from the middle one; one core each.
      train ae_0.15 photos:autoencoder:0.15 "$AE_STEPS_LO" --config.train.init_from="$RUNS/ae_0.3" &
      a=$!
      train ae_0.6 photos:autoencoder:0.6 "$AE_STEPS_HI" --config.train.init_from="$RUNS/ae_0.3" &
      b=$!
      wait $a
      wait $b
      ;;
    stage2)
      stage2_mid & a=$!
      flow_mid & b=$!
      wait $a
      wait $b
      stage2_other 0.15 & a=$!
      stage2_other 0.6 & b=$!
      wait $a
      wait $b
      ;;
    export)
      for q in 1 2 3; do
        r=${RATE[$q]}
        diff=$RUNS/diffusion_$r
        [ "$r" = 0.3 ] && diff=$RUNS/diffusion_alex_0.3
        rm -rf "$MODELS/quality_$q"
        # shellcheck disable=SC2086
        "$PY" -m hific_diffusion.export --workdir="$RUNS/ae_$r" --workdir="$diff" \
          --workdir="$RUNS/flow_$r" --out="$MODELS/quality_$q" $DECODE
      done
      ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
