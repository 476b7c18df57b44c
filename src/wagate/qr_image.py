"""A QR string drawn as a PNG: what the API serves and what seed 002's status reports carry.

A QR may also be kept as the PNG data URL itself (seed 001's edge workers
report only that): it is served as it is, and its PNG decoded from it.
"""

from __future__ import annotations

import base64
from io import BytesIO

import segno

PNG_DATA_URL = "data:image/png;base64,"


def qr_png(code: str, scale: int = 6) -> bytes:
    if code.startswith(PNG_DATA_URL):
        return base64.b64decode(code.removeprefix(PNG_DATA_URL))
    out = BytesIO()
    segno.make(code, error="l", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_data_url(code: str) -> str:
    """The PNG as a ``data:image/png;base64,…`` URL (seed 002's ``qrCode``)."""
    if code.startswith(PNG_DATA_URL):
        return code
    return PNG_DATA_URL + base64.b64encode(qr_png(code)).decode("ascii")
