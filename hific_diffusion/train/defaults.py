"""Default config sections for the trainer and the input pipeline."""

import ml_collections


def train_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            steps=1_000_000,
            batch_size=16,
            lr=1e-4,
            warmup_steps=1000,
            grad_clip=1.0,
            ema_decay=0.999,
            log_every=100,
            ckpt_every=5000,
            keep_checkpoints=3,
            # Stage 2 loads a frozen stage-1 checkpoint (workdir or bundle).
            autoencoder_checkpoint="",
        )
    )


def data_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # "folder" | "synthetic" | "offline_photos" | "tfds"
            source="synthetic",
            path="",
            crop=256,
            num_workers=0,
        )
    )
