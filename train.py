"""Train one fold: config + data dir -> runs/<config>/fold_<k>/ with checkpoints and history.

python train.py --config configs/cpu_fast.yaml --data-dir data/synthetic --fold 0
torchrun --nproc_per_node=2 train.py --config ... --fold 0          # DDP (NCCL / gloo)
python train.py --config configs/student.yaml ... --teacher teacher/   # distil a teacher's soft targets
python train.py --config C --data-dir D --fold 0 --init weights/default.pt   # fine-tune a trained model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from config.schema import Config, config_name, load_config
from dataset.folder import FolderIndex
from dataset.openeds import OpenEDSIndex, open_index
from inference.pseudo_keys import allowed_pseudo_keys, read_pseudo_manifest
from models.zoo import build_model
from runtime.device import amp_settings, resolve_runtime, select_device
from training.criterion import build_criterion
from training.data import build_loaders, fold_keys
from training.distill import Teacher, cache_teacher, load_teacher
from training.fit import FoldRun, fit, log
from training.optim import build_optimizer
from training.progress import History
from training.resume import resolve_resume, start_or_resume
from training.run_folder import EpochRecorder, create_run_folder
from training.schedule import build_scheduler
from training.state import seed_everything
from utils import distributed
from utils.cli import HelpFormatter
from utils.errors import InputError, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="YAML or JSON experiment config")
    parser.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="OpenEDS 2020 layout root, or a plain images/ + masks/ folder",
    )
    parser.add_argument("--fold", required=True, type=int, help="fold index (fold_<k>_train/val.txt)")
    parser.add_argument("--folds-dir", type=Path, help="where the fold files are (default: the data dir)")
    parser.add_argument(
        "--gpu",
        default=None,
        help="CUDA device(s) by torch's numbering: 0, or 0,1 (local rank r takes the r-th); 'cpu' forces the CPU (default: cuda:LOCAL_RANK if present)",
    )
    parser.add_argument(
        "--output-dir",
        "--out",
        dest="output_dir",
        type=Path,
        default=Path("runs"),
        help="runs folder: <out>/<name>/fold_<k>",
    )
    parser.add_argument("--name", help="run name (default: the config's file name)")
    parser.add_argument("--resume", help="'auto' (last.pt of this run if any) or a checkpoint path")
    parser.add_argument(
        "--init", type=Path, metavar="CHECKPOINT",
        help="start from a trained model's every weight (encoder and decoder) with a fresh optimizer, schedule, "
        "epoch 0 and best score; the config must have its architecture (network, encoder, network_params, "
        "in_channels, num_classes, input.scale, input.normalize), encoder_weights is not read. A run that "
        "--resume continues keeps its own weights: --init is then ignored",
    )  # fmt: skip
    parser.add_argument(
        "--pseudo-dir", type=Path, help="pseudo-labels (from predict_ensemble.py --pseudo-dir)"
    )
    parser.add_argument(
        "--teacher", type=Path,
        help="distil from a teacher: a folder from predict_ensemble.py --probs-dir, or an ensemble YAML "
        "(its probabilities of the folds dir's unlabeled.txt are cached in <output-dir>/<name>/teacher_fold_<k> first)",
    )  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: config data.workers)")
    parser.add_argument("--seed", type=int, help="overrides the config's seed")
    parser.add_argument("--epochs", type=int, help="overrides optimizer.schedule.epochs")
    return parser.parse_args(argv)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """--set, plus the --seed and --epochs shortcuts, in the order they apply."""
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"optimizer.schedule.epochs={args.epochs}")
    return overrides


def trained_on_keys(
    train_keys: list[str], pseudo_dir: Path | None, teacher: Teacher | None = None
) -> list[str]:
    """What this run learns from: its labels, and what the models behind its pseudo-labels or teacher learned."""
    inherited = read_pseudo_manifest(pseudo_dir)["trained_on"] if pseudo_dir else []
    inherited += teacher.trained_on if teacher else []
    return sorted(set(train_keys) | set(inherited))


def prepare_teacher(
    args: argparse.Namespace,
    config: Config,
    index: OpenEDSIndex | FolderIndex,
    val_keys: list[str],
    run_dir: Path,
    device: torch.device,
) -> Teacher | None:
    """--teacher: a cached folder, or an ensemble YAML cached now (rank 0); the leakage rule applied."""
    if args.teacher is None:
        return None
    if args.pseudo_dir is not None:
        raise InputError(
            "--teacher and --pseudo-dir: give one of them (distil from the ensemble instead of its labels)"
        )
    folder = args.teacher
    if args.teacher.is_file():
        cache = run_dir.parent / f"teacher_fold_{args.fold}"
        folds_dir = args.folds_dir or args.data_dir
        folder = distributed.from_main(
            lambda: cache_teacher(args.teacher, args.data_dir, folds_dir, val_keys, cache, device)
        )
    return load_teacher(folder, val_keys, index.labeled, config.num_classes)


def build_criterion_for(config: Config, source: Path) -> torch.nn.Module:
    try:
        return build_criterion(config)
    except ValueError as exc:  # an unknown loss type or a parameter that loss does not take
        raise InputError(f"mask_loss: {exc}", source) from None


def wrap_for_training(model: torch.nn.Module, config: Config, device: torch.device) -> torch.nn.Module:
    """torch.compile if the config asks, DDP under torchrun."""
    train_model: torch.nn.Module = torch.compile(model) if config.compile else model
    if distributed.world_size() > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return train_model


@cli_entry
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    config = load_config(args.config, config_overrides(args))
    device = select_device(args.gpu)  # one meaning of --gpu: runtime/device.py
    config, runtime_line = resolve_runtime(config, device)
    distributed.init_distributed(device)
    run_dir = args.output_dir / (args.name or config_name(args.config)) / f"fold_{args.fold}"
    if config.unused_recipe_keys():
        log(
            f"note: {', '.join(config.unused_recipe_keys())} set but not applied, as in the recipe "
            "(gradient clipping: optimizer.grad_clip; a training crop: input.train_crop)"
        )

    index = open_index(args.data_dir)
    if isinstance(index, FolderIndex) and (args.pseudo_dir or args.teacher):
        raise InputError(
            "--pseudo-dir and --teacher take data dirs of the OpenEDS layout only, not a plain images/ + masks/ folder"
        )
    train_keys, val_keys = fold_keys(args.folds_dir or args.data_dir, args.fold, args.data_dir, index)
    pseudo_keys = allowed_pseudo_keys(args.pseudo_dir, val_keys) if args.pseudo_dir else None
    teacher = prepare_teacher(args, config, index, val_keys, run_dir, device)
    seed_everything(config.seed)
    loaders = build_loaders(
        config,
        index,
        train_keys,
        val_keys,
        pseudo_dir=args.pseudo_dir,
        pseudo_keys=pseudo_keys,
        teacher=teacher,
        workers=config.data.workers if args.workers is None else args.workers,
        seed=config.seed,
        pin_memory=device.type == "cuda",
    )

    resume_path = distributed.from_main(lambda: resolve_resume(args.resume, run_dir))  # one decision
    # A resume or --init loads every weight: the encoder's pretrained weights are not read.
    model = build_model(config, pretrained=resume_path is None and args.init is None).to(device)
    if config.channels_last:
        model.to_channels_last()
    criterion = build_criterion_for(config, args.config)
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = build_scheduler(optimizer, config.optimizer, len(loaders.train))
    amp_dtype, use_scaler = amp_settings(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    history = History(run_dir / "history.csv")
    trained_on = trained_on_keys(train_keys, args.pseudo_dir, teacher)
    start = start_or_resume(
        resume_path,
        run_dir,
        args.fold,
        config,
        trained_on,
        history,
        model,
        optimizer,
        scheduler,
        scaler,
        args.init,
    )
    if start.resumed_from is not None:
        log(f"resumed {start.resumed_from} at epoch {start.epoch} (best mIoU {start.best_miou:.4f})")
        if args.init is not None:
            log(f"--init {args.init} not applied: a resumed run continues from its own weights")
    elif start.init is not None:
        log(f"weights from {start.init['path']} (--init: encoder and decoder; fresh optimizer and schedule)")
    if distributed.is_main():
        create_run_folder(run_dir, config, comments=[runtime_line])
    run = FoldRun(
        config, device, run_dir, args.fold, argv, model, wrap_for_training(model, config, device), criterion,
        optimizer, scheduler, scaler, loaders, amp_dtype, start,
        EpochRecorder(run_dir, history, f"{run_dir.parent.name} fold {args.fold}") if distributed.is_main() else None,
    )  # fmt: skip
    del loaders  # the run alone holds the DataLoaders, so a SIGTERM stop can let their workers go
    if teacher is not None:
        log(f"teacher {teacher.folder}: {len(teacher.keys)} frames to distil on ({teacher.dropped} dropped by the "
            f"leakage rule), share {config.distill.share}, weight {config.distill.weight}, temperature {config.distill.temperature}")  # fmt: skip
    render = config.data.render
    if render.frames_per_epoch:
        log(
            f"rendered frames: {render.frames_per_epoch} new ones every epoch, styles {', '.join(render.styles)}"
        )
    log(
        f"fold {args.fold}: {len(train_keys)} train + {len(pseudo_keys or [])} pseudo-labelled frames, "
        f"{len(val_keys)} val, {config.optimizer.schedule.epochs} epochs on {device} x{distributed.world_size()} -> {run_dir}"
    )
    log(runtime_line)
    try:
        best_miou = fit(run)
    finally:
        run.close_loaders()  # also after an error: the workers ignore SIGTERM, so exit would wait on them
    log(f"done: best val mIoU {best_miou:.4f}; checkpoints in {run_dir}")
    distributed.cleanup()


if __name__ == "__main__":
    main()
