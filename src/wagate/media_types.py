"""What media to send really is: its type read from its bytes, checked against its kind.

A mimetype from the caller, or from the source (an HTTP ``Content-Type``, a
``data:`` URL, a multipart part, a file name), is a claim; the bytes are the
fact. WhatsApp renders an image, video, audio, voice note or sticker by the
mimetype we send, so for those kinds the type the bytes show wins, and bytes
that are plainly something else (a PDF or a text file sent as an image) are
refused rather than sent as garbage. A document can be any file: its claimed
type is kept, and only a missing or generic one is replaced by what the bytes
show. Two kinds are stricter because WhatsApp shows nothing else: a sticker
is WebP, a voice note is Ogg Opus (sent as ``audio/ogg; codecs=opus``).
"""

from __future__ import annotations

import mimetypes

import filetype

from wagate.domain.message import STICKER_MIMETYPE, VOICE_MIMETYPE, MessageKind
from wagate.errors import InvalidInput

SNIFF_BYTES = 8192  # what the magic-byte matchers look at
GENERIC = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown"})
DEFAULT_DOCUMENT = "application/octet-stream"

_FAMILY = {
    MessageKind.IMAGE: "image/",
    MessageKind.STICKER: "image/",
    MessageKind.VIDEO: "video/",
    MessageKind.AUDIO: "audio/",
    MessageKind.VOICE: "audio/",
}
# other spellings of one type, as clients and servers send them
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/x-wav": "audio/wav",
    "audio/opus": "audio/ogg",
}
# containers that carry sound, pictures or both: the magic bytes cannot tell which
_CONTAINERS = {
    "video/mp4": "audio/mp4",
    "video/webm": "audio/webm",
    "video/3gpp": "audio/3gpp",
    "audio/ogg": "video/ogg",
}
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 12, 13}


def detect(data: bytes) -> str | None:
    """The mimetype the bytes' signature shows, if any."""
    kind = filetype.guess(data[:SNIFF_BYTES])
    return _ALIASES.get(kind.mime, kind.mime) if kind is not None else None


def looks_like_text(data: bytes) -> bool:
    """UTF-8 (or ASCII) text without binary control bytes, judged by its start."""
    head = data[:SNIFF_BYTES]
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # more than a character cut at the end of the sniff
            return False
        decoded = head[: exc.start].decode("utf-8")
    return not any(ord(ch) in _TEXT_CONTROLS for ch in decoded)


def claimed(value: str | None) -> str | None:
    """A claimed mimetype, lower-cased with its parameters; None if absent or generic."""
    if value is None:
        return None
    mimetype = value.strip().lower()
    base = mimetype.split(";", 1)[0].strip()
    if not base or base in GENERIC or "/" not in base:
        return None
    base = _ALIASES.get(base, base)
    rest = mimetype.partition(";")[2].strip()
    return f"{base}; {rest}" if rest else base


def base_of(mimetype: str) -> str:
    return mimetype.split(";", 1)[0].strip()


def sendable_mimetype(kind: MessageKind, data: bytes, claim: str | None, field: str) -> str:
    """The mimetype to send ``data`` as a ``kind`` with; InvalidInput naming ``field`` if unfit.

    ``claim`` is the best claim there is (the caller's, else the source's, else
    the file name's), already through :func:`claimed`.
    """
    detected = detect(data)
    if kind is MessageKind.DOCUMENT:
        return claim or detected or DEFAULT_DOCUMENT
    mimetype = _media_mimetype(kind, data, detected, claim, field)
    if kind is MessageKind.STICKER and base_of(mimetype) != STICKER_MIMETYPE:
        raise InvalidInput(
            field,
            f"a sticker must be {STICKER_MIMETYPE} (WhatsApp shows no other), "
            f"and {field} is {base_of(mimetype)}",
        )
    if kind is MessageKind.VOICE:
        return _voice(data, mimetype, field)
    return mimetype


def _media_mimetype(
    kind: MessageKind, data: bytes, detected: str | None, claim: str | None, field: str
) -> str:
    family = _FAMILY[kind]
    found = _in_family(detected, family)
    if found is not None:
        # the claim may say more (codecs=…) about the same type: keep it then
        return claim if claim is not None and base_of(claim) == found else found
    if detected is not None:
        raise InvalidInput(field, f"{field} holds {detected}, which is not {_a(kind)}")
    if looks_like_text(data):
        raise InvalidInput(field, f"{field} holds text, not {_a(kind)}")
    if claim is None:
        raise InvalidInput(
            "media.mimetype",
            f"the type of {field} cannot be told from its bytes; give media.mimetype",
        )
    if not claim.startswith(family):
        raise InvalidInput("media.mimetype", f"{_a(kind)} must be {family}*, not {claim[:60]!r}")
    return claim


def _in_family(detected: str | None, family: str) -> str | None:
    if detected is None:
        return None
    if detected.startswith(family):
        return detected
    other = _CONTAINERS.get(detected)
    return other if other is not None and other.startswith(family) else None


def _voice(data: bytes, mimetype: str, field: str) -> str:
    """Ogg Opus is sent as ``audio/ogg; codecs=opus`` whatever was claimed; nothing else goes."""
    head = data[:SNIFF_BYTES]
    # an Ogg Opus stream starts with a page holding the "OpusHead" header
    if head.startswith(b"OggS") and b"OpusHead" in head:
        return VOICE_MIMETYPE
    found = "Ogg audio in another codec than Opus" if head.startswith(b"OggS") else None
    raise InvalidInput(
        field,
        f"a voice note must be Ogg Opus audio ({VOICE_MIMETYPE}), the only kind WhatsApp "
        f"plays as a voice note, and {field} is {found or base_of(mimetype)}; "
        "convert it, or send it as type audio",
    )


def guess_from_name(filename: str | None) -> str | None:
    if not filename:
        return None
    return mimetypes.guess_type(filename, strict=False)[0]


def default_filename(mimetype: str) -> str:
    """A document's name when nobody gave one: ``file`` with the type's extension."""
    extension = mimetypes.guess_extension(base_of(mimetype), strict=False)
    return "file" + (extension or "")


def _a(kind: MessageKind) -> str:
    name = "voice note" if kind is MessageKind.VOICE else kind.value
    return ("an " if name[0] in "aeiou" else "a ") + name
