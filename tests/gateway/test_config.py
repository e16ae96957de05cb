"""Configuration: defaults for the demo, TOML, environment on top, fail closed on typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, describe_settings, load_config
from gateway.errors import ConfigError


def test_defaults_need_nothing() -> None:
    hdab = load_config(service="hdab", env={})
    node = load_config(service="node", env={})
    assert (hdab.port, node.port) == (8700, 8710)
    assert hdab.server.host == "127.0.0.1"
    assert hdab.audit_database.endswith("hdab-audit.sqlite")
    assert hdab.audit_origin == "hdab-demo:audit"
    assert node.node.disclosure_floor == 5
    assert node.auth.clients is None  # no keys known: every write refused


def test_toml_then_env(tmp_path: Path) -> None:
    path = tmp_path / "ehds.toml"
    path.write_text(
        """
data_dir = "/var/lib/ehds"
[server]
port = 9000
max_body_bytes = 65536
[audit]
database = "postgresql+psycopg://db/audit"
[hdab]
id = "hdab-fi"
country = "FI"
[node]
site = "hus"
[node.fhir]
kind = "export"
base_url = "https://fhir.example"
[node.flower]
mode = "connect"
"""
    )
    hdab = load_config(path, service="hdab", env={"EHDS_SERVER_PORT": "9100"})
    assert hdab.port == 9100 and hdab.server.max_body_bytes == 65536
    assert hdab.hdab.id == "hdab-fi" and hdab.audit_origin == "hdab-fi:audit"
    node = load_config(
        path, service="node", env={"EHDS_NODE_FLOWER_COMMAND": "flower-supernode,--insecure"}
    )
    assert node.node.site == "hus" and node.node.fhir.kind == "export"
    assert node.node.flower.command == ("flower-supernode", "--insecure")
    assert node.data_dir == Path("/var/lib/ehds")
    env_file = load_config(service="hdab", env={"EHDS_CONFIG": str(path)})
    assert env_file.hdab.id == "hdab-fi"


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        ("[server]\nprot = 1\n", {}),
        ("[sever]\nport = 1\n", {}),
        ("[server]\nport = 'x'\n", {}),
        ("[server]\nport = 70000\n", {}),
        ("[server]\nmax_body_bytes = 10\n", {}),
        ("[node]\ndisclosure_floor = 2\n", {}),
        ("[node.fhir]\nkind = 'ftp'\n", {}),
        ("[node.flower]\nmode = 'run'\n", {}),
        ("[server\n", {}),
        ("", {"EHDS_SERVER_ACCESS_LOG": "perhaps"}),
        ("", {"EHDS_AUTH_CLOCK_SKEW_SECONDS": "3600"}),
    ],
)
def test_bad_settings_refused(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError):
        load_config(path, service="node", env=env)


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.toml", service="hdab", env={})


def test_every_setting_is_documented() -> None:
    docs = list(describe_settings())
    assert all(d.doc for d in docs)
    assert len({d.env for d in docs}) == len(docs)
    ops = Path(__file__).resolve().parents[2] / "docs" / "operators.md"
    if ops.exists():
        text = ops.read_text()
        missing = [d.env for d in docs if d.env not in text]
        assert not missing, f"docs/operators.md lacks {missing}"
    assert isinstance(load_config(service="hdab", env={}), GatewayConfig)
