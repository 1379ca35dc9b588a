"""Export checkpoints (one, or an ensemble file) to an ONNX graph that needs no PyTorch.

    python export.py --checkpoint runs/cpu_fast/fold_0/best.pt --out model.onnx [--tta none]
    python export.py --ensemble configs/ensemble.yaml --out ensemble.onnx --tta hflip
    python export.py --ensemble E.yaml --out ensemble_int8.onnx --int8 --calibration D/test.txt

The graph takes `frames`, uint8 (N, 1, 400, 640), and returns `logits`, float32 (N, 4, 400, 640):
normalisation, input scale, padding, the networks, the TTA views and their weighted average,
and the resize back are inside; N is dynamic. After export it runs the graph with onnxruntime
on synthetic eye frames and refuses (exit 2) if its class maps agree with the PyTorch engine's
on fewer than 99.9% of pixels (99.5% for --int8). model.json beside it (same name, .json) holds
the classes, the input contract, the sources, and the agreement measured. predict_ensemble.py
takes the .onnx as a checkpoint (`--checkpoints model.onnx`, or in an ensemble file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from config.ensemble import DEFAULT_TTA, FUSABLE_TTA, read_ensemble_spec, spec_from_checkpoints
from dataset.openeds import frame_reader, in_data_dir, read_sample_list
from dataset.synthetic.render import eye_frames
from inference.export import ExportSettings, calibration_frames, export_members
from inference.members import load_members
from utils.cli import HelpFormatter
from utils.errors import InputError, cli_entry

CHECK_FRAMES = 8  # rendered eyes (seed 0) the graph is checked on
SYNTHETIC_CALIBRATION = 16  # rendered eyes (seed 1) that set int8 scales without --calibration


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--checkpoint", type=Path, help="one checkpoint (.pt, its config embedded)")
    models.add_argument("--ensemble", type=Path, help="ensemble YAML (members, weights, tta)")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx to write (model.json beside it)")
    parser.add_argument(
        "--tta",
        choices=FUSABLE_TTA,
        help=f"views averaged inside the graph (default: the ensemble file's, else {DEFAULT_TTA})",
    )
    parser.add_argument("--int8", action="store_true", help="static int8 quantization (onnxruntime, QDQ)")
    parser.add_argument(
        "--calibration",
        type=Path,
        help="int8: frames whose activations set the scales (S_0/label_3.npy lines; default: 16 synthetic frames)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where --calibration's frames live (default: the list's folder)"
    )
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.calibration is not None and not args.int8:
        raise InputError("--calibration sets int8 scales: it needs --int8")
    if args.checkpoint is not None:
        spec, source = spec_from_checkpoints([args.checkpoint]), "--checkpoint"
    else:
        spec, source = read_ensemble_spec(args.ensemble), args.ensemble
    calibration, calibration_source = None, None
    if args.calibration is not None:
        data_dir = args.data_dir or args.calibration.parent
        frames = frame_reader(data_dir)
        paths = [frames.image_path(key) for key in read_sample_list(in_data_dir(args.calibration, data_dir))]
        calibration, calibration_source = calibration_frames(paths)
    elif args.int8:
        calibration, calibration_source = (
            eye_frames(SYNTHETIC_CALIBRATION, seed=1),
            f"{SYNTHETIC_CALIBRATION} synthetic eye frames",
        )
    members = load_members(spec, source)
    settings = ExportSettings(
        args.out,
        check_frames=eye_frames(CHECK_FRAMES, seed=0),
        tta=args.tta or spec.tta or DEFAULT_TTA,
        int8=args.int8,
        calibration=calibration,
        calibration_source=calibration_source,
    )
    info = export_members(members, settings)
    print(
        f"{args.out}: {len(members)} model(s), tta {settings.tta}, {info['precision']}; class maps agree with "
        f"the PyTorch engine on {info['agreement']['pixels']:.4%} of pixels ({info['agreement']['frames']} "
        f"synthetic frames); {args.out.with_suffix('.json')} written"
    )


if __name__ == "__main__":
    main()
