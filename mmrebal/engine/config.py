"""``TrainConfig``: every option of ``mmrebal train``, its presets and its YAML form.

Resolution order (later wins): the dataclass defaults, the preset, the ``--config`` YAML file, the
command-line flags that were given. A run's resolved ``config.yaml`` is itself a valid ``--config``
file (its informational ``cache_attrs``, ``versions`` and ``changes`` sections are ignored on reading).
"""

from __future__ import annotations

import copy
import dataclasses
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmrebal import __version__
from mmrebal.names import registered

# Presets reproduce the reference code's training set-ups (file and line of each fact in
# docs/samplers.md, "Deviations from the reference code"). `cpu` is the dataclass defaults themselves:
# small CNN encoders, Adam 1e-3, batch 64, 6 epochs, splits preloaded, no augmentation (AV-MNIST's
# 32x32 digits: a flipped digit is not a digit), sized for the default avmnist cache on 2 CPU cores.
# The others switch to ResNet18, the reference optimiser and schedule, and train-time augmentation
# (RandomResizedCrop + horizontal flip of frames and images). All of them preload a split that fits
# in memory and pick loader workers from the device (mmrebal.data.loading). `method_defaults` are
# options of the named method that the reference trains with (given options still win).
_RESNET = {"encoders": "resnet18", "feature_dim": 512, "augment": True}
_SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "scheduler": "step", "gamma": 0.1}
_SEPARATE_HEADS = {"model_options": {"unimodal_logits": "heads"}}
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    # OGM-GE (main.py): SGD 1e-3, momentum 0.9, wd 1e-4, StepLR(70, 0.1), 100 epochs, batch 64;
    # unimodal logits are slices of the fused layer (the concat default)
    "ogm": {**_RESNET, **_SGD, "batch_size": 64, "epochs": 100, "lr": 1e-3, "step_size": 70},
    # MLA (main.py): the OGM-GE set-up with one head shared by the modalities
    "mla": {**_RESNET, **_SGD, "batch_size": 64, "epochs": 100, "lr": 1e-3, "step_size": 70,
            "method": "mla", "fusion": "shared"},
    # DUS (Sec. 4.2): SGD 1e-2, momentum 0.9, wd 1e-4, lr / 10 when the loss saturates (StepLR(70)
    # here), batch 64, a linear head per modality; no code is public, epochs as OGM-GE
    "dus": {**_RESNET, **_SGD, **_SEPARATE_HEADS, "batch_size": 64, "epochs": 100, "lr": 1e-2,
            "step_size": 70},
    # Remix (train.py): Adam 5e-5, wd 1e-4, StepLR(30, 0.1), 60 epochs, batch 64, separate heads
    "remix": {**_RESNET, **_SEPARATE_HEADS, "batch_size": 64, "epochs": 60, "optimizer": "adam",
              "lr": 5e-5, "weight_decay": 1e-4, "scheduler": "step", "step_size": 30, "gamma": 0.1},
    # BSS on CREMA-D (CREMA-D/train-CL.py): SGD 1e-2, StepLR(70, 0.1), 120 epochs, batch 32, separate
    # heads, loss 0.1 CE_fused + 0.9 (CE_a + CE_v)
    "bss": {**_RESNET, **_SGD, **_SEPARATE_HEADS, "batch_size": 32, "epochs": 120, "lr": 1e-2,
            "step_size": 70, "method_defaults": {"joint": {"fused_weight": 0.1, "unimodal_weight": 0.9}}},
    # BSS on Kinetics-Sounds (KS/train-CL.py): SGD 1e-1, StepLR(70, 0.1), 120 epochs, batch 32,
    # separate heads, loss 1/1/1
    "bss-ks": {**_RESNET, **_SGD, **_SEPARATE_HEADS, "batch_size": 32, "epochs": 120, "lr": 1e-1,
               "step_size": 70},
}  # fmt: skip
# The same reference set-ups sized for 2 CPU cores and the default avmnist cache (the study of
# docs/results-avmnist.md): each paper's optimiser, lr, schedule, epochs, batch, heads and loss weights,
# with the half-width CNN encoders instead of ResNet18 and no augmentation (a flipped or cropped 32x32
# digit is no longer the same digit; the references augment faces and scenes). Sampler options keep
# the papers' defaults (Remix warm-up 10, BSS T_grow 40 and lambda0 0.1, the DUS policy's lr).
CPU_SIZED = {"encoders": "cnn-small", "feature_dim": 128, "augment": False}
PAPER_PRESETS = ("ogm", "mla", "dus", "remix", "bss", "bss-ks")
TRAIN_PRESETS.update({f"{name}-cpu": {**TRAIN_PRESETS[name], **CPU_SIZED} for name in PAPER_PRESETS})

INFO_SECTIONS = ("cache_attrs", "versions", "changes")
# YAML and older config.yaml files write preload as a boolean
PRELOAD_ALIASES = {"auto": "auto", "yes": "yes", "true": "yes", "no": "no", "false": "no"}


class ConfigError(ValueError):
    """A config value or file that cannot be used; the message names it and says what to do."""


@dataclass
class TrainConfig:
    """Every option of ``mmrebal train`` (each is also a YAML key of the same name)."""

    cache: str | None = None
    sampler: str = "uniform"
    method: str = "joint"
    fusion: str = "concat"
    encoders: str = "cnn"  # one name for all modalities, or "audio=cnn,visual=resnet18"
    feature_dim: int = 128
    epochs: int = 6
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"  # a name of mmrebal.engine.build.OPTIMIZERS
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    scheduler: str = "none"  # a name of mmrebal.engine.build.SCHEDULERS
    step_size: int = 70
    gamma: float = 0.1
    seed: int = 0
    out: str | None = None  # default runs/<dataset>-<sampler>-<method>-s<seed>
    preset: str = "cpu"
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False
    workers: int | None = None  # loader workers; None: 0 on CPU, from the core count on CUDA
    reader: str = "threads"  # threads | processes: what the workers are (see loading.py)
    preload: str = "auto"  # yes | no | auto: read the splits into memory when they fit (see loading.py)
    augment: bool = False  # train-time RandomResizedCrop + flip of frames/images (mmrebal.engine.augment)
    resume: bool = False
    test_each_epoch: bool = False  # also evaluate TEST every epoch (never used for selection)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    augment_options: dict[str, Any] = field(default_factory=dict)  # scale, ratio, flip, per (frame|clip)

    def __post_init__(self) -> None:
        choices = {"optimizer": registered("optimizer"), "scheduler": registered("scheduler"),
                   "device": ("auto", "cpu", "cuda"), "preset": tuple(TRAIN_PRESETS),
                   "reader": ("threads", "processes")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "step_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers={self.workers}: must be 0 or more (or unset: from the device)")
        preload = PRELOAD_ALIASES.get(str(self.preload).lower())
        if preload is None:
            raise ConfigError(f"preload={self.preload!r}: choose one of auto, yes, no")
        self.preload = preload

    def encoder_map(self, modalities: list[str]) -> dict[str, str]:
        """``encoders`` as modality -> encoder name for the cache's modalities."""
        if "=" not in self.encoders:
            return {m: self.encoders for m in modalities}
        pairs = dict(_split_pair(p, "--encoders") for p in self.encoders.split(",") if p.strip())
        missing = [m for m in modalities if m not in pairs]
        if missing:
            raise ConfigError(f"--encoders {self.encoders!r}: no encoder for {', '.join(missing)}")
        return {m: pairs[m] for m in modalities}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def default_of(name: str) -> Any:
    """The dataclass default of option ``name`` (the cpu preset's value), for help texts."""
    f = _FIELDS[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
_DICT_FIELDS = ("sampler_options", "method_options", "model_options", "augment_options")


def _split_pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def parse_options(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict with YAML scalar parsing (``3`` int, ``0.5`` float, ``true`` bool)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = _split_pair(item, flag)
        out[key] = _yaml_scalar(value)
    return out


def _yaml_scalar(text: str) -> Any:
    value = yaml.safe_load(text) if text else None
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; numbers are what users mean
        try:
            return int(value) if value.lstrip("+-").isdigit() else float(value)
        except ValueError:
            return value
    return value


def _coerce(name: str, value: Any, where: str) -> Any:
    """A YAML/CLI value as the field's type, or one clear error naming where it came from."""
    kind = str(_FIELDS[name].type)
    if value is None and "None" in kind:
        return None
    kind = kind.removesuffix(" | None")
    try:
        if kind.startswith("dict"):
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name}={value!r} is not a valid {kind}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Options from a YAML file, checked against ``TrainConfig``'s fields."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in INFO_SECTIONS:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"{path}: unknown option {key!r}; known: {', '.join(_FIELDS)}")
        out[key] = _coerce(key, value, str(path))
    return out


def config_from_dict(data: Any, where: str) -> TrainConfig:
    """A saved config (a checkpoint's), each key checked and coerced as a YAML file's would be."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: its config is not a mapping of option: value")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where}: its config has option(s) {', '.join(unknown)} that this mmrebal does not know "
            "(written by another version?)"
        )
    return TrainConfig(**{k: _coerce(k, v, where) for k, v in data.items()})


def resolve_config(cli: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """defaults <- preset <- YAML <- CLI; ``cli`` holds only the flags the user gave (None = not given)."""
    given = {k: v for k, v in cli.items() if v is not None and not (k in _DICT_FIELDS and not v)}
    from_file = read_yaml(config_file) if config_file else {}
    preset = given.get("preset") or from_file.get("preset") or TrainConfig.preset
    if preset not in TRAIN_PRESETS:
        from mmrebal.names import unknown_message

        raise ConfigError(unknown_message("preset", preset, list(TRAIN_PRESETS), "--preset"))
    chosen = dict(TRAIN_PRESETS[preset])
    method_defaults = chosen.pop("method_defaults", {})
    merged: dict[str, Any] = {**copy.deepcopy(chosen), "preset": preset}
    for layer, where in ((from_file, str(config_file)), (given, "command line")):
        for key, value in layer.items():
            value = _coerce(key, value, where)
            merged[key] = {**merged.get(key, {}), **value} if key in _DICT_FIELDS else value
    method = merged.get("method", TrainConfig.method)
    merged["method_options"] = {**method_defaults.get(method, {}), **merged.get("method_options", {})}
    return TrainConfig(**merged)


def versions() -> dict[str, str]:
    """What ran the numbers besides the options: the versions, and torch's intra-op thread count,
    which sets the order of float reductions (the same seed under Adam selected epoch 50 with 2
    threads and 58 with 1, docs/results-avmnist.md)."""
    import torch

    return {
        "mmrebal": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }


def config_yaml(
    config: TrainConfig, cache_attrs: dict[str, Any], changes: list[dict[str, Any]] | None = None
) -> str:
    """The run's ``config.yaml``: every option, the cache's attributes, the versions and, for a
    resumed run, the options changed on resume with the epoch each took effect at."""
    body = {**config.to_dict(), "cache_attrs": _plain(cache_attrs), "versions": versions()}
    if changes:
        body["changes"] = _plain(changes)
    return yaml.safe_dump(body, sort_keys=False)


def _plain(value: Any) -> Any:
    """YAML-safe form of cache attributes (numpy scalars and paths become Python values)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
