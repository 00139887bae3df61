"""Model families: the base class and registry (`base`), and one module per family.

    from aerun.models import Autoencoder, register

is what a family of anyone's needs (see the README's "Writing your own family"); importing this
package registers aerun's own families, and `family(name)` also finds those of installed packages
(the entry-point group `aerun.models`).
"""

from aerun.models import conv, mlp, pca, vae  # noqa: F401  (each registers its family)
from aerun.models.base import (CODE_SPACE, CODE_USAGE, FAMILIES, FIGURES, FILTERS, KERNELS, SAMPLES, ACTIVATIONS,
                               Autoencoder, build, builder_args, families, family, load_plugins, register)
from aerun.models.conv import ConvAutoencoder
from aerun.models.mlp import MLPAutoencoder
from aerun.models.pca import PCA
from aerun.models.vae import VariationalAutoencoder
from aerun.objective import Term

__all__ = ["ACTIVATIONS", "CODE_SPACE", "CODE_USAGE", "FAMILIES", "FIGURES", "FILTERS", "KERNELS", "SAMPLES",
           "Autoencoder", "ConvAutoencoder", "MLPAutoencoder", "PCA", "Term", "VariationalAutoencoder", "build",
           "builder_args", "families", "family", "load_plugins", "register"]
