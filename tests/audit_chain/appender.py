"""A separate process that appends events (crash and concurrency tests run it).

    python -m tests.audit_chain.appender URL LOG_ID KEYS_JSON COUNT BATCH WORKER
KEYS_JSON holds {"log": <signer json>, "actor": <signer json>}. COUNT 0 = forever.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from audit_chain import EventSigner
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink


def main(argv: list[str]) -> int:
    url, log_id, keys_path, count_text, batch_text, worker = argv
    keys = json.loads(Path(keys_path).read_text())
    log_key = EventSigner(keys["log"]["org"], keys["log"]["jwk"])
    actor = EventSigner(keys["actor"]["org"], keys["actor"]["jwk"])
    count, batch = int(count_text), int(batch_text)
    with AuditLog.open(url, log_id=log_id, signer=log_key) as log:
        sink = SignedLogSink(log, actor)
        done = 0
        for round_ in itertools.count():
            if count and done >= count:
                break
            n = batch if not count else min(batch, count - done)
            with sink.batch():
                for i in range(n):
                    sink.record(
                        "training.round",
                        subject={"job": f"job-{worker}", "site": f"w{worker}"},
                        details={"round": round_, "rows": i},
                    )
            done += n
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
