"""Default config sections for the trainer and the input pipeline."""

import ml_collections


def train_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            steps=1_000_000,
            batch_size=16,  # global batch, split over all devices of all hosts
            # Optimizer (train/optim.py): "adam" | "adamw".
            optimizer="adam",
            lr=1e-4,
            b1=0.9,
            b2=0.999,
            weight_decay=0.0,  # adamw only
            warmup_steps=1000,
            schedule="constant",  # after warm-up: "constant" | "cosine"
            min_lr_ratio=0.0,  # cosine decays to lr * min_lr_ratio
            grad_clip=1.0,  # global-norm clipping; 0 disables
            ema_decay=0.999,
            # EMA decay warmup: min(ema_decay, (1 + step) / (ema_warmup + step));
            # 0: none (an EMA started at the initial weights keeps ema_decay^step of them).
            ema_warmup=0,
            # Parameters stay float32; "bfloat16" runs the loss in bf16.
            compute_dtype="float32",
            # Steps whose loss or gradients are not finite are skipped; this
            # many in a row stop training with an error.
            max_nonfinite=10,
            # Sharding rules (train/sharding.py): "replicate" | "fsdp";
            # mesh_shape = (data, fsdp), empty for automatic.
            sharding="replicate",
            mesh_shape=(),
            log_every=100,
            ckpt_every=5000,
            keep_checkpoints=3,
            async_checkpoints=True,
            eval_every=0,  # write sample reconstructions every N steps; 0 = at ckpt steps
            num_samples=2,
            # Stage 2 loads a frozen stage-1 checkpoint (workdir or bundle).
            autoencoder_checkpoint="",
            # A fresh run starts from this workdir's EMA weights, or from the
            # model of this task in this bundle (same model shape; fresh
            # optimizer), e.g. another rate point of a trained model.
            init_from="",
            # Multi-host: seconds to wait for jax.distributed to connect.
            init_timeout=300,
        )
    )


def data_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # "folder" | "synthetic" | "offline_photos" | "tfds"
            source="synthetic",
            path="",
            # tfds: builder name ("clic2020", "clic2022", "coco") and split.
            name="",
            split="train",
            crop=256,
            flip=True,
            num_workers=0,
            # synthetic: number of distinct images.
            synthetic_size=64,
            # Stage 2: a folder of the photos' x_mse made by the frozen
            # autoencoder (data/reconstructions.py) to condition on, instead of
            # running it on every crop; "" = run it.
            reconstructions="",
        )
    )
