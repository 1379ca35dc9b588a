"""Training throughput: train.py's loop (training.loop.train_one_epoch over build_loaders) against
the recipe's naive loop, same model (configs/cpu_fast.yaml), same synthetic data and batch size.

Fast: decoded frames cached, uint8 batches normalised on the device, loss at the network's
resolution, optional bf16 autocast (cpu_bf16). Naive (bench/naive.py): PNG decoded per sample
every epoch, float32 images and one-hot masks built in numpy, fp32, loss on full-size logits.
One warm-up epoch, then `epochs` measured epochs each.

    python -m bench.train --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

if not __package__:  # run as a file (python bench/train.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import synthetic_data
from bench.naive import NaiveTrainDataset, naive_train_epoch
from config.schema import Config, load_config
from dataset.openeds import OpenEDSIndex
from losses import build_loss
from models.zoo import build_model
from runtime.device import amp_settings, select_device
from training.augment import build_train_transform
from training.criterion import loss_params
from training.data import build_loaders
from training.loop import train_one_epoch
from training.optim import build_optimizer
from training.schedule import build_scheduler

__all__ = ["TRAIN_CONFIG", "fast_throughput", "naive_throughput", "run_training"]

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "configs" / "cpu_fast.yaml"


def _setup(config: Config) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(config.seed)
    model = build_model(config)
    return (
        model,
        build_loss(config.mask_loss.type, loss_params(config)),
        build_optimizer(model, config.optimizer),
    )


def fast_throughput(
    config: Config, data_dir: Path, epochs: int, workers: int, channels_last: bool = False
) -> float:
    """images/s of train_one_epoch (after one warm-up epoch), as train.py runs it on the CPU."""
    device = select_device("cpu")
    keys = OpenEDSIndex.from_dir(data_dir).labeled_keys()
    loaders = build_loaders(
        config, OpenEDSIndex.from_dir(data_dir), keys, keys[:2], workers=workers, seed=config.seed
    )
    model, criterion, optimizer = _setup(config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    scheduler = build_scheduler(optimizer, config.optimizer, len(loaders.train))
    amp_dtype, use_scaler = amp_settings(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    images, seconds = 0, 0.0
    for epoch in range(epochs + 1):
        loaders.sampler.set_epoch(epoch)
        stats = train_one_epoch(
            model, criterion, optimizer, scheduler, scaler, loaders.train, device,
            epoch=epoch, epochs=epochs + 1, amp_dtype=amp_dtype, clip=config.optimizer.grad_clip,
        )  # fmt: skip
        if epoch:  # epoch 0 warms up (cache fill, oneDNN primitives)
            images, seconds = images + stats.images, seconds + stats.seconds
    loaders.close()  # the workers ignore SIGTERM: left to exit, they would hang the process
    return images / seconds


def naive_throughput(config: Config, data_dir: Path, epochs: int, workers: int) -> float:
    """images/s of the recipe's loop (after one warm-up epoch)."""
    keys = OpenEDSIndex.from_dir(data_dir).labeled_keys()
    normalize = config.input.normalize
    dataset = NaiveTrainDataset(
        data_dir, keys, build_train_transform(config.input), normalize.mean, normalize.std
    )
    loader = DataLoader(
        dataset, batch_size=config.optimizer.batch_size, shuffle=True, drop_last=True, num_workers=workers
    )
    model, criterion, optimizer = _setup(config)
    images, seconds = 0, 0.0
    for epoch in range(epochs + 1):
        seen, took = naive_train_epoch(model, criterion, optimizer, loader, config.optimizer.grad_clip)
        if epoch:
            images, seconds = images + seen, seconds + took
    return images / seconds


def run_training(work_dir: Path, epochs: int = 2, log: Callable[[str], None] = print) -> dict:
    """Naive loop, train.py's loop in fp32, with cpu_bf16, and with channels_last; rows for the report."""
    data_dir = synthetic_data(work_dir / "data")
    # Each row switches exactly one lever on a plain fp32 NCHW base: cpu_fast itself turns on
    # bf16 and channels_last, which the fp32 row must not inherit.
    config = load_config(TRAIN_CONFIG, ["cpu_bf16=false", "channels_last=false"])
    workers = config.data.workers
    naive = naive_throughput(config, data_dir, epochs, workers)
    rows = [{"name": "naive loop", "ips": naive, "speedup": 1.0, "note": "the recipe, fp32"}]
    log(f"naive loop: {naive:.2f} images/s")
    variants = [
        ("train.py loop", config, False, "cached frames, uint8 batches, loss at network size, fp32"),
        (
            "train.py loop, cpu_bf16",
            load_config(TRAIN_CONFIG, ["cpu_bf16=true", "channels_last=false"]),
            False,
            "bf16 autocast",
        ),
        ("train.py loop, channels_last", config, True, "fp32, channels_last weights"),
    ]
    for name, variant_config, channels_last, note in variants:
        ips = fast_throughput(variant_config, data_dir, epochs, workers, channels_last)
        rows.append({"name": name, "ips": ips, "speedup": ips / naive, "note": note})
        log(f"{name}: {ips:.2f} images/s, x{ips / naive:.2f}")
    index = OpenEDSIndex.from_dir(data_dir)
    return {
        "model": f"{config.network}/{config.encoder}, scale {config.input.scale}, batch {config.optimizer.batch_size}",
        "data": f"{len(index.sequences)} sequences, {len(index.labeled_keys())} labelled frames, {workers} worker(s)",
        "epochs": epochs,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs (after one warm-up epoch)")
    parser.add_argument("--work-dir", type=Path, help="reuse this folder (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run_training(args.work_dir or Path(tmp), args.epochs), indent=1))


if __name__ == "__main__":
    main()
