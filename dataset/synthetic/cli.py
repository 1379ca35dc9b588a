"""The generator's command line: `python -m dataset.synthetic --out DIR [...]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dataset.synthetic.layout import generate
from dataset.synthetic.style import STYLES, style_table
from utils.errors import cli_entry

__all__ = ["main"]

DESCRIPTION = "Synthetic near-eye IR data in the exact OpenEDS 2020 Sparse Segmentation layout."


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    """CLI: parse arguments, generate, print a one-line summary."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (created; an earlier synthetic one is replaced)",
    )
    parser.add_argument(
        "--style",
        default="classic",
        help=f"renderer style(s), comma-separated, taken in turn by sequence: {', '.join(STYLES)}; "
        "real = headset,closeup,remote (default: classic)",
    )
    parser.add_argument(
        "--list-styles", action="store_true", help="print every style's knobs and ranges, then exit"
    )
    parser.add_argument("--sequences", type=int, default=24)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence, all written as PNG")
    parser.add_argument(
        "--label-every", type=int, default=10, help="about one label file per this many frames"
    )
    parser.add_argument("--test-per-sequence", type=int, default=5, help="hidden test frames per sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes, one sequence at a time each")
    args = parser.parse_args(argv)
    if args.list_styles:
        print(style_table())
        return {}
    if args.out is None:
        parser.error("the following arguments are required: --out")
    summary = generate(
        args.out,
        args.sequences,
        args.frames,
        args.label_every,
        args.test_per_sequence,
        args.seed,
        args.workers,
        args.style,
    )
    print(
        f"synthetic: {summary['sequences']} sequences, {summary['frames']} frames, {summary['labels']} labels, "
        f"{summary['test_frames']} test frames -> {summary['out']} in {summary['seconds']:.1f} s "
        f"({summary['frames_per_s']:.0f} frames/s, {summary['frames_per_s_per_worker']:.0f} per worker)"
    )
    return summary
