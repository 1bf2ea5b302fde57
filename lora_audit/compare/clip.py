"""Optional metrics from local CLIP weights (``--clip-model DIR``): CLIP text-image score per image, and a
Fréchet distance per model between its images' CLIP embeddings and a folder of reference images (``--reference``).

No download ever: the model loads with ``local_files_only``. Preprocessing is CLIP's own (resize the short side
with bicubic, centre crop, normalise with OpenAI's mean/std) done here with PIL and numpy, so no image processor
(and no torchvision) is needed. The Fréchet distance is the FID formula over CLIP embeddings rather than Inception
features ("FD-CLIP"): comparable between models of one comparison, not with published FID numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lora_audit.compare.safety import check_model_folder
from lora_audit.errors import EvidenceError

_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
_STD = np.array([0.26862954, 0.26130258, 0.27577711])
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Clip:
    def __init__(self, folder: Path, device: str = "cpu"):
        import torch
        from transformers import CLIPModel, CLIPTokenizer

        try:
            check_model_folder(folder, "CLIP model folder")
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True,
                                                   use_safetensors=True).to(device).eval()  # never a pickle
            self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EvidenceError(f"cannot load a CLIP model here: {str(e).splitlines()[0][:160]}", str(folder)) from None
        self.size = int(self.model.config.vision_config.image_size)
        self.device = device
        self.torch = torch

    def _pixels(self, images: list[Image.Image]):
        out = []
        for im in images:
            im = im.convert("RGB")
            w, h = im.size
            s = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BICUBIC)
            left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
            a = np.asarray(im.crop((left, top, left + self.size, top + self.size)), dtype=np.float64) / 255.0
            out.append(((a - _MEAN) / _STD).transpose(2, 0, 1))
        return self.torch.tensor(np.stack(out), dtype=self.torch.float32, device=self.device)

    def image_embeds(self, images: list[Image.Image]) -> np.ndarray:
        with self.torch.inference_mode():
            e = self.model.get_image_features(pixel_values=self._pixels(images))
        e = getattr(e, "pooler_output", e)  # newer transformers return an output object
        return e.float().cpu().numpy()

    def text_embeds(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer(texts, padding="max_length", truncation=True,
                             max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt")
        with self.torch.inference_mode():
            e = self.model.get_text_features(input_ids=ids.input_ids.to(self.device),
                                             attention_mask=ids.attention_mask.to(self.device))
        e = getattr(e, "pooler_output", e)
        return e.float().cpu().numpy()


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """100 × max(cosine, 0), the usual CLIPScore scaling (torchmetrics' definition)."""
    cos = float(image_emb @ text_emb / (np.linalg.norm(image_emb) * np.linalg.norm(text_emb) + 1e-12))
    return 100.0 * max(cos, 0.0)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½); the trace term via the symmetric √Σa Σb √Σa, whose
    eigenvalues are those of Σa Σb, so no general matrix square root (and no scipy) is needed."""
    mu = a.mean(0) - b.mean(0)
    sa = np.cov(a, rowvar=False) if len(a) > 1 else np.zeros((a.shape[1],) * 2)
    sb = np.cov(b, rowvar=False) if len(b) > 1 else np.zeros((b.shape[1],) * 2)
    r = _sqrt_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r @ sb @ r), 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross)


def reference_images(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < 2:
        raise EvidenceError("need at least 2 reference images (png/jpg/webp/bmp) for the Fréchet distance",
                            str(folder))
    return files


def add_clip_metrics(cmp, clip_dir: Path, reference: Path | None = None) -> None:
    """Adds ``clip_score`` to every record's metrics and, with ``reference``, ``cmp.fd_clip[label]`` per row."""
    clip = Clip(Path(clip_dir))
    texts = {p: e for p, e in zip(cmp.settings.prompts, clip.text_embeds(cmp.settings.prompts))}
    by_row: dict[str, list[np.ndarray]] = {}
    for rec in cmp.records:
        with Image.open(cmp.out / rec["image"]) as im:
            emb = clip.image_embeds([im])[0]
        rec["metrics"]["clip_score"] = round(clip_score(emb, texts[rec["prompt"]]), 4)
        by_row.setdefault(rec["model_name"], []).append(emb)
    if reference is not None:
        ref = []
        for p in reference_images(reference):
            with Image.open(p) as im:
                ref.append(clip.image_embeds([im])[0])
        ref_a = np.stack(ref)
        cmp.fd_clip = {label: round(frechet_distance(np.stack(embs), ref_a), 4) for label, embs in by_row.items()}
