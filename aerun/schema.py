"""The top-level training keys: each one's type, default and meaning, written once.

`TrainConfig` is registered in Hydra's ConfigStore as `train_schema`, the first entry of
conf/train.yaml's defaults, so Hydra checks each value's type as it composes (`epochs=abc` is one
line naming `epochs`) and every default comes from here. A config stored before a key existed (in a
checkpoint, in a report job's folder) is completed with that key's default (`complete`), so old runs
evaluate, plot, resume and are reused as they were.

The config groups (model, dataset, optimizer, noise, paths) are YAML presets in conf/; a model
family's own arguments are its constructor's (aerun.models), checked when it is built.
"""

from __future__ import annotations

from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from aerun.runs import REUSABLE_CHANGES

SCHEMA = "train_schema"
# Top-level keys that moved: {key: where it is now}. A stored config's value moves with it (`objective.carry_forward`,
# as aerun.checkpoint completes a checkpoint's config); a command line that gives one is told where it went.
RETIRED = {"beta": "model.beta"}


@dataclass
class DatasetConfig:
    """The dataset group's keys (conf/dataset/*.yaml; aerun.data for what each data set reads)."""

    name: str = MISSING
    showcase: Optional[list[int]] = None  # test indices drawn in figures and tables; null: one of each class, or the first ten
    binarize: str = "none"          # none (grey pixels) | dynamic (a fresh Bernoulli draw every epoch) | static (one)
    val_size: int = 0               # training images held out for validation (never trained on); 0: none
    classes: Optional[list[int]] = None  # train and test on the images of these labels only; null: all
    path: Optional[str] = None      # folder: a folder of images; npz: an .npz file
    size: Optional[list[int]] = None     # folder, synthetic: [H, W] every image is scaled and centre-cropped to
    channels: Optional[int] = None  # folder, synthetic: 1 (grey) or 3 (RGB); null: as the images are (folder), 1
    test_fraction: float = 0.2      # folder without train/ and test/: the share of images held out for testing
    n_train: Optional[int] = None   # synthetic: images per split, and the seed they are made from
    n_test: Optional[int] = None    # synthetic: test images
    seed: Optional[int] = None      # synthetic: the seed its images are made from (and val_size's draw)


@dataclass
class SearchConfig:
    """What `aerun -m hydra/sweeper=optuna` tunes (aerun.search)."""

    metric: str = "val_loss"  # a column of loss_epoch.csv, its last epoch: val_loss (minimised), val_probe (the
    #                           validation split's linear probe accuracy, maximised), or a train_ one; never test
    pruner: str = "median"    # median: stop a trial whose metric is worse than earlier trials' median there | none


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps besides checkpoints/last.pt (aerun.train)."""

    monitor: Optional[str] = None  # keep checkpoints/best.pt at the epoch of this column's best value: val_loss
    #                                (lowest), val_probe (highest; both need dataset.val_size) or a train_ column


@dataclass
class EarlyStopConfig:
    patience: int = 0  # stop after this many epochs without checkpoint.monitor improving; 0: train every epoch


@dataclass
class TrainConfig:
    epochs: int = 10            # the assignment's 10 (5 for its sparse, denoising and conv AEs, set by their presets)
    batch_size: int = 256       # images per training step
    seed: int = 0               # the initial weights, the batch order and every draw of training
    device: str = "auto"        # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    sparsity: float = 0.0       # weight of the L1 penalty on the code activations (sparse AE)
    contractive: float = 0.0    # weight of the squared Frobenius norm of the code's Jacobian (contractive AE)
    noise_seed: int = "${aerun.after:${seed}}"  # the training noise stream's seed (denoising AE): seed + 1 unless set
    lr_schedule: str = "constant"  # constant | cosine (half a cosine from optimizer.lr towards 0, set per epoch)
    augment_shift: int = 0      # pixels: each training image moved at random by up to this many (0: off; 0-4)
    logger: Any = field(default_factory=dict)  # the logger group (conf/logger/): the trackers besides the CSVs
    precision: str = "32"       # 32 | bf16-mixed | 16-mixed (CUDA): the forward pass and loss under autocast
    cuda_graphs: bool = True    # on CUDA, replay each epoch's captured training step where exact (aerun.graphs)
    search: SearchConfig = field(default_factory=SearchConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    paths: Any = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: Any = MISSING
    noise: Any = MISSING
    model: Any = MISSING


DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in fields(TrainConfig) if f.default is not NO_DEFAULT and f.default is not MISSING},
    **{f.name: {} for f in fields(TrainConfig) if f.default_factory is dict},  # logger: no tracker
}


def register() -> None:
    """Make `train_schema` known to Hydra (idempotent): done on import, as Hydra's own apps store their
    schemas, so that any composition of conf/train.yaml finds it. `aerun.after` is the resolver of
    noise_seed's default: the next integer after the seed, so that the seeds of a spread draw different
    training noise, and seed 0 the stream it always drew (noise_seed 1). (`aerun.job_folder`, which names a
    sweep's job folders, is aerun.sweep's own, registered where it is defined.)"""
    ConfigStore.instance().store(name=SCHEMA, node=TrainConfig)
    if not OmegaConf.has_resolver("aerun.after"):
        OmegaConf.register_new_resolver("aerun.after", lambda value: int(value) + 1)


def first_difference(stored: Any, wanted: Any, prefix: str = "") -> str | None:
    """The first key (dotted) whose value differs between two plain configs, the reusable changes aside."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        for key in sorted(set(stored) | set(wanted)):
            if not prefix and key in REUSABLE_CHANGES:
                continue
            if key not in stored or key not in wanted:
                return prefix + key
            found = first_difference(stored[key], wanted[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if stored == wanted else prefix.rstrip(".")


def changed_key(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """The first key a stored run's config (a checkpoint's, as `checkpoint.load` completes it) would have to
    change to be `wanted`'s run; None if it is that run, trained to any length. Without noise, the noise
    stream's seed draws nothing: not a change."""
    if wanted["noise"]["name"] == "none" == stored["noise"]["name"]:
        stored, wanted = {**stored, "noise_seed": None}, {**wanted, "noise_seed": None}
    return first_difference(stored, dict(wanted))


def complete(config: Mapping[str, Any]) -> DictConfig:
    """A stored training config, typed, with the default of every key it lacks (a key newer than it)."""
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), config)


register()
