"""Leave-one-style-out: how a model trained on some camera styles does on a style it never saw.

    python -m experiments.leave_one_style_out [--out loso] [--epochs 4] [--frames-per-epoch 400]

Four short runs of `make pretrain`'s pipeline (scripts/pretrain.py, configs/pretrain.yaml) at
one budget: all three real-camera styles, then each style left out of both the rendered stream
and the on-disk validation set. Each is scored on fresh frames of every style (experiments.transfer),
so a held-out style's cell compares with the all-styles run's cell of the same style. A rerun
continues stopped runs and re-scores finished ones. Prints a Markdown table; OUT/loso.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.synthetic.style import REAL_STYLES, STYLES
from utils.atomic import write_text_atomic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("loso"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--frames-per-epoch", type=int, default=400)
    parser.add_argument("--score-frames", type=int, default=60)
    args = parser.parse_args(argv)
    rows = {}
    for held in (None, *REAL_STYLES):
        styles = [s for s in REAL_STYLES if s != held]
        name = f"without_{held}" if held else "all"
        command = [
            sys.executable, "-m", "scripts.pretrain", "--out", args.out / name, "--epochs", args.epochs,
            "--set", f"data.render.styles=[{','.join(styles)}]",
            "--set", f"data.render.frames_per_epoch={args.frames_per_epoch}",
            "--val-sequences", 12, "--score-frames", args.score_frames, "--real-video", args.out / "none",
        ]  # fmt: skip
        print("==>", " ".join(map(str, command)), flush=True)
        subprocess.run([str(c) for c in command], check=True)
        scores = json.loads((args.out / name / "scores" / "styles.json").read_text())["styles"]
        rows[name] = {"trained_on": styles, "held_out": held, "miou": {s: v["miou"] for s, v in scores.items()}}
    write_text_atomic(args.out / "loso.json", json.dumps(rows, indent=1) + "\n")
    print(f"\nmIoU on {args.score_frames} fresh frames per style; {args.epochs} epochs x {args.frames_per_epoch} "
          "rendered frames per run; **bold**: the style the run never saw")  # fmt: skip
    print("| trained on | " + " | ".join(STYLES) + " |\n|---|" + "---:|" * len(STYLES))
    for row in rows.values():
        cells = [f"**{row['miou'][s]:.4f}**" if s == row["held_out"] else f"{row['miou'][s]:.4f}" for s in STYLES]
        print(f"| {', '.join(row['trained_on'])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
