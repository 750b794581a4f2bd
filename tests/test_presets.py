"""Style and motion presets: catalog recipes, name matching against served
style lists (a tiny local server, and the project's Higgsfield stand-in), the
24 h cache, and user overrides."""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from soulid.cli import main
from soulid.soul import motions as M
from soulid.backends.presets import http_fetch_json
from soulid.soul import presets as P
from soulid.soul.paths import cache_dir, config_dir

# The published names (WaveSpeed's Higgsfield Soul list, the garbled "7`" left out).
PUBLISHED = """Creatures, Medieval, Spotlight, Giant People, Red balloon, green editorial, Subway, Library, Realistic,
DigitalCam, Grillz Selfie, Bleached Brows, Sitting on the Street, Crossing the street, Angel Wings, Duplicate,
Quiet luxury, Fireproof, Elevator Mirror, 360 cam, Glitch, FashionShow, PixeletedFace, Sunbathing, Paper Face,
90s Grain, Geominimal, Foggy Morning, Overexposed, Sunset beach, Giant Accessory, RingSelfie, Street view,
90’s Editorial, Rhyme & blues, 2000s Cam, CCTV, 0.5 Outfit, Amalfi Summer, Bimbocore, 0.5 Selfie, Sand,
Vintage PhotoBooth, afterparty cam, Babydoll MakeUp, Through The Glass, Gallery, Eating Food, Swords Hill,
Office beach, Help It's Too Big, Japandi, iPhone, Gorpcore, Indie sleaze, Fairycore, Tumblr, Avant-garde, HairClips,
birthday mess, Clouded Dream, Y2K Posters, tokyo drift, Object Makeup, Graffiti, Sunburnt, hallway noir,
2000s Fashion, Night Beach, Movie, Long legs, General, Nail Check, Coquette core, Mixed Media, Selfcare, Grunge,
Double take, 505room, Flight mode, Escalator, burgundy suit, Fisheye, Shoe Check, Rainy Day, Mt. Fuji, Sea breeze,
Invertethereal, Y2K, Tokyo Streetstyle, chrome exit, Night rider, Artwork, Glazed doll skin makeup, mount view,
2049, blackout fit, Bike mafia, static glow, Nicotine glow, brick shade, dmv, Fish-eye twin, It’s french, cocktail"""
NAMES = [n.strip() for n in PUBLISHED.replace("\n", " ").split(",")]


def test_every_published_name_resolves_to_a_full_local_recipe():
    presets = P.load_presets()
    assert len(NAMES) == 105 and len(presets) == len(NAMES)
    for name in NAMES:
        p = P.get_preset(name)
        assert p.name == name and p.family in P.FAMILIES
        for k in ("lighting", "scene", "framing", "palette", "material", "mood", "negative"):
            assert len(getattr(p, k)) >= 4, f"{name}: empty {k}"
        w, h = P.parse_aspect(p.aspect)
        assert 0.25 <= w / h <= 4 and 3.0 <= p.guidance <= 9.0
        prompt = p.prompt("a woman")
        assert prompt.startswith("a woman, " + p.lighting)  # lighting is the first cue
        assert p.negative in p.negative_prompt() and "watermark" in p.negative_prompt()
    # real recipes, not a template with the name pasted in
    for k in ("lighting", "scene", "framing"):
        values = [getattr(p, k) for p in presets]
        assert len(set(values)) >= 0.9 * len(values), f"{k} repeats across presets"
    assert {p.family for p in presets} == set(P.FAMILIES)


def test_names_match_case_and_punctuation_insensitively():
    assert P.normalise_name("90’s Editorial") == P.normalise_name("90's editorial") == "90seditorial"
    assert P.get_preset("90's EDITORIAL").name == "90’s Editorial"
    assert P.get_preset("its french").name == "It’s french"
    assert P.get_preset("mt fuji").name == "Mt. Fuji"
    assert P.get_preset("Fish eye twin").name == "Fish-eye twin"
    with pytest.raises(P.PresetError, match="did you mean 'Movie'"):
        P.get_preset("Moovie")


def test_strength_decides_how_much_recipe_is_used_and_size_follows_aspect():
    p = P.get_preset("Movie")
    assert p.prompt("x", strength=0) == "x"
    half, full = p.prompt("x", strength=0.5), p.prompt("x", strength=1)
    assert p.lighting in half and p.mood not in half and p.mood in full
    assert p.with_strength(7).strength == 1.0
    w, h = P.get_preset("Vintage PhotoBooth").size(1.0)
    assert w % 64 == 0 and h % 64 == 0 and h > w
    assert p.nearest_aspect(["9:16", "16:9", "1:1"]) == "16:9"


class _Lists(BaseHTTPRequestHandler):
    """Serves style lists like Higgsfield's; the Soul 2 list only at /v2/..."""

    v1 = [{"id": "id-90s", "name": "90's Editorial", "description": "", "preview_url": ""},
          {"id": "id-real", "name": "REALISTIC", "description": "", "preview_url": ""},
          {"id": "id-movie", "name": "Movie", "description": "", "preview_url": ""},
          {"id": "id-unknown", "name": "Not In Catalog"}]
    v2 = {"items": [{"id": "id-real-2", "name": "Realistic"}]}
    motions = [{"id": "m-dolly", "name": "Dolly In"}, {"id": "m-orbit", "name": "360 Orbit"},
               {"id": "m-morph", "name": "Morph"}]
    hits: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.hits.append(self.path)
        body = {"/v1/text2image/soul-styles": self.v1, "/v2/text2image/soul-styles": self.v2,
                "/v1/motions": self.motions}.get(self.path)
        data = json.dumps(body).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def lists_server():
    _Lists.hits = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Lists)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_remote_ids_resolve_by_name_and_are_cached(lists_server):
    fetch = http_fetch_json(lists_server)
    res = P.resolve_remote_ids(fetch)
    assert res.source == "network" and res.error == ""
    by = {p.name: p for p in res.presets}
    assert by["90’s Editorial"].remote_id == "id-90s"
    assert by["Realistic"].remote_ids == {"soul": "id-real", "soul_2": "id-real-2"}
    assert by["Realistic"].remote_id == "id-real-2"  # a soul_2 preset prefers the Soul 2 list
    assert by["Movie"].remote_id == "id-movie" and by["Grunge"].remote_id is None
    assert len(res.unresolved) == 105 - 3
    assert (cache_dir() / P.CACHE_FILE).is_file()
    # within 24 h the cache answers; the server is not asked again
    n = len(_Lists.hits)
    again = P.resolve_remote_ids(fetch)
    assert again.source == "cache" and len(_Lists.hits) == n
    assert P.get_preset("90s editorial").remote_id == "id-90s"  # load_presets reads the cache


def test_offline_stale_and_expired_cache(lists_server):
    def down(path):
        raise ConnectionError("network unreachable")

    res = P.resolve_remote_ids(down)
    assert res.source == "offline" and "network unreachable" in res.error
    assert all(not p.resolved for p in res.presets) and len(res.presets) == 105
    P.resolve_remote_ids(http_fetch_json(lists_server))
    # expire the cache: older than 24 h
    f = cache_dir() / P.CACHE_FILE
    doc = json.loads(f.read_text())
    doc["fetched"] = time.time() - P.CACHE_MAX_AGE - 60
    f.write_text(json.dumps(doc))
    assert P.read_cache(P.CACHE_FILE) is None
    stale = P.resolve_remote_ids(down)
    assert stale.source == "stale cache" and P.get_preset("Movie", presets=stale.presets).remote_id == "id-movie"
    fresh = P.resolve_remote_ids(http_fetch_json(lists_server))
    assert fresh.source == "network" and fresh.fetched > doc["fetched"]


def test_resolution_against_the_higgsfield_standin(monkeypatch):
    from standin.server import KEY_ID, KEY_SECRET, STYLES_V1, STYLES_V2, StandIn

    from soulid.backends.higgsfield import HiggsfieldBackend

    with StandIn() as s:
        monkeypatch.setenv("SOULID_HIGGSFIELD_PLATFORM_URL", s.url)
        monkeypatch.setenv("SOULID_HIGGSFIELD_URL", s.url)
        monkeypatch.setenv("HF_KEY", f"{KEY_ID}:{KEY_SECRET}")
        hb = HiggsfieldBackend()
        res = P.resolve_remote_ids(getattr(hb, "get_list", None) or hb._get_list)
        assert res.source == "network"
        by = {p.key: p for p in res.presets}
        served = {P.normalise_name(it["name"]): it["id"] for it in STYLES_V1}
        in_catalog = [k for k in served if k in by]
        assert len(in_catalog) >= 4  # "Indie Sleaze" (served) == "Indie sleaze" (catalog)
        for k in in_catalog:
            assert by[k].remote_ids["soul"] == served[k]
        v2 = {P.normalise_name(it["name"]): it["id"] for it in STYLES_V2}
        assert by["realistic"].remote_ids["soul_2"] == v2["realistic"]
        # the CLI lists the same state
        assert main(["presets", "--refresh", "--json"]) == 0


def test_cli_presets_lists_family_state_and_recipe(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert all(r["resolved"] is False and r["lighting"] for r in rows)
    assert main(["presets", "--family", "cinema", "--long"]) == 0  # short by default: recipes with --long
    out, err = capsys.readouterr()
    assert "Movie  [cinema]  unresolved" in out and "lighting" in out and "Realistic" not in out
    assert "unresolved" in err


def test_user_override_file_wins_over_catalog(tmp_path, monkeypatch):
    (config_dir() / "presets.json").write_text(json.dumps({"presets": [
        {"name": "movie", "lighting": "single bare bulb overhead", "guidance": 7.5, "remote_id": "my-own-id"},
        {"name": "My Studio", "family": "soul_2", "lighting": "two strip softboxes at 45 degrees", "aspect": "4:5"},
    ]}))
    catalog = {p.name: p for p in P.load_builtin()[0]}
    movie = P.get_preset("Movie")
    assert movie.lighting == "single bare bulb overhead" and movie.guidance == 7.5
    assert movie.framing == catalog["Movie"].framing  # fields not given are kept
    assert movie.source == "catalog+user" and movie.name == "Movie"
    mine = P.get_preset("my studio")
    assert mine.source == "user" and mine.family == "soul_2" and mine.prompt().startswith("two strip")
    assert len(P.load_presets()) == 106
    # a pinned id survives resolution
    res = P.resolve_remote_ids(lambda path: [{"id": "served-id", "name": "Movie"}], presets=P.load_presets())
    assert P.get_preset("Movie", presets=res.presets).remote_id == "my-own-id"
    # $SOULID_PRESETS (YAML) wins over the config-dir file
    y = tmp_path / "team.yaml"
    y.write_text("Movie:\n  lighting: neon sign through rain\n  strength: 0.5\n")
    monkeypatch.setenv("SOULID_PRESETS", str(y))
    assert P.get_preset("Movie").lighting == "neon sign through rain"
    assert P.get_preset("Movie").strength == 0.5


@pytest.mark.parametrize("body, message", [
    ('{"presets": [{"name": "Movie", "guidance": "high"}]}', "field 'guidance'"),
    ('{"presets": [{"name": "Movie", "family": "soul3"}]}', "field 'family'"),
    ('{"presets": [{"name": "Movie", "aspect": "wide"}]}', "field 'aspect'"),
    ('{"presets": [{"name": "Movie", "colour": "red"}]}', "unknown field"),
    ('{"presets": [{"name": "Brand New", "lighting": "x"}]}', "lacks family"),
    ('{"presets": [', "invalid JSON at line 1"),
])
def test_bad_user_file_names_file_and_field(body, message):
    (config_dir() / "presets.json").write_text(body)
    with pytest.raises(P.PresetError, match=message) as e:
        P.load_presets()
    assert "presets.json" in str(e.value)
    assert main(["presets"]) == 2  # the CLI reports it as bad input


def test_motion_presets_match_served_list_by_name(lists_server):
    motions, source, err = M.list_motions(http_fetch_json(lists_server))
    assert source == "network"
    by = {m.name: m for m in motions}
    assert set(M.local_moves()) <= set(by)
    assert by["dolly_in"].remote_id == "m-dolly" and by["dolly_in"].remote_name == "Dolly In"
    assert by["orbit_right"].remote_id == "m-orbit" and by["pan_left"].remote_id is None
    assert by["Morph"].kind == "remote"
    m = M.get_motion("Dolly In", 0.7, motions)
    assert m.name == "dolly_in" and m.as_pair() == ("m-dolly", 0.7)
    assert M.get_motion("pan left", 2.0, motions).as_pair() == ("pan_left", 1.0)
    with pytest.raises(P.PresetError, match="zoom_in"):
        M.get_motion("warp speed", 0.5, motions)
    assert M.list_motions(None)[1] == "cache"  # second listing comes from the cache


def test_cli_motions(capsys):
    assert main(["motions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(M.local_moves())
    assert os.environ.get("HF_KEY") is None
