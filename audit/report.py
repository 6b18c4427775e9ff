"""The audit report: one named check per property, each failure naming the exact entry.

Rendered for people (rich) or as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

MAX_FINDINGS_KEPT = 200  # per check; the count of all findings is always exact

CHECK_NAMES: dict[str, str] = {
    "catalogue-checkpoint": "catalogue checkpoint signed by the catalogue key",
    "catalogue-consistency": "catalogue log consistent with the last verified checkpoint (state)",
    "catalogue-log": "catalogue log leaves canonical, in order, root matches its checkpoint",
    "catalogue-replay": "catalogue log replays: enrolments, retirements, revocations, checkpoints",
    "node-checkpoint-signatures": "every node checkpoint signed by the key in force",
    "node-tree": "every node tree rebuilt from the mirror matches its checkpoints",
    "content-digest": "every present content matches its entry digest",
    "content-schema": "every present content valid against its schema",
    "withdrawn-content": "no content kept for withdrawn records, none missing for live ones",
    "search-totals": "every search count equals the interval sum the live groups give",
    "node-direct": "each node's own checkpoint agrees with the catalogue's copy",
}


@dataclass(frozen=True)
class Finding:
    """One failure: where (an exact entry or response field) and why."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class CheckResult:
    """The outcome of one named check."""

    name: str
    ran: bool = False
    items: int = 0  # how many things were checked
    findings: list[Finding] = field(default_factory=list)
    failures: int = 0
    note: str = ""
    # faults of a node that the catalogue handled as the protocol says (e.g. a live record
    # served without content, listed in its rejection report): shown, but not failures
    node_faults: list[Finding] = field(default_factory=list)
    node_fault_count: int = 0

    @property
    def ok(self) -> bool:
        return self.failures == 0

    @property
    def status(self) -> str:
        if not self.ran:
            return "skipped"
        return "ok" if self.ok else "FAILED"

    def node_fault(self, location: str, reason: str) -> None:
        """A node's fault that the catalogue reports as it should: visible, not a failure."""
        self.ran = True
        self.node_fault_count += 1
        if len(self.node_faults) < MAX_FINDINGS_KEPT:
            self.node_faults.append(Finding(location, reason))

    def fail(self, location: str, reason: str) -> None:
        self.ran = True
        self.failures += 1
        if len(self.findings) < MAX_FINDINGS_KEPT:
            self.findings.append(Finding(location, reason))


@dataclass
class Report:
    """All checks of one audit run, plus what was audited."""

    catalogue: str
    checks: dict[str, CheckResult] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in CHECK_NAMES:
            self.checks.setdefault(name, CheckResult(name))

    def __getitem__(self, name: str) -> CheckResult:
        return self.checks[name]

    @property
    def ok(self) -> bool:
        """True only when every check that ran holds and the core checks all ran."""
        core = ("catalogue-checkpoint", "catalogue-log", "node-tree")
        return all(c.ok for c in self.checks.values()) and all(self.checks[n].ran for n in core)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "catalogue": self.catalogue,
            "facts": self.facts,
            "checks": [
                {
                    "name": c.name,
                    "description": CHECK_NAMES.get(c.name, ""),
                    "status": c.status,
                    "ok": c.ok,
                    "checked": c.items,
                    "failures": c.failures,
                    "note": c.note,
                    "findings": [{"location": f.location, "reason": f.reason} for f in c.findings],
                    "node_faults": c.node_fault_count,
                    "node_fault_findings": [
                        {"location": f.location, "reason": f.reason} for f in c.node_faults
                    ],
                }
                for c in self.checks.values()
            ],
        }

    def render(self, console: Console) -> None:
        table = Table(title=f"Audit of {self.catalogue}", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("checked", justify="right")
        table.add_column("what it means")
        styles = {"ok": "green", "FAILED": "bold red", "skipped": "yellow"}
        for c in self.checks.values():
            status = f"[{styles[c.status]}]{c.status}[/]"
            desc = CHECK_NAMES.get(c.name, "") + (f" ({c.note})" if c.note else "")
            table.add_row(c.name, status, str(c.items), desc)
        console.print(table)
        for key, value in self.facts.items():
            console.print(f"  {key}: {value}")
        for c in self.checks.values():
            if c.failures:
                console.print(f"[bold red]{c.name}[/]: {c.failures} failure(s)")
                for f in c.findings:
                    console.print(f"  - {f.location}: {f.reason}", markup=False, highlight=False)
                if c.failures > len(c.findings):
                    console.print(f"  ... and {c.failures - len(c.findings)} more")
        for c in self.checks.values():
            if c.node_fault_count:
                console.print(
                    f"[yellow]{c.name}[/]: {c.node_fault_count} fault(s) of nodes, reported by "
                    "the catalogue (not failures of the catalogue)"
                )
                for f in c.node_faults:
                    console.print(f"  - {f.location}: {f.reason}", markup=False, highlight=False)
        verdict = "[bold green]ALL CHECKS HOLD[/]" if self.ok else "[bold red]AUDIT FAILED[/]"
        console.print(verdict)
