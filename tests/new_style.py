"""A handwriting style the shipped model has never seen, for the correction-loop tests.

*Hollow* digits: each stroke drawn as its outline, as with a double-line or
bubble pen. Nothing in MNIST or in our synthesis looks like this (and nothing
will: it is kept out of training on purpose), so the shipped model misreads most
of them -- until a user corrects a few and the model is fine-tuned.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def hollow(digits: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 MNIST digits -> their outlines, (N, 28, 28) uint8, longer side 20 px."""
    out = []
    for d in digits:
        big = Image.fromarray(d).resize((56, 56), Image.BILINEAR)
        ring = np.clip(np.asarray(big.filter(ImageFilter.MaxFilter(5)), np.int16)
                       - np.asarray(big, np.int16), 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(ring > 20)
        crop = Image.fromarray(ring[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        s = 20 / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))),
                           Image.LANCZOS)
        res = Image.new("L", (28, 28))
        res.paste(crop, ((28 - crop.width) // 2, (28 - crop.height) // 2))
        out.append(np.asarray(res))
    return np.stack(out)


def as_pngs(digits: np.ndarray, seed: int) -> tuple[list[bytes], np.ndarray]:
    """Digits placed on 75x75 canvases as the app's users would give them: dark ink on
    white, enlarged 2x (150x150 PNGs). Returns (PNG bytes, true normalized boxes (N, 4))."""
    from locmnist.config import Config
    from locmnist.synthesis import synthesize_numpy

    canvases, boxes = synthesize_numpy(digits, Config(), seed=seed)   # (N, 75, 75, 1)
    pngs = []
    for c in canvases:
        img = Image.fromarray(np.rint(255 * (1 - c[..., 0])).astype(np.uint8))
        buf = io.BytesIO()
        img.resize((150, 150), Image.BILINEAR).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, boxes
