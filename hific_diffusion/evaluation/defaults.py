"""Default config section for evaluation (``config.eval``), read by ``evaluation.runner``."""

import ml_collections


def eval_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # clic20 | clic22 | kodak | coco30k (local directory), demo (offline photos), synthetic
            dataset="demo",
            data_dir="",
            # A TFDS array_record build instead of a folder: builder name
            # (e.g. "clic") and split; data_dir is then the TFDS data directory.
            tfds_name="",
            tfds_split="test",
            decoders=("mse",),
            diffusion_steps=0,  # 0: the model's default (config.diffusion.steps)
            flow_steps=0,
            noise_level=-1.0,  # < 0: the model's default (config.diffusion.noise_level)
            seed=0,
            max_images=0,  # 0: all
            # FID/KID: 256 = HiFiC FID/256 patches; 0 = whole images (COCO-30k protocol)
            fid_patch=256,
            fid_weights="",  # "": $HFD_FID_WEIGHTS, the cache, then download; or a path
            kid_subsets=100,
            kid_subset_size=1000,
            lpips_net="alexnet",
            # Classical codecs at the MSE decoder's per-image real bpp (missing ones skipped)
            baselines=("jpeg", "webp", "avif", "jpegxl", "bpg", "vvc"),
            save_reconstructions=False,
            random_init=False,  # no bundle/workdir: a randomly initialised model (tests)
        )
    )
