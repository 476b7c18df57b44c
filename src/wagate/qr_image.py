"""A QR string drawn as a PNG: what the API serves and what seed 002's status reports carry."""

from __future__ import annotations

import base64
from io import BytesIO

import segno


def qr_png(code: str, scale: int = 6) -> bytes:
    out = BytesIO()
    segno.make(code, error="l", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_data_url(code: str) -> str:
    """The PNG as a ``data:image/png;base64,…`` URL (seed 002's ``qrCode``)."""
    return "data:image/png;base64," + base64.b64encode(qr_png(code)).decode("ascii")
