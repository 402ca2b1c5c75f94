"""Dense optical flow (OpenCV Farneback) stored as uint8 frames, for datasets that ship no flow.

Flow is computed between consecutive frames of a window, on grayscale frames already resized to the
output size (so its units are output pixels per frame), with OpenCV's documented example parameters
(``FARNEBACK``). It is stored like RGB frames so the frame encoders take it unchanged: channel 0 is
the horizontal and channel 1 the vertical displacement, each clipped to ``[-bound, bound]`` and mapped
linearly to 0..255 (128 = no motion, the TSN convention for stored flow), channel 2 the magnitude
clipped to ``[0, bound]`` and mapped to 0..255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrebal.media.video import frame_indices, read_frames

# cv2.calcOpticalFlowFarneback(prev, next, None, pyr_scale, levels, winsize, iterations, poly_n,
# poly_sigma, flags): the values of OpenCV's optical-flow tutorial.
FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
DEFAULT_BOUND = 20.0


def farneback_flow(frames: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """float32 [T, H, W, 2] flow from frame ``p`` to ``p + 1`` for each pick of uint8 [N, H, W, 3] frames.

    The last frame has no successor, so a pick of it uses the pair ending there; a one-frame window
    has no motion (zeros).
    """
    import cv2

    count, height, width = frames.shape[:3]
    if count < 2:
        return np.zeros((len(picks), height, width, 2), dtype=np.float32)
    gray = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in frames]
    out = np.empty((len(picks), height, width, 2), dtype=np.float32)
    for n, pick in enumerate(picks):
        first = min(int(pick), count - 2)
        out[n] = cv2.calcOpticalFlowFarneback(gray[first], gray[first + 1], None, **FARNEBACK)
    return out


def flow_to_frames(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """float [T, H, W, 2] flow -> uint8 [T, H, W, 3] (dx, dy, magnitude), as the module docstring says."""
    if bound <= 0:
        raise ValueError(f"flow bound must be positive, got {bound}")
    xy = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    magnitude = np.clip(np.linalg.norm(flow, axis=-1, keepdims=True), 0, bound) * (255.0 / bound)
    return np.rint(np.concatenate([xy, magnitude], axis=-1)).astype(np.uint8)


def read_flow(
    path: Path,
    num_frames: int,
    size: tuple[int, int],
    frame_range: tuple[int, int],
    bound: float = DEFAULT_BOUND,
) -> np.ndarray:
    """uint8 [T, H, W, 3] flow frames at the same picks ``read_frames`` makes in ``frame_range``.

    Every frame of the window is decoded at ``size`` (flow needs each pick's successor).
    """
    start, end = frame_range
    window = read_frames(path, max(1, end - start), size, frame_range=frame_range)
    picks = frame_indices(len(window), num_frames, 1.0)
    return flow_to_frames(farneback_flow(window, picks), bound)
