"""Master key rotation (``mt keys rotate``): new key, re-encrypted secrets, and what to keep.

Key file mode (``MT_MASTER_KEY`` unset): a new key is generated and written to
``<home>/master.key``, the old one kept readable in ``master.key.previous``, every secret
re-encrypted; ``--finish`` re-encrypts what running processes wrote meanwhile and deletes the
previous file. With ``MT_MASTER_KEY`` the operator holds the keys: rotation re-encrypts under it,
refuses to leave a key file holding another key behind, and says which variables to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import KeyRotationError
from .master_keys import KeyFiles, remove_key_file, write_key_file
from .secrets import decode_master_key, generate_master_key

if TYPE_CHECKING:
    from .core import MTCore


@dataclass
class RotationReport:
    """What a rotation did and what the operator must keep."""

    rotated: int
    skipped: int
    key_id: str
    keep: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The report as the lines ``mt keys rotate`` prints."""
        head = f"rotated {self.rotated} secrets to master key {self.key_id}"
        if self.skipped:
            head += f" ({self.skipped} changed meanwhile and were left as they were; run it again)"
        return "\n".join([head, *self.keep])


def rotate_master_key(core: "MTCore", *, drop_key_file: bool = False) -> RotationReport:
    """Re-encrypt every stored secret under a new master key; see the module docstring."""
    if core.settings.master_key:
        return _rotate_to_environment_key(core, drop_key_file)
    if drop_key_file:
        raise KeyRotationError("--drop-key-file moves an installation to MT_MASTER_KEY: set MT_MASTER_KEY first")
    box = core.secrets  # creates the key file on a fresh installation
    files = KeyFiles(core.home)
    old = files.lines(files.path)[0]
    earlier = [line for line in files.lines(files.previous_path) if line != old]
    write_key_file(files.previous_path, [old, *earlier])  # first: the old key is never lost
    write_key_file(files.path, [generate_master_key()])
    box.refresh()
    counts = core.rotate_secrets()
    return RotationReport(counts["rotated"], counts["skipped"], box.current_key_id, keep=[
        f"keep {files.path}: it holds the new key, the only one that decrypts them now; back it up with"
        " the database",
        f"the old key stays readable in {files.previous_path} for processes still running with it; once they"
        " have restarted, run `mt keys rotate --finish` to re-encrypt what they wrote meanwhile and delete it",
    ])


def _rotate_to_environment_key(core: "MTCore", drop_key_file: bool) -> RotationReport:
    files = KeyFiles(core.home)
    current = decode_master_key(core.settings.master_key or "")
    if files.exists() and files.load()[0] != current and not drop_key_file:
        raise KeyRotationError(
            f"MT_MASTER_KEY is set, but this installation's key file {files.path} holds another key: after the"
            " rotation the file would decrypt nothing, and any process started without MT_MASTER_KEY would use"
            " it and fail. Nothing was changed. Either keep using the key file: unset MT_MASTER_KEY and"
            " MT_MASTER_KEY_PREVIOUS and run `mt keys rotate` (it writes the new key to the file); or move to"
            " MT_MASTER_KEY: run this again with --drop-key-file and keep MT_MASTER_KEY set for every process"
        )
    counts = core.rotate_secrets()
    box = core.secrets
    keep = [
        f"keep MT_MASTER_KEY (master key {box.current_key_id}) set for every process using {core.home}: it is"
        " the only key that decrypts them now"
    ]
    if drop_key_file and files.exists():
        _require_all_under(core, box.current_key_id, "deleting the key file")
        remove_key_file(files.previous_path)
        remove_key_file(files.path)
        keep.append(f"deleted {files.path}: a process started without MT_MASTER_KEY now fails with SecretError"
                    " instead of using it")
    if core.settings.previous_master_keys:
        keep.append("keep MT_MASTER_KEY_PREVIOUS set until every process runs with the new MT_MASTER_KEY, then"
                    " run `mt keys rotate --finish` and unset it")
    return RotationReport(counts["rotated"], counts["skipped"], box.current_key_id, keep=keep)


def finish_rotation(core: "MTCore") -> RotationReport:
    """End a rotation: re-encrypt stragglers, then forget the previous keys (delete the previous
    key file, or tell the operator to unset ``MT_MASTER_KEY_PREVIOUS``)."""
    counts = core.rotate_secrets()
    box = core.secrets
    _require_all_under(core, box.current_key_id, "finishing the rotation")
    files = KeyFiles(core.home)
    if core.settings.master_key:
        keep = [f"every stored secret is under MT_MASTER_KEY (master key {box.current_key_id}): keep it set;"
                " MT_MASTER_KEY_PREVIOUS is no longer needed, unset it"]
    else:
        removed = remove_key_file(files.previous_path)
        keep = [(f"deleted {files.previous_path}; " if removed else "") + f"keep {files.path}: it holds the"
                " only key that decrypts them; back it up with the database"]
    return RotationReport(counts["rotated"], counts["skipped"], box.current_key_id, keep=keep)


def _require_all_under(core: "MTCore", key_id: str, doing: str) -> None:
    left = core.storage.secrets_not_under(key_id)
    if left:
        raise KeyRotationError(
            f"{len(left)} stored secret(s) changed while they were re-encrypted and are still under an older key;"
            f" not {doing}: run the command again"
        )
