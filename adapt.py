"""Adapt a trained model to your own camera, without labels: your frames in, RUN/adapted.pt out.

    python adapt.py --init weights/default.pt --input eye.mp4 --out runs/adapt_mycam
    python adapt.py --init runs/cpu_fast/fold_0/best.pt --input frames/ --out runs/adapt --rounds 0   # BatchNorm only
    python segment.py --checkpoints runs/adapt_mycam/adapted.pt --input eye.mp4 --out seg

First the BatchNorm statistics are re-estimated on your frames (no gradient), then `--rounds`
rounds of the recipe's pseudo-labelling: the model's confident pixels (softmax >= --threshold,
hflip TTA) become labels, the rest is ignored, and the model is fine-tuned on them for --epochs
epochs before labelling again (training/adapt.py says how and why). --input: a video, a folder
of images or an image, any size; at most --max-frames frames, evenly spaced through it.

RUN gets adapted.pt (a checkpoint segment.py, predict_ensemble.py, export.py and train.py --init
take) and adapt.json (per step: share of confident pixels, agreement with the previous step's
class map, class shares, loss, time), both rewritten after each step; a RUN holding anything is
refused unless --overwrite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.device import select_device
from training.adapt import MATCHES, AdaptSettings, check_out_dir, load_init, read_frames, run_adaptation
from utils.cli import HelpFormatter
from utils.errors import cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = AdaptSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--init",
        required=True,
        type=Path,
        metavar="CKPT",
        help="the trained model (a .pt checkpoint; fp16 release files too)",
    )
    parser.add_argument("--input", required=True, help="a video file, a folder of images, or an image")
    parser.add_argument("--out", required=True, type=Path, help="run folder: adapted.pt, adapt.json")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=defaults.max_frames,
        help=f"frames adapted on, evenly spaced through the input (default {defaults.max_frames})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help=f"pseudo-label rounds after the BatchNorm step; 0: BatchNorm only (default {defaults.rounds})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help=f"softmax confidence a pixel needs to become a label (default {defaults.threshold})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"fine-tuning epochs per round (default {defaults.epochs})",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=defaults.lr,
        help=f"constant learning rate of the fine-tuning (default {defaults.lr:g})",
    )
    parser.add_argument(
        "--bn-blend",
        type=float,
        default=defaults.bn_blend,
        help="the new frames' share of the BatchNorm statistics; the rest stays the training's "
        f"(default {defaults.bn_blend:g})",
    )
    parser.add_argument(
        "--class-keep",
        type=float,
        default=defaults.class_keep,
        help="each class keeps at least this share of its pixels as labels, its threshold lowered "
        f"as needed (class-balanced self-training; 0: one threshold) (default {defaults.class_keep:g})",
    )
    parser.add_argument(
        "--replay",
        type=int,
        default=defaults.replay,
        help="freshly rendered frames with exact labels mixed into each round, so the model keeps "
        f"what it knew (default {defaults.replay})",
    )
    parser.add_argument(
        "--match",
        choices=MATCHES,
        default=defaults.match,
        help="move the replayed frames' tones toward your frames': histogram matching or FDA "
        f"(Fourier domain adaptation) (default {defaults.match})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="only for a checkpoint in the original recipe's format, which carries no config",
    )
    parser.add_argument("--gpu", help="CUDA device (0), or cpu (default: cuda:0 if present)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="augmentations and frame order")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier adaptation in --out")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings = AdaptSettings(
        rounds=args.rounds, threshold=args.threshold, epochs=args.epochs, max_frames=args.max_frames,
        lr=args.lr, seed=args.seed, bn_blend=args.bn_blend, class_keep=args.class_keep, replay=args.replay,
        match=args.match,
    )  # fmt: skip
    device = select_device(args.gpu, doing="adapting")
    check_out_dir(args.out, args.overwrite)
    init = load_init(args.init, args.config)
    frames = read_frames(args.input, settings.max_frames, exclude=args.out)
    report = run_adaptation(init, frames, settings, device, args.out)
    print(f"adapted model -> {args.out / 'adapted.pt'} (per step: {args.out / 'adapt.json'})")
    return report


if __name__ == "__main__":
    main()
