"""jacspec's numerics: networks, activations, initialisation, spectral norms and gradient bounds.

Pure numpy/scipy; nothing here knows about HTTP or pydantic.
"""
