"""Experiments (not tests, not speed benchmarks): the accuracy studies behind BENCHMARKS.md's
tables and the choices they made (configs, defaults, the pupil_confidence threshold). Each runs as
`python -m experiments.NAME` and says at its top which table it writes:
- transfer.py: mIoU per rendered camera style; leave_one_style_out.py: a style never seen;
- real_eye.py: pupils on a real video with labelled ellipses; pupil_smoothing.py: segment.py --smooth there;
- pupil_confidence.py: the threshold below which the bad pupils lie;
- own_camera.py: fine-tuning on 10/30/100 labelled frames and adapting on unlabelled ones;
- recipe_search.py: which cpu_fast variant reaches the best test mIoU, and what pseudo-labels add.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["publish"]


def publish(report: dict, json_path: str | Path | None) -> dict:
    """Print a benchmark's report as JSON and, with `json_path`, write it there atomically."""
    import json

    from utils.atomic import write_text_atomic

    text = json.dumps(report, indent=1)
    print(text)
    if json_path:
        write_text_atomic(Path(json_path), text + "\n")
    return report
