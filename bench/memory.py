"""Peak memory, each measurement in a fresh process (so one cannot inherit another's peak).

    python -m bench.memory infer-naive  --work-dir D   # the recipe's loop over 8 frames
    python -m bench.memory infer-engine --work-dir D   # the engine's default over 8 frames
    python -m bench.memory train-naive  --work-dir D   # the recipe's loop (also prints images/s)
    python -m bench.memory train-fast   --work-dir D   # train.py's loop, fp32 (images/s too)
    python -m bench.memory train-bf16   --work-dir D   # train.py's loop, cpu_bf16 (images/s too)
    python -m bench.memory predict --frames 5000       # the engine over N frames (tiny config)

Training runs one warm-up epoch then --epochs measured ones, so its throughput and its
peak memory come from the same fresh process. D must hold bench/infer.py's checkpoints and data (bench/run_all.py makes them). Prints one JSON
line: the peak RSS of the main process (VmHWM) and of the largest DataLoader worker.

`predict` runs the engine (1 tiny-config model, hflip, batch 8, --workers workers) over N frames that a
Dataset repeats from 8 decoded frames held in memory, so 5,000 frames need no 5,000 PNGs; the
results are consumed (class pixel counts) and dropped as predict.py does after writing them.
Peak memory must not grow with N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

if not __package__:  # run as a file (python bench/memory.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import peak_rss_mib, synthetic_data

__all__ = ["measure", "RepeatedFrames", "predict_many"]

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"


class RepeatedFrames(Dataset):
    """`count` frames cycling through a few decoded frames: {"image": uint8 (1, H, W), "name"}."""

    def __init__(self, frames: list[np.ndarray], count: int) -> None:
        self.frames, self.count = [torch.from_numpy(frame)[None] for frame in frames], count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"image": self.frames[index % len(self.frames)].clone(), "name": f"frame_{index}"}


def predict_many(data_dir: Path, count: int, workers: int = 2) -> dict[str, float]:
    """The engine over `count` frames; returns frames/s and the class shares seen."""
    import time

    from config.schema import load_config
    from dataset.openeds import OpenEDSIndex, image_relpath, read_image
    from inference.engine import EnsemblePredictor
    from models.zoo import build_model

    keys = OpenEDSIndex.from_dir(data_dir).all_keys()[:8]
    frames = [read_image(data_dir / image_relpath(key)) for key in keys]
    torch.manual_seed(0)
    predictor = EnsemblePredictor([(build_model(load_config(TINY_CONFIG)), 1.0)], tta="hflip")
    loader = DataLoader(RepeatedFrames(frames, count), batch_size=8, num_workers=workers)
    counts = torch.zeros(4, dtype=torch.int64)
    start = time.perf_counter()
    for _, labels, _ in predictor.predict_batches(loader):
        counts += torch.bincount(labels.flatten().long(), minlength=4)
    seconds = time.perf_counter() - start
    return {"fps": round(count / seconds, 1)}


def _run(what: str, work_dir: Path, frames: int, epochs: int, workers: int) -> dict[str, float]:
    if what == "predict":
        return predict_many(synthetic_data(work_dir / "data"), frames, workers)
    data_dir = work_dir / "data"
    if what.startswith("infer"):
        from bench.infer import Setting, run_engine
        from bench.naive import naive_predict
        from config.ensemble import spec_from_checkpoints
        from dataset.openeds import OpenEDSIndex
        from inference.members import load_members

        members = load_members(spec_from_checkpoints(sorted(str(p) for p in work_dir.glob("member_*.pt"))))
        keys = OpenEDSIndex.from_dir(data_dir).all_keys()[:frames]
        if what == "infer-naive":
            naive_predict([m.model for m in members], data_dir, keys)
        else:
            run_engine(members, data_dir, keys, Setting())
        return {}
    from bench.train import TRAIN_CONFIG, fast_throughput, naive_throughput
    from config.schema import load_config

    config = load_config(TRAIN_CONFIG, ["cpu_bf16=true"] if what == "train-bf16" else [])
    run = naive_throughput if what == "train-naive" else fast_throughput
    return {"ips": round(run(config, data_dir, epochs, config.data.workers), 2)}


WHATS = ("infer-naive", "infer-engine", "train-naive", "train-fast", "train-bf16", "predict")


def measure(
    what: str, work_dir: Path, frames: int = 8, epochs: int = 1, workers: int = 2, timeout: float = 900
) -> dict[str, float]:
    """Run one measurement in a fresh `python -m bench.memory` process; its JSON result."""
    args = [
        "--work-dir",
        str(work_dir),
        "--frames",
        str(frames),
        "--epochs",
        str(epochs),
        "--workers",
        str(workers),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", what, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory {what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=WHATS)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1, help="training: measured epochs after the warm-up")
    parser.add_argument("--workers", type=int, default=2, help="predict: DataLoader workers")
    args = parser.parse_args()
    result = _run(args.what, args.work_dir, args.frames, args.epochs, args.workers)
    print(json.dumps({**result, **peak_rss_mib()}))


if __name__ == "__main__":
    main()
