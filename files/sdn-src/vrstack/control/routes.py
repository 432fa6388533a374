"""Route tables per routing instance, with import by route target and best-path selection.

All paths live in one table keyed by prefix. A path is either *local* (an agent
published it into an instance over XMPP) or *learnt* from a BGP peer (it carries route
targets). Instance I sees a path when it was published into I, when the instance it
was published into exports a target that I imports, or when the BGP path carries a
target I imports. Among the paths an instance sees, the best by (local preference,
AS path length, origin) win; all paths equal on those are ECMP, and their distinct
nexthops are what the agents get.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .xmpp import Nexthop


@dataclass(frozen=True)
class Path:
    source: str  # "agent:<name>" or "bgp:<peer address>"
    nexthop: Nexthop
    instance: str = ""  # local paths: the instance it was published into
    targets: frozenset[str] = frozenset()  # learnt paths: their route targets
    rd: str = ""  # learnt paths: the route distinguisher
    local_pref: int = 100
    as_path_len: int = 0
    origin: int = 0

    @property
    def local(self) -> bool:
        return bool(self.instance)

    def rank(self) -> tuple[int, int, int]:
        return (-self.local_pref, self.as_path_len, self.origin)


@dataclass
class Instance:
    name: str
    index: int  # this node's number for it, used in the route distinguisher
    import_targets: frozenset[str] = frozenset()
    export_targets: frozenset[str] = frozenset()
    route_target: str = ""
    vni: int = 0
    configured: bool = False
    view: dict[str, tuple[Nexthop, ...]] = field(default_factory=dict)  # what agents get


Change = tuple[str, str, tuple[Nexthop, ...]]  # (instance, prefix, nexthops; () = gone)


class RouteTable:
    def __init__(self) -> None:
        self.paths: dict[str, dict[tuple[str, str], Path]] = {}  # prefix -> key -> path
        self.instances: dict[str, Instance] = {}
        self._next_index = 1
        # Indexes, so that a session ending or an instance changing does not scan everything.
        self.by_source: dict[str, set[tuple[str, str]]] = {}  # source -> {(prefix, key[1])}
        self.local: dict[str, set[str]] = {}  # instance -> prefixes published into it
        self.viewers: dict[str, set[str]] = {}  # prefix -> instances that have it in view
        self.importers: dict[str, set[str]] = {}  # route target -> instances importing it

    # ---- instances ----------------------------------------------------------------

    def instance(self, name: str) -> Instance:
        inst = self.instances.get(name)
        if inst is None:
            inst = Instance(name, self._next_index)
            self._next_index += 1
            # Its view starts empty: it imports nothing and no path was published into it.
            self.instances[name] = inst
        return inst

    def configure(
        self,
        name: str,
        import_targets: Iterable[str],
        export_targets: Iterable[str],
        route_target: str,
        vni: int,
    ) -> list[Change]:
        inst = self.instance(name)
        new = (frozenset(import_targets), frozenset(export_targets), route_target, vni)
        if (
            inst.configured
            and (inst.import_targets, inst.export_targets, inst.route_target, inst.vni) == new
        ):
            return []
        inst.import_targets, inst.export_targets, inst.route_target, inst.vni = new
        inst.configured = True
        self._index_imports()
        return self.recompute_all()

    def unconfigure(self, name: str) -> list[Change]:
        inst = self.instances.get(name)
        if inst is None or not inst.configured:
            return []
        inst.import_targets = inst.export_targets = frozenset()
        inst.route_target, inst.vni, inst.configured = "", 0, False
        self._index_imports()
        return self.recompute_all()

    def _index_imports(self) -> None:
        self.importers = {}
        for inst in self.instances.values():
            for t in inst.import_targets:
                self.importers.setdefault(t, set()).add(inst.name)

    def instance_by_target(self, target: str) -> Instance | None:
        return next(
            (i for i in self.instances.values() if i.configured and i.route_target == target),
            None,
        )

    # ---- paths --------------------------------------------------------------------

    @staticmethod
    def _key(path: Path) -> tuple[str, str]:
        return (path.source, path.instance or path.rd)

    def add(self, prefix: str, path: Path) -> list[Change]:
        if path.local:
            self.instance(path.instance)
        paths = self.paths.setdefault(prefix, {})
        key = self._key(path)
        if paths.get(key) == path:
            return []
        paths[key] = path
        self.by_source.setdefault(path.source, set()).add((prefix, key[1]))
        if path.local:
            self.local.setdefault(path.instance, set()).add(prefix)
        return self.recompute(prefix)

    def _drop(self, prefix: str, key: tuple[str, str]) -> bool:
        paths = self.paths.get(prefix)
        path = paths.pop(key, None) if paths else None
        if path is None:
            return False
        if not paths:
            del self.paths[prefix]
        self.by_source[path.source].discard((prefix, key[1]))
        if not self.by_source[path.source]:
            del self.by_source[path.source]
        if path.local and not any(p.instance == path.instance for p in (paths or {}).values()):
            self.local[path.instance].discard(prefix)
        return True

    def remove(self, prefix: str, source: str, instance_or_rd: str) -> list[Change]:
        if not self._drop(prefix, (source, instance_or_rd)):
            return []
        return self.recompute(prefix)

    def remove_source(self, source: str) -> list[Change]:
        """Drop every path of an agent or peer (its session went down)."""
        changes: list[Change] = []
        for prefix, second in sorted(self.by_source.get(source, ())):
            self._drop(prefix, (source, second))
            changes += self.recompute(prefix)
        return changes

    def count(self, source: str) -> int:
        return len(self.by_source.get(source, ()))

    def local_prefixes(self, instance: str) -> list[str]:
        return sorted(self.local.get(instance, ()))

    def sees(self, inst: Instance, path: Path) -> bool:
        if path.local:
            if path.instance == inst.name:
                return True
            origin = self.instances[path.instance]
            return bool(origin.export_targets & inst.import_targets)
        return bool(path.targets & inst.import_targets)

    def best(self, inst: Instance, prefix: str) -> tuple[Nexthop, ...]:
        seen = [p for p in self.paths.get(prefix, {}).values() if self.sees(inst, p)]
        if not seen:
            return ()
        top = min(p.rank() for p in seen)
        return tuple(sorted({p.nexthop for p in seen if p.rank() == top}))

    def _candidates(self, prefix: str) -> set[str]:
        """Instances whose view of `prefix` may change: those that have it now, and
        those that see one of its paths (found through the import index)."""
        names = set(self.viewers.get(prefix, ()))
        for path in self.paths.get(prefix, {}).values():
            if path.local:
                names.add(path.instance)
                targets: frozenset[str] = self.instances[path.instance].export_targets
            else:
                targets = path.targets
            for t in targets:
                names |= self.importers.get(t, set())
        return names

    def recompute(self, prefix: str) -> list[Change]:
        changes: list[Change] = []
        for name in sorted(self._candidates(prefix)):
            inst = self.instances[name]
            hops = self.best(inst, prefix)
            if inst.view.get(prefix, ()) != hops:
                if hops:
                    inst.view[prefix] = hops
                    self.viewers.setdefault(prefix, set()).add(name)
                else:
                    inst.view.pop(prefix, None)
                    self.viewers[prefix].discard(name)
                    if not self.viewers[prefix]:
                        del self.viewers[prefix]
                changes.append((inst.name, prefix, hops))
        return changes

    def recompute_all(self) -> list[Change]:
        changes: list[Change] = []
        prefixes = set(self.paths)
        for inst in self.instances.values():
            prefixes |= set(inst.view)
        for prefix in sorted(prefixes):
            changes += self.recompute(prefix)
        return changes

    def local_paths(self, instance: str, prefix: str) -> list[Path]:
        return [p for p in self.paths.get(prefix, {}).values() if p.instance == instance]
