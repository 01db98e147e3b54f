"""The smallest real media for tests that only need a valid part (not its content)."""

from __future__ import annotations

#: A valid 8x8 white PNG as a data URL: decodes, sniffs and OCRs to no text.
TINY_PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR4"
            "nGP8//8/AzbAhFV00EoAAFbUAw037MyjAAAAAElFTkSuQmCC")
