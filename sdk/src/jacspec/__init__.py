"""jacspec: see vanishing and exploding gradients before they waste a training run."""

from jacspec._version import __version__

__all__ = ["__version__"]
