"""The report's tables as a small neutral model, and its markdown, CSV and LaTeX renderings.

Metric values are percentages (the traces hold fractions in [0, 1]); a cell is the mean over a
group's seeds ± the sample standard deviation (ddof = 1), with the number of seeds in an ``n`` column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field

import polars as pl

from mmrebal.report.runs import TRAINING_KEYS, RunGroup, group_order, unimodal_label

# ``--metric`` names -> metrics.parquet columns, and how the papers head them.
METRIC_COLUMNS = {"acc": "acc", "map": "map", "f1": "macro_f1", "macro_f1": "macro_f1"}
METRIC_TITLES = {"acc": "Acc", "map": "MAP", "macro_f1": "Macro-F1"}
DASH = "–"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None with a single value
    n: int
    digits: int = 2

    def text(self) -> str:
        if self.std is None or math.isnan(self.std):
            return f"{self.mean:.{self.digits}f}"
        return f"{self.mean:.{self.digits}f} ± {self.std:.{self.digits}f}"

    @property
    def rounded(self) -> float:
        return round(self.mean, self.digits)


@dataclass
class Cell:
    text: str = DASH
    stat: Stat | None = None
    rank: int | None = None  # 1 = best in its column (bold), 2 = second (underlined)
    below_unimodal: bool = False  # mean under the best unimodal row of its column (†)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    # LaTeX only: a spanning title over each run of columns after the first, e.g. the dataset over
    # its metrics, with ``short`` headers under it; and row indices that get a rule above them.
    spans: list[tuple[str, list[str]]] = field(default_factory=list)
    rule_before: set[int] = field(default_factory=set)


def stat_of(values: list[float], digits: int = 2) -> Stat | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return None
    series = pl.Series(clean, dtype=pl.Float64)
    std = series.std() if len(clean) > 1 else None
    return Stat(float(series.mean()), None if std is None else float(std), len(clean), digits)


def metric_stats(group: RunGroup, split: str, metrics: list[str]) -> dict[str, dict[str, Stat]]:
    """``scope -> metric column -> Stat`` (percent) over the group's selected ``split`` rows."""
    frames = [
        f for f in (run.selected_metrics(split).select("scope", *metrics) for run in group.runs) if f.height
    ]
    out: dict[str, dict[str, Stat]] = {}
    if not frames:
        return out
    rows = pl.concat(frames, how="vertical_relaxed")
    scopes = rows["scope"].unique(maintain_order=True).to_list()
    if group.unimodal_modality:  # its other heads are never trained: chance level, not results
        scopes = [s for s in scopes if s in ("fused", group.unimodal_modality)]
    for scope in scopes:
        scoped = rows.filter(pl.col("scope") == scope)
        per_metric = {m: stat_of([100.0 * v for v in scoped[m].to_list() if v is not None]) for m in metrics}
        out[scope] = {m: s for m, s in per_metric.items() if s is not None}
    return out


def main_table(
    groups: list[RunGroup],
    split: str,
    metrics: list[str],
    references: dict[str, dict[str, dict[str, Stat]]] | None = None,
) -> Table:
    """Rows = sampler/method (unimodal rows on top), columns = dataset x metric of the fused scope.

    A ``unimodal`` group contributes one row per modality it scored ("Unimodal (audio)");
    ``references`` (label -> dataset -> metric -> Stat, e.g. the unimodal ensemble) join those rows.
    """
    datasets = sorted({g.dataset for g in groups})
    stats = {id(g): metric_stats(g, split, metrics) for g in groups}
    unimodal: dict[str, dict[str, dict[str, Stat]]] = {}
    multimodal: dict[str, dict[str, dict[str, Stat]]] = {}
    for g in sorted(groups, key=group_order):
        scopes = stats[id(g)]
        if g.method == "unimodal":
            for scope in sorted(s for s in scopes if s != "fused") or ["fused"]:
                label = unimodal_label(g, scope)
                unimodal.setdefault(label, {})[g.dataset] = scopes.get(scope, {})
        else:
            multimodal.setdefault(g.label, {})[g.dataset] = scopes.get("fused", {})
    unimodal.update(references or {})
    header = ["Method"]
    metric_cols: list[int] = []
    for d in datasets:
        header.append(f"{d} n")
        for m in metrics:
            metric_cols.append(len(header))
            header.append(f"{d} {METRIC_TITLES[m]}")
    rows: list[list[Cell]] = []
    for label, by_dataset in [*unimodal.items(), *multimodal.items()]:
        row = [Cell(label)]
        for d in datasets:
            scoped = by_dataset.get(d, {})
            n = max((s.n for s in scoped.values()), default=0)
            row.append(Cell(str(n)) if d in by_dataset else Cell())
            for m in metrics:
                s = scoped.get(m)
                row.append(Cell(s.text(), s) if s else Cell())
        rows.append(row)
    _rank_metric_columns(rows, metric_cols, len(unimodal))
    notes = [
        f"{split} split, checkpoint selected on validation; percent, mean ± std over seeds (n seeds).",
        "**bold** best, <u>underlined</u> second per column"
        + ("; † below the best unimodal row of that column." if unimodal else "."),
        training_note(groups),
    ]
    spans = [(d, ["n"] + [METRIC_TITLES[m] for m in metrics]) for d in datasets]
    rule = {len(unimodal)} if unimodal and multimodal else set()
    return Table("Main results", header, rows, notes, spans, rule)


def _setting(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_setting(v)}" for k, v in sorted(value.items())) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def training_note(groups: list[RunGroup]) -> str:
    """The training settings shared by every group, and the names of those that differ between groups,
    so that no table compares methods under different optimisers without saying so."""
    values = {k: {_setting(g.ran_with["training"].get(k)) for g in groups} for k in TRAINING_KEYS}
    shared = ", ".join(f"{k}={next(iter(v))}" for k, v in values.items() if len(v) == 1)
    differing = [k for k, v in values.items() if len(v) > 1]
    note = f"Trained by every group with {shared}." if shared else ""
    if differing:
        note += f" Differs between groups: {', '.join(differing)} (see Configurations)."
    return note.strip()


def config_table(groups: list[RunGroup]) -> Table:
    """One row per group: the sampler's and method's options (defaults filled in) and the training
    settings, so a reader knows exactly what each row ran."""
    header = ["Group", "Dataset", "Sampler options", "Method options", "Training"]
    rows = []
    for g in sorted(groups, key=lambda g: (g.dataset, group_order(g))):
        ran = g.ran_with
        cells = [g.label, g.dataset, *(_setting(ran[k]).strip("{}") or DASH for k in ("sampler", "method"))]
        cells.append(", ".join(f"{k}={_setting(v)}" for k, v in ran["training"].items()))
        rows.append([Cell(c) for c in cells])
    return Table("Configurations", header, rows)


def _rank_metric_columns(rows: list[list[Cell]], columns: list[int], unimodal_rows: int) -> None:
    """Bold the best and underline the second distinct value per column; dagger rows under unimodal."""
    for col in columns:
        cells = [r[col] for r in rows if r[col].stat is not None]
        values = sorted({c.stat.rounded for c in cells if c.stat is not None}, reverse=True)
        for c in cells:
            assert c.stat is not None
            if values and c.stat.rounded == values[0] and len(cells) > 1:
                c.rank = 1
            elif len(values) > 1 and c.stat.rounded == values[1]:
                c.rank = 2
        unimodal = [r[col].stat.rounded for r in rows[:unimodal_rows] if r[col].stat is not None]
        if not unimodal:
            continue
        for r in rows[unimodal_rows:]:
            if r[col].stat is not None and r[col].stat.rounded < max(unimodal):
                r[col].below_unimodal = True


def modality_table(groups: list[RunGroup], dataset: str, split: str, metrics: list[str]) -> Table:
    """The papers' ablation layout: fused and each modality's head, per group, for one dataset."""
    chosen = sorted((g for g in groups if g.dataset == dataset), key=group_order)
    stats = {id(g): metric_stats(g, split, metrics) for g in chosen}
    modalities = sorted({s for g in chosen for s in stats[id(g)] if s != "fused"})
    scopes = ["fused", *modalities]
    header = ["Method", "n"] + [f"{scope} {METRIC_TITLES[m]}" for scope in scopes for m in metrics]
    rows = []
    for g in chosen:
        row = [Cell(g.label), Cell(str(len(g.runs)))]
        for scope in scopes:
            for m in metrics:
                s = stats[id(g)].get(scope, {}).get(m)
                row.append(Cell(s.text(), s) if s else Cell())
        rows.append(row)
    notes = [f"{split} split; `fused` is the multimodal prediction, a modality column its own head."]
    return Table(f"Per-modality results: {dataset}", header, rows, notes)


def cost_table(groups: list[RunGroup]) -> Table:
    """Training cost from ``summary.json``: wall time, throughput, epochs and the selected epoch."""
    header = ["Method", "Dataset", "n", "Wall time (s)", "Train samples/s", "Epochs", "Best epoch"]
    rows = []
    for g in sorted(groups, key=lambda g: (g.dataset, group_order(g))):
        summaries = [r.summary for r in g.runs]
        wall = stat_of([s.get("wall_time_s") for s in summaries], digits=1)
        speed = stat_of([s.get("train_samples_per_s") for s in summaries], digits=1)
        rows.append(
            [
                Cell(g.label),
                Cell(g.dataset),
                Cell(str(len(g.runs))),
                Cell(wall.text(), wall) if wall else Cell(),
                Cell(speed.text(), speed) if speed else Cell(),
                Cell(_values(summaries, "epochs")),
                Cell(_values(summaries, "best_epoch")),
            ]
        )
    notes = ["Mean ± std over seeds; epochs and best epoch listed per seed."]
    return Table("Training cost", header, rows, notes)


def _values(summaries: list[dict], key: str) -> str:
    values = [str(s[key]) for s in summaries if s.get(key) is not None]
    return ", ".join(values) if values else DASH


def _decorated(cell: Cell, bold: tuple[str, str], under: tuple[str, str], dagger: str) -> str:
    text = cell.text
    if cell.rank == 1:
        text = f"{bold[0]}{text}{bold[1]}"
    elif cell.rank == 2:
        text = f"{under[0]}{text}{under[1]}"
    return text + (dagger if cell.below_unimodal else "")


def to_markdown(table: Table, level: int = 2) -> str:
    lines = [f"{'#' * level} {table.title}", ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for row in table.rows:
        cells = [_decorated(c, ("**", "**"), ("<u>", "</u>"), " †").replace("|", "\\|") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"_{note}_" if not note.startswith("**") else note for note in table.notes]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex_header(table: Table) -> list[str]:
    if not table.spans:
        return [" & ".join(_latex_escape(h) for h in table.header) + r" \\"]
    top, rules, sub, col = [_latex_escape(table.header[0])], [], [""], 2
    for title, names in table.spans:
        top.append(rf"\multicolumn{{{len(names)}}}{{c}}{{{_latex_escape(title)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(names) - 1}}}")
        sub += [_latex_escape(n) for n in names]
        col += len(names)
    return [" & ".join(top) + r" \\", " ".join(rules), " & ".join(sub) + r" \\"]


def to_latex(table: Table) -> str:
    """A booktabs ``tabular``: best ``\\textbf``, second ``\\underline``, ``$^\\dagger$`` under unimodal."""
    plain_notes = " ".join(n.replace("**", "").replace("<u>", "").replace("</u>", "") for n in table.notes)
    lines = [
        f"% {table.title}; {plain_notes}".replace("±", "+/-"),
        r"\begin{tabular}{l" + "r" * (len(table.header) - 1) + "}",
        r"\toprule",
        *_latex_header(table),
        r"\midrule",
    ]
    for i, row in enumerate(table.rows):
        if i in table.rule_before:
            lines.append(r"\midrule")
        cells = []
        for c in row:
            body = _latex_escape(c.text).replace("±", r"$\pm$").replace(DASH, "--")
            styled = Cell(body, c.stat, c.rank, c.below_unimodal)
            cells.append(_decorated(styled, (r"\textbf{", "}"), (r"\underline{", "}"), r"$^\dagger$"))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_name(title: str) -> str:
    """``"avmnist Macro-F1"`` -> ``avmnist_macro_f1``: a header a dataframe can use as a name."""
    return re.sub(r"[^0-9a-z]+", "_", title.lower()).strip("_")


def to_csv(table: Table) -> str:
    """Plain numbers for spreadsheets: a statistic column becomes ``<name>_mean`` and ``<name>_std``;
    headers are lower-case identifiers (no spaces)."""
    stat_cols = {i for row in table.rows for i, c in enumerate(row) if c.stat is not None}
    header: list[str] = []
    for i, name in enumerate(table.header):
        name = csv_name(name)
        header += [f"{name}_mean", f"{name}_std"] if i in stat_cols else [name]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out: list[str] = []
        for i, c in enumerate(row):
            if i in stat_cols and c.stat is None:
                out += ["", ""]
            elif i in stat_cols:
                out += [repr(c.stat.mean), "" if c.stat.std is None else repr(c.stat.std)]
            else:
                out.append("" if c.text == DASH else c.text)
        writer.writerow(out)
    return buf.getvalue()
