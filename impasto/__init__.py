"""impasto: neural style transfer in TensorFlow (Gatys optimization, Johnson feed-forward, TF Serving)."""

__version__ = "0.1.0"
