"""PNG plots of the recipe reports (matplotlib, no display needed).

Figures are drawn on ``matplotlib.figure.Figure`` objects, which render with
the Agg backend without touching pyplot's global state.
"""

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_relus_per_layer(count, path, budget=None):
    """Bar chart of kept ReLUs per layer against each layer's total.

    Args:
        count: a ``ReLUCount`` (``count_relus`` of the hardened model).
        path: where to write the PNG.
        budget: the ReLU budget, shown in the title.
    """
    rows = list(count.rows)
    positions = range(len(rows))
    fig = Figure(figsize=(max(6.0, 0.35 * len(rows) + 2.0), 4.5))
    ax = fig.subplots()
    ax.bar(positions, [row.total for row in rows], color="#c8d6e5",
           label="total")
    ax.bar(positions, [row.kept for row in rows], color="#1f5f99",
           label="kept ReLUs")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    ax.set_xticks(list(positions))
    ax.set_xticklabels([row.layer for row in rows], rotation=70, ha="right",
                       fontsize=7)
    ax.set_ylabel("ReLU elements per example")
    title = f"kept {count.kept:,} of {count.total:,} ReLUs"
    if budget is not None:
        title += f" (budget {budget:,})"
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_history(history, path, budget=None):
    """Accuracy and ReLU count (or predicted cost) per epoch of a run.

    Args:
        history: ``{metric: [value per epoch]}`` with an ``epoch`` entry
            (0-based) and any of ``accuracy``, ``val_accuracy``,
            ``relu_count`` and ``cost_mb`` / ``cost_ms``.
        path: where to write the PNG.
        budget: the ReLU budget, or a ``CostBudget`` (the right panel then
            shows the predicted cost), drawn as a horizontal line.
    """
    epochs = [int(epoch) + 1 for epoch in history["epoch"]]
    fig = Figure(figsize=(10, 4))
    acc_ax, budget_ax = fig.subplots(1, 2)
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        if key in history:
            acc_ax.plot(epochs, history[key], marker=".", label=label)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("top-1 accuracy")
    acc_ax.legend()
    acc_ax.grid(alpha=0.3)
    if budget is None or isinstance(budget, int):
        key, ylabel = "relu_count", "ReLU count"
        label, line = "kept ReLUs (end of epoch)", budget
        line_label = None if budget is None else f"budget {budget:,}"
    else:
        megabytes = budget.metric == "bytes"
        key = "cost_mb" if megabytes else "cost_ms"
        ylabel = (f"predicted {'MB' if megabytes else 'ms'} per inference "
                  f"({budget.protocol})")
        line = budget.amount / 1e6 if megabytes else budget.amount
        label, line_label = "predicted cost (end of epoch)", f"budget {budget}"
    if key in history:
        values = [float("nan") if v is None else v for v in history[key]]
        budget_ax.plot(epochs, values, marker=".", label=label)
    if line is not None:
        budget_ax.axhline(line, color="red", linestyle="--",
                          label=line_label)
    budget_ax.set_ylim(bottom=0)
    budget_ax.set_xlabel("epoch")
    budget_ax.set_ylabel(ylabel)
    for ax in (acc_ax, budget_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    budget_ax.legend()
    budget_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_search(trials, path, budget):
    """Validation accuracy against ReLU count of every search trial; the
    rejected (over-budget) candidates are marked on the x axis."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    done = [t for t in trials if t["status"] == "COMPLETED"]
    rejected = [t for t in trials if t["rejected"] and t["relus"] is not None]
    ax.scatter([t["relus"] for t in done], [t["val_accuracy"] for t in done],
               label="trained candidates")
    ax.scatter([t["relus"] for t in rejected], [0] * len(rejected),
               marker="x", color="red", label="rejected before training")
    ax.axvline(budget, color="red", linestyle="--",
               label=f"budget {budget:,}")
    ax.set_xlabel("ReLU count")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
