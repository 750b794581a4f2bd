"""``soulid create | list | show | rename | delete | export | import | score | report``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..soul.analysis.registry import ANALYZER_NAMES
from ..soul.imageio import safe_label
from .common import library, load_soul


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="build a Soul ID from photos (files and/or folders)")
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_DIR")
    p.add_argument("--name", required=True, help="name of the Soul ID in the library")
    p.add_argument("--analyzer", default="auto", choices=ANALYZER_NAMES)
    p.add_argument("--overwrite", action="store_true", help="replace an existing Soul ID of that name")
    p.add_argument("--workers", type=int, default=None, help="analysis processes (default: one per core)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--report", metavar="FILE", help="also write the QA sheet (.png, .jpg or .html)")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("list", help="list the Soul IDs in the library (photos, verdict, LoRAs, created)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show a Soul ID's summary")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rename", help="rename a Soul ID")
    p.add_argument("name")
    p.add_argument("new_name")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=lambda a: _simple(a, lambda L: L.rename(a.name, a.new_name, a.overwrite), f"renamed {a.name} -> {a.new_name}"))

    p = sub.add_parser("delete", help="delete a Soul ID from the library (asks first)")
    p.add_argument("name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("export", help="copy a Soul ID out of the library to a file")
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--share", action="store_true", help="leave out the generation log and the provider ids (to give the file to someone)")
    p.set_defaults(func=lambda a: _simple(a, lambda L: L.export(a.name, a.file, a.overwrite, share=a.share), None))

    p = sub.add_parser("import", help="add a .soulid file to the library")
    p.add_argument("file")
    p.add_argument("--name", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=lambda a: _simple(a, lambda L: f"imported {L.import_file(a.file, a.name, a.overwrite)} into {L.describe()}", None))

    p = sub.add_parser("score", help="cosine similarity of the largest face in each image to a Soul ID")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--soul", required=True, help="Soul ID name in the library, or a .soulid file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report", help="the QA sheet of a Soul ID: every photo with its rating and reasons")
    p.add_argument("name", help="Soul ID name in the library, or a .soulid file")
    p.add_argument("--out", required=True, help="FILE.png, FILE.jpg or FILE.html")
    p.set_defaults(func=cmd_report)


def _simple(args, fn, message):
    from ..soul.errors import LibraryError

    try:
        res = fn(library(args))
    except LibraryError as e:
        # the library speaks to the nodes' `overwrite` input; here it is a flag
        raise LibraryError(str(e).replace("pass overwrite", "pass --overwrite")) from None
    print(message if message else res)
    return 0


def cmd_delete(args) -> int:
    from ..soul.errors import LibraryError

    lib = library(args)
    if not lib.exists(args.name):
        return _simple(args, lambda L: L.delete(args.name), None)
    if not args.yes:
        if not sys.stdin.isatty():
            raise LibraryError(f"delete {args.name}: pass --yes to delete without a question (no terminal to ask on)")
        answer = input(f"delete Soul ID {args.name!r} from {lib.dir}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not deleted")
            return 1
    return _simple(args, lambda L: L.delete(args.name), f"deleted {args.name}")


class _Progress:
    """tqdm progress bar on stderr for ``progress(fraction, message)``
    (hidden when stderr is not a terminal and --json)."""

    def __init__(self, quiet: bool, total: int = 100):
        self.bar = None
        self.quiet = quiet
        self.total = total

    def __call__(self, fraction: float | None, message: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            # No rate: "%/s" of a percentage reads as nonsense (e.g. "2221.02%/s").
            self.bar = tqdm(total=self.total, file=sys.stderr, disable=self.quiet and not sys.stderr.isatty(),
                            bar_format="{percentage:3.0f}%|{bar:24}| {elapsed}<{remaining} {postfix}")
        self.bar.set_postfix_str(message[-40:])
        if fraction is not None:
            self.bar.update(round(fraction * self.total) - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _qa_table(result) -> str:
    lines = [f"{'photo':32s} {'rating':9s} {'pose':13s} reasons"]
    for p in result.photos:
        reasons = "; ".join(p.reasons) or "-"
        lines.append(f"{safe_label(Path(p.path).name)[:32]:32s} {p.rating + ('*' if p.excluded else ''):9s} {(p.pose_class or '-'):13s} {reasons}")
    s = result.report["summary"]
    lines.append("")
    poses = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in s["angle_coverage"].items())
    lines.append(
        f"{s['accepted']} of {s['photos']} photos accepted ({s['rejected']} rejected, {s['excluded']} excluded*); "
        f"angles: {poses}"
    )
    lines.append(f"verdict: {s['verdict']}" + (f" ({'; '.join(s.get('verdict_reasons', []))})"
                                               if s.get("verdict_reasons") else ""))
    lines += [f"warning: {w}" for w in s["warnings"]]
    return "\n".join(lines)


def cmd_create(args) -> int:
    from ..soul.create import create_soul_id, expand_inputs
    from ..soul.errors import LibraryError, SoulIDError
    from ..soul.library import validate_name

    # Cheap refusals first: name, clash, output format, empty input.
    lib = library(args)
    name = validate_name(args.name)
    if lib.exists(name) and not args.overwrite:
        raise LibraryError(f"a Soul ID named {name!r} already exists in {lib.dir}; pass --overwrite to replace it")
    if args.report and Path(args.report).suffix.lower() not in (".png", ".jpg", ".jpeg", ".html", ".htm"):
        raise SoulIDError(f"--report {args.report}: write .png, .jpg or .html")
    if args.analyzer.startswith("insightface"):
        from ..backends.local.models import check_analyzer

        check_analyzer(args.analyzer)
    items, bad = expand_inputs(args.photos)
    if not items and not bad:
        raise SoulIDError(f"no photos found in {', '.join(args.photos)} (JPEG, PNG, WebP, BMP or TIFF files, "
                          "one folder level deep)")
    bar = _Progress(quiet=args.json)
    try:
        result = create_soul_id(args.photos, name, analyzer=args.analyzer, progress=bar, workers=args.workers)
    finally:
        bar.close()
    path = lib.save(result.soul, overwrite=args.overwrite) if result.soul is not None else None
    s = result.report["summary"]
    if args.report:
        from ..soul.paths import atomic_write_bytes
        from ..soul.report import encode_sheet, sheet_from_result

        atomic_write_bytes(args.report, encode_sheet(sheet_from_result(result, f"Soul ID {name}: {s['verdict']}"),
                                                     Path(args.report).suffix))
    if args.json:
        out = {
            "soul_id": None
            if path is None
            else {
                "name": name,
                "path": str(path),
                "counts": {k: s[k] for k in ("photos", "accepted", "rejected", "excluded")},
                "analyzer": result.analyzer,
                "threshold": s.get("threshold"),
            },
            "photos": [
                {k: d[k] for k in ("path", "rating", "reasons", "pose", "face_box", "excluded")}
                for d in result.report["photos"]
            ],
            "summary": s,
        }
        print(json.dumps(out))
    else:
        print(_qa_table(result))
        if path:
            print(f"saved Soul ID {name!r} to {path} ({result.seconds:.1f} s)")
        if args.report:
            print(f"QA sheet written to {args.report}")
    if path is None:
        print(f"soulid: no Soul ID made: none of the {s['photos']} photo(s) passed QA", file=sys.stderr)
        return 2
    return 0


def cmd_list(args) -> int:
    from ..soul.errors import SoulIDError

    lib = library(args)
    names = lib.list()
    rows = []
    for n in names:
        try:
            soul = lib.load(n)
        except SoulIDError as e:  # one unreadable file does not hide the others
            rows.append({"name": n, "error": str(e)})
            continue
        rows.append({"name": n, "photos": len(soul.photos), "verdict": soul.qa_report.get("summary", {}).get("verdict"),
                     "loras": len(soul.loras), "remote_ids": len(soul.remote_ids),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(soul.created))})
    print(f"library: {lib.describe()}", file=sys.stderr)
    if args.json:
        print(json.dumps(names))
        return 0
    if not rows:
        print(f"(no Soul IDs in {lib.dir})")
        return 0
    print(f"{'name':24s} {'photos':>6s}  {'verdict':9s} {'LoRAs':>5s}  created")
    for r in rows:
        if "error" in r:
            print(f"{r['name'][:24]:24s} unreadable: {r['error']}")
        else:
            print(f"{r['name'][:24]:24s} {r['photos']:6d}  {r['verdict'] or '-':9s} {r['loras']:5d}  {r['created']}")
    print(f"{len(rows)} Soul ID(s) in {lib.dir}", file=sys.stderr)
    return 0


def soul_summary(soul) -> dict:
    s = soul.qa_report.get("summary", {})
    return {
        "name": soul.name,
        "created": soul.created,
        "photos": len(soul.photos),
        "analyzers": {k: v.meta() for k, v in soul.analyzers.items()},
        "verdict": s.get("verdict"),
        "angle_coverage": s.get("angle_coverage"),
        "warnings": s.get("warnings", []),
        "keypoint_reference": soul.keypoint_reference,
        "remote_ids": [r.__dict__ for r in soul.remote_ids],
        "log_entries": len(soul.log),
        "loras": {k: v.meta() for k, v in soul.loras.items()},
        "origin": soul.origin,
        "cast": soul.cast,
        "notes": soul.notes,
    }


def cmd_show(args) -> int:
    soul = load_soul(args, args.name)
    info = soul_summary(soul)
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"Soul ID {soul.name}: {info['photos']} photos, verdict {info['verdict']}")
    for k, a in info["analyzers"].items():
        print(f"  {k} ({a['model_id']}): {a['count']} embeddings of {a['embedding_dim']}-D, threshold {a['threshold']:.3f}")
    print(f"  angles: {info['angle_coverage']}")
    for w in info["warnings"]:
        print(f"  warning: {w}")
    for r in info["remote_ids"]:
        print(f"  remote: {r['provider']} {r['id']} ({r['model_version']})")
    from .local_training import lora_lines

    for line in lora_lines(soul):
        print(f"  {line}")
    from ..soul.cast import character_lines

    for line in character_lines(soul):
        print(f"  {line}")
    return 0


def cmd_score(args) -> int:
    from ..soul.score import score_paths

    soul = load_soul(args, args.soul)
    results = score_paths(soul, args.images)
    if args.json:
        print(json.dumps([{k: r.as_dict()[k] for k in ("path", "similarity", "same_person", "reason", "threshold")} for r in results]))
    else:
        for r in results:
            if r.similarity is None:
                print(f"{r.label}: no score ({r.reason})")
            else:
                verdict = "same person" if r.same_person else "different person"
                print(f"{r.label}: similarity {r.similarity:.3f} -> {verdict} (threshold {r.threshold:.3f})")
    missing = [str(p) for p in args.images if not Path(p).is_file()]
    if missing:  # the others were scored; the command still fails
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 0


def cmd_report(args) -> int:
    from ..soul.errors import SoulIDError
    from ..soul.paths import atomic_write_bytes
    from ..soul.report import encode_sheet, sheet_from_soul

    out = Path(args.out)
    try:
        data = encode_sheet(sheet_from_soul(load_soul(args, args.name)), out.suffix)
    except ValueError as e:
        raise SoulIDError(f"--out {args.out}: {e}") from None
    atomic_write_bytes(out, data)
    print(out)
    return 0
