"""aerun: a config-driven experiment runner for autoencoders on MNIST-like images."""

__version__ = "0.1.0"
