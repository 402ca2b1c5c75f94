"""The twitter2015 and sarcasm adapters on tiny copies of their release layouts (real jpgs, real lines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _adapter_train import train_briefly
from PIL import Image
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.prep.adapters import ADAPTERS, LayoutError, SourceItem, load_builtin
from mmrebal.prep.adapters.text_common import default_text_folder, load_tokenizer, read_image_cropped
from mmrebal.prep.presets import PRESETS
from mmrebal.prep.runner import run_prep

torch.set_num_threads(1)
HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"
WORDS = ("sunny", "rainy", "happy", "angry", "great", "awful")


@pytest.fixture(scope="module", autouse=True)
def _adapters() -> None:
    load_builtin()


def jpg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def twitter_layout(root: Path, per_split: dict[str, int]) -> None:
    images = root / "twitter2015_images"
    images.mkdir(parents=True)
    index = 0
    for name, count in per_split.items():
        lines = [HEADER]
        for _ in range(count):
            label = index % 3
            jpg(images / f"{1000 + index}.jpg", index)
            text = f"$T$ is {WORDS[label]} today #{index}"
            lines.append(f"{index}\t{label}\t{1000 + index}.jpg\t{text}\tRT @ Team{index % 2}")
            index += 1
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def sarcasm_layout(root: Path, per_split: dict[str, int]) -> None:
    (root / "text_json_final").mkdir(parents=True)
    (root / "dataset_image").mkdir()
    index = 0
    for name, count in per_split.items():
        lines = []
        for _ in range(count):
            label = index % 2
            image_id = str(682716753374351360 + index)
            jpg(root / "dataset_image" / f"{image_id}.jpg", index)
            words = f"what a {WORDS[label]} day <user> #{index}"
            lines.append(
                repr([image_id, words, label] if name == "train.txt" else [image_id, words, 1, label])
            )
            index += 1
        (root / "text_json_final" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_twitter2015_scan_splits_labels_text_and_issues(tmp_path: Path):
    twitter_layout(tmp_path, {"train.tsv": 4, "dev.tsv": 2, "test.tsv": 2})
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as fh:
        fh.write("90\t3\t1000.jpg\t$T$ rocks\tX\n")  # line 6: label outside 0/1/2
        fh.write("91\t1\tgone.jpg\t$T$ rocks\tX\n")  # line 7: no such image
        fh.write("92\t1\t1000.jpg\tonly four fields\n")  # line 8
    adapter = ADAPTERS.get("twitter2015")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.split) for i in items][::2] == [
        ("train-0", "train"),
        ("train-2", "train"),
        ("dev-4", "val"),
        ("test-6", "test"),
    ]
    assert [i.label for i in items[:3]] == ["negative", "neutral", "positive"]
    assert adapter.class_names(items) == ["negative", "neutral", "positive"]
    assert items[1].meta == {"text": "RT @ Team1 is rainy today #1"}
    assert items[1].paths == {"image": tmp_path / "twitter2015_images" / "1001.jpg"}
    assert [(i.sample_id, Path(i.path).name) for i in issues] == [
        ("train.tsv line 6", "train.tsv"),
        ("train.tsv line 7", "gone.jpg"),
        ("train.tsv line 8", "train.tsv"),
    ]
    assert "unknown label '3'" in issues[0].reason and "missing image" in issues[1].reason
    assert "4 tab-separated fields, expected 5" in issues[2].reason
    paired, _ = ADAPTERS.get("twitter2015")().scan(tmp_path, target="pair")
    assert paired[1].meta == {"text": "RT @ Team1 is rainy today #1", "text_pair": "RT @ Team1"}


def test_twitter2015_layout_errors(tmp_path: Path):
    twitter_layout(tmp_path, {"train.tsv": 1, "test.tsv": 1})
    with pytest.raises(LayoutError, match=r"dev\.tsv: missing split file"):
        ADAPTERS.get("twitter2015")().scan(tmp_path)
    (tmp_path / "dev.tsv").write_text("index\tlabel\timage\n1\t0\t1000.jpg\n")
    with pytest.raises(LayoutError, match=r"dev\.tsv: header has 3 column\(s\).*missing column 'text'"):
        ADAPTERS.get("twitter2015")().scan(tmp_path)
    (tmp_path / "dev.tsv").write_text(HEADER + "\n")
    with pytest.raises(LayoutError, match=r"elsewhere: missing images folder"):
        ADAPTERS.get("twitter2015")().scan(tmp_path, images=tmp_path / "elsewhere")
    with pytest.raises(LayoutError, match=r"nowhere: no such tokenizer folder"):
        ADAPTERS.get("twitter2015")().scan(tmp_path, text_model=tmp_path / "nowhere")
    with pytest.raises(LayoutError, match="missing tokenizer files"):
        ADAPTERS.get("twitter2015")().scan(tmp_path, text_model=tmp_path)
    with pytest.raises(LayoutError, match="crop must be one of resize, center"):
        ADAPTERS.get("twitter2015")().scan(tmp_path, crop="random")


def test_sarcasm_three_and_four_field_lines_and_issues(tmp_path: Path):
    sarcasm_layout(tmp_path, {"train.txt": 3, "valid.txt": 2, "test.txt": 2})
    with open(tmp_path / "text_json_final" / "test.txt", "a", encoding="utf-8") as fh:
        fh.write("['1', 'broken line'\n")  # line 3
        fh.write("['2', 'bad label', 7]\n")  # line 4
        fh.write("['3', 'no image', 0]\n")  # line 5
    adapter = ADAPTERS.get("sarcasm")()
    items, issues = adapter.scan(tmp_path)
    assert [i.split for i in items] == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert [i.label for i in items[:2]] == ["non-sarcastic", "sarcastic"]
    assert items[0].sample_id == "682716753374351360"
    assert items[0].meta == {"text": "what a sunny day <user> #0"}
    assert items[3].meta == {"text": "what a rainy day <user> #3", "extra": 1}  # label is the last field
    assert [i.sample_id for i in issues] == ["test.txt line 3", "test.txt line 4", "test.txt line 5"]
    assert "not a Python-literal list" in issues[0].reason
    assert "unknown label '7'" in issues[1].reason
    assert issues[2].path.endswith("dataset_image/3.jpg") and "missing image" in issues[2].reason


def test_sarcasm_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="text_json_final: missing folder"):
        ADAPTERS.get("sarcasm")().scan(tmp_path)
    sarcasm_layout(tmp_path, {"train.txt": 1, "test.txt": 1})
    with pytest.raises(LayoutError, match=r"text_json_final/valid\.txt: missing split file"):
        ADAPTERS.get("sarcasm")().scan(tmp_path)


def test_decode_tokenises_offline_and_crops(tmp_path: Path):
    jpg(tmp_path / "wide.jpg", 0, size=(64, 32))
    item = SourceItem("a", "sarcastic", "train", {"image": tmp_path / "wide.jpg"}, {"text": "so great"})
    adapter = ADAPTERS.get("sarcasm")()
    adapter.configure(None, 12, 16, "center")
    arrays = adapter.decode(item, PRESETS.get("image-text"))
    expected = load_tokenizer(default_text_folder())("so great", padding="max_length", max_length=12)
    assert arrays["text/input_ids"].dtype == np.int64 and arrays["text/input_ids"].shape == (12,)
    assert arrays["text/input_ids"].tolist() == expected["input_ids"]
    assert arrays["text/attention_mask"].tolist() == [1, 1, 1, 1] + [0] * 8  # CLS so great SEP
    assert arrays["image/pixels"].shape == (16, 16, 3) and arrays["image/pixels"].dtype == np.uint8
    # center: shorter side to 16*256/224 = 18 (so 36x18), then the middle 16x16
    with Image.open(tmp_path / "wide.jpg") as image:
        resized = np.asarray(image.convert("RGB").resize((36, 18), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(arrays["image/pixels"], resized[1:17, 10:26])
    squeezed = read_image_cropped(tmp_path / "wide.jpg", 16, "resize")
    assert squeezed.shape == (16, 16, 3) and not np.array_equal(squeezed, arrays["image/pixels"])
    long_text = SourceItem("b", "sarcastic", "train", item.paths, {"text": " ".join(["word"] * 40)})
    assert adapter.decode(long_text, PRESETS.get("image-text"))["text/attention_mask"].sum() == 12


def test_sarcasm_prep_through_the_cli(tmp_path: Path):
    sarcasm_layout(tmp_path / "raw", {"train.txt": 6, "valid.txt": 2, "test.txt": 2})
    out = tmp_path / "sarcasm.h5"
    result = CliRunner().invoke(
        app,
        ["prep", "sarcasm", "--root", str(tmp_path / "raw"), "--out", str(out), "--workers", "1"]
        + ["--opt", "image_size=32", "--opt", "max_length=16"],
    )
    assert result.exit_code == 0, result.output
    from mmrebal.cache.format import read_info

    info = read_info(out)
    assert info.modalities == {"text": "tokens", "image": "image"}
    assert info.shapes == {"text/input_ids": (16,), "text/attention_mask": (16,), "image/pixels": (32, 32, 3)}
    assert info.class_names == ["non-sarcastic", "sarcastic"]
    assert info.split_counts == {"train": 6, "val": 2, "test": 2}
    assert info.attrs["option_max_length"] == 16 and info.attrs["preset"] == "image-text"


@pytest.mark.slow
def test_twitter2015_prep_and_train_with_minilm(tmp_path: Path):
    """CLI prep of the TomBERT layout, then one epoch with MiniLM text + CNN image: joint and remix."""
    twitter_layout(tmp_path / "raw", {"train.tsv": 12, "dev.tsv": 3, "test.tsv": 3})
    out = tmp_path / "twitter.h5"
    result = CliRunner().invoke(
        app,
        ["prep", "twitter2015", "--root", str(tmp_path / "raw"), "--out", str(out), "--workers", "1"]
        + ["--opt", "image_size=32", "--opt", "max_length=16", "--opt", "crop=center"],
    )
    assert result.exit_code == 0, result.output
    from mmrebal.cache.format import read_info

    info = read_info(out)
    assert info.split_counts == {"train": 12, "val": 3, "test": 3}
    assert info.shapes["text/input_ids"] == (16,) and info.shapes["image/pixels"] == (32, 32, 3)
    tiny = {"image": {"channels": [8, 16]}}
    for sampler, options in (("uniform", {}), ("remix", {"warmup": 0})):
        steps = train_briefly(
            out, tmp_path / sampler, sampler, "text=minilm,image=cnn", encoder_options=tiny, **options
        )
        assert set(steps["modality"]) <= {"text", "image"} and len(steps)
    samples = pl.read_parquet(tmp_path / "remix" / "samples.parquet")
    assert set(samples["modality"]) == {"text", "image"}  # remix scored both modalities of every sample
    assert samples.filter(pl.col("assigned"))["sample_id"].sort().to_list() == sorted(
        f"train-{i}" for i in range(12)
    )


@pytest.mark.slow
def test_sarcasm_prep_and_train_with_minilm(tmp_path: Path):
    """The sarcasm release through run_prep, then one epoch with MiniLM text + CNN image: joint and bss-l."""
    sarcasm_layout(tmp_path / "raw", {"train.txt": 8, "valid.txt": 2, "test.txt": 2})
    out = tmp_path / "sarcasm.h5"
    run_prep("sarcasm", tmp_path / "raw", out, workers=1, image_size=32, max_length=16)
    tiny = {"image": {"channels": [8, 16]}}
    for sampler in ("uniform", "bss-l"):
        steps = train_briefly(out, tmp_path / sampler, sampler, "text=minilm,image=cnn", encoder_options=tiny)
        assert set(steps["modality"]) == {"text", "image"}
    samples = pl.read_parquet(tmp_path / "bss-l" / "samples.parquet")
    assert sorted(samples["idx"].to_list()) == list(range(8))  # bss-l scored every train sample once
