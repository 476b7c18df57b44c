"""Small media whose first bytes are what real files of their type start with."""

from __future__ import annotations

import struct


def _ogg(codec_header: bytes) -> bytes:
    # one Ogg page (27-byte header, one segment) carrying the codec's identification header
    page = b"OggS\x00\x02" + bytes(8) + b"\x01\x00\x00\x00" + bytes(8) + b"\x01\x13"
    return page + codec_header + bytes(200)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
WEBP = b"RIFF" + struct.pack("<I", 212) + b"WEBPVP8 " + bytes(200)
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(200)
M4A = b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom" + bytes(200)
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(200)
OPUS = _ogg(b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00")
VORBIS = _ogg(b"\x01vorbis" + bytes(22))
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(200)
TEXT = b"# README\n\nThis is a text file, not a picture.\n"
