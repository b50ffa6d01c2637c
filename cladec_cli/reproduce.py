"""`reproduce`: the paper's experiment matrices (Tables II-IV), resumable, with mean +- std over runs.

Every artifact of every cell lives in the output folder: a second invocation reuses what exists and
trains only what is missing, so an interrupted run resumes where it stopped.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cladec_cli import artifacts, batchnorm
from cladec_cli.classifier import load_classifier, train_classifier
from cladec_cli.cladec import train_decoders
from cladec_cli.errors import TrainingError, UsageError, option
from cladec_cli.evaluate import check_statistics_choice, evaluate
from cladec_cli.explainer import load_explainer
from cladec_cli.fused import how_trained
from cladec_cli.locks import UnitLock, describe
from cladec_cli.methods import in_order, measured_methods
from cladec_cli.refae import train_refaes
from cladec_cli.stats import mean_std, paired_t_test, welch_t_test

PAPER_CLASSIFIER_EPOCHS = (0, 1, 4, 16, 64)
# The paper's figures (Fashion-MNIST, 64 epochs, 10 runs), from DESIGN.md.
PAPER = {
    "table2": {-1: (28.07, 7.28, 0.904, 0.845), -2: (6.08, 3.34, 0.895, 0.889),
               -3: (3.63, 2.64, 0.893, 0.892), -4: (3.61, 2.62, 0.893, 0.893)},
    "table3": {0.0: (6.08, 0.895), 0.9: (6.81, 0.909), 0.99: (10.21, 0.913), 0.999: (18.79, 0.913),
               1.0: (234.8, 0.911)},
    "table4": {0: (5.45, 0.85), 1: (6.42, 0.88), 4: (6.61, 0.893), 16: (6.23, 0.896), 64: (6.08, 0.895)},
}
METRICS = (("rec_loss", "Rec. Loss"), ("train_rec_loss", "Rec. Loss on training images"),
           ("loop_loss", "Loss in the last training epoch"), ("acc_eval", "Acc Eval"), ("agreement", "Agreement"),
           ("deletion", "Deletion area"), ("insertion", "Insertion area"))
# The methods of the paper's tables; `reproduce` measures others beside them on request.
PAPER_METHODS = ("cladec", "refae")
# How close a figure must come to the paper's to count as reproduced (relative difference).
PAPER_TOLERANCE = 0.15
# Our measures set against the paper's figures: (measure, method, index into PAPER's tuple) per table.
PAPER_FIGURES = {
    "table2": (("rec_loss", "cladec", 0), ("train_rec_loss", "cladec", 0), ("loop_loss", "cladec", 0),
               ("rec_loss", "refae", 1), ("train_rec_loss", "refae", 1), ("loop_loss", "refae", 1),
               ("acc_eval", "cladec", 2), ("acc_eval", "refae", 3)),
    "table3": (("rec_loss", "cladec", 0), ("train_rec_loss", "cladec", 0), ("acc_eval", "cladec", 1)),
    "table4": (("rec_loss", "cladec", 0), ("train_rec_loss", "cladec", 0), ("loop_loss", "cladec", 0),
               ("acc_eval", "cladec", 1)),
}
# Settings recorded since a later version, with the value that folders made before then used.
ADDED_SETTINGS = {"split_seed": 0, "test_fraction": 0.2, "pixel_range": "0,1", "lr_schedule": "cosine",
                  "methods": list(PAPER_METHODS), "bn_statistics": "moving", "eval_bn_statistics": "moving"}


@dataclass(frozen=True)
class Cell:
    """One row of a table in one run: which classifier, layer and alpha."""

    row: object
    classifier_epochs: int
    layer: int
    alpha: float


def cells(table, epochs):
    """The rows of a table: (row key, classifier epochs, layer, alpha)."""
    if table == "table2":
        return [Cell(layer, epochs, layer, 0.0) for layer in (-1, -2, -3, -4)]
    if table == "table3":
        return [Cell(alpha, epochs, -2, alpha) for alpha in PAPER["table3"]]
    if table == "table4":
        # The paper's classifier epochs, those beyond --epochs replaced by --epochs.
        return [Cell(e, e, -2, 0.0) for e in sorted({min(e, epochs) for e in PAPER_CLASSIFIER_EPOCHS})]
    raise UsageError(f"unknown table {table!r}; choose table2, table3 or table4")


def check_settings(out, settings, report_only=False):
    """Record the experiment's settings in `out`, or refuse a folder made with other settings (saying,
    for `report_only`, that the run's own options are needed)."""
    path = Path(out) / "settings.json"
    if not path.exists():
        draft = path.with_name(f".settings.{os.getpid()}.json")
        artifacts.write_json(draft, settings, overwrite=True)
        try:
            os.link(draft, path)  # exclusive: of processes starting together, one records its settings
            return
        except FileExistsError:
            pass  # another process on the same folder was first: compare with theirs
        finally:
            draft.unlink(missing_ok=True)
    before = {**{k: v for k, v in ADDED_SETTINGS.items() if k in settings}, **json.loads(path.read_text())}
    if before != settings:
        changed = ", ".join(f"{k} {before.get(k)} -> {settings.get(k)}" for k in settings
                            if before.get(k) != settings.get(k))
        if report_only:
            raise UsageError(f"{out} holds results made with other settings ({changed}); pass the options the run "
                             f"was started with")
        raise UsageError(f"{out} holds results made with other settings ({changed}); use another {option('out')}")


@dataclass(eq=False)
class Unit:
    """One piece of an experiment, done by one process: it is done once its `outputs` exist; `needs`
    are the units it builds on; `work()` does it and returns how many models it trained."""

    name: str
    run: int
    outputs: tuple
    work: object
    needs: tuple = ()

    @property
    def done(self):
        return all(Path(p).exists() for p in self.outputs)


def parse_shard(text):
    """'K/N' -> (K, N), this process's share of an experiment cut into N shards."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UsageError(f"{option('shard')} takes K/N (e.g. 0/4), got {text!r}") from None
    if count < 1:
        raise UsageError(f"{option('shard')} {text}: N, the number of shards, must be at least 1")
    if not 0 <= index < count:
        raise UsageError(f"{option('shard')} {text}: K must lie in 0..N-1 (shards are counted from 0)")
    return index, count


def shard_units(units_by_run, shard):
    """The units shard (K, N) does. With at least N runs, every N-th run whole (a run's classifier and
    what is trained on it stay together); with fewer, each run's shards share out its units after the
    classifier, which the first of them to need it trains and the others wait for."""
    index, count = shard
    runs = len(units_by_run)
    if count <= runs:
        return [u for run, units in enumerate(units_by_run) if run % count == index for u in units]
    run = index % runs
    peers = [k for k in range(count) if k % runs == run]
    after_classifier = [u for u in units_by_run[run] if u.needs]
    return [u for j, u in enumerate(after_classifier) if j % len(peers) == peers.index(index)]


class Experiment:
    """Runs (or resumes) one table's experiment matrix in an output folder, alone or beside other
    processes on the same folder (each unit is locked while it trains; see `locks`)."""

    def __init__(self, table, dataset, train_settings, eval_settings, runs, out, log=print, lock_timeout=600.0,
                 poll=None, methods=PAPER_METHODS, bn_statistics="moving", eval_bn_statistics="moving"):
        self.table, self.dataset, self.runs, self.out, self.log = table, dataset, runs, Path(out), log
        self.methods, self.bn_statistics, self.eval_bn_statistics = list(methods), bn_statistics, eval_bn_statistics
        self.train_settings, self.eval_settings = train_settings, eval_settings
        self.lock_timeout = float(lock_timeout)
        self.poll = min(5.0, self.lock_timeout / 4) if poll is None else poll
        self.trained = 0
        self._waiting = set()

    def _settings(self, seed, epochs=None):
        base = self.train_settings.with_epochs(self.train_settings.epochs if epochs is None else epochs)
        base.seed, base.resume, base.overwrite = seed, True, False
        return base

    def _classifier_path(self, run, epochs):
        return self.out / f"run{run}" / f"classifier_e{epochs}.h5"

    def _cell_folder(self, run, cell):
        return self.out / f"run{run}" / f"c{cell.classifier_epochs}_L{cell.layer}"

    def _cladec_path(self, run, cell):
        return self._cell_folder(run, cell) / f"cladec_a{cell.alpha:g}.h5"

    def _refae_path(self, run, cell):
        return self._cell_folder(run, cell) / "refae.h5"

    def metrics_path(self, run, cell):
        return self._cell_folder(run, cell) / f"metrics_a{cell.alpha:g}.json"

    def cells(self):
        return cells(self.table, self.train_settings.epochs)

    def units(self, run):
        """The units of one run: its classifiers, its decoders (one pass per classifier and alpha), its
        RefAEs (one pass per classifier, when RefAE is among the methods) and each cell's evaluation."""
        row_cells = self.cells()
        classifiers = {e: self._classifier_unit(run, e) for e in dict.fromkeys(c.classifier_epochs for c in row_cells)}
        decoders = {}
        for key in dict.fromkeys((c.classifier_epochs, c.alpha) for c in row_cells):
            group = [c for c in row_cells if (c.classifier_epochs, c.alpha) == key]
            decoders[key] = self._group_unit(run, group, "cladec", classifiers[key[0]])
        refaes = {}
        for epochs in classifiers if "refae" in self.methods else ():
            group = list({self._refae_path(run, c): c for c in row_cells if c.classifier_epochs == epochs}.values())
            refaes[epochs] = self._group_unit(run, group, "refae", classifiers[epochs])
        evaluations = [Unit(f"evaluate-c{c.classifier_epochs}-L{c.layer}-a{c.alpha:g}", run, (self.metrics_path(run, c),),
                            lambda c=c: self._evaluate(run, c),
                            (classifiers[c.classifier_epochs], decoders[c.classifier_epochs, c.alpha],
                             *([refaes[c.classifier_epochs]] if refaes else [])))
                       for c in row_cells]
        return [*classifiers.values(), *decoders.values(), *dict.fromkeys(refaes.values()), *evaluations]

    def _classifier_unit(self, run, epochs):
        path = self._classifier_path(run, epochs)

        def work():
            self._timed(f"the classifier for {epochs} epochs",
                        lambda: train_classifier(self.dataset, self._settings(run, epochs), path,
                                                 bn_statistics=self.bn_statistics))
            return 1
        return Unit(f"classifier-e{epochs}", run, (path,), work)

    def _group_unit(self, run, group, kind, classifier_unit):
        path_of = self._cladec_path if kind == "cladec" else self._refae_path
        epochs, alpha = group[0].classifier_epochs, group[0].alpha
        name = f"{kind}-c{epochs}" + (f"-a{alpha:g}" if kind == "cladec" else "")

        def work():
            missing = _by_path(group, lambda c: path_of(run, c))
            classifier, provenance = load_classifier(self._classifier_path(run, epochs))
            settings = self._settings(run)
            if kind == "cladec":
                self._timed(_what("ClaDec decoder", missing, settings, f", alpha {alpha:g}"), lambda: train_decoders(
                    classifier, provenance, self.dataset, list(missing.values()), alpha, settings, list(missing)))
            else:
                self._timed(_what("RefAE", missing, settings), lambda: train_refaes(
                    classifier, provenance, self.dataset, list(missing.values()), settings, list(missing)))
            return len(missing)
        return Unit(name, run, tuple(path_of(run, c) for c in group), work, (classifier_unit,))

    def _timed(self, what, train):
        """Train, saying what and how long it took."""
        self.log(f"  training {what}")
        started = time.time()
        train()
        self.log(f"  trained {what} in {time.time() - started:.1f} s")

    def _evaluate(self, run, cell):
        acc_eval = self.eval_settings.epochs > 0  # 0 epochs: no Acc Eval, as for `evaluate`
        self.log(f"  evaluating run {run + 1} row {cell.row} "
                 f"({f'Acc Eval classifiers, {self.eval_settings.epochs} epochs' if acc_eval else 'no Acc Eval'})")
        eval_settings = self.eval_settings.with_epochs(self.eval_settings.epochs)
        eval_settings.seed = run
        started = time.time()
        refae = self._refae_path(run, cell) if "refae" in self.methods else None
        explainer = load_explainer(self._classifier_path(run, cell.classifier_epochs), self._cladec_path(run, cell),
                                   refae)
        result = evaluate(explainer, self.dataset, eval_settings, with_acc_eval=acc_eval, methods=self.methods,
                          eval_bn_statistics=self.eval_bn_statistics)
        result["seconds"] = round(time.time() - started, 1)
        self.log(f"  evaluated in {result['seconds']} s")
        artifacts.write_json(self.metrics_path(run, cell), result, overwrite=True)
        return len(measured_methods([result.get("acc_eval", {})]))  # the Acc Eval classifiers trained

    def _lock(self, unit):
        return UnitLock(self.out / f"run{unit.run}" / f".{unit.name}.lock", self.lock_timeout)

    def _attempt(self, unit):
        """Do `unit` (and what it needs) unless another process holds it: True once it is done."""
        if unit.done:
            return True
        if not all(self._attempt(need) for need in unit.needs):
            return False
        lock = self._lock(unit)
        if not lock.acquire():
            if unit not in self._waiting:
                self._waiting.add(unit)
                self.log(f"run {unit.run + 1}: {unit.name} is being trained by {describe(lock.owner())}")
            return False
        try:
            if lock.taken_from is not None:
                self.log(f"run {unit.run + 1}: took over {unit.name} from {describe(lock.taken_from)}, whose lock "
                         f"went {self.lock_timeout:g} s without a heartbeat")
            if not unit.done:
                self.log(f"run {unit.run + 1}/{self.runs}, {self.table}: {unit.name}")
                self.trained += unit.work()
                if not unit.done:
                    raise TrainingError(f"run {unit.run + 1}: {unit.name} finished without writing "
                                        f"{', '.join(str(p) for p in unit.outputs if not Path(p).exists())}")
        finally:
            lock.release()
        return True

    def work_through(self, units):
        """Do every unit of `units`, waiting for those other processes hold."""
        pending = list(units)
        while pending:
            pending = [u for u in pending if not self._attempt(u)]
            if pending:
                time.sleep(self.poll)

    def run(self, shard=(0, 1)):
        """Do this process's share of every run (all of it unless `shard`); return {row: [metrics per run]}
        of the cells that are done."""
        units_by_run = [self.units(run) for run in range(self.runs)]
        self.work_through(shard_units(units_by_run, shard))
        return self.results()

    def results(self):
        """{row: [metrics of each run that has the cell]} from the metrics files in the folder."""
        results = {}
        for run in range(self.runs):
            for cell in self.cells():
                path = self.metrics_path(run, cell)
                if path.exists():
                    results.setdefault(cell.row, []).append(json.loads(path.read_text()))
        return results

    def missing(self):
        """How many cells of how many have no metrics yet."""
        expected = [(run, cell) for run in range(self.runs) for cell in self.cells()]
        return sum(not self.metrics_path(run, cell).exists() for run, cell in expected), len(expected)


def _by_path(todo, path):
    """{artifact path: layer} for the cells whose artifact does not exist yet, each path once."""
    return {p: c.layer for c in todo if not (p := path(c)).exists()}


def _what(kind, missing, settings, detail=""):
    """'ClaDec decoder, layer -2, alpha 0', or 'ClaDec decoders, layers -1, -2, alpha 0, in one pass'
    ('one after another (float16)' where `settings` train them so: `fused.how_trained`)."""
    if len(missing) == 1:
        return f"{kind}, layer {next(iter(missing.values()))}{detail}"
    layers = ", ".join(str(layer) for layer in missing.values())
    return f"{kind}s, layers {layers}{detail}, {how_trained(settings, len(missing))}"


def summarize(table, results):
    """Per row: mean, std and runs of every measure for every method measured, and for ClaDec against
    RefAE the p-values of Welch's and of the paired t-test (run i of ClaDec and of RefAE share a seed
    and a classifier)."""
    rows = []
    for key, runs in results.items():
        row = {"row": key, "runs": len(runs),
               "classifier_test_accuracy": mean_std([r["classifier_test_accuracy"] for r in runs])}
        for metric, _ in METRICS:
            methods = measured_methods([r.get(metric, {}) for r in runs])
            if not methods:
                continue
            values = {m: [r.get(metric, {}).get(m) for r in runs] for m in methods}
            row[metric] = {m: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "values": v}
                           for m, v in values.items()}
            if set(PAPER_METHODS) <= set(methods):
                row[metric]["difference"] = row[metric]["cladec"]["mean"] - row[metric]["refae"]["mean"]
                row[metric]["p_value"] = welch_t_test(values["cladec"], values["refae"])
                row[metric]["p_paired"] = paired_t_test(values["cladec"], values["refae"])
        row["paper"] = PAPER[table].get(key)
        rows.append(row)
    return rows


def paper_comparison(table, rows):
    """Each of our means beside the paper's figure it estimates: [{row, measure, method, ours, paper,
    ratio, within}], `within` meaning no more than PAPER_TOLERANCE apart (relative to the paper's)."""
    compared = []
    for row in rows:
        if row["paper"] is None:
            continue
        for metric, method, index in PAPER_FIGURES[table]:
            if method not in row.get(metric, {}):
                continue
            ours, paper = row[metric][method]["mean"], row["paper"][index]
            if ours != ours:  # NaN: no run measured it
                continue
            ratio = ours / paper
            compared.append({"row": row["row"], "measure": metric, "method": method, "ours": ours,
                             "paper": paper, "ratio": ratio, "within": abs(ratio - 1) <= PAPER_TOLERANCE})
    return compared


def reproduce(table, dataset, train_settings, eval_settings, runs, out, log=print, shard=(0, 1), report_only=False,
              lock_timeout=600.0, methods=None, bn_statistics="moving", eval_bn_statistics="moving"):
    """Run or resume a table (or, with `shard` (K, N), its K-th of N shares); write results.json, results.csv
    and results.md into `out`, unless this is one shard of several: `report_only` then writes them from
    the cells the shards finished, training nothing. Returns the summary.

    `methods` (default: the paper's, ClaDec and RefAE) are measured in every cell, ClaDec always (RefAE
    is trained only when named);
    `bn_statistics` is passed to `train_classifier` for every explained classifier, `eval_bn_statistics`
    to `evaluate` for every cell."""
    if runs < 1:
        raise UsageError(f"{option('runs')} must be at least 1, got {runs}")
    cells(table, train_settings.epochs)  # an unknown table is refused before anything is written
    batchnorm.check_choice(bn_statistics, dataset.train)
    if eval_settings.epochs > 0:
        check_statistics_choice(eval_bn_statistics, dataset)
    methods = in_order(["cladec", *(methods or PAPER_METHODS)])
    out = Path(out)
    settings = {"table": table, "runs": runs, "epochs": train_settings.epochs,
                "eval_epochs": eval_settings.epochs, "batch_size": train_settings.batch_size,
                "lr": train_settings.lr, "lr_schedule": train_settings.lr_schedule, "methods": methods,
                "bn_statistics": bn_statistics, "eval_bn_statistics": eval_bn_statistics,
                **{k: v for k, v in dataset.provenance().items() if k != "class_names"}}
    if report_only and not (out / "settings.json").exists():
        raise UsageError(f"{out} holds no experiment to report on")
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {k: v for k, v in settings.items() if k != "runs"}, report_only)
    started = time.time()
    experiment = Experiment(table, dataset, train_settings, eval_settings, runs, out, log, lock_timeout,
                            methods=methods, bn_statistics=bn_statistics, eval_bn_statistics=eval_bn_statistics)
    if not report_only:
        experiment.run(shard)
    summary = {"settings": settings, "seconds": round(time.time() - started, 1), "trained": experiment.trained}
    if shard[1] > 1 and not report_only:
        return {**summary, "shard": list(shard)}
    missing, total = experiment.missing()
    if missing == total:
        raise UsageError(f"{out} holds no finished cell yet")
    if missing:
        log(f"warning: {missing} of {total} cells are not finished; the results leave them out")
    rows = summarize(table, experiment.results())
    summary = {**summary, "rows": rows, "paper_comparison": paper_comparison(table, rows), "missing_cells": missing}
    from cladec_cli.reproduce_report import write_results

    write_results(out, summary, settings)
    return summary
