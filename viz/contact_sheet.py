"""Contact sheet of synthetic (or real) OpenEDS frames: image, colour-coded label, overlay.

Used to eyeball the generator against real OpenEDS frames (docs/synthetic.png) and to check
any data folder at a glance:

    python -m viz.contact_sheet --out docs/synthetic.png
    python -m viz.contact_sheet --out sheet.png --data-dir openEDS2020-SparseSegmentation/participant
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

if not __package__:  # run as a file (python viz/contact_sheet.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.openeds import CLASS_NAMES
from dataset.synthetic import EyeSequence, plan_sequence
from utils.errors import InputError, cli_entry
from viz.palette import colour_label
from viz.tiles import caption, tile_grid

__all__ = ["pick_synthetic", "pick_from_folder", "contact_sheet", "main"]

TILE_W, TILE_H = 264, 165  # 640x400 scaled by ~0.41: 6 tiles make a ~1600 px row
CAPTION_SCALE = 0.45


def pick_synthetic(count: int = 8, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Render `count` varied frames in memory: different people and gazes, plus at least one blink.

    Frames are the labeled frames of a few sequences (as the dataset would write them); one
    frame with no pupil pixels is swapped in so the sheet always shows a blink.
    """
    frames, chosen, blink = 60, [], None
    for index in range(count):
        sequence = EyeSequence(seed, index, frames)
        plan = plan_sequence(seed, index, frames, 10, 5)
        image, label = sequence.render(plan.labeled[index % len(plan.labeled)])
        chosen.append((f"S_{index}/{plan.labeled[index % len(plan.labeled)]}", image, label))
        if blink is None:
            closed = [n for n, state in enumerate(sequence.states) if state.openness == 0]
            if closed:
                blink = (f"S_{index}/{closed[0]}", *sequence.render(closed[0]))
    if blink is not None and not any((label == 3).sum() == 0 for _, _, label in chosen):
        chosen[-1] = blink
    return chosen


def pick_from_folder(data_dir: Path, count: int = 8) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Read `count` labeled frames spread over labels.txt of an OpenEDS-layout folder."""
    index = data_dir / "labels.txt"
    if not index.is_file():
        raise InputError("no labels.txt here; expected an OpenEDS 2020 layout folder", data_dir)
    names = [line.strip() for line in index.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError("labels.txt lists no labels", index)
    picked = []
    for i in np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int):
        label_path = data_dir / names[i]
        image_path = label_path.with_name(label_path.name.removeprefix("label_").replace(".npy", ".png"))
        image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise InputError("image missing or unreadable", image_path)
        picked.append((names[i].replace("label_", "").replace(".npy", ""), image, np.load(label_path)))
    return picked


def contact_sheet(samples: list[tuple[str, np.ndarray, np.ndarray]], per_row: int = 2) -> np.ndarray:
    """Lay out (name, gray image, label) triples as image | label | overlay, `per_row` per row."""
    tiles = []
    for name, image, label in samples:
        gray = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        colour = colour_label(label)
        overlay = np.where(label[..., None] > 0, (0.6 * gray + 0.4 * colour).astype(np.uint8), gray)
        present = ", ".join(CLASS_NAMES[c] for c in range(1, 4) if (label == c).any()) or "closed"
        row = [
            caption(cv2.resize(gray, (TILE_W, TILE_H), interpolation=cv2.INTER_AREA), [name], CAPTION_SCALE),
            caption(
                cv2.resize(colour, (TILE_W, TILE_H), interpolation=cv2.INTER_NEAREST),
                [present],
                CAPTION_SCALE,
            ),
            caption(
                cv2.resize(overlay, (TILE_W, TILE_H), interpolation=cv2.INTER_AREA),
                ["overlay"],
                CAPTION_SCALE,
            ),
        ]
        tiles.append(np.hstack(row))
    return tile_grid(tiles, per_row, gutter=0)


@cli_entry
def main(argv: list[str] | None = None) -> Path:
    """CLI: pick frames (generated in memory, or from --data-dir), write the sheet PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument(
        "--data-dir", type=Path, help="OpenEDS-layout folder; default: render synthetic frames"
    )
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    samples = (
        pick_from_folder(args.data_dir, args.count)
        if args.data_dir
        else pick_synthetic(args.count, args.seed)
    )
    sheet = contact_sheet(samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), sheet):
        raise InputError("could not write the contact sheet", args.out)
    print(f"contact sheet: {len(samples)} frames -> {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return args.out


if __name__ == "__main__":
    main()
