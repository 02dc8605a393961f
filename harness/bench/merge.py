"""Several runs on one device (e.g. bench-cuda.json + bench-cuda-autotune.json) as one results document."""

from __future__ import annotations

from harness.config.vocabulary import MODES

_KEY = ("shape", "dtype", "source", "backend", "mode", "tokens")


def merge_runs(docs: list[dict]) -> dict:
    """One document: points and items of every run (a point measured twice: the ok one, else the later run's),
    configuration lists united, environment and ceilings of the first run, and `runs` describing each run."""
    first = docs[0]
    points: dict[tuple, dict] = {}
    for doc in docs:
        for point in doc["points"]:
            key = tuple(point[k] for k in _KEY)
            if key not in points or point["status"] == "ok" or points[key]["status"] != "ok":
                points[key] = point
    config = dict(first["config"])
    config["shapes"] = _union([s for doc in docs for s in doc["config"]["shapes"]], key=lambda s: s["name"])
    config["dtypes"] = _union([d for doc in docs for d in doc["config"]["dtypes"]])
    config["tokens"] = sorted({t for doc in docs for t in doc["config"]["tokens"]})
    config["modes"] = [m for m in MODES if any(m in doc["config"]["modes"] for doc in docs)]
    config["budget_s"] = sum(doc["config"]["budget_s"] for doc in docs)
    return {**first, "config": config, "points": list(points.values()),
            "items": [item for doc in docs for item in doc["items"]],
            "ceilings": next((doc["ceilings"] for doc in docs if doc.get("ceilings")), None),
            "complete": all(doc["complete"] for doc in docs),
            "runs": [{k: v for k, v in doc.items() if k not in ("points", "items")} for doc in docs]}


def _union(values: list, key=lambda value: value) -> list:
    """Values in first-seen order, without repeats (by key)."""
    seen, out = set(), []
    for value in values:
        if key(value) not in seen:
            seen.add(key(value))
            out.append(value)
    return out
