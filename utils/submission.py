"""The OpenEDS 2020 submission format: one JSON {relpath: base64(RLE(.npy file bytes))}.

Each prediction is saved with np.save as uint8 (400, 640) at SAVE/S_k/<n>.npy. The JSON maps
its path relative to SAVE ("S_0/17.npy", forward slashes) to the file's raw bytes, header
included, run-length encoded as (count <= 255, byte) pairs and then base64 encoded (standard
alphabet) into an ascii string.

CLI, to inspect a submission: `python -m utils.submission decode --json F --out DIR` writes
every entry back as DIR/<relpath>.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

if not __package__:  # run as a file (python utils/submission.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from utils.atomic import atomic_path, write_bytes_atomic
from utils.errors import InputError, cli_entry

__all__ = [
    "decode_entry",
    "encode_file",
    "read_submission",
    "rle_decode",
    "rle_encode",
    "write_submission",
]

MAX_RUN = 255  # a count is one byte
# Decoded size allowed per entry (a mask file is 256,128 bytes). RLE expands up to 127x, so a
# small crafted JSON could otherwise ask for gigabytes; the size is summed before expanding.
MAX_DECODED_BYTES = 16 * 2**20


def rle_encode(data: bytes) -> bytes:
    """Run-length encode bytes as [count0, byte0, count1, byte1, ...] with 1 <= count <= 255.

    Runs longer than 255 split greedily into 255-byte pieces and a remainder, as a byte-by-byte
    encoder would. Vectorised: a 256 KB mask takes well under a millisecond.
    """
    values = np.frombuffer(data, dtype=np.uint8)
    if values.size == 0:
        return b""
    starts = np.concatenate(([0], np.flatnonzero(np.diff(values)) + 1))
    lengths = np.diff(np.append(starts, values.size))
    pieces = -(-lengths // MAX_RUN)  # ceil: pieces per run
    counts = np.full(int(pieces.sum()), MAX_RUN, dtype=np.uint8)
    counts[np.cumsum(pieces) - 1] = lengths - MAX_RUN * (pieces - 1)  # last piece of each run
    pairs = np.empty((counts.size, 2), dtype=np.uint8)
    pairs[:, 0] = counts
    pairs[:, 1] = np.repeat(values[starts], pieces)
    return pairs.tobytes()


class DecodedTooLarge(ValueError):
    """An RLE entry that would expand past the size allowed for one file."""


def rle_decode(data: bytes, max_size: int = MAX_DECODED_BYTES) -> bytes:
    """Invert `rle_encode`: expand (count, byte) pairs; ValueError on an odd length or on a
    decoded size over `max_size` (checked before anything is expanded)."""
    if len(data) % 2:
        raise ValueError(f"RLE data has odd length {len(data)}; expected (count, byte) pairs")
    pairs = np.frombuffer(data, dtype=np.uint8).reshape(-1, 2)
    size = int(pairs[:, 0].sum(dtype=np.int64))
    if size > max_size:
        raise DecodedTooLarge(f"decodes to {size} bytes, more than the {max_size} allowed for one file")
    return np.repeat(pairs[:, 1], pairs[:, 0]).tobytes()


def encode_file(path: str | os.PathLike[str]) -> str:
    """A file's submission entry: base64 of the RLE of its raw bytes, as an ascii str."""
    return base64.b64encode(rle_encode(Path(path).read_bytes())).decode("ascii")


def decode_entry(entry: str) -> bytes:
    """The raw file bytes of one submission entry (inverse of `encode_file`)."""
    return rle_decode(base64.b64decode(entry, validate=True))


def write_submission(
    save_dir: str | os.PathLike[str], relpaths: Iterable[str], out_json: str | os.PathLike[str]
) -> None:
    """Encode SAVE/<relpath> for every relpath into the JSON `out_json`, written atomically.

    Keys are the relpaths with forward slashes. The JSON is written to a temporary file in
    the same folder and moved into place, so a crash never leaves a half-written submission.
    """
    save_dir, out_json = Path(save_dir), Path(out_json)
    entries = {}
    for relpath in relpaths:
        key = Path(relpath).as_posix()
        entries[key] = encode_file(save_dir / key)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_json) as tmp, open(tmp, "w", encoding="ascii") as handle:
        json.dump(entries, handle)


def _load_entries(json_path: Path) -> dict[str, str]:
    """The JSON's {relpath: entry} mapping; InputError naming the file if it is not one."""
    try:
        entries = json.loads(json_path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read submission JSON ({exc})", json_path) from exc
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise InputError("not a submission: expected a JSON object of relpath -> string", json_path)
    return entries


def _entry_bytes(json_path: Path, key: str, entry: str) -> bytes:
    try:
        return decode_entry(entry)
    except DecodedTooLarge as exc:
        raise InputError(f"entry {key!r} {exc}", json_path) from None
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"entry {key!r} is not base64 RLE data ({exc})", json_path) from exc


def read_submission(json_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Decode a submission JSON back to {relpath: array} (np.load of each decoded .npy file)."""
    json_path = Path(json_path)
    arrays = {}
    for key, entry in _load_entries(json_path).items():
        try:
            arrays[key] = np.load(io.BytesIO(_entry_bytes(json_path, key, entry)), allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise InputError(f"entry {key!r} does not decode to a .npy file ({exc})", json_path) from exc
    return arrays


@cli_entry
def main(argv: list[str] | None = None) -> None:
    """`decode --json F --out DIR`: write each entry's decoded bytes to DIR/<relpath>."""
    parser = argparse.ArgumentParser(prog="python -m utils.submission", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode", help="write the .npy files of a submission JSON")
    decode.add_argument("--json", type=Path, required=True, help="submission JSON")
    decode.add_argument("--out", type=Path, required=True, help="folder for the decoded .npy files")
    args = parser.parse_args(argv)

    entries = _load_entries(args.json)
    # Keys are relative file paths inside --out: not empty, not ".", not absolute, no "..".
    targets = {}
    for key in entries:
        relpath = PurePosixPath(key)
        if not relpath.parts or relpath.is_absolute() or ".." in relpath.parts:
            raise InputError(f"entry {key!r} is not a relative file path inside the output folder", args.json)
        targets[key] = args.out / relpath
    # Two passes, one entry in memory at a time: every entry is checked before the first file
    # is written (nothing half-written), and a large submission never sits decoded in memory.
    for key, entry in entries.items():
        _entry_bytes(args.json, key, entry)
    for key, entry in entries.items():
        write_bytes_atomic(targets[key], _entry_bytes(args.json, key, entry), what="decoded entry")
    print(f"wrote {len(targets)} files under {args.out}")


if __name__ == "__main__":
    main()
