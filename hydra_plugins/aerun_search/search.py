"""`aerun -m hydra/sweeper=optuna`: Hydra's Optuna sweeper, made to continue and to prune.

The plugin's own sweeper runs `n_trials` new trials each time it starts and forgets a trial
that was running when it stopped. With `hydra/sweeper=optuna` aerun's command line makes this
class the sweeper and keeps the study in SQLite under the sweep folder (aerun.search.DEFAULTS), so
the same command run again continues it:

- `n_trials` is the total: trials that finished (complete, pruned or failed) count, and only the
  rest are asked for;
- a trial that was running when the search stopped is marked failed and its parameters are asked
  again first (Optuna's enqueue), so it is rerun;
- each trial trains in the job folder named by its trial number, so a continued search never
  writes into an earlier trial's folder;
- the study minimises or maximises as its metric asks (`search.metric`: val_loss is minimised,
  val_probe maximised);
- a trial whose per-epoch validation metric is worse than the median of earlier trials at that
  epoch is pruned (`search.pruner=median`; aerun.search reports from inside the job);
- a trial whose training fails (a loss that became non-finite, say) fails alone: the search goes on.

The job's side (what it returns, how it reports each epoch) is aerun.search.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Optional

os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")  # optuna 2.x on SQLAlchemy 1.4: works, and says so

import optuna  # noqa: E402
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from aerun import search as aerun_search

INTERRUPTED = "aerun.interrupted"  # a failed trial's user attribute: it was running when the search stopped


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The study's pruner: Optuna's median rule, from the first epoch once 3 trials have completed; or none."""
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that counts towards the total: finished, and not stopped by the search stopping."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED)


class SearchSweeperImpl(OptunaSweeperImpl):
    def sweep(self, arguments: List[str]) -> None:
        self._process_searchspace_config()
        distributions, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        for name in fixed:
            distributions.pop(name, None)
        Path(str(self.sweep_dir)).mkdir(parents=True, exist_ok=True)
        search = self.config.search
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    direction=aerun_search.direction(search.metric), pruner=make_pruner(search.pruner),
                                    load_if_exists=True)
        rerun = 0
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            rerun += 1
        done = sum(counted(t) for t in study.get_trials(deepcopy=False))
        to_go = max(self.n_trials - done, 0)
        print(f"[search] study {study.study_name} in {self.storage}: {done} of {self.n_trials} trials done"
              + (f", {rerun} interrupted to rerun" if rerun else "") + f", {to_go} to go", flush=True)
        while to_go > 0:
            trials = [study.ask() for _ in range(min(to_go, self.n_jobs))]
            overrides = self._configure_trials(trials, distributions, fixed)
            returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns):
                self._tell(study, trial, ret)
            to_go -= len(trials)
        self._write_results(study)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        result = ret.return_value if ret.status == JobStatus.COMPLETED else {"failed": str(ret._return_value)}
        if not isinstance(result, dict):
            result = {"failed": f"the job returned {result!r}, not aerun's search result"}
        if result.get("pruned_at") is not None:
            study.tell(trial, state=TrialState.PRUNED)
            print(f"[search] trial {trial.number} pruned at epoch {result['pruned_at']}: {trial.params}", flush=True)
        elif result.get("value") is None:
            study.tell(trial, state=TrialState.FAIL)
            print(f"[search] trial {trial.number} failed: {result.get('failed')}", file=sys.stderr, flush=True)
        else:
            if result.get("epoch") is not None:  # the epoch its value is from (its best one, or its last)
                trial.set_user_attr("epoch", int(result["epoch"]))
            study.tell(trial, values=[float(result["value"])])
            print(f"[search] trial {trial.number}: {result['metric']} {float(result['value']):.6g} "
                  f"(epoch {result.get('epoch', '?')}) {trial.params}", flush=True)

    def _write_results(self, study: optuna.Study) -> None:
        from aerun import atomic

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            print("[search] no trial completed: nothing to call best", file=sys.stderr, flush=True)
            return
        best = study.best_trial
        results = {"name": "optuna", "best_trial": best.number, "best_params": best.params, "best_value": best.value,
                   "trials": {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
                              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}}
        atomic.write_text(Path(str(self.sweep_dir)) / "optimization_results.yaml", OmegaConf.to_yaml(results))
        print(f"[search] best: trial {best.number}, {best.value:.6g} with "
              + " ".join(f"{k}={v}" for k, v in best.params.items())
              + f" (its run: {Path(str(self.sweep_dir)) / str(best.number)})", flush=True)


class SearchSweeper(OptunaSweeper):
    """Hydra's OptunaSweeper with aerun's continuing, pruning sweep (SearchSweeperImpl)."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[Any], study_name: Optional[str],
                 n_trials: int, n_jobs: int, search_space: Optional[DictConfig], custom_search_space: Optional[str],
                 params: Optional[DictConfig]) -> None:
        self.sweeper = SearchSweeperImpl(sampler, direction, storage, study_name, n_trials, n_jobs, search_space,
                                         custom_search_space, params)
