"""Model families: the base class and registry (`base`), and one module per family.

    from aerun.models import Autoencoder, register

is what a family of anyone's needs (see the README's "Writing your own family"). Importing this
package imports every module beside this file, so a new family of aerun's own is one module here and
one preset in conf/model/; `family(name)` also finds those of installed packages (the entry-point
group `aerun.models`).
"""

import importlib
import pkgutil

from aerun.models.base import (ACTIVATIONS, CODE_SPACE, CODE_USAGE, FAMILIES, FIGURES, FILTERS, KERNELS, SAMPLES,
                               Autoencoder, build, builder_args, families, family, load_plugins, register)
from aerun.objective import Term

SHARED = ("base", "layers")  # the modules that hold no family

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in SHARED:
        importlib.import_module(f"{__name__}.{_module.name}")  # each registers its family

from aerun.models.conv import ConvAutoencoder  # noqa: E402
from aerun.models.mlp import MLPAutoencoder  # noqa: E402
from aerun.models.pca import PCA  # noqa: E402
from aerun.models.vae import VariationalAutoencoder  # noqa: E402

__all__ = ["ACTIVATIONS", "CODE_SPACE", "CODE_USAGE", "FAMILIES", "FIGURES", "FILTERS", "KERNELS", "SAMPLES",
           "Autoencoder", "ConvAutoencoder", "MLPAutoencoder", "PCA", "Term", "VariationalAutoencoder", "build",
           "builder_args", "families", "family", "load_plugins", "register"]
