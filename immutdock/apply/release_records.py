"""A release's records and the commands it runs once (a mixin of immutdock.apply.release.Deployer):
written before the switch, settled after it or by the undo (values digested, see
immutdock.identity.redact), and the pre-release test and hooks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

from immutdock.apply.build import Checkout, checkout_once
from immutdock.apply.operate import labelled_networks
from immutdock.config.model import PreReleaseTest
from immutdock.errors import EngineError, ReleaseFailed
from immutdock.identity.redact import Redactor, new_salt
from immutdock.plan import haproxy, render
from immutdock.plan.release import ReleasePlan
from immutdock.targets import ledger
from immutdock.targets.observe import AppState

Say = Callable[[str], None]
from immutdock.apply.outcome import Live, Parts, now


class RecordSteps(Parts):
    def redactor(self, state: AppState) -> Redactor:
        """Digests environment values for records and config-hash labels, with the app's salt."""
        if state.salt is None and self._salt is None:
            self._salt = new_salt()
        return Redactor(state.salt or str(self._salt), self.app.secret_values)

    def _record_undone(self, live: "Live", why: str) -> None:
        """The last undo: the release recorded as failed or interrupted, its record written
        before the switch settled so, or a new one written."""
        outcome = "interrupted" if why == "interrupted" else "failed"
        if live.record is not None:
            self._settle_record(live.record, outcome, why, keep_model=False)
        else:
            self._write_record(live.plan, live.kind, live.refs, outcome, live.source, {}, message=why)

    def _settle_record(self, record: ledger.Record, outcome: str, message: str = "",
                       keep_model: bool = True) -> ledger.Record:
        """Rewrite a record written as "switching" with its outcome; without `keep_model`, the
        model goes (a release that never served is never rolled back to)."""
        settled = replace(record, outcome=outcome, message=message or record.message)
        return self.target.ledger.rewrite(self.app.name, record, settled if keep_model else replace(settled, packed=""))

    def _write_record(self, plan: ReleasePlan, kind: str, refs: Mapping[str, str], outcome: str,
                      source: str | None, model: Mapping[str, Any], message: str = "",
                      state: AppState | None = None) -> ledger.Record:
        """Record the release: a good one with its model (values digested; see immutdock.identity.redact),
        after which records written before digests are redacted too."""
        redactor = self.redactor(state) if state is not None else None
        number = ledger.parse_release_id(plan.release) or 0
        written = self.target.ledger.write(self.app.name, ledger.Record(
            number=number, kind=kind, color=plan.color, images=dict(refs), config_hash=plan.config_hash,
            created=now(), outcome=outcome, git=self._revision(source, state), message=message,
            source=source, packed=ledger.pack(redactor.scrub(model)) if redactor else "",
            salt=redactor.salt if redactor else "", profiles=plan.profiles),
            taken=frozenset(r.volume for r in state.records) if state else frozenset())
        if redactor and state and any((r.packed and not r.salt) or r.stale for r in state.records):
            self.target.ledger.tidy(self.app.name, list(state.records), redactor)
        return written

    def _revision(self, source: str | None, state: AppState | None) -> str | None:
        """The git revision a record names: a rollback's or heal's, that of the release it runs
        again; a release's, the checkout's (marked when it has uncommitted changes)."""
        if source is not None:
            found = next((r for r in (state.records if state else ()) if r.id == source), None)
            if found is not None:
                return found.git
        return self._source()[1]

    def _read_source(self) -> None:
        """Start reading the project's source and revision (git, two or three commands) in the
        background, once per Deployer."""
        if self._checkout is None:
            self._checkout = checkout_once(self.app.project_dir, now=True)

    def _source(self) -> Checkout:
        """The project's source and revision, as `_read_source` read them (read now if it was
        not started)."""
        if self._checkout is None:
            self._checkout = checkout_once(self.app.project_dir)
        return self._checkout()

    def _settle_interrupted(self, state: AppState, by: str) -> None:
        """Settle the records of releases killed around their switch: the one that serves is
        good (killed during its watch), any other never served (killed before its switch)."""
        live = state.live_record
        if state.switching:
            self._fallback_off()  # a watch that was cut short kept its fallback servers
        for rec in state.records:
            if rec.outcome != "switching":
                continue
            if rec is live:
                self._settle_record(rec, "ok", f"its watch after the switch was cut short; settled by {by}")
            else:
                self._settle_record(rec, "interrupted", f"interrupted around its switch; settled by {by}",
                                    keep_model=False)

    def _run_once(self, role: str, test: PreReleaseTest, refs: Mapping[str, str], plan: ReleasePlan,
                  env: Mapping[str, str] | None = None) -> str | None:
        """Run a command in a new container of a service of the new release (project
        <app>-<role>, on the edge network, removed after; `env` added to its environment);
        None when it passed, else its last output lines."""
        model = render.color_project(self.app, role, refs, plan.release, plan.config_hash)
        if env:
            svc = model["services"][test.service]
            svc["environment"] = {**(svc.get("environment") or {}), **env}
        self.target.colors.ensure_edge(self.app.name)
        ok, output = self.compose.run_once(render.project_name(self.app.name, role),
                                           labelled_networks(model, self.app.name), test.service, list(test.command))
        return None if ok else "\n".join(output.strip().splitlines()[-20:])

    def _pre_release_test(self, refs: Mapping[str, str], plan: ReleasePlan) -> None:
        test = self.app.settings.test
        if test is None:
            return
        self.say(f"pre-release test in {test.service}: {' '.join(test.command)}")
        tail = self._run_once("test", test, refs, plan)
        if tail is not None:
            raise ReleaseFailed(f"pre-release test failed in {test.service}; nothing was started",
                                "fix the test or the code; the previous release is still serving", details=tail)

    def _hooks(self, when: str, refs: Mapping[str, str], plan: ReleasePlan) -> None:
        """x-immutdock.hooks.<when>, in order; the first that fails raises an EngineError. Each
        gets IMMUTDOCK_RELEASE, IMMUTDOCK_COLOR and IMMUTDOCK_URL (the new color's routed
        service, reachable from the hook's container before the switch too)."""
        router = self.app.settings.router
        env = {"IMMUTDOCK_RELEASE": plan.release, "IMMUTDOCK_COLOR": plan.color}
        if router is not None:
            env["IMMUTDOCK_URL"] = f"http://{haproxy.routed_alias(plan.color, router.service)}:{router.main.port}"
        for hook in self.app.settings.hooks.get(when, ()):
            self.say(f"{when} hook in {hook.service}: {' '.join(hook.command)}")
            tail = self._run_once("hook", hook, refs, plan, env)
            if tail is not None:
                raise EngineError(f"the {when} hook in {hook.service} failed", details=tail)
