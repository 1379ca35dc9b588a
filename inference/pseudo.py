"""Pseudo-labels from ensemble predictions: confidence filter, per-frame journal, manifest.

A pseudo-label is the ensemble's class map with every pixel whose softmax confidence is below
`threshold` set to IGNORE_INDEX (255); a frame whose share of confident pixels is below
`min_confident` is skipped (no file). Files: `P/S_k/label_<n>.npy` (the layout
LabeledDataset(label_dir=P) reads) and, once every frame is done, `P/pseudo.json`, the manifest
inference/pseudo_keys.py reads:

    {"keys": kept "S_k/n", "trained_on": union of the models' training label keys,
     "checkpoints": [...], "tta", "threshold", "min_confident",
     "summary": {"frames", "kept", "skipped", "mean_confident_share", "ignored_pixel_share"}}

`trained_on` drives the leakage rule. A checkpoint that does not record what it trained on (the
original recipe's, or one from before train.py saved it) counts as having seen every labeled
frame of the data dir: the conservative choice, which can only drop pseudo-labels, never leak.

Each processed frame appends one line to a per-shard journal `P/.pseudo_frames.<i>-<n>.jsonl`
(key, confident share, kept) after its file is in place, so a killed run resumes without
recomputing finished frames, skipped ones included, and the manifest's summary covers all frames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from dataset.openeds import IGNORE_INDEX
from inference.pseudo_keys import PSEUDO_MANIFEST

__all__ = [
    "PseudoSettings",
    "FrameRecord",
    "pseudo_masks",
    "trained_on_union",
    "PseudoJournal",
    "read_journals",
    "pseudo_manifest",
    "JOURNAL_GLOB",
]

JOURNAL_GLOB = ".pseudo_frames.*.jsonl"


@dataclass(frozen=True)
class PseudoSettings:
    """Where pseudo-labels go and which pixels / frames are confident enough to keep."""

    out_dir: Path
    threshold: float = 0.9
    min_confident: float = 0.95


@dataclass(frozen=True)
class FrameRecord:
    key: str
    confident_share: float
    kept: bool


def pseudo_masks(
    labels: torch.Tensor, confidence: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (B, H, W) uint8 with unconfident pixels = IGNORE_INDEX, and each frame's confident share (B,)."""
    confident = confidence >= threshold
    masks = torch.where(confident, labels, torch.full_like(labels, IGNORE_INDEX))
    return masks, confident.flatten(1).float().mean(1)


def trained_on_union(trained_on_lists: Iterable[list[str] | None], labeled_keys: Iterable[str]) -> list[str]:
    """Sorted union of the models' training keys; a model that does not say counts as all labeled keys."""
    union: set[str] = set()
    for trained_on in trained_on_lists:
        union.update(labeled_keys if trained_on is None else trained_on)
    return sorted(union)


class PseudoJournal:
    """Append-only record of processed frames for one shard, one JSON line each, flushed per frame."""

    def __init__(self, out_dir: Path, shard: tuple[int, int]) -> None:
        self.path = Path(out_dir) / f".pseudo_frames.{shard[0]}-{shard[1]}.jsonl"
        # A run killed mid-line leaves a partial last line: end it, so the next record starts clean.
        needs_newline = (
            self.path.is_file() and self.path.stat().st_size > 0 and _last_byte(self.path) != b"\n"
        )
        self._handle = open(self.path, "a")  # noqa: SIM115 - held for the whole run, closed in close()
        if needs_newline:
            self._handle.write("\n")

    def append(self, record: FrameRecord) -> None:
        line = {"key": record.key, "confident_share": record.confident_share, "kept": record.kept}
        self._handle.write(json.dumps(line) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def read_journals(out_dir: Path) -> dict[str, FrameRecord]:
    """Every frame recorded by any shard's journal (unparsable partial lines are ignored)."""
    records: dict[str, FrameRecord] = {}
    for path in sorted(Path(out_dir).glob(JOURNAL_GLOB)):
        for line in path.read_text().splitlines():
            try:
                data = json.loads(line)
                record = FrameRecord(str(data["key"]), float(data["confident_share"]), bool(data["kept"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            records[record.key] = record
    return records


def pseudo_manifest(
    keys: list[str],
    records: dict[str, FrameRecord],
    trained_on: list[str],
    checkpoints: list[dict],
    tta: str,
    settings: PseudoSettings,
) -> dict:
    """The pseudo.json content for the frames `keys` (all of which must have a record)."""
    frames = [records[key] for key in keys]
    kept = [record for record in frames if record.kept]
    shares = [record.confident_share for record in frames]
    return {
        "keys": [record.key for record in kept],
        "trained_on": trained_on,
        "checkpoints": checkpoints,
        "tta": tta,
        "threshold": settings.threshold,
        "min_confident": settings.min_confident,
        "summary": {
            "frames": len(frames),
            "kept": len(kept),
            "skipped": len(frames) - len(kept),
            "mean_confident_share": round(sum(shares) / len(shares), 6) if shares else 0.0,
            # Share of IGNORE_INDEX pixels in the kept pseudo-labels (what training sees).
            "ignored_pixel_share": round(1 - sum(r.confident_share for r in kept) / len(kept), 6)
            if kept
            else 0.0,
        },
    }


def manifest_path(out_dir: Path) -> Path:
    return Path(out_dir) / PSEUDO_MANIFEST
