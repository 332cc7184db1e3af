"""Evaluation: datasets, metrics through ``pipeline.Codec``, FID/KID, baselines, reports."""
