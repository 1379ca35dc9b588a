"""Train one fold: config + data dir -> runs/<config>/fold_<k>/ with checkpoints and history.

    python train.py --config configs/cpu_fast.yaml --data-dir data/synthetic --fold 0
    torchrun --nproc_per_node=2 train.py --config ... --fold 0          # DDP (NCCL / gloo)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from config.schema import Config, config_name, load_config, save_config
from dataset.openeds import CLASS_NAMES, OpenEDSIndex
from inference.pseudo_keys import allowed_pseudo_keys, read_pseudo_manifest
from inference.runtime import amp_settings, resolve_runtime, select_device
from models.checkpoint import load_checkpoint, save_checkpoint, training_checkpoint
from models.zoo import build_model
from training.criterion import build_criterion
from training.data import build_loaders, fold_keys
from training.loop import TrainingDiverged, evaluate, train_one_epoch
from training.optim import build_optimizer
from training.progress import History, plot_progress
from training.resume import check_fresh_start, check_same_run, run_identity
from training.schedule import build_scheduler
from training.shutdown import EXIT_STOPPED, StopRequest, resume_command
from training.state import restore_rng_state, rng_state, seed_everything
from utils import distributed
from utils.atomic import remove_stale_temp_files
from utils.errors import InputError, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="YAML or JSON experiment config")
    parser.add_argument("--data-dir", required=True, type=Path, help="OpenEDS 2020 layout root")
    parser.add_argument("--fold", required=True, type=int, help="fold index (fold_<k>_train/val.txt)")
    parser.add_argument("--folds-dir", type=Path, help="where the fold files are (default: the data dir)")
    parser.add_argument("--gpu", default=None, help="CUDA device(s) by torch's numbering: 0, or 0,1 (local rank r takes the r-th); 'cpu' forces the CPU (default: cuda:LOCAL_RANK if present)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs"))
    parser.add_argument("--name", help="run name (default: the config's file name)")
    parser.add_argument("--resume", help="'auto' (last.pt of this run if any) or a checkpoint path")
    parser.add_argument("--pseudo-dir", type=Path, help="pseudo-labels (from predict_ensemble.py --pseudo-dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: config data.workers)")
    parser.add_argument("--seed", type=int, help="overrides the config's seed")
    parser.add_argument("--epochs", type=int, help="overrides optimizer.schedule.epochs")
    return parser.parse_args(argv)


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


# Keys a resumed run may change: how long it trains, how it loads and validates. Anything
# else (model, optimizer, loss, augmentations, seed, scale) would silently mix two recipes.
# Precision and memory layout are the machine's choice (auto), so a run may move machines.
RESUMABLE_CHANGES = ("optimizer.schedule.epochs", "data.", "validation.", "cpu_bf16", "channels_last", "compile")


def config_changes(saved: dict | None, config: Config) -> str:
    """The keys that differ between a checkpoint's config and this run's, as 'key: old -> new'."""
    if saved is None:
        return ""

    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    old, new = flat(saved), flat(config.model_dump(mode="json"))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES))
    shown = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def eta_line(images_per_s: float, first_epoch_s: float, epochs_left: int, val_interval: int) -> str:
    """After the first epoch: the measured speed and the time this fold still needs.

    The first epoch pays start-up (worker launch, caches) so the estimate errs long; epochs
    with a validation cost what the first one did when it validated.
    """
    left = first_epoch_s * epochs_left
    finish = time.strftime("%H:%M", time.localtime(time.time() + left))
    return (f"speed: {images_per_s:.1f} img/s; about {left / 60:.1f} min left for this fold "
            f"({epochs_left} epochs, validation every {val_interval}), ending near {finish}")


def log(message: str) -> None:
    if distributed.is_main():
        print(message, flush=True)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"optimizer.schedule.epochs={args.epochs}")
    config = load_config(args.config, overrides)
    device = select_device(args.gpu)  # one meaning of --gpu: inference/runtime.py
    config, runtime_line = resolve_runtime(config, device)
    distributed.init_distributed(device)
    run_dir = args.output_dir / (args.name or config_name(args.config)) / f"fold_{args.fold}"
    if config.unused_recipe_keys():
        log(
            f"note: {', '.join(config.unused_recipe_keys())} set but not applied, as in the recipe "
            "(gradient clipping: optimizer.grad_clip; a training crop: input.train_crop)"
        )

    index = OpenEDSIndex.from_dir(args.data_dir)
    train_keys, val_keys = fold_keys(args.folds_dir or args.data_dir, args.fold, args.data_dir, index)
    pseudo_keys = allowed_pseudo_keys(args.pseudo_dir, val_keys) if args.pseudo_dir else None
    trained_on = sorted(set(train_keys) | set(read_pseudo_manifest(args.pseudo_dir)["trained_on"] if args.pseudo_dir else []))
    workers = config.data.workers if args.workers is None else args.workers
    seed_everything(config.seed)
    loaders = build_loaders(
        config, index, train_keys, val_keys, pseudo_dir=args.pseudo_dir, pseudo_keys=pseudo_keys,
        workers=workers, seed=config.seed, pin_memory=device.type == "cuda",
    )

    resume_path = distributed.from_main(lambda: resolve_resume(args.resume, run_dir))  # one decision
    model = build_model(config, pretrained=resume_path is None).to(device)  # a resume loads every weight
    if config.channels_last:
        model.to_channels_last()
    try:
        criterion = build_criterion(config)
    except ValueError as exc:  # an unknown loss type or a parameter that loss does not take
        raise InputError(f"mask_loss: {exc}", args.config) from None
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = build_scheduler(optimizer, config.optimizer, len(loaders.train))
    amp_dtype, use_scaler = amp_settings(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    start_epoch, best_miou = 0, -1.0
    start_step, carry = 0, (0.0, 0, 0.0)  # a run stopped mid-epoch: steps done, (loss sum, images, s)
    history = History(run_dir / "history.csv")
    if resume_path is None:
        distributed.from_main(lambda: check_fresh_start(run_dir))
        history.truncate(0)  # rows of a first epoch killed while saving
    if resume_path is not None:
        payload = distributed.on_every_rank(lambda: load_checkpoint(resume_path))
        trained_on = check_same_run(payload, resume_path, run_dir, args.fold, trained_on)
        changed = config_changes(payload.get("config"), config)
        if changed:
            raise InputError(
                f"cannot resume: the checkpoint was trained with another config ({changed}); "
                "use another --name or --output-dir for a new run",
                resume_path,
            )
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            scaler.load_state_dict(payload["scaler"])
        except (KeyError, ValueError, RuntimeError) as exc:
            # The whole message, whitespace collapsed: its first line alone ("Error(s) in loading
            # state_dict for SegmentationModel:") does not say which keys or shapes differ.
            detail = " ".join(str(exc).split())[:240]
            raise InputError(f"cannot resume from this checkpoint: {detail}", resume_path) from None
        start_epoch, best_miou = int(payload["epoch"]), float(payload["best_miou"])
        start_step = int(payload.get("step", 0))
        if start_step and distributed.is_main():  # the carried sums are global: one rank adds them
            carry = tuple(payload["partial"])
        restore_rng_state(payload["rng"])
        history.truncate(start_epoch)
        log(f"resumed {resume_path} at epoch {start_epoch} (best mIoU {best_miou:.4f})")
    if distributed.is_main():
        # Created only now, after every input (data, folds, resume checkpoint) has been checked:
        # a bad input leaves no empty run folder behind.
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the run folder ({exc.strerror})", run_dir) from None
        if not os.access(run_dir, os.W_OK):
            raise InputError("run folder is not writable", run_dir)
        save_config(config, run_dir / "config.yaml", comments=[runtime_line])
        remove_stale_temp_files(run_dir)

    train_model: torch.nn.Module = model
    if config.compile:
        train_model = torch.compile(train_model)
    ddp = distributed.world_size() > 1
    if ddp:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    writer = None
    if distributed.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    epochs = config.optimizer.schedule.epochs
    log(
        f"fold {args.fold}: {len(train_keys)} train + {len(pseudo_keys or [])} pseudo-labelled frames, "
        f"{len(val_keys)} val, {epochs} epochs on {device} x{distributed.world_size()} -> {run_dir}"
    )
    log(runtime_line)
    run_start = time.perf_counter()

    def checkpoint(epochs_done: int, best: float) -> dict:
        return training_checkpoint(
            model, optimizer, scheduler, scaler, epoch=epochs_done, best_miou=best, config=config,
            rng=rng_state(), trained_on=trained_on, run=run_identity(run_dir, args.fold),
        )

    stop = StopRequest().install()
    for epoch in range(start_epoch, epochs):
        mid_epoch = epoch == start_epoch and start_step > 0  # the RNG state restored is this epoch's
        if not mid_epoch:
            seed_everything(config.seed + epoch)  # whatever ran before, epoch e draws the same numbers
        loaders.sampler.set_epoch(epoch, skip=start_step * config.optimizer.batch_size if mid_epoch else 0)
        frozen = epoch < config.optimizer.freeze_encoder_epochs
        # Single process: skip the encoder's backward entirely. DDP needs every parameter in
        # the graph, so there the encoder's grads are computed and then dropped.
        model.freeze_encoder(frozen and not ddp)
        frozen_params = list(model.encoder.parameters()) if frozen and ddp else None
        lr = optimizer.param_groups[0]["lr"]
        try:
            stats = train_one_epoch(
                train_model, criterion, optimizer, scheduler, scaler, loaders.train, device,
                epoch=epoch, epochs=epochs, amp_dtype=amp_dtype, clip=config.optimizer.grad_clip,
                pseudo_weight=config.pseudo.weight, frozen_params=frozen_params,
                stop=stop, carry=carry if mid_epoch else (0.0, 0, 0.0),
            )
        except TrainingDiverged as exc:
            last = run_dir / "last.pt"
            kept = f"; {last} (epoch {start_epoch if epoch == start_epoch else epoch}) is kept" if last.is_file() else ""
            print(f"error: training diverged: {exc}{kept}", file=sys.stderr)
            sys.exit(1)

        if stats.stopped:  # SIGTERM: this epoch's position goes into last.pt, mid-epoch
            done = (start_step if mid_epoch else 0) + stats.steps
            if distributed.is_main():
                partial = {"step": done, "partial": [stats.loss * stats.images, stats.images, stats.seconds]}
                save_checkpoint(checkpoint(epoch, best_miou) | partial, run_dir / "last.pt")
            distributed.barrier()
            stopped_at = f"epoch {epoch + 1}, step {done} of {(start_step if mid_epoch else 0) + len(loaders.train)}"
            log(f"stopped by SIGTERM in {stopped_at}: {run_dir / 'last.pt'} saved; continue with: {resume_command(argv)}")
            loaders = None  # DataLoader workers stop now, not at exit (they ignore SIGTERM: training.shutdown)
            sys.exit(EXIT_STOPPED)
        row: dict[str, object] = {
            "epoch": epoch + 1, "train_loss": round(stats.loss, 6), "lr": lr,
            "epoch_time_s": round(stats.seconds, 2), "images_per_s": round(stats.images_per_s, 2),
        }
        is_last = epoch + 1 == epochs
        improved = False
        if (epoch + 1) % config.validation.interval == 0 or is_last:
            t0 = time.perf_counter()
            metrics = evaluate(model, loaders.val, device, tta=config.validation.tta, amp_dtype=amp_dtype,
                               num_classes=config.num_classes)
            row["val_miou"] = round(float(metrics["miou"]), 6)
            row["val_miou_dataset"] = round(float(metrics["miou_dataset"]), 6)
            for name, iou in zip(CLASS_NAMES, metrics["per_class_iou"], strict=False):
                row[f"iou_{name}"] = round(float(iou), 6)
            row["val_time_s"] = round(time.perf_counter() - t0, 2)
            improved = float(metrics["miou"]) > best_miou
            best_miou = max(best_miou, float(metrics["miou"]))
        if distributed.is_main():
            payload = checkpoint(epoch + 1, best_miou)
            history.append(row)
            if improved:
                save_checkpoint(payload, run_dir / "best.pt")
            save_checkpoint(payload, run_dir / "last.pt")
            plot_progress(history.rows, run_dir / "progress.png", title=f"{run_dir.parent.name} fold {args.fold}")
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, float(value), epoch + 1)
            writer.flush()
            shown = f"val mIoU {row['val_miou']:.4f}" if "val_miou" in row else "no val"
            log(f"epoch {epoch + 1}/{epochs}  loss {stats.loss:.4f}  {shown}  lr {lr:.2e}  "
                f"{stats.images_per_s:.1f} img/s  {stats.seconds:.1f}s{'  *best*' if improved else ''}")
            if epoch == start_epoch and not is_last:
                log(eta_line(stats.images_per_s, time.perf_counter() - run_start, epochs - epoch - 1,
                             config.validation.interval))
        distributed.barrier()
        if not is_last and stop():  # SIGTERM during validation or saving: last.pt is this epoch's
            log(f"stopped by SIGTERM after epoch {epoch + 1}: {run_dir / 'last.pt'} saved; "
                f"continue with: {resume_command(argv)}")
            loaders = None
            sys.exit(EXIT_STOPPED)
    stop.uninstall()
    if writer is not None:
        writer.close()
    log(f"done: best val mIoU {best_miou:.4f}; checkpoints in {run_dir}")
    distributed.cleanup()


if __name__ == "__main__":
    main()
