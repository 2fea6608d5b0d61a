"""The funnel for one user of a run: `recjax recommend --workdir DIR --user ID --funnel`.

The funnel serves from bundles only (`recjax.serving.funnel`), so a run is exported first
(to a temporary bundle, with its ranker): what is printed is exactly what `recjax serve`
of that bundle would answer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from recjax.export.exporter import export_run
from recjax.export.ranker import run_ranker_export
from recjax.serving.funnel import Funnel, FunnelConfig
from recjax.serving.recommender import ServingConfig
from recjax.serving.requests import RecommendRequest


def run_funnel(
    workdir: str | Path, user: str, *, k: int = 10, config: FunnelConfig | None = None
) -> dict[str, Any]:
    """The funnel's response (`Funnel.recommend`) for raw `user` after all their events."""
    if run_ranker_export(workdir) is None:
        raise FileNotFoundError(
            f"{workdir} has no ranker: run `recjax train-ranker --workdir {workdir}` first"
        )
    with tempfile.TemporaryDirectory() as scratch:
        bundle = export_run(workdir, Path(scratch) / "bundle", say=lambda _: None)
        funnel = Funnel(bundle, config or FunnelConfig(), ServingConfig(cache_seconds=0))
        funnel.recommend(RecommendRequest(user=user, k=k))  # Compiles; not the timed one.
        return funnel.recommend(RecommendRequest(user=user, k=k))


def response_lines(response: dict[str, Any]) -> list[str]:
    """A readable report: each stage's candidates and latency, then the list with every
    stage's scores."""
    lines = [
        f"# funnel for user {response['user']} ({response['path']}; "
        f"{response['model_version']}): {len(response['items'])} items",
        f"{'stage':<18}{'candidates':>11}{'ms':>9}",
    ]
    lines += [
        f"{stage['name']:<18}{stage['candidates']:>11,}{stage['latency_ms']:>9.2f}"
        for stage in response["stages"]
    ]
    lines.append(f"{'total':<18}{'':>11}{response['latency_ms']:>9.2f}")
    if not response["items"]:
        return lines
    names = list(response["items"][0]["scores"])
    header = "".join(f"{name[:15]:>16}" for name in names)
    lines.append(f"{'rank':>4}  {'item':<8}{header}  {'category':<12}text")
    for rank, item in enumerate(response["items"], start=1):
        scores = "".join(f"{item['scores'][name]:>16.4f}" for name in names)
        lines.append(f"{rank:>4}  {item['item']:<8}{scores}  {item['category']:<12}{item['text']}")
    return lines
