"""Procedural 24×24 pixel-art characters ("punks") and their captions. Pillow only, no torch.

Each sprite is drawn from a ``random.Random``: a solid background, a head of one skin type, eyes and mouth, a hair
style or headwear in one colour, and sometimes glasses, an earring or a cigarette. The caption lists the same
attributes, after the trigger tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

GRID = 24
Color = tuple[int, int, int]

BACKGROUNDS: dict[str, Color] = {"blue": (99, 133, 150), "pink": (255, 142, 190), "green": (142, 182, 120),
                                 "purple": (149, 121, 178), "yellow": (230, 200, 90), "gray": (160, 160, 160)}
SKINS: dict[str, Color] = {"light": (219, 177, 128), "medium": (174, 139, 97), "dark": (113, 63, 29),
                           "albino": (234, 217, 217), "alien": (200, 251, 251), "zombie": (125, 162, 105),
                           "ape": (133, 111, 86)}
HAIR_COLORS: dict[str, Color] = {"black": (26, 26, 26), "blonde": (255, 246, 142), "red": (232, 65, 28),
                                 "brown": (92, 56, 14), "purple": (140, 13, 91), "green": (40, 177, 67),
                                 "white": (240, 240, 240)}
HAIRS = ("short hair", "mohawk", "long hair", "cap", "beanie", "bald")
ACCESSORIES = ("sunglasses", "earring", "cigarette")
_OUTLINE: Color = (0, 0, 0)


@dataclass(frozen=True)
class Sprite:
    image: Image.Image  # GRID × GRID, RGB
    caption: str  # without the trigger tokens


def _shade(c: Color, f: float) -> Color:
    return tuple(max(0, min(255, int(v * f))) for v in c)  # type: ignore[return-value]


def _draw_hair(rect: Callable[[int, int, int, int, Color], None], hair: str, hc: Color) -> None:
    if hair == "short hair":
        rect(6, 4, 17, 7, hc)
    elif hair == "mohawk":
        rect(10, 1, 13, 7, hc)
    elif hair == "long hair":
        rect(5, 4, 18, 7, hc)
        rect(5, 8, 6, 21, hc)
        rect(17, 8, 18, 21, hc)
    elif hair == "cap":
        rect(6, 3, 17, 7, hc)
        rect(16, 7, 20, 8, _shade(hc, 0.7))
    elif hair == "beanie":
        rect(6, 2, 17, 7, hc)
        rect(6, 7, 17, 7, _shade(hc, 0.6))


def _draw_extras(rect: Callable[[int, int, int, int, Color], None], put: Callable[[int, int, Color], None],
                 extras: list[str]) -> None:
    if "sunglasses" in extras:
        rect(7, 11, 16, 13, _OUTLINE)
        rect(8, 12, 10, 12, (60, 60, 60))
        rect(13, 12, 15, 12, (60, 60, 60))
    if "earring" in extras:
        put(6, 15, (255, 216, 0))
    if "cigarette" in extras:
        rect(14, 16, 19, 16, (220, 220, 220))
        put(19, 15, (200, 200, 200))


def draw_sprite(rng: random.Random) -> Sprite:
    bg_name, skin_name = rng.choice(sorted(BACKGROUNDS)), rng.choice(sorted(SKINS))
    hair, hair_color_name = rng.choice(HAIRS), rng.choice(sorted(HAIR_COLORS))
    extras = [a for a in ACCESSORIES if rng.random() < 0.3]
    bg, skin, hc = BACKGROUNDS[bg_name], SKINS[skin_name], HAIR_COLORS[hair_color_name]
    px = [[bg for _ in range(GRID)] for _ in range(GRID)]

    def put(x: int, y: int, c: Color) -> None:
        if 0 <= x < GRID and 0 <= y < GRID:
            px[y][x] = c

    def rect(x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                put(x, y, c)

    rect(9, 19, 13, 23, _OUTLINE)  # neck, outlined
    rect(10, 19, 12, 23, skin)
    rect(6, 6, 17, 20, _OUTLINE)  # head, outlined, corners cut
    rect(7, 7, 16, 19, skin)
    for x, y in ((6, 6), (17, 6), (6, 20), (17, 20)):
        put(x, y, bg)
    rect(7, 18, 8, 19, _shade(skin, 0.85))  # jaw shadow
    for x in (9, 13):  # eyes
        put(x, 12, _OUTLINE)
        put(x + 1, 12, (255, 255, 255) if skin_name != "alien" else (90, 90, 200))
    rect(10, 16, 13, 16, _shade(skin, 0.55))  # mouth
    _draw_hair(rect, hair, hc)
    _draw_extras(rect, put, extras)

    image = Image.new("RGB", (GRID, GRID))
    image.putdata([c for row in px for c in row])
    words = ["punk", f"{skin_name} skin"]
    words.append("bald" if hair == "bald" else f"{hair_color_name} {hair}")
    words += extras
    words.append(f"{bg_name} background")
    return Sprite(image=image, caption=", ".join(words))
