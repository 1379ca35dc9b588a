"""The demo's one-page report (HTML and Markdown): metrics, training curves, worst frames."""

from __future__ import annotations

import csv
import html
import shutil
from pathlib import Path
from typing import Any

from dataset.openeds import CLASS_NAMES

__all__ = ["write_report"]


def _best_val(run_dir: Path) -> str:
    with open(run_dir / "history.csv", newline="") as handle:
        values = [float(r["val_miou"]) for r in csv.DictReader(handle) if r.get("val_miou")]
    return f"{max(values):.4f}" if values else "-"


def write_report(
    report: Path,
    metrics: dict[str, Any],
    run_dirs: list[Path],
    stage_times: list[tuple[str, float]],
    total_s: float,
    submission: Path,
    method: str = "hflip TTA",
    segment: dict[str, Any] | None = None,
) -> Path:
    """Write report/index.html and report/README.md side by side; returns the HTML path.

    `method` says how the ensemble predicted (TTA, post-processing), in a few words. `segment`:
    segment.py's summary.json of the demo video, whose pupil.png is in the report folder.
    """
    curves = []
    for run_dir in run_dirs:
        target = report / f"progress_{run_dir.parent.name}_{run_dir.name}.png"
        shutil.copyfile(run_dir / "progress.png", target)
        curves.append(
            (f"{run_dir.parent.name} {run_dir.name} (best val mIoU {_best_val(run_dir)})", target.name)
        )
    rows = [
        ("mIoU (challenge metric: per image, absent class = 1)", metrics["miou"]),
        ("mIoU over all pixels (one confusion matrix)", metrics["miou_dataset"]),
        ("mIoU, OpenEDS 2019 variant (classes in truth only)", metrics["miou_2019"]),
        *[(f"IoU {name}", iou) for name, iou in zip(CLASS_NAMES, metrics["per_class_iou"], strict=True)],
    ]
    worst = sorted(metrics["per_sequence"].items(), key=lambda kv: kv[1])[:5]

    md = [
        "# OpenEDS-Seg demo report",
        "",
        f"{metrics['n_images']} held-out synthetic test frames, predicted by the ensemble of "
        f"{len(run_dirs)} fold models with {method}; submission file: `{submission}`.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in rows],
        "",
        "Worst sequences: " + ", ".join(f"{s} {v:.4f}" for s, v in worst),
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in stage_times],
        f"| total | {total_s:.1f} |",
        "",
        "## Training curves",
        *[f"\n**{caption}**\n\n![{caption}]({name})" for caption, name in curves],
        "",
        "## The worst test frames (truth: solid contours, prediction: dashed)",
        "",
        "![worst frames](worst/worst.png)",
        "",
    ]
    segment_text = ""
    if segment is not None:
        segment_text = (
            f"segment.py on {segment['input']} ({segment['frames']} frames, a synthetic eye video at another "
            f"resolution than the training frames): {segment['frames_per_s']:.1f} frames/s "
            f"({segment['engine_frames_per_s']:.1f} in the engine), {len(segment['blinks'])} blink(s) found."
        )
        md += ["## segment.py on a video", "", segment_text, "", "![pupil over time](pupil.png)", ""]
    (report / "README.md").write_text("\n".join(md))

    def table(pairs: list[tuple[str, str]]) -> str:
        return "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in pairs)

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>OpenEDS-Seg demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td{{border:1px solid #ccc;padding:4px 10px}}
td:last-child{{text-align:right;font-family:monospace}}img{{max-width:100%;border:1px solid #ddd}}
.big{{font-size:2em;font-weight:bold}}</style></head><body>
<h1>OpenEDS-Seg demo report</h1>
<p class="big">test mIoU {metrics["miou"]:.4f}</p>
<p>{metrics["n_images"]} held-out synthetic test frames, ensemble of {len(run_dirs)} fold models with
{html.escape(method)}, scored by validate.py against <code>test_sampleName_GT.pkl</code>.
Submission: <code>{html.escape(str(submission))}</code>.</p>
<table>{table([(n, f"{v:.4f}") for n, v in rows])}</table>
<p>Worst sequences: {html.escape(", ".join(f"{s} {v:.4f}" for s, v in worst))}</p>
<h2>Time per stage</h2>
<table>{table([(n, f"{s:.1f} s") for n, s in stage_times] + [("total", f"{total_s:.1f} s")])}</table>
<h2>Training curves</h2>
{"".join(f"<h3>{html.escape(c)}</h3><img src='{n}'>" for c, n in curves)}
<h2>The worst test frames</h2><p>Truth: solid contours; prediction: dashed; wrong pixels tinted.</p>
<img src="worst/worst.png">
{f"<h2>segment.py on a video</h2><p>{html.escape(segment_text)}</p><img src='pupil.png'>" if segment else ""}
</body></html>"""
    path = report / "index.html"
    path.write_text(page)
    return path
