"""Names shaped like Neon's: word ids (``ep-cool-river-12345678``), passwords and timestamps.

Neon names projects, branches and endpoints with an adjective, a noun and eight digits; local ids
look the same so configs, logs and URLs read as they would in the cloud.
"""

from __future__ import annotations

import random
import secrets
import string
from datetime import UTC, datetime

ADJECTIVES = (
    "autumn",
    "billowing",
    "bitter",
    "bold",
    "broad",
    "calm",
    "cool",
    "crimson",
    "curly",
    "damp",
    "dawn",
    "divine",
    "floral",
    "frosty",
    "gentle",
    "green",
    "hidden",
    "icy",
    "jolly",
    "late",
    "lively",
    "lucky",
    "misty",
    "muddy",
    "noisy",
    "odd",
    "orange",
    "patient",
    "plain",
    "polished",
    "proud",
    "purple",
    "quiet",
    "rapid",
    "restless",
    "round",
    "royal",
    "shiny",
    "shy",
    "silent",
    "snowy",
    "soft",
    "spring",
    "steep",
    "still",
    "summer",
    "sweet",
    "tiny",
    "twilight",
    "wandering",
    "wild",
    "winter",
    "wispy",
    "young",
)
NOUNS = (
    "art",
    "band",
    "base",
    "bird",
    "block",
    "boat",
    "bread",
    "breeze",
    "brook",
    "bush",
    "cake",
    "cell",
    "cherry",
    "cloud",
    "credit",
    "darkness",
    "dew",
    "disk",
    "dream",
    "dust",
    "feather",
    "field",
    "fire",
    "firefly",
    "flower",
    "fog",
    "forest",
    "frog",
    "frost",
    "glade",
    "grass",
    "haze",
    "heart",
    "hill",
    "lake",
    "leaf",
    "meadow",
    "moon",
    "morning",
    "mountain",
    "night",
    "paper",
    "pine",
    "pond",
    "rain",
    "river",
    "sea",
    "shadow",
    "silence",
    "sky",
    "smoke",
    "snow",
    "sound",
    "star",
    "sun",
    "sunset",
    "surf",
    "thunder",
    "tree",
    "union",
    "violet",
    "voice",
    "water",
    "wave",
    "wind",
    "wood",
)


def word_id(prefix: str = "") -> str:
    """``<prefix><adjective>-<noun>-<8 digits>``, e.g. ``br-misty-lake-12345678``."""
    rng = random.SystemRandom()
    return f"{prefix}{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randrange(10**7, 10**8)}"


def new_password() -> str:
    """Shaped like Neon's generated passwords (``npg_`` + 12 letters/digits)."""
    alphabet = string.ascii_letters + string.digits
    return "npg_" + "".join(secrets.choice(alphabet) for _ in range(12))


def now() -> str:
    """A timestamp as Neon's API writes them (UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
