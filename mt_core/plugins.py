"""Plugin manager: loads default and installed plugins, isolates broken ones, and keeps registries."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .fields import FieldSpec, field_specs
from .hookspecs import FieldDeclaration
from .user_warnings import PACKAGE_DIR

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mt_core"
DEFAULT_PLUGINS = (
    "mt_core.default_plugins.openai_provider",
    "mt_core.default_plugins.azure_openai",
    "mt_core.default_plugins.huggingface",
    "mt_core.default_plugins.executors",
)
REGISTER_HOOKS = ("mt_register_tools", "mt_register_llm_providers", "mt_register_executors")


def normalize_dist_name(name: str) -> str:
    """Normalize a distribution name the way PEP 503 does (``My_Pkg`` -> ``my-pkg``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PluginInfo:
    """What ``mt plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    module: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The info as a JSON-ready dict."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": list(self.hooks),
            "error": self.error,
        }


@dataclass(frozen=True)
class PackageTool:
    """A tool registered by a plugin through ``mt_register_tools``.

    ``tool`` is a validated instance (the registered one, or one made from a registered class
    with no arguments); ``factory`` is the registered class, or ``None`` for an instance.
    """

    name: str
    tool: Any
    plugin: str
    distribution: str | None
    version: str | None
    factory: Any = None
    entry_point: str | None = None  # the plugin's module (``module:attr``), which a sandbox imports

    def build(self, init_kwargs: dict[str, Any] | None = None) -> Any:
        """The tool for one run: a new instance of a registered class, given the ``init_kwargs``
        its ``__init__`` accepts (a tenant's settings), else the registered instance."""
        if self.factory is None:
            return self.tool
        from .tool_loader import accepted_kwargs

        tool = self.factory(**accepted_kwargs(self.factory.__init__, init_kwargs or {}))
        tool.name = self.name
        return tool


@dataclass(frozen=True)
class Provider:
    """An LLM provider registered through ``mt_register_llm_providers``.

    ``required`` and ``optional`` are the declared field names; ``fields`` maps each of them to
    the :class:`~mt_core.fields.FieldSpec` its values are checked against.
    """

    name: str
    factory: Callable[[Any], Any]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    plugin: str
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class Executor:
    """A code executor registered through ``mt_register_executors``."""

    name: str
    factory: Callable[[Any], Any]
    available: Callable[[Any], str | None] | None
    plugin: str
    validate_options: Callable[[dict[str, Any], Any], None] | None = None

    def unavailable_reason(self, settings: Any) -> str | None:
        """Why this executor cannot be used now with ``settings``, or ``None`` when it can."""
        if self.available is None:
            return None
        try:
            return self.available(settings)
        except Exception as exc:  # an availability probe must never break a run
            return f"availability check failed: {exc or type(exc).__name__}"


class _Staging:
    """Registrations of one plugin, kept apart until all of its hooks succeed."""

    def __init__(self, plugin: str, distribution: str | None, version: str | None, entry_point: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.version = version
        self.entry_point = entry_point
        self.tools: list[PackageTool] = []
        self.providers: list[Provider] = []
        self.executors: list[Executor] = []

    def register_tool(self, tool: Any, *, name: str | None = None) -> None:
        instance = validated_tool(tool, name)
        factory = tool if isinstance(tool, type) else None
        self.tools.append(PackageTool(instance.name, instance, self.plugin, self.distribution, self.version, factory,
                                      self.entry_point))

    def register_provider(
        self,
        name: str,
        factory: Callable[[Any], Any],
        *,
        required: FieldDeclaration = (),
        optional: FieldDeclaration = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"provider name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise PluginError(f"provider {name!r}: factory is not callable")
        try:
            required_specs, optional_specs = field_specs(required), field_specs(optional)
        except TypeError as exc:
            raise PluginError(f"provider {name!r}: {exc}") from None
        self.providers.append(Provider(name, factory, tuple(required_specs), tuple(optional_specs), self.plugin,
                                       {**optional_specs, **required_specs}))

    def register_executor(
        self,
        name: str,
        factory: Callable[[Any], Any],
        *,
        available: Callable[[Any], str | None] | None = None,
        validate_options: Callable[[dict[str, Any], Any], None] | None = None,
    ) -> None:
        if not callable(factory):
            raise PluginError(f"executor {name!r}: factory is not callable")
        self.executors.append(Executor(name, factory, available, self.plugin, validate_options))

    def callback_for(self, hook_name: str) -> Callable[..., None]:
        return {
            "mt_register_tools": self.register_tool,
            "mt_register_llm_providers": self.register_provider,
            "mt_register_executors": self.register_executor,
        }[hook_name]


def validated_tool(tool: Any, name: str | None = None) -> Any:
    """A registered tool as a validated ``smolagents.Tool`` instance (classes are instantiated)."""
    from smolagents import Tool

    from .validation import check_tool_name

    if isinstance(tool, type) and issubclass(tool, Tool):
        try:
            tool = tool()
        except Exception as exc:
            raise PluginError(f"tool class {tool.__name__} cannot be instantiated: {exc}") from exc
    if not isinstance(tool, Tool):
        raise PluginError(
            f"{tool!r} is not a smolagents Tool (register a Tool subclass or instance, or a function decorated with @tool)"
        )
    if name is not None:
        tool.name = name
    try:
        check_tool_name(tool.name)
        tool.validate_arguments()
    except Exception as exc:  # smolagents raises assorted types; all mean "invalid"
        raise PluginError(f"tool {getattr(tool, 'name', tool)!r} is invalid: {exc}") from exc
    return tool


class Plugins:
    """Loads plugins once, calls each implementation on its own, and holds what they registered.

    Args:
        allow: distribution names allowed to load (``MT_LOAD_PLUGINS``); ``None`` loads all.
            Default plugins always load.
        cache_dir: where to keep the entry-point discovery cache; ``None`` disables it.
    """

    def __init__(self, allow: Iterable[str] | None = None, *, cache_dir: Path | None = None) -> None:
        self.allow = None if allow is None else {normalize_dist_name(a) for a in allow}
        self.cache_dir = cache_dir
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.tools: dict[str, PackageTool] = {}
        self.providers: dict[str, Provider] = {}
        self.executors: dict[str, Executor] = {}
        self._lock = threading.RLock()
        self._loaded = False

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> "Plugins":
        """Load default plugins and installed entry points, once. Safe to call from many threads."""
        with self._lock:
            if self._loaded:
                return self
            staged: list[_Staging] = []
            for module_name in DEFAULT_PLUGINS:
                info = PluginInfo(name=module_name, distribution="mt-core", version=_core_version(), builtin=True,
                                  module=module_name)
                staged += self._add(info, lambda m=module_name: importlib.import_module(m))
            for found in discover_entry_points(self.cache_dir):
                if self.allow is not None and normalize_dist_name(found["distribution"] or "") not in self.allow:
                    continue
                info = PluginInfo(name=found["name"], distribution=found["distribution"], version=found["version"],
                                  module=found["value"].strip())
                staged += self._add(info, _loader(found))
            self._merge(staged)
            self._loaded = True
            return self

    def register(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register an in-process plugin object (a module or class with hookimpls) now."""
        with self._lock:
            self.load()
            info = PluginInfo(name=name or getattr(plugin, "__name__", repr(plugin)))
            self._merge(self._add(info, lambda: plugin))
            return self.infos[info.name]

    def unregister(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        with self._lock:
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin)
            self.infos.pop(name, None)
            for registry in (self.tools, self.providers, self.executors):
                for key in [k for k, v in registry.items() if v.plugin == name]:
                    del registry[key]

    def _add(self, info: PluginInfo, loader: Callable[[], object]) -> list[_Staging]:
        """Import, register and call one plugin's register hooks.

        Returns its staged registrations (empty on failure, with the error recorded on ``info``).
        """
        if info.name in self.infos:
            info.error = f"a plugin named {info.name!r} is already loaded"
            self.infos[f"{info.name} ({info.distribution})"] = info
            return []
        self.infos[info.name] = info
        try:
            plugin = loader()
        except Exception as exc:
            return self._fail(info, _describe("import failed", exc))
        try:
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.get_plugin(info.name) is not None:
                self.pm.unregister(name=info.name)
            return self._fail(info, _describe("invalid hook implementation", exc, plugin) + _hook_hint(exc))
        info.hooks = sorted(_hook_names(self.pm, plugin))
        staging = _Staging(info.name, info.distribution, info.version, info.module)
        try:
            for hook_name in REGISTER_HOOKS:
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(staging.callback_for(hook_name))
        except Exception as exc:
            self.pm.unregister(name=info.name)
            return self._fail(info, _describe("hook failed", exc))
        return [staging]

    def _fail(self, info: PluginInfo, message: str) -> list[_Staging]:
        info.error = f"{info.error}; {message}" if info.error else message
        logger.warning("plugin %s: %s", info.name, message)
        return []

    def _merge(self, staged: list[_Staging]) -> None:
        """Add staged registrations. A name claimed more than once goes to no one: picking a
        winner by load order would let any plugin take over another's tool or provider name."""
        for attribute, registry, kind in (
            ("tools", self.tools, "tool"),
            ("providers", self.providers, "provider"),
            ("executors", self.executors, "executor"),
        ):
            claims: dict[str, list[Any]] = {}
            for existing in registry.values():
                claims.setdefault(existing.name, []).append(existing)
            for staging in staged:
                for item in getattr(staging, attribute):
                    claims.setdefault(item.name, []).append(item)
            for item_name, claimants in claims.items():
                if len(claimants) == 1:
                    registry[item_name] = claimants[0]
                    continue
                owners = sorted({claimant.plugin for claimant in claimants})
                registry.pop(item_name, None)
                for owner in owners:
                    self._fail(
                        self.infos[owner],
                        f"{kind} {item_name!r} is registered by {' and '.join(owners) if len(owners) > 1 else 'it twice'};"
                        " it is given to none of them",
                    )

    # -- calling lifecycle hooks --------------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is logged, never fatal."""
        self.load()
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                logger.warning(
                    "plugin %s: %s raised %s", self.pm.get_name(impl.plugin), hook_name, _describe("", exc)
                )

    def modules(self) -> tuple[str, ...]:
        """The entry points (``module:attr``) of the loaded third-party plugins: what a sandbox
        that shares this machine's Python imports to build their package tools."""
        self.load()
        return tuple(sorted({info.module for info in self.infos.values()
                             if info.module and not info.builtin and info.error is None}))

    def plugin_list(self) -> list[PluginInfo]:
        """Every plugin that loaded or failed, default plugins first."""
        self.load()
        return sorted(self.infos.values(), key=lambda i: (not i.builtin, i.name))


CACHE_FILE = "entry-points.json"


def _discovery_key() -> list[Any]:
    """What the installed entry points depend on: the interpreter and every ``sys.path`` folder's
    mtime (installing, upgrading or removing a distribution changes its folder's mtime).

    One ``stat`` per ``sys.path`` entry: the cost does not grow with installed distributions.
    """
    key: list[Any] = [sys.executable, sys.version]
    for entry in sys.path:
        try:
            key.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:
            key.append([entry, None])
    return key


def discover_entry_points(cache_dir: Path | None) -> list[dict[str, Any]]:
    """Entry points of group ``mt_core`` as ``{name, value, distribution, version}``, sorted by
    name; read from the cache when it is still valid, else from installed metadata."""
    key = _discovery_key()
    path = cache_dir / CACHE_FILE if cache_dir is not None else None
    if path is not None:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                return list(cached["entry_points"])
        except (OSError, ValueError, AttributeError, KeyError):
            pass
    from importlib.metadata import entry_points

    found = sorted(
        (
            {
                "name": ep.name,
                "value": ep.value,
                "distribution": ep.dist.metadata["Name"] if ep.dist else None,
                "version": ep.dist.version if ep.dist else None,
            }
            for ep in entry_points(group=ENTRY_POINT_GROUP)
        ),
        key=lambda item: (item["name"], item["distribution"] or ""),
    )
    if path is not None:
        try:
            path.parent.mkdir(exist_ok=True)  # never creates the data directory itself (mt --help must not)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"key": key, "entry_points": found}), encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            logger.debug("entry point cache not written", exc_info=True)
    return found


def package_tool(entry_point: str, name: str) -> PackageTool:
    """The package tool ``name`` that the plugin at ``entry_point`` (``module:attr``) registers,
    found by calling that plugin's ``mt_register_tools`` alone (in a sandbox: no discovery)."""
    for entry in _registered_tools(entry_point):
        if entry.name == name:
            return entry
    raise LookupError(f"package tool {name!r} is not registered by {entry_point}")


@functools.lru_cache(maxsize=64)
def _registered_tools(entry_point: str) -> tuple[PackageTool, ...]:
    """What the plugin at ``entry_point`` registers, asked once per process (a sandboxed run with
    several tools of one plugin registers them once; a run's process serves only that run)."""
    plugin = _loader({"value": entry_point})()
    hook = getattr(plugin, "mt_register_tools", None)
    staging = _Staging(entry_point, None, None, entry_point)
    if hook is not None:
        hook(staging.register_tool)
    return tuple(staging.tools)


def _loader(found: dict[str, Any]) -> Callable[[], object]:
    """Import ``module:attr.path`` as ``EntryPoint.load`` would, without importing
    ``importlib.metadata`` (about 20 ms) on a warm start."""

    def load() -> object:
        module_name, _, attributes = found["value"].partition(":")
        target: object = importlib.import_module(module_name.strip())
        for attribute in filter(None, attributes.strip().split(".")):
            target = getattr(target, attribute)
        return target

    return load


def _core_version() -> str:
    from . import __version__

    return __version__


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return [caller.name for caller in pm.get_hookcallers(plugin) or []]


def _hook_hint(exc: BaseException) -> str:
    """For an unknown hook name, the nearest real one."""
    import difflib

    match = re.search(r"unknown hook '(\w+)'", str(exc))
    if not match:
        return ""
    names = [n for n in dir(hookspecs) if n.startswith("mt_")]
    close = difflib.get_close_matches(match.group(1), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(prefix: str, exc: BaseException, plugin: object = None) -> str:
    """One line naming the problem and the plugin's own line it came from (never mt-core's,
    pluggy's or importlib's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_machinery(f.filename)]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else _hookimpl_location(exc, plugin)
    message = " ".join(str(exc).split())
    if isinstance(exc, (PluginError, pluggy.PluginValidationError)):
        text = re.sub(r" in plugin <.*?>", "", message)  # the location follows; the module repr is noise
    else:
        text = f"{type(exc).__name__}: {message}"  # what the plugin's own code raised
    text += f" (at {where})" if where else ""
    return f"{prefix}: {text}" if prefix else text


def _is_machinery(filename: str) -> bool:
    """Frames of mt-core, pluggy and the import system: never where a plugin's problem is."""
    return filename.startswith((PACKAGE_DIR, _PLUGGY_DIR)) or filename.startswith("<frozen ")


def _hookimpl_location(exc: BaseException, plugin: object) -> str | None:
    """For a hook implementation pluggy refused (e.g. a misspelt name): the file and line defining it."""
    import inspect

    match = re.search(r"hook '(\w+)'", str(exc))
    function = getattr(plugin, match.group(1), None) if match and plugin is not None else None
    target = function or plugin
    try:
        filename = inspect.getsourcefile(target)  # type: ignore[arg-type]
        line = inspect.getsourcelines(target)[1] if function is not None else None  # type: ignore[arg-type]
    except (TypeError, OSError):
        return None
    return f"{filename}:{line}" if line else filename


_PLUGGY_DIR = str(Path(pluggy.__file__).resolve().parent)
