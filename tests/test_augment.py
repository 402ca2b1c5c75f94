"""Train-time augmentation: torchvision's RandomResizedCrop + flip, batched, seeded, train-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from _tiny_cache import build_tiny_cache

from mmrebal.engine import augment as augment_mod
from mmrebal.engine.augment import TrainAugment, build_augment, crop_params, resized_crops
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train

torch.set_num_threads(1)


def test_resized_crops_equal_torchvision_crop_resize_and_flip() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 20, 24, generator=g)
    crops = torch.tensor(
        [[0, 0, 20, 24], [3, 5, 9, 7], [11, 0, 9, 24], [0, 17, 20, 7], [5, 5, 1, 1], [2, 1, 15, 4]]
    )
    flips = torch.tensor([False, True, False, True, True, False])
    got = resized_crops(images, crops, flips)
    for k in range(6):
        top, left, h, w = crops[k].tolist()
        want = TF.resized_crop(images[k], top, left, h, w, [20, 24], antialias=True)  # bilinear
        if flips[k]:
            want = TF.horizontal_flip(want)
        torch.testing.assert_close(got[k], want, rtol=1e-5, atol=1e-5)


def test_crop_params_follow_random_resized_crop() -> None:
    g = torch.Generator().manual_seed(1)
    crops = crop_params(4000, 32, 48, g)
    top, left, h, w = crops.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 48).all()
    area = (h * w).float() / (32 * 48)
    assert area.min() >= 0.08 - 0.02 and area.max() <= 1.0  # rounding of w, h moves the area a little
    aspect = w.float() / h.float()
    assert aspect.min() > 0.7 and aspect.max() < 1.43
    assert len(set(map(tuple, crops.tolist()))) > 3000  # draws differ
    # no try can fit: torchvision's fallback, the central crop with the aspect ratio clamped
    impossible = crop_params(5, 10, 40, g, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert impossible.tolist() == [[0, 15, 10, 10]] * 5


def test_train_augment_is_seeded_per_step_and_leaves_other_kinds() -> None:
    kinds = {"audio": "spectrogram", "visual": "frames", "image": "image"}
    batch = {
        "audio": torch.randn(4, 1, 8, 8),
        "visual": torch.randn(4, 3, 3, 16, 16),
        "image": torch.randn(4, 3, 16, 16),
        "label": torch.arange(4),
    }
    aug = TrainAugment(kinds, seed=3)
    a, b, c = aug(batch, step=5), aug(batch, step=5), aug(batch, step=6)
    assert a["audio"] is batch["audio"] and a["label"] is batch["label"]
    assert torch.equal(a["visual"], b["visual"]) and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["visual"], c["visual"])
    assert not torch.equal(TrainAugment(kinds, seed=3, rank=1)(batch, 5)["visual"], a["visual"])
    # per=clip: one crop for all frames of a sample (identical frames stay identical)
    same = {"visual": batch["visual"][:, :1].expand(4, 3, 3, 16, 16).contiguous()}
    clip = TrainAugment(kinds, seed=3, per="clip")(same, 1)["visual"]
    assert torch.equal(clip[:, 0], clip[:, 2])
    frame = TrainAugment(kinds, seed=3, per="frame")(same, 1)["visual"]
    assert not torch.equal(frame[:, 0], frame[:, 2])


def test_bad_augment_options_give_one_line() -> None:
    with pytest.raises(ValueError, match="augment option sclae is not one of"):
        build_augment({"visual": "frames"}, 0, 0, {"sclae": [0.5, 1]})
    with pytest.raises(ValueError, match="per='video'"):
        TrainAugment({"visual": "frames"}, 0, per="video")
    with pytest.raises(ValueError, match="scale"):
        TrainAugment({"visual": "frames"}, 0, scale=(0.0, 1.0))


@pytest.mark.slow
def test_augmentation_runs_in_training_steps_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=60, num_classes=3, seed=1)
    calls: list[bool] = []
    original = TrainAugment.__call__

    def counted(self, batch, step):
        calls.append(torch.is_grad_enabled())
        return original(self, batch, step)

    monkeypatch.setattr(augment_mod.TrainAugment, "__call__", counted)
    options = {"cache": str(cache), "epochs": 2, "batch_size": 12, "feature_dim": 16, "device": "cpu"}
    train(resolve_config({**options, "out": str(tmp_path / "off")}))
    assert calls == []  # the cpu preset does not augment
    train(resolve_config({**options, "out": str(tmp_path / "on"), "augment": True}))
    train_rows = 36  # 60 samples, 60 % of them in train
    assert len(calls) == 2 * -(-train_rows // 12)  # once per training step, never in val/test scoring
    assert all(calls)
