"""The twitter2015 and sarcasm adapters on tiny copies of their release layouts (real jpgs, real lines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _adapter_train import train_briefly
from PIL import Image
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.prep.adapters import ADAPTERS, LayoutError, SourceItem
from mmrebal.prep.adapters.text_common import default_text_folder, load_tokenizer, read_image_cropped
from mmrebal.prep.presets import PRESETS
from mmrebal.prep.runner import run_prep

torch.set_num_threads(1)
# TomBERT absa_data/twitter2015/*.tsv: LF, tab-separated; train/dev headers name 5 columns, test.tsv's 4
TRAIN_DEV_HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"
TEST_HEADER = "index\t#1 ImageID\t#2 String\t#2 String"
WORDS = ("sunny", "rainy", "happy", "angry", "great", "awful")


def jpg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def twitter_layout(root: Path, per_split: dict[str, int], images_beside: bool = True) -> Path:
    """The IJCAI2019_data zip: ``twitter2015/{train,dev,test}.tsv`` and the sibling ``twitter2015_images/``.

    Returns the folder to pass as --root (``twitter2015/``); rows are numbered from 1 per file as in TomBERT.
    """
    text_dir = root / "twitter2015"
    images = root / "twitter2015_images" if images_beside else text_dir / "twitter2015_images"
    images.mkdir(parents=True)
    text_dir.mkdir(exist_ok=True)
    number = 0
    for name, count in per_split.items():
        lines = [TEST_HEADER if name == "test.tsv" else TRAIN_DEV_HEADER]
        for index in range(1, count + 1):
            label = number % 3
            jpg(images / f"{1000 + number}.jpg", number)
            text = f"RT @ user{number} : $T$ is {WORDS[label]} today # tag{number}"
            lines.append(f"{index}\t{label}\t{1000 + number}.jpg\t{text}\tRT Team{number % 2}")
            number += 1
        (text_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return text_dir


def mmsd_layout(root: Path, per_split: dict[str, int], filtered: int = 0) -> list[str]:
    """MMSD's ``text/{train,valid2,test2}.txt`` (CRLF, Python-literal lists) and ``dataset_image/``.

    The first ``filtered`` train posts carry one of Cai et al.'s keywords and, as in the release, no image.
    """
    (root / "text").mkdir(parents=True)
    (root / "dataset_image").mkdir(exist_ok=True)
    ids, number = [], 0
    for name, count in per_split.items():
        lines = []
        for k in range(count):
            label, image_id = number % 2, str(682716753374351360 + number)
            keyword = name == "train.txt" and k < filtered
            words = f"what a {WORDS[label]} day <user> {'<url>' if keyword else 'emoji_15'} # t{number}"
            if not keyword:
                jpg(root / "dataset_image" / f"{image_id}.jpg", number)
                ids.append(image_id)
            record = [image_id, words, label] if name == "train.txt" else [image_id, words, 1 - label, label]
            lines.append(repr(record))
            number += 1
        (root / "text" / name).write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return ids


def mmsd2_layout(root: Path, per_split: dict[str, int], folder: str = "text_json_final") -> list[str]:
    """MMSD2.0's ``text_json_final/`` (or ``text_json_clean/``) ``{train,valid,test}.json`` and images."""
    (root / folder).mkdir(parents=True)
    (root / "dataset_image").mkdir(exist_ok=True)
    ids, number = [], 0
    for name, count in per_split.items():
        records = []
        for _ in range(count):
            label, image_id = number % 2, 862902619928506372 + number
            text = f"i am guessing # netflix is so {WORDS[label]} . {number}"
            record = {"image_id": image_id, "text": text, "label": label}
            if folder == "text_json_clean":
                record["1"] = text.strip()
            jpg(root / "dataset_image" / f"{image_id}.jpg", number)
            records.append(record)
            ids.append(str(image_id))
            number += 1
        (root / folder / name).write_text(json.dumps(records), encoding="utf-8")
    return ids


def prep(dataset: str, root: Path, out: Path, *opts: str) -> object:
    """``mmrebal prep`` through the CLI with small images and short token rows; returns the cache info."""
    args = ["prep", dataset, "--root", str(root), "--out", str(out), "--workers", "1"]
    args += ["--opt", "image_size=32", "--opt", "max_length=16"]
    for opt in opts:
        args += ["--opt", opt]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from mmrebal.cache.format import read_info

    return read_info(out)


def test_twitter2015_scan_splits_labels_text_and_issues(tmp_path: Path):
    root = twitter_layout(tmp_path, {"train.tsv": 4, "dev.tsv": 2, "test.tsv": 2})
    with open(root / "train.tsv", "a", encoding="utf-8") as fh:
        fh.write("90\t3\t1000.jpg\t$T$ rocks\tX\n")  # line 6: label outside 0/1/2
        fh.write("91\t1\tgone.jpg\t$T$ rocks\tX\n")  # line 7: no such image
        fh.write("92\t1\t1000.jpg\tonly four fields\n")  # line 8
    adapter = ADAPTERS.get("twitter2015")()
    items, issues = adapter.scan(root)
    assert [(i.sample_id, i.split) for i in items][::2] == [
        ("train-1", "train"),
        ("train-3", "train"),
        ("dev-1", "val"),
        ("test-1", "test"),
    ]
    assert [i.label for i in items[:3]] == ["negative", "neutral", "positive"]
    assert adapter.class_names(items) == ["negative", "neutral", "positive"]
    assert items[1].meta == {"text": "RT @ user1 : RT Team1 is rainy today # tag1"}
    assert items[1].paths == {"image": tmp_path / "twitter2015_images" / "1001.jpg"}  # the zip's sibling
    assert [(i.sample_id, Path(i.path).name) for i in issues] == [
        ("train.tsv line 6", "train.tsv"),
        ("train.tsv line 7", "gone.jpg"),
        ("train.tsv line 8", "train.tsv"),
    ]
    assert "unknown label '3'" in issues[0].reason and "missing image" in issues[1].reason
    assert "4 tab-separated fields, expected 5" in issues[2].reason
    paired, _ = ADAPTERS.get("twitter2015")().scan(root, target="pair")
    assert paired[1].meta == {"text": "RT @ user1 : RT Team1 is rainy today # tag1", "text_pair": "RT Team1"}
    tombert, _ = ADAPTERS.get("twitter2015")().scan(root, target="tombert")
    assert tombert[1].meta == {"text": "rt @ user1 : $t$ is rainy today # tag1", "text_pair": "rt team1"}


def test_twitter2015_tombert_target_is_bert_segment_pair(tmp_path: Path):
    """target=tombert tokenises TomBERT's text_a (with $T$) and text_b (the target): [CLS] a [SEP] b [SEP]."""
    root = twitter_layout(tmp_path, {"train.tsv": 1, "dev.tsv": 1, "test.tsv": 1})
    adapter = ADAPTERS.get("twitter2015")()
    items, _ = adapter.scan(root, target="tombert", max_length=32)
    ids = adapter.decode(items[0], PRESETS.get("image-text"))["text/input_ids"]
    tokenizer = load_tokenizer(default_text_folder())
    expected = tokenizer(
        "rt @ user0 : $t$ is sunny today # tag0", "rt team0", padding="max_length", max_length=32
    )
    assert ids.tolist() == expected["input_ids"]
    assert ids.tolist().count(tokenizer.sep_token_id) == 2


def test_twitter2015_layout_errors(tmp_path: Path):
    root = twitter_layout(tmp_path, {"train.tsv": 1, "test.tsv": 1}, images_beside=False)
    with pytest.raises(LayoutError, match=r"dev\.tsv: missing split file"):
        ADAPTERS.get("twitter2015")().scan(root)
    (root / "dev.tsv").write_text("1\t0\t1000.jpg\t$T$ x\tX\n")
    with pytest.raises(LayoutError, match=r"dev\.tsv: line 1 is not TomBERT's header"):
        ADAPTERS.get("twitter2015")().scan(root)
    (root / "dev.tsv").write_text(TRAIN_DEV_HEADER + "\n")
    items, _ = ADAPTERS.get("twitter2015")().scan(root)  # images inside --root are found too
    assert items[0].paths["image"] == root / "twitter2015_images" / "1000.jpg"
    with pytest.raises(LayoutError, match=r"elsewhere: missing images folder"):
        ADAPTERS.get("twitter2015")().scan(root, images=tmp_path / "elsewhere")
    with pytest.raises(LayoutError, match=r"nowhere: no such tokenizer folder"):
        ADAPTERS.get("twitter2015")().scan(root, text_model=tmp_path / "nowhere")
    with pytest.raises(LayoutError, match="missing tokenizer files"):
        ADAPTERS.get("twitter2015")().scan(root, text_model=tmp_path)
    with pytest.raises(LayoutError, match="crop must be one of resize, center"):
        ADAPTERS.get("twitter2015")().scan(root, crop="random")
    with pytest.raises(LayoutError, match="target must be one of replace, pair, tombert"):
        ADAPTERS.get("twitter2015")().scan(root, target="segment")


def test_twitter2015_release_prep_through_the_cli(tmp_path: Path):
    root = twitter_layout(tmp_path / "IJCAI2019_data", {"train.tsv": 4, "dev.tsv": 2, "test.tsv": 2})
    info = prep("twitter2015", root, tmp_path / "tw.h5", "target=tombert")
    assert info.split_counts == {"train": 4, "val": 2, "test": 2}
    assert info.class_names == ["negative", "neutral", "positive"]
    assert info.attrs["option_target"] == "tombert"
    assert info.attrs["source_images"] == str(tmp_path / "IJCAI2019_data" / "twitter2015_images")


def test_mmsd_keyword_filter_labels_and_issues(tmp_path: Path):
    ids = mmsd_layout(tmp_path, {"train.txt": 5, "valid2.txt": 2, "test2.txt": 2}, filtered=2)
    with open(tmp_path / "text" / "test2.txt", "ab") as fh:
        fh.write(b"['1', 'broken line'\r\n")  # line 3
        fh.write(b"['2', 'bad label', 1, 7]\r\n")  # line 4
        fh.write(b"['3', 'no image', 0, 0]\r\n")  # line 5
    adapter = ADAPTERS.get("sarcasm")()
    items, issues = adapter.scan(tmp_path)
    assert [i.sample_id for i in items] == ids  # the two keyword posts are filtered, not reported
    assert [i.split for i in items] == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert items[0].meta == {"text": "what a sunny day <user> emoji_15 # t2"}
    assert items[3].label == "sarcastic" and items[3].meta["hashtag_label"] == 0  # label = last field
    assert adapter.source_attrs == {
        "release": "mmsd",
        "text_folder": "text",
        "keyword_filtered": {"train": 2, "val": 0, "test": 0},
    }
    assert [i.sample_id for i in issues] == ["test2.txt line 3", "test2.txt line 4", "test2.txt line 5"]
    assert "expected a Python-literal list" in issues[0].reason
    assert "unknown label 7" in issues[1].reason
    assert issues[2].path.endswith("dataset_image/3.jpg") and "missing image" in issues[2].reason
    unfiltered, more = ADAPTERS.get("sarcasm")().scan(tmp_path, keyword_filter=False)
    assert len(unfiltered) == len(items)  # the release has no image for a filtered post
    assert ["missing image" in i.reason for i in more[:2]] == [True, True]


def test_sarcasm_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="none of text_json_final/, text_json_clean/, text/"):
        ADAPTERS.get("sarcasm")().scan(tmp_path)
    mmsd_layout(tmp_path, {"train.txt": 1, "test2.txt": 1})
    with pytest.raises(LayoutError, match=r"text/valid2\.txt: missing split file of the mmsd release"):
        ADAPTERS.get("sarcasm")().scan(tmp_path)
    with pytest.raises(LayoutError, match="text_json_final: missing folder of the mmsd2 release"):
        ADAPTERS.get("sarcasm")().scan(tmp_path, release="mmsd2")
    with pytest.raises(LayoutError, match="release must be auto or one of mmsd2, mmsd-clean, mmsd"):
        ADAPTERS.get("sarcasm")().scan(tmp_path, release="v3")
    (tmp_path / "text_json_final").mkdir()
    for name in ("train.json", "valid.json", "test.json"):
        (tmp_path / "text_json_final" / name).write_text("[{")
    with pytest.raises(LayoutError, match=r"train\.json: not JSON"):
        ADAPTERS.get("sarcasm")().scan(tmp_path)


@pytest.mark.parametrize("folder, release", [("text_json_final", "mmsd2"), ("text_json_clean", "mmsd-clean")])
def test_mmsd2_release_prep_through_the_cli(tmp_path: Path, folder: str, release: str):
    ids = mmsd2_layout(tmp_path / "data", {"train.json": 6, "valid.json": 2, "test.json": 2}, folder)
    (tmp_path / "data" / "dataset_image" / f"{ids[-1]}.jpg").unlink()  # MMSD2.0's loader skips these too
    info = prep("sarcasm", tmp_path / "data", tmp_path / "s.h5")
    assert info.modalities == {"text": "tokens", "image": "image"}
    assert info.shapes == {"text/input_ids": (16,), "text/attention_mask": (16,), "image/pixels": (32, 32, 3)}
    assert info.class_names == ["non-sarcastic", "sarcastic"]
    assert info.split_counts == {"train": 6, "val": 2, "test": 1}
    assert info.attrs["source_release"] == release and info.attrs["source_text_folder"] == folder
    assert info.attrs["num_prep_errors"] == 1 and info.attrs["preset"] == "image-text"


def test_mmsd_release_prep_through_the_cli(tmp_path: Path):
    mmsd_layout(tmp_path / "mmsd", {"train.txt": 8, "valid2.txt": 2, "test2.txt": 2}, filtered=2)
    info = prep("sarcasm", tmp_path / "mmsd", tmp_path / "s.h5")
    assert info.split_counts == {"train": 6, "val": 2, "test": 2}
    assert info.attrs["source_release"] == "mmsd" and info.attrs["option_keyword_filter"] is True
    assert info.attrs["source_keyword_filtered"] == {"train": 2, "val": 0, "test": 0}
    assert info.attrs["num_prep_errors"] == 0


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


@pytest.mark.slow
def test_twitter2015_prep_and_train_with_minilm(tmp_path: Path):
    """CLI prep of the TomBERT layout, then one epoch with MiniLM text + CNN image: joint and remix."""
    root = twitter_layout(tmp_path / "raw", {"train.tsv": 12, "dev.tsv": 3, "test.tsv": 3})
    out = tmp_path / "twitter.h5"
    result = CliRunner().invoke(
        app,
        ["prep", "twitter2015", "--root", str(root), "--out", str(out), "--workers", "1"]
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
        f"train-{i}" for i in range(1, 13)
    )


@pytest.mark.slow
def test_sarcasm_prep_and_train_with_minilm(tmp_path: Path):
    """The sarcasm release through run_prep, then one epoch with MiniLM text + CNN image: joint and bss-l."""
    mmsd2_layout(tmp_path / "raw", {"train.json": 8, "valid.json": 2, "test.json": 2})
    out = tmp_path / "sarcasm.h5"
    run_prep("sarcasm", tmp_path / "raw", out, workers=1, image_size=32, max_length=16)
    tiny = {"image": {"channels": [8, 16]}}
    for sampler in ("uniform", "bss-l"):
        steps = train_briefly(out, tmp_path / sampler, sampler, "text=minilm,image=cnn", encoder_options=tiny)
        assert set(steps["modality"]) == {"text", "image"}
    samples = pl.read_parquet(tmp_path / "bss-l" / "samples.parquet")
    assert sorted(samples["idx"].to_list()) == list(range(8))  # bss-l scored every train sample once
