"""The main job's outputs: results.json, PNG figures and report.md.

Every number in the report is read from the results dict the run computed.
Published claims appear only in columns and fields labelled "claimed".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from learning.config import ModelConfig
from learning.store import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

FIGURES = {
    "barriers": "barrier_matrix.png",
    "diagram": "persistence_diagram.png",
    "fit": "gap_vs_persistence.png",
}


def write_report(results: dict[str, Any], out: Path, cache: Path) -> None:
    """Write results.json, the figures and report.md into `out`."""
    figures: dict[str, str | None] = {
        "barriers": _plot_barriers(results, out / FIGURES["barriers"]),
        "diagram": _plot_diagram(results, out / FIGURES["diagram"], cache),
        "fit": _plot_fit(results, out / FIGURES["fit"]),
    }
    results["figures"] = figures
    atomic_write_json(out / "results.json", results)
    atomic_write_bytes(out / "report.md", render_markdown(results).encode())
    written = sum(name is not None for name in figures.values())
    logger.info("wrote results.json, report.md and %d figures to %s", written, out)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Return (quantity, measured, claimed, reading) rows for the summary table.

    The reading is the first word of the verdict computed by the analysis
    (consistent, unresolved, not consistent, not testable), or empty.
    """
    homotopy, topo = results["homotopy"], results["topology"]
    laws = results["functor_laws"]["functor"]["laws"].values()
    checked = sum(entry["checked"] for entry in laws)
    failed = sum(entry["failed"] for entry in laws)
    law_text = (
        f"{checked - failed}/{checked} equations hold"
        if checked
        else "not checked: no run has 3 or more checkpoints"
    )
    drawn = results["functor_laws"].get("drawn")
    if drawn is not None:
        drawn_checked = sum(e["checked"] for e in drawn["laws"].values())
        drawn_failed = sum(e["failed"] for e in drawn["laws"].values())
        law_text += f"; on drawn pairs {drawn_checked - drawn_failed}/{drawn_checked}"
    rows = [
        ("runs (diverged)", f"{results['n_runs']} ({results['n_diverged']})", "", ""),
        ("L functor laws", law_text, "", ""),
    ]
    if homotopy.get("status") == "computed":
        sizes = [s["size"] for s in homotopy["class_stats"]]
        within = homotopy["gaps"]["within_class"]
        between = homotopy["gaps"]["between_class"]
        verdicts = homotopy["claims"]
        rows += [
            (
                f"homotopy classes (tau={homotopy['tau']})",
                f"{len(sizes)}, sizes {sizes}",
                "7 (of 100 runs)",
                "",
            ),
            (
                "within-class test-accuracy gap, mean (points)",
                _fmt(within.get("mean_points"), 3),
                f"<= {verdicts['within_class']['claimed_at_most_points']}",
                _reading(verdicts["within_class"]["verdict"]),
            ),
            (
                "between-class test-accuracy gap, mean (points)",
                _fmt(between.get("mean_points"), 3),
                f"> {verdicts['between_class']['claimed_over_points']}",
                _reading(verdicts["between_class"]["verdict"]),
            ),
        ]
        aligned = homotopy.get("modulo_permutations", {})
        if aligned.get("status") == "computed":
            aligned_sizes = [s["size"] for s in aligned["class_stats"]]
            rows.append(
                (
                    f"classes modulo permutations (tau={homotopy['tau']})",
                    f"{len(aligned_sizes)}, sizes {aligned_sizes}",
                    "",
                    "",
                )
            )
    fit = topo["fit"]
    rows.append(
        (
            "R^2 of gap on total persistence",
            f"{_fmt(fit.get('r2'))} (n={fit.get('n')}"
            + (", pooled over optimizers)" if _n_optimizers(results) > 1 else ")"),
            str(topo["claim"]["claimed_r2"]),
            "",
        )
    )
    fisher = results.get("fisher", {})
    if fisher.get("status") == "computed":
        rows.append(
            (
                "shortest Fisher path per initialization",
                ", ".join(
                    f"{k}: {v}" for k, v in fisher["shortest_by_optimizer"].items()
                ),
                "natural gradient",
                _reading(fisher["reading"]),
            )
        )
    elif fisher:
        status = str(fisher.get("status", "not computed"))
        rows.append(
            (
                "shortest Fisher path per initialization",
                status.split(":", 1)[0],
                "natural gradient",
                "",
            )
        )
    return rows


def _n_optimizers(results: dict[str, Any]) -> int:
    return len(results["config"]["train"]["optimizers"])


def _reading(verdict: str) -> str:
    return verdict.split(":", 1)[0]


def render_markdown(results: dict[str, Any]) -> str:
    """Return the readable report for a results dict."""
    config, data, env = results["config"], results["data"], results["environment"]
    lines = [
        f"# categorical-invariants: main job `{config['name']}`",
        "",
        (
            f"Data: {data['name']}, {data['n_train']} training and {data['n_test']} test"
            f" examples (probe set: {data['probe_size']} test inputs). Model:"
            f" {config['model']['kind']}, hidden width {config['model']['hidden']}."
            f" Device {env['device']}, torch {env['torch']}, code {env['git_commit'] or 'unknown'}."
            f" Finished {env['finished_at']}, {results['timings_seconds']['total']:.0f} s in all."
        ),
        "",
        _training_setup(config),
        "",
        "Claimed values come from " + results["claims"]["source"] + " and were measured"
        " there on other setups (stated beside each); every other number was computed"
        " by this run.",
        "",
        "## Summary",
        "",
        "| quantity | measured here | claimed | reading |",
        "|---|---|---|---|",
    ]
    lines += [f"| {q} | {m} | {c} | {r} |" for q, m, c, r in summary_rows(results)]
    lines += _runs_section(results) + _functor_section(results)
    lines += _homotopy_section(results) + _topology_section(results)
    lines += _fisher_section(results)
    lines += ["", "## Timings (seconds)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in results["timings_seconds"].items()]
    return "\n".join(lines) + "\n"


def _training_setup(config: dict[str, Any]) -> str:
    """Describe the architecture, the optimizers and the sweep in one paragraph."""
    model, train = config["model"], config["train"]
    kind = model["kind"]
    if kind == "mlp":
        shape = f"{model['depth']} hidden layers of {model['hidden']} units"
    elif kind in ("cnn", "cnn2d"):
        shape = f"{model['channels']} channels, feature layer of {model['hidden']}"
    else:
        shape = f"width {model['width']}"
    norm = "BatchNorm" if ModelConfig(**model).has_batch_norm else "no BatchNorm"
    optimizers = []
    for opt in train["optimizers"]:
        text = f"{opt['name']} at lr {opt['lr']}"
        if opt["name"] in ("sgd", "rmsprop") and opt["momentum"]:
            text += f", momentum {opt['momentum']}"
            text += " (Nesterov)" if opt["nesterov"] else ""
        if opt["weight_decay"]:
            text += f", weight decay {opt['weight_decay']}"
        if opt["schedule"] != "constant":
            text += f", {opt['schedule']} schedule"
        if opt["name"] == "natural_gradient":
            text += f", {opt['fisher_kind']} Fisher"
        optimizers.append(text)
    return (
        f"Training: {kind} ({shape}, {norm}),"
        f" {train['epochs']} epochs in batches of {train['batch_size']},"
        f" a checkpoint every {train['checkpoint_every']} steps; init seeds"
        f" {train['init_seeds']} x data-order seeds {train['data_seeds']} x"
        f" optimizers: {'; '.join(optimizers)}."
    )


def _fisher_section(results: dict[str, Any]) -> list[str]:
    f = results.get("fisher")
    if f is None:
        return []
    lines = ["", "## Fisher lengths of the trajectories", ""]
    if f.get("status") != "computed":
        return lines + [f.get("status", "not computed")]
    lines += [
        (
            f"Length = {f['definition']}; {f['kind']} empirical Fisher on"
            f" {f['n_examples']} training examples, checkpoints every"
            f" {f['checkpoint_every']} steps (lengths depend on that spacing)."
            f" Claimed: {f['claim']['claimed']}. Reading: {f['reading']}."
        ),
    ]
    if f["excluded_runs"]:
        lines.append(
            "Left out, because their per-example gradients are not finite:"
            f" {', '.join(f['excluded_runs'])}."
        )
    lines += [
        "",
        "| init seed | run | optimizer | Fisher length | Euclidean length |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(f["runs"], key=lambda r: (r["init_seed"], r["fisher_length"])):
        lines.append(
            f"| {row['init_seed']} | {row['run']} | {row['optimizer_label']}"
            f" | {_fmt(row['fisher_length'], 4)} | {_fmt(row['euclidean_length'], 3)} |"
        )
    return lines


def _optimizer_cell(run: dict[str, Any]) -> str:
    """Return the run's optimizer label, with its learning rate unless shown."""
    label: str = run["optimizer_label"]
    if "lr=" in label:
        return label
    return f"{label} lr={run['optimizer']['lr']}"


def _runs_section(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Runs",
        "",
        "| run | optimizer | status | train acc | test acc | gap | train loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        status = r["status"]
        if r["diverged_at_step"] is not None:
            status += f" at step {r['diverged_at_step']}"
        lines.append(
            f"| {r['name']} | {_optimizer_cell(r)} | {status}"
            f" | {_pct(r['train_accuracy'])} | {_pct(r['test_accuracy'])}"
            f" | {_pct(r['generalization_gap'])} | {_fmt(r['train_loss'], 4)} |"
        )
    return lines


def _segments_text(functor_laws: dict[str, Any]) -> str:
    """Describe how many segments each trajectory was cut into."""
    counts = sorted(set(functor_laws["segments_per_run"]))
    requested = functor_laws["segments_requested"]
    if not counts:
        return "no segments"
    text = f"{counts[0]} segments"
    if len(counts) > 1:
        text = f"{counts[0]} to {counts[-1]} segments"
    if counts[0] < requested:
        text += (
            f" ({requested} were requested, but a trajectory with c checkpoints"
            " has at most c - 1)"
        )
    return text


def _functor_section(results: dict[str, Any]) -> list[str]:
    f = results["functor_laws"]
    tol = f["rep_tolerance"]
    lines = [
        "",
        "## The learning functor L: Param -> Rep",
        "",
        (
            f"L sends a checkpoint to its penultimate features on {f['probe_size']} probe"
            " inputs, and a trajectory to the features at each checkpoint. Each of"
            f" {f['runs_checked']} trajectories was cut into {_segments_text(f)};"
            f" Rep compares features with rtol={tol['rtol']}, atol={tol['atol']}."
        ),
        "",
        "| category or functor | law | checked | failed |",
        "|---|---|---|---|",
    ]
    parts = [p for p in ("functor", "param", "rep", "drawn") if p in f]
    for part in parts:
        label = "L, drawn pairs" if part == "drawn" else part
        for law, counts in f[part]["laws"].items():
            lines.append(
                f"| {label} | {law} | {counts['checked']} | {counts['failed']} |"
            )
    if "drawn" in f:
        lines.append(
            f"\nThe rows 'L, drawn pairs' come from {f['drawn']['examples']}"
            " composable pairs of recorded sub-trajectories drawn by Hypothesis"
            " (derandomized, so the same run draws the same pairs)."
        )
    for part in parts:
        for failure in f[part]["failures"]:
            lines.append(f"\n- {part}: {failure}")
    return lines


def _homotopy_section(results: dict[str, Any]) -> list[str]:
    h = results["homotopy"]
    lines = ["", "## Homotopy classes", "", h["definition"] + ".", ""]
    if h.get("status") != "computed":
        return lines + [h.get("status", "not computed")]
    if h["excluded_runs"]:
        lines.append(f"Left out (diverged): {', '.join(h['excluded_runs'])}.\n")
    lines += [
        f"tau = {h['tau']}, {h['n_alpha']} points per line.",
        "",
        "| class | size | test acc mean | std | 95% CI (Wilson, n_test) | members |",
        "|---|---|---|---|---|---|",
    ]
    for k, (stats, members) in enumerate(zip(h["class_stats"], h["classes"])):
        ci = stats["test_accuracy_ci95"]
        lines.append(
            f"| {k} | {stats['size']} | {_pct(stats['test_accuracy_mean'])}"
            f" | {_pct(stats['test_accuracy_std'])} | [{_pct(ci['low'])}, {_pct(ci['high'])}]"
            f" | {', '.join(members)} |"
        )
    lines += [
        "",
        (
            "| pairs | count | mean gap | min | max | median 95% half-width | claimed |"
            " verdict |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, claim_key, claimed in (
        ("within_class", "within_class", "<= {} points"),
        ("between_class", "between_class", "> {} points"),
    ):
        g = h["gaps"][key]
        c = h["claims"][claim_key]
        bound = c.get("claimed_at_most_points", c.get("claimed_over_points"))
        lines.append(
            f"| {key.replace('_', ' ')} | {g['pairs']} | {_fmt(g.get('mean_points'), 2)}"
            f" | {_fmt(g.get('min_points'), 2)} | {_fmt(g.get('max_points'), 2)}"
            f" | {_fmt(g.get('median_ci95_half_width_points'), 2)}"
            f" | {claimed.format(bound)} | {c['verdict']} |"
        )
    lines += [
        "",
        (
            f"Claimed setup: {h['claims']['setup_claimed']}. Gaps are |difference in test"
            " accuracy| in points over pairs of runs."
        ),
        "",
        "Classes at other thresholds:",
        "",
    ]
    lines += _sweep_table(h["tau_sweep"])
    if results.get("figures", {}).get("barriers"):
        lines += ["", f"![barrier matrix]({FIGURES['barriers']})"]
    return lines + _aligned_section(h)


def _sweep_table(sweep: list[dict[str, Any]]) -> list[str]:
    """Render the classes and gaps at each threshold of a tau sweep."""
    lines = [
        "| tau | classes | sizes | within-class mean gap | between-class mean gap |",
        "|---|---|---|---|---|",
    ]
    for entry in sweep:
        lines.append(
            f"| {entry['tau']} | {entry['n_classes']} | {entry['class_sizes']}"
            f" | {_fmt(entry['within_class_mean_points'], 2)}"
            f" | {_fmt(entry['between_class_mean_points'], 2)} |"
        )
    return lines


def _aligned_section(h: dict[str, Any]) -> list[str]:
    """Render the classes after weight matching, when the job computed them."""
    a = h.get("modulo_permutations")
    if a is None:
        return []
    lines = ["", "### Modulo permutations of hidden units", "", a["definition"] + "."]
    if a.get("status") != "computed":
        return [*lines, "", a.get("status", "not computed")]
    n = len(a["barriers"])
    before = np.array(h["barriers"])
    after = np.array(a["barriers"])
    upper = np.triu_indices(n, k=1)
    lines += [
        "",
        (
            f"Over the {len(upper[0])} pairs, matching brought b to a mean"
            f" {_fmt(a['mean_distance_ratio'], 3)} of its distance to a. Barriers"
            f" (nats): median {_fmt(float(np.median(before[upper])), 3)} before"
            f" matching and {_fmt(float(np.median(after[upper])), 3)} after; largest"
            f" {_fmt(float(before[upper].max()), 3)} and"
            f" {_fmt(float(after[upper].max()), 3)}."
            f" {int((after[upper] > before[upper]).sum())} of the pairs have a higher"
            " barrier after matching than before: matching minimizes the distance"
            " between the weights, not the barrier, so these classes need not be"
            " coarser than those above."
        ),
        "",
    ]
    lines += _sweep_table(a["tau_sweep"])
    verdicts = a["claims"]
    lines += [
        "",
        (
            f"At tau = {h['tau']}: within-class mean gap"
            f" {_fmt(a['gaps']['within_class'].get('mean_points'), 2)} points"
            f" ({verdicts['within_class']['verdict']}); between-class mean gap"
            f" {_fmt(a['gaps']['between_class'].get('mean_points'), 2)} points"
            f" ({verdicts['between_class']['verdict']})."
        ),
    ]
    return lines


def _topology_section(results: dict[str, Any]) -> list[str]:
    t = results["topology"]
    fit = t["fit"]
    lines = [
        "",
        "## Persistent homology of the loss landscape",
        "",
        t["definition"] + f". Grid {t['resolution']} x {t['resolution']}, span"
        f" {t['span']}, loss on {t['n_examples']} training examples, direction seed"
        f" {t['direction_seed']}.",
        "",
        (
            "| run | total persistence | finite bars: count, total | generalization gap"
            " | loss at centre |"
        ),
        "|---|---|---|---|---|",
    ]
    for e in t["runs"]:
        lines.append(
            f"| {e['run']} | {_fmt(e['total_persistence'], 4)}"
            f" | {e.get('finite_bars', 'n/a')}, {_fmt(e.get('total_persistence_finite'), 4)}"
            f" | {_pct(e['generalization_gap'])} | {_fmt(e['loss_at_centre'], 4)} |"
        )
    lines += [
        "",
        (
            "| fit of the gap on | n | R^2 measured here | bootstrap 95% interval | slope"
            " | p-value | claimed R^2 |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    fits = [
        (
            "total persistence, all runs",
            fit,
            f"{t['claim']['claimed_r2']} ({t['claim']['setup_claimed']})",
        )
    ]
    fits.append(("finite bars only, all runs", t["fit_finite_bars_only"], ""))
    fits += [
        (f"total persistence, {name} runs only", sub, "")
        for name, sub in t["fit_by_optimizer"].items()
    ]
    for label, f, claimed in fits:
        ci = (
            f"[{_fmt(f.get('r2_ci_low'))}, {_fmt(f.get('r2_ci_high'))}]"
            if f.get("r2_ci_low") is not None
            else "n/a"
        )
        lines.append(
            f"| {label} | {f.get('n')} | {_fmt(f.get('r2'))} | {ci}"
            f" | {_fmt(f.get('slope'), 4)} | {_fmt(f.get('p_value'), 4)} | {claimed} |"
        )
    lines.append(
        "\nThe per-optimizer rows show how much of the pooled R^2 comes from the"
        " difference between optimizers rather than from variation within one."
    )
    n_fitted = sum(e["total_persistence"] is not None for e in t["runs"])
    if n_fitted and t["runs_without_finite_bars"] == n_fitted:
        lines.append(
            "\nEvery landscape here has a single basin: no finite bar in H0 or H1."
            " Total persistence then equals the rise of the loss across the grid"
            " (largest minus smallest loss), so the fit above measures how steep"
            " the basin is, not a richer topology."
        )
    for label, f, _ in fits:
        if f.get("reason"):
            lines.append(f"\nR^2 for {label}: not computed, {f['reason']}.")
    if t["excluded_runs"]:
        lines.append(f"\nLeft out: {', '.join(t['excluded_runs'])}.")
    for key, caption in (
        ("diagram", "persistence diagram"),
        ("fit", "gap against total persistence"),
    ):
        if results.get("figures", {}).get(key):
            lines += ["", f"![{caption}]({FIGURES[key]})"]
    return lines


# ---------------------------------------------------------------- figures


def _plot_barriers(results: dict[str, Any], path: Path) -> str | None:
    h = results["homotopy"]
    if h.get("status") != "computed":
        return None
    barriers = np.array(h["barriers"])
    names = h["runs"]
    order = [names.index(m) for members in h["classes"] for m in members]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(barriers[np.ix_(order, order)], cmap="viridis")
    fig.colorbar(image, ax=ax, label="loss barrier (nats)")
    start = 0
    for members in h["classes"]:
        size = len(members)
        ax.add_patch(
            Rectangle(
                (start - 0.5, start - 0.5), size, size, fill=False, ec="red", lw=2
            )
        )
        start += size
    labels = [names[i] for i in order]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_title(f"Loss barriers, homotopy classes at tau = {h['tau']} (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _plot_diagram(results: dict[str, Any], path: Path, cache: Path) -> str | None:
    from learning.analyses import landscape_grid

    entries = [e for e in results["topology"]["runs"] if e["diagram"] is not None]
    if not entries:
        return None
    entry = entries[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    grid = landscape_grid(cache, entry["run"])
    span = results["topology"]["span"]
    if grid is not None:
        image = left.imshow(
            grid.T, origin="lower", extent=(-span, span, -span, span), cmap="magma"
        )
        fig.colorbar(image, ax=left, label="training loss (nats)")
    left.set_title(f"Training loss, {entry['run']}", fontsize=10)
    left.set_xlabel("a (direction 1)")
    left.set_ylabel("b (direction 2)")

    bars = entry["diagram"]["bars"]
    # Essential bars are drawn where total persistence closes them: at the
    # largest loss on the grid.
    closing = entry["loss_max"]
    births = [b for dim in bars.values() for b, _ in dim]
    bottom = min([*births, 0.0])
    for dim, pairs in sorted(bars.items()):
        xs = [b for b, _ in pairs]
        ys = [closing if d is None else d for _, d in pairs]
        right.scatter(xs, ys, label=f"H{dim}", s=20)
    right.plot([bottom, closing], [bottom, closing], color="grey", lw=1)
    right.axhline(closing, color="grey", ls="--", lw=1)
    right.set_xlabel("birth (loss)")
    right.set_ylabel("death (loss); dashed: essential, closed at grid max")
    right.set_title(f"Sublevel persistence, total {entry['total_persistence']:.4f}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _plot_fit(results: dict[str, Any], path: Path) -> str | None:
    t = results["topology"]
    points = [
        (e["total_persistence"], e["generalization_gap"], e["run"])
        for e in t["runs"]
        if e["total_persistence"] is not None
    ]
    if not points:
        return None
    optimizer_of = {r["name"]: r["optimizer_label"] for r in results["runs"]}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for optimizer in sorted({optimizer_of[name] for _, _, name in points}):
        xs = [x for x, _, name in points if optimizer_of[name] == optimizer]
        ys = [100 * y for _, y, name in points if optimizer_of[name] == optimizer]
        ax.scatter(xs, ys, label=optimizer)
    fit = t["fit"]
    if fit.get("r2") is not None:
        line = np.linspace(min(p[0] for p in points), max(p[0] for p in points), 50)
        ax.plot(
            line,
            100 * (fit["slope"] * line + fit["intercept"]),
            color="black",
            label=f"least squares, R^2 = {fit['r2']:.3f} (n = {fit['n']})",
        )
    ax.set_xlabel("total persistence of the loss landscape")
    ax.set_ylabel("generalization gap (points)")
    ax.set_title("Gap against total persistence (measured)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name
