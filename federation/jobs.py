"""Building a :class:`~federation.job.TrainingJob` for sites on this machine.

What ``ehds demo`` (and the benchmark) need: given each site's FHIR folder,
the feature spec document and the permit material, produce the job with one
:class:`~federation.job.SiteConfig` per site (FHIR source, ``PermitGuard``
authorizer with persistent state, audit sink). Real sites write their own
site configuration; this is the single-machine shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from federation.adapters import spec_feature_names, spec_hash_of
from federation.factory import FactoryRef
from federation.job import BoosterParams, SiteConfig, TrainingJob


def jsonl_audit(path: Path) -> FactoryRef:
    return FactoryRef("federation.adapters:jsonl_sink", {"path": str(path)})


def signed_audit(db_url: str, key_path: Path) -> FactoryRef:
    return FactoryRef(
        "federation.adapters:signed_log_sink", {"db_url": db_url, "key_path": str(key_path)}
    )


def local_fhir_job(
    *,
    job_id: str,
    workdir: str | Path,
    site_sources: Mapping[str, str | Path],
    spec: Mapping[str, Any],
    permit_token: str,
    user_key: str | Path,
    trust_list: str | Path,
    status_list: str | Path,
    site_audit: Mapping[str, FactoryRef] | None = None,
    coordinator_audit: FactoryRef | None = None,
    site_opt_out: Mapping[str, str | Path] | None = None,
    strategy: Literal["bagging", "cyclic"] = "bagging",
    rounds: int = 5,
    min_sites: int = 2,
    params: BoosterParams | None = None,
    eval_fraction: float = 0.2,
) -> TrainingJob:
    """A job whose sites read FHIR from local folders; audit defaults to JSON lines in ``workdir``."""
    base = Path(workdir)
    sites = []
    for site_id, source in site_sources.items():
        data_kwargs: dict[str, Any] = {
            "path": str(source),
            "cache_dir": str(base / "sites" / site_id / "features"),
        }
        if site_opt_out and site_id in site_opt_out:
            data_kwargs["opt_out"] = str(site_opt_out[site_id])
        sites.append(
            SiteConfig(
                site_id=site_id,
                data=FactoryRef("federation.adapters:fhir_source", data_kwargs),
                authorizer=FactoryRef(
                    "federation.adapters:permit_guard",
                    {
                        "holder": site_id,
                        "trust_list": str(trust_list),
                        "status_list": str(status_list),
                        "state_db": str(base / "sites" / site_id / "guard.db"),
                    },
                ),
                audit=(site_audit or {}).get(site_id)
                or jsonl_audit(base / "sites" / site_id / "audit.jsonl"),
            )
        )
    return TrainingJob(
        job_id=job_id,
        permit_token=permit_token,
        request_signer=FactoryRef(
            "federation.adapters:request_signer",
            {"key_path": str(user_key), "permit_token": permit_token},
        ),
        spec=dict(spec),
        spec_hash=spec_hash_of(spec),
        feature_names=spec_feature_names(spec),
        output_dir=str(base / "model"),
        audit=coordinator_audit or jsonl_audit(base / "coordinator-audit.jsonl"),
        sites=tuple(sites),
        strategy=strategy,
        rounds=rounds,
        min_sites=min_sites,
        params=params or BoosterParams(),
        eval_fraction=eval_fraction,
    )
