"""Where an installation's master keys come from: ``MT_MASTER_KEY``, or the key files in its home.

Key file mode (``MT_MASTER_KEY`` unset): ``<home>/master.key`` holds the current key, generated
on first use; during a rotation ``<home>/master.key.previous`` holds the older keys (one a line)
until ``mt keys rotate --finish``. Both are written atomically with mode 0600, and a process that
finds a ciphertext under a key it does not have re-reads them, so a rotation by ``mt keys rotate``
reaches processes that are already running.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SecretError
from .home import prepare_home
from .secrets import Keys, SecretBox, decode_master_key, generate_master_key
from .user_warnings import warn

if TYPE_CHECKING:
    from .core import MTCore

KEY_FILE_NAME = "master.key"
PREVIOUS_KEY_FILE_NAME = "master.key.previous"


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace ``path`` with ``keys`` (one a line) atomically: a 0600 temporary file, fsync, rename,
    fsync of the folder. A reader sees the old content or the new one, never a partial file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("".join(f"{key}\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def remove_key_file(path: Path) -> bool:
    """Delete a key file (and make the deletion durable); False when it did not exist."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_folder(path.parent)
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyFiles:
    """The key files of one data directory.

    Args:
        home: the data directory.
    """

    def __init__(self, home: Path) -> None:
        self.path = Path(home).absolute() / KEY_FILE_NAME
        self.previous_path = Path(home).absolute() / PREVIOUS_KEY_FILE_NAME
        self._stamp: object = None

    def exists(self) -> bool:
        """Whether the current key file exists."""
        return self.path.exists()

    def lines(self, path: Path) -> list[str]:
        """The keys in one of the files, as written (empty when the file is absent)."""
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"cannot read the key file {path}: {exc}") from None
        return [line.strip() for line in text.splitlines() if line.strip()]

    def load(self) -> Keys:
        """The current key and the previous ones."""
        stamp = self._signature()
        current = self.lines(self.path)
        if not current:
            raise SecretError(f"the key file {self.path} is empty or missing; restore it from a backup")
        keys = (
            decode_master_key(current[0], source=str(self.path)),
            [decode_master_key(line, source=str(self.previous_path)) for line in self.lines(self.previous_path)],
        )
        self._stamp = stamp
        return keys

    def load_if_changed(self) -> Keys | None:
        """The keys when either file changed since the last :meth:`load`, else ``None`` (one stat each)."""
        if self._signature() == self._stamp or not self.exists():
            return None
        return self.load()

    def create(self) -> bool:
        """Write a new random key to the key file unless one exists; True when this call wrote it."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        write_key_file(temporary, [generate_master_key()])
        try:
            os.link(temporary, self.path)  # fails when another process created it first: read theirs
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_folder(self.path.parent)
        return True

    def _signature(self) -> object:
        stamps = []
        for path in (self.path, self.previous_path):
            try:
                info = path.stat()
                stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)


def open_secret_box(core: "MTCore") -> SecretBox:
    """The :class:`SecretBox` of an installation, from ``MT_MASTER_KEY`` or its key files.

    In key file mode a missing key file is generated (with a warning) only while the database
    holds no encrypted secret: a new key could not decrypt them, so that is a :class:`SecretError`.
    """
    settings = core.settings
    from_env = [decode_master_key(k, source="MT_MASTER_KEY_PREVIOUS") for k in settings.previous_master_keys]
    files = KeyFiles(core.home)
    if settings.master_key:
        current = decode_master_key(settings.master_key)
        previous = list(from_env)
        if files.exists():
            file_current, file_previous = files.load()
            previous += [file_current, *file_previous]  # still readable: the installation used them
            if file_current != current:
                warn(
                    f"MT_MASTER_KEY is set and {files.path} holds another key: a process started without"
                    " MT_MASTER_KEY would use the file and could not decrypt what this one encrypts. Keep"
                    " MT_MASTER_KEY set everywhere and move off the file with"
                    " `mt keys rotate --drop-key-file`, or unset MT_MASTER_KEY."
                )
        return SecretBox(current, previous=previous)
    prepare_home(settings)
    if not files.exists():
        _refuse_new_key_over_secrets(core, files.path)
        if files.create():
            warn(
                f"MT_MASTER_KEY is not set: generated a master key in {files.path} (mode 0600). "
                "Anyone who can read that file can decrypt stored API keys; set MT_MASTER_KEY "
                "from a secret store in production, and back the file up with the database."
            )
    current, previous = files.load()

    def reload() -> Keys | None:
        found = files.load_if_changed()
        return None if found is None else (found[0], found[1] + from_env)

    return SecretBox(current, previous=previous + from_env, reload=reload)


def _refuse_new_key_over_secrets(core: Any, path: Path) -> None:
    stored = core.storage.secrets_not_under("")
    if stored:
        key_ids = sorted({secret.ciphertext.split(":")[1] for secret in stored if secret.ciphertext.count(":") >= 2})
        raise SecretError(
            f"MT_MASTER_KEY is not set and the key file {path} does not exist, but {len(stored)} stored"
            f" secret(s) are encrypted under master key id(s) {', '.join(key_ids)}: restore the key file from a"
            " backup or set MT_MASTER_KEY to that key. No new key was generated (it could not decrypt them)."
        )
