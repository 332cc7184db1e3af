"""Training images: ``sources`` (folders, synthetic, offline photos, TFDS
array_record without TensorFlow), ``offline_photos`` (the photos scikit-image
and scikit-learn ship), ``pipeline`` (grain: random crops, flips, batches,
checkpointable iterators), ``photo_corpus`` (the offline photo corpus from
Debian and Python packages, with its held-out split)."""
