"""Join the hosts of a multi-host run with ``jax.distributed.initialize``.

Where the coordinator comes from, first match wins:

1. explicit arguments / env ``HFD_COORDINATOR`` (``host:port``),
   ``HFD_NUM_PROCESSES``, ``HFD_PROCESS_ID`` (the launch scripts set these);
2. SLURM (``SLURM_NTASKS`` > 1): JAX's own SLURM detection;
3. a TPU pod VM (``TPU_WORKER_HOSTNAMES`` lists more than one host), or
   ``HFD_MULTIHOST=auto`` (set by ``launch/tpu_pod.sh``): JAX's own cluster
   detection (TPU metadata, SLURM, ...).

Single-host runs skip initialisation. A host that cannot reach the
coordinator within ``timeout`` seconds fails with :class:`DistributedError`
instead of hanging.
"""

from __future__ import annotations

import os
import socket
import time

import jax

from hific_diffusion.errors import HfdError


class DistributedError(HfdError, RuntimeError):
    """The hosts of a multi-host run could not join."""


def detect(coordinator=None, num_processes=None, process_id=None) -> dict | None:
    """Keyword arguments for ``jax.distributed.initialize``, or None for one host."""
    env = os.environ
    coordinator = coordinator or env.get("HFD_COORDINATOR")
    if coordinator:
        try:
            n = int(num_processes if num_processes is not None else env["HFD_NUM_PROCESSES"])
            i = int(process_id if process_id is not None else env["HFD_PROCESS_ID"])
        except (KeyError, ValueError) as e:
            raise DistributedError(
                "a coordinator needs num_processes and process_id "
                "(flags or HFD_NUM_PROCESSES / HFD_PROCESS_ID)"
            ) from e
        if not 0 <= i < n:
            raise DistributedError(f"process_id {i} is outside [0, {n})")
        return dict(coordinator_address=coordinator, num_processes=n, process_id=i)
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        return {}  # jax reads SLURM_* itself
    if len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        return {}
    if env.get("HFD_MULTIHOST") == "auto":
        return {}
    return None


def initialize(coordinator=None, num_processes=None, process_id=None, timeout: int = 300):
    """Initialise ``jax.distributed`` if this is a multi-host run; returns the process count."""
    kwargs = detect(coordinator, num_processes, process_id)
    if kwargs is None:
        return 1
    if kwargs.get("process_id", 0) != 0:
        # JAX's client aborts the whole process (no Python exception) when
        # the coordinator never answers, so check reachability first.
        _wait_for(kwargs["coordinator_address"], timeout)
    try:
        jax.distributed.initialize(initialization_timeout=int(timeout), **kwargs)
    except Exception as e:
        where = kwargs.get("coordinator_address", "from the environment")
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DistributedError(
            f"could not join the run (coordinator {where}) within {timeout}s: {msg}"
        ) from e
    return jax.process_count()


def barrier(name: str, timeout: float) -> None:
    """Wait until every process reaches ``name`` (at most ``timeout`` s); a
    no-op for one process.

    Uses the coordination service's barrier, whose timeout is ours to set:
    the first cross-process collective goes through Gloo on CPU, which gives
    up after a fixed 30 s, so hosts that finish compiling far apart (a loaded
    machine) must line up here first. ``jax.distributed`` exposes no public
    barrier with a timeout, hence the private client.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed  # private: see above

    client = jax_distributed.global_state.client
    if client is None:  # pragma: no cover - multi-process without a client (TPU runtime)
        return
    try:
        client.wait_at_barrier(f"hfd_{name}", int(timeout * 1000))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DistributedError(
            f"the other processes did not reach {name!r} within {timeout}s: {msg}"
        ) from e


def _wait_for(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"could not join the run (coordinator {address}) within {timeout}s: {e}"
                ) from e
            time.sleep(0.5)
