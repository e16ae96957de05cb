"""The Flower app a coordinator submits with ``flwr run``, and the digest a permit pins.

The app holds no code: a ``pyproject.toml`` naming this project's installed
ServerApp and ClientApp plus a README. Its run config (the job file) differs per
run, but its manifest (:mod:`federation.app_trust`) does not, so
:func:`released_app` is what an applicant puts in ``processing.app`` and what
every site checks. ``flwr run`` is pointed at a generated folder, not at the
repository: Flower 1.42 would migrate (and comment out) the repository's
``[tool.flwr.federations]`` section.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from federation.app_trust import (
    CLIENTAPP_REF,
    AppManifest,
    clientapp_version,
    manifest_from_files,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVERAPP_REF = "federation.server_app:app"
README = b"Generated Flower app for an EHDS training job.\n"


def _project_app() -> dict[str, object]:
    path = PROJECT_ROOT / "pyproject.toml"
    if not path.exists():  # an installed gateway: the references are this package's own
        return {}
    with path.open("rb") as fh:
        app = tomllib.load(fh).get("tool", {}).get("flwr", {}).get("app", {})
    return app if isinstance(app, dict) else {}


def app_files(job_file: str = "", rounds: int = 3) -> dict[str, bytes]:
    """The app's files as ``flwr build`` sees them: ``{relative path: content}``."""
    app = _project_app()
    components = app.get("components", {})
    components = components if isinstance(components, dict) else {}
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        'name = "ehds-federation"',
        'version = "1.0.0"',
        'dependencies = ["flwr>=1.42,<1.43"]',
        "",
        "[tool.hatch.build.targets.wheel]",
        'packages = ["."]',
        "",
        "[tool.flwr.app]",
        f'publisher = "{app.get("publisher", "ehds-gateway")}"',
        "",
        "[tool.flwr.app.components]",
        f'serverapp = "{components.get("serverapp", SERVERAPP_REF)}"',
        f'clientapp = "{components.get("clientapp", CLIENTAPP_REF)}"',
        "",
        "[tool.flwr.app.config]",
        f"num-server-rounds = {int(rounds)}",
        f'job-file = "{job_file}"',
    ]
    return {"pyproject.toml": ("\n".join(lines) + "\n").encode(), "README.md": README}


def write_app(out: Path, job_file: str, rounds: int = 3) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in app_files(job_file, rounds).items():
        (out / name).write_bytes(content)
    return out


def released_manifest() -> AppManifest:
    return manifest_from_files(app_files())


def released_app() -> dict[str, str]:
    """``processing.app`` of a permit for this project's app and installed ClientApp."""
    manifest = released_manifest()
    return {
        "digest": manifest.digest,
        "clientapp": manifest.clientapp,
        "clientapp_version": clientapp_version(),
    }


__all__ = ["app_files", "released_app", "released_manifest", "write_app"]
