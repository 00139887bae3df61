"""`dataset=cifar10`: CIFAR-10 through torchvision's own class, download and checks (MD5 of every file).

The first run downloads it (about 170 MB) into paths.data_dir/cifar-10-batches-py/; later runs read it there.
No SHA-256 digests are recorded for it here: its files are checked by torchvision's MD5s.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from aerun.data.base import Dataset, Images, register_dataset
from aerun.errors import UserError


@register_dataset("cifar10")
class Cifar10(Dataset):
    fetched = True
    folder = "cifar-10-batches-py"

    def read(self, train: bool):
        import torchvision.datasets  # slow to import; only needed here

        root = str(self.data_dir)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return torchvision.datasets.CIFAR10(root=root, train=train, download=True)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise UserError(f"CIFAR-10 could not be fetched or read in {root} ({reason}); where this machine has no "
                            f"network, place torchvision's {self.folder}/ (or cifar-10-python.tar.gz) in {root}") from None

    def load(self, split: str) -> Images:
        found = self.read(split == "train")
        pixels = np.ascontiguousarray(np.asarray(found.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        return Images.of(pixels, np.asarray(found.targets), found.classes, f"CIFAR-10 {split}")

    def shape(self) -> tuple[int, int, int]:
        return 3, 32, 32

    def prepare(self) -> str:
        self.read(True)
        self.read(False)
        return f"cifar10: verified (torchvision's MD5) in {self.data_dir / self.folder}"
