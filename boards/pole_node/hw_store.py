"""The node's flash: one small file per record slot on the board's filesystem (LittleFS)."""

import os

from . import settings


class FileFlash(settings.Flash):
    def __init__(self, folder: str = "/data") -> None:
        self.folder = folder
        try:
            os.mkdir(folder)
        except OSError:
            pass  # already there

    def read(self, name: str) -> bytes | None:
        try:
            with open(self.folder + "/" + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name: str, data: bytes) -> None:
        with open(self.folder + "/" + name, "wb") as f:
            f.write(data)
        if hasattr(os, "sync"):
            os.sync()
