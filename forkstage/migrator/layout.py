"""Which migrations a folder holds, in order, read the way Drizzle reads them.

Three layouts are recognised:

- ``drizzle-journal`` (drizzle-kit <= 0.31): ``meta/_journal.json`` lists entries
  ``{"tag", "when", ...}``; each is ``<tag>.sql``, statements split on
  ``--> statement-breakpoint``.
- ``drizzle-folders`` (drizzle 1.0): one folder per migration,
  ``YYYYMMDDHHMMSS_name/migration.sql``.
- ``plain``: ordered ``NNNN_name.sql`` files, each run as one multi-statement script.

The hash is Drizzle's: sha256 hex of the file decoded as UTF-8 and encoded again (so equal to the
raw bytes' hash for valid UTF-8), CRLF line ends included (drizzle-orm 0.45 and 1.0 hash the file
as read). A journal file checked out with the other line ends (git's autocrlf) is the same
migration: ``alt_sha256``, the hash with CRLF turned into LF, is not taken for an edit either.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from forkstage.errors import BadInput

BREAKPOINT = "--> statement-breakpoint"
JOURNAL = Path("meta") / "_journal.json"
FOLDER_SQL = "migration.sql"
_PLAIN_NAME = re.compile(r"(\d+)_[^/]+\.sql")
_FOLDER_NAME = re.compile(r"(\d{14}).*")
EXPECTED = (
    "expected meta/_journal.json (drizzle-kit), YYYYMMDDHHMMSS_name/migration.sql folders "
    "(drizzle 1.0) or NNNN_name.sql files"
)


class Layout(StrEnum):
    DRIZZLE_JOURNAL = "drizzle-journal"
    DRIZZLE_FOLDERS = "drizzle-folders"
    PLAIN = "plain"


@dataclass(frozen=True)
class Migration:
    name: str  # journal tag, folder name, or plain file name
    file: str  # path relative to the migrations folder, for messages
    statements: tuple[str, ...]
    sha256: str
    alt_sha256: str | None
    created_at: int | None  # Drizzle's created_at: journal `when`, folder timestamp in ms

    def same_content(self, recorded: str) -> bool:
        return recorded in (self.sha256, self.alt_sha256)


@dataclass(frozen=True)
class MigrationSet:
    directory: Path
    layout: Layout
    migrations: tuple[Migration, ...]


def _read(path: Path) -> tuple[str, str, str | None]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    lf = text.replace("\r\n", "\n")
    alt = hashlib.sha256(lf.encode("utf-8")).hexdigest() if lf != text else None
    return text, digest, alt


def _split(text: str) -> tuple[str, ...]:
    return tuple(chunk for chunk in text.split(BREAKPOINT) if chunk.strip())


def folder_millis(name: str) -> int:
    """Drizzle 1.0's created_at: the folder's YYYYMMDDHHMMSS prefix read as UTC, in ms."""
    stamp = datetime.strptime(name[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return int(stamp.timestamp()) * 1000


def detect_layout(directory: Path) -> Layout:
    if not directory.is_dir():
        raise BadInput(f"migrations folder {directory} does not exist: pass --dir")
    if (directory / JOURNAL).is_file():
        return Layout.DRIZZLE_JOURNAL
    folders = [p for p in directory.iterdir() if p.is_dir() and (p / FOLDER_SQL).is_file()]
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix == ".sql"]
    if folders and files:
        raise BadInput(
            f"{directory} mixes migration folders and top-level .sql files "
            f"({files[0].name}): keep one layout"
        )
    if folders:
        return Layout.DRIZZLE_FOLDERS
    if files:
        return Layout.PLAIN
    raise BadInput(f"found no migrations in {directory}: {EXPECTED}")


def _load_journal(directory: Path) -> list[Migration]:
    journal_path = directory / JOURNAL
    try:
        journal = json.loads(journal_path.read_text())
        entries = journal["entries"]
        pairs = [(str(e["tag"]), int(e["when"])) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{journal_path} is not a drizzle-kit journal ({exc})") from None
    seen: dict[int, str] = {}
    out: list[Migration] = []
    for tag, when in pairs:
        if when in seen:
            raise BadInput(
                f"{journal_path}: entries {seen[when]} and {tag} share when={when}; "
                "drizzle tells migrations apart by it: regenerate one of them"
            )
        seen[when] = tag
        path = directory / f"{tag}.sql"
        if not path.is_file():
            raise BadInput(f"{journal_path} lists {tag} but {path.name} is missing")
        text, digest, alt = _read(path)
        out.append(Migration(tag, path.name, _split(text), digest, alt, when))
    return out


def _load_folders(directory: Path) -> list[Migration]:
    out: list[Migration] = []
    for folder in sorted(p for p in directory.iterdir() if (p / FOLDER_SQL).is_file()):
        if not _FOLDER_NAME.fullmatch(folder.name):
            raise BadInput(
                f"migration folder {folder.name} does not start with a YYYYMMDDHHMMSS timestamp"
            )
        try:
            millis = folder_millis(folder.name)
        except ValueError:
            raise BadInput(f"migration folder {folder.name}: invalid timestamp") from None
        text, digest, _ = _read(folder / FOLDER_SQL)
        out.append(
            Migration(
                folder.name, f"{folder.name}/{FOLDER_SQL}", _split(text), digest, None, millis
            )
        )
    return out


def _load_plain(directory: Path) -> list[Migration]:
    numbered: list[tuple[int, str, Path]] = []
    for path in directory.iterdir():
        if not (path.is_file() and path.suffix == ".sql"):
            continue
        match = _PLAIN_NAME.fullmatch(path.name)
        if not match:
            raise BadInput(
                f"{path.name} in {directory} has no NNNN_ prefix: rename it NNNN_name.sql"
            )
        numbered.append((int(match.group(1)), path.name, path))
    out: list[Migration] = []
    for _, name, path in sorted(numbered):
        text, digest, _alt = _read(path)
        statements = (text,) if text.strip() else ()
        out.append(Migration(name, name, statements, digest, None, None))
    return out


def load_migrations(directory: Path) -> MigrationSet:
    """Every migration in ``directory``, in the order they must run."""
    layout = detect_layout(directory)
    loader = {
        Layout.DRIZZLE_JOURNAL: _load_journal,
        Layout.DRIZZLE_FOLDERS: _load_folders,
        Layout.PLAIN: _load_plain,
    }[layout]
    return MigrationSet(directory, layout, tuple(loader(directory)))
