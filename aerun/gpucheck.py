"""`make gpu-check`: aerun on a CUDA GPU, end to end, in one command and one table.

    python -m aerun.gpucheck [--out DIR] [--budget SECONDS]

Five steps, each timed, each a row of the table and an entry of `gpu-check.json`:

1. the device tests (`pytest -m device`: every test parametrised over the devices present);
2. `aerun bench presets=all device=cuda`: every trained preset's epoch against its FLOP bound, at precision=32
   and again at bf16-mixed;
3. the whole `aerun report` on the GPU, in a scratch folder;
4. resume exactness: each preset trained 2 epochs straight and 1 + 1 resumed, the largest
   weight difference.

On a machine without CUDA it says so in one line and exits 0 at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def no_cuda_line() -> str | None:
    """The one line for a machine without CUDA, or None where there is a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return "gpu-check: no PyTorch on this interpreter, so no CUDA GPU to check; nothing to do"
    if not torch.cuda.is_available():
        return f"gpu-check: no CUDA GPU here (torch {torch.__version__} sees none); nothing to do"
    return None


def aerun_command() -> list[str]:
    return [sys.executable, "-m", "aerun"]


def run(args: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Run a command with its output into `log`; (exit status, seconds). A timeout is status 124."""
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, **(env or {})})
            status = done.returncode
        except subprocess.TimeoutExpired:
            status = 124
    return status, time.perf_counter() - start


def device_tests(out: Path, timeout: float) -> dict[str, Any]:
    log = out / "device-tests.log"
    status, seconds = run([sys.executable, "-m", "pytest", "-q", "-m", "device", "-p", "no:cacheprovider"], log,
                          timeout)
    summary = next((line for line in reversed(log.read_text().splitlines())
                    if " in " in line and ("passed" in line or "failed" in line)), "")
    return {"status": status, "seconds": seconds, "summary": summary.strip("= "), "log": str(log)}


def bench(out: Path, timeout: float, precision: str = "32") -> dict[str, Any]:
    folder = out / ("bench" if precision == "32" else f"bench-{precision}")
    status, seconds = run([*aerun_command(), "bench", "presets=all", "device=cuda", "reference=false",
                           f"precision={precision}", f"hydra.run.dir={folder}"],
                          folder.with_suffix(".log"), timeout)
    result = json.loads((folder / "bench.json").read_text()) if (folder / "bench.json").exists() else None
    return {"status": status, "seconds": seconds, "result": result}


def bench_bf16(out: Path, timeout: float) -> dict[str, Any]:
    """Every preset's epoch again at precision=bf16-mixed, beside float32's."""
    return bench(out, timeout, "bf16-mixed")


def report(out: Path, timeout: float) -> dict[str, Any]:
    folder = out / "report"
    status, seconds = run([*aerun_command(), "report", f"dir={folder}", "device=cuda", "ood=[noise]"],
                          out / "report.log", timeout)
    info = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}
    return {"status": status, "seconds": seconds, "training_seconds": info.get("training_seconds")}


def trained_presets() -> list[str]:
    """Every model preset of conf/model/ whose family is trained, not fitted."""
    from aerun.compose import compose_config, group_options
    from aerun.models import family

    return [name for name in group_options("model") or []
            if not family(compose_config("train", [f"model={name}"]).model.builder).fitted]


def resume_exactness(out: Path, data_dir: str, presets: tuple[str, ...] | None = None, epochs: int = 2,
                     device: str = "cuda", extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Per preset (default: every trained one): the largest absolute weight difference between a straight run
    and a resumed one."""
    from omegaconf import OmegaConf

    from aerun import checkpoint as ckpt
    from aerun.compose import compose_config
    from aerun.train import train

    differences = {}
    start = time.perf_counter()
    for preset in presets or trained_presets():
        overrides = [f"model={preset}", f"device={device}", f"epochs={epochs}", f"paths.data_dir={data_dir}", *extra]
        root = out / "resume" / preset
        train(compose_config("train", overrides), root / "straight")
        train(compose_config("train", [*overrides, "epochs=1"]), root / "resumed")
        config = OmegaConf.create(ckpt.load(root / "resumed" / ckpt.CHECKPOINT)["config"])
        config.epochs = epochs
        train(config, root / "resumed", resume=True)
        a, b = (ckpt.load(root / name / ckpt.CHECKPOINT)["model"]["state"] for name in ("straight", "resumed"))
        differences[preset] = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    return {"status": 0, "seconds": time.perf_counter() - start, "max_weight_difference": differences}


def table(results: dict[str, Any]) -> str:
    """The one table: a row per step, then the bench's presets and the resume differences."""
    rows = [f"gpu-check on {results.get('device', '?')} (torch {results.get('torch', '?')})",
            f"{'step':<28}{'status':>8}{'seconds':>10}  result"]

    def row(name: str, step: dict[str, Any] | None, text: str) -> None:
        if step is None:
            rows.append(f"{name:<28}{'skipped':>8}{'':>10}  out of time")
        else:
            rows.append(f"{name:<28}{'ok' if step['status'] == 0 else 'FAILED':>8}{step['seconds']:>10.1f}  {text}")

    tests = results.get("device_tests")
    row("device tests", tests, tests["summary"] if tests else "")
    bench_step = results.get("bench")
    presets = ((bench_step or {}).get("result") or {}).get("presets", {})
    row("bench presets=all", bench_step, f"{len(presets)} presets")
    for name, r in presets.items():
        precision = " tf32" if r.get("bound_precision") == "tf32" else ""
        rows.append(f"  {name:<26}{'':>8}{r['aerun_s']:>10.3f}  s/epoch; bound {r['bound_s']:.3f} s{precision}, "
                    f"fraction_of_bound {r['fraction_of_bound']:.2f}")
    mixed = results.get("bench_bf16")
    halves = ((mixed or {}).get("result") or {}).get("presets", {})
    row("bench precision=bf16-mixed", mixed, f"{len(halves)} presets")
    for name, r in halves.items():
        ratio = f"; bf16-mixed/32 {r['aerun_s'] / presets[name]['aerun_s']:.2f}" if name in presets else ""
        rows.append(f"  {name:<26}{'':>8}{r['aerun_s']:>10.3f}  s/epoch{ratio}")
    report_step = results.get("report")
    training = (report_step or {}).get("training_seconds")
    row("aerun report", report_step, f"training {training:.1f} s" if training is not None else "")
    resume = results.get("resume")
    row("resume exactness", resume, "max |weight difference|, straight vs resumed")
    for name, difference in ((resume or {}).get("max_weight_difference") or {}).items():
        rows.append(f"  {name:<26}{'':>8}{'':>10}  {difference:.3g}" + ("  (bitwise equal)" if difference == 0 else ""))
    return "\n".join(rows)


STEPS: dict[str, Callable[..., dict[str, Any]]] = {"device_tests": device_tests, "bench": bench,
                                                   "bench_bf16": bench_bf16, "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerun.gpucheck")
    parser.add_argument("--out", default=f"outputs/gpu-check/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all steps together")
    args = parser.parse_args(argv)
    line = no_cuda_line()
    if line:
        print(line)
        return 0
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + args.budget
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for name, step in STEPS.items():
        left = deadline - time.perf_counter()
        results[name] = step(out, left) if left > 10 else None
        print(f"[gpu-check] {name}: {results[name] and results[name]['status']}", flush=True)
    if deadline - time.perf_counter() > 30:
        results["resume"] = resume_exactness(out, os.environ.get("AERUN_DATA_DIR", "data"))
    from aerun import atomic

    atomic.write_json(out / "gpu-check.json", results)
    print(table(results))
    print(f"written: {out / 'gpu-check.json'}")
    failed = [k for k, v in results.items() if isinstance(v, dict) and v.get("status") not in (0, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
