"""The ``console:`` section of the settings (``vlrouter.config`` holds it as ``Settings.console``).

Here rather than in ``config`` because only the console reads it. The savings prices are
assumptions to replace with your own: GPT-4o's list price per million tokens and a typical retail
electricity price for the joules the edge tier logged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleConfig(BaseModel):
    """The web console at ``/ui`` (``vlrouter.ui``); its data endpoints read the decision log."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_rows: int = Field(50_000, ge=100, description="most recent log rows one console figure reads")
    refresh_s: float = Field(5.0, ge=1, le=300, description="how often the Live panel refreshes")
    cloud_usd_per_mtok_input: float = Field(2.5, ge=0, description="cloud price, USD per million prompt tokens")
    cloud_usd_per_mtok_output: float = Field(10.0, ge=0, description="USD per million completion tokens")
    usd_per_kwh: float = Field(0.15, ge=0, description="electricity price for the edge's logged joules")
