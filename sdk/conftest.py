"""pytest's doctests of the SDK (``--doctest-modules`` over src/jacspec): jacspec.torch's need torch, an optional
extra, so they are not collected where torch is not installed."""

import importlib.util

collect_ignore: list[str] = [] if importlib.util.find_spec("torch") else ["src/jacspec/torch.py"]
