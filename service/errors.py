"""The one exception the numerics raise for input they cannot accept."""

from __future__ import annotations

Location = tuple[str | int, ...]


class InvalidInputError(ValueError):
    """Input that is well-formed but mathematically unusable (shapes that do not chain, NaN, ...).

    ``location`` is the path of the offending field in the request, e.g. ``("network", "layers", 2, "weight")``,
    so that the HTTP layer can point at it.
    """

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidInputError], tuple[Location, str]]:
        """Pickled as its location and message (``ValueError``'s own pickling would call it with the message
        alone): an error raised in an executor's task on another process reaches the caller whole."""
        return type(self), (self.location, self.message)
