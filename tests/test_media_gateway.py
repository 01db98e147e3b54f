"""Media end to end through the gateway and the library (issue 12): each kind read
locally, sent raw or converted, bad media refused naming the part, and the data policy
enforced on what media say. Real gateway, real readers (OCR, PDF text, speech), recording
OpenAI-compatible upstreams on loopback that keep every byte they receive."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from _media_docs import form_png, scanned_pdf, spoken_wav, text_pdf
from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix import AsyncClient
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import Guard, load_detector, load_policy
from modelmix.server import create_app
from modelmix.testing import ListSink

pytest.importorskip("rapidocr_onnxruntime")

FORM = ["Patient: Jane Doe", "SSN: 123-45-6789", "Diagnosis: type 2 diabetes"]
SECRETS = ("Jane Doe", "123-45-6789", "diabetes")
PART_TEXTS = ("Pump P-7 bearing inspection", "Vibration 4.2 mm/s, within limits")


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FaultyUpstream]]:
    started = {name: FaultyUpstream(name).start()
               for name in ("cloud-vision", "local-text", "local-vision")}
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(scope="module")
def detector() -> Any:
    return load_detector()


def _png_url(lines: list[str]) -> str:
    return "data:image/png;base64," + base64.b64encode(form_png(lines)).decode()


def _config(ups: dict[str, FaultyUpstream], names: tuple[str, ...], **media: Any
            ) -> dict[str, Any]:
    kinds = {"cloud-vision": ("cloud", "proprietary", ["text", "image", "audio", "file"]),
             "local-text": ("local", "open", ["text"]),
             "local-vision": ("local", "open", ["text", "image", "audio", "file"])}
    deps = [{"name": n, "provider": "openai-compatible", "base_url": ups[n].url,
             "model": f"m-{n}", "hosting": kinds[n][0], "tier": kinds[n][1],
             "input_modalities": kinds[n][2], "region": "us"} for n in names]
    return {"deployments": deps, "groups": {"any": list(names)}, "router": "ordered",
            "reliability": {"num_retries": 0}, "media": media}


def _service(ups: dict[str, FaultyUpstream], names: tuple[str, ...], policy: str | None,
             detector: Any, **media: Any) -> tuple[ChatService, ListSink]:
    for up in ups.values():
        up.clear()
    sink = ListSink()
    guard = Guard(load_policy(policy), detector) if policy else None
    return ChatService(config_from_dict(_config(ups, names, **media)), usage=sink,
                       guard=guard), sink


def _ask(url: str, part: dict[str, Any], text: str = "What does this say?",
         model: str = "any") -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": text}, part]}]})


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _pdf(data: bytes) -> dict[str, Any]:
    return {"type": "file", "file": {"file_data": "data:application/pdf;base64,"
                                     + base64.b64encode(data).decode(),
                                     "filename": "statement.pdf"}}


def _audio(data: bytes, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(),
                                                   "format": fmt}}


def _sent_text(up: FaultyUpstream) -> str:
    (got,) = up.received
    return "\n".join(p.get("text", "") if isinstance(p, dict) else "" for m in
                     got.body["messages"] for p in
                     (m["content"] if isinstance(m["content"], list)
                      else [{"text": m["content"]}]))


# -- each kind, converted for a text-only deployment ---------------------------------------


@pytest.mark.parametrize(("kind", "expect", "header"), [
    ("image", "Pump P-7", "ocr"), ("pdf", "Invoice 2041", "pdf"),
    ("scanned", "Pump P-7", "ocr,pdf"), ("audio", "meeting", "asr")])
def test_each_kind_is_converted_for_a_text_only_model(
        ups: dict[str, FaultyUpstream], detector: Any, kind: str, expect: str,
        header: str) -> None:
    part = {"image": lambda: _image(_png_url(list(PART_TEXTS))),
            "pdf": lambda: _pdf(text_pdf(["Invoice 2041", "Total due: 120.00 EUR"])),
            "scanned": lambda: _pdf(scanned_pdf(list(PART_TEXTS))),
            "audio": lambda: _audio(spoken_wav("The meeting moved to Tuesday."))}[kind]()
    service, sink = _service(ups, ("local-text",), None, detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, part)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-modelmix-conversions"] == header
    assert "media converted to text" in resp.headers["x-modelmix-route-reason"]
    sent = _sent_text(ups["local-text"])
    assert '<media part="messages.0.content.1"' in sent
    assert expect.lower() in sent.lower()
    assert b"base64" not in ups["local-text"].received[0].raw  # no media left in it
    (rec,) = sink.wait_for(1)
    assert rec.conversions == header and rec.media_ms is not None and rec.media_ms > 0
    (media,) = json.loads(rec.media or "[]")
    assert media["part"] == "messages.0.content.1" and len(media["sha256"]) == 64
    assert media["bytes"] > 0 and "data" not in media


def test_media_go_raw_to_a_deployment_that_takes_them(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    url_ = _png_url(list(PART_TEXTS))
    service, sink = _service(ups, ("cloud-vision", "local-text"), None, detector)
    with serve_app(create_app(service=service)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="any", messages=[{"role": "user", "content": [
                {"type": "text", "text": "Inspect this."}, _image(url_)]}])  # type: ignore[list-item]
    assert raw.headers["x-modelmix-deployment"] == "cloud-vision"
    assert "x-modelmix-conversions" not in raw.headers
    (got,) = ups["cloud-vision"].received
    assert got.body["messages"][0]["content"][1]["image_url"]["url"] == url_
    (rec,) = sink.wait_for(1)
    assert rec.media_ms is None and rec.conversions is None  # no policy: nothing read


def test_convert_always_sends_text_even_when_a_vision_model_could_serve(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    service, _ = _service(ups, ("cloud-vision",), None, detector, convert="always")
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image(_png_url(list(PART_TEXTS))))
    assert resp.status_code == 200 and resp.headers["x-modelmix-conversions"] == "ocr"
    assert "Pump P-7" in _sent_text(ups["cloud-vision"])


def test_convert_never_refuses_media_no_deployment_takes(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    service, _ = _service(ups, ("local-text",), None, detector, convert="never")
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image(_png_url(list(PART_TEXTS))))
    assert resp.status_code == 400 and "no image input" in resp.json()["error"]["message"]
    assert ups["local-text"].count == 0


async def test_library_reads_media_like_the_gateway(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    for up in ups.values():
        up.clear()
    config = config_from_dict(_config(ups, ("cloud-vision", "local-text")))
    async with AsyncClient(config, guard=Guard(load_policy("healthcare"), detector)) as client:
        done = await client.chat(model="any", messages=[
            {"role": "user", "content": [{"type": "text", "text": "File it."},
                                         _image(_png_url(FORM))]}])
    assert done.route.deployment == "local-text" and done.route.conversions == ("ocr",)
    assert "Jane Doe" in _sent_text(ups["local-text"])
    assert ups["cloud-vision"].count == 0


# -- the policy reads media ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_regulated_form_never_reaches_the_cloud(
        ups: dict[str, FaultyUpstream], detector: Any, stream: bool) -> None:
    service, sink = _service(ups, ("cloud-vision", "local-text"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(  # type: ignore[call-overload]
            model="any", stream=stream, messages=[{"role": "user", "content": [
                {"type": "text", "text": "File this intake form."}, _image(_png_url(FORM))]}])
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert raw.headers["x-modelmix-deployment"] == "local-text"
    assert raw.headers["x-modelmix-conversions"] == "ocr"
    assert ups["cloud-vision"].count == 0
    assert "Jane Doe" in _sent_text(ups["local-text"])  # local may read it all
    (rec,) = sink.wait_for(1)
    assert rec.audit is not None and rec.audit.data_class == "regulated"
    assert "US_SSN" in rec.audit.entities


def test_harmless_image_may_reach_the_cloud_once_read(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    service, sink = _service(ups, ("cloud-vision", "local-text"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image(_png_url(list(PART_TEXTS))), text="Is this bearing ok?")
    assert resp.status_code == 200 and resp.headers["x-modelmix-deployment"] == "cloud-vision"
    assert "x-modelmix-conversions" not in resp.headers  # sent as the image it is
    (rec,) = sink.wait_for(1)
    assert rec.media_ms is not None and rec.media_ms > 0  # read for the guard


def test_pseudonymised_values_in_media_go_to_the_cloud_only_as_placeholders(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    card = "4111 1111 1111 1111"
    service, sink = _service(ups, ("cloud-vision",), "finance", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _pdf(scanned_pdf([f"Card: {card}", "Balance: 310.00 USD"])),
                    text="Summarise this statement.")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-modelmix-conversions"] == "ocr,pdf"
    (got,) = ups["cloud-vision"].received
    digits = card.replace(" ", "")
    assert card.encode() not in got.raw and digits.encode() not in got.raw
    assert b"application/pdf" not in got.raw  # the scan itself never left
    assert "Balance" in _sent_text(ups["cloud-vision"])
    (rec,) = sink.wait_for(1)
    assert rec.audit is not None and rec.audit.pseudonymised >= 1


def test_unfetched_image_url_counts_as_unread(ups: dict[str, FaultyUpstream],
                                             detector: Any) -> None:
    service, _ = _service(ups, ("cloud-vision", "local-vision"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image("https://images.example.com/form.png"))
    assert resp.status_code == 200 and resp.headers["x-modelmix-deployment"] == "local-vision"
    assert "media-unread" in resp.headers["x-modelmix-route-reason"]
    assert ups["cloud-vision"].count == 0


# -- bad media -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


TINY = "data:image/png;base64," + _b64(form_png(["Pump P-7"]))


@pytest.mark.parametrize(("part", "status", "needle"), [
    (_image("data:image/png;base64,bm90IGFuIGltYWdl"), 400, "no known type"),
    (_image("data:image/png;base64,@@@@"), 400, "not valid base64"),
    (_image("data:image/jpeg;base64," + _b64(form_png(["x"]))), 400, "declared 'image/jpeg'"),
    (_image("data:image/jane doe 123-45-6789;base64," + _b64(form_png(["x"]))), 400,
     "declared an unrecognised value"),
    (_image("data:application/pdf;base64,JVBERi0xLjQ="), 400, "must hold an image"),
    (_image("ftp://example.com/a.png"), 400, "data URL or an http(s) URL"),
    (_audio(b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"), 400, "WAV audio is corrupt"),
    (_audio(b"ID3\x03\x00\x00\x00\x00\x00\x00", "ogg"), 400, "unsupported audio format"),
    (_audio(b"ID3\x03\x00\x00\x00\x00\x00\x00", "123456789"), 400,
     "format an unrecognised value"),
    ({"type": "file", "file": {"file_id": "file-abc"}}, 400, "file_id"),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,"
                               + _b64(b"%PDF-1.4\n1 0 obj")}}, 400, "truncated"),
    (_image("data:image/png;base64," + _b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)), 400,
     "corrupt"),
], ids=["garbage", "bad-base64", "mislabelled", "type-not-echoed", "pdf-as-image", "ftp",
        "corrupt-wav", "ogg", "format-not-echoed", "file-id", "truncated-pdf", "corrupt-png"])
def test_bad_media_get_a_clear_error_naming_the_part(
        ups: dict[str, FaultyUpstream], detector: Any, part: dict[str, Any], status: int,
        needle: str) -> None:
    service, sink = _service(ups, ("cloud-vision",), None, detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, part)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == "messages.0.content.1" and needle in error["message"]
    assert error["message"].startswith("messages.0.content.1: ")
    assert error["code"] == "invalid_media"
    assert ups["cloud-vision"].count == 0
    assert sink.wait_for(1)[0].status_code == status


@pytest.mark.parametrize(("part", "needle"), [
    ({**_image(TINY), "caption": "Patient Jane Doe, SSN 123-45-6789"}, "may not carry 'caption'"),
    ({"type": "image_url", "image_url": {"url": TINY, "alt": "Jane Doe"}},
     "image_url.alt: Extra inputs are not permitted"),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                               "file_id": "file-1"}}, "not both"),
], ids=["part-extra", "image-url-extra", "file-data-and-id"])
def test_nothing_travels_unread_beside_media(ups: dict[str, FaultyUpstream], detector: Any,
                                            part: dict[str, Any], needle: str) -> None:
    """Found by attack: a field beside the media (a caption on the part, an ``alt`` in
    ``image_url``) went to the cloud with the raw image, unscreened."""
    service, _ = _service(ups, ("cloud-vision", "local-text"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, part)
    assert resp.status_code == 400 and needle in resp.json()["error"]["message"], resp.text
    assert "123-45-6789" not in resp.text
    assert ups["cloud-vision"].count == 0 and ups["local-text"].count == 0


def test_oversized_part_is_413(ups: dict[str, FaultyUpstream], detector: Any) -> None:
    service, _ = _service(ups, ("cloud-vision",), None, detector, max_part_bytes=1000)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image(_png_url(list(PART_TEXTS))))
    assert resp.status_code == 413
    error = resp.json()["error"]
    assert error["code"] == "media_too_large" and error["param"] == "messages.0.content.1"


def test_too_many_parts_is_refused(ups: dict[str, FaultyUpstream], detector: Any) -> None:
    service, _ = _service(ups, ("cloud-vision",), None, detector, max_parts=2)
    tiny = _image(_png_url(["a"]))
    with serve_app(create_app(service=service)) as url:
        resp = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "any", "messages": [{"role": "user", "content": [tiny, tiny, tiny]}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages.0.content.2"


# -- what leaves is what was read (found by attack) -----------------------------------------


def _cloud_image(up: FaultyUpstream) -> Any:
    from PIL import Image

    (got,) = up.received
    url = got.body["messages"][0]["content"][1]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def _harmless_then_form_gif() -> bytes:
    from PIL import Image

    first = Image.open(io.BytesIO(form_png(list(PART_TEXTS)))).convert("RGB")
    second = Image.open(io.BytesIO(form_png(FORM))).convert("RGB").resize(first.size)
    out = io.BytesIO()
    first.save(out, "GIF", save_all=True, append_images=[second], duration=500)
    return out.getvalue()


def _png_with_text_chunk() -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Patient Jane Doe, SSN 123-45-6789")
    out = io.BytesIO()
    Image.open(io.BytesIO(form_png(list(PART_TEXTS)))).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _form_under_transparent_alpha() -> bytes:
    from PIL import Image

    form = Image.open(io.BytesIO(form_png(FORM))).convert("RGBA")
    form.putalpha(0)  # the pixels hold the form; the alpha hides it all
    out = io.BytesIO()
    form.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("make", [_harmless_then_form_gif, _png_with_text_chunk,
                                  _form_under_transparent_alpha],
                         ids=["later-frame", "png-text-chunk", "hidden-under-alpha"])
def test_an_image_sent_raw_is_what_the_guard_read(
        ups: dict[str, FaultyUpstream], detector: Any, make: Any) -> None:
    data = make()
    mime = "image/gif" if data.startswith(b"GIF") else "image/png"
    service, _ = _service(ups, ("cloud-vision", "local-text"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image(f"data:{mime};base64,{_b64(data)}"))
    assert resp.status_code == 200 and resp.headers["x-modelmix-deployment"] == "cloud-vision"
    (got,) = ups["cloud-vision"].received
    assert b"123-45-6789" not in got.raw and b"Jane Doe" not in got.raw
    image = _cloud_image(ups["cloud-vision"])
    assert image.format == "PNG" and getattr(image, "n_frames", 1) == 1
    assert image.mode == "RGB" and not image.info.get("Comment")
    if make is _form_under_transparent_alpha:
        assert image.getextrema() == ((255, 255), (255, 255), (255, 255))  # white, as read


def test_pdf_metadata_never_reaches_the_cloud(ups: dict[str, FaultyUpstream],
                                              detector: Any) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_author("Jane Doe 123-45-6789")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Pump P-7 bearing inspection: within limits")
    service, _ = _service(ups, ("cloud-vision", "local-text"), "healthcare", detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _pdf(bytes(pdf.output())))
    assert resp.status_code == 200, resp.text
    # a PDF is not read whole (metadata, annotations, attachments): it goes as its text
    assert resp.headers["x-modelmix-conversions"] == "pdf"
    (got,) = ups["cloud-vision"].received
    assert b"Jane Doe" not in got.raw and b"application/pdf" not in got.raw
    assert "Pump P-7" in _sent_text(ups["cloud-vision"])


def test_a_read_over_its_time_limit_leaves_the_part_unread(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    """Found by attack: long reads had no deadline, so a few big scans stalled every
    request behind them. Past ``media.read_timeout_s`` the part counts as unread."""
    service, _ = _service(ups, ("cloud-vision", "local-vision"), "healthcare", detector,
                          read_timeout_s=0.001)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _pdf(scanned_pdf(list(PART_TEXTS))))
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-modelmix-deployment"] == "local-vision"
    assert "media-unread" in resp.headers["x-modelmix-route-reason"]
    assert ups["cloud-vision"].count == 0


def test_audio_reading_stops_at_its_deadline() -> None:
    """Found by attack: audio reads had no deadline, so two long notes whose clients
    left blocked every read behind them."""
    from modelmix.media import ReadTimedOut
    from modelmix.media._readers import read_audio

    with pytest.raises(ReadTimedOut, match="after decoding"):
        read_audio(spoken_wav("one two three"), mime="audio/wav", max_s=60,
                   where="messages.0.content.1", deadline=0.0)


def test_pdf_reading_stops_at_its_deadline() -> None:
    from modelmix.media import ReadTimedOut
    from modelmix.media._readers import read_pdf

    with pytest.raises(ReadTimedOut, match="page 1 of 1"):
        read_pdf(scanned_pdf(["a"]), max_pages=5, where="messages.0.content.1", deadline=0.0)


def test_an_image_url_that_cannot_be_fetched_or_sent_is_refused_naming_it(
        ups: dict[str, FaultyUpstream], detector: Any) -> None:
    """Found by a new user: with fetching off and no deployment taking images, the 404
    named the model, not the part that could not be served."""
    service, _ = _service(ups, ("local-text",), None, detector)
    with serve_app(create_app(service=service)) as url:
        resp = _ask(url, _image("https://images.example.com/form.png"))
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "messages.0.content.1" and "media.fetch is off" in error["message"]
