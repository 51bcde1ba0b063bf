"""The paper's Table V ablation on any export: CMTNet trained on subsets of its four tasks.

Tasks: 1 lung segmentation, 2 disease segmentation, 3 healthy/unhealthy, 4 COVID/other disease.
Every subset contains task 4 (the COVID output being compared): {4}, {3,4}, {1,3,4}, {2,3,4},
{1,2,3,4}. Each subset is an ordinary training run in ``<out>/tasks_<subset>/`` (so it can be
inspected or resumed), scored on the export's test split.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TASK_DIAGNOSIS, TrainConfig, parse_tasks
from training.report import write_table
from training.train import ProgressCallback, train

log = logging.getLogger(__name__)

ABLATION_SUBSETS: tuple[tuple[int, ...], ...] = ((4,), (3, 4), (1, 3, 4), (2, 3, 4), (1, 2, 3, 4))
TABLE_COLUMNS = (
    "tasks",
    "covid_sensitivity_at_90_specificity",
    "covid_sensitivity_at_99_specificity",
    "covid_auc",
    "covid_accuracy",
    "covid_eer",
    "healthy_accuracy",
    "lung_dice",
    "disease_dice",
)


def run_ablation(
    base: TrainConfig,
    out_dir: str | Path,
    subsets: Sequence[Sequence[int]] = ABLATION_SUBSETS,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Train one CMTNet per task subset (same data, seed and settings) and tabulate test metrics.

    Writes ``ablation.csv`` and ``ablation.md`` to ``out_dir``; returns the table rows.
    """
    out_dir = Path(out_dir)
    rows = []
    for subset in subsets:
        tasks = parse_tasks(list(subset))
        if TASK_DIAGNOSIS not in tasks:
            log.warning("subset %s has no COVID task (4); its COVID columns will be empty", tasks)
        name = "-".join(str(t) for t in tasks)
        config = dataclasses.replace(
            base,
            run_dir=str(out_dir / f"tasks_{name}"),
            model=dataclasses.replace(base.model, tasks=tasks),
            evaluate_test=True,
        )
        log.info("ablation: training tasks {%s}", ",".join(map(str, tasks)))
        result = train(config, progress=progress)
        rows.append({"tasks": "{" + ",".join(map(str, tasks)) + "}", **{c: result.metrics.get(c) for c in TABLE_COLUMNS if c != "tasks"}})
    write_table(rows, TABLE_COLUMNS, out_dir / "ablation.csv", out_dir / "ablation.md", "Task ablation (paper Table V), COVID on the test split")
    return rows
