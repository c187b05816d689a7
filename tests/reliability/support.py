"""Shared pieces of the reliability tests: the report, store snapshots, foreign writers, and AWS
faults injected through botocore's own event hooks.

Nothing here patches the package: faults reach it the way they reach it in production, as an
HTTP answer from AWS or Schwab, a file it may not read, or another writer acting on the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSResponse

from schwab_tokens import aws
from schwab_tokens.errors import ConfigurationError, LoginRequired
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.stores import store_from_url
from schwab_tokens.stores.s3 import S3Store
from schwab_tokens.stores.secretsmanager import SecretsManagerStore
from schwab_tokens.token import Token
from tests.helpers import RawBody

REPORT_ENV = "RELIABILITY_REPORT"
#: Set by ``make reliability`` (scripts/reliability.py): the soak and the crash runs at the full
#: size its table reports. ``make test`` runs the same tests smaller, to stay under 5 minutes.
FULL = os.environ.get("RELIABILITY_FULL") == "1"
ABSENT = "absent"
NO_BUCKET = "no bucket"


# -- the report ----------------------------------------------------------------------------------
def record(kind: str, **fields: Any) -> None:
    """Append one JSON line to ``$RELIABILITY_REPORT`` (if set) for scripts/reliability.py."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    line = json.dumps({"kind": kind, **fields}, sort_keys=True, default=str) + "\n"
    # One write() on an O_APPEND descriptor: lines from parallel writers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# -- what a store holds --------------------------------------------------------------------------
def new_store(kind: str, request: Any, tmp_path: Path, n: int | str) -> str:
    """A new, empty store of ``kind`` (file, s3, secretsmanager); AWS ones on moto's server."""
    if kind == "file":
        folder = tmp_path / f"store-{n}"
        folder.mkdir()
        return str(folder / "tokens.json")
    request.getfixturevalue("aws_endpoint")
    if kind == "s3":
        return str(request.getfixturevalue("s3_store_url")())
    return str(request.getfixturevalue("sm_store_url")())


def state(url: str) -> str:
    """A digest of the stored bytes and version (``sha256:...@version``), or ABSENT/NO_BUCKET.

    Read in the test process (as full root, through the package's client while no fault hook
    answers reads): the thing compared before and after a run.
    """
    try:
        raw, version, _ = store_from_url(url).read_raw()
    except LoginRequired:
        return ABSENT
    except ConfigurationError as exc:
        if "does not exist" in str(exc) and url.startswith("s3://"):
            return NO_BUCKET
        raise
    return f"sha256:{hashlib.sha256(raw).hexdigest()}@{version}"


def view_state(url: str) -> str:
    """How the access view stands to the stored token: ``matches`` it, is ``older`` (a token the
    store held before; the next run repairs it), ``missing``, or anything else, which is a bug:
    a view newer than the token, or of a token the store never held."""
    from schwab_tokens.access import AccessView

    store = store_from_url(url)
    try:
        view = AccessView.parse(store.view.read_raw().raw, source=store.view.url)
    except (LoginRequired, ConfigurationError):  # none yet, or its bucket is gone too
        return "missing"
    try:
        token = store.read().token
    except (LoginRequired, ConfigurationError):
        return "older"  # the document is gone or broken: whatever the view holds came before
    mirror = AccessView.from_token(token)
    if view == mirror:
        return "matches"
    if view.order() <= mirror.order():
        # Equal: two access tokens issued in the same second (issue times are whole seconds);
        # which came first cannot be told, and the next run must repair it either way.
        return "older"
    return f"WRONG: the view ({view.fingerprint}) is not the stored token ({mirror.fingerprint})"


def stored_token(url: str) -> Token:
    return store_from_url(url).read().token


def newer_document(url: str, emulator: Any, *, expires_in: float | None = None) -> Token:
    """What another writer (schwab-py in a bot, a second refresher) would store: the stored
    token refreshed at the emulator. ``expires_in`` shortens its life (a not-fresh document)."""
    current = stored_token(url)
    oauth = SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url)
    answer = oauth.refresh(current.refresh_token)
    if expires_in is not None:
        answer = {**answer, "expires_in": expires_in}
    return current.refreshed(answer)


_foreign: dict[tuple[str, str | None], Any] = {}


def foreign_client(service: str) -> Any:
    """A boto3 client of its own (same endpoint chain): not ``aws.client``'s, so no hook of ours
    fires on it and the package's cache never sees it. Made once per service and endpoint (a
    new session takes long enough on a busy machine to make a mid-run writer late)."""
    import boto3.session

    key = (service, os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _foreign:
        _foreign[key] = boto3.session.Session().client(service)
    return _foreign[key]


def foreign_write(url: str, raw: bytes) -> None:
    """Store ``raw`` without any condition or lock, as schwab-py's own writer or a person does."""
    store = store_from_url(url)
    if isinstance(store, S3Store):
        foreign_client("s3").put_object(Bucket=store.bucket, Key=store.key, Body=raw)
    elif isinstance(store, SecretsManagerStore):
        # A new version made current, moving the label explicitly: after a label move, moto
        # 5.2's plain put_secret_value leaves two versions labelled AWSCURRENT (AWS moves it).
        sm = foreign_client("secretsmanager")
        stages = sm.describe_secret(SecretId=store.name)["VersionIdsToStages"]
        current = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
        new = sm.put_secret_value(
            SecretId=store.name, SecretString=raw.decode(), VersionStages=["FOREIGN"]
        )["VersionId"]
        sm.update_secret_version_stage(
            SecretId=store.name,
            VersionStage="AWSCURRENT",
            MoveToVersionId=new,
            RemoveFromVersionId=current,
        )
        sm.update_secret_version_stage(
            SecretId=store.name, VersionStage="FOREIGN", RemoveFromVersionId=new
        )
    else:
        Path(url).write_bytes(raw)


def vanish(url: str) -> None:
    """Make the store disappear: the file deleted, the bucket deleted, the secret deleted."""
    store = store_from_url(url)
    if isinstance(store, S3Store):
        s3 = foreign_client("s3")
        listed = s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])
        for item in listed:  # the token and a live holder's lease: a bucket must be empty
            s3.delete_object(Bucket=store.bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=store.bucket)
    elif isinstance(store, SecretsManagerStore):
        foreign_client("secretsmanager").delete_secret(
            SecretId=store.name, ForceDeleteWithoutRecovery=True
        )
    else:
        Path(url).unlink()


def lease_evidence(url: str) -> bool:
    """Whether a lease record is left in the store (S3 sidecar object, Secrets Manager label)."""
    store = store_from_url(url)
    if isinstance(store, S3Store):
        listed = foreign_client("s3").list_objects_v2(Bucket=store.bucket, Prefix=store.lease_key)
        return bool(listed.get("Contents"))
    if isinstance(store, SecretsManagerStore):
        described = foreign_client("secretsmanager").describe_secret(SecretId=store.name)
        stages = described.get("VersionIdsToStages") or {}
        return any(label.startswith("lease.") for labels in stages.values() for label in labels)
    return False  # a flock leaves nothing behind


# -- AWS faults on the wire ----------------------------------------------------------------------
S3_XML = {"Content-Type": "application/xml"}
SM_JSON = {"Content-Type": "application/x-amz-json-1.1"}


def s3_error(status: int, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return status, body, S3_XML


def sm_error(status: int, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"__type": code, "message": message}).encode(), SM_JSON


#: Per store kind, the wire answer of each AWS fault.
ACCESS_DENIED = {
    "s3": s3_error(403, "AccessDenied", "Access Denied"),
    "secretsmanager": sm_error(
        400,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/refresher is not authorized",
    ),
}
THROTTLED = {
    "s3": s3_error(503, "SlowDown", "Please reduce your request rate."),
    "secretsmanager": sm_error(400, "ThrottlingException", "Rate exceeded"),
}
SERVER_ERROR = {
    "s3": s3_error(500, "InternalError", "We encountered an internal error. Please try again."),
    "secretsmanager": sm_error(500, "InternalServiceError", "An internal error occurred"),
}
#: The operation that reads, and the one that writes, the token document.
READ_OP = {"s3": "GetObject", "secretsmanager": "GetSecretValue"}
WRITE_OP = {"s3": "PutObject", "secretsmanager": "PutSecretValue"}
SERVICE = {"s3": "s3", "secretsmanager": "secretsmanager"}


@dataclass
class Hooks:
    """botocore handlers registered on the package's own clients, removed by ``clear``."""

    registered: list[tuple[Any, str, Callable[..., Any]]] = field(default_factory=list)

    def add(self, client: Any, event: str, handler: Callable[..., Any]) -> None:
        client.meta.events.register_first(event, handler)
        self.registered.append((client, event, handler))

    def clear(self) -> None:
        while self.registered:
            client, event, handler = self.registered.pop()
            client.meta.events.unregister(event, handler)

    def _event(self, kind: str, stage: str, operation: str) -> tuple[Any, str]:
        client = aws.client(SERVICE[kind])
        service = client.meta.service_model.service_id.hyphenize()
        return client, f"{stage}.{service}.{operation}"

    def answer(
        self,
        kind: str,
        url: str,
        operation: str,
        reply: tuple[int, bytes, dict[str, str]],
        times: int | None = None,
    ) -> list[int]:
        """Answer ``operation`` on the token document with ``reply`` before it is sent (against
        moto's server nothing reaches it); botocore parses the answer and retries as usual.
        ``times``: only the first so many attempts. Returns a list that grows per answer."""
        answered: list[int] = []
        client, event = self._event(kind, "before-send", operation)
        status, body, headers = reply

        def handler(request: Any, **_: Any) -> AWSResponse | None:
            if not _is_document(kind, url, request.url):
                return None
            if times is not None and len(answered) >= times:
                return None
            answered.append(1)
            return AWSResponse(request.url, status, headers, RawBody(body))

        self.add(client, event, handler)
        return answered

    def lose_write_answer(self, kind: str, url: str) -> list[int]:
        """The write that replaces the document lands, but its answer is lost: the request is
        carried out (by a separate client, exactly as sent) and a 5xx comes back instead, so
        botocore retries a write that already happened. S3: the token ``PutObject``; Secrets
        Manager: the move of ``AWSCURRENT`` (the pending ``PutSecretValue`` is idempotent by
        its ``ClientRequestToken``). Once."""
        done: list[int] = []
        store = store_from_url(url)
        if isinstance(store, S3Store):
            client, event = self._event(kind, "before-send", "PutObject")

            def handler(request: Any, **_: Any) -> AWSResponse | None:
                if done or not _is_document(kind, url, request.url):
                    return None
                done.append(1)
                body = request.body
                if hasattr(body, "read"):
                    position = body.tell()
                    body, _ = body.read(), body.seek(position)
                condition = {}
                for header, name in (("If-Match", "IfMatch"), ("If-None-Match", "IfNoneMatch")):
                    value = request.headers.get(header)
                    if value is not None:
                        text = value.decode() if isinstance(value, bytes) else str(value)
                        condition[name] = text
                foreign_client("s3").put_object(
                    Bucket=store.bucket, Key=store.key, Body=bytes(body), **condition
                )
                status, reply, headers = s3_error(503, "ServiceUnavailable", "Please retry.")
                return AWSResponse(request.url, status, headers, RawBody(reply))

        else:
            client, event = self._event(kind, "before-send", "UpdateSecretVersionStage")

            def handler(request: Any, **_: Any) -> AWSResponse | None:
                body = json.loads(request.body)
                if done or body.get("VersionStage") != "AWSCURRENT":
                    return None
                done.append(1)
                names = ("SecretId", "VersionStage", "MoveToVersionId", "RemoveFromVersionId")
                foreign_client("secretsmanager").update_secret_version_stage(
                    **{name: body[name] for name in names if name in body}
                )
                status, reply, headers = SERVER_ERROR["secretsmanager"]
                return AWSResponse(request.url, status, headers, RawBody(reply))

        self.add(client, event, handler)
        return done

    def before_write(self, kind: str, url: str, action: Callable[[], None]) -> list[int]:
        """Run ``action`` once, just before the package sends the write of the token document
        (after it has read the document, taken the lease and called Schwab)."""
        fired: list[int] = []
        # before-parameter-build: the call's own parameters (Key), before anything is sent.
        client, event = self._event(kind, "before-parameter-build", WRITE_OP[kind])
        store = store_from_url(url)

        def handler(params: dict[str, Any], **_: Any) -> None:
            if fired:
                return
            if isinstance(store, S3Store) and params.get("Key") != store.key:
                return  # the lease object, not the document
            fired.append(1)
            action()

        self.add(client, event, handler)
        return fired


def _is_document(kind: str, url: str, request_url: str) -> bool:
    """Whether an S3 request addresses the token object (not its lease); any SM request does."""
    if kind != "s3":
        return True
    store = store_from_url(url)
    assert isinstance(store, S3Store)
    path = unquote(urlsplit(request_url).path)
    return path.endswith(f"/{store.bucket}/{store.key}") or (
        path == f"/{store.key}" and store.bucket in urlsplit(request_url).netloc
    )


# -- file permissions as root --------------------------------------------------------------------
def unprivileged() -> list[str] | None:
    """A command prefix under which file permissions apply, or None if there is none.

    Root ignores file modes through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH; dropping both from
    the bounding set before exec (util-linux ``setpriv``) gives a root process an ordinary
    user's view of a mode-000 file. Not root: no prefix needed.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def iter_json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue
