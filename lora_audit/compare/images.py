"""PNG files with A1111 generation parameters, and the labelled grid of a prompt (PIL)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo


def a1111_parameters(prompt: str, negative: str, steps: int, sampler: str, cfg: float, seed: int, width: int,
                     height: int, model: str, lora: str | None, strength: float, lora_hash: str | None) -> str:
    """The text A1111 writes in a PNG's "parameters" chunk (read by its PNG Info tab, Civitai, ComfyUI loaders).

    The LoRA goes into the prompt as ``<lora:name:strength>``, as A1111 writes it, with its hash under
    "Lora hashes" (A1111's short hash: the first 12 hex digits of the file's sha256)."""
    text = prompt + (f" <lora:{lora}:{strength:g}>" if lora else "")
    lines = [text]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    fields = [f"Steps: {steps}", f"Sampler: {sampler}", f"CFG scale: {cfg:g}", f"Seed: {seed}",
              f"Size: {width}x{height}", f"Model: {model}"]
    if lora:
        fields.append(f'Lora hashes: "{lora}: {(lora_hash or "")[:12]}"')
    lines.append(", ".join(fields))
    return "\n".join(lines)


def save_png(img: Image.Image, path: Path, parameters: str) -> bytes:
    """Write the PNG (no timestamps: the same image gives the same bytes) and return its bytes."""
    import io

    info = PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a comparison killed mid-write never leaves half a PNG to be resumed from
    return data


def read_parameters(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            return im.text.get("parameters")  # PNG text chunks (PIL is untyped here: pyproject's mypy overrides)
    except (OSError, ValueError):
        return None


def grid(cells: list[list[Path]], row_labels: list[str], col_labels: list[str], title: str) -> Image.Image:
    """Rows × columns of images with a label column on the left and seed labels on top."""
    font = ImageFont.load_default()
    first = Image.open(cells[0][0])
    w, h = first.size
    scale = max(1, 128 // max(w, h))  # tiny images are upscaled (nearest: pixel art stays crisp) to be seen
    cw, ch = w * scale, h * scale
    label_w = max(120, 7 * max(len(s) for s in row_labels) + 12)
    top = 34
    out = Image.new("RGB", (label_w + cw * len(col_labels), top + ch * len(row_labels)), "white")
    d = ImageDraw.Draw(out)
    d.text((4, 2), title[:120], fill="black", font=font)
    for j, c in enumerate(col_labels):
        d.text((label_w + j * cw + 4, 18), c, fill="black", font=font)
    for i, (label, row) in enumerate(zip(row_labels, cells)):
        d.text((4, top + i * ch + ch // 2 - 6), label, fill="black", font=font)
        for j, p in enumerate(row):
            with Image.open(p) as im:
                out.paste(im.convert("RGB").resize((cw, ch), Image.NEAREST), (label_w + j * cw, top + i * ch))
    return out
