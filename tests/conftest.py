"""Test harness: 8 host CPU devices for sharding tests; slow and GPU markers;
the tiny ELIC models and photos that tests/autoencoder and tests/coding share.

Sharding tests take ``jax.devices("cpu")`` so they run the same with or
without a GPU present.
"""

import os

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    import jax

    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


# ------------------------------------------------- tiny ELIC models, photos
# Untrained, and briefly trained on crops of the photos scikit-image ships
# (offline). Imports happen on use, so collecting other tests stays light.

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photos():
    import numpy as np
    from skimage import data

    return [np.asarray(getattr(data, name)(), np.float32) / 255.0 for name in PHOTOS]


def train_tiny(steps: int, *, lmbda=0.01, lr=2e-3, batch=4, crop=64, seed=0):
    """Adam on random photo crops; returns (model, per-step rd losses)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder.elic import ELIC, rd_loss

    model = ELIC(configs.load("tiny").model, rngs=nnx.Rngs(seed))
    images = photos()
    rng = np.random.default_rng(seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, key):
        def loss_fn(p):
            return rd_loss(nnx.merge(graphdef, p, rest), x, lmbda, rng=key)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(steps):
        crops = []
        for _ in range(batch):
            im = images[rng.integers(len(images))]
            r, c = rng.integers(im.shape[0] - crop), rng.integers(im.shape[1] - crop)
            crops.append(im[r : r + crop, c : c + crop])
        params, opt_state, loss = step(
            params, opt_state, jnp.asarray(np.stack(crops)), jax.random.key(i)
        )
        losses.append(float(loss))
    nnx.update(model, params)
    return model, losses


@pytest.fixture(scope="session")
def tiny_model():
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder.elic import ELIC

    return ELIC(configs.load("tiny").model, rngs=nnx.Rngs(0))


@pytest.fixture(scope="session")
def trained_tiny():
    return train_tiny(60)


def photo_crop(size=128, which=0):
    import jax.numpy as jnp

    im = photos()[which]
    r, c = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
    return jnp.asarray(im[r : r + size, c : c + size][None])


@pytest.fixture(scope="session")
def photo_list():
    """The four photos, float32 [H, W, 3] in [0, 1] (astronaut, coffee, chelsea, rocket)."""
    return photos()


@pytest.fixture(scope="session")
def photo_128():
    """The centre 128x128 crop of skimage's astronaut (not a training crop size)."""
    return photo_crop(128)


@pytest.fixture(scope="session")
def photo_256_crops():
    """The 256x256 centre crops of all four photos."""
    return [photo_crop(256, which) for which in range(len(PHOTOS))]


@pytest.fixture(scope="session")
def tiny_trainer():
    """(train_tiny, photos) for slow tests that train longer."""
    return train_tiny, photos
