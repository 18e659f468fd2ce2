"""How fast does a dry run go? Wall time of simulated plans on the virtual clock.

The [core] goal: the 30-minute default plan simulates in well under a second. Also shown,
to see how it scales: the same plan evaluated every second instead of every 30 s, and a
rollout that moves eight targets together. Figures are printed, never asserted.

    python bench/simulate_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from canary import logs
from canary.simulate import simulate
from config.scenario import load_scenario
from config.spec import RolloutDocument, load_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "examples" / "lambda-alias.yaml"
SCENARIOS = ROOT / "config" / "examples" / "scenarios"


def variant(base: RolloutDocument, **spec: Any) -> RolloutDocument:
    data = base.to_data()
    data["spec"].update(spec)
    return RolloutDocument.model_validate(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    logs.configure(level="warning", fmt="console")

    base = load_file(EXAMPLE)
    analysis = base.to_data()["spec"]["analysis"]
    targets = [
        {"kind": "lambda-alias", "function": f"fn-{i}", "alias": "live", "version": "42"}
        for i in range(8)
    ]
    cases = [
        ("default plan, 30s interval", base, "healthy.yaml"),
        ("default plan, error spike at 25%", base, "error-spike-at-25.yaml"),
        (
            "default plan, 1s interval",
            variant(base, analysis=analysis | {"interval": "1s"}),
            "healthy.yaml",
        ),
        ("8 targets, 30s interval", variant(base, targets=targets), "healthy.yaml"),
    ]
    print(f"{'case':<36} {'simulated':>10} {'events':>7} {'median wall':>12} {'max wall':>9}")
    for name, document, scenario in cases:
        script = load_scenario(SCENARIOS / scenario)
        walls = []
        result = None
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = asyncio.run(simulate(document, script))
            walls.append(time.perf_counter() - started)
        assert result is not None
        print(
            f"{name:<36} {result.virtual_seconds / 60:>7.1f} min {len(result.events):>7} "
            f"{statistics.median(walls) * 1000:>9.1f} ms {max(walls) * 1000:>6.1f} ms"
        )


if __name__ == "__main__":
    main()
