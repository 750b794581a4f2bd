"""Campaigns: a plan crossed into jobs, spread over workers, recorded in a manifest.

A **plan** (YAML, :class:`Plan`) names one API-format workflow and the axes
to cross into its inputs:

* ``kind: generate`` (default): ``soul_ids x presets x prompts x seeds``; each
  axis goes to the node inputs named in ``targets`` (defaults:
  ``SoulIDLoad.name``, ``SoulIDStylePreset.style``, ``SoulIDGenerate.prompt``,
  ``SoulIDGenerate.seed``; a list sets several inputs). An axis left out is
  not touched. ``set`` holds fixed ``NODE.INPUT=VALUE`` overrides.
* ``kind: create``: one Soul ID per photo folder in ``sets`` (folders or
  globs, relative to the plan); the folder's photos are uploaded (once per
  worker) and ``targets.folder`` / ``targets.name`` receive the uploaded
  folder and the folder's name (default workflow: ``soul_id_create``, whose
  QA report is shown by an added ``PreviewAny`` node so that the manifest
  gets the set's QA summary).

**Scheduling** (:class:`Scheduler`): each job goes to the healthy worker
with the fewest jobs in flight, up to ``per_worker`` each. A worker that
cannot be reached, times out or answers 5xx is drained: no new jobs. Its
rows that never reached it go to the others. A row whose job may already
be on it (submitted, or a submit whose answer never came) waits for it
instead: one such row is tried there again every :data:`RECHECK_S`
seconds, and when the worker answers, it is back and the job is picked
up where it is, so no row runs twice. A worker still silent after the job
timeout leaves those rows unrun (exit 1); a rerun picks their jobs up, or
runs them elsewhere when that worker is no longer among the ``--server``
workers (they may then run twice). A job a node failed is recorded as
failed and not retried (``retry_failed`` makes a deliberate new attempt).
Every step is in the journal (:mod:`.journal`), so a rerun after a crash
submits only what was never submitted.

The **manifest** (``manifest.json`` and ``manifest.csv`` in the output
folder) is rewritten atomically each time a job ends: row, Soul ID, preset,
prompt, seed, status, worker URL, job id, output files, drift-guard score
(when the graph's text outputs hold a Drift Guard report), QA summary
(create), error. It never holds a credential.
"""
from __future__ import annotations

import copy
import csv
import glob
import io
import itertools
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...soul.errors import SoulIDError
from ...soul.imageio import PHOTO_EXTENSIONS
from .base import QUEUED, RUNNING, Deadline, DeadlineExceeded, JobRefused, JobState, ServerError, Upload, Worker, WorkerDown
from .jobs import GraphJob, JobLost, JobResult, drift_score, execute
from .graph import WorkflowError, apply_overrides, find_node, load_api_workflow
from .journal import JOURNAL_NAME, Journal
from .transfer import MAX_OUTPUT_BYTES, safe_name

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TARGETS = {
    "generate": {"soul_id": ["SoulIDLoad.name"], "preset": ["SoulIDStylePreset.style"],
                 "prompt": ["SoulIDGenerate.prompt"], "seed": ["SoulIDGenerate.seed"]},
    "create": {"folder": ["SoulIDCreate.folder"], "name": ["SoulIDCreate.name"]},
}
MANIFEST_FIELDS = ("row", "kind", "soul_id", "preset", "prompt", "seed", "status", "worker", "job_id", "files",
                   "drift_score", "qa", "error")
QA_NODE_ID = "soulid_qa_report"
#: Times a row's job may be forgotten by workers (restarts) before the row counts as failed.
MAX_LOST = 3
#: Seconds between tries of a row on the drained worker that may hold its job.
RECHECK_S = 5.0


#: Largest plan file read, bytes.
MAX_PLAN_BYTES = 1 << 20
#: Most rows one campaign may cross into (soul_ids x presets x prompts x seeds).
MAX_ROWS = 100_000


class PlanError(SoulIDError):
    """A plan file is unusable; the message names the file and the field."""


class Plan(BaseModel):
    """A campaign plan (see the module docstring). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["generate", "create"] = "generate"
    workflow: str | None = None
    soul_ids: list[str] = Field(default_factory=list)
    presets: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    sets: list[str] = Field(default_factory=list)
    set: list[str] = Field(default_factory=list)
    targets: dict[str, str | list[str]] = Field(default_factory=dict)
    per_worker: int = Field(default=2, ge=1, le=64)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if any(s < 0 or s > 2**64 - 1 for s in v):
            raise ValueError("seeds must be in 0..2**64-1")
        return v


def load_plan(path: Path) -> Plan:
    """The plan in ``path`` (YAML or JSON).

    Raises:
        PlanError: unreadable, not a mapping, or a field of the wrong type
            (every bad field is named).
    """
    import yaml

    from ...soul.paths import read_text_file

    text = read_text_file(Path(path), MAX_PLAN_BYTES, "plan", PlanError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML ({e})") from None
    except RecursionError:
        raise PlanError(f"{path}: the plan is nested too deep") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan is a mapping (workflow:, soul_ids:, seeds: ...), got {type(data).__name__}")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:8])
        raise PlanError(f"{path}: {errs}") from None
    for k in plan.targets:
        if k not in DEFAULT_TARGETS[plan.kind]:
            raise PlanError(f"{path}: targets.{k}: not an axis of a {plan.kind} plan "
                            f"({', '.join(DEFAULT_TARGETS[plan.kind])})")
    if plan.kind == "create" and not plan.sets:
        raise PlanError(f"{path}: sets: a create plan needs photo folders")
    if plan.kind == "generate":
        sizes = {a: len(getattr(plan, a)) for a in ("soul_ids", "presets", "prompts", "seeds")}
        n = math.prod(v or 1 for v in sizes.values())
        if n > MAX_ROWS:
            raise PlanError(f"{path}: the plan crosses into {n:,} rows ("
                            + " x ".join(f"{v or 1} {a}" for a, v in sizes.items())
                            + f"); at most {MAX_ROWS:,} rows per campaign: split it into several plans")
    return plan


@dataclass
class Row:
    """One plan row: its axis values, its job, where its files go."""

    index: int
    values: dict
    spec: GraphJob
    state: str = "waiting"  # waiting queued running done failed
    pinned: str = ""  # worker URL holding its earlier submission
    lost: int = 0  # times a worker forgot this row's job
    not_before: float = 0.0  # monotonic time before which it is not tried on its drained worker again


def _photo_folders(plan: Plan, base: Path) -> list[Path]:
    out = []
    for pattern in plan.sets:
        hits = sorted(glob.glob(str(base / pattern))) if any(c in pattern for c in "*?[") else [str(base / pattern)]
        dirs = [Path(h) for h in hits if Path(h).is_dir()]
        if not dirs:
            raise PlanError(f"sets: {pattern!r} names no folder (relative to {base})")
        out += dirs
    return out


def build_rows(plan: Plan, plan_path: Path, salt_for: Callable[[int], str] | None = None) -> list[Row]:
    """The plan's rows in a stable order (the same plan always gives the same rows and keys).

    Raises:
        PlanError: workflow unreadable, a target naming no (or several) nodes.
    """

    base = plan_path.resolve().parent
    wf = plan.workflow or ("workflows/api/soul_id_create.json" if plan.kind == "create" else None)
    if not wf:
        raise PlanError(f"{plan_path}: workflow: missing (an API-format workflow file)")
    wf_path = base / wf if (base / wf).exists() or plan.workflow else REPO / wf
    try:
        graph = apply_overrides(load_api_workflow(wf_path), plan.set)
        targets = {}
        given = {"soul_id": plan.soul_ids, "preset": plan.presets, "prompt": plan.prompts, "seed": plan.seeds}
        for axis, default in DEFAULT_TARGETS[plan.kind].items():
            if plan.kind == "generate" and not given[axis]:
                continue  # an axis left out touches nothing
            refs = plan.targets.get(axis, default)
            refs = [refs] if isinstance(refs, str) else refs
            resolved = []
            for ref in refs:
                node, dot, inp = ref.rpartition(".")
                if not dot or not node or not inp:
                    raise PlanError(f"{plan_path}: targets.{axis}: {ref!r} is not NODE.INPUT")
                resolved.append((find_node(graph, node), inp))
            targets[axis] = resolved
    except WorkflowError as e:
        raise PlanError(f"{plan_path}: {e}") from None
    if plan.kind == "create":
        (cid, _), = targets["folder"][:1]
        graph[QA_NODE_ID] = {"class_type": "PreviewAny", "inputs": {"source": [cid, 2]},
                             "_meta": {"title": "Soul ID QA report"}}
        combos = [{"soul_id": d.name, "folder": d} for d in _photo_folders(plan, base)]
        if len(combos) > MAX_ROWS:
            raise PlanError(f"{plan_path}: sets: {len(combos):,} photo folders; at most {MAX_ROWS:,} rows per campaign")
    else:
        axes = {"soul_id": plan.soul_ids, "preset": plan.presets, "prompt": plan.prompts, "seed": plan.seeds}
        names = list(axes)
        combos = [dict(zip(names, vals)) for vals in itertools.product(*[axes[n] or [None] for n in names])]
    rows = []
    for i, vals in enumerate(combos):
        g = copy.deepcopy(graph)
        uploads = []
        if plan.kind == "create":
            photos = sorted(f for f in vals["folder"].iterdir() if f.is_file() and f.suffix.lower() in PHOTO_EXTENSIONS)
            if not photos:
                raise PlanError(f"sets: {vals['folder']} holds no photos ({', '.join(sorted(PHOTO_EXTENSIONS))})")
            for nid, inp in targets["name"]:
                g[nid]["inputs"][inp] = vals["soul_id"]
            (nid, inp), = targets["folder"][:1]
            uploads.append(Upload(nid, inp, photos, folder=True))
            label = f"r{i:04d}_{safe_name(vals['soul_id'], 'set')}"
        else:
            for axis, v in vals.items():
                if v is not None:
                    for nid, inp in targets[axis]:
                        g[nid]["inputs"][inp] = v
            label = f"r{i:04d}" + "".join(f"_{safe_name(str(vals[a]), 'x')[:24]}" for a in ("soul_id", "preset", "seed")
                                          if vals[a] is not None)
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in vals.items()}
        rows.append(Row(i, values, GraphJob(g, uploads, label=label, salt=salt_for(i) if salt_for else "")))
    return rows


# ------------------------------------------------------------------- manifest
def qa_summary(texts: dict) -> dict | None:
    """The QA summary of a ``soul_id_create`` run from the added report node's text."""
    for t in texts.get(QA_NODE_ID, []):
        try:
            rep = json.loads(t)
        except ValueError:
            continue
        s = rep.get("summary") if isinstance(rep, dict) else None
        if isinstance(s, dict):
            return {k: s[k] for k in ("photos", "accepted", "rejected", "excluded", "verdict", "warnings") if k in s}
    return None


class Manifest:
    """``manifest.json`` + ``manifest.csv`` in ``out_dir``, rewritten atomically per finished job."""

    def __init__(self, out_dir: Path, kind: str):
        self.out_dir, self.kind = out_dir, kind
        self.rows: dict[int, dict] = {}
        self._lock = threading.Lock()

    def update(self, row: Row, result: JobResult | None, error: str = "") -> None:
        entry = {"row": row.index, "kind": self.kind, "soul_id": row.values.get("soul_id"),
                 "preset": row.values.get("preset"), "prompt": row.values.get("prompt"),
                 "seed": row.values.get("seed"), "status": row.state, "worker": "", "job_id": "", "files": [],
                 "drift_score": None, "qa": None, "error": error, "key": row.spec.key}
        if result is not None:
            entry.update(worker=result.worker, job_id=result.job_id, files=result.files,
                         drift_score=drift_score(result.texts), error=error or result.error)
            if self.kind == "create":
                entry["qa"] = result.texts.get("qa") if "qa" in result.texts else qa_summary(result.texts)
        with self._lock:
            self.rows[row.index] = entry
            self._write()

    def _write(self) -> None:
        from ...soul.paths import atomic_write_bytes

        rows = [self.rows[k] for k in sorted(self.rows)]
        atomic_write_bytes(self.out_dir / "manifest.json", json.dumps({"rows": rows}, indent=1).encode())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "files": ";".join(r["files"]), "qa": json.dumps(r["qa"]) if r["qa"] else "",
                        "drift_score": "" if r["drift_score"] is None else f"{r['drift_score']:.4f}"})
        atomic_write_bytes(self.out_dir / "manifest.csv", buf.getvalue().encode())


# ------------------------------------------------------------------ scheduler
@dataclass
class Counts:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"queued {self.queued}  running {self.running}  done {self.done}  failed {self.failed}"


@dataclass
class Scheduler:
    """Runs rows on workers (see the module docstring)."""

    workers: list[Worker]
    out_dir: Path
    kind: str = "generate"
    per_worker: int = 2
    job_timeout: float = 3600.0
    max_bytes: int = MAX_OUTPUT_BYTES
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)
    journal: Journal = None
    manifest: Manifest = None
    in_flight: dict = field(default_factory=dict)
    drained: dict = field(default_factory=dict)  # drained worker URL -> monotonic time it was drained
    received: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.journal = self.journal or Journal(self.out_dir / JOURNAL_NAME)
        self.manifest = self.manifest or Manifest(self.out_dir, self.kind)
        self.in_flight = {w.url: 0 for w in self.workers}
        self.received = {w.url: 0 for w in self.workers}

    def _counts(self, rows: list[Row]) -> Counts:
        c = Counts()
        for r in rows:
            if r.state in ("waiting", "queued"):
                c.queued += 1
            elif r.state == "running":
                c.running += 1
            elif r.state == "done":
                c.done += 1
            else:
                c.failed += 1
        return c

    def _holder(self, row: Row) -> str:
        """The worker URL that may hold a job of ``row`` (the journal has it
        submitted there, or a submit there whose answer never came), else ``""``."""
        rec = self.journal.get(row.spec.key)
        maybe_there = bool(rec.get("job_id")) or rec.get("event") == "submitting"
        return (rec.get("worker") or "") if maybe_there else ""

    def _pick(self, row: Row) -> Worker | None:
        live = [w for w in self.workers if w.url not in self.drained]
        if row.pinned in self.drained:
            # Its job may be there: only that worker may take it, one row at a time as a probe.
            w = next(w for w in self.workers if w.url == row.pinned)
            return w if self.in_flight[w.url] == 0 and time.monotonic() >= row.not_before else None
        if row.pinned:
            pinned = [w for w in live if w.url == row.pinned]
            if pinned:
                return pinned[0] if self.in_flight[row.pinned] < self.per_worker else None
        free = [w for w in live if self.in_flight[w.url] < self.per_worker]
        return min(free, key=lambda w: self.in_flight[w.url]) if free else None

    def run(self, rows: list[Row]) -> Counts:
        """Run every row not finished yet; return the final counts."""
        events: queue.Queue = queue.Queue()
        todo = []
        for row in rows:
            while self.journal.get(row.spec.key).get("event") == "lost":  # follow earlier resubmissions
                row.lost += 1
                s = row.spec
                row.spec = GraphJob(s.graph, s.uploads, s.label, salt=f"{s.salt.split('lost-')[0]}lost-{row.lost}")
            rec = self.journal.get(row.spec.key)
            if rec.get("event") in ("done", "failed"):
                row.state = rec["event"]
                self.manifest.update(row, JobResult(row.spec.key, rec["event"], rec.get("worker", ""),
                                                    rec.get("job_id", ""), list(rec.get("files") or []),
                                                    rec.get("texts") or {}, rec.get("error", ""), True))
                continue
            row.pinned = self._holder(row)  # a worker no longer given: any worker may take it (see _pick)
            todo.append(row)
        stranded: list[Row] = []
        self.log(f"campaign: {len(rows)} row(s), {len(rows) - len(todo)} already finished, "
                 f"{len(self.workers)} worker(s), up to {self.per_worker} in flight each")
        active, shown = 0, ""
        while todo or active:
            progressed = True
            while todo and progressed:
                progressed = False
                for row in list(todo):
                    w = self._pick(row)
                    if w is None:
                        continue
                    todo.remove(row)
                    self.in_flight[w.url] += 1
                    self.received[w.url] += 1
                    active += 1
                    row.state = "queued"
                    threading.Thread(target=self._one, args=(w, row, events), daemon=True).start()
                    progressed = True
                    break
            for row in [r for r in todo if r.pinned in self.drained]:
                if time.monotonic() - self.drained[row.pinned] > self.job_timeout:
                    todo.remove(row)
                    stranded.append(row)
            if not active and todo and all(w.url in self.drained for w in self.workers) \
                    and not any(r.pinned in self.drained for r in todo):
                self.log(f"campaign: every worker is drained; {len(todo)} row(s) not run (rerun to finish them)")
                break
            try:
                kind, w, row, info = events.get(timeout=0.5)
            except queue.Empty:
                kind = None
            if kind == "back":
                if self.drained.pop(w.url, None) is not None:
                    self.log(f"worker {w.url} answers again: back in use")
            elif kind is not None:
                self.in_flight[w.url] -= 1
                active -= 1
                if kind == "down":
                    if w.url not in self.drained:
                        self.log(f"worker {w.url} drained: {info}")
                        self.drained[w.url] = time.monotonic()
                    was_pinned, row.state, row.pinned = row.pinned, "waiting", ""
                    if self._holder(row) == w.url:  # its job may run there: it waits, never runs twice
                        row.pinned, row.not_before = w.url, time.monotonic() + RECHECK_S
                        if was_pinned != w.url:
                            self.log(f"row {row.index}: its job may be on {w.url}; it waits for that worker "
                                     f"(up to the job timeout) rather than run twice elsewhere")
                    todo.append(row)
                elif kind == "lost" and row.lost >= MAX_LOST:
                    row.state = "failed"
                    self.journal.record(row.spec.key, event="failed", error=f"lost {row.lost} times: {info}")
                    self.manifest.update(row, None, f"lost {row.lost} times: {info}")
                elif kind == "lost":
                    # A new key: a v2 server refuses the old one for good (single-use keys).
                    row.lost += 1
                    self.log(f"row {row.index}: {info}; submitting it again")
                    s = row.spec
                    row.spec = GraphJob(s.graph, s.uploads, s.label, salt=f"{s.salt.split('lost-')[0]}lost-{row.lost}")
                    row.state, row.pinned = "waiting", ""
                    todo.append(row)
                else:
                    self.manifest.update(row, info if isinstance(info, JobResult) else None,
                                         "" if isinstance(info, JobResult) else str(info))
                    if row.state == "failed":
                        self.log(f"row {row.index} ({row.spec.label}) failed: "
                                 f"{info.error if isinstance(info, JobResult) else info}")
            line = self._counts(rows).line()
            if line != shown:
                self.log(f"  {line}   in flight: " + ", ".join(f"{u} {n}" for u, n in self.in_flight.items()))
                shown = line
        for url in sorted({r.pinned for r in stranded}):
            n = sum(r.pinned == url for r in stranded)
            self.log(f"campaign: {n} row(s) may have jobs on {url}, which did not answer again within the job "
                     f"timeout; they were not run elsewhere. Rerun when it is back to pick their jobs up, or "
                     f"rerun without --server {url} to run them on the other workers (they may then run twice)")
        return self._counts(rows)

    def _one(self, w: Worker, row: Row, events: queue.Queue) -> None:
        told = False

        def answered() -> None:  # a drained worker that answers is back
            nonlocal told
            if w.url in self.drained and not told:
                told = True
                events.put(("back", w, row, None))

        def on_state(st: JobState):
            answered()
            row.state = {QUEUED: "queued", RUNNING: "running"}.get(st.status, row.state)

        try:
            res = execute(w, row.spec, self.journal, self.out_dir, Deadline(self.job_timeout),
                          max_bytes=self.max_bytes, on_state=on_state)
        except WorkerDown as e:
            return events.put(("down", w, row, str(e)))
        except JobLost as e:
            answered()
            return events.put(("lost", w, row, str(e)))
        except (JobRefused, DeadlineExceeded, ServerError) as e:
            if not isinstance(e, DeadlineExceeded):
                answered()
            row.state = "failed"
            self.journal.record(row.spec.key, event="failed" if isinstance(e, JobRefused) else "error",
                                worker=w.url, error=str(e))
            return events.put(("end", w, row, e))
        except Exception as e:  # noqa: BLE001 - one row never sinks the campaign
            row.state = "failed"
            return events.put(("end", w, row, f"{type(e).__name__}: {e}"))
        answered()
        row.state = "done" if res.status == "done" else "failed"
        events.put(("end", w, row, res))


# --------------------------------------------------------------- local create
def create_locally(rows: list[Row], out_dir: Path, processes: int, library: str | None = None,
                   log: Callable[[str], None] = print) -> Counts:
    """Bulk Soul ID creation on this machine: ``soulid create`` per photo set,
    ``processes`` at a time (each with one analysis worker), journalled and
    recorded in the manifest like worker jobs."""
    from concurrent.futures import ThreadPoolExecutor

    journal, manifest = Journal(out_dir / JOURNAL_NAME), Manifest(out_dir, "create")

    def one(row: Row):
        rec = journal.get(row.spec.key)
        if rec.get("event") in ("done", "failed"):
            row.state = rec["event"]
            return row, JobResult(row.spec.key, rec["event"], "local", "", [], rec.get("texts") or {},
                                  rec.get("error", ""), True)
        up = row.spec.uploads[0]
        cmd = [sys.executable, "-m", "soulid", *(["--library", library] if library else []), "create",
               *map(str, up.files), "--name", row.values["soul_id"], "--json", "--workers", "1", "--overwrite"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")]))
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        try:
            out = json.loads(p.stdout.strip().splitlines()[-1])
            qa = {k: out["summary"][k] for k in ("photos", "accepted", "rejected", "excluded", "verdict", "warnings")
                  if k in out["summary"]}
        except (ValueError, IndexError, KeyError, TypeError):
            out, qa = None, None
        ok = p.returncode == 0 and out is not None and out.get("soul_id")
        err = "" if ok else (p.stderr.strip().splitlines() or ["create failed"])[-1]
        journal.record(row.spec.key, event="done" if ok else "failed", worker="local",
                       texts={"qa": qa}, error=err)
        row.state = "done" if ok else "failed"
        return row, JobResult(row.spec.key, row.state, "local", "", [], {"qa": qa}, err)

    with ThreadPoolExecutor(max_workers=processes) as pool:
        for row, res in pool.map(one, rows):
            manifest.update(row, res)
            log(f"  {row.values['soul_id']}: {row.state}" + (f" ({res.error})" if res.error else ""))
    c = Counts()
    for r in rows:
        setattr(c, "done" if r.state == "done" else "failed", getattr(c, "done" if r.state == "done" else "failed") + 1)
    return c
