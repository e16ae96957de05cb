"""Which Flower app a deployment run brings to a site, and whether the site may serve it.

In Flower's deployment engine the app bundle (FAB) comes from the data user's
side with ``flwr run``. A hospital gateway never imports code from it (see
:mod:`federation.site_executor`); it reads the bundle only to decide whether
the run is the one the permit authorises. These functions are pure over the
FAB bytes:

- :func:`read_fab` builds the app's :class:`AppManifest`: the ServerApp and
  ClientApp references and the sha256 of every file it ships. ``pyproject.toml``
  is left out (its run config, e.g. the job file, changes per run; the parts
  that name code are the references) and so is Flower's ``.info/`` metadata.
  The manifest's canonical hash is the *app digest* a permit pins
  (``processing.app.digest``): equal apps give equal digests, whatever the run.
- :func:`check_fab` refuses a bundle naming another ClientApp than the
  gateway's installed one, or shipping any file Python could import (an app
  folder goes first on Flower's import path, so a shipped
  ``federation/client_app.py`` would shadow ours).

Every refusal is an :class:`AppTrustError` whose ``reason`` is a stable code.
"""

from __future__ import annotations

import importlib.metadata
import io
import re
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from federation.errors import AccessDeniedError
from trust import canonical_hash, sha256_tag

#: The only ClientApp a gateway runs: its own, installed with the gateway.
CLIENTAPP_REF = "federation.client_app:app"
MANIFEST_FORMAT = "ehds-app-manifest/1"
CONFIG_FILE = "pyproject.toml"
INFO_DIR = ".info/"
MAX_FAB_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 512
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
#: Files an app may ship that no Python import can load (an allowlist: anything else is code).
DATA_SUFFIXES = frozenset({".md", ".txt", ".rst", ".toml", ".json", ".jsonl", ".yaml", ".yml"})
DATA_NAMES = frozenset({"LICENSE"})
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}:[A-Za-z_][A-Za-z0-9_]{0,63}$")


class AppTrustError(AccessDeniedError):
    """The run's app is not one this site may serve; ``reason`` says which check failed."""

    code = "FED_APP_UNTRUSTED"
    reason = "app_malformed"


def clientapp_version() -> str:
    """Version of the installed gateway, i.e. of its ClientApp (what a permit expects)."""
    try:
        return importlib.metadata.version("ehds-gateway")
    except importlib.metadata.PackageNotFoundError:  # a source tree without metadata
        return "0+unknown"


@dataclass(frozen=True)
class AppManifest:
    """The code-relevant content of a Flower app: references and shipped files' hashes."""

    clientapp: str
    serverapp: str
    files: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "clientapp": self.clientapp,
            "serverapp": self.serverapp,
            "files": dict(sorted(self.files.items())),
        }

    @property
    def digest(self) -> str:
        """The app digest: RFC 8785 canonical JSON of the manifest, hashed (``trust``)."""
        return canonical_hash(self.document())

    def observation(self) -> dict[str, str]:
        """What the site tells its permit guard about the run (see ``permits.app_pin``)."""
        return {
            "digest": self.digest,
            "clientapp": self.clientapp,
            "clientapp_version": clientapp_version(),
        }


def _components(pyproject: bytes) -> tuple[str, str]:
    try:
        config = tomllib.loads(pyproject.decode("utf-8"))
        components = config["tool"]["flwr"]["app"]["components"]
        client, server = components["clientapp"], components["serverapp"]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise AppTrustError("the app's pyproject.toml names no components") from exc
    if not (isinstance(client, str) and isinstance(server, str)):
        raise AppTrustError("the app's components are not strings")
    if not (_REF.match(client) and _REF.match(server)):
        raise AppTrustError("the app's components are not module:attribute references")
    return client, server


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name or ".." in path.parts:
        raise AppTrustError("the app bundle holds an unsafe file name")
    return name


def manifest_from_files(files: Mapping[str, bytes]) -> AppManifest:
    """The manifest of an app given as ``{relative path: content}`` (what ``flwr build`` packs)."""
    pyproject = files.get(CONFIG_FILE)
    if pyproject is None:
        raise AppTrustError("the app has no pyproject.toml")
    client, server = _components(pyproject)
    hashes = {
        _safe_name(name): sha256_tag(content)
        for name, content in files.items()
        if name != CONFIG_FILE and not name.startswith(INFO_DIR)
    }
    return AppManifest(clientapp=client, serverapp=server, files=hashes)


def read_fab(content: bytes) -> AppManifest:
    """Parse FAB bytes (a zip) within size limits into its manifest; AppTrustError otherwise."""
    if len(content) > MAX_FAB_BYTES:
        raise AppTrustError("the app bundle is too large")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            infos = [i for i in fab.infolist() if not i.is_dir()]
            if len(infos) > MAX_MEMBERS:
                raise AppTrustError("the app bundle holds too many files")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise AppTrustError("the app bundle unpacks too large")
            names = [_safe_name(i.filename) for i in infos]
            if len(set(names)) != len(names):
                raise AppTrustError("the app bundle names a file twice")
            files = {i.filename: fab.read(i) for i in infos}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise AppTrustError("the app bundle is not a readable zip") from exc
    return manifest_from_files(files)


def is_code(path: str) -> bool:
    """Whether a shipped file could be imported or executed (anything not plainly data)."""
    pure = PurePosixPath(path)
    if path.startswith(INFO_DIR):  # Flower's own metadata (CONTENT manifest, signatures)
        return pure.suffix.lower() not in DATA_SUFFIXES and pure.suffix != ""
    return pure.suffix.lower() not in DATA_SUFFIXES and pure.name not in DATA_NAMES


def check_fab(manifest: AppManifest, installed: str = CLIENTAPP_REF) -> None:
    """Refuse an app that names another ClientApp or ships importable code (first failure)."""
    if manifest.clientapp != installed:
        raise AppTrustError(
            "the app names another ClientApp than the gateway's", reason="app_reference_mismatch"
        )
    if any(is_code(path) for path in manifest.files):
        raise AppTrustError("the app ships code", reason="app_ships_code")


__all__ = [
    "CLIENTAPP_REF",
    "AppManifest",
    "AppTrustError",
    "check_fab",
    "clientapp_version",
    "is_code",
    "manifest_from_files",
    "read_fab",
]
