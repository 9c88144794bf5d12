"""Credits per module (``connector.run.credits``): each billed call goes to the module its thread
is reading, the calls of no module to ``None``."""

from __future__ import annotations

import threading

from connector.run.credits import CreditAttribution, Spend
from connector.zoho.http import CreditMeter


def test_calls_are_billed_to_the_module_bound_on_their_thread() -> None:
    meter = CreditMeter()
    attribution = CreditAttribution(meter)
    attribution.install()
    attribution.bind(None)
    meter.record("metadata", 1)

    def read(module: str, pages: int) -> None:
        attribution.bind(module)
        for _ in range(pages):
            meter.record("coql", 3)
        meter.record("metadata", 1)

    threads = [
        threading.Thread(target=read, args=("Leads", 20)),
        threading.Thread(target=read, args=("Deals", 5)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert attribution.of("Leads") == Spend({"coql": 60, "metadata": 1}, 21)
    assert attribution.of("Deals") == Spend({"coql": 15, "metadata": 1}, 6)
    assert attribution.of(None) == Spend({"metadata": 1}, 1)
    assert attribution.of("Contacts") == Spend()


def test_of_is_a_copy_and_uninstall_stops_listening() -> None:
    meter = CreditMeter()
    attribution = CreditAttribution(meter)
    attribution.install()
    attribution.bind("Leads")
    meter.record("bulk_create", 50)
    spend = attribution.of("Leads")
    spend.credits["bulk_create"] = 0
    attribution.uninstall()
    meter.record("bulk_create", 50)
    assert attribution.of("Leads") == Spend({"bulk_create": 50}, 1)
    assert meter.total == 100
