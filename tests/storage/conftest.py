"""What only one backend promises (its connection model, outages, migrations, files), beside
the contract suite that every backend passes; the helpers are the contract suite's."""

from __future__ import annotations

from tests.contract.conftest import clock

__all__ = ["clock"]
