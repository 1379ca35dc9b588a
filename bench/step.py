"""Training-step micro-benchmark: images/s of one config's forward + loss + backward + step on
random frames, nothing else (no data pipeline, no validation). How the recipe search compares
resolutions, encoders and precisions in seconds instead of whole runs.

    python -m bench.step --config configs/cpu_fast.yaml --set input.scale=0.4 --set cpu_bf16=false
    python -m bench.avx2 python -m bench.step ...   # an AVX2 CPU (bench/avx2.py)

Prints one line: the resolved precision / layout, the ISA limit if any, and images/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if not __package__:  # run as a file (python bench/step.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import isa_limit
from config.schema import load_config
from losses import build_loss
from models.zoo import build_model
from runtime.device import amp_settings, resolve_runtime
from training.criterion import loss_params
from training.optim import build_optimizer

__all__ = ["step_throughput"]


def step_throughput(
    config_path: Path, overrides: list[str], steps: int = 4, warmup: int = 2
) -> tuple[float, str]:
    """(images/s, the runtime line) of `steps` training steps after `warmup` ones, on the CPU."""
    device = torch.device("cpu")
    config, runtime_line = resolve_runtime(load_config(config_path, overrides), device)
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.channels_last:
        model.to_channels_last()
    criterion = build_loss(config.mask_loss.type, loss_params(config))
    optimizer = build_optimizer(model, config.optimizer)
    amp_dtype, _ = amp_settings(config, device)
    batch = config.optimizer.batch_size
    frames = torch.randint(0, 256, (batch, 1, 400, 640), dtype=torch.uint8)
    size = (round(400 * config.input.scale), round(640 * config.input.scale))
    masks = torch.randint(0, config.num_classes, (batch, *size))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_dtype is not None):
            loss = criterion(model(frames, resize_back=False).float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start), runtime_line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("configs/cpu_fast.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    images_per_s, runtime_line = step_throughput(args.config, args.overrides, args.steps)
    limit = isa_limit() or "native"
    print(
        f"{images_per_s:.2f} img/s  [{limit}; {torch.get_num_threads()} threads; {runtime_line}] {' '.join(args.overrides)}"
    )


if __name__ == "__main__":
    main()
