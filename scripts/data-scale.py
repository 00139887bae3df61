"""How aerun's cost grows with a folder of your own images: for N colour 64x64 pictures (ten class subfolders of
PNGs, written here), the time to decode the folder, to start again from its cache, one training epoch, and the
peak memory of the training process, against the uint8 size of the pictures.

    .venv/bin/python scripts/data-scale.py 10000 50000 100000 [--model shallow] [--root /tmp/aerun-scale]

Prints a Markdown table and writes it, with every number, to ROOT/data-scale.json. Each measurement is its own
`aerun` process; the peak memory is that process's maximum resident set (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIDE, CLASSES = 64, 10


def pictures(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n colour pictures (n, 64, 64, 3): a bright disc, bar or ring on a shaded background; ten classes (shape and
    hue), placed and sized at random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    cy, cx = rng.uniform(20, 44, (2, n, 1, 1)).astype(np.float32)
    radius = rng.uniform(10, 18, (n, 1, 1)).astype(np.float32)
    distance = np.hypot(rows - cy, cols - cx)
    kind = labels % 3
    mask = np.where(kind[:, None, None] == 0, distance < radius,
                    np.where(kind[:, None, None] == 1, np.abs(rows - cy) < radius / 3, np.abs(distance - radius) < 3))
    hue = np.stack([labels / CLASSES, 1 - labels / CLASSES, (labels % 4) / 4], 1).astype(np.float32)
    colour = 120 + 135 * hue[:, None, None, :]
    shade = rng.uniform(10, 80, (n, 1, 1, 3)).astype(np.float32) * (0.6 + 0.4 * cols[None, :, :, None] / SIDE)
    return np.where(mask[..., None], colour, shade).astype(np.uint8), labels


def write_folder(root: Path, n: int) -> float:
    """ROOT/class<k>/<i>.png for n pictures; seconds taken. An existing folder of n pictures is kept."""
    from PIL import Image

    done = root / f".written-{n}"
    if done.exists():
        return 0.0
    start = time.perf_counter()
    for k in range(CLASSES):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    for first in range(0, n, 5000):
        images, labels = pictures(min(5000, n - first), seed=first)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(root / f"class{label}" / f"{first + i:06d}.png", compress_level=1)
    done.write_text(str(n))
    return time.perf_counter() - start


PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident memory in MB) of one command, which must succeed; run under a wrapper process
    of its own, so that its maximum resident set is its own and no earlier command's."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024


def measure(n: int, root: Path, model: str, aerun: str) -> dict[str, float]:
    folder = root / f"pictures-{n}"
    written = write_folder(folder, n)
    data_dir = root / f"data-{n}"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    keys = ["dataset=folder", f"dataset.path={folder}", f"paths.data_dir={data_dir}"]
    decode_s, _ = timed([aerun, "data", *keys], env)
    cached_s, _ = timed([aerun, "data", *keys], env)
    run = root / f"run-{n}-{model}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    train_s, peak_mb = timed([aerun, *keys, f"model={model}", "epochs=1", "device=cpu", f"hydra.run.dir={run}"], env)
    with open(run / "loss_epoch.csv", newline="") as f:
        epoch_s = float(list(csv.DictReader(f))[-1]["seconds"])
    uint8_mb = n * 3 * SIDE * SIDE / 2**20
    return {"n": n, "write_s": written, "decode_s": decode_s, "cached_start_s": cached_s, "epoch_s": epoch_s,
            "train_process_s": train_s, "peak_rss_mb": peak_mb, "uint8_mb": uint8_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--model", default="shallow")
    parser.add_argument("--root", type=Path, default=Path("/tmp/aerun-scale"))
    args = parser.parse_args()
    aerun = str(Path(sys.executable).parent / "aerun")
    rows = []
    for n in args.sizes:
        rows.append(measure(n, args.root, args.model, aerun))
        print(json.dumps(rows[-1]), flush=True)
    header = "| images | uint8 size (MB) | decode, first run (s) | start from the cache (s) | one epoch (s) | " \
             "peak memory of the training process (MB) |"
    lines = [header, "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['n']:,} | {r['uint8_mb']:.0f} | {r['decode_s']:.1f} | {r['cached_start_s']:.1f} | "
              f"{r['epoch_s']:.1f} | {r['peak_rss_mb']:.0f} |" for r in rows]
    print("\n".join(lines))
    (args.root / "data-scale.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
