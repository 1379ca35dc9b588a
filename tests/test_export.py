"""ONNX export (export.py, inference/export.py, models/export.py) and .onnx members of the engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FPN_OVERRIDES, tiny_checkpoint

from config.ensemble import read_ensemble_spec, spec_from_checkpoints
from dataset.synthetic.render import eye_frames
from inference import export as export_module
from inference.engine import EnsemblePredictor
from inference.export import ExportSettings, export_members
from inference.members import load_members
from inference.onnx_model import file_sha256, model_json_path, onnx_session
from models.export import FusedEnsemble
from utils.errors import InputError


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny models of different architectures and input scales."""
    folder = tmp_path_factory.mktemp("ckpt")
    return [
        tiny_checkpoint(folder / "a.pt", [], seed=0, trained_on=["S_0/3"]),
        tiny_checkpoint(folder / "b.pt", FPN_OVERRIDES, seed=1, trained_on=["S_1/6"]),
    ]


@pytest.fixture(scope="module")
def exported(checkpoints: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 2-model ensemble exported with hflip inside, and model a alone without views."""
    folder = tmp_path_factory.mktemp("onnx")
    members = load_members(spec_from_checkpoints([str(path) for path in checkpoints]))
    export_members(members, ExportSettings(folder / "ens.onnx", eye_frames(4, seed=0), tta="hflip"))
    export_members(members[:1], ExportSettings(folder / "one.onnx", eye_frames(4, seed=0), tta="none"))
    return {"ens": folder / "ens.onnx", "one": folder / "one.onnx"}


def _pt_logits(checkpoints: list[Path], frames: np.ndarray, tta: str) -> torch.Tensor:
    members = load_members(spec_from_checkpoints([str(path) for path in checkpoints]))
    return EnsemblePredictor([(m.model, m.weight) for m in members], tta=tta).logits(torch.from_numpy(frames))


def test_fused_ensemble_gives_the_engines_logits(checkpoints: list[Path]) -> None:
    """Members at two scales, hflip fused and averaged before the resize back: same logits."""
    members = load_members(spec_from_checkpoints([str(path) for path in checkpoints]))
    frames = eye_frames(2, seed=3)
    with torch.inference_mode():
        fused = FusedEnsemble([(m.model, w) for m, w in zip(members, (1.0, 3.0), strict=True)], hflip=True)
        got = fused(torch.from_numpy(frames))
        want = EnsemblePredictor(
            [(m.model, w) for m, w in zip(members, (1.0, 3.0), strict=True)], tta="hflip"
        ).logits(torch.from_numpy(frames))
    assert got.shape == (2, 4, 400, 640)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_graph_runs_any_batch_and_matches_the_engine(
    exported: dict[str, Path], checkpoints: list[Path], batch: int
) -> None:
    frames = eye_frames(batch, seed=5)
    logits = onnx_session(exported["ens"]).run(["logits"], {"frames": frames})[0]
    want = _pt_logits(checkpoints, frames, "hflip").numpy()
    assert logits.shape == (batch, 4, 400, 640) and logits.dtype == np.float32
    assert np.abs(logits - want).max() < 1e-3
    assert (logits.argmax(1) == want.argmax(1)).mean() >= 0.999


def test_model_json_describes_the_graph(exported: dict[str, Path], checkpoints: list[Path]) -> None:
    info = json.loads(model_json_path(exported["ens"]).read_text())
    assert info["sha256"] == file_sha256(exported["ens"])
    assert info["classes"] == ["background", "sclera", "iris", "pupil"]
    assert info["input"] == {**info["input"], "name": "frames", "dtype": "uint8", "shape": ["N", 1, 400, 640]}
    assert info["output"]["shape"] == ["N", 4, 400, 640] and info["output"]["dtype"] == "float32"
    assert info["tta"] == "hflip" and info["precision"] == "fp32"
    assert [source["checkpoint"] for source in info["sources"]] == [str(path) for path in checkpoints]
    assert info["sources"][1]["config"]["network"] == "fpn"
    assert info["trained_on"] == ["S_0/3", "S_1/6"]
    assert info["agreement"]["threshold"] == 0.999 and info["agreement"]["pixels"] >= 0.999


def _record_batches(model: torch.nn.Module) -> list[int]:
    """Wrap an OnnxModel's session so the batch sizes it is given are recorded."""
    seen: list[int] = []
    session = model.session

    class Recording:
        def run(self, names, feed):
            seen.append(len(feed["frames"]))
            return session.run(names, feed)

    model.session = Recording()
    return seen


def test_engine_passes_frames_once_to_a_graph_with_hflip_inside(
    exported: dict[str, Path], checkpoints: list[Path]
) -> None:
    (member,) = load_members(spec_from_checkpoints([str(exported["ens"])]))
    seen = _record_batches(member.model)
    frames = eye_frames(2, seed=7)
    got = EnsemblePredictor([(member.model, 1.0)], tta="hflip").logits(torch.from_numpy(frames))
    assert seen == [2]  # not 4: the engine added no views of its own
    torch.testing.assert_close(got, _pt_logits(checkpoints, frames, "hflip"), atol=1e-3, rtol=1e-3)


def test_engine_applies_its_views_to_a_graph_without_them(
    exported: dict[str, Path], checkpoints: list[Path]
) -> None:
    (member,) = load_members(spec_from_checkpoints([str(exported["one"])]))
    seen = _record_batches(member.model)
    frames = eye_frames(2, seed=8)
    got = EnsemblePredictor([(member.model, 1.0)], tta="hflip").logits(torch.from_numpy(frames))
    assert seen == [4]  # the frame and its mirror, as one batch
    torch.testing.assert_close(got, _pt_logits(checkpoints[:1], frames, "hflip"), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    ("graph", "tta", "needle"),
    [("ens", "none", "already averages the hflip views"), ("one", "hflip+scales", "runs at the scale")],
)
def test_views_a_graph_cannot_take_are_refused(
    exported: dict[str, Path], graph: str, tta: str, needle: str
) -> None:
    (member,) = load_members(spec_from_checkpoints([str(exported[graph])]))
    with pytest.raises(InputError, match=needle) as caught:
        EnsemblePredictor([(member.model, 1.0)], tta=tta)
    assert str(caught.value).startswith(str(exported[graph])) and "\n" not in str(caught.value)


def test_onnx_member_digest_covers_the_graph(exported: dict[str, Path], checkpoints: list[Path]) -> None:
    ens, one = load_members(spec_from_checkpoints([str(exported["ens"]), str(exported["one"])]))
    (pt,) = load_members(spec_from_checkpoints([str(checkpoints[0])]))
    assert len({ens.digest, one.digest, pt.digest}) == 3
    assert ens.trained_on == ["S_0/3", "S_1/6"] and ens.config.network == "unet"


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("json", "model.json not found beside it"),
        ("bytes", "does not match model.json"),
        ("corrupt", "not a readable ONNX graph"),
    ],
)
def test_bad_onnx_files_are_one_line_errors(
    exported: dict[str, Path], tmp_path: Path, damage: str, needle: str
) -> None:
    path = tmp_path / "model.onnx"
    data = exported["one"].read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage != "json" else data)
    if damage != "json":
        info = json.loads(model_json_path(exported["one"]).read_text())
        info["sha256"] = file_sha256(path) if damage == "corrupt" else info["sha256"]
        model_json_path(path).write_text(json.dumps(info))
    with pytest.raises(InputError, match=needle) as caught:
        load_members(spec_from_checkpoints([str(path)]))
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_int8_of_a_random_model_is_refused_and_nothing_written(
    checkpoints: list[Path], tmp_path: Path
) -> None:
    """Random-init logits have tiny margins: int8 flips many pixels, below the 99.5% required."""
    members = load_members(spec_from_checkpoints([str(checkpoints[0])]))
    out = tmp_path / "m.onnx"
    with pytest.raises(InputError, match=r"int8 graph agrees .* below the 99.5% required: not written"):
        export_members(
            members,
            ExportSettings(
                out, eye_frames(2, seed=0), tta="none", int8=True, calibration=eye_frames(16, seed=1)
            ),
        )
    assert list(tmp_path.iterdir()) == []


def test_int8_graph_is_quantized_and_records_its_threshold(
    checkpoints: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    monkeypatch.setitem(export_module.THRESHOLDS, "int8", 0.5)  # random init: see the test above
    members = load_members(spec_from_checkpoints([str(checkpoints[0])]))
    info = export_members(members, ExportSettings(
        tmp_path / "m.onnx", eye_frames(2, seed=0), tta="none", int8=True, calibration=eye_frames(16, seed=1)
    ))  # fmt: skip
    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert info["precision"] == "int8" and info["agreement"]["threshold"] == 0.5
    assert info["calibration"] == "16 frames"  # no description given: the count
    (member,) = load_members(spec_from_checkpoints([str(tmp_path / "m.onnx")]))
    assert member.model(torch.from_numpy(eye_frames(1, seed=2))).shape == (1, 4, 400, 640)


# export.py end to end, and an exported graph as predict_ensemble.py's member (the same masks as
# its checkpoints): tests/test_readme.py runs the README's export and predict examples.


def test_export_script_refuses_a_missing_checkpoint_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import export

    with pytest.raises(SystemExit) as stop:
        export.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "missing.pt" in line and "checkpoint not found" in line
    assert list(tmp_path.iterdir()) == []


def test_ensemble_file_mixes_onnx_and_checkpoint_members(
    exported: dict[str, Path], checkpoints: list[Path], tmp_path: Path
) -> None:
    """An .onnx member (model a, no views inside) next to a .pt one, weighted: the PyTorch ensemble's logits."""
    spec_file = tmp_path / "ensemble.yaml"
    spec_file.write_text(
        f"tta: hflip\nmembers:\n  - {{checkpoint: {exported['one']}, weight: 2}}\n  - {{checkpoint: {checkpoints[1]}}}\n"
    )
    mixed = load_members(read_ensemble_spec(spec_file), spec_file)
    plain = load_members(spec_from_checkpoints([str(path) for path in checkpoints]))
    frames = torch.from_numpy(eye_frames(1, seed=9))
    got = EnsemblePredictor([(m.model, m.weight) for m in mixed], tta="hflip").logits(frames)
    want = EnsemblePredictor(
        [(m.model, w) for m, w in zip(plain, (2.0, 1.0), strict=True)], tta="hflip"
    ).logits(frames)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_segmenter_runs_an_exported_ensemble_as_its_checkpoints(
    exported: dict[str, Path], checkpoints: list[Path]
) -> None:
    """segment.py's Segmenter takes the .onnx (hflip inside) like the checkpoints, at any frame size,
    and refuses views the graph cannot take with a one-line error."""
    from inference.segmenter import Segmenter

    image = eye_frames(1, seed=4)[0, 0][::2, ::2].copy()  # 320 x 200: resized in, and back
    graph = Segmenter.from_checkpoints([exported["ens"]], tta="hflip", gpu="cpu")(image)
    torch_ = Segmenter.from_checkpoints(checkpoints, tta="hflip", gpu="cpu")(image)
    assert graph.mask.shape == (200, 320)
    assert (graph.mask == torch_.mask).mean() >= 0.999
    assert "onnxruntime: 1 exported graph" in Segmenter.from_checkpoints([exported["ens"]], gpu="cpu").runtime
    with pytest.raises(InputError, match="already averages the hflip views"):
        Segmenter.from_checkpoints([exported["ens"]], tta="none", gpu="cpu")


def test_an_empty_calibration_list_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import export

    (tmp_path / "empty.txt").write_text("")
    argv = ["--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx"), "--int8"]
    with pytest.raises(SystemExit) as stop:
        export.main([*argv, "--calibration", str(tmp_path / "empty.txt")])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "empty.txt" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.txt"]
