"""Service configuration: a TOML file, then ``EHDS_*`` environment variables on top.

Every setting has a documented default that is enough for the demo (loopback,
SQLite under ``data_dir``, keys generated on first start), so
``ehds hdab serve`` and ``ehds node serve`` start with no file at all.
Production overrides what it needs. Unknown keys and malformed values are
refused at start-up (fail closed: a typo must not silently fall back to a
default). The names map one to one: ``[node.fhir] path`` is
``EHDS_NODE_FHIR_PATH``; ``data_dir`` is ``EHDS_DATA_DIR``. The full reference
is ``docs/operators.md``; ``describe_settings()`` generates it.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from gateway.errors import ConfigError

Service = Literal["hdab", "node"]
ENV_PREFIX = "EHDS_"
DEFAULT_PORTS: dict[str, int] = {"hdab": 8700, "node": 8710}


@dataclass(frozen=True)
class ServerSettings:
    """Where the service listens and how much it accepts."""

    host: str = field(default="127.0.0.1", metadata={"doc": "Bind address (loopback by default)."})
    port: int = field(default=0, metadata={"doc": "TCP port; 0 = 8700 (hdab) / 8710 (node)."})
    max_body_bytes: int = field(
        default=1_048_576, metadata={"doc": "Largest accepted request body; larger gets 413."}
    )
    shutdown_timeout: float = field(
        default=10.0, metadata={"doc": "Seconds in-flight requests get on SIGTERM/SIGINT."}
    )
    access_log: bool = field(default=True, metadata={"doc": "JSON access log lines on stderr."})


@dataclass(frozen=True)
class AuthSettings:
    """Who may write: requests signed with keys listed in ``clients``."""

    clients: Path | None = field(
        default=None,
        metadata={
            "doc": "JWKS file of known client public keys (each with ehds_org and ehds_roles); "
            "empty = <data_dir>/<service>-clients.jwks.json if present, else every signed route is refused."
        },
    )
    clock_skew_seconds: int = field(
        default=30, metadata={"doc": "Allowed difference between the signed time and now."}
    )
    replay_cache_size: int = field(
        default=100_000, metadata={"doc": "Nonces remembered within the time window."}
    )


@dataclass(frozen=True)
class AuditSettings:
    """The service's own Merkle audit log."""

    database: str = field(
        default="",
        metadata={
            "doc": "SQLite path or SQLAlchemy URL; empty = <data_dir>/<service>-audit.sqlite."
        },
    )
    origin: str = field(
        default="", metadata={"doc": "Log identity in checkpoints; empty = '<org>:audit'."}
    )
    signing_key: Path | None = field(
        default=None,
        metadata={
            "doc": "Private JWK that signs events and checkpoints; empty = <data_dir>/keys/<service>.jwk."
        },
    )
    witness_key: Path | None = field(
        default=None,
        metadata={
            "doc": "Private Ed25519 JWK of this organisation's witness (cosigns other logs); "
            "empty = <data_dir>/keys/<service>-witness.jwk."
        },
    )
    witness_logs: Path | None = field(
        default=None,
        metadata={
            "doc": "Logs this witness cosigns: a file of C2SP verifier keys (vkeys), one per line, "
            "key name = the log's origin; empty = none."
        },
    )
    witnesses: Path | None = field(
        default=None,
        metadata={
            "doc": "Witnesses this log asks for cosignatures: a file of '<vkey> <url>' lines; "
            "empty = none."
        },
    )


@dataclass(frozen=True)
class HdabSettings:
    """The health data access body this service runs for."""

    id: str = field(default="hdab-demo", metadata={"doc": "HDAB identifier (iss of permits)."})
    country: str = field(default="EU", metadata={"doc": "ISO 3166 country code of the HDAB."})
    database: str = field(
        default="",
        metadata={"doc": "Applications/permits store; empty = <data_dir>/hdab.sqlite."},
    )
    signing_key: Path | None = field(
        default=None,
        metadata={"doc": "Private JWK signing permits and status lists; empty = the audit key."},
    )
    status_list_refresh_seconds: int = field(
        default=900,
        metadata={
            "doc": "Re-sign and publish the status list this often, so data holders never hold "
            "one older than their max age (default 3600 s) and fail closed."
        },
    )


@dataclass(frozen=True)
class FhirSettings:
    """Where the hospital's FHIR data comes from."""

    kind: str = field(
        default="ndjson",
        metadata={"doc": "ndjson | bundle | search | export (network kinds need base_url)."},
    )
    path: Path | None = field(
        default=None, metadata={"doc": "File or folder for ndjson/bundle sources."}
    )
    base_url: str = field(default="", metadata={"doc": "FHIR base URL for search/export sources."})
    # ---- search/export: the gateway keeps a local snapshot in sync (gateway.fhir_sync)
    types: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Resource types to pull (export: all the server has; search: required "
            "or every type the CapabilityStatement lists)."
        },
    )
    sync_interval_seconds: int = field(
        default=900, metadata={"doc": "Pull changes this often (0: only at start and before jobs)."}
    )
    sync_before_job: bool = field(
        default=True, metadata={"doc": "Pull changes before each dry run or job."}
    )
    snapshot_dir: Path | None = field(
        default=None, metadata={"doc": "Local snapshot folder (default <data_dir>/fhir-snapshot)."}
    )
    client_id: str = field(default="", metadata={"doc": "SMART Backend Services client id."})
    key: Path | None = field(
        default=None, metadata={"doc": "SMART client private JWK (RS384/ES384)."}
    )
    token_url: str = field(
        default="", metadata={"doc": "SMART token endpoint (default: discovered)."}
    )
    poll_floor_seconds: float = field(
        default=1.0, metadata={"doc": "Never poll an $export status faster than this."}
    )
    sync_wait_seconds: float = field(
        default=120.0,
        metadata={
            "doc": "A job waits this long for its pre-job sync, then reads the snapshot it has."
        },
    )


@dataclass(frozen=True)
class FlowerSettings:
    """The Flower SuperNode next to this gateway."""

    mode: str = field(
        default="off",
        metadata={
            "doc": "off | connect (report a SuperNode run elsewhere) | run (start it as a child)."
        },
    )
    superlink: str = field(
        default="127.0.0.1:9092", metadata={"doc": "SuperLink Fleet API address host:port."}
    )
    command: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Command line of the SuperNode when mode = run (comma-separated in env)."},
    )


@dataclass(frozen=True)
class NodeSettings:
    """The hospital gateway (data holder) this service runs for."""

    site: str = field(default="hospital-demo", metadata={"doc": "Data holder identifier."})
    disclosure_floor: int = field(
        default=5,
        metadata={"doc": "Smallest count ever returned (at least 5); smaller is suppressed."},
    )
    opt_out: Path | None = field(
        default=None,
        metadata={"doc": "Opt-out registry (Consent bundle or id list); applied before counting."},
    )
    dry_run_roles: tuple[str, ...] = field(
        default=("operator",),
        metadata={
            "doc": "Roles that may run feature-spec dry runs. Only the hospital's operators by "
            "default: arbitrary aggregate queries by outside users invite differencing attacks."
        },
    )
    fhir: FhirSettings = field(default_factory=FhirSettings)
    flower: FlowerSettings = field(default_factory=FlowerSettings)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one service process needs; immutable once loaded."""

    service: str = "hdab"
    data_dir: Path = field(
        default=Path(".ehds"), metadata={"doc": "Where databases and generated keys live."}
    )
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    hdab: HdabSettings = field(default_factory=HdabSettings)
    node: NodeSettings = field(default_factory=NodeSettings)

    # ---- resolved values (defaults that depend on other settings)
    @property
    def port(self) -> int:
        return self.server.port or DEFAULT_PORTS.get(self.service, 8700)

    @property
    def org(self) -> str:
        return self.hdab.id if self.service == "hdab" else self.node.site

    @property
    def clients_file(self) -> Path | None:
        """``auth.clients``, else ``<data_dir>/<service>-clients.jwks.json`` if it exists."""
        if self.auth.clients is not None:
            return self.auth.clients
        default = self.data_dir / f"{self.service}-clients.jwks.json"
        return default if default.exists() else None

    @property
    def audit_database(self) -> str:
        return self.audit.database or str(self.data_dir / f"{self.service}-audit.sqlite")

    @property
    def audit_origin(self) -> str:
        return self.audit.origin or f"{self.org}:audit"

    @property
    def audit_signing_key(self) -> Path:
        return self.audit.signing_key or self.data_dir / "keys" / f"{self.service}.jwk"

    @property
    def audit_witness_key(self) -> Path:
        return self.audit.witness_key or self.data_dir / "keys" / f"{self.service}-witness.jwk"

    @property
    def hdab_database(self) -> str:
        return self.hdab.database or str(self.data_dir / "hdab.sqlite")

    @property
    def hdab_signing_key(self) -> Path:
        return self.hdab.signing_key or self.audit_signing_key


T = TypeVar("T")
_SECTIONS_BY_SERVICE: dict[str, frozenset[str]] = {
    "hdab": frozenset({"server", "auth", "audit", "hdab"}),
    "node": frozenset({"server", "auth", "audit", "node"}),
}


def _is_settings(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Turn a TOML or environment value into the declared type, or refuse it."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{where}: expected a boolean")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path")
        return Path(value).expanduser()
    if origin is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(f"{where}: expected a list of strings")
        if not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(items)
    raise ConfigError(f"{where}: unsupported setting type")  # pragma: no cover


def _build(cls: type[T], table: Mapping[str, Any], env: Mapping[str, str], prefix: str) -> T:
    """One settings dataclass from its TOML table, environment variables taking precedence."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in [{prefix.lower() or 'top level'}]: {', '.join(unknown)}"
        )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        name = f"{prefix}_{f.name}" if prefix else f.name
        if _is_settings(tp):
            sub = table.get(f.name, {})
            if not isinstance(sub, Mapping):
                raise ConfigError(f"[{name.lower()}] must be a table")
            kwargs[f.name] = _build(tp, sub, env, name)
            continue
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            kwargs[f.name] = _coerce(env[env_name], tp, env_name)
        elif f.name in table:
            kwargs[f.name] = _coerce(table[f.name], tp, name.replace("_", ".", 1).lower())
    return cls(**kwargs)


def load_config(
    path: Path | str | None = None,
    *,
    service: Service = "hdab",
    env: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Read ``path`` (optional) and the environment into a checked :class:`GatewayConfig`.

    ``EHDS_CONFIG`` names the file when ``path`` is not given. Relative paths
    in the file stay relative to the working directory, as operators expect
    from a command line.
    """
    import os

    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get("EHDS_CONFIG"):
        path = environ["EHDS_CONFIG"]
    table: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file is not valid TOML: {exc}") from None
    allowed = _SECTIONS_BY_SERVICE[service] | {"data_dir"}
    # A shared file may hold both services' sections; each takes only its own.
    table = {k: v for k, v in table.items() if k in allowed or k not in {"hdab", "node"}}
    table.setdefault("service", service)
    if table["service"] != service:
        raise ConfigError("'service' in the file does not match the command")
    config = _build(
        GatewayConfig, table, {k: v for k, v in environ.items() if k != "EHDS_SERVICE"}, ""
    )
    validate(config)
    return config


def validate(config: GatewayConfig) -> None:
    """Range checks that the types alone cannot express."""
    s = config.server
    if not 0 <= s.port <= 65535:
        raise ConfigError("server.port must be between 0 and 65535")
    if not 1024 <= s.max_body_bytes <= 64 * 1024 * 1024:
        raise ConfigError("server.max_body_bytes must be between 1 KiB and 64 MiB")
    if s.shutdown_timeout < 0:
        raise ConfigError("server.shutdown_timeout must not be negative")
    a = config.auth
    if not 1 <= a.clock_skew_seconds <= 300:
        raise ConfigError("auth.clock_skew_seconds must be between 1 and 300")
    if a.replay_cache_size < 1000:
        raise ConfigError("auth.replay_cache_size must be at least 1000")
    if not 1 <= config.hdab.status_list_refresh_seconds <= 86_400:
        raise ConfigError("hdab.status_list_refresh_seconds must be between 1 and 86400")
    if config.node.disclosure_floor < 5:
        raise ConfigError("node.disclosure_floor must be at least 5")
    bad_roles = set(config.node.dry_run_roles) - {"operator", "data_user", "auditor"}
    if bad_roles or not config.node.dry_run_roles:
        raise ConfigError(
            "node.dry_run_roles must be a non-empty list of operator, data_user, auditor"
        )
    if config.node.fhir.kind not in {"ndjson", "bundle", "search", "export"}:
        raise ConfigError("node.fhir.kind must be one of ndjson, bundle, search, export")
    f = config.node.fhir
    if f.kind in {"search", "export"} and not f.base_url:
        raise ConfigError(f"node.fhir.base_url is required when node.fhir.kind = {f.kind}")
    if min(f.sync_interval_seconds, f.poll_floor_seconds, f.sync_wait_seconds) < 0:
        raise ConfigError(
            "node.fhir.sync_interval_seconds, poll_floor_seconds and sync_wait_seconds must be >= 0"
        )
    if bool(f.client_id) != (f.key is not None):
        raise ConfigError("node.fhir.client_id and node.fhir.key go together")
    if config.node.flower.mode not in {"off", "connect", "run"}:
        raise ConfigError("node.flower.mode must be one of off, connect, run")
    if config.node.flower.mode == "run" and not config.node.flower.command:
        raise ConfigError("node.flower.command is required when node.flower.mode = run")


@dataclass(frozen=True)
class SettingDoc:
    toml: str
    env: str
    default: str
    doc: str


def describe_settings(cls: type = GatewayConfig, prefix: str = "") -> Iterator[SettingDoc]:
    """Every setting with its TOML key, environment variable, default and meaning."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "service":
            continue
        tp = hints[f.name]
        name = f"{prefix}_{f.name}" if prefix else f.name
        if _is_settings(tp):
            yield from describe_settings(tp, name)
            continue
        default = f.default if f.default is not dataclasses.MISSING else ""
        toml = f"[{prefix.lower().replace('_', '.')}] {f.name}" if prefix else f.name
        yield SettingDoc(
            toml, ENV_PREFIX + name.upper(), _show(default), str(f.metadata.get("doc", ""))
        )


def _show(value: object) -> str:
    if value is None or value == "" or value == ():
        return "(none)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)


__all__ = [
    "AuditSettings",
    "AuthSettings",
    "FhirSettings",
    "FlowerSettings",
    "GatewayConfig",
    "HdabSettings",
    "NodeSettings",
    "ServerSettings",
    "describe_settings",
    "load_config",
    "validate",
]
