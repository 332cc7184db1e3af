"""Default config section for evaluation."""

import ml_collections


def eval_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            dataset="demo",
            data_dir="",
            decoders=("mse",),
            max_images=0,
            fid_patch=256,
        )
    )
