"""The sizes every store keeps at most, and the encoders that refuse more before any call.

One limit per kind of thing stored, the same in every backend (docs/architecture.md, "The store
protocol"), set by the least roomy backend that holds it:

- a token document: ``MAX_DOCUMENT_BYTES`` (64 KiB, ``token.py``'s limit for reading one), which
  is also the most a Secrets Manager ``SecretString`` may hold (65,536 bytes);
- an access view: ``MAX_VIEW_BYTES``, the 4 KB of an SSM standard parameter's value (the view
  of a Secrets Manager store is one);
- the notes: ``MAX_NOTES_BYTES``, what a Secrets Manager staging label can carry.

Each encoder serializes, measures and raises before a store is called, so a refused write loses
nothing: the document, view or notes stored before stay as they were. A file or S3 object could
hold more, but a document that one store keeps and another refuses could not move between them,
and a file store would keep what its own reader then refuses.
"""

from __future__ import annotations

from typing import Any

from .. import strictjson
from ..access import AccessView
from ..errors import InvalidTokenDocument, NotesTooLarge
from ..token import MAX_DOCUMENT_BYTES, Token

#: The notes (``notes.py``: a login time, an account fingerprint, a few marks) as JSON bytes, in
#: every store. Secrets Manager keeps them in a staging label of at most 256 characters,
#: ``notes.<sequence, up to 12 digits>.<base64>``, which leaves 237 characters: 177 bytes.
MAX_NOTES_BYTES = 176
#: An access view as JSON bytes, in every store: an SSM standard parameter's value holds 4 KB.
#: A view of the longest token fields ``token.py`` accepts is about 2.5 KB.
MAX_VIEW_BYTES = 4096

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_NOTES_BYTES",
    "MAX_VIEW_BYTES",
    "encode_document",
    "encode_notes",
    "encode_view",
]


def encode_document(token: Token, url: str) -> bytes:
    """``token`` as the store at ``url`` keeps it.

    Raises ``InvalidTokenDocument``, before any store is called, when it is over
    ``MAX_DOCUMENT_BYTES`` (extra fields kept from a document written by another tool can make
    it so).
    """
    return _within(token.to_json(), MAX_DOCUMENT_BYTES, "this token document", url)


def encode_notes(notes: dict[str, Any]) -> bytes:
    """The notes as stored.

    Raises ``NotesTooLarge``, before any store is called, when they are over
    ``MAX_NOTES_BYTES``.
    """
    raw = strictjson.dumps(notes)
    if len(raw) > MAX_NOTES_BYTES:
        raise NotesTooLarge(
            f"notes of {len(raw)} bytes exceed the {MAX_NOTES_BYTES} every store can keep; "
            "nothing was written (please report it)"
        )
    return raw


def encode_view(view: AccessView, url: str) -> bytes:
    """``view`` as stored at ``url``.

    Raises ``InvalidTokenDocument``, before any store is called, when it is over
    ``MAX_VIEW_BYTES``.
    """
    return _within(view.to_json(), MAX_VIEW_BYTES, "this access view", url, " for one")


def _within(raw: bytes, limit: int, what: str, url: str, per: str = "") -> bytes:
    if len(raw) > limit:
        raise InvalidTokenDocument(
            f"{what} is {len(raw)} bytes, more than any store keeps{per} ({limit}); "
            f"nothing was written to {url}, which holds what it held"
        )
    return raw
