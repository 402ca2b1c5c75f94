"""The manifest adapter with every modality kind: real PNGs, wavs and mp4s written here, text tokenised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _adapter_train import train_briefly
from _manifest_media import image_text_manifest, png
from typer.testing import CliRunner

from mmrebal.cache.format import read_info
from mmrebal.cli import app
from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import ADAPTERS, LayoutError
from mmrebal.prep.adapters.text_common import default_text_folder, load_tokenizer
from mmrebal.prep.presets import PRESETS
from mmrebal.prep.runner import PrepFailed, run_prep
from mmrebal.report.runs import find_runs

torch.set_num_threads(1)


def three_modality_manifest(root: Path, count: int = 18) -> Path:
    """rgb and depth clips (mp4, H.264 via PyAV) and a speech wav per sample, under chosen names."""
    rows = ["id,label,rgb:video,depth:video,speech:audio"]
    for n in range(count):
        label = n % 3
        rng = np.random.default_rng(n)
        rgb = rng.integers(0, 80, (4, 32, 32, 3), dtype=np.uint8)
        rgb[..., label] += 120
        write_clip(root / f"rgb{n}.mp4", rgb, fps=4)
        write_clip(root / f"depth{n}.mp4", np.repeat(rgb[..., :1], 3, axis=-1), fps=4)
        t = np.arange(8000) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 200 * label) * t) + 0.05 * rng.standard_normal(8000)
        sf.write(root / f"s{n}.wav", wave.astype(np.float32), 8000)
        rows.append(f"c{n},{label},rgb{n}.mp4,depth{n}.mp4,s{n}.wav")
    (root / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "data.csv"


def test_image_text_manifest_scan_and_decode_tokenise_the_text_column(tmp_path: Path):
    table = image_text_manifest(tmp_path, 3)
    adapter = ADAPTERS.get("manifest")()
    items, issues = adapter.scan(table, max_length=12)
    assert not issues and adapter.modalities == {"image": "image", "text": "tokens"}
    assert items[1].meta == {"text": {"text": "a blue square glyph number 1"}}
    arrays = adapter.decode(items[1], PRESETS.get("avmnist"))
    expected = load_tokenizer(default_text_folder())(
        "a blue square glyph number 1", padding="max_length", max_length=12, truncation=True
    )
    np.testing.assert_array_equal(arrays["text/input_ids"], expected["input_ids"])
    np.testing.assert_array_equal(arrays["text/attention_mask"], expected["attention_mask"])
    assert arrays["image/pixels"].shape == (32, 32, 3) and arrays["image/pixels"].dtype == np.uint8


@pytest.mark.slow
def test_image_text_manifest_preps_under_its_name_and_trains(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    image_text_manifest(tmp_path / "raw")
    out = tmp_path / "glyphs.h5"  # outside --root: prep refuses a cache inside its source folder
    result = CliRunner().invoke(
        app,
        ["prep", "manifest", "--root", str(tmp_path / "raw"), "--out", str(out), "--preset", "avmnist",
         "--name", "glyphs", "--workers", "1", "--opt", "max_length=16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = read_info(out)
    assert info.modalities == {"image": "image", "text": "tokens"}
    assert info.shapes["text/input_ids"] == (16,) and info.shapes["image/pixels"] == (32, 32, 3)
    assert info.attrs["dataset"] == "glyphs" and info.attrs["adapter"] == "manifest"
    assert info.split_counts["test"] == 3
    steps = train_briefly(out, tmp_path / "run", "uniform", encoders="image=cnn,text=minilm")
    assert set(steps["modality"]) == {"image", "text"}
    runs, _ = find_runs([tmp_path / "run"])
    assert [run.dataset for run in runs] == ["glyphs"]


@pytest.mark.slow
def test_three_modality_manifest_with_named_kinds_preps_and_trains(tmp_path: Path):
    table = three_modality_manifest(tmp_path)
    out = tmp_path / "three.h5"
    report = run_prep("manifest", table, out, preset="avmnist", workers=1, test_fraction=0.2)
    assert report.cached == 18 and not report.issues
    info = read_info(out)
    assert info.modalities == {"rgb": "frames", "depth": "frames", "speech": "spectrogram"}
    frames = (3, 32, 32, 3)
    assert info.shapes == {"rgb/frames": frames, "depth/frames": frames, "speech/spec": (64, 63)}
    assert info.attrs["dataset"] == "manifest"
    steps = train_briefly(out, tmp_path / "run", "dus")
    assert set(steps["modality"]) == {"rgb", "depth", "speech"}


def test_an_unknown_column_is_an_error_naming_it_or_a_warning_with_extra_ignore(tmp_path: Path, capsys):
    for n, name in enumerate("abc"):
        png(tmp_path / f"{name}.png", n % 2, n)
    rows = ("id,label,split,image,caption:text,notes\na,x,train,a.png,one,n1\nb,y,val,b.png,two,n2\n"
            "c,x,test,c.png,three,n3\n")  # one sample per split: prep refuses an empty split
    (tmp_path / "m.csv").write_text(rows)
    with pytest.raises(LayoutError, match=r"m\.csv: unknown column 'notes'; modality columns are"):
        ADAPTERS.get("manifest")().scan(tmp_path / "m.csv")
    adapter = ADAPTERS.get("manifest")()
    items, issues = adapter.scan(tmp_path / "m.csv", extra="ignore")
    assert len(items) == 3 and not issues
    assert adapter.modalities == {"image": "image", "caption": "tokens"}
    assert adapter.notes == [f"{tmp_path / 'm.csv'}: ignoring unknown column 'notes' (extra=ignore)"]
    run_prep("manifest", tmp_path / "m.csv", tmp_path / "m.h5", preset="avmnist", extra="ignore")
    assert "ignoring unknown column 'notes'" in capsys.readouterr().err
    assert read_info(tmp_path / "m.h5").modalities == {"image": "image", "caption": "tokens"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("id,label,rgb:depth,audio", r"unknown column 'rgb:depth'"),  # not a kind
        ("id,label,2d:image,audio", r"unknown column '2d:image'"),  # not a modality name
        ("id,label,video,visual:video", r"modality 'visual' is given by two columns"),
        ("id,label,notes", r"unknown column 'notes'"),
    ],
)
def test_bad_modality_columns_are_one_layout_line(tmp_path: Path, header: str, message: str):
    (tmp_path / "m.csv").write_text(header + "\n")
    with pytest.raises(LayoutError, match=message):
        ADAPTERS.get("manifest")().scan(tmp_path / "m.csv")


def test_empty_text_skips_the_row_and_bad_options_stop_prep(tmp_path: Path):
    png(tmp_path / "a.png", 0, 0)
    (tmp_path / "m.csv").write_text("id,label,image,text\na,x,a.png,hello\nb,x,a.png,\n")
    items, issues = ADAPTERS.get("manifest")().scan(tmp_path / "m.csv")
    assert [i.sample_id for i in items] == ["a"]
    assert [i.line() for i in issues] == [
        f"m.csv row 2: {tmp_path / 'm.csv'}: empty text in column 'text'; fill it in or drop the row"
    ]
    with pytest.raises(LayoutError, match="extra must be one of error, ignore"):
        ADAPTERS.get("manifest")().scan(tmp_path / "m.csv", extra="drop")
    with pytest.raises(LayoutError, match="no such tokenizer folder"):
        ADAPTERS.get("manifest")().scan(tmp_path / "m.csv", text_model=tmp_path / "nowhere")
    with pytest.raises(PrepFailed, match="--name 'a/b'"):
        run_prep("manifest", tmp_path / "m.csv", tmp_path / "x.h5", name="a/b")
