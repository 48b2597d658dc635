"""Data sets (loaded offline first)."""

from glass.data.mnist import MNIST_SOURCES, load_mnist

__all__ = ["load_mnist", "MNIST_SOURCES"]
