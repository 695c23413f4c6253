"""The errors ``model/`` raises for inputs it cannot render: the one place a caller (the service,
the CLI) learns that the fault is the input's, not the code's.

Each is a ``ValueError``; the service answers ``InputError`` 400, ``OutOfRange`` 422,
``InvalidImage`` and ``InvalidVideo`` 415, ``ImageTooLarge`` and ``VideoTooLarge`` 413. Any other
exception is a bug."""

from __future__ import annotations


class InputError(ValueError):
    """Inputs that do not go together or cannot be used (a mask with 3 styles, weights summing to 0)."""


class OutOfRange(InputError):
    """One option outside its range (alpha 1.5); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidImage(InputError):
    """The bytes are not an image Pillow can decode."""


class ImageTooLarge(InputError):
    """The image declares more pixels than allowed (checked before decoding pixel data)."""


class InvalidVideo(InputError):
    """The bytes are not a video PyAV can decode (not a video, truncated, no frames, unknown codec)."""


class VideoTooLarge(InputError):
    """The video is longer, or its frames larger, than allowed."""
