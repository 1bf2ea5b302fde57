"""The vote page is blind in the bytes (no PNG text chunk, EXIF or XMP in a served image names a model), and the
server answers only to a loopback Host (DNS rebinding)."""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_audit.votes.blind_image import NotAnImage, strip_metadata
from lora_audit.votes.server import create_app, is_loopback_host

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

LOCAL = "http://127.0.0.1:8765"
MODELS = ["basemodel_qx", "lora_zeta_v1 @0.75", "lora_omega_v2 @1.25"]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _with_metadata(png: bytes, words: list[str]) -> bytes:
    """The PNG with every kind of metadata chunk naming ``words``, as A1111 and other tools write them."""
    text = " ".join(words).encode("latin-1")
    extra = (_chunk(b"tEXt", b"parameters\x00" + text)
             + _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(text))
             + _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + text)
             + _chunk(b"eXIf", b"MM\x00*" + text)
             + _chunk(b"iCCP", text[:79] + b"\x00\x00" + zlib.compress(b"profile " + text))
             + _chunk(b"tIME", b"\x07\xea\x01\x01\x00\x00\x00")
             + _chunk(b"prVt", text))
    iend = png.rindex(b"IEND") - 4
    # metadata before and after IDAT, and a trailer after IEND
    ihdr_end = 8 + 25
    return png[:ihdr_end] + extra + png[ihdr_end:iend] + _chunk(b"tEXt", b"Software\x00" + text) + png[iend:] + text


def _leaks(folder: Path) -> list[str]:
    data = json.loads((folder / "comparison.json").read_text())
    out = set()
    for c in data["comparisons"]:
        for m in c["models"]:
            out |= {m["name"], m["image"], Path(m["image"]).name}
            name, _, strength = m["name"].partition(" @")
            out.add(name)
            if strength:
                out |= {f"@{strength}", f"<lora:{name}:{strength}>"}
            if m["lora"]:
                out |= {m["lora"], Path(m["lora"]).name, Path(m["lora"]).stem}
    return sorted(out)


@pytest.fixture
def folder(tmp_path):
    f = make_comparison(tmp_path / "cmp", models=MODELS, prompts=["a knight", "a punk"], seeds=[1, 2])
    data = json.loads((f / "comparison.json").read_text())
    for c in data["comparisons"]:
        for m in c["models"]:
            p = f / m["image"]
            name, _, strength = m["name"].partition(" @")
            words = [m["name"], f"<lora:{name}:{strength}>" if strength else "", m["lora"] or "", m["image"],
                     "Lora hashes:", f"Model: {m['base_model']}"]
            p.write_bytes(_with_metadata(p.read_bytes(), words))
    return f


def test_served_images_name_no_model_label_path_or_strength(folder):
    leaks = _leaks(folder)
    on_disk = b"".join(p.read_bytes() for p in sorted(folder.glob("images/**/*.png")))
    assert all(w.encode() in on_disk for w in leaks if "/" not in w or w.startswith("/loras"))  # the test can fail
    c = TestClient(create_app(folder, "best-of", "alice"), base_url=LOCAL)
    served = 0
    item = c.get("/api/state").json()["item"]
    while item is not None:
        for url in item["images"]:  # fetched before this item is voted on
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            body = r.content
            assert body.startswith(b"\x89PNG\r\n\x1a\n") and body.endswith(_chunk(b"IEND", b""))
            for w in leaks:
                assert w.encode() not in body, f"{w!r} in the served bytes of {url}"
            for tag in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"tIME", b"prVt"):
                assert tag not in body
            assert not any(w in json.dumps(dict(r.headers)) for w in leaks)
            served += 1
        r = c.post("/api/vote", json={"token": item["token"], "order": item["order"], "choice": 1})
        assert r.status_code == 200
        item = r.json()["item"]
    assert served == 4 * len(MODELS)
    # the files on disk keep their metadata
    assert b"".join(p.read_bytes() for p in sorted(folder.glob("images/**/*.png"))) == on_disk


def test_stripped_png_has_the_same_pixels(folder):
    PIL = pytest.importorskip("PIL.Image")
    p = next(folder.glob("images/**/*.png"))
    body, kind = strip_metadata(p.read_bytes())
    with PIL.open(p) as a, PIL.open(io.BytesIO(body)) as b:
        assert "parameters" in a.info and not b.info
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def test_jpeg_and_webp_lose_exif_xmp_and_comments(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    secret = b"lora_zeta_v1 <lora:lora_zeta_v1:0.75>"
    im = Image.new("RGB", (16, 16), (200, 30, 90))
    exif = Image.Exif()
    exif[0x010E] = secret.decode()  # ImageDescription
    exif[0x9286] = secret.decode()  # UserComment
    for fmt, kw in (("JPEG", {"comment": secret, "exif": exif.tobytes(), "xmp": secret}),
                    ("WEBP", {"exif": exif.tobytes(), "xmp": secret, "lossless": True})):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        raw = buf.getvalue()
        assert secret in raw
        body, kind = strip_metadata(raw + (secret if fmt == "JPEG" else b""))
        assert secret not in body and b"lora_zeta" not in body and kind == f"image/{fmt.lower()}"
        with Image.open(io.BytesIO(body)) as out:
            out.load()
            assert out.size == (16, 16) and not out.info.get("exif") and not out.info.get("xmp")
            assert "comment" not in out.info
            if fmt == "WEBP":
                assert out.convert("RGB").getpixel((3, 3)) == (200, 30, 90)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xffIHDR",
                                  b"\xff\xd8\xff\xe1\xff\xff", b"RIFF\x04\x00\x00\x00WEBP"])
def test_malformed_images_are_refused_not_passed_through(data):
    with pytest.raises(NotAnImage):
        strip_metadata(data)


def test_a_cut_image_is_not_served(folder):
    c = TestClient(create_app(folder, "best-of", "alice"), base_url=LOCAL)
    item = c.get("/api/state").json()["item"]
    for p in folder.glob("images/**/*.png"):
        data = p.read_bytes()
        p.write_bytes(data[: data.index(b"IDAT") + 10])
    r = c.get(item["images"][0])
    assert r.status_code == 415 and b"lora_" not in r.content


# --- DNS rebinding ------------------------------------------------------------------------------------------------

LOOPBACK = ["localhost", "localhost:8765", "LOCALHOST:80", "127.0.0.1", "127.0.0.1:8765", "127.1.2.3:9",
            "[::1]", "[::1]:8765", "::1"]
FOREIGN = ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "localhost.evil.example", "0.0.0.0:8765",
           "10.0.0.7", "192.168.1.2:8765", "[::2]:8765", "[::1]x", "[::1]:80:80", "127.0.0.1:port", "", "testserver"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are_served(folder, host):
    assert is_loopback_host(host)
    c = TestClient(create_app(folder, "best-of", "alice"), base_url=LOCAL)
    assert c.get("/api/state", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", FOREIGN)
def test_other_hosts_are_refused_on_every_route(folder, host):
    assert not is_loopback_host(host)
    c = TestClient(create_app(folder, "best-of", "alice"), base_url=LOCAL)
    item = c.get("/api/state").json()["item"]
    for method, url, body in (("GET", "/", None), ("GET", "/api/state", None), ("GET", item["images"][0], None),
                              ("POST", "/api/vote", {"token": item["token"], "order": item["order"], "choice": 1}),
                              ("POST", "/api/undo", {})):
        r = c.request(method, url, json=body, headers={"host": host})
        assert r.status_code == 400, (method, url)
        assert "loopback" in r.json()["error"] and b"PNG" not in r.content
    assert c.get("/api/state").json()["done"] == 0  # the refused vote was not stored


def test_allow_remote_serves_any_host(folder):
    c = TestClient(create_app(folder, "best-of", "alice", allow_remote=True), base_url="http://evil.example")
    assert c.get("/api/state").status_code == 200
    assert c.get("/", headers={"host": "192.168.1.2:8765"}).status_code == 200


def test_the_page_escapes_what_the_voter_typed(folder):
    """The one jinja2 page is autoescaped: a voter name with HTML is shown as text (prompts and notes are set with
    textContent by the page's script)."""
    c = TestClient(create_app(folder, "best-of", '<script>alert("x")</script>'), base_url=LOCAL)
    page = c.get("/").text
    assert '<script>alert("x")</script>' not in page and "&lt;script&gt;alert(" in page
