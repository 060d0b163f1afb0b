"""How images reach a target (the Images question of immutdock.targets.base).

The content hash is computed once, where the build happens, so every place gets the same tags:
- `BuiltHere`: the place's own engine builds (the local engine); nothing moves.
- `Shipped`: built on this machine's engine and sent to each place that lacks them, only the
  layers it lacks (immutdock.targets.ship; SSH hosts, no registry).
- `ThroughRegistry`: pushed once to the registry the target names, pulled by each place that
  lacks them (immutdock.targets.registry).

A delivery serves several places at once (one `docker save` or one push serves every host);
the fleet groups its targets by the Images they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # registry and ship are imported by the deliveries that use them (fleets only)
    from immutdock.gateways.engine import Engine
    from immutdock.targets import registry, ship

Say = Callable[[str], None]


@dataclass
class Delivery:
    """What each place got (by its name), and what went to a registry on the way."""

    verb: str = ""  # how it moved: "shipped", "pulled" ("" when nothing moves)
    got: dict[str, ship.Shipment] = field(default_factory=dict)
    pushed: registry.Pushed | None = None


@dataclass(frozen=True)
class BuiltHere:
    """Images built on the target's own engine: nothing to deliver."""

    builds_here: bool = True

    def deliver(self, builder: Engine, to: Mapping[str, Engine], refs: list[str],
                progress: ship.Progress, say: Say) -> Delivery:
        return Delivery()


@dataclass(frozen=True)
class Shipped:
    """Images built here and shipped to each host over SSH (no registry)."""

    builds_here: bool = False

    def deliver(self, builder: Engine, to: Mapping[str, Engine], refs: list[str],
                progress: ship.Progress, say: Say) -> Delivery:
        say(f"shipping images to {len(to)} host(s) that may lack them")
        from immutdock.targets import ship

        return Delivery("shipped", ship.ship(builder, dict(to), refs, progress))


@dataclass(frozen=True)
class ThroughRegistry:
    """Images pushed to a registry, which each host pulls."""

    registry: str
    builds_here: bool = False

    def deliver(self, builder: Engine, to: Mapping[str, Engine], refs: list[str],
                progress: ship.Progress, say: Say) -> Delivery:
        say(f"pushing images to {self.registry} for {len(to)} host(s) that may lack them")
        from immutdock.targets import registry

        pushed, got = registry.through_registry(builder, dict(to), refs, self.registry, progress)
        if pushed.images:
            say(f"pushed {len(pushed.images)} image(s) to {self.registry} ({pushed.layers_pushed} layer(s) pushed, "
                f"{pushed.layers_present} already there)")
        return Delivery("pulled", got, pushed)
