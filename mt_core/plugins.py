"""Plugin manager: loads default and installed plugins, isolates broken ones, and keeps registries."""

from __future__ import annotations

import importlib
import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mt_core"
DEFAULT_PLUGINS = (
    "mt_core.default_plugins.openai_provider",
    "mt_core.default_plugins.local_executor",
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
    """A tool registered by a plugin through ``mt_register_tools``."""

    name: str
    tool: Any
    plugin: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class Provider:
    """An LLM provider registered through ``mt_register_llm_providers``."""

    name: str
    factory: Callable[[Any], Any]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    plugin: str


@dataclass(frozen=True)
class Executor:
    """A code executor registered through ``mt_register_executors``."""

    name: str
    factory: Callable[[Any], Any]
    available: Callable[[], str | None] | None
    plugin: str

    def unavailable_reason(self) -> str | None:
        """Why this executor cannot be used now, or ``None`` when it can."""
        if self.available is None:
            return None
        try:
            return self.available()
        except Exception as exc:  # an availability probe must never break a run
            return f"availability check failed: {type(exc).__name__}: {exc}"


class _Staging:
    """Registrations of one plugin, kept apart until all of its hooks succeed."""

    def __init__(self, plugin: str, distribution: str | None, version: str | None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.version = version
        self.tools: list[PackageTool] = []
        self.providers: list[Provider] = []
        self.executors: list[Executor] = []

    def register_tool(self, tool: Any, *, name: str | None = None) -> None:
        tool_name = name or getattr(tool, "name", None) or getattr(tool, "__name__", None)
        if not isinstance(tool_name, str) or not tool_name:
            raise PluginContractError(f"tool {tool!r} has no name")
        self.tools.append(PackageTool(tool_name, tool, self.plugin, self.distribution, self.version))

    def register_provider(
        self,
        name: str,
        factory: Callable[[Any], Any],
        *,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> None:
        if not callable(factory):
            raise PluginContractError(f"provider {name!r}: factory is not callable")
        self.providers.append(Provider(name, factory, tuple(required), tuple(optional), self.plugin))

    def register_executor(
        self,
        name: str,
        factory: Callable[[Any], Any],
        *,
        available: Callable[[], str | None] | None = None,
    ) -> None:
        if not callable(factory):
            raise PluginContractError(f"executor {name!r}: factory is not callable")
        self.executors.append(Executor(name, factory, available, self.plugin))

    def callback_for(self, hook_name: str) -> Callable[..., None]:
        return {
            "mt_register_tools": self.register_tool,
            "mt_register_llm_providers": self.register_provider,
            "mt_register_executors": self.register_executor,
        }[hook_name]


class PluginContractError(Exception):
    """A plugin called a register callback wrongly or registered a duplicate name."""


class Plugins:
    """Loads plugins once, calls each implementation on its own, and holds what they registered.

    Args:
        allow: distribution names allowed to load (``MT_LOAD_PLUGINS``); ``None`` loads all.
            Default plugins always load.
    """

    def __init__(self, allow: Iterable[str] | None = None) -> None:
        self.allow = None if allow is None else {normalize_dist_name(a) for a in allow}
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
            for module_name in DEFAULT_PLUGINS:
                info = PluginInfo(name=module_name, distribution="mt-core", version=_core_version(), builtin=True)
                self._add(info, lambda m=module_name: importlib.import_module(m))
            for entry_point in self._entry_points():
                dist = entry_point.dist
                info = PluginInfo(
                    name=entry_point.name,
                    distribution=dist.metadata["Name"] if dist else None,
                    version=dist.version if dist else None,
                )
                self._add(info, entry_point.load)
            self._loaded = True
            return self

    def _entry_points(self) -> list[Any]:
        from importlib.metadata import entry_points

        found = []
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            dist_name = entry_point.dist.metadata["Name"] if entry_point.dist else entry_point.name
            if self.allow is not None and normalize_dist_name(dist_name) not in self.allow:
                continue
            found.append(entry_point)
        return sorted(found, key=lambda ep: ep.name)

    def register(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register an in-process plugin object (a module or class with hookimpls) now."""
        with self._lock:
            self.load()
            info = PluginInfo(name=name or getattr(plugin, "__name__", repr(plugin)))
            self._add(info, lambda: plugin)
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

    def _add(self, info: PluginInfo, loader: Callable[[], object]) -> None:
        """Import, register and call one plugin; on any failure record the error and skip it."""
        if info.name in self.infos:
            info.error = f"a plugin named {info.name!r} is already loaded"
            self.infos[f"{info.name} ({info.distribution})"] = info
            return
        self.infos[info.name] = info
        try:
            plugin = loader()
        except Exception as exc:
            info.error = _describe("import failed", exc)
            logger.warning("plugin %s failed to import: %s", info.name, info.error)
            return
        try:
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.get_plugin(info.name) is not None:
                self.pm.unregister(name=info.name)
            info.error = _describe("invalid hook implementation", exc)
            logger.warning("plugin %s rejected: %s", info.name, info.error)
            return
        info.hooks = sorted(impl_name for impl_name in _hook_names(self.pm, plugin))
        staging = _Staging(info.name, info.distribution, info.version)
        try:
            for hook_name in REGISTER_HOOKS:
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(staging.callback_for(hook_name))
            self._merge(staging)
        except Exception as exc:
            self.pm.unregister(name=info.name)
            info.error = _describe("hook failed", exc)
            logger.warning("plugin %s skipped: %s", info.name, info.error)

    def _merge(self, staging: _Staging) -> None:
        """Add one plugin's registrations, all or none; a name clash rejects the plugin."""
        for items, registry, kind in (
            (staging.tools, self.tools, "tool"),
            (staging.providers, self.providers, "provider"),
            (staging.executors, self.executors, "executor"),
        ):
            names = [item.name for item in items]
            for item_name in names:
                if names.count(item_name) > 1:
                    raise PluginContractError(f"{kind} {item_name!r} registered twice")
                if item_name in registry:
                    raise PluginContractError(
                        f"{kind} {item_name!r} is already registered by plugin {registry[item_name].plugin!r}"
                    )
        for items, registry in (
            (staging.tools, self.tools),
            (staging.providers, self.providers),
            (staging.executors, self.executors),
        ):
            registry.update({item.name: item for item in items})

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

    def plugin_list(self) -> list[PluginInfo]:
        """Every plugin that loaded or failed, default plugins first."""
        self.load()
        return sorted(self.infos.values(), key=lambda i: (not i.builtin, i.name))


def _core_version() -> str:
    from . import __version__

    return __version__


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return [caller.name for caller in pm.get_hookcallers(plugin) or []]


def _describe(prefix: str, exc: BaseException) -> str:
    """One line naming the exception and where it came from, without the full traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    text = f"{type(exc).__name__}: {exc}{where}"
    return f"{prefix}: {text}" if prefix else text
