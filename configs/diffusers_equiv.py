"""A U-Net of the same shape as the peer diffusers ``UNet2DModel``.

Sources: ``/work/shared/anchors/peer_gpu_figures.md``: block_out_channels
(128, 128, 256, 256, 512, 512), 2 layers per block, self-attention at the
16x16 level (and in the middle block), 6 input channels, 113.7 M parameters.
Used by ``bench/unet_bench.py`` so throughput is compared like with like.
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    config = configs.base_config()
    config.name = "diffusers_equiv" + (f":{arg}" if arg else "")
    config.task = "diffusion"
    u = config.diffusion.unet
    u.base_channels = 128
    u.channel_mult = (1, 1, 2, 2, 4, 4)
    u.num_res_blocks = 2
    u.attn_resolutions = (16,)
    u.resolution = 256
    u.mid_attention = True
    u.dropout = 0.0
    u.compute_dtype = "bfloat16"
    config.train.batch_size = 32
    config.data.crop = 256
    return config
