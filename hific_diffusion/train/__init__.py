"""The trainer: one loop for every task (``python -m hific_diffusion.train``).

``tasks`` (what is trained per ``config.task``), ``state`` / ``optim`` / ``step``
(the sharded train state, optimizer and jitted step), ``trainer`` (the loop:
checkpoints, resume, non-finite guard), ``distributed`` (multi-host start-up),
``reporting`` / ``samples`` (logs, TensorBoard, sample images), ``defaults``.
"""
