"""Documents written from an artifact's recorded facts: the model card, EU AI Act
documentation and the energy ledger. Nothing is invented: what no file records is a gap."""

from lmforge.report.card import render_card, write_card
from lmforge.report.compliance import write_compliance
from lmforge.report.energy import energy_ledger
from lmforge.report.facts import Fact, Facts, gather

__all__ = [
    "Fact",
    "Facts",
    "energy_ledger",
    "gather",
    "render_card",
    "write_card",
    "write_compliance",
]
