"""Trackers: where a run's numbers go besides its CSV histories (`logger=tensorboard|mlflow|wandb`, or several).

The CSVs are always written and stay the record that `eval`, `plot` and `report` read; a tracker mirrors them
where people already look. Each tracker is a `Tracker` registered under its name (`@register_logger`); other
packages add theirs through the entry-point group `aerun.loggers`. Per run a tracker gets, in order: `start`
(the resolved config as dotted parameters; it returns the id of its run, kept in the run folder's
`trackers.json` so that a resumed run, and `eval`/`plot` later, go on in the same tracker run), `epoch` (every
`loss_epoch.csv` column under its own name, each epoch), `files` (eval.json, the figures) and `finish`.

A run is a sweep job when its folder's parent holds the sweep's record (Hydra's multirun.yaml, aerun's
jobs.yaml): the trackers group its jobs by that folder (MLflow: one experiment per sweep; W&B: a group).

A tracker that cannot start is one line before training starts; one that fails later (a server gone) is one
warning, and training goes on without it: the CSVs hold every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from aerun import atomic, plugins
from aerun.compose import CONF_DIR
from aerun.errors import UserError

log = logging.getLogger(__name__)

RECORD = "trackers.json"                        # in a run folder: each tracker's run id and options
SWEEP_RECORDS = ("multirun.yaml", "jobs.yaml")  # in a sweep folder (Hydra's, aerun.sweep's MANIFEST)
ENTRY_POINTS = "aerun.loggers"
ALWAYS = "csv"                                  # not a tracker: the histories every run writes


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about the run it mirrors."""

    run_dir: Path
    name: str                  # the sweep job's folder, or the run's model/time folders
    group: str | None          # the sweep folder (as given, relative where it can be), None for a lone run
    params: dict[str, str]     # the resolved config, one dotted key per value


@dataclass(frozen=True)
class Epoch:
    """One finished epoch, after its checkpoint is written."""

    epoch: int
    metrics: dict[str, float]  # the loss_epoch.csv row, every column by its name
    first_step: int = 0        # the steps and the rest, for trackers that show more than the CSV row
    record: Any = None         # (steps, 1 + regularisers) losses of each step
    lr: float = 0.0
    model: Any = None
    showcase: Any = None       # the showcase images, on the model's device


class Tracker:
    """One tracker's run. Subclasses set `requires` (the import it needs) and `extra` (aerun's extra that
    installs it), and override what they record; every method but `start` may be left as it is."""

    requires: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = dict(options)

    @classmethod
    def check(cls, name: str, options: Mapping[str, Any]) -> None:
        """Before training: raise a UserError if this tracker cannot start (its package missing, a server down)."""
        if cls.requires:
            try:
                __import__(cls.requires)
            except ImportError:
                extra = f"pip install 'aerun[{cls.extra}]'" if cls.extra else f"pip install {cls.requires}"
                raise UserError(f"logger={name} needs the {cls.requires} package; install it with {extra} "
                                f"(or leave {name} out of logger=)") from None

    def start(self, run: RunInfo, resume_id: str | None) -> str | None:
        """Open the run (`resume_id`: the one this run folder had) and record its parameters; return its id. The
        options it ends up using (a tracking URI from the environment, say) may be written back into
        `self.options`: trackers.json keeps them for `eval` and `plot`."""
        raise NotImplementedError

    def reopen(self, run: RunInfo, run_id: str | None) -> None:
        """`eval`, `plot`: open the tracker run `run_id` again to add files (`run.params` empty); raise if it
        cannot be opened."""
        self.start(run, run_id)

    def epoch(self, epoch: Epoch) -> None:
        pass

    def files(self, paths: Sequence[Path], run: RunInfo) -> None:
        pass

    def finish(self, status: str) -> None:
        """`status`: finished, failed or killed."""


LOGGERS: dict[str, type[Tracker]] = {}


def register_logger(name: str) -> Callable[[type[Tracker]], type[Tracker]]:
    """Class decorator: make a Tracker subclass selectable as `logger=name`. Names are unique."""
    return plugins.registered(LOGGERS, name, Tracker, "logger", "register_logger")


def selected(spec: Any) -> dict[str, dict[str, Any]]:
    """The trackers a config's `logger` names, with their options: the `logger` group's node ({name: options}),
    or a name or list of names (a `resume` override, a config stored before the group existed), each with its
    conf/logger/NAME.yaml options. `csv` is no tracker."""
    if isinstance(spec, (DictConfig, ListConfig)):
        spec = OmegaConf.to_container(spec, resolve=True)
    if spec is None or spec == ALWAYS:
        return {}
    if isinstance(spec, dict):
        return {str(k): dict(v or {}) for k, v in spec.items() if k != ALWAYS}
    names = [spec] if isinstance(spec, str) else list(spec)
    return {str(n): dict(preset(str(n))) for n in names if n != ALWAYS}


def preset(name: str) -> Mapping[str, Any]:
    path = CONF_DIR / "logger" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return (OmegaConf.to_container(OmegaConf.load(path)) or {}).get(name) or {}


def tracker_class(name: str) -> type[Tracker]:
    plugins.load(ENTRY_POINTS)
    if name not in LOGGERS:
        raise UserError(f"logger={name!r} is not a logger; allowed: {', '.join([ALWAYS, *sorted(LOGGERS)])} "
                        f"(several as logger=[tensorboard,mlflow])")
    return LOGGERS[name]


def check(spec: Any) -> None:
    """Before training: one line for a logger that is not known or cannot start."""
    for name, options in selected(spec).items():
        tracker_class(name).check(name, options)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys (`model.hidden`), each value as text (lists as JSON)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return flat


def describe(run_dir: Path, config: Mapping[str, Any]) -> RunInfo:
    run_dir = Path(run_dir)
    here = run_dir.resolve()
    sweep = here.parent if any((here.parent / record).is_file() for record in SWEEP_RECORDS) else None
    name = here.name if sweep else f"{here.parent.name}/{here.name}"
    group = None
    if sweep is not None:
        try:
            group = str(sweep.relative_to(Path.cwd().resolve()))
        except ValueError:
            group = str(sweep)
    return RunInfo(run_dir=run_dir, name=name, group=group, params=flatten(config))


def read_record(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(run_dir) / RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("warning: %s cannot be read; its trackers start new runs", path)
        return {}


class Trackers:
    """The trackers of one run, started together; a failing one is said once and dropped, never the run."""

    def __init__(self, run: RunInfo, started: dict[str, Tracker]) -> None:
        self.run = run
        self.started = started

    @classmethod
    def open(cls, spec: Any, run_dir: Path, config: Mapping[str, Any]) -> "Trackers":
        """Start every tracker `spec` selects, each in the tracker run this folder had (trackers.json), and record
        their ids; a tracker that cannot start is a UserError (before training starts). `check` has run before, in
        the training config's validation (aerun.validate): not again here."""
        run = describe(run_dir, config)
        record = read_record(run_dir)
        started: dict[str, Tracker] = {}
        try:
            for name, options in selected(spec).items():
                tracker = tracker_class(name)(name, options)
                known = record.get(name, {}).get("id")
                try:
                    run_id = tracker.start(run, known)
                except UserError:
                    raise
                except Exception as exc:
                    raise UserError(f"logger={name} could not start ({one_line(exc).rstrip('.')}); check its "
                                    f"settings (logger.{name}.*) or leave {name} out of logger=") from None
                started[name] = tracker
                record[name] = {"id": run_id, "options": tracker.options}
        except BaseException:
            cls(run, started).finish("failed")
            raise
        if started:
            atomic.write_json(Path(run_dir) / RECORD, record)
        return cls(run, started)

    def __bool__(self) -> bool:
        return bool(self.started)

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for name, tracker in list(self.started.items()):
            try:
                call(tracker)
            except Exception as exc:
                log.warning("warning: logger=%s could not record %s (%s); the run goes on without it (the CSVs "
                            "hold every epoch)", name, what, one_line(exc))
                self.started.pop(name)

    def epoch(self, epoch: Epoch) -> None:
        self._each(f"epoch {epoch.epoch}", lambda t: t.epoch(epoch))

    def files(self, paths: Sequence[Path]) -> None:
        self._each("files", lambda t: t.files(list(paths), self.run))

    def finish(self, status: str = "finished") -> None:
        self._each("the run's end", lambda t: t.finish(status))
        self.started = {}


def attach(run_dir: Path, paths: Iterable[Path | None]) -> None:
    """`eval` and `plot`: their files into the tracker runs a run folder records (trackers.json), if any. A tracker
    that cannot be reached is one warning: the files are written either way."""
    record = read_record(run_dir)
    paths = [Path(p) for p in paths if p is not None]
    if not record or not paths:
        return
    run = describe(run_dir, {})
    for name, entry in record.items():
        try:
            tracker = tracker_class(name)(name, entry.get("options") or {})
            tracker.reopen(run, entry.get("id"))
        except Exception as exc:
            log.warning("warning: logger=%s: %s's tracker run could not be opened (%s); its files are not sent",
                        name, run_dir, one_line(exc))
            continue
        one = Trackers(run, {name: tracker})
        one.files(paths)
        one.finish()


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """MLflow migrates a new SQLite store through Alembic, whose script calls logging.config.fileConfig: that would
    close every handler of this process (a run's train.log among them) and leave the root logger at WARN. Here it
    does nothing, and the migration's dozens of INFO lines are not said."""
    import logging.config

    kept = logging.config.fileConfig
    logging.config.fileConfig = lambda *args, **kwargs: None
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        logging.config.fileConfig = kept


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# --------------------------------------------------------------------------- the trackers aerun ships


@register_logger("tensorboard")
class TensorBoard(Tracker):
    """Event files in the run folder (`tensorboard --logdir outputs/`): per-step and per-epoch losses, the
    learning rate and the showcase reconstructions each epoch."""

    requires = "tensorboard"
    extra = "tensorboard"

    def start(self, run: RunInfo, resume_id: str | None) -> str | None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.run_dir))
        return None

    def epoch(self, epoch: Epoch) -> None:
        import torch

        for i, (loss, *terms) in enumerate(epoch.record.tolist()):  # the reconstruction term, then each regulariser
            self.writer.add_scalar("loss/train_iteration", loss, epoch.first_step + i + 1)
            if terms:
                self.writer.add_scalar("loss/penalty_iteration", sum(terms), epoch.first_step + i + 1)
        step = epoch.first_step + len(epoch.record)
        self.writer.add_scalar("loss/train_epoch", epoch.metrics["train_loss"], step)
        self.writer.add_scalar("loss/test_epoch", epoch.metrics["test_loss"], step)
        self.writer.add_scalar("learning_rate", epoch.lr, step)
        if epoch.showcase is not None:
            epoch.model.eval()
            with torch.no_grad():
                recon = epoch.model(epoch.showcase)[0].clamp(0, 1)
            pairs = torch.cat([epoch.showcase, recon]).detach().float().cpu()  # originals above, reconstructions below
            self.writer.add_images("showcase/original_and_reconstruction", pairs, step, dataformats="NCHW")
        self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()


@register_logger("mlflow")
class MLflow(Tracker):
    """An MLflow run per aerun run, in `logger.mlflow.experiment` (a sweep: `EXPERIMENT/SWEEP_FOLDER`), at
    `logger.mlflow.tracking_uri`, else MLFLOW_TRACKING_URI, else MLflow's default (./mlruns with MLflow 3.5)."""

    requires = "mlflow"
    extra = "mlflow"
    STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}

    @staticmethod
    def uri(options: Mapping[str, Any]) -> str | None:
        return options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or None

    @classmethod
    def check(cls, name: str, options: Mapping[str, Any]) -> None:
        super().check(name, options)
        uri = cls.uri(options)
        if uri and uri.startswith(("http://", "https://")):
            try:  # MLflow would retry for minutes; one request says at once whether the server is there
                urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise UserError(f"logger={name}: the MLflow server at {uri} does not answer ({reason}); start it "
                                "(mlflow server) or point MLFLOW_TRACKING_URI or logger.mlflow.tracking_uri at one"
                                ) from None

    def start(self, run: RunInfo, resume_id: str | None) -> str | None:
        with logging_kept():
            return self._start(run, resume_id)

    def _start(self, run: RunInfo, resume_id: str | None) -> str | None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a server gone mid-run: seconds, not minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.entities import Param

        self.connect()
        found = None
        if resume_id:
            try:
                found = self.client.get_run(resume_id)
            except Exception as exc:
                log.warning("warning: logger=mlflow: run %s is not at %s (%s); this run starts a new one",
                            resume_id, self.options["tracking_uri"], one_line(exc))
        if found is None:
            experiment = str(self.options.get("experiment") or "aerun")
            if run.group:
                experiment = f"{experiment}/{run.group}"
            tags = {"aerun.run_dir": str(run.run_dir), **({"aerun.sweep": run.group} if run.group else {})}
            found = self.client.create_run(self.experiment_id(experiment), run_name=run.name, tags=tags)
        self.run_id = found.info.run_id
        self.client.update_run(self.run_id, status="RUNNING")
        had = found.data.params
        new = [Param(k[:250], v[:6000]) for k, v in run.params.items() if k not in had]
        if new:
            self.client.log_batch(self.run_id, params=new)
        changed = sorted(k for k, v in run.params.items() if k in had and had[k] != v[:6000])
        if changed:  # a resumed run may change epochs, the device or its trackers; MLflow's parameters are fixed
            self.client.set_tag(self.run_id, "aerun.resumed_with",
                                ", ".join(f"{k}={run.params[k]}" for k in changed))
        return self.run_id

    def connect(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient


        self.options["tracking_uri"] = self.uri(self.options) or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.options["tracking_uri"])
        self.final: str | None = None

    def reopen(self, run: RunInfo, run_id: str | None) -> None:
        with logging_kept():
            self.connect()
            found = self.client.get_run(str(run_id))
        self.run_id, self.final = found.info.run_id, found.info.status  # it ends as it was
        self.client.update_run(self.run_id, status="RUNNING")

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another job of the sweep created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def epoch(self, epoch: Epoch) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, epoch.epoch)
                                                    for k, v in epoch.metrics.items()])

    def files(self, paths: Sequence[Path], run: RunInfo) -> None:
        for path in paths:
            folder = path.parent.resolve().relative_to(run.run_dir.resolve()).as_posix()
            self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, self.final or self.STATUS.get(status, "FINISHED"))


@register_logger("wandb")
class WandB(Tracker):
    """A W&B run per aerun run in `logger.wandb.project`, a sweep's jobs as one group; its files under the run
    folder's wandb/. `logger.wandb.mode` (else WANDB_MODE): online, offline (`wandb sync` later) or disabled."""

    requires = "wandb"
    extra = "wandb"

    def start(self, run: RunInfo, resume_id: str | None) -> str | None:
        import wandb

        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False,
                                  disable_git=True, init_timeout=float(self.options.get("init_timeout") or 60))
        self.run = wandb.init(
            project=self.options.get("project") or "aerun", entity=self.options.get("entity"),
            mode=self.options.get("mode") or None, name=run.name, group=run.group, dir=str(run.run_dir),
            config=run.params, id=resume_id, resume="allow" if resume_id else None, reinit="create_new",
            settings=settings, allow_val_change=True)
        return self.run.id

    def epoch(self, epoch: Epoch) -> None:
        self.run.log(dict(epoch.metrics), step=epoch.epoch)

    def files(self, paths: Sequence[Path], run: RunInfo) -> None:
        for path in paths:
            self.run.save(str(path.resolve()), base_path=str(run.run_dir.resolve()), policy="now")

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)
