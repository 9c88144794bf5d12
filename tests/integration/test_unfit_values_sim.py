"""A currency field whose metadata allows fewer decimals than its amounts carry (Zoho reports the
scale in ``decimal_place`` and ``currency.precision``; a change of either leaves old amounts as
they were): every amount still reaches the output exactly, through each reader, kept as Zoho's
text in ``$raw_values`` where the typed column cannot hold it, and the manifest counts them."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from support.reliability import READERS, noop, output_table, schema_of, settings_for

from connector.lake.schema import RAW_VALUES
from connector.run.sync import run_extract
from connector.simulator import Simulator
from connector.zoho.http import ZohoClient


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reader", list(READERS))
def test_amounts_with_more_decimals_than_the_metadata_allows_are_kept_exactly(
    make_simulator: Callable[..., Simulator], tmp_path: Path, reader: str
) -> None:
    sim = make_simulator(seed=5, records=80, bulk_page_size=1000, bulk_polls=1)
    deals = sim.org.module("Deals")
    amount = deals.meta.field_map["Amount"]
    amount.raw["decimal_place"] = 0  # the org now says whole units
    amount.raw.pop("currency", None)
    source = {
        row["id"]: row["Amount"]
        for row in deals.select(["id", "Amount"]).to_pylist()
        if row["Amount"] is not None
    }
    fractional = {rid for rid, value in source.items() if Decimal(value) % 1}
    assert fractional, "the generated amounts carry cents"

    settings = settings_for(sim, tmp_path, **READERS[reader])
    client = ZohoClient(settings, sleep=noop)
    out = tmp_path / "out"
    run = run_extract(settings, str(out), modules=["Deals"], client=client, sleep=noop)
    assert run.exit_code == 0, run.summary_lines()
    report = run.module("Deals")
    assert report.unfit_values == {"Amount": len(fractional)}
    assert any("Amount" in w and RAW_VALUES in w for w in report.warnings)

    table = output_table(out, schema_of(settings, "Deals", client))
    got: dict[str, Decimal] = {}
    for rid, typed, raw in zip(
        table.column("id").to_pylist(),
        table.column("Amount").to_pylist(),
        table.column(RAW_VALUES).to_pylist(),
        strict=True,
    ):
        if raw is not None:
            assert typed is None and rid in fractional
            got[rid] = Decimal(json.loads(raw)["Amount"])
        elif typed is not None:
            got[rid] = typed
    assert got == {rid: Decimal(value) for rid, value in source.items()}
    client.close()
