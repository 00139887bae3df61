"""Data sets: a registry like the families' (`base`), and one module per kind of data set.

    from aerun.data import Dataset, Images, register_dataset

is what a data set of anyone's needs (see the README's "Writing your own dataset"). Importing this package
imports every module beside this file, so each built-in data set registers itself; `dataset(cfg, data_dir)`
also finds those of installed packages (the entry-point group `aerun.datasets`).
"""

import importlib
import pkgutil

from aerun.data.base import (BINARIZE, BINARY_SEED, DATASETS, IMAGE_SHAPE, SPLITS, VAL_SEED, Dataset, Images, Split,
                             batch_rows, clear_caches, data_key, data_shape, dataset, datasets, floats, label_names, load_images,
                             load_plugins, load_split, register_dataset, shape_text, showcase)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")  # each registers its data sets

from aerun.data.idx import IDX_DATASETS, IdxDataset, IdxFile, ensure, read_idx, register_idx, sha256_of  # noqa: E402
from aerun.data.synthetic import synthetic  # noqa: E402

__all__ = ["BINARIZE", "BINARY_SEED", "DATASETS", "IDX_DATASETS", "IMAGE_SHAPE", "SPLITS", "VAL_SEED", "Dataset",
           "IdxDataset", "IdxFile", "Images", "Split", "batch_rows", "clear_caches", "data_shape", "dataset", "datasets", "ensure",
           "floats", "label_names", "load_images", "load_plugins", "load_split", "read_idx", "register_dataset",
           "register_idx", "sha256_of", "shape_text", "showcase", "synthetic"]
