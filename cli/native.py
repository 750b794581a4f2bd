"""``soulid refs | lora attach|list|remove | char import|export``: a Soul ID's references,
persona LoRAs and Omnichar ``.char`` interop."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import library, load_soul


def register(sub: argparse._SubParsersAction) -> None:
    from ..soul.references import CROP_MODES
    from ..soul.soulfile import LORA_ARCHITECTURES

    p = sub.add_parser("refs", help="write a Soul ID's best reference images (QA rank + angle diversity)")
    p.add_argument("name", help="Soul ID name in the library, or a .soulid file")
    p.add_argument("--k", type=int, default=3, help="how many (default 3)")
    p.add_argument("--size", type=int, default=1024, help="longest side, px (default 1024)")
    p.add_argument("--crop", choices=CROP_MODES, default="head")
    p.add_argument("--all", action="store_true", help="every accepted photo in QA order (a training set)")
    p.add_argument("--out", required=True, help="folder for NN_role.png files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_refs)

    lora = sub.add_parser("lora", help="persona LoRAs stored in a Soul ID").add_subparsers(dest="lora_cmd",
                                                                                           metavar="ACTION")
    p = lora.add_parser("attach", help="store a LoRA file in a Soul ID for an architecture")
    p.add_argument("name")
    p.add_argument("file", help=".safetensors LoRA")
    p.add_argument("--arch", required=True, choices=LORA_ARCHITECTURES)
    p.add_argument("--trigger", default="", help="trigger words the LoRA was trained with")
    p.add_argument("--base", default="", help="base model it was trained on")
    p.set_defaults(func=cmd_lora_attach)
    p = lora.add_parser("list", help="list a Soul ID's LoRAs")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lora_list)
    p = lora.add_parser("remove", help="remove a Soul ID's LoRA for an architecture")
    p.add_argument("name")
    p.add_argument("arch", choices=LORA_ARCHITECTURES)
    p.set_defaults(func=cmd_lora_remove)

    char = sub.add_parser("char", help="Omnichar .char import / export").add_subparsers(dest="char_cmd",
                                                                                       metavar="ACTION")
    p = char.add_parser("export", help="write a Soul ID as a .char (references in role order, description, LoRAs)")
    p.add_argument("name")
    p.add_argument("file", help="FILE.char")
    p.add_argument("--k", type=int, default=None, help="references to export (default: every distinct photo)")
    p.add_argument("--description", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_char_export)
    p = char.add_parser("import", help="make a Soul ID from a .char (QA and analysis on its references)")
    p.add_argument("file")
    p.add_argument("--name", default=None, help="Soul ID name (default: the character's)")
    p.add_argument("--analyzer", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_char_import)


def cmd_refs(args) -> int:
    from ..soul.imageio import encode_png
    from ..soul.paths import atomic_write_bytes
    from ..soul.references import reference_images

    soul = load_soul(args, args.name)
    refs = reference_images(soul, k=args.k, size=args.size, crop=args.crop, all_photos=args.all)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = refs.as_dict()
    for n, (img, entry) in enumerate(zip(refs.images, info["references"])):
        path = out / f"{n + 1:02d}_{entry['role']}.png"
        atomic_write_bytes(path, encode_png(img))
        entry["file"] = str(path)
    if args.json:
        print(json.dumps(info))
    else:
        for e in info["references"]:
            print(f"{e['position']:2d}  {e['role']:20s} {e['rating']:8s} {e['source']}  -> {e['file']}")
        print(f"{info['count']} reference(s), {info['width']}x{info['height']} px, crop {info['crop']}")
    return 0


def _save(args, soul) -> Path:
    return library(args).save(soul, overwrite=True)


def cmd_lora_attach(args) -> int:
    from ..soul.lorafile import read_lora_file

    soul = library(args).load(args.name)
    p = Path(args.file)
    data = read_lora_file(p)
    meta = {"source": "attached", "file": p.name, "trigger": args.trigger, "base_model": args.base}
    lora = soul.attach_lora(args.arch, data, meta)
    path = _save(args, soul)
    print(f"attached {p.name} to {soul.name} as its {lora.arch} persona LoRA ({len(data)} bytes) in {path}")
    return 0


def cmd_lora_list(args) -> int:
    from .common import shown

    soul = load_soul(args, args.name)
    rows = {a: lo.meta() for a, lo in soul.loras.items()}
    if args.json:
        print(json.dumps(rows, default=str))
    elif not rows:
        print(f"{soul.name}: no persona LoRAs")
    else:
        for a, m in rows.items():
            extra = shown(", ".join(f"{k} {m[k]}" for k in ("source", "rank", "steps", "trigger", "base_model")
                                    if m.get(k)))
            print(f"{a:14s} {m['bytes']:>12d} bytes  sha256 {m['sha256'][:12]}  {extra}")
    return 0


def cmd_lora_remove(args) -> int:
    from ..soul.errors import SoulFileError

    soul = library(args).load(args.name)
    if args.arch not in soul.loras:
        raise SoulFileError(f"Soul ID {soul.name!r} has no persona LoRA for {args.arch!r} "
                            f"(has: {', '.join(sorted(soul.loras)) or 'none'})")
    del soul.loras[args.arch]
    _save(args, soul)
    print(f"removed the {args.arch} persona LoRA from {soul.name}")
    return 0


def cmd_char_export(args) -> int:
    from ..soul.charfile import export_char

    res = export_char(load_soul(args, args.name), args.file, k=args.k, description=args.description,
                      overwrite=args.overwrite)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"wrote {res['path']}: {len(res['references'])} references "
              f"({', '.join(r['role'] for r in res['references'])}); LoRAs: {', '.join(res['loras']) or 'none'}")
    return 0


def cmd_char_import(args) -> int:
    import sys

    from ..soul.charfile import import_char, read_char
    from ..soul.errors import LibraryError, NoUsablePhotos
    from ..soul.library import validate_name

    lib = library(args)
    # The name it will get, checked before any photo is analysed (reading the
    # file is quick; the face analysis is what takes time).
    name = validate_name(args.name) if args.name else validate_name(read_char(args.file).name)
    if lib.exists(name) and not args.overwrite:
        raise LibraryError(f"a Soul ID named {name!r} already exists in {lib.dir}; pass --overwrite to replace it")
    result, contents = import_char(args.file, name=name, analyzer=args.analyzer)
    if result.soul is None:
        raise NoUsablePhotos(f"{args.file}: none of the {len(result.photos)} references passed QA")
    result.soul.name = validate_name(result.soul.name)
    path = lib.save(result.soul, overwrite=args.overwrite)
    s = result.report["summary"]
    if args.json:
        print(json.dumps({"name": result.soul.name, "path": str(path), "summary": s,
                          "loras": sorted(result.soul.loras), "skipped": contents.skipped}))
    else:
        print(f"imported {args.file} as Soul ID {result.soul.name!r}: {s['accepted']} of {s['photos']} references "
              f"accepted, verdict {s['verdict']}; LoRAs: {', '.join(sorted(result.soul.loras)) or 'none'} -> {path}")
        for note in contents.skipped:
            print(f"skipped: {note}", file=sys.stderr)
    return 0
