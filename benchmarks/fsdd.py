"""Real recorded speech: the Free Spoken Digit Dataset paired by class with MNIST digit clips.

Builds, through the generic ``manifest`` adapter, an audio-visual dataset whose audio is real
recorded speech (FSDD: 3,000 8 kHz recordings of the digits 0-9 by 6 speakers, CC BY-SA 4.0, read
from ``../shared/data/fsdd`` or ``$MMREBAL_FSDD``; never copied into the repository) and whose
frames are real MNIST digits of the same class rendered as short clips (as in AV-MNIST). Test is
one held-out speaker (the usual FSDD protocol); val is carved from train by ``mmrebal prep``. Then
it runs the study of docs/results-avmnist.md on it: one reference set-up (``--preset``, the papers'
own schedule sized for CPU), the samplers with the fused-only and joint methods over seeds, each
modality alone (for the imbalance gap and the unimodal ensemble), and prints the report's main,
per-modality and imbalance tables. docs/results-fsdd.md holds the study's results.

    python benchmarks/fsdd.py [--work DIR] [--test-speaker theo] [--preset remix-cpu]
        [--samplers uniform,remix] [--methods fused,joint] [--seeds 0,1,2] [--jobs 2] [-- TRAIN OPTIONS]

Options after ``--`` go to every ``mmrebal train`` after the preset, as in the study's commands
(``-- --lr 1e-3``: the deviation docs/results-avmnist.md runs Remix and SMV with).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmrebal.media.video import write_clip
from mmrebal.prep.avmnist import AvmnistSpec, mnist_digits, render_frames

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("MMREBAL_FSDD", REPO.parent / "shared" / "data" / "fsdd")) / "recordings"
# every run's modality heads are slices of the fused layer, so fused-only runs have them too
SPLIT_HEADS = ["--model-opt", "unimodal_logits=split"]


def build_manifest(work: Path, test_speaker: str, seed: int = 0) -> Path:
    """One row per FSDD recording, paired with a clip of an MNIST digit of the same class."""
    recordings = sorted(FSDD.glob("*.wav"))
    if not recordings:
        sys.exit(f"{FSDD}: no FSDD recordings; set MMREBAL_FSDD to the folder holding recordings/")
    speakers = sorted({p.stem.split("_")[1] for p in recordings})
    if test_speaker not in speakers:
        sys.exit(f"--test-speaker {test_speaker!r} is not one of {', '.join(speakers)}")
    digits = mnist_digits().reshape(10, -1, 28, 28)  # sorted by class, 500 each
    spec = AvmnistSpec(seed=seed)
    rng = np.random.default_rng(seed)
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    used = np.zeros(10, dtype=int)
    for wav in recordings:
        label, speaker, _take = wav.stem.split("_")
        cls = int(label)
        clip = clips / f"{wav.stem}.mkv"
        if not clip.exists():
            frames = render_frames(digits[cls][used[cls] % digits.shape[1]], spec, rng)
            write_clip(clip, frames, spec.clip_fps)
        used[cls] += 1
        split = "test" if speaker == test_speaker else "train"
        rows.append({"id": wav.stem, "label": label, "split": split, "audio": wav, "video": clip})
    manifest = work / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def mmrebal(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mmrebal", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "fsdd")
    parser.add_argument("--test-speaker", default="theo")
    parser.add_argument("--preset", default="remix-cpu")
    parser.add_argument("--samplers", default="uniform,remix")
    parser.add_argument("--methods", default="fused,joint")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("train", nargs="*", metavar="TRAIN OPTIONS", help="after --: mmrebal train options")
    args = parser.parse_args()

    manifest = build_manifest(args.work, args.test_speaker)
    cache = args.work / "fsdd-mnist.h5"
    if not cache.exists():
        mmrebal("prep", "manifest", "--root", str(manifest), "--out", str(cache), "--preset", "avmnist")
    out = args.work / "sweep" / args.preset
    mmrebal("sweep", "--cache", str(cache), "--samplers", args.samplers, "--methods", args.methods,
            "--seeds", args.seeds, "--jobs", str(args.jobs), "--unimodal", "--out", str(out), "--",
            "--preset", args.preset, *SPLIT_HEADS, *args.train)  # fmt: skip
    mmrebal("report", str(out), "--out", str(args.work / "report.md"), "--force")
    report = (args.work / "report.md").read_text()
    print(report[report.index("## Main results") : report.index("## Training cost")])


if __name__ == "__main__":
    main()
