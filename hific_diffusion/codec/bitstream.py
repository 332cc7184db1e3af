"""The .hfd container (placeholder; filled below)."""


class BitstreamError(ValueError):
    """Any decode-side failure: bad, truncated, foreign or mismatched bytes."""
